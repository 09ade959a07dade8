"""End-to-end tests of status.live and status.ready: JSON answers with Content-Length for probes; /readyz follows a
real redis-server that is killed and restarted (503 while no connection of some thread is up, 200 again once all
are), and answers 503 {"status": "draining"} once SIGTERM has started the drain, while an upload is still in flight."""

import json
import signal
import socket
import time
import unittest

from promtext import Scraper
from weirtest import Config, H2Client, HTTP1Conn, RedisServer, Weir, curl, wait_until


def status_paths(config):
    return (config.path("/livez", {"status.live": "ON"}).path("/readyz", {"status.ready": "ON"})
            .path("/metrics", {"status.metrics": "ON"}))


def get(conn, path, method="GET"):
    conn.request(method, path)
    r = conn.read_response(head=(method == "HEAD"))
    headers = dict(r.header_list)
    if method != "HEAD":
        assert headers["content-type"] == "application/json", headers
        assert int(headers["content-length"]) == len(r.body), headers
    return r.status, (json.loads(r.body) if r.body else None), headers


class HealthTest(unittest.TestCase):
    def test_live_and_ready_without_dependencies(self):
        with Weir(status_paths(Config(threads=2).listen().path("/calc", {"calc.n": 10}))) as w:
            c = HTTP1Conn(w.port)
            self.assertEqual(get(c, "/livez")[:2], (200, {"status": "ok"}))
            self.assertEqual(get(c, "/readyz")[:2], (200, {"status": "ready", "checks": []}))
            status, body, headers = get(c, "/readyz", "HEAD")
            self.assertEqual((status, body, headers["cache-control"]), (200, None, "no-store"))
            self.assertGreater(int(headers["content-length"]), 0)
            status, body, headers = get(c, "/livez", "POST")
            self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"))
            self.assertEqual(get(c, "/livez/x")[:2], (404, {"error": "not found"}))
            c.close()
            h = H2Client(w.port)
            st = h.response(h.request("GET", "/readyz"))
            self.assertEqual((st.status, json.loads(st.body)), (200, {"status": "ready", "checks": []}))
            h.close()

    def test_ready_follows_redis(self):
        with RedisServer() as redis:
            config = status_paths(Config(threads=2).listen().path("/cache", {
                "cache.backend": "redis", "cache.redis.url": redis.url, "cache.redis.pool": 2,
                "cache.redis.timeout": 500}))
            with Weir(config) as w:
                c = HTTP1Conn(w.port, timeout=30)
                name = "cache /cache: redis at 127.0.0.1:%d" % redis.port
                up = {"name": name, "up": True, "threads_up": 2, "threads": 2}
                self.assertTrue(wait_until(lambda: get(c, "/readyz")[0] == 200, 10))
                self.assertEqual(get(c, "/readyz")[:2], (200, {"status": "ready", "checks": [up]}))
                scraper = Scraper(w.port)
                self.assertEqual(scraper.scrape().value("weir_redis_connections_up", use="cache", path="/cache"), 4)

                redis.kill()
                self.assertTrue(wait_until(lambda: get(c, "/readyz")[0] == 503, 10), get(c, "/readyz"))
                # both threads lost theirs; the process still answers
                self.assertTrue(wait_until(lambda: get(c, "/readyz")[1]["checks"][0]["threads_up"] == 0, 10))
                self.assertEqual(get(c, "/readyz")[:2], (503, {"status": "unavailable", "checks": [
                    {"name": name, "up": False, "threads_up": 0, "threads": 2}]}))
                self.assertEqual(get(c, "/livez")[:2], (200, {"status": "ok"}))
                status, _, _ = curl(w.url("/cache?key=a"))
                self.assertEqual(status, 503)
                m = scraper.scrape()
                self.assertEqual(m.value("weir_redis_connections_up", use="cache", path="/cache"), 0)
                self.assertGreaterEqual(m.value("weir_redis_connection_failures_total", use="cache", path="/cache"), 4)
                self.assertGreaterEqual(m.value("weir_redis_command_errors_total", use="cache", path="/cache"), 1)
                self.assertEqual(m.value("weir_cache_errors_total", path="/cache", backend="redis"), 1)

                redis.start()
                # reconnection backs off up to 5 s
                self.assertTrue(wait_until(lambda: get(c, "/readyz")[0] == 200, 30), get(c, "/readyz"))
                self.assertEqual(get(c, "/readyz")[:2], (200, {"status": "ready", "checks": [up]}))
                self.assertTrue(wait_until(lambda: scraper.scrape().value(
                    "weir_redis_connections_up", use="cache", path="/cache") == 4, 30))
                self.assertEqual(scraper.scrape().value("weir_redis_reconnects_total", use="cache", path="/cache"), 4)
                status, _, _ = curl(w.url("/cache?key=a"))
                self.assertEqual(status, 200)
                scraper.close()
                c.close()

    def test_ready_is_503_while_draining(self):
        config = status_paths(Config(threads=1).listen().set("graceful-shutdown-timeout", 30).path(
            "/upload", {"upload.concurrency": 2, "upload.delay-min": 3000, "upload.delay-max": 3000}))
        with Weir(config) as w:
            probe = HTTP1Conn(w.port, timeout=30)
            self.assertEqual(get(probe, "/readyz")[:2], (200, {"status": "ready", "checks": []}))
            upload = HTTP1Conn(w.port, timeout=30)
            upload.request("POST", "/upload")
            # The probe's next request: its head is held back by weir (incomplete) while SIGTERM starts the drain,
            # so the connection is neither idle nor answered before weir has begun to drain.
            probe.send(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            scraper = Scraper(w.port)
            self.assertTrue(wait_until(lambda: scraper.scrape().value("weir_http_requests_in_flight", path="/upload") == 1,
                                       10))
            scraper.close()
            w.signal(signal.SIGTERM)

            # the drain has begun once the listener is closed: new connections are refused. A connection whose handshake
            # the kernel completed as the listener closed is reset instead (weir never accepted it): look again.
            def refused():
                try:
                    socket.create_connection(("127.0.0.1", w.port), timeout=1).close()
                    return False
                except ConnectionResetError:
                    return False
                except ConnectionRefusedError:
                    return True

            self.assertTrue(wait_until(refused, 10))
            probe.send(b"\r\n")
            r = probe.read_response()
            self.assertEqual((r.status, json.loads(r.body)), (503, {"status": "draining"}))
            self.assertEqual(dict(r.header_list).get("connection"), "close")
            # the upload in flight still completes, then weir exits
            r = upload.read_response()
            self.assertEqual((r.status, r.body), (200, b'{"success": true}'))
            probe.close()
            upload.close()
            w.proc.wait(20)


if __name__ == "__main__":
    unittest.main()
