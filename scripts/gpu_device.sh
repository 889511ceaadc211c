#!/usr/bin/env bash
# On a bare GPU machine (Python 3.12 with PyTorch and CUDA, no registry): unpack what scripts/gpu_carry.sh
# packed, then run the GPU tests and the GPU benchmark. Prints the environment it found first.
# With --setup-only it stops after the unpacking: then `export PATH=$PWD/.cache/gpu-venv/bin:$PATH` and run
# what you need (the stub takes its python from PATH). A packed baseline revision gets its own venv, so
#   (cd CARRY_DIR/baseline && PATH=$PWD/.cache/gpu-venv/bin:$PATH GPU_FRAMES=../frames python -m bench.gpu_reid \
#    --model ../reid/osnet_x0_25_msmt17.onnx ...)
# runs the same benchmark on it in the same call. Run the setup at the start of every call: each call copies
# CARRY_DIR afresh, which replaces the baseline's venv built inside it by the call before.
# Usage: scripts/gpu_device.sh CARRY_DIR [--setup-only | bench-gpu arguments...]   (e.g. --cameras 1,64)
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${1:?usage: $0 CARRY_DIR [--setup-only | bench args]}
shift
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p .cache
test -x .cache/tritonserver/bin/tritonserver || tar -C .cache -xJf "$carry/tritonserver.tar.xz"
test -d .cache/gpu-venv || scripts/gpu_env.sh .cache/gpu-venv "$carry/wheels"
if [ -d "$carry/reid" ] && [ ! -d ../shared/fixtures/reid ]; then  # where the tests look for the ReID model
    mkdir -p ../shared/fixtures/reid && cp "$carry"/reid/*.onnx ../shared/fixtures/reid/
fi
if [ -d "$carry/baseline" ] && [ ! -d "$carry/baseline/.cache/gpu-venv" ]; then
    mkdir -p "$carry/baseline/.cache"
    ln -sfn "$PWD/.cache/tritonserver" "$carry/baseline/.cache/tritonserver"
    "$carry/baseline/scripts/gpu_env.sh" "$carry/baseline/.cache/gpu-venv" "$carry/wheels"
fi
if [ "${1:-}" = --setup-only ]; then exit 0; fi
export PATH=$PWD/.cache/gpu-venv/bin:$PATH  # the python backend's stub takes its python from PATH
make test-gpu GPU_PY=.cache/gpu-venv/bin/python GPU_FRAMES="$carry/frames" || echo "test-gpu FAILED (exit $?)"
.cache/gpu-venv/bin/python -m bench.gpu --frames "$carry/frames" "$@"
