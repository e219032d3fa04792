"""
Comparing methods on identical data
===================================

HCL and the baselines share one API, so they can be fitted on the same draw and scored
with the same rotation-invariant metrics. ConcatSVD (the paper's unstructured "SVD") is
always available; JIVE, AJIVE and SLIDE are used when :mod:`hcl_stats.baselines` has them.

Set ``HCL_VIGNETTE_SMALL=1`` for the small configuration the test suite runs.
"""

# %%
import os
import time

import pandas as pd

import hcl_stats.baselines as baselines
from hcl_stats import HCL, Structure
from hcl_stats.baselines import ConcatSVD
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import recovery_table

SMALL = os.environ.get("HCL_VIGNETTE_SMALL") == "1"

# %%
# A global + specific design (the one JIVE and AJIVE assume), moderate noise.
structure = Structure.joint_individual(2, [1, 2, 1])
X, truth = make_hierarchical(400 if SMALL else 3000, [15, 25, 35], structure,
                             noise_variance=0.5, random_state=0, return_truth=True)

# %%
# Fit every available method on the same data
# --------------------------------------------
methods = {"HCL": HCL(structure, random_state=0), "ConcatSVD": ConcatSVD(structure)}
for name in ("JIVE", "AJIVE", "SLIDE"):
    cls = getattr(baselines, name, None)
    if cls is not None and not SMALL:
        try:
            methods[name] = cls(structure)
        except TypeError:  # a different constructor: skip rather than guess
            pass

rows = []
for name, est in methods.items():
    start = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - start
    table = recovery_table(est, truth)
    table["method"] = name
    table["fit_seconds"] = seconds
    rows.append(table)
results = pd.concat(rows, ignore_index=True)

# %%
# Mean block error per level and method (lower is better)
# --------------------------------------------------------
blocks = results[results.level.isin(["global", "partial", "specific"])]
print(blocks.pivot_table(index="level", columns=["metric", "method"], values="value")
      .round(3))
print(results.groupby("method")["fit_seconds"].first().round(3))
