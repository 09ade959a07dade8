/**
 * @file sigv4.h
 * AWS Signature Version 4 (header-based, "AWS4-HMAC-SHA256") as pure functions, for S3 and S3-compatible stores:
 * path-style requests (`PUT /bucket/key`), the path encoded once and never normalised (what S3 expects), the body's
 * SHA-256 signed in `x-amz-content-sha256` (or the literal "UNSIGNED-PAYLOAD"), `x-amz-security-token` for temporary
 * credentials. No global state, no files, no clock: the caller gives the time; work and memory are linear in the
 * input, which is bounded (WEIR_SIGV4_MAX_FIELD, WEIR_SIGV4_MAX_PAIRS). Hashes are OpenSSL's EVP_Digest and HMAC(),
 * the same calls in OpenSSL 1.1.1 and 3.0.
 *
 * Signing a PUT:
 *
 *     weir_sigv4_pair_t headers[] = {{h2o_iovec_init(H2O_STRLIT("host")), h2o_iovec_init(H2O_STRLIT("s3.example:9000"))},
 *                                    {h2o_iovec_init(H2O_STRLIT("content-type")), content_type}};
 *     char hash[WEIR_SIGV4_HEX_LEN + 1], date[WEIR_SIGV4_DATE_LEN + 1];
 *     weir_sigv4_sha256_hex(body, body_len, hash);
 *     weir_sigv4_format_date(time(NULL), date);
 *     weir_sigv4_request_t r = {.method = h2o_iovec_init(H2O_STRLIT("PUT")), .path = path_unencoded,
 *                               .headers = headers, .num_headers = 2, .payload_hash = h2o_iovec_init(hash, 64),
 *                               .region = region, .service = h2o_iovec_init(H2O_STRLIT("s3")),
 *                               .amz_date = h2o_iovec_init(date, 16), .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
 *     weir_sigv4_signed_t out;
 *     if (weir_sigv4_sign(pool, &r, &credentials, &out) == 0)
 *         send "PUT " out.canonical_uri [ "?" out.canonical_query ], the caller's headers, out.extra_headers[] and
 *         "authorization: " out.authorization
 */
#ifndef WEIR_SIGV4_H
#define WEIR_SIGV4_H

#include <stddef.h>
#include <time.h>
#include <h2o/memory.h>

/** The payload "hash" that tells the store the body is not signed. */
#define WEIR_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/** Hex SHA-256 of the empty string: the payload hash of a request without a body. */
#define WEIR_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/** Length of a hex SHA-256 or HMAC-SHA256 (the signature). */
#define WEIR_SIGV4_HEX_LEN 64
/** Length of an x-amz-date value, "YYYYMMDDTHHMMSSZ". */
#define WEIR_SIGV4_DATE_LEN 16
/** Longest accepted name, value, path, key, token, region or service (bytes); S3 keys are at most 1024. */
#define WEIR_SIGV4_MAX_FIELD 65536
/** Most headers, and most query parameters, one request may have. */
#define WEIR_SIGV4_MAX_PAIRS 256

/** Flags of weir_sigv4_request_t. */
enum {
    /** Add and sign `x-amz-content-sha256: <payload_hash>`, as S3 requires of every request. */
    WEIR_SIGV4_ADD_CONTENT_SHA256 = 1,
};

/** A header or a query parameter: a name and a value, neither NUL-terminated nor encoded. */
typedef struct st_weir_sigv4_pair_t {
    h2o_iovec_t name;
    h2o_iovec_t value;
} weir_sigv4_pair_t;

/** Credentials. The secret is any non-empty bytes; the key id and the token are visible ASCII. */
typedef struct st_weir_sigv4_credentials_t {
    /** "AKIDEXAMPLE": visible ASCII except '/' and ','. */
    h2o_iovec_t access_key_id;
    h2o_iovec_t secret_access_key;
    /** The session token of temporary credentials, or len == 0 for none; signed and sent as x-amz-security-token. */
    h2o_iovec_t session_token;
} weir_sigv4_credentials_t;

/** What is signed. Nothing is copied; every pointer must stay valid during weir_sigv4_sign only. */
typedef struct st_weir_sigv4_request_t {
    /** "PUT": an HTTP token, used as given (methods are case-sensitive). */
    h2o_iovec_t method;
    /**
     * The path, NOT encoded: "/bucket/my key.jpg". It must start with '/'. Each byte outside A-Z a-z 0-9 - . _ ~ and
     * '/' is sent and signed as %XX, once; "." and ".." segments and repeated slashes are kept as they are (S3's
     * "unnormalized" rule: the object key is the path, byte for byte).
     */
    h2o_iovec_t path;
    /** Query parameters, NOT encoded (an S3 PutObject has none). A parameter without a value has value.len == 0. */
    const weir_sigv4_pair_t *query;
    size_t num_query;
    /**
     * The headers to sign and send, "host" among them (required). Names are HTTP tokens in any case; values may hold
     * SP, HTAB and bytes >= 0x80 but no other control characters (no CR, LF or NUL). A name given several times is
     * signed as one header whose values are joined by ',' in the order given. The caller must not give the headers
     * the signer adds: authorization, x-amz-date, x-amz-security-token (with a token), x-amz-content-sha256 (with
     * WEIR_SIGV4_ADD_CONTENT_SHA256). Headers not listed here (curl's Expect, User-Agent...) are sent unsigned.
     */
    const weir_sigv4_pair_t *headers;
    size_t num_headers;
    /** 64 lower-case hex digits (weir_sigv4_sha256_hex of the body), or WEIR_SIGV4_UNSIGNED_PAYLOAD. */
    h2o_iovec_t payload_hash;
    /** "us-east-1", "s3": 1 or more of A-Z a-z 0-9 - . _ */
    h2o_iovec_t region;
    h2o_iovec_t service;
    /** The time of the request, "YYYYMMDDTHHMMSSZ" (weir_sigv4_format_date); S3 refuses one 15 minutes off. */
    h2o_iovec_t amz_date;
    /** 0 or WEIR_SIGV4_ADD_CONTENT_SHA256. */
    int flags;
} weir_sigv4_request_t;

