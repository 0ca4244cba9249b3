# One entry point for people and CI. `make run` and `make test` set everything
# up on first use: a .venv with the project and its test tools, the Python
# modules generated from protos/, and for the tests Node.js, the Node client's
# packages (clients/node/node_modules) and buf (.tools/), all pinned.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := sssn_proto/v1/.stamp
PROTOS := $(wildcard protos/sssn/v1/*.proto)

# buf lints the contract and refuses breaking changes. It comes from npm (the
# package carries the native binary for each platform), pinned exactly and
# installed into .tools/, never globally; a new version reinstalls.
BUF_VERSION := 1.75.0
TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_INSTALLED := $(TOOLS)/.buf-$(BUF_VERSION)
# The released contract that `buf breaking` compares protos/ against. It is a
# stored image rather than `--against .git#branch=main` on purpose: CI runs in
# a fresh clone of the very main it checks (main against itself finds nothing),
# clones may be shallow or lack the branch, and a stored image also works from
# a source tarball. It changes only through `make baseline`, so a breaking
# change shows up in review as a changed baseline.
BASELINE := protos/baseline/sssn-v1.binpb

NODE_CLIENT := clients/node
NODE_INSTALLED := $(NODE_CLIENT)/node_modules/.installed
# Node.js is needed by the tests (the Node client, buf's launcher). Where it is
# missing it is installed from the distribution's packages, never skipped.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
NPM_FLAGS := --no-audit --no-fund --ignore-scripts
# The reference `sssn` 0.1.1, in a venv of its own (tools/reference_venv.py
# pins it): tests/test_import_reference.py writes stores with it. The tool
# reinstalls it when the pin changes; SSSN_REQUIRE_REFERENCE makes a missing
# one fail the tests, never skip them.
REFERENCE_VENV := .venv-reference
REFERENCE_INSTALLED := $(REFERENCE_VENV)/.installed
# `make run-postgres` keeps its PostgreSQL cluster (tools/pg_cluster.py) here.
PG_DIR := .sssn-pg
PG_PORT ?= 5433

ARGS ?=
PYTEST_ARGS ?=

.PHONY: all proto run run-postgres test fuzz lint clean node postgres reference tools contract baseline docs bench bench-scale

all: test

$(INSTALLED): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Regenerated whenever a .proto or the generator changes, so never stale.
$(GENERATED): $(INSTALLED) $(PROTOS) tools/gen_protos.py
	$(PY) tools/gen_protos.py
	touch $@

proto: $(GENERATED)  ## generate sssn_proto/v1 from protos/

node:  ## make sure node and npm exist (apt-get installs them where missing)
	@command -v node >/dev/null 2>&1 || { \
	  echo "node not found: installing Node.js with apt-get"; \
	  $(SUDO) apt-get update && $(APT_INSTALL) nodejs npm; }
	@command -v npm >/dev/null 2>&1 || { \
	  echo "npm not found: installing it with apt-get"; \
	  $(SUDO) apt-get update && $(APT_INSTALL) npm; }

# The tests run throwaway PostgreSQL clusters (tools/pg_cluster.py). Debian's
# package keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin.
postgres:  ## make sure PostgreSQL's initdb exists (apt-get installs it where missing)
	@{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || { \
	  echo "initdb not found: installing PostgreSQL with apt-get (the tests run their own clusters)"; \
	  $(SUDO) apt-get update && $(APT_INSTALL) postgresql; }

# Exactly what package-lock.json pins; reinstalled when the lockfile changes.
$(NODE_INSTALLED): $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json | node
	cd $(NODE_CLIENT) && npm ci $(NPM_FLAGS)
	touch $@

$(BUF_INSTALLED): | node
	rm -rf $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-package-lock $(NPM_FLAGS) @bufbuild/buf@$(BUF_VERSION)
	$(BUF) --version
	touch $@

$(REFERENCE_INSTALLED): tools/reference_venv.py | $(INSTALLED)
	$(PY) tools/reference_venv.py

reference: $(REFERENCE_INSTALLED)  ## install the reference sssn 0.1.1 into .venv-reference/ (for tests/test_import_reference.py)

tools: $(BUF_INSTALLED)  ## install the pinned buf into .tools/ (for buf generate, see docs/polyglot.md)

run: $(GENERATED)  ## serve on 127.0.0.1:7700 with the store in .sssn/ (ARGS="--port 7800" to change)
	$(VENV)/bin/sssn-server $(ARGS)

# The cluster keeps its data in $(PG_DIR)/ between runs and is stopped when the
# server exits, Ctrl-C included: the INT/TERM traps turn the signal into an exit
# so that the EXIT trap runs.
run-postgres: $(GENERATED) | postgres  ## serve with the store in PostgreSQL, a local cluster in .sssn-pg/ on port 5433 (PG_PORT)
	$(PY) tools/pg_cluster.py start $(PG_DIR) --port $(PG_PORT)
	trap '$(PY) tools/pg_cluster.py stop $(PG_DIR)' EXIT; trap 'exit 130' INT TERM; \
	  $(VENV)/bin/sssn-server --store postgresql://sssn@127.0.0.1:$(PG_PORT)/sssn $(ARGS)

# tests/test_contract.py runs buf lint and buf breaking; tests/test_node_client.py
# runs the Node client's tests against a live server. The suite runs on both
# backends; SSSN_REQUIRE_POSTGRES makes a missing PostgreSQL fail, never skip,
# and SSSN_REQUIRE_REFERENCE the same for the reference sssn 0.1.1.
test: $(GENERATED) $(NODE_INSTALLED) $(BUF_INSTALLED) $(REFERENCE_INSTALLED) | postgres  ## run the test suite against real servers, on SQLite and PostgreSQL
	SSSN_REQUIRE_POSTGRES=1 SSSN_REQUIRE_REFERENCE=1 $(PY) -m pytest $(PYTEST_ARGS)

# `make test` fuzzes every RPC with a few hundred requests; this runs
# FUZZ_EXAMPLES per kind of request (well-formed and corrupted), the same
# examples on every run.
FUZZ_EXAMPLES ?= 5000
fuzz: $(GENERATED)  ## fuzz every RPC with 2 x FUZZ_EXAMPLES requests (tests/test_fuzz.py)
	SSSN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_fuzz.py $(PYTEST_ARGS)

lint: $(GENERATED) $(BUF_INSTALLED)  ## ruff, mypy --strict and buf lint
	$(VENV)/bin/ruff check sssn_server sssn_client tests tools bench examples
	$(VENV)/bin/mypy
	$(BUF) lint

# Full sizes, 3 repetitions, and the report saved to docs/benchmarks.md (+ .png).
# BENCH_ARGS replaces all of it, so a quick look leaves the report alone unless
# it says --save too. NATS JetStream is apt-installed where missing (or skipped).
BENCH_ARGS ?= --save
bench: $(GENERATED)  ## ours vs the reference HTTP server, a no-op gRPC ceiling and NATS JetStream (bench/README.md)
	$(PY) bench/run.py $(BENCH_ARGS)

# A small and a large store (10,000 and 1,000,000 events) built through the
# server, then every cost measured on both in one run and reported as a ratio;
# minutes and gigabytes of temp space, so not part of `make test`. Saves
# docs/benchmarks-scale.md unless BENCH_SCALE_ARGS replaces --save.
BENCH_SCALE_ARGS ?= --save
bench-scale: $(GENERATED)  ## how each cost grows from a 10k- to a 1M-event store (--scale 5: 5M; bench/README.md)
	$(PY) bench/scale.py $(BENCH_SCALE_ARGS)

contract: $(BUF_INSTALLED)  ## buf lint, and buf breaking against the released contract
	$(BUF) lint
	$(BUF) breaking --against $(BASELINE)

# Run this only when releasing the contract as it is now: afterwards, every
# later change is checked against it. Review the diff of $(BASELINE).
baseline: $(BUF_INSTALLED)  ## store protos/ as the released contract (deliberate; see docs/polyglot.md)
	$(BUF) lint
	$(BUF) build --exclude-source-info -o $(BASELINE)
	@echo "$(BASELINE) now holds the current contract; commit it with the change that releases it"

docs: $(GENERATED)  ## regenerate the tables of docs/: error reasons (polyglot.md), flags and commands (operations.md, cli.md)
	$(PY) tools/gen_error_docs.py
	$(PY) tools/gen_cli_docs.py

clean:
	rm -rf $(VENV) $(REFERENCE_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(TOOLS) $(NODE_CLIENT)/node_modules $(PG_DIR)
	find sssn_proto/v1 -name '*_pb2*' -delete; rm -f $(GENERATED)
