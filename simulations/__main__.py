"""Command line of the simulation studies: ``python -m simulations COMMAND [options]``.

Each command lives in its own module with a ``main(argv)`` function; this file only
dispatches, so studies can be added without touching the others.
"""

import importlib
import sys

COMMANDS = {
    "demo": ("simulations.demo", "small HCL vs baselines study: table, CSV and PNG"),
    "bench": ("simulations.bench", "fit time over covariance time on the reference design"),
    "run": ("simulations.runner", "run a named scenario (resumable, parallel)"),
    "figures": ("simulations.figures", "standard figures from a results file"),
    "compare": ("simulations.compare_methods", "HCL vs ConcatSVD, JIVE, AJIVE, SLIDE"),
    "downstream": ("simulations.downstream", "downstream prediction / selection study"),
    "selection": ("simulations.selection_study", "structure selection accuracy (M = 3..6)"),
    "identifiability": ("simulations.identifiability_study",
                        "rank conditions vs Jacobian rank vs multi-start fits"),
    "rates": ("simulations.rates", "log-log slope of the block error against n"),
    "baseline-selection": ("simulations.baseline_selection",
                           "JIVE / AJIVE rank and SLIDE structure selection rates"),
    "real-data": ("simulations.real_data",
                  "HCL() on real multi-view data: structure, probes, fit time vs PCA"),
    "bench-real": ("simulations.bench_real",
                   "HCL() fit time over PCA on real data, and where the time goes"),
    "bench-wide": ("simulations.bench_wide",
                   "HCL() fit time over PCA and X.T @ X on wide data (n << p), by stage"),
    "bench-gpu": ("simulations.bench_gpu", "CuPy against NumPy fit time (skips without a GPU)"),
    "likelihood": ("simulations.likelihood_study",
                   "least squares vs likelihood, isotropic vs diagonal noise (M = 3..5)"),
    "objective": ("simulations.objective_study",
                  "least squares vs likelihood objective: real-data probes, time, recovery"),
    "bench-scale": ("simulations.bench_scale",
                    "Dask fit of an on-disk array; time and memory of the many-features path"),
    "missing": ("simulations.missing_study",
                "missing modalities: recovery against complete data, complete cases and "
                "mean imputation; interval coverage; fit time"),
    "robustness": ("simulations.robustness",
                   "HCL() and its downstream API on real data, resamples and odd inputs"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m simulations COMMAND [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<11} {text}")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
