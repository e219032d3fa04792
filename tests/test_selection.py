"""Tests of structure selection (hcl_stats.selection) against simulated ground truth and
Monte Carlo / closed-form oracles."""

import pickle
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from hcl_stats import HCL, Structure
from hcl_stats._estimation.rmt import (
    cca_largest_root_threshold,
    largest_ratio_sf,
    largest_ratio_threshold,
    mp_median,
    spike_cosine2,
    spike_noise,
    spike_signal,
    sphericity_statistic,
    spike_population,
    tw1_quantile,
    wishart_edge_threshold,
)
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats._structure import row_slices
from hcl_stats.datasets import make_hierarchical
from hcl_stats.selection import select_structure, structure_stability

# Structures used below (fixed before any tuning; the study draws random ones).
STRUCTURES_M3 = [
    Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 2}),
    Structure({(0, 1): 2, (1, 2): 1, (0,): 1, (2,): 3}),
    Structure({(0, 1, 2): 1, (0, 2): 2, (1,): 2}),
]
STRUCTURE_M4 = Structure({(0, 1, 2, 3): 1, (0, 2, 3): 2, (1, 3): 1, (0,): 1, (1,): 2,
                          (2,): 1})
N, P = 1000, 60


def _clear_range(p, n, kappa=3.0, noise=1.0):
    """Block singular values whose squares are kappa..2 kappa times sigma^2 sqrt(p/n)."""
    thr = noise * np.sqrt(p / n)
    return float(np.sqrt(kappa * thr)), float(np.sqrt(2 * kappa * thr))


def _select(X, **kw):
    S, _, n = sample_covariance(X)
    return select_structure(S, [x.shape[1] for x in X], n_samples=n, **kw)


# -- random-matrix oracles -----------------------------------------------------------------

def test_tw1_quantiles_match_tables():
    # Tracy-Widom (beta = 1) quantiles tabulated by Tracy & Widom / Bejan (2005)
    assert tw1_quantile(0.95) == pytest.approx(0.9793, abs=0.01)
    assert tw1_quantile(0.99) == pytest.approx(2.0234, abs=0.01)
    assert tw1_quantile(0.5) == pytest.approx(-1.2686, abs=0.02)


def test_mp_median_matches_simulation(rng):
    for p, n in [(100, 1000), (300, 150)]:
        X = rng.standard_normal((n, p))
        ev = np.linalg.eigvalsh(X.T @ X / n)[-min(p, n):]
        assert np.median(ev) == pytest.approx(mp_median(p / n), rel=0.03)


@pytest.mark.parametrize("p,q,n", [(4, 6, 400), (10, 10, 1000)])
def test_cca_threshold_controls_false_positives(rng, p, q, n):
    # Monte Carlo null: largest squared canonical correlation of independent samples
    hits = 0
    reps = 300
    t = cca_largest_root_threshold(p, q, n - 1, 0.05)
    for _ in range(reps):
        A = rng.standard_normal((n, p))
        B = rng.standard_normal((n, q))
        A -= A.mean(0)
        B -= B.mean(0)
        rho = np.linalg.svd(np.linalg.qr(A)[0].T @ np.linalg.qr(B)[0], compute_uv=False)[0]
        hits += rho ** 2 > t
    assert 0.01 <= hits / reps <= 0.09


def test_wishart_edge_threshold_controls_false_positives(rng):
    p, n, reps = 80, 400, 150
    t = wishart_edge_threshold(p, n - 1, 0.05)
    top = [np.linalg.eigvalsh(np.cov(rng.standard_normal((n, p)), rowvar=False))[-1]
           for _ in range(reps)]
    assert 0.005 <= np.mean(np.array(top) > t) <= 0.12


def _ratio_tail_by_quadrature(r, df):
    """``P(lambda_1 / mean(lambda) > r)`` for three white features: the joint density of
    the ordered normalised eigenvalues ``u1 > u2 > u3 = 1 - u1 - u2``, proportional to
    ``(u1 u2 u3)^a (u1 - u2)(u1 - u3)(u2 - u3)``, integrated by ``scipy.integrate.dblquad``
    over ``u1 > r / 3`` and over the whole ordered simplex."""
    import scipy.integrate

    a = (df - 4) / 2.0

    def density(u2, u1):
        u3 = 1.0 - u1 - u2
        return (u1 * u2 * u3) ** a * (u1 - u2) * (u1 - u3) * (u2 - u3)

    def mass(lo):
        return scipy.integrate.dblquad(density, lo, 1.0, lambda u1: (1.0 - u1) / 2.0,
                                       lambda u1: min(u1, 1.0 - u1), epsabs=0,
                                       epsrel=1e-11)[0]

    return mass(max(r / 3.0, 1.0 / 3.0)) / mass(1.0 / 3.0)


@pytest.mark.parametrize("df", [9, 19, 60])
def test_largest_ratio_tail_is_the_integral_of_the_eigenvalue_density(df):
    # exact where at most one normalised eigenvalue can exceed r / 3 (r >= 3/2); below,
    # a lower bound missing only P(two above r / 3), negligible in the upper tail
    for r in (1.5, 1.7, 2.0, 2.4):
        assert largest_ratio_sf(r, 3, df) == pytest.approx(_ratio_tail_by_quadrature(r, df),
                                                           rel=1e-7, abs=1e-300)
    for r in (largest_ratio_threshold(3, df, 0.05), largest_ratio_threshold(3, df, 0.01)):
        direct = _ratio_tail_by_quadrature(r, df)
        assert direct * (1 - 1e-3) <= largest_ratio_sf(r, 3, df) <= direct * (1 + 1e-9)


