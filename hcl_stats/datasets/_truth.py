"""Ground truth returned by the simulation generators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcl_stats._structure import Structure

__all__ = ["CovarianceTruth", "HierarchicalTruth"]


@dataclass(frozen=True)
class HierarchicalTruth:
    """Truth behind :func:`~hcl_stats.datasets.make_hierarchical`.

    Attributes
    ----------
    W : ndarray of shape (d, K)
        Loadings, zero outside the structure's mask.
    Z : ndarray of shape (n, K)
        Factor scores.
    noise : list of ndarray of shape (n, p_m)
        The noise added to each modality.
    noise_variance : ndarray of shape (M,)
        Noise variance of each modality.
    structure : Structure
    n_features : ndarray of shape (M,)
        Modality widths.
    """

    W: np.ndarray
    Z: np.ndarray
    noise: list
    noise_variance: np.ndarray
    structure: Structure
    n_features: np.ndarray


@dataclass(frozen=True)
class CovarianceTruth:
    """Truth behind :func:`~hcl_stats.datasets.make_hierarchical_covariance`.

    Attributes
    ----------
    W : ndarray of shape (d, K)
        Loadings, zero outside the structure's mask.
    covariance : ndarray of shape (d, d)
        Population covariance ``W W^T + Psi``.
    noise_variance : ndarray of shape (M,)
        Noise variance of each modality.
    structure : Structure
    n_features : ndarray of shape (M,)
        Modality widths.
    n_samples : int
        Number of samples the sample covariance is drawn for.
    """

    W: np.ndarray
    covariance: np.ndarray
    noise_variance: np.ndarray
    structure: Structure
    n_features: np.ndarray
    n_samples: int
