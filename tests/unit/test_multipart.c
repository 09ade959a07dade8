/* multipart/form-data: what curl -F sends (bytes captured from curl 7.88.1 on a socket), boundaries quoted and not,
 * boundary-like text inside parts, preambles and epilogues, missing final boundaries, extra and repeated parts, CRLF
 * against bare LF, header limits, empty parts, parts without Content-Disposition, filename*, binary bodies. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "unit.h"
#include "weir/common.h"
#include "weir/multipart.h"

static h2o_mem_pool_t pool;

static int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

/* `curl -F image=@cat.jpg http://.../upload`, cat.jpg holding NULs, CRLF and "--" */
static const char CURL1_CT[] = "multipart/form-data; boundary=------------------------a98e5492d18a78b9";
static const char CURL1_BODY[] = "--------------------------a98e5492d18a78b9\r\n"
                                 "Content-Disposition: form-data; name=\"image\"; filename=\"cat.jpg\"\r\n"
                                 "Content-Type: image/jpeg\r\n"
                                 "\r\n"
                                 "\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n"
                                 "--\r\n"
                                 "\x00\x01\x02\xff\xd9\r\n"
                                 "--------------------------a98e5492d18a78b9--\r\n";
/* `curl -F 'image=@cat.jpg;type=image/jpeg' -F 'title=a "quoted" \ title' -F 'empty=' ...` */
static const char CURL2_CT[] = "multipart/form-data; boundary=------------------------38f54f88d5fa21c6";
static const char CURL2_BODY[] = "--------------------------38f54f88d5fa21c6\r\n"
                                 "Content-Disposition: form-data; name=\"image\"; filename=\"cat.jpg\"\r\n"
                                 "Content-Type: image/jpeg\r\n"
                                 "\r\n"
                                 "\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n"
                                 "--\r\n"
                                 "\x00\x01\x02\xff\xd9\r\n"
                                 "--------------------------38f54f88d5fa21c6\r\n"
                                 "Content-Disposition: form-data; name=\"title\"\r\n"
                                 "\r\n"
                                 "a \"quoted\" \\ title\r\n"
                                 "--------------------------38f54f88d5fa21c6\r\n"
                                 "Content-Disposition: form-data; name=\"empty\"\r\n"
                                 "\r\n"
                                 "\r\n"
                                 "--------------------------38f54f88d5fa21c6--\r\n";
/* `curl -F 'image=@"we\"ird\\name.jpg"' ...`: curl sends '"' as %22 and '\' raw (the HTML rule) */
static const char CURL3_CT[] = "multipart/form-data; boundary=------------------------d9d1b0ef163dc69f";
static const char CURL3_BODY[] = "--------------------------d9d1b0ef163dc69f\r\n"
                                 "Content-Disposition: form-data; name=\"image\"; filename=\"we%22ird\\name.jpg\"\r\n"
                                 "Content-Type: image/jpeg\r\n"
                                 "\r\n"
                                 "\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n"
                                 "--\r\n"
                                 "\x00\x01\x02\xff\xd9\r\n"
                                 "--------------------------d9d1b0ef163dc69f--\r\n";
static const char CAT_JPG[] = "\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--\r\n\x00\x01\x02\xff\xd9";

#define CT "multipart/form-data; boundary=XyZ"
#define MAX_TEST_PARTS (WEIR_MULTIPART_MAX_PARTS + 2)

static weir_multipart_part_t parts[MAX_TEST_PARTS];
static size_t num_parts;
static const char *reason;

