#!/usr/bin/env bash
# Fetch offline sample data (Debian's opencv-doc package) into .cache/data/. Idempotent.
#   vtest.avi            768x576 pedestrian video (10 fps, 795 frames)
#   messi5.jpg           football photo with players
#   fruits.jpg           still life without people
#   squirrel_cls.jpg     an animal photo (for the YOLOX-tiny animal checkpoint)
# Usage: scripts/fetch_sample_data.sh [CACHE_DIR]   (default: .cache)
set -euo pipefail
cache="${1:-.cache}"
data="$cache/data"
files=(vtest.avi messi5.jpg fruits.jpg squirrel_cls.jpg)

missing=0
for f in "${files[@]}"; do [[ -s "$data/$f" ]] || missing=1; done
[[ $missing == 0 ]] && exit 0

debdir="$cache/deb"
mkdir -p "$debdir" "$data"
if ! ls "$debdir"/opencv-doc_*.deb >/dev/null 2>&1; then
    # apt-get download needs package lists; refresh them once if the first try fails.
    (cd "$debdir" && apt-get download opencv-doc) || { apt-get update -qq && (cd "$debdir" && apt-get download opencv-doc); }
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$(ls "$debdir"/opencv-doc_*.deb | head -1)" "$tmp"
src="$tmp/usr/share/doc/opencv-doc/examples/data"
for f in "${files[@]}"; do cp "$src/$f" "$data/$f"; done
cp "$tmp/usr/share/doc/opencv-doc/copyright" "$data/opencv-doc.copyright"
# The .deb is 96 MB; the extracted files are all we need.
rm -f "$debdir"/opencv-doc_*.deb
