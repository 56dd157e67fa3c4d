/* client/execs.c: `exec-broker ps`, `kill` and `wait`, the detached execs' subcommands
 * that are one request each (ps, kill) or a loop of long polls (wait). Their command lines
 * are detached_args.c's; what the replies mean is detached.c's; here are the requests. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "client/common.h"
#include "client/detached.h"
#include "client/detached_args.h"
#include "common/table.h"

#define PS_ARGV_MAX 60 /* characters of argv in ps's table */
#define WAIT_MAX_S  60 /* the longest wait_s the API takes */

/* A request the broker answers at once (not a long poll) may still wait for a database
 * connection or an SSH channel: this long. */
#define CALL_TIMEOUT_S CLIENT_SLACK_TIMEOUT_S

/* Parses the command line, then the URL and the token. 0, CLI_PARSED_HELP, or an exit
 * status after printing why. */
static int open_broker(enum detached_cmd cmd, const char *what, struct cli *cli, int argc,
                       char **argv, struct detached_args *a, struct client_conn *cn)
{
	int rc = detached_args_parse(cmd, argc, argv, a);

	if (rc != 0)
		return rc;
	return client_conn_setup(cn, cli, what, a->url, a->cacert, a->token_file, a->reason);
}

/* The string member key of o, or "-". */
static const char *str_or_dash(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "-";
}

static int add_row(struct table *t, json_t *e)
{
	char exitbuf[32];
	char *argv = detached_argv_display(json_object_get(e, "argv"), PS_ARGV_MAX);
	const char *row[] = {str_or_dash(e, "exec_id"),    str_or_dash(e, "name"),
	                     str_or_dash(e, "status"),     detached_exit_column(e, exitbuf, 32),
	                     str_or_dash(e, "started_at"), argv};
	int rc = argv != NULL ? table_add_row(t, row) : -1;

	free(argv);
	return rc;
}

/* {"execs":[...]} as a table on stdout. 0 or an exit status. */
static int print_table(json_t *doc)
{
	static const char *const headers[] = {"EXEC_ID", "NAME",    "STATUS",
	                                      "EXIT",    "STARTED", "ARGV"};
	json_t *execs = json_object_get(doc, "execs"), *e;
	struct table *t;
	size_t i;

	if (!json_is_array(execs)) {
		cli_error("ps: the broker's reply has no list of execs");
		return CLIENT_EXIT_API;
	}
	t = table_new(6, headers);
	if (t == NULL)
		goto nomem;
	json_array_foreach(execs, i, e)
	{
		if (add_row(t, e) != 0)
			goto nomem;
	}
	table_print(t, stdout);
	table_free(t);
	return fflush(stdout) == 0 ? 0 : 128 + SIGPIPE;
nomem:
	table_free(t);
	cli_error("ps: out of memory");
	return CLIENT_EXIT_API;
}

