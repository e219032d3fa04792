"""Posterior standard deviations calibrated for the estimation error of the loadings.

References: the closed forms of the spiked covariance model (the sample spike
``(1 + ell)(1 + gamma / ell)`` and the squared cosine of its eigenvector,
``(1 - gamma / ell^2) / (1 + gamma / ell)``, written out here), and simulated true scores
on the samples of the fit and on new samples.
"""

import copy

import numpy as np
import pytest

from hcl_stats import HCL, Structure
from hcl_stats._models.calibration import Calibration, calibrated_loadings, noise_ratio
from hcl_stats._models.posterior import posterior_moments
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import interval_coverage


def _spike_theory(ell, gamma):
    sample = (1 + ell) * (1 + gamma / ell) - 1
    cos2 = (1 - gamma / ell ** 2) / (1 + gamma / ell)
    return sample, cos2


@pytest.mark.parametrize("ell", [1.0, 2.5])
def test_calibrated_signal_is_the_spike_signal_times_its_cosine(ell):
    """One factor of whitened signal ``ell`` on p = 400 features, n = 2001: the fitted signal
    carries the spike bias, the calibrated one is ``ell c^2`` and ``c`` is the cosine
    between the fitted and the true loadings."""
    p, n = 400, 2001
    gamma = p / (n - 1)
    sample, cos2 = _spike_theory(ell, gamma)
    st = Structure({(0,): 1})
    fitted, calibrated, cosines = [], [], []
    for seed in range(4):
        X, truth = make_hierarchical(n, [p], st, singular_values=np.sqrt(ell),
                                     random_state=seed, return_truth=True)
        model = HCL(st, denoise="isotropic").fit(X)
        W, psi = model.loadings_, model.feature_noise_variance()
        fitted.append(np.sum(W ** 2 / psi[:, None]))
        calibrated.append(np.sum(calibrated_loadings(W, psi, st, [p], [[n]]) ** 2
                                 / psi[:, None]))
        w = truth.W[:, 0]
        cosines.append((W[:, 0] @ w) ** 2 / (W[:, 0] @ W[:, 0]) / (w @ w))
    assert np.mean(fitted) == pytest.approx(sample, rel=0.05)
    assert np.mean(cosines) == pytest.approx(cos2, rel=0.05)
    assert np.mean(calibrated) == pytest.approx(ell * cos2, rel=0.08)


def test_std_is_the_error_of_the_reported_score_near_the_detection_limit():
    """One factor of whitened signal ell = 0.6 at gamma = 0.2 (detection limit 0.45),
    p = 400: the reported score's error on the samples of the fit exceeds the best linear
    predictor's ``1 / (1 + ell c^2)`` (the closed form, 0.833), because the fitted
    direction is shaped by those samples' noise; the standard deviations follow the
    error there (simulated true scores), and on new samples cover at least 95%."""
    p, n, ell = 400, 2001, 0.6
    _, cos2 = _spike_theory(ell, p / (n - 1))
    st = Structure({(0,): 1})
    error, reported, covered = [], [], []
    for seed in range(4):
        X, truth = make_hierarchical(2 * n, [p], st, singular_values=np.sqrt(ell),
                                     random_state=seed, return_truth=True)
        model = HCL(st, denoise="isotropic").fit([X[0][:n]])
        sign = np.sign(model.loadings_[:, 0] @ truth.W[:, 0])
        Z, Z_std = model.transform([X[0][:n]], return_std=True)
        error.append(np.mean((sign * Z[:, 0] - truth.Z[:n, 0]) ** 2))
        reported.append(np.mean(Z_std ** 2))
        Z, Z_std = model.transform([X[0][n:]], return_std=True)
        covered.append(np.mean(np.abs(sign * Z[:, 0] - truth.Z[n:, 0]) <= 1.96 * Z_std[:, 0]))
    assert np.mean(error) > 1.08 / (1 + ell * cos2)
    assert np.mean(reported) == pytest.approx(np.mean(error), rel=0.05)
    assert np.mean(covered) > 0.95 - 3 * np.sqrt(0.95 * 0.05 / (4 * n))


