"""Pairwise covariance of modalities with missing values (NaN), and its sample counts.

Each feature is centred by its mean over the samples that observe it, and each covariance
entry is averaged over the samples that observe both features::

    S[j, k] = sum_{i observes j and k} (x_ij - mu_j)(x_ik - mu_k) / (N[j, k] - 1),

that is ``S = Xc^T Xc / (N - 1)`` with ``Xc`` the centred data with missing cells set to
zero and ``N = O^T O`` the counts of the 0/1 observation pattern ``O`` (pairwise deletion).
Entries behind fewer than two samples are set to zero (no evidence). When every modality
is missing by whole rows -- a sample has all or none of a modality's values -- ``N`` is
constant on each modality pair and is the ``(M, M)`` matrix of joint counts; no ``d x d``
count matrix is formed then.

The joint counts: ``joint[m, l]`` samples observe both modalities ``m`` and ``l`` (at least
one value of each), ``joint[m, m]`` observe ``m``.

:func:`pairwise_covariance` computes the statistics of in-memory NumPy blocks in one
product; :class:`ObservedSums` and :func:`pairwise_from_sums` accumulate them slice by
slice for the chunked statistics (:mod:`hcl_stats._statistics.chunked`), with the data
shifted by a common vector ``c``::

    S[j, k] (N[j, k] - 1) = C[j, k] - delta_k P[j, k] - delta_j P[k, j] + N[j, k] delta_j delta_k

where ``y = x - c`` (zero where missing), ``C = y^T y``, ``P[j, k]`` is the sum of ``y_j``
over the samples observing ``j`` and ``k``, and ``delta_j = P[j, j] / N[j, j]`` is the
observed mean minus the shift: one pass, with no cancellation when the data have large
means.
"""

from __future__ import annotations

import numpy as np

from hcl_stats._input.validation import check_observed_counts, check_shared_samples
from hcl_stats._structure import modality_description, row_slices

__all__ = ["ObservedSums", "has_missing", "merge_observed", "pair_covariances",
           "pairwise_covariance", "pairwise_from_sums"]

# 0/1 products are exact in float32 below 2^24 samples (integers of the float32 mantissa)
_EXACT_FLOAT32 = 2 ** 24


def has_missing(block):
    """Whether the NumPy array ``block`` holds a NaN (one pass, no temporary array)."""
    return block.size > 0 and bool(np.isnan(np.min(block)))


def _joint(rows):
    """``(M, M)`` joint counts of the ``(n, M)`` per-modality observed rows."""
    rows = rows.astype(np.int64)
    return rows.T @ rows


def _row_pattern(observed, slices):
    """``(rows, whole)``: the ``(n, M)`` samples observing each modality (at least one of
    its columns ``slices[m]`` of the ``(n, d)`` mask ``observed``), and whether every
    modality is missing by whole rows."""
    rows = np.empty((observed.shape[0], len(slices)), dtype=bool)
    whole = True
    for m, sl in enumerate(slices):
        obs = observed[:, sl]
        rows[:, m] = obs.any(axis=1)
        whole = whole and bool(np.array_equal(obs.all(axis=1), rows[:, m]))
    return rows, whole


def _check_counts(feature_counts, joint, widths, names):
    """Every feature observed twice and every modality sharing samples (ValueError)."""
    for m, sl in enumerate(row_slices(widths)):
        check_observed_counts(feature_counts[sl], modality_description(m, names))
    check_shared_samples(joint, [modality_description(m, names) for m in range(len(widths))])


def _divide(G, counts):
    """``G / (counts - 1)`` in place where ``counts >= 2``, zero elsewhere."""
    ok = counts >= 2
    np.divide(G, counts - 1, out=G, where=ok)
    G[~ok] = 0.0
    return G


