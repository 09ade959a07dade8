/*
 * The HTTP client (see http_client.h): libcurl's multi-socket interface on a libuv loop.
 *
 * libcurl tells us which sockets to watch (on_curl_socket: one uv_poll_t per socket, linked to the socket with
 * curl_multi_assign) and when to call it back without socket activity (on_curl_timer: one uv_timer_t); we call
 * curl_multi_socket_action from the poll and timer callbacks, then collect the finished transfers. libcurl forbids
 * calling into the multi handle from inside its own callbacks, so user code (completion callbacks) runs only from
 * collect_done, after curl_multi_socket_action has returned; and libcurl's callbacks here never call user code.
 *
 * A poll handle is closed as soon as libcurl says it is done with the socket (CURL_POLL_REMOVE, sent before libcurl
 * closes the socket), so that the descriptor is never watched after it is closed and can be reused at once. Each
 * poll handle frees itself in its close callback; the client is freed in its timer's close callback, and the poll
 * handles never touch the client once closing.
 *
 * libcurl is not linked: weir_http_client_global_init loads it (dlopen) the first time a configuration needs it, so
 * that a server without an S3 upload backend never maps libcurl and the dozen libraries it pulls in (GnuTLS, Kerberos,
 * LDAP, libssh2...: about 6 MiB of resident memory in every process, measured on Debian 12). Its functions are called
 * through the table `libcurl`, typed from curl.h.
 */
#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <h2o/linklist.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/http_client.h"

/* The library loaded on first use: Debian's and Ubuntu's libcurl4 (OpenSSL), 7.68 or later. */
#define WEIR_LIBCURL_SONAME "libcurl.so.4"
#define DEFAULT_MAX_CONNECTIONS 16
/* libcurl's upload buffer is 64 KiB by default; 16 KiB (its minimum) is as fast on a LAN and keeps the memory of a
 * transfer in flight small. */
#define UPLOAD_BUFFER_SIZE 16384

typedef struct st_socket_t {
    uv_poll_t poll;
    curl_socket_t fd;
    weir_http_client_t *client; /* valid while linked */
    h2o_linklist_t link;        /* in client->sockets until its handle is closed */
} socket_t;

struct st_weir_http_client_t {
    uv_timer_t timer; /* the first member: its close callback frees the client */
    uv_loop_t *loop;
    pthread_t thread;
    CURLM *multi;
    h2o_linklist_t requests; /* weir_http_request_t, in flight */
    h2o_linklist_t sockets;  /* socket_t with an open poll handle */
    unsigned dispatching;    /* > 0 while collect_done may be calling completion callbacks */
    int destroy_pending;     /* weir_http_client_destroy was called while dispatching */
    int destroying;          /* requests are refused */
    weir_http_client_stats_t stats;
};

typedef enum en_request_state_t {
    REQUEST_IN_FLIGHT,
    REQUEST_COMPLETING, /* its callback is running */
} request_state_t;

struct st_weir_http_request_t {
    h2o_linklist_t link; /* in client->requests while in flight */
    weir_http_client_t *client;
    CURL *easy;
    request_state_t state;
    weir_http_done_cb cb;
    void *data;
    struct curl_slist *headers;
    /* the body to send */
    const char *body;
    size_t body_len;
    size_t body_sent;
    /* the response */
    char *resp_body;
    size_t resp_len;
    size_t resp_capacity;
    size_t resp_max;
    int resp_truncated;
    size_t num_want;
    char **want_names;
    char **want_values;
    char errbuf[CURL_ERROR_SIZE];
};

/* ---- libcurl's global state ----------------------------------------------------------------------------------- */

static pthread_mutex_t global_mutex = PTHREAD_MUTEX_INITIALIZER;
static int global_initialized;

/* The functions of libcurl weir calls, resolved by load_libcurl (never unloaded: its resolver threads may outlive a
 * transfer). */
static struct {
    void *handle;
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_global_cleanup) *global_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
    __typeof__(curl_version_info) *version_info;
    __typeof__(curl_multi_init) *multi_init;
    __typeof__(curl_multi_setopt) *multi_setopt;
    __typeof__(curl_multi_add_handle) *multi_add_handle;
    __typeof__(curl_multi_remove_handle) *multi_remove_handle;
    __typeof__(curl_multi_socket_action) *multi_socket_action;
    __typeof__(curl_multi_assign) *multi_assign;
    __typeof__(curl_multi_info_read) *multi_info_read;
    __typeof__(curl_multi_cleanup) *multi_cleanup;
} libcurl;

