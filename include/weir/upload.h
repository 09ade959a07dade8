/**
 * @file upload.h
 * `POST /upload`: each request holds one of `concurrency` slots (global across worker threads, granted in arrival
 * order) while its backend (upload_backend.h) uploads: by default a simulated slow upstream, a uniformly random delay in
 * [delay_min_ms, delay_max_ms] then `200 {"success": true}`; with the s3 backend, the request's image stored in an
 * S3-compatible object store. A client that goes away gives its slot back. At most max_queue uploads wait in this process;
 * beyond that, and for one that waited queue_timeout_ms without a slot, the answer is `503 {"error": ...}` with
 * `Retry-After`.
 */
#ifndef WEIR_UPLOAD_H
#define WEIR_UPLOAD_H

#include <stdint.h>
#include <h2o.h>
#include "weir/gate.h"
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

/** Default `upload.redis.url`. */
#define WEIR_UPLOAD_DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"
/** Default `upload.redis.name`. */
#define WEIR_UPLOAD_DEFAULT_REDIS_NAME "weir:upload"
/** Default `upload.redis.lease` (ms). */
#define WEIR_UPLOAD_DEFAULT_REDIS_LEASE_MS 10000
/** Largest `upload.redis.lease` (ms). */
#define WEIR_UPLOAD_MAX_REDIS_LEASE_MS 3600000
/** Default `upload.redis.timeout` (ms). */
#define WEIR_UPLOAD_DEFAULT_REDIS_TIMEOUT_MS 1000
/** Largest `upload.redis.timeout` (ms). */
#define WEIR_UPLOAD_MAX_REDIS_TIMEOUT_MS 600000
/** Longest `upload.redis.name`. */
#define WEIR_UPLOAD_MAX_REDIS_NAME 128

/** `upload.backend` */
typedef enum en_weir_upload_backend_type_t {
    WEIR_UPLOAD_BACKEND_DELAY, /**< `delay` (the default): the simulated upload */
    WEIR_UPLOAD_BACKEND_S3,    /**< `s3`: a PUT to an S3-compatible store */
} weir_upload_backend_type_t;

/** Default of `upload.s3.region`. */
#define WEIR_UPLOAD_S3_DEFAULT_REGION "us-east-1"
/** Default of `upload.s3.timeout`, in milliseconds. */
#define WEIR_UPLOAD_S3_DEFAULT_TIMEOUT_MS 30000
/** Longest `upload.s3.key-prefix`, in bytes (S3 keys are at most 1024). */
#define WEIR_UPLOAD_S3_MAX_PREFIX 512

/** Settings of the s3 backend (YAML keys upload.s3.*); strings are owned (weir_upload_s3_settings_dispose). */
typedef struct st_weir_upload_s3_settings_t {
    /** `upload.s3.endpoint`: "http://host[:port]" or "https://...", without path or trailing slash; required */
    char *endpoint;
    /** `upload.s3.region`: default us-east-1 */
    char *region;
    /** `upload.s3.bucket`: required */
    char *bucket;
    /** `upload.s3.key-prefix`: UTF-8, at most WEIR_UPLOAD_S3_MAX_PREFIX bytes; default "" */
    char *key_prefix;
    /** `upload.s3.access-key-id`, or AWS_ACCESS_KEY_ID */
    char *access_key_id;
    /** the contents of `upload.s3.secret-access-key-file` (trailing white space removed), or AWS_SECRET_ACCESS_KEY */
    char *secret_access_key;
    /** AWS_SESSION_TOKEN when the credentials come from the environment; NULL otherwise */
    char *session_token;
    /** `upload.s3.ca-file`: CA certificates (PEM) to trust for an https endpoint instead of the system's; NULL */
    char *ca_file;
    /** `upload.s3.timeout`: milliseconds for one PUT, 1..3600000, default 30000 */
    uint32_t timeout_ms;
    /** `upload.s3.max-connections`: connections to the store each worker thread keeps; 0 (default): concurrency */
    uint32_t max_connections;
} weir_upload_s3_settings_t;

/** Which gate a /upload path uses. */
typedef enum en_weir_upload_gate_kind_t {
    WEIR_UPLOAD_GATE_LOCAL, /**< in-process (default) */
    WEIR_UPLOAD_GATE_REDIS, /**< shared through Redis by every instance with the same name */
} weir_upload_gate_kind_t;

