#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ (seed-* files; other files there,
such as regression inputs, are left alone). The seeds come from the unit tests' inputs and from the example
configurations; the HTTP/2 ones are frame sequences written here by hand (HPACK literals, no Huffman).
Run it again after changing it: `python3 tests/fuzz/seeds.py`."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, s in enumerate(seeds):
        if isinstance(s, str):
            s = s.encode()
        with open(os.path.join(d, "seed-%03d" % i), "wb") as fp:
            fp.write(s)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as fp:
        return fp.read()


# ---- conf ---------------------------------------------------------------------------------------------------------
LISTEN = "listen:\n  port: 8080\n"
HOSTS = "hosts:\n  default:\n    paths:\n      /calc:\n        calc.n: 10\n"
conf = [
    read("conf/server.yaml"),
    read("packaging/examples/server-redis.yaml"),
    read("packaging/examples/server-tls.yaml"),
    LISTEN + HOSTS,
    "listen:\n  port: 8080\n  host: 127.0.0.1\nnum-threads: 2\nlimit-request-body: 10485760\n"
    "access-log: /var/log/weir/access.log\nhosts:\n  default:\n    paths:\n      /upload:\n"
    "        upload.concurrency: 5\n        upload.delay-min: 100\n        upload.delay-max: 200\n"
    "      /calc:\n        calc.n: 1000000\n        calc.max-n: 100000000\n        calc.threads: 3\n",
    "listen:\n  - port: 0\n  - port: 8081\n    host: ::1\n  - {port: 8082, host: localhost}\n" + HOSTS,
    LISTEN + "graceful-shutdown-timeout: 1\nhttp1-request-timeout: 3600\nhttp2-idle-timeout: 5\n" + HOSTS,
    LISTEN + "limit-request-body: 1GiB\n" + HOSTS,
    LISTEN + "limit-request-body: 64k\n" + HOSTS,
    LISTEN + "hosts:\n  default:\n    paths:\n      /cache:\n        cache.backend: memory\n"
    "        cache.max-key-size: 1K\n        cache.max-value-size: 16M\n        cache.memory.max-bytes: 1G\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /cache:\n        cache.backend: redis\n"
    "        cache.redis.url: unix:/run/redis/redis.sock?db=2\n        cache.redis.pool: 4\n"
    "        cache.redis.timeout: 250\n        cache.redis.prefix: \"\"\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /cache:\n        cache.redis.url: \"redis://u:p%40@[::1]:6380/3\"\n",
    LISTEN + "hosts:\n  a.example:\n    paths:\n      /x/:\n        upload.concurrency: 1\n"
    "  b.example:8080:\n    paths:\n      /:\n        calc.n: 0\n        calc.max-n: 0\n",
    LISTEN + "hosts:\n  Example.com:\n    paths:\n      /calc: {calc.n: 1}\n  other:\n    paths:\n      /calc: {calc.n: 2}\n",
    "listen:\n  ssl:\n    certificate-file: /etc/ssl/certs/ca-certificates.crt\n"
    "    key-file: /etc/ssl/certs/ca-certificates.crt\n  port: 443\n" + HOSTS,
    "listen:\n  port: 443\n  ssl: {certificate-file: server.crt, key-file: server.key, ciphers: x}\n" + HOSTS,
    LISTEN + HOSTS + "max-connections: 10\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /u:\n        upload.concurrency: 1\n        calc.n: 3\n"
    "      /v:\n        foo.bar: 1\n      /w:\n      /x: []\n      calc: {calc.n: 1}\n",
    "listen: 8080\nhosts: [default]\nnum-threads: {a: 1}\naccess-log: [a]\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /upload:\n        upload.delay-min: 300\n        upload.delay-max: 200\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /calc:\n        calc.n: 11\n        calc.max-n: 10\n"
    "        calc.threads: 1025\n",
    LISTEN + "hosts:\n  default:\n    paths:\n      /calc:\n        calc.max-n: 4294967296\n        calc.n: -1\n",
    "base: &b\n  port: 8080\nlisten: *b\n" + HOSTS,
    "a: 1\nb: *nope\n",
    "a: &x\n  - 1\n  - *x\n",
    "a: &x {b: 1}\nc:\n  <<: *x\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "a: 1\nb: c: d\n",
    "a: 1\nb: [1, 2\nc: 3\n",
    "a: 1\n\tb: 2\n",
    b"a: 1\nb: \xff\n",
    "a: 1\nb:\n  x: 1\n  x: 2\na: 3\n",
    "? [a]\n: 1\n",
    "a: 1\n---\nb: 2\n",
    "a: hello world\nb: ''\nc: [x]\nd: \"x\\0y\"\ne:\n",
    "%YAML 1.1\n--- !!map\nlisten: !!map {port: !!int 80}\n" + HOSTS,
    "[" * 300 + "]" * 300,
    "",
    "- a\n",
]
write("conf", conf)

