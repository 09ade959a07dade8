/*
 * POST /upload: each request waits for a slot of the handler's gate (FIFO, shared by all worker threads), holds it
 * for a random delay on its worker's timing wheel (one uv timer per thread, not one per request), then answers.
 *
 * The job lives in one shared allocation on the request pool, so it is freed with the request and nothing outlives
 * it; h2o calls its destructor when the request is disposed (answered, reset, or the client is gone). That destructor
 * is the one place that cancels: whatever the job's state, it gives the slot (or the place in the queue) back and
 * takes the delay off the wheel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include "weir/common.h"
#include "weir/gate.h"
#include "weir/metrics.h"
#include "weir/respond.h"
#include "weir/upload.h"
#include "weir/wheel.h"

typedef struct st_upload_handler_t {
    h2o_handler_t super;
    weir_upload_settings_t settings;
    weir_gate_t gate;
    weir_metric_t *in_use, *capacity, *waiting; /* gauges read from the gate at scrape time */
    weir_metric_t *wait;                        /* histogram: time from arrival to a slot */
} upload_handler_t;

/* Per worker thread (the handler's context). */
typedef struct st_upload_thread_t {
    weir_gate_inbox_t *inbox;
    weir_wheel_t *wheel;
} upload_thread_t;

typedef struct st_upload_job_t {
    weir_gate_waiter_t waiter;
    weir_wheel_entry_t delay;
    upload_handler_t *handler;
    upload_thread_t *thread;
    h2o_req_t *req; /* NULL once answered */
    uint64_t arrived_ns;
} upload_job_t;

static const char SUCCESS_BODY[] = "{\"success\": true}";

uint32_t weir_upload_draw_delay(uint64_t *state, uint32_t min, uint32_t max)
{
    uint64_t range = (uint64_t)max - min + 1, limit = UINT64_MAX - UINT64_MAX % range, x;
    do {
        /* xorshift64* */
        x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        x *= UINT64_C(2685821657736338717);
    } while (x >= limit);
    return min + (uint32_t)(x % range);
}

static uint64_t *thread_rng(void)
{
    static __thread uint64_t state;
    if (state == 0) {
        /* splitmix64 of the time and the thread, so that threads draw different sequences */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&state;
        z += UINT64_C(0x9e3779b97f4a7c15);
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        state = z != 0 ? z : 1;
    }
    return &state;
}

/* Gives the slot back; returns the request, which may be answered now (that disposes the job). */
static h2o_req_t *finish_job(upload_job_t *job)
{
    h2o_req_t *req = job->req;
    weir_gate_release(&job->handler->gate, &job->waiter);
    job->req = NULL;
    return req;
}

static void on_job_dispose(void *_job)
{
    upload_job_t *job = _job;
    /* Answered, or the client went away while queued or during its delay: both calls are no-ops when done already. */
    weir_gate_release(&job->handler->gate, &job->waiter);
    weir_wheel_cancel(job->thread->wheel, &job->delay);
}

static void on_delay_done(weir_wheel_entry_t *delay)
{
    h2o_req_t *req = finish_job(H2O_STRUCT_FROM_MEMBER(upload_job_t, delay, delay));
    weir_respond_json(req, 200, "OK", SUCCESS_BODY, sizeof(SUCCESS_BODY) - 1);
}

static void start_delay(upload_job_t *job)
{
    const weir_upload_settings_t *s = &job->handler->settings;
    weir_metric_observe(job->handler->wait, uv_hrtime() - job->arrived_ns);
    uint32_t delay = weir_upload_draw_delay(thread_rng(), s->delay_min_ms, s->delay_max_ms);
    weir_wheel_add(job->thread->wheel, &job->delay, delay, on_delay_done);
}

static void on_granted(weir_gate_waiter_t *waiter)
{
    upload_job_t *job = H2O_STRUCT_FROM_MEMBER(upload_job_t, waiter, waiter);
    if (weir_http1_peer_gone(job->req)) {
        /* Give the slot to the next in line now; the answer only lets h2o find out and close the connection. */
        h2o_req_t *req = finish_job(job);
        req->http1_is_persistent = 0;
        weir_respond_error(req, 503, "Service Unavailable", "client went away");
        return;
    }
    start_delay(job);
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

    if (weir_gate_acquire(&self->gate, job->thread->inbox, &job->waiter, on_granted))
        start_delay(job);
    return 0;
}

static void on_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = weir_malloc(sizeof(*thread));
    thread->inbox = weir_gate_inbox_create(&self->gate, ctx->loop);
    thread->wheel = weir_wheel_create(ctx->loop, self->settings.delay_max_ms);
    h2o_context_set_handler_context(ctx, &self->super, thread);
}

static void on_context_dispose(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = h2o_context_get_handler_context(ctx, &self->super);
    weir_gate_inbox_destroy(thread->inbox);
    weir_wheel_destroy(thread->wheel);
    free(thread);
}

/* The gate's state, read at scrape time under its mutex. */
static double gate_read(weir_gate_t *gate, const size_t *field)
{
    pthread_mutex_lock(&gate->mutex);
    size_t v = *field;
    pthread_mutex_unlock(&gate->mutex);
    return (double)v;
}

static double read_in_use(void *_gate)
{
    weir_gate_t *gate = _gate;
    return gate_read(gate, &gate->in_use);
}

static double read_capacity(void *_gate)
{
    weir_gate_t *gate = _gate;
    return gate_read(gate, &gate->slots);
}

static double read_waiting(void *_gate)
{
    weir_gate_t *gate = _gate;
    return gate_read(gate, &gate->queued);
}

static void on_dispose(h2o_handler_t *_self)
{
    upload_handler_t *self = (void *)_self;
    weir_metrics_remove_callback(self->in_use, read_in_use, &self->gate);
    weir_metrics_remove_callback(self->capacity, read_capacity, &self->gate);
    weir_metrics_remove_callback(self->waiting, read_waiting, &self->gate);
    weir_gate_dispose(&self->gate);
}

int weir_upload_register(h2o_pathconf_t *pathconf, const weir_upload_settings_t *s)
{
    if (s->concurrency == 0 || s->delay_min_ms > s->delay_max_ms)
        return -EINVAL;
    upload_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.on_context_init = on_context_init;
    self->super.on_context_dispose = on_context_dispose;
    self->super.dispose = on_dispose;
    self->settings = *s;
    weir_gate_init(&self->gate, s->concurrency);

    weir_metrics_t *reg = weir_metrics_default();
    const char *path = pathconf->path.base != NULL ? pathconf->path.base : "";
    self->in_use = weir_metrics_gauge(reg, "weir_upload_slots_in_use", "Upload slots held now", "path", path);
    self->capacity = weir_metrics_gauge(reg, "weir_upload_slots_capacity", "Upload slots (upload.concurrency)", "path", path);
    self->waiting = weir_metrics_gauge(reg, "weir_upload_queue_length", "Uploads waiting for a slot", "path", path);
    self->wait = weir_metrics_histogram(reg, "weir_upload_wait_seconds",
                                        "Time from an upload's arrival to its slot, for the uploads that got one",
                                        &weir_metrics_seconds_buckets, "path", path);
    weir_metrics_add_callback(self->in_use, read_in_use, &self->gate);
    weir_metrics_add_callback(self->capacity, read_capacity, &self->gate);
    weir_metrics_add_callback(self->waiting, read_waiting, &self->gate);
    return 0;
}
