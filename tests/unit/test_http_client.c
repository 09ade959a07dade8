/*
 * The HTTP client on a private uv loop, against a real HTTP/1.1 server that each test starts on a free port: a small
 * one written here, on its own threads (blocking sockets, one thread per connection, TLS through OpenSSL with a
 * certificate of a CA made by the openssl command for the test). Its paths:
 *   /status/N   answers status N with an ETag and the body "status N\n"
 *   /echo       checks the request body against the test pattern and describes the request in response headers
 *   /bytes/N    answers N bytes of the test pattern
 *   /hang       reads the request and never answers (counts the connection when the client closes it)
 *   /close-mid  promises 1000 bytes, sends 10 and closes
 *   /interim    answers 100 Continue (with headers), then 200
 *   /drop-once  the first time, reads the request and closes the connection without an answer; then as /echo
 * Every test ends with uv_loop_close(&loop) == 0: the client must close every handle it opened.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "unit.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include <uv.h>
#include "weir/common.h"
#include "weir/http_client.h"

#define MIB (1024 * 1024)

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7u) ^ (i >> 11));
}

static char *pattern_alloc(size_t len)
{
    char *p = malloc(len != 0 ? len : 1);
    for (size_t i = 0; i != len; ++i)
        p[i] = (char)pattern(i);
    return p;
}

static int pattern_matches(const char *p, size_t len)
{
    for (size_t i = 0; i != len; ++i)
        if ((unsigned char)p[i] != pattern(i))
            return 0;
    return 1;
}

/* ---- the server ----------------------------------------------------------------------------------------------- */

typedef struct st_conn_t conn_t;

typedef struct {
    int fd;
    int port;
    SSL_CTX *tls;
    pthread_t thread;
    pthread_mutex_t mutex;
    conn_t *conns;
    atomic_int stopping;
    atomic_int accepted;    /* TCP connections accepted */
    atomic_int requests;    /* requests read whole */
    atomic_int hanging;     /* /hang requests read */
    atomic_int peer_closed; /* connections the client closed (or reset) */
    atomic_int tls_failed;  /* TLS handshakes that failed */
    atomic_int dropped;     /* /drop-once requests */
} server_t;

struct st_conn_t {
    server_t *server;
    int fd; /* closed by server_stop only, so that it cannot be reused while the server may still shut it down */
    SSL *ssl;
    pthread_t thread;
    conn_t *next;
    char *buf;
    size_t len, cap;
};

static ssize_t conn_read(conn_t *c, void *p, size_t n)
{
    if (c->ssl != NULL) {
        int r = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        return r > 0 ? r : -1;
    }
    return recv(c->fd, p, n, 0);
}

