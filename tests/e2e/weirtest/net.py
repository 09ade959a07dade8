"""Sockets: a free port, a close that resets, a TLS client context that trusts anything."""

import socket
import ssl
import struct


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (for the rare test that needs to know the port before weir starts)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def set_linger_rst(sock):
    """Makes close() send a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def tls_client_context(alpn=("h2", "http/1.1")):
    """A client context that accepts any certificate (the tests' are self-signed) and offers alpn (None: no ALPN)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
