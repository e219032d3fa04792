"""Functional core of the structured group lasso: group bookkeeping and solvers.

Everything here works on *prepared* data: scores already centred (and, when asked,
standardised) by the estimator, so the problems are

squared loss (quadratic form)::

    minimise  1/2 b^T A b - c^T b + alpha * sum_g w_g ||b_g||_2

with ``A = Z^T Z / m`` and ``c = Z^T y / m`` (or the errors-in-variables corrected ``A``);

logistic loss (with an unpenalised intercept ``b0``)::

    minimise  1/m sum_i [log(1 + exp(eta_i)) - y_i eta_i] + alpha * sum_g w_g ||b_g||_2,
    eta = b0 + Z b,  y in {0, 1}.

Two solvers share these definitions: :func:`solve_cvxpy` (the reference, a conic solver
through cvxpy) and :func:`solve_prox` (accelerated proximal gradient with restarts and
exact group soft-thresholding, fast enough for cross-validation paths and simulation studies).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning

__all__ = ["alpha_max", "logistic_loss", "solve_cvxpy", "solve_prox"]


def _group_ids(groups, K):
    gid = np.full(K, -1)
    for g, idx in enumerate(groups):
        gid[idx] = g
    if np.any(gid < 0):
        raise ValueError("the groups must cover every coefficient")
    return gid


def _shrink(v, gid, thresholds):
    """Proximal map of ``sum_g t_g ||v_g||`` (shrink each group's norm by ``t_g``), for
    groups given by a label per entry."""
    norms = np.sqrt(np.bincount(gid, weights=v * v, minlength=len(thresholds)))
    factor = np.where(norms > thresholds, 1.0 - thresholds / np.maximum(norms, 1e-300), 0.0)
    return v * factor[gid]


def logistic_loss(b0, beta, Z, y):
    """Mean logistic loss of the linear predictor ``b0 + Z beta`` for 0/1 labels ``y``."""
    eta = b0 + Z @ beta
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def _logit_null_intercept(y):
    p = float(np.clip(np.mean(y), 1e-12, 1 - 1e-12))
    return np.log(p / (1 - p))


def alpha_max(problem, groups, weights):
    """Smallest penalty at which every group is zero (KKT at ``beta = 0``)."""
    if problem["loss"] == "squared":
        grad = -problem["c"]
    else:
        Z, y = problem["Z"], problem["y"]
        p0 = expit(_logit_null_intercept(y))
        grad = Z.T @ (p0 - y) / len(y)
    return max(np.linalg.norm(grad[idx]) / w for idx, w in zip(groups, weights))


def _lipschitz(problem):
    if problem["loss"] == "squared":
        return max(float(np.linalg.eigvalsh(problem["A"])[-1]), 1e-12)
    Z = problem["Z"]
    X1 = np.column_stack([np.ones(len(Z)), Z])
    return max(float(np.linalg.eigvalsh(X1.T @ X1)[-1]) / (4.0 * len(Z)), 1e-12)


def solve_prox(problem, alpha, groups, weights, *, beta0=None, b00=None, max_iter=20000,
               tol=1e-10, lipschitz=None):
    """Accelerated proximal gradient (FISTA with adaptive restart) for one penalty.

    Parameters
    ----------
    problem : dict
        Prepared problem: ``loss`` and ``A``, ``c`` (squared) or ``Z``, ``y`` (logistic).
    alpha : float
        Penalty level.
    groups : list of ndarray of int
        Column indices of each group.
    weights : ndarray of shape (n_groups,)
        Group weights ``w_g``.
    beta0, b00 : warm start (coefficients, intercept).
    max_iter : int
        Maximum number of iterations.
    tol : float
        Stop when the largest change of a coefficient over an iteration is below
        ``tol * max(1, max |coefficient|)``.
    lipschitz : float, optional
        Lipschitz constant of the loss gradient (computed when omitted).

    Returns
    -------
    b0 : float
        Intercept (0 for the squared loss, whose data are centred).
    beta : ndarray of shape (K,)
    n_iter : int
    converged : bool
    """
    K = problem["A"].shape[0] if problem["loss"] == "squared" else problem["Z"].shape[1]
    L = _lipschitz(problem) if lipschitz is None else lipschitz
    step = 1.0 / L
    thresholds = step * alpha * np.asarray(weights, dtype=float)
    gid = _group_ids(groups, K)
    logistic = problem["loss"] == "logistic"
    beta = np.zeros(K) if beta0 is None else np.array(beta0, dtype=float)
    b0 = (_logit_null_intercept(problem["y"]) if b00 is None else float(b00)) if logistic \
        else 0.0
    x_beta, x_b0 = beta.copy(), b0
    t = 1.0
    converged = False
    if logistic:
        Z, y = problem["Z"], problem["y"]
        m = len(y)
    else:
        A, c = problem["A"], problem["c"]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        if logistic:
            r = expit(x_b0 + Z @ x_beta) - y
            g_beta = Z.T @ r / m
            g_b0 = float(np.mean(r))
            new_b0 = x_b0 - step * g_b0
        else:
            g_beta = A @ x_beta - c
            new_b0 = 0.0
        new_beta = _shrink(x_beta - step * g_beta, gid, thresholds)
        delta_beta = new_beta - beta
        delta_b0 = new_b0 - b0
        change = max(float(np.abs(delta_beta).max(initial=0.0)), abs(delta_b0))
        scale = max(1.0, float(np.abs(new_beta).max(initial=0.0)), abs(new_b0))
        # adaptive restart (O'Donoghue and Candes): momentum against the descent direction
        if float(np.dot(x_beta - new_beta, delta_beta)) + (x_b0 - new_b0) * delta_b0 > 0:
            t = 1.0
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        momentum = (t - 1.0) / t_next
        x_beta = new_beta + momentum * delta_beta
        x_b0 = new_b0 + momentum * delta_b0
        beta, b0, t = new_beta, new_b0, t_next
        if change <= tol * scale:
            converged = True
            break
    return b0, beta, n_iter, converged


def solve_cvxpy(problem, alpha, groups, weights, *, solver=None):
    """Reference solution of one penalised problem with cvxpy.

    The squared loss is written from the data (``Z``, ``y``) when they are available, so
    that the reference does not share the Gram-matrix code path of :func:`solve_prox`;
    with an errors-in-variables corrected Gram matrix it is a PSD quadratic form.

    Returns
    -------
    b0 : float
    beta : ndarray of shape (K,)
        Groups whose norm is below ``1e-7 * max(1, ||beta||)`` are set to exactly zero
        (interior-point solvers return tiny non-zeros instead of zeros).
    status : str
    """
    import cvxpy as cp

    logistic = problem["loss"] == "logistic"
    K = problem["Z"].shape[1] if (logistic or problem.get("Z") is not None) \
        else problem["A"].shape[0]
    beta = cp.Variable(K)
    pen = sum(w * cp.norm(beta[idx], 2) for idx, w in zip(groups, weights)) if len(groups) \
        else 0
    b0 = None
    if logistic:
        Z, y = problem["Z"], problem["y"]
        b0 = cp.Variable()
        eta = b0 + Z @ beta
        loss = cp.sum(cp.logistic(eta) - cp.multiply(y, eta)) / len(y)
    elif problem.get("Z") is not None and not problem.get("corrected", False):
        Z, y = problem["Z"], problem["y"]
        loss = cp.sum_squares(y - Z @ beta) / (2.0 * len(y))
    else:
        A = 0.5 * (problem["A"] + problem["A"].T)
        loss = 0.5 * cp.quad_form(beta, cp.psd_wrap(A)) - problem["c"] @ beta
    prob = cp.Problem(cp.Minimize(loss + alpha * pen))
    kwargs = {}
    if solver is not None:
        kwargs["solver"] = solver
    elif "CLARABEL" in cp.installed_solvers():
        kwargs["solver"] = "CLARABEL"
    with warnings.catch_warnings():
        # cvxpy's own "may be inaccurate" UserWarning is replaced by the status check below
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(**kwargs)
    if beta.value is None:
        raise RuntimeError(f"cvxpy could not solve the group lasso problem (status "
                           f"{prob.status!r})")
    if prob.status != "optimal":
        warnings.warn(f"cvxpy finished with status {prob.status!r} at alpha={alpha:.3g}",
                      ConvergenceWarning, stacklevel=3)
    out = np.asarray(beta.value, dtype=float).copy()
    scale = max(1.0, float(np.linalg.norm(out)))
    for idx in groups:
        if np.linalg.norm(out[idx]) <= 1e-7 * scale:
            out[idx] = 0.0
    return (float(b0.value) if logistic else 0.0), out, prob.status
