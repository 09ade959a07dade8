"""The S3 side of the /upload tests: a real S3-compatible store (s3rver, installed by `make test-deps` into
tests/s3rver/node_modules) started on a free port in a temporary directory, boto3 clients that read objects back, and
a TCP relay between weir and the store that watches the PUTs going through (most in flight at once, methods and
paths seen) and can hold the store's answers back or swallow requests, to play a slow or dead store.

s3rver's own account is S3RVER / S3RVER; it verifies SigV4 signatures (a wrong secret gets 403
SignatureDoesNotMatch), accepts anonymous requests and does not check x-amz-content-sha256."""

import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import weirtest as wt
import weirtest.tmp as wt_tmp

KEY_ID = "S3RVER"
SECRET = "S3RVER"
REGION = "us-east-1"
START_JS = os.path.join(wt.SOURCE_DIR, "tests", "s3rver", "start.js")
MODULE_DIR = os.path.join(wt.SOURCE_DIR, "tests", "s3rver", "node_modules", "@20minutes", "s3rver")


def _skip(reason):
    if os.environ.get("WEIR_NO_SKIP"):
        raise AssertionError(reason)
    sys.stderr.write("SKIP: %s\n" % reason)
    sys.stderr.flush()
    wt.cleanup()
    os._exit(wt.SKIP_CODE)


