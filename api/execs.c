/* api/execs.c: the exec resource: GET /v1/execs/{exec_id} (with ?wait_s), its output
 * (GET .../output, a replay and follow of what the host keeps), its signals (POST
 * .../signal, DELETE), and GET /v1/workspaces/{id}/execs. A detached exec's state is its
 * audit row and its directory on the host (pool/detached.h), never this broker's memory:
 * every request looks the row up, asks the host over a pooled session when the row alone
 * cannot answer, and the first broker to learn an outcome completes the row (exactly once:
 * the update only takes a running row).
 *
 *   XOP_LOOKUP   one statement: the token, the row, its workspace (and an admin's
 *                access records)
 *   XOP_RECORD   an admin's access is recorded with the exec before anything is shown
 *   XOP_HOST     a script runs on the host (reader, or signaller); the output streams
 *   XOP_COMPLETE the host said the exec ended: the row is completed
 *   XOP_REREAD   the row is read again, to answer with what it now says
 *   XOP_DONE     replied; freed
 *
 * Ownership: an xop owns itself from its handler to xop_finish(): its query, its pool
 * acquire and exec, its timer and the request, each given back before it is freed (never
 * inside a pool callback: the exec is released there, and the xop freed after the turn). */
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/authz.h"
#include "api/execview.h"
#include "audit/filter.h"
#include "audit/query.h"
#include "audit/writer.h"
#include "common/fsm.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "http/http.h"
#include "pool/pool.h"

#define XOP_QUERY_MS    5000
#define XOP_MAX_WAIT_S  60
#define XOP_HOST_SLACK  30  /* seconds a reader may take beyond what it waits for */
#define XOP_LOST_SLACK  300 /* past its deadline, an unreachable host's exec is lost */
#define XOP_LIST_LIMIT  100
#define XOP_POLL_MS     500 /* ?wait_s of an attached exec: the row is read this often */
#define XOP_STREAM_HIGH (64 * 1024)
#define XOP_STREAM_LOW  (16 * 1024)

enum xop_kind { XK_GET, XK_OUTPUT, XK_SIGNAL, XK_CANCEL };
enum xop_state { XOP_LOOKUP, XOP_RECORD, XOP_HOST, XOP_COMPLETE, XOP_REREAD, XOP_DONE };

static const char *const state_names[] = {"lookup", "record", "host", "complete", "reread", "done"};
static const unsigned xop_legal[] = {
    [XOP_LOOKUP] = FSM_BIT(XOP_LOOKUP) | FSM_BIT(XOP_RECORD) | FSM_BIT(XOP_HOST) |
                   FSM_BIT(XOP_COMPLETE) | FSM_BIT(XOP_DONE),
    [XOP_RECORD] = FSM_BIT(XOP_HOST) | FSM_BIT(XOP_COMPLETE) | FSM_BIT(XOP_DONE),
    [XOP_HOST] = FSM_BIT(XOP_COMPLETE) | FSM_BIT(XOP_REREAD) | FSM_BIT(XOP_DONE),
    [XOP_COMPLETE] = FSM_BIT(XOP_REREAD) | FSM_BIT(XOP_DONE),
    [XOP_REREAD] = FSM_BIT(XOP_DONE),
    [XOP_DONE] = 0,
};
static const struct fsm xop_fsm = {"exec request", state_names, xop_legal, 6};

static const char *const kind_actions[] = {"read", "output", "signal", "cancel"};

/* The row, its workspace and the token, in one statement: the row's AUDIT_ITEM_COLUMNS
 * first (audit_item_json reads them by position), then what authz_row_from_columns reads,
 * then the target, an admin's access records, and the database's clock. */
#define C_AUTHZ  AUDIT_NCOLS
#define C_HOST   (AUDIT_NCOLS + AUTHZ_NCOLS)
#define C_PORT   (C_HOST + 1)
#define C_USER   (C_HOST + 2)
#define C_FP     (C_HOST + 3)
#define C_ACCESS (C_HOST + 4)
#define C_NOW    (C_HOST + 5)
static const char lookup_sql[] =
    "WITH t AS ("
    " SELECT kind, org_id, workspace_id, coalesce(expires_at <= now(), false) AS expired,"
    "  revoked_at IS NOT NULL AS revoked, scopes"
    " FROM api_tokens WHERE secret_sha256 = decode($1, 'hex')) "
    "SELECT a.*, t.kind, t.org_id, t.workspace_id, t.expired, t.revoked, w.id, w.org_id,"
    " w.state, w.tier, t.scopes, w.host, w.port, w.ssh_user, w.host_key_sha256,"
    " (SELECT json_agg(json_build_object('at', x.at, 'actor', x.actor, 'action', x.action,"
    "   'signal', x.detail, 'reason', x.reason) ORDER BY x.at)"
    "  FROM exec_admin_access x WHERE x.exec_id = $2::uuid),"
    " (extract(epoch FROM now()) * 1000)::bigint "
    "FROM t LEFT JOIN LATERAL (SELECT " AUDIT_ITEM_COLUMNS
    " FROM exec_audit WHERE exec_id = $2::uuid) a ON true"
    " LEFT JOIN workspaces w ON w.id = a.workspace_id";

static const char reread_sql[] =
    "SELECT " AUDIT_ITEM_COLUMNS " FROM exec_audit WHERE exec_id = $1::uuid";

static const char record_sql[] =
    "INSERT INTO exec_admin_access (exec_id, actor, action, detail, reason)"
    " VALUES ($1::uuid, $2, $3, $4, $5)";

/* The token and the workspace of a list. */
static const char list_authz_sql[] =
    "WITH t AS ("
    " SELECT kind, org_id, workspace_id, coalesce(expires_at <= now(), false) AS expired,"
    "  revoked_at IS NOT NULL AS revoked, scopes"
    " FROM api_tokens WHERE secret_sha256 = decode($1, 'hex')) "
    "SELECT t.kind, t.org_id, t.workspace_id, t.expired, t.revoked, w.id, w.org_id, w.state,"
    " w.tier, t.scopes FROM t LEFT JOIN workspaces w ON w.id = $2";

