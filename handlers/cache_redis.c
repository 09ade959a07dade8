/*
 * The Redis backend of /cache: GET, SET [EX] and DEL over the shared Redis client layer (src/redis/, redis.h), which
 * owns the connections, their reconnection and every command's deadline. Each worker thread has its own pool of
 * connections (vtable start/stop, from the handler's on_context_init/on_context_dispose). The client completes every
 * command exactly once: a late reply, or one that arrives after the request has gone, only frees memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "weir/cache.h"
#include "weir/common.h"
#include "weir/redis.h"

struct st_weir_cache_redis_t {
    weir_redis_t *redis;
    char *prefix;
    size_t prefix_len;
};

typedef enum en_cmd_op_t {
    CMD_GET,
    CMD_SET,
    CMD_DEL,
} cmd_op_t;

/* The caller's call and what it asked, for the reply; freed when the client completes the command. */
typedef struct st_redis_cmd_t {
    weir_cache_call_t *call;
    cmd_op_t op;
} redis_cmd_t;

int weir_cache_redis_create(const weir_cache_redis_options_t *opts, weir_cache_redis_t **out)
{
    weir_redis_options_t ropts = {.url = opts->url != NULL ? opts->url : WEIR_CACHE_DEFAULT_REDIS_URL,
                                  .who = "cache",
                                  .path = opts->path,
                                  .pool_size = opts->pool_size,
                                  .timeout_ms = opts->timeout_ms,
                                  .backoff_min_ms = opts->backoff_min_ms,
                                  .backoff_max_ms = opts->backoff_max_ms};
    weir_redis_t *redis;
    int ret;

    if ((ret = weir_redis_create(&ropts, &redis)) != 0)
        return ret;
    weir_cache_redis_t *self = weir_calloc(1, sizeof(*self));
    self->redis = redis;
    self->prefix = weir_strdup(opts->prefix != NULL ? opts->prefix : "");
    self->prefix_len = strlen(self->prefix);
    *out = self;
    return 0;
}

static void backend_destroy(void *data)
{
    weir_cache_redis_t *self = data;

    weir_redis_destroy(self->redis);
    free(self->prefix);
    free(self);
}

static int backend_start(void *data, uv_loop_t *loop, void **thread)
{
    weir_cache_redis_t *self = data;

    *thread = weir_redis_client_start(self->redis, loop, NULL, NULL);
    return 0;
}

static void backend_stop(void *data, void *thread)
{
    weir_redis_client_stop(thread, 0); /* pending commands complete with -EAGAIN */
}

void weir_cache_redis_thread_stats(void *thread, weir_cache_redis_thread_stats_t *stats)
{
    weir_redis_client_stats_t st;

    weir_redis_client_stats(thread, &st);
    memset(stats, 0, sizeof(*stats));
    stats->ready = st.ready;
    stats->connects = st.connects;
    stats->failures = st.failures;
}

/* ---- commands ------------------------------------------------------------------------------------------------- */

static void on_reply(void *data, int status, const redisReply *reply, const char *message)
{
    redis_cmd_t *cmd = data;
    weir_cache_call_t *call = cmd->call;
    cmd_op_t op = cmd->op;
    weir_cache_result_t res = {.status = status, .message = message};

    free(cmd);
    if (status == 0) {
        switch (op) {
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
    call->on_done(call, &res);
}

/* Sends argv (argv[1] is the key, to be prefixed) on a connection of the thread's pool, or completes the call at once. */
static void issue(weir_cache_redis_t *self, weir_redis_client_t *client, weir_cache_call_t *call, cmd_op_t op, int argc,
                  const char **argv, size_t *lens)
{
    char *key = NULL;

    if (client == NULL) {
        weir_cache_result_t res = {.status = -EAGAIN, .message = "the Redis backend did not start on this thread"};
        call->on_done(call, &res);
        return;
    }
    if (self->prefix_len != 0) {
        key = weir_malloc(self->prefix_len + lens[1]);
        memcpy(key, self->prefix, self->prefix_len);
        memcpy(key + self->prefix_len, argv[1], lens[1]);
        argv[1] = key;
        lens[1] += self->prefix_len;
    }
    redis_cmd_t *cmd = weir_malloc(sizeof(*cmd));
    cmd->call = call;
    cmd->op = op;
    weir_redis_command(client, argc, argv, lens, 0, on_reply, cmd);
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
