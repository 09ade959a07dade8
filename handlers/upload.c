/*
 * POST /upload: each request waits for a slot of the handler's gate (FIFO; local to the process or shared through
 * Redis, behind gate.h), holds it while the handler's backend uploads (upload_backend.h: a random delay on the worker's
 * timing wheel, or a PUT to an S3-compatible store), then answers.
 *
 * Waiting is bounded twice: the gate refuses a waiter beyond max-queue at once, and a waiter without a slot after
 * queue-timeout is answered 503. Every waiter of a path has the same timeout, so each thread keeps its waiters in
 * arrival order and one uv timer per thread, armed for the oldest: no timer per waiter.
 *
 * The job lives in one shared allocation on the request pool, so it is freed with the request and nothing outlives
 * it; h2o calls its destructor when the request is disposed (answered, reset, or the client is gone). That destructor
 * is the one place that cancels: whatever the job's state, it gives the slot (or the place in the queue) back and
 * stops the backend's work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/gate.h"
#include "weir/metrics.h"
#include "weir/respond.h"
#include "weir/shared.h"
#include "weir/upload.h"
#include "weir/upload_backend.h"

/* The gate of a path, shared by the handlers of every configuration generation whose gate settings are the same (a
 * reload keeps it: slots held under the old configuration count against the new limit). */
typedef struct st_shared_gate_t {
    weir_gate_t *gate;
    weir_per_loop_t threads; /* the gate's thread state of each loop, shared by the contexts of that loop */
    h2o_linklist_t limits;   /* the handlers using it, oldest first: the newest one's limits apply (main thread) */
    weir_metric_t *in_use, *capacity, *waiting; /* gauges read from the gate at scrape time, while it lives */
    weir_metric_t *wait;                        /* histogram: time from arrival to a slot */
} shared_gate_t;

typedef struct st_upload_handler_t {
    h2o_handler_t super;
    weir_upload_settings_t settings;
    shared_gate_t *shared;
    weir_gate_t *gate;
    h2o_linklist_t limits_link; /* in shared->limits */
    weir_upload_backend_t *backend;
} upload_handler_t;

/* Per worker thread (the handler's context). */
typedef struct st_upload_thread_t {
    weir_gate_thread_t *gate;
    weir_upload_backend_thread_t *backend;
    size_t uploading;        /* jobs holding a slot, in their backend */
    uv_timer_t *queue_timer; /* due when the oldest waiter's queue-timeout ends; freed in its close callback */
    h2o_linklist_t waiting;  /* jobs waiting for a slot, oldest first */
} upload_thread_t;

typedef struct st_upload_job_t {
    weir_gate_waiter_t waiter;
    weir_upload_op_t op;
    int uploading;          /* counted in thread->uploading */
    h2o_linklist_t waiting; /* in thread->waiting while the gate has not granted a slot */
    uint64_t waiting_since; /* loop time */
    upload_handler_t *handler;
    upload_thread_t *thread;
    h2o_req_t *req; /* NULL once answered */
    uint64_t arrived_ns;
} upload_job_t;

/* Gives the slot back; returns the request, which may be answered now (that disposes the job). */
static void stop_uploading(upload_job_t *job)
{
    if (job->uploading) {
        job->uploading = 0;
        --job->thread->uploading;
    }
}

static h2o_req_t *finish_job(upload_job_t *job)
{
    h2o_req_t *req = job->req;
    stop_uploading(job);
    weir_gate_release(job->handler->gate, &job->waiter);
    job->req = NULL;
    return req;
}

static void stop_waiting(upload_job_t *job)
{
    if (h2o_linklist_is_linked(&job->waiting)) {
        h2o_linklist_unlink(&job->waiting);
        if (h2o_linklist_is_empty(&job->thread->waiting))
            uv_timer_stop(job->thread->queue_timer);
    }
}

