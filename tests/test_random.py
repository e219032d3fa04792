"""random_state=None means one thing everywhere: the default seed, so repeated fits agree."""

import numpy as np
import pytest

from hcl_stats import HCL, Structure
from hcl_stats._numerics.random import as_generator, as_legacy_random_state
from hcl_stats.datasets import make_hierarchical


def test_generator_rules():
    np.testing.assert_array_equal(as_generator(None).standard_normal(5),
                                  np.random.default_rng(0).standard_normal(5))
    g = np.random.default_rng(3)
    assert as_generator(g) is g
    np.testing.assert_array_equal(as_legacy_random_state(None).standard_normal(5),
                                  np.random.RandomState(0).standard_normal(5))
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match="random_state"):
            as_generator(bad)


def test_default_fits_are_reproducible():
    st = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    X = make_hierarchical(400, [40, 300, 30], st, noise_variance=1.0, random_state=1)
    a, b = HCL(st).fit(X), HCL(st).fit(X)
    np.testing.assert_array_equal(a.loadings_, b.loadings_)
    np.testing.assert_array_equal(a.noise_variance_, b.noise_variance_)
