/*
 * The Redis client layer (see redis.h): hiredis's async API on a libuv loop, through weir's own event hooks (one
 * uv_poll_t per context, below) rather than hiredis 0.14's adapters/libuv.h, whose attach leaks its block and leaves a
 * cleanup hook that dereferences NULL when uv_poll_init fails, and whose poll callback ignores POLLERR.
 *
 * A client (a pool of command connections) and a subscriber share one connection machine. Each connection is in one
 * of these states:
 *   DOWN       no hiredis context; its timer waits for the backoff delay (doubling from backoff-min to backoff-max),
 *              then it connects;
 *   CONNECTING a context exists; the setup is queued on it (AUTH and SELECT when the URL asks for them; for a command
 *              connection SCRIPT LOAD of every script and a PING, whose reply makes it READY; for a subscriber, SUBSCRIBE,
 *              whose confirmation makes it READY), and its timer is the deadline of the attempt; any failure makes it
 *              DOWN;
 *   READY      commands are sent on it (a subscriber only receives).
 * A stopped connection is CLOSING: no more reconnection; it is freed once its context is gone and its timer closed.
 *
 * Commands go to READY connections in turn. While none is READY, commands fail at once with -EAGAIN, with one
 * exception: during a connection's very first attempt (the listeners open right after start, before the loop has
 * run), commands are queued by hiredis on that connection and sent after the setup; the command deadline bounds them,
 * and a failed attempt answers them -EAGAIN at once.
 *
 * Every command has its own deadline: a uv timer in the command's heap block, freed in the timer's close callback.
 * When the timer fires first, the call completes with -ETIMEDOUT and the block waits for the reply, which hiredis
 * always delivers (a real reply, or NULL when the context is freed), and then closes the timer. So a late reply only
 * frees memory, and the caller is told exactly once. A late reply does not drop the connection: replies stay in
 * order, and a Redis that was only slow (DEBUG SLEEP) is usable again as soon as it answers.
 *
 * Teardown: a context we free ourselves is first detached (ac->data = NULL), so that the callbacks hiredis runs
 * while freeing it (pending commands with NULL replies, the disconnect callback) know it is no longer ours. State
 * changes (up/down) are told from a zero-delay timer, never from inside a call of ours, so that a caller is never
 * re-entered.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/sha.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include "weir/common.h"
#include "weir/health.h"
#include "weir/metrics.h"
#include "weir/redis.h"

#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 5000

struct st_weir_redis_t {
    weir_redis_target_t target; /* host resolved to a numeric address */
    char *where;                /* "host:port" or the socket path, for messages */
    char *who;
    unsigned pool_size;
    uint64_t timeout_ms;
    uint64_t backoff_min_ms;
    uint64_t backoff_max_ms;
    const weir_redis_script_t **scripts;
    size_t num_scripts;
    weir_metrics_redis_t metrics; /* use = who, path = options' path */
    char *health_name;            /* of each command client's readiness check */
};

typedef enum en_conn_state_t {
    CONN_DOWN,
    CONN_CONNECTING,
    CONN_READY,
    CONN_CLOSING,
} conn_state_t;

typedef enum en_owner_kind_t {
    KIND_COMMANDS,
    KIND_SUBSCRIBER,
} owner_kind_t;

/* What clients and subscribers have in common: the connections' owner. */
typedef struct st_owner_t {
    weir_redis_t *redis;
    uv_loop_t *loop;
    owner_kind_t kind;
    weir_redis_state_cb on_state;
    void *data;
    uv_timer_t *notify; /* tells state changes from the loop; NULL once closed */
    int state;          /* -1 starting (first attempts under way), 0 down, 1 up */
    int told;           /* the state last told, -1 none yet */
    int stopped;
    unsigned ready; /* atomic (written by the loop's thread, read by readiness checks) */
    weir_health_check_t *health;
    unsigned open; /* connections and handles not yet freed; the owner is freed when it reaches 0 after stop */
    uint64_t connects;
    uint64_t failures;
    uint64_t commands;
} owner_t;