def test_largest_ratio_tail_of_two_features_is_the_beta_law():
    # for two features (lambda_1 - lambda_2)^2 / (lambda_1 + lambda_2)^2 ~ Beta(1, (df-1)/2)
    import scipy.stats

    for df in (3, 19, 200):
        for r in (1.05, 1.3, 1.9):
            assert largest_ratio_sf(r, 2, df) == pytest.approx(
                scipy.stats.beta.sf((r - 1) ** 2, 1, (df - 1) / 2), rel=1e-12)


def _white_spectra(rng, reps, n, p, spike=0.0):
    """Eigenvalues (decreasing) of ``reps`` sample covariances of ``n`` samples of ``p``
    white features, the first with variance ``1 + spike``, each sample covariance with a
    noise variance of its own (which the statistics must not see)."""
    out = []
    for start in range(0, reps, 500):
        X = rng.standard_normal((min(500, reps - start), n, p))
        X[:, :, 0] *= np.sqrt(1.0 + spike)
        X -= X.mean(axis=1, keepdims=True)
        S = np.einsum("rni,rnj->rij", X, X) / (n - 1)
        S *= rng.uniform(0.1, 10.0, size=(len(S), 1, 1))
        out.append(np.linalg.eigvalsh(S)[:, ::-1])
    return np.concatenate(out)


@pytest.mark.parametrize("p, n", [(4, 15), (7, 40), (25, 60), (12, 9)])
def test_largest_ratio_threshold_has_its_level_with_the_noise_variance_unknown(rng, p, n):
    # Monte Carlo null of lambda_1 / mean(lambda); n < p too (the n - 1 non-zero
    # eigenvalues). The known-variance Tracy-Widom threshold misses the level by far at
    # small p.
    reps, alpha = 4000, 0.05
    ev = _white_spectra(rng, reps, n, p)
    stats = ev[:, 0] / ev.mean(axis=1)
    rate = np.mean(stats > largest_ratio_threshold(p, n - 1, alpha))
    assert abs(rate - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / reps), rate
    if p <= 7:
        assert np.mean(stats > wishart_edge_threshold(p, n - 1, alpha)) < alpha / 2


