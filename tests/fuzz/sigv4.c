/*
 * SigV4 signing (src/sigv4.c): weir_sigv4_sign, weir_sigv4_uri_encode, weir_sigv4_format_date.
 *
 * The input: its first byte holds the flags (bit 0: WEIR_SIGV4_ADD_CONTENT_SHA256; bits 1, 6 and 7 all set: one field,
 * chosen by bits 2-4 (path, method, region, service, key id, secret, token, the last header's value), is lengthened by
 * repeating its last byte (or 'a') to WEIR_SIGV4_MAX_FIELD bytes, one more with bit 5), the rest are fields, one a line
 * ('\n'): method, path, query, payload hash, region, service, x-amz-date, access key id, secret key, session token,
 * then one header a line, "name:value" (a line without ':' is a name with an empty value). Missing lines are empty
 * fields. The query line is '&'-separated parameters, "name=value" or "name" (no line, or an empty one: none). Every
 * field (each query name and value, each header name and value) is percent-decoded after the split: %XX (hex of
 * either case) is that byte, any other '%' is itself; so a seed can hold LF, NUL, '&', '=' and ':'. An x-amz-date line
 * "@SECONDS" is weir_sigv4_format_date of that time.
 *
 * Properties, beyond crashes and sanitizer reports:
 * - weir_sigv4_uri_encode, of the whole input and of the path, with and without keep_slash: only unreserved bytes,
 *   '/' with keep_slash only, and %XX with upper-case hex; decoding it gives the input back; NUL-terminated;
 * - weir_sigv4_format_date: 0 exactly for the years 0 to 9999, and the text is that time (timegm gives it back);
 * - weir_sigv4_sign succeeds exactly when the request is valid as sigv4.h describes it (a reference check written here:
 *   tokens, header values without CR/LF/NUL, a host header, none of the names the signer adds, a path starting with
 *   '/', the scope characters, the date's shape, the hash's, the key id's and the token's characters), -E2BIG only for
 *   a limit passed and -EINVAL only for a malformed field;
 * - on success, every output equals a reference computed here the plain way (encode, sort, trim, join; the key
 *   derived and the signature computed with OpenSSL's HMAC directly), the Authorization header is
 *   "AWS4-HMAC-SHA256 Credential=KEY/YYYYMMDD/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=<64 hex>" with
 *   SignedHeaders sorted, lower-case and unique; every output string is NUL-terminated;
 * - signing is deterministic: the same request signed again, on another pool, gives the same strings.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "fuzz.h"
#include "weir/sigv4.h"
#include "weir/text.h"

enum { F_METHOD, F_PATH, F_QUERY, F_HASH, F_REGION, F_SERVICE, F_DATE, F_KEY_ID, F_SECRET, F_TOKEN, NUM_FIELDS };

/* Decodes [s, s + len) into *out (advancing it); returns the decoded field. */
static h2o_iovec_t decode(const char *s, size_t len, char **out)
{
    char *start = *out, *p = start;
    for (size_t i = 0; i < len; ++i) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = weir_hex_digit((unsigned char)s[i + 1])) >= 0 &&
            (lo = weir_hex_digit((unsigned char)s[i + 2])) >= 0) {
            *p++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *p++ = s[i];
        }
    }
    *out = p;
    return h2o_iovec_init(start, (size_t)(p - start));
}

/* ---- references ---------------------------------------------------------------------------------------------------- */

static int ref_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static int ref_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && memchr(extra, c, sizeof(extra) - 1) != NULL);
}

static int ref_token(h2o_iovec_t v)
{
    if (v.len == 0)
        return 0;
    for (size_t i = 0; i != v.len; ++i)
        if (!ref_tchar((unsigned char)v.base[i]))
            return 0;
    return 1;
}

static int ref_scope_part(h2o_iovec_t v)
{
    if (v.len == 0)
        return 0;
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

static int ref_visible(h2o_iovec_t v, int key_id)
{
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if (c < 0x21 || c > 0x7e || (key_id && (c == '/' || c == ',')))
            return 0;
    }
    return 1;
}

