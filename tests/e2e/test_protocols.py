"""End-to-end tests of the protocols weir speaks: HTTP/1.0 and 1.1 (Content-Length, keep-alive, pipelining), h2c
(prior knowledge and Upgrade), TLS with ALPN (h2 and http/1.1), host fallback, the access log, and that TLS
connections reset by their clients do not leak file descriptors."""

import os
import re
import socket
import time
import unittest

import weirtest as wt
from weirtest import Weir, curl, curl_json


def make_config(tls=False, settings=(), hosts=(), dmin=20, dmax=40):
    """settings: more top-level (key, value) pairs; hosts: more (host, path, keys) after the default host."""
    config = wt.Config(threads=2).listen()
    if tls:
        config.listen_tls()
    for key, value in settings:
        config.set(key, value)
    config.path("/upload", {"upload.concurrency": 5, "upload.delay-min": dmin, "upload.delay-max": dmax})
    config.path("/calc", {"calc.n": 10})
    for host, path, keys in hosts:
        config.path(path, keys, host=host)
    return config


def tls_weir(**kw):
    return Weir(make_config(tls=True, **kw))


NOT_FOUND = {"error": "not found"}

# (method, path, body, expected status)
REQUESTS = [
    ("POST", "/upload", b"", 200),
    ("POST", "/upload", b"abc", 200),
    ("GET", "/upload", None, 405),
    ("POST", "/upload/x", b"", 404),
    ("GET", "/calc", None, 200),
    ("GET", "/calc?n=5000000", None, 200),
    ("GET", "/calc?n=zz", None, 400),
    ("POST", "/calc", b"", 405),
    ("GET", "/", None, 404),
    ("GET", "/nope", None, 404),
    ("DELETE", "/nope", None, 404),
]


