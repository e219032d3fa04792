"""Simulated multimodal data with ground truth, and real multi-view data shipped by packages."""

from hcl_stats.datasets._hierarchical import (
           make_hierarchical,
           make_loadings,
           model_covariance,
)
from hcl_stats.datasets._missing import mask_modalities
from hcl_stats.datasets._real import (
           load_breast_cancer_modalities,
           load_digits_quadrants,
           load_multiple_features,
           load_nutrimouse,
)
from hcl_stats.datasets._truth import CovarianceTruth, HierarchicalTruth
from hcl_stats.datasets._wishart import (
           make_hierarchical_covariance,
           sample_wishart_covariance,
)

__all__ = ["CovarianceTruth", "HierarchicalTruth", "load_breast_cancer_modalities",
           "load_digits_quadrants", "load_multiple_features", "load_nutrimouse",
           "make_hierarchical", "make_hierarchical_covariance", "make_loadings",
           "mask_modalities", "model_covariance", "sample_wishart_covariance"]
