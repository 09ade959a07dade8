"""End-to-end tests of /cache: every API case on both backends (memory and a real redis-server started here), over
HTTP/1.1 and h2c; then what only one backend has: LRU eviction and sharing across threads (memory); interoperability
with other Redis clients, Redis killed and restarted, a slow Redis, early client disconnects (redis).

Each test_ method is its own ctest entry; a method of ApiCases runs once per backend class."""

import json
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse

from weirtest import WEIR_BIN, Config, RedisServer, Weir, curl, curl_json, require, temp_file

PROTOCOLS = {"http1": ["--http1.1"], "h2c": ["--http2-prior-knowledge"]}

MAX_KEY = 16
MAX_VALUE = 1024


def config(cache_keys, threads=2):
    """One listener and /cache with cache_keys ({"cache.backend": "memory", ...})."""
    return Config(threads=threads).listen().path("/cache", cache_keys)


def q(key):
    return urllib.parse.quote(key, safe="")


class Client:
    """curl against one weir, with one protocol."""

    def __init__(self, weir, proto):
        self.weir = weir
        self.flags = PROTOCOLS[proto]
        self.proto = proto

    def request(self, method, query, body=None, extra=()):
        args = list(self.flags) + ["-X", method] + list(extra)
        url = self.weir.url("/cache" + query)
        if body is None:
            status, headers, raw = curl(*(args + [url]))
        else:
            with temp_file(body if isinstance(body, bytes) else body.encode("utf-8")) as path:
                args += ["--data-binary", "@" + path, "-H", "Content-Type: application/octet-stream"]
                status, headers, raw = curl(*(args + [url]))
        expected_version = "2" if self.proto == "h2c" else "1.1"
        assert headers["_version"] == expected_version, headers
        if raw:
            assert headers.get("content-type") == "application/json", headers
            assert int(headers["content-length"]) == len(raw), headers
        return status, headers, json.loads(raw.decode("utf-8")) if raw else None

    def get(self, key):
        return self.request("GET", "?key=" + q(key))

    def put(self, key, value, ttl=None):
        query = "?key=" + q(key) + ("" if ttl is None else "&ttl=" + str(ttl))
        return self.request("PUT", query, value)

    def delete(self, key):
        return self.request("DELETE", "?key=" + q(key))


