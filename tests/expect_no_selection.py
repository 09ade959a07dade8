"""Checks that a test command given a case filter that matches nothing fails, and says why:

    python3 expect_no_selection.py COMMAND [ARG...]

Passes only when COMMAND exits non-zero and reports that no test case matches (any other failure fails this check)."""

import subprocess
import sys

proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
sys.stdout.write(proc.stdout)
if proc.returncode == 0:
    sys.exit("the command passed although its filter selects no case")
if "no test case matches" not in proc.stdout:
    sys.exit("the command failed for another reason (exit %d)" % proc.returncode)
print("ok: an empty selection fails (exit %d)" % proc.returncode)
