/*
 * The Redis gate through the gate interface, on a private uv loop, against a real redis-server that each test starts
 * on a free port. Several thread states ("members") on one loop stand for several instances. Every test ends with every
 * member stopped, the gate destroyed and uv_loop_close(&loop) == 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "unit.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include "weir/gate.h"
#include "redis_server.h"

#define NAME "t"

typedef struct {
    weir_gate_waiter_t waiter;
    int calls;
    int status;
    int order; /* when it was granted, 1-based; 0 if not */
} waiter_t;

static int grants;

static void on_cb(weir_gate_waiter_t *w, int status)
{
    waiter_t *tw = (waiter_t *)w;
    ++tw->calls;
    tw->status = status;
    if (status == 0)
        tw->order = ++grants;
}

typedef struct {
    uv_loop_t loop;
    weir_gate_t *gate;
    weir_gate_thread_t *members[3];
    size_t num_members;
} env_t;

static void env_start(env_t *e, server_t *s, size_t slots, size_t max_queue, size_t members, weir_gate_on_failure_t on_failure)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", s->port);
    weir_gate_redis_options_t opts = {.url = url,
                                      .name = NAME,
                                      .slots = slots,
                                      .max_queue = max_queue,
                                      .lease_ms = 1000,
                                      .timeout_ms = 200,
                                      .on_failure = on_failure,
                                      .backoff_max_ms = 100};
    memset(e, 0, sizeof(*e));
    grants = 0;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(weir_gate_redis_create(&opts, &e->gate), 0);
    for (size_t i = 0; i != members; ++i)
        assert_int_equal(weir_gate_thread_start(e->gate, &e->loop, &e->members[i]), 0);
    e->num_members = members;
}

