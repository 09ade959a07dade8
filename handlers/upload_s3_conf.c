/*
 * The upload.s3.* keys -> weir_upload_s3_settings_t, and the checks `weir -t` can make without the network: the
 * endpoint's form, the bucket and region, a readable and non-empty secret file, credentials present. The secret is
 * read here, once, at configuration time, and never written to a log.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/common.h"
#include "weir/text.h"
#include "weir/upload.h"

/* The most bytes of a secret file: a secret access key is 40 characters. */
#define MAX_SECRET_FILE 4096
#define MAX_FIELD 255

static void wipe_free(char *s)
{
    if (s != NULL) {
        /* volatile: a plain memset before free may be optimised away */
        for (volatile char *p = s; *p != '\0'; ++p)
            *p = '\0';
        free(s);
    }
}

void weir_upload_s3_settings_dispose(weir_upload_s3_settings_t *s)
{
    free(s->endpoint);
    free(s->region);
    free(s->bucket);
    free(s->key_prefix);
    free(s->access_key_id);
    wipe_free(s->secret_access_key);
    wipe_free(s->session_token);
    free(s->ca_file);
    uint32_t timeout = s->timeout_ms, max_connections = s->max_connections;
    memset(s, 0, sizeof(*s));
    s->timeout_ms = timeout;
    s->max_connections = max_connections;
}

static int fail(char *reason, size_t size, const char *msg)
{
    snprintf(reason, size, "%s", msg);
    return -EINVAL;
}

static int is_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

int weir_upload_s3_check_endpoint(const char *endpoint, char *reason, size_t size)
{
    const char *p;

    if (strncmp(endpoint, "http://", 7) == 0)
        p = endpoint + 7;
    else if (strncmp(endpoint, "https://", 8) == 0)
        p = endpoint + 8;
    else
        return fail(reason, size, "expected an http:// or https:// URL");
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end == NULL || end == p + 1)
            return fail(reason, size, "malformed IPv6 address");
        for (const char *q = p + 1; q != end; ++q)
            if (!(isxdigit((unsigned char)*q) || *q == ':' || *q == '.'))
                return fail(reason, size, "malformed IPv6 address");
        p = end + 1;
    } else {
        const char *start = p;
        while (is_host_char(*p))
            ++p;
        if (p == start)
            return fail(reason, size, "no host name");
        if (p - start > MAX_FIELD)
            return fail(reason, size, "host name too long");
    }
    if (*p == ':') {
        unsigned long port = 0;
        const char *start = ++p;
        while (isdigit((unsigned char)*p) && p - start < 6)
            port = port * 10 + (unsigned long)(*p++ - '0');
        if (p == start || port == 0 || port > 65535)
            return fail(reason, size, "expected a port from 1 to 65535");
    }
    if (*p == '/')
        ++p;
    if (*p != '\0')
        return fail(reason, size, "the endpoint takes no path, query or user (requests are path-style: ENDPOINT/BUCKET/KEY)");
    return 0;
}

/* S3's bucket names (3-63 of a-z 0-9 . -) and the older ones some stores still accept (upper case, '_', up to 255). */
static int check_bucket(const char *bucket, char *reason, size_t size)
{
    size_t len = strlen(bucket);

    if (len < 1 || len > MAX_FIELD)
        return fail(reason, size, "expected a bucket name of 1 to 255 characters");
    for (const char *p = bucket; *p != '\0'; ++p)
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
            return fail(reason, size, "a bucket name holds only letters, digits, '.', '-' and '_'");
    return 0;
}

static int check_region(const char *region, char *reason, size_t size)
{
    size_t len = strlen(region);

    if (len < 1 || len > 64)
        return fail(reason, size, "expected a region of 1 to 64 characters");
    for (const char *p = region; *p != '\0'; ++p)
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
            return fail(reason, size, "a region holds only letters, digits, '.', '-' and '_'");
    return 0;
}

