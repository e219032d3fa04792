"""Base classes of the fitted models (covariance-based and data-based) and their summaries."""