static const char list_sql[] =
    "SELECT " AUDIT_ITEM_COLUMNS " FROM exec_audit"
    " WHERE workspace_id = $1 AND detached"
    "  AND (status = 'running' OR finished_at > now() - make_interval(secs => $2::integer))"
    "  AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR name = $4)"
    " ORDER BY started_at DESC, exec_id DESC LIMIT 100";

struct xop {
	struct api *api;
	struct http_request *http; /* NULL once ended */
	enum xop_kind kind;
	enum xop_state state;
	char request_id[HTTP_REQUEST_ID_MAX + 1];
	char exec_id[AUDIT_EXEC_ID_LEN + 1];
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	char *reason;
	bool admin, client_gone, org_counted, freeing;
	char org[80], ws[80]; /* ws: the request log points at it; the row may be read again */

	/* The request. */
	int wait_s;
	bool follow;
	uint64_t off[3]; /* output: where the client resumes, per stream */
	char signal[8];

	/* The row (the lookup's, then the reread's). */
	PGresult *row;
	bool detached, running;
	long long now_ms, started_us, finished_us;
	int timeout_s;
	struct timeval wait_until; /* CLOCK_MONOTONIC: the end of ?wait_s */

	struct pgasync_query *q;
	struct pool_acquire *acq;
	struct pool_exec *exec;
	struct event *timer;
	char host[256], user[40], fp[64];
	int port;
	struct eb_bytes argv[DETACHED_READ_ARGC];
	size_t argc;
	char *store;

	/* What the host said. */
	struct detached_parser parser;
	struct execs_output out;
	bool ended, still_running, gone, absent, host_failed;
	struct detached_status st;

	/* Output streaming. */
	bool streaming, paused;
	struct utf8_carry carry[3];
	uint64_t carry_at[3]; /* the offset of the first byte carried */
	struct evbuffer *chunk;
};

static void xop_set_state(struct xop *x, enum xop_state to)
{
	FSM_SET(&xop_fsm, x->state, to, x->request_id);
}

static void xop_free(struct xop *x)
{
	struct api *api = x->api;

	if (x->q != NULL)
		pgasync_cancel(x->q);
	if (x->acq != NULL)
		pool_acquire_cancel(x->acq);
	if (x->exec != NULL)
		pool_exec_release(x->exec);
	if (x->timer != NULL)
		event_free(x->timer);
	if (x->http != NULL)
		http_request_drop(x->http);
	if (x->org_counted)
		orgs_leave(&api->orgs, x->org);
	if (x->chunk != NULL)
		evbuffer_free(x->chunk);
	PQclear(x->row);
	free(x->store);
	free(x->reason);
	free(x);
	api_release(api);
}

static void on_free_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	xop_free(arg);
}

/* The end: freed after this loop turn (a pool callback may be on the stack). */
static void xop_finish(struct xop *x)
{
	struct timeval zero = {0, 0};

	if (x->freeing)
		return;
	x->freeing = true;
	if (x->state != XOP_DONE)
		xop_set_state(x, XOP_DONE);
	if (x->timer != NULL)
		event_free(x->timer);
	x->timer = evtimer_new(x->api->base, on_free_later, x);
	if (x->timer == NULL || evtimer_add(x->timer, &zero) != 0)
		abort(); /* cannot happen with a working loop; nothing safe to do */
}

static void fail(struct xop *x, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct xop *x, const char *code, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (x->http != NULL) {
		if (strcmp(code, "too_many_requests") == 0)
			http_reply_header(x->http, "Retry-After", "1");
		http_reply_error(x->http, code, msg, NULL);
		x->http = NULL;
	}
	xop_finish(x);
}

static void unavailable(struct xop *x, const char *what, const char *error)
{
	log_kv(LOG_ERROR, what, "request_id", x->request_id, "exec_id", x->exec_id, "error", error,
	       NULL);
	fail(x, "audit_unavailable",
	     "the broker's database is unreachable, so the exec cannot be looked up; retry later");
}

static const char *row_text(const struct xop *x, int c)
{
	return PQgetisnull(x->row, 0, c) ? NULL : PQgetvalue(x->row, 0, c);
}

/* Reads what the row says into x (after the lookup and after the reread). */
static void take_row(struct xop *x, PGresult *res)
{
	const char *v;

	if (x->row != NULL && x->row != res)
		PQclear(x->row);
	x->row = res;
	v = row_text(x, AUDIT_COL_DETACHED);
	x->detached = v != NULL && v[0] == 't';
	v = row_text(x, AUDIT_COL_STATUS);
	x->running = v != NULL && strcmp(v, "running") == 0;
	v = row_text(x, AUDIT_COL_STARTED_US);
	x->started_us = v != NULL ? strtoll(v, NULL, 10) : 0;
	v = row_text(x, AUDIT_COL_FINISHED_US);
	x->finished_us = v != NULL ? strtoll(v, NULL, 10) : 0;
	v = row_text(x, AUDIT_COL_TIMEOUT_S);
	x->timeout_s = v != NULL ? atoi(v) : 0;
}

/* The exec object of the row, as x knows it now. */
static json_t *object_json(struct xop *x)
{
	json_t *access = NULL;

	if (PQnfields(x->row) > C_ACCESS && row_text(x, C_ACCESS) != NULL)
		access = json_loads(row_text(x, C_ACCESS), 0, NULL);
	return execs_object(x->row, 0, &x->out, x->api->cfg->exec_retain_s, access);
}

static void reply_object(struct xop *x, int status)
{
	json_t *o = object_json(x);

	if (x->http != NULL) {
		if (o == NULL) {
			http_reply_error(x->http, "audit_unavailable", "out of memory", NULL);
		} else {
			http_reply_json(x->http, status, o);
		}
		x->http = NULL;
	} else {
		json_decref(o);
	}
	xop_finish(x);
}

static bool monotonic_passed(const struct timeval *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	       (now.tv_sec == t->tv_sec && now.tv_nsec / 1000 >= t->tv_usec);
}

static long wait_left_s(const struct xop *x)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return x->wait_until.tv_sec - now.tv_sec;
}

/* ---- output frames ---- */

