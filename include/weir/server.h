/**
 * @file server.h
 * The server's own settings (listeners, threads, limits, hosts and their paths), how they are read from the
 * YAML config, and how the server runs them.
 */
#ifndef WEIR_SERVER_H
#define WEIR_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include "weir/access_log.h"
#include "weir/config.h"
#include "weir/module.h"

/** One `listen:` entry. */
typedef struct st_weir_listen_conf_t {
    char *host;             /**< address to bind ("127.0.0.1", "::1", a name); NULL for all addresses */
    uint16_t port;          /**< 0 asks the kernel for a free port (the chosen one is logged) */
    char *certificate_file; /**< TLS when set (with key_file): h2 and http/1.1 over ALPN */
    char *key_file;
    char *where; /**< "FILE:LINE" of the entry, for runtime messages such as a failed bind */
} weir_listen_conf_t;

/** One path of a host, served by one module. */
typedef struct st_weir_path_conf_t {
    char *path; /**< "/upload" */
    const weir_module_t *module;
    void *settings; /**< the module's settings struct, filled from the path's keys */
} weir_path_conf_t;

/** One entry of `hosts:`. */
typedef struct st_weir_host_conf_t {
    char *name; /**< "default", or "example.com:8080" as in h2o */
    weir_path_conf_t *paths;
    size_t num_paths;
} weir_host_conf_t;

/** The whole configuration. */
typedef struct st_weir_server_conf_t {
    weir_listen_conf_t *listeners;
    size_t num_listeners;
    unsigned num_threads;                  /**< `num-threads`, default: number of CPUs */
    uint64_t limit_request_body;           /**< `limit-request-body` in bytes, default 10 MiB */
    char *access_log;                      /**< `access-log`, NULL when absent */
    uint64_t graceful_shutdown_timeout_ms; /**< `graceful-shutdown-timeout` (seconds in YAML), default 10 s */
    uint64_t http1_request_timeout_ms;     /**< `http1-request-timeout` (seconds), default 60 s */
    uint64_t http2_idle_timeout_ms;        /**< `http2-idle-timeout` (seconds), default 10 s */
    uint64_t write_timeout_ms;             /**< `write-timeout` (seconds): a client that reads nothing of its answers for
                                                this long is disconnected; default 60 s */
    uint64_t max_connections;              /**< `max-connections` (per process); 0: derived from the descriptor limit */
    uint64_t limit_response_memory;        /**< `limit-response-memory`: bytes of large answers (16 KiB and more) that
                                                may wait for their readers at once; beyond, 503; default 256 MiB */
    uint32_t http2_reset_budget;           /**< `http2-reset-budget`: RST_STREAM frames per second one HTTP/2 connection
                                                may send before it is closed (0: no limit); default
                                                WEIR_CONN_DEFAULT_RESET_BUDGET */
    char *control_socket;                  /**< `control-socket`: unix socket for `weir -s reload`; NULL: none */
    weir_host_conf_t *hosts;
    size_t num_hosts;
} weir_server_conf_t;

/** Largest `num-threads`. */
#define WEIR_MAX_THREADS 1024
/** Largest `max-connections`. */
#define WEIR_MAX_CONNECTIONS 10000000
/** Default `limit-request-body` (10 MiB). */
#define WEIR_DEFAULT_LIMIT_REQUEST_BODY (10 * 1024 * 1024)
/** Default `graceful-shutdown-timeout` and `http2-idle-timeout` (ms). */
#define WEIR_DEFAULT_TIMEOUT_MS 10000
/** Default `http1-request-timeout` (ms). */
#define WEIR_DEFAULT_HTTP1_REQUEST_TIMEOUT_MS 60000
/** Default `write-timeout` (ms). */
#define WEIR_DEFAULT_WRITE_TIMEOUT_MS 60000
/** Default `limit-response-memory` (256 MiB). */
#define WEIR_DEFAULT_LIMIT_RESPONSE_MEMORY (UINT64_C(256) << 20)
/** Descriptors kept out of max-connections' default for the process itself (log files, config reads, stdio). */
#define WEIR_RESERVED_FDS 64
/** Descriptors kept out of max-connections' default for each worker thread (its loop's own, plus listeners). */
#define WEIR_RESERVED_FDS_PER_THREAD 16

/** Fills @p conf with the defaults and no listeners or hosts. */
void weir_server_conf_init(weir_server_conf_t *conf);

/**
 * Applies the document @p root to @p conf, recording every error found (not only the first): unknown keys,
 * wrong types, values out of range, missing `listen` or `hosts`, unreadable files, certificates or keys that do
 * not load or do not match, paths whose keys belong to no module or to several.
 * @return 0, or -1 when any error was recorded.
 */
int weir_server_conf_parse(weir_server_conf_t *conf, const weir_conf_node_t *root, weir_conf_errors_t *errs);

/** weir_conf_load_file + weir_server_conf_parse. @return 0, or -1 with errors recorded. */
int weir_server_conf_load(weir_server_conf_t *conf, const char *filename, weir_conf_errors_t *errs);

/** Frees everything @p conf owns, including module settings. */
void weir_server_conf_dispose(weir_server_conf_t *conf);

/**
 * The number of connections the server accepts at once when `max-connections` is not set: the descriptor limit
 * @p nofile (RLIMIT_NOFILE) less what the process needs besides connections: WEIR_RESERVED_FDS, and per worker
 * thread WEIR_RESERVED_FDS_PER_THREAD, one per listener and what each path's module says it opens (Redis
 * connections, connections to the object store). At least 1.
 */
size_t weir_server_default_max_connections(const weir_server_conf_t *conf, uint64_t nofile);

/**
 * Initialises @p gc (h2o_config_init) and fills it from @p conf: limits and timeouts, every host with its paths (each
 * path's module registers its handler; longest paths first), a 404 fallback, and @p access_log (may be NULL) on
 * every path (a weir_access_log_t, see access_log.h). Used by the server and by tests and fuzzers that drive the real stack
 * in-process. Dispose @p gc with h2o_config_dispose, also after a failure.
 * @return 0, -EEXIST when two hosts have the same name compared without case (as h2o compares them), or the
 *         negative errno-style code of the first module that could not register (logged).
 */
int weir_server_setup_globalconf(h2o_globalconf_t *gc, const weir_server_conf_t *conf, weir_access_log_t *access_log);

/**
 * Runs the server on @p conf (taken: emptied by the call) until SIGTERM or SIGINT, then drains (see README). SIGHUP,
 * and "reload" on the control socket, re-read @p conf_file and switch to it when it is valid; SIGUSR1 reopens the
 * access log. Must be called from the main thread.
 * @return 0 after a clean shutdown, or a negative errno-style code when it could not start (message logged).
 */
int weir_server_run(const char *conf_file, weir_server_conf_t *conf);

/** Whether the process is shutting down (SIGTERM or SIGINT received); any thread. */
int weir_server_draining(void);

#endif
