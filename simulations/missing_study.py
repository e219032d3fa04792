"""Missing modalities: block recovery, calibration of the scores and fit time.

``python -m simulations missing [--reps 20] [--designs small wide weak] [--out results]
[--timing-reps 3] [--timing-repeats 5] [--quick]``

Designs (three modalities of unequal widths, unequal ranks: a global block of rank 2, the
pair {1, 2} of rank 1, specific blocks of ranks 1, 2 and 3; new loadings for every
replication from :func:`hcl_stats.datasets.make_hierarchical`, block singular values
uniform on ``[1, 2]`` unless said otherwise, noise variance 1):

* ``small``: widths (30, 60, 100), ``n = 1000``;
* ``wide``: widths (50, 150, 400), ``n = 2000`` (``d = 600``: the complete data may take
  the growing-subspace solver, the weighted fit takes L-BFGS);
* ``weak`` (only when asked for, ``--designs weak``): widths (40, 80, 120), ``n = 600``,
  block singular values uniform on ``[0.5, 1.5]`` (the ``make_hierarchical`` default):
  several factors near the detection limit, for the calibration of the intervals there.

Each replication draws complete data, then for each mechanism (``"mcar"``; ``"mar"``:
the chance of missing a modality rises with modality 0's first principal score) and each
fraction (10%, 30%, 50%) removes modalities 1 and 2 from that fraction of the samples,
independently (:func:`hcl_stats.datasets.mask_modalities`; modality 0 is always observed).
Fits, all with the true structure unless said otherwise:

* ``complete``: ``HCL`` on the data before masking (once per replication);
* ``weighted``: ``HCL`` on all samples (pairwise covariance, block weights ``N_ml / n``);
* ``unweighted``: the same pairwise covariance fitted without weights
  (``fit_from_covariance``);
* ``complete_case``: ``HCL`` on the samples that observe every modality;
* ``mean_imputed``: ``HCL`` after replacing each missing value by its feature's mean;
* ``population``: ``HCL`` fitted to the exact covariance ``W W' + Psi``, the reference
  for the calibration of the posterior intervals (its loadings are the truth's);
* ``selected``: ``HCL()`` with its defaults (``structure="auto"``), on the complete data
  and on the incomplete data, scored by whether it finds the true structure exactly.

Measures per fit (tidy rows): mean block sin-theta against the truth
(:func:`hcl_stats.metrics.block_sin_theta`), convergence, whether every sample's scores
and posterior standard deviations are finite (the incomplete samples included), whether
every fitted attribute is finite, and the coverage of the 95% posterior intervals of the
true scores (:func:`hcl_stats.metrics.interval_coverage`: all intervals, those of blocks
the sample observes and those it does not), and the fit time. In the first
``--timing-reps`` replications the complete-data fit and the fit with 30% missing
(MCAR) are timed in turn ``--timing-repeats`` times; the ratio of their medians is
recorded (``time_ratio``).

Results are appended to ``OUT/missing.csv`` one replication at a time; running the same
command again skips the replications already recorded (an interrupted run loses the
replication in flight only).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hcl_stats import HCL, Structure
from hcl_stats._statistics.missing import pairwise_covariance
from hcl_stats.datasets import make_hierarchical, mask_modalities, model_covariance
from hcl_stats.metrics import block_sin_theta, interval_coverage
from simulations.runner import _append, _repair_csv, scenario_seed

__all__ = ["STRUCTURE", "DESIGNS", "COLUMNS", "run_replication", "run_study",
           "summarise", "acceptance", "main"]

STRUCTURE = Structure({(0, 1, 2): 2, (1, 2): 1, (0,): 1, (1,): 2, (2,): 3})
MASKED = (1, 2)  # the modalities that may be missing; modality 0 drives the "mar" rule
MECHANISMS = ("mcar", "mar")
FRACTIONS = (0.1, 0.3, 0.5)
TIMED = ("mcar", 0.3)

#: Columns of the results file, in file order.
COLUMNS = ["design", "replication", "seed", "mechanism", "fraction", "method", "metric",
           "value"]
_KEY = ["design", "replication"]
_DONE = "replication_done"  # metric of the last row of a replication


@dataclass(frozen=True)
class Design:
    widths: tuple
    n: int
    singular_values: tuple = (1.0, 2.0)
    noise_variance: float = 1.0


DESIGNS = {"small": Design((30, 60, 100), 1000), "wide": Design((50, 150, 400), 2000),
           "weak": Design((40, 80, 120), 600, singular_values=(0.5, 1.5))}
# the designs a plain run takes ("weak" on request)
DEFAULT_DESIGNS = ("small", "wide")


# -- the fits -------------------------------------------------------------------------------
def _observed(X):
    """(n, M) boolean: which modalities each sample observes."""
    return np.column_stack([~np.isnan(x).all(axis=1) for x in X])


def _fit_unweighted(X, widths):
    S, means, n, _ = pairwise_covariance(X)
    return HCL(STRUCTURE).fit_from_covariance(S, n, widths, means=means)


def _fit_complete_case(X, widths):
    rows = _observed(X).all(axis=1)
    return HCL(STRUCTURE).fit([x[rows] for x in X])


def _fit_mean_imputed(X, widths):
    return HCL(STRUCTURE).fit([np.where(np.isnan(x), np.nanmean(x, axis=0), x) for x in X])


FITS = {
    "weighted": lambda X, widths: HCL(STRUCTURE).fit(X),
    "unweighted": _fit_unweighted,
    "complete_case": _fit_complete_case,
    "mean_imputed": _fit_mean_imputed,
}


def _population_model(truth, widths):
    """HCL fitted to the exact covariance (zero means): the truth's loadings, for the
    coverage the posterior intervals have when the parameters are known."""
    Sigma = model_covariance(truth.W, truth.noise_variance, widths)
    return HCL(STRUCTURE).fit_from_covariance(Sigma, 10 ** 6, widths)


# -- the measures ---------------------------------------------------------------------------
def _all_finite(model):
    """Every fitted attribute (arrays, numbers, lists of arrays) is finite."""
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        parts = value if isinstance(value, (list, tuple)) else [value]
        for part in parts:
            if isinstance(part, (np.ndarray, float, np.floating)) and \
                    np.asarray(part).dtype.kind == "f" and not np.all(np.isfinite(part)):
                return False
    return True


def _measures(model, data, truth, widths, *, recovery=True):
    """``{metric: value}`` of one fitted model on the samples ``data``."""
    out = {}
    if recovery:
        sin = block_sin_theta(truth.W, model.loadings_, STRUCTURE, widths)
        out["sin_theta"] = float(np.mean(list(sin.values())))
        out["converged"] = float(bool(model.converged_))
        out["finite_attributes"] = float(_all_finite(model))
    Z, Z_std = model.transform(data, return_std=True)
    out["finite_scores"] = float(np.all(np.isfinite(Z)) and np.all(np.isfinite(Z_std)))
    cover = interval_coverage(model, data, truth.W, truth.Z).loc["all"]
    for column in ("coverage", "coverage_observed", "coverage_unobserved"):
        out[column] = float(cover[column])
    return out


def _selection_exact(X):
    """Whether ``HCL()`` (its defaults) selects the true structure, and its time."""
    start = time.perf_counter()
    try:
        found = HCL().fit(X).structure_
    except ValueError:  # nothing detected: not the structure
        return 0.0, time.perf_counter() - start
    return float(found == STRUCTURE), time.perf_counter() - start


def _timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def _time_ratio(X, Xm, repeats):
    """Median time of the fit on ``Xm`` over that on ``X``, the two timed in turn."""
    complete, missing = [], []
    for _ in range(repeats):
        complete.append(_timed(lambda: HCL(STRUCTURE).fit(X))[1])
        missing.append(_timed(lambda: HCL(STRUCTURE).fit(Xm))[1])
    return float(np.median(missing)), float(np.median(complete))


# -- one replication ------------------------------------------------------------------------
def _label(design, n=None):
    """The design's name in the results: with ``-nN`` when ``n`` is not its own."""
    return design if n is None or int(n) == DESIGNS[design].n else f"{design}-n{int(n)}"


