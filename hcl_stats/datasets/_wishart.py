"""Sample covariances drawn directly from their Wishart sampling distribution.

For ``n`` independent draws ``x_i ~ N(mu, Sigma)``, the unbiased sample covariance satisfies
``(n - 1) S ~ Wishart(n - 1, Sigma)`` exactly (the centring costs one degree of freedom), so
``S`` can be drawn without generating the ``n x d`` data: the Bartlett decomposition needs
one Cholesky factor of ``Sigma`` and ``O(d^2)`` random numbers, whatever ``n`` is. Methods
that only use the covariance (HCL, ConcatSVD) then see exactly the same distribution of
inputs as on simulated data, at a cost that does not grow with ``n``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from hcl_stats._numerics.random import as_legacy_random_state
from hcl_stats.datasets._hierarchical import (
    _check_design,
    make_loadings,
    model_covariance,
)
from hcl_stats.datasets._truth import CovarianceTruth

__all__ = ["make_hierarchical_covariance", "sample_wishart_covariance"]


def sample_wishart_covariance(covariance, n_samples, *, random_state=None):
    """Draw the unbiased sample covariance of ``n_samples`` Gaussian vectors.

    Returns ``S`` with ``(n_samples - 1) S ~ Wishart(n_samples - 1, covariance)``, the exact
    distribution of ``np.cov(X, rowvar=False)`` for ``X`` with i.i.d. ``N(mu, covariance)``
    rows. When ``n_samples - 1 >= d`` the Bartlett decomposition is used
    (``S = L T T^T L^T / (n - 1)`` with ``L`` the Cholesky factor of ``covariance``, ``T``
    lower triangular with ``T_ii = sqrt(chi2(n - 1 - i))`` and standard normal entries
    below the diagonal); otherwise ``n - 1`` Gaussian vectors are drawn and their scatter
    matrix is formed (the singular Wishart case).

    Parameters
    ----------
    covariance : ndarray of shape (d, d)
        Symmetric positive definite population covariance.
    n_samples : int
        Number of samples ``n`` behind the sample covariance (at least 2).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    S : ndarray of shape (d, d)

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats.datasets import sample_wishart_covariance
    >>> S = sample_wishart_covariance(np.eye(3), 1000, random_state=0)
    >>> S.shape, bool(np.allclose(S, S.T)), bool(np.abs(S - np.eye(3)).max() < 0.2)
    ((3, 3), True, True)
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    covariance = np.asarray(covariance, dtype=float)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance must be a square matrix, got shape {covariance.shape}")
    rng = as_legacy_random_state(random_state)
    d = covariance.shape[0]
    df = int(n_samples) - 1
    try:
        L = scipy.linalg.cholesky(covariance, lower=True)
    except np.linalg.LinAlgError:
        raise ValueError("covariance is not positive definite") from None
    if df >= d:
        T = np.tril(rng.standard_normal((d, d)), k=-1)
        T[np.diag_indices(d)] = np.sqrt(rng.chisquare(df - np.arange(d)))
        A = L @ T  # (lower) x (lower): L T T^T L^T = A A^T
    else:
        A = L @ rng.standard_normal((d, df))
    S = A @ A.T
    S /= df
    return 0.5 * (S + S.T)


