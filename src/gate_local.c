/*
 * The local gate (see gate.h): a counter plus an intrusive FIFO of waiters under a mutex, shared by every worker
 * thread. A slot released on any thread goes straight to the head waiter, which is moved to its thread's inbox (a
 * uv_async_t) and told there, on its own loop. A newcomer takes a free slot only when nobody is queued before it.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/gate.h"

typedef struct st_local_gate_t {
    weir_gate_t super;
    pthread_mutex_t mutex;
    size_t slots;
    size_t max_queue;
    size_t in_use;     /* slots granted and not released */
    size_t max_in_use; /* the most ever in use at once */
    size_t queued;     /* waiters in the FIFO */
    uint64_t refused;
    h2o_linklist_t queue;
} local_gate_t;

/* The thread state: the inbox through which the gate wakes the thread's waiters. */
typedef struct st_local_thread_t {
    uv_async_t async;
    local_gate_t *gate;
    h2o_linklist_t granted; /* waiters granted a slot and not yet told; protected by gate->mutex */
} local_thread_t;

/* Runs on the inbox's loop. Waiters are taken one at a time, so that a callback that releases some other waiter
 * of this inbox finds it either still in the inbox or already told, never half-way. */
static void on_inbox_wake(uv_async_t *async)
{
    local_thread_t *inbox = async->data;
    local_gate_t *gate = inbox->gate;

    for (;;) {
        weir_gate_waiter_t *waiter = NULL;
        pthread_mutex_lock(&gate->mutex);
        if (!h2o_linklist_is_empty(&inbox->granted)) {
            waiter = H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, inbox->granted.next);
            h2o_linklist_unlink(&waiter->link);
            waiter->state = WEIR_GATE_HELD;
        }
        pthread_mutex_unlock(&gate->mutex);
        if (waiter == NULL)
            break;
        waiter->cb(waiter, 0);
    }
}

static int thread_start(weir_gate_t *_gate, uv_loop_t *loop, weir_gate_thread_t **out)
{
    local_thread_t *inbox = weir_malloc(sizeof(*inbox));
    inbox->gate = (local_gate_t *)_gate;
    h2o_linklist_init_anchor(&inbox->granted);
    uv_async_init(loop, &inbox->async, on_inbox_wake);
    inbox->async.data = inbox;
    /* The inbox must not keep a loop alive that has nothing else to do. */
    uv_unref((uv_handle_t *)&inbox->async);
    *out = (weir_gate_thread_t *)inbox;
    return 0;
}

static void on_inbox_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void thread_stop(weir_gate_t *_gate, weir_gate_thread_t *thread)
{
    local_thread_t *inbox = (local_thread_t *)thread;

    pthread_mutex_lock(&inbox->gate->mutex);
    assert(h2o_linklist_is_empty(&inbox->granted));
    pthread_mutex_unlock(&inbox->gate->mutex);
    uv_close((uv_handle_t *)&inbox->async, on_inbox_closed);
}

static int acquire(weir_gate_t *_gate, weir_gate_thread_t *thread, weir_gate_waiter_t *waiter, weir_gate_cb cb)
{
    local_gate_t *gate = (local_gate_t *)_gate;
    int ret;

    assert(waiter->state == WEIR_GATE_IDLE);
    waiter->thread = thread;
    waiter->cb = cb;
    pthread_mutex_lock(&gate->mutex);
    /* FIFO: a newcomer may take a free slot only when nobody is queued before it. */
    if (gate->in_use < gate->slots && h2o_linklist_is_empty(&gate->queue)) {
        if (++gate->in_use > gate->max_in_use)
            gate->max_in_use = gate->in_use;
        waiter->state = WEIR_GATE_HELD;
        ret = WEIR_GATE_NOW;
    } else if (gate->queued >= gate->max_queue) {
        ++gate->refused;
        ret = -EBUSY;
    } else {
        h2o_linklist_insert(&gate->queue, &waiter->link);
        ++gate->queued;
        waiter->state = WEIR_GATE_WAITING;
        ret = WEIR_GATE_PENDING;
    }
    pthread_mutex_unlock(&gate->mutex);
    return ret;
}