/* Parses the whole body into parts[]; returns what weir_multipart_init or the last weir_multipart_next returned. */
static int parse_all(const char *ct, const char *body, size_t len)
{
    weir_multipart_t mp;
    int ret;

    num_parts = 0;
    reason = NULL;
    if ((ret = weir_multipart_init(&mp, ct, strlen(ct), body, len)) != 0) {
        reason = mp.reason;
        assert_non_null(reason);
        return ret;
    }
    assert_null(mp.reason);
    while ((ret = weir_multipart_next(&mp, &pool, parts + num_parts)) == 1) {
        assert_true(num_parts < MAX_TEST_PARTS);
        /* no copies: the content is a range of the input */
        assert_true(parts[num_parts].body.base >= body && parts[num_parts].body.base + parts[num_parts].body.len <= body + len);
        ++num_parts;
    }
    reason = mp.reason;
    if (ret != 0) {
        assert_non_null(reason);
        assert_int_equal(weir_multipart_next(&mp, &pool, parts + num_parts), ret); /* errors are sticky */
    } else {
        assert_null(reason);
        assert_int_equal(weir_multipart_next(&mp, &pool, parts + num_parts), 0);
    }
    return ret;
}

#define parse_lit(ct, lit) parse_all((ct), (lit), sizeof(lit) - 1)

static void assert_iov(h2o_iovec_t v, const char *expected, size_t len)
{
    assert_non_null(v.base);
    assert_int_equal(v.len, len);
    assert_memory_equal(v.base, expected, len);
}

#define assert_iov_lit(v, lit) assert_iov((v), (lit), sizeof(lit) - 1)

static void assert_fails(const char *ct, const char *body, size_t len, int expected_ret, const char *expected_reason)
{
    int ret = parse_all(ct, body, len);
    if (ret != expected_ret || strcmp(reason, expected_reason) != 0) {
        print_error("got %d \"%s\", expected %d \"%s\" for:\n%.*s\n", ret, reason != NULL ? reason : "(null)", expected_ret,
                    expected_reason, (int)len, body);
        fail();
    }
}

#define assert_fails_lit(ct, lit, ret, why) assert_fails((ct), (lit), sizeof(lit) - 1, (ret), (why))

static void test_curl_single_file(void **state)
{
    weir_multipart_part_t part;
    const char *why = NULL;

    assert_int_equal(parse_lit(CURL1_CT, CURL1_BODY), 0);
    assert_int_equal(num_parts, 1);
    assert_iov_lit(parts[0].name, "image");
    assert_iov_lit(parts[0].filename, "cat.jpg");
    assert_iov_lit(parts[0].content_type, "image/jpeg");
    assert_iov_lit(parts[0].body, CAT_JPG);

    assert_int_equal(
        weir_multipart_find(&pool, CURL1_CT, sizeof(CURL1_CT) - 1, CURL1_BODY, sizeof(CURL1_BODY) - 1, "image", &part, &why), 0);
    assert_iov_lit(part.body, CAT_JPG);
    assert_true(part.body.base > CURL1_BODY && part.body.base < CURL1_BODY + sizeof(CURL1_BODY));
}

static void test_curl_fields(void **state)
{
    weir_multipart_part_t part;
    const char *why = NULL;

    assert_int_equal(parse_lit(CURL2_CT, CURL2_BODY), 0);
    assert_int_equal(num_parts, 3);
    assert_iov_lit(parts[0].name, "image");
    assert_iov_lit(parts[0].body, CAT_JPG);
    assert_iov_lit(parts[1].name, "title");
    assert_null(parts[1].filename.base);
    assert_null(parts[1].content_type.base);
    assert_iov_lit(parts[1].body, "a \"quoted\" \\ title");
    assert_iov_lit(parts[2].name, "empty");
    assert_int_equal(parts[2].body.len, 0);

    assert_int_equal(
        weir_multipart_find(&pool, CURL2_CT, sizeof(CURL2_CT) - 1, CURL2_BODY, sizeof(CURL2_BODY) - 1, "title", &part, &why), 0);
    assert_iov_lit(part.body, "a \"quoted\" \\ title");
}

static void test_curl_quoted_filename(void **state)
{
    assert_int_equal(parse_lit(CURL3_CT, CURL3_BODY), 0);
    assert_int_equal(num_parts, 1);
    assert_iov_lit(parts[0].filename, "we%22ird\\name.jpg"); /* as sent: the backslash is the name's own */
    assert_iov_lit(parts[0].body, CAT_JPG);
}

static const char SIMPLE[] = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nhello\r\n--XyZ--\r\n";

