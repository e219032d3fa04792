"""Build any estimator of a comparison from the structure it is compared on.

:data:`CONFIGURATIONS` is the one mapping from a :class:`~hcl_stats.Structure` to each
estimator's constructor arguments; :func:`matched_estimator` and the package's tests use
it (docs/baselines.md).
"""

from __future__ import annotations

from hcl_stats._hcl import HCL
from hcl_stats._structure import Structure
from hcl_stats.baselines._ajive import AJIVE
from hcl_stats.baselines._concat_svd import ConcatSVD
from hcl_stats.baselines._jive import JIVE
from hcl_stats.baselines._slide import SLIDE

__all__ = ["CONFIGURATIONS", "ESTIMATORS", "matched_estimator"]


def _joint_individual(structure):
    """The global + specific structure with as many factors per modality as ``structure``.

    The global block keeps its rank (0 without one); each modality's other factors become
    individual ones. The modality names are kept, so the estimator binds it to named data
    by name.
    """
    M = structure.n_modalities
    glob = tuple(range(M))
    joint = structure.rank(glob) if glob in structure else 0
    return Structure.joint_individual(
        joint, [structure.modality_rank(m) - joint for m in range(M)],
        names=structure.modality_names)


#: Estimator name -> (class, function of a Structure giving its constructor arguments).
CONFIGURATIONS = {
    "HCL": (HCL, lambda structure: {"structure": structure}),
    "ConcatSVD": (ConcatSVD, lambda structure: {"n_components": structure.n_components}),
    "JIVE": (JIVE, lambda structure: {"joint_rank": _joint_individual(structure)}),
    "AJIVE": (AJIVE, lambda structure: {"init_signal_ranks": _joint_individual(structure)}),
    "SLIDE": (SLIDE, lambda structure: {"structure": structure}),
}

#: Names accepted by :func:`matched_estimator`, in display order.
ESTIMATORS = tuple(CONFIGURATIONS)


def matched_estimator(name, structure, **options):
    """An unfitted estimator named ``name``, configured for a comparison on ``structure``.

    * ``HCL`` and ``SLIDE`` fit ``structure`` itself;
    * ``ConcatSVD`` uses its total rank ``K``;
    * ``JIVE`` gets a global + specific structure: the global block's rank as joint rank
      (0 when there is none) and each modality's remaining factors as its individual
      rank, so every modality carries as many components as in ``structure`` (partially
      shared factors, which JIVE cannot represent, become individual ones);
    * ``AJIVE`` gets the same structure, whose per-modality ranks are its initial signal
      ranks; it selects the joint rank itself.

    The structures keep ``structure``'s modality names: every estimator binds them to
    named data by name.

    ``options`` are passed to the constructor and override these choices. Any other class
    exported by :mod:`hcl_stats.baselines` is built as ``cls(structure, **options)``; a new
    estimator with another configuration gets its entry in :data:`CONFIGURATIONS`.

    Parameters
    ----------
    name : str
        One of :data:`ESTIMATORS`, or the name of another class of
        :mod:`hcl_stats.baselines`.
    structure : Structure
    **options
        Constructor arguments.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import matched_estimator
    >>> jive = matched_estimator("JIVE", Structure.full(3, rank=2))
    >>> jive.joint_rank
    Structure({0,1,2}: 2, {0}: 6, {1}: 6, {2}: 6; M=3, K=20)
    """
    if name in CONFIGURATIONS:
        cls, configure = CONFIGURATIONS[name]
        return cls(**{**configure(structure), **options})
    # any other class exported by the package: looked up at call time, since the package
    # imports this module (a module-level import would be a cycle)
    from hcl_stats import baselines

    cls = getattr(baselines, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"unknown method {name!r}; choose from {list(ESTIMATORS)}")
    return cls(structure, **options)
