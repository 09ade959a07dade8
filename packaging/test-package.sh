#!/bin/bash
# shellcheck disable=SC2016 # dpkg-query formats are single-quoted on purpose
# make test-package: builds both packages and installs each one, with apt, into a fresh minimal chroot:
#   dist/weir_VERSION~focal_ARCH.deb (make deb-focal) into Debian 11 (bullseye: glibc 2.31, OpenSSL 1.1.1,
#   as on Ubuntu 20.04), and dist/weir_VERSION_ARCH.deb (make deb) into Debian 12 (bookworm). In each:
#   - the weir user exists, the files are where they belong, /etc/weir/server.yaml is a conffile that passes
#     `weir -t` when checked as the weir user;
#   - weir, started as the weir user with the installed configuration (its port changed to 0, so the kernel picks
#     a free one, read back from the log), serves /upload, /calc and, when conf/server.yaml has a /cache path,
#     /cache over HTTP/1.1 and h2c on 127.0.0.1 (the chroot shares this machine's network), writes its access log,
#     and exits 0 on SIGTERM;
#   - with examples/server-s3.yaml (its endpoint an s3rver started on this machine, tests/s3rver), weir starts as the
#     weir user with the s3 upload backend and stores a POSTed image, read back from the store byte for byte;
#   - the changed /etc/weir/server.yaml survives `apt-get install --reinstall`;
#   - `apt-get purge` removes the package, its configuration and every file of the weir user.
# Also: lintian (no error or warning) on both packages, and the focal package's Depends against what Ubuntu 20.04
# has (packaging/lib.sh: FOCAL_VERSIONS). Then the focal package is installed in a bullseye container booted with
# systemd-nspawn, to check weir.service itself: start, restart, stop (systemd_test below; WEIR_TEST_SYSTEMD=0 skips).
#
# Chroots come from tarballs cached in $WEIR_CHROOT_CACHE (default /var/cache/weir-chroots), made with mmdebstrap
# when missing; downloaded .debs are kept there too. The whole run is bounded by WEIR_PACKAGE_TEST_TIMEOUT seconds
# (default 1500). Every mount and process it makes is undone on exit, also on failure, timeout or Ctrl-C.
# Needs root. The closing line is "test-package: N passed, N failed".
set -euo pipefail

if [ -z "${WEIR_PACKAGE_TEST_INNER:-}" ]; then
    [ "$(id -u)" -eq 0 ] || {
        echo "error: make test-package needs root (apt-get, mmdebstrap, chroot, mount)" >&2
        exit 1
    }
    export WEIR_PACKAGE_TEST_INNER=1
    # On time-out, timeout signals its whole process group (this script run again, and what it started); the
    # traps below clean up. That group is its own, which a Ctrl-C on the terminal does not reach: pass it on to
    # timeout, which passes it on to the group.
    timeout --kill-after=30 "${WEIR_PACKAGE_TEST_TIMEOUT:-1500}" "$0" "$@" &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
    while :; do
        rc=0
        wait "$child" || rc=$?
        kill -0 "$child" 2>/dev/null || break
    done
    exit "$rc"
fi

# shellcheck source=packaging/lib.sh
. "$(dirname "$0")/lib.sh"

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    printf '  ok    %s\n' "$*"
}
fail() {
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$*"
}
# check DESCRIPTION CMD...: runs CMD quietly and counts the result.
check() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}

WEIR_PIDS=()
WEIR_TEST_ROOTS=()
cleanup() {
    local pid root
    trap '' TERM INT HUP # a second signal must not cut the clean-up short
    for pid in "${WEIR_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    chroot_umount_all
    for root in "${WEIR_TEST_ROOTS[@]}"; do
        remove_chroot "$root" || true
    done
    if [ -n "${S3_DIR:-}" ]; then rm -rf "$S3_DIR"; fi
}
trap cleanup EXIT
trap 'echo "test-package: interrupted or timed out" >&2; exit 143' TERM INT

ensure_host_tools mmdebstrap zstd lintian curl dpkg-dev debhelper

