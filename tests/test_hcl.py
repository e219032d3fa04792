"""HCL against independent truth: PPCA closed forms, generic optimisers, simulated ground truth."""

import warnings

import numpy as np
import pytest
import scipy.optimize
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from hcl_stats import HCL, Structure
from hcl_stats.baselines import ConcatSVD
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import block_sin_theta, gram_errors

AUTHORS_WIDTHS = [100, 500, 800]


def _objective_and_grad(S_W, mask):
    """The paper's objective written independently of the package (test oracle)."""

    def fg(x):
        W = np.zeros(mask.shape)
        W[mask] = x
        R = W @ W.T - S_W
        return 0.5 * np.sum(R * R), (2.0 * R @ W)[mask]

    return fg


def _random_structure(rng, M):
    """A random structure on M modalities with unequal ranks, every modality covered."""
    from itertools import combinations

    subsets = [c for k in range(2, M + 1) for c in combinations(range(M), k)]
    picked = [subsets[i] for i in rng.choice(len(subsets), size=min(3, len(subsets)),
                                              replace=False)]
    blocks = {s: int(rng.integers(1, 4)) for s in picked}
    blocks[tuple(range(M))] = int(rng.integers(1, 4))
    for m in range(M):
        if rng.random() < 0.7 or not any(m in s for s in blocks):
            blocks[(m,)] = int(rng.integers(1, 4))
    return Structure(blocks, modalities=M)


# -- degenerate cases: closed forms from scikit-learn -------------------------------------------

def test_one_modality_is_probabilistic_pca(rng):
    X = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    model = HCL(Structure({(0,): 3})).fit([X])
    pca = PCA(n_components=3).fit(X)
    np.testing.assert_allclose(model.get_covariance(), pca.get_covariance(), rtol=1e-6,
                               atol=1e-8)
    assert model.noise_variance_[0] == pytest.approx(pca.noise_variance_)
    assert model.converged_


def test_global_only_equals_ppca_of_stacked_data():
    st = Structure({(0, 1, 2): 4})
    X = make_hierarchical(800, [10, 15, 20], st, noise_variance=0.5, random_state=1)
    model = HCL(st).fit(X)
    pca = PCA(n_components=4).fit(np.hstack(X))
    np.testing.assert_allclose(model.get_covariance(), pca.get_covariance(), rtol=1e-6,
                               atol=1e-8)
    ppca = ConcatSVD(4, denoise="isotropic").fit(X)
    np.testing.assert_allclose(ppca.get_covariance(), pca.get_covariance(), rtol=1e-8,
                               atol=1e-8)


def test_specific_only_with_modality_noise_is_per_modality_ppca():
    st = Structure({(0,): 2, (1,): 3})
    X = make_hierarchical(700, [9, 14], Structure({(0, 1): 1, (0,): 2, (1,): 3}),
                          noise_variance=[0.3, 0.8], random_state=2)
    model = HCL(st, denoise="modality", tol=1e-8).fit(X)
    for m, r in enumerate([2, 3]):
        pca = PCA(n_components=r).fit(X[m])
        B = model.block_loadings(m, (m,))
        expected = pca.get_covariance() - pca.noise_variance_ * np.eye(X[m].shape[1])
        np.testing.assert_allclose(B @ B.T, expected, rtol=1e-5, atol=1e-7)
        assert model.noise_variance_[m] == pytest.approx(pca.noise_variance_)


# -- convergence to the optimum of the objective ----------------------------------------------

@pytest.mark.parametrize("solver", ["lbfgs", "subspace"])
def test_reaches_optimum_of_generic_optimiser(solver):
    st = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 2, (0,): 1, (2,): 1})
    widths = [15, 20, 25]
    X = make_hierarchical(400, widths, st, noise_variance=1.0, random_state=3)
    model = HCL(st, solver=solver, tol=1e-7, max_iter=5000).fit(X)
    assert model.converged_
    S = np.cov(np.hstack(X), rowvar=False)
    S_W = S - model.noise_variance_[0] * np.eye(S.shape[0])
    mask = st.mask(widths)
    fg = _objective_and_grad(S_W, mask)
    f_hcl, g_hcl = fg(model.loadings_[mask])
    assert f_hcl == pytest.approx(model.objective_, rel=1e-10)
    # a long independent run from HCL's own solution finds nothing better
    long = scipy.optimize.minimize(fg, model.loadings_[mask], jac=True, method="BFGS",
                                   options={"gtol": 1e-12, "maxiter": 20000})
    assert long.fun >= f_hcl - 1e-8 * abs(f_hcl)
    # and the stationarity measure is small on the independent gradient
    W = model.loadings_
    assert np.linalg.norm(g_hcl) <= 1e-6 * np.linalg.norm((S_W @ W)[mask])


