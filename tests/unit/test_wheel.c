/* The timing wheel behind /upload's delays: order, never early, zero delays, cancellation, delays longer than the wheel. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "unit.h"
#include <time.h>
#include "weir/wheel.h"

typedef struct st_test_entry_t {
    weir_wheel_entry_t entry;
    uint64_t added_at;
    uint32_t delay;
    int fired;    /* times the callback ran */
    int order;    /* 1 + the number of callbacks that ran before this one */
    uint64_t due; /* entry.due when added */
    struct st_fixture_t *f;
} test_entry_t;

typedef struct st_fixture_t {
    uv_loop_t loop;
    weir_wheel_t *wheel;
    int fired;
    test_entry_t *cancel_on_fire; /* an entry to cancel from inside the next callback */
    int add_zero_on_fire;         /* add this many zero-delay entries from inside the next callback */
    test_entry_t *zero;
} fixture_t;

static void on_fire(weir_wheel_entry_t *e)
{
    test_entry_t *te = (test_entry_t *)e;
    fixture_t *f = te->f;
    ++te->fired;
    te->order = ++f->fired;
    assert_false(weir_wheel_entry_is_linked(e));
    if (f->cancel_on_fire != NULL) {
        weir_wheel_cancel(f->wheel, &f->cancel_on_fire->entry);
        f->cancel_on_fire = NULL;
    }
    for (; f->add_zero_on_fire > 0; --f->add_zero_on_fire) {
        test_entry_t *z = &f->zero[f->add_zero_on_fire - 1];
        z->f = f;
        z->added_at = uv_now(&f->loop);
        weir_wheel_add(f->wheel, &z->entry, 0, on_fire);
        z->due = z->entry.due;
    }
}

static void add(fixture_t *f, test_entry_t *te, uint32_t delay)
{
    te->f = f;
    te->delay = delay;
    te->added_at = uv_now(&f->loop);
    weir_wheel_add(f->wheel, &te->entry, delay, on_fire);
    te->due = te->entry.due;
    assert_int_equal(te->due, te->added_at + delay);
    assert_true(weir_wheel_entry_is_linked(&te->entry));
}

static fixture_t *fixture(size_t slots, uint32_t max_delay)
{
    fixture_t *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    f->wheel = slots != 0 ? weir_wheel_create_slots(&f->loop, slots) : weir_wheel_create(&f->loop, max_delay);
    return f;
}