version=$(weir_version)
arch=$(dpkg --print-architecture)
focal_deb=$WEIR_ROOT/dist/weir_${version}~focal_$arch.deb
host_deb=$WEIR_ROOT/dist/weir_${version}_$arch.deb
host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
has_cache=0
grep -qE '^[[:space:]]+/cache[[:space:]]*:' "$WEIR_ROOT/conf/server.yaml" && has_cache=1
has_status=0
grep -qE '^[[:space:]]+status\.metrics[[:space:]]*:' "$WEIR_ROOT/conf/server.yaml" && has_status=1

start=$(date +%s)
elapsed() { echo "$(($(date +%s) - start)) s"; }

# ---- 1. build ---------------------------------------------------------------------------------------------------
echo "== build (make deb-focal, make deb)"
if "$WEIR_ROOT/packaging/build-deb.sh" --focal; then ok "make deb-focal: ${focal_deb#"$WEIR_ROOT"/}"; else fail "make deb-focal"; fi
if "$WEIR_ROOT/packaging/build-deb.sh"; then ok "make deb: ${host_deb#"$WEIR_ROOT"/}"; else fail "make deb"; fi
echo "   ($(elapsed))"

# ---- 2. lintian and the focal Depends ----------------------------------------------------------------------------
echo "== lintian"
for deb in "$focal_deb" "$host_deb"; do
    [ -f "$deb" ] || continue
    # Info tags are shown too. lintian warns when run as root; that line says nothing about the package.
    if out=$(lintian --fail-on error,warning --display-info "$deb" 2>&1); then
        ok "lintian ${deb##*/}"
    else
        fail "lintian ${deb##*/}"
    fi
    printf '%s\n' "$out" | { grep -v 'running with root privileges' || true; } | sed 's/^/        /'
done

echo "== Depends of the focal package, against Ubuntu 20.04"
if [ -f "$focal_deb" ]; then
    if check_focal_depends "$focal_deb"; then ok "focal Depends satisfiable on Ubuntu 20.04"; else fail "focal Depends"; fi
fi

# ---- 3. install and run in fresh chroots -------------------------------------------------------------------------
# The minimal SUITE tarball, made when missing (under a lock, in a scratch file renamed when complete).
ensure_tarball() {
    local suite=$1 tarball=$WEIR_CHROOT_CACHE/$1-minbase.tar.zst new=$WEIR_CHROOT_CACHE/$1-minbase.new.tar.zst
    if [ ! -s "$tarball" ]; then
        rm -f "$new"
        make_chroot "$suite" "$new"
        mv "$new" "$tarball"
    fi
}

# run_weir ROOT UID GID LOG [CONF]: starts weir as UID:GID in ROOT with the installed configuration (or CONF, a path
# in ROOT); sets weir_pid and base_url once it logs that it is ready.
run_weir() {
    local root=$1 uid=$2 gid=$3 log=$4 conf=${5:-/etc/weir/server.yaml} i hostport
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/weir -c "$conf" \
        </dev/null >"$log" 2>&1 &
    weir_pid=$!
    WEIR_PIDS+=("$weir_pid")
    for ((i = 0; i < 200; i++)); do
        if grep -q ' ready' "$log"; then
            hostport=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$log" | head -n 1)
            base_url=http://$hostport
            [ -n "$hostport" ] && return 0
            break
        fi
        kill -0 "$weir_pid" 2>/dev/null || break
        sleep 0.1
    done
    sed 's/^/        weir: /' "$log"
    return 1
}

# http_is METHOD PATH STATUS BODY_REGEX [curl args...]: one request, its status and (whole) body checked.
http_is() {
    local method=$1 path=$2 status=$3 regex=$4 body code
    shift 4
    body=$(mktemp)
    code=$(curl -sS -X "$method" -o "$body" -w '%{http_code}' --max-time 10 "$@" "$base_url$path" 2>&1) || true
    if [ "$code" = "$status" ] && grep -Eq "^$regex\$" "$body"; then
        ok "$method $path${*:+ [$*]} -> $code $(head -c 80 "$body")"
    else
        fail "$method $path${*:+ [$*]} -> $code $(head -c 200 "$body") (expected $status, body matching $regex)"
    fi
    rm -f "$body"
}

