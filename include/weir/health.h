/**
 * @file health.h
 * The readiness registry: the dependencies that weir needs to serve (a Redis backend, a Redis gate), each a check that
 * says whether it is usable now. `status.ready` (/readyz) evaluates them all.
 *
 * A module adds a check per worker thread (each thread has its own connections) or one for the whole process, under a
 * name that says what it is ("cache redis /cache (127.0.0.1:6379)"). Checks of one name are one dependency: it is up
 * when every one of its checks is up, so that a load balancer does not send work to a process whose threads cannot
 * all serve it. The registry is process-wide and survives configuration generations (a module of the old generation
 * removes its checks when it is disposed).
 */
#ifndef WEIR_HEALTH_H
#define WEIR_HEALTH_H

#include <stddef.h>

/**
 * Says whether a dependency is usable now: 1 up, 0 down. Called from whichever thread evaluates (a worker answering
 * /readyz), with the registry's mutex held: it must not block, nor add or remove checks; read shared state with atomics.
 */
typedef int (*weir_health_cb)(void *data);

/** A check added to the registry (opaque). */
typedef struct st_weir_health_check_t weir_health_check_t;

/** One dependency, as evaluated. */
typedef struct st_weir_health_status_t {
    char *name;     /**< as given to weir_health_add */
    unsigned up;    /**< checks of this name that are up */
    unsigned total; /**< checks of this name */
} weir_health_status_t;

/** Adds a check named @p name (copied). @return the check, for weir_health_remove. Any thread. */
weir_health_check_t *weir_health_add(const char *name, weir_health_cb cb, void *data);

/** Removes @p check (NULL: nothing). Once this returns, its callback is not running and will not run again. */
void weir_health_remove(weir_health_check_t *check);

/**
 * Evaluates every check, grouped by name, in the order the names were first added.
 * @return the number of dependencies, each in (*out)[i] (free with weir_health_free); *all_up is 1 when every
 *         dependency is up (also when there is none).
 */
size_t weir_health_evaluate(weir_health_status_t **out, int *all_up);

/** Frees what weir_health_evaluate returned. */
void weir_health_free(weir_health_status_t *statuses, size_t count);

#endif
