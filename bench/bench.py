#!/usr/bin/python3
"""weir's benchmark: the seed study (Flask vs Sanic) reproduced with weir and its peers, side by side, in one run.

Started by bench/run.sh (which installs the packages, builds weir in Release and the calc_loop harness), as

    bench/bench.py [--quick] [--only exp1,exp3,...] [--out DIR]
    bench/bench.py --reanalyse DIR [--no-update]
    bench/bench.py --list

Python 3 standard library only. Every server is a fresh process that this script starts on a loopback port, pins to
the server core and stops by its own pid; every load generator is pinned to the other core; every loop is bounded
in count and time. Output: DIR/ (CSV, the exact commands, machine facts, gnuplot data, PNG figures, RESULTS.md) and,
for a full run, bench/RESULTS.md. The experiments are the modules of bench/weirbench/ listed in its registry.py.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import time
import traceback

from weirbench import registry
from weirbench.common import BENCH, WEIR, Context
from weirbench.procs import NoiseMeter
from weirbench.report import draw, machine_facts, write_report


def measure(ctx, only):
    """Runs the selected experiments in registry order and writes their CSV files; returns ({name: {csv: rows}},
    the "Not run" lines)."""
    data, not_run = {}, []
    for exp in registry.EXPERIMENTS:
        if only and exp.name not in only:
            not_run.append("%s: not selected (--only)" % exp.name)
            continue
        ctx.progress("---- %s" % exp.name)
        nm = NoiseMeter()
        try:
            rows = exp.rows(exp.run(ctx))
            for name, header in exp.files.items():
                ctx.write_csv(name, header, rows[name])
            data[exp.name] = rows
        except Exception as e:  # a failing experiment is reported, the others still run
            traceback.print_exc()
            ctx.progress("%s FAILED: %s" % (exp.name, e))
            not_run.append("%s: failed with %s: %s" % (exp.name, type(e).__name__, e))
        noise = ctx.noise[exp.name] = nm.stop()
        ctx.progress("%s: other processes on this machine used %.2f cores on average (steal %.2f), load average %.2f" % (
            exp.name, noise["other_cores"], noise["steal_cores"], noise["loadavg_end"]))
    for exp in registry.EXPERIMENTS:
        skipped = [r for rows in data.get(exp.name, {}).values() for r in rows
                   if str(r.get("status", "")).startswith("not run")]
        if skipped:
            not_run.append("%s: %d point(s) skipped because the run budget (%d s) was used up" % (
                exp.name, len(skipped), ctx.params["budget_s"]))
    return data, not_run


def analyse(ctx, data):
    """Every experiment's figures and summary, in registry order: (pngs made, targets, sections)."""
    figs, targets, sections = [], [], []
    for exp in registry.EXPERIMENTS:
        if exp.plot:
            figs += exp.plot(exp.rows(data.get(exp.name)), ctx)
    made = draw(ctx, figs)
    for exp in registry.EXPERIMENTS:
        summary = exp.summarise(exp.rows(data.get(exp.name)), ctx)
        targets += summary.targets
        sections += summary.sections
    return made, targets, sections


def show_targets(ctx, targets):
    for t in targets:
        ctx.progress("target exp %s: %s -> %s" % (t["exp"], t["measured"], t["verdict"].strip("*")))


def reanalyse(out, update):
    """Redraws the figures and rewrites the reports of the run in `out` from its CSV files and run.json."""
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    params = registry.params("quick" if run["quick"] else "full")
    params.update(run["params"])
    ctx = Context(run["quick"], params, out, ncpu=run["facts"].get("nproc"))
    ctx.noise = run["noise"]
    data = {exp.name: {name: ctx.read_csv(name) for name in exp.files} for exp in registry.EXPERIMENTS}
    figs, targets, sections = analyse(ctx, data)
    text = write_report(ctx, run["facts"], targets, sections, figs, run["started"], run["finished"], run["not_run"])
    # As a measuring run: only a full run of every experiment is a run of record.
    partial = any("not selected" in x for x in run["not_run"])
    if update and not ctx.quick and not partial:
        with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
            f.write(text)
    show_targets(ctx, targets)
    return 0


def main():
    names = [e.name for e in registry.EXPERIMENTS]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer points, N = 1, <= 3 minutes")
    ap.add_argument("--only", default="", help="comma-separated subset: " + ",".join(names))
    ap.add_argument("--out", default=None, help="results directory (default bench/results/<date>[-quick])")
    ap.add_argument("--no-update", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--reanalyse", metavar="DIR", help="redraw the figures and rewrite the reports of the run in DIR "
                    "from its CSV files and run.json, without measuring anything")
    ap.add_argument("--list", action="store_true", help="list the experiments and exit")
    a = ap.parse_args()
    if a.list:
        for e in registry.EXPERIMENTS:
            print("%s  %s (%s)" % (e.name, e.about, ", ".join(e.files)))
        return 0
    if a.reanalyse:
        return reanalyse(os.path.abspath(a.reanalyse), update=not a.no_update)
    only = set(x.strip() for x in a.only.split(",") if x.strip())
    if only - set(names):
        ap.error("--only: no experiment %s (there are %s)" % (", ".join(sorted(only - set(names))), ", ".join(names)))
    mode = "quick" if a.quick else "full"
    out = os.path.abspath(a.out or os.path.join(BENCH, "results", datetime.date.today().isoformat() +
                                                ("-quick" if a.quick else "")))
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "tmp"))
    os.chmod(os.path.join(out, "tmp"), 0o755)
    commands = open(os.path.join(out, "commands.txt"), "w")
    commands.write("# Every command run by bench/bench.py%s, in order. Ports are chosen at run time; weir listens "
                   "on port 0 and reports its port.\n" % (" --quick" if a.quick else ""))
    ctx = Context(a.quick, registry.params(mode), out, commands=commands)
    with open(ctx.one_byte, "w") as f:
        f.write("x")
    if not os.access(WEIR, os.X_OK):
        sys.exit("bench: %s is missing: run bench/run.sh (it builds weir in Release)" % WEIR)
    for exp in registry.EXPERIMENTS:
        if exp.prepare:
            exp.prepare(ctx)
    facts = machine_facts(ctx)
    started = time.time()
    ctx.progress("%s run into %s (budget %d s, N = %d)" % (mode, out, ctx.params["budget_s"], ctx.params["reps"]))

    data, not_run = measure(ctx, only)
    ctx.progress("---- figures and report")
    figs, targets, sections = analyse(ctx, data)
    finished = time.time()
    with open(ctx.path("run.json"), "w") as f:
        json.dump(dict(facts=facts, noise=ctx.noise, params=ctx.params, started=started, finished=finished,
                       not_run=not_run, quick=ctx.quick), f, indent=1)
    text = write_report(ctx, facts, targets, sections, figs, started, finished, not_run)
    if not ctx.quick and not a.no_update and not only:
        with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
            f.write(text)
        ctx.progress("bench/RESULTS.md updated")
    commands.close()
    show_targets(ctx, targets)
    ctx.progress("done in %.1f s: %s" % (time.monotonic() - ctx.t0, out))
    return 1 if any("failed with" in x for x in not_run) else 0


if __name__ == "__main__":
    sys.exit(main())
