"""The fit pipeline of :class:`hcl_stats.HCL`: plan, bind the structure, run one path.

:func:`plan_fit` (data) and :func:`plan_from_covariance` (a given covariance) resolve the
:class:`FitPlan` -- which path and which array namespace -- in one place, from checked
parameters and the shapes and types of the input, before any value is read; a
combination that cannot be honoured raises a ValueError. :func:`run_fit` and
:func:`run_covariance` then bind the structure once and return one
:class:`hcl_stats._estimation.fit.HCLFitResult`. See ``docs/estimation.md`` and
``docs/large-data.md``.

Data with missing values (NaN) are fitted on the covariance path, on NumPy, from their
pairwise covariance (:mod:`hcl_stats._statistics.missing`) and its joint sample counts; see
``docs/input.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcl_stats._estimation.compressed import row_spaces
from hcl_stats._estimation.fit import fit_hcl
from hcl_stats._estimation.reduced import fit_hcl_reduced
from hcl_stats._estimation.selection import select_structure
from hcl_stats._input.validation import check_structure
from hcl_stats._numerics.backend import (
    get_namespace,
    is_dask_array,
    is_numpy,
    namespace_for,
    to_numpy,
)
from hcl_stats._numerics.linalg import serial_blas
from hcl_stats._statistics.chunked import column_moments, covariance_statistics
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._statistics.missing import pair_covariances
from hcl_stats._statistics.scaling import ScaledBlock, feature_scales
from hcl_stats._structure import modality_description, row_slices

__all__ = ["FitPlan", "auto_path", "compresses", "plan_fit", "plan_from_covariance",
           "resolve_denoise", "resolve_scale", "run_covariance", "run_fit"]

# path="auto" avoids a float64 covariance above this size (bytes) when it exceeds the data
_COVARIANCE_BYTES = 2 ** 28
# ... and whenever d >= _WIDE_FEATURES and d > _WIDE_RATIO * n (the reduced path is then
# much faster: O(n d q) per pass against O(n d^2) for the covariance alone)
_WIDE_FEATURES = 4000
_WIDE_RATIO = 4
# the covariance of data with n d^2 at most this (a few milliseconds of one core) is computed
# on one BLAS thread
_SERIAL_COVARIANCE = 2 ** 25
# _rescaled_own works on row blocks of about this many bytes (in cache)
_RESCALE_CHUNK_BYTES = 2 ** 20


@dataclass(frozen=True)
class FitPlan:
    """How one fit runs: the path and the array namespace of the ``d x d`` work."""

    path: str  #: "covariance" or "reduced"
    xp: Any  #: namespace of the covariance and the solver (NumPy, CuPy, ...)
    on_host: bool  #: whether the data statistics are computed by NumPy (chunked for lazy input)
    #: whether the blocks are in-memory NumPy arrays already found finite and complete
    checked: bool = False


def _is_device(block):
    return not isinstance(block, np.ndarray) and not is_dask_array(block)


def _itemsize(block):
    if isinstance(block, np.ndarray) or is_dask_array(block):
        return block.dtype.itemsize
    return 4 if block.dtype == get_namespace(block).float32 else 8


def _wide(blocks):
    """Whether the features clearly outnumber the samples (the "wide" rule of ``auto``)."""
    n, d = blocks[0].shape[0], sum(b.shape[1] for b in blocks)
    return d >= _WIDE_FEATURES and d > _WIDE_RATIO * n


def auto_path(blocks):
    """``path="auto"`` on NumPy input: ``"reduced"`` for wide data or a too large covariance."""
    d = sum(b.shape[1] for b in blocks)
    data_bytes = sum(b.shape[0] * b.shape[1] * _itemsize(b) for b in blocks)
    too_large = 8 * d * d > max(_COVARIANCE_BYTES, data_bytes)
    return "reduced" if _wide(blocks) or too_large else "covariance"


def compresses(params):
    """Whether the noise rule allows the exact compression of a selected structure's fit
    (:mod:`hcl_stats._estimation.compressed`): per-modality noise; per-feature noise
    (``"diagonal"``) moves the solution out of the data's row spaces."""
    denoise = resolve_denoise(params)
    return not (isinstance(denoise, str) and denoise == "diagonal")


def _compression_halves(blocks):
    """Whether the exact compression to the row spaces at least halves the problem:
    ``sum_m min(p_m, n - 1) <= d / 2`` (modalities with more features than samples)."""
    n = blocks[0].shape[0]
    widths = [b.shape[1] for b in blocks]
    return 2 * sum(min(p, n - 1) for p in widths) <= sum(widths)


