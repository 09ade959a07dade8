"""End-to-end tests of status.metrics: after known traffic every family is there with the exact counts (requests by
path, method, status and protocol; durations; in flight; connections by protocol; /upload slots and waits; /calc
jobs and sum times; /cache operations and the memory store; Redis; build and process); states while requests wait;
`promtool check metrics` finds nothing; the endpoint's HTTP details; configuration errors."""

import json
import re
import socket
import subprocess
import time
import unittest

import weirtest as wt
from promtext import Metrics, Scraper
from weirtest import Config, H2Client, HTTP1Conn, RedisServer, Weir, curl, raw_request, require, wait_until

# Every family weir shows with the default configuration's modules and a Redis cache, and its type.
FAMILIES = {
    "weir_build_info": "gauge",
    "weir_response_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "weir_config_reloads_total": "counter",
    "weir_config_last_reload_success_timestamp_seconds": "gauge",
    "weir_config_last_reload_successful": "gauge",
    "weir_http_requests_total": "counter",
    "weir_http_request_duration_seconds": "histogram",
    "weir_http_requests_in_flight": "gauge",
    "weir_connections_open": "gauge",
    "weir_connections_accepted_total": "counter",
    "weir_upload_slots_in_use": "gauge",
    "weir_upload_slots_capacity": "gauge",
    "weir_upload_queue_length": "gauge",
    "weir_upload_wait_seconds": "histogram",
    "weir_calc_jobs_queued": "gauge",
    "weir_calc_sum_duration_seconds": "histogram",
    "weir_cache_hits_total": "counter",
    "weir_cache_misses_total": "counter",
    "weir_cache_sets_total": "counter",
    "weir_cache_deletes_total": "counter",
    "weir_cache_errors_total": "counter",
    "weir_cache_items": "gauge",
    "weir_cache_bytes": "gauge",
    "weir_cache_max_bytes": "gauge",
    "weir_cache_evictions_total": "counter",
    "weir_cache_expirations_total": "counter",
    "weir_redis_connections_up": "gauge",
    "weir_redis_reconnects_total": "counter",
    "weir_redis_connection_failures_total": "counter",
    "weir_redis_command_timeouts_total": "counter",
    "weir_redis_command_errors_total": "counter",
}

STATUS_PATHS = (("/metrics", {"status.metrics": "ON"}), ("/livez", {"status.live": "ON"}),
                ("/readyz", {"status.ready": "ON"}))


def config(threads=2, upload=(2, 50, 50), calc=None, redis=None, tls=False):
    c = Config(threads=threads).listen()
    if tls:
        c.listen_tls()
    conc, dmin, dmax = upload
    c.path("/upload", {"upload.concurrency": conc, "upload.delay-min": dmin, "upload.delay-max": dmax})
    c.path("/calc", calc or {"calc.n": 100})
    c.path("/cache", {"cache.backend": "memory"})
    if redis is not None:
        c.path("/rcache", {"cache.backend": "redis", "cache.redis.url": redis.url, "cache.redis.pool": 1})
    for path, keys in STATUS_PATHS:
        c.path(path, keys)
    return c


def request(conn, method, path, body=None):
    conn.request(method, path, body=body)
    return conn.read_response(head=(method == "HEAD"))


