/**
 * @file upload.h
 * `POST /upload`: a simulated slow upstream. Each request holds one of `concurrency` slots (global across worker
 * threads, granted in arrival order) for a uniformly random delay in [delay_min_ms, delay_max_ms], then answers
 * `200 {"success": true}`. A client that goes away gives its slot back. At most max_queue uploads wait in this process;
 * beyond that, and for one that waited queue_timeout_ms without a slot, the answer is `503 {"error": ...}` with
 * `Retry-After`.
 */
#ifndef WEIR_UPLOAD_H
#define WEIR_UPLOAD_H

#include <stdint.h>
#include <h2o.h>
#include "weir/module.h"

/** Largest `upload.concurrency`. */
#define WEIR_UPLOAD_MAX_CONCURRENCY 1000000
/** Largest `upload.delay-min` and `upload.delay-max` (ms). */
#define WEIR_UPLOAD_MAX_DELAY_MS 3600000
/** Default `upload.max-queue`: with the default 5 slots and 150 ms uploads, about 30 s of work queued. */
#define WEIR_UPLOAD_DEFAULT_MAX_QUEUE 1000
/** Largest `upload.max-queue`. */
#define WEIR_UPLOAD_MAX_MAX_QUEUE 10000000
/** Default `upload.queue-timeout` (ms): nobody waits longer than this silently. */
#define WEIR_UPLOAD_DEFAULT_QUEUE_TIMEOUT_MS 30000
/** Largest `upload.queue-timeout` (ms). */
#define WEIR_UPLOAD_MAX_QUEUE_TIMEOUT_MS 3600000

/** Settings of one /upload path (YAML keys upload.*). */
typedef struct st_weir_upload_settings_t {
    uint32_t concurrency;      /**< `upload.concurrency`: slots, 1..1000000, default 5 */
    uint32_t delay_min_ms;     /**< `upload.delay-min`: milliseconds, 0..3600000, default 100 */
    uint32_t delay_max_ms;     /**< `upload.delay-max`: milliseconds, >= delay-min, default 200 */
    uint32_t max_queue;        /**< `upload.max-queue`: uploads of this path waiting in this process, 1..10000000, default 1000 */
    uint32_t queue_timeout_ms; /**< `upload.queue-timeout`: ms an upload may wait for a slot, 1..3600000, default 30000 */
} weir_upload_settings_t;

/** Fills @p s with the defaults. */
void weir_upload_settings_init(weir_upload_settings_t *s);

/**
 * Registers the upload handler on @p pathconf. The handler owns its semaphore; it is freed with the
 * globalconf (h2o_config_dispose). @return 0, or -EINVAL for inconsistent settings.
 */
int weir_upload_register(h2o_pathconf_t *pathconf, const weir_upload_settings_t *s);

/**
 * Draws a delay uniformly from [min, max] (inclusive) with the xorshift state @p state (non-zero), without modulo bias.
 */
uint32_t weir_upload_draw_delay(uint64_t *state, uint32_t min, uint32_t max);

/** The module table entry (handlers/upload_conf.c). */
extern const weir_module_t weir_upload_module;

#endif
