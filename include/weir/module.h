/**
 * @file module.h
 * A handler module: a settings struct, how to fill it from the keys of a path in the YAML config,
 * and how to register a handler built from it. The server knows modules only through this table entry;
 * adding an endpoint is one new module and one line in src/modules.c.
 */
#ifndef WEIR_MODULE_H
#define WEIR_MODULE_H

#include <stddef.h>
#include <h2o.h>
#include "weir/config.h"

typedef struct st_weir_module_t {
    /** Short name, as in "upload". */
    const char *name;
    /** Prefix of the module's config keys, as in "upload.". A path's keys select its module by this prefix. */
    const char *prefix;
    /** Size of the module's settings struct. */
    size_t settings_size;
    /** Fills @p settings with the defaults. */
    void (*init_settings)(void *settings);
    /**
     * Applies one key of a path mapping.
     * @return 0 when applied, -1 when the value was wrong (error recorded), 1 when the key is unknown to the module.
     */
    int (*parse_key)(void *settings, const char *key, const weir_conf_node_t *value, weir_conf_errors_t *errs);
    /** Checks constraints between keys once all are applied (@p node is the path's mapping); 0 or -1 with an error recorded. */
    int (*check)(void *settings, const weir_conf_node_t *node, weir_conf_errors_t *errs);
    /**
     * Registers a handler on @p pathconf, built from @p settings (which the module may keep pointing to; they live
     * until the server exits). @return 0, or a negative errno-style code.
     */
    int (*register_handler)(h2o_pathconf_t *pathconf, const void *settings);
    /**
     * Descriptors that one worker thread of this path opens besides client connections (Redis connections,
     * connections to an object store), for max-connections' default; may be NULL (none).
     */
    unsigned (*fds_per_thread)(const void *settings);
    /** Frees what parse_key allocated inside @p settings (not @p settings itself); may be NULL. */
    void (*dispose_settings)(void *settings);
} weir_module_t;

/** The modules, in a NULL-terminated const table (src/modules.c). */
extern const weir_module_t *const weir_modules[];

/** The module whose prefix starts @p key, or NULL. */
const weir_module_t *weir_module_for_key(const char *key);

#endif
