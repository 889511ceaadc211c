#!/usr/bin/env bash
# Debian 12's HAProxy 2.6 unpacked into DEST without installing it system-wide, plus the shared libraries
# it links that this machine lacks (ldd decides: liblua5.3-0 and the OpenTracing libraries on a fresh
# Debian 12). Idempotent. The gateway (pipeline_server/gateway.py) runs DEST/usr/sbin/haproxy with
# LD_LIBRARY_PATH=DEST/usr/lib/x86_64-linux-gnu.
# HAProxy rather than nginx: the scale-out (several tritonservers) needs active health checks and a
# consistent hash on a header (`balance hdr(camera-id)` + `hash-type consistent`), which OSS nginx lacks.
# Usage: scripts/fetch_haproxy.sh [DEST]   (default: .cache/haproxy)
set -euo pipefail
dest="${1:-.cache/haproxy}"
binary="$dest/usr/sbin/haproxy"
libdir="$dest/usr/lib/x86_64-linux-gnu"
# Library -> the Debian 12 package that ships it (every library haproxy 2.6 links, directly or not).
declare -A package_of=(
    [liblua5.3.so.0]=liblua5.3-0
    [libopentracing-c-wrapper.so.0]=libopentracing-c-wrapper0
    [libopentracing.so.1]=libopentracing1
    [libssl.so.3]=libssl3 [libcrypto.so.3]=libssl3
    [libpcre2-8.so.0]=libpcre2-8-0
    [libcrypt.so.1]=libcrypt1
    [libsystemd.so.0]=libsystemd0
    [libstdc++.so.6]=libstdc++6
)

missing() { LD_LIBRARY_PATH="$libdir" ldd "$binary" | awk '/not found/ {print $1}'; }
if [[ -x "$binary" ]] && [[ -z "$(missing)" ]]; then exit 0; fi

# shellcheck source=debian_unpack.sh
source "$(dirname "$0")/debian_unpack.sh"
unpack_with_libraries fetch_haproxy haproxy
touch "$binary"  # newer than this script, so make sees it as done
# Not `| head -1`: under pipefail haproxy's SIGPIPE (exit 141) would fail the step.
version="$(LD_LIBRARY_PATH="$libdir" "$binary" -v)"
echo "${version%%$'\n'*}"