typedef struct st_conn_t {
    uv_timer_t timer; /* backoff while DOWN, attempt deadline while CONNECTING, flush deadline while CLOSING */
    owner_t *owner;
    redisAsyncContext *ac; /* NULL while DOWN */
    conn_state_t state;
    unsigned failures; /* consecutive failed attempts, for the backoff */
    int first_attempt; /* the attempt started by start has not completed yet */
    int setup_failed;  /* an AUTH, SELECT or SCRIPT LOAD reply was an error */
    char error[128];   /* the last reason of failure */
} conn_t;

struct st_weir_redis_client_t {
    owner_t super;
    conn_t **conns;
    unsigned num_conns;
    unsigned next;
};

struct st_weir_redis_subscriber_t {
    owner_t super;
    conn_t *conn;
    char *channel;
    weir_redis_message_cb on_message;
};

typedef struct st_cmd_t {
    uv_timer_t timer;       /* the deadline; the command is freed in its close callback */
    weir_redis_reply_cb cb; /* NULL once the call has completed (reply or deadline) */
    void *data;
    const weir_redis_script_t *script; /* EVALSHA: retried once as EVAL on NOSCRIPT */
    int argc;
    const char **argv; /* EVALSHA: a copy of the arguments, for the retry */
    size_t *lens;
    weir_redis_t *redis; /* for its metrics */
} cmd_t;

static void conn_connect(conn_t *conn);

/* ---- scripts ---------------------------------------------------------------------------------------------------- */

void weir_redis_script_init(weir_redis_script_t *script, const char *source)
{
    unsigned char md[SHA_DIGEST_LENGTH];

    script->source = source;
    SHA1((const unsigned char *)source, strlen(source), md);
    for (size_t i = 0; i != SHA_DIGEST_LENGTH; ++i)
        snprintf(script->sha1 + 2 * i, 3, "%02x", md[i]);
}

/* ---- creation --------------------------------------------------------------------------------------------------- */

