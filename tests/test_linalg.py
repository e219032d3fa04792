"""The eigen entry point against LAPACK, and the covariance check's symmetric fast path."""

import numpy as np
import pytest
import scipy.linalg

from hcl_stats._input.validation import check_covariance
from hcl_stats._numerics.linalg import (
    lanczos_top,
    serial_blas,
    small_qr,
    top_eigh,
    top_eigvals,
)


@pytest.fixture(scope="module")
def spiked():
    # spiked covariance sample (d = 600 > the dense cut-off, so ARPACK is used)
    rng = np.random.default_rng(3)
    d, n, k = 600, 2000, 12
    U = np.linalg.qr(rng.standard_normal((d, k)))[0]
    X = rng.standard_normal((n, k)) * np.linspace(3, 1, k) @ U.T + rng.standard_normal((n, d))
    S = X.T @ X / (n - 1)
    values, vectors = scipy.linalg.eigh(S)
    return S, k, values[::-1][:k], vectors[:, ::-1][:, :k]


def _sin_theta(A, B):
    # largest principal-angle sine, from the residual of projecting B on span(A) (accurate
    # for tiny angles, unlike sqrt(1 - cos^2))
    return float(np.linalg.norm(B - A @ (A.T @ B), 2))


@pytest.mark.parametrize("mixed", [False, True])
def test_top_eigh_matches_lapack(spiked, mixed):
    S, k, ref_values, ref_vectors = spiked
    values, vectors = top_eigh(S, k, random_state=0, mixed=mixed)
    assert vectors.dtype == np.float64
    np.testing.assert_allclose(values, ref_values, rtol=1e-9)
    # the eigenvalue sum (what the noise estimate uses) to float64 accuracy either way
    assert values.sum() == pytest.approx(ref_values.sum(), rel=1e-11)
    assert _sin_theta(vectors, ref_vectors) < (1e-8 if not mixed else 1e-4)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-10)


def test_top_eigh_input_not_modified(spiked):
    S = spiked[0]
    before = S.copy()
    top_eigh(S, 5, mixed=True)
    np.testing.assert_array_equal(S, before)


def test_check_covariance_symmetric_and_nearly_symmetric():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 30))
    S = A @ A.T
    out = check_covariance(S, 30)
    np.testing.assert_array_equal(out, S)
    near = S.copy()
    near[0, 1] += 1e-12
    before = near.copy()
    out = check_covariance(near, 30)
    np.testing.assert_array_equal(out, out.T)
    np.testing.assert_array_equal(near, before)  # the caller's array is left alone
    assert out[0, 1] == pytest.approx(S[0, 1] + 0.5e-12, abs=1e-15)
    with pytest.raises(ValueError, match="not symmetric"):
        bad = S.copy()
        bad[0, 1] += 1.0
        check_covariance(bad, 30)


@pytest.mark.parametrize("block", [1, 4])
def test_lanczos_top_matches_lapack(spiked, block):
    # the stopped float32 Lanczos: the top-k sum (what the noise level needs) to far better
    # than 1e-4 relative, each value close, and a subspace good enough to start from
    S, k, ref_values, ref_vectors = spiked
    values, vectors, n_products = lanczos_top(S, k, rtol=1e-4, block=block, random_state=0)
    assert n_products > 0  # the Lanczos iterations answered, not the dense fall-back
    exact = scipy.linalg.eigvalsh(S)[::-1][:k]
    np.testing.assert_allclose(ref_values, exact, rtol=1e-12)
    assert values.sum() == pytest.approx(exact.sum(), rel=1e-5)
    assert values.sum() <= exact.sum() * (1 + 1e-6)  # Ritz values from below
    np.testing.assert_allclose(values, exact, rtol=1e-3)
    assert _sin_theta(vectors, ref_vectors) < 0.05
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-5)


def test_lanczos_top_more_values_than_one_check_interval():
    # one vector per block and k above the number of blocks between Ritz checks: the first
    # check must wait until the basis holds k vectors (it once asked LAPACK for more
    # Ritz values than the Krylov matrix had)
    rng = np.random.default_rng(3)
    d, k = 400, 45
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    spectrum = np.concatenate([np.linspace(60.0, 10.0, k), rng.uniform(0.5, 1.5, d - k)])
    S = (Q * spectrum) @ Q.T
    values, vectors, n_products = lanczos_top(S, k, rtol=1e-4, block=1, random_state=0)
    assert values.shape == (k,) and vectors.shape == (d, k)
    exact = scipy.linalg.eigvalsh(S)[::-1][:k]
    assert values.sum() == pytest.approx(exact.sum(), rel=1e-5)
    np.testing.assert_allclose(values, exact, rtol=1e-3)


def test_lanczos_top_small_matrices_use_lapack():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((50, 50))
    S = A @ A.T
    values, vectors, n_products = lanczos_top(S, 5)
    assert n_products == 0
    np.testing.assert_allclose(values, scipy.linalg.eigvalsh(S)[::-1][:5], rtol=1e-10)


@pytest.mark.parametrize("d", [5, 16, 120])
def test_top_eigvals_are_the_values_of_top_eigh(d):
    """The values without the vectors are the same bits (LAPACK's bisection computes them
    either way), also with repeated eigenvalues and on a non-contiguous block."""
    rng = np.random.default_rng(d)
    A = rng.standard_normal((d + 3, d + 3))
    spread = A @ A.T
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    repeated = (Q * np.repeat([3.0, 1.0], [d // 2, d - d // 2])) @ Q.T
    for S in (spread[1:d + 1, 1:d + 1], (repeated + repeated.T) / 2):
        reference = scipy.linalg.eigvalsh(S)[::-1]
        for k in sorted({1, 2, d // 3, d - 1} - {0}):
            values = top_eigvals(S, k)
            np.testing.assert_array_equal(values, top_eigh(S, k)[0])
            np.testing.assert_allclose(values, reference[:k], rtol=1e-10,
                                       atol=1e-12 * reference[0])
    with pytest.raises(ValueError, match="infs or NaNs"):
        top_eigvals(np.full((4, 4), np.nan), 2)


@pytest.mark.parametrize("shape", [(5, 1), (8, 3), (16, 16), (64, 11), (120, 32), (50, 40), (300, 140)])
def test_small_qr_is_numpys_reduced_q(shape):
    rng = np.random.default_rng(shape[0])
    A = rng.standard_normal(shape)
    for a in (A, A[::-1]):  # contiguous and strided
        Q = small_qr(a)
        np.testing.assert_allclose(Q, np.linalg.qr(a)[0], rtol=0, atol=1e-12)
        assert Q.flags.c_contiguous  # as NumPy's, for products that read it alike
        np.testing.assert_allclose(Q.T @ Q, np.eye(shape[1]), atol=1e-12)
        np.testing.assert_allclose(Q @ (Q.T @ a), a, atol=1e-12)


def test_serial_blas_nested_in_the_same_thread_keeps_one_thread():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return sorted(lib["num_threads"] for lib in threadpool_info()
                      if lib["user_api"] == "blas")

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with serial_blas():
            assert set(blas_threads()) == {1}
            with serial_blas():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}  # the inner exit restored nothing
        assert blas_threads() == before
