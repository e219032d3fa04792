"""Base class of the models fitted from a covariance (HCL, ConcatSVD)."""

from __future__ import annotations

import numpy as np

from hcl_stats._input.params import check_positive_int, validate_params
from hcl_stats._input.validation import check_covariance, read_blocks
from hcl_stats._models.base import BlockFactorModel
from hcl_stats._statistics.chunked import covariance_statistics
from hcl_stats._structure import row_slices

__all__ = ["CovarianceFactorModel"]


class CovarianceFactorModel(BlockFactorModel):
    """Base of the models whose fit needs only the sample covariance (not for direct use).

    Subclasses declare ``_parameter_constraints`` (see
    :func:`hcl_stats._input.params.validate_params`) and implement
    ``_fit_covariance(params, S, means, n_samples, n_features, names, joint_counts=None)``
    with the checked parameters; :meth:`fit` computes the statistics from data (the
    pairwise covariance and its joint sample counts when values are missing) and
    :meth:`fit_from_covariance` takes them as given. Both check the parameters first,
    before reading any input.
    """

    _parameter_constraints: dict = {}

    def _validate_params(self):
        """The checked constructor parameters (read-only mapping), or raise."""
        return validate_params(self)

    def fit(self, X, y=None):
        """Fit the model.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m), or MuData
            The modalities, measured on the same samples (a dict maps names to arrays;
            DataFrames and AnnData objects are matched by sample label). Dask arrays and NumPy memmaps are accepted: the means and covariance are then
            accumulated chunk by chunk in float64 (Dask's scheduler for Dask arrays), and
            the data are never copied whole (:mod:`hcl_stats._statistics.chunked`). Build Dask
            arrays of on-disk data from a chunked store or chunk loaders
            (``da.from_delayed``), not ``da.from_array(memmap)``, which recent Dask
            versions copy into memory; or pass the memmaps themselves. Missing values
            (NaN, ``None``, ``pd.NA``; a sample absent from a labelled modality) are
            allowed: the model is fitted to the pairwise covariance of the observed values
            (``docs/input.md``).
        y : ignored

        Returns
        -------
        self
        """
        params = self._validate_params()
        inputs = read_blocks(X, lazy=True, fitting=True, missing="allow")
        S, means, n, joint = covariance_statistics(list(inputs.arrays), inputs.names,
                                                   missing="allow")
        self._fit_covariance(params, S, means, n, list(inputs.n_features), inputs.names,
                             joint_counts=joint)
        return self._record_input(inputs)

    def fit_from_covariance(self, S, n_samples, n_features, *, means=None, names=None):
        """Fit from a sample covariance instead of data (summary statistics only).

        Parameters
        ----------
        S : array-like of shape (d, d)
            Unbiased sample covariance of the stacked modalities (divisor ``n - 1``).
        n_samples : int
            Number of samples behind ``S``.
        n_features : sequence of int
            Modality widths, in the order of the rows of ``S``.
        means : array-like of shape (d,), default=None
            Stacked feature means behind ``S`` (zero when not given, so that ``transform``
            then expects centred data).
        names : sequence of str, default=None
            Modality names.

        Returns
        -------
        self

        Notes
        -----
        Sites that may share summary statistics but not rows (hospitals, say) can be fitted
        together: pool their covariances, means and sample counts with
        :func:`hcl_stats.pool_covariances` and pass the result here; the fit equals the fit
        on the pooled data.
        """
        params = self._validate_params()
        n_features = [check_positive_int(p, "n_features entries") for p in n_features]
        n_samples = check_positive_int(n_samples, "n_samples", minimum=2)
        d = sum(n_features)
        S = check_covariance(S, d)
        if means is None:
            means = np.zeros(d)
        else:
            means = np.asarray(means, dtype=np.float64).reshape(-1)
            if means.shape != (d,) or not np.all(np.isfinite(means)):
                raise ValueError(f"means must be {d} finite values, got shape {means.shape}")
        names = tuple(names) if names is not None else None
        return self._fit_covariance(params, S, means, n_samples, n_features, names)

    def _set_fitted_from_covariance(self, S, means, n, n_features, names, structure, loadings,
                                    noise_variance, joint_counts=None):
        rows = row_slices(n_features)
        diag = np.diag(S)
        self._set_fitted(
            structure=structure, loadings=loadings, means=[means[sl] for sl in rows],
            noise_variance=noise_variance, total_variance=[diag[sl].sum() for sl in rows],
            names=names, n_samples=n, joint_counts=joint_counts)
