#!/usr/bin/env bash
# Debian 12's PostgreSQL 15 server unpacked into DEST without installing it system-wide, plus the shared
# libraries it links that this machine lacks (ldd decides). Idempotent. The ReID store's PostgreSQL tests
# (tests/integration/postgres.py) run DEST/usr/lib/postgresql/15/bin/{initdb,pg_ctl,postgres} with
# LD_LIBRARY_PATH=DEST/usr/lib/x86_64-linux-gnu; postgres finds its share/ files relative to its binary.
# Always our own copy, not a system install found on PATH: the tests then run the same server everywhere.
# Usage: scripts/fetch_postgres.sh [DEST]   (default: .cache/postgres)
set -euo pipefail
dest="${1:-.cache/postgres}"
bindir="$dest/usr/lib/postgresql/15/bin"
libdir="$dest/usr/lib/x86_64-linux-gnu"
binaries=(postgres initdb pg_ctl)
# Library -> the Debian 12 package that ships it (what postgres, initdb and pg_ctl link, directly or not).
declare -A package_of=(
    [libpq.so.5]=libpq5
    [libicuuc.so.72]=libicu72 [libicui18n.so.72]=libicu72 [libicudata.so.72]=libicu72
    [libxml2.so.2]=libxml2
    [libldap-2.5.so.0]=libldap-2.5-0 [liblber-2.5.so.0]=libldap-2.5-0
    [libsasl2.so.2]=libsasl2-2
    [libgssapi_krb5.so.2]=libgssapi-krb5-2 [libkrb5.so.3]=libkrb5-3 [libk5crypto.so.3]=libk5crypto3
    [libkrb5support.so.0]=libkrb5support0 [libkeyutils.so.1]=libkeyutils1 [libcom_err.so.2]=libcom-err2
    [liblz4.so.1]=liblz4-1 [libzstd.so.1]=libzstd1 [liblzma.so.5]=liblzma5 [libz.so.1]=zlib1g
    [libssl.so.3]=libssl3 [libcrypto.so.3]=libssl3
    [libpam.so.0]=libpam0g [libaudit.so.1]=libaudit1 [libcap-ng.so.0]=libcap-ng0
    [libsystemd.so.0]=libsystemd0 [libcap.so.2]=libcap2 [libgcrypt.so.20]=libgcrypt20
    [libgpg-error.so.0]=libgpg-error0
    [libgnutls.so.30]=libgnutls30 [libnettle.so.8]=libnettle8 [libhogweed.so.6]=libhogweed6
    [libgmp.so.10]=libgmp10 [libidn2.so.0]=libidn2-0 [libunistring.so.2]=libunistring2
    [libtasn1.so.6]=libtasn1-6 [libp11-kit.so.0]=libp11-kit0 [libffi.so.8]=libffi8
    [libstdc++.so.6]=libstdc++6 [libgcc_s.so.1]=libgcc-s1
)

missing() {
    for b in "${binaries[@]}"; do LD_LIBRARY_PATH="$libdir" ldd "$bindir/$b"; done | awk '/not found/ {print $1}' | sort -u
}
ready() { for b in "${binaries[@]}"; do [[ -x "$bindir/$b" ]] || return 1; done; [[ -z "$(missing)" ]]; }
if ready; then exit 0; fi

# shellcheck source=debian_unpack.sh
source "$(dirname "$0")/debian_unpack.sh"
unpack_with_libraries fetch_postgres postgresql-15
touch "$bindir/postgres"  # newer than this script, so make sees it as done
LD_LIBRARY_PATH="$libdir" "$bindir/postgres" --version
