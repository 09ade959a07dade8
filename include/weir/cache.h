/**
 * @file cache.h
 * `/cache`: a key/value cache over HTTP.
 *
 * - `GET /cache?key=K` answers `200 {"data": "VALUE"}`, or `200 {"data": null}` when the key is absent or expired;
 *   `HEAD` answers the same without the body.
 * - `PUT /cache?key=K[&ttl=SECONDS]` stores the request body and answers `200 {"success": true}`.
 * - `DELETE /cache?key=K` answers `200 {"success": true, "deleted": true|false}`.
 *
 * Keys are percent-decoded and hold 1 to max_key_size bytes (any bytes). Values hold up to max_value_size bytes of
 * UTF-8. Bad input answers 400 with `{"error": "..."}`, other methods 405 with `Allow: GET, PUT, DELETE`.
 * Backend failures: 503 when the backend cannot be reached, 504 when it does not answer within its deadline, 502 when
 * it answers with an error or holds a value that is not UTF-8 (written by another program) and so cannot be shown as
 * a JSON string, 507 when a value cannot fit in the memory backend at all.
 *
 * Two backends sit behind one small const vtable (weir_cache_backend_vtable_t):
 * - memory (the default): one store shared by all worker threads, split into lock-striped shards, byte-accounted,
 *   evicting the least recently used entries of a shard beyond its share of max-bytes, TTLs checked at read time;
 * - redis: the shared Redis client layer (redis.h) on each worker's libuv loop, a small pool of connections per worker
 *   thread that reconnects by itself with exponential backoff, a libuv timer as the deadline of every command.
 */
#ifndef WEIR_CACHE_H
#define WEIR_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include "weir/module.h"

/** Default `cache.max-key-size`. */
#define WEIR_CACHE_DEFAULT_MAX_KEY_SIZE 512
/** Default `cache.max-value-size` (1 MiB). */
#define WEIR_CACHE_DEFAULT_MAX_VALUE_SIZE (1024 * 1024)
/** Default `cache.memory.max-bytes` (64 MiB). */
#define WEIR_CACHE_DEFAULT_MEMORY_MAX_BYTES (64 * 1024 * 1024)
/** Default `cache.redis.url`. */
#define WEIR_CACHE_DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"
/** Largest `cache.max-key-size`. */
#define WEIR_CACHE_MAX_KEY_SIZE_LIMIT 65536
/** Largest `cache.max-value-size` (512 MiB). */
#define WEIR_CACHE_MAX_VALUE_SIZE_LIMIT (512 * 1024 * 1024)
/** Largest `cache.redis.pool`. */
#define WEIR_CACHE_MAX_REDIS_POOL 64
/** Largest `cache.redis.timeout` (ms). */
#define WEIR_CACHE_MAX_REDIS_TIMEOUT_MS 600000
/** Default `cache.redis.pool`. */
#define WEIR_CACHE_DEFAULT_REDIS_POOL 2
/** Default `cache.redis.timeout` (ms). */
#define WEIR_CACHE_DEFAULT_REDIS_TIMEOUT_MS 1000
/** Largest ttl accepted (seconds): about 68 years. */
#define WEIR_CACHE_MAX_TTL INT32_MAX

/** Which backend a /cache path uses. */
typedef enum en_weir_cache_backend_kind_t {
    WEIR_CACHE_BACKEND_MEMORY,
    WEIR_CACHE_BACKEND_REDIS,
} weir_cache_backend_kind_t;