static int conn_write(conn_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n != 0) {
        ssize_t w;
        if (c->ssl != NULL) {
            int r = SSL_write(c->ssl, s, n > INT_MAX ? INT_MAX : (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = send(c->fd, s, n, MSG_NOSIGNAL);
        }
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more into the buffer; 0 at the end of the connection. */
static int conn_fill(conn_t *c)
{
    if (c->cap - c->len < 16384) {
        c->cap = c->cap * 2 + 16384;
        c->buf = realloc(c->buf, c->cap);
    }
    ssize_t r = conn_read(c, c->buf + c->len, c->cap - c->len);
    if (r <= 0)
        return 0;
    c->len += (size_t)r;
    return 1;
}

/* The value of header @p name in the header block @p head (NUL-terminated), copied into @p out; 0 when absent. */
static int find_header(const char *head, const char *name, char *out, size_t outsz)
{
    size_t name_len = strlen(name);
    const char *line = strstr(head, "\r\n");
    int found = 0;

    out[0] = '\0';
    while (line != NULL && line[2] != '\r') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            while (*v == ' ')
                ++v;
            size_t n = (size_t)(eol - v) < outsz - 1 ? (size_t)(eol - v) : outsz - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            found = 1;
        }
        line = eol;
    }
    return found;
}

static int respond(conn_t *c, int status, const char *headers, const char *body, size_t body_len)
{
    char head[2048];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d Whatever\r\nContent-Length: %zu\r\n%s\r\n", status, body_len, headers);
    if (conn_write(c, head, (size_t)n) != 0)
        return -1;
    return body_len != 0 ? conn_write(c, body, body_len) : 0;
}

/* Waits for the client to close the connection; counts it. */
static void wait_peer_close(conn_t *c)
{
    char sink[4096];
    while (conn_read(c, sink, sizeof(sink)) > 0)
        ;
    if (!c->server->stopping)
        ++c->server->peer_closed;
}

/* Serves one request from the buffer; 0 to go on with the connection, -1 to end it. */
static int serve_one(conn_t *c)
{
    server_t *s = c->server;
    char method[16], path[256], value[512], headers[1536];
    size_t head_len, body_len;
    char *end;

    for (;;) {
        if (c->len != 0 && (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL)
            break;
        if (c->len > 65536)
            return -1;
        if (!conn_fill(c)) {
            if (c->len == 0 && !s->stopping)
                ++s->peer_closed;
            return -1;
        }
    }
    head_len = (size_t)(end + 4 - c->buf);
    char *head = strndup(c->buf, head_len);
    if (sscanf(head, "%15s %255s", method, path) != 2) {
        free(head);
        return -1;
    }
    body_len = find_header(head, "Content-Length", value, sizeof(value)) ? strtoul(value, NULL, 10) : 0;
    while (c->len - head_len < body_len) {
        if (!conn_fill(c)) {
            free(head);
            return -1;
        }
    }
    const char *body = c->buf + head_len;
    ++s->requests;

    int ret = 0;
    if (strncmp(path, "/status/", 8) == 0) {
        int status = atoi(path + 8);
        char text[32];
        snprintf(headers, sizeof(headers), "ETag: \"etag-%d\"\r\n", status);
        snprintf(text, sizeof(text), "status %d\n", status);
        ret = respond(c, status, headers, text, strlen(text));
    } else if (strcmp(path, "/drop-once") == 0 && atomic_fetch_add(&s->dropped, 1) == 0) {
        ret = -1; /* read whole, then the connection is closed without an answer */
    } else if (strcmp(path, "/echo") == 0 || strcmp(path, "/drop-once") == 0) {
        char test[512], *p = headers;
        int has_test = find_header(head, "X-Test", test, sizeof(test));
        int has_empty = find_header(head, "X-Empty", value, sizeof(value));
        p +=
            sprintf(p, "X-Method: %s\r\nX-Body-Length: %zu\r\nX-Body-Ok: %s\r\nX-Expect: %s\r\nX-Empty-Seen: %s\r\n", method,
                    body_len, pattern_matches(body, body_len) ? "yes" : "no",
                    find_header(head, "Expect", value, sizeof(value)) ? "yes" : "no", has_empty && value[0] == '\0' ? "yes" : "no");
        if (has_test)
            p += sprintf(p, "X-Test-Echo: %s\r\n", test);
        sprintf(p, "X-Twice: a\r\nX-Twice:  b \r\n");
        ret = respond(c, 200, headers, "ok\n", 3);
    } else if (strncmp(path, "/bytes/", 7) == 0) {
        size_t n = strtoul(path + 7, NULL, 10);
        char *data = pattern_alloc(n);
        ret = respond(c, 200, "", data, n);
        free(data);
    } else if (strcmp(path, "/hang") == 0) {
        ++s->hanging;
        wait_peer_close(c);
        ret = -1;
    } else if (strcmp(path, "/interim") == 0) {
        static const char interim[] = "HTTP/1.1 100 Continue\r\nX-Early: 1\r\nETag: \"early\"\r\n\r\n";
        snprintf(headers, sizeof(headers), "ETag: \"final\"\r\n");
        ret = conn_write(c, interim, sizeof(interim) - 1) == 0 ? respond(c, 200, headers, "final\n", 6) : -1;
    } else if (strcmp(path, "/close-mid") == 0) {
        static const char partial[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
        conn_write(c, partial, sizeof(partial) - 1);
        ret = -1;
    } else {
        ret = respond(c, 404, "", "not found\n", 10);
    }
    free(head);
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return ret;
}

static void *conn_main(void *_c)
{
    conn_t *c = _c;

    if (c->server->tls != NULL) {
        c->ssl = SSL_new(c->server->tls);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_accept(c->ssl) != 1) {
            ++c->server->tls_failed;
            goto Exit;
        }
    }
    while (serve_one(c) == 0)
        ;
Exit:
    shutdown(c->fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *_s)
{
    server_t *s = _s;

    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (s->stopping || errno != EINTR)
                break;
            continue;
        }
        ++s->accepted;
        conn_t *c = calloc(1, sizeof(*c));
        c->server = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mutex);
        c->next = s->conns;
        s->conns = c;
        assert_int_equal(pthread_create(&c->thread, NULL, conn_main, c), 0);
        pthread_mutex_unlock(&s->mutex);
    }
    return NULL;
}

/* Starts a server on a free port of 127.0.0.1; with @p cert and @p key, it speaks TLS. */
static server_t *server_start(const char *cert, const char *key)
{
    server_t *s = calloc(1, sizeof(*s));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int one = 1;

    pthread_mutex_init(&s->mutex, NULL);
    if (cert != NULL) {
        s->tls = SSL_CTX_new(TLS_server_method());
        assert_int_equal(SSL_CTX_use_certificate_chain_file(s->tls, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(s->tls, key, SSL_FILETYPE_PEM), 1);
    }
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &len), 0);
    assert_int_equal(listen(s->fd, 128), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, accept_main, s), 0);
    return s;
}

static void server_stop(server_t *s)
{
    s->stopping = 1;
    shutdown(s->fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->thread, NULL);
    close(s->fd);
    pthread_mutex_lock(&s->mutex);
    for (conn_t *c = s->conns; c != NULL; c = c->next)
        shutdown(c->fd, SHUT_RDWR); /* wakes the reads */
    pthread_mutex_unlock(&s->mutex);
    while (s->conns != NULL) {
        conn_t *c = s->conns;
        s->conns = c->next;
        pthread_join(c->thread, NULL);
        if (c->ssl != NULL)
            SSL_free(c->ssl);
        close(c->fd);
        free(c->buf);
        free(c);
    }
    if (s->tls != NULL)
        SSL_CTX_free(s->tls);
    pthread_mutex_destroy(&s->mutex);
    free(s);
}

