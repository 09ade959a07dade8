/*
 * multipart/form-data (src/multipart.c). The input is the Content-Type value up to the first LF, then the body (all
 * the bytes after that LF, any bytes); an input without LF is a Content-Type with an empty body. (A Content-Type
 * h2o hands over never holds a LF.)
 *
 * Properties, beyond crashes and sanitizer reports:
 * - weir_multipart_is_form_data agrees with a reference (OWS, token "/" token, case-insensitive), and with
 *   weir_multipart_init: a type that is not multipart/form-data is refused for that reason, one that is never is;
 * - a failure gives a reason, and stays (the next call returns the same error); the end (0) stays too;
 * - every part's content is a range of the body that ends where "CRLF--boundary" starts and holds no such delimiter;
 *   parts come in order and do not overlap; the name, file name and Content-Type point into the part's own header
 *   block, or (name and file name only) are copies made because of an escape; a Content-Type has no outer blanks;
 * - at most WEIR_MULTIPART_MAX_PARTS parts, and the one after that is -E2BIG;
 * - without a pool, the parse is the same up to the first quoted value with an escape, which is then refused as a
 *   malformed Content-Disposition;
 * - weir_multipart_find agrees with the iteration, for the names of the first 8 parts and for two no part had: the part
 *   found is the one the iteration returned, -EEXIST at the first repeat, -ENOENT, or the iteration's error;
 * - the pool is cleared at the end (LeakSanitizer: nothing else is allocated).
 */
#include <errno.h>
#include <string.h>
#include "fuzz.h"
#include "weir/multipart.h"

/* Enough for every part the parser may return, and one more. */
#define MAX_SEEN (WEIR_MULTIPART_MAX_PARTS + 1)

typedef struct st_parse_t {
    weir_multipart_part_t parts[MAX_SEEN];
    size_t num_parts;
    int ret; /* init's error, or the last next's result: 0 or an error */
    const char *reason;
    char delim[4 + WEIR_MULTIPART_MAX_BOUNDARY];
    size_t delim_len;
} parse_t;

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int ref_is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && memchr(extra, c, sizeof(extra) - 1) != NULL);
}

/* The media type, the plain way: OWS, a token, "/", a token, compared without case; what follows is not looked at. */
static int ref_is_form_data(const char *s, size_t len)
{
    static const char want[] = "multipart/form-data";
    size_t i = 0, start;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        ++i;
    start = i;
    while (i < len && ref_is_tchar((unsigned char)s[i]))
        ++i;
    if (i == start || i == len || s[i] != '/')
        return 0;
    size_t type_len = i - start;
    ++i;
    size_t sub = i;
    while (i < len && ref_is_tchar((unsigned char)s[i]))
        ++i;
    if (i == sub || type_len != 9 || i - start != sizeof(want) - 1)
        return 0;
    for (size_t k = 0; k != sizeof(want) - 1; ++k)
        if (lower((unsigned char)s[start + k]) != want[k])
            return 0;
    return 1;
}

static int inside(h2o_iovec_t v, const char *lo, const char *hi)
{
    return v.base >= lo && v.base + v.len <= hi;
}

/* A name or file name: in the header block [lo, hi), or a copy (outside the body) that an escape made necessary:
 * the unescaped value then holds a '"' or a '\'. */
static void check_param(h2o_iovec_t v, const char *body, size_t body_len, const char *lo, const char *hi)
{
    if (v.base == NULL)
        return;
    if (v.base >= body && v.base < body + body_len) {
        FUZZ_CHECK(inside(v, lo, hi));
    } else {
        FUZZ_CHECK(v.base + v.len <= body || v.base >= body + body_len);
        FUZZ_CHECK(memchr(v.base, '"', v.len) != NULL || memchr(v.base, '\\', v.len) != NULL);
    }
}

