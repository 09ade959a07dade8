"""Many POST /upload at once from one thread, for the gate's tests: HTTP/1.1 connections to one or several weir
instances (optionally with pipelined requests), read with a selector as the answers come; each answer carries its
status, headers, body and the time since the run started and since its own request was sent."""

import re
import selectors
import socket
import time


class Answer:
    def __init__(self, conn, seq, port, status, headers, body, t, latency):
        self.conn = conn  # index of the connection in the plan
        self.seq = seq  # 0-based index of the request on its connection
        self.port = port
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body
        self.t = t  # seconds from the first send to the complete answer
        self.latency = latency  # seconds from the request's own send (pipelined: the connection's send) to the answer

    def __repr__(self):
        return "Answer(conn=%d, seq=%d, port=%d, status=%d, t=%.3f)" % (self.conn, self.seq, self.port, self.status, self.t)


def _parse(buf):
    """One complete response at the start of buf: (status, headers, body, rest), or None."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    if len(rest) < n:
        return None
    return status, headers, rest[:n], rest[n:]


def post_all(ports, pipeline=1, gap=0.0, path="/upload", timeout=60, connect_first=True):
    """Opens one connection per entry of ports (a weir port each), then sends `pipeline` POSTs on each at once,
    connection i at i * gap seconds. Returns the answers in completion order; fails when a connection closes early or
    the timeout passes."""
    n = len(ports)
    req = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n" % path.encode()
    socks = [socket.create_connection(("127.0.0.1", p), timeout=10) for p in ports] if connect_first else [None] * n
    sel = selectors.DefaultSelector()
    bufs = [b""] * n
    got = [0] * n
    sent_at = [None] * n
    answers = []
    try:
        t0 = time.monotonic()
        sent, deadline = 0, t0 + timeout
        while len(answers) < n * pipeline:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError("only %d of %d answers within %ss" % (len(answers), n * pipeline, timeout))
            while sent < n and now >= t0 + sent * gap:
                if socks[sent] is None:
                    socks[sent] = socket.create_connection(("127.0.0.1", ports[sent]), timeout=10)
                socks[sent].sendall(req * pipeline)
                socks[sent].setblocking(False)
                sel.register(socks[sent], selectors.EVENT_READ, sent)
                sent_at[sent] = time.monotonic()
                sent += 1
                now = time.monotonic()
            wait = 0.05 if sent == n else max(0.0, min(0.05, t0 + sent * gap - now))
            for key, _ in sel.select(wait):
                i = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise AssertionError("connection %d closed after %d of %d answers: %r" % (i, got[i], pipeline, bufs[i]))
                bufs[i] += chunk
                while True:
                    parsed = _parse(bufs[i])
                    if parsed is None:
                        break
                    status, headers, body, bufs[i] = parsed
                    t = time.monotonic()
                    answers.append(Answer(i, got[i], ports[i], status, headers, body, t - t0, t - sent_at[i]))
                    got[i] += 1
                if got[i] == pipeline:
                    sel.unregister(key.fileobj)
        return answers
    finally:
        sel.close()
        for s in socks:
            if s is not None:
                s.close()


def max_overlap(intervals):
    """The largest number of (start, end) intervals that contain one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best
