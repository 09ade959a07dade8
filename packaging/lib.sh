# shellcheck shell=bash disable=SC2016
# Shared by packaging/build-deb.sh and packaging/test-package.sh (sourced, bash).
#
# Chroots are made with mmdebstrap from the Debian mirror that this machine's apt uses, and cached under
# $WEIR_CHROOT_CACHE (default /var/cache/weir-chroots):
#   bullseye-build/           Debian 11 with the build dependencies, reused by `make deb-focal`
#   SUITE-minbase.tar.zst     a minimal Debian SUITE (bullseye, bookworm), unpacked afresh for each package test
#   apt-archives/SUITE/       the .debs the package tests downloaded, so that a second run downloads nothing
# Remove the directory to start from scratch; nothing else refers to it.

WEIR_CHROOT_CACHE=${WEIR_CHROOT_CACHE:-/var/cache/weir-chroots}
WEIR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The package's version, from the top entry of packaging/debian/changelog; it must match CMakeLists.txt's
# project(VERSION), so that `weir --version` and the package agree.
weir_version() {
    local deb cmake
    deb=$(sed -n '1s/^weir (\([^)]*\)).*/\1/p' "$WEIR_ROOT/packaging/debian/changelog")
    cmake=$(sed -n 's/^project(weir VERSION \([0-9.]*\).*/\1/p' "$WEIR_ROOT/CMakeLists.txt")
    [ -n "$deb" ] || die "cannot read the version from packaging/debian/changelog"
    [ "$deb" = "$cmake" ] ||
        die "packaging/debian/changelog is at $deb but CMakeLists.txt at $cmake: add a changelog entry (dch -v $cmake)"
    printf '%s\n' "$deb"
}

# The Debian mirror (and security mirror) that apt on this machine uses; WEIR_DEBIAN_MIRROR and
# WEIR_DEBIAN_SECURITY_MIRROR override them.
# Prints the archive URI apt on this machine uses for the repository labelled $2, else $3; $1 overrides both.
apt_mirror() {
    local m=$1
    if [ -z "$m" ]; then
        m=$(apt-get indextargets --format '$(REPO_URI) $(LABEL)' 'Created-By: Packages' 2>/dev/null |
            awk -v label="$2" '$2 == label { print $1; exit }')
    fi
    printf '%s\n' "${m:-$3}"
}
debian_mirror() {
    apt_mirror "${WEIR_DEBIAN_MIRROR:-}" Debian http://deb.debian.org/debian/
}
debian_security_mirror() {
    apt_mirror "${WEIR_DEBIAN_SECURITY_MIRROR:-}" Debian-Security http://deb.debian.org/debian-security/
}

# Installs the host tools the scripts need (as root; otherwise says what to install).
ensure_host_tools() {
    "$WEIR_ROOT/scripts/ensure-packages.sh" "$@"
}

# mmdebstrap SUITE TARGET [mmdebstrap options...]: a Debian SUITE with main, SUITE-updates and SUITE-security.
# TARGET is a directory or a .tar.zst file. Runs with a time limit, so that a stalled mirror fails the run.
make_chroot() {
    local suite=$1 target=$2 mirror security
    shift 2
    mirror=$(debian_mirror)
    security=$(debian_security_mirror)
    say "mmdebstrap $suite -> $target (mirror $mirror)"
    timeout 900 mmdebstrap --mode=root --variant=minbase --quiet "$@" "$suite" "$target" \
        "deb $mirror $suite main" \
        "deb $mirror $suite-updates main" \
        "deb $security $suite-security main"
    ensure_etc_hosts "$target"
}

