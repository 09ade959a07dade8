#!/bin/sh
# Prints the packaged /etc/weir/server.yaml, made from the repository's conf/server.yaml so that the two
# cannot drift apart. The transformation, and all of it:
#   1. a header comment saying what the file is and how to check and apply a change;
#   2. the top-level `access-log:` becomes /var/log/weir/access.log: a live line is replaced, else a commented
#      one ("# access-log: ...") is replaced by a live one, else the line is added just before `hosts:`;
#   3. a top-level `control-socket: /run/weir/control.sock` is added just before `hosts:` (systemctl reload's way
#      to the running server), unless the source has one;
#   4. nothing else changes: listeners, threads, limits, hosts and paths are the repository's.
# The source must not name other files (TLS certificates and keys): a package cannot ship a site's keys, so
# the build stops with a message instead. The TLS example goes to /usr/share/doc/weir/examples/.
#
# usage: gen-server-yaml.sh conf/server.yaml > server.yaml
set -eu

src=${1:?usage: gen-server-yaml.sh conf/server.yaml}
log=/var/log/weir/access.log
control=/run/weir/control.sock

if grep -nE '^[^#]*(certificate-file|key-file)[[:space:]]*:' "$src" >&2; then
    echo "gen-server-yaml.sh: $src names TLS files (above); the packaged default config cannot ship them" >&2
    exit 1
fi

cat <<EOF
# /etc/weir/server.yaml: the configuration of the weir service (see weir(8)).
# Made from the repository's conf/server.yaml; only access-log and control-socket differ. Examples with TLS and a Redis
# cache backend are in /usr/share/doc/weir/examples/.
# After a change:  systemctl reload weir   (checks the file first; the service keeps its configuration if it has errors)

EOF

# Two passes over the source: the first finds where access-log goes (a live top-level line, else a commented
# one such as "# access-log: ...", else just before `hosts:`), the second prints with that line replaced.
awk -v path="$log" -v control="$control" '
    NR == FNR {
        if (!live && /^access-log[[:space:]]*:/) live = FNR
        if (!commented && /^#[[:space:]]*access-log[[:space:]]*:/) commented = FNR
        if (!hosts && /^hosts[[:space:]]*:/) hosts = FNR
        if (/^control-socket[[:space:]]*:/) has_control = 1
        next
    }
    FNR == 1 { at = live ? live : commented ? commented : hosts }
    FNR == hosts && !has_control { print "control-socket: " control }
    FNR == at && at != hosts { print "access-log: " path; next }
    FNR == at { print "access-log: " path }
    { print }
    END { if (!at) print "access-log: " path }
' "$src" "$src"
