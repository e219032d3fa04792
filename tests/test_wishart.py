"""The Wishart covariance generator against closed forms and simulated data."""

import numpy as np
import pytest
from scipy import stats

from hcl_stats import Structure
from hcl_stats.datasets import (
    make_hierarchical,
    make_hierarchical_covariance,
    make_loadings,
    model_covariance,
    sample_wishart_covariance,
)
from hcl_stats.datasets._wishart import _factor_wishart

WIDTHS = [3, 4]
STRUCTURE = Structure({(0, 1): 1, (0,): 1, (1,): 1})
NOISE = [0.5, 1.0]
N_SAMPLES = 30
N_DRAWS = 2000


def _moments_ok(draws, Sigma, n):
    """Mean and variance of every entry match the Wishart closed forms (within 5 SE)."""
    df = n - 1
    var = (Sigma ** 2 + np.outer(np.diag(Sigma), np.diag(Sigma))) / df
    k = draws.shape[0]
    z_mean = (draws.mean(axis=0) - Sigma) / np.sqrt(var / k)
    assert np.abs(z_mean).max() < 5.0
    # the sample variance of k draws has relative SE about sqrt(2 / k) (x kurtosis): 15%
    assert np.abs(draws.var(axis=0) / var - 1.0).max() < 0.15


@pytest.fixture
def truth(rng):
    W = make_loadings(WIDTHS, STRUCTURE, random_state=int(rng.integers(2**31)))
    return W, model_covariance(W, NOISE, WIDTHS)


def test_general_wishart_moments(truth, rng):
    _, Sigma = truth
    draws = np.array([sample_wishart_covariance(Sigma, N_SAMPLES, random_state=s)
                      for s in rng.integers(2**31, size=N_DRAWS)])
    _moments_ok(draws, Sigma, N_SAMPLES)


def test_factor_wishart_moments(truth, rng):
    W, Sigma = truth
    rows = np.repeat(NOISE, WIDTHS)
    draws = np.array([_factor_wishart(W, rows, N_SAMPLES - 1, np.random.RandomState(s))
                      for s in rng.integers(2**31, size=N_DRAWS)])
    _moments_ok(draws, Sigma, N_SAMPLES)


def test_same_distribution_as_sample_covariance_of_data(rng):
    """Two-sample KS on the largest eigenvalue and on an off-diagonal entry."""
    seeds = rng.integers(2**31, size=400)
    wish, data = [], []
    for s in seeds:
        S = make_hierarchical_covariance(N_SAMPLES, WIDTHS, STRUCTURE, noise_variance=NOISE,
                                         random_state=int(s))
        X = make_hierarchical(N_SAMPLES, WIDTHS, STRUCTURE, noise_variance=NOISE,
                              random_state=int(s))
        C = np.cov(np.hstack(X), rowvar=False)
        wish.append((np.linalg.eigvalsh(S)[-1], S[0, 4]))
        data.append((np.linalg.eigvalsh(C)[-1], C[0, 4]))
    wish, data = np.array(wish), np.array(data)
    for j in range(2):
        assert stats.ks_2samp(wish[:, j], data[:, j]).pvalue > 1e-3


def test_same_loadings_as_make_hierarchical():
    S, t1 = make_hierarchical_covariance(50, [5, 6, 7], Structure.full(3, 1),
                                         random_state=3, return_truth=True)
    _, t2 = make_hierarchical(50, [5, 6, 7], Structure.full(3, 1), random_state=3,
                              return_truth=True)
    np.testing.assert_array_equal(t1.W, t2.W)
    np.testing.assert_allclose(t1.covariance, t2.W @ t2.W.T + np.eye(18))
    assert S.shape == (18, 18)
    np.testing.assert_allclose(S, S.T)


@pytest.mark.parametrize("n", [5, 12])
def test_few_samples_singular_and_psd(n):
    """n - 1 < d: the sample covariance has rank n - 1 (the general path is used)."""
    S = make_hierarchical_covariance(n, [6, 6], Structure.full(2, 1), random_state=0)
    eig = np.linalg.eigvalsh(S)
    assert eig.min() > -1e-10
    assert np.sum(eig > 1e-10 * eig.max()) == min(n - 1, 12)


def test_seeded_and_input_not_modified(truth):
    _, Sigma = truth
    before = Sigma.copy()
    a = sample_wishart_covariance(Sigma, 100, random_state=1)
    b = sample_wishart_covariance(Sigma, 100, random_state=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(Sigma, before)


def test_errors():
    with pytest.raises(ValueError, match="n_samples"):
        sample_wishart_covariance(np.eye(2), 1)
    with pytest.raises(ValueError, match="positive definite"):
        sample_wishart_covariance(-np.eye(2), 10)
    with pytest.raises(ValueError, match="square"):
        sample_wishart_covariance(np.ones((2, 3)), 10)
    with pytest.raises(ValueError, match="noise_variance"):
        make_hierarchical_covariance(10, [3, 3], Structure.full(2, 1), noise_variance=0.0)
    with pytest.raises(ValueError, match="modality 0"):
        make_hierarchical_covariance(10, [1, 3], Structure.full(2, 1))
