"""Sufficient statistics of data that do not fit in memory (or should not be copied).

A covariance-based fit needs only the per-feature means and the stacked ``d x d``
cross-product of the centred data. Here they are accumulated chunk by chunk, in float64,
without ever holding a float64 copy of the data:

* **Dask arrays**: one task per row chunk returns the chunk's count, column sums and
  cross-product (computed in row slices of bounded size), and the tasks are added up in a
  tree of pairwise merges; the graph runs on whatever Dask scheduler is active (threads by
  default, a ``distributed`` cluster unchanged).
* **NumPy arrays and memmaps** larger than :data:`CHUNK_BYTES` (as float64): the same
  accumulation over row slices in a loop. Pages of a memmap that were read are released
  after each slice, so the resident memory stays bounded by the slice size.

On-disk data for Dask: build the array from a chunked store (Zarr, HDF5) or from chunk
loaders (``da.from_delayed``); recent Dask versions copy NumPy arrays, memmaps included,
into memory in ``da.from_array``, so pass a memmap to ``fit`` directly instead.

Every chunk is checked for NaN and infinite values as it is read; the ``ValueError`` names
the modality and the first offending row. With ``missing="allow"`` NaN are missing values:
slices holding them add the sums of the pairwise covariance
(:mod:`hcl_stats._statistics.missing`) in the same pass, and infinite values still raise.
The user's arrays are only read.

Numerics: all chunks are shifted by one common vector ``c`` (the mean of the first rows)
before the cross-product, so that ``S = [sum (x - c)(x - c)^T - n (mu - c)(mu - c)^T] /
(n - 1)`` suffers no cancellation when the data have large means.
"""

from __future__ import annotations

import mmap

import numpy as np

from hcl_stats._input.validation import check_finite, check_missing_option
from hcl_stats._numerics.backend import is_dask_array
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._statistics.missing import (
    ObservedSums,
    has_missing,
    merge_observed,
    pairwise_covariance,
    pairwise_from_sums,
)
from hcl_stats._structure import modality_description

__all__ = ["CHUNK_BYTES", "MEMORY_BYTES", "needs_chunks", "covariance_statistics",
           "iter_row_slices", "column_moments"]

#: Largest float64 work array (bytes) a chunked pass allocates at a time.
CHUNK_BYTES = 2 ** 25  # 32 MiB

#: Largest float32 centred copy (bytes) of in-memory data for the direct float32 covariance;
#: larger data, memmaps and Dask arrays go through the chunked float64 pass.
MEMORY_BYTES = 2 ** 30  # 1 GiB

# Shift statistics are taken from at most this many leading rows.
_SHIFT_ROWS = 1024