static void test_boundary_parsing(void **state)
{
    static const char *const good_ct[] = {
        CT,
        "multipart/form-data; boundary=\"XyZ\"",
        "Multipart/Form-Data; BOUNDARY=XyZ",
        "multipart/form-data;charset=utf-8;boundary=XyZ",
        "  multipart/form-data ; charset=\"utf-8\" ;  boundary=XyZ ;",
        "multipart/form-data;; boundary=XyZ",
        "multipart/form-data; boundary = XyZ",
    };
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(good_ct); ++i) {
        if (parse_lit(good_ct[i], SIMPLE) != 0) {
            print_error("%s: %s\n", good_ct[i], reason);
            fail();
        }
        assert_int_equal(num_parts, 1);
        assert_iov_lit(parts[0].body, "hello");
    }

    /* a quoted boundary with spaces and the other bchars, and the longest one */
    assert_int_equal(parse_lit("multipart/form-data; boundary=\"a b'()+_,-./:=?z\"",
                               "--a b'()+_,-./:=?z\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--a b'()+_,-./:=?z--"),
                     0);
    assert_iov_lit(parts[0].body, "v");
    char ct[160], body[400];
    char b70[71];
    memset(b70, 'b', 70);
    b70[70] = '\0';
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", b70);
    snprintf(body, sizeof(body), "--%s\r\nContent-Disposition: form-data; name=x\r\n\r\nv\r\n--%s--\r\n", b70, b70);
    assert_int_equal(parse_all(ct, body, strlen(body)), 0);
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%sb", b70);
    assert_fails(ct, body, strlen(body), -EINVAL, "multipart boundary is not 1 to 70 valid characters");

    static const struct {
        const char *ct, *reason;
    } bad[] = {
        {"", "malformed Content-Type"},
        {"multipart", "malformed Content-Type"},
        {"multipart/", "malformed Content-Type"},
        {"text/plain; boundary=XyZ", "Content-Type is not multipart/form-data"},
        {"multipart/mixed; boundary=XyZ", "Content-Type is not multipart/form-data"},
        {"multipart/form-datax; boundary=XyZ", "Content-Type is not multipart/form-data"},
        {"multipart/form-data", "Content-Type has no multipart boundary"},
        {"multipart/form-data; charset=utf-8", "Content-Type has no multipart boundary"},
        {"multipart/form-data; boundary=XyZ; boundary=XyZ", "multipart boundary given twice"},
        {"multipart/form-data; boundary=", "malformed Content-Type"},
        {"multipart/form-data; boundary=\"\"", "multipart boundary is not 1 to 70 valid characters"},
        {"multipart/form-data; boundary=\"XyZ \"", "multipart boundary is not 1 to 70 valid characters"},
        {"multipart/form-data; boundary=\"X@Z\"", "multipart boundary is not 1 to 70 valid characters"},
        {"multipart/form-data; boundary=X$Z", "multipart boundary is not 1 to 70 valid characters"},
        {"multipart/form-data; boundary=\"X\\\"Z\"", "malformed Content-Type"}, /* an escape: never a bchar */
        {"multipart/form-data; boundary=\"XyZ", "malformed Content-Type"},
        {"multipart/form-data; boundary=XyZ garbage", "malformed Content-Type"},
        {"multipart/form-data boundary=XyZ", "malformed Content-Type"},
    };
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad); ++i)
        assert_fails_lit(bad[i].ct, SIMPLE, -EINVAL, bad[i].reason);
}

static void test_is_form_data(void **state)
{
    static const char *const yes[] = {"multipart/form-data", "multipart/form-data; boundary=x", " Multipart/FORM-DATA ;x=y",
                                      "multipart/form-data;"};
    static const char *const no[] = {"",           "multipart/mixed; boundary=x", "multipart/form-datax", "multipart/",
                                     "/form-data", "application/octet-stream",    "image/jpeg",           "multipart / form-data"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(yes); ++i)
        assert_true(weir_multipart_is_form_data(yes[i], strlen(yes[i])));
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(no); ++i)
        assert_false(weir_multipart_is_form_data(no[i], strlen(no[i])));
}

