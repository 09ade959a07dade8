#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/redis.h"
#include "weir/upload.h"

void weir_upload_settings_init(weir_upload_settings_t *s)
{
    memset(s, 0, sizeof(*s));
    s->concurrency = 5;
    s->delay_min_ms = 100;
    s->delay_max_ms = 200;
    s->max_queue = WEIR_UPLOAD_DEFAULT_MAX_QUEUE;
    s->queue_timeout_ms = WEIR_UPLOAD_DEFAULT_QUEUE_TIMEOUT_MS;
    s->gate = WEIR_UPLOAD_GATE_LOCAL;
    s->redis_lease_ms = WEIR_UPLOAD_DEFAULT_REDIS_LEASE_MS;
    s->redis_timeout_ms = WEIR_UPLOAD_DEFAULT_REDIS_TIMEOUT_MS;
    s->on_failure = WEIR_GATE_FAIL_REJECT;
    s->backend = WEIR_UPLOAD_BACKEND_DELAY;
    s->s3.timeout_ms = WEIR_UPLOAD_S3_DEFAULT_TIMEOUT_MS;
}

void weir_upload_settings_dispose(weir_upload_settings_t *s)
{
    free(s->redis_url);
    free(s->redis_name);
    s->redis_url = NULL;
    s->redis_name = NULL;
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

uint64_t weir_upload_min_lease_ms(uint32_t delay_max_ms)
{
    return 2 * (uint64_t)delay_max_ms + 1000;
}

static void init_settings(void *settings)
{
    weir_upload_settings_init(settings);
}

static void dispose_settings(void *settings)
{
    weir_upload_settings_dispose(settings);
}

/* A string key: `upload.gate`, `upload.backend` and `upload.redis.on-failure` take one of two words. */
static int parse_choice(const weir_conf_node_t *value, const char *a, const char *b, int *out, weir_conf_errors_t *errs)
{
    const char *str;

    if (weir_conf_to_string(value, &str, errs) != 0)
        return -1;
    if (strcmp(str, a) == 0) {
        *out = 0;
    } else if (strcmp(str, b) == 0) {
        *out = 1;
    } else {
        weir_conf_error(errs, value, "expected %s or %s, got \"%s\"", a, b, str);
        return -1;
    }
    return 0;
}

static int parse_redis_key(weir_upload_settings_t *self, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    const char *str;
    int64_t v;
    int choice;

    if (strcmp(key, "upload.redis.url") == 0) {
        return weir_redis_url_from_conf(value, &self->redis_url, errs);
    } else if (strcmp(key, "upload.redis.name") == 0) {
        if (weir_conf_to_string(value, &str, errs) != 0)
            return -1;
        size_t len = strlen(str);
        for (size_t i = 0; i != len; ++i) {
            if ((unsigned char)str[i] <= ' ' || (unsigned char)str[i] >= 0x7f || str[i] == '#') {
                weir_conf_error(errs, value, "expected printable ASCII without spaces or '#', got \"%s\"", str);
                return -1;
            }
        }
        if (len > WEIR_UPLOAD_MAX_REDIS_NAME) {
            weir_conf_error(errs, value, "expected at most %d characters, got %zu", WEIR_UPLOAD_MAX_REDIS_NAME, len);
            return -1;
        }
        free(self->redis_name);
        self->redis_name = weir_strdup(str);
    } else if (strcmp(key, "upload.redis.lease") == 0) {
        if (weir_conf_to_int64(value, 100, WEIR_UPLOAD_MAX_REDIS_LEASE_MS, &v, errs) != 0)
            return -1;
        self->redis_lease_ms = (uint32_t)v;
    } else if (strcmp(key, "upload.redis.timeout") == 0) {
        if (weir_conf_to_int64(value, 1, WEIR_UPLOAD_MAX_REDIS_TIMEOUT_MS, &v, errs) != 0)
            return -1;
        self->redis_timeout_ms = (uint32_t)v;
    } else if (strcmp(key, "upload.redis.on-failure") == 0) {
        if (parse_choice(value, "reject", "local", &choice, errs) != 0)
            return -1;
        self->on_failure = choice ? WEIR_GATE_FAIL_LOCAL : WEIR_GATE_FAIL_REJECT;
    } else {
        return 1;
    }
    return 0;
}

static int parse_key(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    weir_upload_settings_t *self = settings;
    uint32_t *field;
    int64_t min, max, v;
    int choice;

    if (strncmp(key, "upload.redis.", 13) == 0)
        return parse_redis_key(self, key, value, errs);
    if (strncmp(key, "upload.s3.", 10) == 0)
        return weir__upload_s3_parse_key(&self->s3, key, value, errs);
    if (strcmp(key, "upload.backend") == 0) {
        if (parse_choice(value, "delay", "s3", &choice, errs) != 0)
            return -1;
        self->backend = choice ? WEIR_UPLOAD_BACKEND_S3 : WEIR_UPLOAD_BACKEND_DELAY;
        return 0;
    }
    if (strcmp(key, "upload.gate") == 0) {
        if (parse_choice(value, "local", "redis", &choice, errs) != 0)
            return -1;
        self->gate = choice ? WEIR_UPLOAD_GATE_REDIS : WEIR_UPLOAD_GATE_LOCAL;
        return 0;
    }
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

/* The node of @p key in the path's mapping, for an error at its line (the mapping itself when absent). */
static const weir_conf_node_t *node_of(const weir_conf_node_t *node, const char *key)
{
    const weir_conf_node_t *v = weir_conf_get(node, key);
    return v != NULL ? v : node;
}

static int check(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    weir_upload_settings_t *self = settings;
    int ret = 0;

    if (self->backend == WEIR_UPLOAD_BACKEND_S3 && weir__upload_s3_finish(&self->s3, node, errs) != 0)
        ret = -1;
    if (self->delay_min_ms > self->delay_max_ms) {
        weir_conf_error(errs, node, "upload.delay-min (%u) must not exceed upload.delay-max (%u)", (unsigned)self->delay_min_ms,
                        (unsigned)self->delay_max_ms);
        ret = -1;
    }
    if (self->gate != WEIR_UPLOAD_GATE_REDIS) {
        /* A Redis key without the Redis gate means a configuration that believes it shares a limit and does not. */
        for (size_t i = 0; node->type == WEIR_CONF_MAPPING && i != node->data.mapping.size; ++i) {
            const weir_conf_node_t *k = node->data.mapping.elements[i].key;
            if (strncmp(k->data.scalar.str, "upload.redis.", 13) == 0) {
                weir_conf_error(errs, k, "\"%s\" needs upload.gate: redis (the gate of this path is local)", k->data.scalar.str);
                ret = -1;
            }
        }
        return ret;
    }
    uint64_t min_lease = weir_upload_min_lease_ms(self->delay_max_ms);
    if (self->redis_lease_ms < min_lease) {
        weir_conf_error(errs, node_of(node, "upload.redis.lease"),
                        "upload.redis.lease (%u ms) must be at least 2 x upload.delay-max + 1000 ms (%" PRIu64
                        " ms): an instance gives up uploads whose slot it can no longer renew, and an upload granted just "
                        "before Redis became unreachable must be able to finish within the lease",
                        (unsigned)self->redis_lease_ms, min_lease);
        ret = -1;
    }
    if ((uint64_t)self->redis_timeout_ms * 2 > self->redis_lease_ms) {
        weir_conf_error(errs, node_of(node, "upload.redis.timeout"),
                        "upload.redis.timeout (%u ms) must be at most half of upload.redis.lease (%u ms), so that a renewal "
                        "that times out is retried before the lease ends",
                        (unsigned)self->redis_timeout_ms, (unsigned)self->redis_lease_ms);
        ret = -1;
    }
    return ret;
}

static int register_handler(h2o_pathconf_t *pathconf, const void *settings)
{
    return weir_upload_register(pathconf, settings);
}

static unsigned fds_per_thread(const void *settings)
{
    return weir_upload_store_connections(settings);
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
