"""Numerics shared by the data-based baselines (JIVE, AJIVE, SLIDE).

Conventions shared by all of them:

* Scores are orthonormal ``n x r`` matrices ``U`` of the (centred) training samples and a
  fitted low-rank part is ``U U^T X``. The reported loadings are ``X^T U / sqrt(n - 1)``, so
  that the scores ``sqrt(n - 1) U`` have unit variance and ``loadings_ @ loadings_.T`` is the
  covariance of the fitted signal: the same scale as HCL's ``W W^T`` (an estimate of
  ``Sigma - Psi``), which makes Gram errors comparable across methods.
* Scores fitted in-sample also pick up noise: for a singular vector the column
  ``X^T u / sqrt(n - 1)`` has squared norm ``lambda = signal + noise``.
  :func:`hcl_stats._models.data_model.denoise_loadings` removes that part column by
  column (probabilistic PCA's ``sqrt(lambda - sigma^2)`` in the one-modality case), so
  that ``loadings_ @ loadings_.T`` estimates ``Sigma - Psi`` as HCL's does, and
  ``loadings_ @ loadings_.T + Psi`` the data covariance that ``transform`` assumes.
* Noise variances are the residual variance of each modality with the degrees of freedom
  of a rank-``r`` fit removed
  (see :func:`hcl_stats._models.data_model.residual_noise_variance`).
  The closing step common to all of them is
  :meth:`hcl_stats._models.data_model.DataFactorModel.fit`; docs/baselines.md describes
  the methods.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from hcl_stats._input.validation import check_structure
from hcl_stats._structure import Structure, modality_description, row_slices

__all__ = [
    "RowCompression",
    "block_scales",
    "check_rank_list",
    "gavish_donoho_rank",
    "joint_individual_structure",
    "ranks_from_structure",
]


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
        self.reduced = [R[:, rows] for rows in row_slices([b.shape[1] for b in blocks])]
        self._X = X
        self._map = vectors / root  # Q = X @ _map

    def lift(self, Y):
        """Map reduced-row quantities (``k x r``) back to the samples (``n x r``)."""
        if not self.active:
            return Y
        return self._X @ (self._map @ Y)


def joint_individual_structure(joint_rank, individual_ranks, names, *, selected,
                               noise_only=()):
    """``Structure.joint_individual`` with a clear error for a modality without factors.

    When the ranks were *selected* from the data and a modality got none, it is given one
    individual factor with a warning. The modalities in ``noise_only`` (those that a given
    :class:`~hcl_stats.Structure` declares without factors, as the structures ``HCL``
    selects can) keep rank 0: they are modelled as noise only (zero loadings, their own
    noise variance), as in ``HCL``.
    """
    individual_ranks = [int(r) for r in individual_ranks]
    if joint_rank == 0:
        empty = [m for m, r in enumerate(individual_ranks) if r == 0 and m not in noise_only]
        if empty:
            label = [names[m] if names else m for m in empty]
            if not selected:
                raise ValueError(
                    f"modality {label[0]!r} carries no factor (joint rank 0 and individual "
                    "rank 0): give it a positive individual rank, or pass a Structure that "
                    "declares it without factors (modelled as noise only)"
                )
            warnings.warn(
                f"no signal was detected in modality {label[0]!r}; it is given one "
                "individual factor so that the structure covers every modality",
                UserWarning, stacklevel=3)
            for m in empty:
                individual_ranks[m] = 1
    return Structure.joint_individual(int(joint_rank), individual_ranks, names=names), \
        individual_ranks


def check_rank_list(ranks, M, name, *, n_features=None, allow_zero=True, names=None):
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
            raise ValueError(f"{name}: rank of {modality_description(m, names)} must be an "
                             f"integer >= {minimum}, got {r!r}")
        if n_features is not None and r > n_features[m]:
            raise ValueError(f"{name}: {modality_description(m, names)} has {n_features[m]} "
                             f"features but rank {r} was asked")
        out.append(int(r))
    return out


def ranks_from_structure(structure, n_features, names, n_samples=None):
    """``(joint_rank, individual_ranks)`` of a global + specific structure, or ValueError.

    The structure is bound to the data first
    (:func:`hcl_stats._input.validation.check_structure`): a structure given by modality
    names is matched to the data's names, whatever their order, and a name the data do not
    have is an error; given ``n_samples``, a total rank the samples cannot carry too.
    """
    structure = check_structure(structure, n_features, names, n_samples)
    M = len(n_features)
    partial = [s for s in structure.subsets if 1 < len(s) < M]
    if partial:
        raise ValueError(f"JIVE/AJIVE represent only global and specific blocks; the "
                         f"structure has partial block {structure.label(partial[0])}")
    glob = tuple(range(M))
    joint = structure.rank(glob) if glob in structure else 0
    ind = [structure.rank((m,)) if (m,) in structure else 0 for m in range(M)]
    return joint, ind


def block_scales(blocks, scale):
    """Frobenius norm of each centred modality (ones when ``scale`` is False or a norm is 0)."""
    if not scale:
        return np.ones(len(blocks))
    scales = np.array([np.linalg.norm(b) for b in blocks])
    scales[scales == 0] = 1.0
    return scales
