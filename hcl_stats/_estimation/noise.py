"""Noise rules: the noise variances ``Psi`` removed from the covariance before the fit.

A rule maps a :class:`Spectrum` (the diagonal of the covariance per modality and its
leading eigenvalues, of ``S`` on the covariance path or of the reduced ``T`` on the reduced
path) to one variance per modality. Rules are registered by name in ``NOISE_RULES``; a
new rule is one function decorated with :func:`noise_rule`. See ``docs/noise.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from array_api_compat import device as array_device

from hcl_stats._input.params import is_number_like
from hcl_stats._numerics.backend import (
    get_namespace,
    is_numpy,
    to_numpy,
)
from hcl_stats._numerics.linalg import (
    dense_eigh,
    flip_signs,
    lanczos_top,
    top_eigh,
    top_eigvals,
)
from hcl_stats._structure import row_slices

__all__ = ["NOISE_RULES", "Spectrum", "check_denoise", "covariance_spectrum",
           "denoised_eigenpairs", "estimate_noise", "noise_rule", "shifted_eigenpairs",
           "subtract_diagonal", "top_eigenpairs"]

NOISE_RULES: dict[str, Callable] = {}


def noise_rule(name):
    """Register ``rule(spectrum) -> ndarray of shape (M,)`` as ``denoise=name``."""
    def register(rule):
        NOISE_RULES[name] = rule
        return rule
    return register


@dataclass(frozen=True)
class Spectrum:
    """What a noise rule may read about the (possibly reduced) covariance.

    ``top(k)`` returns the ``k`` leading eigenvalues of the whole matrix, decreasing;
    ``top_modality(m, k)`` those of modality ``m``'s diagonal block. ``trace`` is the trace
    of the full covariance, ``traces[m]`` that of its block ``S_mm`` (on the reduced path,
    both from the column variances of the data, not from ``T``).
    """

    n_features: tuple
    structure: object
    trace: float
    traces: tuple
    top: Callable = field(repr=False)
    top_modality: Callable = field(repr=False)


def residual_mean(total, leading, n, k, rule, where="more features than factors"):
    """``max((total - sum(leading)) / (n - k), 0)``: the mean of the ``n - k`` trailing eigenvalues."""
    if n <= k:
        raise ValueError(f"denoise={rule!r} needs {where} ({n} features, {k} factors)")
    return max((total - float(np.sum(leading))) / (n - k), 0.0)


@noise_rule("isotropic")
def _isotropic(spectrum):
    """One variance for all features: the mean of the ``d - K`` smallest eigenvalues."""
    d, K = int(sum(spectrum.n_features)), spectrum.structure.n_components
    sigma2 = residual_mean(spectrum.trace, spectrum.top(K) if d > K else 0.0, d, K,
                           "isotropic")
    return np.full(len(spectrum.n_features), sigma2)


@noise_rule("modality")
def _per_modality(spectrum):
    """One variance per modality: the isotropic rule inside each modality's block."""
    out = np.empty(len(spectrum.n_features))
    for m, p in enumerate(spectrum.n_features):
        r = spectrum.structure.modality_rank(m)
        leading = spectrum.top_modality(m, r) if p > r else 0.0
        out[m] = residual_mean(spectrum.traces[m], leading, p, r, "modality",
                               where=f"modality {m} to have more features than factors")
    return out


@noise_rule("diagonal")
def _diagonal_start(spectrum):
    """One variance per feature, estimated jointly with the loadings by the fit.

    The rule itself gives the per-modality values that start the joint estimation (the
    fit then alternates ``psi = diag(S - W W^T)`` with the loadings, or maximises the
    likelihood over both; :mod:`hcl_stats._estimation.refine`).
    """
    return _per_modality(spectrum)


