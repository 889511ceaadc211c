#!/usr/bin/env bash
# Debian 12's Mosquitto 2.0.11 MQTT broker unpacked into DEST without installing it system-wide, plus the
# shared libraries it links that this machine lacks (ldd decides). Idempotent. The fleet's event tests
# (tests/integration/mosquitto.py) run DEST/usr/sbin/mosquitto with LD_LIBRARY_PATH=DEST/usr/lib/x86_64-linux-gnu.
# Always our own copy, not a system install found on PATH: the tests then run the same broker everywhere.
# Usage: scripts/fetch_mosquitto.sh [DEST]   (default: .cache/mosquitto)
set -euo pipefail
dest="${1:-.cache/mosquitto}"
binary="$dest/usr/sbin/mosquitto"
libdir="$dest/usr/lib/x86_64-linux-gnu"
# Library -> the Debian 12 package that ships it (every library mosquitto 2.0.11 links, directly or not).
declare -A package_of=(
    [libcjson.so.1]=libcjson1
    [libdlt.so.2]=libdlt2
    [libwrap.so.0]=libwrap0
    [libnsl.so.2]=libnsl2
    [libtirpc.so.3]=libtirpc3
    [libgssapi_krb5.so.2]=libgssapi-krb5-2 [libkrb5.so.3]=libkrb5-3 [libk5crypto.so.3]=libk5crypto3
    [libkrb5support.so.0]=libkrb5support0 [libkeyutils.so.1]=libkeyutils1 [libcom_err.so.2]=libcom-err2
    [libssl.so.3]=libssl3 [libcrypto.so.3]=libssl3
    [libcap.so.2]=libcap2
    [libsystemd.so.0]=libsystemd0 [libgcrypt.so.20]=libgcrypt20 [libgpg-error.so.0]=libgpg-error0
    [liblz4.so.1]=liblz4-1 [libzstd.so.1]=libzstd1 [liblzma.so.5]=liblzma5
)

missing() { LD_LIBRARY_PATH="$libdir" ldd "$binary" | awk '/not found/ {print $1}'; }
if [[ -x "$binary" ]] && [[ -z "$(missing)" ]]; then exit 0; fi

# shellcheck source=debian_unpack.sh
source "$(dirname "$0")/debian_unpack.sh"
unpack_with_libraries fetch_mosquitto mosquitto
touch "$binary"  # newer than this script, so make sees it as done
# `-h` prints the version line and exits 3.
version="$(LD_LIBRARY_PATH="$libdir" "$binary" -h || true)"
echo "${version%%$'\n'*}"
