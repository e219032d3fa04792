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
(a Davidson-type expansion, as in :func:`hcl_stats._estimation.subspace.solve_subspace`, but
with data products instead of ``S``). So the result is a stationary point of the covariance
path's objective.

The noise is estimated from the residual energy without forming ``S``: ``trace(S)`` from
the column variances of the data, the leading eigenvalues from ``T`` (lower bounds of
those of ``S``, closer as the bases grow; the noise is re-estimated at each expansion).

Memory: the data, ``O(d q)`` for the bases and ``O(n q)`` for the scores ``X Q``
(``q`` = final basis size, a few times ``K``), and float64 row slices of bounded size
for the column moments. Time: a few tens of passes over the data, linear in ``n d``.
See ``docs/large-data.md``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator

from hcl_stats._estimation.fit import (
    HCLFitResult,
    canonical_rotation,
    fit_hcl,
    warn_not_converged,
)
from hcl_stats._estimation.mle import solve_likelihood
from hcl_stats._estimation.noise import Spectrum, estimate_noise
from hcl_stats._estimation.principal_axis import alternate_noise
from hcl_stats._estimation.refine import likelihood_noise, per_rule
from hcl_stats._numerics.linalg import orthonormal_basis
from hcl_stats._numerics.random import as_generator
from hcl_stats._statistics.chunked import column_moments, iter_row_slices, release_pages
from hcl_stats._structure import row_slices

__all__ = ["fit_hcl_reduced", "reduced_ranks"]


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


def _leading(T, k):
    return np.sort(np.linalg.eigvalsh(T))[::-1][:k]


def reduced_spectrum(T, q, variances, n_features, structure):
    """:class:`Spectrum` for the noise rules: traces from the data, eigenvalues from ``T``."""
    blocks = row_slices(q)
    return Spectrum(
        n_features=tuple(int(p) for p in n_features), structure=structure,
        trace=float(sum(v.sum() for v in variances)),
        traces=tuple(float(v.sum()) for v in variances),
        top=lambda k: _leading(T, k),
        top_modality=lambda m, k: _leading(T[blocks[m], blocks[m]], k))


class _Bases:
    """Per-modality bases ``Q_m`` (``None``: all coordinates) and the scores ``X_m Q_m``.

    ``given``: the exact row spaces of the blocks
    (:class:`hcl_stats._estimation.compressed.RowSpaces`), whose bases, scores and ``T``
    are taken as they are instead of range finding with ``q_m`` columns."""

    def __init__(self, blocks, means, q, *, n_power_iter, rng, given=None):
        self.blocks, self.means = blocks, means
        self.n_features = [b.shape[1] for b in blocks]
        self.given = given
        if given is not None:
            self.bases, self.scores = list(given.bases), list(given.scores)
            return
        self.bases, self.scores = [], []
        for m, X in enumerate(blocks):
            if q[m] >= self.n_features[m]:
                # the modality is small: keep all its coordinates
                self.bases.append(None)
                self.scores.append(_times(X, means[m], np.eye(self.n_features[m]))
                                   .astype(np.float64))
                continue
            Q = range_basis(X, means[m], int(q[m]), n_power_iter=n_power_iter, rng=rng)
            self.bases.append(Q)
            self.scores.append(_times(X, means[m], Q).astype(np.float64))

    @property
    def exact(self):
        """Whether the reduced problem is the full one: every basis spans its whole
        modality, or the whole row space of its centred data (``given``)."""
        return self.given is not None or all(Q is None for Q in self.bases)

    def sizes(self):
        return np.array([s.shape[1] for s in self.scores], dtype=int)

    def reduced_covariance(self):
        """``T = (X Q)^T (X Q) / (n - 1)``, symmetrised."""
        if self.given is not None:  # (the bases of the row spaces never grow)
            return self.given.T
        Z = np.hstack(self.scores)
        T = Z.T @ Z
        T /= Z.shape[0] - 1
        return 0.5 * (T + T.T)

    def lift(self, C):
        """``W = blockdiag(Q_m) C`` of shape (d, K)."""
        W = np.zeros((sum(self.n_features), C.shape[1]))
        outer, inner = row_slices(self.n_features), row_slices(self.sizes())
        for m, Q in enumerate(self.bases):
            W[outer[m]] = C[inner[m]] if Q is None else Q @ C[inner[m]]
        return W

    def grow(self, outside, threshold):
        """Append to each ``Q_m`` the part of ``outside[m]`` it misses; whether any grew."""
        grown = False
        for m, out in enumerate(outside):
            if out is None or np.linalg.norm(out) <= threshold:
                continue
            Q = self.bases[m]
            new = orthonormal_basis(out)
            new = orthonormal_basis(new - Q @ (Q.T @ new))  # re-orthogonalised
            if new.shape[1] == 0:
                continue
            self.bases[m] = np.hstack([Q, new])
            self.scores[m] = np.hstack([self.scores[m], _times(self.blocks[m], self.means[m],
                                                               new).astype(np.float64)])
            grown = True
        return grown


