"""End-to-end test with a real Prometheus server (Debian's prometheus package): it scrapes weir's /metrics every
second, and weir's request counter is read back through Prometheus's HTTP query API."""

import json
import os
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

from weirtest import Config, HTTP1Conn, Weir, free_port, require, temp_dir, wait_until

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: weir
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:%d"]
"""


class Prometheus:
    """A prometheus process on a free loopback port with a temporary storage directory; stopped by its own pid."""

    def __init__(self, weir_port):
        require("prometheus")
        self.dir = temp_dir("weir-prometheus-")
        self.port = free_port()
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(PROMETHEUS_CONFIG % weir_port)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w+")
        self.proc = None

    def start(self, timeout=60):
        self.proc = subprocess.Popen(["prometheus", "--config.file=" + self.config,
                                      "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                                      "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        if not wait_until(lambda: self.proc.poll() is not None or self.get("/-/ready", raw=True) == 200, timeout, 0.2):
            raise AssertionError("prometheus not ready within %ss:\n%s" % (timeout, self.output()))
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited with %d:\n%s" % (self.proc.returncode, self.output()))
        return self

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def get(self, path, raw=False):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
                return r.status if raw else json.loads(r.read().decode("utf-8"))
        except OSError:
            return None

    def query(self, expr):
        """The instant vector of expr: [(labels, value)], or None when the API did not answer."""
        doc = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if doc is None or doc.get("status") != "success":
            return None
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


class PrometheusTest(unittest.TestCase):
    def test_prometheus_reads_the_request_counter(self):
        config = (Config(threads=2).listen().path("/calc", {"calc.n": 1000}).path("/cache", {"cache.backend": "memory"})
                  .path("/metrics", {"status.metrics": "ON"}))
        with Weir(config) as w, Prometheus(w.port) as prom:
            c = HTTP1Conn(w.port)
            for _ in range(7):
                c.request("GET", "/calc")
                self.assertEqual(c.read_response().status, 200)
            c.close()
            expr = 'weir_http_requests_total{job="weir",path="/calc",method="GET",status="200",protocol="HTTP/1.1"}'

            def seven():
                r = prom.query(expr)
                return r is not None and len(r) == 1 and r[0][1] == 7

            self.assertTrue(wait_until(seven, 90, 0.5), "%r\n%s" % (prom.query(expr), prom.output()))
            # the target is healthy (its scrapes parsed), and histograms and gauges came through as well
            self.assertEqual([v for _, v in prom.query('up{job="weir"}')], [1])
            r = prom.query('weir_http_request_duration_seconds_count{job="weir",path="/calc"}')
            self.assertEqual([v for _, v in r], [7])
            r = prom.query('weir_build_info{job="weir"}')
            self.assertEqual(len(r), 1)
            self.assertEqual(r[0][1], 1)
            targets = prom.get("/api/v1/targets")
            active = targets["data"]["activeTargets"]
            self.assertEqual([(t["health"], t["lastError"]) for t in active], [("up", "")])
            # and weir saw the scrapes as requests of its own
            self.assertTrue(wait_until(lambda: (prom.query(
                'weir_http_requests_total{job="weir",path="/metrics",status="200"}') or [({}, 0)])[0][1] >= 1, 30, 0.5))


if __name__ == "__main__":
    unittest.main()
