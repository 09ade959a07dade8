/*
 * The Redis backend of /cache on a private uv loop, against a real redis-server that each test starts on a free port
 * (in a temporary directory, without persistence) and stops. Every test that runs a loop ends with
 * uv_loop_close(&loop) == 0: the pool's stop must close every handle it opened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "unit.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include "weir/cache.h"
#include "redis_server.h"

/* ---- the loop ------------------------------------------------------------------------------------------------- */

typedef struct {
    weir_cache_call_t call;
    int done;
    int status;
    int deleted;
    char *value;
    size_t value_len;
    char message[256];
} call_t;

static void on_done(weir_cache_call_t *_call, const weir_cache_result_t *res)
{
    call_t *c = (call_t *)_call;
    ++c->done;
    c->status = res->status;
    c->deleted = res->deleted;
    if (res->status == 0 && res->value.base != NULL) {
        c->value = malloc(res->value.len + 1);
        memcpy(c->value, res->value.base, res->value.len);
        c->value[res->value.len] = '\0';
        c->value_len = res->value.len;
    }
    snprintf(c->message, sizeof(c->message), "%s", res->message != NULL ? res->message : "");
}

static void call_init(call_t *c, const char *key, const char *value, uint32_t ttl)
{
    free(c->value);
    memset(c, 0, sizeof(*c));
    c->call.key = h2o_iovec_init(key, strlen(key));
    if (value != NULL)
        c->call.value = h2o_iovec_init(value, strlen(value));
    c->call.ttl = ttl;
    c->call.on_done = on_done;
}

static int call_is_done(void *arg)
{
    return ((call_t *)arg)->done != 0;
}

typedef struct {
    void *thread;
    unsigned want;
} ready_t;

static int pool_is_ready(void *arg)
{
    ready_t *r = arg;
    weir_cache_redis_thread_stats_t st;
    weir_cache_redis_thread_stats(r->thread, &st);
    return st.ready == r->want;
}

static int pool_has_failed(void *arg)
{
    ready_t *r = arg;
    weir_cache_redis_thread_stats_t st;
    weir_cache_redis_thread_stats(r->thread, &st);
    return st.ready == 0 && st.failures >= r->want;
}

typedef struct {
    uv_loop_t loop;
    weir_cache_redis_t *redis;
    void *thread;
    unsigned pool_size;
} env_t;

static void env_start(env_t *e, const char *url, unsigned pool_size, uint64_t timeout_ms, const char *prefix)
{
    weir_cache_redis_options_t opts = {.url = url,
                                       .pool_size = pool_size,
                                       .timeout_ms = timeout_ms,
                                       .prefix = prefix,
                                       .backoff_min_ms = 20,
                                       .backoff_max_ms = 200};
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(weir_cache_redis_create(&opts, &e->redis), 0);
    assert_int_equal(weir_cache_redis_vtable.start(e->redis, &e->loop, &e->thread), 0);
    e->pool_size = pool_size;
}

static void env_wait_ready(env_t *e)
{
    ready_t r = {e->thread, e->pool_size};
    assert_true(run_until(&e->loop, pool_is_ready, &r, 5000));
}

