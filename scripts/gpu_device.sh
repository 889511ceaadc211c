#!/usr/bin/env bash
# On a bare GPU machine (Python 3.12 with PyTorch and CUDA, no registry): unpack what scripts/gpu_carry.sh
# packed, then run the GPU tests and the GPU benchmark. Prints the environment it found first.
# Usage: scripts/gpu_device.sh CARRY_DIR [bench-gpu arguments...]   (e.g. --cameras 1,64)
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${1:?usage: $0 CARRY_DIR [bench args]}
shift
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
mkdir -p .cache
tar -C .cache -xJf "$carry/tritonserver.tar.xz"
scripts/gpu_env.sh .cache/gpu-venv "$carry/wheels"
export PATH=$PWD/.cache/gpu-venv/bin:$PATH  # the python backend's stub takes its python from PATH
make test-gpu GPU_PY=.cache/gpu-venv/bin/python GPU_FRAMES="$carry/frames" || echo "test-gpu FAILED (exit $?)"
.cache/gpu-venv/bin/python -m bench.gpu --frames "$carry/frames" "$@"
