/*
 * The s3 backend of /upload (see upload_backend.h): the request's image stored as a new object, one signed PUT per
 * slot through the worker thread's HTTP client (libcurl multi-socket on the worker's loop, src/http_client.c).
 *
 * An upload's way:
 * - prepare (before the gate): the image is found (multipart field "image", or the raw body) and its SHA-256, which
 *   SigV4 signs, is computed while the upload waits for its slot: at once for images up to HASH_ON_LOOP_MAX, else in
 *   slices of HASH_SLICE bytes, one per turn of the loop (a uv_idle handle per thread), so that the loop serves other
 *   events between two slices (5 MiB take 2.5 ms of SHA-256 with SHA extensions, 10 ms without, in 40 slices).
 * - start (the slot is held): once the hash is known, a random key, the signature, the PUT. The body is not copied:
 *   libcurl reads it from the request's own buffer, which lives as long as the request, and the PUT is cancelled in the
 *   request's destructor.
 * - the PUT's end: the answer (200 with the key, 502 with the store's error code, 503 unreachable, 504 timed out).
 *
 * Why not hash on a thread pool: libh2o 2.2.5 frees an HTTP/2 request's body buffer (stream->_req_body) before it
 * disposes of the request (h2o_http2_stream_close), so no destructor on the request's pool could stop a thread still
 * reading it (that crashed), and h2o has no hook that runs before. Only the loop's thread may read the body, so the
 * hash runs there, in slices; a copy for a thread would cost the body's size again per upload.
 *
 * HTTP/1 clients: h2o does not read a connection while its request is handled, so a client that leaves during its PUT
 * is noticed by looking at its socket (weir_http1_peer_gone) every WATCH_INTERVAL_MS, one timer per thread for every
 * HTTP/1 upload in flight. HTTP/2 streams are disposed at once by h2o.
 *
 * No object is left behind by a failed upload: a PUT that timed out, failed in the middle, or was cancelled may still
 * complete at the store, so a DELETE of its key follows DELETE_DELAY_MS later (best effort, logged). Keys are random
 * (128 bits from getrandom), so the DELETE cannot remove anything but what this upload may have stored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "weir/common.h"
#include "weir/http_client.h"
#include "weir/multipart.h"
#include "weir/respond.h"
#include "weir/sigv4.h"
#include "weir/text.h"
#include "weir/upload.h"
#include "weir/upload_backend.h"

/* Images smaller than this are hashed on the loop (a few tens of microseconds); larger ones on the hashing threads. */
/* Images up to this size are hashed at once (tens of microseconds); larger ones a slice per turn of the loop. */
#define HASH_ON_LOOP_MAX (128 * 1024)
#define HASH_SLICE (128 * 1024)
#define WATCH_INTERVAL_MS 200
#define DELETE_DELAY_MS 1000
/* The most bytes of a store's error document kept (S3's are a few hundred). */
#define MAX_ERROR_BODY 8192
#define MAX_CONTENT_TYPE 255
#define KEY_RANDOM_BYTES 16
#define DEFAULT_CONTENT_TYPE "application/octet-stream"

typedef struct st_s3_backend_t {
    weir_upload_backend_t super;
    weir_upload_s3_settings_t s;    /* own copies of the strings */
    char *base_url;                 /* "http://host:port" */
    char *host;                     /* "host:port": the Host header, signed */
    weir_sigv4_credentials_t creds; /* pointing into s */
    unsigned max_connections;
} s3_backend_t;

typedef struct st_s3_thread_t {
    weir_upload_backend_thread_t super;
    s3_backend_t *backend;
    uv_loop_t *loop;
    weir_http_client_t *client;
    uv_idle_t *hash_idle;     /* runs while hashing is not empty; freed in its close callback */
    h2o_linklist_t hashing;   /* s3_op_t whose hash is being computed, in arrival order */
    h2o_linklist_t active;    /* s3_op_t being hashed or PUT */
    h2o_linklist_t watched;   /* s3_op_t of HTTP/1 requests whose PUT is in flight */
    uv_timer_t *watch_timer;  /* runs while watched is not empty; freed in its close callback */
    h2o_linklist_t deletes;   /* pending_delete_t, due in order */
    uv_timer_t *delete_timer; /* armed for the first of deletes */
    int stopping;
} s3_thread_t;

