"""HTTP/1.x on raw sockets: byte-exact requests, one parsed response at a time, keep-alive and close checks."""

import json
import re
import socket

from .net import set_linger_rst, tls_client_context


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