def read_to_close(sock):
    """Everything the peer sends until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class ProtocolsTest(unittest.TestCase):
    def assert_fixed_length(self, r, what):
        self.assertIn("content-length", r.headers, "%s: no Content-Length:\n%s" % (what, r.raw_head))
        self.assertFalse(r.chunked, "%s: chunked:\n%s" % (what, r.raw_head))
        self.assertNotIn("transfer-encoding", r.headers, what)
        self.assertEqual(int(r.headers["content-length"]), len(r.body), what)

    def stable_fd_count(self, w, timeout=5):
        """weir's open fds once the count has stayed the same for 0.3 s."""
        last, since = w.fd_count(), time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = w.fd_count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= 0.3:
                break
        return last

    # --- HTTP/1 -----------------------------------------------------------------------------------------------
    def test_content_length_on_every_http1_response(self):
        with tls_weir() as w:
            for port, tls in ((w.ports[0][2], False), (w.ports[1][2], True)):
                c = wt.HTTP1Conn(port, tls=tls)
                for method, path, body, status in REQUESTS:
                    c.request(method, path, body=body)
                    r = c.read_response()
                    what = "%s %s (tls=%s)" % (method, path, tls)
                    self.assertEqual(r.status, status, what)
                    self.assert_fixed_length(r, what)
                    self.assertEqual(r.headers.get("content-type"), "application/json", what)
                c.request("HEAD", "/calc?n=7")
                r = c.read_response(head=True)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers.get("content-length"), str(len(b'{"result": 91}')))
                c.close()
                # HTTP/1.0 requests too
                for method, path, body, status in REQUESTS[:5]:
                    c = wt.HTTP1Conn(port, tls=tls)
                    c.request(method, path, body=body, version="1.0")
                    r = c.read_response()
                    self.assertEqual(r.status, status, (method, path))
                    self.assert_fixed_length(r, "HTTP/1.0 %s %s" % (method, path))
                    c.close()

    def test_clients_that_speak_late_are_served(self):
        # The listeners defer accepting a connection until its client sends something: a client (HTTP/1, TLS) that
        # connects and waits before speaking is still served, and one that never speaks costs weir no connection.
        with tls_weir() as w:
            plain, tls_port = w.ports[0][2], w.ports[1][2]
            fds_before = w.fd_count()
            late = socket.create_connection(("127.0.0.1", plain), timeout=10)
            late_tls = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
            silent = [socket.create_connection(("127.0.0.1", plain), timeout=10) for _ in range(20)]
            time.sleep(1.5)
            self.assertLessEqual(w.fd_count() - fds_before, 2, "weir accepted connections that sent nothing")
            late.sendall(b"GET /calc?n=3 HTTP/1.0\r\n\r\n")
            data = read_to_close(late)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:64])
            self.assertTrue(data.endswith(b'{"result": 5}'), data[-64:])
            late.close()
            s = wt.tls_client_context(["http/1.1"]).wrap_socket(late_tls, server_hostname="localhost")
            s.sendall(b"GET /calc?n=3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = read_to_close(s)
            self.assertTrue(data.endswith(b'{"result": 5}'), data[-64:])
            s.close()
            for c in silent:
                c.close()

    def test_keepalive_reuse(self):
        with Weir(make_config()) as w:
            c = wt.HTTP1Conn(w.port)
            local = c.sock.getsockname()
            for method, path, body, status in REQUESTS:
                c.request(method, path, body=body)
                r = c.read_response()
                self.assertEqual(r.status, status, (method, path))
                self.assertNotEqual(r.headers.get("connection", "").lower(), "close", (method, path))
                self.assertFalse(c.eof)
            # the same TCP connection served them all, and it is still open
            self.assertEqual(c.sock.getsockname(), local)
            self.assertFalse(c.is_closed_by_peer(0.3))
            # pipelining: three requests in one write, three answers in order
            c.send(b"GET /calc?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                   b"GET /calc?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(c.read_response().body, b'{"result": 1}')
            self.assertEqual(c.read_response().body, b'{"success": true}')
            self.assertEqual(c.read_response().body, b'{"result": 5}')
            # "Connection: close" is honoured
            c.request("GET", "/calc?n=4", headers=[("Connection", "close")])
            r = c.read_response()
            self.assertEqual(r.body, b'{"result": 14}')
            self.assertTrue(c.is_closed_by_peer(5))
            c.close()
            # HTTP/1.0 with keep-alive asked for
            c = wt.HTTP1Conn(w.port)
            for _ in range(2):
                c.request("GET", "/calc?n=2", headers=[("Connection", "keep-alive")], version="1.0")
                self.assertEqual(c.read_response().body, b'{"result": 1}')
            c.close()

    # --- h2c ---------------------------------------------------------------------------------------------------
    def test_h2c_prior_knowledge_h2load(self):
        wt.require("h2load")
        with Weir(make_config()) as w:
            proc = wt.h2load("-n", "100", "-c", "4", "-m", "4", w.url("/calc?n=1000"), timeout=120)
            self.assertIn("Application protocol: h2c", proc.stdout)
            self.assertRegex(proc.stdout, r"requests: 100 total, 100 started, 100 done, 100 succeeded")
            self.assertRegex(proc.stdout, r"status codes: 100 2xx")
            data = os.path.join(w.tmp, "body.bin")
            with open(data, "wb") as f:
                f.write(b"x" * 1000)
            proc = wt.h2load("-n", "20", "-c", "4", "-m", "4", "-d", data, w.url("/upload"), timeout=120)
            self.assertRegex(proc.stdout, r"status codes: 20 2xx")
            # and our own client: several streams on one connection
            h = wt.H2Client(w.port)
            sids = [h.request("GET", "/calc?n=%d" % n) for n in range(1, 11)]
            for n, sid in enumerate(sids, 1):
                st = h.response(sid)
                self.assertEqual((st.status, st.body), (200, b'{"result": %d}' % sum(i * i for i in range(n))))
            h.close()

    def test_http1_upgrade_h2c(self):
        wt.require("curl")
        with Weir(make_config()) as w:
            proc = wt.run(["curl", "-sS", "--http2", "-D", "-", "-o", "/dev/null", w.url("/calc?n=3")])
            self.assertRegex(proc.stdout, r"^HTTP/1\.1 101 ")
            self.assertRegex(proc.stdout, r"(?m)^HTTP/2 200")
            status, headers, body = curl("--http2", w.url("/calc?n=3"))
            self.assertEqual((status, headers["_version"], body), (200, "2", b'{"result": 5}'))

    # --- TLS ---------------------------------------------------------------------------------------------------
    def test_tls_alpn_h2_h2load(self):
        wt.require("h2load")
        with tls_weir() as w:
            proc = wt.h2load("-n", "100", "-c", "4", "-m", "4", w.url("/calc?n=1000", 1), timeout=120)
            self.assertRegex(proc.stdout, r"Application protocol: h2\b")
            self.assertRegex(proc.stdout, r"status codes: 100 2xx")
            # ALPN offers both, prefers h2
            for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1", "h2"], "h2"), (["http/1.1"], "http/1.1")):
                s = wt.tls_client_context(offer).wrap_socket(socket.create_connection(("127.0.0.1", w.ports[1][2])),
                                                             server_hostname="localhost")
                self.assertEqual(s.selected_alpn_protocol(), chosen, offer)
                self.assertGreaterEqual(s.version(), "TLSv1.2")
                s.close()

    def test_tls_http11_curl(self):
        with tls_weir() as w:
            status, headers, body = curl("--http1.1", "-k", w.url("/calc?n=4", 1))
            self.assertEqual((status, headers["_version"], body), (200, "1.1", b'{"result": 14}'))
            self.assertEqual(headers["content-length"], "14")
            # a client without ALPN gets HTTP/1.1
            ctx = wt.tls_client_context(alpn=None)
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", w.ports[1][2]), timeout=10),
                                server_hostname="localhost")
            self.assertIsNone(s.selected_alpn_protocol())
            s.sendall(b"GET /calc?n=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            s.close()
            self.assertRegex(data, rb"^HTTP/1\.1 200 ")
            self.assertTrue(data.endswith(b'{"result": 14}'))
            # cleartext on the TLS port is not served
            r = wt.raw_request(w.ports[1][2], b"GET /calc HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            self.assertNotIn(b"result", r)

    def test_unknown_path_404_each_protocol(self):
        with tls_weir() as w:
            http_port, tls_port = w.ports[0][2], w.ports[1][2]
            for path in ("/nope", "/upload/extra", "/calc/x"):
                for version in ("1.0", "1.1"):
                    c = wt.HTTP1Conn(http_port)
                    c.request("GET", path, version=version)
                    r = c.read_response()
                    c.close()
                    self.assertEqual((r.status, r.json()), (404, NOT_FOUND), (version, path))
                r = wt.http1(tls_port, "GET", path, tls=True)
                self.assertEqual((r.status, r.json()), (404, NOT_FOUND), ("tls http/1.1", path))
                for args, url in ((["--http2-prior-knowledge"], w.url(path)), (["--http2"], w.url(path)),
                                  (["--http2", "-k"], w.url(path, 1)), (["--http1.1", "-k"], w.url(path, 1))):
                    status, headers, body = curl_json(*args, url)
                    self.assertEqual((status, body), (404, NOT_FOUND), (args, url))
                    self.assertEqual(headers["content-type"], "application/json")
                for port, tls in ((http_port, False), (tls_port, True)):
                    h = wt.H2Client(port, tls=tls)
                    st = h.response(h.request("GET", path))
                    self.assertEqual((st.status, st.body), (404, b'{"error": "not found"}'), (path, tls))
                    h.close()

    def test_unknown_host_falls_back_to_default(self):
        with Weir(make_config(hosts=[("other.example", "/calc", {"calc.n": 20})])) as w:
            def calc(host):
                return wt.http1(w.port, "GET", "/calc", headers=[("Host", host)])

            self.assertEqual(calc("other.example").body, b'{"result": 2470}')  # the named host: n = 20
            for host in ("unknown.example", "127.0.0.1", "default", "x"):
                r = calc(host)
                self.assertEqual((r.status, r.body), (200, b'{"result": 285}'), host)  # the first host: n = 10
            # no Host header at all (HTTP/1.0)
            raw = wt.raw_request(w.port, b"GET /calc HTTP/1.0\r\n\r\n")
            self.assertTrue(raw.endswith(b'{"result": 285}'), raw)
            # the named host has no /upload
            r = wt.http1(w.port, "POST", "/upload", headers=[("Host", "other.example")])
            self.assertEqual(r.status, 404)
            self.assertEqual(wt.http1(w.port, "POST", "/upload", headers=[("Host", "nowhere")]).status, 200)
            # over HTTP/2 (:authority)
            for authority, body in (("unknown.example", b'{"result": 285}'), ("other.example", b'{"result": 2470}')):
                h = wt.H2Client(w.port, authority=authority)
                self.assertEqual(h.response(h.request("GET", "/calc")).body, body, authority)
                h.close()

    # --- access log --------------------------------------------------------------------------------------------
    def test_access_log_combined_format(self):
        tmp = wt.temp_dir()
        log = os.path.join(tmp, "access.log")
        combined = re.compile(r'^(\S+) (\S+) (\S+) \[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
                              r'"([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$')
        with Weir(make_config(settings=[("access-log", log)], dmin=300, dmax=300), directory=tmp) as w:
            wt.http1(w.port, "GET", "/calc?n=3", headers=[("User-Agent", "weir-e2e/1.0"),
                                                           ("Referer", "http://ref.example/page")])
            h = wt.H2Client(w.port)
            h.response(h.request("GET", "/nope"))
            h.close()
            # a client that resets its connection while its upload waits: logged when the answer fails, by then the
            # peer is gone, and its address must still be there
            c = wt.HTTP1Conn(w.port)
            c.request("POST", "/upload", headers=[("User-Agent", "gone-client")])
            time.sleep(0.05)
            c.close(rst=True)

            def lines():
                try:
                    with open(log) as f:
                        return f.read().splitlines()
                except FileNotFoundError:
                    return []

            self.assertTrue(wt.wait_until(lambda: len(lines()) >= 3, 10), lines())
            entries = lines()
        self.assertEqual(len(entries), 3, entries)
        parsed = []
        for line in entries:
            m = combined.match(line)
            self.assertIsNotNone(m, "not in combined format: %r" % line)
            parsed.append(m.groups())
        for g in parsed:
            self.assertEqual(g[0], "127.0.0.1", "peer address missing: %r" % (g,))
            self.assertEqual((g[1], g[2]), ("-", "-"))
        by_ua = {g[8]: g for g in parsed}
        g = by_ua["weir-e2e/1.0"]
        self.assertEqual((g[4], g[5], g[6], g[7]), ("GET /calc?n=3 HTTP/1.1", "200", "13", "http://ref.example/page"))
        h2 = [g for g in parsed if g[4] == "GET /nope HTTP/2"]
        self.assertEqual(len(h2), 1, parsed)
        self.assertEqual((h2[0][5], h2[0][6]), ("404", str(len(b'{"error": "not found"}'))))
        self.assertIn("gone-client", by_ua)
        self.assertTrue(by_ua["gone-client"][4].startswith("POST /upload HTTP/1.1"))

    # --- TLS connections reset by clients: no fd leak (libuv >= 1.42 uv_write EPIPE) -------------------------------
    def test_tls_resets_do_not_leak_fds(self):
        with tls_weir(dmin=50, dmax=50) as w:
            port = w.ports[1][2]
            # warm up (TLS session machinery, thread pool), then take the idle baseline
            self.assertEqual(curl("-k", "--http2", w.url("/calc?n=3", 1))[0], 200)
            self.assertEqual(curl("-k", "--http1.1", w.url("/calc?n=3", 1))[0], 200)
            baseline = self.stable_fd_count(w)
            for i in range(50):
                mode = i % 5
                raw = socket.create_connection(("127.0.0.1", port), timeout=10)
                if mode == 0:
                    # half a ClientHello
                    raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(20))
                    time.sleep(0.01)
                    wt.set_linger_rst(raw)
                    raw.close()
                    continue
                alpn = ["h2"] if mode in (2, 4) else ["http/1.1"]
                s = wt.tls_client_context(alpn).wrap_socket(raw, server_hostname="localhost")
                if mode == 1:
                    s.sendall(b"GET /calc?n=1 HTTP/1.1\r\nHo")  # partial request
                elif mode == 2:
                    s.sendall(wt.H2Client.PREFACE[:10])  # partial preface
                elif mode == 3:
                    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")  # answered later
                else:
                    s.sendall(wt.H2Client.PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # then go away
                time.sleep(0.01)
                wt.set_linger_rst(s)
                s.close()
            # the server must close every one of them; give it (generously) time to notice and finish the uploads
            ok = wt.wait_until(lambda: w.fd_count() <= baseline, 5, interval=0.1)
            self.assertTrue(ok, "weir has %d fds, %d before 50 reset TLS connections: sockets leak"
                            % (w.fd_count(), baseline))
            # and it still serves TLS
            self.assertEqual(curl("-k", "--http2", w.url("/calc?n=3", 1))[2], b'{"result": 5}')


if __name__ == "__main__":
    unittest.main()
