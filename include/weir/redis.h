/**
 * @file redis.h
 * The Redis client layer shared by the /cache backend and the Redis upload gate: URL parsing, per-thread pools of
 * connections on a libuv loop (AUTH, SELECT, scripts loaded and a PING before a connection counts as ready;
 * reconnection with exponential backoff; a deadline of our own on every command, since hiredis 0.14 has none), Lua
 * scripts called by their SHA-1 and reloaded transparently, and a subscriber connection kind for one channel.
 *
 * Everything but the URL functions and weir_redis_create/destroy runs on the loop the client was started on, from that
 * loop's thread. src/redis/client.c is the only file that includes hiredis's libuv adapter.
 */
#ifndef WEIR_REDIS_H
#define WEIR_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct redisReply;

/** Default port of redis:// URLs. */
#define WEIR_REDIS_DEFAULT_PORT 6379

/** Where the Redis server is, as parsed from a URL. */
typedef struct st_weir_redis_target_t {
    char *host;      /**< TCP: host name or address (brackets of an IPv6 literal removed); NULL for a unix socket */
    uint16_t port;   /**< TCP port, default 6379 */
    char *unix_path; /**< unix socket path, or NULL */
    char *username;  /**< for `AUTH username password` (Redis 6 ACL), or NULL */
    char *password;  /**< for AUTH, or NULL */
    unsigned db;     /**< SELECT db when non-zero */
} weir_redis_target_t;

/**
 * Parses `redis://[[username]:password@]host[:port][/db]` (IPv6 as `[::1]`) or `unix:/path/redis.sock[?db=N]`
 * (also `unix:///path`, with `&password=P`); user name and password are percent-decoded.
 * On success the strings in @p target are allocated (free them with weir_redis_target_dispose).
 * @return 0, or -EINVAL with a reason in @p err (at least 128 bytes).
 */
int weir_redis_parse_url(const char *url, weir_redis_target_t *target, char *err, size_t err_size);

/** Frees the strings of @p target. */
void weir_redis_target_dispose(weir_redis_target_t *target);

struct st_weir_conf_node_t;
struct st_weir_conf_errors_t;
/**
 * A configuration key whose value is a Redis URL (cache.redis.url, upload.redis.url): checked as
 * weir_redis_parse_url does, the error recorded at the node ("invalid Redis URL ...") when it is not one.
 * @return 0 with *out replaced by a copy of the URL (the previous one freed), or -1.
 */
int weir_redis_url_from_conf(const struct st_weir_conf_node_t *value, char **out, struct st_weir_conf_errors_t *errs);

/** A Lua script, called with EVALSHA by its SHA-1 (computed here, once). */
typedef struct st_weir_redis_script_t {
    const char *source; /**< the Lua text; must outlive every client that uses the script */
    char sha1[41];      /**< lower-case hex SHA-1 of source */
} weir_redis_script_t;

/** Computes the SHA-1 of @p source into @p script. */
void weir_redis_script_init(weir_redis_script_t *script, const char *source);

/** Options of weir_redis_create. */
typedef struct st_weir_redis_options_t {
    const char *url;         /**< as for weir_redis_parse_url (required) */
    const char *who;         /**< who uses it, for log lines ("cache", "upload gate"); NULL: "redis" */
    const char *path;        /**< the path it serves, for the metrics' labels and readiness checks; NULL: "" */
    unsigned pool_size;      /**< command connections per client (>= 1); subscribers always have one */
    uint64_t timeout_ms;     /**< default deadline of each command, and of each connection attempt (>= 1) */
    uint64_t backoff_min_ms; /**< first reconnect delay; 0: 100 */
    uint64_t backoff_max_ms; /**< reconnect delays double up to this; 0: 5000 */
    /** Scripts loaded (SCRIPT LOAD) on every new command connection before it counts as ready; may be NULL. */
    const weir_redis_script_t *const *scripts;
    size_t num_scripts;
} weir_redis_options_t;

/** Shared, read-only settings of a Redis server (the target with its host resolved, the options). */
typedef struct st_weir_redis_t weir_redis_t;

/**
 * Creates the settings (connects nothing). A host name is resolved here, once, so that no (re)connection blocks a
 * loop on DNS. Its clients and subscribers count into the Redis series of the default metrics registry
 * (weir_metrics_redis_init, with use = who and path), found again when a later generation creates the same.
 * @return 0 with *out set, -EINVAL for a malformed URL or options, -ENOENT when the host cannot be resolved (both
 *         logged).
 */
int weir_redis_create(const weir_redis_options_t *opts, weir_redis_t **out);

/** Frees @p redis; every client and subscriber made from it has been stopped. */
void weir_redis_destroy(weir_redis_t *redis);

/** "host:port" or the socket path, for messages. */
const char *weir_redis_where(const weir_redis_t *redis);

