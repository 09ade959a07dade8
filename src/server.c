/*
 * The server: one worker thread per `num-threads`, each with its own uv loop, h2o context and, for every `listen`
 * entry, its own SO_REUSEPORT socket (the kernel spreads connections evenly over them). The main thread owns the
 * configuration, binds every socket before any thread starts (so that a bad address fails at once, and port 0 is
 * resolved to one port shared by all threads), then waits for SIGTERM/SIGINT and asks the workers to drain.
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
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include "weir/common.h"
#include "weir/conn.h"
#include "weir/http_client.h"
#include "weir/respond.h"
#include "weir/server.h"
#include "weir/status.h"

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

typedef struct st_server_t server_t;
typedef struct st_worker_t worker_t;

/* One listening socket of a worker, watched with a uv_poll_t: weir accepts itself, so that it can stop accepting
 * (out of descriptors, at max-connections) without closing the socket. */
typedef struct st_listener_t {
    uv_poll_t poll; /* freed in its close callback */
    worker_t *worker;
    h2o_accept_ctx_t *accept_ctx;
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
    h2o_context_t ctx;
    h2o_accept_ctx_t *accept_ctxs; /* one per listener */
    listener_t **listeners;        /* one per listener, NULL once closed */
    int *fds;                      /* the sockets bound by the main thread, one per listener */
    uv_async_t wake;               /* the main thread asks for shutdown through it */
    uv_timer_t drain_timer;
    uv_timer_t accept_timer; /* resumes accepting after a pause */
    uv_timer_t sweep_timer;  /* the write timeout */
    weir_conn_registry_t conns;
    int accept_state;
    uint64_t drain_deadline;
    int draining;
    int abandoned; /* the grace period ran out with connections still open */
};

struct st_server_t {
    const weir_server_conf_t *conf;
    h2o_globalconf_t globalconf;
    h2o_access_log_filehandle_t *access_log;
    SSL_CTX **ssl_ctxs; /* one per listener, NULL for cleartext */
    worker_t *workers;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int globalconf_inited;
    unsigned num_started; /* workers that opened their listeners (or failed to) */
    int start_error;
    size_t max_connections;
    size_t num_connections;  /* open, over all workers (atomic) */
    uint64_t accept_log_at;  /* loop time of the last accept-pause message (atomic) */
    size_t accept_log_quiet; /* pauses not logged since (atomic) */
};

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
    for (size_t i = 0; i != worker->server->conf->num_listeners; ++i)
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
              why, __atomic_load_n(&server->num_connections, __ATOMIC_RELAXED), server->max_connections, quiet);
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
    if (worker->draining || worker->accept_state == ACCEPTING)
        return;
    if (worker->accept_state == PAUSED_LIMIT &&
        __atomic_load_n(&worker->server->num_connections, __ATOMIC_RELAXED) >= worker->server->max_connections) {
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
    __atomic_sub_fetch(&worker->server->num_connections, 1, __ATOMIC_RELAXED);
    if (worker->accept_state == PAUSED_LIMIT)
        resume_accepting(worker);
}