/** Settings of one /cache path (YAML keys cache.*). */
typedef struct st_weir_cache_settings_t {
    weir_cache_backend_kind_t backend; /**< `cache.backend`: memory (default) or redis */
    size_t max_key_size;               /**< `cache.max-key-size`: bytes after decoding, 1..65536, default 512 */
    size_t max_value_size;             /**< `cache.max-value-size`: bytes, 0..512 MiB, default 1 MiB */
    uint64_t memory_max_bytes;         /**< `cache.memory.max-bytes`: default 64 MiB, must hold one largest entry */
    char *redis_url;                   /**< `cache.redis.url`; NULL means WEIR_CACHE_DEFAULT_REDIS_URL */
    unsigned redis_pool;               /**< `cache.redis.pool`: connections per worker thread, 1..64, default 2 */
    uint64_t redis_timeout_ms;         /**< `cache.redis.timeout`: milliseconds per command, 1..600000, default 1000 */
    char *redis_prefix;                /**< `cache.redis.prefix`: prepended to every key; NULL means none */
} weir_cache_settings_t;

/** Fills @p s with the defaults (allocates nothing). */
void weir_cache_settings_init(weir_cache_settings_t *s);

/** Frees the strings of @p s (set by the config parser with malloc) and resets them to NULL. */
void weir_cache_settings_dispose(weir_cache_settings_t *s);

/**
 * Registers the cache handler on @p pathconf, with a backend built from @p s. The memory store is created here and
 * shared by every worker thread; the Redis pool of each worker thread is connected by the handler's on_context_init
 * and closed by its on_context_dispose. Everything is freed with the globalconf (h2o_config_dispose).
 * @return 0, -EINVAL for inconsistent settings or a malformed Redis URL (logged), -ENOENT when the Redis host name
 *         cannot be resolved (logged).
 */
int weir_cache_register(h2o_pathconf_t *pathconf, const weir_cache_settings_t *s);

/** The module table entry (handlers/cache_conf.c). */
extern const weir_module_t weir_cache_module;

/* ---------------------------------------------------------------------------------------------------------------- */
/* Backends. Used by handlers/cache.c; public so that each backend can be tested on its own.                       */

typedef struct st_weir_cache_call_t weir_cache_call_t;

/** The outcome of one backend call. */
typedef struct st_weir_cache_result_t {
    /**
     * 0 on success; -ENOENT: get found no live value; -EAGAIN: the backend cannot be reached now (503);
     * -ETIMEDOUT: no answer within the deadline (504); -EPROTO: the backend answered with an error (502), see message;
     * -E2BIG: the entry can never fit in the memory store (507).
     */
    int status;
    h2o_iovec_t value;   /**< get with status 0: the value, valid only while on_done runs */
    int deleted;         /**< del with status 0: whether a live entry was removed */
    const char *message; /**< errors: a human-readable detail, valid only while on_done runs; may be NULL */
} weir_cache_result_t;

/** One command given to a backend. The caller owns it and keeps it alive until on_done. */
struct st_weir_cache_call_t {
    h2o_iovec_t key;   /**< the (decoded) key; needs to stay valid only during the get/set/del call itself */
    h2o_iovec_t value; /**< set: the value; likewise valid only during the call */
    uint32_t ttl;      /**< set: seconds to live, 0 for none */
    /**
     * get: when not NULL, a backend may place the value it hands to on_done in this pool instead of a buffer of its
     * own (the memory backend does: no allocation of its own per hit). The value is then valid as long as the pool.
     */
    h2o_mem_pool_t *pool;
    /**
     * Called exactly once, on the thread (and loop) the command was given on; it may be called before get/set/del
     * returns (memory), or later from the loop (redis). The call may be freed inside.
     */
    void (*on_done)(weir_cache_call_t *call, const weir_cache_result_t *result);
};

