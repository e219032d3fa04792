"""Resumable, parallel simulation studies: ``python -m simulations run SCENARIO [options]``.

A *scenario* is a TOML file in ``simulations/scenarios/`` (or any path) describing one design::

    description = "..."
    n_features = [100, 500, 800]          # modality widths
    noise_variance = 6.0                  # or one per modality
    singular_values = [0.5, 1.5]          # block singular values ~ U(low, high)
    n_samples = [5000, 6000, ...]         # the sample sizes of the grid
    replications = 100
    methods = ["HCL", "ConcatSVD"]        # any estimator of hcl_stats / hcl_stats.baselines
    wishart = true                        # draw S from its Wishart law when all methods allow

    [structure]                           # full = r  (all 2^M - 1 subsets, rank r), or
    blocks = [{ subset = [0, 1], rank = 2 }, { subset = [0], rank = 1 }, ...]

    [method_options.HCL]                  # keyword arguments of a method's constructor
    denoise = "modality"

Every (sample size, replication) pair is one *task*: its seed is derived deterministically
from ``(scenario, n, replication)``, so a task gives the same data whatever the order, the
number of workers or the machine. A task draws the data (or its covariance), fits every
requested method not yet recorded for it, and returns tidy rows ``scenario, method, n,
replication, seed, modality, structure, level, metric, value, fit_seconds``
(the metrics of :func:`hcl_stats.metrics.recovery_table`, plus a ``converged`` row per fit
that also marks the fit as complete). The main process appends a task's rows to the results
file as soon as the task finishes (one write per fit, CSV; or one part file per fit in a
Parquet dataset directory), so an interrupted run loses at most the fits in flight, and
running the same command again skips every (method, n, replication) already recorded.

The Wishart switch
------------------
HCL and ConcatSVD only use the sample covariance. With ``wishart = true`` (default; the
``--data`` / ``--wishart`` flags override it) and only such methods requested, a task draws
``S`` directly from its exact sampling distribution ``Wishart(n - 1, W W^T + Psi) / (n - 1)``
(:func:`hcl_stats.datasets.make_hierarchical_covariance`) and fits with
``fit_from_covariance``, instead of generating ``n x d`` data and calling ``fit``. Both give
the same distribution of errors (``tests/test_simulations_runner.py`` checks it), the
loadings of a given seed are identical on both paths, and the Wishart path costs
``O(d^3)`` whatever ``n``. Methods that need the data (JIVE, AJIVE, SLIDE) switch the whole
task to the data path so that all methods of a replication see the same draw.

Parallelism
-----------
``--jobs J`` runs tasks in ``J`` joblib (loky) workers, each limited to
``cores // J`` BLAS threads. ``--scheduler ADDRESS`` connects to a Dask distributed
scheduler and runs the tasks on its workers through joblib's ``dask`` backend (needs the
``distributed`` package). Results are always written by the calling process.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
import tomllib
import warnings
from pathlib import Path

from hcl_stats._models.covariance_model import CovarianceFactorModel

__all__ = ["COLUMNS", "load_scenario", "scenario_seed", "run_task", "run_scenario",
           "read_results", "main"]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

#: Columns of the tidy results table, in file order.
COLUMNS = ["scenario", "method", "n", "replication", "seed", "modality", "structure", "level",
           "metric", "value", "fit_seconds"]

_KEY = ["method", "n", "replication"]
_DONE_METRIC = "converged"  # last row written for every fit: marks the fit as complete


# -- scenarios ------------------------------------------------------------------------------
def list_scenarios():
    """Names of the scenarios shipped in ``simulations/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _parse_structure(spec, n_modalities):
    from hcl_stats import Structure

    if not isinstance(spec, dict):
        raise ValueError("[structure] must be a table with 'full' or 'blocks'")
    if "full" in spec:
        return Structure.full(n_modalities, rank=int(spec["full"]))
    if "blocks" in spec:
        blocks = {}
        for entry in spec["blocks"]:
            blocks[tuple(int(m) for m in entry["subset"])] = int(entry["rank"])
        return Structure(blocks, modalities=n_modalities)
    if "joint" in spec:
        return Structure.joint_individual(int(spec["joint"]), spec["individual"])
    raise ValueError("[structure] needs 'full = rank', 'blocks = [...]' or "
                     "'joint'/'individual'")


