"""Experiment 8: what counting costs. A /cache hit over h2c with status.metrics mounted (every request counted by
path, method, status and protocol, timed, in flight; the cache's own counters) and scraped every second, against the
same weir without it.

This machine's throughput moves by +-10% from one second to the next (a shared virtual machine: steal time, the
neighbours' caches), far more than the 3% to be resolved. So both servers run side by side for the whole
experiment, and short runs alternate between them in pairs (ABBA order): each pair's ratio compares two runs a
second apart, and the target is judged on the median of many pairs' ratios. Beside it, a figure that the machine's
noise does not move at all: the instructions weir executes per request (user space), counted by callgrind."""

import re
import threading

from .common import fmt, http, median, spread
from .experiment import Experiment, Summary
from .load import h2load
from .procs import cpu_seconds
from .report import table
from .servers import CACHE_KEY, cache_server

CSV = "metrics.csv"
HEADER = ["variant", "pair", "status", "rps", "errors", "mean_ms", "cpu_us_per_req", "scrapes"]
INSN_CSV = "metrics_instructions.csv"
INSN_HEADER = ["variant", "requests", "instructions", "status"]
ARGS = ["-c", "100", "-m", "10", "-t", "1"]
VARIANTS = ("off", "on")
SCRAPE_INTERVAL_S = 1.0


