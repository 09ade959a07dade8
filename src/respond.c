#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <yajl/yajl_gen.h>
#include "weir/conn.h"
#include "weir/respond.h"
#include "weir/text.h"

/* Answers of this size and more count against the memory budget. */
#define LARGE_ANSWER 16384

static uint64_t budget_limit = UINT64_MAX;
static uint64_t budget_used; /* atomic */

void weir_respond_set_memory_budget(uint64_t bytes)
{
    budget_limit = bytes;
}

uint64_t weir_respond_memory_in_use(void)
{
    return __atomic_load_n(&budget_used, __ATOMIC_RELAXED);
}

typedef struct st_reservation_t {
    size_t bytes;
} reservation_t;

static void on_reservation_disposed(void *_r)
{
    reservation_t *r = _r;
    __atomic_sub_fetch(&budget_used, r->bytes, __ATOMIC_RELAXED);
}

/* Reserves @p len bytes of the budget until @p req is disposed. @return 0, or -1 when the budget is spent. */
static int reserve(h2o_req_t *req, size_t len)
{
    uint64_t used = __atomic_add_fetch(&budget_used, len, __ATOMIC_RELAXED);
    if (used > budget_limit) {
        __atomic_sub_fetch(&budget_used, len, __ATOMIC_RELAXED);
        return -1;
    }
    reservation_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_reservation_disposed);
    r->bytes = len;
    return 0;
}

static void send_as(h2o_req_t *req, int status, const char *reason, const char *content_type, const char *body, size_t len)
{
    static h2o_generator_t generator = {NULL, NULL};

    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len; /* h2o leaves it unset, which would make HTTP/1 chunked */
    /* Draining: an answer to a request read before the drain began closes its HTTP/1 connection ("Connection: close")
     * rather than invite a next request that would find the connection closed. */
    if (req->conn->ctx->shutdown_requested)
        req->http1_is_persistent = 0;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    if (req->version >= 0x200 || len >= LARGE_ANSWER)
        weir_conn_answer_started(req);
    h2o_start_response(req, &generator);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))) {
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    } else {
        h2o_iovec_t buf = h2o_iovec_init(body, len);
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
    }
}

static void send_json(h2o_req_t *req, int status, const char *reason, const char *body, size_t len)
{
    send_as(req, status, reason, "application/json", body, len);
}

static int reserve_or_respond(h2o_req_t *req, size_t len)
{
    static const char BUSY[] = "{\"error\": \"too many large answers are waiting for their readers; try again later\"}";

    if (len < LARGE_ANSWER || reserve(req, len) == 0)
        return 0;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    send_json(req, 503, "Service Unavailable", BUSY, sizeof(BUSY) - 1);
    return -1;
}

void weir_respond_json_nocopy(h2o_req_t *req, int status, const char *reason, const char *body, size_t len)
{
    if (reserve_or_respond(req, len) != 0)
        return;
    send_json(req, status, reason, body, len);
}

void weir_respond_nocopy_as(h2o_req_t *req, int status, const char *reason, const char *content_type, const char *body, size_t len)
{
    if (reserve_or_respond(req, len) != 0)
        return;
    send_as(req, status, reason, content_type, body, len);
}

void weir_respond_json(h2o_req_t *req, int status, const char *reason, const char *body, size_t len)
{
    if (reserve_or_respond(req, len) != 0)
        return;
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    send_json(req, status, reason, copy, len);
}

void weir_respond_error(h2o_req_t *req, int status, const char *reason, const char *message)
{
    h2o_iovec_t body;
    if (weir_json_quote_wrapped(&req->pool, h2o_iovec_init(H2O_STRLIT("{\"error\": ")), message, strlen(message),
                                h2o_iovec_init(H2O_STRLIT("}")), &body) != 0)
        body = h2o_iovec_init(H2O_STRLIT("{\"error\": \"invalid error message\"}"));
    weir_respond_json_nocopy(req, status, reason, body.base, body.len);
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

/* prefix + bytes + suffix, with a NUL after (not counted), in one allocation of @p pool */
static h2o_iovec_t concat3(h2o_mem_pool_t *pool, h2o_iovec_t prefix, const void *bytes, size_t len, int quote, h2o_iovec_t suffix)
{
    size_t q = quote ? 1 : 0, total = prefix.len + q + len + q + suffix.len;
    char *dst = h2o_mem_alloc_pool(pool, total + 1), *p = dst;

    memcpy(p, prefix.base, prefix.len);
    p += prefix.len;
    if (quote)
        *p++ = '"';
    memcpy(p, bytes, len);
    p += len;
    if (quote)
        *p++ = '"';
    memcpy(p, suffix.base, suffix.len);
    p += suffix.len;
    *p = '\0'; /* as h2o_strdup leaves it */
    return h2o_iovec_init(dst, total);
}

int weir_json_quote_wrapped(h2o_mem_pool_t *pool, h2o_iovec_t prefix, const char *s, size_t len, h2o_iovec_t suffix,
                            h2o_iovec_t *out)
{
    /* Beyond this, a grown buffer is given back rather than kept for the thread's next string. */
    static const size_t KEEP_BUFFER_MAX = 64 * 1024;
    const unsigned char *buf;
    size_t buflen;

    /* Validated here, strictly: yajl's own check lets overlong forms through. */
    if (!weir_utf8_is_valid(s, len))
        return -EILSEQ;
    /* Most strings need no escape (yajl escapes '"', '\\' and control characters, nothing else): quote them as they
     * are, which is what yajl would write, straight into the answer. */
    size_t i = 0;
    while (i < len && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
        ++i;
    if (i == len) {
        *out = concat3(pool, prefix, s, len, 1, suffix);
        return 0;
    }
    yajl_gen gen = thread_gen();
    yajl_gen_reset(gen, NULL);
    yajl_gen_clear(gen);
    yajl_gen_string(gen, (const unsigned char *)s, len);
    yajl_gen_get_buf(gen, &buf, &buflen);
    *out = concat3(pool, prefix, buf, buflen, 0, suffix);
    if (buflen > KEEP_BUFFER_MAX) {
        yajl_gen_free(gen);
        pthread_setspecific(gen_key, NULL);
    }
    return 0;
}

int weir_json_quote(h2o_mem_pool_t *pool, const char *s, size_t len, h2o_iovec_t *out)
{
    return weir_json_quote_wrapped(pool, h2o_iovec_init("", 0), s, len, h2o_iovec_init("", 0), out);
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
