"""End-to-end tests of POST /upload with the s3 backend, against a real S3-compatible store (s3rver, see s3fix.py):
objects read back with boto3 (bytes, size, content type) for 1 B, 100 KiB and 5 MiB images over HTTP/1.1, h2c and
TLS, multipart and raw; bad requests; the store's refusals (wrong secret, no such bucket) as 502 with its error code;
a dead store (503 at once), a store that never answers (504, slot back), an answer that comes too late (504 and the
object deleted); the gate seen from the store (never more PUTs in flight than slots); clients that leave while their
PUT is in flight (HTTP/1 and HTTP/2: PUT aborted, slot back, nothing left in the bucket); credentials from the
environment; and what `weir -t` checks."""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

import s3fix
import weirtest as wt
from s3fix import Relay, S3rver, s3_keys, secret_file
from weirtest import Weir, curl_json

KEY_RE = re.compile(r"^uploads/[0-9a-f]{32}(\.[a-z]+)?$")


def config(keys, tls=False, settings=()):
    c = wt.Config(threads=2).listen()
    if tls:
        c.listen_tls()
    for k, v in settings:
        c.set(k, v)
    return c.path("/upload", keys)


def image(size, seed=1):
    """size bytes that are not all alike (a PRNG stream), so that a truncated or shifted object shows."""
    out = bytearray()
    x = seed
    while len(out) < size:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out += (x >> 11).to_bytes(7, "little")
    return bytes(out[:size])


def post_raw(url, data, content_type, *curl_args):
    with wt.temp_file(data) as path:
        return curl_json("-X", "POST", "--data-binary", "@" + path, "-H", "Content-Type: " + content_type, *curl_args,
                         url, timeout=60)


def post_multipart(url, data, content_type, *curl_args):
    d = wt.temp_dir("weir-img-")
    path = os.path.join(d, "my cat.jpeg")
    with open(path, "wb") as f:
        f.write(data)
    return curl_json("-F", "image=@%s;type=%s" % (path, content_type), *curl_args, url, timeout=60)


def parallel(fn, args_list):
    """Runs fn(*args) for each args in threads; returns the results in order (re-raising the first exception)."""
    results = [None] * len(args_list)
    errors = []

    def run(i, args):
        try:
            results[i] = fn(*args)
        except Exception as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


