"""Samples matched by label across modalities; MuData / AnnData input; missing cells named."""

import numpy as np
import pandas as pd
import pytest
from _estimators import all_estimator_classes, build

from hcl_stats import HCL, Structure
from hcl_stats._input.validation import check_structure, read_blocks
from hcl_stats.baselines import JIVE
from hcl_stats.datasets import make_hierarchical

STRUCTURE = Structure({(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1})
NAMED = Structure({("ehr", "notes", "labs"): 1, ("ehr",): 1, ("notes",): 1, ("labs",): 1})
WIDTHS = [6, 7, 8]
NAMES = ("ehr", "notes", "labs")


@pytest.fixture
def data():
    return make_hierarchical(80, WIDTHS, STRUCTURE, noise_variance=0.1, random_state=1)


def _frames(X, labels=None):
    labels = [f"p{i:03d}" for i in range(X[0].shape[0])] if labels is None else labels
    return [pd.DataFrame(x, index=labels, columns=[f"{name}_{j}" for j in range(x.shape[1])])
            for x, name in zip(X, NAMES)]


def _shuffled(frames, seed=0):
    rng = np.random.default_rng(seed)
    return [frames[0]] + [f.iloc[rng.permutation(len(f))] for f in frames[1:]]


@pytest.mark.parametrize("cls", all_estimator_classes(), ids=lambda c: c.__name__)
def test_reordered_index_gives_the_aligned_fit(cls, data):
    frames = _frames(data)
    aligned = build(cls, STRUCTURE).fit(frames)
    shuffled = build(cls, STRUCTURE).fit(_shuffled(frames))
    np.testing.assert_array_equal(shuffled.loadings_, aligned.loadings_)
    # the positional pairing of the same shuffled values is another (wrong) model
    positional = build(cls, STRUCTURE).fit([f.to_numpy() for f in _shuffled(frames)])
    assert not np.allclose(positional.get_covariance(), aligned.get_covariance())


def test_reordered_rows_are_put_in_the_first_modality_order(data):
    frames = _shuffled(_frames(data), seed=3)
    blocks = read_blocks(frames)
    assert blocks.sample_index.equals(frames[0].index)
    for arr, x in zip(blocks.arrays, data):
        np.testing.assert_array_equal(arr, x)  # the generating rows, paired again
    assert [list(f) for f in blocks.feature_names] == [list(f.columns) for f in frames]


def test_arrays_pair_by_position_with_the_labelled_order(data):
    frames = _shuffled(_frames(data), seed=4)
    X = [frames[0], frames[1], data[2]]  # the array is in the first modality's order
    blocks = read_blocks(X)
    np.testing.assert_array_equal(blocks.arrays[1], data[1])
    np.testing.assert_array_equal(blocks.arrays[2], data[2])
    with pytest.raises(ValueError, match="modality 2 has 79 samples.*pair by position"):
        read_blocks([frames[0], frames[1], data[2][:79]])


def test_disjoint_and_partial_indexes_are_refused_with_counts(data):
    frames = _frames(data)
    disjoint = frames[1].set_axis([f"q{i}" for i in range(80)], axis=0)
    with pytest.raises(ValueError, match=r"modality 1: 80 of its 80 sample labels are not "
                                         r"in modality 0.*160 unmatched"):
        read_blocks([frames[0], disjoint, frames[2]])
    partial = frames[2].iloc[5:]
    with pytest.raises(ValueError, match=r"modality 2 contains NaN: 40 missing value\(s\) in "
                                         r"5 sample\(s\).*absent from its index.*JIVE fits "
                                         r"complete data only"):
        build(JIVE, STRUCTURE).fit([frames[0], frames[1], partial])
    # HCL fits modalities missing for some samples (outer join): 75 samples observe the third
    counts = HCL(STRUCTURE).fit([frames[0], frames[1], partial]).n_joint_samples_
    np.testing.assert_array_equal(counts, [[80, 80, 75], [80, 80, 75], [75, 75, 75]])
    extra = pd.concat([frames[1], frames[1].iloc[:2].set_axis(["z1", "z2"], axis=0)])
    with pytest.raises(ValueError, match="2 of its 82 sample labels.*'z1', 'z2'"):
        read_blocks({"ehr": frames[0], "notes": extra, "labs": frames[2]})


def test_duplicated_labels_raise(data):
    frames = _frames(data)
    dup = frames[1].set_axis(list(frames[1].index[:-1]) + ["p000"], axis=0)
    with pytest.raises(ValueError, match="modality 1 has 1 duplicated sample label.*'p000'"):
        read_blocks([frames[0], dup, frames[2]])
    dup0 = frames[0].set_axis(["a"] * 80, axis=0)
    with pytest.raises(ValueError, match="modality 'ehr' has 1 duplicated"):
        read_blocks(dict(zip(NAMES, [dup0, frames[1], frames[2]])))


def test_series_of_rows(data):
    frames = _shuffled(_frames(data), seed=5)
    series = pd.Series(list(frames[1].to_numpy()), index=frames[1].index)
    blocks = read_blocks([frames[0], series, frames[2]])
    np.testing.assert_array_equal(blocks.arrays[1], data[1])
    with pytest.raises(ValueError, match="modality 1 is a Series of numbers"):
        read_blocks([frames[0], frames[1].iloc[:, 0], frames[2]])


def test_caller_frames_are_not_modified(data):
    frames = _shuffled(_frames(data), seed=6)
    before = [f.copy(deep=True) for f in frames]
    model = HCL(STRUCTURE).fit(frames)
    model.transform(frames)
    for f, b in zip(frames, before):
        pd.testing.assert_frame_equal(f, b)


# -- missing and infinite cells -------------------------------------------------------------
def test_missing_cells_are_named_and_counted(data):
    frames = _frames(data)
    nullable = frames[1].astype("Float64")
    nullable.iloc[2, 3] = pd.NA
    nullable.iloc[7, 0] = pd.NA
    # the data models refuse missing cells; HCL fits them (tests/test_missing_fit.py)
    jive = build(JIVE, STRUCTURE)
    with pytest.raises(ValueError, match=r"modality 1 contains NaN: 2 missing value\(s\) in "
                                         r"2 sample\(s\)"):
        jive.fit([frames[0], nullable, frames[2]])
    ints = frames[2].round().astype("Int64")
    ints.iloc[0, 0] = pd.NA
    with pytest.raises(ValueError, match="modality 'labs' contains NaN: 1 missing"):
        build(JIVE, NAMED).fit(dict(zip(NAMES, [frames[0], frames[1], ints])))
    cells = data[0].tolist()
    cells[4][1] = None
    cells[4][2] = None
    with pytest.raises(ValueError, match=r"modality 0 contains NaN: 2 missing value\(s\) in "
                                         r"1 sample"):
        jive.fit([cells, data[1], data[2]])
    obj = data[2].astype(object)
    obj[1, 1] = pd.NA
    with pytest.raises(ValueError, match="modality 2 contains NaN: 1 missing"):
        jive.fit([data[0], data[1], obj])
    assert HCL(STRUCTURE).fit([cells, data[1], obj]).converged_
    inf = data[1].copy()
    inf[[0, 3], [1, 2]] = [np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"modality 1 contains infinite values: 2 infinite"):
        HCL(STRUCTURE).fit([data[0], inf, data[2]])


def test_object_columns_with_text_are_not_numeric(data):
    frames = _frames(data)
    text = frames[0].astype(object)
    text.iloc[0, 0] = "1.5"  # text that reads as a number is still text
    with pytest.raises(TypeError, match="modality 0: column 'ehr_0' is not numeric"):
        read_blocks([text, frames[1], frames[2]])


# -- scale and rank -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", all_estimator_classes(), ids=lambda c: c.__name__)
def test_values_that_would_overflow_are_refused(cls, data):
    big = data[1] * 1e200
    with pytest.raises(ValueError, match="modality 1 has values up to .*overflow.*scaling"):
        build(cls, STRUCTURE).fit([data[0], big, data[2]])
    # the largest legitimate scales are fitted (the covariance of 1e70-sized values is finite)
    model = build(cls, STRUCTURE).fit([data[0], data[1] * 1e60, data[2]])
    assert np.all(np.isfinite(model.loadings_))


def test_total_rank_against_samples():
    with pytest.raises(ValueError, match="4 factors in total but there are 3 samples.*at most "
                                         "1 factors"):
        check_structure(STRUCTURE, WIDTHS, n_samples=3)
    assert check_structure(STRUCTURE, WIDTHS, n_samples=6) == STRUCTURE
    with pytest.raises(ValueError, match="modality 'notes' has 1 features but the structure "
                                         "asks it to carry 2"):
        check_structure({("ehr", "notes"): 1, ("notes",): 1, ("ehr",): 1}, [3, 1],
                        names=("ehr", "notes"), n_samples=50)


# -- MuData / AnnData -----------------------------------------------------------------------
def _mudata(X, shuffle=False):
    anndata = pytest.importorskip("anndata")
    mudata = pytest.importorskip("mudata")
    frames = _frames(X)
    if shuffle:
        frames = _shuffled(frames, seed=8)
    mods = {name: anndata.AnnData(f.to_numpy(), obs=pd.DataFrame(index=f.index),
                                  var=pd.DataFrame(index=f.columns))
            for name, f in zip(NAMES, frames)}
    return _mu(mudata, mods), frames


def _mu(mudata, mods):
    with mudata.set_options(pull_on_update=False):
        return mudata.MuData(mods)


def test_mudata_gives_the_fit_of_the_equivalent_dict_of_frames(data):
    mdata, frames = _mudata(data, shuffle=True)
    as_dict = dict(zip(NAMES, frames))
    direct = HCL(NAMED).fit(as_dict)
    via_mudata = HCL(NAMED).fit(mdata)
    np.testing.assert_allclose(via_mudata.loadings_, direct.loadings_, rtol=1e-10, atol=1e-12)
    Z = via_mudata.transform(mdata)
    # rows follow the MuData object's obs_names
    expected = direct.transform({k: f.loc[mdata.obs_names] for k, f in as_dict.items()})
    np.testing.assert_allclose(Z, expected, rtol=1e-8, atol=1e-10)


def test_dict_of_anndata_and_sparse_matrices(data):
    anndata = pytest.importorskip("anndata")
    scipy_sparse = pytest.importorskip("scipy.sparse")
    frames = _shuffled(_frames(data), seed=9)
    mods = {name: anndata.AnnData(scipy_sparse.csr_matrix(f.to_numpy()),
                                  obs=pd.DataFrame(index=f.index),
                                  var=pd.DataFrame(index=f.columns))
            for name, f in zip(NAMES, frames)}
    blocks = read_blocks(mods)
    for arr, x in zip(blocks.arrays, data):
        np.testing.assert_array_equal(arr, x)
    assert blocks.names == NAMES
    assert list(blocks.feature_names[2]) == list(frames[2].columns)


def test_mudata_with_unmatched_samples_is_refused(data):
    anndata = pytest.importorskip("anndata")
    mudata = pytest.importorskip("mudata")
    frames = _frames(data)
    mods = {name: anndata.AnnData(f.to_numpy(), obs=pd.DataFrame(index=f.index),
                                  var=pd.DataFrame(index=f.columns))
            for name, f in zip(NAMES, frames)}
    mods["labs"] = mods["labs"][10:].copy()
    with pytest.raises(ValueError, match=r"modality 'labs' contains NaN.* in 10 sample\(s\)"
                                         r".*absent from its index"):
        build(JIVE, NAMED).fit(_mu(mudata, mods))
    # HCL fits it: the samples are the MuData object's, 10 of them lack 'labs'
    model = HCL(NAMED).fit(_mu(mudata, mods))
    assert model.n_joint_samples_[2, 2] == 70 and model.n_joint_samples_[0, 0] == 80
