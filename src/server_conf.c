#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/conn.h"
#include "weir/server.h"
#include "weir/tls.h"


void weir_server_conf_init(weir_server_conf_t *conf)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(conf, 0, sizeof(*conf));
    conf->num_threads = ncpu < 1 ? 1 : ncpu > WEIR_MAX_THREADS ? WEIR_MAX_THREADS : (unsigned)ncpu;
    conf->limit_request_body = WEIR_DEFAULT_LIMIT_REQUEST_BODY;
    conf->graceful_shutdown_timeout_ms = WEIR_DEFAULT_TIMEOUT_MS;
    /* 60 s, as nginx's client_header_timeout: load generators such as ab open a spare connection they never use, and
     * a shorter timeout closes it in the middle of a long run, which they count as a failed request. */
    conf->http1_request_timeout_ms = WEIR_DEFAULT_HTTP1_REQUEST_TIMEOUT_MS;
    conf->http2_idle_timeout_ms = WEIR_DEFAULT_TIMEOUT_MS;
    conf->write_timeout_ms = WEIR_DEFAULT_WRITE_TIMEOUT_MS;
    conf->limit_response_memory = WEIR_DEFAULT_LIMIT_RESPONSE_MEMORY;
    conf->http2_reset_budget = WEIR_CONN_DEFAULT_RESET_BUDGET;
}

size_t weir_server_default_max_connections(const weir_server_conf_t *conf, uint64_t nofile)
{
    uint64_t reserved = WEIR_RESERVED_FDS, per_thread = WEIR_RESERVED_FDS_PER_THREAD + conf->num_listeners;

    for (size_t h = 0; h != conf->num_hosts; ++h)
        for (size_t p = 0; p != conf->hosts[h].num_paths; ++p) {
            const weir_path_conf_t *path = conf->hosts[h].paths + p;
            if (path->module->fds_per_thread != NULL)
                per_thread += path->module->fds_per_thread(path->settings);
        }
    reserved += per_thread * conf->num_threads;
    return nofile > reserved ? (size_t)(nofile - reserved) : 1;
}

static void unknown_key(const weir_conf_pair_t *pair, weir_conf_errors_t *errs)
{
    weir_conf_error(errs, pair->key, "unknown key \"%s\"", pair->key->data.scalar.str);
}

/* Loads the certificate chain and the key as the server will, so that a bad file is reported with its place in the
 * config at startup (and on reload) rather than as a failure of the running server. */
static void check_ssl_files(const weir_conf_node_t *cert_node, const char *cert_file, const weir_conf_node_t *key_node,
                            const char *key_file, weir_conf_errors_t *errs)
{
    weir_tls_errors_t tls;
    SSL_CTX *ctx = weir_tls_create_server_ctx(cert_file, key_file, &tls);

    if (tls.certificate[0] != '\0')
        weir_conf_error(errs, cert_node, "%s", tls.certificate);
    if (tls.key[0] != '\0')
        weir_conf_error(errs, key_node, "%s", tls.key);
    SSL_CTX_free(ctx);
}

static void parse_ssl(weir_listen_conf_t *listener, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_conf_node_t *cert_node = NULL, *key_node = NULL;
    int ok = 1;

    if (weir_conf_expect_type(node, WEIR_CONF_MAPPING, errs) != 0)
        return;
    for (size_t i = 0; i != node->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = node->data.mapping.elements + i;
        const char *key = pair->key->data.scalar.str;
        if (strcmp(key, "certificate-file") == 0) {
            cert_node = pair->value;
            ok &= weir_conf_to_path(pair->value, 1, &listener->certificate_file, errs) == 0;
        } else if (strcmp(key, "key-file") == 0) {
            key_node = pair->value;
            ok &= weir_conf_to_path(pair->value, 1, &listener->key_file, errs) == 0;
        } else {
            unknown_key(pair, errs);
        }
    }
    if (cert_node == NULL) {
        weir_conf_error(errs, node, "missing \"certificate-file\"");
        ok = 0;
    }
    if (key_node == NULL) {
        weir_conf_error(errs, node, "missing \"key-file\"");
        ok = 0;
    }
    if (ok)
        check_ssl_files(cert_node, listener->certificate_file, key_node, listener->key_file, errs);
}

