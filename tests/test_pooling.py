"""Federated fitting: pooled summary statistics give the fit on the pooled data."""

import numpy as np
import pytest

from hcl_stats import HCL, Structure, pool_covariances
from hcl_stats._statistics import chunked
from hcl_stats._statistics.covariance import sample_covariance
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


# -- float32 statistics ----------------------------------------------------------------------
def test_float32_covariance_matches_numpy_cov():
    # large means (a float32 cast before centring would lose them) and mixed input dtypes
    rng = np.random.default_rng(5)
    X = [rng.normal(size=(3000, 40)) * 3.0 + 1e4, rng.normal(size=(3000, 25)).astype(np.float32)]
    X_copy = [x.copy() for x in X]
    S, means, n = sample_covariance(X, dtype=np.float32)
    reference = np.cov(np.hstack([x.astype(np.float64) for x in X]), rowvar=False)
    assert S.dtype == np.float32 and n == 3000
    scale = np.sqrt(np.outer(np.diag(reference), np.diag(reference)))
    assert np.abs(S - reference).max() / scale.max() < 1e-6
    np.testing.assert_allclose(means, np.hstack(X).astype(np.float64).mean(axis=0),
                               rtol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(X, X_copy))  # inputs untouched


def test_float32_statistics_direct_and_chunked_agree_with_numpy():
    rng = np.random.default_rng(6)
    X = [rng.normal(size=(2000, 30)), rng.normal(size=(2000, 20)) + 5.0]
    reference = np.cov(np.hstack(X), rowvar=False)
    direct, _, _ = chunked.covariance_statistics(X, dtype=np.float32)
    assert direct.dtype == np.float32
    np.testing.assert_allclose(direct, reference, atol=2e-6 * np.abs(reference).max())
    # a chunk size asked for: the chunked float64 pass, rounded once
    chunks, _, _ = chunked.covariance_statistics(X, dtype=np.float32, chunk_bytes=8 * 50 * 128)
    assert chunks.dtype == np.float32
    np.testing.assert_allclose(chunks, reference, atol=1e-6 * np.abs(reference).max())


def test_float32_statistics_name_the_modality_with_nan():
    X = [np.ones((50, 3)), np.ones((50, 2))]
    X[1][7, 1] = np.nan
    with pytest.raises(ValueError, match="modality 1"):
        chunked.covariance_statistics(X, dtype=np.float32)
