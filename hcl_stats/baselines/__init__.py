"""Baselines behind the same API as :class:`hcl_stats.HCL`."""

from hcl_stats.baselines._concat_svd import ConcatSVD

__all__ = ["ConcatSVD"]
