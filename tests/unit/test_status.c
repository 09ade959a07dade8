/*
 * The status module's counting across configuration generations: two h2o configurations built from one weir
 * configuration (as a reload builds a new one while the old one drains), each with a context on one loop, count into
 * the same process-wide series; the series outlive the old generation; every handle is closed.
 */
#include <stdlib.h>
#include <string.h>
#include "unit.h"
#include "weir/config.h"
#include "weir/metrics.h"
#include "weir/server.h"
#include "weir/status.h"

static const char YAML_TEXT[] = "listen: {port: 0}\n"
                                "num-threads: 1\n"
                                "hosts:\n"
                                "  default:\n"
                                "    paths:\n"
                                "      /cache: {cache.backend: memory}\n"
                                "      /upload: {upload.concurrency: 3}\n"
                                "      /calc: {calc.n: 10, calc.threads: 1}\n"
                                "      /metrics: {status.metrics: ON}\n";

/* The value of the sample line starting with @p series (name and labels) in the exposition, or -1 when absent. */
static double sample(const char *series)
{
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    const char *text = weir_metrics_expose(weir_metrics_default(), &pool).base;
    double v = -1;
    size_t len = strlen(series);
    int found = 0;
    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            assert_false(found); /* one sample per series */
            found = 1;
            v = strtod(line + len + 1, NULL);
        }
        line = end != NULL ? end + 1 : line + strlen(line);
    }
    h2o_mem_clear_pool(&pool);
    return v;
}

static void load(weir_server_conf_t *conf)
{
    weir_conf_errors_t errs;
    weir_conf_errors_init(&errs);
    weir_conf_node_t *root = weir_conf_load_string("x.yaml", YAML_TEXT, sizeof(YAML_TEXT) - 1, &errs);
    assert_non_null(root);
    weir_server_conf_init(conf);
    assert_int_equal(weir_server_conf_parse(conf, root, &errs), 0);
    assert_int_equal(errs.count, 0);
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_two_generations_share_series(void **state)
{
    weir_server_conf_t conf;
    h2o_globalconf_t old_gen, new_gen;
    h2o_context_t old_ctx, new_ctx;
    uv_loop_t loop;

    load(&conf);
    assert_true(weir_status_counts_requests(&conf));
    uv_loop_init(&loop);
    assert_int_equal(weir_server_setup_globalconf(&old_gen, &conf, NULL), 0);
    h2o_context_init(&old_ctx, &loop, &old_gen);
    assert_true(sample("weir_upload_slots_capacity{path=\"/upload\"}") == 3);
    assert_true(sample("weir_cache_max_bytes{path=\"/cache\"}") == 64 * 1024 * 1024);

    /* the new generation registers the same families and series again: no conflict, one sample per series */
    assert_int_equal(weir_server_setup_globalconf(&new_gen, &conf, NULL), 0);
    h2o_context_init(&new_ctx, &loop, &new_gen);
    assert_true(sample("weir_http_requests_in_flight{path=\"/cache\"}") == 0);
    assert_true(sample("weir_calc_jobs_queued{path=\"/calc\"}") == 0);
    /* the gate and the store are shared by both generations (same settings): read once, not twice */
    assert_true(sample("weir_upload_slots_capacity{path=\"/upload\"}") == 3);
    assert_true(sample("weir_cache_max_bytes{path=\"/cache\"}") == 64 * 1024 * 1024);

    /* the old generation drains and goes: what it shared stays, and so do the series */
    h2o_context_dispose(&old_ctx);
    h2o_config_dispose(&old_gen);
    assert_true(sample("weir_upload_slots_capacity{path=\"/upload\"}") == 3);
    assert_true(sample("weir_cache_max_bytes{path=\"/cache\"}") == 64 * 1024 * 1024);
    assert_true(sample("weir_cache_evictions_total{path=\"/cache\"}") == 0);
    assert_true(sample("weir_http_requests_in_flight{path=\"(other)\"}") == 0);

    h2o_context_dispose(&new_ctx);
    h2o_config_dispose(&new_gen);
    assert_true(sample("weir_upload_slots_capacity{path=\"/upload\"}") == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    weir_server_conf_dispose(&conf);
}

static void test_counts_requests_only_with_metrics(void **state)
{
    weir_server_conf_t conf;
    weir_server_conf_init(&conf);
    char host_name[] = "default", livez[] = "/livez", metrics_path[] = "/metrics";
    weir_host_conf_t host = {.name = host_name};
    weir_status_settings_t live, metrics;
    weir_status_settings_init(&live);
    weir_status_settings_init(&metrics);
    live.live = 1;
    metrics.metrics = 1;
    weir_path_conf_t paths[] = {{.path = livez, .module = &weir_status_module, .settings = &live},
                                {.path = metrics_path, .module = &weir_status_module, .settings = &metrics}};
    host.paths = paths;
    host.num_paths = 1;
    conf.hosts = &host;
    conf.num_hosts = 1;
    assert_false(weir_status_counts_requests(&conf));
    host.num_paths = 2;
    assert_true(weir_status_counts_requests(&conf));
}

static void test_register_needs_one_endpoint(void **state)
{
    h2o_globalconf_t gc;
    h2o_config_init(&gc);
    h2o_hostconf_t *host = h2o_config_register_host(&gc, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/s", 0);
    weir_status_settings_t s;
    weir_status_settings_init(&s);
    assert_int_equal(weir_status_register(path, &s), -EINVAL);
    s.live = s.ready = 1;
    assert_int_equal(weir_status_register(path, &s), -EINVAL);
    s.live = 0;
    assert_int_equal(weir_status_register(path, &s), 0);
    h2o_config_dispose(&gc);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_two_generations_share_series), cmocka_unit_test(test_counts_requests_only_with_metrics),
                cmocka_unit_test(test_register_needs_one_endpoint))