# ---- query --------------------------------------------------------------------------------------------------------
write("query", [
    "key=abc", "a=1&key=xyz&b=2", "key=a%20b", "key=a+b", "key=%2B%26%3D", "key=%e2%82%ac", "key=%00x",
    "k%65y=v", "key=1&key=2", "key=1&k%65y=1", "key&key", "a=1&a=2&key=v", "key=", "key", "&&key=v&&", "",
    "keys=1&ke=2", "a=key", "key=%", "key=%4", "key=%zz", "key=1&x=%g0", "%=1&key=2", "n=10", "n=0010",
    "n=100000000", "n=100000001", "n=4294967296", "n=18446744073709551616", "n=-1", "n=+1", "n=1%20",
    "n=1x", "n=%31%30", "key=k&ttl=60", "key=k&ttl=0", "key=k&ttl=2147483647", "key=k&ttl=2147483648",
    "ttl=1&ttl=2", "db=3&password=p%20w", "=v", "=", "&", "username=u&password=", "a%41+b",
])

# ---- utf8 and json_quote ------------------------------------------------------------------------------------------
utf8 = [b"", b"ascii", b"\xc3\xa9", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xc0\x80", b"\xe0\x80\xaf",
        b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80", b"a\xc3(",
        b"0123456789abcdef\xe2\x82\xac0123456789", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xf0\x90\x80\x80",
        b"\xf0\x8f\xbf\xbf", b"\xc1\xbf", b"\xc2\x80", b"abcdefg\xf0\x9f\x98\x80"]
write("utf8", utf8)
write("json_quote", utf8 + [b"plain", b"q\"\\\n\x01", b"\x7f", b"a\x1fz", b"\t\r\b\f/", bytes(range(0x20)),
                            b"\x7f\x7f\x7f\x01\"\\\x00\xe2\x82\xac", b"\x7f\x7f\x7fplain text repeated",
                            b"\x7f\x7f\x7f\x01"])

# ---- redis_url ----------------------------------------------------------------------------------------------------
write("redis_url", [
    "redis://127.0.0.1:6379/0", "redis://:s%40cret@cache.example:7000/5", "redis://user:pw@[::1]:6380",
    "redis://localhost", "unix:/run/redis/redis.sock", "unix:///tmp/r.sock?db=3&password=p%20w",
    "redis://", "redis://:pw@", "redis://host:0", "redis://host:70000", "redis://host:x", "redis://host/abc",
    "redis://[::1", "unix:relative.sock", "unix:", "redis://h/1/2", "unix:/s?db=x", "redis://us%zz:pw@host/0",
    "rediss://host", "http://host", "redis://a@b@c:1/2", "redis://user:@h", "redis://pw@h#frag",
    "redis://h/?x", "unix:/s?username=u&password=p+q&db=2147483647", "redis://[::1]x", "redis://h:65535/2147483648",
])

# ---- multipart ----------------------------------------------------------------------------------------------------
# The Content-Type, a LF, then the body (tests/fuzz/multipart.c). The bodies are test_multipart.c's: what curl -F sends
# (captured from curl 7.88.1), and the edge cases.
CT = "multipart/form-data; boundary=XyZ"
CAT_JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--\r\n\x00\x01\x02\xff\xd9"


def mp(ct, body):
    return ct.encode() + b"\n" + (body.encode() if isinstance(body, str) else body)


def curl(boundary, parts):
    body = b""
    for headers, content in parts:
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n" + content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


B1, B2 = b"------------------------a98e5492d18a78b9", b"------------------------38f54f88d5fa21c6"
IMAGE = b'Content-Disposition: form-data; name="image"; filename="cat.jpg"\r\nContent-Type: image/jpeg\r\n'
SIMPLE = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nhello\r\n--XyZ--\r\n"
multipart = [
    mp("multipart/form-data; boundary=" + B1.decode(), curl(b"--" + B1, [(IMAGE, CAT_JPG)])),
    mp("multipart/form-data; boundary=" + B2.decode(),
       curl(b"--" + B2, [(IMAGE, CAT_JPG), (b'Content-Disposition: form-data; name="title"\r\n', b'a "quoted" \\ title'),
                         (b'Content-Disposition: form-data; name="empty"\r\n', b"")])),
    mp("multipart/form-data; boundary=XyZ", curl(b"XyZ", [(b'Content-Disposition: form-data; name="image"; '
                                                          b'filename="we%22ird\\name.jpg"\r\nContent-Type: image/jpeg\r\n',
                                                          CAT_JPG)])),
    mp(CT, SIMPLE), mp('multipart/form-data; boundary="XyZ"', SIMPLE), mp("Multipart/Form-Data; BOUNDARY=XyZ", SIMPLE),
    mp('  multipart/form-data ; charset="utf-8" ;  boundary=XyZ ;', SIMPLE), mp("multipart/form-data;; boundary = XyZ", SIMPLE),
    mp("multipart/form-data; boundary=\"a b'()+_,-./:=?z\"",
       "--a b'()+_,-./:=?z\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--a b'()+_,-./:=?z--"),
    mp("multipart/form-data; boundary=" + "b" * 70, "--" + "b" * 70 + "\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--"
       + "b" * 70 + "--\r\n"),
    mp("multipart/form-data; boundary=" + "b" * 71, SIMPLE),
    mp("text/plain; boundary=XyZ", SIMPLE), mp("multipart/mixed; boundary=XyZ", SIMPLE), mp("multipart/form-data", SIMPLE),
    mp("multipart/form-data; boundary=XyZ; boundary=XyZ", SIMPLE), mp('multipart/form-data; boundary="X\\"Z"', SIMPLE),
    mp('multipart/form-data; boundary="XyZ', SIMPLE), mp("multipart/form-data boundary=XyZ", SIMPLE), mp("", SIMPLE),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n--XyZ at the start\r\n-XyZ\r\n\r\n--Xy\r\n"
           "\r\n--xyz\r\na --XyZ-- b\n--XyZ\r\n\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZX\r\ny\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ\r"),
    mp(CT, "This is the preamble.\r\n--XyZ \t\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ--  \t\r\n"
           "This is the epilogue\r\n--XyZ\r\nwhich looks like a part.\r\n"),
    mp(CT, "\r\n--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ--"),
    mp(CT, "--XyZ--\r\n"), mp(CT, "preamble--XyZ\r\n"), mp(CT, ""),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nT\r\n"
           "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n"
           "--XyZ\r\nContent-Disposition: form-data; name=\"Image\"\r\n\r\nother\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=title"
           "\r\n\r\nt\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n2\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n1\r\n--XyZ\r\nContent-Type: text/plain\r\n\r\n2\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\nContent-Disposition: form-data; name=image\n\nhello\n--XyZ--\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\n\r\nhello\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\nline1\nline2\r\rline3\n\r\n--XyZ--"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n" + "".join("X-H%d: v\r\n" % i for i in range(1, 17))
       + "\r\nx\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\nX-Pad: " + "p" * 8143 + "\r\n\r\nx\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=image; "
           "filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--XyZ--\r\n"),
    mp(CT, "--XyZ\r\nX-Whatever: 1\r\nContent-Transfer-Encoding: Binary\r\ncontent-disposition:form-data;name=a;"
           "filename=\"caf\xc3\xa9.jpg\"   \r\nCONTENT-TYPE:   image/jpeg; q=\"1\"  \t\r\n\r\nc\r\n--XyZ--\r\n".encode("latin-1")),
    mp(CT, b"--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Nul: a\0b\r\n\r\nc\r\n--XyZ--\r\n"),
    mp(CT, "".join("--XyZ\r\nContent-Disposition: form-data; name=f%d\r\n\r\n%d\r\n" % (i, i) for i in range(65)) + "--XyZ--\r\n"),
    mp(CT, b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.bin\"\r\nContent-Type: "
           b"application/octet-stream\r\n\r\n" + bytes(range(256)) + b"\0\0\r\n\r\n--\r\n-\r\n--X\r\n--Xy\0\r\n-XyZ\r--XyZ\n--XyZ\0--XyZ"
           + bytes(range(255, -1, -1)) + b"\r\n--XyZ--\r\n"),
]
for h in ["", "Content-Type: image/png\r\n", "Content-Disposition: attachment; name=image\r\n",
          "Content-Disposition: form-data\r\n", "Content-Disposition: form-data; filename=a.jpg\r\n",
          "Content-Disposition: form-data; name*=UTF-8''image\r\n", "Content-Disposition:\r\n",
          "Content-Disposition: form-data; name=\"image\r\n", "Content-Disposition: form-data; name=\"image\"x\r\n",
          "Content-Disposition: form-data; name=a; NAME=b\r\n", "Content-Disposition: form-data; name=a; filename=x; Filename=y\r\n",
          "Content-Disposition: form-data; name=a\r\nContent-Type: a/b\r\ncontent-type: a/b\r\n",
          "Content-Disposition: form-data; name=a\r\nContent-Type:  \r\n",
          "Content-Disposition: form-data; name=a\r\nContent-Transfer-Encoding: base64\r\n",
          "Content-Disposition: form-data;\r\n name=a\r\n", "Content-Disposition: form-data; name=a\r\nNo-Colon\r\n",
          "Content-Disposition: form-data; name=a\r\nX-Ctl: a\x01b\r\n",
          "Content-Disposition: form-data; name=\"a\\\"b\\\\c\"; filename=\"C:\\photos\\cat.jpg\"\r\n",
          "Content-Disposition: form-data; name=image; filename=\"\\\\\"\r\n",
          "Content-Disposition: form-data; name=\"a\\\"b\"; filename=\"f\"\r\n",
          "Content-Disposition: form-data; name=image; x=\"a\\\"b\"\r\n",
          "Content-Disposition: form-data; name=image; filename*=UTF-8''%e2%82%ac.jpg; filename=\"euro.jpg\"\r\n",
          "Content-Disposition: FORM-DATA; FILENAME=\"cat.jpg\"; NAME=\"image\"\r\n",
          "Content-Disposition: form-data ; name = \"image\" ; filename = cat.jpg ;\r\n"]:
    multipart.append(mp(CT, "--XyZ\r\n%s\r\ncontent\r\n--XyZ--\r\n" % h))
