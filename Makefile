# Every target creates .venv and installs what it needs, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout 300

.PHONY: demo test lint notebooks lab bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(LAB_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,lab]'
	touch $(LAB_STAMP)

demo: $(STAMP)
	$(BIN)/scriptgen demo

# The unit and integration tests, then the tutorial notebooks under nbval (outputs compared).
test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL) notebooks

lint: $(STAMP)
	$(BIN)/ruff format --check scriptgen_nb tests
	$(BIN)/ruff check scriptgen_nb tests
	$(BIN)/mypy

# Re-execute the tutorials in place (their outputs are the reference nbval compares against).
notebooks: $(LAB_STAMP)
	cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 \
		--ExecutePreprocessor.store_widget_state=False *.ipynb
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL) notebooks

lab: $(LAB_STAMP)
	$(BIN)/jupyter lab notebooks/01_quickstart.ipynb

# The benchmark suite against the emulator (about 11 minutes, not part of `make test`); rewrites
# bench/results.json, bench/results.png and bench/BENCHMARKS.md. `python -m bench.run --quick`
# (or `--only 1,5`) tries it out without touching the recorded results.
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
