"""Unstructured baseline: top-K eigenpairs of the stacked covariance (the paper's "SVD")."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from hcl_stats._estimation.noise import estimate_noise
from hcl_stats._models.covariance_model import CovarianceFactorModel
from hcl_stats._structure import Structure

__all__ = ["ConcatSVD"]


class ConcatSVD(CovarianceFactorModel):
    """Concatenated SVD / PCA of the stacked modalities, with no structure.

    Loadings are the top-``K`` eigenpairs of the stacked covariance, ``W = V_K
    sqrt(lambda_K - sigma^2)``. With ``denoise=None`` (default) ``sigma^2 = 0`` in the
    loadings, which is the unstructured "SVD" of the paper's comparisons; with
    ``denoise="isotropic"`` it is probabilistic PCA. The noise variance used for scores is
    always the mean of the discarded eigenvalues.

    Parameters
    ----------
    n_components : int or Structure
        Number of components ``K`` (a Structure: its total rank, so that HCL and this
        baseline are compared at the same dimension).
    denoise : {None, "isotropic"}, default=None
        Whether the loadings subtract the noise variance from the eigenvalues.
    random_state : int or None, default=None
        Seed of the Lanczos start vector.

    Attributes
    ----------
    structure_ : Structure
        One global block of rank ``K``.
    loadings_ : ndarray of shape (d, K)
    means_, noise_variance_, n_features_per_modality_, total_variance_, modality_names_in_
        As in :class:`hcl_stats.HCL`.
    explained_eigenvalues_ : ndarray of shape (K,)
        The top-``K`` eigenvalues of the covariance.
    """

    def __init__(self, n_components, *, denoise=None, random_state=None):
        self.n_components = n_components
        self.denoise = denoise
        self.random_state = random_state

    def _fit_covariance(self, S, means, n, n_features, names):
        K = self.n_components
        if isinstance(K, Structure):
            K = K.n_components
        if isinstance(K, bool) or not isinstance(K, Integral) or K < 1:
            raise ValueError(f"n_components must be a positive integer or a Structure, "
                             f"got {self.n_components!r}")
        d = sum(n_features)
        if K >= d:
            raise ValueError(f"n_components={K} must be smaller than the total number of "
                             f"features d={d}")
        if self.denoise not in (None, "isotropic"):
            raise ValueError(f"denoise must be None or 'isotropic', got {self.denoise!r}")
        M = len(n_features)
        structure = Structure({tuple(range(M)): int(K)}, modalities=names or M)
        noise, (values, vectors) = estimate_noise(S, n_features, structure, "isotropic",
                                                  random_state=self.random_state)
        shift = noise[0] if self.denoise == "isotropic" else 0.0
        W = vectors * np.sqrt(np.clip(values - shift, 0.0, None))
        self._set_fitted_from_covariance(S, means, n, n_features, names, structure, W, noise)
        self.explained_eigenvalues_ = values
        return self
