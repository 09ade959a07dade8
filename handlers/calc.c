/*
 * GET /calc: sum(i*i for i in range(n)) on the handler's work pool (calc.threads threads at nice 10, see workpool.h),
 * so that the worker loop keeps serving while the sum is computed. The work callback sees only the job's own copy of
 * n; the done callback, on the loop that submitted the work, answers if the request is still there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "weir/calc.h"
#include "weir/common.h"
#include "weir/metrics.h"
#include "weir/respond.h"
#include "weir/shared.h"
#include "weir/workpool.h"

/* nice value of the pool threads that run sums: a saturated /calc leaves the worker loops the CPU they need */
#define CALC_NICE 10

/* The threads of a path and the inbox of each loop, shared by the handlers of every configuration generation with the
 * same thread count (a reload keeps them). */
typedef struct st_shared_pool_t {
    weir_workpool_t *pool;
    weir_per_loop_t inboxes;
} shared_pool_t;

typedef struct st_calc_handler_t {
    h2o_handler_t super;
    shared_pool_t *shared;
    weir_calc_settings_t settings;
    weir_workpool_t *pool;
    weir_metric_t *queued;   /* gauge: sums submitted and not done */
    weir_metric_t *duration; /* histogram: time of a sum on its pool thread */
} calc_handler_t;

typedef struct st_calc_job_t {
    weir_work_t work;
    int cancelled;                /* atomic: set on the loop when the client has gone, read by the running sum */
    h2o_req_t *req;               /* NULL once the request is gone */
    struct st_calc_job_t **guard; /* the slot on req->pool that points back here */
    uint64_t n;
    unsigned __int128 result;
    uint64_t ns; /* time the sum took */
    /* the path's series (they live as long as the process: a job may outlive its handler's generation) */
    const weir_metric_t *queued, *duration;
} calc_job_t;

unsigned __int128 weir_calc_sum_squares(uint64_t n, const int *cancel)
{
    /* The sum is kept as two 64-bit halves; i*i fits in 64 bits for every allowed n (< 2^32). The empty asm makes
     * each square opaque to the optimiser, so that it cannot replace the loop by a closed form: the work is real.
     * The loop runs in blocks of CHECK_EVERY iterations (a few microseconds) with a look at the cancel flag between
     * two blocks: a sum nobody waits for any more stops within one block, and the inner loop stays as it was. */
    enum { CHECK_EVERY = 8192 };
    uint64_t lo = 0, hi = 0;
    for (uint64_t i = 0; i < n;) {
        uint64_t end = n - i > CHECK_EVERY ? i + CHECK_EVERY : n;
        for (; i < end; ++i) {
            uint64_t sq = i * i;
            __asm__("" : "+r"(sq));
            uint64_t prev = lo;
            lo += sq;
            hi += lo < prev;
        }
        if (cancel != NULL && __atomic_load_n(cancel, __ATOMIC_RELAXED))
            break;
    }
    return (unsigned __int128)hi << 64 | lo;
}

size_t weir_u128_to_str(unsigned __int128 v, char *buf)
{
    char tmp[40];
    size_t len = 0;
    do {
        tmp[len++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < len; ++i)
        buf[i] = tmp[len - 1 - i];
    buf[len] = '\0';
    return len;
}

static void on_work(weir_work_t *work)
{
    calc_job_t *job = (calc_job_t *)work;
    uint64_t start = uv_hrtime();
    job->result = weir_calc_sum_squares(job->n, &job->cancelled);
    job->ns = uv_hrtime() - start;
}

static void on_work_done(weir_work_t *work)
{
    calc_job_t *job = (calc_job_t *)work;
    h2o_req_t *req = job->req;

    weir_metric_gauge_add(job->queued, -1);
    if (req != NULL) {
        weir_metric_observe(job->duration, job->ns);
        *job->guard = NULL;
        char body[64];
        size_t len = (size_t)snprintf(body, sizeof(body), "{\"result\": ");
        len += weir_u128_to_str(job->result, body + len);
        body[len++] = '}';
        weir_respond_json(req, 200, "OK", body, len);
    }
    free(job);
}

static void on_guard_dispose(void *_guard)
{
    calc_job_t *job = *(calc_job_t **)_guard;
    if (job == NULL)
        return;
    /* The client went away. Work still queued is taken back; work already running is told to stop (it notices within
     * a few microseconds), and its done callback only frees the job. */
    job->req = NULL;
    if (weir_workpool_cancel(&job->work)) {
        weir_metric_gauge_add(job->queued, -1);
        free(job);
    } else
        __atomic_store_n(&job->cancelled, 1, __ATOMIC_RELAXED);
}

/* Parses ?n= into @p n; answers 400 itself when it is not a decimal integer within [0, max]. */
static int parse_n_or_respond(h2o_req_t *req, const weir_calc_settings_t *s, uint64_t *n)
{
    h2o_iovec_t value;
    char msg[128];

    switch (weir_query_param_or_respond(req, "n", &value)) {
    case 0:
        *n = s->n;
        return 0;
    case 1:
        break;
    default:
        return -1;
    }
    if (weir_parse_decimal(value.base, value.len, s->max_n, n) != 0) {
        snprintf(msg, sizeof(msg), "n must be an integer from 0 to %llu", (unsigned long long)s->max_n);
        weir_respond_error(req, 400, "Bad Request", msg);
        return -1;
    }
    return 0;
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    calc_handler_t *self = (void *)_self;
    uint64_t n;

    if (!weir_path_is_exact(req)) {
        weir_respond_not_found(req);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        weir_respond_method_not_allowed(req, "GET, HEAD");
        return 0;
    }
    if (parse_n_or_respond(req, &self->settings, &n) != 0)
        return 0;

    weir_workpool_inbox_t *inbox = h2o_context_get_handler_context(req->conn->ctx, &self->super);
    if (inbox == NULL) {
        weir_respond_error(req, 503, "Service Unavailable", "the calculation pool is not available");
        return 0;
    }
    calc_job_t *job = weir_calloc(1, sizeof(*job));
    job->n = n;
    job->req = req;
    job->queued = self->queued;
    job->duration = self->duration;
    if (weir_workpool_submit(inbox, &job->work, on_work, on_work_done) != 0) {
        free(job);
        weir_respond_error(req, 503, "Service Unavailable", "the calculation pool is not available");
        return 0;
    }
    weir_metric_gauge_add(self->queued, 1);
    job->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*job->guard), on_guard_dispose);
    *job->guard = job;
    return 0;
}