static void on_drained(struct http_request *r, void *arg)
{
	struct xop *x = arg;

	(void)r;
	if (x->paused && x->exec != NULL) {
		x->paused = false;
		pool_exec_resume(x->exec);
	}
}

static void send_line(struct xop *x, char *line)
{
	if (line == NULL)
		return;
	if (x->http != NULL && x->streaming && !x->client_gone && x->chunk != NULL) {
		evbuffer_add(x->chunk, line, strlen(line));
		http_stream_write(x->http, x->chunk);
		if (!x->paused && x->exec != NULL &&
		    http_stream_backlog(x->http) > XOP_STREAM_HIGH) {
			x->paused = true;
			pool_exec_pause(x->exec);
		}
	}
	free(line);
}

static void send_json(struct xop *x, json_t *o)
{
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	char *line = s != NULL ? realloc(s, strlen(s) + 2) : NULL;

	json_decref(o);
	if (line == NULL) {
		free(s);
		return;
	}
	strcat(line, "\n");
	send_line(x, line);
}

static void stream_begin(struct xop *x)
{
	if (x->streaming || x->http == NULL)
		return;
	x->streaming = true;
	x->chunk = evbuffer_new();
	http_stream_start(x->http, "application/x-ndjson");
	http_stream_on_drained(x->http, XOP_STREAM_LOW, on_drained, x);
	send_json(x, json_pack("{s:s, s:s, s:I, s:I}", "exec_id", x->exec_id, "workspace_id",
	                       row_text(x, AUDIT_COL_WORKSPACE_ID), "stdout_offset",
	                       (json_int_t)x->off[1], "stderr_offset", (json_int_t)x->off[2]));
}

static void flush_carry(struct xop *x, int s)
{
	if (x->carry[s].len > 0)
		send_line(x, execs_output_frame(s, &x->carry[s], x->carry_at[s], NULL, 0, true));
}

static void frame_data(struct xop *x, int s, uint64_t offset, const char *data, size_t len)
{
	uint64_t first = x->carry[s].len > 0 ? x->carry_at[s] : offset;

	send_line(x, execs_output_frame(s, &x->carry[s], first, data, len, false));
	x->carry_at[s] = offset + len - x->carry[s].len;
	x->off[s] = offset + len;
}

static void frame_skipped(struct xop *x, int s, uint64_t offset, uint64_t n)
{
	flush_carry(x, s);
	send_json(x, json_pack("{s:s, s:I, s:I}", "stream", s == 1 ? "stdout" : "stderr", "skipped",
	                       (json_int_t)n, "offset", (json_int_t)offset));
	x->off[s] = offset + n;
}

/* The last frame of an ended exec, from the row (completed by now, or final before). */
static void frame_last(struct xop *x)
{
	const char *status = row_text(x, AUDIT_COL_STATUS);
	const char *code = row_text(x, AUDIT_COL_EXIT_CODE),
	           *sig = row_text(x, AUDIT_COL_EXIT_SIGNAL);
	json_t *o = json_object();

	flush_carry(x, 1);
	flush_carry(x, 2);
	if (strcmp(status, "exited") == 0 || strcmp(status, "signaled") == 0) {
		json_object_set_new(o, "exit_code",
		                    code != NULL ? json_integer(atoi(code)) : json_null());
		json_object_set_new(o, "signal", sig != NULL ? json_string(sig) : json_null());
	} else {
		static const struct {
			const char *status, *code, *message;
		} errors[] = {
		    {"timeout", "exec_timeout", "the command ran past its timeout and was killed"},
		    {"cancelled", "cancelled", "the exec was cancelled; the command was killed"},
		    {"lost", "lost",
		     "the exec's supervisor on the host is gone; its outcome is unknown"},
		};
		const char *c = "transport_error", *m = "the exec did not run to its end";

		for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
			if (strcmp(errors[i].status, status) == 0) {
				c = errors[i].code;
				m = errors[i].message;
			}
		json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", c, "message", m));
	}
	json_object_set_new(o, "status", json_string(status));
	json_object_set_new(o, "exec_id", json_string(x->exec_id));
	for (int c = AUDIT_COL_DURATION_MS; c <= AUDIT_COL_STDERR_BYTES; c++) {
		static const char *const keys[] = {"duration_ms", "stdout_bytes", "stderr_bytes"};
		const char *v = row_text(x, c);
		json_object_set_new(o, keys[c - AUDIT_COL_DURATION_MS],
		                    v != NULL ? json_integer(strtoll(v, NULL, 10)) : json_null());
	}
	send_json(x, o);
}

static void stream_end(struct xop *x)
{
	if (x->http != NULL) {
		if (x->streaming)
			http_stream_end(x->http);
		else
			http_request_drop(x->http);
		x->http = NULL;
	}
	xop_finish(x);
}

/* The host has nothing more of an exec whose row is final (its directory is gone): what the
 * client has not had is announced as skipped, then the last frame. */
static void output_from_row(struct xop *x)
{
	for (int s = 1; s <= 2; s++) {
		const char *v =
		    row_text(x, s == 1 ? AUDIT_COL_STDOUT_BYTES : AUDIT_COL_STDERR_BYTES);
		uint64_t total = v != NULL ? strtoull(v, NULL, 10) : 0;

		if (total > x->off[s])
			frame_skipped(x, s, x->off[s], total - x->off[s]);
	}
	frame_last(x);
	stream_end(x);
}

/* ---- the row's completion ---- */

static void after_reread(struct xop *x);

static void on_reread(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xop *x = arg;

	(void)sqlstate;
	x->q = NULL;
	if (error == NULL && PQntuples(res) == 1) {
		take_row(x, PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES));
	} else if (error != NULL) {
		log_kv(LOG_WARN, "could not read the exec's row again", "request_id", x->request_id,
		       "exec_id", x->exec_id, "error", error, NULL);
	}
	after_reread(x);
}

static void reread(struct xop *x)
{
	const char *params[1] = {x->exec_id};

	xop_set_state(x, XOP_REREAD);
	x->q = pgasync_query_static(x->api->db, reread_sql, 1, params, XOP_QUERY_MS, on_reread, x);
	if (x->q == NULL)
		after_reread(x);
}

