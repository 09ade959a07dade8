/*
 * Query strings and the validators the handlers build on them (text.h): weir_query_find for each parameter weir
 * reads, weir_percent_decode, weir_parse_decimal(_prefix) with the maxima of /calc's n and /cache's ttl, and the
 * values /cache takes as a key (any bytes: the handler bounds their length). The input is the query (the text
 * after "?").
 *
 * Each function is checked against a reference written here the plain way (split the query, decode whole pieces,
 * parse digits with 128-bit arithmetic), so that a wrong answer fails, not only a crash. The handlers' own code around
 * these calls (the 400 answers) runs in the http target.
 */
#include <errno.h>
#include <string.h>
#include "fuzz.h"
#include "weir/cache.h"
#include "weir/calc.h"
#include "weir/text.h"

static const char HEX[] = "0123456789abcdefABCDEF";

static int ref_hex(char c)
{
    const char *p = c != '\0' ? strchr(HEX, c) : NULL;
    if (p == NULL)
        return -1;
    return p - HEX < 16 ? (int)(p - HEX) : (int)(p - HEX) - 6;
}

/* Decodes into out (at least len bytes); -1 on a malformed escape. */
static long ref_decode(const char *s, size_t len, char *out, int plus_is_space)
{
    long n = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = ref_hex(s[i + 1]), lo = ref_hex(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = s[i] == '+' && plus_is_space ? ' ' : s[i];
        }
    }
    return n;
}

/* Digits only, non-empty, value <= max: 0 and *out. Otherwise -ERANGE when the digits before anything else are
 * already above max, -EINVAL when there is no digit or something follows the digits (as text.h documents). */
static int ref_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    unsigned __int128 v = 0;
    size_t i = 0;

    for (; i < len && s[i] >= '0' && s[i] <= '9'; ++i) {
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return -ERANGE;
    }
    if (i == 0 || i != len)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

/*
 * The query's pairs in order ("&"-separated, empty ones skipped unless they hold "="): the first occurrence of
 * @p name gives the value; a pair that has a malformed escape in its name, or in its value, makes the query malformed;
 * a second occurrence of the name is a repeat. What comes first in the query decides between the two.
 */
static int ref_find(const char *q, size_t len, const char *name, char *value, size_t *value_len)
{
    size_t name_len = strlen(name), start = 0;
    int found = 0;
    char *tmp = malloc(len + 1);
    int ret;

    while (start <= len) {
        size_t end = start;
        while (end < len && q[end] != '&')
            ++end;
        size_t eq = start;
        while (eq < end && q[eq] != '=')
            ++eq;
        if (eq != start || eq < end) {
            long n = ref_decode(q + start, eq - start, tmp, 1);
            const char *v = eq < end ? q + eq + 1 : q + end;
            size_t vlen = (size_t)(q + end - v);
            if (n < 0) {
                ret = -EINVAL;
                goto Exit;
            }
            if ((size_t)n == name_len && memcmp(tmp, name, name_len) == 0) {
                if (found) {
                    ret = -EEXIST;
                    goto Exit;
                }
                found = 1;
            }
            long vn = ref_decode(v, vlen, tmp, 1);
            if (vn < 0) {
                ret = -EINVAL;
                goto Exit;
            }
            if (found == 1) {
                memcpy(value, tmp, (size_t)vn);
                *value_len = (size_t)vn;
                found = 2;
            }
        }
        start = end + 1;
    }
    ret = found ? 0 : -ENOENT;
Exit:
    free(tmp);
    return ret;
}

