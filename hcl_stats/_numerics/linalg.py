"""The single eigen / SVD entry point, with a deterministic sign convention.

Every decomposition in the package goes through :func:`top_eigh` or :func:`svd_flip_signs`
so that results are reproducible across solvers: each eigen/singular vector is flipped so
that its entry of largest absolute value is positive.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from threadpoolctl import ThreadpoolController

from hcl_stats._numerics.random import as_generator

__all__ = ["top_eigh", "flip_signs", "orthonormal_basis", "procrustes_rotation", "lapack_svd",
           "truncated_svd", "singular_values"]

# Below this size, or when more than this fraction of the spectrum is wanted, a dense
# LAPACK call beats ARPACK's Lanczos iterations (measured on a 2-core machine: at d = 1400,
# k = 21 ARPACK takes 0.03 s, LAPACK's subset driver 0.14 s and the full eigh 0.44 s).
_DENSE_BELOW = 300
_DENSE_FRACTION = 0.2
# The same rule for singular triplets of data matrices (ARPACK's svds below LAPACK's SVD).
_DENSE_SVD_BELOW = 100


_CONTROLLER = None


def serial_blas():
    """Context in which every BLAS library runs one thread.

    NumPy and SciPy ship separate OpenBLAS builds with separate thread pools. ARPACK
    alternates between them (NumPy's for our matrix-vector products, SciPy's for its own
    orthogonalisation), and each pool's idle threads spin for a while after a call, so the
    two pools fight over the cores: on 2 cores the Lanczos iterations took 0.05 to 0.2 s at
    d = 1400 instead of 0.05 s. Its matrix-vector products are memory bound, so one thread
    loses nothing.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            _CONTROLLER = ThreadpoolController()
        except Exception:  # pragma: no cover - introspection unavailable on this platform
            return contextlib.nullcontext()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def flip_signs(vectors):
    """Flip columns so that the entry of largest magnitude in each is positive."""
    vectors = np.asarray(vectors)
    if vectors.size == 0:
        return vectors
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def top_eigh(S, k, *, random_state=None, mixed=False):
    """Largest ``k`` eigenpairs of the symmetric matrix ``S``, in decreasing order.

    Uses ARPACK (``scipy.sparse.linalg.eigsh``) for a few eigenpairs of a large matrix and
    LAPACK otherwise. The start vector of ARPACK is drawn from ``random_state`` so that the
    result is reproducible; eigenvectors follow the package sign convention.

    With ``mixed=True`` the Lanczos iterations run on a float32 copy of ``S`` (half the
    memory traffic per matrix-vector product, which is what they cost) to a relative
    tolerance of ``1e-5``, and one float64 Rayleigh-Ritz step on the subspace found gives
    the returned pairs. The Ritz values' error is second order in the subspace error: on
    the authors' design (d = 1400, k = 21) the sum of the eigenvalues agrees with float64
    ARPACK to about 1e-11 relative (residuals ``||S v - lambda v||`` about ``5e-6 lambda_1``).
    If a float64 residual exceeds ``1e-4 lambda_1`` the float64 iterations are run instead.
    For callers that need eigenvalues and a starting subspace, not accurate eigenvectors.

    Returns
    -------
    values : ndarray of shape (k,)
    vectors : ndarray of shape (d, k)
    """
    d = S.shape[0]
    k = int(min(k, d))
    if k == 0:
        return np.zeros(0), np.zeros((d, 0))
    if d <= _DENSE_BELOW or k > _DENSE_FRACTION * d or k >= d - 1:
        values, vectors = scipy.linalg.eigh(S, subset_by_index=[d - k, d - 1])
    else:
        rng = as_generator(random_state)
        v0 = rng.standard_normal(d)
        values = None
        with serial_blas():
            if mixed:
                values, vectors = _top_eigh_mixed(S, k, v0)
            if values is None:
                values, vectors = scipy.sparse.linalg.eigsh(S, k=k, which="LA", v0=v0,
                                                            tol=1e-12)
    order = np.argsort(values)[::-1]
    return values[order], flip_signs(vectors[:, order])


def _top_eigh_mixed(S, k, v0):
    """Float32 Lanczos, float64 Rayleigh-Ritz (see :func:`top_eigh`); ``(None, None)`` if
    the float64 residuals say the float32 subspace is not good enough."""
    S32 = S.astype(np.float32)
    op = scipy.sparse.linalg.LinearOperator(
        S.shape, matvec=lambda v: S32 @ v.astype(np.float32, copy=False), dtype=np.float32)
    try:
        _, V = scipy.sparse.linalg.eigsh(op, k=k, which="LA", v0=v0.astype(np.float32),
                                         tol=1e-5)
    except scipy.sparse.linalg.ArpackNoConvergence:
        return None, None
    Q, _ = np.linalg.qr(V.astype(np.float64))
    SQ = S @ Q
    values, U = np.linalg.eigh(Q.T @ SQ)
    vectors = Q @ U
    residual = SQ @ U - vectors * values
    size = max(float(np.abs(values).max()), np.finfo(float).tiny)
    if not np.all(np.isfinite(values)) or np.linalg.norm(residual, axis=0).max() > 1e-4 * size:
        return None, None
    return values, vectors


