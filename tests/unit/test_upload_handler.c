/* POST /upload in-process (tests/unit/harness.h): a request dropped in each of its states gives back what it holds. One
 * slot; the delays are an hour (a request that holds the slot stays on the timing wheel until the test drops it) or zero
 * (answered at the next turn of the loop). Between two runs of the loop nothing moves: the states are reached without
 * relying on time, except the queue-timeout of one millisecond, awaited with a generous bound. */
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include "harness.h"
#include "weir/upload.h"

#define HOUR_MS 3600000
#define MAX_RUNS 2000 /* loop runs of at most a few ms each: a bound for a state the loop reaches in one or two */

typedef struct st_fixture_t {
    weir_harness_t *h;
    h2o_pathconf_t *pathconf;
} fixture_t;

static void register_upload(weir_harness_t *h, void *settings)
{
    assert_int_equal(weir_upload_register(weir_harness_register_path(h, "/upload"), settings), 0);
}

static void start(fixture_t *f, uint32_t delay_ms, uint32_t max_queue, uint32_t queue_timeout_ms)
{
    weir_upload_settings_t s;
    weir_upload_settings_init(&s);
    s.concurrency = 1;
    s.delay_min_ms = s.delay_max_ms = delay_ms;
    s.max_queue = max_queue;
    s.queue_timeout_ms = queue_timeout_ms;
    weir_harness_warm_up(register_upload, &s);
    f->h = weir_harness_create();
    f->pathconf = weir_harness_register_path(f->h, "/upload");
    assert_int_equal(weir_upload_register(f->pathconf, &s), 0);
    weir_harness_start(f->h);
}

static weir_upload_stats_t stats(fixture_t *f)
{
    weir_upload_stats_t st;
    assert_int_equal(weir_upload_stats(f->pathconf, &f->h->ctx, &st), 0);
    return st;
}

/* Asserts the gate's and this context's counts: slots held, waiters at the gate, waiters here, delays on the wheel. */
#define assert_counts(f, in_use, gate_waiting, queued, delays) check_counts(f, in_use, gate_waiting, queued, delays, __LINE__)

static void check_counts(fixture_t *f, size_t in_use, size_t gate_waiting, size_t queued, size_t delays, int line)
{
    weir_upload_stats_t st = stats(f);
    if (st.gate.in_use != in_use || st.gate.waiting != gate_waiting || st.queued != queued || st.delays != delays)
        fail_msg("line %d: slots held %zu, waiting at the gate %zu, queued here %zu, delays on the wheel %zu; expected %zu %zu %zu "
                 "%zu",
                 line, st.gate.in_use, st.gate.waiting, st.queued, st.delays, in_use, gate_waiting, queued, delays);
}

/* Every request gone: nothing held, nothing queued, no delay on the wheel, no timer armed; then the harness's own
 * checks (loop closed, nothing answered after a dispose, no allocation left). */
static void finish(fixture_t *f)
{
    assert_counts(f, 0, 0, 0, 0);
    weir_harness_assert_busy_handles(f->h, 0);
    weir_harness_destroy(f->h);
}

static weir_test_req_t *post(fixture_t *f)
{
    return weir_test_req_send(f->h, "POST", "/upload", "payload", 0);
}

static int is_finished(void *r)
{
    return ((weir_test_req_t *)r)->finished;
}

static int has_a_delay(void *f)
{
    return stats(f).delays == 1;
}

/* Zero delays: the holder is answered at the next turn of the loop and its slot goes to the next in line. */
static void test_answered(void **state)
{
    fixture_t f;
    start(&f, 0, 100, HOUR_MS);
    weir_test_req_t *a = post(&f), *b = post(&f);
    assert_false(a->finished);
    assert_counts(&f, 1, 1, 1, 1);
    assert_true(weir_harness_run_until(f.h, is_finished, a, MAX_RUNS));
    assert_int_equal(weir_test_req_status(a), 200);
    assert_string_equal(weir_test_req_body(a), "{\"success\": true}");
    assert_int_equal(a->req.res.content_length, 17);
    assert_true(weir_harness_run_until(f.h, is_finished, b, MAX_RUNS));
    assert_int_equal(weir_test_req_status(b), 200);
    weir_test_req_dispose(a);
    weir_test_req_dispose(b);

    weir_test_req_t *get = weir_test_req_send(f.h, "GET", "/upload", NULL, 0);
    assert_int_equal(weir_test_req_status(get), 405);
    assert_string_equal(weir_test_req_header(get, "allow"), "POST");
    weir_test_req_dispose(get);
    finish(&f);
}

