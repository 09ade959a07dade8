#!/usr/bin/python3
"""weir's benchmark: the seed study (Flask vs Sanic) reproduced with weir and its peers, side by side, in one run.

Started by bench/run.sh (which installs the packages, builds weir in Release and the calc_loop harness), as

    bench/bench.py [--quick] [--only exp1,exp3,...] [--out DIR]

Python 3 standard library only. Every server is a fresh process that this script starts on a loopback port, pins to
the server core and stops by its own pid; every load generator is pinned to the other core; every loop is bounded
in count and time. Output: DIR/ (CSV, the exact commands, machine facts, gnuplot data, PNG figures, RESULTS.md) and,
for a full run, bench/RESULTS.md.
"""

import argparse
import datetime
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PY = "/usr/bin/python3"  # Debian's Python, where python3-flask and python3-aiohttp are installed
WEIR = os.path.join(ROOT, "build-release", "weir")
CALC_LOOP = os.path.join(ROOT, "build-release", "bench", "calc_loop")

ONE_BYTE = None     # a 1-byte request body for h2load -d (it cannot map an empty file)
CACHE_KEY = "bench"
CACHE_VALUE = "abcdefghijklmnopqrstuvwxyz"  # 26 bytes
assert len(CACHE_VALUE) == 26

# Experiment parameters: full run and quick run.
PARAMS = {
    "full": dict(
        reps=3, budget_s=28 * 60,
        exp1_c=[10, 20, 30, 40, 50, 200, 1000], exp1_limit_s=60, exp1_skip=[],
        exp3_n=200, exp3_c=10, exp3_weir_n=2000,
        exp4_conns=10000, exp4_duration=8, exp4_warmup=2,
        exp5_n=500000, exp5_reps=5,
        exp6_duration=8, exp6_rps_per_client=200, exp6_clients=10,
        exp7_n=200000,
    ),
    "quick": dict(
        reps=1, budget_s=160,
        exp1_c=[10, 50, 200], exp1_limit_s=9, exp1_skip=["weir-rand"],
        exp3_n=10, exp3_c=10, exp3_weir_n=400,
        exp4_conns=10000, exp4_duration=2, exp4_warmup=1,
        exp5_n=100000, exp5_reps=1,
        exp6_duration=3, exp6_rps_per_client=200, exp6_clients=10,
        exp7_n=30000,
    ),
}

# The servers of Exp 1-3, in plotting order: (id, label).
UPLOAD_SERVERS = [
    ("weir", "weir (150 ms fixed)"),
    ("weir-h2load", "weir (150 ms fixed), h2load: all C at once"),
    ("weir-rand", "weir (100-200 ms, as the peers)"),
    ("aiohttp", "aiohttp (Sanic's app)"),
    ("flask-threaded", "Flask threaded=True"),
    ("flask", "Flask threaded=False"),
]
CALC_SERVERS = [
    ("weir", "weir, 1 core"),
    ("aiohttp", "aiohttp (Sanic's app)"),
    ("flask-threaded", "Flask threaded=True"),
    ("flask", "Flask threaded=False"),
]


# ------------------------------------------------------------------------------------------------------------------
# Small utilities

T0 = time.monotonic()
OUT = None          # results directory
TMP = None          # raw logs (not committed)
COMMANDS = None     # open file: every command run, in order
NCPU = os.cpu_count() or 1
SERVER_CPUS = "0" if NCPU >= 2 else None
LOAD_CPUS = "1" if NCPU >= 2 else None
DEADLINE = None
QUICK = False
P = None