static void env_stop(env_t *e)
{
    weir_cache_redis_vtable.stop(e->redis, e->thread);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    weir_cache_redis_vtable.destroy(e->redis);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void do_call(env_t *e, void (*op)(void *, void *, weir_cache_call_t *), call_t *c, const char *key, const char *value,
                    uint32_t ttl)
{
    call_init(c, key, value, ttl);
    op(e->redis, e->thread, &c->call);
    assert_true(run_until(&e->loop, call_is_done, c, 5000));
    assert_int_equal(c->done, 1);
}

static char *url_of(server_t *s, char *buf, size_t size, const char *suffix)
{
    snprintf(buf, size, "redis://127.0.0.1:%d%s", s->port, suffix);
    return buf;
}

/* ---- tests ---------------------------------------------------------------------------------------------------- */

static void test_create_rejects_bad_url(void **state)
{
    weir_cache_redis_t *r;
    weir_cache_redis_options_t opts = {.url = "redis://no-such-host.invalid/0", .pool_size = 1, .timeout_ms = 100};
    assert_int_equal(weir_cache_redis_create(&opts, &r), -ENOENT);
    opts.url = "redis://127.0.0.1/x";
    assert_int_equal(weir_cache_redis_create(&opts, &r), -EINVAL);
}

static void test_get_set_del(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 2, 1000, "weir:");
    env_wait_ready(&e);

    do_call(&e, weir_cache_redis_vtable.get, &c, "k", NULL, 0);
    assert_int_equal(c.status, -ENOENT);
    do_call(&e, weir_cache_redis_vtable.set, &c, "k", "v\xc3\xa9", 0);
    assert_int_equal(c.status, 0);
    do_call(&e, weir_cache_redis_vtable.get, &c, "k", NULL, 0);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.value, "v\xc3\xa9");

    /* The prefix is part of the key in Redis; the value is the same. */
    redisReply *r = client_cmd(s, "GET weir:k");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "v\xc3\xa9");
    freeReplyObject(r);
    r = client_cmd(s, "TTL weir:k");
    assert_int_equal(r->integer, -1);
    freeReplyObject(r);

    do_call(&e, weir_cache_redis_vtable.del, &c, "k", NULL, 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.deleted, 1);
    do_call(&e, weir_cache_redis_vtable.del, &c, "k", NULL, 0);
    assert_int_equal(c.deleted, 0);

    /* Empty values and binary-safe keys. */
    do_call(&e, weir_cache_redis_vtable.set, &c, "sp ace\n", "", 0);
    assert_int_equal(c.status, 0);
    do_call(&e, weir_cache_redis_vtable.get, &c, "sp ace\n", NULL, 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.value_len, 0);

    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_ttl_and_interop(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), ""), 1, 1000, NULL);
    env_wait_ready(&e);

    do_call(&e, weir_cache_redis_vtable.set, &c, "t", "with ttl", 100);
    assert_int_equal(c.status, 0);
    redisReply *r = client_cmd(s, "TTL t");
    assert_true(r->integer > 90 && r->integer <= 100);
    freeReplyObject(r);

    /* Written by another client, read through the backend, including a value that is not UTF-8 (the handler's
     * business to refuse). */
    freeReplyObject(client_cmd(s, "SET other %s", "from redis-cli"));
    do_call(&e, weir_cache_redis_vtable.get, &c, "other", NULL, 0);
    assert_string_equal(c.value, "from redis-cli");
    freeReplyObject(client_cmd(s, "SET bin %b", "\xff\x00\xfe", (size_t)3));
    do_call(&e, weir_cache_redis_vtable.get, &c, "bin", NULL, 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.value_len, 3);
    assert_memory_equal(c.value, "\xff\x00\xfe", 3);

    /* A key of another type: Redis answers an error, the backend says so. */
    freeReplyObject(client_cmd(s, "RPUSH list a"));
    do_call(&e, weir_cache_redis_vtable.get, &c, "list", NULL, 0);
    assert_int_equal(c.status, -EPROTO);
    assert_non_null(strstr(c.message, "WRONGTYPE"));

    /* Expiry is Redis's. */
    do_call(&e, weir_cache_redis_vtable.set, &c, "short", "v", 1);
    usleep(1100000);
    do_call(&e, weir_cache_redis_vtable.get, &c, "short", NULL, 0);
    assert_int_equal(c.status, -ENOENT);

    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_auth_and_select(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[96];

    snprintf(s->password, sizeof(s->password), "s3cr@t");
    server_start(s);
    snprintf(url, sizeof(url), "redis://:s3cr%%40t@127.0.0.1:%d/3", s->port);
    env_start(&e, url, 2, 1000, NULL);
    env_wait_ready(&e);
    do_call(&e, weir_cache_redis_vtable.set, &c, "in-db-3", "yes", 0);
    assert_int_equal(c.status, 0);
    redisReply *r = client_cmd(s, "GET in-db-3");
    assert_int_equal(r->type, REDIS_REPLY_NIL); /* not in db 0 */
    freeReplyObject(r);
    r = client_cmd(s, "SELECT 3");
    freeReplyObject(r);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);

    /* Verify db 3 on one connection. */
    redisContext *cli = client_connect(s);
    freeReplyObject(redisCommand(cli, "SELECT 3"));
    r = redisCommand(cli, "GET in-db-3");
    assert_string_equal(r->str, "yes");
    freeReplyObject(r);
    redisFree(cli);

    /* A wrong password: the pool never becomes ready, calls fail at once and nothing leaks. */
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", s->port);
    env_start(&e, url, 2, 1000, NULL);
    ready_t failed = {e.thread, 2};
    assert_true(run_until(&e.loop, pool_has_failed, &failed, 5000));
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.status, -EAGAIN);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_unix_socket(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[160];

    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    server_start(s);
    snprintf(url, sizeof(url), "unix:%s?db=1", s->sock);
    env_start(&e, url, 1, 1000, "p:");
    env_wait_ready(&e);
    do_call(&e, weir_cache_redis_vtable.set, &c, "u", "over unix", 0);
    assert_int_equal(c.status, 0);
    redisReply *r = client_cmd(s, "SELECT 1");
    freeReplyObject(r);
    redisContext *cli = client_connect(s);
    freeReplyObject(redisCommand(cli, "SELECT 1"));
    r = redisCommand(cli, "GET p:u");
    assert_string_equal(r->str, "over unix");
    freeReplyObject(r);
    redisFree(cli);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_queued_before_connected(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c1 = {0}, c2 = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 2, 1000, NULL);
    /* The loop has not run: the first attempt is under way, and commands wait on it. */
    call_init(&c1, "early", "bird", 0);
    weir_cache_redis_vtable.set(e.redis, e.thread, &c1.call);
    call_init(&c2, "early", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c2.call);
    assert_int_equal(c1.done, 0);
    assert_true(run_until(&e.loop, call_is_done, &c2, 5000));
    assert_int_equal(c1.status, 0);
    assert_int_equal(c2.status, 0);
    assert_string_equal(c2.value, "bird");
    call_init(&c1, "x", NULL, 0);
    call_init(&c2, "x", NULL, 0);
    env_stop(&e);
}