/* Text that looks like a boundary but is not a delimiter line (CRLF "--" boundary, then padding and CRLF, or "--") is
 * content; a full "CRLF--boundary" followed by something else is refused (RFC 2046: the delimiter must not occur in a
 * part; a body that has one is ambiguous). */
static void test_boundary_like_text_in_body(void **state)
{
    assert_int_equal(parse_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n"
                                   "--XyZ at the start of the content, not after a CRLF\r\n"
                                   "-XyZ\r\n"
                                   "\r\n--Xy\r\n"
                                   "\r\n--xyz\r\n"
                                   "a --XyZ-- b\n--XyZ\r\n"
                                   "\r\n--XyZ--\r\n"),
                     0);
    assert_int_equal(num_parts, 1);
    assert_iov_lit(parts[0].body, "--XyZ at the start of the content, not after a CRLF\r\n-XyZ\r\n\r\n--Xy\r\n\r\n--xyz\r\n"
                                  "a --XyZ-- b\n--XyZ\r\n");

    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZX\r\ny\r\n--XyZ--\r\n", -EINVAL,
                     "multipart boundary followed by unexpected bytes");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ--XyZ--\r\n", -EINVAL,
                     "unexpected bytes after the final multipart boundary");
    assert_fails_lit(CT, "--XyZX\r\n--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ--\r\n", -EINVAL,
                     "multipart boundary followed by unexpected bytes");
}

static void test_missing_final_boundary(void **state)
{
    static const char *const truncated[] = {
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ\r",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ\r\n",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n",
        "--XyZ\r\nContent-Disposition: form-data; name=a\r",
        "--XyZ\r\nContent-Disposition: form-data; name=a",
        "--XyZ\r\n",
        "--XyZ",
        "--XyZ\r",
    };
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(truncated); ++i)
        assert_fails(CT, truncated[i], strlen(truncated[i]), -EINVAL, "multipart body has no final boundary");
    /* and the captured request cut anywhere before its final boundary */
    for (size_t len = 0; len < sizeof(CURL1_BODY) - 1 - 4; ++len) {
        int ret = parse_all(CURL1_CT, CURL1_BODY, len);
        assert_int_equal(ret, -EINVAL);
    }
    /* the final boundary without its CRLF is complete */
    assert_int_equal(parse_all(CURL1_CT, CURL1_BODY, sizeof(CURL1_BODY) - 1 - 2), 0);
}

static void test_preamble_and_epilogue(void **state)
{
    assert_int_equal(parse_lit(CT, "This is the preamble, ignored (--XyZ is not at a line start here).\r\n"
                                   "--XyZ \t\r\n" /* transport padding */
                                   "Content-Disposition: form-data; name=image\r\n\r\n"
                                   "data\r\n"
                                   "--XyZ--  \t\r\n"
                                   "This is the epilogue, ignored, even\r\n--XyZ\r\nwhich looks like a part.\r\n"),
                     0);
    assert_int_equal(num_parts, 1);
    assert_iov_lit(parts[0].body, "data");
    assert_int_equal(parse_lit(CT, "\r\n--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ--"), 0);
    assert_iov_lit(parts[0].body, "data");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ--epilogue", -EINVAL,
                     "unexpected bytes after the final multipart boundary");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ-- x", -EINVAL,
                     "unexpected bytes after the final multipart boundary");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\ndata\r\n--XyZ--\r", -EINVAL,
                     "unexpected bytes after the final multipart boundary");
    assert_fails_lit(CT, "--XyZ--\r\n", -EINVAL, "multipart body has no parts");
    assert_fails_lit(CT, "preamble\r\n--XyZ--", -EINVAL, "multipart body has no parts");
    assert_fails_lit(CT, "", -EINVAL, "multipart body has no boundary line");
    assert_fails_lit(CT, "just text", -EINVAL, "multipart body has no boundary line");
    assert_fails_lit(CT, "preamble--XyZ\r\n", -EINVAL, "multipart body has no boundary line");
}