def _condition_rows(X, truth, widths, selection):
    """``[(method, {metric: value})]`` of the fits on the incomplete data ``X``."""
    out = []
    for name, fit in FITS.items():
        model, seconds = _timed(lambda: fit(X, widths))
        out.append((name, dict(_measures(model, X, truth, widths), fit_seconds=seconds)))
    if selection:
        exact, seconds = _selection_exact(X)
        out.append(("selected", {"exact_structure": exact, "fit_seconds": seconds}))
    joint = _observed(X)
    out.append(("data", {"observed_1": float(joint[:, 1].mean()),
                         "observed_2": float(joint[:, 2].mean()),
                         "observed_12": float(joint[:, 1:].all(axis=1).mean())}))
    return out


def run_replication(design, replication, *, mechanisms=MECHANISMS, fractions=FRACTIONS,
                    selection=True, timing_repeats=0, n=None):
    """Every fit and measure of one replication of a design (``n`` samples, default the
    design's), as tidy row dicts."""
    spec = DESIGNS[design]
    widths = list(spec.widths)
    n = spec.n if n is None else int(n)
    seed = scenario_seed(f"missing-{design}", n, replication)
    X, truth = make_hierarchical(n, widths, STRUCTURE, noise_variance=spec.noise_variance,
                                 singular_values=spec.singular_values, random_state=seed,
                                 return_truth=True)
    head = dict(design=_label(design, n), replication=int(replication), seed=seed)
    conditions = [("none", 0.0, [])]
    model, seconds = _timed(lambda: HCL(STRUCTURE).fit(X))
    conditions[0][2].append(("complete", dict(_measures(model, X, truth, widths),
                                              fit_seconds=seconds)))
    if selection:
        exact, seconds = _selection_exact(X)
        conditions[0][2].append(("selected", {"exact_structure": exact,
                                              "fit_seconds": seconds}))
    population = _population_model(truth, widths)
    for k, (mechanism, fraction) in enumerate((m, f) for m in mechanisms for f in fractions):
        Xm = mask_modalities(X, fraction, mechanism=mechanism, modalities=MASKED,
                             random_state=seed + 1 + k)
        results = _condition_rows(Xm, truth, widths, selection)
        results.append(("population", _measures(population, Xm, truth, widths,
                                                recovery=False)))
        if timing_repeats and (mechanism, fraction) == TIMED:
            missing, complete = _time_ratio(X, Xm, timing_repeats)
            results.append(("weighted", {"time_ratio": missing / complete,
                                         "time_complete": complete, "time_missing": missing}))
        conditions.append((mechanism, float(fraction), results))
    rows = [dict(head, mechanism=mechanism, fraction=fraction, method=method, metric=metric,
                 value=value)
            for mechanism, fraction, results in conditions
            for method, values in results for metric, value in values.items()]
    # the last row of a replication marks it as recorded (see simulations.runner)
    rows.append(dict(head, mechanism="all", fraction=np.nan, method="all", metric=_DONE,
                     value=1.0))
    return rows