static void on_job_dispose(void *_job)
{
    upload_job_t *job = _job;
    /* Answered, or the client went away while queued or during its upload: each call is a no-op when done already.
     * The upload stops before its slot is given back, so that the next one (perhaps on another thread) never overlaps
     * with it at the store. */
    weir_upload_backend_t *backend = job->handler->backend;
    backend->vt->cancel(backend, &job->op);
    stop_uploading(job);
    weir_gate_release(job->handler->gate, &job->waiter);
    stop_waiting(job);
}

/* Seconds after which the queue ahead should have drained at full speed: at least 1, at most the queue timeout. */
static unsigned retry_after_s(upload_handler_t *self)
{
    const weir_upload_settings_t *s = &self->settings;
    weir_gate_stats_t st;

    weir_gate_stats(self->gate, &st);
    uint64_t ms = (uint64_t)st.waiting * (((uint64_t)s->delay_min_ms + s->delay_max_ms) / 2) / s->concurrency;
    if (ms > s->queue_timeout_ms)
        ms = s->queue_timeout_ms;
    return ms <= 1000 ? 1 : (unsigned)((ms + 999) / 1000);
}

static const char *gate_failure(int status)
{
    switch (status) {
    case -EBUSY:
        return "too many uploads waiting for a slot";
    case -ETIMEDOUT:
        return "the upload gate did not answer in time";
    case -EPROTO:
        return "the upload gate failed";
    default:
        return "the upload gate is unavailable";
    }
}

static const char *status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

static void on_upload_done(weir_upload_op_t *op, const weir_upload_result_t *result)
{
    h2o_req_t *req = finish_job(H2O_STRUCT_FROM_MEMBER(upload_job_t, op, op));
    if (result->close_connection)
        req->http1_is_persistent = 0;
    if (result->status == 200)
        weir_respond_json(req, 200, "OK", result->body.base, result->body.len);
    else
        weir_respond_error(req, result->status, status_reason(result->status), result->error);
}

static void start_upload(upload_job_t *job)
{
    weir_upload_backend_t *backend = job->handler->backend;
    weir_metric_observe(job->handler->shared->wait, uv_hrtime() - job->arrived_ns);
    job->uploading = 1;
    ++job->thread->uploading;
    backend->vt->start(backend, &job->op, on_upload_done);
}

static void on_granted(weir_gate_waiter_t *waiter, int status)
{
    upload_job_t *job = H2O_STRUCT_FROM_MEMBER(upload_job_t, waiter, waiter);
    stop_waiting(job);
    if (status != 0) {
        /* The gate gave up on the waiter, or took a held slot back (its lease could not be renewed): it is idle. */
        h2o_req_t *req = job->req;
        weir_upload_backend_t *backend = job->handler->backend;
        backend->vt->cancel(backend, &job->op); /* an s3 PUT in flight is aborted, what it may have stored deleted */
        stop_uploading(job);
        job->req = NULL;
        weir_respond_unavailable(req, 1, gate_failure(status));
        return;
    }
    if (weir_http1_peer_gone(job->req)) {
        /* Give the slot to the next in line now; the answer only lets h2o find out and close the connection. */
        h2o_req_t *req = finish_job(job);
        req->http1_is_persistent = 0;
        weir_respond_error(req, 503, "Service Unavailable", "client went away");
        return;
    }
    start_upload(job);
}

static void arm_queue_timer(upload_thread_t *thread, uint32_t timeout_ms);

/* Answers the waiters whose queue-timeout has passed, oldest first, and arms the timer for the next one. */
static void on_queue_timer(uv_timer_t *timer)
{
    upload_thread_t *thread = timer->data;
    uint64_t now = uv_now(timer->loop);

    while (!h2o_linklist_is_empty(&thread->waiting)) {
        upload_job_t *job = H2O_STRUCT_FROM_MEMBER(upload_job_t, waiting, thread->waiting.next);
        upload_handler_t *self = job->handler;
        uint32_t timeout = self->settings.queue_timeout_ms;
        if (job->waiting_since + timeout > now) {
            arm_queue_timer(thread, (uint32_t)(job->waiting_since + timeout - now));
            return;
        }
        char msg[96];
        snprintf(msg, sizeof(msg), "no upload slot within %u ms (upload.queue-timeout)", (unsigned)timeout);
        h2o_req_t *req = finish_job(job); /* gives its place back */
        stop_waiting(job);
        weir_respond_unavailable(req, retry_after_s(self), msg);
    }
}

