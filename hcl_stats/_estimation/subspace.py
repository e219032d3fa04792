"""The growing-subspace trust-region solver of the masked objective (``solver="subspace"``)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.optimize

from hcl_stats._numerics.linalg import orthonormal_basis
from hcl_stats._structure import row_slices


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


def _grow(U, SU, A, S_W, rows, outside, threshold):
    """Append to each ``U_m`` the directions of ``outside[m]``; whether any basis grew."""
    grown = False
    for m, sl in enumerate(rows):
        if np.linalg.norm(outside[m]) <= threshold:
            continue
        new = orthonormal_basis(outside[m])
        if new.shape[1] == 0:
            continue
        U[m] = np.hstack([U[m], new])
        SU[m] = np.hstack([SU[m], S_W[:, sl] @ new])
        A[m] = np.vstack([A[m], np.zeros((new.shape[1], A[m].shape[1]))])
        grown = True
    return grown


def _solve_small(U, SU, A, mask, rows, scale, *, max_iter, target):
    """Solve the exact small problem on ``T = U^T S_W U`` from ``A`` to gradient ``target``.

    Returns the new coefficients per modality and the iterations taken.
    """
    M, K = len(rows), mask.shape[1]
    q = [u.shape[1] for u in U]
    SU_all = np.hstack(SU)  # d x q
    T = np.vstack([U[m].T @ SU_all[rows[m]] for m in range(M)])  # q x q
    T = 0.5 * (T + T.T) / scale
    red_mask = np.vstack([np.broadcast_to(mask[rows[m].start], (q[m], K)) for m in range(M)])
    x0 = (np.vstack(A) / np.sqrt(scale))[red_mask]
    sqT = float(np.sum(T * T))

    def unpack(x):
        Am = np.zeros(red_mask.shape)
        Am[red_mask] = x
        return Am

    def fun_grad(x):
        Am = unpack(x)
        TA = T @ Am
        G = Am.T @ Am
        f = 0.5 * (sqT - 2.0 * np.sum(Am * TA) + np.sum(G * G))
        return f, (2.0 * (Am @ G - TA))[red_mask]

    def hessp(x, v):
        Am, V = unpack(x), unpack(v)
        H = 2.0 * (V @ (Am.T @ Am) + Am @ (V.T @ Am) + Am @ (Am.T @ V) - T @ V)
        return H[red_mask]

    red_target = target / scale ** 1.5
    x, it = _newton(fun_grad, hessp, x0, max_iter=max_iter,
                    gtol_fn=lambda x, g: np.linalg.norm(g) <= red_target)
    A_full = unpack(x) * np.sqrt(scale)
    return [A_full[sl] for sl in row_slices(q)], it


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
    rows = row_slices(n_features)
    M = len(rows)
    sq_norm_S = float(np.sum(S_W * S_W))
    U = []  # per-modality bases
    for sl in rows:
        parts = [W_init[sl][:, mask[sl.start]]]
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
            if not _grow(U, SU, A, S_W, rows, outside, 1e-12 * denom) \
                    and g_in <= 0.1 * tol * denom:
                break
        # solve the small problem in span(U), inexactly while the subspace is still growing
        target = max(0.5 * g_out, 0.3 * tol * denom)
        A, it = _solve_small(U, SU, A, mask, rows, scale, max_iter=max_iter - n_iter,
                             target=target)
        n_iter += it
    W = np.vstack([U[m] @ A[m] for m in range(M)])
    W[~mask] = 0.0
    return W, objective(S_W, W, sq_norm_S=sq_norm_S), n_iter, converged, rel_grad
