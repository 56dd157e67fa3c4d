/* broker/exec.c: the life of one POST /v1/workspaces/{id}/exec, as a state machine on the
 * server's loop:
 *
 *   JOB_AUTHZ      one query: the token (by hash) and the workspace
 *   JOB_DENYING    writing the 'denied' row of a refusal, then the refusal
 *   JOB_BEGIN      the 'running' row is inserted while the pool leases a session; the
 *                  command waits for both (no row, no command)
 *   JOB_STARTING   the exec request is on its way to the host
 *   JOB_RUNNING    the command runs; its output streams to the client
 *   JOB_COMPLETING the outcome is known; the row is completed (retried while the database
 *                  is away), then the last frame or the reply is sent
 *   JOB_DONE       replied; reclaimed after the loop turn (server_schedule_reap)
 *
 * Ownership: a job is owned by the server's job list from exec_handle() until exec_reap().
 * While it lives it may hold one pgasync query, one pool acquire or lease, one pool exec,
 * and the evhttp request; each is given back (cancelled, released, replied to) before the
 * job reaches JOB_DONE, except the pool exec, released when the job is reclaimed. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "audit/writer.h"
#include "broker/apierr.h"
#include "broker/authz.h"
#include "broker/frame.h"
#include "broker/ids.h"
#include "broker/request.h"
#include "broker/server.h"
#include "broker/token.h"
#include "common/err.h"
#include "common/log.h"
#include "db/pgasync.h"
#include "pool/pool.h"

#define QUERY_DEADLINE_MS 5000
/* Completing a row is retried this long while the database is unreachable. */
#define END_RETRY_TOTAL_MS 30000
#define END_RETRY_FIRST_MS 100
#define END_RETRY_MAX_MS   2000
/* Streaming backpressure: above HIGH bytes waiting for the client, the exec's reading
 * pauses; it resumes once they are down to LOW. */
#define STREAM_HIGH_WATER (512 * 1024)
#define STREAM_LOW_WATER  (64 * 1024)

enum job_state {
	JOB_AUTHZ,
	JOB_DENYING,
	JOB_BEGIN,
	JOB_STARTING,
	JOB_RUNNING,
	JOB_COMPLETING,
	JOB_DONE,
};

static const char *const state_names[] = {"authz",   "denying",    "begin", "starting",
                                          "running", "completing", "done"};

struct denial {
	const char *code;
	char message[200];
};

struct exec_job {
	struct server *srv;
	struct exec_job *next; /* the server's list */
	enum job_state state;
	struct http_ctx http;
	struct evhttp_connection *evcon; /* NULL once the client is gone */
	struct event *hangup;            /* watches the client's socket for EOF */
	bool streaming, client_gone, org_counted;

	char ws_id[80];
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	char *reason; /* X-Break-Glass-Reason, or NULL */
	struct exec_request req;
	struct timeval deadline; /* arrival + timeout_s, CLOCK_MONOTONIC */

	/* From the lookup. */
	char kind[16], org[80], host[256], user[40], fp[64];
	int port;

	char exec_id[AUDIT_EXEC_ID_LEN + 1];
	struct pgasync_query *q;
	struct pool_acquire *acq;
	struct pool_lease *lease;
	struct pool_exec *exec;
	bool audit_done, audit_ok, audit_maybe; /* maybe: the insert's fate is unknown */
	bool lease_done;
	enum pool_fail_reason lease_fail;

	bool started, finished;
	struct pool_outcome outcome;
	const char *fail_code;  /* API code of a failure before the command started */
	const char *error_code; /* the row's error_code */
	struct denial denial;
	long long duration_ms;

	/* Output, indexed by enum pool_stream (1 stdout, 2 stderr). */
	uint64_t sent[3];
	bool truncated[3];
	struct utf8_carry carry[3];
	struct evbuffer *kept[3]; /* buffered mode: the output up to the cap */
	bool paused;
	struct evbuffer *chunk; /* streaming: the next HTTP chunk, reused */

	struct event *retry;
	int end_attempts;
	long end_delay_ms;
	struct timespec end_t0;
};

static const char *const stream_names[] = {"", "stdout", "stderr"};

static void job_set_state(struct exec_job *j, enum job_state to)
{
	bool ok;

	switch (to) {
	case JOB_DENYING:
	case JOB_BEGIN:
		ok = j->state == JOB_AUTHZ;
		break;
	case JOB_STARTING:
		ok = j->state == JOB_BEGIN;
		break;
	case JOB_RUNNING:
		ok = j->state == JOB_STARTING;
		break;
	case JOB_COMPLETING:
		ok = j->state == JOB_BEGIN || j->state == JOB_STARTING || j->state == JOB_RUNNING;
		break;
	case JOB_DONE:
		ok = j->state != JOB_DONE;
		break;
	case JOB_AUTHZ:
	default:
		ok = false;
	}
	if (!ok) {
		log_kv(LOG_ERROR, "illegal exec state change", "from", state_names[j->state], "to",
		       state_names[to], NULL);
		abort();
	}
	if (log_enabled(LOG_DEBUG))
		log_kv(LOG_DEBUG, "exec state", "request_id", j->http.request_id, "from",
		       state_names[j->state], "to", state_names[to], NULL);
	j->state = to;
}

/* ---- the client's connection ---- */

static void stop_watching(struct exec_job *j)
{
	if (j->hangup != NULL) {
		event_free(j->hangup);
		j->hangup = NULL;
	}
}