def pairwise_covariance(blocks, names=None):
    """Pairwise covariance, feature means, sample count and joint counts of NaN data.

    Parameters
    ----------
    blocks : list of ndarray of shape (n_samples, p_m)
        In-memory NumPy modalities, missing cells as NaN (no infinite value); only read.
    names : tuple of str or None, default=None
        Modality names, for error messages.

    Returns
    -------
    S : ndarray of shape (d, d)
        Float64 pairwise covariance (see the module docstring).
    means : ndarray of shape (d,)
        Each feature's mean over the samples observing it.
    n_samples : int
        Number of rows.
    joint_counts : ndarray of shape (M, M), int
        Samples observing each modality (diagonal) and each pair.

    Raises
    ------
    ValueError
        When a feature is observed in fewer than two samples or a modality shares no
        sample with the others (naming it).

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats._statistics.missing import pairwise_covariance
    >>> X = [np.array([[1.0], [2.0], [4.0], [np.nan]]), np.array([[0.0], [1.0], [1.0], [3.0]])]
    >>> S, means, n, joint = pairwise_covariance(X)
    >>> means.tolist(), joint.tolist()
    ([2.3333333333333335, 1.25], [[3, 3], [3, 4]])
    """
    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    slices = row_slices(widths)
    Xc = np.empty((n, sum(widths)))
    observed = np.empty((n, sum(widths)), dtype=bool)
    for b, sl in zip(blocks, slices):
        np.logical_not(np.isnan(b), out=observed[:, sl])
    rows, whole = _row_pattern(observed, slices)  # whole: every modality missing by rows
    feature_counts = observed.sum(axis=0)
    joint = _joint(rows)
    _check_counts(feature_counts, joint, widths, names)
    means = []
    for b, sl in zip(blocks, slices):
        part, gone = Xc[:, sl], ~observed[:, sl]
        np.copyto(part, b, casting="unsafe")
        part[gone] = 0.0
        mu = part.sum(axis=0) / feature_counts[sl]
        part -= mu
        part[gone] = 0.0
        means.append(mu)
    S = Xc.T @ Xc  # one symmetric product, as for complete data
    if whole:  # the counts are constant on each modality pair
        for m, rm in enumerate(slices):
            for l, rl in enumerate(slices):
                if joint[m, l] >= 2:
                    S[rm, rl] /= joint[m, l] - 1
                else:
                    S[rm, rl] = 0.0
    else:
        O = observed.astype(np.float32 if n < _EXACT_FLOAT32 else np.float64)
        _divide(S, np.rint(O.T @ O))
    return S, np.concatenate(means), n, joint


class ObservedSums:
    """Running sums of the slices that hold missing values (see the module docstring).

    Complete slices are left to the caller's plain sums (count, column sums, ``y^T y``);
    these sums add what :func:`pairwise_from_sums` needs beyond them. Slices whose
    missingness is by whole rows add ``d x M`` sums and ``M x M`` counts; the others add
    ``d x d`` ones (allocated when first needed).

    Parameters
    ----------
    edges : ndarray of int of shape (M + 1,)
        Column offsets of the modalities in the stacked data.
    """

    def __init__(self, edges):
        self.edges = np.asarray(edges, dtype=int)
        d, M = int(self.edges[-1]), len(self.edges) - 1
        self.rows = 0  #: rows of these slices
        self.joint = np.zeros((M, M), dtype=np.int64)  #: joint counts of these slices
        self.row_sums = np.zeros((d, M))  #: sum of y_j over samples observing modality l
        self.row_joint = np.zeros((M, M), dtype=np.int64)  #: joint counts, whole-row slices
        self.pair_sums = None  #: (d, d) sum of y_j over samples observing j and k
        self.pair_counts = None  #: (d, d) samples observing j and k

    def add(self, Y):
        """Add one slice ``Y`` (shifted data with NaN, float64); sets its NaN to zero.

        Returns ``Y`` (now with zeros for the missing cells) for the caller's ``Y^T Y``.
        """
        observed = ~np.isnan(Y)
        rows, whole = _row_pattern(observed, row_slices(np.diff(self.edges)))
        Y[~observed] = 0.0
        joint = _joint(rows)
        self.rows += Y.shape[0]
        self.joint += joint
        if whole:
            self.row_sums += Y.T @ rows.astype(np.float64)
            self.row_joint += joint
        else:
            O = observed.astype(np.float64)
            if self.pair_sums is None:
                self.pair_sums = np.zeros((Y.shape[1], Y.shape[1]))
                self.pair_counts = np.zeros((Y.shape[1], Y.shape[1]))
            self.pair_sums += Y.T @ O
            self.pair_counts += O.T @ O
        return Y