def check_denoise(value, name="denoise", *, allow_auto=False):
    """Up-front check of ``denoise``: a registered rule, ``None``/"none" or variances.

    Numbers are checked to be finite and non-negative here; their count (1 or one per
    modality) is checked against the data by :func:`given_noise`. With ``allow_auto``,
    ``"auto"`` is accepted as well (:class:`hcl_stats.HCL` resolves it with its ``scale``
    rule, :func:`hcl_stats._estimation.pipeline.resolve_denoise`).
    """
    if value is None or (isinstance(value, str) and value == "none"):
        return None
    if isinstance(value, str):
        if value in NOISE_RULES or (allow_auto and value == "auto"):
            return value
    elif is_number_like(value):
        values = np.asarray(value, dtype=float)
        if values.ndim <= 1 and values.size and np.all(np.isfinite(values)) \
                and np.all(values >= 0):
            return values.reshape(-1)
    names = (("auto",) if allow_auto else ()) + tuple(NOISE_RULES)
    rules = ", ".join(repr(r) for r in names)
    raise ValueError(f"{name} must be one of {rules}, None or non-negative noise "
                     f"variances, got {value!r}")


def given_noise(denoise, n_modalities):
    """Checked ``denoise`` that is not a rule name as ``M`` variances (zeros for ``None``)."""
    if denoise is None:
        return np.zeros(n_modalities)
    values = np.asarray(denoise, dtype=float).reshape(-1)
    if values.size == 1:
        return np.full(n_modalities, values[0])
    if values.size != n_modalities:
        raise ValueError(f"denoise given as noise variances needs 1 or {n_modalities} values "
                         f"(one per modality), got {values.size}")
    return values


def estimate_noise(denoise, spectrum):
    """Noise variance per modality, shape ``(M,)``, for the checked ``denoise`` value."""
    if isinstance(denoise, str):
        return NOISE_RULES[denoise](spectrum)
    return given_noise(denoise, len(spectrum.n_features))


def _trace(S):
    xp = get_namespace(S)
    if is_numpy(xp):  # accumulated in float64 (S may be float32 statistics)
        return float(np.sum(np.diagonal(S), dtype=np.float64))
    return float(xp.sum(xp.linalg.diagonal(S)))


# Stopping rule of the Lanczos noise step: relative change of the top-k Ritz sum between
# checks. On the authors' design (d = 1400, k = 21) it stopped after 240 products with the
# sum within 3e-9 relative of LAPACK's (1e-3: 200 products, 1.4e-7).
LANCZOS_RTOL = 1e-4


def top_eigenpairs(S, k, *, random_state=None, approximate=False):
    """Top ``k`` eigenpairs of a symmetric array of any namespace, as NumPy, decreasing.

    NumPy input uses :func:`hcl_stats._numerics.linalg.top_eigh` (ARPACK or a LAPACK
    subset) in its mixed-precision mode, which gives eigenvalues and eigenvectors to
    float64 accuracy at half the cost. With ``approximate=True`` (for the HCL fit, which
    needs the eigenvalue sum -- the noise level -- and a starting subspace, not accurate
    eigenvectors) it uses :func:`hcl_stats._numerics.linalg.lanczos_top` instead, a
    float32 Lanczos stopped once the sum of the top ``k`` Ritz values changes by at most
    ``1e-4`` relative between checks (LAPACK for small matrices). Other namespaces use
    the standard's full ``eigh`` on their device. ``random_state`` seeds the start vector
    (see :mod:`hcl_stats._numerics.random`).
    """
    xp = get_namespace(S)
    if is_numpy(xp) and approximate:
        values, vectors, _ = lanczos_top(np.asarray(S), k, rtol=LANCZOS_RTOL, block=1,
                                         random_state=random_state)
        return values, vectors
    if is_numpy(xp):
        return top_eigh(np.asarray(S), k, random_state=random_state, mixed=True)
    values, vectors = xp.linalg.eigh(S)
    values = np.asarray(to_numpy(values), dtype=float)[::-1][:k]
    vectors = np.asarray(to_numpy(vectors), dtype=float)[:, ::-1][:, :k]
    return values, flip_signs(vectors)


