/* GET /calc in-process (tests/unit/harness.h) on a pool of one thread: a request dropped while its sum is queued is
 * taken back (its done callback never runs, its job is freed), one dropped while its sum runs stops that sum, and
 * neither is answered. */
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include "unit.h"
#include "harness.h"
#include "weir/calc.h"

#define MAX_RUNS 2000
/* The largest n: its whole sum takes 2^32 iterations, more than a second of CPU at any speed this code runs at. */
#define LONG_N "4294967296"
/* CPU time a cancelled sum may still use: it stops within 8192 iterations (microseconds). Measured in CPU time, which a
 * loaded machine does not stretch, not in wall time. */
#define CANCELLED_MAX_CPU_S 0.3

typedef struct st_fixture_t {
    weir_harness_t *h;
    h2o_pathconf_t *pathconf;
} fixture_t;

static void register_calc(weir_harness_t *h, void *settings)
{
    assert_int_equal(weir_calc_register(weir_harness_register_path(h, "/calc"), settings), 0);
}

static void start(fixture_t *f)
{
    weir_calc_settings_t s;
    weir_calc_settings_init(&s);
    s.threads = 1;
    s.max_n = WEIR_CALC_N_LIMIT;
    weir_harness_warm_up(register_calc, &s);
    f->h = weir_harness_create();
    f->pathconf = weir_harness_register_path(f->h, "/calc");
    assert_int_equal(weir_calc_register(f->pathconf, &s), 0);
    weir_harness_start(f->h);
}

static size_t outstanding(fixture_t *f)
{
    weir_workpool_inbox_t *inbox = weir_calc_inbox(f->pathconf, &f->h->ctx);
    assert_non_null(inbox);
    return weir_workpool_inbox_outstanding(inbox);
}

#define assert_outstanding(f, expected) check_outstanding(f, expected, __LINE__)

static void check_outstanding(fixture_t *f, size_t expected, int line)
{
    size_t n = outstanding(f);
    if (n != expected)
        fail_msg("line %d: %zu sum(s) outstanding in the pool, %zu expected", line, n, expected);
}

static int nothing_outstanding(void *f)
{
    return outstanding(f) == 0;
}

static void finish(fixture_t *f)
{
    assert_outstanding(f, 0);
    weir_harness_assert_busy_handles(f->h, 0);
    weir_harness_destroy(f->h);
}

static int is_finished(void *r)
{
    return ((weir_test_req_t *)r)->finished;
}

/* CPU time used by the process's threads other than this one (the pool's). */
static double others_cpu_s(void)
{
    struct timespec process, self;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &process);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &self);
    return (double)(process.tv_sec - self.tv_sec) + (process.tv_nsec - self.tv_nsec) / 1e9;
}

/* Waits until the pool's thread has been running for 20 ms of CPU: it has taken the first work. The wall-time bound
 * only keeps a broken pool from hanging the test. */
static void wait_until_running(void)
{
    double from = others_cpu_s();
    struct timespec ms = {0, 1000000};
    for (int i = 0; others_cpu_s() - from < 0.02; ++i) {
        assert_true(i < 120000);
        nanosleep(&ms, NULL);
    }
}

static void test_answered(void **state)
{
    fixture_t f;
    start(&f);
    weir_test_req_t *r = weir_test_req_send(f.h, "GET", "/calc?n=10", NULL, 0);
    assert_outstanding(&f, 1);
    assert_true(weir_harness_run_until(f.h, is_finished, r, MAX_RUNS));
    assert_int_equal(weir_test_req_status(r), 200);
    assert_string_equal(weir_test_req_body(r), "{\"result\": 285}");
    assert_outstanding(&f, 0);
    weir_test_req_dispose(r);

    r = weir_test_req_send(f.h, "GET", "/calc?n=ten", NULL, 0);
    assert_int_equal(weir_test_req_status(r), 400);
    assert_outstanding(&f, 0);
    weir_test_req_dispose(r);
    finish(&f);
}

/* A running with the largest n, B queued behind it. B dropped: taken back at once (the count drops without the loop
 * running, its job is freed). A dropped: the count stays (its sum is running), and comes down when the sum, told to
 * stop, comes back having used next to no more CPU. Neither is answered; a request after them is. */
static void test_dispose_queued_and_running(void **state)
{
    fixture_t f;
    start(&f);
    weir_test_req_t *a = weir_test_req_send(f.h, "GET", "/calc?n=" LONG_N, NULL, 0);
    wait_until_running();
    size_t live = weir_harness_live_allocations();
    weir_test_req_t *b = weir_test_req_send(f.h, "GET", "/calc?n=1000", NULL, 0);
    assert_outstanding(&f, 2);
    weir_harness_assert_live_allocations(live + 1); /* b's job */

    weir_test_req_dispose(b);
    assert_outstanding(&f, 1);
    weir_harness_assert_live_allocations(live);

    double from = others_cpu_s();
    weir_test_req_dispose(a);
    assert_outstanding(&f, 1); /* running: it cannot be taken back */
    assert_true(weir_harness_run_until(f.h, nothing_outstanding, &f, 100000));
    double used = others_cpu_s() - from;
    if (used > CANCELLED_MAX_CPU_S)
        fail_msg("the dropped sum used %.3f s of CPU after it was told to stop (at most %.1f expected)", used, CANCELLED_MAX_CPU_S);

    weir_test_req_t *c = weir_test_req_send(f.h, "GET", "/calc?n=1000", NULL, 0);
    assert_true(weir_harness_run_until(f.h, is_finished, c, MAX_RUNS));
    assert_string_equal(weir_test_req_body(c), "{\"result\": 332833500}");
    weir_test_req_dispose(c);
    finish(&f);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_answered), cmocka_unit_test(test_dispose_queued_and_running))
