"""Preconditioned L-BFGS with an exact quartic line search: the default solver of the masked objective.

Per iteration of :func:`solve_lbfgs` (variables: the free entries, :class:`_PackedLayout`):

* **One product** with ``S_W``: rows of modality ``m`` times the columns its subsets
  own, so the structural zeros cost nothing. ``S_W W`` is carried along as
  ``A <- A + t B`` with ``B = S_W D`` for the search direction ``D``.
* **Exact line search.** Along a line the objective is a quartic polynomial in the step
  ``t`` whose coefficients follow from ``A``, ``B`` and ``K x K`` products; its global
  minimiser over ``t > 0`` is the step (:func:`_quartic_step`). No trial point costs
  another product, and the decrease is computed from the coefficients, without the
  cancellation of evaluating ``||S_W||^2 - 2 tr(W^T S_W W) + ||W^T W||^2`` twice.
* **Cheap products first.** With float64 input the products use a float32 copy of
  ``S_W`` (half the memory traffic) until the relative gradient reaches
  ``max(tol, 1e-5)``; the gradient is then recomputed with one float64 product and the
  iterations continue in float64 until ``tol`` holds there. A stall in float32 (no
  halving in 50 iterations) is checked the same way: if the float64 gradient agrees,
  it is a plateau of the objective and float32 goes on from the exact ``S_W W``;
  otherwise rounding is the cause and float64 takes over. Reported values are float64.
  On a device without float64 everything runs in float32 and the iterations stop when
  progress stalls near the float32 floor.
* The initial inverse Hessian is the ScaledGD preconditioner
  ``V_m -> V_m (G_{C_m C_m} + eps I)^{-1}`` with ``G = W^T W`` at the start, which evens
  out the curvature of strong and weak factors; the L-BFGS matrix is applied in compact
  form (:class:`hcl_stats._numerics.optim.CompactLBFGS`).
* **Block weights** (``block_weights``, for a pairwise covariance of incomplete data):
  the objective ``1/2 sum_{m,l} w_ml ||W_m W_l^T - S_W[m, l]||_F^2`` is minimised by the
  same iteration, with the products on a block-weighted copy of ``S_W`` and the
  ``K x K`` statistics kept per modality and combined by the weights
  (:class:`_WeightedLayout`); ``None`` runs the unweighted layout.
* **Small problems** (NumPy float64 ``S_W`` with ``d^2 K <= 2^20``, as for tables of a
  few hundred features) run the same iteration on dense ``(d, K)`` arrays that are zero
  outside the mask (:class:`_DenseLayout`), in float64 throughout: there a whole product
  ``S_W W`` costs less than the array calls of the per-modality layout, whose count, not
  its arithmetic, sets the time of an iteration.
  Once the relative gradient is below ``0.1`` the directions there are truncated Newton
  steps (:func:`_newton_direction`: preconditioned conjugate gradients on the exact
  Hessian, whose product costs one float32 ``[W W^T - S_W, W] [V; V^T W]`` and one
  ``V G``), which reach ``tol`` in a handful of steps where L-BFGS converges linearly; the
  exact line search and the stopping rule are the same.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import device as array_device
from scipy.linalg import blas

from hcl_stats._numerics.backend import (
    get_namespace,
    is_numpy,
    to_numpy,
)
from hcl_stats._numerics.optim import CompactLBFGS
from hcl_stats._structure import row_slices

# The float32 products of solve_lbfgs carry a relative error of about 1e-7 per entry, which
# accumulates in the carried S_W W; below this relative gradient the float64 products take over.
_FLOAT32_FLOOR = 1e-5


# ... as they do when the float32 phase has not halved the relative gradient in this many steps
# and a float64 product shows that rounding is the cause (the float32 relative gradient is off
# by more than _AGREE). A stall whose gradient float64 confirms is a plateau of the non-convex
# objective (on the authors' design the relative gradient sits on such plateaus for 50 to 100
# iterations); the float32 phase then goes on from the exact S_W W.
_STALL_ITER = 50


_AGREE = 0.1


# On a device without float64 a stall ends the iterations, but only this close to the floor.
_ROUNDING_ZONE = 100.0


# Ridge of the ScaledGD preconditioner, relative to the mean eigenvalue of G_{C_m C_m}
# (0.3 took fewer iterations than smaller ridges on the authors' design).
_PRECOND_RIDGE = 0.3


# Dense layout up to this d^2 K (float64 NumPy): a full product S_W W of 2 d^2 K flops then
# costs about what the per-modality layout spends on the glue of its array calls.
_DENSE_WORK = 2 ** 20


# On the dense layout, truncated Newton directions below this relative gradient (0.1 took
# the fewest products on the package's real-data sets; from the start, far from the optimum,
# the conjugate gradients ran long) ...
_NEWTON_FROM = 0.1

# ... with at most this many Hessian products per direction, solved to the relative residual
# min(0.5, sqrt(relative gradient)) (a superlinear forcing term, Eisenstat and Walker 1996),
# but not below _OVERSOLVE tol / (relative gradient): a residual that leaves the next
# relative gradient near half of tol is all the last direction needs (Kelley 1995, 6.3).
_NEWTON_CG = 40
_OVERSOLVE = 0.5


# ... whose Hessian products (an approximation of the Hessian only steers the direction:
# the gradient and the stopping rule stay float64) run in float32 for the d x d part, half
# the arithmetic of the direction's largest product.
_HESSIAN_DTYPE = np.float32

# BLAS on contiguous float64 vectors: ``y <- a x + y`` in place, and ``x . y`` as a float
_axpy, _dot = blas.daxpy, blas.ddot


def _quartic_step(c1, c2, c3, c4):
    """Global minimiser over ``t > 0`` of ``q(t) = c1 t + c2 t^2 + c3 t^3 + c4 t^4``.

    ``c1 < 0`` (a descent direction) and ``c4 > 0`` (or ``c4 = 0`` with ``q`` bounded below).
    The roots of the quadratic ``q''`` split ``t > 0`` into intervals on which ``q'`` is
    monotone; each interval where ``q'`` goes from negative to positive holds one local
    minimiser, found by safeguarded Newton on ``q'``. Scalar arithmetic, because
    ``numpy.roots`` (a companion-matrix eigenproblem) cost more than the rest of an
    iteration's small-matrix work, and closed-form cubic roots lose accuracy when the
    quartic term is small. Returns ``(t, q(t))``, or ``None`` when ``q`` does not decrease.
    """
    # Python floats (the coefficients may come as NumPy scalars, whose arithmetic costs
    # several times more in this scalar loop; the IEEE results are the same)
    c1, c2, c3, c4 = float(c1), float(c2), float(c3), float(c4)
    a, b, c, e = 4.0 * c4, 3.0 * c3, 2.0 * c2, c1  # q'(t) = a t^3 + b t^2 + c t + e

    def dq(t):
        return ((a * t + b) * t + c) * t + e

    # positive roots of q''(t) = 3a t^2 + 2b t + c (numerically stable quadratic formula)
    A2, B2 = 3.0 * a, 2.0 * b
    splits = []
    if A2 != 0.0:
        disc = B2 * B2 - 4.0 * A2 * c
        if disc >= 0.0:
            qq = -0.5 * (B2 + math.copysign(math.sqrt(disc), B2))
            splits = [qq / A2] + ([c / qq] if qq != 0.0 else [])
    elif B2 != 0.0:
        splits = [-c / B2]
    splits = sorted(t for t in splits if t > 0.0 and math.isfinite(t))
    # an upper end where q' > 0
    hi = max(splits + [1.0])
    for _ in range(200):
        if dq(hi) > 0.0:
            break
        hi *= 2.0
    else:
        return None
    ends = [0.0] + splits + [hi]
    best = None
    for lo, up in zip(ends[:-1], ends[1:]):
        if not (dq(lo) < 0.0 < dq(up)):
            continue
        t = 0.5 * (lo + up)
        for _ in range(100):  # q'(t) and q''(t) = (A2 t + B2) t + c written out (hot loop)
            value = ((a * t + b) * t + c) * t + e
            if value > 0.0:
                up = t
            else:
                lo = t
            slope = (A2 * t + B2) * t + c
            t_new = t - value / slope if slope > 0.0 else 0.5 * (lo + up)
            if not lo < t_new < up:
                t_new = 0.5 * (lo + up)
            if abs(t_new - t) <= 1e-15 * t_new:
                t = t_new
                break
            t = t_new
        value = (((c4 * t + c3) * t + c2) * t + c1) * t
        if best is None or value < best[1]:
            best = (t, value)
    return best


class _PackedLayout:
    """The free entries of ``W`` packed modality by modality, and the products on them.

    The variables are kept as ``(p_m, r_m)`` blocks (``r_m`` factors load on modality
    ``m``) in one vector. ``where[i, k]`` is the position of ``W[i, k]`` among the packed
    entries, or ``n_free`` (an appended zero) outside the mask; modality ``m``'s rows of
    ``S_W W`` need ``W[:, C_m]`` on all rows, which one ``take`` builds from the packed
    vector. At these sizes an iteration costs the number of array calls more than their
    arithmetic, so every layout change is a single call, and the ``K x K`` products are
    summed modality by modality (cheaper than on zero-padded ``(d, K)`` arrays).
    ``S_W`` is scaled by its largest diagonal entry (``scale``).
    """

    def __init__(self, S_W, mask, n_features):
        xp = self.xp = get_namespace(S_W)
        self.dev, self.dtype = array_device(S_W), S_W.dtype
        self.exact64 = self.dtype == xp.float64
        self.mixed = self.exact64  # float32 products first (module docstring)
        self.kw = {"dtype": self.dtype, "device": self.dev}
        self.d, self.K = d, K = mask.shape
        self.rows = rows = row_slices(n_features)
        self.cols = cols = [np.flatnonzero(mask[sl.start]) for sl in rows]
        self.active = active = [m for m in range(len(rows)) if cols[m].size]
        self.shapes = [(rows[m].stop - rows[m].start, cols[m].size) for m in active]
        self.offs = np.concatenate([[0], np.cumsum([p * r for p, r in self.shapes])]).astype(int)
        n_free = self.n_free = int(self.offs[-1])
        where = np.full((d, K), n_free, dtype=np.int64)
        for i, m in enumerate(active):
            p, r = self.shapes[i]
            where[rows[m], cols[m]] = self.offs[i] + np.arange(p * r).reshape(p, r)
        self.to_cols = [xp.asarray(where[:, cols[m]].ravel(), device=self.dev) for m in active]
        # flat positions of G[C_m, C_m] in G.ravel(): gathers and scatter-adds of the K x K
        # blocks are then single calls
        self.g_flat = [(cols[m][:, None] * K + cols[m][None, :]).ravel() for m in active]
        self.g_all = np.concatenate(self.g_flat)
        self.scale = max(float(xp.max(xp.abs(xp.linalg.diagonal(S_W)))), np.finfo(float).tiny)
        self.S_hi = S_hi = self._weigh(S_W / self.scale)
        S_lo = xp.astype(S_hi, xp.float32) if self.exact64 else S_hi
        self.rows_hi = [S_hi[rows[m], :] for m in active]
        self.rows_lo = [S_lo[rows[m], :] for m in active]
        self.zero = {dt: xp.zeros((1,), dtype=dt, device=self.dev)
                     for dt in {self.dtype, S_lo.dtype}}
        if is_numpy(xp):  # the ndarray methods skip two Python-level wrappers per call
            self._reshape, self._take, self._concat = (np.ndarray.reshape, np.ndarray.take,
                                                       np.concatenate)
            self.host = self.device = lambda a: a
        else:
            self._reshape, self._take, self._concat = xp.reshape, xp.take, xp.concat
            self.host = lambda a: np.asarray(to_numpy(a), dtype=float)
            self.device = lambda a: xp.asarray(a, **self.kw)

    def _weigh(self, S_hi):
        """The matrix of the products (the weighted layout weighs its blocks in place)."""
        return S_hi

    def split(self, v):
        """Packed vector -> list of ``(p_m, r_m)`` views."""
        return [self._reshape(v[self.offs[i]:self.offs[i + 1]], self.shapes[i])
                for i in range(len(self.shapes))]

    def join(self, parts):
        return self._concat([self._reshape(p, (-1,)) for p in parts])

    def product(self, v, cheap):
        """Packed ``S_W V``: modality m's rows times the columns it owns (float32 if cheap)."""
        blocks = self.rows_lo if cheap else self.rows_hi
        ext = self._concat([v, self.zero[v.dtype]])
        if ext.dtype != blocks[0].dtype:
            ext = self.xp.astype(ext, blocks[0].dtype)
        out = self.join([blocks[i] @ self._reshape(self._take(ext, self.to_cols[i]),
                                                   (self.d, self.shapes[i][1]))
                         for i in range(len(self.shapes))])
        return self.xp.astype(out, self.dtype) if out.dtype != self.dtype else out

    def scatter(self, parts):
        """Per-modality ``r_m x r_m`` blocks -> their sum placed in ``(K, K)`` (host)."""
        flat = self.host(self._concat([self._reshape(p, (-1,)) for p in parts]))
        return np.bincount(self.g_all, weights=flat,
                           minlength=self.K * self.K).reshape(self.K, self.K)

    def gram(self, U, V):
        """``U^T V`` for packed ``U``, ``V``, as a ``(K, K)`` host array."""
        return self.scatter([u.T @ v for u, v in zip(self.split(U), self.split(V))])

    def line_grams(self, x, D):
        """``(W^T D, D^T D)`` as ``(K, K)`` host arrays (the line search's products)."""
        Ds = self.split(D)
        WD = self.scatter([xb.T @ db for xb, db in zip(self.split(x), Ds)])
        return WD, self.scatter([db.T @ db for db in Ds])

    def curvatures(self, G):
        """Per active modality, the flat ``2 G`` from which its ``r_m x r_m`` block is taken."""
        G2 = 2.0 * G.ravel()
        return [G2] * len(self.shapes)

    def gradient(self, x, A, G):
        """``2 (W G - S_W W)`` on the free entries."""
        H2 = self.curvatures(G)
        return self.join([xb @ self.device(H2[i][self.g_flat[i]].reshape(self.shapes[i][1:] * 2))
                          - 2.0 * ab
                          for i, (xb, ab) in enumerate(zip(self.split(x), self.split(A)))])

    @staticmethod
    def inner(U, V):
        """The inner product of two ``K x K`` statistics in the quartic term."""
        return np.vdot(U, V)

    def line_terms(self, G, E, F):
        """``<E, E>, <G, F>, <E, F>, <F, F>`` in the inner product of :meth:`inner`."""
        return np.vdot(E, E), np.vdot(G, F), np.vdot(E, F), np.vdot(F, F)

    def start_curvature(self, W0, m):
        """``G0[C_m, C_m]`` of the scaled start ``W0`` (host)."""
        return W0[:, self.cols[m]].T @ W0[:, self.cols[m]]

    def pack(self, W):
        """Free entries of the (scaled) host array ``W``, packed, in the namespace of ``S_W``."""
        return self.xp.asarray(np.concatenate([W[self.rows[m]][:, self.cols[m]].ravel()
                                               for m in self.active]), **self.kw)

    def unpack(self, x):
        """Packed entries -> ``(d, K)`` NumPy array in the units of ``S_W``."""
        W = np.zeros((self.d, self.K))
        for i, xb in enumerate(self.split(x)):
            m = self.active[i]
            W[self.rows[m], self.cols[m]] = np.asarray(to_numpy(xb), dtype=float)
        return W * math.sqrt(self.scale)

    def preconditioner(self, W0):
        """ScaledGD: ``V_m -> V_m (G0_{C_m C_m} + eps I)^{-1}`` from the scaled start ``W0``."""
        pre = [self.xp.asarray(_scaled_gd(self.start_curvature(W0, m)), **self.kw)
               for m in self.active]

        def precondition(v):
            return self.join([vb @ pre[i] for i, vb in enumerate(self.split(v))])

        return precondition

    def squared_norm(self):
        """``||S_W||^2`` (scaled)."""
        return float(self.xp.sum(self.S_hi * self.S_hi))

    def objective(self, x, A, G):
        """``1/2 (||S_W||^2 - 2 <W, S_W W> + ||W^T W||^2)`` in the units of ``S_W``."""
        f = 0.5 * (self.squared_norm() - 2.0 * float(x @ A) + float(self.inner(G, G)))
        return f * self.scale ** 2