static void arm_queue_timer(upload_thread_t *thread, uint32_t timeout_ms)
{
    uv_timer_start(thread->queue_timer, on_queue_timer, timeout_ms, 0);
}

static void start_waiting(upload_job_t *job)
{
    upload_thread_t *thread = job->thread;
    int was_empty = h2o_linklist_is_empty(&thread->waiting);

    job->waiting_since = uv_now(thread->queue_timer->loop);
    h2o_linklist_insert(&thread->waiting, &job->waiting);
    if (was_empty)
        arm_queue_timer(thread, job->handler->settings.queue_timeout_ms);
}

static int on_req(h2o_handler_t *_self, h2o_req_t *req)
{
    upload_handler_t *self = (void *)_self;

    if (!weir_path_is_exact(req)) {
        weir_respond_not_found(req);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        weir_respond_method_not_allowed(req, "POST");
        return 0;
    }

    upload_job_t *job = h2o_mem_alloc_shared(&req->pool, sizeof(*job), on_job_dispose);
    *job = (upload_job_t){.handler = self,
                          .thread = h2o_context_get_handler_context(req->conn->ctx, &self->super),
                          .req = req,
                          .arrived_ns = uv_hrtime()};
    job->op.req = req;
    job->op.thread = job->thread->backend;
    if (self->backend->vt->prepare(self->backend, &job->op) != 0)
        return 0; /* answered */

    switch (weir_gate_acquire(self->gate, job->thread->gate, &job->waiter, on_granted)) {
    case WEIR_GATE_NOW:
        start_upload(job);
        break;
    case WEIR_GATE_PENDING:
        start_waiting(job);
        break;
    case -EBUSY:
        weir_respond_unavailable(req, retry_after_s(self), "too many uploads waiting for a slot (upload.max-queue)");
        break;
    default:
        weir_respond_unavailable(req, 1, "the upload gate is unavailable");
        break;
    }
    return 0;
}

static int start_gate_thread(void *arg, uv_loop_t *loop, void **value)
{
    shared_gate_t *sg = arg;
    return weir_gate_thread_start(sg->gate, loop, (weir_gate_thread_t **)value);
}

static void stop_gate_thread(void *arg, void *value)
{
    shared_gate_t *sg = arg;
    weir_gate_thread_stop(sg->gate, value);
}

static void on_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = weir_malloc(sizeof(*thread));
    void *gate_thread;
    if (weir_per_loop_acquire(&self->shared->threads, ctx->loop, start_gate_thread, self->shared, &gate_thread) != 0)
        h2o_fatal("upload: cannot start the gate on a worker thread");
    thread->gate = gate_thread;
    if (self->backend->vt->thread_start(self->backend, ctx->loop, &thread->backend) != 0)
        h2o_fatal("upload: cannot start the upload backend on a worker thread");
    thread->queue_timer = weir_malloc(sizeof(*thread->queue_timer));
    uv_timer_init(ctx->loop, thread->queue_timer);
    thread->queue_timer->data = thread;
    h2o_linklist_init_anchor(&thread->waiting);
    thread->uploading = 0;
    h2o_context_set_handler_context(ctx, &self->super, thread);
}

static void on_context_dispose(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = h2o_context_get_handler_context(ctx, &self->super);
    weir_per_loop_release(&self->shared->threads, ctx->loop, stop_gate_thread, self->shared);
    self->backend->vt->thread_stop(self->backend, thread->backend);
    uv_close((uv_handle_t *)thread->queue_timer, (uv_close_cb)free);
    free(thread);
}

