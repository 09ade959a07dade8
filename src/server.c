/*
 * The server: worker threads, each with its own uv loop and, for every address it listens on, its own SO_REUSEPORT
 * socket (the kernel spreads connections evenly over them); the main thread owns the configuration, binds every
 * socket (so that a bad address fails at once, and port 0 is resolved to one port shared by all threads), then runs
 * its own loop for signals and the control socket.
 *
 * Configuration generations. A configuration, once checked, becomes a generation: its h2o configuration (hosts, paths
 * and handlers), TLS contexts and access log. Each worker runs one h2o context per live generation; new connections
 * are accepted into the newest, and a connection keeps the generation that accepted it until it closes. A reload
 * (SIGHUP, or "reload" on the control socket) builds a new generation next to the running one, binds the addresses it
 * adds, and switches every worker to it; the old generation's contexts are then drained as a shutdown would drain
 * them (HTTP/2 GOAWAY, "Connection: close" on HTTP/1, idle keep-alive connections closed once quiet) and disposed when
 * their last connection has closed, and the generation itself is freed when no worker uses it any more. Sockets whose
 * address stays are never closed (closing an SO_REUSEPORT socket resets the connections queued on it). State that
 * must outlive a generation (upload slots, memory caches, Redis connections) is shared between generations by the
 * modules themselves (see include/weir/shared.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include "weir/access_log.h"
#include "weir/common.h"
#include "weir/conn.h"
#include "weir/control.h"
#include "weir/http_client.h"
#include "weir/metrics.h"
#include "weir/notify.h"
#include "weir/respond.h"
#include "weir/server.h"
#include "weir/status.h"
#include "weir/tls.h"

#define DRAIN_TICK_MS 50
/* How long the kernel holds a connection that has sent nothing before handing it to weir anyway (TCP_DEFER_ACCEPT). */
#define DEFER_ACCEPT_SECONDS 10
/* Connections accepted per wakeup of a listener, so that one busy listener does not starve the loop's other work. */
#define ACCEPT_BATCH 64
/* After accept() fails for want of descriptors, a worker stops accepting for this long (as nginx does). */
#define EMFILE_RETRY_MS 100
/* At max-connections, a worker looks again this often (connections may close on other threads). */
#define LIMIT_RETRY_MS 20
/* Out-of-descriptor and connection-limit events are logged at most this often (with a count of those not logged). */
#define ACCEPT_LOG_INTERVAL_MS 5000
/* While draining, an HTTP/1 keep-alive connection counts as idle (and is closed) once it has been quiet for this long:
 * a client that is using its connection sends its next request sooner, and gets it answered (with "Connection:
 * close") instead of finding the connection closed under it. */
#define DRAIN_IDLE_MS 1000
/* The write timeout is checked this often. */
#define SWEEP_INTERVAL_MS 1000
/* How long the main thread waits for the workers to take a new generation. */
#define SWITCH_TIMEOUT_S 30

typedef struct st_server_t server_t;
typedef struct st_worker_t worker_t;
typedef struct st_generation_t generation_t;

/* An address weir listens on, for as long as some generation lists it: one socket per worker thread. */
typedef struct st_slot_t {
    char *key;     /* "host|port" of the configuration's entry: a reload keeps the socket of an unchanged key */
    char *where;   /* "FILE:LINE" of the entry that opened it, for messages */
    int *fds;      /* per worker: bound and listening, until the worker takes it (then -1) */
    uint16_t port; /* bound (a configured 0 resolved) */
} slot_t;

struct st_generation_t {
    server_t *server;
    unsigned id;
    weir_server_conf_t conf;
    h2o_globalconf_t globalconf;
    int globalconf_inited;
    weir_access_log_t *access_log;
    SSL_CTX **ssl_ctxs; /* per listen entry, NULL for cleartext */
    size_t *slot_of;    /* per listen entry: its index in server->slots */
    unsigned refs;      /* the server's while current, and one per worker context; under server->mutex */
    generation_t *next; /* in server->dead */
};

/* A worker's h2o context of one generation. */
typedef struct st_worker_gen_t {
    worker_t *worker;
    generation_t *gen;
    h2o_context_t ctx;
    h2o_accept_ctx_t *accept_ctxs; /* per listen entry of the generation */
    size_t num_conns;
    int draining;
    uint64_t drain_deadline;
    h2o_linklist_t link; /* in worker->old while draining, in worker->freed once disposed */
} worker_gen_t;

/* One listening socket of a worker, watched with a uv_poll_t: weir accepts itself, so that it can stop accepting
 * (out of descriptors, at max-connections) without closing the socket. */
typedef struct st_listener_t {
    uv_poll_t poll; /* freed in its close callback */
    worker_t *worker;
    h2o_accept_ctx_t *accept_ctx; /* of the generation new connections go to */
    int fd;
    int polling;
} listener_t;

enum {
    ACCEPTING,
    PAUSED_EMFILE, /* accept() ran out of descriptors */
    PAUSED_LIMIT,  /* max-connections reached */
};

struct st_worker_t {
    server_t *server;
    unsigned id;
    pthread_t tid;
    uv_loop_t loop;
    worker_gen_t *cur;      /* the generation new connections go to */
    h2o_linklist_t old;     /* older generations, draining */
    h2o_linklist_t freed;   /* disposed generations whose memory the loop may still use until its next turn */
    listener_t **listeners; /* per server slot, NULL where this worker does not listen */
    size_t num_listeners;
    uv_async_t wake; /* the main thread asks for a new generation or for shutdown through it */
    uv_timer_t drain_timer;
    uv_timer_t accept_timer; /* resumes accepting after a pause */
    uv_timer_t sweep_timer;  /* the write timeout */
    weir_conn_registry_t conns;
    uv_tcp_t probe; /* see run_worker */
    int accept_state;
    int shutting_down;
    uint64_t shutdown_deadline;
    int abandoned; /* the grace period ran out with connections still open */
};

struct st_server_t {
    const char *conf_file;
    unsigned num_threads;
    worker_t *workers;
    slot_t **slots; /* index: slot number (never reused); NULL once closed; grown by the main thread under mutex */
    size_t num_slots;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    generation_t *current; /* under mutex */
    unsigned switched;     /* workers running the current generation; under mutex */
    int shutdown;          /* under mutex */
    generation_t *dead;    /* generations no worker uses any more, to be freed by the main thread; under mutex */
    unsigned num_started;  /* workers that started (or failed to) */
    int start_error;
    unsigned next_gen_id;
    size_t max_connections;    /* atomic: a reload may change it */
    uint64_t write_timeout_ms; /* atomic: likewise */
    size_t num_connections;    /* open, over all workers (atomic) */
    uint64_t accept_log_at;    /* loop time of the last accept-pause message (atomic) */
    size_t accept_log_quiet;   /* pauses not logged since (atomic) */
    uint64_t nofile;
    /* the main thread's loop */
    uv_loop_t main_loop;
    uv_async_t main_wake; /* workers: a generation is dead, or a worker has stopped */
    uv_signal_t signals[4];
    weir_control_t *control;
    int stopping;
    int exit_signal;
    unsigned stopped; /* workers whose loop has ended; under mutex */
};