class MetricsTest(unittest.TestCase):
    def test_known_traffic_counted_exactly(self):
        with Weir(config()) as w:
            scraper = Scraper(w.port)
            c = HTTP1Conn(w.port)
            for _ in range(7):
                self.assertEqual(request(c, "GET", "/calc").status, 200)
            for _ in range(3):
                self.assertEqual(request(c, "GET", "/calc?n=x").status, 400)
            self.assertEqual(request(c, "POST", "/calc").status, 405)
            self.assertEqual(request(c, "GET", "/nope").status, 404)
            c.close()
            h = H2Client(w.port)
            for key in ("a", "b"):
                self.assertEqual(h.response(h.request("PUT", "/cache?key=" + key, body=b"value-" + key.encode())).status,
                                 200)
            for key in ("a", "a", "a", "zz", "zz"):
                self.assertEqual(h.response(h.request("GET", "/cache?key=" + key)).status, 200)
            self.assertEqual(h.response(h.request("DELETE", "/cache?key=a")).status, 200)
            sids = [h.request("POST", "/upload") for _ in range(4)]
            for sid in sids:
                self.assertEqual(h.response(sid, timeout=30).status, 200)
            h.close()
            self.assertIn(b" 200 ", raw_request(w.port, b"GET /livez HTTP/1.0\r\n\r\n"))

            # the connections of the client side are closed: wait until weir has seen them go
            self.assertTrue(wait_until(lambda: scraper.scrape().value("weir_connections_open", protocol="HTTP/2") == 0
                                       and scraper.scrape().value("weir_connections_open", protocol="HTTP/1") == 1, 10))
            m = scraper.scrape()
            for name, kind in FAMILIES.items():
                if name.startswith("weir_redis_"):
                    continue  # no Redis here (see test_promtool_finds_nothing)
                self.assertEqual(m.families.get(name, {}).get("type"), kind, name)
                self.assertTrue(m.families[name].get("help"), name)

            def requests(path, method, status, protocol):
                return m.value("weir_http_requests_total", path=path, method=method, status=status, protocol=protocol)

            self.assertEqual(requests("/calc", "GET", 200, "HTTP/1.1"), 7)
            self.assertEqual(requests("/calc", "GET", 400, "HTTP/1.1"), 3)
            self.assertEqual(requests("/calc", "POST", 405, "HTTP/1.1"), 1)
            self.assertEqual(requests("(other)", "GET", 404, "HTTP/1.1"), 1)
            self.assertEqual(requests("/cache", "PUT", 200, "HTTP/2"), 2)
            self.assertEqual(requests("/cache", "GET", 200, "HTTP/2"), 5)
            self.assertEqual(requests("/cache", "DELETE", 200, "HTTP/2"), 1)
            self.assertEqual(requests("/upload", "POST", 200, "HTTP/2"), 4)
            self.assertEqual(requests("/livez", "GET", 200, "HTTP/1.0"), 1)
            # nothing else was asked, but the scrapes themselves
            others = [(lb, v) for lb, v in m.find("weir_http_requests_total") if lb["path"] != "/metrics"]
            self.assertEqual(sum(v for _, v in others), 7 + 3 + 1 + 1 + 2 + 5 + 1 + 4 + 1, others)

            # durations: one observation per request; an upload holds its slot 50 ms, so none is under 25 ms
            self.assertEqual(m.value("weir_http_request_duration_seconds_count", path="/calc"), 11)
            self.assertEqual(m.value("weir_http_request_duration_seconds_count", path="/cache"), 8)
            self.assertEqual(m.value("weir_http_request_duration_seconds_count", path="/upload"), 4)
            self.assertEqual(m.bucket("weir_http_request_duration_seconds", "0.025", path="/upload"), 0)
            self.assertEqual(m.bucket("weir_http_request_duration_seconds", "+Inf", path="/upload"), 4)
            self.assertGreaterEqual(m.value("weir_http_request_duration_seconds_sum", path="/upload"), 4 * 0.05)
            for lb, v in m.find("weir_http_requests_in_flight"):
                self.assertEqual(v, 1 if lb["path"] == "/metrics" else 0, lb)

            # connections: c, the scraper, the HTTP/1.0 one; one HTTP/2
            self.assertEqual(m.value("weir_connections_accepted_total", protocol="HTTP/1"), 3)
            self.assertEqual(m.value("weir_connections_accepted_total", protocol="HTTP/2"), 1)
            self.assertEqual(m.value("weir_connections_accepted_total", protocol="none"), 0)
            self.assertEqual(m.value("weir_connections_open", protocol="none"), 0)

            # modules
            self.assertEqual(m.value("weir_calc_sum_duration_seconds_count", path="/calc"), 7)
            self.assertEqual(m.value("weir_calc_jobs_queued", path="/calc"), 0)
            self.assertEqual(m.value("weir_cache_hits_total", path="/cache", backend="memory"), 3)
            self.assertEqual(m.value("weir_cache_misses_total", path="/cache", backend="memory"), 2)
            self.assertEqual(m.value("weir_cache_sets_total", path="/cache", backend="memory"), 2)
            self.assertEqual(m.value("weir_cache_deletes_total", path="/cache", backend="memory"), 1)
            self.assertEqual(m.value("weir_cache_errors_total", path="/cache", backend="memory"), 0)
            self.assertEqual(m.value("weir_cache_items", path="/cache"), 1)
            self.assertGreater(m.value("weir_cache_bytes", path="/cache"), len("b") + len('{"data": "value-b"}'))
            self.assertEqual(m.value("weir_cache_max_bytes", path="/cache"), 64 * 1024 * 1024)
            self.assertEqual(m.value("weir_cache_evictions_total", path="/cache"), 0)
            self.assertEqual(m.value("weir_upload_slots_capacity", path="/upload"), 2)
            self.assertEqual(m.value("weir_upload_slots_in_use", path="/upload"), 0)
            self.assertEqual(m.value("weir_upload_queue_length", path="/upload"), 0)
            self.assertEqual(m.value("weir_upload_wait_seconds_count", path="/upload"), 4)
            version = re.search(r"weir (\S+) ready", w.stderr()).group(1)
            self.assertEqual(m.value("weir_build_info", version=version), 1)
            self.assertEqual(m.value("weir_config_reloads_total", result="success"), 0)
            self.assertGreater(m.value("process_open_fds"), 0)
            scraper.close()

    def test_states_while_requests_wait(self):
        # 2 slots held for 3 s, a third upload queued; two long sums on one pool thread, one running, one queued
        cfg = config(upload=(2, 3000, 3000), calc={"calc.n": 100, "calc.max-n": 4294967296, "calc.threads": 1})
        with Weir(cfg) as w:
            scraper = Scraper(w.port)
            uploads = []
            for _ in range(3):
                c = HTTP1Conn(w.port, timeout=30)
                c.request("POST", "/upload")
                uploads.append(c)
            h = H2Client(w.port, timeout=30)
            sums = [h.request("GET", "/calc?n=4294967296") for _ in range(2)]

            def waiting():
                m = scraper.scrape()
                return (m.value("weir_upload_slots_in_use", path="/upload") == 2
                        and m.value("weir_upload_queue_length", path="/upload") == 1
                        and m.value("weir_http_requests_in_flight", path="/upload") == 3
                        and m.value("weir_calc_jobs_queued", path="/calc") == 2
                        and m.value("weir_http_requests_in_flight", path="/calc") == 2)

            self.assertTrue(wait_until(waiting, 10, interval=0.1), scraper.scrape().text)
            # the sums' client gives up: the queued one is taken back, then the running one is stopped
            h.reset(sums[1])
            self.assertTrue(wait_until(lambda: scraper.scrape().value("weir_calc_jobs_queued", path="/calc") == 1, 10))
            h.reset(sums[0])
            for c in uploads:
                self.assertEqual(c.read_response().status, 200)
                c.close()

            def settled():
                m = scraper.scrape()
                return (m.value("weir_upload_slots_in_use", path="/upload") == 0
                        and m.value("weir_calc_jobs_queued", path="/calc") == 0
                        and m.value("weir_http_requests_in_flight", path="/calc") == 0
                        and m.value("weir_http_requests_in_flight", path="/upload") == 0)

            self.assertTrue(wait_until(settled, 20, interval=0.1), scraper.scrape().text)
            m = scraper.scrape()
            self.assertEqual(m.value("weir_upload_wait_seconds_count", path="/upload"), 3)
            # the third waited for a slot to come free: at least most of a 3 s delay
            self.assertEqual(m.bucket("weir_upload_wait_seconds", "1", path="/upload"), 2)
            # sums nobody waited for are not timed; their requests ended without an answer
            self.assertEqual(m.value("weir_calc_sum_duration_seconds_count", path="/calc"), 0)
            self.assertEqual(m.value("weir_http_requests_total", path="/calc", method="GET", status=0,
                                     protocol="HTTP/2"), 2)
            h.close()
            scraper.close()

    def test_connections_by_protocol(self):
        with Weir(config(tls=True)) as w:
            port, tls_port = w.ports[0][2], w.ports[1][2]
            scraper = Scraper(port)
            held = []
            for _ in range(2):
                c = HTTP1Conn(port)
                self.assertEqual(request(c, "GET", "/livez").status, 200)
                held.append(c)
            c = HTTP1Conn(tls_port, tls=True)
            self.assertEqual(request(c, "GET", "/livez").status, 200)
            held.append(c)
            for p, tls in ((port, False), (tls_port, True)):
                h = H2Client(p, tls=tls)
                self.assertEqual(h.response(h.request("GET", "/livez")).status, 200)
                held.append(h)
            # a client that sends half a request head and waits: not settled
            partial = socket.create_connection(("127.0.0.1", port))
            partial.sendall(b"GET /livez HT")

            def counts():
                m = scraper.scrape()
                return tuple(m.value("weir_connections_" + kind, protocol=p) for kind in ("open", "accepted_total")
                             for p in ("none", "HTTP/1", "HTTP/2"))

            # open: none 1, HTTP/1 2 + TLS + the scraper, HTTP/2 2; accepted: the same, none not yet
            self.assertTrue(wait_until(lambda: counts() == (1, 4, 2, 0, 4, 2), 10), counts())
            # Upgrade: h2c is accepted as HTTP/1 and then open as HTTP/2 until it closes
            status, headers, _ = curl("--http2", w.url("/livez"))
            self.assertEqual((status, headers["_version"]), (200, "2"))
            for c in held:
                c.close()
            partial.close()
            self.assertTrue(wait_until(lambda: counts() == (0, 1, 0, 1, 5, 2), 10), counts())
            scraper.close()

    def test_promtool_finds_nothing(self):
        require("promtool")
        with RedisServer() as redis, Weir(config(redis=redis, tls=True)) as w:
            # a bit of everything, so that every family has series: requests of each kind, a stream reset during an
            # upload (status 0), Redis hits and misses
            scraper = Scraper(w.port)
            self.assertTrue(wait_until(
                lambda: scraper.scrape().value("weir_redis_connections_up", use="cache", path="/rcache") == 2, 10))
            scraper.close()
            h = H2Client(w.port)
            h.response(h.request("PUT", "/cache?key=a", body=b'va"l\\ue\n'))
            h.response(h.request("GET", "/cache?key=a"))
            h.response(h.request("PUT", "/rcache?key=a", body=b"v"))
            h.response(h.request("GET", "/rcache?key=a"))
            h.response(h.request("GET", "/rcache?key=zz"))
            sid = h.request("POST", "/upload")
            time.sleep(0.01)
            h.reset(sid)
            h.response(h.request("GET", "/calc"))
            h.response(h.request("GET", "/nope%22%5C"))
            h.close()
            curl(w.url("/readyz"))
            curl("-k", w.url("/livez", index=1))
            status, headers, body = curl(w.url("/metrics"))
            self.assertEqual(status, 200)
            m = Metrics(body.decode("utf-8"))
            self.assertEqual(set(FAMILIES) - set(m.families), set())
            self.assertEqual(m.value("weir_redis_connections_up", use="cache", path="/rcache"), 2)  # one per thread
            self.assertEqual(m.value("weir_cache_hits_total", path="/rcache", backend="redis"), 1)
            self.assertEqual(m.value("weir_cache_misses_total", path="/rcache", backend="redis"), 1)
            proc = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=60)
            self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, b"", b""), body.decode())

    def test_promtool_sees_a_malformed_exposition(self):
        # the check above can fail: promtool does report what weir must not write
        require("promtool")
        bad = b"# HELP x_total a counter\n# TYPE x_total counter\nx_total{a=\"1\"} 1\n# TYPE y gauge\ny 1\nrequests 3\n"
        proc = subprocess.run(["promtool", "check", "metrics"], input=bad, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
        self.assertNotEqual((proc.returncode, proc.stdout + proc.stderr), (0, b""))

    def test_endpoint_http(self):
        with Weir(config()) as w:
            for flags in ([], ["--http2-prior-knowledge"]):
                status, headers, body = curl(*flags, w.url("/metrics"))
                self.assertEqual(status, 200)
                self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
                self.assertEqual(int(headers["content-length"]), len(body))
                self.assertEqual(headers["cache-control"], "no-store")
                self.assertTrue(body.endswith(b"\n"))
                Metrics(body.decode("utf-8"))
            c = HTTP1Conn(w.port)
            r = request(c, "HEAD", "/metrics")
            self.assertEqual((r.status, r.body), (200, b""))
            self.assertGreater(int(dict(r.header_list)["content-length"]), 0)
            r = request(c, "POST", "/metrics", body=b"x")
            self.assertEqual((r.status, dict(r.header_list)["allow"]), (405, "GET, HEAD"))
            self.assertEqual(json.loads(r.body)["error"], "method not allowed; allowed: GET, HEAD")
            r = request(c, "GET", "/metrics/more")
            self.assertEqual((r.status, r.body), (404, b'{"error": "not found"}'))
            c.close()


class ConfigTest(unittest.TestCase):
    def check(self, keys, pattern):
        text = str(Config().listen().path("/calc", {"calc.n": 1}).path("/s", keys))
        with wt.temp_file(text.encode(), suffix=".yaml") as path:
            proc = subprocess.run([wt.WEIR_BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, timeout=30)
            wt.assert_no_sanitizer_report(proc.stderr)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertRegex(proc.stderr, r"(?m)^" + path.replace(".", r"\.") + r":\d+: " + pattern)

    def test_one_endpoint_per_path(self):
        self.check({"status.metrics": "ON", "status.live": "ON"}, r".*each need a path of their own")
        self.check({"status.metrics": "OFF"}, r".*no status endpoint is ON")
        self.check({"status.ready": "maybe"}, r'in "status.ready": expected ON or OFF, got "maybe"')
        self.check({"status.metrics": "ON", "status.prometheus": "ON"}, r'unknown key "status.prometheus"')
        self.check({"status.live": "ON", "calc.n": 3}, r'key "calc.n" belongs to module "calc"')

    def test_valid(self):
        text = str(config())
        with wt.temp_file(text.encode(), suffix=".yaml") as path:
            proc = subprocess.run([wt.WEIR_BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, timeout=30)
            self.assertEqual(proc.returncode, 0, proc.stderr)


if __name__ == "__main__":
    unittest.main()
