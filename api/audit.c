/* api/audit.c: GET /v1/audit and GET /v1/audit/{exec_id}. The token is looked up first
 * and decides the scope; then one query reads the page or the row. Reading the log writes
 * no audit rows. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/authz.h"
#include "audit/filter.h"
#include "audit/query.h"
#include "audit/render.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "http/http.h"

#define AUDIT_QUERY_DEADLINE_MS 5000
#define AUDIT_MAX_PARAMS        32

/* One audit request, from its arrival to its reply. Owned by itself: freed by finish(),
 * after exactly one reply. */
struct audit_req {
	struct api *api;
	struct http_request *http;
	bool one; /* GET /v1/audit/{exec_id} */
	char exec_id[40];
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	struct audit_filter f; /* its strings point into the request's decoded query */
	char org[80], ws[80];  /* the token's scope */
	struct audit_scope scope;
	struct audit_query q;
};

static void finish(struct audit_req *a)
{
	struct api *api = a->api;

	free(a);
	api_release(api);
}

static void fail(struct audit_req *a, const char *code, const char *message, const char *field)
{
	http_reply_error(a->http, code, message, field);
	finish(a);
}

static void unavailable(struct audit_req *a, const char *what, const char *error)
{
	log_kv(LOG_ERROR, what, "request_id", http_request_id(a->http), "error", error, NULL);
	fail(a, "audit_unavailable",
	     "the broker's database is unreachable, so the audit log cannot be read; retry later",
	     NULL);
}

static void reply_json(struct audit_req *a, json_t *o)
{
	if (o == NULL) {
		fail(a, "audit_unavailable", "out of memory", NULL);
		return;
	}
	http_reply_json(a->http, 200, o);
	finish(a);
}

static void on_rows(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct audit_req *a = arg;

	(void)sqlstate;
	if (error != NULL) {
		unavailable(a, "audit read failed", error);
		return;
	}
	if (!a->one) {
		reply_json(a, audit_page_json(res, &a->f));
		return;
	}
	if (PQntuples(res) != 1) {
		fail(a, "not_found", "no audit row with this exec_id", NULL);
		return;
	}
	reply_json(a, audit_item_json(res, 0));
}

static void on_token(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct audit_req *a = arg;
	const char *kind;

	(void)sqlstate;
	if (error != NULL) {
		unavailable(a, "token lookup failed", error);
		return;
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), "t") == 0 ||
	    strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		fail(a, "unauthorized",
		     PQntuples(res) == 1 ? "the token has expired or was revoked"
		                         : "the token is not known to this broker",
		     NULL);
		return;
	}
	kind = PQgetvalue(res, 0, 0);
	http_request_log(a->http)->actor = a->actor;
	if (!(scopes_from_pg_array(PQgetvalue(res, 0, 5)) & SCOPE_AUDIT_READ)) {
		char msg[200];

		authz_missing_scope_message(SCOPE_AUDIT_READ, msg, sizeof(msg));
		fail(a, "missing_scope", msg, NULL);
		return;
	}
	snprintf(a->org, sizeof(a->org), "%s", PQgetvalue(res, 0, 3));
	snprintf(a->ws, sizeof(a->ws), "%s", PQgetvalue(res, 0, 4));
	if (strcmp(kind, "admin") == 0)
		a->scope = (struct audit_scope){AUDIT_SCOPE_ALL, NULL, NULL};
	else if (strcmp(kind, "org") == 0)
		a->scope = (struct audit_scope){AUDIT_SCOPE_ORG, a->org, NULL};
	else
		a->scope = (struct audit_scope){AUDIT_SCOPE_WORKSPACE, a->org, a->ws};
	if (a->one)
		audit_query_one(&a->q, a->exec_id, &a->scope);
	else
		audit_query_list(&a->q, &a->f, &a->scope);
	if (pgasync_query(a->api->db, a->q.sql, a->q.nparams, a->q.params, AUDIT_QUERY_DEADLINE_MS,
	                  on_rows, a) == NULL)
		fail(a, "audit_unavailable", "out of memory", NULL);
}

/* The query string as a filter; false after replying 400. */
static bool parse_filter(struct audit_req *a)
{
	const char *names[AUDIT_MAX_PARAMS], *values[AUDIT_MAX_PARAMS];
	char field[64], err[300];
	size_t n;

	if (http_request_query_pairs(a->http, names, values, AUDIT_MAX_PARAMS, &n) != 0) {
		if (n > AUDIT_MAX_PARAMS)
			fail(a, "invalid_request", "too many query parameters", "query");
		else
			fail(a, "invalid_request",
			     "the query string is malformed: use name=value pairs "
			     "joined by &, percent-encoded",
			     "query");
		return false;
	}
	if (audit_filter_parse(&a->f, names, values, n, field, sizeof(field), err, sizeof(err)) !=
	    0) {
		fail(a, "invalid_request", err, field);
		return false;
	}
	return true;
}

/* Both endpoints: exec_id is NULL for the list. */
static void handle(struct http_request *r, struct api *api, const char *exec_id)
{
	const char *why, *params[1], *query;
	struct audit_req *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	a->api = api;
	a->http = r;
	api_hold(api); /* from here every path ends in finish() */
	why = authz_bearer(http_request_header(r, "Authorization"), a->token_hash, a->actor);
	if (why != NULL) {
		fail(a, "unauthorized", why, NULL);
		return;
	}
	if (exec_id != NULL) {
		a->one = true;
		if (!audit_exec_id_valid(exec_id)) {
			fail(a, "invalid_request",
			     "an exec_id is a UUID, as in the X-Exec-Id header of an exec",
			     "exec_id");
			return;
		}
		snprintf(a->exec_id, sizeof(a->exec_id), "%s", exec_id);
		query = http_request_query(r);
		if (query != NULL && query[0] != '\0') {
			fail(a, "invalid_request", "a single audit row takes no query parameters",
			     "query");
			return;
		}
	} else if (!parse_filter(a)) {
		return;
	}
	params[0] = a->token_hash;
	if (pgasync_query_static(api->db, authz_token_sql, 1, params, AUDIT_QUERY_DEADLINE_MS,
	                         on_token, a) == NULL)
		fail(a, "audit_unavailable", "out of memory", NULL);
}

void api_audit_list(struct http_request *r, void *arg)
{
	handle(r, arg, NULL);
}

void api_audit_get(struct http_request *r, void *arg)
{
	handle(r, arg, http_request_param(r, 0));
}
