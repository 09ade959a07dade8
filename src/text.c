#include <errno.h>
#include <string.h>
#include "weir/text.h"

ssize_t weir_parse_decimal_prefix(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    for (; i < len; ++i) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            break;
        if (d > max || v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (i == 0)
        return 0;
    *out = v;
    return (ssize_t)i;
}

int weir_parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v;
    ssize_t n = weir_parse_decimal_prefix(s, len, max, &v);

    if (n < 0)
        return (int)n;
    if (n == 0 || (size_t)n != len)
        return -EINVAL;
    *out = v;
    return 0;
}

int weir_utf8_is_valid(const char *_s, size_t len)
{
    const unsigned char *s = (const unsigned char *)_s;
    size_t i = 0;

    while (i < len) {
        /* Runs of ASCII, a word at a time. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) != 0)
                break;
            i += 8;
        }
        if (i == len)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; ++k) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

int weir_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void weir_hex_encode(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    for (size_t i = 0; i != len; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

ssize_t weir_percent_decode(const char *src, size_t len, char *dst, int plus_is_space)
{
    size_t i, o = 0;
    for (i = 0; i < len; ++i) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3)
                return -EINVAL;
            if ((hi = weir_hex_digit((unsigned char)src[i + 1])) < 0 || (lo = weir_hex_digit((unsigned char)src[i + 2])) < 0)
                return -EINVAL;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = c;
        }
    }
    return (ssize_t)o;
}

int weir_query_find(h2o_mem_pool_t *pool, const char *query, size_t len, const char *name, h2o_iovec_t *value)
{
    size_t name_len = strlen(name);
    const char *p = query, *end = query + len;
    char *namebuf = NULL;
    int found = 0;

    /* The whole query is validated, so that a malformed escape anywhere is reported, not only in the parameter asked
     * for; a client sending one has a bug worth telling about. */
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p)), *name_end = eq != NULL ? eq : pair_end;
        size_t raw_name_len = (size_t)(name_end - p);
        if (raw_name_len != 0 || eq != NULL) {
            if (namebuf == NULL)
                namebuf = h2o_mem_alloc_pool(pool, len + 1);
            ssize_t dlen = weir_percent_decode(p, raw_name_len, namebuf, 1);
            if (dlen < 0)
                return -EINVAL;
            const char *vsrc = eq != NULL ? eq + 1 : pair_end;
            size_t vlen = (size_t)(pair_end - vsrc);
            if ((size_t)dlen == name_len && memcmp(namebuf, name, name_len) == 0) {
                if (found)
                    return -EEXIST;
                char *vbuf = h2o_mem_alloc_pool(pool, vlen + 1);
                ssize_t dv = weir_percent_decode(vsrc, vlen, vbuf, 1);
                if (dv < 0)
                    return -EINVAL;
                vbuf[dv] = '\0';
                *value = h2o_iovec_init(vbuf, (size_t)dv);
                found = 1;
            } else {
                /* validate only */
                for (const char *q = vsrc; q < pair_end; ++q)
                    if (*q == '%' && (pair_end - q < 3 || weir_hex_digit((unsigned char)q[1]) < 0 || weir_hex_digit((unsigned char)q[2]) < 0))
                        return -EINVAL;
            }
        }
        p = pair_end + 1;
    }
    return found ? 0 : -ENOENT;
}
