"""The block-weighted objective of L-BFGS and ``fit_hcl(block_weights=...)`` against
independent references: a loop-over-blocks objective and gradient written here, finite
differences, scipy's L-BFGS-B and scalar minimiser on the flattened free entries."""

import warnings

import numpy as np
import pytest
import scipy.optimize
from threadpoolctl import threadpool_limits

from hcl_stats import Structure
from hcl_stats._estimation.fit import fit_hcl, resolve_solver
from hcl_stats._estimation import lbfgs
from hcl_stats._estimation.lbfgs import (_DenseWeightedLayout, _line_step, _WeightedLayout,
                                          solve_lbfgs)
from hcl_stats._structure import row_slices
from hcl_stats.datasets import make_hierarchical

WIDTHS = [3, 4, 5]
STRUCTURE = Structure({(0, 1, 2): 1, (0, 1): 1, (1, 2): 1, (0,): 1, (2,): 1})
WEIGHTS = np.array([[1.0, 0.45, 0.7], [0.45, 0.6, 0.3], [0.7, 0.3, 0.9]])


def _objective(W, S, w, widths):
    """``1/2 sum_{m,l} w_ml ||W_m W_l^T - S_ml||^2`` block by block."""
    rows = row_slices(widths)
    return 0.5 * sum(w[m, l] * np.sum((W[a] @ W[b].T - S[a, b]) ** 2)
                     for m, a in enumerate(rows) for l, b in enumerate(rows))


def _gradient(W, S, w, widths):
    """``2 sum_l w_ml (W_m W_l^T - S_ml) W_l`` on modality m's rows (symmetric S and w)."""
    rows = row_slices(widths)
    grad = np.zeros_like(W)
    for m, a in enumerate(rows):
        for l, b in enumerate(rows):
            grad[a] += 2.0 * w[m, l] * (W[a] @ W[b].T - S[a, b]) @ W[b]
    return grad


def _problem(rng, widths=WIDTHS, structure=STRUCTURE, noise=0.05):
    """A denoised covariance near a masked ``W W^T``, scaled to largest diagonal one."""
    mask = structure.mask(widths)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    E = rng.standard_normal((W.shape[0],) * 2) * noise
    S = W @ W.T + E + E.T
    S /= np.max(np.abs(np.diagonal(S)))
    return S, mask


LAYOUTS = [_WeightedLayout, _DenseWeightedLayout]  # per-modality and dense variables


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weighted_objective_and_gradient_match_the_blockwise_formulas(rng, layout):
    S, mask = _problem(rng)
    P = layout(S, mask, WIDTHS, WEIGHTS)
    assert P.scale == 1.0
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    x = P.pack(W)
    A, G = P.product(x, False), P.gram(x, x)
    assert P.objective(x, A, G) == pytest.approx(_objective(W, S, WEIGHTS, WIDTHS),
                                                 rel=1e-12)
    grad = P.unpack(P.gradient(x, A, G))
    np.testing.assert_allclose(grad, np.where(mask, _gradient(W, S, WEIGHTS, WIDTHS), 0.0),
                               rtol=1e-10, atol=1e-12)
    # central finite differences of the blockwise objective on every free entry
    h = 1e-6
    fd = np.zeros_like(W)
    for i, k in zip(*np.nonzero(mask)):
        E = np.zeros_like(W)
        E[i, k] = h
        fd[i, k] = (_objective(W + E, S, WEIGHTS, WIDTHS)
                    - _objective(W - E, S, WEIGHTS, WIDTHS)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weighted_line_step_is_the_exact_minimiser_along_the_line(rng, layout):
    S, mask = _problem(rng)
    P = layout(S, mask, WIDTHS, WEIGHTS)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    x = P.pack(W)
    A, G = P.product(x, False), P.gram(x, x)
    grad = P.gradient(x, A, G)
    D = -grad
    t, _, _ = _line_step(P, x, grad, D, G, P.product(D, False), float(grad @ D))
    Dm = P.unpack(D)

    def along(s):
        return _objective(W + s * Dm, S, WEIGHTS, WIDTHS)

    ref = scipy.optimize.minimize_scalar(along, bounds=(0.0, 10.0 * t), method="bounded",
                                         options={"xatol": 1e-12})
    assert along(t) <= ref.fun + 1e-12 * abs(ref.fun)
    assert t == pytest.approx(ref.x, rel=1e-4)


def test_dense_weighted_hessian_is_the_derivative_of_the_blockwise_gradient(rng):
    S, mask = _problem(rng)
    P = _DenseWeightedLayout(S, mask, WIDTHS, WEIGHTS)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    V = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    x = P.pack(W)
    Hv = P.unpack(P.hessian_operator(x, P.gram(x, x))(P.pack(V)))
    h = 1e-6
    numeric = (_gradient(W + h * V, S, WEIGHTS, WIDTHS)
               - _gradient(W - h * V, S, WEIGHTS, WIDTHS)) / (2 * h)
    assert np.all(Hv[~mask] == 0.0)
    # the product runs in float32 (lbfgs._HESSIAN_DTYPE): float32 accuracy
    np.testing.assert_allclose(Hv, np.where(mask, numeric, 0.0), rtol=1e-5,
                               atol=1e-6 * np.abs(numeric).max())


def test_dense_and_per_modality_weighted_layouts_take_the_same_iteration(rng, monkeypatch):
    """Without the dense layout's Newton phase both run the same L-BFGS iteration (the
    per-modality one starts in float32, so they agree to its verification, not bitwise)."""
    S, mask = _problem(rng)
    W0 = np.where(mask, rng.standard_normal(mask.shape), 0.0) * 0.3
    monkeypatch.setattr(lbfgs, "_NEWTON_FROM", -1.0)
    dense = solve_lbfgs(S, W0, mask, WIDTHS, tol=1e-10, max_iter=5000, block_weights=WEIGHTS)
    monkeypatch.setattr(lbfgs, "_DENSE_WORK", 0)
    packed = solve_lbfgs(S, W0, mask, WIDTHS, tol=1e-10, max_iter=5000,
                         block_weights=WEIGHTS)
    assert dense[3] and packed[3]
    np.testing.assert_allclose(dense[0], packed[0], atol=1e-8)
    assert dense[1] == pytest.approx(packed[1], rel=1e-12)


def test_weighted_optimum_matches_scipy_lbfgsb(rng):
    S, mask = _problem(rng)
    W0 = np.where(mask, rng.standard_normal(mask.shape), 0.0) * 0.3
    free = np.nonzero(mask)

    def fun(v):
        W = np.zeros(mask.shape)
        W[free] = v
        return _objective(W, S, WEIGHTS, WIDTHS), _gradient(W, S, WEIGHTS, WIDTHS)[free]

    ref = scipy.optimize.minimize(fun, W0[free], jac=True, method="L-BFGS-B",
                                  options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12})
    W_ref = np.zeros(mask.shape)
    W_ref[free] = ref.x
    W, f, _, converged, rel = solve_lbfgs(S, W0, mask, WIDTHS, tol=1e-10, max_iter=20000,
                                          block_weights=WEIGHTS)
    assert converged and rel <= 1e-10
    assert np.all(W[~mask] == 0.0)
    assert f == pytest.approx(ref.fun, rel=1e-8)
    assert f == pytest.approx(_objective(W, S, WEIGHTS, WIDTHS), rel=1e-10)
    # the fitted signal covariance does not depend on the per-block rotations
    np.testing.assert_allclose(W @ W.T, W_ref @ W_ref.T, atol=1e-6)
    # and it differs from the unweighted optimum
    W1 = solve_lbfgs(S, W0, mask, WIDTHS, tol=1e-10, max_iter=20000)[0]
    assert np.max(np.abs(W1 @ W1.T - W @ W.T)) > 1e-4


