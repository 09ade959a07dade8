"""End-to-end tests of what a weir process maps: libcurl (and the dozen libraries it pulls in) only once a configuration
has an s3 upload backend, at start or by a reload; libsystemd only when a service manager listens (NOTIFY_SOCKET).
Both are loaded on demand (src/http_client.c, src/notify.c) because every library mapped costs resident memory in
every process, which the benchmark's memory experiment measures."""

import os
import signal
import socket
import unittest

import s3fix
import weirtest as wt
from weirtest import Config, Weir

DELAY_UPLOAD = {"upload.concurrency": 5, "upload.delay-min": 1, "upload.delay-max": 2}


def mapped(w):
    """The file names of the shared objects weir has mapped."""
    with open("/proc/%d/maps" % w.proc.pid) as f:
        return {os.path.basename(line.split()[5]) for line in f if len(line.split()) > 5}


def has(libs, prefix):
    return any(name.startswith(prefix) for name in libs)


def s3_path(config):
    # an endpoint nobody listens on: the store is contacted only by an upload, and this test makes none
    return config.path("/upload-s3", s3fix.s3_keys("http://127.0.0.1:9"))


class FootprintTest(unittest.TestCase):
    def test_without_s3_or_service_manager_neither_is_loaded(self):
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        config = Config(threads=2).listen().path("/upload", DELAY_UPLOAD).path("/calc", {"calc.n": 10})
        with Weir(config.path("/cache", {"cache.backend": "memory"}), env=env) as w:
            status, _, body = wt.curl_json("-X", "POST", w.url("/upload"))
            self.assertEqual((status, body), (200, {"success": True}))
            libs = mapped(w)
            self.assertTrue(has(libs, "libh2o"), sorted(libs))  # the check reads the right list
            self.assertFalse(has(libs, "libcurl"), sorted(libs))
            self.assertFalse(has(libs, "libsystemd"), sorted(libs))

    def test_s3_backend_loads_libcurl(self):
        with Weir(s3_path(Config().listen())) as w:
            self.assertTrue(has(mapped(w), "libcurl"), sorted(mapped(w)))

    def test_reload_to_s3_loads_libcurl(self):
        with Weir(Config().listen().path("/upload", DELAY_UPLOAD)) as w:
            self.assertFalse(has(mapped(w), "libcurl"), sorted(mapped(w)))
            with open(w.config_path, "w") as f:  # the same listener, and an s3 path
                f.write(str(s3_path(Config().listen(port=w.port)).path("/upload", DELAY_UPLOAD)))
            w.signal(signal.SIGHUP)
            self.assertTrue(wt.wait_until(lambda: "serving configuration 2" in w.stderr(), 10), w.stderr())
            self.assertTrue(has(mapped(w), "libcurl"), sorted(mapped(w)))
            status, _, body = wt.curl_json("-X", "POST", w.url("/upload"))
            self.assertEqual((status, body), (200, {"success": True}))

    def test_service_manager_loads_libsystemd(self):
        d = wt.temp_dir()
        sock_path = os.path.join(d, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(sock_path)
            sock.settimeout(10)
            with Weir(Config().listen().path("/calc", {"calc.n": 10}), env={"NOTIFY_SOCKET": sock_path}) as w:
                self.assertIn(b"READY=1", sock.recv(4096))
                self.assertTrue(has(mapped(w), "libsystemd"), sorted(mapped(w)))
        finally:
            sock.close()


if __name__ == "__main__":
    unittest.main()
