"""Array backends: the one place that knows about CuPy.

The numerical core (:mod:`hcl_stats._estimation`) is written against the Python array API standard
through ``array-api-compat``: it takes the namespace ``xp`` of its input arrays and calls
only standard functions on the large (``d x d`` and ``d x K``) arrays, so the same code runs
on NumPy, on CuPy (GPU) and on ``array_api_strict`` (which the tests use to prove that the
core stays inside the standard). ``K x K`` work (initialiser rotations, L-BFGS small
matrices, canonical rotations) is done in NumPy on the host, where it is cheapest.
Fitted attributes always come back as NumPy arrays.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_cupy_namespace, is_numpy_namespace

__all__ = ["BACKENDS", "namespace_for", "get_namespace", "to_numpy", "real_float_dtype",
           "is_numpy", "supports_float64", "is_dask_array"]

BACKENDS = ("auto", "numpy", "cupy")


def get_namespace(*arrays):
    """Array-API namespace of ``arrays`` (NumPy arrays give the compat NumPy namespace)."""
    if all(type(a) is np.ndarray for a in arrays):  # the common case, without the lookup
        return _NUMPY
    return array_namespace(*arrays)


_NUMPY = array_namespace(np.empty(0))


def is_numpy(xp):
    return is_numpy_namespace(xp)


def namespace_for(backend, *arrays):
    """Namespace to compute in, from the ``backend`` parameter and the input arrays.

    ``"auto"``: the namespace of the inputs (NumPy for lists, DataFrames and NumPy arrays,
    CuPy for CuPy arrays). ``"numpy"``: NumPy whatever the inputs. ``"cupy"``: CuPy, which
    must be installed (``pip install hcl_stats[gpu]``) and see a GPU.
    """
    if backend == "auto":
        try:
            return array_namespace(*arrays)
        except TypeError:
            return array_namespace(np.empty(0))
    if backend == "numpy":
        return array_namespace(np.empty(0))
    if backend == "cupy":
        try:
            import cupy
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise ImportError(
                "backend='cupy' needs CuPy: install the 'gpu' extra "
                "(pip install 'hcl_stats[gpu]') on a machine with a CUDA device"
            ) from exc
        return array_namespace(cupy.empty(0))
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def to_numpy(x):
    """Copy an array of any supported namespace to a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    xp = array_namespace(x)
    if is_cupy_namespace(xp):  # pragma: no cover - needs a GPU
        return x.get()
    if is_numpy_namespace(xp):
        return np.asarray(x)
    # other namespaces (array_api_strict, ...): through the buffer protocol / DLPack
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, RuntimeError, BufferError):
        return np.asarray(x)


def supports_float64(xp, device=None):
    """Whether ``xp`` has float64 on ``device`` (Apple MPS-like devices do not)."""
    try:
        info = xp.__array_namespace_info__()
        return "float64" in info.dtypes(kind="real floating", device=device)
    except (AttributeError, TypeError):
        return True


def real_float_dtype(xp, device=None):
    """float64 where the device has it, else float32."""
    return xp.float64 if supports_float64(xp, device) else xp.float32

def is_dask_array(x):
    """Whether ``x`` is a Dask array (checked without importing Dask)."""
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "__dask_graph__")