static void client_gone(struct exec_job *j)
{
	if (j->client_gone)
		return;
	j->client_gone = true;
	log_kv(LOG_INFO, "client went away", "request_id", j->http.request_id, "state",
	       state_names[j->state], NULL);
	stop_watching(j);
	if ((j->state == JOB_STARTING || j->state == JOB_RUNNING) && j->exec != NULL)
		pool_exec_cancel(j->exec); /* finished() follows with POOL_CANCELLED */
}

/* evhttp closes the connection (EOF or a write error while replying): the request stays
 * ours, detached; replying to it later frees it. */
static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct exec_job *j = arg;

	(void)evcon;
	j->evcon = NULL;
	client_gone(j);
}

/* Until a reply is under way evhttp does not read the socket, so a client that hangs up
 * while its command runs would go unnoticed: watch for EOF here. */
static void on_hangup(evutil_socket_t fd, short what, void *arg)
{
	struct exec_job *j = arg;
	char c;
	ssize_t n;

	(void)what;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		stop_watching(j); /* a pipelined request: not ours to read */
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	client_gone(j);
}

static void watch_client(struct exec_job *j)
{
	struct bufferevent *bev;
	evutil_socket_t fd;

	if (j->evcon == NULL)
		return;
	evhttp_connection_set_closecb(j->evcon, on_conn_closed, j);
	bev = evhttp_connection_get_bufferevent(j->evcon);
	fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	if (fd < 0)
		return;
	j->hangup = event_new(j->srv->base, fd, EV_READ | EV_PERSIST, on_hangup, j);
	if (j->hangup != NULL)
		event_add(j->hangup, NULL);
}

/* Before the request is given back to evhttp: nothing of the job may be called from the
 * connection afterwards. */
static void unwatch_client(struct exec_job *j)
{
	stop_watching(j);
	if (j->evcon != NULL)
		evhttp_connection_set_closecb(j->evcon, NULL, NULL);
}

/* ---- the end of a job ---- */

static void job_done(struct exec_job *j)
{
	job_set_state(j, JOB_DONE);
	if (j->org_counted) {
		server_org_leave(j->srv, j->org);
		j->org_counted = false;
	}
	server_schedule_reap(j->srv);
}

static void reply_error(struct exec_job *j, const char *code, const char *message,
                        const char *field)
{
	unwatch_client(j);
	server_reply_error(j->srv, &j->http, code, message, field);
}

static void job_free(struct exec_job *j)
{
	if (j->q != NULL)
		pgasync_cancel(j->q);
	if (j->acq != NULL)
		pool_acquire_cancel(j->acq);
	if (j->lease != NULL)
		pool_lease_release(j->lease);
	if (j->exec != NULL)
		pool_exec_release(j->exec);
	if (j->retry != NULL)
		event_free(j->retry);
	stop_watching(j);
	for (int i = 1; i <= 2; i++)
		if (j->kept[i] != NULL)
			evbuffer_free(j->kept[i]);
	if (j->chunk != NULL)
		evbuffer_free(j->chunk);
	request_free(&j->req);
	free(j->reason);
	free(j);
}

void exec_reap(struct server *s)
{
	struct exec_job **pp = &s->jobs, *j;

	while ((j = *pp) != NULL) {
		if (j->state != JOB_DONE) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		s->njobs--;
		job_free(j);
	}
}

/* ---- denied requests ---- */

static void fill_audit(struct exec_job *j, struct audit_begin *b, const char *org)
{
	memset(b, 0, sizeof(*b));
	memcpy(b->exec_id, j->exec_id, sizeof(b->exec_id));
	b->request_id = j->http.request_id;
	b->workspace_id = j->ws_id;
	b->org_id = org;
	b->actor = j->actor;
	b->actor_kind = j->kind;
	b->break_glass_reason = strcmp(j->kind, "admin") == 0 ? j->reason : NULL;
	b->argv = j->req.argv;
	b->argc = j->req.argc;
	b->env_names = j->req.env_names;
	b->nenv = j->req.nenv;
	b->cwd = j->req.cwd;
	b->stdin_bytes = j->req.stdin_len;
	b->client_addr = j->http.client[0] != '\0' ? j->http.client : NULL;
	b->timeout_s = j->req.timeout_s;
	b->broker_instance = j->srv->instance;
}

static void deny_reply(struct exec_job *j, const struct denial *d)
{
	if (strcmp(d->code, "too_many_requests") == 0)
		evhttp_add_header(evhttp_request_get_output_headers(j->http.req), "Retry-After",
		                  "1");
	reply_error(j, d->code, d->message, NULL);
	j->srv->metrics.execs_denied++;
	job_done(j);
}

static void on_denied_row(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;
	struct denial *d = &j->denial;

	(void)res;
	(void)sqlstate;
	j->q = NULL;
	if (error == NULL)
		j->http.exec_id = j->exec_id; /* X-Exec-Id names a row that exists */
	if (error != NULL) {
		j->srv->metrics.audit_write_failures++;
		log_kv(LOG_ERROR, "could not write a denied audit row", "request_id",
		       j->http.request_id, "error", error, NULL);
	}
	deny_reply(j, d);
}

/* A refusal of an authenticated request: one 'denied' row, then the reply. The row's org
 * is the workspace's when the token reaches it, else the token's own: a probe of another
 * tenant's workspace is recorded in the prober's org, never in the victim's. */
