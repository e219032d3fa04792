"""The fit pipeline of HCL: parameters checked before any read, one plan, one noise-rule code."""

import dataclasses
import inspect

import numpy as np
import pytest
from numpy.lib.format import open_memmap

from hcl_stats import HCL, Structure
from hcl_stats._estimation.fit import fit_hcl
from hcl_stats._estimation.noise import NOISE_RULES
from hcl_stats._estimation.reduced import fit_hcl_reduced
from hcl_stats.baselines import ConcatSVD
from hcl_stats.datasets import make_hierarchical

xps = pytest.importorskip("array_api_strict")

ST = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
WIDTHS = [10, 12, 14]


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(300, WIDTHS, ST, noise_variance=[0.2, 0.4, 0.6], random_state=0)


class CountingMemmap(np.memmap):
    """A memmap that counts the reads through ``__getitem__`` (shared counter)."""

    reads = [0]

    def __getitem__(self, key):
        CountingMemmap.reads[0] += 1
        return super().__getitem__(key)


@pytest.fixture
def counting(tmp_path, data):
    blocks = []
    for m, x in enumerate(data):
        mm = open_memmap(tmp_path / f"x{m}.npy", mode="w+", dtype=np.float64, shape=x.shape)
        mm[:] = x
        mm.flush()
        blocks.append(np.load(tmp_path / f"x{m}.npy", mmap_mode="r").view(CountingMemmap))
    CountingMemmap.reads[0] = 0
    return blocks


# -- regression tests of the three reproduced bugs ------------------------------------------------

def test_reduced_path_on_array_api_input_is_refused_or_honoured(data):
    strict = [xps.asarray(x) for x in data]
    with pytest.raises(ValueError, match="path='reduced'.*backend='numpy'"):
        HCL(ST, path="reduced").fit(strict)
    host = HCL(ST, path="reduced", backend="numpy", random_state=0, tol=1e-9).fit(strict)
    ref = HCL(ST, path="reduced", random_state=0, tol=1e-9).fit(data)
    assert host.path_ == "reduced"
    np.testing.assert_allclose(host.loadings_, ref.loadings_, rtol=0, atol=1e-12)


@pytest.mark.parametrize("names", [None, ("a", "b", "c")])
def test_nan_in_modality_2_of_host_copied_input_names_modality_2(data, names):
    bad = data[2].copy()
    bad[5, 3] = np.nan
    blocks = [xps.asarray(data[0]), xps.asarray(data[1]), xps.asarray(bad)]
    X = blocks if names is None else dict(zip(names, blocks))
    where = "modality 2" if names is None else "'c'"
    with pytest.raises(ValueError, match=where):
        HCL(ST, backend="numpy", path="reduced").fit(X)
    with pytest.raises(ValueError, match=rf"{where} contains missing values.*NumPy only"):
        HCL(ST).fit(X)  # on the input's namespace
    # the covariance path on the host fits the missing value as NumPy input does
    host = HCL(ST, backend="numpy", path="covariance").fit(X)
    ref = HCL(ST).fit([data[0], data[1], bad] if names is None else
                      dict(zip(names, [data[0], data[1], bad])))
    np.testing.assert_array_equal(host.loadings_, ref.loadings_)
    assert np.isnan(bad[5, 3])  # the user's array is untouched


def test_bad_denoise_raises_before_any_read(counting):
    HCL(ST, path="reduced", random_state=0).fit(counting)
    assert CountingMemmap.reads[0] > 0  # the counter sees the reads of a real fit
    CountingMemmap.reads[0] = 0
    with pytest.raises(ValueError, match="denoise must be one of"):
        HCL(ST, denoise="bogus", path="reduced").fit(counting)
    assert CountingMemmap.reads[0] == 0


# -- every parameter checked up front ---------------------------------------------------------------

