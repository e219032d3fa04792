"""Structure selection from a covariance matrix: which modality subsets share factors.

Method (covariance only; no structure is enumerated)
----------------------------------------------------
The model is ``x_m = sum_{S containing m} B_{m,S} z_S + e_m`` with ``e_m ~ (0, sigma_m^2 I)``.

1. **Each modality's rank and noise.** The eigenvalues of ``S_mm`` are compared with the
   white-noise law: ``sigma_m^2`` solves ``p_m sigma^2 = trace(S_mm) - sigma^2 sum_j ell_j``
   (trace minus the signal of the detected spikes, each spike's population size ``ell_j``
   recovered from its upward-biased sample eigenvalue; unbiased where the bulk median is
   not), and the ``j``-th eigenvalue is signal while it exceeds the level-``alpha``
   Tracy-Widom threshold of the largest eigenvalue of ``p_m - j`` white features
   (Johnstone 2001); the two are iterated to a fixed point. This gives ``k_m``, the number
   of factors loading on ``m``, and its top-``k_m`` eigenvectors ``U_m``. Only the reduced
   variables ``y_m = U_m^T x_m`` are used from here on (``sum_m k_m`` dimensions, not ``d``).
1b. **Shared directions too weak for the modality's own spectrum.** A factor weak in ``m``
   but strong in another modality is detectable from cross-covariances once
   ``ell > p_m / n``, far below the spectral limit ``ell > sqrt(p_m / n)``. The number of
   canonical correlations between all of ``x_m`` (needs ``p_m < n``) and the other
   modalities' (jointly whitened) reduced variables is compared with the number for
   ``y_m``; the difference is added to ``U_m`` as the leading directions of the
   cross-covariance outside ``span(U_m)``.
2. **Pairwise shared ranks.** ``y_a`` and ``y_b`` are independent when ``a`` and ``b``
   share no factor, whatever the noise, because cross-covariances carry no noise and
   ``U_a`` depends on modality ``a`` only. The number of factors shared by ``a`` and ``b``
   (``c_ab = sum of r_S over S containing both``) is the number of sample canonical
   correlations of ``(y_a, y_b)`` above the level-``alpha`` threshold of the largest null
   canonical correlation (Tracy-Widom law of Johnstone 2008), tested sequentially with
   the dimensions reduced by the roots already accepted.
3. **Who shares with whom (membership).** Inside modality ``m`` the reduced variables are
   rescaled so their *signal* covariance is the identity: coordinate ``j`` is divided by
   the square root of its estimated signal variance ``c_j ell_j sigma_m^2`` (the spiked
   covariance model's population spike ``ell_j`` and eigenvector cosine ``c_j``, which
   undo the upward bias of sample spikes). In these coordinates, in the population, the
   directions of different structures are orthogonal and the column space of the
   cross-covariance with modality ``a`` is exactly the sum of the directions of the
   structures containing ``a``: the projectors ``P_ma`` commute (in the sample this holds
   approximately, the more so the more orthogonal the loadings of different blocks). The
   space is split successively by each ``P_ma`` (eigenvalues of its compression above
   1/2: "shared with ``a``"), which yields, for each direction of ``m``, the set ``T`` of
   other modalities it is shared with: a count ``n_m(T)``. Equivalently, the dimension
   of the intersection of the pairwise column spaces, i.e. the Moebius inversion of the
   counts of factors shared by each group of modalities, restricted to the groups the
   data support.
4. **Consensus.** Each shared subset ``S`` is seen from each of its modalities; its rank
   is the rounded mean of the ``|S|`` counts ``n_m(S - m)``, ties rounded down (towards
   omitting the subset). Specific ranks are what is left: ``r_{m} = k_m - sum of shared
   ranks on m``.

Assumptions: Gaussian-like noise, isotropic within each modality (variances may differ
between modalities); ``n`` large enough that canonical correlations are estimated
(``n >> sum k_m``); each modality's stacked loadings have full column rank (the
identifiability condition of METHOD.md). Errors go towards omission: a block whose
signal is below the detection limit of any test is dropped (its directions end up in the
specific block of the modality that still detects them, or nowhere).

Limitation: a factor specific to one modality can only be seen in that modality's own
spectrum, so it is found reliably only when its *modality-level* spike (an eigenvalue of
``B_m^T B_m``, not a block singular value) clears ``sigma_m^2 sqrt(p_m / n)`` with some
margin. With random loadings these eigenvalues spread as ``(1 +- sqrt(k_m / p_m))^2``
around the block values, so a modality carrying many factors has weaker modality-level
spikes than its blocks suggest (see ``simulations/selection_study.py``).

Cost: one symmetric eigendecomposition per modality, ``O(sum_m p_m^3)``, plus
``O(M^2)`` SVDs of ``k_a x k_b`` matrices and ``O(M^2)`` eigenproblems of size ``k_m``;
nothing grows with the number of candidate structures (``2^(2^M - 1)``), and only the
subsets the pairwise tests support are ever formed. Step 1b adds one whitening of each
``S_mm`` (from the same eigendecomposition) and ``M`` SVDs of ``p_m x sum_a k_a`` matrices.
M = 4 modalities of 200 features (n = 2000) take about 0.1 s on one core, about twice the
time of forming the covariance.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import scipy.linalg

from hcl_stats._structure import Structure
from hcl_stats._validation import check_covariance, check_positive_int
from hcl_stats.selection._rmt import (cca_largest_root_threshold, mp_median, spike_cosine2,
                                      spike_population, wishart_edge_threshold)

__all__ = ["select_structure"]

_COLUMNS = ["step", "subset", "modality", "component", "statistic", "value", "threshold",
            "selected", "rank"]


def _label(subset, names):
    return "{" + ",".join(names[m] if names else str(m) for m in subset) + "}"


def _modality_rank(evals, p, df, alpha, kmax):
    """Noise variance and number of eigenvalues above the white-noise edge.

    The noise variance solves ``p sigma^2 = trace(S_mm) - sigma^2 sum_j ell_j`` (the trace
    minus the signal variance of the detected spikes, each spike's population size
    ``ell_j`` recovered from its biased sample eigenvalue), started from the bulk median;
    the ``j``-th eigenvalue is signal while it exceeds the level-``alpha`` Tracy-Widom
    threshold for ``p - j`` white features. Both are iterated to a fixed point.
    """
    nz = min(p, df)
    evals = np.clip(evals[:nz], 0.0, None)
    trace = float(evals.sum())
    gamma = p / df
    k = 0
    sigma2 = float(np.median(evals) / mp_median(gamma)) if trace > 0 else 0.0
    thresholds = []
    for _ in range(20):
        if trace <= 0:
            return 0.0, 0, []
        for _ in range(100):
            signal = sum(spike_population(e / sigma2, gamma) for e in evals[:k])
            new = max(trace / (p + signal), np.finfo(float).tiny) if k else trace / p
            done = abs(new - sigma2) <= 1e-10 * sigma2
            sigma2 = new
            if done:
                break
        k_new = 0
        thresholds = []
        while k_new < min(kmax, nz - 1):
            t = sigma2 * wishart_edge_threshold(p - k_new, df, alpha)
            thresholds.append(t)
            if evals[k_new] <= t:
                break
            k_new += 1
        if k_new == k:
            break
        k = k_new
    return sigma2, k, thresholds


def _cca_count(A, df, alpha, dims, record=None, subset=None, modality=None, what=""):
    """Sequential count of significant canonical correlations; ``A`` is the whitened
    cross-covariance (its singular values are the sample canonical correlations)."""
    p, q = dims
    L, rho, Rt = scipy.linalg.svd(A, full_matrices=False)
    rho2 = np.clip(rho, 0, 1) ** 2
    c = 0
    for j in range(min(p, q, len(rho2))):
        t = cca_largest_root_threshold(p - j, q - j, df - j, alpha)
        ok = rho2[j] > t
        if record is not None:
            record("cross-modal rank", subset, modality, j, what, rho2[j], t, ok)
        if not ok:
            break
        c += 1
    return c, L, Rt


def _augment(S, rows, n_features, df, alpha, noise, U, lam, sig, spectra, record):
    """Add to each modality the shared directions its own spectrum missed.

    For modality ``m``, the number of canonical correlations between all of ``x_m``
    (whitened by ``S_mm``; needs ``p_m < n - 1``) and the other modalities' reduced
    variables is compared with the number for ``m``'s reduced variables alone; the
    difference is the number of shared directions the reduced basis lacks (a factor weak in
    ``m`` but strong elsewhere is detectable from cross-covariances above
    ``ell > p_m / n`` rather than the spectrum's ``ell > sqrt(p_m / n)``). They are added
    as the leading left singular vectors of the cross-covariance with the others,
    orthogonalised against the current basis.
    """
    M = len(rows)
    base = [u.shape[1] for u in U]
    for m in range(M):
        p = n_features[m]
        others = [a for a in range(M) if a != m and base[a] > 0]
        if not others or p >= df - sum(base[a] for a in others) - 1:
            continue
        evals, evecs = spectra[m]
        if evals[-1] <= 0:
            continue
        Y = np.hstack([S[rows[m], rows[a]] @ U[a][:, :base[a]] / np.sqrt(lam[a][:base[a]])
                       for a in others])  # p_m x K_o, cross-covariance with whitened others
        idx = np.concatenate([np.arange(rows[a].start, rows[a].stop) for a in others])
        # the others' variables are correlated with each other: whiten them jointly
        Woo = np.zeros((len(idx), sum(base[a] for a in others)))
        r0 = 0
        c0 = 0
        for a in others:
            Woo[r0:r0 + n_features[a], c0:c0 + base[a]] = (U[a][:, :base[a]]
                                                           / np.sqrt(lam[a][:base[a]]))
            r0 += n_features[a]
            c0 += base[a]
        Coo = Woo.T @ S[np.ix_(idx, idx)] @ Woo
        w, V = scipy.linalg.eigh(Coo)
        Y = Y @ (V / np.sqrt(np.maximum(w, 1e-12 * w.max()))) @ V.T
        Ko = Y.shape[1]
        full = (evecs / np.sqrt(evals)).T @ Y  # x_m whitened by S_mm (eigenbasis)
        t_m, _, _ = _cca_count(full, df, alpha, (p, Ko), record, (m,), m,
                               "canonical correlation^2, all features vs others")
        km = base[m]
        if km == 0:
            s_m = 0
        else:
            red = (U[m][:, :km] / np.sqrt(lam[m][:km])).T @ Y
            s_m, _, _ = _cca_count(red, df, alpha, (km, Ko))
        extra = min(t_m - s_m, p - km - 1)
        if extra <= 0:
            continue
        resid = Y - U[m] @ (U[m].T @ Y)
        new = scipy.linalg.svd(resid, full_matrices=False)[0][:, :extra]
        new = new - U[m] @ (U[m].T @ new)
        new = np.linalg.qr(new)[0]
        vals, rot = scipy.linalg.eigh(new.T @ S[rows[m], rows[m]] @ new)
        vals, rot = vals[::-1], rot[:, ::-1]
        U[m] = np.hstack([U[m], new @ rot])
        lam[m] = np.concatenate([lam[m], vals])
        sig[m] = np.concatenate([sig[m], np.maximum(vals - noise[m], 1e-3 * noise[m])])
        record("cross-modal rank", (m,), m, None, "shared directions added", extra, 0.5, True)


def select_structure(S, n_features, *, n_samples, max_rank=None, names=None,
                     random_state=None, alpha=0.01, augment=True):
    """Select the structure (shared subsets and their ranks) from a sample covariance.

    See the module docstring for the method, its assumptions and its cost.

    Parameters
    ----------
    S : array-like of shape (d, d)
        Sample covariance of the stacked modalities (divisor ``n - 1``).
    n_features : sequence of int
        Modality widths ``p_m``, in the order of the rows of ``S``.
    n_samples : int
        Number of samples behind ``S``.
    max_rank : int or None, default=None
        Largest rank kept for any block (and at most ``max_rank`` times ``2^(M-1)``
        factors per modality are looked for). None: no limit beyond half the spectrum.
    names : sequence of str or None, default=None
        Modality names; the structure is returned bound to them.
    random_state : None
        Unused (the selection is deterministic); accepted for a uniform signature.
    alpha : float, default=0.01
        Level of each test (modality ranks and pairwise canonical correlations). Smaller
        values omit more weak blocks and invent fewer.
    augment : bool, default=True
        Look for shared directions too weak for a modality's own spectrum through its
        canonical correlations with the other modalities (step 1b of the method).

    Returns
    -------
    structure : Structure
        The selected structure.
    evidence : pandas.DataFrame
        One row per test or decision, columns ``step`` ("modality rank", "pair rank",
        "membership", "structure"), ``subset``, ``modality``, ``component``, ``statistic``,
        ``value``, ``threshold``, ``selected``, ``rank``. ``evidence.attrs["info"]`` is a dict
        of the intermediate quantities: ``noise_variance`` (M,), ``modality_rank`` (M,)
        (``k_m``), ``pair_rank`` (M, M) (``c_ab``), ``forced`` (modalities given a rank-1
        specific block without evidence), ``alpha``, ``n_samples``.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats._core import sample_covariance
    >>> from hcl_stats.datasets import make_hierarchical
    >>> truth = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    >>> X = make_hierarchical(1000, [30, 40, 50], truth, noise_variance=0.5,
    ...                       singular_values=(1, 2), random_state=0)
    >>> S, _, n = sample_covariance(X)
    >>> structure, evidence = select_structure(S, [30, 40, 50], n_samples=n)
    >>> structure == truth
    True
    """
    import pandas as pd

    del random_state
    n_features = [check_positive_int(p, "n_features entries") for p in n_features]
    n = check_positive_int(n_samples, "n_samples", minimum=3)
    if isinstance(alpha, bool) or not (0 < float(alpha) < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    alpha = float(alpha)
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, Integral)
                                 or max_rank < 1):
        raise ValueError(f"max_rank must be a positive integer or None, got {max_rank!r}")
    M = len(n_features)
    if names is not None:
        names = tuple(names)
        if len(names) != M:
            raise ValueError(f"{len(names)} names given for {M} modalities")
    S = check_covariance(S, sum(n_features))
    df = n - 1
    edges = np.concatenate([[0], np.cumsum(n_features)]).astype(int)
    rows = [slice(edges[m], edges[m + 1]) for m in range(M)]
    records = []

    def record(step, subset, modality, component, statistic, value, threshold, selected,
               rank=np.nan):
        records.append((step, _label(subset, names) if subset is not None else None,
                        (names[modality] if names else modality) if modality is not None
                        else None, component, statistic, float(value), float(threshold),
                        bool(selected), rank))

    # -- 1. per-modality rank, noise and reduced basis --------------------------------------
    noise = np.zeros(M)
    k = np.zeros(M, dtype=int)
    U, lam, sig, spectra = [], [], [], []
    for m in range(M):
        p = n_features[m]
        evals, evecs = scipy.linalg.eigh(S[rows[m], rows[m]])
        evals, evecs = evals[::-1], evecs[:, ::-1]
        kmax = max(min(p, df) // 2, 1)
        if max_rank is not None:
            kmax = min(kmax, max_rank * 2 ** (M - 1))
        sigma2, km, thresholds = _modality_rank(evals, p, df, alpha, kmax)
        noise[m], k[m] = sigma2, km
        for j, t in enumerate(thresholds):
            record("modality rank", (m,), m, j, "eigenvalue", evals[j], t, j < km)
        gamma = p / df
        s2 = np.array([spike_cosine2(ell, gamma) * ell * sigma2 for ell in
                       (spike_population(evals[j] / sigma2, gamma) for j in range(km))])
        U.append(evecs[:, :km])
        lam.append(evals[:km])
        sig.append(np.maximum(s2, 1e-3 * sigma2 * np.sqrt(gamma)))
        spectra.append((evals, evecs))

    # -- 1b. shared directions too weak for the modality's own spectrum --------------------
    if augment:
        _augment(S, rows, n_features, df, alpha, noise, U, lam, sig, spectra, record)
    k = np.array([u.shape[1] for u in U], dtype=int)

    # -- 2. pairwise ranks by canonical correlations -----------------------------------------
    pair_rank = np.zeros((M, M), dtype=int)
    left = {}  # (m, a) -> orthonormal basis (k_m x c_ma) in the signal-whitened coords of m
    for a in range(M):
        for b in range(a + 1, M):
            if k[a] == 0 or k[b] == 0:
                continue
            C = U[a].T @ S[rows[a], rows[b]] @ U[b]
            R = C / np.sqrt(np.outer(lam[a], lam[b]))
            Ua, rho, Vbt = scipy.linalg.svd(R)
            rho2 = np.clip(rho, 0, 1) ** 2
            c = 0
            for j in range(min(k[a], k[b])):
                t = cca_largest_root_threshold(k[a] - j, k[b] - j, df - j, alpha)
                ok = rho2[j] > t
                record("pair rank", (a, b), None, j, "canonical correlation^2", rho2[j], t,
                       ok)
                if not ok:
                    break
                c += 1
            pair_rank[a, b] = pair_rank[b, a] = c
            if c:
                for m, Q in ((a, Ua[:, :c]), (b, Vbt[:c].T)):
                    Qs = Q * np.sqrt(lam[m] / sig[m])[:, None]
                    left[(m, b if m == a else a)] = np.linalg.qr(Qs)[0]

    # -- 3. membership of each direction, per modality ---------------------------------------
    counts = {}  # subset S (|S| >= 2) -> {m: n_m(S - m)}
    for m in range(M):
        if k[m] == 0:
            continue
        pieces = [(np.eye(k[m]), ())]
        for a in range(M):
            if (m, a) not in left:
                continue
            Q = left[(m, a)]
            new = []
            for V, T in pieces:
                B = Q.T @ V
                w, E = scipy.linalg.eigh(B.T @ B)
                inside = w > 0.5
                for j in range(len(w)):
                    if abs(w[j] - 0.5) < 0.5:  # record the non-trivial scores only
                        record("membership", tuple(sorted(T + (a, m))), m, j,
                               f"squared cosine to the space shared with "
                               f"{names[a] if names else a}", w[j], 0.5, inside[j])
                if inside.any():
                    new.append((V @ E[:, inside], T + (a,)))
                if (~inside).any():
                    new.append((V @ E[:, ~inside], T))
            pieces = new
        for V, T in pieces:
            if T:
                subset = tuple(sorted(T + (m,)))
                counts.setdefault(subset, {})[m] = counts.get(subset, {}).get(m, 0) + V.shape[1]

    # -- 4. consensus ------------------------------------------------------------------------
    blocks = {}
    for subset in sorted(counts, key=lambda s: (-len(s), s)):
        votes = [counts[subset].get(m, 0) for m in subset]
        mean = float(np.mean(votes))
        r = int(np.floor(mean + 0.5 - 1e-9))
        if max_rank is not None:
            r = min(r, max_rank)
        record("structure", subset, None, None, "mean count over its modalities", mean, 0.5,
               r > 0, r)
        if r > 0:
            blocks[subset] = r
    forced = []
    for m in range(M):
        shared = sum(r for s, r in blocks.items() if m in s)
        r = int(k[m]) - shared
        if max_rank is not None:
            r = min(r, max_rank)
        if r <= 0 and shared == 0:
            forced.append(m)
            r = 1
        if r > 0:
            blocks[(m,)] = r
        record("structure", (m,), m, None, "factors on the modality minus shared", k[m] - shared,
               0.5, k[m] - shared > 0, r if r > 0 else 0)
    if forced:
        label = [names[m] if names else m for m in forced]
        warnings.warn(
            f"no factor detected in modality {label}: a specific block of rank 1 was kept so "
            "that the structure covers every modality", UserWarning, stacklevel=2)
    structure = Structure(blocks, modalities=names or M)
    evidence = pd.DataFrame.from_records(records, columns=_COLUMNS)
    evidence.attrs["info"] = {
        "noise_variance": noise, "modality_rank": k, "pair_rank": pair_rank,
        "forced": forced, "alpha": alpha, "n_samples": n}
    return structure, evidence
