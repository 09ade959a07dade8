/*
 * POST /upload: each request waits for a slot of the handler's gate (FIFO, shared by all worker threads), holds it
 * while the handler's backend uploads (upload_backend.h: a random delay on the worker's timing wheel, or a PUT to an
 * S3-compatible store), then answers.
 *
 * The job lives in one shared allocation on the request pool, so it is freed with the request and nothing outlives
 * it; h2o calls its destructor when the request is disposed (answered, reset, or the client is gone). That destructor
 * is the one place that cancels: whatever the job's state, it gives the slot (or the place in the queue) back and
 * stops the backend's work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/gate.h"
#include "weir/respond.h"
#include "weir/upload.h"
#include "weir/upload_backend.h"

typedef struct st_upload_handler_t {
    h2o_handler_t super;
    weir_upload_settings_t settings;
    weir_gate_t gate;
    weir_upload_backend_t *backend;
} upload_handler_t;

/* Per worker thread (the handler's context). */
typedef struct st_upload_thread_t {
    weir_gate_inbox_t *inbox;
    weir_upload_backend_thread_t *backend;
} upload_thread_t;

typedef struct st_upload_job_t {
    weir_gate_waiter_t waiter;
    weir_upload_op_t op;
    upload_handler_t *handler;
    upload_thread_t *thread;
    h2o_req_t *req; /* NULL once answered */
} upload_job_t;

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
    /* Answered, or the client went away while queued or during its upload: both calls are no-ops when done already. */
    weir_gate_release(&job->handler->gate, &job->waiter);
    weir_upload_backend_t *backend = job->handler->backend;
    backend->vt->cancel(backend, &job->op);
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
    backend->vt->start(backend, &job->op, on_upload_done);
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
    start_upload(job);
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
    *job = (upload_job_t){.handler = self, .thread = h2o_context_get_handler_context(req->conn->ctx, &self->super), .req = req};
    job->op.req = req;
    job->op.thread = job->thread->backend;
    if (self->backend->vt->prepare(self->backend, &job->op) != 0)
        return 0; /* answered */

    if (weir_gate_acquire(&self->gate, job->thread->inbox, &job->waiter, on_granted))
        start_upload(job);
    return 0;
}

static void on_context_init(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = weir_malloc(sizeof(*thread));
    thread->inbox = weir_gate_inbox_create(&self->gate, ctx->loop);
    if (self->backend->vt->thread_start(self->backend, ctx->loop, &thread->backend) != 0)
        h2o_fatal("upload: cannot start the upload backend on a worker thread");
    h2o_context_set_handler_context(ctx, &self->super, thread);
}

static void on_context_dispose(h2o_handler_t *_self, h2o_context_t *ctx)
{
    upload_handler_t *self = (void *)_self;
    upload_thread_t *thread = h2o_context_get_handler_context(ctx, &self->super);
    weir_gate_inbox_destroy(thread->inbox);
    self->backend->vt->thread_stop(self->backend, thread->backend);
    free(thread);
}

static void on_dispose(h2o_handler_t *_self)
{
    upload_handler_t *self = (void *)_self;
    weir_gate_dispose(&self->gate);
    self->backend->vt->destroy(self->backend);
}

int weir_upload_register(h2o_pathconf_t *pathconf, const weir_upload_settings_t *s)
{
    weir_upload_backend_t *backend;
    int ret;

    if (s->concurrency == 0 || s->delay_min_ms > s->delay_max_ms)
        return -EINVAL;
    if (s->backend == WEIR_UPLOAD_BACKEND_S3) {
        if ((ret = weir_upload_s3_create(&s->s3, weir_upload_store_connections(s), &backend)) != 0)
            return ret;
    } else {
        backend = weir_upload_delay_create(s->delay_min_ms, s->delay_max_ms);
    }
    upload_handler_t *self = (void *)h2o_create_handler(pathconf, sizeof(*self));
    self->super.on_req = on_req;
    self->super.on_context_init = on_context_init;
    self->super.on_context_dispose = on_context_dispose;
    self->super.dispose = on_dispose;
    self->settings = *s;
    memset(&self->settings.s3, 0, sizeof(self->settings.s3)); /* the backend has its own copy */
    self->backend = backend;
    weir_gate_init(&self->gate, s->concurrency);
    return 0;
}