static void on_completed(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xop *x = arg;

	(void)sqlstate;
	x->q = NULL;
	if (error != NULL) {
		x->api->metrics.audit_write_failures++;
		log_kv(LOG_WARN,
		       "could not complete a detached exec's row; a later read or sweep will",
		       "request_id", x->request_id, "exec_id", x->exec_id, "error", error, NULL);
	} else if (atoi(PQcmdTuples((PGresult *)res)) > 0) {
		seal_add(x->api, x->exec_id);
		log_kv(LOG_INFO, "detached exec ended", "request_id", x->request_id, "exec_id",
		       x->exec_id, "outcome", x->gone ? "lost" : execs_status_of(&x->st), NULL);
	}
	reread(x);
}

/* The host said the exec ended (x->st), or that it is gone (x->gone): the row is completed,
 * unless another broker did it first. */
static void complete_row(struct xop *x)
{
	long long cap = x->api->cfg->exec_detached_output_cap_bytes;
	long long elapsed = x->now_ms - x->started_us / 1000;
	struct audit_end e = {
	    .exec_id = x->exec_id,
	    .status = x->gone ? "lost" : execs_status_of(&x->st),
	    .exit_code = x->st.exit_code,
	    .exit_signal = x->st.signal,
	    .duration_ms = x->gone ? (elapsed > 0 ? elapsed : 0) : x->st.duration_ms,
	    .stdout_bytes = x->st.stdout_bytes,
	    .stderr_bytes = x->st.stderr_bytes,
	    /* Some output went once a first chunk was dropped (pool/detached.h). */
	    .stdout_truncated =
	        x->st.stdout_bytes > (unsigned long long)(cap - detached_chunk(cap)),
	    .stderr_truncated =
	        x->st.stderr_bytes > (unsigned long long)(cap - detached_chunk(cap)),
	};
	const char *params[AUDIT_END_NPARAMS];
	char *store = NULL;

	xop_set_state(x, XOP_COMPLETE);
	if (audit_end_params(&e, params, &store) == 0)
		x->q = pgasync_query_static(x->api->db, audit_detached_end_sql, AUDIT_END_NPARAMS,
		                            params, XOP_QUERY_MS, on_completed, x);
	free(store);
	if (x->q == NULL)
		reread(x);
}

/* ---- on the host ---- */

static void on_rec(const struct detached_rec *r, void *arg)
{
	struct xop *x = arg;

	switch (r->kind) {
	case DREC_DATA:
		if (x->kind == XK_OUTPUT)
			frame_data(x, r->stream, r->offset, r->data, (size_t)r->len);
		break;
	case DREC_SKIPPED:
		if (x->kind == XK_OUTPUT)
			frame_skipped(x, r->stream, r->offset, r->len);
		break;
	case DREC_KEPT:
		x->out.from[r->stream] = r->offset;
		x->out.to[r->stream] = r->len;
		break;
	case DREC_STATUS:
		x->ended = true;
		x->st = r->status;
		break;
	case DREC_RUNNING:
		x->still_running = true;
		break;
	case DREC_GONE:
		x->gone = true;
		break;
	case DREC_ABSENT:
		x->gone = x->absent = true;
		break;
	default:
		abort();
	}
}

static void on_host_started(struct pool_exec *e, void *arg)
{
	struct xop *x = arg;

	(void)e;
	if (x->kind == XK_OUTPUT)
		stream_begin(x);
}

static void on_host_data(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len,
                         void *arg)
{
	struct xop *x = arg;

	(void)e;
	if (s != POOL_STDOUT || x->parser.failed)
		return;
	if (detached_parse(&x->parser, buf, len, on_rec, x) != 0) {
		log_kv(LOG_ERROR, "the host's reader printed what no reader prints", "request_id",
		       x->request_id, "exec_id", x->exec_id, NULL);
		pool_exec_cancel(x->exec);
	}
}

static void host_done(struct xop *x, const struct pool_outcome *o);

static void on_host_finished(struct pool_exec *e, const struct pool_outcome *o, void *arg)
{
	struct xop *x = arg;

	(void)e;
	host_done(x, o);
}

static const struct pool_exec_callbacks host_cbs = {on_host_started, on_host_data,
                                                    on_host_finished};

static void on_leased(struct pool_lease *lease, enum pool_fail_reason why, const char *detail,
                      void *arg)
{
	struct xop *x = arg;
	struct command_spec spec = {.argv = x->argv, .argc = x->argc, .broker_script = true};
	struct timeval deadline;
	struct pool_outcome o = {.kind = POOL_FAILED_TO_START, .fail_reason = why};
	long limit_s = XOP_HOST_SLACK + (x->kind == XK_GET ? x->wait_s : 0);

	x->acq = NULL;
	if (lease == NULL) {
		log_kv(LOG_WARN, "no SSH session to read a detached exec", "request_id",
		       x->request_id, "exec_id", x->exec_id, "host", x->host, "reason",
		       pool_fail_reason_name(why), "detail", detail, NULL);
		host_done(x, &o);
		return;
	}
	if (x->kind == XK_OUTPUT && x->follow) {
		/* A follower lasts as long as the exec may. */
		long long end_ms = x->started_us / 1000 + (long long)x->timeout_s * 1000;
		long long left = (end_ms - x->now_ms) / 1000 + x->api->cfg->pool_kill_grace_s;
		limit_s = XOP_HOST_SLACK + (left > 0 ? (long)left : 0);
	}
	pool_deadline_after_ms(limit_s * 1000, &deadline);
	x->exec = pool_exec_start(lease, &spec, NULL, 0, &deadline, &host_cbs, x);
	if (x->exec == NULL) {
		o.fail_reason = POOL_FAIL_CONNECT;
		host_done(x, &o);
	}
}

