"""Sufficient statistics: sample covariances, chunked accumulation, pooling across sites."""
