"""End-to-end tests of GET /calc: exact sums (past 64 bits), query parsing and its errors, methods, protocols, clients
that leave mid-calculation, and that the worker loops keep serving /upload while /calc keeps the CPUs busy."""

import subprocess
import time
import unittest

import weirtest as wt
from weirtest import Weir, curl, curl_json

MAX_N = 10000000


def make_config(n=None, max_n=MAX_N, tls=False, slots=5, dmin=100, dmax=200):
    calc = {"calc.n": n} if n is not None else {}
    calc["calc.max-n"] = max_n
    config = wt.Config(threads=2).listen()
    if tls:
        config.listen_tls()
    return (config.path("/calc", calc)
            .path("/upload", {"upload.concurrency": slots, "upload.delay-min": dmin, "upload.delay-max": dmax}))


def sum_squares(n):
    """sum(i*i for i in range(n)), by the closed form (checked against the loop in test_reference_formula)."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


def body_for(n):
    return b'{"result": %d}' % sum_squares(n)


# The smallest n whose sum no longer fits in 64 bits.
N_PAST_64_BITS = 3810779


class CalcTest(unittest.TestCase):
    def test_reference_formula(self):
        # The reference itself: the closed form agrees with the loop, and N_PAST_64_BITS is the 64-bit boundary.
        for n in list(range(0, 60)) + [1000, 12345]:
            self.assertEqual(sum_squares(n), sum(i * i for i in range(n)))
        self.assertLess(sum_squares(N_PAST_64_BITS - 1), 2 ** 64)
        self.assertGreaterEqual(sum_squares(N_PAST_64_BITS), 2 ** 64)

    def test_default_n(self):
        expected = sum(i * i for i in range(10 ** 6))  # computed the slow way on purpose
        with Weir(make_config()) as w:
            r = wt.http1(w.port, "GET", "/calc")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b'{"result": %d}' % expected)
            self.assertEqual(r.json(), {"result": expected})
            self.assertEqual(r.headers["content-type"], "application/json")
            self.assertEqual(int(r.headers["content-length"]), len(r.body))
            self.assertFalse(r.chunked)
        # a configured default
        with Weir(make_config(n=12345)) as w:
            self.assertEqual(wt.http1(w.port, "GET", "/calc").body, body_for(12345))
            # an empty query string, or other parameters only, also mean the default
            self.assertEqual(wt.http1(w.port, "GET", "/calc?").body, body_for(12345))
            self.assertEqual(wt.http1(w.port, "GET", "/calc?x=7").body, body_for(12345))

    def test_exact_results(self):
        ns = [0, 1, 2, 3, 10, 1000, 999999, 3800000, N_PAST_64_BITS - 1, N_PAST_64_BITS, 5000000, MAX_N]
        with Weir(make_config()) as w:
            c = wt.HTTP1Conn(w.port, timeout=60)
            for n in ns:
                c.request("GET", "/calc?n=%d" % n)
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, body_for(n)), "n=%d" % n)
                self.assertEqual(int(r.headers["content-length"]), len(r.body))
            c.close()
            # leading zeros are still a decimal integer
            self.assertEqual(wt.http1(w.port, "GET", "/calc?n=0007").body, body_for(7))

    def test_many_concurrent_calcs_get_their_own_result(self):
        # 30 streams with different n on one HTTP/2 connection, plus HTTP/1 connections: each answer matches its n.
        ns = [(k * 7919) % 2000000 for k in range(30)]
        with Weir(make_config()) as w:
            h = wt.H2Client(w.port)
            sids = {h.request("GET", "/calc?n=%d" % n): n for n in ns}
            for sid, n in sids.items():
                st = h.response(sid, timeout=60)
                self.assertEqual((st.status, st.body), (200, body_for(n)), "n=%d" % n)
            h.close()
            proc = wt.h2load("-n", "60", "-c", "4", "-m", "8", w.url("/calc?n=300000"), timeout=120)
            self.assertRegex(proc.stdout, r"status codes: 60 2xx")

    def test_bad_n(self):
        bad = ["abc", "-1", "1.5", "", "%zz", "%", "%4", "%31%", "+5", "%2B5", "5%20", "%205", "0x10", "1e3", "1,2",
               str(MAX_N + 1), "4294967297", "18446744073709551615", "18446744073709551616",
               "99999999999999999999999", "%00", "5%00"]
        with Weir(make_config()) as w:
            c = wt.HTTP1Conn(w.port)
            for value in bad:
                c.request("GET", "/calc?n=%s" % value)
                r = c.read_response()
                self.assertEqual(r.status, 400, "n=%r answered %d %r" % (value, r.status, r.body))
                self.assertEqual(r.headers["content-type"], "application/json")
                self.assertEqual(int(r.headers["content-length"]), len(r.body))
                body = r.json()
                self.assertIsInstance(body.get("error"), str, r.body)
                self.assertNotIn("result", body)
            c.close()
            # over HTTP/2 as well
            status, headers, body = curl_json("--http2-prior-knowledge", w.url("/calc?n=abc"))
            self.assertEqual((status, headers["_version"]), (400, "2"))
            self.assertIn("error", body)
            # the error names the allowed range
            r = wt.http1(w.port, "GET", "/calc?n=%d" % (MAX_N + 1))
            self.assertIn(str(MAX_N), r.json()["error"])

    def test_percent_encoded_n(self):
        with Weir(make_config()) as w:
            for query, n in (("n=%31%30", 10), ("n=%35", 5), ("n=1%30%30", 100), ("%6E=4", 4), ("a=1&n=4", 4),
                             ("n=6&a=1", 6), ("a=%zz&n=3", None)):
                r = wt.http1(w.port, "GET", "/calc?" + query)
                if n is None:
                    # a malformed escape in another parameter: either ignored or 400, never a wrong result
                    self.assertIn(r.status, (200, 400), query)
                    if r.status == 200:
                        self.assertEqual(r.body, body_for(3), query)
                    continue
                self.assertEqual((r.status, r.body), (200, body_for(n)), query)

    def test_head(self):
        with Weir(make_config()) as w:
            get = wt.http1(w.port, "GET", "/calc?n=123")
            head = wt.http1(w.port, "HEAD", "/calc?n=123")
            self.assertEqual(head.status, 200)
            self.assertEqual(head.body, b"")
            self.assertEqual(head.headers["content-length"], str(len(get.body)))
            self.assertEqual(head.headers["content-type"], "application/json")
            # keep-alive still works after a HEAD (no stray body bytes on the connection)
            c = wt.HTTP1Conn(w.port)
            c.request("HEAD", "/calc?n=5")
            self.assertEqual(c.read_response(head=True).status, 200)
            c.request("GET", "/calc?n=5")
            self.assertEqual(c.read_response().body, body_for(5))
            c.close()
            status, headers, out = curl("--http2-prior-knowledge", "-I", w.url("/calc?n=123"))
            self.assertEqual((status, headers["_version"]), (200, "2"))
            self.assertEqual(headers["content-length"], str(len(get.body)))
            self.assertNotIn(b"result", out)  # curl -I prints only the headers: no body was sent

    def test_post_is_405(self):
        with Weir(make_config()) as w:
            for method in ("POST", "PUT", "DELETE"):
                r = wt.http1(w.port, method, "/calc?n=5", body=b"x")
                self.assertEqual(r.status, 405, method)
                self.assertEqual(r.headers.get("allow"), "GET, HEAD")
                self.assertIn("error", r.json())
            status, headers, body = curl_json("--http2-prior-knowledge", "-X", "POST", w.url("/calc"))
            self.assertEqual((status, headers.get("allow")), (405, "GET, HEAD"))
            self.assertIn("error", body)

    def test_subpath_is_404(self):
        with Weir(make_config()) as w:
            for path in ("/calc/x", "/calcx", "/calc/x?n=3"):
                r = wt.http1(w.port, "GET", path)
                self.assertEqual(r.status, 404, path)
                self.assertIn("error", r.json())

    def test_h2c_and_tls(self):
        n = 5000000
        with Weir(make_config(tls=True)) as w:
            status, headers, body = curl("--http2-prior-knowledge", w.url("/calc?n=%d" % n))
            self.assertEqual((status, headers["_version"], body), (200, "2", body_for(n)))
            status, headers, body = curl("--http2", "-k", w.url("/calc?n=%d" % n, 1))
            self.assertEqual((status, headers["_version"], body), (200, "2", body_for(n)))
            status, headers, body = curl("--http1.1", "-k", w.url("/calc?n=%31%30", 1))
            self.assertEqual((status, headers["_version"], body), (200, "1.1", body_for(10)))
            self.assertEqual(headers["content-length"], str(len(body)))
            status, headers, body = curl("--http2", "-k", w.url("/calc?n=-3", 1))
            self.assertEqual(status, 400)
            # our own h2 client over TLS, several streams at once
            h = wt.H2Client(w.ports[1][2], tls=True)
            sids = {h.request("GET", "/calc?n=%d" % k): k for k in (0, 1, 77, 4000000)}
            for sid, k in sids.items():
                self.assertEqual(h.response(sid, timeout=60).body, body_for(k))
            h.close()

    def test_clients_leaving_mid_calculation(self):
        # Requests whose client is gone before the sum is ready (queued or running on the thread pool): no crash, no
        # leak, no use-after-free (weir runs under ASan in CI), and the server keeps answering correctly.
        with Weir(make_config(max_n=200000000)) as w:
            for i in range(6):
                h = wt.H2Client(w.port)
                sids = [h.request("GET", "/calc?n=%d" % (30000000 + k)) for k in range(6)]
                h.reset(sids[0])
                h.reset(sids[1])
                h.wait(lambda: False, 0.02)
                h.close(rst=(i % 2 == 0))
                c = wt.HTTP1Conn(w.port)
                c.request("GET", "/calc?n=40000000")
                c.close(rst=(i % 2 == 1))
            self.assertEqual(wt.http1(w.port, "GET", "/calc?n=77", timeout=60).body, body_for(77))
        # stop() (end of the with block) checked exit 0 and no sanitizer report

    def test_upload_responsive_while_calc_is_hammered(self):
        # /calc runs on the thread pool: while h2load keeps it busy with many long sums, /upload must still answer
        # in about its delay (100-200 ms). If a sum ran on a worker loop, every request on that loop would wait for
        # it, and the loads below keep both loops busy for seconds.
        wt.require("h2load")
        with Weir(make_config(max_n=4294967296, slots=5, dmin=100, dmax=200)) as w:
            # Size the sums for this build (ASan builds are slower): about 0.5 s of CPU each, so that 16 of them keep
            # both cores busy for about 4 s.
            t0 = time.monotonic()
            self.assertEqual(wt.http1(w.port, "GET", "/calc?n=200000000", timeout=120).body, body_for(200000000))
            per_unit = max(time.monotonic() - t0, 0.01) / 200000000
            n = min(int(0.5 / per_unit), 4294967296)
            count = 16
            load = subprocess.Popen(["h2load", "-n", str(count), "-c", "8", "-m", "2", w.url("/calc?n=%d" % n)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                time.sleep(0.3)  # let the sums start
                times = []
                for _ in range(4):
                    t = time.monotonic()
                    r = wt.http1(w.port, "POST", "/upload", timeout=60)
                    times.append(time.monotonic() - t)
                    self.assertEqual(r.status, 200)
                    # and a small sum is not stuck behind the big ones on the loop (it may queue on the pool)
                self.assertIsNone(load.poll(), "the /calc load ended before the uploads were checked: n=%d too small" % n)
                for t in times:
                    self.assertLess(t, 2.0, "uploads took %s s while /calc was loaded (n=%d): a worker loop is blocked"
                                    % (["%.2f" % x for x in times], n))
                out, _ = load.communicate(timeout=300)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait()
            self.assertRegex(out, r"status codes: %d 2xx" % count, out)


if __name__ == "__main__":
    unittest.main()