static void env_stop(env_t *e)
{
    for (size_t i = 0; i != e->num_members; ++i)
        weir_gate_thread_stop(e->gate, e->members[i]);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    weir_gate_destroy(e->gate);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static int member_up(void *arg)
{
    return weir_gate_redis_thread_is_up(arg);
}

static int member_down(void *arg)
{
    return !weir_gate_redis_thread_is_up(arg);
}

static void wait_up(env_t *e)
{
    for (size_t i = 0; i != e->num_members; ++i)
        assert_true(run_until(&e->loop, member_up, e->members[i], 5000));
}

static int called(void *arg)
{
    return ((waiter_t *)arg)->calls != 0;
}

static int called_twice(void *arg)
{
    return ((waiter_t *)arg)->calls >= 2;
}

static void wait_called(env_t *e, waiter_t *w)
{
    assert_true(run_until(&e->loop, called, w, 5000));
}

static int nothing(void *arg)
{
    return 0;
}

static void run_for(env_t *e, uint64_t ms)
{
    run_until(&e->loop, nothing, NULL, ms);
}

static long long zcard(server_t *s, const char *key)
{
    redisReply *r = client_cmd(s, "ZCARD %s", key);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static weir_gate_stats_t stats_of(env_t *e)
{
    weir_gate_stats_t st;
    weir_gate_stats(e->gate, &st);
    return st;
}

/* ---- tests ---------------------------------------------------------------------------------------------------- */

/* Redis 5 compatibility without a Redis 5 server here: every command the scripts call exists since Redis 2.8 at the
 * latest (none of 6.2's or 7.0's: no GETEX, no ZADD GT/LT, no functions), and each script starts with
 * redis.replicate_commands(), which 3.2-4 need before writing after TIME. And they all load on the server here. */
static void test_scripts_are_redis5_compatible(void **state)
{
    static const char *const allowed[] = {
        "TIME",     "ZRANGEBYSCORE", "SREM", "ZREMRANGEBYSCORE", "ZADD",   "SADD", "PEXPIRE", "ZCARD",
        "ZRANGE",   "ZREM",          "PTTL", "PUBLISH",          "ZSCORE", "SET",  "INCR",    "GET",
        "SMEMBERS", "EXISTS",        "DEL"};
    server_t *s = *state;
    size_t n = 0;

    server_start(s);
    for (const char *const *script = weir_gate_redis_scripts; *script != NULL; ++script, ++n) {
        assert_true(strncmp(*script, "redis.replicate_commands()\n", 27) == 0);
        for (const char *p = strstr(*script, "redis.call('"); p != NULL; p = strstr(p + 1, "redis.call('")) {
            const char *name = p + 12, *end = strchr(name, '\'');
            size_t len = (size_t)(end - name), i;
            for (i = 0; i != sizeof(allowed) / sizeof(allowed[0]); ++i)
                if (strlen(allowed[i]) == len && memcmp(allowed[i], name, len) == 0)
                    break;
            if (i == sizeof(allowed) / sizeof(allowed[0]))
                fail_msg("a script calls %.*s, which is not in the Redis 5 list", (int)len, name);
        }
        assert_null(strstr(*script, "'GT'"));
        assert_null(strstr(*script, "'LT'"));
        assert_null(strstr(*script, "'XX'"));
        redisReply *r = client_cmd(s, "SCRIPT LOAD %s", *script);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
    assert_int_equal(n, 4);
}

static void test_grants_up_to_slots_in_order(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t w[4];

    memset(w, 0, sizeof(w));
    server_start(s);
    env_start(&e, s, 2, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    for (int i = 0; i != 4; ++i)
        assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w[i].waiter, on_cb), WEIR_GATE_PENDING);
    wait_called(&e, &w[1]);
    run_for(&e, 50);
    assert_int_equal(w[0].order, 1);
    assert_int_equal(w[1].order, 2);
    assert_int_equal(w[2].calls, 0);
    assert_int_equal(weir_gate_waiter_state(&w[1].waiter), WEIR_GATE_HELD);
    assert_int_equal(weir_gate_waiter_state(&w[2].waiter), WEIR_GATE_WAITING);
    assert_int_equal(zcard(s, NAME ":holders"), 2);
    assert_int_equal(zcard(s, NAME ":queue"), 2);
    assert_int_equal(stats_of(&e).in_use, 2);
    assert_int_equal(stats_of(&e).waiting, 2);
    weir_gate_release(e.gate, &w[0].waiter);
    wait_called(&e, &w[2]);
    assert_int_equal(w[2].status, 0);
    assert_int_equal(w[2].order, 3);
    for (int i = 0; i != 4; ++i)
        weir_gate_release(e.gate, &w[i].waiter);
    run_for(&e, 50);
    assert_int_equal(w[3].calls, 0); /* released while queued: never told */
    assert_int_equal(zcard(s, NAME ":holders"), 0);
    assert_int_equal(zcard(s, NAME ":queue"), 0);
    assert_int_equal(stats_of(&e).in_use, 0);
    assert_int_equal(stats_of(&e).waiting, 0);
    assert_int_equal(stats_of(&e).max_in_use, 2);
    env_stop(&e);
    /* The members left: their liveness keys are gone. */
    redisReply *r = client_cmd(s, "KEYS " NAME ":inst:*");
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);
}

static void test_fifo_across_members(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t w[5];

    memset(w, 0, sizeof(w));
    server_start(s);
    env_start(&e, s, 1, 100, 2, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    /* Alternating members, each acquisition at Redis before the next is given. */
    for (int i = 0; i != 5; ++i) {
        assert_int_equal(weir_gate_acquire(e.gate, e.members[i % 2], &w[i].waiter, on_cb), WEIR_GATE_PENDING);
        run_for(&e, 30);
    }
    assert_int_equal(w[0].order, 1);
    for (int i = 0; i != 4; ++i) {
        weir_gate_release(e.gate, &w[i].waiter);
        wait_called(&e, &w[i + 1]);
        assert_int_equal(w[i + 1].order, i + 2);
    }
    weir_gate_release(e.gate, &w[4].waiter);
    env_stop(&e);
}

static void test_release_in_every_state(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t pending = {0}, acquiring = {0}, held = {0}, queued = {0}, granted_unseen = {0};

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    /* Before the member is registered: the acquisition waits, then is given up. */
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &pending.waiter, on_cb), WEIR_GATE_PENDING);
    weir_gate_release(e.gate, &pending.waiter);
    wait_up(&e);
    /* Sent, not yet answered. */
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &acquiring.waiter, on_cb), WEIR_GATE_PENDING);
    weir_gate_release(e.gate, &acquiring.waiter);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &held.waiter, on_cb), WEIR_GATE_PENDING);
    wait_called(&e, &held);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &queued.waiter, on_cb), WEIR_GATE_PENDING);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &granted_unseen.waiter, on_cb), WEIR_GATE_PENDING);
    run_for(&e, 50);
    weir_gate_release(e.gate, &queued.waiter);
    weir_gate_release(e.gate, &held.waiter); /* its slot goes to granted_unseen */
    weir_gate_release(e.gate, &held.waiter); /* idempotent */
    wait_called(&e, &granted_unseen);
    weir_gate_release(e.gate, &granted_unseen.waiter);
    run_for(&e, 50);
    assert_int_equal(pending.calls + acquiring.calls + queued.calls, 0);
    assert_int_equal(zcard(s, NAME ":holders"), 0);
    assert_int_equal(zcard(s, NAME ":queue"), 0);
    assert_int_equal(stats_of(&e).in_use, 0);
    assert_int_equal(stats_of(&e).waiting, 0);
    env_stop(&e);
}

