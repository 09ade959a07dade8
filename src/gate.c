#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/gate.h"

struct st_weir_gate_inbox_t {
    uv_async_t async;
    weir_gate_t *gate;
    h2o_linklist_t granted; /* waiters granted a slot and not yet told; protected by gate->mutex */
};

int weir_gate_init(weir_gate_t *gate, size_t slots)
{
    if (slots == 0)
        return -EINVAL;
    pthread_mutex_init(&gate->mutex, NULL);
    gate->slots = slots;
    gate->in_use = 0;
    gate->max_in_use = 0;
    gate->queued = 0;
    h2o_linklist_init_anchor(&gate->queue);
    return 0;
}

void weir_gate_dispose(weir_gate_t *gate)
{
    assert(h2o_linklist_is_empty(&gate->queue));
    pthread_mutex_destroy(&gate->mutex);
}

/* Runs on the inbox's loop. Waiters are taken one at a time, so that a callback that releases some other waiter
 * of this inbox finds it either still in the inbox or already told, never half-way. */
static void on_inbox_wake(uv_async_t *async)
{
    weir_gate_inbox_t *inbox = async->data;
    weir_gate_t *gate = inbox->gate;

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
        waiter->cb(waiter);
    }
}

weir_gate_inbox_t *weir_gate_inbox_create(weir_gate_t *gate, uv_loop_t *loop)
{
    weir_gate_inbox_t *inbox = weir_malloc(sizeof(*inbox));
    inbox->gate = gate;
    h2o_linklist_init_anchor(&inbox->granted);
    uv_async_init(loop, &inbox->async, on_inbox_wake);
    inbox->async.data = inbox;
    /* The inbox must not keep a loop alive that has nothing else to do. */
    uv_unref((uv_handle_t *)&inbox->async);
    return inbox;
}

static void on_inbox_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void weir_gate_inbox_destroy(weir_gate_inbox_t *inbox)
{
    pthread_mutex_lock(&inbox->gate->mutex);
    assert(h2o_linklist_is_empty(&inbox->granted));
    pthread_mutex_unlock(&inbox->gate->mutex);
    uv_close((uv_handle_t *)&inbox->async, on_inbox_closed);
}

int weir_gate_acquire(weir_gate_t *gate, weir_gate_inbox_t *inbox, weir_gate_waiter_t *waiter, weir_gate_cb cb)
{
    int held;

    assert(waiter->state == WEIR_GATE_IDLE || waiter->state == 0);
    waiter->inbox = inbox;
    waiter->cb = cb;
    pthread_mutex_lock(&gate->mutex);
    /* FIFO: a newcomer may take a free slot only when nobody is queued before it. */
    if (gate->in_use < gate->slots && h2o_linklist_is_empty(&gate->queue)) {
        if (++gate->in_use > gate->max_in_use)
            gate->max_in_use = gate->in_use;
        waiter->state = WEIR_GATE_HELD;
        held = 1;
    } else {
        h2o_linklist_insert(&gate->queue, &waiter->link);
        ++gate->queued;
        waiter->state = WEIR_GATE_QUEUED;
        held = 0;
    }
    pthread_mutex_unlock(&gate->mutex);
    return held;
}

/* Called with the mutex held: the slot of a departing holder goes to the head of the queue, or back to the gate.
 * Returns the inbox to wake, if any. */
static weir_gate_inbox_t *pass_slot_on(weir_gate_t *gate)
{
    if (h2o_linklist_is_empty(&gate->queue)) {
        --gate->in_use;
        return NULL;
    }
    weir_gate_waiter_t *next = H2O_STRUCT_FROM_MEMBER(weir_gate_waiter_t, link, gate->queue.next);
    h2o_linklist_unlink(&next->link);
    --gate->queued;
    next->state = WEIR_GATE_GRANTED;
    h2o_linklist_insert(&next->inbox->granted, &next->link);
    return next->inbox;
}

void weir_gate_release(weir_gate_t *gate, weir_gate_waiter_t *waiter)
{
    weir_gate_inbox_t *wake = NULL;

    pthread_mutex_lock(&gate->mutex);
    switch (waiter->state) {
    case WEIR_GATE_QUEUED:
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
