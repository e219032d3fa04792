"""Ground truth returned by the simulation generators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcl_stats._structure import Structure

__all__ = ["CovarianceTruth", "HierarchicalTruth"]


@dataclass(frozen=True, eq=False)
class _ModelTruth:
    """The parameters of the simulated model.

    Attributes
    ----------
    W : ndarray of shape (d, K)
        Loadings, zero outside the structure's mask.
    noise_variance : ndarray of shape (M,)
        Noise variance of each modality.
    structure : Structure
    n_features : ndarray of shape (M,)
        Modality widths.
    """

    W: np.ndarray
    noise_variance: np.ndarray
    structure: Structure
    n_features: np.ndarray


@dataclass(frozen=True, eq=False)
class HierarchicalTruth(_ModelTruth):
    """Truth behind :func:`~hcl_stats.datasets.make_hierarchical`.

    The model's ``W``, ``noise_variance``, ``structure`` and ``n_features``, plus the draw:

    Attributes
    ----------
    Z : ndarray of shape (n, K)
        Factor scores.
    noise : list of ndarray of shape (n, p_m)
        The noise added to each modality.
    """

    Z: np.ndarray = None
    noise: list = None


@dataclass(frozen=True, eq=False)
class CovarianceTruth(_ModelTruth):
    """Truth behind :func:`~hcl_stats.datasets.make_hierarchical_covariance`.

    The model's ``W``, ``noise_variance``, ``structure`` and ``n_features``, plus:

    Attributes
    ----------
    covariance : ndarray of shape (d, d)
        Population covariance ``W W^T + Psi``.
    n_samples : int
        Number of samples the sample covariance is drawn for.
    """

    covariance: np.ndarray = None
    n_samples: int = None
