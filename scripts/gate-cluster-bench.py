#!/usr/bin/env python3
"""Figures for issue 11's cluster experiment, ready to be folded into bench/ as an experiment: 1, 2 and 3 weir
instances sharing one Redis upload gate against the same instances with local gates.

  scripts/gate-cluster-bench.py [--weir build-release/weir] [--uploads 1000] [--delay 150] [--slots 5]

For each N in 1, 2, 3 and each gate (redis, local): N instances (num-threads 1), `--uploads` POST /upload sent at once
over all of them (HTTP/1.1, one connection each), fixed delays: aggregate throughput against the bound slots / delay
(33.3 req/s for 5 x 150 ms; local gates give N times that). Then Redis commands per upload (INFO commandstats,
renewals included) and the latency the shared gate adds: 400 uploads by 5 closed-loop clients (never more than the
slots, so nobody queues) on one instance, p50 and p99 of (answer time - delay), redis against local.
Prints a Markdown table. Needs redis-server; starts everything on free ports and stops it by pid."""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from uploadfix import post_all  # noqa: E402
from redisfix import RedisServer  # noqa: E402


def conf(gate, redis_url, slots, delay, port):
    keys = ["upload.concurrency: %d" % slots, "upload.delay-min: %d" % delay, "upload.delay-max: %d" % delay,
            "upload.max-queue: 20000", "upload.queue-timeout: 600000", "upload.gate: %s" % gate]
    if gate == "redis":
        keys += ["upload.redis.url: %s" % redis_url, "upload.redis.name: bench",
                 "upload.redis.lease: %d" % max(10000, 2 * delay + 1000)]
    return ("listen:\n  port: %d\n  host: 127.0.0.1\nnum-threads: 1\nhosts:\n  default:\n    paths:\n      /upload:\n%s"
            % (port, "".join("        %s\n" % k for k in keys)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Instances:
    def __init__(self, weir, n, gate, redis_url, slots, delay):
        self.dir = tempfile.mkdtemp(prefix="weir-gate-bench-")
        self.ports, self.procs = [], []
        for i in range(n):
            port = free_port()
            path = os.path.join(self.dir, "w%d.yaml" % i)
            with open(path, "w") as f:
                f.write(conf(gate, redis_url, slots, delay, port))
            self.procs.append(subprocess.Popen([weir, "-c", path], stderr=subprocess.DEVNULL))
            self.ports.append(port)
        for port in self.ports:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.02)
        time.sleep(0.3)  # registration with Redis

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def commandstats(redis):
    out = {}
    for line in redis.command("INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[8:].partition(":")
            out[name] = int(rest.split(",")[0].split("=")[1])
    return out


def closed_loop(port, clients, total, delay_s):
    lat, lock = [], threading.Lock()
    per = total // clients

    def run():
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        f = s.makefile("rb")
        for _ in range(per):
            t0 = time.monotonic()
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            n = 0
            while True:
                line = f.readline()
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            f.read(n)
            with lock:
                lat.append(time.monotonic() - t0 - delay_s)
        s.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return lat[len(lat) // 2] * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", default=os.path.join(HERE, "..", "build-release", "weir"))
    ap.add_argument("--uploads", type=int, default=1000)
    ap.add_argument("--delay", type=int, default=150)
    ap.add_argument("--slots", type=int, default=5)
    ap.add_argument("--instances", default="1,2,3")
    args = ap.parse_args()
    bound = args.slots / (args.delay / 1000.0)
    rows = []
    with RedisServer() as redis:
        for n in [int(x) for x in args.instances.split(",")]:
            for gate in ("redis", "local"):
                inst = Instances(args.weir, n, gate, redis.url, args.slots, args.delay)
                try:
                    before = commandstats(redis)
                    answers = post_all([inst.ports[i % n] for i in range(args.uploads)], timeout=600)
                    after = commandstats(redis)
                finally:
                    inst.stop()
                ok = sum(1 for a in answers if a.status == 200)
                total = max(a.t for a in answers)
                rps = ok / total
                # commandstats also counts the commands run inside scripts: the ones sent are these
                sent = ("evalsha", "eval", "script", "ping", "subscribe", "auth", "select")
                cmds = sum(after.get(k, 0) - before.get(k, 0) for k in sent)
                inside = sum(after.get(k, 0) - before.get(k, 0) for k in after if k not in sent and k != "info")
                expect = bound if gate == "redis" else bound * n
                rows.append((n, gate, ok, total, rps, expect, 100.0 * (rps - expect) / expect,
                             "%.2f (%.1f inside scripts)" % (cmds / max(ok, 1), inside / max(ok, 1)) if gate == "redis"
                             else "-"))
        lat = {}
        for gate in ("local", "redis"):
            inst = Instances(args.weir, 1, gate, redis.url, args.slots, args.delay)
            try:
                lat[gate] = closed_loop(inst.ports[0], args.slots, 400, args.delay / 1000.0)
            finally:
                inst.stop()
    print("| instances | gate | ok | time (s) | req/s | expected | vs expected | Redis commands / upload |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, gate, ok, total, rps, expect, dev, cpu in rows:
        print("| %d | %s | %d | %.3f | %.2f | %.1f | %+.1f%% | %s |" % (n, gate, ok, total, rps, expect, dev, cpu))
    print()
    print("Gate latency beyond the delay (%d closed-loop clients, 400 uploads, one instance): local p50 %.2f ms p99 "
          "%.2f ms; redis p50 %.2f ms p99 %.2f ms" % (args.slots, lat["local"][0], lat["local"][1], lat["redis"][0],
                                                     lat["redis"][1]))


if __name__ == "__main__":
    main()
