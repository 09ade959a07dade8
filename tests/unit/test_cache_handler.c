/* /cache in-process (tests/unit/harness.h).
 * - A backend that completes later (a fake of the test's own behind the vtable, completing each call when the test
 *   says, as Redis does when its reply arrives): the call lives in a heap job, and a request dropped while its call is
 *   in flight is not answered when the call completes, and its job is freed.
 * - The memory backend, which completes at once: the call lives on the stack (no allocation outside the request's pool
 *   on a hit), and a GET's answer is the stored one, held by reference, which stays valid when the key is deleted or
 *   overwritten before the answer has been written. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include "unit.h"
#include "harness.h"
#include "weir/cache.h"
#include "weir/common.h"

/* ---- the fake backend ------------------------------------------------------------------------------------------ */

typedef struct st_fake_t {
    weir_cache_call_t *calls[8]; /* given and not completed yet */
    size_t num_calls;
    int destroyed;
} fake_t;

static void fake_take(void *data, void *thread, weir_cache_call_t *call)
{
    fake_t *fake = data;
    assert_true(fake->num_calls < WEIR_ARRAY_SIZE(fake->calls));
    fake->calls[fake->num_calls++] = call;
}

static void fake_destroy(void *data)
{
    fake_t *fake = data;
    assert_int_equal(fake->num_calls, 0); /* every call completed exactly once */
    fake->destroyed = 1;
}

static const weir_cache_backend_vtable_t FAKE_VTABLE = {
    .name = "fake",
    .get = fake_take,
    .set = fake_take,
    .del = fake_take,
    .destroy = fake_destroy,
};

/* Completes the oldest call in flight with @p res. */
static void fake_complete(fake_t *fake, const weir_cache_result_t *res)
{
    assert_int_not_equal(fake->num_calls, 0);
    weir_cache_call_t *call = fake->calls[0];
    memmove(fake->calls, fake->calls + 1, --fake->num_calls * sizeof(fake->calls[0]));
    call->on_done(call, res);
}

/* ---- fixtures -------------------------------------------------------------------------------------------------- */

static void register_fake(weir_harness_t *h, void *settings)
{
    static fake_t warm_up_fake;
    assert_int_equal(weir_cache_register_backend(weir_harness_register_path(h, "/cache"), settings, &FAKE_VTABLE, &warm_up_fake),
                     0);
}

static void register_memory(weir_harness_t *h, void *settings)
{
    assert_int_equal(weir_cache_register(weir_harness_register_path(h, "/cache"), settings), 0);
}

static weir_harness_t *start_fake(fake_t *fake)
{
    weir_cache_settings_t s;
    weir_cache_settings_init(&s);
    *fake = (fake_t){.num_calls = 0};
    weir_harness_warm_up(register_fake, &s);
    weir_harness_t *h = weir_harness_create();
    assert_int_equal(weir_cache_register_backend(weir_harness_register_path(h, "/cache"), &s, &FAKE_VTABLE, fake), 0);
    weir_harness_start(h);
    return h;
}

static weir_harness_t *start_memory(void)
{
    weir_cache_settings_t s;
    weir_cache_settings_init(&s);
    weir_harness_warm_up(register_memory, &s);
    weir_harness_t *h = weir_harness_create();
    assert_int_equal(weir_cache_register(weir_harness_register_path(h, "/cache"), &s), 0);
    weir_harness_start(h);
    return h;
}

static void finish(weir_harness_t *h)
{
    weir_harness_assert_busy_handles(h, 0);
    weir_harness_destroy(h);
}

/* ---- a backend that completes later ---------------------------------------------------------------------------- */

/* Each method in turn: its call reaches the backend in a heap job; the request is dropped; the call completes; nothing
 * is answered and the job is freed. */
static void test_dispose_while_in_flight(void **state)
{
    static const struct {
        const char *method, *path, *body;
    } REQS[] = {{"GET", "/cache?key=k", NULL}, {"PUT", "/cache?key=k&ttl=5", "value"}, {"DELETE", "/cache?key=k", NULL}};
    fake_t fake;
    weir_harness_t *h = start_fake(&fake);

    for (size_t i = 0; i != WEIR_ARRAY_SIZE(REQS); ++i) {
        size_t live = weir_harness_live_allocations();
        weir_test_req_t *r = weir_test_req_send(h, REQS[i].method, REQS[i].path, REQS[i].body, 0);
        assert_int_equal(fake.num_calls, 1);
        assert_false(r->started);
        weir_harness_assert_live_allocations(live + 1); /* the heap job */
        weir_test_req_dispose(r);
        weir_cache_result_t res = {.status = 0, .value = h2o_iovec_init(H2O_STRLIT("late")), .deleted = 1};
        fake_complete(&fake, &res);
        weir_harness_assert_live_allocations(live);
        assert_false(r->started);
    }
    if (h->answers_after_dispose != 0)
        fail_msg("%zu request(s) answered after they were disposed of", h->answers_after_dispose);
    finish(h);
    assert_true(fake.destroyed);
}

