/* A test-only front end to weir's SigV4 signer, so that another implementation (botocore) can be compared with it:
 * signs S3 requests read from stdin, one a line, and writes one result a line.
 *
 * A request line is space-separated KEY=HEX fields, every value hex-encoded (so any byte can be given):
 *     method=.. path=.. region=.. service=.. date=.. akid=.. secret=.. [token=..] [body=..] [unsigned=]
 *     [header=NAME:VALUE]... [query=NAME:VALUE]...
 * (NAME and VALUE of header= and query= are each hex, separated by ':'.) The path and the query are NOT encoded; the
 * payload hash is the SHA-256 of body (empty when absent), or UNSIGNED-PAYLOAD with unsigned=; x-amz-content-sha256
 * is always added, as S3 wants.
 *
 * A result line is tab-separated: "ok", the Authorization value, the encoded path, the encoded query, the
 * x-amz-content-sha256 value, and the canonical request in hex; or "error" and the negative errno. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "weir/sigv4.h"
#include "weir/text.h"

#define MAX_PAIRS (WEIR_SIGV4_MAX_PAIRS + 1)

/* Decodes @p len hex digits of @p s in place; returns the decoded bytes (base s), or base NULL when malformed. */
static h2o_iovec_t unhex(char *s, size_t len)
{
    if (len % 2 != 0)
        return h2o_iovec_init(NULL, 0);
    for (size_t i = 0; i != len / 2; ++i) {
        int hi = weir_hex_digit((unsigned char)s[2 * i]), lo = weir_hex_digit((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return h2o_iovec_init(NULL, 0);
        s[i] = (char)(hi << 4 | lo);
    }
    return h2o_iovec_init(s, len / 2);
}

static void print_hex(const char *s, size_t len)
{
    for (size_t i = 0; i != len; ++i)
        printf("%02x", (unsigned char)s[i]);
}

static int parse_pair(char *v, weir_sigv4_pair_t *pair)
{
    char *colon = strchr(v, ':');
    if (colon == NULL)
        return -1;
    pair->name = unhex(v, (size_t)(colon - v));
    pair->value = unhex(colon + 1, strlen(colon + 1));
    if (pair->name.base == NULL || pair->value.base == NULL)
        return -1;
    return 0;
}

static int sign_line(char *line)
{
    weir_sigv4_pair_t headers[MAX_PAIRS], query[MAX_PAIRS];
    weir_sigv4_request_t r = {.headers = headers, .query = query, .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
    weir_sigv4_credentials_t cred = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    h2o_iovec_t body = {NULL, 0};
    char hash[WEIR_SIGV4_HEX_LEN + 1];
    int unsigned_payload = 0, ret;

    for (char *save = NULL, *field = strtok_r(line, " \n", &save); field != NULL; field = strtok_r(NULL, " \n", &save)) {
        char *eq = strchr(field, '=');
        if (eq == NULL)
            return -1;
        *eq = '\0';
        char *v = eq + 1;
        h2o_iovec_t *dst = NULL;
        if (strcmp(field, "header") == 0 || strcmp(field, "query") == 0) {
            int is_header = field[0] == 'h';
            size_t *n = is_header ? &r.num_headers : &r.num_query;
            if (*n == MAX_PAIRS || parse_pair(v, (is_header ? headers : query) + *n) != 0)
                return -1;
            ++*n;
            continue;
        }
        if (strcmp(field, "unsigned") == 0) {
            unsigned_payload = 1;
            continue;
        }
        if (strcmp(field, "method") == 0)
            dst = &r.method;
        else if (strcmp(field, "path") == 0)
            dst = &r.path;
        else if (strcmp(field, "region") == 0)
            dst = &r.region;
        else if (strcmp(field, "service") == 0)
            dst = &r.service;
        else if (strcmp(field, "date") == 0)
            dst = &r.amz_date;
        else if (strcmp(field, "akid") == 0)
            dst = &cred.access_key_id;
        else if (strcmp(field, "secret") == 0)
            dst = &cred.secret_access_key;
        else if (strcmp(field, "token") == 0)
            dst = &cred.session_token;
        else if (strcmp(field, "body") == 0)
            dst = &body;
        else
            return -1;
        *dst = unhex(v, strlen(v));
        if (dst->base == NULL)
            return -1;
    }

    if (unsigned_payload) {
        r.payload_hash = h2o_iovec_init(WEIR_SIGV4_UNSIGNED_PAYLOAD, sizeof(WEIR_SIGV4_UNSIGNED_PAYLOAD) - 1);
    } else {
        if (weir_sigv4_sha256_hex(body.base, body.len, hash) != 0)
            return -1;
        r.payload_hash = h2o_iovec_init(hash, WEIR_SIGV4_HEX_LEN);
    }

    h2o_mem_pool_t pool;
    weir_sigv4_signed_t out;
    h2o_mem_init_pool(&pool);
    if ((ret = weir_sigv4_sign(&pool, &r, &cred, &out)) == 0) {
        printf("ok\t%s\t%s\t%s\t%.*s\t", out.authorization.base, out.canonical_uri.base, out.canonical_query.base,
               (int)out.extra_headers[0].value.len, out.extra_headers[0].value.base);
        print_hex(out.canonical_request.base, out.canonical_request.len);
        printf("\n");
    } else {
        printf("error\t%d\n", ret);
    }
    h2o_mem_clear_pool(&pool);
    return 0;
}

int main(int argc, char **argv)
{
    char *line = NULL;
    size_t cap = 0;
    int status = 0;

    if (argc != 1) {
        fprintf(stderr, "usage: %s < requests (see the comment at the top of tests/tools/sigv4_sign.c)\n", argv[0]);
        return 2;
    }
    while (getline(&line, &cap, stdin) != -1) {
        if (sign_line(line) != 0) {
            printf("malformed\n");
            status = 1;
        }
        fflush(stdout);
    }
    free(line);
    return status;
}
