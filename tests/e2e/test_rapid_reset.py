"""HTTP/2 Rapid Reset (CVE-2023-44487): libh2o 2.2.5 lets a client open and reset streams without limit, each one
costing weir a request. weir counts the RST_STREAM frames of each HTTP/2 connection over a sliding second and closes
a connection that sends more than `http2-reset-budget` (GOAWAY with ENHANCE_YOUR_CALM). The abuse suite
(tests/stress/, scenario h2_rapid_reset) measures what the attack costs with and without the budget."""

import os
import socket
import ssl
import struct
import subprocess
import time
import unittest

import weirtest as wt
from weirtest import Config, Weir

ENHANCE_YOUR_CALM = 0xB
MEMORY = {"cache.backend": "memory"}


def config(budget=None, tls=False):
    c = Config().listen()
    if tls:
        c.listen_tls()
    c.path("/cache", MEMORY).path("/calc", {"calc.n": 10, "calc.threads": 1})
    c.path("/upload", {"upload.concurrency": 2, "upload.delay-min": 50, "upload.delay-max": 50})
    if budget is not None:
        c.set("http2-reset-budget", budget)
    return c


def reset_pairs(h, method, path, n):
    """Opens and at once resets n streams; returns how many pairs were written before the server closed."""
    for i in range(n):
        try:
            h.reset(h.request(method, path))
        except OSError:
            return i
    return n


def _frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def rapid_reset(port, method, path, n, tls=False):
    """A raw client that writes the preface and n HEADERS+RST_STREAM pairs without reading, then reads until the server
    closes (weirtest's H2Client answers the server's frames, which fails on a closed connection). Returns the GOAWAY
    (last stream id, error code) the server sent, or None, and whether the server closed the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        sock = wt.tls_client_context(("h2",)).wrap_socket(sock, server_hostname="localhost")
    block = {"GET": b"\x82", "POST": b"\x83"}[method] + b"\x86\x04" + bytes([len(path)]) + path.encode() + b"\x01\x01a"
    out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", _frame(4, 0, 0)]
    for i in range(n):
        sid = 2 * i + 1
        out.append(_frame(1, 0x5, sid, block) + _frame(3, 0, sid, struct.pack(">I", 8)))
    goaway, closed, buf = None, False, b""
    try:
        sock.sendall(b"".join(out))
    except OSError:
        pass  # closed while we were still writing
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except socket.timeout:
        pass
    except (OSError, ssl.SSLError):
        closed = True
    finally:
        sock.close()
    while len(buf) >= 9:
        length = int.from_bytes(buf[:3], "big")
        if buf[3] == 7 and len(buf) >= 17:
            last, code = struct.unpack(">II", buf[9:17])
            goaway = (last & 0x7FFFFFFF, code)
        buf = buf[9 + length:]
    return goaway, closed


def serves_h2(w, index=0):
    flags = ["--http2-prior-knowledge"] if index == 0 else ["--http2", "-k"]
    status, _, body = wt.curl_json(*flags, w.url("/calc", index))
    return status == 200 and body == {"result": 285}


class TestResetBudget(unittest.TestCase):
    def test_rapid_reset_connection_is_closed(self):
        # the default budget (200 a second): a connection resetting stream after stream is told ENHANCE_YOUR_CALM and
        # closed soon after the budget, on every endpoint, over h2c and over TLS
        with Weir(config(tls=True)) as w:
            for index, tls in ((0, False), (1, True)):
                for method, path in (("GET", "/cache?key=k"), ("GET", "/calc?n=100000"), ("POST", "/upload")):
                    goaway, closed = rapid_reset(w.ports[index][2], method, path, 2000, tls=tls)
                    self.assertIsNotNone(goaway, "%s (tls=%s): no GOAWAY after 2000 resets" % (path, tls))
                    last, code = goaway
                    self.assertEqual(code, ENHANCE_YOUR_CALM, path)
                    # the last stream h2o took is about the 201st (stream ids are odd)
                    self.assertLess(last, 2 * 400, "%s: %d streams were taken before the connection was refused"
                                    % (path, (last + 1) // 2))
                    self.assertGreater(last, 2 * 150, path)
                    self.assertTrue(closed, path)
                self.assertTrue(serves_h2(w, index))
            self.assertTrue(wt.wait_until(lambda: "closed an HTTP/2 connection that reset" in w.stderr(), 5), w.stderr())
            # logged at most every 5 s per worker thread, not per connection
            self.assertLessEqual(w.stderr().count("closed an HTTP/2 connection that reset"), 4, w.stderr())

    def test_no_budget_leaves_the_connection_open(self):
        # http2-reset-budget 0: h2o 2.2.5's own behaviour, which the attack exploits
        with Weir(config(budget=0)) as w:
            h = wt.H2Client(w.port)
            self.assertEqual(reset_pairs(h, "GET", "/cache?key=k", 3000), 3000)
            sid = h.request("GET", "/calc")
            st = h.response(sid, timeout=10)
            self.assertEqual((st.status, st.body), (200, b'{"result": 285}'))
            self.assertIsNone(h.goaway)
            h.close()

    def test_cancels_within_the_budget_keep_the_connection(self):
        # a client that cancels what it asked for now and then (150 streams at once, and again later) is served on
        with Weir(config()) as w:
            h = wt.H2Client(w.port)
            for burst in range(3):
                self.assertEqual(reset_pairs(h, "GET", "/calc?n=100000", 150), 150)
                sid = h.request("GET", "/calc")
                st = h.response(sid, timeout=10)
                self.assertEqual((st.status, st.body), (200, b'{"result": 285}'), "burst %d" % burst)
                self.assertIsNone(h.goaway, "burst %d" % burst)
                time.sleep(2.1)  # the sliding second has passed over both windows
            h.close()
            self.assertNotIn("closed an HTTP/2 connection", w.stderr())

    def test_budget_is_configurable(self):
        with Weir(config(budget=20)) as w:
            goaway, closed = rapid_reset(w.port, "GET", "/cache?key=k", 500)
            self.assertIsNotNone(goaway)
            last, code = goaway
            self.assertEqual(code, ENHANCE_YOUR_CALM)
            self.assertLess(last, 2 * 40)
            self.assertTrue(closed)
            # the log line is read from weir's stderr as it comes: wait for it
            self.assertTrue(wt.wait_until(lambda: "http2-reset-budget 20" in w.stderr(), 5), w.stderr())

    def test_budget_values_are_checked(self):
        for value, ok in (("0", True), ("1000000", True), ("-1", False), ("1000001", False), ("many", False)):
            path = os.path.join(wt.temp_dir(), "server.yaml")
            with open(path, "w") as f:
                f.write(str(Config().listen().set("http2-reset-budget", value).path("/calc", {"calc.n": 10})))
            proc = subprocess.run([wt.WEIR_BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, timeout=30)
            if ok:
                self.assertEqual(proc.returncode, 0, proc.stderr)
            else:
                self.assertEqual(proc.returncode, 2, value)
                self.assertRegex(proc.stderr, r"server\.yaml:\d+: in \"http2-reset-budget\"", value)


if __name__ == "__main__":
    unittest.main()
