"""hcl_stats.plotting draws what the model holds (Agg backend; the drawn arrays and labels
are compared with the model's tables and structure)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hcl_stats import HCL, Structure  # noqa: E402
from hcl_stats.datasets import make_hierarchical  # noqa: E402
from hcl_stats.plotting import (  # noqa: E402
    plot_block_loadings,
    plot_structure,
    plot_variance_explained,
)

TRUTH = Structure({(0, 1, 2): 2, (0, 1): 1, (2,): 1}, modalities=("a", "b", "c"))


@pytest.fixture(scope="module")
def model():
    X = make_hierarchical(400, [8, 10, 12], TRUTH, noise_variance=0.2, singular_values=(1, 2),
                          random_state=0)
    return HCL(TRUTH).fit(dict(zip(("a", "b", "c"), X)))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_variance_heatmap_shows_the_table(model):
    ax = plot_variance_explained(model)
    table = model.explained_variance(fraction=True)
    drawn = np.asarray(ax.images[0].get_array())
    np.testing.assert_array_equal(drawn, table[[TRUTH.label(s) for s in TRUTH.subsets]])
    assert [t.get_text() for t in ax.get_xticklabels()] == [TRUTH.label(s) for s in TRUTH.subsets]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    # modality c is outside {a,b}: that cell is an exact zero and carries no text
    texts = {(round(t.get_position()[0]), round(t.get_position()[1])) for t in ax.texts}
    assert (1, 2) not in texts and (0, 2) in texts


def test_variance_heatmap_all_columns_in_data_units(model):
    ax = plot_variance_explained(model, fraction=False, columns="all", annotate=False)
    table = model.explained_variance()
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()),
                                  table.drop(columns="total"))
    assert not ax.texts
    with pytest.raises(ValueError, match="columns"):
        plot_variance_explained(model, columns="some")


def test_structure_diagram_labels_and_ranks(model):
    ax = plot_structure(model)
    order = sorted(TRUTH.blocks, key=lambda b: (-len(b[0]), b[0]))
    assert [t.get_text() for t in ax.get_yticklabels()] == [TRUTH.label(s) for s, _ in order]
    assert [t.get_text() for t in ax.texts] == [f"r = {r}" for _, r in order]
    # one cell per (subset, modality); the member cells are the filled ones
    filled = [p for p in ax.patches if p.get_fill() and p.get_facecolor()[3] > 0]
    assert len(ax.patches) == len(order) * 3
    assert len(filled) == sum(len(s) for s, _ in order)


def test_structure_diagram_with_stability_frequencies():
    table = pd.DataFrame({"subset": ["{a,b,c}", "{a,b}", "{c}", "{b,c}"],
                          "frequency": [1.0, 0.6, 0.9, 0.1]})
    ax = plot_structure(TRUTH, stability=table)
    freq = [t.get_text() for t in ax.texts if t.get_text().startswith("f =")]
    assert freq == ["f = 1.00", "f = 0.60", "f = 0.90"]  # the diagram's subsets, in order
    alphas = [p.get_alpha() for p in ax.patches[::3]]
    assert alphas[0] > alphas[2] > alphas[1]


def test_block_loadings_blank_outside_the_structure(model):
    fig = plot_block_loadings(model)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    for m, ax in enumerate(panels):
        shown = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        rows = slice(*np.concatenate([[0], np.cumsum([8, 10, 12])])[m:m + 2])
        W = model.loadings_[rows]
        inside = np.concatenate([np.full(r, m in s) for s, r in TRUTH.blocks])
        np.testing.assert_array_equal(shown[:, inside], W[:, inside])
        assert np.isnan(shown[:, ~inside]).all()
    one = plot_block_loadings(model, modalities=["c"])
    assert len([ax for ax in one.axes if ax.images]) == 1
