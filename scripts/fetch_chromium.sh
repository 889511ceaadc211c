#!/usr/bin/env bash
# Debian 12's Chromium unpacked into DEST without installing it system-wide, plus the shared libraries it
# links that this machine lacks (ldd decides). Idempotent. The live view's browser test
# (tests/integration/test_fleet_view.py) runs DEST/usr/lib/chromium/chromium --headless with
# LD_LIBRARY_PATH=DEST/usr/lib/x86_64-linux-gnu:DEST/usr/lib/x86_64-linux-gnu/pulseaudio.
# Usage: scripts/fetch_chromium.sh [DEST]   (default: .cache/chromium)
set -euo pipefail
dest="${1:-.cache/chromium}"
binary="$dest/usr/lib/chromium/chromium"
libdir="$dest/usr/lib/x86_64-linux-gnu"
# Library -> the Debian 12 package that ships it (what chromium links, directly or not, that a minimal
# Debian 12 may lack).
declare -A package_of=(
    [libopenh264.so.7]=libopenh264-7 [libdouble-conversion.so.3]=libdouble-conversion3
    [libharfbuzz-subset.so.0]=libharfbuzz-subset0 [libharfbuzz.so.0]=libharfbuzz0b
    [libpulse.so.0]=libpulse0 [libpulsecommon-16.1.so]=libpulse0 [libsndfile.so.1]=libsndfile1
    [libasyncns.so.0]=libasyncns0 [libFLAC.so.12]=libflac12 [libopus.so.0]=libopus0
    [libogg.so.0]=libogg0 [libvorbis.so.0]=libvorbis0a [libvorbisenc.so.2]=libvorbisenc2
    [libmp3lame.so.0]=libmp3lame0 [libmpg123.so.0]=libmpg123-0 [libXNVCtrl.so.0]=libxnvctrl0
    [libminizip.so.1]=libminizip1 [libopenjp2.so.7]=libopenjp2-7 [libasound.so.2]=libasound2
    [libatk-bridge-2.0.so.0]=libatk-bridge2.0-0 [libatk-1.0.so.0]=libatk1.0-0
    [libatspi.so.0]=libatspi2.0-0 [libavahi-client.so.3]=libavahi-client3
    [libavahi-common.so.3]=libavahi-common3 [libcairo.so.2]=libcairo2 [libcups.so.2]=libcups2
    [libdatrie.so.1]=libdatrie1 [libdav1d.so.6]=libdav1d6 [libdrm.so.2]=libdrm2
    [libfontconfig.so.1]=libfontconfig1 [libfreetype.so.6]=libfreetype6 [libfribidi.so.0]=libfribidi0
    [libgbm.so.1]=libgbm1 [libgio-2.0.so.0]=libglib2.0-0 [libglib-2.0.so.0]=libglib2.0-0
    [libgmodule-2.0.so.0]=libglib2.0-0 [libgobject-2.0.so.0]=libglib2.0-0
    [libgraphite2.so.3]=libgraphite2-3 [libjpeg.so.62]=libjpeg62-turbo [liblcms2.so.2]=liblcms2-2
    [libnspr4.so]=libnspr4 [libplc4.so]=libnspr4 [libplds4.so]=libnspr4 [libnss3.so]=libnss3
    [libnssutil3.so]=libnss3 [libsmime3.so]=libnss3 [libpango-1.0.so.0]=libpango-1.0-0
    [libpixman-1.so.0]=libpixman-1-0 [libpng16.so.16]=libpng16-16 [libthai.so.0]=libthai0
    [libwayland-server.so.0]=libwayland-server0 [libX11.so.6]=libx11-6 [libXau.so.6]=libxau6
    [libxcb-render.so.0]=libxcb-render0 [libxcb-shm.so.0]=libxcb-shm0 [libxcb.so.1]=libxcb1
    [libXcomposite.so.1]=libxcomposite1 [libXdamage.so.1]=libxdamage1 [libXdmcp.so.6]=libxdmcp6
    [libXext.so.6]=libxext6 [libXfixes.so.3]=libxfixes3 [libXi.so.6]=libxi6
    [libxkbcommon.so.0]=libxkbcommon0 [libXrandr.so.2]=libxrandr2 [libXrender.so.1]=libxrender1
    [libexpat.so.1]=libexpat1 [libdbus-1.so.3]=libdbus-1-3 [libbsd.so.0]=libbsd0 [libmd.so.0]=libmd0
    [libbrotlicommon.so.1]=libbrotli1 [libbrotlidec.so.1]=libbrotli1 [libffi.so.8]=libffi8
)

missing() {
    LD_LIBRARY_PATH="$libdir:$libdir/pulseaudio" ldd "$binary" | awk '/not found/ {print $1}' | sort -u
}
if [[ -x "$binary" ]] && [[ -z "$(missing)" ]]; then exit 0; fi

# shellcheck source=debian_unpack.sh
source "$(dirname "$0")/debian_unpack.sh"
unpack_with_libraries fetch_chromium chromium chromium-common
touch "$binary"  # newer than this script, so make sees it as done
LD_LIBRARY_PATH="$libdir:$libdir/pulseaudio" "$binary" --headless --no-sandbox --version
