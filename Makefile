# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install install-bench demo test lint typecheck pytest bench docs clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

install-bench: $(VENV)/.installed-bench

demo: install
	$(PY) -m uvicorn examples.demo:app --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check fastapi_streamkit tests benchmarks examples docs/examples
	$(BIN)/ruff format --check fastapi_streamkit

typecheck: install
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is not a failure of the build.
pytest: install
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

test: lint typecheck docs pytest

bench: install-bench
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache site