# -- the study ------------------------------------------------------------------------------
def results_file(out):
    return Path(out) / "missing.csv"


def run_study(*, designs=DEFAULT_DESIGNS, reps=20, out="results", mechanisms=MECHANISMS,
              fractions=FRACTIONS, selection=True, timing_reps=3, timing_repeats=5, n=None,
              progress=False):
    """Run (or resume) the study; returns the path of its results file.

    Replications already in the file are skipped, so that an interrupted run resumes
    where it stopped; the file must come from the same options. ``n``: the sample size
    of every design (default: each design's own).
    """
    Path(out).mkdir(parents=True, exist_ok=True)
    path = results_file(out)
    done = _repair_csv(path, columns=COLUMNS, key=_KEY, key_types=(str, int),
                       done_metric=_DONE)
    with warnings.catch_warnings():
        # mean imputation shrinks the variances and the noise rule warns about it; the
        # convergence of every fit is recorded in the rows
        warnings.simplefilter("ignore", UserWarning)
        for design in designs:
            for rep in range(reps):
                if (_label(design, n), rep) in done:
                    continue
                start = time.perf_counter()
                rows = run_replication(design, rep, mechanisms=mechanisms, n=n,
                                       fractions=fractions, selection=selection,
                                       timing_repeats=timing_repeats if rep < timing_reps
                                       else 0)
                _append(path, rows, columns=COLUMNS, key=_KEY)
                if progress:
                    print(f"  {design} replication {rep}: {time.perf_counter() - start:.1f} s",
                          file=sys.stderr, flush=True)
    return path


