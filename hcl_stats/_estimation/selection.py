"""Structure selection from a covariance matrix: which modality subsets share factors.

The model is ``x_m = sum_{S containing m} B_{m,S} z_S + e_m`` with ``e_m ~ (0, sigma_m^2 I)``.
Nothing is enumerated over candidate structures; one function per step
(``docs/selection.md`` explains each step, its thresholds and its assumptions):

1. :func:`_reduced_bases`: each modality's noise variance and number of factors ``k_m``
   from the eigenvalues of ``S_mm`` over the noise variance fitted to them, against the
   null distribution of that ratio under white noise of unknown variance
   (:func:`_spike_threshold`), iterated to a fixed point, counting only eigenvalues above
   the strength floor (``strength`` times the mean eigenvalue of ``S_mm``: a factor must be
   strong as well as above the noise) where the eigenvalues beyond the detected factors
   are not those of white noise (:func:`_white_bulk`); the top-``k_m`` eigenvectors
   ``U_m`` are the reduced variables used from then on. Steps 1b and 5 apply the same
   floor.
1b. :func:`_augment`: shared directions too weak for the modality's own spectrum, found by
   canonical correlations of all of ``x_m`` with the other modalities; used for the
   geometry of steps 2-3 only, never in a test.
2. :func:`_pair_ranks`: the number ``c_ab`` of factors shared by each pair, counted by
   sequential tests of canonical correlations against the largest-root threshold under
   independence (Johnstone 2008), on up to four pairs of bases (:func:`_pair_candidates`).
3. :func:`_membership`: in signal-whitened coordinates, each modality's space is split by
   the spaces it shares with each other modality (squared cosine above 1/2), giving for
   each direction the set of modalities it is shared with.
4. :func:`_shared_blocks`: each shared subset's rank is its mean count over its
   modalities, rounded to best reproduce the tested pair ranks (:func:`_consensus`).
5. :func:`_specific_blocks`: each modality's specific rank, from the spectrum of ``S_mm``
   compressed to the complement of its estimated shared directions (``c`` of them, tested
   with ``n - 1 - c`` degrees of freedom: they are ``c`` sample spikes removed).
5b. :func:`_fewer_than_features`: a modality that the consensus ranks give as many factors
   as features loses its weakest (:func:`_factor_strengths`) until it has fewer.
6. :func:`_budget` (only with ``max_components``): at most that many factors, the
   strongest (:func:`_factor_strengths`), the weakest block ranks dropped first.

Levels: ``alpha`` is family-wise (Bonferroni): each pair test runs at
``alpha / (M (M - 1) / 2)``, each specific-rank test (and each test of step 1b) at
``alpha / M``; step 1, a dimension reduction, at ``alpha``.

All the linear algebra runs on one BLAS thread (:func:`select_structure`), so that
decisions at a threshold do not depend on the thread count. ``S`` is checked finite once
on entry; the many small decompositions go straight to LAPACK
(:func:`hcl_stats._numerics.linalg.small_eigh`, :func:`~hcl_stats._numerics.linalg.small_svd`).
A modality much wider than the samples (``S_mm`` of rank at most ``n - 1``) is decomposed
from the range of ``S_mm`` (:func:`~hcl_stats._numerics.linalg.range_eigh`: its non-zero
eigenpairs, exact to rounding, and zeros), and its step-5 spectrum from those eigenpairs.
``S`` may also be the covariance in exact bases of the modalities' ranges
(``n_coordinates``, :mod:`hcl_stats._estimation.compressed`): the rows of ``S`` then number
``q_m`` per modality while every count, threshold and floor takes the ``p_m`` features.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import scipy.stats

from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.rmt import (
    cca_largest_root_threshold,
    largest_ratio_threshold,
    sphericity_statistic,
    spike_cosine2,
    spike_noise,
    spike_population,
    wishart_edge_threshold,
)
from hcl_stats._input.params import check_positive_int
from hcl_stats._input.validation import check_covariance
from hcl_stats._numerics.linalg import range_eigh, serial_blas, small_eigh, small_qr, small_svd
from hcl_stats._structure import Structure, check_joint_counts, row_slices, subset_label

__all__ = ["SelectionResult", "select_structure"]

_COLUMNS = ["step", "subset", "modality", "component", "statistic", "value", "threshold",
            "selected", "rank"]


# the widest spectrum (min(p, df)) for which step 1 computes the exact null distribution of
# its statistic (largest_ratio_threshold, whose cost grows like p^2); wider ones use the
# known-variance Tracy-Widom threshold, above it by under 1% there (docs/selection.md)
_EXACT_RATIO_WIDTH = 64


@functools.lru_cache(maxsize=4096)
def _spike_threshold(p, df, j, alpha):
    """Level-``alpha`` threshold for the ``j``-th eigenvalue (from 0) of a modality's
    sample covariance over its noise variance fitted with ``j`` spikes
    (:func:`hcl_stats._estimation.rmt.spike_noise`), when there are exactly ``j`` factors.

    For ``j = 0`` the fitted noise variance is ``trace / p``, so the statistic is
    ``lambda_1 / mean(lambda)``, whose null distribution
    (:func:`~hcl_stats._estimation.rmt.largest_ratio_threshold`) holds at any ``p`` with
    the noise variance unknown. Beyond ``j`` factors well above the noise, the other
    eigenvalues are close to those of ``p - j`` white features with ``df - j`` degrees of freedom
    (each factor takes one), and the fitted noise variance is their sum over
    ``p - j (1 + p / df)`` (each sample spike also absorbs ``1 + p / df`` noise
    variances), so the statistic is that of ``p - j`` features times ``1 - j p / (df (p -
    j))``. Spectra wider than ``_EXACT_RATIO_WIDTH`` take the known-variance
    Tracy-Widom threshold (:func:`~hcl_stats._estimation.rmt.wishart_edge_threshold`) for
    ``p - j`` features and ``df - j`` degrees of freedom instead.
    """
    q, dof = p - j, df - j
    if min(q, dof) <= _EXACT_RATIO_WIDTH:
        base = largest_ratio_threshold(q, dof, alpha)
    else:
        base = wishart_edge_threshold(q, dof, alpha)
    return base * (1.0 - j * p / (df * q))


def _modality_rank(evals, p, df, alpha, kmax, memo=None):
    """Noise variance and number of eigenvalues above the white-noise edge.

    The noise variance solves ``p sigma^2 = trace(S_mm) - sigma^2 sum_j ell_j`` (the trace
    minus the signal variance of the detected spikes, each spike's population size
    ``ell_j`` recovered from its biased sample eigenvalue), started from ``trace / p``
    (no spike); for each count of spikes it is the equation's root
    (:func:`hcl_stats._estimation.rmt.spike_noise`). The ``j``-th eigenvalue (from 0) is
    signal while its ratio to the noise variance exceeds the level-``alpha`` threshold of
    that ratio with exactly ``j`` factors (:func:`_spike_threshold`: the noise variance is
    fitted to the same eigenvalues, the tested one included); noise variance and count
    are iterated to a fixed point. ``memo``: a dict
    shared by the calls on the same ``evals``, ``p`` and ``df`` (only ``kmax`` differing),
    which then solve for no count of spikes twice.
    """
    nz = min(p, df)
    evals = np.maximum(evals[:nz], 0.0)  # np.clip(..., 0.0, None), without its wrappers
    trace = float(evals.sum())
    if trace <= 0:
        return 0.0, 0, []
    gamma = p / df
    k = 0
    sigma2 = trace / p  # the fixed point without spikes
    spikes = evals.tolist()  # Python floats: the work below is scalar
    memo = {} if memo is None else memo
    # the count only grows (more spikes, a smaller root, lower thresholds) until it is
    # fixed, so this bound never ends the loop before the fixed point
    for _ in range(min(kmax, nz - 1) + 2):
        if k:
            if k not in memo:
                memo[k] = spike_noise(spikes[:k], trace, p, gamma)
            sigma2 = memo[k]
        k_new = 0
        thresholds = []
        while k_new < min(kmax, nz - 1):
            t = sigma2 * _spike_threshold(p, df, k_new, alpha)
            thresholds.append(t)
            if spikes[k_new] <= t:
                break
            k_new += 1
        if k_new == k:
            break
        k = k_new
    return sigma2, k, thresholds


def _squared_correlations(rho):
    """``(np.clip(rho, 0, 1) ** 2).tolist()`` of singular values ``rho`` (never negative):
    the same bits, without np.clip's wrappers."""
    rho2 = np.minimum(rho, 1.0)
    rho2 *= rho2
    return rho2.tolist()


