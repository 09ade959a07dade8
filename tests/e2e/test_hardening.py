"""Regression tests for what an outside probe found weir doing wrong (issue 9), each at a scale that runs in seconds:
descriptors running out, slow readers pinning memory, request smuggling, requests lost at shutdown, sums nobody
waits for, and smaller protocol points. The abuse suite (tests/stress/) runs the same scenarios at full scale."""

import json
import os
import re
import resource
import signal
import socket
import threading
import time
import unittest

import weirtest as wt
from weirtest import Config, Weir

BIG = 1000000  # bytes of the value slow readers ask for
MEMORY = {"cache.backend": "memory"}


def raise_own_nofile(n):
    """Lets the test itself open n sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(n, soft), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def put_big(w, key="big", size=BIG):
    with wt.temp_file(b"a" * size) as path:
        status, _, body = wt.curl_json("-X", "PUT", "--data-binary", "@" + path, w.url("/cache?key=" + key))
    assert status == 200, (status, body)


def http1_exchange(port, data, timeout=5):
    """Sends data on a new connection; returns (responses [(status, headers, body)], closed_by_peer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        closed = False
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        responses = []
        while buf:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not sep:
                break
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            responses.append((status, headers, rest[:n]))
            buf = rest[n:]
        return responses, closed
    finally:
        s.close()


class TestOutOfDescriptors(unittest.TestCase):
    """1000 slow clients against weir limited to 256 descriptors: it must not spin, must log the condition now and
    then, must serve again as soon as the clients leave, and must stop on SIGTERM."""

    def flood(self, w, n):
        raise_own_nofile(n + 64)
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", w.port))
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(0.5)
        for s in socks:
            try:
                s.send(b"GET /calc HT")  # a partial request line, as a slow client sends
            except OSError:
                pass
        return socks

    def check_flood(self, config, n=1000):
        with Weir(config, nofile=256) as w:
            socks = self.flood(w, n)
            time.sleep(1.0)
            cpu0 = w.cpu_seconds()
            time.sleep(2.0)
            spent = w.cpu_seconds() - cpu0
            # a spinning loop burns a core per worker thread: 4 s of CPU in these 2 s
            self.assertLess(spent, 0.5, "weir used %.2f s of CPU in 2 s while the flood sat idle" % spent)
            for s in socks:
                s.close()
            # served again at once
            self.assertTrue(wt.wait_until(lambda: self.serves(w), 5), "weir did not serve again after the flood")
            t = time.monotonic()
            w.signal(signal.SIGTERM)
            w.proc.wait(10)
            self.assertLess(time.monotonic() - t, 5, "SIGTERM was not acted on promptly")
            return w

    @staticmethod
    def serves(w):
        try:
            status, _, body = wt.curl_json("--max-time", "2", w.url("/calc?n=10"))
            return status == 200 and body == {"result": 285}
        except AssertionError:
            return False

    def test_emfile_does_not_spin(self):
        # max-connections far above the descriptor limit: accept() itself runs out of descriptors
        w = self.check_flood(Config().listen().set("max-connections", 100000).set("http1-request-timeout", 30)
                             .path("/calc", {"calc.n": 10}))
        out = w.stderr()
        self.assertIn("out of file descriptors", out)
        # logged now and then, not per connection (the flood hit the limit for a few seconds)
        self.assertLessEqual(out.count("out of file descriptors"), 3, out)
        self.assertEqual(w.proc.returncode, 0)

    def test_default_max_connections_keeps_descriptors_for_weir(self):
        # the default max-connections is derived from the descriptor limit, below it: accept() never runs out
        w = self.check_flood(Config().listen().set("http1-request-timeout", 30).path("/calc", {"calc.n": 10}))
        out = w.stderr()
        m = re.search(r"max-connections (\d+) \(descriptor limit (\d+)\)", out)
        self.assertIsNotNone(m, out)
        self.assertLess(int(m.group(1)), 256 - 64)
        self.assertNotIn("out of file descriptors", out)
        self.assertIn("max-connections reached", out)
        self.assertEqual(w.proc.returncode, 0)

    def test_max_connections_holds_and_releases(self):
        raise_own_nofile(200)
        with Weir(Config().listen().set("max-connections", 10).path("/calc", {"calc.n": 10})) as w:
            held = [socket.create_connection(("127.0.0.1", w.port)) for _ in range(10)]
            for s in held:
                s.sendall(b"GET /calc HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertIn(b"200 OK", s.recv(4096))
            # the 11th connection waits in the kernel's queue: no answer while the 10 stay open
            extra = socket.create_connection(("127.0.0.1", w.port), timeout=1)
            extra.sendall(b"GET /calc HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            with self.assertRaises(socket.timeout):
                extra.recv(4096)
            held.pop().close()
            extra.settimeout(5)
            self.assertIn(b"200 OK", extra.recv(4096))
            extra.close()
            for s in held:
                s.close()


def h2_zero_window_streams(port, n, path):
    """One h2c connection that advertises a zero window and opens n streams on path; returns (socket, statuses
    received so far {stream: status}) after reading headers for a moment (HEADERS are not flow-controlled)."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    for _ in range(n):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "a")],
                          end_stream=True)
    s.sendall(conn.data_to_send())
    statuses = {}
    deadline = time.monotonic() + 3
    s.settimeout(0.2)
    while time.monotonic() < deadline and len(statuses) < n:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                statuses[ev.stream_id] = int(dict(ev.headers)[b":status"])
        out = conn.data_to_send()
        if out:
            s.sendall(out)
    return s, statuses


class TestSlowReaders(unittest.TestCase):
    def setUp(self):
        try:
            import h2  # noqa: F401
        except ImportError:
            wt.require("python3-h2 (h2 module)")

    def test_zero_window_streams_share_one_value(self):
        # 100 streams of a 1 MB value on a connection that reads nothing: the value is not copied per answer
        with Weir(Config().listen().path("/cache", MEMORY)) as w:
            put_big(w)
            before = w.rss_mib()
            sock, statuses = h2_zero_window_streams(w.port, 100, "/cache?key=big")
            time.sleep(0.5)
            during = w.rss_mib()
            self.assertEqual(sorted(set(statuses.values())), [200])
            self.assertLess(during - before, 30, "100 stalled answers took %.0f MiB" % (during - before))
            sock.close()
            time.sleep(0.5)
            self.assertLess(w.rss_mib() - before, 10)

    def test_memory_held_by_answers_is_shown(self):
        # weir_response_memory_bytes: what the budget counts, while 5 stalled 1 MB answers wait and after they go
        from promtext import Scraper
        cfg = Config().listen().path("/cache", MEMORY).path("/metrics", {"status.metrics": "ON"})
        with Weir(cfg) as w:
            put_big(w)
            scraper = Scraper(w.port)
            self.assertEqual(scraper.scrape().value("weir_response_memory_bytes"), 0)
            sock, statuses = h2_zero_window_streams(w.port, 5, "/cache?key=big")
            self.assertEqual(sorted(set(statuses.values())), [200])
            held = scraper.scrape().value("weir_response_memory_bytes")
            self.assertGreaterEqual(held, 5 * BIG, "5 stalled answers of %d bytes, %s held" % (BIG, held))
            sock.close()
            self.assertTrue(wt.wait_until(lambda: scraper.scrape().value("weir_response_memory_bytes") == 0, 5))

    def test_budget_refuses_large_answers_when_spent(self):
        # 10 MiB for answers waiting for readers: of 30 stalled 1 MB answers, about 10 are taken, the rest get 503
        with Weir(Config().listen().set("limit-response-memory", "10M").path("/cache", MEMORY)) as w:
            put_big(w)
            sock, statuses = h2_zero_window_streams(w.port, 30, "/cache?key=big")
            counts = {c: list(statuses.values()).count(c) for c in set(statuses.values())}
            self.assertEqual(len(statuses), 30, statuses)
            self.assertLessEqual(counts.get(200, 0), 10, counts)
            self.assertGreaterEqual(counts.get(503, 0), 20, counts)
            # small answers are not held against the budget
            status, _, body = wt.curl_json(w.url("/cache?key=none"))
            self.assertEqual((status, body), (200, {"data": None}))
            status, headers, body = wt.curl_json("--http2-prior-knowledge", w.url("/cache?key=big"))
            self.assertEqual(status, 503)
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertIn("error", body)
            sock.close()
            # once the stalled readers are gone, large answers are served again
            self.assertTrue(wt.wait_until(lambda: wt.curl("-o", "/dev/null", w.url("/cache?key=big"))[0] == 200, 5))

    def test_write_timeout_closes_silent_readers(self):
        with Weir(Config().listen().set("write-timeout", 1).path("/cache", MEMORY)) as w:
            put_big(w)
            socks = []
            for _ in range(20):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", w.port))
                s.sendall(b"GET /cache?key=big HTTP/1.1\r\nHost: a\r\n\r\n")
                socks.append(s)
            h2sock, _ = h2_zero_window_streams(w.port, 5, "/cache?key=big")
            time.sleep(3.5)  # the timeout, plus the once-a-second check, plus margin
            for s in socks + [h2sock]:
                s.settimeout(5)
                got, reset = 0, False
                try:
                    while True:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            break
                        got += len(chunk)
                except ConnectionResetError:
                    reset = True
                self.assertTrue(reset or got < BIG, "a reader that read nothing for 3 s was not disconnected")
                s.close()
            self.assertTrue(wt.wait_until(lambda: "read nothing for 1000 ms" in w.stderr(), 5), w.stderr())
            # weir still serves, and RSS is back
            status, _, body = wt.curl_json(w.url("/cache?key=none"))
            self.assertEqual(status, 200)


SMUGGLING = [
    # (name, bytes, expected status) -- every one must be refused and its connection closed, and nothing hidden in
    # it executed (the hidden requests would store the key "smuggled")
    ("conflicting Content-Length", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                                   b"hello!PUT /cache?key=smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", 400),
    ("TE with CL", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 56\r\n\r\n0\r\n\r\n"
                   b"PUT /cache?key=smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", 400),
    ("two TE", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nPUT /cache?key=smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", 400),
    ("chunk size 0x5", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with a space", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    ("LF-only chunks", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", 400),
    ("obs-fold", b"GET /cache?key=a HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("space before colon", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("xchunked", b"PUT /cache?key=a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("NUL in a header", b"GET /cache?key=a HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("bare CR in a header", b"GET /cache?key=a HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    ("no Host", b"GET /cache?key=a HTTP/1.1\r\n\r\n", 400),
    ("two Host", b"GET /cache?key=a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("100 KB URL", b"GET /cache?key=" + b"a" * 100000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("200 headers", b"GET /cache?key=a HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
]


class TestFraming(unittest.TestCase):
    def test_smuggling_is_refused(self):
        with Weir(Config().listen().path("/cache", MEMORY)) as w:
            for name, data, expected in SMUGGLING:
                responses, closed = http1_exchange(w.port, data)
                self.assertEqual([r[0] for r in responses], [expected], name)
                self.assertEqual(responses[0][1].get("content-type"), "application/json", name)
                self.assertIn("error", json.loads(responses[0][2]), name)
                self.assertTrue(closed, "%s: the connection was left open" % name)
            status, _, body = wt.curl_json(w.url("/cache?key=smuggled"))
            self.assertEqual((status, body), (200, {"data": None}), "a smuggled request was executed")

    def test_requests_before_a_bad_one_are_answered_and_nothing_after(self):
        with Weir(Config().listen().path("/cache", MEMORY)) as w:
            data = (b"PUT /cache?key=first HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n1"
                    b"GET /cache?key=first HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
                    b"PUT /cache?key=smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
            responses, closed = http1_exchange(w.port, data)
            self.assertEqual([r[0] for r in responses], [200, 400])
            self.assertTrue(closed)
            self.assertEqual(wt.curl_json(w.url("/cache?key=first"))[2], {"data": "1"})
            self.assertEqual(wt.curl_json(w.url("/cache?key=smuggled"))[2], {"data": None})

    def test_valid_framings_still_work(self):
        with Weir(Config().listen().listen_tls().path("/cache", MEMORY)) as w:
            for index in (0, 1):
                flags = ["-k"] if index == 1 else []
                # chunked upload (curl sends chunked when the length is unknown), keep-alive, pipelining
                status, _, body = wt.curl_json(*flags, "-X", "PUT", "-H", "Transfer-Encoding: chunked", "--data-binary",
                                               "hello", w.url("/cache?key=c%d" % index, index))
                self.assertEqual((status, body), (200, {"success": True}))
                self.assertEqual(wt.curl_json(*flags, w.url("/cache?key=c%d" % index, index))[2], {"data": "hello"})
            responses, closed = http1_exchange(
                w.port, b"PUT /cache?key=p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                        b"GET /cache?key=p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            self.assertEqual([(r[0], json.loads(r[2])) for r in responses], [(200, {"success": True}), (200, {"data": "ok"})])
            status, _, body = wt.curl_json("--http2", "-k", w.url("/cache?key=p", 1))
            self.assertEqual((status, body), (200, {"data": "ok"}))


def keepalive_client(port, stats, lock):
    """One HTTP/1.1 connection, requests one after the other until the server closes it (or says it will): counts the
    requests sent and those answered. A client that honours "Connection: close" never sends on a closing connection,
    so every request it sent was on a connection weir had open, and must be answered."""
    request = b"GET /cache?key=k HTTP/1.1\r\nHost: a\r\n\r\n"
    sent = answered = 0
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""
    try:
        while True:
            try:
                s.sendall(request)
            except OSError:
                break
            sent += 1
            while b"\r\n\r\n" not in buf:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise EOFError
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(rest) < length:
                chunk = s.recv(65536)
                if not chunk:
                    raise EOFError
                rest += chunk
            buf = rest[length:]
            answered += 1
            if re.search(rb"(?i)connection: *close", head):
                break
    except EOFError:
        pass
    finally:
        s.close()
    with lock:
        stats.append((sent, answered))


class TestShutdownUnderLoad(unittest.TestCase):
    def test_sigterm_answers_every_request_already_sent(self):
        # 100 keep-alive clients hammering /cache; SIGTERM in the middle: every request sent on a connection weir had
        # open is answered (the last ones with "Connection: close"), and each is logged once
        log = os.path.join(wt.temp_dir(), "access.log")
        with Weir(Config().listen().set("access-log", log).path("/cache", MEMORY)) as w:
            stats, lock = [], threading.Lock()
            clients = [threading.Thread(target=keepalive_client, args=(w.port, stats, lock)) for _ in range(100)]
            for t in clients:
                t.start()
            time.sleep(1.0)
            w.signal(signal.SIGTERM)
            for t in clients:
                t.join(60)
            w.proc.wait(20)
        sent, answered = sum(x[0] for x in stats), sum(x[1] for x in stats)
        self.assertEqual(len(stats), 100)
        self.assertGreater(answered, 1000)
        self.assertEqual(sent, answered, "%d request(s) sent on open connections were never answered" % (sent - answered))
        with open(log) as f:
            self.assertEqual(sum(1 for _ in f), answered)

    def test_sigterm_under_h2load(self):
        # the same with h2load, over HTTP/1.1 and h2c: nothing weir answered is lost from the log, no answer is an
        # error, and weir exits 0 (h2load also counts requests on connections it opened after the drain began, which
        # weir refuses: those are the clean refusals, not lost requests)
        wt.require("h2load")
        for proto in (["--h1"], []):
            log = os.path.join(wt.temp_dir(), "access.log")
            with Weir(Config().listen().set("access-log", log).path("/cache", MEMORY)) as w:
                box = {}
                t = threading.Thread(target=lambda: box.update(out=wt.h2load(*proto, "-c", "100", "-n", "200000",
                                                                             w.url("/cache?key=k")).stdout))
                t.start()
                time.sleep(1.0)
                w.signal(signal.SIGTERM)
                t.join(60)
                w.proc.wait(20)
            out = box["out"]
            m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
            self.assertIsNotNone(m, out)
            done, succeeded = int(m.group(3)), int(m.group(4))
            self.assertGreater(succeeded, 1000, out)
            self.assertIn("status codes: %d 2xx, 0 3xx, 0 4xx, 0 5xx" % succeeded, out)
            with open(log) as f:
                self.assertEqual(sum(1 for _ in f), succeeded, out)


class TestCancelledSums(unittest.TestCase):
    def test_reset_sum_stops_running(self):
        # one pool thread: while an abandoned sum keeps running, the next one waits for it
        config = Config().listen().path("/calc", {"calc.threads": 1, "calc.max-n": 4000000000})
        with Weir(config) as w:
            t = time.monotonic()
            self.assertEqual(wt.curl_json(w.url("/calc?n=300000000"))[0], 200)
            whole = time.monotonic() - t  # what the big sum costs on this machine now
            h = wt.H2Client(w.port)
            sid = h.request("GET", "/calc?n=300000000")
            time.sleep(0.05)
            h.reset(sid)
            t = time.monotonic()
            small = h.request("GET", "/calc?n=10")
            st = h.response(small, timeout=60)
            waited = time.monotonic() - t
            self.assertEqual((st.status, json.loads(st.body)), (200, {"result": 285}))
            # relative to the big sum's own cost, not a fixed time: the abandoned sum did not run to its end
            self.assertLess(waited, whole / 2, "the small sum waited %.2f s; the big one takes %.2f s" % (waited, whole))
            h.close()


class TestProtocolPoints(unittest.TestCase):
    def test_absolute_form_host_and_head(self):
        with Weir(Config().listen().path("/cache", MEMORY).path("/calc", {"calc.n": 10})) as w:
            port = w.port
            responses, _ = http1_exchange(port, b"GET http://127.0.0.1/calc?n=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                b"Connection: close\r\n\r\n")
            self.assertEqual([(r[0], json.loads(r[2])) for r in responses], [(200, {"result": 285})])
            # the target's authority is used to choose a host, never to proxy
            responses, _ = http1_exchange(port, b"GET http://elsewhere.example:81/calc?n=3 HTTP/1.1\r\nHost: x\r\n"
                                                b"Connection: close\r\n\r\n")
            self.assertEqual([(r[0], json.loads(r[2])) for r in responses], [(200, {"result": 5})])
            self.assertEqual(wt.curl_json("-X", "PUT", "--data-binary", "v", w.url("/cache?key=h"))[0], 200)
            r = wt.http1(port, "HEAD", "/cache?key=h")
            self.assertEqual((r.status, r.body, r.headers.get("content-length")), (200, b"", str(len(b'{"data": "v"}'))))

    def test_repeated_query_parameters(self):
        with Weir(Config().listen().path("/cache", MEMORY).path("/calc", {"calc.n": 10})) as w:
            for url in ("/calc?n=1&n=2", "/cache?key=a&key=b", "/cache?key=a&ttl=1&ttl=2"):
                method = "PUT" if "ttl" in url else "GET"
                status, _, body = wt.curl_json("-X", method, w.url(url))
                self.assertEqual(status, 400, url)
                self.assertIn("repeated query parameter", body["error"], url)


if __name__ == "__main__":
    unittest.main()
