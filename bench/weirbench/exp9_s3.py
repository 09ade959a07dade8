"""Experiment 9: real uploads. /upload with the s3 backend storing 100 KiB images in an S3-compatible store (s3rver,
tests/s3rver), against the seed-style Flask app with boto3 (threaded=True) and an aiohttp app running boto3 in an
executor, all with 5 uploads at a time; and the store's own ceiling with 5 PUTs in flight, from a direct client."""

import json
import os
import shutil
import subprocess

from .common import BENCH, PY, fmt, median, pinned, slug, spread
from .experiment import Experiment, Summary
from .load import ab
from .procs import MemSampler
from .report import table
from .servers import S3_BUCKET, S3_KEY_ID, S3_SECRET, Server, weir_conf

CSV = "s3.csv"
HEADER = ["what", "rep", "status", "rps", "p50_ms", "p99_ms", "complete", "failed", "non2xx", "idle_rss_kib",
          "peak_rss_kib"]
IMAGE_SIZE = 100 * 1024
SLOTS = 5
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
    are. Returns rps, p50_ms, p99_ms, complete, failed and status."""
    argv = pinned([PY, os.path.join(BENCH, "weirbench", "s3_direct.py"), str(port), S3_BUCKET, image, str(n), str(conns)],
                  ctx.load_cpus)
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
    reps, n, c = ctx.params["reps"], ctx.params["exp9_n"], ctx.params["exp9_c"]
    image, secret = files(ctx)
    rows = []
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=20 + n / 25.0 + ctx.params["exp9_warmup"] / 300.0):
            rows.append(dict(what="weir", rep=rep, status="not run (run budget)"))
            continue
        step = "exp9 rep %d" % rep
        # The store has the server cpu to itself: it is what limits every server here, and its ceiling is measured
        # under the same conditions. The servers share the load cpu with ab (the same for all of them).
        store = Server(ctx, "s3rver", "s3rver", cpus=ctx.server_cpus).start(step + " s3rver")
        try:
            endpoint = "http://127.0.0.1:%d" % store.port
            # A fresh store gets faster over its first few thousand requests (node compiles its code as it runs
            # it: 260 req/s for the first 300 PUTs here, 750 after 1,500): warm it up first, so that the servers
            # measured later are not favoured. Its ceiling is measured before and after the servers.
            direct_puts(ctx, step + " store warm-up", store.port, image, ctx.params["exp9_warmup"], SLOTS)
            r = direct_puts(ctx, step + " ceiling", store.port, image, n, SLOTS)
            rows.append(dict(what=CEILING, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                             p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed")))
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
                    r = ab(ctx, "%s %s" % (step, kind), srv.url("/upload"), n, c, post=image, content_type="image/jpeg",
                           limit=120)
                    peak = sampler.stop().peak_rss
                rows.append(dict(what=kind, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                                 p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed"),
                                 non2xx=r.get("non2xx"), idle_rss_kib=idle, peak_rss_kib=peak))
                ctx.progress("%s: %s %s req/s, p99 %s ms, peak RSS %s KiB (store alone: %s req/s)" % (
                    step, kind, fmt(r.get("rps"), 1), r.get("p99_ms"), peak, fmt(ceiling, 1)))
            r = direct_puts(ctx, step + " ceiling after", store.port, image, n, SLOTS)
            rows.append(dict(what=CEILING, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=r.get("p50_ms"),
                             p99_ms=r.get("p99_ms"), complete=r.get("complete"), failed=r.get("failed")))
            ctx.progress("%s: store alone, after the servers: %s req/s" % (step, fmt(r.get("rps"), 1)))
        finally:
            store.stop()
            shutil.rmtree(os.path.join(ctx.tmp, slug(step + " s3rver") + ".s3rver"), ignore_errors=True)
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
             "cpu %s to itself: the store is what limits every server here (each server runs on cpu %s with ab). The "
             "store's ceiling: %d PUTs of the image to new keys, signed as weir signs them, sent straight to it from "
             "cpu %s by a small client of the bench (`weirbench/s3_direct.py`: %d keep-alive connections, one PUT in "
             "flight on each, each request written with one send, all signed before the clock starts), after %d such "
             "PUTs to warm the store up, and again after the servers. "
             "Memory per upload: (peak RSS during the run - RSS after the warm-up) / %d uploads in the server at "
             "once." % (n, c, IMAGE_SIZE // 1024, SLOTS, ctx.server_cpus, ctx.load_cpus, n, ctx.load_cpus, SLOTS,
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
                    fmt(per, 0) if what != CEILING else "-",
                    ", ".join(sorted(set(r.get("status") for r in rr if r.get("status") != "ok"))) or "ok"])
    lines += table(["what", "req/s median (min-max)", "p99 ms", "peak RSS MiB", "KiB per upload", "status"], trs)
    out.section("Experiment 9: real uploads to S3", lines)

    ceiling = _median(rows, CEILING, "rps")
    weir_rps = _median(rows, "weir", "rps")
    if ceiling and weir_rps:
        out.target("9", "weir at the store's own ceiling with 5 PUTs in flight (>= 90% of the direct client's rate)",
                   "%s of %s req/s (%.0f%%)" % (fmt(weir_rps, 1), fmt(ceiling, 1), 100.0 * weir_rps / ceiling),
                   weir_rps >= 0.9 * ceiling)
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
        "full": dict(exp9_n=500, exp9_c=50, exp9_warmup=3000),
        "quick": dict(exp9_n=200, exp9_c=50, exp9_warmup=1500),
    },
    run=run, summarise=summarise)
