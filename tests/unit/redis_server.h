/**
 * @file redis_server.h
 * For unit tests: a redis-server of the test's own, started on a free port (in a temporary directory, without
 * persistence; optionally with a unix socket and a password) and stopped by pid, a blocking client to look at it, and
 * a way to run a private loop until a condition holds.
 */
#ifndef WEIR_TESTS_REDIS_SERVER_H
#define WEIR_TESTS_REDIS_SERVER_H

#include <sys/types.h>
#include <uv.h>
#include <hiredis/hiredis.h>

/** A redis-server; set sock (a path) or password before server_start to have them. */
typedef struct {
    pid_t pid;
    int port;
    char dir[96];
    char sock[128];
    char password[32];
} server_t;

/** A TCP port of 127.0.0.1 that was free a moment ago. */
int free_port(void);
/** The major version of the installed redis-server. */
int redis_major_version(void);
/** A blocking connection to @p s (authenticated when it has a password). */
redisContext *client_connect(server_t *s);
/** Starts the server and waits until it answers PING; fails the test otherwise. */
void server_start(server_t *s);
/** SIGKILL, as a crash would; the port is free again when this returns. */
void server_kill(server_t *s);
/** cmocka setup: a server_t with a temporary directory and a free port, not started. */
int setup_server(void **state);
/** cmocka teardown: kills the server and removes its directory. */
int teardown_server(void **state);
/** Sends a command on a new blocking connection and returns the reply (freeReplyObject it). */
redisReply *client_cmd(server_t *s, const char *fmt, ...);
/** Sends DEBUG SLEEP without waiting for the reply; redisFree the connection later. */
redisContext *client_sleep(server_t *s, const char *seconds);
/** Runs @p loop until pred(arg) is true (returns 1) or @p timeout_ms of loop time have passed (returns 0). */
int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, uint64_t timeout_ms);

#endif
