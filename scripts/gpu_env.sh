#!/usr/bin/env bash
# Python environment for the gpu profile's tritonserver on a machine that has PyTorch but numpy 2:
# a venv at $1 with numpy 1.26.4 (+ lap; wheels in $2), which reaches PyTorch through a .pth file to the
# site-packages of $3 (default: the python3 on PATH), plus this checkout through another .pth.
# Usage: scripts/gpu_env.sh VENV WHEEL_DIR [TORCH_PYTHON]
set -euo pipefail
venv=$1 wheels=$2 torch_py=${3:-python3}
torch_site=$($torch_py -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parents[1])')
$torch_py -m venv --without-pip "$venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
$torch_py -m pip install -q --no-deps --no-index --target "$site" "$wheels"/*.whl
echo "$torch_site" > "$site/zz_torch.pth"
echo "$(cd "$(dirname "$0")/.." && pwd)" > "$site/pipeline_models_src.pth"
"$venv/bin/python" -c 'import numpy, torch, torchvision; print("gpu env: numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())'