def _auto_selected_path(params, blocks):
    """``path="auto"`` with ``structure="auto"`` on complete in-memory NumPy blocks:
    ``"reduced"`` (the compressed selection and fit, exact) where the compression at least
    halves the problem and the options allow it, ``"covariance"`` otherwise."""
    in_memory = all(type(b) is np.ndarray for b in blocks)
    ok = in_memory and compresses(params) and params["objective"] == "least_squares"
    return "reduced" if ok and _compression_halves(blocks) else "covariance"


_NUMPY_ONLY = {"subspace": "scipy's trust-region Newton",
               "growing": "its restricted problems are NumPy arrays"}


def _check_solver(params, xp):
    solver = params["solver"]
    if solver in _NUMPY_ONLY and not is_numpy(xp):
        raise ValueError(f"solver={solver!r} runs on NumPy only ({_NUMPY_ONLY[solver]}); "
                         f"use solver='lbfgs' or 'auto' on the {xp.__name__} namespace, or "
                         "backend='numpy'")


def _check_missing(params, xp, path):
    """Raise ValueError for what a fit of data with missing values cannot do."""
    if path == "reduced":
        raise ValueError("the data have missing values (NaN), which are fitted from their "
                         "pairwise covariance: use path='covariance' (path='auto' takes it)")
    if params["objective"] == "likelihood":
        raise ValueError("objective='likelihood' is not supported with missing values (NaN): "
                         "the pairwise covariance they are fitted from is not the statistic "
                         "of a likelihood; use objective='least_squares'")
    if not is_numpy(xp):
        raise ValueError(f"missing values (NaN) are supported on NumPy only; the fit would "
                         f"run on {xp.__name__}: pass backend='numpy'")


def plan_fit(params, blocks, complete=True, checked=False):
    """The :class:`FitPlan` of ``fit`` on checked ``params`` and (unread) blocks.

    ``complete``: whether the in-memory blocks were found without missing values (those
    of memmaps and Dask arrays are found by the statistics, which :func:`run_fit` then
    checks likewise). ``checked``: whether every block's values were read and found
    finite and complete (``Blocks.checked``), so that the statistics skip their checks.
    """
    lazy = any(is_dask_array(b) or isinstance(b, np.memmap) for b in blocks)
    dask = any(is_dask_array(b) for b in blocks)
    # lazy input: the statistics are chunked on the host and the solver may move
    xp = namespace_for(params["backend"], *([np.empty(0)] if lazy else blocks))
    _check_solver(params, xp)
    path = params["path"]
    selecting = isinstance(params["structure"], str)
    if path == "reduced":
        if selecting and (lazy or not all(type(b) is np.ndarray for b in blocks)):
            raise ValueError("path='reduced' with structure='auto' compresses in-memory "
                             "arrays; memmaps and Dask input go through path='covariance'")
        if dask:
            raise ValueError("path='reduced' takes NumPy arrays or memmaps; Dask input "
                             "goes through path='covariance'")
        if not is_numpy(xp):
            raise ValueError(f"path='reduced' runs on NumPy arrays; the input would run on "
                             f"{xp.__name__}: pass backend='numpy' to copy it to the host, "
                             "or use path='covariance'")
    elif path == "auto":
        covariance = dask or not is_numpy(xp) or not complete
        path = "covariance" if covariance else \
            _auto_selected_path(params, blocks) if selecting else auto_path(blocks)
    if not complete:
        _check_missing(params, xp, path)
    return FitPlan(path=path, xp=xp, on_host=lazy or is_numpy(xp),
                   checked=bool(checked) and not lazy)


def plan_from_covariance(params, S):
    """The :class:`FitPlan` of ``fit_from_covariance``: the covariance path."""
    if params["path"] == "reduced":
        raise ValueError("path='reduced' needs the data; fit_from_covariance is the "
                         "covariance path")
    xp = namespace_for(params["backend"], S)
    _check_solver(params, xp)
    return FitPlan(path="covariance", xp=xp, on_host=is_numpy(xp))


def _rescaled_pairs(pairs, factors, n_features):
    """The pair covariances rescaled as the covariance is (``factors``; see :func:`_rescaled`)."""
    if not pairs or factors is None:
        return pairs
    rows = row_slices(n_features)
    return {(a, b): _rescaled(C, np.concatenate([factors[rows[a]], factors[rows[b]]]), np)
            for (a, b), C in pairs.items()}


