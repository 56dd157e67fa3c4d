/* api/batches.c: GET /v1/batches/{batch_id} and GET /v1/batches, the batch resource read
 * back from the database: the batch row and its targets' audit rows, in one statement, so
 * any broker answers for any batch. A batch is the business of the token that made it:
 * another token gets 404, as for a workspace it cannot reach. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/authz.h"
#include "api/batchview.h"
#include "audit/filter.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "http/http.h"

#define BATCHES_QUERY_MS 5000
#define TS(col)          "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* One read, from its arrival to its reply. Owned by itself: freed by finish(). */
struct bread {
	struct api *api;
	struct http_request *http;
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	char batch_id[40];
	json_t *summary; /* waiting for the batch row's outcome to be recorded */
	const char *outcome[BATCHVIEW_OUTCOME_NPARAMS]; /* that statement's parameters */
	char nums[3][24];
};

static void finish(struct bread *x)
{
	struct api *api = x->api;

	json_decref(x->summary);
	free(x);
	api_release(api);
}

static void fail(struct bread *x, const char *code, const char *message)
{
	http_reply_error(x->http, code, message, NULL);
	finish(x);
}

static void unavailable(struct bread *x, const char *error)
{
	log_kv(LOG_ERROR, "batch read failed", "request_id", http_request_id(x->http), "error",
	       error, NULL);
	fail(x, "audit_unavailable",
	     "the broker's database is unreachable, so the batch cannot be read; retry later");
}

/* The statement's outcome and the token's columns 0-3 (kind, expired, revoked, scopes):
 * false after replying. */
static bool token_ok(struct bread *x, const PGresult *res, const char *error)
{
	char msg[200];

	if (error != NULL) {
		unavailable(x, error);
		return false;
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), "t") == 0 ||
	    strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		fail(x, "unauthorized",
		     PQntuples(res) == 1 ? "the token has expired or was revoked"
		                         : "the token is not known to this broker");
		return false;
	}
	http_request_log(x->http)->actor = x->actor;
	if (!(scopes_from_pg_array(PQgetvalue(res, 0, 3)) & SCOPE_BATCH)) {
		authz_missing_scope_message(SCOPE_BATCH, msg, sizeof(msg));
		fail(x, "missing_scope", msg);
		return false;
	}
	return true;
}

#define TOKEN_CTE                                                                                  \
	"WITH t AS ("                                                                              \
	" SELECT kind, coalesce(expires_at <= now(), false) AS expired,"                           \
	"  revoked_at IS NOT NULL AS revoked, scopes"                                              \
	" FROM api_tokens WHERE secret_sha256 = decode($1, 'hex')) "

enum {
	C_BATCH_ID = 4,
	C_STATUS,
	C_DETACHED,
	C_LAUNCHED,
	C_TARGETS,
	C_TARGET,
	C_ARGV,
	C_MAX_CONC,
	C_MAX_ERRORS,
	C_STARTED,
	C_FINISHED,
	C_ROWS,
};

static const char one_sql[] =
    TOKEN_CTE "SELECT t.kind, t.expired, t.revoked, t.scopes, b.batch_id, b.status, b.detached,"
              " b.launched, array_to_json(b.targets), b.target::text, array_to_json(b.argv),"
              " b.max_concurrency, b.max_errors, " TS("b.started_at") ", " TS(
                  "b.finished_at") ","
                                   " (SELECT json_agg(json_build_object('workspace_id', "
                                   "a.workspace_id,"
                                   "   'exec_id', a.exec_id, 'status', a.status, 'exit_code', "
                                   "a.exit_code,"
                                   "   'signal', a.exit_signal, 'duration_ms', a.duration_ms,"
                                   "   'error_code', a.error_code))"
                                   "  FROM exec_audit a WHERE a.batch_id = b.batch_id) "
                                   "FROM t LEFT JOIN batches b ON b.batch_id = $2::uuid AND "
                                   "b.actor = $3";

static void reply_summary(struct bread *x)
{
	http_reply_json(x->http, 200, x->summary);
	x->summary = NULL;
	finish(x);
}

static void on_settled(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct bread *x = arg;

	(void)res;
	(void)sqlstate;
	if (error != NULL)
		log_kv(LOG_WARN, "could not record a batch's outcome; a later read retries",
		       "batch_id", x->batch_id, "error", error, NULL);
	reply_summary(x);
}

