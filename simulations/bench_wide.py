"""Benchmark: ``HCL()`` on wide simulated data (``n << p``), against a PCA and ``X.T @ X``.

``python -m simulations bench-wide [--designs n100-p1000-M2 ...] [--repeats 3]
[--covariance-repeats 1] [--timer wall] [--out results/bench_wide.csv]``

Multi-omics shapes: ``n`` samples, ``M`` modalities of ``p`` features each, drawn by
:func:`hcl_stats.datasets.make_hierarchical` (noise variance 1, singular values 20 to 40)
with two globally shared factors, one factor shared by the first two modalities when
``M = 3``, and one specific factor per modality. For each design, ``--repeats``
interleaved rounds of:

* ``HCL().fit(X)`` with its defaults (``structure="auto"``; on these shapes ``path="auto"``
  takes the reduced path, which compresses each modality exactly to the row space of its
  data and never forms the covariance), timed whole and stage by stage (the stages of
  :mod:`simulations.bench_real`; "covariance" is the compression there);
* scikit-learn's ``PCA(K).fit(np.hstack(X))`` at the dimension ``K`` that HCL selected;
* the bare product ``Xc.T @ Xc`` of the centred concatenated data (the covariance's
  flops, without the package);
* in the first ``--covariance-repeats`` rounds (it takes far longer), the same fit on the
  covariance path, ``HCL(path="covariance").fit(X)``, which forms the ``d x d``
  covariance: the time before the compression, in the same run.

Prints per design the selected structure (and whether the covariance path selected the
same), the median times and the ratios of the fit to the PCA and to the bare product and
of the covariance path's fit to the default's, then the median time of each stage of the
default fit. The covariance path costs ``O(n d^2)`` for the covariance alone (``d = M
p``), against the PCA's ``O(n^2 d)``; the compression costs ``O(n^2 d)``. Only ratios
mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import pathlib
import warnings

import numpy as np
import pandas as pd

from hcl_stats import HCL, Structure
from hcl_stats.datasets import make_hierarchical
from simulations import bench_real
from simulations.bench_real import STAGES, TIMERS

__all__ = ["DESIGNS", "bench_design", "main", "make_design"]

#: name: (n samples, p features per modality, M modalities)
DESIGNS = {
    "n100-p1000-M2": (100, 1000, 2),
    "n100-p2500-M2": (100, 2500, 2),
    "n100-p5000-M2": (100, 5000, 2),
    "n100-p1000-M3": (100, 1000, 3),
    "n100-p2500-M3": (100, 2500, 3),
    "n100-p5000-M3": (100, 5000, 3),
    "n300-p2000-M2": (300, 2000, 2),
    "n300-p2000-M3": (300, 2000, 3),
}


def make_design(n, p, M, random_state=0):
    """The blocks and true structure of one design (see the module docstring)."""
    blocks = {tuple(range(M)): 2, **{(m,): 1 for m in range(M)}}
    if M >= 3:
        blocks[(0, 1)] = 1
    truth = Structure(blocks, modalities=M)
    X = make_hierarchical(n, [p] * M, truth, noise_variance=1.0, singular_values=(20, 40),
                          random_state=random_state)
    return X, truth


def _one_round(X, Xcat, clock, covariance):
    """:func:`simulations.bench_real`'s round (fit by stage, PCA), then ``Xc.T @ Xc``,
    and when ``covariance`` the fit on the covariance path (else its time is NaN)."""
    model, fit_s, pca_s, totals = bench_real._one_round(X, Xcat, clock)
    t0 = clock()
    Xc = Xcat - Xcat.mean(axis=0)
    Xc.T @ Xc
    gram_s = clock() - t0
    del Xc
    cov_s, cov_model = float("nan"), None
    if covariance:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = clock()
            cov_model = HCL(path="covariance").fit(X)
            cov_s = clock() - t0
    return model, fit_s, pca_s, gram_s, totals, cov_s, cov_model


def bench_design(name, repeats=3, timer="wall", covariance_repeats=1):
    """Median seconds of the fit, the PCA, ``X.T @ X`` and the covariance path's fit, and
    of each stage, for one design of :data:`DESIGNS`."""
    clock = TIMERS[timer]
    n, p, M = DESIGNS[name]
    X, truth = make_design(n, p, M)
    Xcat = np.hstack(X)
    rounds = [_one_round(X, Xcat, clock, i < covariance_repeats) for i in range(repeats)]
    model = rounds[-1][0]
    cov_model = rounds[0][6]
    fit_s, pca_s, gram_s = (float(np.median([r[i] for r in rounds])) for i in (1, 2, 3))
    timed = [r[5] for r in rounds if r[6] is not None]
    cov_s = float(np.median(timed)) if timed else float("nan")
    row = {"design": name, "structure": str(dict(model.structure_.blocks)),
           "path": model.path_, "exact": model.structure_ == truth,
           "same_as_cov": None if cov_model is None else cov_model.structure_ == model.structure_,
           "K": model.n_components_, "n_iter": model.n_iter_, "fit_s": fit_s,
           "pca_s": pca_s, "gram_s": gram_s, "cov_fit_s": cov_s,
           "fit_over_pca": fit_s / pca_s, "fit_over_gram": fit_s / gram_s,
           "cov_over_pca": cov_s / pca_s, "cov_over_fit": cov_s / fit_s}
    for stage in STAGES:
        row[stage] = float(np.median([r[4][stage] for r in rounds]))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations bench-wide",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", choices=list(DESIGNS), default=list(DESIGNS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-repeats", type=int, default=1,
                        help="rounds that also time the covariance path (0: none)")
    parser.add_argument("--timer", default="wall", choices=list(TIMERS))
    parser.add_argument("--out", default=None, help="CSV of the results")
    args = parser.parse_args(argv)
    rows = []
    for name in args.designs:
        rows.append(bench_design(name, args.repeats, args.timer, args.covariance_repeats))
        print(f"{name}: {rows[-1]['structure']}, fit {rows[-1]['fit_s']:.2f} s", flush=True)
    table = pd.DataFrame(rows).set_index("design")
    print(f"\nmedian of {args.repeats} interleaved rounds; {args.timer} seconds\n")
    print(table[["path", "exact", "same_as_cov", "K", "n_iter", "fit_s", "pca_s", "gram_s",
                 "cov_fit_s", "fit_over_pca", "fit_over_gram", "cov_over_pca",
                 "cov_over_fit"]].to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nwhere the fit's time goes (seconds, medians over rounds):\n")
    print(table[list(STAGES)].to_string(float_format=lambda v: f"{v:.3f}"))
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
