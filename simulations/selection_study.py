"""Selection accuracy study: does ``select_structure`` recover the subsets and their ranks?

``python -m simulations selection [--M 3 4 5 6] [--snr 0.5 2 4] [--reps 20] [--n 2000]
[--p 200 | --widths 20 60 200] [--strength S] [--fit] [--check-threads]
[--out results/selection.csv] [--seed 0]``

For each number of modalities ``M`` and signal-to-noise multiplier ``kappa`` a random
structure with unequal ranks is drawn per replication (random subsets of all sizes, ranks
1 to 3, every modality covered), and data are simulated with
:func:`hcl_stats.datasets.make_hierarchical` with squared block singular values in
``[kappa, 2 kappa] * sigma^2 sqrt(p / n)`` (``kappa = 1`` is the detection threshold of a
spike in one modality). :func:`~hcl_stats.datasets.make_loadings` draws each block as
``Q1 diag(a) Q2`` with orthonormal ``Q1`` and orthogonal ``Q2``, so the block singular values
are exactly the drawn ``a`` and ``kappa >= 2`` means "every squared block singular
value at least twice the detection threshold". Blocks of different subsets are drawn
independently, so they are *not* orthogonal within a modality: a modality carrying ``k``
factors has modality-level spikes (eigenvalues of ``B_m^T B_m``) spread by about
``(1 +- sqrt(k / p))^2`` around the block values, and its smallest one can fall below the
detection threshold although every block is above it (column
``min_modality_spike_ratio``: the smallest eigenvalue of any ``B_m^T B_m`` over
``sigma^2 sqrt(p / n)``; ``min_block_ratio``: the same for the squared block singular
values). ``--widths`` gives the modalities unequal widths (cycled over the ``M``
modalities); ``p`` in the threshold is then the widest, so the narrower modalities'
blocks are further above their own thresholds but can fall below the strength floor
(many factors in few features). Reported per (M, kappa): exact-structure recovery rate (every
subset and rank), per-subset false positive rate (absent subsets selected, over all
``2^M - 1`` candidates) and false negative rate (true subsets missed), the rate of exact
ranks among the true subsets found, selection time, the share of draws with a factor below
the strength floor of :func:`select_structure` in the population (``below_kaiser``, from
column ``min_kaiser_ratio``: the weakest factor's eigenvalue over its modality's mean
eigenvalue), the number of modalities given as many factors as features
(``full_rank_modalities``), with ``--check-threads`` the share of draws selected identically
under 1 and 2 BLAS threads, with ``--fit`` the share of ``HCL()`` fits (every default)
that converged and recovered the structure, and two comparisons: the total number
of factors ``K`` from the eigenvalues of the stacked covariance above the Marchenko-Pastur
edge ("ConcatSVD rank"), and AJIVE's joint rank where ``hcl_stats.baselines.AJIVE`` exists
and the truth is global + specific only.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from hcl_stats import Structure
from hcl_stats._structure import row_slices
from hcl_stats._estimation.selection import _modality_rank
from hcl_stats._statistics.covariance import sample_covariance
from hcl_stats.datasets import make_hierarchical
from hcl_stats.selection import select_structure

__all__ = ["random_structure", "singular_value_range", "run_replication", "run_study", "main"]


def random_structure(n_modalities, rng, *, max_rank=3, p_shared=None, n_shared=4.0):
    """A random structure with unequal ranks.

    Each subset of size >= 2 is present with probability ``p_shared`` (default
    ``min(0.5, n_shared / (2^M - M - 1))``, about ``n_shared`` shared blocks); each modality
    has a specific block with probability 0.7 (always when it would otherwise carry
    nothing); ranks are uniform on ``1..max_rank``.
    """
    M = n_modalities
    subsets = [c for size in range(2, M + 1) for c in itertools.combinations(range(M), size)]
    if p_shared is None:
        p_shared = min(0.5, n_shared / max(len(subsets), 1))
    blocks = {s: int(rng.integers(1, max_rank + 1)) for s in subsets if rng.random() < p_shared}
    for m in range(M):
        covered = any(m in s for s in blocks)
        if not covered or rng.random() < 0.7:
            blocks[(m,)] = int(rng.integers(1, max_rank + 1))
    return Structure(blocks, modalities=M)


def singular_value_range(kappa, p, n, noise_variance=1.0, spread=2.0):
    """Block singular values whose squares lie in ``[kappa, spread * kappa]`` times the
    detection threshold ``sigma^2 sqrt(p / n)`` (``p``: the widest modality)."""
    thr = noise_variance * np.sqrt(max(np.atleast_1d(p)) / n)
    return float(np.sqrt(kappa * thr)), float(np.sqrt(spread * kappa * thr))


def _concat_rank(S, n, alpha=0.01):
    """Eigenvalues of the stacked covariance above the white-noise edge (ConcatSVD rank)."""
    evals = np.linalg.eigvalsh(S)[::-1]
    d = S.shape[0]
    return _modality_rank(evals, d, n - 1, alpha, max(min(d, n - 1) // 2, 1))[1]


def _ajive_rank(X, truth):
    """AJIVE's joint rank, or None when AJIVE is missing or does not apply."""
    M = truth.n_modalities
    if any(1 < len(s) < M for s in truth.subsets):
        return None
    try:
        from hcl_stats.baselines import AJIVE  # written by another engineer; optional
    except ImportError:
        return None
    try:
        model = AJIVE().fit(X)
    except Exception:  # noqa: BLE001 - a baseline failure is reported, not fatal
        return None
    for attr in ("joint_rank_", "joint_rank"):
        if hasattr(model, attr) and isinstance(getattr(model, attr), (int, np.integer)):
            return int(getattr(model, attr))
    st = getattr(model, "structure_", None)
    if st is not None:
        full = tuple(range(M))
        return st.rank(full) if full in st else 0
    return None


