/*
 * Redis URL parsing (weir_redis_parse_url, cache.redis.url and upload.redis.url). The input is the URL
 * (up to its first NUL). Properties: on failure, a reason and nothing allocated (the target is left empty); on
 * success, one place to connect (a host with a port from 1 to 65535, or an absolute unix socket path), and the
 * target written back as a URL (every credential byte percent-encoded) parses to the same target.
 */
#include <errno.h>
#include <string.h>
#include "fuzz.h"
#include "weir/redis.h"

static int same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Appends s percent-encoded (every byte), with prefix before it, to out (at p). */
static size_t put_encoded(char *out, size_t p, const char *prefix, const char *s)
{
    p += (size_t)sprintf(out + p, "%s", prefix);
    for (; *s != '\0'; ++s)
        p += (size_t)sprintf(out + p, "%%%02X", (unsigned char)*s);
    return p;
}

/* The target as a URL; out must hold 3 times the strings' lengths plus 64. */
static void write_url(const weir_redis_target_t *t, char *out)
{
    size_t p = 0;

    if (t->unix_path != NULL) {
        /* "unix://" + the path: a path that starts with "//" keeps them */
        p += (size_t)sprintf(out + p, "unix://%s?db=%u", t->unix_path, t->db);
        if (t->password != NULL)
            p = put_encoded(out, p, "&password=", t->password);
        if (t->username != NULL)
            p = put_encoded(out, p, "&username=", t->username);
        return;
    }
    p += (size_t)sprintf(out + p, "redis://");
    if (t->username != NULL || t->password != NULL) {
        if (t->username != NULL)
            p = put_encoded(out, p, "", t->username);
        p = put_encoded(out, p, ":", t->password != NULL ? t->password : "");
        out[p++] = '@';
    }
    if (strchr(t->host, ':') != NULL || t->host[0] == '[')
        p += (size_t)sprintf(out + p, "[%s]", t->host);
    else
        p += (size_t)sprintf(out + p, "%s", t->host);
    sprintf(out + p, ":%u/%u", (unsigned)t->port, t->db);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1), err[160];
    weir_redis_target_t t, again;

    memcpy(url, data, size);
    url[size] = '\0';
    memset(err, 'x', sizeof(err));
    int r = weir_redis_parse_url(url, &t, err, sizeof(err));
    if (r != 0) {
        FUZZ_CHECK(r == -EINVAL);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        FUZZ_CHECK(t.host == NULL && t.unix_path == NULL && t.username == NULL && t.password == NULL);
        free(url);
        return 0;
    }
    FUZZ_CHECK((t.host != NULL) != (t.unix_path != NULL));
    if (t.host != NULL)
        FUZZ_CHECK(t.host[0] != '\0' && t.port >= 1);
    else
        FUZZ_CHECK(t.unix_path[0] == '/');
    FUZZ_CHECK(t.db <= INT32_MAX);
    FUZZ_CHECK(t.password == NULL || t.password[0] != '\0');

    char *url2 = malloc(3 * size + 64);
    write_url(&t, url2);
    r = weir_redis_parse_url(url2, &again, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "\"%s\" parsed, but not \"%s\" written from it: %s\n", url, url2, err);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(same_string(t.host, again.host) && same_string(t.unix_path, again.unix_path));
    FUZZ_CHECK(same_string(t.username, again.username) && same_string(t.password, again.password));
    FUZZ_CHECK(t.port == again.port && t.db == again.db);
    weir_redis_target_dispose(&again);
    weir_redis_target_dispose(&t);
    free(url2);
    free(url);
    return 0;
}
