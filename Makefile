# Every target works on a fresh machine: `make setup` installs what the others need (cached in .cache/).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
STAMP := $(VENV)/.installed
TRITON_HOME := $(CACHE)/tritonserver
TRITON_STAMP := $(TRITON_HOME)/.installed
PERF_LIB := $(CACHE)/perf_analyzer/lib
EXPORT_VENV := $(CACHE)/export-venv
EXPORT_STAMP := $(EXPORT_VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
SSDLITE := $(CACHE)/models/ssdlite.onnx
YOLOX_CKPT := $(CACHE)/models/yolox_tiny_640_20220528.pth
YOLOX_ONNX := $(CACHE)/models/yolox_tiny.onnx
VIDEO := $(CACHE)/data/vtest.avi
PROMETHEUS := $(CACHE)/prometheus/usr/bin/prometheus
HAPROXY := $(CACHE)/haproxy/usr/sbin/haproxy
POSTGRES := $(CACHE)/postgres/usr/lib/postgresql/15/bin/postgres
MOSQUITTO := $(CACHE)/mosquitto/usr/sbin/mosquitto
CHROMIUM := $(CACHE)/chromium/usr/lib/chromium/chromium

PROFILE ?= cpu
HTTP_PORT ?= 8100
GRPC_PORT ?= 8101
METRICS_PORT ?= 8102
RENDER_ARGS ?=
# TUNING=low-latency|balanced|high-throughput renders into build/model_repository/<profile>-<tuning>.
TUNING ?=
TUNED := $(if $(TUNING),--tuning $(TUNING))
TUNED_REPO := $(if $(TUNING),--repo build/model_repository/$(PROFILE)-$(TUNING))
# The gateway (HAProxy) holds the keys: e.g. SERVE_ARGS="--keys-file keys --tls-cert cert.pem --tls-key key.pem
# --listen 0.0.0.0"; without keys, out/gateway-keys is generated once (see README "Security").
SERVE_ARGS ?=
# explicit (hot reload through the repository API, admin key only; the watchdog restarts a dead or hung
# step alone) | none | poll (the watchdog then restarts the whole server for any stub fault)
MODEL_CONTROL ?= explicit
# make export-reid CKPT=osnet_x0_25_msmt17.pth: a torchreid OSNet checkpoint as the ReID ONNX REID_OUT.
CKPT ?=
REID_ARCH ?= osnet_x0_25
REID_OUT ?= reid.onnx

.PHONY: help setup test test-faults bench bench-cluster demo render serve cluster perf perf-tools data export-venv export-reid soak cpu-repository
.DEFAULT_GOAL := help

# `make` alone lists the targets documented with a trailing `## ...` on their rule line.
help: ## Show this list
	@echo "usage: make TARGET [VAR=value ...]   (variables: see the top of the Makefile)"
	@awk -F':[^#]*## ' '/^[a-zA-Z][a-zA-Z0-9_-]*:[^=]*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is rebuilt only when the pinned requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(STAMP) $(TRITON_STAMP) $(PERF_LIB)/.installed $(SSDLITE) data haproxy postgres mosquitto chromium cpu-repository ## Install the venv, tritonserver, perf libs, detector weights, sample data, haproxy, postgres, mosquitto, chromium into .cache/; render the cpu profile

# tests/faults (slow: real launchers killed and stopped) is collected only by `make test-faults`.
test: setup $(YOLOX_ONNX) prometheus ## Run the test suite (unit + integration, real tritonserver)
	$(PY) -m pytest -q tests

# Stubs killed and stopped while cameras stream, `make serve` stopped by signals, a crashed run's cleanup.
test-faults: setup ## Fault tests: stubs killed/stopped while cameras stream (slow)
	PIPELINE_FAULT_TESTS=1 timeout 900 $(PY) -m pytest -q tests/faults

# `make bench BYTETRACK=/path/to/ByteTrack` also measures the official tracker.
bench: setup $(BENCH_STAMP) $(YOLOX_ONNX) ## CPU benchmarks: tracker, detection, client encode, pipeline
	$(PY) -m bench.tracker $(if $(BYTETRACK),--official $(BYTETRACK))
	$(PY) -m bench.detection
	$(PY) -m bench.client_encode
	$(PY) -m bench.pipeline

demo: setup ## Track people in the sample video, write results to out/
	$(PY) -m pipeline_client.demo --video $(VIDEO) --out-dir out

# Bounded soak against the cpu profile on loopback (own server, free ports).
SOAK_CAMERAS ?= 8
SOAK_MINUTES ?= 10
soak: setup ## Bounded soak against the cpu profile (SOAK_CAMERAS, SOAK_MINUTES)
	$(PY) -m bench.soak --cameras $(SOAK_CAMERAS) --minutes $(SOAK_MINUTES)

# --- Triton server (standalone 2.51.0 with the python backend, from the nvidia-pytriton wheel) ---
$(TRITON_STAMP): scripts/install_tritonserver.sh | $(STAMP)
	scripts/install_tritonserver.sh $(PY) $(TRITON_HOME)

# Every profile into build/model_repository/<profile> (what tritonserver serves: the profile's models only,
# adapters and weights linked), and the cpu profile's config.pbtxt files into model_repository/ (committed).
render: setup ## Render every profile's config.pbtxt from configs/
	$(PY) -m pipeline_config.render --all

serve: setup ## Render PROFILE and serve it behind the gateway (HTTP_PORT, GRPC_PORT, SERVE_ARGS)
	$(PY) -m pipeline_config.render --profile $(PROFILE) $(TUNED) $(RENDER_ARGS)
	$(PY) -m pipeline_server.server --profile $(PROFILE) $(TUNED_REPO) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
		--metrics-port $(METRICS_PORT) --model-control $(MODEL_CONTROL) $(SERVE_ARGS)

# SERVERS local tritonservers behind one gateway on the same client ports (README "Scaling out").
SERVERS ?= 2
cluster: setup ## Serve PROFILE on SERVERS tritonservers behind one gateway (out/cluster/servers.json)
	$(PY) -m pipeline_config.render --profile $(PROFILE) $(TUNED) $(RENDER_ARGS)
	$(PY) -m pipeline_server.server --profile $(PROFILE) $(TUNED_REPO) --servers $(SERVERS) --http-port $(HTTP_PORT) \
		--grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) --model-control $(MODEL_CONTROL) $(SERVE_ARGS)

