/*
 * The whole HTTP stack: the input goes through a socket pair into h2o and weir, as a client's bytes on one connection,
 * with every module registered (the configuration below: /upload with no delay, /calc with a small calc.max-n, /cache
 * in memory). The first byte chooses how: bit 0 set, HTTP/2 (the connection preface and an empty SETTINGS frame are
 * sent first, so that the input is frames); bit 1 set, the client half-closes only once the server is done (no sum
 * of /calc outstanding, nothing received for IDLE_MS) after the last byte was written, otherwise at once, so that not
 * every request is seen as abandoned (h2o drops HTTP/2 streams at the end of the input, and weir's /upload answers
 * 503 to an HTTP/1 client that has half-closed). The rest of the input is what the client writes.
 *
 * The configuration, the h2o context and the libuv loop are made once per process (LLVMFuzzerInitialize); each input
 * gets its own connection: a socketpair, the server end accepted as the server accepts one (weir_conn_open_unix: the
 * connection's record, with the HTTP/1 framing guard in front of h2o's parser, then h2o_accept), the client end driven
 * by a uv_poll_t on the same loop (written, half-closed, read until the server closes). The loop runs until both ends
 * are closed. A connection still open DEADLINE_MS after it started is given up by its client (it closes its end); one
 * still open GRACE_MS after that is a hang, reported as a failure, and so is a descriptor of the connection left open
 * once it is over. What an input leaves behind: values stored in the memory cache (bounded by cache.memory.max-bytes),
 * and /calc sums still running for a client that has left (their results are dropped when they come back).
 *
 * Debian's libh2o is not built with coverage instrumentation: libFuzzer sees the edges of weir's code only.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "fuzz.h"
#include "weir/common.h"
#include "weir/conn.h"
#include "weir/server.h"
#include "weir/workpool.h"

#define DEADLINE_MS 2000
#define GRACE_MS 5000
#define IDLE_MS 1

static const char SERVER_YAML[] = "listen:\n"
                                  "  port: 0\n"
                                  "limit-request-body: 16K\n"
                                  "http1-request-timeout: 1\n"
                                  "http2-idle-timeout: 1\n"
                                  "hosts:\n"
                                  "  default:\n"
                                  "    paths:\n"
                                  "      /upload:\n"
                                  "        upload.concurrency: 1\n"
                                  "        upload.delay-min: 0\n"
                                  "        upload.delay-max: 0\n"
                                  "      /calc:\n"
                                  "        calc.n: 100\n"
                                  "        calc.max-n: 1000\n"
                                  "        calc.threads: 1\n"
                                  "      /cache:\n"
                                  "        cache.backend: memory\n"
                                  "        cache.max-key-size: 16\n"
                                  "        cache.max-value-size: 1K\n"
                                  "        cache.memory.max-bytes: 64K\n";

/* The client preface of HTTP/2 (RFC 7540, 3.5) and an empty SETTINGS frame. */
static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)

/* One input's connection. */
typedef struct st_client_t {
    uv_poll_t poll;
    int fd; /* the client's end; -1 once closed */
    uint8_t *out;
    size_t out_len, written;
    int late_half_close;
    int half_closed;
    int server_closed;
    int client_closed;
    int given_up;
} client_t;

static struct {
    weir_server_conf_t conf;
    h2o_globalconf_t globalconf;
    uv_loop_t loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    weir_conn_registry_t conns;
    h2o_handler_t *calc; /* its context on this loop is its work pool's inbox */
    uv_timer_t deadline;
    uv_timer_t idle;
    client_t *client;
    unsigned long long inputs, given_up, bytes_received;
} g;

static void on_client_closed(uv_handle_t *handle)
{
    client_t *c = handle->data;
    close(c->fd);
    c->fd = -1;
    c->client_closed = 1;
}

static void close_client(client_t *c)
{
    if (c->fd < 0 || uv_is_closing((uv_handle_t *)&c->poll))
        return;
    uv_timer_stop(&g.idle);
    uv_close((uv_handle_t *)&c->poll, on_client_closed);
}

static void half_close(client_t *c)
{
    if (!c->half_closed) {
        shutdown(c->fd, SHUT_WR);
        c->half_closed = 1;
    }
}

static void on_idle(uv_timer_t *timer)
{
    if (g.client == NULL || g.client->fd < 0)
        return;
    /* a sum still running answers later: wait for it (the pool's eventfd wakes the loop) */
    if (weir_workpool_inbox_outstanding(h2o_context_get_handler_context(&g.ctx, g.calc)) != 0) {
        uv_timer_start(&g.idle, on_idle, IDLE_MS, 0);
        return;
    }
    half_close(g.client);
}

/* The module's handler registered for @p path on the first host (the last one: the server's guard comes first). */
static h2o_handler_t *find_handler(const char *path)
{
    h2o_hostconf_t *host = g.globalconf.hosts[0];
    for (size_t i = 0; i != host->paths.size; ++i)
        if (strcmp(host->paths.entries[i].path.base, path) == 0 && host->paths.entries[i].handlers.size == 2)
            return host->paths.entries[i].handlers.entries[1];
    fprintf(stderr, "http: no handler for %s\n", path);
    abort();
}

