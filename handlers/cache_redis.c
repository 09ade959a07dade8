/*
 * The Redis backend: hiredis's async API on each worker's libuv loop. This is the only file that includes
 * hiredis/adapters/libuv.h.
 *
 * Per worker thread (vtable start/stop, from the handler's on_context_init/on_context_dispose) there is a pool of
 * connections. Each connection is in one of three states:
 *   DOWN       no hiredis context; its timer waits for the backoff delay (100 ms doubling to 5 s), then it connects;
 *   CONNECTING a context exists; AUTH, SELECT (when the URL asks for them) and a PING are queued on it, and its timer
 *              is the deadline of the attempt; the PING's reply makes it READY, any failure makes it DOWN;
 *   READY      commands are sent on it.
 * Commands go to READY connections in turn. While none is READY, commands fail at once with -EAGAIN (503), with one
 * exception: during a connection's very first attempt (the listeners open right after start, before the loop has
 * run), commands are queued by hiredis on that connection and sent after the PING; the command deadline bounds
 * them, and a failed attempt answers them -EAGAIN at once.
 *
 * Every command has its own deadline: a uv timer in the command's heap block, freed in the timer's close callback.
 * When the timer fires first, the call completes with -ETIMEDOUT and the block waits for the reply, which hiredis
 * always delivers (a real reply, or NULL when the context is freed), and then closes the timer. So a late reply only
 * frees memory, and the caller (the HTTP handler) is told exactly once. A late reply does not drop the connection:
 * replies stay in order, and a Redis that was only slow (DEBUG SLEEP) is usable again as soon as it answers.
 *
 * Teardown: a context we free ourselves is first detached (ac->data = NULL), so that the callbacks hiredis runs
 * while freeing it (pending commands with NULL replies, the disconnect callback) know it is no longer ours.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>
#include "weir/cache.h"
#include "weir/common.h"
#include "weir/health.h"
#include "weir/metrics.h"
#include "weir/text.h"

#define DEFAULT_PORT 6379
#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 5000

struct st_weir_cache_redis_t {
    weir_cache_redis_target_t target; /* host resolved to a numeric address */
    char *where;                      /* "host:port" or the socket path, for messages */
    unsigned pool_size;
    uint64_t timeout_ms;
    uint64_t backoff_min_ms;
    uint64_t backoff_max_ms;
    char *prefix;
    size_t prefix_len;
    weir_metrics_redis_t metrics;
    char *health_name; /* of the readiness check of each thread */
};

typedef enum en_conn_state_t {
    CONN_DOWN,
    CONN_CONNECTING,
    CONN_READY,
} conn_state_t;

struct st_redis_pool_t;

typedef struct st_redis_conn_t {
    uv_timer_t timer; /* backoff while DOWN, attempt deadline while CONNECTING; the conn is freed in its close callback */
    struct st_redis_pool_t *pool;
    redisAsyncContext *ac; /* NULL while DOWN */
    conn_state_t state;
    unsigned failures; /* consecutive failed attempts, for the backoff */
    int first_attempt; /* the attempt started by vtable start has not completed yet */
    int setup_failed;  /* an AUTH or SELECT reply was an error */
    char error[128];   /* the last reason of failure */
} redis_conn_t;

typedef struct st_redis_pool_t {
    weir_cache_redis_t *redis;
    uv_loop_t *loop;
    redis_conn_t **conns;
    unsigned num_conns;
    unsigned next;
    uint64_t connects;
    uint64_t failures;
    unsigned num_ready; /* atomic: connections READY, read by the readiness check from other threads */
    weir_health_check_t *health;
} redis_pool_t;

typedef enum en_cmd_op_t {
    CMD_GET,
    CMD_SET,
    CMD_DEL,
} cmd_op_t;

typedef struct st_redis_cmd_t {
    uv_timer_t timer;        /* the deadline; the command is freed in its close callback */
    weir_cache_call_t *call; /* NULL once the call has completed (reply or deadline) */
    cmd_op_t op;
    weir_cache_redis_t *redis;
} redis_cmd_t;

static void conn_connect(redis_conn_t *conn);

