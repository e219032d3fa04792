"""Recovery metrics invariant to the model's rotations (one per block)."""

from __future__ import annotations

import numpy as np

from hcl_stats._numerics.linalg import orthonormal_basis, procrustes_rotation
from hcl_stats._structure import Structure, row_slices

__all__ = [
    "sin_theta_distance",
    "align_loadings",
    "block_sin_theta",
    "gram_errors",
    "recovery_table",
    "block_rotation",
]


def sin_theta_distance(A, B, *, norm="spectral"):
    """Sine of the principal angles between the column spaces of ``A`` and ``B``.

    ``||(I - P_B) Q_A||`` with ``Q_A`` an orthonormal basis of ``span(A)`` and ``P_B`` the
    projector on ``span(B)``: 0 for equal spaces, 1 when some direction of ``A`` is
    orthogonal to ``span(B)`` (also when ``B`` is zero). Invariant to any invertible
    transformation of the columns of either argument.

    Parameters
    ----------
    A, B : ndarray of shape (p, r_A), (p, r_B)
    norm : {"spectral", "fro"}, default="spectral"
        Largest sine, or the root mean square of the sines (Frobenius norm divided by
        ``sqrt(rank A)``), both in [0, 1].
    """
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B need the same number of rows, got {A.shape} and {B.shape}")
    QA = orthonormal_basis(A)
    if QA.shape[1] == 0:
        raise ValueError("A has no column space (all zero)")
    QB = orthonormal_basis(B)
    residual = QA - QB @ (QB.T @ QA)
    if norm == "spectral":
        return float(min(np.linalg.norm(residual, 2), 1.0))
    if norm == "fro":
        return float(min(np.linalg.norm(residual) / np.sqrt(QA.shape[1]), 1.0))
    raise ValueError(f"norm must be 'spectral' or 'fro', got {norm!r}")


def align_loadings(W_hat, W_true, *, structure_hat=None, structure_true=None):
    """Express estimated loadings in the column layout of the truth.

    When both structures are given and equal, the columns already correspond block by block
    (and all block metrics are invariant to the within-block rotations): ``W_hat`` is
    returned. Otherwise (a baseline with another structure, or a different ``K``) the rule
    of the comparisons (docs/baselines.md) is used: one global orthogonal Procrustes
    rotation of ``W_hat`` onto ``W_true`` (zero-padded when ``K`` differs).
    """
    if structure_hat is not None and structure_hat == structure_true:
        return np.asarray(W_hat, dtype=float)
    return np.asarray(W_hat, float) @ procrustes_rotation(np.asarray(W_hat, float),
                                                         np.asarray(W_true, float))


def block_rotation(W, W_ref, structure):
    """Block-diagonal orthogonal ``R`` minimising ``||W R - W_ref||_F`` block by block.

    Parameters
    ----------
    W, W_ref : ndarray of shape (d, K)
        Loadings with the columns of ``structure`` (e.g. a refit and the reference fit).
    structure : Structure
        Column blocks; ``R`` only rotates within a block.

    Returns
    -------
    R : ndarray of shape (K, K)
    """
    K = structure.n_components
    R = np.zeros((K, K))
    for s in structure.subsets:
        c = structure.columns(s)
        R[c, c] = procrustes_rotation(W[:, c], W_ref[:, c])
    return R


def block_sin_theta(W_true, W_hat, structure, n_features, *, structure_hat=None,
                    norm="spectral"):
    """Sin-theta distance between true and estimated ``B_{m,S}`` for every block.

    Returns a dict ``{(m, subset): distance}`` over the blocks of the true ``structure``.
    See :func:`align_loadings` for how estimates with another structure are matched.
    """
    V = align_loadings(W_hat, W_true, structure_hat=structure_hat, structure_true=structure)
    rows = row_slices(n_features)
    out = {}
    for subset in structure.subsets:
        cols = structure.columns(subset)
        for m in subset:
            out[(m, subset)] = sin_theta_distance(W_true[rows[m], cols], V[rows[m], cols],
                                                  norm=norm)
    return out


def _gram_diff(A, B):
    """``||A A^T - B B^T||_F`` without forming the p x p matrices."""
    a = np.sum((A.T @ A) ** 2)
    b = np.sum((B.T @ B) ** 2)
    c = np.sum((A.T @ B) ** 2)
    return float(np.sqrt(max(a + b - 2.0 * c, 0.0)))


def gram_errors(W_true, W_hat, structure, n_features):
    """The Gram errors of the recovery comparisons (docs/baselines.md).

    After one global orthogonal Procrustes alignment of ``W_hat`` to ``W_true``:
    ``||B_{m,S} B_{m,S}^T - B^_{m,S} B^_{m,S}^T||_F`` for each modality and block, and the
    overall ``||W W^T - W^ W^^T||_F`` (which needs no alignment).

    Returns
    -------
    blocks : dict ``{(m, subset): error}``
    overall : float
    """
    V = align_loadings(W_hat, W_true)
    rows = row_slices(n_features)
    blocks = {}
    for subset in structure.subsets:
        cols = structure.columns(subset)
        for m in subset:
            blocks[(m, subset)] = _gram_diff(W_true[rows[m], cols], V[rows[m], cols])
    return blocks, _gram_diff(np.asarray(W_true, float), np.asarray(W_hat, float))


def recovery_table(model, truth, *, norm="spectral"):
    """Tidy table of recovery metrics for a fitted model against simulated truth.

    Parameters
    ----------
    model : fitted estimator
        Any estimator of the package (needs ``loadings_``, ``structure_`` and
        ``n_features_per_modality_``).
    truth : HierarchicalTruth
        As returned by :func:`hcl_stats.datasets.make_hierarchical` with
        ``return_truth=True`` (needs ``W``, ``structure``, ``n_features``).

    Returns
    -------
    pandas.DataFrame
        Columns ``modality, structure, level, metric, value``; metrics ``sin_theta`` and
        ``gram_error`` per block, and ``gram_error`` overall (``modality == "all"``,
        ``level == "overall"``).
    """
    import pandas as pd

    st: Structure = truth.structure
    n_features = np.asarray(truth.n_features)
    if not np.array_equal(np.asarray(model.n_features_per_modality_), n_features):
        raise ValueError(
            f"model widths {list(model.n_features_per_modality_)} differ from the truth's "
            f"{list(n_features)}"
        )
    model_st = model.structure_
    if model_st.modality_names is not None and st.modality_names is None:
        st_cmp = st.bind(model_st.modality_names)
    else:
        st_cmp = st
    sin = block_sin_theta(truth.W, model.loadings_, st, n_features, structure_hat=(
        model_st if model_st == st_cmp else None), norm=norm)
    gram, overall = gram_errors(truth.W, model.loadings_, st, n_features)
    rows = []
    for (m, subset), value in sin.items():
        common = dict(modality=st.modality_label(m), structure=st.label(subset),
                      level=st.level(subset))
        rows.append({**common, "metric": "sin_theta", "value": value})
        rows.append({**common, "metric": "gram_error", "value": gram[(m, subset)]})
    rows.append(dict(modality="all", structure="all", level="overall", metric="gram_error",
                     value=overall))
    return pd.DataFrame(rows, columns=["modality", "structure", "level", "metric", "value"])
