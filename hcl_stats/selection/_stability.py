"""Stability of the selected structure under subsampling."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.selection import select_structure
from hcl_stats._hcl import HCL
from hcl_stats._input.params import check_positive_float, check_positive_int
from hcl_stats._input.validation import check_blocks
from hcl_stats._numerics.random import as_generator
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._structure import Structure, row_slices, subset_label

__all__ = ["StabilityResult", "structure_stability"]


@dataclass(frozen=True, eq=False)
class StabilityResult:
    """Outcome of :func:`structure_stability`.

    Attributes
    ----------
    structure : Structure
        The structure selected on all rows.
    subsets : pandas.DataFrame
        One row per subset selected on the full data or in any subsample: ``subset``,
        ``level``, ``rank_full`` (0 when not selected on the full data), ``frequency``
        (fraction of subsamples selecting it), ``modal_rank`` (most frequent rank when
        selected) and ``rank_k`` columns (fraction of subsamples selecting it with rank
        ``k``).
    structures : list of Structure
        The subsample structures.
    exact_frequency : float
        Fraction of subsamples selecting exactly ``structure``.
    blocks : pandas.DataFrame or None
        With ``loadings=True``, one row per modality and block of ``structure``:
        ``modality``, ``subset``, ``rank``, and the largest principal angle (degrees)
        between the subsample and full-data loadings ``B_{m,S}``: ``angle_median``,
        ``angle_q90``, ``angle_max``; None otherwise.
    """

    structure: Structure
    subsets: pd.DataFrame
    structures: list
    exact_frequency: float
    blocks: pd.DataFrame = None


def _select(blocks, n_features, names, max_rank, alpha):
    S, _, n = sample_covariance(blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return select_structure(S, n_features, n_samples=n, max_rank=max_rank, names=names,
                                alpha=alpha).structure


def _block_loadings(blocks, names, structure):
    """``B_{m,S}`` of an HCL fit with ``structure``, keyed by ``(m, S)``, weighted as
    ``HCL()`` fits the structure it selects (``scale="modality"``; in the data's units, one
    noise variance for modalities of different scales would not fit them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = HCL(structure, scale="modality").fit(dict(zip(names, blocks)) if names
                                                     else blocks)
    rows = row_slices([b.shape[1] for b in blocks])
    return {(m, s): model.loadings_[rows[m], structure.columns(s)]
            for s in structure.subsets for m in s}


def _subset_table(full, structures, names, M):
    """How often, and with which rank, each subset is selected."""
    seen = set(full.subsets)
    for st in structures:
        seen.update(st.subsets)
    max_r = max([r for st in structures + [full] for r in st.ranks])
    n_resamples = len(structures)
    rows_out = []
    for s in sorted(seen, key=lambda s: (-len(s), s)):
        ranks = [dict(st.blocks).get(s, 0) for st in structures]
        chosen = [r for r in ranks if r > 0]
        row = {
            "subset": subset_label(s, names),
            "level": "global" if len(s) == M else ("specific" if len(s) == 1 else "partial"),
            "rank_full": dict(full.blocks).get(s, 0),
            "frequency": len(chosen) / n_resamples,
            "modal_rank": int(np.bincount(chosen).argmax()) if chosen else 0,
        }
        for r in range(1, max_r + 1):
            row[f"rank_{r}"] = sum(1 for x in ranks if x == r) / n_resamples
        rows_out.append(row)
    return pd.DataFrame(rows_out)


def _angle_table(full, angles, names):
    """Spread of the largest principal angle of each block over the subsamples."""
    return pd.DataFrame([
        {"modality": names[m] if names else m, "subset": subset_label(s, names),
         "rank": full.rank(s), "angle_median": float(np.median(v)),
         "angle_q90": float(np.quantile(v, 0.9)), "angle_max": float(np.max(v))}
        for (m, s), v in angles.items()])


def structure_stability(X, *, n_resamples=50, fraction=0.8, max_rank=None, alpha=0.01,
                        loadings=True, random_state=None):
    """How stable is the selected structure? Repeat the selection on subsamples.

    Each of ``n_resamples`` subsamples draws ``fraction * n`` rows without replacement
    (subsampling rather than the bootstrap: repeated rows would widen the noise spectrum
    beyond the Marchenko-Pastur edge the tests use and create spurious factors). On each,
    :func:`select_structure` is run, and, when ``loadings``, :class:`hcl_stats.HCL` is fitted
    with the structure selected on the full data (weighted as ``HCL()`` fits it,
    ``scale="modality"``), so every block can be compared with its full-data estimate by
    principal angles.

    Parameters
    ----------
    X : list, tuple or dict of array-like of shape (n_samples, p_m)
        The modalities.
    n_resamples : int, default=50
        Number of subsamples.
    fraction : float, default=0.8
        Fraction of the rows in each subsample, in (0, 1).
    max_rank, alpha
        Passed to :func:`select_structure`.
    loadings : bool, default=True
        Also measure the spread of each block's loadings (one HCL fit per subsample).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the subsamples (``None``: a fixed default seed).

    Returns
    -------
    result : StabilityResult

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.datasets import make_hierarchical
    >>> from hcl_stats.selection import structure_stability
    >>> truth = Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 1})
    >>> X = make_hierarchical(600, [20, 20, 20], truth, noise_variance=0.5,
    ...                       singular_values=(1, 2), random_state=0)
    >>> res = structure_stability(X, n_resamples=5, loadings=False, random_state=0)
    >>> res.structure == truth, res.exact_frequency
    (True, 1.0)
    """
    blocks, names = check_blocks(X)
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    fraction = check_positive_float(fraction, "fraction")
    if not fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    rng = as_generator(random_state)
    n = blocks[0].shape[0]
    n_sub = int(round(fraction * n))
    if n_sub < 3:
        raise ValueError(f"fraction={fraction} of {n} samples leaves fewer than 3 rows")
    n_features = [b.shape[1] for b in blocks]

    full = _select(blocks, n_features, names, max_rank, alpha)
    ref = _block_loadings(blocks, names, full) if loadings else {}
    structures, angles = [], {key: [] for key in ref}
    for _ in range(n_resamples):
        idx = np.sort(rng.choice(n, size=n_sub, replace=False))
        sub = [b[idx] for b in blocks]
        structures.append(_select(sub, n_features, names, max_rank, alpha))
        if loadings:
            est = _block_loadings(sub, names, full)
            for key, B in ref.items():
                theta = scipy.linalg.subspace_angles(B, est[key])
                angles[key].append(float(np.degrees(theta.max())))
    return StabilityResult(
        full, _subset_table(full, structures, names, len(blocks)), structures,
        float(np.mean([st == full for st in structures])),
        _angle_table(full, angles, names) if loadings else None)
