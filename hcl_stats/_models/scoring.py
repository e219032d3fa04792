"""Gaussian scores of a fitted block factor model: ``score``, ``score_samples``, ``aic``, ``bic``.

The fitted model is ``x ~ N(mu, W W^T + Psi)`` with the fitted loadings, means and noise
variances (one per feature; see ``docs/estimation.md``). Densities go through
:mod:`hcl_stats._estimation.likelihood` (Woodbury identity, ``O(n d K + d K^2)``); a
modality passed as ``None`` and missing (NaN) values are marginalised out.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.utils.validation import check_is_fitted

from hcl_stats._estimation.likelihood import count_parameters
from hcl_stats._input.validation import read_fitted_blocks
from hcl_stats._models.posterior import log_likelihood_observed
from hcl_stats._structure import row_slices

__all__ = ["GaussianScoreMixin"]


class GaussianScoreMixin:
    """Log-likelihood methods for models with ``loadings_``, ``means_`` and noise variances.

    Subclasses may override :meth:`_noise_rule` (what the noise parameters of the fit were:
    ``"isotropic"``, ``"modality"``, ``"diagonal"`` or fixed), which only enters the
    parameter count of :meth:`aic` and :meth:`bic`.
    """

    def _noise_rule(self):
        return "modality"

    def feature_noise_variance(self):
        """Noise variance of each feature, shape (d,), whatever the shape of ``noise_variance_``.

        ``noise_variance_`` holds one value per modality (shape ``(M,)``) for the
        isotropic and per-modality rules and one per feature (shape ``(d,)``) for
        ``denoise="diagonal"``; this is the per-feature view of either.

        Returns
        -------
        ndarray of shape (d,)
        """
        check_is_fitted(self, "loadings_")
        psi = np.asarray(self.noise_variance_, dtype=np.float64)
        widths = self.n_features_per_modality_
        if psi.shape == (int(widths.sum()),):
            return psi.copy()
        return np.repeat(psi, widths)

    def modality_noise_variance(self):
        """Noise variance per modality, shape (M,): the mean over its features.

        Returns
        -------
        ndarray of shape (M,)
        """
        check_is_fitted(self, "loadings_")
        psi = np.asarray(self.noise_variance_, dtype=np.float64)
        widths = self.n_features_per_modality_
        if psi.shape == (len(widths),):
            return psi.copy()
        return np.array([float(np.mean(psi[r])) for r in row_slices(widths)])

    def score_samples(self, X):
        """Log-likelihood of each sample's observed entries under ``N(mu, W W^T + Psi)``.

        Missing entries are marginalised out: the density of a sample is the Gaussian
        density of the entries it observes, ``N(mu_o, W_o W_o^T + Psi_o)``. Samples are
        grouped by the modalities they observe (one Woodbury factorisation per group);
        samples with scattered missing cells cost ``O(d K^2)`` each
        (:func:`hcl_stats._models.posterior.log_likelihood_observed`). A sample that
        observes nothing scores 0.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m)
            Same modalities and widths as at fit; a modality passed as ``None`` is not
            observed, and NaN values (a row of NaN: the modality is missing for that
            sample) are missing entries.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, "loadings_")
        inputs = read_fitted_blocks(self, X, allow_missing=True, missing="allow")
        psi = self.feature_noise_variance()
        if not np.all(psi > 0):
            raise ValueError(
                "score needs positive noise variances; this model was fitted with zero noise "
                "on some features (fit with a noise rule, e.g. denoise='isotropic')")
        return log_likelihood_observed(list(inputs.arrays), self.means_, self.loadings_, psi,
                                       self.n_features_per_modality_,
                                       n_missing=inputs.n_missing)

    def score(self, X, y=None):
        """Average log-likelihood of the samples (see :meth:`score_samples`).

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m)
        y : ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def n_parameters(self):
        """Free parameters of the fitted model: loadings, noise variances and means.

        Structural-mask entries minus ``sum_S r_S (r_S - 1) / 2`` rotations, plus one mean
        per feature and the noise parameters of the fit's noise rule (1, ``M``, ``d`` or 0
        when the noise was given).

        Returns
        -------
        int
        """
        check_is_fitted(self, "loadings_")
        return count_parameters(self.structure_, self.n_features_per_modality_,
                                self._noise_rule())

    def aic(self, X):
        """Akaike information criterion ``-2 log L + 2 k`` on ``X`` (lower is better).

        ``log L`` is the sum of :meth:`score_samples` over the samples of ``X`` (list,
        tuple or dict of modalities, as for :meth:`score`), ``k`` is :meth:`n_parameters`.

        Returns
        -------
        float
        """
        return float(-2.0 * np.sum(self.score_samples(X)) + 2.0 * self.n_parameters())

    def bic(self, X):
        """Bayesian (Schwarz) information criterion ``-2 log L + k log n`` on ``X``.

        As :meth:`aic`, with the penalty ``log n`` per parameter for ``n`` samples in ``X``.

        Returns
        -------
        float
        """
        ll = self.score_samples(X)
        return float(-2.0 * np.sum(ll) + self.n_parameters() * math.log(ll.size))