static const char THREE[] = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nT\r\n"
                            "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
                            "Content-Type: image/png\r\n\r\nPNG\r\n"
                            "--XyZ\r\nContent-Disposition: form-data; name=\"Image\"\r\n\r\nother\r\n--XyZ--\r\n";

static void test_extra_parts_and_duplicates(void **state)
{
    weir_multipart_part_t part;
    const char *why = NULL;

    /* extra parts are fine; names are case-sensitive */
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), THREE, sizeof(THREE) - 1, "image", &part, &why), 0);
    assert_iov_lit(part.body, "PNG");
    assert_iov_lit(part.filename, "a.png");
    assert_iov_lit(part.content_type, "image/png");
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), THREE, sizeof(THREE) - 1, "Image", &part, &why), 0);
    assert_iov_lit(part.body, "other");
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), THREE, sizeof(THREE) - 1, "missing", &part, &why), -ENOENT);
    assert_string_equal(why, "multipart body has no part with the expected name");
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), THREE, sizeof(THREE) - 1, "", &part, &why), -ENOENT);

    /* the same name twice: refused, whatever else is there */
    static const char twice[] = "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n1\r\n"
                                "--XyZ\r\nContent-Disposition: form-data; name=title\r\n\r\nt\r\n"
                                "--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n2\r\n--XyZ--\r\n";
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), twice, sizeof(twice) - 1, "image", &part, &why), -EEXIST);
    assert_string_equal(why, "multipart field given more than once");
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), twice, sizeof(twice) - 1, "title", &part, &why), 0);
    assert_iov_lit(part.body, "t");

    /* a malformed body is an error even when the part asked for came before the defect */
    static const char late[] = "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\n1\r\n"
                               "--XyZ\r\nContent-Type: text/plain\r\n\r\n2\r\n--XyZ--\r\n";
    assert_int_equal(weir_multipart_find(&pool, CT, strlen(CT), late, sizeof(late) - 1, "image", &part, &why), -EINVAL);
    assert_string_equal(why, "multipart part has no Content-Disposition");
    /* and find reports init's errors too */
    assert_int_equal(weir_multipart_find(&pool, "text/plain", 10, late, sizeof(late) - 1, "image", &part, &why), -EINVAL);
    assert_string_equal(why, "Content-Type is not multipart/form-data");
    assert_int_equal(weir_multipart_find(&pool, "text/plain", 10, late, sizeof(late) - 1, "image", &part, NULL), -EINVAL);
}

/* CRLF is required outside part contents; inside them, bytes are bytes. */
static void test_crlf_vs_lf(void **state)
{
    assert_fails_lit(CT, "--XyZ\nContent-Disposition: form-data; name=image\n\nhello\n--XyZ--\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "preamble\n--XyZ\nContent-Disposition: form-data; name=image\n\nhello\n--XyZ--\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\n\r\nhello\r\n--XyZ--\r\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\nhello\r\n--XyZ--\r\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data;\r name=image\r\n\r\nhello\r\n--XyZ--\r\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\nhello\r\n--XyZ\n--XyZ--\r\n", -EINVAL,
                     "multipart line endings must be CRLF");
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\nhello\r\n--XyZ--\n", -EINVAL,
                     "multipart line endings must be CRLF");
    /* a final boundary preceded by a bare LF is not one */
    assert_fails_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\nhello\n--XyZ--\r\n", -EINVAL,
                     "multipart body has no final boundary");
    assert_int_equal(parse_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=image\r\n\r\nline1\nline2\r\rline3\n\r\n--XyZ--"),
                     0);
    assert_iov_lit(parts[0].body, "line1\nline2\r\rline3\n");
}

