#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "weir/common.h"
#include "weir/sigv4.h"
#include "weir/text.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define LIT(s) h2o_iovec_init((s), sizeof(s) - 1)

static const char HEX_UPPER[] = "0123456789ABCDEF", HEX_LOWER[] = "0123456789abcdef";

/* A string being built on a pool, into a capacity computed beforehand: every length below is exact or an upper bound,
 * so appending never reallocates and overflowing the capacity is a bug (assert). */
typedef struct st_strbuf_t {
    char *base;
    size_t len, cap;
} strbuf_t;

static void buf_init(h2o_mem_pool_t *pool, strbuf_t *b, size_t cap)
{
    b->base = h2o_mem_alloc_pool(pool, cap + 1);
    b->len = 0;
    b->cap = cap;
}

static void buf_put(strbuf_t *b, const void *s, size_t len)
{
    assert(b->len + len <= b->cap);
    if (len != 0) /* (s may be NULL then) */
        memcpy(b->base + b->len, s, len);
    b->len += len;
}

static void buf_putc(strbuf_t *b, char c)
{
    assert(b->len < b->cap);
    b->base[b->len++] = c;
}

static h2o_iovec_t buf_finish(strbuf_t *b)
{
    b->base[b->len] = '\0';
    return h2o_iovec_init(b->base, b->len);
}

#define buf_puts(b, lit) buf_put((b), (lit), sizeof(lit) - 1)

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* RFC 7230 tchar */
static int is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t encoded_len(const char *s, size_t len, int keep_slash)
{
    size_t n = len;
    for (size_t i = 0; i != len; ++i)
        if (!is_unreserved((unsigned char)s[i]) && !(keep_slash && s[i] == '/'))
            n += 2;
    return n;
}

static void put_encoded(strbuf_t *b, const char *s, size_t len, int keep_slash)
{
    for (size_t i = 0; i != len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            buf_putc(b, (char)c);
        } else {
            char esc[3] = {'%', HEX_UPPER[c >> 4], HEX_UPPER[c & 15]};
            buf_put(b, esc, 3);
        }
    }
}

h2o_iovec_t weir_sigv4_uri_encode(h2o_mem_pool_t *pool, const char *s, size_t len, int keep_slash)
{
    strbuf_t b;
    buf_init(pool, &b, encoded_len(s, len, keep_slash));
    put_encoded(&b, s, len, keep_slash);
    return buf_finish(&b);
}

int weir_sigv4_sha256_hex(const void *data, size_t len, char out[WEIR_SIGV4_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;

    if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        return -EIO;
    weir_hex_encode(md, 32, out);
    return 0;
}

int weir_sigv4_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32])
{
    unsigned md_len = 0;

    if (key_len > INT_MAX || HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &md_len) == NULL || md_len != 32)
        return -EIO;
    return 0;
}

int weir_sigv4_format_date(time_t t, char out[WEIR_SIGV4_DATE_LEN + 1])
{
    struct tm tm;
    int fields[6], widths[6] = {4, 2, 2, 2, 2, 2};
    char *p = out;

    if (gmtime_r(&t, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -ERANGE;
    fields[0] = tm.tm_year + 1900, fields[1] = tm.tm_mon + 1, fields[2] = tm.tm_mday;
    fields[3] = tm.tm_hour, fields[4] = tm.tm_min, fields[5] = tm.tm_sec;
    for (int i = 0; i != 6; ++i) {
        for (int k = widths[i] - 1, v = fields[i]; k >= 0; --k, v /= 10)
            p[k] = (char)('0' + v % 10);
        p += widths[i];
        if (i == 2)
            *p++ = 'T';
    }
    *p++ = 'Z';
    *p = '\0';
    return 0;
}

/* Checks one field's length: 0 when within [min_len, WEIR_SIGV4_MAX_FIELD]. */
static int check_len(h2o_iovec_t v, size_t min_len)
{
    if (v.len > WEIR_SIGV4_MAX_FIELD)
        return -E2BIG;
    if (v.len < min_len || (v.len != 0 && v.base == NULL))
        return -EINVAL;
    return 0;
}

/* Region and service appear in the credential scope, between '/': A-Z a-z 0-9 - . _ only. */
static int check_scope_part(h2o_iovec_t v)
{
    int ret;
    if ((ret = check_len(v, 1)) != 0)
        return ret;
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if (!is_unreserved(c) || c == '~')
            return -EINVAL;
    }
    return 0;
}

/* Visible ASCII (the key id also excludes the separators of the Credential field). */
static int check_visible(h2o_iovec_t v, size_t min_len, const char *excluded)
{
    int ret;
    if ((ret = check_len(v, min_len)) != 0)
        return ret;
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if (c < 0x21 || c > 0x7e || strchr(excluded, c) != NULL)
            return -EINVAL;
    }
    return 0;
}

