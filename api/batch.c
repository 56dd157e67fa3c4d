/* api/batch.c: POST /v1/batches, one command fanned out to many workspaces. A batch resolves
 * its targets once, in the statement that authorizes it and writes its row, then runs each
 * target as an ordinary exec job (api/exec_job.h) with its own audit row, at most
 * max_concurrency at once, starting no new one once more than max_errors have failed. The
 * targets' frames, kept output and ends reach the batch through its exec_batch_ops, and the
 * batch tells its client: a stream of NDJSON frames, one buffered document, or (detached)
 * 202 once every target has started. Reading batches back is api/batches.c.
 *
 *   BATCH_AUTHZ    one statement: the token looked up, the targets resolved inside its
 *                  reach, and the batch row inserted when the token may fan out
 *   BATCH_RUNNING  targets run, at most max_concurrency at once; their frames are
 *                  streamed (or their output kept) as they come
 *   BATCH_FINAL    every started target ended: the batch row becomes final (a detached
 *                  batch's: launched), then the summary is sent
 *   BATCH_DONE     replied; freed after the loop turn
 *
 * Ownership: a batch owns itself from api_batch_post() until it is freed, holding the
 * broker open (api_hold). Its running targets are exec jobs on the API's list; each
 * reports its end exactly once (batch_target_ended or batch_target_detached) and the
 * batch forgets it then, so the batch ends only after every target it started has. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/authz.h"
#include "api/batch_request.h"
#include "api/batchview.h"
#include "api/exec_job.h"
#include "api/exec_reply.h"
#include "audit/writer.h"
#include "common/fsm.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "http/http.h"

#define BATCH_QUERY_MS 5000
/* What a buffered batch keeps of its targets' output in all. */
#define BATCH_KEPT_MAX (64u * 1024 * 1024)
/* Streaming backpressure, as a single exec's (api/exec_reply.c). */
#define STREAM_HIGH_WATER (64 * 1024)
#define STREAM_LOW_WATER  (16 * 1024)
/* A target waiting for its org's room to run looks again this often. */
#define ORG_WAIT_MS 50

enum batch_state {
	BATCH_AUTHZ,
	BATCH_RUNNING,
	BATCH_FINAL,
	BATCH_DONE,
};

static const char *const state_names[] = {"authz", "running", "final", "done"};
static const unsigned batch_legal[] = {
    [BATCH_AUTHZ] = FSM_BIT(BATCH_RUNNING) | FSM_BIT(BATCH_DONE),
    [BATCH_RUNNING] = FSM_BIT(BATCH_FINAL),
    [BATCH_FINAL] = FSM_BIT(BATCH_DONE),
    [BATCH_DONE] = 0,
};
static const struct fsm batch_fsm = {"batch", state_names, batch_legal, 4};

enum target_state {
	TARGET_PENDING,
	TARGET_RUNNING,  /* its exec job lives */
	TARGET_DETACHED, /* started detached: it runs on its host */
	TARGET_ENDED,
};

struct target {
	char ws_id[80];
	enum target_state state;
	struct exec_job *job; /* TARGET_RUNNING, once exec_job_start_target returned */
	char exec_id[AUDIT_EXEC_ID_LEN + 1]; /* "" when it has no row */
	bool ok, exited;
	int exit_code;
	char signal[32];
	long long duration_ms;
	char *error_code, *error_message; /* malloc'd, NULL when none */
	json_t *output;                   /* buffered: its output fields */
};

struct batch {
	struct api *api;
	struct http_request *http; /* NULL once replied or dropped */
	enum batch_state state;
	struct batch_request req;
	char batch_id[AUDIT_EXEC_ID_LEN + 1];
	char request_id[HTTP_REQUEST_ID_MAX + 1];
	char client[64];
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	char *reason;
	bool streaming, client_gone, cancelled, stopped, paused;
	struct target *t;
	size_t n, next, running, failed;
	int concurrency, max_errors;
	size_t kept;
	struct event *pump; /* starts targets: made active, or a timer while an org is full */
	struct evbuffer *chunk;
	struct pgasync_query *q;
	struct event *retry; /* the final row's write, again */
	int attempts;
	long retry_ms;
};