/* Visible ASCII except '/' and ',' (the signer's rule for key ids). */
static int check_key_id(const char *id, char *reason, size_t size)
{
    size_t len = strlen(id);

    if (len < 1 || len > MAX_FIELD)
        return fail(reason, size, "expected an access key id of 1 to 255 characters");
    for (const char *p = id; *p != '\0'; ++p)
        if (*p <= ' ' || *p >= 0x7f || *p == '/' || *p == ',')
            return fail(reason, size, "an access key id holds only visible ASCII characters other than '/' and ','");
    return 0;
}

static int check_prefix(const char *prefix, char *reason, size_t size)
{
    size_t len = strlen(prefix);

    if (len > WEIR_UPLOAD_S3_MAX_PREFIX)
        return fail(reason, size, "a key prefix is at most 512 bytes");
    if (!weir_utf8_is_valid(prefix, len))
        return fail(reason, size, "a key prefix must be UTF-8");
    for (const char *p = prefix; *p != '\0'; ++p)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail(reason, size, "a key prefix holds no control characters");
    return 0;
}

int weir_upload_s3_check(const weir_upload_s3_settings_t *s, char *reason, size_t size)
{
    int ret;

    if (s->endpoint == NULL)
        return fail(reason, size, "upload.s3.endpoint is required");
    if ((ret = weir_upload_s3_check_endpoint(s->endpoint, reason, size)) != 0)
        return ret;
    if (s->bucket == NULL)
        return fail(reason, size, "upload.s3.bucket is required");
    if ((ret = check_bucket(s->bucket, reason, size)) != 0)
        return ret;
    if ((ret = check_region(s->region != NULL ? s->region : WEIR_UPLOAD_S3_DEFAULT_REGION, reason, size)) != 0)
        return ret;
    if (s->key_prefix != NULL && (ret = check_prefix(s->key_prefix, reason, size)) != 0)
        return ret;
    if (s->access_key_id == NULL || s->secret_access_key == NULL || s->secret_access_key[0] == '\0')
        return fail(reason, size, "no credentials");
    if ((ret = check_key_id(s->access_key_id, reason, size)) != 0)
        return ret;
    if (s->session_token != NULL)
        for (const char *p = s->session_token; *p != '\0'; ++p)
            if (*p <= ' ' || *p >= 0x7f)
                return fail(reason, size, "the session token holds only visible ASCII characters");
    if (s->timeout_ms == 0)
        return fail(reason, size, "upload.s3.timeout must be positive");
    return 0;
}

