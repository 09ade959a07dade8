/**
 * @file gate.h
 * The upload gate: a counting semaphore whose slots are granted in arrival order (FIFO) without ever blocking a loop,
 * behind a small interface with two implementations:
 * - local (src/gate_local.c): one process; a counter and an intrusive FIFO under a mutex, shared by the worker threads;
 *   a slot released on any thread goes to the head waiter, whose own loop is woken through its thread's inbox;
 * - redis (src/gate_redis.c): shared by every instance that uses the same name on one Redis server (leases, Lua
 *   scripts, a grant channel per worker thread); see that file.
 *
 * Every call but create/destroy/stats is made on the loop of the thread state it names, from that loop's thread.
 * weir_gate_release is the one call that gives up a waiter's place, whatever its state.
 */
#ifndef WEIR_GATE_H
#define WEIR_GATE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <h2o/linklist.h>

typedef struct st_weir_gate_t weir_gate_t;
typedef struct st_weir_gate_thread_t weir_gate_thread_t;
typedef struct st_weir_gate_waiter_t weir_gate_waiter_t;

/**
 * Called on the waiter's loop: with @p status 0 when a waiter that acquire left pending has been granted its slot; with
 * a negative status when the gate gave up on it (the waiter is then idle): -EAGAIN the shared gate became unreachable,
 * -ETIMEDOUT it did not answer in time or the slot's lease can no longer be guaranteed, -EPROTO it answered with an
 * error. A gate whose slots can be lost (redis) may also call it with a negative status for a waiter that holds its
 * slot: the slot is gone, and the waiter idle. The callback may release other waiters and acquire again.
 */
typedef void (*weir_gate_cb)(weir_gate_waiter_t *waiter, int status);

/** States of a waiter, as every gate sees them. */
typedef enum en_weir_gate_state_t {
    WEIR_GATE_IDLE,    /**< holds nothing, waits for nothing */
    WEIR_GATE_WAITING, /**< queued, or its request for a slot is on its way */
    WEIR_GATE_GRANTED, /**< owns a slot, its callback not yet run */
    WEIR_GATE_HELD,    /**< owns a slot, told so */
} weir_gate_state_t;

/** A place in a gate; embed it in the job that waits and zero it before its first acquire. Fields are private. */
struct st_weir_gate_waiter_t {
    h2o_linklist_t link;
    weir_gate_thread_t *thread;
    weir_gate_cb cb;
    weir_gate_cb outer_cb; /* a gate layered over another keeps its caller's callback here */
    uint64_t ticket;
    weir_gate_state_t state;
    int impl_state;
};

/** Counters of a gate, for this process. */
typedef struct st_weir_gate_stats_t {
    size_t slots;      /**< capacity (for redis, shared by every instance) */
    size_t in_use;     /**< slots held by waiters of this process */
    size_t max_in_use; /**< the most ever held at once by this process */
    size_t waiting;    /**< waiters of this process not yet granted */
    uint64_t refused;  /**< acquisitions refused at once (queue full, or unavailable) */
    uint64_t lost;     /**< waiters and holders given up on by the gate (callback with a negative status) */
} weir_gate_stats_t;

/** A gate's operations. */
typedef struct st_weir_gate_vtable_t {
    const char *name;
    /** Creates the state of a worker thread whose loop is @p loop, from inside that thread. @return 0, or -errno. */
    int (*thread_start)(weir_gate_t *gate, uv_loop_t *loop, weir_gate_thread_t **thread);
    /**
     * Stops what thread_start started, from inside the same thread; no waiter of the thread may be anything but idle.
     * Every uv handle is closed (freed in the close callbacks): run the loop afterwards.
     */
    void (*thread_stop)(weir_gate_t *gate, weir_gate_thread_t *thread);
    /** See weir_gate_acquire. */
    int (*acquire)(weir_gate_t *gate, weir_gate_thread_t *thread, weir_gate_waiter_t *waiter, weir_gate_cb cb);
    /** See weir_gate_release. */
    void (*release)(weir_gate_t *gate, weir_gate_waiter_t *waiter);
    /** Fills @p stats (any thread). */
    void (*stats)(weir_gate_t *gate, weir_gate_stats_t *stats);
    /** See weir_gate_set_limits. */
    void (*set_limits)(weir_gate_t *gate, size_t slots, size_t max_queue);
    /** Frees the gate; every thread has been stopped. */
    void (*destroy)(weir_gate_t *gate);
} weir_gate_vtable_t;

/** The base of every gate. */
struct st_weir_gate_t {
    const weir_gate_vtable_t *vt;
};

/** weir_gate_acquire: the slot is held now (the callback is not called). */
#define WEIR_GATE_NOW 1
/** weir_gate_acquire: pending; the callback will be called. */
#define WEIR_GATE_PENDING 0

