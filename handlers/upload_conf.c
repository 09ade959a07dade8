#include <string.h>
#include "weir/upload.h"

void weir_upload_settings_init(weir_upload_settings_t *s)
{
    s->concurrency = 5;
    s->delay_min_ms = 100;
    s->delay_max_ms = 200;
    s->backend = WEIR_UPLOAD_BACKEND_DELAY;
    memset(&s->s3, 0, sizeof(s->s3));
    s->s3.timeout_ms = WEIR_UPLOAD_S3_DEFAULT_TIMEOUT_MS;
}

void weir_upload_settings_dispose(weir_upload_settings_t *s)
{
    weir_upload_s3_settings_dispose(&s->s3);
}

unsigned weir_upload_store_connections(const weir_upload_settings_t *s)
{
    if (s->backend != WEIR_UPLOAD_BACKEND_S3)
        return 0;
    if (s->s3.max_connections != 0)
        return s->s3.max_connections;
    return s->concurrency < 64 ? s->concurrency : 64;
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

    if (strncmp(key, "upload.s3.", 10) == 0)
        return weir__upload_s3_parse_key(&self->s3, key, value, errs);
    if (strcmp(key, "upload.backend") == 0) {
        const char *str;
        if (weir_conf_to_string(value, &str, errs) != 0)
            return -1;
        if (strcmp(str, "delay") == 0) {
            self->backend = WEIR_UPLOAD_BACKEND_DELAY;
        } else if (strcmp(str, "s3") == 0) {
            self->backend = WEIR_UPLOAD_BACKEND_S3;
        } else {
            weir_conf_error(errs, value, "expected delay or s3, got \"%s\"", str);
            return -1;
        }
        return 0;
    } else if (strcmp(key, "upload.concurrency") == 0) {
        field = &self->concurrency;
        min = 1;
        max = 1000000;
    } else if (strcmp(key, "upload.delay-min") == 0) {
        field = &self->delay_min_ms;
        min = 0;
        max = 3600000;
    } else if (strcmp(key, "upload.delay-max") == 0) {
        field = &self->delay_max_ms;
        min = 0;
        max = 3600000;
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
    weir_upload_settings_t *self = settings;

    if (self->backend == WEIR_UPLOAD_BACKEND_S3 && weir__upload_s3_finish(&self->s3, node, errs) != 0)
        return -1;
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

static unsigned fds_per_thread(const void *settings)
{
    return weir_upload_store_connections(settings);
}

static void dispose_settings(void *settings)
{
    weir_upload_settings_dispose(settings);
}

const weir_module_t weir_upload_module = {
    .name = "upload",
    .prefix = "upload.",
    .settings_size = sizeof(weir_upload_settings_t),
    .init_settings = init_settings,
    .parse_key = parse_key,
    .check = check,
    .register_handler = register_handler,
    .fds_per_thread = fds_per_thread,
    .dispose_settings = dispose_settings,
};
