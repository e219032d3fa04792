"""Federated fitting: pooled summary statistics give the fit on the pooled data."""

import numpy as np
import pytest

from hcl_stats import HCL, Structure, pool_covariances
from hcl_stats.datasets import make_hierarchical


def test_pooled_fit_equals_fit_on_pooled_data():
    st = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    widths = [12, 15, 10]
    X = make_hierarchical(900, widths, st, noise_variance=0.3, random_state=0)
    # three sites with different sizes and a shift in the means of one
    cuts = [0, 200, 550, 900]
    sites = [[x[a:b] + (1.5 if k == 1 else 0.0) for x in X]
             for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
    stats = [(np.cov(np.hstack(s), rowvar=False), np.hstack(s).mean(axis=0), len(s[0]))
             for s in sites]
    S, mean, n = pool_covariances(*zip(*stats))
    pooled = [np.vstack([s[m] for s in sites]) for m in range(3)]
    np.testing.assert_allclose(S, np.cov(np.hstack(pooled), rowvar=False), atol=1e-12)
    a = HCL(st, tol=1e-8).fit(pooled)
    b = HCL(st, tol=1e-8).fit_from_covariance(S, n, widths, means=mean)
    np.testing.assert_allclose(a.get_covariance(), b.get_covariance(), atol=1e-8)
    np.testing.assert_allclose(a.transform(pooled), b.transform(pooled), atol=1e-6)


def test_pooling_validates():
    with pytest.raises(ValueError, match="as many"):
        pool_covariances([np.eye(2)], [np.zeros(2), np.zeros(2)], [3])
    with pytest.raises(ValueError, match="site 1"):
        pool_covariances([np.eye(2), np.eye(3)], [np.zeros(2), np.zeros(2)], [3, 4])
    with pytest.raises(ValueError, match="means must be 3"):
        HCL(Structure({(0,): 1})).fit_from_covariance(np.eye(3), 10, [3], means=[0.0])
