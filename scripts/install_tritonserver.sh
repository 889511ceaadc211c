#!/usr/bin/env bash
# Install a standalone tritonserver (2.51.0, python backend only) from the nvidia-pytriton wheel.
#
# Usage: scripts/install_tritonserver.sh PYTHON DEST
#   PYTHON  interpreter whose version picks the python-backend stub (the project venv's python)
#   DEST    install directory, e.g. .cache/tritonserver
#
# Result: DEST/bin/tritonserver, DEST/backends/python/ (with the stub for PYTHON's version),
# DEST/lib/ (the wheel's nvidia_pytriton.libs) and the stamp DEST/.installed. Idempotent: a
# complete install is left alone; a partial one is redone from the cached wheel.
set -euo pipefail

PYTHON=${1:?usage: $0 PYTHON DEST}
DEST=${2:?usage: $0 PYTHON DEST}
WHEEL_VERSION=0.7.0
WHEEL_DIR="$(dirname "$DEST")/wheels"

if [[ -f "$DEST/.installed" ]]; then
    echo "tritonserver already installed in $DEST"
    exit 0
fi

py_version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
mkdir -p "$WHEEL_DIR"
wheel=$(ls "$WHEEL_DIR"/nvidia_pytriton-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$wheel" ]]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        --platform manylinux_2_35_x86_64 --python-version "$py_version" \
        -d "$WHEEL_DIR" "nvidia-pytriton==$WHEEL_VERSION"
    wheel=$(ls "$WHEEL_DIR"/nvidia_pytriton-"$WHEEL_VERSION"-*.whl | head -1)
fi

tmp=$(mktemp -d "$(dirname "$DEST")/tritonserver.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" - "$wheel" "$tmp" <<'PY'
import os
import sys
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist()
               if n.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
    for name in members:
        path = zf.extract(name, out)
        mode = (zf.getinfo(name).external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode & 0o755)
PY

stub="$tmp/pytriton/tritonserver/python_backend_stubs/$py_version/triton_python_backend_stub"
if [[ ! -f "$stub" ]]; then
    echo "no python backend stub for Python $py_version in nvidia-pytriton $WHEEL_VERSION" >&2
    exit 1
fi
cp "$stub" "$tmp/pytriton/tritonserver/backends/python/triton_python_backend_stub"
chmod +x "$tmp/pytriton/tritonserver/bin/tritonserver" \
    "$tmp/pytriton/tritonserver/backends/python/triton_python_backend_stub"
rm -rf "$tmp/pytriton/tritonserver/python_backend_stubs"
mv "$tmp/nvidia_pytriton.libs" "$tmp/pytriton/tritonserver/lib"

rm -rf "$DEST"
mv "$tmp/pytriton/tritonserver" "$DEST"
echo "$py_version" > "$DEST/.installed"
echo "tritonserver installed in $DEST (python backend stub for Python $py_version)"
