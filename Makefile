# Every target creates .venv and installs what it needs, so a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
BROWSER_STAMP := $(VENV)/.installed-browser
CHROMIUM ?= /usr/bin/chromium
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout 300

.PHONY: demo test test-browser screenshot chromium redis-server lint notebooks lab bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(LAB_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,lab]'
	touch $(LAB_STAMP)

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,browser]'
	touch $(BROWSER_STAMP)

# Debian's chromium when it is missing and we can install it (root, apt-get); playwright drives it
# through its path, so no browser is downloaded. Where it cannot be installed the test skips.
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
				|| echo "chromium could not be installed: the browser test will skip"; \
		else \
			echo "no $(CHROMIUM) and no way to install it (needs root and apt-get): the browser test will skip"; \
		fi; \
	fi

# Debian's redis-server when it is missing and we can install it (root, apt-get): the Redis quota
# ledger's tests start one of their own on a free port. Where it cannot be installed they skip.
redis-server:
	@if ! command -v redis-server >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
				|| echo "redis-server could not be installed: the Redis ledger tests will skip"; \
		else \
			echo "no redis-server and no way to install it (needs root and apt-get): the Redis ledger tests will skip"; \
		fi; \
	fi

demo: $(STAMP)
	$(BIN)/scriptgen demo

# The unit and integration tests, then the tutorial notebooks under nbval (outputs compared).
# tests/browser is not collected here (pyproject's norecursedirs): `make test-browser` runs it.
# The Redis quota ledger's tests run on a real redis-server (installed first when it can be).
test: $(STAMP) redis-server
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL) notebooks

# The progress panel in a real browser: JupyterLab and headless Chromium run the quickstart and a
# notebook whose batch is cancelled from the panel (tests/browser; under a minute).
test-browser: $(BROWSER_STAMP) chromium
	SCRIPTGEN_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -rs -p no:cacheprovider tests/browser

# Retake docs/img/panel.png (the README's picture) with the browser test.
screenshot: $(BROWSER_STAMP) chromium
	SCRIPTGEN_CHROMIUM=$(CHROMIUM) SCRIPTGEN_UPDATE_SCREENSHOT=1 \
		$(BIN)/python -m pytest -q -rs -p no:cacheprovider tests/browser -k quickstart

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

# The benchmark suite against the emulator (about 22 minutes, not part of `make test`); rewrites
# bench/results.json, bench/results.png and bench/BENCHMARKS.md. `python -m bench.run --quick`
# (or `--only 1,5`) tries it out without touching the recorded results.
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