def test_authors_design_beats_reference_and_is_converged():
    """Authors' design (noise 6, n = 5000): mean overall Gram error <= 30 (theirs: 38.8).

    Also checks the objective against a long independent L-BFGS run from HCL's solution
    (within 0.1%, as the issue asks; in practice the two agree to ~1e-9).
    """
    st = Structure.full(3, rank=3)
    errors = []
    for rep in range(5):
        X, truth = make_hierarchical(5000, AUTHORS_WIDTHS, st, noise_variance=6.0,
                                     random_state=100 + rep, return_truth=True)
        model = HCL(st).fit(X)
        assert model.converged_
        errors.append(gram_errors(truth.W, model.loadings_, st, AUTHORS_WIDTHS)[1])
    assert np.mean(errors) <= 30.0
    S = np.cov(np.hstack(X), rowvar=False)
    S_W = S - model.noise_variance_[0] * np.eye(S.shape[0])
    mask = st.mask(AUTHORS_WIDTHS)

    def fg(x):
        W = np.zeros(mask.shape)
        W[mask] = x
        SW = S_W @ W
        G = W.T @ W
        f = 0.5 * (np.sum(S_W * S_W) - 2 * np.sum(W * SW) + np.sum(G * G))
        return f, (2 * (W @ G - SW))[mask]

    long = scipy.optimize.minimize(fg, model.loadings_[mask], jac=True, method="L-BFGS-B",
                                   options={"maxiter": 500, "ftol": 1e-16, "gtol": 1e-12})
    assert model.objective_ <= long.fun * (1 + 1e-3)
    assert model.objective_ == pytest.approx(fg(model.loadings_[mask])[0], rel=1e-10)


def test_convergence_warning_when_max_iter_reached():
    st = Structure.full(3, rank=2)
    X = make_hierarchical(300, [20, 25, 30], st, noise_variance=2.0, random_state=4)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = HCL(st, max_iter=2).fit(X)
    assert not model.converged_
    assert np.all(np.isfinite(model.loadings_))


# -- recovery of simulated ground truth ----------------------------------------------------------