/* Replaces a host name by its first address, so that hiredis's getaddrinfo never blocks a loop on DNS. */
static int resolve_host(weir_redis_target_t *t, const char *who)
{
    unsigned char buf[sizeof(struct in6_addr)];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char addr[INET6_ADDRSTRLEN];
    int gai;

    if (t->host == NULL || inet_pton(AF_INET, t->host, buf) == 1 || inet_pton(AF_INET6, t->host, buf) == 1)
        return 0;
    if ((gai = getaddrinfo(t->host, NULL, &hints, &res)) != 0) {
        weir_error("%s: cannot resolve the Redis host \"%s\": %s", who, t->host, gai_strerror(gai));
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

int weir_redis_create(const weir_redis_options_t *opts, weir_redis_t **out)
{
    const char *who = opts->who != NULL ? opts->who : "redis";
    weir_redis_t *self;
    char err[160];
    int ret;

    if (opts->url == NULL || opts->pool_size < 1 || opts->timeout_ms < 1) {
        weir_error("%s: a Redis client needs a URL, at least one connection and a positive timeout", who);
        return -EINVAL;
    }
    self = weir_calloc(1, sizeof(*self));
    if (weir_redis_parse_url(opts->url, &self->target, err, sizeof(err)) != 0) {
        weir_error("%s: invalid Redis URL \"%s\": %s", who, opts->url, err);
        ret = -EINVAL;
        goto Error;
    }
    if ((ret = resolve_host(&self->target, who)) != 0)
        goto Error;
    if (self->target.unix_path != NULL) {
        self->where = weir_strdup(self->target.unix_path);
    } else {
        size_t len = strlen(self->target.host) + 16;
        self->where = weir_malloc(len);
        snprintf(self->where, len, strchr(self->target.host, ':') != NULL ? "[%s]:%u" : "%s:%u", self->target.host,
                 (unsigned)self->target.port);
    }
    self->who = weir_strdup(who);
    const char *path = opts->path != NULL ? opts->path : "";
    weir_metrics_redis_init(&self->metrics, who, path);
    size_t name_len = strlen(who) + strlen(path) + strlen(self->where) + 32;
    self->health_name = weir_malloc(name_len);
    snprintf(self->health_name, name_len, "%s %s: redis at %s", who, path, self->where);
    self->pool_size = opts->pool_size;
    self->timeout_ms = opts->timeout_ms;
    self->backoff_min_ms = opts->backoff_min_ms != 0 ? opts->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
    self->backoff_max_ms = opts->backoff_max_ms != 0 ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (self->backoff_max_ms < self->backoff_min_ms)
        self->backoff_max_ms = self->backoff_min_ms;
    if (opts->num_scripts != 0) {
        self->scripts = weir_calloc(opts->num_scripts, sizeof(self->scripts[0]));
        for (size_t i = 0; i != opts->num_scripts; ++i)
            self->scripts[i] = opts->scripts[i];
        self->num_scripts = opts->num_scripts;
    }
    *out = self;
    return 0;
Error:
    weir_redis_target_dispose(&self->target);
    free(self);
    return ret;
}

void weir_redis_destroy(weir_redis_t *redis)
{
    weir_redis_target_dispose(&redis->target);
    free(redis->where);
    free(redis->who);
    free(redis->health_name);
    free(redis->scripts);
    free(redis);
}

const char *weir_redis_where(const weir_redis_t *redis)
{
    return redis->where;
}

/* ---- owners: state and lifetime ----------------------------------------------------------------------------------- */

static void owner_free_if_done(owner_t *owner)
{
    if (!owner->stopped || owner->open != 0)
        return;
    if (owner->kind == KIND_COMMANDS) {
        weir_redis_client_t *client = (weir_redis_client_t *)owner;
        free(client->conns);
        free(client);
    } else {
        weir_redis_subscriber_t *sub = (weir_redis_subscriber_t *)owner;
        free(sub->channel);
        free(sub);
    }
}

static void on_notify(uv_timer_t *timer)
{
    owner_t *owner = timer->data;

    if (owner->stopped || owner->state < 0 || owner->told == owner->state)
        return;
    owner->told = owner->state;
    if (owner->on_state != NULL)
        owner->on_state(owner->data, owner->state);
}

static void on_notify_closed(uv_handle_t *handle)
{
    owner_t *owner = handle->data;
    free(handle);
    --owner->open;
    owner_free_if_done(owner);
}

/* A connection of @p owner became ready (+1) or stopped being (-1). @return the connections ready now. */
static unsigned owner_ready_add(owner_t *owner, int delta)
{
    unsigned ready = owner->ready + (unsigned)delta;
    __atomic_store_n(&owner->ready, ready, __ATOMIC_RELAXED);
    weir_metric_gauge_add(owner->redis->metrics.up, delta);
    return ready;
}

/* The readiness check of a command client (health.h): a connection is ready. */
static int owner_is_up(void *owner)
{
    return __atomic_load_n(&((owner_t *)owner)->ready, __ATOMIC_RELAXED) != 0;
}

static void owner_init(owner_t *owner, weir_redis_t *redis, uv_loop_t *loop, owner_kind_t kind, weir_redis_state_cb on_state,
                       void *data)
{
    owner->redis = redis;
    owner->loop = loop;
    owner->kind = kind;
    owner->on_state = on_state;
    owner->data = data;
    owner->state = -1;
    owner->told = -1;
    owner->notify = weir_malloc(sizeof(*owner->notify));
    uv_timer_init(loop, owner->notify);
    owner->notify->data = owner;
    owner->open = 1;
    if (kind == KIND_COMMANDS)
        owner->health = weir_health_add(redis->health_name, owner_is_up, owner);
}

/* Records the state and tells it from the loop (never from inside a call of ours). */
static void owner_set_state(owner_t *owner, int up)
{
    owner->state = up;
    if (!owner->stopped && owner->told != up)
        uv_timer_start(owner->notify, on_notify, 0, 0);
}

/* A connection's attempt failed or its connection was lost. */
static void owner_conn_down(owner_t *owner, conn_t *conn, int was_ready)
{
    if (was_ready) {
        if (owner_ready_add(owner, -1) == 0)
            owner_set_state(owner, 0);
        return;
    }
    if (owner->ready != 0 || owner->state >= 0)
        return;
    /* The first attempts have failed: down (the caller can stop waiting for them) once none is still under way. */
    if (owner->kind == KIND_COMMANDS) {
        weir_redis_client_t *client = (weir_redis_client_t *)owner;
        for (unsigned i = 0; i != client->num_conns; ++i)
            if (client->conns[i] != conn && client->conns[i]->first_attempt)
                return;
    }
    owner_set_state(owner, 0);
}

static void owner_conn_ready(owner_t *owner)
{
    if (owner_ready_add(owner, 1) == 1)
        owner_set_state(owner, 1);
}

/* ---- connections -------------------------------------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *handle)
{
    conn_t *conn = handle->data;
    owner_t *owner = conn->owner;
    free(conn);
    --owner->open;
    owner_free_if_done(owner);
}

/* A CLOSING connection whose context is gone: close its timer, which frees it. */
static void conn_release(conn_t *conn)
{
    uv_timer_stop(&conn->timer);
    uv_close((uv_handle_t *)&conn->timer, on_conn_closed);
}

static void on_backoff_timer(uv_timer_t *timer)
{
    conn_connect(timer->data);
}

/* The attempt or the connection failed (its context is gone or going): wait, then try again. */
static void conn_failed(conn_t *conn, const char *reason, int was_ready)
{
    owner_t *owner = conn->owner;
    weir_redis_t *redis = owner->redis;
    int was_first = conn->first_attempt;

    conn->state = CONN_DOWN;
    conn->first_attempt = 0;
    ++owner->failures;
    weir_metric_inc(redis->metrics.failures);
    snprintf(conn->error, sizeof(conn->error), "%s", reason != NULL && reason[0] != '\0' ? reason : "unknown error");

    uint64_t delay = redis->backoff_min_ms;
    for (unsigned i = 0; i < conn->failures && delay < redis->backoff_max_ms; ++i)
        delay *= 2;
    if (delay > redis->backoff_max_ms)
        delay = redis->backoff_max_ms;
    if (was_ready)
        weir_warn("%s: lost the connection to Redis at %s: %s; reconnecting", redis->who, redis->where, conn->error);
    else if (conn->failures == 0)
        weir_warn("%s: cannot connect to Redis at %s: %s; retrying with backoff", redis->who, redis->where, conn->error);
    else
        weir_debug("%s: cannot connect to Redis at %s: %s; retrying in %llu ms", redis->who, redis->where, conn->error,
                   (unsigned long long)delay);
    ++conn->failures;
    uv_timer_start(&conn->timer, on_backoff_timer, delay, 0);
    if (was_ready || was_first)
        owner_conn_down(owner, conn, was_ready);
}

/*
 * Gives up the connection's context (from anywhere, hiredis callbacks included: hiredis then frees it after the
 * callback returns). Pending commands complete with NULL replies (-EAGAIN).
 */
static void conn_drop(conn_t *conn, const char *reason)
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
    conn_drop(timer->data, "connection attempt timed out");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *conn = ac->data;

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
    if (conn->owner->redis->target.unix_path == NULL)
        redisEnableKeepAlive((redisContext *)&ac->c); /* fails on unix sockets, and would mark the context failed */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn_t *conn = ac->data;

    if (conn == NULL)
        return; /* we freed it ourselves */
    conn->ac = NULL;
    if (conn->state == CONN_CLOSING) {
        conn_release(conn); /* a flushed stop is complete */
        return;
    }
    uv_timer_stop(&conn->timer);
    conn_failed(conn, ac->err != 0 ? ac->errstr : "closed by the server", conn->state == CONN_READY);
}

static void conn_became_ready(conn_t *conn)
{
    owner_t *owner = conn->owner;

    uv_timer_stop(&conn->timer);
    if (conn->failures != 0) {
        weir_info("%s: connected to Redis at %s again", owner->redis->who, owner->redis->where);
        weir_metric_inc(owner->redis->metrics.reconnects);
    }
    conn->state = CONN_READY;
    conn->failures = 0;
    conn->first_attempt = 0;
    ++owner->connects;
    owner_conn_ready(owner);
}

static void on_setup_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = _reply;

    if (reply == NULL || ac->data != conn)
        return; /* the context is going away; whoever freed it handles the connection */
    if (reply->type == REDIS_REPLY_ERROR && !conn->setup_failed) {
        conn->setup_failed = 1;
        snprintf(conn->error, sizeof(conn->error), "%s", reply->str);
        /* A subscriber has no PING to wait for: the SUBSCRIBE would be refused with a reply nobody waits for. */
        if (conn->owner->kind == KIND_SUBSCRIBER) {
            char reason[160];
            snprintf(reason, sizeof(reason), "%s", conn->error);
            conn_drop(conn, reason);
        }
    }
}

