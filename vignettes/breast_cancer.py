# %% [markdown]
# # Breast cancer: three summaries of the same nuclei
#
# scikit-learn's Wisconsin breast-cancer data (569 biopsies, no download) measure ten
# properties of the cell nuclei in an image (radius, texture, perimeter, area, ...), each
# summarised three ways: the **mean** over the nuclei, its **standard error** and the
# **worst** (largest) value. Those are three modalities on the same samples. Which
# factors do they share? `HCL()` answers with its defaults: no structure is given.
#
# Run: `python vignettes/breast_cancer.py` (seconds; figures go to `$HCL_VIGNETTE_OUT` or
# `results/`).

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from hcl_stats import HCL  # noqa: E402
from hcl_stats.datasets import load_breast_cancer_modalities  # noqa: E402
from hcl_stats.plotting import plot_structure, plot_variance_explained  # noqa: E402
from hcl_stats.selection import structure_stability  # noqa: E402
from simulations.real_data import probe_accuracies  # noqa: E402

SMALL = bool(os.environ.get("HCL_VIGNETTE_SMALL"))  # the test suite's quick mode
OUT = os.environ.get("HCL_VIGNETTE_OUT", "results")
os.makedirs(OUT, exist_ok=True)

data = load_breast_cancer_modalities()
X, y = data.views, data.target
print({name: x.shape for name, x in X.items()})

# %% [markdown]
# ## The structure `HCL()` finds
#
# `HCL()` weights each modality to unit total variance (`scale="modality"`) and keeps the
# features' units inside it; loadings, noise and tables are reported in the data's units.
# Here the features are in very different units (areas in hundreds of square pixels,
# smoothness around 0.1), so the areas dominate each modality's spectrum; the second fit
# standardises every feature (`scale="features"`) and finds more factors.

# %%
t0 = time.perf_counter()
model = HCL().fit(X)
fit_seconds = time.perf_counter() - t0
Xcat = np.hstack(list(X.values()))
t0 = time.perf_counter()
PCA(model.n_components_, random_state=0).fit(Xcat)
pca_seconds = time.perf_counter() - t0
print(model.structure_)
print(f"converged: {model.converged_}; fit {fit_seconds:.3f} s, PCA of the concatenated "
      f"data at the same dimension {pca_seconds:.3f} s (same run)")
standardised = HCL(scale="features").fit(X)
print(f"scale='features': {standardised.structure_}")

# %% [markdown]
# How each modality's variance splits over the structures (shares of its total):

# %%
fractions = model.explained_variance(fraction=True)
with pd.option_context("display.width", 160):
    print(fractions.round(3))

# %% [markdown]
# ## Is the structure stable?
#
# The selection is repeated on random subsamples of 80% of the biopsies; the frequency of
# each subset is drawn next to the structure.

# %%
stability = structure_stability(X, n_resamples=5 if SMALL else 20, loadings=False,
                                random_state=0)
print(stability.subsets[["subset", "rank_full", "frequency"]].to_string(index=False))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_structure(model, stability=stability, ax=axes[0])
plot_variance_explained(model, ax=axes[1])
fig.tight_layout()
figure_path = os.path.join(OUT, "breast_cancer_structure.png")
fig.savefig(figure_path, dpi=100)
plt.close(fig)
print(f"figure: {figure_path}")

# %% [markdown]
# ## Frozen linear probes at the same dimension
#
# Does the structured representation keep what matters? Each factor model is fitted on
# the training folds only, its scores are frozen, and a logistic regression on them
# predicts malignancy on the held-out fold. `HCL()` selects its structure on each training
# fold (the selection is part of the fit), and the other methods get that fold's number of
# factors (JIVE: its ranks per modality).

# %%
probes = probe_accuracies(X, y, "auto", folds=3 if SMALL else 5)
print(probes.drop(columns="error").round(3))