/** Starts the state of the calling worker thread. @return 0, or a negative errno-style code. */
static inline int weir_gate_thread_start(weir_gate_t *gate, uv_loop_t *loop, weir_gate_thread_t **thread)
{
    return gate->vt->thread_start(gate, loop, thread);
}

/** Stops the state of the calling worker thread. */
static inline void weir_gate_thread_stop(weir_gate_t *gate, weir_gate_thread_t *thread)
{
    gate->vt->thread_stop(gate, thread);
}

/**
 * Asks for a slot for @p waiter (which must be idle) on behalf of @p thread.
 * @return WEIR_GATE_NOW (1) when the slot is held now (@p cb is not called); WEIR_GATE_PENDING (0) when @p cb will run
 *         on the thread's loop, unless weir_gate_release is called first; -EBUSY when this process already has the
 *         gate's maximum of waiters (max_queue); -EAGAIN when the gate cannot be reached now (the waiter stays idle
 *         in both cases).
 */
static inline int weir_gate_acquire(weir_gate_t *gate, weir_gate_thread_t *thread, weir_gate_waiter_t *waiter, weir_gate_cb cb)
{
    return gate->vt->acquire(gate, thread, waiter, cb);
}

/**
 * Gives up the waiter's place: leaves the queue, or hands its slot to the next waiter (or back to the gate).
 * Safe in every state and idempotent; afterwards the waiter is idle and its callback will not run.
 */
static inline void weir_gate_release(weir_gate_t *gate, weir_gate_waiter_t *waiter)
{
    gate->vt->release(gate, waiter);
}

/** The waiter's state. */
static inline weir_gate_state_t weir_gate_waiter_state(const weir_gate_waiter_t *waiter)
{
    return waiter->state;
}

/** Fills @p stats. */
static inline void weir_gate_stats(weir_gate_t *gate, weir_gate_stats_t *stats)
{
    gate->vt->stats(gate, stats);
}

/**
 * Changes the capacity and the queue bound (a reload of the same path): with more slots, waiters are granted the new
 * ones at once; with fewer, slots held above the new capacity go away as their holders release them (nothing is taken
 * from a holder). Any thread.
 */
static inline void weir_gate_set_limits(weir_gate_t *gate, size_t slots, size_t max_queue)
{
    gate->vt->set_limits(gate, slots, max_queue);
}

/** Frees @p gate (every thread stopped). */
static inline void weir_gate_destroy(weir_gate_t *gate)
{
    gate->vt->destroy(gate);
}

/* ---- local (src/gate_local.c) ----------------------------------------------------------------------------------- */

/**
 * Creates an in-process gate of @p slots (> 0) slots, shared by the worker threads, with at most @p max_queue waiters
 * (SIZE_MAX for no limit). @return the gate, or NULL when @p slots is 0.
 */
weir_gate_t *weir_gate_local_create(size_t slots, size_t max_queue);

/* ---- redis (src/gate_redis.c) ----------------------------------------------------------------------------------- */

/** What to do while Redis cannot be reached. */
typedef enum en_weir_gate_on_failure_t {
    WEIR_GATE_FAIL_REJECT, /**< refuse uploads at once (503) */
    WEIR_GATE_FAIL_LOCAL,  /**< fall back to an in-process gate of the same capacity (may exceed the global limit) */
} weir_gate_on_failure_t;

/** Options of weir_gate_redis_create. */
typedef struct st_weir_gate_redis_options_t {
    const char *url;                   /**< as for weir_redis_parse_url */
    const char *name;                  /**< instances with the same name share the slots; the prefix of every key */
    size_t slots;                      /**< capacity (> 0), passed to Redis by each instance */
    size_t max_queue;                  /**< waiters of this process at most */
    uint64_t lease_ms;                 /**< a slot whose holder stops renewing returns after this */
    uint64_t timeout_ms;               /**< deadline of each Redis command and connection attempt */
    weir_gate_on_failure_t on_failure; /**< while Redis cannot be reached */
    uint64_t backoff_max_ms;           /**< longest reconnection delay; 0: 1000 */
    const char *path;                  /**< the upload path, for the metrics' labels and readiness checks; NULL: "" */
} weir_gate_redis_options_t;

/**
 * Creates a gate shared through Redis (connects nothing: thread_start does). @return 0 with *out set, -EINVAL for a
 * malformed URL or options, -ENOENT when the host cannot be resolved (both logged).
 */
int weir_gate_redis_create(const weir_gate_redis_options_t *opts, weir_gate_t **out);

/** Whether the thread state of a Redis gate holds a valid registration at Redis now (for tests). */
int weir_gate_redis_thread_is_up(const weir_gate_thread_t *thread);

/** The Lua scripts of the Redis gate, NULL-terminated (for tests that check them). */
extern const char *const weir_gate_redis_scripts[];

#endif
