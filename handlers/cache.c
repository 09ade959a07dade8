/*
 * GET/PUT/DELETE /cache: validates the request, gives one call to the backend, answers when the call completes.
 *
 * A call to a backend that completes at once (memory) lives on the stack, and a GET's value is copied straight into
 * the request's pool: a cache hit allocates nothing outside that pool. A call that completes later (Redis) lives in a
 * heap job. A guard on the request pool points at it; its destructor (the request is gone: answered, reset, or the
 * client left) clears the job's back-pointer, so a late reply finds no request and only frees the job. The backend
 * guarantees that every call completes exactly once.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/cache.h"
#include "weir/common.h"
#include "weir/metrics.h"
#include "weir/respond.h"
#include "weir/shared.h"

typedef struct st_shared_backend_t shared_backend_t;

/* Counted when a call completes; the memory store's own counters are read at scrape time (memory_* below). */
typedef struct st_cache_metrics_t {
    weir_metric_t *hits, *misses, *sets, *deletes, *errors;
    weir_metric_t *items, *bytes, *max_bytes, *evictions, *expirations; /* memory backend only */
} cache_metrics_t;

typedef struct st_cache_handler_t {
    h2o_handler_t super;
    shared_backend_t *shared;
    const weir_cache_backend_vtable_t *vt;
    void *data;
    size_t max_key_size;
    size_t max_value_size;
    const cache_metrics_t *metrics; /* the shared backend's */
} cache_handler_t;

typedef enum en_cache_op_t {
    CACHE_GET,
    CACHE_SET,
    CACHE_DEL,
} cache_op_t;

typedef struct st_cache_job_t {
    weir_cache_call_t call; /* first: the backend hands &job->call back */
    cache_op_t op;
    int stores_replies;             /* the backend's flag */
    const cache_metrics_t *metrics; /* the shared backend's: it outlives a late Redis reply, the handler may not */
    h2o_req_t *req;                 /* NULL once the request is gone */
    struct st_cache_job_t **guard;  /* the slot on req->pool that points back here, while req is set; NULL on the stack */
    int on_heap;
} cache_job_t;

static const char ALLOW[] = "GET, HEAD, PUT, DELETE";
static const char DATA_PREFIX[] = "{\"data\": ", DATA_SUFFIX[] = "}";

static void respond_bad_request(h2o_req_t *req, const char *message)
{
    weir_respond_error(req, 400, "Bad Request", message);
}

static int parse_key_or_respond(cache_handler_t *self, h2o_req_t *req, h2o_iovec_t *key)
{
    char msg[64];

    switch (weir_query_param_or_respond(req, "key", key)) {
    case 1:
        break;
    case 0:
        respond_bad_request(req, "missing key");
        return -1;
    default:
        return -1;
    }
    if (key->len == 0) {
        respond_bad_request(req, "empty key");
        return -1;
    }
    if (key->len > self->max_key_size) {
        snprintf(msg, sizeof(msg), "key longer than %zu bytes", self->max_key_size);
        respond_bad_request(req, msg);
        return -1;
    }
    return 0;
}

static int parse_ttl_or_respond(h2o_req_t *req, uint32_t *ttl)
{
    h2o_iovec_t v;
    uint64_t n;

    switch (weir_query_param_or_respond(req, "ttl", &v)) {
    case 1:
        break;
    case 0:
        *ttl = 0;
        return 0;
    default:
        return -1;
    }
    if (weir_parse_decimal(v.base, v.len, WEIR_CACHE_MAX_TTL, &n) != 0 || n < 1) {
        respond_bad_request(req, "ttl must be a whole number of seconds from 1 to 2147483647");
        return -1;
    }
    *ttl = (uint32_t)n;
    return 0;
}

