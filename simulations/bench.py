"""Benchmark: HCL fit time over the bare covariance time, on the authors' design.

Design ``p = (100, 500, 800)``, rank 3 for all 7 subsets, n = 5000, at noise 6 (the
authors' recovery design) and noise 1. For each noise level, replication (seeds 500, ...)
and solver, ``--runs`` interleaved rounds of:

* ``cov``: the bare float64 covariance ``Xc.T @ Xc`` of the centred data, the baseline of
  every ratio (measured right before each fit in the same round);
* ``fit``: ``HCL.fit_from_covariance`` (noise step, initialiser, solver);
* ``total``: ``HCL.fit(X)`` (covariance included).

Counts: ``n_iter`` (solver iterations; restricted iterations for the growing solver) and
``n_products`` (passes over the ``d x d`` matrix in the solver), with the solver that
``"auto"`` chose.

Prints one row per noise level and solver with the medians over rounds and replications
of ``fit/cov`` and ``total/cov``, the iteration and product counts, the relative
gradient and the overall Gram error against the truth, then an estimate of the authors'
1,300-fit grid (13 sample sizes x 100 replications of HCL) from these per-fit times
(the covariance part scaled linearly in n). Only the ratios mean anything on a shared
machine.

    python -m simulations bench [--runs 5] [--reps 2] [--noise 6 1] [--solvers ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hcl_stats import HCL, Structure
from hcl_stats._estimation.fit import resolve_solver
from hcl_stats._estimation.growing import solve_growing
from hcl_stats._estimation.init import spectral_init
from hcl_stats._estimation.lbfgs import solve_lbfgs
from hcl_stats._estimation.noise import denoised_eigenpairs
from hcl_stats.datasets import make_hierarchical
from hcl_stats.metrics import gram_errors

WIDTHS = (100, 500, 800)
N_SAMPLES = 5000
# the sample sizes of the authors' recovery grid (100 replications each)
GRID_N = (5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000, 16000, 18000, 20000, 25000,
          30000)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _rounds(X, Xc, S, st, solver, runs):
    """Interleaved rounds: ``(cov, fit, total)`` seconds per round, and the last model."""
    times, model = [], None
    for _ in range(runs):
        cov, _ = _timed(lambda: Xc.T @ Xc)
        fit, model = _timed(
            lambda: HCL(st, solver=solver).fit_from_covariance(S, N_SAMPLES, WIDTHS))
        cov2, _ = _timed(lambda: Xc.T @ Xc)
        total, _ = _timed(lambda: HCL(st, solver=solver).fit(X))
        times.append((min(cov, cov2), fit, total))
    return np.array(times), model


def _counts(S, st, solver):
    """``(solver used, passes over S_W)`` of the fit's solver stage on ``S``.

    The growing solver reports its passes (growth steps, the first basis and the float64
    check); L-BFGS makes one per iteration plus the first and the float64 checks.
    """
    K = st.n_components
    noise, S_W, values, vectors = denoised_eigenpairs(S, WIDTHS, st, "isotropic", n_extra=1,
                                                      approximate=True)
    used = resolve_solver(solver, np, S.shape[0], values, K)
    W0 = spectral_init(values[:K], vectors[:, :K], st, WIDTHS)
    if used == "growing":
        info = {}
        solve_growing(S_W, W0, st.mask(WIDTHS), WIDTHS, info=info)
        return used, info["n_products"]
    if used == "lbfgs":
        return used, solve_lbfgs(S_W, W0, st.mask(WIDTHS), WIDTHS)[2] + 2
    return used, np.nan


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds per fit")
    parser.add_argument("--reps", type=int, default=2, help="replications (seeds 500, ...)")
    parser.add_argument("--noise", type=float, nargs="+", default=[6.0, 1.0])
    parser.add_argument("--solvers", nargs="+", default=["auto"],
                        help="HCL solver values (auto, growing, lbfgs, subspace)")
    args = parser.parse_args(argv)
    st = Structure.full(3, rank=3)
    rows = []
    for noise in args.noise:
        for rep in range(args.reps):
            X, truth = make_hierarchical(N_SAMPLES, WIDTHS, st, noise_variance=noise,
                                         random_state=500 + rep, return_truth=True)
            Xs = np.hstack(X)
            Xc = Xs - Xs.mean(axis=0)
            S = Xc.T @ Xc / (N_SAMPLES - 1)
            for solver in args.solvers:
                times, model = _rounds(X, Xc, S, st, solver, args.runs)
                used, n_products = _counts(S, st, solver)
                for cov, fit, total in times:
                    rows.append(dict(
                        noise=noise, solver=solver, used=used, replication=rep, cov_s=cov,
                        fit_over_cov=fit / cov, total_over_cov=total / cov, total_s=total,
                        n_iter=model.n_iter_,
                        n_products=n_products,
                        converged=bool(model.converged_), rel_gradient=model.gradient_norm_,
                        gram_overall=gram_errors(truth.W, model.loadings_, st, WIDTHS)[1]))
    table = pd.DataFrame(rows)
    summary = table.groupby(["noise", "solver", "used"]).agg(
        fit_over_cov=("fit_over_cov", "median"), total_over_cov=("total_over_cov", "median"),
        cov_s=("cov_s", "median"), n_iter=("n_iter", "median"),
        n_products=("n_products", "median"), converged=("converged", "all"),
        rel_gradient=("rel_gradient", "max"), gram_overall=("gram_overall", "mean"))
    print(f"authors' design p = {WIDTHS}, rank 3 x 7 subsets, n = {N_SAMPLES}: medians of "
          f"{args.runs} interleaved rounds x {args.reps} replications")
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    print("\nestimated authors' grid (1,300 HCL fits, noise 6, covariance part linear in n):")
    for solver, part in table[table.noise == args.noise[0]].groupby("solver"):
        cov, total = part.cov_s.median(), part.total_s.median()
        seconds = sum(100 * (total + cov * (n / N_SAMPLES - 1)) for n in GRID_N)
        print(f"  {solver}: {seconds / 60:.1f} min")
    return 0
