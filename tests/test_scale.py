"""Scale: Dask / memmap input (chunked sufficient statistics) and the reduced many-features path.

Oracles: ``numpy.cov`` of the in-memory data, the in-memory fit, the objective and its
gradient written out here with an explicit ``S`` and a noise level from ``numpy.linalg.eigvalsh``,
and the simulated truth.
"""

import os
import sys
import tracemalloc

import numpy as np
import pytest
from numpy.lib.format import open_memmap
from sklearn.exceptions import ConvergenceWarning

import hcl_stats._estimation.reduced as reduced
import hcl_stats._statistics.chunked as sufficient
from hcl_stats._estimation.pipeline import auto_path, plan_fit
from hcl_stats import HCL, Structure
from hcl_stats.baselines import ConcatSVD
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import gram_errors

da = pytest.importorskip("dask.array")

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1})
WIDTHS = [12, 15, 20]
N = 1500


@pytest.fixture
def small_chunks(monkeypatch):
    """Force many chunks: float64 slices of 64 rows of the stacked data."""
    monkeypatch.setattr(sufficient, "CHUNK_BYTES", 8 * sum(WIDTHS) * 64)


@pytest.fixture
def data(rng):
    X = make_hierarchical(N, WIDTHS, STRUCTURE, noise_variance=0.3,
                          random_state=int(rng.integers(2 ** 31)))
    # large, different means: the chunked accumulation must not lose digits to them
    return [x + 1000.0 * (m + 1) for m, x in enumerate(X)]


def _memmaps(tmp_path, X, dtype=np.float64, mode="r"):
    out = []
    for m, x in enumerate(X):
        path = tmp_path / f"X{m}.npy"
        mm = open_memmap(path, mode="w+", dtype=dtype, shape=x.shape)
        mm[:] = x
        mm.flush()
        del mm
        out.append(np.load(path, mmap_mode=mode))
    return out


def test_statistics_match_numpy_cov(data, rng):
    stacked = np.hstack(data)
    expected = np.cov(stacked, rowvar=False)
    scale = np.abs(expected).max()
    for chunk_bytes in (8 * sum(WIDTHS) * 1, 8 * sum(WIDTHS) * 97, 10 ** 9):
        S, means, n = sufficient.covariance_statistics(data, chunk_bytes=chunk_bytes)
        assert n == N
        np.testing.assert_allclose(S, expected, rtol=0, atol=1e-12 * scale * 1e3)
        np.testing.assert_allclose(means, stacked.mean(axis=0), rtol=1e-13)
    # integers and float32 are converted chunk by chunk
    ints = [rng.integers(-50, 50, size=(300, 4)), rng.integers(0, 9, size=(300, 3))]
    S, _, _ = sufficient.covariance_statistics(ints, chunk_bytes=8 * 7 * 10)
    np.testing.assert_allclose(S, np.cov(np.hstack(ints).astype(float), rowvar=False),
                               atol=1e-10)
    lazy = [da.from_array(x.astype(np.float32), chunks=(211, 5)) for x in data]
    S, _, _ = sufficient.covariance_statistics(lazy, chunk_bytes=8 * 47 * 50)
    exact32 = np.cov(np.hstack([x.astype(np.float32).astype(float) for x in data]),
                     rowvar=False)
    np.testing.assert_allclose(S, exact32, atol=1e-9 * scale)


def test_memmap_fit_equals_in_memory(tmp_path, data, small_chunks):
    expected = HCL(STRUCTURE, tol=1e-9).fit(data)
    for dtype in (np.float64, np.float32):
        mms = _memmaps(tmp_path, data, dtype=dtype)
        assert all(isinstance(m, np.memmap) for m in mms)
        model = HCL(STRUCTURE, tol=1e-9).fit(mms)
        oracle = expected if dtype == np.float64 else HCL(STRUCTURE, tol=1e-9).fit(
            [np.array(m) for m in mms])
        np.testing.assert_allclose(model.loadings_, oracle.loadings_, atol=1e-8)
        assert model.objective_ == pytest.approx(oracle.objective_, rel=1e-9)
        np.testing.assert_allclose(np.hstack(model.means_), np.hstack(oracle.means_),
                                   rtol=1e-12)
        assert model.path_ == "covariance"