static void on_one(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct bread *x = arg;
	json_t *targets, *rows, *row, *o;
	struct batch_result *r;
	const char *status;
	size_t n, i, k;
	bool running, launched;

	(void)sqlstate;
	if (!token_ok(x, res, error))
		return;
	if (PQgetisnull(res, 0, C_BATCH_ID)) {
		fail(x, "not_found", "no batch with this batch_id that this token made");
		return;
	}
	targets = json_loads(PQgetvalue(res, 0, C_TARGETS), 0, NULL);
	rows = PQgetisnull(res, 0, C_ROWS) ? json_array()
	                                   : json_loads(PQgetvalue(res, 0, C_ROWS), 0, NULL);
	n = json_array_size(targets);
	r = calloc(n > 0 ? n : 1, sizeof(*r));
	if (targets == NULL || rows == NULL || r == NULL) {
		json_decref(targets);
		json_decref(rows);
		free(r);
		fail(x, "audit_unavailable", "out of memory");
		return;
	}
	status = PQgetvalue(res, 0, C_STATUS);
	running = strcmp(status, "running") == 0;
	launched = strcmp(PQgetvalue(res, 0, C_LAUNCHED), "t") == 0;
	for (i = 0; i < n; i++) {
		const char *ws = json_string_value(json_array_get(targets, i));

		r[i].workspace_id = ws;
		r[i].status = running && !launched ? "pending" : "not_started";
		r[i].duration_ms = -1;
		json_array_foreach(rows, k, row)
		{
			const char *rws = json_string_value(json_object_get(row, "workspace_id"));

			if (rws != NULL && strcmp(rws, ws) == 0) {
				batchview_result_from_row(row, &r[i]);
				break;
			}
		}
	}
	if (running && launched) {
		const char *now = batchview_status(r, n, false);
		struct batch_counts c = batchview_count(r, n);

		if (strcmp(now, "running") != 0) {
			status = now; /* recorded below, before the reply */
			batchview_outcome_params(x->batch_id, status, &c, x->nums, x->outcome);
		}
	}
	x->summary = batchview_summary(PQgetvalue(res, 0, C_BATCH_ID), status, r, n);
	free(r);
	json_decref(targets);
	json_decref(rows);
	o = x->summary;
	if (o == NULL) {
		fail(x, "audit_unavailable", "out of memory");
		return;
	}
	json_object_set_new(o, "detached", json_boolean(*PQgetvalue(res, 0, C_DETACHED) == 't'));
	json_object_set_new(o, "target", json_loads(PQgetvalue(res, 0, C_TARGET), 0, NULL));
	json_object_set_new(o, "argv", json_loads(PQgetvalue(res, 0, C_ARGV), 0, NULL));
	json_object_set_new(o, "max_concurrency",
	                    json_integer(atoi(PQgetvalue(res, 0, C_MAX_CONC))));
	json_object_set_new(o, "max_errors", json_integer(atoi(PQgetvalue(res, 0, C_MAX_ERRORS))));
	json_object_set_new(o, "started_at", json_string(PQgetvalue(res, 0, C_STARTED)));
	json_object_set_new(o, "finished_at",
	                    PQgetisnull(res, 0, C_FINISHED)
	                        ? json_null()
	                        : json_string(PQgetvalue(res, 0, C_FINISHED)));
	if (!running || strcmp(status, "running") == 0) {
		reply_summary(x);
		return;
	}
	/* Over: its row records what its targets' rows say. */
	if (pgasync_query_static(x->api->db, batchview_outcome_sql, BATCHVIEW_OUTCOME_NPARAMS,
	                         x->outcome, BATCHES_QUERY_MS, on_settled, x) == NULL)
		reply_summary(x);
}

static const char list_sql[] =
    TOKEN_CTE "SELECT t.kind, t.expired, t.revoked, t.scopes,"
              " (SELECT coalesce(json_agg(x.o ORDER BY x.s DESC, x.id DESC), '[]') FROM ("
              "   SELECT b.started_at AS s, b.batch_id AS id, json_build_object("
              "    'batch_id', b.batch_id, 'status', b.status, 'target', b.target,"
              "    'argv', b.argv, 'detached', b.detached, 'targets', cardinality(b.targets),"
              "    'succeeded', b.succeeded, 'failed', b.failed, 'not_started', b.not_started,"
              "    'started_at', " TS("b.started_at") ", 'finished_at', " TS(
                  "b.finished_at") ") AS o"
                                   "   FROM batches b WHERE b.actor = $2"
                                   "   ORDER BY b.started_at DESC, b.batch_id DESC LIMIT 100) "
                                   "x) "
                                   "FROM t";

static void on_list(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct bread *x = arg;
	json_t *list;

	(void)sqlstate;
	if (!token_ok(x, res, error))
		return;
	list = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
	if (list == NULL) {
		fail(x, "audit_unavailable", "out of memory");
		return;
	}
	http_reply_json(x->http, 200, json_pack("{s:o}", "batches", list));
	finish(x);
}

/* The request's token: a new read, or NULL after replying. */
static struct bread *bread_new(struct http_request *r, struct api *api)
{
	struct bread *x = calloc(1, sizeof(*x));
	const char *why;

	if (x == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return NULL;
	}
	x->api = api;
	x->http = r;
	api_hold(api);
	why = authz_bearer(http_request_header(r, "Authorization"), x->token_hash, x->actor);
	if (why != NULL) {
		fail(x, "unauthorized", why);
		return NULL;
	}
	if (http_request_query(r) != NULL && http_request_query(r)[0] != '\0') {
		http_reply_error(r, "invalid_request", "this endpoint takes no query parameters",
		                 "query");
		finish(x);
		return NULL;
	}
	return x;
}

void api_batches_one(struct http_request *r, void *arg)
{
	struct bread *x = bread_new(r, arg);
	const char *params[3];

	if (x == NULL)
		return;
	if (!audit_exec_id_valid(http_request_param(r, 0))) {
		http_reply_error(r, "invalid_request",
		                 "a batch_id is a UUID, as the first frame or the Location of a "
		                 "batch gives it",
		                 "batch_id");
		finish(x);
		return;
	}
	snprintf(x->batch_id, sizeof(x->batch_id), "%s", http_request_param(r, 0));
	params[0] = x->token_hash;
	params[1] = x->batch_id;
	params[2] = x->actor;
	if (pgasync_query_static(x->api->db, one_sql, 3, params, BATCHES_QUERY_MS, on_one, x) ==
	    NULL)
		fail(x, "audit_unavailable", "out of memory");
}

void api_batches_root(struct http_request *r, void *arg)
{
	struct bread *x;
	const char *params[2];

	if (http_request_verb(r) == HTTP_VERB_POST) {
		api_batch_post(r, arg);
		return;
	}
	x = bread_new(r, arg);
	if (x == NULL)
		return;
	params[0] = x->token_hash;
	params[1] = x->actor;
	if (pgasync_query_static(x->api->db, list_sql, 2, params, BATCHES_QUERY_MS, on_list, x) ==
	    NULL)
		fail(x, "audit_unavailable", "out of memory");
}
