"""HCL against the baselines on the same simulated data: ``python -m simulations compare``.

Fits HCL, ConcatSVD, JIVE, AJIVE and SLIDE on

* the reference design (3 modalities, all 7 subsets with rank 3, p = 100/500/800,
  the paper's design) at a moderate noise variance (default 1.0), where JIVE and AJIVE
  cannot represent the partial blocks, and
* a global + specific design (joint rank 2, individual ranks 2/3/2, p = 100/200/300, noise
  0.1) where JIVE and AJIVE are correctly specified,

and prints, per method and per level of the true structure, the mean sin-theta distance and
the mean Gram error of the blocks, the overall Gram error and the fit time. Every method is
given the true ranks it can use: HCL and SLIDE the true structure, ConcatSVD its total
rank, JIVE the true global rank as joint rank and each modality's remaining rank as
individual rank (the partial blocks have nowhere else to go), AJIVE each modality's total
rank as initial signal rank (joint and individual ranks are then estimated, as in the
method). Methods whose structure differs from the truth are matched by one global
Procrustes rotation (:func:`hcl_stats.metrics.align_loadings`).

``--quick`` runs small versions of both designs in a few seconds (used by the smoke test).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from hcl_stats import Structure
from hcl_stats.baselines import ESTIMATORS, matched_estimator
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import recovery_table


def designs(quick, noise):
    if quick:
        return [
            ("reference", Structure.full(3, rank=1), [15, 25, 35], 400, noise),
            ("global+specific", Structure.joint_individual(1, [1, 2, 1]), [15, 20, 25], 400,
             0.1),
        ]
    return [
        ("reference", Structure.full(3, rank=3), [100, 500, 800], 5000, noise),
        ("global+specific", Structure.joint_individual(2, [2, 3, 2]), [100, 200, 300], 5000,
         0.1),
    ]


def methods(structure, quick):
    samples = 100 if quick else 1000
    options = {"AJIVE": {"n_wedin_samples": samples, "n_randdir_samples": samples,
                         "random_state": 0},
               "SLIDE": {"random_state": 0}}
    return {name: (lambda name=name: matched_estimator(name, structure,
                                                       **options.get(name, {})))
            for name in ESTIMATORS}


def run(quick=False, noise=1.0, seed=0):
    """Return the tidy results table (design, method, level, metric, value, fit_time)."""
    rows = []
    for name, structure, widths, n, c in designs(quick, noise):
        X, truth = make_hierarchical(n, widths, structure, noise_variance=c,
                                     random_state=seed, return_truth=True)
        for method, make in methods(structure, quick).items():
            start = time.perf_counter()
            model = make().fit(X)
            elapsed = time.perf_counter() - start
            table = recovery_table(model, truth)
            summary = table.groupby(["level", "metric"], as_index=False)["value"].mean()
            for rec in summary.itertuples(index=False):
                rows.append(dict(design=f"{name} (noise {c:g}, n={n})", method=method,
                                 level=rec.level, metric=rec.metric, value=rec.value,
                                 fit_time=elapsed, fitted_structure=repr(model.structure_)))
    return pd.DataFrame(rows)


def format_results(results):
    out = []
    for design, part in results.groupby("design", sort=False):
        wide = part.pivot_table(index="method", columns=["metric", "level"], values="value",
                                sort=False)
        wide.columns = [f"{'sin' if m == 'sin_theta' else 'gram'}:{lvl}"
                        for m, lvl in wide.columns]
        wide = wide[[c for c in wide.columns if c != "gram:overall"] + ["gram:overall"]]
        wide["time_s"] = part.groupby("method", sort=False)["fit_time"].first()
        order = [m for m in ["HCL", "ConcatSVD", "JIVE", "AJIVE", "SLIDE"] if m in wide.index]
        out.append(f"== {design} ==\n{wide.loc[order].round(3).to_string()}\n")
        structures = part.groupby("method", sort=False)["fitted_structure"].first()
        out.append("fitted structures:\n" + "\n".join(
            f"  {m:<10} {structures[m]}" for m in order) + "\n")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small designs (seconds)")
    parser.add_argument("--noise", type=float, default=1.0,
                        help="noise variance of the reference design (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the tidy table to this CSV")
    args = parser.parse_args(argv)
    results = run(quick=args.quick, noise=args.noise, seed=args.seed)
    print("mean sin-theta (sin:) and Gram error (gram:) per level of the true structure; "
          "lower is better")
    print(format_results(results))
    if args.out:
        results.to_csv(args.out, index=False)
    return 0
