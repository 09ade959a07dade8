#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "unit.h"
#include "weir/http1_guard.h"

#define MAX_BODY 1024

typedef struct st_outcome_t {
    int status;
    int error_status;
    uint64_t released;
    uint64_t requests;
    uint64_t request_start;
    uint64_t pass_at;
} outcome_t;

static outcome_t feed_in_pieces(const char *input, size_t len, size_t piece)
{
    weir_http1_guard_t g;
    outcome_t o = {0};

    weir_http1_guard_init(&g, MAX_BODY);
    for (size_t at = 0; at < len; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        o.status = weir_http1_guard_feed(&g, input + at, n);
        if (o.status != WEIR_HTTP1_GUARD_OK)
            break;
        /* released never goes back and never passes what was fed */
        assert_true(g.released <= g.offset);
    }
    o.error_status = o.status == WEIR_HTTP1_GUARD_ERROR ? g.error_status : 0;
    o.released = g.released;
    o.requests = g.requests;
    o.request_start = g.request_start;
    o.pass_at = g.pass_at;
    if (o.status == WEIR_HTTP1_GUARD_ERROR)
        assert_non_null(g.error);
    return o;
}

/* The same outcome whether the bytes come at once, one at a time, or in pieces of 2, 3 and 7. */
static outcome_t feed(const char *input, size_t len)
{
    static const size_t PIECES[] = {1, 2, 3, 7};
    outcome_t whole = feed_in_pieces(input, len, len == 0 ? 1 : len);
    for (size_t i = 0; i < sizeof(PIECES) / sizeof(PIECES[0]); ++i) {
        outcome_t o = feed_in_pieces(input, len, PIECES[i]);
        assert_int_equal(o.status, whole.status);
        assert_int_equal(o.error_status, whole.error_status);
        assert_int_equal(o.released, whole.released);
        assert_int_equal(o.requests, whole.requests);
        assert_int_equal(o.request_start, whole.request_start);
    }
    return whole;
}

#define FEED(s) feed(s, sizeof(s) - 1)

static void expect_valid(const char *input, size_t len, uint64_t requests)
{
    outcome_t o = feed(input, len);
    if (o.status != WEIR_HTTP1_GUARD_OK || o.requests != requests || o.released != len)
        fail_msg("expected %llu valid request(s), got status %d (%d), %llu request(s), released %llu of %zu: %s",
                 (unsigned long long)requests, o.status, o.error_status, (unsigned long long)o.requests,
                 (unsigned long long)o.released, len, input);
}

static void expect_error(const char *input, size_t len, int status)
{
    outcome_t o = feed(input, len);
    if (o.status != WEIR_HTTP1_GUARD_ERROR || o.error_status != status)
        fail_msg("expected error %d, got status %d (%d): %s", status, o.status, o.error_status, input);
}

#define VALID(s, n) expect_valid(s, sizeof(s) - 1, n)
#define INVALID(s, st) expect_error(s, sizeof(s) - 1, st)

