/**
 * @file wheel.h
 * A timing wheel of whole-millisecond delays on one libuv loop, driven by a single uv timer.
 *
 * /upload keeps thousands of requests waiting 100-200 ms each. One uv timer per request costs a handle init, a heap
 * insert and removal in libuv's timer heap and an asynchronous close per request; the wheel instead links an
 * intrusive entry into the slot of its due time (O(1)) and fires whole slots from one timer. Slots are a power of two
 * wide: when every delay is shorter than the wheel, a slot only ever holds entries due at the same millisecond; longer
 * delays stay in their slot for more turns of the wheel and are checked against their due time.
 *
 * Entries fire never before their due time, on the loop's clock (uv_now) as uv timers do, and in the order of their
 * due times (entries due at the same millisecond in the order they were added), also after the loop stalled for
 * longer than the wheel's span. A zero delay fires the next time the loop runs its timers.
 * All calls must be made on the loop's thread.
 */
#ifndef WEIR_WHEEL_H
#define WEIR_WHEEL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <h2o/linklist.h>

typedef struct st_weir_wheel_t weir_wheel_t;
typedef struct st_weir_wheel_entry_t weir_wheel_entry_t;

/** Called on the loop when an entry is due; the entry is no longer linked and may be freed or added again. */
typedef void (*weir_wheel_cb)(weir_wheel_entry_t *entry);

/** A delay; embed it in the object that waits. Zero-initialise it before first use. */
struct st_weir_wheel_entry_t {
    h2o_linklist_t link; /**< private */
    uint64_t due;        /**< loop time (ms) at which it fires; valid while linked */
    weir_wheel_cb cb;    /**< private */
};

/** Whether @p entry is waiting in a wheel. */
int weir_wheel_entry_is_linked(const weir_wheel_entry_t *entry);

/**
 * Creates a wheel on @p loop sized for delays up to @p max_delay_ms (longer delays still work, each turning the wheel
 * more than once): the smallest power of two above it, from 8 to 4096 slots.
 */
weir_wheel_t *weir_wheel_create(uv_loop_t *loop, uint32_t max_delay_ms);

/** As weir_wheel_create with exactly @p num_slots slots (a power of two, at least 2). For tests. */
weir_wheel_t *weir_wheel_create_slots(uv_loop_t *loop, size_t num_slots);

/**
 * Closes the wheel's timer; the wheel is freed by the close callback, so run the loop afterwards. No entry may be
 * linked any more.
 */
void weir_wheel_destroy(weir_wheel_t *wheel);

/** Links @p entry (which must not be linked) to fire @p cb in @p delay_ms milliseconds of loop time. */
void weir_wheel_add(weir_wheel_t *wheel, weir_wheel_entry_t *entry, uint32_t delay_ms, weir_wheel_cb cb);

/** Unlinks @p entry: its callback will not run. Safe whether or not it is linked (then it does nothing). */
void weir_wheel_cancel(weir_wheel_t *wheel, weir_wheel_entry_t *entry);

/** Entries linked now. */
size_t weir_wheel_pending(const weir_wheel_t *wheel);

#endif
