/* client/batch.c: `exec-broker exec --org/--workspaces`: one POST /v1/batches
 * (client/stream.c), its NDJSON frames rendered by fanout.c onto this process's stdout and
 * stderr as they arrive, the summary as a table on stderr, and the outcome as the exit
 * status; before it, the question --all asks on a terminal. */
#include "client/batch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "client/fanout.h"
#include "client/stream.h"
#include "common/err.h"
#include "common/fdio.h"

int batch_confirm(const struct exec_args *a)
{
	char answer[64], ch;
	size_t n = 0;
	ssize_t k;

	if (!fanout_must_ask(a->all, a->yes, isatty(0) && isatty(2)))
		return 0;
	fprintf(stderr, "run on every workspace of org %s? [y/N] ", a->org);
	/* A byte at a time, so that what follows the answer stays for -i. */
	while ((k = read(0, &ch, 1)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 || ch == '\n')
			break;
		if (n < sizeof(answer) - 1)
			answer[n++] = ch;
	}
	if (k == 0)
		fputc('\n', stderr); /* end of input: the next line starts on a line of its own */
	answer[n] = '\0';
	if (fanout_answer_yes(answer))
		return 0;
	cli_error("exec: not confirmed: nothing was run (--yes runs on --all without asking)");
	return CLIENT_EXIT_USAGE;
}

/* One batch as it streams. */
struct batch_client {
	struct client_stream st;
	struct fanout fo;
	bool json; /* --json */
};

/* What the frames so far make us write: fo.out[0] onto stdout, fo.out[1] onto stderr. */
static void write_out(struct batch_client *c)
{
	for (int s = 0; s < 2; s++) {
		struct fanout_buf *b = &c->fo.out[s];
		if (b->len > 0 && fdio_write_all(s + 1, b->p, b->len, -1) != 0 &&
		    c->st.state == STREAM_LINES) {
			/* Our own stdout or stderr went away (as `| head` does): stop, as
			 * SIGPIPE would have stopped us; the broker then cancels the batch. */
			client_stream_stop(&c->st, 128 + SIGPIPE);
		}
		b->len = 0;
	}
}

/* The batch's last frame: the summary, or an error for the whole of it. */
static void last_frame(struct batch_client *c, enum fanout_frame kind)
{
	json_t *err = json_object_get(c->fo.last, "error");

	if (kind == FFRAME_SUMMARY) {
		if (!c->json && fanout_summary_print(c->fo.last, stderr) != 0)
			cli_error("exec: out of memory for the summary of batch %s",
			          c->fo.batch_id);
		client_stream_decide(&c->st, fanout_exit_of_summary(c->fo.last));
		return;
	}
	if (!client_print_api_error(err))
		cli_error("the broker ended batch %s with an error that has no code",
		          c->fo.batch_id[0] ? c->fo.batch_id : "(no id)");
	client_stream_decide(
	    &c->st, client_exit_of_error(0, json_string_value(json_object_get(err, "code"))));
}

static void take_frame(struct batch_client *c, json_t *f)
{
	enum fanout_frame kind;
	int rc = fanout_frame(&c->fo, f, &kind);

	if (rc == EB_ERR_INVAL) {
		client_stream_stop_bad_line(&c->st, "batch");
		return;
	}
	if (rc != 0) {
		cli_error("exec: out of memory; the outcome of batch %s is unknown",
		          c->fo.batch_id[0] ? c->fo.batch_id : "(no id)");
		client_stream_stop(&c->st, CLIENT_EXIT_NO_LAST_FRAME);
		return;
	}
	write_out(c);
	if (c->st.state != STREAM_LINES)
		return;
	switch (kind) {
	case FFRAME_SUMMARY:
	case FFRAME_ERROR:
		last_frame(c, kind);
		break;
	case FFRAME_FIRST:
	case FFRAME_OUTPUT:
	case FFRAME_END:
	case FFRAME_OTHER:
		break; /* written already */
	default:
		abort();
	}
}

static void on_line(void *arg, const char *line, size_t len)
{
	struct batch_client *c = arg;
	json_t *f = json_loadb(line, len, JSON_ALLOW_NUL, NULL);

	if (!json_is_object(f))
		client_stream_stop_bad_line(&c->st, "batch");
	else if (c->json &&
	         (fdio_write_all(1, line, len, -1) != 0 || fdio_write_all(1, "\n", 1, -1) != 0))
		client_stream_stop(&c->st, 128 + SIGPIPE);
	else
		take_frame(c, f);
	json_decref(f);
}

/* The stream ended without the summary: what the targets held back still goes out. */
static void on_undecided(void *arg)
{
	struct batch_client *c = arg;

	if (fanout_flush(&c->fo) == 0)
		write_out(c);
}

int batch_run(struct client_conn *cn, const char *path, const char *body, bool json)
{
	struct batch_client c = {.json = json};
	int rc;

	fanout_init(&c.fo, json);
	c.st.id = c.fo.batch_id;
	c.st.on_undecided = on_undecided;
	rc = client_stream_call(&c.st, cn, EVHTTP_REQ_POST, path, body, on_line, &c, "batch");
	fanout_free(&c.fo);
	return rc;
}