static int create_inbox(void *arg, uv_loop_t *loop, void **value)
{
    shared_pool_t *sp = arg;
    return (*value = weir_workpool_inbox_create(sp->pool, loop)) != NULL ? 0 : -EMFILE;
}

static void destroy_inbox(void *arg, void *inbox)
{
    weir_workpool_inbox_destroy(inbox);
}

static void on_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    calc_handler_t *self = (void *)_self;
    void *inbox = NULL;
    if (weir_per_loop_acquire(&self->shared->inboxes, ctx->loop, create_inbox, self->shared, &inbox) != 0)
        inbox = NULL;
    h2o_context_set_handler_context(ctx, &self->super, inbox);
}

static void on_context_dispose(h2o_handler_t *_self, h2o_context_t *ctx)
{
    calc_handler_t *self = (void *)_self;
    weir_workpool_inbox_t *inbox = h2o_context_get_handler_context(ctx, &self->super);
    if (inbox != NULL)
        weir_per_loop_release(&self->shared->inboxes, ctx->loop, destroy_inbox, self->shared);
}

static void on_dispose(h2o_handler_t *_self)
{
    calc_handler_t *self = (void *)_self;
    weir_shared_release(self->shared);
}

static void *create_pool(void *threads)
{
    shared_pool_t *sp = weir_calloc(1, sizeof(*sp));
    sp->pool = weir_workpool_create(*(unsigned *)threads, CALC_NICE);
    weir_per_loop_init(&sp->inboxes);
    return sp;
}

static void destroy_pool(void *_sp)
{
    shared_pool_t *sp = _sp;
    weir_per_loop_dispose(&sp->inboxes);
    weir_workpool_destroy(sp->pool);
    free(sp);
}

int weir_calc_register(h2o_pathconf_t *pathconf, const weir_calc_settings_t *s)
{
    if (s->n > s->max_n || s->max_n > WEIR_CALC_N_LIMIT || s->threads > WEIR_CALC_MAX_THREADS)
        return -EINVAL;
    unsigned threads = s->threads;
    if (threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        threads = ncpu >= 1 ? (unsigned)ncpu : 1;
    }
    calc_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.on_context_init = on_context_init;
    self->super.on_context_dispose = on_context_dispose;
    self->super.dispose = on_dispose;
    self->settings = *s;
    /* A reload keeps the threads of a path whose thread count did not change. */
    char what[64], key[1024];
    int created;
    snprintf(what, sizeof(what), "calc.pool|%u", threads);
    self->shared =
        weir_shared_acquire(weir_shared_path_key(pathconf, what, key, sizeof(key)), create_pool, &threads, destroy_pool, &created);
    self->pool = self->shared->pool;
    const char *path = pathconf->path.base != NULL ? pathconf->path.base : "";
    self->queued = weir_metrics_gauge(weir_metrics_default(), "weir_calc_jobs_queued",
                                      "Sums submitted to the /calc work pool and not finished (waiting for a thread or running)",
                                      "path", path);
    self->duration = weir_metrics_histogram(weir_metrics_default(), "weir_calc_sum_duration_seconds",
                                            "Time a sum took on its pool thread, for the sums whose client was still there",
                                            &weir_metrics_seconds_buckets, "path", path);
    return 0;
}

weir_workpool_inbox_t *weir_calc_inbox(h2o_pathconf_t *pathconf, h2o_context_t *ctx)
{
    for (size_t i = 0; i != pathconf->handlers.size; ++i)
        if (pathconf->handlers.entries[i]->on_req == on_req)
            return h2o_context_get_handler_context(ctx, pathconf->handlers.entries[i]);
    return NULL;
}
