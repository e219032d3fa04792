"""Groups of score columns: one per structure block (or given explicitly)."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from hcl_stats._structure import Structure, row_slices


def resolve_groups(groups, n_columns=None):
    """Return ``(keys, labels, index_arrays)`` for a group specification.

    Parameters
    ----------
    groups : Structure, dict or sequence of int
        A :class:`~hcl_stats.Structure` (one group per block, keys are the subsets), a dict
        mapping labels to column indices, or a sequence of group sizes (consecutive columns;
        keys are ``0, 1, ...``).
    n_columns : int, optional
        Number of score columns; the groups must partition ``range(n_columns)``.
    """
    if hasattr(groups, "fit") and hasattr(groups, "transform"):
        raise TypeError("groups must be a Structure, not a fitted model: pass "
                        "model.structure_ (and model.transform(X) as the scores)")
    if isinstance(groups, Structure):
        keys = groups.subsets
        labels = [groups.label(s) for s in keys]
        index = [np.arange(groups.columns(s).start, groups.columns(s).stop) for s in keys]
    elif isinstance(groups, dict):
        keys = list(groups)
        labels = [str(k) for k in keys]
        index = [np.atleast_1d(np.asarray(v, dtype=int)) for v in groups.values()]
    else:
        try:
            sizes = list(groups)
        except TypeError:
            raise TypeError(f"groups must be a Structure, a dict of label -> columns or a "
                            f"sequence of group sizes, got {type(groups).__name__}") from None
        if not sizes or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1
                            for s in sizes):
            raise ValueError(f"group sizes must be positive integers, got {sizes!r}")
        keys = list(range(len(sizes)))
        labels = [f"g{k}" for k in keys]
        index = [np.arange(sl.start, sl.stop) for sl in row_slices(sizes)]
    if not keys:
        raise ValueError("groups is empty")
    allcols = np.concatenate(index)
    total = int(allcols.max()) + 1 if n_columns is None else int(n_columns)
    if len(allcols) != total or set(allcols.tolist()) != set(range(total)):
        raise ValueError(f"the groups must partition the {total} score columns exactly once "
                         f"(got columns {sorted(allcols.tolist())})")
    return keys, labels, index