def _step1_rates(rng, p, n, spike, reps, alpha=0.05):
    """Rates of at least one and of at least two factors found by step 1 of the selection
    in a white modality with one factor of population size ``spike`` (0: none)."""
    from hcl_stats._estimation.selection import _modality_rank

    kmax = max(min(p, n - 1) // 2, 1)
    counts = np.array([_modality_rank(e, p, n - 1, alpha, kmax)[1]
                       for e in _white_spectra(rng, reps, n, p, spike)])
    return np.mean(counts >= 1), np.mean(counts >= 2)


@pytest.mark.parametrize("p", [2, 3, 5])
def test_step1_false_detection_rate_is_its_level_in_small_modalities(rng, p):
    reps, alpha = 3000, 0.05
    any_factor, _ = _step1_rates(rng, p, 20, 0.0, reps, alpha)
    assert abs(any_factor - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / reps), any_factor


def test_step1_second_factor_rate_after_a_strong_one_is_its_level(rng):
    # beyond one factor far above the noise the next test is of p - 1 white features with
    # n - 2 degrees of freedom, against a noise variance fitted with that factor removed
    reps, alpha = 3000, 0.05
    first, second = _step1_rates(rng, 6, 50, 100.0, reps, alpha)
    assert first == 1.0
    assert abs(second - alpha) < 4 * np.sqrt(alpha * (1 - alpha) / reps), second


def test_spike_inversion_is_consistent():
    gamma, ell = 0.2, 1.5
    ratio = (1 + ell) * (1 + gamma / ell)  # Baik-Silverstein location of a sample spike
    assert spike_population(ratio, gamma) == pytest.approx(ell)
    assert spike_cosine2(ell, gamma) == pytest.approx((1 - gamma / ell ** 2) / (1 + gamma / ell))
    assert spike_population(1.0, gamma) == pytest.approx(np.sqrt(gamma))  # below the edge


def _largest_root_check(s, spikes, trace, p, gamma):
    """``s`` solves ``s (p + spike_signal(s)) = trace`` and no larger noise variance up to
    ``trace / p`` does (the equation's sign on a fine grid above ``s``)."""
    assert s * (p + spike_signal(spikes, s, gamma)) == pytest.approx(trace, rel=1e-12)
    grid = np.linspace(s, trace / p, 401)[1:]
    assert all(x * (p + spike_signal(spikes, x, gamma)) > trace for x in grid)


@pytest.mark.parametrize("gamma", [0.02, 0.3, 1.0, 2.5])
def test_spike_noise_recovers_the_noise_of_a_population_spectrum(gamma):
    # sample spikes at their Baik-Silverstein locations sigma^2 (1 + ell)(1 + gamma / ell)
    # and the trace of the population, sigma^2 (p + sum ell): sigma^2 solves the equation
    p, sigma2 = 60, 0.7
    for ells in ((40.0, 6.0, 2.0 * np.sqrt(gamma)), (1e7,), (1e6, 3e3, 1.5 * np.sqrt(gamma))):
        spikes = [sigma2 * (1 + ell) * (1 + gamma / ell) for ell in ells]
        trace = sigma2 * (p + sum(ells))
        s = spike_noise(spikes, trace, p, gamma)
        # conditioning: the trace is known to a rounding, eps trace, and the equation's
        # slope is about p, so the root to about eps trace / p (1e-10 for ell = 1e7)
        assert s == pytest.approx(sigma2, rel=1e-14 + 4e-16 * trace / (p * sigma2)), ells
        _largest_root_check(s, spikes, trace, p, gamma)


def test_spike_noise_solves_the_equation_on_random_spectra(rng):
    # spikes on both sides of the detection limit, some carrying nearly all the trace
    for gamma in (0.01, 0.2, 1.0, 3.0):
        for share in (0.5, 0.99, 1 - 1e-9):
            p = int(rng.integers(5, 200))
            spikes = sorted(rng.uniform(0.1, 30.0, size=int(rng.integers(1, p))).tolist(),
                            reverse=True)
            rest = sum(spikes) * (1 - share) / share
            trace = sum(spikes) + rest
            _largest_root_check(spike_noise(spikes, trace, p, gamma), spikes, trace, p, gamma)
    assert spike_noise([3.0, 1.0], 4.0, 10, 0.5) == np.finfo(float).tiny  # nothing left
    assert spike_noise([], 5.0, 10, 0.5) == 0.5


@pytest.mark.parametrize("n, p, ells", [(1000, 40, (1e5,)), (1000, 40, (20.0, 5.0, 2.0)),
                                        (1000, 300, (30.0, 8.0, 3.0)),
                                        (300, 500, (1e4, 40.0, 10.0))])
def test_noise_variance_of_a_simulated_spiked_covariance(rng, n, p, ells):
    # the selection's noise variance against the true one, within sampling error (the
    # relative sd of the variance outside the spikes is about sqrt(2 / (n (p - k)))); one
    # spike carrying nearly all the variance (the first case) included
    from hcl_stats._estimation.selection import _modality_rank

    sigma2, k = 2.0, len(ells)
    sd = np.sqrt(2.0 / (n * (p - k)))
    errors = []
    for _ in range(5):
        Q = np.linalg.qr(rng.standard_normal((p, k)))[0]
        X = rng.standard_normal((n, p)) * np.sqrt(sigma2)
        X += (rng.standard_normal((n, k)) * np.sqrt(np.array(ells) * sigma2)) @ Q.T
        ev = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
        s, _, _ = _modality_rank(ev, p, n - 1, 0.01, min(p, n - 1) // 2)
        errors.append(s / sigma2 - 1)
    assert np.max(np.abs(errors)) < 4.5 * sd, errors
    assert abs(np.mean(errors)) < 3 * sd / np.sqrt(len(errors)), errors


def test_sphericity_statistic_is_standard_normal_under_white_noise(rng):
    # Monte Carlo null at p < n and p > n, and the bulk left after removing spikes
    import scipy.stats

    for n, p, k in ((400, 20, 0), (60, 150, 0), (500, 30, 3)):
        z = []
        for _ in range(150):
            X = rng.standard_normal((n, p))
            X[:, :k] *= 3.0
            ev = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1]
            z.append(sphericity_statistic(ev[k:], n - 1 - k))
        assert scipy.stats.kstest(z, "norm").pvalue > 1e-3, (n, p, k)
    X = rng.standard_normal((500, 20)) * np.sqrt(np.linspace(0.5, 1.5, 20))  # unequal noise
    assert sphericity_statistic(np.linalg.eigvalsh(np.cov(X, rowvar=False)), 499) > 5
    assert sphericity_statistic([1.0], 100) == np.inf


# -- recovery of simulated structures ---------------------------------------------------------

@pytest.mark.parametrize("truth", STRUCTURES_M3, ids=str)
def test_exact_recovery_clear_signal(truth):
    low, high = _clear_range(P, N)
    found = 0
    for seed in range(5):
        X = make_hierarchical(N, [P] * 3, truth, singular_values=(low, high),
                              random_state=seed)
        structure, evidence = _select(X)
        found += structure == truth
    assert found == 5  # every replication (clear signal, kappa = 3)


def test_exact_recovery_m4_at_twice_threshold():
    p, n = 100, 2000
    low, high = _clear_range(p, n, kappa=2.0)
    hits = 0
    for seed in range(10):
        X = make_hierarchical(n, [p] * 4, STRUCTURE_M4, singular_values=(low, high),
                              random_state=100 + seed)
        hits += _select(X)[0] == STRUCTURE_M4
    assert hits >= 9


def test_specific_factor_found_in_a_modality_with_many_factors():
    """Issue 6: a weak *specific* factor in a modality carrying many factors.

    Blocks of different subsets are not orthogonal within a modality, so the smallest
    modality-level spike (eigenvalue of B_m^T B_m) falls below the block singular values;
    every block is still at least twice the detection threshold, and the structure must
    be recovered exactly."""
    p, n = 100, 2000
    thr = np.sqrt(p / n)
    truth = Structure({(0, 1, 2): 3, (0, 1): 3, (0, 2): 3, (0,): 2, (1,): 1, (2,): 1})
    low, high = _clear_range(p, n, kappa=2.0)
    rows = slice(0, p)
    depressed = hits = 0
    for seed in range(8):
        X, t = make_hierarchical(n, [p] * 3, truth, singular_values=(low, high),
                                 random_state=200 + seed, return_truth=True)
        B0 = t.W[rows][:, [j for s in truth.subsets_of(0) for j in
                           range(truth.columns(s).start, truth.columns(s).stop)]]
        # the design really is "every block clearly above threshold" ...
        assert low ** 2 >= 2 * thr - 1e-12
        # ... while the modality-level spectrum of modality 0 is much weaker
        depressed += np.linalg.eigvalsh(B0.T @ B0)[0] < 0.8 * low ** 2
        found, ev = _select(X)
        hits += found == truth
    assert depressed >= 6
    assert hits >= 7


def test_consensus_rounds_to_match_the_tested_pair_ranks():
    from hcl_stats._estimation.selection import _consensus

    # four modalities; {0,1,2,3} seen with counts (2, 2, 1, 1): mean 1.5, and a {0,2}-only
    # direction seen by one of its two modalities (mean 0.5)
    order = [(0, 1, 2, 3), (0, 2)]
    means = {(0, 1, 2, 3): 1.5, (0, 2): 0.5}
    pair_rank = np.full((4, 4), 2)
    np.fill_diagonal(pair_rank, 0)  # the truth {0,1,2,3}: 2 gives c_ab = 2 for all pairs
    assert _consensus(order, means, pair_rank, 4, None) == {(0, 1, 2, 3): 2, (0, 2): 0}
    assert _consensus(order, means, pair_rank, 4, 1) == {(0, 1, 2, 3): 1, (0, 2): 0}
    # the fit to the pair ranks never creates a subset: (0, 2) stays out even when the
    # pair rank of (0, 2) would be matched by it (ties go towards omission)
    pair_rank[0, 2] = pair_rank[2, 0] = 3
    assert _consensus(order, means, pair_rank, 4, None) == {(0, 1, 2, 3): 2, (0, 2): 0}
    # without the pair evidence, 1.5 rounds down
    assert _consensus(order, means, np.zeros((4, 4), int), 4, None)[(0, 1, 2, 3)] == 1


def test_below_threshold_omits_rather_than_invents():
    """Shared blocks below the detection threshold: at most 5% invented subsets."""
    p, n = 100, 1000
    thr = np.sqrt(p / n)
    truth = Structure({(0, 1, 2): 1, (0, 1): 1, (0,): 1, (1,): 1, (2,): 1})
    false_pos = absent = 0
    for seed in range(10):
        rs = np.random.RandomState(seed)
        X, t = make_hierarchical(n, [p] * 3, truth, singular_values=np.sqrt(0.5 * thr),
                                 random_state=rs, return_truth=True)
        # strong specific blocks so that every modality keeps a detectable factor
        for m in range(3):
            u = np.linalg.qr(rs.standard_normal((p, 1)))[0]
            X[m] = X[m] + rs.standard_normal((n, 1)) @ (2.0 * u.T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found, _ = _select(X)
        # the shared blocks of the truth are below threshold and may be omitted; the
        # absent ones must not be invented
        for s in [(0, 2), (1, 2)]:
            absent += 1
            false_pos += s in found
        assert all(m in found for m in range(3))  # the strong specific blocks stay
    assert false_pos / absent <= 0.05


def test_pure_noise_modality_is_left_without_factors(rng):
    truth = Structure({(0, 1): 2, (0,): 1})
    X = make_hierarchical(800, [30, 30], truth, singular_values=(1, 2), random_state=3)
    X.append(rng.standard_normal((800, 25)))
    with pytest.warns(UserWarning, match="no factor detected in modality \\[2\\]"):
        result = _select(X)
    found = result.structure
    assert found.n_modalities == 3 and found.modality_rank(2) == 0
    assert result.no_factor == [2]
    assert dict(found.blocks) == {(0, 1): 2, (0,): 1}
    # HCL fits such a structure: zero loadings for the noise-only modality, whose noise
    # variance (per-modality rule) is then the mean of its eigenvalues, i.e. about 1
    with pytest.warns(UserWarning, match="no factor detected"):
        model = HCL("auto", denoise="modality").fit(X)
    assert model.structure_ == found
    assert not model.loadings_[60:].any()
    assert model.noise_variance_[2] == pytest.approx(np.trace(np.cov(X[2].T)) / 25)
    assert model.noise_variance_[2] == pytest.approx(1.0, abs=0.1)
    scores = model.transform(X)
    assert scores.shape == (800, 3) and np.isfinite(scores).all()
    table = model.explained_variance()
    assert np.isfinite(table.to_numpy(dtype=float)).all()
    assert "noise" in model.summary().as_text().lower()


def test_nothing_detected_is_a_clear_error(rng):
    X = [rng.standard_normal((300, 20)) for _ in range(3)]
    with pytest.raises(ValueError, match="no factor detected in any modality"):
        _select(X)


def test_m6_completes_and_m4_timing():
    truth6 = Structure({(0, 1, 2, 3, 4, 5): 1, (0, 1, 2): 1, (3, 4): 2, (1, 5): 1, (0,): 1,
                        (2,): 1, (3,): 1})
    X = make_hierarchical(1000, [40] * 6, truth6, singular_values=(1, 1.5), random_state=5)
    found, evidence = _select(X)
    assert found.n_modalities == 6
    assert found == truth6
    # M = 4, 200 features, n = 2000 completes (a generous budget for a loaded machine)
    X4 = make_hierarchical(2000, [200] * 4, STRUCTURE_M4, singular_values=(0.8, 1.2),
                           random_state=6)
    S, _, n = sample_covariance(X4)
    t0 = time.perf_counter()
    select_structure(S, [200] * 4, n_samples=n)
    assert time.perf_counter() - t0 < 30


# -- evidence, estimator integration and validation ------------------------------------------

def test_evidence_table_documents_every_decision():
    truth = STRUCTURES_M3[0]
    X = make_hierarchical(N, [P] * 3, truth, singular_values=(1, 2), random_state=11)
    result = _select(X)
    found, ev = result
    assert isinstance(ev, pd.DataFrame)
    assert list(ev.columns) == ["step", "subset", "modality", "component", "statistic",
                                "value", "threshold", "selected", "rank"]
    decided = ev[ev.step == "structure"]
    chosen = {row.subset: int(row.rank) for row in decided.itertuples() if row.rank > 0}
    assert chosen == {found.label(s): r for s, r in found.blocks}
    pairs = ev[ev.step == "pair rank"]
    assert set(pairs.subset) == {"{0,1}", "{0,2}", "{1,2}"}
    assert result.modality_rank.tolist() == [truth.modality_rank(m) for m in range(3)]
    np.testing.assert_allclose(result.noise_variance, 1.0, rtol=0.05)


def test_hcl_auto_with_names_and_max_rank():
    truth = Structure({(0, 1, 2): 2, (1, 2): 1, (0,): 1})
    X = make_hierarchical(N, [P] * 3, truth, singular_values=(1, 2), random_state=12)
    data = {"rna": X[0], "atac": X[1], "prot": X[2]}
    model = HCL("auto").fit(data)
    assert model.structure_ == truth.bind(("rna", "atac", "prot"))
    assert isinstance(model.selection_, pd.DataFrame)
    assert model.loadings_.shape == (3 * P, truth.n_components)
    capped = HCL("auto", max_rank=1).fit(X)
    assert max(capped.structure_.ranks) == 1


def test_selection_evidence_is_built_on_first_access_and_kept():
    truth = Structure({(0, 1, 2): 2, (1, 2): 1, (0,): 1})
    X = make_hierarchical(N, [P] * 3, truth, singular_values=(1, 2), random_state=12)
    S, _, n = sample_covariance(X)
    result = select_structure(S, [P] * 3, n_samples=n)
    assert "evidence" not in vars(result)  # nothing built by the selection itself
    assert result.evidence is result.evidence and result[1] is result.evidence
    model = HCL(scale=None).fit(X)  # selects from S itself
    pd.testing.assert_frame_equal(model.selection_, result.evidence, check_exact=True)
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.selection_, model.selection_, check_exact=True)
    given = HCL(truth).fit(X)
    assert not hasattr(given, "selection_")


def test_input_validation():
    S = np.eye(20)
    with pytest.raises(ValueError, match="shape"):
        select_structure(S, [10, 5], n_samples=100)
    with pytest.raises(ValueError, match="alpha"):
        select_structure(S, [10, 10], n_samples=100, alpha=0.7)
    with pytest.raises(ValueError, match="names"):
        select_structure(S, [10, 10], n_samples=100, names=["a"])
    with pytest.raises(ValueError, match="max_rank"):
        select_structure(S, [10, 10], n_samples=100, max_rank=0)
    with pytest.raises(ValueError, match="fraction"):
        structure_stability([np.zeros((10, 2))] * 2, fraction=1.5)


def test_input_not_modified():
    X = make_hierarchical(300, [10, 12], Structure({(0, 1): 1, (0,): 1, (1,): 1}),
                          singular_values=(1, 2), random_state=0)
    S, _, n = sample_covariance(X)
    S0 = S.copy()
    select_structure(S, [10, 12], n_samples=n)
    np.testing.assert_array_equal(S, S0)


# -- the budget max_components -------------------------------------------------------------

BUDGET_WIDTHS = [30, 40, 50]
BUDGET_TRUTH = Structure({(0, 1, 2): 1, (0, 1): 2, (1,): 1, (2,): 1})
# variance of each factor in each modality of its subset (the loadings' squared column
# norms; unit noise), fixed so that the strengths are well separated
BUDGET_VARIANCE = {(0, 1, 2): [5.0], (0, 1): [4.0, 1.5], (1,): [4.5], (2,): [1.2]}


def _budget_data(n, seed):
    """Loadings with orthogonal columns of the variances above, and data from them."""
    from hcl_stats.datasets import make_loadings

    W = make_loadings(BUDGET_WIDTHS, BUDGET_TRUTH, singular_values=1.0, random_state=seed)
    for subset, variances in BUDGET_VARIANCE.items():
        W[:, BUDGET_TRUTH.columns(subset)] *= np.sqrt(variances)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, BUDGET_TRUTH.n_components))
    X = Z @ W.T + rng.standard_normal((n, W.shape[0]))
    return W, np.split(X, np.cumsum(BUDGET_WIDTHS)[:-1], axis=1)