static void parse(parse_t *p, h2o_mem_pool_t *pool, const char *ct, size_t ct_len, const char *body, size_t body_len)
{
    weir_multipart_t mp;
    weir_multipart_part_t again;

    memset(p, 0, sizeof(*p));
    if ((p->ret = weir_multipart_init(&mp, ct, ct_len, body, body_len)) != 0) {
        FUZZ_CHECK(p->ret == -EINVAL && mp.reason != NULL);
        p->reason = mp.reason;
        return;
    }
    FUZZ_CHECK(mp.reason == NULL);
    memcpy(p->delim, mp.delim, mp.delim_len);
    p->delim_len = mp.delim_len;
    FUZZ_CHECK(p->delim_len > 4 && p->delim_len <= sizeof(p->delim) && memcmp(p->delim, "\r\n--", 4) == 0);
    for (;;) {
        FUZZ_CHECK(p->num_parts < MAX_SEEN);
        int r = weir_multipart_next(&mp, pool, &p->parts[p->num_parts]);
        if (r != 1) {
            p->ret = r;
            break;
        }
        FUZZ_CHECK(mp.reason == NULL);
        ++p->num_parts;
    }
    p->reason = mp.reason;
    if (p->ret == 0) {
        FUZZ_CHECK(p->reason == NULL && p->num_parts >= 1);
    } else {
        FUZZ_CHECK((p->ret == -EINVAL || p->ret == -E2BIG) && p->reason != NULL);
    }
    FUZZ_CHECK(p->num_parts <= WEIR_MULTIPART_MAX_PARTS);
    if (p->num_parts == WEIR_MULTIPART_MAX_PARTS && p->ret != 0)
        FUZZ_CHECK(p->ret == -E2BIG);
    /* sticky */
    FUZZ_CHECK(weir_multipart_next(&mp, pool, &again) == p->ret);
    FUZZ_CHECK(weir_multipart_next(&mp, pool, &again) == p->ret);
}

static void check_parts(const parse_t *p, const char *body, size_t body_len)
{
    const char *prev_end = body; /* where the previous part's content ended */

    for (size_t i = 0; i != p->num_parts; ++i) {
        const weir_multipart_part_t *part = p->parts + i;
        FUZZ_CHECK(part->body.base != NULL && inside(part->body, body, body + body_len));
        /* in order, not overlapping, with at least a delimiter and a header block between two contents */
        FUZZ_CHECK(part->body.base >= prev_end + (i != 0 ? p->delim_len : 0));
        /* it ends at a delimiter, and holds none */
        const char *end = part->body.base + part->body.len;
        FUZZ_CHECK((size_t)(body + body_len - end) >= p->delim_len && memcmp(end, p->delim, p->delim_len) == 0);
        FUZZ_CHECK(part->body.len < p->delim_len || memmem(part->body.base, part->body.len, p->delim, p->delim_len) == NULL);
        /* its strings come from its own header block (or are copies) */
        FUZZ_CHECK(part->name.base != NULL);
        check_param(part->name, body, body_len, prev_end, part->body.base);
        check_param(part->filename, body, body_len, prev_end, part->body.base);
        if (part->content_type.base != NULL) {
            h2o_iovec_t t = part->content_type;
            FUZZ_CHECK(inside(t, prev_end, part->body.base) && t.len != 0);
            FUZZ_CHECK(t.base[0] != ' ' && t.base[0] != '\t' && t.base[t.len - 1] != ' ' && t.base[t.len - 1] != '\t');
            for (size_t k = 0; k != t.len; ++k)
                FUZZ_CHECK(t.base[k] != '\r' && t.base[k] != '\n');
        }
        prev_end = end;
    }
}

