"""Numerics shared by the data-based baselines (JIVE, AJIVE, SLIDE).

Conventions shared by all of them:

* Scores are orthonormal ``n x r`` matrices ``U`` of the (centred) training samples and a
  fitted low-rank part is ``U U^T X``. The reported loadings are ``X^T U / sqrt(n - 1)``, so
  that the scores ``sqrt(n - 1) U`` have unit variance and ``loadings_ @ loadings_.T`` is the
  covariance of the fitted signal: the same scale as HCL's ``W W^T`` (an estimate of
  ``Sigma - Psi``), which makes Gram errors comparable across methods.
* Scores fitted in-sample also pick up noise: for a singular vector the column
  ``X^T u / sqrt(n - 1)`` has squared norm ``lambda = signal + noise``.
  :func:`denoise_loadings` removes that part column by column (probabilistic PCA's
  ``sqrt(lambda - sigma^2)`` in the one-modality case), so that ``loadings_ @ loadings_.T``
  estimates ``Sigma - Psi`` as HCL's does, and ``loadings_ @ loadings_.T + Psi`` the data
  covariance that ``transform`` assumes.
* Noise variances are the residual variance of each modality with the degrees of freedom of
  a rank-``r`` fit removed (see :func:`residual_noise_variance`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from hcl_stats._input.validation import check_blocks
from hcl_stats._structure import Structure

__all__ = [
    "centre_blocks",
    "gavish_donoho_rank",
    "residual_noise_variance",
    "RowCompression",
    "joint_individual_structure",
    "denoise_loadings",
]

def centre_blocks(X):
    """Validate with the package's block validator and return centred float64 copies.

    Returns
    -------
    blocks : list of ndarray of shape (n, p_m)
        Centred copies (the caller's arrays are never modified).
    means : list of ndarray of shape (p_m,)
    names : tuple of str or None
    total_variance : ndarray of shape (M,)
        ``trace`` of each modality's unbiased sample covariance.
    """
    raw, names = check_blocks(X)
    means = [np.asarray(b, dtype=np.float64).mean(axis=0) for b in raw]
    blocks = [np.asarray(b, dtype=np.float64) - mu for b, mu in zip(raw, means)]
    n = blocks[0].shape[0]
    total = np.array([float(np.sum(b * b)) / (n - 1) for b in blocks])
    return blocks, means, names, total


def gavish_donoho_rank(s, shape):
    """Rank by the optimal hard threshold of Gavish and Donoho (2014) for unknown noise.

    Keeps the singular values above ``omega(beta) * median(s)`` with ``beta`` the aspect
    ratio ``min(n, p) / max(n, p)`` and the approximation
    ``omega(beta) = 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43``.

    Parameters
    ----------
    s : ndarray of shape (min(n, p),)
        All singular values, decreasing.
    shape : (int, int)
        Shape of the matrix.

    Returns
    -------
    int
    """
    n, p = shape
    beta = min(n, p) / max(n, p)
    omega = 0.56 * beta ** 3 - 0.95 * beta ** 2 + 1.82 * beta + 1.43
    threshold = omega * float(np.median(s))
    return int(np.sum(s > threshold))


def residual_noise_variance(rss, n, p, rank):
    """Noise variance from a residual sum of squares of a rank-``rank`` fit.

    ``rss / ((n - 1) p - r (n - 1 + p - r))``: the centred data have ``(n - 1) p`` degrees
    of freedom and a rank-``r`` matrix uses ``r (n - 1 + p - r)`` of them. Falls back to
    ``rss / ((n - 1) p)`` when the count is not positive, and is floored at a tiny positive
    number so that scores stay finite.
    """
    dof = (n - 1) * p - rank * (n - 1 + p - rank)
    if dof <= 0:
        dof = (n - 1) * p
    value = float(rss) / dof
    return max(value, 1e-12 * max(float(rss) / ((n - 1) * p), 1e-300))


class RowCompression:
    """Replace the ``n`` samples by at most ``d`` rows with the same column geometry.

    With ``X^T X = V diag(lambda) V^T`` (stacked centred modalities, ``d`` columns) and
    ``R = diag(sqrt(lambda)) V^T``, ``R^T R = X^T X`` and ``X = Q R`` with
    ``Q = X V diag(lambda)^{-1/2}`` having orthonormal columns. Every score basis a JIVE or
    SLIDE iteration builds lies in the column space of ``X``, so the iterations can run on
    ``R`` (``d x d`` instead of ``n x d``) exactly and scores map back with ``Q``. Only
    used when ``n > 2 d``; otherwise :attr:`reduced` is the data itself.

    Attributes
    ----------
    reduced : list of ndarray of shape (k, p_m)
    active : bool
    """

    def __init__(self, blocks):
        n = blocks[0].shape[0]
        d = sum(b.shape[1] for b in blocks)
        self.active = n > 2 * d
        if not self.active:
            self.reduced = blocks
            return
        X = np.hstack(blocks)
        values, vectors = scipy.linalg.eigh(X.T @ X, check_finite=False)
        keep = values > 1e-12 * max(values[-1], 1e-300)
        values, vectors = values[keep][::-1], vectors[:, keep][:, ::-1]
        root = np.sqrt(values)
        R = root[:, None] * vectors.T
        edges = np.concatenate([[0], np.cumsum([b.shape[1] for b in blocks])])
        self.reduced = [R[:, edges[m]:edges[m + 1]] for m in range(len(blocks))]
        self._X = X
        self._map = vectors / root  # Q = X @ _map

    def lift(self, Y):
        """Map reduced-row quantities (``k x r``) back to the samples (``n x r``)."""
        if not self.active:
            return Y
        return self._X @ (self._map @ Y)


def joint_individual_structure(joint_rank, individual_ranks, names, *, selected):
    """``Structure.joint_individual`` with a clear error for a modality without factors.

    When the ranks were *selected* from the data and a modality got none, it is given one
    individual factor with a warning (a Structure needs every modality to carry one).
    """
    individual_ranks = [int(r) for r in individual_ranks]
    if joint_rank == 0:
        empty = [m for m, r in enumerate(individual_ranks) if r == 0]
        if empty:
            label = [names[m] if names else m for m in empty]
            if not selected:
                raise ValueError(
                    f"modality {label[0]!r} carries no factor (joint rank 0 and individual "
                    "rank 0): give it a positive individual rank"
                )
            warnings.warn(
                f"no signal was detected in modality {label[0]!r}; it is given one "
                "individual factor so that the structure covers every modality",
                UserWarning, stacklevel=3)
            for m in empty:
                individual_ranks[m] = 1
    return Structure.joint_individual(int(joint_rank), individual_ranks, names=names), \
        individual_ranks


def check_rank_list(ranks, M, name, *, n_features=None, allow_zero=True):
    """Expand an int or validate a sequence of per-modality non-negative ranks."""
    minimum = 0 if allow_zero else 1
    if np.ndim(ranks) == 0:
        ranks = [ranks] * M
    ranks = list(ranks)
    if len(ranks) != M:
        raise ValueError(f"{name} needs one rank per modality ({M}), got {len(ranks)}")
    out = []
    for m, r in enumerate(ranks):
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) \
                or r < minimum:
            raise ValueError(f"{name}: rank of modality {m} must be an integer >= {minimum}, "
                             f"got {r!r}")
        if n_features is not None and r > n_features[m]:
            raise ValueError(f"{name}: modality {m} has {n_features[m]} features but rank "
                             f"{r} was asked")
        out.append(int(r))
    return out


def denoise_loadings(W, n_features, noise_variance, scales=None):
    """Remove from each fitted column the noise its in-sample score picked up.

    A column ``L_k = X^T u_k / sqrt(n - 1)`` built from a score ``u_k = X v_k / s_k`` that
    is a singular vector of the (scaled) data satisfies ``L_k = sqrt(lambda_k) v_k`` with
    ``lambda_k = s_k^2 / (n - 1)`` an eigenvalue of ``S = C + Psi`` (signal plus noise). The
    signal part then is ``C v_k = (lambda_k - Psi) v_k``, and the rank-one signal loading
    with that image is ``w_k = (lambda_k - Psi) v_k / sqrt(lambda_k - v_k^T Psi v_k)``:
    in the rows of modality ``m``,
    ``w_{m,k} = L_{m,k} (lambda_k - sigma_m^2) / sqrt(lambda_k (lambda_k - sum_m sigma_m^2
    ||v_{m,k}||^2))`` (clipped at zero). For one modality and isotropic noise this is
    probabilistic PCA's ``sqrt(lambda_k - sigma^2) v_k``. It is applied column by column
    (exact for singular vectors, a first-order correction otherwise), in the scaled units
    the method worked in (``scales``), and keeps every structural zero.

    Parameters
    ----------
    W : ndarray of shape (d, K)
        Loadings ``X^T U / sqrt(n - 1)`` in original units.
    n_features : sequence of int
    noise_variance : ndarray of shape (M,)
        Noise variances in original units.
    scales : ndarray of shape (M,), default=None
        What each modality was divided by before fitting (ones by default).

    Returns
    -------
    ndarray of shape (d, K)
    """
    n_features = np.asarray(n_features, dtype=int)
    M = n_features.size
    scales = np.ones(M) if scales is None else np.asarray(scales, dtype=float)
    row_scale = np.repeat(scales, n_features)
    L = W / row_scale[:, None]
    psi = np.asarray(noise_variance, dtype=float) / scales ** 2  # (M,)
    edges = np.concatenate([[0], np.cumsum(n_features)])
    out = np.zeros_like(L)
    for k in range(L.shape[1]):
        col = L[:, k]
        lam = float(col @ col)
        if lam <= 0:
            continue
        share = np.array([float(col[edges[m]:edges[m + 1]] @ col[edges[m]:edges[m + 1]])
                          for m in range(M)]) / lam
        denom = lam * (lam - float(np.sum(psi * share)))
        if denom <= 0:
            continue
        factor = np.clip(lam - psi, 0.0, None) / np.sqrt(denom)
        out[:, k] = col * np.repeat(factor, n_features)
    return out * row_scale[:, None]


def ranks_from_structure(structure, M):
    """``(joint_rank, individual_ranks)`` of a global + specific Structure, or ValueError."""
    if structure.n_modalities != M:
        raise ValueError(f"the structure has {structure.n_modalities} modalities, the data {M}")
    partial = [s for s in structure.subsets if 1 < len(s) < M]
    if partial:
        raise ValueError(f"JIVE/AJIVE represent only global and specific blocks; the "
                         f"structure has partial block {structure.label(partial[0])}")
    glob = tuple(range(M))
    joint = structure.rank(glob) if glob in structure else 0
    ind = [structure.rank((m,)) if (m,) in structure else 0 for m in range(M)]
    return joint, ind