def _population_strengths(W):
    """Brute force from the truth: per factor, its variance in each modality of its block
    over that modality's mean population eigenvalue, summed over the block, strongest
    first (here every block's columns are orthogonal, so they are its principal axes)."""
    Sigma = W @ W.T + np.eye(W.shape[0])
    bounds = np.cumsum([0] + BUDGET_WIDTHS)
    mean_eig = [np.trace(Sigma[a:b, a:b]) / (b - a) for a, b in zip(bounds, bounds[1:])]
    out = []
    for subset, _ in BUDGET_TRUTH.blocks:
        for j in range(BUDGET_TRUTH.columns(subset).start,
                       BUDGET_TRUTH.columns(subset).stop):
            v = sum(np.sum(W[bounds[m]:bounds[m + 1], j] ** 2) / mean_eig[m] for m in subset)
            out.append((v, subset))
    return sorted(out, key=lambda t: -t[0])


def test_budget_keeps_the_strongest_factors_of_the_truth():
    W, X = _budget_data(2000, 0)
    strengths = _population_strengths(W)
    values = [v for v, _ in strengths]
    assert min(a / b for a, b in zip(values, values[1:])) > 1.4  # a clear order
    K = BUDGET_TRUTH.n_components
    assert _select(X).structure == BUDGET_TRUTH
    # a budget of the true K (or more) keeps the true structure, and says so
    for budget in (K, K + 3):
        result = _select(X, max_components=budget)
        assert result.structure == BUDGET_TRUTH
        rows = result.evidence[result.evidence.step == "budget"]
        assert len(rows) == 1 and rows.selected.all()
    # smaller budgets drop the weakest factors of the truth first; a block whose rank
    # reaches 0 is removed
    for budget in range(K - 1, 0, -1):
        kept = {}
        for _, subset in strengths[:budget]:
            kept[subset] = kept.get(subset, 0) + 1
        result = _select(X, max_components=budget)
        assert result.structure == Structure(kept, modalities=3), budget
        assert result.specific_rank.tolist() == [kept.get((m,), 0) for m in range(3)]
    # the evidence gives every factor's strength, close to the population's (sample
    # eigenvalues overstate the weakest spike by about (d / n) / ell, 10% here)
    rows = result.evidence[result.evidence.step == "budget"]
    np.testing.assert_allclose(np.sort(rows.value.to_numpy())[::-1], values, rtol=0.15)
    assert rows.selected.sum() == 1 and rows[rows.selected].subset.tolist() == ["{0,1,2}"]