/* Called with the mutex held: the slot of a departing holder goes to the head of the queue, or back to the gate.
 * Returns the inbox to wake, if any. */
static local_thread_t *pass_slot_on(local_gate_t *gate)
{
    /* after a reload lowered the capacity, a released slot above it goes away */
    if (h2o_linklist_is_empty(&gate->queue) || gate->in_use > gate->slots) {
        --gate->in_use;
        return NULL;
    }
    weir_gate_waiter_t *next = H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, gate->queue.next);
    local_thread_t *inbox = (local_thread_t *)next->thread;
    h2o_linklist_unlink(&next->link);
    --gate->queued;
    next->state = WEIR_GATE_GRANTED;
    h2o_linklist_insert(&inbox->granted, &next->link);
    return inbox;
}

static void release(weir_gate_t *_gate, weir_gate_waiter_t *waiter)
{
    local_gate_t *gate = (local_gate_t *)_gate;
    local_thread_t *wake = NULL;

    pthread_mutex_lock(&gate->mutex);
    switch (waiter->state) {
    case WEIR_GATE_WAITING:
        h2o_linklist_unlink(&waiter->link);
        --gate->queued;
        break;
    case WEIR_GATE_GRANTED:
        h2o_linklist_unlink(&waiter->link);
        wake = pass_slot_on(gate);
        break;
    case WEIR_GATE_HELD:
        wake = pass_slot_on(gate);
        break;
    default:
        break;
    }
    waiter->state = WEIR_GATE_IDLE;
    /* Sent under the mutex: an inbox is destroyed only after taking the mutex with nothing granted to it, so it
     * cannot be closed between the hand-off and this wake-up. */
    if (wake != NULL)
        uv_async_send(&wake->async);
    pthread_mutex_unlock(&gate->mutex);
}

/* A new capacity: slots above the old one go to the queue's head at once; slots held above the new one go away as
 * their holders release them. */
static void set_limits(weir_gate_t *_gate, size_t slots, size_t max_queue)
{
    local_gate_t *gate = (local_gate_t *)_gate;

    pthread_mutex_lock(&gate->mutex);
    gate->slots = slots;
    gate->max_queue = max_queue;
    while (gate->in_use < gate->slots && !h2o_linklist_is_empty(&gate->queue)) {
        ++gate->in_use;
        if (gate->in_use > gate->max_in_use)
            gate->max_in_use = gate->in_use;
        local_thread_t *inbox = pass_slot_on(gate);
        uv_async_send(&inbox->async);
    }
    pthread_mutex_unlock(&gate->mutex);
}

static void stats(weir_gate_t *_gate, weir_gate_stats_t *st)
{
    local_gate_t *gate = (local_gate_t *)_gate;

    pthread_mutex_lock(&gate->mutex);
    *st = (weir_gate_stats_t){.slots = gate->slots,
                              .in_use = gate->in_use,
                              .max_in_use = gate->max_in_use,
                              .waiting = gate->queued,
                              .refused = gate->refused};
    pthread_mutex_unlock(&gate->mutex);
}

static void destroy(weir_gate_t *_gate)
{
    local_gate_t *gate = (local_gate_t *)_gate;

    assert(h2o_linklist_is_empty(&gate->queue));
    pthread_mutex_destroy(&gate->mutex);
    free(gate);
}

static const weir_gate_vtable_t LOCAL_VTABLE = {
    .name = "local",
    .thread_start = thread_start,
    .thread_stop = thread_stop,
    .acquire = acquire,
    .release = release,
    .stats = stats,
    .set_limits = set_limits,
    .destroy = destroy,
};

weir_gate_t *weir_gate_local_create(size_t slots, size_t max_queue)
{
    if (slots == 0)
        return NULL;
    local_gate_t *gate = weir_calloc(1, sizeof(*gate));
    gate->super.vt = &LOCAL_VTABLE;
    pthread_mutex_init(&gate->mutex, NULL);
    gate->slots = slots;
    gate->max_queue = max_queue;
    h2o_linklist_init_anchor(&gate->queue);
    return &gate->super;
}
