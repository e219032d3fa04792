"""The generator reproduces the model it documents."""

import numpy as np
import pytest

from hcl_stats import Structure
from hcl_stats.datasets import make_hierarchical, make_loadings, model_covariance

STRUCTURE = Structure({(0, 1, 2): 2, (0, 2): 1, (1,): 2, (2,): 1})
WIDTHS = [10, 12, 9]


def test_shapes_and_truth():
    X, truth = make_hierarchical(50, WIDTHS, STRUCTURE, random_state=0, return_truth=True)
    assert [x.shape for x in X] == [(50, 10), (50, 12), (50, 9)]
    assert truth.W.shape == (31, 6) and truth.Z.shape == (50, 6)
    assert np.array_equal(truth.n_features, WIDTHS)
    # data are exactly signal + noise
    edges = np.cumsum([0] + WIDTHS)
    for m in range(3):
        np.testing.assert_allclose(X[m], truth.Z @ truth.W[edges[m]:edges[m + 1]].T
                                   + truth.noise[m])


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
