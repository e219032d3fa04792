"""The single eigen / SVD entry point, with a deterministic sign convention.

Every decomposition in the package goes through :func:`top_eigh` or :func:`svd_flip_signs`
so that results are reproducible across solvers: each eigen/singular vector is flipped so
that its entry of largest absolute value is positive.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

from hcl_stats._numerics.random import as_generator

try:  # the LAPACK NumPy links (see small_qr)
    from numpy.linalg import lapack_lite as _lapack_lite
except ImportError:  # pragma: no cover - not in every NumPy
    _lapack_lite = None

__all__ = ["dense_eigh", "top_eigh", "top_eigvals", "lanczos_top", "flip_signs",
           "orthonormal_basis", "procrustes_rotation", "lapack_svd", "range_eigh", "small_eigh",
           "small_qr", "small_svd", "truncated_svd", "singular_values"]

# Below this size, or when more than this fraction of the spectrum is wanted, a dense
# LAPACK call beats ARPACK's Lanczos iterations (measured on a 2-core machine: at d = 1400,
# k = 21 ARPACK takes 0.03 s, LAPACK's subset driver 0.14 s and the full eigh 0.44 s).
_DENSE_BELOW = 300
_DENSE_FRACTION = 0.2
# The same rule for singular triplets of data matrices (ARPACK's svds below LAPACK's SVD).
_DENSE_SVD_BELOW = 100

# lanczos_top computes Ritz values once per this many basis columns (an eigenproblem of
# the basis size each time).
_RITZ_EVERY = 40

# range_eigh: columns of the random block beyond the rank bound, and the relative
# agreement of trace and squared Frobenius norm that shows the range was all found, by
# input type (on sample covariances of 30 to 300 samples, d = 800 to 2500, features
# scaled over four decades, rounding leaves at most 1e-15 in float64 and 1e-9 in float32,
# whose rounding gives the matrix a full rank of tiny eigenvalues)
_RANGE_OVERSAMPLE = 10
_RANGE_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-7}


_CONTROLLER = None


def serial_blas():
    """Context in which every BLAS library runs one thread.

    NumPy and SciPy ship separate OpenBLAS builds with separate thread pools. ARPACK
    alternates between them (NumPy's for our matrix-vector products, SciPy's for its own
    orthogonalisation), and each pool's idle threads spin for a while after a call, so the
    two pools fight over the cores: on 2 cores the Lanczos iterations took 0.05 to 0.2 s at
    d = 1400 instead of 0.05 s. Its matrix-vector products are memory bound, so one thread
    loses nothing.

    Inside another such context of the same thread the limit is already set, and the
    context does nothing (setting and restoring it cost more than a small fit's stage).
    """
    global _CONTROLLER
    if getattr(_SERIAL, "depth", 0):
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        try:
            _CONTROLLER = ThreadpoolController()
        except Exception:  # pragma: no cover - introspection unavailable on this platform
            return contextlib.nullcontext()
    return _serial_context(_CONTROLLER)


_SERIAL = threading.local()  # depth: serial_blas contexts entered by this thread


@contextlib.contextmanager
def _serial_context(controller):
    with controller.limit(limits=1, user_api="blas"):
        _SERIAL.depth = getattr(_SERIAL, "depth", 0) + 1
        try:
            yield
        finally:
            _SERIAL.depth -= 1


def flip_signs(vectors):
    """Flip columns so that the entry of largest magnitude in each is positive."""
    vectors = np.asarray(vectors)
    if vectors.size == 0:
        return vectors
    largest = vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])]
    # (negation is what multiplying by -1 gives, bit for bit; a zero column is kept)
    return np.where(largest < 0, -vectors, vectors)


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
    if dense_eigh(d, k):
        _check_finite(S)
        values, vectors = small_eigh(S, subset_by_index=[d - k, d - 1])
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


def dense_eigh(d, k):
    """Whether :func:`top_eigh` and :func:`lanczos_top` take the top ``k`` eigenpairs of
    a ``d x d`` matrix from a dense LAPACK call."""
    return d <= _DENSE_BELOW or k > _DENSE_FRACTION * d or k >= d - 1


def _check_finite(S):
    if not np.isfinite(S).all():  # the check of scipy.linalg.eigh
        raise ValueError("array must not contain infs or NaNs")


def top_eigvals(S, k, *, random_state=None, mixed=False):
    """The eigenvalues of :func:`top_eigh` (decreasing), without its eigenvectors where
    LAPACK gives the same values without them.

    On a float64 matrix that :func:`top_eigh` decomposes densely, fewer than all of its
    eigenvalues come from LAPACK's bisection (``syevr`` with a range of indices), whose
    values do not depend on whether eigenvectors are computed too: the same bits, without
    the inverse iterations and the back-transformation of the vectors. Otherwise
    :func:`top_eigh`'s values.
    """
    d = S.shape[0]
    k = int(min(k, d))
    if 0 < k < d and dense_eigh(d, k) and isinstance(S, np.ndarray) and S.dtype == np.float64:
        _check_finite(S)
        return small_eigh(S, eigvals_only=True, subset_by_index=[d - k, d - 1])[::-1]
    return top_eigh(S, k, random_state=random_state, mixed=mixed)[0]


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


def lanczos_top(S, k, *, rtol=1e-6, block=None, max_dim=None, random_state=None):
    """Top ``k`` eigenpairs of the symmetric ``S`` by a float32 block Lanczos, stopped early.

    For callers that need the sum of the top eigenvalues (a noise level) and a starting
    subspace, not accurate eigenvectors. Block Krylov iterations with blocks of ``block``
    columns (default ``k``) on a float32 copy of ``S``, so that each pass over ``S``
    (what an iteration costs) serves a whole block; full reorthogonalisation (twice
    classical Gram-Schmidt) against the basis so far; the Rayleigh quotient ``V^T S V``
    in float64 from the orthogonalisation coefficients. The iterations stop when the sum
    of the top ``k`` Ritz values changes by at most ``rtol`` relative from one block to
    the next (Ritz values increase monotonically towards the eigenvalues, and the change
    overestimates the remaining error once convergence is linear), or when the basis
    reaches ``max_dim`` columns (default ``min(d, max(20 k, 300))``).

    For float64 ``S`` the returned pairs come from one float64 Rayleigh-Ritz step on the
    span of the float32 Ritz vectors, so the eigenvalues are accurate to float64 level
    (their error is second order in the subspace error); for float32 ``S`` they are the
    float32 Ritz pairs. Small or nearly full problems (the same rule as :func:`top_eigh`)
    and basis exhaustion without convergence go to :func:`top_eigh`.

    Returns
    -------
    values : ndarray of shape (k,)
        Ritz values, decreasing (float64).
    vectors : ndarray of shape (d, k)
        Ritz vectors (float64, package sign convention).
    n_products : int
        Block products with ``S`` (0 when :func:`top_eigh` answered).
    """
    d = S.shape[0]
    k = int(min(k, d))
    if k == 0 or dense_eigh(d, k):
        return (*top_eigh(S, k, random_state=random_state, mixed=True), 0)
    b = int(block) if block is not None else k
    cap = int(min(d, max_dim if max_dim is not None else max(20 * k, 300)))
    S32 = S if S.dtype == np.float32 else S.astype(np.float32)
    rng = as_generator(random_state)
    # basis vectors as rows (contiguous for the matrix-vector products of the
    # reorthogonalisation); S is symmetric, so the block product is V_j^T S
    V = np.empty((cap + b, d), dtype=np.float32)
    V[:b] = np.linalg.qr(rng.standard_normal((d, b)))[0].T
    T = np.zeros((cap + b, cap + b))
    j, previous, n_products = 0, None, 0
    every = max(1, _RITZ_EVERY // b)
    with serial_blas():
        while j + b <= cap:
            W = V[j:j + b] @ S32
            n_products += 1
            basis = V[:j + b]
            H = W @ basis.T
            W -= H @ basis
            H2 = W @ basis.T
            W -= H2 @ basis
            H = (H + H2).astype(np.float64)
            T[j:j + b, :j + b] = H
            T[:j + b, j:j + b] = H.T
            m = j + b
            # Ritz values every few blocks, once the basis holds the k that are wanted
            if m >= k and ((m // b) % every == 0 or m + b > cap):
                values, Y = scipy.linalg.eigh(T[:m, :m], subset_by_index=[m - k, m - 1],
                                              check_finite=False)
                total = float(values.sum())
                if previous is not None and abs(total - previous) <= rtol * abs(total):
                    vectors = (Y.astype(np.float32).T @ V[:m]).T
                    values, vectors = _rayleigh_ritz(S, vectors, values)
                    return values, vectors, n_products
                previous = total
            V[m:m + b] = _orthonormal_rows(W)
            j = m
    return (*top_eigh(S, k, random_state=random_state, mixed=True), 0)


def _rayleigh_ritz(S, vectors, values):
    """Decreasing Ritz pairs; for float64 ``S`` refined by one float64 Rayleigh-Ritz step on
    the span of ``vectors`` (eigenvalue errors second order in the float32 subspace's)."""
    if S.dtype == np.float64:
        Q = np.linalg.qr(vectors.astype(np.float64))[0]
        SQ = S @ Q
        values, U = scipy.linalg.eigh(Q.T @ SQ, check_finite=False)
        vectors = Q @ U
    order = np.argsort(values)[::-1]
    return values[order], flip_signs(np.asarray(vectors[:, order], dtype=np.float64))


def _orthonormal_rows(W):
    """Orthonormal rows spanning those of ``W`` (a vector is normalised, a block QR'd)."""
    if W.shape[0] == 1:
        return W / max(float(np.linalg.norm(W)), np.finfo(np.float32).tiny)
    return np.linalg.qr(W.T)[0].T


# -- small dense decompositions ------------------------------------------------------------
# The structure selection and the initialiser decompose hundreds of matrices of a few to a
# few dozen rows per fit; there scipy.linalg's per-call argument handling and workspace query
# cost several times the LAPACK routine. These make the same LAPACK calls as
# scipy.linalg.eigh / eigvalsh (syevr, or sygvd with a second matrix) and scipy.linalg.svd
# / svdvals (gesdd) with check_finite=False, with the same workspace sizes (queried once
# per shape), so their results are the same; anything else goes to scipy.linalg.

@functools.lru_cache(maxsize=16)
def _float64_routine(name, ilp64=False):
    """The float64 LAPACK routine ``name`` (as scipy.linalg picks it for float64 input)."""
    return lapack.get_lapack_funcs(name, (np.empty((1, 1)),), ilp64=ilp64)


def _work_sizes(answer):
    """Integer workspace sizes from a LAPACK workspace query (its last entry is ``info``)."""
    if answer[-1] != 0:
        raise ValueError(f"LAPACK workspace query failed: {answer[-1]}")
    return tuple(int(x.real) for x in answer[:-1])


@functools.lru_cache(maxsize=256)
def _syevr_work(n):
    query = _float64_routine("syevr_lwork")
    return _work_sizes(query(n=n, lower=1))


@functools.lru_cache(maxsize=256)
def _gesdd_work(m, n, compute_uv, full_matrices):
    query = _float64_routine("gesdd_lwork", "preferred")
    return _work_sizes(query(m, n, compute_uv=compute_uv, full_matrices=full_matrices))[0]


def _plain_float64(a):
    return isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == 2 and a.size


def small_eigh(a, b=None, *, eigvals_only=False, subset_by_index=None):
    """``scipy.linalg.eigh(a, b, eigvals_only=eigvals_only, check_finite=False,
    subset_by_index=subset_by_index)`` (the same LAPACK call, see the comment above), for
    the small matrices decomposed many times; ``subset_by_index`` without ``b`` only."""
    def fallback():
        return scipy.linalg.eigh(a, b, eigvals_only=eigvals_only, check_finite=False,
                                 subset_by_index=subset_by_index)

    if not _plain_float64(a) or (b is not None and not _plain_float64(b)) or (
            b is not None and subset_by_index is not None):
        return fallback()
    if b is None:
        if a.shape == (1, 1) and subset_by_index is None:
            # what syevr returns for one row (LAPACK's own early exit: the entry, and 1)
            return a[0].copy() if eigvals_only else (a[0].copy(), np.ones((1, 1)))
        syevr = _float64_routine("syevr")
        lwork, liwork = _syevr_work(a.shape[0])
        subset = {}
        if subset_by_index is not None:
            lo, hi = (int(i) for i in subset_by_index)
            if not 0 <= lo <= hi < a.shape[0]:
                return fallback()  # scipy's error
            subset = {"range": "I", "il": lo + 1, "iu": hi + 1}  # Fortran indices
        w, v, found, _, info = syevr(a, compute_v=0 if eigvals_only else 1, lower=1,
                                     overwrite_a=0, lwork=lwork, liwork=liwork, **subset)
        if subset:
            w, v = w[:found], v[:, :found]
    else:
        sygvd = _float64_routine("sygvd")
        w, v, info = sygvd(a, b, itype=1, jobz="N" if eigvals_only else "V", uplo="L",
                           overwrite_a=0, overwrite_b=0)
    if info != 0:  # let scipy raise its error
        return fallback()
    return w if eigvals_only else (w, v)


def range_eigh(a, max_rank, *, eigvals_only=False, random_state=0):
    """``small_eigh(a)`` of a symmetric positive semi-definite ``a`` of rank at most
    ``max_rank`` (the covariance of ``max_rank + 1`` samples, say), from its range.

    Where LAPACK's ``O(d^3)`` would dominate (the size rule of :func:`dense_eigh` for
    ``w = max_rank + 10`` eigenpairs of a ``d x d`` matrix), the eigenpairs come from
    one product with a random ``d x w`` block ``Omega`` and one with the orthonormal
    basis ``Q`` of ``a Omega`` (``O(d^2 w)``): ``Q`` holds the whole range of ``a``
    (``a Omega`` has the rank of ``a`` for almost every ``Omega`` once ``w`` exceeds it),
    so the eigenpairs of ``Q^T a Q`` rotated by ``Q`` are those of ``a`` for its non-zero
    eigenvalues, up to rounding: an eigenvector of eigenvalue ``lambda_i`` is missed by
    an angle of order ``eps lambda_1 / lambda_i`` (the rounding of ``a Omega``), which
    moves the eigenvalues at second order. No iteration and no convergence criterion:
    not a randomised approximation but an exact decomposition where the rank bound
    holds. The other ``d - max_rank`` eigenvalues, zero, are returned as zeros without
    their eigenvectors. The bound is verified: what ``a`` holds outside ``span(Q)`` adds to its
    trace and to its squared Frobenius norm, which must be those of ``Q^T a Q`` to
    ``1e-12`` relative for float64 input (rounding leaves about ``1e-15``) and ``1e-7`` for
    float32 (whose rounding leaves about ``1e-9``); a matrix that fails, and a small or
    nearly full-rank one, gets :func:`small_eigh`'s dense answer.

    Parameters
    ----------
    a : ndarray of shape (d, d)
        Symmetric, positive semi-definite, float64 or float32 (decomposed in float64; the
        result in its type).
    max_rank : int
        Upper bound on the rank of ``a``.
    eigvals_only : bool, default=False
        Return the eigenvalues only.
    random_state : int, default=0
        Seed of ``Omega`` (the result does not depend on it beyond rounding).

    Returns
    -------
    values : ndarray of shape (d,)
        Increasing, as :func:`small_eigh`'s; from the range, the ``d - k`` not computed
        are zeros and come first (any computed value below zero is rounding).
    vectors : ndarray of shape (d, k)
        The eigenvectors of ``values[d - k:]`` (``k = d`` for the dense answer,
        ``k = min(max_rank, d)`` otherwise); not returned with ``eigvals_only``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((50, 800))
    >>> S = np.cov(X, rowvar=False)
    >>> values, vectors = range_eigh(S, 49)
    >>> vectors.shape
    (800, 49)
    >>> bool(np.allclose(values, np.linalg.eigvalsh(S), atol=1e-12))
    True
    """
    d = a.shape[0]
    w = int(max_rank) + _RANGE_OVERSAMPLE
    found = None
    if max_rank >= 0 and not dense_eigh(d, w) and isinstance(a, np.ndarray) and \
            a.dtype in (np.float32, np.float64):
        found = _range_pairs(a, int(max_rank), w, random_state, _RANGE_RTOL[a.dtype])
    if found is None:
        return small_eigh(a, eigvals_only=eigvals_only)
    theta, vectors = (x.astype(a.dtype, copy=False) for x in found)
    values = np.concatenate([np.zeros(d - theta.shape[0], dtype=a.dtype), theta])
    return values if eigvals_only else (values, vectors)


def _range_pairs(a, k, w, random_state, rtol):
    """The top ``k`` eigenpairs (increasing, float64) of ``a`` from the span of
    ``a Omega`` (``Omega``: ``d x w``), or None where ``a`` is found to hold more than
    that span (:func:`range_eigh`)."""
    a = np.asarray(a, dtype=np.float64)  # float32 input: its exact float64 values
    d = a.shape[0]
    Q = np.linalg.qr(a @ as_generator(random_state).standard_normal((d, w)))[0]
    B = Q.T @ (a @ Q)
    theta, Z = scipy.linalg.eigh((B + B.T) / 2, check_finite=False)
    # what a holds outside span(Q) adds to its trace (a is PSD) and to its squared
    # Frobenius norm (any symmetric a)
    trace = float(np.trace(a))
    frob2 = float(np.einsum("ij,ij->", a, a))
    tiny = np.finfo(float).tiny
    if not (abs(trace - theta.sum()) <= rtol * max(abs(trace), tiny) and
            abs(frob2 - theta @ theta) <= rtol * max(frob2, tiny)):
        return None
    return theta[w - k:], Q @ Z[:, w - k:]


def small_qr(a):
    """``numpy.linalg.qr(a)[0]`` (the reduced ``Q``) of a tall or square float64 matrix.

    The same LAPACK calls as NumPy's (``geqrf`` with its queried workspace, then
    ``orgqr``, from the LAPACK that NumPy links, through ``numpy.linalg.lapack_lite``),
    so the same bits, without the per-call overhead of ``numpy.linalg.qr``: several times
    the routines' cost on the few-column matrices of the structure selection. Anything
    else, or a NumPy without that module, goes to ``numpy.linalg.qr``.
    """
    if _lapack_lite is None or not _plain_float64(a) or a.shape[0] < a.shape[1]:
        return np.linalg.qr(a)[0]
    m, n = a.shape
    f = np.array(a.T, order="C")  # a in Fortran order, overwritten by the factorisation
    tau, work = np.empty(n), np.empty(1)
    _lapack_lite.dgeqrf(m, n, f, m, tau, work, -1, 0)  # workspace query, as NumPy's
    lwork = max(int(work[0]), n, 1)
    work = np.empty(lwork)
    if _lapack_lite.dgeqrf(m, n, f, m, tau, work, lwork, 0)["info"] != 0 or \
            _lapack_lite.dorgqr(m, n, n, f, m, tau, work, lwork, 0)["info"] != 0:
        return np.linalg.qr(a)[0]  # (NumPy's answer, or its error)
    # in NumPy's (C) order: the products that read Q round as they do with NumPy's
    return np.ascontiguousarray(f.T)


def small_svd(a, *, compute_uv=True, full_matrices=False):
    """``scipy.linalg.svd(a, full_matrices=full_matrices, check_finite=False)``, or with
    ``compute_uv=False`` ``scipy.linalg.svdvals(a, check_finite=False)`` (the same LAPACK
    call, see the comment above)."""
    # svdvals asks scipy.linalg.svd for full matrices (gesdd ignores it without vectors)
    full = int(full_matrices or not compute_uv)
    if _plain_float64(a):
        gesdd = _float64_routine("gesdd", "preferred")
        lwork = _gesdd_work(a.shape[0], a.shape[1], int(compute_uv), full)
        u, s, vt, info = gesdd(a, compute_uv=int(compute_uv), lwork=lwork,
                               full_matrices=full, overwrite_a=0)
        if info == 0:
            return (u, s, vt) if compute_uv else s
    # other input, or a failure: scipy's answer (or its error)
    return scipy.linalg.svd(a, full_matrices=bool(full), compute_uv=compute_uv,
                            check_finite=False)


def orthonormal_basis(A, *, rtol=1e-10):
    """Orthonormal basis of the column space of ``A`` (numerically rank-revealing)."""
    if A.shape[1] == 0:
        return A.copy()
    U, s, _ = small_svd(A)
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
