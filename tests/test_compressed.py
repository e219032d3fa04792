"""``HCL()`` on wide data without the ``d x d`` covariance: the exact compression to the
row spaces, the selection on the small matrix, and the reduced fit with exact bases,
against the covariance path (``path="covariance"``) on the same data."""

import warnings

import numpy as np
import pytest
from scipy.linalg import block_diag, subspace_angles
from sklearn.datasets import load_breast_cancer, load_digits
from threadpoolctl import threadpool_limits

from hcl_stats import HCL, Structure
from hcl_stats._estimation.compressed import row_spaces
from hcl_stats._estimation.pipeline import plan_fit
from hcl_stats._numerics.linalg import serial_blas
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats.datasets import load_multiple_features, make_hierarchical
from hcl_stats.selection import select_structure

TRUTH = Structure({(0, 1, 2): 2, (0, 1): 1, (0,): 1, (1,): 1, (2,): 1})
WIDTHS = [300, 400, 250]


@pytest.fixture(scope="module")
def wide():
    return make_hierarchical(40, WIDTHS, TRUTH, noise_variance=1.0, singular_values=(20, 40),
                             random_state=0)


def _lift(spaces, n_features):
    return block_diag(*[np.eye(p) if V is None else V for V, p in zip(spaces.bases, n_features)])


def test_compressed_covariance_is_the_sample_covariance(wide):
    S, means, n = sample_covariance(wide)
    spaces = row_spaces(wide, [X.mean(axis=0) for X in wide])
    assert spaces.sizes == [39, 39, 39]  # rank n - 1 of centred wide data
    L = _lift(spaces, WIDTHS)
    np.testing.assert_allclose(L.T @ L, np.eye(L.shape[1]), atol=1e-12)
    np.testing.assert_allclose(L @ spaces.T @ L.T, S, rtol=0, atol=1e-12 * np.abs(S).max())


def test_null_directions_are_dropped_and_full_rank_modalities_kept():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8))
    X[:, 7] = X[:, 0] - 2 * X[:, 3]  # rank 7 of 8
    Y = rng.standard_normal((50, 6))  # full column rank: its own coordinates
    spaces = row_spaces([X, Y], [X.mean(0), Y.mean(0)])
    assert spaces.sizes == [7, 6] and spaces.bases[1] is None
    Xc = X - X.mean(0)
    # the basis spans the row space: nothing of the data lies outside it
    V = spaces.bases[0]
    assert np.abs(Xc - (Xc @ V) @ V.T).max() < 1e-12 * np.abs(Xc).max()


def _tested(evidence):
    """The evidence without the squared cosines at 0 or 1, which are recorded only where
    rounding puts them inside (0, 1)."""
    trivial = (evidence["step"] == "membership") & (
        (evidence["value"] - 0.5).abs() > 0.5 - 1e-9)
    return evidence[~trivial].reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 3])
def test_selection_on_the_compressed_covariance_is_the_selection_on_S(seed):
    # both seeds select the simulated structure (before step 5 took n - 1 - c degrees of
    # freedom, seed 3 added a spurious specific factor on both paths alike)
    X = make_hierarchical(40, WIDTHS, TRUTH, noise_variance=1.0, singular_values=(20, 40),
                          random_state=seed)
    S, _, n = sample_covariance(X)
    spaces = row_spaces(X, [x.mean(axis=0) for x in X])
    with serial_blas():
        full = select_structure(S, WIDTHS, n_samples=n)
        small = select_structure(spaces.T, WIDTHS, n_samples=n, n_coordinates=spaces.sizes)
    assert full.structure == small.structure
    assert full.structure == TRUTH
    for name in ("modality_rank", "pair_rank", "specific_rank"):
        np.testing.assert_array_equal(getattr(small, name), getattr(full, name))
    np.testing.assert_allclose(small.noise_variance, full.noise_variance, rtol=1e-10)
    a, b = _tested(small.evidence), _tested(full.evidence)
    labels = ["step", "subset", "modality", "component", "statistic", "selected", "rank"]
    assert a[labels].astype(str).equals(b[labels].astype(str))
    # the thresholds take the nominal widths p_m (Tracy-Widom, floors, sphericity)
    np.testing.assert_allclose(a["threshold"], b["threshold"], rtol=1e-10)
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-8, atol=1e-8)


def test_n_coordinates_is_checked(wide):
    spaces = row_spaces(wide, [X.mean(axis=0) for X in wide])
    with pytest.raises(ValueError, match="n_coordinates"):
        select_structure(spaces.T, WIDTHS, n_samples=40, n_coordinates=[39, 39])
    with pytest.raises(ValueError, match="n_coordinates"):
        select_structure(spaces.T, [30, 400, 250], n_samples=40, n_coordinates=[39, 39, 39])


def _max_angle(a, b):
    return max(float(np.max(subspace_angles(a.loadings_[:, a.structure_.columns(s)],
                                            b.loadings_[:, b.structure_.columns(s)])))
               for s in a.structure_.subsets)


