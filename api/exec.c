/* api/exec.c: POST /v1/workspaces/{id}/exec: the life of one exec as a state machine on
 * the broker's loop (see api/exec_job.h): the request is checked, the token and the
 * workspace are looked up in one query, a refusal leaves a 'denied' row, a run inserts its
 * 'running' row while the pool leases a session, the command starts only once both are
 * there, and the row is completed before the last word goes to the client
 * (api/exec_reply.c). */
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/exec_job.h"
#include "api/exec_reply.h"
#include "api/leasecache.h"
#include "common/err.h"
#include "pool/detached.h"
#include "common/fsm.h"
#include "common/ids.h"
#include "common/log.h"
#include "db/pgasync.h"

#define QUERY_DEADLINE_MS 5000
/* Completing a row is retried with these delays while the database is unreachable. */
#define END_RETRY_FIRST_MS 100
#define END_RETRY_MAX_MS   2000

/* What request_parse accepts, command_build can quote (it refuses what the request refuses
 * already: NUL, bad env names, a relative cwd, an empty argv[0]), so the pool's own build
 * of the command cannot fail on a valid request, and the handler does not build it too.
 * Each byte quotes to at most 4. */
_Static_assert(4 * ((size_t)REQ_MAX_ARGS_BYTES + REQ_MAX_CWD) + 64 * 1024 < COMMAND_MAX_LEN,
               "a valid request quotes to more than the pool accepts");

static const char *const state_names[] = {"authz",   "denying",    "begin", "starting",
                                          "running", "completing", "done"};
static const unsigned job_legal[] = {
    [JOB_AUTHZ] = FSM_BIT(JOB_DENYING) | FSM_BIT(JOB_BEGIN) | FSM_BIT(JOB_DONE),
    [JOB_DENYING] = FSM_BIT(JOB_DONE),
    [JOB_BEGIN] = FSM_BIT(JOB_STARTING) | FSM_BIT(JOB_COMPLETING) | FSM_BIT(JOB_DONE),
    [JOB_STARTING] = FSM_BIT(JOB_RUNNING) | FSM_BIT(JOB_COMPLETING) | FSM_BIT(JOB_DONE),
    [JOB_RUNNING] = FSM_BIT(JOB_COMPLETING) | FSM_BIT(JOB_DONE),
    [JOB_COMPLETING] = FSM_BIT(JOB_DONE),
    [JOB_DONE] = 0,
};
static const struct fsm job_fsm = {"exec job", state_names, job_legal, 7};

static void job_set_state(struct exec_job *j, enum job_state to)
{
	FSM_SET(&job_fsm, j->state, to, j->request_id);
}

/* The fields of the request's log line (a batch's target has its own, unlogged). */
static struct http_log_fields *job_log(struct exec_job *j)
{
	return j->batch != NULL ? &j->own_log : http_request_log(j->http);
}

static long long job_elapsed_ms(const struct exec_job *j)
{
	struct timespec now;

	if (j->batch == NULL)
		return http_request_elapsed_ms(j->http);
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - j->t0.tv_sec) * 1000 +
	       (now.tv_nsec - j->t0.tv_nsec) / 1000000;
}

/* The client went away: a command under way is cancelled; anything later is not sent. */
static void on_client_gone(struct http_request *r, void *arg)
{
	(void)r;
	exec_job_cancel(arg);
}

void exec_job_cancel(struct exec_job *j)
{
	if (j->client_gone)
		return;
	j->client_gone = true;
	log_kv(LOG_INFO, "client went away", "request_id", j->request_id, "state",
	       state_names[j->state], NULL);
	/* A detached exec's start goes on: it must not depend on the connection, and its row
	 * says whether it ran. */
	if ((j->state == JOB_STARTING || j->state == JOB_RUNNING) && j->exec != NULL &&
	    !j->req.detach)
		pool_exec_cancel(j->exec); /* finished() follows with POOL_CANCELLED */
}

static void job_done(struct exec_job *j)
{
	job_set_state(j, JOB_DONE);
	if (j->org_counted) {
		orgs_leave(&j->api->orgs, j->org);
		j->org_counted = false;
	}
	event_active(j->api->reap, 0, 0); /* reclaimed after this loop turn */
}

/* The last word to the client, then the end. */
static void finish(struct exec_job *j)
{
	exec_reply_final(j);
	job_done(j);
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
	if (j->http != NULL)
		http_request_drop(j->http); /* only when the broker stops with the job unfinished */
	for (int i = 1; i <= 2; i++)
		if (j->kept[i] != NULL)
			evbuffer_free(j->kept[i]);
	if (j->chunk != NULL)
		evbuffer_free(j->chunk);
	request_free(&j->req);
	free(j->launch_store);
	if (j->launch_input != NULL)
		explicit_bzero(j->launch_input, j->launch_input_len);
	free(j->launch_input);
	free(j->reason);
	free(j);
}

static void reap_jobs(evutil_socket_t fd, short what, void *arg)
{
	struct api *a = arg;
	struct exec_job **pp = &a->jobs, *j;

	(void)fd;
	(void)what;
	while ((j = *pp) != NULL) {
		if (j->state != JOB_DONE) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		a->njobs--;
		job_free(j);
		api_release(a);
	}
}