static void on_ping_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = _reply;
    char reason[160];

    if (reply == NULL || ac->data != conn)
        return;
    if (conn->setup_failed || reply->type == REDIS_REPLY_ERROR) {
        snprintf(reason, sizeof(reason), "%s", conn->setup_failed ? conn->error : reply->str);
        conn_drop(conn, reason);
        return;
    }
    conn_became_ready(conn);
}

/* The subscription's callback: its confirmation, then every message; NULL when the context goes away. */
static void on_subscription(redisAsyncContext *ac, void *_reply, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = _reply;

    if (reply == NULL || ac->data != conn || conn->state == CONN_CLOSING)
        return;
    weir_redis_subscriber_t *sub = (weir_redis_subscriber_t *)conn->owner;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0) {
        if (conn->state == CONN_CONNECTING && !conn->setup_failed)
            conn_became_ready(conn);
    } else if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        sub->on_message(sub->super.data, reply->element[2]->str, reply->element[2]->len);
    }
}

/*
 * The event hooks of a context: one uv_poll_t on its socket. On POLLERR, which a connection reset or a refused connect
 * gives, libuv stops the poll handle and calls back with a status of UV_EBADF; hiredis must still be told, or the
 * connection would hang with its commands forever: a failed poll becomes a read, which meets the socket's error and
 * tears the context down. hiredis calls the cleanup hook when it frees the context; the block is freed once libuv has
 * closed the handle.
 */
