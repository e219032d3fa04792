"""Simulated multimodal data with ground truth."""

from hcl_stats.datasets._hierarchical import make_hierarchical, make_loadings, model_covariance

__all__ = ["make_hierarchical", "make_loadings", "model_covariance"]