static int parse_value_or_respond(cache_handler_t *self, h2o_req_t *req, h2o_iovec_t *value)
{
    char msg[64];

    *value = req->entity.base != NULL ? req->entity : h2o_iovec_init("", 0);
    if (value->len > self->max_value_size) {
        snprintf(msg, sizeof(msg), "value longer than %zu bytes", self->max_value_size);
        respond_bad_request(req, msg);
        return -1;
    }
    if (!weir_utf8_is_valid((const char *)value->base, value->len)) {
        respond_bad_request(req, "value is not valid UTF-8");
        return -1;
    }
    return 0;
}

static void respond_failure(h2o_req_t *req, const weir_cache_result_t *res)
{
    switch (res->status) {
    case -EAGAIN:
        weir_respond_error(req, 503, "Service Unavailable", res->message != NULL ? res->message : "cache backend unavailable");
        break;
    case -ETIMEDOUT:
        weir_respond_error(req, 504, "Gateway Timeout", res->message != NULL ? res->message : "cache backend timed out");
        break;
    case -E2BIG:
        weir_respond_error(req, 507, "Insufficient Storage", res->message != NULL ? res->message : "entry too large for the cache");
        break;
    default:
        weir_respond_error(req, 502, "Bad Gateway", res->message != NULL ? res->message : "cache backend error");
        break;
    }
}

static void respond_result(h2o_req_t *req, cache_op_t op, int stores_replies, const weir_cache_result_t *res)
{
    static const char NULL_BODY[] = "{\"data\": null}", SET_BODY[] = "{\"success\": true}",
                      DELETED_BODY[] = "{\"success\": true, \"deleted\": true}",
                      NOT_DELETED_BODY[] = "{\"success\": true, \"deleted\": false}";
    h2o_iovec_t body;

    if (op == CACHE_GET && res->status == -ENOENT) {
        weir_respond_json(req, 200, "OK", NULL_BODY, sizeof(NULL_BODY) - 1);
        return;
    }
    if (res->status != 0) {
        respond_failure(req, res);
        return;
    }
    switch (op) {
    case CACHE_GET:
        if (stores_replies) {
            /* the stored answer itself, shared with the store (held by the request's pool): no copy */
            weir_respond_json_nocopy(req, 200, "OK", res->value.base, res->value.len);
            break;
        }
        /* Built once, in the request's pool. Only Redis can hold a value that is not UTF-8 (written by another
         * program): values stored through weir were checked on PUT. */
        if (weir_json_quote_wrapped(&req->pool, h2o_iovec_init(DATA_PREFIX, sizeof(DATA_PREFIX) - 1), res->value.base,
                                    res->value.len, h2o_iovec_init(DATA_SUFFIX, sizeof(DATA_SUFFIX) - 1), &body) != 0) {
            weir_respond_error(req, 502, "Bad Gateway", "stored value is not valid UTF-8");
            return;
        }
        weir_respond_json_nocopy(req, 200, "OK", body.base, body.len);
        break;
    case CACHE_SET:
        weir_respond_json(req, 200, "OK", SET_BODY, sizeof(SET_BODY) - 1);
        break;
    case CACHE_DEL:
        if (res->deleted)
            weir_respond_json(req, 200, "OK", DELETED_BODY, sizeof(DELETED_BODY) - 1);
        else
            weir_respond_json(req, 200, "OK", NOT_DELETED_BODY, sizeof(NOT_DELETED_BODY) - 1);
        break;
    }
}

static void count_result(const cache_metrics_t *m, cache_op_t op, int status)
{
    if (status != 0 && !(op == CACHE_GET && status == -ENOENT)) {
        weir_metric_inc(m->errors);
        return;
    }
    switch (op) {
    case CACHE_GET:
        weir_metric_inc(status == 0 ? m->hits : m->misses);
        break;
    case CACHE_SET:
        weir_metric_inc(m->sets);
        break;
    case CACHE_DEL:
        weir_metric_inc(m->deletes);
        break;
    }
}

static void on_call_done(weir_cache_call_t *call, const weir_cache_result_t *res)
{
    cache_job_t *job = (cache_job_t *)call;
    h2o_req_t *req = job->req;

    count_result(job->metrics, job->op, res->status);
    if (req != NULL) {
        /* Detach first: answering may dispose the request, and with it the guard. */
        if (job->guard != NULL)
            *job->guard = NULL;
        job->req = NULL;
        respond_result(req, job->op, job->stores_replies, res);
    }
    if (job->on_heap)
        free(job);
}

static void on_guard_dispose(void *_guard)
{
    cache_job_t **guard = _guard;
    cache_job_t *job = *guard;

    if (job != NULL) {
        job->req = NULL;
        job->guard = NULL;
    }
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    cache_handler_t *self = (cache_handler_t *)_self;
    h2o_iovec_t key, value = {NULL, 0};
    uint32_t ttl = 0;
    cache_op_t op;

    if (!weir_path_is_exact(req)) {
        weir_respond_not_found(req);
        return 0;
    }
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        op = CACHE_GET;
    } else if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("PUT"))) {
        op = CACHE_SET;
    } else if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"))) {
        op = CACHE_DEL;
    } else {
        weir_respond_method_not_allowed(req, ALLOW);
        return 0;
    }
    if (parse_key_or_respond(self, req, &key) != 0)
        return 0; /* 400 already sent */
    if (op == CACHE_SET && (parse_ttl_or_respond(req, &ttl) != 0 || parse_value_or_respond(self, req, &value) != 0))
        return 0; /* 400 already sent */
    /* A backend that keeps replies is given the answer a GET will send, built once here rather than at every GET (the
     * value is valid UTF-8: parse_value_or_respond checked it). */
    if (op == CACHE_SET && self->vt->stores_replies &&
        weir_json_quote_wrapped(&req->pool, h2o_iovec_init(DATA_PREFIX, sizeof(DATA_PREFIX) - 1), value.base, value.len,
                                h2o_iovec_init(DATA_SUFFIX, sizeof(DATA_SUFFIX) - 1), &value) != 0) {
        respond_bad_request(req, "value is not valid UTF-8");
        return 0;
    }

    void *thread = h2o_context_get_handler_context(req->conn->ctx, &self->super);
    cache_job_t stack_job, *job;
    if (self->vt->completes_at_once) {
        /* The call is over when the backend returns: the request cannot go away meanwhile, no guard is needed, and the
         * value can be copied straight into the request's pool. */
        job = &stack_job;
        *job = (cache_job_t){.call = {.pool = &req->pool}};
    } else {
        job = weir_calloc(1, sizeof(*job));
        job->on_heap = 1;
        job->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*job->guard), on_guard_dispose);
        *job->guard = job;
    }
    job->stores_replies = self->vt->stores_replies;
    job->metrics = self->metrics;
    job->call.key = key;
    job->call.value = value;
    job->call.ttl = ttl;
    job->call.on_done = on_call_done;
    job->op = op;
    job->req = req;

    switch (op) {
    case CACHE_GET:
        self->vt->get(self->data, thread, &job->call);
        break;
    case CACHE_SET:
        self->vt->set(self->data, thread, &job->call);
        break;
    case CACHE_DEL:
        self->vt->del(self->data, thread, &job->call);
        break;
    }
    /* A heap job may be freed already; a stack job is over. */
    return 0;
}

/* A backend shared by the handlers of every configuration generation whose backend settings are the same: a reload
 * keeps the memory store's contents and the Redis connections. */
struct st_shared_backend_t {
    const weir_cache_backend_vtable_t *vt;
    void *data;
    weir_per_loop_t threads; /* the backend's per-thread state of each loop (a Redis pool) */
    cache_metrics_t metrics; /* the path's series; the memory store's read at scrape time while the store lives */
};

static int start_backend_thread(void *arg, uv_loop_t *loop, void **value)
{
    shared_backend_t *sb = arg;
    *value = NULL;
    return sb->vt->start(sb->data, loop, value);
}

static void stop_backend_thread(void *arg, void *value)
{
    shared_backend_t *sb = arg;
    if (sb->vt->stop != NULL && value != NULL)
        sb->vt->stop(sb->data, value);
}

static void on_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    cache_handler_t *self = (cache_handler_t *)_self;
    void *thread = NULL;

    if (self->vt->start != NULL) {
        int ret = weir_per_loop_acquire(&self->shared->threads, ctx->loop, start_backend_thread, self->shared, &thread);
        if (ret != 0) {
            weir_error("cache: cannot start the %s backend on this thread: %s", self->vt->name, strerror(-ret));
            thread = NULL;
        }
    }
    h2o_context_set_handler_context(ctx, &self->super, thread);
}

static void on_context_dispose(h2o_handler_t *_self, h2o_context_t *ctx)
{
    cache_handler_t *self = (cache_handler_t *)_self;
    void *thread = h2o_context_get_handler_context(ctx, &self->super);

    if (self->vt->start != NULL && thread != NULL)
        weir_per_loop_release(&self->shared->threads, ctx->loop, stop_backend_thread, self->shared);
    h2o_context_set_handler_context(ctx, &self->super, NULL);
}

/* The memory store's counters, read at scrape time (weir_cache_memory_stats locks each shard once). */
static double memory_stat(void *data, size_t offset)
{
    weir_cache_memory_stats_t st;
    weir_cache_memory_stats(data, &st);
    return (double)*(const uint64_t *)((const char *)&st + offset);
}

static double memory_items(void *data)
{
    return memory_stat(data, offsetof(weir_cache_memory_stats_t, entries));
}

static double memory_bytes(void *data)
{
    return memory_stat(data, offsetof(weir_cache_memory_stats_t, bytes));
}

static double memory_evictions(void *data)
{
    return memory_stat(data, offsetof(weir_cache_memory_stats_t, evictions));
}

static double memory_expirations(void *data)
{
    return memory_stat(data, offsetof(weir_cache_memory_stats_t, expirations));
}

static double memory_max_bytes(void *data)
{
    weir_cache_memory_stats_t st;
    weir_cache_memory_stats(data, &st);
    return (double)st.shard_max_bytes * st.num_shards;
}

static const struct {
    size_t field; /* offsetof(cache_metrics_t, ...) */
    weir_metrics_read_cb read;
} MEMORY_READERS[] = {
    {offsetof(cache_metrics_t, items), memory_items},
    {offsetof(cache_metrics_t, bytes), memory_bytes},
    {offsetof(cache_metrics_t, max_bytes), memory_max_bytes},
    {offsetof(cache_metrics_t, evictions), memory_evictions},
    {offsetof(cache_metrics_t, expirations), memory_expirations},
};

static weir_metric_t *memory_metric(cache_metrics_t *m, size_t i)
{
    return *(weir_metric_t **)((char *)m + MEMORY_READERS[i].field);
}

