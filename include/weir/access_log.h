/**
 * @file access_log.h
 * The access log: one line per request in Apache's combined format (h2o's log formatter), written with one
 * write(2) per line to a file opened in append mode, and reopened on demand (SIGUSR1, and on reload) so that a
 * rotation by rename loses and duplicates nothing: lines written before the reopen go to the renamed file, the
 * others to the new one.
 *
 * A log is shared by every configuration generation that names the same file (process-wide, reference-counted).
 */
#ifndef WEIR_ACCESS_LOG_H
#define WEIR_ACCESS_LOG_H

#include <h2o.h>

typedef struct st_weir_access_log_t weir_access_log_t;

/**
 * The log writing to @p path: an existing one (with a new reference), or a new one, opened now.
 * @return the log, or NULL when the file cannot be opened (logged).
 */
weir_access_log_t *weir_access_log_acquire(const char *path);

/** Drops a reference from weir_access_log_acquire; the last one closes the file. */
void weir_access_log_release(weir_access_log_t *log);

/** Logs every request of @p pathconf to @p log (as long as the pathconf lives, it holds a reference). */
void weir_access_log_register(h2o_pathconf_t *pathconf, weir_access_log_t *log);

/**
 * Reopens every log's file by its name (after a rotation): the new file takes the old descriptor's number at once,
 * so a line is written either to the old file or to the new one. @return 0, or the first negative errno (logged).
 */
int weir_access_log_reopen_all(void);

#endif
