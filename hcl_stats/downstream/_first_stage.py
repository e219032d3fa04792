"""First-stage (generated-regressor) uncertainty of factor scores, by the bootstrap.

The scores ``z_hat_i = A(theta_hat) x_i`` that the downstream regression uses are *generated
regressors*: they depend on the factor model ``theta_hat`` fitted in a first stage. The
naive OLS / Logit covariance treats them as fixed and so ignores the estimation error of
``theta_hat``. :func:`bootstrap_scores` measures it: it refits the factor model on bootstrap
resamples of the first-stage data, rotates every refit block by block onto the reference
fit (the model identifies each block only up to a rotation within it), and recomputes the
scores of the samples to be analysed. :func:`~hcl_stats.downstream.structure_inference` and
:func:`~hcl_stats.downstream.sample_split_inference` use these draws through their
``first_stage`` argument; their module documentation gives the derivation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from hcl_stats._input.params import check_positive_int
from hcl_stats._input.validation import read_fitted_blocks
from hcl_stats._numerics.random import as_generator
from hcl_stats._structure import Structure
from hcl_stats.metrics._recovery import block_rotation

__all__ = ["ScoreBootstrap", "bootstrap_scores", "align_scores"]


@dataclass(frozen=True, eq=False)
class ScoreBootstrap:
    """Result of :func:`bootstrap_scores`: reference scores and aligned bootstrap draws.

    Pass it as ``first_stage`` to :func:`~hcl_stats.downstream.structure_inference` or
    :func:`~hcl_stats.downstream.sample_split_inference` together with ``scores`` as the
    regressors.

    Attributes
    ----------
    scores : ndarray of shape (m, K)
        ``model.transform(X)``: the scores of the reference fit.
    draws : ndarray of shape (n_bootstrap, m, K)
        The same samples' scores under each bootstrap refit, rotated block by block into the
        coordinates of the reference fit.
    structure : Structure
        The reference fit's structure (``model.structure_``), which the refits keep.
    n_not_converged : int
        Refits that warned with ``ConvergenceWarning`` (kept in the draws).
    """

    scores: np.ndarray
    draws: np.ndarray
    structure: Structure
    n_not_converged: int = 0

    @property
    def n_bootstrap(self):
        """Number of bootstrap draws."""
        return self.draws.shape[0]

    def __repr__(self):
        m, K = self.scores.shape
        return f"ScoreBootstrap(n_bootstrap={self.n_bootstrap}, n_samples={m}, n_components={K})"


def align_scores(Z, W, W_ref, structure):
    """Scores of a fit with loadings ``W`` expressed in the coordinates of ``W_ref``.

    Rotating the loadings ``W -> W R`` (``R`` orthogonal) turns posterior-mean scores
    ``z -> R^T z``, i.e. the score matrix ``Z -> Z R``; ``R`` is :func:`block_rotation`.

    Parameters
    ----------
    Z : ndarray of shape (m, K)
        Scores under ``W``.
    W, W_ref : ndarray of shape (d, K)
    structure : Structure

    Returns
    -------
    ndarray of shape (m, K)
    """
    return np.asarray(Z, dtype=np.float64) @ block_rotation(W, W_ref, structure)


def _refit(model, blocks, names, rows, W_ref, structure, X):
    data = [b[rows] for b in blocks]
    if names is not None:
        data = dict(zip(names, data))
    refit = clone(model)
    if "structure" in refit.get_params():
        refit.set_params(structure=structure)  # keep the reference structure (not "auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        refit.fit(data)
    if refit.structure_ != structure:
        raise ValueError(f"a bootstrap refit has structure {refit.structure_!r}, not the "
                         f"reference {structure!r}; the model must keep its structure")
    failed = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return align_scores(refit.transform(X), refit.loadings_, W_ref, structure), failed


def bootstrap_scores(model, X_fit, X, *, n_bootstrap=100, random_state=None, n_jobs=None):
    """Bootstrap draws of the scores of ``X`` over the first stage (the factor-model fit).

    Each draw refits a clone of ``model`` (same parameters, structure fixed to
    ``model.structure_``) on ``n`` rows of ``X_fit`` drawn with replacement, rotates each
    block of the refit onto the reference by orthogonal Procrustes (:func:`block_rotation`)
    and computes the scores of ``X``. See the notes of
    :mod:`hcl_stats.downstream._inference` for how the draws enter the Wald tests.

    Parameters
    ----------
    model : fitted BlockFactorModel
        The reference fit, fitted on ``X_fit`` (e.g. :class:`hcl_stats.HCL`).
    X_fit : list, tuple or dict of array-like of shape (n, p_m)
        The first-stage data ``model`` was fitted on (typically unlabelled samples). It must
        not involve the outcome. It may hold missing values (NaN) when ``model``'s ``fit``
        takes them (a refit that does not raises its error).
    X : list, tuple or dict of array-like of shape (m, p_m)
        The samples whose scores are regressed on the outcome (the labelled ones); missing
        modalities (``None``, rows of NaN) and values are allowed, as in ``transform``.
    n_bootstrap : int, default=100
        Number of refits. Cost: ``n_bootstrap`` fits of the factor model plus as many
        ``transform`` calls; the second stage adds one least-squares (or Logit) fit per
        draw at inference time.
    random_state : int, numpy.random.Generator or None, default=None
        The resamples (``None``: a fixed default seed, see :mod:`hcl_stats._numerics.random`) (the refits use ``model``'s own ``random_state``).
    n_jobs : int or None, default=None
        Parallel refits (joblib).

    Returns
    -------
    ScoreBootstrap

    Examples
    --------
    >>> from hcl_stats import HCL, Structure
    >>> from hcl_stats.datasets import make_hierarchical
    >>> from hcl_stats.downstream import bootstrap_scores
    >>> st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    >>> X = make_hierarchical(300, [5, 6], st, noise_variance=0.2, random_state=0)
    >>> unl, lab = [x[:250] for x in X], [x[250:] for x in X]
    >>> model = HCL(st, random_state=0).fit(unl)
    >>> boot = bootstrap_scores(model, unl, lab, n_bootstrap=5, random_state=0)
    >>> boot.draws.shape
    (5, 50, 3)
    """
    check_is_fitted(model, "loadings_")
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap")
    names = model.structure_.modality_names if model.modality_names_in_ else None
    blocks = list(read_fitted_blocks(model, X_fit, missing="allow").arrays)
    X_checked = list(read_fitted_blocks(model, X, allow_missing=True,
                                        missing="allow").arrays)
    if names is not None:
        X_checked = dict(zip(names, X_checked))
    n = blocks[0].shape[0]
    structure = model.structure_
    W_ref = np.asarray(model.loadings_, dtype=np.float64)
    rng = as_generator(random_state)
    resamples = [rng.integers(0, n, n) for _ in range(n_bootstrap)]
    out = Parallel(n_jobs=n_jobs)(
        delayed(_refit)(model, blocks, names, rows, W_ref, structure, X_checked)
        for rows in resamples)
    draws = np.stack([z for z, _ in out])
    return ScoreBootstrap(np.asarray(model.transform(X_checked), dtype=np.float64), draws,
                          structure, int(sum(f for _, f in out)))
