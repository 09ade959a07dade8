#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include "weir/respond.h"

void weir_respond_json(h2o_req_t *req, int status, const char *reason, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len; /* h2o_send_inline leaves it unset, which would make HTTP/1 chunked */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, len);
}

void weir_respond_error(h2o_req_t *req, int status, const char *reason, const char *message)
{
    h2o_iovec_t quoted;
    if (weir_json_quote(&req->pool, message, strlen(message), &quoted) != 0)
        quoted = h2o_iovec_init(H2O_STRLIT("\"invalid error message\""));
    h2o_iovec_t body = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("{\"error\": ")), quoted, h2o_iovec_init(H2O_STRLIT("}")));
    weir_respond_json(req, status, reason, body.base, body.len);
}

void weir_respond_method_not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    char msg[160];
    snprintf(msg, sizeof(msg), "method not allowed; allowed: %s", allow);
    weir_respond_error(req, 405, "Method Not Allowed", msg);
}

void weir_respond_not_found(h2o_req_t *req)
{
    weir_respond_error(req, 404, "Not Found", "not found");
}

int weir_path_is_exact(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized, conf = req->pathconf->path;
    /* a configured "/x/" matches "/x" and "/x/" */
    if (conf.len > 1 && conf.base[conf.len - 1] == '/')
        --conf.len;
    if (path.len > conf.len && path.base[path.len - 1] == '/' && path.len == conf.len + 1)
        --path.len;
    return h2o_memis(path.base, path.len, conf.base, conf.len);
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

/* One yajl generator per thread, reused for every string: quoting then costs no allocation beyond the copy into the
 * request's pool. The generator is freed when its thread exits. */
static pthread_key_t gen_key;
static pthread_once_t gen_once = PTHREAD_ONCE_INIT;

static void free_gen(void *gen)
{
    yajl_gen_free(gen);
}

static void create_gen_key(void)
{
    pthread_key_create(&gen_key, free_gen);
}

static yajl_gen thread_gen(void)
{
    pthread_once(&gen_once, create_gen_key);
    yajl_gen gen = pthread_getspecific(gen_key);
    if (gen == NULL) {
        gen = yajl_gen_alloc(NULL);
        pthread_setspecific(gen_key, gen);
    }
    return gen;
}

int weir_json_quote(h2o_mem_pool_t *pool, const char *s, size_t len, h2o_iovec_t *out)
{
    /* Beyond this, a grown buffer is given back rather than kept for the thread's next string. */
    static const size_t KEEP_BUFFER_MAX = 64 * 1024;
    const unsigned char *buf;
    size_t buflen;

    /* Validated here, strictly: yajl's own check lets overlong forms through. */
    if (!weir_utf8_is_valid(s, len))
        return -EILSEQ;
    /* Most strings need no escape (yajl escapes '"', '\\' and control characters, nothing else): quote them as they
     * are, which is what yajl would write, without the generator's per-string resets. */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
        ++i;
    if (i == len) {
        char *dst = h2o_mem_alloc_pool(pool, len + 3);
        dst[0] = '"';
        memcpy(dst + 1, s, len);
        dst[len + 1] = '"';
        dst[len + 2] = '\0'; /* as h2o_strdup leaves it */
        *out = h2o_iovec_init(dst, len + 2);
        return 0;
    }
    yajl_gen gen = thread_gen();
    yajl_gen_reset(gen, NULL);
    yajl_gen_clear(gen);
    yajl_gen_string(gen, (const unsigned char *)s, len);
    yajl_gen_get_buf(gen, &buf, &buflen);
    *out = h2o_strdup(pool, (const char *)buf, buflen);
    if (buflen > KEEP_BUFFER_MAX) {
        yajl_gen_free(gen);
        pthread_setspecific(gen_key, NULL);
    }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
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
            if ((hi = hexval((unsigned char)src[i + 1])) < 0 || (lo = hexval((unsigned char)src[i + 2])) < 0)
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
            if (!found && (size_t)dlen == name_len && memcmp(namebuf, name, name_len) == 0) {
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
                    if (*q == '%' && (pair_end - q < 3 || hexval((unsigned char)q[1]) < 0 || hexval((unsigned char)q[2]) < 0))
                        return -EINVAL;
            }
        }
        p = pair_end + 1;
    }
    return found ? 0 : -ENOENT;
}

int weir_query_get(h2o_req_t *req, const char *name, h2o_iovec_t *value)
{
    if (req->query_at == SIZE_MAX)
        return -ENOENT;
    return weir_query_find(&req->pool, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1, name, value);
}
