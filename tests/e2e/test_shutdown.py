"""End-to-end tests of weir's shutdown: SIGTERM and SIGINT finish the requests in flight (and queued) and exit 0 soon
after; idle HTTP/1 and HTTP/2 connections do not hold up the exit; the listeners close at once; the grace period
bounds the whole drain; SIGHUP is ignored."""

import signal
import socket
import time
import unittest

import weirtest as wt
from weirtest import Weir

SUCCESS = b'{"success": true}'


def make_config(slots=10, dmin=1000, dmax=1000, grace=20, tls=False, settings=()):
    """settings: more top-level (key, value) pairs."""
    config = wt.Config(threads=2).listen()
    if tls:
        config.listen_tls()
    config.set("graceful-shutdown-timeout", grace)
    for key, value in settings:
        config.set(key, value)
    return (config.path("/upload", {"upload.concurrency": slots, "upload.delay-min": dmin, "upload.delay-max": dmax})
            .path("/calc", {"calc.n": 10}))


class ShutdownTest(unittest.TestCase):
    def wait_exit(self, w, timeout):
        """Waits for weir to exit by itself; returns the seconds it took."""
        t = time.monotonic()
        try:
            w.proc.wait(timeout)
        except Exception:
            w.kill()
            raise AssertionError("weir did not exit within %ss:\n%s" % (timeout, w.stderr()))
        return time.monotonic() - t

    def drain_with_uploads_in_flight(self, sig, n_http1, n_h2, delay):
        """Starts uploads (HTTP/1 connections and streams on one HTTP/2 connection), sends sig while they wait, and
        checks that every one completes with 200 and that weir then exits 0 promptly."""
        with Weir(make_config(slots=n_http1 + n_h2, dmin=int(delay * 1000), dmax=int(delay * 1000))) as w:
            t0 = time.monotonic()
            conns = []
            for _ in range(n_http1):
                c = wt.HTTP1Conn(w.port, timeout=30)
                c.request("POST", "/upload")
                conns.append(c)
            h = wt.H2Client(w.port, timeout=30)
            sids = [h.request("POST", "/upload") for _ in range(n_h2)]
            time.sleep(0.3)
            w.signal(sig)
            t_sig = time.monotonic()
            for c in conns:
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, SUCCESS))
                self.assertGreaterEqual(time.monotonic() - t0, delay - 0.05, "answered before its delay")
                # keep-alive is off once draining: the server closes the connection after the answer
                self.assertTrue(c.is_closed_by_peer(5), "HTTP/1 connection left open during the drain")
                c.close()
            for sid in sids:
                st = h.response(sid, timeout=30)
                self.assertEqual((st.status, st.body, st.reset_code), (200, SUCCESS, None))
            self.assertIsNotNone(h.goaway, "no GOAWAY on the HTTP/2 connection")
            self.assertTrue(h.wait_closed(5), "the HTTP/2 connection was not closed after its streams")
            h.close()
            took = self.wait_exit(w, 15)
            total = time.monotonic() - t_sig
            # exit soon after the last answer (the grace period is 20 s)
            self.assertLess(total, delay + 4.0, "weir took %.1fs to exit after the signal" % total)
            self.assertLess(took, 4.0)
            name = "SIGTERM" if sig == signal.SIGTERM else "SIGINT"
            self.assertIn(name, w.stderr())
        # the with-block's stop() checked exit code 0 and that no sanitizer report was printed
        self.assertEqual(w.proc.returncode, 0)

    def test_sigterm_completes_uploads_in_flight(self):
        self.drain_with_uploads_in_flight(signal.SIGTERM, 5, 5, 1.0)

    def test_sigint_completes_uploads_in_flight(self):
        self.drain_with_uploads_in_flight(signal.SIGINT, 3, 3, 0.8)

    def test_sigterm_completes_queued_uploads(self):
        # 2 slots, 6 uploads of 0.3 s: four are still queued when SIGTERM arrives; all six complete.
        with Weir(make_config(slots=2, dmin=300, dmax=300)) as w:
            conns = []
            for _ in range(6):
                c = wt.HTTP1Conn(w.port, timeout=30)
                c.request("POST", "/upload")
                conns.append(c)
            time.sleep(0.1)
            w.signal(signal.SIGTERM)
            t_sig = time.monotonic()
            for c in conns:
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, SUCCESS))
                c.close()
            self.assertGreaterEqual(time.monotonic() - t_sig, 0.7)  # three waves of 0.3 s, the first begun
            self.wait_exit(w, 10)

    def test_idle_connections_do_not_delay_exit(self):
        settings = [("http1-request-timeout", 60), ("http2-idle-timeout", 60)]
        with Weir(make_config(dmin=10, dmax=10, grace=60, tls=True, settings=settings)) as w:
            port, tls_port = w.ports[0][2], w.ports[1][2]
            h1 = []
            for i in range(5):
                c = wt.HTTP1Conn(port, timeout=30)
                c.request("GET", "/calc?n=3")
                self.assertEqual(c.read_response().status, 200)
                h1.append(c)
            c = wt.HTTP1Conn(tls_port, tls=True, timeout=30)
            c.request("POST", "/upload")
            self.assertEqual(c.read_response().status, 200)
            h1.append(c)
            # connections that never send a request (as ab opens spares)
            silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
            h2 = []
            for p, tls in ((port, False), (port, False), (tls_port, True)):
                h = wt.H2Client(p, tls=tls, timeout=30)
                self.assertEqual(h.response(h.request("GET", "/calc?n=3")).body, b'{"result": 5}')
                h2.append(h)
            time.sleep(0.2)
            w.signal(signal.SIGTERM)
            took = self.wait_exit(w, 10)
            self.assertLess(took, 4.0, "idle connections held weir for %.1fs (grace period 60 s)" % took)
            self.assertNotIn("grace period;", w.stderr())
            for c in h1:
                self.assertTrue(c.is_closed_by_peer(1))
                c.close()
            for s in silent:
                # weir never saw them (the kernel defers the accept until a client speaks): once weir is gone, a
                # request on one is refused (reset) or finds the connection closed, it does not hang.
                s.settimeout(2)
                try:
                    s.sendall(b"GET /calc HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertEqual(s.recv(1), b"")
                except (ConnectionResetError, BrokenPipeError):
                    pass
                s.close()
            for h in h2:
                self.assertIsNotNone(h.goaway or (h.wait_goaway(1) and h.goaway), "no GOAWAY")
                self.assertTrue(h.wait_closed(1))
                h.close()

    def test_idle_server_exits_at_once(self):
        with Weir(make_config()) as w:
            self.assertEqual(wt.http1(w.port, "GET", "/calc").status, 200)
            w.signal(signal.SIGTERM)
            self.assertLess(self.wait_exit(w, 10), 2.0)

    def test_new_connections_refused_after_sigterm(self):
        with Weir(make_config(slots=2, dmin=1500, dmax=1500)) as w:
            busy = wt.HTTP1Conn(w.port, timeout=30)
            busy.request("POST", "/upload")
            time.sleep(0.2)
            w.signal(signal.SIGTERM)
            t_sig = time.monotonic()
            refused_at = None
            while time.monotonic() - t_sig < 1.0:
                try:
                    s = socket.create_connection(("127.0.0.1", w.port), timeout=2)
                except (ConnectionRefusedError, ConnectionResetError):
                    # Refused once the listeners are closed; reset when the SYN reached a listener as it closed (the
                    # kernel resets what is left in a closing listener's queue).
                    refused_at = time.monotonic() - t_sig
                    break
                # accepted just before the listener closed: it may be served or closed, but must not hang
                try:
                    s.sendall(b"GET /calc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    s.recv(65536)
                except OSError:
                    pass
                s.close()
                time.sleep(0.01)
            self.assertIsNone(w.proc.poll(), "weir exited before the upload in flight was answered")
            self.assertIsNotNone(refused_at, "connections were still accepted 1 s after SIGTERM")
            # the upload in flight is still answered
            r = busy.read_response()
            self.assertEqual((r.status, r.body), (200, SUCCESS))
            busy.close()
            self.wait_exit(w, 10)

    def test_grace_period_bounds_exit(self):
        # An upload of 5 s in flight, a grace period of 1 s: weir gives up on it and exits 0 after about 1 s, with a
        # warning; the client gets no success.
        with Weir(make_config(slots=5, dmin=5000, dmax=5000, grace=1)) as w:
            c = wt.HTTP1Conn(w.port, timeout=30)
            c.request("POST", "/upload")
            h = wt.H2Client(w.port, timeout=30)
            sid = h.request("POST", "/upload")
            time.sleep(0.3)
            w.signal(signal.SIGTERM)
            took = self.wait_exit(w, 15)
            self.assertGreaterEqual(took, 0.8, "weir did not wait for the upload in flight")
            self.assertLess(took, 3.5, "weir took %.1fs to exit with a grace period of 1 s" % took)
            self.assertRegex(w.stderr(), r"\[warn\].*grace period")
            try:
                r = c.read_response()
                self.assertNotEqual(r.status, 200)
            except (ConnectionError, OSError):
                pass
            c.close()
            h.wait(lambda: h.finished(sid), 2)
            self.assertFalse(h.streams[sid].done and h.streams[sid].body == SUCCESS)
            h.close()
        self.assertEqual(w.proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
