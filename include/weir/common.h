/**
 * @file common.h
 * Allocation wrappers, logging and small helpers shared by every part of weir.
 */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/** The version string printed by `weir --version` (set by CMake). */
#ifndef WEIR_VERSION
#define WEIR_VERSION "0.0.0"
#endif

/** Number of elements of a fixed-size array. */
#define WEIR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/** malloc that aborts with a message on exhaustion; never returns NULL (not for size 0 either). */
__attribute__((returns_nonnull, malloc)) void *weir_malloc(size_t size);
/** calloc that aborts with a message on exhaustion; never returns NULL. */
__attribute__((returns_nonnull, malloc)) void *weir_calloc(size_t count, size_t size);
/** realloc that aborts with a message on exhaustion; never returns NULL (size 0 gives a block of one byte). */
__attribute__((returns_nonnull)) void *weir_realloc(void *ptr, size_t size);
/** strdup that aborts on exhaustion. */
__attribute__((returns_nonnull, malloc)) char *weir_strdup(const char *s);
/** Copies @p len bytes of @p s into a new NUL-terminated string; aborts on exhaustion. */
__attribute__((returns_nonnull, malloc)) char *weir_strndup(const char *s, size_t len);

/** Log levels, in increasing severity. */
typedef enum en_weir_log_level_t {
    WEIR_LOG_DEBUG,
    WEIR_LOG_INFO,
    WEIR_LOG_WARN,
    WEIR_LOG_ERROR,
} weir_log_level_t;

/** Messages below this level are dropped (default WEIR_LOG_INFO). */
extern weir_log_level_t weir_log_min_level;

/**
 * Writes one line to stderr: an ISO-8601 UTC timestamp with milliseconds, the level, the message.
 * The line is written with a single write(2), so lines of different threads never interleave.
 */
void weir_log(weir_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** va_list variant of weir_log. */
void weir_vlog(weir_log_level_t level, const char *fmt, va_list args);

#define weir_debug(...) weir_log(WEIR_LOG_DEBUG, __VA_ARGS__)
#define weir_info(...) weir_log(WEIR_LOG_INFO, __VA_ARGS__)
#define weir_warn(...) weir_log(WEIR_LOG_WARN, __VA_ARGS__)
#define weir_error(...) weir_log(WEIR_LOG_ERROR, __VA_ARGS__)

#endif