/* Accepts what one listener has, up to a batch; stops accepting when out of descriptors or at max-connections. */
static void accept_pending(listener_t *l, size_t batch)
{
    worker_t *worker = l->worker;
    server_t *server = worker->server;
    struct sockaddr_storage ss;

    for (size_t i = 0; i != batch && worker->accept_state == ACCEPTING; ++i) {
        if (__atomic_load_n(&server->num_connections, __ATOMIC_RELAXED) >= server->max_connections) {
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
        weir_conn_t *conn = weir_conn_open_tcp(&worker->conns, fd, NULL, &err);
        if (conn == NULL) {
            weir_warn("worker %u: cannot take a connection: %s", worker->id, uv_strerror(err));
            continue;
        }
        __atomic_add_fetch(&server->num_connections, 1, __ATOMIC_RELAXED);
        /* The access log is written when the request is disposed; h2o caches the peer's address on first use, and by
         * then the peer may be gone. Without an access log nothing asks for it: spare the system call. */
        if (server->access_log != NULL)
            h2o_socket_getpeername(conn->sock, (void *)&ss);
        h2o_accept(l->accept_ctx, conn->sock);
    }
}

static void on_listener_ready(uv_poll_t *poll, int status, int events)
{
    listener_t *l = poll->data;
    accept_pending(l, ACCEPT_BATCH);
}

static void on_listener_closed(uv_handle_t *handle)
{
    listener_t *l = handle->data;
    close(l->fd);
    free(l);
}

/* Shutdown ------------------------------------------------------------------------------------------------------ */

static void close_listeners(worker_t *worker)
{
    for (size_t i = 0; i != worker->server->conf->num_listeners; ++i) {
        listener_t *l = worker->listeners[i];
        if (l != NULL) {
            uv_close((uv_handle_t *)&l->poll, on_listener_closed);
            worker->listeners[i] = NULL;
        }
    }
}

/* Whether some connection has bytes that nobody has read yet: a request that reached weir and waits for h2o. */
static int input_pending(worker_t *worker)
{
    for (h2o_linklist_t *l = worker->conns.conns.next; l != &worker->conns.conns; l = l->next)
        if (weir_conn_pending_input(H2O_STRUCT_FROM_MEMBER(weir_conn_t, link, l)) != 0)
            return 1;
    return 0;
}

static void on_drain_tick(uv_timer_t *timer)
{
    worker_t *worker = timer->data;

    /* Idle HTTP/1 keep-alive connections wait on the request timeout, which shutdown shortened to DRAIN_IDLE_MS: run
     * it, so that h2o closes those quiet for that long through its own path -- but only when no connection has unread
     * input, lest a connection whose next request is already in its socket be taken for idle; that request is read and
     * answered first (with "Connection: close"). HTTP/2 connections close by themselves after GOAWAY once their
     * streams are done; busy HTTP/1 connections after their response (h2o turns keep-alive off once shutdown is
     * requested). */
    if (!input_pending(worker))
        h2o_timeout_run(&worker->loop, &worker->ctx.http1.req_timeout, h2o_now(&worker->loop));

    if (worker->conns.num_conns == 0) {
        uv_stop(&worker->loop);
    } else if (uv_now(&worker->loop) >= worker->drain_deadline) {
        weir_warn("worker %u: %zu connection(s) still open after the grace period; giving up on them", worker->id,
                  worker->conns.num_conns);
        worker->abandoned = 1;
        uv_stop(&worker->loop);
    }
}

static void on_sweep(uv_timer_t *timer)
{
    worker_t *worker = timer->data;
    size_t n = weir_conn_registry_sweep(&worker->conns, worker->server->conf->write_timeout_ms);
    if (n != 0)
        weir_info("worker %u: closed %zu connection(s) that read nothing for %llu ms", worker->id, n,
                  (unsigned long long)worker->server->conf->write_timeout_ms);
}

static void on_wake(uv_async_t *async)
{
    worker_t *worker = async->data;

    if (worker->draining)
        return;
    /* Connections the kernel has already completed (their clients may have sent requests) are taken first: closing a
     * listening socket resets the connections still queued on it. */
    worker->accept_state = ACCEPTING;
    for (size_t i = 0; i != worker->server->conf->num_listeners; ++i)
        if (worker->listeners[i] != NULL)
            accept_pending(worker->listeners[i], SIZE_MAX);
    worker->draining = 1;
    uv_timer_stop(&worker->accept_timer);
    close_listeners(worker);
    h2o_context_request_shutdown(&worker->ctx);
    worker->ctx.http1.req_timeout.timeout = DRAIN_IDLE_MS < worker->server->conf->graceful_shutdown_timeout_ms
                                                ? DRAIN_IDLE_MS
                                                : worker->server->conf->graceful_shutdown_timeout_ms / 2;
    worker->drain_deadline = uv_now(&worker->loop) + worker->server->conf->graceful_shutdown_timeout_ms;
    uv_timer_start(&worker->drain_timer, on_drain_tick, 0, DRAIN_TICK_MS);
}

static void on_walk_close(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle)) {
        weir_warn("closing a handle left open (type %s)", uv_handle_type_name(handle->type));
        uv_close(handle, NULL);
    }
}

