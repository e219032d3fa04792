"""Malformed input gets a clear ValueError / TypeError naming the modality, for every estimator."""

import numpy as np
import pandas as pd
import pytest
from _estimators import all_estimator_classes, build

from hcl_stats import Structure
from hcl_stats.datasets import make_hierarchical

STRUCTURE = Structure({(0, 1, 2): 1, (0,): 1, (1,): 1, (2,): 1})
WIDTHS = [6, 7, 8]
ESTIMATORS = all_estimator_classes()


@pytest.fixture
def data():
    return make_hierarchical(60, WIDTHS, STRUCTURE, noise_variance=0.1, random_state=0)


def _bad_inputs(X):
    out = {}
    out["different sample counts"] = ([X[0], X[1][:50], X[2]], ValueError, "modality 1.*50 samples")
    nan = X[2].copy()
    nan[3, 2] = np.nan
    out["NaN"] = ([X[0], X[1], nan], ValueError, "modality 2 contains NaN")
    inf = X[1].copy()
    inf[0, 0] = np.inf
    out["inf"] = ([X[0], inf, X[2]], ValueError, "modality 1 contains infinite")
    text = X[0].astype(str).astype(object)
    text[0, 0] = "high"
    out["non-numeric"] = ([text, X[1], X[2]], TypeError, "modality 0.*non-numeric")
    df = pd.DataFrame(X[1])
    df[0] = "x"
    out["non-numeric DataFrame"] = ([X[0], df, X[2]], TypeError, "modality 1.*column 0")
    out["one sample"] = ([x[:1] for x in X], ValueError, "at least 2 are needed")
    out["1-D"] = ([X[0], X[1][:, 0], X[2]], ValueError, "modality 1 must be 2-D")
    out["empty modality"] = ([X[0], X[1][:, :0], X[2]], ValueError, "modality 1 is empty")
    out["single array"] = (np.hstack(X), TypeError, "wrap a single array")
    out["no modalities"] = ([], ValueError, "no modalities")
    out["complex"] = ([X[0].astype(complex), X[1], X[2]], TypeError, "complex")
    return out


CASES = list(_bad_inputs(make_hierarchical(60, WIDTHS, STRUCTURE, random_state=0)).keys())


# the models fitted from a covariance fit missing values (their pairwise covariance)
FITS_MISSING = {"HCL", "ConcatSVD"}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", CASES)
def test_fit_rejects_malformed_input(cls, case, data):
    X, exc, match = _bad_inputs(data)[case]
    if case == "NaN" and cls.__name__ in FITS_MISSING:
        assert np.all(np.isfinite(build(cls, STRUCTURE).fit(X).loadings_))
        return
    with pytest.raises(exc, match=match):
        build(cls, STRUCTURE).fit(X)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_transform_checks_against_fit(cls, data):
    model = build(cls, STRUCTURE).fit(data)
    with pytest.raises(ValueError, match="expected 3 modalities"):
        model.transform(data[:2])
    with pytest.raises(ValueError, match="modality 2 has 5 features, expected 8"):
        model.transform([data[0], data[1], data[2][:, :5]])
    with pytest.raises(ValueError, match="modality 0 contains infinite values"):
        bad = data[0].copy()
        bad[0, 0] = np.inf
        model.transform([bad, data[1], data[2]])


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_user_arrays_are_not_modified(cls, data):
    frames = [data[0], pd.DataFrame(data[1]), data[2].astype(np.float32)]
    before = [np.array(f, copy=True) for f in frames]
    model = build(cls, STRUCTURE).fit(frames)
    model.transform(frames)
    for f, b in zip(frames, before):
        assert np.array_equal(np.asarray(f), b)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_scipy_sparse_modalities_fit_as_their_dense_values(cls, data):
    import scipy.sparse

    sparse = [scipy.sparse.csr_matrix(data[0]), data[1], scipy.sparse.csc_array(data[2])]
    dense = build(cls, STRUCTURE).fit(data)
    model = build(cls, STRUCTURE).fit(sparse)
    np.testing.assert_array_equal(model.loadings_, dense.loadings_)
    np.testing.assert_array_equal(model.transform(sparse), dense.transform(data))
    assert scipy.sparse.issparse(sparse[0]) and sparse[0].nnz == np.count_nonzero(data[0])


def test_structure_must_match_data(data):
    from hcl_stats import HCL

    with pytest.raises(ValueError, match="refers to modality 3.*only 3"):
        HCL({(0, 1, 2, 3): 1, (0,): 1, (1,): 1, (2,): 1}).fit(data)
    with pytest.raises(ValueError, match="modality 2 carries no factor"):
        HCL({(0, 1): 1}).fit(data)
    with pytest.raises(ValueError, match="modality 0 has 6 features but the structure asks "
                                         "it to carry 7"):
        HCL({(0, 1, 2): 3, (0,): 4, (1,): 1, (2,): 1}).fit(data)
    with pytest.raises(TypeError, match="structure must be a Structure"):
        HCL("global").fit(data)


def test_dict_input_and_names(data):
    from hcl_stats import HCL

    X = {"ehr": data[0], "notes": data[1], "labs": data[2]}
    st = Structure({("ehr", "notes", "labs"): 1, ("ehr",): 1, ("notes",): 1, ("labs",): 1})
    model = HCL(st).fit(X)
    assert model.structure_.modality_names == ("ehr", "notes", "labs")
    assert model.block_loadings("labs", ("labs",)).shape == (8, 1)
    with pytest.raises(ValueError, match="do not match"):
        model.transform({"ehr": data[0], "notes": data[1], "imaging": data[2]})
    with pytest.raises(TypeError, match="fitted on a dict"):
        model.transform(list(X.values()))
    # the same model fitted on a list with an index-based structure
    with pytest.raises(ValueError, match="pass the data as a dict"):
        HCL(st).fit(data)


@pytest.mark.parametrize(
    "params, match",
    [({"max_iter": 0}, "max_iter"), ({"tol": -1}, "tol"), ({"solver": "adam"}, "solver"),
     ({"denoise": "median"}, "denoise"), ({"denoise": [1.0, -1.0, 1.0]}, "non-negative")],
)
def test_hcl_parameter_validation(params, match, data):
    from hcl_stats import HCL

    with pytest.raises(ValueError, match=match):
        HCL(STRUCTURE, **params).fit(data)


@pytest.mark.parametrize("shape", [(1797, 16), (569, 10), (40, 120), (2000, 6), (1000, 1),
                                   (3, 2), (257, 3), (600, 300)])
def test_column_range_is_numpys_column_max_and_min(shape):
    from hcl_stats._input.validation import column_range

    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape)
    X.flat[rng.integers(X.size)] = np.inf
    cases = [X, X.astype(np.float32), rng.integers(-9, 9, shape), X[::2], np.asfortranarray(X)]
    Y = X.copy()
    Y.flat[rng.integers(Y.size)] = np.nan  # NaN propagate, as np.max's
    cases.append(Y)
    for A in cases:
        hi, lo = column_range(A)
        np.testing.assert_array_equal(hi, np.max(A, axis=0))
        np.testing.assert_array_equal(lo, np.min(A, axis=0))
        assert hi.dtype == A.dtype and lo.shape == (A.shape[1],)
