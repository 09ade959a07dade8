/**
 * @file text.h
 * Text helpers with no HTTP in them: decimal numbers with an explicit maximum, percent-decoding, query-string
 * look-up, strict UTF-8 validation. Used by the configuration, the handlers and the backends alike.
 */
#ifndef WEIR_TEXT_H
#define WEIR_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <h2o/memory.h>

/**
 * Parses the decimal digits at the start of @p s (at most @p len bytes) into @p out; no sign, no spaces. Leading
 * zeros are allowed.
 * @return the number of digits read (>= 1), 0 when @p s does not start with a digit (nothing set), or -ERANGE when
 *         the value is above @p max (nothing set).
 */
ssize_t weir_parse_decimal_prefix(const char *s, size_t len, uint64_t max, uint64_t *out);

/**
 * Parses @p s, which must be decimal digits and nothing else, into @p out.
 * @return 0, -ERANGE when the digits at its start are already above @p max (whatever follows them), otherwise -EINVAL
 *         when @p s is empty or holds something other than digits. Nothing is set on failure.
 */
int weir_parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out);

/** The value of hexadecimal digit @p c (either case), or -1 when it is not one. */
int weir_hex_digit(int c);

/** Writes @p len bytes of @p in as 2 * @p len lower-case hex digits and a NUL into @p out. */
void weir_hex_encode(const void *in, size_t len, char *out);

/** True when @p s is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF). */
int weir_utf8_is_valid(const char *s, size_t len);

/**
 * Percent-decodes @p len bytes of @p src into @p dst (which must hold @p len bytes; the output is never longer).
 * '+' becomes a space when @p plus_is_space. @return the decoded length, or -EINVAL on a malformed escape
 * ("%" not followed by two hex digits).
 */
ssize_t weir_percent_decode(const char *src, size_t len, char *dst, int plus_is_space);

/**
 * Finds parameter @p name in @p query (the text after "?", "a=1&b=2"), and percent-decodes its value into
 * @p pool, NUL-terminated (the NUL is not counted in value->len). A parameter without "=" has an empty value; names
 * are compared after decoding. The whole query is checked, not only the parameter asked for.
 * @return 0 when found once, -ENOENT when absent, -EINVAL when the query holds a malformed escape, -EEXIST when
 *         @p name is given more than once (a client that repeats it means one of the values, and weir cannot know
 *         which).
 */
int weir_query_find(h2o_mem_pool_t *pool, const char *query, size_t len, const char *name, h2o_iovec_t *value);

#endif
