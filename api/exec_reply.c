/* api/exec_reply.c: an exec's output and outcome as its client receives them: the NDJSON
 * stream with its frames and backpressure, the buffered document, the error of an exec
 * that never started. */
#include "api/exec_reply.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "audit/filter.h"
#include "common/utf8.h"
#include "http/apierr.h"

/* Streaming backpressure: above HIGH bytes waiting for the client, the exec's reading
 * pauses; it resumes once they are down to LOW. */
#define STREAM_HIGH_WATER (64 * 1024)
#define STREAM_LOW_WATER  (16 * 1024)

static const char *const stream_names[] = {"", "stdout", "stderr"};

static void send_chunk(struct exec_job *j, const char *data, size_t len);
static void send_frame(struct exec_job *j, char *line, size_t len);

void exec_reply_error(struct exec_job *j, const char *code, const char *message, const char *field)
{
	if (j->batch != NULL) {
		j->batch_ops->ended(j->batch, j, code, message);
		return;
	}
	http_reply_error(j->http, code, message, field);
	j->http = NULL;
}

/* Sends o (taken over) as one NDJSON line (a batch's target: with its ids). */
static void send_json_frame(struct exec_job *j, json_t *o)
{
	char *line, *framed;
	size_t n;

	if (j->batch != NULL && o != NULL)
		json_object_del(o, "exec_id"); /* the batch puts the ids first */
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (line == NULL)
		return;
	n = strlen(line);
	if (j->batch != NULL) {
		framed = realloc(line, n + 2);
		if (framed == NULL) {
			free(line);
			return;
		}
		memcpy(framed + n, "\n", 2);
		j->batch_ops->frame(j->batch, j, framed, n + 1);
		return;
	}
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

/* exit_code and signal of an exec that exited or was killed by a signal: one is null. */
static void exit_fields(const struct exec_job *j, json_t *o)
{
	bool exited = j->outcome.kind == POOL_EXITED;

	json_object_set_new(o, "exit_code",
	                    exited ? json_integer(j->outcome.exit_code) : json_null());
	json_object_set_new(o, "signal", exited ? json_null() : json_string(j->outcome.signal));
}

/* The error of an exec that ran (or was on its way) and did not exit: code and message. */
const char *exec_reply_outcome_error(const struct exec_job *j, const char **message)
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
	case POOL_FAILED_TO_START:
		/* Started on its channel, then refused by the host before the program ran. */
		*message = "the command could not start on the workspace host; it was not run";
		return j->error_code != NULL ? j->error_code : "transport_error";
	case POOL_TRANSPORT_ERROR:
	default:
		*message = "the SSH connection to the workspace host broke while the command ran; "
		           "its outcome is unknown";
		return "transport_error";
	}
}

/* The API code of an outcome when it is told in a plain reply rather than a last frame:
 * nobody is left to read "cancelled", and a request refused before its command started says
 * "shutting_down" (503: nothing ran, retry elsewhere). A command that ran and was killed at
 * shutdown stays "shutdown" (502), never a 503 a balancer or a client would retry. */
const char *exec_reply_code(const struct exec_job *j)
{
	const char *msg, *code = exec_reply_outcome_error(j, &msg);

	if (strcmp(code, "shutdown") == 0 && !j->started)
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
		exit_fields(j, o);
		counts(j, o);
		json_object_set_new(o, "truncated",
		                    json_pack("{s:b, s:b}", "stdout", j->truncated[POOL_STDOUT],
		                              "stderr", j->truncated[POOL_STDERR]));
	} else {
		code = exec_reply_outcome_error(j, &msg);
		o = counts(j, json_pack("{s:{s:s, s:s}, s:s}", "error", "code", code, "message",
		                        msg, "exec_id", j->exec_id));
	}
	send_json_frame(j, o);
}

