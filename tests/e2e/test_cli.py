"""End-to-end tests of weir's command line: --version, --help, -t (config check) with every kind of config error and
its file:line, a bad config without -t, a port already in use, and unknown options."""

import os
import re
import socket
import subprocess
import textwrap
import time
import unittest

import weirtest as wt
from weirtest import WEIR_BIN, BASIC_CONFIG

# A valid config whose lines are known; tests replace one line to inject one error.
GOOD = """\
listen:
  port: 0
  host: 127.0.0.1
num-threads: 2
hosts:
  default:
    paths:
      /upload:
        upload.concurrency: 5
        upload.delay-min: 100
        upload.delay-max: 200
      /calc:
        calc.n: 1000
        calc.max-n: 100000
"""


def run_weir(args, timeout=30):
    proc = subprocess.run([WEIR_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, text=True)
    wt.assert_no_sanitizer_report(proc.stdout + proc.stderr)
    return proc


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = wt.temp_dir("weir-cli-")
        self.addCleanup(wt.tmp.remove, self.tmp)

    def write(self, text, name="server.yaml"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, text, name="server.yaml"):
        """weir -t on text; returns (path, CompletedProcess)."""
        path = self.write(text, name)
        return path, run_weir(["-t", "-c", path])

    def error_lines(self, path, proc):
        """The `FILE:LINE: message` lines of proc's stderr, as [(line, message)]."""
        out = []
        for line in proc.stderr.splitlines():
            m = re.match(re.escape(path) + r":(\d+): (.*)$", line)
            if m:
                out.append((int(m.group(1)), m.group(2)))
        return out

    def assert_config_error(self, text, line, *patterns):
        """weir -t exits 2 and reports exactly one error, at path:line, whose message matches every pattern."""
        path, proc = self.check(text)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        errors = self.error_lines(path, proc)
        self.assertEqual(len(errors), 1, "expected one error at %s:%d, got:\n%s" % (path, line, proc.stderr))
        self.assertEqual(errors[0][0], line, proc.stderr)
        for p in patterns:
            self.assertRegex(errors[0][1], p)
        self.assertIn("1 error", proc.stderr)
        self.assertNotIn("successful", proc.stdout)
        return errors[0][1]

    # --- --version, --help -----------------------------------------------------------------------------------------
    def test_version(self):
        for opt in ("--version", "-v"):
            proc = run_weir([opt])
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertRegex(proc.stdout, r"^weir \d+\.\d+\.\d+\S*\n$")

    def test_help(self):
        for opt in ("--help", "-h"):
            proc = run_weir([opt])
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("Usage: weir", proc.stdout)
            for word in ("-c", "--conf", "-t", "--test", "--version", "--help"):
                self.assertIn(word, proc.stdout)

    def test_unknown_option(self):
        proc = run_weir(["--no-such-option"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("no-such-option", proc.stderr)
        self.assertIn("Usage: weir", proc.stderr)
        proc = run_weir(["-Z"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("Usage: weir", proc.stderr)
        # an option that needs an argument, without one
        proc = run_weir(["-c"])
        self.assertEqual(proc.returncode, 2)
        # a stray positional argument
        path = self.write(GOOD)
        proc = run_weir(["-t", "-c", path, "extra"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("extra", proc.stderr)

    # --- -t on good configs ----------------------------------------------------------------------------------------
    def test_check_good_config(self):
        for text in (GOOD, BASIC_CONFIG):
            path, proc = self.check(text)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("successful", proc.stdout)
            self.assertNotIn("error", proc.stderr)
        # long options too
        proc = run_weir(["--test", "--conf", path])
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_check_good_tls_config(self):
        cert, key = wt.make_cert(self.tmp)
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: %s\n"
                            "    key-file: %s\n" % (cert, key))
        path, proc = self.check(text)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        # relative names are read from the config file's directory
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: server.crt\n"
                            "    key-file: server.key\n")
        cwd = os.getcwd()
        try:
            os.chdir("/")
            path, proc = self.check(text)
        finally:
            os.chdir(cwd)
        self.assertEqual(proc.returncode, 0, proc.stderr)

    # --- -t on bad configs: one kind of error each -----------------------------------------------------------------
    def test_check_unknown_key(self):
        self.assert_config_error(GOOD.replace("num-threads: 2\n", "num-threads: 2\nno-such-key: 1\n"), 5,
                                 r'unknown key "no-such-key"')
        # an unknown key inside a listener, and an upload.* key that does not exist
        self.assert_config_error(GOOD.replace("  port: 0\n", "  port: 0\n  bogus: 1\n"), 3, r'unknown key "bogus"')
        self.assert_config_error(GOOD.replace("        upload.delay-max: 200\n",
                                              "        upload.delay-max: 200\n        upload.speed: 3\n"), 12,
                                 r'upload\.speed')

    def test_check_wrong_type(self):
        self.assert_config_error(GOOD.replace("upload.concurrency: 5", "upload.concurrency: five"), 9,
                                 r"upload\.concurrency", r"integer", r'"five"')
        self.assert_config_error(GOOD.replace("num-threads: 2", "num-threads: [1, 2]"), 4, r"num-threads")
        self.assert_config_error(GOOD.replace("calc.n: 1000", "calc.n: 1.5"), 13, r"calc\.n", r'"1\.5"')

    def test_check_out_of_range(self):
        self.assert_config_error(GOOD.replace("port: 0", "port: 70000"), 2, r"port", r"65535", r'"70000"')
        self.assert_config_error(GOOD.replace("upload.concurrency: 5", "upload.concurrency: 0"), 9,
                                 r"upload\.concurrency", r'"0"')
        self.assert_config_error(GOOD.replace("upload.delay-min: 100", "upload.delay-min: -1"), 10,
                                 r"upload\.delay-min", r'"-1"')
        self.assert_config_error(GOOD.replace("num-threads: 2", "num-threads: 0"), 4, r"num-threads")
        self.assert_config_error(GOOD.replace("calc.max-n: 100000", "calc.max-n: 99999999999999999999"), 14,
                                 r"calc\.max-n")

    def test_check_missing_config_file(self):
        path = os.path.join(self.tmp, "does-not-exist.yaml")
        proc = run_weir(["-t", "-c", path])
        self.assertEqual(proc.returncode, 2)
        self.assertRegex(proc.stderr, re.escape(path) + r": .*(No such file|cannot open)")
        # the same without -t: exits 2 at once
        proc = run_weir(["-c", path])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(path, proc.stderr)
        self.assertNotIn("listening", proc.stderr)

    def test_check_missing_certificate_file(self):
        cert, key = wt.make_cert(self.tmp)
        missing = os.path.join(self.tmp, "missing.crt")
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: %s\n"
                            "    key-file: %s\n" % (missing, key))
        msg = self.assert_config_error(text, 5, r"certificate-file")
        self.assertIn(missing, msg)
        # a missing key file: reported at the key-file line
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: %s\n"
                            "    key-file: %s\n" % (cert, missing.replace(".crt", ".key")))
        self.assert_config_error(text, 6, r"key-file", r"missing\.key")

    def test_check_garbage_certificate(self):
        cert, key = wt.make_cert(self.tmp)
        garbage = self.write("-----BEGIN CERTIFICATE-----\nthis is not base64 at all\n-----END CERTIFICATE-----\n",
                             "garbage.crt")
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: %s\n"
                            "    key-file: %s\n" % (garbage, key))
        msg = self.assert_config_error(text, 5, r"certificate")
        self.assertIn(garbage, msg)
        # a certificate and a key that do not belong together
        cert2, key2 = wt.make_cert(self.tmp, "other")
        text = GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  ssl:\n    certificate-file: %s\n"
                            "    key-file: %s\n" % (cert, key2))
        path, proc = self.check(text)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        errors = self.error_lines(path, proc)
        self.assertTrue(errors and all(line in (5, 6) for line, _ in errors), proc.stderr)
        self.assertRegex(proc.stderr, r"match")

    def test_check_delay_min_above_max(self):
        path, proc = self.check(GOOD.replace("upload.delay-min: 100", "upload.delay-min: 300"))
        self.assertEqual(proc.returncode, 2, proc.stderr)
        errors = self.error_lines(path, proc)
        self.assertEqual(len(errors), 1, proc.stderr)
        line, msg = errors[0]
        # the /upload entry (its key on line 8, its keys on lines 9-11)
        self.assertIn(line, (8, 9, 10, 11), proc.stderr)
        self.assertIn("delay-min", msg)
        self.assertIn("delay-max", msg)
        # equal bounds are fine
        path, proc = self.check(GOOD.replace("upload.delay-min: 100", "upload.delay-min: 200"))
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_check_n_above_max_n(self):
        path, proc = self.check(GOOD.replace("calc.n: 1000", "calc.n: 100001"))
        self.assertEqual(proc.returncode, 2, proc.stderr)
        errors = self.error_lines(path, proc)
        self.assertEqual(len(errors), 1, proc.stderr)
        line, msg = errors[0]
        self.assertIn(line, (12, 13, 14), proc.stderr)
        self.assertIn("calc.n", msg)
        self.assertIn("max-n", msg)
        # the default n (1000000) above an explicit max-n is an error too
        path, proc = self.check(GOOD.replace("        calc.n: 1000\n", ""))
        self.assertEqual(proc.returncode, 2, proc.stderr)
        # n equal to max-n is fine
        path, proc = self.check(GOOD.replace("calc.n: 1000", "calc.n: 100000"))
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_check_yaml_syntax_error(self):
        # "a: b: c" is invalid on the line where it is
        self.assert_config_error(GOOD.replace("  host: 127.0.0.1", "  host: 127.0.0.1: 8080"), 3, r"(?i)yaml|syntax")
        # a tab used for indentation
        self.assert_config_error(GOOD.replace("        calc.n: 1000", "\tcalc.n: 1000"), 13, r"(?i)yaml|syntax|tab")
        # a duplicate key
        self.assert_config_error(GOOD.replace("num-threads: 2\n", "num-threads: 2\nnum-threads: 3\n"), 5,
                                 r"duplicate|num-threads")

    def test_check_several_errors(self):
        text = textwrap.dedent("""\
            listen:
              port: 99999
              host: 127.0.0.1
            num-threads: five
            bogus: 1
            hosts:
              default:
                paths:
                  /upload:
                    upload.concurrency: 0
                    upload.delay-min: 10
                    upload.delay-max: 20
                  /calc:
                    calc.n: x
            """)
        path, proc = self.check(text)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        errors = self.error_lines(path, proc)
        lines = sorted(line for line, _ in errors)
        self.assertEqual(lines, [2, 4, 5, 10, 14], proc.stderr)
        self.assertIn("5 error", proc.stderr)

    # --- running (not -t) -------------------------------------------------------------------------------------------
    def test_bad_config_exits_without_listening(self):
        port = wt.free_port()
        text = GOOD.replace("port: 0", "port: %d" % port).replace("upload.concurrency: 5", "upload.concurrency: five")
        path = self.write(text)
        proc = subprocess.Popen([WEIR_BIN, "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # While it runs (and after), nothing may accept on the port.
        refused = 0
        while proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                self.fail("something accepted a connection on port %d" % port)
            except ConnectionRefusedError:
                refused += 1
            time.sleep(0.005)
        out, err = proc.communicate(timeout=30)
        wt.assert_no_sanitizer_report(err)
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("%s:9:" % path, err)
        self.assertNotIn("listening", err)
        self.assertNotRegex(err, r"\bready\b")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_port_in_use(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(8)
        port = blocker.getsockname()[1]
        try:
            path = self.write(GOOD.replace("port: 0", "port: %d" % port))
            # -t does not bind: the config itself is valid
            proc = run_weir(["-t", "-c", path])
            self.assertEqual(proc.returncode, 0, proc.stderr)
            proc = run_weir(["-c", path], timeout=30)
            self.assertNotEqual(proc.returncode, 0, proc.stderr)
            self.assertRegex(proc.stderr, r"(?i)address already in use")
            self.assertIn(str(port), proc.stderr)
            # the message names the listen entry
            self.assertIn("%s:2" % path, proc.stderr)
            self.assertNotRegex(proc.stderr, r"\bready\b")
        finally:
            blocker.close()

    def test_unreadable_access_log_directory(self):
        # Valid for -t (the file is opened at startup), but running must fail cleanly with a message.
        logpath = os.path.join(self.tmp, "no-such-dir", "access.log")
        path = self.write(GOOD + "access-log: %s\n" % logpath)
        proc = run_weir(["-t", "-c", path])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        proc = run_weir(["-c", path])
        self.assertNotEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(logpath, proc.stderr)
        self.assertNotRegex(proc.stderr, r"\bready\b")


if __name__ == "__main__":
    unittest.main()