def needs_chunks(blocks, chunk_bytes=None, *, itemsize=8):
    """Whether the statistics of ``blocks`` should be accumulated chunk by chunk.

    True for Dask arrays, NumPy memmaps, and in-memory data whose copy with ``itemsize``
    bytes per entry would be larger than ``chunk_bytes`` (default :data:`CHUNK_BYTES`).
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n = blocks[0].shape[0]
    d = sum(b.shape[1] for b in blocks)
    if any(is_dask_array(b) or isinstance(b, np.memmap) for b in blocks):
        return True
    return itemsize * n * d > chunk_bytes


def _rows_per_slice(d, chunk_bytes):
    return max(1, int(chunk_bytes // (8 * max(d, 1))))


def iter_row_slices(n, d, chunk_bytes=None):
    """Row slices ``[a, b)`` whose ``(b - a) x d`` float64 array fits in ``chunk_bytes``."""
    step = _rows_per_slice(d, CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
    for a in range(0, n, step):
        yield slice(a, min(a + step, n))


def release_pages(arr):
    """Drop the pages of a shared read-only/read-write memmap from this process's RSS.

    Pages of a shared file mapping stay in the page cache (and on disk), so dropping them
    from the process loses nothing; private copy-on-write maps (mode ``"c"``) are left
    alone since their dirty pages exist nowhere else.
    """
    mm = getattr(arr, "_mmap", None)
    if mm is None or getattr(arr, "mode", "c") not in ("r", "r+", "w+"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):  # platform without madvise, closed map
        pass




def _raise_not_finite(Y, edges, row0, names, first=0, allow_nan=False, note=""):
    """Raise the ValueError for the first modality whose columns of ``Y`` are not finite
    (with ``allow_nan``: hold infinite values).

    Column group ``k`` of ``Y`` (between ``edges[k]`` and ``edges[k + 1]``) is modality
    ``first + k``; ``note`` ends the message about NaN.
    """
    for k in range(len(edges) - 1):
        m = first + k
        part = Y[:, edges[k]:edges[k + 1]]
        ok = ~np.isinf(part).any(axis=1) if allow_nan else np.isfinite(part).all(axis=1)
        if not ok.all():
            row = row0 + int(np.flatnonzero(~ok)[0])
            if not allow_nan and np.isnan(part).any():
                raise ValueError(f"{modality_description(m, names)} contains NaN (first in "
                                 f"row {row}); impute or drop them before fitting{note}")
            raise ValueError(f"{modality_description(m, names)} contains infinite values "
                             f"(first in row {row}); check the data's units or scale before "
                             "fitting")


def _slice_moments(parts, shift, edges, row0, names, out, allow_nan=False):
    """Add the column sums and cross-product of one row slice, shifted, to ``out``.

    ``parts`` are the modalities' rows (any real dtype); ``out = [count, sums, cross,
    observed]``, where a slice with missing values (``allow_nan``) adds to ``cross`` and
    ``observed`` (:class:`hcl_stats._statistics.missing.ObservedSums`, created when first
    needed) instead of ``count`` and ``sums``.
    """
    rows = parts[0].shape[0]
    Y = np.empty((rows, edges[-1]))
    for m, part in enumerate(parts):
        np.subtract(part, shift[edges[m]:edges[m + 1]], out=Y[:, edges[m]:edges[m + 1]],
                    casting="unsafe")
    with np.errstate(invalid="ignore", over="ignore"):
        sums = Y.sum(axis=0)
    if not np.all(np.isfinite(sums)):
        _raise_not_finite(Y, edges, row0, names, allow_nan=allow_nan)
        if allow_nan and np.isnan(sums).any():
            if out[3] is None:
                out[3] = ObservedSums(edges)
            Y = out[3].add(Y)
            out[2] += Y.T @ Y
            return
    out[0] += rows
    out[1] += sums
    out[2] += Y.T @ Y


def _finish(count, sums, cross, shift):
    n = int(count)
    delta = sums / n  # mean - shift
    S = cross - n * np.outer(delta, delta)
    S /= n - 1
    S = 0.5 * (S + S.T)
    return S, shift + delta, n


def _shift_rows(d, chunk_bytes):
    return min(_SHIFT_ROWS, _rows_per_slice(d, chunk_bytes))


def _shift_of(parts, chunk_bytes):
    """Float64 column means of the first rows (the common shift), within ``chunk_bytes``."""
    rows = _shift_rows(sum(p.shape[1] for p in parts), chunk_bytes)
    return np.concatenate([np.asarray(p[:rows], dtype=np.float64).mean(axis=0)
                           for p in parts])


# Data with missing values: a feature whose leading rows hold no finite value gets its shift
# from the first rows that do. Until a feature is observed, nothing accumulated depends on
# its shift (its centred values are zero), so the shift may be set when it first is.
def _finite_means(values):
    """Column means of the finite entries of a 2-D array (NaN where there is none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    seen = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.divide(total, seen, out=np.full(values.shape[1], np.nan), where=seen > 0)


def _fill_shift(parts, edges, shift, unset):
    """Set, in place, the shift of the ``unset`` features observed in the rows ``parts``."""
    for m, part in enumerate(parts):
        cols = np.flatnonzero(unset[edges[m]:edges[m + 1]])
        if cols.size:
            means = _finite_means(part[:, cols])
            seen = ~np.isnan(means)
            shift[edges[m] + cols[seen]] = means[seen]
            unset[edges[m] + cols[seen]] = False


def _dask_fill_shift(blocks, starts, edges, shift):
    """:func:`_fill_shift` over the row chunks in order until every feature has a shift
    (reads the chunks of the modalities concerned, usually the first one only)."""
    import dask

    unset = ~np.isfinite(shift)
    shift = np.where(unset, 0.0, shift)
    for a, b in zip(starts[:-1], starts[1:]):
        mods = [m for m in range(len(blocks)) if unset[edges[m]:edges[m + 1]].any()]
        if not mods:
            break
        rows = dask.compute(*[blocks[m][a:b] for m in mods])
        for m, part in zip(mods, rows):
            sl = slice(edges[m], edges[m + 1])  # views: filled in place
            _fill_shift([part], [0, sl.stop - sl.start], shift[sl], unset[sl])
    return shift


def _finish_any(out, shift, names):
    """:func:`_finish` of complete data, the pairwise covariance of incomplete data:
    ``(S, means, n, joint counts or None)``."""
    if out[3] is None:
        return (*_finish(out[0], out[1], out[2], shift), None)
    return pairwise_from_sums(out[0], out[1], out[2], out[3], shift, names)


def _numpy_statistics(blocks, names, chunk_bytes, allow_nan=False):
    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    edges = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    d = int(edges[-1])
    with np.errstate(invalid="ignore", over="ignore"):
        shift = _shift_of(blocks, chunk_bytes)
    unset = ~np.isfinite(shift) if allow_nan else np.zeros(d, dtype=bool)
    # the slice check names the culprit of a value that is not finite
    shift = np.where(np.isfinite(shift), shift, 0.0)
    out = [0, np.zeros(d), np.zeros((d, d)), None]
    for sl in iter_row_slices(n, d, chunk_bytes):
        parts = [b[sl] for b in blocks]
        if unset.any():
            _fill_shift(parts, edges, shift, unset)
        _slice_moments(parts, shift, edges, sl.start, names, out, allow_nan)
        for b in blocks:
            release_pages(b)
    return _finish_any(out, shift, names)


# -- Dask ----------------------------------------------------------------------------------
def _chunk_moments(parts, shift, edges, row0, names, chunk_bytes, allow_nan=False):
    """Task body: ``[count, sums, cross, observed]`` of one row chunk (one array per
    modality)."""
    d = int(edges[-1])
    out = [0, np.zeros(d), np.zeros((d, d)), None]
    rows = parts[0].shape[0]
    for sl in iter_row_slices(rows, d, chunk_bytes):
        _slice_moments([p[sl] for p in parts], shift, edges, row0 + sl.start, names, out,
                       allow_nan)
        for p in parts:  # memmap views when the Dask array wraps a memmap
            release_pages(p)
    return out


def _merge(a, b):
    return [a[0] + b[0], a[1] + b[1], a[2] + b[2], merge_observed(a[3], b[3])]


def _dask_statistics(blocks, names, chunk_bytes, allow_nan=False):
    import dask

    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    edges = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    lead = next(b for b in blocks if is_dask_array(b))
    row_chunks = lead.chunks[0]
    starts = np.concatenate([[0], np.cumsum(row_chunks)]).astype(int)
    # per modality, the row chunks as Dask sees them (all columns in one chunk), so that a
    # task gets the modalities' rows as they come from storage (no concatenation); NumPy
    # blocks mixed in are passed as views (not through da.from_array, which copies them)
    head = min(_shift_rows(int(edges[-1]), chunk_bytes), n)
    pieces, heads = [], []
    for b in blocks:
        if is_dask_array(b):
            a = b.rechunk({0: row_chunks, 1: -1})
            pieces.append(list(a.to_delayed()[:, 0]))
            heads.append(a[:head].astype(np.float64).mean(axis=0))
        else:
            pieces.append([b[starts[k]:starts[k + 1]] for k in range(len(row_chunks))])
            heads.append(np.asarray(b[:head], dtype=np.float64).mean(axis=0))
    # the shift: means of the leading rows (a small read)
    with np.errstate(invalid="ignore", over="ignore"):
        shift = np.concatenate([np.asarray(h, dtype=np.float64)
                                for h in dask.compute(*heads)])
    if allow_nan and not np.all(np.isfinite(shift)):
        shift = _dask_fill_shift(blocks, starts, edges, shift)
    # the chunk check names the culprit of a value that is not finite
    shift = np.where(np.isfinite(shift), shift, 0.0)
    # pure=False: no hashing of the NumPy views passed as arguments
    task = dask.delayed(_chunk_moments, pure=False)
    merge = dask.delayed(_merge, pure=False)
    parts = [task([p[k] for p in pieces], shift, edges, int(starts[k]), names, chunk_bytes,
                  allow_nan) for k in range(len(row_chunks))]
    while len(parts) > 1:  # pairwise tree: depth log2(chunks), bounded memory per task
        parts = [merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return _finish_any(parts[0].compute(), shift, names)


def covariance_statistics(blocks, names=None, *, chunk_bytes=None, dtype=np.float64,
                          missing="raise", checked=False):
    """Unbiased covariance, means and sample count of the stacked modalities.

    Parameters
    ----------
    blocks : list of array-like of shape (n_samples, p_m)
        NumPy arrays, memmaps or Dask arrays (as returned by
        ``check_blocks(..., lazy=True)``); they are only read.
    names : tuple of str or None, default=None
        Modality names, for error messages.
    chunk_bytes : int, default=None
        Largest float64 work array per chunk (default :data:`CHUNK_BYTES`); in-memory data
        whose float64 copy is larger are chunked too.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Floating type of ``S``. With float32 (and no ``chunk_bytes``), in-memory NumPy
        data whose float32 copy fits in :data:`MEMORY_BYTES` take the direct float32
        product (float64 means, centring fused with the cast;
        :func:`hcl_stats._statistics.covariance.sample_covariance`); chunked data are
        accumulated in float64 and the result is rounded.
    missing : {"raise", "allow"}, default="raise"
        ``"allow"``: NaN are missing values and the joint sample counts are returned too.
        Data with a missing value give the pairwise covariance (each feature centred by
        its observed mean, each entry averaged over the samples observing both features;
        :mod:`hcl_stats._statistics.missing`), float64 unless ``dtype`` asks for float32;
        complete data give the same result as with ``"raise"``.
    checked : bool, default=False
        The blocks are in-memory NumPy arrays already found finite and without missing
        values (by :func:`hcl_stats._input.validation.read_blocks`, ``Blocks.checked``):
        the direct computation does not check them again.

    Returns
    -------
    S : ndarray of shape (d, d)
    means : ndarray of shape (d,)
    n_samples : int
    joint_counts : ndarray of shape (M, M) of int or None
        Only with ``missing="allow"``: the samples observing each modality (diagonal)
        and each pair, ``None`` when no value is missing.

    Raises
    ------
    ValueError
        When a modality holds NaN (unless allowed) or infinite values (checked chunk by
        chunk); with missing values, when a feature is observed in fewer than two samples
        or a modality shares no sample with the others.

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats._statistics.chunked import covariance_statistics
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(500, 3)), rng.normal(size=(500, 2)).astype(np.float32)]
    >>> S, mu, n = covariance_statistics(X, chunk_bytes=8 * 5 * 64)  # 64-row slices
    >>> bool(np.allclose(S, np.cov(np.hstack(X), rowvar=False))), n
    (True, 500)
    """
    # float32: in-memory data within the memory budget take the direct float32 product
    # unless a chunk size is asked for. float64: chunked above CHUNK_BYTES (a fresh float64
    # copy of large data cost more in page faults than the chunked pass)
    allow = check_missing_option(missing)
    single = np.dtype(dtype) == np.float32
    budget = (MEMORY_BYTES if single and chunk_bytes is None else
              CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes))
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
    if any(is_dask_array(b) for b in blocks):
        S, means, n, counts = _dask_statistics(blocks, names, chunk_bytes, allow)
    elif needs_chunks(blocks, budget, itemsize=4 if single else 8):
        S, means, n, counts = _numpy_statistics(blocks, names, chunk_bytes, allow)
    else:  # in-memory data: the direct computation
        for m, b in enumerate(blocks if not checked else ()):
            check_finite(b, modality_description(m, names), allow_nan=allow)
        if allow and not checked and any(has_missing(np.asarray(b)) for b in blocks):
            S, means, n, counts = pairwise_covariance(blocks, names)
        else:
            result = sample_covariance(blocks, dtype=np.float32 if single else None)
            return (*result, None) if allow else result
    S = S.astype(np.float32) if single else S
    return (S, means, n, counts) if allow else (S, means, n)


def column_moments(blocks, names=None, *, chunk_bytes=None):
    """Per-modality means and column variances (divisor ``n - 1``), chunk by chunk.

    Reads each (NumPy or memmap) modality once in row slices of bounded float64 size and
    checks it for NaN / infinite values on the way.

    Returns
    -------
    means : list of ndarray of shape (p_m,)
    variances : list of ndarray of shape (p_m,)
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
    means, variances = [], []
    for m, b in enumerate(blocks):
        n, p = b.shape
        with np.errstate(invalid="ignore", over="ignore"):
            shift = np.asarray(b[:_shift_rows(p, chunk_bytes)], dtype=np.float64).mean(axis=0)
        shift = np.where(np.isfinite(shift), shift, 0.0)
        s1 = np.zeros(p)
        s2 = np.zeros(p)
        for sl in iter_row_slices(n, p, chunk_bytes):
            Y = np.subtract(b[sl], shift, dtype=np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                part = Y.sum(axis=0)
            if not np.all(np.isfinite(part)):
                _raise_not_finite(Y, [0, p], sl.start, names, first=m, note=(
                    "; or pass path='covariance', which fits data with missing values"))
            s1 += part
            np.square(Y, out=Y)
            s2 += Y.sum(axis=0)
            release_pages(b)
        delta = s1 / n
        means.append(shift + delta)
        variances.append(np.clip(s2 - n * delta * delta, 0.0, None) / (n - 1))
    return means, variances