static void apply_newest_limits(shared_gate_t *sg)
{
    if (h2o_linklist_is_empty(&sg->limits))
        return;
    upload_handler_t *newest = H2O_STRUCT_FROM_MEMBER(upload_handler_t, limits_link, sg->limits.prev);
    weir_gate_set_limits(sg->gate, newest->settings.concurrency, newest->settings.max_queue);
}

static void on_dispose(h2o_handler_t *_self)
{
    upload_handler_t *self = (void *)_self;
    /* A generation that goes (replaced, or one that failed to set up) gives the limits back to the newest one left. */
    h2o_linklist_unlink(&self->limits_link);
    apply_newest_limits(self->shared);
    weir_shared_release(self->shared);
    self->backend->vt->destroy(self->backend);
}

typedef struct st_create_args_t {
    const weir_upload_settings_t *settings;
    const char *path; /* for the metrics' labels */
    int ret;
} create_args_t;

/* The gate's state, read at scrape time (weir_gate_stats may be called from any thread). */
static double read_in_use(void *gate)
{
    weir_gate_stats_t st;
    weir_gate_stats(gate, &st);
    return (double)st.in_use;
}

static double read_capacity(void *gate)
{
    weir_gate_stats_t st;
    weir_gate_stats(gate, &st);
    return (double)st.slots;
}

static double read_waiting(void *gate)
{
    weir_gate_stats_t st;
    weir_gate_stats(gate, &st);
    return (double)st.waiting;
}

static void init_metrics(shared_gate_t *sg, const char *path)
{
    weir_metrics_t *reg = weir_metrics_default();
    sg->in_use = weir_metrics_gauge(reg, "weir_upload_slots_in_use", "Upload slots held by this process now", "path", path);
    sg->capacity =
        weir_metrics_gauge(reg, "weir_upload_slots_capacity",
                           "Upload slots (upload.concurrency; for a Redis gate, shared by every instance)", "path", path);
    sg->waiting = weir_metrics_gauge(reg, "weir_upload_queue_length", "Uploads of this process waiting for a slot", "path", path);
    sg->wait = weir_metrics_histogram(reg, "weir_upload_wait_seconds",
                                      "Time from an upload's arrival to its slot, for the uploads that got one",
                                      &weir_metrics_seconds_buckets, "path", path);
    weir_metrics_add_callback(sg->in_use, read_in_use, sg->gate);
    weir_metrics_add_callback(sg->capacity, read_capacity, sg->gate);
    weir_metrics_add_callback(sg->waiting, read_waiting, sg->gate);
}

static void *create_shared_gate(void *_args)
{
    create_args_t *args = _args;
    const weir_upload_settings_t *s = args->settings;
    weir_gate_t *gate;

    if (s->gate == WEIR_UPLOAD_GATE_REDIS) {
        weir_gate_redis_options_t opts = {.url = s->redis_url != NULL ? s->redis_url : WEIR_UPLOAD_DEFAULT_REDIS_URL,
                                          .name = s->redis_name != NULL ? s->redis_name : WEIR_UPLOAD_DEFAULT_REDIS_NAME,
                                          .slots = s->concurrency,
                                          .max_queue = s->max_queue,
                                          .lease_ms = s->redis_lease_ms,
                                          .timeout_ms = s->redis_timeout_ms,
                                          .on_failure = s->on_failure,
                                          .path = args->path};
        if ((args->ret = weir_gate_redis_create(&opts, &gate)) != 0)
            return NULL;
    } else {
        gate = weir_gate_local_create(s->concurrency, s->max_queue);
    }
    shared_gate_t *sg = weir_calloc(1, sizeof(*sg));
    sg->gate = gate;
    weir_per_loop_init(&sg->threads);
    h2o_linklist_init_anchor(&sg->limits);
    init_metrics(sg, args->path != NULL ? args->path : "");
    return sg;
}