def _bind_structure(params, n_features, names, S=None, n_samples=None, joint_counts=None,
                    pairs=None, checked=False):
    """The structure bound to the data, and for ``"auto"`` the selection's
    :class:`hcl_stats._estimation.selection.SelectionResult` (None for a given structure).

    With ``joint_counts`` (missing values) the structure, given or selected, is also
    checked against the observation pattern (:func:`check_structure`). ``checked``: ``S``
    is a finite, exactly symmetric float64 NumPy array, which the selection then reads
    without checking it.
    """
    structure, selection = params["structure"], None
    if isinstance(structure, str):  # "auto": selected from the host covariance
        selection = select_structure(
            np.asarray(to_numpy(S), dtype=float), n_features, n_samples=n_samples,
            max_rank=params["max_rank"], names=names, strength=params["strength"],
            max_components=params["max_components"],
            joint_counts=_selection_counts(joint_counts, names), pair_covariances=pairs,
            check_input=not checked)
        structure = selection.structure
        if joint_counts is None:
            return structure, selection
    return check_structure(structure, n_features, names, n_samples, joint_counts), selection


def _selection_counts(joint_counts, names):
    """The joint counts the selection's tests take with missing values (each test the
    samples behind the covariance blocks it reads), checked: every pair of modalities
    observed together in at least 3 samples."""
    if joint_counts is None:
        return None
    m, l = np.unravel_index(int(np.argmin(joint_counts)), joint_counts.shape)
    smallest = int(joint_counts[m, l])
    if smallest < 3:
        pair = modality_description(m, names) if m == l else \
            f"{modality_description(m, names)} and {modality_description(l, names)}"
        raise ValueError(f"structure='auto' selects from the pairwise covariance and needs "
                         f"3 samples observing each pair of modalities, but {pair} are "
                         f"observed together in {smallest}: give the structure")
    return joint_counts


def _missing_kwargs(joint_counts, n_samples):
    """Extra keyword arguments of ``fit_hcl`` for data with missing values
    (``joint_counts`` not None)."""
    if joint_counts is None:
        return {}
    # each covariance block weighs by the samples behind it (docs/estimation.md, section 10)
    return {"block_weights": np.asarray(joint_counts, dtype=np.float64) / float(n_samples)}


def _device_blocks(xp, blocks, names):
    """The in-memory blocks in namespace ``xp``, each checked finite (naming its modality)."""
    moved = []
    for m, b in enumerate(blocks):
        b = xp.asarray(b)
        if not bool(xp.all(xp.isfinite(b))):
            if bool(xp.any(xp.isnan(b))):
                raise ValueError(f"{modality_description(m, names)} contains missing values "
                                 f"(NaN), which are supported on NumPy only; the fit would "
                                 f"run on {xp.__name__}: pass backend='numpy'")
            raise ValueError(f"{modality_description(m, names)} contains infinite values; "
                             "check the data's units or scale before fitting")
        moved.append(b)
    return moved


def _statistics(plan, blocks, names):
    """Covariance (in ``plan.xp``), means, sample count and joint counts (None for complete
    data) of the blocks."""
    if plan.on_host:
        # arrays of other namespaces copied to NumPy; finiteness is checked per modality
        # by the chunked statistics, which name it
        blocks = [to_numpy(b) if _is_device(b) else b for b in blocks]
        with serial_blas() if _small_statistics(plan, blocks) else contextlib.nullcontext():
            return covariance_statistics(blocks, names, missing="allow", checked=plan.checked)
    return (*sample_covariance(_device_blocks(plan.xp, blocks, names)), None)


def _small_statistics(plan, blocks):
    """Whether the statistics run on one BLAS thread: a small product on the host, where
    waking (and, on a busy machine, the spinning of) a thread pool costs more than it."""
    n, d = blocks[0].shape[0], sum(b.shape[1] for b in blocks)
    return plan.on_host and n * d * d <= _SERIAL_COVARIANCE


def resolve_scale(params):
    """The ``scale`` rule of a fit: ``"auto"`` is ``"modality"`` when the structure is
    selected and ``None`` (the data's units) when it is given."""
    scale = params["scale"]
    if isinstance(scale, str) and scale == "auto":
        return "modality" if isinstance(params["structure"], str) else None
    return scale


