"""Live reload (SIGHUP, `weir -s reload` over the control socket), the access log's reopening (SIGUSR1), and what
weir tells systemd (sd_notify), against real weir processes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import weirtest as wt
from weirtest import Config, Weir
from weirtest.server import WEIR_BIN


class Reloadable:
    """A weir whose configuration file the test rewrites, with a control socket."""

    def __init__(self, make_config, **kw):
        self.dir = wt.temp_dir()
        self.sock = os.path.join(self.dir, "control.sock")
        self.make_config = make_config
        self.weir = Weir(self.config(**kw), directory=self.dir)

    def config(self, **kw):
        return str(self.make_config(**kw).set("control-socket", self.sock))

    def write(self, text):
        with open(self.weir.config_path, "w") as f:
            f.write(text)

    def reload(self, **kw):
        """Rewrites the file and asks for a reload; returns weir -s reload's (exit code, output)."""
        if kw:
            self.write(self.config(**kw))
        proc = subprocess.run([WEIR_BIN, "-c", self.weir.config_path, "-s", "reload"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)
        return proc.returncode, proc.stdout

    def __enter__(self):
        self.weir.start()
        return self

    def __exit__(self, *exc):
        return self.weir.__exit__(*exc)


def calc_config(n=10, delay=5, port=0, extra_port=None, threads=2):
    c = Config(threads=threads).listen(port=port)
    if extra_port is not None:
        c.listen(port=extra_port)
    return c.path("/calc", {"calc.n": n}).path("/cache", {"cache.backend": "memory"}) \
        .path("/upload", {"upload.concurrency": 50, "upload.delay-min": delay, "upload.delay-max": delay})


def calc_result(w, index=0):
    status, _, body = wt.curl_json(w.url("/calc", index))
    assert status == 200, (status, body)
    return body["result"]


def sum_squares(n):
    return (n - 1) * n * (2 * n - 1) // 6


def h2_client_loop(port, kind, stop, results):
    """An HTTP/2 client that behaves as RFC 9113 asks: 5 streams at a time; after GOAWAY it opens no new stream on the
    connection, lets the streams the server took finish, and sends again, on a new connection, those it did not take
    (numbered above GOAWAY's last stream, or refused). Records (requests, answered with 200, sent again, anything
    else). python3-h2 cannot be used here: it stops reading a connection at the first GOAWAY."""
    path, method = ("/cache?key=k", "GET") if kind == "cache" else ("/upload", "POST")
    todo = 0  # requests to send again
    sent = answered = again = 0
    other = []
    try:
        while not stop.is_set() or todo > 0:
            h = wt.H2Client(port, timeout=10)
            open_streams = set()
            while True:
                while h.goaway is None and not h.eof and len(open_streams) < 5 and (not stop.is_set() or todo > 0):
                    open_streams.add(h.request(method, path))
                    if todo > 0:
                        todo -= 1
                    else:
                        sent += 1
                if not open_streams:
                    break
                h.wait(lambda: h.eof or any(h.finished(sid) or (h.goaway is not None and sid > h.goaway[0])
                                            for sid in open_streams), 10)
                for sid in list(open_streams):
                    st = h.streams[sid]
                    if st.done:
                        open_streams.discard(sid)
                        if st.status == 200:
                            answered += 1
                        else:
                            other.append("status %s" % st.status)
                    elif st.reset_code is not None:
                        open_streams.discard(sid)
                        if st.reset_code == 7:  # REFUSED_STREAM: not processed
                            again += 1
                            todo += 1
                        else:
                            other.append("reset %d" % st.reset_code)
                    elif h.goaway is not None and sid > h.goaway[0]:
                        open_streams.discard(sid)  # not taken by the server
                        again += 1
                        todo += 1
                if h.eof and open_streams:
                    other.append("connection closed with %d stream(s) open" % len(open_streams))
                    break
            h.close()
    except Exception as e:  # reported by the test, not lost in the thread
        other.append("client error: %r" % e)
    results[kind] = (sent, answered, again, other)


class TestReload(unittest.TestCase):
    def test_reload_applies_new_settings(self):
        with Reloadable(calc_config, n=10) as r:
            w = r.weir
            self.assertEqual(calc_result(w), sum_squares(10))
            code, out = r.reload(n=20)
            self.assertEqual(code, 0, out)
            self.assertTrue(out.startswith("ok"), out)
            self.assertEqual(calc_result(w), sum_squares(20))  # visible at once, on new connections
            w.signal(signal.SIGHUP)  # the same through the signal
            r.write(r.config(n=30))
            w.signal(signal.SIGHUP)
            self.assertTrue(wt.wait_until(lambda: calc_result(w) == sum_squares(30), 10), w.stderr())

    def test_invalid_file_keeps_the_running_configuration(self):
        with Reloadable(calc_config, n=10) as r:
            w = r.weir
            r.write("listen:\n  port: 0\nhosts:\n  default:\n    paths:\n      /calc:\n        calc.n: ten\n")
            code, out = r.reload()
            # checked by the command itself: every error with file:line, nothing sent
            self.assertEqual(code, 2, out)
            self.assertIn(w.config_path + ":7: in \"calc.n\"", out)
            # through the signal the server checks, logs every error with file:line and keeps serving
            w.signal(signal.SIGHUP)
            self.assertTrue(wt.wait_until(lambda: "reload failed" in w.stderr(), 10), w.stderr())
            self.assertIn(w.config_path + ":7: in \"calc.n\"", w.stderr())
            self.assertEqual(calc_result(w), sum_squares(10))

    def test_refusal_by_the_server_is_reported(self):
        # a file the command cannot fault (it does not bind) that the server cannot set up: an address in use
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        try:
            with Reloadable(calc_config, n=10) as r:
                w = r.weir
                code, out = r.reload(n=20, extra_port=busy.getsockname()[1])
                self.assertEqual(code, 1, out)
                self.assertIn("error", out)
                self.assertIn("still serving configuration 1", out)
                self.assertEqual(calc_result(w), sum_squares(10))
                # the threads cannot change on reload
                code, out = r.reload(n=20, threads=3)
                self.assertEqual(code, 1, out)
                self.assertIn("num-threads", out)
        finally:
            busy.close()

    def test_listeners_are_added_kept_and_removed(self):
        with Reloadable(calc_config, n=10) as r:
            w = r.weir
            port = w.port
            idle = wt.HTTP1Conn(port)  # a keep-alive connection of the first configuration
            idle.request("GET", "/calc")
            self.assertEqual(idle.read_response().status, 200)
            extra = wt.free_port()
            code, out = r.reload(n=20, port=port, extra_port=extra)
            self.assertEqual(code, 0, out)
            self.assertEqual(wt.curl_json("http://127.0.0.1:%d/calc" % extra)[2], {"result": sum_squares(20)})
            self.assertEqual(wt.curl_json("http://127.0.0.1:%d/calc" % port)[2], {"result": sum_squares(20)})
            # the kept connection is answered under its own configuration, and told to close
            idle.request("GET", "/calc")
            resp = idle.read_response()
            self.assertEqual((resp.status, resp.json()), (200, {"result": sum_squares(10)}))
            self.assertEqual(resp.headers.get("connection"), "close")
            idle.close()
            code, out = r.reload(n=30, port=port)
            self.assertEqual(code, 0, out)
            self.assertTrue(wt.wait_until(lambda: "stopped listening" in w.stderr(), 5), w.stderr())
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", extra), timeout=2).close()
            self.assertEqual(calc_result(w), sum_squares(30))

    def test_requests_in_flight_finish_under_their_configuration(self):
        with Reloadable(calc_config, delay=1500) as r:
            w = r.weir
            c = wt.HTTP1Conn(w.port, timeout=30)
            c.request("POST", "/upload")
            time.sleep(0.3)
            t = time.monotonic()
            code, out = r.reload(delay=10)
            self.assertEqual(code, 0, out)
            self.assertLess(time.monotonic() - t, 1.0, "the reload waited for the upload")
            t = time.monotonic()
            self.assertEqual(wt.curl_json("-X", "POST", w.url("/upload"))[0], 200)
            self.assertLess(time.monotonic() - t, 1.0)  # the new delay
            r1 = c.read_response()
            self.assertEqual(r1.status, 200)
            self.assertTrue(c.is_closed_by_peer(5))

    def test_reloads_under_load_lose_nothing(self):
        # reloads every 200 ms while h2load drives /cache and /upload over HTTP/1.1 and h2c
        wt.require("h2load")
        with Reloadable(calc_config) as r:
            w = r.weir
            self.assertEqual(wt.curl_json("-X", "PUT", "--data-binary", "v", w.url("/cache?key=k"))[0], 200)
            body = os.path.join(r.dir, "body")  # h2load cannot send an empty file
            with open(body, "wb") as f:
                f.write(b"x")
            runs = [("cache-h1", ["--h1", "-c", "20", "-D", "6", w.url("/cache?key=k")]),
                    ("cache-h2", ["-c", "10", "-m", "10", "-D", "6", w.url("/cache?key=k")]),
                    ("upload-h1", ["--h1", "-c", "20", "-D", "6", "-d", body, w.url("/upload")]),
                    ("upload-h2", ["-c", "4", "-m", "10", "-D", "6", "-d", body, w.url("/upload")])]
            outs = {}
            threads = [threading.Thread(target=lambda n=n, a=a: outs.update({n: wt.h2load(*a, timeout=60).stdout}))
                       for n, a in runs]
            for t in threads:
                t.start()
            h2_results = {}
            stop = threading.Event()
            h2_threads = [threading.Thread(target=h2_client_loop, args=(w.port, kind, stop, h2_results))
                          for kind in ("cache", "upload")]
            for t in h2_threads:
                t.start()
            fds, rss = [], []
            reloads = 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.2)
                code, out = r.reload(n=10 + reloads % 2)
                self.assertEqual(code, 0, out)
                reloads += 1
                self.assertEqual(calc_result(w), sum_squares(10 + (reloads - 1) % 2))  # the new settings at once
                fds.append(w.fd_count())
                rss.append(w.rss_mib())
            stop.set()
            for t in threads + h2_threads:
                t.join(60)
            self.assertGreaterEqual(reloads, 10)
            for name, out in outs.items():
                m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                              r"(\d+) errored", out)
                self.assertIsNotNone(m, out)
                succeeded, failed = int(m.group(4)), int(m.group(5))
                self.assertGreater(succeeded, 100, (name, out))
                self.assertIn("status codes: %d 2xx, 0 3xx, 0 4xx, 0 5xx" % succeeded, out)
                if name.endswith("h1"):
                    # HTTP/1: old connections are told "Connection: close" and h2load reconnects: nothing fails
                    self.assertEqual(failed, 0, (name, out))
                # h2c: an old connection gets GOAWAY, and h2load counts the requests it can no longer submit on it as
                # failed before it reconnects (those never leave h2load); the h2 clients below judge h2c instead
            self.assertEqual(sorted(h2_results), ["cache", "upload"], "an h2 client did not finish")
            for kind, (sent, answered, refused, other) in h2_results.items():
                self.assertGreater(answered, 50, kind)
                self.assertEqual((sent, other), (answered, []), kind)
                sys.stderr.write("h2 %s: %d requests, %d sent again after GOAWAY or REFUSED_STREAM\n" % (kind, sent, refused))
            # the old generations are freed: no descriptor or memory growth once the load has ended
            self.assertTrue(wt.wait_until(lambda: w.fd_count() <= fds[0], 10), (fds, w.fd_count()))

    def test_many_reloads_do_not_grow(self):
        with Reloadable(calc_config) as r:
            w = r.weir
            code, out = r.reload(n=11)
            self.assertEqual(code, 0, out)
            time.sleep(0.3)
            fds0, rss0 = w.fd_count(), w.rss_mib()
            for i in range(100):
                code, out = r.reload(n=10 + i % 3)
                self.assertEqual(code, 0, out)
                wt.curl_json(w.url("/calc"))
            time.sleep(0.5)
            self.assertLessEqual(w.fd_count(), fds0)
            self.assertLess(w.rss_mib() - rss0, 20 if not wt.SANITIZED else 200)
            self.assertTrue(wt.wait_until(lambda: "serving configuration 102" in w.stderr(), 5), w.stderr())


