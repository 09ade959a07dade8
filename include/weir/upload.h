/**
 * @file upload.h
 * `POST /upload`: a simulated slow upstream. Each request holds one of `concurrency` slots (global across worker
 * threads, granted in arrival order) for a uniformly random delay in [delay_min_ms, delay_max_ms], then answers
 * `200 {"success": true}`. A client that goes away gives its slot back.
 */
#ifndef WEIR_UPLOAD_H
#define WEIR_UPLOAD_H

#include <stdint.h>
#include <h2o.h>
#include "weir/module.h"

/** Settings of one /upload path (YAML keys upload.*). */
typedef struct st_weir_upload_settings_t {
    uint32_t concurrency;  /**< `upload.concurrency`: slots, 1..1000000, default 5 */
    uint32_t delay_min_ms; /**< `upload.delay-min`: milliseconds, 0..3600000, default 100 */
    uint32_t delay_max_ms; /**< `upload.delay-max`: milliseconds, >= delay-min, default 200 */
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
