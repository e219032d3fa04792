"""The :class:`HCL` estimator: a thin shell over :func:`hcl_stats._core.fit_hcl`."""

from __future__ import annotations


from hcl_stats._base import BlockFactorModel
from hcl_stats._core import fit_hcl
from hcl_stats._validation import check_positive_float, check_positive_int, check_structure

__all__ = ["HCL"]


class HCL(BlockFactorModel):
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
       :func:`hcl_stats._core.spectral_init`).
    3. Solver (``solver="lbfgs"``, default): L-BFGS on the free entries only, with the
       ScaledGD preconditioner ``V_m (G_{C_m C_m})^{-1}`` (which evens out the curvature of
       strong and weak factors), products with ``S`` restricted to the non-zero blocks, and
       a float32 phase before the float64 finish. ``solver="subspace"``: trust-region Newton
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
        Seed of the Lanczos start vector (results do not otherwise depend on it).

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
                 tol=1e-5, max_rank=None, random_state=None):
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

    def _fit_covariance(self, S, means, n, n_features, names):
        self._check_params()
        if isinstance(self.structure, str) and self.structure == "auto":
            from hcl_stats.selection import select_structure

            structure, self.selection_ = select_structure(
                S, n_features, n_samples=n, max_rank=self.max_rank, names=names,
                random_state=self.random_state)
        else:
            structure = check_structure(self.structure, n_features, names)
        result = fit_hcl(S, n_features, structure, denoise=self.denoise, solver=self.solver,
                         max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)
        self._set_fitted_from_covariance(S, means, n, n_features, names, structure,
                                         result.loadings, result.noise_variance)
        self.objective_ = float(result.objective)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.gradient_norm_ = float(result.gradient_norm)
        self.init_loadings_ = result.init_loadings
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the posterior-mean scores of ``X`` (see :meth:`transform`)."""
        return self.fit(X).transform(X)