def test_budget_through_hcl_and_a_modality_left_without_factors():
    W, X = _budget_data(2000, 1)
    model = HCL(max_components=3).fit(X)
    assert model.structure_ == Structure({(0, 1, 2): 1, (0, 1): 1, (1,): 1})
    assert "budget" in set(model.selection_.step)
    truth = Structure({(0, 1): 1, (2,): 1})
    X = make_hierarchical(1000, [20, 20, 20], truth, singular_values=2.0, random_state=3)
    with pytest.warns(UserWarning, match=r"no factor detected or kept within "
                                         r"max_components=1 in modality \[2\]"):
        result = _select(X, max_components=1)
    assert result.structure == Structure({(0, 1): 1}, modalities=3)
    assert result.no_factor == [2]
    with pytest.raises(ValueError, match="max_components"):
        select_structure(np.eye(20), [10, 10], n_samples=100, max_components=0)


# -- stability ---------------------------------------------------------------------------

def test_stability_frequencies_high_signal():
    truth = Structure({(0, 1, 2): 1, (0, 2): 2, (1,): 2, (2,): 1})
    X = make_hierarchical(1500, [50, 60, 70], truth, singular_values=(1, 2), random_state=21)
    res = structure_stability(X, n_resamples=8, random_state=0)
    assert res.structure == truth
    freq = dict(zip(res.subsets.subset, res.subsets.frequency))
    for s in truth.subsets:
        assert freq[truth.label(s)] >= 0.9
    for label, f in freq.items():
        if label not in {truth.label(s) for s in truth.subsets}:
            assert f <= 0.1
    # loadings of a clear block vary little between subsamples
    assert (res.blocks.angle_median < 20).all()
    assert len(res.blocks) == sum(len(s) for s in truth.subsets)


