/* client/logs.c: `exec-broker logs`, the output of a detached exec onto this process's
 * stdout and stderr. One GET /v1/execs/{id}/output per attempt (client/stream.c); with -f,
 * a reply that breaks off is resumed from the offsets just past the bytes written
 * (detached_follow_frame), so that every byte is written exactly once. */
#include <errno.h>
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
#include "client/stream.h"
#include "common/fdio.h"

/* Attempts in a row that may bring no byte before logs -f gives up. */
#define LOGS_MAX_RECONNECTS 10
/* What an attempt returns when the reply broke off and -f should resume it. */
#define LOGS_AGAIN (-2)

/* One run of logs, across its attempts. */
struct logs {
	struct client_conn *cn;
	struct client_stream st; /* the current attempt's request */
	struct detached_follow d;
	const char *exec_id;
	bool json;     /* --json */
	bool answered; /* some attempt had a reply: the broker is there */
	char why[128]; /* why the last attempt broke off */
};

static void note_lost(int fd, long long n)
{
	cli_error("%lld bytes of %s were no longer kept", n, fd == 1 ? "stdout" : "stderr");
}

/* Writes n bytes to fd; when fd is gone (as `| head` does), stops as SIGPIPE would. */
static int write_or_stop(struct logs *l, int fd, const char *p, size_t n)
{
	if (fdio_write_all(fd, p, n, -1) == 0)
		return 0;
	client_stream_stop(&l->st, 128 + SIGPIPE);
	return -1;
}

static void act(struct logs *l, const struct detached_step *st)
{
	switch (st->kind) {
	case DFRAME_FIRST:
		if (l->d.follow)
			client_conn_set_silence(l->cn, st->timeout_s);
		break;
	case DFRAME_OUTPUT:
		if (!l->json && st->lost > 0)
			note_lost(st->fd, st->lost);
		if (!l->json)
			write_or_stop(l, st->fd, st->out.data + st->skip, st->out.len - st->skip);
		break;
	case DFRAME_SKIPPED:
		if (!l->json && st->lost > 0)
			note_lost(st->fd, st->lost);
		break;
	case DFRAME_LAST:
		client_stream_decide(&l->st, 0); /* logs does not pass the exec's status on */
		break;
	case DFRAME_OTHER:
		break;
	default:
		abort();
	}
}

/* One NDJSON line. -1 if it is not a frame. */
static int handle_frame(struct logs *l, const char *line, size_t len)
{
	json_t *f = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	struct detached_step st;
	int rc = -1;

	if (!json_is_object(f))
		goto out;
	rc = 0;
	if (l->json && (write_or_stop(l, 1, line, len) != 0 || write_or_stop(l, 1, "\n", 1) != 0))
		goto out;
	if (detached_follow_frame(&l->d, f, &st) == 0)
		act(l, &st);
	else
		rc = -1;
	client_output_free(&st.out); /* detached_follow_frame cleared st first */
out:
	json_decref(f);
	return rc;
}

static void on_line(void *arg, const char *line, size_t len)
{
	struct logs *l = arg;

	if (handle_frame(l, line, len) != 0 && l->st.state == STREAM_LINES) {
		cli_error("the broker sent a line that is not a frame; the output of exec %s "
		          "stops here",
		          l->exec_id);
		client_stream_stop(&l->st, CLIENT_EXIT_NO_LAST_FRAME);
	}
}

/* The outcome of an attempt whose loop ended: its exit status, or LOGS_AGAIN. */
static int attempt_outcome(struct logs *l)
{
	char buf[128];

	if (l->st.status != 0)
		l->answered = true;
	if (l->st.state == STREAM_DECIDED)
		return l->st.exit;
	if (!l->answered) {
		client_print_unreachable(l->cn, &l->st.neterr);
		return CLIENT_EXIT_UNREACHABLE;
	}
	snprintf(l->why, sizeof(l->why), "%s",
	         l->st.state == STREAM_ENDED ? client_stream_why(&l->st, buf, sizeof(buf))
	                                     : "the connection ended");
	if (l->d.follow)
		return LOGS_AGAIN;
	cli_error("the output of exec %s broke off (%s)", l->exec_id, l->why);
	return CLIENT_EXIT_NO_LAST_FRAME;
}

/* One request for the output from where the last one left. */
static int logs_attempt(struct logs *l)
{
	char query[128], suffix[160], *path;
	int rc;

	memset(&l->st, 0, sizeof(l->st));
	l->st.id = l->exec_id;
	l->d.nframes = 0;
	l->d.progressed = false;
	detached_query_output(query, sizeof(query), l->d.next, l->d.follow);
	snprintf(suffix, sizeof(suffix), "/output%s", query);
	path = client_conn_path(l->cn, "/v1/execs/", l->exec_id, suffix);
	if (path == NULL) {
		cli_error("logs: out of memory");
		return CLIENT_EXIT_USAGE;
	}
	/* Following, the reply may be silent as long as the exec may run (the first frame
	 * says how long); else it is what is there, sent at once. */
	rc = client_conn_connect(l->cn, l->d.follow ? CLIENT_MAX_TIMEOUT_S + CLIENT_SLACK_TIMEOUT_S
	                                            : CLIENT_SLACK_TIMEOUT_S);
	if (rc == 0)
		rc = client_stream_start(&l->st, l->cn, EVHTTP_REQ_GET, path, NULL, on_line, l);
	if (rc == 0) {
		client_stream_run(&l->st);
		rc = attempt_outcome(l);
	}
	client_conn_disconnect(l->cn); /* before the stream its request points to */
	client_stream_free(&l->st);
	free(path);
	return rc;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Attempts until one decides: a last frame, an API error, or too many in a row that
 * brought nothing. */
static int logs_run(struct logs *l)
{
	int tries = 0, rc;

	for (;;) {
		rc = logs_attempt(l);
		if (rc != LOGS_AGAIN)
			return rc;
		if (l->d.progressed)
			tries = 0;
		if (++tries > LOGS_MAX_RECONNECTS) {
			cli_error("the output of exec %s broke off (%s); gave up after %d attempts "
			          "to resume it",
			          l->exec_id, l->why, LOGS_MAX_RECONNECTS);
			return CLIENT_EXIT_NO_LAST_FRAME;
		}
		sleep_ms(detached_backoff_ms(tries));
	}
}

int client_logs(struct cli *cli, int argc, char **argv)
{
	struct detached_args a;
	struct client_conn cn = {0};
	struct logs l = {.cn = &cn};
	int rc = detached_args_parse(DETACHED_LOGS, argc, argv, &a);

	if (rc == 0)
		rc = client_conn_setup(&cn, cli, "logs", a.url, a.cacert, a.token_file, a.reason);
	if (rc == 0) {
		l.exec_id = a.exec_id;
		l.json = a.json;
		l.d.follow = a.follow;
		rc = logs_run(&l);
	}
	client_conn_free(&cn);
	return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
}
