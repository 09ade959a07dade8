#!/usr/bin/env python3
"""Reads a build log made with gcc -fanalyzer and the list of explained findings; prints every finding, and exits 1
when one is not explained, or when an explanation matches no finding (so that the list stays true).

explained.txt: one finding per entry, "FILE FUNCTION -Wanalyzer-KIND MUST-CONTAIN" on one line (FILE relative to the
repository, FUNCTION the one gcc names in "In function", MUST-CONTAIN a word that must appear in the finding's text,
its path of events included), followed by indented lines that explain why it is not a defect of weir's."""
import os
import re
import sys

WARNING = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):\d+: warning: (?P<msg>.*) \[(?P<opt>-Wanalyzer-[a-z-]+)\]$")
IN_FUNCTION = re.compile(r"^(?P<file>[^:\s]+): In function [‘'](?P<func>[^’']+)[’']:$")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rel(path):
    return os.path.relpath(os.path.abspath(path), ROOT)


def findings(log):
    out, func, current = [], None, None
    for line in open(log, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = IN_FUNCTION.match(line)
        if m:
            func, current = m.group("func"), None
            continue
        m = WARNING.match(line)
        if m:
            current = {"file": rel(m.group("file")), "line": int(m.group("line")), "func": func or "?",
                       "opt": m.group("opt"), "msg": m.group("msg"), "text": line}
            out.append(current)
            continue
        if current is not None and not line.startswith("["):
            current["text"] += "\n" + line
        elif line.startswith("["):
            current = None
    return out


def explanations(path):
    out = []
    for line in open(path, encoding="utf-8"):
        if not line.strip() or line.startswith("#") or line[0].isspace():
            continue
        parts = line.split()
        if len(parts) != 4:
            sys.exit("%s: expected FILE FUNCTION OPTION MUST-CONTAIN: %s" % (path, line.strip()))
        out.append({"file": parts[0], "func": parts[1], "opt": parts[2], "word": parts[3], "used": 0})
    return out


def main():
    log, listfile = sys.argv[1], sys.argv[2]
    found, explained = findings(log), explanations(listfile)
    unexplained = 0
    for f in found:
        match = [e for e in explained if (e["file"], e["func"], e["opt"]) == (f["file"], f["func"], f["opt"]) and
                 e["word"] in f["text"]]
        for e in match:
            e["used"] += 1
        print("%s:%d: in %s: %s [%s]%s" % (f["file"], f["line"], f["func"], f["msg"], f["opt"],
                                           " (explained)" if match else " (NOT EXPLAINED)"))
        unexplained += not match
    stale = [e for e in explained if not e["used"]]
    for e in stale:
        print("%s: no finding matches the explanation of %s %s %s any more: remove it" %
              (listfile, e["file"], e["func"], e["opt"]))
    print("analyze: %d finding(s), %d explained in %s, %d not explained, %d stale explanation(s)" %
          (len(found), len(found) - unexplained, listfile, unexplained, len(stale)))
    sys.exit(1 if unexplained or stale else 0)


if __name__ == "__main__":
    main()
