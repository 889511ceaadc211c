#!/usr/bin/env bash
# Render a profile, copy it with every symlink resolved (adapters, weights) into
# build/docker/model_repository, and run it in NVIDIA's Triton container on ports 8100/8101/8102.
#
# Usage: docker/run.sh [PROFILE] [--set key=value ...]
#   docker/run.sh cpu
#   docker/run.sh tensorrt --set detector_model=/path/bytetrack_x_mot17.plan
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-cpu}
shift || true
PY=${PY:-.venv/bin/python}

rendered=build/docker/rendered
target=build/docker/model_repository
rm -rf "$rendered" "$target"
# A separate output links each python model's committed model.py and the detector weights.
"$PY" -m pipeline_models.render_configs --profile "$PROFILE" --out "$rendered" "$@"
cp -rL "$rendered" "$target"

compose=(-f docker/compose.yaml)
[[ "$PROFILE" == tensorrt ]] && compose+=(-f docker/compose.gpu.yaml)
MODEL_REPOSITORY="$PWD/$target" exec docker compose "${compose[@]}" up --build