static int ref_header_value(h2o_iovec_t v)
{
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int ref_date(h2o_iovec_t d)
{
    return d.len == 16 && is_digits(d.base, 8) && d.base[8] == 'T' && is_digits(d.base + 9, 6) && d.base[15] == 'Z';
}

static int ref_hash(h2o_iovec_t h)
{
    if (h.len == 16 && memcmp(h.base, "UNSIGNED-PAYLOAD", 16) == 0)
        return 1;
    if (h.len != 64)
        return 0;
    for (size_t i = 0; i != 64; ++i)
        if (!((h.base[i] >= '0' && h.base[i] <= '9') || (h.base[i] >= 'a' && h.base[i] <= 'f')))
            return 0;
    return 1;
}

static int eq_lower(h2o_iovec_t name, const char *lit)
{
    size_t n = strlen(lit);
    if (name.len != n)
        return 0;
    for (size_t i = 0; i != n; ++i) {
        char c = name.base[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != lit[i])
            return 0;
    }
    return 1;
}

/* A growing byte string (malloc'd; the reference does not use the pool). */
typedef struct st_str_t {
    char *s;
    size_t len, cap;
} str_t;

static void put(str_t *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        FUZZ_CHECK(b->s != NULL);
    }
    if (n != 0)
        memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(str_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putc_(str_t *b, char c)
{
    put(b, &c, 1);
}

static void ref_encode(str_t *b, h2o_iovec_t v, int keep_slash)
{
    static const char HEX[] = "0123456789ABCDEF";
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if (ref_unreserved(c) || (keep_slash && c == '/')) {
            putc_(b, (char)c);
        } else {
            char e[3] = {'%', HEX[c >> 4], HEX[c & 15]};
            put(b, e, 3);
        }
    }
}

static int same(h2o_iovec_t got, const str_t *want)
{
    return got.base != NULL && got.len == want->len && memcmp(got.base, want->s, want->len) == 0 && got.base[got.len] == '\0';
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i != n; ++i) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hmac(const void *key, size_t key_len, const void *msg, size_t len, unsigned char out[32])
{
    unsigned n = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), key, (int)key_len, msg, len, out, &n) != NULL && n == 32);
}

/* ---- the checks --------------------------------------------------------------------------------------------------- */

/* weir_sigv4_uri_encode's output: allowed bytes only, and it decodes to the input. */
static void check_encode(h2o_mem_pool_t *pool, h2o_iovec_t in)
{
    for (int keep = 0; keep != 2; ++keep) {
        h2o_iovec_t e = weir_sigv4_uri_encode(pool, in.base, in.len, keep);
        size_t n = 0;
        FUZZ_CHECK(e.base != NULL && e.base[e.len] == '\0');
        for (size_t i = 0; i < e.len; ++i, ++n) {
            unsigned char c = (unsigned char)e.base[i];
            FUZZ_CHECK(n < in.len);
            if (c == '%') {
                FUZZ_CHECK(i + 2 < e.len);
                int hi = e.base[i + 1], lo = e.base[i + 2];
                FUZZ_CHECK(((hi >= '0' && hi <= '9') || (hi >= 'A' && hi <= 'F')) &&
                           ((lo >= '0' && lo <= '9') || (lo >= 'A' && lo <= 'F')));
                unsigned char d = (unsigned char)(weir_hex_digit(hi) * 16 + weir_hex_digit(lo));
                FUZZ_CHECK((unsigned char)in.base[n] == d);
                FUZZ_CHECK(!ref_unreserved(d) && !(keep && d == '/')); /* encoded only when it must be */
                i += 2;
            } else {
                FUZZ_CHECK(ref_unreserved(c) || (keep && c == '/'));
                FUZZ_CHECK((unsigned char)in.base[n] == c);
            }
        }
        FUZZ_CHECK(n == in.len);
    }
}