typedef struct st_redis_events_t {
    uv_poll_t handle;
    redisAsyncContext *context; /* NULL once hiredis has freed it */
    int events;
} redis_events_t;

static void on_redis_poll(uv_poll_t *handle, int status, int events)
{
    redis_events_t *p = handle->data;

    if (status != 0)
        events = UV_READABLE;
    if (p->context != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_update(redis_events_t *p)
{
    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, on_redis_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *privdata)
{
    redis_events_t *p = privdata;
    p->events |= UV_READABLE;
    poll_update(p);
}

static void ev_del_read(void *privdata)
{
    redis_events_t *p = privdata;
    p->events &= ~UV_READABLE;
    poll_update(p);
}

static void ev_add_write(void *privdata)
{
    redis_events_t *p = privdata;
    p->events |= UV_WRITABLE;
    poll_update(p);
}

static void ev_del_write(void *privdata)
{
    redis_events_t *p = privdata;
    p->events &= ~UV_WRITABLE;
    poll_update(p);
}

static void on_events_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void ev_cleanup(void *privdata)
{
    redis_events_t *p = privdata;
    p->context = NULL;
    uv_close((uv_handle_t *)&p->handle, on_events_closed);
}

/* Watches @p ac's socket on @p loop. On failure nothing is attached, and redisAsyncFree frees the context alone. */
static int events_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    redis_events_t *p = weir_calloc(1, sizeof(*p));

    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->handle.data = p;
    p->context = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

static void conn_connect(conn_t *conn)
{
    owner_t *owner = conn->owner;
    weir_redis_t *redis = owner->redis;
    weir_redis_target_t *t = &redis->target;
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
    if (events_attach(ac, owner->loop) != 0) {
        redisAsyncFree(ac);
        conn_failed(conn, "cannot watch the socket", 0);
        return;
    }
    ac->data = conn;
    conn->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);

    /* Queued now, sent once connected, answered in order. */
    if (t->password != NULL) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (t->username != NULL)
            argv[argc++] = t->username;
        argv[argc++] = t->password;
        redisAsyncCommandArgv(ac, on_setup_reply, conn, argc, argv, NULL);
    }
    if (owner->kind == KIND_SUBSCRIBER) {
        /* Channels are global to the server, not per database: no SELECT. */
        weir_redis_subscriber_t *sub = (weir_redis_subscriber_t *)owner;
        const char *argv[2] = {"SUBSCRIBE", sub->channel};
        redisAsyncCommandArgv(ac, on_subscription, conn, 2, argv, NULL);
    } else {
        if (t->db != 0) {
            snprintf(db, sizeof(db), "%u", t->db);
            const char *argv[2] = {"SELECT", db};
            redisAsyncCommandArgv(ac, on_setup_reply, conn, 2, argv, NULL);
        }
        for (size_t i = 0; i != redis->num_scripts; ++i) {
            const char *argv[3] = {"SCRIPT", "LOAD", redis->scripts[i]->source};
            redisAsyncCommandArgv(ac, on_setup_reply, conn, 3, argv, NULL);
        }
        redisAsyncCommand(ac, on_ping_reply, conn, "PING");
    }
    uv_update_time(owner->loop);
    uv_timer_start(&conn->timer, on_connect_timeout, redis->timeout_ms, 0);
}

