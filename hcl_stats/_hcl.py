"""The :class:`HCL` estimator: a thin shell over :func:`hcl_stats._estimation.fit.fit_hcl`."""

from __future__ import annotations

import numpy as np

from hcl_stats._estimation.fit import fit_hcl
from hcl_stats._estimation.reduced import fit_hcl_reduced
from hcl_stats._estimation.selection import select_structure
from hcl_stats._input.params import check_positive_float, check_positive_int
from hcl_stats._input.validation import check_blocks, check_structure
from hcl_stats._models.covariance_model import CovarianceFactorModel
from hcl_stats._numerics.backend import (
    BACKENDS,
    is_dask_array,
    is_numpy,
    namespace_for,
    to_numpy,
)
from hcl_stats._statistics.chunked import covariance_statistics
from hcl_stats._statistics.covariance import sample_covariance

__all__ = ["HCL"]

# path="auto" avoids a float64 covariance above this size (bytes) when it exceeds the data
_COVARIANCE_BYTES = 2 ** 28
# ... and whenever d >= _WIDE_FEATURES and d > _WIDE_RATIO * n (the reduced path is then
# much faster: O(n d q) per pass against O(n d^2) for the covariance alone)
_WIDE_FEATURES = 4000
_WIDE_RATIO = 4


class HCL(CovarianceFactorModel):
    """Hierarchical multimodal factor model with structured (exactly zero) loadings.

    The model: ``x_m = mu_m + sum_{S containing m} B_{m,S} z_S + e_m`` with uncorrelated
    unit-variance factors ``z_S`` shared by exactly the modalities in ``S`` and noise
    ``e_m ~ (0, sigma_m^2 I)``. HCL minimises the masked least-squares objective of
    Li, Yu and Zhou (arXiv 2604.05462) on the denoised covariance::

        f(W) = 1/2 || W W^T - (S - Psi) ||_F^2,   W zero outside the structure's mask,

    to convergence (relative gradient below ``tol``).

    Algorithm
    ---------
    1. Covariance ``S`` of the centred, stacked modalities and noise ``Psi`` by the
       ``denoise`` rule (the paper's: mean of the ``d - K`` smallest eigenvalues).
    2. Initialiser, general in the number of modalities and the structure: the
       unstructured minimiser ``V_K sqrt(Lambda_K - sigma^2)``, rotated so that each block's
       columns span the latent directions that load least outside its subset, peeling
       from specific to global blocks (exact in the population; see
       :func:`hcl_stats._estimation.fit.spectral_init`).
    3. Solver (``solver="lbfgs"``, default): L-BFGS on the free entries only, with the
       ScaledGD preconditioner ``V_m (G_{C_m C_m})^{-1}`` (which evens out the curvature of
       strong and weak factors), one product with ``S`` per iteration restricted to the
       non-zero blocks, an exact line search (the objective is a quartic polynomial along
       a line), and float32 products until the float64 check (see
       :func:`hcl_stats._estimation.fit.solve_lbfgs`). ``solver="subspace"``: trust-region Newton
       on the exact restriction of the objective to per-modality subspaces that grow by the
       part of the gradient outside them (fewer, costlier iterations; faster when the
       signal is strong, slower at the authors' noise level, see ``simulations/bench.py``).
       Both stop when the relative gradient of the full problem is below ``tol`` and warn
       with ``ConvergenceWarning`` otherwise.
    4. Each block is rotated to its principal axes (orthogonal columns of decreasing norm),
       which leaves the objective unchanged and makes the output reproducible.

    Parameters
    ----------
    structure : Structure, dict or "auto"
        Which modality subsets carry factors and their ranks, e.g.
        ``{(0, 1, 2): 3, (0, 1): 2, (2,): 1}``. With dict data, subsets may use names.
        ``"auto"`` selects the structure from the data (:mod:`hcl_stats.selection`); the
        evidence is stored in ``selection_``.
    denoise : {"isotropic", "modality"}, None, float or array-like, default="isotropic"
        Noise rule: one variance for all features (the paper), one per modality (each
        modality's own eigenvalues), none, or given variance(s).
    solver : {"lbfgs", "subspace"}, default="lbfgs"
        Optimiser of the objective (see Algorithm).
    max_iter : int, default=2000
        Maximum number of solver iterations.
    tol : float, default=1e-5
        Stop when ``||grad f||_F <= tol * ||(S_W W) masked||_F``.
    max_rank : int or None, default=None
        With ``structure="auto"``: the largest rank considered for any block.
    random_state : int or None, default=None
        Seed of the Lanczos start vector and, on the reduced path, of the range finder.
    path : {"auto", "covariance", "reduced"}, default="auto"
        How the data reach the solver. ``"covariance"``: the ``d x d`` sample covariance
        (accumulated chunk by chunk for Dask arrays and memmaps), memory O(d^2).
        ``"reduced"``: per-modality randomized range finding on the data, then the same
        objective on the small matrix ``T = (X Q)^T (X Q) / (n - 1)``, memory
        O(n d + d K), noise from the residual energy (see :mod:`hcl_stats._estimation.reduced`);
        the bases then grow by the full problem's gradient until its relative norm is
        below ``tol``, so the solution is a stationary point of the same objective as on
        the covariance path (with the noise level estimated from ``T``, whose leading
        eigenvalues approach those of ``S`` from below; pass ``denoise`` as numbers for
        identical noise). ``"auto"`` takes ``"reduced"``
        for NumPy input (arrays or memmaps) with a given structure when the features
        outnumber the samples clearly (``d >= 4000`` and ``d > 4 n``) or when the
        float64 covariance would need more than 256 MiB and more memory than the data
        themselves (``d > 5800`` and ``d > n`` for float64 data, ``d > n / 2`` for
        float32); ``"covariance"`` otherwise (always for Dask input and for
        ``structure="auto"``). Only :meth:`fit` has a choice: ``fit_from_covariance``
        is the covariance path.
    n_oversamples : int, default=20
        Reduced path: basis columns per modality beyond the number ``r_m`` of factors
        loading on it, ``q_m = min(p_m, n, r_m + n_oversamples)``.
    n_power_iter : int, default=3
        Reduced path: subspace (power) iterations of the range finder.
    max_expansions : int, default=10
        Reduced path: at most this many rounds that grow each basis by the part of the
        full gradient outside it (0: solve the first reduced problem only).
    backend : {"auto", "numpy", "cupy"}, default="auto"
        Array library for the ``d x d`` numerics (covariance, eigen-decomposition, solver;
        written against the array API standard). ``"auto"``: that of the input arrays
        (CuPy arrays run on their GPU). ``"cupy"``: move the work to the GPU (needs the
        ``gpu`` extra and a CUDA device). Fitted attributes are NumPy arrays either way.

    Attributes
    ----------
    structure_ : Structure
        The structure bound to the data (names attached for dict input).
    loadings_ : ndarray of shape (d, K)
        Stacked loadings ``W``; columns ordered as ``structure_.blocks``; exact zeros
        outside the mask.
    means_ : list of ndarray of shape (p_m,)
        Per-modality means.
    noise_variance_ : ndarray of shape (M,)
        Noise variance per modality (equal entries for ``denoise="isotropic"``).
    n_features_per_modality_ : ndarray of shape (M,)
        Modality widths ``p_m``.
    total_variance_ : ndarray of shape (M,)
        ``trace(S_mm)`` per modality.
    objective_ : float
        Objective value at the solution.
    n_iter_ : int
        Solver iterations.
    converged_ : bool
        Whether the gradient criterion was met.
    gradient_norm_ : float
        Relative gradient norm at the solution.
    init_loadings_ : ndarray of shape (d, K)
        The initialiser's loadings (for diagnostics).
    path_ : str
        The path taken by :meth:`fit` (``"covariance"`` or ``"reduced"``).
    reduced_ranks_ : ndarray of shape (M,) or None
        Reduced path: the final basis sizes ``q_m``. On that path ``gradient_norm_`` and
        ``converged_`` refer to the full problem, while ``objective_`` is that of the last
        reduced problem (the full objective differs by ``1/2 (||S_W||_F^2 -
        ||T_W||_F^2)``, a constant that needs ``S``).
    modality_names_in_ : tuple of str or None
        Names when fitted on a dict.

    Examples
    --------
    >>> from hcl_stats import HCL, Structure
    >>> from hcl_stats.datasets import make_hierarchical
    >>> structure = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    >>> X = make_hierarchical(500, [20, 30, 40], structure, noise_variance=0.1,
    ...                       random_state=0)
    >>> model = HCL(structure).fit(X)
    >>> model.loadings_.shape, model.converged_
    ((90, 4), True)
    >>> model.transform(X).shape
    (500, 4)
    """

    def __init__(self, structure, *, denoise="isotropic", solver="lbfgs", max_iter=2000,
                 tol=1e-5, max_rank=None, random_state=None, path="auto", n_oversamples=20,
                 n_power_iter=3, backend="auto", max_expansions=10):
        self.backend = backend
        self.max_expansions = max_expansions
        self.path = path
        self.n_oversamples = n_oversamples
        self.n_power_iter = n_power_iter
        self.structure = structure
        self.max_rank = max_rank
        self.denoise = denoise
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self):
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        if self.solver not in ("lbfgs", "subspace"):
            raise ValueError(f"solver must be 'lbfgs' or 'subspace', got {self.solver!r}")
        if self.path not in ("auto", "covariance", "reduced"):
            raise ValueError(
                f"path must be 'auto', 'covariance' or 'reduced', got {self.path!r}")
        check_positive_int(self.n_oversamples, "n_oversamples", minimum=0)
        check_positive_int(self.n_power_iter, "n_power_iter", minimum=0)
        check_positive_int(self.max_expansions, "max_expansions", minimum=0)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    def fit(self, X, y=None):
        """Fit the model.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m)
            The modalities, measured on the same samples (a dict maps names to arrays).
            NumPy memmaps and Dask arrays are read chunk by chunk and never copied whole
            (see ``path``).
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        blocks, names = check_blocks(X, lazy=True)
        if self._on_device(blocks):
            return self._fit_on_device(blocks, names)
        blocks = [b if isinstance(b, np.ndarray) or is_dask_array(b)
                  else check_blocks([to_numpy(b)])[0][0] for b in blocks]
        path = self._choose_path(blocks)
        if path == "covariance":
            n_features = [b.shape[1] for b in blocks]
            S, means, n = covariance_statistics(blocks, names)
            return self._fit_covariance(S, means, n, n_features, names)
        return self._fit_reduced(blocks, names)

    def _on_device(self, blocks):
        """Whether the covariance is computed in a non-NumPy namespace (CuPy, ...)."""
        if any(is_dask_array(b) or isinstance(b, np.memmap) for b in blocks):
            return False  # chunked statistics on the host; the solver may still move
        return not is_numpy(namespace_for(self.backend, *blocks))

    def _fit_on_device(self, blocks, names):
        # in-memory data on (or moved to) the backend's device: covariance and solver run
        # there, only the d x d covariance comes back for the bookkeeping
        xp = namespace_for(self.backend, *blocks)
        moved = []
        for m, b in enumerate(blocks):
            b = xp.asarray(b)
            if not bool(xp.all(xp.isfinite(b))):
                name = names[m] if names is not None else m
                raise ValueError(f"modality {name!r} contains NaN or infinite values; impute "
                                 "or drop them before fitting")
            moved.append(b)
        S, means, n = sample_covariance(moved)
        return self._fit_covariance(S, means, n, [b.shape[1] for b in moved], names)

    def _choose_path(self, blocks):
        auto_structure = isinstance(self.structure, str) and self.structure == "auto"
        dask = any(is_dask_array(b) for b in blocks)
        if self.path == "reduced":
            if auto_structure:
                raise ValueError("path='reduced' needs a given structure (structure='auto' "
                                 "selects it from the covariance)")
            if dask:
                raise ValueError("path='reduced' takes NumPy arrays or memmaps; Dask input "
                                 "goes through path='covariance'")
            return "reduced"
        if self.path == "covariance" or auto_structure or dask:
            return "covariance"
        n = blocks[0].shape[0]
        d = sum(b.shape[1] for b in blocks)
        cov_bytes = 8 * d * d
        data_bytes = sum(b.shape[0] * b.shape[1] * b.dtype.itemsize for b in blocks)
        wide = d >= _WIDE_FEATURES and d > _WIDE_RATIO * n
        return "reduced" if wide or cov_bytes > max(_COVARIANCE_BYTES, data_bytes) \
            else "covariance"

    def _fit_reduced(self, blocks, names):

        n_features = [b.shape[1] for b in blocks]
        structure = check_structure(self.structure, n_features, names)
        result = fit_hcl_reduced(
            blocks, structure, names=names, denoise=self.denoise, solver=self.solver,
            max_iter=self.max_iter, tol=self.tol, n_oversamples=self.n_oversamples,
            n_power_iter=self.n_power_iter, max_expansions=self.max_expansions,
            random_state=self.random_state)
        self._set_fitted(structure=structure, loadings=result.loadings, means=result.means,
                         noise_variance=result.noise_variance,
                         total_variance=result.total_variance, names=names,
                         n_samples=blocks[0].shape[0])
        self.objective_ = result.objective
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.gradient_norm_ = result.gradient_norm
        self.init_loadings_ = result.init_loadings
        self.path_ = "reduced"
        self.reduced_ranks_ = result.ranks
        return self

    def _fit_covariance(self, S, means, n, n_features, names):
        self._check_params()
        # S may live in another array namespace (CuPy, ...): the solver runs there, the
        # bookkeeping and structure selection on the host copy
        xp = namespace_for(self.backend, S)
        S_fit = S if is_numpy(xp) else xp.asarray(S)
        S = np.asarray(to_numpy(S), dtype=float)
        if isinstance(self.structure, str) and self.structure == "auto":

            structure, self.selection_ = select_structure(
                S, n_features, n_samples=n, max_rank=self.max_rank, names=names,
                random_state=self.random_state)
        else:
            structure = check_structure(self.structure, n_features, names)
        result = fit_hcl(S_fit, n_features, structure, denoise=self.denoise,
                         solver=self.solver, max_iter=self.max_iter, tol=self.tol,
                         random_state=self.random_state)
        self._set_fitted_from_covariance(S, means, n, n_features, names, structure,
                                         result.loadings, result.noise_variance)
        self.objective_ = float(result.objective)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.gradient_norm_ = float(result.gradient_norm)
        self.init_loadings_ = result.init_loadings
        self.path_ = "covariance"
        self.reduced_ranks_ = None
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the posterior-mean scores of ``X`` (see :meth:`transform`)."""
        return self.fit(X).transform(X)
