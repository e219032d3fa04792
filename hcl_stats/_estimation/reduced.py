"""HCL for many features: the structured problem in per-modality data subspaces.

Memory O(n d + d K) instead of the covariance path's O(d^2). The reduction rests on an
exact fact about the objective ``f(W) = 1/2 ||W W^T - S_W||_F^2`` with per-modality
isotropic noise ``S_W = S - blockdiag(sigma_m^2 I)``: on the rows of modality ``m`` and
the columns ``C_m`` of its blocks, every stationary point satisfies::

    W_m (G_{C_m C_m} + sigma_m^2 I) = X_m^T (X W)_{C_m} / (n - 1),     G = W^T W,

so ``W_m`` lies in the row space of the centred ``X_m``. Restricting ``W_m = Q_m C_m`` to an
orthonormal basis ``Q_m`` (``p_m x q_m``) of (an approximation of) that space turns ``f``
into the same objective on the small matrix ``T = Q^T S Q = (X Q)^T (X Q) / (n - 1)``
(``Q = blockdiag(Q_m)``), up to a constant that does not depend on ``C``; when ``Q_m``
spans the whole row space (``q_m >= rank X_m``) the reduced problem is exact. With fewer
columns, ``Q_m`` comes from randomized range finding (Halko, Martinsson and Tropp 2011,
subspace iteration) at ``q_m = r_m + n_oversamples`` columns, ``r_m`` the number of factors
loading on ``m``: the leading row space, which holds the signal. The small problem's
solution is then checked against the full problem: its gradient ``2 (W W^T W - S_W W)``
needs only ``S_W W = X^T (X W) / (n - 1) - Psi W`` (two passes over the data), and the part
the bases miss is appended to them until the full relative gradient is below ``tol``
(a Davidson-type expansion, as in :func:`hcl_stats._estimation.fit.solve_subspace`, but with data
products instead of ``S``). So the result is a stationary point of the covariance path's
objective, usually after 2-4 expansions of ``r_m`` columns each.

The noise is estimated from the residual energy without forming ``S``: ``trace(S)`` from
the column variances of the data, the leading eigenvalues from ``T`` (lower bounds of
those of ``S``, closer as the bases grow; the noise is re-estimated at each expansion).

Memory: the data, ``O(d q)`` for the bases and ``O(n q)`` for the scores ``X Q``
(``q`` = final basis size, a few times ``K``), and float64 row slices of bounded size
for the column moments. Time: a few tens of passes over the data, linear in ``n d``.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.fit import canonical_rotation, fit_hcl
from hcl_stats._estimation.noise import estimate_noise
from hcl_stats._numerics.linalg import orthonormal_basis
from hcl_stats._statistics.chunked import column_moments, iter_row_slices, release_pages

__all__ = ["ReducedResult", "fit_hcl_reduced", "reduced_ranks"]


class ReducedResult(NamedTuple):
    """What :func:`fit_hcl_reduced` returns."""

    loadings: np.ndarray  #: (d, K)
    noise_variance: np.ndarray  #: (M,)
    objective: float  #: objective of the last reduced problem
    n_iter: int
    converged: bool
    gradient_norm: float  #: relative gradient of the full problem
    init_loadings: np.ndarray  #: (d, K)
    means: list  #: per modality (p_m,)
    total_variance: np.ndarray  #: (M,) trace(S_mm)
    ranks: np.ndarray  #: (M,) the final basis sizes q_m


def _work_dtype(X):
    return np.float32 if X.dtype == np.float32 else np.float64


def _direct(X):
    """Whether products can use ``X`` whole (an in-memory float array, no conversion)."""
    return (type(X) is np.ndarray) and X.dtype in (np.float32, np.float64)


def _times(X, mu, Y):
    """``(X - 1 mu^T) @ Y`` of shape (n, q) in the work dtype, without centring ``X``."""
    dt = _work_dtype(X)
    Y = Y.astype(dt, copy=False)
    shift = (mu.astype(dt) @ Y)
    if _direct(X):
        out = X @ Y
    else:
        out = np.empty((X.shape[0], Y.shape[1]), dtype=dt)
        for sl in iter_row_slices(X.shape[0], X.shape[1]):
            out[sl] = np.asarray(X[sl], dtype=dt) @ Y
        release_pages(X)
    out -= shift
    return out


def _times_t(X, mu, Z):
    """``(X - 1 mu^T)^T @ Z`` of shape (p, q) in the work dtype, without centring ``X``."""
    dt = _work_dtype(X)
    Z = Z.astype(dt, copy=False)
    if _direct(X):
        out = X.T @ Z
    else:
        out = np.zeros((X.shape[1], Z.shape[1]), dtype=dt)
        for sl in iter_row_slices(X.shape[0], X.shape[1]):
            out += np.asarray(X[sl], dtype=dt).T @ Z[sl]
        release_pages(X)
    out -= np.outer(mu.astype(dt), Z.sum(axis=0))
    return out


def _orth(Y):
    return np.linalg.qr(Y)[0]


def range_basis(X, mu, q, *, n_power_iter, rng):
    """Orthonormal ``(p, q)`` float64 basis of the leading row space of the centred ``X``.

    Subspace iteration (Halko, Martinsson and Tropp 2011, Algorithm 4.4) on
    ``A = (X - 1 mu^T)^T`` with a Gaussian start, orthonormalising after every product;
    products run in ``X``'s dtype (float32 stays float32).
    """
    n = X.shape[0]
    dt = _work_dtype(X)
    omega = rng.standard_normal((n, q)).astype(dt)  # the same draws for every dtype
    Y = _orth(_times_t(X, mu, omega))
    for _ in range(n_power_iter):
        Z = _orth(_times(X, mu, Y))
        Y = _orth(_times_t(X, mu, Z))
    return _orth(Y.astype(np.float64))


def reduced_ranks(n_samples, n_features, structure, n_oversamples):
    """Subspace sizes ``q_m = min(p_m, n, r_m + n_oversamples)``."""
    return np.array([min(int(p), int(n_samples), structure.modality_rank(m) + n_oversamples)
                     for m, p in enumerate(n_features)], dtype=int)


def _noise(denoise, T, q, variances, n_features, structure):
    """Noise variances from the residual energy ``trace(S) - (leading eigenvalues of T)``."""
    if isinstance(denoise, str) and denoise in ("isotropic", "modality"):
        M = len(n_features)
        if denoise == "isotropic":
            d = int(sum(n_features))
            K = structure.n_components
            if d <= K:
                raise ValueError(
                    f"denoise='isotropic' needs more features than factors (d={d}, K={K})")
            top = np.sort(np.linalg.eigvalsh(T))[::-1][:K].sum()
            total = float(sum(v.sum() for v in variances))
            return np.full(M, max((total - top) / (d - K), 0.0))
        out = np.empty(M)
        edges = np.concatenate([[0], np.cumsum(q)]).astype(int)
        for m in range(M):
            r, p = structure.modality_rank(m), int(n_features[m])
            if p <= r:
                raise ValueError(
                    f"denoise='modality' needs modality {m} to have more features ({p}) "
                    f"than factors ({r})")
            Tmm = T[edges[m]:edges[m + 1], edges[m]:edges[m + 1]]
            top = np.sort(np.linalg.eigvalsh(Tmm))[::-1][:r].sum()
            out[m] = max((float(variances[m].sum()) - top) / (p - r), 0.0)
        return out
    return estimate_noise(T, q, structure, denoise)[0]


def _full_gradient(blocks, means, W, noise, mask, n_features, bases):
    """Relative gradient of the full problem at ``W`` and its parts outside the bases.

    ``S_W W`` costs two passes over the data (``X W``, then ``X^T (X W)``), never ``S``.
    Returns ``(relative gradient, [outside part of modality m, columns C_m])``.
    """
    n = blocks[0].shape[0]
    edges = np.concatenate([[0], np.cumsum(n_features)]).astype(int)
    rows = [slice(edges[m], edges[m + 1]) for m in range(len(blocks))]
    XW = sum(_times(X, means[m], W[rows[m]]).astype(np.float64)
             for m, X in enumerate(blocks))
    G = W.T @ W
    grad_sq = sw_sq = 0.0
    outside = []
    for m, X in enumerate(blocks):
        cols = mask[edges[m]]
        Wm = W[rows[m]][:, cols]
        SW = _times_t(X, means[m], XW[:, cols]).astype(np.float64) / (n - 1)
        SW -= noise[m] * Wm
        grad = 2.0 * (Wm @ G[np.ix_(cols, cols)] - SW)
        grad_sq += float(np.sum(grad * grad))
        sw_sq += float(np.sum(SW * SW))
        Q = bases[m]
        outside.append(None if Q is None else grad - Q @ (Q.T @ grad))
    rel = np.sqrt(grad_sq / sw_sq) if sw_sq > 0 else 0.0
    return float(rel), outside, float(np.sqrt(sw_sq))


def fit_hcl_reduced(blocks, structure, *, names=None, denoise="isotropic", solver="lbfgs",
                    max_iter=2000, tol=1e-5, n_oversamples=20, n_power_iter=3,
                    max_expansions=10, random_state=None):
    """Fit HCL from the data through per-modality subspaces, never forming ``S``.

    1. Per-modality bases ``Q_m`` by randomized range finding (``q_m`` columns).
    2. Solve the structured problem on ``T = (X Q)^T (X Q) / (n - 1)`` with
       :func:`hcl_stats._estimation.fit.fit_hcl`, noise from the residual energy.
    3. Gradient of the full problem at ``W = Q C`` (two passes over the data). If its
       relative norm exceeds ``tol``, append to each ``Q_m`` the part of the gradient
       outside it (at most ``r_m`` columns) and go back to 2 -- at most
       ``max_expansions`` times. At a solution of the reduced problem the gradient inside
       the bases vanishes, so the full gradient is exactly the part the bases miss; the
       iteration stops at a stationary point of the full problem (the covariance path's
       solution), typically after 2-4 rounds.

    Parameters
    ----------
    blocks : list of ndarray of shape (n_samples, p_m)
        The modalities (in-memory arrays or memmaps, float32 kept float32); only read.
    structure : Structure
        Bound structure.
    names : tuple of str or None, default=None
        Modality names (error messages).
    denoise, solver, max_iter, tol, random_state
        See :class:`hcl_stats.HCL`.
    n_oversamples : int, default=20
        Extra basis columns per modality beyond its number of factors.
    n_power_iter : int, default=3
        Subspace (power) iterations of the range finder.
    max_expansions : int, default=10
        Rounds of basis growth by the full gradient (0: solve the reduced problem once).

    Returns
    -------
    ReducedResult
        ``gradient_norm`` and ``converged`` refer to the full problem.
    """
    n = blocks[0].shape[0]
    n_features = [b.shape[1] for b in blocks]
    rng = np.random.default_rng(random_state)
    means, variances = column_moments(blocks, names)
    q = reduced_ranks(n, n_features, structure, n_oversamples)
    bases, scores = [], []
    for m, X in enumerate(blocks):
        if q[m] >= n_features[m]:  # the modality is small: keep all its coordinates
            bases.append(None)
            scores.append(_times(X, means[m], np.eye(n_features[m])).astype(np.float64))
            continue
        Q = range_basis(X, means[m], int(q[m]), n_power_iter=n_power_iter, rng=rng)
        bases.append(Q)
        scores.append(_times(X, means[m], Q).astype(np.float64))
    mask = structure.mask(n_features)
    out_edges = np.concatenate([[0], np.cumsum(n_features)]).astype(int)

    def lift(C, q):
        W = np.zeros((sum(n_features), C.shape[1]))
        in_edges = np.concatenate([[0], np.cumsum(q)]).astype(int)
        for m, Q in enumerate(bases):
            Cm = C[in_edges[m]:in_edges[m + 1]]
            W[out_edges[m]:out_edges[m + 1]] = Cm if Q is None else Q @ Cm
        return W

    n_iter = 0
    for expansion in range(max_expansions + 1):
        q = np.array([s.shape[1] for s in scores], dtype=int)
        Z = np.hstack(scores)
        T = Z.T @ Z
        T /= n - 1
        T = 0.5 * (T + T.T)
        del Z
        noise = _noise(denoise, T, q, variances, n_features, structure)
        result = fit_hcl(T, q, structure, denoise=noise, solver=solver, max_iter=max_iter,
                         tol=0.5 * tol, random_state=random_state)
        n_iter += int(result.n_iter)
        W = lift(result.loadings, q)
        if all(Q is None for Q in bases):  # the reduced problem is the full one
            rel, converged = float(result.gradient_norm), bool(result.converged)
            break
        rel, outside, scale = _full_gradient(blocks, means, W, noise, mask, n_features,
                                             bases)
        converged = rel <= tol
        if converged or expansion == max_expansions:
            break
        grown = False
        for m, out in enumerate(outside):
            if out is None or np.linalg.norm(out) <= 1e-3 * tol * scale:
                continue
            Q = bases[m]
            new = orthonormal_basis(out)
            new = orthonormal_basis(new - Q @ (Q.T @ new))  # re-orthogonalised
            if new.shape[1] == 0:
                continue
            bases[m] = np.hstack([Q, new])
            scores[m] = np.hstack([scores[m], _times(blocks[m], means[m], new)
                                   .astype(np.float64)])
            grown = True
        if not grown:
            break
    if not converged:
        warnings.warn(
            f"HCL (reduced path) stopped at a relative gradient of the full problem of "
            f"{rel:.2e} > tol={tol:g} after {expansion} basis expansions; increase "
            "max_expansions or n_oversamples, or loosen tol", ConvergenceWarning,
            stacklevel=3)
    return ReducedResult(
        loadings=canonical_rotation(W, structure),
        noise_variance=np.asarray(result.noise_variance, dtype=np.float64),
        objective=float(result.objective), n_iter=n_iter, converged=converged,
        gradient_norm=rel, init_loadings=lift(result.init_loadings, q), means=means,
        total_variance=np.array([v.sum() for v in variances]), ranks=q)