class UploadS3Test(unittest.TestCase):
    def check_object(self, store, answer, data, content_type):
        self.assertTrue(answer["success"], answer)
        self.assertRegex(answer["key"], KEY_RE)
        self.assertEqual(answer["size"], len(data))
        obj = store.client().get_object(Bucket="images", Key=answer["key"])
        body = obj["Body"].read()
        self.assertEqual(len(body), len(data))
        self.assertTrue(body == data, "the stored bytes differ from those sent")
        self.assertEqual(obj["ContentType"], content_type)
        self.assertEqual(obj["ContentLength"], len(data))
        self.assertEqual(obj["ETag"].strip('"'), answer["etag"])

    # --- round trips ----------------------------------------------------------------------------------------------
    def test_round_trip_sizes_protocols_and_forms(self):
        with S3rver() as store, Weir(config(s3_keys(store.endpoint), tls=True)) as w:
            http, https = w.url("/upload"), w.url("/upload", 1)
            protocols = [("HTTP/1.1", http, ("--http1.1",), "1.1"), ("h2c", http, ("--http2-prior-knowledge",), "2"),
                         ("TLS h2", https, ("--http2", "-k"), "2"), ("TLS HTTP/1.1", https, ("--http1.1", "-k"), "1.1")]
            seen = set()
            for size in (1, 100 * 1024, 5 * 1024 * 1024):
                data = image(size, seed=size)
                for name, url, args, version in protocols:
                    for form, post, ctype in (("multipart", post_multipart, "image/png"), ("raw", post_raw, "image/jpeg")):
                        what = "%d bytes, %s, %s" % (size, name, form)
                        status, headers, body = post(url, data, ctype, *args)
                        self.assertEqual(status, 200, (what, body))
                        self.assertEqual(headers["_version"], version, what)
                        self.assertEqual(headers["content-type"], "application/json")
                        self.check_object(store, body, data, ctype)
                        self.assertTrue(body["key"].endswith(".png" if ctype == "image/png" else ".jpg"), body["key"])
                        self.assertNotIn("cat", body["key"])
                        seen.add(body["key"])
            self.assertEqual(len(seen), 3 * len(protocols) * 2, "every key is new")
            self.assertEqual(sorted(seen), store.keys())

    def test_signed_payload_hash_is_the_body_sha256(self):
        """The store does not check x-amz-content-sha256, so the relay does: for bodies hashed at once and in slices
        over turns of the loop (128 KiB is the limit, and the slice), raw and multipart, HTTP/1.1 and h2c."""
        with S3rver() as store, Relay(("127.0.0.1", store.port)) as relay, \
                Weir(config(s3_keys(relay.endpoint))) as w:
            sizes = (1, 1000, 128 * 1024, 128 * 1024 + 1, 256 * 1024, 300 * 1024, 5 * 1024 * 1024)
            sent = 0
            for size in sizes:
                data = image(size, seed=size + 7)
                for post, args in ((post_raw, ("--http1.1",)), (post_multipart, ("--http2-prior-knowledge",))):
                    status, _, body = post(w.url("/upload"), data, "image/jpeg", *args)
                    self.assertEqual(status, 200, (size, body))
                    sent += 1
            self.assertEqual(len(relay.payload_hashes), sent)
            for claimed, actual in relay.payload_hashes:
                self.assertEqual(claimed, actual)
            # and the hashes are those of the images
            want = sorted(hashlib.sha256(image(size, seed=size + 7)).hexdigest() for size in sizes)
            self.assertEqual(sorted(set(a for _, a in relay.payload_hashes)), want)

    def test_content_types_and_extensions(self):
        with S3rver() as store, Weir(config(s3_keys(store.endpoint, prefix="a b/é+~/"))) as w:
            url = w.url("/upload")
            for ctype, ext in (("image/gif", ".gif"), ("IMAGE/WEBP; q=1", ".webp"), ("application/x-thing", ""),
                               ("text/plain; charset=utf-8", "")):
                status, _, body = post_raw(url, b"GIF89a" + bytes(range(256)), ctype)
                self.assertEqual(status, 200, body)
                key = body["key"]
                self.assertTrue(key.startswith("a b/é+~/"), key)
                self.assertRegex(key[len("a b/é+~/"):], r"^[0-9a-f]{32}%s$" % re.escape(ext))
                obj = store.client().get_object(Bucket="images", Key=key)
                self.assertEqual(obj["ContentType"], ctype)
                self.assertEqual(obj["Body"].read(), b"GIF89a" + bytes(range(256)))
            # no Content-Type at all: application/octet-stream (a raw POST with curl -H 'Content-Type:' removes it)
            with wt.temp_file(b"\x89PNG") as path:
                status, _, body = curl_json("--data-binary", "@" + path, "-H", "Content-Type:", url)
            self.assertEqual(status, 200, body)
            self.assertEqual(store.client().get_object(Bucket="images", Key=body["key"])["ContentType"],
                             "application/octet-stream")
            # a multipart part without a Content-Type: application/octet-stream too
            boundary = "xyzzy"
            form = ("--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"../../etc/passwd\"\r\n\r\n"
                    "ABC\r\n--%s--\r\n" % (boundary, boundary)).encode()
            r = wt.http1(w.port, "POST", "/upload", headers=[("Content-Type", "multipart/form-data; boundary=" + boundary)],
                         body=form)
            self.assertEqual(r.status, 200, r.body)
            key = r.json()["key"]
            self.assertNotIn("passwd", key)
            obj = store.client().get_object(Bucket="images", Key=key)
            self.assertEqual((obj["ContentType"], obj["Body"].read()), ("application/octet-stream", b"ABC"))

    def test_https_store_verified_against_the_ca_file(self):
        cert, key = wt.make_cert()
        with S3rver(tls=(cert, key)) as store:
            self.assertTrue(store.endpoint.startswith("https://"))
            with Weir(config(s3_keys(store.endpoint, **{"upload.s3.ca-file": cert}))) as w:
                status, _, body = post_raw(w.url("/upload"), b"over tls", "image/png")
                self.assertEqual(status, 200, body)
                self.check_object(store, body, b"over tls", "image/png")
            # without the CA file the self-signed certificate is refused: nothing is sent
            with Weir(config(s3_keys(store.endpoint))) as w:
                status, _, body = post_raw(w.url("/upload"), b"over tls", "image/png")
                self.assertEqual(status, 502, body)
                self.assertIn("store connection failed", body["error"])

    # --- bad requests ---------------------------------------------------------------------------------------------
    def test_bad_requests_are_400_and_store_nothing(self):
        keys = s3_keys("http://127.0.0.1:1")  # never reached: nothing here may get as far as the store
        with Weir(config(keys, settings=[("limit-request-body", 4096)])) as w:
            cases = [
                ("no body", [], None),
                ("empty raw body", [("Content-Type", "image/jpeg")], b""),
                ("no image field", [("Content-Type", "multipart/form-data; boundary=b")],
                 b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxyz\r\n--b--\r\n"),
                ("empty image", [("Content-Type", "multipart/form-data; boundary=b")],
                 b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n\r\n--b--\r\n"),
                ("no final boundary", [("Content-Type", "multipart/form-data; boundary=b")],
                 b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nxyz\r\n"),
                ("LF line endings", [("Content-Type", "multipart/form-data; boundary=b")],
                 b"--b\nContent-Disposition: form-data; name=\"image\"\n\nxyz\n--b--\n"),
                ("two images", [("Content-Type", "multipart/form-data; boundary=b")],
                 b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n"
                 b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ny\r\n--b--\r\n"),
                ("no boundary", [("Content-Type", "multipart/form-data")], b"xyz"),
                ("control character in the content type", [("Content-Type", "image/jpeg\x01")], b"xyz"),
            ]
            for what, headers, body in cases:
                r = wt.http1(w.port, "POST", "/upload", headers=headers, body=body)
                self.assertEqual(r.status, 400, (what, r.body))
                self.assertEqual(r.headers["content-type"], "application/json", what)
                self.assertIn("error", r.json(), what)
            r = wt.http1(w.port, "POST", "/upload", headers=[("Content-Type", "image/jpeg")], body=b"x" * 5000)
            self.assertEqual(r.status, 413)
            r = wt.http1(w.port, "GET", "/upload")
            self.assertEqual(r.status, 405)
            self.assertNotIn("store", w.stderr())

    # --- the store refuses ----------------------------------------------------------------------------------------
    def test_wrong_secret_is_502_signature_does_not_match(self):
        with S3rver() as store, Weir(config(s3_keys(store.endpoint, secret_path=secret_file("wrong")))) as w:
            status, _, body = post_raw(w.url("/upload"), b"img", "image/jpeg")
            self.assertEqual(status, 502, body)
            self.assertIn("SignatureDoesNotMatch", body["error"])
            self.assertEqual(store.keys(), [])
            self.assertNotIn("wrong", w.stderr())  # the secret is never logged

    def test_no_such_bucket_is_502(self):
        with S3rver() as store, Weir(config(s3_keys(store.endpoint, bucket="nope"))) as w:
            status, _, body = post_multipart(w.url("/upload"), b"img", "image/jpeg")
            self.assertEqual(status, 502, body)
            self.assertIn("NoSuchBucket", body["error"])
            self.assertEqual(store.keys(), [])

    def test_credentials_from_the_environment(self):
        keys = s3_keys("http://x")
        del keys["upload.s3.access-key-id"], keys["upload.s3.secret-access-key-file"]
        with S3rver() as store:
            keys["upload.s3.endpoint"] = store.endpoint
            env = {"AWS_ACCESS_KEY_ID": s3fix.KEY_ID, "AWS_SECRET_ACCESS_KEY": s3fix.SECRET}
            with Weir(config(keys), env=env) as w:
                status, _, body = post_raw(w.url("/upload"), b"env", "image/gif")
                self.assertEqual(status, 200, body)
                self.check_object(store, body, b"env", "image/gif")
            env["AWS_SECRET_ACCESS_KEY"] = "not the secret"
            with Weir(config(keys), env=env) as w:
                status, _, body = post_raw(w.url("/upload"), b"env", "image/gif")
                self.assertEqual(status, 502, body)
                self.assertIn("SignatureDoesNotMatch", body["error"])

    # --- the store fails ------------------------------------------------------------------------------------------
    def test_store_killed_is_503_at_once_then_back(self):
        with S3rver() as store, Weir(config(s3_keys(store.endpoint, timeout=20000))) as w:
            url = w.url("/upload")
            self.assertEqual(post_raw(url, b"a", "image/png")[0], 200)
            port = store.port
            store.kill()
            t0 = time.monotonic()
            for _ in range(3):
                status, _, body = post_raw(url, b"b", "image/png")
                self.assertEqual(status, 503, body)
                self.assertIn("unreachable", body["error"])
            self.assertLess(time.monotonic() - t0, 10, "503 at once, not after the 20 s timeout")
            with S3rver(port=port) as again:
                status, _, body = post_raw(url, b"c", "image/png")
                self.assertEqual(status, 200, body)
                self.check_object(again, body, b"c", "image/png")

    def test_store_that_never_answers_is_504_and_the_slot_comes_back(self):
        with Relay(("127.0.0.1", 1), mode="blackhole") as hole, \
                Weir(config(s3_keys(hole.endpoint, timeout=1000, concurrency=1))) as w:
            url = w.url("/upload")
            t0 = time.monotonic()
            results = parallel(post_raw, [(url, b"x", "image/png"), (url, b"y", "image/png")])
            elapsed = time.monotonic() - t0
            for status, _, body in results:
                self.assertEqual(status, 504, body)
                self.assertIn("1000 ms", body["error"])
            # one slot: the second waited for the first to time out, then timed out itself
            self.assertGreater(elapsed, 1.9)
            self.assertEqual(len(hole.seen("PUT")), 2)

    def test_answer_too_late_is_504_and_the_object_is_deleted(self):
        with S3rver() as store, Relay(("127.0.0.1", store.port), mode="hold", hold=4.0) as relay, \
                Weir(config(s3_keys(relay.endpoint, timeout=1000, concurrency=1))) as w:
            status, _, body = post_raw(w.url("/upload"), b"late", "image/jpeg")
            self.assertEqual(status, 504, body)
            puts = relay.seen("PUT")
            self.assertEqual(len(puts), 1)
            # the PUT landed at the store, and weir deletes it a second later
            self.assertTrue(wt.wait_until(lambda: relay.seen("DELETE") == puts, 10), relay.requests)
            self.assertTrue(wt.wait_until(lambda: store.keys() == [], 10), store.keys())
            self.assertTrue(wt.wait_until(lambda: "deleted object" in w.stderr(), 10), w.stderr())

    # --- the gate, seen from the store ----------------------------------------------------------------------------
    def test_never_more_puts_in_flight_than_slots(self):
        with S3rver() as store, Relay(("127.0.0.1", store.port)) as relay, \
                Weir(config(s3_keys(relay.endpoint, concurrency=5))) as w:
            with wt.temp_file(image(100 * 1024)) as path:
                out = wt.ab("-n", "50", "-c", "50", "-p", path, "-T", "image/jpeg", w.url("/upload")).stdout
            self.assertIn("Complete requests:      50", out)
            self.assertIn("Failed requests:        0", out)
            self.assertNotIn("Non-2xx", out)
            self.assertEqual(len(relay.seen("PUT")), 50)
            self.assertLessEqual(relay.max_in_flight, 5)
            self.assertGreaterEqual(relay.max_in_flight, 2, "the uploads overlapped at the store")
            self.assertEqual(len(store.keys()), 50)

    def test_shared_redis_gate_limits_puts_across_instances(self):
        """Two weir instances sharing one Redis gate of 3 slots: never more than 3 PUTs in flight at the store."""
        with wt.RedisServer() as redis, S3rver() as store, Relay(("127.0.0.1", store.port)) as relay:
            more = {"upload.gate": "redis", "upload.redis.url": "redis://127.0.0.1:%d/0" % redis.port,
                    "upload.redis.name": "weir-s3-test"}
            with Weir(config(s3_keys(relay.endpoint, concurrency=3, **more))) as a, \
                    Weir(config(s3_keys(relay.endpoint, concurrency=3, **more))) as b, \
                    wt.temp_file(image(100 * 1024)) as path:
                def load(w):
                    return wt.ab("-n", "30", "-c", "15", "-p", path, "-T", "image/jpeg", w.url("/upload")).stdout
                for out in parallel(load, [(a,), (b,)]):
                    self.assertIn("Complete requests:      30", out)
                    self.assertIn("Failed requests:        0", out)
                    self.assertNotIn("Non-2xx", out)
            self.assertEqual(len(relay.seen("PUT")), 60)
            self.assertLessEqual(relay.max_in_flight, 3)
            self.assertGreaterEqual(relay.max_in_flight, 2)
            self.assertEqual(len(store.keys()), 60)

    # --- clients that leave ---------------------------------------------------------------------------------------
    def leave_mid_put(self, leave):
        """A first client's PUT is held at the relay (its object lands, the answer does not come back); the client
        leaves; then a second upload must get the only slot and complete well before the held answer would."""
        with S3rver() as store, Relay(("127.0.0.1", store.port), mode="hold", hold=30.0) as relay, \
                Weir(config(s3_keys(relay.endpoint, timeout=60000, concurrency=1))) as w:
            handle = leave("start", w)
            self.assertTrue(wt.wait_until(lambda: len(relay.seen("PUT")) == 1, 10))
            self.assertTrue(wt.wait_until(lambda: len(store.keys()) == 1, 10), "the first PUT reached the store")
            first = store.keys()[0]
            relay.mode = "forward"
            t0 = time.monotonic()
            leave("leave", w, handle)
            # the PUT is aborted: weir closes its connection to the store
            self.assertTrue(wt.wait_until(lambda: relay.in_flight == 0, 5), "the PUT was not aborted")
            status, _, body = post_raw(w.url("/upload"), b"second", "image/png")
            self.assertEqual(status, 200, body)
            self.assertLess(time.monotonic() - t0, 10, "the slot came back at once")
            # what the first PUT stored is deleted
            self.assertTrue(wt.wait_until(lambda: store.keys() == [body["key"]], 10), store.keys())
            self.assertIn(first.replace(" ", "%20"), " ".join(relay.seen("DELETE")))

    def test_http1_client_leaving_mid_put_frees_the_slot(self):
        def leave(step, w, conn=None):
            if step == "start":
                conn = wt.HTTP1Conn(w.port)
                conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nfirst")
                return conn
            conn.close()
        self.leave_mid_put(leave)

    def test_http2_client_resetting_mid_put_frees_the_slot(self):
        def leave(step, w, h2=None):
            if step == "start":
                h2 = wt.H2Client(w.port)
                h2.request("POST", "/upload", body=b"first", headers=[("content-type", "image/jpeg")])
                return h2
            h2.reset(1)
            h2.ping()
            time.sleep(0.2)
            h2.close()
        self.leave_mid_put(leave)

    def test_clients_killed_at_random_moments(self):
        """HTTP/2 clients killed while their 2 MiB image is being sent, hashed, waiting for a slot, or PUT:
        every state's cancellation runs (under ASan in the sanitizer build); afterwards all slots are free and only
        the objects of answered uploads remain."""
        wt.require("curl")
        import random
        rnd = random.Random(int(os.environ.get("WEIR_TEST_SEED", "0")) or None)
        with S3rver() as store, Relay(("127.0.0.1", store.port)) as relay, \
                Weir(config(s3_keys(relay.endpoint, concurrency=2))) as w:
            d = wt.temp_dir("weir-img-")
            path = os.path.join(d, "big.jpg")
            with open(path, "wb") as f:
                f.write(image(2 * 1024 * 1024))
            procs = []
            for i in range(40):
                procs.append(subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
                                               "-F", "image=@%s;type=image/jpeg" % path, w.url("/upload")],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(rnd.uniform(0, 0.02))
                if i % 4 != 3:  # three in four are killed, at a random moment
                    victim = procs[rnd.randrange(len(procs))]
                    victim.kill()
            for p in procs:
                p.wait(60)
            self.assertTrue(wt.wait_until(lambda: relay.in_flight == 0, 30))
            time.sleep(1.5)  # the DELETEs of aborted PUTs
            # every slot is back: two uploads at once, at once
            results = parallel(post_raw, [(w.url("/upload"), b"after", "image/png")] * 2)
            self.assertEqual([r[0] for r in results], [200, 200], results)
            self.assertLessEqual(relay.max_in_flight, 2)
            self.assertIn(results[0][2]["key"], store.keys())

    def test_clean_shutdown_with_puts_in_flight(self):
        """SIGTERM with two PUTs in flight (their answers held back a second) and two uploads waiting: all four are
        stored and answered 200, and weir exits 0."""
        with S3rver() as store, Relay(("127.0.0.1", store.port), mode="hold", hold=1.0) as relay:
            w = Weir(config(s3_keys(relay.endpoint, concurrency=2), settings=[("graceful-shutdown-timeout", 20)]))
            w.start()
            try:
                conns = []
                for i in range(4):
                    conn = wt.HTTP1Conn(w.port, timeout=30)
                    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                              b"Content-Length: 1\r\n\r\n%d" % i)
                    conns.append(conn)
                self.assertTrue(wt.wait_until(lambda: len(relay.seen("PUT")) >= 2, 10))
                w.signal(15)
                statuses = [conn.read_response().status for conn in conns]
                self.assertEqual(statuses, [200] * 4)
                for conn in conns:
                    conn.close()
                self.assertEqual(w.stop(), 0)
            finally:
                w.kill()
            self.assertEqual(len(store.keys()), 4)

    def test_reload_reads_the_secret_file_again(self):
        """New credentials without a restart: the secret file is read by each reload; uploads in flight during the
        reload finish under the configuration they started with, and the old generation's HTTP clients go."""
        with S3rver() as store:
            secret = secret_file("not the secret")
            # debug messages only with --log-level debug: the freeing of a replaced configuration is one
            with Weir(config(s3_keys(store.endpoint, secret_path=secret)), extra_args=["--log-level", "debug"]) as w:
                status, _, body = post_raw(w.url("/upload"), b"before", "image/png")
                self.assertEqual(status, 502, body)
                self.assertIn("SignatureDoesNotMatch", body["error"])
                with open(secret, "w") as f:
                    f.write(s3fix.SECRET + "\n")
                w.signal(signal.SIGHUP)
                self.assertTrue(wt.wait_until(lambda: "reloaded: serving configuration 2" in w.stderr(), 10), w.stderr())
                status, _, body = post_raw(w.url("/upload"), b"after", "image/png")
                self.assertEqual(status, 200, body)
                self.check_object(store, body, b"after", "image/png")
                self.assertTrue(wt.wait_until(lambda: "configuration 1 freed" in w.stderr(), 10), w.stderr())

    # --- weir -t ----------------------------------------------------------------------------------------------------
    def weir_t(self, keys, env=None):
        d = wt.temp_dir("weir-conf-")
        path = os.path.join(d, "server.yaml")
        with open(path, "w") as f:
            f.write(str(config(keys)))
        e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        e.update(env or {})
        p = subprocess.run([wt.WEIR_BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=e, timeout=30)
        return p.returncode, p.stderr

    def test_weir_t_checks(self):
        good = s3_keys("http://127.0.0.1:9000")
        code, err = self.weir_t(good)
        self.assertEqual(code, 0, err)
        empty = os.path.join(wt.temp_dir(), "empty.secret")
        open(empty, "w").close()
        unreadable = os.path.join(wt.temp_dir(), "missing.secret")
        cases = [
            ({"upload.s3.endpoint": "ftp://127.0.0.1"}, "http:// or https://"),
            ({"upload.s3.endpoint": "http://127.0.0.1:99999"}, "port"),
            ({"upload.s3.endpoint": "http://127.0.0.1/bucket"}, "no path"),
            ({"upload.s3.endpoint": "https://"}, "no host"),
            ({"upload.s3.bucket": "no/slash"}, "bucket"),
            ({"upload.s3.region": "us east"}, "region"),
            ({"upload.s3.secret-access-key-file": empty}, "is empty"),
            ({"upload.s3.secret-access-key-file": unreadable}, "cannot read"),
            ({"upload.s3.timeout": 0}, "upload.s3.timeout"),
            ({"upload.backend": "ftp"}, "expected delay or s3"),
        ]
        for change, message in cases:
            keys = dict(good, **change)
            code, err = self.weir_t(keys)
            self.assertEqual(code, 2, (change, err))
            self.assertIn(message, err, change)
            self.assertRegex(err, r"server\.yaml:\d+: ", change)
        for missing in ("upload.s3.bucket", "upload.s3.endpoint", "upload.s3.access-key-id"):
            keys = dict(good)
            del keys[missing]
            code, err = self.weir_t(keys)
            self.assertEqual(code, 2, (missing, err))
            self.assertRegex(err, r"server\.yaml:\d+: ", missing)
        # no credentials at all, then from the environment
        keys = dict(good)
        del keys["upload.s3.access-key-id"], keys["upload.s3.secret-access-key-file"]
        code, err = self.weir_t(keys)
        self.assertEqual(code, 2)
        self.assertIn("AWS_ACCESS_KEY_ID", err)
        self.assertEqual(self.weir_t(keys, {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "s"})[0], 0)
        # the secret never shows in a message
        code, err = self.weir_t(dict(good, **{"upload.s3.secret-access-key-file": secret_file("hunter2hunter2"),
                                              "upload.s3.bucket": "bad/bucket"}))
        self.assertEqual(code, 2)
        self.assertNotIn("hunter2", err)


if __name__ == "__main__":
    unittest.main()
