"""Load generators (ab, h2load, anything else through run_load), pinned to the load cpus and bounded in time, and
the parsers of their output. Every command is recorded in commands.txt and its output kept in tmp/."""

import math
import os
import re
import subprocess
import time

from .common import pinned, slug


def run_load(ctx, step, argv, timeout):
    """Runs a load generator; returns (returncode or 'timeout', output, seconds)."""
    argv = pinned(argv, ctx.load_cpus)
    ctx.record(step, argv)
    log_path = os.path.join(ctx.tmp, slug(step) + ".out")
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


class BackgroundLoad:
    """A load generator left running while something else is measured: `with BackgroundLoad(...) as bg:`, then
    bg.finish(timeout) waits for it (killing it after `timeout` s) and returns its output. Leaving the block kills it
    if it is still running."""

    def __init__(self, ctx, step, argv, log_name):
        self.argv = pinned(argv, ctx.load_cpus)
        ctx.record(step, self.argv)
        self.log = open(os.path.join(ctx.tmp, log_name), "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)

    def finish(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.log.name) as f:
            return f.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return False


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


def ab(ctx, step, url, n, c, method=None, limit=60, keepalive=False, post=None, put=None, content_type=None):
    """`ab -n n -c c` with a socket time-out of `limit` s; post / put: a file sent as each request's body (ab -p / -u)
    with `content_type` (-T); the parsed figures, wall_s and status ("ok", "errors", "timeout" or "aborted: ...")."""
    argv = ["ab", "-q", "-r", "-s", str(int(limit)), "-n", str(n), "-c", str(c)]
    if method:
        argv += ["-m", method]
    if post:
        argv += ["-p", post]
    if put:
        argv += ["-u", put]
    if content_type:
        argv += ["-T", content_type]
    if keepalive:
        argv += ["-k"]
    argv.append(url)
    rc, out, elapsed = run_load(ctx, step, argv, limit + 5)
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


def h2load(ctx, step, url, args, timeout):
    """h2load with `args`; the parsed figures, wall_s, errors (failed, errored, timed out or not 2xx) and status
    ("ok", "errors", "timeout" or "aborted (rc N)")."""
    argv = ["h2load"] + args + [url]
    rc, out, elapsed = run_load(ctx, step, argv, timeout)
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
    """{"count", "max", "p50", "p99"} (ms) of the 2xx requests in an h2load --log-file; {} when there is none."""
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