def test_dask_fit_equals_in_memory_and_runs_per_chunk(data, small_chunks):
    from dask.callbacks import Callback

    names = ("rna", "atac", "protein")
    expected = HCL(STRUCTURE, tol=1e-9).fit(dict(zip(names, data)))
    chunks = [(250, 5), (400, -1), (173, 7)]  # unequal row chunks across modalities
    lazy = {k: da.from_array(x, chunks=c) for k, x, c in zip(names, data, chunks)}
    tasks = []

    class Count(Callback):
        def _pretask(self, key, dask, state):
            name = key[0] if isinstance(key, tuple) else key
            if str(name).startswith("_chunk_moments"):
                tasks.append(key)

    with Count():
        model = HCL(STRUCTURE, tol=1e-9).fit(lazy)
    np.testing.assert_allclose(model.loadings_, expected.loadings_, atol=1e-8)
    assert model.objective_ == pytest.approx(expected.objective_, rel=1e-9)
    assert model.modality_names_in_ == names
    assert len(tasks) == len(lazy["rna"].chunks[0])  # one task per row chunk of the lead
    # Dask and NumPy blocks mixed
    mixed = HCL(STRUCTURE, tol=1e-9).fit([lazy["rna"], data[1], data[2]])
    np.testing.assert_allclose(mixed.loadings_, expected.loadings_, atol=1e-8)
    # every covariance-based estimator gets the same door
    base = ConcatSVD(STRUCTURE).fit(data)
    np.testing.assert_allclose(ConcatSVD(STRUCTURE).fit(list(lazy.values())).get_covariance(),
                               base.get_covariance(), atol=1e-8)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_chunk_names_modality(tmp_path, data, small_chunks, bad):
    X = [x.copy() for x in data]
    X[1][1234, 3] = bad
    lazy = {"a": da.from_array(X[0], chunks=(300, -1)),
            "b": da.from_array(X[1], chunks=(300, -1)),
            "c": da.from_array(X[2], chunks=(300, -1))}
    word = "NaN" if np.isnan(bad) else "infinite"
    if np.isnan(bad):  # a missing value: the covariance path fits it (test_missing_fit.py)
        with pytest.raises(ValueError, match=r"missing values \(NaN\).*path='covariance'"):
            HCL(STRUCTURE, path="reduced").fit(X)
        with pytest.raises(ValueError, match=r"modality 1 contains NaN.*row 1234.*path="):
            HCL(STRUCTURE, path="reduced").fit(_memmaps(tmp_path, X))  # found as it is read
        assert HCL(STRUCTURE).fit(lazy).converged_
        assert HCL(STRUCTURE).fit(_memmaps(tmp_path, X)).converged_
        return
    with pytest.raises(ValueError, match=rf"modality 1 contains {word}.*row 1234"):
        HCL(STRUCTURE, path="reduced").fit(X)
    with pytest.raises(ValueError, match=rf"modality 'b' contains {word}.*row 1234"):
        HCL(STRUCTURE).fit(lazy)
    with pytest.raises(ValueError, match=rf"modality 1 contains {word}.*row 1234"):
        HCL(STRUCTURE).fit(_memmaps(tmp_path, X))