/* Disposes the context and runs the loop until every handle is closed and every queued work has come back. */
static void dispose_worker_loop(worker_t *worker)
{
    uv_close((uv_handle_t *)&worker->wake, NULL);
    uv_close((uv_handle_t *)&worker->drain_timer, NULL);
    uv_close((uv_handle_t *)&worker->accept_timer, NULL);
    uv_close((uv_handle_t *)&worker->sweep_timer, NULL);
    close_listeners(worker);
    if (h2o_timeout_is_linked(&worker->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&worker->ctx.http2._graceful_shutdown_timeout);
    /* h2o's own handles (its timeouts, its inter-thread queue) stay active until the context is disposed. */
    h2o_context_dispose(&worker->ctx);
    for (int attempt = 0; uv_loop_close(&worker->loop) == UV_EBUSY; ++attempt) {
        if (attempt == 1)
            uv_walk(&worker->loop, on_walk_close, NULL);
        uv_run(&worker->loop, UV_RUN_DEFAULT);
    }
    weir_conn_registry_dispose(&worker->conns);
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
    const weir_server_conf_t *conf = server->conf;
    int ret = 0;

    uv_loop_init(&worker->loop);
    worker->loop.data = worker;
    weir_conn_registry_init(&worker->conns, &worker->loop, conf->limit_request_body, on_connection_closed);
    weir_conn_registry_set_current(&worker->conns);
    h2o_context_init(&worker->ctx, &worker->loop, &server->globalconf);
    uv_async_init(&worker->loop, &worker->wake, on_wake);
    worker->wake.data = worker;
    uv_timer_init(&worker->loop, &worker->drain_timer);
    worker->drain_timer.data = worker;
    uv_timer_init(&worker->loop, &worker->accept_timer);
    worker->accept_timer.data = worker;
    uv_timer_init(&worker->loop, &worker->sweep_timer);
    worker->sweep_timer.data = worker;
    uv_timer_start(&worker->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);

    for (size_t i = 0; i != conf->num_listeners; ++i) {
        h2o_accept_ctx_t *actx = worker->accept_ctxs + i;
        actx->ctx = &worker->ctx;
        actx->hosts = server->globalconf.hosts;
        actx->ssl_ctx = server->ssl_ctxs[i];
        if (listen(worker->fds[i], SOMAXCONN > 65535 ? SOMAXCONN : 65535) != 0) {
            ret = -errno;
            weir_error("%s: cannot listen: %s", conf->listeners[i].where, strerror(errno));
            break;
        }
        listener_t *l = weir_calloc(1, sizeof(*l));
        l->worker = worker;
        l->accept_ctx = actx;
        l->fd = worker->fds[i];
        worker->fds[i] = -1; /* owned by the listener now */
        uv_poll_init(&worker->loop, &l->poll, l->fd);
        l->poll.data = l;
        worker->listeners[i] = l;
        listener_poll(l, 1);
    }
    report_started(server, ret);

    if (ret == 0)
        uv_run(&worker->loop, UV_RUN_DEFAULT);
    if (!worker->abandoned)
        dispose_worker_loop(worker);
    return NULL;
}

/* Sockets and TLS ----------------------------------------------------------------------------------------------- */

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
        getsockname(fd, (void *)&ss, &sslen);
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    }
    /* Wake the loop for a connection only once the client has sent something (HTTP and TLS clients speak first): one
     * wakeup per connection instead of two (accept, then read). It matters under load: every wakeup interrupts what
     * the core is doing, /calc's sums among them, and in a VM each interruption costs more than the event itself (see
     * bench/NOTES.md). A client that stays silent is accepted when the deferral ends, as without it, and a silent
     * connection costs weir nothing until then. */
    int defer_s = DEFER_ACCEPT_SECONDS;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s));
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

static void log_ssl_errors(const char *where, const char *what)
{
    unsigned long e;
    char buf[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        weir_error("%s: %s: %s", where, what, buf);
    }
}

static SSL_CTX *create_ssl_ctx(const weir_listen_conf_t *lc)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto Error;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->certificate_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, lc->key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto Error;
#if H2O_USE_ALPN
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
#endif
    return ctx;
Error:
    log_ssl_errors(lc->where, "cannot set up TLS");
    SSL_CTX_free(ctx);
    return NULL;
}

/* Configuration into h2o ---------------------------------------------------------------------------------------- */

static int cmp_path_len_desc(const void *a, const void *b)
{
    const weir_path_conf_t *const *x = a, *const *y = b;
    size_t lx = strlen((*x)->path), ly = strlen((*y)->path);
    return lx < ly ? 1 : lx > ly ? -1 : 0;
}

int weir_server_setup_globalconf(h2o_globalconf_t *gc, const weir_server_conf_t *conf, h2o_access_log_filehandle_t *access_log)
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
                h2o_access_log_register(pathconf, access_log);
        }
        free(sorted);
        if (count_requests)
            weir_status_instrument(&hostconf->fallback_path, NULL);
        add_guard(&hostconf->fallback_path);
        h2o_handler_t *notfound = h2o_create_handler(&hostconf->fallback_path, sizeof(*notfound));
        notfound->on_req = on_req_not_found;
        if (access_log != NULL)
            h2o_access_log_register(&hostconf->fallback_path, access_log);
    }
    return 0;
}

static int setup_globalconf(server_t *server)
{
    const weir_server_conf_t *conf = server->conf;

    if (conf->access_log != NULL &&
        (server->access_log = h2o_access_log_open_handle(conf->access_log, NULL, H2O_LOGCONF_ESCAPE_APACHE)) == NULL) {
        weir_error("cannot open access log \"%s\"", conf->access_log);
        return -EIO;
    }
    server->globalconf_inited = 1;
    return weir_server_setup_globalconf(&server->globalconf, conf, server->access_log);
}