@pytest.mark.slow
def test_selection_study_full():
    """``python -m simulations selection --fit --check-threads`` (random structures,
    M = 3..6, 20 draws per (M, kappa), kappa 0.5, 2, 4; docs/selection.md gives its
    numbers): exact structure in at least 95% of the above-detection draws (at least 90%
    for each M), at most 5% invented subsets below detection, never a modality with as
    many factors as features, the same selection with 1 and 2 BLAS threads, and every
    ``HCL()`` fit that follows converged with its defaults."""
    from simulations.selection_study import run_study

    df = run_study(compare=False, fit=True, check_threads=True)
    above, below = df[df["kappa"] >= 2], df[df["kappa"] < 1]
    assert (above["min_block_ratio"] >= 2 - 1e-9).all()  # twice the detection threshold
    assert above["exact"].mean() >= 0.95
    assert (above.groupby("M")["exact"].mean() >= 0.9).all()
    assert below["false_pos"].sum() / below["n_absent"].sum() <= 0.05
    assert below["false_pos_shared"].sum() / below["n_absent_shared"].sum() <= 0.05
    assert (df["full_rank_modalities"] == 0).all()
    assert df["same_threads"].all()
    assert (above["fit_converged"] == 1).all()
    fitted = df["fit_converged"].notna()  # below detection something may be found and fitted
    assert (df.loc[fitted, "fit_converged"] == 1).all()


