/* api/openapi.c: GET /openapi.yaml. The bytes are in build/gen/openapi_data.c, made from
 * docs/openapi.yaml by scripts/embed-file. */
#include "api/openapi.h"

#include "api/api.h"
#include "http/http.h"

void api_openapi_get(struct http_request *r, void *arg)
{
	(void)arg;
	http_reply(r, 200, "application/yaml", openapi_yaml, openapi_yaml_len);
}
