"""JIVE: Joint and Individual Variation Explained (Lock, Hoadley, Marron and Nobel, 2013)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._input.params import check_positive_float, check_positive_int
from hcl_stats._input.validation import check_total_rank
from hcl_stats._models.data_model import DataFactorModel, DataFit
from hcl_stats._numerics.linalg import serial_blas, truncated_svd
from hcl_stats._numerics.random import as_generator
from hcl_stats._structure import Structure, modality_description, row_slices
from hcl_stats.baselines._common import (
    RowCompression,
    block_scales,
    check_rank_list,
    joint_individual_structure,
    ranks_from_structure,
)

__all__ = ["JIVE", "fit_jive", "JIVEResult"]

_RANK_RULES = ("given", "permutation", "bic")


@dataclass(frozen=True)
class JIVEResult:
    """What :func:`fit_jive` returns (all in the coordinates of the data it was given).

    Attributes
    ----------
    joint_scores : ndarray of shape (n, r_J)
        Orthonormal joint scores.
    joint : list of ndarray of shape (n, p_m)
        Joint part ``J_m`` of each modality.
    individual_scores : list of ndarray of shape (n, r_m)
        Orthonormal individual scores of each modality.
    individual : list of ndarray of shape (n, p_m)
        Individual part ``A_m`` of each modality.
    n_iter : int
    converged : bool
    """

    joint_scores: np.ndarray
    joint: list
    individual_scores: list
    individual: list
    n_iter: int
    converged: bool


def fit_jive(blocks, joint_rank, individual_ranks, *, max_iter=1000, tol=1e-6, init=None,
             random_state=0):
    """Alternating JIVE updates for fixed ranks.

    Repeats, until the fitted signal ``J + A`` changes by less than ``tol`` relative to its
    norm:

    1. joint: ``J`` = best rank-``r_J`` approximation of the stacked ``[X_m - A_m]_m``;
    2. individual: ``A_m`` = best rank-``r_m`` approximation of
       ``(I - U_J U_J^T)(X_m - J_m)``, so that each individual score space is orthogonal
       to the joint one (``U_J^T A_m = 0``).

    Each step minimises ``sum_m ||X_m - J_m - A_m||_F^2`` over its own part, so the
    objective never increases.

    Parameters
    ----------
    blocks : list of ndarray of shape (n, p_m)
        Centred (and possibly scaled) modalities.
    joint_rank : int
    individual_ranks : list of int
    max_iter : int, default=1000
    tol : float, default=1e-6
    init : list of ndarray of shape (n, p_m), default=None
        Starting individual parts (zeros by default).
    random_state : int, default=0
        Seed of the Lanczos start vectors.

    Returns
    -------
    JIVEResult
    """
    M = len(blocks)
    n = blocks[0].shape[0]
    rows = row_slices([b.shape[1] for b in blocks])
    A = [np.zeros_like(b) for b in blocks] if init is None else [a.copy() for a in init]
    fit_old = None
    converged = False
    scale = np.sqrt(sum(float(np.sum(b * b)) for b in blocks)) or 1.0
    U_J = np.zeros((n, 0))
    J = [np.zeros_like(b) for b in blocks]
    U_I = [np.zeros((n, 0)) for _ in blocks]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if joint_rank > 0:
            stacked = np.hstack([b - a for b, a in zip(blocks, A)])
            U_J, s_J, Vt_J = truncated_svd(stacked, joint_rank, random_state=random_state)
            J_all = (U_J * s_J) @ Vt_J
            J = [J_all[:, r] for r in rows]
        for m in range(M):
            r = individual_ranks[m]
            if r == 0:
                A[m] = np.zeros_like(blocks[m])
                U_I[m] = np.zeros((n, 0))
                continue
            resid = blocks[m] - J[m]
            if U_J.shape[1]:
                resid = resid - U_J @ (U_J.T @ resid)
            U, s, Vt = truncated_svd(resid, r, random_state=random_state)
            A[m] = (U * s) @ Vt
            U_I[m] = U
        fit = [j + a for j, a in zip(J, A)]
        if fit_old is not None:
            change = np.sqrt(sum(float(np.sum((f - g) ** 2)) for f, g in zip(fit, fit_old)))
            size = np.sqrt(sum(float(np.sum(f * f)) for f in fit))
            if change <= tol * max(size, 1e-300 * scale):
                converged = True
                break
        if joint_rank == 0:  # one pass is exact: the individual fits do not interact
            converged = True
            break
        fit_old = fit
    return JIVEResult(U_J, J, U_I, A, n_iter, converged)


def _top_singular_values(G, k):
    """Square roots of the ``k`` largest eigenvalues of the Gram matrix ``G``, decreasing."""
    size = G.shape[0]
    k = int(min(k, size))
    values = scipy.linalg.eigvalsh(G, subset_by_index=[size - k, size - 1],
                                   check_finite=False)[::-1]
    return np.sqrt(np.clip(values, 0.0, None))


def _count_exceeding(actual, null, alpha):
    """Number of leading ``actual`` values above the ``1 - alpha`` quantile of the null
    distribution of the value with the same index (r.jive's rule: stop at the first one
    that does not exceed)."""
    thresholds = np.quantile(null, 1.0 - alpha, axis=0)
    rank = 0
    for value, threshold in zip(actual, thresholds):
        if value <= threshold:
            break
        rank += 1
    return rank


def _permutation_joint_rank(blocks, n_permutations, alpha, rng, max_rank, *,
                            against_largest=False):
    """r.jive's joint test: leading singular values of the stacked ``blocks`` above those of
    copies in which each modality's samples are permuted independently (which breaks the
    association between modalities and keeps each modality's own structure).

    Each value is compared with the null value of the same index (r.jive), or with
    ``against_largest=True`` with the largest null value (used for orthonormal score bases,
    where a direction that is not shared has a squared singular value near 1 whatever its
    index, so that the ``k``-th null value, already a chance value, is too low a bar).

    Permuting every modality or all but the first one gives the same singular values, so
    the first stays in place; the Gram matrix of a copy then only needs its off-diagonal
    blocks recomputed.
    """
    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    d = sum(widths)
    k = int(min(max_rank + 1, n, d))
    if k == 0:
        return 0
    stacked = np.hstack(blocks)
    if n <= d:  # wide: the n x n Gram matrix is the sum of the per-modality ones
        actual = _top_singular_values(stacked @ stacked.T, k)
        grams = [b @ b.T for b in blocks]
        null = np.empty((n_permutations, k))
        for t in range(n_permutations):
            G = grams[0].copy()
            for g in grams[1:]:
                p = rng.permutation(n)
                G += g[np.ix_(p, p)]
            null[t] = _top_singular_values(G, k)
        if against_largest:
            null = np.repeat(null[:, :1], k, axis=1)
        return _count_exceeding(actual, null, alpha)
    G = stacked.T @ stacked
    actual = _top_singular_values(G, k)
    rows = row_slices(widths)
    null = np.empty((n_permutations, k))
    for t in range(n_permutations):
        moved = [blocks[0]] + [b[rng.permutation(n)] for b in blocks[1:]]
        Gp = G.copy()
        for a in range(len(blocks)):
            for b in range(a + 1, len(blocks)):
                cross = moved[a].T @ moved[b]
                Gp[rows[a], rows[b]] = cross
                Gp[rows[b], rows[a]] = cross.T
        null[t] = _top_singular_values(Gp, k)
    if against_largest:
        null = np.repeat(null[:, :1], k, axis=1)
    return _count_exceeding(actual, null, alpha)


def _permutation_individual_rank(Y, n_permutations, alpha, rng, max_rank):
    """r.jive's individual test: leading singular values of ``Y`` (one modality, the joint
    part removed) above those of copies in which each feature is permuted across samples
    independently (which keeps each feature's distribution and destroys all structure)."""
    n, p = Y.shape
    k = int(min(max_rank + 1, n, p))
    if k == 0:
        return 0

    def spectrum(Z):
        return _top_singular_values(Z.T @ Z if n > p else Z @ Z.T, k)

    actual = spectrum(Y)
    null = np.empty((n_permutations, k))
    for t in range(n_permutations):
        null[t] = spectrum(rng.permuted(Y, axis=0))
    return _count_exceeding(actual, null, alpha)


def _bic_parameters(joint, ind, n, p):
    """r.jive's parameter count of a JIVE fit: ``sum_{i < r_J} (d - i) + (n - i)`` for the
    joint part and ``sum_m sum_{i < r_m} (p_m - i) + (n - r_J - i)`` for the individual
    parts (their scores live in the ``n - r_J`` dimensions left by the joint ones)."""
    d = int(np.sum(p))
    count = sum((d - i) + (n - i) for i in range(joint))
    for r, pm in zip(ind, p):
        count += sum((int(pm) - i) + (n - joint - i) for i in range(r))
    return count


class JIVE(DataFactorModel):
    """Joint and Individual Variation Explained (Lock et al. 2013).

    Each centred modality is decomposed as ``X_m = J_m + A_m + E_m``: a joint part of rank
    ``r_J`` shared by all modalities (``[J_1, ..., J_M]`` has rank ``r_J``), an individual
    part of rank ``r_m`` whose sample scores are orthogonal to the joint ones, and noise.
    The least-squares fit alternates an SVD of the stacked residual (joint) with one SVD per
    modality (individual) until convergence (:func:`fit_jive`). JIVE represents only global
    and specific structure: ``structure_`` is
    ``Structure.joint_individual(joint_rank_, individual_ranks_)``.

    Parameters
    ----------
    joint_rank : int, Structure or None, default=None
        Joint rank (with ``rank_selection="given"``). A global + specific
        :class:`~hcl_stats.Structure` gives both the joint and the individual ranks; a
        modality it declares without factors (no global block and no specific one) is
        modelled as noise only, zero loadings, as in :class:`hcl_stats.HCL`.
    individual_ranks : int or sequence of int or None, default=None
        Individual rank of each modality (an int: the same for all).
    rank_selection : {"given", "permutation", "bic"}, default="given"
        ``"permutation"``: the permutation tests of Lock et al. (2013) / r.jive, iterated
        until the ranks stop changing (at most 10 rounds, as r.jive). The joint rank is
        the number of leading singular values of the stacked data minus the current
        individual parts that exceed the ``1 - alpha`` quantile of those obtained when
        each modality's samples are permuted independently (which breaks the association
        between modalities); an individual rank is the number of leading singular values
        of ``X_m - J_m`` that exceed those obtained after permuting each feature across
        samples independently. Each round refits JIVE at the new ranks. *Start:* r.jive
        starts from ``J = A = 0``, where the joint test also sees all individual structure
        and its index-by-index comparison can count a strong individual component as
        joint, a fixed point of the iteration. Here the first round uses the individual
        test on each ``X_m`` (signal ranks ``q_m``) and the same sample-permutation test on
        the orthonormal bases of the ``q_m`` leading score vectors of each modality, where
        every direction has unit weight and a direction that is not shared is compared
        with the *largest* permuted value; the published iteration then runs from that
        start. The rounds are in ``selection_path_``. The intermediate fits of the search
        use at most 100 iterations and ``tol >= 1e-4``; the final fit uses ``max_iter``
        and ``tol``. ``"bic"``: r.jive's greedy BIC search (``bic.jive``), starting from
        all ranks zero and adding the one rank (joint or an individual one) that lowers
        ``sum_m n p_m log(RSS_m / (n p_m)) + k log(n d)`` the most, until none does, with
        ``k`` r.jive's parameter count (about ``r_J (n + d) + sum_m r_m (n + p_m)``). Each
        component must therefore reduce the log residual by about ``(n + p_m) log(n d)``,
        i.e. have a signal-to-noise ratio ``lambda / sigma^2`` of at least about
        ``(1 + p_m / n) log(n d)``: the criterion keeps strong components and drops weak
        ones, for which ``"permutation"`` is the better rule (docs/baselines.md).
    scale : bool, default=True
        Divide each centred modality by its Frobenius norm before fitting (r.jive's
        default), so that modalities weigh equally in the joint SVD. Loadings are reported
        in the original units either way.
    n_permutations : int, default=100
        Permutations per test (``rank_selection="permutation"``).
    alpha : float, default=0.05
        Level of the permutation tests.
    max_rank : int or None, default=None
        Largest rank examined by the selection rules (default: ``min(n, p_m) // 2``,
        capped at 50).
    max_iter : int, default=5000
        Maximum number of alternating iterations (they converge linearly: on real data
        whose joint and individual score spaces are close, such as the digits' two halves
        or nutrimouse, a fit takes 1,000 to 1,300 of them).
    tol : float, default=1e-6
        Stop when ``||(J + A)_new - (J + A)_old||_F <= tol ||J + A||_F``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the permutations and of the Lanczos start vectors (``None``: a
        fixed default seed; see :mod:`hcl_stats._numerics.random`).

    Attributes
    ----------
    structure_ : Structure
        Global block of rank ``joint_rank_`` then one specific block per modality.
    loadings_ : ndarray of shape (d, K)
        ``[J_m^T U_J, A_m^T U_m] / sqrt(n - 1)`` in original units, with the noise its
        in-sample scores picked up removed
        (:func:`hcl_stats._models.data_model.denoise_loadings`): ``loadings_ @ loadings_.T``
        estimates the signal covariance ``Sigma - Psi`` (HCL's scale). Exact zeros
        outside each block's modalities.
    means_ : list of ndarray of shape (p_m,)
    noise_variance_ : ndarray of shape (M,)
        Residual variance per modality, degrees of freedom of the rank-``(r_J + r_m)`` fit
        removed.
    joint_rank_ : int
    individual_ranks_ : list of int
    joint_scores_ : ndarray of shape (n, r_J)
        Orthonormal joint scores of the training samples.
    individual_scores_ : list of ndarray of shape (n, r_m)
        Orthonormal individual scores of the training samples.
    scales_ : ndarray of shape (M,)
        Frobenius norms the modalities were divided by (ones when ``scale=False``).
    selection_path_ : list of tuple
        With ``rank_selection="permutation"``: ``(joint_rank, individual_ranks)`` of the
        start and of each round; with ``"bic"``: ``(joint_rank, individual_ranks, bic)``
        of each accepted step.
    selection_converged_ : bool
        With ``rank_selection="permutation"``: whether the rounds reached ranks that the
        tests reproduce (otherwise a UserWarning is issued and the last ranks are used).
    n_iter_ : int
        Iterations of the final fit.
    converged_ : bool
    n_features_per_modality_, total_variance_, modality_names_in_, n_modalities_,
    n_components_, n_samples_
        As in :class:`hcl_stats.HCL`.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import JIVE
    >>> from hcl_stats.datasets import make_hierarchical
    >>> X = make_hierarchical(300, [20, 30], Structure.joint_individual(2, [1, 1]),
    ...                       noise_variance=0.1, random_state=0)
    >>> model = JIVE(2, [1, 1]).fit(X)
    >>> model.loadings_.shape, model.structure_.ranks
    ((50, 4), [2, 1, 1])
    >>> model.transform(X).shape
    (300, 4)
    """

    def __init__(self, joint_rank=None, individual_ranks=None, *, rank_selection="given",
                 scale=True, n_permutations=100, alpha=0.05, max_rank=None, max_iter=5000,
                 tol=1e-6, random_state=None):
        self.joint_rank = joint_rank
        self.individual_ranks = individual_ranks
        self.rank_selection = rank_selection
        self.scale = scale
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.max_rank = max_rank
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self, n, n_features, names):
        """Validate the parameters against the data; the given ranks, or ``(None, None)``."""
        if self.rank_selection not in _RANK_RULES:
            raise ValueError(f"rank_selection must be one of {_RANK_RULES}, "
                             f"got {self.rank_selection!r}")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        if self.rank_selection == "given":
            return self._given_ranks(n, n_features, names)
        if self.joint_rank is not None or self.individual_ranks is not None:
            raise ValueError(f"rank_selection={self.rank_selection!r} selects the ranks: "
                             "leave joint_rank and individual_ranks as None")
        check_positive_int(self.n_permutations, "n_permutations")
        alpha = check_positive_float(self.alpha, "alpha")
        if alpha >= 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.max_rank is not None:
            check_positive_int(self.max_rank, "max_rank")
        return None, None

    def _given_ranks(self, n, n_features, names):
        M = len(n_features)
        if isinstance(self.joint_rank, Structure):
            if self.individual_ranks is not None:
                raise ValueError("give either a Structure or joint_rank and individual_ranks")
            joint, ind = ranks_from_structure(self.joint_rank, n_features, names, n)
        elif self.joint_rank is None or self.individual_ranks is None:
            raise ValueError("rank_selection='given' needs joint_rank and "
                             "individual_ranks (or choose 'permutation' or 'bic')")
        else:
            joint = check_positive_int(self.joint_rank, "joint_rank", minimum=0)
            ind = self.individual_ranks
        ind = check_rank_list(ind, M, "individual_ranks", n_features=n_features, names=names)
        check_total_rank(joint + sum(ind), n, "joint_rank and individual_ranks give")
        for m, p in enumerate(n_features):
            if joint + ind[m] > min(p, n - 1):
                raise ValueError(
                    f"{modality_description(m, names)}: joint rank {joint} + individual rank "
                    f"{ind[m]} exceeds min(n_features={p}, n_samples - 1={n - 1})")
        return joint, ind

    def _fit_centred(self, blocks, names):
        """Rank selection (if asked), the final alternating fit, loadings and residuals."""
        n = blocks[0].shape[0]
        joint, ind = self._check_params(n, [b.shape[1] for b in blocks], names)
        rng = as_generator(self.random_state)
        seed = int(rng.integers(2 ** 31 - 1))
        scales = block_scales(blocks, self.scale)
        data = [b / s for b, s in zip(blocks, scales)]
        comp = RowCompression(data)
        extra = {}
        if self.rank_selection == "permutation":
            joint, ind, extra = self._select_permutation(data, comp, rng, seed)
        elif self.rank_selection == "bic":
            joint, ind, extra = self._select_bic(comp.reduced, n, seed)
        # a modality that a given Structure leaves without factors is noise only
        noise_only = [m for m, r in enumerate(ind) if joint == 0 and r == 0] \
            if isinstance(self.joint_rank, Structure) else []
        structure, ind = joint_individual_structure(
            joint, ind, names, selected=self.rank_selection != "given", noise_only=noise_only)
        result = fit_jive(comp.reduced, joint, ind, max_iter=self.max_iter, tol=self.tol,
                          random_state=seed)
        if not result.converged:
            warnings.warn(
                f"JIVE did not converge in max_iter={self.max_iter} iterations (tol="
                f"{self.tol}); increase max_iter or tol", ConvergenceWarning, stacklevel=3)
        return self._data_fit(result, structure, scales, comp, blocks, extra)

    # -- rank selection -----------------------------------------------------------------------
    def _max_rank(self, n, p):
        if self.max_rank is not None:
            return int(min(self.max_rank, n - 1, p))
        return int(max(1, min(50, min(n - 1, p) // 2)))

    def _select_permutation(self, data, comp, rng, seed):
        """The permutation rank search (class docstring); ``(joint, ind, attributes)``.

        The permutation draws are many small dense products and eigenvalue problems: they
        run under one BLAS thread (:func:`hcl_stats._numerics.linalg.serial_blas`).
        """
        with serial_blas():
            return self._permutation_rounds(data, comp, rng, seed)

    def _permutation_rounds(self, data, comp, rng, seed):
        n = data[0].shape[0]
        B, alpha = self.n_permutations, self.alpha

        def individual_ranks(parts):
            return [_permutation_individual_rank(y, B, alpha, rng,
                                                 self._max_rank(n, y.shape[1]))
                    for y in parts]

        # start: signal rank of each modality (individual test with no joint part removed),
        # joint rank from the same sample-permutation test applied to the orthonormal bases
        # of the modalities' signal score spaces (every direction of unit strength there)
        signal = individual_ranks(data)
        bases = [truncated_svd(x, r, random_state=seed)[0] for x, r in zip(data, signal)]
        joint = min(_permutation_joint_rank(bases, B, alpha, rng, min(signal),
                                            against_largest=True), min(signal))
        ind = [r - joint for r in signal]
        path = [(joint, tuple(ind))]
        A_red = None
        converged = False
        for _ in range(10):  # r.jive stops after 10 rounds
            res = fit_jive(comp.reduced, joint, ind, init=A_red,
                           max_iter=min(self.max_iter, 100), tol=max(self.tol, 1e-4),
                           random_state=seed)
            A_red = res.individual
            J_full = [comp.lift(j) for j in res.joint]
            A_full = [comp.lift(a) for a in res.individual]
            new_joint = _permutation_joint_rank(
                [x - a for x, a in zip(data, A_full)], B, alpha, rng,
                self._max_rank(n, sum(x.shape[1] for x in data)))
            new_ind = individual_ranks([x - j for x, j in zip(data, J_full)])
            path.append((new_joint, tuple(new_ind)))
            if new_joint == joint and new_ind == ind:
                converged = True
                break
            joint, ind = new_joint, new_ind
        if not converged:
            warnings.warn("the permutation rank search did not settle in 10 rounds; the ranks "
                          "of the last round are used", UserWarning, stacklevel=4)
        return joint, ind, {"selection_path_": path, "selection_converged_": converged}

    def _select_bic(self, reduced, n, seed):
        M = len(reduced)
        p = np.array([x.shape[1] for x in reduced])
        d = int(p.sum())

        def bic(joint, ind):
            res = fit_jive(reduced, joint, ind, max_iter=min(self.max_iter, 100),
                           tol=max(self.tol, 1e-4), random_state=seed)
            value = 0.0
            for m in range(M):
                rss = float(np.sum((reduced[m] - res.joint[m] - res.individual[m]) ** 2))
                value += n * p[m] * np.log(max(rss, 1e-300) / (n * p[m]))
            return value + _bic_parameters(joint, ind, n, p) * np.log(n * d)

        joint, ind = 0, [0] * M
        current = bic(joint, ind)
        path = [(joint, tuple(ind), current)]
        while True:
            candidates = []
            if joint + max(ind) < self._max_rank(n, int(p.min())):
                candidates.append((joint + 1, list(ind)))
            for m in range(M):
                if joint + ind[m] < self._max_rank(n, int(p[m])):
                    trial = list(ind)
                    trial[m] += 1
                    candidates.append((joint, trial))
            if not candidates:
                break
            scored = [(bic(j, r), j, r) for j, r in candidates]
            best = min(scored, key=lambda t: t[0])
            if best[0] >= current:
                break
            current, joint, ind = best
            path.append((joint, tuple(ind), current))
        return joint, ind, {"selection_path_": path}

    # -- closing step ---------------------------------------------------------------------------
    @staticmethod
    def _data_fit(result, structure, scales, comp, blocks, extra):
        """Loadings ``[J_m^T U_J, A_m^T U_m] / sqrt(n - 1)`` and residuals in original units."""
        M = len(blocks)
        n = blocks[0].shape[0]
        n_features = [b.shape[1] for b in blocks]
        glob = tuple(range(M))
        W = np.zeros((sum(n_features), structure.n_components))
        root = np.sqrt(n - 1)
        rss = np.empty(M)
        for m, rows in enumerate(structure.rows(n_features)):
            if glob in structure:
                W[rows, structure.columns(glob)] = \
                    scales[m] * (result.joint[m].T @ result.joint_scores) / root
            if (m,) in structure:
                W[rows, structure.columns((m,))] = \
                    scales[m] * (result.individual[m].T @ result.individual_scores[m]) / root
            fitted = scales[m] * comp.lift(result.joint[m] + result.individual[m])
            rss[m] = float(np.sum((blocks[m] - fitted) ** 2))
        attributes = {
            "joint_rank_": structure.rank(glob) if glob in structure else 0,
            "individual_ranks_": [structure.rank((m,)) if (m,) in structure else 0
                                  for m in range(M)],
            "joint_scores_": comp.lift(result.joint_scores),
            "individual_scores_": [comp.lift(u) for u in result.individual_scores],
            "scales_": scales,
            "n_iter_": int(result.n_iter),
            "converged_": bool(result.converged),
            **extra,
        }
        return DataFit(structure=structure, loadings=W, rss=rss, scales=scales,
                       attributes=attributes)
