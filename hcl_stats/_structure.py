"""The :class:`Structure` object: which modality subsets carry factors, and how many."""

from __future__ import annotations

from itertools import combinations
from numbers import Integral
from typing import NamedTuple

import numpy as np

__all__ = ["Structure", "LEVELS", "JointShortfall", "check_joint_counts", "describe_shortfall",
           "joint_shortfalls"]

#: The three levels a block can have, from most to least shared.
LEVELS = ("global", "partial", "specific")


def row_slices(n_features):
    """Row slices of the stacked modalities, one per modality, for widths ``n_features``.

    >>> row_slices([2, 3])
    [slice(0, 2, None), slice(2, 5, None)]
    """
    slices, start = [], 0
    for width in np.asarray(n_features, dtype=int).reshape(-1).tolist():
        slices.append(slice(start, start + width))
        start += width
    return slices


def modality_description(m, names=None):
    """How messages name modality ``m``: ``"modality 'ehr'"`` with names, ``"modality 2"`` without."""
    return f"modality {names[m]!r}" if names else f"modality {m}"


def subset_label(subset, names=None):
    """A readable name of a modality subset such as ``"{0,2}"`` or ``"{ehr,labs}"``."""
    return "{" + ",".join(str(names[m]) if names else str(m) for m in subset) + "}"


def _as_subset_key(key):
    """Return ``key`` as a tuple (a bare int or name is a one-modality subset)."""
    if isinstance(key, (str, Integral)):
        return (key,)
    try:
        return tuple(key)
    except TypeError:
        raise ValueError(
            f"structure key {key!r} is not a subset of modalities (expected a tuple of "
            "modality indices or names)"
        ) from None


def _parse_entries(blocks):
    """``[(subset key as a tuple, rank), ...]`` of a dict or an iterable of pairs."""
    items = list(blocks.items()) if isinstance(blocks, dict) else list(blocks)
    if not items:
        raise ValueError("a structure needs at least one block (subset, rank)")
    keys = []
    for item in items:
        try:
            key, rank = item
        except (TypeError, ValueError):
            raise ValueError(f"structure entry {item!r} is not a (subset, rank) pair") from None
        keys.append((_as_subset_key(key), rank))
    return keys


def _modality_names(keys, modalities, uses_names):
    """The declared names, the names in order of first appearance, or None (indices)."""
    if modalities is not None and not isinstance(modalities, Integral):
        names = tuple(modalities)
        if not all(isinstance(m, str) for m in names):
            raise ValueError(f"modality names must be strings, got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names!r}")
        return names
    if uses_names:
        return tuple(dict.fromkeys(m for key, _ in keys for m in key))
    return None


def _resolve_subset(key, names, uses_names):
    """The sorted tuple of modality indices of one structure entry's subset."""
    if len(key) == 0:
        raise ValueError(f"structure entry {key!r}: the subset of modalities is empty")
    subset = []
    for m in key:
        if uses_names:
            if not isinstance(m, str):
                raise ValueError(f"structure entry {key!r}: mixes modality names and indices")
            if m not in names:
                raise ValueError(
                    f"structure entry {key!r}: modality {m!r} is not one of {names!r}")
            subset.append(names.index(m))
        else:
            if isinstance(m, bool) or not isinstance(m, Integral):
                raise ValueError(
                    f"structure entry {key!r}: modality {m!r} is not an integer index")
            if m < 0:
                raise ValueError(f"structure entry {key!r}: modality index {m} is negative")
            subset.append(int(m))
    if len(set(subset)) != len(subset):
        raise ValueError(f"structure entry {key!r}: a modality is repeated")
    return tuple(sorted(subset))


def _check_rank(key, rank):
    if isinstance(rank, bool) or not isinstance(rank, Integral) or rank < 1:
        raise ValueError(
            f"structure entry {key!r}: rank must be a positive integer, got {rank!r}")
    return int(rank)


