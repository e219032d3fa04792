"""Malformed and unusual input, for HCL, HCL(structure="auto") and every baseline.

Legitimate input in another form (reordered index, bool, int, float32, read-only,
Fortran-ordered, strided views, memmaps, ...) gives the fit of the plain list of float64
arrays with the same values; bad input raises a ValueError / TypeError naming the modality;
the caller's arrays and DataFrames are never modified.
"""

import numpy as np
import pandas as pd
import pytest
from _estimators import all_estimator_classes, build
from sklearn.base import clone

from hcl_stats import HCL, Structure
from hcl_stats.datasets import make_hierarchical

STRUCTURE = Structure({(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1})
WIDTHS = [6, 7, 8]
N = 60


def _estimators():
    out = {"HCL": HCL(STRUCTURE), "HCL-auto": HCL("auto")}
    for cls in all_estimator_classes()[1:]:
        out[cls.__name__] = build(cls, STRUCTURE)
    for est in out.values():  # reproducible fits, and fewer resamples (AJIVE) for speed
        params = est.get_params()
        est.set_params(**{k: v for k, v in dict(random_state=0, n_wedin_samples=100,
                                                 n_randdir_samples=100).items()
                          if k in params})
    return out


ESTIMATORS = _estimators()


def make(name):
    return clone(ESTIMATORS[name])


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(N, WIDTHS, STRUCTURE, noise_variance=0.1, random_state=2)


def _labelled(X, order=None):
    labels = np.array([f"s{i:02d}" for i in range(N)])
    frames = [pd.DataFrame(x, index=labels, columns=[f"m{m}_{j}" for j in range(x.shape[1])])
              for m, x in enumerate(X)]
    if order is not None:
        frames = [frames[0]] + [f.iloc[order] for f in frames[1:]]
    return frames


def _strided(x):
    big = np.full((2 * x.shape[0], 3 * x.shape[1]), np.nan)
    big[::2, ::3] = x
    return big[::2, ::3]


def _read_only(x):
    x = x.copy()
    x.setflags(write=False)
    return x


def _memmap(x, path, dtype=np.float64):
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    return np.memmap(path, dtype=dtype, mode="r", shape=x.shape)


def _legitimate(X, tmp_path):
    """name -> (input, the float64 arrays with the same values)."""
    rng = np.random.default_rng(0)
    as_bool = [X[0] > 0, X[1], X[2]]
    as_int = [X[0], np.round(10 * X[1]).astype(np.int64), np.round(10 * X[2]).astype(np.int32)]
    as_f32 = [x.astype(np.float32) for x in X]
    nullable = [pd.DataFrame(x).astype("Float64") for x in X]
    return {
        "nested lists": ([x.tolist() for x in X], X),
        "tuple": (tuple(X), X),
        "DataFrames": (_labelled(X), X),
        "reordered index": (_labelled(X, order=rng.permutation(N)), X),
        "bool": (as_bool, [x.astype(np.float64) for x in as_bool]),
        "int": (as_int, [x.astype(np.float64) for x in as_int]),
        "float32": (as_f32, [x.astype(np.float64) for x in as_f32]),
        "read-only": ([_read_only(x) for x in X], X),
        "Fortran-ordered": ([np.asfortranarray(x) for x in X], X),
        "strided views": ([_strided(x) for x in X], X),
        "memmaps": ([_memmap(x, tmp_path / f"m{m}.dat") for m, x in enumerate(X)], X),
        "float32 memmaps": ([_memmap(x, tmp_path / f"f{m}.dat", np.float32)
                             for m, x in enumerate(as_f32)],
                            [x.astype(np.float64) for x in as_f32]),
        "nullable DataFrames": (nullable, X),
        "dict-free mix": ([X[0], pd.DataFrame(X[1]), X[2].astype(np.float32)],
                          [X[0], X[1], X[2].astype(np.float32).astype(np.float64)]),
    }


LEGITIMATE = ["nested lists", "tuple", "DataFrames", "reordered index", "bool", "int",
              "float32", "read-only", "Fortran-ordered", "strided views", "memmaps",
              "float32 memmaps", "nullable DataFrames", "dict-free mix"]


def _snapshot(inputs):
    return [x.copy(deep=True) if isinstance(x, pd.DataFrame) else np.array(x, copy=True)
            for x in inputs]


def _assert_unchanged(inputs, before):
    for x, b in zip(inputs, before):
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, b)
        else:
            np.testing.assert_array_equal(np.asarray(x), b)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("case", LEGITIMATE)
def test_legitimate_input_gives_the_float64_fit(name, case, data, tmp_path):
    given, values = _legitimate(data, tmp_path)[case]
    reference = make(name).fit([np.array(v, dtype=np.float64) for v in values])
    before = _snapshot(given)
    model = make(name).fit(given)
    assert model.structure_ == reference.structure_
    np.testing.assert_allclose(model.get_covariance(), reference.get_covariance(),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.noise_variance_, reference.noise_variance_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(model.transform(given)),
                               np.abs(reference.transform(values)), rtol=1e-5, atol=1e-7)
    _assert_unchanged(given, before)


