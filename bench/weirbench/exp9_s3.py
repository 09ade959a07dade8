"""Experiment 9: real uploads. /upload with the s3 backend storing 100 KiB images in an S3-compatible store (s3rver,
tests/s3rver), against the seed-style Flask app with boto3 (threaded=True) and an aiohttp app running boto3 in an
executor, all with 5 uploads at a time; and the store's own ceiling with 5 PUTs in flight, from a direct client."""

import json
import os
import shutil
import subprocess
import tempfile

from .common import BENCH, PY, fmt, median, pinned, slug, spread
from .experiment import Experiment, Summary
from .load import ab
from .procs import MemSampler, cpu_seconds
from .report import table
from .servers import S3_BUCKET, S3_KEY_ID, S3_SECRET, Server, weir_conf

CSV = "s3.csv"
HEADER = ["what", "rep", "status", "rps", "p50_ms", "p99_ms", "complete", "failed", "non2xx", "idle_rss_kib",
          "peak_rss_kib", "store_cpu_ms"]
IMAGE_SIZE = 100 * 1024
SLOTS = 5
# The store keeps its objects in memory (tmpfs): with them on this machine's disk, the store fell to half its speed and
# less in every repetition after the first (bench/NOTES.md, "Exp 8 and Exp 9 measured again").
STORE_PARENT = "/dev/shm" if os.path.isdir("/dev/shm") else None
CEILING = "s3rver alone (a direct client, 5 PUTs in flight)"
SERVERS = [
    ("weir", "weir (upload.backend: s3)"),
    ("aiohttp-s3", "aiohttp + boto3 in an executor"),
    ("flask-s3", "Flask threaded=True + boto3"),
]


def files(ctx):
    """The image (random bytes, so that nothing compresses it) and the secret file weir reads, in the run's tmp/."""
    image = os.path.join(ctx.tmp, "exp9-image.jpg")
    if not os.path.exists(image) or os.path.getsize(image) != IMAGE_SIZE:
        with open(image, "wb") as f:
            f.write(os.urandom(IMAGE_SIZE))
    secret = os.path.join(ctx.tmp, "exp9-s3.secret")
    with open(secret, "w") as f:
        f.write(S3_SECRET + "\n")
    os.chmod(secret, 0o600)
    return image, secret


