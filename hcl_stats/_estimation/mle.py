"""Structured Gaussian maximum likelihood: ``objective="likelihood"`` of HCL.

Minimises, over the free loadings (exact zeros outside the structural mask) and the noise
variances of a rule (one, one per modality, or one per feature), ::

    f(W, psi) = log det Sigma + tr(Sigma^{-1} S),     Sigma = W W^T + diag(psi),

which is ``-2/n`` times the Gaussian log-likelihood up to ``d log 2 pi``. With
``P = Psi^{-1}``, ``U = P W``, ``C = (I + W^T U)^{-1}``, ``T = S U`` and ``Q = U^T T``
(:mod:`hcl_stats._estimation.likelihood` for the identities)::

    f        = sum log psi + log det(I + W^T U) + tr(P S) - tr(C Q)
    df/dW    = 2 (Sigma^{-1} - Sigma^{-1} S Sigma^{-1}) W = 2 (U C - P T C + U C Q C)
    df/dpsi  = diag(Sigma^{-1}) - diag(Sigma^{-1} S Sigma^{-1}),

so each evaluation costs one product of ``S`` with a ``d x K`` matrix, as an iteration of
the least-squares solver, plus ``O(d K^2)``. See ``docs/estimation.md``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse.linalg
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.likelihood import LOG_2PI, NOISE_FLOOR, noise_floor
from hcl_stats._numerics.linalg import serial_blas
from hcl_stats._numerics.optim import CompactLBFGS
from hcl_stats._structure import row_slices

__all__ = ["MLEResult", "noise_groups", "solve_likelihood"]

# Ridge of the preconditioner's K x K metric, relative to its mean eigenvalue.
_RIDGE = 1e-2
# Iterations of the slope-only polish (_polish) without a new least relative gradient.
_POLISH_PATIENCE = 50


class MLEResult(NamedTuple):
    """What :func:`solve_likelihood` returns."""

    loadings: np.ndarray  #: (d, K), exact zeros outside the mask
    noise_variance: np.ndarray  #: (d,) one variance per feature (equal within a group)
    objective: float  #: ``f = log det Sigma + tr(Sigma^{-1} S)`` at the solution
    log_likelihood: float  #: ``-n/2 (f + d log 2 pi)``
    n_iter: int
    converged: bool
    gradient_norm: float  #: relative gradient at the solution (the stopping criterion)


def noise_groups(rule, n_features):
    """Group index of each feature for a noise rule: features of a group share a variance.

    Returns
    -------
    groups : ndarray of int of shape (d,)
    n_groups : int
    """
    n_features = [int(p) for p in n_features]
    d = sum(n_features)
    if rule == "isotropic":
        return np.zeros(d, dtype=int), 1
    if rule == "modality":
        return np.repeat(np.arange(len(n_features)), n_features), len(n_features)
    if rule == "diagonal":
        return np.arange(d), d
    raise ValueError(
        f"the likelihood fit estimates the noise by the rule 'isotropic', 'modality' or "
        f"'diagonal', got {rule!r}"
    )


class _Problem:
    """The objective in preconditioned variables ``y`` (one evaluation: one product ``S U``).

    Variables: ``W[i, C_m] = sqrt(psi0_i / 2) y_i L_m^T`` with ``L_m L_m^T = A_m^{-1}`` and
    ``A = M0 (I + M0)^{-1}``, ``M0 = W0^T P0 W0`` at the start: the Fisher information of a
    row of ``W`` is about ``(2 / psi_i) A``, so the Hessian in ``y`` is close to the
    identity. Noise: ``psi_g = floor_g + exp(theta_g)``, ``theta_g = y_g / sqrt(|g|)``.
    """

    def __init__(self, S, diag_S, n_features, mask, W0, psi0, groups, n_groups):
        self.S = S
        self.diagS = np.asarray(diag_S, dtype=np.float64)
        self.mask = mask
        self.groups, self.n_groups = groups, n_groups
        psi0 = np.asarray(psi0, dtype=np.float64)
        if groups is None:  # fixed noise: the loadings are the only variables
            self.fixed = psi0
        else:
            self.fixed = None
            size = np.bincount(groups, minlength=n_groups).astype(float)
            if n_groups == len(groups):  # one variance per feature
                self.floor = noise_floor(self.diagS, n_features)
            else:
                self.floor = NOISE_FLOOR * np.bincount(groups, self.diagS, n_groups) / size
            self.theta_scale = 1.0 / np.sqrt(size)
            psi0 = np.maximum(psi0, 2.0 * self.floor[groups])
        U0 = W0 / psi0[:, None]
        M0 = W0.T @ U0
        A = M0 @ np.linalg.inv(np.eye(len(M0)) + M0)
        A = 0.5 * (A + A.T)
        self.blocks = []  # (rows, free columns, row scale, L_m^T)
        for sl in row_slices(n_features):
            cols = np.flatnonzero(mask[sl.start]) if sl.stop > sl.start else []
            if len(cols) == 0:
                continue
            Am = A[np.ix_(cols, cols)]
            Am = Am + (_RIDGE * np.trace(Am) / len(cols) + 1e-12) * np.eye(len(cols))
            Lt = np.linalg.cholesky(np.linalg.inv(Am)).T
            self.blocks.append((sl, cols, np.sqrt(0.5 * psi0[sl])[:, None], Lt))
        self.n_w = sum((b[0].stop - b[0].start) * len(b[1]) for b in self.blocks)
        self.shape = W0.shape
        self.y0 = self.pack(W0, psi0)

    def pack(self, W, psi):
        parts = []
        for sl, cols, scale, Lt in self.blocks:
            parts.append(scipy.linalg.solve_triangular(
                Lt, (W[sl][:, cols] / scale).T, trans="T", lower=False).T.ravel())
        if self.fixed is not None:
            return np.concatenate(parts)
        psi_g = np.bincount(self.groups, psi, self.n_groups) / np.bincount(
            self.groups, minlength=self.n_groups)
        theta = np.log(np.maximum(psi_g - self.floor, self.floor))
        return np.concatenate(parts + [theta / self.theta_scale])

    def unpack(self, y):
        W = np.zeros(self.shape)
        off = 0
        for sl, cols, scale, Lt in self.blocks:
            p = sl.stop - sl.start
            Y = y[off:off + p * len(cols)].reshape(p, len(cols))
            W[sl, cols] = scale * (Y @ Lt)
            off += p * len(cols)
        if self.fixed is not None:
            return W, self.fixed, np.zeros(0)
        e = np.exp(y[self.n_w:] * self.theta_scale)
        return W, (self.floor + e)[self.groups], e

    def evaluate(self, y):
        """``(f, grad_y, relative gradient)`` at ``y``."""
        W, psi, e = self.unpack(y)
        P = 1.0 / psi
        U = W * P[:, None]
        K = W.shape[1]
        L = scipy.linalg.cholesky(np.eye(K) + W.T @ U, lower=True)
        C = scipy.linalg.cho_solve((L, True), np.eye(K))
        T = self.S @ U  # the one product with S
        Q = U.T @ T
        f = (np.sum(np.log(psi)) + 2.0 * np.sum(np.log(np.diag(L)))
             + float(P @ self.diagS) - float(np.vdot(C, Q)))
        UC = U @ C
        CQC = C @ Q @ C
        PTC = (T * P[:, None]) @ C
        a_w = PTC - U @ CQC  # Sigma^{-1} S Sigma^{-1} W
        g_w = 2.0 * (UC - a_w)
        diag_inv = P - np.sum(UC * U, axis=1)
        diag_sss = P * P * self.diagS - 2.0 * np.sum(PTC * U, axis=1) + np.sum(
            (U @ CQC) * U, axis=1)
        if self.fixed is None:
            g_psi = np.bincount(self.groups, diag_inv - diag_sss, self.n_groups)
            a_psi = np.bincount(self.groups, diag_sss, self.n_groups)
            g_theta = g_psi * e * self.theta_scale
        else:
            g_psi = a_psi = g_theta = np.zeros(0)
        parts, scale_w = [], 0.0
        for sl, cols, scale, Lt in self.blocks:
            parts.append(((g_w[sl][:, cols] * scale) @ Lt.T).ravel())
            scale_w += float(np.sum(a_w[sl][:, cols] ** 2))
        grad = np.concatenate(parts + [g_theta])
        # relative gradient: the free gradient against the size of its S-dependent part
        num = float(np.sum(g_w[self.mask] ** 2)) + float(np.sum((g_psi * e) ** 2))
        den = 4.0 * scale_w + float(np.sum((a_psi * e) ** 2))
        return f, grad, math.sqrt(num / max(den, np.finfo(float).tiny))


def _minimise(problem, max_iter, tol):
    """L-BFGS-B (scipy) on ``problem`` until its relative gradient is at most ``tol``.

    scipy's own tolerances are off (``ftol = gtol = 0``): a callback stops the iterations
    on the relative gradient of the last evaluation, cached so that no point is evaluated
    twice. Runs under one BLAS thread (the caller's ``serial_blas``), so that scipy's and
    NumPy's BLAS pools do not compete for the cores. Returns ``(y, n_iter, f, rel)``.
    """
    cache = {}

    def fun(y):
        if cache.get("y") is None or not np.array_equal(cache["y"], y):
            cache["y"] = y.copy()
            cache["value"] = problem.evaluate(y)
        f, g, _ = cache["value"]
        return f, g

    def callback(intermediate_result):
        fun(intermediate_result.x)
        if cache["value"][2] <= tol:
            raise StopIteration

    fun(problem.y0)
    if cache["value"][2] <= tol:
        y, n_iter = problem.y0, 0
    else:
        res = scipy.optimize.minimize(
            fun, problem.y0, jac=True, method="L-BFGS-B", callback=callback,
            options={"maxiter": max_iter, "maxfun": 4 * max_iter + 20, "ftol": 0.0,
                     "gtol": 0.0, "maxcor": 10})
        y, n_iter = res.x, int(res.nit)
    fun(y)
    f, _, rel = cache["value"]
    if rel > tol and n_iter < max_iter:  # stopped short: the objective's precision
        y, more, f, rel = _polish(problem, y, cache["value"], res.hess_inv,
                                  max_iter - n_iter, tol)
        n_iter += more
    return y, n_iter, f, rel


def _rounding(problem, y, f):
    """An upper estimate of the rounding error of ``f`` at ``y``: a few hundred ulps of its
    largest terms, ``sum log psi`` and ``tr(P S)`` (whose difference with ``tr(C Q)`` is
    the cancellation, see :func:`_polish`)."""
    _, psi, _ = problem.unpack(y)
    size = abs(f) + float(np.sum(np.abs(np.log(psi)))) + float(problem.diagS @ (1.0 / psi))
    return 256.0 * np.finfo(float).eps * size


def _slope_search(problem, y, d, f0, slope0, max_evals=30):
    """A step ``t`` along ``d`` (``slope0 = g . d < 0``) where the directional derivative
    has fallen to at most ``0.9 |slope0|`` in size (the curvature condition of the strong
    Wolfe conditions) and the objective is at most ``f0`` plus its rounding
    (:func:`_rounding`): doubling until the slope turns or is small enough, then secant
    steps on the slope inside the bracket. Returns ``(t, evaluation)`` or None."""
    lo, s_lo, hi, s_hi, t = 0.0, slope0, None, None, 1.0
    ceiling = f0 + _rounding(problem, y, f0)
    for _ in range(max_evals):
        value = problem.evaluate(y + t * d)
        slope = float(value[1] @ d)
        if not (np.isfinite(value[0]) and np.isfinite(slope) and value[0] <= ceiling):
            hi, s_hi = t, np.inf  # too far: back off
        elif abs(slope) <= 0.9 * abs(slope0):
            return t, value
        elif slope < 0:
            lo, s_lo = t, slope
        else:
            hi, s_hi = t, slope
        if hi is None:
            t *= 2.0
        elif np.isfinite(s_hi):
            t = lo + (hi - lo) * s_lo / (s_lo - s_hi)  # secant root of the slope
        else:
            t = 0.5 * (lo + hi)
    return None


def _polish(problem, y, value, hess_inv, max_iter, tol):
    """L-BFGS from where scipy's stopped short of ``tol`` before ``max_iter``, with a line
    search that asks a decrease of the objective only up to its rounding
    (:func:`_slope_search`).

    Written here because scipy's minimisers need the objective to decrease at every step:
    L-BFGS-B ends when ``f`` stops decreasing in floating point, and near a Heywood case (a
    noise variance far below its feature's variance) the rounding of ``f``, about
    ``eps sum_i S_ii / psi_i`` from the cancellation in ``tr(Sigma^{-1} S)``, exceeds the
    decrease left while the gradient, computed without that cancellation, is still above
    ``tol``. Starts from scipy's last inverse-Hessian approximation ``hess_inv``; keeps the
    point of least relative gradient and ends after ``_POLISH_PATIENCE`` iterations
    without a new least one. Returns ``(y, n_iter, f, rel)`` of that point."""
    H = CompactLBFGS(y.size, precondition=hess_inv.matvec)
    f, g, rel = value
    best = (rel, y, f)
    n_iter = since_best = 0
    while rel > tol and n_iter < max_iter and since_best < _POLISH_PATIENCE:
        found = None
        for fresh in (False, True):  # on failure, start over from scipy's matrix
            if fresh:
                if not len(H):
                    break
                H.reset()
            d = -H.apply(g)
            slope = float(g @ d)
            if slope < 0:
                found = _slope_search(problem, y, d, f, slope)
            if found is not None:
                break
        if found is None:
            break
        t, (f, g_new, rel) = found
        H.update(t * d, g_new - g)
        y, g, n_iter = y + t * d, g_new, n_iter + 1
        since_best += 1
        if rel < best[0]:
            best, since_best = (rel, y, f), 0
    rel, y, f = best
    return y, n_iter, f, rel


def solve_likelihood(S, n_features, mask, W_init, noise_init, *, noise="diagonal",
                     n_samples=1, max_iter=1000, tol=1e-5, diag_S=None):
    """Structured maximum-likelihood loadings and noise variances by preconditioned L-BFGS.

    Started from ``(W_init, noise_init)`` (the least-squares fit); the variables are the free
    loadings and the logarithms of the noise variances above a floor of
    ``1e-6 x`` the mean sample variance of their features (per feature:
    :func:`hcl_stats._estimation.likelihood.noise_floor`, positive for constant features).
    With ``noise="diagonal"``, a feature whose sample variance does not exceed its floor (a
    constant feature) gets the floor as its noise variance and zero loadings, and the
    likelihood is maximised over the other features: for a constant feature, whose
    covariances with the others are zero, that is the maximum (the likelihood then
    separates, and its part in that feature, ``log psi``, is least at the floor), which the
    iterations would only approach with ``psi -> floor`` at ever smaller steps. Stops when
    the relative gradient (the free gradient of ``f`` over the norm of its ``S``-dependent
    part, ``2 Sigma^{-1} S Sigma^{-1} W`` and ``diag(Sigma^{-1} S Sigma^{-1}) psi``) is at
    most ``tol``; warns with ``ConvergenceWarning`` otherwise.

    Parameters
    ----------
    S : ndarray of shape (d, d) or scipy.sparse.linalg.LinearOperator
        Sample covariance, or an operator that multiplies by it (for instance
        ``V -> X^T (X V) / (n - 1)`` from centred data, which never forms ``S``).
    n_features : sequence of int
    mask : ndarray of bool of shape (d, K)
        Structural mask.
    W_init : ndarray of shape (d, K)
    noise_init : ndarray of shape (d,)
        Starting noise variance per feature.
    noise : {"isotropic", "modality", "diagonal", "fixed"}, default="diagonal"
        Noise rule; ``"fixed"`` keeps ``noise_init`` (positive) and fits the loadings only.
    n_samples : int, default=1
        Only scales the reported log-likelihood.
    max_iter : int, default=1000
    tol : float, default=1e-5
    diag_S : ndarray of shape (d,), optional
        The diagonal of ``S``; required when ``S`` is an operator.

    Returns
    -------
    MLEResult
    """
    if isinstance(S, scipy.sparse.linalg.LinearOperator):
        if diag_S is None:
            raise ValueError("solve_likelihood needs diag_S when S is an operator")
    else:
        S = np.asarray(S, dtype=np.float64)
        diag_S = np.diagonal(S) if diag_S is None else diag_S
    groups, n_groups = (None, 0) if noise == "fixed" else noise_groups(noise, n_features)
    if noise == "fixed" and not np.all(np.asarray(noise_init) > 0):
        raise ValueError("the likelihood needs positive noise variances")
    W_init = np.where(mask, np.asarray(W_init, dtype=np.float64), 0.0)
    if noise == "diagonal":
        floor = noise_floor(diag_S, n_features)
        if np.any(np.asarray(diag_S) <= floor):
            return _without_constant_features(S, diag_S, n_features, mask, W_init,
                                              noise_init, floor, n_samples=n_samples,
                                              max_iter=max_iter, tol=tol)
    with serial_blas():
        problem = _Problem(S, diag_S, n_features, mask, W_init, noise_init, groups, n_groups)
        y, n_iter, f, rel = _minimise(problem, max_iter, tol)
        W, psi, _ = problem.unpack(y)
    if not (np.isfinite(f) and np.all(np.isfinite(W))):
        raise FloatingPointError("the likelihood fit produced non-finite values")
    converged = rel <= tol
    if not converged:
        warnings.warn(
            f"the likelihood fit did not converge in {n_iter} iterations (relative gradient "
            f"{rel:.2e} > tol={tol:g}); increase max_iter or loosen tol",
            ConvergenceWarning, stacklevel=2)
    d = S.shape[0]
    loglik = -0.5 * n_samples * (f + d * LOG_2PI)
    return MLEResult(W, psi, float(f), float(loglik), n_iter, bool(converged), float(rel))


def _restricted(S, keep):
    """``S`` (a matrix or an operator) restricted to the rows and columns ``keep``."""
    if not isinstance(S, scipy.sparse.linalg.LinearOperator):
        return S[np.ix_(keep, keep)]
    d = S.shape[0]

    def matmat(V):
        V = np.asarray(V, dtype=np.float64).reshape(len(keep), -1)
        full = np.zeros((d, V.shape[1]))
        full[keep] = V
        return np.asarray(S @ full)[keep]

    return scipy.sparse.linalg.LinearOperator((len(keep), len(keep)), matvec=matmat,
                                              matmat=matmat, dtype=np.float64)


def _without_constant_features(S, diag_S, n_features, mask, W_init, noise_init, floor, *,
                               n_samples, max_iter, tol):
    """:func:`solve_likelihood` with per-feature noise when some features have a sample
    variance at or below their floor: the fit of the other features, with zero loadings and
    the floor as noise variance for those (see :func:`solve_likelihood`)."""
    diag_S = np.asarray(diag_S, dtype=np.float64)
    constant = diag_S <= floor
    keep = np.flatnonzero(~constant)
    rows = row_slices(n_features)
    widths = [int(np.count_nonzero(~constant[r])) for r in rows]
    res = solve_likelihood(_restricted(S, keep), widths, mask[keep], W_init[keep],
                           np.asarray(noise_init, dtype=np.float64)[keep], noise="diagonal",
                           n_samples=n_samples, max_iter=max_iter, tol=tol,
                           diag_S=diag_S[keep])
    W = np.zeros(W_init.shape)
    W[keep] = res.loadings
    psi = floor.copy()
    psi[keep] = res.noise_variance
    # each constant feature adds log psi + S_ii / psi to f and LOG_2PI to the d terms
    f = res.objective + float(np.sum(np.log(floor[constant])
                                     + diag_S[constant] / floor[constant]))
    loglik = -0.5 * n_samples * (f + len(diag_S) * LOG_2PI)
    return res._replace(loadings=W, noise_variance=psi, objective=float(f),
                        log_likelihood=float(loglik))
