/**
 * @file http1_guard.h
 * A strict validator of the HTTP/1.x request stream of one connection, run in front of h2o's own parser.
 *
 * libh2o 2.2.5 (picohttpparser) is lenient where leniency lets a request be smuggled past a proxy: it takes the first
 * of two conflicting Content-Length headers, prefers Transfer-Encoding over Content-Length without closing, takes the
 * last of two Transfer-Encoding headers, reads the chunk size "0x5" as 0, accepts bare LF line ends and obs-folded
 * lines. The guard reads the same bytes first, byte by byte as they arrive, and accepts only the unambiguous subset of
 * RFC 9112: exactly one way to frame every request, or an error with the HTTP status to answer before closing.
 *
 * The guard only reads; its caller holds bytes back from h2o until the guard has released them (the complete head of a
 * request, a chunked body once it has ended, the bytes of a Content-Length body as they come), so that h2o never sees
 * a byte of a request that the guard rejects. A stream that starts, at a request boundary, with the HTTP/2 connection
 * preface ("PRI * HTTP/2.0", prior knowledge or after an h2c upgrade) is not HTTP/1 any more: the guard says so and
 * its caller stops guarding.
 */
#ifndef WEIR_HTTP1_GUARD_H
#define WEIR_HTTP1_GUARD_H

#include <stddef.h>
#include <stdint.h>

/** Longest request line (method, target and version): longer is 414. */
#define WEIR_HTTP1_MAX_REQUEST_LINE 8192
/** Longest header section (request line included): longer is 431. */
#define WEIR_HTTP1_MAX_HEAD 32768
/** Longest header field line: longer is 431. */
#define WEIR_HTTP1_MAX_FIELD_LINE 8192
/** Most header fields in a request (h2o's own limit, H2O_MAX_HEADERS): more is 431. */
#define WEIR_HTTP1_MAX_FIELDS 100

/** What weir_http1_guard_feed found. */
typedef enum en_weir_http1_guard_status_t {
    WEIR_HTTP1_GUARD_OK = 0,     /**< every byte fed is valid so far; see released */
    WEIR_HTTP1_GUARD_PASS = 1,   /**< the stream turned into HTTP/2 at pass_at; everything is released, stop guarding */
    WEIR_HTTP1_GUARD_ERROR = -1, /**< the request that starts at request_start is rejected: answer error_status, close */
} weir_http1_guard_status_t;

/** The guard of one connection; zero-initialise it with weir_http1_guard_init. Fields are private except as noted. */
typedef struct st_weir_http1_guard_t {
    /* public, read-only */
    uint64_t offset;        /**< bytes fed so far (stream offset of the next byte) */
    uint64_t released;      /**< bytes [0, released) may be given to the HTTP/1 parser */
    uint64_t request_start; /**< stream offset of the request being read (of the rejected one after an error) */
    uint64_t pass_at;       /**< with WEIR_HTTP1_GUARD_PASS: where the HTTP/2 stream starts */
    uint64_t requests;      /**< requests completed (released whole) so far */
    int error_status;       /**< with WEIR_HTTP1_GUARD_ERROR: 400, 413, 414 or 431 */
    const char *error;      /**< with WEIR_HTTP1_GUARD_ERROR: a short reason, for the client */

    /* settings */
    uint64_t max_body; /**< largest body (Content-Length, or decoded chunked size): larger is 413 */

    /* private */
    int state;
    int status;
    unsigned preface_matched;
    unsigned leading_crlf;
    unsigned field_kind;
    unsigned num_fields;
    unsigned minor_version;
    unsigned version_pos;
    unsigned name_len;
    unsigned value_len;
    unsigned value_trimmed_len;
    unsigned host_count;
    unsigned cl_count;
    unsigned te_count;
    unsigned chunk_digits;
    unsigned ext_len;
    int te_chunked;
    int in_trailer;
    size_t line_len;
    size_t head_len;
    uint64_t content_length;
    uint64_t remaining;
    uint64_t body_total;
    char name[24];
    char value[40];
} weir_http1_guard_t;

/** Initialises @p g for a new connection whose bodies may hold up to @p max_body bytes. */
void weir_http1_guard_init(weir_http1_guard_t *g, uint64_t max_body);

/**
 * Validates the next @p len bytes of the stream. After WEIR_HTTP1_GUARD_PASS or WEIR_HTTP1_GUARD_ERROR nothing more
 * may be fed (the same status is returned again, and nothing is read).
 * @return the status; with WEIR_HTTP1_GUARD_OK, g->released tells how much of the stream may be parsed now.
 */
weir_http1_guard_status_t weir_http1_guard_feed(weir_http1_guard_t *g, const char *p, size_t len);

/** The reason phrase of an error status of the guard ("Bad Request", ...). */
const char *weir_http1_guard_reason(int status);

#endif
