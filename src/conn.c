/*
 * Connection records, the HTTP/1 guard in front of h2o's parser, and the write watch (see conn.h).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/conn.h"
#include "weir/metrics.h"
#include "weir/respond.h"

enum {
    GUARD_UNKNOWN, /* h2o has not said what the connection speaks yet (TLS handshake) */
    GUARD_HTTP1,   /* HTTP/1: h2o's reads go through the guard */
    GUARD_OFF,     /* HTTP/2 (or the guard passed the stream on): h2o alone */
    GUARD_REJECTED /* a request was rejected: everything the client sends now is dropped */
};

/* Connections closed for exceeding the reset budget are logged at most this often per worker (with a count). */
#define RESET_LOG_INTERVAL_MS 5000

/* h2o's HTTP/1 read callback (static in libh2o), learnt from the first HTTP/1 connection. */
static h2o_socket_cb http1_read_cb;
static __thread weir_conn_registry_t *current;
/* The HTTP/2 connection whose input h2o is reading now (frames are decoded inside its read callback), or NULL. */
static __thread weir_conn_t *reading;

static const char REJECTED_REQUEST[] = "GET " WEIR_CONN_REJECTED_PATH " HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n";

/* ---- metrics ------------------------------------------------------------------------------------------------- */

/* A connection is counted as accepted once, when its protocol is settled: HTTP/2 when h2o takes it as HTTP/2 (ALPN h2,
 * the h2c preface), HTTP/1 once it has sent the head of an HTTP/1 request (until then an HTTP/1 connection may still
 * turn out to be h2c with prior knowledge); one that closes before either is counted as "none". A connection that
 * upgrades (Upgrade: h2c) stays accepted as HTTP/1 and is open as HTTP/2 from then on. */
enum { PROTOCOL_NONE, PROTOCOL_HTTP1, PROTOCOL_HTTP2 };

static weir_metric_t *conns_open[3], *conns_accepted[3];
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void init_metrics(void)
{
    static const char *const LABELS[] = {"none", "HTTP/1", "HTTP/2"};
    weir_metrics_t *reg = weir_metrics_default();
    for (int i = 0; i != 3; ++i) {
        conns_open[i] = weir_metrics_gauge(reg, "weir_connections_open",
                                           "Client connections open, by protocol (none: not settled yet, as during a TLS "
                                           "handshake or before a first request)",
                                           "protocol", LABELS[i]);
        conns_accepted[i] = weir_metrics_counter(reg, "weir_connections_accepted_total",
                                                 "Client connections accepted, by protocol, counted once the protocol is settled "
                                                 "(none: closed before it was)",
                                                 "protocol", LABELS[i]);
    }
}

static void set_protocol(weir_conn_t *conn, int protocol)
{
    if (conn->protocol == protocol)
        return;
    weir_metric_gauge_add(conns_open[conn->protocol], -1);
    weir_metric_gauge_add(conns_open[protocol], 1);
    if (conn->protocol == PROTOCOL_NONE)
        weir_metric_inc(conns_accepted[protocol]);
    conn->protocol = protocol;
}

/* After the guard has seen bytes of an HTTP/1 connection: HTTP/1 for good once it released a request head (or rejected
 * one). */
static void settle_http1(weir_conn_t *conn)
{
    if (conn->protocol == PROTOCOL_NONE &&
        (conn->guard_mode == GUARD_REJECTED || (conn->guard_mode == GUARD_HTTP1 && conn->guard.released != 0)))
        set_protocol(conn, PROTOCOL_HTTP1);
}

/* ---- socket -> record ------------------------------------------------------------------------------------------ */

static size_t hash_ptr(const void *p, size_t mask)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return (size_t)x & mask;
}

static void map_insert(weir_conn_registry_t *reg, weir_conn_t *conn);

static void map_grow(weir_conn_registry_t *reg)
{
    weir_conn_t **old = reg->map.slots;
    size_t old_capacity = reg->map.capacity;

    reg->map.capacity = old_capacity == 0 ? 64 : old_capacity * 2;
    reg->map.slots = weir_calloc(reg->map.capacity, sizeof(reg->map.slots[0]));
    reg->map.size = 0;
    for (size_t i = 0; i != old_capacity; ++i)
        if (old[i] != NULL)
            map_insert(reg, old[i]);
    free(old);
}