/** A backend's operations; every function takes the backend's own @p data. */
typedef struct st_weir_cache_backend_vtable_t {
    const char *name;
    /** Non-zero when every call completes (on_done is called) before get/set/del returns. */
    int completes_at_once;
    /**
     * Non-zero when the backend keeps what it is given to set as it is and gives it back to get without a copy (in
     * call->pool, by reference): the handler then stores each value as its whole JSON answer, built once at PUT.
     */
    int stores_replies;
    /**
     * Starts the per-thread state of a worker whose loop is @p loop, from inside that thread (may be NULL).
     * @return 0 with *thread set, or a negative errno-style code.
     */
    int (*start)(void *data, uv_loop_t *loop, void **thread);
    /**
     * Stops what start started, from inside the same thread: every uv handle is closed (freed in the close callbacks,
     * so running the loop to completion afterwards lets uv_loop_close return 0); pending calls complete with -EAGAIN.
     * May be NULL.
     */
    void (*stop)(void *data, void *thread);
    /** Looks up call->key. @p thread is what start gave for this thread (NULL when start is NULL or failed). */
    void (*get)(void *data, void *thread, weir_cache_call_t *call);
    /** Stores call->value under call->key, with call->ttl. */
    void (*set)(void *data, void *thread, weir_cache_call_t *call);
    /** Removes call->key. */
    void (*del)(void *data, void *thread, weir_cache_call_t *call);
    /** Frees @p data; every thread has been stopped. */
    void (*destroy)(void *data);
} weir_cache_backend_vtable_t;

/**
 * As weir_cache_register, with a backend made by the caller instead of one chosen by @p s->backend (whose other
 * backend settings are ignored; max_key_size and max_value_size apply): the handler takes @p data, and calls
 * vt->destroy(data) when it is disposed (also when this fails). For tests, which drive the handler with a backend
 * of their own (one that completes its calls when the test says): the settings can name no such backend.
 * @return 0, or -EINVAL for inconsistent sizes (logged).
 */
int weir_cache_register_backend(h2o_pathconf_t *pathconf, const weir_cache_settings_t *s, const weir_cache_backend_vtable_t *vt,
                                void *data);

/* ---- memory backend (handlers/cache_memory.c) ------------------------------------------------------------------ */

/** A thread-safe in-memory store: hash shards, each with its own mutex, LRU list, byte budget and expiry heap. */
typedef struct st_weir_cache_memory_t weir_cache_memory_t;

/** Options of weir_cache_memory_create. */
typedef struct st_weir_cache_memory_options_t {
    uint64_t max_bytes;    /**< budget over all shards, split evenly between them */
    size_t max_entry_size; /**< the largest key + value that must fit; used to choose the number of shards */
    unsigned num_shards;   /**< 0 chooses (a power of two, 1..64, each shard holding at least 4 largest entries) */
    /** Monotonic clock in nanoseconds; NULL uses CLOCK_MONOTONIC. For tests. */
    uint64_t (*now_ns)(void *clock_data);
    void *clock_data;
} weir_cache_memory_options_t;

/** Counters of a memory store (a consistent snapshot of each shard, summed). */
typedef struct st_weir_cache_memory_stats_t {
    uint64_t bytes;       /**< charged bytes of the entries held (see weir_cache_memory_entry_cost) */
    uint64_t entries;     /**< entries held, live or expired but not yet reclaimed */
    uint64_t evictions;   /**< live entries removed to make room */
    uint64_t expirations; /**< expired entries reclaimed */
    unsigned num_shards;
    uint64_t shard_max_bytes; /**< budget of each shard */
} weir_cache_memory_stats_t;

/** The vtable of the memory backend; its data is a weir_cache_memory_t. */
extern const weir_cache_backend_vtable_t weir_cache_memory_vtable;

/** Bytes an entry is charged: key + value + a fixed per-entry overhead (the entry header). */
size_t weir_cache_memory_entry_cost(size_t key_len, size_t value_len);

/** Creates a store. @return the store, or NULL when max_bytes cannot hold one entry of max_entry_size (-EINVAL). */
weir_cache_memory_t *weir_cache_memory_create(const weir_cache_memory_options_t *opts);

/** Frees the store and its entries. No other thread may use it any more. */
void weir_cache_memory_destroy(weir_cache_memory_t *m);

/**
 * Stores a copy of @p value under @p key, replacing any previous entry; @p ttl_s seconds to live (0: none). Expired
 * entries of the shard are reclaimed first, then its least recently used ones until the new entry fits.
 * @return 0, or -E2BIG when the entry is larger than a shard's budget (nothing changed).
 */