class Scraper(threading.Thread):
    """GET /metrics, as Prometheus would: once when a run starts and then every SCRAPE_INTERVAL_S until it ends, and
    not between runs (a scrape while the other server is measured would take cpu from it). Keeps the last
    exposition."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.count = 0
        self.last = ""

    def scrape(self):
        try:
            st, body = http("GET", self.url)
        except OSError:
            return
        if st == 200:
            with self.lock:
                self.count += 1
                self.last = body.decode("utf-8")

    def run(self):
        while not self.stopped.is_set():
            if not self.running.wait(0.1):
                continue
            self.scrape()
            self.stopped.wait(SCRAPE_INTERVAL_S)

    def begin(self):
        """Starts scraping (the run begins); @return the scrapes so far."""
        with self.lock:
            n = self.count
        self.running.set()
        return n

    def end(self):
        """Stops scraping until the next begin(); @return the scrapes so far."""
        self.running.clear()
        with self.lock:
            return self.count

    def finish(self):
        self.running.clear()
        self.stopped.set()
        self.join(10)
        self.scrape()
        return self.last


def counted_gets(exposition):
    """weir_http_requests_total of GET /cache 200 over h2c, from an exposition."""
    m = re.search(r'^weir_http_requests_total\{path="/cache",method="GET",status="200",protocol="HTTP/2"\} (\d+)$',
                  exposition, re.M)
    return int(m.group(1)) if m else None


def count_instructions(ctx, variant, n):
    """User-space instructions of a weir that served n /cache GETs (h2load as in the runs) under callgrind, from
    its start to its exit; None when valgrind failed."""
    step = "exp8 instructions %s n %d" % (variant, n)
    out = ctx.path("tmp/%s.callgrind" % step.replace(" ", "_"))
    wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
    srv, _ = cache_server(ctx, step, metrics=(variant == "on"), wrapper=wrapper)
    with srv:
        r = h2load(ctx, step, srv.url("/cache?key=" + CACHE_KEY), ["-n", str(n)] + ARGS, 600)
    # srv.stop() (SIGTERM) has let weir exit and callgrind write its totals
    try:
        with open(out) as f:
            text = f.read()
    except OSError:
        return None, r["status"]
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return (int(m.group(1)) if m else None), r["status"]


def run(ctx):
    pairs, n = ctx.params["exp8_pairs"], ctx.params["exp8_n"]
    rows = []
    srvs = {}
    try:
        for variant in VARIANTS:
            srvs[variant], _ = cache_server(ctx, "exp8 metrics %s" % variant, metrics=(variant == "on"))
        urls = {v: s.url("/cache?key=" + CACHE_KEY) for v, s in srvs.items()}
        for variant in VARIANTS:
            h2load(ctx, "exp8 metrics %s warm-up" % variant, urls[variant], ["-n", str(n)] + ARGS, 120)
        scraper = Scraper(srvs["on"].url("/metrics"))
        scraper.start()
        for pair in range(1, pairs + 1):
            if ctx.out_of_time(margin=2 * n / 100000.0 + 10):
                rows.append(dict(variant="-", pair=pair, status="not run (run budget)"))
                break
            # ABBA: off-on, on-off, ... so that a drift of the machine's speed favours neither
            for variant in (VARIANTS if pair % 2 else tuple(reversed(VARIANTS))):
                step = "exp8 metrics %s pair %d" % (variant, pair)
                srv = srvs[variant]
                scrapes0 = scraper.begin() if variant == "on" else None
                cpu0 = cpu_seconds(srv.tree())
                r = h2load(ctx, step, urls[variant], ["-n", str(n)] + ARGS, 300)
                cpu_us = round((cpu_seconds(srv.tree()) - cpu0) * 1e6 / n, 3)
                scrapes = scraper.end() - scrapes0 if variant == "on" else None
                rows.append(dict(variant=variant, pair=pair, status=r["status"], rps=r.get("rps"),
                                 errors=r.get("errors"), mean_ms=r.get("mean_ms"), cpu_us_per_req=cpu_us,
                                 scrapes=scrapes))
            got = {r["variant"]: r for r in rows[-2:]}
            ctx.progress("exp8 pair %d: off %s req/s (%s us CPU per request), on %s req/s (%s us, %s scrape(s)), "
                         "on/off %s" % (pair, fmt(got["off"].get("rps"), 0), got["off"]["cpu_us_per_req"],
                                         fmt(got["on"].get("rps"), 0), got["on"]["cpu_us_per_req"],
                                         got["on"]["scrapes"], fmt(pair_ratio(rows, pair), 3)))
        last = scraper.finish()
        counted = counted_gets(last)
        sent = n * (1 + sum(1 for r in rows if r.get("variant") == "on" and r.get("rps")))
        ctx.progress("exp8: GET /cache counted by weir (metrics on): %s, sent %d" % (counted, sent))
        rows.append(dict(variant="on", pair="counted", status="%s of %d" % (counted, sent)))
    finally:
        for s in srvs.values():
            s.stop()

    insn = []
    small, big = ctx.params["exp8_insn_n"]
    for variant in VARIANTS:
        for k in (small, big):
            if ctx.out_of_time(margin=60):
                insn.append(dict(variant=variant, requests=k, status="not run (run budget)"))
                continue
            total, status = count_instructions(ctx, variant, k)
            insn.append(dict(variant=variant, requests=k, instructions=total, status=status))
            ctx.progress("exp8 instructions %s, %d requests: %s (%s)" % (variant, k, total, status))
    return {CSV: rows, INSN_CSV: insn}


def pair_ratio(rows, pair):
    got = {r["variant"]: r.get("rps") for r in rows if r.get("pair") == pair and r.get("status") == "ok"}
    return got["on"] / got["off"] if got.get("on") and got.get("off") else None


def per_request_instructions(insn, variant):
    """(instructions per request, from the difference of the two runs: start-up and exit cancel out) or None."""
    rr = sorted((r["requests"], r["instructions"]) for r in insn
                if r.get("variant") == variant and r.get("instructions") and r.get("status") == "ok")
    if len(rr) < 2 or rr[-1][0] == rr[0][0]:
        return None
    return (rr[-1][1] - rr[0][1]) / float(rr[-1][0] - rr[0][0])


def summarise(data, ctx):
    out = Summary()
    rows = [r for r in data[CSV] if r.get("rps") and r.get("variant") in VARIANTS]
    if not rows:
        return out
    n, pairs_planned = ctx.params["exp8_n"], ctx.params["exp8_pairs"]
    lines = ["Two weir processes (1 thread each, both on cpu %s, started together and kept for the whole experiment) "
             "serve a /cache hit (memory backend) over h2c: one with `status.metrics` mounted and `/metrics` scraped "
             "every %.0f s while it is measured (on), one without it (off: no request is counted; the cache's own "
             "counters are counted in both). After a warm-up of %d requests each, %d pairs of runs of "
             "`h2load -n %d -c 100 -m 10 -t 1`, one on each server, a pair's two runs back to back in alternating "
             "order (off-on, on-off, ...). Each pair gives the ratio on/off of two runs about a second apart; the "
             "target is judged on the median of those ratios, since this machine's speed moves by +-10%% within "
             "seconds (a run of 3,000,000 requests per server, 5 repetitions on fresh processes, gave ratios from "
             "0.76 to 1.08 on 2026-12-01 with the same CPU per request)." % (
                 ctx.server_cpus, SCRAPE_INTERVAL_S, n, pairs_planned, n), ""]
    trs = []
    for variant in VARIANTS:
        rr = [r for r in rows if r.get("variant") == variant]
        lo, hi = spread([r["rps"] for r in rr])
        cpus = [r["cpu_us_per_req"] for r in rr if r.get("cpu_us_per_req")]
        trs.append([variant, len(rr), "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 0), fmt(lo, 0), fmt(hi, 0)),
                    sum(r.get("errors") or 0 for r in rr), fmt(median(cpus), 2) if cpus else "-"])
    lines += table(["metrics", "runs", "req/s median (min-max)", "errors", "server CPU per request, median (us)"], trs)
    ratios = [x for x in (pair_ratio(rows, p) for p in sorted(set(r["pair"] for r in rows))) if x is not None]
    ratio = median(ratios) if ratios else None
    lo, hi = spread(ratios) if ratios else (None, None)
    q = sorted(ratios)
    quart = (q[len(q) // 4], q[(3 * len(q)) // 4]) if len(q) >= 4 else (None, None)
    counted = [r.get("status") for r in data[CSV] if r.get("pair") == "counted"]
    lines += ["", "on / off, median of %d pairs: %s (quartiles %s-%s, min-max %s-%s); per pair: %s. GET /cache "
              "requests that the `on` weir counted (read from /metrics after the last run) of those sent to it, "
              "warm-up included: %s." % (
                  len(ratios), fmt(ratio, 3), fmt(quart[0], 3), fmt(quart[1], 3), fmt(lo, 3), fmt(hi, 3),
                  ", ".join("%.3f" % x for x in ratios), counted[0] if counted else "-")]
    insn = data.get(INSN_CSV) or []
    per = {v: per_request_instructions(insn, v) for v in VARIANTS}
    if per["on"] and per["off"]:
        small, big = ctx.params["exp8_insn_n"]
        lines += ["", "Instructions per request, which no neighbour moves: each server run under "
                  "`valgrind --tool=callgrind` for %d and for %d requests of the same h2load command (from start "
                  "to exit; the difference of the two runs over the difference of requests, so that start-up and "
                  "exit cancel out). User space only (weir, libh2o, libc): the kernel's share of a request (the "
                  "socket reads and writes, epoll) is not counted, and is the same in both." % (small, big),
                  ""]
        lines += table(["metrics", "instructions per request (user space)"],
                       [[v, "%.0f" % per[v]] for v in VARIANTS])
        lines += ["", "on / off: %.3f (+%.0f instructions per request)." % (per["on"] / per["off"],
                                                                          per["on"] - per["off"])]
    out.section("Experiment 8: the cost of counting", lines)
    ok = ratio is not None and ratio >= 0.97 and len(ratios) == pairs_planned
    out.target("8", "/cache over h2c with status.metrics mounted and scraped >= 0.97x of the same without "
               "(median of paired runs)",
               "%s, median of %d pairs (quartiles %s-%s)%s" % (
                   fmt(ratio, 3), len(ratios), fmt(quart[0], 3), fmt(quart[1], 3),
                   "; instructions per request %.0f vs %.0f (%.3fx)" % (per["on"], per["off"], per["on"] / per["off"])
                   if per["on"] and per["off"] else "") if ratio else "not measured", ok)
    return out


EXPERIMENT = Experiment(
    "exp8",
    about="/cache over h2c with status.metrics mounted and scraped against without (paired runs, and instructions)",
    files={CSV: HEADER, INSN_CSV: INSN_HEADER},
    params={
        "full": dict(exp8_n=400000, exp8_pairs=40, exp8_insn_n=(20000, 60000)),
        "quick": dict(exp8_n=300000, exp8_pairs=10, exp8_insn_n=(20000, 40000)),
    },
    run=run, summarise=summarise)