def direct_puts(ctx, step, port, image, n, conns):
    """The store's own ceiling, from bench/weirbench/s3_direct.py (see there), run on the load cpu as the servers
    are, its keys new ones under a prefix of the step's. Returns rps, p50_ms, p99_ms, complete, failed and status."""
    argv = pinned([PY, os.path.join(BENCH, "weirbench", "s3_direct.py"), str(port), S3_BUCKET, image, str(n), str(conns),
                   slug(step) + "/"], ctx.load_cpus)
    ctx.record(step, argv)
    try:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, env=env)
        r = json.loads(p.stdout.strip().split("\n")[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return dict(status="aborted: %s" % str(e)[:60])
    r["status"] = "ok" if r.get("complete") == n else "errors"
    return r


def run(ctx):
    reps, n, c = ctx.params["exp9_reps"], ctx.params["exp9_n"], ctx.params["exp9_c"]
    image, secret = files(ctx)
    rows = []
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=20 + n / 25.0 + ctx.params["exp9_warmup"] / 300.0):
            rows.append(dict(what="weir", rep=rep, status="not run (run budget)"))
            continue
        step = "exp9 rep %d" % rep
        # The store has the server cpu to itself: it is what limits every server here, and its ceiling is measured
        # under the same conditions. The servers share the load cpu with ab (the same for all of them).
        store_dir = tempfile.mkdtemp(prefix="weirbench-s3rver-", dir=STORE_PARENT)
        store = Server(ctx, "s3rver", "s3rver", cpus=ctx.server_cpus, extra={"dir": store_dir}).start(step + " s3rver")
        try:
            endpoint = "http://127.0.0.1:%d" % store.port
            # A fresh store gets faster over its first few thousand requests (node compiles its code as it runs
            # it: 260 req/s for the first 300 PUTs here, 750 after 1,500): warm it up first, so that the servers
            # measured later are not favoured. Its ceiling is measured before and after the servers.
            direct_puts(ctx, step + " store warm-up", store.port, image, ctx.params["exp9_warmup"], SLOTS)
            s0 = cpu_seconds(store.tree())
            r = direct_puts(ctx, step + " ceiling", store.port, image, n, SLOTS)
            rows.append(dict(what=CEILING, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                             p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed"),
                             store_cpu_ms=round((cpu_seconds(store.tree()) - s0) * 1000.0 / n, 3)))
            ceiling = r.get("rps")
            for kind, _ in SERVERS:
                if kind == "weir":
                    srv = Server(ctx, "weir", "weir", cpus=ctx.load_cpus,
                                 conf=weir_conf(threads=1, upload=(SLOTS, 100, 200), calc=False, upload_s3=(endpoint, secret)))
                else:
                    srv = Server(ctx, kind, kind, cpus=ctx.load_cpus, extra={"endpoint": endpoint})
                with srv.start("%s %s" % (step, kind)):
                    # one upload first, so that every server has its connection to the store and its code paths warm
                    ab(ctx, "%s %s warm-up" % (step, kind), srv.url("/upload"), SLOTS, SLOTS, post=image,
                       content_type="image/jpeg")
                    idle = srv.rss_kib()
                    sampler = MemSampler(srv.pid).start()
                    s0 = cpu_seconds(store.tree())
                    r = ab(ctx, "%s %s" % (step, kind), srv.url("/upload"), n, c, post=image, content_type="image/jpeg",
                           limit=120)
                    store_cpu = round((cpu_seconds(store.tree()) - s0) * 1000.0 / n, 3)
                    peak = sampler.stop().peak_rss
                rows.append(dict(what=kind, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                                 p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed"),
                                 non2xx=r.get("non2xx"), idle_rss_kib=idle, peak_rss_kib=peak, store_cpu_ms=store_cpu))
                ctx.progress("%s: %s %s req/s, p99 %s ms, peak RSS %s KiB (store alone: %s req/s)" % (
                    step, kind, fmt(r.get("rps"), 1), r.get("p99_ms"), peak, fmt(ceiling, 1)))
            s0 = cpu_seconds(store.tree())
            r = direct_puts(ctx, step + " ceiling after", store.port, image, n, SLOTS)
            rows.append(dict(what=CEILING, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                             p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed"),
                             store_cpu_ms=round((cpu_seconds(store.tree()) - s0) * 1000.0 / n, 3)))
            ctx.progress("%s: store alone, after the servers: %s req/s" % (step, fmt(r.get("rps"), 1)))
        finally:
            store.stop()
            shutil.rmtree(store_dir, ignore_errors=True)
    return {CSV: rows}


def _median(rows, what, key):
    return median([r.get(key) for r in rows if r.get("what") == what and r.get("status") == "ok"])


def summarise(data, ctx):
    out = Summary()
    rows = data[CSV]
    if not rows:
        return out
    n, c = ctx.params["exp9_n"], ctx.params["exp9_c"]
    lines = ["Real uploads: `ab -n %d -c %d -p image.jpg -T image/jpeg` (a %d KiB image as the raw body) against "
             "/upload with %d upload slots, each upload a PUT of the image as a new object into s3rver 4.0.4, which has "
             "cpu %s to itself and keeps its objects in memory (tmpfs): the store is what limits every server here "
             "(each server runs on cpu %s with ab). %d repetitions, each with a fresh store. The "
             "store's ceiling: %d PUTs of the image to new keys (a prefix of their own each time), signed as weir signs them, sent straight to it from "
             "cpu %s by a small client of the bench (`weirbench/s3_direct.py`: %d keep-alive connections, one PUT in "
             "flight on each, each request written with one send, all signed before the clock starts), after %d such "
             "PUTs to warm the store up, and again after the servers. "
             "Memory per upload: (peak RSS during the run - RSS after the warm-up) / %d uploads in the server at "
             "once. Store CPU per PUT: the store's CPU time during the run / its PUTs, which is what sets its ceiling "
             "(one core)." % (n, c, IMAGE_SIZE // 1024, SLOTS, ctx.server_cpus, ctx.load_cpus,
                             ctx.params.get("exp9_reps", 0), n, ctx.load_cpus, SLOTS,
                     ctx.params.get("exp9_warmup", 0), c), ""]
    trs = []
    for what, label in [(CEILING, CEILING)] + SERVERS:
        rr = [r for r in rows if r.get("what") == what]
        ok = [r for r in rr if r.get("status") == "ok" and r.get("rps")]
        if not rr:
            continue
        lo, hi = spread([r["rps"] for r in ok]) if ok else (None, None)
        peak = median([r.get("peak_rss_kib") for r in ok])
        idle = median([r.get("idle_rss_kib") for r in ok])
        per = (peak - idle) / c if peak is not None and idle is not None else None
        trs.append([label, "%s (%s-%s)" % (fmt(median([r["rps"] for r in ok]), 1), fmt(lo, 1), fmt(hi, 1)),
                    fmt(median([r.get("p99_ms") for r in ok]), 0), fmt(peak / 1024.0 if peak else None, 1),
                    fmt(per, 0) if what != CEILING else "-", fmt(median([r.get("store_cpu_ms") for r in ok]), 2),
                    ", ".join(sorted(set(r.get("status") for r in rr if r.get("status") != "ok"))) or "ok"])
    lines += table(["what", "req/s median (min-max)", "p99 ms", "peak RSS MiB", "KiB per upload",
                    "store CPU per PUT (ms)", "status"], trs)
    out.section("Experiment 9: real uploads to S3", lines)

    # Each repetition's weir against the store's ceiling measured just before and just after the servers (the
    # store keeps getting faster as node compiles more of it, and its speed moves from one minute to the next).
    fractions = []
    for rep in sorted(set(r["rep"] for r in rows if isinstance(r.get("rep"), int))):
        ceil = [r["rps"] for r in rows if r.get("rep") == rep and r.get("what") == CEILING and r.get("status") == "ok"]
        w = [r["rps"] for r in rows if r.get("rep") == rep and r.get("what") == "weir" and r.get("status") == "ok"]
        if len(ceil) == 2 and w:
            fractions.append(w[0] / (sum(ceil) / 2.0))
    ceiling = _median(rows, CEILING, "rps")
    weir_rps = _median(rows, "weir", "rps")
    if fractions:
        frac = median(fractions)
        reps = ctx.params.get("exp9_reps", 0)
        lines = ["", "weir against the store's ceiling in the same repetition (the mean of the direct client's runs "
                 "before and after the servers): %s; median %s." % (", ".join("%.2f" % f for f in fractions),
                                                                    fmt(frac, 2))]
        out.sections[-1]["lines"].extend(lines)
        out.target("9", "weir at the store's own ceiling with 5 PUTs in flight (>= 90% of the direct client's rate, "
                   "median over repetitions of weir / the ceiling measured around it)",
                   "%.0f%% (per repetition %s; medians of all runs: weir %s, direct client %s req/s)" % (
                       100.0 * frac, ", ".join("%.0f%%" % (100 * f) for f in fractions), fmt(weir_rps, 1),
                       fmt(ceiling, 1)),
                   frac >= 0.9 and len(fractions) == reps)
    peak, idle = _median(rows, "weir", "peak_rss_kib"), _median(rows, "weir", "idle_rss_kib")
    if peak is not None and idle is not None:
        per = (peak - idle) / c
        limit = IMAGE_SIZE / 1024.0 + 32
        out.target("9", "weir's memory per upload in flight <= the body + 32 KiB (%d KiB)" % limit,
                   "%s KiB" % fmt(per, 0), per <= limit)
    return out


EXPERIMENT = Experiment(
    "exp9",
    about="real uploads into an S3-compatible store (s3rver): weir's s3 backend against Flask and aiohttp with boto3, "
          "and the store's own ceiling",
    files={CSV: HEADER},
    params={
        "full": dict(exp9_n=500, exp9_c=50, exp9_warmup=6000, exp9_reps=5),
        "quick": dict(exp9_n=200, exp9_c=50, exp9_warmup=1500, exp9_reps=1),
    },
    run=run, summarise=summarise)