def _scaled_gd(g):
    """``(g + eps I)^{-1}`` for a block ``g`` of the start's curvature (the ScaledGD block)."""
    g = g + (_PRECOND_RIDGE * np.trace(g) / len(g) + 1e-12) * np.eye(len(g))
    return np.linalg.inv(g)


class _DenseLayout:
    """The variables of :func:`solve_lbfgs` as a dense ``(d, K)`` float64 NumPy array that is
    zero outside the mask, flattened; the products on it are whole-array products.

    The same iteration as on :class:`_PackedLayout` (gradients and directions stay zero
    outside the mask, so the iterates are the same in exact arithmetic), with one array
    call per product instead of one per modality, and no float32 phase. For small ``d``
    (see ``_DENSE_WORK``).
    """

    xp, dtype, dev = np, np.float64, None
    mixed, exact64 = False, True

    def __init__(self, S_W, mask, n_features):
        self.d, self.K = mask.shape
        self.rows = row_slices(n_features)
        self.maskf = np.asarray(mask, dtype=np.float64)
        self.mask2 = 2.0 * self.maskf
        self.mask2_low = self.mask2.astype(_HESSIAN_DTYPE)  # (for every Newton direction)
        # the columns each modality's rows own (mask rows are constant within a modality)
        self.cols = [np.flatnonzero(mask[sl.start]) if sl.stop > sl.start else
                     np.zeros(0, dtype=int) for sl in self.rows]
        self.n_free = self.d * self.K
        self.scale = max(float(np.max(np.abs(np.diagonal(S_W)))), np.finfo(float).tiny)
        self.S_hi = np.asarray(S_W, dtype=np.float64) / self.scale
        # flat positions of each row's own modality in a (d, M K) array whose m-th K
        # columns belong to modality m (see _by_modality)
        M, K = len(self.rows), self.K
        member = np.repeat(np.arange(M), [sl.stop - sl.start for sl in self.rows])
        self.pick = (np.arange(self.d)[:, None] * (M * K) + member[:, None] * K
                     + np.arange(K)).ravel()

    def _mat(self, v):
        return v.reshape(self.d, self.K)

    def _by_modality(self, V, side):
        """``V_m B_m`` on every modality's rows, flattened, for the ``(K, K)`` blocks
        ``B_m`` laid side by side in ``side`` (``(K, M K)``): ``V`` times it holds every
        modality's product on every row, and one ``take`` keeps each row's own (two array
        calls, where a loop over the modalities costs two per modality)."""
        return np.dot(V, side).take(self.pick)

    def product(self, v, cheap):
        """``S_W V`` on the mask (zero outside), flattened."""
        del cheap
        return ((self.S_hi @ self._mat(v)) * self.maskf).ravel()

    def gram(self, U, V):
        """``U^T V`` as a ``(K, K)`` array."""
        return self._mat(U).T @ self._mat(V)

    def line_grams(self, x, D):
        """``(W^T D, D^T D)`` (the line search's products)."""
        Dm = self._mat(D)
        return self._mat(x).T @ Dm, Dm.T @ Dm

    @staticmethod
    def line_terms(G, E, F):
        """``<E, E>, <G, F>, <E, F>, <F, F>`` (:meth:`_PackedLayout.line_terms`)."""
        return np.vdot(E, E), np.vdot(G, F), np.vdot(E, F), np.vdot(F, F)

    def gradient(self, x, A, G):
        """``2 (W G - S_W W)`` on the mask (zero outside)."""
        out = self._mat(x) @ G
        out *= self.mask2
        return _axpy(A, out.reshape(-1), a=-2.0)  # (exact: -2 A has no rounding)

    def hessian_operator(self, x, G):
        """``v -> H v``, the Hessian of the objective (scaled, on the mask) at ``x`` with
        ``G = W^T W``: ``2 ((W W^T - S_W) V + V G + W (V^T W))``, zero outside the mask.

        ``(W W^T - S_W) V + W (V^T W)`` is one product ``[W W^T - S_W, W] [V; V^T W]``; it
        and ``V G`` run in ``_HESSIAN_DTYPE`` (float32), and the masking returns float64.
        """
        W = self._mat(x)
        d, K = self.d, self.K
        low = _HESSIAN_DTYPE
        left = np.empty((d, d + K), dtype=low)  # once per direction
        np.subtract(W @ W.T, self.S_hi, out=left[:, :d])
        left[:, d:] = W
        # (W_low a contiguous copy: V^T W reads it faster than the columns of left)
        W_low, G_low, mask2 = W.astype(low), G.astype(low), self.mask2_low
        right = np.empty((d + K, K), dtype=low)  # refilled by every product
        V_low, VW = right[:d], right[d:]
        # views and buffers made once: at these sizes a product costs its array calls, so
        # each product is the seven calls below (the same operations, hence the same bits)
        V_flat, V_lowT = V_low.reshape(-1), V_low.T
        out, VG = np.empty((d, K), dtype=low), np.empty((d, K), dtype=low)
        out_flat, dot, add, multiply = out.reshape(-1), np.dot, np.add, np.multiply

        def hessian_product(v):
            V_flat[...] = v
            dot(V_lowT, W_low, out=VW)
            dot(left, right, out=out)
            add(out, dot(V_low, G_low, out=VG), out=out)
            multiply(out, mask2, out=out)
            return out_flat.astype(np.float64)

        return hessian_product

    def pack(self, W):
        """The (scaled) ``W``, zero outside the mask, flattened (a new array)."""
        return (np.asarray(W, dtype=np.float64) * self.maskf).ravel()

    def unpack(self, x):
        """``(d, K)`` loadings in the units of ``S_W``."""
        return self._mat(x) * math.sqrt(self.scale)

    def preconditioner(self, W0):
        """ScaledGD (:meth:`_PackedLayout.preconditioner`): each modality's rows times its
        block's inverse, placed in a ``(K, K)`` matrix that is zero outside its columns;
        the blocks side by side, applied as by :meth:`_by_modality`.
        """
        d, K = self.d, self.K
        blocks = np.zeros((K, len(self.rows) * K))
        for m, cols in enumerate(self.cols):
            if cols.size:
                blocks[np.ix_(cols, m * K + cols)] = _scaled_gd(self.start_curvature(W0, m))
        pick, dot = self.pick, np.dot  # (_by_modality's two calls, without its frame)

        def precondition(v):
            return dot(v.reshape(d, K), blocks).take(pick)

        return precondition

    def start_curvature(self, W0, m):
        """``G0[C_m, C_m]`` of the scaled start ``W0``."""
        return W0[:, self.cols[m]].T @ W0[:, self.cols[m]]

    def objective(self, x, A, G):
        """As :meth:`_PackedLayout.objective`."""
        f = 0.5 * (float(np.sum(self.S_hi * self.S_hi)) - 2.0 * float(x @ A)
                   + float(np.vdot(G, G)))
        return f * self.scale ** 2