def progress(msg):
    sys.stdout.write("[bench %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def out_of_time(margin=0):
    return time.monotonic() + margin > DEADLINE


def pinned(argv, cpus):
    return (["taskset", "-c", cpus] + argv) if cpus is not None else list(argv)


def record(label, argv, note=None):
    COMMANDS.write("# %s%s\n%s\n" % (label, (" (" + note + ")") if note else "", " ".join(shlex.quote(a) for a in argv)))
    COMMANDS.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def slug(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def median(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return (min(xs), max(xs)) if xs else (None, None)


def fmt(v, digits=2, none="-"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    if isinstance(v, int):
        return str(v)
    return ("%." + str(digits) + "f") % v


def gnum(v):
    """A value for a gnuplot data file."""
    return "NaN" if v is None or (isinstance(v, float) and math.isnan(v)) else ("%.6g" % v)


def write_csv(name, header, rows):
    with open(os.path.join(OUT, name), "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join("" if r.get(h) is None else str(r.get(h)) for h in header) + "\n")


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


# ------------------------------------------------------------------------------------------------------------------
# /proc sampling: memory and CPU of a server's whole process tree

def read_status(pid):
    vals = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmSize:", "VmHWM:", "VmPeak:", "Threads:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return vals


def process_tree(root):
    """root and its descendants (by scanning /proc for parent pids)."""
    parents = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                data = f.read()
            ppid = int(data[data.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(d))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def cpu_seconds(pids):
    """CPU time of the processes: utime + stime from /proc/PID/stat (all threads, dead ones included, in clock ticks),
    or the sum of the live threads' run time from /proc/PID/task/*/schedstat (nanoseconds) when that is larger."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        stat = sched = 0.0
        try:
            with open("/proc/%d/stat" % p) as f:
                data = f.read()
            fields = data[data.rindex(")") + 2:].split()
            stat = (int(fields[11]) + int(fields[12])) / tck
            for t in os.listdir("/proc/%d/task" % p):
                try:
                    with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                        sched += int(f.read().split()[0]) / 1e9
                except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                    pass
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
        total += max(stat, sched)
    return total


def thread_cpu(pid):
    """{tid: seconds on the CPU} of the live threads of pid, from /proc/PID/task/TID/schedstat."""
    out = {}
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                    out[int(t)] = int(f.read().split()[0]) / 1e9
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                pass
    except FileNotFoundError:
        pass
    return out


def reset_hwm(pids):
    for p in pids:
        try:
            with open("/proc/%d/clear_refs" % p, "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


class NoiseMeter:
    """How much CPU the rest of the machine (processes this script did not start) used during an interval: total busy
    time from /proc/stat minus the CPU time of this script and of everything it started, plus the steal time."""

    @staticmethod
    def _snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
        steal = v[7] if len(v) > 7 else 0
        tck = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as f:
            data = f.read()
        fields = data[data.rindex(")") + 2:].split()
        ours = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        ours_s = ours / tck + cpu_seconds([p for p in process_tree(os.getpid()) if p != os.getpid()])
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        return time.monotonic(), busy / tck, steal / tck, ours_s, load

    def __init__(self):
        self.a = self._snap()

    def stop(self):
        b = self._snap()
        dt = max(1e-9, b[0] - self.a[0])
        return dict(other_cores=round(max(0.0, (b[1] - self.a[1]) - (b[3] - self.a[3])) / dt, 2),
                    steal_cores=round((b[2] - self.a[2]) / dt, 2), loadavg_end=b[4], seconds=round(dt, 1))


NOISE = {}  # experiment -> NoiseMeter result


class MemSampler:
    """Samples the summed VmRSS and VmSize of a process tree every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_vsz = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.tree = [pid]

    def start(self):
        self.tree = process_tree(self.pid)
        reset_hwm(self.tree)
        self._thread.start()
        return self

    def _run(self):
        last_tree = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_tree > 0.5:
                self.tree = process_tree(self.pid)
                last_tree = time.monotonic()
            rss = vsz = 0
            for p in self.tree:
                s = read_status(p)
                rss += s.get("VmRSS", 0)
                vsz += s.get("VmSize", 0)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_vsz = max(self.peak_vsz, vsz)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        # VmHWM (reset at start) catches a peak between samples for single-process servers.
        hwm = sum(read_status(p).get("VmHWM", 0) for p in self.tree)
        self.peak_rss = max(self.peak_rss, hwm)
        return self


# ------------------------------------------------------------------------------------------------------------------
# Servers

class Server:
    """A server process started by this script: weir, a Python peer, the stock h2o binary or redis-server."""

    def __init__(self, kind, label, cpus=None, conf=None, extra=None, env=None):
        self.kind = kind
        self.label = label
        self.cpus = SERVER_CPUS if cpus is None else cpus
        self.conf = conf
        self.extra = extra or {}
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = None
        self._lines = []
        self._lock = threading.Lock()

    def start(self, step):
        name = slug(step)
        self.log_path = os.path.join(TMP, name + ".server.log")
        env = dict(os.environ, **(self.env or {}))
        if self.kind == "weir":
            conf_path = os.path.join(TMP, name + ".weir.yaml")
            with open(conf_path, "w") as f:
                f.write(self.conf)
            argv = [WEIR, "-c", conf_path]
        elif self.kind in ("flask", "flask-threaded"):
            self.port = free_port()
            argv = [PY, os.path.join(BENCH, "peers", "flask_app.py"), str(self.port),
                    "threaded" if self.kind == "flask-threaded" else "unthreaded"]
        elif self.kind == "aiohttp":
            self.port = free_port()
            argv = [PY, os.path.join(BENCH, "peers", "aiohttp_app.py"), str(self.port)]
        elif self.kind == "h2o":
            self.port = free_port()
            conf_path = os.path.join(TMP, name + ".h2o.conf")
            with open(conf_path, "w") as f:
                f.write(self.conf.replace("@PORT@", str(self.port)))
            argv = ["h2o", "-c", conf_path]
        elif self.kind == "redis":
            self.port = free_port()
            argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--protected-mode", "yes", "--dir", TMP, "--logfile", ""]
        else:
            raise ValueError(self.kind)
        argv = pinned(argv, self.cpus)
        note = None
        if self.kind == "weir":
            note = "config:\n" + "".join("#   " + l + "\n" for l in self.conf.rstrip("\n").split("\n"))
            note = note.rstrip("\n")
        record("%s: start %s" % (step, self.label), argv, note)
        log = open(self.log_path, "wb")
        if self.kind == "weir":
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, env=env,
                                         cwd=TMP)
            threading.Thread(target=self._read_stderr, args=(log,), daemon=True).start()
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=TMP)
            log.close()
        self._wait_ready()
        return self

    def _read_stderr(self, log):
        for raw in self.proc.stderr:
            log.write(raw)
            log.flush()
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace"))
        log.close()

    def _wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before it was ready; see %s" % (self.label, self.proc.returncode,
                                                                                      self.log_path))
            if self.kind == "weir":
                with self._lock:
                    lines = list(self._lines)
                if any("weir" in l and " ready" in l for l in lines):
                    for l in lines:
                        m = re.search(r"listening on http://(\S+):(\d+)", l)
                        if m:
                            self.port = int(m.group(2))
                            return
                    raise RuntimeError("weir is ready but printed no port")
            else:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("%s was not ready within %ss; see %s" % (self.label, timeout, self.log_path))

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def tree(self):
        return process_tree(self.pid)

    def rss_kib(self):
        return sum(read_status(p).get("VmRSS", 0) for p in self.tree())

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def weir_conf(threads=1, upload=None, calc=True, cache=None):
    lines = ["listen:", "  port: 0", "  host: 127.0.0.1", "num-threads: %d" % threads, "limit-request-body: 1048576",
             "hosts:", "  default:", "    paths:"]
    if upload is not None:
        conc, dmin, dmax = upload
        lines += ["      /upload:", "        upload.concurrency: %d" % conc, "        upload.delay-min: %d" % dmin,
                  "        upload.delay-max: %d" % dmax]
    if calc:
        lines += ["      /calc:", "        calc.n: 1000000", "        calc.max-n: 100000000"]
    if cache is not None:
        lines += ["      /cache:", "        cache.backend: %s" % cache[0]]
        if cache[0] == "redis":
            lines += ["        cache.redis.url: redis://127.0.0.1:%d/0" % cache[1]]
    return "\n".join(lines) + "\n"


def upload_server(sid):
    if sid in ("weir", "weir-h2load"):
        return Server("weir", "weir", conf=weir_conf(upload=(5, 150, 150)))
    if sid == "weir-rand":
        return Server("weir", "weir (100-200 ms)", conf=weir_conf(upload=(5, 100, 200)))
    return Server(sid, dict(UPLOAD_SERVERS)[sid])


H2O_CONF = """\
# The stock h2o binary (Debian package h2o), serving one static file with the bytes of weir's /cache reply body.
# Loopback only, in the foreground (no daemon mode, no pid file), no access log; errors go to stderr.
listen:
  port: @PORT@
  host: 127.0.0.1
num-threads: 1
max-connections: 20000
hosts:
  default:
    paths:
      /:
        file.dir: @DIR@
"""


# ------------------------------------------------------------------------------------------------------------------
# Load generators (pinned to the load core, bounded in time)

def run_load(step, argv, timeout):
    """Runs a load generator; returns (returncode or 'timeout', output, seconds)."""
    argv = pinned(argv, LOAD_CPUS)
    record(step, argv)
    log_path = os.path.join(TMP, slug(step) + ".out")
    t = time.monotonic()
    with open(log_path, "w") as log:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
    elapsed = time.monotonic() - t
    with open(log_path, errors="replace") as f:
        out = f.read()
    return rc, out, elapsed


def parse_ab(out):
    r = {}
    pats = {
        "total_s": r"Time taken for tests:\s+([\d.]+) seconds",
        "complete": r"Complete requests:\s+(\d+)",
        "failed": r"Failed requests:\s+(\d+)",
        "non2xx": r"Non-2xx responses:\s+(\d+)",
        "rps": r"Requests per second:\s+([\d.]+)",
        "mean_ms": r"Time per request:\s+([\d.]+) \[ms\] \(mean\)",
        "tpr_all_ms": r"Time per request:\s+([\d.]+) \[ms\] \(mean, across all",
        "p50_ms": r"^\s+50%\s+(\d+)",
        "p99_ms": r"^\s+99%\s+(\d+)",
        "fail_connect": r"\(Connect: (\d+)",
        "fail_receive": r"Receive: (\d+)",
        "fail_length": r"Length: (\d+)",
        "fail_exceptions": r"Exceptions: (\d+)",
    }
    for k, pat in pats.items():
        m = re.search(pat, out, re.M)
        if m:
            r[k] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    r.setdefault("non2xx", 0)
    return r


def ab(step, url, n, c, method=None, limit=60, keepalive=False):
    argv = ["ab", "-q", "-r", "-s", str(int(limit)), "-n", str(n), "-c", str(c)]
    if method:
        argv += ["-m", method]
    if keepalive:
        argv += ["-k"]
    argv.append(url)
    rc, out, elapsed = run_load(step, argv, limit + 5)
    r = parse_ab(out)
    r["wall_s"] = elapsed
    if rc == "timeout":
        r["status"] = "timeout"
    elif rc != 0 or "complete" not in r:
        tail = [l for l in out.strip().split("\n") if l.strip()][-1:] or ["?"]
        r["status"] = "aborted: " + tail[0][:80]
    elif r.get("complete") != n or r.get("failed", 0) or r.get("non2xx", 0):
        r["status"] = "errors"
    else:
        r["status"] = "ok"
    return r


def parse_h2load(out):
    r = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if m:
        r["elapsed_s"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        r["rps"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", out)
    if m:
        (r["total"], r["started"], r["done"], r["succeeded"], r["failed"], r["errored"],
         r["timeout"]) = map(int, m.groups())
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        r["s2xx"], r["s3xx"], r["s4xx"], r["s5xx"] = map(int, m.groups())
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    if m:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        r["mean_ms"] = float(m.group(5)) * scale[m.group(6)]
    return r


def h2load(step, url, args, timeout):
    argv = ["h2load"] + args + [url]
    rc, out, elapsed = run_load(step, argv, timeout)
    r = parse_h2load(out)
    r["wall_s"] = elapsed
    r["errors"] = (r.get("failed", 0) + r.get("errored", 0) + r.get("timeout", 0) + r.get("s3xx", 0) +
                   r.get("s4xx", 0) + r.get("s5xx", 0))
    if rc == "timeout":
        r["status"] = "timeout"
    elif rc != 0 or "rps" not in r:
        r["status"] = "aborted (rc %s)" % rc
    elif r["errors"]:
        r["status"] = "errors"
    else:
        r["status"] = "ok"
    return r


def percentiles_from_h2load_log(path, ps=(50, 99)):
    lat = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]) / 1000.0)
    except FileNotFoundError:
        return {}
    if not lat:
        return {}
    lat.sort()
    res = {"count": len(lat), "max": lat[-1]}
    for p in ps:
        res["p%d" % p] = lat[min(len(lat) - 1, int(math.ceil(p / 100.0 * len(lat))) - 1)]
    return res


# ------------------------------------------------------------------------------------------------------------------
# Experiment 1 + 2: /upload with ab -n C -c C, time and memory

def bound_s(c, slots=5, delay=0.15):
    return math.ceil(c / slots) * delay


def ab_floor_s(c, slots=5, delay=0.15):
    """What ab can see of the bound: ab 2.4.x sends its first request alone and opens the other C - 1 connections
    only when that response has arrived (seen with strace), so one delay comes before the C - 1 others start."""
    return delay + math.ceil((c - 1) / slots) * delay


def expected_random_s(c, slots=5, lo=100, hi=200, trials=4000, as_ab=True):
    """Mean makespan of a zero-overhead server: C jobs, FIFO over 5 slots, delays uniform in {lo..hi} ms; as_ab: the
    first job alone first, as ab sends it."""
    rnd = random.Random(12345)
    total = 0.0
    for _ in range(trials):
        first = rnd.randint(lo, hi) if as_ab else 0
        free = [first] * slots
        for _ in range(c - 1 if as_ab else c):
            i = free.index(min(free))
            free[i] += rnd.randint(lo, hi)
        total += max(free)
    return total / trials / 1000.0


def exp1():
    reps, cs, limit = P["reps"], P["exp1_c"], P["exp1_limit_s"]
    rows = []
    failed_from = {}  # server -> smallest C that failed (timeout): later reps skip it and higher C
    servers = [s for s, _ in UPLOAD_SERVERS if s not in P["exp1_skip"]]
    for rep in range(1, reps + 1):
        for c in cs:
            for sid in servers:
                row = dict(server=sid, C=c, rep=rep, bound_s=round(bound_s(c), 3))
                if sid in failed_from and c >= failed_from[sid]:
                    continue  # shown as failed from the first repetition
                if out_of_time(margin=limit + 5):
                    row["status"] = "not run (run budget)"
                    rows.append(row)
                    continue
                step = "exp1 %s C=%d rep %d" % (sid, c, rep)
                try:
                    with upload_server(sid).start(step) as srv:
                        ab(step + " warm-up", srv.url("/upload"), 5, 5, method="POST", limit=limit)
                        time.sleep(0.2)
                        smp = MemSampler(srv.pid).start()
                        if sid == "weir-h2load":
                            r = h2load(step, srv.url("/upload"), ["--h1", "-n", str(c), "-c", str(c), "-t", "1",
                                                                  "-d", ONE_BYTE], limit + 5)
                            r["total_s"], r["complete"] = r.get("elapsed_s"), r.get("succeeded")
                            r["failed"], r["non2xx"] = r.get("errors"), 0
                        else:
                            r = ab(step, srv.url("/upload"), c, c, method="POST", limit=limit)
                        smp.stop()
                except RuntimeError as e:
                    r, smp = {"status": "server failed: %s" % e}, None
                row.update(status=r["status"], total_s=r.get("total_s"), rps=r.get("rps"),
                           complete=r.get("complete"), failed=r.get("failed"), non2xx=r.get("non2xx"),
                           fail_kinds=("connect %s receive %s length %s exceptions %s" % (
                               r.get("fail_connect"), r.get("fail_receive"), r.get("fail_length"),
                               r.get("fail_exceptions"))) if r.get("failed") else None,
                           peak_rss_kib=smp.peak_rss if smp else None, peak_vsz_kib=smp.peak_vsz if smp else None)
                if r["status"] == "timeout":
                    row["total_s"] = None
                    failed_from[sid] = min(c, failed_from.get(sid, c))
                rows.append(row)
                progress("%s: %s, %s s, %s req/s, failed %s, peak RSS %s MiB (bound %.2f s)" % (
                    step, row["status"], fmt(row.get("total_s"), 3), fmt(row.get("rps"), 1), row.get("failed"),
                    fmt((row.get("peak_rss_kib") or 0) / 1024.0, 1), bound_s(c)))
    write_csv("upload.csv", ["server", "C", "rep", "status", "total_s", "rps", "complete", "failed", "fail_kinds",
                             "non2xx", "bound_s", "peak_rss_kib", "peak_vsz_kib"], rows)
    return rows


def summarize_exp1(rows):
    """{(server, C): dict(time median/min/max, rps, rss, vsz, ok, statuses)}"""
    summ = {}
    for sid, _ in UPLOAD_SERVERS:
        for c in P["exp1_c"]:
            rr = [r for r in rows if r["server"] == sid and r["C"] == c and "status" in r]
            if not rr:
                continue
            ok = [r for r in rr if r["status"] == "ok"]
            times = [r.get("total_s") for r in rr if r.get("total_s") is not None]
            lo, hi = spread(times)
            summ[(sid, c)] = dict(
                n=len(rr), n_ok=len(ok), statuses=sorted(set(r["status"] for r in rr)),
                time=median(times), time_lo=lo, time_hi=hi,
                rps=median([r.get("rps") for r in rr]),
                failed=sum((r.get("failed") or 0) + (r.get("non2xx") or 0) for r in rr),
                rss=median([r.get("peak_rss_kib") for r in rr]), vsz=median([r.get("peak_vsz_kib") for r in rr]),
                all_ok=len(ok) == len(rr))
    return summ


# ------------------------------------------------------------------------------------------------------------------
# Experiment 3: /calc with ab -n 200 -c 10; weir against the bare loop

def exp3():
    reps, n, c = P["reps"], P["exp3_n"], P["exp3_c"]
    rows, loop_rows = [], []
    configs = [(sid, label, SERVER_CPUS, 1) for sid, label in CALC_SERVERS]
    if NCPU >= 2:
        configs.append(("weir-2cores", "weir, 2 cores", "0,1", 2))
    for rep in range(1, reps + 1):
        for sid, label, cpus, threads in configs:
            if out_of_time(margin=30):
                rows.append(dict(server=sid, rep=rep, status="not run (run budget)"))
                continue
            is_weir = sid.startswith("weir")
            nn = n
            step = "exp3 %s rep %d" % (sid, rep)
            if is_weir:
                srv = Server("weir", label, cpus=cpus, conf=weir_conf(threads=threads, calc=True))
            else:
                srv = Server(sid, label)
            with srv.start(step):
                ab(step + " warm-up", srv.url("/calc"), 4, 4, limit=60)
                tree = srv.tree()
                cpu0 = cpu_seconds(tree)
                r = ab(step, srv.url("/calc"), nn, c, limit=120)
                cpu1 = cpu_seconds(tree)
                row = dict(server=sid, rep=rep, n=nn, c=c, status=r["status"], rps=r.get("rps"),
                           mean_ms=r.get("mean_ms"), p99_ms=r.get("p99_ms"), tpr_all_ms=r.get("tpr_all_ms"),
                           cpu_s=round(cpu1 - cpu0, 3), cpu_ms_per_req=round((cpu1 - cpu0) * 1000.0 / nn, 3))
                if is_weir:
                    # weir's time per request, RPS and CPU per request over more requests, for steadier figures
                    cpu0 = cpu_seconds(tree)
                    th0 = thread_cpu(srv.pid)
                    r2 = ab(step + " (n=%d)" % P["exp3_weir_n"], srv.url("/calc"), P["exp3_weir_n"], c, limit=120)
                    cpu1 = cpu_seconds(tree)
                    th1 = thread_cpu(srv.pid)
                    # Threads in creation order: the main thread, `threads` worker loops, then the /calc work pool's threads.
                    tids = sorted(th1)
                    loops, pool = tids[1:1 + threads], tids[1 + threads:]
                    nn2 = float(P["exp3_weir_n"])
                    row["loop_cpu_ms_per_req"] = round(sum(th1[t] - th0.get(t, 0) for t in loops) * 1000 / nn2, 4)
                    row["pool_cpu_ms_per_req"] = round(sum(th1[t] - th0.get(t, 0) for t in pool) * 1000 / nn2, 4)
                    row["tpr_all_long_ms"] = r2.get("tpr_all_ms")
                    row["rps_long"] = r2.get("rps")
                    row["cpu_long_ms_per_req"] = round((cpu1 - cpu0) * 1000.0 / P["exp3_weir_n"], 4)
                rows.append(row)
            progress("%s: %s, %s req/s, mean %s ms, p99 %s ms, CPU %s s%s" % (
                step, row["status"], fmt(row["rps"], 1), fmt(row["mean_ms"], 1), row["p99_ms"], row["cpu_s"],
                ("; n=%d: %s ms per request, %s ms CPU per request (HTTP loop %s, sums %s)" % (
                    P["exp3_weir_n"], row.get("tpr_all_long_ms"), row.get("cpu_long_ms_per_req"),
                    row.get("loop_cpu_ms_per_req"), row.get("pool_cpu_ms_per_req")))
                if is_weir else ""))
            if sid == "weir" and os.path.exists(CALC_LOOP):
                # The bare loop, timed alone on the same core, right after weir (so under the same conditions)
                argv = pinned([CALC_LOOP, "1000000", "1000"], SERVER_CPUS)
                record("exp3 bare loop rep %d" % rep, argv)
                out = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=120).stdout
                m = re.search(r"median_ms=([\d.]+) min_ms=([\d.]+) mean_ms=([\d.]+) cpu_ms=([\d.]+)", out)
                if m:
                    loop_rows.append(dict(rep=rep, median_ms=float(m.group(1)), min_ms=float(m.group(2)),
                                          mean_ms=float(m.group(3)), cpu_ms=float(m.group(4)),
                                          result=out.split("result=")[1].split()[0]))
                    progress("exp3 bare loop rep %d: median %s ms, mean %s ms, CPU %s ms per call" % (
                        rep, m.group(1), m.group(3), m.group(4)))
    write_csv("calc.csv", ["server", "rep", "n", "c", "status", "rps", "mean_ms", "p99_ms", "tpr_all_ms",
                           "tpr_all_long_ms", "rps_long", "cpu_long_ms_per_req", "loop_cpu_ms_per_req", "pool_cpu_ms_per_req", "cpu_s",
                           "cpu_ms_per_req"], rows)
    write_csv("calc_loop.csv", ["rep", "median_ms", "min_ms", "mean_ms", "cpu_ms", "result"], loop_rows)
    return rows, loop_rows