/* Runs x->argv on the exec's host. */
static void host_run(struct xop *x)
{
	struct pool_target t = {x->host, x->port, x->user, x->fp};
	struct timeval deadline;

	xop_set_state(x, XOP_HOST);
	pool_deadline_after_ms(10000, &deadline);
	x->acq = pool_lease_acquire(x->api->pool, &t, &deadline, on_leased, x);
	if (x->acq == NULL) {
		struct pool_outcome o = {.kind = POOL_FAILED_TO_START,
		                         .fail_reason = POOL_FAIL_CONNECT};
		host_done(x, &o);
	}
}

static bool host_reachable(const struct pool_outcome *o)
{
	return o->kind == POOL_EXITED;
}

/* api_fail_code, except that the connection's failures are told apart from the
 * connect's by whether the script started. */
static const char *host_error_code(const struct pool_outcome *o)
{
	const char *c = api_fail_code(o->fail_reason);

	if (strcmp(c, "ssh_connect_failed") == 0 || o->fail_reason == POOL_FAIL_CHANNEL)
		return o->kind == POOL_FAILED_TO_START ? "ssh_connect_failed" : "transport_error";
	return c;
}

/* A running row whose host cannot be reached long past the exec's deadline: lost. */
static bool lost_for_good(const struct xop *x)
{
	long long end_ms = x->started_us / 1000 + ((long long)x->timeout_s + XOP_LOST_SLACK) * 1000;

	return x->running && x->now_ms > end_ms;
}

/* A row younger than a start may take: the host may not know the exec yet. */
static bool still_starting(const struct xop *x)
{
	return x->now_ms - x->started_us / 1000 < DETACHED_START_MS + XOP_HOST_SLACK * 1000;
}

static void signal_done(struct xop *x, const struct pool_outcome *o)
{
	if (!host_reachable(o)) {
		fail(x, host_error_code(o),
		     "the workspace host could not be reached to signal the exec; retry later");
		return;
	}
	if (o->exit_code == DETACHED_SIGNAL_ENDED || o->exit_code == DETACHED_SIGNAL_LOST) {
		fail(x, "exec_finished", "exec %s has ended%s; there is nothing to signal",
		     x->exec_id,
		     o->exit_code == DETACHED_SIGNAL_LOST ? " (its supervisor on the host is gone)"
		                                          : "");
		return;
	}
	if (o->exit_code != 0) {
		fail(x, "transport_error", "the workspace host could not deliver the signal");
		return;
	}
	log_kv(LOG_INFO, "detached exec signalled", "request_id", x->request_id, "exec_id",
	       x->exec_id, "signal", x->kind == XK_CANCEL ? "cancel" : x->signal, NULL);
	reply_object(x, 202);
}

static void host_done(struct xop *x, const struct pool_outcome *o)
{
	bool reached = host_reachable(o) && !x->parser.failed && x->parser.left == 0;

	if (x->exec != NULL) {
		pool_exec_release(x->exec); /* reclaimed by the pool after the turn */
		x->exec = NULL;
	}
	if (x->kind == XK_SIGNAL || x->kind == XK_CANCEL) {
		signal_done(x, o);
		return;
	}
	if (!reached) {
		if (o->kind != POOL_FAILED_TO_START || x->kind != XK_GET)
			log_kv(LOG_WARN, "could not read a detached exec on its host", "request_id",
			       x->request_id, "exec_id", x->exec_id, "outcome",
			       pool_outcome_name(o->kind), "detail", o->detail, NULL);
		x->host_failed = true;
		if (x->kind == XK_OUTPUT) {
			if (!x->streaming) {
				fail(x, host_error_code(o),
				     "the workspace host could not be reached to read the exec's "
				     "output; retry later");
				return;
			}
			/* No last frame: the client resumes from its offsets. */
			stream_end(x);
			return;
		}
		if (lost_for_good(x)) {
			x->gone = true;
			complete_row(x);
			return;
		}
		reply_object(x, 200);
		return;
	}
	if (x->absent && x->running && still_starting(x)) {
		/* A start under way: its directory may not be there yet. */
		x->gone = false;
		x->still_running = true;
	}
	x->out.known = true;
	x->out.retained = !x->gone;
	if ((x->ended || x->gone) && x->running) {
		complete_row(x);
		return;
	}
	after_reread(x);
}

/* The row says what it says now (after the host, a completion, or a reread). */
static void after_reread(struct xop *x)
{
	if (x->kind != XK_OUTPUT) {
		reply_object(x, 200);
		return;
	}
	if (x->gone) {
		output_from_row(x);
		return;
	}
	if (x->ended || !x->running) {
		frame_last(x);
	} else {
		/* follow=false, or a reader that stopped early: where to resume. */
		flush_carry(x, 1);
		flush_carry(x, 2);
		send_json(x,
		          json_pack("{s:s, s:I, s:I}", "status", "running", "stdout_offset",
		                    (json_int_t)x->off[1], "stderr_offset", (json_int_t)x->off[2]));
	}
	stream_end(x);
}

/* ---- the request, once the row is known and authorized ---- */

static void on_poll(evutil_socket_t fd, short what, void *arg);

