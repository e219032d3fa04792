"""Functional numerical core of HCL: covariance, denoising, initialisation and the solver.

The estimator shell (:mod:`hcl_stats._hcl`) validates input and calls :func:`fit_hcl`; all
the numerics live here as plain functions of arrays.

Objective (METHOD.md section 2)::

    f(W) = 1/2 || W W^T - S_W ||_F^2,     W[rows of m, columns of S] = 0 unless m in S,

with ``S_W = S - Psi`` the denoised covariance. Only ``S_W W`` depends on the d x d matrix,
which is what the subspace solver exploits (see :func:`solve_subspace`).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from array_api_compat import device as array_device
import scipy.linalg
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._linalg import flip_signs, orthonormal_basis, top_eigh
from hcl_stats._backend import get_namespace, is_numpy, real_float_dtype, to_numpy
from hcl_stats._optim import CompactLBFGS

__all__ = [
    "HCLResult",
    "sample_covariance",
    "estimate_noise",
    "spectral_init",
    "solve_subspace",
    "solve_lbfgs",
    "objective",
    "canonical_rotation",
    "fit_hcl",
]


class HCLResult(NamedTuple):
    """What :func:`fit_hcl` returns."""

    loadings: np.ndarray  #: (d, K), exact zeros outside the mask
    noise_variance: np.ndarray  #: (M,)
    objective: float  #: f(W) at the solution
    n_iter: int  #: inner solver iterations in total
    converged: bool
    gradient_norm: float  #: ||grad f||_F / ||(S_W W) masked||_F at the solution
    init_loadings: np.ndarray  #: (d, K) the initialiser's loadings


def sample_covariance(blocks):
    """Unbiased sample covariance of the column-stacked, centred blocks.

    Blocks of any one array-API namespace (NumPy, CuPy, ...); the covariance stays in it.
    Returns ``(S, means, n_samples)`` with ``means`` as NumPy; the caller's arrays are not
    modified.
    """
    xp = get_namespace(*blocks)
    if is_numpy(xp):
        X = np.hstack([np.asarray(b, dtype=np.float64) for b in blocks])
    else:
        dtype = real_float_dtype(xp, array_device(blocks[0]))
        X = xp.concat([xp.astype(b, dtype) for b in blocks], axis=1)
    n = X.shape[0]
    means = xp.mean(X, axis=0)
    Xc = X - means
    S = Xc.T @ Xc
    S = S / (n - 1)
    return S, np.asarray(to_numpy(means), dtype=float), n


def modality_rows(n_features):
    """List of row slices, one per modality."""
    edges = np.concatenate([[0], np.cumsum(n_features)]).astype(int)
    return [slice(edges[m], edges[m + 1]) for m in range(len(n_features))]


def _trace(S):
    xp = get_namespace(S)
    return float(xp.sum(xp.linalg.diagonal(S)))


def _top_eigenpairs(S, k, *, random_state=None):
    """Top ``k`` eigenpairs of a symmetric array of any namespace, as NumPy, decreasing.

    NumPy input uses :func:`hcl_stats._linalg.top_eigh` (ARPACK or a LAPACK subset) in its
    mixed-precision mode: the fit needs the eigenvalues (noise level) and a starting
    subspace, both of which it gives to float64 accuracy at half the cost. Other
    namespaces use the standard's full ``eigh`` on their device.
    """
    xp = get_namespace(S)
    if is_numpy(xp):
        return top_eigh(np.asarray(S), k, random_state=random_state, mixed=True)
    values, vectors = xp.linalg.eigh(S)
    values = np.asarray(to_numpy(values), dtype=float)[::-1][:k]
    vectors = np.asarray(to_numpy(vectors), dtype=float)[:, ::-1][:, :k]
    return values, flip_signs(vectors)


def _subtract_diagonal(S, values):
    """``S - diag(values)`` as a new array in the namespace of ``S``."""
    xp = get_namespace(S)
    if is_numpy(xp):
        out = np.array(S, copy=True)
        out[np.diag_indices_from(out)] -= values
        return out
    dev = array_device(S)
    diag = xp.asarray(np.asarray(values, dtype=float), dtype=S.dtype, device=dev)
    return S - xp.eye(S.shape[0], dtype=S.dtype, device=dev) * diag


def estimate_noise(S, n_features, structure, denoise, eig=None, random_state=None):
    """Noise variance per modality for the ``denoise`` rule.

    ``"isotropic"`` (the paper): the mean of the ``d - K`` smallest eigenvalues of ``S``,
    computed as ``(trace(S) - sum of the K largest) / (d - K)`` so only the top ``K``
    eigenvalues are needed. ``"modality"``: the same rule inside each modality, with
    ``K`` replaced by the number of factors loading on it. ``None``: no denoising
    (``Psi = 0``). A number or one number per modality: taken as given.

    Returns
    -------
    noise_variance : ndarray of shape (M,)
    eig : tuple (values, vectors) of the top-K eigenpairs of S when computed here, else None
    """
    M = len(n_features)
    d = S.shape[0]
    K = structure.n_components
    if denoise is None or (isinstance(denoise, str) and denoise == "none"):
        return np.zeros(M), eig
    if isinstance(denoise, str):
        if denoise == "isotropic":
            if d <= K:
                raise ValueError(
                    f"denoise='isotropic' needs more features than factors (d={d}, K={K})"
                )
            if eig is None:
                eig = _top_eigenpairs(S, K, random_state=random_state)
            sigma2 = (_trace(S) - eig[0].sum()) / (d - K)
            return np.full(M, max(sigma2, 0.0)), eig
        if denoise == "modality":
            out = np.empty(M)
            for m, rows in enumerate(modality_rows(n_features)):
                r = structure.modality_rank(m)
                p = n_features[m]
                if p <= r:
                    raise ValueError(
                        f"denoise='modality' needs modality {m} to have more features ({p}) "
                        f"than factors ({r})"
                    )
                Smm = S[rows, rows]
                vals = _top_eigenpairs(Smm, r, random_state=random_state)[0]
                out[m] = max((_trace(Smm) - vals.sum()) / (p - r), 0.0)
            return out, eig
        raise ValueError(
            f"denoise must be 'isotropic', 'modality', None or noise variances, got {denoise!r}"
        )
    values = np.asarray(denoise, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.full(M, values[0])
    if values.size != M or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"denoise given as noise variances needs {M} non-negative finite values, "
            f"got {denoise!r}"
        )
    return values, eig


def objective(S_W, W, *, sq_norm_S=None, SW_W=None):
    """``1/2 ||W W^T - S_W||_F^2`` without forming ``W W^T``.

    ``sq_norm_S = ||S_W||_F^2`` and ``SW_W = S_W @ W`` are reused when the caller has them.
    """
    if sq_norm_S is None:
        sq_norm_S = float(np.sum(S_W * S_W))
    if SW_W is None:
        SW_W = S_W @ W
    G = W.T @ W
    return 0.5 * (sq_norm_S - 2.0 * float(np.sum(W * SW_W)) + float(np.sum(G * G)))


def spectral_init(values, vectors, structure, n_features):
    """Structured initialiser for any structure: spectral solution, then block rotation.

    Start from the unstructured minimiser ``W0 = V_K diag(sqrt(max(lambda, 0)))`` of the
    objective without a mask (top-K eigenpairs of ``S_W``). In the population every
    structured solution is ``W0 R`` for an orthogonal ``R``, and the columns of ``R`` for a
    block ``S`` span the latent directions that load on no modality outside ``S``, minus
    those of blocks on strict subsets of ``S``. So the blocks are peeled from the most
    specific to the most global: for each subset, among the latent directions not yet
    used, take the ``r_S`` whose energy lies most inside the rows of ``S`` (a generalised
    eigenproblem ``A_in v = mu A_all v``; for the global block, the directions of largest
    energy). Finally zero the entries outside the mask. This is exact in the population for
    an identifiable structure and needs no random starts; the solver then fixes what the
    noise perturbed.
    """
    K = structure.n_components
    d = vectors.shape[0]
    lam = np.clip(values[:K], 0.0, None)
    W0 = vectors[:, :K] * np.sqrt(lam)
    if W0.shape[1] < K:  # fewer eigenpairs than factors (tiny problems)
        W0 = np.hstack([W0, np.zeros((d, K - W0.shape[1]))])
    row_modality = np.repeat(np.arange(len(n_features)), n_features)
    R = np.zeros((K, K))
    free = np.eye(K)  # orthonormal basis of latent directions still unused
    order = sorted(structure.subsets, key=lambda s: (len(s), s))
    energy_all = W0.T @ W0
    for subset in order:
        r = structure.rank(subset)
        inside = np.isin(row_modality, subset)
        A_in = W0[inside].T @ W0[inside]
        a_in = free.T @ A_in @ free
        a_all = free.T @ energy_all @ free
        if len(subset) == structure.n_modalities:
            _, vecs = scipy.linalg.eigh(a_all)
            pick = vecs[:, ::-1][:, :r]
        else:
            # Regularise the energy metric so directions with no energy do not win.
            ridge = 1e-10 * max(np.trace(a_all), 1e-300) / max(a_all.shape[0], 1)
            _, vecs = scipy.linalg.eigh(a_in + ridge * np.eye(len(a_in)),
                                        a_all + ridge * np.eye(len(a_all)))
            pick = vecs[:, ::-1][:, :r]
        directions = orthonormal_basis(free @ pick)
        if directions.shape[1] < r:  # degenerate: complete with any unused directions
            extra = free - directions @ (directions.T @ free)
            directions = np.hstack([directions, orthonormal_basis(extra)])[:, :r]
        R[:, structure.columns(subset)] = directions
        rest = free - directions @ (directions.T @ free)
        free = orthonormal_basis(rest)[:, : free.shape[1] - r]
    W = W0 @ R
    W[~structure.mask(n_features)] = 0.0
    return W


def _newton(fun_grad, hessp, x0, *, max_iter, gtol_fn):
    """Trust-region Newton (scipy's trust-krylov) stopped by ``gtol_fn(x, g)``."""
    state = {"n": 0}

    def callback(intermediate_result):
        state["n"] += 1
        x = intermediate_result.x
        _, g = fun_grad(x)
        if gtol_fn(x, g):
            raise StopIteration

    res = scipy.optimize.minimize(fun_grad, x0, jac=True, hessp=hessp, method="trust-krylov",
                                  callback=callback, options={"maxiter": max_iter, "gtol": 1e-300})
    return res.x, max(state["n"], int(res.nit))


def solve_subspace(S_W, W_init, mask, n_features, *, basis_init=None, max_iter=1000,
                   tol=1e-5, max_outer=200):
    """Minimise the masked objective by a growing per-modality subspace (Davidson style).

    The objective depends on ``S_W`` only through ``S_W W``. Restricting each modality's
    loadings to a subspace ``U_m`` gives an exact small problem on ``T = U^T S_W U``
    (``U = blockdiag(U_m)``) that costs nothing per iteration. After solving it, the part of
    the full gradient outside ``span(U_m)``, ``-2 (I - U_m U_m^T) (S_W W)_m``, is appended
    to ``U_m`` and the small problem is solved again. The solution is a stationary point
    of the full problem when that outside part vanishes, which is the stopping rule (the
    relative gradient ``||grad||_F / ||(S_W W) masked||_F <= tol``). Each outer step costs
    one product of ``S_W`` with the new basis columns; no iteration touches a d x d product.
    """
    d, K = W_init.shape
    rows = modality_rows(n_features)
    M = len(rows)
    sq_norm_S = float(np.sum(S_W * S_W))
    # per-modality bases
    U = []
    for m, sl in enumerate(rows):
        cols = mask[sl.start]
        parts = [W_init[sl][:, cols]]
        if basis_init is not None:
            parts.append(basis_init[sl])
        U.append(orthonormal_basis(np.hstack(parts)))
    SU = [S_W[:, sl] @ U[m] for m, sl in enumerate(rows)]  # d x q_m each
    A = [U[m].T @ W_init[sl] for m, sl in enumerate(rows)]  # q_m x K each
    scale = max(float(np.abs(np.diag(S_W)).max()), np.finfo(float).tiny)
    n_iter = 0
    converged = False
    rel_grad = np.inf
    target = None  # inner tolerance on the in-subspace gradient (full units)
    for _ in range(max_outer):
        # gradient at the current point, split into the parts inside / outside span(U)
        W = np.vstack([U[m] @ A[m] for m in range(M)])
        SW_W = sum(SU[m] @ A[m] for m in range(M))
        grad = 2.0 * (W @ (W.T @ W) - SW_W)
        grad[~mask] = 0.0
        denom = max(float(np.linalg.norm(SW_W[mask])), np.finfo(float).tiny)
        rel_grad = float(np.linalg.norm(grad[mask])) / denom
        if rel_grad <= tol:
            converged = True
            break
        if n_iter >= max_iter:
            break
        outside = []
        for m, sl in enumerate(rows):
            out = grad[sl][:, mask[sl.start]]
            out = out - U[m] @ (U[m].T @ out)
            outside.append(out - U[m] @ (U[m].T @ out))  # re-orthogonalised
        g_out = float(np.sqrt(sum(np.sum(o * o) for o in outside)))
        g_in = float(np.sqrt(max(np.sum(grad[mask] ** 2) - g_out ** 2, 0.0)))
        if target is not None and g_out > g_in:
            # the subspace, not the small solve, limits progress: grow it
            grown = False
            for m, sl in enumerate(rows):
                if np.linalg.norm(outside[m]) <= 1e-12 * denom:
                    continue
                new = orthonormal_basis(outside[m])
                if new.shape[1] == 0:
                    continue
                U[m] = np.hstack([U[m], new])
                SU[m] = np.hstack([SU[m], S_W[:, sl] @ new])
                A[m] = np.vstack([A[m], np.zeros((new.shape[1], K))])
                grown = True
            if not grown and g_in <= 0.1 * tol * denom:
                break
        # solve the small problem in span(U), inexactly while the subspace is still growing
        target = max(0.5 * g_out, 0.3 * tol * denom)
        q = [u.shape[1] for u in U]
        offs = np.concatenate([[0], np.cumsum(q)]).astype(int)
        SU_all = np.hstack(SU)  # d x q
        T = np.vstack([U[m].T @ SU_all[rows[m]] for m in range(M)])  # q x q
        T = 0.5 * (T + T.T) / scale
        red_mask = np.vstack([np.broadcast_to(mask[rows[m].start], (q[m], K))
                              for m in range(M)])
        x0 = (np.vstack(A) / np.sqrt(scale))[red_mask]
        sqT = float(np.sum(T * T))
        red_target = target / scale ** 1.5

        def unpack(x, red_mask=red_mask):
            Am = np.zeros(red_mask.shape)
            Am[red_mask] = x
            return Am

        def fun_grad(x, T=T, red_mask=red_mask, sqT=sqT):
            Am = unpack(x)
            TA = T @ Am
            G = Am.T @ Am
            f = 0.5 * (sqT - 2.0 * np.sum(Am * TA) + np.sum(G * G))
            return f, (2.0 * (Am @ G - TA))[red_mask]

        def hessp(x, v, T=T, red_mask=red_mask):
            Am, V = unpack(x), unpack(v)
            H = 2.0 * (V @ (Am.T @ Am) + Am @ (V.T @ Am) + Am @ (Am.T @ V) - T @ V)
            return H[red_mask]

        x, it = _newton(fun_grad, hessp, x0, max_iter=max_iter - n_iter,
                        gtol_fn=lambda x, g, t=red_target: np.linalg.norm(g) <= t)
        n_iter += it
        A_full = unpack(x) * np.sqrt(scale)
        A = [A_full[offs[m]:offs[m + 1]] for m in range(M)]
    W = np.vstack([U[m] @ A[m] for m in range(M)])
    W[~mask] = 0.0
    return W, objective(S_W, W, sq_norm_S=sq_norm_S), n_iter, converged, rel_grad


# The float32 products of solve_lbfgs carry a relative error of about 1e-7 per entry, which
# accumulates in the carried S_W W; below this relative gradient the float64 products take over.
_FLOAT32_FLOOR = 1e-5
# ... as they do when the float32 phase has not halved the relative gradient in this many steps
# and a float64 product shows that rounding is the cause (the float32 relative gradient is off
# by more than _AGREE). A stall whose gradient float64 confirms is a plateau of the non-convex
# objective: on the authors' design the relative gradient sits near 5e-3 (or 1e-3) for 50 to
# 100 iterations, and leaving float32 there doubled the cost of the rest. The float32 phase
# then goes on from the exact S_W W.
_STALL_ITER = 50
_AGREE = 0.1
# On a device without float64 a stall ends the iterations, but only this close to the floor.
_ROUNDING_ZONE = 100.0
# Ridge of the ScaledGD preconditioner, relative to the mean eigenvalue of G_{C_m C_m}.
# Measured over 0 .. 1: 0.3 took 7-9% fewer iterations than 0.01 on the authors' design
# (seeds 500-506) and the same on moderate-noise M = 3, 4, 5 designs.
_PRECOND_RIDGE = 0.3


def _quartic_step(c1, c2, c3, c4):
    """Global minimiser over ``t > 0`` of ``q(t) = c1 t + c2 t^2 + c3 t^3 + c4 t^4``.

    ``c1 < 0`` (a descent direction) and ``c4 > 0`` (or ``c4 = 0`` with ``q`` bounded below).
    The roots of the quadratic ``q''`` split ``t > 0`` into intervals on which ``q'`` is
    monotone; each interval where ``q'`` goes from negative to positive holds one local
    minimiser, found by safeguarded Newton on ``q'``. Scalar arithmetic, because
    ``numpy.roots`` (a companion-matrix eigenproblem) cost more than the rest of an
    iteration's small-matrix work, and closed-form cubic roots lose accuracy when the
    quartic term is small. Returns ``(t, q(t))``, or ``None`` when ``q`` does not decrease.
    """
    a, b, c, e = 4.0 * c4, 3.0 * c3, 2.0 * c2, c1  # q'(t) = a t^3 + b t^2 + c t + e

    def dq(t):
        return ((a * t + b) * t + c) * t + e

    def d2q(t):
        return (3.0 * a * t + 2.0 * b) * t + c

    # positive roots of q''(t) = 3a t^2 + 2b t + c (numerically stable quadratic formula)
    A2, B2 = 3.0 * a, 2.0 * b
    splits = []
    if A2 != 0.0:
        disc = B2 * B2 - 4.0 * A2 * c
        if disc >= 0.0:
            qq = -0.5 * (B2 + math.copysign(math.sqrt(disc), B2))
            splits = [qq / A2] + ([c / qq] if qq != 0.0 else [])
    elif B2 != 0.0:
        splits = [-c / B2]
    splits = sorted(t for t in splits if t > 0.0 and math.isfinite(t))
    # an upper end where q' > 0
    hi = max(splits + [1.0])
    for _ in range(200):
        if dq(hi) > 0.0:
            break
        hi *= 2.0
    else:
        return None
    ends = [0.0] + splits + [hi]
    best = None
    for lo, up in zip(ends[:-1], ends[1:]):
        if not (dq(lo) < 0.0 < dq(up)):
            continue
        t = 0.5 * (lo + up)
        for _ in range(100):
            value = dq(t)
            if value > 0.0:
                up = t
            else:
                lo = t
            slope = d2q(t)
            t_new = t - value / slope if slope > 0.0 else 0.5 * (lo + up)
            if not lo < t_new < up:
                t_new = 0.5 * (lo + up)
            if abs(t_new - t) <= 1e-15 * t_new:
                t = t_new
                break
            t = t_new
        value = (((c4 * t + c3) * t + c2) * t + c1) * t
        if best is None or value < best[1]:
            best = (t, value)
    return best


def solve_lbfgs(S_W, W_init, mask, n_features, *, max_iter=1000, tol=1e-5, memory=4):
    """Minimise the masked objective by preconditioned L-BFGS with an exact line search.

    ``S_W`` may be any array-API array (NumPy, CuPy, ...); the iterations run in its
    namespace and on its device, and only ``K x K`` matrices and scalars go through the host.
    The variables are the free entries, kept modality by modality as ``(p_m, r_m)`` blocks
    (``r_m`` factors load on modality ``m``). Per iteration:

    * **One product** with ``S_W``: rows of modality ``m`` times the columns its subsets
      own, so the structural zeros cost nothing. ``S_W W`` is carried along as
      ``A <- A + t B`` with ``B = S_W D`` for the search direction ``D``.
    * **Exact line search.** Along a line the objective is a quartic polynomial in the step
      ``t`` whose coefficients follow from ``A``, ``B`` and ``K x K`` products; its global
      minimiser over ``t > 0`` is the step (:func:`_quartic_step`). No trial point costs
      another product, and the decrease is computed from the coefficients, without the
      cancellation of evaluating ``||S_W||^2 - 2 tr(W^T S_W W) + ||W^T W||^2`` twice.
    * **Cheap products first.** With float64 input the products use a float32 copy of
      ``S_W`` (half the memory traffic) until the relative gradient reaches
      ``max(tol, 1e-5)``; the gradient is then recomputed with one float64 product and the
      iterations continue in float64 until ``tol`` holds there. A stall in float32 (no
      halving in 50 iterations) is checked the same way: if the float64 gradient agrees,
      it is a plateau of the objective and float32 goes on from the exact ``S_W W``;
      otherwise rounding is the cause and float64 takes over. Reported values are float64.
      On a device without float64 everything runs in float32 and the iterations stop when
      progress stalls near the float32 floor.
    * The initial inverse Hessian is the ScaledGD preconditioner
      ``V_m -> V_m (G_{C_m C_m} + eps I)^{-1}`` with ``G = W^T W`` at the start, which evens
      out the curvature of strong and weak factors; the L-BFGS matrix is applied in compact
      form (:class:`hcl_stats._optim.CompactLBFGS`).

    (Measured and dropped on the authors' design: per-modality Sylvester and
    full-eigenbasis preconditioners, which needed more iterations than ScaledGD; solving
    first in a basis of leading per-modality eigenvectors, which saved few full iterations
    at high noise because the optimum spreads over many noise directions.)

    Returns
    -------
    W : ndarray of shape (d, K)
        NumPy, exact zeros outside ``mask``.
    f, n_iter, converged, rel_grad
    """
    xp = get_namespace(S_W)
    dev = array_device(S_W)
    dtype = S_W.dtype
    exact64 = dtype == xp.float64
    kw = {"dtype": dtype, "device": dev}
    d, K = W_init.shape
    rows = modality_rows(n_features)
    cols = [np.flatnonzero(mask[sl.start]) for sl in rows]
    active = [m for m in range(len(rows)) if cols[m].size]
    shapes = [(rows[m].stop - rows[m].start, cols[m].size) for m in active]
    offs = np.concatenate([[0], np.cumsum([p * r for p, r in shapes])]).astype(int)
    n_free = int(offs[-1])
    n_blocks = len(active)
    # ``where[i, k]``: position of W[i, k] among the packed free entries, or ``n_free`` (an
    # appended zero) outside the mask. Modality m's rows of S_W W need W[:, C_m] on all
    # rows: one ``take`` per modality builds it from the packed vector. (At these sizes an
    # iteration costs the number of array calls more than their arithmetic, so every
    # layout change is a single call; the K x K products are summed modality by modality,
    # which is three times cheaper than on zero-padded (d, K) arrays.)
    where = np.full((d, K), n_free, dtype=np.int64)
    for i, m in enumerate(active):
        p, r = shapes[i]
        where[rows[m], cols[m]] = offs[i] + np.arange(p * r).reshape(p, r)
    to_cols = [xp.asarray(where[:, cols[m]].ravel(), device=dev) for m in active]
    # flat positions of G[C_m, C_m] in G.ravel(): gathers and scatter-adds of the K x K
    # blocks are then single calls
    g_flat = [(cols[m][:, None] * K + cols[m][None, :]).ravel() for m in active]
    g_all = np.concatenate(g_flat)

    scale = max(float(xp.max(xp.abs(xp.linalg.diagonal(S_W)))), np.finfo(float).tiny)
    S_hi = S_W / scale
    S_lo = xp.astype(S_hi, xp.float32) if exact64 else S_hi
    rows_hi = [S_hi[rows[m], :] for m in active]
    rows_lo = [S_lo[rows[m], :] for m in active]
    zero = {dt: xp.zeros((1,), dtype=dt, device=dev) for dt in {dtype, S_lo.dtype}}
    if is_numpy(xp):  # the ndarray methods skip two Python-level wrappers per call
        reshape, take, concat = np.ndarray.reshape, np.ndarray.take, np.concatenate
    else:
        reshape, take, concat = xp.reshape, xp.take, xp.concat

    def split(v):  # packed -> list of (p_m, r_m) views
        return [reshape(v[offs[i]:offs[i + 1]], shapes[i]) for i in range(n_blocks)]

    def join(parts):
        return concat([reshape(p, (-1,)) for p in parts])

    def product(v, cheap):  # packed S_W V: modality m's rows times the columns it owns
        blocks = rows_lo if cheap else rows_hi
        ext = concat([v, zero[v.dtype]])
        if ext.dtype != blocks[0].dtype:
            ext = xp.astype(ext, blocks[0].dtype)
        out = join([blocks[i] @ reshape(take(ext, to_cols[i]), (d, shapes[i][1]))
                    for i in range(n_blocks)])
        return xp.astype(out, dtype) if out.dtype != dtype else out

    host = (lambda a: a) if is_numpy(xp) else (lambda a: np.asarray(to_numpy(a), dtype=float))
    device = (lambda a: a) if is_numpy(xp) else (lambda a: xp.asarray(a, **kw))

    def scatter(parts):  # per-modality r_m x r_m blocks -> their sum placed in (K, K)
        flat = host(concat([reshape(p, (-1,)) for p in parts]))
        return np.bincount(g_all, weights=flat, minlength=K * K).reshape(K, K)

    def gram(U, V):  # U^T V for packed U, V, as a (K, K) host array
        return scatter([u.T @ v for u, v in zip(split(U), split(V))])

    def gradient(x, A, G):  # 2 (W G - S_W W) on the free entries
        G2 = 2.0 * G.ravel()
        return join([xb @ device(G2[g_flat[i]].reshape(shapes[i][1:] * 2)) - 2.0 * ab
                     for i, (xb, ab) in enumerate(zip(split(x), split(A)))])

    W0 = np.asarray(W_init, dtype=float) / math.sqrt(scale)
    x = xp.asarray(np.concatenate([W0[rows[m]][:, cols[m]].ravel() for m in active]), **kw)
    pre = []
    for i in range(n_blocks):
        g = W0[:, cols[active[i]]].T @ W0[:, cols[active[i]]]  # G0[C_m, C_m]
        g = g + (_PRECOND_RIDGE * np.trace(g) / len(g) + 1e-12) * np.eye(len(g))
        pre.append(xp.asarray(np.linalg.inv(g), **kw))

    def precondition(v):
        return join([vb @ pre[i] for i, vb in enumerate(split(v))])

    hess = CompactLBFGS(n_free, precondition=precondition, memory=memory, xp=xp,
                        dtype=dtype, device=dev)
    cheap = exact64
    A = product(x, cheap)
    G = gram(x, x)
    grad = gradient(x, A, G)
    pgrad = precondition(grad)
    n_iter = 0
    best, best_iter = np.inf, 0
    tiny = np.finfo(float).tiny
    while True:
        rel = math.sqrt(float(grad @ grad)) / max(math.sqrt(float(A @ A)), tiny)
        if rel < 0.5 * best:
            best, best_iter = rel, n_iter
        stalled = n_iter - best_iter >= _STALL_ITER
        if cheap and (rel <= max(tol, _FLOAT32_FLOOR) or stalled):
            # converged in float32 (to be verified), or stalled: recompute exactly
            A = product(x, False)
            grad = gradient(x, A, G)
            pgrad = precondition(grad)
            rel_exact = math.sqrt(float(grad @ grad)) / max(math.sqrt(float(A @ A)), tiny)
            best, best_iter = rel_exact, n_iter
            plateau = (rel > max(tol, _FLOAT32_FLOOR)
                       and abs(rel_exact - rel) <= _AGREE * rel_exact)
            if not plateau:  # float32 has done what it can
                cheap = False
                continue
            rel = rel_exact
        elif not cheap and (rel <= tol or (stalled and not exact64 and
                                           rel <= _ROUNDING_ZONE * max(tol, _FLOAT32_FLOOR))):
            break
        if n_iter >= max_iter:
            break
        n_iter += 1
        D = -hess.apply(grad, pg=pgrad)
        slope = float(grad @ D)
        if not slope < 0:  # not a descent direction: restart from the preconditioner
            hess.reset()
            D = -pgrad
            slope = float(grad @ D)
            if not slope < 0:
                break
        B = product(D, cheap)
        Ds = split(D)
        WD = scatter([xb.T @ db for xb, db in zip(split(x), Ds)])
        F = scatter([db.T @ db for db in Ds])
        E = WD + WD.T
        c2 = 0.5 * (np.vdot(E, E) + 2.0 * np.vdot(G, F)) - float(D @ B)
        step = _quartic_step(slope, c2, np.vdot(E, F), 0.5 * np.vdot(F, F))
        if step is None:
            break
        t = float(step[0])
        s = t * D
        x = x + s
        A = A + t * B
        G = G + t * E + (t * t) * F
        grad_new = gradient(x, A, G)
        pgrad_new = precondition(grad_new)
        hess.update(s, grad_new - grad, py=pgrad_new - pgrad)
        grad, pgrad = grad_new, pgrad_new
    if cheap:  # stopped on max_iter or a failed step in float32: report exact values
        A = product(x, False)
        grad = gradient(x, A, G)
    W = np.zeros((d, K))
    for i, xb in enumerate(split(x)):
        W[rows[active[i]], cols[active[i]]] = np.asarray(to_numpy(xb), dtype=float)
    W *= math.sqrt(scale)
    rel_grad = math.sqrt(float(grad @ grad)) / max(math.sqrt(float(A @ A)), tiny)
    # f = 1/2 (||S_W||^2 - 2 <W, S_W W> + ||W^T W||^2), in the scaled units, then rescaled
    f = 0.5 * (float(xp.sum(S_hi * S_hi)) - 2.0 * float(x @ A) + float(np.vdot(G, G)))
    return W, f * scale ** 2, n_iter, rel_grad <= tol, rel_grad


def canonical_rotation(W, structure):
    """Rotate each block to its principal axes (orthogonal columns, decreasing norms).

    The objective is invariant to one orthogonal rotation per block; this picks the
    rotation that makes ``W[:, S]^T W[:, S]`` diagonal with decreasing entries, and applies
    the package sign convention, so fitted loadings are reproducible.
    """
    W = W.copy()
    for subset in structure.subsets:
        cols = structure.columns(subset)
        block = W[:, cols]
        if not np.any(block):
            continue
        _, _, Vt = scipy.linalg.svd(block, full_matrices=False)
        W[:, cols] = flip_signs(block @ Vt.T)
    return W


def fit_hcl(S, n_features, structure, *, denoise="isotropic", solver="lbfgs",
            max_iter=2000, tol=1e-5, random_state=None):
    """Fit HCL to a covariance matrix: the functional core behind :class:`hcl_stats.HCL`.

    Parameters
    ----------
    S : array of shape (d, d)
        Sample covariance of the stacked modalities: a NumPy array or an array of another
        array-API namespace (CuPy, ...), in which the ``d x d`` work then runs (float32 on a
        device without float64).
    n_features : sequence of int
        Modality widths ``p_m`` (rows of ``S`` in modality order).
    structure : Structure
        Bound structure (``structure.n_modalities == len(n_features)``).
    denoise, solver, max_iter, tol, random_state
        See :class:`hcl_stats.HCL`.

    Returns
    -------
    HCLResult
        With NumPy arrays, whatever the namespace of ``S``.
    """
    n_features = [int(p) for p in n_features]
    K = structure.n_components
    noise, eig = estimate_noise(S, n_features, structure, denoise, random_state=random_state)
    S_W = _subtract_diagonal(S, np.repeat(noise, n_features))
    if eig is not None and np.ptp(noise) == 0:
        values, vectors = eig[0] - noise[0], eig[1]
    else:
        values, vectors = _top_eigenpairs(S_W, K, random_state=random_state)
    mask = structure.mask(n_features)
    W_init = spectral_init(values, vectors, structure, n_features)
    if solver == "subspace":
        # NumPy only (scipy's trust-region Newton on the small problems)
        W, f, n_iter, converged, rel_grad = solve_subspace(
            np.asarray(to_numpy(S_W), dtype=float), W_init, mask, n_features,
            basis_init=vectors, max_iter=max_iter, tol=tol)
    elif solver == "lbfgs":
        W, f, n_iter, converged, rel_grad = solve_lbfgs(
            S_W, W_init, mask, n_features, max_iter=max_iter, tol=tol)
    else:
        raise ValueError(f"solver must be 'lbfgs' or 'subspace', got {solver!r}")
    if not np.all(np.isfinite(W)):
        raise FloatingPointError("the HCL solver produced non-finite loadings")
    if not converged:
        warnings.warn(
            f"HCL did not converge in {n_iter} iterations (relative gradient {rel_grad:.2e} > "
            f"tol={tol:g}); increase max_iter or loosen tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    W = canonical_rotation(W, structure)
    return HCLResult(W, noise, f, n_iter, converged, rel_grad, W_init)

