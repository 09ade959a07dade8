/* The work pool behind /calc: results come back on the submitting loop, in order, exactly once; cancellation; the
 * threads' priority; inboxes that close with work still running; several loops sharing one pool. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "unit.h"
#include "weir/workpool.h"

typedef struct st_test_work_t {
    weir_work_t work;
    int ran;           /* times run was called */
    int done;          /* times done was called */
    int run_order;     /* order among runs */
    pthread_t done_on; /* thread that ran done */
    int nice;          /* the pool thread's nice value while running */
    int block;         /* run waits until the gate opens */
} test_work_t;

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int gate_open, running, run_counter;

static void on_run(weir_work_t *w)
{
    test_work_t *t = (test_work_t *)w;
    errno = 0;
    t->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    pthread_mutex_lock(&mutex);
    ++t->ran;
    t->run_order = ++run_counter;
    ++running;
    pthread_cond_broadcast(&cond);
    while (t->block && !gate_open)
        pthread_cond_wait(&cond, &mutex);
    --running;
    pthread_mutex_unlock(&mutex);
}

static void on_done(weir_work_t *w)
{
    test_work_t *t = (test_work_t *)w;
    ++t->done;
    t->done_on = pthread_self();
}

static void reset(void)
{
    gate_open = 0;
    running = 0;
    run_counter = 0;
}

static void wait_running(int n)
{
    pthread_mutex_lock(&mutex);
    while (running < n)
        pthread_cond_wait(&cond, &mutex);
    pthread_mutex_unlock(&mutex);
}

static void open_gate(void)
{
    pthread_mutex_lock(&mutex);
    gate_open = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mutex);
}

static void close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Submits w[0..n) to a pool of one thread, w[0] blocking that thread until open_gate(); returns once w[0] runs, so
 * that w[1..n) are queued. */
static void submit_behind_a_blocked_one(weir_workpool_inbox_t *inbox, test_work_t *w, int n)
{
    w[0].block = 1;
    for (int i = 0; i < n; ++i)
        assert_int_equal(weir_workpool_submit(inbox, &w[i].work, on_run, on_done), 0);
    wait_running(1);
}

/* One thread: work runs in submission order, each done exactly once on the loop's thread, with the nice value asked. */
static void test_order_and_delivery(void **state)
{
    enum { N = 50 };
    uv_loop_t loop;
    test_work_t w[N];
    memset(w, 0, sizeof(w));
    reset();
    assert_int_equal(uv_loop_init(&loop), 0);
    weir_workpool_t *pool = weir_workpool_create(1, 7);
    weir_workpool_inbox_t *inbox = weir_workpool_inbox_create(pool, &loop);

    assert_int_equal(uv_loop_alive(&loop), 0); /* an idle inbox does not keep its loop alive */
    for (int i = 0; i < N; ++i)
        assert_int_equal(weir_workpool_submit(inbox, &w[i].work, on_run, on_done), 0);
    assert_int_equal(weir_workpool_inbox_outstanding(inbox), N);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once every done has run: outstanding work keeps the loop alive */
    assert_int_equal(weir_workpool_inbox_outstanding(inbox), 0);
    for (int i = 0; i < N; ++i) {
        assert_int_equal(w[i].ran, 1);
        assert_int_equal(w[i].done, 1);
        assert_int_equal(w[i].run_order, i + 1);
        assert_true(pthread_equal(w[i].done_on, pthread_self()));
        assert_int_equal(w[i].nice, 7);
    }
    weir_workpool_inbox_destroy(inbox);
    close_loop(&loop);
    weir_workpool_destroy(pool);
}

/* Queued work can be taken back (neither callback runs); running work cannot (its done still runs). */
static void test_cancel(void **state)
{
    uv_loop_t loop;
    test_work_t w[4];
    memset(w, 0, sizeof(w));
    reset();
    assert_int_equal(uv_loop_init(&loop), 0);
    weir_workpool_t *pool = weir_workpool_create(1, 0);
    weir_workpool_inbox_t *inbox = weir_workpool_inbox_create(pool, &loop);

    submit_behind_a_blocked_one(inbox, w, 4);
    assert_int_equal(weir_workpool_cancel(&w[0].work), 0);
    assert_int_equal(weir_workpool_cancel(&w[2].work), 1);
    assert_int_equal(weir_workpool_cancel(&w[2].work), 0); /* not queued any more */
    assert_int_equal(weir_workpool_inbox_outstanding(inbox), 3);
    open_gate();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w[0].ran + w[0].done, 2);
    assert_int_equal(w[1].ran + w[1].done, 2);
    assert_int_equal(w[2].ran + w[2].done, 0);
    assert_int_equal(w[3].ran + w[3].done, 2);
    assert_int_equal(weir_workpool_cancel(&w[3].work), 0); /* finished */

    /* Cancelling the last outstanding work leaves nothing keeping the loop alive. */
    gate_open = 0;
    w[0].block = 1;
    assert_int_equal(weir_workpool_submit(inbox, &w[0].work, on_run, on_done), 0);
    wait_running(1);
    assert_int_equal(weir_workpool_submit(inbox, &w[1].work, on_run, on_done), 0);
    assert_int_equal(weir_workpool_cancel(&w[1].work), 1);
    assert_int_not_equal(uv_loop_alive(&loop), 0);
    open_gate();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(w[0].done, 2);
    assert_int_equal(uv_loop_alive(&loop), 0);

    weir_workpool_inbox_destroy(inbox);
    close_loop(&loop);
    weir_workpool_destroy(pool);
}