static void map_insert(weir_conn_registry_t *reg, weir_conn_t *conn)
{
    if ((reg->map.size + 1) * 2 > reg->map.capacity)
        map_grow(reg);
    size_t mask = reg->map.capacity - 1, i = hash_ptr(conn->sock, mask);
    while (reg->map.slots[i] != NULL)
        i = (i + 1) & mask;
    reg->map.slots[i] = conn;
    ++reg->map.size;
}

static weir_conn_t *map_find(weir_conn_registry_t *reg, const h2o_socket_t *sock)
{
    if (reg == NULL || reg->map.capacity == 0)
        return NULL;
    size_t mask = reg->map.capacity - 1;
    for (size_t i = hash_ptr(sock, mask);; i = (i + 1) & mask) {
        weir_conn_t *c = reg->map.slots[i];
        if (c == NULL)
            return NULL;
        if (c->sock == sock)
            return c;
    }
}

/* Linear probing with backward-shift deletion: no tombstones. */
static void map_remove(weir_conn_registry_t *reg, weir_conn_t *conn)
{
    size_t mask = reg->map.capacity - 1, i = hash_ptr(conn->sock, mask);
    while (reg->map.slots[i] != conn) {
        assert(reg->map.slots[i] != NULL);
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; reg->map.slots[j] != NULL; j = (j + 1) & mask) {
        size_t home = hash_ptr(reg->map.slots[j]->sock, mask);
        /* the entry at j may move to the hole at i when its home is not cyclically within (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            reg->map.slots[i] = reg->map.slots[j];
            i = j;
        }
    }
    reg->map.slots[i] = NULL;
    --reg->map.size;
}

/* ---- registry -------------------------------------------------------------------------------------------------- */

void weir_conn_registry_init(weir_conn_registry_t *reg, uv_loop_t *loop, uint64_t max_body, weir_conn_closed_cb on_closed)
{
    pthread_once(&metrics_once, init_metrics);
    memset(reg, 0, sizeof(*reg));
    reg->loop = loop;
    reg->max_body = max_body;
    reg->reset_budget = WEIR_CONN_DEFAULT_RESET_BUDGET;
    reg->on_closed = on_closed;
    h2o_linklist_init_anchor(&reg->conns);
    h2o_linklist_init_anchor(&reg->busy);
}

void weir_conn_registry_dispose(weir_conn_registry_t *reg)
{
    assert(reg->num_conns == 0);
    free(reg->map.slots);
    if (current == reg)
        current = NULL;
    memset(reg, 0, sizeof(*reg));
}

void weir_conn_registry_set_max_body(weir_conn_registry_t *reg, uint64_t max_body)
{
    reg->max_body = max_body;
}

void weir_conn_registry_set_reset_budget(weir_conn_registry_t *reg, uint32_t per_second)
{
    reg->reset_budget = per_second;
}

void weir_conn_registry_set_current(weir_conn_registry_t *reg)
{
    current = reg;
}

/* Bytes written to the socket that its peer has not acknowledged yet (the kernel's send queue). */
static size_t unacked_output(weir_conn_t *conn)
{
    int n = 0, fd = h2o_socket_get_fd(conn->sock);
    if (fd < 0 || conn->handle.stream.type != UV_TCP || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0)
        return 0;
    return (size_t)n;
}

/* A connection is busy while answers are started, a write is in flight, or the kernel still holds what weir wrote:
 * the write timeout watches it for progress. */
static void set_busy(weir_conn_t *conn)
{
    int busy = conn->answers != 0 || conn->writing || conn->unacked != 0;
    if (busy && !h2o_linklist_is_linked(&conn->busy_link)) {
        conn->busy_since = uv_now(conn->registry->loop);
        h2o_linklist_insert(&conn->registry->busy, &conn->busy_link);
    } else if (!busy && h2o_linklist_is_linked(&conn->busy_link)) {
        h2o_linklist_unlink(&conn->busy_link);
    }
}

static void on_handle_closed(uv_handle_t *handle)
{
    weir_conn_t *conn = (weir_conn_t *)handle;
    weir_conn_registry_t *reg = conn->registry;

    map_remove(reg, conn);
    h2o_linklist_unlink(&conn->link);
    if (h2o_linklist_is_linked(&conn->busy_link))
        h2o_linklist_unlink(&conn->busy_link);
    if (conn->held != NULL)
        h2o_buffer_dispose(&conn->held);
    --reg->num_conns;
    weir_metric_gauge_add(conns_open[conn->protocol], -1);
    if (conn->protocol == PROTOCOL_NONE)
        weir_metric_inc(conns_accepted[PROTOCOL_NONE]);
    if (reg->on_closed != NULL)
        reg->on_closed(reg, conn);
    free(conn);
}

static weir_conn_t *create_record(weir_conn_registry_t *reg, void *owner)
{
    weir_conn_t *conn = weir_calloc(1, sizeof(*conn));
    conn->registry = reg;
    conn->owner = owner;
    weir_http1_guard_init(&conn->guard, reg->max_body);
    return conn;
}

static void attach(weir_conn_registry_t *reg, weir_conn_t *conn)
{
    conn->sock = h2o_uv_socket_create(&conn->handle.stream, on_handle_closed);
    map_insert(reg, conn);
    h2o_linklist_insert(&reg->conns, &conn->link);
    ++reg->num_conns;
    weir_metric_gauge_add(conns_open[PROTOCOL_NONE], 1);
}

static void free_unattached(uv_handle_t *handle)
{
    free(handle);
}

weir_conn_t *weir_conn_open_tcp(weir_conn_registry_t *reg, int fd, void *owner, int *err)
{
    weir_conn_t *conn = create_record(reg, owner);

    uv_tcp_init(reg->loop, &conn->handle.tcp);
    if ((*err = uv_tcp_open(&conn->handle.tcp, fd)) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&conn->handle, free_unattached);
        return NULL;
    }
    uv_tcp_nodelay(&conn->handle.tcp, 1);
    attach(reg, conn);
    return conn;
}

weir_conn_t *weir_conn_open_unix(weir_conn_registry_t *reg, int fd, void *owner, int *err)
{
    weir_conn_t *conn = create_record(reg, owner);

    uv_pipe_init(reg->loop, &conn->handle.pipe, 0);
    if ((*err = uv_pipe_open(&conn->handle.pipe, fd)) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&conn->handle, free_unattached);
        return NULL;
    }
    attach(reg, conn);
    return conn;
}

