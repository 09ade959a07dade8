/**
 * @file conn.h
 * weir's record of every client connection of a worker thread, beside h2o's own: what the server needs to know of a
 * connection that h2o 2.2.5 does not tell (is its next request already waiting? is it reading what it is sent?), and
 * the HTTP/1 framing guard that stands in front of h2o's parser.
 *
 * - Accept: weir_conn_accept creates the libuv stream, the h2o socket and the record; the record lives until libuv's
 *   close callback, and the registry counts and lists the open ones.
 * - HTTP/1 guard (http1_guard.h): h2o reads a connection's bytes into its socket's input buffer and then calls the
 *   read callback it gave h2o_socket_read_start. weir's executable provides h2o_socket_read_start (libh2o calls it
 *   through its PLT, see src/h2o_hooks.c) and, for HTTP/1 connections, puts weir_conn's own callback in front of
 *   h2o's: new bytes are validated first, bytes the guard has not released yet are held back in the record, and a
 *   rejected request is replaced by a request for WEIR_CONN_REJECTED_PATH, which the server's first handler on every
 *   path (weir_conn_respond_rejected) answers with the guard's status and reason before the connection closes. h2o
 *   never parses a byte of a rejected request, nor anything the client sent after it.
 * - Writes: weir's uv_write (src/uv_write_fix.c) tells the record when a write completes; answers started and not yet
 *   delivered are counted per connection (weir_conn_answer_started), so that weir_conn_registry_sweep can close a
 *   connection whose client reads nothing for the write timeout, which h2o 2.2.5 does not have.
 * - HTTP/2 reset budget (CVE-2023-44487, "Rapid Reset", which libh2o 2.2.5 does not mitigate): h2o's reads of an HTTP/2
 *   connection go through weir's callback, which marks the connection being read; libh2o decodes every RST_STREAM
 *   frame through its PLT (src/h2o_hooks.c), and weir counts the frames of the connection over a sliding second. A
 *   client that resets more streams per second than the registry's budget gets its RST_STREAM refused as a connection
 *   error: h2o sends GOAWAY (ENHANCE_YOUR_CALM) and closes the connection, stopping at that frame.
 *
 * Everything here runs on the worker's loop thread; a registry belongs to one loop.
 */
#ifndef WEIR_CONN_H
#define WEIR_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include "weir/http1_guard.h"

/** The default of http2-reset-budget: RST_STREAM frames per second one HTTP/2 connection may send. */
#define WEIR_CONN_DEFAULT_RESET_BUDGET 200

/** The path of the request that stands for a rejected one (only ever answered on a connection that the guard rejected). */
#define WEIR_CONN_REJECTED_PATH "/.weir/rejected"

typedef struct st_weir_conn_registry_t weir_conn_registry_t;
typedef struct st_weir_conn_t weir_conn_t;

/** Called when a connection's record is freed (its socket is closed). */
typedef void (*weir_conn_closed_cb)(weir_conn_registry_t *reg, weir_conn_t *conn);

/** A connection. Fields are private unless noted. */
struct st_weir_conn_t {
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } handle; /* first: h2o's socket wraps it; the record is freed in its close callback */
    weir_conn_registry_t *registry;
    h2o_socket_t *sock; /**< read-only */
    void *owner;        /**< the server's own pointer (for weir: the configuration generation that accepted it) */
    h2o_linklist_t link;
    /* HTTP/1 guard */
    int guard_mode;
    h2o_socket_cb read_cb; /* h2o's own read callback, behind weir's */
    weir_http1_guard_t guard;
    h2o_buffer_t *held; /* bytes read and not released by the guard yet */
    /* writes and answers */
    h2o_linklist_t busy_link; /* in the registry's busy list while answers or a write are pending */
    uv_write_cb write_cb;     /* h2o's own write callback, behind weir's */
    uint64_t busy_since;      /* loop time of the last progress while busy */
    size_t last_queue_size;   /* libuv's write queue at the last sweep */
    size_t unacked;           /* the kernel's send queue when last looked at */
    unsigned answers;         /* answers started and not yet delivered (their requests not disposed) */
    int writing;
    int protocol; /* what it is counted as in the connection metrics: not known yet, HTTP/1, HTTP/2 */
    int gone; /* HTTP/1: the peer left while h2o was handling its request; handed to h2o to be closed */
    /* HTTP/2: RST_STREAM frames from the client, counted in one-second windows */
    int is_http2;
    int reset_refused;     /* the budget was exceeded: the connection is being closed */
    uint64_t resets_since; /* loop time at which the current window began */
    uint32_t resets_prev;  /* frames of the previous window */
    uint32_t resets_cur;   /* frames of the current window */
};

/** The connections of one worker thread. Fields are private unless noted. */
struct st_weir_conn_registry_t {
    uv_loop_t *loop;
    h2o_linklist_t conns;
    h2o_linklist_t busy;
    size_t num_conns;      /**< read-only: open connections */
    uint64_t max_body;     /**< limit-request-body, for the guards of new connections */
    uint32_t reset_budget; /**< http2-reset-budget: RST_STREAM frames per second allowed per connection (0: no limit) */
    uint64_t reset_log_at; /* loop time of the last message about a connection closed for its resets */
    size_t reset_quiet;    /* such connections not logged since */
    size_t reset_closed;   /**< read-only: connections closed for exceeding the reset budget, since the start */
    size_t gone_closed;    /**< read-only: HTTP/1 connections closed by weir_conn_registry_sweep because their client
                                left while its request was being handled */
    weir_conn_closed_cb on_closed;
    struct {
        weir_conn_t **slots;
        size_t capacity;
        size_t size;
    } map; /* h2o socket -> record */
};

