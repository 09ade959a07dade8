/**
 * @file http_client.h
 * Outbound HTTP/1.1 on a worker's libuv loop: libcurl's multi-socket interface, driven by one uv_poll_t per socket
 * and one uv_timer_t, with one client (one curl multi handle) per loop.
 *
 * - Connections (and resolved names, for 60 s) are kept by the client and reused by later requests to the same
 *   host, port and TLS settings; at most weir_http_client_options_t::max_connections stay open when idle.
 * - https is verified against the system's CA store (libcurl's built-in default; on Debian and Ubuntu
 *   /etc/ssl/certs/ca-certificates.crt, from the ca-certificates package), or against a request's own CA file.
 *   There is no way to turn verification off.
 * - Names are resolved off the loop (libcurl's threaded resolver; weir_http_client_create refuses a libcurl built
 *   without an asynchronous resolver). One limit of libcurl before 7.87: a transfer that is cancelled, times out or
 *   is aborted while its name is still being resolved waits for that resolution to end (libcurl joins its resolver
 *   thread), which a slow DNS server can make long. With 7.87 and later the thread is left to finish on its own.
 * - Environment proxies (http_proxy, https_proxy...) are ignored, redirects are not followed, and no `Expect:
 *   100-continue` is sent (a body is sent at once).
 *
 * Every call except the two global ones must be made on the client's loop thread. libcurl 7.68 or later.
 */
#ifndef WEIR_HTTP_CLIENT_H
#define WEIR_HTTP_CLIENT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct st_weir_http_client_t weir_http_client_t;
typedef struct st_weir_http_request_t weir_http_request_t;

/** @name Results of a request (weir_http_response_t::result)
 * @{ */
/** The transfer completed: a whole response was received, whatever its status. */
#define WEIR_HTTP_OK 0
/** No connection could be made: name resolution failed, the connection was refused, the host is unreachable. */
#define WEIR_HTTP_ECONNECT (-ECONNREFUSED)
/** The request's timeout expired (in whatever phase, connecting included). */
#define WEIR_HTTP_ETIMEDOUT (-ETIMEDOUT)
/** Any other transport failure: TLS handshake or certificate verification, a connection reset or closed in the
 * middle of the response, a response that is not HTTP. */
#define WEIR_HTTP_EPROTO (-EPROTO)
/** The client was destroyed while the transfer was in flight. */
#define WEIR_HTTP_EABORTED (-ECANCELED)
/** @} */

/** One request header. */
typedef struct st_weir_http_header_t {
    const char *name;  /**< a token: no spaces, colons or control characters */
    const char *value; /**< may be empty; no CR, LF or NUL */
} weir_http_header_t;

/** Options of a client; zero-initialise for the defaults. */
typedef struct st_weir_http_client_options_t {
    /** Most connections kept open (libcurl's CURLMOPT_MAXCONNECTS); beyond it, the oldest idle one is closed when
     * a transfer ends. 0: 16. Transfers in flight are not limited by it. */
    size_t max_connections;
} weir_http_client_options_t;

/** What to send and what to keep of the answer. Everything is read during weir_http_request_start (copied where
 * needed), except the body. */
typedef struct st_weir_http_request_params_t {
    /** "GET", "PUT", "POST", "HEAD", "DELETE", ... (a token) */
    const char *method;
    /** an absolute http:// or https:// URL */
    const char *url;
    /** request headers, sent as given (a header named like one libcurl adds, such as Host or Content-Type, replaces
     * it) */
    const weir_http_header_t *headers;
    size_t num_headers;
    /** The request body, not copied: it must stay valid and unchanged until the completion callback runs or the
     * request is cancelled. NULL: no body. Non-NULL: sent with a Content-Length of body_len (which may be 0). */
    const void *body;
    size_t body_len;
    /** total time for the whole request, connecting included, in ms; 0: no limit */
    uint64_t timeout_ms;
    /** the most bytes of the response body kept (beyond them the body is read and dropped, and
     * weir_http_response_t::body_truncated is set); 0 keeps none */
    size_t max_response_body;
    /** names of the response headers to return (case-insensitive), in weir_http_response_t::header_values */
    const char *const *response_headers;
    size_t num_response_headers;
    /** a PEM file of the CA certificates to trust for https instead of the system's store; NULL: the system's */
    const char *ca_file;
} weir_http_request_params_t;

