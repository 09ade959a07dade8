"""Experiment 6: isolation: /cache latency at a fixed rate, alone and while `ab -c 8 /calc` keeps weir's work pool
busy."""

import os
import time

from .common import fmt, gnum, median, slug, spread
from .experiment import Experiment, Summary
from .load import BackgroundLoad, h2load, parse_ab, percentiles_from_h2load_log
from .procs import cpu_seconds
from .report import table
from .servers import CACHE_KEY, cache_server

CSV = "isolation.csv"
HEADER = ["phase", "rep", "status", "rps", "errors", "p50_ms", "p99_ms", "max_ms", "count", "server_cpu_util",
          "calc_rps"]
PHASES = ("alone", "under /calc")


def measure(ctx, step, srv, phase, args, dur):
    """The /cache run of one phase: h2load's figures, its latency percentiles and the server's CPU use."""
    log = os.path.join(ctx.tmp, slug(step + " " + phase) + ".h2load.log")
    cpu0 = cpu_seconds(srv.tree())
    t0 = time.monotonic()
    r = h2load(ctx, "%s /cache %s" % (step, phase), srv.url("/cache?key=" + CACHE_KEY), args + ["--log-file", log],
               dur + 60)
    busy = (cpu_seconds(srv.tree()) - cpu0) / max(1e-9, time.monotonic() - t0)
    return r, percentiles_from_h2load_log(log), busy


def run(ctx):
    P = ctx.params
    reps, dur = P["reps"], P["exp6_duration"]
    rows = []
    args_base = ["--h1", "-c", str(P["exp6_clients"]), "-t", "1", "--rps", str(P["exp6_rps_per_client"]),
                 "-D", str(dur)]
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=2 * dur + 8):
            rows.append(dict(phase="alone", rep=rep, status="not run (run budget)"))
            continue
        step = "exp6 rep %d" % rep
        srv, _ = cache_server(ctx, step)
        with srv:
            h2load(ctx, step + " warm-up", srv.url("/cache?key=" + CACHE_KEY), ["--h1", "-n", "5000", "-c", "10"], 60)
            for phase in PHASES:
                calc_rps = None
                if phase == "alone":
                    r, pc, busy = measure(ctx, step, srv, phase, args_base, dur)
                else:
                    argv = ["ab", "-q", "-r", "-c", "8", "-n", "10000000", "-t", str(dur + 3), srv.url("/calc")]
                    with BackgroundLoad(ctx, step + " /calc load", argv, slug(step) + ".calc.out") as calc:
                        time.sleep(1.0)
                        r, pc, busy = measure(ctx, step, srv, phase, args_base, dur)
                        calc_rps = parse_ab(calc.finish(dur + 30)).get("rps")
                row = dict(phase=phase, rep=rep, status=r["status"], rps=r.get("rps"), errors=r.get("errors"),
                           p50_ms=pc.get("p50"), p99_ms=pc.get("p99"), max_ms=pc.get("max"), count=pc.get("count"),
                           server_cpu_util=round(busy, 2), calc_rps=calc_rps)
                rows.append(row)
                ctx.progress("%s /cache %s: %s, p50 %s ms, p99 %s ms, server CPU %.2f cores, /calc %s req/s" % (
                    step, phase, r["status"], fmt(row["p50_ms"], 3), fmt(row["p99_ms"], 3), busy, fmt(calc_rps, 0)))
    return {CSV: rows}


def plot(data, ctx):
    iso_rows = data[CSV]
    if not any(r.get("p99_ms") is not None for r in iso_rows):
        return []
    with open(ctx.path("isolation.dat"), "w") as f:
        f.write("# phase p50_median p50_min p50_max p99_median p99_min p99_max (ms)\n")
        for phase in PHASES:
            rr = [r for r in iso_rows if r.get("phase") == phase and r.get("p99_ms") is not None]
            cols = []
            for k in ("p50_ms", "p99_ms"):
                vals = [r[k] for r in rr]
                lo, hi = spread(vals)
                cols += [median(vals), lo, hi]
            f.write('"/cache %s" %s\n' % (phase, " ".join(gnum(x) for x in cols)))
    return [("isolation.gp", "isolation.png")]


def summarise(data, ctx):
    out = Summary()
    iso_rows = data[CSV]
    if not iso_rows:
        return out
    P = ctx.params
    lines = ["/cache hits at a fixed rate (`h2load --h1 -c %d --rps %d -D %d`, %d req/s in all) with latency "
             "percentiles from h2load's per-request log, first alone, then while `ab -c 8 /calc` keeps weir's "
             "thread pool busy (weir: 1 worker thread, the /calc pool's threads (one per CPU, nice 10), all on cpu "
             "%s)." % (P["exp6_clients"], P["exp6_rps_per_client"], P["exp6_duration"],
                       P["exp6_clients"] * P["exp6_rps_per_client"], ctx.server_cpus), ""]
    trs = []
    med = {}
    for phase in PHASES:
        rr = [r for r in iso_rows if r.get("phase") == phase and r.get("p99_ms") is not None]
        if not rr:
            continue
        med[phase] = median([r["p99_ms"] for r in rr])
        lo, hi = spread([r["p99_ms"] for r in rr])
        trs.append(["/cache " + phase, fmt(median([r["p50_ms"] for r in rr]), 3),
                    "%s (%s-%s)" % (fmt(med[phase], 3), fmt(lo, 3), fmt(hi, 3)),
                    fmt(median([r["max_ms"] for r in rr]), 2), sum(r.get("errors") or 0 for r in rr),
                    fmt(median([r["server_cpu_util"] for r in rr]), 2),
                    fmt(median([r.get("calc_rps") for r in rr]), 0)])
    lines += table(["phase", "p50 (ms)", "p99 (ms) median (min-max)", "max (ms)", "errors",
                    "server CPU (cores)", "/calc req/s"], trs)
    if "alone" in med and "under /calc" in med:
        ratio = med["under /calc"] / med["alone"]
        out.target("6", "/cache p99 under /calc saturation <= 3x its p99 alone",
                   "%.3f ms vs %.3f ms (%.2fx)" % (med["under /calc"], med["alone"], ratio), ratio <= 3.0,
                   "isolation.png")
    out.section("Experiment 6: isolation", lines, ["isolation.png"])
    return out


EXPERIMENT = Experiment(
    "exp6",
    about="/cache latency alone and under /calc saturation",
    files={CSV: HEADER},
    params={
        "full": dict(exp6_duration=8, exp6_rps_per_client=200, exp6_clients=10),
        "quick": dict(exp6_duration=3, exp6_rps_per_client=200, exp6_clients=10),
    },
    run=run, plot=plot, summarise=summarise)
