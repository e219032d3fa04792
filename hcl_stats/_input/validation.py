"""The one door for multi-block input, and the parameter checks estimators share."""

from __future__ import annotations

import numpy as np

from hcl_stats._numerics.backend import (
    get_namespace,
    is_dask_array,
    real_float_dtype,
    to_numpy,
)
from hcl_stats._structure import Structure, modality_description

__all__ = ["check_blocks", "check_structure", "check_fitted_blocks"]




def _to_array(block, where):
    """Convert one block to a 2-D floating array without copying when it already is one."""
    if hasattr(block, "iloc") and hasattr(block, "dtypes"):  # pandas DataFrame
        from pandas.api.types import is_bool_dtype, is_complex_dtype, is_numeric_dtype

        bad = [c for c, t in block.dtypes.items()
               if not (is_numeric_dtype(t) or is_bool_dtype(t)) or is_complex_dtype(t)]
        if bad:
            raise TypeError(
                f"{where}: column {bad[0]!r} is not numeric (dtype {block.dtypes[bad[0]]}); "
                "encode categorical data before fitting"
            )
        block = block.to_numpy()
    elif hasattr(block, "__array_namespace__") and not isinstance(block, np.ndarray):
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
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where}: non-numeric data (dtype {arr.dtype}); expected numbers"
            ) from None
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


def check_finite(arr, where):
    """Raise the ValueError naming ``where`` unless ``arr`` is all finite."""
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinite values"
        raise ValueError(f"{where} contains {bad}; impute or drop them before fitting")


def check_blocks(X, *, n_features=None, names=None, allow_missing=False, min_samples=2,
                 lazy=False):
    """Validate multi-block input and return it as a list of 2-D float arrays.

    Parameters
    ----------
    X : list or tuple of array-like, or dict of str to array-like
        One ``(n_samples, p_m)`` array or DataFrame per modality, all with the same samples.
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
        without converting them or reading their values: only dtype and shapes are
        checked, and the caller must check finiteness chunk by chunk (as
        :func:`hcl_stats._statistics.chunked.covariance_statistics` does).

    Returns
    -------
    blocks : list of ndarray or None
        The modalities as float32/float64 arrays, in order. Arrays are not copied when they
        already are floating NumPy arrays, so callers must never write into them.
    names : tuple of str or None
        The modality names when ``X`` was a dict.

    Raises
    ------
    TypeError
        When ``X`` is not a list/tuple/dict, or a modality is not numeric.
    ValueError
        When a modality has the wrong shape, a different number of samples, non-finite
        values, or does not match the fitted model. The message names the modality.
    """
    if isinstance(X, dict):
        got_names = tuple(X.keys())
        if not all(isinstance(k, str) for k in got_names):
            raise TypeError(f"dict input needs string modality names, got {got_names!r}")
        if names is not None and got_names != tuple(names):
            if set(got_names) == set(names):
                X = {k: X[k] for k in names}
                got_names = tuple(names)
            else:
                raise ValueError(
                    f"modality names {got_names!r} do not match those seen at fit "
                    f"{tuple(names)!r}"
                )
        items = list(X.values())
    elif isinstance(X, (list, tuple)):
        got_names = None
        if names is not None:
            got_names = tuple(names)
        items = list(X)
    else:
        kind = type(X).__name__
        hint = " (wrap a single array in a list: [X])" if hasattr(X, "shape") else ""
        raise TypeError(
            f"expected a list, tuple or dict of modality arrays, got {kind}{hint}"
        )
    if not items:
        raise ValueError("no modalities given: expected at least one array")
    if n_features is not None and len(items) != len(n_features):
        raise ValueError(
            f"expected {len(n_features)} modalities (as at fit), got {len(items)}"
        )
    blocks = []
    n_samples = None
    first = None
    for m, block in enumerate(items):
        where = modality_description(m, got_names)
        if block is None:
            if not allow_missing:
                raise ValueError(f"{where} is None; every modality must be observed here")
            blocks.append(None)
            continue
        deferred = lazy and _is_lazy(block)
        arr = _lazy_array(block, where) if deferred else _to_array(block, where)
        if arr.ndim != 2:
            hint = " (use reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
            raise ValueError(
                f"{where} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}"
            )
        if arr.shape[1] == 0:
            raise ValueError(f"{where} is empty: it has 0 features")
        if n_features is not None and arr.shape[1] != n_features[m]:
            raise ValueError(
                f"{where} has {arr.shape[1]} features, expected {n_features[m]} as at fit"
            )
        if n_samples is None:
            n_samples, first = arr.shape[0], where
            if n_samples < min_samples:
                raise ValueError(
                    f"{where} has {n_samples} sample(s); at least {min_samples} are needed"
                )
        elif arr.shape[0] != n_samples:
            raise ValueError(
                f"{where} has {arr.shape[0]} samples but {first} has {n_samples}; all "
                "modalities must be measured on the same samples"
            )
        if not deferred:
            check_finite(arr, where)
        blocks.append(arr)
    if all(b is None for b in blocks):
        raise ValueError("every modality is None: at least one must be observed")
    return blocks, got_names


def check_structure(structure, n_features, names=None):
    """Return ``structure`` as a :class:`Structure` bound to the data, or raise.

    Checks that the structure covers exactly the data's modalities and that no modality is
    asked to carry more factors than it has features.
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
            raise ValueError(
                f"{modality_description(m, names)} has {p} features but the structure asks it to carry "
                f"{r} factors ({', '.join(structure.label(s) for s in structure.subsets_of(m))})"
            )
    return structure


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
    """Validate ``X`` against what ``estimator`` saw at fit."""
    blocks, _ = check_blocks(
        X,
        n_features=estimator.n_features_per_modality_,
        names=estimator.structure_.modality_names if estimator.modality_names_in_ else None,
        allow_missing=allow_missing,
        min_samples=1,
    )
    if isinstance(X, dict) != bool(estimator.modality_names_in_):
        kind = "a dict" if estimator.modality_names_in_ else "a list"
        raise TypeError(f"the model was fitted on {kind} of modalities; pass the same here")
    return blocks




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