def _cca_count(A, df, alpha, dims, record=None, subset=None, modality=None, what=""):
    """Sequential count of significant canonical correlations; ``A`` is the whitened
    cross-covariance (its singular values are the sample canonical correlations)."""
    p, q = dims
    L, rho, Rt = small_svd(A)
    rho2 = _squared_correlations(rho)
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


class _CrossProducts:
    """The products of ``S`` with fixed per-modality bases ``U``, each computed once: the
    cross-whitening of every modality (:meth:`cross_whitened`) uses the Gram blocks
    ``U_a^T S_ab U_b`` of all the other pairs, and steps 1b and 5 whiten the same
    modalities against the same others where no direction was added in between
    (:meth:`rebased`)."""

    def __init__(self, S, rows, bases):
        self.S, self.rows, self.bases = S, rows, bases
        self._gram, self._cross = {}, {}

    def rebased(self, bases):
        """The products for ``bases``, with those computed here that involve only bases
        unchanged (the same arrays)."""
        same = {a for a, (new, old) in enumerate(zip(bases, self.bases)) if new is old}
        if len(same) == len(bases):
            return self
        out = _CrossProducts(self.S, self.rows, bases)
        out._gram = {key: G for key, G in self._gram.items() if set(key) <= same}
        out._cross = {key: Y for key, Y in self._cross.items() if set(key[1]) <= same}
        return out

    def right(self, m, a):
        """``S_ma U_a``."""
        return self.S[self.rows[m], self.rows[a]] @ self.bases[a]

    def gram(self, a, b):
        """``U_a^T S_ab U_b``."""
        if (a, b) not in self._gram:
            self._gram[(a, b)] = (self.bases[a].T @ self.S[self.rows[a], self.rows[b]]
                                  @ self.bases[b])
        return self._gram[(a, b)]

    def cross_whitened(self, m, others):
        """Cross-covariance ``p_m x K_o`` of ``x_m`` with the other modalities' reduced
        variables ``y_a = U_a^T x_a`` (``a`` in ``others``), whitened jointly (the others'
        variables are correlated with each other). Its column space is, in the
        population, the span of the loadings on ``m`` of the factors ``m`` shares with
        the others, whatever the choice of the bases (the whitening makes it invariant)."""
        key = (m, tuple(others))
        if key not in self._cross:
            Y = np.hstack([self.right(m, a) for a in others])
            edges = [0, *itertools.accumulate(self.bases[a].shape[1] for a in others)]
            G = np.empty((edges[-1], edges[-1]))
            for i, a in enumerate(others):
                for j, b in enumerate(others):
                    G[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = self.gram(a, b)
            w, V = small_eigh((G + G.T) / 2)
            self._cross[key] = Y @ (V / np.sqrt(np.maximum(w, 1e-12 * w.max()))) @ V.T
        return self._cross[key]


def _specific_rank(S, rows, m, c, U, n_features, df, alpha, kmax, spectrum, sigma2, floor,
                   products):
    """Number of factors of modality ``m`` outside its ``c`` shared directions.

    The shared directions are the top-``c`` left singular vectors of the cross-covariance
    of the *denoised* ``x_m`` with the other modalities' jointly whitened reduced variables
    (:meth:`_CrossProducts.cross_whitened`): ``x_m`` is denoised by its linear predictor
    of the signal, ``(S_mm - sigma^2 I) S_mm^{-1}`` with negative eigenvalues set to 0
    (``spectrum`` is the eigendecomposition of ``S_mm``, ``sigma2`` its noise variance;
    for a wide modality its non-zero eigenpairs and zeros, from which the compressed
    eigenvalues then come, :func:`_compressed_eigvals`), which damps the
    isotropic noise of the cross-covariance in the directions where ``S_mm`` shows no
    signal. ``S_mm`` is compressed to the orthogonal complement of the shared directions
    (``p_m - c`` dimensions) and its eigenvalues are tested as in step 1 for ``p_m - c``
    features and ``df - c`` degrees of freedom: the shared directions lie in the span of
    the leading sample eigenvectors, so the compressed spectrum is that of ``S_mm`` beyond
    ``c`` sample spikes (:func:`_spike_threshold`; for ``p_m >= df`` it has exactly
    ``df - c`` non-zero eigenvalues). Its noise variance, fitted in those units, is
    multiplied by ``df / (df - c)`` (each removed spike carried ``1 + p_m / df`` noise
    variances). Returns ``(sigma2, r, eigenvalues, thresholds)``. At most as many eigenvalues as exceed ``floor`` are counted, and the
    modality keeps fewer factors than features (``c + r < p_m``). ``products``: a
    :class:`_CrossProducts` of bases equal to ``U``.
    """
    p = n_features[m]
    Smm = S[rows[m], rows[m]]
    others = [a for a in range(len(rows)) if a != m and U[a].shape[1] > 0]
    ev, V = spectrum
    ev = ev[:V.shape[1]]
    wide = V.shape[1] < p  # the spectrum of the range of S_mm and its zeros (range_eigh)
    if c > 0 and others:
        Y = products.cross_whitened(m, others)
        c = min(c, Y.shape[1], p - 1, df - 2)
        # signal share 1 - sigma^2 / ev, zero where ev <= sigma^2 (constant features: ev = 0)
        ratio = np.divide(sigma2, ev, out=np.ones_like(ev), where=ev > sigma2)
        w = 1.0 - ratio
        Q = small_svd(V @ (w[:, None] * (V.T @ Y)))[0][:, :c]
        if wide:
            evals = _compressed_eigvals(ev, V, Q, p)[:p - c]
        else:
            PS = Smm - Q @ (Q.T @ Smm)
            PS = PS - (PS @ Q) @ Q.T
            evals = small_eigh(PS, eigvals_only=True)[::-1][:p - c]
    else:
        c = 0
        evals = spectrum[0] if wide else small_eigh(Smm, eigvals_only=True)[::-1]
    strong = int(np.sum(evals > floor))
    # the compressed spectrum is that of S_mm beyond c sample spikes (step 1's null for
    # ``j = c``): p - c features with df - c degrees of freedom, in units of divisor df
    sigma2, r, thresholds = _modality_rank(evals, p - c, df - c, alpha,
                                           min(kmax, p - c, strong))
    if c:
        sigma2 *= df / (df - c)
    return sigma2, min(r, max(p - 1 - c, 0)), evals, thresholds


def _compressed_eigvals(ev, V, Q, p):
    """The ``p`` eigenvalues (decreasing) of ``S_mm`` compressed to the orthogonal
    complement of ``Q``'s columns, ``P S_mm P``, from eigenpairs ``ev``, ``V`` that hold
    all of its range (``S_mm = V diag(ev) V^T``, fewer columns than ``p``): those of the
    Gram matrix of ``P V diag(ev)^{1/2}``, then zeros."""
    A = (V - Q @ (Q.T @ V)) * np.sqrt(np.maximum(ev, 0.0))
    values = small_eigh(A.T @ A, eigvals_only=True)[::-1]
    return np.concatenate([values, np.zeros(p - values.shape[0])])


def _extra_directions(n_features, df, alpha, m, others, base, spectra, record, products):
    """Shared directions of modality ``m`` that its own spectrum missed, found through the
    modalities ``others``.

    The number of canonical correlations between all of ``x_m`` (whitened by ``S_mm``;
    needs ``p_m < n - 1``) and the others' reduced variables ``base[a]^T x_a`` is compared
    with the number for ``m``'s reduced variables ``base[m]^T x_m``; the difference is the
    number of shared directions the reduced basis lacks (a factor weak in ``m`` but strong
    elsewhere is detectable from cross-covariances above ``ell > p_m / n`` rather than the
    spectrum's ``ell > sqrt(p_m / n)``). They are the leading left singular vectors of the
    cross-covariance with the others outside ``span(base[m])``. Returns a ``p_m x e``
    orthonormal matrix orthogonal to ``base[m]`` (``e`` may be 0). ``products``: the
    :class:`_CrossProducts` of ``base``.
    """
    p = n_features[m]
    Um = base[m]
    none = np.zeros((Um.shape[0], 0))
    others = [a for a in others if base[a].shape[1] > 0]
    if not others or p >= df - sum(base[a].shape[1] for a in others) - 1:
        return none
    evals, evecs = spectra[m]
    if not _nonsingular(evals):
        return none
    Y = products.cross_whitened(m, others)
    Ko = Y.shape[1]
    full = (evecs / np.sqrt(evals)).T @ Y  # x_m whitened by S_mm (eigenbasis)
    t_m, _, _ = _cca_count(full, df, alpha, (p, Ko), record, (m,), m,
                           "canonical correlation^2, all features vs others")
    km = Um.shape[1]
    if t_m == 0 or p - km - 1 <= 0:  # nothing to add, whatever the reduced count
        return none
    s_m = 0
    if km:
        red = (Um / np.sqrt(evals[:km])).T @ Y
        s_m, _, _ = _cca_count(red, df, alpha, (km, Ko))
    extra = min(t_m - s_m, p - km - 1)
    if extra <= 0:
        return none
    resid = Y - Um @ (Um.T @ Y)
    new = small_svd(resid)[0][:, :extra]
    new = new - Um @ (Um.T @ new)
    return small_qr(new)


def _augment(S, rows, n_features, dof, alpha, noise, U, lam, sig, spectra, floors, record,
             products):
    """Step 1b for every modality, through all the other modalities (the bases used by
    the membership step); see :func:`_extra_directions`. An added direction must carry
    more variance in its modality than the modality's strength floor. ``products``: the
    :class:`_CrossProducts` of the bases before augmentation; the entries of ``U`` that
    change are replaced, not modified."""
    M = len(rows)
    base = products.bases
    for m in range(M):
        others = [a for a in range(M) if a != m]
        new = _extra_directions(n_features, dof(m, *others), alpha, m, others, base,
                                spectra, record, products)
        extra = new.shape[1]
        if extra == 0:
            continue
        vals, rot = small_eigh(new.T @ S[rows[m], rows[m]] @ new)
        keep = vals[::-1] > floors[m]
        vals, rot = vals[::-1][keep], rot[:, ::-1][:, keep]
        extra = int(keep.sum())
        if extra == 0:
            continue
        U[m] = np.hstack([U[m], new @ rot])
        lam[m] = np.concatenate([lam[m], vals])
        sig[m] = np.concatenate([sig[m], np.maximum(vals - noise[m], 1e-3 * noise[m])])
        record("cross-modal rank", (m,), m, None, "shared directions added", extra, 0.5, True)


def _whiten(B, Smm, gram=None):
    """``B (B^T S_mm B)^{-1/2}``: the reduced variables ``B^T x_m``, whitened (``gram``:
    ``B^T S_mm B`` when the caller holds it)."""
    if B.shape[1] == 0:
        return B
    w, V = small_eigh(B.T @ Smm @ B if gram is None else gram)
    return B @ (V / np.sqrt(np.maximum(w, 1e-12 * max(w.max(), 1e-300))))


def _consensus(order, means, pair_rank, M, max_rank):
    """Integer ranks of the shared subsets proposed by the membership step.

    A subset's mean count over its modalities is rounded to the nearest integer, ties
    down. When the mean exceeds 1 (the subset is selected in any case) it may instead be
    rounded the other way: among these roundings the one chosen reproduces best
    the *tested* pair ranks ``c_ab = sum of r_S over S containing a and b`` (sum of
    absolute differences over all pairs), then stays closest to the mean counts, then has
    the smaller total rank (omission rather than invention).
    """
    def rnd(v):
        return int(np.floor(v + 0.5 - 1e-9))

    base = {s: rnd(means[s]) for s in order}
    free = [s for s in order if abs(means[s] - round(means[s])) > 1e-9 and means[s] > 1]

    pairs = [(a, b) for a in range(M) for b in range(a + 1, M)]
    tested = {(a, b): int(pair_rank[a, b]) for a, b in pairs}
    # the pairs inside each subset (sorted tuples), for the implied pair ranks
    inside = {s: [(a, b) for i, a in enumerate(s) for b in s[i + 1:]] for s in order}

    def cost(r):  # integer bookkeeping in Python: it runs for every candidate rounding
        implied = dict.fromkeys(pairs, 0)
        for s in order:
            for pair in inside[s]:
                implied[pair] += r[s]
        return (sum(abs(implied[pair] - tested[pair]) for pair in pairs),
                float(sum(abs(r[s] - means[s]) for s in order)), sum(r.values()))

    best = dict(base)
    if free:
        options = {s: (int(np.floor(means[s])), int(np.ceil(means[s]))) for s in free}
        best_cost = cost(best)
        if len(free) <= 12:
            for choice in itertools.product(*(options[s] for s in free)):
                r = dict(base)
                r.update(zip(free, choice))
                c = cost(r)
                if c < best_cost:
                    best, best_cost = r, c
        else:  # coordinate descent from the plain rounding
            improved = True
            while improved:
                improved = False
                for s in free:
                    for v in options[s]:
                        r = dict(best)
                        r[s] = v
                        c = cost(r)
                        if c < best_cost:
                            best, best_cost, improved = r, c, True
    if max_rank is not None:
        best = {s: min(r, max_rank) for s, r in best.items()}
    return best


@dataclass(frozen=True, eq=False)
class SelectionResult:
    """Outcome of :func:`select_structure`.

    Also behaves as the pair ``(structure, evidence)``: it unpacks as
    ``structure, evidence = select_structure(...)`` and ``result[0]`` is the structure.

    Attributes
    ----------
    structure : Structure
        The selected structure (bound to the modality names when given).
    evidence : pandas.DataFrame
        One row per test or decision, columns ``step`` ("strength", "modality rank",
        "cross-modal rank", "pair rank", "membership", "structure", "specific rank",
        "modality cap" where a modality had as many factors as features, and "budget"
        with ``max_components``),
        ``subset``,
        ``modality``, ``component``, ``statistic``, ``value``, ``threshold``, ``selected``,
        ``rank``. Built from the recorded rows on first access (a fit that never reads
        it does not pay for the table), then kept.
    noise_variance : ndarray of shape (M,)
        Noise variance per modality (re-estimated outside the shared directions).
    modality_rank : ndarray of shape (M,)
        ``k_m`` of steps 1-1b: the size of each modality's reduced basis.
    pair_rank : ndarray of shape (M, M)
        ``c_ab``: the number of factors shared by modalities ``a`` and ``b``.
    specific_rank : ndarray of shape (M,)
        Number of factors outside the shared directions (step 5), after the budget
        ``max_components``.
    no_factor : list of int
        Modalities in which no factor was detected or, with ``max_components``, kept
        (modelled as noise only).
    alpha : float
        The family-wise level used.
    n_samples : int
        Number of samples behind the covariance.
    modality_eigenvalues : tuple of ndarray
        Per modality, the eigenvalues of its diagonal block ``S_mm``, decreasing (the
        ``min(p_m, n - 1)`` non-zero ones where ``p_m`` exceeds them); the fit's noise rule
        reads them instead of decomposing the blocks again.
    """

    structure: Structure
    #: the rows of :attr:`evidence` as recorded (an ``_Evidence``), or the table itself
    records: object = field(repr=False)
    noise_variance: np.ndarray
    modality_rank: np.ndarray
    pair_rank: np.ndarray
    specific_rank: np.ndarray
    no_factor: list
    alpha: float
    n_samples: int
    modality_eigenvalues: tuple = field(default=(), repr=False)

    @functools.cached_property
    def evidence(self):
        """The evidence table (see the class docstring), built on first access."""
        records = self.records
        return records.table() if isinstance(records, _Evidence) else records

    def __iter__(self):
        return iter((self.structure, self.evidence))

    def __getitem__(self, index):
        return (self.structure, self.evidence)[index]

    def __len__(self):
        return 2


class _Evidence:
    """Collects the evidence rows as recorded; the subsets and modalities are labelled by
    name and the numbers converted when the table is built (once, by columns)."""

    def __init__(self, names):
        self.names = names
        self.rows = []

    def modality(self, m):
        return self.names[m] if self.names else m

    def __call__(self, step, subset, modality, component, statistic, value, threshold,
                 selected, rank=np.nan):
        self.rows.append((step, subset, modality, component, statistic, value, threshold,
                          selected, rank))

    def table(self):
        """The rows as a DataFrame, with the columns and dtypes ``from_records`` gives for
        the labelled rows.

        Built from columns rather than rows (cheaper): pandas infers the columns of
        mixed types as ``from_records`` does, the float and bool columns are typed arrays.
        """
        import pandas as pd

        if not self.rows:
            return pd.DataFrame.from_records(self.rows, columns=_COLUMNS)
        columns = dict(zip(_COLUMNS, zip(*self.rows)))
        data = {name: list(values) for name, values in columns.items()}
        labels = {s: None if s is None else subset_label(s, self.names)
                  for s in set(columns["subset"])}
        data["subset"] = [labels[s] for s in columns["subset"]]
        data["modality"] = [None if m is None else self.modality(m)
                            for m in columns["modality"]]
        data["value"] = np.array(columns["value"], dtype=float)
        data["threshold"] = np.array(columns["threshold"], dtype=float)
        data["selected"] = np.array(columns["selected"], dtype=bool)
        return pd.DataFrame(data, copy=False)  # the dict keeps the order of _COLUMNS


def _check_selection_params(S, n_features, n_samples, max_rank, names, alpha,
                            check_input=True, n_coordinates=None):
    n_features = [check_positive_int(p, "n_features entries") for p in n_features]
    if n_coordinates is not None:
        n_coordinates = [check_positive_int(q, "n_coordinates entries") for q in n_coordinates]
        if len(n_coordinates) != len(n_features) or any(
                q > p for q, p in zip(n_coordinates, n_features)):
            raise ValueError(f"n_coordinates must give at most p_m coordinates for each of "
                             f"the {len(n_features)} modalities, got {n_coordinates}")
    n = check_positive_int(n_samples, "n_samples", minimum=3)
    if isinstance(alpha, bool) or not (0 < float(alpha) < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, Integral)
                                 or max_rank < 1):
        raise ValueError(f"max_rank must be a positive integer or None, got {max_rank!r}")
    if names is not None:
        names = tuple(names)
        if len(names) != len(n_features):
            raise ValueError(f"{len(names)} names given for {len(n_features)} modalities")
    if check_input:
        S = check_covariance(S, sum(n_coordinates or n_features))
    return S, n_features, n, float(alpha), names, n_coordinates


