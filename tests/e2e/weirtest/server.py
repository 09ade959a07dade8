"""The weir process under test: started on the ports its configuration names (port 0: any free port, read back from
its log), stopped with SIGTERM and checked (exit code, no sanitizer report), or killed; its open descriptors.

Environment (set by ctest): WEIR_BIN, the binary; WEIR_SOURCE_DIR, the source tree; WEIR_SANITIZE=ON in ASan builds."""

import os
import resource
import re
import signal
import subprocess
import sys
import threading
import time

from . import tmp

_HERE = os.path.dirname(os.path.abspath(__file__))
WEIR_BIN = os.environ.get("WEIR_BIN", os.path.normpath(os.path.join(_HERE, "../../../build/weir")))
SOURCE_DIR = os.environ.get("WEIR_SOURCE_DIR", os.path.normpath(os.path.join(_HERE, "../../..")))
SANITIZED = os.environ.get("WEIR_SANITIZE", "OFF") in ("ON", "1", "TRUE", "YES")

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def assert_no_sanitizer_report(text, what="sanitizer report"):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            raise AssertionError(what + ":\n" + text)


class Weir:
    """A weir process. Use as a context manager or call start()/stop().

    config is YAML text or a Config; it is written to `name` in `directory` (by default a temporary directory of
    its own, removed when the case ends: files the test puts there, such as logs, can be read after stop())."""

    def __init__(self, config, name="server.yaml", directory=None, extra_args=(), env=None, nofile=None):
        """nofile: the descriptor limit (soft and hard) weir runs with, as `prlimit --nofile=N:N` would set it."""
        self.tmp = directory or tmp.temp_dir("weir-e2e-")
        self.nofile = nofile
        self.config_path = os.path.join(self.tmp, name)
        with open(self.config_path, "w") as f:
            f.write(str(config))
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.ports = []  # [(scheme, host, port)] in listen order
        self.stderr_lines = []
        self._lock = threading.Lock()
        self._reader = None

    # lifecycle -------------------------------------------------------------------------------------------
    def start(self, timeout=20):
        limit = None
        if self.nofile is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.proc = subprocess.Popen([WEIR_BIN, "-c", self.config_path] + self.extra_args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env, preexec_fn=limit)
        tmp.track_process(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(2)
                tmp.untrack_process(self)
                raise AssertionError("weir exited with %d before it was ready:\n%s" % (self.proc.returncode, self.stderr()))
            with self._lock:
                ready = any(" ready" in line and "weir" in line for line in self.stderr_lines)
            if ready:
                with self._lock:
                    for line in self.stderr_lines:
                        m = re.search(r"listening on (https?)://(\S+):(\d+)", line)
                        if m:
                            self.ports.append((m.group(1), m.group(2).strip("[]"), int(m.group(3))))
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError("weir was not ready within %ss:\n%s" % (timeout, self.stderr()))

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.stderr_lines.append(line)
            if os.environ.get("WEIR_E2E_VERBOSE"):
                sys.stderr.write("weir: " + line + "\n")

    def stderr(self):
        """What weir has written to stderr so far, as read by a thread of ours: a line weir has just written may not
        be here yet while it runs (wait_until it is); once weir has exited, everything it wrote is."""
        if self.proc is not None and self.proc.poll() is not None and self._reader is not None:
            self._reader.join(5)
        with self._lock:
            return "\n".join(self.stderr_lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30, expect_code=0):
        """SIGTERM, wait, and check the exit code and that no sanitizer report was printed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("weir did not exit within %ss of SIGTERM:\n%s" % (timeout, self.stderr()))
        tmp.untrack_process(self)
        self._reader.join(5)
        self.proc.stderr.close()
        out = self.stderr()
        assert_no_sanitizer_report(out, "sanitizer report from weir")
        if expect_code is not None and code != expect_code:
            raise AssertionError("weir exited with %d, expected %d:\n%s" % (code, expect_code, out))
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc and self.proc.stderr and self._reader is not None:
            self._reader.join(5)
            self.proc.stderr.close()
        tmp.untrack_process(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
            sys.stderr.write("weir stderr:\n" + self.stderr() + "\n")
        return False

    # addresses -------------------------------------------------------------------------------------------
    @property
    def port(self):
        return self.ports[0][2]

    def url(self, path="/", index=0):
        scheme, host, port = self.ports[index]
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d%s" % (scheme, host, port, path)

    def cpu_seconds(self):
        """User and system CPU time weir has used so far (all its threads)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        """weir's resident set size now, in MiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise AssertionError("no VmRSS for weir")

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))