def _factor_wishart(W, noise_rows, df, rng):
    """``Wishart(df, W W^T + diag(noise_rows)) / df`` in ``O(d^3 / 3 + d^2 K)`` operations.

    With ``x = W z + D^{1/2} e`` the scatter matrix is ``G V G^T`` for
    ``G = [D^{1/2}, W]`` and ``V ~ Wishart(df, I_{d+K})``. Writing the noise part of the
    ``df x (d + K)`` Gaussian matrix as ``U_e = Q L`` (QL decomposition, ``L`` lower
    triangular with ``L_ii ~ chi(df - d + 1 + i)`` and standard normal entries below the
    diagonal, independent of ``Q``): ``V_ee = L^T L``, ``V_ze = N L`` and
    ``V_zz = N N^T + Wishart(df - d, I_K)`` with ``N`` a ``K x d`` standard normal matrix.
    Only ``L^T L`` costs ``d^3 / 3`` (LAPACK ``lauum``); needs ``df >= d + K``.
    """
    d, K = W.shape
    L = np.zeros((d, d))
    # row by row in the order of np.tril_indices (same random stream), without the two
    # d^2 / 2 index arrays that made this line a third of the draw's time
    below = rng.standard_normal(d * (d - 1) // 2)
    start = 0
    for i in range(1, d):
        L[i, :i] = below[start:start + i]
        start += i
    L[np.diag_indices(d)] = np.sqrt(rng.chisquare(df - d + 1 + np.arange(d)))
    N = rng.standard_normal((K, d))
    T = np.tril(rng.standard_normal((K, K)), k=-1)
    T[np.diag_indices(K)] = np.sqrt(rng.chisquare(df - d - np.arange(K)))
    V_zz = N @ N.T + T @ T.T
    V_ee, info = scipy.linalg.lapack.dlauum(L, lower=1)
    if info != 0:  # pragma: no cover - LAPACK argument error
        raise RuntimeError(f"LAPACK dlauum failed with info={info}")
    # lauum writes L^T L to the lower triangle and leaves the upper one as it was (zero).
    # Every term below is exactly symmetric, so the draw is too (and the fit's input check
    # takes its fast path).
    V_ee += V_ee.T
    V_ee[np.diag_indices(d)] *= 0.5
    root = np.sqrt(noise_rows)
    if np.ptp(root) == 0:
        V_ee *= root[0] ** 2
        S = V_ee
    else:
        S = V_ee * np.outer(root, root)
    cross = (W @ (N @ L)) * root[None, :]
    cross += cross.T
    S += cross
    B = W @ np.linalg.cholesky(V_zz)
    S += B @ B.T
    S /= df
    return S


def make_hierarchical_covariance(n_samples, n_features, structure, *, noise_variance=1.0,
                                 singular_values=(0.5, 1.5), random_state=None,
                                 return_truth=False):
    """Draw the sample covariance of :func:`make_hierarchical` data without the data.

    The loadings ``W`` are drawn exactly as :func:`make_hierarchical` draws them (same
    random stream: with the same integer ``random_state`` both generators give the same
    ``W``), and the unbiased sample covariance of ``n_samples`` observations of
    ``x = W z + e`` (``z ~ N(0, I_K)``, ``e_m ~ N(0, sigma_m^2 I)``) is drawn from its
    exact sampling distribution ``Wishart(n - 1, W W^T + Psi) / (n - 1)``, using the factor
    structure of the covariance (one ``d x d`` triangular product; see
    :func:`sample_wishart_covariance` for the general case, used when ``n <= d + K``).
    The cost is independent of ``n``; use it with
    :meth:`~hcl_stats.HCL.fit_from_covariance` for simulation studies of covariance-based
    methods.

    Parameters
    ----------
    n_samples : int
        Number of samples ``n`` the covariance is computed from.
    n_features : int or sequence of int
        Width of each modality.
    structure : Structure or dict
        Which subsets carry factors, with their ranks.
    noise_variance : float or sequence of float, default=1.0
        Noise variance, shared or one per modality (must be positive).
    singular_values : (float, float) or float, default=(0.5, 1.5)
        Range of the uniform block singular values (or a fixed value).
    random_state : int, RandomState instance or None, default=None
    return_truth : bool, default=False
        Also return the ground truth.

    Returns
    -------
    S : ndarray of shape (d, d)
        Unbiased sample covariance of the stacked modalities.
    truth : CovarianceTruth, only when ``return_truth``

    Examples
    --------
    >>> from hcl_stats import HCL, Structure
    >>> from hcl_stats.datasets import make_hierarchical_covariance
    >>> structure = Structure.full(2, rank=1)
    >>> S, truth = make_hierarchical_covariance(500, [10, 20], structure,
    ...                                         noise_variance=0.1, random_state=0,
    ...                                         return_truth=True)
    >>> model = HCL(structure).fit_from_covariance(S, n_samples=500, n_features=[10, 20])
    >>> S.shape, model.loadings_.shape
    ((30, 30), (30, 3))
    """
    structure, widths, noise, rng = _check_design(n_samples, n_features, structure,
                                                  noise_variance, random_state,
                                                  min_samples=2, zero_noise=False)
    W = make_loadings(widths, structure, singular_values=singular_values, random_state=rng)
    Sigma = model_covariance(W, noise, widths)
    df = int(n_samples) - 1
    if df >= W.shape[0] + W.shape[1]:
        S = _factor_wishart(W, np.repeat(noise, widths), df, rng)
    else:  # few samples: the general (singular) Wishart draw
        S = sample_wishart_covariance(Sigma, int(n_samples), random_state=rng)
    if not return_truth:
        return S
    truth = CovarianceTruth(W=W, covariance=Sigma, noise_variance=noise, structure=structure,
                            n_features=np.asarray(widths), n_samples=int(n_samples))
    return S, truth
