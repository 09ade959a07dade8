"""A redis-server of the test's own: started on a free port (and optionally a unix socket) in a temporary directory
(removed by stop(), and in any case when the case ends), without persistence, and stopped by pid. Helpers kill and
restart it on the same port, talk RESP to it without any client library, and make it slow (DEBUG SLEEP) without
waiting for the answer."""

import os
import signal
import socket
import subprocess
import time

from . import tmp
from .net import free_port
from .tools import require


def _major_version():
    out = subprocess.run(["redis-server", "--version"], stdout=subprocess.PIPE, text=True, check=True).stdout
    for word in out.split():
        if word.startswith("v="):
            return int(word[2:].split(".")[0])
    return 0


def encode(*args):
    """One RESP command (array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode("utf-8")
        elif isinstance(a, int):
            a = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class RespError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed by redis")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ValueError("bad RESP line %r" % line)


class RedisServer:
    """Use as a context manager, or start()/stop(). `password` sets requirepass; `unix=True` also listens on
    DIR/redis.sock."""

    def __init__(self, port=None, password=None, unix=False):
        require("redis-server")
        self.dir = tmp.temp_dir("weir-redis-")
        self.port = port or free_port()
        self.password = password
        self.sock = os.path.join(self.dir, "redis.sock") if unix else None
        self.proc = None

    def start(self, timeout=10):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir]
        if _major_version() >= 7:
            args += ["--enable-debug-command", "local"]
        if self.sock:
            args += ["--unixsocket", self.sock]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        tmp.track_process(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited with %d" % self.proc.returncode)
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise AssertionError("redis-server did not start on port %d" % self.port)

    def kill(self):
        """SIGKILL, as a crash would; the port is free again when this returns."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        tmp.untrack_process(self)

    def restart(self):
        self.kill()
        return self.start()

    def stop(self):
        """Kills the server and removes its directory."""
        self.kill()
        tmp.remove(self.dir)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    # talking to it --------------------------------------------------------------------------------------------
    def connect(self, db=0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        f = s.makefile("rb")
        setup = []
        if self.password:
            setup.append(("AUTH", self.password))
        if db:
            setup.append(("SELECT", db))
        for cmd in setup:
            s.sendall(encode(*cmd))
            reply = _read_reply(f)
            if isinstance(reply, RespError):
                raise reply
        return s, f

    def command(self, *args, db=0):
        s, f = self.connect(db)
        try:
            s.sendall(encode(*args))
            reply = _read_reply(f)
        finally:
            f.close()
            s.close()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def sleep(self, seconds):
        """Sends DEBUG SLEEP and returns at once; the server answers nobody for that long. Close the returned socket
        when done."""
        s, f = self.connect()
        s.sendall(encode("DEBUG", "SLEEP", str(seconds)))
        time.sleep(0.05)  # let it start sleeping
        f.close()
        return s
