"""The array-API core on other namespaces: array_api_strict (CPU) and CuPy (GPU, marked).

``array_api_strict`` implements only the standard, so a core that runs on it uses nothing
else on its large arrays; its ``no_float64`` device mimics accelerators without float64.
"""

import numpy as np
import pytest

from hcl_stats import HCL, Structure
from hcl_stats._estimation import lbfgs
from hcl_stats._estimation.fit import fit_hcl
from hcl_stats._numerics.backend import namespace_for, supports_float64, to_numpy
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats.datasets import make_hierarchical

xps = pytest.importorskip("array_api_strict")


@pytest.fixture(autouse=True)
def _same_iteration(monkeypatch):
    """The same iteration on every namespace: the truncated Newton directions of the dense
    NumPy layout (which other namespaces do not take) are switched off, so that NumPy and
    the other namespaces agree up to rounding, not only to the solver's tolerance."""
    monkeypatch.setattr(lbfgs, "_NEWTON_FROM", -1.0)


_NEWTON_FROM = lbfgs._NEWTON_FROM

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 2, (0,): 1})
WIDTHS = [15, 20, 25]


@pytest.fixture(scope="module")
def data():
    X = make_hierarchical(400, WIDTHS, STRUCTURE, noise_variance=0.5, random_state=0)
    return X, sample_covariance(X)[0]


@pytest.mark.parametrize("denoise", ["isotropic", "modality", None])
def test_strict_float64_matches_numpy(data, denoise):
    X, S = data
    ref = fit_hcl(S, WIDTHS, STRUCTURE, denoise=denoise, tol=1e-10)
    out = fit_hcl(xps.asarray(S), WIDTHS, STRUCTURE, denoise=denoise, tol=1e-10)
    assert out.converged and ref.converged
    assert isinstance(out.loadings, np.ndarray)
    np.testing.assert_allclose(out.loadings, ref.loadings, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out.noise_variance, ref.noise_variance, rtol=1e-12)
    assert out.objective == pytest.approx(ref.objective, rel=1e-10)


def test_numpy_newton_phase_matches_strict_to_the_tolerance(data, monkeypatch):
    X, S = data
    monkeypatch.setattr(lbfgs, "_NEWTON_FROM", _NEWTON_FROM)
    ref = fit_hcl(S, WIDTHS, STRUCTURE, tol=1e-10)  # dense layout, Newton directions
    out = fit_hcl(xps.asarray(S), WIDTHS, STRUCTURE, tol=1e-10)  # per-modality L-BFGS
    assert out.converged and ref.converged
    scale = np.abs(ref.loadings).max()
    np.testing.assert_allclose(out.loadings, ref.loadings, rtol=0, atol=1e-7 * scale)
    assert out.objective == pytest.approx(ref.objective, rel=1e-10)


def test_strict_covariance_matches_numpy(data):
    X, S = data
    Xs = [xps.asarray(x) for x in X]
    S_strict, means, n = sample_covariance(Xs)
    np.testing.assert_allclose(to_numpy(S_strict), S, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(means, np.hstack(X).mean(axis=0), rtol=1e-12)
    assert n == 400
    np.testing.assert_allclose(S, np.cov(np.hstack(X), rowvar=False), rtol=1e-10)


def test_device_without_float64_runs_in_float32(data):
    X, S = data
    device = xps.Device("no_float64")
    assert not supports_float64(xps, device)
    ref = fit_hcl(S, WIDTHS, STRUCTURE, tol=1e-10)
    # data on the device: the covariance and the solver stay in float32 there (the strict
    # namespace refuses float64 arrays on this device)
    Xd = [xps.asarray(x.astype(np.float32), device=device) for x in X]
    S32, _, _ = sample_covariance(Xd)
    assert S32.dtype == xps.float32
    out = fit_hcl(S32, WIDTHS, STRUCTURE, tol=1e-5)
    assert out.converged
    scale = np.abs(ref.loadings).max()
    np.testing.assert_allclose(out.loadings, ref.loadings, rtol=0, atol=1e-3 * scale)
    assert out.objective == pytest.approx(ref.objective, rel=1e-4)


def test_estimator_fit_from_strict_covariance(data):
    X, S = data
    ref = HCL(STRUCTURE, tol=1e-10).fit_from_covariance(S, 400, WIDTHS)
    out = HCL(STRUCTURE, tol=1e-10).fit_from_covariance(xps.asarray(S), 400, WIDTHS)
    assert isinstance(out.loadings_, np.ndarray)
    np.testing.assert_allclose(out.loadings_, ref.loadings_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out.get_covariance(), ref.get_covariance(), atol=1e-10)


def test_backend_parameter_is_validated():
    with pytest.raises(ValueError, match="backend"):
        namespace_for("tpu", np.zeros(2))
    with pytest.raises(ValueError, match="backend"):
        HCL(STRUCTURE, backend="tpu").fit_from_covariance(np.eye(60), 100, WIDTHS)


def _cupy_or_skip():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"no CUDA device ({exc})")
    return cupy


@pytest.mark.gpu
def test_cupy_fit_matches_numpy(data):
    cupy = _cupy_or_skip()
    X, S = data
    ref = HCL(STRUCTURE, tol=1e-9).fit(X)
    on_gpu = HCL(STRUCTURE, tol=1e-9, backend="cupy").fit(X)
    from_cupy = HCL(STRUCTURE, tol=1e-9).fit([cupy.asarray(x) for x in X])
    for model in (on_gpu, from_cupy):
        assert isinstance(model.loadings_, np.ndarray)
        np.testing.assert_allclose(model.loadings_, ref.loadings_, rtol=0, atol=1e-6)
        np.testing.assert_allclose(model.noise_variance_, ref.noise_variance_, rtol=1e-6)


def test_estimator_fit_on_strict_blocks(data):
    X, S = data
    ref = HCL(STRUCTURE, tol=1e-10).fit(X)
    Xs = [xps.asarray(x) for x in X]
    out = HCL(STRUCTURE, tol=1e-10).fit(Xs)  # backend "auto": runs in the strict namespace
    host = HCL(STRUCTURE, tol=1e-10, backend="numpy").fit(Xs)
    for model in (out, host):
        assert isinstance(model.loadings_, np.ndarray)
        np.testing.assert_allclose(model.loadings_, ref.loadings_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(model.noise_variance_, ref.noise_variance_, rtol=1e-12)
        np.testing.assert_allclose(np.hstack(model.means_), np.hstack(ref.means_), atol=1e-14)
    # new samples as strict arrays are accepted by the NumPy-side methods
    np.testing.assert_allclose(out.transform(Xs), ref.transform(X), atol=1e-9)


def test_device_blocks_with_nan_name_the_modality(data):
    X, _ = data
    bad = X[1].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="modality 1"):
        HCL(STRUCTURE).fit([xps.asarray(X[0]), xps.asarray(bad), xps.asarray(X[2])])
    assert np.isnan(bad[3, 2])  # the user's array is untouched


def test_gpu_benchmark_runs_on_the_strict_stand_in(capsys):
    from simulations.bench_gpu import main

    assert main(["--namespace", "strict", "--n", "200", "--widths", "10", "12", "14",
                 "--rank", "1"]) == 0
    out = capsys.readouterr().out
    agreement = float(out.strip().splitlines()[-1].split("worst agreement ")[1].split()[0])
    assert agreement < 1e-6


def test_gpu_benchmark_skips_without_cupy(capsys, monkeypatch):
    import sys

    from simulations.bench_gpu import main

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert main(["--n", "50"]) == 0
    assert "skipped" in capsys.readouterr().out
