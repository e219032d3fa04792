"""Rank / structure selection rates of the baselines.

``python -m simulations baseline-selection [--reps 20] [--n 5000] [--permutations 100]
[--start 0] [--methods jive-permutation,ajive,jive-bic,slide,slide-orthogonal]``

* JIVE (permutation test) and AJIVE on a global + specific design: joint rank 2,
  individual ranks (2, 3, 2), 100 / 200 / 300 features, noise variance 0.1, block singular
  values 0.5-1.5; a hit is the true joint and individual ranks.
* JIVE with BIC on the same design.
* SLIDE's structure selection on three modalities with rank 2 for each of the 7 subsets
  (20 / 25 / 30 features, n = 400, noise variance 0.05, block singular values 1-1.5); a hit
  is the true structure. ``slide`` uses the package generator (i.i.d. Gaussian scores,
  whose sample correlations are of order ``1 / sqrt(n)``); ``slide-orthogonal`` the same
  loadings and noise with scores whitened in-sample (``Z^T Z = (n - 1) I``), which is
  SLIDE's own model (``U^T U = I``) and how SLIDE's authors simulate their three-view,
  rank-2-per-structure design (``generateModel2`` in their R package centres and
  orthonormalises the scores).

Prints one line per replication and the selection rate of each method.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hcl_stats import Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE
from hcl_stats.datasets import make_hierarchical

JI = Structure.joint_individual(2, [2, 3, 2])
SEVEN = Structure.full(3, rank=2)


def _ji(rep, n, seed):
    return make_hierarchical(n, [100, 200, 300], JI, noise_variance=0.1,
                             random_state=seed + rep)


def seven_subsets_data(rep, seed, *, orthogonal=False):
    """The SLIDE selection design; ``orthogonal=True`` whitens the scores in-sample."""
    X, truth = make_hierarchical(400, [20, 25, 30], SEVEN, noise_variance=0.05,
                                 singular_values=(1.0, 1.5), random_state=seed + 1000 + rep,
                                 return_truth=True)
    if not orthogonal:
        return X
    Z = truth.Z - truth.Z.mean(axis=0)
    Z = np.linalg.qr(Z)[0] * np.sqrt(Z.shape[0] - 1)
    signal = Z @ truth.W.T
    edges = np.concatenate([[0], np.cumsum(truth.n_features)])
    return [signal[:, edges[m]:edges[m + 1]] + e for m, e in enumerate(truth.noise)]


def _ranks(model):
    return int(model.joint_rank_), [int(r) for r in model.individual_ranks_]


def run(methods, reps, n, permutations, seed=0, start=0):
    """Selection hits per method (dict name -> list of bool)."""
    hits = {m: [] for m in methods}
    for rep in range(start, start + reps):
        line = [f"rep {rep:2d}"]
        X = _ji(rep, n, seed) if set(methods) - {"slide", "slide-orthogonal"} else None
        for method in methods:
            t0 = time.perf_counter()
            if method == "jive-permutation":
                found = _ranks(JIVE(rank_selection="permutation", n_permutations=permutations,
                                    random_state=rep).fit(X))
                ok = found == (2, [2, 3, 2])
            elif method == "jive-bic":
                found = _ranks(JIVE(rank_selection="bic").fit(X))
                ok = found == (2, [2, 3, 2])
            elif method == "ajive":
                found = _ranks(AJIVE(random_state=rep).fit(X))
                ok = found == (2, [2, 3, 2])
            elif method in ("slide", "slide-orthogonal"):
                Xs = seven_subsets_data(rep, seed, orthogonal=method == "slide-orthogonal")
                found = SLIDE("auto", random_state=rep).fit(Xs).structure_
                ok = found == SEVEN
                found = dict(zip(found.subsets, found.ranks))
            else:
                raise ValueError(f"unknown method {method!r}")
            hits[method].append(bool(ok))
            line.append(f"{method}: {found} {'ok' if ok else 'WRONG'} "
                        f"({time.perf_counter() - t0:.1f} s)")
        print(" | ".join(line), flush=True)
    return hits


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations baseline-selection",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0,
                        help="first replication (to resume or split a run)")
    parser.add_argument("--methods",
                        default="jive-permutation,ajive,jive-bic,slide,slide-orthogonal")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    hits = run(methods, args.reps, args.n, args.permutations, args.seed, args.start)
    print("\nselection rates")
    for method, h in hits.items():
        print(f"  {method:<17} {sum(h):2d} / {len(h)} = {np.mean(h):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
