"""The :class:`HCL` estimator: a thin shell over :mod:`hcl_stats._estimation.pipeline`."""

from __future__ import annotations

import numpy as np

from hcl_stats._estimation.noise import check_denoise
from hcl_stats._estimation.pipeline import (
    compresses,
    plan_fit,
    plan_from_covariance,
    resolve_denoise,
    resolve_scale,
    run_covariance,
    run_fit,
)
from hcl_stats._estimation.refine import OBJECTIVES
from hcl_stats._input.params import integer, optional, options, positive_float, seed
from hcl_stats._input.validation import read_blocks
from hcl_stats._models.covariance_model import CovarianceFactorModel
from hcl_stats._numerics.backend import BACKENDS
from hcl_stats._statistics.scaling import check_scale
from hcl_stats._structure import Structure

__all__ = ["HCL"]


def _structure_spec(value, name):
    if isinstance(value, (Structure, dict)) or (isinstance(value, str) and value == "auto"):
        return value
    raise TypeError(f"{name} must be a Structure, a dict of subset -> rank or 'auto', "
                    f"got {value!r}")


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
    1. Covariance ``S`` of the centred, stacked modalities (weighted by ``scale``) and
       noise ``Psi`` by the ``denoise`` rule (the paper's: mean of the ``d - K`` smallest
       eigenvalues, from the top ``K`` of a float32 Lanczos stopped when their sum has
       settled; per modality the same within each modality's block).
    2. Initialiser, general in the number of modalities and the structure: the
       unstructured minimiser ``V_K sqrt(Lambda_K - sigma^2)``, rotated so that each block's
       columns span the latent directions that load least outside its subset, peeling
       from specific to global blocks (exact in the population; see
       :func:`hcl_stats._estimation.init.spectral_init`).
    3. Solver. ``solver="growing"`` (what ``"auto"``, the default, uses on NumPy): per
       modality an orthonormal basis, grown by the part of the gradient outside it (one
       pass over ``S`` per growth step), with L-BFGS iterations on the exact restriction of
       the objective to the bases, which never touch ``S``; it hands over to L-BFGS when
       the bases pass a share of ``d`` (see
       :func:`hcl_stats._estimation.growing.solve_growing`). ``solver="lbfgs"`` (``"auto"``
       on other namespaces): L-BFGS on the free entries only, with the ScaledGD
       preconditioner ``V_m (G_{C_m C_m})^{-1}`` (which evens out the curvature of
       strong and weak factors), one product with ``S`` per iteration restricted to the
       non-zero blocks, an exact line search (the objective is a quartic polynomial along
       a line), and float32 products until the float64 check (see
       :func:`hcl_stats._estimation.lbfgs.solve_lbfgs`). ``solver="subspace"``: trust-region
       Newton on the exact restriction of the objective to per-modality subspaces that grow
       by the part of the gradient outside them (fewer, costlier iterations; NumPy only).
       All stop when the relative gradient of the full problem is below ``tol`` and warn
       with ``ConvergenceWarning`` otherwise.
    4. Each block is rotated to its principal axes (orthogonal columns of decreasing norm),
       which leaves the objective unchanged and makes the output reproducible.

    See ``docs/estimation.md`` (objective and solvers), ``docs/noise.md`` (``denoise``) and
    ``docs/large-data.md`` (``path``, chunked input, ``backend``).

    Parameters
    ----------
    structure : Structure, dict or "auto", default="auto"
        Which modality subsets carry factors and their ranks, e.g.
        ``{(0, 1, 2): 3, (0, 1): 2, (2,): 1}``. With dict data, subsets may use names.
        ``"auto"`` selects the structure from the data (:mod:`hcl_stats.selection`); the
        evidence is stored in ``selection_``.
    scale : {"auto", "modality", "features"} or None, default="auto"
        Weighting of the modalities in the fit (:mod:`hcl_stats._statistics.scaling`).
        ``"modality"``: each modality divided by the square root of its total variance,
        so that every modality weighs the same in the shared factors whatever its width
        or units (the weighting of JIVE and MOFA); ``"features"``: every feature
        standardised (for modalities whose features are in different units); ``None``:
        the data's units (the paper's objective). ``"auto"``: ``"modality"`` with
        ``structure="auto"`` (the analysis of data with no structure in mind) and ``None``
        with a given structure (the paper's objective for a specified model). The noise
        rule applies to the rescaled data; loadings, noise, scores and tables are reported
        in the data's units (``noise_variance_`` has one value per feature for
        ``"features"``). The selected structure does not depend on ``"modality"`` versus
        ``None`` (the selection is invariant to one factor per modality).
    denoise : {"auto", "isotropic", "modality", "diagonal"}, None, float or array-like, \
            default="auto"
        Noise rule: ``"auto"`` is ``"modality"`` when ``scale`` resolves to a weighting
        (``"modality"`` or ``"features"``) and ``"isotropic"`` when the fit is in the data's
        units (``scale`` resolving to None, as with a given structure and the default
        ``scale``): after the weighting the modalities' noise levels differ by
        construction (a modality of ``p_m`` features scaled to unit total variance has
        noise of order ``1 / p_m`` per feature), so one pooled variance would be too large
        for some and too small for others. ``"auto"`` then needs ``p_m > r_m`` in every
        modality (``structure="auto"`` ensures it). The rules: one variance for all
        features (``"isotropic"``, the paper), one per modality (``"modality"``, each
        modality's own eigenvalues), one per feature (``"diagonal"``, estimated jointly
        with the loadings: principal-axis alternation ``psi = diag(S - W W^T)`` for least
        squares, inside the maximisation for the likelihood; floored at ``1e-6`` times the
        feature's variance, and for a constant feature at ``1e-12`` times the mean variance
        of its modality's features), none (``None`` or ``"none"``), or given variance(s):
        one number, or one per modality.
    solver : {"auto", "growing", "lbfgs", "subspace"}, default="auto"
        Optimiser of the objective (see Algorithm). ``"growing"`` and ``"subspace"`` need
        the NumPy namespace (a ValueError otherwise); ``"auto"`` is ``"growing"`` there and
        ``"lbfgs"`` elsewhere.
    max_iter : int, default=2000
        Maximum number of solver iterations.
    tol : float, default=1e-5
        Stop when ``||grad f||_F <= tol * ||(S_W W) masked||_F``.
    max_rank : int or None, default=None
        With ``structure="auto"``: the largest rank considered for any block.
    strength : float, default=1.0
        With ``structure="auto"``: the strength floor of the selection, a factor counts
        only where it carries more than ``strength`` times the mean eigenvalue of its
        modality (1: the Kaiser-Guttman rule; 0: every factor the random-matrix tests
        detect); see :func:`hcl_stats.selection.select_structure`. A value other than 1
        with a given structure raises a ValueError.
    max_components : int or None, default=None
        With ``structure="auto"``: a budget on the total number of factors; when the
        selection finds more, the strongest are kept (variance over the modality's mean
        eigenvalue, summed over the block's modalities), the weakest block ranks dropped
        first and subsets left with rank 0 removed. The "budget" rows of
        ``selection_`` record it. Set with a given structure, a ValueError.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the Lanczos start vector and, on the reduced path, of the range finder;
        ``None``: a fixed default seed, so that repeated fits are identical.
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
        float32); with ``structure="auto"``, ``"reduced"`` for in-memory NumPy input whose
        modalities are wide enough that the compression at least halves the problem
        (``sum_m min(p_m, n - 1) <= d / 2``), with ``objective="least_squares"`` and a
        noise rule other than ``"diagonal"``: each modality is compressed exactly to the
        row space of its centred data (thin SVD), the structure is selected from the
        compressed covariance with the true widths and fitted with these exact bases, so
        the result is the covariance path's without the ``d x d`` matrix;
        ``"covariance"`` otherwise (always for Dask input, missing values and arrays that
        run in another namespace). ``"reduced"`` with Dask input or a non-NumPy namespace,
        and with ``structure="auto"`` on memmaps or with ``denoise="diagonal"``, raises a
        ValueError.
        :meth:`fit_from_covariance` is the covariance path (``"reduced"`` raises there).
    n_oversamples : int, default=20
        Reduced path: basis columns per modality beyond the number ``r_m`` of factors
        loading on it, ``q_m = min(p_m, n, r_m + n_oversamples)``.
    n_power_iter : int, default=3
        Reduced path: subspace (power) iterations of the range finder.
    max_expansions : int, default=10
        Reduced path: at most this many rounds that grow each basis by the part of the
        full gradient outside it (0: solve the first reduced problem only).
    objective : {"least_squares", "likelihood"}, default="least_squares"
        ``"least_squares"``: the paper's objective above. ``"likelihood"``: the Gaussian
        maximum-likelihood estimate of the same structured model, ``x ~ N(mu, W W^T +
        Psi)`` with the zero pattern and the noise of ``denoise`` (estimated jointly, or
        kept when given; ``None`` raises), started from the least-squares fit and
        maximised by preconditioned L-BFGS over the free loadings and the log noise
        variances until the relative gradient is below ``tol`` (one product with the
        covariance per iteration; on the reduced path two passes over the data). It runs
        on the host (NumPy). See ``docs/estimation.md``.
    backend : {"auto", "numpy", "cupy"}, default="auto"
        Array library for the ``d x d`` numerics (covariance, eigen-decomposition, solver;
        written against the array API standard). ``"auto"``: that of the input arrays
        (CuPy arrays run on their GPU). ``"numpy"``: copy arrays of other namespaces to the
        host. ``"cupy"``: move the work to the GPU (needs the ``gpu`` extra and a CUDA
        device). Fitted attributes are NumPy arrays either way.

    Attributes
    ----------
    structure_ : Structure
        The structure bound to the data (names attached for dict input).
    loadings_ : ndarray of shape (d, K)
        Stacked loadings ``W``; columns ordered as ``structure_.blocks``; exact zeros
        outside the mask.
    means_ : list of ndarray of shape (p_m,)
        Per-modality means.
    noise_variance_ : ndarray of shape (M,) or (d,)
        Noise variance per modality, in the data's units (equal entries for
        ``denoise="isotropic"`` with ``scale=None``), or per feature, shape ``(d,)``, for
        ``denoise="diagonal"`` and for ``scale="features"``. ``feature_noise_variance()``
        and ``modality_noise_variance()`` give the ``(d,)`` and ``(M,)`` views for every
        rule.
    n_features_per_modality_ : ndarray of shape (M,)
        Modality widths ``p_m``.
    total_variance_ : ndarray of shape (M,)
        ``trace(S_mm)`` per modality.
    objective_ : float
        Objective value at the solution: the least-squares objective, or the Gaussian
        log-likelihood of the data for ``objective="likelihood"`` (the sum of
        ``score_samples`` over the training samples).
    n_iter_ : int
        Solver iterations.
    converged_ : bool
        Whether the gradient criterion was met.
    gradient_norm_ : float
        Relative gradient norm at the solution.
    init_loadings_ : ndarray of shape (d, K)
        The initialiser's loadings (for diagnostics).
    path_ : str
        The path taken (``"covariance"`` or ``"reduced"``).
    reduced_ranks_ : ndarray of shape (M,) or None
        Reduced path: the final basis sizes ``q_m``. On that path ``gradient_norm_`` and
        ``converged_`` refer to the full problem, while ``objective_`` is that of the last
        reduced problem (the full objective differs by ``1/2 (||S_W||_F^2 -
        ||T_W||_F^2)``, a constant that needs ``S``), except with ``structure="auto"``,
        whose exact bases give that constant and the full objective.
    modality_names_in_ : tuple of str or None
        Names when fitted on a dict.
    denoise_ : str, ndarray or None
        The noise rule used (``"auto"`` resolved; see ``denoise``), or the given
        variances.
    scale_ : {"modality", "features"} or None
        The weighting used (``"auto"`` resolved; see ``scale``).
    n_joint_samples_ : ndarray of shape (M, M) of int
        Samples observing each modality (diagonal) and each pair of modalities (a
        modality is observed in a sample when one of its values is); ``n_samples_``
        everywhere for complete data and :meth:`fit_from_covariance`. With missing
        values, ``structure="auto"`` selects with the smallest entry as the sample count
        (a conservative choice for the pairs observed more often).
    selection_ : pandas.DataFrame
        With ``structure="auto"``: the evidence table of the structure selection (one
        row per test or decision, :attr:`hcl_stats.selection.SelectionResult.evidence`),
        built on first access.

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

    #: one check per constructor parameter (hcl_stats._input.params.validate_params)
    _parameter_constraints = {
        "structure": _structure_spec,
        "denoise": lambda value, name: check_denoise(value, name, allow_auto=True),
        "solver": options("auto", "growing", "lbfgs", "subspace"),
        "max_iter": integer(1),
        "tol": positive_float(),
        "max_rank": optional(integer(1)),
        "strength": positive_float(strict=False),
        "max_components": optional(integer(1)),
        "random_state": seed,
        "path": options("auto", "covariance", "reduced"),
        "n_oversamples": integer(0),
        "n_power_iter": integer(0),
        "max_expansions": integer(0),
        "backend": options(*BACKENDS),
        "objective": options(*OBJECTIVES),
        "scale": lambda value, name: check_scale(value, allow_auto=True),
    }
    #: (conflict on the checked parameters, message)
    _parameter_combinations = (
        (lambda p: p["path"] == "reduced" and isinstance(p["structure"], str)
         and not compresses(p),
         "path='reduced' with structure='auto' compresses the data to their row spaces, "
         "which holds the solution for per-modality noise only: use denoise='modality', "
         "'isotropic' or numbers, or path='covariance' for denoise='diagonal'"),
        (lambda p: not isinstance(p["structure"], str) and (
            p["strength"] != 1.0 or p["max_components"] is not None),
         "strength and max_components control the structure selection: they need "
         "structure='auto' (a given structure fixes the ranks)"),
        (lambda p: p["objective"] == "likelihood" and resolve_denoise(p) is None,
         "objective='likelihood' needs a noise model: denoise='auto', 'isotropic', "
         "'modality', 'diagonal' or positive noise variances, not None"),
        (lambda p: p["objective"] == "likelihood" and not isinstance(resolve_denoise(p), str)
         and not np.all(resolve_denoise(p) > 0),
         "objective='likelihood' needs positive noise variances (denoise has a zero)"),
        (lambda p: not isinstance(resolve_denoise(p), str) and resolve_denoise(p) is not None
         and resolve_scale(p) is not None,
         "denoise given as noise variances is in the data's units, but the fit is weighted "
         "(scale resolves to a rescaling): pass scale=None with given noise variances"),
    )

    def __init__(self, structure="auto", *, denoise="auto", solver="auto",
                 max_iter=2000, tol=1e-5, max_rank=None, strength=1.0, max_components=None,
                 random_state=None, path="auto", n_oversamples=20, n_power_iter=3,
                 backend="auto", max_expansions=10, objective="least_squares",
                 scale="auto"):
        self.structure = structure
        self.denoise = denoise
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.max_rank = max_rank
        self.strength = strength
        self.max_components = max_components
        self.random_state = random_state
        self.path = path
        self.n_oversamples = n_oversamples
        self.n_power_iter = n_power_iter
        self.backend = backend
        self.max_expansions = max_expansions
        self.objective = objective
        self.scale = scale

    def fit(self, X, y=None):
        """Fit the model.

        Parameters
        ----------
        X : list, tuple or dict of array-like of shape (n_samples, p_m), or MuData
            The modalities, measured on the same samples (a dict maps names to arrays).
            DataFrames, pandas Series of rows and AnnData objects are matched by sample
            label (a MuData object gives its modalities by name); arrays pair by position.
            NumPy memmaps and Dask arrays are read chunk by chunk and never copied whole
            (see ``path``). Missing values (NaN, ``None``, ``pd.NA``; a sample absent from
            a labelled modality) are allowed: the model is fitted to the pairwise
            covariance of the observed values (``docs/input.md``), on the covariance path
            and NumPy, with ``objective="least_squares"``.
        y : ignored

        Returns
        -------
        self
        """
        params = self._validate_params()
        inputs = read_blocks(X, lazy=True, fitting=True, missing="allow")
        blocks, names = list(inputs.arrays), inputs.names
        plan = plan_fit(params, blocks, complete=inputs.complete, checked=inputs.checked)
        self._store(*run_fit(params, plan, blocks, names), params=params, names=names,
                    n_samples=blocks[0].shape[0])
        return self._record_input(inputs)

    def _fit_covariance(self, params, S, means, n, n_features, names, joint_counts=None):
        plan = plan_from_covariance(params, S)
        return self._store(*run_covariance(params, plan, S, means, n, n_features, names,
                                           joint_counts=joint_counts),
                           params=params, names=names, n_samples=n)

    def _store(self, result, structure, selection, joint_counts, *, params, names,
               n_samples):
        """Set the fitted attributes from one :class:`HCLFitResult` (all checked finite)."""
        extra = {"denoise_": resolve_denoise(params), "scale_": resolve_scale(params),
                 "objective_": result.objective, "n_iter_": result.n_iter,
                 "converged_": result.converged, "gradient_norm_": result.gradient_norm,
                 "init_loadings_": result.init_loadings, "path_": result.path,
                 "reduced_ranks_": result.reduced_ranks}
        if selection is not None:
            # the evidence table is built when selection_ is first read
            extra["_selection"] = selection
        self._set_fitted(structure=structure, loadings=result.loadings, means=result.means,
                         noise_variance=result.noise_variance,
                         total_variance=result.total_variance, names=names,
                         n_samples=n_samples, joint_counts=joint_counts, extra=extra)
        return self

    @property
    def selection_(self):
        """With ``structure="auto"``: the evidence table of the structure selection
        (:attr:`hcl_stats.selection.SelectionResult.evidence`), built on first access."""
        selection = self.__dict__.get("_selection")
        if selection is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute "
                                 "'selection_' (it is set by a fit with structure='auto')")
        return selection.evidence

    def _noise_rule(self):
        return self.denoise_ if isinstance(self.denoise_, str) else None

    def _noise_from_rule(self):
        return True

    def _noise_excess_advice(self):
        rule = self.denoise_
        if isinstance(rule, str) and rule == "isotropic":
            return super()._noise_excess_advice()
        if isinstance(rule, str) and rule == "modality":
            # the shared factors load on some of the modality's features more than its own
            # spectrum leaves above one common noise level (features of unequal noise)
            return ("one noise variance for all of this modality's features does not fit "
                    "them (their noise levels differ); denoise='diagonal' estimates one per "
                    "feature")
        what = f"denoise={rule!r}" if isinstance(rule, str) or rule is None else \
            "the given noise variances"
        return (f"with {what} the fitted noise and loadings of this modality overlap; "
                "check its ranks (fewer factors) or the noise values")