# ------------------------------------------------------------------------------------------------------------------
# Experiment 4: 10,000 concurrent uploads

def exp4():
    reps, conns = P["reps"], P["exp4_conns"]
    rows = []
    args = ["--h1", "-c", str(conns), "-t", "1", "-D", str(P["exp4_duration"]),
            "--warm-up-time", str(P["exp4_warmup"]), "-d", ONE_BYTE]
    for rep in range(1, reps + 1):
        for kind, delays in (("ceiling", (0, 0)), ("delay", (100, 200))):
            if out_of_time(margin=P["exp4_duration"] + P["exp4_warmup"] + 30):
                rows.append(dict(kind=kind, rep=rep, status="not run (run budget)"))
                continue
            step = "exp4 %s rep %d" % (kind, rep)
            srv = Server("weir", "weir", conf=weir_conf(upload=(conns, delays[0], delays[1]), calc=False))
            with srv.start(step):
                ab(step + " warm-up", srv.url("/upload"), 20, 10, method="POST", limit=30)
                time.sleep(0.2)
                base = srv.rss_kib()
                smp = MemSampler(srv.pid, interval=0.02).start()
                r = h2load(step, srv.url("/upload"), args, P["exp4_duration"] + P["exp4_warmup"] + 120)
                smp.stop()
            row = dict(kind=kind, rep=rep, conns=conns, delay_min=delays[0], delay_max=delays[1], status=r["status"],
                       rps=r.get("rps"), done=r.get("done"), succeeded=r.get("succeeded"), errors=r.get("errors"),
                       mean_ms=r.get("mean_ms"), base_rss_kib=base, peak_rss_kib=smp.peak_rss,
                       kib_per_inflight=round((smp.peak_rss - base) / float(conns), 3))
            rows.append(row)
            progress("%s: %s, %s req/s, errors %s, mean %s ms, RSS %d -> %d KiB (%.2f KiB per request in flight)" % (
                step, row["status"], fmt(row["rps"], 0), row["errors"], fmt(row["mean_ms"], 1), base, smp.peak_rss,
                row["kib_per_inflight"]))
    probe_rows = []
    for rep in range(1, reps + 1):
        if out_of_time(margin=20):
            break
        try:
            pr = conn_memory_probe("exp4 memory probe rep %d" % rep, conns)
        except (RuntimeError, OSError) as e:
            progress("exp4 memory probe failed: %s" % e)
            break
        pr["rep"] = rep
        probe_rows.append(pr)
        progress("exp4 memory probe rep %d: %.2f KiB per idle connection, +%.2f KiB per request in flight, %.2f KiB "
                 "in all" % (rep, pr["idle_kib_per_conn"], pr["request_kib"], pr["total_kib"]))
    write_csv("scale.csv", ["kind", "rep", "conns", "delay_min", "delay_max", "status", "rps", "done", "succeeded",
                            "errors", "mean_ms", "base_rss_kib", "peak_rss_kib", "kib_per_inflight"], rows)
    write_csv("scale_memory.csv", ["rep", "base_kib", "idle_kib_per_conn", "request_kib", "total_kib"], probe_rows)
    return rows


def conn_memory_probe(step, conns):
    """Where weir's memory per request in flight goes: RSS per idle connection (connected, nothing sent), then per
    request (every connection sends one POST /upload, which waits 3 s), with a plain socket client (no h2load)."""
    srv = Server("weir", "weir", conf=weir_conf(upload=(conns, 3000, 3000), calc=False)).start(step)
    socks = []
    try:
        with srv:
            time.sleep(0.2)
            base = srv.rss_kib()
            record(step + ": %d idle connections, then one POST /upload on each (python sockets)" % conns, [])
            for _ in range(conns):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", srv.port))
                except BlockingIOError:
                    pass
                socks.append(s)
            time.sleep(1.5)
            idle = srv.rss_kib()
            req = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx"
            for s in socks:
                try:
                    s.send(req)
                except OSError:
                    pass
            peak, t = 0, time.monotonic()
            while time.monotonic() - t < 2.5:  # the requests wait 3 s: all are in flight here
                peak = max(peak, srv.rss_kib())
                time.sleep(0.02)
    finally:
        for s in socks:
            s.close()
    return dict(base_kib=base, idle_kib_per_conn=round((idle - base) / float(conns), 3),
                request_kib=round((peak - idle) / float(conns), 3), total_kib=round((peak - base) / float(conns), 3))


# ------------------------------------------------------------------------------------------------------------------
# Experiments 5-7: /cache

def cache_server(step, backend=("memory",), threads=1):
    srv = Server("weir", "weir", conf=weir_conf(threads=threads, calc=True, cache=backend)).start(step)
    try:
        st, _ = http("PUT", srv.url("/cache?key=%s" % CACHE_KEY), CACHE_VALUE.encode())
        st2, body = http("GET", srv.url("/cache?key=%s" % CACHE_KEY))
        if st != 200 or st2 != 200 or CACHE_VALUE.encode() not in body:
            raise RuntimeError("/cache did not store the value: PUT %s, GET %s %r" % (st, st2, body))
    except Exception:
        srv.stop()
        raise
    return srv, body


