#!/usr/bin/env bash
# Packs what a bare GPU machine (Python 3.12 with PyTorch, no registry access) needs for `make test-gpu`
# and `make bench-gpu`, from this machine's cache: the standalone tritonserver with the Python 3.12
# python-backend stub (tar.xz, without the wheel's unused libpython), and cp312 wheels (numpy < 2, lap,
# tritonclient[grpc]). scripts/gpu_device.sh unpacks them there.
# Usage: scripts/gpu_carry.sh OUT_DIR   (after `make setup`)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
server=$root/.cache/tritonserver
wheel=$(ls "$root"/.cache/wheels/nvidia_pytriton-0.7.0-*.whl | head -1)
mkdir -p "$out/wheels"
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
python3 -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$out/wheels" numpy==1.26.4 lap==0.5.13 tritonclient[grpc]==2.51.0
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
du -sh "$out"/*
