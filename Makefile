# Every target works on a fresh machine: `make setup` installs what the others need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
STAMP := $(VENV)/.installed
EXPORT_VENV := $(CACHE)/export-venv
EXPORT_STAMP := $(EXPORT_VENV)/.installed

.PHONY: setup test bench demo
.PHONY: data export-venv
.DEFAULT_GOAL := test

# The venv is rebuilt only when the pinned requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP)
setup: $(CACHE)/models/ssdlite.onnx

test: setup
test: data $(CACHE)/models/yolox_tiny_640_20220528.pth $(EXPORT_STAMP)
	$(PY) -m pytest -q tests

# Benchmark-only peers (scipy, cjm-byte-track) go into .venv with numpy kept at its pin.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(PY) -m pip install -q -r bench/requirements.txt numpy==1.26.4
	touch $@

# `make bench BYTETRACK=/path/to/ByteTrack` also measures the official tracker.
bench: setup $(BENCH_STAMP) data $(CACHE)/models/yolox_tiny.onnx
	$(PY) -m bench.tracker $(if $(BYTETRACK),--official $(BYTETRACK))
	$(PY) -m bench.detection
	$(PY) -m bench.client_encode

demo: setup
	@echo "Replaying the tud_campus tracking case (the Triton ensemble demo comes with issue 5)."
	$(PY) -m pipeline_models.tracking replay --det tests/data/tud_campus.det.txt --out out/tud_campus.tracks.txt
	@head -5 out/tud_campus.tracks.txt

# --- detection (issue 4) ---
# Embedded person detector: TF frozen graph -> ONNX once, in a throw-away TF venv (deleted after).
$(CACHE)/models/ssdlite.onnx: scripts/convert_ssdlite.sh
	scripts/convert_ssdlite.sh $@ $(CACHE)

# Offline sample data (Debian opencv-doc): vtest.avi plus a few photos.
data: $(CACHE)/data/vtest.avi
$(CACHE)/data/vtest.avi: scripts/fetch_sample_data.sh
	scripts/fetch_sample_data.sh $(CACHE)

# Real YOLOX-tiny weights (zamba, MIT) to prove the export path.
$(CACHE)/models/yolox_tiny_640_20220528.pth: scripts/fetch_zamba_yolox.sh
	scripts/fetch_zamba_yolox.sh $@ $(PYTHON)

# Export environment: CPU torch + pixeltable-yolox without its heavy deps (torchvision, tensorboard, ...).
export-venv: $(EXPORT_STAMP)
$(EXPORT_STAMP): requirements-export.txt
	test -x $(EXPORT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-export.txt
	$(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check --no-deps pixeltable-yolox==0.4.3
	touch $@

$(CACHE)/models/yolox_tiny.onnx: $(CACHE)/models/yolox_tiny_640_20220528.pth $(EXPORT_STAMP) pipeline_models/export_onnx.py
	$(EXPORT_VENV)/bin/python -m pipeline_models.export_onnx --ckpt $< --arch yolox_tiny --num-classes 1 \
		--input-size 640 640 --out $@
