"""Identifiability of a hierarchical structure for given modality widths.

The signal covariance ``W W^T`` determines the structured loadings ``W`` (zero outside the
structure's mask) at best up to one ``r_S x r_S`` rotation per block. Two checks are offered:

:func:`check_rank_conditions` (the rank conditions, from theory)
    1. *Full column rank* of a generic ``W``. A masked matrix with generic entries has full
       column rank iff Hall's condition holds: for every set ``U`` of modalities, the blocks
       whose subsets lie inside ``U`` carry at most ``sum_{m in U} p_m`` factors. When it
       fails, ``W W^T`` is also produced by fewer factors: the ranks are not identified.
    2. *Modality rank*: ``p_m >= r_m = sum_{S containing m} r_S`` for every modality. With
       (1), this is sufficient: if ``dW W^T + W dW^T = 0`` and ``W`` has full column rank,
       then ``dW = W A`` with ``A`` skew; the mask forces ``B_m A_{in(m), out(m)} = 0``
       (``in(m)``: columns of blocks containing ``m``), so full column rank of every stacked
       ``B_m`` gives ``A_{T,S} = 0`` whenever some modality is in ``T`` but not ``S`` or the
       reverse, i.e. ``A`` is block diagonal: only the per-block rotations remain.
    3. *Separation* (when some modality is narrow, ``p_m < r_m``): the same argument leaves
       ``A_{in(m), out(m)}`` free inside the null space of ``B_m``. The coupling blocks
       ``A_{T,S}`` (``T != S``) that satisfy every modality's constraint are counted by the
       rank of a small linear system on ``A`` (size ``K^2``, with generic ``B_m``); the
       structure is identifiable iff that system has only the zero solution. With a
       single narrow modality ``m`` this has the closed form: blocks ``S`` and
       ``S + {m}`` cannot be separated iff ``r_{S + {m}} > p_m``.

:func:`jacobian_rank_check` (the numerical test; see ``docs/model.md``)
    At a random ``W`` with the structure's zero pattern, the rank of the Jacobian of
    ``W -> W W^T`` (restricted to the free entries) is compared with the number of free
    parameters minus ``sum_S r_S (r_S - 1) / 2``. Locally identifiable (up to the rotations)
    iff they are equal and ``W`` has full column rank.

The two are computed independently (the first on a ``K x K`` system or by counting, the
second on the ``d(d+1)/2 x #free`` Jacobian); :func:`check_identifiability` runs both.

With incomplete data (``joint_counts``: how many samples observe each modality and each
pair of modalities) the covariance is estimated block by block from the samples that
observe both modalities. The rank conditions then also require every modality to be
observed in more samples than the factors it carries and every two modalities that share
a block to be observed together in more samples than the factors of the blocks containing
both (:func:`hcl_stats._structure.joint_shortfalls`); with that, every block of ``W W^T``
that the structure does not set to zero is estimated, and the argument above applies. The
Jacobian check drops the entries of pairs never observed together: it tests whether the
observed blocks determine ``W`` locally. That can hold where the observation condition
fails (a block on three modalities is determined by two of its three cross-covariances),
and it cannot see a sign flip of a rank-one block between two modalities never observed
together (a discrete ambiguity), so with ``joint_counts`` :func:`check_identifiability`
requires both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations
from numbers import Integral

import numpy as np

from hcl_stats._numerics.random import as_generator
from hcl_stats._structure import (
    Structure,
    check_joint_counts,
    describe_shortfall,
    joint_shortfalls,
)

__all__ = ["IdentifiabilityCheck", "JacobianCheck", "RankConditions", "check_identifiability",
           "check_rank_conditions", "jacobian_rank_check"]


def _setup(structure, n_features):
    if not isinstance(structure, Structure):
        structure = Structure(structure)
    if isinstance(n_features, Integral):
        n_features = [int(n_features)] * structure.n_modalities
    widths = [int(p) for p in n_features]
    if len(widths) != structure.n_modalities:
        raise ValueError(f"n_features has {len(widths)} entries but the structure has "
                         f"{structure.n_modalities} modalities")
    for m, p in enumerate(widths):
        if p < 1:
            raise ValueError(f"modality {structure.modality_label(m)} has width {p}; "
                             "widths must be positive")
    return structure, widths


@dataclass(frozen=True)
class RankConditions:
    """Outcome of :func:`check_rank_conditions`.

    Attributes
    ----------
    identifiable : bool
        Verdict of the rank conditions.
    verdict : str
        One sentence saying why.
    full_column_rank : bool
        Hall's condition (a generic ``W`` has full column rank ``K``).
    hall_violations : list of (tuple of int, int, int)
        ``(modalities U, factors in blocks inside U, sum of widths of U)`` where it fails.
    narrow_modalities : list of int
        Modalities with ``p_m < r_m``.
    coupling_dimension : int
        Dimension of the rotation couplings between different blocks left free by the
        narrow modalities (0 when identifiable; not computed when Hall's condition fails).
    inseparable_pairs : list of (str, str)
        Block pairs involved in those couplings.
    joint_shortfalls : list of JointShortfall
        With ``joint_counts``: the modalities, and the pairs of modalities sharing a block,
        observed in too few samples (:func:`hcl_stats._structure.joint_shortfalls`).
    """

    identifiable: bool
    verdict: str
    full_column_rank: bool
    hall_violations: list = field(default_factory=list)
    narrow_modalities: list = field(default_factory=list)
    coupling_dimension: int = 0
    inseparable_pairs: list = field(default_factory=list)
    joint_shortfalls: list = field(default_factory=list)

    def __str__(self):
        return ("identifiable" if self.identifiable else "NOT identifiable") + ": " + self.verdict


@dataclass(frozen=True)
class JacobianCheck:
    """Outcome of :func:`jacobian_rank_check`.

    Attributes
    ----------
    identifiable : bool
        ``rank == expected_rank`` and ``loadings_rank == n_components``.
    verdict : str
    rank : int
        Numerical rank of the Jacobian of ``W -> W W^T`` at a random masked ``W``.
    n_free : int
        Number of free loadings (non-zero pattern entries).
    n_rotations : int
        ``sum_S r_S (r_S - 1) / 2``.
    expected_rank : int
        ``n_free - n_rotations``.
    loadings_rank : int
        Numerical rank of the random ``W``.
    n_components : int
        ``K``.
    singular_gap : float
        Ratio of the last singular value kept to the first dropped (large: a clear rank).
    n_features : list of int
        The widths used (capped at ``K`` when the full Jacobian would be too large; this
        does not change the verdict, see :func:`jacobian_rank_check`).
    """

    identifiable: bool
    verdict: str
    rank: int
    n_free: int
    n_rotations: int
    expected_rank: int
    loadings_rank: int
    n_components: int
    singular_gap: float
    n_features: list

    def __str__(self):
        return ("identifiable" if self.identifiable else "NOT identifiable") + ": " + self.verdict


def _hall(structure, widths):
    """Hall's condition for the bipartite (factor, feature) pattern of the mask."""
    M = structure.n_modalities
    violations = []
    for size in range(1, M + 1):
        for U in combinations(range(M), size):
            Uset = set(U)
            factors = sum(r for s, r in structure.blocks if set(s) <= Uset)
            rows = sum(widths[m] for m in U)
            if factors > rows:
                violations.append((U, factors, rows))
    return violations


def _free_couplings(structure, widths, narrow, rng):
    """Separation condition: the coupling blocks ``A_{T,S}`` (``T`` before ``S``) of a skew
    ``A`` that every modality's constraint leaves free. Returns the dimension of that
    space and the labels of the block pairs involved."""
    M = structure.n_modalities
    subsets = structure.subsets
    pairs = [(T, S) for i, T in enumerate(subsets) for S in subsets[i + 1:]]
    offsets, n_unknown = {}, 0
    for T, S in pairs:
        offsets[(T, S)] = n_unknown
        n_unknown += structure.rank(T) * structure.rank(S)

    def coupling(T, S):
        """Matrix mapping unknowns to the entries of A_{T,S} (r_T x r_S, row-major)."""
        rT, rS = structure.rank(T), structure.rank(S)
        E = np.zeros((rT * rS, n_unknown))
        if (T, S) in offsets:
            E[:, offsets[(T, S)]:offsets[(T, S)] + rT * rS] = np.eye(rT * rS)
        else:  # A_{T,S} = -A_{S,T}^T
            o = offsets[(S, T)]
            for a in range(rT):
                for b in range(rS):
                    E[a * rS + b, o + b * rT + a] = -1.0
        return E

    equations = []
    for m in range(M):
        ins = structure.subsets_of(m)
        outs = [S for S in subsets if m not in S]
        r_m = structure.modality_rank(m)
        B = rng.standard_normal((min(widths[m], r_m), r_m)) if m in narrow else np.eye(r_m)
        for S in outs:
            rS = structure.rank(S)
            # column j of the stacked [A_{T,S}]_{T ∋ m} must satisfy B @ column = 0
            for j in range(rS):
                col = np.vstack([coupling(T, S)[j::rS] for T in ins])  # (r_m, n_unknown)
                equations.append(B @ col)
    system = np.vstack(equations) if equations else np.zeros((0, n_unknown))
    if n_unknown == 0:
        dim, null = 0, np.zeros((0, 0))
    else:
        _, sv, Vt = np.linalg.svd(system, full_matrices=True)
        tol = max(system.shape) * np.finfo(float).eps * (sv[0] if sv.size else 1.0)
        rank = int(np.sum(sv > max(tol, 1e-10)))
        dim = n_unknown - rank
        null = Vt[rank:].T
    inseparable = []
    if dim:
        for (T, S), o in offsets.items():
            size = structure.rank(T) * structure.rank(S)
            if np.linalg.norm(null[o:o + size]) > 1e-8:
                inseparable.append((structure.label(T), structure.label(S)))
    return dim, inseparable


def check_rank_conditions(structure, n_features, *, random_state=None, joint_counts=None):
    """Check the rank conditions for identifiability of ``structure`` with ``n_features``.

    See the module docstring for the conditions and why they are sufficient and necessary
    (up to the rotations of each block).

    Parameters
    ----------
    structure : Structure or dict
    n_features : int or sequence of int
        Modality widths ``p_m``.
    random_state : int, numpy.random.Generator or None, default=None
        Draws the generic stacked loadings of narrow modalities (only used then).
    joint_counts : array-like of shape (M, M), default=None
        Samples observing each modality (diagonal) and each pair of modalities, for
        incomplete data: adds the observation condition of the module docstring. ``None``:
        complete data.

    Returns
    -------
    RankConditions

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.identifiability import check_rank_conditions
    >>> check_rank_conditions(Structure.full(3, rank=1), [5, 5, 5]).identifiable
    True
    >>> res = check_rank_conditions({(0, 1): 2, (0,): 2, (1,): 1}, [1, 6])
    >>> res.identifiable, res.full_column_rank
    (False, False)
    >>> res = check_rank_conditions({(0, 1): 1, (0,): 1, (1,): 1}, [4, 4],
    ...                             joint_counts=[[50, 0], [0, 40]])
    >>> res.identifiable, res.joint_shortfalls[0].modalities, res.joint_shortfalls[0].count
    (False, (0, 1), 0)
    """
    structure, widths = _setup(structure, n_features)
    result = _rank_conditions(structure, widths, random_state)
    if joint_counts is None:
        return result
    short = joint_shortfalls(structure, joint_counts)
    if not short:
        return replace(result, verdict=result.verdict + "; every modality and every pair of "
                       "modalities sharing a block is observed in enough samples")
    verdict = "; ".join(describe_shortfall(s, structure) for s in short)
    if not result.identifiable:
        verdict += "; and with complete data: " + result.verdict
    return replace(result, identifiable=False, verdict=verdict, joint_shortfalls=short)


def _rank_conditions(structure, widths, random_state):
    """:func:`check_rank_conditions` for complete data."""
    M = structure.n_modalities
    narrow = [m for m in range(M) if widths[m] < structure.modality_rank(m)]
    violations = _hall(structure, widths)
    if violations:
        U, factors, rows = violations[0]
        names = "{" + ",".join(structure.modality_label(m) for m in U) + "}"
        return RankConditions(
            False,
            f"loadings cannot have full column rank: the blocks inside modalities {names} "
            f"carry {factors} factors on {rows} features, so fewer factors give the same "
            "covariance (the ranks are not identified)",
            False, violations, narrow)
    if not narrow:
        return RankConditions(
            True, "every modality is at least as wide as the factors it carries "
            "(p_m >= r_m), so only the per-block rotations are free", True, [], narrow)
    dim, inseparable = _free_couplings(structure, widths, narrow,
                                       as_generator(random_state))
    names = ", ".join(structure.modality_label(m) for m in narrow)
    if dim == 0:
        return RankConditions(
            True, f"modality {names} is narrower than the factors it carries, but the "
            "other modalities separate all its blocks", True, [], narrow, 0, [])
    pairs_txt = "; ".join(f"{a} and {b}" for a, b in inseparable)
    return RankConditions(
        False, f"modality {names} is too narrow to separate blocks {pairs_txt} "
        f"({dim} free directions besides the rotations)", True, [], narrow, int(dim),
        inseparable)


def _jacobian(W, mask):
    """Jacobian of ``W -> upper triangle of W W^T`` with respect to the free entries."""
    d = W.shape[0]
    rows, cols = np.nonzero(mask)
    f = rows.size
    J = np.zeros((d, d, f))
    idx = np.arange(f)
    J[rows, :, idx] += W[:, cols].T
    J[:, rows, idx] += W[:, cols]
    iu = np.triu_indices(d)
    return J[iu[0], iu[1], :]


def jacobian_rank_check(structure, n_features, *, random_state=None, max_free=2500,
                        joint_counts=None):
    """Numerical identifiability test: rank of the Jacobian of ``W -> W W^T``.

    At a random ``W`` with i.i.d. standard normal free entries (generic with probability
    one), the Jacobian of the map from the free entries to the distinct entries of
    ``W W^T`` always vanishes on the ``n_rotations`` directions ``W A`` with ``A`` block
    diagonal and skew. The model is locally identifiable up to those rotations iff
    ``rank == n_free - n_rotations`` and ``W`` has full column rank.

    Widths larger than ``K`` are capped at ``K`` when the Jacobian would have more than
    ``max_free`` columns: a modality with ``p_m >= K`` satisfies every Hall inequality it
    enters and has full-column-rank stacked loadings at either width, so the verdict is
    unchanged (the reported numbers are those of the capped widths).

    With ``joint_counts`` (samples observing each pair of modalities, an ``(M, M)`` array)
    the entries of ``W W^T`` between modalities that no sample observes together are
    dropped: the test is then whether the observed blocks determine ``W`` locally (see
    the module docstring for what it cannot see).

    Parameters
    ----------
    structure : Structure or dict
    n_features : int or sequence of int
    random_state : int, numpy.random.Generator or None, default=None
    max_free : int, default=2500
    joint_counts : array-like of shape (M, M), default=None

    Returns
    -------
    JacobianCheck

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.identifiability import jacobian_rank_check
    >>> res = jacobian_rank_check(Structure.full(3, rank=1), [5, 5, 5], random_state=0)
    >>> res.identifiable, res.rank, res.expected_rank
    (True, 60, 60)
    """
    structure, widths = _setup(structure, n_features)
    K = structure.n_components
    mask = structure.mask(widths)
    if int(mask.sum()) > max_free:
        widths = [min(p, K) for p in widths]
        mask = structure.mask(widths)
    rng = as_generator(random_state)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    J = _jacobian(W, mask)
    if joint_counts is not None:  # keep the entries of pairs observed together
        N = check_joint_counts(joint_counts, structure.n_modalities)
        modality = np.repeat(np.arange(structure.n_modalities), widths)
        iu = np.triu_indices(W.shape[0])
        J = J[N[modality[iu[0]], modality[iu[1]]] > 0]
    sv = np.linalg.svd(J, compute_uv=False)
    tol = max(J.shape) * np.finfo(float).eps * (sv[0] if sv.size else 1.0)
    rank = int(np.sum(sv > tol))
    gap = float("inf")
    if 0 < rank < sv.size and sv[rank] > 0:
        gap = float(sv[rank - 1] / sv[rank])
    n_free = int(mask.sum())
    n_rot = int(sum(r * (r - 1) // 2 for r in structure.ranks))
    expected = n_free - n_rot
    w_sv = np.linalg.svd(W, compute_uv=False)
    w_rank = int(np.sum(w_sv > max(W.shape) * np.finfo(float).eps * w_sv[0]))
    if w_rank < K:
        ok = False
        verdict = (f"a generic W has rank {w_rank} < K = {K}: fewer factors give the same "
                   f"covariance (Jacobian rank {rank}, free {n_free}, rotations {n_rot})")
    elif rank == expected:
        ok = True
        verdict = (f"Jacobian rank {rank} = {n_free} free - {n_rot} rotation dimensions")
    else:
        ok = False
        verdict = (f"Jacobian rank {rank} < {n_free} free - {n_rot} rotation dimensions "
                   f"= {expected}: {expected - rank} directions besides the rotations leave "
                   "the covariance unchanged")
    if joint_counts is not None:
        verdict += " (on the blocks of modalities observed together)"
    return JacobianCheck(ok, verdict, rank, n_free, n_rot, expected, w_rank, K, gap,
                         list(widths))


@dataclass(frozen=True)
class IdentifiabilityCheck:
    """Outcome of :func:`check_identifiability`.

    Attributes
    ----------
    rank_conditions : RankConditions
        The theoretical check.
    jacobian : JacobianCheck
        The numerical check.
    identifiable : bool
        The Jacobian verdict; with ``joint_counts``, also that the rank conditions find no
        modality or pair observed in too few samples.
    agree : bool
        Whether both checks reach the same verdict.
    """

    rank_conditions: RankConditions
    jacobian: JacobianCheck
    identifiable: bool
    agree: bool


def check_identifiability(structure, n_features, *, random_state=None, joint_counts=None):
    """Run both checks and say whether they agree.

    ``joint_counts`` (an ``(M, M)`` array of sample counts: each modality observed on the
    diagonal, each pair observed together off it) describes incomplete data; both checks
    then take it into account (see the module docstring).

    Returns
    -------
    IdentifiabilityCheck

    Examples
    --------
    >>> from hcl_stats.identifiability import check_identifiability
    >>> out = check_identifiability({(0, 1, 2): 1, (0, 1): 2, (1,): 1, (2,): 1}, [1, 5, 5],
    ...                             random_state=0)
    >>> out.identifiable, out.agree
    (False, True)
    """
    rng = as_generator(random_state)
    rc = check_rank_conditions(structure, n_features, random_state=rng,
                               joint_counts=joint_counts)
    jc = jacobian_rank_check(structure, n_features, random_state=rng,
                             joint_counts=joint_counts)
    identifiable = jc.identifiable and not rc.joint_shortfalls
    return IdentifiabilityCheck(rc, jc, identifiable, rc.identifiable == jc.identifiable)