static void on_client_io(uv_poll_t *poll, int status, int events)
{
    client_t *c = poll->data;
    char buf[16384];

    if (status < 0) {
        close_client(c);
        return;
    }
    if (events & UV_READABLE) {
        ssize_t n;
        int got = 0;
        while ((n = read(c->fd, buf, sizeof(buf))) > 0) {
            got = 1;
            g.bytes_received += (unsigned long long)n;
            if (getenv("WEIR_FUZZ_HTTP_ECHO") != NULL)
                fwrite(buf, 1, (size_t)n, stderr);
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            /* the server closed its end (or reset it) */
            close_client(c);
            return;
        }
        if (got && c->written == c->out_len && !c->half_closed)
            uv_timer_start(&g.idle, on_idle, IDLE_MS, 0);
    }
    if (events & UV_WRITABLE) {
        while (c->written < c->out_len) {
            ssize_t n = write(c->fd, c->out + c->written, c->out_len - c->written);
            if (n > 0) {
                c->written += (size_t)n;
            } else if (n < 0 && errno == EAGAIN) {
                return;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                /* the server stopped reading (EPIPE): what is left is not sent */
                c->written = c->out_len;
            }
        }
        uv_poll_start(&c->poll, UV_READABLE, on_client_io);
        if (c->late_half_close)
            uv_timer_start(&g.idle, on_idle, IDLE_MS, 0);
        else
            half_close(c);
    }
}

static void on_deadline(uv_timer_t *timer)
{
    client_t *c = g.client;

    if (!c->given_up) {
        /* The client gives up: the server sees its end close, and must close the connection. */
        c->given_up = 1;
        ++g.given_up;
        close_client(c);
        uv_timer_start(&g.deadline, on_deadline, GRACE_MS, 0);
        return;
    }
    fprintf(stderr, "http: the connection is still open %d ms after its client closed its end\n", GRACE_MS);
    abort();
}

static void on_server_closed(weir_conn_registry_t *reg, weir_conn_t *conn)
{
    if (g.client != NULL)
        g.client->server_closed = 1;
}

static void teardown(void)
{
    fprintf(stderr, "http: %llu input(s), %llu byte(s) received, %llu given up by the client after %d ms\n", g.inputs,
            g.bytes_received, g.given_up, DEADLINE_MS);
    uv_close((uv_handle_t *)&g.deadline, NULL);
    uv_close((uv_handle_t *)&g.idle, NULL);
    h2o_context_dispose(&g.ctx);
    weir_conn_registry_set_current(NULL);
    /* every handle closes: weir's per-thread state, h2o's timers, sums that were still running */
    for (int i = 0; uv_loop_close(&g.loop) == UV_EBUSY; ++i) {
        FUZZ_CHECK(i < 1000);
        uv_run(&g.loop, UV_RUN_ONCE);
    }
    weir_conn_registry_dispose(&g.conns);
    h2o_config_dispose(&g.globalconf);
    weir_server_conf_dispose(&g.conf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;

    signal(SIGPIPE, SIG_IGN);
    weir_conf_errors_init(&errs);
    weir_server_conf_init(&g.conf);
    root = weir_conf_load_string("http.c", SERVER_YAML, sizeof(SERVER_YAML) - 1, &errs);
    if (root == NULL || weir_server_conf_parse(&g.conf, root, &errs) != 0) {
        weir_conf_errors_print(&errs);
        abort();
    }
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
    FUZZ_CHECK(weir_server_setup_globalconf(&g.globalconf, &g.conf, NULL) == 0);
    FUZZ_CHECK(uv_loop_init(&g.loop) == 0);
    h2o_context_init(&g.ctx, &g.loop, &g.globalconf);
    g.accept_ctx.ctx = &g.ctx;
    g.accept_ctx.hosts = g.globalconf.hosts;
    g.calc = find_handler("/calc");
    weir_conn_registry_init(&g.conns, &g.loop, g.conf.limit_request_body, on_server_closed);
    weir_conn_registry_set_current(&g.conns);
    uv_timer_init(&g.loop, &g.deadline);
    uv_timer_init(&g.loop, &g.idle);
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_t c = {.fd = -1};
    int fds[2];

    if (size == 0)
        return 0;
    ++g.inputs;
    int http2 = data[0] & 1;
    c.late_half_close = (data[0] & 2) != 0;
    ++data, --size;
    c.out_len = (http2 ? H2_PREFACE_LEN : 0) + size;
    c.out = malloc(c.out_len + 1);
    if (http2)
        memcpy(c.out, H2_PREFACE, H2_PREFACE_LEN);
    memcpy(c.out + (http2 ? H2_PREFACE_LEN : 0), data, size);

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    g.client = &c;
    int err;
    weir_conn_t *conn = weir_conn_open_unix(&g.conns, fds[0], NULL, &err);
    FUZZ_CHECK(conn != NULL);
    h2o_accept(&g.accept_ctx, conn->sock);

    c.fd = fds[1];
    FUZZ_CHECK(uv_poll_init(&g.loop, &c.poll, c.fd) == 0);
    c.poll.data = &c;
    uv_poll_start(&c.poll, UV_READABLE | UV_WRITABLE, on_client_io);
    uv_update_time(&g.loop);
    uv_timer_start(&g.deadline, on_deadline, DEADLINE_MS, 0);

    while (!c.server_closed || !c.client_closed)
        uv_run(&g.loop, UV_RUN_ONCE);

    uv_timer_stop(&g.deadline);
    uv_timer_stop(&g.idle);
    g.client = NULL;
    free(c.out);
    /* both ends are closed: h2o closed the server's (no descriptor leaked, no record left), the client its own */
    FUZZ_CHECK(g.conns.num_conns == 0);
    FUZZ_CHECK(fcntl(fds[0], F_GETFD) == -1 && errno == EBADF);
    FUZZ_CHECK(fcntl(fds[1], F_GETFD) == -1 && errno == EBADF);
    return 0;
}