def load_scenario(name_or_path):
    """Read a scenario (a name in ``simulations/scenarios`` or a path to a TOML file).

    Returns a dict with keys ``name, description, n_features, noise_variance,
    singular_values, n_samples, replications, methods, wishart, structure (Structure),
    method_options, path`` (other tables, e.g. ``downstream``, are passed through).
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.exists():
        candidate = SCENARIO_DIR / f"{name_or_path}.toml"
        if not candidate.exists():
            raise ValueError(f"unknown scenario {name_or_path!r}; known: "
                             f"{', '.join(list_scenarios())} (or give a path to a .toml file)")
        path = candidate
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    missing = [k for k in ("n_features", "n_samples", "structure") if k not in raw]
    if missing:
        raise ValueError(f"scenario {path}: missing key(s) {missing}")
    sc = dict(raw)
    sc["name"] = raw.get("name", path.stem)
    sc["path"] = str(path)
    sc["n_features"] = [int(p) for p in raw["n_features"]]
    sc["n_samples"] = [int(n) for n in raw["n_samples"]]
    sc["noise_variance"] = raw.get("noise_variance", 1.0)
    sc["singular_values"] = raw.get("singular_values", [0.5, 1.5])
    sc["replications"] = int(raw.get("replications", 10))
    sc["methods"] = list(raw.get("methods", ["HCL", "ConcatSVD"]))
    sc["wishart"] = bool(raw.get("wishart", True))
    sc["method_options"] = dict(raw.get("method_options", {}))
    sc["description"] = raw.get("description", "")
    sc["structure"] = _parse_structure(raw["structure"], len(sc["n_features"]))
    return sc


def scenario_seed(scenario, n, replication):
    """Deterministic 32-bit seed of one task, from ``(scenario name, n, replication)``."""
    digest = hashlib.sha256(f"{scenario}|{int(n)}|{int(replication)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# -- methods --------------------------------------------------------------------------------
def make_method(name, structure, options=None, random_state=None):
    """Instantiate a method by name (see :func:`hcl_stats.baselines.matched_estimator`),
    configured from the scenario's true structure and its ``options``."""
    from hcl_stats.baselines import matched_estimator

    options = dict(options or {})
    if name == "HCL":
        options.setdefault("random_state", random_state)
    try:
        return matched_estimator(name, structure, **options)
    except TypeError as exc:
        raise ValueError(f"method {name!r} could not be built from the scenario's structure "
                         f"and options {options}: {exc}") from None


def uses_covariance(estimator):
    """Whether an estimator only needs the sample covariance (a covariance-based model)."""
    return isinstance(estimator, CovarianceFactorModel)


# -- one task -------------------------------------------------------------------------------
def run_task(scenario, n, replication, methods, *, wishart=None):
    """Simulate one replication at sample size ``n`` and fit ``methods`` on it.

    Returns a list of row dicts (see :data:`COLUMNS`). Never raises for a failing fit: the
    failure is recorded as ``metric == "failed"`` (value 1) so that the grid goes on.
    """
    from sklearn.exceptions import ConvergenceWarning

    from hcl_stats.datasets import make_hierarchical, make_hierarchical_covariance
    from hcl_stats.metrics import recovery_table

    seed = scenario_seed(scenario["name"], n, replication)
    structure = scenario["structure"]
    widths = scenario["n_features"]
    wishart = scenario["wishart"] if wishart is None else wishart
    estimators = {m: make_method(m, structure, scenario["method_options"].get(m),
                                 random_state=seed) for m in methods}
    use_wishart = wishart and all(uses_covariance(e) for e in estimators.values())
    kwargs = dict(noise_variance=scenario["noise_variance"],
                  singular_values=scenario["singular_values"], random_state=seed,
                  return_truth=True)
    if use_wishart:
        S, truth = make_hierarchical_covariance(int(n), widths, structure, **kwargs)
        X = None
    else:
        X, truth = make_hierarchical(int(n), widths, structure, **kwargs)
    base = dict(scenario=scenario["name"], n=int(n), replication=int(replication), seed=seed)
    rows = []
    for name, est in estimators.items():
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                if use_wishart:
                    est.fit_from_covariance(S, n_samples=int(n), n_features=widths)
                else:
                    est.fit(X)
                error = None
            except Exception as exc:  # recorded, not raised: one bad fit must not stop a grid
                error = exc
        seconds = time.perf_counter() - start
        head = dict(base, method=name, fit_seconds=seconds)
        if error is not None:
            rows.append(dict(head, modality="all", structure="all", level="fit",
                             metric="failed", value=1.0))
        else:
            table = recovery_table(est, truth)
            for rec in table.to_dict("records"):
                rows.append(dict(head, **rec))
        converged = getattr(est, "converged_", None)
        if converged is None:
            converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        converged = bool(converged) and error is None
        rows.append(dict(head, modality="all", structure="all", level="fit",
                         metric=_DONE_METRIC, value=float(converged)))
    return rows


def _run_task_quiet(scenario, n, replication, methods, wishart):
    # worker entry point: warnings are recorded in the rows, not printed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_task(scenario, n, replication, methods, wishart=wishart)


