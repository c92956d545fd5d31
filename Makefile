# Orchestrall developer entry points. Every target works from a fresh clone.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: venv proto lint test demo up bench clean

venv: $(STAMP)

# Pinned dependencies from requirements.lock, then the project itself (editable).
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Regenerates gen/ (Python messages, stubs, .pyi) and the descriptor set Envoy
# transcodes with, from proto/ and the googleapis protos of the installed
# googleapis-common-protos.
proto: $(STAMP)
	$(PY) -m services.kit.protogen

lint: $(STAMP)
	$(PY) -m services.kit.protogen --lint
	$(VENV)/bin/ruff check services tests benchmark
	$(VENV)/bin/ruff format --check services tests benchmark
	$(VENV)/bin/mypy services tests

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/orchestrall demo

up: $(STAMP)
	$(VENV)/bin/orchestrall up

bench: $(STAMP)
	$(PY) -m benchmark.gateway_overhead

clean:
	rm -rf $(VENV) .state
