"""Scores, posterior standard deviations and likelihoods of samples with missing values.

References: Gaussian conditioning on the joint covariance of ``(z, x_o)`` by brute force,
scipy's multivariate normal density on the observed coordinates, and the simulated true
scores (coverage within binomial error).
"""

import copy

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy.stats import multivariate_normal, norm

from _estimators import true_model
from hcl_stats import HCL, Structure
from hcl_stats._models.calibration import calibration
from hcl_stats.baselines import JIVE, ConcatSVD
from hcl_stats.datasets import make_hierarchical, mask_modalities
from hcl_stats.metrics import interval_coverage

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (0,): 1, (1,): 1, (2,): 1})
WIDTHS = [8, 9, 10]
EDGES = np.r_[0, np.cumsum(WIDTHS)]


@pytest.fixture(scope="module")
def fitted():
    X = make_hierarchical(600, WIDTHS, STRUCTURE, noise_variance=0.5, random_state=3)
    return HCL(STRUCTURE).fit(X), X


def _with_missing(X, seed=0):
    """Test rows with every kind of pattern: whole modalities missing, scattered cells,
    both, and a row that observes nothing."""
    rng = np.random.default_rng(seed)
    T = [x[:120].copy() for x in X]
    T[1][20:40] = np.nan
    T[0][40:60] = np.nan
    T[2][40:60] = np.nan
    T[2][60:80][rng.random((20, WIDTHS[2])) < 0.3] = np.nan
    T[0][60:80, 3] = np.nan
    T[1][80:100] = np.nan
    T[0][80:100][rng.random((20, WIDTHS[0])) < 0.5] = np.nan
    for t in T:
        t[100] = np.nan
    return T


def _calibration(model):
    """What the data carry about the true factors (each piece tested against random-matrix
    theory in test_calibration.py)."""
    return calibration(model.loadings_, model.feature_noise_variance(), model.structure_,
                       model.n_features_per_modality_, model.n_joint_samples_,
                       model.total_variance_)


def _error_covariance(model, x):
    """Covariance of the error ``A x_o - z`` of the posterior mean ``A x_o`` (``A`` by
    brute-force conditioning, :func:`_conditional`), from the explicit ``d x d``
    covariances: ``A Sigma_o A^T - A V_o - V_o^T A^T + I`` with ``(V, Sigma) = (V_new, V_new
    V_new^T + R Psi)`` for a new sample (``R`` the noise ratio of each feature) and
    ``(V_fit, W W^T + Psi)`` for a sample of the fit; the larger of the two (the second
    plus the positive part of the difference)."""
    o = ~np.isnan(x)
    K = model.loadings_.shape[1]
    if not o.any():
        return np.eye(K)
    W, psi = model.loadings_, model.feature_noise_variance()
    _, A = _conditional(model, x, return_map=True)
    cal = _calibration(model)
    ratio = np.repeat(cal.noise_ratio, model.n_features_per_modality_)
    errors = []
    for V, Sigma in ((cal.new, cal.new @ cal.new.T + np.diag(ratio * psi)),
                     (cal.fitted, W @ W.T + np.diag(psi))):
        AV = A @ V[o]
        errors.append(A @ Sigma[np.ix_(o, o)] @ A.T - AV - AV.T + np.eye(K))
    w, Q = np.linalg.eigh(errors[0] - errors[1])
    return errors[1] + (Q * np.maximum(w, 0)) @ Q.T


def _conditional(model, x, return_map=False):
    """Mean and covariance of z given the observed entries of x (one stacked row), by
    conditioning the joint Gaussian of (z, x) with covariance [[I, W^T], [W, Sigma]],
    ``Sigma = W W^T + Psi``; with ``return_map`` the mean and the matrix ``A`` of the
    mean ``A (x_o - mu_o)``."""
    W = model.loadings_
    Sigma = W @ W.T + np.diag(model.feature_noise_variance())
    mu = np.concatenate(model.means_)
    K = W.shape[1]
    o = ~np.isnan(x)
    if not o.any():
        return np.zeros(K), np.eye(K)
    joint = np.block([[np.eye(K), W.T], [W, Sigma]])
    zo = np.r_[np.zeros(K, dtype=bool), o]
    zz = np.r_[np.ones(K, dtype=bool), np.zeros(len(x), dtype=bool)]
    A = scipy.linalg.solve(joint[np.ix_(zo, zo)], joint[np.ix_(zo, zz)], assume_a="pos").T
    mean = A @ (x[o] - mu[o])
    return (mean, A) if return_map else (mean, np.eye(K) - A @ joint[np.ix_(zo, zz)])