/* Reads the secret file: at most MAX_SECRET_FILE bytes, trailing white space (the final newline) removed. */
static int read_secret(const weir_conf_node_t *node, const char *path, char **out, weir_conf_errors_t *errs)
{
    char buf[MAX_SECRET_FILE + 2];
    size_t len;
    FILE *fp = fopen(path, "re");

    if (fp == NULL) {
        weir_conf_error(errs, node, "cannot read file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    len = fread(buf, 1, sizeof(buf) - 1, fp);
    int failed = ferror(fp);
    fclose(fp);
    if (failed) {
        weir_conf_error(errs, node, "cannot read file \"%s\"", path);
        goto Error;
    }
    if (len > MAX_SECRET_FILE) {
        weir_conf_error(errs, node, "file \"%s\" is larger than %d bytes: it is not a secret access key", path, MAX_SECRET_FILE);
        goto Error;
    }
    while (len != 0 && isspace((unsigned char)buf[len - 1]))
        --len;
    buf[len] = '\0';
    if (len == 0) {
        weir_conf_error(errs, node, "file \"%s\" is empty: it must hold the secret access key", path);
        goto Error;
    }
    if (memchr(buf, '\0', len) != NULL || memchr(buf, '\n', len) != NULL) {
        weir_conf_error(errs, node, "file \"%s\" must hold the secret access key alone, on one line", path);
        goto Error;
    }
    wipe_free(*out);
    *out = weir_strndup(buf, len);
    memset(buf, 0, sizeof(buf));
    return 0;

Error:
    memset(buf, 0, sizeof(buf));
    return -1;
}

/* A string key, checked by @p validate (may be NULL); an empty value is allowed when @p allow_empty. */
static int parse_string(const weir_conf_node_t *value, int allow_empty, int (*validate)(const char *, char *, size_t), char **out,
                        weir_conf_errors_t *errs)
{
    const char *str;
    char reason[160];

    if (allow_empty && value->type == WEIR_CONF_SCALAR && value->data.scalar.len == 0) {
        str = "";
    } else if (weir_conf_to_string(value, &str, errs) != 0) {
        return -1;
    }
    if (validate != NULL && validate(str, reason, sizeof(reason)) != 0) {
        weir_conf_error(errs, value, "%s, got \"%s\"", reason, str);
        return -1;
    }
    free(*out);
    *out = weir_strdup(str);
    return 0;
}

int weir__upload_s3_parse_key(weir_upload_s3_settings_t *s, const char *key, const weir_conf_node_t *value,
                              weir_conf_errors_t *errs)
{
    int64_t i;

    if (strcmp(key, "upload.s3.endpoint") == 0) {
        return parse_string(value, 0, weir_upload_s3_check_endpoint, &s->endpoint, errs);
    } else if (strcmp(key, "upload.s3.region") == 0) {
        return parse_string(value, 0, check_region, &s->region, errs);
    } else if (strcmp(key, "upload.s3.bucket") == 0) {
        return parse_string(value, 0, check_bucket, &s->bucket, errs);
    } else if (strcmp(key, "upload.s3.key-prefix") == 0) {
        return parse_string(value, 1, check_prefix, &s->key_prefix, errs);
    } else if (strcmp(key, "upload.s3.access-key-id") == 0) {
        return parse_string(value, 0, check_key_id, &s->access_key_id, errs);
    } else if (strcmp(key, "upload.s3.secret-access-key-file") == 0) {
        char *path;
        if (weir_conf_to_path(value, 1, &path, errs) != 0)
            return -1;
        int ret = read_secret(value, path, &s->secret_access_key, errs);
        free(path);
        return ret;
    } else if (strcmp(key, "upload.s3.ca-file") == 0) {
        char *path;
        if (weir_conf_to_path(value, 1, &path, errs) != 0)
            return -1;
        free(s->ca_file);
        s->ca_file = path;
    } else if (strcmp(key, "upload.s3.timeout") == 0) {
        if (weir_conf_to_int64(value, 1, 3600000, &i, errs) != 0)
            return -1;
        s->timeout_ms = (uint32_t)i;
    } else if (strcmp(key, "upload.s3.max-connections") == 0) {
        if (weir_conf_to_int64(value, 1, 1024, &i, errs) != 0)
            return -1;
        s->max_connections = (uint32_t)i;
    } else {
        return 1;
    }
    return 0;
}

int weir__upload_s3_finish(weir_upload_s3_settings_t *s, const weir_conf_node_t *node, weir_conf_errors_t *errs)
{
    char reason[200];
    int from_file = s->access_key_id != NULL || s->secret_access_key != NULL;

    if (s->endpoint == NULL) {
        weir_conf_error(errs, node, "upload.backend is s3: upload.s3.endpoint is required");
        return -1;
    }
    if (s->bucket == NULL) {
        weir_conf_error(errs, node, "upload.backend is s3: upload.s3.bucket is required");
        return -1;
    }
    if (from_file) {
        if (s->access_key_id == NULL || s->secret_access_key == NULL) {
            weir_conf_error(errs, node,
                            "upload.s3.access-key-id and upload.s3.secret-access-key-file go together: give both, "
                            "or neither to take AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment");
            return -1;
        }
    } else {
        const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY"),
                   *token = getenv("AWS_SESSION_TOKEN");
        if (id == NULL || id[0] == '\0' || secret == NULL || secret[0] == '\0') {
            weir_conf_error(errs, node,
                            "upload.backend is s3 but there are no credentials: give upload.s3.access-key-id and "
                            "upload.s3.secret-access-key-file, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
                            "weir's environment");
            return -1;
        }
        s->access_key_id = weir_strdup(id);
        s->secret_access_key = weir_strdup(secret);
        if (token != NULL && token[0] != '\0')
            s->session_token = weir_strdup(token);
    }
    if (weir_upload_s3_check(s, reason, sizeof(reason)) != 0) {
        weir_conf_error(errs, node, "%s%s", from_file ? "" : "in the environment's credentials: ", reason);
        return -1;
    }
    return 0;
}
