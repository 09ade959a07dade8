"""Differential test of weir's SigV4 signer (src/sigv4.c, through the test tool tests/tools/sigv4_sign.c) against a
second implementation, botocore's S3SigV4Auth (Debian's python3-botocore, what boto3 signs S3 requests with).

Hundreds of randomised path-style PUT requests (object keys with spaces, '+', '~', '%', empty segments and
non-ASCII UTF-8; header values with extra spaces and tabs; repeated headers; random bodies; with and without a
session token; signed and unsigned payloads) are signed by both, and the Authorization headers must be byte for byte
the same, as must the encoded path and x-amz-content-sha256. The random seed is printed and can be set with
WEIR_SIGV4_SEED to replay a failure."""

import os
import random
import string
import subprocess
import sys
import unittest

import weirtest as wt

SIGN_TOOL = os.environ.get("WEIR_SIGV4_SIGN", os.path.join(os.path.dirname(__file__), "../../build/tests/sigv4_sign"))


def import_botocore():
    """botocore's modules, or a skip (a failure under WEIR_NO_SKIP=1) when python3-boto3 is not installed."""
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.config
        import botocore.credentials
        import botocore.utils
    except ImportError:
        if os.environ.get("WEIR_NO_SKIP"):
            raise AssertionError("botocore is not installed (Debian package python3-boto3)")
        sys.stderr.write("SKIP: botocore is not installed (python3-boto3)\n")
        sys.stderr.flush()
        os._exit(wt.SKIP_CODE)
    return botocore


# Headers botocore does not sign, or replaces while signing: the signer's caller never gives these.
NOT_SIGNED = {"expect", "user-agent", "x-amzn-trace-id", "date", "authorization", "x-amz-date", "x-amz-security-token",
              "x-amz-content-sha256"}

KEY_CHARS = (string.ascii_letters + string.digits + " +~/%-._!'()*=&?#$,;:@[]{}|^`\"<>\\" +
             "\u00e9\u00fc\u00df\u65e5\u672c\U0001f408\u0434")
VALUE_CHARS = string.ascii_letters + string.digits + "-_.~!#$%&'*+,/:;<=>?@[]^`{|}\"()\\"


def random_key(rng):
    key = "".join(rng.choice(KEY_CHARS) for _ in range(rng.randint(1, 40)))
    if rng.random() < 0.2:
        key = key.replace("/", "//")  # empty segments
    return key


def random_value(rng):
    """A header value with runs of spaces and tabs anywhere, leading and trailing ones included."""
    parts = []
    for _ in range(rng.randint(0, 5)):
        parts.append(rng.choice(["", " ", "  ", "\t", " \t ", "   "]))
        parts.append("".join(rng.choice(VALUE_CHARS) for _ in range(rng.randint(1, 12))))
    parts.append(rng.choice(["", " ", "\t", "  \t"]))
    return "".join(parts)


def random_name(rng):
    while True:
        name = rng.choice(["x-amz-meta-", "X-Amz-Meta-", "x-custom-", "X-", "Cache-Control", "Content-Disposition",
                           "content-language", "X-Amz-Storage-Class", "x-amz-acl"])
        if name.endswith("-"):
            name += "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(rng.randint(1, 10)))
        if name.lower() not in NOT_SIGNED:
            return name


