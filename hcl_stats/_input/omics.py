"""MuData and AnnData input (the ``omics`` extra): modalities, sample labels, feature names.

The objects are recognised by their attributes, so neither ``anndata`` nor ``mudata`` is
imported here: a ``MuData`` gives its modalities by name from ``mod`` and its samples by
``obs_names``; an ``AnnData`` gives its matrix ``X`` (dense or SciPy sparse), sample labels
``obs_names`` and feature names ``var_names``. Scores of a MuData object come in the order
of its ``obs_names``, so ``mdata.obsm[key] = model.transform(mdata)`` stores them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["is_mudata", "is_anndata", "mudata_modalities", "anndata_parts"]


def is_mudata(X):
    """Whether ``X`` looks like a ``mudata.MuData`` (modalities in ``mod``, ``obs_names``)."""
    return (hasattr(X, "obs_names") and isinstance(getattr(X, "mod", None), Mapping)
            and hasattr(X, "obsm"))


def is_anndata(block):
    """Whether ``block`` looks like an ``anndata.AnnData`` (``X``, ``obs_names``, ``var_names``)."""
    return (not is_mudata(block) and hasattr(block, "obs_names")
            and hasattr(block, "var_names") and hasattr(block, "X"))


def mudata_modalities(mdata):
    """``(dict of name -> AnnData, obs_names)`` of a MuData object."""
    mods = dict(mdata.mod)
    if not mods:
        raise ValueError("the MuData object holds no modality (its mod is empty)")
    return mods, pd.Index(np.asarray(mdata.obs_names))


def anndata_parts(adata, where):
    """``(matrix, obs_names, var_names)`` of an AnnData; a sparse ``X`` is made dense."""
    matrix = adata.X
    if matrix is None:
        raise ValueError(f"{where}: the AnnData object has no X matrix")
    if hasattr(matrix, "toarray"):  # SciPy sparse (the model needs dense second moments)
        matrix = matrix.toarray()
    return (np.asarray(matrix), pd.Index(np.asarray(adata.obs_names)),
            pd.Index(np.asarray(adata.var_names)))
