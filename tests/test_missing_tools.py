"""Missing values around the scores: the generator of missing modalities, the data-model
baselines' refusal, and the downstream tools on incomplete samples.

References: binomial error of the realised missing fractions, statsmodels' Logit of the
missingness indicator on an independently computed principal score, and the simulated
regression coefficients.
"""

import numpy as np
import pandas as pd
import pytest
from statsmodels.discrete.discrete_model import Logit
from statsmodels.tools import add_constant

from _estimators import true_model
from hcl_stats import HCL, Structure
from hcl_stats.baselines import AJIVE, JIVE, SLIDE
from hcl_stats.datasets import make_hierarchical, mask_modalities
from hcl_stats.downstream import (
    StructuredGroupLasso,
    bootstrap_scores,
    pseudo_inverse_scores,
    structure_inference,
)

STRUCTURE = Structure({(0, 1, 2): 1, (0, 1): 1, (1,): 1, (2,): 1})
WIDTHS = [6, 7, 8]


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(20000, WIDTHS, STRUCTURE, noise_variance=0.5, random_state=0,
                             return_truth=True)


def _missing_rows(block):
    """Rows of NaN, checking that every row is either all NaN or all observed."""
    nan = np.isnan(block)
    assert np.array_equal(nan.all(axis=1), nan.any(axis=1))
    return nan[:, 0]


def _band(p, n, k=4.0):
    return k * np.sqrt(p * (1 - p) / n)


# -- mask_modalities -------------------------------------------------------------------------
def test_mcar_masks_listed_modalities_independently(data):
    X, _ = data
    before = [x.copy() for x in X]
    Xm = mask_modalities(X, 0.3, modalities=[1, 2], random_state=0)
    for x, b in zip(X, before):
        np.testing.assert_array_equal(x, b)  # the input is not modified
    a, b, c = (_missing_rows(x) for x in Xm)
    n = len(a)
    assert not a.any()
    for miss in (b, c):
        assert abs(miss.mean() - 0.3) < _band(0.3, n)
    assert abs((b & c).mean() - 0.09) < _band(0.09, n)  # independent modalities
    np.testing.assert_array_equal(Xm[1][~b], X[1][~b])
    again = mask_modalities(X, 0.3, modalities=[1, 2], random_state=0)
    for x, y in zip(Xm, again):
        np.testing.assert_array_equal(x, y)


def test_mcar_on_every_modality_never_masks_a_whole_sample(data):
    X, _ = data
    Xm = mask_modalities(X, 0.4, random_state=1)
    missing = np.column_stack([_missing_rows(x) for x in Xm])
    assert not missing.all(axis=1).any()
    # the expected fraction is the one asked for, despite the samples given one back
    for m in range(3):
        assert abs(missing[:, m].mean() - 0.4) < _band(0.4, len(missing))
    with pytest.raises(ValueError, match="at most 0.6667"):
        mask_modalities(X, 0.7, random_state=1)


def test_mar_rises_with_the_drivers_principal_score(data):
    X, _ = data
    Xm = mask_modalities(X, 0.25, mechanism="mar", strength=1.5, random_state=2)
    assert not np.isnan(Xm[0]).any()  # the driver (first modality) is never masked
    centred = X[0] - X[0].mean(axis=0)
    score = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
    score /= score.std()
    for m in (1, 2):
        miss = _missing_rows(Xm[m])
        assert abs(miss.mean() - 0.25) < _band(0.25, len(miss))
        fit = Logit(miss.astype(float), add_constant(score)).fit(disp=0)
        slope, se = abs(fit.params[1]), fit.bse[1]  # the score's sign is arbitrary
        assert abs(slope - 1.5) < 4 * se


def test_mask_modalities_refuses_bad_arguments(data):
    X, _ = data
    X = [x[:50] for x in X]
    with pytest.raises(ValueError, match="needs a modality that is never masked"):
        mask_modalities(X, 0.2, mechanism="mar", modalities=[0, 1, 2])
    with pytest.raises(ValueError, match="mechanism must be"):
        mask_modalities(X, 0.2, mechanism="mnar")
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\)"):
        mask_modalities(X, 1.0)
    with pytest.raises(ValueError, match="modalities must be indices"):
        mask_modalities(X, 0.2, modalities=[3])
    with pytest.raises(TypeError, match="list or tuple"):
        mask_modalities(X[0], 0.2)
    bad = [X[0], X[1].copy(), X[2]]
    bad[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="modality 1 contains NaN"):
        mask_modalities(bad, 0.2)