static void batch_set_state(struct batch *b, enum batch_state to)
{
	FSM_SET(&batch_fsm, b->state, to, b->request_id);
}

static void batch_free(evutil_socket_t fd, short what, void *arg)
{
	struct batch *b = arg;
	struct api *api = b->api;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < b->n; i++) {
		free(b->t[i].error_code);
		free(b->t[i].error_message);
		json_decref(b->t[i].output);
	}
	free(b->t);
	if (b->pump != NULL)
		event_free(b->pump);
	if (b->retry != NULL)
		event_free(b->retry);
	if (b->chunk != NULL)
		evbuffer_free(b->chunk);
	batch_request_free(&b->req);
	free(b->reason);
	free(b);
	api_release(api);
}

/* The end: the batch is reclaimed after this loop turn (it may be in its own callback). */
static void batch_done(struct batch *b)
{
	static const struct timeval now = {0, 0};

	batch_set_state(b, BATCH_DONE);
	if (b->http != NULL) {
		http_request_drop(b->http);
		b->http = NULL;
	}
	if (event_base_once(b->api->base, -1, EV_TIMEOUT, batch_free, b, &now) != 0)
		log_kv(LOG_ERROR, "cannot schedule a batch's release; it leaks", "request_id",
		       b->request_id, NULL); /* only out of memory */
}

/* A refusal before any target ran: the error, and the end. */
static void refuse(struct batch *b, const char *code, const char *message, const char *field)
{
	http_request_log(b->http)->error = code;
	http_reply_error(b->http, code, message, field);
	b->http = NULL;
	batch_done(b);
}

static bool can_send(const struct batch *b)
{
	return b->streaming && b->http != NULL && !b->client_gone && b->chunk != NULL;
}

static void pause_targets(struct batch *b, bool pause)
{
	b->paused = pause;
	for (size_t i = 0; i < b->next; i++)
		if (b->t[i].state == TARGET_RUNNING && b->t[i].job != NULL)
			exec_job_pause(b->t[i].job, pause);
}

