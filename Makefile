# The two commands in the README: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The Django suite (tests/django) needs Django 6, hence Python >= 3.12: the first python3.12 or 3.13 on
# PATH, else pyenv's. It runs once per supported Django minor, each in an environment of its own.
DJANGO_PYTHON ?= $(shell for p in python3.12 python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[23]*/bin/python 2>/dev/null); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
DJANGO_VERSIONS := 6.0 6.1
DJANGO_STAMPS := $(foreach v,$(DJANGO_VERSIONS),.venv-django$(v)/.installed)

.PHONY: demo test test-django check lint typecheck layers bench chaos clean browser-deps

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_app.demo

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q
	$(MAKE) test-django

.venv-django%/.installed: pyproject.toml
	@test -n "$(DJANGO_PYTHON)" || { echo "the Django suite needs Python >= 3.12 (python3.12, python3.13 or pyenv's); none found" >&2; exit 1; }
	test -d .venv-django$* || $(DJANGO_PYTHON) -m venv .venv-django$*
	.venv-django$*/bin/python -m pip install --quiet --upgrade pip
	.venv-django$*/bin/python -m pip install --quiet -e ".[dev,postgres,django]" "django==$*.*"
	touch $@

# The Django conformance suite, on every supported Django minor (never skipped: a missing Python fails).
test-django: $(DJANGO_STAMPS)
	for v in $(DJANGO_VERSIONS); do .venv-django$$v/bin/python -m pytest -q -p no:cacheprovider tests/django || exit 1; done

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
	rm -rf $(VENV) .venv-django* .pytest_cache .mypy_cache .ruff_cache
