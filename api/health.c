/* api/health.c: the operator's endpoints: GET /healthz (the loop runs), GET /readyz (the
 * database answers with the schema this broker knows, and the broker is not stopping) and
 * GET /metrics (Prometheus text). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "db/migrate.h"
#include "db/pgasync.h"
#include "http/http.h"
#include "pool/pool.h"

#define READYZ_DEADLINE_MS 2000

void api_health_get(struct http_request *r, void *arg)
{
	(void)arg;
	http_request_log(r)->probe = true;
	http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

struct readyz {
	struct api *api;
	struct http_request *req;
};

static void not_ready(struct http_request *r, const char *why)
{
	http_reply_json(r, 503, json_pack("{s:s, s:s}", "status", "not_ready", "reason", why));
}

static void on_schema(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct readyz *rz = arg;
	struct api *a = rz->api;
	char why[160];

	(void)sqlstate;
	if (res == NULL) {
		snprintf(why, sizeof(why), "database: %s", error);
		not_ready(rz->req, why);
	} else if (!migrate_schema_current(res, why, sizeof(why))) {
		not_ready(rz->req, why);
	} else if (a->phase != API_SERVING || a->leaving) {
		not_ready(rz->req, "shutting down");
	} else {
		http_reply_json(rz->req, 200, json_pack("{s:s}", "status", "ready"));
	}
	free(rz);
	api_release(a);
}

void api_ready_get(struct http_request *r, void *arg)
{
	struct api *a = arg;
	struct readyz *rz = malloc(sizeof(*rz));

	http_request_log(r)->probe = true;
	if (rz == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	rz->api = a;
	rz->req = r;
	if (pgasync_query(a->db, migrate_schema_sql, 0, NULL, READYZ_DEADLINE_MS, on_schema, rz) ==
	    NULL) {
		free(rz);
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	api_hold(a);
}

void api_metrics_get(struct http_request *r, void *arg)
{
	struct api *a = arg;
	struct pool_stats st;
	char *text;

	http_request_log(r)->probe = true;
	pool_get_stats(a->pool, &st);
	text = metrics_render(&a->metrics, &st, a->instance);
	if (text == NULL) {
		http_reply(r, 500, "text/plain", "", 0);
		return;
	}
	http_reply(r, 200, "text/plain; version=0.0.4", text, strlen(text));
	free(text);
}
