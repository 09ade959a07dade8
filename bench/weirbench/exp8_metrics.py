"""Experiment 8: what counting costs. A /cache hit over h2c with status.metrics mounted (every request counted by
path, method, status and protocol, timed, in flight; the cache's own counters) and scraped every second, against the
same weir without it."""

import re
import threading

from .common import fmt, http, median, spread
from .experiment import Experiment, Summary
from .load import h2load
from .procs import cpu_seconds
from .report import table
from .servers import CACHE_KEY, cache_server

CSV = "metrics.csv"
HEADER = ["variant", "rep", "status", "rps", "errors", "mean_ms", "cpu_us_per_req", "scrapes", "counted"]
ARGS = ["-c", "100", "-m", "10", "-t", "1"]
VARIANTS = ("off", "on")
SCRAPE_INTERVAL_S = 1.0


class Scraper(threading.Thread):
    """GET /metrics every SCRAPE_INTERVAL_S until stopped, as Prometheus would; keeps the last exposition."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.stop_event = threading.Event()
        self.count = 0
        self.last = ""

    def run(self):
        while not self.stop_event.wait(SCRAPE_INTERVAL_S):
            try:
                st, body = http("GET", self.url)
                if st == 200:
                    self.count += 1
                    self.last = body.decode("utf-8")
            except OSError:
                pass

    def finish(self):
        self.stop_event.set()
        self.join(10)
        st, body = http("GET", self.url)
        self.last = body.decode("utf-8") if st == 200 else ""
        return self.count


def counted_gets(exposition):
    """weir_http_requests_total of GET /cache 200 over h2c, from an exposition."""
    m = re.search(r'^weir_http_requests_total\{path="/cache",method="GET",status="200",protocol="HTTP/2"\} (\d+)$',
                  exposition, re.M)
    return int(m.group(1)) if m else None


def run(ctx):
    reps, n = ctx.params["exp8_reps"], ctx.params["exp8_n"]
    rows = []
    for rep in range(1, reps + 1):
        # alternate the order, so that a drift of the machine's load does not favour one variant
        for variant in (VARIANTS if rep % 2 else tuple(reversed(VARIANTS))):
            if ctx.out_of_time(margin=n / 20000.0 + 10):
                rows.append(dict(variant=variant, rep=rep, status="not run (run budget)"))
                continue
            step = "exp8 metrics %s rep %d" % (variant, rep)
            srv, _ = cache_server(ctx, step, metrics=(variant == "on"))
            with srv:
                url = srv.url("/cache?key=" + CACHE_KEY)
                h2load(ctx, step + " warm-up", url, ["-n", str(n // 10)] + ARGS, 120)
                scraper = Scraper(srv.url("/metrics")) if variant == "on" else None
                if scraper:
                    scraper.start()
                cpu0 = cpu_seconds(srv.tree())
                r = h2load(ctx, step, url, ["-n", str(n)] + ARGS, 300)
                cpu_us = round((cpu_seconds(srv.tree()) - cpu0) * 1e6 / n, 3)
                scrapes = scraper.finish() if scraper else None
                counted = counted_gets(scraper.last) if scraper else None
            rows.append(dict(variant=variant, rep=rep, status=r["status"], rps=r.get("rps"), errors=r.get("errors"),
                             mean_ms=r.get("mean_ms"), cpu_us_per_req=cpu_us, scrapes=scrapes, counted=counted))
            ctx.progress("%s: %s, %s req/s, errors %s, server CPU %s us per request%s" % (
                step, r["status"], fmt(r.get("rps"), 0), r.get("errors"), cpu_us,
                "" if scraper is None else ", %d scrapes, %s GETs counted" % (scrapes, counted)))
    return {CSV: rows}


def summarise(data, ctx):
    out = Summary()
    rows = [r for r in data[CSV] if r.get("rps")]
    if not rows:
        return out
    n = ctx.params["exp8_n"]
    lines = ["weir (1 thread, cpu %s) serving a /cache hit (memory backend) over h2c, `h2load -n %d -c 100 -m 10 -t 1` "
             "after a warm-up of %d, with `status.metrics` mounted and `/metrics` scraped every %.0f s during the run "
             "(on), and without it (off: no request is counted). The cache's own counters (hits, misses...) are "
             "counted in both. Each repetition runs both, in alternating order, on fresh processes." % (
                 ctx.server_cpus, n, n // 10, SCRAPE_INTERVAL_S), ""]
    trs, med = [], {}
    for variant in VARIANTS:
        rr = [r for r in rows if r.get("variant") == variant]
        med[variant] = median([r["rps"] for r in rr])
        lo, hi = spread([r["rps"] for r in rr])
        cpus = [r["cpu_us_per_req"] for r in rr if r.get("cpu_us_per_req")]
        trs.append([variant, "%s (%s-%s)" % (fmt(med[variant], 0), fmt(lo, 0), fmt(hi, 0)),
                    sum(r.get("errors") or 0 for r in rr), fmt(median(cpus), 2) if cpus else "-"])
    lines += table(["metrics", "req/s median (min-max)", "errors", "server CPU per request (us)"], trs)
    pairs = []
    for rep in sorted(set(r["rep"] for r in rows)):
        on = [r["rps"] for r in rows if r["rep"] == rep and r.get("variant") == "on"]
        off = [r["rps"] for r in rows if r["rep"] == rep and r.get("variant") == "off"]
        if on and off:
            pairs.append(on[0] / off[0])
    ok = bool(med.get("on") and med.get("off")) and med["on"] / med["off"] >= 0.97
    ratio = med["on"] / med["off"] if med.get("on") and med.get("off") else None
    counted = [(r.get("counted"), r.get("scrapes")) for r in rows if r.get("variant") == "on"]
    lines += ["", "on / off (medians): %s; per repetition: %s (min-max %s-%s). GETs counted by weir in each `on` run "
              "(warm-up included, read back from /metrics after the run), and scrapes: %s." % (
                  fmt(ratio, 3), ", ".join("%.3f" % p for p in pairs), fmt(min(pairs) if pairs else None, 3),
                  fmt(max(pairs) if pairs else None, 3),
                  ", ".join("%s (%s scrapes)" % (c, s) for c, s in counted))]
    out.section("Experiment 8: the cost of counting", lines)
    out.target("8", "/cache over h2c with status.metrics mounted and scraped >= 0.97x of the same without",
               "%s (per repetition %s)" % (fmt(ratio, 3), ", ".join("%.3f" % p for p in pairs)) if ratio else
               "not measured", ok)
    return out


EXPERIMENT = Experiment(
    "exp8",
    about="/cache over h2c with status.metrics mounted and scraped against without",
    files={CSV: HEADER},
    params={
        "full": dict(exp8_n=3000000, exp8_reps=5),
        "quick": dict(exp8_n=1000000, exp8_reps=3),
    },
    run=run, summarise=summarise)
