/*
 * The configuration loader: YAML bytes in memory through weir_conf_load_string and weir_server_conf_parse, so through
 * every module's keys. Properties: every error names its place ("fuzz.yaml:LINE: ..." or "fuzz.yaml: ..."); a file
 * that parses also sets h2o up (weir -t must not accept what the server cannot start), checked for files whose /cache
 * paths use memory (a Redis backend resolves its host name when it registers: no network here). Certificate paths
 * make the parser read files; nothing is written, bound or left behind.
 */
#include <string.h>
#include "fuzz.h"
#include "weir/cache.h"
#include "weir/common.h"
#include "weir/server.h"

#define FILENAME "fuzz.yaml"

static int uses_redis(const weir_server_conf_t *conf)
{
    for (size_t h = 0; h != conf->num_hosts; ++h)
        for (size_t p = 0; p != conf->hosts[h].num_paths; ++p) {
            const weir_path_conf_t *path = conf->hosts[h].paths + p;
            if (path->module == &weir_cache_module &&
                ((const weir_cache_settings_t *)path->settings)->backend == WEIR_CACHE_BACKEND_REDIS)
                return 1;
        }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* Registration failures are logged; they are what this target looks for, and the check says so. */
    weir_log_min_level = WEIR_LOG_ERROR;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    weir_conf_errors_t errs;
    weir_server_conf_t conf;
    weir_conf_node_t *root;

    weir_conf_errors_init(&errs);
    weir_server_conf_init(&conf);
    if ((root = weir_conf_load_string(FILENAME, (const char *)data, size, &errs)) != NULL) {
        if (weir_server_conf_parse(&conf, root, &errs) == 0) {
            FUZZ_CHECK(errs.count == 0);
            FUZZ_CHECK(conf.num_listeners != 0 && conf.num_hosts != 0);
            if (!uses_redis(&conf)) {
                h2o_globalconf_t gc;
                FUZZ_CHECK(weir_server_setup_globalconf(&gc, &conf, NULL) == 0);
                h2o_config_dispose(&gc);
            }
        } else {
            FUZZ_CHECK(errs.count != 0);
        }
    } else {
        FUZZ_CHECK(errs.count != 0);
    }
    for (size_t i = 0; i != errs.count; ++i)
        FUZZ_CHECK(strncmp(errs.messages[i], FILENAME ":", sizeof(FILENAME)) == 0);
    weir_conf_free(root);
    weir_server_conf_dispose(&conf);
    weir_conf_errors_dispose(&errs);
    return 0;
}