def _assert_same_fit(X, **kwargs):
    """The compressed fit (path="reduced") against the covariance path on ``X``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both converge
        warnings.filterwarnings("ignore", "no factor detected", UserWarning)
        # (scale="features": per-modality noise misfits standardised simulated features,
        # on both paths alike)
        warnings.filterwarnings("ignore", ".*exceed its total variance", UserWarning)
        a = HCL(path="reduced", tol=1e-8, **kwargs).fit(X)
        b = HCL(path="covariance", tol=1e-8, **kwargs).fit(X)
    assert a.path_ == "reduced" and b.path_ == "covariance"
    assert a.structure_ == b.structure_
    assert a.converged_ and b.converged_
    np.testing.assert_allclose(a.noise_variance_, b.noise_variance_, rtol=1e-9)
    np.testing.assert_allclose(a.total_variance_, b.total_variance_, rtol=1e-12)
    np.testing.assert_allclose(a.objective_, b.objective_, rtol=1e-7)
    assert _max_angle(a, b) < 1e-4
    Xs = list(X.values()) if isinstance(X, dict) else X
    za, zb = a.transform(X), b.transform(X)
    # the same scores up to the sign and rotation inside each block: compare projections
    Pa, Pb = (z @ np.linalg.pinv(z) for z in (za, zb))
    assert np.abs(Pa - Pb).max() < 1e-4
    assert za.shape == (Xs[0].shape[0], a.n_components_)
    return a, b


@pytest.mark.parametrize("scale", ["auto", "features", None])
def test_compressed_fit_is_the_covariance_fit_on_wide_simulated_data(wide, scale):
    copies = [X.copy() for X in wide]
    a, _ = _assert_same_fit(wide, scale=scale)
    assert a.structure_ == TRUTH
    assert list(a.reduced_ranks_) == [39, 39, 39]
    for X, Y in zip(wide, copies):  # the user's arrays are not modified
        np.testing.assert_array_equal(X, Y)


def _subsample(views, n, seed=0):
    rows = np.random.default_rng(seed).choice(next(iter(views.values())).shape[0], n,
                                              replace=False)
    return {k: v[rows] for k, v in views.items()}


def _standardised(X):
    return {k: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1) for k, v in X.items()}


def _real_cases():
    digits = load_digits().data
    cancer = load_breast_cancer().data
    return {
        # six views of 6 to 240 features: five of them wider than the 40 samples (and the
        # 6 morphological features of rank 5)
        "multiple features": _subsample(load_multiple_features().views, 40),
        # top and bottom halves of the images, 32 pixels each (some constant)
        "digits halves": _subsample({"top": digits[:, :32], "bottom": digits[:, 32:]}, 30),
        # the 30 measurements as two views of 15, on 12 samples
        "breast cancer halves": _subsample({"a": cancer[:, :15], "b": cancer[:, 15:]}, 12),
    }


@pytest.mark.parametrize("standardise", [False, True])
@pytest.mark.parametrize("case", ["multiple features", "digits halves",
                                  "breast cancer halves"])
def test_compressed_fit_is_the_covariance_fit_on_wide_real_data(case, standardise):
    X = _real_cases()[case]
    _assert_same_fit(_standardised(X) if standardise else X)


def test_compressed_fit_is_identical_with_one_and_two_threads(wide):
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            fits.append(HCL(path="reduced").fit(wide))
    one, two = fits
    assert one.structure_ == two.structure_
    np.testing.assert_array_equal(one.loadings_, two.loadings_)
    np.testing.assert_array_equal(one.noise_variance_, two.noise_variance_)
    assert one.selection_.equals(two.selection_)


def _plan(X, **params):
    model = HCL(**params)
    return plan_fit(model._validate_params(), X).path


def test_auto_takes_the_compression_where_it_halves_the_problem():
    rng = np.random.default_rng(0)
    wide = [rng.standard_normal((100, 2500)) for _ in range(2)]  # d = 5000 > 4 n
    narrow = [rng.standard_normal((2000, 100)) for _ in range(2)]
    assert _plan(wide) == "reduced"
    assert _plan(narrow) == "covariance"
    # nutrimouse's shape: 40 samples, 120 + 21 features -> 39 + 21 = 60 <= 141 / 2
    assert _plan([rng.standard_normal((40, 120)), rng.standard_normal((40, 21))]) == "reduced"
    # 100 samples, 150 + 50 features -> 99 + 50 = 149 > 200 / 2
    assert _plan([rng.standard_normal((100, 150)), rng.standard_normal((100, 50))]) \
        == "covariance"
    # options the compression does not honour exactly keep the covariance path
    assert _plan(wide, denoise="diagonal") == "covariance"
    assert _plan(wide, objective="likelihood") == "covariance"
    assert _plan(wide, path="covariance") == "covariance"
    with pytest.raises(ValueError, match="per-modality noise"):
        HCL(path="reduced", denoise="diagonal").fit(wide)


def test_wide_data_with_missing_values_take_the_covariance_path(wide):
    X = [x.copy() for x in wide]
    X[1][3, 5] = np.nan
    model = HCL(path="auto").fit(X)
    assert model.path_ == "covariance"
    with pytest.raises(ValueError, match="missing values"):
        HCL(path="reduced").fit(X)


def test_infinite_values_are_named_as_on_the_covariance_path(wide):
    X = [x.copy() for x in wide]
    X[2][7, 1] = np.inf
    messages = []
    for path in ("reduced", "covariance"):
        with pytest.raises(ValueError) as info:
            HCL(path=path).fit(X)
        messages.append(str(info.value))
    assert "modality 2" in messages[0]
    assert messages[0] == messages[1]


@pytest.mark.slow  # (the covariance path's fit of d = 4000 features)
def test_bench_wide_times_the_default_and_the_covariance_path(monkeypatch):
    from simulations import bench_wide

    monkeypatch.setitem(bench_wide.DESIGNS, "tiny", (60, 2000, 2))  # d = 4000 > 4 n
    row = bench_wide.bench_design("tiny", repeats=1, covariance_repeats=1)
    assert row["path"] == "reduced" and row["same_as_cov"]
    assert row["cov_over_fit"] == row["cov_fit_s"] / row["fit_s"]
    assert all(row[stage] >= 0 for stage in bench_wide.STAGES if stage != "other")