static void fill_audit(struct exec_job *j, struct audit_begin *b, const char *org)
{
	memset(b, 0, sizeof(*b));
	memcpy(b->exec_id, j->exec_id, sizeof(b->exec_id));
	b->request_id = j->request_id;
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
	b->client_addr = j->client[0] != '\0' ? j->client : NULL;
	b->timeout_s = j->req.timeout_s;
	b->broker_instance = j->api->instance;
	b->detached = j->req.detach;
	b->name = j->req.name;
	b->batch_id = j->batch != NULL ? j->batch_id : NULL;
	b->max_detached = j->api->cfg->workspace_max_detached_execs;
	b->max_org_execs = j->api->cfg->org_max_concurrent_execs;
	b->dead_after_s = audit_dead_after_s(j->api->cfg->broker_heartbeat_s);
}

static void begin_step(struct exec_job *j);
static void lease_drop(struct exec_job *j);

static void deny_reply(struct exec_job *j, const struct denial *d)
{
	if (strcmp(d->code, "too_many_requests") == 0 && j->batch == NULL)
		http_reply_header(j->http, "Retry-After", "1");
	exec_reply_error(j, d->code, d->message, NULL);
	j->api->metrics.execs_denied++;
	job_done(j);
}

static void on_denied_row(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;
	struct denial *d = &j->denial;

	(void)res;
	(void)sqlstate;
	j->q = NULL;
	if (error == NULL) {
		j->has_row = true;
		job_log(j)->exec_id = j->exec_id; /* X-Exec-Id names a row that exists */
		seal_add(j->api, j->exec_id);
	} else {
		j->api->metrics.audit_write_failures++;
		log_kv(LOG_ERROR, "could not write a denied audit row", "request_id", j->request_id,
		       "error", error, NULL);
	}
	deny_reply(j, d);
}

/* A refusal of an authenticated request: one 'denied' row, then the reply. The row's org
 * is the workspace's when the token reaches it, else the token's own: a probe of another
 * tenant's workspace is recorded in the prober's org, never in the victim's. */
static void deny(struct exec_job *j, const char *code, const char *org, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The denial j answers with once its row is written: code and the message. */
static void denial_begin(struct exec_job *j, const char *code, const char *fmt, va_list ap)
{
	j->denial.code = code;
	vsnprintf(j->denial.message, sizeof(j->denial.message), fmt, ap);
	job_set_state(j, JOB_DENYING);
	job_log(j)->error = code;
}

static void deny(struct exec_job *j, const char *code, const char *org, const char *fmt, ...)
{
	struct audit_begin b;
	const char *params[AUDIT_DENIED_NPARAMS];
	char *store = NULL;
	va_list ap;

	lease_drop(j); /* the session leased on a hint, or the channel opened on it */
	va_start(ap, fmt);
	denial_begin(j, code, fmt, ap);
	va_end(ap);
	fill_audit(j, &b, org);
	b.error_code = code;
	if (audit_begin_params(&b, params, &store) == 0)
		j->q = pgasync_query_static(j->api->db, audit_denied_sql, AUDIT_DENIED_NPARAMS,
		                            params, QUERY_DEADLINE_MS, on_denied_row, j);
	free(store);
	if (j->q == NULL) {
		j->api->metrics.audit_write_failures++;
		deny_reply(j, &j->denial);
	}
}

static void finish(struct exec_job *j);
static void complete_row(struct exec_job *j);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	complete_row(arg);
}

static void on_row_completed(const PGresult *res, const char *error, const char *sqlstate,
                             void *arg)
{
	struct exec_job *j = arg;
	struct timeval tv;
	char attempts[16];

	j->q = NULL;
	if (error == NULL) {
		if (atoi(PQcmdTuples((PGresult *)res)) == 0 && j->end_attempts == 1 && j->audit_ok)
			log_kv(LOG_WARN,
			       "the audit row was no longer running: another broker marked it "
			       "abandoned",
			       "request_id", j->request_id, "exec_id", j->exec_id, NULL);
		finish(j);
		/* After the last word, off its path. A retry that finds the row no longer running
		 * may follow an attempt that landed but whose answer was lost: queued too (the
		 * seal leaves a row already linked, or never pending, alone). */
		if (atoi(PQcmdTuples((PGresult *)res)) > 0 || j->end_attempts > 1)
			seal_add(j->api, j->exec_id);
		return;
	}
	j->api->metrics.audit_write_failures++;
	snprintf(attempts, sizeof(attempts), "%d", j->end_attempts);
	if (pgasync_sqlstate_transient(sqlstate) && !api_completions_given_up(j->api)) {
		log_kv(j->end_attempts == 1 ? LOG_WARN : LOG_DEBUG,
		       "could not complete the audit row; retrying until it lands", "request_id",
		       j->request_id, "exec_id", j->exec_id, "attempt", attempts, "error", error,
		       NULL);
		tv.tv_sec = j->end_delay_ms / 1000;
		tv.tv_usec = (j->end_delay_ms % 1000) * 1000;
		j->end_delay_ms =
		    j->end_delay_ms * 2 > END_RETRY_MAX_MS ? END_RETRY_MAX_MS : j->end_delay_ms * 2;
		if (j->retry == NULL)
			j->retry = evtimer_new(j->api->base, on_retry, j);
		if (j->retry != NULL && evtimer_add(j->retry, &tv) == 0)
			return;
	}
	log_kv(LOG_ERROR,
	       "gave up completing the audit row: it stays 'running' until a broker marks it "
	       "abandoned past its deadline",
	       "request_id", j->request_id, "exec_id", j->exec_id, "attempts", attempts, "error",
	       error, NULL);
	finish(j);
}

