"""Shared fixture for the end-to-end tests: starts the real weir binary on a free port with an inline
config, and offers small helpers around real clients (curl, ab, h2load) and raw sockets.

Environment (set by ctest): WEIR_BIN, the binary; WEIR_SOURCE_DIR, the source tree; WEIR_NO_SKIP=1 in CI,
which turns a missing tool into a failure instead of a skip (exit 77)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

WEIR_BIN = os.environ.get("WEIR_BIN", os.path.join(os.path.dirname(__file__), "../../build/weir"))
SOURCE_DIR = os.environ.get("WEIR_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SANITIZED = os.environ.get("WEIR_SANITIZE", "OFF") in ("ON", "1", "TRUE", "YES")
SKIP_CODE = 77


def require(*tools):
    """Skips the test (ctest exit code 77) when a tool is missing, or fails in CI (WEIR_NO_SKIP=1)."""
    for tool in tools:
        if shutil.which(tool) is None:
            if os.environ.get("WEIR_NO_SKIP"):
                raise AssertionError("required tool %r is not installed" % tool)
            sys.stderr.write("SKIP: %s is not installed\n" % tool)
            sys.stderr.flush()
            os._exit(SKIP_CODE)


def make_cert(directory, name="server"):
    """A self-signed certificate and key for 127.0.0.1/localhost; returns (cert, key) paths."""
    require("openssl")
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class Weir:
    """A weir process. Use as a context manager or call start()/stop()."""

    def __init__(self, config, name="server.yaml", directory=None, extra_args=(), env=None):
        self.tmp = directory or tempfile.mkdtemp(prefix="weir-e2e-")
        self.config_path = os.path.join(self.tmp, name)
        with open(self.config_path, "w") as f:
            f.write(config)
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.ports = []  # [(scheme, host, port)] in listen order
        self.stderr_lines = []
        self._lock = threading.Lock()
        self._reader = None

    # lifecycle -------------------------------------------------------------------------------------------
    def start(self, timeout=20):
        self.proc = subprocess.Popen([WEIR_BIN, "-c", self.config_path] + self.extra_args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(2)
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
        with self._lock:
            return "\n".join(self.stderr_lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30, expect_code=0):
        """SIGTERM, wait, and check the exit code and that no sanitizer report was printed."""
        if self.proc is None or self.proc.poll() is not None and self.proc.returncode is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("weir did not exit within %ss of SIGTERM:\n%s" % (timeout, self.stderr()))
        self._reader.join(5)
        out = self.stderr()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in out:
                raise AssertionError("sanitizer report from weir:\n" + out)
        if expect_code is not None and code != expect_code:
            raise AssertionError("weir exited with %d, expected %d:\n%s" % (code, expect_code, out))
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

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

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))


def curl(*args, timeout=30):
    """Runs curl -s and returns (status, headers dict (lower-case names), body bytes)."""
    require("curl")
    hdr = tempfile.NamedTemporaryFile(delete=False)
    hdr.close()
    try:
        proc = subprocess.run(["curl", "-sS", "-D", hdr.name, "-o", "-", "--max-time", str(timeout)] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
        if proc.returncode != 0:
            raise AssertionError("curl %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr.decode()))
        with open(hdr.name, "rb") as f:
            raw = f.read().decode("latin-1")
    finally:
        os.unlink(hdr.name)
    # With redirects or 100-continue there may be several header blocks: keep the last.
    blocks = [b for b in re.split(r"\r\n\r\n", raw) if b.strip()]
    lines = blocks[-1].split("\r\n")
    m = re.match(r"HTTP/([\d.]+) (\d+)", lines[0])
    headers = {"_version": m.group(1)}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(m.group(2)), headers, proc.stdout


def curl_json(*args, **kw):
    status, headers, body = curl(*args, **kw)
    return status, headers, json.loads(body.decode("utf-8"))


def raw_request(port, data, host="127.0.0.1", read=True, timeout=10):
    """Sends raw bytes on a new TCP connection and returns everything read until the peer closes."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        s.close()


def run(cmd, timeout=120, check=True):
    """Runs a command, returns CompletedProcess with text output."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, text=True)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc


BASIC_CONFIG = """\
listen:
  port: 0
  host: 127.0.0.1
num-threads: 2
hosts:
  default:
    paths:
      /upload:
        upload.concurrency: 5
        upload.delay-min: 100
        upload.delay-max: 200
      /calc:
        calc.n: 1000000
"""
