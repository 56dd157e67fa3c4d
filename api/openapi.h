/* api/openapi.h: docs/openapi.yaml, compiled into the binary (scripts/embed-file) and
 * served by GET /openapi.yaml (api_openapi_get). */
#ifndef EB_API_OPENAPI_H
#define EB_API_OPENAPI_H

#include <stddef.h>

/* The document as it was at build time: openapi_yaml_len bytes, then a NUL. */
extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;

#endif