def require_store():
    """Skips (fails in CI) when node, s3rver or boto3 is missing."""
    wt.require("node")
    if not os.path.isdir(MODULE_DIR):
        _skip("s3rver is not installed (run make test-deps)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        _skip("boto3 is not installed (Debian package python3-boto3)")


def boto3_client(endpoint, key_id=KEY_ID, secret=SECRET, verify=None):
    """A boto3 S3 client of the store; verify: the CA file of an https store."""
    import boto3
    from botocore.config import Config as BotoConfig
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name=REGION, verify=verify,
                        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


class S3rver:
    """The store, with the given buckets. Use as a context manager, or start()/stop(); kill() for a crash.
    tls=(cert, key) serves https."""

    def __init__(self, buckets=("images",), port=0, tls=None):
        require_store()
        self.dir = wt.temp_dir("weir-s3rver-")
        self.buckets = list(buckets)
        self.port = port
        self.tls = tls
        self.proc = None

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def start(self, timeout=20):
        args = ["node", START_JS, "--dir", os.path.join(self.dir, "data"), "--port", str(self.port)]
        for b in self.buckets:
            args += ["--bucket", b]
        if self.tls:
            args += ["--cert", self.tls[0], "--key", self.tls[1]]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wt_tmp.track_process(self)
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.match(r"ready (\d+)", line)
        if not m or time.monotonic() > deadline:
            err = self.proc.stderr.read1(65536).decode(errors="replace") if self.proc.poll() is not None else ""
            self.kill()
            raise AssertionError("s3rver did not start: %r %s" % (line, err))
        self.port = int(m.group(1))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        if self.proc:
            for f in (self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()
        wt_tmp.untrack_process(self)

    def client(self, **kw):
        if self.tls:
            kw.setdefault("verify", self.tls[0])
        return boto3_client(self.endpoint, **kw)

    def keys(self, bucket="images"):
        out = self.client().list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in out.get("Contents", []))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def secret_file(secret=SECRET, directory=None):
    """A file holding the secret access key (and a newline), in a temporary directory; returns its path."""
    directory = directory or wt.temp_dir("weir-secret-")
    path = os.path.join(directory, "s3.secret")
    with open(path, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


def s3_keys(endpoint, bucket="images", prefix="uploads/", secret_path=None, timeout=30000, concurrency=5, **more):
    """The upload.* keys of an s3 /upload path."""
    keys = {"upload.concurrency": concurrency, "upload.backend": "s3", "upload.s3.endpoint": endpoint,
            "upload.s3.region": REGION, "upload.s3.bucket": bucket, "upload.s3.key-prefix": prefix,
            "upload.s3.access-key-id": KEY_ID, "upload.s3.secret-access-key-file": secret_path or secret_file(),
            "upload.s3.timeout": timeout}
    keys.update(more)
    return keys


# ---- the relay ----------------------------------------------------------------------------------------------------

_REQ_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]\r\n")


def _content_length(head):
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return int(m.group(1)) if m else 0


class _Conn:
    """One connection through the relay: weir's side (down) and the store's (up), each direction parsed as a
    sequence of HTTP/1 messages with Content-Length bodies (curl's PUTs and DELETEs, s3rver's answers)."""

    def __init__(self, relay, down):
        self.relay = relay
        self.down = down
        self.up = None
        self.req_buf = b""
        self.req_need = None  # bytes of the current request's body still to come
        self.resp_buf = b""
        self.resp_need = None
        self.open_requests = []  # methods of requests sent and not yet answered
        self.answered = []  # methods of requests whose answers are read but not yet passed on
        self.counted = 0  # PUTs of this connection counted in the relay's in_flight
        self.held = b""  # answer bytes held back
        self.body_hash = None  # SHA-256 of the PUT body being read
        self.claimed_hash = None  # its x-amz-content-sha256
        self.hold_until = None


class Relay:
    """A TCP relay on 127.0.0.1:port to target (host, port), in a thread of its own.

    mode "forward": pass everything; "hold": forward requests at once but hold the store's answers to PUTs for `hold`
    seconds (the PUT lands at the store, its answer is late); "blackhole": accept and read, never connect upstream or
    answer. Counts PUTs in flight (request line seen, answer not yet passed on); max_in_flight is the most at once.
    requests: [(method, path)] in the order seen; payload_hashes: what each PUT claimed as its body's SHA-256 (the
    store does not check it) and what it was."""

    def __init__(self, target, mode="forward", hold=0.0):
        self.target = target
        self.mode = mode
        self.hold = hold
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = []
        self.payload_hashes = []  # [(x-amz-content-sha256 sent, SHA-256 of the body sent)] of every complete PUT
        self.connections = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def seen(self, method):
        with self.lock:
            return [p for m, p in self.requests if m == method]

    def stop(self):
        self.stopping = True
        self.thread.join(10)
        for c in self.conns:
            self._close(c)
        self.listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- the loop ----
    def _run(self):
        while not self.stopping:
            socks = [self.listener] + [c.down for c in self.conns] + [c.up for c in self.conns if c.up]
            now = time.monotonic()
            waits = [c.hold_until - now for c in self.conns if c.hold_until is not None]
            timeout = max(0.0, min([0.05] + waits))
            try:
                readable, _, _ = select.select(socks, [], [], timeout)
            except (OSError, ValueError):
                continue
            # Every connection weir closed is closed here before any new request is counted: weir closes an aborted
            # PUT's connection before it starts the next PUT, and both may be seen in the same round.
            # A connection's unread bytes are read to their end, so that an EOF behind them is seen in this round.
            readable = set(readable)
            arrived, closed = [], []
            for c in list(self.conns):
                if c.down in readable:
                    data, eof = self._read_down(c)
                    (closed if eof else arrived).append((c, data))
            for c, data in closed:
                if data:
                    self._from_down(c, data)
                self._close(c)
            for c, data in arrived:
                if c in self.conns and data:
                    self._from_down(c, data)
            for c in list(self.conns):
                if c.up is not None and c.up in readable and c in self.conns:
                    self._from_up(c)
            if self.listener in readable:
                self._accept()
            now = time.monotonic()
            for c in list(self.conns):
                if c.hold_until is not None and now >= c.hold_until and c in self.conns:
                    data, c.held, c.hold_until = c.held, b"", None
                    self._to_down(c, data)

    def _accept(self):
        down, _ = self.listener.accept()
        c = _Conn(self, down)
        if self.mode != "blackhole":
            try:
                c.up = socket.create_connection(self.target, timeout=5)
            except OSError:
                down.close()
                return
        with self.lock:
            self.connections += 1
        self.conns.append(c)

    def _close(self, c):
        if c in self.conns:
            self.conns.remove(c)
        with self.lock:
            self.in_flight -= c.counted
        c.counted = 0
        c.open_requests = []
        for s in (c.down, c.up):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def _read_down(self, c):
        """(what weir sent, whether it closed the connection after it): everything it has sent so far."""
        chunks = []
        while True:
            try:
                chunk = c.down.recv(262144, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return b"".join(chunks), False
            except OSError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)

    def _from_down(self, c, data):
        c.req_buf += data
        self._parse_requests(c)
        if c.up is not None:
            try:
                c.up.sendall(data)
            except OSError:
                self._close(c)

    def _parse_requests(self, c):
        while True:
            if c.req_need is not None:
                take = min(c.req_need, len(c.req_buf))
                if c.body_hash is not None:
                    c.body_hash.update(c.req_buf[:take])
                c.req_buf = c.req_buf[take:]
                c.req_need -= take
                if c.req_need:
                    return
                c.req_need = None
                if c.body_hash is not None:
                    with self.lock:
                        self.payload_hashes.append((c.claimed_hash, c.body_hash.hexdigest()))
                    c.body_hash = None
            end = c.req_buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, c.req_buf = c.req_buf[:end + 4], c.req_buf[end + 4:]
            m = _REQ_LINE.match(head)
            if m:
                method = m.group(1)
                with self.lock:
                    self.requests.append((method.decode(), m.group(2).decode()))
                    if method == b"PUT":
                        self.in_flight += 1
                        c.counted += 1
                        self.max_in_flight = max(self.max_in_flight, self.in_flight)
                c.open_requests.append(method)
                if method == b"PUT":
                    claimed = re.search(rb"(?im)^x-amz-content-sha256:\s*(\S+)", head)
                    c.claimed_hash = claimed.group(1).decode() if claimed else None
                    c.body_hash = hashlib.sha256()
            c.req_need = _content_length(head)
            if c.req_need == 0 and c.body_hash is not None:
                with self.lock:
                    self.payload_hashes.append((c.claimed_hash, c.body_hash.hexdigest()))
                c.body_hash = None

    def _from_up(self, c):
        try:
            data = c.up.recv(262144)
        except OSError:
            data = b""
        if not data:
            if c.held:
                return  # the answer is still held; the relay closes the connection when it passes it on
            self._close(c)
            return
        c.resp_buf += data
        answered = self._parse_responses(c)
        hold = self.mode == "hold" and b"PUT" in answered
        if hold or c.hold_until is not None:
            c.held += data
            if c.hold_until is None:
                c.hold_until = time.monotonic() + self.hold
            return
        self._to_down(c, data)

    def _parse_responses(self, c):
        """Returns the methods of the requests whose answers are complete in the bytes read so far."""
        done = []
        while True:
            if c.resp_need is not None:
                take = min(c.resp_need, len(c.resp_buf))
                c.resp_buf = c.resp_buf[take:]
                c.resp_need -= take
                if c.resp_need:
                    return done
                c.resp_need = None
                if c.open_requests:
                    done.append(c.open_requests[0])
                    c.answered.append(c.open_requests.pop(0))
            end = c.resp_buf.find(b"\r\n\r\n")
            if end < 0:
                return done
            head, c.resp_buf = c.resp_buf[:end + 4], c.resp_buf[end + 4:]
            c.resp_need = _content_length(head)
            if c.resp_need == 0:
                c.resp_need = None
                if c.open_requests:
                    done.append(c.open_requests[0])
                    c.answered.append(c.open_requests.pop(0))

    def _to_down(self, c, data):
        """Passes answer bytes on to weir; the PUTs they complete stop counting as in flight."""
        puts = sum(1 for m in c.answered if m == b"PUT")
        c.answered = []
        try:
            c.down.sendall(data)
        except OSError:
            pass
        with self.lock:
            self.in_flight -= puts
        c.counted -= puts
