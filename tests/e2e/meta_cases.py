"""Cases that misbehave on purpose. Only the meta entries of tests/CMakeLists.txt run them (through
tests/expect_failure.py), to prove that run_case.py fails a run that leaves files behind and that what the kit
made and started is gone after a case that failed or skipped; no weir_e2e_test() registers this file."""

import os
import subprocess
import sys
import tempfile
import unittest

from weirtest import Config, RedisServer, Weir, make_cert, require, temp_dir, temp_file

# Watches pids from outside the test process: prints those still running 10 s after it started, or exits as soon as
# all are gone. Its output goes where the test's goes, so expect_failure.py sees it.
WATCHER = """
import os, sys, time
pids = [(name, int(pid)) for name, pid in (arg.split("=") for arg in sys.argv[1:])]
deadline = time.monotonic() + 10
while True:
    alive = []
    for name, pid in pids:
        try:
            os.kill(pid, 0)
            alive.append((name, pid))
        except ProcessLookupError:
            pass
    if not alive:
        sys.exit(0)
    if time.monotonic() > deadline:
        break
    time.sleep(0.05)
for name, pid in alive:
    print("still running after the case: %s pid %d" % (name, pid), flush=True)
"""

_watchers = []


def start_everything():
    """A certificate and key, a scratch directory, weir (TLS too) and redis-server, both left running and watched."""
    make_cert(temp_dir())
    w = Weir(Config().listen().listen_tls().path("/calc", {"calc.n": 10})).start()
    redis = RedisServer(unix=True).start()
    _watchers.append(subprocess.Popen([sys.executable, "-c", WATCHER, "weir=%d" % w.proc.pid,
                                       "redis-server=%d" % redis.proc.pid]))


class Misbehaving(unittest.TestCase):
    def test_leaves_a_file(self):
        # Made without temp_dir/temp_file: nothing removes it, and the run must fail although this case passes.
        with open(os.path.join(tempfile.gettempdir(), "left-behind.key"), "w") as f:
            f.write("a private key")

    def test_fails_holding_temporary_files(self):
        start_everything()
        with temp_file(b"scoped"):
            self.fail("deliberate failure, with files and processes still held")

    def test_skips_holding_temporary_files(self):
        start_everything()
        require("weir-no-such-tool")  # os._exit(77)


if __name__ == "__main__":
    unittest.main()
