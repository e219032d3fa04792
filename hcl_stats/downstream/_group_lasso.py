"""The :class:`StructuredGroupLasso` estimator: which structures predict an outcome."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from hcl_stats.downstream._groups import resolve_groups
from hcl_stats.downstream._solvers import (
    _lipschitz,
    alpha_max,
    logistic_loss,
    solve_cvxpy,
    solve_prox,
)

__all__ = ["StructuredGroupLasso"]

_CRITERIA = ("cv", "bic", "aic")


def _prepare(Z, y, loss, standardize, noise_cov):
    """Centre (and scale) the scores with statistics of ``Z`` only; build the problem."""
    mean = Z.mean(axis=0)
    Zc = Z - mean
    scale = Zc.std(axis=0) if standardize else np.ones(Z.shape[1])
    scale = np.where(scale > 1e-12 * max(1.0, float(np.max(scale, initial=0.0))), scale, 1.0)
    Zs = Zc / scale
    m = len(y)
    prep = {"mean": mean, "scale": scale}
    if loss == "squared":
        ymean = float(np.mean(y))
        yc = y - ymean
        A = Zs.T @ Zs / m
        corrected = False
        projected = False
        if noise_cov is not None:
            A = A - noise_cov / np.outer(scale, scale)
            A = 0.5 * (A + A.T)
            vals, vecs = np.linalg.eigh(A)
            floor = 1e-8 * max(float(vals[-1]), 1e-300)
            if vals[0] < floor:
                projected = True
                A = (vecs * np.maximum(vals, floor)) @ vecs.T
            corrected = True
        problem = {"loss": "squared", "A": A, "c": Zs.T @ yc / m, "Z": Zs, "y": yc,
                   "yy": float(yc @ yc) / m, "corrected": corrected}
        prep.update(ymean=ymean, projected=projected)
    else:
        problem = {"loss": "logistic", "Z": Zs, "y": y.astype(float)}
    return problem, prep


def _to_original(b0, beta, prep, loss):
    coef = beta / prep["scale"]
    if loss == "squared":
        intercept = prep["ymean"] - float(prep["mean"] @ coef)
    else:
        intercept = b0 - float(prep["mean"] @ coef)
    return intercept, coef


def _logistic_mle(X1, y, max_iter=100):
    """(Slightly ridged) logistic MLE and its mean log-loss, by damped Newton steps."""
    theta = np.zeros(X1.shape[1])
    ridge = 1e-8 * np.eye(X1.shape[1])

    def loss(t):
        eta = X1 @ t
        return float(np.mean(np.logaddexp(0.0, eta) - y * eta)) + 0.5e-8 * float(t @ t)

    current = loss(theta)
    for _ in range(max_iter):
        p = expit(X1 @ theta)
        grad = X1.T @ (p - y) / len(y) + 1e-8 * theta
        hess = (X1 * (p * (1 - p))[:, None]).T @ X1 / len(y) + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-10:
            candidate = loss(theta - t * step)
            if candidate <= current:
                break
            t *= 0.5
        theta = theta - t * step
        done = current - candidate < 1e-12 * max(1.0, abs(current))
        current = candidate
        if done:
            break
    return theta, current


class StructuredGroupLasso(BaseEstimator):
    """Group lasso on factor scores with one group per structure block.

    Which latent structures (global, partially shared, specific) predict an outcome?
    With scores ``Z = model.transform(X)`` of any fitted factor model of this package and
    its ``structure_`` as ``groups``, the estimator solves::

        minimise  loss(y, b0 + Z b) + alpha * sum_S w_S ||b_S||_2

    over the intercept ``b0`` and coefficients ``b``, where ``b_S`` are the coefficients of
    block ``S`` (its ``r_S`` score columns) and ``w_S = sqrt(r_S)``. Whole blocks enter or
    leave the model together, so the non-zero groups are the *selected structures*.

    Squared loss is ``1/(2m) ||y - b0 - Z b||^2``; logistic loss is the mean negative
    Bernoulli log-likelihood. Scores are centred and (by default) scaled to unit variance
    before penalising, with statistics of the data being fitted only; coefficients are
    reported on the original score scale.

    Parameters
    ----------
    groups : Structure, dict or sequence of int
        The column groups: a :class:`~hcl_stats.Structure` (usually ``model.structure_``),
        a dict mapping labels to column indices, or a sequence of group sizes.
    loss : {"squared", "logistic"}, default="squared"
        Squared error (regression) or logistic (binary classification).
    alpha : float or {"bic", "cv", "aic"}, default="bic"
        A fixed penalty, or how to choose it on the path: the Bayesian or Akaike information
        criterion of the unpenalised refit on each active set (degrees of freedom: number of
        active coefficients plus the intercept), or K-fold cross-validation. BIC is the
        default because the aim is to *select* structures: it is selection-consistent,
        while cross-validation targets prediction error and tends to admit a few null
        structures (see the downstream study in ``simulations/downstream.py``).
    alphas : array-like, default=None
        The penalty grid (decreasing). By default ``n_alphas`` values log-spaced from
        ``alpha_max`` (all groups zero) down to ``alpha_min_ratio * alpha_max``;
        ``alpha_max`` is computed on the data passed to ``fit``, which only fixes the range
        searched.
    n_alphas : int, default=30
        Length of the default grid.
    alpha_min_ratio : float, default=1e-3
        Smallest penalty of the default grid relative to ``alpha_max``.
    cv : int or cross-validation splitter, default=5
        Folds for ``alpha="cv"`` (stratified and shuffled with ``random_state`` for the
        logistic loss; shuffled K-fold otherwise). Inside each fold the centring, scaling,
        errors-in-variables correction and every path fit use the training part only; the
        held-out part is only predicted.
    cv_rule : {"min", "1se"}, default="min"
        With ``alpha="cv"``: the penalty with the smallest mean held-out loss, or the
        largest penalty whose mean loss is within one standard error of that minimum
        (sparser).
    standardize : bool, default=True
        Scale score columns to unit variance before penalising.
    score_noise_cov : array-like of shape (K, K), default=None
        Errors-in-variables correction (squared loss only): the
        covariance of the measurement error carried by the scores, e.g. ``C Psi C^T`` for
        pseudo-inverse scores ``C x`` (see :func:`pseudo_inverse_scores`). The Gram matrix
        ``Z^T Z / m`` is replaced by ``Z^T Z / m - score_noise_cov`` (projected onto the
        positive semidefinite cone when needed, as in the convex conditioned lasso of Datta
        and Zou 2017), which removes the attenuation of the coefficients. Posterior-mean
        scores (``model.transform``) need no correction: ``E[y | x] = b^T E[z | x]``, so the
        regression on them is already unbiased for ``b`` (regression calibration).
    refit : bool, default=False
        Relaxed group lasso: after selection, replace ``coef_`` and ``intercept_`` by the
        unpenalised fit (least squares, with the errors-in-variables correction when given,
        or logistic maximum likelihood) on the selected structures, removing the shrinkage
        of the penalty. ``coef_path_`` stays the penalised path.
    solver : {"cvxpy", "prox"}, default="prox"
        ``"cvxpy"``: the reference conic formulation (CLARABEL when installed);
        ``"prox"``: accelerated proximal gradient with exact group soft-thresholding and
        warm starts along the path (agrees with cvxpy to solver tolerance, much faster).
    max_iter : int, default=20000
        Iterations of the proximal solver per penalty.
    tol : float, default=1e-10
        Relative coefficient-change tolerance of the proximal solver.
    random_state : int, RandomState or None, default=None
        Shuffling of the cross-validation folds.

    Attributes
    ----------
    coef_ : ndarray of shape (K,)
        Coefficients on the original score scale at ``alpha_``.
    intercept_ : float
        Intercept (log-odds scale for the logistic loss).
    alpha_ : float
        The penalty used.
    selected_ : list
        Keys (subsets for a Structure) of the groups with non-zero coefficients.
    selected_labels_ : list of str
        Their labels, e.g. ``"{0,1}"``.
    group_norms_ : ndarray of shape (n_groups,)
        ``||coef_S||_2`` per group (original scale).
    group_keys_, group_labels_ : list
        All groups, in order.
    alphas_ : ndarray of shape (n_alphas,)
        The penalty grid (decreasing).
    coef_path_ : ndarray of shape (n_alphas, K)
        Coefficients along the grid, fitted on all the data (original scale).
    intercept_path_ : ndarray of shape (n_alphas,)
    n_active_path_ : ndarray of shape (n_alphas,)
        Number of selected groups along the grid.
    cv_scores_ : ndarray of shape (n_alphas, n_folds)
        Held-out loss per penalty and fold (mean squared error, the errors-in-variables
        corrected mean squared error, or the mean log-loss); only with ``alpha="cv"``.
    cv_mean_, cv_se_ : ndarray of shape (n_alphas,)
        Mean and standard error over folds; only with ``alpha="cv"``.
    criterion_path_ : ndarray of shape (n_alphas,)
        BIC or AIC along the grid; only with ``alpha="bic"`` or ``"aic"``.
    classes_ : ndarray of shape (2,)
        Class labels (logistic loss); ``coef_`` models the log-odds of ``classes_[1]``.
    gram_projected_ : bool
        Whether the corrected Gram matrix had to be projected (errors-in-variables).
    n_iter_ : int
        Proximal iterations at ``alpha_`` (0 for cvxpy).
    n_features_in_ : int
        Number of score columns ``K``.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import Structure
    >>> from hcl_stats.downstream import StructuredGroupLasso
    >>> rng = np.random.default_rng(0)
    >>> groups = Structure({(0, 1): 2, (0,): 2, (1,): 2})
    >>> Z = rng.standard_normal((300, 6))
    >>> y = Z[:, :2] @ [1.0, -1.0] + 0.5 * rng.standard_normal(300)
    >>> est = StructuredGroupLasso(groups, alpha="bic").fit(Z, y)
    >>> est.selected_labels_
    ['{0,1}']
    """

    def __init__(self, groups, *, loss="squared", alpha="bic", alphas=None, n_alphas=30,
                 alpha_min_ratio=1e-3, cv=5, cv_rule="min", standardize=True,
                 score_noise_cov=None, refit=False, solver="prox", max_iter=20000,
                 tol=1e-10, random_state=None):
        self.groups = groups
        self.loss = loss
        self.alpha = alpha
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv = cv
        self.cv_rule = cv_rule
        self.standardize = standardize
        self.score_noise_cov = score_noise_cov
        self.refit = refit
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # -- validation ----------------------------------------------------------------------
    def _check_params(self, K):
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {self.loss!r}")
        if self.solver not in ("cvxpy", "prox"):
            raise ValueError(f"solver must be 'cvxpy' or 'prox', got {self.solver!r}")
        if isinstance(self.alpha, str):
            if self.alpha not in _CRITERIA:
                raise ValueError(f"alpha must be a non-negative number or one of "
                                 f"{_CRITERIA}, got {self.alpha!r}")
        elif isinstance(self.alpha, bool) or not isinstance(self.alpha, Real) or \
                not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number or one of {_CRITERIA}, "
                             f"got {self.alpha!r}")
        if self.cv_rule not in ("min", "1se"):
            raise ValueError(f"cv_rule must be 'min' or '1se', got {self.cv_rule!r}")
        if isinstance(self.n_alphas, bool) or not isinstance(self.n_alphas, Integral) or \
                self.n_alphas < 2:
            raise ValueError(f"n_alphas must be an integer >= 2, got {self.n_alphas!r}")
        if not (0 < float(self.alpha_min_ratio) < 1):
            raise ValueError(f"alpha_min_ratio must be in (0, 1), got {self.alpha_min_ratio!r}")
        noise_cov = None
        if self.score_noise_cov is not None:
            if self.loss != "squared":
                raise ValueError("score_noise_cov (errors-in-variables correction) is only "
                                 "available for the squared loss")
            noise_cov = np.asarray(self.score_noise_cov, dtype=float)
            if noise_cov.shape != (K, K) or not np.isfinite(noise_cov).all():
                raise ValueError(f"score_noise_cov must be a finite ({K}, {K}) matrix, got "
                                 f"shape {noise_cov.shape}")
            noise_cov = 0.5 * (noise_cov + noise_cov.T)
        return noise_cov

    def _check_y(self, y):
        if self.loss == "squared":
            return np.asarray(y, dtype=float)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"the logistic loss needs exactly two classes in y, got "
                             f"{len(classes)} ({classes[:5]!r})")
        self.classes_ = classes
        return (np.asarray(y) == classes[1]).astype(float)

    # -- solving -------------------------------------------------------------------------
    def _solve_path(self, problem, alphas):
        b0s, betas, iters = [], [], []
        beta, b0 = None, None
        lipschitz = _lipschitz(problem) if self.solver == "prox" else None
        for a in alphas:
            if self.solver == "cvxpy":
                b0, beta, _ = solve_cvxpy(problem, float(a), self._index, self._weights)
                n_iter = 0
            else:
                b0, beta, n_iter, ok = solve_prox(problem, float(a), self._index,
                                                  self._weights, beta0=beta, b00=b0,
                                                  max_iter=self.max_iter, tol=self.tol,
                                                  lipschitz=lipschitz)
                if not ok:
                    warnings.warn(f"proximal group lasso did not converge at alpha={a:.3g} "
                                  f"in {self.max_iter} iterations; increase max_iter",
                                  ConvergenceWarning, stacklevel=3)
            b0s.append(b0)
            betas.append(beta.copy())
            iters.append(n_iter)
        return np.array(b0s), np.array(betas), iters

    def _heldout_loss(self, intercept, coef, Z, y, noise_cov):
        eta = intercept + Z @ coef
        if self.loss == "squared":
            mse = float(np.mean((y - eta) ** 2))
            if noise_cov is not None:  # unbiased for the loss with error-free scores
                mse -= float(coef @ noise_cov @ coef)
            return mse
        return logistic_loss(intercept, coef, Z, y)

    def _refit_loss(self, problem, active):
        """Unpenalised refit on the active columns: (RSS / m) or mean log-loss."""
        if self.loss == "squared":
            if not active.any():
                return problem["yy"]
            A = problem["A"][np.ix_(active, active)]
            c = problem["c"][active]
            b = np.linalg.lstsq(A, c, rcond=None)[0]
            return max(problem["yy"] - float(c @ b), 1e-300)
        X1 = np.column_stack([np.ones(len(problem["y"])), problem["Z"][:, active]])
        return _logistic_mle(X1, problem["y"])[1]

    def _refit_coef(self, problem, prep, active):
        beta = np.zeros(len(active))
        b0 = 0.0
        if self.loss == "squared":
            if active.any():
                A = problem["A"][np.ix_(active, active)]
                beta[active] = np.linalg.lstsq(A, problem["c"][active], rcond=None)[0]
        else:
            X1 = np.column_stack([np.ones(len(problem["y"])), problem["Z"][:, active]])
            theta = _logistic_mle(X1, problem["y"])[0]
            b0, beta[active] = theta[0], theta[1:]
        intercept, coef = _to_original(b0, beta, prep, self.loss)
        return float(intercept), coef

    # -- public API ----------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the group lasso, choosing the penalty as ``alpha`` says.

        Parameters
        ----------
        X : array-like of shape (m, K)
            Scores (e.g. ``model.transform(X_blocks)``), columns ordered as ``groups``.
        y : array-like of shape (m,)
            Outcome (real for the squared loss, two classes for the logistic loss).

        Returns
        -------
        self
        """
        Z, y = check_X_y(X, y, dtype=np.float64 if self.loss == "squared" else None,
                         y_numeric=self.loss == "squared")
        Z = np.asarray(Z, dtype=np.float64)
        K = Z.shape[1]
        noise_cov = self._check_params(K)
        self.n_features_in_ = K
        self.group_keys_, self.group_labels_, self._index = resolve_groups(self.groups, K)
        self._weights = np.sqrt([len(i) for i in self._index])
        y = self._check_y(y)

        problem, prep = _prepare(Z, y, self.loss, self.standardize, noise_cov)
        self.gram_projected_ = bool(prep.get("projected", False))
        fixed = not isinstance(self.alpha, str)
        grid = []
        if self.alphas is not None:
            grid = np.asarray(self.alphas, dtype=float).reshape(-1)
            if grid.size == 0 or np.any(grid < 0) or not np.isfinite(grid).all():
                raise ValueError("alphas must be non-negative finite numbers")
        elif not fixed:
            amax = alpha_max(problem, self._index, self._weights)
            amax = amax if amax > 0 else 1.0
            grid = amax * np.logspace(0, np.log10(self.alpha_min_ratio), self.n_alphas)
        if fixed:
            grid = np.concatenate([grid, [float(self.alpha)]])
        alphas = np.unique(grid)[::-1]

        b0s, betas, iters = self._solve_path(problem, alphas)
        path = [_to_original(b, beta, prep, self.loss) for b, beta in zip(b0s, betas)]
        self.alphas_ = alphas
        self.intercept_path_ = np.array([p[0] for p in path])
        self.coef_path_ = np.array([p[1] for p in path])
        self.n_active_path_ = np.array(
            [sum(bool(np.any(beta[i] != 0)) for i in self._index) for beta in betas])

        if isinstance(self.alpha, str) and self.alpha == "cv":
            best = self._cross_validate(Z, y, alphas, noise_cov)
        elif isinstance(self.alpha, str):
            m = len(y)
            penalty_per_df = np.log(m) if self.alpha == "bic" else 2.0
            crit = []
            for beta in betas:
                active = beta != 0
                loss = self._refit_loss(problem, active)
                df = int(active.sum()) + 1
                if self.loss == "squared":
                    crit.append(m * np.log(loss) + penalty_per_df * df)
                else:
                    crit.append(2.0 * m * loss + penalty_per_df * df)
            self.criterion_path_ = np.array(crit)
            best = int(np.argmin(self.criterion_path_))
        else:
            best = int(np.flatnonzero(alphas == float(self.alpha))[0])
        self.alpha_ = float(alphas[best])
        self.intercept_, self.coef_ = float(path[best][0]), path[best][1].copy()
        if self.refit:
            self.intercept_, self.coef_ = self._refit_coef(problem, prep, betas[best] != 0)
        self.n_iter_ = int(iters[best])
        self.group_norms_ = np.array([np.linalg.norm(self.coef_[i]) for i in self._index])
        chosen = [g for g, i in enumerate(self._index) if np.any(self.coef_[i] != 0)]
        self.selected_ = [self.group_keys_[g] for g in chosen]
        self.selected_labels_ = [self.group_labels_[g] for g in chosen]
        return self

    def _cross_validate(self, Z, y, alphas, noise_cov):
        if isinstance(self.cv, Integral):
            if self.loss == "logistic":
                splitter = StratifiedKFold(self.cv, shuffle=True,
                                           random_state=self.random_state)
            else:
                splitter = KFold(self.cv, shuffle=True, random_state=self.random_state)
        else:
            splitter = self.cv
        scores = []
        for train, test in splitter.split(Z, y):
            problem, prep = _prepare(Z[train], y[train], self.loss, self.standardize,
                                     noise_cov)
            b0s, betas, _ = self._solve_path(problem, alphas)
            fold = []
            for b0, beta in zip(b0s, betas):
                intercept, coef = _to_original(b0, beta, prep, self.loss)
                fold.append(self._heldout_loss(intercept, coef, Z[test], y[test], noise_cov))
            scores.append(fold)
        self.cv_scores_ = np.array(scores).T
        n_folds = self.cv_scores_.shape[1]
        self.cv_mean_ = self.cv_scores_.mean(axis=1)
        self.cv_se_ = self.cv_scores_.std(axis=1, ddof=1) / np.sqrt(n_folds)
        best = int(np.argmin(self.cv_mean_))
        if self.cv_rule == "1se":
            within = self.cv_mean_ <= self.cv_mean_[best] + self.cv_se_[best]
            best = int(np.argmax(within))  # alphas decrease: first True is the largest
        return best

    def decision_function(self, X):
        """Linear predictor ``intercept_ + X coef_`` (log-odds for the logistic loss)."""
        check_is_fitted(self, "coef_")
        Z = check_array(X, dtype=np.float64)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Z.shape[1]} score columns, expected "
                             f"{self.n_features_in_} as at fit")
        return self.intercept_ + Z @ self.coef_

    def predict(self, X):
        """Predicted outcome (squared loss) or class label (logistic loss)."""
        eta = self.decision_function(X)
        if self.loss == "squared":
            return eta
        return self.classes_[(eta > 0).astype(int)]

    def predict_proba(self, X):
        """Class probabilities (logistic loss), shape (m, 2)."""
        if self.loss != "logistic":
            raise AttributeError("predict_proba is only available for loss='logistic'")
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def score(self, X, y):
        """R^2 (squared loss) or accuracy (logistic loss)."""
        pred = self.predict(X)
        y = np.asarray(y)
        if self.loss == "squared":
            return 1.0 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
        return float(np.mean(pred == y))
