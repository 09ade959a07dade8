/**
 * @file respond.h
 * The HTTP kit handlers share: JSON replies and errors (always with Content-Length), JSON string escaping (yajl),
 * query parameters that answer 400 themselves, and a look at whether an HTTP/1 client is still there. The text
 * helpers underneath (decoding, UTF-8, numbers) are in text.h.
 */
#ifndef WEIR_RESPOND_H
#define WEIR_RESPOND_H

#include <h2o.h>
#include "weir/text.h"

/**
 * Sends a complete response with Content-Type application/json and Content-Length (no body for HEAD).
 * The body is copied; the request may be gone when this returns. Answers of 16 KiB and more are held against the
 * memory budget until the request is disposed; when it is spent, the answer is 503 `{"error": ...}` with
 * `Retry-After: 1` instead.
 */
void weir_respond_json(h2o_req_t *req, int status, const char *reason, const char *body, size_t len);

/**
 * As weir_respond_json without the copy: @p body must stay valid until the request is disposed (it lives in the
 * request's pool, or the pool holds a reference to it).
 */
void weir_respond_json_nocopy(h2o_req_t *req, int status, const char *reason, const char *body, size_t len);

/** As weir_respond_json_nocopy with Content-Type @p content_type (a static string) instead of application/json. */
void weir_respond_nocopy_as(h2o_req_t *req, int status, const char *reason, const char *content_type, const char *body, size_t len);

/** Sets the memory budget of large answers (`limit-response-memory`, for the whole process). Default: unlimited. */
void weir_respond_set_memory_budget(uint64_t bytes);

/** Bytes of large answers held now. */
uint64_t weir_respond_memory_in_use(void);

/** Sends `{"error": MESSAGE}` (MESSAGE escaped) with @p status. */
void weir_respond_error(h2o_req_t *req, int status, const char *reason, const char *message);

/** Sends 503 `{"error": MESSAGE}` with `Retry-After: SECONDS` (at least 1). */
void weir_respond_unavailable(h2o_req_t *req, unsigned retry_after_s, const char *message);

/** Sends 405 with `Allow: ALLOW` and a JSON error naming the allowed methods. */
void weir_respond_method_not_allowed(h2o_req_t *req, const char *allow);

/** Sends 404 `{"error": "not found"}`. */
void weir_respond_not_found(h2o_req_t *req);

/**
 * True when the request's normalized path (without its query) is exactly the path of the pathconf it was
 * routed to (h2o also routes "/upload/x" to "/upload"); handlers answer 404 otherwise.
 */
int weir_path_is_exact(h2o_req_t *req);

/**
 * Writes @p s as a quoted JSON string into @p pool (NUL-terminated, the NUL not counted).
 * @return 0, or -EILSEQ when @p s is not valid UTF-8 (nothing written).
 */
int weir_json_quote(h2o_mem_pool_t *pool, const char *s, size_t len, h2o_iovec_t *out);

/** As weir_json_quote, between @p prefix and @p suffix, in one allocation: a whole answer built once. */
int weir_json_quote_wrapped(h2o_mem_pool_t *pool, h2o_iovec_t prefix, const char *s, size_t len, h2o_iovec_t suffix,
                            h2o_iovec_t *out);

/**
 * Looks up query parameter @p name of @p req (weir_query_find; the value lives in the request's pool). Answers 400
 * itself, with the same message wherever it is used, when the query holds a malformed escape ("malformed query
 * string") or repeats @p name ("repeated query parameter \"NAME\"").
 * @return 1 when found, 0 when absent (nothing answered), -1 when answered.
 */
int weir_query_param_or_respond(h2o_req_t *req, const char *name, h2o_iovec_t *value);

/**
 * HTTP/1: h2o does not read a connection while its request is being handled, so a client that closed is not noticed
 * until the answer is written. This looks at the socket without reading from it: true when the peer has closed
 * (or half-closed) its side or the connection failed. Always false for HTTP/2, whose streams h2o disposes at once.
 */
int weir_http1_peer_gone(h2o_req_t *req);

#endif
