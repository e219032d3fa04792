"""Standard deviations of the scores that account for the estimation error of the model.

``transform(X, return_std=True)`` reports the error covariance of the posterior mean it
returns, ``A x_o`` with ``A = C W_o^T Psi_o^{-1}`` and ``C = (I + W_o^T Psi_o^{-1} W_o)^{-1}``
(docs/model.md, "Calibrated standard deviations"). With fitted loadings taken as known
that is ``C``; in high dimension the fitted loadings and noise carry the bias of sample
principal components, and the spiked covariance model gives, per block and per modality,
what the data carry about the true scores:

* :func:`noise_ratio`: the noise variance each modality's fitted spectrum implies, over
  the fitted one (the leading sample eigenvalues took some of the noise);
* :func:`calibrated_loadings`: the covariances of the data with the true factors along
  the fitted loadings, for new samples and for the samples of the fit;
* :func:`error_covariance`: the error covariance of ``A x_o`` from those.

:func:`calibration` gathers the three for :func:`hcl_stats._models.posterior.posterior_moments`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hcl_stats._estimation.rmt import (
    spike_cosine2,
    spike_population,
    spike_noise,
    spike_score_cosine2,
)
from hcl_stats._structure import row_slices

__all__ = ["Calibration", "calibrated_loadings", "calibration", "error_covariance",
           "noise_ratio"]


class Calibration(NamedTuple):
    """What :func:`error_covariance` needs about the truth behind a fitted model."""

    #: (d, K) covariances of a new sample's data with its true factors
    new: np.ndarray
    #: (d, K) the same for a sample of the fit
    fitted: np.ndarray
    #: (M,) the modalities' noise variance over the fitted one
    noise_ratio: np.ndarray


def _degrees_of_freedom(joint_counts):
    return np.maximum(np.asarray(joint_counts, dtype=np.float64) - 1.0, 1.0)


def noise_ratio(W, psi, n_features, joint_counts, total_variance=None):
    """Per modality, the noise variance implied by its fitted spectrum over the fitted one.

    In the noise-whitened units of modality ``m`` the fitted model has the leading
    eigenvalues ``1 + mu_j`` (``mu_j`` the squared singular values of
    ``Psi_m^{-1/2} W_m``); the data's trace there is ``t = p_m + sum_j mu_j + e / psi_m``,
    ``e`` what the model leaves of the modality's total variance (``total_variance``
    minus the fitted signal and noise; zero when not given) and ``psi_m`` its mean noise
    variance. Read as the sample eigenvalues of ``N_m`` samples, each ``1 + mu_j``
    carries noise beyond its factor's variance, which a noise estimate from the trailing
    eigenvalues misses. The ratio ``rho`` solves the spiked model's trace equation
    ``p_m rho + rho sum_j ell_j(rho) = t``, ``ell_j(rho)`` the population spike behind
    ``(1 + mu_j) / rho`` at ``gamma = p_m / (N_m - 1)``
    (:func:`hcl_stats._estimation.rmt.spike_signal`); as ``N_m`` grows it tends to
    ``1 + e / (psi_m (p_m - r_m))`` (the trailing mean), which is 1 when the model
    accounts for the modality's variance. It is the largest root of that equation,
    :func:`hcl_stats._estimation.rmt.spike_noise` (the selection's noise equation, in
    these units); 1 for a modality without factors or without variance outside them.

    Parameters
    ----------
    W : ndarray of shape (d, K)
    psi : ndarray of shape (d,)
        Positive noise variances, one per feature.
    n_features : sequence of int
    joint_counts : array-like of shape (M, M)
        Samples behind the fit: those observing each modality on the diagonal.
    total_variance : array-like of shape (M,), default=None
        The modalities' total variances (traces of ``S_mm``).

    Returns
    -------
    ndarray of shape (M,)

    Examples
    --------
    >>> import numpy as np
    >>> W = np.zeros((100, 1)); W[:, 0] = 0.3  # whitened signal 9 on 100 features
    >>> rho = noise_ratio(W, np.ones(100), [100], [[201]])  # gamma = 0.5
    >>> round(float(rho[0]), 4)
    1.0057
    """
    df = np.diagonal(_degrees_of_freedom(joint_counts))
    out = np.ones(len(n_features))
    for m, rows in enumerate(row_slices(n_features)):
        p = rows.stop - rows.start
        mu = np.linalg.svd(W[rows] / np.sqrt(psi[rows])[:, None], compute_uv=False) ** 2
        mu = mu[mu > 1e-12 * max(float(mu.max(initial=0.0)), 1.0)]
        if mu.size == 0 or p == 0:
            continue
        trace = p + float(mu.sum())
        if total_variance is not None:
            left = total_variance[m] - float(np.sum(W[rows] ** 2)) - float(psi[rows].sum())
            trace += left / float(psi[rows].mean())
        spikes = (1.0 + mu).tolist()
        if p <= mu.size or trace <= sum(spikes):  # no variance left outside the spikes
            continue
        out[m] = spike_noise(spikes, trace, p, p / df[m])
    return out


def calibrated_loadings(W, psi, structure, n_features, joint_counts, *, samples="new",
                        noise_ratio=None):
    """Covariances of the data with the true factors along the fitted loadings.

    A block's loadings estimated from ``N`` samples on its ``p_S`` features are biased the
    way sample principal components are. In units of the noise, a direction of population
    signal ``ell`` shows a sample eigenvalue ``x = (1 + ell)(1 + gamma / ell)`` along a
    direction whose squared cosine with the true one is
    ``c^2 = (1 - gamma / ell^2) / (1 + gamma / ell)``, ``gamma = p_S / N`` (``gamma``
    counts the covariance's ``N - 1`` degrees of freedom). Along the fitted direction, the
    data of a new sample covary with its true score by ``sqrt(ell c^2)``; the data of a
    sample of the fit, whose noise shaped the fitted direction, by ``sqrt(x c~^2)``,
    ``c~^2 = (1 - gamma / ell^2) / (1 + 1 / ell)`` the squared cosine of the fitted scores
    with the true ones (:func:`hcl_stats._estimation.rmt.spike_score_cosine2`).

    The noise is ``rho_m psi`` on modality ``m`` (``noise_ratio``; ``psi`` when None). Each
    block ``Psi_S^{-1/2} W_S = U D V^T`` in those units (rows of the modalities in ``S``)
    keeps ``U`` and ``V``; its fitted eigenvalues ``x = d^2 + 1 / rho`` (the fitted signal
    plus the fitted noise) give ``ell`` (:func:`hcl_stats._estimation.rmt.spike_population`)
    and the singular values are replaced by the one for ``samples``; a direction at or
    below the noise edge ``(1 + sqrt(gamma))^2`` carries no information and gets zero.
    With missing values ``gamma = sum_{m in S} p_m / (N_{m,S} - 1)``, ``N_{m,S}`` the
    fewest samples that observe ``m`` together with another modality of ``S`` (those
    observing ``m`` for a specific block): a shared block's loadings on ``m`` rest on its
    covariances with the other modalities of ``S``, each estimated from the samples that
    observe both. As ``N`` grows both tend to ``W``.

    Parameters
    ----------
    W : ndarray of shape (d, K)
        Fitted loadings, columns laid out as ``structure``.
    psi : ndarray of shape (d,)
        Positive noise variances, one per feature.
    structure : Structure
    n_features : sequence of int
        Modality widths.
    joint_counts : array-like of shape (M, M)
        Samples behind the fit: those observing each pair of modalities together, each
        modality on the diagonal.
    samples : {"new", "fitted"}, default="new"
        Whose covariances: samples not in the fit, or the samples of the fit.
    noise_ratio : array-like of shape (M,), default=None
        See :func:`noise_ratio`; all one when None.

    Returns
    -------
    ndarray of shape (d, K)
        Zero where ``W`` is zero by construction.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import Structure
    >>> W = np.full((4, 1), 1.0)  # whitened signal mu = 4 on p_S = 4 features
    >>> V = calibrated_loadings(W, np.ones(4), Structure({(0,): 1}), [4], [[40]])
    >>> round(float(np.linalg.norm(V) ** 2), 4)  # ell = 3.871, c^2 = 0.968
    3.7452
    """
    if samples not in ("new", "fitted"):
        raise ValueError(f"samples must be 'new' or 'fitted', got {samples!r}")
    new, fitted = _calibrated_pair(W, psi, structure, n_features, joint_counts, noise_ratio)
    return new if samples == "new" else fitted


def _calibrated_pair(W, psi, structure, n_features, joint_counts, noise_ratio):
    """:func:`calibrated_loadings` for new samples and for the samples of the fit, from one
    decomposition of each block."""
    W = np.asarray(W, dtype=np.float64)
    new, fitted = W.copy(), W.copy()
    slices = row_slices(n_features)
    widths = np.asarray(n_features, dtype=np.float64)
    df = _degrees_of_freedom(joint_counts)
    rho = np.ones(len(n_features)) if noise_ratio is None else np.asarray(noise_ratio, float)
    for subset in structure.subsets:
        rows = np.concatenate([np.arange(slices[m].start, slices[m].stop) for m in subset])
        cols = structure.columns(subset)
        members = list(subset)
        gamma = float(sum(widths[m] / df[m, members].min() for m in subset))
        ratio = np.concatenate([np.full(slices[m].stop - slices[m].start, rho[m])
                                for m in subset])
        root = np.sqrt(psi[rows] * ratio)[:, None]
        U, d, Vt = np.linalg.svd(W[rows, cols] / root, full_matrices=False)
        edge = (1.0 + np.sqrt(gamma)) ** 2
        offset = 1.0 / float(ratio.mean())
        kept_new, kept_fitted = np.zeros_like(d), np.zeros_like(d)
        for k, value in enumerate(d):
            x = value * value + offset
            if x > edge:
                ell = spike_population(x, gamma)
                kept_new[k] = np.sqrt(ell * spike_cosine2(ell, gamma))
                kept_fitted[k] = np.sqrt(x * spike_score_cosine2(ell, gamma))
        new[rows, cols] = root * ((U * kept_new) @ Vt)
        fitted[rows, cols] = root * ((U * kept_fitted) @ Vt)
    return new, fitted


def calibration(W, psi, structure, n_features, joint_counts, total_variance=None):
    """The :class:`Calibration` of a fitted model (:func:`noise_ratio`, then
    :func:`calibrated_loadings` for new samples and for the samples of the fit)."""
    rho = noise_ratio(W, psi, n_features, joint_counts, total_variance)
    return Calibration(*_calibrated_pair(W, psi, structure, n_features, joint_counts, rho), rho)


def error_covariance(C, G, G_noise, H_new, H_fitted):
    """Error covariance of the posterior mean of the fitted model, for new samples and for
    the samples of the fit, whichever is larger.

    The reported mean is ``A x_o`` with ``A = C W_o^T Psi_o^{-1}``, ``C = (I + G)^{-1}``,
    ``G = W_o^T Psi_o^{-1} W_o``. With ``V`` the covariances of the data with the true
    factors (:func:`calibrated_loadings`), ``H = W_o^T Psi_o^{-1} V_o``, and the true noise
    ``R Psi`` (``R`` the :func:`noise_ratio` of each row), ``G_noise = W_o^T Psi_o^{-1} R_o
    W_o``, the error ``A x_o - z`` has covariance ``A Sigma A^T - C H - H^T C + I``: for a
    new sample ``Sigma = V V^T + R Psi`` along what ``A`` sees, so
    ``C G_noise C + (C H - I)(C H - I)^T``; for a sample of the fit ``Sigma`` is the
    fitted ``W W^T + Psi`` (the sample covariance along the fitted directions), so
    ``C G C + C G G C - C H - H^T C + I``. Returned: the second plus the positive part of
    their difference, a covariance at least as large as both. With ``V = W`` and
    ``R = I`` both equal ``C``.

    Parameters
    ----------
    C, G, G_noise, H_new, H_fitted : ndarray of shape (..., K, K)

    Returns
    -------
    ndarray of shape (..., K, K)
    """
    eye = np.eye(C.shape[-1])
    CG = C @ G
    D = C @ H_new - eye
    new = C @ G_noise @ C + D @ np.swapaxes(D, -1, -2)
    CH = C @ H_fitted
    fitted = CG @ C + CG @ np.swapaxes(CG, -1, -2) - CH - np.swapaxes(CH, -1, -2) + eye
    diff = new - fitted
    w, Q = np.linalg.eigh((diff + np.swapaxes(diff, -1, -2)) / 2.0)
    return fitted + (Q * np.maximum(w, 0.0)[..., None, :]) @ np.swapaxes(Q, -1, -2)