class _BlockWeights:
    """The block-weighted objective's pieces, shared by :class:`_WeightedLayout` and
    :class:`_DenseWeightedLayout`.

    ``f(W) = 1/2 sum_{m,l} w_ml ||W_m W_l^T - S_W[m, l]||_F^2`` with ``w`` symmetric and
    non-negative. With ``Omega`` the ``d x d`` matrix equal to ``w_ml`` on block
    ``(m, l)``, ``f = 1/2 (||S_W||_w^2 - 2 <W, (Omega * S_W) W> + sum_ml w_ml <G_m, G_l>)``
    where ``G_m = W_m^T W_m``, so the products use the weighted copy ``Omega * S_W`` (built
    in place of the scaled copy), the ``K x K`` statistics are kept per modality (a stack
    of ``(K, K)`` arrays, host) and combined by ``w``: the gradient on modality ``m`` is
    ``2 (W_m H_m - [(Omega * S_W) W]_m)`` with ``H_m = sum_l w_ml G_l``, and ``H_m`` at the
    start gives the preconditioner. ``w_stack`` holds the weights between the modalities
    of the stacks.
    """

    def _weigh(self, S_hi):
        """Weigh the blocks of the scaled copy in place; keep ``||S_W||_w^2``."""
        rows, total = self.rows, 0.0
        for m, rm in enumerate(rows):
            for l, rl in enumerate(rows):
                block, w = S_hi[rm, rl], float(self.weights[m, l])
                total += w * float(self.xp.sum(block * block))
                if w != 1.0:
                    S_hi[rm, rl] = block * w
        self._squared_norm = total
        return S_hi

    def squared_norm(self):
        return self._squared_norm

    def combine(self, G):
        """``H_m = sum_l w_ml G_l`` for the stack ``G``."""
        return (self.w_stack @ G.reshape(len(G), -1)).reshape(G.shape)

    def inner(self, U, V):
        return float(np.vdot(U, self.combine(V)))

    def line_terms(self, G, E, F):
        wE, wF = self.combine(E), self.combine(F)
        return np.vdot(E, wE), np.vdot(G, wF), np.vdot(E, wF), np.vdot(F, wF)

    def start_curvature(self, W0, m):
        row_weight = np.concatenate([np.full(sl.stop - sl.start, self.weights[m, l])
                                     for l, sl in enumerate(self.rows)])
        block = W0[:, self.cols[m]]
        return block.T @ (block * row_weight[:, None])