# stop_weir LOG: SIGTERM, then at most 20 s for a clean exit (status 0).
stop_weir() {
    local log=$1 i code
    kill -TERM "$weir_pid"
    for ((i = 0; i < 200; i++)); do
        kill -0 "$weir_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$weir_pid" 2>/dev/null; then
        kill -KILL "$weir_pid"
        wait "$weir_pid" 2>/dev/null || true
        fail "weir did not exit within 20 s of SIGTERM"
        sed 's/^/        weir: /' "$log"
        return
    fi
    code=0
    wait "$weir_pid" || code=$?
    if [ "$code" -eq 0 ]; then ok "SIGTERM: weir exited 0"; else
        fail "SIGTERM: weir exited $code"
        sed 's/^/        weir: /' "$log"
    fi
}

# test_in_chroot SUITE DEB
test_in_chroot() {
    local suite=$1 deb=$2 root log uid gid files f marker apt=()
    echo "== $suite: ${deb##*/} ($(elapsed))"
    if [ ! -f "$deb" ]; then
        fail "$suite: no package to test"
        return
    fi
    ensure_tarball "$suite"
    # Scratch chroots of runs that were killed outright (SIGKILL) are removed here; the lock keeps live ones.
    for f in "$WEIR_CHROOT_CACHE"/test-"$suite".*; do
        [ -d "$f" ] && remove_chroot "$f"
    done
    root=$(mktemp -d "$WEIR_CHROOT_CACHE/test-$suite.XXXXXX")
    WEIR_TEST_ROOTS+=("$root")
    tar -C "$root" --zstd -xpf "$WEIR_CHROOT_CACHE/$suite-minbase.tar.zst"
    chroot_mount "$root" proc
    chroot_mount "$root" bind "$WEIR_CHROOT_CACHE/apt-archives/$suite" /var/cache/apt/archives
    cp "$deb" "$root/tmp/"
    chmod 644 "$root/tmp/${deb##*/}"
    log=$root/tmp/weir.log
    apt=(timeout 600 apt-get -q -y -o Dpkg::Use-Pty=0 -o APT::Keep-Downloaded-Packages=true)

    # Installation with apt, which must find every dependency in the suite.
    if ! in_chroot "$root" "${apt[@]}" update >"$root/tmp/apt.log" 2>&1 ||
        ! in_chroot "$root" "${apt[@]}" install --no-install-recommends "/tmp/${deb##*/}" >>"$root/tmp/apt.log" 2>&1; then
        fail "$suite: apt-get install ./${deb##*/}"
        tail -n 30 "$root/tmp/apt.log" | sed 's/^/        /'
        return
    fi
    ok "$suite: apt-get install ./${deb##*/}"

    # The user and the files.
    uid=$(in_chroot "$root" id -u weir 2>/dev/null) || uid=
    gid=$(in_chroot "$root" id -g weir 2>/dev/null) || gid=
    if [ -n "$uid" ] && [ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ]; then ok "weir system user (uid $uid)"; else
        fail "weir system user exists (uid '$uid')"
        return
    fi
    check "weir's shell is nologin" test "$(in_chroot "$root" getent passwd weir | cut -d: -f7)" = /usr/sbin/nologin
    files=$(in_chroot "$root" dpkg -L weir)
    for f in /usr/bin/weir /etc/weir/server.yaml /lib/systemd/system/weir.service /usr/share/man/man8/weir.8.gz \
        /usr/share/doc/weir/copyright /usr/share/doc/weir/changelog.gz /usr/share/doc/weir/examples/server-tls.yaml \
        /usr/share/doc/weir/examples/server-redis.yaml /usr/share/doc/weir/examples/server-cluster.yaml \
        /usr/share/doc/weir/examples/server-s3.yaml \
        /etc/logrotate.d/weir /usr/lib/tmpfiles.d/weir.conf; do
        check "ships $f" grep -qx "$f" <<<"$files"
    done
    check "/etc/weir/server.yaml is a conffile" \
        grep -q '^ /etc/weir/server.yaml ' <<<"$(in_chroot "$root" dpkg-query -W -f='${Conffiles}\n' weir)"
    check "weir --version says $version" grep -qx "weir $version" <<<"$(in_chroot "$root" weir --version)"
    check "/var/log/weir is weir's" test "$(stat -c %u "$root/var/log/weir")" = "$uid"
    check "/run/weir (the control socket's) is weir's" test "$(stat -c %u "$root/run/weir")" = "$uid"
    check "weir -t -c /etc/weir/server.yaml (as weir)" \
        in_chroot "$root" setpriv --reuid="$uid" --regid="$gid" --clear-groups weir -t -c /etc/weir/server.yaml
    if [ "$has_cache" = 1 ]; then
        check "examples/server-redis.yaml passes weir -t" \
            in_chroot "$root" weir -t -c /usr/share/doc/weir/examples/server-redis.yaml
        check "examples/server-cluster.yaml passes weir -t" \
            in_chroot "$root" weir -t -c /usr/share/doc/weir/examples/server-cluster.yaml
    fi

    # A local change to the conffile: the kernel picks the port, and a marker shows that the change survives.
    marker="# changed by test-package $$"
    sed -i -E 's/^([[:space:]]*-?[[:space:]]*port:)[[:space:]]*[0-9]+/\1 0/' "$root/etc/weir/server.yaml"
    printf '%s\n' "$marker" >>"$root/etc/weir/server.yaml"

    if run_weir "$root" "$uid" "$gid" "$log"; then
        ok "weir started as weir on $base_url"
        http_is POST /upload 200 '\{ *"success": *true *\}'
        http_is GET /upload 405 '\{ *"error": *".*" *\}'
        http_is GET '/calc?n=10' 200 '\{ *"result": *285 *\}'
        http_is GET /calc 200 '\{ *"result": *[0-9]+ *\}'
        http_is GET '/calc?n=10' 200 '\{ *"result": *285 *\}' --http2-prior-knowledge
        http_is GET /nowhere 404 '\{ *"error": *"not found" *\}'
        if [ "$has_status" = 1 ]; then
            http_is GET /livez 200 '\{ *"status": *"ok" *\}'
            http_is GET /readyz 200 '\{ *"status": *"ready", *"checks": *\[\] *\}'
            # the two HTTP/1.1 GETs of /calc above, counted
            http_is GET /metrics 200 'weir_http_requests_total\{path="/calc",method="GET",status="200",protocol="HTTP/1\.1"\} 2'
        else
            echo "  skip  /metrics, /livez, /readyz: conf/server.yaml has no status.metrics path"
        fi
        if [ "$has_cache" = 1 ]; then
            http_is PUT '/cache?key=pkg%20test&ttl=60' 200 '\{ *"success": *true *\}' --data-binary 'hello, weir'
            http_is GET '/cache?key=pkg%20test' 200 '\{ *"data": *"hello, weir" *\}'
            http_is DELETE '/cache?key=pkg%20test' 200 '\{ *"success": *true, *"deleted": *true *\}'
            http_is GET '/cache?key=pkg%20test' 200 '\{ *"data": *null *\}'
        else
            echo "  skip  /cache: conf/server.yaml has no /cache path"
        fi
        check "weir -s reload through /run/weir/control.sock (as weir)" \
            in_chroot "$root" setpriv --reuid="$uid" --regid="$gid" --clear-groups weir -c /etc/weir/server.yaml -s reload
        http_is GET '/calc?n=10' 200 '\{ *"result": *285 *\}'
        stop_weir "$log"
        check "access log written, owned by weir" \
            test -s "$root/var/log/weir/access.log" -a "$(stat -c %u "$root/var/log/weir/access.log" 2>/dev/null)" = "$uid"
    else
        fail "weir started as weir with /etc/weir/server.yaml"
    fi

    s3_test "$root" "$uid" "$gid"

    # Reinstalling keeps the changed configuration, without a question.
    if in_chroot "$root" "${apt[@]}" install --reinstall "/tmp/${deb##*/}" </dev/null >>"$root/tmp/apt.log" 2>&1; then
        ok "apt-get install --reinstall"
    else
        fail "apt-get install --reinstall"
        tail -n 20 "$root/tmp/apt.log" | sed 's/^/        /'
    fi
    check "changed /etc/weir/server.yaml survives the reinstall" grep -qxF "$marker" "$root/etc/weir/server.yaml"
    check "no .dpkg-new or .dpkg-dist beside it" test -z "$(find "$root/etc/weir" -name '*.dpkg-*')"

    # Purge: package, configuration and the weir user's files go.
    if in_chroot "$root" "${apt[@]}" purge weir >>"$root/tmp/apt.log" 2>&1; then ok "apt-get purge weir"; else fail "apt-get purge weir"; fi
    check "package gone" test -z "$(in_chroot "$root" dpkg-query -W -f='${db:Status-Status}' weir 2>/dev/null |
        grep -v '^not-installed$')"
    check "/usr/bin/weir gone" test ! -e "$root/usr/bin/weir"
    check "/etc/weir gone" test ! -e "$root/etc/weir"
    check "/var/log/weir gone" test ! -e "$root/var/log/weir"
    check "/run/weir gone" test ! -e "$root/run/weir"
    check "no file of the weir user left" \
        test -z "$(find "$root" -xdev -path "$root/var/cache/apt/archives" -prune -o -uid "$uid" -print | head -n 5)"

    chroot_umount_all
    remove_chroot "$root"
}

