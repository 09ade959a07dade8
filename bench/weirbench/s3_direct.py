"""A direct client of an S3-compatible store for Experiment 9's ceiling: N PUTs of one file to the keys
BUCKET/PREFIX<I>.jpg (PREFIX default "ceiling/"), signed as weir signs them (AWS Signature Version 4 with the body's SHA-256, credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region us-east-1), over CONNS keep-alive HTTP/1.1 connections with one PUT in
flight on each. Every request is signed before the clock starts and written whole with one send (TCP_NODELAY), as
libcurl does; ab and h2load write the body in pieces and meet delayed-ACK stalls with this store, and cannot sign.
Prints one JSON line: {"complete", "failed", "rps", "p50_ms", "p99_ms"}.

    python3 s3_direct.py PORT BUCKET FILE N CONNS [PREFIX]
"""
import datetime
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_head(port, path, length, payload_hash, key_id, secret, when):
    """The head of a signed PUT of `path` (a key of letters, digits and '/._-' only: nothing to encode)."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    host = "127.0.0.1:%d" % port
    headers = [("content-type", "image/jpeg"), ("host", host), ("x-amz-content-sha256", payload_hash),
               ("x-amz-date", amz_date)]
    signed = ";".join(k for k, _ in headers)
    canonical = "\n".join(["PUT", path, "", "".join("%s:%s\n" % kv for kv in headers), signed, payload_hash])
    scope = "%s/us-east-1/s3/aws4_request" % day
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), day), "us-east-1"), "s3"), "aws4_request")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (key_id, scope, signed, signature)
    return ("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n"
            "x-amz-content-sha256: %s\r\nx-amz-date: %s\r\nAuthorization: %s\r\n\r\n" % (
                path, host, length, payload_hash, amz_date, auth)).encode()


def main(port, bucket, path, n, conns, prefix):
    with open(path, "rb") as f:
        body = f.read()
    key_id, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    payload_hash = hashlib.sha256(body).hexdigest()
    now = datetime.datetime.now(datetime.timezone.utc)
    requests = [signed_head(port, "/%s/%s%d.jpg" % (bucket, prefix, i), len(body), payload_hash, key_id, secret, now) + body
                for i in range(n)]
    lock = threading.Lock()
    state = dict(next=0, ok=0, failed=0)
    latencies = []

    def worker():
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = sock.makefile("rb")
        try:
            while True:
                with lock:
                    i = state["next"]
                    if i >= n:
                        return
                    state["next"] += 1
                t0 = time.monotonic()
                sock.sendall(requests[i])
                status = int(f.readline().split()[1])
                length = 0
                while True:
                    line = f.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                f.read(length)
                with lock:
                    latencies.append((time.monotonic() - t0) * 1000.0)
                    state["ok" if status == 200 else "failed"] += 1
        finally:
            f.close()
            sock.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    latencies.sort()
    r = dict(complete=state["ok"], failed=state["failed"], rps=round(state["ok"] / elapsed, 1) if elapsed > 0 else None)
    if latencies:
        r["p50_ms"] = round(latencies[len(latencies) // 2], 1)
        r["p99_ms"] = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
    print(json.dumps(r))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
         sys.argv[6] if len(sys.argv) > 6 else "ceiling/")
