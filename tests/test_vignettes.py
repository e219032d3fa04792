"""The vignettes run in their small configuration, and what they print agrees with
quantities computed here independently (scipy principal angles, a Jacobian rank)."""

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from hcl_stats._structure import row_slices

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = sorted((ROOT / "vignettes").glob("*.py"))


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_runs(path, tmp_path):
    env = dict(os.environ, HCL_VIGNETTE_SMALL="1", HCL_VIGNETTE_OUT=str(tmp_path),
               MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()  # narrated output


def _run(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HCL_VIGNETTE_SMALL", "1")
    monkeypatch.setenv("HCL_VIGNETTE_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(ROOT))
    g = runpy.run_path(str(ROOT / "vignettes" / f"{name}.py"), run_name="__main__")
    return g, capsys.readouterr().out


def test_quickstart_recovery_matches_principal_angles(tmp_path, monkeypatch, capsys):
    """The sin-theta table the quickstart prints is the sine of the largest principal
    angle (scipy) between each true and fitted block, and the fit recovers the design."""
    g, out = _run("quickstart", tmp_path, monkeypatch, capsys)
    model, truth, table = g["model"], g["truth"], g["table"]
    rows = row_slices(truth.n_features)
    sin = table[table.metric == "sin_theta"]
    assert len(sin) == sum(len(s) for s in truth.structure.subsets)
    for subset in truth.structure.subsets:
        cols = truth.structure.columns(subset)
        for m in subset:
            theta = scipy.linalg.subspace_angles(truth.W[rows[m], cols],
                                                 model.loadings_[rows[m], cols])
            value = sin[(sin.modality == truth.structure.modality_label(m))
                        & (sin.structure == truth.structure.label(subset))].value
            assert float(value.iloc[0]) == pytest.approx(np.sin(theta.max()), abs=1e-8)
            assert np.sin(theta.max()) < 0.5  # n = 500, clear signal: a close subspace
    # the simulated noise variance is 0.5 in every modality
    np.testing.assert_allclose(model.noise_variance_, 0.5, rtol=0.1)


def _jacobian_rank_deficit(structure, widths, rng):
    """Rank of d(W W^T)/dW at a random masked W, minus the dimension of the rotations,
    compared with the number of free entries (0 when locally identifiable)."""
    mask = structure.mask(widths)
    W = np.where(mask, rng.standard_normal(mask.shape), 0.0)
    d = W.shape[0]
    columns = []
    for i, k in zip(*np.nonzero(mask)):
        E = np.zeros_like(W)
        E[i, k] = 1.0
        dS = E @ W.T + W @ E.T
        columns.append(dS[np.triu_indices(d)])
    rank = np.linalg.matrix_rank(np.column_stack(columns))
    rotations = sum(r * (r - 1) // 2 for r in structure.ranks)
    full_rank = np.linalg.matrix_rank(W) == structure.n_components
    return len(columns) - rotations - rank, full_rank


def test_identifiability_vignette_verdicts_match_the_jacobian(tmp_path, monkeypatch, capsys,
                                                              rng):
    g, out = _run("identifiability", tmp_path, monkeypatch, capsys)
    for label, (structure, widths) in g["designs"].items():
        deficit, full_rank = _jacobian_rank_deficit(structure, widths, rng)
        identifiable = deficit == 0 and full_rank
        block = out.split(f"{label}:\n", 1)[1]
        jacobian_line = re.search(r"Jacobian:\s+(.*)", block).group(1)
        assert jacobian_line.startswith("identifiable" if identifiable else "NOT identifiable")
    # the three designs are chosen to show both verdicts
    verdicts = re.findall(r"Jacobian:\s+(NOT )?identifiable", out)
    assert "NOT " in verdicts and "" in verdicts
