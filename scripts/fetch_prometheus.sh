#!/usr/bin/env bash
# Debian's prometheus server binary, unpacked into DEST without installing it system-wide. Idempotent.
# The metrics test starts it against a local tritonserver (tests/integration/test_metrics.py).
# Usage: scripts/fetch_prometheus.sh [DEST]   (default: .cache/prometheus; the binary is DEST/usr/bin/prometheus)
set -euo pipefail
dest="${1:-.cache/prometheus}"
[[ -x "$dest/usr/bin/prometheus" ]] && exit 0

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # apt-get download runs as _apt where it can
# apt-get download needs package lists; a fresh machine has none, so refresh them once if the first try fails.
(cd "$tmp" && apt-get download prometheus) || { apt-get update -qq && (cd "$tmp" && apt-get download prometheus); }
mkdir -p "$dest"
dpkg-deb -x "$(ls "$tmp"/prometheus_*.deb | head -1)" "$dest"
touch "$dest/usr/bin/prometheus"  # newer than this script, so make sees it as done
version="$("$dest/usr/bin/prometheus" --version 2>&1)"  # not `| head -1`: SIGPIPE under pipefail
echo "${version%%$'\n'*}"