bench-cluster: setup ## Total frames/s of 1, 2 and 3 local tritonservers behind the gateway (cpu profile)
	$(PY) -m pipeline_config.render --profile cpu
	$(PY) -m bench.cluster

# perf_analyzer (tritonclient 2.51.0 wheel) needs libb64.so.0d and libcudart.so.12: link the server's.
$(PERF_LIB)/.installed: scripts/install_perf_libs.sh $(TRITON_STAMP)
	scripts/install_perf_libs.sh $(TRITON_HOME)/lib $(PERF_LIB)
perf-tools: $(PERF_LIB)/.installed

PERF_SOURCE ?= $(VIDEO)
PERF_ARGS ?= --sequence-length 20 --concurrency 1:4
perf: setup perf-tools ## perf_analyzer against a served PROFILE (PERF_SOURCE, PERF_ARGS)
	$(PY) -m pipeline_config.render --profile $(PROFILE) $(TUNED) $(RENDER_ARGS)
	$(PY) -m pipeline_tools.perf --serve $(PROFILE) $(TUNED_REPO) --grpc-port $(GRPC_PORT) --source $(PERF_SOURCE) $(PERF_ARGS)

# Debian 12's HAProxy 2.6 (+ the libraries a fresh Debian 12 lacks), unpacked under .cache/: the gateway.
.PHONY: haproxy
haproxy: $(HAPROXY)
$(HAPROXY): scripts/fetch_haproxy.sh
	scripts/fetch_haproxy.sh $(CACHE)/haproxy

# Debian 12's PostgreSQL 15 server (+ the libraries a fresh Debian 12 lacks), unpacked under .cache/ (not
# installed): the ReID store's tests start a throwaway cluster with it (tests/integration/postgres.py).
.PHONY: postgres
postgres: $(POSTGRES)
$(POSTGRES): scripts/fetch_postgres.sh
	scripts/fetch_postgres.sh $(CACHE)/postgres

# Debian 12's Mosquitto 2.0.11 (+ the libraries a fresh Debian 12 lacks), unpacked under .cache/ (not
# installed): the fleet's event tests start a broker with it (tests/integration/mosquitto.py).
.PHONY: mosquitto
mosquitto: $(MOSQUITTO)
$(MOSQUITTO): scripts/fetch_mosquitto.sh
	scripts/fetch_mosquitto.sh $(CACHE)/mosquitto
# Debian 12's Chromium (+ the libraries a fresh Debian 12 lacks), unpacked under .cache/ (not installed): the
# live view's browser test runs it headless (about 15 s and 340 MB here).
.PHONY: chromium
chromium: $(CHROMIUM)
$(CHROMIUM): scripts/fetch_chromium.sh scripts/debian_unpack.sh
	scripts/fetch_chromium.sh $(CACHE)/chromium