/* A CA and a certificate it signed for localhost and 127.0.0.1, in a temporary directory. */
typedef struct {
    char dir[96];
    char ca[160];
    char cert[160];
    char key[160];
} certs_t;

static void certs_make(certs_t *c)
{
    char cmd[2048];

    weir_unit_temp_dir(c->dir, sizeof(c->dir), "weir-http-client");
    snprintf(c->ca, sizeof(c->ca), "%s/ca.crt", c->dir);
    snprintf(c->cert, sizeof(c->cert), "%s/server.crt", c->dir);
    snprintf(c->key, sizeof(c->key), "%s/server.key", c->dir);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && exec >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt "
             "-days 2 -subj /CN=weir-test-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr "
             "-subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 2 -days 2 -extfile ext.cnf -out server.crt",
             c->dir);
    if (system(cmd) != 0)
        fail_msg("openssl could not make the test certificates (is the openssl command installed?)");
}

static void certs_remove(certs_t *c)
{
    assert_int_equal(weir_unit_remove_tree(c->dir), 0);
}

/* ---- the loop ------------------------------------------------------------------------------------------------- */

static int sequence;   /* orders the callbacks */
static int in_on_done; /* callbacks are never nested */

typedef struct st_outcome_t outcome_t;
struct st_outcome_t {
    int calls;
    int seq;
    int result;
    int status;
    int truncated;
    char errstr[256];
    char *body;
    size_t body_len;
    size_t num_headers; /* asked for (set by start) */
    char *headers[8];   /* their values */
    uint64_t at;        /* uv_hrtime when called */
    /* what the callback does */
    weir_http_client_t *client;
    weir_http_request_t *self;
    weir_http_request_t *cancel;
    int destroy;   /* destroys `client` */
    int try_start; /* starts a request on `client`, its result in start_again */
    int start_again;
    void (*then)(outcome_t *);
};

static void on_done(const weir_http_response_t *res, void *data)
{
    outcome_t *o = data;

    assert_int_equal(in_on_done, 0);
    ++in_on_done;
    ++o->calls;
    o->seq = ++sequence;
    o->result = res->result;
    o->status = res->status;
    o->truncated = res->body_truncated;
    o->at = uv_hrtime();
    snprintf(o->errstr, sizeof(o->errstr), "%s", res->errstr);
    assert_true(res->body_len == 0 ? res->body == NULL : res->body != NULL);
    free(o->body);
    o->body = malloc(res->body_len + 1);
    if (res->body_len != 0)
        memcpy(o->body, res->body, res->body_len);
    o->body[res->body_len] = '\0';
    o->body_len = res->body_len;
    for (size_t i = 0; i != o->num_headers; ++i) {
        free(o->headers[i]);
        o->headers[i] = res->header_values[i] != NULL ? strdup(res->header_values[i]) : NULL;
    }
    if (o->self != NULL)
        weir_http_request_cancel(o->self); /* on the request whose callback runs: nothing */
    if (o->cancel != NULL)
        weir_http_request_cancel(o->cancel);
    if (o->destroy)
        weir_http_client_destroy(o->client);
    if (o->try_start) {
        weir_http_request_params_t p = {.method = "GET", .url = "http://127.0.0.1:1/"};
        o->start_again = weir_http_request_start(o->client, &p, on_done, o, NULL);
    }
    if (o->then != NULL)
        o->then(o);
    --in_on_done;
}

static void outcome_dispose(outcome_t *o)
{
    free(o->body);
    for (size_t i = 0; i != 8; ++i)
        free(o->headers[i]);
}

typedef int (*cond_fn)(void *arg);

typedef struct {
    cond_fn cond;
    void *arg;
    uint64_t deadline;
    int met;
} wait_t;

static void on_check(uv_timer_t *timer)
{
    wait_t *w = timer->data;
    if (w->cond(w->arg)) {
        w->met = 1;
        uv_stop(timer->loop);
    } else if (uv_now(timer->loop) >= w->deadline) {
        uv_stop(timer->loop);
    }
}

