"""What the abuse suite's scenarios share: the e2e kit (tests/e2e/weirtest, imported by path), the scale, the normal
client (probe.py in a process of its own), a sampler of weir's memory and CPU, the attackers run as processes, and
the record of a scenario's figures and targets."""

import json
import os
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import weirtest as wt  # noqa: E402  (by path, above)
from weirtest import Config, Weir  # noqa: E402,F401

PYTHON = sys.executable
MEMORY = {"cache.backend": "memory"}


class Failure(AssertionError):
    """A robust check of a scenario failed (make test fails on these, not on latency targets)."""


def check(cond, message):
    if not cond:
        raise Failure(message)


def raise_own_nofile(n):
    """Lets the suite itself open n descriptors (root may raise its hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if n <= soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return n


def nofile_limit(want=65536):
    """The descriptor limit to start weir with: the package's 65536, or this process's hard limit when lower (raising
    it needs CAP_SYS_RESOURCE, which a container may not grant)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


class Scale:
    """small: the run inside make test (seconds per scenario); full: make stress, the figures of RESULTS.md."""

    def __init__(self, name):
        assert name in ("small", "full")
        self.name = name
        self.full = name == "full"

    def pick(self, small, full):
        return full if self.full else small


# ---- the normal client -------------------------------------------------------------------------------------------
class Probe:
    """probe.py in its own process: `rate` requests a second on new HTTP/1.1 connections for `seconds`."""

    def __init__(self, port, path, rate, seconds, timeline=False):
        cmd = [PYTHON, os.path.join(HERE, "probe.py"), str(port), path, str(rate), str(seconds)]
        if timeline:
            cmd.append("--timeline")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wt.tmp.track_process(self.proc)
        self.seconds = seconds

    def result(self):
        out, err = self.proc.communicate(timeout=self.seconds + 60)
        wt.tmp.untrack_process(self.proc)
        check(self.proc.returncode == 0, "the probe failed: %s" % err)
        return json.loads(out)


def probe(port, path, rate, seconds, timeline=False):
    return Probe(port, path, rate, seconds, timeline).result()


# ---- weir's memory and CPU ---------------------------------------------------------------------------------------
class Sampler:
    """Samples weir's RSS every 50 ms in a thread; CPU seconds between start() and stop()."""

    def __init__(self, weir):
        self.weir = weir
        self.peak = 0.0
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.cpu0 = self.weir.cpu_seconds()
        self.t0 = time.monotonic()
        self.base = self.weir.rss_mib()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                rss = self.weir.rss_mib()
            except (OSError, AssertionError):
                return
            self.samples.append(rss)
            self.peak = max(self.peak, rss)
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.cpu = self.weir.cpu_seconds() - self.cpu0
        self.elapsed = time.monotonic() - self.t0
        return self

    @property
    def cpu_percent(self):
        """CPU of all weir's threads over the sampled time, in % of one core."""
        return round(100.0 * self.cpu / max(self.elapsed, 1e-3), 1)


# ---- processes the scenario starts -------------------------------------------------------------------------------
class Proc:
    """A command run in the background, killed by its pid when the case ends if it is still running."""

    def __init__(self, cmd, env=None):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))
        wt.tmp.track_process(self.proc)

    def wait(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise Failure("%s did not end within %ss:\n%s" % (" ".join(self.cmd), timeout, err[-2000:]))
        wt.tmp.untrack_process(self.proc)
        return self.proc.returncode, out, err

    def readline(self):
        """The next line the command prints (attack.py hold prints one when its connections are open)."""
        return json.loads(self.proc.stdout.readline())

    def json(self, timeout):
        """The last line the command printed, as JSON (it must have exited 0)."""
        code, out, err = self.wait(timeout)
        check(code == 0, "%s failed (%d):\n%s" % (" ".join(self.cmd), code, err[-2000:]))
        return json.loads(out.strip().splitlines()[-1])


def attacker(*args):
    """One of attack.py's attacks in its own process (see attack.py)."""
    return Proc([PYTHON, os.path.join(HERE, "attack.py")] + [str(a) for a in args])


# ---- figures -----------------------------------------------------------------------------------------------------
def ratio(during, before):
    if during is None or before in (None, 0):
        return None
    return round(during / before, 2)


class Result:
    """What a scenario reports: its abuse, probe figures, weir's peak RSS and CPU, tables, targets met or missed."""

    def __init__(self, name, title, abuse, scale):
        self.data = {"name": name, "title": title, "abuse": abuse, "scale": scale.name,
                     "command": "tests/stress/stress.py --scale %s %s" % (scale.name, name),
                     "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                     "figures": [], "tables": [], "targets": [], "notes": []}

    def figure(self, what, value):
        self.data["figures"].append([what, value])

    def table(self, title, columns, rows):
        self.data["tables"].append({"title": title, "columns": columns, "rows": rows})

    def target(self, what, value, met):
        """met: True, False, or None (not measurable in this run)."""
        self.data["targets"].append([what, value, met])

    def note(self, text):
        self.data["notes"].append(text)

    def probe_figures(self, label, base, during):
        """The normal client without and with the abuse, and the issue's targets on it."""
        self.figure("probe without abuse (%s)" % label, probe_text(base))
        self.figure("probe during abuse (%s)" % label, probe_text(during))
        r = ratio(during.get("p99_ms"), base.get("p99_ms"))
        self.target("%s: probe p99 at most 3x its unloaded value" % label,
                    "%s ms vs %s ms (%sx)" % (during.get("p99_ms"), base.get("p99_ms"), r), r is not None and r <= 3)
        self.target("%s: probe errors 0" % label, "%d of %d" % (during["errors"], during["sent"]), during["errors"] == 0)

    def memory_cpu(self, sampler, label=""):
        self.figure("weir peak RSS%s" % label, "%.1f MiB (%.1f MiB before)" % (sampler.peak, sampler.base))
        self.figure("weir CPU%s" % label, "%.1f%% of one core over %.1f s" % (sampler.cpu_percent, sampler.elapsed))


def probe_text(p):
    kinds = ", ".join("%s: %d" % kv for kv in sorted(p.get("error_kinds", {}).items()))
    return "%d req at %g/s: p50 %s ms, p99 %s ms, errors %d%s" % (
        p["sent"], p["rate"], p["p50_ms"], p["p99_ms"], p["errors"], (" (%s)" % kinds) if kinds else "")
