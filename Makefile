# Every target works on a fresh machine: `make setup` installs what the others need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
STAMP := $(VENV)/.installed
TRITON_HOME := $(CACHE)/tritonserver
TRITON_STAMP := $(TRITON_HOME)/.installed
PERF_LIB := $(CACHE)/perf_analyzer/lib

.PHONY: setup test bench demo
.PHONY: render serve perf perf-tools
.DEFAULT_GOAL := test

# The venv is rebuilt only when the pinned requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP) $(TRITON_STAMP) $(PERF_LIB)/.installed

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m bench.tracker

demo: setup
	@echo "Replaying the tud_campus tracking case (the Triton ensemble demo comes with issue 5)."
	$(PY) -m pipeline_models.tracking replay --det tests/data/tud_campus.det.txt --out out/tud_campus.tracks.txt
	@head -5 out/tud_campus.tracks.txt

# Standalone tritonserver 2.51.0 (python backend) from the nvidia-pytriton wheel; no Docker.
$(TRITON_STAMP): scripts/install_tritonserver.sh | $(STAMP)
	scripts/install_tritonserver.sh $(PY) $(TRITON_HOME)

# Every profile's config.pbtxt from configs/ (cpu -> model_repository/, others -> build/model_repository/).
render: setup
	$(PY) -m pipeline_models.render_configs --all

PROFILE ?= cpu
HTTP_PORT ?= 8100
GRPC_PORT ?= 8101
METRICS_PORT ?= 8102
RENDER_ARGS ?=
serve: setup
	$(PY) -m pipeline_models.render_configs --profile $(PROFILE) $(RENDER_ARGS)
	$(PY) -m pipeline_models.server --profile $(PROFILE) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# perf_analyzer (tritonclient 2.51.0 wheel) needs libb64.so.0d and libcudart.so.12: link the server's.
$(PERF_LIB)/.installed: scripts/install_perf_libs.sh $(TRITON_STAMP)
	scripts/install_perf_libs.sh $(TRITON_HOME)/lib $(PERF_LIB)
perf-tools: $(PERF_LIB)/.installed

PERF_SOURCE ?= .cache/data/vtest.avi
PERF_ARGS ?= --sequence-length 20 --concurrency 1:4
perf: setup perf-tools
	$(PY) -m pipeline_models.render_configs --profile $(PROFILE) $(RENDER_ARGS)
	$(PY) -m pipeline_models.perf --serve $(PROFILE) --grpc-port $(GRPC_PORT) --source $(PERF_SOURCE) $(PERF_ARGS)