def read_results(path):
    return pd.read_csv(path)


def _ratios(table):
    """Per (design, replication, mechanism, fraction, method): the sin-theta over that of
    the complete-data fit of the same replication."""
    sin = table[table["metric"] == "sin_theta"]
    complete = sin[sin["method"] == "complete"].set_index(_KEY)["value"]
    other = sin[sin["method"] != "complete"].copy()
    other["value"] = other["value"].to_numpy() / complete.loc[
        list(zip(other["design"], other["replication"]))].to_numpy()
    other["metric"] = "sin_ratio"
    return other


def summarise(table):
    """Means per (design, mechanism, fraction, method) of every metric, with the
    sin-theta ratio to the complete-data fit and the share of replications in which the
    fit on all samples beats complete-case analysis."""
    table = table[table["method"] != "all"]
    table = pd.concat([table, _ratios(table), _beats_complete_case(table)],
                      ignore_index=True)
    keys = ["design", "mechanism", "fraction", "method"]
    wide = table.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean")
    wide["replications"] = table.groupby(keys)["replication"].nunique()
    return wide


def _beats_complete_case(table):
    sin = table[table["metric"] == "sin_theta"]
    keys = ["design", "replication", "mechanism", "fraction"]
    pivot = sin.pivot_table(index=keys, columns="method", values="value")
    if "weighted" not in pivot or "complete_case" not in pivot:
        return pd.DataFrame(columns=table.columns)
    pivot = pivot.dropna(subset=["weighted", "complete_case"])
    beats = (pivot["weighted"] < pivot["complete_case"]).astype(float).rename("value")
    return beats.reset_index().assign(method="weighted", metric="beats_complete_case")


def acceptance(table, fraction=0.3):
    """The issue's criteria at ``fraction`` missing, per design and mechanism.

    Returns a DataFrame with columns ``design, mechanism, criterion, value, bound,
    passed``: the mean block sin-theta of the fit on all samples below complete-case
    analysis's and at most 1.3 times the complete-data fit's (means over the
    replications), every sample's scores and every fitted attribute finite, coverage of
    the 95% intervals in [0.93, 0.97] (all, observed, unobserved; and, for reference, those
    of the complete-data fit on the complete data and of the population fit on the
    incomplete data) and the median time ratio at most 1.5.
    """
    summary = summarise(table)
    rows = []
    for (design, mechanism, frac, method), values in summary.iterrows():
        if method != "weighted" or not np.isclose(frac, fraction):
            continue
        base = summary.loc[(design, "none", 0.0, "complete"), "sin_theta"]
        cases = summary.loc[(design, mechanism, frac, "complete_case"), "sin_theta"]
        checks = [("sin_theta below complete_case", values["sin_theta"], cases,
                   values["sin_theta"] < cases),
                  ("sin_theta over complete", values["sin_theta"] / base, 1.3,
                   values["sin_theta"] <= 1.3 * base)]
        for name in ("finite_scores", "finite_attributes", "converged"):
            checks.append((name, values[name], 1.0, values[name] == 1.0))
        for name in ("coverage", "coverage_observed", "coverage_unobserved"):
            checks.append((name, values[name], "[0.93, 0.97]", 0.93 <= values[name] <= 0.97))
        # for reference: the same intervals from the complete-data fit and from the
        # true parameters (the population fit) on the incomplete samples
        reference = summary.loc[(design, "none", 0.0, "complete"), "coverage"]
        population = summary.loc[(design, mechanism, frac, "population"), "coverage"]
        for name, value in (("coverage of the complete-data fit", reference),
                            ("coverage of the population fit", population)):
            checks.append((name, value, "[0.93, 0.97]", 0.93 <= value <= 0.97))
        timing = table[(table["design"] == design) & (table["metric"] == "time_ratio") &
                       (table["mechanism"] == mechanism)]
        if len(timing):
            ratio = float(timing["value"].median())
            checks.append(("time ratio (median)", ratio, 1.5, ratio <= 1.5))
        rows.extend(dict(design=design, mechanism=mechanism, criterion=c, value=v, bound=b,
                         passed=bool(ok)) for c, v, b, ok in checks)
    return pd.DataFrame(rows)


