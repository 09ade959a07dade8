"""Experiment 4: 10,000 concurrent uploads (h2load), with weir's ceiling (no delay) beside it, and a probe of where
weir's memory per request in flight goes (plain sockets: idle connections, then one request each)."""

import resource
import socket
import time

from .common import fmt, gnum, median, spread
from .experiment import Experiment, Summary
from .load import ab, h2load
from .procs import MemSampler
from .report import table
from .servers import Server, weir_conf

CSV, PROBE_CSV = "scale.csv", "scale_memory.csv"
HEADER = ["kind", "rep", "conns", "delay_min", "delay_max", "status", "rps", "done", "succeeded", "errors", "mean_ms",
          "base_rss_kib", "peak_rss_kib", "kib_per_inflight"]
PROBE_HEADER = ["rep", "base_kib", "idle_kib_per_conn", "request_kib", "total_kib"]
KINDS = (("delay", "100-200 ms delays"), ("ceiling", "no delay (ceiling)"))


def prepare(ctx):
    """Fewer connections when the open-file limit cannot hold 10,000 (recorded in run.json's params)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < ctx.params["exp4_conns"] + 1000:
        ctx.params["exp4_conns"] = max(1000, soft - 1000)
        ctx.progress("open-file limit is %d: Exp 4 uses %d connections" % (soft, ctx.params["exp4_conns"]))


def conn_memory_probe(ctx, step, conns):
    """Where weir's memory per request in flight goes: RSS per idle connection (connected, nothing sent), then per
    request (every connection sends one POST /upload, which waits 3 s), with a plain socket client (no h2load)."""
    srv = Server(ctx, "weir", "weir", conf=weir_conf(upload=(conns, 3000, 3000), calc=False)).start(step)
    socks = []
    try:
        with srv:
            time.sleep(0.2)
            base = srv.rss_kib()
            ctx.record(step + ": %d idle connections, then one POST /upload on each (python sockets)" % conns, [])
            for _ in range(conns):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", srv.port))
                except BlockingIOError:
                    pass
                socks.append(s)
            time.sleep(1.5)
            idle = srv.rss_kib()
            req = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx"
            for s in socks:
                try:
                    s.send(req)
                except OSError:
                    pass
            peak, t = 0, time.monotonic()
            while time.monotonic() - t < 2.5:  # the requests wait 3 s: all are in flight here
                peak = max(peak, srv.rss_kib())
                time.sleep(0.02)
    finally:
        for s in socks:
            s.close()
    return dict(base_kib=base, idle_kib_per_conn=round((idle - base) / float(conns), 3),
                request_kib=round((peak - idle) / float(conns), 3), total_kib=round((peak - base) / float(conns), 3))


def run(ctx):
    P = ctx.params
    reps, conns = P["reps"], P["exp4_conns"]
    rows = []
    args = ["--h1", "-c", str(conns), "-t", "1", "-D", str(P["exp4_duration"]),
            "--warm-up-time", str(P["exp4_warmup"]), "-d", ctx.one_byte]
    for rep in range(1, reps + 1):
        for kind, delays in (("ceiling", (0, 0)), ("delay", (100, 200))):
            if ctx.out_of_time(margin=P["exp4_duration"] + P["exp4_warmup"] + 30):
                rows.append(dict(kind=kind, rep=rep, status="not run (run budget)"))
                continue
            step = "exp4 %s rep %d" % (kind, rep)
            srv = Server(ctx, "weir", "weir", conf=weir_conf(upload=(conns, delays[0], delays[1]), calc=False))
            with srv.start(step):
                ab(ctx, step + " warm-up", srv.url("/upload"), 20, 10, method="POST", limit=30)
                time.sleep(0.2)
                base = srv.rss_kib()
                smp = MemSampler(srv.pid, interval=0.02).start()
                r = h2load(ctx, step, srv.url("/upload"), args, P["exp4_duration"] + P["exp4_warmup"] + 120)
                smp.stop()
            row = dict(kind=kind, rep=rep, conns=conns, delay_min=delays[0], delay_max=delays[1], status=r["status"],
                       rps=r.get("rps"), done=r.get("done"), succeeded=r.get("succeeded"), errors=r.get("errors"),
                       mean_ms=r.get("mean_ms"), base_rss_kib=base, peak_rss_kib=smp.peak_rss,
                       kib_per_inflight=round((smp.peak_rss - base) / float(conns), 3))
            rows.append(row)
            ctx.progress("%s: %s, %s req/s, errors %s, mean %s ms, RSS %d -> %d KiB (%.2f KiB per request in flight)" % (
                step, row["status"], fmt(row["rps"], 0), row["errors"], fmt(row["mean_ms"], 1), base, smp.peak_rss,
                row["kib_per_inflight"]))
    probe_rows = []
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=20):
            break
        try:
            pr = conn_memory_probe(ctx, "exp4 memory probe rep %d" % rep, conns)
        except (RuntimeError, OSError) as e:
            ctx.progress("exp4 memory probe failed: %s" % e)
            break
        pr["rep"] = rep
        probe_rows.append(pr)
        ctx.progress("exp4 memory probe rep %d: %.2f KiB per idle connection, +%.2f KiB per request in flight, %.2f KiB "
                     "in all" % (rep, pr["idle_kib_per_conn"], pr["request_kib"], pr["total_kib"]))
    return {CSV: rows, PROBE_CSV: probe_rows}


def plot(data, ctx):
    scale_rows, probe = data[CSV], data[PROBE_CSV]
    if not any(r.get("rps") for r in scale_rows):
        return []
    conns = ctx.params["exp4_conns"]
    with open(ctx.path("scale.dat"), "w") as f:
        f.write("# panel label median min max (req/s, or KiB per request in flight)\n")
        for kind, label in KINDS:
            vals = [r.get("rps") for r in scale_rows if r.get("kind") == kind and r.get("rps")]
            lo, hi = spread(vals)
            f.write('1 "%s" %s %s %s\n' % (label, gnum(median(vals)), gnum(lo), gnum(hi)))
        f.write('1 "bound %d / 0.15 s" %s %s %s\n' % (conns, gnum(conns / 0.15), gnum(conns / 0.15),
                                                     gnum(conns / 0.15)))
        f.write("\n\n")
        vals = [r.get("kib_per_inflight") for r in scale_rows if r.get("kind") == "delay" and r.get("rps")]
        lo, hi = spread(vals)
        f.write('2 "h2load run (delays)" %s %s %s\n' % (gnum(median(vals)), gnum(lo), gnum(hi)))
        for k, label in (("idle_kib_per_conn", "probe: idle connection"), ("total_kib", "probe: request read")):
            vals = [r.get(k) for r in probe]
            lo, hi = spread(vals)
            f.write('2 "%s" %s %s %s\n' % (label, gnum(median(vals)), gnum(lo), gnum(hi)))
    return [("scale.gp", "scale.png")]


def summarise(data, ctx):
    out = Summary()
    scale_rows, probe = data[CSV], data[PROBE_CSV]
    if not scale_rows:
        return out
    P = ctx.params
    conns = P["exp4_conns"]
    bound = conns / 0.15
    ceil_r = [r for r in scale_rows if r["kind"] == "ceiling" and r.get("rps")]
    del_r = [r for r in scale_rows if r["kind"] == "delay" and r.get("rps")]
    ceiling = median([r["rps"] for r in ceil_r])
    rps = median([r["rps"] for r in del_r])
    errs = sum(r.get("errors") or 0 for r in del_r)
    kib = median([r["kib_per_inflight"] for r in del_r])
    lines = ["weir with `upload.concurrency: %d` and `upload.delay-min/max: 100/200`; "
             "`h2load --h1 -c %d -t 1 -D %d --warm-up-time %d -d <1-byte body>` POST /upload (h2load cannot "
             "send an empty file; each connection keeps one request in flight, so %d requests are in flight). "
             "The bound is %d / 0.15 s = %.0f req/s; weir's own ceiling is the same command with delays 0/0 "
             "(one h2load thread on one core drives 10,000 connections, so that ceiling may be the client's). "
             "RSS per request in flight = (peak RSS during the run - RSS before it) / %d." % (
                 conns, conns, P["exp4_duration"], P["exp4_warmup"], conns, conns, bound, conns), ""]
    trs = []
    for kind, label in KINDS:
        rr = [r for r in scale_rows if r["kind"] == kind and r.get("rps") is not None]
        if not rr:
            continue
        lo, hi = spread([r["rps"] for r in rr])
        trs.append([label, "%s (%s-%s)" % (fmt(median([r["rps"] for r in rr]), 0), fmt(lo, 0), fmt(hi, 0)),
                    sum(r.get("errors") or 0 for r in rr), fmt(median([r["mean_ms"] for r in rr]), 1),
                    fmt(median([r["base_rss_kib"] for r in rr]) / 1024.0, 1),
                    fmt(median([r["peak_rss_kib"] for r in rr]) / 1024.0, 1),
                    fmt(median([r["kib_per_inflight"] for r in rr]), 2)])
    lines += table(["run", "req/s median (min-max)", "errors (all reps)", "mean latency (ms)",
                    "RSS before (MiB)", "peak RSS (MiB)", "KiB per request in flight"], trs)
    if rps and ceiling:
        ref = min(bound, ceiling)
        frac = rps / ref
        ok4 = frac >= 0.8 and errs == 0 and kib is not None and kib <= 8
        lines.append("")
        lines.append("Throughput %.0f req/s = %.0f%% of min(bound %.0f, ceiling %.0f) = %.0f req/s, and %.0f%% of "
                     "the bound alone. At this scale both cores are busy: weir's (one worker thread) and the load "
                     "generator's (one h2load thread for 10,000 connections); see bench/NOTES.md for where "
                     "weir's time goes." % (rps, 100 * frac, bound, ceiling, ref, 100.0 * rps / bound))
        out.target("4", ">= 80%% of min(bound, ceiling) at %d connections, 0 errors, <= 8 KiB RSS per request in "
                   "flight" % conns,
                   "%.0f req/s = %.0f%% of %.0f; %d errors; %.2f KiB per request" % (
                       rps, 100 * frac, ref, errs, kib or float("nan")), ok4, "scale.png")
    if probe:
        lines.append("")
        lines.append("Where that memory goes (a plain socket client: %d connections that send nothing, then one "
                     "POST each, held 3 s): **%s KiB per silent connection** (weir's listeners ask the kernel to defer "
                     "each connection until its client speaks; in a burst of this size the kernel hands some over "
                     "anyway, and those cost weir the socket, h2o's connection and the libuv handle), **+%s KiB per "
                     "request** once it has been read (the rest of the connections, and the requests), **%s KiB in "
                     "all** (median of %d). "
                     "The request's share is two pages that libh2o 2.2.5 touches for every request it reads: the "
                     "first page of the connection's socket input buffer (8 KiB reserved at the first read, "
                     "`h2o_socket_buffer_prototype`, kept for the life of the connection) and the first 4 KiB "
                     "chunk of the request's memory pool, where h2o keeps the parsed headers; weir's own share (the "
                     "upload job, one allocation linked to that pool) is about 150 bytes. h2load's connections also "
                     "hold the previous response's state, hence the higher figure above." % (
                         conns, fmt(median([r["idle_kib_per_conn"] for r in probe]), 2),
                         fmt(median([r["request_kib"] for r in probe]), 2),
                         fmt(median([r["total_kib"] for r in probe]), 2), len(probe)))
    out.section("Experiment 4: scale, %d concurrent uploads" % conns, lines, ["scale.png"])
    return out


EXPERIMENT = Experiment(
    "exp4",
    about="10,000 concurrent uploads, and where the memory per request goes",
    files={CSV: HEADER, PROBE_CSV: PROBE_HEADER},
    params={
        "full": dict(exp4_conns=10000, exp4_duration=8, exp4_warmup=2),
        "quick": dict(exp4_conns=10000, exp4_duration=2, exp4_warmup=1),
    },
    run=run, plot=plot, summarise=summarise, prepare=prepare)
