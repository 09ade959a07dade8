#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "unit.h"
#include "weir/gate.h"

typedef struct st_test_waiter_t {
    weir_gate_waiter_t waiter;
    int granted; /* order in which the callback ran, 0 if not */
} test_waiter_t;

static int grant_counter;

static void on_granted(weir_gate_waiter_t *w, int status)
{
    assert_int_equal(status, 0);
    test_waiter_t *tw = (test_waiter_t *)w;
    tw->granted = ++grant_counter;
}

static void run_pending(uv_loop_t *loop)
{
    for (int i = 0; i < 5; ++i)
        uv_run(loop, UV_RUN_NOWAIT);
}

/* The inbox does not keep its loop alive (the server's connections do); a loop that is not alive is not polled by
 * uv_run, so the tests keep one ref'd handle open. */
static void on_keepalive(uv_async_t *async)
{
}

typedef struct {
    uv_loop_t loop;
    uv_async_t keepalive;
    weir_gate_t *gate;
    weir_gate_thread_t *inbox;
} fixture_t;

static weir_gate_stats_t stats_of(weir_gate_t *gate)
{
    weir_gate_stats_t st;
    weir_gate_stats(gate, &st);
    return st;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_async_init(&f->loop, &f->keepalive, on_keepalive);
    f->gate = weir_gate_local_create(2, SIZE_MAX);
    assert_int_equal(weir_gate_thread_start(f->gate, &f->loop, &f->inbox), 0);
    grant_counter = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    weir_gate_thread_stop(f->gate, f->inbox);
    uv_close((uv_handle_t *)&f->keepalive, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    weir_gate_destroy(f->gate);
    free(f);
    return 0;
}

static void test_init_rejects_zero(void **state)
{
    assert_null(weir_gate_local_create(0, SIZE_MAX));
}

static void test_grants_up_to_slots(void **state)
{
    fixture_t *f = *state;
    test_waiter_t w[3] = {0};
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &w[0].waiter, on_granted), 1);
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &w[1].waiter, on_granted), 1);
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &w[2].waiter, on_granted), 0);
    assert_int_equal(stats_of(f->gate).in_use, 2);
    assert_int_equal(stats_of(f->gate).waiting, 1);
    run_pending(&f->loop);
    assert_int_equal(w[2].granted, 0);
    weir_gate_release(f->gate, &w[0].waiter);
    assert_int_equal(w[2].waiter.state, WEIR_GATE_GRANTED);
    assert_int_equal(w[2].granted, 0); /* told on its loop, not inside release */
    run_pending(&f->loop);
    assert_int_equal(w[2].granted, 1);
    assert_int_equal(w[2].waiter.state, WEIR_GATE_HELD);
    assert_int_equal(stats_of(f->gate).in_use, 2);
    weir_gate_release(f->gate, &w[1].waiter);
    weir_gate_release(f->gate, &w[2].waiter);
    assert_int_equal(stats_of(f->gate).in_use, 0);
    assert_int_equal(stats_of(f->gate).max_in_use, 2);
}

static void test_fifo_order(void **state)
{
    fixture_t *f = *state;
    test_waiter_t holders[2] = {0}, q[5] = {0};
    for (int i = 0; i < 2; ++i)
        assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &holders[i].waiter, on_granted), 1);
    for (int i = 0; i < 5; ++i)
        assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &q[i].waiter, on_granted), 0);
    /* A newcomer does not overtake the queue even when a slot is free for a moment. */
    weir_gate_release(f->gate, &holders[0].waiter);
    weir_gate_release(f->gate, &holders[1].waiter);
    test_waiter_t late = {0};
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &late.waiter, on_granted), 0);
    run_pending(&f->loop);
    assert_int_equal(q[0].granted, 1);
    assert_int_equal(q[1].granted, 2);
    for (int i = 0; i < 5; ++i) {
        weir_gate_release(f->gate, &q[i].waiter);
        run_pending(&f->loop);
    }
    assert_int_equal(q[2].granted, 3);
    assert_int_equal(q[3].granted, 4);
    assert_int_equal(q[4].granted, 5);
    assert_int_equal(late.granted, 6);
    weir_gate_release(f->gate, &late.waiter);
    assert_int_equal(stats_of(f->gate).in_use, 0);
}