/* Runs the loop until cond(arg) holds (checked every millisecond), for at most 20 s; returns whether it held. */
static int run_until(uv_loop_t *loop, cond_fn cond, void *arg)
{
    uv_timer_t timer;
    wait_t w = {cond, arg, uv_now(loop) + 20000, 0};

    if (cond(arg))
        return 1;
    uv_timer_init(loop, &timer);
    timer.data = &w;
    uv_timer_start(&timer, on_check, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return w.met;
}

typedef struct {
    const int *value;
    const atomic_int *atomic;
    int at_least;
} count_t;

static int count_reached(void *_c)
{
    count_t *c = _c;
    int v = c->value != NULL ? *c->value : atomic_load(c->atomic);
    return v >= c->at_least;
}

static void wait_calls(uv_loop_t *loop, outcome_t *o, int n)
{
    count_t c = {.value = &o->calls, .at_least = n};
    assert_true(run_until(loop, count_reached, &c));
}

static void wait_server(uv_loop_t *loop, atomic_int *counter, int n)
{
    count_t c = {.atomic = counter, .at_least = n};
    assert_true(run_until(loop, count_reached, &c));
}

static void make_url(char *url, size_t size, const char *scheme, const char *host, int port, const char *path)
{
    snprintf(url, size, "%s://%s:%d%s", scheme, host, port, path);
}

static void test_begin(uv_loop_t *loop, weir_http_client_t **client)
{
    sequence = 0;
    assert_int_equal(weir_http_client_global_init(), 0);
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(weir_http_client_create(loop, NULL, client), 0);
}

static void test_end(uv_loop_t *loop, weir_http_client_t *client)
{
    if (client != NULL)
        weir_http_client_destroy(client);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    weir_http_client_global_cleanup();
}

static size_t in_flight(weir_http_client_t *client)
{
    weir_http_client_stats_t stats;
    weir_http_client_get_stats(client, &stats);
    return stats.in_flight;
}

/* A request's parameters with the tests' defaults: 30 s, up to 8 MiB of body kept. */
static weir_http_request_params_t params(const char *method, const char *url)
{
    weir_http_request_params_t p = {.method = method, .url = url, .timeout_ms = 30000, .max_response_body = 8 * MIB};
    return p;
}

static void start(weir_http_client_t *client, const weir_http_request_params_t *p, outcome_t *o, weir_http_request_t **req)
{
    assert_true(p->num_response_headers <= 8);
    o->num_headers = p->num_response_headers;
    assert_int_equal(weir_http_request_start(client, p, on_done, o, req), 0);
}

/* ---- the tests ------------------------------------------------------------------------------------------------ */

static void test_create_needs_global_init(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client = NULL;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(weir_http_client_create(&loop, NULL, &client), -EINVAL);
    assert_int_equal(weir_http_client_global_init(), 0);
    assert_int_equal(weir_http_client_global_init(), 0); /* idempotent */
    assert_int_equal(weir_http_client_create(&loop, NULL, &client), 0);
    test_end(&loop, client);
}

/* PUT sends the body from memory, whole and without Expect: 100-continue; GET keeps the whole response body. */
static void test_put_and_get_bodies(void **state)
{
    static const size_t sizes[] = {0, 1, 5 * MIB};
    static const char *const want[] = {"X-Body-Ok", "X-Body-Length", "X-Expect", "X-Method"};
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    char url[128];

    test_begin(&loop, &client);
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(sizes); ++i) {
        char *body = pattern_alloc(sizes[i]), len[32];
        outcome_t put = {0}, get = {0};
        weir_http_request_params_t p;

        make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/echo");
        p = params("PUT", url);
        p.body = body;
        p.body_len = sizes[i];
        p.response_headers = want;
        p.num_response_headers = 4;
        start(client, &p, &put, NULL);
        wait_calls(&loop, &put, 1);
        assert_int_equal(put.result, WEIR_HTTP_OK);
        assert_int_equal(put.status, 200);
        snprintf(len, sizeof(len), "%zu", sizes[i]);
        assert_string_equal(put.headers[1], len);
        assert_string_equal(put.headers[0], "yes");
        assert_string_equal(put.headers[2], "no");
        assert_string_equal(put.headers[3], "PUT");
        assert_string_equal(put.body, "ok\n");

        char path[64];
        snprintf(path, sizeof(path), "/bytes/%zu", sizes[i]);
        make_url(url, sizeof(url), "http", "127.0.0.1", s->port, path);
        p = params("GET", url);
        start(client, &p, &get, NULL);
        wait_calls(&loop, &get, 1);
        assert_int_equal(get.result, WEIR_HTTP_OK);
        assert_int_equal(get.status, 200);
        assert_int_equal(get.body_len, sizes[i]);
        assert_false(get.truncated);
        assert_true(pattern_matches(get.body, get.body_len));
        assert_int_equal(get.calls, 1);
        assert_int_equal(put.calls, 1);
        outcome_dispose(&put);
        outcome_dispose(&get);
        free(body);
    }
    assert_int_equal(in_flight(client), 0);
    test_end(&loop, client);
    server_stop(s);
}

