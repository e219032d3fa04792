"""Inference on structure blocks with statsmodels: coefficients, Wald tests, partial R^2.

Post-selection inference
------------------------
p-values and confidence intervals computed on the same data that chose the structures (for
example by :class:`StructuredGroupLasso`) are not valid: selection favours structures whose
estimated effects happen to be large, so their naive p-values are too small and intervals too
narrow. :func:`sample_split_inference` gives valid inference by splitting the labelled samples:
structures are selected on one part and tested on the other, which is independent of the
selection. The price is power (fewer samples for each step). Inference on structures fixed
in advance (``subsets=...`` chosen from subject-matter knowledge, not from these data) is
valid on all samples.

The hypotheses are about the regression of ``y`` on the *scores*: when the factor model is
well specified, ``E[y | x] = b^T E[z | x]``, so a zero coefficient block on the posterior-mean
scores of structure ``S`` is the same as ``y`` not depending on the factors ``z_S`` (provided
every structure that does carry signal is in the model: scores of different structures are
correlated, so leaving a signal structure out moves its effect onto the others).

First-stage uncertainty (generated regressors)
----------------------------------------------
The scores ``z_hat = A(theta_hat) x`` come from a factor model ``theta_hat`` fitted in a
first stage (on unlabelled samples, or on any data that do not involve ``y``). By default
(``first_stage=None``) the tests treat them as fixed, which is right only when the factor
model is estimated much more precisely than the regression, i.e. when the number ``n`` of
first-stage samples is much larger than the number ``m`` of samples in the regression.
Otherwise the estimated scores of a null structure carry a little of the signal factors
(the loadings of overlapping blocks are mixed up by estimation error), and the naive Wald
tests reject true nulls too often (``simulations/downstream.py`` measures how often).

``first_stage=bootstrap_scores(model, X_fit, X)`` corrects this. Let ``b(theta)`` be the
population coefficient of ``y`` on the scores ``A(theta) x`` and ``b_hat`` the estimate on
the labelled samples. Under the null ``b_S(theta_0) = 0`` and::

    b_hat - b(theta_0) = [b_hat - b(theta_hat)] + [b(theta_hat) - b(theta_0)].

Given the first-stage data, the first term has mean zero (to first order) and covariance
``V``, which the usual OLS / Logit covariance estimates; the second term is a function of
the first-stage data alone, of order ``n^{-1/2}``, with covariance ``F``. Because the
outcome noise is independent of the first-stage data, the conditional mean of the first
term is zero whatever the second is, so the two are uncorrelated and, to first order,
``Cov(b_hat) = V + F``. ``F`` is estimated by the nonparametric bootstrap of the first
stage: refit the factor model on resamples of its data, rotate each refit block by block
onto the reference fit (the model identifies a block only up to a rotation within it, and
the coefficients of different refits must be in the same coordinates to have a
covariance), recompute the scores of the *same* labelled samples and their coefficients
``b_hat(theta*)``; with the labelled samples held fixed, ``b_hat(theta*) - b_hat(theta_hat)``
is ``db/dtheta (theta* - theta_hat)`` to first order, whose bootstrap covariance estimates
``F``. The Wald statistic of structure ``S`` (``r`` columns) is then
``b_S^T (V_SS + F_SS)^{-1} b_S``, referred to ``r F(r, df_resid)`` for OLS (the exact F test
when ``F = 0``) and to chi-square(r) for Logit; the coefficient table's standard errors
and intervals use ``V + F`` too. Cost: ``n_bootstrap`` refits of the factor model (see
:func:`bootstrap_scores`) plus one second-stage fit per draw; the default stays naive.

Sample splitting with a shared first stage. The selection half and the inference half use
scores from the same ``theta_hat``, so the selection also sees the first-stage term
``b(theta_hat) - b(theta_0)``: a null structure whose estimated scores happen to pick up
signal is more likely to be selected, and the same term is then present in the inference
half. The corrected test is exactly valid (to first order) when the selection is
independent of the inference part's first stage too: pass ``selection_scores`` computed
with a factor model fitted on a separate part of the first-stage data (and the first stage
of the inference part fitted on the rest). With a shared first stage the dependence is of
the order of ``F / (F + V)`` and weak when the selection admits structures easily, so
the shared first stage, which keeps all unlabelled samples for the inference, is the
default. The bootstrap slightly overestimates ``F`` at small ``n`` (conservative tests).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_array, check_X_y
from statsmodels.discrete.discrete_model import Logit
from statsmodels.regression.linear_model import OLS

from hcl_stats._models.summary import Summary
from hcl_stats._structure import Structure
from hcl_stats.downstream._first_stage import ScoreBootstrap
from hcl_stats.downstream._group_lasso import StructuredGroupLasso
from hcl_stats.downstream._groups import resolve_groups

__all__ = ["StructureInference", "structure_inference", "sample_split_inference",
           "SampleSplitInference"]


@dataclass(frozen=True, eq=False)
class StructureInference:
    """Result of :func:`structure_inference`.

    Attributes
    ----------
    result : statsmodels results
        The fitted ``OLS`` or ``Logit`` results (column ``const`` plus the score columns).
    coef_table : pandas.DataFrame
        One row per score column (index ``(structure, component)``): ``coef``, ``std_err``,
        ``statistic`` (t or z), ``p_value``, ``ci_low``, ``ci_high``.
    wald_table : pandas.DataFrame
        One row per structure: ``df``, ``statistic`` (F for OLS, chi-square for Logit),
        ``p_value``, and ``partial_r2``: the fraction of the residual sum of squares (OLS) or
        of the deviance (Logit) of the model without the structure that the structure
        explains.
    structures : list
        Keys of the structures in the model.
    loss : str
    n_samples : int
        Number of samples in the regression.
    cov_params : ndarray of shape (1 + k, 1 + k)
        Covariance of the coefficients used by the tables (``const`` first): the naive
        one, plus ``first_stage_cov`` when a first stage was given.
    first_stage_cov : ndarray of shape (1 + k, 1 + k) or None
        Bootstrap covariance of the coefficients over the first stage (``None`` without
        ``first_stage``).
    """

    result: object
    coef_table: pd.DataFrame
    wald_table: pd.DataFrame
    structures: list
    loss: str
    n_samples: int
    cov_params: np.ndarray = None
    first_stage_cov: np.ndarray = None

    def summary(self):
        """A :class:`hcl_stats._models.summary.Summary` of the coefficient and Wald tables."""

        info = [("Model", "OLS" if self.loss == "squared" else "Logit"),
                ("No. samples", int(self.n_samples)),
                ("No. structures", len(self.structures))]
        if self.loss == "squared":
            info.append(("R-squared", float(self.result.rsquared)))
        else:
            info.append(("Pseudo R-squared", float(self.result.prsquared)))
        notes = ["p-values are valid only if the structures were not chosen on these "
                 "samples (see sample_split_inference)."]
        if self.first_stage_cov is None:
            notes.append("The scores are treated as fixed: the factor model's estimation "
                         "error is ignored (see first_stage).")
        else:
            notes.append("Standard errors and Wald tests include the first-stage (factor "
                         "model) bootstrap covariance.")
        return Summary("Structure inference", info,
                       {"coefficients": self.coef_table, "structures": self.wald_table},
                       notes=notes)


def _design(Z, index, chosen):
    cols = [np.ones(len(Z))]
    names = ["const"]
    for g in chosen:
        for j, c in enumerate(index[g]):
            cols.append(Z[:, c])
            names.append((g, j))
    return np.column_stack(cols), names


def _fit(endog, exog, loss, cov_type):
    if loss == "squared":
        return OLS(endog, exog).fit(cov_type=cov_type)
    return Logit(endog, exog).fit(disp=0, cov_type=cov_type, maxiter=200)


def _coef(endog, exog, loss, start):
    """Coefficients of one second-stage fit (for a bootstrap draw of the scores)."""
    if loss == "squared":
        return np.linalg.lstsq(exog, endog, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(Logit(endog, exog).fit(disp=0, start_params=start,
                                                 maxiter=100).params)


def _check_first_stage(first_stage, Z):
    """The (B, m, K) score draws of ``first_stage`` (ScoreBootstrap or array), checked."""

    if first_stage is None:
        return None
    if isinstance(first_stage, str):
        raise ValueError("first_stage must be None, a ScoreBootstrap (from bootstrap_scores) "
                         "or an array of score draws of shape (n_bootstrap, m, K), got "
                         f"{first_stage!r}")
    if isinstance(first_stage, ScoreBootstrap):
        if (first_stage.scores.shape != Z.shape
                or not np.allclose(first_stage.scores, Z, rtol=1e-8, atol=1e-10)):
            raise ValueError("first_stage was computed for other scores: pass "
                             "first_stage.scores as X")
        draws = first_stage.draws
    else:
        draws = np.asarray(first_stage, dtype=np.float64)
    if draws.ndim != 3 or draws.shape[1:] != Z.shape:
        raise ValueError(f"first_stage draws must have shape (n_bootstrap, {Z.shape[0]}, "
                         f"{Z.shape[1]}), got {draws.shape}")
    if draws.shape[0] < 2:
        raise ValueError("first_stage needs at least 2 bootstrap draws")
    if not np.isfinite(draws).all():
        raise ValueError("first_stage draws contain NaN or infinite values")
    return draws


def first_stage_covariance(draws, y, exog_of, loss="squared", start=None):
    """Covariance over bootstrap score draws of the second-stage coefficients.

    Parameters
    ----------
    draws : ndarray of shape (B, m, K)
        Score draws (aligned to the reference fit).
    y : ndarray of shape (m,)
    exog_of : callable
        Maps a (m, K) score matrix to the design matrix of the second stage.
    loss : {"squared", "logistic"}
    start : ndarray, optional
        Starting values of the Logit fits.

    Returns
    -------
    ndarray of shape (q, q)
        Sample covariance (denominator ``B - 1``) of the ``B`` coefficient vectors.
    """
    coefs = np.stack([_coef(y, exog_of(D), loss, start) for D in draws])
    return np.atleast_2d(np.cov(coefs, rowvar=False))


def structure_inference(X, y, groups, *, subsets=None, loss="squared", conf_level=0.95,
                        cov_type="nonrobust", first_stage=None):
    """OLS or Logit of ``y`` on the scores of chosen structures, with a Wald test per structure.

    Parameters
    ----------
    X : array-like of shape (m, K)
        Scores (e.g. ``model.transform(X_blocks)``), columns ordered as ``groups``.
    y : array-like of shape (m,)
        Outcome (0/1 or two classes for ``loss="logistic"``).
    groups : Structure, dict or sequence of int
        The column groups (usually ``model.structure_``).
    subsets : sequence, default=None
        The structures to put in the model (subsets of a Structure, or group keys);
        all by default. See the module notes on post-selection inference: choose them on
        other data, or use :func:`sample_split_inference`.
    loss : {"squared", "logistic"}, default="squared"
        OLS or Logit.
    conf_level : float, default=0.95
        Level of the confidence intervals.
    cov_type : str, default="nonrobust"
        Passed to statsmodels' ``fit`` (e.g. ``"HC3"`` for heteroscedasticity-robust
        standard errors); the Wald tests use the same covariance.
    first_stage : ScoreBootstrap, array of shape (B, m, K) or None, default=None
        Bootstrap draws of the scores over the fit of the factor model (from
        :func:`bootstrap_scores`, whose ``scores`` must be ``X``). When given, the
        coefficient covariance is the naive one plus the bootstrap covariance of the
        coefficients over the draws (generated-regressor correction, see the module
        notes), and the coefficient table gains a ``std_err_first_stage`` column. Cost: one
        least-squares (or Logit) fit per draw, on top of the refits of
        :func:`bootstrap_scores`. ``None`` treats the scores as fixed (valid when the
        factor model was fitted on many more samples than ``m``).

    Returns
    -------
    StructureInference

    Examples
    --------
    >>> import numpy as np
    >>> from hcl_stats import Structure
    >>> from hcl_stats.downstream import structure_inference
    >>> rng = np.random.default_rng(0)
    >>> groups = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    >>> Z = rng.standard_normal((200, 3))
    >>> y = 2 * Z[:, 0] + rng.standard_normal(200)
    >>> res = structure_inference(Z, y, groups)
    >>> bool(res.wald_table.loc["{0,1}", "p_value"] < 1e-6)
    True
    """
    Z, y = _check_inference_data(X, y, loss, conf_level)
    draws = _check_first_stage(first_stage, Z)
    keys, labels, index = resolve_groups(groups, Z.shape[1])
    chosen = _chosen_groups(groups, keys, subsets)
    exog, names = _design(Z, index, chosen)
    if exog.shape[1] >= len(y):
        raise ValueError(f"{exog.shape[1]} coefficients but only {len(y)} samples")
    res = _fit(y, exog, loss, cov_type)
    params = np.asarray(res.params)
    cov = np.asarray(res.cov_params(), dtype=np.float64)
    fs_cov = None
    if draws is not None:
        fs_cov = first_stage_covariance(draws, y, lambda D: _design(D, index, chosen)[0],
                                        loss, start=params)
        cov = cov + fs_cov
    coef_table = _coefficient_table(res, params, cov, fs_cov, loss, conf_level,
                                    [("const", 0)] + [(labels[g], j) for g, j in names[1:]])
    rows, pos = [], 1
    for g in chosen:
        sl = slice(pos, pos + len(index[g]))
        statistic, p_value = _wald(res, params, cov, sl, loss, corrected=draws is not None)
        rows.append({"structure": labels[g], "df": len(index[g]), "statistic": statistic,
                     "p_value": p_value, "partial_r2": _partial_r2(res, y, exog, sl, loss)})
        pos = sl.stop
    wald_table = pd.DataFrame(rows, columns=["structure", "df", "statistic", "p_value",
                                             "partial_r2"]).set_index("structure")
    return StructureInference(res, coef_table, wald_table, [keys[g] for g in chosen], loss,
                              len(y), cov_params=cov, first_stage_cov=fs_cov)


def _check_inference_data(X, y, loss, conf_level):
    if loss not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss!r}")
    if not 0 < conf_level < 1:
        raise ValueError(f"conf_level must be in (0, 1), got {conf_level!r}")
    Z, y = check_X_y(X, y, dtype=np.float64 if loss == "squared" else None,
                     y_numeric=loss == "squared")
    Z = np.asarray(Z, dtype=np.float64)
    if loss == "logistic":
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"the logistic loss needs exactly two classes in y, got "
                             f"{len(classes)}")
        y = (y == classes[1]).astype(float)
    return Z, y


def _chosen_groups(groups, keys, subsets):
    """Sorted group indices of ``subsets`` (all groups when None)."""
    if subsets is None:
        return list(range(len(keys)))
    chosen = []
    for s in subsets:
        g = _find_group(groups, keys, s)
        if g not in chosen:
            chosen.append(g)
    return sorted(chosen)


def _coefficient_table(res, params, cov, fs_cov, loss, conf_level, row_keys):
    """Coefficients, standard errors, tests and intervals; statsmodels' own without a
    first stage, else from the corrected covariance ``cov`` (t for OLS, normal for Logit)."""
    bse = np.sqrt(np.diag(cov))
    alpha = 1 - conf_level
    if fs_cov is None:
        ci = np.asarray(res.conf_int(alpha=alpha))
        stat = np.asarray(res.tvalues)
        pvals = np.asarray(res.pvalues)
    else:
        stat = params / bse
        law = (stats.t(res.df_resid) if loss == "squared" and getattr(res, "use_t", True)
               else stats.norm())
        q = law.ppf(1 - alpha / 2)
        ci = np.column_stack([params - q * bse, params + q * bse])
        pvals = 2 * law.sf(np.abs(stat))
    row_index = pd.MultiIndex.from_tuples(row_keys, names=["structure", "component"])
    table = pd.DataFrame({"coef": params, "std_err": bse, "statistic": stat,
                          "p_value": pvals, "ci_low": ci[:, 0], "ci_high": ci[:, 1]},
                         index=row_index)
    if fs_cov is not None:
        table["std_err_first_stage"] = np.sqrt(np.clip(np.diag(fs_cov), 0, None))
    return table


def _wald(res, params, cov, sl, loss, *, corrected):
    """Wald test that the coefficients ``sl`` are zero: statsmodels' test, or with the
    corrected covariance ``F(r, df_resid)`` (OLS) or chi-square(r) (Logit)."""
    r = sl.stop - sl.start
    if not corrected:
        R = np.zeros((r, len(params)))
        R[np.arange(r), sl.start + np.arange(r)] = 1.0
        wald = res.wald_test(R, use_f=(loss == "squared"), scalar=True)
        return float(wald.statistic), float(wald.pvalue)
    b = params[sl]
    chi2_stat = float(b @ np.linalg.solve(cov[sl, sl], b))
    if loss == "squared":
        return chi2_stat / r, float(stats.f.sf(chi2_stat / r, r, res.df_resid))
    return chi2_stat, float(stats.chi2.sf(chi2_stat, r))


def _partial_r2(res, y, exog, sl, loss):
    """Share of the residual sum of squares (deviance) of the model without the columns
    ``sl`` that they explain."""
    keep = np.ones(exog.shape[1], dtype=bool)
    keep[sl] = False
    reduced = _fit(y, exog[:, keep], loss, "nonrobust")
    if loss == "squared":
        return float((reduced.ssr - res.ssr) / reduced.ssr) if reduced.ssr > 0 else 0.0
    return float(1.0 - res.llf / reduced.llf) if reduced.llf < 0 else 0.0


def _selection_scores(selection_scores, Z):
    if selection_scores is None:
        return Z
    Z_sel = check_array(selection_scores, dtype=np.float64)
    if Z_sel.shape != Z.shape:
        raise ValueError(f"selection_scores must have the shape of X {Z.shape}, got "
                         f"{Z_sel.shape}")
    return Z_sel


def _find_group(groups, keys, s):

    if isinstance(groups, Structure):
        try:
            return keys.index(groups.resolve(s))
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    if s in keys:
        return keys.index(s)
    raise ValueError(f"{s!r} is not one of the groups {keys!r}")


@dataclass(frozen=True, eq=False)
class SampleSplitInference:
    """Result of :func:`sample_split_inference`.

    Attributes
    ----------
    selector : StructuredGroupLasso
        Fitted on the selection part.
    selected : list
        Structures it selected.
    inference : StructureInference or None
        Fitted on the inference part with the selected structures (None when nothing was
        selected).
    selection_index, inference_index : ndarray of int
        The rows used for each step.
    """

    selector: object
    selected: list
    inference: StructureInference
    selection_index: np.ndarray
    inference_index: np.ndarray

    @property
    def wald_table(self):
        """The Wald table of the inference part (empty when nothing was selected)."""
        if self.inference is None:
            return pd.DataFrame(columns=["df", "statistic", "p_value", "partial_r2"])
        return self.inference.wald_table


def sample_split_inference(X, y, groups, *, selector=None, loss="squared",
                           selection_size=0.5, conf_level=0.95, cov_type="nonrobust",
                           random_state=None, first_stage=None, selection_scores=None):
    """Select structures on one part of the samples, test them on the other.

    Valid post-selection inference by sample splitting (Cox 1975; Wasserman and Roeder
    2009): the inference part is independent of the selection, so the Wald tests, p-values
    and confidence intervals of :func:`structure_inference` on it have their nominal
    properties for the selected structures, including the falsely selected ones, provided
    the scores can be treated as fixed. When they come from a factor model fitted on not
    many more samples than ``m``, pass ``first_stage`` (see the module notes): the naive
    tests then reject true nulls too often even after splitting.

    Parameters
    ----------
    X : array-like of shape (m, K)
        Scores, columns ordered as ``groups``.
    y : array-like of shape (m,)
        Outcome.
    groups : Structure, dict or sequence of int
        The column groups.
    selector : estimator, default=None
        Unfitted selector with a ``selected_`` attribute after ``fit`` (cloned before use);
        default ``StructuredGroupLasso(groups, loss=loss, random_state=random_state)``
        (penalty by BIC).
    loss : {"squared", "logistic"}, default="squared"
    selection_size : float, default=0.5
        Fraction of the samples used for selection.
    conf_level : float, default=0.95
    cov_type : str, default="nonrobust"
    random_state : int, RandomState or None, default=None
        The split (stratified on ``y`` for the logistic loss).
    first_stage : ScoreBootstrap, array of shape (B, m, K) or None, default=None
        Bootstrap draws of the scores ``X`` over the factor-model fit
        (:func:`bootstrap_scores`); the inference part then uses the generated-regressor
        corrected Wald tests of :func:`structure_inference` (its rows of the draws).
    selection_scores : array-like of shape (m, K), default=None
        Scores used for the selection step instead of ``X`` (same samples and columns),
        e.g. from a factor model fitted on a separate part of the first-stage data. Then
        the selection is independent of the inference part's first stage as well as of its
        samples (see the module notes on a shared first stage).

    Returns
    -------
    SampleSplitInference

    Examples
    --------
    >>> from hcl_stats import HCL, Structure
    >>> from hcl_stats.datasets import make_hierarchical
    >>> from hcl_stats.downstream import bootstrap_scores, sample_split_inference
    >>> st = Structure({(0, 1): 1, (0,): 1, (1,): 1})
    >>> X, truth = make_hierarchical(400, [5, 6], st, noise_variance=0.2, random_state=0,
    ...                              return_truth=True)
    >>> unl, lab = [x[:200] for x in X], [x[200:] for x in X]
    >>> y = truth.Z[200:, 0] + truth.Z[200:, 1]
    >>> model = HCL(st, random_state=0).fit(unl)
    >>> boot = bootstrap_scores(model, unl, lab, n_bootstrap=10, random_state=0)
    >>> res = sample_split_inference(boot.scores, y, st, first_stage=boot, random_state=0)
    >>> list(res.wald_table.columns)
    ['df', 'statistic', 'p_value', 'partial_r2']
    """
    Z, y = check_X_y(X, y, dtype=np.float64 if loss == "squared" else None,
                     y_numeric=loss == "squared")
    if not 0 < selection_size < 1:
        raise ValueError(f"selection_size must be in (0, 1), got {selection_size!r}")
    sel, inf = train_test_split(np.arange(len(y)), train_size=selection_size,
                                random_state=random_state,
                                stratify=y if loss == "logistic" else None)
    if selector is None:
        selector = StructuredGroupLasso(groups, loss=loss, random_state=random_state)
    draws = _check_first_stage(first_stage, Z)
    selector = clone(selector).fit(_selection_scores(selection_scores, Z)[sel], y[sel])
    selected = list(selector.selected_)
    inference = None
    if selected:
        inference = structure_inference(Z[inf], y[inf], groups, subsets=selected, loss=loss,
                                        conf_level=conf_level, cov_type=cov_type,
                                        first_stage=None if draws is None else draws[:, inf])
    return SampleSplitInference(selector, selected, inference, np.sort(sel), np.sort(inf))