MODELS = {"hcl": lambda: HCL(STRUCTURE), "diagonal": lambda: HCL(STRUCTURE, denoise="diagonal"),
          "concat": lambda: ConcatSVD(STRUCTURE),
          "jive": lambda: JIVE(Structure.joint_individual(2, [1, 1, 1]))}


@pytest.mark.parametrize("name", ["hcl", "diagonal", "concat", "jive"])
def test_scores_and_std_are_the_gaussian_conditional(fitted, name):
    model, X = fitted
    model = model if name == "hcl" else MODELS[name]().fit(X)
    T = _with_missing(X)
    Z, Z_std = model.transform(T, return_std=True)
    x = np.hstack(T)
    for i in range(len(x)):
        mean, _ = _conditional(model, x[i])
        np.testing.assert_allclose(Z[i], mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(Z_std[i], np.sqrt(np.diag(_error_covariance(model, x[i]))),
                                   rtol=1e-8, atol=1e-10)
    assert np.isfinite(Z).all() and np.isfinite(Z_std).all()
    np.testing.assert_array_equal(model.transform(T), Z)


def test_a_factor_of_unobserved_modalities_is_the_prior(fitted):
    model, X = fitted
    Z, Z_std = model.transform(_with_missing(X), return_std=True)
    st = model.structure_
    unseen = {(2,): slice(40, 60), (0,): slice(40, 60), (1,): slice(20, 40),
              (0, 1, 2): slice(100, 101), (0, 1): slice(100, 101)}
    for subset, rows in unseen.items():
        cols = st.columns(subset)
        np.testing.assert_allclose(Z[rows, cols], 0.0, atol=1e-12)
        np.testing.assert_allclose(Z_std[rows, cols], 1.0, rtol=1e-12)
    # observed factors are measured: their spread is below the prior's
    assert np.all(Z_std[:20] < 0.99)


def test_none_modality_equals_rows_of_nan(fitted):
    model, X = fitted
    T = [x[:50] for x in X]
    gone = [T[0], np.full_like(T[1], np.nan), T[2]]
    for a, b in zip(model.transform([T[0], None, T[2]], return_std=True),
                    model.transform(gone, return_std=True)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.score_samples([T[0], None, T[2]]),
                               model.score_samples(gone), rtol=1e-12)


def test_std_is_the_posterior_spread_when_the_loadings_are_known(fitted):
    """With the sample count taken as unlimited, and each modality's total variance the
    fitted signal plus noise, the calibration vanishes and the standard deviations are the
    posterior's: Cov(z | x) = I - W^T Sigma^{-1} W for a fully observed sample."""
    model, X = fitted
    model = copy.deepcopy(model)
    model.n_joint_samples_ = np.full((3, 3), 10 ** 12)
    psi = model.feature_noise_variance()
    model.total_variance_ = np.array([np.sum(model.loadings_[a:b] ** 2) + psi[a:b].sum()
                                      for a, b in zip(EDGES[:-1], EDGES[1:])])
    T = [x[:30] for x in X]
    Z, Z_std = model.transform(T, return_std=True)
    np.testing.assert_array_equal(Z, model.transform(T))
    W = model.loadings_
    Sigma = W @ W.T + np.diag(model.feature_noise_variance())
    cov = np.eye(W.shape[1]) - W.T @ np.linalg.solve(Sigma, W)
    np.testing.assert_allclose(Z_std, np.tile(np.sqrt(np.diag(cov)), (30, 1)), rtol=1e-6)


def test_pandas_output_and_outer_joined_frames(fitted):
    model, X = fitted
    labels = [f"s{i}" for i in range(40)]
    frames = [pd.DataFrame(x[:40], index=labels) for x in X]
    partial = [frames[0], frames[1].iloc[10:], frames[2]]  # s0..s9 absent from modality 1
    model.set_output(transform="pandas")
    try:
        Z, Z_std = model.transform(partial, return_std=True)
    finally:
        model.set_output(transform="default")
    for frame in (Z, Z_std):
        assert isinstance(frame, pd.DataFrame)
        assert list(frame.index) == labels
        assert list(frame.columns) == list(model.get_feature_names_out())
    gone = [x[:40].copy() for x in X]
    gone[1][:10] = np.nan
    ref_Z, ref_std = model.transform(gone, return_std=True)
    np.testing.assert_allclose(Z.to_numpy(), ref_Z, rtol=1e-12)
    np.testing.assert_allclose(Z_std.to_numpy(), ref_std, rtol=1e-12)


@pytest.mark.parametrize("name", ["hcl", "jive"])
def test_fit_transform_passes_return_std(fitted, name):
    _, X = fitted
    model = MODELS[name]()
    Z, Z_std = model.fit_transform(X, return_std=True)
    ref = model.transform(X, return_std=True)
    np.testing.assert_array_equal(Z, ref[0])
    np.testing.assert_array_equal(Z_std, ref[1])
    np.testing.assert_array_equal(model.fit_transform(X), ref[0])
    with pytest.raises(TypeError, match="return_std must be True or False"):
        model.transform(X, return_std="yes")


def test_score_samples_is_the_density_of_the_observed_entries(fitted):
    model, X = fitted
    T = _with_missing(X)
    got = model.score_samples(T)
    x = np.hstack(T)
    mu, Sigma = np.concatenate(model.means_), model.get_covariance()
    for i in range(len(x)):
        o = ~np.isnan(x[i])
        if not o.any():
            assert got[i] == 0.0
            continue
        ref = multivariate_normal(mu[o], Sigma[np.ix_(o, o)]).logpdf(x[i, o])
        assert got[i] == pytest.approx(ref, rel=1e-9)
    assert model.score(T) == pytest.approx(np.mean(got), rel=1e-12)
    assert np.isfinite(model.bic(T))


# -- calibration against the simulated truth -----------------------------------------------
def _binomial_band(level, n, k=4.0):
    return k * np.sqrt(level * (1 - level) / n)


@pytest.fixture(scope="module")
def simulated():
    X, truth = make_hierarchical(3000, WIDTHS, STRUCTURE, noise_variance=[0.5, 1.0, 2.0],
                                 random_state=11, return_truth=True)
    T = mask_modalities(X, 0.35, modalities=[1, 2], random_state=1)
    rng = np.random.default_rng(2)
    T[0][:1000][rng.random((1000, WIDTHS[0])) < 0.3] = np.nan  # scattered cells
    return T, truth


def test_true_model_intervals_cover_95_percent_observed_or_not(simulated):
    T, truth = simulated
    model = true_model(truth)
    Z, Z_std = model.transform(T, return_std=True)
    covered = np.abs(Z - truth.Z) <= norm.ppf(0.975) * Z_std
    st = model.structure_
    for subset, observer in (((1,), 1), ((2,), 2)):
        col = st.columns(subset).start
        unseen = np.isnan(T[observer][:, 0])
        assert 800 < unseen.sum() < 1300
        for mask in (unseen, ~unseen):
            assert abs(covered[mask, col].mean() - 0.95) < _binomial_band(0.95, mask.sum())
    # every interval: within the band of the number of samples (intervals of one sample
    # are correlated)
    assert abs(covered.mean() - 0.95) < _binomial_band(0.95, len(Z))


def test_interval_coverage_undoes_the_block_rotations(simulated, rng):
    T, truth = simulated
    model = true_model(truth)
    st = model.structure_
    R = np.zeros((st.n_components,) * 2)
    for s in st.subsets:
        c = st.columns(s)
        R[c, c] = np.linalg.qr(rng.standard_normal((c.stop - c.start,) * 2))[0]
    rotated = true_model(truth)
    rotated.loadings_ = truth.W @ R  # the same model in another basis of each block
    Z, Z_std = model.transform(T, return_std=True)
    covered = np.abs(Z - truth.Z) <= norm.ppf(0.975) * Z_std
    table = interval_coverage(rotated, T, truth.W, truth.Z)
    assert table.loc["all", "coverage"] == pytest.approx(covered.mean(), abs=2 / covered.size)
    col = st.columns((2,)).start
    unseen = np.isnan(T[2][:, 0])
    assert table.loc["{2}", "n_unobserved"] == unseen.sum()
    assert table.loc["{2}", "coverage_unobserved"] == pytest.approx(
        covered[unseen, col].mean(), abs=2 / unseen.sum())
    assert np.isnan(table.loc["{0,1,2}", "coverage_unobserved"])  # modality 0 always seen
    with pytest.raises(ValueError, match="level must be"):
        interval_coverage(model, T, truth.W, truth.Z, level=95)
    with pytest.raises(ValueError, match="W_true has shape"):
        interval_coverage(model, T, truth.W[:, 1:], truth.Z)


def test_fitted_model_intervals_are_calibrated():
    X, truth = make_hierarchical(14000, WIDTHS, STRUCTURE, noise_variance=[0.5, 1.0, 2.0],
                                 random_state=5, return_truth=True)
    model = HCL(STRUCTURE, denoise="modality").fit([x[:12000] for x in X])
    test = mask_modalities([x[12000:] for x in X], 0.4, random_state=3)
    table = interval_coverage(model, test, truth.W, truth.Z[12000:])
    n = 2000
    for column in ("coverage", "coverage_observed", "coverage_unobserved"):
        assert abs(table.loc["all", column] - 0.95) < _binomial_band(0.95, n) + 0.01, column