static void deny(struct exec_job *j, const char *code, const char *org, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void deny(struct exec_job *j, const char *code, const char *org, const char *fmt, ...)
{
	struct audit_begin b;
	const char *params[AUDIT_DENIED_NPARAMS];
	char *store = NULL;
	va_list ap;

	j->denial.code = code;
	va_start(ap, fmt);
	vsnprintf(j->denial.message, sizeof(j->denial.message), fmt, ap);
	va_end(ap);
	job_set_state(j, JOB_DENYING);
	j->http.error = code;
	fill_audit(j, &b, org);
	b.error_code = code;
	if (audit_begin_params(&b, params, &store) == 0)
		j->q = pgasync_query(j->srv->db, audit_denied_sql, AUDIT_DENIED_NPARAMS, params,
		                     QUERY_DEADLINE_MS, on_denied_row, j);
	free(store);
	if (j->q == NULL) {
		j->srv->metrics.audit_write_failures++;
		deny_reply(j, &j->denial);
	}
}

/* ---- completion ---- */

static void send_final(struct exec_job *j);
static void complete_row(struct exec_job *j);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	complete_row(arg);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void on_row_completed(const PGresult *res, const char *error, const char *sqlstate,
                             void *arg)
{
	struct exec_job *j = arg;
	struct timeval tv;
	char attempts[16];

	(void)res;
	j->q = NULL;
	if (error == NULL) {
		send_final(j);
		return;
	}
	j->srv->metrics.audit_write_failures++;
	snprintf(attempts, sizeof(attempts), "%d", j->end_attempts);
	/* Class 08 (connection) failures are worth retrying; anything else is a bug or a
	 * refusal by the database that retrying will not change. */
	if (strncmp(sqlstate, "08", 2) == 0 && ms_since(&j->end_t0) < END_RETRY_TOTAL_MS) {
		log_kv(LOG_WARN, "could not complete the audit row; retrying", "request_id",
		       j->http.request_id, "exec_id", j->exec_id, "attempt", attempts, "error",
		       error, NULL);
		tv.tv_sec = j->end_delay_ms / 1000;
		tv.tv_usec = (j->end_delay_ms % 1000) * 1000;
		j->end_delay_ms =
		    j->end_delay_ms * 2 > END_RETRY_MAX_MS ? END_RETRY_MAX_MS : j->end_delay_ms * 2;
		if (j->retry == NULL)
			j->retry = evtimer_new(j->srv->base, on_retry, j);
		if (j->retry != NULL && evtimer_add(j->retry, &tv) == 0)
			return;
	}
	log_kv(LOG_ERROR,
	       "gave up completing the audit row: it stays 'running' until this broker "
	       "restarts and marks it abandoned",
	       "request_id", j->http.request_id, "exec_id", j->exec_id, "attempts", attempts,
	       "error", error, NULL);
	send_final(j);
}

/* The audit log's status of a pool outcome. The statuses are the audit log's own words;
 * they are the pool's outcome names, by design, but spelled here so that renaming an outcome
 * in the pool's logs cannot change what rows say. */
static const char *outcome_status(enum pool_outcome_kind k)
{
	switch (k) {
	case POOL_EXITED:
		return "exited";
	case POOL_SIGNALED:
		return "signaled";
	case POOL_TIMEOUT:
		return "timeout";
	case POOL_CANCELLED:
		return "cancelled";
	case POOL_TRANSPORT_ERROR:
		return "transport_error";
	case POOL_FAILED_TO_START:
		return "failed_to_start";
	case POOL_SHUTDOWN:
		return "shutdown";
	default:
		abort();
	}
}

static const char *row_status(const struct exec_job *j)
{
	return outcome_status(j->outcome.kind);
}

static void complete_row(struct exec_job *j)
{
	struct audit_end e = {
	    .exec_id = j->exec_id,
	    .status = row_status(j),
	    .error_code = j->error_code,
	    .exit_code = j->outcome.exit_code,
	    .exit_signal = j->outcome.signal,
	    .duration_ms = j->duration_ms,
	    .stdout_bytes = j->outcome.stdout_bytes,
	    .stderr_bytes = j->outcome.stderr_bytes,
	    .stdout_truncated = j->truncated[POOL_STDOUT],
	    .stderr_truncated = j->truncated[POOL_STDERR],
	};
	const char *params[AUDIT_END_NPARAMS];
	char *store = NULL;

	j->end_attempts++;
	if (audit_end_params(&e, params, &store) == 0)
		j->q = pgasync_query(j->srv->db, audit_end_sql, AUDIT_END_NPARAMS, params,
		                     QUERY_DEADLINE_MS, on_row_completed, j);
	free(store);
	if (j->q == NULL) {
		j->srv->metrics.audit_write_failures++;
		send_final(j);
	}
}

/* The outcome is known (o), or the command never started (fail_code set). */
static void job_complete(struct exec_job *j)
{
	job_set_state(j, JOB_COMPLETING);
	j->duration_ms = server_elapsed_ms(&j->http);
	j->http.outcome = row_status(j);
	j->srv->metrics.execs_total[j->outcome.kind]++;
	metrics_observe_duration(&j->srv->metrics, (double)j->duration_ms / 1000.0);
	if (!j->audit_ok && !j->audit_maybe) {
		send_final(j); /* there is no row to complete */
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &j->end_t0);
	j->end_delay_ms = END_RETRY_FIRST_MS;
	complete_row(j);
}

/* ---- replies ---- */

static void send_chunk(struct exec_job *j, const char *data, size_t len);
static void send_frame(struct exec_job *j, char *line, size_t len);

/* Sends o (taken over) as one NDJSON line. */
static void send_json_frame(struct exec_job *j, json_t *o)
{
	char *line = json_dumps(o, JSON_COMPACT), *framed;
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
	framed[n] = '\n';
	framed[n + 1] = '\0';
	send_frame(j, framed, n + 1);
}

static json_t *counts(struct exec_job *j, json_t *o)
{
	json_object_set_new(o, "duration_ms", json_integer(j->duration_ms));
	json_object_set_new(o, "stdout_bytes", json_integer((json_int_t)j->outcome.stdout_bytes));
	json_object_set_new(o, "stderr_bytes", json_integer((json_int_t)j->outcome.stderr_bytes));
	return o;
}

/* The error of an exec that ran (or was on its way) and did not exit: code and message. */
static const char *outcome_error(const struct exec_job *j, const char **message)
{
	switch (j->outcome.kind) {
	case POOL_TIMEOUT:
		*message = "the command ran past its timeout and was killed";
		return "exec_timeout";
	case POOL_SHUTDOWN:
		*message = "the broker shut down; the command was killed";
		return "shutdown";
	case POOL_CANCELLED:
		*message = "the client went away; the command was killed";
		return "cancelled";
	case POOL_TRANSPORT_ERROR:
	default:
		*message = "the SSH connection to the workspace host broke while the command ran; "
		           "its outcome is unknown";
		return "transport_error";
	}
}

/* The API code of an outcome when it is told in a plain reply rather than a last frame:
 * nobody is left to read "cancelled", and a refused request says "shutting_down". */
static const char *reply_code(const struct exec_job *j)
{
	const char *msg, *code = outcome_error(j, &msg);

	if (strcmp(code, "shutdown") == 0)
		return "shutting_down";
	if (strcmp(code, "cancelled") == 0)
		return "transport_error";
	return code;
}

static void send_last_frame(struct exec_job *j)
{
	json_t *o;
	const char *code, *msg;

	for (int i = 1; i <= 2; i++) {
		char *f = NULL;

		if (!j->truncated[i] && j->carry[i].len > 0 &&
		    frame_output(stream_names[i], &j->carry[i], NULL, 0, true, &f) == 0 &&
		    f != NULL)
			send_frame(j, f, strlen(f));
	}
	if (j->outcome.kind == POOL_EXITED || j->outcome.kind == POOL_SIGNALED) {
		o = json_object();
		if (j->outcome.kind == POOL_EXITED) {
			json_object_set_new(o, "exit_code", json_integer(j->outcome.exit_code));
			json_object_set_new(o, "signal", json_null());
		} else {
			json_object_set_new(o, "exit_code", json_null());
			json_object_set_new(o, "signal", json_string(j->outcome.signal));
		}
		counts(j, o);
		json_object_set_new(o, "truncated",
		                    json_pack("{s:b, s:b}", "stdout", j->truncated[POOL_STDOUT],
		                              "stderr", j->truncated[POOL_STDERR]));
	} else {
		code = outcome_error(j, &msg);
		o = counts(j, json_pack("{s:{s:s, s:s}, s:s}", "error", "code", code, "message",
		                        msg, "exec_id", j->exec_id));
	}
	send_json_frame(j, o);
}

/* Buffered mode: one JSON document. */
static void send_document(struct exec_job *j)
{
	const char *code, *msg;
	char *out[3] = {NULL, NULL, NULL}, *body;
	bool utf8 = true;
	json_t *o;
	int status = 200;

	if (j->outcome.kind != POOL_EXITED && j->outcome.kind != POOL_SIGNALED) {
		outcome_error(j, &msg);
		code = reply_code(j);
		status = apierr_status(code);
		o = counts(j, json_pack("{s:{s:s, s:s}, s:s}", "error", "code", code, "message",
		                        msg, "exec_id", j->exec_id));
		j->http.error = code;
	} else {
		size_t len[3] = {0};

		for (int i = 1; i <= 2; i++) {
			bool incomplete;

			if (j->kept[i] == NULL)
				continue;
			len[i] = evbuffer_get_length(j->kept[i]);
			out[i] = (char *)evbuffer_pullup(j->kept[i], -1);
			if (utf8_valid_prefix((const unsigned char *)out[i], len[i], &incomplete) !=
			    len[i])
				utf8 = false;
		}
		o = json_object();
		json_object_set_new(o, "exec_id", json_string(j->exec_id));
		json_object_set_new(o, "workspace_id", json_string(j->ws_id));
		if (j->outcome.kind == POOL_EXITED) {
			json_object_set_new(o, "exit_code", json_integer(j->outcome.exit_code));
			json_object_set_new(o, "signal", json_null());
		} else {
			json_object_set_new(o, "exit_code", json_null());
			json_object_set_new(o, "signal", json_string(j->outcome.signal));
		}
		for (int i = 1; i <= 2; i++) {
			if (utf8) {
				json_object_set_new(
				    o, stream_names[i],
				    json_stringn(out[i] != NULL ? out[i] : "", len[i]));
			} else {
				size_t cap = 4 * ((len[i] + 2) / 3) + 1;
				char *b64 = malloc(cap);

				if (b64 != NULL)
					EVP_EncodeBlock(
					    (unsigned char *)b64,
					    (const unsigned char *)(out[i] != NULL ? out[i] : ""),
					    (int)len[i]);
				json_object_set_new(o, stream_names[i],
				                    json_string(b64 != NULL ? b64 : ""));
				free(b64);
			}
		}
		json_object_set_new(o, "encoding", json_string(utf8 ? "utf-8" : "base64"));
		json_object_set_new(o, "stdout_truncated", json_boolean(j->truncated[POOL_STDOUT]));
		json_object_set_new(o, "stderr_truncated", json_boolean(j->truncated[POOL_STDERR]));
		json_object_set_new(
		    o, "truncated",
		    json_boolean(j->truncated[POOL_STDOUT] || j->truncated[POOL_STDERR]));
		counts(j, o);
	}
	body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	unwatch_client(j);
	server_reply(j->srv, &j->http, status, "application/json", body != NULL ? body : "",
	             body != NULL ? strlen(body) : 0);
	free(body);
}

/* An exec that never started: the API error of why. */
static void send_start_failure(struct exec_job *j)
{
	const char *msg;

	if (strcmp(j->fail_code, "audit_unavailable") == 0)
		msg = "the audit log cannot be written (database unreachable); the command was not "
		      "run";
	else if (strcmp(j->fail_code, "ssh_connect_failed") == 0)
		msg = "cannot connect to the workspace host over SSH; the command was not run";
	else if (strcmp(j->fail_code, "host_key_mismatch") == 0)
		msg = "the workspace host's SSH key does not match its pinned fingerprint; an "
		      "administrator must check the host and re-pin it; the command was not run";
	else if (strcmp(j->fail_code, "ssh_auth_failed") == 0)
		msg = "the workspace host refused the broker's SSH key; the command was not run";
	else if (strcmp(j->fail_code, "pool_exhausted") == 0)
		msg = "no SSH session to the workspace host became free in time; retry later";
	else if (strcmp(j->fail_code, "shutting_down") == 0)
		msg = "the broker is shutting down; the command was not run";
	else if (strcmp(j->fail_code, "exec_timeout") == 0)
		msg = "the timeout passed before the command could start; it was not run";
	else
		msg = "the workspace host refused to start the command";
	reply_error(j, j->fail_code, msg, NULL);
}

/* The client left: nobody reads a reply. The request goes away with its connection. */
static void drop_client(struct exec_job *j)
{
	unwatch_client(j);
	if (j->evcon != NULL)
		evhttp_connection_free(j->evcon); /* frees the request with it */
	else
		evhttp_request_free(j->http.req); /* detached when evhttp closed the connection */
	j->evcon = NULL;
	j->http.req = NULL;
	if (j->http.status == 0)
		j->http.status = 499; /* as nginx logs it: the client closed the request */
	j->http.error = "client_gone";
	server_log_request(j->srv, &j->http);
}

static void send_final(struct exec_job *j)
{

	if (j->client_gone) {
		drop_client(j);
		job_done(j);
		return;
	}
	if (j->fail_code == NULL && j->streaming && j->http.status == 0) {
		/* Ended before the reply started (the client left first): a plain error. */
		j->fail_code = reply_code(j);
	}
	if (j->fail_code != NULL) {
		send_start_failure(j);
	} else if (!j->streaming) {
		send_document(j);
	} else if (j->http.req != NULL) {
		send_last_frame(j);
		unwatch_client(j);
		/* evhttp takes "below the low watermark" for "written": with ours left in
		 * place it would end the reply with up to STREAM_LOW_WATER bytes unsent, and
		 * on a kept-alive connection stop writing them. */
		if (j->evcon != NULL)
			bufferevent_setwatermark(evhttp_connection_get_bufferevent(j->evcon),
			                         EV_WRITE, 0, 0);
		server_reply_end(j->srv, &j->http);
	}
	job_done(j);
}

/* ---- streaming ---- */

static void on_drained(struct evhttp_connection *evcon, void *arg)
{
	struct exec_job *j = arg;

	(void)evcon;
	if (j->paused && j->exec != NULL && !j->finished) {
		j->paused = false;
		pool_exec_resume(j->exec);
	}
}

static bool can_send(const struct exec_job *j)
{
	return j->http.req != NULL && j->evcon != NULL && !j->client_gone && j->chunk != NULL;
}

/* Hands j->chunk to evhttp as one HTTP chunk (evhttp moves its memory, no copy) and pauses
 * the exec when the client falls behind. */
static void flush_chunk(struct exec_job *j)
{
	struct bufferevent *bev;

	evhttp_send_reply_chunk_with_cb(j->http.req, j->chunk, on_drained, j);
	bev = evhttp_connection_get_bufferevent(j->evcon);
	if (!j->paused && j->exec != NULL && !j->finished &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > STREAM_HIGH_WATER) {
		j->paused = true;
		pool_exec_pause(j->exec);
	}
}

static void send_chunk(struct exec_job *j, const char *data, size_t len)
{
	if (!can_send(j))
		return;
	evbuffer_add(j->chunk, data, len);
	flush_chunk(j);
}

static void free_frame(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Sends line (malloc'd, taken over) without copying it. */
static void send_frame(struct exec_job *j, char *line, size_t len)
{
	if (!can_send(j) || evbuffer_add_reference(j->chunk, line, len, free_frame, NULL) != 0) {
		free(line);
		return;
	}
	flush_chunk(j);
}

static void on_started(struct pool_exec *e, void *arg)
{
	struct exec_job *j = arg;
	json_t *o;

	(void)e;
	job_set_state(j, JOB_RUNNING);
	j->started = true;
	if (!j->streaming || j->client_gone)
		return;
	/* From here on evhttp reads the socket and reports a hang-up itself. */
	stop_watching(j);
	server_reply_start(j->srv, &j->http, "application/x-ndjson");
	j->chunk = evbuffer_new();
	bufferevent_setwatermark(evhttp_connection_get_bufferevent(j->evcon), EV_WRITE,
	                         STREAM_LOW_WATER, 0);
	o = json_pack("{s:s, s:s, s:i}", "exec_id", j->exec_id, "workspace_id", j->ws_id,
	              "timeout_s", j->req.timeout_s);
	send_json_frame(j, o);
}

static void on_data(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len, void *arg)
{
	struct exec_job *j = arg;
	uint64_t cap = (uint64_t)j->srv->cfg->output_cap_bytes, room;
	size_t n;
	char *f = NULL;

	(void)e;
	if (j->truncated[s])
		return; /* counted by the pool, not sent */
	room = cap - j->sent[s];
	n = len < room ? len : (size_t)room;
	j->sent[s] += n;
	if (!j->streaming) {
		if (j->kept[s] == NULL)
			j->kept[s] = evbuffer_new();
		if (j->kept[s] != NULL && n > 0)
			evbuffer_add(j->kept[s], buf, n);
	} else if (n > 0 || n < len) {
		if (frame_output(stream_names[s], &j->carry[s], buf, n, n < len, &f) == 0 &&
		    f != NULL)
			send_frame(j, f, strlen(f));
	}
	if (n < len) {
		j->truncated[s] = true;
		if (j->streaming) {
			char line[64];
			int k =
			    snprintf(line, sizeof(line), "{\"stream\":\"%s\",\"truncated\":true}\n",
			             stream_names[s]);
			send_chunk(j, line, (size_t)k);
		}
	}
}

static const char *fail_code_of(enum pool_fail_reason r)
{
	switch (r) {
	case POOL_FAIL_HOST_KEY:
		return "host_key_mismatch";
	case POOL_FAIL_AUTH:
		return "ssh_auth_failed";
	case POOL_FAIL_EXHAUSTED:
		return "pool_exhausted";
	case POOL_FAIL_SHUTDOWN:
		return "shutting_down";
	case POOL_FAIL_CHANNEL:
		return "transport_error";
	case POOL_FAIL_CONNECT:
	case POOL_FAIL_INVALID:
	case POOL_FAIL_NONE:
	default:
		return "ssh_connect_failed";
	}
}

static void on_finished(struct pool_exec *e, const struct pool_outcome *o, void *arg)
{
	struct exec_job *j = arg;

	(void)e;
	j->finished = true;
	j->outcome = *o;
	if (!j->started) {
		/* Never ran: the reply is a plain error with a real status. */
		if (o->kind == POOL_FAILED_TO_START)
			j->fail_code = j->error_code = fail_code_of(o->fail_reason);
		else
			j->fail_code = reply_code(j);
	}
	if (o->detail[0] != '\0')
		log_kv(o->kind == POOL_EXITED ? LOG_DEBUG : LOG_INFO, "exec ended", "request_id",
		       j->http.request_id, "exec_id", j->exec_id, "outcome",
		       pool_outcome_name(o->kind), "detail", o->detail, NULL);
	job_complete(j);
}

/* ---- begin: the row and the lease ---- */

static void job_spec(const struct exec_job *j, struct command_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->argv = j->req.argv;
	spec->argc = j->req.argc;
	spec->env_names = j->req.env_names;
	spec->env_values = j->req.env_values;
	spec->nenv = j->req.nenv;
	spec->cwd = j->req.cwd;
}

static void begin_step(struct exec_job *j)
{
	static const struct pool_exec_callbacks cbs = {on_started, on_data, on_finished};
	struct command_spec spec;

	if (j->audit_done && !j->audit_ok && !j->lease_done) {
		pool_acquire_cancel(j->acq); /* no row: the command must not run */
		j->acq = NULL;
		j->lease_done = true;
	}
	if (!j->audit_done || !j->lease_done)
		return;
	if (!j->audit_ok || j->lease == NULL || j->client_gone) {
		if (j->lease != NULL) {
			pool_lease_release(j->lease);
			j->lease = NULL;
		}
		j->outcome.kind = POOL_FAILED_TO_START;
		if (!j->audit_ok) {
			j->fail_code = "audit_unavailable";
		} else if (j->client_gone) {
			j->outcome.kind = POOL_CANCELLED;
			j->fail_code = "transport_error";
		} else {
			j->fail_code = fail_code_of(j->lease_fail);
			if (j->lease_fail == POOL_FAIL_SHUTDOWN)
				j->outcome.kind = POOL_SHUTDOWN;
		}
		j->error_code = j->outcome.kind == POOL_FAILED_TO_START ? j->fail_code : NULL;
		job_complete(j);
		return;
	}
	job_spec(j, &spec);
	job_set_state(j, JOB_STARTING);
	j->exec = pool_exec_start(j->lease, &spec, j->req.stdin_data, j->req.stdin_len,
	                          &j->deadline, &cbs, j);
	j->lease = NULL; /* transferred */
	if (j->exec == NULL) {
		j->outcome.kind = POOL_FAILED_TO_START;
		j->fail_code = j->error_code = "ssh_connect_failed";
		job_complete(j);
	}
}

static void on_row_begun(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;

	(void)res;
	j->q = NULL;
	j->audit_done = true;
	j->audit_ok = error == NULL;
	if (error == NULL)
		j->http.exec_id = j->exec_id; /* X-Exec-Id names a row that exists */
	if (error != NULL) {
		j->srv->metrics.audit_write_failures++;
		/* A lost connection may have committed the insert: complete the row anyway (a
		 * no-op when it does not exist) rather than leave it running. */
		j->audit_maybe = strcmp(sqlstate, PGASYNC_SQLSTATE_LOST) == 0;
		log_kv(LOG_ERROR, "could not write the audit row; the command will not run",
		       "request_id", j->http.request_id, "exec_id", j->exec_id, "error", error,
		       NULL);
	}
	begin_step(j);
}

static void on_leased(struct pool_lease *lease, enum pool_fail_reason why, const char *detail,
                      void *arg)
{
	struct exec_job *j = arg;

	j->acq = NULL;
	j->lease_done = true;
	j->lease = lease;
	j->lease_fail = why;
	if (lease == NULL)
		log_kv(LOG_WARN, "no SSH session for the exec", "request_id", j->http.request_id,
		       "workspace_id", j->ws_id, "host", j->host, "reason",
		       pool_fail_reason_name(why), "detail", detail, NULL);
	begin_step(j);
}

static void begin(struct exec_job *j)
{
	struct pool_target t = {
	    .host = j->host, .port = j->port, .user = j->user, .host_key_fp = j->fp};
	struct audit_begin b;
	const char *params[AUDIT_DENIED_NPARAMS];
	char *store = NULL;

	job_set_state(j, JOB_BEGIN);
	fill_audit(j, &b, j->org);
	if (audit_begin_params(&b, params, &store) == 0)
		j->q = pgasync_query(j->srv->db, audit_begin_sql, AUDIT_BEGIN_NPARAMS, params,
		                     QUERY_DEADLINE_MS, on_row_begun, j);
	free(store);
	if (j->q == NULL) {
		j->audit_done = true;
		j->audit_ok = false;
	}
	/* Meanwhile the pool finds a session; the command waits for the commit. */
	if (j->audit_done)
		j->lease_done = true;
	else
		j->acq = pool_lease_acquire(j->srv->pool, &t, &j->deadline, on_leased, j);
	if (!j->audit_done && j->acq == NULL)
		j->lease_done = true;
	begin_step(j);
}

/* ---- authorization ---- */

static void copy(char *dst, size_t cap, const PGresult *res, int col)
{
	snprintf(dst, cap, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

static void on_authz(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;
	struct authz_row r = {0};
	enum authz_verdict v;
	const char *deny_org;

	(void)sqlstate;
	j->q = NULL;
	if (error != NULL) {
		j->srv->metrics.audit_write_failures++;
		log_kv(LOG_ERROR, "token lookup failed", "request_id", j->http.request_id, "error",
		       error, NULL);
		reply_error(j, "audit_unavailable",
		            "the broker's database is unreachable, so nothing can be authorized or "
		            "audited; the command was not run; retry later",
		            NULL);
		job_done(j);
		return;
	}
	authz_row_from_result(res, &r);
	v = authz_decide(&r, j->srv->cfg->min_exec_tier, j->reason != NULL);
	if (v == AUTHZ_UNAUTHORIZED) {
		reply_error(j, "unauthorized",
		            r.token_found ? "the token has expired or was revoked"
		                          : "the token is not known to this broker",
		            NULL);
		job_done(j);
		return;
	}
	copy(j->kind, sizeof(j->kind), res, 0);
	j->http.actor = j->actor;
	/* The org a row is filed under (see deny()). */
	deny_org = PQgetisnull(res, 0, 13) ? "" : PQgetvalue(res, 0, 13);
	if (v == AUTHZ_OK || v == AUTHZ_FORBIDDEN_TIER || v == AUTHZ_REASON_REQUIRED ||
	    v == AUTHZ_NOT_RUNNING)
		deny_org = r.ws_org;
	snprintf(j->org, sizeof(j->org), "%s", deny_org);
	audit_new_exec_id(j->exec_id);
	switch (v) {
	case AUTHZ_NOT_FOUND:
		deny(j, "not_found", j->org, "no workspace \"%s\" that this token can reach",
		     j->ws_id);
		return;
	case AUTHZ_FORBIDDEN_TIER:
		deny(j, "forbidden_tier", j->org,
		     "workspace \"%s\" is tier %d; exec needs tier %d or higher", j->ws_id,
		     r.ws_tier, j->srv->cfg->min_exec_tier);
		return;
	case AUTHZ_REASON_REQUIRED:
		deny(j, "break_glass_reason_required", j->org,
		     "an admin token needs an X-Break-Glass-Reason header (1-500 printable "
		     "characters) saying why");
		return;
	case AUTHZ_NOT_RUNNING:
		deny(j, "workspace_not_running", j->org,
		     "workspace \"%s\" is %s; start it before running commands", j->ws_id,
		     r.ws_state);
		return;
	case AUTHZ_OK:
		break;
	case AUTHZ_UNAUTHORIZED:
	default:
		abort();
	}
	if (j->srv->state == SERVER_STOPPING) {
		deny(j, "shutting_down", j->org, "the broker is shutting down; retry later");
		return;
	}
	if (!server_org_enter(j->srv, j->org)) {
		deny(j, "too_many_requests", j->org,
		     "org \"%s\" already has %d execs running, the most allowed at once; retry "
		     "after one finishes",
		     j->org, j->srv->cfg->org_max_concurrent_execs);
		return;
	}
	j->org_counted = true;
	copy(j->host, sizeof(j->host), res, 9);
	j->port = atoi(PQgetvalue(res, 0, 10));
	copy(j->user, sizeof(j->user), res, 11);
	copy(j->fp, sizeof(j->fp), res, 12);
	begin(j);
}

/* ---- arrival ---- */

static bool media_type_is(const char *value, const char *type)
{
	size_t n = strlen(type);

	while (*value == ' ' || *value == '\t')
		value++;
	return strncasecmp(value, type, n) == 0 &&
	       (value[n] == '\0' || value[n] == ';' || value[n] == ' ' || value[n] == '\t');
}

/* Buffered when the client asks for application/json and not for NDJSON. */
static bool wants_buffered(const char *accept)
{
	const char *p;

	if (accept == NULL)
		return false;
	for (p = accept; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (media_type_is(p, "application/x-ndjson"))
			return false;
	}
	for (p = accept; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (media_type_is(p, "application/json"))
			return true;
	}
	return false;
}

void exec_handle(struct server *s, struct http_ctx *h, const char *workspace_id)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(h->req);
	const char *ctype = evhttp_find_header(in, "Content-Type");
	const char *auth = evhttp_find_header(in, "Authorization");
	const char *reason = evhttp_find_header(in, "X-Break-Glass-Reason");
	struct request_limits lim = {s->cfg->exec_timeout_default_s, s->cfg->exec_timeout_max_s,
	                             (size_t)s->cfg->max_body_bytes};
	struct request_error rerr;
	struct evbuffer *body;
	struct exec_job *j;
	const char *params[2], *why;
	char *cmd = NULL, cmderr[160];
	struct command_spec spec;
	int rc;

	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		server_reply(s, h, 500, "application/json", "", 0);
		return;
	}
	j->srv = s;
	j->http = *h;
	j->state = JOB_AUTHZ;
	j->evcon = evhttp_request_get_connection(h->req);
	snprintf(j->ws_id, sizeof(j->ws_id), "%s", workspace_id);
	j->http.workspace_id = j->ws_id;
	j->streaming = !wants_buffered(evhttp_find_header(in, "Accept"));
	/* On the server's list from here: every path below ends in job_done(). */
	j->next = s->jobs;
	s->jobs = j;
	s->njobs++;

	if (ctype == NULL || !media_type_is(ctype, "application/json")) {
		reply_error(j, "unsupported_media_type",
		            "the body must be JSON, sent with Content-Type: application/json",
		            NULL);
		goto done;
	}
	why = authz_bearer(auth, j->token_hash, j->actor);
	if (why != NULL) {
		reply_error(j, "unauthorized", why, NULL);
		goto done;
	}
	if (reason != NULL) {
		if (!apierr_reason_valid(reason)) {
			reply_error(j, "invalid_request",
			            "X-Break-Glass-Reason must be 1-500 printable characters",
			            "X-Break-Glass-Reason");
			goto done;
		}
		j->reason = strdup(reason);
	}
	body = evhttp_request_get_input_buffer(h->req);
	rc = request_parse((const char *)evbuffer_pullup(body, -1), evbuffer_get_length(body), &lim,
	                   &j->req, &rerr);
	if (rc != 0) {
		reply_error(j, rerr.code, rerr.message, rerr.field[0] != '\0' ? rerr.field : NULL);
		goto done;
	}
	/* The quoted command must fit in one SSH packet (see pool/command.h). */
	job_spec(j, &spec);
	spec.timeout_s = j->req.timeout_s;
	spec.kill_after_s = s->cfg->pool_kill_grace_s;
	rc = command_build(&spec, &cmd, cmderr, sizeof(cmderr));
	free(cmd);
	if (rc == EB_ERR_RANGE) {
		reply_error(j, "invalid_request",
		            "argv, env and cwd together are too long: quoted for the remote shell "
		            "they must fit in 32 KiB (a limit of the SSH library); pass large data "
		            "through stdin instead",
		            "argv");
		goto done;
	} else if (rc != 0) {
		reply_error(j, "invalid_request", cmderr, "argv");
		goto done;
	}
	if (!ids_valid_name(j->ws_id)) {
		reply_error(j, "not_found", "no such workspace", NULL);
		goto done;
	}
	pool_deadline_after_ms((long)j->req.timeout_s * 1000, &j->deadline);
	watch_client(j);
	params[0] = j->token_hash;
	params[1] = j->ws_id;
	j->q = pgasync_query(s->db, authz_lookup_sql, 2, params, QUERY_DEADLINE_MS, on_authz, j);
	if (j->q == NULL) {
		reply_error(j, "audit_unavailable", "out of memory", NULL);
		goto done;
	}
	return;
done:
	job_done(j);
}