def test_users_arrays_unmodified(tmp_path, data, small_chunks):
    before = [x.copy() for x in data]
    mms = _memmaps(tmp_path, data, mode="r+")
    lazy = [da.from_array(x, chunks=(333, -1)) for x in data]
    HCL(STRUCTURE).fit(data)
    HCL(STRUCTURE).fit(mms)
    HCL(STRUCTURE).fit(lazy)
    HCL(STRUCTURE, path="reduced", random_state=0).fit(mms)
    for m in range(3):
        np.testing.assert_array_equal(data[m], before[m])
        np.testing.assert_array_equal(np.asarray(mms[m]), before[m])
        np.testing.assert_array_equal(lazy[m].compute(), before[m])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memmap_pages_released(tmp_path):
    """A pass over a 64 MB memmap leaves the resident set about where it was."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    path = tmp_path / "big.npy"
    mm = open_memmap(path, mode="w+", dtype=np.float32, shape=(200_000, 80))
    for a in range(0, 200_000, 20_000):
        mm[a:a + 20_000] = 1.0 + np.arange(80, dtype=np.float32)
        mm.flush()
        sufficient.release_pages(mm)
    del mm
    X = np.load(path, mmap_mode="r")
    start = rss()
    S, means, n = sufficient.covariance_statistics([X[:, :30], X[:, 30:]],
                                                   chunk_bytes=2 ** 22)
    assert rss() - start < 20e6  # the file is 64 MB
    np.testing.assert_allclose(means, 1.0 + np.arange(80))
    np.testing.assert_allclose(S, 0.0, atol=1e-9)


# -- the reduced (many features) path ---------------------------------------------------------
def _oracle(X, W, noise=None, K=None):
    """Full objective, relative gradient and isotropic noise with an explicit S."""
    widths = [x.shape[1] for x in X]
    S = np.cov(np.hstack(X), rowvar=False)
    if noise is None:
        eig = np.linalg.eigvalsh(S)
        noise = eig[: S.shape[0] - K].mean()
    S_W = S - noise * np.eye(S.shape[0])
    mask = np.zeros(W.shape, dtype=bool)
    mask[W != 0] = True
    R = W @ W.T - S_W
    grad = (2.0 * R @ W) * mask
    rel = np.linalg.norm(grad) / np.linalg.norm((S_W @ W)[mask])
    return 0.5 * np.sum(R * R), rel, noise, widths


def test_reduced_is_exact_when_bases_span_the_row_spaces(rng):
    st = Structure.full(3, rank=2)
    X = make_hierarchical(40, [60, 80, 100], st, noise_variance=0.5, singular_values=(2, 4),
                          random_state=int(rng.integers(2 ** 31)))
    cov = HCL(st, tol=1e-9, path="covariance").fit(X)
    red = HCL(st, tol=1e-9, path="reduced", n_oversamples=100, random_state=0).fit(X)
    assert red.path_ == "reduced" and list(red.reduced_ranks_) == [40, 40, 40]  # >= n - 1
    f_cov, _, noise, _ = _oracle(X, cov.loadings_, K=st.n_components)
    f_red, grad_red, _, _ = _oracle(X, red.loadings_, noise=noise)
    np.testing.assert_allclose(red.noise_variance_, noise, rtol=1e-9)
    assert f_red == pytest.approx(f_cov, rel=1e-9)
    assert grad_red < 1e-7  # a stationary point of the full problem
    G_cov, G_red = cov.loadings_ @ cov.loadings_.T, red.loadings_ @ red.loadings_.T
    assert np.linalg.norm(G_red - G_cov) <= 1e-7 * np.linalg.norm(G_cov)
    np.testing.assert_allclose(red.total_variance_, cov.total_variance_, rtol=1e-12)
    # per-modality noise: each modality's own eigenvalues (oracle: eigvalsh of S_mm)
    mod = HCL(st, tol=1e-9, path="reduced", denoise="modality", n_oversamples=100,
              random_state=0).fit(X)
    S = np.cov(np.hstack(X), rowvar=False)
    edges = np.cumsum([0, 60, 80, 100])
    for m in range(3):
        ev = np.linalg.eigvalsh(S[edges[m]:edges[m + 1], edges[m]:edges[m + 1]])
        r = st.modality_rank(m)
        assert mod.noise_variance_[m] == pytest.approx(ev[:-r].mean(), rel=1e-9)


def test_reduced_reaches_covariance_objective(rng):
    """Small bases grown by the full gradient reach the covariance path's solution."""
    st = Structure.full(3, rank=2)
    widths = [200, 300, 400]
    X, truth = make_hierarchical(300, widths, st, noise_variance=0.5, singular_values=(2, 4),
                                 random_state=int(rng.integers(2 ** 31)), return_truth=True)
    cov = HCL(st, tol=1e-6, path="covariance").fit(X)
    f_cov, _, noise, _ = _oracle(X, cov.loadings_, K=st.n_components)
    # the same noise level on both paths: the same objective, to the solver's tolerance
    red = HCL(st, tol=1e-6, path="reduced", denoise=noise, random_state=0).fit(X)
    f_red, grad_red, _, _ = _oracle(X, red.loadings_, noise=noise)
    assert red.converged_ and red.gradient_norm_ <= 1e-6
    assert grad_red <= 2e-6  # the oracle's gradient of the full problem
    assert f_red == pytest.approx(f_cov, rel=1e-8)
    assert np.all(red.reduced_ranks_ > 28) and np.all(red.reduced_ranks_ < 300)
    # the default noise rule: the residual energy of T (leading eigenvalues from below)
    iso = HCL(st, tol=1e-6, path="reduced", random_state=0).fit(X)
    assert iso.noise_variance_[0] == pytest.approx(noise, rel=0.02)
    f_iso, _, _, _ = _oracle(X, iso.loadings_, noise=noise)
    assert f_iso == pytest.approx(f_cov, rel=1e-4)
    # no expansion: the first reduced problem alone is already close
    once = HCL(st, tol=1e-6, path="reduced", max_expansions=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="reduced path"):
        once.fit(X)
    f_once, _, _, _ = _oracle(X, once.loadings_, noise=noise)
    assert f_cov <= f_once <= 1.05 * f_cov  # measured: about 2% above
    err_cov = gram_errors(truth.W, cov.loadings_, st, widths)[1]
    assert gram_errors(truth.W, once.loadings_, st, widths)[1] <= 1.03 * err_cov


def _gram_distance(A, B):
    """``||A A^T - B B^T||_F`` without forming the d x d matrices."""
    sq = (np.sum((A.T @ A) ** 2) + np.sum((B.T @ B) ** 2) - 2.0 * np.sum((A.T @ B) ** 2))
    return float(np.sqrt(max(sq, 0.0)))


