"""End-to-end tests of the Redis upload gate (issue 11): real weir processes sharing one limit through a real
redis-server started here. The limit across instances (with a monitor sampling the holders in Redis), FIFO across
instances, clients that leave, an instance killed with SIGKILL, Redis killed and restarted, FLUSHALL, independent
names, the in-process fallback, and weir -t's checks."""

import json
import os
import shutil
import socket
import threading
import time
import unittest

import weirtest as wt
from weirtest import Weir
from weirtest.redis import RedisServer, encode, _read_reply
from weirtest.uploads import max_overlap, post_all


def gate_config(redis_url=None, slots=5, delay=50, name="weir:upload", lease=1500, timeout=300, on_failure=None,
                gate="redis", threads=2, extra=""):
    keys = ["upload.concurrency: %d" % slots, "upload.delay-min: %d" % delay, "upload.delay-max: %d" % delay,
            "upload.gate: %s" % gate]
    if gate == "redis":
        keys += ["upload.redis.url: %s" % redis_url, "upload.redis.name: %s" % name, "upload.redis.lease: %d" % lease,
                 "upload.redis.timeout: %d" % timeout]
        if on_failure:
            keys.append("upload.redis.on-failure: %s" % on_failure)
    keys += [k for k in extra.splitlines() if k]
    return ("listen:\n  port: 0\n  host: 127.0.0.1\nnum-threads: %d\nhosts:\n  default:\n    paths:\n      /upload:\n%s"
            % (threads, "".join("        %s\n" % k for k in keys)))


class HolderMonitor:
    """Samples ZCARD NAME:holders on one connection of its own, as fast as Redis answers, until stopped."""

    def __init__(self, redis, name="weir:upload"):
        self.redis = redis
        self.key = name + ":holders"
        self.samples = []  # (monotonic time, count)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        s, f = self.redis.connect()
        try:
            while not self._stop.is_set():
                s.sendall(encode("ZCARD", self.key))
                self.samples.append((time.monotonic(), _read_reply(f)))
                time.sleep(0.001)
        except (OSError, ConnectionError):
            pass  # Redis was killed under it
        finally:
            f.close()
            s.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        return False

    def max(self, since=0.0):
        return max([c for t, c in self.samples if t >= since and isinstance(c, int)] or [0])


def wait_registered(redis, name, count, timeout=5.0):
    """Waits until `count` members have a liveness key under `name`."""
    ok = wt.wait_until(lambda: len(redis.command("KEYS", name + ":inst:*")) >= count, timeout)
    if not ok:
        raise AssertionError("only %d of %d members registered" % (len(redis.command("KEYS", name + ":inst:*")), count))


class Instances:
    """Several weir processes, started together and stopped (or killed) together."""

    def __init__(self, configs):
        self.weirs = [Weir(c) for c in configs]

    def __enter__(self):
        try:
            for w in self.weirs:
                w.start()
        except Exception:
            self.kill()
            raise
        return self.weirs

    def kill(self):
        for w in self.weirs:
            w.kill()
            shutil.rmtree(w.tmp, ignore_errors=True)

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                for w in self.weirs:
                    if w.proc.poll() is None:
                        w.stop()
        finally:
            self.kill()
        return False