/* ---- URL ------------------------------------------------------------------------------------------------------ */

static char *decode_component(const char *s, size_t len)
{
    char *out = weir_malloc(len + 1);
    ssize_t n = weir_percent_decode(s, len, out, 0);
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

static int parse_unix_url(const char *rest, weir_cache_redis_target_t *t, char *err, size_t err_size)
{
    const char *q = strchr(rest, '?');
    size_t path_len = q != NULL ? (size_t)(q - rest) : strlen(rest);
    h2o_mem_pool_t pool;
    h2o_iovec_t v;
    uint64_t db;
    int ret = -EINVAL;

    if (strncmp(rest, "//", 2) == 0) { /* unix:///path */
        rest += 2;
        path_len -= 2;
    }
    if (path_len == 0 || rest[0] != '/') {
        snprintf(err, err_size, "expected an absolute socket path, as in unix:/run/redis/redis.sock");
        return -EINVAL;
    }
    t->unix_path = weir_strndup(rest, path_len);
    if (q == NULL)
        return 0;

    h2o_mem_init_pool(&pool);
    const char *query = q + 1;
    size_t query_len = strlen(query);
    switch (weir_query_find(&pool, query, query_len, "db", &v)) {
    case 0:
        if (weir_parse_decimal(v.base, v.len, INT32_MAX, &db) != 0) {
            snprintf(err, err_size, "db must be a non-negative integer");
            goto Exit;
        }
        t->db = (unsigned)db;
        break;
    case -ENOENT:
        break;
    default:
        snprintf(err, err_size, "malformed percent-encoding");
        goto Exit;
    }
    if (weir_query_find(&pool, query, query_len, "password", &v) == 0 && v.len != 0)
        t->password = weir_strndup(v.base, v.len);
    if (weir_query_find(&pool, query, query_len, "username", &v) == 0 && v.len != 0)
        t->username = weir_strndup(v.base, v.len);
    ret = 0;
Exit:
    h2o_mem_clear_pool(&pool);
    return ret;
}

static int parse_tcp_url(const char *rest, weir_cache_redis_target_t *t, char *err, size_t err_size)
{
    size_t auth_len = strcspn(rest, "/?#");
    const char *auth = rest, *auth_end = rest + auth_len, *path = auth_end;
    const char *at = NULL;
    uint64_t v;

    for (const char *p = auth; p < auth_end; ++p)
        if (*p == '@')
            at = p;
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon != NULL) {
            if (colon > auth && (t->username = decode_component(auth, (size_t)(colon - auth))) == NULL)
                goto BadEscape;
            if ((t->password = decode_component(colon + 1, (size_t)(at - colon - 1))) == NULL)
                goto BadEscape;
        } else if ((t->password = decode_component(auth, (size_t)(at - auth))) == NULL) {
            goto BadEscape;
        }
        if (t->password != NULL && t->password[0] == '\0') {
            free(t->password);
            t->password = NULL;
        }
        auth = at + 1;
    }

    const char *host = auth, *host_end, *port = NULL;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL) {
            snprintf(err, err_size, "unterminated IPv6 address");
            return -EINVAL;
        }
        ++host;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':') {
                snprintf(err, err_size, "unexpected text after the IPv6 address");
                return -EINVAL;
            }
            port = host_end + 2;
        }
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    if (host_end == host) {
        snprintf(err, err_size, "missing host");
        return -EINVAL;
    }
    t->host = weir_strndup(host, (size_t)(host_end - host));
    t->port = DEFAULT_PORT;
    if (port != NULL) {
        if (weir_parse_decimal(port, (size_t)(auth_end - port), 65535, &v) != 0 || v == 0) {
            snprintf(err, err_size, "port must be an integer from 1 to 65535");
            return -EINVAL;
        }
        t->port = (uint16_t)v;
    }

    if (*path == '/') {
        const char *db = path + 1;
        size_t db_len = strcspn(db, "?#");
        if (db_len != 0) {
            if (weir_parse_decimal(db, db_len, INT32_MAX, &v) != 0) {
                snprintf(err, err_size, "the path must be a database number, as in /0");
                return -EINVAL;
            }
            t->db = (unsigned)v;
        }
        path = db + db_len;
    }
    if (*path != '\0') {
        snprintf(err, err_size, "unexpected \"%s\"", path);
        return -EINVAL;
    }
    return 0;