static void test_headers_round_trip(void **state)
{
    static const char *const want[] = {"x-test-echo", "X-EMPTY-SEEN", "x-missing", "X-Method", "x-twice", "X-Body-Length"};
    static const weir_http_header_t headers[] = {{"X-Test", "hello, world"}, {"X-Empty", ""}};
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t put = {0}, post = {0}, del = {0};
    char url[128];
    weir_http_request_params_t p;

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/echo");
    p = params("PUT", url);
    p.headers = headers;
    p.num_headers = 2;
    p.body = "";
    p.response_headers = want;
    p.num_response_headers = 6;
    start(client, &p, &put, NULL);
    wait_calls(&loop, &put, 1);
    assert_int_equal(put.result, WEIR_HTTP_OK);
    assert_string_equal(put.headers[0], "hello, world");
    assert_string_equal(put.headers[1], "yes");
    assert_null(put.headers[2]);
    assert_string_equal(put.headers[3], "PUT");
    assert_string_equal(put.headers[4], "a, b"); /* repeated headers joined, values trimmed */
    assert_string_equal(put.headers[5], "0");

    /* Another method with a body, and one without. */
    p = params("POST", url);
    p.body = "\x07";
    p.body_len = 1;
    p.response_headers = want;
    p.num_response_headers = 6;
    start(client, &p, &post, NULL);
    p = params("DELETE", url);
    p.response_headers = want;
    p.num_response_headers = 6;
    start(client, &p, &del, NULL);
    wait_calls(&loop, &post, 1);
    wait_calls(&loop, &del, 1);
    assert_string_equal(post.headers[3], "POST");
    assert_string_equal(post.headers[5], "1");
    assert_null(post.headers[0]);
    assert_string_equal(post.headers[1], "no");
    assert_string_equal(del.headers[3], "DELETE");
    assert_string_equal(del.headers[5], "0");

    /* What cannot be sent as it is is refused, and nothing is started. */
    static const weir_http_header_t crlf[] = {{"X-Test", "a\r\nX-Injected: 1"}};
    static const weir_http_header_t spaced[] = {{"X Test", "a"}};
    static const char *const bad_want[] = {"X Test"};
    p = params("PUT", url);
    p.headers = crlf;
    p.num_headers = 1;
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    p.headers = spaced;
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    p = params("PUT", url);
    p.response_headers = bad_want;
    p.num_response_headers = 1;
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    p = params("GE T", url);
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    p = params("GET", "ftp://127.0.0.1/");
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    p = params("GET", NULL);
    assert_int_equal(weir_http_request_start(client, &p, on_done, &put, NULL), -EINVAL);
    assert_int_equal(in_flight(client), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(put.calls, 1);
    assert_int_equal(s->requests, 3);

    outcome_dispose(&put);
    outcome_dispose(&post);
    outcome_dispose(&del);
    test_end(&loop, client);
    server_stop(s);
}

/* Every HTTP status is a completed transfer. (With a proxy in the environment, which the client ignores.) */
static void test_status_codes(void **state)
{
    static const int statuses[] = {200, 403, 404, 500};
    static const char *const want[] = {"ETag"};
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o[4] = {{0}};
    char url[128], path[32], text[32];
    weir_http_client_stats_t stats;

    setenv("http_proxy", "http://127.0.0.1:1", 1);
    test_begin(&loop, &client);
    for (size_t i = 0; i != 4; ++i) {
        snprintf(path, sizeof(path), "/status/%d", statuses[i]);
        make_url(url, sizeof(url), "http", "127.0.0.1", s->port, path);
        weir_http_request_params_t p = params("GET", url);
        p.response_headers = want;
        p.num_response_headers = 1;
        start(client, &p, &o[i], NULL);
    }
    for (size_t i = 0; i != 4; ++i) {
        wait_calls(&loop, &o[i], 1);
        assert_int_equal(o[i].result, WEIR_HTTP_OK);
        assert_int_equal(o[i].status, statuses[i]);
        assert_string_equal(o[i].errstr, "");
        snprintf(text, sizeof(text), "status %d\n", statuses[i]);
        assert_string_equal(o[i].body, text);
        snprintf(text, sizeof(text), "\"etag-%d\"", statuses[i]);
        assert_string_equal(o[i].headers[0], text);
        outcome_dispose(&o[i]);
    }
    weir_http_client_get_stats(client, &stats);
    assert_int_equal(stats.sockets, 0); /* the connections are idle, kept for reuse but not watched */
    test_end(&loop, client);
    unsetenv("http_proxy");
    server_stop(s);
}

/* Beyond max_response_body the body is read and dropped: the answer is complete and the connection is reused. */
static void test_response_body_cap(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t capped = {0}, none = {0}, after = {0};
    char url[128];
    weir_http_request_params_t p;
    weir_http_client_stats_t stats;

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/bytes/100000");
    p = params("GET", url);
    p.max_response_body = 1000;
    start(client, &p, &capped, NULL);
    wait_calls(&loop, &capped, 1);
    assert_int_equal(capped.result, WEIR_HTTP_OK);
    assert_int_equal(capped.body_len, 1000);
    assert_true(capped.truncated);
    assert_true(pattern_matches(capped.body, capped.body_len));

    p.max_response_body = 0;
    start(client, &p, &none, NULL);
    wait_calls(&loop, &none, 1);
    assert_int_equal(none.result, WEIR_HTTP_OK);
    assert_int_equal(none.body_len, 0);
    assert_true(none.truncated);

    p.max_response_body = 100000;
    start(client, &p, &after, NULL);
    wait_calls(&loop, &after, 1);
    assert_int_equal(after.body_len, 100000);
    assert_false(after.truncated);
    assert_true(pattern_matches(after.body, after.body_len));
    assert_int_equal(s->accepted, 1);
    weir_http_client_get_stats(client, &stats);
    assert_int_equal(stats.connections, 1);

    outcome_dispose(&capped);
    outcome_dispose(&none);
    outcome_dispose(&after);
    test_end(&loop, client);
    server_stop(s);
}

/* The headers returned are those of the final response, not of a 1xx before it. */
static void test_interim_response(void **state)
{
    static const char *const want[] = {"ETag", "X-Early"};
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o = {0};
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/interim");
    weir_http_request_params_t p = params("GET", url);
    p.response_headers = want;
    p.num_response_headers = 2;
    start(client, &p, &o, NULL);
    wait_calls(&loop, &o, 1);
    assert_int_equal(o.result, WEIR_HTTP_OK);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.body, "final\n");
    assert_string_equal(o.headers[0], "\"final\"");
    assert_null(o.headers[1]);
    outcome_dispose(&o);
    test_end(&loop, client);
    server_stop(s);
}