static void test_cancel_queued(void **state)
{
    fixture_t *f = *state;
    test_waiter_t h[2] = {0}, a = {0}, b = {0};
    weir_gate_acquire(f->gate, f->inbox, &h[0].waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &h[1].waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &a.waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &b.waiter, on_granted);
    weir_gate_release(f->gate, &a.waiter); /* a leaves the queue */
    assert_int_equal(a.waiter.state, WEIR_GATE_IDLE);
    assert_int_equal(stats_of(f->gate).waiting, 1);
    weir_gate_release(f->gate, &h[0].waiter);
    run_pending(&f->loop);
    assert_int_equal(a.granted, 0);
    assert_int_equal(b.granted, 1);
    weir_gate_release(f->gate, &h[1].waiter);
    weir_gate_release(f->gate, &b.waiter);
    assert_int_equal(stats_of(f->gate).in_use, 0);
}

static void test_cancel_granted_before_told(void **state)
{
    fixture_t *f = *state;
    test_waiter_t h[2] = {0}, a = {0}, b = {0};
    weir_gate_acquire(f->gate, f->inbox, &h[0].waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &h[1].waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &a.waiter, on_granted);
    weir_gate_acquire(f->gate, f->inbox, &b.waiter, on_granted);
    weir_gate_release(f->gate, &h[0].waiter); /* a is granted, not yet told */
    assert_int_equal(a.waiter.state, WEIR_GATE_GRANTED);
    weir_gate_release(f->gate, &a.waiter); /* a goes away: its slot passes to b */
    run_pending(&f->loop);
    assert_int_equal(a.granted, 0);
    assert_int_equal(b.granted, 1);
    assert_int_equal(stats_of(f->gate).in_use, 2);
    weir_gate_release(f->gate, &h[1].waiter);
    weir_gate_release(f->gate, &b.waiter);
    assert_int_equal(stats_of(f->gate).in_use, 0);
}

static void test_release_is_idempotent(void **state)
{
    fixture_t *f = *state;
    test_waiter_t a = {0}, b = {0};
    weir_gate_acquire(f->gate, f->inbox, &a.waiter, on_granted);
    weir_gate_release(f->gate, &a.waiter);
    weir_gate_release(f->gate, &a.waiter);
    weir_gate_release(f->gate, &b.waiter); /* never acquired */
    assert_int_equal(stats_of(f->gate).in_use, 0);
    /* the slots are all still there */
    test_waiter_t c[2] = {0};
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &c[0].waiter, on_granted), 1);
    assert_int_equal(weir_gate_acquire(f->gate, f->inbox, &c[1].waiter, on_granted), 1);
    weir_gate_release(f->gate, &c[0].waiter);
    weir_gate_release(f->gate, &c[1].waiter);
}

/* Several threads, each with its own loop and inbox, share one gate. The threads make no cmocka assertion (cmocka's
 * failure handling belongs to the test's own thread): they count what they saw, and the test asserts on the counts. */
#define THREADS 4
#define ROUNDS 2000
#define SLOTS 3

typedef struct {
    weir_gate_t *gate;
    pthread_mutex_t mutex;
    size_t violations; /* a thread saw more than SLOTS slots in use */
    size_t grants;
    size_t bad_loops;   /* loop set-up or uv_loop_close failures */
    size_t bad_results; /* acquire answers other than NOW or PENDING, callbacks with a status */
} shared_t;

typedef struct {
    test_waiter_t tw;
    int told;
    int status;
} mt_waiter_t;

static void on_mt_granted(weir_gate_waiter_t *w, int status)
{
    ((mt_waiter_t *)w)->told = 1;
    ((mt_waiter_t *)w)->status = status;
}

