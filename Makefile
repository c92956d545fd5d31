# Orchestrall developer entry points. Every target works from a fresh clone.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov lives in a virtualenv of its own inside $(VENV): it pins packaging<24, pytest needs >=24.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# @grpc/grpc-js and friends for the README's Node quick start (tests/mesh/test_node_client.py).
NODE_PROJECT := tests/mesh/node
NODE_STAMP := $(NODE_PROJECT)/node_modules/.installed

# llama.cpp is compiled from source for a portable x86-64 baseline (AVX2). The
# default native build enables AMX on CPUs that report it, and that build
# segfaults on the first decode on these machines. pip's wheel cache ignores
# CMAKE_ARGS, so the build bypasses the cache.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF
LLAMA_PIN := $(shell grep -i '^llama[-_]cpp[-_]python==' requirements.lock)

.PHONY: venv checkov deploy proto lint test browser node demo up bench clean

# The commit whose contracts `make lint` checks proto/ against with buf breaking (a clone
# without it, shallow or at the first commit, compares against HEAD and says so).
BREAKING_AGAINST ?= HEAD~1

venv: $(STAMP)

# Pinned dependencies from requirements.lock, then the project itself (editable).
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-cache-dir --no-deps "$(LLAMA_PIN)"
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps --config-settings editable_mode=compat -e .
	# compat mode puts the checkout on sys.path; gen/ goes there too, so that orchestrall.sdk's two
	# folders (orchestrall/sdk, gen/orchestrall/sdk/proto) are one package for the `orchestrall`
	# command as they are under PYTHONPATH=.:gen (the default editable finder resolves the namespace
	# package orchestrall to gen/ alone and hides the hand-written half).
	echo "$(CURDIR)/gen" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/orchestrall-gen.pth"
	touch $(STAMP)

# The pinned checkov (deploy/checkov.lock) the deployment tests scan the manifests with.
checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): deploy/checkov.lock
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q --no-deps -r deploy/checkov.lock
	touch $(CHECKOV_STAMP)

# Regenerates deploy/base and deploy/istio (kustomize) from the services' own tables.
deploy: $(STAMP)
	$(PY) -m deploy.render

# Regenerates gen/ (Python messages, stubs, .pyi) and the descriptor set Envoy
# transcodes with, from proto/ and the googleapis protos of the installed
# googleapis-common-protos.
proto: $(STAMP)
	$(PY) -m services.kit.protogen

lint: $(STAMP)
	$(PY) -m services.kit.protogen --lint
	$(PY) -m services.kit.protogen --breaking $(BREAKING_AGAINST)
	$(VENV)/bin/ruff check services gateway tests benchmark deploy orchestrall
	$(VENV)/bin/ruff format --check services gateway tests benchmark deploy orchestrall
	$(VENV)/bin/mypy services tests gateway benchmark deploy

# Bytecode for the checkout's own code first: where PYTHONDONTWRITEBYTECODE is set (this machine's
# environment sets it) Python would compile services/ and gen/ again in every process the suite
# starts (each stack's services, each restart, each CLI call); importing the agent and workflow
# servers takes 5.8 s of CPU from source, 5.0 s from bytecode. A file changed later is compiled
# in memory as usual.
test: $(STAMP) $(CHECKOV_STAMP) browser $(NODE_STAMP)
	$(PY) -m compileall -q services gateway gen orchestrall
	$(PY) -m pytest -q

# Headless Chromium for the test that opens /docs (tests/mesh/test_docs_browser.py), from
# Debian (package chromium) when missing, as `make bench` installs wrk. Without root the
# test skips locally and fails under CI=true.
browser:
	@command -v chromium >/dev/null || { \
	  echo "make: installing chromium (Debian package chromium) for the /docs browser test"; \
	  { test "$$(id -u)" = 0 && { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; }; } \
	  || echo "make: chromium is missing; install it with: sudo apt-get install chromium" >&2; }

# The Node packages of the quick start's test, from the committed lock file; the test never
# installs anything.
node: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_PROJECT)/package-lock.json
	npm ci --prefix $(NODE_PROJECT) --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(VENV)/bin/orchestrall demo

up: $(STAMP)
	$(VENV)/bin/orchestrall up

# The figures of issue 7 in one table (benchmark/__main__.py); a few minutes. Needs
# PostgreSQL ($ORCHESTRALL_TEST_DATABASE_URL, as the tests) and wrk, installed here from
# Debian when missing. The venv is made only when missing (not refreshed), and the
# checkout's own code comes first on PYTHONPATH, so a worktree can borrow another
# checkout's venv (make bench VENV=../main/.venv) without reinstalling into it.
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--runs 5".
bench:
	@test -f $(STAMP) || $(MAKE) venv
	@command -v wrk >/dev/null || { \
	  echo "make bench: installing wrk (Debian package wrk) for the REST figures"; \
	  { test "$$(id -u)" = 0 && { apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; }; } \
	  || { echo "make bench: wrk is missing; install it with: sudo apt-get install wrk" >&2; exit 1; }; }
	PYTHONPATH=$(CURDIR)/gen:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m benchmark $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .state
