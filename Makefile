# Goodman Live: `make demo` runs the system on this machine, `make test` tests it.
# Both set themselves up: a .venv from the pinned requirements, and Debian's
# chromium for the browser tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test venv chromium replay-real bench clean

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# The browser tests drive Debian's chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; }

demo: $(STAMP)
	$(PY) -m infra.local demo

test: $(STAMP) chromium
	$(PY) -m pytest

# Replay the real calibration afternoon (needs ../shared).
replay-real: $(STAMP)
	$(PY) -m infra.local replay ../shared/data/real/jsreding_930_20180203 --out out/jsreding_930_20180203

bench: $(STAMP)
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/ccd.py

clean:
	rm -rf $(VENV) static_site/build .demo out .pytest_cache .hypothesis