static void parse_listener(weir_server_conf_t *conf, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    weir_listen_conf_t *listener;
    int has_port = 0;
    char where[4096];

    if (weir_conf_expect_type(node, WEIR_CONF_MAPPING, errs) != 0)
        return;
    conf->listeners = weir_realloc(conf->listeners, sizeof(conf->listeners[0]) * (conf->num_listeners + 1));
    listener = conf->listeners + conf->num_listeners++;
    memset(listener, 0, sizeof(*listener));
    snprintf(where, sizeof(where), "%s:%u", node->filename, node->line);
    listener->where = weir_strdup(where);

    for (size_t i = 0; i != node->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = node->data.mapping.elements + i;
        const char *key = pair->key->data.scalar.str;
        if (strcmp(key, "port") == 0) {
            int64_t port;
            has_port = 1;
            if (weir_conf_to_int64(pair->value, 0, 65535, &port, errs) == 0)
                listener->port = (uint16_t)port;
        } else if (strcmp(key, "host") == 0) {
            const char *host;
            if (weir_conf_to_string(pair->value, &host, errs) == 0)
                listener->host = weir_strdup(host);
        } else if (strcmp(key, "ssl") == 0) {
            parse_ssl(listener, pair->value, errs);
        } else {
            unknown_key(pair, errs);
        }
    }
    if (!has_port)
        weir_conf_error(errs, node, "missing \"port\"");
}

static void parse_listen(weir_server_conf_t *conf, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    switch (node->type) {
    case WEIR_CONF_MAPPING:
        parse_listener(conf, node, errs);
        break;
    case WEIR_CONF_SEQUENCE:
        if (node->data.sequence.size == 0)
            weir_conf_error(errs, node, "expected at least one listener");
        for (size_t i = 0; i != node->data.sequence.size; ++i)
            parse_listener(conf, node->data.sequence.elements[i], errs);
        break;
    default:
        weir_conf_error(errs, node, "expected a mapping or a sequence of mappings, got %s", weir_conf_type_name(node->type));
        break;
    }
}

