#!/bin/bash
# Builds the weir .deb with debhelper and leaves it in dist/.
#
#   packaging/build-deb.sh           (make deb)        for this machine: dist/weir_VERSION_ARCH.deb
#   packaging/build-deb.sh --focal   (make deb-focal)  for Ubuntu 20.04: dist/weir_VERSION~focal_ARCH.deb,
#                                    built in a Debian 11 (bullseye) chroot, which has the glibc (2.31) and
#                                    OpenSSL (1.1.1) of Ubuntu 20.04; its Depends are checked against what
#                                    Ubuntu 20.04 has (see FOCAL_VERSIONS in packaging/lib.sh).
#
# Either way the source tree (as git sees it, with untracked files that .gitignore does not exclude) is copied to
# a scratch directory, packaging/debian is laid in as debian/, and `dpkg-buildpackage -b -us -uc` runs there: the
# working tree is never written to, except dist/. The build log is kept beside the packages
# (dist/weir_VERSION[~focal]_ARCH.build).
#
# The bullseye chroot is made once with mmdebstrap (about a minute) and reused from
# $WEIR_CHROOT_CACHE/bullseye-build (default /var/cache/weir-chroots); remove it to start afresh.
# Needs root for apt-get, mmdebstrap and chroot.
set -euo pipefail
# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

focal=0
case "${1:-}" in
--focal) focal=1 ;;
"") ;;
-h | --help)
    sed -n '2,17s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
*) die "usage: $0 [--focal]" ;;
esac

version=$(weir_version)
dist=$WEIR_ROOT/dist
mkdir -p "$dist"

# Build-Depends of packaging/debian/control as plain package names (for mmdebstrap --include).
build_depends_names() {
    sed -n '/^Build-Depends:/,/^[A-Z][A-Za-z-]*:/{/^Build-Depends:/{s/^Build-Depends://;p;d};/^[A-Z]/d;p}' \
        "$WEIR_ROOT/packaging/debian/control" | tr ',' '\n' | sed 's/(.*)//; s/\[.*\]//; s/<.*>//; s/ //g' |
        sed 's/^debhelper-compat$/debhelper/' | grep -v '^$' | sort -u | paste -sd, -
}

# collect BUILDDIR VERSION: moves the outputs of dpkg-buildpackage (in BUILDDIR) to dist/.
collect() {
    local dir=$1 v=$2 f n=0
    for f in "$dir"/weir_"$v"_*.deb "$dir"/weir-dbgsym_"$v"_*.deb "$dir"/weir_"$v"_*.buildinfo \
        "$dir"/weir_"$v"_*.changes; do
        [ -e "$f" ] || continue
        mv -f "$f" "$dist/"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] || die "dpkg-buildpackage left no package in $dir"
}

# run_logged LOG CMD...: runs CMD with its output in LOG; on failure shows the end of the log.
run_logged() {
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 80 "$log" >&2
        die "build failed; the whole log is $log"
    fi
}

report() {
    local deb=$1
    say "built $deb"
    dpkg-deb -f "$deb" Package Version Architecture Depends | sed 's/^/    /' >&2
}

build_host() {
    local arch tree log deb
    arch=$(dpkg --print-architecture)
    ensure_host_tools dpkg-dev debhelper
    work=$(mktemp -d /tmp/weir-deb.XXXXXX) # global: the EXIT trap removes it
    trap 'rm -rf "$work"' EXIT
    tree=$work/weir-$version
    copy_source "$tree"
    stage_debian "$tree"
    if ! (cd "$tree" && dpkg-checkbuilddeps) 2>/dev/null; then
        [ "$(id -u)" -eq 0 ] || { (cd "$tree" && dpkg-checkbuilddeps) || true; die "install the build dependencies above"; }
        say "installing the build dependencies"
        (cd "$tree" && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q --no-install-recommends ./ >/dev/null) || {
            apt-get update -q >/dev/null
            (cd "$tree" && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q --no-install-recommends ./ >/dev/null)
        }
    fi
    log=$dist/weir_${version}_$arch.build
    say "dpkg-buildpackage -b -us -uc (log: ${log#"$WEIR_ROOT"/})"
    run_logged "$log" sh -c "cd '$tree' && dpkg-buildpackage -b -us -uc -Jauto"
    collect "$work" "$version"
    deb=$dist/weir_${version}_$arch.deb
    report "$deb"
}

# The bullseye build chroot, made when missing. mmdebstrap works in a scratch directory that is renamed when
# complete, so an interrupted run never leaves a half-made chroot to be reused.
ensure_build_chroot() {
    local root=$1 tmp
    [ -f "$root/.weir-ready" ] && return 0
    ensure_host_tools mmdebstrap
    tmp=$root.new
    remove_chroot "$tmp"
    # Package lists are kept so that new build dependencies can be installed later without a new chroot.
    make_chroot bullseye "$tmp" --include="$(build_depends_names)" --skip=cleanup/apt/lists
    touch "$tmp/.weir-ready"
    remove_chroot "$root"
    mv "$tmp" "$root"
}

build_focal() {
    local root=$WEIR_CHROOT_CACHE/bullseye-build fversion=$version~focal arch tree log deb date
    ensure_build_chroot "$root"
    ensure_etc_hosts "$root"
    arch=$(in_chroot "$root" dpkg --print-architecture)
    # shellcheck disable=SC2064 # expanded now: $root is local
    trap "chroot_umount_all; rm -rf --one-file-system '$root/build'" EXIT
    trap 'exit 143' TERM INT
    remove_chroot "$root/build"
    tree=$root/build/weir-$version
    copy_source "$tree"
    stage_debian "$tree"
    # A changelog entry of its own gives the package the version VERSION~focal: it sorts before VERSION, so the
    # Debian 12 build replaces it on an upgrade, and the two files can be told apart. Its date is one second after
    # the release's, which keeps the build reproducible (dpkg takes SOURCE_DATE_EPOCH from it).
    date=$(sed -n 's/^ -- .*>  //p' "$tree/debian/changelog" | head -n 1)
    date=$(LC_ALL=C date -u -R -d "@$(($(date -d "$date" +%s) + 1))")
    {
        printf 'weir (%s) focal; urgency=medium\n\n' "$fversion"
        printf '  * Built for Ubuntu 20.04 (focal) in a Debian 11 (bullseye) chroot:\n'
        printf '    the same glibc (2.31) and OpenSSL (1.1.1).\n\n'
        printf ' -- %s  %s\n\n' "$(sed -n 's/^Maintainer: //p' "$tree/debian/control")" "$date"
        cat "$tree/debian/changelog"
    } >"$tree/debian/changelog.new"
    mv "$tree/debian/changelog.new" "$tree/debian/changelog"

    chroot_mount "$root" proc
    log=$dist/weir_${fversion}_$arch.build
    say "dpkg-buildpackage -b -us -uc in the bullseye chroot (log: ${log#"$WEIR_ROOT"/})"
    run_logged "$log" in_chroot "$root" sh -c "
        set -e
        cd /build/weir-$version
        if ! dpkg-checkbuilddeps; then
            apt-get update -q
            apt-get build-dep -y -q --no-install-recommends ./
        fi
        dpkg-buildpackage -b -us -uc -Jauto"
    chroot_umount_all
    collect "$root/build" "$fversion"
    deb=$dist/weir_${fversion}_$arch.deb
    report "$deb"
    say "checking Depends against Ubuntu 20.04"
    check_focal_depends "$deb" >&2 || die "$deb depends on versions that Ubuntu 20.04 does not have"
}

if [ "$focal" = 1 ]; then
    with_lock bullseye-build build_focal
else
    build_host
fi
