/* http/tls.h: HTTPS for the listener. A server context is made from a PEM certificate
 * chain and its key, accepting TLS 1.2 and 1.3 only with forward-secret AEAD ciphers; the
 * server takes new connections with the context in force, so that a renewed certificate
 * is taken by swapping the context (on reload) while open connections keep theirs. */
#ifndef EB_HTTP_TLS_H
#define EB_HTTP_TLS_H

#include <stddef.h>

#include "http/server.h"

/* A server context from cert_file and key_file: 0 and *out (opaque, free with
 * http_tls_free), or a negative EB_ERR_* with one line in err (a file missing, not PEM,
 * the key not the certificate's). */
int http_tls_new(const char *cert_file, const char *key_file, void **out, char *err, size_t errlen);
void http_tls_free(void *ctx);

/* New connections are accepted over TLS with ctx (NULL: plain HTTP). The server keeps its
 * own reference: the caller frees its own. */
void http_server_set_tls(struct http_server *s, void *ctx);

#endif