@pytest.mark.parametrize("params, error, match", [
    ({"solver": "newton"}, ValueError, "solver must be one of"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"denoise": [-0.1, 0.2, 0.3]}, ValueError, "denoise"),
    ({"denoise": [[0.1]]}, ValueError, "denoise"),
    ({"path": "fast"}, ValueError, "path must be one of"),
    ({"n_power_iter": -1}, ValueError, "n_power_iter"),
    ({"max_expansions": 1.5}, ValueError, "max_expansions"),
    ({"random_state": "seed"}, ValueError, "random_state"),
    ({"max_rank": 0}, ValueError, "max_rank"),
    ({"backend": "tpu"}, ValueError, "backend must be one of"),
    ({"structure": 3}, TypeError, "structure must be"),
    ({"structure": "auto", "path": "reduced", "denoise": "diagonal"}, ValueError,
     "per-modality noise"),
])
def test_invalid_parameters_raise_before_any_read(counting, params, error, match):
    kwargs = {"structure": ST, **params}
    with pytest.raises(error, match=match):
        HCL(**kwargs).fit(counting)
    assert CountingMemmap.reads[0] == 0
    with pytest.raises(error, match=match):
        HCL(**kwargs).fit_from_covariance(np.eye(36), 300, WIDTHS)


def test_every_constructor_parameter_has_a_check():
    for cls in (HCL, ConcatSVD):
        names = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert names == set(cls._parameter_constraints), cls


def test_noise_variances_must_match_the_modalities(data):
    with pytest.raises(ValueError, match="needs 1 or 3 values"):
        HCL(ST, denoise=[0.1, 0.2]).fit(data)
    a = HCL(ST, denoise=[0.2, 0.4, 0.6], tol=1e-9).fit(data)
    np.testing.assert_array_equal(a.noise_variance_, [0.2, 0.4, 0.6])


def test_combinations_that_cannot_be_honoured_raise(data):
    S = np.cov(np.hstack(data), rowvar=False)
    with pytest.raises(ValueError, match="path='reduced' needs the data"):
        HCL(ST, path="reduced").fit_from_covariance(S, 300, WIDTHS)
    with pytest.raises(ValueError, match="solver='subspace' runs on NumPy only"):
        HCL(ST, solver="subspace").fit([xps.asarray(x) for x in data])
    with pytest.raises(ValueError, match="solver='subspace' runs on NumPy only"):
        HCL(ST, solver="subspace").fit_from_covariance(xps.asarray(S), 300, WIDTHS)


def test_default_structure_is_auto(data):
    model = HCL().fit(data)
    assert model.path_ == "covariance"
    assert model.structure_.n_modalities == 3 and hasattr(model, "selection_")


# -- one noise-rule implementation ----------------------------------------------------------------

def _trailing_mean(S, k):
    values = np.linalg.eigvalsh(S)
    return values[: S.shape[0] - k].mean()


