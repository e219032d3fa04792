"""`make demo`: a small simulation study on the authors' reference design.

HCL against the unstructured SVD and the other baselines of :mod:`hcl_stats.baselines` on
``p = (100, 500, 800)``, rank 3 for all 7 structures, noise variance 6, a few sample sizes
and replications. Prints a table of mean recovery errors and fit times, writes the tidy
rows to ``OUT/demo.csv``, the summary to ``OUT/demo_summary.csv`` and a figure to
``OUT/demo.png``. Rows are appended as each fit finishes, so an interrupted run keeps what
it did.

    python -m simulations demo [--out results] [--n 5000 10000 20000] [--reps 2]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hcl_stats import Structure
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import recovery_table

WIDTHS = (100, 500, 800)
NOISE = 6.0


DEFAULT_METHODS = ("HCL", "ConcatSVD", "AJIVE")


def methods(structure, names=DEFAULT_METHODS):
    """Unfitted estimators by name, matched to the structure (see ``matched_estimator``).

    JIVE and AJIVE cannot represent partially shared factors. JIVE and SLIDE take minutes
    per fit at this noise level (their alternating SVDs converge slowly), so the default
    demo leaves them out; ``--methods HCL ConcatSVD JIVE AJIVE SLIDE`` includes them. AJIVE
    draws 200 rather than 1000 samples for its rank bounds, to keep the demo short.
    """
    from hcl_stats.baselines import ESTIMATORS, matched_estimator

    options = {"AJIVE": {"n_wedin_samples": 200, "n_randdir_samples": 200, "random_state": 0}}
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(ESTIMATORS)}")
    return {n: (lambda n=n: matched_estimator(n, structure, **options.get(n, {})))
            for n in names}


def run(n_values, reps, out_dir, seed=2026, method_names=DEFAULT_METHODS):
    structure = Structure.full(3, rank=3)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "demo.csv"
    if rows_path.exists():
        rows_path.unlink()
    table = []
    for n in n_values:
        for rep in range(reps):
            seed_nr = seed + 1000 * rep + n
            X, truth = make_hierarchical(n, WIDTHS, structure, noise_variance=NOISE,
                                         random_state=seed_nr, return_truth=True)
            t0 = time.perf_counter()
            Xc = np.hstack(X)
            Xc = Xc - Xc.mean(axis=0)
            Xc.T @ Xc
            cov_seconds = time.perf_counter() - t0
            for name, make in methods(structure, method_names).items():
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = make().fit(X)
                seconds = time.perf_counter() - t0
                tidy = recovery_table(model, truth)
                tidy.insert(0, "replication", rep)
                tidy.insert(0, "n", n)
                tidy.insert(0, "method", name)
                tidy["fit_seconds"] = seconds
                tidy["covariance_seconds"] = cov_seconds
                tidy.to_csv(rows_path, mode="a", header=not rows_path.exists(), index=False)
                table.append(tidy)
    return pd.concat(table, ignore_index=True)


def summarise(results):
    """Mean overall Gram error, mean block sin-theta per level, and fit time per method and n."""
    overall = (results[results.level == "overall"]
               .groupby(["method", "n"]).value.mean().rename("gram_overall"))
    blocks = (results[(results.metric == "gram_error") & (results.level != "overall")]
              .groupby(["method", "n"]).value.mean().rename("gram_block_mean"))
    sin = (results[results.metric == "sin_theta"]
           .pivot_table(index=["method", "n"], columns="level", values="value", aggfunc="mean")
           .add_prefix("sin_theta_"))
    timing = results.groupby(["method", "n"]).fit_seconds.mean()
    return pd.concat([overall, blocks, sin, timing], axis=1).reset_index()


def figure(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, group in summary.groupby("method"):
        axes[0].plot(group.n, group.gram_overall, marker="o", label=name)
        cols = [c for c in group.columns if c.startswith("sin_theta_")]
        axes[1].plot(group.n, group[cols].mean(axis=1), marker="o", label=name)
    axes[0].set(xlabel="n", ylabel="overall Gram error", title="||WW' - W^W^'||_F")
    axes[1].set(xlabel="n", ylabel="mean block sin-theta", title="block subspace error")
    for ax in axes:
        ax.set_xscale("log")
        ax.legend()
    fig.suptitle(f"Authors' design: p={WIDTHS}, rank 3 x 7 structures, noise {NOISE:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results")
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    args = parser.parse_args(argv)
    results = run(args.n, args.reps, args.out, method_names=args.methods)
    summary = summarise(results)
    out = Path(args.out)
    summary.to_csv(out / "demo_summary.csv", index=False)
    figure(summary, out / "demo.png")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))
    print(f"\nwrote {out / 'demo.csv'}, {out / 'demo_summary.csv'} and {out / 'demo.png'}")
    return 0
