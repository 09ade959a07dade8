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

/* ---- a redis-server of our own -------------------------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int port;
    char dir[64];
    char sock[128];
    char password[32];
} server_t;

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int redis_major_version(void)
{
    static int major = -1;
    if (major < 0) {
        FILE *p = popen("redis-server --version", "r");
        char line[256] = "";
        assert_non_null(p);
        if (fgets(line, sizeof(line), p) == NULL)
            line[0] = '\0';
        pclose(p);
        const char *v = strstr(line, "v=");
        major = v != NULL ? atoi(v + 2) : 0;
    }
    return major;
}

static redisContext *client_connect(server_t *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = s->port != 0 ? redisConnectWithTimeout("127.0.0.1", s->port, tv) : redisConnectUnixWithTimeout(s->sock, tv);
    if (c != NULL && c->err == 0 && s->password[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        freeReplyObject(r);
    }
    return c;
}

static void server_start(server_t *s)
{
    char port[16];
    const char *argv[24];
    int argc = 0;

    snprintf(port, sizeof(port), "%d", s->port);
    argv[argc++] = "redis-server";
    argv[argc++] = "--port";
    argv[argc++] = port;
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = s->dir;
    if (redis_major_version() >= 7) {
        argv[argc++] = "--enable-debug-command";
        argv[argc++] = "local";
    }
    if (s->sock[0] != '\0') {
        argv[argc++] = "--unixsocket";
        argv[argc++] = s->sock;
    }
    if (s->password[0] != '\0') {
        argv[argc++] = "--requirepass";
        argv[argc++] = s->password;
    }
    argv[argc] = NULL;

    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
        redisContext *c = client_connect(s);
        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return;
        } else if (c != NULL) {
            redisFree(c);
        }
        assert_int_equal(waitpid(s->pid, NULL, WNOHANG), 0); /* still running */
        usleep(10000);
    }
    fail_msg("redis-server did not start on port %d", s->port);
}

static void server_kill(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static int setup_server(void **state)
{
    server_t *s = calloc(1, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/weir-redis-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        return -1;
    s->port = free_port();
    *state = s;
    return 0;
}

static int teardown_server(void **state)
{
    server_t *s = *state;
    char cmd[128];
    server_kill(s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        return -1;
    free(s);
    return 0;
}

/* Sends a command on a blocking client and returns the reply (freeReplyObject it). */
static redisReply *client_cmd(server_t *s, const char *fmt, ...)
{
    redisContext *c = client_connect(s);
    va_list args;
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    va_start(args, fmt);
    redisReply *r = redisvCommand(c, fmt, args);
    va_end(args);
    redisFree(c);
    assert_non_null(r);
    return r;
}

/* Sends DEBUG SLEEP without waiting for the reply; the connection is closed by the caller later. */
static redisContext *client_sleep(server_t *s, const char *seconds)
{
    redisContext *c = client_connect(s);
    int done = 0;
    assert_non_null(c);
    assert_int_equal(redisAppendCommand(c, "DEBUG SLEEP %s", seconds), REDIS_OK);
    while (!done)
        assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
    usleep(50000); /* let the server start sleeping */
    return c;
}

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

static void on_tick(uv_timer_t *t)
{
}

static void on_tick_closed(uv_handle_t *h)
{
    free(h);
}

/* Runs the loop until *flag becomes non-zero (checked with pred) or the time runs out. */
static int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, uint64_t timeout_ms)
{
    uv_timer_t *tick = malloc(sizeof(*tick));
    uv_timer_init(loop, tick);
    uv_timer_start(tick, on_tick, 5, 5);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    int ok;
    while (!(ok = pred(arg)) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)tick, on_tick_closed);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
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
    weir_cache_redis_target_t t;
    char err[160];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        err[0] = '\0';
        assert_int_equal(weir_cache_redis_parse_url(bad[i], &t, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
        assert_null(t.username);
        assert_null(t.password);
    }
    /* still fine: an encoded byte that is not NUL, and '+' kept in redis:// but a space in a unix: query */
    assert_int_equal(weir_cache_redis_parse_url("redis://u%01:p+w@host", &t, err, sizeof(err)), 0);
    assert_string_equal(t.username, "u\x01");
    assert_string_equal(t.password, "p+w");
    weir_cache_redis_target_dispose(&t);
    assert_int_equal(weir_cache_redis_parse_url("unix:/s?password=p+w&username=u", &t, err, sizeof(err)), 0);
    assert_string_equal(t.password, "p w");
    assert_string_equal(t.username, "u");
    weir_cache_redis_target_dispose(&t);
}

static void test_parse_url(void **state)
{
    weir_cache_redis_target_t t;
    char err[160];

    assert_int_equal(weir_cache_redis_parse_url("redis://127.0.0.1:6379/0", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_null(t.password);
    weir_cache_redis_target_dispose(&t);

    assert_int_equal(weir_cache_redis_parse_url("redis://:s%40cret@cache.example:7000/5", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "cache.example");
    assert_int_equal(t.port, 7000);
    assert_int_equal(t.db, 5);
    assert_string_equal(t.password, "s@cret");
    assert_null(t.username);
    weir_cache_redis_target_dispose(&t);

    assert_int_equal(weir_cache_redis_parse_url("redis://user:pw@[::1]:6380", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6380);
    assert_string_equal(t.username, "user");
    assert_string_equal(t.password, "pw");
    weir_cache_redis_target_dispose(&t);

    assert_int_equal(weir_cache_redis_parse_url("redis://localhost", &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "localhost");
    assert_int_equal(t.port, 6379);
    weir_cache_redis_target_dispose(&t);

    assert_int_equal(weir_cache_redis_parse_url("unix:/run/redis/redis.sock", &t, err, sizeof(err)), 0);
    assert_string_equal(t.unix_path, "/run/redis/redis.sock");
    assert_null(t.host);
    weir_cache_redis_target_dispose(&t);

    assert_int_equal(weir_cache_redis_parse_url("unix:///tmp/r.sock?db=3&password=p%20w", &t, err, sizeof(err)), 0);
    assert_string_equal(t.unix_path, "/tmp/r.sock");
    assert_int_equal(t.db, 3);
    assert_string_equal(t.password, "p w");
    weir_cache_redis_target_dispose(&t);

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
        assert_int_equal(weir_cache_redis_parse_url(bad[i], &t, err, sizeof(err)), -EINVAL);
        assert_true(err[0] != '\0');
    }

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

WEIR_UNIT_TESTS(cmocka_unit_test(test_parse_url), cmocka_unit_test(test_parse_url_refuses_nul_and_repeats),
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