/* The same calls completed while their requests are there are answered, from the results the backend gave. */
static void test_completed_in_flight(void **state)
{
    fake_t fake;
    weir_harness_t *h = start_fake(&fake);
    size_t live = weir_harness_live_allocations();

    weir_test_req_t *get = weir_test_req_send(h, "GET", "/cache?key=k", NULL, 0);
    weir_test_req_t *put = weir_test_req_send(h, "PUT", "/cache?key=k", "v", 0);
    weir_test_req_t *del = weir_test_req_send(h, "DELETE", "/cache?key=k", NULL, 0);
    weir_test_req_t *slow = weir_test_req_send(h, "GET", "/cache?key=slow", NULL, 0);
    assert_int_equal(fake.num_calls, 4);
    weir_harness_assert_live_allocations(live + 4);
    fake_complete(&fake, &(weir_cache_result_t){.status = 0, .value = h2o_iovec_init(H2O_STRLIT("a \"quoted\" value"))});
    assert_true(get->finished);
    assert_string_equal(weir_test_req_body(get), "{\"data\": \"a \\\"quoted\\\" value\"}");
    fake_complete(&fake, &(weir_cache_result_t){.status = 0});
    assert_string_equal(weir_test_req_body(put), "{\"success\": true}");
    fake_complete(&fake, &(weir_cache_result_t){.status = 0, .deleted = 1});
    assert_string_equal(weir_test_req_body(del), "{\"success\": true, \"deleted\": true}");
    fake_complete(&fake, &(weir_cache_result_t){.status = -ETIMEDOUT});
    assert_int_equal(weir_test_req_status(slow), 504);
    weir_harness_assert_live_allocations(live);
    weir_test_req_dispose(get);
    weir_test_req_dispose(put);
    weir_test_req_dispose(del);
    weir_test_req_dispose(slow);
    finish(h);
}

/* ---- the memory backend ---------------------------------------------------------------------------------------- */

static void put(weir_harness_t *h, const char *path, const char *value)
{
    weir_test_req_t *r = weir_test_req_send(h, "PUT", path, value, 0);
    assert_true(r->finished);
    assert_int_equal(weir_test_req_status(r), 200);
    weir_test_req_dispose(r);
}

/* A hit is answered before the handler returns, with no allocation of weir's own (no heap job, no copy); its answer,
 * held but not yet written, survives a DELETE of the key, and the key's memory being reused; and an overwrite. */
static void test_memory_hit_holds_its_answer(void **state)
{
    weir_harness_t *h = start_memory();
    put(h, "/cache?key=k", "first");

    size_t allocations = weir_harness_allocations();
    weir_test_req_t *get = weir_test_req_send(h, "GET", "/cache?key=k", NULL, 0);
    if (weir_harness_allocations() != allocations)
        fail_msg("a hit made %zu allocation(s) of weir's own (none expected: the call on the stack, the answer by reference)",
                 weir_harness_allocations() - allocations);
    assert_true(get->finished);
    assert_int_equal(weir_test_req_status(get), 200);
    weir_test_req_t *del = weir_test_req_send(h, "DELETE", "/cache?key=k", NULL, 0);
    assert_string_equal(weir_test_req_body(del), "{\"success\": true, \"deleted\": true}");
    weir_test_req_dispose(del);
    put(h, "/cache?key=j", "other"); /* an entry of the same size, where the deleted one may have been */
    assert_string_equal(weir_test_req_body(get), "{\"data\": \"first\"}");
    weir_test_req_dispose(get);

    get = weir_test_req_send(h, "GET", "/cache?key=j", NULL, 0);
    put(h, "/cache?key=j", "newer");
    put(h, "/cache?key=i", "again");
    assert_string_equal(weir_test_req_body(get), "{\"data\": \"other\"}");
    weir_test_req_dispose(get);

    get = weir_test_req_send(h, "GET", "/cache?key=j", NULL, 0);
    assert_string_equal(weir_test_req_body(get), "{\"data\": \"newer\"}");
    weir_test_req_dispose(get);
    get = weir_test_req_send(h, "GET", "/cache?key=k", NULL, 0);
    assert_string_equal(weir_test_req_body(get), "{\"data\": null}");
    weir_test_req_dispose(get);
    finish(h);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_dispose_while_in_flight), cmocka_unit_test(test_completed_in_flight),
                cmocka_unit_test(test_memory_hit_holds_its_answer))
