"""Growing per-modality subspace solver of the masked objective.

The objective ``f(W) = 1/2 ||W W^T - S_W||_F^2`` depends on ``S_W`` only through the
product ``S_W W``. With the loadings of modality ``m`` restricted to an orthonormal basis
``U_m`` (``W_m = U_m A_m``), ``f`` becomes the same masked problem on the small matrix
``T = U^T S_W U`` (``U = blockdiag(U_m)``, plus a constant), whose iterations never touch
``S_W``. The gradient of the full problem splits into the gradient of the restricted
problem and, per modality, the part ``-2 (I - U_m U_m^T) (S_W W)_m`` outside the basis;
both follow from the stored products ``S_W U_m``. The bases grow by that outside part
(at most the modality's number of columns per step, one pass over ``S_W``), and the
restricted problem is solved only as far as the outside part warrants. See
``docs/estimation.md``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
from scipy.linalg.blas import daxpy as _axpy

from hcl_stats._estimation.lbfgs import _PRECOND_RIDGE, _quartic_step, solve_lbfgs
from hcl_stats._numerics.backend import get_namespace, is_numpy
from hcl_stats._numerics.linalg import serial_blas
from hcl_stats._structure import row_slices

__all__ = ["solve_growing"]

# Fall back to the full-space solver when the bases span more than this share of d (the
# restricted problem then costs about as much per iteration as the full one).
_MAX_SHARE = 0.65

# Each restricted solve stops when its gradient is below this share of the outside part
# measured before the growth step (it is solved no further than the basis warrants)...
_INNER_SHARE = 0.2

# ... and never below this share of the tolerance, so that inner and outer parts together
# meet it.
_INNER_FLOOR = 0.3

# A restricted solve that needs more iterations than this has stalled: the full-space
# solver takes over.
_INNER_CAP = 400

# Outside directions weaker than this share of the strongest one of their modality are
# not added to the basis.
_GROW_RTOL = 1e-3

_MEMORY = 5


class _TwoLoop:
    """L-BFGS inverse Hessian by the two-loop recursion, with pairs that can be embedded.

    Not :class:`hcl_stats._numerics.optim.CompactLBFGS`: on the restricted problems
    (a few thousand variables) the compact form's host-side ``m x m`` work per pair
    cost more than the ``4 m`` in-place BLAS-1 calls of the recursion, and the recursion
    has no state to rebuild when the variables grow. ``H0 = gamma P`` with the
    preconditioner ``P`` passed to :meth:`apply` (it may change between calls; no ``P y``
    is stored), ``gamma = s^T y / y^T y`` of the newest pair.
    """

    def __init__(self, memory):
        self.memory = int(memory)
        self.pairs = []  # (s, y, 1 / s^T y), oldest first

    def reset(self):
        self.pairs = []

    def embed(self, positions, size):
        """Pad the pairs with zeros: old entry ``j`` goes to ``positions[j]``."""
        out = []
        for s, y, rho in self.pairs:
            s2, y2 = np.zeros(size), np.zeros(size)
            s2[positions], y2[positions] = s, y
            out.append((s2, y2, rho))
        self.pairs = out

    def update(self, s, y):
        sy = float(s @ y)
        if not sy > 1e-12 * math.sqrt(float(s @ s) * float(y @ y)):
            return
        if len(self.pairs) == self.memory:
            self.pairs.pop(0)
        self.pairs.append((s, y, 1.0 / sy))

    def apply(self, g, precondition, pg):
        """``-H g``; ``pg = P g`` is used when no pair is stored."""
        if not self.pairs:
            return -pg
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * float(s @ q)
            _axpy(y, q, a=-a)
            alphas.append(a)
        s, y, rho = self.pairs[-1]
        r = precondition(q)
        r *= 1.0 / (rho * float(y @ y))
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            _axpy(s, r, a=a - rho * float(y @ r))
        r *= -1.0
        return r


class _Operator:
    """Products with ``S_W`` (float32 for the iterations, float64 for the final check).

    ``S_W = S - diag(shift)``; products are returned in units of ``S / scale``.
    """

    def __init__(self, S, shift, rows):
        self.S = S
        self.shift = np.zeros(S.shape[0]) if shift is None else np.asarray(shift, float)
        self.rows = rows
        diag = np.diagonal(S) - self.shift
        self.scale = max(float(np.max(np.abs(diag))), np.finfo(float).tiny)
        self.S32 = S if S.dtype == np.float32 else S.astype(np.float32)
        self.n_products = 0

    def columns(self, m, U):
        """``S_W[:, rows_m] U / scale`` (d x k) in float32."""
        sl = self.rows[m]
        out = self.S32[sl].T @ U.astype(np.float32)
        out[sl] -= (self.shift[sl, None] * U).astype(np.float32)
        out *= np.float32(1.0 / self.scale)
        return out

    def exact(self, m, W_cols):
        """``(S_W W)[rows_m] / scale`` in float64 for ``W_cols = W[:, C_m]`` (d x r_m)."""
        sl = self.rows[m]
        block = self.S[sl]
        if block.dtype != np.float64:
            block = block.astype(np.float64)
        out = block @ W_cols
        out -= self.shift[sl, None] * W_cols[sl]
        return out / self.scale

    def sq_norm(self):
        """``||S_W||_F^2 / scale^2`` accumulated in float64."""
        total = 0.0
        S, step = self.S, max(1, 2 ** 17 // max(self.S.shape[0], 1))
        for a in range(0, S.shape[0], step):
            block = np.asarray(S[a:a + step], dtype=np.float64)
            total += float(np.vdot(block, block))
        sd = np.diagonal(S).astype(np.float64)
        total += float(-2.0 * np.dot(self.shift, sd) + np.dot(self.shift, self.shift))
        return total / self.scale ** 2


class _Restricted:
    """The restricted problem: bases, stored products, ``T`` and the L-BFGS state.

    Variables ``x``: the blocks ``A_m`` (``q_m x r_m``) one after the other (modality-
    contiguous, no zero padding). ``Af`` is the same point as a dense ``(q, K)`` array with
    zeros outside the mask (rows in modality order), so that the ``K x K`` Gram matrices
    are single products. The products ``S_W U_m`` are stored (float32) in creation order
    in the preallocated ``P``; bases are preallocated per modality.
    """

    def __init__(self, op, W_init, cols, memory, capacity):
        self.op = op
        self.cols = cols
        self.n_mod = len(cols)
        d, self.K = W_init.shape
        self.r = [c.size for c in cols]
        self.p = [op.rows[m].stop - op.rows[m].start for m in range(self.n_mod)]
        self.capacity = capacity
        self.U = [np.zeros((p, min(p, capacity))) for p in self.p]
        self.U32 = [np.zeros(U.shape, dtype=np.float32) for U in self.U]
        self.q = [0] * self.n_mod
        self.P = np.zeros((d, capacity), dtype=np.float32)
        self.n_cols = 0
        self.creation = [np.zeros(0, dtype=np.int64) for _ in range(self.n_mod)]
        self.T = np.zeros((0, 0))
        self.x = np.zeros(0)
        self.n_products = 0
        W0 = W_init / math.sqrt(op.scale)
        blocks = [W0[op.rows[m]][:, cols[m]] for m in range(self.n_mod)]
        self.pre = []
        self.hess = _TwoLoop(memory)
        self.extend([_orthonormal(b) for b in blocks])
        self.x = np.concatenate([(self.basis(m).T @ b).ravel() for m, b in enumerate(blocks)])
        self.refresh()

    # -- layout ----------------------------------------------------------------------------
    @property
    def size(self):
        return sum(self.q)

    def basis(self, m):
        return self.U[m][:, :self.q[m]]

    def _layout(self):
        q, K = self.q, self.K
        self.qoff = np.concatenate([[0], np.cumsum(q)]).astype(np.int64)
        self.offs = np.concatenate([[0], np.cumsum([a * b for a, b in zip(q, self.r)])]
                                   ).astype(np.int64)
        n = int(self.offs[-1])
        scat = np.full((int(self.qoff[-1]), K), n, dtype=np.int64)
        for m in range(self.n_mod):
            scat[self.qoff[m]:self.qoff[m + 1], self.cols[m]] = (
                self.offs[m] + np.arange(q[m] * self.r[m]).reshape(q[m], self.r[m]))
        flat = scat.ravel()
        valid = np.flatnonzero(flat < n)
        self.scat = scat
        self.scat_cols = [scat[:, c] for c in self.cols]
        self.gath = np.empty(n, dtype=np.int64)
        self.gath[flat[valid]] = valid
        self.c2m = np.empty(self.n_cols, dtype=np.int64)  # modality-order row per P column
        for m in range(self.n_mod):
            self.c2m[self.creation[m]] = self.qoff[m] + np.arange(q[m])
        self.ext = np.zeros(n + 1)  # packed vector with an appended zero, for the scatter
        # [A | D] as dense (q, K) arrays side by side: one product gives A^T D and D^T D
        self.AD = np.zeros((int(self.qoff[-1]), 2 * K))
        self.n = n
        self.B32 = np.zeros(n, dtype=np.float32)
        self.B32_views = self.views(self.B32)

    def views(self, v):
        return [v[self.offs[m]:self.offs[m + 1]].reshape(self.q[m], self.r[m])
                for m in range(self.n_mod)]

    def precondition(self, v):
        out = np.empty_like(v)
        for vb, ob, pm in zip(self.views(v), self.views(out), self.pre):
            np.matmul(vb, pm, out=ob)
        return out

    def dense(self, v):
        """Packed vector -> dense ``(q, K)`` array with zeros outside the mask."""
        self.ext[:-1] = v
        return self.ext.take(self.scat)

    # -- growth ----------------------------------------------------------------------------
    def extend(self, new):
        """Append orthonormal columns ``new[m]`` (orthogonal to ``U_m``) to the bases."""
        old_q, old_T, old_x = list(self.q), self.T, self.x
        rows = self.op.rows
        start = self.n_cols
        for m, Q in enumerate(new):
            k = Q.shape[1]
            self.P[:, start:start + k] = self.op.columns(m, Q)
            self.U[m][:, self.q[m]:self.q[m] + k] = Q
            self.U32[m][:, self.q[m]:self.q[m] + k] = Q
            self.creation[m] = np.concatenate([self.creation[m], start + np.arange(k)])
            self.q[m] += k
            start += k
        self.n_products += 1
        self.n_cols = start
        self._layout()
        qoff = self.qoff
        old_off = np.concatenate([[0], np.cumsum(old_q)]).astype(np.int64)
        T = np.empty((int(qoff[-1]),) * 2)
        for m in range(self.n_mod):  # old blocks
            for j in range(self.n_mod):
                T[qoff[m]:qoff[m] + old_q[m], qoff[j]:qoff[j] + old_q[j]] = \
                    old_T[old_off[m]:old_off[m + 1], old_off[j]:old_off[j + 1]]
        for m, Q in enumerate(new):  # new columns and rows: U^T S_W U_new
            if not Q.shape[1]:
                continue
            Pm = self.P[:, self.creation[m][old_q[m]:]]
            block = np.vstack([self.U32[j][:, :self.q[j]].T @ Pm[rows[j]]
                               for j in range(self.n_mod)]).astype(np.float64)
            pos = slice(qoff[m] + old_q[m], qoff[m + 1])
            own = block[pos]
            block[pos] = 0.5 * (own + own.T)
            T[:, pos] = block
            T[pos, :] = block.T
        self.T = T
        T32 = T.astype(np.float32)
        self.T32_rows = [T32[qoff[m]:qoff[m + 1]] for m in range(self.n_mod)]
        positions = np.concatenate(
            [self.offs[m] + np.arange(old_q[m] * self.r[m]) for m in range(self.n_mod)]
        ).astype(np.int64)
        self.x = np.zeros(self.n)
        self.x[positions] = old_x
        self.hess.embed(positions, self.n)

    def product(self, D):
        """Packed ``T D`` (modality ``m``'s rows of ``T`` times the columns ``C_m``, in
        float32); the dense direction is left in ``AD[:, K:]``."""
        self.ext[:-1] = D
        np.take(self.ext, self.scat, out=self.AD[:, self.K:], mode="clip")
        ext32 = self.ext.astype(np.float32)
        for Tm, sc, out in zip(self.T32_rows, self.scat_cols, self.B32_views):
            np.matmul(Tm, ext32.take(sc), out=out)
        return self.B32.astype(np.float64)

    def refresh(self):
        """Recompute the carried quantities at ``x`` exactly (no accumulated drift)."""
        self.Af = self.AD[:, :self.K]
        np.take(np.append(self.x, 0.0), self.scat, out=self.Af, mode="clip")
        self.G = self.Af.T @ self.Af
        # the preconditioner follows the iterate (the two-loop recursion stores no P y,
        # so the pairs stay valid): fewer restricted iterations than a fixed one
        self.pre = [_scaled_gd(self.G[np.ix_(c, c)]) for c in self.cols]
        self.TA = (self.T @ self.Af).take(self.gath)
        self.grad = 2.0 * ((self.Af @ self.G).take(self.gath) - self.TA)
        self.pgrad = self.precondition(self.grad)

    # -- outer gradient --------------------------------------------------------------------
    def outside(self):
        """Squared norms of ``(S_W W) masked`` and of its part outside the bases, and that
        part per modality, from the stored products (float32)."""
        Ac = self.Af.take(self.c2m, axis=0).astype(np.float32)
        P = self.P[:, :self.n_cols]
        TA32 = self.TA.astype(np.float32)
        R, y2, r2 = [], 0.0, 0.0
        for m, TAm in enumerate(self.views(TA32)):
            Ym = P[self.op.rows[m]] @ Ac[:, self.cols[m]]
            y2 += float(np.vdot(Ym, Ym))
            Ym -= self.U32[m][:, :self.q[m]] @ TAm
            r2 += float(np.vdot(Ym, Ym))
            R.append(Ym)
        return y2, r2, R

    def grow(self, R, floor):
        """Add the outside directions stronger than ``floor``; whether any was added."""
        new, added = [], False
        for m, Rm in enumerate(R):
            room = min(self.p[m], self.U[m].shape[1]) - self.q[m]
            Q = np.zeros((self.p[m], 0))
            if room > 0 and Rm.size:
                u, s, _ = scipy.linalg.svd(Rm.astype(np.float64), full_matrices=False,
                                           check_finite=False)
                keep = np.flatnonzero((s > _GROW_RTOL * s[0]) & (s > floor))
                Q = u[:, keep[:room]]
                U = self.basis(m)
                for _ in range(2):  # against the basis, twice (R is float32-accurate)
                    Q = Q - U @ (U.T @ Q)
                Q = _orthonormal(Q)[:, :room]
            new.append(Q)
            added = added or Q.shape[1] > 0
        if added:
            self.extend(new)
            self.refresh()
        return added

    # -- restricted solve ------------------------------------------------------------------
    def solve(self, target, budget):
        """L-BFGS on the restricted problem until ``||grad|| <= target``.

        Returns ``(iterations, status)`` with status ``"reached"``, ``"budget"`` or
        ``"failed"`` (no descent direction or no decrease along it). The line search is exact (a quartic along the
        direction, :func:`hcl_stats._estimation.lbfgs._quartic_step`); ``A``, ``T A`` and
        ``G`` are carried along the steps.
        """
        x, Af, G, TA, grad, pgrad = self.x, self.Af, self.G, self.TA, self.grad, self.pgrad
        gath, hess, K, AD = self.gath, self.hess, self.K, self.AD
        Df = AD[:, K:]
        G_flat = G.ravel()
        it = 0
        status = "failed"
        while True:
            if float(grad @ grad) <= target * target:
                status = "reached"
                break
            if it >= budget:
                status = "budget"
                break
            D = hess.apply(grad, self.precondition, pgrad)
            slope = float(grad @ D)
            if not slope < 0:
                hess.reset()
                D = -pgrad
                slope = float(grad @ D)
                if not slope < 0:
                    break
            B = self.product(D)
            WDF = AD.T @ Df  # [A^T D; D^T D]
            WD, F = WDF[:K], WDF[K:]
            E = WD + WD.T
            c2 = 0.5 * np.vdot(E, E) + np.vdot(G, F) - float(D @ B)
            step = _quartic_step(slope, c2, np.vdot(E, F), 0.5 * np.vdot(F, F))
            if step is None:
                break
            t = float(step[0])
            it += 1
            D *= t
            _axpy(D, x)
            _axpy(B, TA, a=t)
            Af += t * Df
            _axpy(E.ravel(), G_flat, a=t)
            _axpy(F.ravel(), G_flat, a=t * t)
            grad_new = (Af @ G).take(gath)
            _axpy(TA, grad_new, a=-1.0)
            grad_new *= 2.0
            pgrad_new = self.precondition(grad_new)
            hess.update(D, grad_new - grad)
            grad, pgrad = grad_new, pgrad_new
        self.x, self.Af, self.G, self.TA, self.grad, self.pgrad = x, Af, G, TA, grad, pgrad
        return it, status

    def loadings(self, shape, rows):
        W = np.zeros(shape)
        for m, Am in enumerate(self.views(self.x)):
            W[rows[m], self.cols[m]] = self.basis(m) @ Am
        return W


def _scaled_gd(g):
    """The ScaledGD preconditioner ``(G_{C_m C_m} + eps I)^{-1}`` of ``solve_lbfgs``."""
    g = g + (_PRECOND_RIDGE * np.trace(g) / max(len(g), 1) + 1e-12) * np.eye(len(g))
    return np.linalg.inv(g)


def _orthonormal(A):
    """Orthonormal basis of the column space of ``A`` (QR with a rank check)."""
    if A.shape[1] == 0:
        return A.copy()
    Q, R = scipy.linalg.qr(A, mode="economic", check_finite=False)
    diag = np.abs(np.diagonal(R))
    keep = diag > 1e-10 * max(float(diag.max()), np.finfo(float).tiny)
    return Q[:, keep]


def _exact_check(op, W, cols, rows):
    """Objective and relative gradient at ``W`` from float64 products (scaled units)."""
    sq, inner, num = op.sq_norm(), 0.0, 0.0
    G = W.T @ W
    den = 0.0
    for m, c in enumerate(cols):
        if not c.size:
            continue
        Ym = op.exact(m, W[:, c]) * 1.0
        Wm = W[rows[m]][:, c]
        inner += float(np.vdot(Wm, Ym))
        g = 2.0 * (Wm @ G[np.ix_(c, c)] - Ym)
        num += float(np.vdot(g, g))
        den += float(np.vdot(Ym, Ym))
    f = 0.5 * (sq - 2.0 * inner + float(np.vdot(G, G)))
    return f, math.sqrt(num) / max(math.sqrt(den), np.finfo(float).tiny)


def solve_growing(S_W, W_init, mask, n_features, *, max_iter=1000, tol=1e-5, shift=None,
                  memory=_MEMORY, max_share=_MAX_SHARE, info=None):
    """Minimise the masked objective in growing per-modality subspaces.

    Same problem, stopping rule and return convention as
    :func:`hcl_stats._estimation.lbfgs.solve_lbfgs`, reached with far fewer products with
    ``S_W``. Per modality an orthonormal basis ``U_m`` starts from the initial block; the
    products ``S_W U_m`` are stored and the restricted matrix ``T = U^T S_W U`` is extended
    when columns are added. Each outer step:

    1. from the stored products, the full gradient's parts inside (the restricted
       gradient) and outside the bases, and the full relative gradient
       ``||grad f||_F / ||(S_W W) masked||_F``;
    2. if the outside part dominates, it is orthonormalised and appended (at most ``r_m``
       columns per modality), at the cost of one pass over ``S_W``;
    3. the restricted problem is solved by L-BFGS (two-loop recursion, pairs kept across
       growth steps) with the ScaledGD preconditioner of the current iterate and the
       exact quartic line search of ``solve_lbfgs``, to a share of the outside part, under
       one BLAS thread (a loop of small products).

    The passes over ``S_W`` and the restricted products use float32 (``S_W`` copied once
    when it is float64); the stopping test is
    confirmed by one float64 structured product at the end. The full-space solver
    ``solve_lbfgs`` takes over, from the current point, when the bases pass
    ``max_share * d`` columns, a restricted solve stalls, the float64 check fails, or
    ``S_W`` is not a NumPy array.

    Parameters
    ----------
    S_W : ndarray of shape (d, d)
        Denoised covariance (float64 or float32), or the covariance when ``shift`` is
        given; it is not modified.
    W_init : ndarray of shape (d, K)
        Starting loadings (zeros outside ``mask`` are enforced).
    mask : ndarray of bool of shape (d, K)
        Free entries.
    n_features : sequence of int
        Modality widths.
    max_iter : int
        Iterations in total (restricted iterations, plus those of a fall-back).
    tol : float
        Tolerance on the full problem's relative gradient.
    shift : ndarray of shape (d,), optional
        Diagonal subtracted from ``S_W`` implicitly (``S_W - diag(shift)`` is the matrix of
        the objective), so that no denoised copy is needed.
    memory : int
        L-BFGS pairs.
    max_share : float
        Share of ``d`` the bases may span before the fall-back.
    info : dict, optional
        Filled with ``n_outer``, ``n_products`` (passes over ``S_W``, the final check
        included), ``basis_size`` and ``fallback`` (the reason, or None).

    Returns
    -------
    W : ndarray of shape (d, K)
        Exact zeros outside ``mask``.
    f, n_iter, converged, rel_grad
        As in :func:`hcl_stats._estimation.lbfgs.solve_lbfgs`.
    """
    info = {} if info is None else info
    d, K = W_init.shape
    rows = row_slices(n_features)
    cols = [np.flatnonzero(mask[sl.start]) for sl in rows]
    info.update(n_outer=0, n_products=0, basis_size=0, fallback=None)
    if not is_numpy(get_namespace(S_W)):
        return _fallback(S_W, W_init, mask, n_features, shift, max_iter, tol, 0, info,
                         "namespace")
    if sum(min(c.size, sl.stop - sl.start) for c, sl in zip(cols, rows)) > max_share * d:
        return _fallback(S_W, W_init, mask, n_features, shift, max_iter, tol, 0, info,
                         "small")
    op = _Operator(S_W, shift, rows)
    capacity = int(max_share * d) + sum(c.size for c in cols) + 1
    prob = _Restricted(op, np.where(mask, W_init, 0.0), cols, memory, capacity)
    n_iter, reason = _outer_steps(prob, d, max_iter=max_iter, tol=tol, max_share=max_share,
                                  info=info)
    info["basis_size"] = prob.size
    W = prob.loadings((d, K), rows)
    f, rel = _exact_check(op, W, cols, rows)
    info["n_products"] = prob.n_products + 1
    scale = op.scale
    if rel <= tol or reason == "max_iter":
        return W * math.sqrt(scale), f * scale ** 2, n_iter, rel <= tol, rel
    return _fallback(S_W, W * math.sqrt(scale), mask, n_features, shift, max_iter, tol,
                     n_iter, info, reason or "float64 check")


def _outer_steps(prob, d, *, max_iter, tol, max_share, info):
    """The outer loop of :func:`solve_growing`; returns ``(n_iter, reason)`` with the
    reason for a fall-back (``None`` when converged on the stored products)."""
    n_iter, reason, target_out = 0, None, None
    while True:
        info["n_outer"] += 1
        y2, r2, R = prob.outside()
        denom, g_out = math.sqrt(y2), 2.0 * math.sqrt(r2)
        g_in = math.sqrt(float(prob.grad @ prob.grad))
        if math.hypot(g_in, g_out) <= tol * denom:
            break
        if n_iter >= max_iter:
            reason = "max_iter"
            break
        if g_out > max(g_in, 0.5 * tol * denom):
            if not prob.grow(R, 1e-3 * tol * denom):
                reason = "no growth"
                break
            if prob.size > max_share * d:
                reason = "basis size"
                break
            target_out = g_out
        elif target_out is None:
            target_out = g_out
        else:
            target_out = min(target_out, max(g_out, g_in))
        target = max(_INNER_SHARE * target_out, _INNER_FLOOR * tol * denom)
        budget = min(_INNER_CAP, max_iter - n_iter)
        with serial_blas():  # a loop of small dense products: one BLAS thread
            it, status = prob.solve(target, budget)
        n_iter += it
        if status == "failed" or (status == "budget" and budget == _INNER_CAP):
            reason = "stalled"
            break
        prob.refresh()
    return n_iter, reason


def _fallback(S_W, W, mask, n_features, shift, max_iter, tol, n_iter, info, reason):
    """Finish with the full-space solver from ``W``."""
    info["fallback"] = reason
    xp = get_namespace(S_W)
    if is_numpy(xp):  # float64 for the exact products of solve_lbfgs
        if shift is None:
            S_W = np.asarray(S_W, dtype=np.float64)
        else:
            S_W = np.array(S_W, dtype=np.float64)
            S_W[np.diag_indices_from(S_W)] -= shift
    elif shift is not None:
        S_W = S_W - xp.eye(S_W.shape[0], dtype=S_W.dtype) * xp.asarray(
            np.asarray(shift, dtype=float), dtype=S_W.dtype)
    W, f, it, converged, rel = solve_lbfgs(S_W, W, mask, n_features,
                                           max_iter=max(max_iter - n_iter, 0), tol=tol)
    return W, f, n_iter + it, converged, rel
