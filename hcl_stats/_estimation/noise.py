"""Noise rules: the noise variances ``Psi`` removed from the covariance before the fit."""

from __future__ import annotations

import numpy as np
from array_api_compat import device as array_device

from hcl_stats._numerics.backend import (
    get_namespace,
    is_numpy,
    to_numpy,
)
from hcl_stats._numerics.linalg import flip_signs, top_eigh
from hcl_stats._structure import row_slices


def trace(S):
    xp = get_namespace(S)
    return float(xp.sum(xp.linalg.diagonal(S)))


def top_eigenpairs(S, k, *, random_state=None):
    """Top ``k`` eigenpairs of a symmetric array of any namespace, as NumPy, decreasing.

    NumPy input uses :func:`hcl_stats._numerics.linalg.top_eigh` (ARPACK or a LAPACK subset) in its
    mixed-precision mode: the fit needs the eigenvalues (noise level) and a starting
    subspace, both of which it gives to float64 accuracy at half the cost. Other
    namespaces use the standard's full ``eigh`` on their device.
    """
    xp = get_namespace(S)
    if is_numpy(xp):
        return top_eigh(np.asarray(S), k, random_state=random_state, mixed=True)
    values, vectors = xp.linalg.eigh(S)
    values = np.asarray(to_numpy(values), dtype=float)[::-1][:k]
    vectors = np.asarray(to_numpy(vectors), dtype=float)[:, ::-1][:, :k]
    return values, flip_signs(vectors)


def subtract_diagonal(S, values):
    """``S - diag(values)`` as a new array in the namespace of ``S``."""
    xp = get_namespace(S)
    if is_numpy(xp):
        out = np.array(S, copy=True)
        out[np.diag_indices_from(out)] -= values
        return out
    dev = array_device(S)
    diag = xp.asarray(np.asarray(values, dtype=float), dtype=S.dtype, device=dev)
    return S - xp.eye(S.shape[0], dtype=S.dtype, device=dev) * diag


def estimate_noise(S, n_features, structure, denoise, eig=None, random_state=None):
    """Noise variance per modality for the ``denoise`` rule.

    ``"isotropic"`` (the paper): the mean of the ``d - K`` smallest eigenvalues of ``S``,
    computed as ``(trace(S) - sum of the K largest) / (d - K)`` so only the top ``K``
    eigenvalues are needed. ``"modality"``: the same rule inside each modality, with
    ``K`` replaced by the number of factors loading on it. ``None``: no denoising
    (``Psi = 0``). A number or one number per modality: taken as given.

    Returns
    -------
    noise_variance : ndarray of shape (M,)
    eig : tuple (values, vectors) of the top-K eigenpairs of S when computed here, else None
    """
    M = len(n_features)
    d = S.shape[0]
    K = structure.n_components
    if denoise is None or (isinstance(denoise, str) and denoise == "none"):
        return np.zeros(M), eig
    if isinstance(denoise, str):
        if denoise == "isotropic":
            if d <= K:
                raise ValueError(
                    f"denoise='isotropic' needs more features than factors (d={d}, K={K})"
                )
            if eig is None:
                eig = top_eigenpairs(S, K, random_state=random_state)
            sigma2 = (trace(S) - eig[0].sum()) / (d - K)
            return np.full(M, max(sigma2, 0.0)), eig
        if denoise == "modality":
            out = np.empty(M)
            for m, rows in enumerate(row_slices(n_features)):
                r = structure.modality_rank(m)
                p = n_features[m]
                if p <= r:
                    raise ValueError(
                        f"denoise='modality' needs modality {m} to have more features ({p}) "
                        f"than factors ({r})"
                    )
                Smm = S[rows, rows]
                vals = top_eigenpairs(Smm, r, random_state=random_state)[0]
                out[m] = max((trace(Smm) - vals.sum()) / (p - r), 0.0)
            return out, eig
        raise ValueError(
            f"denoise must be 'isotropic', 'modality', None or noise variances, got {denoise!r}"
        )
    values = np.asarray(denoise, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.full(M, values[0])
    if values.size != M or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"denoise given as noise variances needs {M} non-negative finite values, "
            f"got {denoise!r}"
        )
    return values, eig
