"""Shared base for HCL and the baselines: bookkeeping, scores, covariance, variance tables.

Every estimator in the package ends its ``fit`` by calling
:meth:`BlockFactorModel._set_fitted` with loadings laid out as a
:class:`~hcl_stats.Structure` describes, so that ``transform``, ``block_loadings``,
``get_covariance``, ``explained_variance`` and the metrics work on all of them unchanged.
The model behind the scores and the covariance is described in docs/model.md.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hcl_stats._input.validation import (
    check_fitted_blocks,
)
from hcl_stats._models.summary import model_summary

__all__ = ["BlockFactorModel"]


def _check_finite_attribute(model, name, value):
    """Raise FloatingPointError when the fitted attribute ``name`` holds NaN or inf.

    Arrays, floats and lists or tuples of arrays are checked; other values (structures,
    tables, strings) are not numeric results of the fit.
    """
    parts = value if isinstance(value, (list, tuple)) else [value]
    for part in parts:
        if isinstance(part, (np.ndarray, float, np.floating)):
            array = np.asarray(part)
            if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
                raise FloatingPointError(
                    f"{model}: the fitted attribute {name} holds non-finite values (NaN or "
                    "inf); the fit failed numerically, check the data's scale and the ranks"
                )


class BlockFactorModel(TransformerMixin, BaseEstimator):
    """Base class of the multi-block factor models (not for direct use).

    Fitted attributes common to all subclasses
    ------------------------------------------
    structure_ : Structure
        Column blocks of ``loadings_``.
    loadings_ : ndarray of shape (d, K)
        Stacked loadings, exactly zero where a modality is outside a block's subset.
    means_ : list of ndarray of shape (p_m,)
        Per-modality means removed before fitting.
    noise_variance_ : ndarray of shape (M,)
        Per-modality noise variance used for scores.
    n_features_per_modality_ : ndarray of shape (M,)
        Modality widths.
    total_variance_ : ndarray of shape (M,)
        Trace of each modality's sample covariance.
    modality_names_in_ : tuple of str or None
        Names when fitted on a dict.
    """

    # -- bookkeeping shared by subclasses -----------------------------------------------------
    def _set_fitted(self, *, structure, loadings, means, noise_variance, total_variance,
                    names, n_samples, extra=None):
        """Store the fitted attributes shared by every model, then ``extra`` ones.

        Raises
        ------
        FloatingPointError
            When a fitted attribute holds a NaN or an infinite value (the model is not
            stored as fitted then).
        """
        fitted = {
            "structure_": structure,
            "loadings_": np.asarray(loadings, dtype=np.float64),
            "n_features_per_modality_": np.array([len(mu) for mu in means], dtype=int),
            "means_": [np.asarray(mu, dtype=np.float64) for mu in means],
            "noise_variance_": np.asarray(noise_variance, dtype=np.float64),
            "total_variance_": np.asarray(total_variance, dtype=np.float64),
            "modality_names_in_": names,
            "n_modalities_": len(means),
            "n_components_": structure.n_components,
            "n_samples_": int(n_samples),
            **(extra or {}),
        }
        for name, value in fitted.items():
            _check_finite_attribute(type(self).__name__, name, value)
        for name, value in fitted.items():
            setattr(self, name, value)

    def _rows(self):
        return self.structure_.rows(self.n_features_per_modality_)

    def _modality_index(self, m):
        names = self.structure_.modality_names
        if isinstance(m, str):
            if names is None or m not in names:
                raise ValueError(f"unknown modality {m!r}; known: {names!r}")
            return names.index(m)
        if not 0 <= int(m) < self.n_modalities_:
            raise ValueError(f"modality index {m} out of range for {self.n_modalities_}")
        return int(m)

    # -- public API --------------------------------------------------------------------------
    def block_loadings(self, m, subset):
        """Loadings ``B_{m,S}`` of modality ``m`` on block ``subset``.

        Parameters
        ----------
        m : int or str
            Modality index or name.
        subset : tuple of int or str
            A block of ``structure_``.

        Returns
        -------
        ndarray of shape (p_m, r_S)
        """
        check_is_fitted(self, "loadings_")
        m = self._modality_index(m)
        try:
            key = self.structure_.resolve(subset)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        cols = self.structure_.columns(key)
        if m not in key:
            raise ValueError(
                f"modality {self.structure_.modality_label(m)} is not in block "
                f"{self.structure_.label(key)}: its loadings there are zero by construction"
            )
        return self.loadings_[self._rows()[m], cols].copy()

    def get_covariance(self):
        """Model covariance ``W W^T + Psi`` of shape (d, d)."""
        check_is_fitted(self, "loadings_")
        W = self.loadings_
        return W @ W.T + np.diag(self._feature_noise())

    def _feature_noise(self):
        """Noise variance of each feature, shape (d,): ``noise_variance_`` holds one value
        per modality (shape ``(M,)``) or, for per-feature rules, one per feature."""
        psi = np.asarray(self.noise_variance_, dtype=np.float64)
        widths = self.n_features_per_modality_
        return np.repeat(psi, widths) if psi.size == len(widths) else psi

    def transform(self, X):
        """Posterior-mean scores ``E[z | x]`` of new samples.

        ``E[z | x] = (I + W_o^T Psi_o^{-1} W_o)^{-1} W_o^T Psi_o^{-1} (x_o - mu_o)``, where
        ``o`` are the modalities given: a modality passed as ``None`` is treated as
        missing and the scores use the others (docs/model.md).

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m)
            Same modalities and widths as at fit; entries may be ``None``.

        Returns
        -------
        Z : ndarray of shape (n_samples, K)
            Scores, columns ordered as ``structure_.blocks``.
        """
        check_is_fitted(self, "loadings_")
        blocks = check_fitted_blocks(self, X, allow_missing=True)
        rows = self._rows()
        K = self.n_components_
        precision = np.eye(K)
        rhs = 0.0
        floor = 1e-12 * max(float(np.max(self.total_variance_ / self.n_features_per_modality_)),
                            1e-300)
        noise = self._feature_noise()
        for m, block in enumerate(blocks):
            if block is None:
                continue
            Wm = self.loadings_[rows[m]]
            psi = np.maximum(noise[rows[m]], floor)[:, None]
            precision = precision + Wm.T @ (Wm / psi)
            rhs = rhs + (np.asarray(block, dtype=np.float64) - self.means_[m]) @ (Wm / psi)
        return np.linalg.solve(precision, np.atleast_2d(rhs).T).T

    def explained_variance(self, fraction=False):
        """Per-modality x per-structure variance table that adds up to each total.

        Columns: one per block (``||B_{m,S}||_F^2``), ``noise`` (``p_m sigma_m^2``),
        ``residual`` (what the model leaves unexplained: total minus the rest, which can be
        negative when the model over-fits a modality) and ``total`` (``trace(S_mm)``).
        Signal columns add up exactly because ``trace(B_m B_m^T) = sum_S ||B_{m,S}||^2``.

        Parameters
        ----------
        fraction : bool, default=False
            Divide each row by its total.

        Returns
        -------
        pandas.DataFrame of shape (M, n_blocks + 3)
        """
        import pandas as pd

        check_is_fitted(self, "loadings_")
        st = self.structure_
        rows = self._rows()
        data = {}
        for s in st.subsets:
            cols = st.columns(s)
            data[st.label(s)] = [float(np.sum(self.loadings_[r, cols] ** 2)) for r in rows]
        table = pd.DataFrame(data, index=[st.modality_label(m) for m in range(len(rows))])
        noise = self._feature_noise()
        table["noise"] = [float(noise[r].sum()) for r in rows]
        table["residual"] = self.total_variance_ - table.sum(axis=1)
        table["total"] = self.total_variance_
        table.index.name = "modality"
        if fraction:
            table = table.div(table["total"], axis=0)
        return table

    def summary(self):
        """Statsmodels-style summary: structure, ranks, variance table, noise, convergence.

        Returns
        -------
        Summary
            ``print(model.summary())`` shows text; in Jupyter it renders as HTML
            (``.as_html()``); ``.tables`` holds the exact numbers as DataFrames.
        """

        return model_summary(self)
