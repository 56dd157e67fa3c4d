/* client/stream.h: one request whose 200 reply is an NDJSON stream (exec's run, logs'
 * output), split into lines as it arrives and handed to the subcommand; a reply of another
 * status is read whole and becomes an API error. What the lines mean, and what to make of a
 * stream that ends early, is the subcommand's. */
#ifndef EB_CLIENT_STREAM_H
#define EB_CLIENT_STREAM_H

#include <event2/buffer.h>
#include <stdbool.h>

#include "client/common.h"

/* The states of the one request, in order. */
enum stream_state {
	STREAM_SENT,        /* the request is on its way; no response yet */
	STREAM_LINES,       /* 200: NDJSON lines arrive and go to on_line */
	STREAM_ERROR_REPLY, /* another status: its JSON error body arrives */
	STREAM_DECIDED,     /* exit is decided; the rest of the reply is read and dropped */
	STREAM_ENDED,       /* the reply or the connection ended undecided, in ended_in */
};

struct client_stream {
	enum stream_state state;
	enum stream_state ended_in; /* STREAM_ENDED: STREAM_SENT or STREAM_LINES */
	int status;                 /* HTTP status once the head arrived */
	int exit;                   /* the exit status once STREAM_DECIDED */
	bool broken;                /* ended by a connection error, not the reply's end */
	bool partial;               /* ended inside a line */
	struct client_neterr neterr;
	struct evbuffer *lines; /* bytes of the body not yet split into lines */
	struct client_conn *cn;
	/* One line (without its '\n'), while STREAM_LINES; it may decide or stop. */
	void (*on_line)(void *arg, const char *line, size_t len);
	void *arg;
	const char *id; /* names the request in debug logs (may be NULL or "") */
	/* May be NULL. client_stream_call calls it once a stream ended undecided, before
	 * saying so, to write what on_line held back. */
	void (*on_undecided)(void *arg);
};

/* Sends the request (method, path, body: JSON text or NULL) on cn's connection. 0, or an
 * exit status after printing why. In every case s is freed with client_stream_free once
 * cn's connection is (client_conn_disconnect): the request in flight points to s. */
int client_stream_start(struct client_stream *s, struct client_conn *cn,
                        enum evhttp_cmd_type method, const char *path, const char *body,
                        void (*on_line)(void *arg, const char *line, size_t len), void *arg);
/* Runs the loop until the reply ends or stop is called. */
void client_stream_run(struct client_stream *s);
/* Decides the exit status. The loop runs on until the reply is complete, so that the
 * broker sees a reply read to its end rather than a client gone; stop is for when nothing
 * more is worth reading. */
void client_stream_decide(struct client_stream *s, int exit_status);
void client_stream_stop(struct client_stream *s, int exit_status);
/* Why a stream ended in STREAM_ENDED, in words; buf is used for an errno. */
const char *client_stream_why(const struct client_stream *s, char *buf, size_t len);
void client_stream_free(struct client_stream *s);

/* The whole of one request on cn's connection (made by client_conn_connect): start, run,
 * disconnect, free. Returns the exit status decided or, for a stream that ended undecided,
 * CLIENT_EXIT_UNREACHABLE or CLIENT_EXIT_NO_LAST_FRAME after printing why. noun names
 * what s->id is the id of ("exec"), for the message that its outcome is unknown; s->id
 * may be filled by on_line as frames arrive. */
int client_stream_call(struct client_stream *s, struct client_conn *cn, enum evhttp_cmd_type method,
                       const char *path, const char *body,
                       void (*on_line)(void *arg, const char *line, size_t len), void *arg,
                       const char *noun);
/* For on_line: a line that is not a frame. Stops with CLIENT_EXIT_NO_LAST_FRAME after
 * saying that the outcome of the noun s->id is unknown. */
void client_stream_stop_bad_line(struct client_stream *s, const char *noun);

#endif