static void test_down_then_recovers(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    /* Nothing listens on the port yet. */
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 2, 1000, NULL);
    ready_t failed = {e.thread, 2};
    assert_true(run_until(&e.loop, pool_has_failed, &failed, 5000));
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    assert_int_equal(c.done, 1); /* at once */
    assert_int_equal(c.status, -EAGAIN);
    assert_non_null(strstr(c.message, "unavailable"));

    server_start(s);
    env_wait_ready(&e); /* by itself, within the backoff */
    do_call(&e, weir_cache_redis_vtable.set, &c, "k", "back", 0);
    assert_int_equal(c.status, 0);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_killed_and_restarted(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 2, 1000, NULL);
    env_wait_ready(&e);
    do_call(&e, weir_cache_redis_vtable.set, &c, "k", "v", 0);
    assert_int_equal(c.status, 0);

    server_kill(s);
    ready_t r = {e.thread, 0};
    assert_true(run_until(&e.loop, pool_is_ready, &r, 5000)); /* noticed without any command */
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.status, -EAGAIN);

    server_start(s);
    env_wait_ready(&e);
    do_call(&e, weir_cache_redis_vtable.get, &c, "k", NULL, 0);
    assert_int_equal(c.status, -ENOENT); /* a new, empty server */
    weir_cache_redis_thread_stats_t st;
    weir_cache_redis_thread_stats(e.thread, &st);
    assert_true(st.connects >= 4);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_killed_with_command_in_flight(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 1, 5000, NULL);
    env_wait_ready(&e);
    redisContext *sleeper = client_sleep(s, "2");
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    uv_run(&e.loop, UV_RUN_NOWAIT); /* sent */
    server_kill(s);
    assert_true(run_until(&e.loop, call_is_done, &c, 5000));
    assert_int_equal(c.status, -EAGAIN);
    redisFree(sleeper);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

