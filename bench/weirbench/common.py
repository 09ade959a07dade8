"""What every part of the benchmark shares: paths, the run's parameters, the run context (output directory, commands
log, time budget, cpu pinning) and small helpers (CSV, formatting, HTTP, shell)."""

import csv
import math
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
PY = "/usr/bin/python3"  # Debian's Python, where python3-flask and python3-aiohttp are installed
WEIR = os.path.join(ROOT, "build-release", "weir")
CALC_LOOP = os.path.join(ROOT, "build-release", "bench", "calc_loop")

# The parameters of the whole run, full and quick; each experiment adds its own (see experiment.Experiment.params).
RUN_PARAMS = {
    "full": dict(reps=3, budget_s=35 * 60),
    "quick": dict(reps=1, budget_s=235),
}


class Context:
    """The state of one run, handed to every part of the benchmark: nothing is kept in module globals.

    quick: a quick run; params: the run's parameters (RUN_PARAMS and every experiment's, one flat dict, as run.json
    stores it); out: the results directory; tmp: raw logs (out/tmp); server_cpus / load_cpus: the cpus that servers
    and load generators are pinned to (None on one cpu); noise: experiment name -> procs.NoiseMeter result;
    one_byte: a 1-byte request body for h2load -d (it cannot map an empty file)."""

    def __init__(self, quick, params, out, ncpu=None, commands=None):
        self.quick = quick
        self.params = params
        self.out = os.path.abspath(out)
        self.tmp = os.path.join(self.out, "tmp")
        self.ncpu = ncpu or os.cpu_count() or 1
        self.server_cpus = "0" if self.ncpu >= 2 else None
        self.load_cpus = "1" if self.ncpu >= 2 else None
        self.t0 = time.monotonic()
        self.deadline = self.t0 + params["budget_s"]
        self.noise = {}
        self.commands = commands if commands is not None else open(os.devnull, "w")
        self.one_byte = os.path.join(self.tmp, "one-byte-body")

    def progress(self, msg):
        sys.stdout.write("[bench %6.1fs] %s\n" % (time.monotonic() - self.t0, msg))
        sys.stdout.flush()

    def out_of_time(self, margin=0):
        """True when `margin` more seconds would overrun the run's time budget."""
        return time.monotonic() + margin > self.deadline

    def record(self, label, argv, note=None):
        """Appends a command (and an optional note, e.g. a configuration) to commands.txt."""
        self.commands.write("# %s%s\n%s\n" % (label, (" (" + note + ")") if note else "",
                                              " ".join(shlex.quote(a) for a in argv)))
        self.commands.flush()

    def path(self, name):
        return os.path.join(self.out, name)

    def write_csv(self, name, header, rows):
        """One line per row, the columns of `header` in order; a missing value is an empty field."""
        with open(self.path(name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                w.writerow(["" if r.get(h) is None else str(r.get(h)) for h in header])

    def read_csv(self, name):
        """The rows of a CSV file written by write_csv, numbers as int or float, empty fields as None; [] when the
        file is missing."""
        path = self.path(name)
        if not os.path.exists(path):
            return []
        rows = []
        with open(path, newline="") as f:
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


def pinned(argv, cpus):
    return (["taskset", "-c", cpus] + argv) if cpus is not None else list(argv)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def slug(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _numbers(xs):
    return [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def median(xs):
    xs = _numbers(xs)
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = _numbers(xs)
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


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def sh(cmd):
    """The stripped standard output of a shell command, "" when it fails or takes more than 20 s."""
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=20).stdout.strip()
    except subprocess.SubprocessError:
        return ""
