"""The normal client of the abuse suite: requests at a steady rate, each on a new HTTP/1.1 connection (as a new visitor
would come), from a process of its own (so that the attackers' Python does not slow it down), for a given time.

    probe.py PORT PATH RATE SECONDS [--timeline]

Prints one JSON object: requests sent, answered 200, errors (by kind), latency percentiles of the answered ones (ms),
and with --timeline every request's (start offset s, status or error kind). A request counts as an error when it is
not answered 200 within TIMEOUT seconds."""

import json
import socket
import sys
import threading
import time

TIMEOUT = 5.0


def complete(buf):
    """Whether buf holds a whole response with a Content-Length."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v)
    return False


def one(port, path):
    """One request on a new connection: returns (latency s, status or error kind)."""
    t = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except socket.timeout:
        return time.monotonic() - t, "connect timeout"
    except OSError as e:
        return time.monotonic() - t, "connect: %s" % (e.strerror or e)
    try:
        s.settimeout(max(0.01, TIMEOUT - (time.monotonic() - t)))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n" % path.encode())
        buf = b""
        while not complete(buf):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        if not buf.startswith(b"HTTP/1.1 "):
            return time.monotonic() - t, "no answer"
        status = int(buf[9:12])
        return time.monotonic() - t, status
    except socket.timeout:
        return time.monotonic() - t, "timeout"
    except OSError as e:
        return time.monotonic() - t, "%s" % (e.strerror or e)
    finally:
        s.close()


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def run(port, path, rate, seconds, timeline=False):
    results = []
    lock = threading.Lock()
    threads = []
    t0_wall = time.time()
    t0 = time.monotonic()

    def worker(offset):
        latency, outcome = one(port, path)
        with lock:
            results.append((offset, latency, outcome))

    n = int(rate * seconds)
    for i in range(n):
        due = t0 + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        th = threading.Thread(target=worker, args=(time.monotonic() - t0,), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(TIMEOUT + 5)
    ok = [lat for _, lat, o in results if o == 200]
    errors = {}
    for _, _, o in results:
        if o != 200:
            errors[str(o)] = errors.get(str(o), 0) + 1
    out = {"sent": n, "ok": len(ok), "errors": n - len(ok), "error_kinds": errors,
           "p50_ms": None if not ok else round(percentile(ok, 50) * 1000, 2),
           "p99_ms": None if not ok else round(percentile(ok, 99) * 1000, 2),
           "max_ms": None if not ok else round(max(ok) * 1000, 2), "rate": rate, "seconds": seconds,
           "t0_wall": t0_wall}
    if timeline:
        out["timeline"] = sorted((round(off, 3), o) for off, _, o in results)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    tl = "--timeline" in args
    args = [a for a in args if a != "--timeline"]
    print(json.dumps(run(int(args[0]), args[1], float(args[2]), float(args[3]), timeline=tl)))
