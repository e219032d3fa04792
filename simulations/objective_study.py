"""Least squares against likelihood as the objective of ``HCL()``: probes, time, recovery.

``python -m simulations objective [--part real simulated] [--sets ...] [--cv-repeats 3]
[--timing-repeats 5] [--reps 5] [--seed 0] [--out results/objective]``

``real``: for each real data set (:data:`simulations.real_data.LOADERS`) and variant (as
shipped, standardised), the structure ``HCL()`` selects on all samples is fitted with each
objective (``scale="modality"``, the weighting ``HCL()`` selects with) and compared with a
PCA of the concatenated data at the same dimension: frozen linear-probe accuracy minus
PCA's on the same splits (:func:`simulations.real_data.probe_accuracies`), whether the fit
on all samples converged, and its CPU time over PCA's (median of ``timing-repeats``
interleaved rounds; compare single-threaded runs, ``OPENBLAS_NUM_THREADS=1``). The
columns ``n`` and ``d`` (samples and features) show which sets a rule on ``n / d`` would
move.

``simulated``: Gaussian data with known loadings, fitted with the true structure by both
objectives; mean and largest block sin-theta distance (:func:`hcl_stats.metrics.
block_sin_theta`) over ``reps`` draws. Designs: :func:`hcl_stats.datasets.make_loadings`
shapes (three modalities of 30-50 features; a wide one of 350 features; two modalities of
120 + 21 features with a strong specific direction in the small one; four modalities of 16
features with per-feature noise from 0.05 to 3, which the per-modality noise model
misspecifies) at several ``n`` on both sides of ``d``, and two plasmodes, whose truth is
the fit of a real set (nutrimouse as shipped, by the likelihood; standardised digits, by
least squares) drawn as Gaussian data of the set's size or smaller.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from hcl_stats import HCL, Structure
from hcl_stats.datasets import make_loadings
from hcl_stats.metrics import block_sin_theta
from simulations.real_data import LOADERS, load, probe_accuracies

__all__ = ["real_table", "simulated_table", "main"]

OBJECTIVES = ("least_squares", "likelihood")


def _cpu_median(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def _fit(structure, objective, views):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HCL(structure, scale="modality", objective=objective).fit(views)


def real_table(sets, variants=("raw", "standardised"), *, cv_repeats=3, timing_repeats=5):
    """One row per data set, variant and objective (see the module docstring)."""
    rows = []
    for name in sets:
        for variant in variants:
            views, y = load(name, variant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = HCL().fit(views).structure_
            Xcat = np.hstack(list(views.values()))
            K = structure.n_components
            pca_s = _cpu_median(lambda: PCA(K, random_state=0).fit(Xcat), timing_repeats)
            for objective in OBJECTIVES:
                probes = probe_accuracies(views, y, structure, hcl_params={
                    "objective": objective}, methods=["HCL", "PCA"], repeats=cv_repeats)
                fit_s = _cpu_median(lambda: _fit(structure, objective, views), timing_repeats)
                rows.append({
                    "data": name, "variant": variant, "n": Xcat.shape[0], "d": Xcat.shape[1],
                    "K": K, "objective": objective,
                    "acc_PCA": probes.loc["PCA", "accuracy"],
                    "HCL_minus_PCA": probes.loc["HCL", "vs_PCA"],
                    "sd": probes.loc["HCL", "vs_PCA_sd"],
                    "converged": bool(_fit(structure, objective, views).converged_),
                    "fit_over_pca": fit_s / pca_s})
    return pd.DataFrame(rows)


def _design_loadings():
    """``{label: (widths, structure, W, per-feature noise, sample sizes)}`` of the shapes."""
    out = {}
    widths, st = (30, 40, 50), Structure.full(3, rank=2)
    out["three modalities"] = (widths, st, make_loadings(widths, st, singular_values=(1, 3),
                                                         random_state=1),
                               np.ones(120), (40, 120, 1000))
    widths = (100, 200, 50)
    st = Structure({(0, 1, 2): 2, (0, 1): 1, (0,): 2, (1,): 2, (2,): 1})
    out["wide"] = (widths, st, make_loadings(widths, st, singular_values=(1, 3),
                                             random_state=2), np.ones(350), (120, 2000))
    widths, st = (120, 21), Structure({(0, 1): 3, (0,): 4, (1,): 1})
    W = make_loadings(widths, st, random_state=4)
    W[120:, -1] *= 4.0  # a strong specific direction in the small modality
    out["strong specific"] = (widths, st, W, np.full(141, 0.5), (40, 160, 1600))
    widths = (16,) * 4
    st = Structure({(0, 1, 2, 3): 3, (0, 1, 2): 1, (1, 3): 1, (2,): 1, (3,): 1})
    out["4 x 16, per-feature noise"] = (
        widths, st, make_loadings(widths, st, singular_values=(1, 3), random_state=3),
        np.random.default_rng(5).uniform(0.05, 3.0, 64), (200, 1800))
    for name, variant, objective, ns in (("nutrimouse", "raw", "likelihood", (40, 160)),
                                         ("digits", "standardised", "least_squares", (1797,))):
        views, _ = load(name, variant)
        fitted = _fit(HCL().fit(views).structure_, objective, views)
        st = Structure(dict(fitted.structure_.blocks))  # positional, for list input
        out[f"plasmode {name} {variant}"] = (
            [v.shape[1] for v in views.values()], st, fitted.loadings_,
            fitted.feature_noise_variance(), ns)
    return out


def simulated_table(reps=5, seed=0):
    """One row per design, sample size and objective (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, (widths, st, W, psi, ns) in _design_loadings().items():
        edges = np.cumsum(widths)[:-1]
        for n in ns:
            found = {o: [] for o in OBJECTIVES}
            converged = dict.fromkeys(OBJECTIVES, 0)
            for _ in range(reps):
                X = rng.standard_normal((n, W.shape[1])) @ W.T
                X += rng.standard_normal(X.shape) * np.sqrt(psi)
                X = np.split(X, edges, axis=1)
                for objective in OBJECTIVES:
                    model = _fit(st, objective, X)
                    converged[objective] += int(model.converged_)
                    found[objective].append(block_sin_theta(W, model.loadings_, st, widths))
            for objective, draws in found.items():
                per_block = [np.mean([b[key] for b in draws]) for key in draws[0]]
                rows.append({"design": label, "n": n, "d": sum(widths), "objective": objective,
                             "mean_sin_theta": float(np.mean(per_block)),
                             "max_sin_theta": float(np.max(per_block)),
                             "converged": f"{converged[objective]}/{reps}"})
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations objective",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["real", "simulated"],
                        choices=["real", "simulated"])
    parser.add_argument("--sets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--cv-repeats", type=int, default=3)
    parser.add_argument("--timing-repeats", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5, help="draws per simulated design")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for real.csv / simulated.csv")
    args = parser.parse_args(argv)
    tables = {}
    if "real" in args.part:
        tables["real"] = real_table(args.sets, cv_repeats=args.cv_repeats,
                                    timing_repeats=args.timing_repeats)
    if "simulated" in args.part:
        tables["simulated"] = simulated_table(args.reps, args.seed)
    for part, table in tables.items():
        print(f"\n== {part}\n{table.round(3).to_string(index=False)}")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            table.to_csv(os.path.join(args.out, f"{part}.csv"), index=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