/* The audit log's statuses of runs are the pool's outcome names (the CHECK of
 * exec_audit.status in migrations/0001 lists them). */
static const char *row_status(const struct exec_job *j)
{
	return pool_outcome_name(j->outcome.kind);
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
		j->q = pgasync_query_static(j->api->db, audit_end_sql, AUDIT_END_NPARAMS, params,
		                            QUERY_DEADLINE_MS, on_row_completed, j);
	free(store);
	if (j->q == NULL) {
		j->api->metrics.audit_write_failures++;
		finish(j);
	}
}

/* The outcome is known (o), or the command never started (fail_code set). */
static void job_complete(struct exec_job *j)
{
	job_set_state(j, JOB_COMPLETING);
	j->duration_ms = job_elapsed_ms(j);
	job_log(j)->outcome = row_status(j);
	j->api->metrics.execs_total[j->outcome.kind]++;
	metrics_observe_duration(&j->api->metrics, (double)j->duration_ms / 1000.0);
	if (!j->audit_ok && !j->audit_maybe) {
		finish(j); /* there is no row to complete */
		return;
	}
	j->end_delay_ms = END_RETRY_FIRST_MS;
	complete_row(j);
}

static void on_started(struct pool_exec *e, void *arg)
{
	struct exec_job *j = arg;

	job_set_state(j, JOB_RUNNING);
	j->started = true;
	if (j->paused)
		pool_exec_pause(e); /* a batch whose client is behind (exec_job_pause) */
	exec_reply_started(j);
}

static void on_data(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len, void *arg)
{
	struct exec_job *j = arg;

	(void)e;
	if (j->req.detach) {
		/* The launcher prints one line; anything past a page is not its. */
		if (j->kept[s] == NULL)
			j->kept[s] = evbuffer_new();
		if (j->kept[s] != NULL && evbuffer_get_length(j->kept[s]) < 4096)
			evbuffer_add(j->kept[s], buf, len < 4096 ? len : 4096);
		return;
	}
	exec_reply_output(j, s, buf, len);
}

/* What the pool writes to the command's stdin: a detached exec's launcher reads the
 * command's body first. */
static const char *job_stdin(const struct exec_job *j)
{
	return j->req.detach ? j->launch_input : j->req.stdin_data;
}

static size_t job_stdin_len(const struct exec_job *j)
{
	return j->req.detach ? j->launch_input_len : j->req.stdin_len;
}

/* The launcher of a detached exec, its argv and its stdin. 0 or EB_ERR_NOMEM. */
static int detach_prepare(struct exec_job *j)
{
	struct detached_start ds = {
	    .exec_id = j->exec_id,
	    .timeout_ms = (long long)j->req.timeout_s * 1000,
	    .grace_s = j->api->cfg->pool_kill_grace_s,
	    .cap = j->api->cfg->exec_detached_output_cap_bytes,
	    .retain_s = j->api->cfg->exec_retain_s,
	};
	struct command_spec spec = {
	    .argv = j->req.argv,
	    .argc = j->req.argc,
	    .env_names = j->req.env_names,
	    .env_values = j->req.env_values,
	    .nenv = j->req.nenv,
	    .cwd = j->req.cwd,
	};
	char *body = NULL, err[160];
	size_t blen;
	int rc;

	rc = command_build_body(&spec, &body, &blen, err, sizeof(err));
	if (rc == 0)
		rc = detached_launch_argv(&ds, blen, j->launch_argv, &j->launch_store);
	if (rc == 0) {
		j->launch_input_len = blen + j->req.stdin_len;
		j->launch_input = malloc(j->launch_input_len + 1);
		rc = j->launch_input != NULL ? 0 : EB_ERR_NOMEM;
	}
	if (rc == 0) {
		memcpy(j->launch_input, body, blen);
		if (j->req.stdin_len > 0)
			memcpy(j->launch_input + blen, j->req.stdin_data, j->req.stdin_len);
	}
	if (body != NULL)
		explicit_bzero(body, blen); /* env values */
	free(body);
	return rc;
}

/* The launcher of a detached exec ended: the command runs if it said so (whatever became
 * of the channel after), else nothing runs and the row says why. */
