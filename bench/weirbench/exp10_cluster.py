"""Experiment 10: a cluster of weir instances sharing one /upload gate through Redis (`upload.gate: redis`): the
aggregate throughput of 1, 2 and 3 instances against the global bound (slots / delay), beside the same instances with
local gates (which give N times it); the Redis commands per upload (INFO commandstats); and the latency the shared
gate adds to an upload that does not wait, against the local gate."""

import contextlib
import math
import os
import re
import time

from .common import fmt, gnum, median, slug
from .experiment import Experiment, Summary
from .load import BackgroundLoad, h2load, parse_h2load, percentiles_from_h2load_log, run_load
from .procs import cpu_seconds
from .report import table
from .servers import UPLOAD_MAX_QUEUE, UPLOAD_QUEUE_TIMEOUT_MS, Server, weir_conf

CSV = "cluster.csv"
HEADER = ["kind", "instances", "gate", "rep", "status", "uploads", "ok", "errors", "window_s", "ideal_s", "rps",
          "bound_rps", "members", "counted_s", "evalsha", "cmds_sent", "cmds_in_scripts", "publish", "redis_cpu_s",
          "delay_ms", "p50_ms", "p99_ms", "max_ms", "commands"]
GATES = ("redis", "local")
GATE_NAME = "weirbench"
# What weir sends to Redis itself (src/redis/client.c, src/gate_redis.c); INFO commandstats also counts the commands
# that the scripts run (TIME, ZADD, PUBLISH...), under their own names. INFO and COMMAND are redis-cli's own.
SENT = ("evalsha", "eval", "script", "ping", "subscribe", "auth", "select")
NOT_WEIR = ("info", "command")


def commandstats(ctx, step, redis):
    """(when, {command: calls}) of `INFO commandstats` (subcommands such as script|load folded into their command);
    when: the monotonic time halfway through redis-cli's run."""
    t = time.monotonic()
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "INFO", "commandstats"]
    rc, out, elapsed = run_load(ctx, step, argv, 30)
    if rc != 0:
        raise RuntimeError("redis-cli INFO commandstats failed (rc %s): %s" % (rc, out.strip()[-200:]))
    calls = {}
    for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+)", out, re.M):
        name = m.group(1).split("|")[0].lower()
        calls[name] = calls.get(name, 0) + int(m.group(2))
    return t + elapsed / 2, calls


def command_figures(before, after):
    """What weir made Redis do between two commandstats ((monotonic time, calls) each): the deltas, the commands it
    sent and those its scripts ran, and the seconds between the two."""
    (t0, before), (t1, after) = before, after
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v and k not in NOT_WEIR}
    sent = sum(v for k, v in delta.items() if k in SENT)
    return dict(counted_s=round(t1 - t0, 3), evalsha=delta.get("evalsha", 0), cmds_sent=sent,
                cmds_in_scripts=sum(delta.values()) - sent, publish=delta.get("publish", 0),
                commands=" ".join("%s=%d" % kv for kv in sorted(delta.items())))


