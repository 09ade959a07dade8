/**
 * @file multipart.h
 * A strict, small multipart/form-data parser (RFC 7578 over RFC 2046) for a complete body in memory, as h2o hands it
 * over. Part bodies are ranges of the input, never copied. Pure: no global state, no files, no allocation except
 * for parameter values that hold escapes (on the caller's pool); work is linear in the input and bounded by the
 * limits below.
 *
 * Rules, each chosen so that weir and any proxy in front of it cannot disagree on where a part starts or ends:
 * - The boundary (Content-Type parameter, token or quoted-string) is 1 to 70 characters of RFC 2046's bchars
 *   (letters, digits, space and '()+_,-./:=? with no space last).
 * - Line endings are CRLF everywhere outside part bodies; a bare LF (or CR) there is an error, not an alternative.
 * - A preamble before the first boundary line and an epilogue after the final one (after a CRLF) are ignored, as
 *   RFC 2046 says; a boundary line may end with spaces or tabs (transport padding). "CRLF--boundary" followed by
 *   anything else, inside a part or after the final boundary without a CRLF, is an error (RFC 2046 forbids the
 *   delimiter inside a part, so a body that has one is ambiguous).
 * - The body must end with the final boundary ("--boundary--"), and hold at least one part.
 * - Each part has at most WEIR_MULTIPART_MAX_HEADERS header lines, WEIR_MULTIPART_MAX_HEADER_BYTES bytes of headers,
 *   no folded lines; exactly one Content-Disposition of type form-data with a name parameter (RFC 7578 4.2);
 *   at most one Content-Type; a Content-Transfer-Encoding, if any, of 7bit, 8bit or binary. Other headers are
 *   ignored.
 * - Parameters: names case-insensitive, in any order, each at most once; values token or quoted-string. In a
 *   quoted-string, \" and \\ are escapes; any other backslash is itself (browsers and curl send file names with raw
 *   backslashes and '"' as %22, the HTML rule). Unknown parameters, filename* included, are ignored (RFC 7578 4.2: a
 *   sender must not use filename*; weir never uses file names anyway).
 * - Field names are compared byte for byte (they are case-sensitive). A name given by more than one part is refused
 *   by weir_multipart_find: a client that sends two images means one of them, and weir cannot know which (the
 *   rule weir_query_find applies to query parameters). Parts with other names are fine, and ignored.
 */
#ifndef WEIR_MULTIPART_H
#define WEIR_MULTIPART_H

#include <stddef.h>
#include <h2o/memory.h>

/** Longest boundary (RFC 2046). */
#define WEIR_MULTIPART_MAX_BOUNDARY 70
/** Most header lines in one part. */
#define WEIR_MULTIPART_MAX_HEADERS 16
/** Most bytes of one part's header block, line endings and the empty line included. */
#define WEIR_MULTIPART_MAX_HEADER_BYTES 8192
/** Most parts in one body. */
#define WEIR_MULTIPART_MAX_PARTS 64

/** One part. Strings are not NUL-terminated. */
typedef struct st_weir_multipart_part_t {
    /** The Content-Disposition name parameter, unescaped (possibly empty). */
    h2o_iovec_t name;
    /** The filename parameter, unescaped, as sent (possibly percent-encoded); base NULL when there is none. */
    h2o_iovec_t filename;
    /** The part's Content-Type value, trimmed; base NULL when there is none (RFC 7578: text/plain then). */
    h2o_iovec_t content_type;
    /** The part's content: a range of the input body (possibly empty). */
    h2o_iovec_t body;
} weir_multipart_part_t;

/** A parse in progress (caller storage; nothing to dispose of). */
typedef struct st_weir_multipart_t {
    /** Why the parse failed: a short sentence for a 400 answer's {"error": ...}; NULL while all is well. */
    const char *reason;
    /* private */
    const char *pos, *end;
    char delim[4 + WEIR_MULTIPART_MAX_BOUNDARY]; /* "\r\n--" boundary */
    size_t delim_len;
    size_t num_parts;
    int error; /* 0, 1 when the final boundary was read, or the negative error */
} weir_multipart_t;

/**
 * True when the media type of the Content-Type value @p content_type is multipart/form-data (case-insensitive,
 * parameters not checked): the request means a form, and weir_multipart_init's errors are the client's.
 */
int weir_multipart_is_form_data(const char *content_type, size_t len);

/**
 * Starts parsing @p body (@p body_len bytes, which must stay valid while the parts are used) whose Content-Type
 * value is @p content_type: reads the boundary, skips the preamble and the first boundary line.
 * @return 0, or -EINVAL with @p mp->reason set (not multipart/form-data, no or a bad boundary, no boundary line, a
 *         body without parts, ...).
 */
int weir_multipart_init(weir_multipart_t *mp, const char *content_type, size_t ct_len, const char *body, size_t body_len);

/**
 * Reads the next part into @p part. Parameter values with escapes are unescaped onto @p pool (when @p pool is NULL,
 * such a value is refused as malformed); all other strings point into the body.
 * @return 1 when a part was read; 0 after the last part (the final boundary was read: the whole body is valid);
 *         -EINVAL (malformed) or -E2BIG (over a limit) with @p mp->reason set; once it failed, it fails again.
 */
int weir_multipart_next(weir_multipart_t *mp, h2o_mem_pool_t *pool, weir_multipart_part_t *part);

/**
 * Parses the whole body and finds the part whose field name is @p name (NUL-terminated).
 * @return 0 with @p part set; -ENOENT when no part has that name; -EEXIST when more than one has it; the errors of
 *         weir_multipart_init and weir_multipart_next. On error, @p reason (if not NULL) is set to a short sentence
 *         (for -ENOENT a generic one, which a caller may replace with its own: "no image part").
 */
int weir_multipart_find(h2o_mem_pool_t *pool, const char *content_type, size_t ct_len, const char *body, size_t body_len,
                        const char *name, weir_multipart_part_t *part, const char **reason);

#endif