static int draining_flag; /* atomic: the process is shutting down */

int weir_server_draining(void)
{
    return __atomic_load_n(&draining_flag, __ATOMIC_RELAXED);
}

/* 404 for paths that no module serves. */
static int on_req_not_found(h2o_handler_t *self, h2o_req_t *req)
{
    weir_respond_not_found(req);
    return 0;
}

/*
 * The first handler of every path (the fallback included), in front of the module's: answers the requests that the
 * HTTP/1 framing guard rejected (conn.h), and serves absolute-form request targets ("GET http://host/path", RFC 9112
 * 3.2.2) as if they were the path they name on the host they name, which h2o 2.2.5 does not do by itself.
 */
static int on_req_guard(h2o_handler_t *self, h2o_req_t *req)
{
    if (req->version >= 0x200)
        return -1;
    if (req->path.len != 0 && req->path.base[0] == '/') {
        if (req->path.len > 7 && req->path.base[1] == '.' && weir_conn_respond_rejected(req))
            return 0;
        return -1;
    }
    h2o_url_t url;
    if (req->path.len == 0 || (req->path.len == 1 && req->path.base[0] == '*'))
        return -1;
    if (h2o_url_parse(req->path.base, req->path.len, &url) != 0 || url.path.len == 0 || url.path.base[0] != '/') {
        weir_respond_error(req, 400, "Bad Request", "malformed request target");
        return 0;
    }
    /* The target's authority chooses the host, as Host does otherwise (an unknown one: the first host). The request is
     * given the chosen host's own name, so that h2o serves it here: h2o_reprocess_request proxies a request whose
     * authority is none of its hosts, and weir is no proxy. */
    uint16_t port = h2o_url_get_port(&url);
    h2o_hostconf_t *chosen = req->conn->hosts[0];
    for (h2o_hostconf_t **hc = req->conn->hosts; *hc != NULL; ++hc) {
        h2o_iovec_t name = (*hc)->authority.host;
        if (((*hc)->authority.port == port || ((*hc)->authority.port == 65535 && port == url.scheme->default_port)) &&
            h2o_lcstris(url.host.base, url.host.len, name.base, name.len)) {
            chosen = *hc;
            break;
        }
    }
    h2o_reprocess_request(req, req->method, req->input.scheme, chosen->authority.hostport, url.path, NULL, 0);
    return 0;
}

static void add_guard(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *guard = h2o_create_handler(pathconf, sizeof(*guard));
    guard->on_req = on_req_guard;
}

/* Accepting ----------------------------------------------------------------------------------------------------- */

static void listener_poll(listener_t *l, int on);
static void on_listener_ready(uv_poll_t *poll, int status, int events);
static void on_accept_timer(uv_timer_t *timer);

static void set_accepting(worker_t *worker, int on)
{
    for (size_t i = 0; i != worker->num_listeners; ++i)
        if (worker->listeners[i] != NULL)
            listener_poll(worker->listeners[i], on);
}

static void listener_poll(listener_t *l, int on)
{
    if (on && !l->polling)
        uv_poll_start(&l->poll, UV_READABLE, on_listener_ready);
    else if (!on && l->polling)
        uv_poll_stop(&l->poll);
    l->polling = on;
}

static size_t max_connections(server_t *server)
{
    return __atomic_load_n(&server->max_connections, __ATOMIC_RELAXED);
}

/* Logs that a worker stopped accepting, at most every ACCEPT_LOG_INTERVAL_MS over the whole process. */
static void log_pause(worker_t *worker, const char *why)
{
    server_t *server = worker->server;
    uint64_t now = uv_now(&worker->loop), last = __atomic_load_n(&server->accept_log_at, __ATOMIC_RELAXED);

    if (last != 0 && now - last < ACCEPT_LOG_INTERVAL_MS) {
        __atomic_add_fetch(&server->accept_log_quiet, 1, __ATOMIC_RELAXED);
        return;
    }
    if (!__atomic_compare_exchange_n(&server->accept_log_at, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return;
    size_t quiet = __atomic_exchange_n(&server->accept_log_quiet, 0, __ATOMIC_RELAXED);
    weir_warn("%s: not accepting new connections for now (%zu open, max-connections %zu; %zu more such pause(s) since the "
              "last message)",
              why, __atomic_load_n(&server->num_connections, __ATOMIC_RELAXED), max_connections(server), quiet);
}

static void pause_accepting(worker_t *worker, int why)
{
    worker->accept_state = why;
    set_accepting(worker, 0);
    log_pause(worker, why == PAUSED_EMFILE ? "out of file descriptors" : "max-connections reached");
    uv_timer_start(&worker->accept_timer, on_accept_timer, why == PAUSED_EMFILE ? EMFILE_RETRY_MS : LIMIT_RETRY_MS, 0);
}

static void resume_accepting(worker_t *worker)
{
    if (worker->shutting_down || worker->accept_state == ACCEPTING)
        return;
    if (worker->accept_state == PAUSED_LIMIT &&
        __atomic_load_n(&worker->server->num_connections, __ATOMIC_RELAXED) >= max_connections(worker->server)) {
        uv_timer_start(&worker->accept_timer, on_accept_timer, LIMIT_RETRY_MS, 0);
        return;
    }
    worker->accept_state = ACCEPTING;
    uv_timer_stop(&worker->accept_timer);
    set_accepting(worker, 1);
}

static void on_accept_timer(uv_timer_t *timer)
{
    resume_accepting(timer->data);
}

static void on_connection_closed(weir_conn_registry_t *reg, weir_conn_t *conn)
{
    worker_t *worker = reg->loop->data;
    worker_gen_t *wg = conn->owner;

    --wg->num_conns;
    __atomic_sub_fetch(&worker->server->num_connections, 1, __ATOMIC_RELAXED);
    if (worker->accept_state == PAUSED_LIMIT)
        resume_accepting(worker);
}

/* Accepts what one listener has, up to a batch, into the generation of its accept context; stops accepting when out
 * of descriptors or at max-connections. */
static void accept_pending(listener_t *l, size_t batch)
{
    worker_t *worker = l->worker;
    server_t *server = worker->server;
    worker_gen_t *wg = H2O_STRUCT_FROM_MEMBER(worker_gen_t, ctx, l->accept_ctx->ctx);
    struct sockaddr_storage ss;

    for (size_t i = 0; i != batch && worker->accept_state == ACCEPTING; ++i) {
        if (__atomic_load_n(&server->num_connections, __ATOMIC_RELAXED) >= max_connections(server)) {
            pause_accepting(worker, PAUSED_LIMIT);
            return;
        }
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                pause_accepting(worker, PAUSED_EMFILE);
                return;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            default: /* EAGAIN: nothing more to accept */
                return;
            }
        }
        int err;
        weir_conn_t *conn = weir_conn_open_tcp(&worker->conns, fd, wg, &err);
        if (conn == NULL) {
            weir_warn("worker %u: cannot take a connection: %s", worker->id, uv_strerror(err));
            continue;
        }
        ++wg->num_conns;
        __atomic_add_fetch(&server->num_connections, 1, __ATOMIC_RELAXED);
        /* The access log is written when the request is disposed; h2o caches the peer's address on first use, and by
         * then the peer may be gone. Without an access log nothing asks for it: spare the system call. */
        if (wg->gen->access_log != NULL)
            h2o_socket_getpeername(conn->sock, (void *)&ss);
        h2o_accept(l->accept_ctx, conn->sock);
    }
}

