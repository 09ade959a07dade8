"""Checks that a test command fails, for the reason it should, and cleans up after itself:

    python3 expect_failure.py [--code N] [--absent TEXT]... TEXT COMMAND [ARG...]

Runs COMMAND with TMPDIR set to a new directory. Passes only when COMMAND exits non-zero (exactly N with --code), its
output holds TEXT and none of the --absent texts, and that directory is empty afterwards (what the command made there
it removed, though it failed). The directory is removed in any case."""

import os
import shutil
import subprocess
import sys
import tempfile


def main(args):
    code, absent = None, []
    while args and args[0] in ("--code", "--absent"):
        if args[0] == "--code":
            code = int(args[1])
        else:
            absent.append(args[1])
        args = args[2:]
    if len(args) < 2:
        sys.exit("usage: expect_failure.py [--code N] [--absent TEXT]... TEXT COMMAND [ARG...]")
    text, command = args[0], args[1:]
    tmpdir = tempfile.mkdtemp(prefix="weir-expect-")
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=100,
                              env=dict(os.environ, TMPDIR=tmpdir))
        sys.stdout.write(proc.stdout)
        left = sorted(os.listdir(tmpdir))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if proc.returncode == 0:
        sys.exit("the command passed although it should fail")
    if code is not None and proc.returncode != code:
        sys.exit("the command exited %d, not %d" % (proc.returncode, code))
    if text not in proc.stdout:
        sys.exit("the command failed for another reason (exit %d): no %r in its output" % (proc.returncode, text))
    for t in absent:
        if t in proc.stdout:
            sys.exit("the command's output holds %r" % t)
    if left:
        sys.exit("the command left files in its TMPDIR: %s" % ", ".join(left))
    print("ok: the command failed as it should (exit %d, %r) and left nothing behind" % (proc.returncode, text))


if __name__ == "__main__":
    main(sys.argv[1:])
