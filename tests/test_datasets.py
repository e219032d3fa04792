"""The generator reproduces the model it documents."""

import numpy as np
import pytest
import scipy.stats

from hcl_stats import Structure
from hcl_stats.datasets import make_hierarchical, make_loadings, model_covariance

STRUCTURE = Structure({(0, 1, 2): 2, (0, 2): 1, (1,): 2, (2,): 1})
WIDTHS = [10, 12, 9]


def test_shapes_and_truth():
    X, truth = make_hierarchical(50, WIDTHS, STRUCTURE, random_state=0, return_truth=True)
    assert [x.shape for x in X] == [(50, 10), (50, 12), (50, 9)]
    assert truth.W.shape == (31, 6) and truth.Z.shape == (50, 6)
    assert np.array_equal(truth.n_features, WIDTHS)
    assert truth.structure == STRUCTURE


def test_scores_and_noise_have_the_documented_laws():
    """Z ~ N(0, I), noise ~ N(0, sigma_m^2 I) independent of Z, X = Z W_m^T + E_m: checked
    with scipy's chi-square law for the variances and the sampling error of correlations."""
    n, noise = 4000, [0.5, 1.0, 2.0]
    X, truth = make_hierarchical(n, WIDTHS, STRUCTURE, noise_variance=noise, random_state=4,
                                 return_truth=True)
    # Bonferroni over the 37 variances: family-wise level about 1e-4
    lo, hi = scipy.stats.chi2.ppf([1e-6, 1 - 1e-6], n - 1) / (n - 1)
    z_var = truth.Z.var(axis=0, ddof=1)
    assert np.all((z_var > lo) & (z_var < hi))
    for m, sigma2 in enumerate(noise):
        e_var = truth.noise[m].var(axis=0, ddof=1) / sigma2
        assert np.all((e_var > lo) & (e_var < hi))
        corr = np.corrcoef(truth.Z.T, truth.noise[m].T)[:6, 6:]
        assert np.abs(corr).max() < 5 / np.sqrt(n)
        # least squares of X_m on Z recovers the loadings and leaves the noise
        coef, *_ = np.linalg.lstsq(truth.Z, X[m], rcond=None)
        rows = slice(sum(WIDTHS[:m]), sum(WIDTHS[:m + 1]))
        np.testing.assert_allclose(coef.T, truth.W[rows], atol=6 * np.sqrt(sigma2 / n))


def test_zero_pattern_and_block_singular_values():
    W = make_loadings(WIDTHS, STRUCTURE, singular_values=(0.5, 1.5), random_state=1)
    mask = STRUCTURE.mask(WIDTHS)
    assert np.all(W[~mask] == 0)
    edges = np.cumsum([0] + WIDTHS)
    for subset, r in STRUCTURE.blocks:
        for m in subset:
            block = W[edges[m]:edges[m + 1], STRUCTURE.columns(subset)]
            s = np.linalg.svd(block, compute_uv=False)
            assert s.size == r and np.all((s >= 0.5) & (s <= 1.5))
    W_fixed = make_loadings(WIDTHS, STRUCTURE, singular_values=2.0, random_state=1)
    block = W_fixed[:10, STRUCTURE.columns((0, 1, 2))]
    np.testing.assert_allclose(np.linalg.svd(block, compute_uv=False), [2.0, 2.0])


def test_population_covariance_is_matched():
    noise = [0.5, 1.0, 2.0]
    X, truth = make_hierarchical(200_000, WIDTHS, STRUCTURE, noise_variance=noise,
                                 random_state=2, return_truth=True)
    sigma = model_covariance(truth.W, noise, WIDTHS)
    S = np.cov(np.hstack(X), rowvar=False)
    # sampling error of a covariance entry is about sqrt(2/n) * scale
    assert np.max(np.abs(S - sigma)) < 8 * np.sqrt(2 / 200_000) * np.max(np.diag(sigma))


def test_reproducible_and_validated():
    a = make_hierarchical(20, 5, Structure.full(2, rank=1), random_state=3)
    b = make_hierarchical(20, 5, Structure.full(2, rank=1), random_state=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="noise_variance"):
        make_hierarchical(20, 5, Structure.full(2, rank=1), noise_variance=[1, 2, 3])
    with pytest.raises(ValueError, match="modality 0 has 1 features but carries 2"):
        make_hierarchical(20, [1, 5], Structure.full(2, rank=1))
    with pytest.raises(ValueError, match="n_samples"):
        make_hierarchical(0, 5, Structure.full(2, rank=1))