/* "upload." or "calc." (every prefix of the module table), for messages. */
static void list_prefixes(char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; weir_modules[i] != NULL && len < size; ++i) {
        const char *sep = i == 0 ? "" : weir_modules[i + 1] == NULL ? " or " : ", ";
        int n = snprintf(buf + len, size - len, "%s\"%s\"", sep, weir_modules[i]->prefix);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* Fills @p path from the keys of @p node; @return 0 when a module was chosen (path->module and settings set). */
static int parse_path(weir_path_conf_t *path, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_module_t *module = NULL;
    size_t errors_before = errs->count;
    char prefixes[256];

    list_prefixes(prefixes, sizeof(prefixes));
    if (node->type == WEIR_CONF_SCALAR && node->data.scalar.len == 0) {
        weir_conf_error(errs, node, "no keys; expected keys of one module, starting with %s", prefixes);
        return -1;
    }
    if (weir_conf_expect_type(node, WEIR_CONF_MAPPING, errs) != 0)
        return -1;
    if (node->data.mapping.size == 0) {
        weir_conf_error(errs, node, "no keys; expected keys of one module, starting with %s", prefixes);
        return -1;
    }

    /* The first key that names a module chooses it; every key must then belong to it. */
    for (size_t i = 0; i != node->data.mapping.size && module == NULL; ++i)
        module = weir_module_for_key(node->data.mapping.elements[i].key->data.scalar.str);
    if (module != NULL) {
        path->module = module;
        path->settings = weir_calloc(1, module->settings_size);
        module->init_settings(path->settings);
    }
    for (size_t i = 0; i != node->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = node->data.mapping.elements + i;
        const char *key = pair->key->data.scalar.str;
        const weir_module_t *m = weir_module_for_key(key);
        if (m == NULL) {
            weir_conf_error(errs, pair->key, "key \"%s\" belongs to no module; expected keys starting with %s", key, prefixes);
        } else if (m != module) {
            weir_conf_error(errs, pair->key, "key \"%s\" belongs to module \"%s\", but this path is served by module \"%s\"", key,
                            m->name, module->name);
        } else if (module->parse_key(path->settings, key, pair->value, errs) == 1) {
            unknown_key(pair, errs);
        }
    }
    if (module == NULL)
        return -1;
    /* Constraints between keys are checked only on values that parsed, lest one mistake be reported twice. */
    if (errs->count == errors_before && module->check != NULL)
        module->check(path->settings, node, errs);
    return 0;
}

static void parse_host(weir_host_conf_t *host, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    const weir_conf_node_t *paths = NULL;

    if (weir_conf_expect_type(node, WEIR_CONF_MAPPING, errs) != 0)
        return;
    for (size_t i = 0; i != node->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = node->data.mapping.elements + i;
        if (strcmp(pair->key->data.scalar.str, "paths") == 0)
            paths = pair->value;
        else
            unknown_key(pair, errs);
    }
    if (paths == NULL) {
        weir_conf_error(errs, node, "missing \"paths\"");
        return;
    }
    if (weir_conf_expect_type(paths, WEIR_CONF_MAPPING, errs) != 0)
        return;
    if (paths->data.mapping.size == 0) {
        weir_conf_error(errs, paths, "expected at least one path");
        return;
    }
    host->paths = weir_calloc(paths->data.mapping.size, sizeof(host->paths[0]));
    for (size_t i = 0; i != paths->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = paths->data.mapping.elements + i;
        const char *name = pair->key->data.scalar.str;
        weir_path_conf_t *path = host->paths + host->num_paths;
        if (name[0] != '/') {
            weir_conf_error(errs, pair->key, "path \"%s\" must start with \"/\"", name);
            continue;
        }
        if (parse_path(path, pair->value, errs) == 0) {
            path->path = weir_strdup(name);
            ++host->num_paths;
        }
    }
}

static void parse_hosts(weir_server_conf_t *conf, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    if (weir_conf_expect_type(node, WEIR_CONF_MAPPING, errs) != 0)
        return;
    if (node->data.mapping.size == 0) {
        weir_conf_error(errs, node, "expected at least one host");
        return;
    }
    conf->hosts = weir_calloc(node->data.mapping.size, sizeof(conf->hosts[0]));
    for (size_t i = 0; i != node->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = node->data.mapping.elements + i;
        const char *name;
        if (weir_conf_to_string(pair->key, &name, errs) != 0)
            continue;
        /* h2o registers a host name once, compared without case (the YAML keys themselves are distinct) */
        int same = 0;
        for (size_t j = 0; j != i && !same; ++j) {
            const weir_conf_node_t *other = node->data.mapping.elements[j].key;
            if (other->type != WEIR_CONF_SCALAR)
                continue;
            if ((same = strcasecmp(other->data.scalar.str, name) == 0))
                weir_conf_error(errs, pair->key,
                                "host \"%s\" is the same as \"%s\" (line %u): host names are compared without case", name,
                                other->data.scalar.str, other->line);
        }
        if (same)
            continue;
        weir_host_conf_t *host = conf->hosts + conf->num_hosts++;
        host->name = weir_strdup(name);
        parse_host(host, pair->value, errs);
    }
}

static void parse_seconds(const weir_conf_node_t *node, uint64_t *out_ms, weir_conf_errors_t *errs)
{
    int64_t v;

    if (weir_conf_to_int64(node, 1, 3600, &v, errs) == 0)
        *out_ms = (uint64_t)v * 1000;
}

int weir_server_conf_parse(weir_server_conf_t *conf, const weir_conf_node_t *root, weir_conf_errors_t *errs)
{
    size_t errors_before = errs->count;
    int has_listen = 0, has_hosts = 0;

    if (weir_conf_expect_type(root, WEIR_CONF_MAPPING, errs) != 0)
        return -1;
    for (size_t i = 0; i != root->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = root->data.mapping.elements + i;
        const char *key = pair->key->data.scalar.str;
        const weir_conf_node_t *value = pair->value;
        int64_t v;
        if (strcmp(key, "listen") == 0) {
            has_listen = 1;
            parse_listen(conf, value, errs);
        } else if (strcmp(key, "num-threads") == 0) {
            if (weir_conf_to_int64(value, 1, WEIR_MAX_THREADS, &v, errs) == 0)
                conf->num_threads = (unsigned)v;
        } else if (strcmp(key, "limit-request-body") == 0) {
            weir_conf_to_size(value, 1, UINT64_C(4) << 30, &conf->limit_request_body, errs);
        } else if (strcmp(key, "access-log") == 0) {
            /* The file is opened when the server starts, and a missing directory is reported then. */
            char *path;
            if (weir_conf_to_path(value, 0, &path, errs) == 0) {
                free(conf->access_log);
                conf->access_log = path;
            }
        } else if (strcmp(key, "graceful-shutdown-timeout") == 0) {
            parse_seconds(value, &conf->graceful_shutdown_timeout_ms, errs);
        } else if (strcmp(key, "http1-request-timeout") == 0) {
            parse_seconds(value, &conf->http1_request_timeout_ms, errs);
        } else if (strcmp(key, "http2-idle-timeout") == 0) {
            parse_seconds(value, &conf->http2_idle_timeout_ms, errs);
        } else if (strcmp(key, "write-timeout") == 0) {
            parse_seconds(value, &conf->write_timeout_ms, errs);
        } else if (strcmp(key, "max-connections") == 0) {
            if (weir_conf_to_int64(value, 1, WEIR_MAX_CONNECTIONS, &v, errs) == 0)
                conf->max_connections = (uint64_t)v;
        } else if (strcmp(key, "http2-reset-budget") == 0) {
            if (weir_conf_to_int64(value, 0, 1000000, &v, errs) == 0)
                conf->http2_reset_budget = (uint32_t)v;
        } else if (strcmp(key, "control-socket") == 0) {
            char *path;
            if (weir_conf_to_path(value, 0, &path, errs) == 0) {
                free(conf->control_socket);
                conf->control_socket = path;
            }
        } else if (strcmp(key, "limit-response-memory") == 0) {
            weir_conf_to_size(value, 1, UINT64_C(1) << 40, &conf->limit_response_memory, errs);
        } else if (strcmp(key, "hosts") == 0) {
            has_hosts = 1;
            parse_hosts(conf, value, errs);
        } else {
            unknown_key(pair, errs);
        }
    }
    if (!has_listen)
        weir_conf_error(errs, root, "missing \"listen\"");
    if (!has_hosts)
        weir_conf_error(errs, root, "missing \"hosts\"");
    return errs->count == errors_before ? 0 : -1;
}

int weir_server_conf_load(weir_server_conf_t *conf, const char *filename, weir_conf_errors_t *errs)
{
    weir_conf_node_t *root;
    int ret;

    if ((root = weir_conf_load_file(filename, errs)) == NULL)
        return -1;
    ret = weir_server_conf_parse(conf, root, errs);
    weir_conf_free(root);
    return ret;
}

void weir_server_conf_dispose(weir_server_conf_t *conf)
{
    for (size_t i = 0; i != conf->num_listeners; ++i) {
        free(conf->listeners[i].host);
        free(conf->listeners[i].certificate_file);
        free(conf->listeners[i].key_file);
        free(conf->listeners[i].where);
    }
    free(conf->listeners);
    for (size_t i = 0; i != conf->num_hosts; ++i) {
        weir_host_conf_t *host = conf->hosts + i;
        for (size_t j = 0; j != host->num_paths; ++j) {
            weir_path_conf_t *path = host->paths + j;
            if (path->module->dispose_settings != NULL)
                path->module->dispose_settings(path->settings);
            free(path->settings);
            free(path->path);
        }
        free(host->paths);
        free(host->name);
    }
    free(conf->hosts);
    free(conf->access_log);
    free(conf->control_socket);
    memset(conf, 0, sizeof(*conf));
}
