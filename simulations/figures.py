"""Standard figures of a simulation study, from its results file only.

``python -m simulations figures RESULTS [--out DIR] [--metric sin_theta]`` writes

- ``<stem>_recovery.png``: mean block error against ``n`` (log-log), one panel per level
  (global / partial / specific), one line per method with a 95% band over replications
  (mean of the level's blocks within each replication, then mean +- 1.96 standard errors);
- ``<stem>_heatmap.png``: per-block mean error (rows: modality x structure, columns: n),
  one panel per method, on a shared colour scale.

Only the tidy rows written by ``python -m simulations run`` are used, so figures can be
redrawn at any time, also while a run is still appending.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["level_curves", "block_means", "recovery_figure", "heatmap_figure", "main"]

LEVEL_ORDER = ("global", "partial", "specific")


def level_curves(table, metric="sin_theta"):
    """Per (method, level, n): mean over replications of the level's mean block error,
    with its standard error and the number of replications."""
    rows = table[(table["metric"] == metric) & table["level"].isin(LEVEL_ORDER)]
    per_rep = rows.groupby(["method", "level", "n", "replication"])["value"].mean()
    grouped = per_rep.groupby(["method", "level", "n"])
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"].fillna(0.0) / np.sqrt(out["count"])
    return out


def block_means(table, metric="sin_theta"):
    """Per (method, block) x n table of mean errors; the block is ``"m | S"``."""
    rows = table[(table["metric"] == metric) & table["level"].isin(LEVEL_ORDER)].copy()
    rows["block"] = rows["modality"].astype(str) + " | " + rows["structure"].astype(str)
    return rows.pivot_table(index=["method", "block"], columns="n", values="value",
                            aggfunc="mean")


def recovery_figure(table, metric="sin_theta"):
    """Error against n per level, one line and 95% band per method."""
    from matplotlib.figure import Figure

    curves = level_curves(table, metric)
    levels = [lv for lv in LEVEL_ORDER if lv in set(curves["level"])]
    fig = Figure(figsize=(4.2 * max(len(levels), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(levels), 1), squeeze=False, sharey=True)[0]
    for ax, level in zip(axes, levels):
        sub = curves[curves["level"] == level]
        for method, part in sub.groupby("method"):
            part = part.sort_values("n")
            line, = ax.plot(part["n"], part["mean"], marker="o", ms=3, label=method)
            ax.fill_between(part["n"], part["mean"] - 1.96 * part["se"],
                            part["mean"] + 1.96 * part["se"], color=line.get_color(),
                            alpha=0.25, linewidth=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{level} blocks")
        ax.set_xlabel("n (samples)")
    axes[0].set_ylabel(f"mean block {metric.replace('_', ' ')}")
    axes[0].legend(frameon=False)
    return fig


def heatmap_figure(table, metric="sin_theta"):
    """Per-block mean error heatmaps, one panel per method, shared colour scale."""
    from matplotlib.figure import Figure

    means = block_means(table, metric)
    methods = list(dict.fromkeys(means.index.get_level_values("method")))
    n_blocks = max((len(means.loc[m]) for m in methods), default=1)
    fig = Figure(figsize=(3.0 + 0.45 * means.shape[1] * len(methods), 1.2 + 0.28 * n_blocks),
                 layout="constrained")
    axes = fig.subplots(1, max(len(methods), 1), squeeze=False)[0]
    vmin = float(np.nanmin(means.to_numpy())) if means.size else 0.0
    vmax = float(np.nanmax(means.to_numpy())) if means.size else 1.0
    image = None
    for ax, method in zip(axes, methods):
        sub = means.loc[method]
        image = ax.imshow(sub.to_numpy(), aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(sub.shape[1]), [str(c) for c in sub.columns], rotation=90,
                      fontsize=7)
        ax.set_yticks(range(sub.shape[0]), list(sub.index), fontsize=7)
        ax.set_title(method)
        ax.set_xlabel("n")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=f"mean {metric.replace('_', ' ')}")
    return fig


def main(argv=None):
    from simulations.runner import read_results

    p = argparse.ArgumentParser(prog="python -m simulations figures",
                                description="Draw the standard figures from a results file.")
    p.add_argument("results", help="results CSV file or Parquet dataset directory")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: beside RESULTS)")
    p.add_argument("--metric", default="sin_theta", choices=["sin_theta", "gram_error"])
    args = p.parse_args(argv)
    path = Path(args.results)
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    table = read_results(path)
    if table.empty or not (table["metric"] == args.metric).any():
        print(f"error: {path} has no {args.metric!r} rows", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    stem = path.name.split(".")[0]
    written = []
    for suffix, make in (("recovery", recovery_figure), ("heatmap", heatmap_figure)):
        fig = make(table, args.metric)
        target = out / f"{stem}_{suffix}.png"
        fig.savefig(target, dpi=120)
        written.append(target)
    for target in written:
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
