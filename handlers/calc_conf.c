#include <inttypes.h>
#include <string.h>
#include "weir/calc.h"

void weir_calc_settings_init(weir_calc_settings_t *s)
{
    s->n = WEIR_CALC_DEFAULT_N;
    s->max_n = WEIR_CALC_DEFAULT_MAX_N;
    s->threads = 0;
}

static void init_settings(void *settings)
{
    weir_calc_settings_init(settings);
}

static int parse_key(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    weir_calc_settings_t *self = settings;
    uint64_t *field;
    int64_t v;

    if (strcmp(key, "calc.threads") == 0) {
        if (weir_conf_to_int64(value, 1, WEIR_CALC_MAX_THREADS, &v, errs) != 0)
            return -1;
        self->threads = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "calc.n") == 0)
        field = &self->n;
    else if (strcmp(key, "calc.max-n") == 0)
        field = &self->max_n;
    else
        return 1;
    if (weir_conf_to_int64(value, 0, (int64_t)WEIR_CALC_N_LIMIT, &v, errs) != 0)
        return -1;
    *field = (uint64_t)v;
    return 0;
}

static int check(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_calc_settings_t *self = settings;

    if (self->n > self->max_n) {
        weir_conf_error(errs, node, "calc.n (%" PRIu64 ") must not exceed calc.max-n (%" PRIu64 ")", self->n, self->max_n);
        return -1;
    }
    return 0;
}

static int register_handler(h2o_pathconf_t *pathconf, const void *settings)
{
    return weir_calc_register(pathconf, settings);
}

const weir_module_t weir_calc_module = {
    .name = "calc",
    .prefix = "calc.",
    .settings_size = sizeof(weir_calc_settings_t),
    .init_settings = init_settings,
    .parse_key = parse_key,
    .check = check,
    .register_handler = register_handler,
    .dispose_settings = NULL,
};
