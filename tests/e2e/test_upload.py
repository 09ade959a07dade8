"""End-to-end tests of POST /upload: answers on every protocol, errors, the request-body limit, the slot gate (bound,
FIFO order) and clients that leave while they wait or hold a slot (HTTP/2 resets and closes, HTTP/1 closes)."""

import os
import re
import selectors
import socket
import time
import unittest

import weirtest as wt
from weirtest import Weir, curl, curl_json

SUCCESS = b'{"success": true}'


def make_config(slots=5, dmin=100, dmax=200, tls=False, settings=(), threads=2):
    """settings: more top-level (key, value) pairs."""
    config = wt.Config(threads=threads).listen()
    if tls:
        config.listen_tls()
    for key, value in settings:
        config.set(key, value)
    return (config.path("/upload", {"upload.concurrency": slots, "upload.delay-min": dmin, "upload.delay-max": dmax})
            .path("/calc", {"calc.n": 1000}))


def tls_weir(**kw):
    return Weir(make_config(tls=True, **kw))


def parallel_posts(port, n, gap=0.0, path="/upload", timeout=30):
    """Opens n HTTP/1.1 connections first, then sends one POST on each (gap seconds apart), and reads the answers as
    they come. Returns [(index, status, seconds from the first send to the complete answer)] in completion order."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    sel = selectors.DefaultSelector()
    bufs = [b""] * n
    done = {}
    order = []
    try:
        for i, s in enumerate(socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        req = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n" % path.encode()
        t0 = time.monotonic()
        next_send, sent = t0, 0
        deadline = t0 + timeout
        while len(done) < n:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError("only %d of %d answers within %ss" % (len(done), n, timeout))
            while sent < n and now >= next_send:
                socks[sent].sendall(req)
                sent += 1
                next_send = t0 + sent * gap
            wait = 0.2 if sent == n else max(0.0, min(0.2, next_send - now))
            for key, _ in sel.select(wait):
                i = key.data
                try:
                    chunk = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise AssertionError("connection %d closed without a complete answer: %r" % (i, bufs[i]))
                bufs[i] += chunk
                head, sep, body = bufs[i].partition(b"\r\n\r\n")
                if not sep:
                    continue
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    done[i] = (int(head.split(b" ")[1]), time.monotonic() - t0)
                    order.append(i)
                    sel.unregister(key.fileobj)
        return [(i, done[i][0], done[i][1]) for i in order]
    finally:
        sel.close()
        for s in socks:
            s.close()


class UploadTest(unittest.TestCase):
    # --- answers ------------------------------------------------------------------------------------------------
    def test_post_http1(self):
        with Weir(make_config(dmin=10, dmax=20)) as w:
            r = wt.http1(w.port, "POST", "/upload", body=b"some data")
            self.assertEqual(r.version, "1.1")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, SUCCESS)
            self.assertEqual(r.json(), {"success": True})
            self.assertEqual(int(r.headers["content-length"]), len(SUCCESS))
            self.assertFalse(r.chunked)
            self.assertEqual(r.headers["content-type"], "application/json")
            # curl, with a body from a form as clients send it
            status, headers, body = curl_json("-X", "POST", "--http1.1", "-F", "file=@%s" % os.path.abspath(__file__), w.url("/upload"))
            self.assertEqual((status, headers["_version"], body), (200, "1.1", {"success": True}))
            self.assertEqual(headers["content-length"], str(len(SUCCESS)))

    def test_post_h2c(self):
        with Weir(make_config(dmin=10, dmax=20)) as w:
            status, headers, body = curl("--http2-prior-knowledge", "-X", "POST", "--data-binary", "abc", w.url("/upload"))
            self.assertEqual(headers["_version"], "2")
            self.assertEqual(status, 200)
            self.assertEqual(body, SUCCESS)
            self.assertEqual(headers["content-length"], str(len(SUCCESS)))
            # Upgrade: h2c is not attempted by curl for a POST with a body; a bodiless one may upgrade
            status, headers, body = curl("--http2", "-X", "POST", w.url("/upload"))
            self.assertEqual((status, body), (200, SUCCESS))

    def test_post_tls_h2(self):
        with tls_weir(dmin=10, dmax=20) as w:
            self.assertEqual(w.ports[1][0], "https")
            status, headers, body = curl("--http2", "-k", "-X", "POST", "--data-binary", "abc", w.url("/upload", 1))
            self.assertEqual(headers["_version"], "2")
            self.assertEqual((status, body), (200, SUCCESS))
            self.assertEqual(headers["content-length"], str(len(SUCCESS)))
            # and HTTP/1.1 over TLS
            r = wt.http1(w.ports[1][2], "POST", "/upload", tls=True)
            self.assertEqual((r.status, r.body), (200, SUCCESS))

    def test_get_is_405(self):
        with Weir(make_config(dmin=10, dmax=20)) as w:
            for method in ("GET", "PUT", "DELETE"):
                r = wt.http1(w.port, method, "/upload")
                self.assertEqual(r.status, 405, method)
                self.assertEqual(r.headers.get("allow"), "POST")
                self.assertEqual(r.headers["content-type"], "application/json")
                self.assertIn("error", r.json())
                self.assertEqual(int(r.headers["content-length"]), len(r.body))
            r = wt.http1(w.port, "HEAD", "/upload")
            self.assertEqual((r.status, r.headers.get("allow")), (405, "POST"))
            status, headers, body = curl_json("--http2-prior-knowledge", w.url("/upload"))
            self.assertEqual((status, headers.get("allow")), (405, "POST"))
            self.assertIn("error", body)

    def test_subpath_is_404(self):
        with Weir(make_config(dmin=10, dmax=20)) as w:
            for path in ("/upload/extra", "/upload/extra/more", "/uploadx", "/upload.json"):
                for method in ("POST", "GET"):
                    r = wt.http1(w.port, method, path)
                    self.assertEqual(r.status, 404, (method, path))
                    self.assertEqual(r.headers["content-type"], "application/json")
                    self.assertIn("error", r.json())
            status, headers, body = curl_json("--http2-prior-knowledge", "-X", "POST", w.url("/upload/extra"))
            self.assertEqual(status, 404)
            self.assertIn("error", body)

    def test_bodiless_http10_post(self):
        # What `ab -m POST` sends without -p: no Content-Length, no keep-alive.
        with Weir(make_config(dmin=10, dmax=20)) as w:
            raw = wt.raw_request(w.port, b"POST /upload HTTP/1.0\r\n\r\n")
            head, _, body = raw.partition(b"\r\n\r\n")
            self.assertRegex(head, rb"^HTTP/1\.[01] 200 ")
            self.assertEqual(body, SUCCESS)  # and the server closed the connection after it
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            self.assertIsNotNone(m, head)
            self.assertEqual(int(m.group(1)), len(SUCCESS))
            # with a Host header and an explicit empty body, too
            raw = wt.raw_request(w.port, b"POST /upload HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            self.assertRegex(raw, rb"^HTTP/1\.[01] 200 ")

    def test_ab_50_concurrent(self):
        wt.require("ab")
        with Weir(make_config(slots=5, dmin=20, dmax=40)) as w:
            proc = wt.ab("-n", "50", "-c", "50", "-m", "POST", w.url("/upload"), timeout=120)
            self.assertRegex(proc.stdout, r"Complete requests:\s+50\b")
            self.assertRegex(proc.stdout, r"Failed requests:\s+0\b")
            self.assertNotIn("Non-2xx", proc.stdout)
            self.assertRegex(proc.stdout, r"Document Length:\s+%d bytes" % len(SUCCESS))

    def test_body_over_limit_is_413(self):
        with Weir(make_config(dmin=10, dmax=20, settings=[("limit-request-body", 1024)])) as w:
            c = wt.HTTP1Conn(w.port)
            c.request("POST", "/upload", body=b"x" * 1024)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, SUCCESS))  # at the limit: fine, and keep-alive
            c.request("POST", "/upload", body=b"x" * 1025)
            r = c.read_response()
            self.assertEqual(r.status, 413)
            self.assertTrue(c.is_closed_by_peer(), "the connection should be closed after a 413")
            c.close()
            r = wt.http1(w.port, "POST", "/upload", body=b"y" * 2000)
            self.assertEqual(r.status, 413)
            # chunked bodies are counted too
            c = wt.HTTP1Conn(w.port)
            c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   b"7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n")
            self.assertEqual(c.read_response().status, 413)
            c.close()
            # HTTP/2 cannot answer 413 once the body streams in: the stream must at least not succeed
            h = wt.H2Client(w.port)
            st = h.response(h.request("POST", "/upload", body=b"x" * 2000))
            self.assertFalse(st.status == 200 and st.body == SUCCESS, "an oversized HTTP/2 body was accepted")
            h.close()

    # --- the gate ----------------------------------------------------------------------------------------------
    def test_slots_bound_concurrency(self):
        # 5 slots, fixed delay D, 20 requests at once: completions come in 4 waves of 5, D apart. Correctness says the
        # (i+5)-th completion is at least D after the i-th (never more than 5 in flight), and, since the first 5
        # start together, each wave of 5 completes together (all 5 slots are used).
        D = 0.4
        with Weir(make_config(slots=5, dmin=400, dmax=400)) as w:
            res = parallel_posts(w.port, 20)
        self.assertEqual([s for _, s, _ in res], [200] * 20)
        t = [x for _, _, x in res]
        msg = "completion times: " + ", ".join("%.3f" % x for x in t)
        slack = 0.15  # client-side timestamps: allow for a stalled test process
        for i in range(15):
            self.assertGreaterEqual(t[i + 5] - t[i], D - slack, "more than 5 uploads in flight; " + msg)
        for k in range(4):
            self.assertGreaterEqual(t[5 * k], (k + 1) * D - slack, msg)
            self.assertLess(t[5 * k + 4] - t[5 * k], D / 2, "wave %d did not use all 5 slots; %s" % (k, msg))
        self.assertGreaterEqual(t[-1], 4 * D - slack, msg)

    def test_slots_are_shared_by_all_connections_and_protocols(self):
        # 2 slots shared by HTTP/1 and HTTP/2 clients: 4 requests with fixed delay D cannot all finish before 2*D.
        D = 0.3
        with Weir(make_config(slots=2, dmin=300, dmax=300)) as w:
            h = wt.H2Client(w.port)
            t0 = time.monotonic()
            sids = [h.request("POST", "/upload") for _ in range(2)]
            res = parallel_posts(w.port, 2)
            for sid in sids:
                st = h.response(sid)
                self.assertEqual((st.status, st.body), (200, SUCCESS))
            h2_times = sorted(h.streams[sid].t_done - t0 for sid in sids)
            h.close()
        self.assertEqual([s for _, s, _ in res], [200, 200])
        last = max(h2_times + [x for _, _, x in res])
        self.assertGreaterEqual(last, 2 * D - 0.1, "4 uploads through 2 slots finished in %.3fs" % last)

    def test_fifo_order(self):
        # One slot, fixed delay: requests sent one by one (on separate connections, so over both worker threads)
        # must complete in the order they were sent, each at least D after the previous one.
        D = 0.25
        with Weir(make_config(slots=1, dmin=250, dmax=250)) as w:
            res = parallel_posts(w.port, 6, gap=0.1)
        self.assertEqual([s for _, s, _ in res], [200] * 6)
        self.assertEqual([i for i, _, _ in res], list(range(6)), "completion order: %s" % res)
        t = [x for _, _, x in res]
        for i in range(5):
            self.assertGreaterEqual(t[i + 1] - t[i], D - 0.1, res)

    def test_fifo_order_h2(self):
        # The same over one HTTP/2 connection (streams multiplexed) with 2 slots.
        with Weir(make_config(slots=2, dmin=200, dmax=200)) as w:
            h = wt.H2Client(w.port)
            sids = []
            for _ in range(6):
                sids.append(h.request("POST", "/upload"))
                h.wait(lambda: False, 0.05)
            for sid in sids:
                st = h.response(sid, timeout=10)
                self.assertEqual((st.status, st.body), (200, SUCCESS))
            order = sorted(sids, key=lambda s: h.streams[s].t_done)
            h.close()
        self.assertEqual(order, sids)

    # --- clients that leave ------------------------------------------------------------------------------------
    def _h2_leavers_free_slots(self, how):
        # 5 slots, fixed delay D. Five HTTP/2 streams take every slot; after H they go away. A new request must then
        # get a slot at once and finish in about D. If the slots stayed held, it would finish in about 2*D - H.
        D, H = 1.5, 0.4
        with Weir(make_config(slots=5, dmin=1500, dmax=1500)) as w:
            h = wt.H2Client(w.port)
            sids = [h.request("POST", "/upload") for _ in range(5)]
            h.wait(lambda: False, H)
            self.assertFalse(any(h.finished(s) for s in sids), "the holders finished early")
            if how == "reset":
                for s in sids:
                    h.reset(s)
                h.wait(lambda: False, 0.05)
            else:
                h.close(rst=(how == "rst"))
            t0 = time.monotonic()
            try:
                r = wt.http1(w.port, "POST", "/upload", timeout=3 * D)
            except socket.timeout:
                self.fail("a new upload got no answer within %.1fs: the slots of the %s streams were not given back"
                          % (3 * D, how))
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.body), (200, SUCCESS))
            self.assertGreaterEqual(elapsed, D - 0.1)
            self.assertLess(elapsed, D + (D - H) / 2, "a new upload took %.2fs: the slots of the %s streams were not "
                            "given back (expected about %.1fs)" % (elapsed, how, D))
            if how == "reset":
                # the connection is still usable after the resets
                st = h.response(h.request("GET", "/calc?n=3"))
                self.assertEqual((st.status, st.body), (200, b'{"result": 5}'))
                h.close()

    def test_h2_reset_streams_free_slots(self):
        self._h2_leavers_free_slots("reset")

    def test_h2_closed_connection_frees_slots(self):
        self._h2_leavers_free_slots("close")

    def test_h2_aborted_connection_frees_slots(self):
        self._h2_leavers_free_slots("rst")

    def test_http1_queued_clients_that_leave_free_their_turn(self):
        # 1 slot, fixed delay D = 0.5 s. One client holds the slot; five clients queue behind it and then close
        # (three with FIN, two with RST) before their turn; a last client queues after them. When the holder is done,
        # the server must skip the five that left (it peeks at their sockets) and serve the last one: about 2*D from
        # the start, not 7*D.
        D = 0.5
        with Weir(make_config(slots=1, dmin=500, dmax=500)) as w:
            t0 = time.monotonic()
            holder = wt.HTTP1Conn(w.port)
            holder.request("POST", "/upload")
            time.sleep(0.1)
            leavers = []
            for _ in range(5):
                c = wt.HTTP1Conn(w.port)
                c.request("POST", "/upload")
                leavers.append(c)
            time.sleep(0.1)
            for i, c in enumerate(leavers):
                c.close(rst=(i % 2 == 1))
            last = wt.HTTP1Conn(w.port, timeout=30)
            last.request("POST", "/upload")
            r = holder.read_response()
            self.assertEqual((r.status, r.body), (200, SUCCESS))
            r = last.read_response()
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.body), (200, SUCCESS))
            holder.close()
            last.close()
            self.assertGreaterEqual(elapsed, 2 * D - 0.1)
            self.assertLess(elapsed, 2 * D + 1.0, "the last client finished after %.2fs: clients that left while "
                            "queued still used the slot (expected about %.1fs)" % (elapsed, 2 * D))

    def test_disconnect_storm_then_clean_shutdown(self):
        # Clients leave in every state (queued, during the delay, mid-request, mid-handshake, over TLS and HTTP/2).
        # Afterwards every slot must be free again, and weir must exit 0 without a sanitizer report (leak, UAF).
        D = 0.3
        with Weir(make_config(slots=3, dmin=300, dmax=300, tls=True)) as w:
            port, tls_port = w.ports[0][2], w.ports[1][2]
            for i in range(25):
                conns = []
                for rst in (False, True):
                    c = wt.HTTP1Conn(port)
                    c.request("POST", "/upload")
                    conns.append((c, rst))
                c = wt.HTTP1Conn(port)
                c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Le")  # never finished
                conns.append((c, i % 2 == 0))
                h = wt.H2Client(port)
                sids = [h.request("POST", "/upload") for _ in range(3)]
                h.reset(sids[0])
                if i % 3 == 0:
                    c = wt.HTTP1Conn(tls_port, tls=True)
                    c.request("POST", "/upload")
                    conns.append((c, True))
                    ht = wt.H2Client(tls_port, tls=True)
                    ht.request("POST", "/upload")
                    ht.request("GET", "/calc?n=100000")
                    conns.append((ht, i % 2 == 0))
                time.sleep(0.02 * (i % 4))
                for c, rst in conns:
                    c.close(rst=rst)
                h.close(rst=(i % 2 == 1))
            # Wait for whatever is still queued to drain, then check that 3 uploads start together again.
            time.sleep(1.5)
            res = parallel_posts(w.port, 3)
            self.assertEqual([s for _, s, _ in res], [200] * 3)
            t = [x for _, _, x in res]
            self.assertLess(max(t) - min(t), D / 2, "the 3 slots are not all free after the storm: %s" % t)
            # and a normal request on each protocol still works
            self.assertEqual(wt.http1(port, "POST", "/upload").status, 200)
            self.assertEqual(curl("-k", "--http2", "-X", "POST", w.url("/upload", 1))[0], 200)
        # (the with-block's stop() checked exit code 0 and the absence of a sanitizer report)


if __name__ == "__main__":
    unittest.main()