/* A reused connection that the server closes without answering (as a keep-alive timeout can, just as a request goes
 * out): libcurl sends the request again on a new connection, rewinding the body. */
static void test_retry_on_dropped_reused_connection(void **state)
{
    static const char *const want[] = {"X-Body-Ok", "X-Body-Length"};
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t first = {0}, put = {0};
    char url[128];
    char *body = pattern_alloc(100000);
    weir_http_request_params_t p;

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/status/200");
    p = params("GET", url);
    start(client, &p, &first, NULL);
    wait_calls(&loop, &first, 1);
    assert_int_equal(first.status, 200);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/drop-once");
    p = params("PUT", url);
    p.body = body;
    p.body_len = 100000;
    p.response_headers = want;
    p.num_response_headers = 2;
    start(client, &p, &put, NULL);
    wait_calls(&loop, &put, 1);
    assert_int_equal(put.result, WEIR_HTTP_OK);
    assert_int_equal(put.status, 200);
    assert_string_equal(put.headers[0], "yes");
    assert_string_equal(put.headers[1], "100000");
    assert_int_equal(s->dropped, 2);
    assert_int_equal(s->accepted, 2);
    outcome_dispose(&first);
    outcome_dispose(&put);
    free(body);
    test_end(&loop, client);
    server_stop(s);
}

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

/* Nothing listens: a connect error, not the (long) timeout. */
static void test_connection_refused(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    outcome_t o = {0};
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", free_port(), "/status/200");
    weir_http_request_params_t p = params("GET", url);
    p.timeout_ms = 60000;
    start(client, &p, &o, NULL);
    wait_calls(&loop, &o, 1);
    assert_int_equal(o.result, WEIR_HTTP_ECONNECT);
    assert_int_equal(o.status, 0);
    assert_true(o.errstr[0] != '\0');
    assert_int_equal(in_flight(client), 0);
    outcome_dispose(&o);
    test_end(&loop, client);
}

/* A server that never answers: a timeout, no sooner than asked and within a generous margin; the connection is
 * closed. */
static void test_timeout(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o = {0};
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/hang");
    weir_http_request_params_t p = params("GET", url);
    p.timeout_ms = 300;
    uint64_t t0 = uv_hrtime();
    start(client, &p, &o, NULL);
    wait_calls(&loop, &o, 1);
    assert_int_equal(o.result, WEIR_HTTP_ETIMEDOUT);
    uint64_t elapsed_ms = (o.at - t0) / 1000000;
    assert_true(elapsed_ms >= 290);
    assert_true(elapsed_ms < 300 + 10000);
    wait_server(&loop, &s->peer_closed, 1);
    assert_int_equal(s->hanging, 1);
    outcome_dispose(&o);
    test_end(&loop, client);
    server_stop(s);
}

static void test_close_mid_response(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o = {0};
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/close-mid");
    weir_http_request_params_t p = params("GET", url);
    start(client, &p, &o, NULL);
    wait_calls(&loop, &o, 1);
    assert_int_equal(o.result, WEIR_HTTP_EPROTO);
    assert_int_equal(o.status, 200);
    assert_true(o.errstr[0] != '\0');
    outcome_dispose(&o);
    test_end(&loop, client);
    server_stop(s);
}

/* A cancelled transfer: no callback, the server sees its connection closed, nothing left behind. */
static void test_cancel_in_flight(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o = {0};
    weir_http_request_t *req;
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/hang");
    weir_http_request_params_t p = params("PUT", url);
    p.body = "x";
    p.body_len = 1;
    start(client, &p, &o, &req);
    wait_server(&loop, &s->hanging, 1);
    assert_int_equal(in_flight(client), 1);
    weir_http_request_cancel(req);
    assert_int_equal(in_flight(client), 0);
    wait_server(&loop, &s->peer_closed, 1);
    assert_int_equal(o.calls, 0);
    test_end(&loop, client);
    assert_int_equal(o.calls, 0);
    server_stop(s);
}