static conn_t *conn_create(owner_t *owner)
{
    conn_t *conn = weir_calloc(1, sizeof(*conn));
    conn->owner = owner;
    conn->state = CONN_DOWN;
    conn->first_attempt = 1;
    uv_timer_init(owner->loop, &conn->timer);
    conn->timer.data = conn;
    ++owner->open;
    return conn;
}

static void on_flush_timeout(uv_timer_t *timer)
{
    conn_t *conn = timer->data;
    redisAsyncContext *ac = conn->ac;

    /* Redis did not answer the commands being flushed in time: they complete with -EAGAIN (or -ETIMEDOUT already). */
    conn->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    conn_release(conn);
}

/* Stops a connection: at once, or (flush, when ready) after the replies of its pending commands. */
static void conn_stop(conn_t *conn, int flush)
{
    redisAsyncContext *ac = conn->ac;
    int ready = conn->state == CONN_READY;

    conn->state = CONN_CLOSING;
    uv_timer_stop(&conn->timer);
    if (ac != NULL && flush && ready) {
        /* hiredis sends what is queued, waits for every reply, then disconnects (on_disconnect releases the conn). */
        uv_timer_start(&conn->timer, on_flush_timeout, conn->owner->redis->timeout_ms, 0);
        redisAsyncDisconnect(ac);
        return;
    }
    conn->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac); /* pending commands complete with -EAGAIN; its poll handle is closed */
    }
    conn_release(conn);
}

static void owner_stop(owner_t *owner)
{
    /* its connections close without telling (CLOSING): they are no longer up */
    weir_health_remove(owner->health);
    owner->health = NULL;
    weir_metric_gauge_add(owner->redis->metrics.up, -(int64_t)owner->ready);
    owner->stopped = 1;
    uv_timer_stop(owner->notify);
    uv_close((uv_handle_t *)owner->notify, on_notify_closed);
    owner->notify = NULL;
}

/* ---- clients ------------------------------------------------------------------------------------------------------ */

weir_redis_client_t *weir_redis_client_start(weir_redis_t *redis, uv_loop_t *loop, weir_redis_state_cb on_state, void *data)
{
    weir_redis_client_t *client = weir_calloc(1, sizeof(*client));

    owner_init(&client->super, redis, loop, KIND_COMMANDS, on_state, data);
    client->num_conns = redis->pool_size;
    client->conns = weir_calloc(client->num_conns, sizeof(client->conns[0]));
    for (unsigned i = 0; i < client->num_conns; ++i)
        client->conns[i] = conn_create(&client->super);
    for (unsigned i = 0; i < client->num_conns; ++i)
        conn_connect(client->conns[i]);
    return client;
}

void weir_redis_client_stop(weir_redis_client_t *client, int flush)
{
    /* The connections (and the client with the last of them) are freed from their close callbacks. */
    owner_stop(&client->super);
    ++client->super.open; /* not freed while the loop below runs */
    for (unsigned i = 0; i < client->num_conns; ++i) {
        conn_t *conn = client->conns[i];
        client->conns[i] = NULL;
        conn_stop(conn, flush);
    }
    client->num_conns = 0;
    --client->super.open;
    owner_free_if_done(&client->super);
}

int weir_redis_client_is_up(const weir_redis_client_t *client)
{
    return client->super.ready != 0;
}

