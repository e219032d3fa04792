"""Shared base for HCL and the baselines: bookkeeping, scores, covariance, variance tables.

Every estimator in the package ends its ``fit`` by calling
:meth:`BlockFactorModel._set_fitted` with loadings laid out as a
:class:`~hcl_stats.Structure` describes, so that ``transform``, ``block_loadings``,
``get_covariance``, ``explained_variance`` and the metrics work on all of them unchanged.
The model behind the scores and the covariance is described in docs/model.md.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

from hcl_stats._input.validation import check_total_rank, read_fitted_blocks
from hcl_stats._models.calibration import calibration
from hcl_stats._models.posterior import posterior_moments
from hcl_stats._models.scoring import GaussianScoreMixin
from hcl_stats._models.summary import model_summary
from hcl_stats._structure import modality_description

__all__ = ["BlockFactorModel", "describe_missing"]

# explained_variance()'s residual below -5% of a modality's total warns at fit
_NOISE_EXCESS = 0.05
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_stacklevel():
    """``stacklevel`` of a warning issued here that points at the first frame outside the
    package (the fit paths have different depths)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _check_finite_attribute(model, name, value):
    """Raise FloatingPointError when the fitted attribute ``name`` holds NaN or inf.

    Arrays, floats and lists or tuples of arrays are checked; other values (structures,
    tables, strings) are not numeric results of the fit.
    """
    parts = value if isinstance(value, (list, tuple)) else [value]
    for part in parts:
        if isinstance(part, np.ndarray):  # floating or complex arrays
            finite = part.dtype.kind not in "fc" or bool(np.isfinite(part).all())
        else:
            finite = not isinstance(part, (float, np.floating)) or math.isfinite(part)
        if not finite:
            raise FloatingPointError(
                f"{model}: the fitted attribute {name} holds non-finite values (NaN or "
                "inf); the fit failed numerically, check the data's scale and the ranks"
            )


def describe_missing(inputs):
    """``"modality 1 contains NaN: 6 missing value(s) in 2 sample(s) (...)"``: the first
    modality of the validated input ``inputs`` (:class:`Blocks`) with missing values."""
    m = next(m for m, k in enumerate(inputs.n_missing) if k)
    rows = int(np.count_nonzero(np.isnan(inputs.arrays[m]).any(axis=1)))
    absent = ", or samples absent from its index" if inputs.sample_index is not None else ""
    return (f"{modality_description(m, inputs.names)} contains NaN: {inputs.n_missing[m]} "
            f"missing value(s) in {rows} sample(s) (NaN, None or pd.NA{absent})")