class TestCommandLine(unittest.TestCase):
    def test_signal_option_and_log_level(self):
        d = wt.temp_dir()
        path = os.path.join(d, "plain.yaml")
        with open(path, "w") as f:
            f.write(str(calc_config()))
        proc = wt.run([WEIR_BIN, "-c", path, "-s", "reload"], check=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertIn("no control-socket", proc.stderr)
        proc = wt.run([WEIR_BIN, "-c", path, "-s", "restart"], check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("reload or reopen", proc.stderr)
        proc = wt.run([WEIR_BIN, "-c", path, "-l", "loud"], check=False)
        self.assertEqual(proc.returncode, 2)
        # a socket nobody listens on
        r = Reloadable(calc_config)
        proc = wt.run([WEIR_BIN, "-c", r.weir.config_path, "-s", "reload"], check=False)
        self.assertEqual(proc.returncode, 3, proc.stdout + proc.stderr)
        self.assertIn("cannot reach the running server", proc.stdout)
        # debug messages only with --log-level debug: the freeing of a replaced configuration is one
        r.weir.extra_args = ["--log-level", "debug"]
        with r:
            self.assertEqual(r.reload(n=20)[0], 0)
            self.assertTrue(wt.wait_until(lambda: "configuration 1 freed" in r.weir.stderr(), 10), r.weir.stderr())
            self.assertIn("[debug]", r.weir.stderr())


class TestStateAcrossReloads(unittest.TestCase):
    def test_upload_limit_holds_across_a_reload(self):
        # 2 slots, 1 s uploads; two run, the configuration becomes 3 slots, three more come: one gets the third slot at
        # once, two wait for the old uploads (which count against the new limit) and finish a second later
        def make(slots):
            return Config().listen().path("/upload", {"upload.concurrency": slots, "upload.delay-min": 1000,
                                                      "upload.delay-max": 1000})
        with Reloadable(make, slots=2) as r:
            w = r.weir
            t0 = time.monotonic()
            old = []
            for _ in range(2):
                c = wt.HTTP1Conn(w.port, timeout=30)
                c.request("POST", "/upload")
                old.append(c)
            time.sleep(0.2)
            self.assertEqual(r.reload(slots=3)[0], 0)
            new = []
            for _ in range(3):
                c = wt.HTTP1Conn(w.port, timeout=30)
                c.request("POST", "/upload")
                new.append(c)
            done = {}

            def read(i, c):
                done[i] = (c.read_response().status, time.monotonic() - t0)
                c.close()

            readers = [threading.Thread(target=read, args=(i, c)) for i, c in enumerate(old + new)]
            for t in readers:
                t.start()
            for t in readers:
                t.join(30)
            self.assertEqual([done[i][0] for i in range(5)], [200] * 5)
            late = [done[i][1] for i in range(2, 5) if done[i][1] >= 1.8]
            self.assertEqual(len(late), 2, "finish times %s: the old uploads did not count against the new limit" % done)

    def test_memory_cache_keeps_its_contents(self):
        def make(n=10, max_bytes="64M"):
            return Config().listen().path("/calc", {"calc.n": n}).path("/cache", {"cache.memory.max-bytes": max_bytes})
        with Reloadable(make) as r:
            w = r.weir
            self.assertEqual(wt.curl_json("-X", "PUT", "--data-binary", "kept", w.url("/cache?key=k"))[0], 200)
            self.assertEqual(r.reload(n=20)[0], 0)  # the cache's settings did not change
            self.assertEqual(wt.curl_json(w.url("/cache?key=k"))[2], {"data": "kept"})
            self.assertEqual(r.reload(n=20, max_bytes="32M")[0], 0)  # they did: a new, empty store
            self.assertEqual(wt.curl_json(w.url("/cache?key=k"))[2], {"data": None})

    def test_redis_connections_are_kept(self):
        with wt.RedisServer() as redis:
            def make(n=10, pool=2):
                return Config().listen().path("/calc", {"calc.n": n}).path(
                    "/cache", {"cache.backend": "redis", "cache.redis.url": redis.url, "cache.redis.pool": pool})

            def received():
                info = redis.command("INFO", "stats")
                info = info.decode() if isinstance(info, bytes) else info
                return int(re.search(r"total_connections_received:(\d+)", info).group(1))

            with Reloadable(make) as r:
                w = r.weir
                self.assertEqual(wt.curl_json("-X", "PUT", "--data-binary", "v", w.url("/cache?key=k"))[0], 200)
                before = received()
                for i in range(3):
                    self.assertEqual(r.reload(n=20 + i)[0], 0)
                    self.assertEqual(wt.curl_json(w.url("/cache?key=k"))[2], {"data": "v"})
                # the one new connection is this look itself
                self.assertEqual(received(), before + 1, "a reload that kept the Redis settings reconnected")
                self.assertEqual(r.reload(n=20, pool=3)[0], 0)  # new settings: new connections
                self.assertEqual(wt.curl_json(w.url("/cache?key=k"))[2], {"data": "v"})
                self.assertGreater(received(), before + 2)


class TestAccessLogRotation(unittest.TestCase):
    def test_rotation_under_load_loses_and_duplicates_nothing(self):
        wt.require("h2load")
        d = wt.temp_dir()
        log = os.path.join(d, "access.log")
        with Weir(Config().listen().set("access-log", log).path("/calc", {"calc.n": 10})) as w:
            # h2load runs back to back until the rotations are done, however fast the machine: every rotation
            # happens under load
            done = threading.Event()
            succeeded, failed = [], []

            def load():
                while not done.is_set():
                    out = wt.h2load("--h1", "-c", "10", "-n", "2000", w.url("/calc")).stdout
                    succeeded.append(int(re.search(r"(\d+) succeeded", out).group(1)))
                    failed.append(int(re.search(r"(\d+) failed", out).group(1)))

            t = threading.Thread(target=load)
            t.start()
            rotated = []
            try:
                for i in range(3):
                    time.sleep(0.3)
                    name = "%s.%d" % (log, i + 1)
                    os.rename(log, name)  # as logrotate does without copytruncate
                    rotated.append(name)
                    w.signal(signal.SIGUSR1)
                    self.assertTrue(wt.wait_until(lambda: os.path.exists(log), 5), "not reopened")
                time.sleep(0.3)
            finally:
                done.set()
                t.join(120)
        lines = []
        for name in rotated + [log]:
            with open(name) as f:
                lines.extend(f.readlines())
        self.assertEqual(sum(failed), 0)
        self.assertEqual(len(lines), sum(succeeded))
        self.assertTrue(all(l.endswith("\n") and '"GET /calc HTTP/1.1" 200' in l for l in lines))
        for name in rotated[1:]:
            with open(name) as f:
                self.assertGreater(len(f.readlines()), 0, "a rotation caught no line: the test proves nothing")


class TestNotify(unittest.TestCase):
    def test_systemd_is_told_ready_reloading_stopping(self):
        d = wt.temp_dir()
        path = os.path.join(d, "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(path)
        listener.settimeout(10)
        messages = []

        def read_until(word):
            while True:
                m = listener.recv(4096).decode()
                messages.append(m)
                if word in m:
                    return m

        try:
            r = Reloadable(calc_config)
            r.weir.env["NOTIFY_SOCKET"] = path
            with r:
                ready = read_until("READY=1")
                self.assertIn("STATUS=serving configuration 1", ready)
                self.assertEqual(r.reload(n=20)[0], 0)
                read_until("RELOADING=1")
                self.assertIn("STATUS=serving configuration 2", read_until("READY=1"))
                r.write("nonsense: [")
                r.weir.signal(signal.SIGHUP)
                read_until("RELOADING=1")
                self.assertIn("STATUS=serving configuration 2", read_until("READY=1"))  # still the old one
                r.weir.signal(signal.SIGTERM)
                self.assertIn("STATUS=draining", read_until("STOPPING=1"))
        finally:
            listener.close()


if __name__ == "__main__":
    unittest.main()