/* An "@SECONDS" date: weir_sigv4_format_date against gmtime/timegm. Writes the date into out on success. */
static int check_format_date(h2o_iovec_t line, char out[WEIR_SIGV4_DATE_LEN + 1])
{
    long long v = 0;
    int neg = 0;
    size_t i = 1;

    if (i < line.len && line.base[i] == '-')
        neg = 1, ++i;
    for (size_t digits = 0; i < line.len && line.base[i] >= '0' && line.base[i] <= '9' && digits < 18; ++i, ++digits)
        v = v * 10 + (line.base[i] - '0');
    time_t t = (time_t)(neg ? -v : v);
    struct tm tm;
    int in_range = gmtime_r(&t, &tm) != NULL && tm.tm_year >= -1900 && tm.tm_year <= 9999 - 1900;
    memset(out, 'x', WEIR_SIGV4_DATE_LEN + 1);
    int r = weir_sigv4_format_date(t, out);
    FUZZ_CHECK(r == (in_range ? 0 : -ERANGE));
    if (r != 0)
        return r;
    h2o_iovec_t d = h2o_iovec_init(out, strlen(out));
    FUZZ_CHECK(ref_date(d));
    struct tm back = {0};
    back.tm_year = (out[0] - '0') * 1000 + (out[1] - '0') * 100 + (out[2] - '0') * 10 + (out[3] - '0') - 1900;
    back.tm_mon = (out[4] - '0') * 10 + (out[5] - '0') - 1;
    back.tm_mday = (out[6] - '0') * 10 + (out[7] - '0');
    back.tm_hour = (out[9] - '0') * 10 + (out[10] - '0');
    back.tm_min = (out[11] - '0') * 10 + (out[12] - '0');
    back.tm_sec = (out[13] - '0') * 10 + (out[14] - '0');
    FUZZ_CHECK(timegm(&back) == t);
    return 0;
}

typedef struct st_ref_header_t {
    str_t lname;
    h2o_iovec_t value;
    size_t index;
} ref_header_t;

static int cmp_iov(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : an < bn ? -1 : an > bn;
}

static int cmp_ref_header(const void *_a, const void *_b)
{
    const ref_header_t *a = _a, *b = _b;
    int c = cmp_iov(a->lname.s, a->lname.len, b->lname.s, b->lname.len);
    return c != 0 ? c : a->index < b->index ? -1 : 1;
}

typedef struct st_ref_param_t {
    str_t name, value;
} ref_param_t;

static int cmp_ref_param(const void *_a, const void *_b)
{
    const ref_param_t *a = _a, *b = _b;
    int c = cmp_iov(a->name.s, a->name.len, b->name.s, b->name.len);
    return c != 0 ? c : cmp_iov(a->value.s, a->value.len, b->value.s, b->value.len);
}

/* SigV4's Trimall: no blanks at either end, each inner run of SP/HTAB one space. */
static void ref_trimall(str_t *b, h2o_iovec_t v)
{
    size_t i = 0, end = v.len;
    while (i < end && (v.base[i] == ' ' || v.base[i] == '\t'))
        ++i;
    while (end > i && (v.base[end - 1] == ' ' || v.base[end - 1] == '\t'))
        --end;
    for (; i < end; ++i) {
        if (v.base[i] == ' ' || v.base[i] == '\t') {
            while (v.base[i + 1] == ' ' || v.base[i + 1] == '\t')
                ++i;
            putc_(b, ' ');
        } else {
            putc_(b, v.base[i]);
        }
    }
}

static int same_signed(const weir_sigv4_signed_t *a, const weir_sigv4_signed_t *b)
{
    h2o_iovec_t const *fa[] = {&a->canonical_uri,  &a->canonical_query, &a->canonical_request, &a->credential_scope,
                               &a->signed_headers, &a->string_to_sign,  &a->authorization};
    h2o_iovec_t const *fb[] = {&b->canonical_uri,  &b->canonical_query, &b->canonical_request, &b->credential_scope,
                               &b->signed_headers, &b->string_to_sign,  &b->authorization};
    for (size_t i = 0; i != sizeof(fa) / sizeof(fa[0]); ++i)
        if (fa[i]->len != fb[i]->len || memcmp(fa[i]->base, fb[i]->base, fa[i]->len) != 0)
            return 0;
    if (strcmp(a->signature, b->signature) != 0 || a->num_extra_headers != b->num_extra_headers)
        return 0;
    for (size_t i = 0; i != a->num_extra_headers; ++i)
        if (a->extra_headers[i].name.len != b->extra_headers[i].name.len ||
            memcmp(a->extra_headers[i].name.base, b->extra_headers[i].name.base, a->extra_headers[i].name.len) != 0 ||
            a->extra_headers[i].value.len != b->extra_headers[i].value.len ||
            memcmp(a->extra_headers[i].value.base, b->extra_headers[i].value.base, a->extra_headers[i].value.len) != 0)
            return 0;
    return 1;
}

