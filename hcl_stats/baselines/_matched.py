"""Build any estimator of a comparison from the structure it is compared on.

:data:`CONFIGURATIONS` is the one mapping from a :class:`~hcl_stats.Structure` to each
estimator's constructor arguments; :func:`matched_estimator` and the package's tests use
it (docs/baselines.md).
"""

from __future__ import annotations

from hcl_stats._hcl import HCL
from hcl_stats.baselines._ajive import AJIVE
from hcl_stats.baselines._concat_svd import ConcatSVD
from hcl_stats.baselines._jive import JIVE
from hcl_stats.baselines._slide import SLIDE

__all__ = ["CONFIGURATIONS", "ESTIMATORS", "matched_estimator"]


def _jive_configuration(structure):
    """Joint rank of the global block (0 without one); each modality's other factors."""
    glob = tuple(range(structure.n_modalities))
    joint = structure.rank(glob) if glob in structure else 0
    return {"joint_rank": joint,
            "individual_ranks": [structure.modality_rank(m) - joint
                                 for m in range(structure.n_modalities)]}


#: Estimator name -> (class, function of a Structure giving its constructor arguments).
CONFIGURATIONS = {
    "HCL": (HCL, lambda structure: {"structure": structure}),
    "ConcatSVD": (ConcatSVD, lambda structure: {"n_components": structure.n_components}),
    "JIVE": (JIVE, _jive_configuration),
    "AJIVE": (AJIVE, lambda structure: {"init_signal_ranks": [
        structure.modality_rank(m) for m in range(structure.n_modalities)]}),
    "SLIDE": (SLIDE, lambda structure: {"structure": structure}),
}

#: Names accepted by :func:`matched_estimator`, in display order.
ESTIMATORS = tuple(CONFIGURATIONS)


def matched_estimator(name, structure, **options):
    """An unfitted estimator named ``name``, configured for a comparison on ``structure``.

    * ``HCL`` and ``SLIDE`` fit ``structure`` itself;
    * ``ConcatSVD`` uses its total rank ``K``;
    * ``JIVE`` gets the global block's rank as joint rank (0 when there is none) and each
      modality's remaining factors as its individual rank, so every modality carries as
      many components as in ``structure`` (partially shared factors, which JIVE cannot
      represent, become individual ones);
    * ``AJIVE`` gets each modality's number of factors as initial signal rank and selects
      the joint rank itself.

    ``options`` are passed to the constructor and override these choices. A new
    estimator becomes available here (and in the package's tests) by adding its entry to
    :data:`CONFIGURATIONS`.

    Parameters
    ----------
    name : str
        One of :data:`ESTIMATORS`.
    structure : Structure
    **options
        Constructor arguments.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import matched_estimator
    >>> jive = matched_estimator("JIVE", Structure.full(3, rank=2))
    >>> jive.joint_rank, jive.individual_ranks
    (2, [6, 6, 6])
    """
    if name not in CONFIGURATIONS:
        raise ValueError(f"unknown method {name!r}; choose from {list(ESTIMATORS)}")
    cls, configure = CONFIGURATIONS[name]
    return cls(**{**configure(structure), **options})
