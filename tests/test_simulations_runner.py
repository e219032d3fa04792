"""The resumable study runner, its scenarios, the Wishart switch and the figures."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hcl_stats import Structure
from simulations import figures, rates, runner

ROOT = Path(__file__).resolve().parents[1]
REDUCED = "authors_recovery_reduced"
AUTHORS_N = [5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000, 16000, 18000, 20000, 25000,
             30000]  # the authors' sample sizes
TINY = dict(name="tiny", description="", n_features=[6, 8, 10], noise_variance=0.5,
            singular_values=[1.0, 1.5], n_samples=[200, 400], replications=2,
            methods=["HCL", "ConcatSVD"], wishart=True, method_options={},
            structure=Structure({(0, 1, 2): 1, (0, 1): 1, (2,): 1}))


def _table(path):
    return runner.read_results(path).sort_values(
        ["method", "n", "replication", "modality", "structure", "metric"]).reset_index(drop=True)


def _keys(table):
    return table[table["metric"] == "converged"][["method", "n", "replication"]]


# -- scenarios ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", runner.list_scenarios())
def test_every_shipped_scenario_loads(name):
    sc = runner.load_scenario(name)
    assert sc["structure"].n_modalities == len(sc["n_features"])
    assert sc["replications"] >= 1 and sc["n_samples"]
    assert all(m in ("HCL", "ConcatSVD") for m in sc["methods"])


@pytest.mark.parametrize("name,noise", [("authors_recovery_c6", 6.0),
                                        ("authors_recovery_c10", 10.0)])
def test_authors_designs_match_the_paper(name, noise):
    sc = runner.load_scenario(name)
    assert sc["n_features"] == [100, 500, 800]
    assert sc["n_samples"] == AUTHORS_N
    assert sc["replications"] == 100
    assert sc["noise_variance"] == noise
    assert sc["structure"] == Structure.full(3, rank=3)


def test_extension_scenarios_have_m4_m5_unequal_ranks_and_heteroscedastic_noise():
    for name, M in (("m4_unequal", 4), ("m5_hetero", 5)):
        sc = runner.load_scenario(name)
        assert sc["structure"].n_modalities == M
        assert len(set(sc["structure"].ranks)) > 1
        assert len(set(sc["noise_variance"])) > 1


def test_unknown_scenario_and_method():
    with pytest.raises(ValueError, match="unknown scenario"):
        runner.load_scenario("no_such_scenario")
    with pytest.raises(ValueError, match="unknown method"):
        runner.make_method("NoSuchMethod", Structure.full(2, 1))


def test_seeds_are_deterministic_and_distinct():
    seeds = {(n, r): runner.scenario_seed("s", n, r) for n in (100, 200) for r in range(50)}
    assert len(set(seeds.values())) == len(seeds)
    assert runner.scenario_seed("s", 100, 3) == seeds[(100, 3)]
    assert runner.scenario_seed("t", 100, 3) != seeds[(100, 3)]
    assert all(0 <= s < 2**32 for s in seeds.values())


# -- running and resuming -------------------------------------------------------------------
def test_cli_reduced_grid_writes_tidy_rows_and_rerun_adds_nothing(tmp_path, capsys):
    argv = ["run", REDUCED, "--reps", "2", "--n-samples", "500", "1000", "--out", str(tmp_path)]
    from simulations.__main__ import main

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "100%" in err and "4/4" in err  # the tqdm bar
    path = tmp_path / f"{REDUCED}.csv"
    first = path.read_bytes()
    table = runner.read_results(path)
    assert list(table.columns) == runner.COLUMNS
    sc = runner.load_scenario(REDUCED)
    n_blocks = sum(len(s) for s in sc["structure"].subsets)  # (modality, block) pairs
    # per fit: sin_theta + gram_error per block, the overall gram error, the converged flag
    assert len(table) == 2 * 2 * 2 * (2 * n_blocks + 2)
    assert set(table["level"]) == {"global", "partial", "specific", "overall", "fit"}
    assert (table["fit_seconds"] > 0).all()
    assert table[table["metric"] == "sin_theta"]["value"].between(0, 1).all()
    assert main(argv) == 0
    assert path.read_bytes() == first


def test_partial_run_then_full_run_equals_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    runner.run_scenario(TINY, out=a, max_tasks=3, progress=False)
    assert len(_keys(_table(a / "tiny.csv"))) == 3 * 2
    runner.run_scenario(TINY, out=a, progress=False)
    runner.run_scenario(TINY, out=b, progress=False, jobs=2)
    ta, tb = _table(a / "tiny.csv"), _table(b / "tiny.csv")
    assert not _keys(ta).duplicated().any()
    assert len(_keys(ta)) == 2 * 2 * 2
    cols = [c for c in runner.COLUMNS if c != "fit_seconds"]
    # same seeds, same data; the values agree up to the solver tolerance (BLAS threads differ)
    pd.testing.assert_frame_equal(ta[cols], tb[cols], check_exact=False, rtol=1e-4, atol=1e-6)


def test_killed_run_is_completed_without_duplicates(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "simulations", "run", REDUCED, "--reps", "3", "--out",
           str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    path = out / f"{REDUCED}.csv"
    deadline = time.time() + 60
    while time.time() < deadline:
        if path.exists() and path.read_text().count(",converged,") >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = runner.read_results(path)
    assert 0 < len(_keys(partial)) < 2 * 3 * 3  # it was really interrupted
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    table = runner.read_results(path)
    keys = _keys(table)
    assert not keys.duplicated().any()
    assert len(keys) == 2 * 3 * 3
    assert not table.duplicated(["method", "n", "replication", "modality", "structure",
                                 "metric"]).any()


def test_torn_file_is_repaired(tmp_path):
    runner.run_scenario(TINY, out=tmp_path, max_tasks=1, progress=False)
    path = tmp_path / "tiny.csv"
    good = runner.read_results(path)
    # an interrupted write: the first rows of another fit (no "converged" row), torn line
    extra = pd.DataFrame(runner.run_task(TINY, 400, 1, ["HCL"]), columns=runner.COLUMNS)
    with open(path, "a") as fh:
        fh.write(extra.iloc[:3].to_csv(index=False, header=False))
        fh.write("tiny,HCL,400,1,123,0,{0")
    runner.run_scenario(TINY, out=tmp_path, progress=False)
    table = runner.read_results(path)
    assert len(_keys(table)) == 8 and not _keys(table).duplicated().any()
    assert len(table) == len(good) * 4


def test_parquet_dataset_resumes(tmp_path):
    runner.run_scenario(TINY, out=tmp_path, max_tasks=2, fmt="parquet", progress=False)
    runner.run_scenario(TINY, out=tmp_path, fmt="parquet", progress=False)
    table = runner.read_results(tmp_path / "tiny.parquet")
    assert len(_keys(table)) == 8 and not _keys(table).duplicated().any()


def test_scheduler_without_distributed_is_a_clear_error(tmp_path):
    pytest.importorskip("joblib")
    try:
        import distributed  # noqa: F401
        pytest.skip("distributed is installed")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="distributed"):
        runner.run_scenario(TINY, out=tmp_path, scheduler="tcp://127.0.0.1:1", progress=False)


# -- the Wishart switch -----------------------------------------------------------------------
def test_wishart_and_data_paths_give_the_same_error_distribution():
    sc = dict(TINY, name="switch", n_features=[6, 8, 10], noise_variance=1.0,
              singular_values=[0.7, 1.2])
    reps = 40
    errors = {}
    for wishart in (True, False):
        vals = []
        for rep in range(reps):
            rows = runner.run_task(sc, 150, rep, ["HCL"], wishart=wishart)
            vals.append(np.mean([r["value"] for r in rows if r["metric"] == "sin_theta"]))
        errors[wishart] = np.array(vals)
    assert stats.ks_2samp(errors[True], errors[False]).pvalue > 0.01
    diff = errors[True].mean() - errors[False].mean()
    se = np.sqrt(errors[True].var(ddof=1) / reps + errors[False].var(ddof=1) / reps)
    assert abs(diff) < 4 * se
    # and the errors are a real signal, well below the value of a random subspace
    assert errors[True].mean() < 0.5


def test_methods_needing_data_switch_the_task_to_the_data_path(monkeypatch):
    import hcl_stats.baselines as baselines
    from hcl_stats._models.data_model import DataFactorModel
    from hcl_stats.baselines import ConcatSVD

    seen = []

    class DataOnly(DataFactorModel):  # overrides fit, has no covariance hook (like JIVE)
        def __init__(self, n_components):
            self.n_components = n_components

        def fit(self, X, y=None):
            seen.append(type(X).__name__)
            inner = ConcatSVD(self.n_components).fit(X)
            for key, value in vars(inner).items():
                if key.endswith("_"):
                    setattr(self, key, value)
            return self

    monkeypatch.setattr(baselines, "DataOnly", DataOnly, raising=False)
    assert not runner.uses_covariance(runner.make_method("DataOnly", TINY["structure"]))
    assert runner.uses_covariance(runner.make_method("HCL", TINY["structure"]))
    mixed = runner.run_task(TINY, 200, 0, ["HCL", "DataOnly"], wishart=True)
    assert seen == ["list"]
    data = runner.run_task(TINY, 200, 0, ["HCL"], wishart=False)
    wish = runner.run_task(TINY, 200, 0, ["HCL"], wishart=True)
    hcl = [r["value"] for r in mixed if r["method"] == "HCL"]
    assert hcl == pytest.approx([r["value"] for r in data], rel=1e-6)
    assert hcl != pytest.approx([r["value"] for r in wish], rel=1e-6)


# -- figures --------------------------------------------------------------------------------
def test_figures_from_results_file(tmp_path):
    runner.run_scenario(TINY, out=tmp_path, progress=False)
    assert figures.main([str(tmp_path / "tiny.csv"), "--out", str(tmp_path / "fig")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "fig").glob("*.png"))
    assert pngs == ["tiny_heatmap.png", "tiny_recovery.png"]
    assert all((tmp_path / "fig" / p).stat().st_size > 5000 for p in pngs)
    curves = figures.level_curves(runner.read_results(tmp_path / "tiny.csv"))
    assert set(curves["level"]) == {"global", "partial", "specific"}
    assert (curves["count"] == 2).all()


# -- rates ----------------------------------------------------------------------------------
def test_fit_slope_recovers_a_known_power_law(rng):
    n = np.repeat([1000, 2000, 4000, 8000], 20)
    error = 3.0 * n ** -0.5 * np.exp(0.05 * rng.standard_normal(n.size))
    fit = rates.fit_slope(n, error)
    assert fit["ci_low"] < -0.5 < fit["ci_high"]
    assert fit["ci_high"] - fit["ci_low"] < 0.05


def test_rate_slope_fast(tmp_path):
    table, _ = rates.run_rates("rates_small", out=tmp_path, replications=4)
    overall = table.iloc[0]
    assert rates.ACCEPT[0] <= overall["slope"] <= rates.ACCEPT[1]
    assert overall["ci_low"] < overall["slope"] < overall["ci_high"]


@pytest.mark.slow
def test_rate_slope_full(tmp_path):
    table, _ = rates.run_rates("rates_moderate", out=tmp_path, jobs=2)
    assert table["within"].all()