static void test_huge_headers(void **state)
{
    static char body[3 * WEIR_MULTIPART_MAX_HEADER_BYTES];
    static const char disposition[] = "Content-Disposition: form-data; name=image\r\n";
    size_t n;

    /* one header line longer than the limit */
    n = (size_t)snprintf(body, sizeof(body), "--XyZ\r\n%sX-Long: ", disposition);
    memset(body + n, 'a', WEIR_MULTIPART_MAX_HEADER_BYTES);
    n += WEIR_MULTIPART_MAX_HEADER_BYTES;
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\r\n\r\nx\r\n--XyZ--\r\n");
    assert_fails(CT, body, n, -E2BIG, "multipart part headers are too large");

    /* a header block of exactly the limit passes, one byte more does not */
    for (int extra = 0; extra != 2; ++extra) {
        size_t fixed = strlen(disposition) + strlen("X-Pad: ") + 2 + 2; /* + the line's CRLF + the empty line */
        size_t pad = WEIR_MULTIPART_MAX_HEADER_BYTES - fixed + (size_t)extra;
        n = (size_t)snprintf(body, sizeof(body), "--XyZ\r\n%sX-Pad: ", disposition);
        memset(body + n, 'p', pad);
        n += pad;
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\r\n\r\nx\r\n--XyZ--\r\n");
        if (extra == 0) {
            assert_int_equal(parse_all(CT, body, n), 0);
            assert_iov_lit(parts[0].body, "x");
        } else {
            assert_fails(CT, body, n, -E2BIG, "multipart part headers are too large");
        }
    }

    /* WEIR_MULTIPART_MAX_HEADERS lines pass, one more does not */
    for (int extra = 0; extra != 2; ++extra) {
        n = (size_t)snprintf(body, sizeof(body), "--XyZ\r\n%s", disposition);
        for (int i = 1; i != WEIR_MULTIPART_MAX_HEADERS + extra; ++i)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "X-H%d: v\r\n", i);
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\r\nx\r\n--XyZ--\r\n");
        if (extra == 0)
            assert_int_equal(parse_all(CT, body, n), 0);
        else
            assert_fails(CT, body, n, -E2BIG, "multipart part has too many headers");
    }

    /* a body that never ends its headers: the limit stops the scan */
    n = (size_t)snprintf(body, sizeof(body), "--XyZ\r\n");
    memset(body + n, 'h', sizeof(body) - n);
    assert_fails(CT, body, sizeof(body), -E2BIG, "multipart part headers are too large");
}

static void test_empty_parts(void **state)
{
    assert_int_equal(parse_lit(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\n\r\n"
                                   "--XyZ\r\nContent-Disposition: form-data; name=image; filename=\"\"\r\n"
                                   "Content-Type: application/octet-stream\r\n\r\n\r\n--XyZ--\r\n"),
                     0);
    assert_int_equal(num_parts, 2);
    assert_int_equal(parts[0].name.len, 0);
    assert_int_equal(parts[0].body.len, 0);
    assert_iov_lit(parts[1].name, "image");
    assert_int_equal(parts[1].filename.len, 0);
    assert_non_null(parts[1].filename.base); /* present, empty */
    assert_int_equal(parts[1].body.len, 0);
}

