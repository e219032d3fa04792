"""A small preconditioned L-BFGS for smooth unconstrained problems.

Why not :func:`scipy.optimize.minimize`: the HCL solver needs (a) a preconditioner as the
initial inverse-Hessian (scipy's L-BFGS-B has none), (b) a stopping rule on a relative
gradient that the caller defines, and (c) no second BLAS thread pool: scipy's Fortran
L-BFGS-B runs its vector algebra on scipy's own OpenBLAS, which competes with NumPy's for
the same cores and made each iteration several times slower on a 2-core machine. The
algorithm is the textbook two-loop recursion (Nocedal and Wright, Algorithm 7.4) with a
backtracking Armijo line search; pairs with non-positive curvature are skipped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lbfgs"]

# Entries decaying geometrically towards an exact zero of the optimum (a factor the data do
# not support) end up as subnormal floats, on which arithmetic is ~100 times slower; they
# are flushed to zero. 1e-150 is far below any meaningful value after the solver's scaling.
_FLUSH = 1e-150


def _dot(a, b):
    # Element-wise product and a pairwise sum, not BLAS ddot: OpenBLAS threads ddot for long
    # vectors, and on a loaded machine each call then waits for a descheduled thread
    # (measured: 0.3 ms per 17k-element dot under load against ~10 us here).
    return float(np.add.reduce(a * b))


def _flush(v):
    v[np.abs(v) < _FLUSH] = 0.0
    return v


def lbfgs(fun_grad, x0, *, precondition=None, max_iter=1000, stop=None, memory=10,
          f_rel_stall=0.0):
    """Minimise ``fun_grad`` (returning ``(f, g)``) from ``x0``.

    Parameters
    ----------
    fun_grad : callable ``x -> (float, ndarray)``
    x0 : ndarray
    precondition : callable ``g -> ndarray``, optional
        Applies a fixed symmetric positive definite approximation of the inverse Hessian.
    max_iter : int
        Maximum number of iterations.
    stop : callable ``(x, f, g) -> bool``, optional
        Convergence test, checked after every iteration (and at ``x0``).
    memory : int
        Number of correction pairs kept.
    f_rel_stall : float
        Also stop when the relative decrease of ``f`` over an iteration is below this.

    Returns
    -------
    x : ndarray
    f : float
    g : ndarray
    n_iter : int
    stopped : bool
        Whether ``stop`` returned True.
    """
    x = np.array(x0, copy=True)
    f, g = fun_grad(x)
    if stop is not None and stop(x, f, g):
        return x, f, g, 0, True
    s_hist, y_hist, rho_hist = [], [], []
    apply_h0 = precondition if precondition is not None else (lambda v: v)
    for it in range(1, max_iter + 1):
        # two-loop recursion
        q = g.copy()
        alphas = []
        for s, y, rho in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
            a = rho * _dot(s, q)
            alphas.append(a)
            q -= a * y
        r = apply_h0(q)
        if y_hist:
            y, s = y_hist[-1], s_hist[-1]
            hy = apply_h0(y)
            r *= _dot(s, y) / _dot(y, hy)
        for (s, y, rho), a in zip(zip(s_hist, y_hist, rho_hist), reversed(alphas)):
            b = rho * _dot(y, r)
            r += (a - b) * s
        direction = -r
        slope = float(_dot(g, direction))
        if slope >= 0:  # not a descent direction: restart from the preconditioned gradient
            s_hist.clear(), y_hist.clear(), rho_hist.clear()
            direction = -apply_h0(g)
            slope = float(_dot(g, direction))
            if slope >= 0:
                return x, f, g, it - 1, False
        step = 1.0
        if not y_hist:  # first step: keep it modest relative to x
            dn = np.sqrt(_dot(direction, direction))
            xn = np.sqrt(_dot(x, x))
            if dn > 0 and xn > 0:
                step = min(1.0, 0.1 * xn / dn)
        for _ in range(40):
            x_new = x + step * direction
            f_new, g_new = fun_grad(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            return x, f, g, it - 1, False
        x_new, g_new = _flush(x_new), _flush(g_new)
        s = x_new - x
        y = g_new - g
        sy = float(_dot(s, y))
        f_old = f
        x, f, g = x_new, f_new, g_new
        if sy > 1e-12 * np.sqrt(_dot(s, s) * _dot(y, y)):
            s_hist.append(s)
            y_hist.append(y)
            rho_hist.append(1.0 / sy)
            if len(s_hist) > memory:
                s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        if stop is not None and stop(x, f, g):
            return x, f, g, it, True
        if f_rel_stall and abs(f_old - f) <= f_rel_stall * max(abs(f), 1e-300):
            return x, f, g, it, False
    return x, f, g, max_iter, False
