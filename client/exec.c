/* client/exec.c: `exec-broker exec`, the API's client for people and scripts. One
 * POST /v1/workspaces/{id}/exec (client/stream.c); the NDJSON frames are decoded onto this
 * process's stdout and stderr as they arrive, and the outcome (the last frame, or the API
 * error, or how the connection failed) becomes the exit status. A batch (--org,
 * --workspaces) shares the command line and the body, and runs in batch.c. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/batch.h"
#include "client/client.h"
#include "client/common.h"
#include "client/detached.h"
#include "client/exec_args.h"
#include "client/stream.h"
#include "common/fdio.h"

/* Starts a detached exec: the 202 reply's exec_id (or, with --json, the exec object) on
 * stdout. Returns the exit status. */
static int start_detached(struct client_conn *cn, const char *path, const char *body, int timeout_s,
                          bool json)
{
	struct client_reply r;
	const char *id;
	int rc = client_call(cn, EVHTTP_REQ_POST, path, body, timeout_s, &r);

	if (rc != 0)
		goto out;
	id = json_string_value(json_object_get(r.json, "exec_id"));
	if (id == NULL)
		id = detached_id_from_location(r.location);
	if (r.status != 202 || id == NULL) {
		/* A broker without detached execs refuses the field (400); one that took
		 * it for an attached exec would have answered 200 once the command ended. */
		cli_error("exec: the broker answered HTTP %d without a detached exec's id",
		          r.status);
		rc = CLIENT_EXIT_API;
	} else if (json) {
		rc = client_reply_print(&r);
	} else if (fdio_write_all(1, id, strlen(id), -1) != 0 ||
	           fdio_write_all(1, "\n", 1, -1) != 0) {
		rc = 128 + SIGPIPE;
	}
out:
	client_reply_free(&r);
	return rc;
}

/* One exec as it streams: what its frames have said so far. */
struct exec_client {
	struct client_stream st;
	struct client_conn *cn;
	bool json;   /* --json */
	int nframes; /* frames seen */
	bool trunc[2];
	char exec_id[64];
};

/* One output frame {"stream","data","encoding"?}: its bytes to fd 1 or 2. */
static int output_frame(struct exec_client *c, json_t *f, const char *stream)
{
	struct client_output o;
	int rc;

	if (client_output_decode(f, stream, &o) != 0)
		return -1;
	if (o.fd < 0)
		return 0;
	if (o.truncated) {
		c->trunc[o.fd - 1] = true;
		return 0;
	}
	rc = fdio_write_all(o.fd, o.data, o.len, -1);
	client_output_free(&o);
	if (rc != 0) {
		/* Our own stdout or stderr went away (as `| head` does): stop, as SIGPIPE
		 * would have stopped us; the broker then cancels the command. */
		client_stream_stop(&c->st, 128 + SIGPIPE);
	}
	return 0;
}

/* The last frame: the exit code, the signal or the error. */
static void last_frame(struct exec_client *c, json_t *f)
{
	json_t *code = json_object_get(f, "exit_code"), *err = json_object_get(f, "error");
	const char *sig = json_string_value(json_object_get(f, "signal"));
	int exit_status;

	if (!c->json)
		for (int i = 0; i < 2; i++)
			if (c->trunc[i])
				cli_error("the remote %s was cut at the broker's output_cap_bytes; "
				          "the rest was not sent",
				          i == 0 ? "stdout" : "stderr");
	if (json_is_integer(code)) {
		exit_status = (int)(json_integer_value(code) & 0xff);
	} else if (sig != NULL) {
		int n = client_signal_number(sig);
		if (n == 0) {
			cli_error("the remote command was ended by signal %s, unknown here", sig);
			exit_status = CLIENT_EXIT_API;
		} else {
			exit_status = 128 + n;
		}
	} else if (json_is_object(err) && client_print_api_error(err)) {
		exit_status =
		    client_exit_of_error(0, json_string_value(json_object_get(err, "code")));
	} else {
		cli_error("the broker's last frame says neither an exit code, a signal nor an "
		          "error");
		exit_status = CLIENT_EXIT_API;
	}
	client_stream_decide(&c->st, exit_status);
}

static void first_frame(struct exec_client *c, json_t *f)
{
	const char *id = json_string_value(json_object_get(f, "exec_id"));

	if (id != NULL)
		snprintf(c->exec_id, sizeof(c->exec_id), "%s", id);
	client_conn_set_silence(c->cn, json_object_get(f, "timeout_s"));
}