def _full_gradient(blocks, means, W, noise, mask, n_features, bases):
    """Relative gradient of the full problem at ``W`` and its parts outside the bases.

    ``noise``: one variance per feature, shape (d,).

    ``S_W W`` costs two passes over the data (``X W``, then ``X^T (X W)``), never ``S``.
    Returns ``(relative gradient, [outside part of modality m, columns C_m], ||S_W W||)``.
    """
    n = blocks[0].shape[0]
    rows = row_slices(n_features)
    XW = sum(_times(X, means[m], W[rows[m]]).astype(np.float64)
             for m, X in enumerate(blocks))
    G = W.T @ W
    grad_sq = sw_sq = 0.0
    outside = []
    for m, X in enumerate(blocks):
        cols = mask[rows[m].start]
        Wm = W[rows[m]][:, cols]
        SW = _times_t(X, means[m], XW[:, cols]).astype(np.float64) / (n - 1)
        SW -= noise[rows[m], None] * Wm
        grad = 2.0 * (Wm @ G[np.ix_(cols, cols)] - SW)
        grad_sq += float(np.sum(grad * grad))
        sw_sq += float(np.sum(SW * SW))
        Q = bases[m]
        outside.append(None if Q is None else grad - Q @ (Q.T @ grad))
    rel = np.sqrt(grad_sq / sw_sq) if sw_sq > 0 else 0.0
    return float(rel), outside, float(np.sqrt(sw_sq))


def _diagonal_noise_fit(bases, T, C, variances, structure, *, max_iter, tol):
    """Per-feature noise on the reduced problem: the principal-axis alternation in the bases.

    ``f(Q C)`` with ``S_W = S - Psi`` is the same objective on ``Q^T S_W Q = T - Q^T Psi Q``
    (``Q^T Psi Q`` block diagonal, ``Q_m^T diag(psi_m) Q_m``), so the alternation of
    :func:`hcl_stats._estimation.principal_axis.alternate_noise` runs on ``q x q`` matrices;
    ``diag(S)`` comes from the column variances.
    """
    q = bases.sizes()
    inner, outer = row_slices(q), row_slices(bases.n_features)

    def denoised(psi):
        T_W = T.copy()
        for m, Q in enumerate(bases.bases):
            p = psi[outer[m]]
            T_W[inner[m], inner[m]] -= np.diag(p) if Q is None else (Q * p[:, None]).T @ Q
        return T_W

    return alternate_noise(denoised, bases.lift, np.concatenate(variances), C,
                           structure.mask(q), q, data_features=bases.n_features,
                           max_iter=max_iter, tol=tol)


def _data_covariance(blocks, means):
    """``V -> S_n V`` (divisor ``n``) as an operator: two passes over the data per product."""
    n = blocks[0].shape[0]
    n_features = [b.shape[1] for b in blocks]
    rows = row_slices(n_features)
    d = sum(n_features)

    def matmat(V):
        V = np.asarray(V, dtype=np.float64).reshape(d, -1)
        XV = sum(_times(X, means[m], V[rows[m]]).astype(np.float64)
                 for m, X in enumerate(blocks))
        return np.vstack([_times_t(X, means[m], XV).astype(np.float64)
                          for m, X in enumerate(blocks)]) / n

    return LinearOperator((d, d), matvec=matmat, matmat=matmat, dtype=np.float64)


def _likelihood_fit(blocks, means, variances, structure, W, psi, denoise, *, max_iter, tol):
    """Structured maximum likelihood from the data (:func:`solve_likelihood` on an operator)."""
    n = blocks[0].shape[0]
    n_features = [b.shape[1] for b in blocks]
    res = solve_likelihood(
        _data_covariance(blocks, means), n_features, structure.mask(n_features), W, psi,
        noise=likelihood_noise(denoise), n_samples=n, max_iter=max_iter, tol=tol,
        diag_S=np.concatenate(variances) * ((n - 1) / n))
    return res, per_rule(res.noise_variance, denoise, n_features)


