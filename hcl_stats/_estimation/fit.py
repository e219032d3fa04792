"""``fit_hcl``: the covariance path of HCL as one function of arrays.

Objective::

    f(W) = 1/2 || W W^T - S_W ||_F^2,     W[rows of m, columns of S] = 0 unless m in S,

with ``S_W = S - Psi`` the denoised covariance (see ``docs/model.md``).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.lbfgs import solve_lbfgs
from hcl_stats._estimation.noise import (
    estimate_noise,
    subtract_diagonal,
    top_eigenpairs,
)
from hcl_stats._estimation.subspace import solve_subspace
from hcl_stats._numerics.backend import (
    to_numpy,
)
from hcl_stats._numerics.linalg import flip_signs


class HCLResult(NamedTuple):
    """What :func:`fit_hcl` returns."""

    loadings: np.ndarray  #: (d, K), exact zeros outside the mask
    noise_variance: np.ndarray  #: (M,)
    objective: float  #: f(W) at the solution
    n_iter: int  #: inner solver iterations in total
    converged: bool
    gradient_norm: float  #: ||grad f||_F / ||(S_W W) masked||_F at the solution
    init_loadings: np.ndarray  #: (d, K) the initialiser's loadings


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
        if not np.any(block):
            continue
        _, _, Vt = scipy.linalg.svd(block, full_matrices=False)
        W[:, cols] = flip_signs(block @ Vt.T)
    return W


def fit_hcl(S, n_features, structure, *, denoise="isotropic", solver="lbfgs",
            max_iter=2000, tol=1e-5, random_state=None):
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

    Returns
    -------
    HCLResult
        With NumPy arrays, whatever the namespace of ``S``.
    """
    n_features = [int(p) for p in n_features]
    K = structure.n_components
    noise, eig = estimate_noise(S, n_features, structure, denoise, random_state=random_state)
    S_W = subtract_diagonal(S, np.repeat(noise, n_features))
    if eig is not None and np.ptp(noise) == 0:
        values, vectors = eig[0] - noise[0], eig[1]
    else:
        values, vectors = top_eigenpairs(S_W, K, random_state=random_state)
    mask = structure.mask(n_features)
    W_init = spectral_init(values, vectors, structure, n_features)
    if solver == "subspace":
        # NumPy only (scipy's trust-region Newton on the small problems)
        W, f, n_iter, converged, rel_grad = solve_subspace(
            np.asarray(to_numpy(S_W), dtype=float), W_init, mask, n_features,
            basis_init=vectors, max_iter=max_iter, tol=tol)
    elif solver == "lbfgs":
        W, f, n_iter, converged, rel_grad = solve_lbfgs(
            S_W, W_init, mask, n_features, max_iter=max_iter, tol=tol)
    else:
        raise ValueError(f"solver must be 'lbfgs' or 'subspace', got {solver!r}")
    if not np.all(np.isfinite(W)):
        raise FloatingPointError("the HCL solver produced non-finite loadings")
    if not converged:
        warnings.warn(
            f"HCL did not converge in {n_iter} iterations (relative gradient {rel_grad:.2e} > "
            f"tol={tol:g}); increase max_iter or loosen tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    W = canonical_rotation(W, structure)
    return HCLResult(W, noise, f, n_iter, converged, rel_grad, W_init)