typedef enum en_s3_state_t {
    S3_IDLE,
    S3_HASHING,         /* the hash is computed on a pool thread, no slot yet */
    S3_HASHING_GRANTED, /* the same, with the slot: the PUT starts when the hash is done */
    S3_HASHED,          /* waiting for the slot */
    S3_PUTTING,
    S3_DONE,
} s3_state_t;

typedef struct st_s3_op_t {
    weir_upload_op_t *op;
    s3_thread_t *thread;
    s3_state_t state;
    weir_upload_done_cb cb;
    h2o_iovec_t body;
    const char *content_type; /* NUL-terminated, on the request's pool */
    char hash[WEIR_SIGV4_HEX_LEN + 1];
    int hash_error;
    EVP_MD_CTX *hash_ctx; /* while hashing */
    size_t hashed;        /* bytes of the body hashed so far */
    h2o_linklist_t hashing_link;
    weir_http_request_t *http;
    const char *key; /* NUL-terminated, on the request's pool */
    h2o_linklist_t active;
    h2o_linklist_t watched;
} s3_op_t;

typedef struct st_pending_delete_t {
    h2o_linklist_t link;
    uint64_t due;
    s3_thread_t *thread;
    char *key;
} pending_delete_t;

/* ---- small pure helpers ------------------------------------------------------------------------------------------ */

static const struct {
    const char *type;
    const char *ext;
} EXTENSIONS[] = {
    {"image/jpeg", ".jpg"},  {"image/pjpeg", ".jpg"}, {"image/png", ".png"},     {"image/gif", ".gif"},
    {"image/webp", ".webp"}, {"image/avif", ".avif"}, {"image/heic", ".heic"},   {"image/heif", ".heif"},
    {"image/bmp", ".bmp"},   {"image/tiff", ".tif"},  {"image/svg+xml", ".svg"},
};

const char *weir_upload_s3_extension(const char *content_type, size_t len)
{
    size_t media = 0;

    while (media < len && content_type[media] != ';' && content_type[media] != ' ' && content_type[media] != '\t')
        ++media;
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(EXTENSIONS); ++i)
        if (strlen(EXTENSIONS[i].type) == media && strncasecmp(EXTENSIONS[i].type, content_type, media) == 0)
            return EXTENSIONS[i].ext;
    return "";
}

int weir_upload_s3_error_code(const char *xml, size_t len, char *out, size_t size)
{
    static const char open[] = "<Code>", close[] = "</Code>";
    const char *start = memmem(xml, len, open, sizeof(open) - 1), *end, *p;

    if (start == NULL)
        return -ENOENT;
    start += sizeof(open) - 1;
    end = memmem(start, len - (size_t)(start - xml), close, sizeof(close) - 1);
    if (end == NULL || end == start || (size_t)(end - start) >= size)
        return -ENOENT;
    for (p = start; p != end; ++p)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.'))
            return -ENOENT;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return 0;
}

/* A content type that can be sent and stored as it is: visible ASCII and spaces, 1 to MAX_CONTENT_TYPE bytes. */
static int is_sendable_content_type(h2o_iovec_t ct)
{
    if (ct.len == 0 || ct.len > MAX_CONTENT_TYPE)
        return 0;
    for (size_t i = 0; i != ct.len; ++i)
        if (!((ct.base[i] >= 0x20 && ct.base[i] < 0x7f) || ct.base[i] == '\t'))
            return 0;
    return 1;
}

static int random_bytes(unsigned char *buf, size_t len)
{
    if (getrandom(buf, len, GRND_NONBLOCK) == (ssize_t)len)
        return 0;
    /* Early at boot, before the kernel's pool is ready (or without getrandom): OpenSSL's generator. */
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -EIO;
}

/* ---- the request ------------------------------------------------------------------------------------------------- */

