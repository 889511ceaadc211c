#!/usr/bin/env bash
# Fetch the real YOLOX-tiny checkpoint (1 class, 640x640, animals; Megvii YOLOX format) shipped in
# zamba==2.7.2 (MIT, PyPI) to OUT. Only used to prove the YOLOX export/decode path with real weights.
# Usage: scripts/fetch_zamba_yolox.sh OUT.pth [PYTHON]
set -euo pipefail
out="$1"
python="${2:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$out")"
"$python" -m pip download -q --disable-pip-version-check --no-deps zamba==2.7.2 -d "$tmp"
"$python" - "$tmp" "$out" <<'PY'
import glob, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{tmp}/zamba-2.7.2-*.whl")[0]) as whl:
    with open(out + ".tmp", "wb") as f:
        f.write(whl.read("zamba/object_detection/yolox/assets/yolox_tiny_640_20220528.pth"))
PY
mv "$out.tmp" "$out"
