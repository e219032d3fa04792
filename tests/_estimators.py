"""Every estimator of the package, built for a given structure (discovered automatically).

Baselines that take a structure or ranks get the design's; new baselines exported from
hcl_stats.baselines are picked up without touching the tests.
"""

import inspect

from hcl_stats import HCL, Structure, baselines


def all_estimator_classes():
    classes = [HCL]
    for name in sorted(getattr(baselines, "__all__", [])):
        obj = getattr(baselines, name)
        if inspect.isclass(obj):
            classes.append(obj)
    return classes


def build(cls, structure: Structure):
    """An instance of ``cls`` for ``structure``.

    Every estimator takes a Structure as its first argument (HCL, SLIDE: the structure to
    fit; ConcatSVD: its total rank; JIVE, AJIVE: a global + specific structure's ranks).
    """
    return cls(structure)