# Debian's prometheus binary, unpacked under .cache/ (not installed): the metrics test scrapes with it.
.PHONY: prometheus
prometheus: $(PROMETHEUS)
$(PROMETHEUS): scripts/fetch_prometheus.sh
	scripts/fetch_prometheus.sh $(CACHE)/prometheus

# --- Models and data ---
# Embedded person detector: TF frozen graph -> ONNX once, in a throw-away TF venv (deleted after).
$(SSDLITE): scripts/convert_ssdlite.sh
	scripts/convert_ssdlite.sh $@ $(CACHE)

# Offline sample data (Debian opencv-doc): vtest.avi plus a few photos.
data: $(VIDEO)
$(VIDEO): scripts/fetch_sample_data.sh
	scripts/fetch_sample_data.sh $(CACHE)

# Real YOLOX-tiny weights (zamba, MIT) to prove the export path.
$(YOLOX_CKPT): scripts/fetch_zamba_yolox.sh
	scripts/fetch_zamba_yolox.sh $@ $(PYTHON)

# Export environment: CPU torch + pixeltable-yolox without its heavy deps (torchvision, tensorboard, ...).
export-venv: $(EXPORT_STAMP)
$(EXPORT_STAMP): requirements-export.txt
	test -x $(EXPORT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-export.txt
	$(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check --no-deps pixeltable-yolox==0.4.3 onnx2torch==1.5.15
	touch $@

export-reid: $(EXPORT_STAMP) ## torchreid OSNet checkpoint -> ReID ONNX (CKPT, REID_ARCH, REID_OUT)
	@test -n "$(CKPT)" || { echo "usage: make export-reid CKPT=FILE.pth [REID_ARCH=$(REID_ARCH)] [REID_OUT=$(REID_OUT)]" >&2; exit 2; }
	$(EXPORT_VENV)/bin/python -m pipeline_tools.export_reid --ckpt $(CKPT) --arch $(REID_ARCH) --out $(REID_OUT)

$(YOLOX_ONNX): $(YOLOX_CKPT) $(EXPORT_STAMP) pipeline_tools/export_onnx.py
	$(EXPORT_VENV)/bin/python -m pipeline_tools.export_onnx --ckpt $< --arch yolox_tiny --num-classes 1 \
		--input-size 640 640 --out $@

# Benchmark-only peers (scipy, cjm-byte-track) go into .venv with numpy kept at its pin.
$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(PY) -m pip install -q -r bench/requirements.txt numpy==1.26.4
	touch $@

# The cpu profile served by demo, soak, bench and the python entry's default: build/model_repository/cpu,
# with the embedded detector's weights linked (they stay out of git). model_repository/ holds the adapters of
# every profile (gpu_detector too) and is never served itself.
cpu-repository: $(STAMP) $(SSDLITE)
	$(PY) -m pipeline_config.render --profile cpu

# --- GPU (a machine with PyTorch + CUDA; see docs/benchmarks.md) ---
# GPU_PY: a python with torch and numpy<2 (scripts/gpu_env.sh makes one); TRITONSERVER_HOME: the server.
GPU_PY ?= python3
GPU_FRAMES ?= out/frames
.PHONY: test-gpu bench-gpu
test-gpu: ## GPU tests (GPU_PY: a python with torch + CUDA)
	PIPELINE_GPU_TESTS=1 GPU_FRAMES=$(GPU_FRAMES) $(GPU_PY) -m pytest -q tests/gpu
bench-gpu: ## GPU benchmarks into out/bench-gpu
	$(GPU_PY) -m bench.gpu --frames $(GPU_FRAMES) --out out/bench-gpu

# --- Container deployment (docker/; NVIDIA GPU + container toolkit; see README "Deploy on a GPU server") ---
# The image's entrypoint runs `python -m pipeline_server.server --exec`: the flags of `make serve`.
# DOCKER_PROFILE=gpu (PyTorch in the image) or tensorrt (a plan from `make engine`; compose.tensorrt.yaml).
DOCKER_PROFILE ?= gpu
DOCKER_IMAGE = pipeline-triton:24.10$(if $(filter tensorrt,$(DOCKER_PROFILE)),-tensorrt)
DOCKER_REPO := build/docker/model_repository
ENGINE_DIR := build/engines
COMPOSE = docker compose -f docker/compose.yaml $(if $(filter tensorrt,$(DOCKER_PROFILE)),-f docker/compose.tensorrt.yaml)
TRTEXEC ?= /usr/src/tensorrt/bin/trtexec
MIN ?= 1
OPT ?= 8
MAX ?= 32
FP16 ?=
.PHONY: docker-build docker-repo engine up down check-detector
docker-build: ## Build the Triton container image of DOCKER_PROFILE (gpu, or tensorrt)
	docker build -f docker/Dockerfile --build-arg PROFILE=$(DOCKER_PROFILE) -t $(DOCKER_IMAGE) .

# The profile rendered with every symlink resolved (adapters copied in), mountable at /models.
docker-repo: $(STAMP) ## Render DOCKER_PROFILE with symlinks resolved for the container
	rm -rf build/docker/rendered $(DOCKER_REPO)
	$(PY) -m pipeline_config.render --profile $(DOCKER_PROFILE) --out build/docker/rendered $(RENDER_ARGS)
	cp -rL build/docker/rendered $(DOCKER_REPO)

# make engine ONNX=model.onnx [FP16=1] [MIN=1 OPT=8 MAX=32]: trtexec in the image (the server's TensorRT)
# writes build/engines/model.plan, which compose mounts as the detector's version 1.
engine: DOCKER_PROFILE := tensorrt
engine: $(STAMP) docker-build ## Build a TensorRT engine: make engine ONNX=model.onnx [FP16=1]
	@test -f "$(ONNX)" || { echo "usage: make engine ONNX=path/model.onnx [FP16=1] [MIN=1 OPT=8 MAX=32]" >&2; exit 2; }
	args=$$($(PY) -m pipeline_tools.engine --check-onnx "$(ONNX)" --onnx /in/model.onnx \
		--plan /out/model.plan --min $(MIN) --opt $(OPT) --max $(MAX) $(if $(FP16),--fp16) $(RENDER_ARGS)) \
	&& mkdir -p $(ENGINE_DIR) \
	&& docker run --gpus all --rm -v "$(abspath $(ONNX)):/in/model.onnx:ro" -v "$(abspath $(ENGINE_DIR)):/out" \
		--entrypoint $(TRTEXEC) $(DOCKER_IMAGE) $$args

# Random gateway keys for compose (0600), once; the metrics key also alone for Prometheus.
DOCKER_KEYS := build/docker/gateway-keys
.PHONY: docker-keys
docker-keys: $(DOCKER_KEYS) ## Generate the gateway keys for compose (once)
$(DOCKER_KEYS): | $(STAMP)
	$(PY) -m pipeline_server.keys --generate $@ --metrics-key-file build/docker/metrics-key

up: docker-repo docker-keys ## Start the compose deployment (gateway, Triton, Prometheus, Grafana)
	@test $(DOCKER_PROFILE) != tensorrt || test -f $(ENGINE_DIR)/model.plan || { echo "no engine at $(ENGINE_DIR)/model.plan: run make engine ONNX=..." >&2; exit 2; }
	$(COMPOSE) up -d --build
	@echo "Gateway http://localhost:$(HTTP_PORT) grpc localhost:$(GRPC_PORT) metrics http://localhost:$(METRICS_PORT)/metrics (keys: $(DOCKER_KEYS))"
	@echo "Prometheus http://localhost:9090  Grafana http://localhost:3000"

down: ## Stop the compose deployment
	$(COMPOSE) down

# Does the loaded detector have the tensors the profile's config expects? (after `make up`)
check-detector: $(STAMP) ## Check the loaded detector matches the profile (after make up)
	$(PY) -m pipeline_tools.check_detector --url localhost:$(GRPC_PORT) --profile $(DOCKER_PROFILE) \
		--keys-file $(DOCKER_KEYS) $(RENDER_ARGS)

# --- Kubernetes (deploy/k8s; README "Kubernetes"): the gateway's ConfigMap and the Secrets ---
K8S_KEYS ?= build/k8s/gateway-keys
.PHONY: k8s-config k8s-secrets
k8s-config: $(STAMP) ## Render deploy/k8s/gateway-configmap.yaml from the gateway template and the manifests
	$(PY) -m pipeline_server.k8s config
k8s-secrets: $(STAMP) ## Write build/k8s/secrets.yaml (key digests, internal key; 0600) from K8S_KEYS
	test -f $(K8S_KEYS) || $(PY) -m pipeline_server.keys --generate $(K8S_KEYS)
	$(PY) -m pipeline_server.k8s secrets --keys-file $(K8S_KEYS) --out build/k8s/secrets.yaml
