"""Matching the samples of several modalities by their labels.

Modalities given as DataFrames, pandas Series of rows or AnnData objects carry sample labels
(their index, or ``obs_names``); arrays do not. Labelled modalities are matched by label and
reordered to a reference order (a MuData object's ``obs_names``, otherwise the first labelled
modality's); unlabelled ones pair by position with that order. Where missing modalities are
allowed, labelled modalities holding different samples are outer-joined: the samples are the
union of the labels, and a sample absent from a modality is a row of NaN there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["check_unique_labels", "align_samples", "as_labels", "union_labels"]

_SHOWN = 3  # labels quoted in a message


def _quote(labels):
    labels = list(labels)
    shown = ", ".join(repr(v) for v in labels[:_SHOWN])
    return f"{shown}, ..." if len(labels) > _SHOWN else shown


def check_unique_labels(labels, where):
    """Raise ValueError naming ``where`` when sample labels repeat."""
    if labels.has_duplicates:
        repeated = labels[labels.duplicated()].unique()
        raise ValueError(
            f"{where} has {len(repeated)} duplicated sample label(s) ({_quote(repeated)}); "
            "samples are matched across modalities by label, so labels must be unique"
        )


def _unmatched_message(labels, where, reference, ref_where, outer=False):
    extra = labels.difference(reference, sort=False)
    absent = reference.difference(labels, sort=False)
    parts = []
    if len(extra):
        parts.append(f"{len(extra)} of its {len(labels)} sample labels are not in {ref_where} "
                     f"({_quote(extra)})")
    if len(absent):
        parts.append(f"{len(absent)} of the {len(reference)} labels of {ref_where} are not in "
                     f"it ({_quote(absent)})")
    if outer:  # only labels outside the MuData object's obs_names are refused then
        return (f"{where}: {' and '.join(parts[:1])}; every modality's samples must be among "
                "the MuData object's obs_names")
    return (
        f"{where}: {' and '.join(parts)}; {len(extra) + len(absent)} unmatched sample "
        "label(s). Samples are matched across modalities by index label, and this estimator "
        "needs every modality to hold the same samples (select the common samples, e.g. "
        "with index.intersection; HCL and ConcatSVD fit modalities missing for some samples)"
    )


def union_labels(labels, reference=None):
    """The samples of an outer join: ``reference`` (default: the first labels), then the
    labels of the other modalities not seen yet, in their order."""
    present = [lab for lab in labels if lab is not None]
    union = present[0] if reference is None else reference
    for lab in present:
        if not lab.equals(union):
            union = union.append(lab.difference(union, sort=False))
    return union


def _reindexed(array, order):
    """Rows ``order`` of ``array``, NaN rows where ``order`` is -1 (a new array)."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    out = np.full((len(order), array.shape[1]), np.nan, dtype=array.dtype)
    hit = order >= 0
    out[hit] = array[order[hit]]
    return out


def align_samples(arrays, labels, wheres, reference=None, outer=False):
    """Reorder labelled modalities to one sample order; check the unlabelled ones' lengths.

    Parameters
    ----------
    arrays : list of array or None
        The modalities (``None``: not observed, skipped).
    labels : list of pandas.Index or None
        Sample labels of each modality (``None`` for arrays).
    wheres : list of str
        How messages name each modality.
    reference : pandas.Index, default=None
        The sample order to align to (default: that of the first labelled modality).
    outer : bool, default=False
        Outer-join labelled modalities that hold different samples: the samples are the
        union of the labels (:func:`union_labels`; the reference's alone when it is given,
        as for MuData) and a sample absent from a modality is a row of NaN there.

    Returns
    -------
    arrays : list of array or None
        Labelled modalities in the reference order (a reordered copy where the order
        differed, NaN rows for absent samples, the caller's array otherwise).
    sample_index : pandas.Index or None
        The samples' labels, ``None`` when no modality has labels.

    Raises
    ------
    ValueError
        A duplicated label, labels present in only some modalities (with their count), or
        an unlabelled modality with another number of samples.
    """
    present = [m for m, a in enumerate(arrays) if a is not None]
    labelled = [m for m in present if labels[m] is not None]
    ref_where = "the MuData object's obs_names"
    given = reference is not None
    for m in labelled:
        check_unique_labels(labels[m], wheres[m])
    if reference is None and labelled:
        reference, ref_where = labels[labelled[0]], wheres[labelled[0]]
        if outer:
            reference = union_labels([labels[m] for m in labelled])
            ref_where = "the union of the modalities' samples"
    if reference is not None:
        check_unique_labels(reference, ref_where)
    out = list(arrays)
    for m in labelled:
        if labels[m].equals(reference):
            continue
        order = labels[m].get_indexer(reference)
        # every label of the modality must be in the reference (always true for the union)
        unplaced = len(labels[m]) != int(np.count_nonzero(order >= 0))
        if unplaced or (not outer and (order < 0).any()):
            raise ValueError(_unmatched_message(labels[m], wheres[m], reference, ref_where,
                                                outer=outer and given))
        out[m] = arrays[m][order] if (order >= 0).all() else \
            _reindexed(arrays[m], order)
    if reference is not None:
        n = len(reference)
    elif present:
        n, ref_where = arrays[present[0]].shape[0], wheres[present[0]]
    for m in present:
        if out[m].shape[0] != n:
            raise ValueError(
                f"{wheres[m]} has {out[m].shape[0]} samples but {ref_where} has {n}; all "
                "modalities must be measured on the same samples"
                + (" (arrays pair by position with the labelled modalities' samples)"
                   if reference is not None else "")
            )
    return out, reference


def as_labels(values):
    """Sample labels as a pandas Index (for MuData ``obs_names`` and the like)."""
    return values if isinstance(values, pd.Index) else pd.Index(np.asarray(values))
