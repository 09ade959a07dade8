"""The real clients and tools the tests drive (curl, ab, h2load, openssl), a skip when one is missing, and polling.

WEIR_NO_SKIP=1 (set in CI) turns a missing tool into a failure instead of a skip (exit 77)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

from . import tmp

SKIP_CODE = 77


def require(*tools):
    """Skips the test (ctest exit code 77) when a tool is missing, or fails in CI (WEIR_NO_SKIP=1). A skip ends the
    process at once, after killing what the tests started and removing their temporary files."""
    for tool in tools:
        if shutil.which(tool) is None:
            if os.environ.get("WEIR_NO_SKIP"):
                raise AssertionError("required tool %r is not installed" % tool)
            sys.stderr.write("SKIP: %s is not installed\n" % tool)
            sys.stderr.flush()
            tmp.cleanup()  # os._exit runs no atexit handler
            os._exit(SKIP_CODE)


def run(cmd, timeout=120, check=True):
    """Runs a command, returns CompletedProcess with text output."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, text=True)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc


def h2load(*args, timeout=120):
    """Runs h2load with args (it exits 0 even when requests fail: check its report in .stdout)."""
    require("h2load")
    return run(["h2load"] + list(args), timeout=timeout)


def ab(*args, timeout=120):
    """Runs ApacheBench with args; returns CompletedProcess (its report in .stdout)."""
    require("ab")
    return run(["ab"] + list(args), timeout=timeout)


def curl(*args, timeout=30):
    """Runs curl -s and returns (status, headers dict (lower-case names), body bytes)."""
    require("curl")
    with tmp.temp_file(prefix="weir-curl-") as hdr:
        proc = subprocess.run(["curl", "-sS", "-D", hdr, "-o", "-", "--max-time", str(timeout)] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
        if proc.returncode != 0:
            raise AssertionError("curl %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr.decode()))
        with open(hdr, "rb") as f:
            raw = f.read().decode("latin-1")
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


def make_cert(directory=None, name="server"):
    """A self-signed certificate and key for 127.0.0.1/localhost in directory (by default a new temporary one,
    removed when the case ends); returns (cert, key) paths."""
    require("openssl")
    directory = directory or tmp.temp_dir("weir-cert-")
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate() until it is true (returns True) or timeout seconds have passed (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