# -- results files --------------------------------------------------------------------------
def results_path(out, scenario_name, fmt="csv"):
    """``OUT/SCENARIO.csv`` (a file) or ``OUT/SCENARIO.parquet`` (a dataset directory)."""
    return Path(out) / f"{scenario_name}.{fmt}"


def read_results(path):
    """Read a results file (CSV) or Parquet dataset directory into a DataFrame."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    if path.is_dir() or path.suffix == ".parquet":
        parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not parts:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return pd.read_csv(path, dtype={"modality": str, "structure": str})


def _repair_csv(path, *, columns=COLUMNS, key=_KEY, key_types=(str, int, int),
                done_metric=_DONE_METRIC):
    """Make an interrupted CSV consistent and return the completed keys.

    The keys are the ``key`` columns of ``columns`` (default: this runner's
    ``(method, n, replication)``), converted by ``key_types``; a group of rows sharing a
    key is complete once its ``metric`` column reads ``done_metric``.

    A file cut anywhere (empty, inside the header, inside a row, between fits) is repaired
    line by line without re-encoding the rows that stay, so the kept bytes are exactly those
    written: a torn last line is dropped, a header cut short empties the file (the next
    append writes it again), the rows of a fit without its closing ``converged``
    row are dropped, and so is any second copy of a fit already complete earlier in the file.
    """
    path = Path(path)
    if not path.exists():
        return set()
    data = path.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines(keepends=True)
    header = ",".join(columns) + "\n"
    if not lines:  # empty, or cut inside the header
        if not header.encode().startswith(data):
            raise ValueError(f"{path} is not a results file of this runner (no header)")
        if data:
            _replace_text(path, "")
        return set()
    if lines[0] != header:
        raise ValueError(f"{path} is not a results file of this runner: its header is "
                         f"{lines[0].strip()!r}, expected {header.strip()!r}")
    at = [columns.index(c) for c in list(key) + ["metric"]]
    kept, pending, done = [header], {}, set()
    for line in lines[1:]:
        fields = next(csv.reader([line]))
        try:
            *values, metric = (fields[i] for i in at)
            group = tuple(t(v) for t, v in zip(key_types, values))
        except (IndexError, ValueError):
            continue  # not a row of this table (an append cannot write one): dropped
        pending.setdefault(group, []).append(line)
        if metric == done_metric:  # a fit's rows are contiguous and end with this one
            rows = pending.pop(group)
            if group not in done:
                kept.extend(rows)
                done.add(group)
    text = "".join(kept)
    if text.encode("utf-8") != data:
        _replace_text(path, text)
    return done


def _replace_text(path, text):
    """Replace the file's content atomically (a kill leaves the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _completed_keys(path):
    path = Path(path)
    if path.suffix == ".parquet":
        table = read_results(path)
        if table.empty:
            return set()
        done = table.loc[table["metric"] == _DONE_METRIC, _KEY].drop_duplicates()
        return set(map(tuple, done.itertuples(index=False, name=None)))
    return _repair_csv(path)