static void *mt_thread(void *arg)
{
    shared_t *sh = arg;
    uv_loop_t loop;
    uv_async_t keepalive;
    weir_gate_thread_t *inbox;
    size_t grants = 0, violations = 0, bad_loops = 0, bad_results = 0;

    if (uv_loop_init(&loop) != 0 || uv_async_init(&loop, &keepalive, on_keepalive) != 0 ||
        weir_gate_thread_start(sh->gate, &loop, &inbox) != 0) {
        pthread_mutex_lock(&sh->mutex);
        ++sh->bad_loops;
        pthread_mutex_unlock(&sh->mutex);
        return NULL;
    }
    for (int r = 0; r < ROUNDS; ++r) {
        mt_waiter_t w;
        memset(&w, 0, sizeof(w));
        int got = weir_gate_acquire(sh->gate, inbox, &w.tw.waiter, on_mt_granted);
        if (got != WEIR_GATE_NOW && got != WEIR_GATE_PENDING) {
            ++bad_results;
            continue;
        }
        if (got == WEIR_GATE_PENDING) {
            if (r % 7 == 0) {
                weir_gate_release(sh->gate, &w.tw.waiter); /* give up while queued (or just granted) */
                uv_run(&loop, UV_RUN_NOWAIT);
                if (w.told)
                    ++bad_results; /* told after its release */
                continue;
            }
            while (!w.told) {
                uv_run(&loop, UV_RUN_NOWAIT);
                sched_yield();
            }
            if (w.status != 0)
                ++bad_results;
        }
        weir_gate_stats_t st;
        weir_gate_stats(sh->gate, &st);
        if (st.in_use > SLOTS)
            ++violations;
        ++grants;
        usleep(20); /* hold the slot a little, so that the others queue */
        weir_gate_release(sh->gate, &w.tw.waiter);
    }
    weir_gate_thread_stop(sh->gate, inbox);
    uv_close((uv_handle_t *)&keepalive, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        ++bad_loops;
    pthread_mutex_lock(&sh->mutex);
    sh->grants += grants;
    sh->violations += violations;
    sh->bad_loops += bad_loops;
    sh->bad_results += bad_results;
    pthread_mutex_unlock(&sh->mutex);
    return NULL;
}

static void test_threads_never_exceed_slots(void **state)
{
    shared_t sh = {.gate = weir_gate_local_create(SLOTS, SIZE_MAX)};
    pthread_t tids[THREADS];
    pthread_mutex_init(&sh.mutex, NULL);
    for (int i = 0; i < THREADS; ++i)
        assert_int_equal(pthread_create(&tids[i], NULL, mt_thread, &sh), 0);
    for (int i = 0; i < THREADS; ++i)
        pthread_join(tids[i], NULL);
    assert_int_equal(sh.bad_loops, 0);
    assert_int_equal(sh.bad_results, 0);
    assert_int_equal(sh.violations, 0);
    weir_gate_stats_t st = stats_of(sh.gate);
    assert_true(st.max_in_use <= SLOTS);
    assert_true(st.max_in_use >= 2); /* the threads did overlap */
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    assert_true(sh.grants > THREADS * ROUNDS / 2);
    pthread_mutex_destroy(&sh.mutex);
    weir_gate_destroy(sh.gate);
}

static void test_max_queue(void **state)
{
    weir_gate_t *gate = weir_gate_local_create(1, 2);
    uv_loop_t loop;
    weir_gate_thread_t *inbox;
    test_waiter_t w[5];
    memset(w, 0, sizeof(w));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(weir_gate_thread_start(gate, &loop, &inbox), 0);
    assert_int_equal(weir_gate_acquire(gate, inbox, &w[0].waiter, on_granted), WEIR_GATE_NOW);
    assert_int_equal(weir_gate_acquire(gate, inbox, &w[1].waiter, on_granted), WEIR_GATE_PENDING);
    assert_int_equal(weir_gate_acquire(gate, inbox, &w[2].waiter, on_granted), WEIR_GATE_PENDING);
    assert_int_equal(weir_gate_acquire(gate, inbox, &w[3].waiter, on_granted), -EBUSY); /* 2 waiting already */
    assert_int_equal(weir_gate_waiter_state(&w[3].waiter), WEIR_GATE_IDLE);
    weir_gate_release(gate, &w[3].waiter); /* harmless */
    weir_gate_release(gate, &w[1].waiter); /* a place frees up */
    assert_int_equal(weir_gate_acquire(gate, inbox, &w[4].waiter, on_granted), WEIR_GATE_PENDING);
    weir_gate_stats_t st = stats_of(gate);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.waiting, 2);
    for (int i = 0; i < 5; ++i)
        weir_gate_release(gate, &w[i].waiter);
    weir_gate_thread_stop(gate, inbox);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(stats_of(gate).in_use, 0);
    weir_gate_destroy(gate);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_init_rejects_zero), cmocka_unit_test_setup_teardown(test_grants_up_to_slots, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_granted_before_told, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_is_idempotent, setup, teardown),
                cmocka_unit_test(test_threads_never_exceed_slots), cmocka_unit_test(test_max_queue))
