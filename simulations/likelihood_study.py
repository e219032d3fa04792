"""Least squares against likelihood, isotropic against diagonal noise.

``python -m simulations likelihood [--reps 2] [--n 2000] [--authors-reps 1] [--seed 0]``

Designs (``M = 3, 4, 5``), each homoscedastic (noise variance 1 for every feature) and
heteroscedastic (per-feature noise variances uniform on ``[0.1, 2]``), loadings from
:func:`hcl_stats.datasets.make_loadings` with block singular values in ``[1, 3]``:

* ``M = 3``: widths (30, 40, 50), all 7 subsets at rank 2;
* ``M = 4``: widths (30, 40, 50, 60), global rank 2, pairs {0,1} and {2,3}, one specific
  factor per modality;
* ``M = 5``: widths (30, 35, 40, 45, 50), global rank 2, {0,1,2} and {3,4}, one specific
  factor per modality.

Fits: ``HCL(objective=o, denoise=r)`` for ``o`` in {least_squares, likelihood} and ``r`` in
{isotropic, diagonal}, from the covariance. Reported per design and fit: mean block sin-theta
distance, overall Gram error ``||W W^T - W^ W^^T||_F``, median relative error of the
per-feature noise variances, held-out average log-likelihood (a test set of the same size),
and the fit time over the bare covariance ``Xc^T Xc`` of the same data (best of 3).

A second table times the authors' design (``p = (100, 500, 800)``, rank 3 for all 7 subsets,
noise 6, ``n = 5000``): the least-squares fit and the likelihood fit (isotropic and diagonal
noise; it includes the least-squares fit it starts from, with the per-modality noise for
``"diagonal"``: the ``least_squares, modality`` row), each against the bare covariance,
timed in turn in the same run (``n_iter``: solver iterations, least squares included).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from hcl_stats import HCL, Structure
from hcl_stats.datasets import make_hierarchical, make_loadings
from hcl_stats.metrics import block_sin_theta, gram_errors

FITS = [("least_squares", "isotropic"), ("least_squares", "diagonal"),
        ("likelihood", "isotropic"), ("likelihood", "diagonal")]


def designs():
    """``{M: (widths, structure)}`` of the study."""
    return {
        3: ((30, 40, 50), Structure.full(3, rank=2)),
        4: ((30, 40, 50, 60), Structure({(0, 1, 2, 3): 2, (0, 1): 1, (2, 3): 1, (0,): 1,
                                         (1,): 1, (2,): 1, (3,): 1})),
        5: ((30, 35, 40, 45, 50), Structure({(0, 1, 2, 3, 4): 2, (0, 1, 2): 1, (3, 4): 1,
                                             (0,): 1, (1,): 1, (2,): 1, (3,): 1, (4,): 1})),
    }


def simulate(n, widths, structure, noise, rng):
    """Train and test data (``n`` samples each), true loadings and noise variances."""
    W = make_loadings(widths, structure, singular_values=(1.0, 3.0),
                      random_state=int(rng.integers(2 ** 31)))
    d = W.shape[0]
    psi = np.ones(d) if noise == "homoscedastic" else rng.uniform(0.1, 2.0, size=d)
    edges = np.concatenate([[0], np.cumsum(widths)])

    def draw():
        X = rng.standard_normal((n, W.shape[1])) @ W.T
        X += rng.standard_normal(X.shape) * np.sqrt(psi)
        return [X[:, edges[m]:edges[m + 1]] for m in range(len(widths))]

    return draw(), draw(), W, psi


def _best_of(fn, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _covariance(X):
    Xs = np.hstack(X)
    n = Xs.shape[0]
    Xc = Xs - Xs.mean(axis=0)
    cov_time, C = _best_of(lambda: Xc.T @ Xc, 3)
    return cov_time, C / (n - 1), Xs.mean(axis=0), n


def _one_design(M, widths, structure, noise, rep, n, rng):
    train, test, W, psi = simulate(n, widths, structure, noise, rng)
    cov_time, S, mean, n = _covariance(train)
    rows = []
    for objective, rule in FITS:
        def fit():
            model = HCL(structure, objective=objective, denoise=rule)
            return model.fit_from_covariance(S, n, widths, means=mean)

        fit_time, model = _best_of(fit, 3)
        sin = block_sin_theta(W, model.loadings_, structure, widths)
        rows.append(dict(
            M=M, noise=noise, replication=rep, objective=objective, denoise=rule,
            sin_theta=float(np.mean(list(sin.values()))),
            gram_error=gram_errors(W, model.loadings_, structure, widths)[1],
            noise_error=float(np.median(np.abs(model.feature_noise_variance() - psi) / psi)),
            heldout_loglik=model.score(test), fit_over_cov=fit_time / cov_time,
            converged=bool(model.converged_)))
    return rows


def authors_timing(reps, seed, rounds=3):
    """Least-squares and likelihood fit times against the bare covariance, same run.

    The three fits are timed in turn, ``rounds`` times, and each keeps its best time, so
    that a change of the machine's load during the run affects all of them alike.
    """
    st = Structure.full(3, rank=3)
    widths = (100, 500, 800)
    fits = [("least_squares", "isotropic"), ("least_squares", "modality"),
            ("likelihood", "isotropic"), ("likelihood", "diagonal")]
    rows = []
    for rep in range(reps):
        X = make_hierarchical(5000, widths, st, noise_variance=6.0, random_state=seed + rep)
        cov_time, S, mean, n = _covariance(X)
        times = dict.fromkeys(fits, np.inf)
        iters = {}
        for _ in range(rounds):
            for objective, rule in fits:
                model = HCL(st, objective=objective, denoise=rule)
                t, model = _best_of(
                    lambda: model.fit_from_covariance(S, n, widths, means=mean), 1)
                times[(objective, rule)] = min(times[(objective, rule)], t)
                iters[(objective, rule)] = model.n_iter_
        ls = times[fits[0]]
        for (objective, rule), t in times.items():
            rows.append(dict(replication=rep, objective=objective, denoise=rule,
                             seconds=t, over_cov=t / cov_time, over_least_squares=t / ls,
                             n_iter=iters[(objective, rule)]))
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations likelihood",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--authors-reps", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="CSV of the per-fit rows")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvergenceWarning)
        for M, (widths, structure) in designs().items():
            for noise in ("homoscedastic", "heteroscedastic"):
                for rep in range(args.reps):
                    rows.extend(_one_design(M, widths, structure, noise, rep, args.n, rng))
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    cols = ["sin_theta", "gram_error", "noise_error", "heldout_loglik", "fit_over_cov"]
    summary = table.groupby(["M", "noise", "objective", "denoise"], sort=False)[cols].mean()
    print(summary.round(3).to_string())
    print(f"\nconverged: {int(table.converged.sum())} of {len(table)} fits")
    if args.authors_reps > 0:
        print("\nauthors' design (p = (100, 500, 800), rank 3 x 7, noise 6, n = 5000):")
        timing = authors_timing(args.authors_reps, 500)
        print(timing.groupby(["objective", "denoise"], sort=False)[
            ["seconds", "over_cov", "over_least_squares", "n_iter"]].mean().round(3)
            .to_string())
    return 0