static void on_listener_ready(uv_poll_t *poll, int status, int events)
{
    accept_pending(poll->data, ACCEPT_BATCH);
}

static void on_listener_closed(uv_handle_t *handle)
{
    free(handle->data);
}

/* Closes the listener's socket now (uv_poll_t does not own it; closing the handle has taken it off the loop). */
static void listener_close(listener_t *l)
{
    uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    close(l->fd);
}

/* Takes what the kernel has queued on the listener (closing a listening socket resets the connections still queued on
 * it, whose clients may have sent requests already), then closes it. */
static void close_listener(worker_t *worker, size_t slot)
{
    listener_t *l = worker->listeners[slot];
    if (l == NULL)
        return;
    int state = worker->accept_state;
    worker->accept_state = ACCEPTING;
    accept_pending(l, SIZE_MAX);
    if (worker->accept_state == ACCEPTING)
        worker->accept_state = state;
    listener_close(l);
    worker->listeners[slot] = NULL;
}

/* Generations on a worker ------------------------------------------------------------------------------------------ */

static void release_generation(generation_t *gen);

static worker_gen_t *worker_gen_create(worker_t *worker, generation_t *gen)
{
    worker_gen_t *wg = weir_calloc(1, sizeof(*wg));
    wg->worker = worker;
    wg->gen = gen;
    h2o_context_init(&wg->ctx, &worker->loop, &gen->globalconf);
    weir_metrics_thread_prepare(weir_metrics_default());
    wg->accept_ctxs = weir_calloc(gen->conf.num_listeners, sizeof(*wg->accept_ctxs));
    for (size_t i = 0; i != gen->conf.num_listeners; ++i) {
        wg->accept_ctxs[i].ctx = &wg->ctx;
        wg->accept_ctxs[i].hosts = gen->globalconf.hosts;
        wg->accept_ctxs[i].ssl_ctx = gen->ssl_ctxs[i];
    }
    return wg;
}

/* Disposes the h2o context of a generation that has no connection left; its memory is freed on a later turn of the
 * loop (h2o's timers inside it are closed asynchronously). */