/* Cancelling from inside another request's callback; cancelling the request whose callback runs does nothing. */
static void test_cancel_from_callback(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t hang = {0}, quick = {0};
    weir_http_request_t *hang_req;
    char url[128];
    weir_http_request_params_t p;

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/hang");
    p = params("GET", url);
    start(client, &p, &hang, &hang_req);
    wait_server(&loop, &s->hanging, 1);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/status/200");
    p = params("GET", url);
    quick.cancel = hang_req;
    start(client, &p, &quick, &quick.self);
    wait_calls(&loop, &quick, 1);
    assert_int_equal(quick.result, WEIR_HTTP_OK);
    assert_int_equal(in_flight(client), 0);
    wait_server(&loop, &s->peer_closed, 1);
    test_end(&loop, client);
    assert_int_equal(quick.calls, 1);
    assert_int_equal(hang.calls, 0);
    outcome_dispose(&quick);
    server_stop(s);
}

/* Destroying the client completes every transfer in flight with WEIR_HTTP_EABORTED, at once, and refuses new ones. */
static void test_destroy_in_flight(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o[3] = {{0}};
    char url[128];

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/hang");
    for (size_t i = 0; i != 3; ++i) {
        weir_http_request_params_t p = params("GET", url);
        o[i].client = client;
        o[i].try_start = 1;
        start(client, &p, &o[i], NULL);
    }
    wait_server(&loop, &s->hanging, 3);
    weir_http_client_destroy(client);
    for (size_t i = 0; i != 3; ++i) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].result, WEIR_HTTP_EABORTED);
        assert_int_equal(o[i].start_again, -ESHUTDOWN);
        assert_true(o[i].errstr[0] != '\0');
    }
    test_end(&loop, NULL);
    for (int i = 0; i != 2000 && s->peer_closed < 3; ++i)
        usleep(5000);
    assert_int_equal(s->peer_closed, 3);
    for (size_t i = 0; i != 3; ++i) {
        assert_int_equal(o[i].calls, 1);
        outcome_dispose(&o[i]);
    }
    server_stop(s);
}

/* Destroying the client from inside a completion callback: the others are aborted once it returns. */
static void test_destroy_from_callback(void **state)
{
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t hang = {0}, quick = {0};
    char url[128];
    weir_http_request_params_t p;

    test_begin(&loop, &client);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/hang");
    p = params("GET", url);
    start(client, &p, &hang, NULL);
    wait_server(&loop, &s->hanging, 1);
    make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/status/200");
    p = params("GET", url);
    quick.client = client;
    quick.destroy = 1;
    quick.try_start = 1;
    start(client, &p, &quick, NULL);
    wait_calls(&loop, &hang, 1);
    assert_int_equal(quick.calls, 1);
    assert_int_equal(quick.result, WEIR_HTTP_OK);
    assert_int_equal(quick.start_again, -ESHUTDOWN);
    assert_int_equal(hang.result, WEIR_HTTP_EABORTED);
    assert_true(quick.seq < hang.seq);
    test_end(&loop, NULL);
    assert_int_equal(hang.calls, 1);
    outcome_dispose(&quick);
    outcome_dispose(&hang);
    server_stop(s);
}

static void test_concurrent(void **state)
{
    enum { N = 50 };
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s = server_start(NULL, NULL);
    outcome_t o[N] = {{0}};
    char *bodies[N];
    char url[128], path[64];
    weir_http_client_stats_t stats;

    test_begin(&loop, &client);
    for (size_t i = 0; i != N; ++i) {
        weir_http_request_params_t p;
        if (i % 2 == 0) {
            snprintf(path, sizeof(path), "/bytes/%zu", 1000 + i * 1000);
            make_url(url, sizeof(url), "http", "127.0.0.1", s->port, path);
            p = params("GET", url);
            bodies[i] = NULL;
        } else {
            make_url(url, sizeof(url), "http", "127.0.0.1", s->port, "/echo");
            p = params("PUT", url);
            bodies[i] = pattern_alloc(i * 1000);
            p.body = bodies[i];
            p.body_len = i * 1000;
        }
        start(client, &p, &o[i], NULL);
    }
    assert_int_equal(in_flight(client), N);
    for (size_t i = 0; i != N; ++i) {
        wait_calls(&loop, &o[i], 1);
        assert_int_equal(o[i].result, WEIR_HTTP_OK);
        assert_int_equal(o[i].status, 200);
        if (i % 2 == 0) {
            assert_int_equal(o[i].body_len, 1000 + i * 1000);
            assert_true(pattern_matches(o[i].body, o[i].body_len));
        } else {
            assert_string_equal(o[i].body, "ok\n");
        }
    }
    weir_http_client_get_stats(client, &stats);
    assert_int_equal(stats.in_flight, 0);
    assert_int_equal(stats.sockets, 0);
    assert_int_equal(stats.completed, N);
    assert_int_equal(stats.connections, s->accepted);
    assert_int_equal(s->requests, N);
    for (size_t i = 0; i != N; ++i) {
        assert_int_equal(o[i].calls, 1);
        outcome_dispose(&o[i]);
        free(bodies[i]);
    }
    test_end(&loop, client);
    server_stop(s);
}

/* 20 requests one after the other, each started from the previous one's callback, GETs and PUTs: one connection. */
typedef struct {
    weir_http_client_t *client;
    char url_get[128];
    char url_put[128];
    char *body;
    outcome_t o[20];
    int next;
} chain_t;

static chain_t *the_chain;

