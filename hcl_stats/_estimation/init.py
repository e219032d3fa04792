"""The structured spectral initialiser, general in the number of modalities and the structure."""

from __future__ import annotations

import numpy as np

from hcl_stats._numerics.linalg import orthonormal_basis, small_eigh
from hcl_stats._structure import row_slices


def spectral_init(values, vectors, structure, n_features):
    """Structured initialiser for any structure: spectral solution, then block rotation.

    Start from the unstructured minimiser ``W0 = V_K diag(sqrt(max(lambda, 0)))`` of the
    objective without a mask (top-K eigenpairs of ``S_W``). In the population every
    structured solution is ``W0 R`` for an orthogonal ``R``, and the columns of ``R`` for a
    block ``S`` span the latent directions that load on no modality outside ``S``, minus
    those of blocks on strict subsets of ``S``. So the blocks are peeled from the most
    specific to the most global: for each subset, among the latent directions not yet
    used, take the ``r_S`` whose energy lies most inside the rows of ``S`` (a generalised
    eigenproblem ``A_in v = mu A_all v``; for the global block, the directions of largest
    energy). Finally zero the entries outside the mask. This is exact in the population for
    an identifiable structure and needs no random starts; the solver then fixes what the
    noise perturbed.
    """
    K = structure.n_components
    d = vectors.shape[0]
    lam = np.maximum(values[:K], 0.0)  # (np.clip's min-only case, without its wrappers)
    W0 = vectors[:, :K] * np.sqrt(lam)
    if W0.shape[1] < K:  # fewer eigenpairs than factors (tiny problems)
        W0 = np.hstack([W0, np.zeros((d, K - W0.shape[1]))])
    rows = row_slices(n_features)
    R = np.zeros((K, K))
    free = np.eye(K)  # orthonormal basis of latent directions still unused
    order = sorted(structure.subsets, key=lambda s: (len(s), s))
    energy_all = W0.T @ W0
    for i, subset in enumerate(order):
        r = structure.rank(subset)
        inside = np.zeros(d, dtype=bool)  # the rows of the subset's modalities
        for m in subset:
            inside[rows[m]] = True
        # (two copies: one array times its own transpose would take BLAS syrk, whose
        # rounding differs)
        A_in = W0[inside].T @ W0[inside]
        a_in = free.T @ A_in @ free
        a_all = free.T @ energy_all @ free
        if len(subset) == structure.n_modalities:
            _, vecs = small_eigh(a_all)
            pick = vecs[:, ::-1][:, :r]
        else:
            # Regularise the energy metric so directions with no energy do not win.
            ridge = 1e-10 * max(a_all.trace(), 1e-300) / max(a_all.shape[0], 1)
            ridge_eye = ridge * np.eye(len(a_all))
            _, vecs = small_eigh(a_in + ridge_eye, a_all + ridge_eye)
            pick = vecs[:, ::-1][:, :r]
        directions = orthonormal_basis(free @ pick)
        if directions.shape[1] < r:  # degenerate: complete with any unused directions
            extra = free - directions @ (directions.T @ free)
            directions = np.hstack([directions, orthonormal_basis(extra)])[:, :r]
        R[:, structure.columns(subset)] = directions
        if i + 1 < len(order):  # the unused directions, for the subsets still to come
            rest = free - directions @ (directions.T @ free)
            free = orthonormal_basis(rest)[:, : free.shape[1] - r]
    W = W0 @ R
    W[~structure.mask(n_features)] = 0.0
    return W