static int check_token(h2o_iovec_t v)
{
    int ret;
    if ((ret = check_len(v, 1)) != 0)
        return ret;
    for (size_t i = 0; i != v.len; ++i)
        if (!is_tchar((unsigned char)v.base[i]))
            return -EINVAL;
    return 0;
}

/* A header value: SP, HTAB, visible ASCII and obs-text (>= 0x80); no other control character. */
static int check_header_value(h2o_iovec_t v)
{
    int ret;
    if ((ret = check_len(v, 0)) != 0)
        return ret;
    for (size_t i = 0; i != v.len; ++i) {
        unsigned char c = (unsigned char)v.base[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -EINVAL;
    }
    return 0;
}

static int check_digits(const char *s, size_t n)
{
    for (size_t i = 0; i != n; ++i)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int check_amz_date(h2o_iovec_t d)
{
    if (d.len != WEIR_SIGV4_DATE_LEN || d.base == NULL || !check_digits(d.base, 8) || d.base[8] != 'T' ||
        !check_digits(d.base + 9, 6) || d.base[15] != 'Z')
        return -EINVAL;
    return 0;
}

static int check_payload_hash(h2o_iovec_t h)
{
    if (h.base != NULL && h.len == sizeof(WEIR_SIGV4_UNSIGNED_PAYLOAD) - 1 &&
        memcmp(h.base, WEIR_SIGV4_UNSIGNED_PAYLOAD, h.len) == 0)
        return 0;
    if (h.len != WEIR_SIGV4_HEX_LEN || h.base == NULL)
        return -EINVAL;
    for (size_t i = 0; i != h.len; ++i)
        if (strchr(HEX_LOWER, h.base[i]) == NULL || h.base[i] == '\0')
            return -EINVAL;
    return 0;
}

int weir_sigv4_derive_key(h2o_iovec_t secret, h2o_iovec_t date, h2o_iovec_t region, h2o_iovec_t service, unsigned char out[32])
{
    unsigned char k1[32], k2[32], *key;
    int ret;

    if ((ret = check_len(secret, 1)) != 0 || (ret = check_scope_part(region)) != 0 || (ret = check_scope_part(service)) != 0)
        return ret;
    if (date.len != 8 || date.base == NULL || !check_digits(date.base, 8))
        return -EINVAL;
    key = weir_malloc(4 + secret.len);
    memcpy(key, "AWS4", 4);
    memcpy(key + 4, secret.base, secret.len);
    /* (no output buffer is also the key: HMAC() is not documented to allow that) */
    if ((ret = weir_sigv4_hmac_sha256(key, 4 + secret.len, date.base, date.len, k1)) == 0 &&
        (ret = weir_sigv4_hmac_sha256(k1, 32, region.base, region.len, k2)) == 0 &&
        (ret = weir_sigv4_hmac_sha256(k2, 32, service.base, service.len, k1)) == 0)
        ret = weir_sigv4_hmac_sha256(k1, 32, TERMINATOR, sizeof(TERMINATOR) - 1, out);
    /* the secret and the keys derived from it do not linger in freed memory */
    OPENSSL_cleanse(key, 4 + secret.len);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    free(key);
    return ret;
}

/* A header to sign: its lower-cased name, its value as given, its position (duplicates keep their order). */
typedef struct st_sign_header_t {
    h2o_iovec_t lname;
    h2o_iovec_t value;
    size_t index;
} sign_header_t;

/* A query parameter, encoded. */
typedef struct st_sign_param_t {
    h2o_iovec_t name;
    h2o_iovec_t value;
} sign_param_t;

static int cmp_bytes(h2o_iovec_t a, h2o_iovec_t b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n != 0 ? memcmp(a.base, b.base, n) : 0;
    if (c != 0)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int cmp_header(const void *_a, const void *_b)
{
    const sign_header_t *a = _a, *b = _b;
    int c = cmp_bytes(a->lname, b->lname);
    if (c != 0)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int cmp_param(const void *_a, const void *_b)
{
    const sign_param_t *a = _a, *b = _b;
    int c = cmp_bytes(a->name, b->name);
    return c != 0 ? c : cmp_bytes(a->value, b->value);
}

static int lname_is(h2o_iovec_t lname, const char *s)
{
    return lname.len == strlen(s) && memcmp(lname.base, s, lname.len) == 0;
}

/* Appends a header value trimmed of SP/HTAB at both ends, each inner run of them folded to one space (SigV4's
 * "Trimall"). */
static void put_trimmed(strbuf_t *b, h2o_iovec_t v)
{
    int pending_space = 0, started = 0;
    for (size_t i = 0; i != v.len; ++i) {
        char c = v.base[i];
        if (c == ' ' || c == '\t') {
            pending_space = started;
            continue;
        }
        if (pending_space)
            buf_putc(b, ' ');
        buf_putc(b, c);
        pending_space = 0;
        started = 1;
    }
}

int weir_sigv4_sign(h2o_mem_pool_t *pool, const weir_sigv4_request_t *req, const weir_sigv4_credentials_t *cred,
                    weir_sigv4_signed_t *out)
{
    int add_sha = (req->flags & WEIR_SIGV4_ADD_CONTENT_SHA256) != 0, has_token = cred->session_token.len != 0, has_host = 0;
    size_t num_headers, cap, i;
    sign_header_t *headers;
    sign_param_t *params;
    strbuf_t b;
    unsigned char key[32], sig[32];
    char cr_hash[WEIR_SIGV4_HEX_LEN + 1];
    int ret;

    memset(out, 0, sizeof(*out));

    /* Everything is checked before anything is built. */
    if ((ret = check_token(req->method)) != 0 || (ret = check_len(req->path, 1)) != 0 ||
        (ret = check_scope_part(req->region)) != 0 || (ret = check_scope_part(req->service)) != 0 ||
        (ret = check_amz_date(req->amz_date)) != 0 || (ret = check_payload_hash(req->payload_hash)) != 0 ||
        (ret = check_visible(cred->access_key_id, 1, "/,")) != 0 || (ret = check_len(cred->secret_access_key, 1)) != 0 ||
        (ret = check_visible(cred->session_token, 0, "")) != 0)
        return ret;
    if (req->path.base[0] != '/')
        return -EINVAL;
    if (req->num_headers > WEIR_SIGV4_MAX_PAIRS || req->num_query > WEIR_SIGV4_MAX_PAIRS)
        return -E2BIG;
    if ((req->num_headers != 0 && req->headers == NULL) || (req->num_query != 0 && req->query == NULL))
        return -EINVAL;

    /* Headers: the caller's, lower-cased, and the ones the signer adds (listed in sorted order, as documented). */
    if (add_sha)
        out->extra_headers[out->num_extra_headers++] = (weir_sigv4_pair_t){LIT("x-amz-content-sha256"), req->payload_hash};
    out->extra_headers[out->num_extra_headers++] = (weir_sigv4_pair_t){LIT("x-amz-date"), req->amz_date};
    if (has_token)
        out->extra_headers[out->num_extra_headers++] = (weir_sigv4_pair_t){LIT("x-amz-security-token"), cred->session_token};
    num_headers = req->num_headers + out->num_extra_headers;
    headers = h2o_mem_alloc_pool(pool, sizeof(*headers) * num_headers);
    for (i = 0; i != req->num_headers; ++i) {
        const weir_sigv4_pair_t *h = req->headers + i;
        if ((ret = check_token(h->name)) != 0 || (ret = check_header_value(h->value)) != 0)
            return ret;
        char *lname = h2o_mem_alloc_pool(pool, h->name.len + 1);
        for (size_t k = 0; k != h->name.len; ++k)
            lname[k] = (char)(h->name.base[k] >= 'A' && h->name.base[k] <= 'Z' ? h->name.base[k] + 32 : h->name.base[k]);
        lname[h->name.len] = '\0';
        headers[i] = (sign_header_t){h2o_iovec_init(lname, h->name.len), h->value, i};
        if (lname_is(headers[i].lname, "authorization") || lname_is(headers[i].lname, "x-amz-date") ||
            (add_sha && lname_is(headers[i].lname, "x-amz-content-sha256")) ||
            (has_token && lname_is(headers[i].lname, "x-amz-security-token")))
            return -EINVAL;
        if (lname_is(headers[i].lname, "host"))
            has_host = 1;
    }
    if (!has_host)
        return -EINVAL;
    for (size_t k = 0; k != out->num_extra_headers; ++k, ++i)
        headers[i] = (sign_header_t){out->extra_headers[k].name, out->extra_headers[k].value, i};
    qsort(headers, num_headers, sizeof(*headers), cmp_header);

    /* Query parameters, encoded, sorted by name then value. */
    params = h2o_mem_alloc_pool(pool, sizeof(*params) * (req->num_query + 1));
    cap = 0;
    for (i = 0; i != req->num_query; ++i) {
        const weir_sigv4_pair_t *q = req->query + i;
        if ((ret = check_len(q->name, 0)) != 0 || (ret = check_len(q->value, 0)) != 0)
            return ret;
        params[i].name = weir_sigv4_uri_encode(pool, q->name.base, q->name.len, 0);
        params[i].value = weir_sigv4_uri_encode(pool, q->value.base, q->value.len, 0);
        cap += params[i].name.len + params[i].value.len + 2;
    }
    qsort(params, req->num_query, sizeof(*params), cmp_param);
    buf_init(pool, &b, cap);
    for (i = 0; i != req->num_query; ++i) {
        if (i != 0)
            buf_putc(&b, '&');
        buf_put(&b, params[i].name.base, params[i].name.len);
        buf_putc(&b, '=');
        buf_put(&b, params[i].value.base, params[i].value.len);
    }
    out->canonical_query = buf_finish(&b);

    out->canonical_uri = weir_sigv4_uri_encode(pool, req->path.base, req->path.len, 1);

    /* Signed headers. */
    cap = 0;
    for (i = 0; i != num_headers; ++i)
        cap += headers[i].lname.len + 1;
    buf_init(pool, &b, cap);
    for (i = 0; i != num_headers; ++i) {
        if (i != 0 && cmp_bytes(headers[i].lname, headers[i - 1].lname) == 0)
            continue;
        if (b.len != 0)
            buf_putc(&b, ';');
        buf_put(&b, headers[i].lname.base, headers[i].lname.len);
    }
    out->signed_headers = buf_finish(&b);

    /* Step 1: the canonical request. */
    cap = req->method.len + 1 + out->canonical_uri.len + 1 + out->canonical_query.len + 1;
    for (i = 0; i != num_headers; ++i)
        cap += headers[i].lname.len + headers[i].value.len + 2;
    cap += 1 + out->signed_headers.len + 1 + req->payload_hash.len;
    buf_init(pool, &b, cap);
    buf_put(&b, req->method.base, req->method.len);
    buf_putc(&b, '\n');
    buf_put(&b, out->canonical_uri.base, out->canonical_uri.len);
    buf_putc(&b, '\n');
    buf_put(&b, out->canonical_query.base, out->canonical_query.len);
    buf_putc(&b, '\n');
    for (i = 0; i != num_headers; ++i) {
        if (i != 0 && cmp_bytes(headers[i].lname, headers[i - 1].lname) == 0) {
            buf_putc(&b, ',');
        } else {
            if (i != 0)
                buf_putc(&b, '\n');
            buf_put(&b, headers[i].lname.base, headers[i].lname.len);
            buf_putc(&b, ':');
        }
        put_trimmed(&b, headers[i].value);
    }
    buf_puts(&b, "\n\n");
    buf_put(&b, out->signed_headers.base, out->signed_headers.len);
    buf_putc(&b, '\n');
    buf_put(&b, req->payload_hash.base, req->payload_hash.len);
    out->canonical_request = buf_finish(&b);

    /* Step 2: the string to sign. */
    cap = 8 + 1 + 1 + req->region.len + 1 + req->service.len + 1 + sizeof(TERMINATOR) - 1;
    buf_init(pool, &b, cap);
    buf_put(&b, req->amz_date.base, 8);
    buf_putc(&b, '/');
    buf_put(&b, req->region.base, req->region.len);
    buf_putc(&b, '/');
    buf_put(&b, req->service.base, req->service.len);
    buf_putc(&b, '/');
    buf_puts(&b, TERMINATOR);
    out->credential_scope = buf_finish(&b);
    if ((ret = weir_sigv4_sha256_hex(out->canonical_request.base, out->canonical_request.len, cr_hash)) != 0)
        return ret;
    buf_init(pool, &b, sizeof(ALGORITHM) + WEIR_SIGV4_DATE_LEN + 1 + out->credential_scope.len + 1 + WEIR_SIGV4_HEX_LEN);
    buf_puts(&b, ALGORITHM "\n");
    buf_put(&b, req->amz_date.base, req->amz_date.len);
    buf_putc(&b, '\n');
    buf_put(&b, out->credential_scope.base, out->credential_scope.len);
    buf_putc(&b, '\n');
    buf_put(&b, cr_hash, WEIR_SIGV4_HEX_LEN);
    out->string_to_sign = buf_finish(&b);

    /* Step 3: the signature. */
    if ((ret = weir_sigv4_derive_key(cred->secret_access_key, h2o_iovec_init(req->amz_date.base, 8), req->region, req->service,
                                     key)) != 0)
        return ret;
    ret = weir_sigv4_hmac_sha256(key, sizeof(key), out->string_to_sign.base, out->string_to_sign.len, sig);
    OPENSSL_cleanse(key, sizeof(key));
    if (ret != 0)
        return ret;
    weir_hex_encode(sig, sizeof(sig), out->signature);

    /* The Authorization header. */
    buf_init(pool, &b,
             sizeof(ALGORITHM " Credential=") + cred->access_key_id.len + 1 + out->credential_scope.len +
                 sizeof(", SignedHeaders=") + out->signed_headers.len + sizeof(", Signature=") + WEIR_SIGV4_HEX_LEN);
    buf_puts(&b, ALGORITHM " Credential=");
    buf_put(&b, cred->access_key_id.base, cred->access_key_id.len);
    buf_putc(&b, '/');
    buf_put(&b, out->credential_scope.base, out->credential_scope.len);
    buf_puts(&b, ", SignedHeaders=");
    buf_put(&b, out->signed_headers.base, out->signed_headers.len);
    buf_puts(&b, ", Signature=");
    buf_put(&b, out->signature, WEIR_SIGV4_HEX_LEN);
    out->authorization = buf_finish(&b);
    return 0;
}
