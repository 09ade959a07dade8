#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <yajl/yajl_gen.h>
#include "weir/respond.h"
#include "weir/text.h"

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

void weir_respond_unavailable(h2o_req_t *req, unsigned retry_after_s, const char *message)
{
    char buf[16];
    int len = snprintf(buf, sizeof(buf), "%u", retry_after_s != 0 ? retry_after_s : 1);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, buf, len).base, len);
    weir_respond_error(req, 503, "Service Unavailable", message);
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

int weir_query_param_or_respond(h2o_req_t *req, const char *name, h2o_iovec_t *value)
{
    char msg[128];

    if (req->query_at == SIZE_MAX)
        return 0;
    switch (weir_query_find(&req->pool, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1, name, value)) {
    case 0:
        return 1;
    case -ENOENT:
        return 0;
    case -EEXIST:
        snprintf(msg, sizeof(msg), "repeated query parameter \"%s\"", name);
        weir_respond_error(req, 400, "Bad Request", msg);
        return -1;
    default:
        weir_respond_error(req, 400, "Bad Request", "malformed query string");
        return -1;
    }
}

int weir_http1_peer_gone(h2o_req_t *req)
{
    if (req->version >= 0x200)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL)
        return 0;
    char c;
    ssize_t r = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