# The S3 store of s3_test: an s3rver on this machine (the chroots share its network), started once.
S3_PORT=
start_store() {
    local i out
    [ -n "$S3_PORT" ] && return 0
    "$WEIR_ROOT/scripts/ensure-s3rver.sh" >/dev/null || return 1
    S3_DIR=$(mktemp -d)
    out=$S3_DIR/s3rver.out
    # Not holding the suite's lock (fd 8): the store outlives the suite's tests, and the next holder waits for it.
    node "$WEIR_ROOT/tests/s3rver/start.js" --dir "$S3_DIR/data" --bucket images >"$out" 2>&1 8>&- &
    WEIR_PIDS+=("$!")
    for ((i = 0; i < 200; i++)); do
        S3_PORT=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$out")
        [ -n "$S3_PORT" ] && return 0
        sleep 0.1
    done
    cat "$out" >&2
    return 1
}

# s3_test ROOT UID GID: weir with the installed examples/server-s3.yaml (endpoint and port changed) stores an image.
s3_test() {
    local root=$1 uid=$2 gid=$3 log=$1/tmp/weir-s3.log conf=/etc/weir/server-s3.yaml body key
    if ! start_store; then
        fail "s3rver for the s3 backend's check"
        return
    fi
    sed -e "s|^\([[:space:]]*upload.s3.endpoint:\).*|\1 http://127.0.0.1:$S3_PORT|" \
        -e 's|^\([[:space:]]*upload.s3.access-key-id:\).*|\1 S3RVER|' \
        -E -e 's/^([[:space:]]*-?[[:space:]]*port:)[[:space:]]*[0-9]+/\1 0/' \
        "$root/usr/share/doc/weir/examples/server-s3.yaml" >"$root$conf"
    printf 'S3RVER\n' >"$root/etc/weir/s3.secret"
    chown "$uid:$gid" "$root/etc/weir/s3.secret"
    chmod 600 "$root/etc/weir/s3.secret"
    check "examples/server-s3.yaml passes weir -t (as weir)" \
        in_chroot "$root" setpriv --reuid="$uid" --regid="$gid" --clear-groups weir -t -c "$conf"
    if ! run_weir "$root" "$uid" "$gid" "$log" "$conf"; then
        fail "weir started with the s3 upload backend"
        rm -f "$root$conf" "$root/etc/weir/s3.secret"
        return
    fi
    ok "weir started with the s3 upload backend on $base_url"
    head -c 65536 /dev/urandom >"$root/tmp/image.jpg"
    body=$(curl -sS --max-time 10 -F "image=@$root/tmp/image.jpg;type=image/jpeg" "$base_url/upload" 2>&1) || true
    key=$(sed -n 's/.*"key": *"\(uploads\/[0-9a-f]\{32\}\.jpg\)".*/\1/p' <<<"$body")
    if [ -n "$key" ]; then ok "POST /upload -> $(head -c 100 <<<"$body")"; else fail "POST /upload -> $body"; fi
    check "the object in the store is the image" \
        cmp -s "$root/tmp/image.jpg" <(curl -sS --max-time 10 "http://127.0.0.1:$S3_PORT/images/$key")
    stop_weir "$log"
    rm -f "$root$conf" "$root/etc/weir/s3.secret" "$root/tmp/image.jpg"
}

