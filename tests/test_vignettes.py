"""Every vignette runs, in its small configuration, in well under a minute."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = sorted((ROOT / "vignettes").glob("*.py"))


def test_the_four_vignettes_exist():
    names = {p.stem for p in VIGNETTES}
    assert {"quickstart", "recovery_study", "identifiability", "comparing_methods"} <= names


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_runs(path, tmp_path):
    env = dict(os.environ, HCL_VIGNETTE_SMALL="1", HCL_VIGNETTE_OUT=str(tmp_path),
               MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()  # narrated output
    assert "# %%" in path.read_text()
    assert seconds < 60
