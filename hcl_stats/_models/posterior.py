"""Posterior of the factors and density of each sample given its observed entries.

For the Gaussian factor model ``x = mu + W z + e`` with ``z ~ N(0, I_K)`` and
``e ~ N(0, Psi)``, ``Psi`` diagonal, the posterior of ``z`` given the entries ``o`` that a
sample observes is Gaussian::

    C_o = (I + W_o^T Psi_o^{-1} W_o)^{-1},    E[z | x_o] = C_o W_o^T Psi_o^{-1} (x_o - mu_o),

and ``x_o ~ N(mu_o, W_o W_o^T + Psi_o)`` is the density of what it observes. Both depend
on the sample only through which entries it observes (docs/model.md):

* samples whose modalities are each observed whole or missing whole are grouped by that
  pattern (at most ``2^M`` groups): one ``K x K`` precision per group, assembled from the
  per-modality products ``W_m^T Psi_m^{-1} W_m``, and one solve for all its samples;
* a sample with scattered missing cells inside a modality has a precision of its own: all
  of them are built at once by one product of their ``(n_s, p_m)`` observation weights
  ``1 / psi`` (zero where missing) with the ``(p_m, K^2)`` outer products of the loading
  rows, then solved in one batch: ``O(n_s d K^2 + n_s K^3)`` time and ``O(n_s K^2 + p_m
  K^2)`` memory on top of the data.

The weighted residuals ``W^T Psi^{-1} (x - mu)`` with missing cells set to zero are the
right-hand sides of every sample, whatever its pattern.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hcl_stats._estimation.likelihood import LOG_2PI, log_likelihood_samples, observed_rows
from hcl_stats._models.calibration import error_covariance
from hcl_stats._structure import row_slices

__all__ = ["ObservationPattern", "Posterior", "log_likelihood_observed", "observation_pattern",
           "posterior_moments"]


class ObservationPattern(NamedTuple):
    """Which entries each sample observes, grouped (see :func:`observation_pattern`)."""

    #: per modality, the (n, p_m) mask of missing cells; None when none is missing or the
    #: modality is not given
    missing: list
    #: (n, M) int8: 0 the modality is missing whole, 1 observed whole, 2 partly observed
    status: np.ndarray
    #: ``(modalities, index)`` per group of samples that observe whole modalities only:
    #: the tuple of the modalities they observe and their rows (``slice(None)`` for all)
    groups: list
    #: rows of the samples with a partly observed modality
    scattered: np.ndarray

    @property
    def observed(self):
        """(n, M) bool: the sample observes at least one entry of the modality."""
        return self.status > 0


class Posterior(NamedTuple):
    """Posterior moments of the factors (see :func:`posterior_moments`)."""

    #: (n, K) posterior means
    mean: np.ndarray
    #: (G, K, K) posterior covariances, one per group (None when not computed)
    covariance: np.ndarray | None
    #: (n,) int: the row of ``covariance`` that belongs to each sample
    group: np.ndarray
    #: (n, M) bool: the sample observes at least one entry of the modality
    observed: np.ndarray

    def std(self):
        """(n, K) posterior standard deviations."""
        return np.sqrt(np.diagonal(self.covariance, axis1=1, axis2=2))[self.group]


def observation_pattern(blocks, n_missing=None):
    """Group the samples by the entries they observe.

    Parameters
    ----------
    blocks : sequence of (ndarray of shape (n, p_m) or None)
        The modalities, NaN where missing; ``None``: not observed by any sample.
    n_missing : sequence of (int or None), default=None
        Missing cells per modality when known (a 0 skips the scan of that modality).

    Returns
    -------
    ObservationPattern
    """
    present = [m for m, b in enumerate(blocks) if b is not None]
    n = blocks[present[0]].shape[0]
    status = np.zeros((n, len(blocks)), dtype=np.int8)
    missing = [None] * len(blocks)
    for m in present:
        status[:, m] = 1
        if n_missing is not None and n_missing[m] == 0:
            continue
        mask = np.isnan(blocks[m])
        if not mask.any():
            continue
        missing[m] = mask
        count = mask.sum(axis=1)
        status[:, m] = np.where(count == 0, 1, np.where(count == mask.shape[1], 0, 2))
    if all(mask is None for mask in missing):
        return ObservationPattern(missing, status, [(tuple(present), slice(None))],
                                  np.zeros(0, dtype=int))
    partial = (status == 2).any(axis=1)
    whole = np.flatnonzero(~partial)
    groups = []
    if whole.size:
        # one integer per pattern (bit m: modality m observed), a 1-D unique
        codes = status[whole].astype(np.int64) @ (1 << np.arange(len(blocks), dtype=np.int64))
        patterns, inverse = np.unique(codes, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=patterns.size))[:-1]
        for code, rows in zip(patterns, np.split(whole[order], bounds)):
            groups.append((tuple(m for m in range(len(blocks)) if code >> m & 1), rows))
    return ObservationPattern(missing, status, groups, np.flatnonzero(partial))


def _centred(block, mean, mask, index):
    """``x - mu`` of the rows ``index``, zero in the missing cells (a new array)."""
    centred = np.asarray(block, dtype=np.float64)[index] - mean
    if mask is not None:
        centred[mask[index]] = 0.0
    return centred


class _Model(NamedTuple):
    """Per-modality pieces of the model: rows, ``Psi_m^{-1} W_m``, ``W_m^T Psi_m^{-1} W_m``."""

    rows: list
    scaled: dict
    gram: dict


def _model_pieces(blocks, W, psi, n_features):
    rows = row_slices(n_features)
    scaled, gram = {}, {}
    for m, block in enumerate(blocks):
        if block is None:
            continue
        Wm = W[rows[m]]
        scaled[m] = Wm / psi[rows[m]][:, None]
        gram[m] = Wm.T @ scaled[m]
    return _Model(rows, scaled, gram)


def _group_precision(model, observed, K):
    """``I + sum_m W_m^T Psi_m^{-1} W_m`` over the modalities a group observes."""
    precision = np.eye(K)
    for m in observed:
        precision = precision + model.gram[m]
    return precision


def _scattered_products(pattern, W, psi, model, V=None, grams=None):
    """``W_o^T Psi_o^{-1} V_o`` of each sample with scattered missing cells (``V = W`` and
    the model's grams when None; ``grams``: the per-modality products of whole rows)."""
    index = pattern.scattered
    K = W.shape[1]
    V = W if V is None else V
    grams = model.gram if grams is None else grams
    out = np.zeros((index.size, K, K))
    for m, gram in grams.items():
        mask = pattern.missing[m]
        if mask is None:
            out += gram
            continue
        Wm, Vm = W[model.rows[m]], V[model.rows[m]]
        weight = ~mask[index] / psi[model.rows[m]]  # 1 / psi where observed, else 0
        outer = (Wm[:, :, None] * Vm[:, None, :]).reshape(Wm.shape[0], K * K)
        out += (weight @ outer).reshape(index.size, K, K)
    return out


def _scattered_precisions(pattern, W, psi, model):
    """``I + W_o^T Psi_o^{-1} W_o`` of each sample with scattered missing cells."""
    return np.eye(W.shape[1]) + _scattered_products(pattern, W, psi, model)


def posterior_moments(blocks, means, W, psi, n_features, *, n_missing=None,
                      covariance=False, calibration=None):
    """Posterior means (and covariances) of the factors given each sample's observed entries.

    Parameters
    ----------
    blocks : sequence of (ndarray of shape (n, p_m) or None)
        The modalities, NaN where a value is missing; ``None``: missing for every sample.
    means : sequence of ndarray of shape (p_m,)
    W : ndarray of shape (d, K)
        Stacked loadings.
    psi : ndarray of shape (d,)
        Positive noise variances, one per feature.
    n_features : sequence of int
        Modality widths.
    n_missing : sequence of (int or None), default=None
        Missing cells per modality when known (see :func:`observation_pattern`).
    covariance : bool, default=False
        Also compute the posterior covariances (one inverse per group).
    calibration : Calibration, default=None
        What the data carry about the true factors
        (:func:`hcl_stats._models.calibration.calibration`); the covariances returned are
        then the error covariances of the means
        (:func:`hcl_stats._models.calibration.error_covariance`). None: the posterior
        covariances of the model (``W`` taken as known).

    Returns
    -------
    Posterior
        A sample that observes nothing gets the prior: mean 0 and covariance ``I``.

    Examples
    --------
    >>> import numpy as np
    >>> W, psi = np.array([[1.0], [2.0]]), np.array([1.0, 1.0])
    >>> X = [np.array([[1.0], [np.nan]]), np.array([[2.0], [np.nan]])]
    >>> post = posterior_moments(X, [np.zeros(1), np.zeros(1)], W, psi, [1, 1],
    ...                          covariance=True)
    >>> post.mean.ravel().tolist(), post.std().ravel().tolist()
    ([0.8333333333333334, 0.0], [0.408248290463863, 1.0])
    """
    W = np.asarray(W, dtype=np.float64)
    pattern = observation_pattern(blocks, n_missing)
    model = _model_pieces(blocks, W, psi, n_features)
    rhs = 0.0
    for m, scaled in model.scaled.items():
        rhs = rhs + _centred(blocks[m], means[m], pattern.missing[m], slice(None)) @ scaled
    K = W.shape[1]
    mean = np.empty((rhs.shape[0], K))
    group = np.empty(rhs.shape[0], dtype=int)
    covariances = []
    cross = None
    if covariance and calibration is not None:
        # per modality W_m^T Psi_m^{-1} V_m for V: the true noise's loadings-weighted
        # product, the new samples' and the fitted samples' covariances with the factors
        ratio = np.repeat(calibration.noise_ratio, n_features)[:, None]
        partners = (W * ratio, calibration.new, calibration.fitted)
        cross = [{m: model.scaled[m].T @ np.asarray(V, np.float64)[model.rows[m]]
                  for m in model.scaled} for V in partners]
    for g, (observed, index) in enumerate(pattern.groups):
        precision = _group_precision(model, observed, K)
        mean[index] = np.linalg.solve(precision, rhs[index].T).T
        group[index] = g
        if covariance:
            C = np.linalg.inv(precision)
            if cross is not None:
                products = (sum((h[m] for m in observed), np.zeros((K, K))) for h in cross)
                C = error_covariance(C, precision - np.eye(K), *products)
            covariances.append(C[None])
    index = pattern.scattered
    if index.size:
        precision = _scattered_precisions(pattern, W, psi, model)
        mean[index] = np.linalg.solve(precision, rhs[index][:, :, None])[:, :, 0]
        group[index] = len(pattern.groups) + np.arange(index.size)
        if covariance:
            C = np.linalg.inv(precision)
            if cross is not None:
                products = (_scattered_products(pattern, W, psi, model, V, h)
                            for V, h in zip(partners, cross))
                C = error_covariance(C, precision - np.eye(K), *products)
            covariances.append(C)
    cov = np.concatenate(covariances) if covariance else None
    return Posterior(mean, cov, group, pattern.observed)


def log_likelihood_observed(blocks, means, W, psi, n_features, *, n_missing=None):
    """Log-density of each sample's observed entries under ``N(mu, W W^T + Psi)``.

    Samples that observe whole modalities only are scored by pattern with
    :func:`hcl_stats._estimation.likelihood.log_likelihood_samples` on the observed rows;
    samples with scattered missing cells through their own precision:
    ``log N(x_o) = -1/2 (|o| log 2 pi + sum_o log psi + log det P_o
    + r_o^T Psi_o^{-1} r_o - b_o^T P_o^{-1} b_o)`` with ``P_o = I + W_o^T Psi_o^{-1} W_o``
    and ``b_o = W_o^T Psi_o^{-1} r_o`` (Woodbury identity and determinant lemma). A sample
    that observes nothing has log-density 0.

    Parameters
    ----------
    blocks, means, W, psi, n_features, n_missing
        As for :func:`posterior_moments`.

    Returns
    -------
    ndarray of shape (n,)
    """
    W = np.asarray(W, dtype=np.float64)
    pattern = observation_pattern(blocks, n_missing)
    mu = np.concatenate(means)
    n = pattern.status.shape[0]
    out = np.zeros(n)
    flags = np.zeros(len(blocks), dtype=bool)
    for observed, index in pattern.groups:
        if not observed:
            continue
        flags[:] = False
        flags[list(observed)] = True
        rows = observed_rows(n_features, flags)
        data = np.hstack([np.asarray(blocks[m], dtype=np.float64)[index] for m in observed])
        out[index] = log_likelihood_samples(data, mu[rows], W[rows], psi[rows])
    if pattern.scattered.size:
        out[pattern.scattered] = _scattered_log_likelihood(blocks, means, W, psi,
                                                           n_features, pattern)
    return out


def _scattered_log_likelihood(blocks, means, W, psi, n_features, pattern):
    index = pattern.scattered
    model = _model_pieces(blocks, W, psi, n_features)
    rhs = np.zeros((index.size, W.shape[1]))
    quad = np.zeros(index.size)
    logdet = np.zeros(index.size)
    count = np.zeros(index.size)
    for m, scaled in model.scaled.items():
        mask = pattern.missing[m]
        r = _centred(blocks[m], means[m], mask, index)
        p = psi[model.rows[m]]
        rhs += r @ scaled
        quad += (r * r) @ (1.0 / p)
        observed = np.ones(r.shape, dtype=bool) if mask is None else ~mask[index]
        logdet += observed @ np.log(p)
        count += observed.sum(axis=1)
    precision = _scattered_precisions(pattern, W, psi, model)
    quad -= np.sum(rhs * np.linalg.solve(precision, rhs[:, :, None])[:, :, 0], axis=1)
    logdet += np.linalg.slogdet(precision)[1]
    return -0.5 * (count * LOG_2PI + logdet + quad)