/* The outputs of a successful signature against the reference. */
static void check_signed(const weir_sigv4_request_t *r, const weir_sigv4_credentials_t *cred, const weir_sigv4_signed_t *out)
{
    int add_sha = (r->flags & WEIR_SIGV4_ADD_CONTENT_SHA256) != 0, has_token = cred->session_token.len != 0;
    str_t b = {0};
    size_t n = r->num_headers + 3, nh = 0;
    ref_header_t *hs = calloc(n, sizeof(*hs));
    ref_param_t *ps = calloc(r->num_query + 1, sizeof(*ps));

    /* the URI and the query */
    ref_encode(&b, r->path, 1);
    FUZZ_CHECK(same(out->canonical_uri, &b));
    for (size_t i = 0; i != r->num_query; ++i) {
        ref_encode(&ps[i].name, r->query[i].name, 0);
        ref_encode(&ps[i].value, r->query[i].value, 0);
        put(&ps[i].name, "", 0);
        put(&ps[i].value, "", 0);
    }
    qsort(ps, r->num_query, sizeof(*ps), cmp_ref_param);
    str_t q = {0};
    put(&q, "", 0);
    for (size_t i = 0; i != r->num_query; ++i) {
        if (i != 0)
            putc_(&q, '&');
        put(&q, ps[i].name.s, ps[i].name.len);
        putc_(&q, '=');
        put(&q, ps[i].value.s, ps[i].value.len);
    }
    FUZZ_CHECK(same(out->canonical_query, &q));

    /* the headers: the caller's, lower-cased, then the signer's, sorted by name (stable), joined */
    for (size_t i = 0; i != r->num_headers; ++i, ++nh) {
        for (size_t k = 0; k != r->headers[i].name.len; ++k) {
            char c = r->headers[i].name.base[k];
            putc_(&hs[nh].lname, c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        hs[nh].value = r->headers[i].value;
        hs[nh].index = nh;
    }
    if (add_sha) {
        puts_(&hs[nh].lname, "x-amz-content-sha256");
        hs[nh].value = r->payload_hash, hs[nh].index = nh, ++nh;
    }
    puts_(&hs[nh].lname, "x-amz-date");
    hs[nh].value = r->amz_date, hs[nh].index = nh, ++nh;
    if (has_token) {
        puts_(&hs[nh].lname, "x-amz-security-token");
        hs[nh].value = cred->session_token, hs[nh].index = nh, ++nh;
    }
    qsort(hs, nh, sizeof(*hs), cmp_ref_header);
    str_t sh = {0}, cr = {0};
    put(&sh, "", 0);
    put(&cr, r->method.base, r->method.len);
    putc_(&cr, '\n');
    put(&cr, b.s, b.len);
    putc_(&cr, '\n');
    put(&cr, q.s, q.len);
    putc_(&cr, '\n');
    for (size_t i = 0; i != nh; ++i) {
        int continued = i != 0 && cmp_iov(hs[i].lname.s, hs[i].lname.len, hs[i - 1].lname.s, hs[i - 1].lname.len) == 0;
        if (continued) {
            putc_(&cr, ',');
        } else {
            if (i != 0) {
                putc_(&cr, '\n');
                putc_(&sh, ';');
            }
            put(&cr, hs[i].lname.s, hs[i].lname.len);
            putc_(&cr, ':');
            put(&sh, hs[i].lname.s, hs[i].lname.len);
        }
        ref_trimall(&cr, hs[i].value);
    }
    puts_(&cr, "\n\n");
    put(&cr, sh.s, sh.len);
    putc_(&cr, '\n');
    put(&cr, r->payload_hash.base, r->payload_hash.len);
    FUZZ_CHECK(same(out->signed_headers, &sh));
    FUZZ_CHECK(same(out->canonical_request, &cr));

    /* SignedHeaders, directly: lower-case tokens, strictly increasing, host among them */
    {
        const char *s = out->signed_headers.base, *end = s + out->signed_headers.len, *prev = NULL;
        size_t prev_len = 0;
        int host = 0;
        while (s < end) {
            const char *semi = memchr(s, ';', (size_t)(end - s));
            size_t len = (size_t)((semi != NULL ? semi : end) - s);
            FUZZ_CHECK(len != 0);
            for (size_t k = 0; k != len; ++k)
                FUZZ_CHECK(ref_tchar((unsigned char)s[k]) && !(s[k] >= 'A' && s[k] <= 'Z'));
            if (prev != NULL)
                FUZZ_CHECK(cmp_iov(prev, prev_len, s, len) < 0);
            host |= len == 4 && memcmp(s, "host", 4) == 0;
            prev = s, prev_len = len;
            s += len + (semi != NULL);
            FUZZ_CHECK(semi == NULL || s < end); /* no trailing ';' */
        }
        FUZZ_CHECK(host);
    }

    /* the scope, the string to sign, the signature */
    str_t scope = {0}, sts = {0}, auth = {0};
    put(&scope, r->amz_date.base, 8);
    putc_(&scope, '/');
    put(&scope, r->region.base, r->region.len);
    putc_(&scope, '/');
    put(&scope, r->service.base, r->service.len);
    puts_(&scope, "/aws4_request");
    FUZZ_CHECK(same(out->credential_scope, &scope));
    unsigned char md[32], k1[32], k2[32];
    char md_hex[65], sig_hex[65];
    unsigned md_len = 0;
    FUZZ_CHECK(EVP_Digest(cr.s, cr.len, md, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32);
    hex(md, 32, md_hex);
    puts_(&sts, "AWS4-HMAC-SHA256\n");
    put(&sts, r->amz_date.base, r->amz_date.len);
    putc_(&sts, '\n');
    put(&sts, scope.s, scope.len);
    putc_(&sts, '\n');
    puts_(&sts, md_hex);
    FUZZ_CHECK(same(out->string_to_sign, &sts));
    char *k0 = malloc(4 + cred->secret_access_key.len);
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, cred->secret_access_key.base, cred->secret_access_key.len);
    hmac(k0, 4 + cred->secret_access_key.len, r->amz_date.base, 8, k1);
    hmac(k1, 32, r->region.base, r->region.len, k2);
    hmac(k2, 32, r->service.base, r->service.len, k1);
    hmac(k1, 32, "aws4_request", 12, k2);
    hmac(k2, 32, sts.s, sts.len, md);
    hex(md, 32, sig_hex);
    FUZZ_CHECK(strcmp(out->signature, sig_hex) == 0);
    puts_(&auth, "AWS4-HMAC-SHA256 Credential=");
    put(&auth, cred->access_key_id.base, cred->access_key_id.len);
    putc_(&auth, '/');
    put(&auth, scope.s, scope.len);
    puts_(&auth, ", SignedHeaders=");
    put(&auth, sh.s, sh.len);
    puts_(&auth, ", Signature=");
    puts_(&auth, sig_hex);
    FUZZ_CHECK(same(out->authorization, &auth));

    /* the headers to send */
    size_t e = 0;
    FUZZ_CHECK(out->num_extra_headers == (size_t)(1 + add_sha + has_token));
    if (add_sha) {
        FUZZ_CHECK(out->extra_headers[e].name.len == 20 &&
                   memcmp(out->extra_headers[e].name.base, "x-amz-content-sha256", 20) == 0);
        FUZZ_CHECK(out->extra_headers[e].value.len == r->payload_hash.len &&
                   memcmp(out->extra_headers[e].value.base, r->payload_hash.base, r->payload_hash.len) == 0);
        ++e;
    }
    FUZZ_CHECK(out->extra_headers[e].name.len == 10 && memcmp(out->extra_headers[e].name.base, "x-amz-date", 10) == 0);
    FUZZ_CHECK(out->extra_headers[e].value.len == 16 && memcmp(out->extra_headers[e].value.base, r->amz_date.base, 16) == 0);
    ++e;
    if (has_token) {
        FUZZ_CHECK(out->extra_headers[e].name.len == 20 &&
                   memcmp(out->extra_headers[e].name.base, "x-amz-security-token", 20) == 0);
        FUZZ_CHECK(out->extra_headers[e].value.len == cred->session_token.len &&
                   memcmp(out->extra_headers[e].value.base, cred->session_token.base, cred->session_token.len) == 0);
    }

    for (size_t i = 0; i != n; ++i)
        free(hs[i].lname.s);
    for (size_t i = 0; i != r->num_query; ++i) {
        free(ps[i].name.s);
        free(ps[i].value.s);
    }
    free(hs);
    free(ps);
    free(k0);
    free(b.s);
    free(q.s);
    free(sh.s);
    free(cr.s);
    free(scope.s);
    free(sts.s);
    free(auth.s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2o_iovec_t fields[NUM_FIELDS];
    char *buf, *w, date[WEIR_SIGV4_DATE_LEN + 1];
    const char *in = (const char *)data + (size != 0), *end = (const char *)data + size;
    size_t num_lines = 1;
    h2o_mem_pool_t pool, pool2;

    if (size == 0)
        return 0;
    for (const char *p = in; p != end; ++p)
        num_lines += *p == '\n';
    buf = malloc(size);
    w = buf;
    weir_sigv4_pair_t *headers = calloc(num_lines, sizeof(*headers)), *query = calloc(size + 1, sizeof(*query));
    size_t num_headers = 0, num_query = 0;
    h2o_mem_init_pool(&pool);
    h2o_mem_init_pool(&pool2);

    /* the whole input, encoded */
    check_encode(&pool, h2o_iovec_init(data, size));

    /* split */
    memset(fields, 0, sizeof(fields));
    const char *line = in;
    h2o_iovec_t raw_query = h2o_iovec_init(in, 0);
    for (size_t i = 0; line <= end; ++i) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        size_t len = (size_t)(eol - line);
        if (i == F_QUERY) {
            raw_query = h2o_iovec_init(line, len);
        } else if (i < NUM_FIELDS) {
            fields[i] = decode(line, len, &w);
        } else if (len != 0) { /* (an empty line is no header) */
            const char *colon = memchr(line, ':', len);
            size_t name_len = colon != NULL ? (size_t)(colon - line) : len;
            headers[num_headers].name = decode(line, name_len, &w);
            headers[num_headers].value = colon != NULL ? decode(colon + 1, (size_t)(eol - colon - 1), &w) : h2o_iovec_init("", 0);
            ++num_headers;
        }
        if (eol == end)
            break;
        line = eol + 1;
    }
    for (const char *p = raw_query.base, *qend = p + raw_query.len; raw_query.len != 0;) {
        const char *amp = memchr(p, '&', (size_t)(qend - p));
        if (amp == NULL)
            amp = qend;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        query[num_query].name = decode(p, (size_t)((eq != NULL ? eq : amp) - p), &w);
        query[num_query].value = eq != NULL ? decode(eq + 1, (size_t)(amp - eq - 1), &w) : h2o_iovec_init("", 0);
        ++num_query;
        p = amp + 1;
        if (amp == qend)
            break;
    }
    FUZZ_CHECK(w <= buf + size);

    if (fields[F_DATE].len != 0 && fields[F_DATE].base[0] == '@' && check_format_date(fields[F_DATE], date) == 0)
        fields[F_DATE] = h2o_iovec_init(date, WEIR_SIGV4_DATE_LEN);

    /* a field at the length limit, or one byte over it */
    char *long_field = NULL;
    if ((data[0] & 0xc2) == 0xc2) {
        static const int which[] = {F_PATH, F_METHOD, F_REGION, F_SERVICE, F_KEY_ID, F_SECRET, F_TOKEN, -1};
        int f = which[(data[0] >> 2) & 7];
        h2o_iovec_t *v = f >= 0 ? &fields[f] : num_headers != 0 ? &headers[num_headers - 1].value : &fields[F_PATH];
        size_t len = WEIR_SIGV4_MAX_FIELD + ((data[0] >> 5) & 1);
        long_field = malloc(len);
        if (v->len != 0) /* (v->base may be NULL then: a missing line) */
            memcpy(long_field, v->base, v->len < len ? v->len : len);
        if (v->len < len)
            memset(long_field + v->len, v->len != 0 ? v->base[v->len - 1] : 'a', len - v->len);
        *v = h2o_iovec_init(long_field, len);
    }
    check_encode(&pool, fields[F_PATH]);

    weir_sigv4_request_t r = {.method = fields[F_METHOD],
                              .path = fields[F_PATH],
                              .query = query,
                              .num_query = num_query,
                              .headers = headers,
                              .num_headers = num_headers,
                              .payload_hash = fields[F_HASH],
                              .region = fields[F_REGION],
                              .service = fields[F_SERVICE],
                              .amz_date = fields[F_DATE],
                              .flags = data[0] & WEIR_SIGV4_ADD_CONTENT_SHA256};
    weir_sigv4_credentials_t cred = {fields[F_KEY_ID], fields[F_SECRET], fields[F_TOKEN]};

    /* what sigv4.h says is valid */
    int malformed = !ref_token(r.method) || r.path.len == 0 || r.path.base[0] != '/' || !ref_scope_part(r.region) ||
                    !ref_scope_part(r.service) || !ref_date(r.amz_date) || !ref_hash(r.payload_hash) ||
                    cred.access_key_id.len == 0 || !ref_visible(cred.access_key_id, 1) || cred.secret_access_key.len == 0 ||
                    !ref_visible(cred.session_token, 0);
    int over = num_headers > WEIR_SIGV4_MAX_PAIRS || num_query > WEIR_SIGV4_MAX_PAIRS, host = 0;
    static const int limited[] = {F_METHOD, F_PATH, F_REGION, F_SERVICE, F_KEY_ID, F_SECRET, F_TOKEN};
    for (size_t i = 0; i != sizeof(limited) / sizeof(limited[0]); ++i)
        over |= fields[limited[i]].len > WEIR_SIGV4_MAX_FIELD;
    for (size_t i = 0; i != num_headers; ++i) {
        h2o_iovec_t name = headers[i].name;
        over |= name.len > WEIR_SIGV4_MAX_FIELD || headers[i].value.len > WEIR_SIGV4_MAX_FIELD;
        malformed |= !ref_token(name) || !ref_header_value(headers[i].value) || eq_lower(name, "authorization") ||
                     eq_lower(name, "x-amz-date") || (r.flags != 0 && eq_lower(name, "x-amz-content-sha256")) ||
                     (cred.session_token.len != 0 && eq_lower(name, "x-amz-security-token"));
        host |= eq_lower(name, "host");
    }
    malformed |= !host;

    weir_sigv4_signed_t out, again;
    int ret = weir_sigv4_sign(&pool, &r, &cred, &out);
    FUZZ_CHECK(ret == 0 || ret == -EINVAL || ret == -E2BIG);
    FUZZ_CHECK((ret == 0) == (!malformed && !over));
    if (ret == -E2BIG)
        FUZZ_CHECK(over);
    if (ret == -EINVAL)
        FUZZ_CHECK(malformed);
    int ret2 = weir_sigv4_sign(&pool2, &r, &cred, &again);
    FUZZ_CHECK(ret2 == ret);
    if (ret == 0) {
        check_signed(&r, &cred, &out);
        FUZZ_CHECK(same_signed(&out, &again));
    }

    h2o_mem_clear_pool(&pool);
    h2o_mem_clear_pool(&pool2);
    free(long_field);
    free(headers);
    free(query);
    free(buf);
    return 0;
}