static void check_decimal(const char *s, size_t len, uint64_t max)
{
    uint64_t got = 12345, want = 54321;
    int r = weir_parse_decimal(s, len, max, &got), rr = ref_decimal(s, len, max, &want);
    FUZZ_CHECK(r == rr);
    if (r == 0)
        FUZZ_CHECK(got == want);
    else
        FUZZ_CHECK(got == 12345); /* nothing set on failure */

    /* the prefix variant: the leading digits, as many as there are */
    size_t digits = 0;
    while (digits < len && s[digits] >= '0' && s[digits] <= '9')
        ++digits;
    ssize_t pr = weir_parse_decimal_prefix(s, len, max, &got);
    if (digits == 0) {
        FUZZ_CHECK(pr == 0);
    } else {
        rr = ref_decimal(s, digits, max, &want);
        FUZZ_CHECK(rr == 0 ? pr == (ssize_t)digits && got == want : pr == -ERANGE);
    }
}

/* What /calc and /cache do with a value found (handlers/calc.c, handlers/cache.c). */
static void check_handler_rules(const char *name, const h2o_iovec_t *v)
{
    uint64_t n;

    if (strcmp(name, "n") == 0) {
        check_decimal(v->base, v->len, 100000000); /* calc.max-n's default */
        check_decimal(v->base, v->len, WEIR_CALC_N_LIMIT);
        check_decimal(v->base, v->len, 0);
    } else if (strcmp(name, "ttl") == 0) {
        check_decimal(v->base, v->len, WEIR_CACHE_MAX_TTL);
        if (weir_parse_decimal(v->base, v->len, WEIR_CACHE_MAX_TTL, &n) == 0)
            FUZZ_CHECK(n <= INT32_MAX);
    }
    check_decimal(v->base, v->len, UINT64_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The names weir looks up: /calc, /cache, and the unix: Redis URL's query; "" finds a pair such as "=v". */
    static const char *const NAMES[] = {"n", "key", "ttl", "db", "password", "username", ""};
    const char *q = (const char *)data;
    char *dec = malloc(size + 1), *ref = malloc(size + 1), *enc = malloc(3 * size + 1);
    h2o_mem_pool_t pool;
    int valid = 1;

    h2o_mem_init_pool(&pool);

    /* percent-decoding, with and without '+' as space */
    for (int plus = 0; plus <= 1; ++plus) {
        ssize_t n = weir_percent_decode(q, size, dec, plus);
        long rn = ref_decode(q, size, ref, plus);
        FUZZ_CHECK(n == rn || (n == -EINVAL && rn < 0));
        if (n < 0) {
            valid = 0;
            continue;
        }
        FUZZ_CHECK((size_t)n <= size && memcmp(dec, ref, (size_t)n) == 0);
        /* encoding every byte and decoding again gives the bytes back */
        for (ssize_t i = 0; i < n; ++i)
            snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)dec[i]);
        FUZZ_CHECK(weir_percent_decode(enc, 3 * (size_t)n, ref, 0) == n && memcmp(dec, ref, (size_t)n) == 0);
    }

    int any_malformed = 0, any_answer = 0;
    for (size_t i = 0; i != sizeof(NAMES) / sizeof(NAMES[0]); ++i) {
        h2o_iovec_t v = {NULL, 0};
        size_t ref_len = 0;
        int r = weir_query_find(&pool, q, size, NAMES[i], &v), rr = ref_find(q, size, NAMES[i], ref, &ref_len);
        FUZZ_CHECK(r == rr);
        any_malformed |= r == -EINVAL;
        any_answer |= r == 0 || r == -ENOENT;
        if (r == 0) {
            FUZZ_CHECK(v.len == ref_len && memcmp(v.base, ref, v.len) == 0);
            FUZZ_CHECK(v.base[v.len] == '\0');
            check_handler_rules(NAMES[i], &v);
        }
    }
    /* The whole query is validated whatever the name: a bad escape anywhere (the query does not decode as a whole)
     * means no name gets an answer (a value or "absent"), only "malformed" or "repeated"; no bad escape, no
     * "malformed". */
    if (valid)
        FUZZ_CHECK(!any_malformed);
    else
        FUZZ_CHECK(!any_answer);

    check_decimal(q, size, UINT64_MAX);
    check_decimal(q, size, 100000000);
    h2o_mem_clear_pool(&pool);
    free(dec);
    free(ref);
    free(enc);
    return 0;
}
