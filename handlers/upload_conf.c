#include <string.h>
#include "weir/upload.h"

void weir_upload_settings_init(weir_upload_settings_t *s)
{
    s->concurrency = 5;
    s->delay_min_ms = 100;
    s->delay_max_ms = 200;
    s->max_queue = WEIR_UPLOAD_DEFAULT_MAX_QUEUE;
    s->queue_timeout_ms = WEIR_UPLOAD_DEFAULT_QUEUE_TIMEOUT_MS;
}

static void init_settings(void *settings)
{
    weir_upload_settings_init(settings);
}

static int parse_key(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    weir_upload_settings_t *self = settings;
    uint32_t *field;
    int64_t min, max, v;

    if (strcmp(key, "upload.concurrency") == 0) {
        field = &self->concurrency;
        min = 1;
        max = WEIR_UPLOAD_MAX_CONCURRENCY;
    } else if (strcmp(key, "upload.delay-min") == 0) {
        field = &self->delay_min_ms;
        min = 0;
        max = WEIR_UPLOAD_MAX_DELAY_MS;
    } else if (strcmp(key, "upload.delay-max") == 0) {
        field = &self->delay_max_ms;
        min = 0;
        max = WEIR_UPLOAD_MAX_DELAY_MS;
    } else if (strcmp(key, "upload.max-queue") == 0) {
        field = &self->max_queue;
        min = 1;
        max = WEIR_UPLOAD_MAX_MAX_QUEUE;
    } else if (strcmp(key, "upload.queue-timeout") == 0) {
        field = &self->queue_timeout_ms;
        min = 1;
        max = WEIR_UPLOAD_MAX_QUEUE_TIMEOUT_MS;
    } else {
        return 1;
    }
    if (weir_conf_to_int64(value, min, max, &v, errs) != 0)
        return -1;
    *field = (uint32_t)v;
    return 0;
}

static int check(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_upload_settings_t *self = settings;

    if (self->delay_min_ms > self->delay_max_ms) {
        weir_conf_error(errs, node, "upload.delay-min (%u) must not exceed upload.delay-max (%u)", (unsigned)self->delay_min_ms,
                        (unsigned)self->delay_max_ms);
        return -1;
    }
    return 0;
}

static int register_handler(h2o_pathconf_t *pathconf, const void *settings)
{
    return weir_upload_register(pathconf, settings);
}

const weir_module_t weir_upload_module = {
    .name = "upload",
    .prefix = "upload.",
    .settings_size = sizeof(weir_upload_settings_t),
    .init_settings = init_settings,
    .parse_key = parse_key,
    .check = check,
    .register_handler = register_handler,
    .dispose_settings = NULL,
};
