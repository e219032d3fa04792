"""Fits of data with missing modalities and missing cells (the pairwise covariance).

Oracles: the simulated truth (block sin-theta against the fit on the complete data and the
complete-case fit), a pairwise covariance computed here by a loop over pairs of features,
its eigen-decomposition by NumPy (ConcatSVD), counts of the observed rows, and the
in-memory fit for Dask input.
"""

import numpy as np
import pandas as pd
import pytest
from _estimators import build

from hcl_stats import HCL, Structure
from hcl_stats.baselines import JIVE, ConcatSVD
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import block_sin_theta

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (0,): 1, (2,): 2})
WIDTHS = [20, 30, 25]
N = 600


def _design(seed):
    """Data, truth, the data with a third of the samples missing in modalities 1 and 2
    (independently), and the mask of the complete cases."""
    X, truth = make_hierarchical(N, WIDTHS, STRUCTURE, noise_variance=0.5,
                                 random_state=seed, return_truth=True)
    rng = np.random.default_rng(100 + seed)
    missing = [np.zeros(N, dtype=bool), rng.random(N) < 1 / 3, rng.random(N) < 1 / 3]
    Xm = [x.copy() for x in X]
    for x, rows in zip(Xm, missing):
        x[rows] = np.nan
    return X, truth, Xm, ~(missing[1] | missing[2])


def _pairwise(blocks):
    """Reference pairwise covariance: observed means, samples observing both features."""
    Z = np.hstack(blocks)
    O = ~np.isnan(Z)
    mu = np.array([Z[O[:, j], j].mean() for j in range(Z.shape[1])])
    S = np.empty((Z.shape[1],) * 2)
    for j in range(Z.shape[1]):
        for k in range(Z.shape[1]):
            both = O[:, j] & O[:, k]
            S[j, k] = np.sum((Z[both, j] - mu[j]) * (Z[both, k] - mu[k])) / (both.sum() - 1)
    return S


def _error(model, truth):
    d = block_sin_theta(truth.W, model.loadings_, STRUCTURE, WIDTHS,
                        structure_hat=model.structure_)
    return float(np.mean(list(d.values())))


def _finite_attributes(model):
    for name, value in vars(model).items():
        if name.endswith("_") and isinstance(value, (np.ndarray, float)):
            assert np.all(np.isfinite(value)), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_given_structure_recovers_the_truth_from_incomplete_data(seed):
    X, truth, Xm, cc = _design(seed)
    before = [x.copy() for x in Xm]
    model = HCL(STRUCTURE).fit(Xm)
    assert model.converged_
    _finite_attributes(model)
    complete = _error(HCL(STRUCTURE).fit(X), truth)
    cases = _error(HCL(STRUCTURE).fit([x[cc] for x in X]), truth)
    assert _error(model, truth) < cases
    assert _error(model, truth) <= 1.3 * complete
    for x, b in zip(Xm, before):  # the user's arrays are not modified
        np.testing.assert_array_equal(x, b)


@pytest.mark.filterwarnings("ignore:modality .* the fitted noise and signal:UserWarning")
def test_selected_structure_from_incomplete_data():
    X, truth, Xm, cc = _design(0)
    model = HCL().fit(Xm)
    assert model.converged_
    _finite_attributes(model)
    assert _error(model, truth) < _error(HCL().fit([x[cc] for x in X]), truth)
    assert _error(model, truth) <= 1.3 * _error(HCL().fit(X), truth)


def test_joint_counts_and_variance_totals_are_those_of_the_pairwise_covariance():
    _, _, Xm, _ = _design(1)
    Xm[0][[3, 8], [1, 4]] = np.nan  # scattered cells in the complete modality too
    model = HCL(STRUCTURE).fit(Xm)
    rows = np.column_stack([~np.isnan(x).all(axis=1) for x in Xm]).astype(int)
    np.testing.assert_array_equal(model.n_joint_samples_, rows.T @ rows)
    S = _pairwise(Xm)
    starts = np.cumsum([0] + WIDTHS)
    traces = [np.trace(S[a:b, a:b]) for a, b in zip(starts[:-1], starts[1:])]
    table = model.explained_variance()
    np.testing.assert_allclose(table["total"], traces, rtol=1e-12)
    # the rows add up to the totals, as for complete data
    np.testing.assert_allclose(table.drop(columns="total").sum(axis=1), traces, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(model.means_),
                               np.concatenate([np.nanmean(x, axis=0) for x in Xm]), rtol=1e-13)


def test_concat_svd_fits_the_pairwise_covariance():
    _, _, Xm, _ = _design(2)
    K = STRUCTURE.n_components
    model = ConcatSVD(K).fit(Xm)
    values, vectors = np.linalg.eigh(_pairwise(Xm))
    top = vectors[:, ::-1][:, :K] * np.sqrt(values[::-1][:K])
    np.testing.assert_allclose(model.loadings_ @ model.loadings_.T, top @ top.T,
                               rtol=0, atol=1e-8 * values[-1])
    assert model.n_joint_samples_[1, 2] < N