/** Settings of one /upload path (YAML keys upload.*). */
typedef struct st_weir_upload_settings_t {
    uint32_t concurrency;      /**< `upload.concurrency`: slots, 1..1000000, default 5 */
    uint32_t delay_min_ms;     /**< `upload.delay-min`: milliseconds, 0..3600000, default 100 */
    uint32_t delay_max_ms;     /**< `upload.delay-max`: milliseconds, >= delay-min, default 200 */
    uint32_t max_queue;        /**< `upload.max-queue`: uploads of this path waiting in this process, 1..10000000, default 1000 */
    uint32_t queue_timeout_ms; /**< `upload.queue-timeout`: ms an upload may wait for a slot, 1..3600000, default 30000 */
    weir_upload_gate_kind_t gate;       /**< `upload.gate`: local (default) or redis */
    char *redis_url;                    /**< `upload.redis.url`; NULL means WEIR_UPLOAD_DEFAULT_REDIS_URL */
    char *redis_name;                   /**< `upload.redis.name`; NULL means WEIR_UPLOAD_DEFAULT_REDIS_NAME */
    uint32_t redis_lease_ms;            /**< `upload.redis.lease`: >= 2 x delay-max + 1000, default 10000 */
    uint32_t redis_timeout_ms;          /**< `upload.redis.timeout`: per command and connection attempt, <= lease / 2 */
    weir_gate_on_failure_t on_failure;  /**< `upload.redis.on-failure`: reject (default) or local */
    weir_upload_backend_type_t backend; /**< `upload.backend`: delay (default) or s3 */
    weir_upload_s3_settings_t s3;       /**< `upload.s3.*`, used by the s3 backend */
} weir_upload_settings_t;

/** Fills @p s with the defaults (allocates nothing). */
void weir_upload_settings_init(weir_upload_settings_t *s);

/** Frees the strings of @p s (set by the config parser with malloc; the s3 secret is wiped first) and resets them. */
void weir_upload_settings_dispose(weir_upload_settings_t *s);

/** Connections to the store one worker thread keeps with these settings (0 for the delay backend). */
unsigned weir_upload_store_connections(const weir_upload_settings_t *s);

/** The smallest `upload.redis.lease` for a `upload.delay-max` of @p delay_max_ms: 2 x delay-max + 1000 ms. */
uint64_t weir_upload_min_lease_ms(uint32_t delay_max_ms);

/**
 * Registers the upload handler on @p pathconf. The handler owns its gate (shared with the handlers of later
 * configuration generations) and its backend; they are freed with the globalconf (h2o_config_dispose). @return 0,
 * -EINVAL for inconsistent settings (s3 ones logged) or a malformed Redis URL, -ENOENT when the Redis host cannot be
 * resolved (logged).
 */
int weir_upload_register(h2o_pathconf_t *pathconf, const weir_upload_settings_t *s);

/**
 * Draws a delay uniformly from [min, max] (inclusive) with the xorshift state @p state (non-zero), without modulo bias.
 */
uint32_t weir_upload_draw_delay(uint64_t *state, uint32_t min, uint32_t max);

/** What an upload handler holds, as one worker context sees it. */
typedef struct st_weir_upload_stats_t {
    weir_gate_stats_t gate; /**< the gate's counters (the whole process) */
    size_t queued;          /**< uploads of the context waiting for a slot */
    size_t delays;          /**< uploads of the context holding a slot, in their backend (the delay: on its timing wheel) */
} weir_upload_stats_t;

/**
 * Fills @p st for the upload handler registered on @p pathconf, as seen from context @p ctx (call on ctx's loop thread).
 * For tests, which check that requests that went away gave everything back. @return 0, or -ENOENT when @p pathconf has
 * no upload handler.
 */
int weir_upload_stats(h2o_pathconf_t *pathconf, h2o_context_t *ctx, weir_upload_stats_t *st);

/** Frees the strings of @p s (the secret is wiped first) and leaves it empty. */
void weir_upload_s3_settings_dispose(weir_upload_s3_settings_t *s);

/**
 * Checks an endpoint: "http://" or "https://", a host (a name, an IPv4 address or [an IPv6 one]), an optional port
 * from 1 to 65535, nothing after but an optional "/". @return 0, or -EINVAL with a reason in @p reason.
 */
int weir_upload_s3_check_endpoint(const char *endpoint, char *reason, size_t size);

/**
 * Checks complete s3 settings (as weir_upload_s3_create needs them: endpoint, region and bucket valid, credentials
 * present). @return 0, or -EINVAL with a reason in @p reason.
 */
int weir_upload_s3_check(const weir_upload_s3_settings_t *s, char *reason, size_t size);

/** Applies one upload.s3.* key (handlers/upload_s3_conf.c); as weir_module_t::parse_key. */
int weir__upload_s3_parse_key(weir_upload_s3_settings_t *s, const char *key, const weir_conf_node_t *value,
                              weir_conf_errors_t *errs);

/**
 * Completes and checks the s3 settings of the path mapping @p node once all keys are applied: the credentials come
 * from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) when the file gives none.
 * @return 0, or -1 with an error recorded.
 */
int weir__upload_s3_finish(weir_upload_s3_settings_t *s, const weir_conf_node_t *node, weir_conf_errors_t *errs);

/** The module table entry (handlers/upload_conf.c). */
extern const weir_module_t weir_upload_module;

#endif
