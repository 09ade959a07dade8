"""Servers that a run starts: weir (with a configuration built here), the Python peers, the stock h2o binary,
redis-server and the S3-compatible store s3rver. Each is a fresh process on a loopback port, pinned to the server cpus and stopped by its own pid."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

from .common import BENCH, PY, ROOT, WEIR, free_port, http, pinned, slug
from .procs import process_tree, read_status

# The S3-compatible store (tests/s3rver, installed by scripts/ensure-s3rver.sh) and its own account.
S3RVER_JS = os.path.join(ROOT, "tests", "s3rver", "start.js")
S3_KEY_ID = S3_SECRET = "S3RVER"
S3_BUCKET = "images"

CACHE_KEY = "bench"
CACHE_VALUE = "abcdefghijklmnopqrstuvwxyz"  # 26 bytes
assert len(CACHE_VALUE) == 26


class Server:
    """A server process started by this script: weir, a Python peer, the stock h2o binary or redis-server.

    kind: "weir" (conf: its YAML), "flask", "flask-threaded", "aiohttp" (bench/peers/), "flask-s3", "aiohttp-s3"
    (bench/peers/*_s3_app.py; extra: {"endpoint": store URL}), "h2o" (conf: its configuration, @PORT@ replaced by a
    free port), "redis" or "s3rver" (the store, with the bucket S3_BUCKET, its data in extra["dir"], default the run's tmp/). cpus: taskset's cpu list (default: the run's server
    cpus). wrapper: a command that weir is run under (e.g. valgrind), between taskset and weir. Use as
    `with Server(...).start(step) as srv:`; srv.port and srv.url(path) once started."""

    def __init__(self, ctx, kind, label, cpus=None, conf=None, extra=None, env=None, wrapper=None):
        self.ctx = ctx
        self.wrapper = list(wrapper or [])
        self.kind = kind
        self.label = label
        self.cpus = ctx.server_cpus if cpus is None else cpus
        self.conf = conf
        self.extra = extra or {}
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = None
        self._lines = []
        self._lock = threading.Lock()

    def start(self, step):
        ctx = self.ctx
        name = slug(step)
        self.log_path = os.path.join(ctx.tmp, name + ".server.log")
        env = dict(os.environ, **(self.env or {}))
        if self.kind == "weir":
            conf_path = os.path.join(ctx.tmp, name + ".weir.yaml")
            with open(conf_path, "w") as f:
                f.write(self.conf)
            argv = self.wrapper + [WEIR, "-c", conf_path]
        elif self.kind in ("flask", "flask-threaded"):
            self.port = free_port()
            argv = [PY, os.path.join(BENCH, "peers", "flask_app.py"), str(self.port),
                    "threaded" if self.kind == "flask-threaded" else "unthreaded"]
        elif self.kind == "aiohttp":
            self.port = free_port()
            argv = [PY, os.path.join(BENCH, "peers", "aiohttp_app.py"), str(self.port)]
        elif self.kind in ("flask-s3", "aiohttp-s3"):
            self.port = free_port()
            app = "flask_s3_app.py" if self.kind == "flask-s3" else "aiohttp_s3_app.py"
            argv = [PY, os.path.join(BENCH, "peers", app), str(self.port), self.extra["endpoint"], S3_BUCKET]
            env.update(AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_REGION="us-east-1")
        elif self.kind == "s3rver":
            self.port = free_port()
            argv = ["node", S3RVER_JS, "--dir", self.extra.get("dir") or os.path.join(ctx.tmp, name + ".s3rver"),
                    "--port", str(self.port),
                    "--bucket", S3_BUCKET]
        elif self.kind == "h2o":
            self.port = free_port()
            conf_path = os.path.join(ctx.tmp, name + ".h2o.conf")
            with open(conf_path, "w") as f:
                f.write(self.conf.replace("@PORT@", str(self.port)))
            argv = ["h2o", "-c", conf_path]
        elif self.kind == "redis":
            self.port = free_port()
            argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--protected-mode", "yes", "--dir", ctx.tmp, "--logfile", ""]
        else:
            raise ValueError(self.kind)
        argv = pinned(argv, self.cpus)
        note = None
        if self.kind == "weir":
            note = "config:\n" + "".join("#   " + l + "\n" for l in self.conf.rstrip("\n").split("\n"))
            note = note.rstrip("\n")
        ctx.record("%s: start %s" % (step, self.label), argv, note)
        log = open(self.log_path, "wb")
        if self.kind == "weir":
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, env=env,
                                         cwd=ctx.tmp)
            threading.Thread(target=self._read_stderr, args=(log,), daemon=True).start()
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=ctx.tmp)
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


# /upload's waiting room: the experiments send 1000 and more uploads at once to 5 slots of 150 ms (30 s and more of
# queue), which weir's defaults (1000 waiting, 30 s) would answer 503 at the tail. Room for 20,000 waiting for 120 s.
UPLOAD_MAX_QUEUE = 20000
UPLOAD_QUEUE_TIMEOUT_MS = 120000


def weir_conf(threads=1, upload=None, calc=True, cache=None, upload_gate=None, metrics=False, upload_s3=None):
    """weir's YAML: listen on 127.0.0.1 port 0, `threads` worker threads; upload=(concurrency, delay-min, delay-max)
    adds /upload (waiting room UPLOAD_MAX_QUEUE, UPLOAD_QUEUE_TIMEOUT_MS), calc adds /calc (n = 1,000,000),
    cache=("memory",) or ("redis", port) adds /cache; upload_gate=("redis", port, name) shares /upload's slots through
    that Redis under that name (upload.gate: redis, the other upload.redis keys at their defaults); metrics adds
    /metrics (status.metrics, which makes every path count its requests), /livez and /readyz; upload_s3=(endpoint,
    secret file) makes /upload's backend s3, storing into S3_BUCKET with the store's own account."""
    lines = ["listen:", "  port: 0", "  host: 127.0.0.1", "num-threads: %d" % threads, "limit-request-body: 1048576",
             "hosts:", "  default:", "    paths:"]
    if upload is not None:
        conc, dmin, dmax = upload
        lines += ["      /upload:", "        upload.concurrency: %d" % conc, "        upload.delay-min: %d" % dmin,
                  "        upload.delay-max: %d" % dmax, "        upload.max-queue: %d" % UPLOAD_MAX_QUEUE,
                  "        upload.queue-timeout: %d" % UPLOAD_QUEUE_TIMEOUT_MS]
        if upload_gate is not None:
            lines += ["        upload.gate: %s" % upload_gate[0],
                      "        upload.redis.url: redis://127.0.0.1:%d/0" % upload_gate[1],
                      "        upload.redis.name: %s" % upload_gate[2]]
        if upload_s3 is not None:
            lines += ["        upload.backend: s3", "        upload.s3.endpoint: %s" % upload_s3[0],
                      "        upload.s3.bucket: %s" % S3_BUCKET, "        upload.s3.key-prefix: uploads/",
                      "        upload.s3.access-key-id: %s" % S3_KEY_ID,
                      "        upload.s3.secret-access-key-file: %s" % upload_s3[1]]
    if calc:
        lines += ["      /calc:", "        calc.n: 1000000", "        calc.max-n: 100000000"]
    if cache is not None:
        lines += ["      /cache:", "        cache.backend: %s" % cache[0]]
        if cache[0] == "redis":
            lines += ["        cache.redis.url: redis://127.0.0.1:%d/0" % cache[1]]
    if metrics:
        lines += ["      /metrics:", "        status.metrics: ON", "      /livez:", "        status.live: ON",
                  "      /readyz:", "        status.ready: ON"]
    return "\n".join(lines) + "\n"


def cache_server(ctx, step, backend=("memory",), threads=1, metrics=False, wrapper=None):
    """A started weir with /calc and /cache (`backend` as weir_conf's cache; `metrics` as weir_conf's; `wrapper` as
    Server's), CACHE_KEY stored and read back; returns (server, the body of its GET /cache reply)."""
    srv = Server(ctx, "weir", "weir", conf=weir_conf(threads=threads, calc=True, cache=backend, metrics=metrics),
                 wrapper=wrapper).start(step)
    try:
        st, _ = http("PUT", srv.url("/cache?key=%s" % CACHE_KEY), CACHE_VALUE.encode())
        st2, body = http("GET", srv.url("/cache?key=%s" % CACHE_KEY))
        if st != 200 or st2 != 200 or CACHE_VALUE.encode() not in body:
            raise RuntimeError("/cache did not store the value: PUT %s, GET %s %r" % (st, st2, body))
    except Exception:
        srv.stop()
        raise
    return srv, body


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


def stock_h2o(ctx, step, directory):
    """A started stock h2o binary (1 thread) serving the files of `directory` at /."""
    return Server(ctx, "h2o", "h2o (stock binary)", conf=H2O_CONF.replace("@DIR@", directory)).start(step)
