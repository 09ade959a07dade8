"""End-to-end tests of the bounds on waiting uploads (issue 9, item 5): upload.max-queue refuses uploads beyond it at
once, and upload.queue-timeout answers an upload that waited that long without a slot; both with 503, a JSON error and
Retry-After. Without them, 1000 connections pipelining 3 uploads each kept a normal upload waiting about 90 s."""

import json
import os
import unittest

import weirtest as wt
from weirtest import Weir
from weirtest.uploads import post_all


def config(slots, delay, extra=""):
    return ("listen:\n  port: 0\n  host: 127.0.0.1\nnum-threads: 2\nhosts:\n  default:\n    paths:\n      /upload:\n"
            "        upload.concurrency: %d\n        upload.delay-min: %d\n        upload.delay-max: %d\n%s"
            % (slots, delay, delay, "".join("        %s\n" % line for line in extra.splitlines())))


class UploadQueueTest(unittest.TestCase):
    def check_503(self, a):
        self.assertEqual(a.status, 503, a)
        self.assertEqual(a.headers.get("content-type"), "application/json")
        self.assertIn("error", json.loads(a.body.decode()))
        self.assertRegex(a.headers.get("retry-after", ""), r"^[1-9][0-9]*$", a.headers)

    def test_max_queue_refuses_at_once(self):
        # 5 slots of 1 s, at most 20 waiting: of 200 uploads sent at once, 25 are served and 175 refused at once.
        D = 1.0
        with Weir(config(5, 1000, "upload.max-queue: 20")) as w:
            answers = post_all([w.port] * 200)
        ok = [a for a in answers if a.status == 200]
        refused = [a for a in answers if a.status != 200]
        for a in refused:
            self.check_503(a)
            self.assertLess(a.latency, D, "a refusal took %.3fs: it should come at once" % a.latency)
        self.assertIn("upload.max-queue", json.loads(refused[0].body.decode())["error"])
        self.assertEqual(len(ok), 25, "served %d uploads, expected 5 holders + 20 waiting" % len(ok))
        self.assertGreaterEqual(max(a.t for a in ok), 5 * D - 0.1)

    def test_queue_timeout_answers_waiters(self):
        # One slot held for 2 s; the uploads behind it give up after 300 ms each, with 503 and Retry-After.
        with Weir(config(1, 2000, "upload.queue-timeout: 300")) as w:
            answers = post_all([w.port] * 6, gap=0.05)
            by_conn = {a.conn: a for a in answers}
            self.assertEqual(by_conn[0].status, 200)
            self.assertGreaterEqual(by_conn[0].latency, 1.9)
            for i in range(1, 6):
                a = by_conn[i]
                self.check_503(a)
                self.assertIn("upload.queue-timeout", json.loads(a.body.decode())["error"])
                self.assertGreaterEqual(a.latency, 0.29, a)
                self.assertLess(a.latency, 1.5, "waited %.3fs with a 300 ms queue-timeout" % a.latency)
            # The places given back leave the gate whole: a new upload gets the slot and its full answer.
            r = wt.http1(w.port, "POST", "/upload", timeout=10)
            self.assertEqual(r.status, 200)

    def test_pipelined_uploads_are_bounded(self):
        # The attack of issue 9 at a small scale: 100 connections x 3 pipelined uploads, 5 slots of 100 ms, at most 20
        # waiting for at most 400 ms. Every request gets its answer (in order on its connection), and the whole run
        # takes about the time of the uploads that fit, not 300 x 0.1 / 5 = 6 s.
        with Weir(config(5, 100, "upload.max-queue: 20\nupload.queue-timeout: 400")) as w:
            answers = post_all([w.port] * 100, pipeline=3, timeout=30)
            self.assertEqual(len(answers), 300)
            for a in answers:
                self.assertIn(a.status, (200, 503), a)
                if a.status == 503:
                    self.check_503(a)
            seqs = {}
            for a in answers:
                seqs.setdefault(a.conn, []).append(a.seq)
            self.assertTrue(all(v == [0, 1, 2] for v in seqs.values()))
            served = sum(1 for a in answers if a.status == 200)
            self.assertGreaterEqual(served, 25)
            last = max(a.t for a in answers)
            self.assertLess(last, 4.0, "the pipelined uploads took %.2fs: waiting is not bounded" % last)
            self.assertEqual(wt.http1(w.port, "POST", "/upload").status, 200)

    def test_config_keys_checked(self):
        tmp = wt.temp_dir()
        try:
            good = os.path.join(tmp, "good.yaml")
            with open(good, "w") as f:
                f.write(config(5, 100, "upload.max-queue: 1000\nupload.queue-timeout: 30000"))
            self.assertEqual(wt.run([wt.WEIR_BIN, "-t", "-c", good]).returncode, 0)
            bad = os.path.join(tmp, "bad.yaml")
            with open(bad, "w") as f:
                f.write(config(5, 100, "upload.max-queue: 0\nupload.queue-timeout: soon"))
            proc = wt.run([wt.WEIR_BIN, "-t", "-c", bad], check=False)
            self.assertEqual(proc.returncode, 2)
            self.assertRegex(proc.stderr, r"bad\.yaml:\d+: in \"upload\.max-queue\": expected an integer from 1 to 10000000")
            self.assertRegex(proc.stderr, r"bad\.yaml:\d+: in \"upload\.queue-timeout\": expected an integer from 1 to 3600000")
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