/** A pool of command connections on one loop. */
typedef struct st_weir_redis_client_t weir_redis_client_t;

/**
 * Told when a client or subscriber changes state: @p up is 1 when it becomes usable (a first connection ready; for a
 * subscriber, subscribed), 0 when it stops being usable (the last ready connection lost) or when its very first
 * attempt failed. Each change is told once; it is never called from inside weir_redis_*_start or _stop.
 */
typedef void (*weir_redis_state_cb)(void *data, int up);

/**
 * The outcome of a command, called exactly once, on the client's loop: @p status 0 with the reply (valid only during
 * the call; an error reply has status -EPROTO and @p reply set), or -EAGAIN (Redis unavailable: no connection, or
 * it was lost with the command pending; @p reply NULL), -ETIMEDOUT (no reply within the deadline; a late reply is
 * dropped), -EPROTO (Redis answered with an error). @p message is a human-readable reason when status is not 0.
 * It may be called before weir_redis_command returns (no connection).
 */
typedef void (*weir_redis_reply_cb)(void *data, int status, const struct redisReply *reply, const char *message);

/**
 * Starts a pool of opts.pool_size connections on @p loop; the connection attempts start now. Commands given during
 * the very first attempt wait for it (bounded by their deadlines); afterwards, while no connection is ready, commands
 * fail at once with -EAGAIN. @p on_state may be NULL. Until it is stopped, the pool is a readiness check (health.h)
 * named "WHO PATH: redis at WHERE", up while one of its connections is ready.
 */
weir_redis_client_t *weir_redis_client_start(weir_redis_t *redis, uv_loop_t *loop, weir_redis_state_cb on_state, void *data);

/**
 * Stops the pool: every uv handle is closed (memory freed in the close callbacks). With @p flush 0, pending commands
 * complete with -EAGAIN before this returns. With @p flush 1, commands already given are still sent, and complete as
 * usual (reply, or -ETIMEDOUT / -EAGAIN) after this returns, within their deadlines; the state callback is not called
 * any more.
 */
void weir_redis_client_stop(weir_redis_client_t *client, int flush);

/** Whether a connection is ready now. */
int weir_redis_client_is_up(const weir_redis_client_t *client);

/** Counters of a pool. */
typedef struct st_weir_redis_client_stats_t {
    unsigned ready;    /**< connections ready for commands now */
    uint64_t connects; /**< connections that became ready, over the pool's life */
    uint64_t failures; /**< connection attempts that failed or connections that were lost */
    uint64_t commands; /**< commands sent (an EVALSHA retried as EVAL counts twice) */
} weir_redis_client_stats_t;

/** Fills @p stats. */
void weir_redis_client_stats(const weir_redis_client_t *client, weir_redis_client_stats_t *stats);

/**
 * Sends a command (@p argc arguments; @p lens may be NULL for NUL-terminated ones) on a ready connection of the pool, in
 * turn, and calls @p cb exactly once. Commands given on one connection are answered in order; with a pool of one,
 * commands reach Redis in the order they were given. @p timeout_ms 0 means the client's timeout.
 */
void weir_redis_command(weir_redis_client_t *client, int argc, const char **argv, const size_t *lens, uint64_t timeout_ms,
                        weir_redis_reply_cb cb, void *data);

/**
 * As weir_redis_command for `EVALSHA sha1 numkeys args...`. When Redis answers NOSCRIPT (its script cache was flushed),
 * the call is sent again as EVAL with the source, on the same connection, within the same deadline, which also loads
 * the script again; @p cb sees only the final outcome.
 */
void weir_redis_evalsha(weir_redis_client_t *client, const weir_redis_script_t *script, int numkeys, int argc, const char **argv,
                        const size_t *lens, uint64_t timeout_ms, weir_redis_reply_cb cb, void *data);

/** A connection subscribed to one channel, resubscribing by itself after a reconnection. */
typedef struct st_weir_redis_subscriber_t weir_redis_subscriber_t;

/** A message published on the channel; @p msg is valid only during the call. */
typedef void (*weir_redis_message_cb)(void *data, const char *msg, size_t len);

/**
 * Connects (AUTH as the URL says) and subscribes to @p channel; @p on_state tells when the subscription is in place
 * (1) and when it is lost (0). Messages published while it is lost are not seen.
 */
weir_redis_subscriber_t *weir_redis_subscriber_start(weir_redis_t *redis, uv_loop_t *loop, const char *channel,
                                                     weir_redis_message_cb on_message, weir_redis_state_cb on_state, void *data);

/** Closes the subscriber's connection and handles (memory freed in the close callbacks); no callback runs afterwards. */
void weir_redis_subscriber_stop(weir_redis_subscriber_t *sub);

/** Whether the subscription is in place now. */
int weir_redis_subscriber_is_up(const weir_redis_subscriber_t *sub);

#endif
