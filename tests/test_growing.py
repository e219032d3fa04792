"""The growing-subspace solver against long independent runs of the full-space solver."""

import warnings

import numpy as np
import pytest

from hcl_stats import Structure
from hcl_stats._estimation.growing import solve_growing
from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.lbfgs import solve_lbfgs
from hcl_stats._estimation.noise import denoised_eigenpairs, subtract_diagonal
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats.datasets import make_hierarchical


def _problem(widths, structure, noise, n, seed, dtype=None):
    X = make_hierarchical(n, widths, structure, noise_variance=noise, random_state=seed)
    S = sample_covariance(X, dtype=dtype)[0]
    sigma2, S_W, values, vectors = denoised_eigenpairs(S.astype(np.float64), widths,
                                                       structure, "isotropic")
    W0 = spectral_init(values, vectors, structure, widths)
    return S, sigma2, S_W, W0, structure.mask(widths)


def _reference(S_W, W0, mask, widths):
    # an independent long run of the full-space solver, far below the tolerance
    W, f, _, _, rel = solve_lbfgs(S_W, W0, mask, widths, max_iter=20000, tol=1e-10)
    assert rel <= 1e-9
    return W, f


def _gram_gap(W, W_ref):
    G, G_ref = W @ W.T, W_ref @ W_ref.T
    return float(np.abs(G - G_ref).max() / np.abs(G_ref).max())


def _check_against_reference(S_W, W0, mask, widths, *, expect_growth=True):
    info = {}
    W, f, n_iter, converged, rel = solve_growing(S_W, W0, mask, widths, max_iter=5000,
                                                 tol=1e-5, info=info)
    assert converged and rel <= 1e-5
    assert np.all(W[~mask] == 0.0)
    assert info["n_outer"] >= 1  # the growing path ran (a fall-back may have finished it)
    if expect_growth:
        assert info["fallback"] is None
        assert info["n_products"] < n_iter / 5  # far fewer passes over S_W than iterations
    W_ref, f_ref = _reference(S_W, W0, mask, widths)
    assert f == pytest.approx(f_ref, rel=1e-6)
    assert _gram_gap(W, W_ref) < 1e-3
    # the reported objective is the objective at W
    direct = 0.5 * np.sum((W @ W.T - S_W) ** 2)
    assert f == pytest.approx(direct, rel=1e-9)
    return info


def test_authors_design_same_optimum():
    # p = (100, 500, 800), rank 3 for all 7 subsets, noise 6, n = 5000 (seed as in the
    # recovery tests)
    widths = (100, 500, 800)
    S, _, S_W, W0, mask = _problem(widths, Structure.full(3, rank=3), 6.0, 5000, 500)
    _check_against_reference(S_W, W0, mask, widths)


@pytest.mark.parametrize("M", [2, 3, 4, 5])
def test_moderate_noise_designs_same_optimum(M):
    widths = tuple(60 + 10 * m for m in range(M))
    structure = Structure.full(M, rank=2 if M <= 3 else 1)
    _, _, S_W, W0, mask = _problem(widths, structure, 1.0, 3000, 40 + M)
    # small modalities: the bases may pass the share of d, and the full-space solver
    # then finishes; the optimum is the same either way
    _check_against_reference(S_W, W0, mask, widths, expect_growth=False)


def test_moderate_noise_large_modalities_grow_without_fallback():
    widths = (300, 500)
    structure = Structure.full(2, rank=3)
    _, _, S_W, W0, mask = _problem(widths, structure, 1.0, 3000, 8)
    _check_against_reference(S_W, W0, mask, widths)


def test_implicit_shift_equals_denoised_matrix():
    widths = (50, 80, 120)
    structure = Structure.full(3, rank=2)
    S, sigma2, S_W, W0, mask = _problem(widths, structure, 1.0, 2000, 7)
    S_copy = S.copy()
    a = solve_growing(S_W, W0, mask, widths, tol=1e-6)
    b = solve_growing(S, W0, mask, widths, tol=1e-6, shift=np.repeat(sigma2, widths))
    assert np.array_equal(S, S_copy)  # not modified
    assert b[3] and b[1] == pytest.approx(a[1], rel=1e-9)
    assert _gram_gap(b[0], a[0]) < 1e-5


def test_float32_statistics_same_optimum():
    # the float32 covariance moves the optimum far less than the tolerance does
    widths = (60, 120, 200)
    structure = Structure.full(3, rank=2)
    S32, sigma2, _, W0, mask = _problem(widths, structure, 1.0, 3000, 11, dtype=np.float32)
    assert S32.dtype == np.float32
    W, f, _, converged, _ = solve_growing(S32, W0, mask, widths, tol=1e-6,
                                          shift=np.repeat(sigma2, widths))
    S64 = sample_covariance(make_hierarchical(3000, widths, structure, noise_variance=1.0,
                                              random_state=11))[0]
    W_ref, f_ref = _reference(subtract_diagonal(S64, np.repeat(sigma2, widths)), W0, mask,
                              widths)
    assert converged
    assert f == pytest.approx(f_ref, rel=1e-6)
    assert _gram_gap(W, W_ref) < 1e-4


@pytest.mark.parametrize("widths, share, reason", [
    # initial bases (24 columns) already past the share of d (0.3 * 75): the full-space
    # solver does all the work
    ((20, 25, 30), 0.3, "small"),
    # the first growth step passes the share: the full-space solver finishes from the
    # current point
    ((60, 80, 100), 0.2, "basis size"),
])
def test_fallback_reaches_the_optimum(widths, share, reason):
    structure = Structure.full(3, rank=2)
    _, _, S_W, W0, mask = _problem(widths, structure, 1.0, 2000, 3)
    info = {}
    W, f, _, converged, _ = solve_growing(S_W, W0, mask, widths, tol=1e-7, info=info,
                                          max_share=share)
    assert info["fallback"] == reason
    W_ref, f_ref = _reference(S_W, W0, mask, widths)
    assert converged and f == pytest.approx(f_ref, rel=1e-9)
    assert _gram_gap(W, W_ref) < 1e-4


def test_max_iter_reports_not_converged():
    widths = (100, 500, 800)
    _, _, S_W, W0, mask = _problem(widths, Structure.full(3, rank=3), 6.0, 5000, 501)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the solver itself does not warn
        W, f, n_iter, converged, rel = solve_growing(S_W, W0, mask, widths, max_iter=20)
    assert not converged and rel > 1e-5 and n_iter <= 20
    assert np.all(np.isfinite(W)) and np.isfinite(f)


def test_same_result_with_one_and_two_blas_threads():
    from threadpoolctl import threadpool_limits

    widths = (150, 250)
    structure = Structure.full(2, rank=2)
    _, _, S_W, W0, mask = _problem(widths, structure, 1.0, 2000, 9)
    out = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            out.append(solve_growing(S_W, W0, mask, widths, tol=1e-6))
    (W1, f1, *_), (W2, f2, *_) = out
    assert f1 == pytest.approx(f2, rel=1e-9)
    assert _gram_gap(W1, W2) < 1e-6