int client_ps(struct cli *cli, int argc, char **argv)
{
	struct detached_args a;
	struct client_conn cn = {0};
	struct client_reply r = {0};
	char *query = NULL, *suffix = NULL, *path = NULL;
	int rc = open_broker(DETACHED_PS, "ps", cli, argc, argv, &a, &cn);

	if (rc != 0)
		goto out;
	query = detached_query_list(a.status, a.name);
	if (query == NULL || asprintf(&suffix, "/execs%s", query) < 0)
		suffix = NULL;
	path = suffix != NULL ? client_conn_path(&cn, "/v1/workspaces/", a.ws, suffix) : NULL;
	if (path == NULL) {
		cli_error("ps: out of memory");
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	rc = client_call(&cn, EVHTTP_REQ_GET, path, NULL, CALL_TIMEOUT_S, &r);
	if (rc == 0)
		rc = a.json ? client_reply_print(&r) : print_table(r.json);
out:
	client_reply_free(&r);
	client_conn_free(&cn);
	free(query);
	free(suffix);
	free(path);
	return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
}

int client_kill(struct cli *cli, int argc, char **argv)
{
	struct detached_args a;
	struct client_conn cn = {0};
	struct client_reply r = {0};
	char *path = NULL, body[64];
	int rc = open_broker(DETACHED_KILL, "kill", cli, argc, argv, &a, &cn);

	if (rc != 0)
		goto out;
	path = client_conn_path(&cn, "/v1/execs/", a.exec_id, a.signal != NULL ? "/signal" : "");
	if (path == NULL) {
		cli_error("kill: out of memory");
		rc = CLIENT_EXIT_USAGE;
		goto out;
	}
	if (a.signal != NULL) {
		snprintf(body, sizeof(body), "{\"signal\":\"%s\"}", a.signal);
		rc = client_call(&cn, EVHTTP_REQ_POST, path, body, CALL_TIMEOUT_S, &r);
	} else {
		rc = client_call(&cn, EVHTTP_REQ_DELETE, path, NULL, CALL_TIMEOUT_S, &r);
	}
out:
	client_reply_free(&r);
	client_conn_free(&cn);
	free(path);
	return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The exit status of an exec that no longer runs, after a line saying how it ended when
 * that is not an exit code or a signal. */
static int wait_outcome(const char *id, json_t *exec)
{
	const char *why, *status = json_string_value(json_object_get(exec, "status"));
	const char *code = json_string_value(json_object_get(exec, "error_code"));
	int rc = detached_exit_of_exec(exec, &why);

	if (status == NULL)
		status = "none";
	if (why != NULL)
		cli_error("%s: exec %s %s (status %s)", code != NULL ? code : status, id, why,
		          status);
	return rc;
}

/* One long poll of at most wait_s. Its exit status, or DETACHED_RUNNING. */
static int wait_poll(struct client_conn *cn, const char *id, int wait_s)
{
	struct client_reply r;
	char query[32], *path;
	int rc;

	detached_query_wait(query, sizeof(query), wait_s);
	path = client_conn_path(cn, "/v1/execs/", id, query);
	if (path == NULL) {
		cli_error("wait: out of memory");
		return CLIENT_EXIT_USAGE;
	}
	rc = client_call(cn, EVHTTP_REQ_GET, path, NULL, wait_s + CLIENT_SLACK_TIMEOUT_S, &r);
	if (rc == 0 && r.json == NULL) {
		cli_error("wait: the broker's reply is not an exec object");
		rc = CLIENT_EXIT_API;
	} else if (rc == 0) {
		rc = wait_outcome(id, r.json);
	}
	client_reply_free(&r);
	free(path);
	return rc;
}

/* Polls until the exec ends, or until timeout_s (-1: no limit) has passed. */
static int wait_loop(struct client_conn *cn, const char *id, int timeout_s)
{
	long long end = now_ms() + (long long)timeout_s * 1000, t0;
	const struct timespec second = {1, 0};
	int wait_s, rc;

	for (;;) {
		wait_s = WAIT_MAX_S;
		if (timeout_s >= 0 && (end - now_ms() + 999) / 1000 < wait_s)
			wait_s = (int)((end - now_ms() + 999) / 1000);
		if (wait_s < 0)
			wait_s = 0;
		t0 = now_ms();
		rc = wait_poll(cn, id, wait_s);
		if (rc != DETACHED_RUNNING)
			return rc;
		if (timeout_s >= 0 && now_ms() >= end) {
			cli_error("exec %s is still running: wait gave up after %d s", id,
			          timeout_s);
			return CLIENT_EXIT_STILL_RUNNING;
		}
		/* A broker that answers a long poll at once would be asked in a tight loop. */
		if (now_ms() - t0 < 1000)
			nanosleep(&second, NULL);
	}
}

int client_wait(struct cli *cli, int argc, char **argv)
{
	struct detached_args a;
	struct client_conn cn = {0};
	int rc = open_broker(DETACHED_WAIT, "wait", cli, argc, argv, &a, &cn);

	if (rc == 0)
		rc = wait_loop(&cn, a.exec_id, a.timeout_s);
	client_conn_free(&cn);
	return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
}
