"""Experiment 3: /calc with `ab -n 200 -c 10` (the seed's Result 2); weir against the bare summation loop
(bench/calc_loop.c, timed alone on the same core right after weir), on one core and on two."""

import os
import re
import subprocess

from .common import CALC_LOOP, fmt, gnum, median, pinned, spread
from .experiment import Experiment, Summary
from .load import ab
from .procs import cpu_seconds, thread_cpu
from .report import table
from .servers import Server, weir_conf

CALC_SERVERS = [
    ("weir", "weir, 1 core"),
    ("aiohttp", "aiohttp (Sanic's app)"),
    ("flask-threaded", "Flask threaded=True"),
    ("flask", "Flask threaded=False"),
]
ORDER = ["weir", "weir-2cores", "aiohttp", "flask-threaded", "flask"]

CSV, LOOP_CSV = "calc.csv", "calc_loop.csv"
HEADER = ["server", "rep", "n", "c", "status", "rps", "mean_ms", "p99_ms", "tpr_all_ms", "tpr_all_long_ms", "rps_long",
          "cpu_long_ms_per_req", "loop_cpu_ms_per_req", "pool_cpu_ms_per_req", "cpu_s", "cpu_ms_per_req"]
LOOP_HEADER = ["rep", "median_ms", "min_ms", "mean_ms", "cpu_ms", "ref_median_ms", "ref_min_ms", "result"]


def bare_loop(ctx, rep):
    """calc_loop 1000000 1000 on the server cpus: its row, or None when it printed no figures."""
    argv = pinned([CALC_LOOP, "1000000", "1000"], ctx.server_cpus)
    ctx.record("exp3 bare loop rep %d" % rep, argv)
    out = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=120).stdout
    m = re.search(r"median_ms=([\d.]+) min_ms=([\d.]+) mean_ms=([\d.]+) cpu_ms=([\d.]+)", out)
    if not m:
        return None
    ctx.progress("exp3 bare loop rep %d: median %s ms, mean %s ms, CPU %s ms per call" % (
        rep, m.group(1), m.group(3), m.group(4)))
    ref = re.search(r"ref_median_ms=([\d.]+) ref_min_ms=([\d.]+)", out)
    return dict(rep=rep, median_ms=float(m.group(1)), min_ms=float(m.group(2)), mean_ms=float(m.group(3)),
                cpu_ms=float(m.group(4)), ref_median_ms=float(ref.group(1)) if ref else None,
                ref_min_ms=float(ref.group(2)) if ref else None, result=out.split("result=")[1].split()[0])


def run(ctx):
    P = ctx.params
    reps, n, c = P["reps"], P["exp3_n"], P["exp3_c"]
    rows, loop_rows = [], []
    configs = [(sid, label, ctx.server_cpus, 1) for sid, label in CALC_SERVERS]
    if ctx.ncpu >= 2:
        configs.append(("weir-2cores", "weir, 2 cores", "0,1", 2))
    for rep in range(1, reps + 1):
        for sid, label, cpus, threads in configs:
            if ctx.out_of_time(margin=30):
                rows.append(dict(server=sid, rep=rep, status="not run (run budget)"))
                continue
            is_weir = sid.startswith("weir")
            step = "exp3 %s rep %d" % (sid, rep)
            if is_weir:
                srv = Server(ctx, "weir", label, cpus=cpus, conf=weir_conf(threads=threads, calc=True))
            else:
                srv = Server(ctx, sid, label)
            with srv.start(step):
                ab(ctx, step + " warm-up", srv.url("/calc"), 4, 4, limit=60)
                tree = srv.tree()
                cpu0 = cpu_seconds(tree)
                r = ab(ctx, step, srv.url("/calc"), n, c, limit=120)
                cpu1 = cpu_seconds(tree)
                row = dict(server=sid, rep=rep, n=n, c=c, status=r["status"], rps=r.get("rps"),
                           mean_ms=r.get("mean_ms"), p99_ms=r.get("p99_ms"), tpr_all_ms=r.get("tpr_all_ms"),
                           cpu_s=round(cpu1 - cpu0, 3), cpu_ms_per_req=round((cpu1 - cpu0) * 1000.0 / n, 3))
                if is_weir:
                    # weir's time per request, RPS and CPU per request over more requests, for steadier figures
                    cpu0 = cpu_seconds(tree)
                    th0 = thread_cpu(srv.pid)
                    r2 = ab(ctx, step + " (n=%d)" % P["exp3_weir_n"], srv.url("/calc"), P["exp3_weir_n"], c, limit=120)
                    cpu1 = cpu_seconds(tree)
                    th1 = thread_cpu(srv.pid)
                    # Threads in creation order: the main thread, `threads` worker loops, then the /calc work pool's threads.
                    tids = sorted(th1)
                    loops, pool = tids[1:1 + threads], tids[1 + threads:]
                    nn2 = float(P["exp3_weir_n"])
                    row["loop_cpu_ms_per_req"] = round(sum(th1[t] - th0.get(t, 0) for t in loops) * 1000 / nn2, 4)
                    row["pool_cpu_ms_per_req"] = round(sum(th1[t] - th0.get(t, 0) for t in pool) * 1000 / nn2, 4)
                    row["tpr_all_long_ms"] = r2.get("tpr_all_ms")
                    row["rps_long"] = r2.get("rps")
                    row["cpu_long_ms_per_req"] = round((cpu1 - cpu0) * 1000.0 / P["exp3_weir_n"], 4)
                rows.append(row)
            ctx.progress("%s: %s, %s req/s, mean %s ms, p99 %s ms, CPU %s s%s" % (
                step, row["status"], fmt(row["rps"], 1), fmt(row["mean_ms"], 1), row["p99_ms"], row["cpu_s"],
                ("; n=%d: %s ms per request, %s ms CPU per request (HTTP loop %s, sums %s)" % (
                    P["exp3_weir_n"], row.get("tpr_all_long_ms"), row.get("cpu_long_ms_per_req"),
                    row.get("loop_cpu_ms_per_req"), row.get("pool_cpu_ms_per_req")))
                if is_weir else ""))
            if sid == "weir" and os.path.exists(CALC_LOOP):
                # The bare loop, timed alone on the same core, right after weir (so under the same conditions)
                loop_row = bare_loop(ctx, rep)
                if loop_row:
                    loop_rows.append(loop_row)
    return {CSV: rows, LOOP_CSV: loop_rows}


