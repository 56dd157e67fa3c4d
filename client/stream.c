/* client/stream.c: one request with an NDJSON reply: its state machine (sent, lines or
 * error reply, then decided or ended), the splitting of the body into lines, and the API
 * error of a reply other than 200. */
#include "client/stream.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsm.h"

static const char *const stream_state_names[] = {"sent", "lines", "error reply", "decided",
                                                 "ended"};
static const unsigned stream_legal[] = {
    [STREAM_SENT] = FSM_BIT(STREAM_LINES) | FSM_BIT(STREAM_ERROR_REPLY) | FSM_BIT(STREAM_ENDED),
    [STREAM_LINES] = FSM_BIT(STREAM_DECIDED) | FSM_BIT(STREAM_ENDED),
    [STREAM_ERROR_REPLY] = FSM_BIT(STREAM_DECIDED),
    [STREAM_DECIDED] = 0,
    [STREAM_ENDED] = 0,
};
static const struct fsm stream_fsm = {"client stream", stream_state_names, stream_legal, 5};

static void stream_set_state(struct client_stream *s, enum stream_state to)
{
	FSM_SET(&stream_fsm, s->state, to, s->id != NULL && s->id[0] != '\0' ? s->id : NULL);
}

void client_stream_decide(struct client_stream *s, int exit_status)
{
	stream_set_state(s, STREAM_DECIDED);
	s->exit = exit_status;
}

void client_stream_stop(struct client_stream *s, int exit_status)
{
	client_stream_decide(s, exit_status);
	event_base_loopbreak(s->cn->base);
}

static void split_lines(struct client_stream *s)
{
	char *line;
	size_t len;

	while (s->state == STREAM_LINES &&
	       (line = evbuffer_readln(s->lines, &len, EVBUFFER_EOL_LF)) != NULL) {
		s->on_line(s->arg, line, len);
		free(line);
	}
}

static int on_header(struct evhttp_request *req, void *arg)
{
	struct client_stream *s = arg;

	s->status = evhttp_request_get_response_code(req);
	stream_set_state(s, s->status == 200 ? STREAM_LINES : STREAM_ERROR_REPLY);
	return 0;
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
	struct client_stream *s = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);

	switch (s->state) {
	case STREAM_LINES:
		evbuffer_add_buffer(s->lines, in);
		split_lines(s);
		break;
	case STREAM_ERROR_REPLY:
		if (evbuffer_get_length(s->lines) < CLIENT_MAX_ERROR_BODY)
			evbuffer_add_buffer(s->lines, in);
		break;
	case STREAM_DECIDED:
		break; /* decided already (e.g. after the last frame): nothing more to do */
	case STREAM_SENT:
	case STREAM_ENDED:
	default:
		abort();
	}
}

static void on_error(enum evhttp_request_error err, void *arg)
{
	struct client_stream *s = arg;

	client_neterr_note(&s->neterr, err);
}

/* The end of a reply other than 200: its API error. */
static void end_error_reply(struct client_stream *s, struct evhttp_request *req)
{
	char buf[128];

	if (req == NULL) {
		cli_error("the broker closed the connection in its HTTP %d reply (%s)", s->status,
		          client_neterr_text(&s->neterr, buf, sizeof(buf)));
		client_stream_decide(s, client_exit_of_error(s->status, NULL));
		return;
	}
	if (evbuffer_get_length(s->lines) < CLIENT_MAX_ERROR_BODY)
		evbuffer_add_buffer(s->lines, evhttp_request_get_input_buffer(req));
	client_stream_decide(s, client_error_reply(s->status,
	                                           (const char *)evbuffer_pullup(s->lines, -1),
	                                           evbuffer_get_length(s->lines)));
}

static void on_done(struct evhttp_request *req, void *arg)
{
	struct client_stream *s = arg;

	event_base_loopbreak(s->cn->base);
	switch (s->state) {
	case STREAM_DECIDED:
		break;
	case STREAM_SENT:
	case STREAM_LINES:
		s->ended_in = s->state;
		s->broken = req == NULL;
		s->partial = evbuffer_get_length(s->lines) > 0;
		stream_set_state(s, STREAM_ENDED);
		break;
	case STREAM_ERROR_REPLY:
		end_error_reply(s, req);
		break;
	case STREAM_ENDED:
	default:
		abort();
	}
}

