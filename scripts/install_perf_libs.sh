#!/usr/bin/env bash
# Make perf_analyzer (from the tritonclient 2.51.0 wheel) loadable without apt or root: it needs
# libb64.so.0d (Debian's libb64-0d) and libcudart.so.12; the tritonserver install bundles both.
#
# Usage: scripts/install_perf_libs.sh TRITON_LIB_DIR DEST_LIB_DIR   (idempotent)
set -euo pipefail
SRC=$(cd "${1:?usage: $0 TRITON_LIB_DIR DEST}" && pwd)
DEST=${2:?usage: $0 TRITON_LIB_DIR DEST}
mkdir -p "$DEST"
link() {  # link NAME PATTERN: DEST/NAME -> the one file in SRC matching PATTERN
    local matches=("$SRC"/$2)
    if [[ ${#matches[@]} -ne 1 || ! -f ${matches[0]} ]]; then
        echo "expected exactly one $2 in $SRC, found: ${matches[*]}" >&2
        exit 1
    fi
    ln -sfn "${matches[0]}" "$DEST/$1"
}
link libb64.so.0d 'libb64-*.so.0d'
link libcudart.so.12 'libcudart-*.so.12*'
touch "$DEST/.installed"
echo "perf_analyzer libraries linked in $DEST"
