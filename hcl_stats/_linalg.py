"""The single eigen / SVD entry point, with a deterministic sign convention.

Every decomposition in the package goes through :func:`top_eigh` or :func:`svd_flip_signs`
so that results are reproducible across solvers: each eigen/singular vector is flipped so
that its entry of largest absolute value is positive.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

__all__ = ["top_eigh", "flip_signs", "orthonormal_basis", "procrustes_rotation", "lapack_svd",
           "truncated_svd", "singular_values"]

# Below this size, or when more than this fraction of the spectrum is wanted, a dense
# LAPACK call beats ARPACK's Lanczos iterations (measured on a 2-core machine: at d = 1400,
# k = 21 ARPACK takes 0.03 s, LAPACK's subset driver 0.14 s and the full eigh 0.44 s).
_DENSE_BELOW = 300
_DENSE_FRACTION = 0.2
# The same rule for singular triplets of data matrices (ARPACK's svds below LAPACK's SVD).
_DENSE_SVD_BELOW = 100


def flip_signs(vectors):
    """Flip columns so that the entry of largest magnitude in each is positive."""
    vectors = np.asarray(vectors)
    if vectors.size == 0:
        return vectors
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def top_eigh(S, k, *, random_state=None):
    """Largest ``k`` eigenpairs of the symmetric matrix ``S``, in decreasing order.

    Uses ARPACK (``scipy.sparse.linalg.eigsh``) for a few eigenpairs of a large matrix and
    LAPACK otherwise. The start vector of ARPACK is drawn from ``random_state`` so that the
    result is reproducible; eigenvectors follow the package sign convention.

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
        rng = np.random.default_rng(random_state if random_state is not None else 0)
        v0 = rng.standard_normal(d)
        values, vectors = scipy.sparse.linalg.eigsh(S, k=k, which="LA", v0=v0, tol=1e-12)
    order = np.argsort(values)[::-1]
    return values[order], flip_signs(vectors[:, order])


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
        rng = np.random.default_rng(random_state)
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
