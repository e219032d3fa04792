"""Limited-memory BFGS in compact form, with a preconditioner as the initial inverse Hessian.

Why our own and not :func:`scipy.optimize.minimize`: the HCL solver (a) needs a
preconditioner as the initial inverse Hessian, which scipy's L-BFGS-B does not take; (b) does
an exact line search along each direction (the HCL objective is a quartic polynomial on a
line, see :func:`hcl_stats._estimation.fit.solve_lbfgs`), which scipy's interface cannot use; and (c)
must not run its vector algebra in a second BLAS thread pool (scipy's Fortran L-BFGS-B uses
scipy's own OpenBLAS, whose threads compete with NumPy's for the same cores).

The inverse-Hessian approximation is applied in the compact representation of Byrd,
Nocedal and Schnabel (1994, eq. 3.1 for ``H``): with the last ``m`` pairs stacked as rows of
``S`` and ``Y``, ``R = triu(S Y^T)``, ``D = diag(S Y^T)`` and the scaled preconditioner
``H0 = gamma P``,

    H g = H0 g + S^T p - gamma (P Y)^T u,     u = R^{-1} S g,
    p = R^{-T} ((D + gamma Y P Y^T) u - gamma (P Y) g).

With ``S`` and ``P Y`` stored in one ``(2m, n)`` buffer that is two matrix-vector products
per application (plus ``m x m`` work on the host, cached when a pair is added) instead of
the ``4 m`` vector operations of the two-loop recursion, each with its own call overhead.
The result is the same matrix as the two-loop recursion. See ``docs/estimation.md``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.linalg import lapack

from hcl_stats._numerics.backend import is_numpy, to_numpy

__all__ = ["CompactLBFGS"]


@functools.lru_cache(maxsize=8)
def _upper_masks(memory):
    """The upper-triangle masks of sizes ``0..memory`` (read only; shared by the solvers
    of a process, built once per memory size rather than per solve)."""
    masks = tuple(np.triu(np.ones((j, j))) for j in range(memory + 1))
    for mask in masks:
        mask.setflags(write=False)
    return masks


class CompactLBFGS:
    """Limited-memory inverse-Hessian approximation ``H`` built from correction pairs.

    Vectors may live in any array-API namespace (NumPy, CuPy, ...): the ``(2m, n)`` pair
    buffers are allocated there and only ``m x m`` matrices and ``2m`` coefficient vectors
    go through the host.

    Parameters
    ----------
    size : int
        Number of variables ``n`` (vectors are flat arrays of this length).
    precondition : callable ``v -> array``, optional
        Fixed symmetric positive definite approximation ``P`` of the inverse Hessian. It is
        rescaled by ``gamma = s^T y / y^T P y`` of the newest pair (Nocedal and Wright,
        eq. 7.20, with ``P`` in place of the identity).
    memory : int
        Number of correction pairs kept.
    xp, dtype, device : optional
        Namespace, floating dtype and device of the vectors (default: NumPy float64).
    """

    def __init__(self, size, *, precondition=None, memory=10, xp=None, dtype=None,
                 device=None):
        self.size = int(size)
        self.memory = int(memory)
        self.precondition = precondition if precondition is not None else (lambda v: v)
        self._xp = np if xp is None else xp
        self._dtype = (self._xp.float64 if dtype is None else dtype)
        m = self.memory
        kw = {"dtype": self._dtype} if device is None else {"dtype": self._dtype,
                                                              "device": device}
        # rows [0, m): s_i; rows [m, 2m): P y_i -- one buffer so that the products with a
        # vector that both need are a single matrix-vector product
        self._SPY = self._xp.zeros((2 * m, self.size), **kw)
        self._Y = self._xp.zeros((m, self.size), **kw)
        self._SY = np.zeros((m, m))  # s_i . y_j, storage order (host)
        self._YPY = np.zeros((m, m))  # y_i . P y_j, storage order (host)
        self._order = []  # storage slots, oldest first
        self._upper = _upper_masks(m)
        # index arrays of each chronological order of the slots (a few orders recur)
        self._indices = {}
        self._kw = kw
        # float64 NumPy vectors: the host conversions are the identity and are skipped
        self._on_host = (is_numpy(self._xp)
                         and np.dtype(self._dtype) == np.float64 and device in (None, "cpu"))

    def __len__(self):
        return len(self._order)

    def reset(self):
        """Forget all pairs (``H`` becomes ``P``)."""
        self._order = []

    def _host(self, v):
        return v if self._on_host else np.asarray(to_numpy(v), dtype=float)

    def update(self, s, y, *, py=None):
        """Add the pair ``(s, y)`` unless its curvature ``s^T y`` is not safely positive.

        ``py``, if given, is ``P y`` (callers that already hold ``P g`` at both ends of the
        step can pass the difference instead of paying for another application of ``P``).

        Returns
        -------
        bool
            Whether the pair was stored.
        """
        sy = float(s @ y)
        if not sy > 1e-12 * math.sqrt(float(s @ s) * float(y @ y)):
            return False
        m = self.memory
        slot = self._order.pop(0) if len(self._order) == m else len(self._order)
        if py is None:
            py = self.precondition(y)
        self._SPY[slot, :] = s
        self._SPY[m + slot, :] = py
        self._Y[slot, :] = y
        self._order.append(slot)
        # new row and column of S Y^T and Y P Y^T. Products with the whole buffers (unused
        # rows are never read): indexing the stored rows first would copy them.
        both = self._host(self._SPY @ y)
        self._SY[:, slot] = both[:m]
        self._SY[slot, :] = self._host(self._Y @ s)
        self._YPY[:, slot] = both[m:]
        self._YPY[slot, :] = both[m:]
        self._refresh()
        return True

    def _refresh(self):
        # small matrices of the compact form in chronological order, cached for apply()
        key = tuple(self._order)
        if key not in self._indices:
            k = np.array(self._order)
            self._indices[key] = (k, self.memory + k, np.concatenate([k, self.memory + k]))
        k, self._py_slots, self._coef_index = self._indices[key]
        # (indexed in two steps: the memory layout of the result sets which BLAS kernel
        # the products below take, hence their rounding)
        SY = self._SY[k][:, k]
        self._slots = k
        # inverse of the upper triangle of S Y^T (LAPACK trtri reads only that triangle;
        # numpy's inv + triu cost ten times more at m <= 10, once per iteration)
        upper = self._upper[len(k)]
        self._Rinv, info = lapack.dtrtri(SY * upper, lower=0)  # strict lower part stays 0
        if info != 0:  # cannot happen: the diagonal s_i . y_i > 0 is checked on update
            raise np.linalg.LinAlgError("singular L-BFGS update")
        self._diag = SY.diagonal().copy()
        self._YPYc = self._YPY[k][:, k]
        self._gamma = float(SY[-1, -1] / self._YPYc[-1, -1])

    def apply(self, g, *, pg=None):
        """Return ``H g``; ``pg``, if given, is ``P g``."""
        pg = self.precondition(g) if pg is None else pg
        if not self._order:
            return pg * 1.0
        k, gamma = self._slots, self._gamma
        both = self._host(self._SPY @ g)
        u = self._Rinv @ both[k]
        p = self._Rinv.T @ (self._diag * u + gamma * (self._YPYc @ u - both[self._py_slots]))
        coef = np.zeros(2 * self.memory)
        coef[self._coef_index] = np.concatenate([p, -gamma * u])
        if not self._on_host:
            coef = self._xp.asarray(coef, **self._kw)
        return coef @ self._SPY + gamma * pg
