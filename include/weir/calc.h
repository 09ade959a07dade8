/**
 * @file calc.h
 * `GET /calc`: CPU-bound work, sum(i*i for i in range(n)), computed exactly on a pool of threads that run at a lower
 * priority than the worker loops (nice 10), and printed as Python prints the integer.
 */
#ifndef WEIR_CALC_H
#define WEIR_CALC_H

#include <stdint.h>
#include <h2o.h>
#include "weir/module.h"
#include "weir/workpool.h"

/** Largest n allowed: every square i*i (i < n) fits in 64 bits, and the sum (about n^3/3) in 128. */
#define WEIR_CALC_N_LIMIT UINT64_C(4294967296)
/** Default `calc.n`. */
#define WEIR_CALC_DEFAULT_N 1000000
/** Default `calc.max-n`. */
#define WEIR_CALC_DEFAULT_MAX_N 100000000
/** Largest `calc.threads`. */
#define WEIR_CALC_MAX_THREADS 1024

/** Settings of one /calc path (YAML keys calc.*). */
typedef struct st_weir_calc_settings_t {
    uint64_t n;       /**< `calc.n`: the default n, 0..max_n, default 1000000 */
    uint64_t max_n;   /**< `calc.max-n`: the largest n a query may ask for, 0..WEIR_CALC_N_LIMIT, default 100000000 */
    unsigned threads; /**< `calc.threads`: threads of the pool, 1..WEIR_CALC_MAX_THREADS; 0 (default): one per CPU */
} weir_calc_settings_t;

/** Fills @p s with the defaults. */
void weir_calc_settings_init(weir_calc_settings_t *s);

/**
 * Registers the calc handler on @p pathconf, with its own work pool (threads started on first use, joined when the
 * globalconf is disposed). @return 0, or -EINVAL when n > max_n or threads > WEIR_CALC_MAX_THREADS.
 */
int weir_calc_register(h2o_pathconf_t *pathconf, const weir_calc_settings_t *s);

/**
 * sum(i*i for i in range(n)), exactly, by running the loop (no closed form). n <= WEIR_CALC_N_LIMIT. When @p cancel
 * (may be NULL) becomes non-zero, the loop stops within a few thousand iterations and the result is meaningless.
 */
unsigned __int128 weir_calc_sum_squares(uint64_t n, const int *cancel);

/** Prints @p v in decimal into @p buf (at least 40 bytes), NUL-terminated. @return the length. */
size_t weir_u128_to_str(unsigned __int128 v, char *buf);

/**
 * The work pool inbox of the calc handler registered on @p pathconf, for context @p ctx: its outstanding count
 * (weir_workpool_inbox_outstanding) is the work of that context not yet come back. For tests. @return the inbox, or
 * NULL when @p pathconf has no calc handler or the context has no inbox.
 */
weir_workpool_inbox_t *weir_calc_inbox(h2o_pathconf_t *pathconf, h2o_context_t *ctx);

/** The module table entry (handlers/calc_conf.c). */
extern const weir_module_t weir_calc_module;

#endif