class _Dof:
    """Degrees of freedom of each test: ``n - 1``, or with missing values the samples
    behind the covariance blocks it reads minus one (``dof(m)``: modality ``m``'s own
    spectrum; ``dof(a, b, ...)``: the smallest joint count of the modalities' pairs)."""

    def __init__(self, n, joint_counts=None):
        self.df = n - 1
        self.joint = None if joint_counts is None else np.asarray(joint_counts, dtype=int)

    def __call__(self, *modalities):
        if self.joint is None:
            return self.df
        ms = list(modalities)
        return int(self.joint[np.ix_(ms, ms)].min()) - 1


def _check_joint_counts(joint_counts, M, n):
    """``joint_counts`` (:func:`hcl_stats._structure.check_joint_counts`) with every count
    between 3 (the fewest samples a test can use) and ``n``, or None."""
    if joint_counts is None:
        return None
    what = (f"joint_counts must be a symmetric ({M}, {M}) array of sample counts between 3 "
            f"and n_samples={n}")
    try:
        J = check_joint_counts(joint_counts, M)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if J.min() < 3 or J.max() > n:
        raise ValueError(f"{what}, got counts from {J.min()} to {J.max()}")
    return J


def _max_factors(p, df, cap):
    kmax = max(min(p, df) // 2, 1)
    return kmax if cap is None else min(kmax, cap)


def _strength_floor(evals, p, df, strength):
    """``strength`` times the mean of the (at most ``df``) non-zero sample eigenvalues of
    a modality: the least variance a factor must carry (the Kaiser-Guttman rule for
    ``strength = 1``: a factor explains more than an average direction of the modality)."""
    nz = min(p, df)
    return strength * float(np.maximum(evals[:nz], 0.0).sum()) / nz


@functools.lru_cache(maxsize=64)
def _normal_isf(alpha):
    """``scipy.stats.norm.isf(alpha)`` as a float, cached: a selection asks for the same
    level once per modality, and a call to the distribution object costs far more than
    the other work of the test."""
    return float(scipy.stats.norm.isf(alpha))


def _white_bulk(evals, p, df, k, alpha, m, record):
    """Whether the eigenvalues of modality ``m`` beyond its ``k`` detected factors are
    those of white noise: John's sphericity test (:func:`rmt.sphericity_statistic`) of
    the bulk ``evals[k:p]`` at level ``alpha``. There the random-matrix tests are exact
    and a factor they detect stands out of the noise by itself; the strength floor is
    for the spectra that decay with no white bulk."""
    z = sphericity_statistic(evals[k:p], df - k)
    threshold = _normal_isf(alpha)
    white = z <= threshold
    record("strength", (m,), m, None, "sphericity of the eigenvalues beyond the factors "
           "detected (floor applied when above the threshold)", min(z, 1e300), threshold,
           not white)
    return white


def _reduced_bases(S, rows, n_features, dof, alpha, max_rank, strength, record):
    """Step 1: each modality's noise variance, rank ``k_m`` and reduced basis ``U_m``,
    with the sample spikes ``lam``, their estimated signal variances ``sig`` and the
    strength floors (:func:`_strength_floor`): ``k_m`` counts the eigenvalues above both
    the white-noise edge and the floor. The floor is 0 for a modality whose eigenvalues
    beyond its detected factors are those of white noise (:func:`_white_bulk`)."""
    M = len(rows)
    noise = np.zeros(M)
    floors = np.zeros(M)
    U, lam, sig, spectra = [], [], [], []
    for m in range(M):
        p, df = n_features[m], dof(m)
        evals, evecs = range_eigh(S[rows[m], rows[m]], df)  # (dense unless p >> df)
        if evals.shape[0] < p:  # compressed coordinates: the other eigenvalues are zeros
            evals = np.concatenate([np.zeros(p - evals.shape[0]), evals])
        evals, evecs = evals[::-1], evecs[:, ::-1]
        kmax = _max_factors(p, df, None if max_rank is None else max_rank * 2 ** (M - 1))
        memo = {}  # the two counts below share their noise iterations
        sigma2, km, thresholds = _modality_rank(evals, p, df, alpha, kmax, memo)
        if strength > 0 and not _white_bulk(evals, p, df, km, alpha, m, record):
            floors[m] = _strength_floor(evals, p, df, strength)
            strong = int(np.sum(evals[:min(p, df)] > floors[m]))
            record("strength", (m,), m, None, "eigenvalues above strength x mean eigenvalue",
                   strong, floors[m], True)
            if strong < kmax:  # the count under the floor's cap, as its own fixed point
                sigma2, km, thresholds = _modality_rank(evals, p, df, alpha,
                                                        min(kmax, strong), memo)
        noise[m] = sigma2
        for j, t in enumerate(thresholds):
            record("modality rank", (m,), m, j, "eigenvalue", evals[j], t, j < km)
        gamma = p / df
        s2 = np.array([spike_cosine2(ell, gamma) * ell * sigma2 for ell in
                       (spike_population(evals[j] / sigma2, gamma) for j in range(km))])
        U.append(evecs[:, :km])
        lam.append(evals[:km])
        sig.append(np.maximum(s2, 1e-3 * sigma2 * np.sqrt(gamma)))
        spectra.append((evals, evecs))
    return noise, U, lam, sig, spectra, floors


def _nonsingular(evals):
    """Whether a covariance of eigenvalues ``evals`` is nonsingular to working precision:
    its smallest eigenvalue above ``len(evals)`` machine epsilons times its largest (the
    tolerance of ``numpy.linalg.matrix_rank``). A constant feature has the eigenvalue 0,
    which the eigensolver returns as a rounding error of either sign; the tests that
    whiten all of a modality's features need the tolerance, or whether they run would
    depend on that sign."""
    return float(evals.min()) > len(evals) * np.finfo(float).eps * float(evals.max())


def _whitened(B, Smm, evals, evecs, p, df, gram=None):
    """The reduced basis ``B`` whitened (:func:`_whiten`) and all ``p`` features whitened
    by the eigenpairs of ``S_mm`` (``None`` where ``S_mm`` is singular or ``p >= df - 1``)."""
    full = evecs / np.sqrt(evals) if p < df - 1 and _nonsingular(evals) else None
    return _whiten(B, Smm, gram), full


def _whitened_bases(S, rows, n_features, dof, base, spectra):
    """Per modality, the whitened spectral basis and all its features whitened
    (:func:`_whitened`), for the pair tests; ``base``: the :class:`_CrossProducts` of the
    spectral bases."""
    pieces = [_whitened(base.bases[m], S[rows[m], rows[m]], *spectra[m], n_features[m],
                        dof(m), base.gram(m, m) if base.bases[m].shape[1] else None)
              for m in range(len(rows))]
    return [w[0] for w in pieces], [w[1] for w in pieces]


def _pair_whitened(Sp, a, b, n_features, df, base):
    """The pair covariance ``Sp`` of modalities ``a`` and ``b`` (rows ``p_a + p_b``), its
    rows by modality, and the whitened bases of :func:`_whitened_bases` from its own
    diagonal blocks (keyed by modality, as the candidates read them)."""
    pa = n_features[a]
    rows_p = {a: slice(0, pa), b: slice(pa, pa + n_features[b])}
    spectral, full = {}, {}
    for m in (a, b):
        Smm = Sp[rows_p[m], rows_p[m]]
        spectral[m], full[m] = _whitened(base[m], Smm, *range_eigh(Smm, df), n_features[m], df)
    return Sp, rows_p, (spectral, full)


def _pair_candidates(a, b, n_features, df, whitened, record):
    """The whitened bases compared by the pair test of ``(a, b)``: the spectral bases
    (neither chosen for its correlation with the other modality), all the features of one
    modality against the other's spectral basis (a shared factor too weak for one
    spectrum), and all the features of both (too weak for both spectra). ``whitened``:
    the output of :func:`_whitened_bases`."""
    Wa, Wb = whitened[0][a], whitened[0][b]
    full = [whitened[1][a], whitened[1][b]]
    cands = [(Wa, Wb, "spectral bases")]
    for m, Wfull, Wother in ((a, full[0], Wb), (b, full[1], Wa)):
        if Wfull is not None and 0 < Wother.shape[1] < df - n_features[m] - 1:
            what = f"all features of {record.modality(m)}"
            cands.append((Wfull, Wb, what) if m == a else (Wa, Wfull, what))
    if full[0] is not None and full[1] is not None and (
            n_features[a] + n_features[b] < df - 1):
        cands.append((full[0], full[1], "all features of both"))
    return cands


def _pair_count(a, b, S, rows, df, cands, level, record):
    """Largest of the sequential canonical-correlation counts over the candidates."""
    c = 0
    for WA, WB, what in cands:
        ka, kb = WA.shape[1], WB.shape[1]
        if ka == 0 or kb == 0:
            continue
        rho = small_svd(WA.T @ S[rows[a], rows[b]] @ WB, compute_uv=False)
        rho2 = _squared_correlations(rho)
        cj = 0
        what = f"canonical correlation^2, {what}"
        for j in range(min(ka, kb)):
            t = cca_largest_root_threshold(ka - j, kb - j, df - j, level)
            ok = rho2[j] > t
            record("pair rank", (a, b), None, j, what, rho2[j], t, ok)
            if not ok:
                break
            cj += 1
        c = max(c, cj)
    return c


def _pair_ranks(S, rows, n_features, dof, alpha, U, lam, sig, base, spectra, record,
                pairs, products):
    """Step 2: ``c_ab`` for every pair, each pair test at ``alpha`` split evenly over its
    candidates, and the leading canonical directions of each pair in the signal-whitened
    coordinates of each of its modalities (``left[(m, a)]``, ``k_m x c_ma``). ``base`` and
    ``products``: the :class:`_CrossProducts` of the spectral bases and of ``U``."""
    M = len(rows)
    k = [u.shape[1] for u in U]
    pair_rank = np.zeros((M, M), dtype=int)
    left = {}
    whitened = _whitened_bases(S, rows, n_features, dof, base, spectra)
    for a in range(M):
        for b in range(a + 1, M):
            if k[a] == 0 or k[b] == 0:
                continue
            C = products.gram(a, b)  # U_a^T S_ab U_b
            Ua, _, Vbt = small_svd(C / np.sqrt(lam[a][:, None] * lam[b]),  # (np.outer)
                                          full_matrices=True)
            if (a, b) in (pairs or {}):  # the three blocks from the same samples
                Sp, rows_p, white = _pair_whitened(pairs[(a, b)], a, b, n_features,
                                                   dof(a, b), base.bases)
            else:
                Sp, rows_p, white = S, rows, whitened
            cands = _pair_candidates(a, b, n_features, dof(a, b), white, record)
            c = _pair_count(a, b, Sp, rows_p, dof(a, b), cands, alpha / len(cands), record)
            c = min(c, k[a], k[b])
            pair_rank[a, b] = pair_rank[b, a] = c
            if c:
                for m, Q in ((a, Ua[:, :c]), (b, Vbt[:c].T)):
                    Qs = Q * np.sqrt(lam[m] / sig[m])[:, None]
                    left[(m, b if m == a else a)] = small_qr(Qs)
    return pair_rank, left


def _membership(k, left, record):
    """Step 3: split each modality's reduced space by the spaces shared with each other
    modality; returns ``counts[S][m] = n_m(S - m)`` for the shared subsets ``S``."""
    M = len(k)
    counts = {}
    for m in range(M):
        if k[m] == 0:
            continue
        pieces = [(np.eye(k[m]), ())]
        for a in range(M):
            if (m, a) not in left:
                continue
            Q = left[(m, a)]
            new = []
            what = f"squared cosine to the space shared with {record.modality(a)}"
            for V, T in pieces:
                B = Q.T @ V
                w, E = small_eigh(B.T @ B)
                scores = w.tolist()
                shared = tuple(sorted(T + (a, m)))
                for j, wj in enumerate(scores):
                    if abs(wj - 0.5) < 0.5:  # record the non-trivial scores only
                        record("membership", shared, m, j, what, wj, 0.5, wj > 0.5)
                # the scores increase: the directions inside the shared space are the last
                cut = sum(1 for wj in scores if not wj > 0.5)
                if cut < len(scores):
                    new.append((V @ E[:, cut:], T + (a,)))
                if cut:
                    new.append((V @ E[:, :cut], T))
            pieces = new
        for V, T in pieces:
            if T:
                subset = tuple(sorted(T + (m,)))
                counts.setdefault(subset, {})[m] = counts.get(subset, {}).get(m, 0) + V.shape[1]
    return counts


def _shared_blocks(counts, pair_rank, max_rank, record):
    """Step 4: the consensus ranks of the shared subsets."""
    order = sorted(counts, key=lambda s: (-len(s), s))
    # (integer counts: Python's division gives np.mean's value)
    means = {s: sum(counts[s].get(m, 0) for m in s) / len(s) for s in order}
    ranks = _consensus(order, means, pair_rank, len(pair_rank), max_rank)
    blocks = {}
    for subset in order:
        r = ranks[subset]
        record("structure", subset, None, None, "mean count over its modalities",
               means[subset], 0.5, r > 0, r)
        if r > 0:
            blocks[subset] = r
    return blocks


def _specific_blocks(S, rows, n_features, dof, alpha, max_rank, U, spectra, noise, blocks,
                     floors, record, products):
    """Step 5: the specific ranks, added to ``blocks``; updates ``noise`` in place where
    the modality has shared directions (``products``: a :class:`_CrossProducts` of bases
    equal to ``U``). Returns the specific ranks and the modalities without any factor."""
    M = len(rows)
    no_factor = []
    specific = np.zeros(M, dtype=int)
    for m in range(M):
        shared, df = sum(r for s, r in blocks.items() if m in s), dof(m)
        kmax = _max_factors(n_features[m], df, max_rank)
        sigma2, r, evals, thresholds = _specific_rank(S, rows, m, shared, U, n_features, df,
                                                      alpha, kmax, spectra[m], noise[m],
                                                      floors[m], products)
        specific[m] = r
        if shared:
            noise[m] = sigma2  # the spikes the modality's own spectrum missed are not noise
        for j, t in enumerate(thresholds):
            record("specific rank", (m,), m, j,
                   f"eigenvalue outside the {shared} shared directions", evals[j], t, j < r)
        if r <= 0 and shared == 0:
            no_factor.append(m)  # nothing detected: the modality is modelled as noise only
        if r > 0:
            blocks[(m,)] = r
        record("structure", (m,), m, None, "factors outside the shared directions",
               specific[m], 0.5, specific[m] > 0, r if r > 0 else 0)
    return specific, no_factor


def _factor_strengths(S, rows, n_features, dof, blocks, noise, spectra):
    """Strength of every factor of ``blocks``: its variance in each of its modalities over
    that modality's mean eigenvalue (the strength floor at ``strength = 1``), summed over
    the modalities of its subset.

    The loadings are the structured spectral initialiser of the fit
    (:func:`hcl_stats._estimation.init.spectral_init`, exact in the population) on
    ``S - Psi`` with the selection's noise variances; each block is rotated to its
    principal axes in the metric that divides modality ``m``'s rows by its mean
    eigenvalue, so that its factors' strengths are the squared singular values of the
    weighted block, in decreasing order. Returns ``{subset: ndarray of shape (r_S,)}``.
    """
    structure = Structure(blocks, modalities=len(rows))
    K, d = structure.n_components, S.shape[0]
    sizes = [r.stop - r.start for r in rows]  # the rows of S (n_features but compressed)
    S_W = S - np.diag(np.repeat(noise, sizes))
    values, vectors = small_eigh(S_W, subset_by_index=[d - K, d - 1])
    W = spectral_init(values[::-1], vectors[:, ::-1], structure, sizes)
    weight = np.repeat([1.0 / np.sqrt(_strength_floor(spectra[m][0], n_features[m], dof(m), 1.0))
                        for m in range(len(rows))], sizes)
    strengths = {}
    for subset in blocks:
        inside = np.concatenate([np.arange(rows[m].start, rows[m].stop) for m in subset])
        B = W[inside][:, structure.columns(subset)] * weight[inside, None]
        strengths[subset] = small_svd(B, compute_uv=False) ** 2
    return strengths


def _fewer_than_features(S, rows, n_features, dof, blocks, noise, spectra, record):
    """A modality keeps fewer factors than features: where the blocks give modality ``m``
    ``p_m`` factors or more (shared subsets whose consensus ranks add up beyond what the
    modality holds), its weakest factors (:func:`_factor_strengths`) go first, each from
    the end of its block, until it has ``p_m - 1``. Returns the new ``blocks``."""
    def load(ranks, m):
        return sum(r for subset, r in ranks.items() if m in subset)

    over = [m for m, p in enumerate(n_features) if load(blocks, m) >= p]
    if not over:
        return blocks
    strengths = _factor_strengths(S, rows, n_features, dof, blocks, noise, spectra)
    ranks = dict(blocks)
    for m in over:
        while load(ranks, m) >= n_features[m]:
            value, subset = min((strengths[s][ranks[s] - 1], s) for s, r in ranks.items()
                                if m in s and r > 0)
            ranks[subset] -= 1
            record("modality cap", subset, m, ranks[subset],
                   "variance over the mean eigenvalue, summed over the subset's modalities",
                   value, n_features[m] - 1, False, ranks[subset])
    return {subset: r for subset, r in ranks.items() if r > 0}


def _budget(S, rows, n_features, dof, blocks, noise, spectra, max_components, record):
    """Keep the ``max_components`` strongest factors (:func:`_factor_strengths`): the
    weakest factors go first, each from the end of its block, and a subset whose rank
    reaches 0 is removed. Returns the new ``blocks``."""
    K = sum(blocks.values())
    if K <= max_components:
        record("budget", None, None, None, "factors selected", K, max_components, True)
        return blocks
    strengths = _factor_strengths(S, rows, n_features, dof, blocks, noise, spectra)
    factors = [(-v, i, j, subset) for i, (subset, vals) in enumerate(strengths.items())
               for j, v in enumerate(vals)]
    kept = sorted(factors)[:max_components]
    cut = -kept[-1][0]
    ranks = {subset: sum(1 for f in kept if f[3] == subset) for subset in blocks}
    for v, _, j, subset in sorted(factors, key=lambda f: (f[1], f[2])):
        record("budget", subset, None, j,
               "variance over the mean eigenvalue, summed over the subset's modalities",
               -v, cut, j < ranks[subset], ranks[subset])
    return {subset: r for subset, r in ranks.items() if r > 0}


def select_structure(S, n_features, *, n_samples, max_rank=None, names=None,
                     random_state=None, alpha=0.01, augment=True, strength=1.0,
                     max_components=None, joint_counts=None, pair_covariances=None,
                     check_input=True, n_coordinates=None):
    """Select the structure (shared subsets and their ranks) from a sample covariance.

    See the module docstring and ``docs/selection.md`` for the method, its assumptions
    and its cost. Every linear-algebra call runs on one BLAS thread, so the decisions
    (comparisons of statistics with thresholds) do not depend on the thread count.

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
        Family-wise level: each pair test runs at ``alpha / (M (M - 1) / 2)`` and each
        specific-rank test at ``alpha / M`` (Bonferroni), so that the whole structure
        invents a shared rank (a specific rank) with probability at most about ``alpha``.
        Smaller values omit more weak blocks and invent fewer.
    augment : bool, default=True
        Look for shared directions too weak for a modality's own spectrum through its
        canonical correlations with the other modalities (step 1b of the method).
    strength : float, default=1.0
        Strength floor: a factor is kept only where it carries more variance in its
        modality than ``strength`` times the mean eigenvalue of the modality's sample
        covariance (the mean of its ``min(p_m, n - 1)`` non-zero eigenvalues); with
        ``strength = 1`` this is the Kaiser-Guttman rule, and a modality never gets as
        many factors as it has features. The random-matrix tests answer "is this above
        pure noise?", which on real data with a smoothly decaying spectrum and thousands
        of samples nearly every direction is; the floor keeps the factors that are also
        strong. It applies to the modalities whose eigenvalues beyond the detected
        factors are not those of white noise (John's sphericity test at level ``alpha``;
        the "strength" rows of the evidence); where they are, the tests are exact and
        the floor is 0. ``0`` keeps every factor the tests detect.
    max_components : int or None, default=None
        Budget on the total number of factors. When the selection finds more, the
        strongest ``max_components`` are kept: a factor's strength is its variance in each
        modality of its subset over that modality's mean eigenvalue, summed over the
        subset (the ratio that ``strength`` compares with, measured on the structured
        initial loadings), so the weakest block ranks go first and a subset whose rank
        reaches 0 is removed. The "budget" rows of the evidence table give every
        factor's strength, the cut and the ranks kept. None: no budget.
    joint_counts : array-like of shape (M, M), default=None
        With missing values (``S`` a pairwise covariance): the samples observing each
        modality (diagonal) and each pair. Each test then takes the samples behind the
        blocks it reads: a modality's own spectrum its count, a pair's canonical
        correlations the pair's joint count, a modality against all the others the
        smallest of its joint counts. None: ``n_samples`` everywhere.
    pair_covariances : dict, default=None
        With missing values: ``{(a, b): covariance of modalities a and b from the samples
        observing both}`` (``a < b``, rows ``p_a + p_b``). The pair tests of ``(a, b)``
        then whiten its cross-covariance by the two modalities' covariances from the same
        samples, so that under no shared signal the canonical correlations are those of
        ``N_ab`` observations. Pairs not in it use ``S``.
    check_input : bool, default=True
        Check ``S`` (a finite ``(d, d)`` array, symmetric to rounding, which is then
        symmetrised). False takes ``S`` as given: for a caller that computed it as a
        finite, exactly symmetric float64 NumPy array (the fit's own covariance); do not
        use it otherwise.
    n_coordinates : sequence of int or None, default=None
        The rows of ``S`` per modality when ``S`` is the covariance in orthonormal bases
        ``V_m`` of the ranges of the modalities' covariance blocks,
        ``blockdiag(V)^T S blockdiag(V)`` (``q_m <= p_m`` rows each; the covariance of the
        scores ``X_m V_m``): every test then sees the spectrum of ``S_mm`` as that of the
        ``q_m x q_m`` block padded with ``p_m - q_m`` zeros and every threshold takes
        the modality's ``p_m`` features, so the selected structure is that of the full
        covariance. None: ``S`` has ``p_m`` rows per modality.

    Returns
    -------
    result : SelectionResult
        The structure, the evidence table and the intermediate quantities; unpacks as
        ``structure, evidence``.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats._statistics.covariance import sample_covariance
    >>> from hcl_stats.datasets import make_hierarchical
    >>> truth = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    >>> X = make_hierarchical(1000, [30, 40, 50], truth, noise_variance=0.5,
    ...                       singular_values=(1, 2), random_state=0)
    >>> S, _, n = sample_covariance(X)
    >>> structure, evidence = select_structure(S, [30, 40, 50], n_samples=n)
    >>> structure == truth
    True
    """
    del random_state
    S, n_features, n, alpha, names, n_coordinates = _check_selection_params(
        S, n_features, n_samples, max_rank, names, alpha, check_input, n_coordinates)
    if isinstance(strength, bool) or not np.isfinite(float(strength)) or float(strength) < 0:
        raise ValueError(f"strength must be a non-negative number, got {strength!r}")
    if max_components is not None:
        max_components = check_positive_int(max_components, "max_components")
    with serial_blas():
        return _select(S, n_features, n, max_rank, names, alpha, augment, float(strength),
                       max_components, _check_joint_counts(joint_counts, len(n_features), n),
                       pair_covariances or {}, n_coordinates)


def _single_feature_note(modalities, n_features, record):
    """The end of the no-factor messages for modalities of one feature, which never carry a
    factor (a modality keeps fewer factors than features: one feature cannot hold a factor
    and a noise variance of its own), or ``""``."""
    single = [record.modality(m) for m in modalities if n_features[m] == 1]
    if not single:
        return ""
    return (f"; modality {single} has a single feature, and a modality carries fewer "
            "factors than features (join its feature to another modality to model it)")


def _select(S, n_features, n, max_rank, names, alpha, augment, strength, max_components,
            joint_counts=None, pairs=None, n_coordinates=None):
    M = len(n_features)
    dof = _Dof(n, joint_counts)
    # Bonferroni within each family of decisions (see the module docstring)
    a_pair = alpha / max(M * (M - 1) // 2, 1)
    a_mod = alpha / M
    rows = row_slices(n_coordinates or n_features)  # (the rows of S; n_features: the p_m)
    record = _Evidence(names)
    noise, U, lam, sig, spectra, floors = _reduced_bases(S, rows, n_features, dof, alpha,
                                                         max_rank, strength, record)
    step1 = list(U)
    base = _CrossProducts(S, rows, [u.copy() for u in U])  # the bases of step 1
    if augment:
        _augment(S, rows, n_features, dof, a_mod, noise, U, lam, sig, spectra, floors, record,
                 base)
    k = np.array([u.shape[1] for u in U], dtype=int)
    pair_rank, left = _pair_ranks(S, rows, n_features, dof, a_pair, U, lam, sig, base,
                                  spectra, record, pairs or {}, _CrossProducts(S, rows, U))
    blocks = _shared_blocks(_membership(k, left, record), pair_rank, max_rank, record)
    # step 5 whitens against the bases of step 1 where step 1b added nothing
    final = base.rebased([b if u is s else u for u, s, b in zip(U, step1, base.bases)])
    specific, no_factor = _specific_blocks(S, rows, n_features, dof, a_mod, max_rank, U,
                                           spectra, noise, blocks, floors, record, final)
    if len(no_factor) == M:
        raise ValueError(
            "no factor detected in any modality: at this sample size nothing in the data "
            "stands out of the noise (check the data, or give a structure)"
            + _single_feature_note(no_factor, n_features, record))
    capped = _fewer_than_features(S, rows, n_features, dof, blocks, noise, spectra, record)
    if capped is not blocks:
        blocks = capped
        specific = np.array([blocks.get((m,), 0) for m in range(M)], dtype=int)
    detected = M - len(no_factor)
    if max_components is not None:
        blocks = _budget(S, rows, n_features, dof, blocks, noise, spectra, max_components,
                         record)
        specific = np.array([blocks.get((m,), 0) for m in range(M)], dtype=int)
        no_factor = [m for m in range(M) if not any(m in s for s in blocks)]
    if no_factor:
        label = [record.modality(m) for m in no_factor]
        why = "detected" if M - len(no_factor) == detected else \
            f"detected or kept within max_components={max_components}"
        warnings.warn(
            f"no factor {why} in modality {label}: it is modelled as noise only (zero "
            "loadings)" + _single_feature_note(no_factor, n_features, record),
            UserWarning, stacklevel=3)
    return SelectionResult(Structure(blocks, modalities=names or M), record, noise,
                           k, pair_rank, specific, no_factor, alpha, n,
                           tuple(evals for evals, _ in spectra))
