"""A minimal HTTP/2 client over cleartext (prior knowledge) or TLS (ALPN h2), on a raw socket.

Enough of RFC 7540 to open streams, reset them, see responses complete, and see GOAWAY. Requests are encoded with
HPACK literals (no Huffman, no dynamic table). Responses: the body and END_STREAM are exact; :status is decoded
only when it is a static-table entry or a literal (else None); other response headers are not decoded."""

import socket
import ssl
import struct
import time

from .net import set_linger_rst, tls_client_context

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
        self._send_frame(_H2_WINDOW, 0, 0, struct.pack(">I", (1 << 30)))

    def _send_frame(self, ftype, flags, sid, payload, prefix=b""):
        head = struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid & 0x7FFFFFFF)
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
        self._send_frame(_H2_RST, 0, sid, struct.pack(">I", error_code))

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
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype == _H2_RST and st is not None:
            st.reset_code = struct.unpack(">I", payload[:4])[0]
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
                    self._send_frame(_H2_WINDOW, 0, sid, struct.pack(">I", len(payload)))
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
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
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
