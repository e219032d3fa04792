"""Scores with a known measurement-error covariance (for the errors-in-variables correction)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from hcl_stats._input.validation import read_fitted_blocks
from hcl_stats._models.base import describe_missing

__all__ = ["pseudo_inverse_scores"]


def pseudo_inverse_scores(model, X):
    """Least-squares scores ``C (x - mu)`` with ``C = (W^T W)^{-1} W^T``, and their noise.

    These are the scores of the paper's reference code (see ``docs/estimation.md``, section 8). Since
    ``C W = I``, ``C (x - mu) = z + C e``: the true factors plus a measurement error with
    covariance ``C Psi C^T``, which :class:`StructuredGroupLasso` can correct for through
    ``score_noise_cov``. (The posterior-mean scores of ``model.transform`` are the better
    default: regressing on them needs no correction.)

    Parameters
    ----------
    model : fitted BlockFactorModel
        E.g. a fitted :class:`hcl_stats.HCL`.
    X : list, tuple or dict of array-like of shape (n_samples, p_m)
        All modalities observed, no missing value (a ValueError names the modality
        otherwise: ``model.transform`` takes missing values).

    Returns
    -------
    Z : ndarray of shape (n_samples, K)
        Scores, columns ordered as ``model.structure_.blocks``.
    noise_cov : ndarray of shape (K, K)
        ``C Psi C^T`` with ``Psi`` the model's noise variances (one per feature).
    """
    check_is_fitted(model, "loadings_")
    inputs = read_fitted_blocks(model, X, missing="allow")
    if not inputs.complete:
        raise ValueError(
            f"{describe_missing(inputs)}: the least-squares scores need every value; use "
            "model.transform, whose posterior-mean scores take missing values (and need no "
            "errors-in-variables correction)")
    blocks = inputs.arrays
    W = model.loadings_
    C = np.linalg.solve(W.T @ W, W.T)
    x = np.hstack([np.asarray(b, dtype=np.float64) - mu for b, mu in zip(blocks, model.means_)])
    psi = model.feature_noise_variance()
    return x @ C.T, (C * psi) @ C.T
