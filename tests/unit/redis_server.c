/* A redis-server of the test's own (see redis_server.h). */
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
#include <unistd.h>
#include "redis_server.h"

int free_port(void)
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

int redis_major_version(void)
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

redisContext *client_connect(server_t *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = s->port != 0 ? redisConnectWithTimeout("127.0.0.1", s->port, tv) : redisConnectUnixWithTimeout(s->sock, tv);
    if (c != NULL && c->err == 0 && s->password[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        freeReplyObject(r);
    }
    return c;
}

void server_start(server_t *s)
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

void server_kill(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

int setup_server(void **state)
{
    server_t *s = calloc(1, sizeof(*s));
    weir_unit_temp_dir(s->dir, sizeof(s->dir), "weir-redis");
    s->port = free_port();
    *state = s;
    return 0;
}

int teardown_server(void **state)
{
    server_t *s = *state;
    int ret;
    server_kill(s);
    ret = weir_unit_remove_tree(s->dir);
    free(s);
    return ret;
}

/* Sends a command on a blocking client and returns the reply (freeReplyObject it). */
redisReply *client_cmd(server_t *s, const char *fmt, ...)
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
redisContext *client_sleep(server_t *s, const char *seconds)
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

static void on_tick(uv_timer_t *t)
{
}

static void on_tick_closed(uv_handle_t *h)
{
    free(h);
}

/* Runs the loop until *flag becomes non-zero (checked with pred) or the time runs out. */
int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, uint64_t timeout_ms)
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