static void worker_gen_dispose(worker_gen_t *wg)
{
    if (h2o_timeout_is_linked(&wg->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&wg->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&wg->ctx);
    if (h2o_linklist_is_linked(&wg->link))
        h2o_linklist_unlink(&wg->link);
    h2o_linklist_insert(&wg->worker->freed, &wg->link);
    release_generation(wg->gen);
    wg->gen = NULL;
}

static void free_disposed(worker_t *worker)
{
    while (!h2o_linklist_is_empty(&worker->freed)) {
        worker_gen_t *wg = H2O_STRUCT_FROM_MEMBER(worker_gen_t, link, worker->freed.next);
        h2o_linklist_unlink(&wg->link);
        free(wg->accept_ctxs);
        free(wg);
    }
}

static void on_drain_tick(uv_timer_t *timer);

static void start_drain_tick(worker_t *worker)
{
    if (!uv_is_active((uv_handle_t *)&worker->drain_timer))
        uv_timer_start(&worker->drain_timer, on_drain_tick, 0, DRAIN_TICK_MS);
}

/* Drains a generation's context as a shutdown does: HTTP/2 GOAWAY, HTTP/1 keep-alive off, idle HTTP/1 connections
 * closed once quiet for DRAIN_IDLE_MS, all within the grace period. */
static void worker_gen_drain(worker_gen_t *wg, uint64_t grace_ms)
{
    if (wg->draining)
        return;
    wg->draining = 1;
    h2o_context_request_shutdown(&wg->ctx);
    wg->ctx.http1.req_timeout.timeout = DRAIN_IDLE_MS < grace_ms ? DRAIN_IDLE_MS : grace_ms / 2;
    wg->drain_deadline = uv_now(&wg->worker->loop) + grace_ms;
    start_drain_tick(wg->worker);
}

/* Whether a connection of @p wg has bytes that nobody has read yet: a request that reached weir and waits for h2o. */
static int input_pending(worker_gen_t *wg)
{
    worker_t *worker = wg->worker;
    for (h2o_linklist_t *l = worker->conns.conns.next; l != &worker->conns.conns; l = l->next) {
        weir_conn_t *conn = H2O_STRUCT_FROM_MEMBER(weir_conn_t, link, l);
        if (conn->owner == wg && weir_conn_pending_input(conn) != 0)
            return 1;
    }
    return 0;
}

static void abort_connections(worker_gen_t *wg)
{
    worker_t *worker = wg->worker;
    for (h2o_linklist_t *l = worker->conns.conns.next; l != &worker->conns.conns; l = l->next) {
        weir_conn_t *conn = H2O_STRUCT_FROM_MEMBER(weir_conn_t, link, l);
        if (conn->owner == wg)
            weir_conn_abort(conn);
    }
}

/* One turn of a draining generation. @return 1 when it has no connection left. */
static int drain_turn(worker_gen_t *wg, uint64_t now)
{
    if (wg->num_conns == 0)
        return 1;
    /* Idle HTTP/1 keep-alive connections wait on the request timeout, shortened to DRAIN_IDLE_MS: run it, so that h2o
     * closes those quiet for that long through its own path -- but only when no connection has unread input, lest a
     * connection whose next request is already in its socket be taken for idle; that request is read and answered
     * first (with "Connection: close"). HTTP/2 connections close by themselves after GOAWAY once their streams are
     * done; busy HTTP/1 connections after their answer. */
    if (!input_pending(wg))
        h2o_timeout_run(&wg->worker->loop, &wg->ctx.http1.req_timeout, h2o_now(&wg->worker->loop));
    return 0;
}

static void on_drain_tick(uv_timer_t *timer)
{
    worker_t *worker = timer->data;
    uint64_t now = uv_now(&worker->loop);

    free_disposed(worker);
    for (h2o_linklist_t *l = worker->old.next; l != &worker->old;) {
        worker_gen_t *wg = H2O_STRUCT_FROM_MEMBER(worker_gen_t, link, l);
        l = l->next;
        if (drain_turn(wg, now)) {
            worker_gen_dispose(wg);
        } else if (now >= wg->drain_deadline) {
            weir_warn("worker %u: %zu connection(s) of configuration %u still open after the grace period; closing them",
                      worker->id, wg->num_conns, wg->gen->id);
            abort_connections(wg);
            wg->drain_deadline = UINT64_MAX;
        }
    }
    if (worker->shutting_down) {
        int done = drain_turn(worker->cur, now) && h2o_linklist_is_empty(&worker->old);
        if (done) {
            uv_stop(&worker->loop);
        } else if (now >= worker->shutdown_deadline) {
            weir_warn("worker %u: %zu connection(s) still open after the grace period; giving up on them", worker->id,
                      worker->conns.num_conns);
            worker->abandoned = 1;
            uv_stop(&worker->loop);
        }
        return;
    }
    if (h2o_linklist_is_empty(&worker->old) && h2o_linklist_is_empty(&worker->freed))
        uv_timer_stop(&worker->drain_timer);
}

static void on_sweep(uv_timer_t *timer)
{
    worker_t *worker = timer->data;
    uint64_t timeout = __atomic_load_n(&worker->server->write_timeout_ms, __ATOMIC_RELAXED);
    size_t n = weir_conn_registry_sweep(&worker->conns, timeout);
    if (n != 0)
        weir_info("worker %u: closed %zu connection(s) that read nothing for %llu ms", worker->id, n, (unsigned long long)timeout);
}

/* Makes @p gen the generation this worker accepts into: listens on the addresses it adds, stops listening on those
 * it drops, and drains the previous generation. */
static void switch_generation(worker_t *worker, generation_t *gen)
{
    server_t *server = worker->server;
    worker_gen_t *wg = worker_gen_create(worker, gen), *prev = worker->cur;

    weir_conn_registry_set_max_body(&worker->conns, gen->conf.limit_request_body);
    weir_conn_registry_set_reset_budget(&worker->conns, gen->conf.http2_reset_budget);
    pthread_mutex_lock(&server->mutex);
    size_t num_slots = server->num_slots;
    if (num_slots > worker->num_listeners) {
        worker->listeners = weir_realloc(worker->listeners, num_slots * sizeof(worker->listeners[0]));
        memset(worker->listeners + worker->num_listeners, 0, (num_slots - worker->num_listeners) * sizeof(worker->listeners[0]));
        worker->num_listeners = num_slots;
    }
    char *used = weir_calloc(num_slots, 1);
    for (size_t i = 0; i != gen->conf.num_listeners; ++i) {
        size_t s = gen->slot_of[i];
        used[s] = 1;
        listener_t *l = worker->listeners[s];
        if (l == NULL) {
            l = weir_calloc(1, sizeof(*l));
            l->worker = worker;
            l->fd = server->slots[s]->fds[worker->id];
            server->slots[s]->fds[worker->id] = -1; /* owned by the listener now */
            uv_poll_init(&worker->loop, &l->poll, l->fd);
            l->poll.data = l;
            worker->listeners[s] = l;
        }
        l->accept_ctx = wg->accept_ctxs + i;
        if (worker->accept_state == ACCEPTING)
            listener_poll(l, 1);
    }
    pthread_mutex_unlock(&server->mutex);
    for (size_t s = 0; s != worker->num_listeners; ++s)
        if (s >= num_slots || !used[s])
            close_listener(worker, s);
    free(used);

    worker->cur = wg;
    if (prev != NULL) {
        h2o_linklist_insert(&worker->old, &prev->link);
        worker_gen_drain(prev, prev->gen->conf.graceful_shutdown_timeout_ms);
    }
}

static void begin_shutdown(worker_t *worker)
{
    generation_t *gen = worker->cur->gen;

    worker->shutting_down = 1;
    uv_timer_stop(&worker->accept_timer);
    for (size_t s = 0; s != worker->num_listeners; ++s)
        close_listener(worker, s);
    worker_gen_drain(worker->cur, gen->conf.graceful_shutdown_timeout_ms);
    worker->shutdown_deadline = uv_now(&worker->loop) + gen->conf.graceful_shutdown_timeout_ms;
    for (h2o_linklist_t *l = worker->old.next; l != &worker->old; l = l->next) {
        worker_gen_t *wg = H2O_STRUCT_FROM_MEMBER(worker_gen_t, link, l);
        if (wg->drain_deadline > worker->shutdown_deadline && wg->drain_deadline != UINT64_MAX)
            wg->drain_deadline = worker->shutdown_deadline;
    }
    start_drain_tick(worker);
}

/* The main thread has a new generation for us, or asks us to stop. */
static void on_wake(uv_async_t *async)
{
    worker_t *worker = async->data;
    server_t *server = worker->server;

    if (worker->shutting_down)
        return;
    pthread_mutex_lock(&server->mutex);
    generation_t *target = server->current;
    int shutdown = server->shutdown;
    if (target != NULL && (worker->cur == NULL || worker->cur->gen != target))
        ++target->refs;
    else
        target = NULL;
    pthread_mutex_unlock(&server->mutex);

    if (target != NULL) {
        switch_generation(worker, target);
        pthread_mutex_lock(&server->mutex);
        ++server->switched;
        pthread_cond_broadcast(&server->cond);
        pthread_mutex_unlock(&server->mutex);
    }
    if (shutdown)
        begin_shutdown(worker);
}

static void on_walk_close(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle)) {
        weir_warn("closing a handle left open (type %s)", uv_handle_type_name(handle->type));
        uv_close(handle, NULL);
    }
}

/* Disposes the contexts and runs the loop until every handle is closed and every queued work has come back. */
static void dispose_worker_loop(worker_t *worker)
{
    uv_close((uv_handle_t *)&worker->wake, NULL);
    uv_close((uv_handle_t *)&worker->drain_timer, NULL);
    uv_close((uv_handle_t *)&worker->accept_timer, NULL);
    uv_close((uv_handle_t *)&worker->sweep_timer, NULL);
    for (size_t s = 0; s != worker->num_listeners; ++s)
        if (worker->listeners[s] != NULL) {
            listener_close(worker->listeners[s]);
            worker->listeners[s] = NULL;
        }
    while (!h2o_linklist_is_empty(&worker->old))
        worker_gen_dispose(H2O_STRUCT_FROM_MEMBER(worker_gen_t, link, worker->old.next));
    if (worker->cur != NULL) {
        worker_gen_dispose(worker->cur);
        worker->cur = NULL;
    }
    /* h2o's own handles (its timeouts, its inter-thread queue) stay active until the context is disposed. */
    for (int attempt = 0; uv_loop_close(&worker->loop) == UV_EBUSY; ++attempt) {
        if (attempt == 1)
            uv_walk(&worker->loop, on_walk_close, NULL);
        uv_run(&worker->loop, UV_RUN_DEFAULT);
    }
    free_disposed(worker);
    weir_conn_registry_dispose(&worker->conns);
    free(worker->listeners);
}