static void free_line(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Sends line (malloc'd, taken over) as it is. */
static void send_line(struct batch *b, char *line, size_t len)
{
	if (!can_send(b) || evbuffer_add_reference(b->chunk, line, len, free_line, NULL) != 0) {
		free(line);
		return;
	}
	http_stream_write(b->http, b->chunk);
	if (!b->paused && http_stream_backlog(b->http) > STREAM_HIGH_WATER)
		pause_targets(b, true);
}

static void send_json(struct batch *b, json_t *o)
{
	char *line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL, *framed;
	size_t n;

	json_decref(o);
	if (line == NULL)
		return;
	n = strlen(line);
	framed = realloc(line, n + 2);
	if (framed == NULL) {
		free(line);
		return;
	}
	memcpy(framed + n, "\n", 2);
	send_line(b, framed, n + 1);
}

static void on_drained(struct http_request *r, void *arg)
{
	struct batch *b = arg;

	(void)r;
	if (b->paused) {
		pause_targets(b, false);
		event_active(b->pump, 0, 0); /* starts wait while the client is behind */
	}
}

static void batch_target_frame(struct batch *b, struct exec_job *j, char *line, size_t len)
{
	char head[200], *framed;
	int k;

	if (!can_send(b) || len < 2 || line[0] != '{') {
		free(line);
		return;
	}
	/* Ids need no escaping: workspace ids are [A-Za-z0-9._-], exec ids UUIDs. */
	k = snprintf(head, sizeof(head), "{\"workspace_id\":\"%s\",\"exec_id\":\"%s\"%s", j->ws_id,
	             j->exec_id, line[1] == '}' ? "" : ",");
	framed = malloc((size_t)k + len);
	if (framed != NULL) {
		memcpy(framed, head, (size_t)k);
		memcpy(framed + k, line + 1, len - 1);
		send_line(b, framed, (size_t)k + len - 1);
	}
	free(line);
}

static size_t batch_target_keep(struct batch *b, size_t want)
{
	size_t room = BATCH_KEPT_MAX - b->kept, n = want < room ? want : room;

	b->kept += n;
	return n;
}

static void pump(struct batch *b);

static void set_error(struct target *t, const char *code, const char *message)
{
	t->error_code = strdup(code);
	t->error_message = strdup(message != NULL ? message : "");
}

/* A target that did not succeed counts against the error budget. */
static void count_failure(struct batch *b)
{
	if (++b->failed > (size_t)b->max_errors && !b->stopped) {
		b->stopped = true;
		log_kv(LOG_INFO, "batch error budget spent: no new target starts", "request_id",
		       b->request_id, "batch_id", b->batch_id, NULL);
	}
}

/* The error frame of a target that ended without running. */
static void send_error_frame(struct batch *b, const struct target *t, const char *code,
                             const char *message)
{
	send_json(b, json_pack("{s:s, s:o, s:{s:s, s:s}}", "workspace_id", t->ws_id, "exec_id",
	                       t->exec_id[0] != '\0' ? json_string(t->exec_id) : json_null(),
	                       "error", "code", code, "message", message != NULL ? message : ""));
}

static void batch_target_ended(struct batch *b, struct exec_job *j, const char *code,
                               const char *message)
{
	struct target *t = &b->t[j->batch_index];
	bool ran = j->started && j->fail_code == NULL;

	t->state = TARGET_ENDED;
	t->job = NULL;
	b->running--;
	if (j->has_row)
		snprintf(t->exec_id, sizeof(t->exec_id), "%s", j->exec_id);
	t->duration_ms = j->duration_ms;
	if (ran && j->outcome.kind == POOL_EXITED) {
		t->exited = true;
		t->exit_code = j->outcome.exit_code;
	} else if (ran && j->outcome.kind == POOL_SIGNALED) {
		snprintf(t->signal, sizeof(t->signal), "%s", j->outcome.signal);
	}
	t->ok = code == NULL && t->exited && t->exit_code == 0;
	if (code != NULL)
		set_error(t, code, message);
	if (!b->streaming && !j->req.detach && ran) {
		t->output = json_object();
		if (t->output != NULL)
			exec_reply_output_fields(j, t->output);
	}
	/* A target that ran streamed its own last frame; any other's end is told here. */
	if (code != NULL && !ran)
		send_error_frame(b, t, code, message);
	if (!t->ok)
		count_failure(b);
	event_active(b->pump, 0, 0);
}

static void batch_target_detached(struct batch *b, struct exec_job *j)
{
	struct target *t = &b->t[j->batch_index];

	t->state = TARGET_DETACHED;
	t->job = NULL;
	b->running--;
	snprintf(t->exec_id, sizeof(t->exec_id), "%s", j->exec_id);
	event_active(b->pump, 0, 0);
}

/* The results as the summary tells them. */
static struct batch_result *results(const struct batch *b)
{
	struct batch_result *r = calloc(b->n > 0 ? b->n : 1, sizeof(*r));

	for (size_t i = 0; r != NULL && i < b->n; i++) {
		const struct target *t = &b->t[i];

		r[i].workspace_id = t->ws_id;
		r[i].exec_id = t->exec_id[0] != '\0' ? t->exec_id : NULL;
		r[i].duration_ms = t->state == TARGET_ENDED ? t->duration_ms : -1;
		r[i].exited = t->exited;
		r[i].exit_code = t->exit_code;
		r[i].signal = t->signal[0] != '\0' ? t->signal : NULL;
		r[i].error_code = t->error_code;
		r[i].error_message = t->error_message;
		r[i].output = t->output;
		r[i].status = t->state == TARGET_PENDING    ? "not_started"
		              : t->state == TARGET_DETACHED ? "running"
		              : t->ok                       ? "succeeded"
		                                            : "failed";
	}
	return r;
}

static void reply(struct batch *b, const char *status, struct batch_result *r)
{
	json_t *o = batchview_summary(b->batch_id, status, r, b->n);
	char location[64];

	if (b->http == NULL || b->client_gone) {
		json_decref(o);
		return;
	}
	if (b->streaming) {
		send_json(b, o);
		http_stream_end(b->http);
	} else if (b->req.cmd.detach) {
		snprintf(location, sizeof(location), "/v1/batches/%s", b->batch_id);
		http_reply_header(b->http, "Location", location);
		http_reply_json(b->http, 202, o);
	} else {
		http_reply_json(b->http, 200, o);
	}
	b->http = NULL;
}

static void write_final(struct batch *b);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	write_final(arg);
}

static void on_final(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct batch *b = arg;
	struct batch_result *r;
	const char *status;

	b->q = NULL;
	if (error != NULL && pgasync_sqlstate_transient(sqlstate) &&
	    !api_completions_given_up(b->api)) {
		/* Retried until it lands, as an exec's completion is: the summary waits. */
		struct timeval tv = {b->retry_ms / 1000, (b->retry_ms % 1000) * 1000};

		if (b->attempts == 1)
			log_kv(LOG_WARN,
			       "could not record a batch's outcome; retrying until it lands",
			       "request_id", b->request_id, "batch_id", b->batch_id, "error", error,
			       NULL);
		b->retry_ms = b->retry_ms * 2 > 5000 ? 5000 : b->retry_ms * 2;
		if (b->retry == NULL)
			b->retry = evtimer_new(b->api->base, on_retry, b);
		if (b->retry != NULL && evtimer_add(b->retry, &tv) == 0)
			return;
	}
	if (error != NULL)
		log_kv(LOG_ERROR, "gave up recording a batch's outcome; its row stays running",
		       "request_id", b->request_id, "batch_id", b->batch_id, "error", error, NULL);
	else if (atoi(PQcmdTuples((PGresult *)res)) == 0)
		log_kv(LOG_WARN,
		       "the batch's row was no longer running: another broker marked it abandoned",
		       "request_id", b->request_id, "batch_id", b->batch_id, NULL);
	r = results(b);
	status = r != NULL ? batchview_status(r, b->n, b->cancelled) : "running";
	if (b->http != NULL)
		http_request_log(b->http)->outcome = status;
	if (r != NULL)
		reply(b, status, r);
	free(r);
	batch_done(b);
}

/* Every target that was to start has ended (or, detached, started): the row, then the
 * reply. */
static void finish(struct batch *b)
{
	batch_set_state(b, BATCH_FINAL);
	b->retry_ms = 100;
	write_final(b);
}

static void write_final(struct batch *b)
{
	struct batch_result *r = results(b);
	const char *params[BATCHVIEW_OUTCOME_NPARAMS];
	struct batch_counts c;
	char nums[3][24];

	b->attempts++;
	if (r == NULL) {
		on_final(NULL, "out of memory", "", b);
		return;
	}
	c = batchview_count(r, b->n);
	batchview_outcome_params(b->batch_id, batchview_status(r, b->n, b->cancelled), &c, nums,
	                         params);
	free(r);
	b->q = pgasync_query_static(b->api->db, batchview_outcome_sql, BATCHVIEW_OUTCOME_NPARAMS,
	                            params, BATCH_QUERY_MS, on_final, b);
	if (b->q == NULL)
		on_final(NULL, "out of memory", "", b);
}

static const struct exec_batch_ops target_ops = {
    .frame = batch_target_frame,
    .keep = batch_target_keep,
    .ended = batch_target_ended,
    .detached = batch_target_detached,
};

static void start_target(struct batch *b, size_t i)
{
	struct target *t = &b->t[i];
	struct exec_target spec = {
	    .batch = b,
	    .ops = &target_ops,
	    .index = (unsigned)i,
	    .batch_id = b->batch_id,
	    .ws_id = t->ws_id,
	    .request_id = b->request_id,
	    .client = b->client,
	    .token_hash = b->token_hash,
	    .actor = b->actor,
	    .reason = b->reason,
	    .req = &b->req.cmd,
	    .streaming = b->streaming,
	};
	struct exec_job *j;

	t->state = TARGET_RUNNING;
	b->running++;
	j = exec_job_start_target(b->api, &spec);
	if (j == NULL) {
		t->state = TARGET_ENDED;
		b->running--;
		set_error(t, "audit_unavailable", "out of memory; the command was not run");
		send_error_frame(b, t, t->error_code, t->error_message);
		count_failure(b);
		return;
	}
	if (t->state == TARGET_RUNNING)
		t->job = j; /* it has not ended already */
}

/* Whether the org of a label or org-wide batch has room for one more exec on this broker:
 * its execs counted, and this batch's targets still being authorized (counted once their
 * row is in). A target of a list of workspaces learns its org only from its own lookup: it
 * is let go and, when the org is full, refused as a single exec would be. */
static bool org_has_room(const struct batch *b)
{
	unsigned admitting = 0;

	if (b->req.kind == BATCH_TARGET_WORKSPACES)
		return true;
	for (size_t i = 0; i < b->next; i++) {
		const struct exec_job *j = b->t[i].job;

		admitting += b->t[i].state == TARGET_RUNNING && j != NULL && !j->org_counted &&
		             (j->state == JOB_AUTHZ);
	}
	return orgs_running(&b->api->orgs, b->req.org) + admitting <
	       (unsigned)b->api->cfg->org_max_concurrent_execs;
}

static void pump(struct batch *b)
{
	if (b->state != BATCH_RUNNING)
		return;
	while (!b->stopped && !b->cancelled && !b->paused && b->next < b->n &&
	       b->running < (size_t)b->concurrency && b->api->phase == API_SERVING) {
		if (!org_has_room(b)) {
			struct timeval tv = {0, ORG_WAIT_MS * 1000};

			evtimer_add(b->pump, &tv);
			break;
		}
		start_target(b, b->next++);
	}
	if (b->api->phase != API_SERVING)
		b->stopped = true; /* a draining broker starts nothing new */
	if (b->running > 0)
		return;
	if (b->next == b->n || b->stopped || b->cancelled)
		finish(b);
	else if (b->paused)
		return; /* resumed by on_drained */
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

/* The client went away: an attached batch is cancelled (running targets are killed, the
 * rest never start); a detached batch's starts go on. */
static void on_client_gone(struct http_request *r, void *arg)
{
	struct batch *b = arg;

	(void)r;
	if (b->client_gone)
		return;
	b->client_gone = true;
	if (b->req.cmd.detach || b->state != BATCH_RUNNING)
		return;
	b->cancelled = true;
	log_kv(LOG_INFO, "batch client went away: the batch is cancelled", "request_id",
	       b->request_id, "batch_id", b->batch_id, NULL);
	for (size_t i = 0; i < b->next; i++)
		if (b->t[i].state == TARGET_RUNNING && b->t[i].job != NULL)
			exec_job_cancel(b->t[i].job);
	event_active(b->pump, 0, 0);
}

/* $1 token hash, $2 mode, $3 org, $4 label keys, $5 label values (JSON), $6 workspaces
 * (JSON), $7 accepting, $8 reason; the row: $9 batch_id, $10 request_id, $11 actor,
 * $12 target, $13 argv, $14 env names (JSON), $15 cwd, $16 stdin_bytes, $17 timeout_s,
 * $18 max_concurrency, $19 max_errors, $20 detached, $21 client, $22 instance, $23 and
 * $24 whether the budgets are percentages.
 * Columns: kind, expired, revoked, scopes, targets (JSON), their number, inserted. */
static const char authz_sql[] =
    "WITH t AS ("
    " SELECT kind, org_id, coalesce(expires_at <= now(), false) AS expired,"
    "  revoked_at IS NOT NULL AS revoked, scopes"
    " FROM api_tokens WHERE secret_sha256 = decode($1, 'hex')), "
    "ok AS ("
    " SELECT * FROM t WHERE NOT expired AND NOT revoked AND 'batch' = ANY (scopes)"
    "  AND (kind <> 'admin' OR $8::text IS NOT NULL)), "
    /* Inside the token's reach: an org token sees its org alone. */
    "sel AS ("
    " SELECT w.id FROM workspaces w, ok"
    " WHERE $2 <> 'workspaces' AND w.org_id = $3"
    "  AND (ok.kind = 'admin' OR w.org_id = ok.org_id)"
    "  AND ($2 = 'all' OR NOT EXISTS ("
    "   SELECT 1 FROM json_array_elements_text($4::json) WITH ORDINALITY AS k(key, n)"
    "   JOIN json_array_elements_text($5::json) WITH ORDINALITY AS v(value, n) USING (n)"
    "   WHERE NOT EXISTS (SELECT 1 FROM workspace_labels l"
    "    WHERE l.workspace_id = w.id AND l.key = k.key AND l.value = v.value)))"
    " ORDER BY w.id LIMIT "
    "1001"
    "), "
    "tg AS ("
    " SELECT CASE WHEN $2 = 'workspaces'"
    "  THEN ARRAY(SELECT json_array_elements_text($6::json))"
    "  ELSE ARRAY(SELECT id FROM sel ORDER BY id) END AS ids), "
    "i AS ("
    " INSERT INTO batches (batch_id, request_id, actor, actor_kind, org_id, break_glass_reason,"
    "  target, targets, argv, env_keys, cwd, stdin_bytes, timeout_s, max_concurrency,"
    "  max_errors, detached, client_addr, broker_instance)"
    " SELECT $9::uuid, $10, $11, ok.kind, ok.org_id,"
    "  CASE WHEN ok.kind = 'admin' THEN $8 END, $12::jsonb, tg.ids,"
    "  ARRAY(SELECT json_array_elements_text($13::json)),"
    "  ARRAY(SELECT json_array_elements_text($14::json)), $15, $16::bigint, $17::integer,"
    /* the budgets as numbers of these targets (api/batch_request.h's rounding) */
    "  CASE WHEN $23::boolean"
    "   THEN greatest(1, ceil(cardinality(tg.ids) * $18::numeric / 100))::integer"
    "   ELSE $18::integer END,"
    "  CASE WHEN $24::boolean THEN floor(cardinality(tg.ids) * $19::numeric / 100)::integer"
    "   ELSE $19::integer END,"
    "  $20::boolean, $21::inet, $22"
    " FROM ok, tg WHERE $7::boolean AND cardinality(tg.ids) <= "
    "1000"
    " RETURNING 1) "
    "SELECT t.kind, t.expired, t.revoked, t.scopes, array_to_json(tg.ids),"
    " cardinality(tg.ids), EXISTS (SELECT 1 FROM i) FROM t, tg";

static const char *const mode_names[] = {
    [BATCH_TARGET_LABELS] = "labels",
    [BATCH_TARGET_ALL] = "all",
    [BATCH_TARGET_WORKSPACES] = "workspaces",
};

/* The first frame of a streamed batch. */
static void send_first(struct batch *b)
{
	json_t *ids = json_array();

	http_stream_start(b->http, "application/x-ndjson");
	b->chunk = evbuffer_new();
	http_stream_on_drained(b->http, STREAM_LOW_WATER, on_drained, b);
	for (size_t i = 0; i < b->n; i++)
		json_array_append_new(ids, json_string(b->t[i].ws_id));
	send_json(b, json_pack("{s:s, s:o}", "batch_id", b->batch_id, "targets", ids));
}

static void on_authz(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct batch *b = arg;
	unsigned scopes;
	json_t *ids;
	size_t i;
	json_t *id;
	char msg[200];

	(void)sqlstate;
	b->q = NULL;
	if (error != NULL) {
		log_kv(LOG_ERROR, "could not authorize or record a batch; nothing ran",
		       "request_id", b->request_id, "error", error, NULL);
		refuse(b, "audit_unavailable",
		       "the audit log cannot be written (database unreachable); nothing was run",
		       NULL);
		return;
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), "t") == 0 ||
	    strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		refuse(b, "unauthorized",
		       PQntuples(res) == 1 ? "the token has expired or was revoked"
		                           : "the token is not known to this broker",
		       NULL);
		return;
	}
	http_request_log(b->http)->actor = b->actor;
	scopes = scopes_from_pg_array(PQgetvalue(res, 0, 3));
	if (!(scopes & SCOPE_BATCH)) {
		authz_missing_scope_message(SCOPE_BATCH, msg, sizeof(msg));
		refuse(b, "missing_scope", msg, NULL);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "admin") == 0 && b->reason == NULL) {
		refuse(b, "break_glass_reason_required", AUTHZ_REASON_REQUIRED_MESSAGE, NULL);
		return;
	}
	if (atoi(PQgetvalue(res, 0, 5)) > BATCH_MAX_TARGETS) {
		snprintf(msg, sizeof(msg),
		         "the target selects more than %d workspaces, the most a batch may have; "
		         "narrow it with more labels",
		         BATCH_MAX_TARGETS);
		refuse(b, "invalid_request", msg, "target");
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 6), "t") != 0) {
		refuse(b, "shutting_down", "the broker is shutting down; retry later", NULL);
		return;
	}
	ids = json_loads(PQgetvalue(res, 0, 4), 0, NULL);
	b->t = calloc(json_array_size(ids) > 0 ? json_array_size(ids) : 1, sizeof(*b->t));
	if (ids == NULL || b->t == NULL) {
		/* The row is in, running: nothing ran, and the sweep of this broker's rows at its
		 * next start (or another broker's, once it is gone) ends it abandoned. */
		json_decref(ids);
		log_kv(LOG_ERROR, "out of memory starting a batch; nothing ran", "request_id",
		       b->request_id, "batch_id", b->batch_id, NULL);
		refuse(b, "audit_unavailable", "out of memory; nothing was run", NULL);
		return;
	}
	b->n = json_array_size(ids);
	json_array_foreach(ids, i, id)
	{
		snprintf(b->t[i].ws_id, sizeof(b->t[i].ws_id), "%s", json_string_value(id));
	}
	json_decref(ids);
	b->concurrency = batch_budget_concurrency(&b->req.concurrency, b->n);
	b->max_errors = batch_budget_errors(&b->req.errors, b->n);
	log_kv(LOG_INFO, "batch started", "request_id", b->request_id, "batch_id", b->batch_id,
	       "actor", b->actor, NULL);
	batch_set_state(b, BATCH_RUNNING);
	if (b->client_gone && !b->req.cmd.detach)
		b->cancelled = true; /* it left while the batch was being authorized */
	if (b->streaming && !b->client_gone)
		send_first(b);
	pump(b);
}