static void destroy_shared_gate(void *_sg)
{
    shared_gate_t *sg = _sg;
    weir_metrics_remove_callback(sg->in_use, read_in_use, sg->gate);
    weir_metrics_remove_callback(sg->capacity, read_capacity, sg->gate);
    weir_metrics_remove_callback(sg->waiting, read_waiting, sg->gate);
    weir_per_loop_dispose(&sg->threads);
    weir_gate_destroy(sg->gate);
    free(sg);
}

int weir_upload_register(h2o_pathconf_t *pathconf, const weir_upload_settings_t *s)
{
    char what[1024], key[1536];
    weir_upload_backend_t *backend;
    int created, ret;

    if (s->concurrency == 0 || s->delay_min_ms > s->delay_max_ms || s->max_queue == 0 || s->queue_timeout_ms == 0)
        return -EINVAL;
    if (s->gate == WEIR_UPLOAD_GATE_REDIS) {
        if (s->redis_lease_ms < weir_upload_min_lease_ms(s->delay_max_ms) || s->redis_timeout_ms == 0 ||
            (uint64_t)s->redis_timeout_ms * 2 > s->redis_lease_ms)
            return -EINVAL;
        snprintf(what, sizeof(what), "upload.gate|redis|%s|%s|%u|%u|%d",
                 s->redis_url != NULL ? s->redis_url : WEIR_UPLOAD_DEFAULT_REDIS_URL,
                 s->redis_name != NULL ? s->redis_name : WEIR_UPLOAD_DEFAULT_REDIS_NAME, (unsigned)s->redis_lease_ms,
                 (unsigned)s->redis_timeout_ms, (int)s->on_failure);
    } else {
        snprintf(what, sizeof(what), "upload.gate|local");
    }
    /* The backend belongs to this configuration generation (an s3 one: its HTTP clients and hashing threads). */
    if (s->backend == WEIR_UPLOAD_BACKEND_S3) {
        if ((ret = weir_upload_s3_create(&s->s3, weir_upload_store_connections(s), &backend)) != 0)
            return ret;
    } else {
        backend = weir_upload_delay_create(s->delay_min_ms, s->delay_max_ms);
    }
    create_args_t args = {.settings = s, .path = pathconf->path.base};
    shared_gate_t *sg = weir_shared_acquire(weir_shared_path_key(pathconf, what, key, sizeof(key)), create_shared_gate, &args,
                                            destroy_shared_gate, &created);
    if (sg == NULL) {
        backend->vt->destroy(backend);
        return args.ret != 0 ? args.ret : -ENOMEM;
    }
    upload_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.on_context_init = on_context_init;
    self->super.on_context_dispose = on_context_dispose;
    self->super.dispose = on_dispose;
    self->settings = *s;
    memset(&self->settings.s3, 0, sizeof(self->settings.s3)); /* the backend has its own copy */
    self->backend = backend;
    self->shared = sg;
    self->gate = sg->gate;
    h2o_linklist_insert(&sg->limits, &self->limits_link);
    if (!created)
        apply_newest_limits(sg);
    return 0;
}

int weir_upload_stats(h2o_pathconf_t *pathconf, h2o_context_t *ctx, weir_upload_stats_t *st)
{
    for (size_t i = 0; i != pathconf->handlers.size; ++i) {
        h2o_handler_t *handler = pathconf->handlers.entries[i];
        if (handler->on_req != on_req)
            continue;
        upload_handler_t *self = (void *)handler;
        upload_thread_t *thread = h2o_context_get_handler_context(ctx, handler);
        weir_gate_stats(self->gate, &st->gate);
        st->delays = thread->uploading;
        st->queued = 0;
        for (h2o_linklist_t *l = thread->waiting.next; l != &thread->waiting; l = l->next)
            ++st->queued;
        return 0;
    }
    return -ENOENT;
}