const char *client_stream_why(const struct client_stream *s, char *buf, size_t len)
{
	if (s->ended_in == STREAM_SENT)
		return s->neterr.have ? client_neterr_text(&s->neterr, buf, len)
		                      : "cannot connect (is it running there?)";
	if (s->broken)
		return client_neterr_text(&s->neterr, buf, len);
	return s->partial ? "it ends in a partial line" : "the reply ended";
}

int client_stream_start(struct client_stream *s, struct client_conn *cn,
                        enum evhttp_cmd_type method, const char *path, const char *body,
                        void (*on_line)(void *arg, const char *line, size_t len), void *arg)
{
	struct evhttp_request *req;

	s->state = STREAM_SENT;
	s->cn = cn;
	s->on_line = on_line;
	s->arg = arg;
	s->lines = evbuffer_new();
	req = s->lines != NULL ? evhttp_request_new(on_done, s) : NULL;
	if (req == NULL) {
		cli_error("%s: out of memory", cn->what);
		return CLIENT_EXIT_USAGE;
	}
	evhttp_request_set_header_cb(req, on_header);
	evhttp_request_set_chunked_cb(req, on_chunk);
	evhttp_request_set_error_cb(req, on_error);
	return client_request_send(cn, req, method, path, "application/x-ndjson", body);
}

void client_stream_run(struct client_stream *s)
{
	event_base_dispatch(s->cn->base);
}

void client_stream_free(struct client_stream *s)
{
	if (s->lines != NULL)
		evbuffer_free(s->lines);
	s->lines = NULL;
}

/* s->id, or a placeholder before the first frame named it. */
static const char *stream_id(const struct client_stream *s)
{
	return s->id != NULL && s->id[0] != '\0' ? s->id : "(no id)";
}

void client_stream_stop_bad_line(struct client_stream *s, const char *noun)
{
	cli_error("the broker sent a line that is not a frame; the outcome of %s %s is unknown "
	          "(see the audit log)",
	          noun, stream_id(s));
	client_stream_stop(s, CLIENT_EXIT_NO_LAST_FRAME);
}

/* The exit status of a stream that ended before its last frame or an API error. */
static int stream_undecided(const struct client_stream *s, const char *noun)
{
	char buf[128];

	if (s->state != STREAM_ENDED) {
		/* The loop ran out of events without the request's end. */
		cli_error("cannot reach the broker at %s: the connection ended", s->cn->url);
		return s->state == STREAM_LINES ? CLIENT_EXIT_NO_LAST_FRAME
		                                : CLIENT_EXIT_UNREACHABLE;
	}
	if (s->ended_in == STREAM_SENT) {
		client_print_unreachable(s->cn, &s->neterr);
		return CLIENT_EXIT_UNREACHABLE;
	}
	cli_error("the stream ended without a last frame (%s); the outcome of %s %s is unknown "
	          "(see the audit log)",
	          client_stream_why(s, buf, sizeof(buf)), noun, stream_id(s));
	return CLIENT_EXIT_NO_LAST_FRAME;
}

int client_stream_call(struct client_stream *s, struct client_conn *cn, enum evhttp_cmd_type method,
                       const char *path, const char *body,
                       void (*on_line)(void *arg, const char *line, size_t len), void *arg,
                       const char *noun)
{
	int rc = client_stream_start(s, cn, method, path, body, on_line, arg);

	if (rc == 0) {
		client_stream_run(s);
		if (s->state != STREAM_DECIDED && s->on_undecided != NULL)
			s->on_undecided(arg);
		rc = s->state == STREAM_DECIDED ? s->exit : stream_undecided(s, noun);
	}
	client_conn_disconnect(cn); /* before the stream its request points to */
	client_stream_free(s);
	return rc;
}
