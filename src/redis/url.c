/*
 * Redis URLs: redis://[[user]:password@]host[:port][/db] and unix:/path/redis.sock[?db=N&password=P].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <h2o/memory.h>
#include "weir/common.h"
#include "weir/config.h"
#include "weir/redis.h"
#include "weir/text.h"

/* NULL on a malformed escape, and on an encoded NUL: the credentials are C strings, and one cut short at a NUL would
 * be sent to AUTH as something else than what the URL says. */
static char *decode_component(const char *s, size_t len)
{
    char *out = weir_malloc(len + 1);
    ssize_t n = weir_percent_decode(s, len, out, 0);
    if (n < 0 || memchr(out, '\0', (size_t)n) != NULL) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* A credential from a unix: URL's query: absent (or empty) leaves *out NULL; repeated or holding a NUL is an error. */
static int query_credential(h2o_mem_pool_t *pool, const char *query, size_t len, const char *name, char **out, char *err,
                            size_t err_size)
{
    h2o_iovec_t v;

    switch (weir_query_find(pool, query, len, name, &v)) {
    case 0:
        if (memchr(v.base, '\0', v.len) != NULL) {
            snprintf(err, err_size, "%s must not contain NUL (%%00)", name);
            return -EINVAL;
        }
        if (v.len != 0)
            *out = weir_strndup(v.base, v.len);
        return 0;
    case -ENOENT:
        return 0;
    case -EEXIST:
        snprintf(err, err_size, "%s is given more than once", name);
        return -EINVAL;
    default:
        snprintf(err, err_size, "malformed percent-encoding");
        return -EINVAL;
    }
}

static int parse_unix_url(const char *rest, weir_redis_target_t *t, char *err, size_t err_size)
{
    const char *q = strchr(rest, '?');
    size_t path_len = q != NULL ? (size_t)(q - rest) : strlen(rest);
    h2o_mem_pool_t pool;
    h2o_iovec_t v;
    uint64_t db;
    int ret = -EINVAL;

    if (strncmp(rest, "//", 2) == 0) { /* unix:///path */
        rest += 2;
        path_len -= 2;
    }
    if (path_len == 0 || rest[0] != '/') {
        snprintf(err, err_size, "expected an absolute socket path, as in unix:/run/redis/redis.sock");
        return -EINVAL;
    }
    t->unix_path = weir_strndup(rest, path_len);
    if (q == NULL)
        return 0;

    h2o_mem_init_pool(&pool);
    const char *query = q + 1;
    size_t query_len = strlen(query);
    switch (weir_query_find(&pool, query, query_len, "db", &v)) {
    case 0:
        if (weir_parse_decimal(v.base, v.len, INT32_MAX, &db) != 0) {
            snprintf(err, err_size, "db must be a non-negative integer");
            goto Exit;
        }
        t->db = (unsigned)db;
        break;
    case -ENOENT:
        break;
    default:
        snprintf(err, err_size, "malformed percent-encoding");
        goto Exit;
    }
    if (query_credential(&pool, query, query_len, "password", &t->password, err, err_size) != 0 ||
        query_credential(&pool, query, query_len, "username", &t->username, err, err_size) != 0)
        goto Exit;
    ret = 0;
Exit:
    h2o_mem_clear_pool(&pool);
    return ret;
}

static int parse_tcp_url(const char *rest, weir_redis_target_t *t, char *err, size_t err_size)
{
    size_t auth_len = strcspn(rest, "/?#");
    const char *auth = rest, *auth_end = rest + auth_len, *path = auth_end;
    const char *at = NULL;
    uint64_t v;

    for (const char *p = auth; p < auth_end; ++p)
        if (*p == '@')
            at = p;
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon != NULL) {
            if (colon > auth && (t->username = decode_component(auth, (size_t)(colon - auth))) == NULL)
                goto BadEscape;
            if ((t->password = decode_component(colon + 1, (size_t)(at - colon - 1))) == NULL)
                goto BadEscape;
        } else if ((t->password = decode_component(auth, (size_t)(at - auth))) == NULL) {
            goto BadEscape;
        }
        if (t->password != NULL && t->password[0] == '\0') {
            free(t->password);
            t->password = NULL;
        }
        auth = at + 1;
    }

    const char *host = auth, *host_end, *port = NULL;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL) {
            snprintf(err, err_size, "unterminated IPv6 address");
            return -EINVAL;
        }
        ++host;
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':') {
                snprintf(err, err_size, "unexpected text after the IPv6 address");
                return -EINVAL;
            }
            port = host_end + 2;
        }
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    if (host_end == host) {
        snprintf(err, err_size, "missing host");
        return -EINVAL;
    }
    t->host = weir_strndup(host, (size_t)(host_end - host));
    t->port = WEIR_REDIS_DEFAULT_PORT;
    if (port != NULL) {
        if (weir_parse_decimal(port, (size_t)(auth_end - port), 65535, &v) != 0 || v == 0) {
            snprintf(err, err_size, "port must be an integer from 1 to 65535");
            return -EINVAL;
        }
        t->port = (uint16_t)v;
    }

    if (*path == '/') {
        const char *db = path + 1;
        size_t db_len = strcspn(db, "?#");
        if (db_len != 0) {
            if (weir_parse_decimal(db, db_len, INT32_MAX, &v) != 0) {
                snprintf(err, err_size, "the path must be a database number, as in /0");
                return -EINVAL;
            }
            t->db = (unsigned)v;
        }
        path = db + db_len;
    }
    if (*path != '\0') {
        snprintf(err, err_size, "unexpected \"%s\"", path);
        return -EINVAL;
    }
    return 0;
BadEscape:
    snprintf(err, err_size, "malformed percent-encoding, or an encoded NUL (%%00), in the user name or password");
    return -EINVAL;
}

int weir_redis_parse_url(const char *url, weir_redis_target_t *target, char *err, size_t err_size)
{
    int ret;

    memset(target, 0, sizeof(*target));
    if (strncmp(url, "redis://", 8) == 0) {
        ret = parse_tcp_url(url + 8, target, err, err_size);
    } else if (strncmp(url, "unix:", 5) == 0) {
        ret = parse_unix_url(url + 5, target, err, err_size);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, err_size, "TLS (rediss://) is not supported");
        ret = -EINVAL;
    } else {
        snprintf(err, err_size, "expected redis://[[user]:password@]host[:port][/db] or unix:/path/to/redis.sock");
        ret = -EINVAL;
    }
    if (ret != 0)
        weir_redis_target_dispose(target);
    return ret;
}

void weir_redis_target_dispose(weir_redis_target_t *target)
{
    free(target->host);
    free(target->unix_path);
    free(target->username);
    free(target->password);
    memset(target, 0, sizeof(*target));
}

int weir_redis_url_from_conf(const weir_conf_node_t *value, char **out, weir_conf_errors_t *errs)
{
    weir_redis_target_t target;
    char reason[160];
    const char *str;

    if (weir_conf_to_string(value, &str, errs) != 0)
        return -1;
    if (weir_redis_parse_url(str, &target, reason, sizeof(reason)) != 0) {
        weir_conf_error(errs, value, "invalid Redis URL \"%s\": %s", str, reason);
        return -1;
    }
    weir_redis_target_dispose(&target);
    free(*out);
    *out = weir_strdup(str);
    return 0;
}
