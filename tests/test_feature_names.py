"""Feature names per modality, pandas output per structure block, rank and scale sanity."""

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest
from _estimators import all_estimator_classes, build

from hcl_stats import HCL, Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE, ConcatSVD
from hcl_stats.datasets import make_hierarchical

STRUCTURE = Structure({(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1})
WIDTHS = [6, 7, 8]
NAMES = ("ehr", "notes", "labs")
ESTIMATORS = all_estimator_classes()


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(80, WIDTHS, STRUCTURE, noise_variance=0.1, random_state=5)


def _frames(X):
    labels = [f"p{i:03d}" for i in range(X[0].shape[0])]
    return [pd.DataFrame(x, index=labels, columns=[f"{name}_{j}" for j in range(x.shape[1])])
            for x, name in zip(X, NAMES)]


def _model(cls):
    model = build(cls, STRUCTURE)
    if "random_state" in model.get_params():
        model.set_params(random_state=0)
    return model


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_feature_names_are_recorded_and_checked(cls, data):
    frames = _frames(data)
    model = _model(cls).fit(frames)
    for names, f in zip(model.feature_names_in_, frames):
        assert list(names) == list(f.columns)
    swapped = frames[1][list(frames[1].columns[::-1])]
    with pytest.raises(ValueError, match=r"modality 1: the feature names are those seen at "
                                         r"fit in another order \(column 0 is 'notes_6', at "
                                         r"fit 'notes_0'"):
        model.transform([frames[0], swapped, frames[2]])
    renamed = frames[2].rename(columns={"labs_3": "labs_x"})
    with pytest.raises(ValueError, match=r"modality 2: the feature names differ.*column 3 "
                                         r"is 'labs_x'.*1 name\(s\) unseen at fit"):
        model.transform([frames[0], frames[1], renamed])
    with pytest.warns(UserWarning, match="modality 0 does not have valid feature names"):
        model.transform([data[0], frames[1], frames[2]])
    on_arrays = _model(cls).fit(data)
    with pytest.warns(UserWarning, match="modality 1 has feature names, but"):
        on_arrays.transform([data[0], frames[1], data[2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_arrays.transform(data)  # arrays after arrays: silent


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pandas_output_has_sample_index_and_block_columns(cls, data):
    frames = _frames(data)
    named = dict(zip(NAMES, frames))
    model = _model(cls).fit(named)
    Z = model.transform(named)
    model.set_output(transform="pandas")
    order = np.random.default_rng(0).permutation(len(frames[0]))
    shuffled = {"ehr": frames[0].iloc[order], "notes": frames[1], "labs": frames[2]}
    table = model.transform(shuffled)
    assert isinstance(table, pd.DataFrame)
    assert table.index.equals(frames[0].index[order])  # the first modality's samples
    labels = [model.structure_.label(s) for s in model.structure_.subsets
              for _ in range(model.structure_.rank(s))]
    ranks = [k + 1 for s in model.structure_.subsets for k in range(model.structure_.rank(s))]
    assert list(table.columns) == [f"{lab}_{k}" for lab, k in zip(labels, ranks)]
    assert "{ehr,notes,labs}_1" in table.columns
    np.testing.assert_allclose(table.to_numpy(), Z[order], rtol=1e-10, atol=1e-12)
    assert isinstance(model.fit_transform(named), pd.DataFrame)


def test_feature_names_out_without_names(data):
    model = HCL(STRUCTURE).fit(data)
    assert list(model.get_feature_names_out()) == ["{0,1,2}_1", "{0}_1", "{1}_1", "{2}_1"]


def test_mudata_scores_are_written_back_as_obsm(data):
    anndata = pytest.importorskip("anndata")
    mudata = pytest.importorskip("mudata")
    frames = _frames(data)
    rng = np.random.default_rng(1)
    mods = {}
    for name, f in zip(NAMES, frames):
        f = f.iloc[rng.permutation(len(f))]
        mods[name] = anndata.AnnData(f.to_numpy(), obs=pd.DataFrame(index=f.index),
                                     var=pd.DataFrame(index=f.columns))
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData(mods)
    named = Structure({NAMES: 1, ("ehr",): 1, ("notes",): 1, ("labs",): 1})
    model = HCL(named).fit(mdata)
    mdata.obsm["X_hcl"] = model.transform(mdata)
    direct = HCL(named).fit(dict(zip(NAMES, frames)))
    expected = direct.transform({n: f.loc[mdata.obs_names] for n, f in zip(NAMES, frames)})
    np.testing.assert_allclose(mdata.obsm["X_hcl"], expected, rtol=1e-8, atol=1e-10)
    model.set_output(transform="pandas")
    mdata.obsm["hcl"] = model.transform(mdata)
    assert list(mdata.obsm["hcl"].index) == list(mdata.obs_names)
    ad = mods["notes"]  # an AnnData: its own order, from the pandas output
    ad.obsm["X_hcl"] = mdata.obsm["hcl"].loc[ad.obs_names].to_numpy()
    np.testing.assert_allclose(ad.obsm["X_hcl"],
                               pd.DataFrame(expected, index=mdata.obs_names).loc[ad.obs_names],
                               rtol=1e-8, atol=1e-10)


# -- total rank against the samples, whichever way the ranks were given -----------------------
@pytest.mark.parametrize("make", [
    lambda: HCL(STRUCTURE), lambda: HCL({(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1}),
    lambda: ConcatSVD(STRUCTURE), lambda: ConcatSVD(4), lambda: SLIDE(STRUCTURE),
    lambda: JIVE(STRUCTURE), lambda: JIVE(1, [1, 1, 1]), lambda: AJIVE(STRUCTURE),
    lambda: AJIVE(joint_rank=1, individual_ranks=[1, 1, 1], init_signal_ranks=[2, 2, 2]),
], ids=["HCL", "HCL-dict", "ConcatSVD", "ConcatSVD-int", "SLIDE", "JIVE", "JIVE-ints",
        "AJIVE", "AJIVE-ints"])
def test_total_rank_the_samples_cannot_carry_is_refused(make, data):
    few = [x[:4] for x in data]  # n - 1 = 3 < K = 4
    with pytest.raises(ValueError, match=r"4 factors in total but there are 4 samples"):
        make().fit(few)


def test_fit_from_covariance_checks_rank_against_samples(data):
    S = np.cov(np.hstack(data), rowvar=False)
    with pytest.raises(ValueError, match="4 factors in total but there are 5 samples"):
        HCL(STRUCTURE).fit_from_covariance(S, n_samples=5, n_features=WIDTHS)


# -- noise bigger than the data -----------------------------------------------------------------
def test_noise_larger_than_a_modality_warns_at_fit():
    rng = np.random.default_rng(2)
    X = make_hierarchical(500, WIDTHS, STRUCTURE, noise_variance=0.1, random_state=2)
    X = [X[0] * 1e-3, X[1], X[2] * 30 + rng.normal(size=X[2].shape)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = HCL(STRUCTURE).fit(X)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert any(m.startswith("modality 0: the fitted noise and signal exceed its total "
                            "variance") and "denoise='modality'" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line
    table = model.explained_variance()
    assert table.loc["0", "residual"] < -0.05 * table.loc["0", "total"]
    # the warning quotes the variance table's residual
    assert any(f"(residual {table.loc['0', 'residual']:.4g} in explained_variance())" in m
               for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fitted = HCL(STRUCTURE, denoise="modality").fit(X)
    table = fitted.explained_variance()
    assert (table["residual"] >= -0.05 * table["total"]).all()


# -- names bind by name in every estimator ---------------------------------------------------------
@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_named_structure_with_unknown_names_is_refused_by_every_estimator(cls, data):
    wrong = Structure({("ehr", "notes", "imaging"): 1, ("ehr",): 1, ("notes",): 1,
                       ("imaging",): 1})
    with pytest.raises(ValueError, match="'imaging'"):
        _model(cls).set_params(**{_structure_param(cls): wrong}).fit(dict(zip(NAMES, data)))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_named_structure_binds_by_name_in_every_estimator(cls, data):
    named = Structure({NAMES: 1, ("ehr",): 2, ("notes",): 1, ("labs",): 1})
    X = make_hierarchical(300, WIDTHS, named.bind(NAMES), noise_variance=0.1, random_state=7)
    order = ("labs", "ehr", "notes")
    a = _model(cls).set_params(**{_structure_param(cls): named}).fit(dict(zip(NAMES, X)))
    b = _model(cls).set_params(**{_structure_param(cls): named}).fit(
        {k: X[NAMES.index(k)] for k in order})
    assert b.modality_names_in_ == order
    for name in NAMES:  # each modality keeps its own number of factors and covariance
        ia, ib = NAMES.index(name), order.index(name)
        assert a.structure_.modality_rank(ia) == b.structure_.modality_rank(ib)
        rows_a, rows_b = a._rows()[ia], b._rows()[ib]
        np.testing.assert_allclose(b.get_covariance()[rows_b, rows_b],
                                   a.get_covariance()[rows_a, rows_a], rtol=0.1, atol=0.02)


def _structure_param(cls):
    """The constructor argument that takes the Structure (the first one)."""
    return list(inspect.signature(cls.__init__).parameters)[1]


@pytest.mark.parametrize("make", [
    lambda: JIVE(rank_selection="permutation", n_permutations=10, random_state=0),
    lambda: AJIVE(n_wedin_samples=50, n_randdir_samples=50, random_state=0)],
    ids=["JIVE", "AJIVE"])
def test_selected_ranks_the_samples_cannot_carry_are_refused(make, data):
    with pytest.raises(ValueError, match=r"factors in total but there are 4 samples"):
        make().fit([x[:4] for x in data])