/** What came back; valid only during the completion callback (copy what must outlive it). */
typedef struct st_weir_http_response_t {
    /** WEIR_HTTP_OK or one of the WEIR_HTTP_E* codes */
    int result;
    /** the HTTP status of the last response received, 0 when none was */
    int status;
    /** a one-line reason when result is not WEIR_HTTP_OK (libcurl's words), "" otherwise */
    const char *errstr;
    /** the first max_response_body bytes of the body (not NUL-terminated; NULL when body_len is 0) */
    const char *body;
    size_t body_len;
    /** whether the body was longer than what was kept */
    int body_truncated;
    /** one entry per weir_http_request_params_t::response_headers name, in that order: the value (trimmed; repeated
     * headers joined with ", ") or NULL when the response had no such header */
    const char *const *header_values;
} weir_http_response_t;

/**
 * Called on the loop, exactly once per started request that is not cancelled, never from inside
 * weir_http_request_start. It may start and cancel requests and destroy the client. The request is freed when it
 * returns.
 */
typedef void (*weir_http_done_cb)(const weir_http_response_t *res, void *data);

/** Counters of a client. */
typedef struct st_weir_http_client_stats_t {
    size_t in_flight;     /**< requests started and neither completed nor cancelled */
    uint64_t connections; /**< connections opened so far (libcurl's CURLINFO_NUM_CONNECTS, summed) */
    uint64_t completed;   /**< callbacks run so far (any result) */
    size_t sockets;       /**< sockets watched now (idle connections kept for reuse are not watched) */
} weir_http_client_stats_t;

/**
 * Loads libcurl (dlopen of libcurl.so.4 the first time: weir does not link it) and initialises it
 * (curl_global_init). Call it before weir_http_client_create, on the thread that sets configurations up, while no
 * other thread uses libcurl (weir's s3 backend calls it when it is created); further calls do nothing until
 * weir_http_client_global_cleanup.
 * @return 0; -ENOENT (logged) when libcurl cannot be loaded, -ENOTSUP when it lacks a function weir calls, -EIO when
 *         it cannot be initialised.
 */
int weir_http_client_global_init(void);

/** Releases libcurl's global state (curl_global_cleanup), once every client is destroyed and only the main thread
 * runs; a later weir_http_client_global_init initialises it again. Does nothing when not initialised. */
void weir_http_client_global_cleanup(void);

/**
 * Creates a client on @p loop; call it on the loop's thread. @p options may be NULL for the defaults.
 * @return 0 with *@p client set; -EINVAL when weir_http_client_global_init was not called; -ENOTSUP (logged) when
 *         libcurl resolves names synchronously, which would block the loop; -ENOMEM when libcurl has no memory.
 */
int weir_http_client_create(uv_loop_t *loop, const weir_http_client_options_t *options, weir_http_client_t **client);

/**
 * Destroys @p client. Every request still in flight is aborted and its callback called with WEIR_HTTP_EABORTED
 * before this returns (requests those callbacks try to start are refused); open connections are closed. The
 * handles are closed and the memory freed in their close callbacks, so run the loop afterwards. Called from inside a
 * completion callback, the same happens as soon as that callback returns.
 */
void weir_http_client_destroy(weir_http_client_t *client);

/**
 * Starts a request. @p cb is called later on the loop with @p data, unless the request is cancelled first.
 * @param req if not NULL, receives the handle for weir_http_request_cancel (valid until the callback returns)
 * @return 0; -EINVAL for a method, URL (not http or https) or header that cannot be sent as it is; -ESHUTDOWN when
 *         the client is being destroyed; -ENOMEM when libcurl has no memory; -ENOTSUP when libcurl lacks an option
 *         the request needs (a CA file, with a libcurl built without TLS). On error nothing was sent and @p cb
 *         will not be called.
 */
int weir_http_request_start(weir_http_client_t *client, const weir_http_request_params_t *params, weir_http_done_cb cb, void *data,
                            weir_http_request_t **req);

/**
 * Aborts a request at once: its transfer is removed from the client and its connection closed, its callback is NOT
 * called, and @p req is freed. Safe from inside any completion
 * callback; called on the request whose callback is running, it does nothing.
 */
void weir_http_request_cancel(weir_http_request_t *req);

/** Reads the client's counters. */
void weir_http_client_get_stats(const weir_http_client_t *client, weir_http_client_stats_t *stats);

#endif