/* Workers ------------------------------------------------------------------------------------------------------- */

static void report_started(server_t *server, int error)
{
    pthread_mutex_lock(&server->mutex);
    ++server->num_started;
    if (error != 0 && server->start_error == 0)
        server->start_error = error;
    pthread_cond_broadcast(&server->cond);
    pthread_mutex_unlock(&server->mutex);
}

static void *run_worker(void *arg)
{
    worker_t *worker = arg;
    server_t *server = worker->server;

    uv_loop_init(&worker->loop);
    worker->loop.data = worker;
    h2o_linklist_init_anchor(&worker->old);
    h2o_linklist_init_anchor(&worker->freed);
    pthread_mutex_lock(&server->mutex);
    generation_t *gen = server->current;
    pthread_mutex_unlock(&server->mutex);
    weir_conn_registry_init(&worker->conns, &worker->loop, gen->conf.limit_request_body, on_connection_closed);
    weir_conn_registry_set_current(&worker->conns);
    uv_async_init(&worker->loop, &worker->wake, on_wake);
    worker->wake.data = worker;
    uv_timer_init(&worker->loop, &worker->drain_timer);
    worker->drain_timer.data = worker;
    uv_timer_init(&worker->loop, &worker->accept_timer);
    worker->accept_timer.data = worker;
    uv_timer_init(&worker->loop, &worker->sweep_timer);
    worker->sweep_timer.data = worker;
    uv_timer_start(&worker->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    /* libuv opens a spare descriptor for its loop (its EMFILE reserve) when the loop's first stream is initialised:
     * have it now, so that all of a worker's descriptors are open once it has started, whatever connections come. */
    uv_tcp_init(&worker->loop, &worker->probe);
    uv_close((uv_handle_t *)&worker->probe, NULL);

    /* the first generation, as a reload would bring it */
    on_wake(&worker->wake);
    report_started(server, 0);

    uv_run(&worker->loop, UV_RUN_DEFAULT);
    if (!worker->abandoned)
        dispose_worker_loop(worker);
    pthread_mutex_lock(&server->mutex);
    ++server->stopped;
    uv_async_send(&server->main_wake); /* under the mutex: the main loop cannot have closed the handle yet */
    pthread_mutex_unlock(&server->mutex);
    return NULL;
}

/* Sockets ------------------------------------------------------------------------------------------------------- */

/* Creates and binds one listening socket; *port is the port to bind, and receives the one bound when it was 0. */
static int bind_listener(const weir_listen_conf_t *lc, uint16_t *port, int *out_fd)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    char portstr[8];
    int fd = -1, on = 1, ret;

    snprintf(portstr, sizeof(portstr), "%u", (unsigned)*port);
    /* No host: every address, IPv6 and IPv4 on one dual-stack socket where the machine has IPv6. */
    const char *host = lc->host != NULL ? lc->host : "::";
    if ((ret = getaddrinfo(host, portstr, &hints, &res)) != 0) {
        if (lc->host == NULL && (ret = getaddrinfo("0.0.0.0", portstr, &hints, &res)) == 0)
            goto Resolved;
        weir_error("%s: cannot resolve \"%s\": %s", lc->where, host, gai_strerror(ret));
        return -EINVAL;
    }
Resolved:
    if ((fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, res->ai_protocol)) < 0) {
        ret = -errno;
        goto Error;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
        ret = -errno;
        goto Error;
    }
    if (res->ai_family == AF_INET6 && lc->host == NULL) {
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        ret = -errno;
        goto Error;
    }
    if (*port == 0) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        if (getsockname(fd, (void *)&ss, &sslen) != 0) {
            ret = -errno;
            goto Error;
        }
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    }
    /* Wake the loop for a connection only once the client has sent something (HTTP and TLS clients speak first): one
     * wakeup per connection instead of two (accept, then read). It matters under load: every wakeup interrupts what
     * the core is doing, /calc's sums among them, and in a VM each interruption costs more than the event itself (see
     * bench/NOTES.md). A client that stays silent is accepted when the deferral ends, as without it, and a silent
     * connection costs weir nothing until then. */
    int defer_s = DEFER_ACCEPT_SECONDS;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s));
    if (listen(fd, SOMAXCONN > 65535 ? SOMAXCONN : 65535) != 0) {
        ret = -errno;
        goto Error;
    }
    freeaddrinfo(res);
    *out_fd = fd;
    return 0;

Error:
    weir_error("%s: cannot bind %s port %s: %s", lc->where, host, portstr, strerror(-ret));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return ret;
}

/* What identifies an address across reloads: host, port and TLS or not, and which of the configuration's entries
 * that are alike this one is (several "port: 0" entries of one host are different sockets). */
static void slot_key(const weir_server_conf_t *conf, size_t index, char *buf, size_t size)
{
    const weir_listen_conf_t *lc = conf->listeners + index;
    unsigned nth = 0;
    for (size_t i = 0; i != index; ++i) {
        const weir_listen_conf_t *o = conf->listeners + i;
        if (o->port == lc->port && (o->certificate_file != NULL) == (lc->certificate_file != NULL) &&
            (o->host == NULL ? lc->host == NULL : lc->host != NULL && strcmp(o->host, lc->host) == 0))
            ++nth;
    }
    snprintf(buf, size, "%s|%u|%s#%u", lc->host != NULL ? lc->host : "*", (unsigned)lc->port,
             lc->certificate_file != NULL ? "tls" : "tcp", nth);
}

static void slot_free(slot_t *slot, unsigned num_threads)
{
    for (unsigned t = 0; t != num_threads; ++t)
        if (slot->fds[t] >= 0)
            close(slot->fds[t]);
    free(slot->fds);
    free(slot->key);
    free(slot->where);
    free(slot);
}

/* The slot of @p lc: the one a previous generation opened for the same address, or a new one (main thread). */
static int find_or_bind_slot(server_t *server, const weir_server_conf_t *conf, size_t index, size_t *out, int *is_new)
{
    const weir_listen_conf_t *lc = conf->listeners + index;
    char key[512];
    slot_key(conf, index, key, sizeof(key));
    for (size_t s = 0; s != server->num_slots; ++s) {
        if (server->slots[s] != NULL && strcmp(server->slots[s]->key, key) == 0) {
            *out = s;
            *is_new = 0;
            return 0;
        }
    }
    slot_t *slot = weir_calloc(1, sizeof(*slot));
    slot->key = weir_strdup(key);
    slot->where = weir_strdup(lc->where);
    slot->fds = weir_malloc(server->num_threads * sizeof(*slot->fds));
    for (unsigned t = 0; t != server->num_threads; ++t)
        slot->fds[t] = -1;
    uint16_t port = lc->port;
    for (unsigned t = 0; t != server->num_threads; ++t) {
        int ret = bind_listener(lc, &port, &slot->fds[t]);
        if (ret != 0) {
            slot_free(slot, server->num_threads);
            return ret;
        }
    }
    slot->port = port;
    pthread_mutex_lock(&server->mutex);
    server->slots = weir_realloc(server->slots, (server->num_slots + 1) * sizeof(server->slots[0]));
    server->slots[server->num_slots] = slot;
    *out = server->num_slots++;
    pthread_mutex_unlock(&server->mutex);
    *is_new = 1;
    const char *host = lc->host != NULL ? lc->host : "*";
    weir_info("listening on %s://%s%s%s:%u", lc->certificate_file != NULL ? "https" : "http", strchr(host, ':') ? "[" : "", host,
              strchr(host, ':') ? "]" : "", (unsigned)port);
    return 0;
}

