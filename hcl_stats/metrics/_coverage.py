"""Calibration of the posterior scores: coverage of the true factors by posterior intervals."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.utils.validation import check_is_fitted

from hcl_stats.metrics._recovery import block_rotation

__all__ = ["interval_coverage"]


def interval_coverage(model, X, W_true, Z_true, *, level=0.95):
    """Share of the true factor scores inside the model's posterior intervals.

    The model identifies each block of loadings only up to a rotation within it, so each
    fitted block is first rotated onto the true one by orthogonal Procrustes (``R_S``
    minimising ``||W_S R_S - W_true,S||_F``, :func:`block_rotation`). With
    ``R`` the block-diagonal rotation, each sample's posterior ``N(m, C)`` of
    ``model.transform`` (from its observed entries) becomes ``N(R^T m, R^T C R)`` in the
    truth's basis, and the interval ``R^T m +- q sqrt(diag(R^T C R))``, ``q`` the normal
    quantile of ``(1 + level) / 2``, is checked against the true score. A calibrated model
    covers a share ``level`` of them, for factors of modalities the sample observes and of
    ones it does not (whose intervals are the prior's, ``+- q``).

    Parameters
    ----------
    model : fitted BlockFactorModel
        E.g. a fitted :class:`hcl_stats.HCL`, with the structure of the truth.
    X : list, tuple or dict of array-like of shape (n_samples, p_m)
        The samples, with missing modalities or values as ``model.transform`` takes them.
    W_true : array-like of shape (d, K)
        True loadings, columns laid out as ``model.structure_``.
    Z_true : array-like of shape (n_samples, K)
        True factor scores of the samples of ``X``.
    level : float, default=0.95
        Nominal coverage of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per block of ``model.structure_`` (its label) and a last row ``"all"``;
        columns ``coverage`` (over every sample and factor of the block),
        ``coverage_observed`` and ``coverage_unobserved`` (samples that observe at least
        one entry of a modality of the block, and those that observe none; NaN when there
        are none), ``n_observed`` and ``n_unobserved`` (the numbers of intervals behind
        them: samples times factors).

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import HCL, Structure
    >>> from hcl_stats.datasets import make_hierarchical, mask_modalities
    >>> from hcl_stats.metrics import interval_coverage
    >>> st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    >>> X, truth = make_hierarchical(3000, [6, 8], st, noise_variance=0.5,
    ...                              random_state=0, return_truth=True)
    >>> model = HCL(st).fit([x[:2000] for x in X])
    >>> test = mask_modalities([x[2000:] for x in X], 0.3, modalities=[1], random_state=0)
    >>> table = interval_coverage(model, test, truth.W, truth.Z[2000:])
    >>> bool(abs(table.loc["all", "coverage"] - 0.95) < 0.02)
    True
    """
    check_is_fitted(model, "loadings_")
    if not isinstance(level, Real) or isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    W_true = np.asarray(W_true, dtype=np.float64)
    if W_true.shape != model.loadings_.shape:
        raise ValueError(f"W_true has shape {W_true.shape}; the model's loadings have "
                         f"{model.loadings_.shape} (the truth must have the model's structure)")
    _, post = model._posterior(X, covariance=True)
    Z_true = np.asarray(Z_true, dtype=np.float64)
    if Z_true.shape != post.mean.shape:
        raise ValueError(f"Z_true has shape {Z_true.shape}; X has {post.mean.shape[0]} "
                         f"samples and the model {post.mean.shape[1]} factors")
    structure = model.structure_
    R = block_rotation(model.loadings_, W_true, structure)
    mean = post.mean @ R
    std = np.sqrt(np.diagonal(R.T @ post.covariance @ R, axis1=1, axis2=2))[post.group]
    covered = np.abs(mean - Z_true) <= norm.ppf(0.5 + level / 2) * std
    seen = np.zeros(covered.shape, dtype=bool)
    labels = []
    for subset in structure.subsets:
        seen[:, structure.columns(subset)] = post.observed[:, list(subset)].any(
            axis=1)[:, None]
        labels.append(structure.label(subset))
    columns = [structure.columns(s) for s in structure.subsets] + [slice(None)]
    table = pd.DataFrame([_coverage_row(covered[:, c], seen[:, c]) for c in columns],
                         index=pd.Index(labels + ["all"], name="structure"))
    return table


def _coverage_row(covered, seen):
    n_seen, n_unseen = int(seen.sum()), int((~seen).sum())
    return {"coverage": float(covered.mean()),
            "coverage_observed": float(covered[seen].mean()) if n_seen else np.nan,
            "coverage_unobserved": float(covered[~seen].mean()) if n_unseen else np.nan,
            "n_observed": n_seen, "n_unobserved": n_unseen}