static void test_slow_reply_times_out(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0}, late = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 1, 200, NULL);
    env_wait_ready(&e);
    redisContext *sleeper = client_sleep(s, "0.8");
    call_init(&late, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &late.call);
    assert_true(run_until(&e.loop, call_is_done, &late, 5000));
    assert_int_equal(late.status, -ETIMEDOUT);
    /* The late reply arrives and is dropped; the connection stays usable. */
    usleep(800000);
    do_call(&e, weir_cache_redis_vtable.set, &c, "k", "after", 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(late.done, 1);
    redisFree(sleeper);
    call_init(&c, "x", NULL, 0);
    call_init(&late, "x", NULL, 0);
    env_stop(&e);
}

static void test_stop_with_command_in_flight(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 2, 5000, NULL);
    env_wait_ready(&e);
    redisContext *sleeper = client_sleep(s, "0.5");
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    weir_cache_redis_vtable.stop(e.redis, e.thread);
    assert_int_equal(c.done, 1); /* completed by the stop */
    assert_int_equal(c.status, -EAGAIN);
    assert_int_equal(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
    weir_cache_redis_vtable.destroy(e.redis);
    assert_int_equal(uv_loop_close(&e.loop), 0);
    redisFree(sleeper);
    call_init(&c, "x", NULL, 0);
}

static void test_stop_while_down(void **state)
{
    server_t *s = *state;
    env_t e;
    char url[64];

    /* Backoff timers running, attempts failing: stop still closes everything. */
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 3, 1000, NULL);
    ready_t failed = {e.thread, 3};
    assert_true(run_until(&e.loop, pool_has_failed, &failed, 5000));
    env_stop(&e);

    /* And right after start, before the loop ran at all. */
    server_start(s);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 3, 1000, NULL);
    env_stop(&e);
}

static void test_connection_attempt_deadline(void **state)
{
    server_t *s = *state;
    env_t e;
    call_t c = {0};
    char url[64];

    /* A stopped server accepts connections (the kernel does) but never answers the PING. */
    server_start(s);
    kill(s->pid, SIGSTOP);
    env_start(&e, url_of(s, url, sizeof(url), "/0"), 1, 200, NULL);
    ready_t failed = {e.thread, 1};
    assert_true(run_until(&e.loop, pool_has_failed, &failed, 5000));
    call_init(&c, "k", NULL, 0);
    weir_cache_redis_vtable.get(e.redis, e.thread, &c.call);
    assert_int_equal(c.done, 1);
    assert_int_equal(c.status, -EAGAIN);
    kill(s->pid, SIGCONT);
    env_wait_ready(&e);
    do_call(&e, weir_cache_redis_vtable.get, &c, "k", NULL, 0);
    assert_int_equal(c.status, -ENOENT);
    call_init(&c, "x", NULL, 0);
    env_stop(&e);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_create_rejects_bad_url),
                cmocka_unit_test_setup_teardown(test_get_set_del, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_ttl_and_interop, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_auth_and_select, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_unix_socket, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_queued_before_connected, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_down_then_recovers, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_killed_and_restarted, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_killed_with_command_in_flight, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_slow_reply_times_out, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_stop_with_command_in_flight, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_stop_while_down, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_connection_attempt_deadline, setup_server, teardown_server))