class _WeightedLayout(_BlockWeights, _PackedLayout):
    """:class:`_PackedLayout` for the block-weighted objective (:class:`_BlockWeights`);
    the stacks hold the active modalities."""

    def __init__(self, S_W, mask, n_features, weights):
        self.weights = np.asarray(weights, dtype=float)
        super().__init__(S_W, mask, n_features)
        self.w_stack = self.weights[np.ix_(self.active, self.active)]
        n = len(self.active)
        # scatter into a per-modality stack: modality i's entries at offset i K^2
        KK = self.K * self.K
        self.g_stack = np.concatenate([i * KK + g for i, g in enumerate(self.g_flat)])
        self.stack_shape = (n, self.K, self.K)

    def scatter(self, parts):
        """Per-modality ``r_m x r_m`` blocks -> a ``(n_active, K, K)`` stack (host)."""
        flat = self.host(self._concat([self._reshape(p, (-1,)) for p in parts]))
        return np.bincount(self.g_stack, weights=flat,
                           minlength=int(np.prod(self.stack_shape))).reshape(self.stack_shape)

    def curvatures(self, G):
        return list(2.0 * self.combine(G).reshape(len(G), -1))


class _DenseWeightedLayout(_BlockWeights, _DenseLayout):
    """:class:`_DenseLayout` for the block-weighted objective (:class:`_BlockWeights`):
    the stacks hold every modality. The same iteration as on :class:`_WeightedLayout` in
    exact arithmetic, with the dense layout's truncated Newton phase
    (:meth:`hessian_operator`) and no float32 phase.

    The per-modality products are whole-array calls, as on the dense layout: with ``V``
    laid out side by side by modality (``(d, M K)``, row ``i`` of modality ``m`` in the
    ``m``-th ``K`` columns, zero elsewhere), ``U^T`` times it holds every ``U_m^T V_m``;
    ``W_m H_m`` on every modality's rows is :meth:`_DenseLayout._by_modality`.
    """

    def __init__(self, S_W, mask, n_features, weights):
        self.weights = np.asarray(weights, dtype=float)
        super().__init__(S_W, mask, n_features)
        self.S_hi = self._weigh(self.S_hi)
        self.w_stack = self.weights
        widths = [sl.stop - sl.start for sl in self.rows]
        # Omega, for the Hessian's (Omega * (W W^T) - Omega * S_W) V
        self.omega = np.repeat(np.repeat(self.weights, widths, axis=0), widths, axis=1)

    def _side(self, V):
        """``V`` laid out side by side by modality, shape ``(d, M K)``."""
        out = np.zeros((self.d, len(self.rows) * self.K), dtype=V.dtype)
        out.put(self.pick, V)
        return out

    def _stack(self, U, side):
        """The stack of ``U_m^T V_m``, shape ``(M, K, K)``, from ``side = _side(V)``."""
        K = self.K
        return (U.T @ side).reshape(K, -1, K).transpose(1, 0, 2)

    def _rows_times(self, W, H):
        """``W_m H_m`` on every modality's rows, flattened (``H`` a stack)."""
        return self._by_modality(W, H.transpose(1, 0, 2).reshape(self.K, -1))

    def gram(self, U, V):
        """The stack of ``U_m^T V_m``, shape ``(M, K, K)``."""
        return self._stack(self._mat(U), self._side(self._mat(V)))

    def line_grams(self, x, D):
        Dm = self._mat(D)
        side = self._side(Dm)
        return self._stack(self._mat(x), side), self._stack(Dm, side)

    def gradient(self, x, A, G):
        """``2 (W_m H_m - [(Omega * S_W) W]_m)`` on the mask (zero outside)."""
        out = self._rows_times(self._mat(x), self.combine(G))
        out *= self.mask2.reshape(-1)
        return _axpy(A, out, a=-2.0)

    def hessian_operator(self, x, G):
        """``v -> H v`` of the weighted objective at ``x`` (``G`` its stack): on modality
        ``m``, ``2 ([(Omega * (W W^T - S_W)) V]_m + V_m H_m + W_m sum_l w_ml V_l^T W_l)``,
        zero outside the mask, in ``_HESSIAN_DTYPE`` like :meth:`_DenseLayout.hessian_operator`.
        """
        W = self._mat(x)
        low = _HESSIAN_DTYPE
        R = (W @ W.T) * self.omega
        R -= self.S_hi
        R, W_low = R.astype(low), W.astype(low)
        W_side = self._side(W_low)
        H_low, mask2 = self.combine(G).astype(low), self.mask2.reshape(-1).astype(low)

        def hessian_product(v):
            V = v.reshape(self.d, self.K).astype(low)
            Q = self.combine(self._stack(V, W_side))
            out = (R @ V).reshape(-1)
            out += self._rows_times(V, H_low)
            out += self._rows_times(W_low, Q)
            out *= mask2
            return out.astype(np.float64)

        return hessian_product

    def objective(self, x, A, G):
        """``1/2 (||S_W||_w^2 - 2 <W, (Omega * S_W) W> + sum_ml w_ml <G_m, G_l>)``."""
        f = 0.5 * (self.squared_norm() - 2.0 * float(x @ A) + self.inner(G, G))
        return f * self.scale ** 2