write("multipart", multipart)

# ---- sigv4 --------------------------------------------------------------------------------------------------------
# A flags byte ('1': add x-amz-content-sha256; 0xc2 and up: one field made long), then one field a line: method, path, query, payload hash, region,
# service, x-amz-date (or @SECONDS), key id, secret, token, then "name:value" headers; fields percent-decoded
# (tests/fuzz/sigv4.c). The requests are test_sigv4.c's: the SigV4 suite's cases and the S3 documentation's.
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SUITE_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
S3_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def sig(flags, method, path, headers, query="", hash=EMPTY_SHA, region="us-east-1", service="service",
        date="20150830T123600Z", key=SUITE_KEY, token=""):
    lines = [method, path, query, hash, region, service, date, key[0], key[1], token] + ["%s:%s" % h for h in headers]
    return (flags + "\n".join(lines)).encode("latin-1")


HOST = ("Host", "example.amazonaws.com")
S3HOST = ("Host", "examplebucket.s3.amazonaws.com")
sigv4 = [
    sig("0", "GET", "/", [HOST]),
    sig("0", "GET", "/", [HOST], "Param2=value2&Param1=value1"),
    sig("0", "GET", "/", [HOST], "Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
    sig("0", "GET", "/", [HOST], "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    sig("0", "GET", "/", [HOST, ("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')]),
    sig("0", "GET", "/", [HOST, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")]),
    sig("0", "GET", "/", [HOST, ("My-Header1", "value1   value2      value3")]),
    sig("0", "GET", "/", [HOST, ("My-Header1", "value1%0A  value2")]),
    sig("0", "GET", "/example space/", [HOST]), sig("0", "GET", "//example//", [HOST]), sig("0", "GET", "/./../.", [HOST]),
    sig("0", "POST", "/", [HOST, ("Content-Type", "application/x-www-form-urlencoded")], token="AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="),
    sig("1", "PUT", "/test$file.text", [S3HOST, ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
        hash="44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072", service="s3", date="20130524T000000Z", key=S3_KEY),
    sig("1", "GET", "/test.txt", [S3HOST, ("Range", "bytes=0-9")], service="s3", date="20130524T000000Z", key=S3_KEY),
    sig("1", "GET", "/", [S3HOST], "lifecycle", service="s3", date="20130524T000000Z", key=S3_KEY),
    sig("1", "GET", "/", [S3HOST], "prefix=J&max-keys=2", service="s3", date="20130524T000000Z", key=S3_KEY),
    sig("1", "PUT", "/images/uploads/a b+c~d%25e/caf%C3%A9//x", [("host", "127.0.0.1:4569")], service="s3"),
    sig("1", "PUT", "/b/k", [("Host", "s3.example"), ("Content-Type", "image/jpeg")], service="s3", token="TOKEN/+=abc"),
    sig("0", "PUT", "/b/k", [("Host", "s3.example")], hash="UNSIGNED-PAYLOAD", service="s3", date="@1440938160"),
    sig("1", "PUT", "/b/k", [("Host", "s3.example")], service="s3", date="@253402300799"),
    sig("1", "PUT", "/b/k", [("Host", "s3.example")], service="s3", date="@253402300800"),
    sig("1", "PUT", "/b/k", [("Host", "s3.example")], service="s3", date="@-62167219200"),
    sig("1", "PUT", "/b/k", [("Host", "s3.example")], service="s3", date="@-1"),
    sig("0", "GET", "/", [HOST], "a=&=b&&c&a=a&a=%26%3D"),
    sig("0", "GET", "/", [HOST, ("host", "second"), ("HOST", "third")]),
    # refused: each one field wrong
    sig("0", "GET", "/", []), sig("0", "GET", "/", [("Hostx", "h")]), sig("0", "G T", "/", [HOST]), sig("0", "", "/", [HOST]),
    sig("0", "GET", "", [HOST]), sig("0", "GET", "x/", [HOST]), sig("0", "GET", "/", [HOST], region="us/east"),
    sig("0", "GET", "/", [HOST], region=""), sig("0", "GET", "/", [HOST], service="s~3"),
    sig("0", "GET", "/", [HOST], date="20150830T123600"), sig("0", "GET", "/", [HOST], date="2015083xT123600Z"),
    sig("0", "GET", "/", [HOST], hash=EMPTY_SHA.upper()), sig("0", "GET", "/", [HOST], hash=EMPTY_SHA[:63]),
    sig("0", "GET", "/", [HOST], hash="UNSIGNED-PAYLOAd"), sig("0", "GET", "/", [HOST], key=("AKID/X", "s")),
    sig("0", "GET", "/", [HOST], key=("AKID,X", "s")), sig("0", "GET", "/", [HOST], key=("", "s")),
    sig("0", "GET", "/", [HOST], key=("AKID", "")), sig("0", "GET", "/", [HOST], token="a b"),
    sig("0", "GET", "/", [HOST, ("My Header", "v")]), sig("0", "GET", "/", [HOST, ("My-Header", "a%0Db")]),
    sig("0", "GET", "/", [HOST, ("My-Header", "a%00b")]), sig("0", "GET", "/", [HOST, ("My-Header", "a%7Fb")]),
    sig("0", "GET", "/", [HOST, ("Authorization", "x")]), sig("0", "GET", "/", [HOST, ("X-Amz-Date", "x")]),
    sig("1", "GET", "/", [HOST, ("x-amz-content-SHA256", "x")]), sig("0", "GET", "/", [HOST, ("x-amz-content-sha256", "x")]),
    sig("0", "GET", "/", [HOST, ("X-Amz-Security-Token", "x")], token="t"),
    sig("0", "GET", "/", [HOST, ("X-Amz-Security-Token", "x")]),
    sig("0", "GET", "/", [HOST] + [("h%d" % i, "v") for i in range(256)]),
    sig("0", "GET", "/", [HOST], "&".join("p%d" % i for i in range(257))),
    b"\x01", b"",
]
# one field at the length limit (flags 0xc2 | field << 2 | 1), and one byte over it (| 0x20)
for field in range(8):
    for over in (0, 0x20):
        sigv4.append(sig(chr(0xc3 | field << 2 | over), "PUT", "/b/k", [("Host", "s3.example"), ("X-Long", "v")], service="s3",
                         token="t" if field == 6 else ""))
write("sigv4", sigv4)

# ---- gate_replies -------------------------------------------------------------------------------------------------
# RESP bytes. The first ones were captured from redis-server 7.0.15 running the gate's scripts (member
# 0123456789abcdef.0, the member id the target uses); then replies the scripts never send.
M = b"0123456789abcdef.0"


def bulk(s):
    s = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def arr(*items):
    return b"*%d\r\n" % len(items) + b"".join(items)


EPOCH = bulk("1796152632.700203")
E0 = arr()
gate_replies = [
    b":1\r\n", b":0\r\n", arr(EPOCH, E0, E0), arr(EPOCH, arr(bulk(M + b"#7")), E0),
    arr(EPOCH, E0, arr(bulk(M + b"#1"), bulk(M + b"#2"))),
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
    arr(bulk("subscribe"), bulk(b"t:grant:" + M), b":1\r\n"),
    arr(bulk("message"), bulk(b"t:grant:" + M), bulk(M + b"#3")),
    b":1\r\n" + arr(EPOCH, arr(bulk(M + b"#1")), E0) + b":0\r\n",
    # not what the scripts send
    b":2\r\n", b":-1\r\n", b":9223372036854775807\r\n", b"+OK\r\n", b"$1\r\n1\r\n", b"$-1\r\n", b"*-1\r\n", E0,
    arr(b":1\r\n"), arr(EPOCH, E0), arr(EPOCH, E0, E0, E0), arr(b":1\r\n", E0, E0), arr(b"$-1\r\n", E0, E0),
    arr(bulk(""), E0, E0), arr(bulk("x" * 63), E0, E0), arr(bulk("x" * 64), E0, E0), arr(bulk(b"17961\x00.7"), E0, E0),
    arr(b"+1796152632.700203\r\n", E0, E0), arr(EPOCH, b"$-1\r\n", E0), arr(EPOCH, E0, b":0\r\n"), arr(EPOCH, b"*-1\r\n", E0),
    arr(EPOCH, arr(b":7\r\n"), E0), arr(EPOCH, E0, arr(arr(bulk(M + b"#1")))), arr(EPOCH, arr(b"$-1\r\n"), E0),
    arr(EPOCH, arr(b"+" + M + b"#1\r\n"), E0), arr(arr(EPOCH), E0, E0),
    arr(EPOCH, arr(bulk(M + b"#18446744073709551615"), bulk(M + b"#18446744073709551616"), bulk(M + b"#99999999999999999999")), E0),
    arr(EPOCH, arr(bulk(M + b"#0"), bulk(M + b"#01"), bulk(M + b"#"), bulk(M + b"#1x"), bulk(M + b"1"), bulk(M)), E0),
    arr(EPOCH, arr(bulk(b"0123456789abcdef.1#1"), bulk(b"0123456789abcdef.#1"), bulk(b"0123456789abcdef.00#1")), E0),
    b"*1\r\n" * 7 + b":1\r\n", b"*3\r\n$17\r\n1796152632.700203\r\n*0\r\n", b":1\r", b"?\r\n",
]
write("gate_replies", gate_replies)

# ---- http ---------------------------------------------------------------------------------------------------------
H1, H1_LATE, H2, H2_LATE = b"\x00", b"\x02", b"\x01", b"\x03"


def req(method, target, headers=(), body=None):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: localhost"] + list(headers)
    if body is not None and not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


http = [
    H1 + req("GET", "/calc"), H1_LATE + req("GET", "/calc?n=10"), H1 + req("GET", "/calc?n=1001"),
    H1 + req("GET", "/calc?n=abc"), H1 + req("GET", "/calc?n=1&n=2"), H1 + req("HEAD", "/calc?n=%31"),
    H1 + req("POST", "/calc"), H1_LATE + req("POST", "/upload", body=b"x" * 100), H1 + req("POST", "/upload"),
    H1 + req("GET", "/upload"), H1_LATE + req("PUT", "/cache?key=k&ttl=5", body=b"hello"),
    H1 + req("GET", "/cache?key=k"), H1 + req("DELETE", "/cache?key=k"), H1 + req("PUT", "/cache?key=k", body=b"\xff"),
    H1 + req("PUT", "/cache?key=k&ttl=0", body=b"v"), H1 + req("PUT", "/cache?key=%zz", body=b"v"),
    H1 + req("GET", "/cache"), H1 + req("GET", "/cache?key="), H1 + req("GET", "/cache?key=" + "k" * 17),
    H1 + req("PUT", "/cache?key=big", body=b"v" * 1025), H1 + req("PATCH", "/cache?key=k"),
    H1 + req("GET", "/nowhere"), H1 + req("GET", "/calc/x"), H1 + req("GET", "/calc/"),
    H1_LATE + req("PUT", "/cache?key=c", ["Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
    H1_LATE + req("POST", "/upload", ["Expect: 100-continue"], b"abc"),
    H1_LATE + req("PUT", "/cache?key=p", body=b"1") + req("GET", "/cache?key=p") + req("GET", "/calc?n=3"),
    H1 + req("GET", "/calc", ["Connection: close"]), H1 + b"GET /calc HTTP/1.0\r\n\r\n",
    H1 + req("GET", "/", ["Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", "Connection: Upgrade, HTTP2-Settings"]),
    H1 + b"GARBAGE\r\n\r\n", H1 + b"",
]


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def lit(index, value):
    """A literal header field without indexing, with an indexed name (RFC 7541, 6.2.2), no Huffman."""
    value = value.encode() if isinstance(value, str) else value
    if index < 15:
        head = bytes([index])
    else:
        head = bytes([15, index - 15])
    return head + bytes([len(value)]) + value


def lit_new(name, value):
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


GET, POST, PATH_ROOT, SCHEME_HTTP = b"\x82", b"\x83", b"\x84", b"\x86"
AUTHORITY = lit(1, "localhost")
END_STREAM, END_HEADERS, ACK, PADDED, PRIORITY = 1, 4, 1, 8, 0x20


def headers(stream, method, path, extra=b"", flags=END_HEADERS | END_STREAM):
    block = method + SCHEME_HTTP + AUTHORITY + lit(4, path) + extra
    return frame(1, flags, stream, block)


def put(stream, path, body):
    method = lit(2, "PUT")
    return (headers(stream, method, path, lit(28, str(len(body))), END_HEADERS) +
            frame(0, END_STREAM, stream, body))


SETTINGS_ACK = frame(4, ACK, 0)
http += [
    H2_LATE + SETTINGS_ACK + headers(1, GET, "/calc?n=5"),
    H2_LATE + headers(1, GET, "/calc") + headers(3, GET, "/calc?n=1000") + headers(5, GET, "/calc?n=x"),
    H2 + headers(1, GET, "/calc") + headers(3, GET, "/calc?n=x"),
    H2_LATE + headers(1, POST, "/upload", flags=END_HEADERS) + frame(0, END_STREAM, 1, b"data"),
    H2_LATE + headers(1, POST, "/upload") + headers(3, POST, "/upload") + headers(5, POST, "/upload"),
    H2 + headers(1, POST, "/upload") + headers(3, POST, "/upload") + frame(3, 0, 1, b"\x00\x00\x00\x08"),
    H2 + headers(1, GET, "/calc?n=1000") + frame(3, 0, 1, b"\x00\x00\x00\x08"),
    H2_LATE + put(1, "/cache?key=h2&ttl=9", b"value") + headers(3, GET, "/cache?key=h2"),
    H2 + headers(1, lit(2, "DELETE"), "/cache?key=h2"),
    H2 + put(1, "/cache?key=bad", b"\xc0\xaf"),
    H2 + headers(1, lit(2, "OPTIONS"), "/cache?key=x"),
    H2 + headers(1, GET, "/nowhere") + frame(6, 0, 0, b"12345678"),
    H2_LATE + frame(8, 0, 0, b"\x00\x01\x00\x00") + headers(1, GET, "/calc"),
    H2_LATE + frame(1, END_STREAM, 1, GET + SCHEME_HTTP) + frame(9, END_HEADERS, 1, AUTHORITY + lit(4, "/calc?n=7")),
    H2_LATE + frame(1, END_HEADERS | END_STREAM | PADDED, 1, b"\x03" + GET + SCHEME_HTTP + AUTHORITY + lit(4, "/calc") + b"\0\0\0"),
    H2 + frame(1, END_HEADERS | END_STREAM | PRIORITY, 1, b"\x00\x00\x00\x00\x10" + GET + SCHEME_HTTP + AUTHORITY + PATH_ROOT),
    H2 + frame(2, 0, 3, b"\x00\x00\x00\x01\x20") + headers(3, GET, "/cache?key=a", lit_new("x-custom", "1")),
    H2_LATE + frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x01\x00\x04\x00\x00\xff\xff") + headers(1, GET, "/calc"),
    H2_LATE + headers(1, GET, "/calc") + frame(7, 0, 0, b"\x00\x00\x00\x01\x00\x00\x00\x00"),
    H2 + b"".join(headers(2 * i + 1, GET, "/calc?n=%d" % i) + frame(3, 0, 2 * i + 1, b"\x00\x00\x00\x08") for i in range(8)),
    H2_LATE + headers(1, POST, "/upload", lit(28, "4"), END_HEADERS) + frame(0, 0, 1, b"ab") + frame(0, END_STREAM, 1, b"cd"),
    H2 + headers(2, GET, "/calc"),
    H2 + b"\x00\x00",
]
write("http", http)
