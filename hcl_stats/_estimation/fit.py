"""``fit_hcl``: the covariance path of HCL as one function of arrays, and its result type.

Objective::

    f(W) = 1/2 || W W^T - S_W ||_F^2,     W[rows of m, columns of S] = 0 unless m in S,

with ``S_W = S - Psi`` the denoised covariance (see ``docs/model.md`` and
``docs/estimation.md``), or with ``block_weights`` (a pairwise covariance of incomplete
data) the block-weighted objective ``1/2 sum_{m,l} w_ml ||W_m W_l^T - S_W[m, l]||_F^2``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.growing import solve_growing
from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.lbfgs import solve_lbfgs
from hcl_stats._estimation.noise import check_denoise, denoised_eigenpairs
from hcl_stats._estimation.refine import needs_refinement, refine_covariance
from hcl_stats._estimation.subspace import solve_subspace
from hcl_stats._numerics.backend import get_namespace, is_numpy, to_numpy
from hcl_stats._numerics.linalg import flip_signs, serial_blas, small_svd
from hcl_stats._structure import row_slices

__all__ = ["HCLFitResult", "SOLVERS", "WEIGHTED_SOLVERS", "canonical_rotation",
           "check_block_weights", "fit_hcl", "resolve_solver", "warn_not_converged"]


@dataclass(frozen=True)
class HCLFitResult:
    """What both paths of the HCL fit return (NumPy arrays, whatever the input namespace)."""

    loadings: np.ndarray  #: (d, K), exact zeros outside the mask
    noise_variance: np.ndarray  #: (M,), or (d,) for denoise="diagonal"
    #: f(W) at the solution (reduced path: of the last reduced problem), or the
    #: log-likelihood for objective="likelihood"
    objective: float
    n_iter: int  #: inner solver iterations in total
    converged: bool  #: whether the relative gradient of the full problem is <= tol
    gradient_norm: float  #: ||grad f||_F / ||(S_W W) masked||_F of the full problem
    init_loadings: np.ndarray  #: (d, K) the initialiser's loadings
    means: tuple  #: per modality, shape (p_m,)
    total_variance: np.ndarray  #: (M,) trace(S_mm)
    path: str = "covariance"  #: "covariance" or "reduced"
    reduced_ranks: np.ndarray | None = None  #: reduced path: final basis sizes q_m


def _solve_subspace(S_W, W_init, mask, n_features, *, vectors, max_iter, tol):
    # NumPy only (scipy's trust-region Newton on the small problems)
    return solve_subspace(np.asarray(to_numpy(S_W), dtype=float), W_init, mask, n_features,
                          basis_init=vectors, max_iter=max_iter, tol=tol)


def _solve_lbfgs(S_W, W_init, mask, n_features, *, vectors, max_iter, tol, block_weights=None):
    del vectors
    if is_numpy(get_namespace(S_W)) and S_W.dtype != np.float64:
        # float32 statistics: solve_lbfgs takes its float32 copy from the float64 matrix of
        # its exact products
        S_W = S_W.astype(np.float64)
    return solve_lbfgs(S_W, W_init, mask, n_features, max_iter=max_iter, tol=tol,
                       block_weights=block_weights)


def _solve_growing(S_W, W_init, mask, n_features, *, vectors, max_iter, tol):
    del vectors
    return solve_growing(S_W, W_init, mask, n_features, max_iter=max_iter, tol=tol)


#: ``solver`` name -> ``solve(S_W, W_init, mask, n_features, *, vectors, max_iter, tol)``
#: returning ``(W, f, n_iter, converged, rel_grad)``; ``vectors`` are the top-K eigenvectors.
SOLVERS = {"lbfgs": _solve_lbfgs, "growing": _solve_growing, "subspace": _solve_subspace}

#: the solvers that also take ``block_weights=`` (the block-weighted objective)
WEIGHTED_SOLVERS = ("lbfgs",)


# solver="auto" takes the growing-subspace solver when the gap between the K-th and the
# (K+1)-th eigenvalue of S_W is at least this share of the K-th: a small gap means weak
# factors at the noise edge, an ill-conditioned objective whose optimum spreads over many
# directions, and bases so large that L-BFGS in the full space is cheaper. On the authors'
# design the share was 0.002-0.003 at noise 6 (L-BFGS about 10% faster) and 0.016-0.022 at
# noise 1 (the growing solver 20-30% faster).
_GROWING_GAP = 0.01

# ... and only from this many features: below, a pass over S costs little next to the
# per-iteration overhead that both solvers share, and L-BFGS is as fast.
_GROWING_MIN_FEATURES = 500


def resolve_solver(solver, xp, d, values=None, n_components=None, block_weights=None):
    """The solver that ``solver`` names on namespace ``xp``.

    ``"auto"``: on NumPy with at least 500 features (``d``, the length of the
    eigenvectors) the growing-subspace solver
    (:func:`hcl_stats._estimation.growing.solve_growing`, which itself hands over to
    L-BFGS when its bases pass a share of ``d``) unless the leading eigenvalues ``values``
    of ``S_W`` (at least ``n_components + 1`` of them) show a relative eigengap below
    ``0.01`` at ``n_components``, or ``block_weights`` are given and not all equal (only
    L-BFGS fits the block-weighted objective); L-BFGS otherwise.
    """
    if solver != "auto":
        return solver
    if not is_numpy(xp) or d < _GROWING_MIN_FEATURES:
        return "lbfgs"
    if block_weights is not None and _uniform_weight(block_weights) is None:
        return "lbfgs"
    K = n_components
    if values is not None and K is not None and 0 < K < len(values) and values[K - 1] > 0:
        if (values[K - 1] - values[K]) < _GROWING_GAP * values[K - 1]:
            return "lbfgs"
    return "growing"


def _uniform_weight(weights):
    """The common value of ``weights`` when all entries are equal, else None."""
    weights = np.asarray(weights, dtype=float)
    first = weights.flat[0]
    return float(first) if np.all(weights == first) else None


def check_block_weights(block_weights, n_modalities):
    """``block_weights`` as an ``(M, M)`` float array, or raise ValueError.

    The weights must be finite, non-negative and symmetric, with a positive diagonal (a
    modality's own block fits its loadings).
    """
    w = np.asarray(block_weights, dtype=float)
    M = int(n_modalities)
    if w.shape != (M, M):
        raise ValueError(f"block_weights must have shape ({M}, {M}) (one weight per pair of "
                         f"modalities), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("block_weights must be finite and non-negative")
    if not np.array_equal(w, w.T):
        raise ValueError("block_weights must be symmetric")
    zero = np.flatnonzero(np.diagonal(w) <= 0)
    if zero.size:
        raise ValueError(f"block_weights[{zero[0]}, {zero[0]}] is 0; every modality's own "
                         "block needs a positive weight")
    return w


def canonical_rotation(W, structure):
    """Rotate each block to its principal axes (orthogonal columns, decreasing norms).

    The objective is invariant to one orthogonal rotation per block; this picks the
    rotation that makes ``W[:, S]^T W[:, S]`` diagonal with decreasing entries, and applies
    the package sign convention, so fitted loadings are reproducible.
    """
    W = W.copy()
    for subset in structure.subsets:
        cols = structure.columns(subset)
        block = W[:, cols]
        if not block.any():
            continue
        _, _, Vt = small_svd(block)
        W[:, cols] = flip_signs(block @ Vt.T)
    return W


def warn_not_converged(message, stacklevel=4):
    """Warn with :class:`sklearn.exceptions.ConvergenceWarning`."""
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)


def _split_moments(S, means, n_features):
    """Per-modality means (zeros when ``means`` is None) and traces of ``S_mm``, on the host."""
    xp = get_namespace(S)
    diag = np.asarray(to_numpy(xp.linalg.diagonal(S)), dtype=float)
    rows = row_slices(n_features)
    if means is None:
        means = np.zeros(diag.shape[0])
    means = np.asarray(means, dtype=float)
    return (tuple(means[sl] for sl in rows),
            np.array([diag[sl].sum() for sl in rows]))


def fit_hcl(S, n_features, structure, *, denoise="isotropic", solver="auto",
            max_iter=2000, tol=1e-5, random_state=None, means=None,
            objective="least_squares", n_samples=None, block_weights=None,
            modality_eigenvalues=None):
    """Fit HCL to a covariance matrix: the functional core behind :class:`hcl_stats.HCL`.

    Parameters
    ----------
    S : array of shape (d, d)
        Sample covariance of the stacked modalities: a NumPy array or an array of another
        array-API namespace (CuPy, ...), in which the ``d x d`` work then runs (float32 on a
        device without float64).
    n_features : sequence of int
        Modality widths ``p_m`` (rows of ``S`` in modality order).
    structure : Structure
        Bound structure (``structure.n_modalities == len(n_features)``).
    denoise, solver, max_iter, tol, random_state
        See :class:`hcl_stats.HCL`.
    means : array-like of shape (d,), default=None
        Stacked feature means behind ``S``, split per modality into the result (zeros when
        not given).
    objective : {"least_squares", "likelihood"}, default="least_squares"
        See :class:`hcl_stats.HCL`; the likelihood fit and ``denoise="diagonal"`` continue
        from the least-squares solution (:func:`hcl_stats._estimation.refine.refine_covariance`).
    n_samples : int, optional
        Needed for ``objective="likelihood"`` (the log-likelihood is that of the data).
    block_weights : array-like of shape (M, M), default=None
        Weights ``w_ml`` of the block-weighted objective
        ``1/2 sum_{m,l} w_ml ||W_m W_l^T - S_W[m, l]||_F^2`` (finite, non-negative,
        symmetric, positive diagonal), e.g. ``N_ml / n`` for a pairwise covariance whose
        block ``(m, l)`` comes from ``N_ml`` of the ``n`` samples. ``None``: all one. Equal
        weights ``c`` give the unweighted solution with the objective multiplied by ``c``.
        Other weights need ``solver="lbfgs"`` or ``"auto"`` (which then takes L-BFGS) and
        ``objective="least_squares"``; ``denoise="diagonal"`` alternates the noise with the
        weighted fit. ``objective`` and ``gradient_norm`` of the result are those of the
        weighted objective.
    modality_eigenvalues : sequence of array-like, default=None
        Per modality, the eigenvalues of its diagonal block ``S_mm``, decreasing (those the
        structure selection computed from the same ``S``): the noise rules read their
        leading ones instead of decomposing the blocks again. None: computed here.

    Returns
    -------
    HCLFitResult
        With NumPy arrays, whatever the namespace of ``S``.
    """
    # The fit is a loop of (d x d) by (d x K) products and small dense work: under one BLAS
    # thread its rounding, hence its result, does not depend on the thread count, and
    # OpenBLAS's spinning threads do not slow the small operations on a busy machine.
    with serial_blas():
        return _fit_hcl(S, n_features, structure, denoise=denoise, solver=solver,
                        max_iter=max_iter, tol=tol, random_state=random_state, means=means,
                        objective=objective, n_samples=n_samples,
                        block_weights=block_weights,
                        modality_eigenvalues=modality_eigenvalues)


def _weights_for(block_weights, n_modalities, solver, objective):
    """``(weights or None, factor)``: non-uniform checked weights, or None and the common
    weight that multiplies the unweighted objective; raises for what cannot take them."""
    if block_weights is None:
        return None, 1.0
    weights = check_block_weights(block_weights, n_modalities)
    factor = _uniform_weight(weights)
    if factor is not None:  # the unweighted fit; a least-squares objective scaled by factor
        return None, factor if objective == "least_squares" else 1.0
    if solver != "auto" and solver not in WEIGHTED_SOLVERS:
        raise ValueError(f"solver={solver!r} does not fit the block-weighted objective of "
                         "unequal block_weights; use solver='lbfgs' or 'auto'")
    if objective != "least_squares":
        raise ValueError(f"objective={objective!r} does not take block_weights; the block-"
                         "weighted objective is objective='least_squares'")
    return weights, 1.0


def _fit_hcl(S, n_features, structure, *, denoise, solver, max_iter, tol, random_state,
             means, objective, n_samples, block_weights, modality_eigenvalues=None):
    n_features = [int(p) for p in n_features]
    denoise = check_denoise(denoise)
    weights, factor = _weights_for(block_weights, len(n_features), solver, objective)
    K = structure.n_components
    xp = get_namespace(S)
    # one more eigenvalue for the choice (none is needed when the weights decide it)
    extra = int(solver == "auto" and is_numpy(xp) and weights is None)
    noise, S_W, values, vectors = denoised_eigenpairs(
        S, n_features, structure, denoise, random_state=random_state,
        n_extra=extra, approximate=True, modality_values=modality_eigenvalues)
    solver = resolve_solver(solver, xp, S.shape[0], values, K, block_weights=weights)
    values, vectors = values[:K], vectors[:, :K]
    mask = structure.mask(n_features)
    W_init = spectral_init(values, vectors, structure, n_features)
    weighted = {} if weights is None else {"block_weights": weights}
    W, f, n_iter, converged, rel_grad = SOLVERS[solver](
        S_W, W_init, mask, n_features, vectors=vectors, max_iter=max_iter, tol=tol, **weighted)
    if not np.all(np.isfinite(W)):
        raise FloatingPointError("the HCL solver produced non-finite loadings")
    if needs_refinement(denoise, objective):  # warns itself when it does not converge
        W, noise, f, more, converged, rel_grad = refine_covariance(
            S, n_features, structure, W, noise, denoise=denoise, objective=objective,
            n_samples=n_samples, max_iter=max_iter, tol=tol, **weighted)
        n_iter += more
    elif not converged:
        warn_not_converged(
            f"HCL did not converge in {n_iter} iterations (relative gradient {rel_grad:.2e} > "
            f"tol={tol:g}); increase max_iter or loosen tol")
    split_means, total_variance = _split_moments(S, means, n_features)
    return HCLFitResult(
        loadings=canonical_rotation(W, structure), noise_variance=np.asarray(noise, float),
        objective=float(f) * factor, n_iter=int(n_iter), converged=bool(converged),
        gradient_norm=float(rel_grad), init_loadings=W_init, means=split_means,
        total_variance=total_variance)
