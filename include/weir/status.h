/**
 * @file status.h
 * The `status` module: what weir is doing and whether it can serve, for Prometheus, load balancers and Kubernetes.
 *
 * - `status.metrics: ON`: `GET` answers the default metrics registry (metrics.h) in the Prometheus text exposition
 *   format 0.0.4 (`Content-Type: text/plain; version=0.0.4`).
 * - `status.live: ON`: `GET` answers `200 {"status": "ok"}` while the process answers at all.
 * - `status.ready: ON`: `GET` answers `503 {"status": "draining"}` once the process is shutting down
 *   (weir_server_draining; a reload, whose old generation drains, does not count),
 *   `503 {"status": "unavailable", "checks": [...]}` while a dependency of the readiness registry (health.h) is down
 *   (every Redis command client registers one: the cache's, the gate's),
 *   and `200 {"status": "ready", "checks": [...]}` otherwise; each check is `{"name": ..., "up": true|false,
 *   "threads_up": N, "threads": M}`.
 * A path serves exactly one of them; `HEAD` answers the same without the body, other methods get 405.
 *
 * When some path has `status.metrics: ON`, the server also counts every request of every path (weir_status_instrument):
 * `weir_http_requests_total{path,method,status,protocol}`, `weir_http_request_duration_seconds{path}` and
 * `weir_http_requests_in_flight{path}`. Without it, requests are not counted at all.
 */
#ifndef WEIR_STATUS_H
#define WEIR_STATUS_H

#include <h2o.h>
#include "weir/module.h"
#include "weir/server.h"

/** The `path` label of requests that matched no configured path (h2o's fallback: 404s, and errors h2o sends itself). */
#define WEIR_STATUS_OTHER_PATH "(other)"

/** Settings of one status path (YAML keys status.*): exactly one of them is set. */
typedef struct st_weir_status_settings_t {
    int metrics; /**< `status.metrics`: Prometheus text exposition */
    int live;    /**< `status.live`: liveness */
    int ready;   /**< `status.ready`: readiness */
} weir_status_settings_t;

/** Fills @p s with the defaults (all OFF). */
void weir_status_settings_init(weir_status_settings_t *s);

/** Registers the status handler on @p pathconf. @return 0, or -EINVAL unless exactly one endpoint is ON. */
int weir_status_register(h2o_pathconf_t *pathconf, const weir_status_settings_t *s);

/** Whether @p conf has a path with `status.metrics: ON`: then the server calls weir_status_instrument on every path. */
int weir_status_counts_requests(const weir_server_conf_t *conf);

/**
 * Counts the requests of @p pathconf: a first handler that counts the requests in flight (and passes them on), and a
 * logger that counts each request when it is disposed, by method, status and protocol, with its duration. @p path is
 * the `path` label (the configured path, never the request's URL: the label's values are bounded); NULL for a host's
 * fallback path (WEIR_STATUS_OTHER_PATH). Call before any other handler is created on @p pathconf.
 */
void weir_status_instrument(h2o_pathconf_t *pathconf, const char *path);

/** The module table entry (handlers/status_conf.c). */
extern const weir_module_t weir_status_module;

#endif