class BlockFactorModel(GaussianScoreMixin, TransformerMixin, BaseEstimator):
    """Base class of the multi-block factor models (not for direct use).

    Fitted attributes common to all subclasses
    ------------------------------------------
    structure_ : Structure
        Column blocks of ``loadings_``.
    loadings_ : ndarray of shape (d, K)
        Stacked loadings, exactly zero where a modality is outside a block's subset.
    means_ : list of ndarray of shape (p_m,)
        Per-modality means removed before fitting.
    noise_variance_ : ndarray of shape (M,) or (d,)
        Noise variances used for scores and likelihoods: one per modality, or one per
        feature for a per-feature noise rule (``HCL(denoise="diagonal")``);
        :meth:`feature_noise_variance` gives the per-feature view of either.
    n_features_per_modality_ : ndarray of shape (M,)
        Modality widths.
    total_variance_ : ndarray of shape (M,)
        Trace of each modality's sample covariance.
    modality_names_in_ : tuple of str or None
        Names when fitted on a dict.
    feature_names_in_ : list of (ndarray of str or None)
        Per modality, the column names seen at fit (DataFrame columns, AnnData
        ``var_names``) when they are all strings, else ``None``; ``transform`` checks them.
    sample_index_ : pandas.Index or None
        Labels of the training samples, in the order the model saw them (``None`` for
        arrays and summary statistics).
    n_joint_samples_ : ndarray of shape (M, M) of int
        Samples observing each modality (diagonal) and each pair of modalities;
        ``n_samples_`` everywhere for complete data.

    When the noise comes from a ``denoise`` rule (HCL, ConcatSVD), a modality whose fitted
    noise and signal exceed its total variance by more than 5% (``explained_variance()``'s
    residual) gets a ``UserWarning`` at fit.
    """

    # -- bookkeeping shared by subclasses -----------------------------------------------------
    def _set_fitted(self, *, structure, loadings, means, noise_variance, total_variance,
                    names, n_samples, joint_counts=None, extra=None):
        """Store the fitted attributes shared by every model, then ``extra`` ones.

        ``joint_counts``: the (M, M) samples observing each modality and each pair (data
        with missing values); None: ``n_samples`` everywhere.

        Raises
        ------
        ValueError
            When the total rank is not below ``n_samples - 1``.
        FloatingPointError
            When a fitted attribute holds a NaN or an infinite value (the model is not
            stored as fitted then).
        """
        # whichever way the ranks came (given, selected from the data), the samples must
        # carry them
        check_total_rank(structure.n_components, n_samples)
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
            "n_joint_samples_": (np.full((len(means), len(means)), int(n_samples))
                                 if joint_counts is None
                                 else np.array(joint_counts, dtype=np.int64)),
            # set from the data by _record_input; none for summary statistics
            "feature_names_in_": [None] * len(means),
            "sample_index_": None,
            **(extra or {}),
        }
        for name, value in fitted.items():
            _check_finite_attribute(type(self).__name__, name, value)
        for name, value in fitted.items():
            setattr(self, name, value)
        if self._noise_from_rule():
            self._warn_noise_exceeds_total()

    def _noise_from_rule(self):
        """Whether the noise variances come from a ``denoise`` rule subtracted from the
        covariance (HCL, ConcatSVD with ``denoise``), which a modality's scale can defeat.

        The data models' noise is each modality's own residual variance, and their
        variance tables are a few percent negative by construction (in-sample loadings).
        """
        return False

    def _record_input(self, inputs):
        """Record the feature names and sample labels of the validated training input
        (:class:`hcl_stats._input.validation.Blocks`); returns ``self``."""
        self.feature_names_in_ = list(inputs.feature_names)
        self.sample_index_ = inputs.sample_index
        return self

    def _warn_noise_exceeds_total(self):
        """Warn when a modality's noise and signal exceed its total variance by over 5%.

        The residual is that of :meth:`explained_variance` up to rounding: each modality's
        signal is the sum of its squared loadings over all the blocks at once, without the
        table (which cost more than a small fit) or its per-block sums.
        """
        squares = self.loadings_ ** 2
        psi = np.asarray(self.noise_variance_, dtype=np.float64)
        widths = self.n_features_per_modality_
        per_feature = psi.shape == (int(widths.sum()),)  # as feature_noise_variance reads it
        residual = np.array([
            float(self.total_variance_[m]) - float(squares[r].sum())
            - (float(psi[r].sum()) if per_feature else float(psi[m]) * int(widths[m]))
            for m, r in enumerate(self._rows())])
        for m in range(self.n_modalities_):
            total = float(self.total_variance_[m])
            share = -float(residual[m]) / max(total, 1e-300)
            if share > _NOISE_EXCESS:
                warnings.warn(
                    f"modality {self.structure_.modality_label(m)}: the fitted noise and "
                    f"signal exceed its total variance by {share:.3g} times the total "
                    f"(residual {float(residual[m]):.4g} in explained_variance()): "
                    f"{self._noise_excess_advice()}",
                    UserWarning, stacklevel=_caller_stacklevel())

    def _variance_parts(self):
        """``(signal, noise)``: the ``(M, n_blocks)`` ``||B_{m,S}||_F^2`` (blocks in the
        order of ``structure_.subsets``) and the ``(M,)`` sums of each modality's noise
        variances."""
        st = self.structure_
        rows = self._rows()
        signal = np.array([[float(np.sum(self.loadings_[r, st.columns(s)] ** 2))
                            for s in st.subsets] for r in rows]).reshape(len(rows), -1)
        feature_noise = self.feature_noise_variance()
        return signal, np.array([float(np.sum(feature_noise[r])) for r in rows])

    def _noise_excess_advice(self):
        """The end of the warning of :meth:`_warn_noise_exceeds_total`: what to change."""
        return ("the noise rule does not fit modalities of such different scales; use "
                "denoise='modality' or scale the modalities")

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
        return W @ W.T + np.diag(self.feature_noise_variance())

    def transform(self, X, return_std=False):
        """Posterior-mean scores ``E[z | x_o]`` of new samples from their observed entries.

        ``E[z | x_o] = C_o W_o^T Psi_o^{-1} (x_o - mu_o)`` with
        ``C_o = (I + W_o^T Psi_o^{-1} W_o)^{-1}`` the posterior covariance, where ``o``
        are the entries the sample observes: a modality passed as ``None``, a row of NaN
        (a modality missing for that sample) and scattered NaN cells are left out, and a
        factor carried only by modalities a sample does not observe gets the prior, mean 0
        and standard deviation 1 (docs/model.md). Samples are grouped by the modalities
        they observe (one ``K x K`` solve per group); samples with scattered missing cells
        cost ``O(d K^2)`` each.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m), or MuData
            Same modalities and widths as at fit; entries may be ``None`` and values NaN
            (``None`` and ``pd.NA`` cells are read as NaN). Samples are matched by label as
            at fit (DataFrame index, AnnData / MuData ``obs_names``; the first labelled
            modality's order, a MuData object's own); labelled modalities holding
            different samples are outer-joined (a sample absent from one is missing
            there). Each modality's feature names must be those seen at fit, in the same
            order.
        return_std : bool, default=False
            Also return standard deviations of the scores: those of their error,
            accounting for the estimation error of the fitted loadings (each block's
            high-dimensional spike bias and the cosine between estimated and true
            directions), the larger of the error on new samples and on the samples of the
            fit (:func:`hcl_stats._models.calibration.error_covariance`; docs/model.md).
            The intervals ``Z +- 1.96 Z_std`` then cover the true scores about 95% of
            the time; the posterior's own ``sqrt(diag C_o)``, which takes the fitted
            loadings as known, covers less when the modalities are wide for the sample
            size.

        Returns
        -------
        Z : ndarray of shape (n_samples, K), or DataFrame
            Scores, columns ordered as ``structure_.blocks``. Under
            ``set_output(transform="pandas")``: a DataFrame indexed by the samples' labels,
            with the columns of :meth:`get_feature_names_out`.
        Z_std : ndarray of shape (n_samples, K), or DataFrame
            Only with ``return_std``: the posterior standard deviations, laid out as ``Z``.
        """
        if not isinstance(return_std, (bool, np.bool_)):
            raise TypeError(f"return_std must be True or False, got {return_std!r}")
        inputs, post = self._posterior(X, covariance=bool(return_std))
        out = (post.mean, post.std()) if return_std else (post.mean,)
        # scikit-learn's wrapper only knows the index of a DataFrame input: with several
        # modalities the frames are built here, the wrapper keeps their index
        if _get_output_config("transform", self)["dense"] == "pandas":
            out = tuple(pd.DataFrame(a, index=inputs.sample_index,
                                     columns=self.get_feature_names_out()) for a in out)
        return out if return_std else out[0]

    def fit_transform(self, X, y=None, return_std=False):
        """Fit to ``X`` and return its posterior-mean scores (see :meth:`transform`).

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m), or MuData
        y : ignored
        return_std : bool, default=False
            Also return the posterior standard deviations.

        Returns
        -------
        Z : ndarray of shape (n_samples, K), or DataFrame
        Z_std : ndarray of shape (n_samples, K), or DataFrame
            Only with ``return_std``.
        """
        return self.fit(X).transform(X, return_std=return_std)

    def _posterior(self, X, *, covariance=False):
        """``(Blocks, Posterior)``: the validated ``X`` and the posterior of its factors
        (:func:`hcl_stats._models.posterior.posterior_moments`)."""
        check_is_fitted(self, "loadings_")
        inputs = read_fitted_blocks(self, X, allow_missing=True, missing="allow")
        floor = 1e-12 * max(float(np.max(self.total_variance_ / self.n_features_per_modality_)),
                            1e-300)
        psi = np.maximum(self.feature_noise_variance(), floor)
        calibrated = calibration(self.loadings_, psi, self.structure_,
                                 self.n_features_per_modality_, self.n_joint_samples_,
                                 self.total_variance_) if covariance else None
        post = posterior_moments(list(inputs.arrays), self.means_, self.loadings_, psi,
                                 self.n_features_per_modality_, n_missing=inputs.n_missing,
                                 covariance=covariance, calibration=calibrated)
        return inputs, post

    def get_feature_names_out(self, input_features=None):
        """Names of the score columns: ``"{subset}_k"`` for the k-th factor of each block.

        Parameters
        ----------
        input_features : ignored
            Present for scikit-learn's API; the names follow from ``structure_``.

        Returns
        -------
        ndarray of str of shape (K,)
            E.g. ``"{ehr,notes}_1"`` (named modalities) or ``"{0,1}_1"``.
        """
        check_is_fitted(self, "loadings_")
        st = self.structure_
        return np.asarray([f"{st.label(s)}_{k + 1}" for s, r in st.blocks for k in range(r)],
                          dtype=object)

    def explained_variance(self, fraction=False):
        """Per-modality x per-structure variance table that adds up to each total.

        Columns: one per block (``||B_{m,S}||_F^2``), ``noise`` (the sum of the modality's
        noise variances, ``p_m sigma_m^2`` for one variance per modality),
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
        check_is_fitted(self, "loadings_")
        st = self.structure_
        signal, noise = self._variance_parts()
        table = pd.DataFrame({st.label(s): signal[:, j].tolist()
                              for j, s in enumerate(st.subsets)},
                             index=[st.modality_label(m) for m in range(len(noise))])
        table["noise"] = noise.tolist()
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