/* Finds the image of @p req and its content type; answers 400 itself when there is none or the body is malformed. */
static int find_image_or_respond(h2o_req_t *req, h2o_iovec_t *body, h2o_iovec_t *content_type)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    h2o_iovec_t ct = i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
    h2o_iovec_t entity = req->entity.base != NULL ? req->entity : h2o_iovec_init("", 0);
    char msg[200];

    if (ct.base != NULL && weir_multipart_is_form_data(ct.base, ct.len)) {
        weir_multipart_part_t part;
        const char *reason = NULL;
        switch (weir_multipart_find(&req->pool, ct.base, ct.len, entity.base, entity.len, "image", &part, &reason)) {
        case 0:
            break;
        case -ENOENT:
            weir_respond_error(req, 400, "Bad Request", "no image: the form has no field named \"image\"");
            return -1;
        case -EEXIST:
            weir_respond_error(req, 400, "Bad Request", "more than one field named \"image\"");
            return -1;
        default:
            snprintf(msg, sizeof(msg), "malformed multipart body: %s", reason != NULL ? reason : "invalid");
            weir_respond_error(req, 400, "Bad Request", msg);
            return -1;
        }
        *body = part.body;
        *content_type = part.content_type.base != NULL && part.content_type.len != 0
                            ? part.content_type
                            : h2o_iovec_init(H2O_STRLIT(DEFAULT_CONTENT_TYPE));
    } else {
        *body = entity;
        *content_type = ct.base != NULL && ct.len != 0 ? ct : h2o_iovec_init(H2O_STRLIT(DEFAULT_CONTENT_TYPE));
    }
    if (body->len == 0) {
        weir_respond_error(req, 400, "Bad Request",
                           entity.len == 0 ? "no image: send it as the request body, or as the form field \"image\""
                                           : "empty image");
        return -1;
    }
    if (!is_sendable_content_type(*content_type)) {
        weir_respond_error(req, 400, "Bad Request", "invalid content type of the image");
        return -1;
    }
    return 0;
}

/* ---- hashing ----------------------------------------------------------------------------------------------------- */

static int sha256_hex(const char *data, size_t len, char *hex)
{
    unsigned char digest[32];
    unsigned int digest_len = 0;
    int ret = -EIO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
        EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 && digest_len == sizeof(digest)) {
        weir_hex_encode(digest, sizeof(digest), hex);
        ret = 0;
    }
    EVP_MD_CTX_free(ctx);
    return ret;
}

static void start_put(s3_op_t *o);

static void stop_hashing(s3_op_t *o)
{
    EVP_MD_CTX_free(o->hash_ctx);
    o->hash_ctx = NULL;
    if (h2o_linklist_is_linked(&o->hashing_link)) {
        h2o_linklist_unlink(&o->hashing_link);
        if (h2o_linklist_is_empty(&o->thread->hashing))
            uv_idle_stop(o->thread->hash_idle);
    }
}

/* One slice of the oldest hash in progress, once per turn of the loop. */
static void on_hash_idle(uv_idle_t *idle)
{
    s3_thread_t *thread = idle->data;
    unsigned char digest[32];
    unsigned int digest_len = 0;

    if (h2o_linklist_is_empty(&thread->hashing)) {
        uv_idle_stop(idle);
        return;
    }
    s3_op_t *o = H2O_STRUCT_FROM_MEMBER(s3_op_t, hashing_link, thread->hashing.next);
    size_t n = o->body.len - o->hashed < HASH_SLICE ? o->body.len - o->hashed : HASH_SLICE;
    if (EVP_DigestUpdate(o->hash_ctx, o->body.base + o->hashed, n) != 1) {
        o->hash_error = 1;
    } else if ((o->hashed += n) != o->body.len) {
        return;
    } else if (EVP_DigestFinal_ex(o->hash_ctx, digest, &digest_len) != 1 || digest_len != sizeof(digest)) {
        o->hash_error = 1;
    } else {
        weir_hex_encode(digest, sizeof(digest), o->hash);
    }
    stop_hashing(o);
    if (o->state == S3_HASHING_GRANTED) {
        start_put(o);
    } else {
        h2o_linklist_unlink(&o->active);
        o->state = S3_HASHED;
    }
}