def resolve_denoise(params):
    """The noise rule of a fit: ``"auto"`` is ``"modality"`` when the ``scale`` rule
    (:func:`resolve_scale`) rescales the data and ``"isotropic"`` (the paper's rule) when
    the fit is in the data's units; any other value is returned as checked.

    After ``scale="modality"`` each modality has unit total variance, so a modality of
    ``p_m`` features has noise of order ``1 / p_m`` per feature: the noise differs between
    modalities by construction and one pooled variance cannot fit them all, whereas one
    variance per modality is unaffected by the rescaling. ``scale="features"`` gives every
    feature unit variance, and the noise share still differs between modalities.
    """
    denoise = params["denoise"]
    if isinstance(denoise, str) and denoise == "auto":
        return "modality" if resolve_scale(params) is not None else "isotropic"
    return denoise


def _rescaled(S, factors, xp):
    """``D^{-1/2} S D^{-1/2}`` in the namespace of ``S`` (``S`` itself without factors)."""
    if factors is None:
        return S
    r = 1.0 / np.sqrt(factors)
    if is_numpy(xp):
        out = np.multiply(np.asarray(S, dtype=np.float64), r[:, None])
        out *= r[None, :]  # (the product's two roundings, in one new array)
        return out
    rx = xp.asarray(r, dtype=S.dtype, device=getattr(S, "device", None))
    return S * rx[:, None] * rx[None, :]


