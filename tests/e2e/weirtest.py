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
        self.proc.stderr.close()
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
        if self.proc and self.proc.stderr and self._reader is not None:
            self._reader.join(5)
            self.proc.stderr.close()

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


# -------------------------------------------------------------------------------------------------------------------
# Helpers added for test_cli, test_upload, test_calc, test_protocols and test_shutdown (appended; nothing above
# changed). Stdlib only.

import ssl as _ssl
import struct as _struct

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def assert_no_sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            raise AssertionError("sanitizer report:\n" + text)


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (for the rare test that needs to know the port before weir starts)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate() until it is true (returns True) or timeout seconds have passed (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def set_linger_rst(sock):
    """Makes close() send a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _struct.pack("ii", 1, 0))


def tls_client_context(alpn=("h2", "http/1.1")):
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class HTTP1Response:
    def __init__(self, version, status, reason, header_list, body, chunked, raw_head):
        self.version = version  # "1.1"
        self.status = status
        self.reason = reason
        self.header_list = header_list  # [(name lower-case, value)] in order
        self.headers = {k: v for k, v in header_list}
        self.body = body
        self.chunked = chunked
        self.raw_head = raw_head

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class HTTP1Conn:
    """One HTTP/1.x connection on a raw socket (optionally TLS with ALPN http/1.1), for byte-exact requests and
    keep-alive checks. read_response() parses exactly one response (Content-Length, chunked, or until close)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, tls=False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_client_context(("http/1.1",)).wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None, version="1.1", host="127.0.0.1"):
        lines = ["%s %s HTTP/%s" % (method, path, version)]
        names = {k.lower() for k, _ in headers}
        if host is not None and "host" not in names:
            lines.append("Host: %s" % host)
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        self.send(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker):
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed before %r (have %r)" % (marker, self.buf[:200]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed with %d of %d body bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False):
        raw = self._read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/(\d\.\d) (\d{3}) ?(.*)", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        header_list = []
        for line in lines[1:]:
            if line:
                k, v = line.split(":", 1)
                header_list.append((k.strip().lower(), v.strip()))
        headers = {k: v for k, v in header_list}
        status = int(m.group(2))
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif chunked:
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    break
                body += self._read_exact(size)
                self._read_exact(2)
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return HTTP1Response(m.group(1), status, m.group(3), header_list, body, chunked, raw)

    def is_closed_by_peer(self, timeout=2.0):
        """True when the peer closed (EOF or reset) within timeout; False when the connection stays open."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
            if data:
                self.buf += data
                return False
            return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self, rst=False):
        if rst:
            try:
                set_linger_rst(self.sock)
            except OSError:
                pass
        self.sock.close()


def http1(port, method, path, headers=(), body=None, host="127.0.0.1", timeout=10, tls=False):
    """One request on a new connection; returns an HTTP1Response."""
    c = HTTP1Conn(port, host=host, timeout=timeout, tls=tls)
    try:
        c.request(method, path, headers=headers, body=body)
        return c.read_response(head=(method == "HEAD"))
    finally:
        c.close()


# --- a minimal HTTP/2 client --------------------------------------------------------------------------------------
# Enough of RFC 7540 to open streams, reset them, see responses complete, and see GOAWAY. Requests are encoded with
# HPACK literals (no Huffman, no dynamic table). Responses: the body and END_STREAM are exact; :status is decoded
# only when it is a static-table entry or a literal (else None); other response headers are not decoded.

_H2_DATA, _H2_HEADERS, _H2_RST, _H2_SETTINGS, _H2_PING, _H2_GOAWAY, _H2_WINDOW, _H2_CONT = 0, 1, 3, 4, 6, 7, 8, 9
_HPACK_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
# HPACK Huffman codes of the ten digits (RFC 7541 appendix B), enough for a :status value.
_HUFF_DIGITS = {(0b00000, 5): "0", (0b00001, 5): "1", (0b00010, 5): "2", (0b011001, 6): "3", (0b011010, 6): "4",
                (0b011011, 6): "5", (0b011100, 6): "6", (0b011101, 6): "7", (0b011110, 6): "8", (0b011111, 6): "9"}


def _hpack_int(value, prefix_bits, first_byte_flags):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = [first_byte_flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(s):
    b = s.encode("latin-1") if isinstance(s, str) else s
    return _hpack_int(len(b), 7, 0) + b


def _hpack_read_int(data, pos, prefix_bits):
    limit = (1 << prefix_bits) - 1
    value = data[pos] & limit
    pos += 1
    if value == limit:
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
    return value, pos


def _huffman_digits(data):
    bits = "".join("{:08b}".format(b) for b in data)
    out, code, n = "", 0, 0
    for bit in bits:
        code, n = (code << 1) | (bit == "1"), n + 1
        if (code, n) in _HUFF_DIGITS:
            out += _HUFF_DIGITS[(code, n)]
            code, n = 0, 0
        elif n > 7:
            return None
    return out  # the remaining bits are EOS padding (all ones)


def _hpack_status(block):
    """:status from the first field of a response header block, or None when it cannot be told without a full decoder."""
    try:
        b = block[0]
        if b & 0x80:
            idx, _ = _hpack_read_int(block, 0, 7)
            return _HPACK_STATIC_STATUS.get(idx)
        if b & 0xC0 == 0x40:
            idx, pos = _hpack_read_int(block, 0, 6)
        elif b & 0xE0 == 0x20:
            return None  # dynamic table size update first: not decoded
        else:
            idx, pos = _hpack_read_int(block, 0, 4)
        if idx != 8:
            return None
        huff = block[pos] & 0x80
        length, pos = _hpack_read_int(block, pos, 7)
        value = block[pos:pos + length]
        text = _huffman_digits(value) if huff else value.decode("latin-1")
        return int(text) if text and text.isdigit() else None
    except (IndexError, ValueError):
        return None


class H2Stream:
    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers_seen = False
        self.body = b""
        self.done = False  # END_STREAM received
        self.reset_code = None  # RST_STREAM received from the server
        self.t_done = None  # time.monotonic() when done or reset


class H2Client:
    """HTTP/2 over cleartext (prior knowledge) or TLS (ALPN h2) on a raw socket, single-threaded: frames are read
    only inside wait()/response()/wait_goaway()/wait_closed()."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=10, authority=None):
        self.authority = authority or "%s:%d" % (host, port)
        self.scheme = "https" if tls else "http"
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            sock = tls_client_context(("h2",)).wrap_socket(sock, server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                raise AssertionError("ALPN negotiated %r, not h2" % sock.selected_alpn_protocol())
        self.sock = sock
        self.buf = b""
        self.streams = {}
        self.next_id = 1
        self.goaway = None  # (last_stream_id, error_code) once received
        self.eof = False
        # Our SETTINGS: defaults; then a large connection window so that bodies never stall.
        self._send_frame(_H2_SETTINGS, 0, 0, b"", prefix=self.PREFACE)
        self._send_frame(_H2_WINDOW, 0, 0, _struct.pack(">I", (1 << 30)))

    def _send_frame(self, ftype, flags, sid, payload, prefix=b""):
        head = _struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + _struct.pack(">I", sid & 0x7FFFFFFF)
        self.sock.sendall(prefix + head + payload)

    def request(self, method="GET", path="/", body=None, headers=()):
        """Opens a stream; returns its id. A bodiless request ends the stream with its HEADERS."""
        sid = self.next_id
        self.next_id += 2
        block = {"GET": b"\x82", "POST": b"\x83"}.get(method) or (b"\x02" + _hpack_str(method))
        block += b"\x86" if self.scheme == "http" else b"\x87"
        block += b"\x84" if path == "/" else b"\x04" + _hpack_str(path)
        block += b"\x01" + _hpack_str(self.authority)
        for k, v in headers:
            block += b"\x00" + _hpack_str(k.lower()) + _hpack_str(v)
        self.streams[sid] = H2Stream(sid)
        if body:
            self._send_frame(_H2_HEADERS, 0x4, sid, block)
            self._send_frame(_H2_DATA, 0x1, sid, body)
        else:
            self._send_frame(_H2_HEADERS, 0x5, sid, block)
        return sid

    def reset(self, sid, error_code=0x8):
        """Sends RST_STREAM (CANCEL by default)."""
        self._send_frame(_H2_RST, 0, sid, _struct.pack(">I", error_code))

    def ping(self, data=b"weirtest"):
        self._send_frame(_H2_PING, 0, 0, data)

    def _process(self, ftype, flags, sid, payload):
        st = self.streams.get(sid)
        now = time.monotonic()
        if ftype == _H2_SETTINGS and not flags & 0x1:
            self._send_frame(_H2_SETTINGS, 0x1, 0, b"")
        elif ftype == _H2_PING and not flags & 0x1:
            self._send_frame(_H2_PING, 0x1, 0, payload)
        elif ftype == _H2_GOAWAY:
            last, code = _struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype == _H2_RST and st is not None:
            st.reset_code = _struct.unpack(">I", payload[:4])[0]
            st.t_done = now
        elif ftype in (_H2_HEADERS, _H2_DATA) and st is not None:
            if flags & 0x8:  # PADDED
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if ftype == _H2_HEADERS:
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                if not st.headers_seen:
                    st.headers_seen = True
                    st.status = _hpack_status(payload)
            else:
                st.body += payload
                if payload:
                    # give the stream its window back, in case bodies ever grow
                    self._send_frame(_H2_WINDOW, 0, sid, _struct.pack(">I", len(payload)))
            if flags & 0x1:
                st.done = True
                st.t_done = now

    def _pump(self, timeout):
        """Reads what arrives within timeout and processes every complete frame. False on EOF."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError, _ssl.SSLError, OSError):
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            self._process(ftype, flags, sid, payload)
        return True

    def wait(self, predicate, timeout):
        """Reads frames until predicate() is true (returns True), timeout, or EOF (returns predicate())."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.2)):
                return predicate()
        return True

    def finished(self, sid):
        st = self.streams[sid]
        return st.done or st.reset_code is not None

    def response(self, sid, timeout=10):
        """Waits for stream sid to end; returns the H2Stream (check .done, .status, .body, .reset_code)."""
        if not self.wait(lambda: self.finished(sid), timeout):
            raise AssertionError("stream %d did not finish within %ss (eof=%s, goaway=%s)" % (sid, timeout, self.eof,
                                                                                              self.goaway))
        return self.streams[sid]

    def wait_goaway(self, timeout):
        return self.wait(lambda: self.goaway is not None, timeout)

    def wait_closed(self, timeout):
        """True when the server closed the connection within timeout."""
        self.wait(lambda: self.eof, timeout)
        return self.eof

    def close(self, rst=False):
        if rst:
            try:
                set_linger_rst(self.sock)
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass
