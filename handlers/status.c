/*
 * The status module (status.h): /metrics, /livez, /readyz, and the counting of every request when /metrics is mounted.
 *
 * Counting a request costs its worker thread, on the request path: when the request enters its path's first handler,
 * a gauge increment and an entry in the thread's table of requests in flight; when h2o disposes of it (the logger),
 * that entry out, a lookup in a small table of the thread's own (method, status, protocol -> series) and five cell
 * stores (the counter, the gauge, the duration histogram's bucket and sum); the clock is read at most once per loop
 * iteration. No allocation in the steady state, no lock, no atomic read-modify-write: see metrics.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/health.h"
#include "weir/metrics.h"
#include "weir/respond.h"
#include "weir/status.h"

enum { STATUS_METRICS, STATUS_LIVE, STATUS_READY };

typedef struct st_status_handler_t {
    h2o_handler_t super;
    int what;
} status_handler_t;

static const char METRICS_TYPE[] = "text/plain; version=0.0.4; charset=utf-8";

/* ---- the endpoints -------------------------------------------------------------------------------------------- */

/* Appends `{"name": NAME, "up": B, "threads_up": N, "threads": M}` for each dependency to @p buf (in @p pool). */
static h2o_iovec_t checks_json(h2o_mem_pool_t *pool, const weir_health_status_t *st, size_t n)
{
    h2o_iovec_t *parts = h2o_mem_alloc_pool(pool, sizeof(parts[0]) * (n + 1));
    size_t total = 2;

    for (size_t i = 0; i != n; ++i) {
        char suffix[96];
        h2o_iovec_t entry;
        int len = snprintf(suffix, sizeof(suffix), ", \"up\": %s, \"threads_up\": %u, \"threads\": %u}",
                           st[i].up == st[i].total ? "true" : "false", st[i].up, st[i].total);
        if (weir_json_quote_wrapped(pool, h2o_iovec_init(H2O_STRLIT("{\"name\": ")), st[i].name, strlen(st[i].name),
                                    h2o_iovec_init(suffix, (size_t)len), &entry) != 0)
            entry = h2o_iovec_init(H2O_STRLIT("{\"name\": \"(not UTF-8)\"}"));
        parts[i] = entry;
        total += entry.len + 2;
    }
    char *out = h2o_mem_alloc_pool(pool, total + 1), *p = out;
    *p++ = '[';
    for (size_t i = 0; i != n; ++i) {
        if (i != 0) {
            *p++ = ',';
            *p++ = ' ';
        }
        memcpy(p, parts[i].base, parts[i].len);
        p += parts[i].len;
    }
    *p++ = ']';
    *p = '\0';
    return h2o_iovec_init(out, (size_t)(p - out));
}

static void respond_ready(h2o_req_t *req)
{
    static const char DRAINING[] = "{\"status\": \"draining\"}";
    weir_health_status_t *st;
    int all_up;

    /* The process, not the request's configuration generation: a generation that a reload replaced drains too (its
     * context's shutdown_requested is set), while the process stays ready. */
    if (weir_server_draining()) {
        weir_respond_json(req, 503, "Service Unavailable", DRAINING, sizeof(DRAINING) - 1);
        return;
    }
    size_t n = weir_health_evaluate(&st, &all_up);
    h2o_iovec_t checks = checks_json(&req->pool, st, n);
    weir_health_free(st, n);
    const char *head = all_up ? "{\"status\": \"ready\", \"checks\": " : "{\"status\": \"unavailable\", \"checks\": ";
    size_t head_len = strlen(head);
    char *body = h2o_mem_alloc_pool(&req->pool, head_len + checks.len + 2);
    memcpy(body, head, head_len);
    memcpy(body + head_len, checks.base, checks.len);
    body[head_len + checks.len] = '}';
    body[head_len + checks.len + 1] = '\0';
    if (all_up)
        weir_respond_json_nocopy(req, 200, "OK", body, head_len + checks.len + 1);
    else
        weir_respond_json_nocopy(req, 503, "Service Unavailable", body, head_len + checks.len + 1);
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    static const char LIVE[] = "{\"status\": \"ok\"}";
    status_handler_t *self = (void *)_self;

    if (!weir_path_is_exact(req)) {
        weir_respond_not_found(req);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        weir_respond_method_not_allowed(req, "GET, HEAD");
        return 0;
    }
    /* probes and scrapers want the answer of now */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    switch (self->what) {
    case STATUS_METRICS: {
        h2o_iovec_t text = weir_metrics_expose(weir_metrics_default(), &req->pool);
        weir_respond_nocopy_as(req, 200, "OK", METRICS_TYPE, text.base, text.len);
    } break;
    case STATUS_LIVE:
        weir_respond_json(req, 200, "OK", LIVE, sizeof(LIVE) - 1);
        break;
    default:
        respond_ready(req);
        break;
    }
    return 0;
}

int weir_status_register(h2o_pathconf_t *pathconf, const weir_status_settings_t *s)
{
    if (s->metrics + s->live + s->ready != 1)
        return -EINVAL;
    status_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->what = s->metrics ? STATUS_METRICS : s->live ? STATUS_LIVE : STATUS_READY;
    /* the process's own series are there from the start */
    weir_metrics_default();
    return 0;
}

int weir_status_counts_requests(const weir_server_conf_t *conf)
{
    for (size_t h = 0; h != conf->num_hosts; ++h) {
        for (size_t p = 0; p != conf->hosts[h].num_paths; ++p) {
            const weir_path_conf_t *path = conf->hosts[h].paths + p;
            if (path->module == &weir_status_module && ((const weir_status_settings_t *)path->settings)->metrics)
                return 1;
        }
    }
    return 0;
}

/* ---- counting requests ---------------------------------------------------------------------------------------- */

/* Methods with a label of their own; anything else is "other". At most 16 (4 bits of a key). */
static const char *const METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "other"};
static const char *const PROTOCOLS[] = {"HTTP/1.0", "HTTP/1.1", "HTTP/2"};

typedef struct st_in_flight_handler_t {
    h2o_handler_t super;
    weir_metric_t *in_flight;
    weir_metric_t *duration;
} in_flight_handler_t;

/* (method, status, protocol) -> the thread's cell of the series, one table per worker thread and path (the logger's
 * context) */
typedef struct st_memo_t {
    struct {
        uint32_t key; /* the key + 1; 0: empty */
        uint64_t *cell;
    } * entries;
    uint32_t capacity; /* a power of two */
    uint32_t size;
    uint32_t last_key; /* the key + 1 of the last lookup, whose cell is last */
    uint64_t *last;
} memo_t;

typedef struct st_request_logger_t {
    h2o_logger_t super;
    char *path; /* the label */
    weir_metrics_family_t *requests;
} request_logger_t;

/*
 * What a worker thread keeps while it counts requests (created by the first context of the thread that uses it, freed
 * after the last one is disposed):
 * - the requests in flight, from their first handler to their disposal: request -> (its first path, start time), an
 *   open-addressing table, since a destructor on each request's pool would cost an allocation per request; the logger
 *   of the path that disposes of the request takes it out (a request that never reached a handler, as an error that
 *   h2o answers itself, is not there);
 * - the clock of the durations, read at most once per loop iteration (for the first request that starts or ends in
 *   it; a uv_check handle tells that a new iteration has begun) rather than twice per request: at 100,000 requests a
 *   second a clock read is a measurable share of a request's cost. A request is then timed to within the time its
 *   loop iteration spent on the requests before it: microseconds under load.
 */
/* A path's cells on one worker thread (the in-flight handler's context). */
typedef struct st_path_cells_t {
    const in_flight_handler_t *handler;
    uint64_t *in_flight;
    uint64_t *duration;
} path_cells_t;

typedef struct st_flight_t {
    h2o_req_t *req; /* NULL: empty slot */
    path_cells_t *path;
    uint64_t start_ns;
} flight_t;

typedef struct st_thread_state_t {
    uv_check_t check;   /* first; the state is freed in its close callback */
    unsigned refs;      /* contexts of this thread that use it */
    uint64_t iteration; /* bumped by the check at the end of every iteration */
    flight_t *flights;
    size_t capacity; /* a power of two */
    size_t size;
} thread_state_t;

static __thread thread_state_t *thread_state;
static __thread uint64_t clock_iteration, clock_ns; /* the iteration clock_ns was read in (+ 1), and its value */

static void on_check(uv_check_t *check)
{
    ++((thread_state_t *)check)->iteration;
}

static void on_state_closed(uv_handle_t *handle)
{
    free(handle);
}

static uint64_t iteration_now_ns(thread_state_t *state)
{
    if (clock_iteration != state->iteration + 1) {
        clock_iteration = state->iteration + 1;
        clock_ns = uv_hrtime();
    }
    return clock_ns;
}

static size_t flight_home(const thread_state_t *state, const h2o_req_t *req)
{
    return (size_t)((((uintptr_t)req >> 4) * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (state->capacity - 1);
}

static void flight_insert(thread_state_t *state, h2o_req_t *req, path_cells_t *path, uint64_t start_ns)
{
    if ((state->size + 1) * 2 > state->capacity) {
        flight_t *old = state->flights;
        size_t old_capacity = state->capacity;
        state->capacity = old_capacity != 0 ? old_capacity * 2 : 256;
        state->flights = weir_calloc(state->capacity, sizeof(state->flights[0]));
        state->size = 0;
        for (size_t i = 0; i != old_capacity; ++i)
            if (old[i].req != NULL)
                flight_insert(state, old[i].req, old[i].path, old[i].start_ns);
        free(old);
    }
    size_t mask = state->capacity - 1, i = flight_home(state, req);
    while (state->flights[i].req != NULL && state->flights[i].req != req)
        i = (i + 1) & mask;
    if (state->flights[i].req == NULL)
        ++state->size;
    state->flights[i] = (flight_t){req, path, start_ns};
}

/* Takes @p req out (linear probing, backward-shift deletion); @return 0, or -1 when it is not there. */
static int flight_take(thread_state_t *state, h2o_req_t *req, flight_t *out)
{
    if (state->size == 0)
        return -1;
    size_t mask = state->capacity - 1, i = flight_home(state, req);
    while (state->flights[i].req != req) {
        if (state->flights[i].req == NULL)
            return -1;
        i = (i + 1) & mask;
    }
    *out = state->flights[i];
    for (size_t j = (i + 1) & mask; state->flights[j].req != NULL; j = (j + 1) & mask) {
        size_t home = flight_home(state, state->flights[j].req);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            state->flights[i] = state->flights[j];
            i = j;
        }
    }
    state->flights[i].req = NULL;
    --state->size;
    return 0;
}

static void on_in_flight_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    in_flight_handler_t *self = (void *)_self;
    path_cells_t *path = weir_malloc(sizeof(*path));
    *path = (path_cells_t){self, weir_metric_cells(self->in_flight), weir_metric_cells(self->duration)};
    h2o_context_set_handler_context(ctx, &self->super, path);
    if (thread_state == NULL) {
        thread_state = weir_calloc(1, sizeof(*thread_state));
        uv_check_init(ctx->loop, &thread_state->check);
        uv_check_start(&thread_state->check, on_check);
        uv_unref((uv_handle_t *)&thread_state->check); /* it must not keep a loop alive */
        clock_iteration = 0;
    }
    ++thread_state->refs;
}

static void on_in_flight_context_dispose(h2o_handler_t *self, h2o_context_t *ctx)
{
    free(h2o_context_get_handler_context(ctx, self));
    h2o_context_set_handler_context(ctx, self, NULL);
    thread_state_t *state = thread_state;
    if (state != NULL && --state->refs == 0) {
        free(state->flights);
        uv_close((uv_handle_t *)&state->check, on_state_closed);
        thread_state = NULL;
    }
}

static int on_req_in_flight(h2o_handler_t *_self, h2o_req_t *req)
{
    thread_state_t *state = thread_state;
    path_cells_t *path = h2o_context_get_handler_context(req->conn->ctx, _self);

    /* A request that the server's guard hands to another path (an absolute-form target) was counted on its first. */
    if (req->num_reprocessed == 0 && state != NULL && path != NULL) {
        weir_cells_gauge_add(path->in_flight, 1);
        flight_insert(state, req, path, iteration_now_ns(state));
    }
    return -1;
}

static unsigned method_index(h2o_iovec_t m)
{
    /* GET first, without a call: most requests are */
    if (m.len == 3 && m.base[0] == 'G' && m.base[1] == 'E' && m.base[2] == 'T')
        return 0;
    for (unsigned i = 1; i + 1 < WEIR_ARRAY_SIZE(METHODS); ++i)
        if (h2o_memis(m.base, m.len, METHODS[i], strlen(METHODS[i])))
            return i;
    return WEIR_ARRAY_SIZE(METHODS) - 1;
}

static unsigned protocol_index(int version)
{
    return version >= 0x200 ? 2 : version >= 0x101 ? 1 : 0;
}

static uint64_t *memo_find(memo_t *memo, uint32_t key)
{
    uint32_t mask = memo->capacity - 1;
    for (uint32_t i = (key * 2654435761u) & mask;; i = (i + 1) & mask) {
        if (memo->entries[i].key == key + 1)
            return memo->entries[i].cell;
        if (memo->entries[i].key == 0)
            return NULL;
    }
}

static void memo_insert(memo_t *memo, uint32_t key, uint64_t *cell)
{
    if ((memo->size + 1) * 2 > memo->capacity) {
        memo_t bigger = {weir_calloc(memo->capacity * 2, sizeof(memo->entries[0])), memo->capacity * 2, 0, memo->last_key,
                         memo->last};
        for (uint32_t i = 0; i != memo->capacity; ++i)
            if (memo->entries[i].key != 0)
                memo_insert(&bigger, memo->entries[i].key - 1, memo->entries[i].cell);
        free(memo->entries);
        *memo = bigger;
    }
    uint32_t mask = memo->capacity - 1, i = (key * 2654435761u) & mask;
    while (memo->entries[i].key != 0)
        i = (i + 1) & mask;
    memo->entries[i].key = key + 1;
    memo->entries[i].cell = cell;
    ++memo->size;
}

/* The calling thread's cell of weir_http_requests_total{path, method, status, protocol}; the series is registered on
 * its first request (over all threads), looked up in the registry on its first request on this thread. */
static uint64_t *requests_cell(request_logger_t *self, memo_t *memo, unsigned method, int status, unsigned protocol)
{
    uint32_t key = (uint32_t)method | (uint32_t)protocol << 4 | (uint32_t)status << 6;

    if (memo->last_key == key + 1)
        return memo->last;
    uint64_t *cell = memo_find(memo, key);
    if (cell == NULL) {
        char status_text[8];
        snprintf(status_text, sizeof(status_text), "%d", status);
        const char *values[] = {self->path, METHODS[method], status_text, PROTOCOLS[protocol]};
        cell = weir_metric_cells(weir_metrics_series(self->requests, values));
        memo_insert(memo, key, cell);
    }
    memo->last_key = key + 1;
    memo->last = cell;
    return cell;
}

static void on_log_access(h2o_logger_t *_self, h2o_req_t *req)
{
    request_logger_t *self = (void *)_self;
    memo_t *memo = h2o_context_get_logger_context(req->conn->ctx, &self->super);
    int status = req->res.status >= 0 && req->res.status <= 999 ? req->res.status : 0;

    if (memo != NULL)
        weir_cells_add(requests_cell(self, memo, method_index(req->method), status, protocol_index(req->version)), 1);

    thread_state_t *state = thread_state;
    flight_t flight;
    if (state != NULL && flight_take(state, req, &flight) == 0) {
        weir_cells_gauge_add(flight.path->in_flight, -1);
        weir_cells_observe(flight.path->handler->duration, flight.path->duration, iteration_now_ns(state) - flight.start_ns);
    }
}

static void on_logger_context_init(h2o_logger_t *_self, h2o_context_t *ctx)
{
    memo_t *memo = weir_calloc(1, sizeof(*memo));
    memo->capacity = 32;
    memo->entries = weir_calloc(memo->capacity, sizeof(memo->entries[0]));
    h2o_context_set_logger_context(ctx, _self, memo);
}

static void on_logger_context_dispose(h2o_logger_t *_self, h2o_context_t *ctx)
{
    memo_t *memo = h2o_context_get_logger_context(ctx, _self);
    if (memo != NULL) {
        free(memo->entries);
        free(memo);
    }
    h2o_context_set_logger_context(ctx, _self, NULL);
}

static void on_logger_dispose(h2o_logger_t *_self)
{
    request_logger_t *self = (void *)_self;
    free(self->path);
}

void weir_status_instrument(h2o_pathconf_t *pathconf, const char *path)
{
    weir_metrics_t *reg = weir_metrics_default();
    const char *label = path != NULL ? path : WEIR_STATUS_OTHER_PATH;

    in_flight_handler_t *counter = (void *)h2o_create_handler(pathconf, sizeof(*counter));
    counter->super.on_req = on_req_in_flight;
    counter->super.on_context_init = on_in_flight_context_init;
    counter->super.on_context_dispose = on_in_flight_context_dispose;
    counter->in_flight =
        weir_metrics_gauge(reg, "weir_http_requests_in_flight",
                           "HTTP requests being handled (read and not yet disposed of), by configured path", "path", label);
    /* Timed here rather than from h2o's timestamps, which are the loop's cached time (a millisecond apart at best). */
    counter->duration =
        weir_metrics_histogram(reg, "weir_http_request_duration_seconds",
                               "Time from a request reaching its path (head and body read) to the end of its answer, "
                               "by configured path",
                               &weir_metrics_seconds_buckets, "path", label);

    request_logger_t *logger = (void *)h2o_create_logger(pathconf, sizeof(*logger));
    logger->super.on_context_init = on_logger_context_init;
    logger->super.on_context_dispose = on_logger_context_dispose;
    logger->super.dispose = on_logger_dispose;
    logger->super.log_access = on_log_access;
    logger->path = weir_strdup(label);
    logger->requests = weir_metrics_family(reg, WEIR_METRICS_COUNTER, "weir_http_requests_total",
                                           "HTTP requests answered or given up, by configured path, method, status (0: no answer, "
                                           "the client went away first) and protocol",
                                           "path,method,status,protocol", NULL);
}