/** Initialises @p reg on @p loop; @p on_closed (may be NULL) is told of every record freed. Call on the loop's thread. */
void weir_conn_registry_init(weir_conn_registry_t *reg, uv_loop_t *loop, uint64_t max_body, weir_conn_closed_cb on_closed);

/** Frees what @p reg holds; every connection must have been closed (and the loop run until their records were freed). */
void weir_conn_registry_dispose(weir_conn_registry_t *reg);

/** The body limit of the guards of connections opened from now on (a reload may change limit-request-body). */
void weir_conn_registry_set_max_body(weir_conn_registry_t *reg, uint64_t max_body);

/**
 * The HTTP/2 reset budget of @p reg's connections (from now on, also those open): a connection whose client sends
 * more than @p per_second RST_STREAM frames within a sliding second is closed with GOAWAY (ENHANCE_YOUR_CALM).
 * 0 sets no limit. The registry starts with WEIR_CONN_DEFAULT_RESET_BUDGET.
 */
void weir_conn_registry_set_reset_budget(weir_conn_registry_t *reg, uint32_t per_second);

/**
 * Makes @p reg the registry of the calling thread, which libh2o's hooks consult (NULL: none; connections of no
 * registry are left to h2o alone). Call on the loop's thread before accepting.
 */
void weir_conn_registry_set_current(weir_conn_registry_t *reg);

/**
 * Takes the accepted TCP connection @p fd (non-blocking) and creates its record and its h2o socket; the caller hands
 * the socket to h2o (h2o_accept). The record owns the descriptor from now on, whatever the outcome.
 * @return the record, or NULL (@p err set to the libuv error; the descriptor is closed).
 */
weir_conn_t *weir_conn_open_tcp(weir_conn_registry_t *reg, int fd, void *owner, int *err);

/** As weir_conn_open_tcp for a connected unix socket (a socket pair, in tests and fuzzers). */
weir_conn_t *weir_conn_open_unix(weir_conn_registry_t *reg, int fd, void *owner, int *err);

/** The record of the connection that carries @p req, or NULL (a connection of no registry). */
weir_conn_t *weir_conn_of_req(h2o_req_t *req);

/**
 * The server's first handler on every path calls this. When @p req stands for a request the guard rejected, answers it
 * (the guard's status, `{"error": REASON}`, connection closed after) and @return 1; otherwise @return 0.
 */
int weir_conn_respond_rejected(h2o_req_t *req);

/** Bytes the kernel holds for the connection that nobody has read yet, plus those the guard holds back. */
size_t weir_conn_pending_input(weir_conn_t *conn);

/**
 * Closes the connection now, with a reset (nothing more is sent or read), through h2o's own error path: h2o disposes
 * its requests and the record is freed by the close callback.
 */
void weir_conn_abort(weir_conn_t *conn);

/**
 * Tells @p req's connection that an answer has started; the count goes down when the request is disposed (its pool
 * is cleared). Between the two the write timeout watches the connection.
 */
void weir_conn_answer_started(h2o_req_t *req);

/**
 * Aborts the connections that are busy (answers started, or a write in flight) and have made no progress for
 * @p write_timeout_ms of loop time. Also closes the cleartext HTTP/1 connections whose client has closed or reset
 * them while h2o handles their request (h2o 2.2.5 reads nothing then, and would only notice when it answers), so that
 * the request is disposed of and its work cancelled (counted in gone_closed). Call about once a second.
 * @return how many were aborted for the write timeout.
 */
size_t weir_conn_registry_sweep(weir_conn_registry_t *reg, uint64_t write_timeout_ms);

/* ---- for src/h2o_hooks.c and src/uv_write_fix.c (the executable's overrides of libh2o and libuv calls) ---------- */

/** Called by the h2o_socket_read_start override: @return the callback to give libh2o (@p cb, or weir's in front). */
h2o_socket_cb weir__conn_read_start(h2o_socket_t *sock, h2o_socket_cb cb);
/** Called by the h2o_http1_accept override, before libh2o's. */
void weir__conn_http1_accept(h2o_socket_t *sock);
/**
 * Called by the h2o_http2_accept and h2o_http2_handle_upgrade overrides, before libh2o's; the connection counts as the
 * one being read until weir__conn_http2_accept_end, which they call after libh2o's.
 */
void weir__conn_http2_accept(h2o_socket_t *sock);
/** See weir__conn_http2_accept. */
void weir__conn_http2_accept_end(void);
/**
 * Called by the h2o_http2_decode_rst_stream_payload override for every RST_STREAM frame libh2o has decoded, while it
 * reads a connection. @return 0 to let h2o reset the stream, -1 when the connection has exceeded its reset budget (the
 * override then fails the frame with ENHANCE_YOUR_CALM, and h2o closes the connection).
 */
int weir__conn_http2_reset_received(void);
/** Called by the uv_write override: @return the callback to give libuv (@p cb, or weir's in front). */
uv_write_cb weir__conn_write_start(uv_stream_t *stream, uv_write_cb cb);

#endif