static void detach_finished(struct exec_job *j, const struct pool_outcome *o)
{
	size_t n = j->kept[POOL_STDOUT] != NULL ? evbuffer_get_length(j->kept[POOL_STDOUT]) : 0;
	const char *out = n > 0 ? (const char *)evbuffer_pullup(j->kept[POOL_STDOUT], -1) : "";
	size_t tag = strlen(DETACHED_STARTED_TAG);
	const char *why;

	if (n > tag && strncmp(out, DETACHED_STARTED_TAG, tag) == 0) {
		job_set_state(j, JOB_COMPLETING);
		job_log(j)->outcome = "detached";
		log_kv(LOG_INFO, "detached exec started", "request_id", j->request_id, "exec_id",
		       j->exec_id, NULL);
		exec_reply_detached(j);
		job_done(j); /* the row stays running: the host finishes it */
		return;
	}
	why = o->kind == POOL_EXITED ? detached_launch_error(o->exit_code) : NULL;
	if (why == NULL) {
		/* Past the launcher's own checks its supervisor may have started the command
		 * although its line never came (the channel broke, the start's time ran out): the
		 * row stays running, and the host settles it (it ends, or the exec is lost). */
		snprintf(j->fail_message, sizeof(j->fail_message),
		         "the start of the detached exec was not confirmed by the workspace host "
		         "(%s); it may run: look it up by its exec_id (X-Exec-Id)",
		         pool_outcome_name(o->kind));
		log_kv(LOG_WARN, "detached exec start not confirmed", "request_id", j->request_id,
		       "exec_id", j->exec_id, "outcome", pool_outcome_name(o->kind), "detail",
		       o->detail, NULL);
		job_set_state(j, JOB_COMPLETING);
		exec_reply_error(j, "detach_failed", j->fail_message, NULL);
		job_done(j);
		return;
	}
	snprintf(j->fail_message, sizeof(j->fail_message), "%s; the command was not run", why);
	log_kv(LOG_WARN, "detached exec did not start", "request_id", j->request_id, "exec_id",
	       j->exec_id, "outcome", pool_outcome_name(o->kind), "reason", j->fail_message, NULL);
	j->outcome.kind = POOL_FAILED_TO_START;
	j->fail_code = j->error_code = "detach_failed";
	job_complete(j);
}

static void on_finished(struct pool_exec *e, const struct pool_outcome *o, void *arg)
{
	struct exec_job *j = arg;

	(void)e;
	if (j->held) {
		/* Prepared, it ended before its go (deadline, shutdown, a broken session twice):
		 * nothing ran, as if no session had been had. */
		j->held = false;
		j->lease_fail = o->kind == POOL_SHUTDOWN           ? POOL_FAIL_SHUTDOWN
		                : o->kind == POOL_TIMEOUT          ? POOL_FAIL_EXHAUSTED
		                : o->fail_reason != POOL_FAIL_NONE ? o->fail_reason
		                                                   : POOL_FAIL_CONNECT;
		begin_step(j);
		return;
	}
	j->finished = true;
	j->outcome = *o;
	if (j->req.detach && j->started) {
		detach_finished(j, o);
		return;
	}
	if (!j->started) {
		/* Never ran: the reply is a plain error with a real status. */
		if (o->kind == POOL_FAILED_TO_START)
			j->fail_code = j->error_code = api_fail_code(o->fail_reason);
		else
			j->fail_code = exec_reply_code(j);
	} else if (o->kind == POOL_FAILED_TO_START) {
		/* Its channel started but its command did not (no watcher to register with on the
		 * host): nothing ran, and the row needs the reason every failed start has. */
		j->error_code = api_fail_code(o->fail_reason);
	}
	if (o->detail[0] != '\0')
		log_kv(o->kind == POOL_EXITED ? LOG_DEBUG : LOG_INFO, "exec ended", "request_id",
		       j->request_id, "exec_id", j->exec_id, "outcome", pool_outcome_name(o->kind),
		       "detail", o->detail, NULL);
	job_complete(j);
}

static void job_spec(const struct exec_job *j, struct command_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	if (j->req.detach) {
		spec->argv = j->launch_argv;
		spec->argc = DETACHED_LAUNCH_ARGC;
		spec->broker_script = true;
		return;
	}
	spec->argv = j->req.argv;
	spec->argc = j->req.argc;
	spec->env_names = j->req.env_names;
	spec->env_values = j->req.env_values;
	spec->nenv = j->req.nenv;
	spec->cwd = j->req.cwd;
}

static const struct pool_exec_callbacks exec_cbs = {on_started, on_data, on_finished};

/* Gives up a prepared exec: nothing ran, and no callback comes. */
static void held_drop(struct exec_job *j)
{
	if (!j->held)
		return;
	pool_exec_release(j->exec);
	j->exec = NULL;
	j->held = false;
}

