"""Sample covariance of in-memory blocks, in their own array namespace."""

from __future__ import annotations

import numpy as np
from array_api_compat import device as array_device

from hcl_stats._numerics.backend import (
    get_namespace,
    is_numpy,
    real_float_dtype,
    to_numpy,
)


def sample_covariance(blocks):
    """Unbiased sample covariance of the column-stacked, centred blocks.

    Blocks of any one array-API namespace (NumPy, CuPy, ...); the covariance stays in it.
    Returns ``(S, means, n_samples)`` with ``means`` as NumPy; the caller's arrays are not
    modified.
    """
    xp = get_namespace(*blocks)
    if is_numpy(xp):
        X = np.hstack([np.asarray(b, dtype=np.float64) for b in blocks])
    else:
        dtype = real_float_dtype(xp, array_device(blocks[0]))
        X = xp.concat([xp.astype(b, dtype) for b in blocks], axis=1)
    n = X.shape[0]
    means = xp.mean(X, axis=0)
    Xc = X - means
    S = Xc.T @ Xc
    S = S / (n - 1)
    return S, np.asarray(to_numpy(means), dtype=float), n