# -- data-model baselines --------------------------------------------------------------------
@pytest.mark.parametrize("cls", [JIVE, AJIVE, SLIDE])
def test_data_models_refuse_missing_values_and_point_to_hcl(data, cls):
    X, _ = data
    X = [x[:200].copy() for x in X]
    st = Structure.joint_individual(1, [1, 1, 1])
    X[1][5] = np.nan
    X[1][9, 2] = np.nan
    with pytest.raises(ValueError, match=r"modality 1 contains NaN: 8 missing value\(s\) in "
                                         rf"2 sample\(s\).*{cls.__name__} fits complete data "
                                         "only.*HCL or ConcatSVD"):
        cls(st).fit(X)
    labels = [f"s{i}" for i in range(200)]
    frames = {f"m{m}": pd.DataFrame(x, index=labels) for m, x in enumerate(X)}
    frames["m1"] = frames["m1"].dropna().iloc[:150]  # 50 samples absent from m1
    with pytest.raises(ValueError, match="modality 'm1' contains NaN.*in 50 sample.*absent"):
        cls(st).fit(frames)
    # a model fitted on complete data scores incomplete samples
    model = cls(st).fit([x[200:700] for x in data[0]])
    Z, Z_std = model.transform(X, return_std=True)
    assert np.isfinite(Z).all() and np.isfinite(Z_std).all()


# -- downstream ------------------------------------------------------------------------------


def test_regression_on_scores_of_incomplete_samples_recovers_the_coefficients(data, rng):
    X, truth = data
    n = 6000
    X = mask_modalities([x[:n] for x in X], 0.4, modalities=[1, 2], random_state=4)
    beta = np.array([1.0, 0.0, -0.8, 0.0])  # the global and the {1} factors matter
    y = truth.Z[:n] @ beta + 0.5 * rng.standard_normal(n)
    # E[y | x_o] = beta^T E[z | x_o] for every pattern o: posterior means are the regressors
    Z = true_model(truth).transform(X)
    res = structure_inference(Z, y, STRUCTURE, cov_type="HC3")
    coef = res.coef_table["coef"].to_numpy()[1:]
    se = res.coef_table["std_err"].to_numpy()[1:]
    assert np.all(np.abs(coef - beta) < 4 * se)
    sgl = StructuredGroupLasso(STRUCTURE).fit(Z, y)
    assert {(0, 1, 2), (1,)} <= set(sgl.selected_)


def test_bootstrap_scores_of_incomplete_samples(data):
    X, _ = data
    fit_part = [x[:300] for x in X]
    lab = mask_modalities([x[300:360] for x in X], 0.5, modalities=[1, 2], random_state=0)
    lab[0][3, 1] = np.nan
    model = HCL(STRUCTURE).fit(fit_part)
    boot = bootstrap_scores(model, fit_part, lab, n_bootstrap=3, random_state=0)
    assert boot.draws.shape == (3, 60, 4)
    assert np.isfinite(boot.draws).all()
    np.testing.assert_array_equal(boot.scores, model.transform(lab))
    # a first stage whose model does not fit incomplete data says so
    jive = JIVE(Structure.joint_individual(1, [1, 1, 1])).fit(fit_part)
    holey = [x.copy() for x in fit_part]
    holey[2][7] = np.nan
    with pytest.raises(ValueError, match="modality 2 contains NaN.*JIVE fits complete"):
        bootstrap_scores(jive, holey, lab, n_bootstrap=2)


def test_pseudo_inverse_scores_refuse_missing_values(data):
    X, _ = data
    model = HCL(STRUCTURE).fit([x[:300] for x in X])
    T = [x[300:320].copy() for x in X]
    T[2][4, 0] = np.nan
    with pytest.raises(ValueError, match=r"modality 2 contains NaN: 1 missing value\(s\) in "
                                         r"1 sample.*model\.transform"):
        pseudo_inverse_scores(model, T)