def _strengths(tr, truth, widths, noise_variance, thr):
    """Per draw: the smallest modality-level spike and squared block singular value over
    the detection threshold ``thr``, and the smallest Kaiser ratio: over modalities, the
    weakest factor's population eigenvalue ``sigma^2 + lambda_min(B_m^T B_m)`` over the
    modality's mean population eigenvalue ``sigma^2 + trace(B_m^T B_m) / p_m`` (below 1,
    the strength floor of :func:`select_structure` lies above that factor), and the largest
    share ``K_m / p_m`` of a modality's features taken by its factors."""
    spikes, blocks, kaiser, share = [], [], [], []
    for m, rows in enumerate(row_slices(widths)):
        Bm = tr.W[rows]
        cols = np.concatenate([np.arange(truth.columns(s).start, truth.columns(s).stop)
                               for s in truth.subsets_of(m)] or [np.zeros(0, int)])
        if len(cols) == 0:
            continue
        G = Bm[:, cols].T @ Bm[:, cols]
        share.append(len(cols) / widths[m])
        lam = np.linalg.eigvalsh(G)
        spikes.append(lam[0])
        kaiser.append((noise_variance + lam[0]) / (noise_variance + np.trace(G) / widths[m]))
        blocks.extend(np.linalg.svd(Bm[:, truth.columns(s)], compute_uv=False).min() ** 2
                      for s in truth.subsets_of(m))
    return {"min_modality_spike_ratio": float(min(spikes)) / thr,
            "min_block_ratio": float(min(blocks)) / thr,
            "min_kaiser_ratio": float(min(kaiser)), "max_factor_share": float(max(share))}


def _selected(S, widths, n_s, alpha, select_kw, check_threads):
    """The selected blocks, the modalities without factor, and whether the selection
    (structure and evidence table) is the same under 1 and 2 BLAS threads."""
    import warnings

    from threadpoolctl import threadpool_limits

    runs = []
    for threads in ((1, 2) if check_threads else (None,)):
        with warnings.catch_warnings(), threadpool_limits(threads):
            warnings.simplefilter("ignore", UserWarning)
            try:
                runs.append(select_structure(S, widths, n_samples=n_s, alpha=alpha,
                                             **(select_kw or {})))
            except ValueError as exc:  # nothing detected at all: the empty structure
                if "no factor detected in any modality" not in str(exc):
                    raise
                runs.append(None)
    one = runs[0]
    same = all((r is None and one is None) or (
        r is not None and one is not None and r.structure == one.structure
        and r.evidence.equals(one.evidence)) for r in runs)
    if one is None:
        return {}, list(range(len(widths))), same
    return dict(one.structure.blocks), list(one.no_factor), same