def _layout(S_W, mask, n_features, block_weights=None):
    """:class:`_DenseLayout` for small float64 NumPy problems and :class:`_PackedLayout`
    for the others; with block weights their weighted forms."""
    d, K = mask.shape
    dense = isinstance(S_W, np.ndarray) and S_W.dtype == np.float64 and d * d * K <= _DENSE_WORK
    if block_weights is not None:
        return (_DenseWeightedLayout if dense else _WeightedLayout)(S_W, mask, n_features,
                                                                    block_weights)
    return _DenseLayout(S_W, mask, n_features) if dense else _PackedLayout(S_W, mask,
                                                                           n_features)


_TINY = float(np.finfo(float).tiny)


def _relative(grad, A):
    return math.sqrt(float(grad @ grad)) / max(math.sqrt(float(A @ A)), _TINY)


def _line_step(layout, x, grad, D, G, B, slope):
    """Exact step along ``D``: the quartic's coefficients from ``A``, ``B`` and ``K x K`` products.

    Returns ``(t, E, F)`` with ``G(t) = G + t E + t^2 F``, or ``None`` without decrease.
    """
    WD, F = layout.line_grams(x, D)
    E = WD + WD.swapaxes(-1, -2)
    EE, GF, EF, FF = layout.line_terms(G, E, F)
    c2 = 0.5 * (EE + 2.0 * GF) - float(D @ B)
    step = _quartic_step(slope, c2, EF, 0.5 * FF)
    return None if step is None else (float(step[0]), E, F)