def _check_subsets(resolved, keys, n_modalities):
    """Every index in range, no subset given twice."""
    seen = {}
    for (subset, _), (key, _) in zip(resolved, keys):
        if max(subset) >= n_modalities:
            raise ValueError(
                f"structure entry {key!r}: modality index {max(subset)} is out of range "
                f"for {n_modalities} modalities"
            )
        if subset in seen:
            raise ValueError(
                f"structure entry {key!r}: the same subset is also given as {seen[subset]!r}"
            )
        seen[subset] = key


class Structure:
    """Which subsets of modalities share latent factors, and with which rank.

    A structure is a collection of *blocks* ``(subset, rank)``: ``subset`` is a non-empty set
    of modalities (by index, or by name when the data come as a dict) and ``rank`` the number
    of latent factors shared by exactly those modalities. A block's *level* is ``"global"``
    when the subset holds every modality, ``"specific"`` when it holds one, ``"partial"``
    otherwise. The stacked loading matrix ``W`` of shape ``(d, K)`` has one column group per
    block, in the order of :attr:`blocks` (most shared first, then by modality index), and is
    exactly zero in the rows of modalities outside a block's subset (:meth:`mask`).

    Structures are immutable and hashable.

    Parameters
    ----------
    blocks : dict or iterable of (subset, rank)
        Mapping from subsets (tuples of modality indices, or of names) to positive ranks,
        e.g. ``{(0, 1, 2): 3, (0, 1): 2, (2,): 1}``.
    modalities : int or sequence of str, default=None
        The number of modalities, or their names in data order. By default, the number is
        one more than the largest index used (indices), or the names in order of first
        appearance (names). A modality that no block contains carries no factor (it is
        modelled as noise only: zero loadings, its own noise variance); that is allowed only
        when ``modalities`` declares the modalities, so that a mistyped index is still caught.

    Attributes
    ----------
    blocks : list of (tuple of int, int)
        The blocks in column order.
    n_modalities : int
        Number of modalities ``M``.
    modality_names : tuple of str or None
        Modality names, when the structure was given by names or bound to named data.
    n_components : int
        Total rank ``K``, the number of columns of the loading matrix.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> s = Structure({(0, 1, 2): 3, (0, 1): 2, (2,): 1})
    >>> s.n_components, s.columns((0, 1)), s.level((2,))
    (6, slice(3, 5, None), 'specific')
    >>> Structure.full(n_modalities=3, rank=2).n_components
    14
    """

    __slots__ = ("_blocks", "_n_modalities", "_names", "_offsets")

    def __init__(self, blocks, modalities=None):
        keys = _parse_entries(blocks)
        uses_names = any(isinstance(m, str) for key, _ in keys for m in key)
        names = _modality_names(keys, modalities, uses_names)
        resolved = [(_resolve_subset(key, names, uses_names), _check_rank(key, rank))
                    for key, rank in keys]
        if names is not None:
            n_modalities = len(names)
        elif modalities is not None:
            if isinstance(modalities, bool) or int(modalities) < 1:
                raise ValueError(f"modalities must be a positive integer, got {modalities!r}")
            n_modalities = int(modalities)
        else:
            n_modalities = 1 + max(max(s) for s, _ in resolved)
        _check_subsets(resolved, keys, n_modalities)
        covered = {m for s, _ in resolved for m in s}
        missing = [m for m in range(n_modalities) if m not in covered]
        if missing and modalities is None and names is None:
            # with the modalities inferred from the indices, a gap is almost surely a typo
            raise ValueError(
                f"modality {missing[0]!r} carries no factor: add a block containing it, or "
                "pass `modalities=` to declare on purpose a modality without factors"
            )
        resolved.sort(key=lambda b: (-len(b[0]), b[0]))
        self._blocks = tuple(resolved)
        self._n_modalities = n_modalities
        self._names = names
        offsets = np.cumsum([0] + [r for _, r in resolved])
        self._offsets = {s: (int(offsets[i]), int(offsets[i + 1])) for i, (s, _) in
                         enumerate(resolved)}

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def full(cls, n_modalities=None, rank=1, *, names=None):
        """All ``2**M - 1`` subsets, each with the same ``rank``.

        Parameters
        ----------
        n_modalities : int, default=None
            Number of modalities ``M``; may be omitted when ``names`` is given.
        rank : int, default=1
            Rank of every block.
        names : sequence of str, default=None
            Modality names in data order.
        """
        if names is not None:
            names = tuple(names)
            if n_modalities is not None and n_modalities != len(names):
                raise ValueError(
                    f"n_modalities={n_modalities} but {len(names)} names were given"
                )
            n_modalities = len(names)
        if n_modalities is None or isinstance(n_modalities, bool) or n_modalities < 1:
            raise ValueError(f"n_modalities must be a positive integer, got {n_modalities!r}")
        subsets = [c for k in range(1, n_modalities + 1)
                   for c in combinations(range(n_modalities), k)]
        return cls({s: rank for s in subsets}, modalities=names or n_modalities)

    @classmethod
    def joint_individual(cls, joint_rank, individual_ranks, *, names=None):
        """The global + specific structure of JIVE and AJIVE.

        Parameters
        ----------
        joint_rank : int
            Rank of the block shared by all modalities (0 for none).
        individual_ranks : sequence of int
            Rank of each modality's specific block (0 for none).
        names : sequence of str, default=None
            Modality names in data order.
        """
        individual_ranks = list(individual_ranks)
        n_modalities = len(individual_ranks)
        blocks = {}
        if joint_rank:
            blocks[tuple(range(n_modalities))] = joint_rank
        for m, r in enumerate(individual_ranks):
            if r:
                blocks[(m,)] = r
        return cls(blocks, modalities=names or n_modalities)

    # -- description ---------------------------------------------------------------------------
    @property
    def blocks(self):
        return list(self._blocks)

    @property
    def subsets(self):
        """The subsets in column order."""
        return [s for s, _ in self._blocks]

    @property
    def ranks(self):
        """The ranks in column order."""
        return [r for _, r in self._blocks]

    @property
    def n_modalities(self):
        return self._n_modalities

    @property
    def modality_names(self):
        return self._names

    @property
    def n_components(self):
        return sum(r for _, r in self._blocks)

    def resolve(self, subset):
        """Canonical form (sorted tuple of indices) of a block given by indices or names.

        Raises ``KeyError`` when ``subset`` is not a block of this structure.
        """
        return self._key(subset)

    def _key(self, subset):
        if type(subset) is tuple and subset in self._offsets and all(
                type(m) is int for m in subset):
            return subset  # already a canonical key (the fitting code's lookups)
        key = _as_subset_key(subset)
        if self._names is not None and any(isinstance(m, str) for m in key):
            try:
                key = tuple(self._names.index(m) for m in key)
            except ValueError:
                raise KeyError(f"{subset!r} names a modality not in {self._names!r}") from None
        key = tuple(sorted(int(m) for m in key))
        if key not in self._offsets:
            raise KeyError(f"{subset!r} is not a block of this structure")
        return key

    def __contains__(self, subset):
        try:
            self._key(subset)
        except (KeyError, ValueError, TypeError):
            return False
        return True

    def rank(self, subset):
        """Rank of the block for ``subset``."""
        start, stop = self._offsets[self._key(subset)]
        return stop - start

    def columns(self, subset):
        """Column slice of ``subset``'s block in the loading matrix."""
        start, stop = self._offsets[self._key(subset)]
        return slice(start, stop)

    def level(self, subset):
        """``"global"``, ``"partial"`` or ``"specific"``."""
        size = len(self._key(subset))
        if size == self._n_modalities:
            return "global"
        return "specific" if size == 1 else "partial"

    def label(self, subset):
        """A readable name such as ``"{0,2}"`` or ``"{ehr,labs}"``."""
        return subset_label(self._key(subset), self._names)

    def modality_label(self, m):
        """Name of modality ``m`` (its index as a string when unnamed)."""
        return self._names[m] if self._names else str(m)

    def subsets_of(self, m):
        """The subsets (in column order) whose blocks load on modality ``m``."""
        return [s for s, _ in self._blocks if m in s]

    def modality_rank(self, m):
        """Number of factors loading on modality ``m`` (columns of its loading rows)."""
        return sum(r for s, r in self._blocks if m in s)

    def modality_columns(self, m):
        """Integer column indices of the blocks that load on modality ``m``."""
        return np.concatenate(
            [np.arange(*self._offsets[s]) for s in self.subsets_of(m)]
        ).astype(int)

    def rows(self, n_features):
        """Row slices of the modalities in the stacked loadings, for widths ``n_features``."""
        n_features = np.asarray(n_features, dtype=int).reshape(-1)
        if n_features.size != self._n_modalities:
            raise ValueError(
                f"rows needs {self._n_modalities} modality widths, got {n_features.size}"
            )
        return row_slices(n_features)

    def iter_blocks(self, n_features):
        """Iterate over the non-zero blocks ``(m, subset, rows, columns)`` of the loadings.

        ``loadings[rows, columns]`` is ``B_{m,S}`` for modality ``m`` and block ``subset``;
        modalities are visited in order and, within one, blocks in column order.
        """
        for m, rows in enumerate(self.rows(n_features)):
            for subset in self.subsets_of(m):
                yield m, subset, rows, self.columns(subset)

    def mask(self, n_features):
        """Boolean ``(d, K)`` zero pattern for modality widths ``n_features``.

        ``mask[i, k]`` is True when the entry may be non-zero: row ``i`` belongs to a
        modality in the subset of column ``k``'s block.
        """
        n_features = np.asarray(n_features, dtype=int).reshape(-1)
        if n_features.size != self._n_modalities:
            raise ValueError(
                f"mask needs {self._n_modalities} modality widths, got {n_features.size}"
            )
        rows = np.repeat(np.arange(self._n_modalities), n_features)
        member = np.zeros((self._n_modalities, self.n_components), dtype=bool)
        for s, _ in self._blocks:
            member[np.asarray(s)[:, None], np.arange(*self._offsets[s])[None, :]] = True
        return member[rows]

    def bind(self, names):
        """Re-express this structure for data whose modalities are ``names`` (in order).

        A structure given by names is re-indexed to the data's order; an index-based
        structure gets the names attached (its number of modalities must match).
        """
        names = tuple(names)
        if self._names is None:
            if len(names) != self._n_modalities:
                raise ValueError(
                    f"the structure has {self._n_modalities} modalities, the data have "
                    f"{len(names)} ({names!r})"
                )
            return Structure(self._blocks, modalities=names)
        unknown = [m for m in self._names if m not in names]
        if unknown:
            raise ValueError(
                f"the structure names modality {unknown[0]!r}, which is not in the data "
                f"({names!r})"
            )
        blocks = {tuple(self._names[m] for m in s): r for s, r in self._blocks}
        return Structure(blocks, modalities=names)

    def to_frame(self):
        """A pandas DataFrame with one row per block (subset, level, rank, columns)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "structure": [self.label(s) for s in self.subsets],
                "level": [self.level(s) for s in self.subsets],
                "rank": self.ranks,
                "first_column": [self._offsets[s][0] for s in self.subsets],
            }
        )

    # -- protocol ------------------------------------------------------------------------------
    def __iter__(self):
        return iter(self._blocks)

    def __len__(self):
        return len(self._blocks)

    def __eq__(self, other):
        if not isinstance(other, Structure):
            return NotImplemented
        return (self._blocks, self._n_modalities, self._names) == (
            other._blocks, other._n_modalities, other._names)

    def __hash__(self):
        return hash((self._blocks, self._n_modalities, self._names))

    def __setattr__(self, name, value):
        if hasattr(self, "_offsets"):
            raise AttributeError("Structure is immutable")
        object.__setattr__(self, name, value)

    def __reduce__(self):
        return (Structure, (self._blocks, self._names or self._n_modalities))

    def __repr__(self):
        body = ", ".join(f"{self.label(s)}: {r}" for s, r in self._blocks)
        return f"Structure({body}; M={self._n_modalities}, K={self.n_components})"


class JointShortfall(NamedTuple):
    """A modality, or a pair of modalities sharing a block, observed in too few samples.

    ``modalities`` is ``(m, m)`` for a modality's own count, ``(m, l)`` with ``m < l`` for
    a pair; ``needed`` is the number of factors carried there (by the modality, or by the
    blocks containing both, listed in ``blocks``): more than ``needed`` samples are needed.
    """

    modalities: tuple
    count: int
    needed: int
    blocks: tuple


def check_joint_counts(joint_counts, n_modalities):
    """``joint_counts`` as an ``(M, M)`` int array, or raise ValueError.

    Entry ``(m, l)`` counts the samples that observe modalities ``m`` and ``l`` (the
    diagonal: those that observe ``m``): non-negative integers, symmetric, and no pair
    observed together more often than either modality is observed.
    """
    M = int(n_modalities)
    N = np.asarray(joint_counts)
    if N.shape != (M, M):
        raise ValueError(f"joint_counts must have shape ({M}, {M}) (one count per pair of "
                         f"modalities), got shape {N.shape}")
    if not (np.issubdtype(N.dtype, np.number) and np.all(np.isfinite(N))
            and np.all(N >= 0) and np.all(N == np.round(N))):
        raise ValueError("joint_counts must hold non-negative integers (sample counts)")
    N = N.astype(np.int64)
    if not np.array_equal(N, N.T):
        raise ValueError("joint_counts must be symmetric")
    diag = np.diagonal(N)
    over = np.argwhere(N > np.minimum(diag[:, None], diag[None, :]))
    if over.size:
        m, l = (int(i) for i in over[0])
        k = m if N[m, l] > diag[m] else l
        raise ValueError(f"joint_counts[{m}, {l}] = {N[m, l]} exceeds joint_counts[{k}, {k}] "
                         f"= {diag[k]}: the samples observing both modalities are among "
                         "those observing each")
    return N


def joint_shortfalls(structure, joint_counts):
    """Where ``structure`` asks more of the observation pattern than it holds.

    A modality ``m`` needs more observing samples than the ``r_m`` factors it carries;
    two modalities sharing a block need more samples observing both than the factors of
    the blocks that contain both (their cross-covariance, estimated from those samples,
    is what separates the shared blocks from the rest). Modalities come first, then the
    pairs, in index order.

    Returns
    -------
    list of JointShortfall
    """
    N = check_joint_counts(joint_counts, structure.n_modalities)
    M = structure.n_modalities
    out = []
    for m in range(M):
        r = structure.modality_rank(m)
        if N[m, m] <= r:
            out.append(JointShortfall((m, m), int(N[m, m]), r, tuple(structure.subsets_of(m))))
    for m, l in combinations(range(M), 2):
        blocks = tuple(s for s in structure.subsets if m in s and l in s)
        r = sum(structure.rank(s) for s in blocks)
        if blocks and N[m, l] <= r:
            out.append(JointShortfall((m, l), int(N[m, l]), r, blocks))
    return out


def describe_shortfall(shortfall, structure):
    """One sentence on a :class:`JointShortfall`, naming the blocks and modalities."""
    m, l = shortfall.modalities
    names = structure.modality_names
    blocks = ", ".join(structure.label(s) for s in shortfall.blocks)
    if m == l:
        return (f"{modality_description(m, names)} is observed in {shortfall.count} samples "
                f"but carries {shortfall.needed} factors ({blocks}): it needs more than "
                f"{shortfall.needed} observing samples")
    pair = f"{modality_description(m, names)} and {modality_description(l, names)}"
    block = structure.label(shortfall.blocks[-1])  # the most specific block sharing them
    if shortfall.count == 0:
        return (f"block {block} needs samples that observe {pair} together, but no sample does "
                "(0 joint samples), so the covariance between them is never observed")
    return (f"block {block} needs more than {shortfall.needed} samples that observe {pair} "
            f"together (the blocks containing both, {blocks}, carry {shortfall.needed} "
            f"factors), but only {shortfall.count} do")