# systemd_test SUITE DEB (WEIR_TEST_SYSTEMD=0 leaves it out): boots a SUITE container with systemd-nspawn, the package
# installed and its service enabled as on a real machine, and checks the unit itself: ExecStartPre, the user, the
# sandbox (no new privileges, seccomp), LimitNOFILE, LogsDirectory, `systemctl restart weir`, a clean stop. Needs
# systemd-nspawn (package systemd-container) and cgroups it can use. Bullseye's systemd 247 is the closest to
# Ubuntu 20.04's 245 in Debian's archive; the unit uses no directive newer than 245.
systemd_test() {
    local suite=$1 deb=$2 root tarball=$WEIR_CHROOT_CACHE/$1-systemd.tar.zst port out nofile
    echo "== $suite, booted with systemd: ${deb##*/} ($(elapsed))"
    [ -f "$deb" ] || return 0
    mkdir -p "$WEIR_CHROOT_CACHE/apt-archives/$suite"
    if [ ! -s "$tarball" ]; then
        make_chroot "$suite" "$WEIR_CHROOT_CACHE/$suite-systemd.new.tar.zst" --include=systemd,systemd-sysv,curl
        mv "$WEIR_CHROOT_CACHE/$suite-systemd.new.tar.zst" "$tarball"
    fi
    root=$(mktemp -d "$WEIR_CHROOT_CACHE/test-$suite.XXXXXX")
    WEIR_TEST_ROOTS+=("$root")
    tar -C "$root" --zstd -xpf "$tarball"
    cp "$deb" "$root/tmp/"
    chroot_mount "$root" proc
    chroot_mount "$root" bind "$WEIR_CHROOT_CACHE/apt-archives/$suite" /var/cache/apt/archives
    if ! { in_chroot "$root" apt-get -q update &&
        in_chroot "$root" apt-get -q -y -o APT::Keep-Downloaded-Packages=true install --no-install-recommends \
            "/tmp/${deb##*/}"; } >"$root/tmp/apt.log" 2>&1; then
        fail "$suite (systemd): apt-get install"
        tail -n 20 "$root/tmp/apt.log" | sed 's/^/        /'
        return
    fi
    chroot_umount_all
    check "weir.service enabled by the package" test -L "$root/etc/systemd/system/multi-user.target.wants/weir.service"

    # The container shares this machine's network: a free port instead of 8080.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sed -i -E "s/^([[:space:]]*-?[[:space:]]*port:)[[:space:]]*[0-9]+/\1 $port/" "$root/etc/weir/server.yaml"
    # A one-shot unit runs the checks once the system is up, writes what it saw, and powers the container off.
    cp "$WEIR_ROOT/packaging/systemd-check.sh" "$root/usr/local/sbin/weir-systemd-check"
    chmod 755 "$root/usr/local/sbin/weir-systemd-check"
    printf '%s\n' '[Unit]' 'After=weir.service' 'Wants=weir.service' '[Service]' 'Type=oneshot' \
        "Environment=WEIR_PORT=$port" 'ExecStart=/usr/local/sbin/weir-systemd-check /root/check.txt' \
        'ExecStartPost=/bin/systemctl poweroff' \
        >"$root/etc/systemd/system/weir-check.service"
    ln -s /etc/systemd/system/weir-check.service "$root/etc/systemd/system/multi-user.target.wants/weir-check.service"
    if ! timeout 180 systemd-nspawn -q -D "$root" -b --register=no --keep-unit --console=pipe \
        >"$root/tmp/boot.log" 2>&1 || [ ! -s "$root/root/check.txt" ]; then
        fail "$suite (systemd): boot and check"
        tail -n 30 "$root/tmp/boot.log" | sed 's/^/        /'
        return
    fi
    out=$(cat "$root/root/check.txt")
    check "systemctl start weir: active (ExecStartPre weir -t passed)" grep -qx 'active=active' <<<"$out"
    check "POST /upload under systemd" grep -Eqx 'upload=\{"success": *true\}' <<<"$out"
    check "runs as weir" grep -qx 'user=weir' <<<"$out"
    check "NoNewPrivileges" grep -qx 'NoNewPrivs=1' <<<"$out"
    check "seccomp filter" grep -qx 'Seccomp=2' <<<"$out"
    check "LimitNOFILE=65536" grep -qx 'LimitNOFILE=65536' <<<"$out"
    nofile=$(sed -n 's/^nofile=\([0-9]*\) max=\([0-9]*\)$/\1 \2/p' <<<"$out")
    check "open files: 65536, or the container's hard limit if lower (${nofile:-?})" \
        test -n "$nofile" -a "${nofile% *}" = "$((${nofile#* } < 65536 ? ${nofile#* } : 65536))"
    check "Type=notify: READY=1 with a status line" grep -Eqx 'status=serving configuration [0-9]+' <<<"$out"
    check "systemctl restart weir, then /calc" grep -Eqx 'calc=\{"result": *285\}' <<<"$out"
    check "systemctl reload weir with a changed file: exit 0" grep -qx 'reload=0' <<<"$out"
    check "the new settings right after the reload" grep -Eqx 'calc_after_reload=\{"result": *2470\}' <<<"$out"
    check "systemctl status after the reload" grep -Eqx 'status_after_reload=serving configuration 2' <<<"$out"
    check "systemctl reload weir with a broken file fails" grep -Eqx 'broken_reload=[1-9][0-9]*' <<<"$out"
    check "the running configuration keeps serving" grep -Eqx 'calc_after_broken_reload=\{"result": *2470\}' <<<"$out"
    check "still active after the refused reload" grep -qx 'active_after_broken_reload=active' <<<"$out"
    check "the refused reload's errors in the journal, with file:line" grep -Eq 'journal: .*server\.yaml:[0-9]+: YAML syntax error' <<<"$out"
    check "LogsDirectory: /var/log/weir is weir:weir 750" grep -qx 'logdir=weir:weir:750' <<<"$out"
    check "systemctl stop weir: result success, exit 0" grep -qx 'stopped=success 0' <<<"$out"
    [ "$failed" -eq 0 ] || sed 's/^/        /' "$root/root/check.txt"
    remove_chroot "$root"
}

suite_test() { # run under a per-suite lock: the tarball, the scratch chroots and the apt cache are shared
    mkdir -p "$WEIR_CHROOT_CACHE/apt-archives/$1"
    test_in_chroot "$@"
}
with_lock_inline() { # with_lock, but in this shell, so that the counters and traps stay ours
    local name=$1
    shift
    mkdir -p "$WEIR_CHROOT_CACHE"
    exec 8>"$WEIR_CHROOT_CACHE/.$name.lock"
    flock -w 1800 8 || die "timed out waiting for $WEIR_CHROOT_CACHE/.$name.lock"
    "$@"
    exec 8>&-
}
with_lock_inline test-bullseye suite_test bullseye "$focal_deb"
with_lock_inline "test-$host_suite" suite_test "$host_suite" "$host_deb"
if [ "${WEIR_TEST_SYSTEMD:-1}" = 1 ]; then
    ensure_host_tools systemd-container python3
    with_lock_inline test-bullseye systemd_test bullseye "$focal_deb"
fi

echo "== done in $(elapsed)"
echo "test-package: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