def _reduced_solve(bases, T, noise, structure, variances, *, diagonal, solver, max_iter,
                   tol, random_state):
    """One reduced problem: the least-squares fit of ``T`` (and the per-feature noise).

    Returns ``(result of fit_hcl, W, psi (d,), f, n_iter, converged, rel_grad)``.
    """
    result = fit_hcl(T, bases.sizes(), structure, denoise=noise, solver=solver,
                     max_iter=max_iter, tol=tol, random_state=random_state)
    W, f, rel = bases.lift(result.loadings), result.objective, result.gradient_norm
    converged, psi, n_iter = result.converged, np.repeat(noise, bases.n_features), \
        result.n_iter
    if diagonal:
        C, psi, f, more, converged, rel = _diagonal_noise_fit(
            bases, T, result.loadings, variances, structure, max_iter=max_iter, tol=tol)
        n_iter, W = n_iter + more, bases.lift(C)
    return result, W, psi, f, n_iter, converged, rel


def fit_hcl_reduced(blocks, structure, *, names=None, denoise="isotropic", solver="auto",
                    max_iter=2000, tol=1e-5, n_oversamples=20, n_power_iter=3,
                    max_expansions=10, random_state=None, objective="least_squares",
                    row_spaces=None):
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
       solution).

    Parameters
    ----------
    blocks : list of ndarray of shape (n_samples, p_m)
        The modalities (in-memory arrays or memmaps, float32 kept float32); only read.
    structure : Structure
        Bound structure.
    names : tuple of str or None, default=None
        Modality names (error messages).
    denoise, solver, max_iter, tol, random_state
        See :class:`hcl_stats.HCL` (``denoise`` as checked by
        :func:`hcl_stats._estimation.noise.check_denoise`).
    n_oversamples : int, default=20
        Extra basis columns per modality beyond its number of factors.
    n_power_iter : int, default=3
        Subspace (power) iterations of the range finder.
    max_expansions : int, default=10
        Rounds of basis growth by the full gradient (0: solve the reduced problem once).
    row_spaces : RowSpaces, default=None
        The exact row spaces of the centred blocks
        (:func:`hcl_stats._estimation.compressed.row_spaces` of the same blocks): their
        bases, scores and ``T`` are used instead of step 1, and step 3 is not needed. The
        reduced problem is then the full one: ``S = Q T Q^T``, the noise comes from the
        exact non-zero eigenvalues, and ``objective`` is the full problem's (the reduced
        one plus ``1/2 sum_m (p_m - r_m) sigma_m^4``, the noise on the ``p_m - r_m``
        null directions).

    Returns
    -------
    HCLFitResult
        ``path="reduced"``; ``gradient_norm`` and ``converged`` refer to the full problem.
    """
    n = blocks[0].shape[0]
    n_features = [b.shape[1] for b in blocks]
    means, variances = column_moments(blocks, names)
    bases = _Bases(blocks, means, reduced_ranks(n, n_features, structure, n_oversamples),
                   n_power_iter=n_power_iter, rng=as_generator(random_state),
                   given=row_spaces)
    mask = structure.mask(n_features)
    diagonal = isinstance(denoise, str) and denoise == "diagonal"
    n_iter = 0
    for expansion in range(max_expansions + 1):
        q, T = bases.sizes(), bases.reduced_covariance()
        noise = estimate_noise(denoise, reduced_spectrum(T, q, variances, n_features,
                                                         structure))
        result, W, psi, f, used, converged, rel = _reduced_solve(
            bases, T, noise, structure, variances, diagonal=diagonal, solver=solver,
            max_iter=max_iter, tol=0.5 * tol, random_state=random_state)
        n_iter += used
        if bases.exact:
            break
        rel, outside, scale = _full_gradient(blocks, means, W, psi, mask, n_features,
                                             bases.bases)
        converged = rel <= tol
        if converged or expansion == max_expansions \
                or not bases.grow(outside, 1e-3 * tol * scale):
            break
    if not converged and objective == "least_squares":
        warn_not_converged(
            f"HCL (reduced path) stopped at a relative gradient of the full problem of "
            f"{rel:.2e} > tol={tol:g} after {expansion} basis expansions; increase "
            "max_expansions or n_oversamples, or loosen tol")
    noise = psi if diagonal else noise
    if row_spaces is not None and not diagonal:  # the noise on the null directions
        f = float(f) + 0.5 * float(np.sum((np.asarray(n_features) - q)
                                          * np.asarray(noise, dtype=np.float64) ** 2))
    if objective == "likelihood":  # warns itself when it does not converge
        res, noise = _likelihood_fit(blocks, means, variances, structure, W, psi, denoise,
                                     max_iter=max_iter, tol=tol)
        W, f, rel, converged = res.loadings, res.log_likelihood, res.gradient_norm, \
            res.converged
        n_iter += res.n_iter
    return HCLFitResult(
        loadings=canonical_rotation(W, structure), noise_variance=noise,
        objective=f, n_iter=n_iter, converged=converged, gradient_norm=rel,
        init_loadings=bases.lift(result.init_loadings), means=tuple(means),
        total_variance=np.array([v.sum() for v in variances]), path="reduced",
        reduced_ranks=q)