def _append(path, rows, *, columns=COLUMNS, key=_KEY):
    """Append the rows of one task: one write per fit (CSV) or one part file per fit
    (a fit: the rows sharing the ``key`` columns)."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=columns)
    path = Path(path)
    for group, part in table.groupby(list(key), sort=False):
        if path.suffix == ".parquet":
            path.mkdir(parents=True, exist_ok=True)
            final = path / f"part-{'-'.join(str(v) for v in group)}.parquet"
            tmp = path / f".{final.name}.tmp"
            part.to_parquet(tmp, index=False)
            os.replace(tmp, final)
        else:
            new = not path.exists() or path.stat().st_size == 0
            text = part.to_csv(index=False, header=new)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())


# -- the grid -------------------------------------------------------------------------------
def plan_tasks(scenario, methods, done, *, n_samples=None, replications=None):
    """The (n, replication, methods still to fit) triples of a run, in grid order."""
    ns = scenario["n_samples"] if n_samples is None else [int(n) for n in n_samples]
    reps = scenario["replications"] if replications is None else int(replications)
    tasks = []
    for rep in range(reps):
        for n in ns:
            todo = [m for m in methods if (m, int(n), rep) not in done]
            if todo:
                tasks.append((int(n), rep, todo))
    return tasks


def run_scenario(scenario, *, out="results", replications=None, n_samples=None, methods=None,
                 jobs=1, scheduler=None, wishart=None, fmt="csv", progress=True,
                 max_tasks=None):
    """Run (or resume) a scenario and return the path of its results.

    Parameters
    ----------
    scenario : str or dict
        A scenario name / TOML path, or a dict from :func:`load_scenario`.
    out : str or Path, default="results"
        Folder of the results file ``SCENARIO.csv`` (or ``SCENARIO.parquet``).
    replications : int, default=None
        Replications per sample size (default: the scenario's).
    n_samples : list of int, default=None
        Sample sizes (default: the scenario's).
    methods : list of str, default=None
        Methods (default: the scenario's).
    jobs : int, default=1
        Parallel workers (joblib); ``-1`` for all cores.
    scheduler : str, default=None
        Address of a Dask distributed scheduler (uses joblib's dask backend).
    wishart : bool, default=None
        Override the scenario's Wishart switch.
    fmt : {"csv", "parquet"}, default="csv"
    progress : bool, default=True
        Show a tqdm progress bar (on stderr).
    max_tasks : int, default=None
        Stop after this many tasks (for tests and timing).

    Returns
    -------
    pathlib.Path
    """
    from joblib import Parallel, delayed, parallel_backend
    from tqdm.auto import tqdm

    sc = load_scenario(scenario) if not isinstance(scenario, dict) else scenario
    methods = list(sc["methods"] if methods is None else methods)
    for name in methods:  # fail early on unknown methods
        make_method(name, sc["structure"], sc["method_options"].get(name))
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    Path(out).mkdir(parents=True, exist_ok=True)
    path = results_path(out, sc["name"], fmt)
    done = _completed_keys(path)
    tasks = plan_tasks(sc, methods, done, n_samples=n_samples, replications=replications)
    if max_tasks is not None:
        tasks = tasks[: int(max_tasks)]
    bar = tqdm(total=len(tasks), desc=f"{sc['name']}", unit="task", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    if not tasks:
        bar.close()
        return path
    calls = (delayed(_run_task_quiet)(sc, n, rep, todo, wishart) for n, rep, todo in tasks)
    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise RuntimeError(
                "--scheduler needs Dask's distributed scheduler: pip install "
                "'dask[distributed]' (or run without --scheduler to use local processes)"
            ) from None
        client = Client(scheduler)
        try:
            with parallel_backend("dask"):
                results = Parallel(n_jobs=-1, return_as="generator_unordered")(calls)
                for rows in results:
                    _append(path, rows)
                    bar.update(1)
        finally:
            client.close()
    elif jobs == 1:
        for n, rep, todo in tasks:
            _append(path, _run_task_quiet(sc, n, rep, todo, wishart))
            bar.update(1)
    else:
        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(calls)
        for rows in results:
            _append(path, rows)
            bar.update(1)
    bar.close()
    return path


def summarise(path):
    """Mean per-block sin-theta and Gram error, and mean fit time, per method and n."""
    table = read_results(path)
    blocks = table[table["level"].isin(["global", "partial", "specific"])]
    out = blocks.pivot_table(index=["method", "n"], columns="metric", values="value",
                             aggfunc="mean")
    fits = table[table["metric"] == _DONE_METRIC]
    out["fit_seconds"] = fits.groupby(["method", "n"])["fit_seconds"].mean()
    out["converged"] = fits.groupby(["method", "n"])["value"].mean()
    out["replications"] = fits.groupby(["method", "n"])["replication"].nunique()
    return out


def _parser():
    p = argparse.ArgumentParser(prog="python -m simulations run",
                                description="Run (or resume) a simulation scenario.")
    p.add_argument("scenario", nargs="?", help="scenario name or path to a .toml file")
    p.add_argument("--reps", type=int, default=None, help="replications per sample size")
    p.add_argument("--jobs", type=int, default=1, help="parallel workers (-1: all cores)")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--methods", nargs="+", default=None, help="methods to fit")
    p.add_argument("--n-samples", nargs="+", type=int, default=None,
                   help="restrict to these sample sizes")
    p.add_argument("--scheduler", default=None,
                   help="Dask distributed scheduler address (e.g. tcp://host:8786)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--wishart", dest="wishart", action="store_true", default=None,
                   help="draw covariances from the Wishart law when all methods allow")
    g.add_argument("--data", dest="wishart", action="store_false",
                   help="always simulate n x d data")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--max-tasks", type=int, default=None, help="stop after this many tasks")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list", action="store_true", help="list the known scenarios")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.list or args.scenario is None:
        for name in list_scenarios():
            print(f"{name:<32} {load_scenario(name)['description']}")
        return 0
    try:
        sc = load_scenario(args.scenario)
        start = time.perf_counter()
        path = run_scenario(sc, out=args.out, replications=args.reps, n_samples=args.n_samples,
                            methods=args.methods, jobs=args.jobs, scheduler=args.scheduler,
                            wishart=args.wishart, fmt=args.format,
                            progress=not args.no_progress, max_tasks=args.max_tasks)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"results: {path}  ({elapsed:.1f} s)")
    table = summarise(path)
    if not table.empty:
        with_cols = [c for c in ("sin_theta", "gram_error", "fit_seconds", "converged",
                                 "replications") if c in table]
        print(table[with_cols].to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