void weir_redis_client_stats(const weir_redis_client_t *client, weir_redis_client_stats_t *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats->ready = client->super.ready;
    stats->connects = client->super.connects;
    stats->failures = client->super.failures;
    stats->commands = client->super.commands;
}

/* ---- commands ----------------------------------------------------------------------------------------------------- */

static conn_t *pick_conn(weir_redis_client_t *client)
{
    for (unsigned i = 0; i < client->num_conns; ++i) {
        unsigned at = (client->next + i) % client->num_conns;
        if (client->conns[at]->state == CONN_READY) {
            client->next = (at + 1) % client->num_conns;
            return client->conns[at];
        }
    }
    for (unsigned i = 0; i < client->num_conns; ++i)
        if (client->conns[i]->state == CONN_CONNECTING && client->conns[i]->first_attempt)
            return client->conns[i];
    return NULL;
}

static void on_cmd_closed(uv_handle_t *handle)
{
    cmd_t *cmd = handle->data;
    free(cmd->argv);
    free(cmd);
}

static void cmd_finish(cmd_t *cmd)
{
    uv_timer_stop(&cmd->timer);
    uv_close((uv_handle_t *)&cmd->timer, on_cmd_closed);
}

static void on_cmd_timeout(uv_timer_t *timer)
{
    cmd_t *cmd = timer->data;
    weir_redis_reply_cb cb = cmd->cb;

    /* The block stays until hiredis hands the reply over. */
    cmd->cb = NULL;
    weir_metric_inc(cmd->redis->metrics.timeouts);
    cb(cmd->data, -ETIMEDOUT, NULL, "Redis did not answer in time");
}

static void on_cmd_reply(redisAsyncContext *ac, void *_reply, void *privdata)
{
    cmd_t *cmd = privdata;
    redisReply *reply = _reply;
    weir_redis_reply_cb cb = cmd->cb;
    char message[256];

    if (cb != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR && cmd->script != NULL &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* The server's script cache was flushed: EVAL loads the script again and runs it, on the same connection. */
        cmd->argv[0] = "EVAL";
        cmd->argv[1] = cmd->script->source;
        cmd->lens[0] = 4;
        cmd->lens[1] = strlen(cmd->script->source);
        cmd->script = NULL;
        if (ac->data != NULL && redisAsyncCommandArgv(ac, on_cmd_reply, cmd, cmd->argc, cmd->argv, cmd->lens) == REDIS_OK) {
            ++((conn_t *)ac->data)->owner->commands;
            return;
        }
        reply = NULL;
    }
    cmd_finish(cmd);
    if (cb == NULL)
        return; /* answered already (deadline) */
    cmd->cb = NULL;
    if (reply == NULL) {
        weir_metric_inc(cmd->redis->metrics.errors);
        cb(cmd->data, -EAGAIN, NULL, "lost the connection to Redis");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        weir_metric_inc(cmd->redis->metrics.errors);
        snprintf(message, sizeof(message), "Redis error: %s", reply->str);
        cb(cmd->data, -EPROTO, reply, message);
    } else {
        cb(cmd->data, 0, reply, NULL);
    }
}

/* Sends a command block; @p cmd->argv is the copy to send when set, else @p argv. */
static void send_cmd(weir_redis_client_t *client, cmd_t *cmd, int argc, const char **argv, const size_t *lens, uint64_t timeout_ms)
{
    char message[192];
    conn_t *conn;

    if (client == NULL || client->super.stopped) {
        /* (no client: no Redis to count against) */
        cmd->cb(cmd->data, -EAGAIN, NULL, "the Redis client is not running on this thread");
        free(cmd->argv);
        free(cmd);
        return;
    }
    cmd->redis = client->super.redis;
    if ((conn = pick_conn(client)) == NULL) {
        weir_metric_inc(cmd->redis->metrics.errors);
        const char *why = client->conns[0]->error[0] != '\0' ? client->conns[0]->error : "not connected yet";
        snprintf(message, sizeof(message), "Redis is unavailable: %s", why);
        cmd->cb(cmd->data, -EAGAIN, NULL, message);
        free(cmd->argv);
        free(cmd);
        return;
    }
    uv_timer_init(client->super.loop, &cmd->timer);
    cmd->timer.data = cmd;
    if (redisAsyncCommandArgv(conn->ac, on_cmd_reply, cmd, argc, argv, lens) != REDIS_OK) {
        weir_redis_reply_cb cb = cmd->cb;
        cmd->cb = NULL;
        uv_close((uv_handle_t *)&cmd->timer, on_cmd_closed);
        weir_metric_inc(cmd->redis->metrics.errors);
        cb(cmd->data, -EAGAIN, NULL, "Redis is unavailable: the connection is closing");
        return;
    }
    ++client->super.commands;
    /* The loop's cached time may be old when this iteration has been busy: the deadline counts from now. */
    uv_update_time(client->super.loop);
    uv_timer_start(&cmd->timer, on_cmd_timeout, timeout_ms != 0 ? timeout_ms : client->super.redis->timeout_ms, 0);
}

