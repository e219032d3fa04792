"""The one meaning of ``random_state`` in the package.

Every estimator, selection procedure, resampling study and data generator takes
``random_state`` and passes it through :func:`as_generator` (or, for the data generators,
:func:`as_legacy_random_state`):

* ``None``: a fixed default seed (:data:`DEFAULT_SEED`), so that repeated calls on the same
  input give identical results (also across BLAS thread counts) unless the caller asks for
  other draws;
* an integer >= 0: that seed;
* a :class:`numpy.random.Generator`: used as is (its state advances).

The data generators of :mod:`hcl_stats.datasets` draw from NumPy's legacy
:class:`~numpy.random.RandomState` stream (seeded the same way), so that the package's
seeded simulation studies keep their data.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = ["DEFAULT_SEED", "as_generator", "as_legacy_random_state"]

#: The seed that ``random_state=None`` stands for.
DEFAULT_SEED = 0


def _seed(random_state):
    if random_state is None:
        return DEFAULT_SEED
    if isinstance(random_state, bool) or not isinstance(random_state, Integral) \
            or random_state < 0:
        raise ValueError(f"random_state must be None, an integer >= 0 or a "
                         f"numpy.random.Generator, got {random_state!r}")
    return int(random_state)


def as_generator(random_state):
    """A :class:`numpy.random.Generator` for ``random_state`` (see the module docstring).

    A legacy :class:`~numpy.random.RandomState` seeds a new generator with one draw from it.

    >>> as_generator(None).integers(1000) == as_generator(0).integers(1000)
    True
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(2 ** 31 - 1)))
    return np.random.default_rng(_seed(random_state))


def as_legacy_random_state(random_state):
    """A :class:`numpy.random.RandomState` for the data generators (same ``None`` rule).

    A Generator seeds a new RandomState with one draw from it.
    """
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(2 ** 31 - 1)))
    return np.random.RandomState(_seed(random_state))
