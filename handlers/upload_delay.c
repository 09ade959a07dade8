/*
 * The delay backend of /upload (see upload_backend.h): the simulated upload. A granted upload waits a random delay on
 * its worker's timing wheel (one uv timer per thread, not one per request), then answers {"success": true}. The wheel
 * entry lives on the request's pool.
 */
#include <stdlib.h>
#include <time.h>
#include "weir/common.h"
#include "weir/upload.h"
#include "weir/upload_backend.h"
#include "weir/wheel.h"

typedef struct st_delay_backend_t {
    weir_upload_backend_t super;
    uint32_t min_ms, max_ms;
} delay_backend_t;

typedef struct st_delay_thread_t {
    weir_upload_backend_thread_t super;
    weir_wheel_t *wheel;
} delay_thread_t;

typedef struct st_delay_op_t {
    weir_wheel_entry_t delay;
    weir_upload_op_t *op;
    weir_upload_done_cb cb;
} delay_op_t;

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

static int thread_start(weir_upload_backend_t *_self, uv_loop_t *loop, weir_upload_backend_thread_t **out)
{
    delay_backend_t *self = (void *)_self;
    delay_thread_t *thread = weir_malloc(sizeof(*thread));
    thread->super.backend = _self;
    thread->wheel = weir_wheel_create(loop, self->max_ms);
    *out = &thread->super;
    return 0;
}

static void thread_stop(weir_upload_backend_t *self, weir_upload_backend_thread_t *_thread)
{
    delay_thread_t *thread = (void *)_thread;
    weir_wheel_destroy(thread->wheel);
    free(thread);
}

static int prepare(weir_upload_backend_t *self, weir_upload_op_t *op)
{
    delay_op_t *d = h2o_mem_alloc_pool(&op->req->pool, sizeof(*d));
    *d = (delay_op_t){.op = op};
    op->data = d;
    return 0;
}

static void on_delay_done(weir_wheel_entry_t *entry)
{
    delay_op_t *d = H2O_STRUCT_FROM_MEMBER(delay_op_t, delay, entry);
    weir_upload_result_t result = {.status = 200, .body = h2o_iovec_init(SUCCESS_BODY, sizeof(SUCCESS_BODY) - 1)};
    d->cb(d->op, &result);
}

static void start(weir_upload_backend_t *_self, weir_upload_op_t *op, weir_upload_done_cb cb)
{
    delay_backend_t *self = (void *)_self;
    delay_op_t *d = op->data;
    d->cb = cb;
    weir_wheel_add(((delay_thread_t *)op->thread)->wheel, &d->delay,
                   weir_upload_draw_delay(thread_rng(), self->min_ms, self->max_ms), on_delay_done);
}

static void cancel(weir_upload_backend_t *self, weir_upload_op_t *op)
{
    delay_op_t *d = op->data;
    if (d != NULL)
        weir_wheel_cancel(((delay_thread_t *)op->thread)->wheel, &d->delay);
}

static void destroy(weir_upload_backend_t *self)
{
    free(self);
}

static const weir_upload_backend_vtable_t DELAY_VTABLE = {
    .name = "delay",
    .thread_start = thread_start,
    .thread_stop = thread_stop,
    .prepare = prepare,
    .start = start,
    .cancel = cancel,
    .destroy = destroy,
};

weir_upload_backend_t *weir_upload_delay_create(uint32_t min_ms, uint32_t max_ms)
{
    delay_backend_t *self = weir_calloc(1, sizeof(*self));
    self->super.vt = &DELAY_VTABLE;
    self->min_ms = min_ms;
    self->max_ms = max_ms;
    return &self->super;
}
