"""End-to-end tests of the metrics and health endpoints with configuration generations and the Redis gate: series
survive a reload and count on (no duplicate series, promtool still content), reloads are counted by result, /readyz
stays 200 for a request that the replaced generation serves during a reload (draining a generation is not shutting
down), and /readyz and the Redis series follow a Redis upload gate whose redis-server is killed and restarted."""

import json
import os
import signal
import subprocess
import unittest

from promtext import Scraper
from weirtest import Config, HTTP1Conn, RedisServer, Weir, WEIR_BIN, curl, require, temp_dir, wait_until

STATUS = (("/metrics", {"status.metrics": "ON"}), ("/readyz", {"status.ready": "ON"}))


def config(sock, n=10, slots=5):
    c = (Config(threads=2).listen().set("control-socket", sock).path("/calc", {"calc.n": n})
         .path("/cache", {"cache.backend": "memory"})
         .path("/upload", {"upload.concurrency": slots, "upload.delay-min": 5, "upload.delay-max": 5}))
    for path, keys in STATUS:
        c.path(path, keys)
    return c


def reload(w, text=None):
    """Rewrites weir's file (when text is given) and asks for a reload; returns (exit code, output)."""
    if text is not None:
        with open(w.config_path, "w") as f:
            f.write(str(text))
    proc = subprocess.run([WEIR_BIN, "-c", w.config_path, "-s", "reload"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    return proc.returncode, proc.stdout


def get_all(port, path, count):
    c = HTTP1Conn(port)
    for _ in range(count):
        c.request("GET", path)
        assert c.read_response().status == 200
    c.close()


class MetricsReloadTest(unittest.TestCase):
    def test_series_survive_reloads_which_are_counted(self):
        require("promtool")
        sock = os.path.join(temp_dir(), "control.sock")
        with Weir(config(sock)) as w:
            get_all(w.port, "/calc", 7)
            scraper = Scraper(w.port)
            before = scraper.scrape()
            scraper.close()
            self.assertEqual(before.value("weir_config_reloads_total", result="success"), 0)
            start = before.value("weir_config_last_reload_success_timestamp_seconds")

            rc, out = reload(w, config(sock, n=20, slots=7))
            self.assertEqual(rc, 0, out)
            get_all(w.port, "/calc", 3)
            scraper = Scraper(w.port)  # a connection of the new generation
            # the old generation goes once its connections have: then only the new gate is read
            self.assertTrue(wait_until(
                lambda: scraper.scrape().value("weir_upload_slots_capacity", path="/upload") == 7, 20),
                scraper.scrape().text)
            m = scraper.scrape()
            # one series per path, method, status and protocol over both generations, counting on
            self.assertEqual(m.value("weir_http_requests_total", path="/calc", method="GET", status=200,
                                     protocol="HTTP/1.1"), 10)
            self.assertEqual(m.value("weir_http_request_duration_seconds_count", path="/calc"), 10)
            self.assertEqual(m.value("weir_config_reloads_total", result="success"), 1)
            self.assertEqual(m.value("weir_config_reloads_total", result="failure"), 0)
            self.assertEqual(m.value("weir_config_last_reload_successful"), 1)
            self.assertGreaterEqual(m.value("weir_config_last_reload_success_timestamp_seconds"), start)
            self.assertEqual(m.value("weir_cache_max_bytes", path="/cache"), 64 * 1024 * 1024)
            proc = subprocess.run(["promtool", "check", "metrics"], input=m.text.encode(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=60)
            self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, b"", b""))

            with open(w.config_path, "a") as f:
                f.write("no-such-key: 1\n")
            w.signal(signal.SIGHUP)  # the server reads the file (weir -s reload would refuse it before asking)
            self.assertTrue(wait_until(lambda: "reload failed" in w.stderr(), 20), w.stderr())
            m = scraper.scrape()
            self.assertEqual(m.value("weir_config_reloads_total", result="failure"), 1)
            self.assertEqual(m.value("weir_config_reloads_total", result="success"), 1)
            self.assertEqual(m.value("weir_config_last_reload_successful"), 0)
            scraper.close()

    def test_ready_while_a_reload_drains_the_old_generation(self):
        sock = os.path.join(temp_dir(), "control.sock")
        with Weir(config(sock)) as w:
            probe = HTTP1Conn(w.port, timeout=30)
            probe.request("GET", "/readyz")
            self.assertEqual(probe.read_response().status, 200)
            # half a request on a connection of the first generation, held by weir while the reload happens
            probe.send(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            rc, out = reload(w, config(sock, n=20))
            self.assertEqual(rc, 0, out)
            probe.send(b"\r\n")
            r = probe.read_response()
            # served by the generation being drained: not ready would take a healthy process out of rotation
            self.assertEqual((r.status, json.loads(r.body)), (200, {"status": "ready", "checks": []}))
            self.assertEqual(dict(r.header_list).get("connection"), "close")
            probe.close()

    def test_ready_follows_a_redis_gate(self):
        with RedisServer() as redis:
            c = (Config(threads=2).listen()
                 .path("/upload", {"upload.gate": "redis", "upload.redis.url": redis.url, "upload.concurrency": 2,
                                   "upload.delay-min": 10, "upload.delay-max": 10, "upload.redis.timeout": 300}))
            for path, keys in STATUS:
                c.path(path, keys)
            with Weir(c) as w:
                name = "upload gate /upload: redis at 127.0.0.1:%d" % redis.port

                def ready():
                    status, _, body = curl(w.url("/readyz"))
                    return status, json.loads(body)

                up = (200, {"status": "ready", "checks": [{"name": name, "up": True, "threads_up": 2, "threads": 2}]})
                self.assertTrue(wait_until(lambda: ready() == up, 10), ready())
                status, _, _ = curl("-X", "POST", w.url("/upload"))
                self.assertEqual(status, 200)
                scraper = Scraper(w.port)
                m = scraper.scrape()
                # per thread, the gate's command connection and its grant channel's subscriber
                self.assertEqual(m.value("weir_redis_connections_up", use="upload gate", path="/upload"), 4)
                self.assertEqual(m.value("weir_upload_slots_capacity", path="/upload"), 2)
                self.assertEqual(m.value("weir_upload_wait_seconds_count", path="/upload"), 1)

                redis.kill()
                self.assertTrue(wait_until(lambda: ready()[0] == 503, 15), ready())
                self.assertTrue(wait_until(lambda: ready()[1]["checks"][0]["threads_up"] == 0, 15), ready())
                self.assertEqual(ready()[1]["status"], "unavailable")
                m = scraper.scrape()
                self.assertEqual(m.value("weir_redis_connections_up", use="upload gate", path="/upload"), 0)
                self.assertGreaterEqual(m.value("weir_redis_connection_failures_total", use="upload gate",
                                                path="/upload"), 2)

                redis.start()
                self.assertTrue(wait_until(lambda: ready() == up, 30), ready())
                self.assertGreaterEqual(scraper.scrape().value("weir_redis_reconnects_total", use="upload gate",
                                                               path="/upload"), 2)
                scraper.close()


if __name__ == "__main__":
    unittest.main()
