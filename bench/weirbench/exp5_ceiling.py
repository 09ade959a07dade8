"""Experiment 5: the HTTP ceiling: a /cache hit against the stock h2o binary serving a static file with the same
bytes, over h2c and HTTP/1.1 (h2load), with each server's CPU time per request."""

import os

from .common import fmt, gnum, http, median, spread
from .experiment import Experiment, Summary
from .load import h2load
from .procs import cpu_seconds
from .report import table
from .servers import CACHE_KEY, cache_server, stock_h2o

CSV = "ceiling.csv"
HEADER = ["server", "proto", "rep", "status", "rps", "errors", "mean_ms", "body_bytes", "cpu_us_per_req"]
BODY = "cache-reply-body.txt"  # the bytes of weir's /cache reply, which h2o serves as a file
PROTOS = [("h2c", ["-c", "100", "-m", "10", "-t", "1"]), ("h1", ["--h1", "-c", "100", "-m", "10", "-t", "1"])]


def run(ctx):
    # More repetitions than elsewhere: each is short, and the ratio moves with the neighbours' load.
    reps, n = ctx.params["exp5_reps"], ctx.params["exp5_n"]
    rows = []
    www = os.path.join(ctx.tmp, "www")
    os.makedirs(www, exist_ok=True)
    body = None
    for rep in range(1, reps + 1):
        for sid in ("weir", "h2o"):
            if ctx.out_of_time(margin=30):
                rows.append(dict(server=sid, rep=rep, status="not run (run budget)"))
                continue
            step = "exp5 %s rep %d" % (sid, rep)
            if sid == "weir":
                srv, body = cache_server(ctx, step)
                path = "/cache?key=%s" % CACHE_KEY
            else:
                with open(os.path.join(www, "cache"), "wb") as f:
                    f.write(body)
                srv = stock_h2o(ctx, step, www)
                path = "/cache"
                st, got = http("GET", srv.url(path))
                assert st == 200 and got == body, (st, got, body)
            with srv:
                for proto, args in PROTOS:
                    h2load(ctx, step + " %s warm-up" % proto, srv.url(path), ["-n", str(n // 10)] + args, 120)
                    cpu0 = cpu_seconds(srv.tree())
                    r = h2load(ctx, step + " " + proto, srv.url(path), ["-n", str(n)] + args, 300)
                    cpu_us = round((cpu_seconds(srv.tree()) - cpu0) * 1e6 / n, 3)
                    rows.append(dict(server=sid, proto=proto, rep=rep, status=r["status"], rps=r.get("rps"),
                                     errors=r.get("errors"), mean_ms=r.get("mean_ms"), body_bytes=len(body),
                                     cpu_us_per_req=cpu_us))
                    ctx.progress("%s %s: %s, %s req/s, errors %s, server CPU %s us per request" % (
                        step, proto, r["status"], fmt(r.get("rps"), 0), r.get("errors"), cpu_us))
    if body is not None:
        with open(ctx.path(BODY), "wb") as f:
            f.write(body)
    return {CSV: rows}


def plot(data, ctx):
    ceiling_rows = data[CSV]
    if not any(r.get("rps") for r in ceiling_rows):
        return []
    with open(ctx.path("ceiling.dat"), "w") as f:
        f.write("# protocol weir_median weir_min weir_max h2o_median h2o_min h2o_max (req/s)\n")
        for proto, label in (("h2c", "h2c (-c 100 -m 10)"), ("h1", "HTTP/1.1 (--h1 -c 100 -m 10)")):
            cols = []
            for sid in ("weir", "h2o"):
                vals = [r.get("rps") for r in ceiling_rows if r.get("server") == sid and r.get("proto") == proto]
                lo, hi = spread(vals)
                cols += [median(vals), lo, hi]
            f.write('"%s" %s\n' % (label, " ".join(gnum(x) for x in cols)))
    return [("ceiling.gp", "ceiling.png")]


def summarise(data, ctx):
    out = Summary()
    ceil_rows = data[CSV]
    if not ceil_rows:
        return out
    body_path = ctx.path(BODY)
    if os.path.exists(body_path):
        with open(body_path) as f:
            body, body_len = f.read(), os.path.getsize(body_path)
    else:
        body, body_len = "?", 0
    lines = ["A /cache hit (memory backend, 26-byte value; reply body `%s`, %d bytes) against the stock h2o "
             "binary serving a static file with exactly those bytes; `h2load -n %d -c 100 -m 10 -t 1` (h2c, prior "
             "knowledge) and the same with `--h1` (10 pipelined requests per connection). Both servers: 1 thread "
             "on cpu %s." % (body, body_len, ctx.params["exp5_n"], ctx.server_cpus), ""]
    trs, ok5, meas = [], True, []
    for proto in ("h2c", "h1"):
        vals = {}
        for sid in ("weir", "h2o"):
            rr = [r for r in ceil_rows if r.get("server") == sid and r.get("proto") == proto and r.get("rps")]
            vals[sid] = median([r["rps"] for r in rr])
            lo, hi = spread([r["rps"] for r in rr])
            errs = sum(r.get("errors") or 0 for r in rr)
            cpus = [r["cpu_us_per_req"] for r in rr if r.get("cpu_us_per_req")]
            trs.append([proto, sid, "%s (%s-%s)" % (fmt(vals[sid], 0), fmt(lo, 0), fmt(hi, 0)), errs,
                        fmt(median(cpus), 2) if cpus else "-", ""])
        if vals["weir"] and vals["h2o"]:
            ratio = vals["weir"] / vals["h2o"]
            pairs = []
            for rep_i in sorted(set(r["rep"] for r in ceil_rows if r.get("proto") == proto)):
                w = [r["rps"] for r in ceil_rows if r.get("proto") == proto and r["rep"] == rep_i
                     and r.get("server") == "weir" and r.get("rps")]
                h = [r["rps"] for r in ceil_rows if r.get("proto") == proto and r["rep"] == rep_i
                     and r.get("server") == "h2o" and r.get("rps")]
                if w and h:
                    pairs.append("%.2f" % (w[0] / h[0]))
            trs[-2][5] = "%.2f (per repetition: %s)" % (ratio, ", ".join(pairs))
            meas.append("%s %.2fx" % (proto, ratio))
            ok5 = ok5 and ratio >= 0.9
        else:
            ok5 = False
    lines += table(["protocol", "server", "req/s median (min-max)", "errors", "server CPU per request (us)",
                    "weir / h2o (medians)"], trs)
    lines += ["", "The server's CPU time per request (from /proc, all its threads) moves less with the neighbours' "
              "load than the throughput does; h2load, on the other core, is close to saturating it too."]
    out.target("5", ">= 0.9x the stock h2o binary on h2c and on HTTP/1.1", ", ".join(meas) or "not measured", ok5,
               "ceiling.png")
    out.section("Experiment 5: the HTTP ceiling", lines, ["ceiling.png"])
    return out


EXPERIMENT = Experiment(
    "exp5",
    about="a /cache hit against the stock h2o binary, h2c and HTTP/1.1",
    files={CSV: HEADER},
    params={
        "full": dict(exp5_n=500000, exp5_reps=5),
        "quick": dict(exp5_n=100000, exp5_reps=1),
    },
    run=run, plot=plot, summarise=summarise)