static void test_part_headers(void **state)
{
    static const struct {
        const char *headers, *reason;
    } bad[] = {
        {"", "multipart part has no Content-Disposition"},
        {"Content-Type: image/png\r\n", "multipart part has no Content-Disposition"},
        {"Content-Disposition: attachment; name=image\r\n", "multipart Content-Disposition is not form-data"},
        {"Content-Disposition: form-data\r\n", "multipart part has no name"},
        {"Content-Disposition: form-data; filename=a.jpg\r\n", "multipart part has no name"},
        {"Content-Disposition: form-data; name*=UTF-8''image\r\n", "multipart part has no name"},
        {"Content-Disposition:\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: ;name=image\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data; name=\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data; name=\"image\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data; name=\"image\"x\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data; name=im age\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data name=image\r\n", "malformed multipart Content-Disposition"},
        {"Content-Disposition: form-data; name=a; NAME=b\r\n", "multipart Content-Disposition parameter given twice"},
        {"Content-Disposition: form-data; name=a; filename=x; Filename=y\r\n",
         "multipart Content-Disposition parameter given twice"},
        {"Content-Disposition: form-data; name=a\r\nContent-Disposition: form-data; name=a\r\n",
         "multipart part header given twice"},
        {"Content-Disposition: form-data; name=a\r\nContent-Type: a/b\r\ncontent-type: a/b\r\n",
         "multipart part header given twice"},
        {"Content-Disposition: form-data; name=a\r\nContent-Type:  \r\n", "empty multipart part Content-Type"},
        {"Content-Disposition: form-data; name=a\r\nContent-Transfer-Encoding: base64\r\n",
         "unsupported multipart Content-Transfer-Encoding"},
        {"Content-Disposition: form-data;\r\n name=a\r\n", "folded multipart part headers are not supported"},
        {"Content-Disposition: form-data; name=a\r\n\tX-Folded: y\r\n", "folded multipart part headers are not supported"},
        {"Content-Disposition: form-data; name=a\r\nNo-Colon\r\n", "malformed multipart part header"},
        {"Content-Disposition: form-data; name=a\r\nContent-Type : a/b\r\n", "malformed multipart part header"},
        {": value\r\nContent-Disposition: form-data; name=a\r\n", "malformed multipart part header"},
        {"Content-Disposition: form-data; name=a\r\nX-Ctl: a\x01b\r\n", "malformed multipart part header"},
        {"Content-Disposition: form-data; name=a\r\nX-Del: a\x7f\r\n", "malformed multipart part header"},
    };
    char body[512];
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad); ++i) {
        int n = snprintf(body, sizeof(body), "--XyZ\r\n%s\r\ncontent\r\n--XyZ--\r\n", bad[i].headers);
        assert_fails(CT, body, (size_t)n, -EINVAL, bad[i].reason);
    }
    /* a NUL in a header */
    static const char nul[] = "--XyZ\r\nContent-Disposition: form-data; name=a\r\nX-Nul: a\0b\r\n\r\nc\r\n--XyZ--\r\n";
    assert_fails_lit(CT, nul, -EINVAL, "malformed multipart part header");

    /* accepted: other headers ignored, 7bit/8bit/binary, trailing spaces trimmed, obs-text in values */
    assert_int_equal(parse_lit(CT, "--XyZ\r\nX-Whatever: 1\r\nContent-Transfer-Encoding: Binary\r\n"
                                   "content-disposition:form-data;name=a;filename=\"caf\xc3\xa9.jpg\"   \r\n"
                                   "CONTENT-TYPE:   image/jpeg; q=\"1\"  \t\r\n\r\nc\r\n--XyZ--\r\n"),
                     0);
    assert_iov_lit(parts[0].name, "a");
    assert_iov_lit(parts[0].filename, "caf\xc3\xa9.jpg");
    assert_iov_lit(parts[0].content_type, "image/jpeg; q=\"1\"");
}

/* Content-Disposition parameters: any order, names case-insensitive, token or quoted-string values, \" and \\ the
 * only escapes, filename* ignored. */
static void test_disposition_parameters(void **state)
{
    static const struct {
        const char *disposition, *name, *filename; /* filename NULL: none */
    } good[] = {
        {"form-data; name=\"image\"; filename=\"cat.jpg\"", "image", "cat.jpg"},
        {"FORM-DATA; FILENAME=\"cat.jpg\"; NAME=\"image\"", "image", "cat.jpg"},
        {"Form-Data;name=image;filename=cat.jpg", "image", "cat.jpg"},
        {"form-data ; name = \"image\" ; filename = cat.jpg ;", "image", "cat.jpg"},
        {"form-data;; name=image", "image", NULL},
        {"form-data; name=\"a\\\"b\\\\c\"", "a\"b\\c", NULL},
        {"form-data; name=image; filename=\"C:\\photos\\cat.jpg\"", "image", "C:\\photos\\cat.jpg"},
        {"form-data; name=image; filename=\"a;b=c\"", "image", "a;b=c"},
        {"form-data; name=image; filename=\"\\\\\"", "image", "\\"},
        {"form-data; name=image; filename*=UTF-8''%e2%82%ac.jpg", "image", NULL},
        {"form-data; name=image; filename*=UTF-8''%e2%82%ac.jpg; filename=\"euro.jpg\"", "image", "euro.jpg"},
        {"form-data; name=image; size=10; creation-date=\"Wed, 12 Feb 1997 16:29:51 -0500\"", "image", NULL},
    };
    char body[512];
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(good); ++i) {
        int n = snprintf(body, sizeof(body), "--XyZ\r\nContent-Disposition: %s\r\n\r\nc\r\n--XyZ--\r\n", good[i].disposition);
        if (parse_all(CT, body, (size_t)n) != 0) {
            print_error("%s: %s\n", good[i].disposition, reason);
            fail();
        }
        assert_iov(parts[0].name, good[i].name, strlen(good[i].name));
        if (good[i].filename != NULL)
            assert_iov(parts[0].filename, good[i].filename, strlen(good[i].filename));
        else
            assert_null(parts[0].filename.base);
    }
    /* a value without escapes points into the input; one with escapes is a copy */
    int n = snprintf(body, sizeof(body),
                     "--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename=\"f\"\r\n\r\nc\r\n--XyZ--");
    assert_int_equal(parse_all(CT, body, (size_t)n), 0);
    assert_true(parts[0].name.base < body || parts[0].name.base >= body + n);
    assert_true(parts[0].filename.base > body && parts[0].filename.base < body + n);
}

