# make demo  - create .venv if missing, install fakescope, scan the example images with the shipped detector
# make test  - the same set-up with the [dev] extra, then the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fakescope-installed

.PHONY: demo test install bench lint clean screenshot

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/fakescope scan examples/images --format json --output demo-out/results.json

test: install
	$(PY) -m pytest -q

bench: install
	cd bench && $(abspath $(PY)) default_detector.py

# docs/report-screenshot.png: the report of the example scan, rendered by a headless Chromium (Debian: apt install chromium)
CHROMIUM ?= chromium
screenshot: install
	$(VENV)/bin/fakescope scan examples/images --report demo-out/report.html
	$(CHROMIUM) --headless --no-sandbox --hide-scrollbars --screenshot=docs/report-screenshot.png \
		--window-size=1200,1500 file://$(abspath demo-out/report.html)

lint: install
	$(PY) -m ruff check src tests bench

clean:
	rm -rf demo-out .pytest_cache