int weir_cache_memory_set(weir_cache_memory_t *m, const void *key, size_t key_len, const void *value, size_t value_len,
                          uint32_t ttl_s);

/**
 * Copies the live value of @p key, made while the shard is locked, into a new buffer (*value, freed by the caller
 * with free(); NUL-terminated, the NUL not counted in *value_len) and marks the entry most recently used.
 * @return 0, or -ENOENT when absent or expired (an expired entry is reclaimed).
 */
int weir_cache_memory_get(weir_cache_memory_t *m, const void *key, size_t key_len, char **value, size_t *value_len);

/**
 * As weir_cache_memory_get, without a copy: @p value points at the stored value itself, and @p pool holds a reference
 * to it (released when the pool is cleared), so the value stays valid as long as the pool even when the entry is
 * replaced, evicted or expires meanwhile.
 */
int weir_cache_memory_get_shared(weir_cache_memory_t *m, const void *key, size_t key_len, h2o_mem_pool_t *pool, h2o_iovec_t *value);

/** Removes @p key. @return 1 when a live entry was removed, 0 when there was none (or only an expired one). */
int weir_cache_memory_del(weir_cache_memory_t *m, const void *key, size_t key_len);

/** Fills @p stats. */
void weir_cache_memory_stats(weir_cache_memory_t *m, weir_cache_memory_stats_t *stats);

/**
 * Walks every shard under its lock and verifies the invariants (table, LRU list and heap agree; the heap is ordered;
 * bytes add up; each shard within its budget). For tests. @return 0, or -EFAULT on the first violation.
 */
int weir_cache_memory_check(weir_cache_memory_t *m);

/* ---- redis backend (handlers/cache_redis.c) -------------------------------------------------------------------- */

/** Options of weir_cache_redis_create. */
typedef struct st_weir_cache_redis_options_t {
    const char *url;         /**< as for weir_redis_parse_url; NULL: WEIR_CACHE_DEFAULT_REDIS_URL */
    unsigned pool_size;      /**< connections per worker thread (>= 1) */
    uint64_t timeout_ms;     /**< deadline of each command, and of each connection attempt */
    const char *prefix;      /**< prepended to keys; NULL: none */
    uint64_t backoff_min_ms; /**< first reconnect delay; 0: 100 */
    uint64_t backoff_max_ms; /**< reconnect delays double up to this; 0: 5000 */
    const char *path;        /**< the /cache path, for the metrics' labels and the readiness check's name; NULL: "" */
} weir_cache_redis_options_t;

/** The Redis backend: shared read-only options; each worker thread's pool is its per-thread state. */
typedef struct st_weir_cache_redis_t weir_cache_redis_t;

/** The vtable of the redis backend; its data is a weir_cache_redis_t. */
extern const weir_cache_backend_vtable_t weir_cache_redis_vtable;

/**
 * Creates the backend (connects nothing: vtable start does, per thread). Its metrics are the Redis series of the default
 * registry with `use="cache"` (weir_metrics_redis_init); each started thread adds a readiness check (health.h), up
 * while one of its connections is ready, named "cache PATH: redis at WHERE". A host name is resolved here, once, so that
 * no (re)connection blocks a loop on DNS.
 * @return 0 with *out set, -EINVAL for a malformed URL or options, -ENOENT when the host cannot be resolved
 *         (both logged).
 */
int weir_cache_redis_create(const weir_cache_redis_options_t *opts, weir_cache_redis_t **out);

/** Counters of one worker's pool, for tests. */
typedef struct st_weir_cache_redis_thread_stats_t {
    unsigned ready;    /**< connections ready for commands now */
    uint64_t connects; /**< connections that became ready, over the pool's life */
    uint64_t failures; /**< connection attempts that failed or connections that were lost */
} weir_cache_redis_thread_stats_t;

/** Fills @p stats for the per-thread state @p thread (from vtable start). */
void weir_cache_redis_thread_stats(void *thread, weir_cache_redis_thread_stats_t *stats);

#endif