/** The result of weir_sigv4_sign: every intermediate step, NUL-terminated strings on the pool given to it. */
typedef struct st_weir_sigv4_signed_t {
    /** The encoded path: the request target to send (it is also the canonical URI). */
    h2o_iovec_t canonical_uri;
    /** The encoded, sorted query ("" for none): send it after '?' when not empty. */
    h2o_iovec_t canonical_query;
    /** Step 1: method \n URI \n query \n headers \n\n signed headers \n payload hash (no final newline). */
    h2o_iovec_t canonical_request;
    /** "20150830/us-east-1/s3/aws4_request" */
    h2o_iovec_t credential_scope;
    /** The lower-cased, sorted names, ';'-separated: "host;x-amz-content-sha256;x-amz-date". */
    h2o_iovec_t signed_headers;
    /** Step 2: "AWS4-HMAC-SHA256" \n amz_date \n scope \n hex SHA-256 of the canonical request. */
    h2o_iovec_t string_to_sign;
    /** Step 3: hex HMAC-SHA256 of the string to sign under the derived key. */
    char signature[WEIR_SIGV4_HEX_LEN + 1];
    /** The Authorization header's value: "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...". */
    h2o_iovec_t authorization;
    /**
     * The headers the signer added and signed, with lower-case names, which must be sent too: x-amz-content-sha256
     * (with WEIR_SIGV4_ADD_CONTENT_SHA256), x-amz-date, x-amz-security-token (with a session token), in that order.
     */
    weir_sigv4_pair_t extra_headers[3];
    size_t num_extra_headers;
} weir_sigv4_signed_t;

/**
 * Signs @p req with @p credentials. Every string of @p out is allocated on @p pool (about twice the size of the
 * request's strings), even on error (then @p out holds nothing usable).
 * @return 0; -EINVAL when a field is malformed (see weir_sigv4_request_t; no host header is malformed too); -E2BIG
 *         when a field is longer than WEIR_SIGV4_MAX_FIELD or there are more than WEIR_SIGV4_MAX_PAIRS headers or
 *         parameters; -EIO if OpenSSL fails.
 */
int weir_sigv4_sign(h2o_mem_pool_t *pool, const weir_sigv4_request_t *req, const weir_sigv4_credentials_t *credentials,
                    weir_sigv4_signed_t *out);

/**
 * URI-encodes @p len bytes of @p s the SigV4 way: A-Z a-z 0-9 - . _ ~ kept, '/' kept when @p keep_slash (paths; not
 * in query names and values), every other byte %XX with upper-case hex ("a b+c" is "a%20b%2Bc", UTF-8 "é" is
 * "%C3%A9", '%' is "%25"). The result is NUL-terminated, on @p pool.
 */
h2o_iovec_t weir_sigv4_uri_encode(h2o_mem_pool_t *pool, const char *s, size_t len, int keep_slash);

/**
 * Writes the lower-case hex SHA-256 of @p len bytes of @p data, NUL-terminated, into @p out (the payload hash of a
 * body). @return 0, or -EIO if OpenSSL fails.
 */
int weir_sigv4_sha256_hex(const void *data, size_t len, char out[WEIR_SIGV4_HEX_LEN + 1]);

/** Writes HMAC-SHA256(@p key, @p data) into @p out. @return 0, or -EIO if OpenSSL fails (or a key over INT_MAX bytes). */
int weir_sigv4_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, unsigned char out[32]);

/**
 * Derives the signing key HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request") into @p out.
 * @p date is the 8 digits "YYYYMMDD". @return 0, -EINVAL (empty or malformed arguments, as for weir_sigv4_sign),
 * -E2BIG (over WEIR_SIGV4_MAX_FIELD), or -EIO.
 */
int weir_sigv4_derive_key(h2o_iovec_t secret_access_key, h2o_iovec_t date, h2o_iovec_t region, h2o_iovec_t service,
                          unsigned char out[32]);

/**
 * Writes @p t as an x-amz-date, "YYYYMMDDTHHMMSSZ" in UTC, NUL-terminated, into @p out.
 * @return 0, or -ERANGE when the year is not within 0..9999.
 */
int weir_sigv4_format_date(time_t t, char out[WEIR_SIGV4_DATE_LEN + 1]);

#endif
