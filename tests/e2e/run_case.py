"""Runs the end-to-end test cases of one file whose names match a pattern, as ctest does for each entry:

    python3 run_case.py test_upload test_fifo_order

Fails (exit 1) when the pattern selects no case, so that a renamed or removed case cannot pass as an empty run.
A test that skips itself (exit 77) is reported to ctest as skipped.

The cases run in a child process whose TMPDIR is a new directory of their own. When the child has ended, however it
ended, that directory must be empty: whatever is left there (a file not made through weirtest's temp_dir/temp_file,
or one that could not be removed) is listed, removed, and fails the run, even a run that passed."""

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

CHILD = "--in-process"


def cases(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from cases(item)
        else:
            yield item


def run_cases(module, pattern):
    """Runs the selected cases in this process; returns the exit code."""
    try:
        loaded = unittest.defaultTestLoader.loadTestsFromName(module)
        selected = [t for t in cases(loaded) if fnmatch.fnmatchcase(t.id().rsplit(".", 1)[-1], pattern)]
        if not selected:
            sys.stderr.write("%s: no test case matches %r\n" % (module, pattern))
            return 1
        result = unittest.TextTestRunner(verbosity=2).run(unittest.TestSuite(selected))
        if result.testsRun == 0:
            sys.stderr.write("%s: no test ran\n" % module)
            return 1
        return 0 if result.wasSuccessful() else 1
    finally:
        tmp = sys.modules.get("weirtest.tmp")
        if tmp is not None:
            tmp.cleanup()  # what the cases started and made, now rather than at exit


def leftovers(directory):
    """The paths under directory, relative to it, deepest first."""
    found = []
    for root, dirs, files in os.walk(directory, topdown=False):
        for name in files + dirs:
            found.append(os.path.relpath(os.path.join(root, name), directory))
    return found


def main(argv):
    if len(argv) == 4 and argv[1] == CHILD:
        return run_cases(argv[2], argv[3])
    if len(argv) != 3:
        sys.stderr.write("usage: run_case.py MODULE CASE-PATTERN\n")
        return 2
    module, pattern = argv[1], argv[2]
    private = tempfile.mkdtemp(prefix="weir-case-")
    try:
        code = subprocess.call([sys.executable, os.path.abspath(__file__), CHILD, module, pattern],
                               env=dict(os.environ, TMPDIR=private))
        if code < 0:
            sys.stderr.write("%s: the test process was killed by signal %d\n" % (module, -code))
            code = 1
        left = leftovers(private)
        if left:
            sys.stderr.write("%s %s: left behind in its TMPDIR, removed now: %s (make temporary files with "
                             "weirtest's temp_dir or temp_file)\n" % (module, pattern, " ".join(sorted(left))))
            code = 1
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