def hexs(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return data.hex()


class Signer:
    """Signs requests with both implementations and compares them."""

    def __init__(self, botocore):
        self.botocore = botocore
        self.tool_lines = []
        self.expected = []

    def add(self, path, host, scheme, headers, body, region, akid, secret, token=None, unsigned=False, params=None):
        bc = self.botocore
        url_path = bc.utils.percent_encode(path, safe="/~")  # how botocore's serializer puts S3 keys in URLs
        request = bc.awsrequest.AWSRequest(method="PUT", url="%s://%s%s" % (scheme, host, url_path), data=body,
                                           params=params or {})
        request.headers["Host"] = host
        for name, value in headers:
            request.headers[name] = value  # HTTPHeaders appends: a repeated name is kept twice
        if unsigned:
            request.context["client_config"] = bc.config.Config(s3={"payload_signing_enabled": False})
        credentials = bc.credentials.Credentials(akid, secret, token)
        captured = {}

        class Capturing(bc.auth.S3SigV4Auth):
            def canonical_request(self, req):
                captured["cr"] = super().canonical_request(req)
                return captured["cr"]

        Capturing(credentials, "s3", region).add_auth(request)
        amz_date = request.headers["X-Amz-Date"]

        fields = ["method=" + hexs("PUT"), "path=" + hexs(path), "region=" + hexs(region), "service=" + hexs("s3"),
                  "date=" + hexs(amz_date), "akid=" + hexs(akid), "secret=" + hexs(secret), "body=" + hexs(body)]
        if token:
            fields.append("token=" + hexs(token))
        if unsigned:
            fields.append("unsigned=")
        for name, value in [("Host", host)] + list(headers):
            fields.append("header=%s:%s" % (hexs(name), hexs(value)))
        for name, value in (params or {}).items():
            fields.append("query=%s:%s" % (hexs(name), hexs(value)))
        self.tool_lines.append(" ".join(fields))
        self.expected.append({"authorization": request.headers["Authorization"], "path": url_path,
                              "sha": request.headers["X-Amz-Content-SHA256"], "cr": captured["cr"],
                              "what": "PUT %r host=%r headers=%r token=%s unsigned=%s params=%r body=%d bytes" % (
                                  path, host, headers, bool(token), unsigned, params, len(body))})

    def check(self, test):
        test.assertTrue(os.access(SIGN_TOOL, os.X_OK), "the signing tool %s is not built" % SIGN_TOOL)
        proc = subprocess.run([SIGN_TOOL], input=("\n".join(self.tool_lines) + "\n").encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120)
        wt.assert_no_sanitizer_report(proc.stderr.decode("utf-8", "replace"))
        test.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        results = proc.stdout.decode("utf-8").split("\n")[:-1]
        test.assertEqual(len(results), len(self.expected))
        for result, expected in zip(results, self.expected):
            fields = result.split("\t")
            test.assertEqual(fields[0], "ok", "weir refused: %s (%s)" % (result, expected["what"]))
            _, authorization, path, _query, sha, cr_hex = fields
            cr = bytes.fromhex(cr_hex).decode("utf-8")
            test.assertEqual(cr, expected["cr"], "canonical requests differ for %s" % expected["what"])
            test.assertEqual(authorization, expected["authorization"], expected["what"])
            test.assertEqual(path, expected["path"], expected["what"])
            test.assertEqual(sha, expected["sha"], expected["what"])
        return len(results)


def credentials(rng, with_token):
    akid = "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(40))
    token = None
    if with_token:
        token = "".join(rng.choice(string.ascii_letters + string.digits + "+/=") for _ in range(rng.randint(16, 400)))
    return akid, secret, token


class SigV4BotocoreTest(unittest.TestCase):
    def setUp(self):
        self.botocore = import_botocore()
        seed = int(os.environ.get("WEIR_SIGV4_SEED", random.SystemRandom().randrange(1 << 32)))
        sys.stderr.write("WEIR_SIGV4_SEED=%d\n" % seed)
        self.rng = random.Random(seed)

    def test_random_puts(self):
        """400 random PUTs: random keys, headers, bodies, regions and credentials, half of them with a token."""
        rng = self.rng
        signer = Signer(self.botocore)
        for i in range(400):
            headers = [("Content-Type", rng.choice(["image/jpeg", "image/png", "application/octet-stream",
                                                    "text/plain; charset=utf-8"]))]
            for _ in range(rng.randint(0, 4)):
                name = random_name(rng)
                headers.append((name, random_value(rng)))
                if rng.random() < 0.15:
                    headers.append((name, random_value(rng)))  # the same name again
            body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, rng.randint(2, 3000)])))
            headers.append(("Content-Length", str(len(body))))
            rng.shuffle(headers)
            akid, secret, token = credentials(rng, i % 2 == 1)
            signer.add("/%s/%s%s" % (rng.choice(["images", "my.bucket", "b-1"]), rng.choice(["", "uploads/"]),
                                     random_key(rng)),
                       rng.choice(["127.0.0.1:4569", "s3.amazonaws.com", "localhost:9000", "[::1]:9000"]),
                       rng.choice(["http", "https"]), headers, body,
                       rng.choice(["us-east-1", "eu-west-3", "us-gov-west-1", "garage"]), akid, secret, token,
                       unsigned=rng.random() < 0.1)
        self.assertEqual(signer.check(self), 400)

    def test_edge_keys(self):
        """Each awkward key alone, with a body and without, with a token and without."""
        keys = [" ", "a b", "+", "a+b", "~", "~a~", "/", "a/b", "a//b", "//", "/lead", "trail/", "%", "%20", "%2F",
                "100%", ".", "..", "./a/../b", "caf\u00e9", "\u65e5\u672c\u8a9e/\U0001f408.jpg", "\u0434\u0430",
                "*", "!'()", "=&?#", "a;b,c:d@e", "$", "\"q\"", "back\\slash", "tab\tkey", "ctl\x01\x7f"]
        signer = Signer(self.botocore)
        for i, key in enumerate(keys):
            for with_token in (False, True):
                akid, secret, token = credentials(self.rng, with_token)
                signer.add("/images/" + key, "127.0.0.1:4569", "http", [("Content-Type", "image/jpeg")],
                           b"" if i % 2 else b"\x00\xffbody", "us-east-1", akid, secret, token)
        self.assertEqual(signer.check(self), 2 * len(keys))

    def test_header_whitespace_and_query(self):
        """Values made of whitespace, tabs inside values, and query parameters with awkward names and values."""
        signer = Signer(self.botocore)
        akid, secret, token = credentials(self.rng, True)
        values = ["", " ", "\t", " a ", "a  b", "a\t\tb", " \t a \t b \t ", "\"a   b   c\"", "x" * 3000]
        for value in values:
            signer.add("/b/k", "s3.amazonaws.com", "https", [("X-Amz-Meta-V", value), ("x-amz-meta-v", " 2 ")], b"x",
                       "us-east-1", akid, secret, token)
        for params in [{"uploads": ""}, {"partNumber": "1", "uploadId": "a/b+c d"}, {"a b": "\u00e9", "a+b": "~"},
                       {"x-id": "PutObject"}]:
            signer.add("/b/k", "s3.amazonaws.com", "https", [], b"", "us-east-1", akid, secret, None, params=params)
        self.assertEqual(signer.check(self), len(values) + 4)


if __name__ == "__main__":
    unittest.main()
