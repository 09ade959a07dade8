/**
 * @file respond.h
 * The kit handlers share: JSON replies and errors (always with Content-Length), JSON string escaping
 * (yajl), query-string look-up with percent-decoding.
 */
#ifndef WEIR_RESPOND_H
#define WEIR_RESPOND_H

#include <h2o.h>

/**
 * Sends a complete response with Content-Type application/json and Content-Length.
 * The body is copied; the request may be gone when this returns.
 */
void weir_respond_json(h2o_req_t *req, int status, const char *reason, const char *body, size_t len);

/** Sends `{"error": MESSAGE}` (MESSAGE escaped) with @p status. */
void weir_respond_error(h2o_req_t *req, int status, const char *reason, const char *message);

/** Sends 405 with `Allow: ALLOW` and a JSON error naming the allowed methods. */
void weir_respond_method_not_allowed(h2o_req_t *req, const char *allow);

/** Sends 404 `{"error": "not found"}`. */
void weir_respond_not_found(h2o_req_t *req);

/**
 * True when the request's normalized path (without its query) is exactly the path of the pathconf it was
 * routed to (h2o also routes "/upload/x" to "/upload"); handlers answer 404 otherwise.
 */
int weir_path_is_exact(h2o_req_t *req);

/** True when @p s is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
int weir_utf8_is_valid(const char *s, size_t len);

/**
 * Writes @p s as a quoted JSON string into @p pool.
 * @return 0, or -EILSEQ when @p s is not valid UTF-8 (nothing written).
 */
int weir_json_quote(h2o_mem_pool_t *pool, const char *s, size_t len, h2o_iovec_t *out);

/**
 * Percent-decodes @p len bytes of @p src into @p dst (which must hold @p len bytes; the output is never longer).
 * '+' becomes a space when @p plus_is_space. @return the decoded length, or -EINVAL on a malformed escape
 * ("%" not followed by two hex digits).
 */
ssize_t weir_percent_decode(const char *src, size_t len, char *dst, int plus_is_space);

/**
 * Finds parameter @p name in @p query (the text after "?", "a=1&b=2"), and percent-decodes its value into
 * @p pool, NUL-terminated (the NUL is not counted in value->len). The first occurrence wins; a parameter
 * without "=" has an empty value. The name is compared after decoding.
 * @return 0 when found, -ENOENT when absent, -EINVAL when the query holds a malformed escape.
 */
int weir_query_find(h2o_mem_pool_t *pool, const char *query, size_t len, const char *name, h2o_iovec_t *value);

/** weir_query_find on the query of @p req (none: -ENOENT). */
int weir_query_get(h2o_req_t *req, const char *name, h2o_iovec_t *value);

#endif
