"""Recovery metrics, invariant to the rotations the model cannot identify."""

from hcl_stats.metrics._coverage import interval_coverage
from hcl_stats.metrics._recovery import (
                                         align_loadings,
                                         block_sin_theta,
                                         gram_errors,
                                         recovery_table,
                                         sin_theta_distance,
)

__all__ = ["align_loadings", "block_sin_theta", "gram_errors", "interval_coverage",
           "recovery_table",
           "sin_theta_distance"]
