# One entry point for people and CI. `make run` and `make test` set everything
# up on first use: a .venv with the project and its test tools, and the
# Python modules generated from protos/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GENERATED := sssn_proto/v1/.stamp
PROTOS := $(wildcard protos/sssn/v1/*.proto)

ARGS ?=
PYTEST_ARGS ?=

.PHONY: all proto run test lint clean

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

run: $(GENERATED)  ## serve on 127.0.0.1:7700 with the store in .sssn/ (ARGS="--port 7800" to change)
	$(VENV)/bin/sssn-server $(ARGS)

test: $(GENERATED)  ## run the test suite against real servers
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(GENERATED)  ## ruff and mypy --strict
	$(VENV)/bin/ruff check sssn_server tests tools
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find sssn_proto/v1 -name '*_pb2*' -delete; rm -f $(GENERATED)
