"""Reading weir's /metrics in the tests: a strict parser of the Prometheus text format 0.0.4 (it fails on anything it
does not understand, so that a malformed line cannot pass unseen) and a scraper on one keep-alive HTTP/1 connection
(so that scraping opens exactly one connection, which tests of the connection counters can account for)."""

import math
import re

from weirtest import HTTP1Conn

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(" + _NAME + r")(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value):
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def _float(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    return float(text)


class Metrics:
    """A parsed exposition: families[name] = {"type":, "help":}; samples = [(name, labels dict, value)]."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        for line in text.split("\n"):
            if line == "":
                continue
            if line.startswith("# HELP "):
                name, _, help_text = line[7:].partition(" ")
                self.families.setdefault(name, {})["help"] = help_text
                continue
            if line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                assert kind in ("counter", "gauge", "histogram"), line
                self.families.setdefault(name, {})["type"] = kind
                continue
            m = _SAMPLE.match(line)
            assert m, "malformed line %r" % line
            labels = {}
            if m.group(3):
                rest = m.group(3)
                pos = 0
                while pos < len(rest):
                    lm = _LABEL.match(rest, pos)
                    assert lm, "malformed labels in %r" % line
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
            self.samples.append((m.group(1), labels, _float(m.group(4))))

    def find(self, name, **labels):
        """The samples of `name` whose labels include `labels` (underscores in keywords stay underscores)."""
        return [(lb, v) for n, lb, v in self.samples if n == name and all(lb.get(k) == str(w) for k, w in labels.items())]

    def value(self, name, **labels):
        """The value of the one sample of `name` with exactly these labels; None when there is none."""
        found = [v for lb, v in self.find(name, **labels) if len(lb) == len(labels)]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def sum(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(v for _, v in self.find(name, **labels))

    def bucket(self, name, le, **labels):
        return self.value(name + "_bucket", le=le, **labels)


class Scraper:
    """GET /metrics on one keep-alive HTTP/1 connection."""

    def __init__(self, port, path="/metrics"):
        self.conn = HTTP1Conn(port, timeout=30)
        self.path = path
        self.last_headers = None

    def scrape(self):
        self.conn.request("GET", self.path)
        r = self.conn.read_response()
        assert r.status == 200, (r.status, r.body)
        self.last_headers = dict(r.header_list)
        return Metrics(r.body.decode("utf-8"))

    def close(self):
        self.conn.close()
