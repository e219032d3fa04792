"""Missing values at the input door: NaN passed on with ``missing="allow"``, outer joins of
DataFrames with different samples, and the checks of what cannot be fitted."""

import numpy as np
import pandas as pd
import pytest

from hcl_stats._input.alignment import union_labels
from hcl_stats._input.validation import read_blocks


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    labels = [f"s{i:02d}" for i in range(30)]
    return [pd.DataFrame(rng.standard_normal((30, p)), index=labels,
                         columns=[f"m{m}_{j}" for j in range(p)])
            for m, p in enumerate([3, 4, 2])]


def test_outer_join_puts_absent_samples_as_nan_rows(frames):
    a, b, c = frames
    b_part = b.iloc[5:].iloc[::-1]  # other order, 5 samples absent
    c_part = pd.concat([c.iloc[:20], c.iloc[:2].set_axis(["new1", "new2"], axis=0)])
    before = [f.copy() for f in (a, b_part, c_part)]
    blocks = read_blocks([a, b_part, c_part], missing="allow")
    expected = list(a.index) + ["new1", "new2"]
    assert list(blocks.sample_index) == expected
    # each modality reindexed by label, NaN where the sample is absent (pandas' own reindex)
    for arr, frame in zip(blocks.arrays, (a, b_part, c_part)):
        np.testing.assert_array_equal(arr, frame.reindex(expected).to_numpy())
    assert blocks.n_missing == (2 * 3, 7 * 4, 10 * 2)
    assert not blocks.complete
    for f, g in zip(before, (a, b_part, c_part)):  # the user's frames are untouched
        pd.testing.assert_frame_equal(f, g)


def test_union_labels_keeps_first_order_then_new_labels():
    got = union_labels([pd.Index(["b", "a"]), None, pd.Index(["c", "a", "d"])])
    assert list(got) == ["b", "a", "c", "d"]


def test_nan_cells_pass_with_allow_and_raise_by_default(frames):
    X = [f.to_numpy() for f in frames]
    X[1] = X[1].copy()
    X[1][3, 2] = np.nan
    X[1][7] = np.nan
    with pytest.raises(ValueError, match=r"modality 1 contains NaN: 5 missing"):
        read_blocks(X)
    blocks = read_blocks(X, missing="allow", fitting=True)
    assert blocks.n_missing == (0, 5, 0)
    assert blocks.arrays[1] is X[1]  # not copied


def test_infinite_values_still_raise_with_allow(frames):
    X = [f.to_numpy().copy() for f in frames]
    X[2][0, 0] = np.nan
    X[2][4, 1] = np.inf
    with pytest.raises(ValueError, match="modality 2 contains infinite values: 1"):
        read_blocks(X, missing="allow")


def test_what_cannot_be_fitted_is_named(frames):
    X = [f.to_numpy().copy() for f in frames]
    X[0][1:, 2] = np.nan  # feature 2 of modality 0 seen once
    with pytest.raises(ValueError, match="modality 0: feature 2 is observed in 1 sample"):
        read_blocks(X, missing="allow", fitting=True)
    read_blocks(X, missing="allow")  # transform-time input need not carry variances
    Y = [f.to_numpy().copy() for f in frames]
    Y[1][:15] = np.nan
    Y[0][15:] = np.nan
    Y[2][15:] = np.nan
    with pytest.raises(ValueError, match="modality 1 shares no sample with the other"):
        read_blocks(Y, missing="allow", fitting=True)


def test_disjoint_frames_are_refused_at_fit(frames):
    a, b, c = frames
    b_other = b.set_axis([f"q{i}" for i in range(30)], axis=0)
    with pytest.raises(ValueError, match="modality 1 shares no sample"):
        read_blocks([a, b_other, c], missing="allow", fitting=True)


def test_missing_option_is_checked(frames):
    with pytest.raises(ValueError, match="missing must be 'raise' or 'allow'"):
        read_blocks(frames, missing="impute")


def test_mudata_labels_outside_obs_names_are_refused_but_absent_ones_are_missing(frames):
    anndata = pytest.importorskip("anndata")
    mudata = pytest.importorskip("mudata")
    mods = {name: anndata.AnnData(f.to_numpy(), obs=pd.DataFrame(index=f.index),
                                  var=pd.DataFrame(index=f.columns))
            for name, f in zip(["a", "b", "c"], frames)}
    mods["c"] = mods["c"][10:].copy()
    md = mudata.MuData(mods)
    blocks = read_blocks(md, missing="allow")
    assert blocks.n_missing == (0, 0, 10 * 2)
    absent = ~np.isin(np.asarray(md.obs_names), np.asarray(frames[2].index[10:]))
    assert absent.sum() == 10
    np.testing.assert_array_equal(np.isnan(blocks.arrays[2]).all(axis=1), absent)