# A minbase chroot has no /etc/hosts, so "localhost" resolves to nothing there (the unit tests of the package build
# connect to it by name): the usual one, when missing. (A tarball target is left alone: its root is written when
# unpacked, and this runs again then.)
ensure_etc_hosts() {
    local root=$1
    [ -d "$root/etc" ] || return 0
    [ -e "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
}

# Runs "$@" under an exclusive lock named NAME in the cache directory.
with_lock() {
    local name=$1
    shift
    mkdir -p "$WEIR_CHROOT_CACHE"
    (
        flock -w 1800 9 || die "timed out waiting for $WEIR_CHROOT_CACHE/.$name.lock"
        "$@"
    ) 9>"$WEIR_CHROOT_CACHE/.$name.lock"
}

# Mount bookkeeping: every mount made through chroot_mount is undone by chroot_umount_all (in EXIT traps).
WEIR_MOUNTS=()
chroot_mount() { # chroot_mount ROOT proc | ROOT bind HOSTDIR PATH_IN_ROOT
    local root=$1 kind=$2
    case "$kind" in
    proc)
        mkdir -p "$root/proc"
        mount -t proc proc "$root/proc"
        WEIR_MOUNTS+=("$root/proc")
        ;;
    bind)
        mkdir -p "$3" "$root$4"
        mount --bind "$3" "$root$4"
        WEIR_MOUNTS+=("$root$4")
        ;;
    esac
}
chroot_umount_all() {
    local i m
    for ((i = ${#WEIR_MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${WEIR_MOUNTS[$i]}
        if mountpoint -q "$m"; then
            umount "$m" 2>/dev/null || umount -l "$m" || echo "warning: cannot unmount $m" >&2
        fi
    done
    WEIR_MOUNTS=()
}
# Fails when anything is still mounted below ROOT; used before removing a chroot.
no_mounts_below() {
    local root
    root=$(realpath "$1")
    ! awk -v r="$root/" 'index($2 "/", r) == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}
# Removes a chroot directory, never crossing into a mount point.
remove_chroot() {
    [ -d "$1" ] || return 0
    no_mounts_below "$1" || die "refusing to remove $1: something is still mounted below it"
    rm -rf --one-file-system "$1"
}

# Runs a command in a chroot with a clean environment.
in_chroot() {
    local root=$1
    shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        chroot "$root" "$@"
}

# Copies the source tree (what git tracks, plus untracked files that .gitignore does not exclude; or, outside
# git, the tree less build outputs) to DEST, which must not exist.
copy_source() {
    local dest=$1
    mkdir -p "$dest"
    if git -C "$WEIR_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$WEIR_ROOT" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
            tar --null -T - -cf -) | tar -C "$dest" -xf -
    else
        tar -C "$WEIR_ROOT" --exclude-vcs --exclude='./build*' --exclude=./dist --exclude=./debian \
            --exclude='./obj-*' -cf - . | tar -C "$dest" -xf -
    fi
}

# Lays debian/ into a copied source tree: packaging/debian plus the unit file.
stage_debian() {
    local tree=$1
    rm -rf "$tree/debian"
    cp -a "$WEIR_ROOT/packaging/debian" "$tree/debian"
    cp "$WEIR_ROOT/packaging/weir.service" "$tree/debian/weir.service"
}

# What Ubuntu 20.04 (focal, with focal-updates) has of each library the focal package may depend on.
# Lower versions than the real ones would only make the check stricter.
FOCAL_VERSIONS="
adduser 3.118ubuntu2
debconf 1.5.73
init-system-helpers 1.57
libc6 2.31-0ubuntu9
libcurl4 7.68.0-1ubuntu2
libgcc-s1 10-20200411-0ubuntu1
libh2o0.13 2.2.5+dfsg2-2
libhiredis0.14 0.14.0-6
libssl1.1 1.1.1f-1ubuntu2
libsystemd0 245.4-4ubuntu3
libuv1 1.34.2-1ubuntu1
libyajl2 2.1.0-3
libyaml-0-2 0.2.2-1
zlib1g 1:1.2.11.dfsg-2ubuntu1
"

# check_focal_depends DEB: every relation of Depends and Pre-Depends must be satisfied by FOCAL_VERSIONS (for an
# alternative "a | b", one of them). Prints each relation with its verdict; returns non-zero when one fails.
check_focal_depends() {
    local deb=$1 fields rel ok=0
    fields=$(dpkg-deb -f "$deb" Pre-Depends Depends | sed -n 's/^[A-Za-z-]*: //p' | tr '\n' ',')
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        if focal_satisfies "$rel"; then
            printf '  ok    %s\n' "$rel"
        else
            printf '  FAIL  %s  (Ubuntu 20.04 has no such version)\n' "$rel"
            ok=1
        fi
    done < <(printf '%s' "$fields" | tr ',' '\n' | sed 's/^ *//; s/ *$//')
    return $ok
}
focal_satisfies() { # one relation, possibly with alternatives
    local alt name op ver have
    while IFS= read -r alt; do
        alt=$(printf '%s' "$alt" | sed 's/^ *//; s/ *$//; s/:any//')
        name=${alt%% *}
        name=${name%%(*}
        have=$(printf '%s\n' "$FOCAL_VERSIONS" | awk -v p="$name" '$1 == p { print $2 }')
        [ -n "$have" ] || continue
        if [[ $alt =~ \(\ *([<>=]+)\ *([^\)\ ]+)\ *\) ]]; then
            op=${BASH_REMATCH[1]}
            ver=${BASH_REMATCH[2]}
            case "$op" in
            '>=') op=ge ;; '<=') op=le ;; '=') op=eq ;; '>>') op=gt ;; '<<') op=lt ;; *) continue ;;
            esac
            dpkg --compare-versions "$have" "$op" "$ver" && return 0
        else
            return 0
        fi
    done < <(printf '%s\n' "$1" | tr '|' '\n')
    return 1
}