@pytest.mark.parametrize("widths, n", [((150,), 301), ((60, 200), 401)])
def test_noise_ratio_recovers_the_true_noise(widths, n):
    """Spiked data of noise variance 1 with factors of whitened signal 0.8-4 (ratios
    p / n of 0.2-0.5): the fitted noise, the mean of the trailing eigenvalues, is low by
    several factors' share of the samples; times the noise ratio it is the true noise,
    within 0.5% over 8 replications."""
    st = Structure({(0,): 3} if len(widths) == 1 else {(0, 1): 2, (0,): 1, (1,): 2})
    fitted, corrected = [], []
    for seed in range(8):
        X = make_hierarchical(n, list(widths), st, singular_values=(0.9, 2.0),
                              noise_variance=1.0, random_state=seed)
        model = HCL(st, denoise="modality").fit(X)
        rho = noise_ratio(model.loadings_, model.feature_noise_variance(), widths,
                          model.n_joint_samples_, model.total_variance_)
        fitted.append(model.noise_variance_)
        corrected.append(model.noise_variance_ * rho)
    assert np.all(np.mean(fitted, axis=0) < 0.99)
    np.testing.assert_allclose(np.mean(corrected, axis=0), 1.0, atol=0.005)


def test_calibration_vanishes_with_many_samples_and_zeroes_what_noise_hides():
    st = Structure({(0, 1): 1, (1,): 1})
    rng = np.random.default_rng(0)
    W = np.zeros((30, 2))
    W[:, 0] = rng.standard_normal(30)  # whitened signal about 30: far above the edge
    W[10:, 1] = 0.1  # whitened signal 0.2 on 20 features
    psi = np.ones(30)
    many = calibrated_loadings(W, psi, st, [10, 20], np.full((2, 2), 10 ** 9))
    np.testing.assert_allclose(many, W, rtol=1e-6, atol=1e-12)
    # n = 11: gamma = 2 for the block {1}, noise edge (1 + sqrt 2)^2 - 1 = 4.8 > 0.2
    few = calibrated_loadings(W, psi, st, [10, 20], np.full((2, 2), 11))
    np.testing.assert_array_equal(few[:, 1], 0.0)
    assert 0 < np.linalg.norm(few[:, 0]) < np.linalg.norm(W[:, 0])
    np.testing.assert_array_equal(few[:10, 1], 0.0)  # zero by construction stays zero
    few_fit = calibrated_loadings(W, psi, st, [10, 20], np.full((2, 2), 11),
                                  samples="fitted")
    np.testing.assert_array_equal(few_fit[:, 1], 0.0)
    # the factor noise hides is reported with at least the prior's spread
    X = [rng.standard_normal((5, 10)), rng.standard_normal((5, 20))]
    post = posterior_moments(X, [np.zeros(10), np.zeros(20)], W, psi, [10, 20],
                             covariance=True,
                             calibration=Calibration(few, few_fit, np.ones(2)))
    assert np.all(post.std()[:, 1] >= 1.0)


WIDE = Structure({(0, 1, 2): 2, (1, 2): 1, (0,): 1, (1,): 2, (2,): 3})


def test_intervals_cover_the_true_scores_on_the_fitted_and_on_new_samples():
    """Widths 50 / 150 / 400 at n = 1000: the plug-in posterior (the fitted loadings
    taken as known) covers too little; the calibrated one covers 95%."""
    n = 1000
    X, truth = make_hierarchical(2 * n, [50, 150, 400], WIDE, singular_values=(1.0, 2.0),
                                 random_state=12, return_truth=True)
    train, new = [x[:n] for x in X], [x[n:] for x in X]
    model = HCL(WIDE).fit(train)
    band = 3 * np.sqrt(0.95 * 0.05 / n)  # one sample's intervals are correlated
    for data, Z in ((train, truth.Z[:n]), (new, truth.Z[n:])):
        coverage = interval_coverage(model, data, truth.W, Z).loc["all", "coverage"]
        assert abs(coverage - 0.95) < band, coverage
    # the plug-in posterior: the same model with calibration switched off (the spike
    # bias vanishes as the sample count grows)
    plug_in = copy.deepcopy(model)
    plug_in.n_joint_samples_ = np.full((3, 3), 10 ** 12)
    coverage = interval_coverage(plug_in, train, truth.W, truth.Z[:n]).loc["all",
                                                                             "coverage"]
    assert coverage < 0.95 - band, coverage
    Z, Z_std = model.transform(train, return_std=True)
    Zp, Zp_std = plug_in.transform(train, return_std=True)
    np.testing.assert_array_equal(Z, Zp)  # the means are the plug-in posterior's
    assert np.all(Z_std > Zp_std)
