# Sourced by scripts/fetch_*.sh: unpack a Debian 12 package into $dest without installing it, then the
# packages of the shared libraries it links that this machine lacks, until ldd finds them all.
# The caller sets `dest` and `package_of` (library -> package) and defines `missing` (the libraries ldd
# does not find, one per line).
# Usage: unpack_with_libraries NAME PACKAGE...   (NAME prefixes the error messages)
unpack_with_libraries() {
    local name=$1 tmp libs lib
    shift
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand $tmp now: the trap runs after this function's locals are gone
    trap "rm -rf '$tmp'" EXIT
    chmod 755 "$tmp"  # apt-get download runs as _apt where it can
    # apt-get download needs package lists; a fresh machine has none, so refresh them once if the first try fails.
    download() { (cd "$tmp" && apt-get download "$@") || { apt-get update -qq && (cd "$tmp" && apt-get download "$@"); }; }
    unpack() { for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dest"; done; rm -f "$tmp"/*.deb; }
    mkdir -p "$dest"
    download "$@"
    unpack
    for _ in 1 2 3; do  # a library's own dependencies show only once it is there
        libs="$(missing)"
        [[ -z "$libs" ]] && break
        local packages=()
        for lib in $libs; do
            [[ -n "${package_of[$lib]:-}" ]] || { echo "$name: no package known for $lib" >&2; exit 1; }
            packages+=("${package_of[$lib]}")
        done
        # shellcheck disable=SC2046  # one word per package
        download $(printf '%s\n' "${packages[@]}" | sort -u)
        unpack
    done
    [[ -z "$(missing)" ]] || { echo "$name: still missing: $(missing)" >&2; exit 1; }
}