def merge_observed(a, b):
    """The sums of two sets of slices (``None``: no slice with missing values)."""
    if a is None or b is None:
        return a if b is None else b
    out = ObservedSums(a.edges)
    for name in ("rows", "joint", "row_sums", "row_joint"):
        setattr(out, name, getattr(a, name) + getattr(b, name))
    pairs = [x for x in (a, b) if x.pair_sums is not None]
    if pairs:
        out.pair_sums = sum(x.pair_sums for x in pairs)
        out.pair_counts = sum(x.pair_counts for x in pairs)
    return out


def pairwise_from_sums(count, sums, cross, observed, shift, names=None):
    """Pairwise covariance from the sums of a chunked pass.

    Parameters
    ----------
    count, sums : int, ndarray of shape (d,)
        Rows and column sums of the complete slices (shifted).
    cross : ndarray of shape (d, d)
        ``y^T y`` over all slices, missing cells as zero.
    observed : ObservedSums
        The sums of the slices with missing values.
    shift : ndarray of shape (d,)
        The common shift ``c``.
    names : tuple of str or None, default=None
        Modality names, for error messages.

    Returns
    -------
    S, means, n_samples, joint_counts
        As :func:`pairwise_covariance`.
    """
    edges = observed.edges
    widths = np.diff(edges)
    of = np.repeat(np.arange(len(widths)), widths)  # modality of each feature
    P = (observed.row_sums + sums[:, None])[:, of]
    N = (observed.row_joint + count).astype(np.float64)[np.ix_(of, of)]
    if observed.pair_sums is not None:
        P += observed.pair_sums
        N += observed.pair_counts
    joint = observed.joint + int(count)
    _check_counts(np.diagonal(N), joint, widths, names)
    delta = np.diagonal(P) / np.diagonal(N)  # observed mean - shift
    P *= delta[None, :]  # delta_k P[j, k]
    S = cross - P
    S -= P.T
    N_delta = N * delta[:, None]
    N_delta *= delta[None, :]
    S += N_delta
    S = _divide(S, N)
    S = 0.5 * (S + S.T)
    return S, shift + delta, int(count) + observed.rows, joint


def pair_covariances(blocks):
    """Per pair of modalities, the pairwise covariance of the two from the samples that
    observe both: ``{(a, b): (p_a + p_b, p_a + p_b) array}``.

    The selection's pair tests whiten a pair's cross-covariance by the two modalities' own
    covariances; from the pairwise covariance those rest on more samples than the cross
    block, and the whitened cross-covariance of pure noise is then not that of a sample of
    ``N_ab`` observations (its canonical correlations can exceed one). These statistics
    take all three blocks from the same samples. Pairs whose modalities are observed by
    the same samples (nothing to gain) and pairs whose joint samples cannot carry the
    statistics (a feature observed fewer than twice among them) are left out. In-memory
    NumPy blocks only; the cost is that of ``M - 1`` covariances of every modality.
    """
    observed = [~np.isnan(b).all(axis=1) for b in blocks]
    out = {}
    for a in range(len(blocks)):
        for b in range(a + 1, len(blocks)):
            both = observed[a] & observed[b]
            if np.array_equal(both, observed[a]) and np.array_equal(both, observed[b]):
                continue
            try:
                out[(a, b)] = pairwise_covariance([blocks[a][both], blocks[b][both]])[0]
            except ValueError:  # too few joint samples for some feature: not used
                continue
    return out