@pytest.mark.slow
def test_selection_study_narrow_modalities():
    """``python -m simulations selection --widths 20 60 200 --snr 2 4``: modalities of
    unequal widths, where about half of the draws have a factor above detection but below
    the strength floor. Draws with every factor above the floor (and at most half of each
    modality's features taken by factors) are recovered as in the standard design; the
    draws below it keep the rate of the tests alone, because their noise is white beyond
    the factors and the floor does not apply."""
    from simulations.selection_study import run_study

    widths = (20, 60, 200)
    df = run_study(kappas=(2.0, 4.0), compare=False,
                   p=lambda M: [widths[m % 3] for m in range(M)])
    df0 = run_study(kappas=(2.0, 4.0), compare=False, select_kw={"strength": 0.0},
                    p=lambda M: [widths[m % 3] for m in range(M)])
    within = df["max_factor_share"] <= 0.5
    strong = within & (df["min_kaiser_ratio"] >= 1)
    weak = within & (df["min_kaiser_ratio"] < 1)
    assert strong.sum() >= 40 and weak.sum() >= 40
    assert df.loc[strong, "exact"].mean() >= 0.95
    assert df.loc[weak, "exact"].mean() >= df0.loc[weak, "exact"].mean() - 0.05
    assert (df["full_rank_modalities"] == 0).all()


def test_strength_floor_is_not_applied_to_a_white_bulk():
    """A narrow modality (12 features, 5 factors): its weakest factor is above the noise
    edge but below the mean eigenvalue (a plain Kaiser rule would drop it); the noise
    beyond the factors is white, so the floor does not apply and the structure is exact."""
    truth = Structure({(0, 1, 2): 2, (0, 1): 1, (0,): 2, (1,): 1, (2,): 2})
    widths = [12, 60, 120]
    X, tr = make_hierarchical(2000, widths, truth, singular_values=(0.6, 1.6),
                              random_state=1, return_truth=True)
    B = tr.W[:12][:, np.abs(tr.W[:12]).sum(0) > 0]
    population = np.linalg.eigvalsh(B @ B.T + np.eye(12))[::-1]
    assert population[4] < population.mean()  # below the Kaiser floor in the population
    S, _, n = sample_covariance(X)
    sample = np.linalg.eigvalsh(S[:12, :12])[::-1]
    assert np.sum(sample > sample.mean()) < truth.modality_rank(0)  # and in the sample
    result = select_structure(S, widths, n_samples=n)
    assert result.structure == truth
    rows = result.evidence[result.evidence.step == "strength"]
    assert len(rows) == 3 and not rows.selected.any()  # no modality rejects whiteness


@pytest.mark.parametrize("standardise", [False, True])
def test_strength_floor_applies_on_real_data(standardise):
    """Real spectra are not white beyond their factors: the floor applies in every
    modality, and step 1 keeps no more of a modality's eigenvalues than exceed their mean
    (the Kaiser count, computed here from the data)."""
    from hcl_stats.datasets import load_breast_cancer_modalities, load_digits_quadrants

    for data in (load_breast_cancer_modalities(), load_digits_quadrants()):
        X = list(data.views.values())
        if standardise:
            X = [(v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1) for v in X]
        widths = [x.shape[1] for x in X]
        S, _, n = sample_covariance(X)
        result = select_structure(S, widths, n_samples=n)
        rows = result.evidence[result.evidence.step == "strength"]
        sphericity = rows[rows.statistic.str.startswith("sphericity")]
        assert len(sphericity) == len(X) and sphericity.selected.all()
        ranks = result.evidence[result.evidence.step == "modality rank"]
        for m, x in enumerate(X):
            ev = np.linalg.eigvalsh(np.cov(x, rowvar=False))
            assert ranks[ranks.modality == m].selected.sum() <= np.sum(ev > ev.mean())


def test_selection_study_small():
    """The selection study in small: random structures above detection (exact, converged
    HCL() fit, same selection with 1 and 2 BLAS threads, fewer factors than features) and
    below it (no invented subset); the full study is ``test_selection_study_full``."""
    from simulations.selection_study import run_study

    above = run_study(Ms=(3, 5), kappas=(2.0,), reps=2, compare=False, seed=2026,
                      fit=True, check_threads=True)
    assert (above["min_block_ratio"] >= 2 - 1e-9).all()
    assert above["exact"].all() and above["same_threads"].all()
    assert (above["fit_converged"] == 1).all() and above["fit_exact"].all()
    assert (above["full_rank_modalities"] == 0).all()
    below = run_study(Ms=(6,), kappas=(0.5,), reps=2, compare=False, seed=2026)
    assert below["false_pos"].sum() / below["n_absent"].sum() <= 0.05


def test_selection_identical_with_one_and_two_blas_threads():
    """Six modalities of 6 to 240 features, n = 2000: the eigen- and singular value
    decompositions of the larger blocks differ in the last bits with the BLAS thread
    count, which must not change any decision or statistic."""
    from threadpoolctl import threadpool_limits

    widths = [6, 20, 40, 80, 160, 240]
    truth = Structure({(0, 1, 2, 3, 4, 5): 2, (0, 1, 2): 1, (3, 4, 5): 2, (1, 4): 1,
                       (0,): 1, (2,): 1, (5,): 2})
    for seed in (0, 1):
        X = make_hierarchical(2000, widths, truth, singular_values=(0.3, 0.9),
                              random_state=seed)
        S, _, n = sample_covariance(X)
        results = []
        for threads in (1, 2):
            with threadpool_limits(threads):
                results.append(select_structure(S, widths, n_samples=n))
        one, two = results
        assert one.structure == two.structure
        pd.testing.assert_frame_equal(one.evidence, two.evidence, check_exact=True)
        for field in ("noise_variance", "modality_rank", "pair_rank", "specific_rank"):
            np.testing.assert_array_equal(getattr(one, field), getattr(two, field))