static int holders_empty(void *arg)
{
    return zcard(arg, NAME ":holders") == 0;
}

static void test_grant_for_a_gone_waiter_is_released(void **state)
{
    server_t *s = *state;
    env_t e;

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    /* A slot granted to a ticket of the member's that no waiter has (its client left): the member gives it back. */
    redisReply *keys = client_cmd(s, "KEYS " NAME ":inst:*");
    assert_int_equal(keys->elements, 1);
    const char *member = keys->element[0]->str + strlen(NAME ":inst:");
    char ticket[96];
    snprintf(ticket, sizeof(ticket), "%s#999", member);
    freeReplyObject(client_cmd(s, "ZADD " NAME ":holders 99999999999999 %s", ticket));
    freeReplyObject(client_cmd(s, "SADD " NAME ":held:%s %s", member, ticket));
    freeReplyObject(client_cmd(s, "PUBLISH " NAME ":grant:%s %s", member, ticket));
    freeReplyObject(keys);
    assert_true(run_until(&e.loop, holders_empty, s, 2000));
    env_stop(&e);
}

static void test_dead_members_slot_returns(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t w = {0};

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    /* A member that died holding the only slot, 300 ms before its lease ends (by Redis's clock). */
    redisReply *t = client_cmd(s, "TIME");
    long long now = atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
    freeReplyObject(t);
    freeReplyObject(client_cmd(s, "ZADD " NAME ":holders %lld dead.0#1", now + 300));
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w.waiter, on_cb), WEIR_GATE_PENDING);
    run_for(&e, 150);
    assert_int_equal(w.calls, 0);
    wait_called(&e, &w); /* by the member's tick, nobody having released anything */
    assert_int_equal(w.status, 0);
    assert_int_equal(zcard(s, NAME ":holders"), 1);
    weir_gate_release(e.gate, &w.waiter);
    env_stop(&e);
}

static void test_redis_down_then_back(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t held = {0}, queued = {0}, later = {0}, refused = {0};

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    weir_gate_acquire(e.gate, e.members[0], &held.waiter, on_cb);
    wait_called(&e, &held);
    weir_gate_acquire(e.gate, e.members[0], &queued.waiter, on_cb);
    run_for(&e, 30);
    server_kill(s);
    wait_called(&e, &queued); /* told as soon as the connection is lost */
    assert_int_equal(queued.status, -EAGAIN);
    assert_int_equal(weir_gate_waiter_state(&queued.waiter), WEIR_GATE_IDLE);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &refused.waiter, on_cb), -EAGAIN);
    /* The holder keeps its slot while its lease is guaranteed (lease 1000 ms minus the margin), then loses it. */
    assert_true(run_until(&e.loop, member_down, e.members[0], 100));
    run_for(&e, 300);
    assert_int_equal(held.calls, 1);
    assert_true(run_until(&e.loop, called_twice, &held, 3000));
    assert_int_equal(held.status, -ETIMEDOUT);
    assert_int_equal(weir_gate_waiter_state(&held.waiter), WEIR_GATE_IDLE);
    assert_int_equal(stats_of(&e).in_use, 0);
    /* Back: registered again by itself, and serving. */
    server_start(s);
    wait_up(&e);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &later.waiter, on_cb), WEIR_GATE_PENDING);
    wait_called(&e, &later);
    assert_int_equal(later.status, 0);
    weir_gate_release(e.gate, &later.waiter);
    weir_gate_release(e.gate, &held.waiter);
    env_stop(&e);
}

