#include <stdio.h>
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "weir/tls.h"

/* The reason of the first error in OpenSSL's queue (the root cause); the queue is then cleared. */
static void ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (reason != NULL)
        snprintf(buf, size, "%s", reason);
    else if (e != 0)
        ERR_error_string_n(e, buf, size);
    else
        snprintf(buf, size, "unknown error");
    ERR_clear_error();
}

/* Refuses to prompt for a passphrase: an encrypted key fails to load instead of blocking on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

SSL_CTX *weir_tls_create_server_ctx(const char *cert_file, const char *key_file, weir_tls_errors_t *errs)
{
    SSL_CTX *ctx = NULL;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    char reason[256];
    int cert_ok;

    errs->certificate[0] = errs->key[0] = '\0';
    ERR_clear_error();
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        ssl_reason(reason, sizeof(reason));
        snprintf(errs->certificate, sizeof(errs->certificate), "cannot create a TLS context: %s", reason);
        goto Error;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!(cert_ok = SSL_CTX_use_certificate_chain_file(ctx, cert_file) == 1)) {
        ssl_reason(reason, sizeof(reason));
        snprintf(errs->certificate, sizeof(errs->certificate), "cannot load certificate \"%s\": %s", cert_file, reason);
    }
    if ((bio = BIO_new_file(key_file, "r")) == NULL || (pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL) {
        ssl_reason(reason, sizeof(reason));
        snprintf(errs->key, sizeof(errs->key), "cannot load private key \"%s\": %s", key_file, reason);
        goto Error;
    }
    if (!cert_ok)
        goto Error;
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(errs->key, sizeof(errs->key), "private key \"%s\" does not match certificate \"%s\"", key_file, cert_file);
        goto Error;
    }
#if H2O_USE_ALPN
    h2o_ssl_register_alpn_protocols(ctx, h2o_alpn_protocols);
#endif
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return ctx;
Error:
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return NULL;
}