def raw_posts(port, n):
    """n HTTP/1.1 connections, each with one POST sent; the caller closes them."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        socks.append(s)
    return socks


class RedisGateTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer().start()

    def tearDown(self):
        self.redis.stop()

    def check_503(self, a):
        self.assertEqual(a.status, 503, a)
        self.assertIn("error", json.loads(a.body.decode()))
        self.assertRegex(a.headers.get("retry-after", ""), r"^[1-9][0-9]*$")

    # --- the limit ------------------------------------------------------------------------------------------------
    def test_three_instances_share_one_limit(self):
        # 3 instances, 5 shared slots, fixed 50 ms uploads, 150 uploads over the three at once: at least the bound
        # 150 / 5 x 0.05 = 1.5 s; a monitor never sees more than 5 holders in Redis. With local gates the same run has
        # 15 slots and takes about a third of that.
        # The target is at most 10% above the bound. On a shared machine every 50 ms wave also costs some
        # scheduling (1 to 5 ms here, load average about 5), which is the machine's, not the gate's: the local gates'
        # runs, just before and just after, measure it (their 10 waves over the 0.5 s they need at the least), and the
        # shared run, with 30 waves, may add three times the worse of the two on top of the 10%. bench/ measures the
        # throughput against the bound on a quiet machine.
        bound, n = 1.5, 150

        def local_run():
            with Instances([gate_config(gate="local") for _ in range(3)]) as weirs:
                answers = post_all([weirs[i % 3].port for i in range(n)])
            self.assertEqual([a.status for a in answers], [200] * n)
            return max(a.t for a in answers)

        local_before = local_run()
        with Instances([gate_config(self.redis.url) for _ in range(3)]) as weirs:
            wait_registered(self.redis, "weir:upload", 6)
            ports = [weirs[i % 3].port for i in range(n)]
            with HolderMonitor(self.redis) as mon:
                answers = post_all(ports)
        shared = max(a.t for a in answers)
        self.assertEqual([a.status for a in answers], [200] * n)
        self.assertLessEqual(mon.max(), 5, "more than 5 holders at once in Redis")
        self.assertEqual(mon.max(), 5, "the 5 slots were never all used")
        local_after = local_run()
        overhead = max(0.0, max(local_before, local_after) - bound / 3)
        msg = "shared gate %.3fs (bound %.1fs), local gates %.3fs and %.3fs (scheduling %.3fs per 10 waves)" % (
            shared, bound, local_before, local_after, overhead)
        print(msg)
        self.assertGreaterEqual(shared, bound, "faster than 5 slots allow: " + msg)
        self.assertLessEqual(shared, bound * 1.10 + 3 * overhead, "more than 10%% above the bound: " + msg)
        # local gates let 15 uploads through at once: well under the time 5 slots need
        self.assertLess(min(local_before, local_after), bound / 2, "local gates should be about 3 times faster: " + msg)

    def test_fifo_across_instances(self):
        # One slot, 300 ms uploads, requests sent round-robin to three instances 150 ms apart: they complete in the
        # order they were sent, which is the order they reached Redis.
        with Instances([gate_config(self.redis.url, slots=1, delay=300, lease=1600) for _ in range(3)]) as weirs:
            wait_registered(self.redis, "weir:upload", 6)
            answers = post_all([weirs[i % 3].port for i in range(9)], gap=0.15)
        self.assertEqual([a.status for a in answers], [200] * 9)
        self.assertEqual([a.conn for a in answers], list(range(9)), "completion order: %s" % answers)
        for x, y in zip(answers, answers[1:]):
            self.assertGreaterEqual(y.t - x.t, 0.3 - 0.05)

    # --- clients that leave ---------------------------------------------------------------------------------------
    def test_h2_leavers_on_every_instance_free_their_slots(self):
        # 3 slots of 1.5 s held by HTTP/2 streams, one per instance; after 0.4 s they leave (reset, close, abort). A
        # new upload on any instance then gets a slot at once: about D, not 2D - 0.4.
        D, H = 1.5, 0.4
        cfg = gate_config(self.redis.url, slots=3, delay=1500, lease=4000, timeout=1000)
        with Instances([cfg] * 3) as weirs:
            wait_registered(self.redis, "weir:upload", 6)
            clients = []
            for w in weirs:
                h = wt.H2Client(w.port)
                clients.append((h, h.request("POST", "/upload")))
            clients[0][0].wait(lambda: False, H)
            self.assertEqual(self.redis.command("ZCARD", "weir:upload:holders"), 3)
            clients[0][0].reset(clients[0][1])
            clients[0][0].wait(lambda: False, 0.05)
            clients[1][0].close()
            clients[2][0].close(rst=True)
            for i, w in enumerate(weirs):
                t0 = time.monotonic()
                r = wt.http1(w.port, "POST", "/upload", timeout=3 * D)
                elapsed = time.monotonic() - t0
                self.assertEqual(r.status, 200)
                self.assertLess(elapsed, D + (D - H) / 2, "instance %d: a new upload took %.2fs" % (i, elapsed))
                if i == 0:
                    # the new upload's release goes to Redis just after its answer: wait for it, for much less than
                    # the 4 s lease that a leaver's slot would stay held for
                    self.assertTrue(wt.wait_until(lambda: self.redis.command("ZCARD", "weir:upload:holders") == 0, 1.0),
                                    "slots still held: %s" % self.redis.command("ZCARD", "weir:upload:holders"))
            clients[0][0].close()

    def test_http1_queued_leavers_on_every_instance_give_their_turn(self):
        # One slot of 0.5 s held on instance 0; clients queued on all three instances leave before their turn; a last
        # client (instance 2) is served after the holder: about 2 x D, not 8 x D.
        D = 0.5
        cfg = gate_config(self.redis.url, slots=1, delay=500, lease=2000, timeout=500)
        with Instances([cfg] * 3) as weirs:
            wait_registered(self.redis, "weir:upload", 6)
            t0 = time.monotonic()
            holder = wt.HTTP1Conn(weirs[0].port)
            holder.request("POST", "/upload")
            time.sleep(0.1)
            leavers = []
            for i in range(6):
                c = wt.HTTP1Conn(weirs[i % 3].port)
                c.request("POST", "/upload")
                leavers.append(c)
            time.sleep(0.15)
            for i, c in enumerate(leavers):
                c.close(rst=(i % 2 == 1))
            last = wt.HTTP1Conn(weirs[2].port, timeout=30)
            last.request("POST", "/upload")
            self.assertEqual(holder.read_response().status, 200)
            self.assertEqual(last.read_response().status, 200)
            elapsed = time.monotonic() - t0
            holder.close()
            last.close()
        self.assertGreaterEqual(elapsed, 2 * D - 0.1)
        self.assertLess(elapsed, 2 * D + 1.0, "the last client took %.2fs: leavers kept their turn" % elapsed)

    # --- crashes and outages --------------------------------------------------------------------------------------
    def test_killed_instance_loses_its_slots_within_a_lease(self):
        # Instances A and B queue uploads in turns, so that both hold slots and A's tickets stand between B's in the
        # queue. A is killed with SIGKILL: nobody releases its slots, which Redis expires within one lease (1.5 s);
        # slots that B frees meanwhile may still go to A's queued tickets, and those expire with A too (a grant lasts
        # only as long as its member's liveness key), not a lease later. B's uploads all finish within one lease + 1 s
        # of the kill.
        lease = 1.5
        cfg = gate_config(self.redis.url, slots=5, delay=50, lease=1500, timeout=300)
        with Instances([cfg, cfg]) as (a, b):
            wait_registered(self.redis, "weir:upload", 4)
            result = {}
            t_start = time.monotonic()
            thread = threading.Thread(target=lambda: result.setdefault(
                "answers", post_all([b.port] * 30, gap=0.012, timeout=30)))
            thread.start()
            a_socks = []
            for _ in range(4):
                a_socks += raw_posts(a.port, 10)
                time.sleep(0.08)
            holders = self.redis.command("ZRANGE", "weir:upload:holders", 0, -1)
            a.proc.kill()
            t_kill = time.monotonic() - t_start
            a.proc.wait()
            thread.join(30)
            for s in a_socks:
                s.close()
            answers = result["answers"]
            self.assertEqual([x.status for x in answers], [200] * 30)
            done = max(x.t for x in answers) - t_kill
            print("B finished %.2fs after the kill; holders at the kill: %s" % (done, holders))
            self.assertEqual(len(holders), 5)
            self.assertLess(done, lease + 1.0, "B finished %.2fs after the kill" % done)
            self.assertGreater(done, lease / 2, "A's slots came back before its lease ran out: was it killed?")
            self.assertEqual(len(self.redis.command("KEYS", "weir:upload:inst:*")), 2)  # B's two members

    def test_redis_killed_then_restarted(self):
        # Redis dies while one upload holds the only slot and three wait: the waiters get 503 with Retry-After at once,
        # the holder (whose lease is still guaranteed) finishes; new uploads get 503 at once; within 2 s of Redis's
        # restart uploads are served again.
        with Instances([gate_config(self.redis.url, slots=1, delay=1000, lease=3000, timeout=300)]) as (w,):
            wait_registered(self.redis, "weir:upload", 2)
            holder = wt.HTTP1Conn(w.port)
            holder.request("POST", "/upload")
            time.sleep(0.1)
            waiters = []
            for _ in range(3):
                c = wt.HTTP1Conn(w.port)
                c.request("POST", "/upload")
                waiters.append(c)
            time.sleep(0.1)
            t_kill = time.monotonic()
            self.redis.kill()
            for c in waiters:
                r = c.read_response()
                self.assertEqual(r.status, 503)
                self.assertIn("error", r.json())
                self.assertRegex(r.headers.get("retry-after", ""), r"^[1-9][0-9]*$")
                c.close()
            self.assertLess(time.monotonic() - t_kill, 0.5, "the waiters were not told at once")
            self.assertEqual(holder.read_response().status, 200)
            holder.close()
            t0 = time.monotonic()
            r = wt.http1(w.port, "POST", "/upload")
            self.assertEqual(r.status, 503)
            self.assertLess(time.monotonic() - t0, 0.3)
            self.assertIn("retry-after", r.headers)
            time.sleep(1.0)
            self.redis.start()
            t_restart = time.monotonic()
            while True:
                t_sent = time.monotonic()
                r = wt.http1(w.port, "POST", "/upload", timeout=10)
                if r.status == 200:
                    break
                self.assertEqual(r.status, 503)
                self.assertLess(t_sent - t_restart, 2.0, "not served again within 2 s of Redis's restart")
                time.sleep(0.05)
            self.assertLess(t_sent - t_restart, 2.0)

    def test_flushall_while_held(self):
        # Two instances under steady load; FLUSHALL while slots are held: every upload still succeeds (waiters
        # queue again), and from one lease after the flush on, neither Redis nor the answers' timing show more than 5
        # uploads at once.
        D, lease = 0.3, 1.6
        cfg = gate_config(self.redis.url, slots=5, delay=300, lease=1600, timeout=400)
        with Instances([cfg, cfg]) as (a, b):
            wait_registered(self.redis, "weir:upload", 4)
            result = {}
            t_start = time.monotonic()
            thread = threading.Thread(target=lambda: result.setdefault(
                "answers", post_all([a.port, b.port] * 60, gap=0.01, timeout=60)))
            with HolderMonitor(self.redis) as mon:
                thread.start()
                time.sleep(1.0)
                self.assertEqual(self.redis.command("ZCARD", "weir:upload:holders"), 5)
                self.redis.command("FLUSHALL")
                t_flush = time.monotonic()
                thread.join(60)
            answers = result["answers"]
            self.assertEqual([x.status for x in answers], [200] * 120)
            self.assertLessEqual(mon.max(since=t_flush + lease), 5)
            after = t_flush - t_start + lease
            slack = 0.04
            late = [(x.t - D + slack, x.t - slack) for x in answers if x.t - D >= after]
            self.assertGreater(len(late), 20)
            self.assertLessEqual(max_overlap(late), 5, "more than 5 uploads at once after the lease")

    def test_two_names_are_independent(self):
        # Two gates of 2 slots under different names: 8 uploads to each at once take 4 waves of 0.3 s each, side by
        # side (1.2 s), not one after the other (2.4 s).
        with Instances([gate_config(self.redis.url, slots=2, delay=300, name="gate-a", lease=1600),
                        gate_config(self.redis.url, slots=2, delay=300, name="gate-b", lease=1600)]) as (a, b):
            wait_registered(self.redis, "gate-a", 2)
            wait_registered(self.redis, "gate-b", 2)
            answers = post_all([a.port] * 8 + [b.port] * 8)
        self.assertEqual([x.status for x in answers], [200] * 16)
        last = max(x.t for x in answers)
        self.assertGreaterEqual(last, 1.2 - 0.05)
        self.assertLess(last, 1.8, "the two names shared their slots: %.2fs" % last)
        self.assertIsNotNone(self.redis.command("GET", "gate-a:epoch"))
        self.assertIsNotNone(self.redis.command("GET", "gate-b:epoch"))

    def test_on_failure_local(self):
        # Redis is not there at start: with on-failure: local, uploads go through an in-process gate of the same size
        # (2 slots: 6 uploads of 0.3 s take 3 waves). When Redis comes back while local uploads run, they finish, and
        # new uploads go to Redis again.
        port = self.redis.port
        self.redis.kill()
        url = "redis://127.0.0.1:%d" % port
        with Instances([gate_config(url, slots=2, delay=300, lease=1600, timeout=300, on_failure="local")]) as (w,):
            answers = post_all([w.port] * 6)
            self.assertEqual([x.status for x in answers], [200] * 6)
            self.assertGreaterEqual(max(x.t for x in answers), 0.9 - 0.05, "the fallback gate did not hold 2 slots")
            result = {}
            thread = threading.Thread(target=lambda: result.setdefault("answers", post_all([w.port] * 4)))
            thread.start()
            time.sleep(0.1)
            self.redis.start()
            thread.join(30)
            self.assertEqual([x.status for x in result["answers"]], [200] * 4)
            wait_registered(self.redis, "weir:upload", 2)
            with HolderMonitor(self.redis) as mon:
                answers = post_all([w.port] * 4)
            self.assertEqual([x.status for x in answers], [200] * 4)
            self.assertEqual(mon.max(), 2, "the uploads did not go to Redis again")

    # --- configuration --------------------------------------------------------------------------------------------
    def test_weir_t_checks(self):
        tmp = wt.temp_dir()
        try:
            def check(cfg):
                path = os.path.join(tmp, "c.yaml")
                with open(path, "w") as f:
                    f.write(cfg)
                return wt.run([wt.WEIR_BIN, "-t", "-c", path], check=False)

            self.assertEqual(check(gate_config(self.redis.url)).returncode, 0)
            proc = check(gate_config(self.redis.url, delay=200, lease=1000, timeout=100))
            self.assertEqual(proc.returncode, 2)
            self.assertRegex(proc.stderr, r"c\.yaml:\d+: in \"upload\.redis\.lease\": upload\.redis\.lease \(1000 ms\) must be "
                                          r"at least 2 x upload\.delay-max \+ 1000 ms \(1400 ms\)")
            proc = check(gate_config(self.redis.url, lease=2000, timeout=1500))
            self.assertRegex(proc.stderr, r"in \"upload\.redis\.timeout\": .* at most half of upload\.redis\.lease")
            proc = check(gate_config("http://127.0.0.1"))
            self.assertRegex(proc.stderr, r"c\.yaml:\d+: in \"upload\.redis\.url\": invalid Redis URL")
            proc = check(gate_config(self.redis.url, gate="shared"))
            self.assertRegex(proc.stderr, r"in \"upload\.gate\": expected local or redis, got \"shared\"")
            proc = check(gate_config(self.redis.url, on_failure="retry"))
            self.assertRegex(proc.stderr, r"in \"upload\.redis\.on-failure\": expected reject or local, got \"retry\"")
            proc = check(gate_config(gate="local", extra="upload.redis.name: x"))
            self.assertRegex(proc.stderr, r"c\.yaml:\d+: \"upload\.redis\.name\" needs upload\.gate: redis")
            proc = check(gate_config(self.redis.url, name="has space"))
            self.assertRegex(proc.stderr, r"in \"upload\.redis\.name\": expected printable ASCII")
            self.assertEqual(proc.returncode, 2)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