/* Configuration into h2o ---------------------------------------------------------------------------------------- */

static int cmp_path_len_desc(const void *a, const void *b)
{
    const weir_path_conf_t *const *x = a, *const *y = b;
    size_t lx = strlen((*x)->path), ly = strlen((*y)->path);
    return lx < ly ? 1 : lx > ly ? -1 : 0;
}

int weir_server_setup_globalconf(h2o_globalconf_t *gc, const weir_server_conf_t *conf, weir_access_log_t *access_log)
{
    h2o_config_init(gc);
    gc->server_name = h2o_iovec_init(H2O_STRLIT("weir/" WEIR_VERSION));
    gc->max_request_entity_size = conf->limit_request_body;
    gc->http1.req_timeout = conf->http1_request_timeout_ms;
    gc->http2.idle_timeout = conf->http2_idle_timeout_ms;
    gc->http2.graceful_shutdown_timeout = 0; /* the drain bounds the whole shutdown */
    int count_requests = weir_status_counts_requests(conf);

    for (size_t h = 0; h != conf->num_hosts; ++h) {
        const weir_host_conf_t *host = conf->hosts + h;
        h2o_hostconf_t *hostconf = h2o_config_register_host(gc, h2o_iovec_init(host->name, strlen(host->name)), 65535);
        if (hostconf == NULL) { /* h2o has one of that name, compared without case (the parser refuses that) */
            weir_error("host \"%s\" is given twice", host->name);
            return -EEXIST;
        }
        /* h2o takes the first path that is a prefix of the request's: register the longest first. */
        const weir_path_conf_t **sorted = weir_malloc(sizeof(*sorted) * (host->num_paths + 1));
        for (size_t p = 0; p != host->num_paths; ++p)
            sorted[p] = host->paths + p;
        qsort(sorted, host->num_paths, sizeof(*sorted), cmp_path_len_desc);
        for (size_t p = 0; p != host->num_paths; ++p) {
            const weir_path_conf_t *path = sorted[p];
            h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, path->path, 0);
            if (count_requests)
                weir_status_instrument(pathconf, path->path);
            add_guard(pathconf);
            int ret = path->module->register_handler(pathconf, path->settings);
            if (ret != 0) {
                weir_error("cannot set up %s for %s: %s", path->module->name, path->path, strerror(-ret));
                free(sorted);
                return ret;
            }
            if (access_log != NULL)
                weir_access_log_register(pathconf, access_log);
        }
        free(sorted);
        if (count_requests)
            weir_status_instrument(&hostconf->fallback_path, NULL);
        add_guard(&hostconf->fallback_path);
        h2o_handler_t *notfound = h2o_create_handler(&hostconf->fallback_path, sizeof(*notfound));
        notfound->on_req = on_req_not_found;
        if (access_log != NULL)
            weir_access_log_register(&hostconf->fallback_path, access_log);
    }
    return 0;
}

/* Generations ----------------------------------------------------------------------------------------------------- */

static void generation_free(generation_t *gen)
{
    if (gen->globalconf_inited)
        h2o_config_dispose(&gen->globalconf);
    if (gen->access_log != NULL)
        weir_access_log_release(gen->access_log);
    for (size_t i = 0; i != gen->conf.num_listeners; ++i)
        if (gen->ssl_ctxs != NULL)
            SSL_CTX_free(gen->ssl_ctxs[i]);
    free(gen->ssl_ctxs);
    free(gen->slot_of);
    weir_server_conf_dispose(&gen->conf);
    free(gen);
}

/* Drops a reference to @p gen; the last one hands it to the main thread to be freed (its handlers' dispose callbacks
 * may join threads: not a worker's business). Any thread. */
static void release_generation(generation_t *gen)
{
    server_t *server = gen->server;
    int dead;

    pthread_mutex_lock(&server->mutex);
    if ((dead = --gen->refs == 0)) {
        gen->next = server->dead;
        server->dead = gen;
    }
    pthread_mutex_unlock(&server->mutex);
    if (dead)
        uv_async_send(&server->main_wake);
}

/*
 * Builds a generation from @p conf (taken: moved into the generation, @p conf is reset): TLS contexts, the access log,
 * every module's handlers, and the slots of its addresses (binding those that are new). Main thread.
 * @return the generation (one reference, the caller's), or NULL (logged; errors of TLS files are also given in @p errs
 *         when not NULL).
 */
static generation_t *generation_create(server_t *server, weir_server_conf_t *conf)
{
    generation_t *gen = weir_calloc(1, sizeof(*gen));
    size_t first_new_slot = server->num_slots;

    gen->server = server;
    gen->id = ++server->next_gen_id;
    gen->conf = *conf;
    weir_server_conf_init(conf);
    gen->refs = 1;
    gen->ssl_ctxs = weir_calloc(gen->conf.num_listeners, sizeof(*gen->ssl_ctxs));
    gen->slot_of = weir_calloc(gen->conf.num_listeners, sizeof(*gen->slot_of));
    for (size_t i = 0; i != gen->conf.num_listeners; ++i) {
        const weir_listen_conf_t *lc = gen->conf.listeners + i;
        if (lc->certificate_file != NULL) {
            weir_tls_errors_t errs;
            if ((gen->ssl_ctxs[i] = weir_tls_create_server_ctx(lc->certificate_file, lc->key_file, &errs)) == NULL) {
                weir_error("%s: cannot set up TLS: %s%s%s", lc->where, errs.certificate,
                           errs.certificate[0] && errs.key[0] ? "; " : "", errs.key);
                goto Error;
            }
        }
    }
    /* Addresses first: a reload that cannot bind one changes nothing. */
    for (size_t i = 0; i != gen->conf.num_listeners; ++i) {
        int is_new;
        if (find_or_bind_slot(server, &gen->conf, i, &gen->slot_of[i], &is_new) != 0)
            goto Error;
    }
    if (gen->conf.access_log != NULL && (gen->access_log = weir_access_log_acquire(gen->conf.access_log)) == NULL)
        goto Error;
    gen->globalconf_inited = 1;
    if (weir_server_setup_globalconf(&gen->globalconf, &gen->conf, gen->access_log) != 0)
        goto Error;
    return gen;
Error:
    /* the sockets bound for this generation: nobody would accept on them */
    for (size_t s = first_new_slot; s != server->num_slots; ++s) {
        pthread_mutex_lock(&server->mutex);
        slot_t *slot = server->slots[s];
        server->slots[s] = NULL;
        pthread_mutex_unlock(&server->mutex);
        if (slot != NULL)
            slot_free(slot, server->num_threads);
    }
    generation_free(gen);
    return NULL;
}

