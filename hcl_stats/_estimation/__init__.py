"""The functional numerical core: noise rules, initialiser, solvers, reduced path, structure selection."""
