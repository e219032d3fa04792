"""Benchmark: data larger than memory (Dask) and many features (the reduced path).

Two parts, each measured in fresh subprocesses so that the peak resident memory
(``resource.getrusage(...).ru_maxrss``) belongs to one fit:

``dask``
    Writes a float32 array of ``--rows`` samples x ``--cols`` features (three modalities,
    widths in the ratio 2:3:5) to ``.npy`` files chunk by chunk (``open_memmap``, pages
    released as written), from the hierarchical model. A second process builds Dask arrays
    of ``--chunk-rows`` rows on them (one loader task per chunk) and fits ``HCL``
    (covariance path, statistics accumulated by Dask); it reports the fit time, the peak
    RSS against ``--target-gb`` and the time of one bare pass that reads the data (the
    baseline of the ratio). A third passes the files to ``fit`` as NumPy memmaps. The check: the Dask fit on the first ``--check-rows``
    rows equals the in-memory fit on the same rows (loadings to 1e-8).

``features``
    For each size (``n``, ``d`` scaled from ``--n`` and ``--widths``), a process
    generates float32 data chunk by chunk, times one pass ``X^T Omega`` (``q`` columns,
    the baseline) and ``HCL(path="reduced").fit``, and reports the peak RSS against the
    data size. The log-log slopes of time against ``d`` (at the largest ``n``) and against
    ``n`` (at the largest ``d``) are fitted at the end. The noise variance is scaled as
    ``noise * (n / n_max) * (d_max / d)``, so that the noise bulk of the sample covariance
    (eigenvalues about ``sigma^2 d / n``), hence the conditioning of the problem and the
    number of basis expansions, is the same at every size: the slopes then measure the
    cost of the computation, not a change of difficulty.

Timings on a shared machine are noisy; the ratios measured in the same run are what
matter. Full size (takes a few minutes, 4 GB of disk)::

    python -m simulations bench-scale
    python -m simulations bench-scale --part dask --rows 100000     # smaller
    python -m simulations bench-scale --tiny                         # seconds (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

RANK = 3
SINGULAR_VALUES = (5.0, 10.0)  # block singular values: well above the d >> n noise bulk


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024)


def _current_rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _widths(total, ratios=(2, 3, 5)):
    w = [total * r // sum(ratios) for r in ratios]
    w[-1] += total - sum(w)
    return w


def _design(widths, seed):
    from hcl_stats import Structure
    from hcl_stats.datasets import make_loadings

    st = Structure.full(len(widths), rank=RANK)
    W = make_loadings(widths, st, singular_values=SINGULAR_VALUES, random_state=seed)
    return st, W


def _fill(arrays, widths, W, noise, seed, chunk_rows, release=None):
    """Fill ``arrays`` (one per modality) with model data, ``chunk_rows`` rows at a time."""
    rng = np.random.default_rng(seed)
    n = arrays[0].shape[0]
    edges = np.concatenate([[0], np.cumsum(widths)])
    K = W.shape[1]
    for a in range(0, n, chunk_rows):
        b = min(a + chunk_rows, n)
        Z = rng.standard_normal((b - a, K))
        for m, X in enumerate(arrays):
            block = rng.standard_normal((b - a, widths[m]), dtype=np.float32)
            block *= np.float32(np.sqrt(noise))
            block += (Z @ W[edges[m]:edges[m + 1]].T).astype(np.float32)
            X[a:b] = block
            if release is not None:
                release(X)


def _run_worker(args, in_process=False):
    if in_process:  # tiny runs (tests): no fresh process, so the peak RSS is not the fit's
        return json.loads(json.dumps(WORKERS[args[1]](json.loads(args[2]))))
    out = subprocess.run([sys.executable, "-m", "simulations.bench_scale", *args],
                         capture_output=True, text=True, check=False,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- workers (each in its own process) ----------------------------------------------------
def _worker_write(opts):
    from numpy.lib.format import open_memmap

    from hcl_stats._statistics.chunked import release_pages

    widths = opts["widths"]
    _, W = _design(widths, opts["seed"])
    arrays = [open_memmap(os.path.join(opts["dir"], f"X{m}.npy"), mode="w+",
                          dtype=np.float32, shape=(opts["rows"], p))
              for m, p in enumerate(widths)]
    t0 = time.perf_counter()
    _fill(arrays, widths, W, opts["noise"], opts["seed"] + 1, opts["chunk_rows"],
          release=lambda X: (X.flush(), release_pages(X)))
    for X in arrays:
        X.flush()
    return dict(write_seconds=time.perf_counter() - t0,
                disk_bytes=int(sum(opts["rows"] * p * 4 for p in widths)),
                peak_rss=_peak_rss_bytes())


def _read_rows(path, a, b):
    """Task body: rows ``[a, b)`` of a ``.npy`` file, read into memory (pages released)."""
    from hcl_stats._statistics.chunked import release_pages

    X = np.load(path, mmap_mode="r")
    out = np.array(X[a:b])
    release_pages(X)
    return out


def _dask_arrays(opts, rows=None):
    """One Dask array per modality, one chunk loader task per ``chunk_rows`` rows.

    (Not ``da.from_array(memmap)``: recent Dask copies NumPy arrays, memmaps included,
    into memory there.)
    """
    import dask
    import dask.array as da

    n = opts["rows"] if rows is None else rows
    step = opts["chunk_rows"]
    load = dask.delayed(_read_rows, pure=True)
    out = []
    for m, p in enumerate(opts["widths"]):
        path = os.path.join(opts["dir"], f"X{m}.npy")
        parts = [da.from_delayed(load(path, a, min(a + step, n)),
                                 shape=(min(a + step, n) - a, p), dtype=np.float32)
                 for a in range(0, n, step)]
        out.append(da.concatenate(parts, axis=0))
    return out


def _worker_dask_fit(opts):
    import dask

    from hcl_stats import HCL
    from hcl_stats.metrics import block_sin_theta

    if opts["threads"]:
        dask.config.set(scheduler="threads", num_workers=opts["threads"])
    rss_start = _current_rss_bytes()
    st, W = _design(opts["widths"], opts["seed"])
    t0 = time.perf_counter()
    model = HCL(st, tol=1e-6, random_state=0).fit(_dask_arrays(opts))
    fit_seconds = time.perf_counter() - t0
    peak = _peak_rss_bytes()
    # baseline, after the peak was read: one pass that reads every chunk (float64 sums)
    t0 = time.perf_counter()
    total = dask.compute(*[a.sum(axis=0, dtype=np.float64) for a in _dask_arrays(opts)])
    read_seconds = time.perf_counter() - t0
    assert all(np.all(np.isfinite(t)) for t in total)
    errors = block_sin_theta(W, model.loadings_, st, opts["widths"])
    return dict(fit_seconds=fit_seconds, read_seconds=read_seconds,
                peak_rss=peak, rss_start=rss_start, path=model.path_,
                loadings=model.loadings_.tolist(),
                converged=model.converged_,
                mean_sin_theta=float(np.mean(list(errors.values()))))


def _worker_memmap_fit(opts):
    from hcl_stats import HCL

    rss_start = _current_rss_bytes()
    st, _ = _design(opts["widths"], opts["seed"])
    mms = [np.load(os.path.join(opts["dir"], f"X{m}.npy"), mmap_mode="r")
           for m in range(len(opts["widths"]))]
    t0 = time.perf_counter()
    model = HCL(st, tol=1e-6, random_state=0).fit(mms)
    return dict(fit_seconds=time.perf_counter() - t0, peak_rss=_peak_rss_bytes(),
                rss_start=rss_start, loadings=model.loadings_.tolist())


def _worker_dask_check(opts):
    from hcl_stats import HCL

    st, _ = _design(opts["widths"], opts["seed"])
    rows = opts["check_rows"]
    lazy = HCL(st, tol=1e-9, random_state=0).fit(_dask_arrays(opts, rows=rows))
    # the oracle: numpy.cov of the rows in memory (float64), then the covariance fit
    memory = np.hstack([np.load(os.path.join(opts["dir"], f"X{m}.npy"), mmap_mode="r")[:rows]
                        .astype(np.float64) for m in range(len(opts["widths"]))])
    eager = HCL(st, tol=1e-9, random_state=0).fit_from_covariance(
        np.cov(memory, rowvar=False), rows, opts["widths"], means=memory.mean(axis=0))
    return dict(check_rows=rows,
                max_loading_difference=float(np.abs(lazy.loadings_ - eager.loadings_).max()),
                objective_difference=float(abs(lazy.objective_ - eager.objective_)))


def _worker_features(opts):
    from hcl_stats import HCL
    from hcl_stats.metrics import block_sin_theta

    if opts.get("oversamples") is None:
        opts["oversamples"] = 20
    n, widths = opts["n"], opts["widths"]
    rss_start = _current_rss_bytes()
    st, W = _design(widths, opts["seed"])
    X = [np.empty((n, p), dtype=np.float32) for p in widths]
    _fill(X, widths, W, opts["noise"], opts["seed"] + 1, max(1, 2 ** 22 // sum(widths)))
    data_bytes = sum(x.nbytes for x in X)
    rss_data = _current_rss_bytes()
    # baseline: one pass X_m^T Omega with the range finder's number of columns
    rng = np.random.default_rng(0)
    omegas = [rng.standard_normal((n, st.modality_rank(m) + opts["oversamples"]),
                                  dtype=np.float32) for m in range(len(X))]
    pass_seconds = fit_seconds = np.inf
    for _ in range(opts.get("repeat", 1)):  # best of: the machine may be shared
        t0 = time.perf_counter()
        for x, omega in zip(X, omegas):
            _ = x.T @ omega
        pass_seconds = min(pass_seconds, time.perf_counter() - t0)
        t0 = time.perf_counter()
        model = HCL(st, path="reduced", n_oversamples=opts["oversamples"],
                    random_state=0).fit(X)
        fit_seconds = min(fit_seconds, time.perf_counter() - t0)
    errors = block_sin_theta(W, model.loadings_, st, widths)
    return dict(n=n, d=int(sum(widths)), data_bytes=data_bytes, rss_start=rss_start,
                rss_with_data=rss_data, peak_rss=_peak_rss_bytes(), fit_seconds=fit_seconds,
                pass_seconds=pass_seconds, converged=model.converged_,
                ranks=[int(q) for q in model.reduced_ranks_],
                gradient_norm=model.gradient_norm_, noise=opts["noise"],
                mean_sin_theta=float(np.mean(list(errors.values()))))


WORKERS = {"write": _worker_write, "dask-fit": _worker_dask_fit,
           "memmap-fit": _worker_memmap_fit,
           "dask-check": _worker_dask_check, "features": _worker_features}


# -- driver ----------------------------------------------------------------------------------
def _slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def run_dask(args):
    tmp = tempfile.mkdtemp(prefix="hcl_bench_scale_", dir=args.dir)
    try:
        opts = dict(dir=tmp, rows=args.rows, widths=_widths(args.cols), seed=args.seed,
                    noise=args.noise, chunk_rows=args.chunk_rows, threads=args.threads,
                    check_rows=min(args.check_rows, args.rows))
        written = _run_worker(["--worker", "write", json.dumps(opts)], args.in_process)
        fitted = _run_worker(["--worker", "dask-fit", json.dumps(opts)], args.in_process)
        mapped = _run_worker(["--worker", "memmap-fit", json.dumps(opts)], args.in_process)
        checked = _run_worker(["--worker", "dask-check", json.dumps(opts)], args.in_process)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gb = 1e9
    print(f"[dask] {args.rows} x {args.cols} float32 on disk = {written['disk_bytes'] / gb:.2f} "
          f"GB in .npy files, written in {written['write_seconds']:.1f} s; Dask chunks of "
          f"{args.chunk_rows} rows, threads={args.threads or 'default'}")
    print(f"[dask] fit {fitted['fit_seconds']:.1f} s (path {fitted['path']}, converged "
          f"{fitted['converged']}); one bare read pass {fitted['read_seconds']:.1f} s; "
          f"ratio fit / read pass = {fitted['fit_seconds'] / fitted['read_seconds']:.2f}")
    ok = fitted["peak_rss"] / gb <= args.target_gb
    print(f"[dask] peak RSS {fitted['peak_rss'] / gb:.3f} GB (process start "
          f"{fitted['rss_start'] / gb:.3f} GB) vs target {args.target_gb} GB: "
          f"{'OK' if ok else 'OVER'}; peak / data on disk = "
          f"{fitted['peak_rss'] / written['disk_bytes']:.3f}")
    print(f"[dask] mean block sin-theta to the truth {fitted['mean_sin_theta']:.4f}")
    gap = float(np.abs(np.asarray(mapped["loadings"]) - np.asarray(fitted["loadings"])).max())
    print(f"[memmap] the same files passed to fit as NumPy memmaps (no Dask): fit "
          f"{mapped['fit_seconds']:.1f} s, peak RSS {mapped['peak_rss'] / gb:.3f} GB "
          f"({'OK' if mapped['peak_rss'] / gb <= args.target_gb else 'OVER'}), max |loading "
          f"difference| to the Dask fit {gap:.2e}")
    same = checked["max_loading_difference"] <= 1e-8
    print(f"[dask] check on the first {checked['check_rows']} rows: Dask fit vs the fit "
          "from numpy.cov of the rows in memory, "
          f"max |loading difference| {checked['max_loading_difference']:.2e}, |objective "
          f"difference| {checked['objective_difference']:.2e}: {'OK' if same else 'DIFFERENT'}")
    return dict(written=written, fitted=fitted, mapped=mapped, checked=checked, memory_ok=ok,
                same=same, memmap_dask_difference=gap)


def run_features(args):
    widths = np.asarray(args.widths)
    d_scales = [0.25, 0.5, 1.0]
    n_values = [args.n // 4, args.n // 2, args.n]
    configs = [(args.n, [int(round(p * s)) for p in widths]) for s in d_scales]
    configs += [(n, list(map(int, widths))) for n in n_values[:-1]]
    rows = []
    for n, w in configs:
        noise = args.noise * (n / args.n) * (widths.sum() / sum(w))
        opts = dict(n=n, widths=w, seed=args.seed, noise=noise,
                    oversamples=args.oversamples, repeat=args.repeat)
        r = _run_worker(["--worker", "features", json.dumps(opts)], args.in_process)
        rows.append(r)
        print(f"[features] n={r['n']:>6} d={r['d']:>7}  fit {r['fit_seconds']:7.2f} s  "
              f"one pass X^T Omega {r['pass_seconds']:6.3f} s  ratio "
              f"{r['fit_seconds'] / r['pass_seconds']:6.1f}  data {r['data_bytes'] / 1e6:7.1f} MB"
              f"  peak RSS {r['peak_rss'] / 1e6:7.1f} MB (= {r['peak_rss'] / r['data_bytes']:.2f}"
              f" x data; above the start {(r['peak_rss'] - r['rss_start']) / r['data_bytes']:.2f}"
              f" x data)  sin-theta {r['mean_sin_theta']:.3f}  converged {r['converged']} "
              f"(noise {r['noise']:.2f}, final bases {r['ranks']})")
    by_d = [r for r in rows if r["n"] == args.n]
    by_d = sorted({r["d"]: r for r in by_d}.values(), key=lambda r: r["d"])
    by_n = sorted({r["n"]: r for r in rows if r["d"] == int(widths.sum())}.values(),
                  key=lambda r: r["n"])
    slope_d = _slope([r["d"] for r in by_d], [r["fit_seconds"] for r in by_d])
    slope_n = _slope([r["n"] for r in by_n], [r["fit_seconds"] for r in by_n])
    base_d = _slope([r["d"] for r in by_d], [r["pass_seconds"] for r in by_d])
    base_n = _slope([r["n"] for r in by_n], [r["pass_seconds"] for r in by_n])
    full = by_d[-1]
    print(f"[features] fitted exponents: time ~ d^{slope_d:.3f} (target <= 1.1; the bare pass "
          f"~ d^{base_d:.3f}),  time ~ n^{slope_n:.3f} (target <= 1.05; the bare pass "
          f"~ n^{base_n:.3f})")
    print(f"[features] largest: n={full['n']} d={full['d']}: {full['fit_seconds']:.1f} s "
          f"(target < 60 s), peak RSS {full['peak_rss'] / full['data_bytes']:.2f} x data "
          f"(target <= 2)")
    return dict(rows=rows, slope_d=slope_d, slope_n=slope_n)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        print(json.dumps(WORKERS[argv[1]](json.loads(argv[2]))))
        return 0
    run(argv)
    return 0


def run(argv):
    """Parse ``argv``, run the parts, print the report and return the measurements."""
    parser = argparse.ArgumentParser(prog="python -m simulations bench-scale",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["dask", "features", "all"], default="all")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a few seconds)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="dask: samples")
    parser.add_argument("--cols", type=int, default=1000, help="dask: features")
    parser.add_argument("--chunk-rows", type=int, default=20_000, help="dask: rows per chunk")
    parser.add_argument("--check-rows", type=int, default=20_000,
                        help="dask: rows of the in-memory check")
    parser.add_argument("--target-gb", type=float, default=1.5, help="dask: peak RSS target")
    parser.add_argument("--threads", type=int, default=0,
                        help="dask: scheduler threads (0: Dask's default)")
    parser.add_argument("--dir", default=None, help="dask: where to write the data")
    parser.add_argument("--n", type=int, default=2000, help="features: largest n")
    parser.add_argument("--widths", type=int, nargs="+", default=[20000, 30000, 50000],
                        help="features: largest modality widths")
    parser.add_argument("--oversamples", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2,
                        help="features: best of this many timings per size")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true",
                        help="run the measurements in this process (peak RSS then not "
                             "per fit; implied by --tiny)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.cols, args.chunk_rows, args.check_rows = 3000, 100, 700, 1000
        args.n, args.widths = 200, [400, 600, 1000]
        args.in_process = True
        args.repeat = 1
    results = {}
    if args.part in ("dask", "all"):
        results["dask"] = run_dask(args)
    if args.part in ("features", "all"):
        results["features"] = run_features(args)
    return results


if __name__ == "__main__":
    sys.exit(main())
