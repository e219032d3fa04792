"""Parameter checks shared by the estimators."""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = ["check_positive_int", "check_positive_float"]


def check_positive_int(value, name, *, minimum=1):
    """Raise a ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(value, name, *, strict=True):
    """Raise a ValueError unless ``value`` is a finite positive (or non-negative) number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (strict and v == 0):
        raise ValueError(f"{name} must be a {'positive' if strict else 'non-negative'} "
                         f"finite number, got {value!r}")
    return v
