#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "weir/access_log.h"
#include "weir/common.h"

/* Apache's combined format, as h2o's access log writes it by default. */
#define COMBINED_FORMAT "%h %l %u %t \"%r\" %s %b \"%{Referer}i\" \"%{User-agent}i\""

struct st_weir_access_log_t {
    weir_access_log_t *next; /* in the list of open logs */
    size_t refs;             /* under the list's mutex */
    char *path;
    int fd;
    h2o_logconf_t *logconf;
};

typedef struct st_logger_t {
    h2o_logger_t super;
    weir_access_log_t *log;
} logger_t;

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static weir_access_log_t *logs;

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd >= 0 ? fd : -errno;
}

weir_access_log_t *weir_access_log_acquire(const char *path)
{
    weir_access_log_t *log;
    char errbuf[256];

    pthread_mutex_lock(&mutex);
    for (log = logs; log != NULL; log = log->next) {
        if (strcmp(log->path, path) == 0) {
            ++log->refs;
            goto Exit;
        }
    }
    int fd = open_log(path);
    if (fd < 0) {
        weir_error("cannot open access log \"%s\": %s", path, strerror(-fd));
        goto Exit;
    }
    log = weir_calloc(1, sizeof(*log));
    if ((log->logconf = h2o_logconf_compile(COMBINED_FORMAT, H2O_LOGCONF_ESCAPE_APACHE, errbuf)) == NULL) {
        weir_error("access log format: %s", errbuf); /* the format is a constant: never seen */
        close(fd);
        free(log);
        log = NULL;
        goto Exit;
    }
    log->path = weir_strdup(path);
    log->fd = fd;
    log->refs = 1;
    log->next = logs;
    logs = log;
Exit:
    pthread_mutex_unlock(&mutex);
    return log;
}

void weir_access_log_release(weir_access_log_t *log)
{
    pthread_mutex_lock(&mutex);
    if (--log->refs != 0) {
        pthread_mutex_unlock(&mutex);
        return;
    }
    for (weir_access_log_t **p = &logs; *p != NULL; p = &(*p)->next) {
        if (*p == log) {
            *p = log->next;
            break;
        }
    }
    pthread_mutex_unlock(&mutex);
    h2o_logconf_dispose(log->logconf);
    close(log->fd);
    free(log->path);
    free(log);
}

static void log_access(h2o_logger_t *_self, h2o_req_t *req)
{
    logger_t *self = (logger_t *)_self;
    char buf[4096], *line;
    size_t len = sizeof(buf);

    line = h2o_log_request(self->log->logconf, req, &len, buf);
    /* One write per line, in append mode: lines of different threads never interleave. */
    if (write(self->log->fd, line, len) < 0) {
        /* the disk is full or the file is gone: nothing to tell the client */
    }
    if (line != buf)
        free(line);
}

static void on_logger_dispose(h2o_logger_t *_self)
{
    logger_t *self = (logger_t *)_self;
    weir_access_log_release(self->log);
}

void weir_access_log_register(h2o_pathconf_t *pathconf, weir_access_log_t *log)
{
    logger_t *self = (logger_t *)h2o_create_logger(pathconf, sizeof(*self));
    self->super.log_access = log_access;
    self->super.dispose = on_logger_dispose;
    pthread_mutex_lock(&mutex);
    ++log->refs;
    pthread_mutex_unlock(&mutex);
    self->log = log;
}

int weir_access_log_reopen_all(void)
{
    int ret = 0;

    pthread_mutex_lock(&mutex);
    for (weir_access_log_t *log = logs; log != NULL; log = log->next) {
        int fd = open_log(log->path);
        if (fd < 0 || dup3(fd, log->fd, O_CLOEXEC) < 0) {
            int err = fd < 0 ? fd : -errno;
            weir_error("cannot reopen access log \"%s\": %s; still writing to the old file", log->path, strerror(-err));
            if (ret == 0)
                ret = err;
        }
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&mutex);
    return ret;
}