def test_frames_with_different_samples_fit_as_nan_rows():
    _, _, Xm, _ = _design(0)
    labels = np.array([f"s{i:03d}" for i in range(N)])
    frames = [pd.DataFrame(x, index=labels) for x in Xm]
    # each modality holds only the samples that observe it, in another order
    rng = np.random.default_rng(5)
    partial = [frames[0]] + [f[~np.isnan(f.to_numpy()).all(axis=1)].iloc[
        rng.permutation(int((~np.isnan(f.to_numpy()).all(axis=1)).sum()))] for f in frames[1:]]
    before = [f.copy() for f in partial]
    model = HCL(STRUCTURE).fit(partial)
    reference = HCL(STRUCTURE).fit(Xm)
    np.testing.assert_allclose(model.loadings_, reference.loadings_, rtol=1e-9, atol=1e-12)
    assert list(model.sample_index_) == list(labels)
    for f, b in zip(partial, before):
        pd.testing.assert_frame_equal(f, b)
    with pytest.raises(ValueError, match="absent from its index.*fits complete data only"):
        build(JIVE, STRUCTURE).fit(partial)


def test_dask_input_gives_the_in_memory_fit():
    da = pytest.importorskip("dask.array")
    _, _, Xm, _ = _design(1)
    lazy = [da.from_array(x, chunks=(100, -1)) for x in Xm]
    model = HCL(STRUCTURE).fit(lazy)
    reference = HCL(STRUCTURE).fit(Xm)
    # the same statistics up to rounding, the same solution to the solver's tolerance
    np.testing.assert_allclose(model.get_covariance(), reference.get_covariance(),
                               rtol=0, atol=1e-7)
    np.testing.assert_array_equal(model.n_joint_samples_, reference.n_joint_samples_)
    with pytest.raises(ValueError, match="objective='likelihood' is not supported with "
                                         "missing values"):
        HCL(STRUCTURE, objective="likelihood").fit(lazy)  # found as the chunks are read


def test_what_a_fit_with_missing_values_cannot_do_is_refused_before_reading():
    _, _, Xm, _ = _design(0)
    with pytest.raises(ValueError, match="missing values.*use path='covariance'"):
        HCL(STRUCTURE, path="reduced").fit(Xm)
    with pytest.raises(ValueError, match="objective='likelihood' is not supported"):
        HCL(STRUCTURE, objective="likelihood").fit(Xm)
    assert HCL(STRUCTURE, path="auto").fit(Xm).path_ == "covariance"


def test_selection_needs_pairs_observed_together():
    rng = np.random.default_rng(4)
    X = [rng.standard_normal((60, 4)) for _ in range(3)]
    X[1][:29] = np.nan
    X[2][30:] = np.nan  # modalities 1 and 2 share sample 29 only
    with pytest.raises(ValueError, match="modality 1 and modality 2 are observed together "
                                         "in 1: give the structure"):
        HCL().fit(X)


def test_fitted_counts_of_complete_data_and_summary_statistics():
    X, _, Xm, _ = _design(0)
    complete = HCL(STRUCTURE).fit(X)
    np.testing.assert_array_equal(complete.n_joint_samples_, np.full((3, 3), N))
    assert "samples" not in complete.summary().tables
    S = np.cov(np.hstack(X), rowvar=False)
    given = HCL(STRUCTURE).fit_from_covariance(S, N, WIDTHS)
    np.testing.assert_array_equal(given.n_joint_samples_, np.full((3, 3), N))
    assert np.all(build(JIVE, STRUCTURE).fit(X).n_joint_samples_ == N)
    summary = HCL(STRUCTURE).fit(Xm).summary()
    table = summary.tables["samples"]
    rows = np.column_stack([~np.isnan(x).all(axis=1) for x in Xm]).astype(int)
    np.testing.assert_array_equal(table.to_numpy(), rows.T @ rows)
    assert "samples" in str(summary) and "pairwise covariance" in str(summary)


def test_selection_takes_each_tests_own_sample_count():
    from hcl_stats._estimation.selection import select_structure
    from hcl_stats._statistics.covariance import sample_covariance
    from hcl_stats.datasets import mask_modalities

    truth = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (0,): 1, (1,): 2, (2,): 1})
    hits = 0
    for seed in range(4):
        X = make_hierarchical(600, [20, 30, 25], truth, noise_variance=1.0,
                              singular_values=(1, 2), random_state=seed)
        model = HCL().fit(mask_modalities(X, 1 / 3, modalities=[1, 2], random_state=seed))
        hits += model.structure_ == truth
        assert (model.n_joint_samples_ < 600).any()
    assert hits >= 3  # the complete data give the truth in every one of these seeds
    # complete data: counts of n everywhere are the complete-data selection itself
    X = make_hierarchical(400, [20, 30, 25], truth, noise_variance=1.0, random_state=9)
    S, _, n = sample_covariance(X)
    full = np.full((3, 3), n)
    a = select_structure(S, [20, 30, 25], n_samples=n)
    b = select_structure(S, [20, 30, 25], n_samples=n, joint_counts=full)
    assert a.structure == b.structure and a.evidence.equals(b.evidence)
    with pytest.raises(ValueError, match="joint_counts must be a symmetric"):
        select_structure(S, [20, 30, 25], n_samples=n, joint_counts=full[:2])