static int holders_one(void *arg)
{
    return zcard(arg, NAME ":holders") == 1;
}

static void test_flushall_reregisters(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t held = {0}, queued = {0};

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    weir_gate_acquire(e.gate, e.members[0], &held.waiter, on_cb);
    wait_called(&e, &held);
    weir_gate_acquire(e.gate, e.members[0], &queued.waiter, on_cb);
    run_for(&e, 30);
    freeReplyObject(client_cmd(s, "FLUSHALL"));
    /* The next tick puts the holder back (the slot is still taken at Redis), and the waiter queues again. */
    assert_true(run_until(&e.loop, holders_one, s, 1000));
    run_for(&e, 50);
    assert_int_equal(zcard(s, NAME ":queue"), 1);
    assert_int_equal(queued.calls, 0);
    weir_gate_release(e.gate, &held.waiter);
    wait_called(&e, &queued);
    assert_int_equal(queued.status, 0);
    weir_gate_release(e.gate, &queued.waiter);
    env_stop(&e);
}

static void test_script_cache_flushed(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t w = {0};

    server_start(s);
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    freeReplyObject(client_cmd(s, "SCRIPT FLUSH"));
    weir_gate_acquire(e.gate, e.members[0], &w.waiter, on_cb);
    wait_called(&e, &w);
    assert_int_equal(w.status, 0);
    weir_gate_release(e.gate, &w.waiter);
    env_stop(&e);
}

static void test_on_failure_local(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t a = {0}, b = {0};

    /* No Redis at all: once the first attempt has failed, the in-process fallback gate of 1 slot takes over. */
    env_start(&e, s, 1, 100, 1, WEIR_GATE_FAIL_LOCAL);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &a.waiter, on_cb), WEIR_GATE_PENDING);
    wait_called(&e, &a);
    assert_int_equal(a.status, 0);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &b.waiter, on_cb), WEIR_GATE_PENDING);
    run_for(&e, 50);
    assert_int_equal(b.calls, 0); /* the fallback keeps the limit of this process */
    assert_int_equal(stats_of(&e).in_use, 1);
    assert_int_equal(stats_of(&e).waiting, 1);
    weir_gate_release(e.gate, &a.waiter);
    wait_called(&e, &b);
    assert_int_equal(b.status, 0);
    weir_gate_release(e.gate, &b.waiter);
    env_stop(&e);
}

static void test_max_queue(void **state)
{
    server_t *s = *state;
    env_t e;
    waiter_t w[3];

    memset(w, 0, sizeof(w));
    server_start(s);
    env_start(&e, s, 1, 2, 1, WEIR_GATE_FAIL_REJECT);
    wait_up(&e);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w[0].waiter, on_cb), WEIR_GATE_PENDING);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w[1].waiter, on_cb), WEIR_GATE_PENDING);
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w[2].waiter, on_cb), -EBUSY);
    assert_int_equal(stats_of(&e).refused, 1);
    wait_called(&e, &w[0]);
    /* w[0] holds now: one place is free again. */
    assert_int_equal(weir_gate_acquire(e.gate, e.members[0], &w[2].waiter, on_cb), WEIR_GATE_PENDING);
    for (int i = 0; i != 3; ++i)
        weir_gate_release(e.gate, &w[i].waiter);
    env_stop(&e);
}

WEIR_UNIT_TESTS(cmocka_unit_test_setup_teardown(test_scripts_are_redis5_compatible, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_grants_up_to_slots_in_order, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_fifo_across_members, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_release_in_every_state, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_grant_for_a_gone_waiter_is_released, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_dead_members_slot_returns, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_redis_down_then_back, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_flushall_reregisters, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_script_cache_flushed, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_on_failure_local, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_max_queue, setup_server, teardown_server))
