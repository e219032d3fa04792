"""Per-feature noise for the least-squares objective: principal-axis alternation.

``denoise="diagonal"`` with ``objective="least_squares"`` minimises the least-squares
objective jointly over the loadings and one noise variance per feature::

    g(W, psi) = 1/2 || W W^T + diag(psi) - S ||_F^2,

by block coordinate descent (principal-axis factoring, see ``docs/noise.md``): for fixed
``W`` the minimiser is ``psi = diag(S - W W^T)``, clipped at a floor so that it stays
positive; for fixed ``psi`` it is the masked least-squares fit of ``S - diag(psi)``, warm
started from the previous loadings. Each step decreases ``g``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.lbfgs import solve_lbfgs
from hcl_stats._estimation.likelihood import noise_floor
from hcl_stats._estimation.noise import subtract_diagonal

__all__ = ["alternate_noise", "diagonal_noise", "solve_principal_axis"]

# Differences kept by the Anderson acceleration of the rounds beyond ``max_rounds``, and
# the most rounds in all, as a multiple of ``max_rounds``.
_ANDERSON_MEMORY = 5
_ROUNDS_FACTOR = 5


def diagonal_noise(diag_S, W, floor):
    """``diag(S - W W^T)`` clipped below at ``floor``
    (:func:`hcl_stats._estimation.likelihood.noise_floor`)."""
    diag_S = np.asarray(diag_S, dtype=np.float64)
    return np.maximum(diag_S - np.sum(W * W, axis=1), floor)


class _Anderson:
    """Anderson acceleration (type II, ``memory`` differences) of a fixed point
    ``x = G(x)``: the next iterate is ``G(x_k) - dG gamma`` with ``gamma`` the
    least-squares coefficients of the last residual ``G(x_k) - x_k`` on the residual
    differences ``dF`` (Walker and Ni, 2011)."""

    def __init__(self, memory):
        self.memory = memory
        self.reset()

    def reset(self):
        self.xs, self.gs = [], []

    def step(self, x, gx):
        """The next iterate from ``x`` and ``gx = G(x)``."""
        self.xs.append(np.asarray(x, dtype=np.float64))
        self.gs.append(np.asarray(gx, dtype=np.float64))
        del self.xs[:-self.memory - 1], self.gs[:-self.memory - 1]
        if len(self.xs) == 1:
            return self.gs[-1]
        F = np.array([g - x for g, x in zip(self.gs, self.xs)]).T  # (d, k + 1) residuals
        G = np.array(self.gs).T
        gamma = np.linalg.lstsq(np.diff(F, axis=1), F[:, -1], rcond=None)[0]
        return G[:, -1] - np.diff(G, axis=1) @ gamma


def alternate_noise(denoised, lift, diag_S, C_init, mask, n_features, *, data_features,
                    max_iter=2000, tol=1e-5, max_rounds=100, block_weights=None):
    """Alternate ``psi = diag(S - W W^T)`` and the masked least-squares fit of ``S - Psi``.

    The least-squares problem may live in a basis (the reduced path): ``denoised(psi)`` is
    the matrix it fits (``S - diag(psi)``, or ``Q^T (S - Psi) Q``), ``mask`` and
    ``n_features`` are its own, and ``lift(C)`` maps its loadings to the ``(d, K)`` ones.
    Stops when the noise variances change by at most ``tol`` (relative, largest over the
    features) in a round and the last inner fit converged. The alternation converges
    linearly, at times slowly (rates near 1 where features differ in scale by orders of
    magnitude); after ``max_rounds`` plain rounds the noise step is accelerated
    (:class:`_Anderson`), until ``max_iter`` inner iterations in all. ``data_features``: the modality
    widths of the data (of ``diag_S``), which set the noise floor
    (:func:`hcl_stats._estimation.likelihood.noise_floor`). With ``block_weights`` the inner
    fits are block-weighted (:func:`hcl_stats._estimation.lbfgs.solve_lbfgs`); the noise
    step is the same, since each diagonal entry lies in one block and its weight does not
    move the entry's minimiser.

    Returns
    -------
    C : ndarray
        Loadings of the (possibly reduced) problem.
    psi : ndarray of shape (d,)
    f, n_iter, converged, rel_grad
        Objective and relative gradient of the last inner fit, inner iterations in total.
    """
    diag_S = np.asarray(diag_S, dtype=np.float64)
    C = np.asarray(C_init, dtype=np.float64)
    floor = noise_floor(diag_S, data_features)
    psi = diagonal_noise(diag_S, lift(C), floor)
    n_iter, converged, change = 0, False, np.inf
    f, f_last, rel_grad = np.nan, np.inf, np.inf
    anderson = _Anderson(_ANDERSON_MEMORY)
    for round_ in range(_ROUNDS_FACTOR * max_rounds):
        C, f, used, inner_ok, rel_grad = solve_lbfgs(
            denoised(psi), C, mask, n_features, max_iter=max(max_iter - n_iter, 1), tol=tol,
            block_weights=block_weights)
        n_iter += used
        psi_new = diagonal_noise(diag_S, lift(C), floor)
        change = float(np.max(np.abs(psi_new - psi) / psi))
        if inner_ok and change <= tol:
            psi, converged = psi_new, True
            break
        if n_iter >= max_iter:
            psi = psi_new
            break
        if round_ + 1 < max_rounds:
            psi = psi_new
            continue
        # beyond max_rounds plain rounds: Anderson-accelerated, restarted from the plain
        # step (which decreases g) when a step has increased g
        if f > f_last:
            anderson.reset()
        f_last = f
        psi = np.clip(anderson.step(psi, psi_new), floor, np.maximum(diag_S, floor))
    if not converged:
        warnings.warn(
            f"the per-feature noise did not converge ({n_iter} inner iterations, last "
            f"relative change {change:.2e}, tol={tol:g}); increase max_iter or loosen tol",
            ConvergenceWarning, stacklevel=3)
    return C, psi, f, n_iter, converged, rel_grad


def solve_principal_axis(S, n_features, mask, W_init, *, max_iter=2000, tol=1e-5,
                         max_rounds=100, block_weights=None):
    """Principal-axis alternation on a covariance ``S`` (:func:`alternate_noise`).

    Parameters
    ----------
    S : ndarray of shape (d, d)
    n_features : sequence of int
    mask : ndarray of bool of shape (d, K)
    W_init : ndarray of shape (d, K)
        Starting loadings (a least-squares fit with a coarser noise rule).
    max_iter : int, default=2000
        Inner solver iterations in total.
    tol : float, default=1e-5
    max_rounds : int, default=100
    block_weights : ndarray of shape (M, M), optional
        Weights of the block-weighted objective (:func:`alternate_noise`).

    Returns
    -------
    W : ndarray of shape (d, K)
    psi : ndarray of shape (d,)
    f, n_iter, converged, rel_grad
        See :func:`alternate_noise`.
    """
    S = np.asarray(S)
    return alternate_noise(lambda psi: subtract_diagonal(S, psi), lambda C: C,
                           np.diagonal(S), W_init, mask, n_features, data_features=n_features,
                           max_iter=max_iter, tol=tol, max_rounds=max_rounds,
                           block_weights=block_weights)