def plot(data, ctx):
    calc_rows = data[CSV]
    if not any(r.get("rps") for r in calc_rows):
        return []
    with open(ctx.path("calc.dat"), "w") as f:
        f.write("# label median_rps min_rps max_rps\n")
        labels = dict(CALC_SERVERS + [("weir-2cores", "weir, 2 cores")])
        for sid in ORDER:
            vals = [r.get("rps") for r in calc_rows if r["server"] == sid]
            if median(vals) is None:
                continue
            lo, hi = spread(vals)
            f.write('"%s" %s %s %s\n' % (labels[sid], gnum(median(vals)), gnum(lo), gnum(hi)))
    return [("calc.gp", "calc.png")]


def summarise(data, ctx):
    out = Summary()
    calc_rows, loop_rows = data[CSV], data[LOOP_CSV]
    if not calc_rows:
        return out
    P = ctx.params
    lines = ["`ab -n %d -c %d /calc` (sum of i**2 for i < 1,000,000; every server answers 333332833333500000). "
             "CPU is the server's user + system time during the measured run (from /proc/PID/stat)." %
             (P["exp3_n"], P["exp3_c"]), ""]
    labels3 = dict(CALC_SERVERS + [("weir-2cores", "weir, 2 cores (num-threads 2, on cpus 0-1; ab on cpu 1, sharing it)")])
    trs = []
    for sid in ORDER:
        rr = [r for r in calc_rows if r["server"] == sid and r.get("rps") is not None]
        if not rr:
            continue
        lo, hi = spread([r["rps"] for r in rr])
        trs.append([labels3[sid], "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 1), fmt(lo, 1), fmt(hi, 1)),
                    fmt(median([r["mean_ms"] for r in rr]), 2), fmt(median([r["p99_ms"] for r in rr]), 0),
                    fmt(median([r["cpu_s"] for r in rr]), 2), fmt(median([r["cpu_ms_per_req"] for r in rr]), 2),
                    ", ".join(sorted(set(r["status"] for r in rr)))])
    lines += table(["server", "RPS median (min-max)", "mean latency (ms)", "p99 (ms)", "CPU (s)",
                    "CPU per request (ms)", "status"], trs)
    w_tpr = median([r.get("tpr_all_long_ms") for r in calc_rows if r["server"] == "weir"])
    w_cpu = median([r.get("cpu_long_ms_per_req") for r in calc_rows if r["server"] == "weir"])
    loop_ms = median([r["median_ms"] for r in loop_rows]) if loop_rows else None
    loop_cpu = median([r.get("cpu_ms") for r in loop_rows]) if loop_rows else None
    lines.append("")
    if w_tpr and loop_ms:
        ratio = w_tpr / loop_ms
        lines.append("weir's time per request on one core (ab's \"time per request across all concurrent "
                     "requests\" over `-n %d -c %d`): **%.3f ms**, of which CPU (all of weir's threads, from "
                     "/proc): **%s ms**. The bare loop `weir_calc_sum_squares(1000000)` timed alone on the same core "
                     "right after weir (bench/calc_loop.c, 1000 calls): median **%.3f ms** wall, **%s ms** CPU. "
                     "Ratios: wall **%.2f**, CPU **%s**." % (
                         P["exp3_weir_n"], P["exp3_c"], w_tpr, fmt(w_cpu, 3), loop_ms, fmt(loop_cpu, 3), ratio,
                         fmt(w_cpu / loop_cpu if w_cpu and loop_cpu else None, 2)))
        out.target("3", "weir's time per /calc within 1.2x of the bare summation loop (wall)",
                   "%.3f ms vs %.3f ms (%.2fx)" % (w_tpr, loop_ms, ratio), ratio <= 1.2, "calc.png")
        w_loop = median([r.get("loop_cpu_ms_per_req") for r in calc_rows if r["server"] == "weir"])
        w_pool = median([r.get("pool_cpu_ms_per_req") for r in calc_rows if r["server"] == "weir"])
        if w_loop is not None and w_pool is not None and loop_cpu:
            lines.append("")
            if w_pool / loop_cpu > 1.1:
                why = ("most of the difference is the sums themselves costing more inside the server than alone "
                       "(the same code, run while the core also takes the wakeups of one TCP connection per "
                       "request); in this VM that cost moves with the host's load, see bench/NOTES.md")
            else:
                why = ("ab without `-k`, as in the seed, opens and closes a TCP connection for every request, and "
                       "that accept / read / respond / close on loopback is most of the difference")
            lines.append("Where weir's CPU goes (per request, from each thread's /proc/PID/task/TID/schedstat): the "
                         "sums on the /calc pool's threads **%.3f ms** (the bare loop: %.3f ms CPU, ratio %.2f), the "
                         "HTTP worker loop **%.3f ms**: %s." % (w_pool, loop_cpu, w_pool / loop_cpu, w_loop, why))
        if w_cpu and loop_cpu:
            out.target("3", "the same in CPU time per request (insensitive to neighbours)",
                       "%.3f ms vs %.3f ms (%.2fx)" % (w_cpu, loop_cpu, w_cpu / loop_cpu), w_cpu / loop_cpu <= 1.2,
                       "calc.png")
    ref_ms = median([r.get("ref_median_ms") for r in loop_rows]) if loop_rows else None
    if loop_ms and ref_ms:
        # calc_loop times, interleaved, the loop as it was before sums could be cancelled (no blocks, no flag)
        lines.append("")
        lines.append("What the cancellation checks cost (a look at the flag every 8192 iterations): the bare loop "
                     "median **%.4f ms** against **%.4f ms** for the same loop without blocks and flag, as it was "
                     "before sums could be cancelled, timed interleaved with it (ratio **%.3f**)." % (
                         loop_ms, ref_ms, loop_ms / ref_ms))
        out.target("3", "the cancellation checks cost nothing measurable: bare loop with checks / without",
                   "%.4f ms vs %.4f ms (%.3fx)" % (loop_ms, ref_ms, loop_ms / ref_ms), loop_ms / ref_ms <= 1.02,
                   "calc.png")
    w1 = median([r.get("rps_long") for r in calc_rows if r["server"] == "weir"])
    w2 = median([r.get("rps_long") for r in calc_rows if r["server"] == "weir-2cores"])
    if w1 and w2:
        lines.append("")
        lines.append("Cores (`ab -n %d -c %d`): weir on 1 core %.1f req/s, on 2 cores %.1f req/s (x%.2f; on 2 cores "
                     "ab shares them)." % (P["exp3_weir_n"], P["exp3_c"], w1, w2, w2 / w1))
        out.target("3", "weir's /calc RPS grows with cores",
                   "1 core %.0f req/s, 2 cores %.0f req/s (x%.2f)" % (w1, w2, w2 / w1), w2 > w1 * 1.3, "calc.png")
    out.section("Experiment 3: /calc, CPU-bound (the seed's Result 2)", lines, ["calc.png"])
    return out


EXPERIMENT = Experiment(
    "exp3",
    about="/calc against the bare summation loop, on one core and two",
    files={CSV: HEADER, LOOP_CSV: LOOP_HEADER},
    params={
        "full": dict(exp3_n=200, exp3_c=10, exp3_weir_n=2000),
        "quick": dict(exp3_n=10, exp3_c=10, exp3_weir_n=400),
    },
    run=run, plot=plot, summarise=summarise)