def exp5():
    # More repetitions than elsewhere: each is short, and the ratio moves with the neighbours' load.
    reps, n = P["exp5_reps"], P["exp5_n"]
    rows = []
    www = os.path.join(TMP, "www")
    os.makedirs(www, exist_ok=True)
    body = None
    protos = [("h2c", ["-c", "100", "-m", "10", "-t", "1"]), ("h1", ["--h1", "-c", "100", "-m", "10", "-t", "1"])]
    for rep in range(1, reps + 1):
        for sid in ("weir", "h2o"):
            if out_of_time(margin=30):
                rows.append(dict(server=sid, rep=rep, status="not run (run budget)"))
                continue
            step = "exp5 %s rep %d" % (sid, rep)
            if sid == "weir":
                srv, body = cache_server(step)
                path = "/cache?key=%s" % CACHE_KEY
            else:
                with open(os.path.join(www, "cache"), "wb") as f:
                    f.write(body)
                conf = H2O_CONF.replace("@DIR@", www)
                srv = Server("h2o", "h2o (stock binary)", conf=conf).start(step)
                path = "/cache"
                st, got = http("GET", srv.url(path))
                assert st == 200 and got == body, (st, got, body)
            with srv:
                for proto, args in protos:
                    h2load(step + " %s warm-up" % proto, srv.url(path), ["-n", str(n // 10)] + args, 120)
                    cpu0 = cpu_seconds(srv.tree())
                    r = h2load(step + " " + proto, srv.url(path), ["-n", str(n)] + args, 300)
                    cpu_us = round((cpu_seconds(srv.tree()) - cpu0) * 1e6 / n, 3)
                    rows.append(dict(server=sid, proto=proto, rep=rep, status=r["status"], rps=r.get("rps"),
                                     errors=r.get("errors"), mean_ms=r.get("mean_ms"), body_bytes=len(body),
                                     cpu_us_per_req=cpu_us))
                    progress("%s %s: %s, %s req/s, errors %s, server CPU %s us per request" % (
                        step, proto, r["status"], fmt(r.get("rps"), 0), r.get("errors"), cpu_us))
    write_csv("ceiling.csv", ["server", "proto", "rep", "status", "rps", "errors", "mean_ms", "body_bytes",
                              "cpu_us_per_req"], rows)
    if body is not None:
        with open(os.path.join(OUT, "cache-reply-body.txt"), "wb") as f:
            f.write(body)
    return rows


def exp6():
    reps, dur = P["reps"], P["exp6_duration"]
    rows = []
    args_base = ["--h1", "-c", str(P["exp6_clients"]), "-t", "1", "--rps", str(P["exp6_rps_per_client"]),
                 "-D", str(dur)]
    for rep in range(1, reps + 1):
        if out_of_time(margin=2 * dur + 8):
            rows.append(dict(phase="alone", rep=rep, status="not run (run budget)"))
            continue
        step = "exp6 rep %d" % rep
        srv, _ = cache_server(step)
        with srv:
            h2load(step + " warm-up", srv.url("/cache?key=" + CACHE_KEY), ["--h1", "-n", "5000", "-c", "10"], 60)
            for phase in ("alone", "under /calc"):
                calc_proc = None
                if phase != "alone":
                    argv = pinned(["ab", "-q", "-r", "-c", "8", "-n", "10000000", "-t", str(dur + 3),
                                   srv.url("/calc")], LOAD_CPUS)
                    record(step + " /calc load", argv)
                    calc_log = open(os.path.join(TMP, slug(step) + ".calc.out"), "w")
                    calc_proc = subprocess.Popen(argv, stdout=calc_log, stderr=subprocess.STDOUT)
                    time.sleep(1.0)
                log = os.path.join(TMP, slug(step + " " + phase) + ".h2load.log")
                cpu0 = cpu_seconds(srv.tree())
                t0 = time.monotonic()
                r = h2load("%s /cache %s" % (step, phase), srv.url("/cache?key=" + CACHE_KEY),
                           args_base + ["--log-file", log], dur + 60)
                busy = (cpu_seconds(srv.tree()) - cpu0) / max(1e-9, time.monotonic() - t0)
                calc_rps = None
                if calc_proc is not None:
                    try:
                        calc_proc.wait(dur + 30)
                    except subprocess.TimeoutExpired:
                        calc_proc.kill()
                        calc_proc.wait()
                    calc_log.close()
                    with open(calc_log.name) as f:
                        calc_rps = parse_ab(f.read()).get("rps")
                pc = percentiles_from_h2load_log(log)
                row = dict(phase=phase, rep=rep, status=r["status"], rps=r.get("rps"), errors=r.get("errors"),
                           p50_ms=pc.get("p50"), p99_ms=pc.get("p99"), max_ms=pc.get("max"), count=pc.get("count"),
                           server_cpu_util=round(busy, 2), calc_rps=calc_rps)
                rows.append(row)
                progress("%s /cache %s: %s, p50 %s ms, p99 %s ms, server CPU %.2f cores, /calc %s req/s" % (
                    step, phase, r["status"], fmt(row["p50_ms"], 3), fmt(row["p99_ms"], 3), busy, fmt(calc_rps, 0)))
    write_csv("isolation.csv", ["phase", "rep", "status", "rps", "errors", "p50_ms", "p99_ms", "max_ms", "count",
                                "server_cpu_util", "calc_rps"], rows)
    return rows


def cache_h2load(step, name, backend, n, args, rep, rows):
    """A fresh weir with the given /cache backend, a warm-up, then n GETs of the stored key; appends the row."""
    srv, _ = cache_server(step + " weir " + name, backend=backend)
    with srv:
        url = srv.url("/cache?key=" + CACHE_KEY)
        h2load(step + " weir %s warm-up" % name, url, ["-n", str(n // 10)] + args, 120)
        r = h2load(step + " weir " + name, url, ["-n", str(n)] + args, 300)
    rows.append(dict(what="weir /cache " + name, rep=rep, status=r["status"], rps=r.get("rps"), errors=r.get("errors"),
                     mean_ms=r.get("mean_ms")))
    return r


def exp7():
    reps, n = P["reps"], P["exp7_n"]
    rows = []
    args = ["--h1", "-c", "100", "-m", "1", "-t", "1"]
    for rep in range(1, reps + 1):
        if out_of_time(margin=n / 5000.0 + 5):
            rows.append(dict(what="weir redis", rep=rep, status="not run (run budget)"))
            continue
        step = "exp7 rep %d" % rep
        with Server("redis", "redis-server").start(step + " redis") as redis:
            # redis-benchmark alone: SET then GET of a 26-byte value, 100 clients, no pipelining
            argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(redis.port), "-c", "100", "-n", str(n), "-d", "26",
                    "-t", "set,get", "--csv"]
            rc, out, _ = run_load(step + " redis-benchmark", argv, 300)
            m = re.search(r'^"GET","([\d.]+)"', out, re.M)
            rb = float(m.group(1)) if m else None
            rows.append(dict(what="redis-benchmark GET", rep=rep, status="ok" if rb else "failed", rps=rb, errors=0))
            r = cache_h2load(step, "redis", ("redis", redis.port), n, args, rep, rows)
        r2 = cache_h2load(step, "memory", ("memory",), n, args, rep, rows)
        progress("%s: redis-benchmark GET %s req/s, weir /cache redis %s req/s (errors %s), memory %s req/s" % (
            step, fmt(rb, 0), fmt(r.get("rps"), 0), r.get("errors"), fmt(r2.get("rps"), 0)))
    write_csv("redis.csv", ["what", "rep", "status", "rps", "errors", "mean_ms"], rows)
    return rows


# ------------------------------------------------------------------------------------------------------------------
# Machine facts, figures, RESULTS.md

PACKAGES = ["h2o", "libh2o0.13", "libh2o-dev", "libuv1", "libuv1-dev", "libhiredis0.14", "libyaml-0-2", "libyajl2",
            "apache2-utils", "nghttp2-client", "gnuplot-nox", "python3", "python3-flask", "python3-werkzeug",
            "python3-aiohttp", "redis-server", "redis-tools", "gcc", "cmake", "linux-perf"]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=20).stdout.strip()
    except subprocess.SubprocessError:
        return ""


def machine_facts():
    facts = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "mode": "quick" if QUICK else "full",
        "nproc": NCPU,
        "cpu_model": sh("lscpu | sed -n 's/^Model name: *//p'") or sh("grep -m1 'model name' /proc/cpuinfo"),
        "kernel": sh("uname -srvm"),
        "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
        "memory": sh("free -g | awk '/^Mem:/ {print $2 \" GiB\"}'"),
        "virtualization": sh("systemd-detect-virt 2>/dev/null || lscpu | sed -n 's/^Hypervisor vendor: *//p'"),
        "somaxconn": sh("cat /proc/sys/net/core/somaxconn"),
        "ulimit_n": sh("ulimit -n"),
        "pinning": ("server on cpu %s, load generators on cpu %s" % (SERVER_CPUS, LOAD_CPUS)) if SERVER_CPUS else
                   "none (1 cpu)",
        "weir": sh("%s --version 2>&1 | head -n1" % shlex.quote(WEIR)),
        # "-dirty" when weir's tree differs from the commit; this run's own output (bench/results, RESULTS.md) does not count
        "weir_commit": (sh("cd %s && git describe --always --abbrev=7 2>/dev/null" % shlex.quote(ROOT)) or "(no commit yet)")
                       + ("-dirty" if sh("cd %s && git status --porcelain --untracked-files=no -- . ':!bench/results' "
                                         "':!bench/RESULTS.md' 2>/dev/null" % shlex.quote(ROOT)) else ""),
        "cc": sh("cc --version | head -n1"),
        "packages": {},
    }
    for p in PACKAGES:
        v = sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % p)
        if v:
            facts["packages"][p] = v
    with open(os.path.join(OUT, "machine.txt"), "w") as f:
        for k, v in facts.items():
            if k != "packages":
                f.write("%s: %s\n" % (k, v))
        f.write("packages:\n")
        for k, v in facts["packages"].items():
            f.write("  %s %s\n" % (k, v))
    return facts


def gnuplot(script, *args):
    argv = ["gnuplot", "-c", os.path.join(BENCH, "plots", script), OUT, os.path.join(BENCH, "plots")] + list(args)
    record("figure " + script, argv)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, cwd=OUT)
    if p.returncode != 0:
        progress("gnuplot %s failed: %s" % (script, p.stdout.strip()[-300:]))
        return False
    return True


def write_plot_data(exp1_summ, calc_rows, ceiling_rows, iso_rows, scale_rows=()):
    figs = []
    if any(r.get("rps") for r in scale_rows):
        conns = P["exp4_conns"]
        probe = read_csv("scale_memory.csv")
        with open(os.path.join(OUT, "scale.dat"), "w") as f:
            f.write("# panel label median min max (req/s, or KiB per request in flight)\n")
            for kind, label in (("delay", "100-200 ms delays"), ("ceiling", "no delay (ceiling)")):
                vals = [r.get("rps") for r in scale_rows if r.get("kind") == kind and r.get("rps")]
                lo, hi = spread(vals)
                f.write('1 "%s" %s %s %s\n' % (label, gnum(median(vals)), gnum(lo), gnum(hi)))
            f.write('1 "bound %d / 0.15 s" %s %s %s\n' % (conns, gnum(conns / 0.15), gnum(conns / 0.15),
                                                         gnum(conns / 0.15)))
            f.write("\n\n")
            vals = [r.get("kib_per_inflight") for r in scale_rows if r.get("kind") == "delay" and r.get("rps")]
            lo, hi = spread(vals)
            f.write('2 "h2load run (delays)" %s %s %s\n' % (gnum(median(vals)), gnum(lo), gnum(hi)))
            for k, label in (("idle_kib_per_conn", "probe: idle connection"), ("total_kib", "probe: request read")):
                vals = [r.get(k) for r in probe]
                lo, hi = spread(vals)
                f.write('2 "%s" %s %s %s\n' % (label, gnum(median(vals)), gnum(lo), gnum(hi)))
        figs.append(("scale.gp", "scale.png"))
    if exp1_summ:
        with open(os.path.join(OUT, "upload_time.dat"), "w") as f:
            f.write("# C bound ab_floor expected_random_as_ab, then per server (%s): median min max failed_marker\n"
                    % " ".join(s for s, _ in UPLOAD_SERVERS))
            for c in P["exp1_c"]:
                cols = [c, bound_s(c), ab_floor_s(c), expected_random_s(c)]
                for sid, _ in UPLOAD_SERVERS:
                    s = exp1_summ.get((sid, c))
                    if s is None:
                        cols += [None, None, None, None]
                        continue
                    failed = not s["all_ok"]
                    cols += [s["time"], s["time_lo"], s["time_hi"],
                             (s["time"] if s["time"] is not None else P["exp1_limit_s"]) if failed else None]
                f.write(" ".join(gnum(x) for x in cols) + "\n")
        with open(os.path.join(OUT, "memory.dat"), "w") as f:
            f.write("# C then, per server (%s): peak RSS MiB, peak VSZ MiB\n" % " ".join(s for s, _ in UPLOAD_SERVERS))
            for c in P["exp1_c"]:
                cols = [c]
                for sid, _ in UPLOAD_SERVERS:
                    s = exp1_summ.get((sid, c))
                    cols += [s["rss"] / 1024.0 if s and s["rss"] else None, s["vsz"] / 1024.0 if s and s["vsz"] else None]
                f.write(" ".join(gnum(x) for x in cols) + "\n")
        figs += [("upload_time.gp", "upload_time.png"), ("memory.gp", "memory.png")]
    if any(r.get("rps") for r in calc_rows):
        with open(os.path.join(OUT, "calc.dat"), "w") as f:
            f.write("# label median_rps min_rps max_rps\n")
            labels = dict(CALC_SERVERS + [("weir-2cores", "weir, 2 cores")])
            for sid in ["weir", "weir-2cores", "aiohttp", "flask-threaded", "flask"]:
                vals = [r.get("rps") for r in calc_rows if r["server"] == sid]
                if median(vals) is None:
                    continue
                lo, hi = spread(vals)
                f.write('"%s" %s %s %s\n' % (labels[sid], gnum(median(vals)), gnum(lo), gnum(hi)))
        figs.append(("calc.gp", "calc.png"))
    if any(r.get("rps") for r in ceiling_rows):
        with open(os.path.join(OUT, "ceiling.dat"), "w") as f:
            f.write("# protocol weir_median weir_min weir_max h2o_median h2o_min h2o_max (req/s)\n")
            for proto, label in (("h2c", "h2c (-c 100 -m 10)"), ("h1", "HTTP/1.1 (--h1 -c 100 -m 10)")):
                cols = []
                for sid in ("weir", "h2o"):
                    vals = [r.get("rps") for r in ceiling_rows if r.get("server") == sid and r.get("proto") == proto]
                    lo, hi = spread(vals)
                    cols += [median(vals), lo, hi]
                f.write('"%s" %s\n' % (label, " ".join(gnum(x) for x in cols)))
        figs.append(("ceiling.gp", "ceiling.png"))
    if any(r.get("p99_ms") is not None for r in iso_rows):
        with open(os.path.join(OUT, "isolation.dat"), "w") as f:
            f.write("# phase p50_median p50_min p50_max p99_median p99_min p99_max (ms)\n")
            for phase in ("alone", "under /calc"):
                rr = [r for r in iso_rows if r.get("phase") == phase and r.get("p99_ms") is not None]
                cols = []
                for k in ("p50_ms", "p99_ms"):
                    vals = [r[k] for r in rr]
                    lo, hi = spread(vals)
                    cols += [median(vals), lo, hi]
                f.write('"/cache %s" %s\n' % (phase, " ".join(gnum(x) for x in cols)))
        figs.append(("isolation.gp", "isolation.png"))
    made = []
    for gp, png in figs:
        if gnuplot(gp):
            made.append(png)
    return made


def mark(ok):
    return "**met**" if ok else "**missed**"


def report(facts, results, figs, started, finished, not_run):
    """Writes OUT/RESULTS.md (figures relative to OUT) and returns its text with figures under `prefix`."""
    date_dir = os.path.basename(OUT)

    def fig(name, prefix):
        return "![%s](%s%s)" % (name, prefix, name) if name in figs else "(figure %s not made)" % name

    def build(prefix):
        L = []
        A = L.append
        reps = P["reps"]
        A("# weir benchmark results")
        A("")
        A("Generated by `make %s` (bench/run.sh, bench/bench.py) on %s; the run took %.1f minutes. "
          "Raw CSV, the exact commands, the configurations and the machine facts are in "
          "[results/%s/](%s)." % ("bench-quick" if QUICK else "bench", facts["date"], (finished - started) / 60.0,
                                  date_dir, prefix or "./"))
        A("")
        if QUICK:
            A("> **Quick run**: fewer points and **N = 1 repetition** (no spread); the figures of record come from a "
              "full `make bench`.")
            A("")
        A("This reproduces the study in `shared/seed` (Flask vs Sanic: an I/O-bound `/upload` behind a 5-slot "
          "semaphore with 100-200 ms sleeps, and a CPU-bound `/calc` summing i**2 for i < 1,000,000) with weir and "
          "its peers side by side, on one machine, in one run.")
        A("")
        A("## Machine and method")
        A("")
        A("| | |")
        A("|---|---|")
        for k in ("cpu_model", "nproc", "memory", "kernel", "os", "virtualization", "somaxconn", "ulimit_n", "pinning",
                  "weir", "weir_commit", "cc"):
            A("| %s | %s |" % (k, facts.get(k, "")))
        A("| packages | %s |" % ", ".join("%s %s" % kv for kv in facts["packages"].items()))
        A("")
        A("- Every measurement uses a **fresh server process**, a **warm-up** (a few requests of the same kind) and "
          "**N = %d** repetition%s; tables give the **median** and the **spread (min-max)**. Ratios compare figures "
          "of the same run." % (reps, "" if reps == 1 else "s"))
        A("- The server is pinned to cpu %s and every load generator (ab, h2load, redis-benchmark) and this "
          "script to cpu %s with `taskset`; weir runs with `num-threads: 1` (the h2o binary too) unless stated."
          % (SERVER_CPUS, LOAD_CPUS))
        A("- Peers (bench/peers/): the seed's Flask code unchanged, on Flask's development server (`app.run`, "
          "listen backlog 128, as the seed ran it), `threaded=False` and `threaded=True`; **Sanic is not packaged "
          "for Debian and cannot be installed here**, so the seed's Sanic app runs with the same semantics on "
          "aiohttp %s (asyncio.Semaphore(5), `await asyncio.sleep(randint(100, 200) / 1000)`, one event loop, "
          "backlog 100 and an access log as Sanic's defaults, no uvloop). As in the seed, the Sanic app answers "
          "/upload with `{\"result\": true}` and Flask with `{\"success\": true}`; weir answers "
          "`{\"success\": true}`." % facts["packages"].get("python3-aiohttp", ""))
        A("- The Python servers run on Debian's /usr/bin/python3 (%s) with Flask %s." % (
            facts["packages"].get("python3", "?"), facts["packages"].get("python3-flask", "?")))
        if NOISE:
            A("- **Other load on the machine.** This machine is shared: other processes (not started by this run) "
              "used, on average, %s. Absolute figures move with that load (the Python peers and the bare loop "
              "too); ratios between servers measured side by side in the same run are the figures to read." % (
                  ", ".join("%.2f cores during %s" % (v["other_cores"], k) for k, v in NOISE.items())))
        A("- weir `/upload` is run twice: with `upload.delay-min = upload.delay-max = 150` (the exact bound "
          "ceil(C/5) x 0.15 s applies) and with 100-200 ms as the peers use (their fair comparison; the dashed "
          "line is the expected time of a zero-overhead server with those random delays, by simulation).")
        A("")
        A("## Targets")
        A("")
        A("Each target is judged on this run's medians; where one is missed, the section below says so with its "
          "figure, and [bench/NOTES.md](%s) gives what was found when the misses were investigated." % (
              "NOTES.md" if prefix else "../../NOTES.md"))
        A("")
        A("| # | target | measured | verdict | figure |")
        A("|---|---|---|---|---|")
        for t in results["targets"]:
            A("| %s | %s | %s | %s | %s |" % (t["exp"], t["target"], t["measured"], t["verdict"],
                                             ("[%s](%s%s)" % (t["fig"], prefix, t["fig"])) if t.get("fig") else "-"))
        A("")
        for section in results["sections"]:
            A("## " + section["title"])
            A("")
            for line in section["lines"]:
                A(line)
            for f in section.get("figs", []):
                A("")
                A(fig(f, prefix))
            A("")
        if not_run:
            A("## Not run")
            A("")
            for x in not_run:
                A("- " + x)
            A("")
        return "\n".join(L) + "\n"

    with open(os.path.join(OUT, "RESULTS.md"), "w") as f:
        f.write(build(""))
    return build("results/%s/" % date_dir)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return out


def analyse(exp1_rows, calc_rows, loop_rows, scale_rows, ceil_rows, iso_rows, redis_rows):
    targets, sections = [], []
    labels = dict(UPLOAD_SERVERS)

    # ---- Exp 1 and 2
    if exp1_rows:
        summ = summarize_exp1(exp1_rows)
        lines = ["`ab -n C -c C -m POST /upload`, as the seed ran it (ab also gets `-r`, so that a socket error is "
                 "counted instead of ending the run, and `-s %d`); a point that does not finish within %d s is "
                 "stopped and shown as failed (timeout), and is not tried again at a higher C. Total time in seconds, "
                 "median (min-max over the repetitions), and the median of the requests per second." % (
                     P["exp1_limit_s"], P["exp1_limit_s"]), "",
                 "**ab and the bound.** ab 2.4 (Debian 12's apache2-utils) sends its first request alone and opens "
                 "the other C - 1 connections only after that response has arrived (seen with strace), so no server "
                 "can finish under ab in less than 0.15 + ceil((C - 1)/5) x 0.15 s (\"ab floor\"; 0.45 s instead "
                 "of 0.30 s at C = 10). The exact bound ceil(C/5) x 0.15 s is therefore checked with a client that "
                 "sends all C requests at once: `h2load --h1 -n C -c C -t 1` POST (series \"weir ..., h2load\"). "
                 "The peers use random 100-200 ms delays, as in the seed; weir is run both with a fixed 150 ms "
                 "(exact bound) and with 100-200 ms (like for like; compare with the expected time of a "
                 "zero-overhead server under ab, by simulation).", ""]
        header = ["C", "bound (s)", "ab floor (s)", "zero-overhead 100-200 ms under ab (s)"] + [
            labels[s] for s, _ in UPLOAD_SERVERS]
        trs = []
        for c in P["exp1_c"]:
            tr = [c, "%.2f" % bound_s(c), "%.2f" % ab_floor_s(c), "%.2f" % expected_random_s(c)]
            for sid, _ in UPLOAD_SERVERS:
                s = summ.get((sid, c))
                failed_below = [r["C"] for r in exp1_rows if r["server"] == sid and r.get("status") == "timeout"
                                and r["C"] < c]
                if not s and failed_below:
                    tr.append("not run (timed out at C = %d)" % min(failed_below))
                elif not s:
                    tr.append("-")
                elif s["time"] is None:
                    tr.append("**failed** (%s)" % ", ".join(s["statuses"]))
                else:
                    cell = "%.3f (%.3f-%.3f), %s rps" % (s["time"], s["time_lo"], s["time_hi"], fmt(s["rps"], 1))
                    if not s["all_ok"]:
                        cell += ", **%s; %d failed requests**" % ("/".join(s["statuses"]), s["failed"])
                    tr.append(cell)
            trs.append(tr)
        lines += table(header, trs)
        weir_fails = [r for r in exp1_rows if r["server"] in ("weir", "weir-rand") and (r.get("failed") or 0)]
        if weir_fails:
            lines.append("")
            lines.append("weir's failed requests under ab: %s. ab counts as a \"Length\" failure a connection that "
                         "closes without a response. ab opens one spare connection that it never sends a request on; "
                         "weir (h2o) closes an HTTP/1 connection that sends nothing for `http1-request-timeout` "
                         "(default 10 s), so every ab run longer than 10 s (C = 1000 takes 30 s) shows exactly one "
                         "such failure while all C requests are answered 200. Checked by hand: with "
                         "`http1-request-timeout: 1`, `ab -n 50 -c 50` (1.7 s) shows 1 Length failure, with the "
                         "default 0. h2load, which opens no spare connection, sees 0 failures at every C." % (
                             "; ".join("%s C = %s rep %s: %s (%s)" % (r["server"], r["C"], r["rep"], r.get("failed"),
                                                                    r.get("fail_kinds") or "kind not recorded")
                                       for r in weir_fails)))

        def check(sid, floor):
            """weir's median within 3% + 20 ms of floor(C), 0 failures, at every C."""
            worst, ok, missing, fails, slowest = None, True, [], 0, None
            for c in P["exp1_c"]:
                s = summ.get((sid, c))
                if not s or s["time"] is None:
                    ok = False
                    missing.append(c)
                    continue
                fails += s["failed"]
                excess = s["time"] - floor(c)
                if worst is None or excess - (floor(c) * 0.03 + 0.02) > worst[2]:
                    worst = (c, excess, excess - (floor(c) * 0.03 + 0.02))
                if slowest is None or s["time_hi"] - floor(c) * 1.03 - 0.02 > slowest[2]:
                    slowest = (c, s["time_hi"] - floor(c), s["time_hi"] - floor(c) * 1.03 - 0.02)
                if s["time"] > floor(c) * 1.03 + 0.020 or not s["all_ok"] or s["failed"]:
                    ok = False
            meas = ("closest to its limit: C = %d, median %.3f s over %.3f s (allowed: %.3f s over); slowest single "
                    "repetition, relative to its allowance: %.3f s over at C = %d; %d failed requests" % (
                        worst[0], worst[1], floor(worst[0]), floor(worst[0]) * 0.03 + 0.02, slowest[1], slowest[0],
                        fails)) if worst else "not measured"
            if missing:
                meas += "; no result at C = %s" % ", ".join(map(str, missing))
            return ok, meas

        cs = ", ".join(map(str, P["exp1_c"]))
        ok, meas = check("weir-h2load", bound_s)
        targets.append(dict(exp="1", target="weir within 3%% + 20 ms of ceil(C/5) x 0.15 s at every C (%s), 0 "
                            "failures; client sending all C at once (h2load)" % cs,
                            measured=meas, verdict=mark(ok), fig="upload_time.png"))
        ok, meas = check("weir", ab_floor_s)
        okb, measb = check("weir", bound_s)
        targets.append(dict(exp="1", target="the same with ab -n C -c C, as the seed: against ab's floor "
                            "0.15 + ceil((C-1)/5) x 0.15 s" % (),
                            measured=meas + ("" if okb else " (against the literal bound: missed, by ab's "
                                             "serialised first request)"),
                            verdict=mark(ok), fig="upload_time.png"))
        sections.append(dict(title="Experiment 1: /upload, time against concurrency (the seed's Result 1)",
                             lines=lines, figs=["upload_time.png"]))
        # Exp 2
        lines = ["Peak RSS and peak VSZ (MiB) of each server's process tree during the measured ab run, sampled "
                 "from /proc/PID/status every 10 ms (VmRSS, VmSize; VmHWM is reset before the run and read after "
                 "it), median over the repetitions. A point that failed still shows the memory it reached.", ""]
        mem_servers = [sid for sid, _ in UPLOAD_SERVERS if sid != "weir-h2load"]
        header = ["C"] + [labels[s] + " RSS / VSZ" for s in mem_servers]
        trs = []
        for c in P["exp1_c"]:
            tr = [c]
            for sid in mem_servers:
                s = summ.get((sid, c))
                tr.append("%s / %s" % (fmt(s["rss"] / 1024.0, 1), fmt(s["vsz"] / 1024.0, 1))
                          if s and s["rss"] else "-")
            trs.append(tr)
        lines += table(header, trs)
        cmax = max(P["exp1_c"])
        w = summ.get(("weir", cmax))
        peers = [(sid, summ.get((sid, cmax))) for sid in ("aiohttp", "flask-threaded", "flask")]
        # a peer that did not serve the point (timeout) never held C requests: its memory there is not comparable
        failed_peers = [sid for sid, s in peers if s and s["time"] is None]
        peers = [(sid, s) for sid, s in peers if s and s["rss"] and s["time"] is not None]
        if w and w["rss"] and peers:
            lean_sid, lean = min(peers, key=lambda x: x[1]["rss"])
            ok2 = w["rss"] < lean["rss"] / 3.0
            meas = "C = %d: weir %.1f MiB, leanest peer that served the point: %s %.1f MiB (ratio %.2f)" % (
                cmax, w["rss"] / 1024.0, labels[lean_sid], lean["rss"] / 1024.0, w["rss"] / float(lean["rss"]))
            if failed_peers:
                meas += "; not counted: %s (timed out at C = %d, never held C requests)" % (
                    ", ".join(labels[x] for x in failed_peers), cmax)
        else:
            ok2, meas = False, "not measured"
        targets.append(dict(exp="2", target="weir's peak RSS at C = %d under a third of the leanest peer's" % cmax,
                            measured=meas, verdict=mark(ok2), fig="memory.png"))
        sections.append(dict(title="Experiment 2: memory against concurrency (the seed's memory figure)",
                             lines=lines, figs=["memory.png"]))

    # ---- Exp 3
    if calc_rows:
        lines = ["`ab -n %d -c %d /calc` (sum of i**2 for i < 1,000,000; every server answers 333332833333500000). "
                 "CPU is the server's user + system time during the measured run (from /proc/PID/stat)." %
                 (P["exp3_n"], P["exp3_c"]), ""]
        labels3 = dict(CALC_SERVERS + [("weir-2cores", "weir, 2 cores (num-threads 2, on cpus 0-1; ab on cpu 1, sharing it)")])
        trs = []
        for sid in ["weir", "weir-2cores", "aiohttp", "flask-threaded", "flask"]:
            rr = [r for r in calc_rows if r["server"] == sid and r.get("rps") is not None]
            if not rr:
                continue
            lo, hi = spread([r["rps"] for r in rr])
            trs.append([labels3[sid], "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 1), fmt(lo, 1), fmt(hi, 1)),
                        fmt(median([r["mean_ms"] for r in rr]), 2), fmt(median([r["p99_ms"] for r in rr]), 0),
                        fmt(median([r["cpu_s"] for r in rr]), 2), fmt(median([r["cpu_ms_per_req"] for r in rr]), 2),
                        ", ".join(sorted(set(r["status"] for r in rr)))])
        lines += table(["server", "RPS median (min-max)", "mean latency (ms)", "p99 (ms)", "CPU (s)",
                        "CPU per request (ms)", "status"], trs)
        w_tpr = median([r.get("tpr_all_long_ms") for r in calc_rows if r["server"] == "weir"])
        w_cpu = median([r.get("cpu_long_ms_per_req") for r in calc_rows if r["server"] == "weir"])
        loop_ms = median([r["median_ms"] for r in loop_rows]) if loop_rows else None
        loop_cpu = median([r.get("cpu_ms") for r in loop_rows]) if loop_rows else None
        lines.append("")
        if w_tpr and loop_ms:
            ratio = w_tpr / loop_ms
            lines.append("weir's time per request on one core (ab's \"time per request across all concurrent "
                         "requests\" over `-n %d -c %d`): **%.3f ms**, of which CPU (all of weir's threads, from "
                         "/proc): **%s ms**. The bare loop `weir_calc_sum_squares(1000000)` timed alone on the same core "
                         "right after weir (bench/calc_loop.c, 1000 calls): median **%.3f ms** wall, **%s ms** CPU. "
                         "Ratios: wall **%.2f**, CPU **%s**." % (
                             P["exp3_weir_n"], P["exp3_c"], w_tpr, fmt(w_cpu, 3), loop_ms, fmt(loop_cpu, 3), ratio,
                             fmt(w_cpu / loop_cpu if w_cpu and loop_cpu else None, 2)))
            targets.append(dict(exp="3", target="weir's time per /calc within 1.2x of the bare summation loop (wall)",
                                measured="%.3f ms vs %.3f ms (%.2fx)" % (w_tpr, loop_ms, ratio),
                                verdict=mark(ratio <= 1.2), fig="calc.png"))
            w_loop = median([r.get("loop_cpu_ms_per_req") for r in calc_rows if r["server"] == "weir"])
            w_pool = median([r.get("pool_cpu_ms_per_req") for r in calc_rows if r["server"] == "weir"])
            if w_loop is not None and w_pool is not None and loop_cpu:
                lines.append("")
                if w_pool / loop_cpu > 1.1:
                    why = ("most of the difference is the sums themselves costing more inside the server than alone "
                           "(the same code, run while the core also takes the wakeups of one TCP connection per "
                           "request); in this VM that cost moves with the host's load, see bench/NOTES.md")
                else:
                    why = ("ab without `-k`, as in the seed, opens and closes a TCP connection for every request, and "
                           "that accept / read / respond / close on loopback is most of the difference")
                lines.append("Where weir's CPU goes (per request, from each thread's /proc/PID/task/TID/schedstat): the "
                             "sums on the /calc pool's threads **%.3f ms** (the bare loop: %.3f ms CPU, ratio %.2f), the "
                             "HTTP worker loop **%.3f ms**: %s." % (w_pool, loop_cpu, w_pool / loop_cpu, w_loop, why))
            if w_cpu and loop_cpu:
                targets.append(dict(exp="3", target="the same in CPU time per request (insensitive to neighbours)",
                                    measured="%.3f ms vs %.3f ms (%.2fx)" % (w_cpu, loop_cpu, w_cpu / loop_cpu),
                                    verdict=mark(w_cpu / loop_cpu <= 1.2), fig="calc.png"))
        w1 = median([r.get("rps_long") for r in calc_rows if r["server"] == "weir"])
        w2 = median([r.get("rps_long") for r in calc_rows if r["server"] == "weir-2cores"])
        if w1 and w2:
            lines.append("")
            lines.append("Cores (`ab -n %d -c %d`): weir on 1 core %.1f req/s, on 2 cores %.1f req/s (x%.2f; on 2 cores "
                         "ab shares them)." % (P["exp3_weir_n"], P["exp3_c"], w1, w2, w2 / w1))
            targets.append(dict(exp="3", target="weir's /calc RPS grows with cores",
                                measured="1 core %.0f req/s, 2 cores %.0f req/s (x%.2f)" % (w1, w2, w2 / w1),
                                verdict=mark(w2 > w1 * 1.3), fig="calc.png"))
        sections.append(dict(title="Experiment 3: /calc, CPU-bound (the seed's Result 2)", lines=lines,
                             figs=["calc.png"]))

    # ---- Exp 4
    if scale_rows:
        conns = P["exp4_conns"]
        bound = conns / 0.15
        ceil_r = [r for r in scale_rows if r["kind"] == "ceiling" and r.get("rps")]
        del_r = [r for r in scale_rows if r["kind"] == "delay" and r.get("rps")]
        ceiling = median([r["rps"] for r in ceil_r])
        rps = median([r["rps"] for r in del_r])
        errs = sum(r.get("errors") or 0 for r in del_r)
        kib = median([r["kib_per_inflight"] for r in del_r])
        lines = ["weir with `upload.concurrency: %d` and `upload.delay-min/max: 100/200`; "
                 "`h2load --h1 -c %d -t 1 -D %d --warm-up-time %d -d <1-byte body>` POST /upload (h2load cannot "
                 "send an empty file; each connection keeps one request in flight, so %d requests are in flight). "
                 "The bound is %d / 0.15 s = %.0f req/s; weir's own ceiling is the same command with delays 0/0 "
                 "(one h2load thread on one core drives 10,000 connections, so that ceiling may be the client's). "
                 "RSS per request in flight = (peak RSS during the run - RSS before it) / %d." % (conns, conns, P["exp4_duration"], P["exp4_warmup"],
                                                            conns, conns, bound, conns), ""]
        trs = []
        for kind, label in (("delay", "100-200 ms delays"), ("ceiling", "no delay (ceiling)")):
            rr = [r for r in scale_rows if r["kind"] == kind and r.get("rps") is not None]
            if not rr:
                continue
            lo, hi = spread([r["rps"] for r in rr])
            trs.append([label, "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 0), fmt(lo, 0), fmt(hi, 0)),
                        sum(r.get("errors") or 0 for r in rr), fmt(median([r["mean_ms"] for r in rr]), 1),
                        fmt(median([r["base_rss_kib"] for r in rr]) / 1024.0, 1),
                        fmt(median([r["peak_rss_kib"] for r in rr]) / 1024.0, 1),
                        fmt(median([r["kib_per_inflight"] for r in rr]), 2)])
        lines += table(["run", "req/s median (min-max)", "errors (all reps)", "mean latency (ms)",
                        "RSS before (MiB)", "peak RSS (MiB)", "KiB per request in flight"], trs)
        if rps and ceiling:
            ref = min(bound, ceiling)
            frac = rps / ref
            ok4 = frac >= 0.8 and errs == 0 and kib is not None and kib <= 8
            lines.append("")
            lines.append("Throughput %.0f req/s = %.0f%% of min(bound %.0f, ceiling %.0f) = %.0f req/s, and %.0f%% of "
                         "the bound alone. At this scale both cores are busy: weir's (one worker thread) and the load "
                         "generator's (one h2load thread for 10,000 connections); see bench/NOTES.md for where "
                         "weir's time goes." % (rps, 100 * frac, bound, ceiling, ref, 100.0 * rps / bound))
            targets.append(dict(exp="4", target=">= 80%% of min(bound, ceiling) at %d connections, 0 errors, "
                                "<= 8 KiB RSS per request in flight" % conns,
                                measured="%.0f req/s = %.0f%% of %.0f; %d errors; %.2f KiB per request" % (
                                    rps, 100 * frac, ref, errs, kib or float("nan")),
                                verdict=mark(ok4), fig="scale.png"))
        probe = read_csv("scale_memory.csv")
        if probe:
            lines.append("")
            lines.append("Where that memory goes (a plain socket client: %d connections that send nothing, then one "
                         "POST each, held 3 s): **%s KiB per silent connection** (weir's listeners ask the kernel to defer "
                         "each connection until its client speaks; in a burst of this size the kernel hands some over "
                         "anyway, and those cost weir the socket, h2o's connection and the libuv handle), **+%s KiB per "
                         "request** once it has been read (the rest of the connections, and the requests), **%s KiB in "
                         "all** (median of %d). "
                         "The request's share is two pages that libh2o 2.2.5 touches for every request it reads: the "
                         "first page of the connection's socket input buffer (8 KiB reserved at the first read, "
                         "`h2o_socket_buffer_prototype`, kept for the life of the connection) and the first 4 KiB "
                         "chunk of the request's memory pool, where h2o keeps the parsed headers; weir's own share (the "
                         "upload job, one allocation linked to that pool) is about 150 bytes. h2load's connections also hold the previous "
                         "response's state, hence the higher figure above." % (
                             conns, fmt(median([r["idle_kib_per_conn"] for r in probe]), 2),
                             fmt(median([r["request_kib"] for r in probe]), 2),
                             fmt(median([r["total_kib"] for r in probe]), 2), len(probe)))
        sections.append(dict(title="Experiment 4: scale, %d concurrent uploads" % conns, lines=lines,
                             figs=["scale.png"]))

    # ---- Exp 5
    if ceil_rows:
        lines = ["A /cache hit (memory backend, 26-byte value; reply body `%s`, %d bytes) against the stock h2o "
                 "binary serving a static file with exactly those bytes; `h2load -n %d -c 100 -m 10 -t 1` (h2c, prior "
                 "knowledge) and the same with `--h1` (10 pipelined requests per connection). Both servers: 1 thread "
                 "on cpu %s." % (open(os.path.join(OUT, "cache-reply-body.txt")).read()
                                if os.path.exists(os.path.join(OUT, "cache-reply-body.txt")) else "?",
                                os.path.getsize(os.path.join(OUT, "cache-reply-body.txt"))
                                if os.path.exists(os.path.join(OUT, "cache-reply-body.txt")) else 0,
                                P["exp5_n"], SERVER_CPUS), ""]
        trs, ok5, meas = [], True, []
        for proto in ("h2c", "h1"):
            vals = {}
            for sid in ("weir", "h2o"):
                rr = [r for r in ceil_rows if r.get("server") == sid and r.get("proto") == proto and r.get("rps")]
                vals[sid] = median([r["rps"] for r in rr])
                lo, hi = spread([r["rps"] for r in rr])
                errs = sum(r.get("errors") or 0 for r in rr)
                cpus = [r["cpu_us_per_req"] for r in rr if r.get("cpu_us_per_req")]
                trs.append([proto, sid, "%s (%s-%s)" % (fmt(vals[sid], 0), fmt(lo, 0), fmt(hi, 0)), errs,
                            fmt(median(cpus), 2) if cpus else "-", ""])
            if vals["weir"] and vals["h2o"]:
                ratio = vals["weir"] / vals["h2o"]
                pairs = []
                for rep_i in sorted(set(r["rep"] for r in ceil_rows if r.get("proto") == proto)):
                    w = [r["rps"] for r in ceil_rows if r.get("proto") == proto and r["rep"] == rep_i
                         and r.get("server") == "weir" and r.get("rps")]
                    h = [r["rps"] for r in ceil_rows if r.get("proto") == proto and r["rep"] == rep_i
                         and r.get("server") == "h2o" and r.get("rps")]
                    if w and h:
                        pairs.append("%.2f" % (w[0] / h[0]))
                trs[-2][5] = "%.2f (per repetition: %s)" % (ratio, ", ".join(pairs))
                meas.append("%s %.2fx" % (proto, ratio))
                ok5 = ok5 and ratio >= 0.9
            else:
                ok5 = False
        lines += table(["protocol", "server", "req/s median (min-max)", "errors", "server CPU per request (us)",
                        "weir / h2o (medians)"], trs)
        lines += ["", "The server's CPU time per request (from /proc, all its threads) moves less with the neighbours' "
                  "load than the throughput does; h2load, on the other core, is close to saturating it too."]
        targets.append(dict(exp="5", target=">= 0.9x the stock h2o binary on h2c and on HTTP/1.1",
                            measured=", ".join(meas) or "not measured", verdict=mark(ok5), fig="ceiling.png"))
        sections.append(dict(title="Experiment 5: the HTTP ceiling", lines=lines, figs=["ceiling.png"]))

    # ---- Exp 6
    if iso_rows:
        lines = ["/cache hits at a fixed rate (`h2load --h1 -c %d --rps %d -D %d`, %d req/s in all) with latency "
                 "percentiles from h2load's per-request log, first alone, then while `ab -c 8 /calc` keeps weir's "
                 "thread pool busy (weir: 1 worker thread, the /calc pool's threads (one per CPU, nice 10), all on cpu %s)." % (
                     P["exp6_clients"], P["exp6_rps_per_client"], P["exp6_duration"],
                     P["exp6_clients"] * P["exp6_rps_per_client"], SERVER_CPUS), ""]
        trs = []
        med = {}
        for phase in ("alone", "under /calc"):
            rr = [r for r in iso_rows if r.get("phase") == phase and r.get("p99_ms") is not None]
            if not rr:
                continue
            med[phase] = median([r["p99_ms"] for r in rr])
            lo, hi = spread([r["p99_ms"] for r in rr])
            trs.append(["/cache " + phase, fmt(median([r["p50_ms"] for r in rr]), 3),
                        "%s (%s-%s)" % (fmt(med[phase], 3), fmt(lo, 3), fmt(hi, 3)),
                        fmt(median([r["max_ms"] for r in rr]), 2), sum(r.get("errors") or 0 for r in rr),
                        fmt(median([r["server_cpu_util"] for r in rr]), 2),
                        fmt(median([r.get("calc_rps") for r in rr]), 0)])
        lines += table(["phase", "p50 (ms)", "p99 (ms) median (min-max)", "max (ms)", "errors",
                        "server CPU (cores)", "/calc req/s"], trs)
        if "alone" in med and "under /calc" in med:
            ratio = med["under /calc"] / med["alone"]
            targets.append(dict(exp="6", target="/cache p99 under /calc saturation <= 3x its p99 alone",
                                measured="%.3f ms vs %.3f ms (%.2fx)" % (med["under /calc"], med["alone"], ratio),
                                verdict=mark(ratio <= 3.0), fig="isolation.png"))
        sections.append(dict(title="Experiment 6: isolation", lines=lines, figs=["isolation.png"]))

    # ---- Exp 7
    if redis_rows:
        lines = ["redis-server (loopback, no persistence) on cpu %s beside weir; weir's /cache with "
                 "`cache.backend: redis` against `redis-benchmark -t set,get -c 100 -d 26` (GET row) and weir's "
                 "memory backend, all with 100 requests in flight (`h2load --h1 -c 100 -m 1 -n %d`)." % (
                     SERVER_CPUS, P["exp7_n"]), ""]
        trs = []
        for what in ("redis-benchmark GET", "weir /cache redis", "weir /cache memory"):
            rr = [r for r in redis_rows if r.get("what") == what and r.get("rps")]
            if not rr:
                continue
            lo, hi = spread([r["rps"] for r in rr])
            trs.append([what, "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 0), fmt(lo, 0), fmt(hi, 0)),
                        sum(r.get("errors") or 0 for r in rr)])
        lines += table(["what", "req/s median (min-max)", "errors"], trs)
        sections.append(dict(title="Experiment 7: Redis", lines=lines))
    return dict(targets=targets, sections=sections)


# ------------------------------------------------------------------------------------------------------------------

def read_csv(name):
    path = os.path.join(OUT, name)
    if not os.path.exists(path):
        return []
    import csv
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            for k, v in list(r.items()):
                if v == "":
                    r[k] = None
                    continue
                try:
                    r[k] = int(v)
                except ValueError:
                    try:
                        r[k] = float(v)
                    except ValueError:
                        pass
            rows.append(r)
    return rows


def reanalyse(out, update):
    global OUT, TMP, COMMANDS, QUICK, P, NOISE
    OUT, TMP = out, os.path.join(out, "tmp")
    with open(os.path.join(OUT, "run.json")) as f:
        run = json.load(f)
    QUICK, P, NOISE = run["quick"], run["params"], run["noise"]
    COMMANDS = open(os.devnull, "w")
    exp1_rows, calc_rows = read_csv("upload.csv"), read_csv("calc.csv")
    loop_rows, scale_rows, ceil_rows = read_csv("calc_loop.csv"), read_csv("scale.csv"), read_csv("ceiling.csv")
    iso_rows, redis_rows = read_csv("isolation.csv"), read_csv("redis.csv")
    summ = summarize_exp1(exp1_rows) if exp1_rows else {}
    figs = write_plot_data(summ, calc_rows, ceil_rows, iso_rows, scale_rows)
    results = analyse(exp1_rows, calc_rows, loop_rows, scale_rows, ceil_rows, iso_rows, redis_rows)
    text = report(run["facts"], results, figs, run["started"], run["finished"], run["not_run"])
    if update and not QUICK:
        with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
            f.write(text)
    for t in results["targets"]:
        progress("target exp %s: %s -> %s" % (t["exp"], t["measured"], t["verdict"].strip("*")))
    return 0


def main():
    global OUT, TMP, COMMANDS, DEADLINE, QUICK, P, ONE_BYTE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer points, N = 1, <= 3 minutes")
    ap.add_argument("--only", default="", help="comma-separated subset: exp1,exp3,exp4,exp5,exp6,exp7")
    ap.add_argument("--out", default=None, help="results directory (default bench/results/<date>[-quick])")
    ap.add_argument("--no-update", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--reanalyse", metavar="DIR", help="redraw the figures and rewrite the reports of the run in DIR "
                    "from its CSV files and run.json, without measuring anything")
    a = ap.parse_args()
    if a.reanalyse:
        return reanalyse(os.path.abspath(a.reanalyse), update=not a.no_update)
    QUICK = a.quick
    P = PARAMS["quick" if QUICK else "full"]
    DEADLINE = T0 + P["budget_s"]
    only = set(x.strip() for x in a.only.split(",") if x.strip())
    OUT = a.out or os.path.join(BENCH, "results", datetime.date.today().isoformat() + ("-quick" if QUICK else ""))
    OUT = os.path.abspath(OUT)
    TMP = os.path.join(OUT, "tmp")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(TMP)
    os.chmod(TMP, 0o755)
    ONE_BYTE = os.path.join(TMP, "one-byte-body")
    with open(ONE_BYTE, "w") as f:
        f.write("x")
    COMMANDS = open(os.path.join(OUT, "commands.txt"), "w")
    COMMANDS.write("# Every command run by bench/bench.py%s, in order. Ports are chosen at run time; weir listens "
                   "on port 0 and reports its port.\n" % (" --quick" if QUICK else ""))
    if not os.access(WEIR, os.X_OK):
        sys.exit("bench: %s is missing: run bench/run.sh (it builds weir in Release)" % WEIR)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < P["exp4_conns"] + 1000:
        P["exp4_conns"] = max(1000, soft - 1000)
        progress("open-file limit is %d: Exp 4 uses %d connections" % (soft, P["exp4_conns"]))
    facts = machine_facts()
    started = time.time()
    progress("%s run into %s (budget %d s, N = %d)" % ("quick" if QUICK else "full", OUT, P["budget_s"], P["reps"]))

    def want(x):
        return not only or x in only

    not_run = []
    res = {}
    for name, fn in (("exp1", exp1), ("exp3", exp3), ("exp4", exp4), ("exp5", exp5), ("exp6", exp6), ("exp7", exp7)):
        if not want(name):
            not_run.append("%s: not selected (--only)" % name)
            continue
        progress("---- %s" % name)
        nm = NoiseMeter()
        try:
            res[name] = fn()
        except Exception as e:  # a failing experiment is reported, the others still run
            import traceback
            traceback.print_exc()
            progress("%s FAILED: %s" % (name, e))
            not_run.append("%s: failed with %s: %s" % (name, type(e).__name__, e))
            res[name] = None
        NOISE[name] = nm.stop()
        progress("%s: other processes on this machine used %.2f cores on average (steal %.2f), load average %.2f" % (
            name, NOISE[name]["other_cores"], NOISE[name]["steal_cores"], NOISE[name]["loadavg_end"]))
    exp1_rows = res.get("exp1") or []
    calc_rows, loop_rows = res.get("exp3") or ([], [])
    for rows, name in ((exp1_rows, "exp1"), (calc_rows, "exp3"), (res.get("exp4") or [], "exp4"),
                       (res.get("exp5") or [], "exp5"), (res.get("exp6") or [], "exp6"),
                       (res.get("exp7") or [], "exp7")):
        skipped = [r for r in rows if str(r.get("status", "")).startswith("not run")]
        if skipped:
            not_run.append("%s: %d point(s) skipped because the run budget (%d s) was used up" % (
                name, len(skipped), P["budget_s"]))
    progress("---- figures and report")
    summ = summarize_exp1(exp1_rows) if exp1_rows else {}
    figs = write_plot_data(summ, calc_rows, res.get("exp5") or [], res.get("exp6") or [], res.get("exp4") or [])
    results = analyse(exp1_rows, calc_rows, loop_rows, res.get("exp4") or [], res.get("exp5") or [],
                      res.get("exp6") or [], res.get("exp7") or [])
    finished = time.time()
    with open(os.path.join(OUT, "run.json"), "w") as f:
        json.dump(dict(facts=facts, noise=NOISE, params=P, started=started, finished=finished, not_run=not_run,
                       quick=QUICK), f, indent=1)
    text = report(facts, results, figs, started, finished, not_run)
    if not QUICK and not a.no_update and not only:
        with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
            f.write(text)
        progress("bench/RESULTS.md updated")
    COMMANDS.close()
    for t in results["targets"]:
        progress("target exp %s: %s -> %s" % (t["exp"], t["measured"], t["verdict"].strip("*")))
    progress("done in %.1f s: %s" % (time.monotonic() - T0, OUT))
    failed = [x for x in not_run if "failed with" in x]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
