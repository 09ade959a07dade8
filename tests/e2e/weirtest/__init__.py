"""The end-to-end test kit: starts the real weir binary on free ports with a configuration built by Config, and
drives it with real clients (curl, ab, h2load) and small socket clients (HTTP/1, HTTP/2); a redis-server of the
test's own; temporary files that are always removed.

    server.py  Weir (process lifecycle, sanitizer-report check, fd count), WEIR_BIN, SOURCE_DIR, SANITIZED
    config.py  Config (listeners incl. TLS, top-level keys, hosts and paths with module keys -> YAML), BASIC_CONFIG
    http1.py   HTTP1Conn, HTTP1Response, http1(), raw_request()
    http2.py   H2Client, H2Stream
    net.py     free_port(), set_linger_rst(), tls_client_context()
    tools.py   require() (skip or fail), run(), curl(), curl_json(), ab(), h2load(), make_cert(), wait_until()
    redis.py   RedisServer (and RESP helpers)
    tmp.py     temp_dir(), temp_file(), cleanup(): removed at the end of the case, pass or fail

Every public name is importable from the package itself (`from weirtest import Weir, Config, curl`).

Make temporary files and directories with temp_dir() or temp_file() (Weir, make_cert and RedisServer do): run_case.py
gives each case a TMPDIR of its own and fails the case when anything is left there, such as a tempfile.mkdtemp()."""

from .config import BASIC_CONFIG, Config, scalar
from .http1 import HTTP1Conn, HTTP1Response, http1, raw_request
from .http2 import H2Client, H2Stream
from .net import free_port, set_linger_rst, tls_client_context
from .redis import RedisServer, RespError
from .server import SANITIZED, SANITIZER_MARKERS, SOURCE_DIR, WEIR_BIN, Weir, assert_no_sanitizer_report
from .tmp import cleanup, temp_dir, temp_file
from .tools import SKIP_CODE, ab, curl, curl_json, h2load, make_cert, require, run, wait_until

__all__ = ["BASIC_CONFIG", "Config", "scalar", "HTTP1Conn", "HTTP1Response", "http1", "raw_request", "H2Client",
           "H2Stream", "free_port", "set_linger_rst", "tls_client_context", "RedisServer", "RespError", "SANITIZED",
           "SANITIZER_MARKERS", "SOURCE_DIR", "WEIR_BIN", "Weir", "assert_no_sanitizer_report", "cleanup",
           "temp_dir", "temp_file", "SKIP_CODE", "ab", "curl", "curl_json", "h2load", "make_cert", "require", "run",
           "wait_until"]