static void dispose(fixture_t *f)
{
    assert_int_equal(weir_wheel_pending(f->wheel), 0);
    weir_wheel_destroy(f->wheel);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

/* Every entry fired exactly once, never before its due time, and in due order (ties in the order they were added). */
static void assert_fired_in_order(test_entry_t *e, size_t n, int check_order)
{
    test_entry_t **by_order = calloc(n + 1, sizeof(*by_order));
    for (size_t i = 0; i < n; ++i) {
        assert_int_equal(e[i].fired, 1);
        assert_true(e[i].order >= 1 && (size_t)e[i].order <= n);
        by_order[e[i].order] = &e[i];
    }
    for (size_t k = 2; check_order && k <= n; ++k) {
        test_entry_t *a = by_order[k - 1], *b = by_order[k];
        assert_true(a->due < b->due || (a->due == b->due && a < b));
    }
    free(by_order);
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A loop that fires entries checks "never early" in the callback's own terms: the loop time when it runs. */
static void on_fire_check_time(weir_wheel_entry_t *e)
{
    test_entry_t *te = (test_entry_t *)e;
    assert_true(uv_now(&te->f->loop) >= te->added_at + te->delay);
    on_fire(e);
}

static void run_random(size_t slots, uint32_t max_delay, uint32_t delay_span)
{
    enum { N = 300 };
    fixture_t *f = fixture(slots, max_delay);
    test_entry_t *e = calloc(N, sizeof(*e));
    uint32_t seed = 12345;

    /* Added in three waves, so that entries are added while others are pending and the loop time moves on. */
    for (size_t wave = 0; wave < 3; ++wave) {
        for (size_t i = wave * N / 3; i < (wave + 1) * N / 3; ++i) {
            add(f, &e[i], next_rand(&seed) % (delay_span + 1));
            e[i].entry.cb = on_fire_check_time;
        }
        assert_int_equal(weir_wheel_pending(f->wheel), (wave + 1) * N / 3 - (size_t)f->fired);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the wheel's timer keeps the loop alive while entries are pending */
    assert_fired_in_order(e, N, 0);
    assert_int_equal(weir_wheel_pending(f->wheel), 0);
    free(e);
    dispose(f);
}

/* Delays within the wheel's span: each slot holds one due time. */
static void test_fires_never_early(void **state)
{
    run_random(0, 60, 60);
}

/* A wheel of 8 slots with delays up to 50 ms: entries wait several turns in their slot. */
static void test_delays_longer_than_the_wheel(void **state)
{
    run_random(8, 0, 50);
}

/* Order: entries added together fire in due order, ties in the order they were added, even across several turns. */
static void test_due_order(void **state)
{
    static const uint32_t delays[] = {30, 5, 17, 5, 0, 29, 30, 12, 1, 5, 22, 0};
    enum { N = sizeof(delays) / sizeof(delays[0]) };
    for (size_t slots = 4; slots <= 64; slots *= 4) {
        fixture_t *f = fixture(slots, 0);
        test_entry_t e[N];
        memset(e, 0, sizeof(e));
        for (size_t i = 0; i < N; ++i)
            add(f, &e[i], delays[i]);
        assert_int_equal(weir_wheel_pending(f->wheel), N);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_fired_in_order(e, N, 1);
        dispose(f);
    }
}

/* The loop stalls for longer than the wheel's span before its timers run (a busy machine, a process stopped for a
 * while): the entries that have come due in the meantime still fire in the order of their due times. */
static void test_due_order_after_stall(void **state)
{
    static const uint32_t delays[] = {9, 2, 5, 1, 6, 3, 10, 7, 4, 8, 0, 5};
    enum { N = sizeof(delays) / sizeof(delays[0]) };
    fixture_t *f = fixture(4, 0);
    test_entry_t e[N];
    struct timespec stall = {0, 30 * 1000 * 1000};

    memset(e, 0, sizeof(e));
    for (size_t i = 0; i < N; ++i)
        add(f, &e[i], delays[i]);
    nanosleep(&stall, NULL); /* 30 ms: all are due, spread over three turns of the 4-slot wheel */
    uv_update_time(&f->loop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_fired_in_order(e, N, 1);
    dispose(f);
}

/* A zero delay fires the next time the loop runs its timers, also when added from a callback of the tick that is
 * running (then after that callback, not inside it). */
static void test_zero_delay(void **state)
{
    fixture_t *f = fixture(0, 200);
    test_entry_t e, zero[2];
    memset(&e, 0, sizeof(e));
    memset(zero, 0, sizeof(zero));

    add(f, &e, 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(e.fired, 1);

    f->zero = zero;
    f->add_zero_on_fire = 2;
    add(f, &e, 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(e.fired, 2);
    assert_int_equal(zero[0].fired, 1);
    assert_int_equal(zero[1].fired, 1);
    assert_true(e.order < zero[1].order);
    assert_true(zero[1].order < zero[0].order); /* added first (the callback adds from the end) */
    dispose(f);
}

/* Cancelled entries never fire: before their tick, and from a callback of the same tick (same slot, same due time). */
static void test_cancel(void **state)
{
    fixture_t *f = fixture(0, 200);
    test_entry_t e[6];
    memset(e, 0, sizeof(e));

    for (size_t i = 0; i < 6; ++i)
        add(f, &e[i], 5);
    weir_wheel_cancel(f->wheel, &e[1].entry);
    assert_false(weir_wheel_entry_is_linked(&e[1].entry));
    weir_wheel_cancel(f->wheel, &e[1].entry); /* twice: nothing */
    assert_int_equal(weir_wheel_pending(f->wheel), 5);
    f->cancel_on_fire = &e[3]; /* e[0]'s callback cancels e[3], already collected for this tick */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(e[0].fired, 1);
    assert_int_equal(e[1].fired, 0);
    assert_int_equal(e[2].fired, 1);
    assert_int_equal(e[3].fired, 0);
    assert_int_equal(e[4].fired, 1);
    assert_int_equal(e[5].fired, 1);

    /* Cancelling every entry stops the timer: the loop is no longer alive. */
    add(f, &e[0], 1000);
    add(f, &e[1], 3000);
    weir_wheel_cancel(f->wheel, &e[1].entry);
    assert_int_not_equal(uv_loop_alive(&f->loop), 0);
    weir_wheel_cancel(f->wheel, &e[0].entry);
    assert_int_equal(uv_loop_alive(&f->loop), 0);
    assert_int_equal(e[0].fired, 1);

    /* A fired entry can be added again. */
    add(f, &e[0], 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(e[0].fired, 2);
    dispose(f);
}

/* After the loop stalled for longer than the wheel's span, every entry due fires on the next tick, none early. */
static void test_stall(void **state)
{
    fixture_t *f = fixture(8, 0);
    test_entry_t e[20];
    memset(e, 0, sizeof(e));

    for (size_t i = 0; i < 20; ++i)
        add(f, &e[i], (uint32_t)i + 1);
    usleep(60 * 1000);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* updates the loop time first */
    for (size_t i = 0; i < 20; ++i)
        assert_int_equal(e[i].fired, 1);
    assert_fired_in_order(e, 20, 0);
    dispose(f);
}

/* The wheel's size follows the longest delay: up to 4096 slots, beyond that entries take several turns. */
static void test_sizes(void **state)
{
    static const uint32_t max_delays[] = {0, 7, 8, 200, 4095, 3600000};
    for (size_t i = 0; i < sizeof(max_delays) / sizeof(max_delays[0]); ++i) {
        fixture_t *f = fixture(0, max_delays[i]);
        test_entry_t e;
        memset(&e, 0, sizeof(e));
        add(f, &e, 2);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(e.fired, 1);
        dispose(f);
    }
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_fires_never_early), cmocka_unit_test(test_delays_longer_than_the_wheel),
                cmocka_unit_test(test_due_order), cmocka_unit_test(test_due_order_after_stall), cmocka_unit_test(test_zero_delay),
                cmocka_unit_test(test_cancel), cmocka_unit_test(test_stall), cmocka_unit_test(test_sizes))