/* Loads libcurl and resolves libcurl's functions; called with global_mutex held. */
static int load_libcurl(void)
{
    void *h;

    if (libcurl.handle != NULL)
        return 0;
    if ((h = dlopen(WEIR_LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        weir_error("http client: cannot load libcurl (%s): install libcurl4 (7.68 or later)", dlerror());
        return -ENOENT;
    }
/* a union converts the object pointer dlsym returns into the function pointer it is (as POSIX allows) */
#define RESOLVE(name)                                                                                                              \
    do {                                                                                                                           \
        union {                                                                                                                    \
            void *sym;                                                                                                             \
            __typeof__(libcurl.name) fn;                                                                                           \
        } u = {.sym = dlsym(h, "curl_" #name)};                                                                                    \
        if (u.sym == NULL) {                                                                                                       \
            weir_error("http client: %s has no curl_" #name, WEIR_LIBCURL_SONAME);                                                 \
            dlclose(h);                                                                                                            \
            return -ENOTSUP;                                                                                                       \
        }                                                                                                                          \
        libcurl.name = u.fn;                                                                                                       \
    } while (0)
    RESOLVE(global_init);
    RESOLVE(global_cleanup);
    RESOLVE(easy_strerror);
    RESOLVE(easy_init);
    RESOLVE(easy_setopt);
    RESOLVE(easy_getinfo);
    RESOLVE(easy_cleanup);
    RESOLVE(slist_append);
    RESOLVE(slist_free_all);
    RESOLVE(version_info);
    RESOLVE(multi_init);
    RESOLVE(multi_setopt);
    RESOLVE(multi_add_handle);
    RESOLVE(multi_remove_handle);
    RESOLVE(multi_socket_action);
    RESOLVE(multi_assign);
    RESOLVE(multi_info_read);
    RESOLVE(multi_cleanup);
#undef RESOLVE
    libcurl.handle = h;
    return 0;
}

int weir_http_client_global_init(void)
{
    int ret = 0;

    pthread_mutex_lock(&global_mutex);
    if (!global_initialized && (ret = load_libcurl()) == 0) {
        CURLcode code = libcurl.global_init(CURL_GLOBAL_DEFAULT);
        if (code == CURLE_OK) {
            global_initialized = 1;
        } else {
            weir_error("http client: curl_global_init failed: %s", libcurl.easy_strerror(code));
            ret = -EIO;
        }
    }
    pthread_mutex_unlock(&global_mutex);
    return ret;
}

void weir_http_client_global_cleanup(void)
{
    pthread_mutex_lock(&global_mutex);
    if (global_initialized) {
        libcurl.global_cleanup();
        global_initialized = 0;
    }
    pthread_mutex_unlock(&global_mutex);
}

static int is_global_initialized(void)
{
    pthread_mutex_lock(&global_mutex);
    int ret = global_initialized;
    pthread_mutex_unlock(&global_mutex);
    return ret;
}

/* ---- requests ------------------------------------------------------------------------------------------------- */

static void free_request(weir_http_request_t *req)
{
    if (req->easy != NULL)
        libcurl.easy_cleanup(req->easy);
    libcurl.slist_free_all(req->headers);
    for (size_t i = 0; i != req->num_want; ++i) {
        free(req->want_names[i]);
        free(req->want_values[i]);
    }
    free(req->want_names);
    free(req->want_values);
    free(req->resp_body);
    free(req);
}

/* Takes @p req out of the multi handle (closing its connection when the transfer was not finished) and counts it. */
static void detach_request(weir_http_request_t *req)
{
    weir_http_client_t *client = req->client;
    long connects = 0;

    h2o_linklist_unlink(&req->link);
    if (libcurl.easy_getinfo(req->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
        client->stats.connections += (uint64_t)connects;
    libcurl.multi_remove_handle(client->multi, req->easy);
    --client->stats.in_flight;
}

static int map_result(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return WEIR_HTTP_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return WEIR_HTTP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return WEIR_HTTP_ETIMEDOUT;
    default:
        return WEIR_HTTP_EPROTO;
    }
}

/* Calls the callback of a detached request, then frees it. */
static void complete_request(weir_http_request_t *req, int result, CURLcode code)
{
    weir_http_client_t *client = req->client;
    weir_http_response_t res = {.result = result, .errstr = ""};
    long status = 0;

    if (libcurl.easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status > 0 && status < 1000)
        res.status = (int)status;
    if (result != WEIR_HTTP_OK) {
        if (result == WEIR_HTTP_EABORTED)
            res.errstr = "aborted: the HTTP client was destroyed";
        else
            res.errstr = req->errbuf[0] != '\0' ? req->errbuf : libcurl.easy_strerror(code);
    }
    res.body = req->resp_len != 0 ? req->resp_body : NULL;
    res.body_len = req->resp_len;
    res.body_truncated = req->resp_truncated;
    res.header_values = (const char *const *)req->want_values;

    req->state = REQUEST_COMPLETING;
    ++client->stats.completed;
    req->cb(&res, req->data);
    free_request(req);
}

static size_t on_curl_read(char *buf, size_t size, size_t nitems, void *_req)
{
    weir_http_request_t *req = _req;
    size_t n = req->body_len - req->body_sent;

    if (n > size * nitems)
        n = size * nitems;
    memcpy(buf, req->body + req->body_sent, n);
    req->body_sent += n;
    return n;
}

/* libcurl rewinds the body when it sends the request again on a new connection (a reused one that the server had
 * closed). */
static int on_curl_seek(void *_req, curl_off_t offset, int origin)
{
    weir_http_request_t *req = _req;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > req->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    req->body_sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_curl_write(char *ptr, size_t size, size_t nmemb, void *_req)
{
    weir_http_request_t *req = _req;
    size_t n = size * nmemb, keep = n;

    if (keep > req->resp_max - req->resp_len) {
        keep = req->resp_max - req->resp_len;
        req->resp_truncated = 1;
    }
    if (keep != 0) {
        if (req->resp_len + keep > req->resp_capacity) {
            size_t capacity = req->resp_capacity != 0 ? req->resp_capacity : 4096;
            while (capacity < req->resp_len + keep && capacity <= SIZE_MAX / 2)
                capacity *= 2;
            if (capacity > req->resp_max || capacity < req->resp_len + keep)
                capacity = req->resp_max;
            req->resp_body = weir_realloc(req->resp_body, capacity);
            req->resp_capacity = capacity;
        }
        memcpy(req->resp_body + req->resp_len, ptr, keep);
        req->resp_len += keep;
    }
    return n; /* the rest is read and dropped, so that the connection stays usable */
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t on_curl_header(char *line, size_t size, size_t nitems, void *_req)
{
    weir_http_request_t *req = _req;
    size_t len = size * nitems;
    const char *colon, *value, *end = line + len;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the headers of the previous one. */
        for (size_t i = 0; i != req->num_want; ++i) {
            free(req->want_values[i]);
            req->want_values[i] = NULL;
        }
        return len;
    }
    if (req->num_want == 0 || (colon = memchr(line, ':', len)) == NULL)
        return len;
    for (value = colon + 1; value < end && is_space(*value); ++value)
        ;
    while (end > value && is_space(end[-1]))
        --end;
    for (size_t i = 0; i != req->num_want; ++i) {
        size_t name_len = strlen(req->want_names[i]);
        if (name_len != (size_t)(colon - line) || strncasecmp(line, req->want_names[i], name_len) != 0)
            continue;
        if (req->want_values[i] == NULL) {
            req->want_values[i] = weir_strndup(value, (size_t)(end - value));
        } else {
            size_t old = strlen(req->want_values[i]), add = (size_t)(end - value);
            req->want_values[i] = weir_realloc(req->want_values[i], old + 2 + add + 1);
            memcpy(req->want_values[i] + old, ", ", 2);
            memcpy(req->want_values[i] + old + 2, value, add);
            req->want_values[i][old + 2 + add] = '\0';
        }
    }
    return len;
}

/* ---- the loop side -------------------------------------------------------------------------------------------- */

static void finish_destroy(weir_http_client_t *client);

/* Completes the transfers libcurl has finished. Called after every curl_multi_socket_action. */
static void collect_done(weir_http_client_t *client)
{
    CURLMsg *msg;
    int left;

    while (!client->destroy_pending && (msg = libcurl.multi_info_read(client->multi, &left)) != NULL) {
        char *priv = NULL;
        weir_http_request_t *req;
        CURLcode code = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        if (libcurl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL)
            continue;
        req = (weir_http_request_t *)priv;
        detach_request(req);
        complete_request(req, map_result(code), code);
    }
}

static void socket_action(weir_http_client_t *client, curl_socket_t fd, int flags)
{
    int running;

    ++client->dispatching;
    libcurl.multi_socket_action(client->multi, fd, flags, &running);
    collect_done(client);
    if (--client->dispatching == 0 && client->destroy_pending)
        finish_destroy(client);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    socket_t *sock = poll->data;
    int flags = 0;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if ((events & UV_READABLE) != 0)
        flags |= CURL_CSELECT_IN;
    if ((events & UV_WRITABLE) != 0)
        flags |= CURL_CSELECT_OUT;
    socket_action(sock->client, sock->fd, flags);
}

static void on_timer(uv_timer_t *timer)
{
    socket_action(timer->data, CURL_SOCKET_TIMEOUT, 0);
}

static void on_socket_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void close_socket(socket_t *sock)
{
    h2o_linklist_unlink(&sock->link);
    --sock->client->stats.sockets;
    sock->client = NULL;
    uv_close((uv_handle_t *)&sock->poll, on_socket_closed);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *_client, void *_sock)
{
    weir_http_client_t *client = _client;
    socket_t *sock = _sock;
    int events = 0, err;

    if (what == CURL_POLL_REMOVE) {
        if (sock != NULL) {
            libcurl.multi_assign(client->multi, fd, NULL);
            close_socket(sock);
        }
        return 0;
    }
    if (sock == NULL) {
        sock = weir_calloc(1, sizeof(*sock));
        if ((err = uv_poll_init_socket(client->loop, &sock->poll, fd)) != 0) {
            /* Not expected for a socket libcurl opened; its transfer will time out. */
            weir_error("http client: cannot watch socket %d: %s", (int)fd, uv_strerror(err));
            free(sock);
            return -1;
        }
        sock->poll.data = sock;
        sock->fd = fd;
        sock->client = client;
        h2o_linklist_insert(&client->sockets, &sock->link);
        ++client->stats.sockets;
        libcurl.multi_assign(client->multi, fd, sock);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&sock->poll, events, on_poll);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *_client)
{
    weir_http_client_t *client = _client;

    /* curl_multi_socket_action may not be called from here: a zero timeout runs on the next turn of the loop. */
    if (timeout_ms < 0)
        uv_timer_stop(&client->timer);
    else
        uv_timer_start(&client->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the client ----------------------------------------------------------------------------------------------- */

int weir_http_client_create(uv_loop_t *loop, const weir_http_client_options_t *options, weir_http_client_t **_client)
{
    weir_http_client_t *client;
    const curl_version_info_data *info;
    size_t max_connections = options != NULL && options->max_connections != 0 ? options->max_connections : DEFAULT_MAX_CONNECTIONS;

    if (!is_global_initialized()) {
        weir_error("http client: weir_http_client_global_init was not called");
        return -EINVAL;
    }
    info = libcurl.version_info(CURLVERSION_NOW);
    if ((info->features & CURL_VERSION_ASYNCHDNS) == 0) {
        weir_error("http client: libcurl %s resolves host names synchronously, which would block the event loop; "
                   "install a libcurl built with the threaded resolver (as Debian's libcurl4 is)",
                   info->version);
        return -ENOTSUP;
    }

    client = weir_calloc(1, sizeof(*client));
    if ((client->multi = libcurl.multi_init()) == NULL) {
        free(client);
        return -ENOMEM;
    }
    client->loop = loop;
    client->thread = pthread_self();
    h2o_linklist_init_anchor(&client->requests);
    h2o_linklist_init_anchor(&client->sockets);
    libcurl.multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    libcurl.multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
    libcurl.multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    libcurl.multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
    libcurl.multi_setopt(client->multi, CURLMOPT_MAXCONNECTS, (long)(max_connections < LONG_MAX ? max_connections : LONG_MAX));
    uv_timer_init(loop, &client->timer);
    client->timer.data = client;
    *_client = client;
    return 0;
}

static void on_client_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void finish_destroy(weir_http_client_t *client)
{
    client->destroy_pending = 0;
    /* One at a time: a callback may cancel any of the others. */
    while (!h2o_linklist_is_empty(&client->requests)) {
        weir_http_request_t *req = H2O_STRUCT_FROM_MEMBER(weir_http_request_t, link, client->requests.next);
        detach_request(req);
        complete_request(req, WEIR_HTTP_EABORTED, CURLE_OK);
    }
    /* Closes the cached connections; libcurl may still call on_curl_socket and on_curl_timer from here. */
    libcurl.multi_cleanup(client->multi);
    client->multi = NULL;
    /* libcurl said CURL_POLL_REMOVE for every socket it closed; this is only a safety net. */
    while (!h2o_linklist_is_empty(&client->sockets))
        close_socket(H2O_STRUCT_FROM_MEMBER(socket_t, link, client->sockets.next));
    uv_close((uv_handle_t *)&client->timer, on_client_closed);
}

void weir_http_client_destroy(weir_http_client_t *client)
{
    assert(pthread_equal(client->thread, pthread_self()));
    if (client->destroying)
        return;
    client->destroying = 1;
    if (client->dispatching != 0) {
        client->destroy_pending = 1;
        return;
    }
    finish_destroy(client);
}

void weir_http_client_get_stats(const weir_http_client_t *client, weir_http_client_stats_t *stats)
{
    *stats = client->stats;
}

/* ---- starting and cancelling ---------------------------------------------------------------------------------- */

static int is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (s == NULL || *s == '\0')
        return 0;
    for (; *s != '\0'; ++s) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || strchr(extra, c) != NULL))
            return 0;
    }
    return 1;
}

static int has_scheme(const char *url, const char *scheme)
{
    size_t len = strlen(scheme);
    return strncasecmp(url, scheme, len) == 0;
}

/* Adds "name: value" (or "name;", libcurl's way of sending an empty value) to *list. */
static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    size_t name_len = strlen(name), value_len = strlen(value);
    char *line = weir_malloc(name_len + value_len + 3);
    struct curl_slist *grown;

    if (value_len == 0)
        sprintf(line, "%s;", name);
    else
        sprintf(line, "%s: %s", name, value);
    grown = libcurl.slist_append(*list, line);
    free(line);
    if (grown == NULL)
        return -ENOMEM;
    *list = grown;
    return 0;
}

static int build_headers(weir_http_request_t *req, const weir_http_request_params_t *params)
{
    int has_expect = 0, ret;

    for (size_t i = 0; i != params->num_headers; ++i) {
        const weir_http_header_t *h = &params->headers[i];
        if (!is_token(h->name) || h->value == NULL || strpbrk(h->value, "\r\n") != NULL)
            return -EINVAL;
        if (strcasecmp(h->name, "Expect") == 0)
            has_expect = 1;
        if ((ret = append_header(&req->headers, h->name, h->value)) != 0)
            return ret;
    }
    /* libcurl adds `Expect: 100-continue` to bodies over 1 KiB and then waits up to a second for a 100 that S3 and
     * most servers do not send: an empty Expect header removes it. */
    if (!has_expect) {
        struct curl_slist *grown = libcurl.slist_append(req->headers, "Expect:");
        if (grown == NULL)
            return -ENOMEM;
        req->headers = grown;
    }
    return 0;
}

#define SETOPT(opt, value)                                                                                                         \
    do {                                                                                                                           \
        if ((code = libcurl.easy_setopt(easy, opt, value)) != CURLE_OK)                                                            \
            goto Error;                                                                                                            \
    } while (0)

static int setup_easy(weir_http_request_t *req, const weir_http_request_params_t *params)
{
    CURL *easy = req->easy;
    uint64_t timeout = params->timeout_ms;
    CURLcode code;

    SETOPT(CURLOPT_PRIVATE, req);
    SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_URL, params->url);
    /* An empty proxy: the http_proxy family of environment variables is ignored. */
    SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_HTTPHEADER, req->headers);
    SETOPT(CURLOPT_HEADERFUNCTION, on_curl_header);
    SETOPT(CURLOPT_HEADERDATA, req);
    SETOPT(CURLOPT_WRITEFUNCTION, on_curl_write);
    SETOPT(CURLOPT_WRITEDATA, req);
    if (timeout != 0)
        SETOPT(CURLOPT_TIMEOUT_MS, (long)(timeout < LONG_MAX ? timeout : LONG_MAX));
    if (params->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, params->ca_file);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* 7.87: a transfer that ends during name resolution leaves the resolver thread to finish on its own, instead of
     * waiting for it on the loop (older libcurl, which has no such option, waits). */
    libcurl.easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif

    if (params->body != NULL) {
        SETOPT(CURLOPT_UPLOAD, 1L);
        SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)params->body_len);
        SETOPT(CURLOPT_READFUNCTION, on_curl_read);
        SETOPT(CURLOPT_READDATA, req);
        SETOPT(CURLOPT_SEEKFUNCTION, on_curl_seek);
        SETOPT(CURLOPT_SEEKDATA, req);
        SETOPT(CURLOPT_UPLOAD_BUFFERSIZE, (long)UPLOAD_BUFFER_SIZE);
        if (strcmp(params->method, "PUT") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, params->method);
    } else if (strcmp(params->method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (strcmp(params->method, "GET") != 0) {
        SETOPT(CURLOPT_CUSTOMREQUEST, params->method);
    }
    return 0;

Error:
    /* Out of memory, or an option this libcurl was built without (https with a CA file, without TLS). */
    return code == CURLE_OUT_OF_MEMORY ? -ENOMEM : -ENOTSUP;
}

#undef SETOPT

int weir_http_request_start(weir_http_client_t *client, const weir_http_request_params_t *params, weir_http_done_cb cb, void *data,
                            weir_http_request_t **_req)
{
    weir_http_request_t *req;
    int ret;

    assert(pthread_equal(client->thread, pthread_self()));
    if (client->destroying)
        return -ESHUTDOWN;
    if (!is_token(params->method) || params->url == NULL ||
        !(has_scheme(params->url, "http://") || has_scheme(params->url, "https://")) || strpbrk(params->url, "\r\n ") != NULL)
        return -EINVAL;
    for (size_t i = 0; i != params->num_response_headers; ++i)
        if (!is_token(params->response_headers[i]))
            return -EINVAL;

    req = weir_calloc(1, sizeof(*req));
    req->client = client;
    req->cb = cb;
    req->data = data;
    req->body = params->body;
    req->body_len = params->body != NULL ? params->body_len : 0;
    req->resp_max = params->max_response_body;
    req->num_want = params->num_response_headers;
    if (req->num_want != 0) {
        req->want_names = weir_calloc(req->num_want, sizeof(req->want_names[0]));
        req->want_values = weir_calloc(req->num_want, sizeof(req->want_values[0]));
        for (size_t i = 0; i != req->num_want; ++i)
            req->want_names[i] = weir_strdup(params->response_headers[i]);
    }
    if ((ret = build_headers(req, params)) != 0)
        goto Error;
    if ((req->easy = libcurl.easy_init()) == NULL) {
        ret = -ENOMEM;
        goto Error;
    }
    if ((ret = setup_easy(req, params)) != 0)
        goto Error;
    if (libcurl.multi_add_handle(client->multi, req->easy) != CURLM_OK) {
        ret = -ENOMEM;
        goto Error;
    }
    req->state = REQUEST_IN_FLIGHT;
    h2o_linklist_insert(&client->requests, &req->link);
    ++client->stats.in_flight;
    if (_req != NULL)
        *_req = req;
    return 0;

Error:
    free_request(req);
    return ret;
}

void weir_http_request_cancel(weir_http_request_t *req)
{
    assert(pthread_equal(req->client->thread, pthread_self()));
    if (req->state == REQUEST_COMPLETING)
        return;
    detach_request(req);
    free_request(req);
}
