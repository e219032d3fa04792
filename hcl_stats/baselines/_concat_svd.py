"""Unstructured baseline: top-K eigenpairs of the stacked covariance (the paper's "SVD")."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from hcl_stats._estimation.noise import (
    check_denoise,
    covariance_spectrum,
    estimate_noise,
    shifted_eigenpairs,
)
from hcl_stats._input.params import seed
from hcl_stats._input.validation import check_structure, check_total_rank
from hcl_stats._models.covariance_model import CovarianceFactorModel
from hcl_stats._structure import Structure

__all__ = ["ConcatSVD"]


def _n_components(value, name):
    K = value.n_components if isinstance(value, Structure) else value
    if isinstance(K, bool) or not isinstance(K, Integral) or K < 1:
        raise ValueError(f"{name} must be a positive integer or a Structure, got {value!r}")
    return int(K)


class ConcatSVD(CovarianceFactorModel):
    """Concatenated SVD / PCA of the stacked modalities, with no structure.

    Loadings are the top-``K`` eigenpairs of the denoised stacked covariance
    ``S - Psi``, ``W = V_K sqrt(lambda_K)``: the minimiser of HCL's objective without a
    mask, with ``Psi`` from the same ``denoise`` rules as :class:`hcl_stats.HCL`. With
    ``denoise=None`` (default) ``Psi = 0``, which is the unstructured "SVD" of the paper's
    comparisons; with ``denoise="isotropic"`` it is probabilistic PCA. The noise variance
    used for scores is that of the rule, or with ``denoise=None`` the mean of the
    discarded eigenvalues of ``S`` (see ``docs/baselines.md``).

    Parameters
    ----------
    n_components : int or Structure
        Number of components ``K`` (a Structure: its total rank, so that HCL and this
        baseline are compared at the same dimension).
    denoise : {None, "isotropic", "modality"}, float or array-like, default=None
        Noise removed from the covariance before its eigen-decomposition, as in
        :class:`hcl_stats.HCL` (``None``: none).
    random_state : int, numpy.random.Generator or None, default=None
        Seed of the Lanczos start vector (``None``: a fixed default seed).

    Attributes
    ----------
    structure_ : Structure
        One global block of rank ``K``.
    loadings_ : ndarray of shape (d, K)
    means_, noise_variance_, n_features_per_modality_, total_variance_, modality_names_in_
        As in :class:`hcl_stats.HCL`.
    n_joint_samples_ : ndarray of shape (M, M) of int
        Samples observing each modality and each pair, as in :class:`hcl_stats.HCL`
        (with missing values the covariance is the pairwise one).
    explained_eigenvalues_ : ndarray of shape (K,)
        The top-``K`` eigenvalues of the covariance.
    """

    _parameter_constraints = {
        "n_components": _n_components,
        "denoise": check_denoise,
        "random_state": seed,
    }

    def __init__(self, n_components, *, denoise=None, random_state=None):
        self.n_components = n_components
        self.denoise = denoise
        self.random_state = random_state

    def _noise_from_rule(self):
        return self.denoise is not None

    def _fit_covariance(self, params, S, means, n, n_features, names, joint_counts=None):
        K, denoise = params["n_components"], params["denoise"]
        d = sum(n_features)
        if K >= d:
            raise ValueError(f"n_components={K} must be smaller than the total number of "
                             f"features d={d}")
        if isinstance(self.n_components, Structure):  # bound as every estimator binds one
            check_structure(self.n_components, n_features, names, n)
        check_total_rank(K, n)
        M = len(n_features)
        structure = Structure({tuple(range(M)): K}, modalities=names or M)
        spectrum, eigen = covariance_spectrum(S, n_features, structure,
                                              random_state=params["random_state"])
        # the scores need a noise level: the mean of the discarded eigenvalues without a rule
        noise = estimate_noise("isotropic" if denoise is None else denoise, spectrum)
        shift = np.zeros(M) if denoise is None else noise
        _, values, vectors = shifted_eigenpairs(S, shift, n_features, K, eigen,
                                                random_state=params["random_state"])
        W = vectors * np.sqrt(np.clip(values, 0.0, None))
        self._set_fitted_from_covariance(S, means, n, n_features, names, structure, W, noise,
                                         joint_counts)
        self.explained_eigenvalues_ = spectrum.top(K)
        return self

    def _noise_rule(self):
        return "isotropic"  # the variance used for scores and likelihoods