void exec_reply_output_fields(struct exec_job *j, json_t *o)
{
	char *out[3] = {NULL, NULL, NULL};
	size_t len[3] = {0};
	bool utf8 = true;

	for (int i = 1; i <= 2; i++) {
		bool incomplete;

		if (j->kept[i] == NULL)
			continue;
		len[i] = evbuffer_get_length(j->kept[i]);
		out[i] = (char *)evbuffer_pullup(j->kept[i], -1);
		if (utf8_valid_prefix((const unsigned char *)out[i], len[i], &incomplete) != len[i])
			utf8 = false;
	}
	for (int i = 1; i <= 2; i++) {
		if (utf8) {
			json_object_set_new(o, stream_names[i],
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
	json_object_set_new(o, "truncated",
	                    json_boolean(j->truncated[POOL_STDOUT] || j->truncated[POOL_STDERR]));
}

/* Buffered mode: one JSON document. */
static void send_document(struct exec_job *j)
{
	const char *code, *msg;
	char *body;
	json_t *o;
	int status = 200;

	if (j->outcome.kind != POOL_EXITED && j->outcome.kind != POOL_SIGNALED) {
		exec_reply_outcome_error(j, &msg);
		code = exec_reply_code(j);
		status = apierr_status(code);
		o = counts(j, json_pack("{s:{s:s, s:s}, s:s}", "error", "code", code, "message",
		                        msg, "exec_id", j->exec_id));
		http_request_log(j->http)->error = code;
	} else {
		o = json_object();
		json_object_set_new(o, "exec_id", json_string(j->exec_id));
		json_object_set_new(o, "workspace_id", json_string(j->ws_id));
		exit_fields(j, o);
		exec_reply_output_fields(j, o);
		counts(j, o);
	}
	body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	http_reply(j->http, status, "application/json", body != NULL ? body : "",
	           body != NULL ? strlen(body) : 0);
	j->http = NULL;
	free(body);
}

/* What the client of an exec that never started is told, by API code. */
static const struct {
	const char *code, *message;
} start_failures[] = {
    {"audit_unavailable", "the audit log cannot be written (database unreachable); the "
                          "command was not run"},
    {"ssh_connect_failed", "cannot connect to the workspace host over SSH; the command was not "
                           "run"},
    {"host_key_mismatch", "the workspace host's SSH key does not match its pinned fingerprint; "
                          "an administrator must check the host and re-pin it; the command was "
                          "not run"},
    {"ssh_auth_failed", "the workspace host refused the broker's SSH key; the command was not "
                        "run"},
    {"pool_exhausted", "no SSH session to the workspace host became free in time; retry later"},
    {"shutting_down", "the broker is shutting down; the command was not run"},
    {"exec_timeout", "the timeout passed before the command could start; it was not run"},
    {"cancelled", "the batch was cancelled before the command started; it was not run"},
    {"shutdown", "the broker shut down before the command started; it was not run"},
    {"transport_error", "the SSH connection to the workspace host broke as the command was "
                        "starting; its outcome is unknown"},
};

static void send_start_failure(struct exec_job *j)
{
	const char *msg = "the workspace host refused to start the command";

	for (size_t i = 0; i < sizeof(start_failures) / sizeof(start_failures[0]); i++)
		if (strcmp(start_failures[i].code, j->fail_code) == 0)
			msg = start_failures[i].message;
	if (j->fail_message[0] != '\0')
		msg = j->fail_message;
	exec_reply_error(j, j->fail_code, msg, NULL);
}

static void on_drained(struct http_request *r, void *arg)
{
	struct exec_job *j = arg;

	(void)r;
	if (j->paused && j->exec != NULL && !j->finished) {
		j->paused = false;
		pool_exec_resume(j->exec);
	}
}

static bool can_send(const struct exec_job *j)
{
	return j->http != NULL && !j->client_gone && j->chunk != NULL;
}

/* Hands j->chunk to the stream as one HTTP chunk and pauses the exec when the client falls
 * behind. */
static void flush_chunk(struct exec_job *j)
{
	http_stream_write(j->http, j->chunk);
	if (!j->paused && j->exec != NULL && !j->finished &&
	    http_stream_backlog(j->http) > STREAM_HIGH_WATER) {
		j->paused = true;
		pool_exec_pause(j->exec);
	}
}

static void send_chunk(struct exec_job *j, const char *data, size_t len)
{
	if (j->batch != NULL) {
		char *line = malloc(len);

		if (line != NULL) {
			memcpy(line, data, len);
			j->batch_ops->frame(j->batch, j, line, len);
		}
		return;
	}
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
	if (j->batch != NULL) {
		j->batch_ops->frame(j->batch, j, line, len);
		return;
	}
	if (!can_send(j) || evbuffer_add_reference(j->chunk, line, len, free_frame, NULL) != 0) {
		free(line);
		return;
	}
	flush_chunk(j);
}

void exec_reply_detached(struct exec_job *j)
{
	struct timeval now;
	char started[32], location[64];
	json_t *argv, *o;

	if (j->batch != NULL) {
		j->batch_ops->detached(j->batch, j);
		return;
	}
	argv = json_array();
	gettimeofday(&now, NULL);
	audit_time_format((long long)now.tv_sec * 1000000 + now.tv_usec, started);
	for (size_t i = 0; i < j->req.argc; i++)
		json_array_append_new(argv, json_stringn(j->req.argv[i].p, j->req.argv[i].len));
	o = json_pack("{s:s, s:s, s:o, s:o, s:b, s:s, s:n, s:n, s:n, s:s, s:n, s:n, s:i, s:i, s:i,"
	              " s:{s:b, s:n, s:{s:i, s:i}, s:{s:i, s:i}}}",
	              "exec_id", j->exec_id, "workspace_id", j->ws_id, "name",
	              j->req.name != NULL ? json_string(j->req.name) : json_null(), "argv", argv,
	              "detached", 1, "status", "running", "exit_code", "signal", "error_code",
	              "started_at", started, "finished_at", "duration_ms", "stdout_bytes", 0,
	              "stderr_bytes", 0, "timeout_s", j->req.timeout_s, "output", "retained", 1,
	              "expires_at", "stdout", "from", 0, "to", 0, "stderr", "from", 0, "to", 0);
	snprintf(location, sizeof(location), "/v1/execs/%s", j->exec_id);
	if (o == NULL) {
		/* The command runs: never a 503, which says nothing ran and may be retried. */
		http_reply(j->http, 500, "application/json", "", 0);
		j->http = NULL;
		return;
	}
	http_reply_header(j->http, "Location", location);
	http_reply_json(j->http, 202, o);
	j->http = NULL;
}

void exec_reply_started(struct exec_job *j)
{
	json_t *o;

	if (!j->streaming || j->client_gone || j->batch != NULL)
		return;
	http_stream_start(j->http, "application/x-ndjson");
	j->chunk = evbuffer_new();
	http_stream_on_drained(j->http, STREAM_LOW_WATER, on_drained, j);
	o = json_pack("{s:s, s:s, s:i}", "exec_id", j->exec_id, "workspace_id", j->ws_id,
	              "timeout_s", j->req.timeout_s);
	send_json_frame(j, o);
}

void exec_reply_output(struct exec_job *j, enum pool_stream s, const char *buf, size_t len)
{
	uint64_t cap = (uint64_t)j->api->cfg->output_cap_bytes, room;
	size_t n;
	char *f = NULL;

	if (j->truncated[s])
		return; /* counted by the pool, not sent */
	room = cap - j->sent[s];
	n = len < room ? len : (size_t)room;
	if (!j->streaming && j->batch != NULL && n > 0)
		n = j->batch_ops->keep(j->batch, n); /* the batch's own limit of what it keeps */
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

/* A batch's target: its last frame (streamed), then its end to the batch. */
static void target_final(struct exec_job *j)
{
	const char *code, *msg;

	/* Ended before it started: the outcome's own code (its summary says "cancelled", as its
	 * row does, where a plain reply would say what its client can still read). */
	if (j->fail_code == NULL && !j->started && j->outcome.kind != POOL_EXITED &&
	    j->outcome.kind != POOL_SIGNALED)
		j->fail_code = exec_reply_outcome_error(j, &msg);
	if (j->fail_code != NULL) {
		send_start_failure(j);
		return;
	}
	if (j->streaming)
		send_last_frame(j);
	if (j->outcome.kind == POOL_EXITED || j->outcome.kind == POOL_SIGNALED) {
		j->batch_ops->ended(j->batch, j, NULL, NULL);
		return;
	}
	code = exec_reply_outcome_error(j, &msg);
	j->batch_ops->ended(j->batch, j, code, msg);
}

void exec_reply_final(struct exec_job *j)
{
	if (j->batch != NULL) {
		target_final(j);
		return;
	}
	if (j->client_gone) {
		/* Nobody reads a reply: the request goes away with its connection. */
		http_request_drop(j->http);
		j->http = NULL;
		return;
	}
	if (j->fail_code == NULL && j->streaming && !j->started) {
		/* Ended before the reply started (the client left first): a plain error. */
		j->fail_code = exec_reply_code(j);
	}
	if (j->fail_code != NULL) {
		send_start_failure(j);
	} else if (!j->streaming) {
		send_document(j);
	} else if (j->http != NULL) {
		send_last_frame(j);
		http_stream_end(j->http);
		j->http = NULL;
	}
}