/* Frees the slots no generation lists any more, once every worker has closed its socket (main thread, after a switch). */
static void free_unused_slots(server_t *server)
{
    generation_t *cur = server->current;
    for (size_t s = 0; s != server->num_slots; ++s) {
        if (server->slots[s] == NULL)
            continue;
        int used = 0;
        for (size_t i = 0; i != cur->conf.num_listeners && !used; ++i)
            used = cur->slot_of[i] == s;
        if (!used) {
            pthread_mutex_lock(&server->mutex);
            slot_t *slot = server->slots[s];
            server->slots[s] = NULL;
            pthread_mutex_unlock(&server->mutex);
            weir_info("stopped listening on %s (%s)", slot->key, slot->where);
            slot_free(slot, server->num_threads);
        }
    }
}

static void apply_globals(server_t *server, const weir_server_conf_t *conf)
{
    size_t max =
        conf->max_connections != 0 ? (size_t)conf->max_connections : weir_server_default_max_connections(conf, server->nofile);
    __atomic_store_n(&server->max_connections, max, __ATOMIC_RELAXED);
    __atomic_store_n(&server->write_timeout_ms, conf->write_timeout_ms, __ATOMIC_RELAXED);
    weir_respond_set_memory_budget(conf->limit_response_memory);
}

/* Makes @p gen current and waits until every worker has switched to it (main thread). The previous generation's
 * reference is dropped: its contexts drain on the workers. */
static int make_current(server_t *server, generation_t *gen)
{
    struct timespec deadline;
    int ret = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SWITCH_TIMEOUT_S;
    pthread_mutex_lock(&server->mutex);
    generation_t *prev = server->current;
    server->current = gen;
    server->switched = 0;
    pthread_mutex_unlock(&server->mutex);
    for (unsigned t = 0; t != server->num_threads; ++t)
        uv_async_send(&server->workers[t].wake);
    pthread_mutex_lock(&server->mutex);
    while (server->switched != server->num_threads && ret == 0)
        ret = -pthread_cond_timedwait(&server->cond, &server->mutex, &deadline);
    pthread_mutex_unlock(&server->mutex);
    if (ret != 0)
        weir_error("the worker threads did not take the new configuration within %d s", SWITCH_TIMEOUT_S);
    apply_globals(server, &gen->conf);
    free_unused_slots(server);
    if (prev != NULL)
        release_generation(prev);
    return ret;
}

/* Reloading ------------------------------------------------------------------------------------------------------- */

/* Appends "error\n" and one line per message to @p out. */
static char *error_answer(const weir_conf_errors_t *errs, const char *extra)
{
    size_t len = 7 + (extra != NULL ? strlen(extra) + 1 : 0);
    for (size_t i = 0; i != errs->count; ++i)
        len += strlen(errs->messages[i]) + 1;
    char *out = weir_malloc(len + 1), *p = out;
    p += sprintf(p, "error\n");
    for (size_t i = 0; i != errs->count; ++i)
        p += sprintf(p, "%s\n", errs->messages[i]);
    if (extra != NULL)
        p += sprintf(p, "%s\n", extra);
    return out;
}

/* Re-reads the configuration file and, when it is valid, switches to it. @return the control socket's answer. */
static char *reload(server_t *server)
{
    weir_server_conf_t conf;
    weir_conf_errors_t errs;
    char *answer, buf[256];
    int ok = 0;

    weir_notify("RELOADING=1\nSTATUS=reloading %s", server->conf_file);
    weir_info("reloading %s", server->conf_file);
    weir_conf_errors_init(&errs);
    weir_server_conf_init(&conf);
    if (weir_server_conf_load(&conf, server->conf_file, &errs) != 0) {
        for (size_t i = 0; i != errs.count; ++i)
            weir_error("%s", errs.messages[i]);
        snprintf(buf, sizeof(buf), "weir: configuration file %s has %zu error(s); still serving configuration %u",
                 server->conf_file, errs.count, server->current->id);
        weir_error("reload failed: %s has %zu error(s); still serving configuration %u", server->conf_file, errs.count,
                   server->current->id);
        answer = error_answer(&errs, buf);
        goto Exit;
    }
    if (conf.num_threads != server->num_threads) {
        snprintf(buf, sizeof(buf),
                 "weir: num-threads changed from %u to %u: restart weir to change it; still serving configuration %u",
                 server->num_threads, conf.num_threads, server->current->id);
        weir_error("reload failed: %s", buf + 6);
        answer = error_answer(&errs, buf);
        goto Exit;
    }
    generation_t *gen = generation_create(server, &conf);
    if (gen == NULL) {
        snprintf(buf, sizeof(buf), "weir: the new configuration could not be set up (see the log); still serving configuration %u",
                 server->current->id);
        weir_error("reload failed: %s", buf + 6);
        answer = error_answer(&errs, buf);
        goto Exit;
    }
    make_current(server, gen);
    ok = 1;
    snprintf(buf, sizeof(buf), "ok: serving configuration %u from %s\n", gen->id, server->conf_file);
    weir_info("reloaded: serving configuration %u", gen->id);
    answer = weir_strdup(buf);
Exit:
    if (ok)
        weir_metrics_reload_succeeded();
    else
        weir_metrics_reload_failed();
    weir_notify("READY=1\nSTATUS=serving configuration %u", server->current->id);
    weir_server_conf_dispose(&conf);
    weir_conf_errors_dispose(&errs);
    return answer;
}

static char *on_control(const char *command, void *data)
{
    server_t *server = data;
    char buf[128];

    if (strcmp(command, "reload") == 0)
        return reload(server);
    if (strcmp(command, "reopen") == 0)
        return weir_strdup(weir_access_log_reopen_all() == 0 ? "ok: access logs reopened\n"
                                                             : "error\ncannot reopen an access log\n");
    snprintf(buf, sizeof(buf), "error\nunknown command \"%.64s\" (expected reload or reopen)\n", command);
    return weir_strdup(buf);
}

/* The main thread ------------------------------------------------------------------------------------------------- */

static void free_dead_generations(server_t *server)
{
    pthread_mutex_lock(&server->mutex);
    generation_t *dead = server->dead;
    server->dead = NULL;
    pthread_mutex_unlock(&server->mutex);
    while (dead != NULL) {
        generation_t *next = dead->next;
        weir_debug("configuration %u freed", dead->id);
        generation_free(dead);
        dead = next;
    }
}