static void begin_step(struct exec_job *j)
{
	struct command_spec spec;

	if (j->audit_done && !j->audit_ok && !j->lease_done) {
		pool_acquire_cancel(j->acq); /* no row: the command must not run */
		j->acq = NULL;
		j->lease_done = true;
	}
	if (!j->audit_done || !j->lease_done)
		return;
	if (!j->audit_ok || (j->lease == NULL && !j->held) || j->client_gone) {
		held_drop(j);
		if (j->lease != NULL) {
			pool_lease_release(j->lease);
			j->lease = NULL;
		}
		j->outcome.kind = POOL_FAILED_TO_START;
		if (!j->audit_ok) {
			j->fail_code = "audit_unavailable";
		} else if (j->client_gone) {
			j->outcome.kind = POOL_CANCELLED;
			/* Nobody reads a single exec's reply; a batch tells its summary. */
			j->fail_code = j->batch != NULL ? "cancelled" : "transport_error";
		} else {
			j->fail_code = api_fail_code(j->lease_fail);
			if (j->lease_fail == POOL_FAIL_SHUTDOWN)
				j->outcome.kind = POOL_SHUTDOWN;
		}
		j->error_code = j->outcome.kind == POOL_FAILED_TO_START ? j->fail_code : NULL;
		job_complete(j);
		return;
	}
	job_set_state(j, JOB_STARTING);
	if (j->held) {
		/* Its channel opened while the row was written: only the exec request is left. */
		j->held = false;
		pool_exec_go(j->exec);
		return;
	}
	job_spec(j, &spec);
	j->exec = pool_exec_start(j->lease, &spec, job_stdin(j), job_stdin_len(j), &j->deadline,
	                          &exec_cbs, j);
	j->lease = NULL; /* transferred */
	if (j->exec == NULL) {
		j->outcome.kind = POOL_FAILED_TO_START;
		j->fail_code = j->error_code = "ssh_connect_failed";
		job_complete(j);
	}
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
		log_kv(LOG_WARN, "no SSH session for the exec", "request_id", j->request_id,
		       "workspace_id", j->ws_id, "host", j->host, "reason",
		       pool_fail_reason_name(why), "detail", detail, NULL);
	if (lease != NULL && !j->audit_done && !j->client_gone) {
		/* The row is still being written: open the channel meanwhile, and send the
		 * exec request only once the row is committed (pool_exec_go). */
		struct command_spec spec;
		job_spec(j, &spec);
		j->exec = pool_exec_prepare(lease, &spec, job_stdin(j), job_stdin_len(j),
		                            &j->deadline, &exec_cbs, j);
		j->lease = NULL; /* transferred, even on failure */
		j->held = j->exec != NULL;
		if (j->exec == NULL)
			j->lease_fail = POOL_FAIL_CONNECT; /* out of memory */
	}
	begin_step(j);
}

/* Asks the pool for a session to the job's target (j->host...). */
static void lease_target(struct exec_job *j)
{
	struct pool_target t = {
	    .host = j->host, .port = j->port, .user = j->user, .host_key_fp = j->fp};

	j->lease_done = false;
	j->acq = pool_lease_acquire(j->api->pool, &t, &j->deadline, on_leased, j);
	if (j->acq == NULL)
		j->lease_done = true; /* out of memory: lease_fail says connect */
}

/* Gives back whatever the job holds or awaits of the pool. */
static void lease_drop(struct exec_job *j)
{
	if (j->acq != NULL) {
		pool_acquire_cancel(j->acq);
		j->acq = NULL;
	}
	if (j->lease != NULL) {
		pool_lease_release(j->lease);
		j->lease = NULL;
	}
	held_drop(j);
	j->lease_done = false;
}

static void copy(char *dst, size_t cap, const PGresult *res, int col)
{
	snprintf(dst, cap, "%s", PQgetisnull(res, 0, col) ? "" : PQgetvalue(res, 0, col));
}

static void on_refused_row(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;

	(void)res;
	(void)sqlstate;
	j->q = NULL;
	if (error != NULL) {
		j->api->metrics.audit_write_failures++;
		log_kv(LOG_ERROR,
		       "could not mark a refused exec's row denied; a sweep marks it abandoned",
		       "request_id", j->request_id, "exec_id", j->exec_id, "error", error, NULL);
	} else {
		seal_add(j->api, j->exec_id);
	}
	deny_reply(j, &j->denial);
}

/* A refusal after the row went in (the org is at its limit, or the database authorized
 * what authz_decide refuses): the row becomes final as 'denied', then the refusal. */