def test_weights_of_one_reach_the_unweighted_optimum(rng):
    S, mask = _problem(rng, widths=[6, 8, 10], noise=0.1)
    W0 = np.where(mask, rng.standard_normal(mask.shape), 0.0) * 0.3
    W1, f1, *_ = solve_lbfgs(S, W0, mask, [6, 8, 10], tol=1e-10, max_iter=5000)
    W2, f2, *_ = solve_lbfgs(S, W0, mask, [6, 8, 10], tol=1e-10, max_iter=5000,
                             block_weights=np.ones((3, 3)))
    assert f2 == pytest.approx(f1, rel=1e-10)
    np.testing.assert_allclose(W2 @ W2.T, W1 @ W1.T, atol=1e-7)


def test_a_zero_weight_block_is_ignored(rng):
    """With ``w_01 = 0`` the covariance between modalities 0 and 1 plays no part."""
    widths = [4, 5, 6]
    structure = Structure({(0, 2): 1, (1, 2): 1, (0,): 1, (1,): 1, (2,): 1})
    S, mask = _problem(rng, widths, structure)
    w = np.array([[1.0, 0.0, 0.5], [0.0, 0.8, 0.6], [0.5, 0.6, 1.0]])
    rows = row_slices(widths)
    other = S.copy()
    junk = rng.standard_normal((4, 5)) * 10.0
    other[rows[0], rows[1]], other[rows[1], rows[0]] = junk, junk.T
    W0 = np.where(mask, rng.standard_normal(mask.shape), 0.0) * 0.3
    one = solve_lbfgs(S, W0, mask, widths, tol=1e-9, block_weights=w)
    two = solve_lbfgs(other, W0, mask, widths, tol=1e-9, block_weights=w)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1] == two[1]


def _covariance(seed=0, widths=(20, 30, 40), n=400):
    X = make_hierarchical(n, list(widths), STRUCTURE, noise_variance=1.0, random_state=seed)
    return np.cov(np.hstack(X), rowvar=False), list(widths)


def test_fit_hcl_equal_weights_give_the_unweighted_fit_scaled():
    S, widths = _covariance()
    plain = fit_hcl(S, widths, STRUCTURE, random_state=0)
    for c in (1.0, 0.4):
        fit = fit_hcl(S, widths, STRUCTURE, random_state=0, block_weights=np.full((3, 3), c))
        np.testing.assert_array_equal(fit.loadings, plain.loadings)
        assert fit.objective == c * plain.objective
        assert fit.gradient_norm == plain.gradient_norm