/* An inbox destroyed while its work is queued and running closes only after that work has come back. */
static void test_destroy_inbox_with_work_outstanding(void **state)
{
    uv_loop_t loop;
    test_work_t w[3];
    memset(w, 0, sizeof(w));
    reset();
    assert_int_equal(uv_loop_init(&loop), 0);
    weir_workpool_t *pool = weir_workpool_create(1, 0);
    weir_workpool_inbox_t *inbox = weir_workpool_inbox_create(pool, &loop);

    submit_behind_a_blocked_one(inbox, w, 3);
    weir_workpool_inbox_destroy(inbox);
    assert_int_equal(weir_workpool_cancel(&w[2].work), 1);
    open_gate();
    close_loop(&loop); /* runs until the inbox's handle is closed: after w[0] and w[1] came back */
    assert_int_equal(w[0].done, 1);
    assert_int_equal(w[1].done, 1);
    assert_int_equal(w[2].ran + w[2].done, 0);
    weir_workpool_destroy(pool);
}

/* Several loops on their own threads share one pool of four threads: each work comes back to its own loop. */
typedef struct st_loop_thread_t {
    weir_workpool_t *pool;
    pthread_t tid;
    test_work_t *w;
    size_t n;
    int init_result, close_result; /* of uv_loop_init and uv_loop_close, asserted by the test's own thread */
} loop_thread_t;

static void *loop_main(void *_lt)
{
    loop_thread_t *lt = _lt;
    uv_loop_t loop;
    if ((lt->init_result = uv_loop_init(&loop)) != 0)
        return NULL;
    weir_workpool_inbox_t *inbox = weir_workpool_inbox_create(lt->pool, &loop);
    for (size_t i = 0; i < lt->n; ++i) {
        weir_workpool_submit(inbox, &lt->w[i].work, on_run, on_done);
        if (i % 64 == 0)
            uv_run(&loop, UV_RUN_NOWAIT); /* collect some while submitting more */
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    weir_workpool_inbox_destroy(inbox);
    uv_run(&loop, UV_RUN_DEFAULT);
    lt->close_result = uv_loop_close(&loop);
    return NULL;
}

static void test_loops_share_a_pool(void **state)
{
    enum { LOOPS = 3, N = 3000 };
    loop_thread_t lt[LOOPS];
    reset();
    weir_workpool_t *pool = weir_workpool_create(4, 0);
    for (int l = 0; l < LOOPS; ++l) {
        lt[l].pool = pool;
        lt[l].n = N;
        lt[l].init_result = lt[l].close_result = -1;
        lt[l].w = calloc(N, sizeof(test_work_t));
        assert_int_equal(pthread_create(&lt[l].tid, NULL, loop_main, &lt[l]), 0);
    }
    for (int l = 0; l < LOOPS; ++l) {
        pthread_join(lt[l].tid, NULL);
        assert_int_equal(lt[l].init_result, 0);
        assert_int_equal(lt[l].close_result, 0);
        for (size_t i = 0; i < N; ++i) {
            assert_int_equal(lt[l].w[i].ran, 1);
            assert_int_equal(lt[l].w[i].done, 1);
            assert_true(pthread_equal(lt[l].w[i].done_on, lt[l].tid));
        }
        free(lt[l].w);
    }
    assert_int_equal(run_counter, LOOPS * N);
    weir_workpool_destroy(pool);
}

static void test_create_rejects_zero_threads(void **state)
{
    assert_null(weir_workpool_create(0, 0));
    weir_workpool_destroy(NULL);
    weir_workpool_destroy(weir_workpool_create(2, 0)); /* never used: no thread was started */
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_order_and_delivery), cmocka_unit_test(test_cancel),
                cmocka_unit_test(test_destroy_inbox_with_work_outstanding), cmocka_unit_test(test_loops_share_a_pool),
                cmocka_unit_test(test_create_rejects_zero_threads))
