"""Experiment 7: weir's /cache on Redis, against redis-benchmark alone and weir's memory backend."""

import re

from .common import fmt, median, spread
from .experiment import Experiment, Summary
from .load import h2load, run_load
from .report import table
from .servers import CACHE_KEY, Server, cache_server

CSV = "redis.csv"
HEADER = ["what", "rep", "status", "rps", "errors", "mean_ms"]
WHATS = ("redis-benchmark GET", "weir /cache redis", "weir /cache memory")


def cache_h2load(ctx, step, name, backend, n, args, rep, rows):
    """A fresh weir with the given /cache backend, a warm-up, then n GETs of the stored key; appends the row."""
    srv, _ = cache_server(ctx, step + " weir " + name, backend=backend)
    with srv:
        url = srv.url("/cache?key=" + CACHE_KEY)
        h2load(ctx, step + " weir %s warm-up" % name, url, ["-n", str(n // 10)] + args, 120)
        r = h2load(ctx, step + " weir " + name, url, ["-n", str(n)] + args, 300)
    rows.append(dict(what="weir /cache " + name, rep=rep, status=r["status"], rps=r.get("rps"), errors=r.get("errors"),
                     mean_ms=r.get("mean_ms")))
    return r


def run(ctx):
    reps, n = ctx.params["reps"], ctx.params["exp7_n"]
    rows = []
    args = ["--h1", "-c", "100", "-m", "1", "-t", "1"]
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=n / 5000.0 + 5):
            rows.append(dict(what="weir redis", rep=rep, status="not run (run budget)"))
            continue
        step = "exp7 rep %d" % rep
        with Server(ctx, "redis", "redis-server").start(step + " redis") as redis:
            # redis-benchmark alone: SET then GET of a 26-byte value, 100 clients, no pipelining
            argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(redis.port), "-c", "100", "-n", str(n), "-d", "26",
                    "-t", "set,get", "--csv"]
            rc, out, _ = run_load(ctx, step + " redis-benchmark", argv, 300)
            m = re.search(r'^"GET","([\d.]+)"', out, re.M)
            rb = float(m.group(1)) if m else None
            rows.append(dict(what="redis-benchmark GET", rep=rep, status="ok" if rb else "failed", rps=rb, errors=0))
            r = cache_h2load(ctx, step, "redis", ("redis", redis.port), n, args, rep, rows)
        r2 = cache_h2load(ctx, step, "memory", ("memory",), n, args, rep, rows)
        ctx.progress("%s: redis-benchmark GET %s req/s, weir /cache redis %s req/s (errors %s), memory %s req/s" % (
            step, fmt(rb, 0), fmt(r.get("rps"), 0), r.get("errors"), fmt(r2.get("rps"), 0)))
    return {CSV: rows}


def summarise(data, ctx):
    out = Summary()
    redis_rows = data[CSV]
    if not redis_rows:
        return out
    lines = ["redis-server (loopback, no persistence) on cpu %s beside weir; weir's /cache with "
             "`cache.backend: redis` against `redis-benchmark -t set,get -c 100 -d 26` (GET row) and weir's "
             "memory backend, all with 100 requests in flight (`h2load --h1 -c 100 -m 1 -n %d`)." % (
                 ctx.server_cpus, ctx.params["exp7_n"]), ""]
    trs = []
    for what in WHATS:
        rr = [r for r in redis_rows if r.get("what") == what and r.get("rps")]
        if not rr:
            continue
        lo, hi = spread([r["rps"] for r in rr])
        trs.append([what, "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 0), fmt(lo, 0), fmt(hi, 0)),
                    sum(r.get("errors") or 0 for r in rr)])
    lines += table(["what", "req/s median (min-max)", "errors"], trs)
    out.section("Experiment 7: Redis", lines)
    return out


EXPERIMENT = Experiment(
    "exp7",
    about="/cache on Redis against redis-benchmark and the memory backend",
    files={CSV: HEADER},
    params={
        "full": dict(exp7_n=200000),
        "quick": dict(exp7_n=30000),
    },
    run=run, summarise=summarise)
