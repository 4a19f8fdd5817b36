# bia-binder: `make run` starts the service, `make test` runs the suite. Both install first (idempotent).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
IP ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
PYTEST_ARGS ?=
# One package cache for installs, tests and the service's builds. In the checkout rather than
# under root's private home: sandboxed builds run as an unprivileged uid and must reach it.
export UV_CACHE_DIR ?= $(CURDIR)/.cache/uv

.PHONY: install system-deps omero-wheels run test test-fast bench clean locks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

# Python packages, editable, with the test and data extras; re-run when pyproject changes.
$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python -e '.[data,test]'
	touch $@

# The proxy (and BinderHub's JS client for the compatibility test), into ./node_modules.
node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# System packages the sandbox, the browser tests and rclone need: installed where we can
# (root on a Debian-like host); elsewhere `scripts/system-deps.sh` says what to install.
system-deps:
	@bash scripts/system-deps.sh

# zeroc-ice for OMERO: PyPI has no Python 3.11 wheel, so it is built once (2.5 minutes on two
# cores) into .wheels, where the builder finds it (scripts/build-omero-wheels.sh). `install` goes on
# without it (a host without a compiler still runs everything else; the default portal environment
# then says to run `make omero-wheels`).
omero-wheels: $(VENV)/.installed
	@bash scripts/build-omero-wheels.sh

install: system-deps $(VENV)/.installed node_modules/.installed
	@bash scripts/build-omero-wheels.sh || echo "warning: OMERO's zeroc-ice wheel was not built; the default portal environment needs it (make omero-wheels)" >&2

run: install
	PATH=$(CURDIR)/node_modules/.bin:$$PATH $(BIN)/bia-binder up --ip $(IP) --port $(PORT) $(ARGS)

test: install
	PATH=$(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest $(PYTEST_ARGS)

# Quick loop while developing: everything but the end-to-end tests.
test-fast: install
	PATH=$(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

bench: install
	PATH=$(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) node_modules

# Pin the portal environments (src/bia_binder/environments/*/requirements.in → requirements.txt).
locks: $(VENV)/.installed
	bash scripts/lock-environments.sh
