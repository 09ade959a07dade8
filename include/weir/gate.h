/**
 * @file gate.h
 * A counting semaphore shared by the worker threads, granting its slots in arrival order (FIFO) without ever
 * blocking a loop. A waiter that cannot be served at once is queued; when a slot is released, it is handed to the
 * head of the queue and the waiter's own loop is woken through its inbox (a uv_async_t), where the waiter's callback
 * runs. weir_gate_release is the one call that gives up a waiter's place, whatever its state.
 */
#ifndef WEIR_GATE_H
#define WEIR_GATE_H

#include <pthread.h>
#include <stddef.h>
#include <uv.h>
#include <h2o/linklist.h>

typedef struct st_weir_gate_t weir_gate_t;
typedef struct st_weir_gate_inbox_t weir_gate_inbox_t;
typedef struct st_weir_gate_waiter_t weir_gate_waiter_t;

/** Called on the waiter's loop when a queued waiter has been granted its slot. */
typedef void (*weir_gate_cb)(weir_gate_waiter_t *waiter);

/** States of a waiter. */
typedef enum en_weir_gate_state_t {
    WEIR_GATE_IDLE,    /**< holds nothing, queued nowhere */
    WEIR_GATE_QUEUED,  /**< in the gate's FIFO */
    WEIR_GATE_GRANTED, /**< owns a slot, its callback not yet run (in its inbox) */
    WEIR_GATE_HELD,    /**< owns a slot, told so */
} weir_gate_state_t;

/** A place in the gate; embed it in the job that waits. Fields are private. */
struct st_weir_gate_waiter_t {
    h2o_linklist_t link;
    weir_gate_inbox_t *inbox;
    weir_gate_cb cb;
    weir_gate_state_t state;
};

/** The semaphore. Fields are private, except for reading the statistics in tests. */
struct st_weir_gate_t {
    pthread_mutex_t mutex;
    size_t slots;      /**< capacity */
    size_t in_use;     /**< slots granted and not released */
    size_t max_in_use; /**< the most ever in use at once */
    size_t queued;     /**< waiters in the FIFO */
    h2o_linklist_t queue;
};

/** Initialises a gate with @p slots (> 0) slots. @return 0, or -EINVAL. */
int weir_gate_init(weir_gate_t *gate, size_t slots);

/** Disposes a gate that has no waiters left. */
void weir_gate_dispose(weir_gate_t *gate);

/** Creates the inbox through which @p gate wakes waiters of @p loop; call on the loop's thread. */
weir_gate_inbox_t *weir_gate_inbox_create(weir_gate_t *gate, uv_loop_t *loop);

/** Closes the inbox's handle; its memory is freed in the close callback. No waiter of the inbox may be granted. */
void weir_gate_inbox_destroy(weir_gate_inbox_t *inbox);

/**
 * Asks for a slot for @p waiter (which must be idle).
 * @return 1 when the slot is held now (@p cb is not called), 0 when queued (@p cb will run on the inbox's loop
 *         once the slot is granted, unless weir_gate_release is called first).
 */
int weir_gate_acquire(weir_gate_t *gate, weir_gate_inbox_t *inbox, weir_gate_waiter_t *waiter, weir_gate_cb cb);

/**
 * Gives up the waiter's place: leaves the queue, or hands its slot to the next waiter (or back to the gate).
 * Safe in every state and idempotent; afterwards the waiter is idle and its callback will not run.
 * Must be called on the waiter's loop.
 */
void weir_gate_release(weir_gate_t *gate, weir_gate_waiter_t *waiter);

#endif
