#include <string.h>
#include "weir/status.h"

void weir_status_settings_init(weir_status_settings_t *s)
{
    s->metrics = 0;
    s->live = 0;
    s->ready = 0;
}

static void init_settings(void *settings)
{
    weir_status_settings_init(settings);
}

static int parse_key(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs)
{
    weir_status_settings_t *self = settings;
    int *field;

    if (strcmp(key, "status.metrics") == 0)
        field = &self->metrics;
    else if (strcmp(key, "status.live") == 0)
        field = &self->live;
    else if (strcmp(key, "status.ready") == 0)
        field = &self->ready;
    else
        return 1;
    return weir_conf_to_bool(value, field, errs) == 0 ? 0 : -1;
}

static int check(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_status_settings_t *self = settings;
    int on = self->metrics + self->live + self->ready;

    if (on == 0) {
        weir_conf_error(errs, node, "no status endpoint is ON; set one of status.metrics, status.live, status.ready to ON");
        return -1;
    }
    if (on > 1) {
        weir_conf_error(errs, node,
                        "status.metrics, status.live and status.ready each need a path of their own; set only one to ON");
        return -1;
    }
    return 0;
}

static int register_handler(h2o_pathconf_t *pathconf, const void *settings)
{
    return weir_status_register(pathconf, settings);
}

const weir_module_t weir_status_module = {
    .name = "status",
    .prefix = "status.",
    .settings_size = sizeof(weir_status_settings_t),
    .init_settings = init_settings,
    .parse_key = parse_key,
    .check = check,
    .register_handler = register_handler,
    .dispose_settings = NULL,
};
