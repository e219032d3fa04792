"""Build any estimator of a comparison from the structure it is compared on."""

from __future__ import annotations

__all__ = ["ESTIMATORS", "matched_estimator"]

#: Names accepted by :func:`matched_estimator`, in display order.
ESTIMATORS = ("HCL", "ConcatSVD", "JIVE", "AJIVE", "SLIDE")


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

    ``options`` are passed to the constructor and override these choices. Any other class
    exported by :mod:`hcl_stats.baselines` is built as ``cls(structure, **options)``.

    Examples
    --------
    >>> from hcl_stats import Structure
    >>> from hcl_stats.baselines import matched_estimator
    >>> jive = matched_estimator("JIVE", Structure.full(3, rank=2))
    >>> jive.joint_rank, jive.individual_ranks
    (2, [6, 6, 6])
    """
    from hcl_stats import baselines
    from hcl_stats._hcl import HCL
    from hcl_stats.baselines import AJIVE, JIVE, SLIDE, ConcatSVD

    M = structure.n_modalities
    glob = tuple(range(M))
    joint = structure.rank(glob) if glob in structure else 0
    totals = [structure.modality_rank(m) for m in range(M)]
    defaults = {
        "HCL": (HCL, {"structure": structure}),
        "ConcatSVD": (ConcatSVD, {"n_components": structure.n_components}),
        "JIVE": (JIVE, {"joint_rank": joint, "individual_ranks": [t - joint for t in totals]}),
        "AJIVE": (AJIVE, {"init_signal_ranks": totals}),
        "SLIDE": (SLIDE, {"structure": structure}),
    }
    if name not in defaults:
        cls = getattr(baselines, name, None)
        if not isinstance(cls, type):
            raise ValueError(f"unknown method {name!r}; choose from {list(ESTIMATORS)}")
        return cls(structure, **options)
    cls, params = defaults[name]
    return cls(**{**params, **options})
