"""After the least-squares fit: per-feature noise and the likelihood objective.

``denoise="diagonal"`` with ``objective="least_squares"``: principal-axis alternation of the
noise and the loadings (:mod:`hcl_stats._estimation.principal_axis`). ``objective="likelihood"``:
the structured Gaussian maximum-likelihood estimate started from the least-squares fit
(:mod:`hcl_stats._estimation.mle`), with the noise of the rule (one variance, one per
modality or one per feature) estimated jointly, or kept when given. See
``docs/estimation.md`` and ``docs/noise.md``.
"""

from __future__ import annotations

import numpy as np

from hcl_stats._estimation.likelihood import noise_floor
from hcl_stats._estimation.mle import solve_likelihood
from hcl_stats._estimation.principal_axis import diagonal_noise, solve_principal_axis
from hcl_stats._numerics.backend import to_numpy

__all__ = ["OBJECTIVES", "needs_refinement", "refine_covariance"]

#: values of ``HCL(objective=...)``
OBJECTIVES = ("least_squares", "likelihood")


def needs_refinement(denoise, objective):
    """Whether the fit goes on after the least-squares solution."""
    return objective == "likelihood" or (isinstance(denoise, str) and denoise == "diagonal")


def likelihood_noise(denoise):
    """``noise`` argument of :func:`solve_likelihood` for a checked ``denoise``."""
    return denoise if isinstance(denoise, str) else "fixed"


def likelihood_start(diag_S, W, noise, denoise, n_features):
    """Starting noise variance of each feature for the likelihood fit from the loadings
    ``W`` of a least-squares fit with the noise ``noise`` (one per modality): those
    variances, or for ``denoise="diagonal"`` each feature's variance left by ``W``,
    ``diag(S - W W^T)`` above the floor (the noise step of the principal-axis alternation,
    :func:`hcl_stats._estimation.principal_axis.diagonal_noise`). A feature's own residual
    variance can be orders of magnitude below its modality's noise (a pixel that is rarely
    inked), and the likelihood's preconditioner is scaled by the start."""
    if isinstance(denoise, str) and denoise == "diagonal":
        return diagonal_noise(diag_S, W, noise_floor(diag_S, n_features))
    return np.repeat(noise, n_features)


def per_rule(psi, denoise, n_features):
    """Per-feature variances as stored: ``(d,)`` for ``"diagonal"``, else one per modality."""
    if isinstance(denoise, str) and denoise == "diagonal":
        return np.asarray(psi, dtype=np.float64)
    starts = np.concatenate([[0], np.cumsum(n_features)[:-1]]).astype(int)
    return np.asarray(psi, dtype=np.float64)[starts]


def refine_covariance(S, n_features, structure, W, noise, *, denoise, objective, n_samples,
                      max_iter, tol, block_weights=None):
    """Refine the least-squares fit ``(W, noise)`` of the covariance ``S``.

    Parameters
    ----------
    S : array of shape (d, d)
        Unbiased sample covariance (any namespace; the refinement runs on the host).
    n_features : sequence of int
    structure : Structure
    W : ndarray of shape (d, K)
        Least-squares loadings.
    noise : ndarray of shape (M,)
        The noise of the rule used for ``W``.
    denoise : str, None or ndarray
        Checked ``denoise`` value.
    objective : {"least_squares", "likelihood"}
    n_samples : int
        The likelihood is that of the data: ``S`` is rescaled to the divisor ``n``.
    max_iter, tol
        See :class:`hcl_stats.HCL`.
    block_weights : ndarray of shape (M, M), optional
        Weights of the block-weighted least-squares objective (``denoise="diagonal"`` with
        ``objective="least_squares"`` only).

    Returns
    -------
    W : ndarray of shape (d, K)
    noise : ndarray of shape (d,) for ``denoise="diagonal"``, else (M,)
    objective : float
        The least-squares objective, or the log-likelihood for ``objective="likelihood"``.
    n_iter : int
    converged : bool
    gradient_norm : float
    """
    S = np.asarray(to_numpy(S), dtype=np.float64)
    mask = structure.mask(n_features)
    if objective == "least_squares":  # denoise == "diagonal"
        W, psi, f, n_iter, converged, rel = solve_principal_axis(
            S, n_features, mask, W, max_iter=max_iter, tol=tol, block_weights=block_weights)
        return W, psi, f, n_iter, converged, rel
    n = int(n_samples)
    res = solve_likelihood(S * ((n - 1) / n), n_features, mask, W,
                           likelihood_start(np.diagonal(S), W, noise, denoise, n_features),
                           noise=likelihood_noise(denoise), n_samples=n, max_iter=max_iter,
                           tol=tol)
    return (res.loadings, per_rule(res.noise_variance, denoise, n_features),
            res.log_likelihood, res.n_iter, res.converged, res.gradient_norm)