/* Ends the main loop: every worker has stopped. */
static void close_main_loop(server_t *server)
{
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(server->signals); ++i)
        if (!uv_is_closing((uv_handle_t *)&server->signals[i]))
            uv_close((uv_handle_t *)&server->signals[i], NULL);
    if (server->control != NULL) {
        weir_control_stop(server->control);
        server->control = NULL;
    }
    uv_close((uv_handle_t *)&server->main_wake, NULL);
}

static void on_main_wake(uv_async_t *async)
{
    server_t *server = async->data;

    free_dead_generations(server);
    pthread_mutex_lock(&server->mutex);
    int all_stopped = server->stopped == server->num_threads;
    pthread_mutex_unlock(&server->mutex);
    if (server->stopping && all_stopped)
        close_main_loop(server);
}

static void begin_stop(server_t *server, int sig)
{
    if (server->stopping)
        return;
    server->stopping = 1;
    server->exit_signal = sig;
    __atomic_store_n(&draining_flag, 1, __ATOMIC_RELAXED);
    weir_notify("STOPPING=1\nSTATUS=draining");
    weir_info("%s received: draining (grace period %llu ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
              (unsigned long long)server->current->conf.graceful_shutdown_timeout_ms);
    pthread_mutex_lock(&server->mutex);
    server->shutdown = 1;
    pthread_mutex_unlock(&server->mutex);
    for (unsigned t = 0; t != server->num_threads; ++t)
        uv_async_send(&server->workers[t].wake);
    /* the main loop goes on (signals are still taken, and ignored) until every worker has stopped */
}

static void on_signal(uv_signal_t *handle, int sig)
{
    server_t *server = handle->data;

    switch (sig) {
    case SIGHUP:
        if (server->stopping)
            weir_info("SIGHUP received while draining: ignored");
        else
            free(reload(server));
        break;
    case SIGUSR1:
        weir_info("SIGUSR1 received: reopening the access log");
        weir_access_log_reopen_all();
        break;
    default:
        if (server->stopping)
            weir_info("%s received: already draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        else
            begin_stop(server, sig);
        break;
    }
}

/* Kept reachable when workers were given up on, so that leak checkers do not report what the exit reclaims. */
static server_t *abandoned_server;

int weir_server_run(const char *conf_file, weir_server_conf_t *conf)
{
    static const int SIGNALS[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    server_t *server = weir_calloc(1, sizeof(*server));
    sigset_t sigs;
    unsigned num_created = 0;
    int ret = 0;
    generation_t *gen = NULL;

    server->conf_file = conf_file;
    server->main_loop.data = server;
    server->num_threads = conf->num_threads;
    signal(SIGPIPE, SIG_IGN);
    /* Blocked in every thread but the main one, whose loop takes them. */
    sigemptyset(&sigs);
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(SIGNALS); ++i)
        sigaddset(&sigs, SIGNALS[i]);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_mutex_init(&server->mutex, NULL);
    pthread_cond_init(&server->cond, NULL);
    uv_loop_init(&server->main_loop);
    uv_async_init(&server->main_loop, &server->main_wake, on_main_wake);
    server->main_wake.data = server;

    struct rlimit rl;
    server->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 1048576;
    server->workers = weir_calloc(server->num_threads, sizeof(*server->workers));
    for (unsigned t = 0; t != server->num_threads; ++t) {
        server->workers[t].server = server;
        server->workers[t].id = t;
    }
    if ((gen = generation_create(server, conf)) == NULL) {
        ret = -EINVAL;
        goto Exit;
    }
    server->current = gen; /* the workers take it as they start */
    apply_globals(server, &gen->conf);
    if (gen->conf.control_socket != NULL &&
        (ret = weir_control_start(&server->main_loop, gen->conf.control_socket, on_control, server, &server->control)) != 0)
        goto Exit;

    for (unsigned t = 0; t != server->num_threads; ++t) {
        if ((ret = -pthread_create(&server->workers[t].tid, NULL, run_worker, server->workers + t)) != 0) {
            weir_error("cannot start worker thread: %s", strerror(-ret));
            break;
        }
        ++num_created;
    }
    pthread_mutex_lock(&server->mutex);
    while (server->num_started != num_created)
        pthread_cond_wait(&server->cond, &server->mutex);
    if (ret == 0)
        ret = server->start_error;
    pthread_mutex_unlock(&server->mutex);
    free_unused_slots(server);

    if (ret == 0) {
        pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
        for (size_t i = 0; i != WEIR_ARRAY_SIZE(SIGNALS); ++i) {
            uv_signal_init(&server->main_loop, &server->signals[i]);
            server->signals[i].data = server;
            uv_signal_start(&server->signals[i], on_signal, SIGNALS[i]);
        }
        weir_info("weir %s ready: %u worker thread(s), max-connections %zu (descriptor limit %llu), pid %d", WEIR_VERSION,
                  server->num_threads, max_connections(server), (unsigned long long)server->nofile, (int)getpid());
        weir_notify("READY=1\nSTATUS=serving configuration %u", gen->id);
        uv_run(&server->main_loop, UV_RUN_DEFAULT);
    } else {
        pthread_mutex_lock(&server->mutex);
        server->shutdown = 1;
        pthread_mutex_unlock(&server->mutex);
        for (unsigned t = 0; t != num_created; ++t)
            uv_async_send(&server->workers[t].wake);
    }

    int abandoned = 0;
    for (unsigned t = 0; t != num_created; ++t) {
        pthread_join(server->workers[t].tid, NULL);
        abandoned |= server->workers[t].abandoned;
    }
    if (abandoned) {
        /* Some connections outlived the grace period: their memory belongs to loops that were left running, and is
         * reclaimed by the process exit. */
        weir_warn("stopped with connections still open");
        abandoned_server = server;
        return ret;
    }
    if (ret == 0)
        weir_info("stopped");

Exit:
    if (server->control != NULL)
        weir_control_stop(server->control);
    if (!uv_is_closing((uv_handle_t *)&server->main_wake))
        uv_close((uv_handle_t *)&server->main_wake, NULL);
    uv_run(&server->main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&server->main_loop);
    /* Every worker has been joined: what they held of the generations is released, the server's own reference is
     * the last one. */
    free_dead_generations(server);
    if (server->current != NULL && --server->current->refs == 0)
        generation_free(server->current);
    for (size_t s = 0; s != server->num_slots; ++s)
        if (server->slots[s] != NULL)
            slot_free(server->slots[s], server->num_threads);
    free(server->slots);
    free(server->workers);
    pthread_cond_destroy(&server->cond);
    pthread_mutex_destroy(&server->mutex);
    free(server);
    weir_http_client_global_cleanup(); /* libcurl's global state, if a configuration set it up (an s3 backend) */
    return ret;
}