/* One NDJSON line. -1 if it is not a frame. */
static int handle_frame(struct exec_client *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *f = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	const char *stream;
	int rc = 0;

	if (!json_is_object(f)) {
		json_decref(f);
		return -1;
	}
	if (c->json &&
	    (fdio_write_all(1, line, len, -1) != 0 || fdio_write_all(1, "\n", 1, -1) != 0)) {
		json_decref(f);
		client_stream_stop(&c->st, 128 + SIGPIPE);
		return 0;
	}
	c->nframes++;
	stream = json_string_value(json_object_get(f, "stream"));
	if (stream != NULL) {
		if (!c->json)
			rc = output_frame(c, f, stream);
		else if (json_is_true(json_object_get(f, "truncated")))
			c->trunc[strcmp(stream, "stdout") == 0 ? 0 : 1] = true;
	} else if (json_object_get(f, "exit_code") != NULL || json_object_get(f, "error") != NULL) {
		last_frame(c, f);
	} else if (c->nframes == 1) {
		first_frame(c, f);
	}
	/* Anything else is a frame of a newer broker: ignored. */
	json_decref(f);
	return rc;
}

static void on_line(void *arg, const char *line, size_t len)
{
	struct exec_client *c = arg;

	if (handle_frame(c, line, len) != 0 && c->st.state == STREAM_LINES)
		client_stream_stop_bad_line(&c->st, "exec");
}

/* Runs the exec, its output onto ours. Returns the exit status. */
static int run_attached(struct client_conn *cn, const char *path, const char *body, bool json)
{
	struct exec_client c = {.cn = cn, .json = json};

	c.st.id = c.exec_id;
	return client_stream_call(&c.st, cn, EVHTTP_REQ_POST, path, body, on_line, &c, "exec");
}

/* The stdin to pass on, as the arguments say: none (*in NULL), a file or ours. 0, or
 * CLIENT_EXIT_USAGE after printing why. */
static int read_stdin(const struct exec_args *a, char **in, size_t *inlen)
{
	int rc;

	*in = NULL;
	*inlen = 0;
	if (a->stdin_file == NULL && !a->stdin_all)
		return 0;
	rc = a->stdin_all ? client_read_all(0, in, inlen)
	                  : client_read_file(a->stdin_file, in, inlen);
	if (rc != 0) {
		cli_error("exec: cannot read %s: %s", a->stdin_all ? "stdin" : a->stdin_file,
		          strerror(errno));
		return CLIENT_EXIT_USAGE;
	}
	return 0;
}

int client_exec(struct cli *cli, int argc, char **argv)
{
	struct exec_args a;
	struct client_conn cn = {0};
	char *body = NULL, *path = NULL, *in = NULL;
	size_t inlen = 0;
	int rc, t;

	rc = exec_args_parse(argc, argv, &a);
	if (rc == CLI_PARSED_HELP) {
		rc = CLI_EXIT_OK;
		goto out;
	}
	if (rc != 0)
		goto out;
	rc = client_conn_init(&cn, "exec", a.url, a.cacert);
	if (rc == 0)
		rc = client_conn_auth(&cn, cli, a.token_file, a.reason);
	if (rc == 0 && a.batch)
		rc = batch_confirm(&a);
	if (rc == 0)
		rc = read_stdin(&a, &in, &inlen);
	if (rc == 0)
		rc = exec_args_body(&a, in, inlen, &body);
	if (rc != 0)
		goto out;
	path = a.batch ? client_conn_path(&cn, "/v1/batches", "", "")
	               : client_conn_path(&cn, "/v1/workspaces/", a.ws, "/exec");
	if (path == NULL) {
		cli_error("exec: out of memory");
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	t = a.timeout_s > 0 ? a.timeout_s : CLIENT_MAX_TIMEOUT_S;
	if (a.detach) {
		rc = start_detached(&cn, path, body, t + CLIENT_SLACK_TIMEOUT_S, a.json);
	} else {
		rc = client_conn_connect(&cn, t + CLIENT_SLACK_TIMEOUT_S);
		if (rc == 0)
			rc = a.batch ? batch_run(&cn, path, body, a.json)
			             : run_attached(&cn, path, body, a.json);
	}
out:
	client_conn_free(&cn);
	if (in != NULL)
		explicit_bzero(in, inlen);
	free(in);
	if (body != NULL)
		explicit_bzero(body, strlen(body));
	free(body);
	free(path);
	exec_args_free(&a);
	return rc;
}