/* Kept reachable when workers were given up on, so that leak checkers do not report what the exit reclaims. */
static server_t *abandoned_server;

/* Running ------------------------------------------------------------------------------------------------------- */

static int wait_for_signal(const sigset_t *set)
{
    int sig;
    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            weir_info("SIGHUP ignored: restart weir to apply a new configuration");
            continue;
        }
        return sig;
    }
}

int weir_server_run(const weir_server_conf_t *conf)
{
    server_t *server = weir_calloc(1, sizeof(*server));
    server->conf = conf;
    sigset_t sigs;
    unsigned num_created = 0;
    int ret = 0;

    signal(SIGPIPE, SIG_IGN);
    /* libcurl's global state, before any thread (outbound HTTP of the modules) */
    if ((ret = weir_http_client_global_init()) != 0) {
        weir_error("cannot initialise libcurl");
        free(server);
        return ret;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    /* Blocked before any thread starts, so that every thread inherits the mask and only sigwait sees them. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_mutex_init(&server->mutex, NULL);
    pthread_cond_init(&server->cond, NULL);

    server->ssl_ctxs = weir_calloc(conf->num_listeners, sizeof(*server->ssl_ctxs));
    server->workers = weir_calloc(conf->num_threads, sizeof(*server->workers));
    for (unsigned t = 0; t != conf->num_threads; ++t) {
        worker_t *w = server->workers + t;
        w->server = server;
        w->id = t;
        w->accept_ctxs = weir_calloc(conf->num_listeners, sizeof(*w->accept_ctxs));
        w->listeners = weir_calloc(conf->num_listeners, sizeof(*w->listeners));
        w->fds = weir_malloc(conf->num_listeners * sizeof(*w->fds));
        for (size_t i = 0; i != conf->num_listeners; ++i)
            w->fds[i] = -1;
    }

    for (size_t i = 0; i != conf->num_listeners; ++i) {
        const weir_listen_conf_t *lc = conf->listeners + i;
        if (lc->certificate_file != NULL && (server->ssl_ctxs[i] = create_ssl_ctx(lc)) == NULL) {
            ret = -EINVAL;
            goto Exit;
        }
        uint16_t port = lc->port;
        for (unsigned t = 0; t != conf->num_threads; ++t)
            if ((ret = bind_listener(lc, &port, &server->workers[t].fds[i])) != 0)
                goto Exit;
        const char *host = lc->host != NULL ? lc->host : "*";
        weir_info("listening on %s://%s%s%s:%u", lc->certificate_file != NULL ? "https" : "http", strchr(host, ':') ? "[" : "",
                  host, strchr(host, ':') ? "]" : "", (unsigned)port);
    }

    if ((ret = setup_globalconf(server)) != 0)
        goto Exit;
    struct rlimit rl;
    uint64_t nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 1048576;
    server->max_connections =
        conf->max_connections != 0 ? (size_t)conf->max_connections : weir_server_default_max_connections(conf, nofile);
    weir_respond_set_memory_budget(conf->limit_response_memory);

    for (unsigned t = 0; t != conf->num_threads; ++t) {
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

    if (ret == 0) {
        weir_info("weir %s ready: %u worker thread(s), max-connections %zu (descriptor limit %llu), pid %d", WEIR_VERSION,
                  conf->num_threads, server->max_connections, (unsigned long long)nofile, (int)getpid());
        int sig = wait_for_signal(&sigs);
        weir_info("%s received: draining (grace period %llu ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                  (unsigned long long)conf->graceful_shutdown_timeout_ms);
    }
    for (unsigned t = 0; t != num_created; ++t)
        uv_async_send(&server->workers[t].wake);
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
    if (server->access_log != NULL)
        h2o_mem_release_shared(server->access_log);
    if (server->globalconf_inited)
        h2o_config_dispose(&server->globalconf);
    for (unsigned t = 0; t != conf->num_threads; ++t) {
        worker_t *w = server->workers + t;
        for (size_t i = 0; i != conf->num_listeners; ++i)
            if (w->fds[i] >= 0)
                close(w->fds[i]);
        free(w->accept_ctxs);
        free(w->listeners);
        free(w->fds);
    }
    free(server->workers);
    for (size_t i = 0; i != conf->num_listeners; ++i)
        SSL_CTX_free(server->ssl_ctxs[i]);
    free(server->ssl_ctxs);
    pthread_cond_destroy(&server->cond);
    pthread_mutex_destroy(&server->mutex);
    free(server);
    weir_http_client_global_cleanup();
    return ret;
}