@pytest.mark.parametrize("path", ["covariance", "reduced"])
def test_noise_rules_against_numpy_eigenvalues(data, path):
    # n_oversamples large enough that every basis is the whole modality: T is S
    S = np.cov(np.hstack(data), rowvar=False)
    iso = HCL(ST, path=path, n_oversamples=50, tol=1e-9).fit(data)
    np.testing.assert_allclose(iso.noise_variance_, _trailing_mean(S, ST.n_components),
                               rtol=1e-10)
    mod = HCL(ST, path=path, denoise="modality", n_oversamples=50, tol=1e-9).fit(data)
    edges = np.cumsum([0] + WIDTHS)
    expected = [_trailing_mean(S[a:b, a:b], ST.modality_rank(m))
                for m, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    np.testing.assert_allclose(mod.noise_variance_, expected, rtol=1e-10)


@pytest.mark.parametrize("n", [300, 12])
def test_selected_fit_noise_against_numpy_eigenvalues(n):
    # structure="auto": the modality rule reads the eigenvalues the selection computed for
    # each block (of the rescaled S); in the data's units the noise is still the mean of the
    # trailing eigenvalues of each S_mm (n = 12: the widest modality has more features than
    # samples, where the selection takes its blocks' eigenvalues from their range)
    X = make_hierarchical(n, WIDTHS, ST, noise_variance=[0.2, 0.4, 0.6], random_state=1)
    model = HCL().fit(X)
    assert model.selection_ is not None
    S = np.cov(np.hstack(X), rowvar=False)
    edges = np.cumsum([0] + WIDTHS)
    expected = [_trailing_mean(S[a:b, a:b], model.structure_.modality_rank(m))
                for m, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
    np.testing.assert_allclose(model.noise_variance_, expected, rtol=1e-9)


def test_too_many_factors_raises_the_same_error_on_both_paths(data):
    st = Structure({(0, 1, 2): 1, (0,): 9, (1,): 1, (2,): 1})  # r_0 = p_0 = 10
    for path in ("covariance", "reduced"):
        with pytest.raises(ValueError, match="needs modality 0 to have more features"):
            HCL(st, path=path, denoise="modality").fit(data)


def test_a_registered_rule_is_a_denoise_value(data, monkeypatch):
    def half_trace(spectrum):  # a rule written in the test: half the mean diagonal
        return np.array([0.5 * t / p for t, p in zip(spectrum.traces, spectrum.n_features)])

    monkeypatch.setitem(NOISE_RULES, "half", half_trace)
    expected = [0.5 * np.var(x, axis=0, ddof=1).mean() for x in data]
    for path in ("covariance", "reduced"):
        model = HCL(ST, denoise="half", path=path, n_oversamples=50, tol=1e-8).fit(data)
        np.testing.assert_allclose(model.noise_variance_, expected, rtol=1e-10)


@pytest.mark.parametrize("denoise", [None, "isotropic", "modality", 0.3])
def test_concat_svd_denoise_means_what_it_means_for_hcl(data, denoise):
    S = np.cov(np.hstack(data), rowvar=False)
    K = ST.n_components
    model = ConcatSVD(ST, denoise=denoise).fit(data)
    noise = np.repeat(model.noise_variance_, WIDTHS) if denoise is not None else 0.0
    values, vectors = np.linalg.eigh(S - np.diag(noise) if denoise is not None else S)
    top = vectors[:, -K:] * np.sqrt(values[-K:])
    W = model.loadings_
    np.testing.assert_allclose(W @ W.T, top @ top.T, atol=1e-9)
    if denoise is None:  # scores use the mean of the discarded eigenvalues of S
        assert model.noise_variance_[0] == pytest.approx(values[:-K].mean(), rel=1e-10)
    with pytest.raises(ValueError, match="denoise"):
        ConcatSVD(ST, denoise="bogus").fit(data)


# -- one result type --------------------------------------------------------------------------

def test_both_paths_return_the_same_frozen_result(data):
    S = np.cov(np.hstack(data), rowvar=False)
    a = fit_hcl(S, WIDTHS, ST, means=np.hstack(data).mean(axis=0), tol=1e-9, random_state=0)
    b = fit_hcl_reduced(data, ST, n_oversamples=50, tol=1e-9, random_state=0)
    assert type(a) is type(b) and (a.path, b.path) == ("covariance", "reduced")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.n_iter = 0
    np.testing.assert_allclose(a.loadings, b.loadings, atol=1e-6)
    np.testing.assert_allclose(a.total_variance, [np.trace(S[sl, sl]) for sl in
                                                  (slice(0, 10), slice(10, 22), slice(22, 36))])


def test_given_noise_variances_need_the_data_units():
    """Numbers for denoise are variances in the data's units: a weighted fit refuses them."""
    X = [np.random.default_rng(0).normal(size=(50, 4)) for _ in range(2)]
    with pytest.raises(ValueError, match="scale=None"):
        HCL(denoise=0.5).fit(X)  # structure="auto": scale="auto" weights the modalities
    with pytest.raises(ValueError, match="scale=None"):
        HCL({(0, 1): 1}, denoise=[0.5, 0.5], scale="modality").fit(X)
    assert HCL({(0, 1): 1}, denoise=[0.5, 0.5]).fit(X).noise_variance_.tolist() == [0.5, 0.5]


def test_in_memory_values_are_checked_once_per_fit(monkeypatch, data):
    """``read_blocks`` checks in-memory arrays; the statistics then skip their own pass
    over the values, which the direct statistics still make when called alone."""
    import hcl_stats._statistics.chunked as chunked

    calls = []
    check = chunked.check_finite

    def counted(*args, **kwargs):
        calls.append(args[1])
        return check(*args, **kwargs)

    monkeypatch.setattr(chunked, "check_finite", counted)
    HCL(ST, denoise="modality").fit(data)
    assert calls == []
    chunked.covariance_statistics(list(data), missing="allow")
    assert len(calls) == len(data)
    bad = np.where(np.arange(data[1].shape[1]) == 2, np.inf, data[1])
    with pytest.raises(ValueError, match="modality 1.*infinite"):
        HCL(ST, denoise="modality").fit([data[0], bad, data[2]])
