"""Base class of the models fitted from the data themselves (JIVE, AJIVE, SLIDE).

:meth:`DataFactorModel.fit` is the one skeleton of these models: it validates and centres
the modalities, hands them to the subclass's algorithm (``_fit_centred``), and closes the
same way for all of them: per-modality noise variances from the residuals, loadings with
the noise of their in-sample scores removed, fitted attributes stored and checked. The
conventions are described in docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hcl_stats._input.validation import read_blocks
from hcl_stats._models.base import BlockFactorModel, describe_missing
from hcl_stats._numerics.linalg import serial_blas
from hcl_stats._structure import Structure, row_slices

__all__ = [
    "DataFactorModel",
    "DataFit",
    "centre_blocks",
    "denoise_loadings",
    "residual_noise_variance",
]


@dataclass(frozen=True)
class DataFit:
    """What a data model's algorithm returns to :meth:`DataFactorModel.fit`.

    Attributes
    ----------
    structure : Structure
        The fitted structure, bound to the data's modality names.
    loadings : ndarray of shape (d, K)
        ``X^T U / sqrt(n - 1)`` in original units (before :func:`denoise_loadings`).
    rss : ndarray of shape (M,)
        Residual sum of squares of each centred modality, in original units.
    scales : ndarray of shape (M,) or None
        What each modality was divided by before fitting (``None``: not scaled).
    attributes : dict
        Fitted attributes specific to the estimator (names ending in ``_``).
    """

    structure: Structure
    loadings: np.ndarray
    rss: np.ndarray
    scales: np.ndarray | None = None
    attributes: dict = field(default_factory=dict)


def centre_blocks(X, estimator="this model"):
    """Validate with the package's block validator and return centred float64 copies.

    Missing values (NaN cells, rows of NaN, samples absent from a labelled modality's
    index) raise a ValueError naming the modality, the counts and ``estimator``: these
    algorithms need every value.

    Returns
    -------
    blocks : list of ndarray of shape (n, p_m)
        Centred copies (the caller's arrays are never modified).
    means : list of ndarray of shape (p_m,)
    inputs : Blocks
        What the validator read (names, sample labels, feature names).
    total_variance : ndarray of shape (M,)
        ``trace`` of each modality's unbiased sample covariance.
    """
    inputs = read_blocks(X, fitting=True, missing="allow")
    if not inputs.complete:
        _raise_missing(inputs, estimator)
    means = [np.asarray(b, dtype=np.float64).mean(axis=0) for b in inputs.arrays]
    blocks = [np.asarray(b, dtype=np.float64) - mu for b, mu in zip(inputs.arrays, means)]
    n = blocks[0].shape[0]
    total = np.array([float(np.sum(b * b)) / (n - 1) for b in blocks])
    return blocks, means, inputs, total


def _raise_missing(inputs, estimator):
    """The ValueError of a data model given incomplete data."""
    raise ValueError(
        f"{describe_missing(inputs)}; {estimator} fits complete data only: impute or drop "
        "them, or fit HCL or ConcatSVD, which fit incomplete data")


def residual_noise_variance(rss, n, p, rank):
    """Noise variance from a residual sum of squares of a rank-``rank`` fit.

    ``rss / ((n - 1) p - r (n - 1 + p - r))``: the centred data have ``(n - 1) p`` degrees
    of freedom and a rank-``r`` matrix uses ``r (n - 1 + p - r)`` of them. Falls back to
    ``rss / ((n - 1) p)`` when the count is not positive, and is floored at a tiny positive
    number so that scores stay finite.
    """
    dof = (n - 1) * p - rank * (n - 1 + p - rank)
    if dof <= 0:
        dof = (n - 1) * p
    value = float(rss) / dof
    return max(value, 1e-12 * max(float(rss) / ((n - 1) * p), 1e-300))


def denoise_loadings(W, n_features, noise_variance, scales=None):
    """Remove from each fitted column the noise its in-sample score picked up.

    A column ``L_k = X^T u_k / sqrt(n - 1)`` built from a score ``u_k = X v_k / s_k`` that
    is a singular vector of the (scaled) data satisfies ``L_k = sqrt(lambda_k) v_k`` with
    ``lambda_k = s_k^2 / (n - 1)`` an eigenvalue of ``S = C + Psi`` (signal plus noise). The
    signal part then is ``C v_k = (lambda_k - Psi) v_k``, and the rank-one signal loading
    with that image is ``w_k = (lambda_k - Psi) v_k / sqrt(lambda_k - v_k^T Psi v_k)``:
    in the rows of modality ``m``,
    ``w_{m,k} = L_{m,k} (lambda_k - sigma_m^2) / sqrt(lambda_k (lambda_k - sum_m sigma_m^2
    ||v_{m,k}||^2))`` (clipped at zero). For one modality and isotropic noise this is
    probabilistic PCA's ``sqrt(lambda_k - sigma^2) v_k``. It is applied column by column
    (exact for singular vectors, a first-order correction otherwise), in the scaled units
    the method worked in (``scales``), and keeps every structural zero.

    Parameters
    ----------
    W : ndarray of shape (d, K)
        Loadings ``X^T U / sqrt(n - 1)`` in original units.
    n_features : sequence of int
    noise_variance : ndarray of shape (M,)
        Noise variances in original units.
    scales : ndarray of shape (M,), default=None
        What each modality was divided by before fitting (ones by default).

    Returns
    -------
    ndarray of shape (d, K)
    """
    n_features = np.asarray(n_features, dtype=int)
    M = n_features.size
    scales = np.ones(M) if scales is None else np.asarray(scales, dtype=float)
    row_scale = np.repeat(scales, n_features)
    L = W / row_scale[:, None]
    psi = np.asarray(noise_variance, dtype=float) / scales ** 2  # (M,)
    rows = row_slices(n_features)
    out = np.zeros_like(L)
    for k in range(L.shape[1]):
        col = L[:, k]
        lam = float(col @ col)
        if lam <= 0:
            continue
        share = np.array([float(col[r] @ col[r]) for r in rows]) / lam
        denom = lam * (lam - float(np.sum(psi * share)))
        if denom <= 0:
            continue
        factor = np.clip(lam - psi, 0.0, None) / np.sqrt(denom)
        out[:, k] = col * np.repeat(factor, n_features)
    return out * row_scale[:, None]


class DataFactorModel(BlockFactorModel):
    """Base of the models whose fit needs the samples, not only their covariance.

    Subclasses implement ``_fit_centred(blocks, names)``: it receives the validated,
    centred float64 modalities and their names, checks the estimator's parameters against
    them, runs the algorithm and returns a :class:`DataFit`. :meth:`fit` does the rest.
    """

    def fit(self, X, y=None):
        """Fit the model to the modalities ``X``.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m), or MuData
            The modalities, measured on the same samples (a dict maps names to arrays;
            DataFrames and AnnData objects are matched by sample label), every value
            observed.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When a value is missing (NaN, or a sample absent from a labelled modality):
            the message names the modality and the counts. HCL and ConcatSVD fit
            incomplete data; ``transform`` of a fitted data model takes missing values.
        """
        blocks, means, inputs, total = centre_blocks(X, type(self).__name__)
        names = inputs.names
        # one BLAS thread: the alternating fits and resampling loops are many small
        # products, which a multi-threaded pool on an oversubscribed machine slows several
        # times over, and whose sums a thread count would otherwise round differently
        with serial_blas():
            result = self._fit_centred(blocks, names)
        n = blocks[0].shape[0]
        n_features = [b.shape[1] for b in blocks]
        structure = result.structure
        noise = np.array([
            residual_noise_variance(result.rss[m], n, p, structure.modality_rank(m))
            for m, p in enumerate(n_features)])
        W = denoise_loadings(result.loadings, n_features, noise, result.scales)
        self._set_fitted(structure=structure, loadings=W, means=means, noise_variance=noise,
                         total_variance=total, names=names, n_samples=n,
                         extra=result.attributes)
        return self._record_input(inputs)

    def _fit_centred(self, blocks, names):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def fit_from_covariance(self, S, n_samples, n_features, *, means=None, names=None):
        """Not available: this model is estimated from the samples themselves.

        Raises
        ------
        TypeError
            Always; call ``fit`` with the data.
        """
        raise TypeError(
            f"{type(self).__name__} is estimated from the data, not from a covariance: "
            "call fit(X) with the modalities' samples"
        )