BadEscape:
    snprintf(err, err_size, "malformed percent-encoding in the user name or password");
    return -EINVAL;
}

int weir_cache_redis_parse_url(const char *url, weir_cache_redis_target_t *target, char *err, size_t err_size)
{
    int ret;

    memset(target, 0, sizeof(*target));
    if (strncmp(url, "redis://", 8) == 0) {
        ret = parse_tcp_url(url + 8, target, err, err_size);
    } else if (strncmp(url, "unix:", 5) == 0) {
        ret = parse_unix_url(url + 5, target, err, err_size);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, err_size, "TLS (rediss://) is not supported");
        ret = -EINVAL;
    } else {
        snprintf(err, err_size, "expected redis://[[user]:password@]host[:port][/db] or unix:/path/to/redis.sock");
        ret = -EINVAL;
    }
    if (ret != 0)
        weir_cache_redis_target_dispose(target);
    return ret;
}

void weir_cache_redis_target_dispose(weir_cache_redis_target_t *target)
{
    free(target->host);
    free(target->unix_path);
    free(target->username);
    free(target->password);
    memset(target, 0, sizeof(*target));
}

/* ---- creation ------------------------------------------------------------------------------------------------- */

/* Replaces a host name by its first address, so that hiredis's getaddrinfo never blocks a loop on DNS. */
static int resolve_host(weir_cache_redis_target_t *t)
{
    unsigned char buf[sizeof(struct in6_addr)];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char addr[INET6_ADDRSTRLEN];
    int gai;

    if (t->host == NULL || inet_pton(AF_INET, t->host, buf) == 1 || inet_pton(AF_INET6, t->host, buf) == 1)
        return 0;
    if ((gai = getaddrinfo(t->host, NULL, &hints, &res)) != 0) {
        weir_error("cache: cannot resolve the Redis host \"%s\": %s", t->host, gai_strerror(gai));
        return -ENOENT;
    }
    /* Prefer IPv4, as hiredis does. */
    struct addrinfo *pick = res;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    if (pick->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, addr, sizeof(addr));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, addr, sizeof(addr));
    freeaddrinfo(res);
    free(t->host);
    t->host = weir_strdup(addr);
    return 0;
}

int weir_cache_redis_create(const weir_cache_redis_options_t *opts, weir_cache_redis_t **out)
{
    const char *url = opts->url != NULL ? opts->url : WEIR_CACHE_DEFAULT_REDIS_URL;
    weir_cache_redis_t *self;
    char err[160];
    int ret;

    if (opts->pool_size < 1 || opts->timeout_ms < 1) {
        weir_error("cache: the Redis pool needs at least one connection and a positive timeout");
        return -EINVAL;
    }
    self = weir_calloc(1, sizeof(*self));
    if (weir_cache_redis_parse_url(url, &self->target, err, sizeof(err)) != 0) {
        weir_error("cache: invalid Redis URL \"%s\": %s", url, err);
        ret = -EINVAL;
        goto Error;
    }
    if ((ret = resolve_host(&self->target)) != 0)
        goto Error;
    if (self->target.unix_path != NULL) {
        self->where = weir_strdup(self->target.unix_path);
    } else {
        size_t len = strlen(self->target.host) + 16;
        self->where = weir_malloc(len);
        snprintf(self->where, len, strchr(self->target.host, ':') != NULL ? "[%s]:%u" : "%s:%u", self->target.host,
                 (unsigned)self->target.port);
    }
    self->pool_size = opts->pool_size;
    self->timeout_ms = opts->timeout_ms;
    self->backoff_min_ms = opts->backoff_min_ms != 0 ? opts->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
    self->backoff_max_ms = opts->backoff_max_ms != 0 ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (self->backoff_max_ms < self->backoff_min_ms)
        self->backoff_max_ms = self->backoff_min_ms;
    self->prefix = weir_strdup(opts->prefix != NULL ? opts->prefix : "");
    self->prefix_len = strlen(self->prefix);
    const char *path = opts->path != NULL ? opts->path : "";
    weir_metrics_redis_init(&self->metrics, "cache", path);
    size_t name_len = strlen(path) + strlen(self->where) + 32;
    self->health_name = weir_malloc(name_len);
    snprintf(self->health_name, name_len, "cache %s: redis at %s", path, self->where);
    *out = self;
    return 0;
Error:
    weir_cache_redis_target_dispose(&self->target);
    free(self);
    return ret;
}