def _bad(X):
    """name -> (input, exception type, message pattern)."""
    frames = _labelled(X)
    out = {}
    na = frames[1].astype("Float64")
    na.iloc[[1, 4], 2] = pd.NA
    out["pd.NA"] = ([frames[0], na, frames[2]], ValueError, r"modality 1.*2 missing")
    cells = X[0].tolist()
    cells[3][0] = None
    out["None cell"] = ([cells, X[1], X[2]], ValueError, r"modality 0.*1 missing")
    obj = X[2].astype(object)
    obj[0, 0] = pd.NA
    out["pd.NA in object array"] = ([X[0], X[1], obj], ValueError, r"modality 2.*1 missing")
    nan = X[2].copy()
    nan[[0, 1, 2], 0] = np.nan
    out["NaN"] = ([X[0], X[1], nan], ValueError, r"modality 2.*3 missing.*3 sample")
    inf = X[1].copy()
    inf[0, :2] = [np.inf, -np.inf]
    out["inf"] = ([X[0], inf, X[2]], ValueError, r"modality 1.*2 infinite")
    out["disjoint index"] = ([frames[0], frames[1].set_axis([f"t{i}" for i in range(N)]),
                              frames[2]], ValueError,
                             r"modality 1.*(120 unmatched|shares no sample)")
    # samples absent from a modality: unmatched labels, or (data models, which outer-join
    # them) missing values
    out["partial overlap"] = ([frames[0], frames[1], frames[2].iloc[7:]], ValueError,
                              r"modality 2.*(7 unmatched|in 7 sample.*absent)")
    out["duplicated labels"] = ([frames[0], frames[1].set_axis(["x"] * N), frames[2]],
                                ValueError, r"modality 1 has 1 duplicated")
    out["overflow"] = ([X[0], X[1] * 1e200, X[2]], ValueError, r"modality 1.*overflow")
    out["negative overflow"] = ([X[0], X[1], -1e180 * np.abs(X[2])], ValueError,
                                r"modality 2.*overflow")
    out["constant modality"] = ([X[0], np.ones_like(X[1]), X[2]], ValueError,
                                r"modality 1 is constant")
    out["underflow"] = ([X[0], X[1], 1e-200 * X[2]], ValueError, r"modality 2.*underflow")
    out["Series of numbers"] = ([frames[0], frames[1].iloc[:, 0], frames[2]], ValueError,
                                r"modality 1 is a Series")
    mixed = frames[0].copy()
    mixed.columns = ["a", 1, "c", "d", "e", "f"]
    out["mixed column names"] = ([mixed, X[1], X[2]], TypeError, r"modality 0.*column names")
    cat = frames[1].copy()
    cat["m1_0"] = pd.Categorical(["a", "b"] * (N // 2))
    out["categorical column"] = ([X[0], cat, X[2]], TypeError, r"modality 1.*'m1_0'")
    out["ragged lists"] = ([X[0], [[1.0, 2.0], [3.0]] * (N // 2), X[2]], TypeError,
                           r"modality 1")
    out["strings"] = ([X[0].astype(str), X[1], X[2]], TypeError, r"modality 0.*non-numeric")
    out["3-D"] = ([X[0], X[1][:, :, None], X[2]], ValueError, r"modality 1 must be 2-D")
    out["scalar"] = ([X[0], 3.0, X[2]], TypeError, r"modality 1: expected an array")
    out["0-D array"] = ([X[0], np.array(3.0), X[2]], ValueError, r"modality 1 must be 2-D")
    out["a set"] = ([X[0], set(), X[2]], TypeError, r"modality 1")
    out["None modality"] = ([X[0], None, X[2]], ValueError, r"modality 1 is None")
    out["complex DataFrame"] = ([pd.DataFrame(X[0].astype(complex)), X[1], X[2]],
                                TypeError, r"modality 0.*complex")
    out["dict with unknown order"] = ({"a": X[0], "b": X[1][:50], "c": X[2]}, ValueError,
                                      r"modality 'b' has 50 samples")
    return out


BAD = list(_bad(make_hierarchical(N, WIDTHS, STRUCTURE, random_state=0)))
# the models fitted from a covariance fit missing values (their pairwise covariance) and
# outer-join labelled modalities; disjoint samples leave a modality sharing none
FITS_MISSING = {"HCL", "HCL-auto", "ConcatSVD"}
MISSING_CASES = {"pd.NA", "None cell", "pd.NA in object array", "NaN", "partial overlap"}


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("case", BAD)
def test_bad_input_names_the_modality(name, case, data):
    given, exc, match = _bad(data)[case]
    items = given.values() if isinstance(given, dict) else given
    before = [x.copy(deep=True) if isinstance(x, pd.DataFrame) else x for x in items]
    if name in FITS_MISSING and case == "disjoint index":
        match = r"modality 1 shares no sample with the other modalities"
    if name in FITS_MISSING and case in MISSING_CASES:
        assert np.all(np.isfinite(make(name).fit(given).loadings_))
    else:
        with pytest.raises(exc, match=match):
            make(name).fit(given)
    for x, b in zip(items, before):
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, b)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_transform_aligns_and_checks_samples(name, data):
    frames = _labelled(data)
    model = make(name).fit(frames)
    order = np.random.default_rng(1).permutation(N)
    shuffled = [frames[0]] + [f.iloc[order] for f in frames[1:]]
    np.testing.assert_allclose(model.transform(shuffled), model.transform(frames),
                               rtol=1e-10, atol=1e-12)
    # a sample absent from a modality's index is missing there, as a row of NaN is
    holey = [f.to_numpy(copy=True) for f in frames]
    holey[2][0] = np.nan
    np.testing.assert_allclose(model.transform([frames[0], frames[1], frames[2].iloc[1:]]),
                               model.transform(holey), rtol=1e-12, atol=1e-14)
    bad = frames[1].copy()
    bad.iloc[0, 0] = pd.NA
    holey = [f.to_numpy(copy=True) for f in frames]
    holey[1][0, 0] = np.nan
    np.testing.assert_array_equal(model.transform([frames[0], bad, frames[2]]),
                                  model.transform(holey))
    bad.iloc[1, 0] = np.inf
    with pytest.raises(ValueError, match="modality 1 contains infinite values: 1"):
        model.transform([frames[0], bad, frames[2]])