static void proceed(struct xop *x)
{
	bool keeps_output;

	if (x->kind == XK_GET) {
		keeps_output = x->detached &&
		               (x->running || x->finished_us / 1000 +
		                                      (long long)x->api->cfg->exec_retain_s * 1000 >
		                                  x->now_ms);
		if (!x->detached) {
			/* An attached exec is its row; a wait reads it again until it ends. */
			if (x->running && x->wait_s > 0 && !monotonic_passed(&x->wait_until)) {
				struct timeval tv = {0, XOP_POLL_MS * 1000};
				xop_set_state(x, XOP_LOOKUP);
				if (x->timer == NULL)
					x->timer = evtimer_new(x->api->base, on_poll, x);
				if (x->timer != NULL && evtimer_add(x->timer, &tv) == 0)
					return;
			}
			reply_object(x, 200);
			return;
		}
		if (!keeps_output) {
			x->out.known = true; /* past retention: the directory has gone */
			reply_object(x, 200);
			return;
		}
		if (x->running && x->wait_s > 0)
			x->wait_s = (int)(wait_left_s(x) > 0 ? wait_left_s(x) : 0);
		if (detached_read_argv(x->exec_id, DETACHED_STAT, 0, 0,
		                       x->api->cfg->exec_detached_output_cap_bytes,
		                       x->running ? x->wait_s : 0, x->argv, &x->store) != 0) {
			fail(x, "audit_unavailable", "out of memory");
			return;
		}
		x->argc = DETACHED_READ_ARGC;
		host_run(x);
		return;
	}
	if (!x->detached) {
		fail(x, "not_detached",
		     "exec %s was not detached: its output was never kept and it can only be "
		     "signalled by its own client, through its connection",
		     x->exec_id);
		return;
	}
	if (x->kind == XK_OUTPUT) {
		if (!orgs_enter(&x->api->orgs, x->org, x->api->cfg->org_max_concurrent_execs)) {
			fail(x, "too_many_requests",
			     "org \"%s\" already has %d execs and followers running, the most "
			     "allowed "
			     "at once; retry after one finishes",
			     x->org, x->api->cfg->org_max_concurrent_execs);
			return;
		}
		x->org_counted = true;
		if (detached_read_argv(
		        x->exec_id, x->follow && x->running ? DETACHED_FOLLOW : DETACHED_READ,
		        x->off[1], x->off[2], x->api->cfg->exec_detached_output_cap_bytes, 0,
		        x->argv, &x->store) != 0) {
			fail(x, "audit_unavailable", "out of memory");
			return;
		}
		x->argc = DETACHED_READ_ARGC;
		host_run(x);
		return;
	}
	if (!x->running) {
		fail(x, "exec_finished", "exec %s has ended (%s); there is nothing to signal",
		     x->exec_id, row_text(x, AUDIT_COL_STATUS));
		return;
	}
	if (detached_signal_argv(x->exec_id, x->kind == XK_CANCEL ? NULL : x->signal, x->argv,
	                         &x->store) != 0) {
		fail(x, "audit_unavailable", "out of memory");
		return;
	}
	x->argc = DETACHED_SIGNAL_ARGC;
	host_run(x);
}

static void on_recorded(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xop *x = arg;

	(void)res;
	(void)sqlstate;
	x->q = NULL;
	if (error != NULL) {
		unavailable(x, "could not record an admin's access to an exec", error);
		return;
	}
	proceed(x);
}

/* An admin's access is recorded with the exec, with the reason, before anything is shown
 * or done (a plain read of a row that is not detached is only logged, as the audit log's
 * own reads are). */
static void record_access(struct xop *x)
{
	const char *params[5] = {x->exec_id, x->actor, kind_actions[x->kind],
	                         x->kind == XK_SIGNAL ? x->signal : NULL, x->reason};

	log_kv(LOG_INFO, "admin access to an exec", "request_id", x->request_id, "exec_id",
	       x->exec_id, "actor", x->actor, "action", kind_actions[x->kind], "reason", x->reason,
	       NULL);
	if (!x->detached && x->kind == XK_GET) {
		proceed(x);
		return;
	}
	xop_set_state(x, XOP_RECORD);
	x->q =
	    pgasync_query_static(x->api->db, record_sql, 5, params, XOP_QUERY_MS, on_recorded, x);
	if (x->q == NULL)
		fail(x, "audit_unavailable", "out of memory");
}

/* The row (authorized, or a sweep's) is what the request is about. */
static void take_and_go(struct xop *x, const PGresult *res, const char *ws_org, bool first)
{
	take_row(x, PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES));
	if (x->http != NULL) {
		http_request_log(x->http)->exec_id = x->exec_id;
		snprintf(x->ws, sizeof(x->ws), "%s", row_text(x, AUDIT_COL_WORKSPACE_ID));
		http_request_log(x->http)->workspace_id = x->ws;
	}
	snprintf(x->org, sizeof(x->org), "%s", ws_org);
	snprintf(x->host, sizeof(x->host), "%s", row_text(x, C_HOST));
	snprintf(x->user, sizeof(x->user), "%s", row_text(x, C_USER));
	snprintf(x->fp, sizeof(x->fp), "%s", row_text(x, C_FP));
	x->port = atoi(row_text(x, C_PORT));
	x->now_ms = strtoll(row_text(x, C_NOW), NULL, 10);
	if (x->admin && first) {
		record_access(x);
		return;
	}
	proceed(x);
}

static void on_lookup(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xop *x = arg;
	struct authz_row r;
	enum authz_verdict v;

	(void)sqlstate;
	x->q = NULL;
	if (error != NULL) {
		unavailable(x, "exec lookup failed", error);
		return;
	}
	authz_row_from_columns(res, C_AUTHZ, &r);
	if (!r.token_found || r.expired || r.revoked) {
		fail(x, "unauthorized",
		     r.token_found ? "the token has expired or was revoked"
		                   : "the token is not known to this broker");
		return;
	}
	http_request_log(x->http)->actor = x->actor;
	x->admin = strcmp(r.kind, "admin") == 0;
	v = authz_decide(&r, SCOPE_EXEC, x->api->cfg->min_exec_tier, x->reason != NULL);
	if (v == AUTHZ_MISSING_SCOPE) {
		char msg[200];

		authz_missing_scope_message(SCOPE_EXEC, msg, sizeof(msg));
		fail(x, "missing_scope", "%s", msg);
		return;
	}
	if (v == AUTHZ_REASON_REQUIRED) {
		fail(x, "break_glass_reason_required", AUTHZ_REASON_REQUIRED_MESSAGE);
		return;
	}
	if (PQgetisnull(res, 0, AUDIT_COL_EXEC_ID) || (v != AUTHZ_OK && v != AUTHZ_NOT_RUNNING)) {
		fail(x, "not_found", "no exec \"%s\" that this token can reach", x->exec_id);
		return;
	}
	take_and_go(x, res, r.ws_org, x->row == NULL);
}

/* The sweep's lookup: the row and its workspace, in the same columns, no token. */
static const char sweep_lookup_sql[] =
    "SELECT a.*, 'admin', NULL, NULL, false, false, w.id, w.org_id, w.state, w.tier,"
    " '{exec}', w.host,"
    " w.port, w.ssh_user, w.host_key_sha256, NULL::json,"
    " (extract(epoch FROM now()) * 1000)::bigint "
    "FROM (SELECT " AUDIT_ITEM_COLUMNS " FROM exec_audit WHERE exec_id = $1::uuid) a"
    " JOIN workspaces w ON w.id = a.workspace_id";

