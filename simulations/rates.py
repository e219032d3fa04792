"""Rate study: the slope of log(per-block sin-theta error) against log(n).

``python -m simulations rates [SCENARIO] [--reps N] [--jobs J] [--out DIR]``

Parametric theory says a consistent estimator of a block subspace has error of order
``n^(-1/2)``. In a *detectable* regime (every block well above the noise, so the error is
in its asymptotic range over the whole grid) the slope of ``log(error)`` against ``log(n)``
should then be close to ``-1/2``. The study runs a scenario (default ``rates_moderate``)
through the resumable runner (Wishart path), takes for each replication and ``n`` the mean
of HCL's per-block sin-theta distances, and fits ``log(error) = a + b log(n)`` by least
squares over all replications. The confidence interval of ``b`` comes from the
replication-level residuals (heteroscedasticity-robust, HC3, statsmodels); per-level
slopes are reported too.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["fit_slope", "rate_table", "run_rates", "main"]

#: Interval of slopes compatible with the parametric -1/2 rate.
ACCEPT = (-0.6, -0.4)


def fit_slope(n, error, *, alpha=0.05):
    """Least-squares slope of ``log(error)`` on ``log(n)`` with a robust (HC3) CI.

    Returns ``dict(slope, ci_low, ci_high, intercept, n_obs)``.
    """
    import statsmodels.api as sm

    n = np.asarray(n, dtype=float)
    error = np.asarray(error, dtype=float)
    keep = np.isfinite(error) & (error > 0)
    x = sm.add_constant(np.log(n[keep]))
    res = sm.OLS(np.log(error[keep]), x).fit(cov_type="HC3")
    low, high = res.conf_int(alpha=alpha)[1]
    return dict(slope=float(res.params[1]), ci_low=float(low), ci_high=float(high),
                intercept=float(res.params[0]), n_obs=int(keep.sum()))


def rate_table(results, method="HCL", metric="sin_theta"):
    """Slopes overall and per level from a results table of the runner."""
    import pandas as pd

    rows = results[(results["method"] == method) & (results["metric"] == metric)
                   & results["level"].isin(["global", "partial", "specific"])]
    out = []
    groups = [("all blocks", rows)] + [(lv, part) for lv, part in rows.groupby("level")]
    for label, part in groups:
        per_rep = part.groupby(["n", "replication"])["value"].mean().reset_index()
        fit = fit_slope(per_rep["n"], per_rep["value"])
        out.append(dict(level=label, **fit,
                        within=ACCEPT[0] <= fit["slope"] <= ACCEPT[1]))
    return pd.DataFrame(out)


def run_rates(scenario="rates_moderate", *, out="results", replications=None, jobs=1,
              progress=False):
    """Run (or resume) the scenario with HCL and return ``(slopes table, results path)``."""
    from simulations.runner import read_results, run_scenario

    path = run_scenario(scenario, out=out, replications=replications, methods=["HCL"],
                        jobs=jobs, progress=progress)
    return rate_table(read_results(path)), path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m simulations rates",
                                description="log-log slope of sin-theta error against n")
    p.add_argument("scenario", nargs="?", default="rates_moderate")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    table, path = run_rates(args.scenario, out=args.out, replications=args.reps,
                            jobs=args.jobs, progress=not args.no_progress)
    print(f"results: {path}")
    print(f"slope of log(sin-theta) on log(n); parametric theory: -0.5; accepted "
          f"interval {list(ACCEPT)}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0 if bool(table.loc[0, "within"]) else 1


if __name__ == "__main__":
    sys.exit(main())
