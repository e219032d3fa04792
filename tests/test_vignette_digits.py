"""The digits vignette against quantities computed here: scikit-learn PCA probes, numpy
variances and eigenvalues, and the Eckart-Young bound on its objective."""

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

VIGNETTE = Path(__file__).resolve().parents[1] / "vignettes" / "digits.py"


@pytest.fixture(scope="module")
def vignette(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HCL_VIGNETTE_OUT", str(out))
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("HCL_VIGNETTE_SMALL", "1")  # 3 probe folds instead of 5
        g = runpy.run_path(str(VIGNETTE), run_name="__main__")
    return g, out


def _pca_probe(X, y, K, n_folds, seed):
    """Held-out accuracy of the vignette's probe on scikit-learn PCA scores (fitted on
    the training folds only)."""
    pixels = np.hstack(list(X.values()))
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    accuracies = []
    for train, test in folds.split(pixels, y):
        pca = PCA(K).fit(pixels[train])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
        probe.fit(pca.transform(pixels[train]), y[train])
        accuracies.append(probe.score(pca.transform(pixels[test]), y[test]))
    return float(np.mean(accuracies))


def test_concat_svd_probe_equals_scikit_learn_pca_probe(vignette):
    """ConcatSVD's posterior-mean scores are a per-column rescaling of the PCA scores, which
    the probe's standardisation removes: the accuracies must agree."""
    g, _ = vignette
    probes = g["probes"]
    expected = _pca_probe(g["X"], g["labels"], 15, g["N_FOLDS"], g["SEED"])
    assert probes.loc["ConcatSVD", "accuracy"] == pytest.approx(expected, abs=2e-3)
    assert probes.loc["HCL", "dimension"] == probes.loc["ConcatSVD", "dimension"] == 15
    assert probes.loc["raw pixels", "dimension"] == 64
    # ten balanced classes: chance is 0.1; 15 linear features of digits carry far more
    assert probes.loc["HCL", "accuracy"] > 0.85
    assert probes.loc["raw pixels", "accuracy"] > 0.9


def test_variance_table_against_numpy(vignette):
    """Totals are the quadrants' pixel variances; the noise is p_m times the mean of the
    d - K smallest eigenvalues of the 64-pixel covariance (the isotropic rule)."""
    g, _ = vignette
    model, X = g["model"], g["X"]
    table = model.explained_variance()
    pixels = np.hstack(list(X.values()))
    evals = np.linalg.eigvalsh(np.cov(pixels, rowvar=False))
    K = model.structure_.n_components
    sigma2 = evals[:pixels.shape[1] - K].mean()
    for name, x in X.items():
        assert table.loc[name, "total"] == pytest.approx(x.var(axis=0, ddof=1).sum())
        assert table.loc[name, "noise"] == pytest.approx(x.shape[1] * sigma2)
    fractions = g["fractions"]
    assert list(fractions.index) == ["TL", "TR", "BL", "BR"]
    assert model.structure_.n_components == 15


def test_objective_within_eckart_young_bounds(vignette):
    """The structured fit cannot beat the best rank-15 approximation of the denoised
    covariance (computed here by numpy) and must beat W = 0."""
    g, _ = vignette
    model = g["model"]
    pixels = np.hstack(list(g["X"].values()))
    S_W = np.cov(pixels, rowvar=False) - model.noise_variance_[0] * np.eye(64)
    lam = np.linalg.eigvalsh(S_W)[::-1]
    best = 0.5 * (np.sum(lam ** 2) - np.sum(np.clip(lam[:15], 0, None) ** 2))
    assert best * (1 - 1e-9) <= model.objective_ < 0.5 * np.sum(lam ** 2)
    W = model.loadings_
    assert 0.5 * np.linalg.norm(W @ W.T - S_W) ** 2 == pytest.approx(model.objective_,
                                                                    rel=1e-6)


def test_figure_and_reproducible_probes(vignette):
    g, out = vignette
    figure = out / "digits_block_loadings.png"
    assert figure.exists() and figure.stat().st_size > 10_000
    # same seeds, same table, to the last digit
    again = g["probe_accuracies"](g["X"], g["labels"], g["structure"])
    pd.testing.assert_frame_equal(g["probes"], again, check_exact=True)