@pytest.mark.parametrize("M", [2, 3, 4, 5])
def test_recovery_any_number_of_modalities(M):
    rng = np.random.default_rng(10 + M)
    st = _random_structure(rng, M)
    widths = [int(w) for w in rng.integers(100, 301, size=M)]
    errs = {}
    for n in (1000, 5000):
        X, truth = make_hierarchical(n, widths, st, noise_variance=0.1,
                                     random_state=int(rng.integers(1 << 31)),
                                     return_truth=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            model = HCL(st).fit(X)
        assert np.all(model.loadings_[~st.mask(widths)] == 0.0)  # exact zero pattern
        errs[n] = np.mean(list(block_sin_theta(truth.W, model.loadings_, st, widths,
                                               structure_hat=model.structure_).values()))
    assert errs[5000] < 0.2
    assert errs[5000] < errs[1000]


def test_reproducible_and_invariant_to_sample_and_modality_order():
    st = Structure({(0, 1, 2): 2, (0, 2): 1, (1,): 2, (2,): 1})
    widths = [30, 40, 35]
    X = make_hierarchical(1500, widths, st, noise_variance=0.2, random_state=5)
    a = HCL(st, random_state=0, tol=1e-8).fit(X)
    b = HCL(st, random_state=0, tol=1e-8).fit(X)
    assert np.array_equal(a.loadings_, b.loadings_)
    # permuting samples: same fit up to rounding
    perm = np.random.default_rng(6).permutation(1500)
    c = HCL(st, random_state=0, tol=1e-8).fit([x[perm] for x in X])
    for subset in st.subsets:
        cols = st.columns(subset)
        np.testing.assert_allclose(a.loadings_[:, cols] @ a.loadings_[:, cols].T,
                                   c.loadings_[:, cols] @ c.loadings_[:, cols].T, atol=1e-6)
    # reordering modalities (2, 0, 1): same block subspaces
    order = [2, 0, 1]
    st_perm = Structure({tuple(order.index(m) for m in s): r for s, r in st.blocks})
    d = HCL(st_perm, random_state=0, tol=1e-8).fit([X[m] for m in order])
    for subset in st.subsets:
        new_subset = tuple(sorted(order.index(m) for m in subset))
        for m in subset:
            B1 = a.block_loadings(m, subset)
            B2 = d.block_loadings(order.index(m), new_subset)
            np.testing.assert_allclose(B1 @ B1.T, B2 @ B2.T, atol=1e-6)


# -- scores, covariance, variance table ----------------------------------------------------------

def test_transform_is_the_gaussian_posterior_mean():
    st = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
    widths = [8, 9, 10]
    X = make_hierarchical(500, widths, st, noise_variance=[0.2, 0.4, 0.6], random_state=7)
    model = HCL(st, denoise="modality").fit(X)
    new = make_hierarchical(20, widths, st, noise_variance=0.3, random_state=8)
    W = model.loadings_
    mu = np.concatenate(model.means_)
    sigma = model.get_covariance()
    # E[z | x] = W^T Sigma^{-1} (x - mu) for the Gaussian model (closed form, other route)
    expected = (np.hstack(new) - mu) @ np.linalg.solve(sigma, W)
    np.testing.assert_allclose(model.transform(new), expected, rtol=1e-8, atol=1e-8)
    # a missing modality: condition on the observed rows only
    obs = np.r_[0:8, 17:27]
    expected_missing = ((np.hstack([new[0], new[2]]) - mu[obs])
                        @ np.linalg.solve(sigma[np.ix_(obs, obs)], W[obs]))
    np.testing.assert_allclose(model.transform([new[0], None, new[2]]), expected_missing,
                               rtol=1e-8, atol=1e-8)
    # fit_transform: the posterior mean of the training samples, by the same closed form
    scores = HCL(st, denoise="modality").fit_transform(X)
    np.testing.assert_allclose(scores, (np.hstack(X) - mu) @ np.linalg.solve(sigma, W),
                               rtol=1e-8, atol=1e-8)


def test_explained_variance_adds_up():
    st = Structure({(0, 1): 2, (0,): 1, (1,): 1})
    X = make_hierarchical(600, [12, 15], st, noise_variance=0.5, random_state=9)
    model = HCL(st).fit(X)
    table = model.explained_variance()
    S = np.cov(np.hstack(X), rowvar=False)
    W = model.loadings_
    for m, rows in enumerate([slice(0, 12), slice(12, 27)]):
        row = table.iloc[m]
        assert row["total"] == pytest.approx(np.trace(S[rows, rows]))
        signal = row[[st.label(s) for s in st.subsets]].sum()
        assert signal == pytest.approx(np.trace(W[rows] @ W[rows].T))
        assert row["noise"] == pytest.approx(model.noise_variance_[m] * (rows.stop - rows.start))
        # residual: what the model covariance leaves of the sample covariance's trace
        sigma_mm = model.get_covariance()[rows, rows]
        assert row["residual"] == pytest.approx(np.trace(S[rows, rows]) - np.trace(sigma_mm),
                                                abs=1e-10)
    assert table.loc["1", "{0}"] == 0.0
    np.testing.assert_allclose(model.explained_variance(fraction=True)["total"], 1.0)


def test_block_loadings_errors():
    st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    model = HCL(st).fit(make_hierarchical(100, [4, 5], st, random_state=0))
    with pytest.raises(ValueError, match="not in block"):
        model.block_loadings(1, (0,))
    with pytest.raises(ValueError, match="not a block"):
        model.block_loadings(0, (0, 2))


def test_fit_from_covariance_equals_fit():
    st = Structure({(0, 1): 2, (0,): 1, (1,): 1})
    X = make_hierarchical(400, [10, 12], st, noise_variance=0.3, random_state=11)
    a = HCL(st).fit(X)
    S = np.cov(np.hstack(X), rowvar=False)
    b = HCL(st).fit_from_covariance(S, 400, [10, 12])
    np.testing.assert_allclose(a.loadings_, b.loadings_, atol=1e-8)
    with pytest.raises(ValueError, match="shape"):
        HCL(st).fit_from_covariance(S[:5, :5], 400, [10, 12])


# -- denoise="auto": the noise rule that goes with the weighting --------------------------------

AUTO_STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
AUTO_WIDTHS = [10, 60, 200]  # widths far apart: after scale="modality" the noise levels differ


def _auto_data(seed=5):
    return make_hierarchical(3000, AUTO_WIDTHS, AUTO_STRUCTURE, noise_variance=0.5,
                             singular_values=(1.0, 2.0), random_state=seed)


def test_denoise_auto_is_the_paper_rule_in_data_units():
    X = _auto_data()
    auto = HCL(AUTO_STRUCTURE).fit(X)
    assert auto.denoise_ == "isotropic" and auto.scale_ is None
    paper = HCL(AUTO_STRUCTURE, denoise="isotropic").fit(X)
    np.testing.assert_array_equal(auto.loadings_, paper.loadings_)
    np.testing.assert_array_equal(auto.noise_variance_, paper.noise_variance_)


def test_denoise_auto_with_a_weighting_recovers_each_modality_noise():
    # true noise 0.5 in every feature; after scale="modality" the modalities' noise levels
    # differ by their inverse widths, which one pooled variance cannot fit
    X = _auto_data()
    auto = HCL(AUTO_STRUCTURE, scale="modality").fit(X)
    assert auto.denoise_ == "modality" and auto.scale_ == "modality"
    np.testing.assert_allclose(auto.modality_noise_variance(), 0.5, rtol=0.05)
    with pytest.warns(UserWarning, match="exceed its total variance"):
        pooled = HCL(AUTO_STRUCTURE, scale="modality", denoise="isotropic").fit(X)
    assert np.max(np.abs(pooled.modality_noise_variance() / 0.5 - 1)) > 0.2
    # the reduced path and the likelihood refinement use the resolved rule as well
    for kw in ({"path": "reduced", "random_state": 0}, {"objective": "likelihood"}):
        fit = HCL(AUTO_STRUCTURE, scale="modality", **kw).fit(X)
        assert fit.denoise_ == "modality"
        np.testing.assert_allclose(fit.modality_noise_variance(), 0.5, rtol=0.05)


def test_denoise_auto_with_standardised_features_is_closer_than_pooled():
    # standardising makes the noise share differ from feature to feature (with the
    # feature's communality): the per-modality rule is closer to the truth than one pooled
    # variance, not exact (denoise="diagonal" is the rule for that)
    X = _auto_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        auto = HCL(AUTO_STRUCTURE, scale="features").fit(X)
        pooled = HCL(AUTO_STRUCTURE, scale="features", denoise="isotropic").fit(X)
    assert auto.denoise_ == "modality" and auto.scale_ == "features"
    errors = [np.abs(f.modality_noise_variance() / 0.5 - 1) for f in (auto, pooled)]
    assert np.all(errors[0] < errors[1])


def test_parameter_count_and_summary_follow_the_resolved_rule():
    X = _auto_data()
    d = sum(AUTO_WIDTHS)
    # brute force: free loadings of the mask minus block rotations, means, noise
    loadings = sum(r * sum(AUTO_WIDTHS[m] for m in s) - r * (r - 1) // 2
                   for s, r in AUTO_STRUCTURE.blocks)
    weighted = HCL(AUTO_STRUCTURE, scale="modality").fit(X)
    assert weighted.n_parameters() == loadings + d + 3  # one noise variance per modality
    assert HCL(AUTO_STRUCTURE).fit(X).n_parameters() == loadings + d + 1  # one for all
    info = weighted.summary().info_dict()
    assert info["Denoise"] == "modality" and info["Scale"] == "modality"
    assert HCL(AUTO_STRUCTURE).fit(X).summary().info_dict()["Scale"] == "none"


def test_selection_controls_need_structure_auto():
    X = _auto_data()
    for kw in ({"strength": 0.5}, {"max_components": 2}):
        with pytest.raises(ValueError, match="structure='auto'"):
            HCL(AUTO_STRUCTURE, **kw).fit(X)
    HCL(AUTO_STRUCTURE, strength=1.0, max_components=None).fit(X)  # the defaults are fine
    with pytest.raises(ValueError, match="strength"):
        HCL(strength=-1.0).fit(X)
    with pytest.raises(ValueError, match="max_components"):
        HCL(max_components=0).fit(X)
    with pytest.raises(ValueError, match="'auto', 'isotropic'"):
        HCL(denoise="pooled").fit(X)
    # given variances are in the data's units: refused for the weighted default fit
    with pytest.raises(ValueError, match="scale=None"):
        HCL(denoise=0.5).fit(X)
    # strength 0 keeps every factor the tests detect: at least as many as the floor's
    assert HCL(strength=0.0).fit(X).n_components_ >= HCL().fit(X).n_components_



def test_noise_rules_are_low_by_the_factors_share_of_the_samples():
    # docs/noise.md: with strong factors the mean of the trailing eigenvalues is about
    # sigma^2 (n - 1 - r) / (n - 1) (the residual degrees of freedom of a rank-r fit),
    # whether the modality is narrower (20) or wider (200) than the samples are many (40)
    rng = np.random.default_rng(0)
    n, widths, ranks = 40, (20, 200), (4, 3)
    per_modality, pooled = [], []
    for _ in range(100):
        X = []
        for p, r in zip(widths, ranks):  # rank-r signal, eigenvalues >> sigma^2 = 1
            W = np.linalg.qr(rng.standard_normal((p, r)))[0] * np.arange(r + 1, 1, -1)
            X.append(rng.standard_normal((n, r)) @ (np.sqrt(p) * W.T)
                     + rng.standard_normal((n, p)))
        structure = Structure({(0,): ranks[0], (1,): ranks[1]})
        per_modality.append(HCL(structure, denoise="modality").fit(X).noise_variance_)
        pooled.append(HCL(Structure({(0,): ranks[0]}), denoise="isotropic")
                      .fit(X[:1]).noise_variance_[0])
    expected = [(n - 1 - r) / (n - 1) for r in ranks]
    np.testing.assert_allclose(np.mean(per_modality, axis=0), expected, atol=0.015)
    np.testing.assert_allclose(np.mean(pooled), expected[0], atol=0.015)
