"""Every estimator of the package, built for a given structure (discovered automatically).

Estimators are configured by the package's own mapping from a structure to each estimator
(``hcl_stats.baselines.matched_estimator``), so the tests build them exactly as the
comparisons do; new baselines exported from hcl_stats.baselines are picked up without
touching the tests.
"""

import inspect

import numpy as np

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


def true_model(truth, n_samples=10 ** 6):
    """An HCL whose fitted attributes are the parameters of a simulation's ``truth``
    (zero means, population totals), for checks against the exact model."""
    rows = truth.structure.rows(truth.n_features)
    total = [float(np.sum(truth.W[r] ** 2)) + p * s
             for r, p, s in zip(rows, truth.n_features, truth.noise_variance)]
    model = HCL(truth.structure)
    model._set_fitted(structure=truth.structure, loadings=truth.W,
                      means=[np.zeros(p) for p in truth.n_features],
                      noise_variance=truth.noise_variance, total_variance=total, names=None,
                      n_samples=n_samples)
    return model