/* Binary content: every byte value, NULs, CR and LF, and "--" runs. */
static void test_binary_body(void **state)
{
    static char body[1024], content[600];
    size_t n, clen = 0;

    for (int i = 0; i != 256; ++i)
        content[clen++] = (char)i;
    static const char tricky[] = "\0\0\r\n\r\n--\r\n-\r\n--X\r\n--Xy\0\r\n-XyZ\r--XyZ\n--XyZ\0--XyZ";
    memcpy(content + clen, tricky, sizeof(tricky) - 1);
    clen += sizeof(tricky) - 1;
    for (int i = 0; i != 256; ++i)
        content[clen++] = (char)(255 - i);
    n = (size_t)snprintf(body, sizeof(body),
                         "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.bin\"\r\n"
                         "Content-Type: application/octet-stream\r\n\r\n");
    memcpy(body + n, content, clen);
    n += clen;
    memcpy(body + n, "\r\n--XyZ--\r\n", 11);
    n += 11;
    assert_int_equal(parse_all(CT, body, n), 0);
    assert_int_equal(num_parts, 1);
    assert_iov(parts[0].body, content, clen);
}

static void test_too_many_parts(void **state)
{
    static char body[WEIR_MULTIPART_MAX_PARTS * 64 + 64];
    for (int extra = 0; extra != 2; ++extra) {
        size_t n = 0;
        for (int i = 0; i != WEIR_MULTIPART_MAX_PARTS + extra; ++i)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "--XyZ\r\nContent-Disposition: form-data; name=f%d\r\n\r\n%d\r\n", i,
                                  i);
        n += (size_t)snprintf(body + n, sizeof(body) - n, "--XyZ--\r\n");
        if (extra == 0) {
            assert_int_equal(parse_all(CT, body, n), 0);
            assert_int_equal(num_parts, WEIR_MULTIPART_MAX_PARTS);
            assert_iov_lit(parts[WEIR_MULTIPART_MAX_PARTS - 1].name, "f63");
        } else {
            assert_fails(CT, body, n, -E2BIG, "multipart body has too many parts");
        }
    }
}

WEIR_UNIT_TESTS(cmocka_unit_test_setup_teardown(test_curl_single_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_curl_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_curl_quoted_filename, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boundary_parsing, setup, teardown), cmocka_unit_test(test_is_form_data),
                cmocka_unit_test_setup_teardown(test_boundary_like_text_in_body, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_final_boundary, setup, teardown),
                cmocka_unit_test_setup_teardown(test_preamble_and_epilogue, setup, teardown),
                cmocka_unit_test_setup_teardown(test_extra_parts_and_duplicates, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crlf_vs_lf, setup, teardown),
                cmocka_unit_test_setup_teardown(test_huge_headers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_parts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_part_headers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_disposition_parameters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_binary_body, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_many_parts, setup, teardown))
