"""Missing modalities for simulation studies: whole rows of some modalities set to NaN."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.decomposition import PCA

from hcl_stats._input.validation import read_blocks
from hcl_stats._numerics.random import as_legacy_random_state

__all__ = ["mask_modalities"]


def mask_modalities(X, fraction, *, mechanism="mcar", modalities=None, strength=2.0,
                    random_state=None):
    """Copies of the modalities in which some samples miss some modalities (rows of NaN).

    A sample that misses a modality has a row of NaN there, the form ``HCL`` and
    ``transform`` take. No sample is made to miss every modality.

    Parameters
    ----------
    X : list or tuple of array-like of shape (n_samples, p_m)
        Complete modalities on the same samples (never modified).
    fraction : float in [0, 1)
        Expected fraction of the samples that miss each listed modality.
    mechanism : {"mcar", "mar"}, default="mcar"
        ``"mcar"`` (missing completely at random): whether a sample misses a listed
        modality does not depend on the data, and the listed modalities are missed
        independently of each other. When every modality is listed, a sample drawn to
        miss all of them gets one back (chosen at random), and the drawing probability
        ``q`` solves ``q - q^M / M = fraction`` so that the expected fraction stays
        ``fraction`` (which must then be at most ``1 - 1/M``).
        ``"mar"`` (missing at random): the probability that sample ``i`` misses a listed
        modality is ``expit(a + strength * s_i)``, with ``s_i`` the standardised first
        principal component score of the *driver*, the first modality not listed, which
        is never masked (so the rule depends on observed values only); ``a`` makes the
        mean probability over the samples ``fraction``. Given ``s``, the listed modalities
        are missed independently.
    modalities : sequence of int, default=None
        The modalities that may be missing: all of them for ``"mcar"``, all but the first
        (the driver) for ``"mar"``.
    strength : float, default=2.0
        Slope of the ``"mar"`` rule in the standardised score (0: MCAR).
    random_state : int, RandomState or None, default=None
        The draws (``None``: a fixed default seed, see :mod:`hcl_stats._numerics.random`).

    Returns
    -------
    list of ndarray of shape (n_samples, p_m)
        Float64 copies with the missing rows set to NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import Structure
    >>> from hcl_stats.datasets import make_hierarchical, mask_modalities
    >>> X = make_hierarchical(1000, [5, 6, 7], Structure.full(3), random_state=0)
    >>> Xm = mask_modalities(X, 0.3, modalities=[1, 2], random_state=0)
    >>> [round(float(np.isnan(x[:, 0]).mean()), 2) for x in Xm]
    [0.0, 0.31, 0.3]
    """
    if not isinstance(X, (list, tuple)):
        raise TypeError(f"X must be a list or tuple of modality arrays, got "
                        f"{type(X).__name__}")
    blocks = [np.array(b, dtype=np.float64) for b in read_blocks(X).arrays]
    M, n = len(blocks), blocks[0].shape[0]
    if mechanism not in ("mcar", "mar"):
        raise ValueError(f"mechanism must be 'mcar' or 'mar', got {mechanism!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0 <= fraction < 1:
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}")
    listed = _listed_modalities(modalities, M, mechanism)
    rng = as_legacy_random_state(random_state)
    if mechanism == "mar":
        if isinstance(strength, bool) or not isinstance(strength, Real) \
                or not np.isfinite(strength):
            raise ValueError(f"strength must be a finite number, got {strength!r}")
        driver = next(m for m in range(M) if m not in listed)
        probability = _mar_probability(blocks[driver], fraction, float(strength))
        missing = rng.random_sample((n, len(listed))) < probability[:, None]
    else:
        missing = _mcar_missing(rng, n, len(listed), fraction, every=len(listed) == M)
    for j, m in enumerate(listed):
        blocks[m][missing[:, j]] = np.nan
    return blocks


def _listed_modalities(modalities, M, mechanism):
    if modalities is None:
        listed = list(range(M)) if mechanism == "mcar" else list(range(1, M))
    else:
        listed = []
        for m in modalities:
            if isinstance(m, bool) or not isinstance(m, Integral) or not 0 <= m < M:
                raise ValueError(f"modalities must be indices in [0, {M}), got {m!r}")
            if int(m) not in listed:
                listed.append(int(m))
    if not listed:
        raise ValueError("no modality to mask: modalities is empty")
    if len(listed) == M and (mechanism == "mar" or M == 1):
        raise ValueError(
            "mechanism='mar' needs a modality that is never masked (the driver of the "
            "rule): leave one out of modalities" if mechanism == "mar" else
            "a single modality cannot be masked: a sample must observe some modality")
    return listed


def _mcar_missing(rng, n, L, fraction, every):
    """(n, L) independent draws; with ``every``, no row all True (see mask_modalities)."""
    q = fraction
    if every and fraction > 0:
        if fraction > 1 - 1 / L:
            raise ValueError(
                f"fraction {fraction} is too large for {L} modalities that may all be "
                f"missing: a sample must observe one, so at most {1 - 1 / L:.4g}")
        # q - q^L / L is increasing on [0, 1], from 0 to 1 - 1/L
        q = brentq(lambda t: t - t ** L / L - fraction, 0.0, 1.0) \
            if fraction < 1 - 1 / L else 1.0
    missing = rng.random_sample((n, L)) < q
    if every:
        full = np.flatnonzero(missing.all(axis=1))
        missing[full, rng.randint(0, L, size=full.size)] = False
    return missing


def _mar_probability(driver, fraction, strength):
    """``expit(a + strength * s)`` with ``s`` the standardised first PC score of the driver
    and ``a`` such that the mean over the samples is ``fraction``."""
    if fraction == 0:
        return np.zeros(driver.shape[0])
    score = PCA(n_components=1).fit_transform(driver)[:, 0]
    spread = float(np.std(score))
    score = score / spread if spread > 0 else np.zeros_like(score)
    bound = 50.0 + abs(strength) * float(np.max(np.abs(score)))
    offset = brentq(lambda a: float(np.mean(expit(a + strength * score))) - fraction,
                    -bound, bound)
    return expit(offset + strength * score)
