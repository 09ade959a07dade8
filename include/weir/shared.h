/**
 * @file shared.h
 * State that outlives a configuration generation (see src/server.c): a reload builds new handlers, and the handlers
 * of a path whose settings did not change find the objects of the previous generation here, by a key they make from
 * their path and settings, instead of making new ones: the upload gate (slots held under the old configuration count
 * against the new limit), the memory cache (its contents), the Redis connections, the /calc threads.
 *
 * - weir_shared_acquire: a process-wide object, created by the first handler that asks for it, destroyed when the
 *   last one releases it. Called where handlers are registered and disposed (the main thread).
 * - weir_per_loop_t: inside a shared object, a value per worker loop (a gate's thread state, a Redis pool), created by
 *   the first context of a loop that asks for it, stopped by the last one's dispose, on that loop's thread.
 */
#ifndef WEIR_SHARED_H
#define WEIR_SHARED_H

#include <pthread.h>
#include <stddef.h>
#include <h2o.h>

/**
 * The object for @p key, with a new reference: an existing one, or the one @p create makes (its @p arg is passed on).
 * When the object was found, *created is 0; else 1. @p destroy frees the object once its last reference goes.
 * @return the object, or NULL when @p create returned NULL (nothing is registered).
 */
void *weir_shared_acquire(const char *key, void *(*create)(void *arg), void *arg, void (*destroy)(void *obj), int *created);

/** Drops a reference to @p obj (from weir_shared_acquire); the last one destroys it. */
void weir_shared_release(void *obj);

/**
 * A key naming @p pathconf: "HOST|PATH" (the host as configured), followed by @p what. Written into @p buf.
 * @return buf.
 */
char *weir_shared_path_key(h2o_pathconf_t *pathconf, const char *what, char *buf, size_t size);

/** Values per loop. Zero-initialise (or weir_per_loop_init); its fields are private. */
typedef struct st_weir_per_loop_t {
    pthread_mutex_t mutex;
    struct st_weir_per_loop_entry_t *entries;
} weir_per_loop_t;

void weir_per_loop_init(weir_per_loop_t *pl);
/** Frees the table; every value must have been released. */
void weir_per_loop_dispose(weir_per_loop_t *pl);

/**
 * The value of @p loop with a new reference: the existing one, or the one @p start makes (called on the loop's thread;
 * 0 or a negative errno). @return 0 with *value set, or what start returned.
 */
int weir_per_loop_acquire(weir_per_loop_t *pl, uv_loop_t *loop, int (*start)(void *arg, uv_loop_t *loop, void **value), void *arg,
                          void **value);

/** Drops a reference to @p loop's value; the last one calls @p stop with it (on the loop's thread). */
void weir_per_loop_release(weir_per_loop_t *pl, uv_loop_t *loop, void (*stop)(void *arg, void *value), void *arg);

#endif