def test_a_modality_keeps_fewer_factors_than_features():
    """Blocks that give a modality as many factors as it has features lose its weakest
    factor (the step that follows the consensus ranks). Here the true structure has one
    specific factor on the 4-feature modality, the blocks offered two: the spurious second
    one, noise, is dropped and the truth is what remains."""
    from hcl_stats._estimation import selection as sel

    truth = Structure({(0, 1): 2, (0,): 1, (1,): 2})
    X = make_hierarchical(4000, [4, 12], truth, singular_values=(1.5, 2.5), noise_variance=0.2,
                          random_state=0)
    S = np.cov(np.hstack(X), rowvar=False)
    rows = row_slices([4, 12])
    spectra = [(w[::-1], V[:, ::-1]) for w, V in (np.linalg.eigh(S[r, r]) for r in rows)]
    noise = np.full(2, 0.2)
    record = sel._Evidence(None)
    offered = {(0, 1): 2, (0,): 2, (1,): 2}
    kept = sel._fewer_than_features(S, rows, [4, 12], sel._Dof(4000), offered, noise, spectra,
                                    record)
    assert kept == dict(truth.blocks)
    capped = [row for row in record.rows if row[0] == "modality cap"]
    assert [(row[1], row[2], row[-1]) for row in capped] == [((0,), 0, 1)]
    # nothing to cap: the blocks are returned as they are
    assert sel._fewer_than_features(S, rows, [4, 12], sel._Dof(4000), dict(truth.blocks),
                                    noise, spectra, record) == dict(truth.blocks)


def _wide_shared_only(n, p, reps, alpha=0.05):
    """Draws (of ``reps``) with an invented specific factor, and the selected noise
    variances, for two modalities of ``p > n`` white features (variance 1) sharing two
    strong factors and nothing else."""
    truth = Structure({(0, 1): 2})
    invented, noise = 0, []
    for r in range(reps):
        X = make_hierarchical(n, [p, p], truth, noise_variance=1.0, singular_values=(20, 30),
                              random_state=r)
        S, _, n_s = sample_covariance(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = select_structure(S, [p, p], n_samples=n_s, alpha=alpha)
        invented += any(len(s) == 1 for s in res.structure.subsets)
        noise.append(res.noise_variance)
    return invented, np.array(noise)


def test_specific_rank_level_and_noise_with_more_features_than_samples():
    """Step 5 on p > n: removing the c shared directions (which lie in the range of S_mm)
    leaves n - 1 - c non-zero eigenvalues, so the compressed spectrum is tested as p - c
    features with n - 1 - c degrees of freedom, and its noise variance is unbiased; with
    n - 1 degrees of freedom the noise came out low by (n - 1 - c) / (n - 1) = 0.95 here
    and a specific factor was invented in about 20% of the draws at alpha = 0.05."""
    import scipy.stats

    reps, alpha = 50, 0.05
    invented, noise = _wide_shared_only(40, 150, reps, alpha)
    assert invented <= scipy.stats.binom.ppf(0.999, reps, alpha), invented
    se = noise.std(axis=0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(noise.mean(axis=0) - 1.0) < 4 * se + 1e-3), (noise.mean(axis=0), se)


@pytest.mark.slow
@pytest.mark.parametrize("n, p", [(40, 150), (60, 400)])  # dense and range_eigh paths
def test_specific_rank_level_with_more_features_than_samples_full(n, p):
    import scipy.stats

    reps, alpha = 400, 0.05
    invented, _ = _wide_shared_only(n, p, reps, alpha)
    assert invented <= scipy.stats.binom.ppf(0.999, reps, alpha), invented


def test_a_constant_feature_does_not_decide_by_a_rounding_sign():
    """A constant feature has the eigenvalue 0, which an eigensolver returns as a rounding
    error of either sign. A perturbation of that size (here on the constant feature's
    variance, either sign) leaves the selection and its evidence unchanged (the same
    tests, decisions and, to rounding, values): the modality
    counts as singular either way, so the tests that whiten all its features never run."""
    truth = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    X = make_hierarchical(400, [8, 8, 8], truth, noise_variance=0.5,
                          singular_values=(1.5, 2.5), random_state=3)
    X[2] = np.hstack([X[2], np.zeros((400, 1))])  # a constant ninth feature in modality 2
    S, _, n = sample_covariance(X)
    j = S.shape[0] - 1
    results = []
    for sign in (1.0, -1.0):
        Sj = S.copy()
        Sj[j, j] = sign * 1e-17 * np.abs(S).max()
        results.append(select_structure(Sj, [8, 8, 9], n_samples=n))
    one, two = results
    assert one.structure == truth and two.structure == truth
    # the same tests and decisions; the values agree to rounding (the matrices differ)
    pd.testing.assert_frame_equal(one.evidence, two.evidence, check_exact=False, rtol=1e-10)
    pairs = one.evidence[one.evidence.step == "pair rank"].statistic
    assert not pairs.str.contains("all features of 2").any()
    assert pairs.str.contains("all features of 0").any()  # modality 0 is nonsingular
