# The two commands in the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck layers bench chaos clean browser-deps

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_app.demo

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q

# Debian's Chromium for the dashboard's browser tests: Playwright (a dev dependency) drives it and
# never downloads a browser of its own. Under CI=true the browser tests fail rather than skip without it.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# ruff, mypy --strict and import-linter (the layering contract in pyproject.toml), as .ci/run runs them.
check: lint typecheck layers

lint: $(STAMP)
	$(BIN)/ruff format --check jobkit
	$(BIN)/ruff check jobkit tests example_app $(wildcard benchmarks)

typecheck: $(STAMP)
	$(BIN)/mypy --strict jobkit

layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
