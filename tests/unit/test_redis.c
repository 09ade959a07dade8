/*
 * The Redis client layer (src/redis/): URL parsing, then commands, scripts, state changes and subscribers on a private
 * uv loop against a real redis-server that each test starts on a free port and stops. Every test that runs a loop ends
 * with uv_loop_close(&loop) == 0.
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
#include "weir/redis.h"
#include "redis_server.h"

static void test_parse_url(void **state)
{
    weir_redis_target_t t;
    char err[160];

    assert_int_equal(weir_redis_parse_url("redis://127.0.0.1:6379/0", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_null(t.password);
    weir_redis_target_dispose(&t);

    assert_int_equal(weir_redis_parse_url("redis://:s%40cret@cache.example:7000/5", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "cache.example");
    assert_int_equal(t.port, 7000);
    assert_int_equal(t.db, 5);
    assert_string_equal(t.password, "s@cret");
    assert_null(t.username);
    weir_redis_target_dispose(&t);

    assert_int_equal(weir_redis_parse_url("redis://user:pw@[::1]:6380", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6380);
    assert_string_equal(t.username, "user");
    assert_string_equal(t.password, "pw");
    weir_redis_target_dispose(&t);

    assert_int_equal(weir_redis_parse_url("redis://localhost", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "localhost");
    assert_int_equal(t.port, 6379);
    weir_redis_target_dispose(&t);

    assert_int_equal(weir_redis_parse_url("unix:/run/redis/redis.sock", &t, err, sizeof(err)), 0);
    assert_string_equal(t.unix_path, "/run/redis/redis.sock");
    assert_null(t.host);
    weir_redis_target_dispose(&t);

    assert_int_equal(weir_redis_parse_url("unix:///tmp/r.sock?db=3&password=p%20w", &t, err, sizeof(err)), 0);
    assert_string_equal(t.unix_path, "/tmp/r.sock");
    assert_int_equal(t.db, 3);
    assert_string_equal(t.password, "p w");
    weir_redis_target_dispose(&t);

    static const char *const bad[] = {
        "http://127.0.0.1",
        "redis://",
        "redis://:pw@",
        "redis://host:0",
        "redis://host:70000",
        "redis://host:x",
        "redis://host/abc",
        "redis://[::1",
        "rediss://host",
        "unix:relative.sock",
        "unix:",
        "redis://h/1/2",
        "unix:/s?db=x",
        "redis://us%zz:pw@host/0",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        err[0] = '\0';
        assert_int_equal(weir_redis_parse_url(bad[i], &t, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
    }
}

/* Found by the redis_url fuzz target: a percent-encoded NUL cut a credential short (an empty user name or password,
 * or one missing its end, sent to AUTH). And a repeated password or user name in a unix: URL was dropped silently. */
