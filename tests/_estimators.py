"""Every estimator of the package, built for a given structure (discovered automatically).

Estimators are configured by the package's own mapping from a structure to each estimator
(``hcl_stats.baselines.matched_estimator``), so the tests build them exactly as the
comparisons do; new baselines exported from hcl_stats.baselines are picked up without
touching the tests.
"""

import inspect

from hcl_stats import HCL, Structure, baselines
from hcl_stats.baselines import matched_estimator


def all_estimator_classes():
    classes = [HCL]
    for name in sorted(getattr(baselines, "__all__", [])):
        obj = getattr(baselines, name)
        if inspect.isclass(obj):
            classes.append(obj)
    return classes


def build(cls, structure: Structure, **options):
    """An instance of ``cls`` for ``structure``, as ``matched_estimator`` configures it."""
    return matched_estimator(cls.__name__, structure, **options)
