"""Parameter checks shared by the estimators, and the table-driven validation of ``fit``.

An estimator declares ``_parameter_constraints``, a dict from each constructor parameter
to a check (a callable ``check(value, name) -> value`` that raises a ValueError or
TypeError naming the parameter), and optionally ``_parameter_combinations``, a tuple of
``(predicate, message)`` pairs on the checked values. :func:`validate_params` applies both
before any data is read; adding a parameter is one line in the table.
"""

from __future__ import annotations

from numbers import Integral, Real
from types import MappingProxyType

import numpy as np

__all__ = ["check_positive_int", "check_positive_float", "validate_params", "options",
           "integer", "positive_float", "seed", "optional"]


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


def options(*allowed):
    """Check: ``value`` is one of ``allowed`` (compared with ``==`` on strings only)."""
    shown = ", ".join(repr(a) for a in allowed)

    def check(value, name):
        if not (isinstance(value, str) and value in allowed):
            raise ValueError(f"{name} must be one of {shown}, got {value!r}")
        return value

    return check


def integer(minimum=1):
    """Check: an integer >= ``minimum``."""
    return lambda value, name: check_positive_int(value, name, minimum=minimum)


def positive_float(strict=True):
    """Check: a finite number > 0 (``strict``) or >= 0."""
    return lambda value, name: check_positive_float(value, name, strict=strict)


def optional(check):
    """Check: ``None`` or what ``check`` accepts."""
    return lambda value, name: None if value is None else check(value, name)


def seed(value, name):
    """Check: ``None`` (a fixed default seed), an integer >= 0 or a ``numpy.random.Generator``.

    The value is passed to :func:`hcl_stats._numerics.random.as_generator` by the steps
    that draw.
    """
    if value is None or isinstance(value, np.random.Generator):
        return value
    return check_positive_int(value, name, minimum=0)


def validate_params(estimator):
    """Check every parameter of ``estimator`` against its declared table, then the combinations.

    Returns
    -------
    mapping
        Read-only mapping from parameter name to its checked value.
    """
    checked = {name: check(getattr(estimator, name), name)
               for name, check in estimator._parameter_constraints.items()}
    for conflict, message in getattr(estimator, "_parameter_combinations", ()):
        if conflict(checked):
            raise ValueError(message)
    return MappingProxyType(checked)


def is_number_like(value):
    """Whether ``value`` is a real number or an array-like of them (not a string)."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return True
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False
