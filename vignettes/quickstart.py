"""
Quickstart: fit a hierarchical multimodal factor model
======================================================

Three modalities measured on the same samples share some latent factors globally, some
pairwise, and each has its own. :class:`hcl_stats.HCL` recovers the loadings of each
(modality, structure) block from the data, given the structure.

Set ``HCL_VIGNETTE_SMALL=1`` for the small configuration the test suite runs.
"""

# %%
# Simulate data with a known structure
# ------------------------------------
# One global block of rank 2, a block shared by modalities 0 and 1, and a specific block
# for modality 2. ``make_hierarchical`` returns the data and, on request, the truth.
import os

from hcl_stats import HCL, Structure
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import recovery_table

SMALL = os.environ.get("HCL_VIGNETTE_SMALL") == "1"
n_samples = 500 if SMALL else 5000
structure = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
X, truth = make_hierarchical(n_samples, [20, 30, 40], structure, noise_variance=0.5,
                             random_state=0, return_truth=True)
print(structure)
print([x.shape for x in X])

# %%
# Fit HCL
# -------
# ``fit`` takes the list of modalities; the loadings are exactly zero outside the
# structure, and each block can be read off with ``block_loadings``.
model = HCL(structure, random_state=0).fit(X)
print("converged:", model.converged_, " noise variance:", model.noise_variance_.round(3))
print("B_{2,{0,1,2}} has shape", model.block_loadings(2, (0, 1, 2)).shape)

# %%
# How much variance does each structure explain in each modality?
print(model.explained_variance(fraction=True).round(3))

# %%
# Recovery against the truth
# --------------------------
# Sin-theta distances between true and estimated block subspaces (0 is perfect) are
# invariant to the rotation each block is only identified up to.
table = recovery_table(model, truth)
print(table[table.metric == "sin_theta"].round(3).to_string(index=False))

# %%
# Scores for new samples (posterior means); a missing modality is passed as ``None``.
Z = model.transform([X[0], None, X[2]])
print("scores:", Z.shape)