@pytest.mark.parametrize("denoise", ["isotropic", "diagonal"])
def test_fit_hcl_weighted_is_stationary_for_the_weighted_objective(denoise):
    S, widths = _covariance(1)
    fit = fit_hcl(S, widths, STRUCTURE, denoise=denoise, random_state=0, tol=1e-8,
                  block_weights=WEIGHTS)
    assert fit.converged and fit.gradient_norm <= 1e-8
    W = fit.loadings
    psi = fit.noise_variance if denoise == "diagonal" else np.repeat(fit.noise_variance, widths)
    if denoise == "diagonal":  # the noise step: psi = diag(S - W W^T) (above its floor)
        np.testing.assert_allclose(psi, np.diagonal(S) - np.sum(W * W, axis=1), rtol=1e-6)
    S_W = S - np.diag(psi)
    mask = STRUCTURE.mask(widths)
    grad = _gradient(W, S_W, WEIGHTS, widths)[mask]
    rows = row_slices(widths)
    SWW = np.vstack([sum(WEIGHTS[m, l] * S_W[a, b] @ W[b] for l, b in enumerate(rows))
                     for m, a in enumerate(rows)])[mask]
    assert np.linalg.norm(grad) / np.linalg.norm(SWW) <= 2e-8
    assert fit.objective == pytest.approx(_objective(W, S_W, WEIGHTS, widths), rel=1e-8)


def test_fit_hcl_weighted_identical_with_one_and_two_threads():
    S, widths = _covariance(2)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            fits.append(fit_hcl(S, widths, STRUCTURE, random_state=0, block_weights=WEIGHTS))
    np.testing.assert_array_equal(fits[0].loadings, fits[1].loadings)


@pytest.mark.parametrize("kwargs, message", [
    ({"solver": "growing"}, "solver='growing' does not fit the block-weighted objective"),
    ({"solver": "subspace"}, "solver='subspace' does not fit the block-weighted objective"),
    ({"objective": "likelihood", "n_samples": 400},
     "objective='likelihood' does not take block_weights"),
])
def test_fit_hcl_refuses_unequal_weights_it_cannot_fit(kwargs, message):
    S, widths = _covariance()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        fit_hcl(S, widths, STRUCTURE, block_weights=WEIGHTS, **kwargs)


@pytest.mark.parametrize("weights, message", [
    (np.ones((2, 2)), r"block_weights must have shape \(3, 3\)"),
    (-WEIGHTS, "finite and non-negative"),
    (np.where(np.eye(3) == 1, 1.0, np.nan), "finite and non-negative"),
    (np.triu(WEIGHTS), "symmetric"),
    (WEIGHTS - np.diag([0.0, 0.6, 0.0]), r"block_weights\[1, 1\] is 0"),
])
def test_fit_hcl_checks_the_weights(weights, message):
    S, widths = _covariance()
    with pytest.raises(ValueError, match=message):
        fit_hcl(S, widths, STRUCTURE, block_weights=weights)


def test_auto_takes_lbfgs_for_unequal_weights():
    values = np.array([10.0, 8.0, 6.0, 1.0])  # a wide eigengap: growing without weights
    assert resolve_solver("auto", np, 800, values, 3) == "growing"
    assert resolve_solver("auto", np, 800, values, 3, block_weights=np.ones((3, 3))) == "growing"
    assert resolve_solver("auto", np, 800, values, 3, block_weights=WEIGHTS) == "lbfgs"
    assert resolve_solver("growing", np, 800, values, 3, block_weights=WEIGHTS) == "growing"


def test_fit_hcl_auto_with_unequal_weights_on_wide_data_runs_lbfgs():
    """``d >= 500`` with a clear eigengap would take the growing solver unweighted."""
    S, widths = _covariance(3, widths=(150, 200, 250), n=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_hcl(S, widths, STRUCTURE, random_state=0, block_weights=WEIGHTS)
    direct = fit_hcl(S, widths, STRUCTURE, random_state=0, solver="lbfgs",
                     block_weights=WEIGHTS)
    np.testing.assert_array_equal(fit.loadings, direct.loadings)


def test_weighted_fit_runs_in_the_namespace_of_the_covariance():
    xps = pytest.importorskip("array_api_strict")
    S, widths = _covariance(4)
    # NumPy takes the dense layout (Newton directions near the optimum), the strict
    # namespace the per-modality one: the same optimum, to the tolerance
    host = fit_hcl(S, widths, STRUCTURE, random_state=0, block_weights=WEIGHTS, tol=1e-10)
    strict = fit_hcl(xps.asarray(S), widths, STRUCTURE, random_state=0,
                     block_weights=WEIGHTS, tol=1e-10)
    assert strict.converged and host.converged
    np.testing.assert_allclose(strict.loadings, host.loadings,
                               atol=1e-7 * np.abs(host.loadings).max())
    assert strict.objective == pytest.approx(host.objective, rel=1e-10)
