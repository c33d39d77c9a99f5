# One entry point for set-up, checks and benchmarks. Every target creates the
# virtualenv in .venv on first use, so a fresh clone needs nothing but python3.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint fmt typecheck bench check clean

$(PY):
	$(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check engine tests bench
	$(PY) -m ruff format --check engine tests bench
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format engine tests bench
	$(PY) -m ruff check --fix engine tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

$(VENV)/.bench-installed: pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) bench/engine_bench.py

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
