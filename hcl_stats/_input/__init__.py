"""Input checks: the one validator for multi-block data, covariances and parameters."""
