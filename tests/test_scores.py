"""``score``, ``score_samples``, ``aic``, ``bic``, ``denoise="diagonal"`` and
``objective="likelihood"`` on the fitted estimators.

References: scipy's multivariate normal density of ``get_covariance()``, scikit-learn's
FactorAnalysis, simulated per-feature noise, and the least-squares fit on the same data.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from hcl_stats import HCL, Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE, ConcatSVD
from hcl_stats.datasets import make_hierarchical, make_loadings

WIDTHS = [30, 40, 50]


def _hetero(n=3000, seed=0, structure=None):
    structure = Structure.full(3, rank=2) if structure is None else structure
    rng = np.random.default_rng(seed)
    W = make_loadings(WIDTHS, structure, singular_values=(2.0, 4.0), random_state=seed + 1)
    psi = rng.uniform(0.1, 2.0, size=W.shape[0])
    Z = rng.standard_normal((n, W.shape[1]))
    X = Z @ W.T + rng.standard_normal((n, W.shape[0])) * np.sqrt(psi)
    edges = np.concatenate([[0], np.cumsum(WIDTHS)])
    return [X[:, edges[m]:edges[m + 1]] for m in range(3)], W, psi, structure


@pytest.fixture(scope="module")
def data():
    return _hetero()


def _scipy_logpdf(model, X, observed):
    rows = np.concatenate([np.arange(a, b) for (a, b), seen in zip(
        zip(np.r_[0, np.cumsum(WIDTHS)[:-1]], np.cumsum(WIDTHS)), observed) if seen])
    mean = np.concatenate(model.means_)[rows]
    cov = model.get_covariance()[np.ix_(rows, rows)]
    Xo = np.hstack([x for x, seen in zip(X, observed) if seen])
    return multivariate_normal(mean, cov).logpdf(Xo)


@pytest.mark.parametrize("make", [
    lambda st: HCL(st),
    lambda st: HCL(st, denoise="modality"),
    lambda st: HCL(st, denoise="diagonal"),
    lambda st: HCL(st, objective="likelihood", denoise="diagonal"),
    lambda st: ConcatSVD(st),
])
def test_score_samples_is_the_gaussian_density_of_the_fitted_covariance(data, make):
    X, _, _, st = data
    model = make(st).fit(X)
    test = [x[:50] + 0.1 for x in X]
    for observed in ([True, True, True], [True, False, True], [False, True, False]):
        Xin = [x if seen else None for x, seen in zip(test, observed)]
        np.testing.assert_allclose(model.score_samples(Xin),
                                   _scipy_logpdf(model, test, observed), rtol=1e-8)
    assert model.score(test) == pytest.approx(np.mean(_scipy_logpdf(model, test, [1, 1, 1])),
                                              rel=1e-10)


@pytest.mark.parametrize("cls", [JIVE, AJIVE, SLIDE])
def test_data_baselines_score_their_fitted_covariance(data, cls):
    X, _, _, _ = data
    st = Structure.joint_individual(2, [1, 1, 1])
    from hcl_stats.baselines import matched_estimator

    model = matched_estimator(cls.__name__, st).fit(X)
    np.testing.assert_allclose(model.score_samples([x[:20] for x in X]),
                               _scipy_logpdf(model, [x[:20] for x in X], [1, 1, 1]),
                               rtol=1e-8)


def test_aic_bic_follow_their_definitions_with_the_structured_count(data):
    X, _, _, st = data
    n, d = X[0].shape[0], sum(WIDTHS)
    for rule, n_noise in (("isotropic", 1), ("modality", 3), ("diagonal", d)):
        model = HCL(st, denoise=rule).fit(X)
        k = int(st.mask(WIDTHS).sum()) - sum(r * (r - 1) // 2 for r in st.ranks) + n_noise + d
        assert model.n_parameters() == k
        ll = float(np.sum(_scipy_logpdf(model, X, [1, 1, 1])))
        assert model.aic(X) == pytest.approx(-2 * ll + 2 * k, rel=1e-10)
        assert model.bic(X) == pytest.approx(-2 * ll + k * np.log(n), rel=1e-10)


def test_diagonal_noise_shapes_and_variance_table(data):
    X, _, psi_true, st = data
    model = HCL(st, denoise="diagonal").fit(X)
    assert model.noise_variance_.shape == (sum(WIDTHS),)
    assert np.median(np.abs(model.noise_variance_ - psi_true) / psi_true) < 0.1
    table = model.explained_variance()
    edges = np.r_[0, np.cumsum(WIDTHS)]
    np.testing.assert_allclose(
        table["noise"].to_numpy(),
        [psi_true[a:b].sum() for a, b in zip(edges[:-1], edges[1:])], rtol=0.05)
    iso = HCL(st, denoise="modality").fit(X)
    assert iso.noise_variance_.shape == (3,)
    np.testing.assert_array_equal(iso.feature_noise_variance(),
                                  np.repeat(iso.noise_variance_, WIDTHS))


def test_transform_uses_the_per_feature_noise(data):
    X, _, _, st = data
    model = HCL(st, denoise="diagonal").fit(X)
    x = np.hstack(X)[:10] - np.concatenate(model.means_)
    # E[z | x] = W^T Sigma^{-1} (x - mu), the posterior mean of the Gaussian model
    direct = np.linalg.solve(model.get_covariance(), x.T).T @ model.loadings_
    np.testing.assert_allclose(model.transform([b[:10] for b in X]), direct, rtol=1e-6,
                               atol=1e-9)


def test_structured_mle_keeps_zeros_and_beats_least_squares(data):
    X, _, psi_true, st = data
    ls = HCL(st, denoise="diagonal").fit(X)
    mle = HCL(st, objective="likelihood", denoise="diagonal").fit(X)
    mask = st.mask(WIDTHS)
    assert mle.converged_ and np.all(mle.loadings_[~mask] == 0.0)
    assert mle.objective_ == pytest.approx(np.sum(mle.score_samples(X)), rel=1e-10)
    assert mle.objective_ >= np.sum(ls.score_samples(X))
    assert np.median(np.abs(mle.noise_variance_ - psi_true) / psi_true) < 0.1
    for rule in ("isotropic", "modality"):
        m = HCL(st, objective="likelihood", denoise=rule).fit(X)
        assert m.converged_ and m.noise_variance_.shape == (3,)
        assert m.objective_ >= np.sum(HCL(st, denoise=rule).fit(X).score_samples(X))


def test_global_likelihood_fit_reaches_factor_analysis():
    X, _, _, _ = _hetero(n=800, seed=3, structure=Structure({(0, 1, 2): 3}))
    Xs = np.hstack(X)
    with threadpool_limits(limits=1, user_api="blas"):  # its SVD loop (two BLAS pools)
        fa = FactorAnalysis(3, tol=1e-12, max_iter=100_000, svd_method="lapack").fit(Xs)
    model = HCL(Structure({(0, 1, 2): 3}), objective="likelihood", denoise="diagonal",
                tol=1e-7).fit(X)
    assert model.converged_
    gap = abs(model.objective_ - fa.score(Xs) * len(Xs)) / abs(model.objective_)
    assert gap <= 1e-6


def test_fit_from_covariance_likelihood_matches_fit(data):
    X, _, _, st = data
    Xs = np.hstack(X)
    a = HCL(st, objective="likelihood", denoise="diagonal").fit(X)
    b = HCL(st, objective="likelihood", denoise="diagonal").fit_from_covariance(
        np.cov(Xs.T), len(Xs), WIDTHS, means=Xs.mean(axis=0))
    assert b.objective_ == pytest.approx(a.objective_, rel=1e-10)


def test_reduced_path_diagonal_noise_matches_covariance_path(data):
    X, _, _, st = data
    cov = HCL(st, denoise="diagonal", path="covariance", tol=1e-7).fit(X)
    red = HCL(st, denoise="diagonal", path="reduced", tol=1e-7).fit(X)
    np.testing.assert_allclose(red.noise_variance_, cov.noise_variance_, rtol=1e-4)
    G_cov = cov.loadings_ @ cov.loadings_.T
    G_red = red.loadings_ @ red.loadings_.T
    assert np.linalg.norm(G_red - G_cov) <= 1e-4 * np.linalg.norm(G_cov)


def test_likelihood_needs_a_noise_model(data):
    X, _, _, st = data
    with pytest.raises(ValueError, match="likelihood"):
        HCL(st, objective="likelihood", denoise=None).fit(X)
    with pytest.raises(ValueError, match="objective"):
        HCL(st, objective="bogus").fit(X)


def test_score_needs_positive_noise(data):
    X, _, _, st = data
    model = HCL(st, denoise=None).fit(X)
    with pytest.raises(ValueError, match="positive noise"):
        model.score(X)


def test_likelihood_not_converged_warns(data):
    X, _, _, st = data
    with pytest.warns(ConvergenceWarning):
        HCL(st, objective="likelihood", denoise="diagonal", max_iter=3).fit(X)


def test_likelihood_fit_with_default_noise_converges():
    st = Structure.full(3, rank=1)
    X = make_hierarchical(500, [10, 20, 30], st, noise_variance=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = HCL(st, objective="likelihood").fit(X)
    assert np.isfinite(model.objective_) and model.path_ == "covariance"


def test_concat_svd_isotropic_score_is_sklearn_pca_score(data):
    # probabilistic PCA: the same Gaussian model and the same likelihood
    from sklearn.decomposition import PCA

    X, _, _, st = data
    Xs = np.hstack(X)
    model = ConcatSVD(st, denoise="isotropic").fit(X)
    pca = PCA(n_components=st.n_components).fit(Xs)
    test = [x[:100] * 1.1 for x in X]
    np.testing.assert_allclose(model.score_samples(test), pca.score_samples(np.hstack(test)),
                               rtol=1e-8)


def test_likelihood_fit_identical_with_one_and_two_blas_threads(data):
    X, _, _, st = data
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            fits.append(HCL(st, objective="likelihood", denoise="diagonal",
                            random_state=0).fit(X))
    np.testing.assert_allclose(fits[0].loadings_, fits[1].loadings_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fits[0].noise_variance_, fits[1].noise_variance_, rtol=1e-10)


def test_reduced_path_likelihood_reaches_the_covariance_path_maximum(data):
    # the reduced path's least-squares start differs (its noise comes from T), the
    # maximum of the likelihood does not
    X, _, _, st = data
    cov = HCL(st, objective="likelihood", denoise="modality", path="covariance",
              tol=1e-7).fit(X)
    red = HCL(st, objective="likelihood", denoise="modality", path="reduced",
              tol=1e-7).fit(X)
    assert red.path_ == "reduced" and red.converged_
    assert abs(red.objective_ - cov.objective_) <= 1e-9 * abs(cov.objective_)
    np.testing.assert_allclose(red.noise_variance_, cov.noise_variance_, rtol=1e-5)