static void refuse(struct exec_job *j, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(struct exec_job *j, const char *code, const char *fmt, ...)
{
	const char *params[AUDIT_REFUSE_NPARAMS] = {j->exec_id, code};
	va_list ap;

	lease_drop(j);
	va_start(ap, fmt);
	denial_begin(j, code, fmt, ap);
	va_end(ap);
	job_log(j)->exec_id = j->exec_id;
	j->q = pgasync_query_static(j->api->db, audit_refuse_sql, AUDIT_REFUSE_NPARAMS, params,
	                            QUERY_DEADLINE_MS, on_refused_row, j);
	if (j->q == NULL) {
		j->api->metrics.audit_write_failures++;
		deny_reply(j, &j->denial);
	}
}

/* What the token must be allowed: a single exec's, or a batch's for its targets. */
static unsigned job_scope(const struct exec_job *j)
{
	return j->batch != NULL ? SCOPE_BATCH : SCOPE_EXEC;
}

/* The one statement before the command: the token and the workspace looked up, and the
 * 'running' row inserted if (and only if) the request is authorized. */
static void on_authz_begun(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct exec_job *j = arg;
	struct authz_row r = {0};
	enum authz_verdict v;
	const char *deny_org;
	bool inserted;

	j->q = NULL;
	if (error != NULL && j->req.detach && strcmp(sqlstate, "23505") == 0) {
		/* Two starts with one name raced: the index let one in. */
		lease_drop(j);
		deny(j, "name_in_use", "",
		     "workspace \"%s\" already has a running detached exec named \"%s\"", j->ws_id,
		     j->req.name != NULL ? j->req.name : "");
		return;
	}
	if (error != NULL && j->req.detach &&
	    strcmp(sqlstate, AUDIT_SQLSTATE_DETACHED_QUOTA) == 0) {
		/* Another start took the last place while this one was in flight. */
		lease_drop(j);
		deny(j, "too_many_requests", "",
		     "workspace \"%s\" already has %d detached execs running, the most allowed; "
		     "retry after one ends",
		     j->ws_id, j->api->cfg->workspace_max_detached_execs);
		return;
	}
	if (error != NULL) {
		j->api->metrics.audit_write_failures++;
		log_kv(LOG_ERROR, "could not authorize or audit an exec; the command will not run",
		       "request_id", j->request_id, "exec_id", j->exec_id, "error", error, NULL);
		lease_drop(j);
		job_set_state(j, JOB_BEGIN);
		/* A lost connection may have committed the insert: the row is completed anyway
		 * (a no-op when it does not exist) rather than left running. */
		j->audit_done = j->lease_done = true;
		j->audit_ok = false;
		j->audit_maybe = strcmp(sqlstate, PGASYNC_SQLSTATE_LOST) == 0;
		if (j->audit_maybe)
			api_exec_doubt(j->api, j->exec_id);
		begin_step(j);
		return;
	}
	authz_row_from_result(res, &r);
	inserted =
	    PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_INSERTED), "t") == 0;
	j->has_row = inserted;
	v = authz_decide(&r, job_scope(j), j->api->cfg->min_exec_tier, j->reason != NULL);
	if (v == AUTHZ_UNAUTHORIZED && !inserted) {
		lease_drop(j);
		leasecache_forget(j->api->leases, j->token_hash, j->ws_id);
		exec_reply_error(j, "unauthorized",
		                 r.token_found ? "the token has expired or was revoked"
		                               : "the token is not known to this broker",
		                 NULL);
		job_done(j);
		return;
	}
	copy(j->kind, sizeof(j->kind), res, 0);
	job_log(j)->actor = j->actor;
	/* The org a row is filed under (see deny()). */
	deny_org = PQgetisnull(res, 0, AUDIT_AUTHZ_COL_OWN_ORG)
	               ? ""
	               : PQgetvalue(res, 0, AUDIT_AUTHZ_COL_OWN_ORG);
	if (v == AUTHZ_OK || v == AUTHZ_FORBIDDEN_TIER || v == AUTHZ_REASON_REQUIRED ||
	    v == AUTHZ_NOT_RUNNING)
		deny_org = r.ws_org;
	snprintf(j->org, sizeof(j->org), "%s", deny_org);
	if (inserted && v != AUTHZ_OK) {
		log_kv(LOG_ERROR, "the database authorized an exec the broker refuses",
		       "request_id", j->request_id, "exec_id", j->exec_id, "verdict", authz_code(v),
		       NULL);
		refuse(j, authz_code(v), "the request is not authorized (%s)", authz_code(v));
		return;
	}
	if (v != AUTHZ_OK)
		lease_drop(j);
	if (v != AUTHZ_OK)
		leasecache_forget(j->api->leases, j->token_hash, j->ws_id);
	switch (v) {
	case AUTHZ_NOT_FOUND:
		deny(j, "not_found", j->org, "no workspace \"%s\" that this token can reach",
		     j->ws_id);
		return;
	case AUTHZ_FORBIDDEN_TIER:
		deny(j, "forbidden_tier", j->org,
		     "workspace \"%s\" is tier %d; exec needs tier %d or higher", j->ws_id,
		     r.ws_tier, j->api->cfg->min_exec_tier);
		return;
	case AUTHZ_REASON_REQUIRED:
		deny(j, "break_glass_reason_required", j->org, AUTHZ_REASON_REQUIRED_MESSAGE);
		return;
	case AUTHZ_NOT_RUNNING:
		deny(j, "workspace_not_running", j->org,
		     "workspace \"%s\" is %s; start it before running commands", j->ws_id,
		     r.ws_state);
		return;
	case AUTHZ_MISSING_SCOPE: {
		char msg[200];

		authz_missing_scope_message(job_scope(j), msg, sizeof(msg));
		deny(j, "missing_scope", j->org, "%s", msg);
		return;
	}
	case AUTHZ_OK:
		break;
	case AUTHZ_UNAUTHORIZED:
	default:
		abort();
	}
	if (!inserted && j->req.detach &&
	    strcmp(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_TAKEN), "t") == 0) {
		lease_drop(j);
		deny(j, "name_in_use", j->org,
		     "workspace \"%s\" already has a running detached exec named \"%s\"; pick "
		     "another name or wait until it ends",
		     j->ws_id, j->req.name);
		return;
	}
	if (!inserted && j->req.detach &&
	    strcmp(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_QUOTA), "t") == 0) {
		lease_drop(j);
		deny(j, "too_many_requests", j->org,
		     "workspace \"%s\" already has %d detached execs running, the most allowed; "
		     "retry after one ends",
		     j->ws_id, j->api->cfg->workspace_max_detached_execs);
		return;
	}
	if (!inserted && strcmp(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_ORG_FULL), "t") == 0) {
		lease_drop(j);
		deny(j, "too_many_requests", j->org,
		     "org \"%s\" already has %d execs running on its brokers, the most allowed at "
		     "once; retry after one finishes",
		     j->org, j->api->cfg->org_max_concurrent_execs);
		return;
	}
	if (!inserted) {
		lease_drop(j);
		if (j->api->phase != API_STOPPING)
			log_kv(LOG_ERROR, "the database refused an exec the broker authorizes",
			       "request_id", j->request_id, "exec_id", j->exec_id, NULL);
		deny(j, "shutting_down", j->org, "the broker is shutting down; retry later");
		return;
	}
	job_log(j)->exec_id = j->exec_id; /* X-Exec-Id names a row that exists */
	if (!orgs_enter(&j->api->orgs, j->org, j->api->cfg->org_max_concurrent_execs)) {
		/* The org's execs and the followers of detached output this broker serves. */
		refuse(j, "too_many_requests",
		       "org \"%s\" already has %d execs and followers running, the most allowed "
		       "at once; retry after one finishes",
		       j->org, j->api->cfg->org_max_concurrent_execs);
		return;
	}
	j->org_counted = true;
	job_set_state(j, JOB_BEGIN);
	j->audit_done = j->audit_ok = true;
	/* The session leased meanwhile is the right one unless the workspace moved. */
	char host[sizeof(j->host)], user[sizeof(j->user)], fp[sizeof(j->fp)];
	int port = atoi(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_PORT));
	copy(host, sizeof(host), res, AUDIT_AUTHZ_COL_HOST);
	copy(user, sizeof(user), res, AUDIT_AUTHZ_COL_USER);
	copy(fp, sizeof(fp), res, AUDIT_AUTHZ_COL_FP);
	if (!j->hinted || strcmp(host, j->host) != 0 || port != j->port ||
	    strcmp(user, j->user) != 0 || strcmp(fp, j->fp) != 0) {
		lease_drop(j);
		memcpy(j->host, host, sizeof(host));
		memcpy(j->user, user, sizeof(user));
		memcpy(j->fp, fp, sizeof(fp));
		j->port = port;
		lease_target(j);
	}
	leasecache_put(j->api->leases, j->token_hash, j->ws_id, j->host, j->port, j->user, j->fp);
	begin_step(j);
}