static void init_metrics(cache_metrics_t *m, const char *path, const char *backend, void *memory)
{
    weir_metrics_t *reg = weir_metrics_default();

    m->hits =
        weir_metrics_counter(reg, "weir_cache_hits_total", "Cache GETs that found a live entry", "path,backend", path, backend);
    m->misses = weir_metrics_counter(reg, "weir_cache_misses_total", "Cache GETs that found no entry, or an expired one",
                                     "path,backend", path, backend);
    m->sets = weir_metrics_counter(reg, "weir_cache_sets_total", "Cache PUTs stored", "path,backend", path, backend);
    m->deletes = weir_metrics_counter(reg, "weir_cache_deletes_total", "Cache DELETEs done, whether or not an entry was there",
                                      "path,backend", path, backend);
    m->errors = weir_metrics_counter(reg, "weir_cache_errors_total",
                                     "Cache operations that failed in the backend (answered 502, 503, 504 or 507)", "path,backend",
                                     path, backend);
    if (memory == NULL)
        return;
    m->items = weir_metrics_gauge(reg, "weir_cache_items",
                                  "Entries held by the memory backend (live, or expired and not yet reclaimed)", "path", path);
    m->bytes = weir_metrics_gauge(reg, "weir_cache_bytes",
                                  "Bytes charged for the entries held by the memory backend (keys, values, "
                                  "per-entry overhead)",
                                  "path", path);
    m->max_bytes = weir_metrics_gauge(reg, "weir_cache_max_bytes", "The memory backend's budget, in bytes (cache.memory.max-bytes)",
                                      "path", path);
    m->evictions =
        weir_metrics_counter(reg, "weir_cache_evictions_total",
                             "Live entries the memory backend removed to make room (least recently used first)", "path", path);
    m->expirations =
        weir_metrics_counter(reg, "weir_cache_expirations_total", "Expired entries the memory backend reclaimed", "path", path);
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(MEMORY_READERS); ++i)
        weir_metrics_add_callback(memory_metric(m, i), MEMORY_READERS[i].read, memory);
}

static void on_dispose(h2o_handler_t *_self)
{
    cache_handler_t *self = (cache_handler_t *)_self;

    weir_shared_release(self->shared);
}

typedef struct st_create_args_t {
    const weir_cache_settings_t *settings;
    const char *path; /* for the Redis metrics' labels */
    int ret;
} create_args_t;

static void *create_shared_backend(void *_args)
{
    create_args_t *args = _args;
    const weir_cache_settings_t *s = args->settings;
    shared_backend_t *sb = weir_calloc(1, sizeof(*sb));

    switch (s->backend) {
    case WEIR_CACHE_BACKEND_MEMORY: {
        weir_cache_memory_options_t opts = {.max_bytes = s->memory_max_bytes,
                                            .max_entry_size = s->max_key_size + s->max_value_size};
        if ((sb->data = weir_cache_memory_create(&opts)) == NULL) {
            weir_error("cache: memory.max-bytes (%llu) cannot hold one entry of max-key-size + max-value-size bytes",
                       (unsigned long long)s->memory_max_bytes);
            args->ret = -EINVAL;
            goto Error;
        }
        sb->vt = &weir_cache_memory_vtable;
    } break;
    case WEIR_CACHE_BACKEND_REDIS: {
        weir_cache_redis_options_t opts = {.url = s->redis_url,
                                           .pool_size = s->redis_pool,
                                           .timeout_ms = s->redis_timeout_ms,
                                           .prefix = s->redis_prefix,
                                           .path = args->path};
        weir_cache_redis_t *redis;
        if ((args->ret = weir_cache_redis_create(&opts, &redis)) != 0)
            goto Error;
        sb->data = redis;
        sb->vt = &weir_cache_redis_vtable;
    } break;
    default:
        args->ret = -EINVAL;
        goto Error;
    }
    weir_per_loop_init(&sb->threads);
    init_metrics(&sb->metrics, args->path != NULL ? args->path : "", sb->vt->name,
                 sb->vt == &weir_cache_memory_vtable ? sb->data : NULL);
    return sb;
Error:
    free(sb);
    return NULL;
}

static void destroy_shared_backend(void *_sb)
{
    shared_backend_t *sb = _sb;
    if (sb->vt == &weir_cache_memory_vtable)
        for (size_t i = 0; i != WEIR_ARRAY_SIZE(MEMORY_READERS); ++i)
            weir_metrics_remove_callback(memory_metric(&sb->metrics, i), MEMORY_READERS[i].read, sb->data);
    weir_per_loop_dispose(&sb->threads);
    sb->vt->destroy(sb->data);
    free(sb);
}

