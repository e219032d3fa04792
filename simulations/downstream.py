"""Downstream study: which structures predict y, against labelled size m and unlabelled size n.

``python -m simulations downstream [--reps R] [--quick] [--out DIR]``

Design (the paper's downstream design, with a group-sparse coefficient vector):

- M = 3 modalities, widths ``--widths`` (default 30 40 50), every one of the 7 structures with
  rank ``--rank`` (default 2, K = 14), block singular values U(0.5, 1.5), isotropic noise
  ``--noise`` (default 0.1, the paper's downstream design).
- Outcome ``y = z^T beta + N(0, --y-noise)``, with ``beta`` non-zero only on the global block
  {0,1,2}, the partial block {0,1} and the specific block {2} (entries U(0.5, 1) with random
  signs, ``||beta|| = 1``); the other four structures are truly null.
- Per replication: the factor model is fitted on n unlabelled samples; the group lasso on the
  scores of m fresh labelled samples; excess risk on 2000 test samples. Replication r uses
  the same design (loadings and beta) in every cell of the grids, so cells are paired.
- Grids (the paper's two downstream grids): m in ``--m-grid`` at n = ``--n-fixed``, and n in
  ``--n-grid`` at m = ``--m-fixed``.

Metrics per method (HCL, ConcatSVD at the same K, baselines of ``hcl_stats.baselines`` when
they exist, and the oracle that knows the true factor model) and penalty rule (BIC with an
unpenalised refit on the selected structures, CV-min, CV-1se):

- ``tpr`` / ``fpr``: structure selection rates (methods with the true structure only);
- ``coef_error``: ``||beta_hat - O^T beta||``, ``O`` the Procrustes rotation aligning the
  fitted loadings to the true ones (per block for structured methods, one global rotation
  otherwise);
- ``excess_risk``: ``mean (y_hat(x) - f*(x))^2`` over test samples, ``f*(x) = beta^T E[z | x]``
  the Bayes predictor under the true model.

Inference check: at m = --m-fixed and every n of the n grid, on HCL and on oracle scores, the
Wald p-values of truly null structures (a) ``split``: under sample splitting (selection by
CV-min on one half, Wald tests on the other), (b) ``naive``: selected by CV-min and tested on
the same samples, and (c) ``all``: all structures tested on half the samples without
selection; a Kolmogorov-Smirnov test against U(0, 1) and the rejection rate at 0.05 for
each. With HCL scores the naive tests treat the estimated scores as fixed regressors, but
estimation error of the factor model leaks a little of the signal factors into the scores of
overlapping null structures (a generated-regressor problem that vanishes as n grows). The
kinds ``split_fs`` and ``all_fs`` repeat (a) and (c) with the first-stage bootstrap correction
(``--n-bootstrap`` refits of HCL, :func:`hcl_stats.downstream.bootstrap_scores`), and
``split_indep_fs`` (``--calibration`` only) selects with scores of an HCL fit on one half of
the unlabelled samples and tests, corrected, with scores of a fit on the other half, so that
the selection is independent of the inference part's first stage.

``python -m simulations downstream --calibration --reps 35 --n-grid 500 1000 2000 4000``
runs the inference check alone (HCL and oracle only; about 4 minutes of one core per n).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

SIGNAL = ((0, 1, 2), (0, 1), (2,))
KS_LEGEND = (
    "KS test of Wald p-values of truly null structures against U(0,1), and the fraction "
    "below 0.05.\nsplit: selected by CV-min on one half, tested on the other; naive: "
    "selected and tested on the same samples; all: every structure tested on one half; "
    "_fs: the same with the first-stage bootstrap correction; split_indep_fs: selection "
    "and inference with factor models fitted on separate halves of the unlabelled data.")
RULES = {"bic": {"alpha": "bic", "refit": True}, "cv": {"alpha": "cv", "cv_rule": "min"},
         "cv1se": {"alpha": "cv", "cv_rule": "1se"}}


def make_design(widths, rank, noise, rng):
    """True structure, loadings and group-sparse beta."""
    from hcl_stats import Structure
    from hcl_stats.datasets import make_loadings

    structure = Structure.full(len(widths), rank=rank)
    W = make_loadings(widths, structure, random_state=int(rng.integers(2**31 - 1)))
    beta = np.zeros(structure.n_components)
    for s in SIGNAL:
        cols = structure.columns(s)
        beta[cols] = rng.uniform(0.5, 1.0, rank) * rng.choice([-1.0, 1.0], rank)
    beta /= np.linalg.norm(beta)
    return structure, W, beta


def draw(W, widths, noise, n, rng):
    """``n`` samples of the factor model: blocks and true factors."""
    Z = rng.standard_normal((n, W.shape[1]))
    X = Z @ W.T + np.sqrt(noise) * rng.standard_normal((n, W.shape[0]))
    edges = np.concatenate([[0], np.cumsum(widths)])
    return [X[:, edges[m]:edges[m + 1]] for m in range(len(widths))], Z


def bayes_predictor(W, noise, beta, X):
    """``beta^T E[z | x]`` under the true model."""
    x = np.hstack(X)
    K = W.shape[1]
    post = np.linalg.solve(np.eye(K) + W.T @ W / noise, W.T / noise)
    return x @ post.T @ beta


def aligned_beta(W, W_hat, structure, structure_hat, beta):
    """``O^T beta`` with ``O`` aligning the true loadings to the fitted ones."""
    def procrustes(A, B):
        U, _, Vt = np.linalg.svd(A.T @ B)
        return U @ Vt

    if structure_hat == structure:
        target = np.zeros_like(beta)
        for s in structure.subsets:
            c = structure.columns(s)
            target[c] = procrustes(W[:, c], W_hat[:, c]).T @ beta[c]
        return target
    if W_hat.shape[1] != W.shape[1]:
        return None
    return procrustes(W, W_hat).T @ beta


def factor_models(structure, random_state):
    """(name, unfitted model) pairs matched to the structure (``matched_estimator``).

    AJIVE is given the joint and individual ranks (rather than selecting them) so that
    every method is compared at the same dimension per modality.
    """
    from hcl_stats.baselines import ESTIMATORS, matched_estimator

    M = structure.n_modalities
    glob = tuple(range(M))
    joint = structure.rank(glob) if glob in structure else 0
    options = {"AJIVE": {"joint_rank": joint,
                         "individual_ranks": [structure.modality_rank(m) - joint
                                              for m in range(M)]}}
    models = []
    for name in ESTIMATORS:
        model = matched_estimator(name, structure, **options.get(name, {}))
        if "random_state" in model.get_params():
            model.set_params(random_state=random_state)
        models.append((name, model))
    return models


def replication(m, n, seed, *, widths=(30, 40, 50), rank=2, noise=0.1, y_noise=0.1,
                n_test=2000, rules=("bic", "cv", "cv1se"), with_inference=False,
                n_bootstrap=0):
    """One replication: rows of metrics (and null p-values when ``with_inference``; with
    ``n_bootstrap`` > 0 also the first-stage corrected ones for HCL)."""
    from hcl_stats.downstream import StructuredGroupLasso

    # the design (loadings, beta) depends on the replication only, the samples on the cell
    # too: cells of a grid are paired comparisons on the same designs
    structure, W, beta = make_design(widths, rank, noise, np.random.default_rng(seed))
    rng = np.random.default_rng([seed, m, n])
    X_unl, _ = draw(W, widths, noise, n, rng)
    X_lab, Z_lab = draw(W, widths, noise, m, rng)  # y depends on the true factors
    y = Z_lab @ beta + np.sqrt(y_noise) * rng.standard_normal(m)
    X_test, _ = draw(W, widths, noise, n_test, rng)
    f_star = bayes_predictor(W, noise, beta, X_test)
    truth = {structure.label(s) for s in SIGNAL}
    null = [structure.label(s) for s in structure.subsets if structure.label(s) not in truth]
    rows, pvals = [], []
    # the oracle knows the true factor model: posterior-mean scores under W and noise
    post = np.linalg.solve(np.eye(W.shape[1]) + W.T @ W / noise, W.T / noise)
    fits = [("oracle", 0.0, np.hstack(X_lab) @ post.T, np.hstack(X_test) @ post.T, structure,
             beta, None)]
    for name, model in factor_models(structure, seed):
        try:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X_unl)
            fit_time = time.perf_counter() - start
        except Exception as exc:  # a baseline in progress must not stop the study
            print(f"  {name} failed: {exc}")
            continue
        target = aligned_beta(W, model.loadings_, structure, model.structure_, beta)
        fits.append((name, fit_time, model.transform(X_lab), model.transform(X_test),
                     model.structure_, target, model))
    for name, fit_time, Z, Zt, st, target, model in fits:
        same = st == structure
        for rule in rules:
            est = StructuredGroupLasso(st, random_state=seed, **RULES[rule]).fit(Z, y)
            chosen = set(est.selected_labels_)
            row = {"m": m, "n": n, "seed": seed, "method": name, "rule": rule,
                   "tpr": len(chosen & truth) / len(truth) if same else np.nan,
                   "fpr": len(chosen - truth) / len(null) if same else np.nan,
                   "n_selected": len(chosen),
                   "coef_error": (float(np.linalg.norm(est.coef_ - target))
                                  if target is not None else np.nan),
                   "excess_risk": float(np.mean((est.predict(Zt) - f_star) ** 2)),
                   "fit_time": fit_time}
            rows.append(row)
        if with_inference and name in ("HCL", "oracle"):
            boot = None
            if name == "HCL" and n_bootstrap:
                from hcl_stats.downstream import bootstrap_scores

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    boot = bootstrap_scores(model, X_unl, X_lab, n_bootstrap=n_bootstrap,
                                            random_state=seed)
            pvals += null_pvalues(name, m, n, Z, y, st, null, seed, first_stage=boot)
    return rows, pvals


def null_pvalues(name, m, n, Z, y, st, null, seed, *, first_stage=None,
                 selection_scores=None, kinds=("split", "naive", "all")):
    """Wald p-values of the truly ``null`` structures, as rows of a table.

    Kinds: ``split`` (selected by CV-min on one half, tested on the other), ``naive``
    (selected and tested on the same samples), ``all`` (every structure tested on the
    inference half, no selection). With ``first_stage`` (bootstrap score draws) ``split``
    and ``all`` are repeated with the generated-regressor correction (``split_fs``,
    ``all_fs``); with ``selection_scores`` too, ``split_indep_fs`` selects on those.
    """
    from sklearn.base import clone

    from hcl_stats.downstream import (
        StructuredGroupLasso,
        sample_split_inference,
        structure_inference,
    )

    out = []

    def keep(kind, table):
        out.extend({"method": name, "m": m, "n": n, "kind": kind,
                    "p_value": float(table.loc[g, "p_value"])}
                   for g in table.index if g in null)

    selector = StructuredGroupLasso(st, alpha="cv", cv_rule="min", random_state=seed)
    split = sample_split_inference(Z, y, st, selector=selector, random_state=seed)
    half = split.inference_index
    if "split" in kinds:
        keep("split", split.wald_table)
    if "naive" in kinds:
        naive = clone(selector).fit(Z, y)
        if naive.selected_:
            keep("naive", structure_inference(Z, y, st, subsets=naive.selected_).wald_table)
    if "all" in kinds:
        keep("all", structure_inference(Z[half], y[half], st).wald_table)
    if first_stage is not None:
        draws = getattr(first_stage, "draws", first_stage)
        if "split" in kinds:
            # the same split and selection as `split`, corrected tests
            if split.selected:
                keep("split_fs", structure_inference(
                    Z[half], y[half], st, subsets=split.selected,
                    first_stage=draws[:, half]).wald_table)
        if "all" in kinds:
            keep("all_fs", structure_inference(Z[half], y[half], st,
                                               first_stage=draws[:, half]).wald_table)
        if selection_scores is not None:
            indep = sample_split_inference(Z, y, st, selector=selector, random_state=seed,
                                           first_stage=draws,
                                           selection_scores=selection_scores)
            keep("split_indep_fs", indep.wald_table)
    return out


def calibration_replication(m, n, seed, *, widths=(30, 40, 50), rank=2, noise=0.1,
                            y_noise=0.1, n_bootstrap=100):
    """Null p-values of one replication of the inference check (HCL and oracle only).

    Same design and samples as :func:`replication`. HCL is fitted on the ``n`` unlabelled
    samples (kinds ``split``, ``all``, ``naive`` and the first-stage corrected ``split_fs``,
    ``all_fs``); for ``split_indep_fs`` the unlabelled samples are halved, the selection
    uses scores of an HCL fit on the first half and the inference those of a fit on the
    second half, with its own bootstrap.
    """
    from hcl_stats import HCL
    from hcl_stats.downstream import bootstrap_scores

    structure, W, beta = make_design(widths, rank, noise, np.random.default_rng(seed))
    rng = np.random.default_rng([seed, m, n])
    X_unl, _ = draw(W, widths, noise, n, rng)
    X_lab, Z_lab = draw(W, widths, noise, m, rng)
    y = Z_lab @ beta + np.sqrt(y_noise) * rng.standard_normal(m)
    truth = {structure.label(s) for s in SIGNAL}
    null = [structure.label(s) for s in structure.subsets if structure.label(s) not in truth]
    post = np.linalg.solve(np.eye(W.shape[1]) + W.T @ W / noise, W.T / noise)
    out = null_pvalues("oracle", m, n, np.hstack(X_lab) @ post.T, y, structure, null, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HCL(structure, random_state=seed).fit(X_unl)
        boot = bootstrap_scores(model, X_unl, X_lab, n_bootstrap=n_bootstrap,
                                random_state=seed)
        out += null_pvalues("HCL", m, n, boot.scores, y, structure, null, seed,
                            first_stage=boot)
        first = [x[:n // 2] for x in X_unl]
        second = [x[n // 2:] for x in X_unl]
        sel_scores = HCL(structure, random_state=seed).fit(first).transform(X_lab)
        model2 = HCL(structure, random_state=seed).fit(second)
        boot2 = bootstrap_scores(model2, second, X_lab, n_bootstrap=n_bootstrap,
                                 random_state=seed + 1)
        out += null_pvalues("HCL", m, n, boot2.scores, y, structure, null, seed,
                            first_stage=boot2, selection_scores=sel_scores, kinds=())
    return out


def ks_table(pvals):
    """KS test against U(0, 1) and rejection rate at 0.05 per method, m, n and kind."""
    import pandas as pd
    from scipy.stats import kstest

    ks = []
    for (method, m, n, kind), v in pvals.groupby(["method", "m", "n", "kind"])["p_value"]:
        test = kstest(v, "uniform") if len(v) >= 5 else None
        ks.append({"method": method, "m": m, "n": n, "kind": kind, "count": len(v),
                   "ks_statistic": test.statistic if test else np.nan,
                   "ks_p_value": test.pvalue if test else np.nan,
                   "frac_below_0.05": float(np.mean(v < 0.05))})
    return pd.DataFrame(ks, columns=["method", "m", "n", "kind", "count", "ks_statistic",
                                     "ks_p_value", "frac_below_0.05"])


def calibration(m, n_grid, reps, seed=0, n_jobs=1, verbose=True, **design):
    """The inference check alone: (KS table, null p-values)."""
    import pandas as pd
    from joblib import Parallel, delayed

    pvals = []
    for nn in n_grid:
        start = time.perf_counter()
        done = Parallel(n_jobs=n_jobs)(delayed(calibration_replication)(m, nn, seed + r,
                                                                        **design)
                                       for r in range(reps))
        for p in done:
            pvals += p
        if verbose:
            print(f"  m={m} n={nn} ({reps} reps, {time.perf_counter() - start:.1f} s)",
                  flush=True)
    pvals = pd.DataFrame(pvals, columns=["method", "m", "n", "kind", "p_value"])
    return ks_table(pvals), pvals


def run(m_grid, n_grid, m_fixed, n_fixed, reps, seed=0, rules=("bic", "cv", "cv1se"),
        verbose=True, n_jobs=1, n_bootstrap=0, **design):
    """The whole study: (results, KS table, null p-values), three DataFrames."""
    import pandas as pd

    rows, pvals = [], []
    cells = [("m", mm, n_fixed) for mm in m_grid] + [("n", m_fixed, nn) for nn in n_grid]
    for grid, mm, nn in cells:
        from joblib import Parallel, delayed

        start = time.perf_counter()
        inference = grid == "n" or (mm == m_fixed and nn not in n_grid)
        done = Parallel(n_jobs=n_jobs)(
            delayed(replication)(mm, nn, seed + r, rules=rules, with_inference=inference,
                                 n_bootstrap=n_bootstrap, **design) for r in range(reps))
        for out, p in done:
            for row in out:
                row["grid"] = grid
            rows += out
            pvals += p
        if verbose:
            print(f"  grid {grid}: m={mm} n={nn} ({reps} reps, "
                  f"{time.perf_counter() - start:.1f} s)", flush=True)
    results = pd.DataFrame(rows)
    pvals = pd.DataFrame(pvals, columns=["method", "m", "n", "kind", "p_value"])
    return results, ks_table(pvals), pvals


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations downstream",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--m-grid", type=int, nargs="+", default=[140, 200, 300, 400])
    parser.add_argument("--n-grid", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--m-fixed", type=int, default=400)
    parser.add_argument("--n-fixed", type=int, default=2000)
    parser.add_argument("--widths", type=int, nargs="+", default=[30, 40, 50])
    parser.add_argument("--rank", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--y-noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel replications")
    parser.add_argument("--quick", action="store_true",
                        help="5 replications, grids m in (140, 400), n in (500, 4000)")
    parser.add_argument("--n-bootstrap", type=int, default=100,
                        help="first-stage bootstrap refits for the corrected Wald tests "
                             "(0: naive tests only)")
    parser.add_argument("--calibration", action="store_true",
                        help="only the inference check (HCL and oracle, n grid at m-fixed)")
    parser.add_argument("--out", default=None, help="directory for the CSV files")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.m_grid, args.n_grid = 5, [140, 400], [500, 4000]
    import pandas as pd

    design = dict(widths=tuple(args.widths), rank=args.rank, noise=args.noise,
                  y_noise=args.y_noise)
    if args.calibration:
        print(f"downstream inference check: {args.reps} replications per n, "
              f"{args.n_bootstrap} bootstrap refits")
        ks, pvals = calibration(args.m_fixed, args.n_grid, args.reps, seed=args.seed,
                                n_jobs=args.n_jobs, n_bootstrap=args.n_bootstrap, **design)
        with pd.option_context("display.width", 160, "display.max_rows", 200):
            print("\n" + KS_LEGEND)
            print(ks.round(4).to_string(index=False))
        if args.out:
            import os

            os.makedirs(args.out, exist_ok=True)
            ks.to_csv(os.path.join(args.out, "downstream_calibration_ks.csv"), index=False)
            pvals.to_csv(os.path.join(args.out, "downstream_calibration_pvalues.csv"),
                         index=False)
        return 0
    print(f"downstream study: {args.reps} replications per cell")
    results, ks, pvals = run(args.m_grid, args.n_grid, args.m_fixed, args.n_fixed, args.reps,
                             seed=args.seed, n_jobs=args.n_jobs, n_bootstrap=args.n_bootstrap,
                             **design)

    with pd.option_context("display.width", 160, "display.max_rows", 200):
        for grid in ("m", "n"):
            sub = results[results.grid == grid]
            table = sub.groupby([grid, "method", "rule"])[
                ["tpr", "fpr", "coef_error", "excess_risk"]].mean().unstack(grid)
            print(f"\nmean over replications, varying {grid}:")
            print(table.round(4).to_string())
        print("\n" + KS_LEGEND)
        print(ks.round(4).to_string(index=False))
    if args.out:
        import os

        os.makedirs(args.out, exist_ok=True)
        results.to_csv(os.path.join(args.out, "downstream.csv"), index=False)
        ks.to_csv(os.path.join(args.out, "downstream_ks.csv"), index=False)
        pvals.to_csv(os.path.join(args.out, "downstream_pvalues.csv"), index=False)
        print(f"\nwrote downstream.csv, downstream_ks.csv and downstream_pvalues.csv in "
              f"{args.out}")
    return 0