bool exec_media_type_is(const char *value, const char *type)
{
	size_t n = strlen(type);

	while (*value == ' ' || *value == '\t')
		value++;
	return strncasecmp(value, type, n) == 0 &&
	       (value[n] == '\0' || value[n] == ';' || value[n] == ' ' || value[n] == '\t');
}

/* Buffered when the client asks for application/json and not for NDJSON. */
bool exec_wants_buffered(const char *accept)
{
	const char *p;

	if (accept == NULL)
		return false;
	for (p = accept; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (exec_media_type_is(p, "application/x-ndjson"))
			return false;
	}
	for (p = accept; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (exec_media_type_is(p, "application/json"))
			return true;
	}
	return false;
}

bool api_exec_known(const struct api *a, const char *exec_id)
{
	for (const struct exec_job *j = a->jobs; j != NULL; j = j->next)
		if (strcmp(j->exec_id, exec_id) == 0)
			return true;
	return false;
}

/* A new job on the API's list, holding the broker open: every path from here ends in
 * job_done(). NULL when out of memory. */

static struct exec_job *job_new(struct api *a)
{
	struct exec_job *j;

	if (a->reap == NULL)
		a->reap = event_new(a->base, -1, 0, reap_jobs, a);
	j = a->reap != NULL ? calloc(1, sizeof(*j)) : NULL;
	if (j == NULL)
		return NULL;
	j->api = a;
	j->state = JOB_AUTHZ;
	j->next = a->jobs;
	a->jobs = j;
	a->njobs++;
	api_hold(a);
	return j;
}

/* A valid request (j->req, the workspace, the token): its one statement is sent, and the
 * session where this token last ran on this workspace is leased meanwhile. false when out
 * of memory (nothing was sent). */
static bool job_begin(struct exec_job *j)
{
	struct api *a = j->api;
	const char *params[AUDIT_AUTHZ_BEGIN_NPARAMS];
	const struct leasecache_entry *hint;
	struct audit_begin b;
	char *store = NULL;

	/* A detached exec's deadline is its host's business; the broker's is the start's. */
	pool_deadline_after_ms(j->req.detach ? DETACHED_START_MS : (long)j->req.timeout_s * 1000,
	                       &j->deadline);
	if (j->req.detach)
		j->streaming = false; /* the launcher's words are kept, not streamed */
	if (a->leases == NULL)
		a->leases = calloc(1, sizeof(*a->leases));
	if (a->leases == NULL)
		return false;
	audit_new_exec_id(j->exec_id);
	if (j->req.detach && detach_prepare(j) != 0)
		return false;
	fill_audit(j, &b, NULL);
	b.break_glass_reason = j->reason; /* the kind is not known yet: the statement keeps it
	                                     for admin tokens only */
	if (audit_authz_begin_params(&b, j->token_hash, a->cfg->min_exec_tier,
	                             a->phase != API_STOPPING, scope_name(job_scope(j)), params,
	                             &store) == 0)
		j->q = pgasync_query_static(a->db, audit_authz_begin_sql, AUDIT_AUTHZ_BEGIN_NPARAMS,
		                            params, QUERY_DEADLINE_MS, on_authz_begun, j);
	free(store);
	if (j->q == NULL)
		return false;
	hint = leasecache_get(a->leases, j->token_hash, j->ws_id);
	if (hint != NULL) {
		j->hinted = true;
		snprintf(j->host, sizeof(j->host), "%s", hint->host);
		snprintf(j->user, sizeof(j->user), "%s", hint->user);
		snprintf(j->fp, sizeof(j->fp), "%s", hint->fp);
		j->port = hint->port;
		lease_target(j);
	}
	return true;
}