static int check_sizes(const weir_cache_settings_t *s)
{
    if (s->max_key_size < 1 || s->max_key_size > WEIR_CACHE_MAX_KEY_SIZE_LIMIT ||
        s->max_value_size > WEIR_CACHE_MAX_VALUE_SIZE_LIMIT) {
        weir_error("cache: max-key-size must be 1..%d and max-value-size at most %d", WEIR_CACHE_MAX_KEY_SIZE_LIMIT,
                   WEIR_CACHE_MAX_VALUE_SIZE_LIMIT);
        return -EINVAL;
    }
    return 0;
}

static void create_handler(h2o_pathconf_t *pathconf, shared_backend_t *sb, const weir_cache_settings_t *s)
{
    cache_handler_t *self = (cache_handler_t *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_context_init = on_context_init;
    self->super.on_context_dispose = on_context_dispose;
    self->super.dispose = on_dispose;
    self->super.on_req = on_req;
    self->shared = sb;
    self->vt = sb->vt;
    self->data = sb->data;
    self->max_key_size = s->max_key_size;
    self->max_value_size = s->max_value_size;
    self->metrics = &sb->metrics;
}

int weir_cache_register(h2o_pathconf_t *pathconf, const weir_cache_settings_t *s)
{
    char what[1024], key[1536];
    int created;

    if (check_sizes(s) != 0)
        return -EINVAL;
    /* The store is kept across a reload when everything that shapes it is the same. */
    if (s->backend == WEIR_CACHE_BACKEND_MEMORY)
        snprintf(what, sizeof(what), "cache|memory|%llu|%zu|%zu", (unsigned long long)s->memory_max_bytes, s->max_key_size,
                 s->max_value_size);
    else
        snprintf(what, sizeof(what), "cache|redis|%s|%u|%llu|%s",
                 s->redis_url != NULL ? s->redis_url : WEIR_CACHE_DEFAULT_REDIS_URL, s->redis_pool,
                 (unsigned long long)s->redis_timeout_ms, s->redis_prefix != NULL ? s->redis_prefix : "");
    create_args_t args = {.settings = s, .path = pathconf->path.base};
    shared_backend_t *sb = weir_shared_acquire(weir_shared_path_key(pathconf, what, key, sizeof(key)), create_shared_backend, &args,
                                               destroy_shared_backend, &created);
    if (sb == NULL)
        return args.ret != 0 ? args.ret : -ENOMEM;
    create_handler(pathconf, sb, s);
    return 0;
}

typedef struct st_given_backend_t {
    const weir_cache_backend_vtable_t *vt;
    void *data;
    const char *path;
} given_backend_t;

static void *create_given_backend(void *_given)
{
    given_backend_t *given = _given;
    shared_backend_t *sb = weir_calloc(1, sizeof(*sb));
    sb->vt = given->vt;
    sb->data = given->data;
    weir_per_loop_init(&sb->threads);
    init_metrics(&sb->metrics, given->path, sb->vt->name, sb->vt == &weir_cache_memory_vtable ? sb->data : NULL);
    return sb;
}

int weir_cache_register_backend(h2o_pathconf_t *pathconf, const weir_cache_settings_t *s, const weir_cache_backend_vtable_t *vt,
                                void *data)
{
    char what[64], key[1536];
    int created;

    if (check_sizes(s) != 0) {
        vt->destroy(data);
        return -EINVAL;
    }
    /* Registered under a key of its own, so that the handler releases it as it releases a backend it made. */
    snprintf(what, sizeof(what), "cache|given|%p", data);
    given_backend_t given = {vt, data, pathconf->path.base != NULL ? pathconf->path.base : ""};
    shared_backend_t *sb = weir_shared_acquire(weir_shared_path_key(pathconf, what, key, sizeof(key)), create_given_backend, &given,
                                               destroy_shared_backend, &created);
    create_handler(pathconf, sb, s);
    return 0;
}