weir_conn_t *weir_conn_of_req(h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    return sock != NULL ? map_find(current, sock) : NULL;
}

size_t weir_conn_pending_input(weir_conn_t *conn)
{
    int n = 0;
    int fd = h2o_socket_get_fd(conn->sock);
    if (fd < 0 || ioctl(fd, FIONREAD, &n) != 0 || n < 0)
        n = 0;
    return (size_t)n + (conn->held != NULL ? conn->held->size : 0);
}

void weir_conn_abort(weir_conn_t *conn)
{
    int fd = h2o_socket_get_fd(conn->sock);
    if (fd >= 0) {
        /* A reset rather than a FIN: the kernel drops what the client never read instead of keeping it. Reading and
         * writing then fail, and h2o closes the connection on its own error path. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        shutdown(fd, SHUT_RDWR);
    }
}

/* ---- answers and writes ---------------------------------------------------------------------------------------- */

typedef struct st_answer_t {
    weir_conn_t *conn;
} answer_t;

static void on_answer_disposed(void *_answer)
{
    answer_t *answer = _answer;
    /* The request pool is cleared when h2o disposes of the request, which is before the connection is closed (the
     * record outlives every request of its connection). */
    weir_conn_t *conn = answer->conn;
    assert(conn->answers != 0);
    --conn->answers;
    set_busy(conn);
}

void weir_conn_answer_started(h2o_req_t *req)
{
    weir_conn_t *conn = weir_conn_of_req(req);
    if (conn == NULL)
        return;
    answer_t *answer = h2o_mem_alloc_shared(&req->pool, sizeof(*answer), on_answer_disposed);
    answer->conn = conn;
    ++conn->answers;
    set_busy(conn);
}

static void on_write_done(uv_write_t *wreq, int status)
{
    weir_conn_t *conn = (weir_conn_t *)wreq->handle;
    uv_write_cb cb = conn->write_cb;

    conn->writing = 0;
    conn->busy_since = uv_now(conn->registry->loop);
    conn->unacked = status == 0 ? unacked_output(conn) : 0;
    set_busy(conn);
    cb(wreq, status);
}

uv_write_cb weir__conn_write_start(uv_stream_t *stream, uv_write_cb cb)
{
    weir_conn_t *conn = stream->data != NULL ? map_find(current, stream->data) : NULL;
    if (conn == NULL || &conn->handle.stream != stream || cb == NULL || conn->writing)
        return cb;
    conn->write_cb = cb;
    conn->writing = 1;
    set_busy(conn);
    return on_write_done;
}

/* Whether the peer of an HTTP/1 connection has closed or reset it: nothing to read and an end of stream, or an error.
 * Bytes waiting (a pipelined request) mean it has not. */
static int peer_gone(weir_conn_t *conn)
{
    char c;
    int fd = h2o_socket_get_fd(conn->sock);
    if (fd < 0)
        return 0;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/*
 * h2o 2.2.5 does not read an HTTP/1 connection while it handles its request, so it does not see a client that has gone
 * until it writes the answer: a queued /calc sum would still be computed, an upload would keep its place in the queue
 * until its turn, and the descriptor would stay open meanwhile. Such a connection (cleartext, h2o not reading it, no
 * answer being written) whose peer has closed is handed to h2o's own reader with the error a read would have given:
 * h2o closes it and disposes of its request, whose destructor cancels the work (as a reset does on HTTP/2).
 */
static size_t close_gone_http1(weir_conn_registry_t *reg)
{
    size_t closed = 0;
    for (h2o_linklist_t *l = reg->conns.next; l != &reg->conns; l = l->next) {
        weir_conn_t *conn = H2O_STRUCT_FROM_MEMBER(weir_conn_t, link, l);
        if (conn->guard_mode != GUARD_HTTP1 || conn->is_http2 || conn->read_cb == NULL || conn->sock->ssl != NULL ||
            conn->sock->_cb.read != NULL || conn->writing || conn->answers != 0 || conn->gone)
            continue;
        if (peer_gone(conn)) {
            /* the record is freed by libuv's close callback, later: the list stays valid */
            conn->gone = 1;
            conn->read_cb(conn->sock, h2o_socket_error_closed);
            ++closed;
        }
    }
    return closed;
}

size_t weir_conn_registry_sweep(weir_conn_registry_t *reg, uint64_t write_timeout_ms)
{
    uint64_t now = uv_now(reg->loop);
    size_t aborted = 0;

    reg->gone_closed += close_gone_http1(reg);

    for (h2o_linklist_t *l = reg->busy.next; l != &reg->busy;) {
        weir_conn_t *conn = H2O_STRUCT_FROM_MEMBER(weir_conn_t, busy_link, l);
        l = l->next;
        /* A long write in flight progresses as libuv's queue shrinks, without completing; what was written progresses
         * as the peer acknowledges it. */
        size_t queued = conn->handle.stream.write_queue_size, unacked = conn->unacked != 0 ? unacked_output(conn) : 0;
        if (queued < conn->last_queue_size || unacked < conn->unacked)
            conn->busy_since = now;
        conn->last_queue_size = queued;
        conn->unacked = unacked;
        set_busy(conn);
        if (!h2o_linklist_is_linked(&conn->busy_link))
            continue;
        if (now - conn->busy_since >= write_timeout_ms) {
            weir_conn_abort(conn);
            conn->busy_since = now; /* aborted once; h2o closes it on its next read or write */
            ++aborted;
        }
    }
    return aborted;
}

/* ---- the HTTP/1 guard ------------------------------------------------------------------------------------------ */

/* Appends @p len bytes to @p buf (h2o's input, or the held bytes). */
static void buffer_append(h2o_buffer_t **buf, const void *src, size_t len)
{
    if (len == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(buf, len);
    memcpy(dst.base, src, len);
    (*buf)->size += len;
}

/* The request the guard rejected becomes a request for WEIR_CONN_REJECTED_PATH, answered by weir_conn_respond_rejected;
 * whatever the client sends from now on is dropped. */
static void reject(weir_conn_t *conn)
{
    h2o_buffer_t **input = &conn->sock->input;

    conn->guard_mode = GUARD_REJECTED;
    if (conn->held != NULL)
        h2o_buffer_consume(&conn->held, conn->held->size);
    buffer_append(input, REJECTED_REQUEST, sizeof(REJECTED_REQUEST) - 1);
}

/*
 * Validates the @p n bytes that h2o has just appended to its socket's input, and leaves in the input only what the
 * guard released: h2o's input then ends with released bytes, and the record holds the bytes after them.
 */
static void guard_new_bytes(weir_conn_t *conn, size_t n)
{
    h2o_buffer_t **input = &conn->sock->input;
    weir_http1_guard_t *g = &conn->guard;

    if (n > (*input)->size)
        n = (*input)->size;
    if (conn->guard_mode == GUARD_REJECTED) {
        (*input)->size -= n;
        return;
    }
    const char *bytes = (*input)->bytes + (*input)->size - n;
    size_t held = conn->held != NULL ? conn->held->size : 0;

    if (held == 0) {
        /* Usually whole requests arrive: validated where they are, nothing is copied. */
        uint64_t start = g->offset;
        weir_http1_guard_status_t st = weir_http1_guard_feed(g, bytes, n);
        switch (st) {
        case WEIR_HTTP1_GUARD_PASS:
            conn->guard_mode = GUARD_OFF;
            return;
        case WEIR_HTTP1_GUARD_ERROR:
            (*input)->size -= (size_t)(start + n - g->released);
            reject(conn);
            return;
        default:
            break;
        }
        size_t keep = (size_t)(start + n - g->released);
        if (keep != 0) {
            if (conn->held == NULL)
                h2o_buffer_init(&conn->held, &h2o_socket_buffer_prototype);
            buffer_append(&conn->held, (*input)->bytes + (*input)->size - keep, keep);
            (*input)->size -= keep;
        }
        return;
    }

    /* Some bytes are held already: the new ones join them, and what the guard releases goes to h2o, in order. */
    uint64_t held_start = g->released; /* stream offset of the first held byte */
    buffer_append(&conn->held, bytes, n);
    (*input)->size -= n;
    weir_http1_guard_status_t st = weir_http1_guard_feed(g, conn->held->bytes + held, n);
    size_t release = (size_t)(g->released - held_start);
    buffer_append(input, conn->held->bytes, release);
    h2o_buffer_consume(&conn->held, release);
    if (st == WEIR_HTTP1_GUARD_PASS) {
        conn->guard_mode = GUARD_OFF;
        buffer_append(input, conn->held->bytes, conn->held->size);
        h2o_buffer_consume(&conn->held, conn->held->size);
    } else if (st == WEIR_HTTP1_GUARD_ERROR) {
        reject(conn);
    }
}

static void on_guarded_read(h2o_socket_t *sock, const char *err)
{
    weir_conn_t *conn = map_find(current, sock);

    assert(conn != NULL);
    if (err == NULL && sock->bytes_read != 0 && conn->guard_mode != GUARD_OFF) {
        guard_new_bytes(conn, sock->bytes_read);
        settle_http1(conn);
    }
    conn->read_cb(sock, err);
}

/* h2o's HTTP/2 reader, with the connection marked as the one being read (for weir__conn_http2_reset_received). The
 * record is freed by libuv's close callback, never inside h2o's read callback. */
static void on_http2_read(h2o_socket_t *sock, const char *err)
{
    weir_conn_t *conn = map_find(current, sock), *prev = reading;

    assert(conn != NULL);
    reading = conn;
    conn->read_cb(sock, err);
    reading = prev;
}

h2o_socket_cb weir__conn_read_start(h2o_socket_t *sock, h2o_socket_cb cb)
{
    weir_conn_t *conn = map_find(current, sock);

    if (conn != NULL && cb != NULL && conn->is_http2) {
        /* HTTP/2 reads only h2o's frames on the connection from now on (its TLS shutdown, if any, reads nothing) */
        conn->read_cb = cb;
        return on_http2_read;
    }
    if (conn == NULL || cb == NULL || (conn->guard_mode != GUARD_HTTP1 && conn->guard_mode != GUARD_REJECTED))
        return cb;
    /* The first read libh2o starts on a connection it has just accepted as HTTP/1 is its request reader (static in
     * libh2o, so learnt here); other reads on an HTTP/1 connection (TLS shutdown) are left alone. */
    h2o_socket_cb reader = __atomic_load_n(&http1_read_cb, __ATOMIC_RELAXED);
    if (reader == NULL) {
        __atomic_store_n(&http1_read_cb, cb, __ATOMIC_RELAXED);
        reader = cb;
    }
    if (cb != reader)
        return cb;
    conn->read_cb = cb;
    return on_guarded_read;
}

void weir__conn_http1_accept(h2o_socket_t *sock)
{
    weir_conn_t *conn = map_find(current, sock);
    if (conn == NULL)
        return;
    conn->guard_mode = GUARD_HTTP1;
    /* Bytes already in the input (decoded with the end of a TLS handshake) are read by h2o as soon as it starts: they
     * are validated now. */
    if (conn->sock->input->size != 0) {
        guard_new_bytes(conn, conn->sock->input->size);
        settle_http1(conn);
    }
}

void weir__conn_http2_accept(h2o_socket_t *sock)
{
    weir_conn_t *conn = map_find(current, sock);
    /* libh2o's h2o_http2_accept parses the bytes already read (the rest of the prior-knowledge preface's read) by
     * calling its reader itself, not through the socket: the connection counts as being read until
     * weir__conn_http2_accept_end. */
    reading = conn;
    if (conn != NULL && conn->guard_mode != GUARD_REJECTED) {
        set_protocol(conn, PROTOCOL_HTTP2);
        conn->guard_mode = GUARD_OFF;
        conn->is_http2 = 1;
        if (conn->held != NULL && conn->held->size != 0) {
            buffer_append(&conn->sock->input, conn->held->bytes, conn->held->size);
            h2o_buffer_consume(&conn->held, conn->held->size);
        }
    }
}

void weir__conn_http2_accept_end(void)
{
    reading = NULL;
}

/* Logs a connection closed for its resets, at most every RESET_LOG_INTERVAL_MS per worker. */
static void log_reset_closed(weir_conn_registry_t *reg, uint64_t now, uint32_t count)
{
    ++reg->reset_closed;
    if (reg->reset_log_at != 0 && now - reg->reset_log_at < RESET_LOG_INTERVAL_MS) {
        ++reg->reset_quiet;
        return;
    }
    weir_warn("closed an HTTP/2 connection that reset %u streams within a second (http2-reset-budget %u; %zu more such "
              "connection(s) since the last message)",
              (unsigned)count, (unsigned)reg->reset_budget, reg->reset_quiet);
    reg->reset_log_at = now;
    reg->reset_quiet = 0;
}

int weir__conn_http2_reset_received(void)
{
    weir_conn_t *conn = reading;
    if (conn == NULL)
        return 0;
    weir_conn_registry_t *reg = conn->registry;
    if (conn->reset_refused)
        return -1;
    if (reg->reset_budget == 0)
        return 0;
    /* Two one-second windows, the previous one weighed by how much of it the sliding second still covers: a constant
     * amount of state, no timer. The loop's time is that of the current turn: a burst read at once counts at once. */
    uint64_t now = uv_now(reg->loop);
    if (conn->resets_cur == 0 && conn->resets_prev == 0)
        conn->resets_since = now; /* the first reset after a quiet spell starts a window */
    uint64_t elapsed = now - conn->resets_since;
    if (elapsed >= 1000) {
        conn->resets_prev = elapsed >= 2000 ? 0 : conn->resets_cur;
        conn->resets_cur = 0;
        conn->resets_since = now - elapsed % 1000;
        elapsed %= 1000;
    }
    if (conn->resets_cur != UINT32_MAX)
        ++conn->resets_cur;
    uint64_t estimate = conn->resets_cur + (uint64_t)conn->resets_prev * (1000 - elapsed) / 1000;
    if (estimate <= reg->reset_budget)
        return 0;
    conn->reset_refused = 1;
    log_reset_closed(reg, now, (uint32_t)estimate);
    return -1;
}

int weir_conn_respond_rejected(h2o_req_t *req)
{
    static const char PATH[] = WEIR_CONN_REJECTED_PATH;

    if (req->version >= 0x200 || !h2o_memis(req->path.base, req->path.len, PATH, sizeof(PATH) - 1))
        return 0;
    weir_conn_t *conn = weir_conn_of_req(req);
    if (conn == NULL || conn->guard_mode != GUARD_REJECTED)
        return 0;
    req->http1_is_persistent = 0;
    int status = conn->guard.error_status;
    weir_respond_error(req, status, weir_http1_guard_reason(status), conn->guard.error);
    return 1;
}