static void on_sweep_lookup(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xop *x = arg;

	(void)sqlstate;
	x->q = NULL;
	if (error != NULL || PQntuples(res) != 1) {
		xop_finish(x);
		return;
	}
	take_and_go(x, res, PQgetvalue(res, 0, C_AUTHZ + 6), false);
}

void api_execs_check(struct api *api, const char *exec_id)
{
	struct xop *x = calloc(1, sizeof(*x));
	const char *params[1] = {exec_id};

	if (x == NULL || !audit_exec_id_valid(exec_id)) {
		free(x);
		return;
	}
	x->api = api;
	x->kind = XK_GET;
	snprintf(x->request_id, sizeof(x->request_id), "sweep");
	snprintf(x->exec_id, sizeof(x->exec_id), "%s", exec_id);
	api_hold(api);
	x->q = pgasync_query_static(api->db, sweep_lookup_sql, 1, params, XOP_QUERY_MS,
	                            on_sweep_lookup, x);
	if (x->q == NULL)
		xop_finish(x);
}

static void lookup(struct xop *x)
{
	const char *params[2] = {x->token_hash, x->exec_id};

	x->q = pgasync_query_static(x->api->db, lookup_sql, 2, params, XOP_QUERY_MS, on_lookup, x);
	if (x->q == NULL)
		fail(x, "audit_unavailable", "out of memory");
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lookup(arg);
}

static void on_client_gone(struct http_request *r, void *arg)
{
	struct xop *x = arg;

	(void)r;
	x->client_gone = true;
	if (x->exec != NULL)
		pool_exec_cancel(x->exec); /* the reader ends; finished follows */
}

/* ---- the handlers ---- */

static bool parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 20)
		return false;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || v > max)
		return false;
	*out = v;
	return true;
}

/* The query string of x's request: false after replying 400. */
static bool parse_query(struct xop *x)
{
	const char *names[8], *values[8];
	size_t n;
	uint64_t v;

	if (http_request_query_pairs(x->http, names, values, 8, &n) != 0) {
		fail(x, "invalid_request",
		     "the query string is malformed or has too many parameters");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const char *k = names[i], *val = values[i];

		if (x->kind == XK_GET && strcmp(k, "wait_s") == 0) {
			if (!parse_uint(val, XOP_MAX_WAIT_S, &v)) {
				fail(x, "invalid_request",
				     "wait_s must be a whole number of seconds, 0-%d",
				     XOP_MAX_WAIT_S);
				return false;
			}
			x->wait_s = (int)v;
		} else if (x->kind == XK_OUTPUT &&
		           (strcmp(k, "stdout_offset") == 0 || strcmp(k, "stderr_offset") == 0)) {
			if (!parse_uint(val, (uint64_t)1 << 62, &v)) {
				fail(x, "invalid_request",
				     "%s must be a byte offset (a whole number)", k);
				return false;
			}
			x->off[k[3] == 'o' ? 1 : 2] = v;
		} else if (x->kind == XK_OUTPUT && strcmp(k, "follow") == 0) {
			if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0) {
				fail(x, "invalid_request", "follow must be true or false");
				return false;
			}
			x->follow = strcmp(val, "true") == 0;
		} else {
			fail(x, "invalid_request", "unknown query parameter \"%.40s\"", k);
			return false;
		}
	}
	return true;
}

/* The signal body: {"signal": NAME}. False after replying 400. */
static bool parse_signal(struct xop *x)
{
	size_t len;
	const char *body = http_request_body(x->http, &len), *key;
	json_t *root = json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES, NULL), *v;
	bool ok = false;

	if (!json_is_object(root)) {
		fail(x, "invalid_json", "the body must be a JSON object: {\"signal\": \"TERM\"}");
		goto out;
	}
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "signal") != 0) {
			fail(x, "invalid_request", "unknown field \"%.40s\" (known: signal)", key);
			goto out;
		}
	}
	v = json_object_get(root, "signal");
	if (!json_is_string(v) || !detached_signal_valid(json_string_value(v))) {
		fail(x, "invalid_request",
		     "signal must be one of HUP INT QUIT KILL USR1 USR2 TERM CONT STOP");
		goto out;
	}
	snprintf(x->signal, sizeof(x->signal), "%s", json_string_value(v));
	ok = true;
out:
	json_decref(root);
	return ok;
}