static int same_iov(h2o_iovec_t a, h2o_iovec_t b)
{
    return (a.base == NULL) == (b.base == NULL) && a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

static int same_part(const weir_multipart_part_t *a, const weir_multipart_part_t *b)
{
    return same_iov(a->name, b->name) && same_iov(a->filename, b->filename) && a->content_type.base == b->content_type.base &&
           a->content_type.len == b->content_type.len && a->body.base == b->body.base && a->body.len == b->body.len;
}

/* weir_multipart_find for @p name against the iteration @p p. */
static void check_find(const parse_t *p, h2o_mem_pool_t *pool, const char *ct, size_t ct_len, const char *body, size_t body_len,
                       const char *name)
{
    weir_multipart_part_t found;
    const char *reason = NULL;
    size_t name_len = strlen(name), first = SIZE_MAX;
    int expected = 1; /* not known yet */

    for (size_t i = 0; i != p->num_parts && expected == 1; ++i) {
        if (p->parts[i].name.len != name_len || memcmp(p->parts[i].name.base, name, name_len) != 0)
            continue;
        if (first != SIZE_MAX)
            expected = -EEXIST; /* find stops at the first repeat, whatever follows */
        else
            first = i;
    }
    if (expected == 1)
        expected = p->ret != 0 ? p->ret : first != SIZE_MAX ? 0 : -ENOENT;

    int r = weir_multipart_find(pool, ct, ct_len, body, body_len, name, &found, &reason);
    FUZZ_CHECK(r == expected);
    if (r == 0) {
        FUZZ_CHECK(same_part(&found, p->parts + first));
    } else {
        FUZZ_CHECK(reason != NULL);
        if (r == p->ret)
            FUZZ_CHECK(strcmp(reason, p->reason) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data, *lf = memchr(in, '\n', size);
    size_t ct_len = lf != NULL ? (size_t)(lf - in) : size;
    const char *body = lf != NULL ? lf + 1 : in + size;
    size_t body_len = size - (size_t)(body - in);
    static parse_t with_pool, without_pool; /* (large: not on the stack) */
    h2o_mem_pool_t pool;

    h2o_mem_init_pool(&pool);

    /* the media type */
    int is_form = weir_multipart_is_form_data(in, ct_len);
    FUZZ_CHECK(is_form == ref_is_form_data(in, ct_len));

    parse(&with_pool, &pool, in, ct_len, body, body_len);
    if (!is_form)
        FUZZ_CHECK(with_pool.ret == -EINVAL && (strcmp(with_pool.reason, "Content-Type is not multipart/form-data") == 0 ||
                                                strcmp(with_pool.reason, "malformed Content-Type") == 0));
    else
        FUZZ_CHECK(with_pool.reason == NULL || strcmp(with_pool.reason, "Content-Type is not multipart/form-data") != 0);
    check_parts(&with_pool, body, body_len);

    /* without a pool: the same until a value with an escape */
    parse(&without_pool, NULL, in, ct_len, body, body_len);
    FUZZ_CHECK(without_pool.num_parts <= with_pool.num_parts);
    for (size_t i = 0; i != without_pool.num_parts; ++i)
        FUZZ_CHECK(same_part(without_pool.parts + i, with_pool.parts + i));
    int same_end = without_pool.num_parts == with_pool.num_parts && without_pool.ret == with_pool.ret &&
                   (with_pool.reason == without_pool.reason || (with_pool.reason != NULL && without_pool.reason != NULL &&
                                                                strcmp(with_pool.reason, without_pool.reason) == 0));
    if (!same_end)
        FUZZ_CHECK(without_pool.ret == -EINVAL && strcmp(without_pool.reason, "malformed multipart Content-Disposition") == 0);
    /* a copied name or file name means the pool-less parse stopped at that part or before */
    for (size_t i = 0; i != with_pool.num_parts; ++i) {
        const weir_multipart_part_t *part = with_pool.parts + i;
        int copied = (part->name.base != NULL && !inside(part->name, body, body + body_len)) ||
                     (part->filename.base != NULL && !inside(part->filename, body, body + body_len));
        if (copied)
            FUZZ_CHECK(without_pool.num_parts <= i && without_pool.ret != 0);
    }

    /* find: the names of the first parts (without a NUL: find takes a C string; each find parses the whole body, so
     * not every part's), and names no part has */
    char name[64];
    for (size_t i = 0; i != with_pool.num_parts && i != 8; ++i) {
        h2o_iovec_t n = with_pool.parts[i].name;
        if (n.len < sizeof(name) && memchr(n.base, '\0', n.len) == NULL) {
            memcpy(name, n.base, n.len);
            name[n.len] = '\0';
            check_find(&with_pool, &pool, in, ct_len, body, body_len, name);
        }
    }
    check_find(&with_pool, &pool, in, ct_len, body, body_len, "image");
    check_find(&with_pool, &pool, in, ct_len, body, body_len, "\x01no such part");

    h2o_mem_clear_pool(&pool);
    return 0;
}