def _fit_default(X, truth):
    """``HCL()`` with every default: converged, iterations, and its structure exact."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from hcl_stats import HCL

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        try:
            model = HCL().fit(X)
        except ValueError as exc:  # nothing detected at all: nothing to fit
            if "no factor detected in any modality" not in str(exc):
                raise
            return {"fit_converged": np.nan, "fit_n_iter": 0, "fit_exact": False,
                    "time_fit_s": time.perf_counter() - t0}
    ok = bool(model.converged_) and bool(np.all(np.isfinite(model.loadings_)))
    return {"fit_converged": float(ok), "fit_n_iter": int(model.n_iter_),
            "fit_exact": dict(model.structure_.blocks) == dict(truth.blocks),
            "time_fit_s": time.perf_counter() - t0}


def run_replication(M, kappa, *, n=2000, p=200, noise_variance=1.0, seed=0, max_rank=3,
                    compare=True, alpha=0.01, n_shared=4.0, select_kw=None, fit=False,
                    check_threads=False):
    """One draw: returns a dict of outcomes (structure found, timings, comparisons).

    ``p``: one width for every modality, or a sequence of ``M`` widths (the detection
    threshold is then that of the widest). ``fit``: also fit ``HCL()`` with its defaults
    (columns ``fit_*``); ``check_threads``: select under 1 and under 2 BLAS threads
    (column ``same_threads``)."""
    rng = np.random.default_rng(seed)
    widths = [int(p)] * M if np.ndim(p) == 0 else [int(w) for w in p]
    truth = random_structure(M, rng, max_rank=max_rank, n_shared=n_shared)
    low, high = singular_value_range(kappa, widths, n, noise_variance)
    X, tr = make_hierarchical(n, widths, truth, noise_variance=noise_variance,
                              singular_values=(low, high),
                              random_state=int(rng.integers(2**31 - 1)), return_truth=True)
    t0 = time.perf_counter()
    S, _, n_s = sample_covariance(X)
    t_cov = time.perf_counter() - t0
    t0 = time.perf_counter()
    found_blocks, no_factor, same = _selected(S, widths, n_s, alpha, select_kw, check_threads)
    t_sel = (time.perf_counter() - t0) / (2 if check_threads else 1)
    true_blocks = dict(truth.blocks)
    candidates = [c for size in range(1, M + 1) for c in itertools.combinations(range(M), size)]
    per_modality = [sum(r for s, r in found_blocks.items() if m in s) for m in range(M)]
    out = {
        "M": M, "kappa": kappa, "n": n, "p": p if np.ndim(p) == 0 else "/".join(map(str, p)),
        "seed": seed, "truth": repr(truth),
        "found": repr(Structure(found_blocks, modalities=M)) if found_blocks else "none",
        "exact": found_blocks == true_blocks,
        "n_true": len(true_blocks),
        "n_absent": len(candidates) - len(true_blocks),
        "false_pos": sum(1 for s in found_blocks if s not in true_blocks),
        "false_neg": sum(1 for s in true_blocks if s not in found_blocks),
        "rank_exact_found": sum(1 for s in true_blocks if found_blocks.get(s) == true_blocks[s]),
        "no_factor": len(no_factor),
        "n_absent_shared": sum(1 for c in candidates if len(c) > 1 and c not in true_blocks),
        "false_pos_shared": sum(1 for s in found_blocks if len(s) > 1 and s not in true_blocks),
        "full_rank_modalities": sum(k >= w for k, w in zip(per_modality, widths)),
        "time_cov_s": t_cov, "time_select_s": t_sel,
        "K_true": truth.n_components, "K_found": sum(found_blocks.values()),
        **_strengths(tr, truth, widths, noise_variance, noise_variance * np.sqrt(
            max(widths) / n)),
    }
    if check_threads:
        out["same_threads"] = same
    if fit:
        out.update(_fit_default(X, truth))
    if compare:
        out["K_concat"] = _concat_rank(S, n_s)
        aj = _ajive_rank(X, truth)
        out["ajive_joint"] = aj
        full = tuple(range(M))
        out["joint_true"] = true_blocks.get(full, 0)
    return out


def run_study(Ms=(3, 4, 5, 6), kappas=(0.5, 2.0, 4.0), reps=20, n=2000, p=200, seed=0,
              compare=True, progress=False, alpha=0.01, max_rank=3, n_shared=4.0,
              select_kw=None, fit=False, check_threads=False):
    """All replications as a tidy DataFrame, one row per draw (``p``, ``fit`` and
    ``check_threads`` as in :func:`run_replication`; ``p`` a callable of ``M`` gives the
    widths per ``M``)."""
    import pandas as pd

    rows = []
    for M in Ms:
        for kappa in kappas:
            for r in range(reps):
                s = int(seed) * 1_000_003 + 10_007 * M + 101 * r + int(round(1000 * kappa))
                rows.append(run_replication(M, kappa, n=n, p=p(M) if callable(p) else p,
                                            seed=s, compare=compare, alpha=alpha,
                                            max_rank=max_rank, n_shared=n_shared,
                                            select_kw=select_kw, fit=fit,
                                            check_threads=check_threads))
            if progress:
                print(f"  M={M} kappa={kappa}: done", flush=True)
    return pd.DataFrame(rows)


def summarise(df):
    """Per (M, kappa): recovery, FP/FN rates, time and the comparisons."""
    g = df.groupby(["M", "kappa"])
    out = g.apply(lambda t: _summary_row(t), include_groups=False)
    return out.reset_index()


def _summary_row(t):
    import pandas as pd

    row = {
        "reps": len(t),
        "exact_structure": t["exact"].mean(),
        "fp_rate_per_absent_subset": t["false_pos"].sum() / max(t["n_absent"].sum(), 1),
        "fp_rate_shared": t["false_pos_shared"].sum() / max(t["n_absent_shared"].sum(), 1),
        "fn_rate_per_true_subset": t["false_neg"].sum() / max(t["n_true"].sum(), 1),
        "fdp": t["false_pos"].sum() / max((t["false_pos"] + t["n_true"] - t["false_neg"]).sum(), 1),
        "rank_exact_true": t["rank_exact_found"].sum() / max(t["n_true"].sum(), 1),
        "K_exact_select": (t["K_found"] == t["K_true"]).mean(),
        "median_time_select_s": t["time_select_s"].median(),
        "median_time_cov_s": t["time_cov_s"].median(),
        "modalities_without_factor": t["no_factor"].sum(),
        "min_block_ratio": t["min_block_ratio"].min(),
        "median_min_modality_spike_ratio": t["min_modality_spike_ratio"].median(),
        "below_kaiser": (t["min_kaiser_ratio"] < 1).mean(),
        "full_rank_modalities": t["full_rank_modalities"].sum(),
    }
    if "same_threads" in t:
        row["same_threads"] = t["same_threads"].mean()
    if "fit_converged" in t:
        row["fit_converged"] = t["fit_converged"].mean()
        row["fit_exact"] = t["fit_exact"].mean()
        row["median_time_fit_s"] = t["time_fit_s"].median()
    if "K_concat" in t:
        row["K_exact_concatsvd"] = (t["K_concat"] == t["K_true"]).mean()
        aj = t.dropna(subset=["ajive_joint"]) if "ajive_joint" in t else t.iloc[:0]
        row["ajive_joint_exact"] = ((aj["ajive_joint"] == aj["joint_true"]).mean()
                                    if len(aj) else np.nan)
    return pd.Series(row)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations selection",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--M", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--snr", type=float, nargs="+", default=[0.5, 2.0, 4.0],
                        help="kappa: squared block singular values in [kappa, 2 kappa] times "
                             "sigma^2 sqrt(p/n)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--p", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="modality widths instead of --p (modality m gets the "
                             "(m mod len)-th)")
    parser.add_argument("--strength", type=float, default=None,
                        help="strength floor of select_structure (default: its default)")
    parser.add_argument("--fit", action="store_true",
                        help="also fit HCL() with its defaults (convergence, structure)")
    parser.add_argument("--check-threads", action="store_true",
                        help="select under 1 and 2 BLAS threads and compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rank", type=int, default=3, help="largest true block rank")
    parser.add_argument("--n-shared", type=float, default=4.0,
                        help="expected number of shared blocks per random structure")
    parser.add_argument("--alpha", type=float, default=0.01, help="level of each test")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--out", default=None, help="CSV of all replications")
    args = parser.parse_args(argv)
    import pandas as pd

    t0 = time.perf_counter()
    p = args.p if args.widths is None else (
        lambda M: [args.widths[m % len(args.widths)] for m in range(M)])
    select_kw = None if args.strength is None else {"strength": args.strength}
    df = run_study(args.M, args.snr, args.reps, args.n, p, args.seed,
                   compare=not args.no_compare, progress=True, alpha=args.alpha,
                   max_rank=args.max_rank, n_shared=args.n_shared, select_kw=select_kw,
                   fit=args.fit, check_threads=args.check_threads)
    summary = summarise(df)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.out:
        import os

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        df.to_csv(args.out, index=False)
        summary.to_csv(args.out.replace(".csv", "_summary.csv"), index=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