void weir_redis_command(weir_redis_client_t *client, int argc, const char **argv, const size_t *lens, uint64_t timeout_ms,
                        weir_redis_reply_cb cb, void *data)
{
    cmd_t *cmd = weir_calloc(1, sizeof(*cmd));
    cmd->cb = cb;
    cmd->data = data;
    send_cmd(client, cmd, argc, argv, lens, timeout_ms);
}

void weir_redis_evalsha(weir_redis_client_t *client, const weir_redis_script_t *script, int numkeys, int argc, const char **argv,
                        const size_t *lens, uint64_t timeout_ms, weir_redis_reply_cb cb, void *data)
{
    /* One block holds the argument vectors and the bytes, kept for a retry as EVAL. */
    char nk[16];
    int n = argc + 3;
    size_t bytes = (size_t)snprintf(nk, sizeof(nk), "%d", numkeys) + 1;
    for (int i = 0; i != argc; ++i)
        bytes += (lens != NULL ? lens[i] : strlen(argv[i])) + 1;
    cmd_t *cmd = weir_calloc(1, sizeof(*cmd));
    char *block = weir_malloc(n * (sizeof(char *) + sizeof(size_t)) + bytes);
    cmd->argv = (const char **)block;
    cmd->lens = (size_t *)(block + n * sizeof(char *));
    char *p = block + n * (sizeof(char *) + sizeof(size_t));
    cmd->argv[0] = "EVALSHA";
    cmd->lens[0] = 7;
    cmd->argv[1] = script->sha1;
    cmd->lens[1] = 40;
    cmd->lens[2] = strlen(nk);
    memcpy(p, nk, cmd->lens[2] + 1);
    cmd->argv[2] = p;
    p += cmd->lens[2] + 1;
    for (int i = 0; i != argc; ++i) {
        size_t len = lens != NULL ? lens[i] : strlen(argv[i]);
        memcpy(p, argv[i], len);
        p[len] = '\0';
        cmd->argv[3 + i] = p;
        cmd->lens[3 + i] = len;
        p += len + 1;
    }
    cmd->argc = n;
    cmd->script = script;
    cmd->cb = cb;
    cmd->data = data;
    send_cmd(client, cmd, n, cmd->argv, cmd->lens, timeout_ms);
}

/* ---- subscribers -------------------------------------------------------------------------------------------------- */

weir_redis_subscriber_t *weir_redis_subscriber_start(weir_redis_t *redis, uv_loop_t *loop, const char *channel,
                                                     weir_redis_message_cb on_message, weir_redis_state_cb on_state, void *data)
{
    weir_redis_subscriber_t *sub = weir_calloc(1, sizeof(*sub));

    owner_init(&sub->super, redis, loop, KIND_SUBSCRIBER, on_state, data);
    sub->channel = weir_strdup(channel);
    sub->on_message = on_message;
    sub->conn = conn_create(&sub->super);
    conn_connect(sub->conn);
    return sub;
}

void weir_redis_subscriber_stop(weir_redis_subscriber_t *sub)
{
    conn_t *conn = sub->conn;

    owner_stop(&sub->super);
    ++sub->super.open;
    sub->conn = NULL;
    conn_stop(conn, 0);
    --sub->super.open;
    owner_free_if_done(&sub->super);
}

int weir_redis_subscriber_is_up(const weir_redis_subscriber_t *sub)
{
    return sub->super.ready != 0;
}