void exec_request_limits(const struct api *a, struct request_limits *lim)
{
	*lim = (struct request_limits){
	    .timeout_default_s = a->cfg->exec_timeout_default_s,
	    .timeout_max_s = a->cfg->exec_timeout_max_s,
	    .detached_default_s = a->cfg->exec_detached_timeout_default_s,
	    .detached_max_s = a->cfg->exec_detached_timeout_max_s,
	    .stdin_max = (size_t)a->cfg->max_body_bytes,
	};
}

struct exec_job *exec_job_start_target(struct api *a, const struct exec_target *t)
{
	struct exec_job *j = job_new(a);

	if (j == NULL)
		return NULL;
	j->batch = t->batch;
	j->batch_ops = t->ops;
	j->batch_index = t->index;
	clock_gettime(CLOCK_MONOTONIC, &j->t0);
	snprintf(j->batch_id, sizeof(j->batch_id), "%s", t->batch_id);
	snprintf(j->request_id, sizeof(j->request_id), "%s", t->request_id);
	snprintf(j->client, sizeof(j->client), "%s", t->client);
	snprintf(j->ws_id, sizeof(j->ws_id), "%s", t->ws_id);
	snprintf(j->token_hash, sizeof(j->token_hash), "%s", t->token_hash);
	snprintf(j->actor, sizeof(j->actor), "%s", t->actor);
	j->own_log.workspace_id = j->ws_id;
	j->streaming = t->streaming;
	/* The batch's command, shared: no copy of its stdin per target. */
	j->req = *t->req;
	json_incref(j->req.root);
	j->req.stdin_borrowed = true;
	if ((t->reason != NULL && (j->reason = strdup(t->reason)) == NULL) || !job_begin(j)) {
		exec_reply_error(j, "audit_unavailable", "out of memory; the command was not run",
		                 NULL);
		job_done(j);
	}
	return j;
}

void exec_job_pause(struct exec_job *j, bool pause)
{
	if (j->paused == pause)
		return;
	/* Kept for an exec not started yet: it starts paused (on_started). */
	j->paused = pause;
	if (j->exec == NULL || j->finished || j->held)
		return;
	if (pause)
		pool_exec_pause(j->exec);
	else
		pool_exec_resume(j->exec);
}

void api_exec_post(struct http_request *r, void *arg)
{
	struct api *a = arg;
	const char *ctype = http_request_header(r, "Content-Type");
	const char *auth = http_request_header(r, "Authorization");
	const char *reason = http_request_header(r, "X-Break-Glass-Reason");
	const char *ws = http_request_param(r, 0);
	struct request_limits lim;
	struct request_error rerr;
	struct exec_job *j;
	const char *why, *body;
	size_t len;
	int rc;

	if (a->phase != API_SERVING) {
		http_reply_error(
		    r, "shutting_down",
		    "the broker is shutting down; retry on another instance or after it "
		    "restarts",
		    NULL);
		return;
	}
	if (strlen(ws) >= sizeof(j->ws_id)) {
		http_reply_error(r, "not_found", "no such endpoint", NULL);
		return;
	}
	exec_request_limits(a, &lim);
	j = job_new(a);
	if (j == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	j->http = r;
	snprintf(j->request_id, sizeof(j->request_id), "%s", http_request_id(r));
	snprintf(j->client, sizeof(j->client), "%s", http_request_client(r));
	snprintf(j->ws_id, sizeof(j->ws_id), "%s", ws);
	http_request_log(r)->workspace_id = j->ws_id;
	j->streaming = !exec_wants_buffered(http_request_header(r, "Accept"));

	if (ctype == NULL || !exec_media_type_is(ctype, "application/json")) {
		exec_reply_error(j, "unsupported_media_type",
		                 "the body must be JSON, sent with Content-Type: application/json",
		                 NULL);
		goto done;
	}
	why = authz_bearer(auth, j->token_hash, j->actor);
	if (why != NULL) {
		exec_reply_error(j, "unauthorized", why, NULL);
		goto done;
	}
	if (reason != NULL) {
		if (!authz_reason_valid(reason)) {
			exec_reply_error(j, "invalid_request",
			                 "X-Break-Glass-Reason must be 1-500 printable characters",
			                 "X-Break-Glass-Reason");
			goto done;
		}
		j->reason = strdup(reason);
	}
	body = http_request_body(r, &len);
	rc = request_parse(body, len, &lim, &j->req, &rerr);
	if (rc != 0) {
		exec_reply_error(j, rerr.code, rerr.message,
		                 rerr.field[0] != '\0' ? rerr.field : NULL);
		goto done;
	}
	if (!ids_valid_name(j->ws_id)) {
		exec_reply_error(j, "not_found", "no such workspace", NULL);
		goto done;
	}
	http_request_on_close(r, on_client_gone, j);
	if (!job_begin(j)) {
		exec_reply_error(j, "audit_unavailable", "out of memory", NULL);
		goto done;
	}
	return;
done:
	job_done(j);
}
