/* broker/openapi.c: GET /openapi.yaml. The bytes are in build/gen/openapi_data.c, made
 * from docs/openapi.yaml by scripts/embed-file. */
#include "broker/openapi.h"

#include <event2/http.h>

#include "broker/server.h"

void openapi_handle(struct server *s, struct http_ctx *h)
{
	server_reply(s, h, 200, "application/yaml", (const char *)openapi_yaml, openapi_yaml_len);
}