def _newton_direction(layout, x, grad, pgrad, G, precondition, rel, tol):
    """A truncated Newton direction: preconditioned conjugate gradients on
    ``H D = -grad`` from ``D = 0``, stopped at the relative residual
    ``min(0.5, max(sqrt(rel), 0.5 tol / rel))`` (see ``_NEWTON_CG``), after
    ``_NEWTON_CG`` products, or at a direction of non-positive curvature (Steihaug 1983;
    then the iterate so far, or ``-P grad`` on the first product). Every iterate is a
    descent direction. Written out because :func:`scipy.sparse.linalg.cg` has no
    negative-curvature exit and its ``LinearOperator`` calls cost more than the products
    at these sizes; the vector updates are BLAS ``axpy`` in place and the inner products
    BLAS ``dot`` (one call each, where the call, not its arithmetic, is the cost here).
    """
    r, p = -grad, -pgrad  # new arrays, updated in place below
    rz = _dot(r, p)
    D = None
    hessian_product = layout.hessian_operator(x, G)
    forcing = min(0.5, max(math.sqrt(rel), _OVERSOLVE * tol / rel))
    stop = forcing * forcing * _dot(grad, grad)  # on the squared residual
    for _ in range(_NEWTON_CG):
        Hp = hessian_product(p)
        curvature = _dot(p, Hp)
        if not curvature > 0.0:
            return p if D is None else D
        alpha = rz / curvature
        D = p * alpha if D is None else _axpy(p, D, a=alpha)
        r = _axpy(Hp, r, a=-alpha)
        if _dot(r, r) <= stop:
            break
        z = precondition(r)
        rz_next = _dot(r, z)
        p = _axpy(p, z, a=rz_next / rz)  # z + beta p, in the array of z
        rz = rz_next
    return D