static void chain_next(outcome_t *prev)
{
    chain_t *c = the_chain;
    weir_http_request_params_t p;

    if (prev != NULL) {
        assert_int_equal(prev->result, WEIR_HTTP_OK);
        assert_int_equal(prev->status, 200);
    }
    if (c->next == 20)
        return;
    if (c->next % 2 == 0) {
        p = params("GET", c->url_get);
    } else {
        p = params("PUT", c->url_put);
        p.body = c->body;
        p.body_len = 1024;
    }
    c->o[c->next].then = chain_next;
    start(c->client, &p, &c->o[c->next++], NULL);
}

static void test_connection_reuse(void **state)
{
    uv_loop_t loop;
    server_t *s = server_start(NULL, NULL);
    chain_t c = {0};
    weir_http_client_stats_t stats;

    the_chain = &c;
    test_begin(&loop, &c.client);
    make_url(c.url_get, sizeof(c.url_get), "http", "127.0.0.1", s->port, "/status/200");
    make_url(c.url_put, sizeof(c.url_put), "http", "127.0.0.1", s->port, "/echo");
    c.body = pattern_alloc(1024);
    chain_next(NULL);
    wait_calls(&loop, &c.o[19], 1);
    assert_int_equal(s->requests, 20);
    assert_true(s->accepted >= 1 && s->accepted <= 2);
    weir_http_client_get_stats(c.client, &stats);
    assert_int_equal(stats.connections, s->accepted);
    assert_int_equal(stats.completed, 20);
    for (size_t i = 0; i != 20; ++i) {
        assert_int_equal(c.o[i].calls, 1);
        outcome_dispose(&c.o[i]);
    }
    free(c.body);
    test_end(&loop, c.client);
    server_stop(s);
}

/* https verified against the given CA file: GET and a 1 MiB PUT; by name (resolved off the loop) and by address. */
static void test_https_with_ca_file(void **state)
{
    static const char *const want[] = {"X-Body-Ok"};
    certs_t certs;
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s;
    outcome_t get = {0}, put = {0};
    char url[128];
    char *body = pattern_alloc(MIB);
    weir_http_request_params_t p;

    certs_make(&certs);
    s = server_start(certs.cert, certs.key);
    test_begin(&loop, &client);
    make_url(url, sizeof(url), "https", "localhost", s->port, "/status/200");
    p = params("GET", url);
    p.ca_file = certs.ca;
    start(client, &p, &get, NULL);
    wait_calls(&loop, &get, 1);
    assert_int_equal(get.result, WEIR_HTTP_OK);
    assert_int_equal(get.status, 200);
    assert_string_equal(get.body, "status 200\n");

    make_url(url, sizeof(url), "https", "127.0.0.1", s->port, "/echo");
    p = params("PUT", url);
    p.ca_file = certs.ca;
    p.body = body;
    p.body_len = MIB;
    p.response_headers = want;
    p.num_response_headers = 1;
    start(client, &p, &put, NULL);
    wait_calls(&loop, &put, 1);
    assert_int_equal(put.result, WEIR_HTTP_OK);
    assert_string_equal(put.headers[0], "yes");
    assert_int_equal(s->tls_failed, 0);

    outcome_dispose(&get);
    outcome_dispose(&put);
    free(body);
    test_end(&loop, client);
    server_stop(s);
    certs_remove(&certs);
}

/* Without the CA file, the system's store does not know the test CA: the transfer fails verification. */
static void test_https_without_ca_file_fails(void **state)
{
    certs_t certs;
    uv_loop_t loop;
    weir_http_client_t *client;
    server_t *s;
    outcome_t o = {0};
    char url[128];

    certs_make(&certs);
    s = server_start(certs.cert, certs.key);
    test_begin(&loop, &client);
    make_url(url, sizeof(url), "https", "localhost", s->port, "/status/200");
    weir_http_request_params_t p = params("GET", url);
    start(client, &p, &o, NULL);
    wait_calls(&loop, &o, 1);
    assert_int_equal(o.result, WEIR_HTTP_EPROTO);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.errstr, "certificate"));
    assert_int_equal(s->requests, 0);
    outcome_dispose(&o);
    test_end(&loop, client);
    server_stop(s);
    certs_remove(&certs);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_create_needs_global_init), cmocka_unit_test(test_put_and_get_bodies),
                cmocka_unit_test(test_headers_round_trip), cmocka_unit_test(test_status_codes),
                cmocka_unit_test(test_response_body_cap), cmocka_unit_test(test_interim_response),
                cmocka_unit_test(test_retry_on_dropped_reused_connection), cmocka_unit_test(test_connection_refused),
                cmocka_unit_test(test_timeout), cmocka_unit_test(test_close_mid_response), cmocka_unit_test(test_cancel_in_flight),
                cmocka_unit_test(test_cancel_from_callback), cmocka_unit_test(test_destroy_in_flight),
                cmocka_unit_test(test_destroy_from_callback), cmocka_unit_test(test_concurrent),
                cmocka_unit_test(test_connection_reuse), cmocka_unit_test(test_https_with_ca_file),
                cmocka_unit_test(test_https_without_ca_file_fails))
