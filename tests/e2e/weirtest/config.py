"""The one builder of weir configurations for the tests: listeners (TLS included), top-level settings, and hosts
with their paths and module keys, written as YAML text by str(config) (Weir() takes a Config or text).

    Config(threads=2).listen().listen_tls() \\
        .set("graceful-shutdown-timeout", 20) \\
        .path("/upload", {"upload.concurrency": 5, "upload.delay-min": 100, "upload.delay-max": 200}) \\
        .path("/calc", {"calc.n": 20}, host="other.example")

Everything keeps the order in which it was added (the first host is the one weir falls back to); setting a key
again replaces its value in place."""

import json
import re

from .tools import make_cert

# Scalars written as they are; anything else is double-quoted (JSON escapes are valid in YAML double quotes).
_PLAIN = re.compile(r"^[A-Za-z0-9_./+-][A-Za-z0-9_./+-]*$")


def scalar(value):
    """The YAML text of a scalar value: integers and booleans as such, plain strings bare, others quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return text if _PLAIN.match(text) else json.dumps(text)


class Config:
    """A weir configuration. threads=None leaves num-threads out (weir's default)."""

    def __init__(self, threads=2):
        self.listeners = []  # [{key: value}], "ssl" a nested {key: value}
        self.settings = {}  # top-level keys other than listen and hosts
        self.hosts = {}  # {host: {path: {key: value}}}
        if threads is not None:
            self.set("num-threads", threads)

    def listen(self, port=0, host="127.0.0.1", certificate=None, key=None, **keys):
        """A listener; with certificate and key, a TLS one. keys: more listener keys (underscores become dashes)."""
        listener = {"port": port, "host": host}
        listener.update((k.replace("_", "-"), v) for k, v in keys.items())
        if certificate is not None:
            listener["ssl"] = {"certificate-file": certificate, "key-file": key}
        self.listeners.append(listener)
        return self

    def listen_tls(self, directory=None, port=0, host="127.0.0.1"):
        """A TLS listener with a new self-signed certificate (make_cert) in directory (by default a temporary one)."""
        cert, key = make_cert(directory)
        return self.listen(port, host, certificate=cert, key=key)

    def set(self, key, value):
        """A top-level key (num-threads, access-log, graceful-shutdown-timeout, limit-request-body...)."""
        self.settings[key] = value
        return self

    def path(self, path, keys=None, host="default"):
        """A path of a host, with its module keys ({"calc.n": 10}); the host is added on first use."""
        self.hosts.setdefault(host, {})[path] = dict(keys or {})
        return self

    def yaml(self):
        out = []
        if len(self.listeners) == 1:
            out.append("listen:\n" + _mapping(self.listeners[0], "  "))
        elif self.listeners:
            out.append("listen:\n" + "".join(_sequence_item(listener, "  ") for listener in self.listeners))
        out.extend("%s: %s\n" % (k, scalar(v)) for k, v in self.settings.items())
        if self.hosts:
            out.append("hosts:\n")
            for host, paths in self.hosts.items():
                out.append("  %s:\n    paths:\n" % scalar(host))
                for path, keys in paths.items():
                    if keys:
                        out.append("      %s:\n%s" % (scalar(path), _mapping(keys, " " * 8)))
                    else:
                        out.append("      %s: {}\n" % scalar(path))
        return "".join(out)

    __str__ = yaml


def _mapping(items, indent):
    """A block mapping, each line indented by `indent`; nested mappings two spaces deeper."""
    lines = []
    for k, v in items.items():
        if isinstance(v, dict):
            lines.append("%s%s:\n%s" % (indent, scalar(k), _mapping(v, indent + "  ")))
        else:
            lines.append("%s%s: %s\n" % (indent, scalar(k), scalar(v)))
    return "".join(lines)


def _sequence_item(items, indent):
    """A block mapping as an item of a block sequence: `- ` before its first key."""
    text = _mapping(items, indent + "  ")
    return indent + "- " + text[len(indent) + 2:]


BASIC_CONFIG = str(Config(threads=2).listen()
                   .path("/upload", {"upload.concurrency": 5, "upload.delay-min": 100, "upload.delay-max": 200})
                   .path("/calc", {"calc.n": 1000000}))
