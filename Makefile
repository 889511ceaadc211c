# Every target works on a fresh machine: `make setup` installs what the others need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
STAMP := $(VENV)/.installed

.PHONY: setup test bench demo
.DEFAULT_GOAL := test

# The venv is rebuilt only when the pinned requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q tests

# Benchmark-only peers (scipy, cjm-byte-track) go into .venv with numpy kept at its pin.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(PY) -m pip install -q -r bench/requirements.txt numpy==1.26.4
	touch $@

# `make bench BYTETRACK=/path/to/ByteTrack` also measures the official tracker.
bench: setup $(BENCH_STAMP)
	$(PY) -m bench.tracker $(if $(BYTETRACK),--official $(BYTETRACK))

demo: setup
	@echo "Replaying the tud_campus tracking case (the Triton ensemble demo comes with issue 5)."
	$(PY) -m pipeline_models.tracking replay --det tests/data/tud_campus.det.txt --out out/tud_campus.tracks.txt
	@head -5 out/tud_campus.tracks.txt
