/*
 * The timing wheel (see wheel.h). Slot i holds the entries whose due time is congruent to i modulo the number of
 * slots. `processed` is the loop time up to which every slot has been run; an entry added with a due time not after it
 * (a zero delay added in the same millisecond as a run) goes to the `ready` list, run first on the next tick.
 *
 * The timer is armed for the first non-empty slot after `processed`: every entry's due time is at or after the first
 * time its slot comes round, so this is never later than the earliest due time (it can be earlier when an entry waits
 * for a later turn of the wheel; that tick then runs nothing). Adding arms the timer earlier when needed; cancelling
 * leaves it, at worst for one early tick, unless it was the last entry: then the timer stops. After a stall longer than
 * the wheel's span, the entries that have come due are sorted by due time before they fire. While entries are pending, the timer
 * keeps the loop alive, as their own uv timers would.
 */
#include <assert.h>
#include <stdlib.h>
#include "weir/common.h"
#include <h2o/memory.h>
#include "weir/wheel.h"

#define MIN_SLOTS 8
#define MAX_SLOTS 4096

struct st_weir_wheel_t {
    uv_timer_t timer;
    uint64_t processed; /* every slot due at or before this loop time has been run */
    uint64_t armed;     /* loop time the timer is set for, UINT64_MAX when stopped */
    size_t count;       /* entries linked (in a slot, in ready, or collected by a running tick) */
    size_t mask;        /* number of slots - 1 */
    h2o_linklist_t ready;
    h2o_linklist_t slots[];
};

int weir_wheel_entry_is_linked(const weir_wheel_entry_t *entry)
{
    return entry->link.next != NULL;
}

static void unlink_entry(weir_wheel_entry_t *entry)
{
    h2o_linklist_unlink(&entry->link);
    entry->link.next = entry->link.prev = NULL;
}

weir_wheel_t *weir_wheel_create_slots(uv_loop_t *loop, size_t num_slots)
{
    weir_wheel_t *wheel = weir_malloc(offsetof(weir_wheel_t, slots) + num_slots * sizeof(wheel->slots[0]));
    uv_timer_init(loop, &wheel->timer);
    wheel->timer.data = wheel;
    wheel->processed = uv_now(loop);
    wheel->armed = UINT64_MAX;
    wheel->count = 0;
    wheel->mask = num_slots - 1;
    h2o_linklist_init_anchor(&wheel->ready);
    for (size_t i = 0; i < num_slots; ++i)
        h2o_linklist_init_anchor(&wheel->slots[i]);
    return wheel;
}

weir_wheel_t *weir_wheel_create(uv_loop_t *loop, uint32_t max_delay_ms)
{
    size_t n = MIN_SLOTS;
    while (n <= max_delay_ms && n < MAX_SLOTS)
        n *= 2;
    return weir_wheel_create_slots(loop, n);
}

static void on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void weir_wheel_destroy(weir_wheel_t *wheel)
{
    assert(wheel->count == 0);
    uv_close((uv_handle_t *)&wheel->timer, on_closed);
}

size_t weir_wheel_pending(const weir_wheel_t *wheel)
{
    return wheel->count;
}

static void on_tick(uv_timer_t *timer);

static void arm_at(weir_wheel_t *wheel, uint64_t at)
{
    uint64_t now = uv_now(wheel->timer.loop);
    wheel->armed = at;
    uv_timer_start(&wheel->timer, on_tick, at > now ? at - now : 0, 0);
}

/* Arms the timer for the next tick, after a run up to `processed`. */
static void arm_next(weir_wheel_t *wheel)
{
    wheel->armed = UINT64_MAX;
    if (wheel->count == 0) {
        uv_timer_stop(&wheel->timer);
        return;
    }
    if (!h2o_linklist_is_empty(&wheel->ready)) {
        arm_at(wheel, wheel->processed);
        return;
    }
    for (uint64_t t = wheel->processed + 1; t <= wheel->processed + wheel->mask + 1; ++t) {
        if (!h2o_linklist_is_empty(&wheel->slots[t & wheel->mask])) {
            arm_at(wheel, t);
            return;
        }
    }
    assert(!"a pending entry is in no slot");
}

