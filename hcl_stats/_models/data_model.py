"""Base class of the models fitted from the data themselves (JIVE, AJIVE, SLIDE)."""

from __future__ import annotations

from hcl_stats._models.base import BlockFactorModel

__all__ = ["DataFactorModel"]


class DataFactorModel(BlockFactorModel):
    """Base of the models whose fit needs the samples, not only their covariance.

    Subclasses implement ``fit(X, y=None)``.
    """

    def fit_from_covariance(self, S, n_samples, n_features, *, means=None, names=None):
        """Not available: this model is estimated from the samples themselves.

        Raises
        ------
        TypeError
            Always; call ``fit`` with the data.
        """
        raise TypeError(
            f"{type(self).__name__} is estimated from the data, not from a covariance: "
            "call fit(X) with the modalities' samples"
        )