class _CovarianceEigen:
    """Leading eigenpairs of ``S``, computed once on first use (shared by rule and fit).

    ``wanted``: the number of pairs the first decomposition computes at least (those the
    caller will read after the rule), so that a rule asking for fewer does not cause a
    second one.
    """

    def __init__(self, S, random_state, approximate=False, wanted=0, modality_values=None):
        self.S, self.random_state, self.pairs = S, random_state, None
        self.approximate, self.wanted = approximate, wanted
        self.modality_values = modality_values

    def top(self, k):
        if self.pairs is None or self.pairs[0].size < k:
            self.pairs = top_eigenpairs(self.S, max(k, self.wanted),
                                        random_state=self.random_state,
                                        approximate=self.approximate)
        return self.pairs[0][:k]

    def top_modality(self, m, k, n_features):
        known = self.modality_values
        if known is not None and len(known[m]) >= k:  # decomposed before (the selection)
            return np.asarray(known[m][:k], dtype=np.float64)
        rows = row_slices(n_features)[m]
        S_mm = self.S[rows, rows]
        if is_numpy(get_namespace(S_mm)) and dense_eigh(S_mm.shape[0], k):
            # the values of top_eigenpairs' dense LAPACK call, without its eigenvectors
            return top_eigvals(S_mm, k)
        return top_eigenpairs(S_mm, k, random_state=self.random_state,
                              approximate=self.approximate)[0]


def covariance_spectrum(S, n_features, structure, *, random_state=None, approximate=False,
                        wanted=0, modality_values=None):
    """The :class:`Spectrum` of a covariance ``S`` (any namespace) and its eigenpair cache
    (``approximate``: see :func:`top_eigenpairs`; ``wanted``: the fewest pairs its first
    decomposition computes; ``modality_values``: per modality, the decreasing eigenvalues
    of ``S_mm`` where already known, which ``top_modality`` then returns)."""
    n_features = tuple(int(p) for p in n_features)
    eigen = _CovarianceEigen(S, random_state, approximate, wanted, modality_values)
    traces = tuple(_trace(S[rows, rows]) for rows in row_slices(n_features))
    spectrum = Spectrum(n_features, structure, _trace(S), traces, eigen.top,
                        lambda m, k: eigen.top_modality(m, k, n_features))
    return spectrum, eigen


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


def shifted_eigenpairs(S, noise, n_features, k, eigen, *, random_state=None):
    """``S_W = S - diag(noise)`` and its top-``k`` eigenpairs.

    When the noise is one variance and ``eigen`` (a :func:`covariance_spectrum` cache) holds
    the eigenpairs of ``S``, those are shifted instead of recomputed (same eigenvectors).
    """
    S_W = subtract_diagonal(S, np.repeat(noise, n_features))
    if eigen.pairs is not None and eigen.pairs[0].size >= k and np.ptp(noise) == 0:
        return S_W, eigen.pairs[0][:k] - noise[0], eigen.pairs[1][:, :k]
    return (S_W,) + tuple(top_eigenpairs(S_W, k, random_state=random_state,
                                         approximate=eigen.approximate))


def denoised_eigenpairs(S, n_features, structure, denoise, *, random_state=None, n_extra=0,
                        approximate=False, modality_values=None):
    """Noise by the checked ``denoise`` value, ``S_W = S - Psi`` and its top eigenpairs.

    ``K + n_extra`` eigenpairs are returned (``K`` the number of factors). With
    ``n_extra`` and one noise variance for all modalities they are those of ``S``, shifted,
    from the decomposition the rule reads when it reads one; otherwise those of ``S_W``
    (``approximate``: see :func:`top_eigenpairs`). ``modality_values``: see
    :func:`covariance_spectrum`.

    Returns
    -------
    noise : ndarray of shape (M,)
    S_W : array of shape (d, d), in the namespace of ``S``
    values : ndarray of shape (K + n_extra,)
    vectors : ndarray of shape (d, K + n_extra)
    """
    k = min(structure.n_components + int(n_extra), S.shape[0])
    # a rule that reads the spectrum of S computes the extra pairs with it
    spectrum, eigen = covariance_spectrum(S, n_features, structure, random_state=random_state,
                                          approximate=approximate, wanted=k,
                                          modality_values=modality_values)
    noise = estimate_noise(denoise, spectrum)
    if n_extra and np.ptp(noise) == 0:
        eigen.top(k)  # one variance: the pairs of S, shifted, whatever the rule read
    return (noise,) + shifted_eigenpairs(S, noise, spectrum.n_features, k, eigen,
                                         random_state=random_state)