def orthonormal_basis(A, *, rtol=1e-10):
    """Orthonormal basis of the column space of ``A`` (numerically rank-revealing)."""
    if A.shape[1] == 0:
        return A.copy()
    U, s, _ = scipy.linalg.svd(A, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return U[:, :0]
    keep = s > rtol * s[0]
    return flip_signs(U[:, keep])


def procrustes_rotation(source, target):
    """Orthogonal ``R`` minimising ``||source @ R - target||_F`` (columns padded if needed).

    ``source`` and ``target`` may have different numbers of columns; the smaller one is
    padded with zero columns, so ``R`` has shape ``(k_source, k_target)``.
    """
    k_s, k_t = source.shape[1], target.shape[1]
    k = max(k_s, k_t)
    src = np.zeros((source.shape[0], k))
    tgt = np.zeros((target.shape[0], k))
    src[:, :k_s] = source
    tgt[:, :k_t] = target
    R, _ = scipy.linalg.orthogonal_procrustes(src, tgt)
    return R[:k_s, :k_t]


def lapack_svd(Y, *, compute_uv=True):
    """Thin LAPACK SVD; falls back from ``gesdd`` to ``gesvd``, which can fail to converge."""
    try:
        return scipy.linalg.svd(Y, full_matrices=False, compute_uv=compute_uv,
                                check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(Y, full_matrices=False, compute_uv=compute_uv,
                                lapack_driver="gesvd", check_finite=False)


def _flip(U, s, Vt):
    """Sign convention: the largest-magnitude entry of each right singular vector is positive."""
    if Vt.shape[0] == 0:
        return U, s, Vt
    flipped = flip_signs(Vt.T)
    signs = np.where(np.sum(flipped * Vt.T, axis=0) < 0, -1.0, 1.0)
    return U * signs, s, Vt * signs[:, None]


def truncated_svd(Y, k, *, random_state=0):
    """Top ``k`` singular triplets of ``Y`` in decreasing order (package sign convention).

    A few triplets of a large matrix come from ARPACK (``svds``, seeded start vector);
    otherwise very tall or wide matrices go through the eigendecomposition of their small
    Gram matrix (accurate to about ``eps * s_1^2 / (gap * s_k)`` for the leading
    triplets, the only ones used) and the rest through LAPACK's SVD.

    Returns
    -------
    U : ndarray of shape (n, k)
    s : ndarray of shape (k,)
    Vt : ndarray of shape (k, p)
    """
    n, p = Y.shape
    k = int(min(k, n, p))
    if k <= 0:
        return np.zeros((n, 0)), np.zeros(0), np.zeros((0, p))
    small = min(n, p)
    if small > _DENSE_SVD_BELOW and k <= _DENSE_FRACTION * small:
        rng = as_generator(random_state)
        v0 = rng.standard_normal(small)
        U, s, Vt = scipy.sparse.linalg.svds(Y, k=k, v0=v0, tol=1e-12)
        order = np.argsort(s)[::-1]
        return _flip(U[:, order], s[order], Vt[order])
    if n > 3 * p or p > 3 * n:
        tall = n > p
        G = Y.T @ Y if tall else Y @ Y.T
        values, vectors = scipy.linalg.eigh(G, check_finite=False)
        values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
        s = np.sqrt(np.clip(values, 0.0, None))
        keep = s > 1e-13 * max(s[0], 1e-300)
        other = (Y @ vectors) if tall else (Y.T @ vectors)
        other[:, keep] /= s[keep]
        other[:, ~keep] = 0.0
        if tall:
            return _flip(other, s, vectors.T)
        return _flip(vectors, s, other.T)
    U, s, Vt = lapack_svd(Y)
    return _flip(U[:, :k], s[:k], Vt[:k])


def singular_values(Y):
    """All ``min(n, p)`` singular values of ``Y`` in decreasing order.

    For a very tall or wide matrix they come from the eigenvalues of the small Gram matrix
    (accurate for the leading values, which is what rank tests compare).
    """
    n, p = Y.shape
    if n > 4 * p or p > 4 * n:
        G = Y.T @ Y if n > p else Y @ Y.T
        values = scipy.linalg.eigvalsh(G, check_finite=False)[::-1]
        return np.sqrt(np.clip(values, 0.0, None))
    return lapack_svd(Y, compute_uv=False)
