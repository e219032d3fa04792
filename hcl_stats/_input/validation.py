"""The one door for multi-block input (samples by label, feature names, values) and the checks of
structures and covariances against it; see ``docs/input.md``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse
from pandas.api.types import (
    is_bool_dtype,
    is_complex_dtype,
    is_numeric_dtype,
    is_object_dtype,
)

from hcl_stats._input.alignment import align_samples
from hcl_stats._input.omics import anndata_parts, is_anndata, is_mudata, mudata_modalities
from hcl_stats._numerics.backend import (
    get_namespace,
    is_dask_array,
    real_float_dtype,
    to_numpy,
)
from hcl_stats._structure import (
    Structure,
    describe_shortfall,
    joint_shortfalls,
    modality_description,
)

__all__ = ["Blocks", "read_blocks", "check_blocks", "check_structure", "check_total_rank",
           "check_fitted_blocks", "read_fitted_blocks", "check_feature_names",
           "check_covariance", "check_missing_option", "check_observed_counts",
           "check_shared_samples"]


def _frame_to_array(frame, where):
    """A DataFrame's values as a float array; nullable columns' ``pd.NA`` become NaN."""
    for i, (c, t) in enumerate(frame.dtypes.items()):
        if is_complex_dtype(t):
            raise TypeError(f"{where}: column {c!r} is complex (dtype {t}); complex data are "
                            "not supported")
        if is_object_dtype(t):  # numbers with None / pd.NA cells: numeric, with missing cells
            values = frame.iloc[:, i].to_numpy()
            if _object_to_float(values[~pd.isna(values)]) is not None:
                continue
        if not (is_numeric_dtype(t) or is_bool_dtype(t)) or is_object_dtype(t):
            raise TypeError(
                f"{where}: column {c!r} is not numeric (dtype {t}); encode categorical data "
                "before fitting"
            )
    dtypes = set(frame.dtypes)
    if len(dtypes) == 1 and next(iter(dtypes)) in (np.float32, np.float64):
        return frame.to_numpy()
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _object_to_float(values):
    """``values`` (an object array) as float64 with missing cells as NaN, or None."""
    missing = pd.isna(values)
    if any(isinstance(v, (str, bytes)) for v in values.flat):
        return None  # text, even text that reads as numbers, is not numeric data
    try:
        return np.where(missing, np.nan, values).astype(np.float64)
    except (TypeError, ValueError):
        return None


def _series_to_array(series, where):
    """A pandas Series of rows (one array-like per sample) as a 2-D array."""
    if series.dtype != object:
        raise ValueError(f"{where} is a Series of numbers (1-D); pass a DataFrame (use "
                         "series.to_frame() for a single feature) or a Series of rows")
    try:
        return np.vstack([np.asarray(row) for row in series.to_numpy()])
    except ValueError as exc:
        raise ValueError(f"{where}: the rows of the Series differ in length ({exc})") from None


def _feature_names(columns, where):
    """Column names as an object array when all are strings, None when none is (the
    scikit-learn rule for ``feature_names_in_``); mixed types raise TypeError."""
    names = np.asarray(list(columns), dtype=object)
    is_str = [isinstance(c, str) for c in names]
    if all(is_str):
        return names
    if any(is_str):
        raise TypeError(f"{where}: column names mix strings and other types; use strings "
                        "only (df.columns = df.columns.astype(str)) or no names")
    return None


def _read_modality(block, where):
    """``(array-like, sample labels, feature names)`` of one modality (labels/names or None)."""
    if is_anndata(block):
        matrix, labels, features = anndata_parts(block, where)
        return matrix, labels, _feature_names(features, where)
    if isinstance(block, pd.DataFrame):
        return (_frame_to_array(block, where), block.index,
                _feature_names(block.columns, where))
    if isinstance(block, pd.Series):
        return _series_to_array(block, where), block.index, None
    if scipy.sparse.issparse(block):  # the model needs dense second moments (as AnnData's X)
        return block.toarray(order="C"), None, None
    return block, None, None


def _to_array(block, where):
    """Convert one block to a 2-D floating array without copying when it already is one."""
    if hasattr(block, "__array_namespace__") and not isinstance(block, np.ndarray):
        # another array-API library (CuPy, ...): code that needs NumPy gets a host copy
        block = to_numpy(block)
    elif not hasattr(block, "__array__") and not isinstance(block, (list, tuple)):
        raise TypeError(
            f"{where}: expected an array or DataFrame of shape (n_samples, n_features), "
            f"got {type(block).__name__}"
        )
    try:
        arr = np.asarray(block)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{where}: could not be read as a numeric array ({exc})") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{where}: complex data are not supported (dtype {arr.dtype})")
    if arr.dtype.kind == "O":  # lists with None, object arrays with pd.NA: missing cells
        converted = _object_to_float(arr)
        if converted is None:
            raise TypeError(f"{where}: non-numeric data (dtype {arr.dtype}); expected numbers")
        arr = converted
    elif arr.dtype.kind not in "biuf":  # text (even text of numbers), dates, records
        raise TypeError(f"{where}: non-numeric data (dtype {arr.dtype}); expected numbers")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _is_device_array(block):
    """An array of another array-API library (CuPy, ...): not NumPy, not Dask."""

    return (hasattr(block, "__array_namespace__") and not isinstance(block, np.ndarray)
            and not is_dask_array(block))


def _lazy_array(block, where):
    """Check a Dask array or NumPy array/memmap without converting or reading its values."""
    if _is_device_array(block):

        xp = get_namespace(block)
        if xp.isdtype(block.dtype, "complex floating"):
            raise TypeError(f"{where}: complex data are not supported (dtype {block.dtype})")
        if not xp.isdtype(block.dtype, ("bool", "integral", "real floating")):
            raise TypeError(f"{where}: non-numeric data (dtype {block.dtype}); expected "
                            "numbers")
        return block
    kind = np.dtype(block.dtype).kind
    if kind == "c":
        raise TypeError(f"{where}: complex data are not supported (dtype {block.dtype})")
    if kind not in "biuf":
        raise TypeError(f"{where}: non-numeric data (dtype {block.dtype}); expected numbers")
    if any(not np.isfinite(s) for s in block.shape):
        raise ValueError(f"{where}: unknown chunk sizes {block.shape}; call "
                         "compute_chunk_sizes() on the Dask array first")
    return block


def _is_lazy(block):

    return is_dask_array(block) or _is_device_array(block) or (
        isinstance(block, np.ndarray) and block.dtype.kind in "biuf")


def check_finite(arr, where, value_range=None, allow_nan=False):
    """Raise the ValueError naming ``where`` unless ``arr`` is all finite.

    Missing cells (NaN; ``None`` and ``pd.NA`` are read as NaN) and infinite cells are
    counted in the message. Returns the largest absolute value (of the observed cells).
    ``value_range``: the column maxima and minima of ``arr`` when the caller has them.
    ``allow_nan``: missing cells are accepted (infinite ones still raise).
    """
    if arr.size == 0:
        return 0.0
    hi, lo = (np.max(arr), np.min(arr)) if value_range is None else \
        (np.max(value_range[0]), np.min(value_range[1]))  # NaN and inf propagate
    hi, lo = float(hi), float(lo)
    if np.isfinite(hi) and np.isfinite(lo):
        return max(hi, -lo)
    infinite = np.isinf(arr)
    n_infinite = int(np.count_nonzero(infinite))
    if allow_nan and not n_infinite:
        return _observed_largest(arr)
    missing = None if allow_nan else np.isnan(arr)  # allowed NaN are not counted
    n_missing = 0 if allow_nan else int(np.count_nonzero(missing))
    bad = missing if n_missing else infinite
    rows = bad.any(axis=1) if arr.ndim == 2 else bad
    where_rows = f" in {int(np.count_nonzero(rows))} sample(s), first in row " \
        f"{int(np.argmax(rows))}"
    if n_missing:
        also = f" (and {n_infinite} infinite value(s))" if n_infinite else ""
        raise ValueError(
            f"{where} contains NaN: {n_missing} missing value(s){where_rows}{also} (NaN, "
            "None or pd.NA); impute or drop them before fitting"
        )
    raise ValueError(
        f"{where} contains infinite values: {n_infinite} infinite value(s){where_rows}; "
        "check the data's units or scale before fitting"
    )


def _observed_largest(arr):
    """The largest absolute value of the non-NaN cells (0 when there is none)."""
    # fmax / fmin skip NaN without the RuntimeWarning of nanmax on an all-NaN array
    hi, lo = np.fmax.reduce(arr, axis=None), np.fmin.reduce(arr, axis=None)
    return 0.0 if np.isnan(hi) else max(float(hi), -float(lo))


def check_scale(largest, where, n_samples, n_total_features):
    """Raise ValueError naming ``where`` when values this large would overflow the fit.

    Centred values reach ``2 max|x|``; the covariance sums ``n`` squares of them and the
    least-squares objective ``d^2`` squared covariance entries. Both must stay well (a
    factor ``1e-6``) below the largest float64, which bounds ``max|x|``.
    """
    budget = 1e-6 * np.finfo(np.float64).max
    limit = min(np.sqrt(budget / (4.0 * n_samples)),
                (budget / (16.0 * n_total_features ** 2)) ** 0.25)
    if largest > limit:
        raise ValueError(
            f"{where} has values up to {largest:.3g} in absolute value: the covariance and "
            f"its squares would overflow (the limit is about {limit:.3g} for {n_samples} "
            f"samples and {n_total_features} features); divide it by a constant such as its "
            "standard deviation (scaling) before fitting"
        )


def check_spread(value_range, where, missing=False):
    """Raise ValueError naming ``where`` when a modality (to be fitted) does not vary, or
    varies so little that the squares of its covariance underflow (``(1e-70)^4`` is
    below the smallest normal float64). ``value_range``: its column maxima and minima."""
    hi, lo = value_range
    spread = float(np.max(hi.astype(np.float64) - lo))
    if spread == 0.0:
        observed = " in the samples that observe it" if missing else ""
        raise ValueError(f"{where} is constant{observed} (every feature takes one value): "
                         "it carries no information to fit")
    if spread < _SMALLEST_SPREAD:
        raise ValueError(
            f"{where} varies by at most {spread:.3g}: the squares of its covariance would "
            "underflow; multiply it by a constant (scaling) before fitting"
        )


_SMALLEST_SPREAD = 1e-70


@dataclass(frozen=True)
class Blocks:
    """Validated multi-block input.

    Attributes
    ----------
    arrays : tuple of ndarray or None
        The modalities in order (``None``: not observed), samples aligned.
    names : tuple of str or None
        Modality names (dict or MuData input).
    sample_index : pandas.Index or None
        The samples' labels in row order, ``None`` when no modality carried labels.
    feature_names : tuple of (ndarray of str or None)
        Each modality's column names (DataFrame columns, AnnData ``var_names``) when they
        are strings, else ``None``.
    n_missing : tuple of (int or None)
        Each modality's number of missing (NaN) cells; ``None`` for a modality passed as
        ``None`` and for memmaps and Dask arrays, whose values are not read here.
    """

    arrays: tuple
    names: tuple | None
    sample_index: pd.Index | None
    feature_names: tuple
    n_missing: tuple = ()

    @property
    def complete(self):
        """Whether no missing value was found (values of memmaps and Dask arrays are
        read later, by the statistics, and count as complete here)."""
        return not any(self.n_missing)

    @property
    def checked(self):
        """Whether every modality's values were read here and found finite and complete
        (in-memory NumPy arrays without missing values): the statistics need not check
        them again."""
        return bool(self.n_missing) and all(k == 0 for k in self.n_missing)

    @property
    def n_samples(self):
        """Number of samples (rows)."""
        return next(a.shape[0] for a in self.arrays if a is not None)

    @property
    def n_features(self):
        """Modality widths (``None`` for unobserved modalities)."""
        return tuple(None if a is None else int(a.shape[1]) for a in self.arrays)


def _modalities(X, names):
    """``(items, names, reference sample labels)`` of list, tuple, dict or MuData input."""
    reference = None
    if is_mudata(X):
        X, reference = mudata_modalities(X)
    if isinstance(X, dict):
        got_names = tuple(X.keys())
        if not all(isinstance(k, str) for k in got_names):
            raise TypeError(f"dict input needs string modality names, got {got_names!r}")
        if names is not None and got_names != tuple(names):
            if set(got_names) != set(names):
                raise ValueError(
                    f"modality names {got_names!r} do not match those seen at fit "
                    f"{tuple(names)!r}"
                )
            X = {k: X[k] for k in names}
            got_names = tuple(names)
        return list(X.values()), got_names, reference
    if isinstance(X, (list, tuple)):
        return list(X), (tuple(names) if names is not None else None), None
    kind = type(X).__name__
    hint = " (wrap a single array in a list: [X])" if hasattr(X, "shape") else ""
    raise TypeError(f"expected a list, tuple or dict of modality arrays, got {kind}{hint}")


def _check_shape(arr, where, expected):
    if arr.ndim != 2:
        hint = " (use reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{where} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{where} is empty: it has 0 features")
    if expected is not None and arr.shape[1] != expected:
        raise ValueError(f"{where} has {arr.shape[1]} features, expected {expected} as at fit")


def read_blocks(X, *, n_features=None, names=None, allow_missing=False, min_samples=2,
                lazy=False, fitting=False, missing="raise"):
    """Validate multi-block input, match its samples, and return it as :class:`Blocks`.

    Parameters
    ----------
    X : list, tuple or dict of array-like, or mudata.MuData
        One ``(n_samples, p_m)`` modality each: an array, a DataFrame, a pandas Series of
        rows or an AnnData object; a MuData object gives its modalities by name. Labelled
        modalities (DataFrame and Series index, AnnData and MuData ``obs_names``) are
        matched by label and put in one order: the MuData object's, otherwise the first
        labelled modality's. Arrays pair by position with that order.
    n_features : sequence of int, default=None
        Expected modality widths (set at ``transform`` time from the fitted model).
    names : tuple of str or None, default=None
        Expected modality names (dict input) from the fitted model.
    allow_missing : bool, default=False
        Whether a modality may be passed as ``None`` (treated as not observed).
    min_samples : int, default=2
        Smallest number of samples accepted.
    lazy : bool, default=False
        Return Dask arrays and real-valued NumPy arrays (memmaps included) as they are,
        without converting them. In-memory arrays are still checked for finite values of
        a safe scale (one pass, no copy); the values of memmaps and Dask arrays are not
        read: the caller must check finiteness chunk by chunk (as
        :func:`hcl_stats._statistics.chunked.covariance_statistics` does).
    fitting : bool, default=False
        The data are about to be fitted: an in-memory modality that does not vary (or
        varies by less than ``1e-70``) raises too, and so do (with ``missing="allow"``) a
        feature observed in fewer than two samples and a modality that shares no sample
        with the others.
    missing : {"raise", "allow"}, default="raise"
        ``"allow"``: missing values (NaN, ``None``, ``pd.NA``) are passed on as NaN, and
        labelled modalities holding different samples are outer-joined (the samples are
        the union of the labels, a MuData object's ``obs_names``; a sample absent from a
        modality is a row of NaN there). ``"raise"``: a ValueError counts them.

    Returns
    -------
    Blocks
        Arrays are not copied when they already are floating NumPy arrays in the reference
        sample order, so callers must never write into them.
        ``Blocks.n_missing`` counts each in-memory modality's missing cells.

    Raises
    ------
    TypeError
        When ``X`` is not a list/tuple/dict/MuData, or a modality is not numeric.
    ValueError
        When a modality has the wrong shape, other samples than the others (a count of the
        unmatched labels), duplicated sample labels, missing or infinite values, values
        large enough to overflow, no variation (with ``fitting``), or does not match the
        fitted model. The message names the modality.
    """
    items, got_names, reference = _modalities(X, names)
    if not items:
        raise ValueError("no modalities given: expected at least one array")
    if n_features is not None and len(items) != len(n_features):
        raise ValueError(f"expected {len(n_features)} modalities (as at fit), got {len(items)}")
    wheres = [modality_description(m, got_names) for m in range(len(items))]
    arrays, labels, features, deferred = [], [], [], []
    for m, block in enumerate(items):
        if block is None and not allow_missing:
            raise ValueError(f"{wheres[m]} is None; every modality must be observed here")
        lazy_m = block is not None and lazy and _is_lazy(block)
        arr, lab, feat = (block, None, None) if block is None or lazy_m \
            else _read_modality(block, wheres[m])
        if arr is not None:
            arr = _lazy_array(arr, wheres[m]) if lazy_m else _to_array(arr, wheres[m])
            _check_shape(arr, wheres[m], None if n_features is None else n_features[m])
        arrays.append(arr)
        labels.append(lab)
        features.append(feat)
        # in-memory NumPy arrays are checked now (one pass, no copy); memmaps, Dask and
        # device arrays chunk by chunk where they are read
        deferred.append(lazy_m and (isinstance(arr, np.memmap) or type(arr) is not np.ndarray))
    if all(a is None for a in arrays):
        raise ValueError("every modality is None: at least one must be observed")
    allow_nan = check_missing_option(missing)
    arrays, index = align_samples(arrays, labels, wheres, reference, outer=allow_nan)
    n_missing = _check_values(arrays, wheres, deferred, min_samples, fitting, allow_nan)
    return Blocks(tuple(arrays), got_names, index, tuple(features), n_missing)


def check_missing_option(missing):
    """``missing == "allow"``, after a ValueError unless it is ``"raise"`` or ``"allow"``."""
    if missing not in ("raise", "allow"):
        raise ValueError(f"missing must be 'raise' or 'allow', got {missing!r}")
    return missing == "allow"


def _check_values(arrays, wheres, deferred, min_samples, fitting, allow_nan):
    """Enough samples; finite values of a scale the fit can square (in-memory arrays);
    with ``allow_nan``, the count of missing cells per modality (None where not read)."""
    present = [m for m, a in enumerate(arrays) if a is not None]
    n = arrays[present[0]].shape[0]
    if n < min_samples:
        raise ValueError(f"{wheres[present[0]]} has {n} sample(s); at least {min_samples} "
                         "are needed")
    d = sum(arrays[m].shape[1] for m in present)
    n_missing = [None] * len(arrays)
    observed_rows = {}
    for m in present:
        if deferred[m]:
            continue
        # one pass per range, no temporary array; NaN and inf propagate into them, so
        # complete data need no pass of their own to count missing cells
        value_range = column_range(arrays[m])
        missing = np.isnan(arrays[m]) if allow_nan and np.isnan(value_range[0]).any() \
            else None
        n_missing[m] = 0 if missing is None else int(np.count_nonzero(missing))
        if n_missing[m]:
            # the ranges of the observed cells (an infinite one still shows in them)
            observed = ~missing
            value_range = (np.fmax.reduce(arrays[m], axis=0), np.fmin.reduce(arrays[m], axis=0))
        complete = not n_missing[m]
        largest = check_finite(arrays[m], wheres[m], value_range, allow_nan=allow_nan)
        check_scale(largest, wheres[m], n, d)
        if not complete:  # missing cells (allowed)
            if fitting:
                check_observed_counts(observed.sum(axis=0), wheres[m])
            observed_rows[m] = observed.any(axis=1)
        if fitting:
            check_spread(value_range, wheres[m], missing=not complete)
    if fitting and observed_rows:
        _check_shared_samples(observed_rows, present, wheres, n)
    return tuple(n_missing)


# column_range lays this many values of consecutive rows side by side
_RANGE_WIDTH = 256


def column_range(arr):
    """``(np.max(arr, axis=0), np.min(arr, axis=0))`` of a 2-D array (NaN propagate).

    The same values (a maximum or minimum is exact in any order), computed for a
    C-contiguous array of a few columns on a view that lays blocks of consecutive rows
    side by side: NumPy's reduction over the first axis loops over the rows, so on
    ``(n, p)`` with small ``p`` it costs ``n`` passes of ``p`` values; the view has
    ``n / b`` rows of ``b p`` values, and the ``b`` partial results are reduced after.
    """
    n, p = arr.shape
    rows = _RANGE_WIDTH // max(p, 1)
    if rows < 2 or n < 4 * rows or not arr.flags.c_contiguous:
        return arr.max(axis=0), arr.min(axis=0)
    m = n - n % rows
    blocks = arr[:m].reshape(m // rows, rows * p)
    hi = blocks.max(axis=0).reshape(rows, p).max(axis=0)
    lo = blocks.min(axis=0).reshape(rows, p).min(axis=0)
    if m < n:
        hi, lo = np.maximum(hi, arr[m:].max(axis=0)), np.minimum(lo, arr[m:].min(axis=0))
    return hi, lo


def check_observed_counts(counts, where):
    """Every feature observed in at least two samples (a variance needs two).

    ``counts``: the number of samples observing each feature of the modality ``where``.
    """
    j = int(np.argmin(counts))
    if counts[j] < 2:
        raise ValueError(f"{where}: feature {j} is observed in {int(counts[j])} sample(s) "
                         "(the others are missing); every feature needs at least 2")


def _check_shared_samples(observed_rows, present, wheres, n):
    """With several modalities, each shares at least one sample with another one."""
    rows = np.column_stack([observed_rows.get(m, np.ones(n, dtype=bool)) for m in present])
    rows = rows.astype(np.int64)
    check_shared_samples(rows.T @ rows, [wheres[m] for m in present])


def check_shared_samples(joint_counts, wheres):
    """Raise ValueError unless every modality shares a sample with another one.

    ``joint_counts``: the (M, M) numbers of samples observing both modalities of a pair;
    ``wheres``: the modalities' descriptions, for the message.
    """
    joint = np.asarray(joint_counts)
    if joint.shape[0] < 2:
        return
    for m in range(joint.shape[0]):
        if not np.any(np.delete(joint[m], m)):
            raise ValueError(
                f"{wheres[m]} shares no sample with the other modalities (the samples it "
                "observes are missing from all of them): nothing can be learnt about what "
                "it shares; check the sample labels")


def check_blocks(X, **kwargs):
    """:func:`read_blocks` returning ``(list of arrays, names)`` only.

    Takes the same keyword arguments as :func:`read_blocks`.
    """
    blocks = read_blocks(X, **kwargs)
    return list(blocks.arrays), blocks.names


def check_structure(structure, n_features, names=None, n_samples=None, joint_counts=None):
    """Return ``structure`` as a :class:`Structure` bound to the data, or raise.

    Checks that the structure covers exactly the data's modalities (by name when the data
    are named: a structure given by names is re-indexed to the data's order, and a name
    not in the data raises), that no modality is asked to carry more factors than it has
    features, and, given ``n_samples``, that the total rank ``K`` is below ``n - 1`` (the
    rank of the centred data, with room left for the noise).

    ``joint_counts`` (an ``(M, M)`` array: samples observing each modality on the diagonal,
    samples observing both of two modalities off it) adds the checks of incomplete data:
    every modality observed in more samples than the factors it carries, and every two
    modalities that share a block observed together in more samples than the factors of
    the blocks containing both (:func:`hcl_stats._structure.joint_shortfalls`).
    """
    if isinstance(structure, dict):
        structure = Structure(structure, modalities=names if names else None)
    elif not isinstance(structure, Structure):
        raise TypeError(
            f"structure must be a Structure or a dict of subset -> rank, got "
            f"{type(structure).__name__}"
        )
    n_mod = len(n_features)
    if names is not None:
        structure = structure.bind(names)
    elif structure.modality_names is not None:
        raise ValueError(
            f"the structure names its modalities {structure.modality_names!r}; pass the data "
            "as a dict with those keys"
        )
    if structure.n_modalities != n_mod:
        if structure.n_modalities > n_mod:
            raise ValueError(
                f"the structure refers to modality {structure.n_modalities - 1}, but only "
                f"{n_mod} modalities were given"
            )
        raise ValueError(
            f"modality {structure.n_modalities} carries no factor in the structure "
            f"(it covers {structure.n_modalities} of the {n_mod} modalities given)"
        )
    for m, p in enumerate(n_features):
        r = structure.modality_rank(m)
        if r > p:
            blocks = ", ".join(structure.label(s) for s in structure.subsets_of(m))
            raise ValueError(
                f"{modality_description(m, names)} has {p} features but the structure asks it "
                f"to carry {r} factors ({blocks})"
            )
    if n_samples is not None:
        check_total_rank(structure.n_components, n_samples, "the structure has")
    if joint_counts is not None:
        short = joint_shortfalls(structure, joint_counts)
        if short:
            raise ValueError(describe_shortfall(short[0], structure) + "; drop or merge the "
                             "block, lower its rank, or use samples that observe more modalities")
    return structure


def check_total_rank(K, n_samples, what="the model has"):
    """Raise ValueError unless ``K < n_samples - 1`` (the rank of the centred data, with
    room left for the noise), with both numbers in the message."""
    if K >= n_samples - 1:
        raise ValueError(
            f"{what} {K} factors in total but there are {n_samples} samples: the centred "
            f"data have rank at most {n_samples - 1}, so at most {max(n_samples - 2, 0)} "
            "factors can be estimated with a noise level; use more samples or smaller ranks"
        )


def check_covariance(S, d):
    """Return ``S`` as a symmetric finite (d, d) float64 array, or raise ValueError.

    An exactly symmetric float64 NumPy input is returned as is (no copy): callers must not
    modify the result in place.

    An array of another array-API namespace (CuPy, ...) is checked and symmetrised there
    and returned in it (float32 on a device without float64).
    """
    if hasattr(S, "__array_namespace__") and not isinstance(S, np.ndarray):
        return _check_covariance_xp(S, d)
    S = np.asarray(S, dtype=np.float64)
    if S.shape != (d, d):
        raise ValueError(f"covariance must have shape ({d}, {d}) for the given modality "
                         f"widths, got {S.shape}")
    if not np.isfinite(S).all():
        raise ValueError("covariance contains NaN or infinite values")
    # one pass for the asymmetry, reused to symmetrise (np.allclose costs four times more
    # at d = 1400, a sixth of the covariance itself)
    asym = S - S.T
    if not asym.any():  # exactly symmetric (as computed covariances are): nothing to do
        return S
    if np.abs(asym).max() > 1e-8 * max(np.abs(S).max(), 1e-300):
        raise ValueError("covariance is not symmetric")
    asym *= 0.5
    return S - asym


def check_fitted_blocks(estimator, X, *, allow_missing=False):
    """Validate ``X`` against what ``estimator`` saw at fit; return the list of arrays.

    See :func:`read_fitted_blocks`.
    """
    return list(read_fitted_blocks(estimator, X, allow_missing=allow_missing).arrays)


def read_fitted_blocks(estimator, X, *, allow_missing=False, missing="raise"):
    """Validate ``X`` against what ``estimator`` saw at fit and return :class:`Blocks`.

    Samples are aligned as at fit (:func:`read_blocks`, with its ``allow_missing`` and
    ``missing``); modality names, widths and, where the model recorded them
    (``feature_names_in_``), each modality's feature names must match
    (:func:`check_feature_names`).
    """
    named = bool(estimator.modality_names_in_)
    blocks = read_blocks(
        X,
        n_features=estimator.n_features_per_modality_,
        names=estimator.structure_.modality_names if named else None,
        allow_missing=allow_missing,
        min_samples=1,
        missing=missing,
    )
    if (isinstance(X, dict) or is_mudata(X)) != named:
        kind = "a dict" if named else "a list"
        raise TypeError(f"the model was fitted on {kind} of modalities; pass the same here")
    check_feature_names(estimator, blocks)
    return blocks


def check_feature_names(estimator, blocks):
    """Each modality's feature names against those recorded at fit.

    Names differing from those seen at fit, or in another order, raise a ValueError naming
    the modality and the first mismatching columns; names on one side only warn (as
    scikit-learn does for one array).
    """
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:  # a model that does not record feature names
        return
    est = type(estimator).__name__
    for m, (arr, seen, got) in enumerate(zip(blocks.arrays, fitted, blocks.feature_names)):
        if arr is None or (seen is None and got is None):
            continue
        where = modality_description(m, blocks.names)
        if seen is None:
            warnings.warn(f"{where} has feature names, but {est} was fitted without feature "
                          "names", UserWarning, stacklevel=3)
        elif got is None:
            warnings.warn(f"{where} does not have valid feature names, but {est} was "
                          "fitted with feature names", UserWarning, stacklevel=3)
        elif not np.array_equal(np.asarray(seen, dtype=object), got):
            raise ValueError(_feature_mismatch(where, np.asarray(seen, dtype=object), got))


def _feature_mismatch(where, seen, got):
    wrong = np.flatnonzero(seen != got)[:3]
    shown = ", ".join(f"column {i} is {got[i]!r}, at fit {seen[i]!r}" for i in wrong)
    unseen = [g for g in got if g not in set(seen)]
    if not unseen:
        return (f"{where}: the feature names are those seen at fit in another order "
                f"({shown}); pass the columns in the order of fit")
    return (f"{where}: the feature names differ from those seen at fit ({shown}); "
            f"{len(unseen)} name(s) unseen at fit, e.g. {unseen[0]!r}")


def _check_covariance_xp(S, d):
    from array_api_compat import device as array_device


    xp = get_namespace(S)
    if tuple(S.shape) != (d, d):
        raise ValueError(f"covariance must have shape ({d}, {d}) for the given modality "
                         f"widths, got {tuple(S.shape)}")
    if not xp.isdtype(S.dtype, "real floating"):
        S = xp.astype(S, real_float_dtype(xp, array_device(S)))
    if not bool(xp.all(xp.isfinite(S))):
        raise ValueError("covariance contains NaN or infinite values")
    size = max(float(xp.max(xp.abs(S))), 1e-300)
    rtol = 1e-8 if S.dtype == xp.float64 else 1e-5
    if float(xp.max(xp.abs(S - S.T))) > rtol * size:
        raise ValueError("covariance is not symmetric")
    return 0.5 * (S + S.T)
