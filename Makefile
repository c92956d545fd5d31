# Orchestrall developer entry points. Every target works from a fresh clone.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# llama.cpp is compiled from source for a portable x86-64 baseline (AVX2). The
# default native build enables AMX on CPUs that report it, and that build
# segfaults on the first decode on these machines. pip's wheel cache ignores
# CMAKE_ARGS, so the build bypasses the cache.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF
LLAMA_PIN := $(shell grep -i '^llama[-_]cpp[-_]python==' requirements.lock)

.PHONY: venv proto lint test demo up bench clean

venv: $(STAMP)

# Pinned dependencies from requirements.lock, then the project itself (editable).
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-cache-dir --no-deps "$(LLAMA_PIN)"
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
	$(VENV)/bin/ruff check services gateway tests benchmark
	$(VENV)/bin/ruff format --check services gateway tests benchmark
	$(VENV)/bin/mypy services tests gateway benchmark

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/orchestrall demo

up: $(STAMP)
	$(VENV)/bin/orchestrall up

bench: $(STAMP)
	$(PY) -m benchmark.gateway_overhead
	$(PY) -m benchmark.auth_overhead
	$(PY) -m benchmark.envoy_cpu

clean:
	rm -rf $(VENV) .state
