"""
A recovery study: resumable grids of simulations
================================================

``python -m simulations run SCENARIO`` runs a named design over a grid of sample sizes and
replications, in parallel, appending tidy rows to a results file and skipping whatever is
already there. This vignette runs the reduced authors' design from Python, then draws the
standard figures from the results file alone.

Set ``HCL_VIGNETTE_SMALL=1`` for the small configuration the test suite runs.
"""

# %%
# The scenario
# ------------
# Scenarios are TOML files in ``simulations/scenarios``. ``authors_recovery_c6`` is the
# paper's design (p = (100, 500, 800), rank 3 for each of the 7 structures, noise 6,
# 13 sample sizes x 100 replications); the reduced one keeps its shape at a small size.
import os
import sys  # noqa: E402
import tempfile
from pathlib import Path
from pathlib import Path as _Path  # noqa: E402

# the study drivers live in the checkout, next to vignettes/ (not an installed package)
sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))
from simulations import figures, runner

SMALL = os.environ.get("HCL_VIGNETTE_SMALL") == "1"
scenario = runner.load_scenario("authors_recovery_reduced")
print(scenario["description"])
print(scenario["structure"])

# %%
# Run it (twice)
# --------------
# Seeds come from (scenario, n, replication), so a task gives the same data on any
# machine and in any order. Covariance-only methods get a sample covariance drawn from its
# Wishart distribution (``wishart = true``): no n x d data are generated.
out = Path(os.environ.get("HCL_VIGNETTE_OUT") or tempfile.mkdtemp())
reps = 2 if SMALL else scenario["replications"]
path = runner.run_scenario(scenario, out=out, replications=reps, progress=not SMALL)
rows = len(runner.read_results(path))
path = runner.run_scenario(scenario, out=out, replications=reps, progress=False)
print(f"{rows} rows; after re-running: {len(runner.read_results(path))} rows (nothing redone)")

# %%
# Summaries and figures
# ---------------------
print(runner.summarise(path)[["sin_theta", "gram_error", "fit_seconds"]].round(3))
table = runner.read_results(path)
for name, make in (("recovery", figures.recovery_figure), ("heatmap", figures.heatmap_figure)):
    fig = make(table, "sin_theta")
    fig.savefig(out / f"{name}.png", dpi=80)
print("figures in", out)