class ApiCases:
    """The API, the same on both backends. Subclasses start self.weir in setUp."""

    def clients(self):
        return [Client(self.weir, proto) for proto in PROTOCOLS]

    def test_put_get_delete(self):
        for c in self.clients():
            key = "k-" + c.proto
            self.assertEqual(c.get(key)[::2], (200, {"data": None}))
            self.assertEqual(c.put(key, "hello")[::2], (200, {"success": True}))
            self.assertEqual(c.get(key)[::2], (200, {"data": "hello"}))
            self.assertEqual(c.put(key, "again")[::2], (200, {"success": True}))
            self.assertEqual(c.get(key)[::2], (200, {"data": "again"}))
            self.assertEqual(c.delete(key)[::2], (200, {"success": True, "deleted": True}))
            self.assertEqual(c.delete(key)[::2], (200, {"success": True, "deleted": False}))
            self.assertEqual(c.get(key)[::2], (200, {"data": None}))

    def test_ttl(self):
        for c in self.clients():
            key = "t-" + c.proto
            self.assertEqual(c.put(key, "short", ttl=1)[0], 200)
            self.assertEqual(c.put(key + "-long", "long", ttl=3600)[0], 200)
            self.assertEqual(c.get(key)[::2], (200, {"data": "short"}))
        time.sleep(1.3)
        for c in self.clients():
            key = "t-" + c.proto
            self.assertEqual(c.get(key)[::2], (200, {"data": None}))
            self.assertEqual(c.get(key + "-long")[::2], (200, {"data": "long"}))
            self.assertEqual(c.delete(key)[::2], (200, {"success": True, "deleted": False}))

    def test_values_round_trip_as_json(self):
        values = ["", "plain", 'quo"te \\ back/slash', "line\nbreak\ttab\r\x00nul\x01\x1f", "héllo wörld ✓ 😀",
                  "x" * MAX_VALUE, "\u2028\u2029"]
        for c in self.clients():
            for i, v in enumerate(values):
                key = "v%d-%s" % (i, c.proto)
                self.assertEqual(c.put(key, v)[0], 200, v)
                self.assertEqual(c.get(key)[::2], (200, {"data": v}))

    def test_bodyless_put_stores_empty_value(self):
        for c in self.clients():
            status, _, body = c.request("PUT", "?key=empty-" + c.proto)
            self.assertEqual((status, body), (200, {"success": True}))
            self.assertEqual(c.get("empty-" + c.proto)[::2], (200, {"data": ""}))

    def test_keys_are_percent_decoded(self):
        for c in self.clients():
            self.assertEqual(c.request("PUT", "?key=a%20b%2F" + c.proto, "v1")[0], 200)
            # The same bytes, spelt differently.
            self.assertEqual(c.request("GET", "?key=%61%20%62/" + c.proto)[::2], (200, {"data": "v1"}))
            self.assertEqual(c.request("GET", "?ttl=5&key=a%20b%2f" + c.proto)[::2], (200, {"data": "v1"}))
            # Binary keys, NUL included, and keys that are not UTF-8.
            self.assertEqual(c.request("PUT", "?key=%00%ff" + c.proto, "bin")[0], 200)
            self.assertEqual(c.request("GET", "?key=%00%FF" + c.proto)[::2], (200, {"data": "bin"}))
            self.assertEqual(c.request("GET", "?key=%00" + c.proto)[::2], (200, {"data": None}))
            self.assertEqual(c.request("DELETE", "?key=%00%ff" + c.proto)[::2],
                             (200, {"success": True, "deleted": True}))

    def test_size_limits(self):
        for c in self.clients():
            self.assertEqual(c.put("k" * MAX_KEY, "v")[0], 200)
            self.assertEqual(c.get("k" * MAX_KEY)[::2], (200, {"data": "v"}))
            # The limit is on decoded bytes: 16 escapes are 16 bytes.
            self.assertEqual(c.request("GET", "?key=" + "%6b" * MAX_KEY)[::2], (200, {"data": "v"}))
            self.assertEqual(c.put("é" * (MAX_KEY // 2), "v")[0], 200)
            self.assertEqual(c.put("v-" + c.proto, "x" * MAX_VALUE)[0], 200)
            self.assertEqual(c.put("é" * (MAX_KEY // 2) + "x", "v")[0], 400)
            for method in ("GET", "PUT", "DELETE"):
                status, _, body = c.request(method, "?key=" + "k" * (MAX_KEY + 1), "v" if method == "PUT" else None)
                self.assertEqual(status, 400)
                self.assertIn("key", body["error"])
            status, _, body = c.put("v-" + c.proto, "x" * (MAX_VALUE + 1))
            self.assertEqual(status, 400)
            self.assertIn("value", body["error"])
            self.assertEqual(c.get("v-" + c.proto)[::2], (200, {"data": "x" * MAX_VALUE}))  # unchanged

    def test_bad_requests(self):
        cases = [("GET", "", None), ("GET", "?key=", None), ("GET", "?other=1", None), ("GET", "?key=%zz", None),
                 ("GET", "?key=a&x=%4", None), ("DELETE", "?key", None), ("PUT", "", "v"), ("PUT", "?key=", "v"),
                 ("PUT", "?key=a&ttl=0", "v"), ("PUT", "?key=a&ttl=-1", "v"), ("PUT", "?key=a&ttl=1.5", "v"),
                 ("PUT", "?key=a&ttl=abc", "v"), ("PUT", "?key=a&ttl=", "v"), ("PUT", "?key=a&ttl=+5", "v"),
                 ("PUT", "?key=a&ttl=%205", "v"), ("PUT", "?key=a&ttl=2147483648", "v"),
                 ("PUT", "?key=a&ttl=99999999999999999999", "v"), ("PUT", "?key=a", b"\xff\xfe"),
                 ("PUT", "?key=a", b"ok \xc3"), ("PUT", "?key=a", b"\xc0\xaf"), ("PUT", "?key=a", b"\xed\xa0\x80"),
                 ("PUT", "?key=a", b"\xf4\x90\x80\x80")]
        for c in self.clients():
            for method, query, body in cases:
                status, _, reply = c.request(method, query, body)
                self.assertEqual(status, 400, (method, query, body))
                self.assertIsInstance(reply.get("error"), str, (method, query, body))
            self.assertEqual(c.get("a")[::2], (200, {"data": None}))  # nothing was stored
        self.assertEqual(c.put("a", "v", ttl=2147483647)[0], 200)

    def test_other_methods(self):
        for c in self.clients():
            for method in ("POST", "PATCH", "OPTIONS"):
                status, headers, body = c.request(method, "?key=a", "v" if method != "OPTIONS" else None)
                self.assertEqual(status, 405, method)
                self.assertEqual(headers.get("allow"), "GET, HEAD, PUT, DELETE")
                self.assertIn("error", body)
            # HEAD is GET without the body (the length is the GET's)
            self.assertEqual(c.put("a", "head")[0], 200)
            status, headers, body = curl(*c.flags, "-I", c.weir.url("/cache?key=a"))  # -I prints headers as the body
            self.assertEqual(status, 200)
            self.assertEqual(int(headers.get("content-length")), len(b'{"data": "head"}'))
            status, _, body = curl_json(*c.flags, c.weir.url("/cache/extra?key=a"))
            self.assertEqual(status, 404)

    def test_many_clients_at_once(self):
        errors = []

        def worker(n):
            try:
                c = Client(self.weir, "h2c" if n % 2 else "http1")
                for i in range(10):
                    key = "p%d-%d" % (n, i)
                    assert c.put(key, "value %d %d" % (n, i))[0] == 200
                    assert c.get(key)[::2] == (200, {"data": "value %d %d" % (n, i)})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])


class MemoryBackend(ApiCases, unittest.TestCase):
    def setUp(self):
        self.weir = Weir(config({"cache.backend": "memory", "cache.max-key-size": MAX_KEY,
                                 "cache.max-value-size": MAX_VALUE, "cache.memory.max-bytes": "4M"}))
        self.weir.start()

    def tearDown(self):
        self.weir.stop()

    def test_memory_shared_by_threads(self):
        # Separate connections spread over both worker threads; a PUT on one is seen by a GET on the other.
        for i in range(40):
            key = "shared-%d" % i
            self.assertEqual(Client(self.weir, "http1").put(key, str(i))[0], 200)
        for i in range(40):
            for proto in PROTOCOLS:
                self.assertEqual(Client(self.weir, proto).get("shared-%d" % i)[::2], (200, {"data": str(i)}))

    def test_memory_is_the_default(self):
        with Weir(config({"cache.max-key-size": 64}, threads=1)) as w:
            c = Client(w, "http1")
            self.assertEqual(c.put("k", "v")[0], 200)
            self.assertEqual(c.get("k")[::2], (200, {"data": "v"}))


class MemoryEviction(unittest.TestCase):
    def test_memory_evicts_least_recently_used(self):
        # 64 KiB over 8 shards of 8 KiB: about 7 entries of 1 KiB per shard.
        with Weir(config({"cache.max-key-size": 16, "cache.max-value-size": 1024,
                          "cache.memory.max-bytes": 65536})) as w:
            c = Client(w, "http1")
            for i in range(200):
                self.assertEqual(c.put("e%d" % i, "%04d" % i + "x" * 996)[0], 200)
                if i >= 1:
                    self.assertEqual(c.get("e0")[0], 200)  # kept in use: never the least recent
            self.assertEqual(c.get("e0")[::2], (200, {"data": "0000" + "x" * 996}))
            self.assertEqual(c.get("e199")[::2], (200, {"data": "0199" + "x" * 996}))
            present = sum(1 for i in range(1, 200) if c.get("e%d" % i)[2]["data"] is not None)
            self.assertLess(present, 64)  # at most 8 shards x 7 entries were kept
            self.assertGreater(present, 8)
            self.assertEqual(c.get("e1")[::2], (200, {"data": None}))

    def test_memory_config_errors(self):
        bad = Weir(config({"cache.memory.max-bytes": 1000}))
        proc = subprocess.run([WEIR_BIN, "-t", "-c", bad.config_path],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("cache.memory.max-bytes", proc.stderr)
        for keys, needle in (({"cache.backend": "disk"}, "memory or redis"),
                             ({"cache.redis.url": "http://x"}, "Redis URL"),
                             ({"cache.redis.pool": 0}, "cache.redis.pool"),
                             ({"cache.max-key-size": 0}, "cache.max-key-size")):
            bad = Weir(config(keys))
            proc = subprocess.run([WEIR_BIN, "-t", "-c", bad.config_path],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
            self.assertNotEqual(proc.returncode, 0, keys)
            self.assertIn(needle, proc.stderr, keys)
            self.assertIn("server.yaml:", proc.stderr, keys)


def redis_config(redis, extra=None, timeout=500, url=None):
    keys = {"cache.backend": "redis", "cache.redis.url": url or redis.url + "/0", "cache.redis.pool": 2,
            "cache.redis.timeout": timeout, "cache.redis.prefix": "weir:", "cache.max-key-size": MAX_KEY,
            "cache.max-value-size": MAX_VALUE}
    keys.update(extra or {})
    return config(keys)


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


class RedisBackend(ApiCases, unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer().start()
        self.weir = Weir(redis_config(self.redis))
        try:
            self.weir.start()
        except BaseException:
            self.redis.stop()
            raise

    def tearDown(self):
        try:
            self.weir.stop()
        finally:
            self.redis.stop()

    def test_redis_interop(self):
        c = Client(self.weir, "http1")
        self.redis.command("SET", "weir:from-cli", "written by redis-cli")
        self.assertEqual(c.get("from-cli")[::2], (200, {"data": "written by redis-cli"}))
        self.assertEqual(c.put("from-weir", "written by weir", ttl=100)[0], 200)
        self.assertEqual(self.redis.command("GET", "weir:from-weir"), b"written by weir")
        self.assertTrue(90 < self.redis.command("TTL", "weir:from-weir") <= 100)
        self.assertEqual(c.put("no-ttl", "v")[0], 200)
        self.assertEqual(self.redis.command("TTL", "weir:no-ttl"), -1)
        self.assertIsNone(self.redis.command("GET", "from-weir"))  # the prefix is really there
        self.redis.command("SET", "weir:gone", "x")
        self.assertEqual(c.delete("gone")[::2], (200, {"success": True, "deleted": True}))
        self.assertEqual(self.redis.command("EXISTS", "weir:gone"), 0)

    def test_redis_values_that_json_cannot_show(self):
        self.redis.command("SET", "weir:latin1", b"caf\xe9")
        self.redis.command("RPUSH", "weir:list", "a")
        for c in self.clients():
            status, _, body = c.get("latin1")
            self.assertEqual(status, 502)
            self.assertEqual(body, {"error": "stored value is not valid UTF-8"})
            status, _, body = c.get("list")
            self.assertEqual(status, 502)
            self.assertIn("WRONGTYPE", body["error"])
            self.assertEqual(c.put("list", "replaced")[0], 200)  # SET replaces a key of any type
            self.redis.command("DEL", "weir:list")
            self.redis.command("RPUSH", "weir:list", "a")

    def test_redis_killed_and_restarted(self):
        clients = self.clients()
        for c in clients:
            self.assertEqual(c.put("k", "before")[0], 200)
        self.redis.kill()
        time.sleep(0.3)
        for c in clients:
            for method in ("GET", "PUT", "DELETE"):
                started = time.monotonic()
                status, _, body = c.request(method, "?key=k", "v" if method == "PUT" else None)
                self.assertEqual(status, 503, (c.proto, method, body))
                self.assertIn("error", body)
                self.assertLess(time.monotonic() - started, 1.0)  # at once, not at a deadline
        self.redis.start()  # same port, empty

        def recovered():
            return all(c.put("k", "after")[0] == 200 for c in clients)

        # Backoff is at most 5 s; with 2 threads x 2 connections, every connection must be back.
        self.assertTrue(wait_for(recovered, 15))
        time.sleep(5.5)
        for _ in range(20):
            for c in clients:
                self.assertEqual(c.get("k")[::2], (200, {"data": "after"}))

    def test_redis_slow_gives_504(self):
        sleeper = self.redis.sleep(2)
        try:
            for c in self.clients():
                started = time.monotonic()
                status, _, body = c.get("k")
                elapsed = time.monotonic() - started
                self.assertEqual(status, 504, body)
                self.assertIn("error", body)
                self.assertLess(elapsed, 1.5)
                self.assertGreater(elapsed, 0.4)
        finally:
            sleeper.close()
        time.sleep(2)
        for c in self.clients():
            self.assertEqual(c.put("k", "fine")[0], 200)
            self.assertEqual(c.get("k")[::2], (200, {"data": "fine"}))

    def test_redis_client_disconnects_early(self):
        port = self.weir.port
        for sleep_s in (1.5, 0.3):  # the deadline (0.5 s) fires first / the reply comes first
            sleeper = self.redis.sleep(sleep_s)
            try:
                socks = []
                for i in range(6):
                    s = socket.create_connection(("127.0.0.1", port))
                    s.sendall(b"PUT /cache?key=gone%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv" % i)
                    socks.append(s)
                require("curl")
                procs = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "--max-time", "0.2",
                                           self.weir.url("/cache?key=h2gone%d" % i)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(6)]
                time.sleep(0.1)
                for s in socks:
                    s.close()
                for p in procs:
                    p.wait(10)
            finally:
                sleeper.close()
            time.sleep(sleep_s + 0.5)
            for c in self.clients():
                self.assertEqual(c.put("k", "still fine")[0], 200)
                self.assertEqual(c.get("k")[::2], (200, {"data": "still fine"}))
        # tearDown's stop() fails on any sanitizer report.


class RedisSetups(unittest.TestCase):
    def test_redis_down_at_startup(self):
        redis = RedisServer()  # not started
        try:
            with Weir(redis_config(redis)) as w:
                for c in (Client(w, p) for p in PROTOCOLS):
                    started = time.monotonic()
                    status, _, body = c.get("k")
                    self.assertEqual(status, 503, body)
                    self.assertLess(time.monotonic() - started, 1.0)
                redis.start()
                self.assertTrue(wait_for(lambda: Client(w, "h2c").put("k", "up")[0] == 200, 15))
                self.assertTrue(wait_for(lambda: Client(w, "http1").get("k")[::2] == (200, {"data": "up"}), 15))
        finally:
            redis.stop()

    def test_redis_auth_and_db(self):
        with RedisServer(password="p@ss:word") as redis:
            url = "redis://:%s@127.0.0.1:%d/4" % (q("p@ss:word"), redis.port)
            with Weir(redis_config(redis, url=url)) as w:
                for c in (Client(w, p) for p in PROTOCOLS):
                    self.assertEqual(c.put("authed-" + c.proto, "yes")[0], 200)
                    self.assertEqual(c.get("authed-" + c.proto)[::2], (200, {"data": "yes"}))
                self.assertEqual(redis.command("GET", "weir:authed-h2c", db=4), b"yes")
                self.assertIsNone(redis.command("GET", "weir:authed-h2c"))
            bad = "redis://:wrong@127.0.0.1:%d/0" % redis.port
            with Weir(redis_config(redis, url=bad)) as w:
                status, _, body = Client(w, "http1").get("k")
                self.assertIn(status, (502, 503), body)  # refused by Redis: never a hang, always JSON
                time.sleep(0.5)
                status, _, body = Client(w, "http1").get("k")
                self.assertEqual(status, 503, body)

    def test_redis_unix_socket(self):
        with RedisServer(unix=True) as redis:
            with Weir(redis_config(redis, url="unix:%s?db=2" % redis.sock)) as w:
                for c in (Client(w, p) for p in PROTOCOLS):
                    self.assertEqual(c.put("u-" + c.proto, "over unix")[0], 200)
                    self.assertEqual(c.get("u-" + c.proto)[::2], (200, {"data": "over unix"}))
                self.assertEqual(redis.command("GET", "weir:u-http1", db=2), b"over unix")


if __name__ == "__main__":
    unittest.main()