static void backend_destroy(void *data)
{
    weir_cache_redis_t *self = data;

    weir_cache_redis_target_dispose(&self->target);
    free(self->where);
    free(self->prefix);
    free(self->health_name);
    free(self);
}

/* ---- connections ---------------------------------------------------------------------------------------------- */

/* A connection became READY (+1) or stopped being (-1). */
static void pool_ready_add(redis_pool_t *pool, int delta)
{
    __atomic_store_n(&pool->num_ready, __atomic_load_n(&pool->num_ready, __ATOMIC_RELAXED) + (unsigned)delta, __ATOMIC_RELAXED);
    weir_metric_gauge_add(pool->redis->metrics.up, delta);
}

static int pool_is_up(void *_pool)
{
    redis_pool_t *pool = _pool;
    return __atomic_load_n(&pool->num_ready, __ATOMIC_RELAXED) != 0;
}

static void on_backoff_timer(uv_timer_t *timer)
{
    conn_connect(timer->data);
}

/* The attempt or the connection failed (its context is gone or going): wait, then try again. */
static void conn_failed(redis_conn_t *conn, const char *reason, int was_ready)
{
    redis_pool_t *pool = conn->pool;
    weir_cache_redis_t *redis = pool->redis;

    conn->state = CONN_DOWN;
    conn->first_attempt = 0;
    ++pool->failures;
    weir_metric_inc(redis->metrics.failures);
    if (was_ready)
        pool_ready_add(pool, -1);
    snprintf(conn->error, sizeof(conn->error), "%s", reason != NULL && reason[0] != '\0' ? reason : "unknown error");

    uint64_t delay = redis->backoff_min_ms;
    for (unsigned i = 0; i < conn->failures && delay < redis->backoff_max_ms; ++i)
        delay *= 2;
    if (delay > redis->backoff_max_ms)
        delay = redis->backoff_max_ms;
    if (was_ready)
        weir_warn("cache: lost the connection to Redis at %s: %s; reconnecting", redis->where, conn->error);
    else if (conn->failures == 0)
        weir_warn("cache: cannot connect to Redis at %s: %s; retrying with backoff", redis->where, conn->error);
    else
        weir_debug("cache: cannot connect to Redis at %s: %s; retrying in %llu ms", redis->where, conn->error,
                   (unsigned long long)delay);
    ++conn->failures;
    uv_timer_start(&conn->timer, on_backoff_timer, delay, 0);
}

/*
 * Gives up the connection's context (from anywhere, hiredis callbacks included: hiredis then frees it after the
 * callback returns). Pending commands complete with NULL replies (-EAGAIN).
 */
static void conn_drop(redis_conn_t *conn, const char *reason)
{
    redisAsyncContext *ac = conn->ac;
    int was_ready = conn->state == CONN_READY;

    conn->ac = NULL;
    conn->state = CONN_DOWN; /* before freeing answers a request, which could let another one in */
    uv_timer_stop(&conn->timer);
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    conn_failed(conn, reason, was_ready);
}

static void on_connect_timeout(uv_timer_t *timer)
{
    redis_conn_t *conn = timer->data;
    conn_drop(conn, "connection attempt timed out");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_conn_t *conn = ac->data;

    if (conn == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        ((redisAsyncContext *)ac)->data = NULL;
        conn->ac = NULL;
        uv_timer_stop(&conn->timer);
        conn_failed(conn, ac->errstr, 0);
        return;
    }
    if (conn->pool->redis->target.unix_path == NULL)
        redisEnableKeepAlive((redisContext *)&ac->c); /* fails on unix sockets, and would mark the context failed */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_conn_t *conn = ac->data;

    if (conn == NULL)
        return; /* we freed it ourselves */
    conn->ac = NULL;
    uv_timer_stop(&conn->timer);
    conn_failed(conn, ac->err != 0 ? ac->errstr : "closed by the server", conn->state == CONN_READY);
}