def _direction(layout, hess, x, grad, pgrad, G, precondition, rel, tol):
    """``(D, slope, newton)``: the search direction (truncated Newton on the dense layout
    below ``_NEWTON_FROM``, else L-BFGS, restarted from ``-P grad`` when not a descent
    direction), ``grad . D`` and whether the direction is a Newton one."""
    newton = isinstance(layout, _DenseLayout) and rel <= _NEWTON_FROM
    if newton:
        D = _newton_direction(layout, x, grad, pgrad, G, precondition, rel, tol)
    else:
        D = -hess.apply(grad, pg=pgrad)
    slope = float(grad @ D)
    if not slope < 0:
        hess.reset()
        D = -pgrad
        slope = float(grad @ D)
    return D, slope, newton


def solve_lbfgs(S_W, W_init, mask, n_features, *, max_iter=1000, tol=1e-5, memory=4,
                block_weights=None):
    """Minimise the masked objective by preconditioned L-BFGS with an exact line search.

    ``S_W`` may be any array-API array (NumPy, CuPy, ...); the iterations run in its
    namespace and on its device, and only ``K x K`` matrices and scalars go through the host.
    The variables are the free entries (:class:`_PackedLayout`), or for small problems a
    dense ``(d, K)`` array zero outside the mask (:class:`_DenseLayout`); the iteration is
    described in the module docstring and in ``docs/estimation.md``.

    ``block_weights``, an ``(M, M)`` symmetric non-negative array (checked by the caller),
    gives the block-weighted objective ``1/2 sum_{m,l} w_ml ||W_m W_l^T - S_W[m, l]||_F^2``
    (:class:`_WeightedLayout`), at the same cost per iteration; ``f`` and ``rel_grad`` are
    then those of that objective. ``None``: all weights one.

    Returns
    -------
    W : ndarray of shape (d, K)
        NumPy, exact zeros outside ``mask``.
    f, n_iter, converged, rel_grad
    """
    P = _layout(S_W, mask, n_features, block_weights)
    W0 = np.asarray(W_init, dtype=float) / math.sqrt(P.scale)
    x = P.pack(W0)
    precondition = P.preconditioner(W0)
    hess = CompactLBFGS(P.n_free, precondition=precondition, memory=memory, xp=P.xp,
                        dtype=P.dtype, device=P.dev)
    floor = max(tol, _FLOAT32_FLOOR)
    cheap = P.mixed
    A = P.product(x, cheap)
    G = P.gram(x, x)
    grad = P.gradient(x, A, G)
    pgrad = precondition(grad)
    n_iter = 0
    best, best_iter = np.inf, 0
    while True:
        rel = _relative(grad, A)
        if rel < 0.5 * best:
            best, best_iter = rel, n_iter
        stalled = n_iter - best_iter >= _STALL_ITER
        if cheap and (rel <= floor or stalled):
            # converged in float32 (to be verified), or stalled: recompute exactly
            A = P.product(x, False)
            grad = P.gradient(x, A, G)
            pgrad = precondition(grad)
            rel_exact = _relative(grad, A)
            best, best_iter = rel_exact, n_iter
            if not (rel > floor and abs(rel_exact - rel) <= _AGREE * rel_exact):
                cheap = False  # not a plateau: float32 has done what it can
                continue
        elif not cheap and (rel <= tol or (stalled and not P.exact64 and
                                           rel <= _ROUNDING_ZONE * floor)):
            break
        if n_iter >= max_iter:
            break
        n_iter += 1
        D, slope, newton = _direction(P, hess, x, grad, pgrad, G, precondition, rel, tol)
        if not slope < 0:
            break
        B = P.product(D, cheap)
        step = _line_step(P, x, grad, D, G, B, slope)
        if step is None:
            break
        t, E, F = step
        s = t * D
        x = x + s
        A = A + t * B
        G = G + t * E + (t * t) * F
        grad_new = P.gradient(x, A, G)
        pgrad_new = precondition(grad_new)
        if not newton:  # (the Newton directions do not read the L-BFGS pairs)
            hess.update(s, grad_new - grad, py=pgrad_new - pgrad)
        grad, pgrad = grad_new, pgrad_new
    if cheap:  # stopped on max_iter or a failed step in float32: report exact values
        A = P.product(x, False)
        grad = P.gradient(x, A, G)
    rel_grad = _relative(grad, A)
    return P.unpack(x), P.objective(x, A, G), n_iter, rel_grad <= tol, rel_grad