def _rescaled_own(S, factors, selecting):
    """The package's own float64 covariance ``S`` (exactly symmetric, as its statistics
    compute it) rescaled in place as :func:`_rescaled` rescales it, and, when
    ``selecting``, the matrix the structure selection reads (else None): the rescaled
    ``S`` symmetrised as :func:`hcl_stats._input.validation.check_covariance`
    symmetrises it (the rounding of the rescaling leaves entries ``(i, j)`` and ``(j, i)``
    an ulp apart), in the same bits and without reading a transpose, since entry
    ``(j, i)`` is ``(S_ij r_j) r_i``. The same elementwise operations, a few rows at a
    time (so that they run in cache: two passes over memory rather than seven)."""
    if factors is None:
        return S, S if selecting else None
    r = 1.0 / np.sqrt(factors)
    T = np.empty_like(S) if selecting else None
    step = max(1, _RESCALE_CHUNK_BYTES // (8 * S.shape[1]))
    for start in range(0, S.shape[0], step):
        rows = slice(start, start + step)
        Si = S[rows]
        if selecting:
            Ti = np.multiply(Si, r[None, :], out=T[rows])
            Ti *= r[rows, None]  # the rescaled S, transposed
        Si *= r[rows, None]
        Si *= r[None, :]  # the rescaled S
        if selecting:  # its asymmetry, halved and taken off (check_covariance)
            np.subtract(Si, Ti, out=Ti)
            Ti *= 0.5
            np.subtract(Si, Ti, out=Ti)
    return S, T


def _in_data_units(result, factors, n_features, means, total_variance, objective, n_samples):
    """The result of a fit on rescaled data, in the data's units: loadings ``D^{1/2} W``,
    noise ``D Psi`` (one value per modality when the fit had one per modality and ``D`` is
    constant on each modality, as for ``scale="modality"``; one per feature otherwise), the
    data's means and traces, and for ``objective="likelihood"`` the log-likelihood of the
    data (that of the rescaled data minus ``n/2 log det D``)."""
    if factors is None:
        return result
    root = np.sqrt(factors)[:, None]
    fitted = np.asarray(result.noise_variance, dtype=np.float64)
    per_modality = fitted.shape[0] == len(n_features)
    noise = (np.repeat(fitted, np.asarray(n_features)) if per_modality else fitted) * factors
    rows = row_slices(n_features)
    if per_modality and all(np.all(factors[r] == factors[r][0]) for r in rows):
        noise = np.array([noise[r][0] if r.stop > r.start else 0.0 for r in rows])
    f = result.objective
    if objective == "likelihood":
        f = f - 0.5 * n_samples * float(np.sum(np.log(factors)))
    return dataclasses.replace(
        result, loadings=result.loadings * root, init_loadings=result.init_loadings * root,
        noise_variance=noise, means=tuple(np.asarray(mu, dtype=np.float64) for mu in means),
        total_variance=np.asarray(total_variance, dtype=np.float64), objective=float(f))


def run_covariance(params, plan, S, means, n_samples, n_features, names, bound=None,
                   joint_counts=None, pairs=None, own=False):
    """Covariance path: fit ``S``; returns ``(result, structure, selection, joint_counts)``.

    ``bound``: the ``(structure, selection)`` already bound by the caller, else bound here.
    ``joint_counts``: the (M, M) samples observing each modality and each pair when the
    data have missing values (``S`` is then their pairwise covariance), else None.
    ``pairs``: with missing values, the covariance of each pair of modalities from the
    samples observing both (:func:`hcl_stats._statistics.missing.pair_covariances`), for
    the selection's pair tests. ``own``: ``S`` is the covariance the package computed
    for this fit (float64 NumPy, finite, exactly symmetric, nobody else's), which is then
    rescaled in place and read by the selection without a check (:func:`_rescaled_own`).
    The structure is selected on, and the model fitted to, ``S`` rescaled by the ``scale``
    rule; the result is reported in the data's units.
    """
    if joint_counts is not None:  # missing values found by the statistics
        _check_missing(params, plan.xp, "covariance")
    fit_kwargs = _missing_kwargs(joint_counts, n_samples)
    S_fit = plan.xp.asarray(S) if not is_numpy(plan.xp) else np.asarray(to_numpy(S))
    diag = np.diagonal(np.asarray(to_numpy(S), dtype=np.float64)).copy()
    factors = feature_scales(diag, n_features, resolve_scale(params))
    own = own and is_numpy(plan.xp) and S_fit.dtype == np.float64
    selecting = isinstance(params["structure"], str)
    S_fit, S_select = _rescaled_own(S_fit, factors, selecting) if own else \
        (_rescaled(S_fit, factors, plan.xp), None)
    if bound is None or joint_counts is not None:
        # (a structure bound before the data were read is checked again with the joint
        # counts, which the statistics give)
        bound = _bind_structure(params, n_features, names,
                                S_fit if S_select is None else S_select, n_samples,
                                joint_counts, _rescaled_pairs(pairs, factors, n_features),
                                checked=S_select is not None)
    del S_select
    structure, selection = bound
    # the selection decomposed each modality's block of (a symmetrised copy of) S_fit
    known = selection.modality_eigenvalues or None if selection is not None else None
    result = fit_hcl(S_fit, n_features, structure,
                     denoise=resolve_denoise(params), solver=params["solver"],
                     max_iter=params["max_iter"], tol=params["tol"],
                     random_state=params["random_state"], means=to_numpy(means),
                     objective=params["objective"], n_samples=n_samples,
                     modality_eigenvalues=known, **fit_kwargs)
    rows = row_slices(n_features)
    means = np.asarray(to_numpy(means), dtype=np.float64).reshape(-1)
    result = _in_data_units(result, factors, n_features, [means[r] for r in rows],
                            [diag[r].sum() for r in rows], params["objective"], n_samples)
    if params["objective"] == "least_squares" and isinstance(resolve_denoise(params), str) \
            and resolve_denoise(params) == "modality":
        result = _noise_only_modalities(result, structure, n_features)
    return result, structure, selection, joint_counts


def _mean_within(total, p):
    """``total / p``, lowered by the last bits where needed so that ``p`` copies of it add
    up (as ``np.sum`` adds them) to no more than ``total``."""
    value = float(total) / p
    while value > 0 and float(np.sum(np.full(p, value))) > total:
        value = float(np.nextafter(value, 0.0))
    return value


def _noise_only_modalities(result, structure, n_features):
    """The per-modality noise of a modality without factors, in the data's units.

    Under ``denoise="modality"`` its noise variance is the mean of all its eigenvalues,
    ``trace(S_mm) / p_m``; computed in the fit's (rescaled) units and brought back, it can
    exceed that by a rounding error, which would report more noise than variance. It is set
    to the mean in the data's units (:func:`_mean_within`)."""
    empty = [m for m in range(len(n_features)) if structure.modality_rank(m) == 0]
    noise = np.asarray(result.noise_variance, dtype=np.float64)
    if not empty or noise.shape != (len(n_features),):
        return result
    noise = noise.copy()
    for m in empty:
        noise[m] = _mean_within(result.total_variance[m], int(n_features[m]))
    return dataclasses.replace(result, noise_variance=noise)


def run_fit(params, plan, blocks, names):
    """Run ``plan`` on the blocks; returns ``(result, structure, selection,
    joint_counts)`` (``joint_counts``: see :func:`run_covariance`)."""
    n_features = [b.shape[1] for b in blocks]
    if plan.path == "reduced" and isinstance(params["structure"], str):
        return _run_compressed(params, blocks, names)
    # a given structure is bound before any value is read; "auto" needs the covariance
    bound = None if isinstance(params["structure"], str) else \
        _bind_structure(params, n_features, names, n_samples=blocks[0].shape[0])
    if plan.path == "covariance":
        with contextlib.ExitStack() as serial:
            if _small_statistics(plan, blocks):
                # statistics, selection and fit (which run on one BLAS thread in any case)
                # in one context: each entry and exit of one costs more than a small stage
                serial.enter_context(serial_blas())
            S, means, n, joint_counts = _statistics(plan, blocks, names)
            pairs = None
            if joint_counts is not None and bound is None and all(
                    type(b) is np.ndarray for b in blocks):  # in-memory data: pair statistics
                serial.close()  # (with the threads they had before)
                pairs = pair_covariances(blocks)
            return run_covariance(params, plan, S, means, n, n_features, names, bound,
                                  joint_counts, pairs, own=True)
    structure, selection = bound
    blocks = [to_numpy(b) if _is_device(b) else b for b in blocks]
    return _run_reduced(params, blocks, names, structure, selection)


def _scaled_views(params, blocks, names):
    """The blocks read through column-scaled views (no copy of the data) by the ``scale``
    rule, and ``(factors, means, variances)`` of the unscaled data (None without a
    rescaling)."""
    if resolve_scale(params) is None:
        return blocks, None
    n_features = [b.shape[1] for b in blocks]
    means, variances = column_moments(blocks, names)
    factors = feature_scales(np.concatenate(variances), n_features, resolve_scale(params))
    r = 1.0 / np.sqrt(factors)
    views = [ScaledBlock(b, r[rows]) for b, rows in zip(blocks, row_slices(n_features))]
    return views, (factors, means, variances)


def _run_reduced(params, blocks, names, structure, selection, spaces=None, scaled=None):
    """The reduced-path fit of ``structure`` (on the scaled views ``scaled`` when given,
    from :func:`_scaled_views`; with the exact row spaces ``spaces`` of those views when
    given), in the data's units."""
    n_features = [b.shape[1] for b in blocks]
    views, moments = _scaled_views(params, blocks, names) if scaled is None else scaled
    result = fit_hcl_reduced(
        views, structure, names=names, denoise=resolve_denoise(params), solver=params["solver"],
        max_iter=params["max_iter"], tol=params["tol"],
        n_oversamples=params["n_oversamples"], n_power_iter=params["n_power_iter"],
        max_expansions=params["max_expansions"], random_state=params["random_state"],
        objective=params["objective"], row_spaces=spaces)
    if moments is not None:
        factors, means, variances = moments
        result = _in_data_units(result, factors, n_features, means,
                                [v.sum() for v in variances], params["objective"],
                                blocks[0].shape[0])
    return result, structure, selection, None


def _run_compressed(params, blocks, names):
    """``structure="auto"`` on the reduced path: the data compressed exactly to their row
    spaces (:func:`hcl_stats._estimation.compressed.row_spaces`), the structure selected
    from the small covariance ``T`` with the nominal widths, then the reduced-path fit
    with the same bases. Never forms the ``d x d`` covariance."""
    n, n_features = blocks[0].shape[0], [b.shape[1] for b in blocks]
    # all on one BLAS thread, so that T, and the decisions the selection takes on it, do
    # not depend on the thread count (O(n^2 d) work: thin products)
    with serial_blas():
        scaled = _scaled_views(params, blocks, names)
        moments = scaled[1]
        if moments is None:
            means, weights = column_moments(blocks, names)[0], None
        else:
            factors, means, _ = moments
            r = 1.0 / np.sqrt(factors)  # (the weights of the views)
            weights = [r[rows] for rows in row_slices(n_features)]
        spaces = row_spaces(blocks, means, weights)
        selection = select_structure(
            spaces.T, n_features, n_samples=n, max_rank=params["max_rank"], names=names,
            strength=params["strength"], max_components=params["max_components"],
            check_input=False, n_coordinates=spaces.sizes)
        structure = check_structure(selection.structure, n_features, names, n)
        result, structure, selection, _ = _run_reduced(params, blocks, names, structure,
                                                       selection, spaces, scaled)
    if params["objective"] == "least_squares" and isinstance(resolve_denoise(params), str) \
            and resolve_denoise(params) == "modality":
        result = _noise_only_modalities(result, structure, n_features)
    return result, structure, selection, None