void api_batch_post(struct http_request *r, void *arg)
{
	struct api *a = arg;
	const char *ctype = http_request_header(r, "Content-Type");
	const char *reason = http_request_header(r, "X-Break-Glass-Reason");
	struct request_limits lim;
	struct request_error rerr;
	const char *why, *body, *params[24];
	char *argv = NULL, *env = NULL, nums[4][16];
	struct batch *b;
	size_t len;
	json_t *arr;

	if (a->phase != API_SERVING) {
		http_reply_error(r, "shutting_down",
		                 "the broker is shutting down; retry on another instance or after "
		                 "it restarts",
		                 NULL);
		return;
	}
	exec_request_limits(a, &lim);
	b = calloc(1, sizeof(*b));
	if (b != NULL)
		b->pump = event_new(a->base, -1, 0, on_pump, b);
	if (b == NULL || b->pump == NULL) {
		free(b);
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	b->api = a;
	b->http = r;
	api_hold(a); /* from here every path ends in batch_done() */
	snprintf(b->request_id, sizeof(b->request_id), "%s", http_request_id(r));
	snprintf(b->client, sizeof(b->client), "%s", http_request_client(r));
	b->streaming = !exec_wants_buffered(http_request_header(r, "Accept"));
	if (ctype == NULL || !exec_media_type_is(ctype, "application/json")) {
		refuse(b, "unsupported_media_type",
		       "the body must be JSON, sent with Content-Type: application/json", NULL);
		return;
	}
	why = authz_bearer(http_request_header(r, "Authorization"), b->token_hash, b->actor);
	if (why != NULL) {
		refuse(b, "unauthorized", why, NULL);
		return;
	}
	if (reason != NULL) {
		if (!authz_reason_valid(reason)) {
			refuse(b, "invalid_request",
			       "X-Break-Glass-Reason must be 1-500 printable characters",
			       "X-Break-Glass-Reason");
			return;
		}
		b->reason = strdup(reason);
	}
	body = http_request_body(r, &len);
	if (batch_request_parse(body, len, &lim, &b->req, &rerr) != 0) {
		refuse(b, rerr.code, rerr.message, rerr.field[0] != '\0' ? rerr.field : NULL);
		return;
	}
	if (b->req.cmd.detach)
		b->streaming = false; /* 202 once every target started */
	http_request_on_close(r, on_client_gone, b);
	audit_new_exec_id(b->batch_id);

	arr = json_array();
	for (size_t i = 0; i < b->req.cmd.argc; i++)
		json_array_append_new(arr,
		                      json_stringn(b->req.cmd.argv[i].p, b->req.cmd.argv[i].len));
	argv = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	arr = json_array();
	for (size_t i = 0; i < b->req.cmd.nenv; i++)
		json_array_append_new(
		    arr, json_stringn(b->req.cmd.env_names[i].p, b->req.cmd.env_names[i].len));
	env = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	snprintf(nums[0], sizeof(nums[0]), "%zu", b->req.cmd.stdin_len);
	snprintf(nums[1], sizeof(nums[1]), "%d", b->req.cmd.timeout_s);
	snprintf(nums[2], sizeof(nums[2]), "%d", b->req.concurrency.value);
	snprintf(nums[3], sizeof(nums[3]), "%d", b->req.errors.value);
	params[0] = b->token_hash;
	params[1] = mode_names[b->req.kind];
	params[2] = b->req.org;
	params[3] = b->req.label_keys != NULL ? b->req.label_keys : "[]";
	params[4] = b->req.label_values != NULL ? b->req.label_values : "[]";
	params[5] = b->req.workspaces != NULL ? b->req.workspaces : "[]";
	params[6] = a->phase == API_SERVING ? "true" : "false";
	params[7] = b->reason;
	params[8] = b->batch_id;
	params[9] = b->request_id;
	params[10] = b->actor;
	params[11] = b->req.target_json;
	params[12] = argv;
	params[13] = env;
	params[14] = b->req.cmd.cwd;
	params[15] = nums[0];
	params[16] = nums[1];
	params[17] = nums[2];
	params[18] = nums[3];
	params[19] = b->req.cmd.detach ? "true" : "false";
	params[20] = b->client[0] != '\0' ? b->client : NULL;
	params[21] = a->instance;
	params[22] = b->req.concurrency.percent ? "true" : "false";
	params[23] = b->req.errors.percent ? "true" : "false";
	if (argv != NULL && env != NULL)
		b->q =
		    pgasync_query_static(a->db, authz_sql, 24, params, BATCH_QUERY_MS, on_authz, b);
	free(argv);
	free(env);
	if (b->q == NULL)
		refuse(b, "audit_unavailable", "out of memory", NULL);
}