static void test_parse_url_refuses_nul_and_repeats(void **state)
{
    static const char *const bad[] = {
        "redis://:a%00b@host",           "redis://%00u:pw@host",
        "redis://u%00:pw@host",          "redis://%00@host",
        "unix:/s?password=a%00b",        "unix:/s?username=%00u&password=p",
        "unix:/s?password=a&password=b", "unix:/s?username=a&username=b&password=p",
    };
    weir_redis_target_t t;
    char err[160];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        err[0] = '\0';
        assert_int_equal(weir_redis_parse_url(bad[i], &t, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
        assert_null(t.username);
        assert_null(t.password);
    }
    /* still fine: an encoded byte that is not NUL, and '+' kept in redis:// but a space in a unix: query */
    assert_int_equal(weir_redis_parse_url("redis://u%01:p+w@host", &t, err, sizeof(err)), 0);
    assert_string_equal(t.username, "u\x01");
    assert_string_equal(t.password, "p+w");
    weir_redis_target_dispose(&t);
    assert_int_equal(weir_redis_parse_url("unix:/s?password=p+w&username=u", &t, err, sizeof(err)), 0);
    assert_string_equal(t.password, "p w");
    assert_string_equal(t.username, "u");
    weir_redis_target_dispose(&t);
}

static void test_script_sha1(void **state)
{
    weir_redis_script_t s;
    /* as `redis-cli SCRIPT LOAD "return 1"` prints it */
    weir_redis_script_init(&s, "return 1");
    assert_string_equal(s.sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

/* ---- a client on a loop ---------------------------------------------------------------------------------------- */

typedef struct {
    int done;
    int status;
    long long integer;
    char str[256];
    char message[256];
} reply_t;

static void on_reply(void *data, int status, const redisReply *reply, const char *message)
{
    reply_t *r = data;
    ++r->done;
    r->status = status;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        r->integer = reply->integer;
    if (reply != NULL &&
        (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR))
        snprintf(r->str, sizeof(r->str), "%s", reply->str);
    snprintf(r->message, sizeof(r->message), "%s", message != NULL ? message : "");
}

static int reply_done(void *arg)
{
    return ((reply_t *)arg)->done != 0;
}

typedef struct {
    int ups;
    int downs;
    int last;
} states_t;

static void on_state(void *data, int up)
{
    states_t *st = data;
    if (up)
        ++st->ups;
    else
        ++st->downs;
    st->last = up;
}

static int is_up(void *arg)
{
    return ((states_t *)arg)->last == 1 && ((states_t *)arg)->ups != 0;
}

static int is_down(void *arg)
{
    return ((states_t *)arg)->last == 0 && ((states_t *)arg)->downs != 0;
}

static const char INCR_SCRIPT[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

typedef struct {
    uv_loop_t loop;
    weir_redis_script_t script;
    const weir_redis_script_t *scripts[1];
    weir_redis_t *redis;
    weir_redis_client_t *client;
    states_t states;
} env_t;

static void env_start(env_t *e, server_t *s, unsigned pool, uint64_t timeout_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", s->port);
    memset(e, 0, sizeof(*e));
    weir_redis_script_init(&e->script, INCR_SCRIPT);
    e->scripts[0] = &e->script;
    weir_redis_options_t opts = {.url = url,
                                 .who = "test",
                                 .pool_size = pool,
                                 .timeout_ms = timeout_ms,
                                 .backoff_min_ms = 20,
                                 .backoff_max_ms = 100,
                                 .scripts = e->scripts,
                                 .num_scripts = 1};
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(weir_redis_create(&opts, &e->redis), 0);
    e->client = weir_redis_client_start(e->redis, &e->loop, on_state, &e->states);
}

static void env_stop(env_t *e)
{
    weir_redis_client_stop(e->client, 0);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    weir_redis_destroy(e->redis);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void command(env_t *e, reply_t *r, int argc, const char **argv)
{
    memset(r, 0, sizeof(*r));
    weir_redis_command(e->client, argc, argv, NULL, 0, on_reply, r);
    assert_true(run_until(&e->loop, reply_done, r, 5000));
    assert_int_equal(r->done, 1);
}

static void evalsha(env_t *e, reply_t *r, const char *key, const char *by)
{
    const char *argv[] = {key, by};
    memset(r, 0, sizeof(*r));
    weir_redis_evalsha(e->client, &e->script, 1, 2, argv, NULL, 0, on_reply, r);
    assert_true(run_until(&e->loop, reply_done, r, 5000));
    assert_int_equal(r->done, 1);
}

static void test_commands_and_state(void **state)
{
    server_t *s = *state;
    env_t e;
    reply_t r;

    server_start(s);
    env_start(&e, s, 2, 1000);
    assert_true(run_until(&e.loop, is_up, &e.states, 5000));
    assert_int_equal(e.states.ups, 1); /* told once, though two connections came up */
    assert_true(weir_redis_client_is_up(e.client));
    const char *set[] = {"SET", "k", "v"}, *get[] = {"GET", "k"}, *bad[] = {"INCR", "k"};
    command(&e, &r, 3, set);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.str, "OK");
    command(&e, &r, 2, get);
    assert_string_equal(r.str, "v");
    command(&e, &r, 2, bad);
    assert_int_equal(r.status, -EPROTO);
    assert_non_null(strstr(r.message, "not an integer"));

    server_kill(s);
    assert_true(run_until(&e.loop, is_down, &e.states, 5000)); /* noticed without any command */
    assert_int_equal(e.states.downs, 1);
    memset(&r, 0, sizeof(r));
    weir_redis_command(e.client, 2, get, NULL, 0, on_reply, &r);
    assert_int_equal(r.done, 1); /* at once */
    assert_int_equal(r.status, -EAGAIN);

    server_start(s);
    assert_true(run_until(&e.loop, is_up, &e.states, 5000));
    assert_int_equal(e.states.ups, 2);
    command(&e, &r, 2, get);
    assert_int_equal(r.status, 0);
    env_stop(&e);
}

static void test_first_attempt_fails_is_told(void **state)
{
    server_t *s = *state;
    env_t e;

    env_start(&e, s, 2, 1000); /* nothing listens */
    assert_true(run_until(&e.loop, is_down, &e.states, 5000));
    assert_int_equal(e.states.ups, 0);
    assert_int_equal(e.states.downs, 1);
    env_stop(&e);
}

static void test_scripts_loaded_and_reloaded(void **state)
{
    server_t *s = *state;
    env_t e;
    reply_t r;

    server_start(s);
    env_start(&e, s, 1, 1000);
    assert_true(run_until(&e.loop, is_up, &e.states, 5000));
    /* Loaded when the connection came up. */
    redisReply *exists = client_cmd(s, "SCRIPT EXISTS %s", e.script.sha1);
    assert_int_equal(exists->element[0]->integer, 1);
    freeReplyObject(exists);
    evalsha(&e, &r, "n", "2");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.integer, 2);

    /* The cache is flushed under the connection's feet: NOSCRIPT, retried as EVAL, unseen by the caller. */
    freeReplyObject(client_cmd(s, "SCRIPT FLUSH"));
    weir_redis_client_stats_t before, after;
    weir_redis_client_stats(e.client, &before);
    evalsha(&e, &r, "n", "3");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.integer, 5);
    weir_redis_client_stats(e.client, &after);
    assert_int_equal(after.commands - before.commands, 2);
    /* and EVAL loaded it again: the next call is one EVALSHA */
    evalsha(&e, &r, "n", "1");
    weir_redis_client_stats(e.client, &before);
    assert_int_equal(before.commands - after.commands, 1);
    assert_int_equal(r.integer, 6);
    env_stop(&e);
}

static void test_deadline_and_late_reply(void **state)
{
    server_t *s = *state;
    env_t e;
    reply_t r, late;

    server_start(s);
    env_start(&e, s, 1, 200);
    assert_true(run_until(&e.loop, is_up, &e.states, 5000));
    redisContext *sleeper = client_sleep(s, "0.6");
    const char *ping[] = {"PING"};
    memset(&late, 0, sizeof(late));
    weir_redis_command(e.client, 1, ping, NULL, 0, on_reply, &late);
    assert_true(run_until(&e.loop, reply_done, &late, 5000));
    assert_int_equal(late.status, -ETIMEDOUT);
    usleep(600000);
    command(&e, &r, 1, ping); /* the late PONG is dropped; this one gets its own */
    assert_int_equal(r.status, 0);
    assert_string_equal(r.str, "PONG");
    assert_int_equal(late.done, 1);
    redisFree(sleeper);
    env_stop(&e);
}

static void test_stop_flush_sends_pending(void **state)
{
    server_t *s = *state;
    env_t e;
    reply_t r;

    server_start(s);
    env_start(&e, s, 1, 1000);
    assert_true(run_until(&e.loop, is_up, &e.states, 5000));
    const char *set[] = {"SET", "flushed", "yes"};
    memset(&r, 0, sizeof(r));
    weir_redis_command(e.client, 3, set, NULL, 0, on_reply, &r);
    weir_redis_client_stop(e.client, 1); /* not yet written: sent before the connection closes */
    assert_int_equal(r.done, 0);
    assert_int_equal(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, 0);
    weir_redis_destroy(e.redis);
    assert_int_equal(uv_loop_close(&e.loop), 0);
    redisReply *v = client_cmd(s, "GET flushed");
    assert_string_equal(v->str, "yes");
    freeReplyObject(v);
    assert_int_equal(e.states.downs, 0); /* no state told during or after stop */
}

/* ---- subscribers ----------------------------------------------------------------------------------------------- */

typedef struct {
    states_t states;
    int messages;
    char last[64];
} sub_env_t;

static void on_message(void *data, const char *msg, size_t len)
{
    sub_env_t *se = data;
    ++se->messages;
    snprintf(se->last, sizeof(se->last), "%.*s", (int)len, msg);
}

static void on_sub_state(void *data, int up)
{
    on_state(&((sub_env_t *)data)->states, up);
}

static int sub_is_up(void *arg)
{
    return is_up(&((sub_env_t *)arg)->states);
}

static int sub_is_down(void *arg)
{
    return is_down(&((sub_env_t *)arg)->states);
}

static int got_two(void *arg)
{
    return ((sub_env_t *)arg)->messages >= 2;
}

static int got_one(void *arg)
{
    return ((sub_env_t *)arg)->messages >= 1;
}

static void test_subscriber(void **state)
{
    server_t *s = *state;
    uv_loop_t loop;
    weir_redis_t *redis;
    sub_env_t se;
    memset(&se, 0, sizeof(se));
    char url[64];

    snprintf(s->password, sizeof(s->password), "pw");
    server_start(s);
    snprintf(url, sizeof(url), "redis://:pw@127.0.0.1:%d/2", s->port);
    weir_redis_options_t opts = {.url = url, .pool_size = 1, .timeout_ms = 1000, .backoff_min_ms = 20, .backoff_max_ms = 100};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(weir_redis_create(&opts, &redis), 0);
    weir_redis_subscriber_t *sub = weir_redis_subscriber_start(redis, &loop, "chan:1", on_message, on_sub_state, &se);
    assert_true(run_until(&loop, sub_is_up, &se, 5000));
    assert_true(weir_redis_subscriber_is_up(sub));
    freeReplyObject(client_cmd(s, "PUBLISH chan:1 first"));
    freeReplyObject(client_cmd(s, "PUBLISH chan:2 other"));
    freeReplyObject(client_cmd(s, "PUBLISH chan:1 second"));
    assert_true(run_until(&loop, got_two, &se, 5000));
    assert_int_equal(se.messages, 2);
    assert_string_equal(se.last, "second");

    /* Lost and back: subscribed again by itself. */
    server_kill(s);
    assert_true(run_until(&loop, sub_is_down, &se, 5000));
    server_start(s);
    assert_true(run_until(&loop, sub_is_up, &se, 5000));
    freeReplyObject(client_cmd(s, "PUBLISH chan:1 third"));
    se.messages = 0;
    assert_true(run_until(&loop, got_one, &se, 5000));
    assert_string_equal(se.last, "third");
    assert_int_equal(se.states.ups, 2);

    weir_redis_subscriber_stop(sub);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    weir_redis_destroy(redis);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_subscriber_wrong_password(void **state)
{
    server_t *s = *state;
    uv_loop_t loop;
    weir_redis_t *redis;
    sub_env_t se;
    memset(&se, 0, sizeof(se));
    char url[64];

    snprintf(s->password, sizeof(s->password), "pw");
    server_start(s);
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", s->port);
    weir_redis_options_t opts = {.url = url, .pool_size = 1, .timeout_ms = 1000, .backoff_min_ms = 20, .backoff_max_ms = 100};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(weir_redis_create(&opts, &redis), 0);
    weir_redis_subscriber_t *sub = weir_redis_subscriber_start(redis, &loop, "c", on_message, on_sub_state, &se);
    assert_true(run_until(&loop, sub_is_down, &se, 5000));
    assert_int_equal(se.states.ups, 0);
    weir_redis_subscriber_stop(sub);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    weir_redis_destroy(redis);
    assert_int_equal(uv_loop_close(&loop), 0);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_parse_url), cmocka_unit_test(test_parse_url_refuses_nul_and_repeats),
                cmocka_unit_test(test_script_sha1),
                cmocka_unit_test_setup_teardown(test_commands_and_state, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_first_attempt_fails_is_told, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_scripts_loaded_and_reloaded, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_deadline_and_late_reply, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_stop_flush_sends_pending, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_subscriber, setup_server, teardown_server),
                cmocka_unit_test_setup_teardown(test_subscriber_wrong_password, setup_server, teardown_server))
