"""The digits vignette runs, quickly, and its probe table is reproducible."""

import runpy
import time
from pathlib import Path

import numpy as np
import pandas as pd

VIGNETTE = Path(__file__).resolve().parents[1] / "vignettes" / "digits.py"


def test_digits_vignette(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HCL_VIGNETTE_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("HCL_VIGNETTE_SMALL", "1")  # 3 probe folds instead of 5
    start = time.perf_counter()
    g = runpy.run_path(str(VIGNETTE), run_name="__main__")
    elapsed = time.perf_counter() - start
    assert elapsed < 60
    capsys.readouterr()

    figure = tmp_path / "digits_block_loadings.png"
    assert figure.exists() and figure.stat().st_size > 10_000

    # explained variance per quadrant adds up to the quadrant's variance
    fractions = g["fractions"]
    np.testing.assert_allclose(fractions.drop(columns="total").sum(axis=1), 1.0)
    assert list(fractions.index) == ["TL", "TR", "BL", "BR"]
    assert g["model"].structure_.n_components == 15

    probes = g["probes"]
    assert probes.loc["HCL", "dimension"] == probes.loc["ConcatSVD", "dimension"] == 15
    assert probes.loc["raw pixels", "dimension"] == 64
    # ten balanced classes: chance is 0.1; 15 linear features of digits carry far more
    assert probes.loc["HCL", "accuracy"] > 0.85
    assert probes.loc["raw pixels", "accuracy"] > 0.9

    # same seeds, same table, to the last digit
    again = g["probe_accuracies"](g["X"], g["labels"], g["structure"])
    pd.testing.assert_frame_equal(probes, again, check_exact=True)
