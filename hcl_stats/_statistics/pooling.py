"""Pooling summary statistics from several sites (federated fitting)."""

from __future__ import annotations

import numpy as np

__all__ = ["pool_covariances"]


def pool_covariances(covariances, means, n_samples):
    """Covariance, mean and size of the union of several sites' samples.

    Each site shares only its unbiased covariance ``S_k``, mean ``mu_k`` and size ``n_k``
    (no rows). The pooled unbiased covariance is the exact one of all rows together::

        S = [sum_k (n_k - 1) S_k + sum_k n_k (mu_k - mu)(mu_k - mu)^T] / (N - 1),

    with ``N = sum_k n_k`` and ``mu = sum_k n_k mu_k / N``. Pass the result to
    ``fit_from_covariance(S, N, n_features, means=mu)`` of any covariance-based estimator.

    Parameters
    ----------
    covariances : sequence of array-like of shape (d, d)
    means : sequence of array-like of shape (d,)
    n_samples : sequence of int

    Returns
    -------
    S : ndarray of shape (d, d)
    mean : ndarray of shape (d,)
    n : int

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import pool_covariances
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(30, 4)), rng.normal(1.0, size=(50, 4))
    >>> S, mu, n = pool_covariances([np.cov(a.T), np.cov(b.T)],
    ...                             [a.mean(0), b.mean(0)], [30, 50])
    >>> bool(np.allclose(S, np.cov(np.vstack([a, b]).T))), n
    (True, 80)
    """
    covariances = [np.asarray(S, dtype=np.float64) for S in covariances]
    means = [np.asarray(mu, dtype=np.float64).reshape(-1) for mu in means]
    counts = [int(k) for k in n_samples]
    if not (len(covariances) == len(means) == len(counts)) or not counts:
        raise ValueError(f"need as many covariances, means and sample sizes (got "
                         f"{len(covariances)}, {len(means)}, {len(counts)}), at least one")
    d = means[0].size
    for k, (S, mu, n_k) in enumerate(zip(covariances, means, counts)):
        if S.shape != (d, d) or mu.shape != (d,):
            raise ValueError(f"site {k}: covariance {S.shape} and mean {mu.shape} do not "
                             f"match d={d}")
        if n_k < 1:
            raise ValueError(f"site {k}: n_samples must be positive, got {n_k}")
    N = sum(counts)
    if N < 2:
        raise ValueError("the sites hold fewer than 2 samples in all")
    mean = sum(n_k * mu for n_k, mu in zip(counts, means)) / N
    S = np.zeros((d, d))
    for S_k, mu, n_k in zip(covariances, means, counts):
        if n_k > 1:
            S += (n_k - 1) * S_k
        diff = mu - mean
        S += n_k * np.outer(diff, diff)
    return S / (N - 1), mean, N
