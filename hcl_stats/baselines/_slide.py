"""SLIDE: Structural Learning and Integrative DEcomposition (Gaynanova and Li, 2019)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.init import spectral_init
from hcl_stats._input.params import check_positive_float, check_positive_int
from hcl_stats._input.validation import check_structure
from hcl_stats._models.data_model import DataFactorModel, DataFit
from hcl_stats._numerics.linalg import lapack_svd, singular_values, truncated_svd
from hcl_stats._numerics.random import as_generator
from hcl_stats._structure import Structure, row_slices
from hcl_stats.baselines._common import (
    RowCompression,
    block_scales,
    gavish_donoho_rank,
)

__all__ = ["SLIDE", "fit_slide", "SLIDEResult"]


@dataclass(frozen=True)
class SLIDEResult:
    """What :func:`fit_slide` returns.

    Attributes
    ----------
    scores : ndarray of shape (n, K)
        Orthonormal ``U``.
    loadings : ndarray of shape (d, K)
        ``V``, zero outside the structure's mask.
    objective : float
        ``||X - U V^T||_F^2``.
    n_iter : int
    converged : bool
    """

    scores: np.ndarray
    loadings: np.ndarray
    objective: float
    n_iter: int
    converged: bool


def _polar(Y):
    """Orthonormal polar factor ``P Q^T`` of ``Y = P S Q^T`` (the maximiser of
    ``trace(U^T Y)`` over ``U^T U = I``)."""
    P, _, Qt = lapack_svd(Y)
    return P @ Qt


def _structured_start(X, structure, n_features, random_state):
    """Scores whose loadings already respect the zero pattern.

    The top-``K`` right singular pairs of ``X`` are rotated block by block with the
    package's structured spectral initialiser (peeling from the most specific subsets to
    the global one, :func:`hcl_stats._estimation.init.spectral_init`), giving loadings ``W`` with the
    right zero pattern; the start is the polar factor of ``X W``. The plain top-``K`` left
    singular vectors mix the blocks arbitrarily and often lead the alternating updates to a
    poor local optimum.
    """

    K = structure.n_components
    _, s, Vt = truncated_svd(X, K, random_state=random_state)
    W = spectral_init(s ** 2, Vt.T, structure, n_features)
    return _polar(X @ W)


def fit_slide(X, structure, n_features, *, init="structured", max_iter=1000, tol=1e-7,
              random_state=0):
    """SLIDE for a fixed binary structure: ``min ||X - U V^T||_F^2`` over ``U^T U = I`` and
    ``V`` zero outside ``mask``.

    Alternates the two exact block updates: ``V = mask * (X^T U)`` (least squares given an
    orthonormal ``U``) and ``U`` = polar factor of ``X V`` (orthogonal Procrustes given
    ``V``). The objective never increases; iterations stop when it decreases by less than
    ``tol * ||V||_F^2``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Centred (scaled) stacked modalities.
    structure : Structure
        The binary pattern; ``V`` is zero outside ``structure.mask(n_features)``.
    n_features : sequence of int
        Modality widths.
    init : {"structured", "svd"} or ndarray of shape (n, K), default="structured"
        Starting scores: :func:`_structured_start`, the top-``K`` left singular vectors of
        ``X``, or given.
    max_iter : int, default=1000
    tol : float, default=1e-7
    random_state : int, default=0
        Seed of the Lanczos start vector of the default start.

    Returns
    -------
    SLIDEResult
    """
    mask = structure.mask(n_features)
    K = structure.n_components
    if isinstance(init, str) and init == "structured":
        U = _structured_start(X, structure, n_features, random_state)
    elif isinstance(init, str) and init == "svd":
        U = truncated_svd(X, K, random_state=random_state)[0]
    else:
        U = np.asarray(init, dtype=np.float64)
    sq = float(np.sum(X * X))
    obj_old = np.inf
    converged = False
    n_iter = 0
    V = np.zeros(mask.shape)
    for n_iter in range(1, max_iter + 1):
        V = (X.T @ U) * mask
        vv = float(np.sum(V * V))
        obj = sq - vv  # ||X - U V^T||^2 at the optimal V for this U
        if obj_old - obj <= tol * max(vv, 1e-300):
            converged = True
            break
        obj_old = obj
        U = _polar(X @ V)
    return SLIDEResult(U, V, float(obj), n_iter, converged)


def _group_lasso_path(X, n_features, r_max, lambdas, *, max_inner, tol, random_state):
    """Binary patterns (M x r_max) along SLIDE's group-lasso path.

    For each ``lambda`` (decreasing, warm-started) alternate
    ``V_{m,k} = (1 - lambda / ||X_m^T u_k||)_+ X_m^T u_k`` (group soft-thresholding of
    each (modality, component) block) and ``U`` = polar factor of ``X V``, which minimise
    ``1/2 ||X - U V^T||_F^2 + lambda sum_{m,k} ||V_{m,k}||_2`` in turn.
    """
    M = len(n_features)
    starts = [rows.start for rows in row_slices(n_features)]
    U = truncated_svd(X, r_max, random_state=random_state)[0]
    row_mod = np.repeat(np.arange(M), n_features)
    patterns = []
    for lam in lambdas:
        obj_old = np.inf
        for _ in range(max_inner):
            C = X.T @ U
            norms = np.sqrt(np.add.reduceat(C * C, starts, axis=0))  # (M, r)
            shrink = np.clip(1.0 - lam / np.maximum(norms, 1e-300), 0.0, None)
            V = C * shrink[row_mod]
            resid = X - U @ V.T
            obj = 0.5 * float(np.sum(resid * resid)) + lam * float(np.sum(norms * shrink))
            if obj_old - obj <= tol * max(abs(obj), 1e-300):
                break
            obj_old = obj
            if not np.any(shrink > 0):
                break
            U = _polar(X @ V)
        patterns.append(shrink > 0)
    return patterns


def _pattern_structure(pattern, M, names):
    """Structure of a binary (M x r) pattern (empty columns dropped), or None when some
    modality carries no component."""
    counts = {}
    for k in range(pattern.shape[1]):
        subset = tuple(int(m) for m in np.flatnonzero(pattern[:, k]))
        if subset:
            counts[subset] = counts.get(subset, 0) + 1
    covered = {m for s in counts for m in s}
    if len(covered) < M:
        return None
    return Structure(counts, modalities=names or M)


def _bcv_error(blocks, structure, row_folds, col_folds, *, max_iter, tol, random_state):
    """3 x 3 bi-cross-validation error of SLIDE with ``structure``.

    For held-out rows ``I`` and columns ``J`` (a third of each modality's features): fit
    SLIDE on ``X[-I, -J]`` (``U``, ``V``); held-out loadings ``V_J = mask * X[-I, J]^T U``;
    held-out scores ``U_I = X[I, -J] V (V^T V)^+``; error ``||X[I, J] - U_I V_J^T||^2``.
    """
    M = len(blocks)
    n_rows = len(row_folds)
    n_cols = len(col_folds[0])
    total = 0.0
    for i in range(n_rows):
        test_rows = row_folds[i]
        train_rows = np.concatenate([row_folds[a] for a in range(n_rows) if a != i])
        for j in range(n_cols):
            train_cols = [np.concatenate([col_folds[m][b] for b in range(n_cols) if b != j])
                          for m in range(M)]
            test_cols = [col_folds[m][j] for m in range(M)]
            if any(structure.modality_rank(m) > len(train_cols[m]) for m in range(M)):
                return np.inf
            mask_te = structure.mask([len(c) for c in test_cols])
            X_tr = np.hstack([b[np.ix_(train_rows, c)] for b, c in zip(blocks, train_cols)])
            res = fit_slide(X_tr, structure, [len(c) for c in train_cols], max_iter=max_iter,
                            tol=tol,
                            random_state=random_state)
            X_hold_cols = np.hstack([b[np.ix_(train_rows, c)] for b, c in
                                     zip(blocks, test_cols)])
            V_J = (X_hold_cols.T @ res.scores) * mask_te
            X_hold_rows = np.hstack([b[np.ix_(test_rows, c)] for b, c in
                                     zip(blocks, train_cols)])
            V = res.loadings
            U_I = X_hold_rows @ V @ np.linalg.pinv(V.T @ V)
            X_test = np.hstack([b[np.ix_(test_rows, c)] for b, c in zip(blocks, test_cols)])
            total += float(np.sum((X_test - U_I @ V_J.T) ** 2))
    return total


class SLIDE(DataFactorModel):
    """Structural Learning and Integrative DEcomposition (Gaynanova and Li 2019).

    The centred modalities, each divided by its Frobenius norm (``scale=True``), are
    concatenated into ``X`` (``n x d``) and decomposed as ``X = U V^T + E`` with ``U``
    orthonormal (``n x K``) and ``V`` block-sparse: ``V[rows of m, column k] = 0`` unless
    modality ``m`` belongs to column ``k``'s subset. A binary modality x component pattern
    is exactly a :class:`~hcl_stats.Structure` (columns with the same set of modalities form
    one block), so SLIDE is the one classic method with explicit partial structure.

    Fit for a given structure (:func:`fit_slide`): start from scores whose loadings already
    have the structure's zero pattern (the top-``K`` singular pairs rotated block by block,
    see :func:`_structured_start`), then alternate ``V = mask * (X^T U)`` and ``U`` = polar
    factor of ``X V`` until the objective stops decreasing.

    Structure selection (``structure="auto"``): the total rank ``r`` is ``max_rank`` or the
    Gavish-Donoho hard-threshold rank of ``X``; along a decreasing path of ``n_lambdas``
    penalties from the smallest one that zeroes every block down to
    ``lambda_min_ratio`` times it, the group-lasso problem
    ``1/2 ||X - U V^T||_F^2 + lambda sum_{m,k} ||V_{m,k}||_2`` is solved by alternating
    group soft-thresholding of ``V`` and the polar update of ``U`` (warm starts); each
    penalty's non-zero pattern is a candidate structure (those leaving a modality without
    a component are skipped). The candidate with the smallest 3 x 3 bi-cross-validation
    error (rows split in three, each modality's features split in three; see
    :func:`_bcv_error`) is refitted on all the data. Candidates and errors are stored in
    ``selection_``. In each fold the candidate is refitted on the training rows and
    columns with its zero blocks enforced, the held-out columns' loadings are masked the
    same way, and the error is measured on the held-out block only (Owen and Perry's
    bi-cross-validation with the structured fit).

    SLIDE's scores are orthonormal (``U^T U = I``). When the true scores are merely
    uncorrelated in the population (e.g. i.i.d. Gaussian, sample correlations of order
    ``1 / sqrt(n)``), the true zero pattern cannot absorb those in-sample correlations:
    orthonormalising the scores mixes the loadings across blocks, and at high
    signal-to-noise bi-cross-validation can prefer a pattern with extra non-zero blocks (a
    partial component merged into a global one) even though the true one is on the path.
    SLIDE's authors simulate their own designs with scores orthonormal in-sample
    (docs/baselines.md).

    Parameters
    ----------
    structure : Structure, dict or "auto"
        The binary structure (subsets and ranks), or ``"auto"`` to select it.
    scale : bool, default=True
        Divide each centred modality by its Frobenius norm (the original method's
        standardisation). Loadings are reported in original units either way.
    max_rank : int or None, default=None
        Total rank of the selection path (default: Gavish-Donoho rank of ``X``).
    n_lambdas : int, default=30
        Penalties on the path.
    lambda_min_ratio : float, default=0.05
        Smallest penalty as a fraction of the largest.
    n_folds : int, default=3
        Row and column folds of the bi-cross-validation (3 in the original method).
    max_iter : int, default=5000
        Maximum alternating iterations of the final fit (the fits of the selection take at
        most 300); the six-view digits data take 1,200 to 1,400.
    tol : float, default=1e-7
        Stop when the objective decreases by less than ``tol * ||V||_F^2``.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the folds and of the Lanczos start vectors (``None``: a fixed default
        seed; see :mod:`hcl_stats._numerics.random`).

    Attributes
    ----------
    structure_ : Structure
        The fitted structure.
    loadings_ : ndarray of shape (d, K)
        ``scale_m * V / sqrt(n - 1)`` in original units, with the noise its
        in-sample scores picked up removed
        (:func:`hcl_stats._models.data_model.denoise_loadings`): ``loadings_ @ loadings_.T``
        estimates the signal covariance ``Sigma - Psi`` (HCL's scale). Exact zeros
        outside the mask.
    means_ : list of ndarray of shape (p_m,)
    noise_variance_ : ndarray of shape (M,)
        Residual variance per modality with the degrees of freedom of its rank removed.
    scores_ : ndarray of shape (n, K)
        Orthonormal ``U`` of the training samples.
    scales_ : ndarray of shape (M,)
    objective_ : float
        ``||X - U V^T||_F^2`` on the scaled data.
    n_iter_ : int
    converged_ : bool
    selection_ : pandas.DataFrame or None
        With ``structure="auto"``: one row per candidate structure (``structure``,
        ``n_components``, ``bcv_error``, ``selected``).
    n_features_per_modality_, total_variance_, modality_names_in_, n_modalities_,
    n_components_, n_samples_
        As in :class:`hcl_stats.HCL`.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import SLIDE
    >>> from hcl_stats.datasets import make_hierarchical
    >>> structure = Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 1})
    >>> X = make_hierarchical(300, [10, 15, 20], structure, noise_variance=0.1,
    ...                       random_state=0)
    >>> SLIDE(structure).fit(X).loadings_.shape
    (45, 3)
    """

    def __init__(self, structure, *, scale=True, max_rank=None, n_lambdas=30,
                 lambda_min_ratio=0.05, n_folds=3, max_iter=5000, tol=1e-7,
                 random_state=None):
        self.structure = structure
        self.scale = scale
        self.max_rank = max_rank
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self):
        """Validate the parameters that do not depend on the data."""
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = check_positive_float(self.tol, "tol")
        if isinstance(self.structure, str):
            if self.structure != "auto":
                raise ValueError(f"structure must be a Structure, a dict or 'auto', "
                                 f"got {self.structure!r}")
            check_positive_int(self.n_lambdas, "n_lambdas")
            ratio = check_positive_float(self.lambda_min_ratio, "lambda_min_ratio")
            if ratio >= 1:
                raise ValueError(
                    f"lambda_min_ratio must be in (0, 1), got {self.lambda_min_ratio!r}")
            check_positive_int(self.n_folds, "n_folds", minimum=2)
            if self.max_rank is not None:
                check_positive_int(self.max_rank, "max_rank")
        return max_iter, tol

    def _fit_centred(self, blocks, names):
        """Structure selection (if asked), the structured fit, loadings and residuals."""
        max_iter, tol = self._check_params()
        n = blocks[0].shape[0]
        n_features = [b.shape[1] for b in blocks]
        rng = as_generator(self.random_state)
        seed = int(rng.integers(2 ** 31 - 1))
        scales = block_scales(blocks, self.scale)
        data = [b / s for b, s in zip(blocks, scales)]
        extra = {"selection_": None}
        if isinstance(self.structure, str):
            structure, extra = self._select(data, names, rng, seed, max_iter, tol)
        else:
            structure = check_structure(self.structure, n_features, names, n)
        if structure.n_components > min(n - 1, sum(n_features)):
            raise ValueError(f"the structure has {structure.n_components} components, more "
                             f"than min(n_samples - 1, d) = {min(n - 1, sum(n_features))}")
        comp = RowCompression(data)
        res = fit_slide(np.hstack(comp.reduced), structure, n_features, max_iter=max_iter,
                        tol=tol, random_state=seed)
        if not res.converged:
            warnings.warn(f"SLIDE did not converge in max_iter={max_iter} iterations "
                          f"(tol={tol}); increase max_iter or tol", ConvergenceWarning,
                          stacklevel=3)
        U = comp.lift(res.scores)
        W = np.zeros_like(res.loadings)
        rss = np.empty(len(blocks))
        for m, rows in enumerate(structure.rows(n_features)):
            V_m = res.loadings[rows]
            W[rows] = scales[m] * V_m / np.sqrt(n - 1)
            rss[m] = float(np.sum((blocks[m] - scales[m] * (U @ V_m.T)) ** 2))
        attributes = {"scores_": U, "scales_": scales, "objective_": res.objective,
                      "n_iter_": int(res.n_iter), "converged_": bool(res.converged), **extra}
        return DataFit(structure=structure, loadings=W, rss=rss, scales=scales,
                       attributes=attributes)

    def _select(self, data, names, rng, seed, max_iter, tol):
        """Structure selection (class docstring): ``(structure, attributes)``."""
        import pandas as pd

        n = data[0].shape[0]
        M = len(data)
        n_features = [b.shape[1] for b in data]
        n_lambdas, ratio, n_folds = self.n_lambdas, self.lambda_min_ratio, self.n_folds
        X = np.hstack(data)
        if self.max_rank is None:
            r_max = max(1, gavish_donoho_rank(singular_values(X), X.shape))
        else:
            r_max = int(self.max_rank)
        r_max = min(r_max, n - 1, X.shape[1])
        comp = RowCompression(data)
        Xr = np.hstack(comp.reduced)
        starts = [rows.start for rows in row_slices(n_features)]
        C = Xr.T @ truncated_svd(Xr, r_max, random_state=seed)[0]
        lam_max = float(np.sqrt(np.add.reduceat(C * C, starts, axis=0)).max())
        lambdas = np.geomspace(lam_max, lam_max * ratio, n_lambdas)
        patterns = _group_lasso_path(Xr, n_features, r_max, lambdas, max_inner=200,
                                     tol=1e-6, random_state=seed)
        candidates = []
        for pattern in patterns:
            st = _pattern_structure(pattern, M, names)
            if st is not None and st not in candidates:
                candidates.append(st)
        if not candidates:  # fall back to a fully shared structure of rank r_max
            candidates.append(Structure({tuple(range(M)): r_max}, modalities=names or M))
        perm = rng.permutation(n)
        row_folds = np.array_split(perm, n_folds)
        col_folds = [np.array_split(rng.permutation(p), n_folds) for p in n_features]
        errors = [_bcv_error(data, st, row_folds, col_folds, max_iter=min(max_iter, 300),
                             tol=max(tol, 1e-6), random_state=seed) for st in candidates]
        best = int(np.argmin(errors))
        selection = pd.DataFrame({
            "structure": [repr(st) for st in candidates],
            "n_components": [st.n_components for st in candidates],
            "bcv_error": errors,
            "selected": [i == best for i in range(len(candidates))],
        })
        return candidates[best], {"selection_": selection,
                                  "candidate_structures_": candidates}
