"""HTTP/1 clients that leave while their request is handled. h2o 2.2.5 reads nothing from an HTTP/1 connection while it
handles its request, so it only noticed a client that had gone when it wrote the answer: a queued /calc sum of a
client that had left was still computed, an upload kept its place until its turn, and the descriptor stayed open
until then (found by the abuse suite's cancellation scenario: 9,558 descriptors still open after 100,000 abandoned
requests). weir's once-a-second sweep now closes such connections through h2o, which disposes of their requests."""

import socket
import time
import unittest

import weirtest as wt
from weirtest import Config, Weir


def send_and_leave(port, request, n, rst=False):
    """n connections that each send the request and close at once (with a reset when rst)."""
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        if rst:
            wt.set_linger_rst(s)
        s.close()


def calc_time(w, n):
    t = time.monotonic()
    status, _, _ = wt.curl("--max-time", "120", w.url("/calc?n=%d" % n))
    assert status == 200
    return time.monotonic() - t


class TestAbandonedHttp1(unittest.TestCase):
    def test_queued_sums_of_clients_that_left_do_not_run(self):
        config = Config().listen().path("/calc", {"calc.threads": 1, "calc.max-n": 4000000000})
        with Weir(config) as w:
            # a big sum of about 0.7 s on this machine now (measured, not assumed)
            n = 100000000
            n = min(4000000000, int(n * 0.7 / max(calc_time(w, n), 0.001)))
            one = calc_time(w, n)
            # 10 big sums from clients that leave at once, half with a reset: queued behind each other on one thread
            req = b"GET /calc?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % n
            send_and_leave(w.port, req, 5)
            send_and_leave(w.port, req, 5, rst=True)
            t = time.monotonic()
            status, _, body = wt.curl_json("--max-time", "120", w.url("/calc?n=10"))
            waited = time.monotonic() - t
            self.assertEqual((status, body), (200, {"result": 285}))
            # at most the sum already running and the sweep's second; the 10 sums would take 10 x one
            self.assertLess(waited, 2 * one + 1.5, "the small sum waited %.2f s; one big sum takes %.2f s" % (waited, one))

    def test_descriptors_of_clients_that_left_are_closed(self):
        config = (Config().listen().path("/calc", {"calc.threads": 1, "calc.max-n": 4000000000})
                  .path("/upload", {"upload.concurrency": 1, "upload.delay-min": 5000, "upload.delay-max": 5000}))
        with Weir(config) as w:
            wt.curl(w.url("/calc?n=10"))
            base = w.fd_count()
            holder = socket.create_connection(("127.0.0.1", w.port), timeout=20)  # holds the only upload slot for 5 s
            holder.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            send_and_leave(w.port, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 30)
            send_and_leave(w.port, b"GET /calc?n=4000000000 HTTP/1.1\r\nHost: a\r\n\r\n", 30, rst=True)
            # the holder's connection stays; the 60 others are closed within the sweep's second (not after 5 s, nor
            # after 30 sums of 4 x 10^9)
            self.assertTrue(wt.wait_until(lambda: w.fd_count() <= base + 1, 4), "%d descriptors open, %d before"
                            % (w.fd_count(), base))
            holder.settimeout(20)
            self.assertIn(b"200 OK", holder.recv(4096))
            holder.close()
            # every slot and place is free: an upload is granted at once
            t = time.monotonic()
            self.assertEqual(wt.curl("--max-time", "30", "-X", "POST", w.url("/upload"))[0], 200)
            self.assertLess(time.monotonic() - t, 5 + 4)

    def test_clients_that_wait_are_answered(self):
        # a client that sends its request and waits, and one that pipelines two, are not taken for gone
        config = Config().listen().path("/calc", {"calc.threads": 1, "calc.max-n": 4000000000})
        with Weir(config) as w:
            n = 200000000
            one = calc_time(w, n)
            reps = max(2, int(2.5 / max(one, 0.05)) + 1)  # long enough for the sweep to look at it
            c = wt.HTTP1Conn(w.port, timeout=120)
            c.send(b"GET /calc?n=%d HTTP/1.1\r\nHost: a\r\n\r\nGET /calc?n=10 HTTP/1.1\r\nHost: a\r\n\r\n" % min(n * reps, 4000000000))
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.read_response().json(), {"result": 285})
            c.close()


if __name__ == "__main__":
    unittest.main()
