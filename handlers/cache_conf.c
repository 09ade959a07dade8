#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "weir/cache.h"
#include "weir/common.h"
#include "weir/redis.h"

void weir_cache_settings_init(weir_cache_settings_t *s)
{
    s->backend = WEIR_CACHE_BACKEND_MEMORY;
    s->max_key_size = WEIR_CACHE_DEFAULT_MAX_KEY_SIZE;
    s->max_value_size = WEIR_CACHE_DEFAULT_MAX_VALUE_SIZE;
    s->memory_max_bytes = WEIR_CACHE_DEFAULT_MEMORY_MAX_BYTES;
    s->redis_url = NULL;
    s->redis_pool = WEIR_CACHE_DEFAULT_REDIS_POOL;
    s->redis_timeout_ms = WEIR_CACHE_DEFAULT_REDIS_TIMEOUT_MS;
    s->redis_prefix = NULL;
}

void weir_cache_settings_dispose(weir_cache_settings_t *s)
{
    free(s->redis_url);
    s->redis_url = NULL;
    free(s->redis_prefix);
    s->redis_prefix = NULL;
}

static void init_settings(void *settings)
{
    weir_cache_settings_init(settings);
}

static void dispose_settings(void *settings)
{
    weir_cache_settings_dispose(settings);
}

static int parse_size(const weir_conf_node_t *value, uint64_t min, uint64_t max, size_t *out, weir_conf_errors_t *errs)
{
    uint64_t v;
    if (weir_conf_to_size(value, min, max, &v, errs) != 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_key(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    weir_cache_settings_t *self = settings;
    const char *str;
    int64_t i;

    if (strcmp(key, "cache.backend") == 0) {
        if (weir_conf_to_string(value, &str, errs) != 0)
            return -1;
        if (strcmp(str, "memory") == 0) {
            self->backend = WEIR_CACHE_BACKEND_MEMORY;
        } else if (strcmp(str, "redis") == 0) {
            self->backend = WEIR_CACHE_BACKEND_REDIS;
        } else {
            weir_conf_error(errs, value, "expected memory or redis, got \"%s\"", str);
            return -1;
        }
    } else if (strcmp(key, "cache.max-key-size") == 0) {
        return parse_size(value, 1, WEIR_CACHE_MAX_KEY_SIZE_LIMIT, &self->max_key_size, errs);
    } else if (strcmp(key, "cache.max-value-size") == 0) {
        return parse_size(value, 0, WEIR_CACHE_MAX_VALUE_SIZE_LIMIT, &self->max_value_size, errs);
    } else if (strcmp(key, "cache.memory.max-bytes") == 0) {
        return weir_conf_to_size(value, 1, UINT64_C(1) << 50, &self->memory_max_bytes, errs);
    } else if (strcmp(key, "cache.redis.url") == 0) {
        return weir_redis_url_from_conf(value, &self->redis_url, errs);
    } else if (strcmp(key, "cache.redis.pool") == 0) {
        if (weir_conf_to_int64(value, 1, WEIR_CACHE_MAX_REDIS_POOL, &i, errs) != 0)
            return -1;
        self->redis_pool = (unsigned)i;
    } else if (strcmp(key, "cache.redis.timeout") == 0) {
        if (weir_conf_to_int64(value, 1, WEIR_CACHE_MAX_REDIS_TIMEOUT_MS, &i, errs) != 0)
            return -1;
        self->redis_timeout_ms = (uint64_t)i;
    } else if (strcmp(key, "cache.redis.prefix") == 0) {
        /* An empty prefix is allowed here (weir_conf_to_string refuses empty strings). */
        if (value->type == WEIR_CONF_SCALAR && value->data.scalar.len == 0) {
            str = "";
        } else if (weir_conf_to_string(value, &str, errs) != 0) {
            return -1;
        }
        free(self->redis_prefix);
        self->redis_prefix = weir_strdup(str);
    } else {
        return 1;
    }
    return 0;
}

static int check(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_cache_settings_t *self = settings;
    uint64_t largest = weir_cache_memory_entry_cost(self->max_key_size, self->max_value_size);

    if (self->backend == WEIR_CACHE_BACKEND_MEMORY && self->memory_max_bytes < largest) {
        weir_conf_error(errs, node,
                        "cache.memory.max-bytes (%" PRIu64 ") must hold at least one entry of cache.max-key-size + "
                        "cache.max-value-size bytes plus overhead (%" PRIu64 ")",
                        self->memory_max_bytes, largest);
        return -1;
    }
    return 0;
}

static int register_handler(h2o_pathconf_t *pathconf, const void *settings)
{
    return weir_cache_register(pathconf, settings);
}

static unsigned fds_per_thread(const void *settings)
{
    const weir_cache_settings_t *self = settings;
    return self->backend == WEIR_CACHE_BACKEND_REDIS ? self->redis_pool : 0;
}

const weir_module_t weir_cache_module = {
    .name = "cache",
    .prefix = "cache.",
    .settings_size = sizeof(weir_cache_settings_t),
    .init_settings = init_settings,
    .parse_key = parse_key,
    .check = check,
    .register_handler = register_handler,
    .fds_per_thread = fds_per_thread,
    .dispose_settings = dispose_settings,
};