/* Starts the sliced hash of @p o's body; @return 0, or -1 when OpenSSL cannot (then it is hashed at once). */
static int start_hashing(s3_op_t *o)
{
    s3_thread_t *thread = o->thread;

    if ((o->hash_ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(o->hash_ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(o->hash_ctx);
        o->hash_ctx = NULL;
        return -1;
    }
    if (h2o_linklist_is_empty(&thread->hashing))
        uv_idle_start(thread->hash_idle, on_hash_idle);
    h2o_linklist_insert(&thread->hashing, &o->hashing_link);
    return 0;
}

/* ---- deleting what a failed PUT may have stored ------------------------------------------------------------------- */

static void on_delete_timer(uv_timer_t *timer);

static void on_delete_done(const weir_http_response_t *res, void *_key)
{
    char *key = _key;

    if (res->result == WEIR_HTTP_OK && res->status / 100 == 2)
        weir_info("upload: deleted object \"%s\" of a failed upload (HTTP %d)", key, res->status);
    else if (res->result != WEIR_HTTP_EABORTED)
        weir_warn("upload: could not delete object \"%s\" of a failed upload: %s", key,
                  res->result == WEIR_HTTP_OK ? "the store refused" : res->errstr);
    free(key);
}

/* A signed request for @p key without a body, started on the thread's client; @p key is owned by the request. */
static int start_delete(s3_thread_t *thread, char *key)
{
    s3_backend_t *b = thread->backend;
    h2o_mem_pool_t pool;
    char date[WEIR_SIGV4_DATE_LEN + 1];
    weir_sigv4_signed_t sig;
    int ret;

    h2o_mem_init_pool(&pool);
    h2o_iovec_t path = h2o_concat(&pool, h2o_iovec_init(H2O_STRLIT("/")), h2o_iovec_init(b->s.bucket, strlen(b->s.bucket)),
                                  h2o_iovec_init(H2O_STRLIT("/")), h2o_iovec_init(key, strlen(key)));
    weir_sigv4_pair_t headers[] = {{h2o_iovec_init(H2O_STRLIT("host")), h2o_iovec_init(b->host, strlen(b->host))}};
    weir_sigv4_format_date(time(NULL), date);
    weir_sigv4_request_t r = {.method = h2o_iovec_init(H2O_STRLIT("DELETE")),
                              .path = path,
                              .headers = headers,
                              .num_headers = 1,
                              .payload_hash = h2o_iovec_init(H2O_STRLIT(WEIR_SIGV4_EMPTY_SHA256)),
                              .region = h2o_iovec_init(b->s.region, strlen(b->s.region)),
                              .service = h2o_iovec_init(H2O_STRLIT("s3")),
                              .amz_date = h2o_iovec_init(date, WEIR_SIGV4_DATE_LEN),
                              .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
    if ((ret = weir_sigv4_sign(&pool, &r, &b->creds, &sig)) != 0)
        goto Exit;
    weir_http_header_t h[5] = {{"Host", b->host}};
    size_t n = 1;
    for (size_t i = 0; i != sig.num_extra_headers; ++i, ++n)
        h[n] = (weir_http_header_t){sig.extra_headers[i].name.base, sig.extra_headers[i].value.base};
    h[n++] = (weir_http_header_t){"Authorization", sig.authorization.base};
    h2o_iovec_t url =
        h2o_concat(&pool, h2o_iovec_init(b->base_url, strlen(b->base_url)), sig.canonical_uri, h2o_iovec_init(H2O_STRLIT("\0")));
    weir_http_request_params_t params = {.method = "DELETE",
                                         .url = url.base,
                                         .headers = h,
                                         .num_headers = n,
                                         .timeout_ms = b->s.timeout_ms,
                                         .ca_file = b->s.ca_file};
    ret = weir_http_request_start(thread->client, &params, on_delete_done, key, NULL);
Exit:
    h2o_mem_clear_pool(&pool);
    return ret;
}

/* Queues a DELETE of @p key (copied) DELETE_DELAY_MS from now. */
static void schedule_delete(s3_thread_t *thread, const char *key)
{
    if (thread->stopping)
        return;
    pending_delete_t *d = weir_calloc(1, sizeof(*d));
    d->thread = thread;
    d->key = weir_strdup(key);
    d->due = uv_now(thread->loop) + DELETE_DELAY_MS;
    if (h2o_linklist_is_empty(&thread->deletes))
        uv_timer_start(thread->delete_timer, on_delete_timer, DELETE_DELAY_MS, 0);
    h2o_linklist_insert(&thread->deletes, &d->link);
}

static void on_delete_timer(uv_timer_t *timer)
{
    s3_thread_t *thread = timer->data;
    uint64_t now = uv_now(thread->loop);

    while (!h2o_linklist_is_empty(&thread->deletes)) {
        pending_delete_t *d = H2O_STRUCT_FROM_MEMBER(pending_delete_t, link, thread->deletes.next);
        if (d->due > now) {
            uv_timer_start(timer, on_delete_timer, d->due - now, 0);
            return;
        }
        h2o_linklist_unlink(&d->link);
        char *key = d->key;
        free(d);
        int ret = start_delete(thread, key);
        if (ret != 0) {
            weir_warn("upload: could not delete object \"%s\" of a failed upload: %s", key, strerror(-ret));
            free(key);
        }
    }
}

/* ---- the PUT ----------------------------------------------------------------------------------------------------- */

static void on_watch_timer(uv_timer_t *timer);

static void stop_watching(s3_op_t *o)
{
    if (h2o_linklist_is_linked(&o->watched)) {
        h2o_linklist_unlink(&o->watched);
        if (h2o_linklist_is_empty(&o->thread->watched))
            uv_timer_stop(o->thread->watch_timer);
    }
}

/* Leaves @p o done and idle (its lists left, its PUT detached) and calls its callback. */
static void finish(s3_op_t *o, const weir_upload_result_t *result)
{
    stop_watching(o);
    if (h2o_linklist_is_linked(&o->active))
        h2o_linklist_unlink(&o->active);
    o->state = S3_DONE;
    o->http = NULL;
    o->cb(o->op, result);
}

static void finish_error(s3_op_t *o, int status, const char *message)
{
    weir_upload_result_t result = {.status = status, .error = message};
    finish(o, &result);
}

/* The success answer, on the request's pool. */
static h2o_iovec_t success_body(s3_op_t *o, const char *etag)
{
    h2o_mem_pool_t *pool = &o->op->req->pool;
    h2o_iovec_t key, tag;
    size_t etag_len = etag != NULL ? strlen(etag) : 0;
    char size[32];

    /* ETag: "d41d8cd98f00b204e9800998ecf8427e", the quotes are not part of the value */
    if (etag_len >= 2 && etag[0] == '"' && etag[etag_len - 1] == '"') {
        ++etag;
        etag_len -= 2;
    }
    if (weir_json_quote(pool, o->key, strlen(o->key), &key) != 0)
        key = h2o_iovec_init(H2O_STRLIT("\"\""));
    if (etag == NULL || weir_json_quote(pool, etag, etag_len, &tag) != 0)
        tag = h2o_iovec_init(H2O_STRLIT("\"\""));
    snprintf(size, sizeof(size), "%zu", o->body.len);
    return h2o_concat(pool, h2o_iovec_init(H2O_STRLIT("{\"success\": true, \"key\": ")), key,
                      h2o_iovec_init(H2O_STRLIT(", \"size\": ")), h2o_iovec_init(size, strlen(size)),
                      h2o_iovec_init(H2O_STRLIT(", \"etag\": ")), tag, h2o_iovec_init(H2O_STRLIT("}")));
}

static void on_put_done(const weir_http_response_t *res, void *_o)
{
    s3_op_t *o = _o;
    s3_backend_t *b = o->thread->backend;
    char msg[320], code[128];

    o->http = NULL;
    switch (res->result) {
    case WEIR_HTTP_OK:
        if (res->status / 100 == 2) {
            weir_upload_result_t result = {.status = 200, .body = success_body(o, res->header_values[0])};
            finish(o, &result);
            return;
        }
        if (weir_upload_s3_error_code(res->body != NULL ? res->body : "", res->body_len, code, sizeof(code)) == 0)
            snprintf(msg, sizeof(msg), "store refused the upload: %s (HTTP %d)", code, res->status);
        else
            snprintf(msg, sizeof(msg), "store refused the upload: HTTP %d", res->status);
        weir_warn("upload: %s", msg);
        finish_error(o, 502, msg);
        return;
    case WEIR_HTTP_ECONNECT:
        snprintf(msg, sizeof(msg), "store unreachable: %s", res->errstr);
        weir_warn("upload: %s", msg);
        finish_error(o, 503, msg);
        return;
    case WEIR_HTTP_ETIMEDOUT:
        snprintf(msg, sizeof(msg), "store did not answer within %" PRIu32 " ms", b->s.timeout_ms);
        weir_warn("upload: PUT of \"%s\": %s", o->key, msg);
        schedule_delete(o->thread, o->key);
        finish_error(o, 504, msg);
        return;
    default:
        snprintf(msg, sizeof(msg), "store connection failed: %s", res->errstr);
        weir_warn("upload: PUT of \"%s\": %s", o->key, msg);
        schedule_delete(o->thread, o->key);
        finish_error(o, 502, msg);
        return;
    }
}

/* A new key: prefix + 128 random bits in hex + the extension of the content type. */
static const char *make_key(s3_op_t *o)
{
    s3_backend_t *b = o->thread->backend;
    unsigned char rnd[KEY_RANDOM_BYTES];
    char hex[2 * KEY_RANDOM_BYTES + 1];
    const char *prefix = b->s.key_prefix != NULL ? b->s.key_prefix : "", *ext;

    if (random_bytes(rnd, sizeof(rnd)) != 0)
        return NULL;
    weir_hex_encode(rnd, sizeof(rnd), hex);
    ext = weir_upload_s3_extension(o->content_type, strlen(o->content_type));
    return h2o_concat(&o->op->req->pool, h2o_iovec_init(prefix, strlen(prefix)), h2o_iovec_init(hex, sizeof(hex) - 1),
                      h2o_iovec_init(ext, strlen(ext)), h2o_iovec_init(H2O_STRLIT("\0")))
        .base;
}

static void start_put(s3_op_t *o)
{
    s3_thread_t *thread = o->thread;
    s3_backend_t *b = thread->backend;
    h2o_req_t *req = o->op->req;
    char date[WEIR_SIGV4_DATE_LEN + 1];
    weir_sigv4_signed_t sig;
    int ret;

    if (o->hash_error) {
        finish_error(o, 500, "cannot hash the image");
        return;
    }
    if ((o->key = make_key(o)) == NULL) {
        finish_error(o, 503, "no random numbers for the object key");
        return;
    }
    h2o_iovec_t path = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("/")), h2o_iovec_init(b->s.bucket, strlen(b->s.bucket)),
                                  h2o_iovec_init(H2O_STRLIT("/")), h2o_iovec_init(o->key, strlen(o->key)));
    weir_sigv4_pair_t headers[] = {
        {h2o_iovec_init(H2O_STRLIT("host")), h2o_iovec_init(b->host, strlen(b->host))},
        {h2o_iovec_init(H2O_STRLIT("content-type")), h2o_iovec_init(o->content_type, strlen(o->content_type))},
    };
    weir_sigv4_format_date(time(NULL), date);
    weir_sigv4_request_t r = {.method = h2o_iovec_init(H2O_STRLIT("PUT")),
                              .path = path,
                              .headers = headers,
                              .num_headers = WEIR_ARRAY_SIZE(headers),
                              .payload_hash = h2o_iovec_init(o->hash, WEIR_SIGV4_HEX_LEN),
                              .region = h2o_iovec_init(b->s.region, strlen(b->s.region)),
                              .service = h2o_iovec_init(H2O_STRLIT("s3")),
                              .amz_date = h2o_iovec_init(date, WEIR_SIGV4_DATE_LEN),
                              .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
    if ((ret = weir_sigv4_sign(&req->pool, &r, &b->creds, &sig)) != 0) {
        weir_error("upload: cannot sign the PUT: %s", strerror(-ret));
        finish_error(o, 500, "cannot sign the request to the store");
        return;
    }
    weir_http_header_t h[6] = {{"Host", b->host}, {"Content-Type", o->content_type}};
    size_t n = 2;
    for (size_t i = 0; i != sig.num_extra_headers; ++i, ++n)
        h[n] = (weir_http_header_t){sig.extra_headers[i].name.base, sig.extra_headers[i].value.base};
    h[n++] = (weir_http_header_t){"Authorization", sig.authorization.base};
    h2o_iovec_t url = h2o_concat(&req->pool, h2o_iovec_init(b->base_url, strlen(b->base_url)), sig.canonical_uri,
                                 h2o_iovec_init(H2O_STRLIT("\0")));
    static const char *const want[] = {"ETag"};
    weir_http_request_params_t params = {.method = "PUT",
                                         .url = url.base,
                                         .headers = h,
                                         .num_headers = n,
                                         .body = o->body.base,
                                         .body_len = o->body.len,
                                         .timeout_ms = b->s.timeout_ms,
                                         .max_response_body = MAX_ERROR_BODY,
                                         .response_headers = want,
                                         .num_response_headers = 1,
                                         .ca_file = b->s.ca_file};
    if ((ret = weir_http_request_start(thread->client, &params, on_put_done, o, &o->http)) != 0) {
        weir_error("upload: cannot start the PUT: %s", strerror(-ret));
        finish_error(o, ret == -ENOMEM ? 503 : 500, "cannot start the request to the store");
        return;
    }
    o->state = S3_PUTTING;
    if (!h2o_linklist_is_linked(&o->active))
        h2o_linklist_insert(&thread->active, &o->active);
    if (req->version < 0x200) {
        if (h2o_linklist_is_empty(&thread->watched))
            uv_timer_start(thread->watch_timer, on_watch_timer, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
        h2o_linklist_insert(&thread->watched, &o->watched);
    }
}

/* Aborts the PUT of @p o and queues the DELETE of what it may have stored. */
static void abort_put(s3_op_t *o)
{
    if (o->http != NULL) {
        weir_http_request_cancel(o->http);
        o->http = NULL;
        schedule_delete(o->thread, o->key);
    }
}

static void on_watch_timer(uv_timer_t *timer)
{
    s3_thread_t *thread = timer->data;
    h2o_linklist_t gone;

    h2o_linklist_init_anchor(&gone);
    for (h2o_linklist_t *l = thread->watched.next, *next; l != &thread->watched; l = next) {
        next = l->next;
        s3_op_t *o = H2O_STRUCT_FROM_MEMBER(s3_op_t, watched, l);
        if (weir_http1_peer_gone(o->op->req)) {
            h2o_linklist_unlink(&o->watched);
            h2o_linklist_insert(&gone, &o->watched);
        }
    }
    if (h2o_linklist_is_empty(&thread->watched))
        uv_timer_stop(timer);
    /* Each answer may dispose of its own request only. */
    while (!h2o_linklist_is_empty(&gone)) {
        s3_op_t *o = H2O_STRUCT_FROM_MEMBER(s3_op_t, watched, gone.next);
        h2o_linklist_unlink(&o->watched);
        abort_put(o);
        weir_upload_result_t result = {.status = 503, .error = "client went away", .close_connection = 1};
        finish(o, &result);
    }
}

/* ---- the vtable -------------------------------------------------------------------------------------------------- */

static int prepare(weir_upload_backend_t *self, weir_upload_op_t *op)
{
    s3_thread_t *thread = (s3_thread_t *)op->thread;
    h2o_req_t *req = op->req;
    h2o_iovec_t body, ct;

    if (find_image_or_respond(req, &body, &ct) != 0)
        return -1;
    s3_op_t *o = h2o_mem_alloc_pool(&req->pool, sizeof(*o));
    *o = (s3_op_t){.op = op, .thread = thread, .state = S3_HASHED, .body = body};
    o->content_type = h2o_strdup(&req->pool, ct.base, ct.len).base;
    op->data = o;

    if (body.len > HASH_ON_LOOP_MAX && start_hashing(o) == 0) {
        o->state = S3_HASHING;
        h2o_linklist_insert(&thread->active, &o->active);
    } else {
        o->hash_error = sha256_hex(body.base, body.len, o->hash) != 0;
    }
    return 0;
}

static void start(weir_upload_backend_t *self, weir_upload_op_t *op, weir_upload_done_cb cb)
{
    s3_op_t *o = op->data;

    o->cb = cb;
    if (o->state == S3_HASHING)
        o->state = S3_HASHING_GRANTED;
    else
        start_put(o);
}

static void cancel(weir_upload_backend_t *self, weir_upload_op_t *op)
{
    s3_op_t *o = op->data;

    if (o == NULL)
        return;
    switch (o->state) {
    case S3_HASHING:
    case S3_HASHING_GRANTED:
        stop_hashing(o);
        break;
    case S3_PUTTING:
        abort_put(o);
        stop_watching(o);
        break;
    default:
        break;
    }
    if (h2o_linklist_is_linked(&o->active))
        h2o_linklist_unlink(&o->active);
    o->state = S3_DONE;
}

static int thread_start(weir_upload_backend_t *_self, uv_loop_t *loop, weir_upload_backend_thread_t **out)
{
    s3_backend_t *self = (void *)_self;
    weir_http_client_options_t options = {.max_connections = self->max_connections};
    s3_thread_t *thread = weir_calloc(1, sizeof(*thread));
    int ret;

    thread->super.backend = _self;
    thread->backend = self;
    thread->loop = loop;
    if ((ret = weir_http_client_create(loop, &options, &thread->client)) != 0) {
        free(thread);
        return ret;
    }
    h2o_linklist_init_anchor(&thread->hashing);
    thread->hash_idle = weir_malloc(sizeof(*thread->hash_idle));
    uv_idle_init(loop, thread->hash_idle);
    thread->hash_idle->data = thread;
    h2o_linklist_init_anchor(&thread->active);
    h2o_linklist_init_anchor(&thread->watched);
    h2o_linklist_init_anchor(&thread->deletes);
    thread->watch_timer = weir_malloc(sizeof(*thread->watch_timer));
    uv_timer_init(loop, thread->watch_timer);
    thread->watch_timer->data = thread;
    thread->delete_timer = weir_malloc(sizeof(*thread->delete_timer));
    uv_timer_init(loop, thread->delete_timer);
    thread->delete_timer->data = thread;
    *out = &thread->super;
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    free(handle);
}

static void thread_stop(weir_upload_backend_t *self, weir_upload_backend_thread_t *_thread)
{
    s3_thread_t *thread = (void *)_thread;

    thread->stopping = 1;
    /* Uploads of requests abandoned by the shutdown: dropped, their requests never answered. */
    while (!h2o_linklist_is_empty(&thread->active)) {
        s3_op_t *o = H2O_STRUCT_FROM_MEMBER(s3_op_t, active, thread->active.next);
        cancel(self, o->op);
    }
    /* DELETEs not yet due go with the thread's HTTP client (a shutdown or a reload within a second of a failed PUT). */
    while (!h2o_linklist_is_empty(&thread->deletes)) {
        pending_delete_t *d = H2O_STRUCT_FROM_MEMBER(pending_delete_t, link, thread->deletes.next);
        h2o_linklist_unlink(&d->link);
        weir_warn("upload: not deleting object \"%s\" of a failed upload: the upload backend stops", d->key);
        free(d->key);
        free(d);
    }
    uv_close((uv_handle_t *)thread->watch_timer, on_timer_closed);
    uv_close((uv_handle_t *)thread->delete_timer, on_timer_closed);
    /* DELETEs still in flight are aborted (their callbacks free their keys). */
    weir_http_client_destroy(thread->client);
    uv_close((uv_handle_t *)thread->hash_idle, on_timer_closed);
    free(thread);
}

static void destroy(weir_upload_backend_t *_self)
{
    s3_backend_t *self = (void *)_self;

    weir_upload_s3_settings_dispose(&self->s);
    free(self->base_url);
    free(self->host);
    free(self);
}

static const weir_upload_backend_vtable_t S3_VTABLE = {
    .name = "s3",
    .thread_start = thread_start,
    .thread_stop = thread_stop,
    .prepare = prepare,
    .start = start,
    .cancel = cancel,
    .destroy = destroy,
};

static char *dup_or_null(const char *s)
{
    return s != NULL ? weir_strdup(s) : NULL;
}

int weir_upload_s3_create(const weir_upload_s3_settings_t *s, unsigned max_connections, weir_upload_backend_t **out)
{
    char reason[200];

    if (weir_upload_s3_check(s, reason, sizeof(reason)) != 0) {
        weir_error("upload: s3 backend: %s", reason);
        return -EINVAL;
    }
    /* libcurl is loaded and set up here, on the thread that builds configurations, before any worker thread starts
     * this backend (idempotent: a later configuration finds it ready) */
    int ret;
    if ((ret = weir_http_client_global_init()) != 0)
        return ret;
    s3_backend_t *self = weir_calloc(1, sizeof(*self));
    self->super.vt = &S3_VTABLE;
    self->s.endpoint = weir_strdup(s->endpoint);
    self->s.region = weir_strdup(s->region != NULL ? s->region : WEIR_UPLOAD_S3_DEFAULT_REGION);
    self->s.bucket = weir_strdup(s->bucket);
    self->s.key_prefix = weir_strdup(s->key_prefix != NULL ? s->key_prefix : "");
    self->s.access_key_id = weir_strdup(s->access_key_id);
    self->s.secret_access_key = weir_strdup(s->secret_access_key);
    self->s.session_token = dup_or_null(s->session_token);
    self->s.ca_file = dup_or_null(s->ca_file);
    self->s.timeout_ms = s->timeout_ms;
    self->s.max_connections = s->max_connections;

    /* "http://host:port/" -> base "http://host:port", host "host:port" */
    size_t len = strlen(s->endpoint);
    while (len != 0 && s->endpoint[len - 1] == '/')
        --len;
    self->base_url = weir_strndup(s->endpoint, len);
    const char *authority = strstr(self->base_url, "://") + 3;
    self->host = weir_strdup(authority);

    self->creds.access_key_id = h2o_iovec_init(self->s.access_key_id, strlen(self->s.access_key_id));
    self->creds.secret_access_key = h2o_iovec_init(self->s.secret_access_key, strlen(self->s.secret_access_key));
    if (self->s.session_token != NULL)
        self->creds.session_token = h2o_iovec_init(self->s.session_token, strlen(self->s.session_token));
    self->max_connections = max_connections;
    *out = &self->super;
    return 0;
}