/* Dropped while queued: it leaves the queue (the others keep their places) and is never answered. */
static void test_dispose_queued(void **state)
{
    fixture_t f;
    start(&f, HOUR_MS, 100, HOUR_MS);
    weir_test_req_t *a = post(&f), *b = post(&f), *c = post(&f);
    assert_counts(&f, 1, 2, 2, 1);
    weir_test_req_dispose(b);
    assert_counts(&f, 1, 1, 1, 1);
    weir_harness_run_nowait(f.h, 3);
    assert_false(c->finished);
    assert_counts(&f, 1, 1, 1, 1);
    /* the last waiter gone: the queue-timeout timer stops, only the wheel's (for a) is armed */
    weir_test_req_dispose(c);
    assert_counts(&f, 1, 0, 0, 1);
    weir_harness_assert_busy_handles(f.h, 1);
    weir_test_req_dispose(a);
    finish(&f);
}

/* Dropped while on the wheel: its delay is cancelled and its slot goes to the head of the queue at once, which then
 * starts its own delay. */
static void test_dispose_on_wheel(void **state)
{
    fixture_t f;
    start(&f, HOUR_MS, 100, HOUR_MS);
    weir_test_req_t *a = post(&f), *b = post(&f);
    assert_counts(&f, 1, 1, 1, 1);
    weir_test_req_dispose(a);
    assert_counts(&f, 1, 0, 1, 0); /* granted to b, which its loop tells next */
    assert_true(weir_harness_run_until(f.h, has_a_delay, &f, MAX_RUNS));
    assert_counts(&f, 1, 0, 0, 1);
    assert_false(b->finished);
    weir_test_req_dispose(b);
    finish(&f);
}

/* Dropped after the gate granted it a slot and before its loop told it: the slot passes on to the next in line, and
 * the grant that was on its way is never delivered. */
static void test_dispose_granted_before_told(void **state)
{
    fixture_t f;
    start(&f, HOUR_MS, 100, HOUR_MS);
    weir_test_req_t *a = post(&f), *b = post(&f), *c = post(&f);
    weir_test_req_dispose(a);      /* b is granted a's slot */
    assert_counts(&f, 1, 1, 2, 0); /* c waits at the gate; b and c are still this context's waiters */
    weir_test_req_dispose(b);      /* before its loop ran: the slot goes to c */
    assert_counts(&f, 1, 0, 1, 0);
    assert_true(weir_harness_run_until(f.h, has_a_delay, &f, MAX_RUNS));
    assert_counts(&f, 1, 0, 0, 1);
    assert_false(c->finished);
    weir_test_req_dispose(c);
    finish(&f);
}

/* A waiter without a slot after queue-timeout is answered 503; one that was dropped before is not. */
static void test_queue_timeout(void **state)
{
    fixture_t f;
    start(&f, HOUR_MS, 100, 1);
    weir_test_req_t *a = post(&f), *b = post(&f), *c = post(&f);
    weir_test_req_dispose(b);
    assert_true(weir_harness_run_until(f.h, is_finished, c, MAX_RUNS));
    assert_int_equal(weir_test_req_status(c), 503);
    assert_non_null(weir_test_req_header(c, "retry-after"));
    assert_string_equal(weir_test_req_body(c), "{\"error\": \"no upload slot within 1 ms (upload.queue-timeout)\"}");
    assert_false(a->finished);
    assert_counts(&f, 1, 0, 0, 1);
    weir_harness_assert_busy_handles(f.h, 1); /* the wheel's timer, for a */
    weir_test_req_dispose(c);
    weir_test_req_dispose(a);
    finish(&f);
}

/* Beyond max-queue waiters, a newcomer is refused at once; a place freed by a dropped waiter can be taken again. */
static void test_max_queue(void **state)
{
    fixture_t f;
    start(&f, HOUR_MS, 1, HOUR_MS);
    weir_test_req_t *a = post(&f), *b = post(&f), *c = post(&f);
    assert_true(c->finished);
    assert_int_equal(weir_test_req_status(c), 503);
    assert_string_equal(weir_test_req_header(c, "retry-after"), "3600");
    assert_string_equal(weir_test_req_body(c), "{\"error\": \"too many uploads waiting for a slot (upload.max-queue)\"}");
    assert_int_equal(stats(&f).gate.refused, 1);
    assert_counts(&f, 1, 1, 1, 1);
    weir_test_req_dispose(b);
    weir_test_req_t *d = post(&f);
    assert_false(d->finished);
    assert_counts(&f, 1, 1, 1, 1);
    weir_test_req_dispose(c);
    weir_test_req_dispose(d);
    weir_test_req_dispose(a);
    finish(&f);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_answered), cmocka_unit_test(test_dispose_queued), cmocka_unit_test(test_dispose_on_wheel),
                cmocka_unit_test(test_dispose_granted_before_told), cmocka_unit_test(test_queue_timeout),
                cmocka_unit_test(test_max_queue))