static void handle(struct http_request *r, struct api *api, enum xop_kind kind)
{
	const char *id = http_request_param(r, 0), *why;
	const char *reason = http_request_header(r, "X-Break-Glass-Reason");
	struct xop *x = calloc(1, sizeof(*x));

	if (x == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	x->api = api;
	x->http = r;
	x->kind = kind;
	x->follow = true;
	snprintf(x->request_id, sizeof(x->request_id), "%s", http_request_id(r));
	api_hold(api); /* from here every path ends in xop_finish() */
	why = authz_bearer(http_request_header(r, "Authorization"), x->token_hash, x->actor);
	if (why != NULL) {
		fail(x, "unauthorized", "%s", why);
		return;
	}
	if (reason != NULL) {
		if (!authz_reason_valid(reason)) {
			fail(x, "invalid_request",
			     "X-Break-Glass-Reason must be 1-500 printable characters");
			return;
		}
		x->reason = strdup(reason);
	}
	if (!audit_exec_id_valid(id)) {
		fail(x, "not_found", "no exec \"%.40s\": an exec_id is a UUID", id);
		return;
	}
	snprintf(x->exec_id, sizeof(x->exec_id), "%s", id);
	if (kind == XK_SIGNAL ? !parse_signal(x) : !parse_query(x))
		return;
	if (x->wait_s > 0) {
		pool_deadline_after_ms((long)x->wait_s * 1000, &x->wait_until);
	}
	http_request_on_close(r, on_client_gone, x);
	lookup(x);
}

void api_execs_one(struct http_request *r, void *arg)
{
	handle(r, arg, http_request_verb(r) == HTTP_VERB_DELETE ? XK_CANCEL : XK_GET);
}

void api_execs_output(struct http_request *r, void *arg)
{
	handle(r, arg, XK_OUTPUT);
}

void api_execs_signal(struct http_request *r, void *arg)
{
	handle(r, arg, XK_SIGNAL);
}

/* ---- GET /v1/workspaces/{id}/execs ---- */

struct xlist {
	struct api *api;
	struct http_request *http;
	char ws[80], token_hash[TOKEN_HASH_HEX_LEN + 1], actor[AUTHZ_ACTOR_LEN + 1];
	char retain[16];
	const char *status, *name; /* into the request's query */
	bool has_reason;
};

static void xlist_end(struct xlist *l, const char *code, const char *message)
{
	struct api *api = l->api;

	if (code != NULL)
		http_reply_error(l->http, code, message, NULL);
	free(l);
	api_release(api);
}

static void on_list_rows(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xlist *l = arg;
	json_t *a, *o;
	struct execs_output unknown = {0};

	(void)sqlstate;
	if (error != NULL) {
		log_kv(LOG_ERROR, "exec list failed", "request_id", http_request_id(l->http),
		       "error", error, NULL);
		xlist_end(l, "audit_unavailable",
		          "the broker's database is unreachable, so execs cannot be listed; retry "
		          "later");
		return;
	}
	a = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(
		    a, execs_object(res, i, &unknown, l->api->cfg->exec_retain_s, NULL));
	o = json_pack("{s:o}", "execs", a);
	http_reply_json(l->http, 200, o);
	xlist_end(l, NULL, NULL);
}

static void on_list_authz(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct xlist *l = arg;
	struct authz_row r;
	enum authz_verdict v;
	const char *params[4] = {l->ws, l->retain, l->status, l->name};

	(void)sqlstate;
	if (error != NULL) {
		log_kv(LOG_ERROR, "exec list lookup failed", "request_id", http_request_id(l->http),
		       "error", error, NULL);
		xlist_end(l, "audit_unavailable",
		          "the broker's database is unreachable, so execs cannot be listed; retry "
		          "later");
		return;
	}
	authz_row_from_columns(res, 0, &r);
	if (!r.token_found || r.expired || r.revoked) {
		xlist_end(l, "unauthorized",
		          r.token_found ? "the token has expired or was revoked"
		                        : "the token is not known to this broker");
		return;
	}
	http_request_log(l->http)->actor = l->actor;
	v = authz_decide(&r, SCOPE_EXEC, l->api->cfg->min_exec_tier, l->has_reason);
	if (v == AUTHZ_MISSING_SCOPE) {
		char msg[200];

		authz_missing_scope_message(SCOPE_EXEC, msg, sizeof(msg));
		xlist_end(l, "missing_scope", msg);
		return;
	}
	if (v == AUTHZ_REASON_REQUIRED) {
		xlist_end(l, "break_glass_reason_required", AUTHZ_REASON_REQUIRED_MESSAGE);
		return;
	}
	if (v != AUTHZ_OK && v != AUTHZ_NOT_RUNNING) {
		xlist_end(l, "not_found", "no workspace that this token can reach has this id");
		return;
	}
	if (strcmp(r.kind, "admin") == 0)
		log_kv(LOG_INFO, "admin listed a workspace's execs", "request_id",
		       http_request_id(l->http), "workspace_id", l->ws, "actor", l->actor, NULL);
	snprintf(l->retain, sizeof(l->retain), "%d", l->api->cfg->exec_retain_s);
	if (pgasync_query_static(l->api->db, list_sql, 4, params, XOP_QUERY_MS, on_list_rows, l) ==
	    NULL)
		xlist_end(l, "audit_unavailable", "out of memory");
}

static bool status_known(const char *s)
{
	static const char *const known[] = {
	    "running",         "exited",    "signaled", "timeout",  "cancelled", "transport_error",
	    "failed_to_start", "abandoned", "lost",     "shutdown", "denied"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(s, known[i]) == 0)
			return true;
	return false;
}

void api_execs_list(struct http_request *r, void *arg)
{
	struct api *api = arg;
	const char *ws = http_request_param(r, 0), *why, *names[4], *values[4];
	const char *reason = http_request_header(r, "X-Break-Glass-Reason");
	const char *params[2];
	struct xlist *l = calloc(1, sizeof(*l));
	size_t n;

	if (l == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	l->api = api;
	l->http = r;
	api_hold(api);
	why = authz_bearer(http_request_header(r, "Authorization"), l->token_hash, l->actor);
	if (why != NULL) {
		xlist_end(l, "unauthorized", why);
		return;
	}
	if (reason != NULL && !authz_reason_valid(reason)) {
		xlist_end(l, "invalid_request",
		          "X-Break-Glass-Reason must be 1-500 printable characters");
		return;
	}
	l->has_reason = reason != NULL;
	if (strlen(ws) >= sizeof(l->ws)) {
		xlist_end(l, "not_found", "no workspace that this token can reach has this id");
		return;
	}
	snprintf(l->ws, sizeof(l->ws), "%s", ws);
	if (http_request_query_pairs(r, names, values, 4, &n) != 0) {
		xlist_end(l, "invalid_request",
		          "the query string is malformed or has too many parameters");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(names[i], "status") == 0 && status_known(values[i])) {
			l->status = values[i];
		} else if (strcmp(names[i], "name") == 0 && values[i][0] != '\0' &&
		           strlen(values[i]) <= 64) {
			l->name = values[i];
		} else {
			xlist_end(
			    l, "invalid_request",
			    strcmp(names[i], "status") == 0
			        ? "status must be one of running, exited, signaled, timeout, "
			          "cancelled, transport_error, failed_to_start, abandoned, lost"
			        : "the filters are status and name (1-64 characters)");
			return;
		}
	}
	params[0] = l->token_hash;
	params[1] = l->ws;
	if (pgasync_query_static(api->db, list_authz_sql, 2, params, XOP_QUERY_MS, on_list_authz,
	                         l) == NULL)
		xlist_end(l, "audit_unavailable", "out of memory");
}