def h2load_log(path):
    """(start_us, status, duration_us) of every request in an h2load --log-file."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def cluster(ctx, stack, step, n, gate):
    """A fresh redis-server (redis gate only) and n weir instances with 5 slots of a fixed delay each, warmed up with
    one round of uploads each; returns (redis or None, [weir servers])."""
    P = ctx.params
    redis = None
    if gate == "redis":
        redis = stack.enter_context(Server(ctx, "redis", "redis-server").start(step + " redis"))
    conf = weir_conf(upload=(P["exp10_slots"], P["exp10_delay_ms"], P["exp10_delay_ms"]), calc=False,
                     upload_gate=("redis", redis.port, GATE_NAME) if redis else None)
    insts = [stack.enter_context(Server(ctx, "weir", "weir %d of %d (%s gate)" % (i + 1, n, gate), conf=conf)
                                 .start("%s weir %d" % (step, i + 1))) for i in range(n)]
    for i, srv in enumerate(insts):
        k = P["exp10_slots"]
        r = h2load(ctx, "%s weir %d warm-up" % (step, i + 1), srv.url("/upload"),
                   ["--h1", "-n", str(k), "-c", str(k), "-t", "1", "-d", ctx.one_byte], 60)
        if r["status"] != "ok":
            raise RuntimeError("%s: the warm-up of weir %d failed: %s" % (step, i + 1, r["status"]))
    return redis, insts


def burst(ctx, step, n, gate, rep):
    """exp10_uploads POST /upload sent at once over n instances (one h2load per instance, all started together, one
    connection per upload); the aggregate throughput from h2load's per-request logs, and what Redis did meanwhile."""
    P = ctx.params
    uploads, delay = P["exp10_uploads"], P["exp10_delay_ms"]
    bound = P["exp10_slots"] / (delay / 1000.0)
    shares = [uploads // n + (1 if i < uploads % n else 0) for i in range(n)]
    # the shortest time possible: rounds of `slots` uploads, over all instances (redis) or on the busiest one (local)
    rounds = math.ceil((uploads if gate == "redis" else shares[0]) / float(P["exp10_slots"]))
    row = dict(kind="burst", instances=n, gate=gate, rep=rep, uploads=uploads, delay_ms=delay,
               ideal_s=round(rounds * delay / 1000.0, 3), bound_rps=round(bound * (1 if gate == "redis" else n), 3))
    expected_s = uploads / row["bound_rps"]
    with contextlib.ExitStack() as stack:
        redis, insts = cluster(ctx, stack, step, n, gate)
        if redis:
            before = commandstats(ctx, step + " INFO commandstats before", redis)
            cpu0 = cpu_seconds(redis.tree())
        logs = [os.path.join(ctx.tmp, slug("%s h2load %d" % (step, i + 1)) + ".log") for i in range(n)]
        loads = []
        for i, srv in enumerate(insts):
            argv = ["h2load", "--h1", "-n", str(shares[i]), "-c", str(shares[i]), "-t", "1", "-d", ctx.one_byte,
                    "--log-file", logs[i], srv.url("/upload")]
            loads.append(stack.enter_context(BackgroundLoad(ctx, "%s h2load %d of %d" % (step, i + 1, n), argv,
                                                            slug("%s h2load %d" % (step, i + 1)) + ".out")))
        outs = [parse_h2load(bg.finish(expected_s * 2 + 60)) for bg in loads]
        if redis:
            redis_cpu = cpu_seconds(redis.tree()) - cpu0
            after = commandstats(ctx, step + " INFO commandstats after", redis)
    reqs = [x for path in logs if os.path.exists(path) for x in h2load_log(path)]
    ok = sum(1 for _, st, _ in reqs if 200 <= st < 300)
    row.update(ok=ok, errors=uploads - ok)
    if reqs:
        window = (max(s + d for s, _, d in reqs) - min(s for s, _, _ in reqs)) / 1e6
        row.update(window_s=round(window, 4), rps=round(ok / window, 3) if window > 0 else None)
    row["status"] = "ok" if ok == uploads and all(o.get("succeeded") == s for o, s in zip(outs, shares)) else "errors"
    if redis:
        row.update(command_figures(before, after), redis_cpu_s=round(redis_cpu, 4), members=n)
    return row


def latency(ctx, step, rep):
    """Two instances side by side, one with the redis gate and one with a local gate, each driven at the same time by
    exp10_slots closed-loop clients (never more uploads than slots: nobody waits), exp10_latency_n uploads each:
    h2load's per-request latency, of which all but the fixed delay is HTTP's, the gate's and the timer's. Measured at
    once, so that the machine's other load falls on both alike. Returns a row per gate."""
    P = ctx.params
    k, total = P["exp10_slots"], P["exp10_latency_n"]
    logs = {g: os.path.join(ctx.tmp, slug("%s %s gate" % (step, g)) + ".h2load.log") for g in GATES}
    rows = {g: dict(kind="latency", instances=1, gate=g, rep=rep, uploads=total, delay_ms=P["exp10_delay_ms"])
            for g in GATES}
    with contextlib.ExitStack() as stack:
        redis, (shared,) = cluster(ctx, stack, step + " redis gate", 1, "redis")
        _, (local,) = cluster(ctx, stack, step + " local gate", 1, "local")
        before = commandstats(ctx, step + " INFO commandstats before", redis)
        cpu0 = cpu_seconds(redis.tree())
        loads = {}
        for g, srv in (("redis", shared), ("local", local)):
            argv = ["h2load", "--h1", "-n", str(total), "-c", str(k), "-t", "1", "-d", ctx.one_byte, "--log-file",
                    logs[g], srv.url("/upload")]
            loads[g] = stack.enter_context(BackgroundLoad(ctx, "%s h2load, %s gate" % (step, g), argv,
                                                          slug("%s %s gate" % (step, g)) + ".h2load.out"))
        outs = {g: parse_h2load(bg.finish(total / k * P["exp10_delay_ms"] / 1000.0 * 2 + 60))
                for g, bg in loads.items()}
        redis_cpu = cpu_seconds(redis.tree()) - cpu0
        after = commandstats(ctx, step + " INFO commandstats after", redis)
    rows["redis"].update(command_figures(before, after), redis_cpu_s=round(redis_cpu, 4), members=1)
    for g in GATES:
        o, pc = outs[g], percentiles_from_h2load_log(logs[g])
        errors = sum(o.get(x, 0) for x in ("failed", "errored", "timeout", "s3xx", "s4xx", "s5xx"))
        rows[g].update(status="ok" if o.get("succeeded") == total and not errors else "errors", ok=o.get("s2xx"),
                       errors=total - (o.get("s2xx") or 0), rps=o.get("rps"), p50_ms=pc.get("p50"),
                       p99_ms=pc.get("p99"), max_ms=pc.get("max"))
    return [rows[g] for g in GATES]


def run(ctx):
    P = ctx.params
    rows = []
    for rep in range(1, P["exp10_reps"] + 1):
        for n in P["exp10_instances"]:
            for gate in GATES:
                bound = P["exp10_slots"] / (P["exp10_delay_ms"] / 1000.0) * (1 if gate == "redis" else n)
                if ctx.out_of_time(margin=P["exp10_uploads"] / bound + 10):
                    rows.append(dict(kind="burst", instances=n, gate=gate, rep=rep, status="not run (run budget)"))
                    continue
                step = "exp10 %d instance%s %s gate rep %d" % (n, "" if n == 1 else "s", gate, rep)
                row = burst(ctx, step, n, gate, rep)
                rows.append(row)
                cmds = ""
                if gate == "redis":
                    cmds = ", %s commands sent per upload, %s run inside scripts" % (
                        fmt(_per_upload(row, "cmds_sent"), 2), fmt(_per_upload(row, "cmds_in_scripts"), 1))
                ctx.progress("%s: %s, %s of %s uploads in %s s: %s req/s (bound %s)%s" % (
                    step, row["status"], row["ok"], row["uploads"], fmt(row.get("window_s"), 3),
                    fmt(row.get("rps"), 2), fmt(row["bound_rps"], 1), cmds))
        if ctx.out_of_time(margin=P["exp10_latency_n"] / P["exp10_slots"] * P["exp10_delay_ms"] / 1000.0 + 10):
            rows += [dict(kind="latency", instances=1, gate=g, rep=rep, status="not run (run budget)") for g in GATES]
            continue
        step = "exp10 latency rep %d" % rep
        for row in latency(ctx, step, rep):
            rows.append(row)
            ctx.progress("%s, %s gate: %s, p50 %s ms, p99 %s ms, max %s ms (delay %d ms)" % (
                step, row["gate"], row["status"], fmt(row["p50_ms"], 3), fmt(row["p99_ms"], 3), fmt(row["max_ms"], 3),
                row["delay_ms"]))
    return {CSV: rows}


def _bursts(rows, n, gate):
    return [r for r in rows if r.get("kind") == "burst" and r.get("instances") == n and r.get("gate") == gate
            and r.get("rps") is not None]


def _per_upload(r, key):
    return r[key] / float(r["ok"]) if r.get(key) is not None and r.get("ok") else None


def plot(data, ctx):
    rows = data[CSV]
    if not any(r.get("kind") == "burst" and r.get("rps") is not None for r in rows):
        return []
    P = ctx.params
    bound = P["exp10_slots"] / (P["exp10_delay_ms"] / 1000.0)
    with open(ctx.path("cluster.dat"), "w") as f:
        f.write("# instances, global bound, N x bound, then per gate (%s): median req/s, min, max\n" % " ".join(GATES))
        for n in P["exp10_instances"]:
            cols = [n, bound, n * bound]
            for gate in GATES:
                vals = [r["rps"] for r in _bursts(rows, n, gate)]
                cols += [median(vals), min(vals) if vals else None, max(vals) if vals else None]
            f.write(" ".join(gnum(x) for x in cols) + "\n")
    return [("cluster.gp", "cluster.png")]


def summarise(data, ctx):
    out = Summary()
    rows = data[CSV]
    if not rows:
        return out
    P = ctx.params
    slots, delay, uploads = P["exp10_slots"], P["exp10_delay_ms"], P["exp10_uploads"]
    bound = slots / (delay / 1000.0)
    reps = P["exp10_reps"]
    lines = ["N weir instances (`num-threads: 1`, on cpu %s with their redis-server), each with `upload.concurrency: "
             "%d`, `upload.delay-min = upload.delay-max = %d`, `upload.max-queue: %d`, `upload.queue-timeout: %d`; "
             "**redis**: `upload.gate: redis` on one fresh redis-server (loopback, no persistence; the other "
             "`upload.redis.*` keys at their defaults: lease 10 s, renewal every second), so that the %d slots are "
             "shared by all N; **local**: each instance its own %d slots (the default gate). %d POST /upload are sent "
             "at once over the N instances: one `h2load --h1 -n K -c K -t 1` per instance (K = %d / N, one connection "
             "per upload), all started together on cpu %s. Aggregate throughput = 2xx answers / (end of the last "
             "answer - start of the first request), from h2load's per-request logs; the global bound is %d / %.2f s "
             "= %.1f req/s, local gates allow N times it; the ideal time is whole rounds of %d uploads (over all "
             "instances for redis, on the busiest instance for local). Redis commands from `INFO commandstats` "
             "(redis-cli) just before and after the burst: those weir sent (EVALSHA: acquire, release, and the "
             "renewal of each instance's thread every second) and those its scripts ran inside Redis (TIME, ZADD, "
             "PUBLISH, ...). %s" % (
                 ctx.server_cpus, slots, delay, UPLOAD_MAX_QUEUE, UPLOAD_QUEUE_TIMEOUT_MS, slots, slots, uploads,
                 uploads, ctx.load_cpus, slots, delay / 1000.0, bound, slots,
                 "One repetition per point (each point is %d uploads, %.0f s at the global bound)." % (
                     uploads, uploads / bound) if reps == 1 else
                 "N = %d repetitions per point: medians, (min-max)." % reps), ""]
    trs = []
    for n in P["exp10_instances"]:
        for gate in GATES:
            rr = _bursts(rows, n, gate)
            skipped = [r for r in rows if r.get("kind") == "burst" and r.get("instances") == n
                       and r.get("gate") == gate and str(r.get("status", "")).startswith("not run")]
            if not rr:
                trs.append([n, gate] + ["-"] * 10 + ["; ".join(sorted(set(str(r.get("status")) for r in skipped)))
                                                    or "no result"])
                continue
            rps = median([r["rps"] for r in rr])
            expect = rr[0]["bound_rps"]
            spread_txt = "" if len(rr) == 1 else " (%s-%s)" % (fmt(min(r["rps"] for r in rr), 2),
                                                              fmt(max(r["rps"] for r in rr), 2))
            if gate == "redis":
                cmds = "%s sent (%s EVALSHA), %s inside scripts" % (
                    fmt(median([_per_upload(r, "cmds_sent") for r in rr]), 3),
                    fmt(median([_per_upload(r, "evalsha") for r in rr]), 3),
                    fmt(median([_per_upload(r, "cmds_in_scripts") for r in rr]), 1))
                pub = fmt(median([_per_upload(r, "publish") for r in rr]), 3)
                cpu = fmt(median([_per_upload(r, "redis_cpu_s") for r in rr]) * 1000.0, 3)
            else:
                cmds, pub, cpu = "-", "-", "-"
            trs.append([n, gate, sum(r["uploads"] for r in rr), sum(r["ok"] for r in rr), sum(r["errors"] for r in rr),
                        fmt(median([r["window_s"] for r in rr]), 3), fmt(rr[0].get("ideal_s"), 2),
                        fmt(rps, 2) + spread_txt, fmt(expect, 1), "%+.2f%%" % (100.0 * (rps - expect) / expect), cmds,
                        pub, cpu])
    lines += table(["instances", "gate", "uploads", "2xx", "errors", "time (s)", "ideal time (s)", "req/s",
                    "bound (req/s)", "vs bound", "Redis commands per upload", "grants published per upload",
                    "Redis CPU per upload (ms)"], trs)
    big = [r for r in rows if r.get("kind") == "burst" and r.get("gate") == "redis" and r.get("commands")]
    if big:
        r = max(big, key=lambda x: (x["instances"], -x["rep"]))
        lines += ["", "Every command Redis counted during the burst of %d instance%s (calls; the scripts' own commands "
                  "included): %s." % (r["instances"], "" if r["instances"] == 1 else "s", r["commands"])]
    lat = {}
    ltrs = []
    for gate in GATES:
        rr = [r for r in rows if r.get("kind") == "latency" and r.get("gate") == gate and r.get("p99_ms") is not None]
        if not rr:
            continue
        d = rr[0]["delay_ms"]
        lat[gate] = dict(p50=median([r["p50_ms"] for r in rr]) - d, p99=median([r["p99_ms"] for r in rr]) - d,
                         max=median([r["max_ms"] for r in rr]) - d)
        ltrs.append([gate, sum(r["uploads"] for r in rr), sum(r.get("errors") or 0 for r in rr),
                     fmt(lat[gate]["p50"], 3), fmt(lat[gate]["p99"], 3), fmt(lat[gate]["max"], 3),
                     fmt(median([_per_upload(r, "cmds_sent") for r in rr]), 3) if gate == "redis" else "-"])
    if ltrs:
        lines += ["", "The latency the gate adds: two instances side by side, one with the redis gate, one with a "
                  "local gate, each driven at the same time by `h2load --h1 -n %d -c %d -t 1` (%d closed-loop "
                  "clients, never more uploads than slots, so none waits for a slot; measured at once so that the "
                  "machine's other load falls on both alike): each upload's time minus the fixed %d ms delay, i.e. "
                  "HTTP, the gate (redis: the acquire script's round trip before the delay starts) and the timer; "
                  "p50, p99 and max in ms. The %d clients run in step, so the samples come in rounds of %d." % (
                      P["exp10_latency_n"], slots, slots, delay, slots, slots), ""]
        lines += table(["gate", "uploads", "errors", "p50 beyond the delay (ms)", "p99 beyond the delay (ms)",
                        "max beyond the delay (ms)", "Redis commands per upload"], ltrs)
        if "redis" in lat and "local" in lat:
            lines += ["", "Added by the shared gate (redis - local): p50 **%s ms**, p99 **%s ms**." % (
                fmt(lat["redis"]["p50"] - lat["local"]["p50"], 3), fmt(lat["redis"]["p99"] - lat["local"]["p99"], 3))]

    # targets
    res, ok = [], True
    for n in P["exp10_instances"]:
        rr = _bursts(rows, n, "redis")
        if not rr:
            ok = False
            res.append("N = %d: not measured" % n)
            continue
        rps = median([r["rps"] for r in rr])
        errs = sum(r["errors"] for r in rr)
        ok = ok and abs(rps - bound) <= 0.03 * bound and errs == 0
        res.append("N = %d: %.2f req/s (%+.2f%%)%s" % (n, rps, 100.0 * (rps - bound) / bound,
                                                       ", %d errors" % errs if errs else ""))
    local = ["%s" % fmt(median([r["rps"] for r in _bursts(rows, n, "local")]), 1) for n in P["exp10_instances"]]
    out.target("10", "N = %s instances sharing one Redis gate (%d slots, %d ms): aggregate within 3%% of the global "
               "bound %.1f req/s, 0 errors" % (", ".join(map(str, P["exp10_instances"])), slots, delay, bound),
               "; ".join(res) + "; beside them local gates: %s req/s (N x %.1f = %s)" % (
                   ", ".join(local), bound, ", ".join("%.1f" % (n * bound) for n in P["exp10_instances"])),
               ok, "cluster.png")
    # Redis commands: 2 scripts per upload (acquire, release) plus one renewal per member (instance thread) and second.
    res, ok = [], True
    for n in P["exp10_instances"]:
        rr = _bursts(rows, n, "redis")
        if not rr or rr[0].get("counted_s") is None:
            ok = False
            res.append("N = %d: not measured" % n)
            continue
        r = sorted(rr, key=lambda x: x["rps"])[len(rr) // 2]
        allowed = 2.0 + r["members"] * (math.floor(r["counted_s"]) + 2) / float(r["ok"])
        per = _per_upload(r, "cmds_sent")
        ok = ok and r["evalsha"] >= 2 * r["ok"] and per <= allowed
        res.append("N = %d: %.3f (allowed %.3f)" % (n, per, allowed))
    if res:
        out.target("10", "Redis commands sent per upload: the acquire and release scripts, plus one renewal per "
                   "instance thread and second (at most 2 + threads x (floor(s counted) + 2) / uploads)",
                   "; ".join(res), ok)
    if "redis" in lat and "local" in lat:
        a50, a99 = lat["redis"]["p50"] - lat["local"]["p50"], lat["redis"]["p99"] - lat["local"]["p99"]
        out.target("10", "latency the shared gate adds over the local one, nobody waiting: p50 <= 1 ms, p99 <= 5 ms "
                   "(thresholds of this bench: one loopback round trip is ~0.1 ms)",
                   "p50 %+.3f ms, p99 %+.3f ms (beyond the %d ms delay: local %.3f / %.3f, redis %.3f / %.3f)" % (
                       a50, a99, delay, lat["local"]["p50"], lat["local"]["p99"], lat["redis"]["p50"],
                       lat["redis"]["p99"]), a50 <= 1.0 and a99 <= 5.0)
    out.section("Experiment 10: a cluster sharing one upload gate through Redis", lines, ["cluster.png"])
    return out


EXPERIMENT = Experiment(
    "exp10",
    about="1, 2 and 3 instances sharing one Redis /upload gate against local gates: aggregate throughput, Redis "
          "commands per upload, added latency",
    files={CSV: HEADER},
    params={
        "full": dict(exp10_instances=[1, 2, 3], exp10_uploads=1000, exp10_slots=5, exp10_delay_ms=150,
                     exp10_latency_n=1000, exp10_reps=1),
        "quick": dict(exp10_instances=[1, 2, 3], exp10_uploads=200, exp10_slots=5, exp10_delay_ms=150,
                      exp10_latency_n=200, exp10_reps=1),
    },
    run=run, plot=plot, summarise=summarise)
