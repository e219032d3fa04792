"""Generators for hierarchical multimodal factor data with ground truth."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from hcl_stats._numerics.random import as_legacy_random_state
from hcl_stats._structure import Structure, row_slices
from hcl_stats.datasets._truth import HierarchicalTruth

__all__ = ["make_hierarchical", "make_loadings", "model_covariance"]


def _widths(n_features, structure):
    if isinstance(n_features, Integral):
        return [int(n_features)] * structure.n_modalities
    widths = [int(p) for p in n_features]
    if len(widths) != structure.n_modalities:
        raise ValueError(
            f"n_features has {len(widths)} entries but the structure has "
            f"{structure.n_modalities} modalities"
        )
    for m, p in enumerate(widths):
        if p < structure.modality_rank(m):
            raise ValueError(
                f"modality {m} has {p} features but carries {structure.modality_rank(m)} "
                "factors; the design would be unidentifiable"
            )
    return widths


def _check_design(n_samples, n_features, structure, noise_variance, random_state, *,
                  min_samples=1, zero_noise=True):
    """Validate the arguments shared by the generators; returns (structure, widths, noise, rng)."""
    if not isinstance(structure, Structure):
        structure = Structure(structure)
    if (isinstance(n_samples, bool) or not isinstance(n_samples, Integral)
            or n_samples < min_samples):
        raise ValueError(f"n_samples must be an integer >= {min_samples}, got {n_samples!r}")
    widths = _widths(n_features, structure)
    M = structure.n_modalities
    noise = np.asarray(noise_variance, dtype=float).reshape(-1)
    if noise.size == 1:
        noise = np.full(M, noise[0])
    bad = np.any(noise < 0) if zero_noise else np.any(noise <= 0)
    if noise.size != M or bad or not np.all(np.isfinite(noise)):
        kind = "non-negative" if zero_noise else "positive"
        raise ValueError(f"noise_variance must be one {kind} value or {M}, "
                         f"got {noise_variance!r}")
    return structure, widths, noise, as_legacy_random_state(random_state)


def _haar_orthonormal(rng, p, r):
    """A p x r matrix with orthonormal columns drawn uniformly (QR with sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((p, r)))
    return Q * np.sign(np.diag(R))


def make_loadings(n_features, structure, *, singular_values=(0.5, 1.5), random_state=None):
    """Draw the loading matrix of the reference design (see ``docs/model.md``).

    Each block is ``B_{m,S} = Q1 diag(a) Q2`` with ``Q1`` (``p_m x r_S``) Haar-distributed
    with orthonormal columns, ``Q2`` a Haar orthogonal ``r_S x r_S`` matrix and
    ``a ~ U(low, high)`` (or fixed when ``singular_values`` is a number). Blocks are drawn
    in column order of ``structure``, modality by modality within a block.

    Returns
    -------
    W : ndarray of shape (d, K)
    """
    if not isinstance(structure, Structure):
        structure = Structure(structure)
    rng = as_legacy_random_state(random_state)
    widths = _widths(n_features, structure)
    if np.ndim(singular_values) == 0:
        low = high = float(singular_values)
    else:
        low, high = (float(v) for v in singular_values)
    if not (0 <= low <= high):
        raise ValueError(f"singular_values must be (low, high) with 0 <= low <= high, "
                         f"got {singular_values!r}")
    rows = row_slices(widths)
    W = np.zeros((sum(widths), structure.n_components))
    for subset, r in structure.blocks:
        cols = structure.columns(subset)
        for m in subset:
            Q1 = _haar_orthonormal(rng, widths[m], r)
            Q2 = _haar_orthonormal(rng, r, r)
            a = rng.uniform(low, high, size=r)
            W[rows[m], cols] = (Q1 * a) @ Q2
    return W


def model_covariance(W, noise_variance, n_features):
    """``W W^T + Psi`` for per-modality noise variances."""
    return W @ W.T + np.diag(np.repeat(np.asarray(noise_variance, float), n_features))


def make_hierarchical(n_samples, n_features, structure, *, noise_variance=1.0,
                      singular_values=(0.5, 1.5), random_state=None, return_truth=False):
    """Simulate multimodal data from the hierarchical factor model.

    ``x_m = sum_{S containing m} B_{m,S} z_S + e_m`` with ``z ~ N(0, I_K)`` and
    ``e_m ~ N(0, sigma_m^2 I)``; the loadings follow :func:`make_loadings`. With
    ``n_features=(100, 500, 800)``, ``Structure.full(3, rank=3)`` and ``noise_variance``
    6 or 10 this is the authors' recovery design.

    Parameters
    ----------
    n_samples : int
        Number of samples ``n``.
    n_features : int or sequence of int
        Width of each modality (an int: the same for all).
    structure : Structure or dict
        Which subsets carry factors, with their ranks.
    noise_variance : float or sequence of float, default=1.0
        Noise variance, shared or one per modality.
    singular_values : (float, float) or float, default=(0.5, 1.5)
        Range of the uniform block singular values (or a fixed value).
    random_state : int, RandomState or Generator-compatible seed, default=None
    return_truth : bool, default=False
        Also return the ground truth.

    Returns
    -------
    X : list of ndarray of shape (n_samples, p_m)
    truth : HierarchicalTruth, only when ``return_truth``

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.datasets import make_hierarchical
    >>> X, truth = make_hierarchical(200, [10, 20], Structure.full(2, rank=1),
    ...                              random_state=0, return_truth=True)
    >>> [x.shape for x in X], truth.W.shape
    ([(200, 10), (200, 20)], (30, 3))
    """
    structure, widths, noise, rng = _check_design(n_samples, n_features, structure,
                                                  noise_variance, random_state)
    M = structure.n_modalities
    W = make_loadings(widths, structure, singular_values=singular_values, random_state=rng)
    Z = rng.standard_normal((n_samples, structure.n_components))
    rows = row_slices(widths)
    X, E = [], []
    for m in range(M):
        e = rng.standard_normal((n_samples, widths[m])) * np.sqrt(noise[m])
        X.append(Z @ W[rows[m]].T + e)
        E.append(e)
    if not return_truth:
        return X
    truth = HierarchicalTruth(W=W, Z=Z, noise=E, noise_variance=noise, structure=structure,
                              n_features=np.asarray(widths))
    return X, truth