def test_reduced_float32_stays_float32(rng, monkeypatch):
    st = Structure.full(3, rank=2)
    widths = [1500, 2000, 2500]
    X64 = make_hierarchical(600, widths, st, noise_variance=0.2, singular_values=(3, 6),
                            random_state=int(rng.integers(2 ** 31)))
    X = [x.astype(np.float32) for x in X64]
    seen = []
    original = reduced._times_t

    def spy(A, mu, Z):
        out = original(A, mu, Z)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(reduced, "_times_t", spy)
    monkeypatch.setattr(sufficient, "CHUNK_BYTES", 2 ** 20)
    data_bytes = sum(x.nbytes for x in X)
    tracemalloc.start()
    try:
        model = HCL(st, path="reduced", random_state=0).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen and all(dt == np.float32 for dt in seen)
    # a float64 copy of the data would be 2x, a centred float32 copy 1x; what is left is
    # O(d q) bases and O(n q) scores
    assert peak < 0.5 * data_bytes
    assert model.converged_
    ref = HCL(st, path="reduced", random_state=0).fit(X64)
    assert _gram_distance(model.loadings_, ref.loadings_) <= 1e-4 * np.sum(
        (ref.loadings_.T @ ref.loadings_) ** 2) ** 0.5


def test_path_auto_rule(rng):
    st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    small = make_hierarchical(100, [10, 12], st, random_state=0)
    assert HCL(st).fit(small).path_ == "covariance"
    # d = 6000: a float64 covariance of 288 MB, far above the 0.7 MB of float32 data
    wide = [x.astype(np.float32) for x in
            make_hierarchical(30, [2500, 3500], st, noise_variance=0.1, singular_values=(3, 6),
                              random_state=int(rng.integers(2 ** 31)))]
    model = HCL(st, random_state=0).fit(wide)
    assert model.path_ == "reduced" and model.loadings_.shape == (6000, 3)
    assert model.transform(wide).shape == (30, 3)
    lazy = [da.from_array(x, chunks=(10, -1)) for x in small]
    assert HCL(st).fit(lazy).path_ == "covariance"
    # the rule on shapes alone (nothing is fitted): d >= 4000 and d > 4 n, or a float64
    # covariance above 256 MiB and above the data's size
    shapes = {(900, 4500, np.float64): "reduced", (1200, 4500, np.float64): "covariance",
              (7000, 6000, np.float64): "covariance", (7000, 6000, np.float32): "reduced"}
    for (n, d, dtype), path in shapes.items():
        blocks = [np.empty((n, d // 2), dtype=dtype), np.empty((n, d - d // 2), dtype=dtype)]
        assert auto_path(blocks) == path, (n, d, dtype)
    params = HCL(st, path="covariance")._validate_params()
    assert plan_fit(params, blocks).path == "covariance"


def test_path_parameters_validated(data):
    with pytest.raises(ValueError, match="path must be"):
        HCL(STRUCTURE, path="fast").fit(data)
    with pytest.raises(ValueError, match="n_oversamples"):
        HCL(STRUCTURE, n_oversamples=-1).fit(data)
    with pytest.raises(ValueError, match="Dask"):
        HCL(STRUCTURE, path="reduced").fit([da.from_array(x) for x in data])
    # a selected structure on the reduced path: the exact compression, which needs
    # per-modality noise and in-memory arrays
    with pytest.raises(ValueError, match="per-modality noise"):
        HCL("auto", path="reduced", denoise="diagonal").fit(data)
    with pytest.raises(ValueError, match="in-memory arrays"):
        HCL("auto", path="reduced").fit([da.from_array(x) for x in data])
    with pytest.raises(TypeError, match="modality 1.*complex"):
        HCL(STRUCTURE).fit([data[0], da.from_array(data[1] + 0j), data[2]])


def test_bench_scale_tiny(capsys):
    from simulations.bench_scale import run

    results = run(["--tiny", "--threads", "1"])
    out = capsys.readouterr().out
    assert results["dask"]["same"] and results["dask"]["memory_ok"]
    assert "fitted exponents" in out and "peak RSS" in out
    assert np.isfinite(results["features"]["slope_d"])
    assert all(r["converged"] for r in results["features"]["rows"])


def test_dask_distributed_cluster(data):
    """The same code runs on a ``distributed`` cluster (worker processes, serialised tasks)."""
    distributed = pytest.importorskip("dask.distributed")
    expected = HCL(STRUCTURE, tol=1e-9).fit(data)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        lazy = [da.from_array(x, chunks=(400, -1)) for x in data]
        model = HCL(STRUCTURE, tol=1e-9).fit(lazy)
    np.testing.assert_allclose(model.loadings_, expected.loadings_, atol=1e-8)