static void on_setup_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    redis_conn_t *conn = privdata;
    redisReply *reply = _reply;

    if (reply == NULL || ac->data != conn)
        return; /* the context is going away; whoever freed it handles the connection */
    if (reply->type == REDIS_REPLY_ERROR && !conn->setup_failed) {
        conn->setup_failed = 1;
        snprintf(conn->error, sizeof(conn->error), "%s", reply->str);
    }
}

static void on_ping_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    redis_conn_t *conn = privdata;
    redisReply *reply = _reply;
    char reason[160];

    if (reply == NULL || ac->data != conn)
        return;
    if (conn->setup_failed || reply->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s", conn->setup_failed ? conn->error : reply->str);
        conn_drop(conn, reason);
        return;
    }
    uv_timer_stop(&conn->timer);
    if (conn->failures != 0) {
        weir_info("cache: connected to Redis at %s again", conn->pool->redis->where);
        weir_metric_inc(conn->pool->redis->metrics.reconnects);
    }
    pool_ready_add(conn->pool, 1);
    conn->state = CONN_READY;
    conn->failures = 0;
    conn->first_attempt = 0;
    ++conn->pool->connects;
}

/*
 * Our own poll callback and read/write hooks, replacing those of hiredis 0.14's libuv adapter (its attach and cleanup
 * are kept). On POLLERR, which a connection reset or a refused connect gives, libuv stops the poll handle and calls
 * back with a status of UV_EBADF; the adapter returns without telling hiredis, and the connection would hang with its
 * commands forever. Here a failed poll becomes a read, which meets the socket's error and tears the context down.
 */
static void on_redis_poll(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;

    if (status != 0)
        events = UV_READABLE;
    if (p->context != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p)
{
    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, on_redis_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_READABLE;
    poll_update(p);
}

static void ev_del_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_READABLE;
    poll_update(p);
}

static void ev_add_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_WRITABLE;
    poll_update(p);
}

static void ev_del_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_WRITABLE;
    poll_update(p);
}

