"""Gaussian log-likelihood of the factor model ``x ~ N(mu, W W^T + Psi)``.

``Psi`` is diagonal (one variance per feature). Every quantity goes through the Woodbury
identity and the matrix determinant lemma::

    Sigma^{-1} = P - U C U^T,      log det Sigma = sum(log psi) + log det(I + W^T U),

with ``P = Psi^{-1}``, ``U = P W`` and ``C = (I + W^T U)^{-1}``, so a log-likelihood costs
``O(n d K + d K^2)`` and never forms a ``d x d`` inverse. Modalities that are not observed
are marginalised out exactly: the marginal of a Gaussian on a subset of the coordinates
keeps the rows of ``mu``, ``W`` and ``Psi`` of that subset (see ``docs/estimation.md``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg

from hcl_stats._structure import row_slices

__all__ = [
    "WoodburyFactor",
    "count_parameters",
    "log_likelihood_covariance",
    "log_likelihood_samples",
    "noise_floor",
    "noise_parameter_count",
    "observed_rows",
    "woodbury",
]

LOG_2PI = math.log(2.0 * math.pi)

# Estimated noise variances are kept above this fraction of their features' sample variance,
# so that the likelihood stays finite (a Heywood case sits on the floor instead of at zero).
NOISE_FLOOR = 1e-6


def noise_floor(diag_S, n_features):
    """Per-feature floor of estimated noise variances (one per feature): ``NOISE_FLOOR``
    times the feature's sample variance, or times ``NOISE_FLOOR`` times the mean variance
    of its modality's features when the feature's own variance is smaller than that (a
    constant feature, whose variance is zero, still gets a positive noise variance on the
    scale of its modality, so that ``1 / psi`` stays finite).

    Parameters
    ----------
    diag_S : ndarray of shape (d,)
        Sample variance of each feature.
    n_features : sequence of int
        Modality widths (summing to ``d``).

    Returns
    -------
    ndarray of shape (d,)

    Examples
    --------
    >>> noise_floor(np.array([2.0, 0.0, 4.0]), [2, 1])
    array([2.e-06, 1.e-12, 4.e-06])
    """
    diag_S = np.asarray(diag_S, dtype=np.float64)
    widths = [int(p) for p in n_features]
    means = np.repeat([float(np.mean(diag_S[r])) if r.stop > r.start else 0.0
                       for r in row_slices(widths)], widths)
    return NOISE_FLOOR * np.maximum(diag_S, NOISE_FLOOR * means)


class WoodburyFactor(NamedTuple):
    """The small factors of ``Sigma = W W^T + diag(psi)`` (see :func:`woodbury`)."""

    precision_diag: np.ndarray  #: (d,) ``1 / psi``
    scaled_loadings: np.ndarray  #: (d, K) ``U = W / psi[:, None]``
    cholesky: np.ndarray  #: (K, K) lower Cholesky factor of ``I + W^T U``
    logdet: float  #: ``log det Sigma``


def woodbury(W, psi):
    """Factor ``Sigma = W W^T + diag(psi)`` for Woodbury solves and its log-determinant.

    Parameters
    ----------
    W : ndarray of shape (d, K)
    psi : ndarray of shape (d,)
        Positive noise variances.

    Returns
    -------
    WoodburyFactor
    """
    W = np.asarray(W, dtype=np.float64)
    psi = np.asarray(psi, dtype=np.float64)
    if psi.shape != (W.shape[0],) or not np.all(psi > 0) or not np.all(np.isfinite(psi)):
        raise ValueError("the noise variances must be positive and finite, one per feature")
    P = 1.0 / psi
    U = W * P[:, None]
    L = scipy.linalg.cholesky(np.eye(W.shape[1]) + W.T @ U, lower=True)
    logdet = float(np.sum(np.log(psi)) + 2.0 * np.sum(np.log(np.diag(L))))
    return WoodburyFactor(P, U, L, logdet)


def log_likelihood_samples(X, mean, W, psi):
    """Log-density of each row of ``X`` under ``N(mean, W W^T + diag(psi))``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    mean : ndarray of shape (d,)
    W : ndarray of shape (d, K)
    psi : ndarray of shape (d,)

    Returns
    -------
    ndarray of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import multivariate_normal
    >>> rng = np.random.default_rng(0)
    >>> W, psi, X = rng.normal(size=(4, 2)), np.full(4, 0.5), rng.normal(size=(3, 4))
    >>> ref = multivariate_normal(np.zeros(4), W @ W.T + np.diag(psi)).logpdf(X)
    >>> bool(np.allclose(log_likelihood_samples(X, np.zeros(4), W, psi), ref))
    True
    """
    fac = woodbury(W, psi)
    R = np.asarray(X, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    # (x - mu)^T Sigma^{-1} (x - mu) = r^T P r - || L^{-1} U^T r ||^2
    V = scipy.linalg.solve_triangular(fac.cholesky, (R @ fac.scaled_loadings).T, lower=True)
    quad = (R * R) @ fac.precision_diag - np.sum(V * V, axis=0)
    return -0.5 * (R.shape[1] * LOG_2PI + fac.logdet + quad)


def log_likelihood_covariance(S, n_samples, W, psi, *, SU=None):
    """Gaussian log-likelihood of ``n_samples`` with sample covariance ``S``.

    ``-n/2 (log det Sigma + tr(Sigma^{-1} S) + d log 2 pi)`` with ``Sigma = W W^T + diag(psi)``:
    the log-likelihood of the data at the mean equal to the sample mean when ``S`` has
    divisor ``n``. One product ``S U`` (``d x K``); pass it as ``SU`` if already computed.

    Parameters
    ----------
    S : ndarray of shape (d, d)
    n_samples : int
    W : ndarray of shape (d, K)
    psi : ndarray of shape (d,)
    SU : ndarray of shape (d, K), optional
        ``S @ (W / psi[:, None])``.

    Returns
    -------
    float
    """
    fac = woodbury(W, psi)
    U = fac.scaled_loadings
    if SU is None:
        SU = np.asarray(S) @ U
    # tr(Sigma^{-1} S) = tr(P S) - tr(C U^T S U), C = (L L^T)^{-1}
    V = scipy.linalg.solve_triangular(fac.cholesky, U.T @ SU, lower=True)
    Vt = scipy.linalg.solve_triangular(fac.cholesky, V.T, lower=True)
    trace = float(np.diagonal(S) @ fac.precision_diag - np.trace(Vt))
    d = W.shape[0]
    return -0.5 * n_samples * (fac.logdet + trace + d * LOG_2PI)


def observed_rows(n_features, observed):
    """Row indices of the observed modalities in the stacked layout.

    Parameters
    ----------
    n_features : sequence of int
        Modality widths.
    observed : sequence of bool
        One flag per modality.

    Returns
    -------
    ndarray of int
    """
    slices = row_slices(n_features)
    parts = [np.arange(sl.start, sl.stop) for sl, seen in zip(slices, observed) if seen]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def noise_parameter_count(rule, n_features):
    """Number of free noise parameters of a noise rule.

    ``"isotropic"``: 1; ``"modality"``: one per modality; ``"diagonal"``: one per feature;
    anything else (``None``, ``"none"`` or given variances): 0, nothing is estimated.
    """
    if isinstance(rule, str):
        return {"isotropic": 1, "modality": len(n_features),
                "diagonal": int(np.sum(n_features))}.get(rule, 0)
    return 0


def count_parameters(structure, n_features, noise_rule, *, means=True):
    """Number of free parameters of the structured factor model.

    Free loadings (the entries of the structural mask) minus the rotations
    ``sum_S r_S (r_S - 1) / 2`` that leave ``W W^T`` unchanged, plus the noise parameters of
    ``noise_rule`` (:func:`noise_parameter_count`) and, with ``means``, one mean per feature.
    This is the dimension of the model when it is locally identifiable
    (:func:`hcl_stats.identifiability.jacobian_rank_check`).

    Parameters
    ----------
    structure : Structure
    n_features : sequence of int
    noise_rule : str, None or array-like
    means : bool, default=True

    Returns
    -------
    int

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> count_parameters(Structure({(0, 1): 2}), [3, 4], "diagonal", means=False)
    20
    """
    n_features = [int(p) for p in n_features]
    loadings = int(structure.mask(n_features).sum())
    rotations = sum(r * (r - 1) // 2 for r in structure.ranks)
    total = loadings - rotations + noise_parameter_count(noise_rule, n_features)
    return total + (int(np.sum(n_features)) if means else 0)
