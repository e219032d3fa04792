"""Simulated multimodal data with ground truth."""

from hcl_stats.datasets._hierarchical import (
           make_hierarchical,
           make_loadings,
           model_covariance,
)
from hcl_stats.datasets._truth import CovarianceTruth, HierarchicalTruth
from hcl_stats.datasets._wishart import (
           make_hierarchical_covariance,
           sample_wishart_covariance,
)

__all__ = ["CovarianceTruth", "HierarchicalTruth", "make_hierarchical",
           "make_hierarchical_covariance", "make_loadings", "model_covariance",
           "sample_wishart_covariance"]
