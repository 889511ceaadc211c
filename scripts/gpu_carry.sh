#!/usr/bin/env bash
# Packs what a bare GPU machine (Python 3.12 with PyTorch, onnx, grpcio and protobuf; no registry access)
# needs for `make test-gpu`, `make bench-gpu` and `python -m bench.gpu_reid`, from this machine's cache:
# the standalone tritonserver with the Python 3.12 python-backend stub (tar.xz, without the wheel's unused
# libpython), cp312 wheels of what that machine lacks (numpy < 2, lap, tritonclient, python-rapidjson,
# onnx2torch; py-spy for bench.gpu_reid --py-spy), 64 JPEG frames of the sample video, and the shared
# ReID test model when it is there.
# With --baseline REV it also packs that revision's tree (git archive) into OUT_DIR/baseline, so that one
# device call can run a benchmark on both and compare them in the same run. scripts/gpu_device.sh unpacks
# it all there. What it packs stays under the device tool's 64 MiB (about 50 MiB with a baseline).
# Usage: scripts/gpu_carry.sh OUT_DIR [--baseline REV]   (after `make setup`)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [--baseline REV]}
baseline=
if [ "${2:-}" = --baseline ]; then baseline=${3:?--baseline needs a revision}; fi
root=$(cd "$(dirname "$0")/.." && pwd)
server=$root/.cache/tritonserver
wheel=$(ls "$root"/.cache/wheels/nvidia_pytriton-0.7.0-*.whl | head -1)
mkdir -p "$out/wheels" "$out/frames"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a "$server" "$tmp/tritonserver"
rm -f "$tmp"/tritonserver/lib/libpython3-*.so* "$tmp/tritonserver/.installed"
rm -rf "$tmp"/tritonserver/backends/python/__pycache__
python3 - "$wheel" "$tmp/tritonserver/backends/python/triton_python_backend_stub" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    data = zf.read("pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub")
open(sys.argv[2], "wb").write(data)
PY
chmod +x "$tmp/tritonserver/backends/python/triton_python_backend_stub"
echo 3.12 > "$tmp/tritonserver/.installed"
tar -C "$tmp" -cJf "$out/tritonserver.tar.xz" tritonserver
# --no-deps: the GPU machine has grpcio, protobuf, urllib3, packaging and onnx; a second protobuf or grpcio
# would only add size (and two versions of one package stop the install).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux1_x86_64 -d "$out/wheels" numpy==1.26.4 lap==0.5.13 tritonclient==2.51.0 \
    python-rapidjson==1.25 onnx2torch==1.5.15 py-spy==0.4.3
# tritonclient's perf_analyzer binaries (13 MB) are not needed there.
python3 - "$out"/wheels/tritonclient-*.whl <<'PY'
import os, sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as src, zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if "/data/bin/" in item.filename:
            continue
        data = src.read(item)
        if item.filename.endswith("/RECORD"):
            data = b"".join(l for l in data.splitlines(True) if b"/data/bin/" not in l)
        dst.writestr(item, data)
os.replace(path + ".tmp", path)
PY
# The benchmarks' frames: the sample video's first 64, JPEG quality 80 (bench.gpu upscales them to 1080p).
"$root/.venv/bin/python" - "$root/.cache/data/vtest.avi" "$out/frames" <<'PY'
import sys, cv2
capture = cv2.VideoCapture(sys.argv[1])
for i in range(64):
    ok, frame = capture.read()
    if not ok:
        raise SystemExit(f"{sys.argv[1]}: only {i} frames")
    cv2.imwrite(f"{sys.argv[2]}/{i:04d}.jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
PY
reid=$root/../shared/fixtures/reid/osnet_x0_25_msmt17.onnx
if [ -f "$reid" ]; then mkdir -p "$out/reid" && cp "$reid" "$out/reid/"; fi
if [ -n "$baseline" ]; then
    rm -rf "$out/baseline" && mkdir -p "$out/baseline"
    git -C "$root" archive "$baseline" | tar -x -C "$out/baseline"
    git -C "$root" rev-parse "$baseline" > "$out/baseline/REVISION"
fi
du -sh "$out"/*
