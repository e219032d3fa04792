"""Tests of the statsmodels-style summary of fitted block factor models."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from hcl_stats import HCL, Structure
from hcl_stats._models.summary import Summary, format_value
from hcl_stats.baselines import ConcatSVD
from hcl_stats.datasets import make_hierarchical

STRUCTURE = Structure({(0, 1, 2): 2, (0, 1): 1, (1, 2): 1, (2,): 1})
WIDTHS = [8, 10, 12]


@pytest.fixture(scope="module")
def data():
    return make_hierarchical(400, WIDTHS, STRUCTURE, noise_variance=0.4, random_state=7)


@pytest.fixture(scope="module")
def fitted(data):
    return HCL(STRUCTURE, random_state=0).fit(data)


def test_summary_numbers_equal_fitted_attributes(fitted):
    s = fitted.summary()
    info = s.info_dict()
    assert info["Model"] == "HCL"
    assert info["Objective"] == fitted.objective_
    assert info["Iterations"] == fitted.n_iter_
    assert info["Converged"] == fitted.converged_
    assert info["Relative gradient norm"] == fitted.gradient_norm_
    assert info["No. samples"] == 400
    assert info["Features per modality"] == tuple(WIDTHS)
    assert info["Total rank K"] == STRUCTURE.n_components
    structure = s.tables["structure"]
    assert list(structure["rank"]) == STRUCTURE.ranks
    assert list(structure.index) == [STRUCTURE.label(b) for b in STRUCTURE.subsets]
    modalities = s.tables["modalities"]
    np.testing.assert_array_equal(modalities["noise_variance"], fitted.noise_variance_)
    np.testing.assert_array_equal(modalities["total_variance"], fitted.total_variance_)
    assert list(modalities["rank"]) == [STRUCTURE.modality_rank(m) for m in range(3)]
    pd.testing.assert_frame_equal(s.tables["explained_variance"],
                                  fitted.explained_variance())
    pd.testing.assert_frame_equal(s.tables["explained_variance_fraction"],
                                  fitted.explained_variance(fraction=True))


def test_explained_variance_entries_from_loadings(fitted, data):
    """Each column against a quantity computed without the table: the data's variance, the
    loadings' blocks and the model covariance."""
    table = fitted.summary().tables["explained_variance"]
    offsets = np.cumsum([0] + WIDTHS)
    model_cov = fitted.get_covariance()
    for m in range(3):
        rows = slice(offsets[m], offsets[m + 1])
        for b in STRUCTURE.subsets:
            expected = np.sum(fitted.loadings_[rows, STRUCTURE.columns(b)] ** 2)
            assert table.loc[str(m), STRUCTURE.label(b)] == pytest.approx(expected, abs=1e-12)
        noise = WIDTHS[m] * fitted.noise_variance_[m]
        assert table.loc[str(m), "noise"] == pytest.approx(noise)
        # total: the trace of the modality's sample covariance, from the data with numpy
        assert table.loc[str(m), "total"] == pytest.approx(np.var(data[m], axis=0,
                                                                  ddof=1).sum())
        # signal: trace(B_m B_m^T) = trace of the model covariance's block minus its noise
        signal = table.loc[str(m), [STRUCTURE.label(b) for b in STRUCTURE.subsets]].sum()
        assert signal == pytest.approx(np.trace(model_cov[rows, rows]) - noise)
        # what the model leaves unexplained, against the same independent total
        assert table.loc[str(m), "residual"] == pytest.approx(
            np.var(data[m], axis=0, ddof=1).sum() - np.trace(model_cov[rows, rows]))


def test_text_rendering_shows_the_numbers(fitted):
    text = str(fitted.summary())
    assert text == fitted.summary().as_text() == repr(fitted.summary())
    assert text.splitlines()[0].strip() == "HCL results"
    for needle in ("Objective:", "Converged:", "explained_variance", "noise_variance"):
        assert needle in text
    assert format_value(fitted.objective_) in text
    assert "Iterations:" in text and re.search(rf"Iterations:\s+{fitted.n_iter_}\b", text)
    for b in STRUCTURE.subsets:
        assert STRUCTURE.label(b) in text
    ev = fitted.explained_variance()
    assert f"{ev.loc['2', '{2}']:.6g}" in text
    assert f"{fitted.noise_variance_[0]:.6g}" in text


def test_html_rendering(fitted):
    s = fitted.summary()
    html = s.as_html()
    assert html == s._repr_html_()
    assert html.count("<table") == 1 + len(s.tables)
    assert "<h4>HCL results</h4>" in html
    assert format_value(fitted.objective_) in html
    assert f"{fitted.explained_variance().loc['0', '{0,1,2}']:.6g}" in html
    assert "{0,1}" in html


def test_summary_for_baseline_and_named_modalities():
    X = make_hierarchical(300, WIDTHS, STRUCTURE, noise_variance=0.4, random_state=1)
    named = dict(zip(("a", "b", "c"), X))
    model = ConcatSVD(STRUCTURE).fit(named)
    s = model.summary()
    info = s.info_dict()
    assert info["Model"] == "ConcatSVD" and "Objective" not in info
    assert list(s.tables["modalities"].index) == ["a", "b", "c"]
    assert "{a,b,c}" in str(s) and "{a,b,c}" in s.as_html()


def test_summary_requires_fit():
    with pytest.raises(NotFittedError):
        HCL(STRUCTURE).summary()


def test_summary_object_layout():
    table = pd.DataFrame({"x": [1.5, 2.0]}, index=["r1", "r2"])
    s = Summary("Title", [("flag", True), ("count", 3), ("value", 0.125), ("name", "z")],
                {"t": table}, notes=["a note"])
    text = s.as_text()
    assert "flag:" in text and "yes" in text and "0.125" in text and "a note" in text
    assert s.info_dict()["count"] == 3
    assert "<th>value</th><td>0.125</td>" in s.as_html()
