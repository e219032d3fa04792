"""Modality weighting: the ``scale`` rules of the covariance-based models.

The model is fitted to the covariance of the rescaled data ``D^{-1/2} x`` and reported in
the data's units: loadings ``D^{1/2} W`` and noise ``D Psi``, so the posterior-mean
scores, the model covariance and the variance table all refer to ``x`` itself.

* ``None``: ``D = I`` (the data's units).
* ``"modality"``: every feature of modality ``m`` is divided by the square root of the
  modality's total variance ``trace(S_mm)`` (each modality to unit total variance, the
  weighting of JIVE and MOFA), so that wide or large-valued modalities do not dominate
  the shared factors; the geometry inside each modality is unchanged.
* ``"features"``: every feature to unit variance (correlations), for modalities whose
  features are in different units.

A feature or modality without variance keeps the factor 1 (it carries nothing to scale).
See ``docs/model.md``.
"""

from __future__ import annotations

import numpy as np

from hcl_stats._structure import row_slices

__all__ = ["SCALES", "ScaledBlock", "check_scale", "feature_scales", "rescale_covariance"]

SCALES = (None, "modality", "features")


def check_scale(scale, *, allow_auto=False):
    """Validate a ``scale`` parameter (one of :data:`SCALES`, or ``"auto"`` if allowed)."""
    if scale is None or (isinstance(scale, str) and (
            scale in SCALES or (allow_auto and scale == "auto"))):
        return scale
    shown = "'auto', " if allow_auto else ""
    raise ValueError(f"scale must be {shown}None, 'modality' or 'features', got {scale!r}")


def feature_scales(variances, n_features, scale):
    """Per-feature variance factors ``D`` (shape ``(d,)``) of a ``scale`` rule.

    Parameters
    ----------
    variances : array-like of shape (d,)
        Feature variances (the diagonal of the sample covariance).
    n_features : sequence of int
        Modality widths.
    scale : {None, "modality", "features"}
        The rule.

    Returns
    -------
    factors : ndarray of shape (d,) or None
        None for ``scale=None``.

    Examples
    --------
    >>> feature_scales([1.0, 3.0, 4.0], [2, 1], "modality")
    array([4., 4., 4.])
    >>> feature_scales([1.0, 0.0, 4.0], [2, 1], "features")
    array([1., 1., 4.])
    """
    scale = check_scale(scale)
    if scale is None:
        return None
    v = np.asarray(variances, dtype=np.float64).reshape(-1)
    if scale == "features":
        return np.where(v > 0, v, 1.0)
    out = np.empty_like(v)
    for rows in row_slices(n_features):
        total = float(v[rows].sum())
        out[rows] = total if total > 0 else 1.0
    return out


def rescale_covariance(S, factors):
    """``D^{-1/2} S D^{-1/2}`` as a new float64 array (``S`` itself when ``factors`` is None)."""
    if factors is None:
        return S
    r = 1.0 / np.sqrt(factors)
    return np.asarray(S, dtype=np.float64) * r[:, None] * r[None, :]


class ScaledBlock:
    """Read-only view of a modality ``X`` whose columns are multiplied by ``factors``.

    Rows are scaled as they are read (``view[rows]``), so a memmap is never copied whole;
    the reduced path reads its data through this view (it has ``shape``, ``dtype`` and
    row slicing, which is all the chunked products use).
    """

    def __init__(self, X, factors):
        self._X = X
        self._factors = np.asarray(factors, dtype=np.float64)
        self.shape = X.shape
        self.ndim = 2
        self.dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)

    def __getitem__(self, rows):
        return (np.asarray(self._X[rows], dtype=np.float64) * self._factors).astype(
            self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None):
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)
