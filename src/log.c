#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "weir/common.h"

weir_log_level_t weir_log_min_level = WEIR_LOG_INFO;

__attribute__((noreturn)) static void die_oom(size_t size)
{
    char buf[96];
    int len = snprintf(buf, sizeof(buf), "weir: out of memory allocating %zu bytes\n", size);
    if (write(2, buf, (size_t)len) < 0) {
        /* nothing left to do */
    }
    abort();
}

void *weir_malloc(size_t size)
{
    /* malloc(0) may return NULL: ask for a byte, so that NULL always means exhaustion */
    void *p = malloc(size != 0 ? size : 1);
    if (p == NULL)
        die_oom(size);
    return p;
}

void *weir_calloc(size_t count, size_t size)
{
    void *p = count != 0 && size != 0 ? calloc(count, size) : calloc(1, 1);
    if (p == NULL)
        die_oom(count * size);
    return p;
}

void *weir_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size != 0 ? size : 1);
    if (p == NULL)
        die_oom(size);
    return p;
}

char *weir_strdup(const char *s)
{
    return weir_strndup(s, strlen(s));
}

char *weir_strndup(const char *s, size_t len)
{
    if (len == SIZE_MAX) /* len + 1 would wrap to a zero-byte allocation */
        die_oom(len);
    char *p = weir_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void weir_vlog(weir_log_level_t level, const char *fmt, va_list args)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t len;
    int n;

    if (level < weir_log_min_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000), names[level]);
    len += (size_t)n;
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, args);
    if (n < 0)
        n = 0;
    len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
    line[len++] = '\n';
    /* One write(2) per line, so that lines of concurrent threads do not interleave. */
    if (write(2, line, len) < 0) {
        /* stderr is gone; there is no one to tell */
    }
}

void weir_log(weir_log_level_t level, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    weir_vlog(level, fmt, args);
    va_end(args);
}
