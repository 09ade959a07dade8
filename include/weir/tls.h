/**
 * @file tls.h
 * The one place that loads a listener's certificate and key: the configuration check (`weir -t`, and every reload)
 * and the server use the same function, with the same options.
 */
#ifndef WEIR_TLS_H
#define WEIR_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/** Why the files did not load, each reason about one file ("" when there is nothing to say about it). */
typedef struct st_weir_tls_errors_t {
    char certificate[512];
    char key[512]; /**< also: the key does not match the certificate */
} weir_tls_errors_t;

/**
 * A server context for HTTPS with ALPN h2 and http/1.1: TLS 1.2 and later, no compression, the server's cipher
 * preference, the certificate chain in @p cert_file and the private key in @p key_file (PEM; an encrypted key is
 * refused rather than prompted for), which must match.
 * Both files are tried, so that both can be reported.
 * @return the context (free it with SSL_CTX_free), or NULL with the reasons in @p errs.
 */
SSL_CTX *weir_tls_create_server_ctx(const char *cert_file, const char *key_file, weir_tls_errors_t *errs);

#endif