def report(table):
    """The printed tables: recovery and calibration per condition, selection, criteria."""
    summary = summarise(table)
    cols = [c for c in ("sin_theta", "sin_ratio", "beats_complete_case", "coverage_observed",
                        "coverage_unobserved", "converged", "finite_scores",
                        "finite_attributes", "fit_seconds", "replications") if c in summary]
    fits = summary[summary.index.get_level_values("method").isin(
        ["complete", "weighted", "unweighted", "complete_case", "mean_imputed",
         "population"])]
    parts = ["block recovery and 95% interval coverage (means over replications):",
             fits[cols].to_string(float_format=lambda v: f"{v:.3f}")]
    if "exact_structure" in summary:
        selected = summary.xs("selected", level="method")[["exact_structure", "fit_seconds",
                                                           "replications"]]
        parts += ["\nHCL() with its defaults: share of exact structures",
                  selected.to_string(float_format=lambda v: f"{v:.3f}")]
    if "time_ratio" in summary:
        timing = table[table["metric"].isin(["time_ratio", "time_complete", "time_missing"])]
        parts += ["\nfit time with 30% missing (MCAR) over the complete-data fit "
                  "(medians of interleaved repeats):",
                  timing.pivot_table(index=["design", "replication"], columns="metric",
                                     values="value").to_string(
                      float_format=lambda v: f"{v:.3f}")]
    parts += ["\nacceptance at 30% missing:",
              acceptance(table).to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    return "\n".join(parts)


QUICK = dict(designs=("small",), reps=1, fractions=(0.3,), timing_reps=1, timing_repeats=1)


def _parser():
    p = argparse.ArgumentParser(prog="python -m simulations missing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20, help="replications per design")
    p.add_argument("--designs", nargs="+", choices=list(DESIGNS), default=list(DEFAULT_DESIGNS))
    p.add_argument("--out", default="results", help="folder of missing.csv")
    p.add_argument("--timing-reps", type=int, default=3,
                   help="replications in which the fit time is measured")
    p.add_argument("--timing-repeats", type=int, default=5,
                   help="interleaved repeats of each timed fit")
    p.add_argument("--mechanisms", nargs="+", choices=list(MECHANISMS),
                   default=list(MECHANISMS))
    p.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS),
                   help="fractions of the samples missing each of modalities 1 and 2")
    p.add_argument("--n", type=int, default=None,
                   help="sample size of every design (default: the design's)")
    p.add_argument("--no-selection", action="store_true", help="skip the HCL() fits")
    p.add_argument("--quick", action="store_true",
                   help="one replication of the small design at 30%% missing")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    options = dict(designs=tuple(args.designs), reps=args.reps, timing_reps=args.timing_reps,
                   timing_repeats=args.timing_repeats, mechanisms=tuple(args.mechanisms),
                   fractions=tuple(args.fractions), n=args.n)
    if args.quick:
        options.update(QUICK)
    start = time.perf_counter()
    path = run_study(out=args.out, selection=not args.no_selection, progress=True,
                     **options)
    print(f"results: {path}  ({time.perf_counter() - start:.1f} s)")
    print(report(read_results(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
