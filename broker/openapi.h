/* broker/openapi.h: docs/openapi.yaml, compiled into the binary (scripts/embed-file), and
 * GET /openapi.yaml, which serves it. */
#ifndef EB_BROKER_OPENAPI_H
#define EB_BROKER_OPENAPI_H

#include <stddef.h>

struct server;
struct http_ctx;

/* The document as it was at build time: openapi_yaml_len bytes, then a NUL. */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

/* Replies to GET or HEAD /openapi.yaml with the document, as application/yaml. */
void openapi_handle(struct server *s, struct http_ctx *h);

#endif
