/**
 * @file control.h
 * The control socket: a unix socket on which the running server takes one command per connection ("reload") and
 * answers with its verdict, so that `weir -s reload` (systemd's ExecReload) can wait for the outcome of a reload and
 * report it, which a signal cannot do.
 *
 * The protocol is one line each way: the client sends "reload\n"; the server answers "ok ...\n", or "error\n"
 * followed by one line per error, then closes.
 */
#ifndef WEIR_CONTROL_H
#define WEIR_CONTROL_H

#include <stdio.h>
#include <uv.h>

typedef struct st_weir_control_t weir_control_t;

/** Runs @p command (without its newline) and @return the answer (malloc'd, freed by the caller). */
typedef char *(*weir_control_cb)(const char *command, void *data);

/**
 * Listens on @p path (a stale socket file left by a process that is gone is replaced; the socket is made readable and
 * writable by its owner only). @return 0 with *out set, or a negative errno (logged).
 */
int weir_control_start(uv_loop_t *loop, const char *path, weir_control_cb cb, void *data, weir_control_t **out);

/** Stops listening, removes the socket file; the memory is freed once the loop has closed the handles. */
void weir_control_stop(weir_control_t *control);

/**
 * Client side: sends @p command to the server listening on @p path and copies its answer to @p out, waiting at most
 * @p timeout_ms. @return 0 when the answer is "ok", 1 when it is an error, or a negative errno when no answer came
 * (message on @p out).
 */
int weir_control_request(const char *path, const char *command, FILE *out, int timeout_ms);

#endif