static void test_valid_requests(void **state)
{
    VALID("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    VALID("GET /cache?key=k HTTP/1.0\r\n\r\n", 1); /* Host is optional in HTTP/1.0 */
    VALID("GET http://127.0.0.1/cache?key=k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1);
    VALID("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    VALID("PUT /cache?key=k HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1);
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\ncontent-length:   5  \r\n\r\nhello", 1);
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 1);
    VALID("POST /upload HTTP/1.0\r\n\r\n", 1); /* ab -m POST: no length, no body */
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 1);
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5;name=value\r\nhello\r\n000\r\nX-T: v\r\n\r\n", 1);
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;ext\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n", 1);
    /* header values may hold obs-text, tabs and inner spaces */
    VALID("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\ty \xc3\xa9\r\nX-Empty:\r\n\r\n", 1);
    /* pipelined requests */
    VALID("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 2);
    VALID("PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 2);
    /* one empty line before a request is tolerated */
    VALID("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    VALID("PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", 2);
    /* methods that start like the HTTP/2 preface */
    VALID("POST / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    VALID("PRIX / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
    VALID("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n", 1);
}

static void test_smuggling(void **state)
{
    /* conflicting and duplicate lengths */
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400);
    /* Transfer-Encoding with Content-Length, in either order */
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400);
    /* two Transfer-Encoding headers, lists, obfuscations */
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\x0b\r\n\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    /* lenient chunks */
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 3\r\n\r\n", 400);
    /* bare LF and bare CR, obs-fold, NUL */
    INVALID("GET / HTTP/1.1\nHost: a\n\n", 400);
    INVALID("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
    INVALID("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400);
    INVALID("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400);
    INVALID("GET / HTTP/1.1\r\nHost: a\r\n\tX: b\r\n\r\n", 400);
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 32, 400);
    expect_error("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 27, 400);
    /* the request line */
    INVALID("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    INVALID("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400);
    INVALID("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400);
    INVALID("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    INVALID("GET /\r\n\r\n", 400);
    INVALID("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    INVALID("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    INVALID("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    INVALID("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* Host: missing in HTTP/1.1, or twice */
    INVALID("GET / HTTP/1.1\r\n\r\n", 400);
    INVALID("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    INVALID("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
}

static void test_errors_name_the_bad_request(void **state)
{
    /* a valid request, then a bad one: the first is released, the error is at the second */
    static const char in[] = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    outcome_t o = FEED(in);
    assert_int_equal(o.status, WEIR_HTTP1_GUARD_ERROR);
    assert_int_equal(o.requests, 1);
    assert_int_equal(o.released, 28);
    assert_int_equal(o.request_start, 28);
    /* after an error, nothing more is read */
    weir_http1_guard_t g;
    weir_http1_guard_init(&g, MAX_BODY);
    assert_int_equal(weir_http1_guard_feed(&g, "GET / HTTP/1.1\n", 15), WEIR_HTTP1_GUARD_ERROR);
    uint64_t offset = g.offset;
    assert_int_equal(weir_http1_guard_feed(&g, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27), WEIR_HTTP1_GUARD_ERROR);
    assert_int_equal(g.offset, offset);
    assert_int_equal(g.error_status, 400);
    assert_string_equal(weir_http1_guard_reason(400), "Bad Request");
}

static void test_release_points(void **state)
{
    weir_http1_guard_t g;
    weir_http1_guard_init(&g, MAX_BODY);

    /* a head is released once complete */
    assert_int_equal(weir_http1_guard_feed(&g, "PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n", 46), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 0);
    assert_int_equal(weir_http1_guard_feed(&g, "\r\n", 2), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 48);
    /* a Content-Length body as it comes */
    assert_int_equal(weir_http1_guard_feed(&g, "01234", 5), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 53);
    assert_int_equal(g.requests, 0);
    assert_int_equal(weir_http1_guard_feed(&g, "56789GET", 8), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 58);
    assert_int_equal(g.requests, 1);
    assert_int_equal(g.request_start, 58);

    /* a chunked message only once it has ended, trailers included */
    weir_http1_guard_init(&g, MAX_BODY);
    static const char head[] = "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(weir_http1_guard_feed(&g, head, sizeof(head) - 1), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 0);
    assert_int_equal(weir_http1_guard_feed(&g, "3\r\nabc\r\n0\r\n", 11), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 0);
    assert_int_equal(weir_http1_guard_feed(&g, "\r\n", 2), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, sizeof(head) - 1 + 13);
    assert_int_equal(g.requests, 1);
}

static void test_limits(void **state)
{
    char *buf = malloc(200000);
    size_t len;

    /* a long target: 414 */
    len = (size_t)sprintf(buf, "GET /");
    memset(buf + len, 'a', WEIR_HTTP1_MAX_REQUEST_LINE);
    len += WEIR_HTTP1_MAX_REQUEST_LINE;
    len += (size_t)sprintf(buf + len, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_error(buf, len, 414);
    /* a target just below the limit is fine */
    len = (size_t)sprintf(buf, "GET /");
    memset(buf + len, 'a', WEIR_HTTP1_MAX_REQUEST_LINE - 16);
    len += WEIR_HTTP1_MAX_REQUEST_LINE - 16;
    len += (size_t)sprintf(buf + len, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_valid(buf, len, 1);
    /* too many fields: 431 */
    len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < WEIR_HTTP1_MAX_FIELDS; ++i)
        len += (size_t)sprintf(buf + len, "X-%d: v\r\n", i);
    len += (size_t)sprintf(buf + len, "\r\n");
    expect_error(buf, len, 431);
    /* exactly the most fields: fine */
    len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < WEIR_HTTP1_MAX_FIELDS - 1; ++i)
        len += (size_t)sprintf(buf + len, "X-%d: v\r\n", i);
    len += (size_t)sprintf(buf + len, "\r\n");
    expect_valid(buf, len, 1);
    /* one field line too long, and a head too large: 431 */
    len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + len, 'v', WEIR_HTTP1_MAX_FIELD_LINE);
    len += WEIR_HTTP1_MAX_FIELD_LINE;
    len += (size_t)sprintf(buf + len, "\r\n\r\n");
    expect_error(buf, len, 431);
    len = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 8; ++i) {
        len += (size_t)sprintf(buf + len, "X-%d: ", i);
        memset(buf + len, 'v', 5000);
        len += 5000;
        len += (size_t)sprintf(buf + len, "\r\n");
    }
    len += (size_t)sprintf(buf + len, "\r\n");
    expect_error(buf, len, 431);
    /* bodies over the maximum: 413, by length or by chunks */
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n", 413);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n", 413);
    INVALID("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", 413);
    len = (size_t)sprintf(buf, "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; ++i) {
        len += (size_t)sprintf(buf + len, "200\r\n");
        memset(buf + len, 'x', 512);
        len += 512;
        len += (size_t)sprintf(buf + len, "\r\n");
    }
    expect_error(buf, len, 413);
    free(buf);
}

static void test_http2_preface(void **state)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04";
    outcome_t o = feed(preface, sizeof(preface) - 1);
    assert_int_equal(o.status, WEIR_HTTP1_GUARD_PASS);
    assert_int_equal(o.pass_at, 0);
    assert_int_equal(o.released, 24);
    /* after an HTTP/1 request (an h2c upgrade), at a request boundary */
    static const char upgrade[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                                  "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    o = feed(upgrade, sizeof(upgrade) - 1);
    assert_int_equal(o.status, WEIR_HTTP1_GUARD_PASS);
    assert_int_equal(o.requests, 1);
    assert_int_equal(o.pass_at, sizeof(upgrade) - 1 - 24);
    /* a preface begun and not finished is held back, then read as HTTP/1 */
    weir_http1_guard_t g;
    weir_http1_guard_init(&g, MAX_BODY);
    assert_int_equal(weir_http1_guard_feed(&g, "PRI * HTTP/2", 12), WEIR_HTTP1_GUARD_OK);
    assert_int_equal(g.released, 0);
    assert_int_equal(weir_http1_guard_feed(&g, ".1\r\n", 4), WEIR_HTTP1_GUARD_ERROR);
    assert_int_equal(g.error_status, 400);
    /* not at a request boundary: inside a body it is just bytes */
    VALID("PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 24\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_valid_requests), cmocka_unit_test(test_smuggling),
                cmocka_unit_test(test_errors_name_the_bad_request), cmocka_unit_test(test_release_points),
                cmocka_unit_test(test_limits), cmocka_unit_test(test_http2_preface))
