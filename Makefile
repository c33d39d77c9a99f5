# One entry point for set-up, checks, benchmarks and running. Every target creates the
# virtualenv in .venv on first use, so a fresh clone needs nothing but python3.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SRC    := engine service examples clients/python tests bench scripts
ADDRESS ?= 127.0.0.1:50051

.PHONY: install run proto check-proto proto-lint proto-breaking test test-node lint fmt typecheck bench demo check clean

$(PY):
	$(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml clients/python/pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]' -e clients/python
	touch $(STAMP)

install: $(STAMP)

# Serve the example workflows (options: make run ARGS="--port 50052").
run: $(STAMP) proto
	$(PY) -m service $(ARGS)

# Regenerate every language's stubs from protos/.
proto: $(STAMP)
	$(PY) scripts/gen_protos.py

# Fails when the committed stubs differ from what protos/ generates (new files included).
check-proto: proto
	@test -z "$$(git status --porcelain -- service/_pb clients/python/workflow_client/_pb)" || \
	  { git status --porcelain -- service/_pb clients/python/workflow_client/_pb; \
	    echo "generated stubs are out of date: run 'make proto' and commit"; exit 1; }

BUF := tools/buf/node_modules/.bin/buf

$(BUF): tools/buf/package.json tools/buf/package-lock.json
	cd tools/buf && npm ci --silent --no-audit --no-fund
	touch $(BUF)

# buf lint with the rules in buf.yaml.
proto-lint: $(BUF)
	$(BUF) lint

# Fails when protos/ changed, since the previous commit, in a way that breaks clients.
proto-breaking: $(BUF)
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
	  $(BUF) breaking protos --against '.git#ref=HEAD~1,subdir=protos'; \
	else echo "proto-breaking: no previous commit to compare with"; fi

test: $(STAMP) $(BUF)
	$(PY) -m pytest -q
	$(MAKE) test-node

# The Node.js client's tests (node --test) against a real server from the virtualenv.
test-node: $(STAMP)
	cd clients/node && npm ci --no-audit --no-fund && npm test

lint: $(STAMP)
	$(PY) -m ruff check $(SRC)
	$(PY) -m ruff format --check $(SRC)
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff format $(SRC)
	$(PY) -m ruff check --fix $(SRC)

typecheck: $(STAMP)
	$(PY) -m mypy

$(VENV)/.bench-installed: pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) bench/engine_bench.py && $(PY) bench/service_bench.py && $(PY) bench/store_bench.py

# The research scenario against a running server (make run in another terminal).
demo: $(STAMP)
	$(PY) clients/python/demo.py --address $(ADDRESS)

check: check-proto proto-lint proto-breaking lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
