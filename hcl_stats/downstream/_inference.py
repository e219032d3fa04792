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
scores of structure ``S`` is the same as ``y`` not depending on the factors ``z_S``.
Uncertainty in the fitted factor model itself (fitted on unlabelled or the same data) is not
propagated; it is small when the factor model was fitted on many more samples than are
labelled.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_X_y

from hcl_stats.downstream._groups import resolve_groups

__all__ = ["StructureInference", "structure_inference", "sample_split_inference",
           "SampleSplitInference"]


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
    """

    def __init__(self, result, coef_table, wald_table, structures, loss, n_samples):
        self.result = result
        self.coef_table = coef_table
        self.wald_table = wald_table
        self.structures = structures
        self.loss = loss
        self.n_samples = n_samples

    def summary(self):
        """A :class:`hcl_stats._summary.Summary` of the coefficient and Wald tables."""
        from hcl_stats._summary import Summary

        info = [("Model", "OLS" if self.loss == "squared" else "Logit"),
                ("No. samples", int(self.n_samples)),
                ("No. structures", len(self.structures))]
        if self.loss == "squared":
            info.append(("R-squared", float(self.result.rsquared)))
        else:
            info.append(("Pseudo R-squared", float(self.result.prsquared)))
        return Summary("Structure inference", info,
                       {"coefficients": self.coef_table, "structures": self.wald_table},
                       notes=["p-values are valid only if the structures were not chosen on "
                              "these samples (see sample_split_inference)."])


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
        from statsmodels.regression.linear_model import OLS

        return OLS(endog, exog).fit(cov_type=cov_type)
    from statsmodels.discrete.discrete_model import Logit

    return Logit(endog, exog).fit(disp=0, cov_type=cov_type, maxiter=200)


def structure_inference(X, y, groups, *, subsets=None, loss="squared", conf_level=0.95,
                        cov_type="nonrobust"):
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
    import pandas as pd

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
    keys, labels, index = resolve_groups(groups, Z.shape[1])
    if subsets is None:
        chosen = list(range(len(keys)))
    else:
        chosen = []
        for s in subsets:
            g = _find_group(groups, keys, s)
            if g not in chosen:
                chosen.append(g)
        chosen.sort()
    exog, names = _design(Z, index, chosen)
    if exog.shape[1] >= len(y):
        raise ValueError(f"{exog.shape[1]} coefficients but only {len(y)} samples")
    res = _fit(y, exog, loss, cov_type)
    params = np.asarray(res.params)
    bse = np.asarray(res.bse)
    ci = np.asarray(res.conf_int(alpha=1 - conf_level))
    stat = np.asarray(res.tvalues)
    pvals = np.asarray(res.pvalues)
    row_index = pd.MultiIndex.from_tuples(
        [("const", 0)] + [(labels[g], j) for g, j in names[1:]],
        names=["structure", "component"])
    coef_table = pd.DataFrame({"coef": params, "std_err": bse, "statistic": stat,
                               "p_value": pvals, "ci_low": ci[:, 0], "ci_high": ci[:, 1]},
                              index=row_index)
    rows = []
    pos = 1
    for g in chosen:
        r = len(index[g])
        R = np.zeros((r, exog.shape[1]))
        R[np.arange(r), pos + np.arange(r)] = 1.0
        wald = res.wald_test(R, use_f=(loss == "squared"), scalar=True)
        keep = np.ones(exog.shape[1], dtype=bool)
        keep[pos:pos + r] = False
        reduced = _fit(y, exog[:, keep], loss, "nonrobust")
        if loss == "squared":
            partial = (reduced.ssr - res.ssr) / reduced.ssr if reduced.ssr > 0 else 0.0
        else:
            partial = 1.0 - res.llf / reduced.llf if reduced.llf < 0 else 0.0
        rows.append({"structure": labels[g], "df": r, "statistic": float(wald.statistic),
                     "p_value": float(wald.pvalue), "partial_r2": float(partial)})
        pos += r
    wald_table = pd.DataFrame(rows, columns=["structure", "df", "statistic", "p_value",
                                             "partial_r2"]).set_index("structure")
    return StructureInference(res, coef_table, wald_table, [keys[g] for g in chosen], loss,
                              len(y))


def _find_group(groups, keys, s):
    from hcl_stats._structure import Structure

    if isinstance(groups, Structure):
        try:
            return keys.index(groups.resolve(s))
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    if s in keys:
        return keys.index(s)
    raise ValueError(f"{s!r} is not one of the groups {keys!r}")


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

    def __init__(self, selector, selected, inference, selection_index, inference_index):
        self.selector = selector
        self.selected = selected
        self.inference = inference
        self.selection_index = selection_index
        self.inference_index = inference_index

    @property
    def wald_table(self):
        """The Wald table of the inference part (empty when nothing was selected)."""
        import pandas as pd

        if self.inference is None:
            return pd.DataFrame(columns=["df", "statistic", "p_value", "partial_r2"])
        return self.inference.wald_table


def sample_split_inference(X, y, groups, *, selector=None, loss="squared",
                           selection_size=0.5, conf_level=0.95, cov_type="nonrobust",
                           random_state=None):
    """Select structures on one part of the samples, test them on the other.

    Valid post-selection inference by sample splitting (Cox 1975; Wasserman and Roeder
    2009): the inference part is independent of the selection, so the Wald tests, p-values
    and confidence intervals of :func:`structure_inference` on it have their nominal
    properties for the selected structures, including the falsely selected ones.

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

    Returns
    -------
    SampleSplitInference
    """
    from hcl_stats.downstream._group_lasso import StructuredGroupLasso

    Z, y = check_X_y(X, y, dtype=np.float64 if loss == "squared" else None,
                     y_numeric=loss == "squared")
    if not 0 < selection_size < 1:
        raise ValueError(f"selection_size must be in (0, 1), got {selection_size!r}")
    rows = np.arange(len(y))
    sel, inf = train_test_split(rows, train_size=selection_size, random_state=random_state,
                                stratify=y if loss == "logistic" else None)
    if selector is None:
        selector = StructuredGroupLasso(groups, loss=loss, random_state=random_state)
    selector = clone(selector).fit(Z[sel], y[sel])
    selected = list(selector.selected_)
    inference = None
    if selected:
        inference = structure_inference(Z[inf], y[inf], groups, subsets=selected, loss=loss,
                                        conf_level=conf_level, cov_type=cov_type)
    return SampleSplitInference(selector, selected, inference, np.sort(sel), np.sort(inf))
