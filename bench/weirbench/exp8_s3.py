"""Experiment 8: real uploads. /upload with the s3 backend storing 100 KiB images in an S3-compatible store (s3rver,
tests/s3rver), against the seed-style Flask app with boto3 (threaded=True) and an aiohttp app running boto3 in an
executor, all with 5 uploads at a time; and the store's own ceiling with 5 PUTs in flight, from a direct client."""

import os
import shutil

from .common import fmt, median, slug, spread
from .experiment import Experiment, Summary
from .load import ab, h2load, percentiles_from_h2load_log
from .procs import MemSampler
from .report import table
from .servers import S3_BUCKET, S3_SECRET, Server, weir_conf

CSV = "s3.csv"
HEADER = ["what", "rep", "status", "rps", "p50_ms", "p99_ms", "complete", "failed", "non2xx", "idle_rss_kib",
          "peak_rss_kib"]
IMAGE_SIZE = 100 * 1024
SLOTS = 5
CEILING = "s3rver alone (h2load -c 5, direct)"
SERVERS = [
    ("weir", "weir (upload.backend: s3)"),
    ("aiohttp-s3", "aiohttp + boto3 in an executor"),
    ("flask-s3", "Flask threaded=True + boto3"),
]


def files(ctx):
    """The image (random bytes, so that nothing compresses it) and the secret file weir reads, in the run's tmp/."""
    image = os.path.join(ctx.tmp, "exp8-image.jpg")
    if not os.path.exists(image) or os.path.getsize(image) != IMAGE_SIZE:
        with open(image, "wb") as f:
            f.write(os.urandom(IMAGE_SIZE))
    secret = os.path.join(ctx.tmp, "exp8-s3.secret")
    with open(secret, "w") as f:
        f.write(S3_SECRET + "\n")
    os.chmod(secret, 0o600)
    return image, secret


def run(ctx):
    reps, n, c = ctx.params["reps"], ctx.params["exp8_n"], ctx.params["exp8_c"]
    image, secret = files(ctx)
    rows = []
    for rep in range(1, reps + 1):
        if ctx.out_of_time(margin=60):
            rows.append(dict(what="weir", rep=rep, status="not run (run budget)"))
            continue
        step = "exp8 rep %d" % rep
        store = Server(ctx, "s3rver", "s3rver", cpus=ctx.load_cpus).start(step + " s3rver")
        try:
            endpoint = "http://127.0.0.1:%d" % store.port
            # h2load rather than ab: ab -k stalls on keep-alive PUTs to this store (tens of ms per request)
            log = os.path.join(ctx.tmp, slug(step) + ".ceiling.h2load.log")
            r = h2load(ctx, step + " ceiling", store.url("/%s/ceiling.jpg" % S3_BUCKET),
                       ["--h1", "-n", str(n), "-c", str(SLOTS), "-m", "1", "-d", image, "-H", ":method: PUT",
                        "-H", "content-type: image/jpeg", "--log-file", log], 120)
            pct = percentiles_from_h2load_log(log)
            rows.append(dict(what=CEILING, rep=rep, status=r["status"], rps=r.get("rps"), p50_ms=pct.get("p50"),
                             p99_ms=pct.get("p99"), complete=r.get("succeeded"), failed=r.get("errors")))
            ceiling = r.get("rps")
            for kind, _ in SERVERS:
                if kind == "weir":
                    srv = Server(ctx, "weir", "weir", conf=weir_conf(threads=1, upload=(SLOTS, 100, 200), calc=False,
                                                                     upload_s3=(endpoint, secret)))
                else:
                    srv = Server(ctx, kind, kind, extra={"endpoint": endpoint})
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
    n, c = ctx.params["exp8_n"], ctx.params["exp8_c"]
    lines = ["Real uploads: `ab -n %d -c %d -p image.jpg -T image/jpeg` (a %d KiB image as the raw body) against "
             "/upload with %d upload slots, each upload a PUT of the image as a new object into s3rver 4.0.4 (pinned "
             "to cpu %s with the load generator; each server on cpu %s). The store's ceiling: anonymous PUTs of the same "
             "image sent straight to it, %d at a time on keep-alive connections (`h2load --h1 -c %d -m 1 -d image.jpg "
             "-H ':method: PUT'`; no signature to check, so if anything a higher ceiling than signed PUTs). Memory per "
             "upload: (peak RSS during the run - RSS after the warm-up) / %d uploads in the server at once." % (
                 n, c, IMAGE_SIZE // 1024, SLOTS, ctx.load_cpus, ctx.server_cpus, SLOTS, SLOTS, c), ""]
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
    out.section("Experiment 8: real uploads to S3", lines)

    ceiling = _median(rows, CEILING, "rps")
    weir_rps = _median(rows, "weir", "rps")
    if ceiling and weir_rps:
        out.target("8", "weir at the store's own ceiling with 5 PUTs in flight (>= 90%)",
                   "%s of %s req/s (%.0f%%)" % (fmt(weir_rps, 1), fmt(ceiling, 1), 100.0 * weir_rps / ceiling),
                   weir_rps >= 0.9 * ceiling)
    peak, idle = _median(rows, "weir", "peak_rss_kib"), _median(rows, "weir", "idle_rss_kib")
    if peak is not None and idle is not None:
        per = (peak - idle) / c
        limit = IMAGE_SIZE / 1024.0 + 32
        out.target("8", "weir's memory per upload in flight <= the body + 32 KiB (%d KiB)" % limit,
                   "%s KiB" % fmt(per, 0), per <= limit)
    return out


EXPERIMENT = Experiment(
    "exp8",
    about="real uploads into an S3-compatible store (s3rver): weir's s3 backend against Flask and aiohttp with boto3, "
          "and the store's own ceiling",
    files={CSV: HEADER},
    params={
        "full": dict(exp8_n=500, exp8_c=50),
        "quick": dict(exp8_n=100, exp8_c=50),
    },
    run=run, summarise=summarise)
