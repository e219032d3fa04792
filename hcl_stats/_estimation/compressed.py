"""Exact compression of wide modalities to the row spaces of their centred data.

A modality ``X_m`` (``n x p_m``) with at least as many features as samples has a sample
covariance block ``S_mm`` of rank ``r_m <= n - 1``. The thin singular value decomposition
of the centred (and weighted) data, ``X_m - 1 mu_m^T = U_m D_m V_m^T``, gives an
orthonormal basis ``V_m`` (``p_m x r_m``) of the row space, and with it the covariance
exactly, ``S = blockdiag(V) T blockdiag(V)^T`` with the small matrix

    T = Y^T Y / (n - 1),     Y_m = (X_m - 1 mu_m^T) V_m = U_m D_m,

of size ``sum_m r_m``, formed without ``S`` at ``O(n^2 p_m)`` per modality (``O(n p_m^2)``
for a modality with fewer features than samples). The structure
selection reads ``T`` with the modalities' nominal widths
(:func:`hcl_stats._estimation.selection.select_structure`, ``n_coordinates``), and the fit
is the reduced path with these bases (:func:`hcl_stats._estimation.reduced.fit_hcl_reduced`,
``bases``), whose solution lies in their span at every stationary point. A modality of
full column rank (no singular value at the rounding level, ``_NULL_CUT``) keeps its own
coordinates (``V_m = I``, the centred data as scores). See ``docs/large-data.md``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["RowSpaces", "row_spaces"]

#: singular values at most this times ``max(n, p_m)`` times the largest (the rounding
#: level of the decomposition, as ``numpy.linalg.matrix_rank`` takes it) span null
#: directions of the centred data and are dropped
_NULL_CUT = float(np.finfo(np.float64).eps)


class RowSpaces:
    """Per-modality row-space bases (``None``: all coordinates kept) and the matrix ``T``.

    Attributes
    ----------
    bases : list of ndarray of shape (p_m, r_m) or None
    scores : list of ndarray of shape (n_samples, r_m)
        ``Y_m = U_m D_m`` (the centred, weighted data where the basis is None).
    sizes : list of int
        ``r_m`` (``p_m`` where the basis is None).
    T : ndarray of shape (sum r_m, sum r_m)
        ``Y^T Y / (n - 1)``, exactly symmetric.
    """

    def __init__(self, bases, scores):
        self.bases, self.scores = bases, scores
        self.sizes = [int(Y.shape[1]) for Y in scores]
        Y = np.hstack(scores)
        T = Y.T @ Y
        T /= Y.shape[0] - 1
        self.T = 0.5 * (T + T.T)


def _centred(X, mu, factors):
    """``(X - 1 mu^T) diag(factors)`` in float64 (a new array)."""
    Z = np.subtract(X, mu, dtype=np.float64)
    if factors is not None:
        Z *= factors
    return Z


def _thin_svd(Z):
    """``Z^T = V diag(s) U^T`` (``Z`` is ``n x p``): scipy's SVD, at ``O(n p min(n, p))``,
    rather than eigh of a Gram matrix, whose squared singular values would lose the small
    ones and their vectors to rounding. Of ``Z^T`` when it is tall, which LAPACK reads
    in Fortran order without a copy."""
    if Z.shape[1] >= Z.shape[0]:
        return scipy.linalg.svd(Z.T, full_matrices=False, check_finite=False)
    U, s, Vt = scipy.linalg.svd(Z, full_matrices=False, check_finite=False)
    return Vt.T, s, U.T


def row_spaces(blocks, means, factors=None):
    """The exact row-space bases and the compressed covariance of the blocks.

    Parameters
    ----------
    blocks : list of ndarray of shape (n_samples, p_m)
        In-memory modalities, finite; only read.
    means : list of ndarray of shape (p_m,)
        Column means.
    factors : list of ndarray of shape (p_m,) or None, default=None
        Column weights (the data are read as ``X_m diag(factors_m)``), or None.

    Returns
    -------
    RowSpaces
    """
    n = blocks[0].shape[0]
    bases, scores = [], []
    for m, X in enumerate(blocks):
        Z = _centred(X, means[m], None if factors is None else factors[m])
        V, s, Ut = _thin_svd(Z)
        p = Z.shape[1]
        keep = int(np.sum(s > _NULL_CUT * max(n, p) * s[0])) if s[0] > 0 else 1
        if keep == p:  # no null direction: the modality keeps its own coordinates
            bases.append(None)
            scores.append(Z)
            continue
        bases.append(V[:, :keep])
        scores.append(Ut[:keep].T * s[:keep])
    return RowSpaces(bases, scores)
