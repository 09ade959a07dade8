#!/bin/sh
# Runs inside the container that `WEIR_TEST_SYSTEMD=1 make test-package` boots with systemd (see systemd_test in
# packaging/test-package.sh), as a one-shot unit after weir.service: prints key=value lines about the running
# service for the test to check. WEIR_PORT is the port weir listens on (127.0.0.1).

# usage: weir-systemd-check OUTPUT_FILE
exec >"$1" 2>&1
url=http://127.0.0.1:$WEIR_PORT

wait_ready() {
    for _ in $(seq 100); do
        curl -fsS "$url/calc?n=10" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

wait_ready
echo "active=$(systemctl is-active weir)"
echo "upload=$(curl -sS -X POST "$url/upload")"
pid=$(systemctl show -p MainPID --value weir)
echo "user=$(stat -c %U "/proc/$pid")"
grep -E '^(NoNewPrivs|Seccomp):' "/proc/$pid/status" | tr -d ' \t' | tr ':' '='
# The unit asks for 65536; systemd gives at most the hard limit that this container was started with (its pid 1).
echo "LimitNOFILE=$(systemctl show -p LimitNOFILE --value weir)"
echo "nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits") max=$(awk '/^Max open files/ { print $5 }' /proc/1/limits)"
echo "status=$(systemctl show -p StatusText --value weir)"
systemctl restart weir
wait_ready
echo "calc=$(curl -sS "$url/calc?n=10")"
# systemctl reload: a changed file is applied (calc.n 20 answers a bare /calc with 2470), a broken one is refused
# (systemctl reload fails) and the running configuration keeps serving
cp /etc/weir/server.yaml /root/server.yaml.orig
sed -i -E 's/^([[:space:]]*calc\.n:)[[:space:]]*[0-9]+/\1 20/' /etc/weir/server.yaml
systemctl reload weir
echo "reload=$?"
echo "calc_after_reload=$(curl -sS "$url/calc")"
echo "status_after_reload=$(systemctl show -p StatusText --value weir)"
printf 'nonsense: [\n' >>/etc/weir/server.yaml
systemctl reload weir
echo "broken_reload=$?"
echo "calc_after_broken_reload=$(curl -sS "$url/calc")"
echo "active_after_broken_reload=$(systemctl is-active weir)"
cp /root/server.yaml.orig /etc/weir/server.yaml
echo "logdir=$(stat -c %U:%G:%a /var/log/weir)"
systemctl stop weir
echo "stopped=$(systemctl show -p Result --value weir) $(systemctl show -p ExecMainStatus --value weir)"
journalctl -u weir --no-pager | sed 's/^/journal: /'
