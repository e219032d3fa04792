"""Wide data (n << p): the rank-aware eigendecomposition, and the selection and fit on it."""

import numpy as np
import pytest

import hcl_stats._estimation.selection as selection_module
from hcl_stats import HCL, Structure
from hcl_stats._estimation.pipeline import _rescaled, _rescaled_own
from hcl_stats._input.validation import check_covariance
from hcl_stats._numerics.linalg import range_eigh, serial_blas, small_eigh
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._statistics.scaling import feature_scales
from hcl_stats.datasets import make_hierarchical
from hcl_stats.selection import select_structure


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # dense references of a few hundred rows: on a busy machine a BLAS thread pool's
    # spinning costs far more than the work
    with serial_blas():
        yield


def _covariance(X):
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc / (X.shape[0] - 1)


def _sin_theta(A, B):
    """Largest principal-angle sine between the column spaces (orthonormal A, B)."""
    return float(np.linalg.norm(B - A @ (A.T @ B), 2))


def _spiked_wide(n, p, seed, scales=None):
    """Data covariance of n samples (rank exactly n - 1), four well separated spikes."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((p, 4)))[0]
    X = (rng.standard_normal((n, 4)) * [40.0, 30.0, 20.0, 10.0]) @ U.T
    X += rng.standard_normal((n, p))
    return _covariance(X if scales is None else X * scales)


@pytest.mark.parametrize("scales", [None, np.logspace(-2, 2, 900)])
def test_range_eigh_is_numpys_eigh_on_a_data_covariance_of_rank_n_minus_1(scales):
    n, p = 40, 900
    S = _spiked_wide(n, p, seed=1, scales=scales)
    values, vectors = range_eigh(S, n - 1)
    ref_values, ref_vectors = np.linalg.eigh(S)
    assert values.shape == (p,) and vectors.shape == (p, n - 1)
    top = ref_values[-1]
    np.testing.assert_allclose(values, ref_values, rtol=0, atol=1e-12 * top)
    assert np.all(values[:p - (n - 1)] == 0)  # the null space, as zeros
    # the vectors span the range of S (the eigenvectors of its n - 1 non-zero values)
    assert _sin_theta(ref_vectors[:, p - (n - 1):], vectors) < 1e-10
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n - 1), atol=1e-12)
    residual = S @ vectors - vectors * values[p - (n - 1):]
    assert np.abs(residual).max() < 1e-11 * top
    # the leading (well separated) eigenvectors one by one
    for j in range(1, 4):
        assert abs(float(vectors[:, -j] @ ref_vectors[:, -j])) > 1 - 1e-12
    np.testing.assert_array_equal(range_eigh(S, n - 1, eigvals_only=True), values)


def test_range_eigh_repeated_eigenvalues_and_rank_below_the_bound():
    rng = np.random.default_rng(2)
    p = 1000
    Q = np.linalg.qr(rng.standard_normal((p, 25)))[0]
    S = (Q * np.repeat([3.0, 1.0], [5, 20])) @ Q.T
    S = (S + S.T) / 2
    values, vectors = range_eigh(S, 30)  # rank 25 under a bound of 30
    np.testing.assert_allclose(values[-25:], np.repeat([1.0, 3.0], [20, 5]), atol=1e-12)
    np.testing.assert_allclose(values[:-25], 0.0, atol=1e-12)
    # eigenspaces of the repeated eigenvalues, not individual vectors
    assert _sin_theta(Q[:, :5], vectors[:, -5:]) < 1e-10
    assert _sin_theta(Q[:, 5:], vectors[:, -25:-5]) < 1e-10


def test_range_eigh_float32_input():
    # (float32 rounding gives S a full rank of eigenvalues about 1e-9 of its trace)
    S = _spiked_wide(50, 800, seed=3).astype(np.float32)
    values, vectors = range_eigh(S, 49)
    assert values.dtype == np.float32 and vectors.dtype == np.float32
    ref_values, ref_vectors = np.linalg.eigh(S.astype(np.float64))
    assert vectors.shape == (800, 49)  # not the dense answer
    np.testing.assert_allclose(values, ref_values, rtol=0, atol=1e-6 * ref_values[-1])
    assert _sin_theta(ref_vectors[:, -4:], vectors[:, -4:].astype(np.float64)) < 1e-5


def test_range_eigh_is_the_dense_answer_where_it_does_not_apply():
    rng = np.random.default_rng(4)
    small = _covariance(rng.standard_normal((20, 200)))  # small: LAPACK
    tall = _covariance(rng.standard_normal((500, 100)))  # full rank: LAPACK
    noisy = _covariance(rng.standard_normal((30, 400))) + 0.1 * np.eye(400)  # bound wrong
    B = rng.standard_normal((400, 60))
    rank60 = B @ B.T  # rank 60 above the bound of 40 and the random block's 50 columns
    for S, bound in ((small, 19), (tall, 499), (noisy, 29), (rank60, 40)):
        for got, ref in zip(range_eigh(S, bound), small_eigh(S)):
            np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(range_eigh(S, bound, eigvals_only=True),
                                      small_eigh(S, eigvals_only=True))


WIDE = Structure({(0, 1): 2, (0,): 1, (1,): 1})


def test_selection_on_a_wide_design_is_the_dense_selection(monkeypatch):
    """On n << p the selection decomposes S_mm from its range; structure, ranks, noise
    and evidence are those of the dense eigendecompositions (to rounding)."""
    n, widths = 60, [700, 800]
    X = make_hierarchical(n, widths, WIDE, noise_variance=1.0, singular_values=(20, 40),
                          random_state=0)
    S, _, n = sample_covariance(X)
    wide_calls = []

    def spy(a, max_rank, **kwargs):
        out = range_eigh(a, max_rank, **kwargs)
        wide_calls.append(out[1].shape[1] < a.shape[0])
        return out

    monkeypatch.setattr(selection_module, "range_eigh", spy)
    fast = select_structure(S, widths, n_samples=n)
    assert wide_calls and all(wide_calls)  # the range path was taken
    monkeypatch.setattr(selection_module, "range_eigh", lambda a, k, **kw: small_eigh(a))
    dense = select_structure(S, widths, n_samples=n)
    assert fast.structure == dense.structure == WIDE
    for name in ("modality_rank", "pair_rank", "specific_rank"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(dense, name))
    np.testing.assert_allclose(fast.noise_variance, dense.noise_variance, rtol=1e-12)

    def tested(evidence):  # squared cosines at 0 or 1 are recorded only when rounding
        trivial = (evidence["step"] == "membership") & (
            (evidence["value"] - 0.5).abs() > 0.5 - 1e-9)  # puts them inside (0, 1)
        return evidence[~trivial].reset_index(drop=True)

    a, b = tested(fast.evidence), tested(dense.evidence)
    assert a.shape == b.shape
    labels = ["step", "subset", "modality", "component", "statistic", "selected", "rank"]
    assert a[labels].astype(str).equals(b[labels].astype(str))
    # (the sphericity statistic is a difference of numbers of order p: absolute rounding)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(a["threshold"], b["threshold"], rtol=1e-12)


@pytest.mark.parametrize("scale", ["auto", "features", None])
def test_fit_of_data_is_the_fit_of_its_covariance_bit_for_bit(scale):
    """HCL().fit rescales its own covariance in place and hands the selection the
    rescaled matrix symmetrised without a check; fit_from_covariance rescales a copy and
    the selection checks it: the same bits."""
    st = Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 1})
    X = make_hierarchical(300, [10, 20, 30], st, noise_variance=0.5, random_state=6)
    S, means, n = sample_covariance(X)
    given = S.copy()
    a = HCL(scale=scale).fit(X)
    b = HCL(scale=scale).fit_from_covariance(given, n, [10, 20, 30], means=means)
    np.testing.assert_array_equal(given, S)  # the caller's covariance is not modified
    assert a.structure_ == b.structure_
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    np.testing.assert_array_equal(a.noise_variance_, b.noise_variance_)
    assert a.selection_.equals(b.selection_)


@pytest.mark.parametrize("d", [7, 333])
def test_rescaled_own_is_the_checked_rescaled_covariance(d):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((50, d)) * rng.uniform(0.1, 10.0, d)
    S = _covariance(X)
    S = (S + S.T) / 2  # exactly symmetric, as the package's covariances are
    widths = [d // 3, d - d // 3]
    for scale in ("modality", "features"):
        factors = feature_scales(np.diag(S).copy(), widths, scale)
        reference = _rescaled(S, factors, np)
        assert not np.array_equal(reference, reference.T)  # rounding: an ulp apart
        rescaled, symmetrised = _rescaled_own(S.copy(), factors, True)
        np.testing.assert_array_equal(rescaled, reference)
        np.testing.assert_array_equal(symmetrised, check_covariance(reference, d))
        np.testing.assert_array_equal(symmetrised, symmetrised.T)
        alone, none = _rescaled_own(S.copy(), factors, False)
        np.testing.assert_array_equal(alone, reference)
        assert none is None