static void conn_connect(redis_conn_t *conn)
{
    weir_cache_redis_t *redis = conn->pool->redis;
    weir_cache_redis_target_t *t = &redis->target;
    redisAsyncContext *ac;
    char db[16];

    assert(conn->state == CONN_DOWN && conn->ac == NULL);
    conn->state = CONN_CONNECTING;
    conn->setup_failed = 0;
    ac = t->unix_path != NULL ? redisAsyncConnectUnix(t->unix_path) : redisAsyncConnect(t->host, t->port);
    if (ac == NULL) {
        conn_failed(conn, "out of memory", 0);
        return;
    }
    if (ac->err != 0) {
        char reason[128]; /* the context owns errstr */
        snprintf(reason, sizeof(reason), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_failed(conn, reason, 0);
        return;
    }
    if (redisLibuvAttach(ac, conn->pool->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_failed(conn, "cannot watch the socket", 0);
        return;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->data = conn;
    conn->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);

    /* Queued now, sent once connected, answered in order; the PING's reply marks the connection ready. */
    if (t->password != NULL) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (t->username != NULL)
            argv[argc++] = t->username;
        argv[argc++] = t->password;
        redisAsyncCommandArgv(ac, on_setup_reply, conn, argc, argv, NULL);
    }
    if (t->db != 0) {
        snprintf(db, sizeof(db), "%u", t->db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(ac, on_setup_reply, conn, 2, argv, NULL);
    }
    redisAsyncCommand(ac, on_ping_reply, conn, "PING");
    uv_update_time(conn->pool->loop);
    uv_timer_start(&conn->timer, on_connect_timeout, redis->timeout_ms, 0);
}

static void on_conn_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static int backend_start(void *data, uv_loop_t *loop, void **thread)
{
    weir_cache_redis_t *redis = data;
    redis_pool_t *pool = weir_calloc(1, sizeof(*pool));

    pool->redis = redis;
    pool->loop = loop;
    pool->num_conns = redis->pool_size;
    pool->conns = weir_calloc(pool->num_conns, sizeof(pool->conns[0]));
    for (unsigned i = 0; i < pool->num_conns; ++i) {
        redis_conn_t *conn = weir_calloc(1, sizeof(*conn));
        conn->pool = pool;
        conn->state = CONN_DOWN;
        conn->first_attempt = 1;
        uv_timer_init(loop, &conn->timer);
        conn->timer.data = conn;
        pool->conns[i] = conn;
        conn_connect(conn);
    }
    pool->health = weir_health_add(redis->health_name, pool_is_up, pool);
    *thread = pool;
    return 0;
}

static void backend_stop(void *data, void *thread)
{
    redis_pool_t *pool = thread;

    weir_health_remove(pool->health);
    for (unsigned i = 0; i < pool->num_conns; ++i) {
        redis_conn_t *conn = pool->conns[i];
        redisAsyncContext *ac = conn->ac;
        conn->ac = NULL;
        if (conn->state == CONN_READY)
            pool_ready_add(pool, -1);
        conn->state = CONN_DOWN;
        if (ac != NULL) {
            ac->data = NULL;
            redisAsyncFree(ac); /* pending commands complete with -EAGAIN; its poll handle is closed */
        }
        uv_timer_stop(&conn->timer);
        uv_close((uv_handle_t *)&conn->timer, on_conn_closed);
    }
    free(pool->conns);
    free(pool);
}

void weir_cache_redis_thread_stats(void *thread, weir_cache_redis_thread_stats_t *stats)
{
    redis_pool_t *pool = thread;

    memset(stats, 0, sizeof(*stats));
    for (unsigned i = 0; i < pool->num_conns; ++i)
        if (pool->conns[i]->state == CONN_READY)
            ++stats->ready;
    stats->connects = pool->connects;
    stats->failures = pool->failures;
}

/* ---- commands ------------------------------------------------------------------------------------------------- */

static redis_conn_t *pick_conn(redis_pool_t *pool)
{
    for (unsigned i = 0; i < pool->num_conns; ++i) {
        unsigned at = (pool->next + i) % pool->num_conns;
        if (pool->conns[at]->state == CONN_READY) {
            pool->next = (at + 1) % pool->num_conns;
            return pool->conns[at];
        }
    }
    for (unsigned i = 0; i < pool->num_conns; ++i)
        if (pool->conns[i]->state == CONN_CONNECTING && pool->conns[i]->first_attempt)
            return pool->conns[i];
    return NULL;
}

static void complete(weir_cache_call_t *call, int status, const char *message)
{
    weir_cache_result_t res = {.status = status, .message = message};
    call->on_done(call, &res);
}

static void on_cmd_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void on_cmd_timeout(uv_timer_t *timer)
{
    redis_cmd_t *cmd = timer->data;
    weir_cache_call_t *call = cmd->call;

    /* The block stays until hiredis hands the reply over. */
    cmd->call = NULL;
    weir_metric_inc(cmd->redis->metrics.timeouts);
    complete(call, -ETIMEDOUT, "Redis did not answer in time");
}

static void on_cmd_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    redis_cmd_t *cmd = privdata;
    redisReply *reply = _reply;
    weir_cache_call_t *call = cmd->call;
    weir_cache_result_t res = {0};
    char message[256];

    uv_timer_stop(&cmd->timer);
    uv_close((uv_handle_t *)&cmd->timer, on_cmd_closed);
    if (call == NULL)
        return; /* answered already (deadline) */
    cmd->call = NULL;

    if (reply == NULL) {
        res.status = -EAGAIN;
        res.message = "lost the connection to Redis";
    } else if (reply->type == REDIS_REPLY_ERROR) {
        res.status = -EPROTO;
        snprintf(message, sizeof(message), "Redis error: %s", reply->str);
        res.message = message;
    } else {
        switch (cmd->op) {
        case CMD_GET:
            if (reply->type == REDIS_REPLY_NIL) {
                res.status = -ENOENT;
            } else if (reply->type == REDIS_REPLY_STRING) {
                res.value = h2o_iovec_init(reply->str, reply->len);
            } else {
                res.status = -EPROTO;
            }
            break;
        case CMD_SET:
            if (reply->type != REDIS_REPLY_STATUS)
                res.status = -EPROTO;
            break;
        case CMD_DEL:
            if (reply->type == REDIS_REPLY_INTEGER)
                res.deleted = reply->integer > 0;
            else
                res.status = -EPROTO;
            break;
        }
        if (res.status == -EPROTO)
            res.message = "unexpected reply from Redis";
    }
    if (res.status != 0 && res.status != -ENOENT)
        weir_metric_inc(cmd->redis->metrics.errors);
    call->on_done(call, &res);
}

/* Sends argv (argv[1] is the key, to be prefixed) on a connection of the pool, or completes the call at once. */
static void issue(weir_cache_redis_t *redis, redis_pool_t *pool, weir_cache_call_t *call, cmd_op_t op, int argc, const char **argv,
                  size_t *lens)
{
    char message[192];
    redis_conn_t *conn;
    char *key = NULL;

    if (pool == NULL) {
        weir_metric_inc(redis->metrics.errors);
        complete(call, -EAGAIN, "the Redis backend did not start on this thread");
        return;
    }
    if ((conn = pick_conn(pool)) == NULL) {
        weir_metric_inc(redis->metrics.errors);
        const char *why = pool->conns[0]->error[0] != '\0' ? pool->conns[0]->error : "not connected yet";
        snprintf(message, sizeof(message), "Redis is unavailable: %s", why);
        complete(call, -EAGAIN, message);
        return;
    }
    if (redis->prefix_len != 0) {
        key = weir_malloc(redis->prefix_len + lens[1]);
        memcpy(key, redis->prefix, redis->prefix_len);
        memcpy(key + redis->prefix_len, argv[1], lens[1]);
        argv[1] = key;
        lens[1] += redis->prefix_len;
    }

    redis_cmd_t *cmd = weir_calloc(1, sizeof(*cmd));
    uv_timer_init(pool->loop, &cmd->timer);
    cmd->timer.data = cmd;
    cmd->op = op;
    cmd->redis = redis;
    if (redisAsyncCommandArgv(conn->ac, on_cmd_reply, cmd, argc, argv, lens) != REDIS_OK) {
        uv_close((uv_handle_t *)&cmd->timer, on_cmd_closed);
        weir_metric_inc(redis->metrics.errors);
        complete(call, -EAGAIN, "Redis is unavailable: the connection is closing");
    } else {
        cmd->call = call;
        /* The loop's cached time may be old when this iteration has been busy: the deadline counts from now. */
        uv_update_time(pool->loop);
        uv_timer_start(&cmd->timer, on_cmd_timeout, redis->timeout_ms, 0);
    }
    free(key);
}

static void backend_get(void *data, void *thread, weir_cache_call_t *call)
{
    const char *argv[] = {"GET", call->key.base};
    size_t lens[] = {3, call->key.len};
    issue(data, thread, call, CMD_GET, 2, argv, lens);
}

static void backend_set(void *data, void *thread, weir_cache_call_t *call)
{
    char ttl[16];
    const char *argv[] = {"SET", call->key.base, call->value.base != NULL ? call->value.base : "", "EX", ttl};
    size_t lens[] = {3, call->key.len, call->value.len, 2, 0};
    lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%u", (unsigned)call->ttl);
    issue(data, thread, call, CMD_SET, call->ttl != 0 ? 5 : 3, argv, lens);
}

static void backend_del(void *data, void *thread, weir_cache_call_t *call)
{
    const char *argv[] = {"DEL", call->key.base};
    size_t lens[] = {3, call->key.len};
    issue(data, thread, call, CMD_DEL, 2, argv, lens);
}

const weir_cache_backend_vtable_t weir_cache_redis_vtable = {
    .name = "redis",
    .start = backend_start,
    .stop = backend_stop,
    .get = backend_get,
    .set = backend_set,
    .del = backend_del,
    .destroy = backend_destroy,
};