void weir_wheel_add(weir_wheel_t *wheel, weir_wheel_entry_t *entry, uint32_t delay_ms, weir_wheel_cb cb)
{
    uint64_t due = uv_now(wheel->timer.loop) + delay_ms;

    entry->due = due;
    entry->cb = cb;
    ++wheel->count;
    if (due <= wheel->processed) {
        h2o_linklist_insert(&wheel->ready, &entry->link);
        due = wheel->processed;
    } else {
        h2o_linklist_insert(&wheel->slots[due & wheel->mask], &entry->link);
    }
    if (due < wheel->armed)
        arm_at(wheel, due);
}

void weir_wheel_cancel(weir_wheel_t *wheel, weir_wheel_entry_t *entry)
{
    if (!weir_wheel_entry_is_linked(entry))
        return;
    unlink_entry(entry);
    if (--wheel->count == 0 && wheel->armed != UINT64_MAX) {
        uv_timer_stop(&wheel->timer);
        wheel->armed = UINT64_MAX;
    }
}

/* Moves the entries of @p slot that are due by @p now to the end of @p out, keeping their order. */
static void collect_due(h2o_linklist_t *slot, uint64_t now, h2o_linklist_t *out)
{
    h2o_linklist_t *node = slot->next;
    while (node != slot) {
        h2o_linklist_t *next = node->next;
        weir_wheel_entry_t *entry = H2O_STRUCT_FROM_MEMBER(weir_wheel_entry_t, link, node);
        if (entry->due <= now) {
            h2o_linklist_unlink(node);
            h2o_linklist_insert(out, node);
        }
        node = next;
    }
}

typedef struct st_sort_item_t {
    weir_wheel_entry_t *entry;
    size_t seq;
} sort_item_t;

static int cmp_due(const void *_a, const void *_b)
{
    const sort_item_t *a = _a, *b = _b;
    if (a->entry->due != b->entry->due)
        return a->entry->due < b->entry->due ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Orders @p list by due time, keeping the order of entries due at the same time (they were collected from one slot,
 * in the order they were added). */
static void sort_by_due(h2o_linklist_t *list)
{
    size_t n = 0;
    for (h2o_linklist_t *l = list->next; l != list; l = l->next)
        ++n;
    sort_item_t *items = weir_malloc(n * sizeof(*items));
    for (size_t i = 0; i != n; ++i) {
        items[i].entry = H2O_STRUCT_FROM_MEMBER(weir_wheel_entry_t, link, list->next);
        items[i].seq = i;
        h2o_linklist_unlink(list->next);
    }
    qsort(items, n, sizeof(*items), cmp_due);
    for (size_t i = 0; i != n; ++i)
        h2o_linklist_insert(list, &items[i].entry->link);
    free(items);
}

static void on_tick(uv_timer_t *timer)
{
    weir_wheel_t *wheel = timer->data;
    uint64_t now = uv_now(timer->loop);
    h2o_linklist_t due;

    h2o_linklist_init_anchor(&due);
    h2o_linklist_insert_list(&due, &wheel->ready);
    if (now > wheel->processed) {
        /* Slots in due-time order. After a stall longer than the wheel's span, each slot once, and a slot may then hold
         * entries of several turns: the few entries collected are put in due-time order. */
        int stalled = now - wheel->processed > wheel->mask + 1;
        uint64_t from = stalled ? now - wheel->mask : wheel->processed + 1;
        for (uint64_t t = from; t <= now; ++t)
            collect_due(&wheel->slots[t & wheel->mask], now, &due);
        if (stalled)
            sort_by_due(&due);
        wheel->processed = now;
    }
    /* The callbacks may add and cancel entries, including ones collected here: take them one at a time. */
    wheel->armed = UINT64_MAX;
    while (!h2o_linklist_is_empty(&due)) {
        weir_wheel_entry_t *entry = H2O_STRUCT_FROM_MEMBER(weir_wheel_entry_t, link, due.next);
        unlink_entry(entry);
        --wheel->count;
        entry->cb(entry);
    }
    arm_next(wheel);
}
