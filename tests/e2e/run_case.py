"""Runs the end-to-end test cases of one file whose names match a pattern, as ctest does for each entry:

    python3 run_case.py test_upload test_fifo_order

Fails (exit 1) when the pattern selects no case, so that a renamed or removed case cannot pass as an empty run.
A test that skips itself (exit 77) is reported to ctest as skipped."""

import fnmatch
import sys
import unittest


def cases(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from cases(item)
        else:
            yield item


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: run_case.py MODULE CASE-PATTERN\n")
        return 2
    module, pattern = argv[1], argv[2]
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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
