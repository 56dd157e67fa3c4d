/* http/reply.c: answering a request: the headers every reply carries, whole replies and
 * API errors, and chunked streams with backpressure. Each way of ending a request logs it
 * and frees its context. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/apierr.h"
#include "http/internal.h"

static void on_flushed(struct evhttp_request *ev, void *arg)
{
	struct http_server *s = arg;

	(void)ev;
	s->flushing--;
	if (s->flushing == 0 && s->hooks.on_flushed != NULL)
		s->hooks.on_flushed(s->hooks.arg);
}

/* A reply whose connection fails instead is never reported: shutdown waits for those a
 * bounded time (the process's business). */
static void track_flush(struct http_server *s, struct evhttp_request *ev)
{
	if (evhttp_request_get_connection(ev) == NULL)
		return;
	evhttp_request_set_on_complete_cb(ev, on_flushed, s);
	s->flushing++;
}

static void add_common_headers(struct http_request *r, const char *content_type)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);

	evhttp_add_header(out, "Content-Type", content_type);
	evhttp_add_header(out, "X-Request-Id", r->id);
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (r->log.exec_id != NULL)
		evhttp_add_header(out, "X-Exec-Id", r->log.exec_id);
	if (r->srv->closing)
		evhttp_add_header(out, "Connection", "close");
}

static void count_reply(struct http_request *r, int status)
{
	r->status = status;
	if (r->srv->hooks.on_reply != NULL)
		r->srv->hooks.on_reply(status, r->srv->hooks.arg);
}

static void end_request(struct http_request *r)
{
	http_request_log_line(r);
	http_request_free(r);
}

void http_reply_header(struct http_request *r, const char *name, const char *value)
{
	if (r->ev != NULL)
		evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

void http_reply(struct http_request *r, int status, const char *content_type, const void *body,
                size_t len)
{
	struct evbuffer *b = evbuffer_new();

	http_request_unwatch(r);
	add_common_headers(r, content_type);
	/* libevent 2.1 would write a HEAD reply's body and leave out its length, which breaks
	 * the next reply on a kept-alive connection: send the length a GET would have, and no
	 * body. */
	if (r->method == HTTP_VERB_HEAD) {
		char n[24];

		snprintf(n, sizeof(n), "%zu", len);
		evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Content-Length", n);
		len = 0;
	}
	track_flush(r->srv, r->ev);
	if (b != NULL && len > 0)
		evbuffer_add(b, body, len);
	evhttp_send_reply(r->ev, status, NULL, b);
	evbuffer_free(b);
	r->ev = NULL;
	count_reply(r, status);
	end_request(r);
}

void http_reply_json(struct http_request *r, int status, json_t *o)
{
	char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (body == NULL) {
		http_reply(r, 500, "application/json", "", 0);
		return;
	}
	http_reply(r, status, "application/json", body, strlen(body));
	free(body);
}

void http_reply_error(struct http_request *r, const char *code, const char *message,
                      const char *field)
{
	char *body = apierr_body(code, message, field), fallback[160];
	int status = apierr_status(code);

	if (status == 401)
		http_reply_header(r, "WWW-Authenticate", "Bearer realm=\"exec-broker\"");
	if (r->log.error == NULL)
		r->log.error = code;
	if (body == NULL) {
		/* Out of memory: still the shape clients parse (codes are plain ASCII). */
		snprintf(fallback, sizeof(fallback),
		         "{\"error\":{\"code\":\"%s\",\"message\":\"out of memory\"}}", code);
		http_reply(r, status, "application/json", fallback, strlen(fallback));
		return;
	}
	http_reply(r, status, "application/json", body, strlen(body));
	free(body);
}

void http_stream_start(struct http_request *r, const char *content_type)
{
	add_common_headers(r, content_type);
	evhttp_send_reply_start(r->ev, 200, NULL);
	r->streaming = true;
	/* From here on evhttp reads the socket and reports a hang-up itself. */
	if (r->hangup != NULL) {
		event_free(r->hangup);
		r->hangup = NULL;
	}
	count_reply(r, 200);
}

static void on_chunk_written(struct evhttp_connection *evcon, void *arg)
{
	struct http_request *r = arg;

	(void)evcon;
	if (r->on_drained != NULL)
		r->on_drained(r, r->on_drained_arg);
}

static bool can_send(const struct http_request *r)
{
	return r->ev != NULL && r->evcon != NULL && !r->gone && r->streaming;
}

void http_stream_write(struct http_request *r, struct evbuffer *chunk)
{
	if (!can_send(r)) {
		evbuffer_drain(chunk, evbuffer_get_length(chunk));
		return;
	}
	/* evhttp moves the chunk's memory into the connection: no copy. */
	evhttp_send_reply_chunk_with_cb(r->ev, chunk, on_chunk_written, r);
}

size_t http_stream_backlog(const struct http_request *r)
{
	struct bufferevent *bev;

	if (r->evcon == NULL)
		return 0;
	bev = evhttp_connection_get_bufferevent(r->evcon);
	return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void http_stream_on_drained(struct http_request *r, size_t low_water,
                            void (*cb)(struct http_request *r, void *arg), void *arg)
{
	r->on_drained = cb;
	r->on_drained_arg = arg;
	if (r->evcon != NULL)
		bufferevent_setwatermark(evhttp_connection_get_bufferevent(r->evcon), EV_WRITE,
		                         low_water, 0);
}

void http_stream_end(struct http_request *r)
{
	http_request_unwatch(r);
	/* evhttp takes "below the low watermark" for "written": with ours left in place it
	 * would end the reply with up to low_water bytes unsent, and on a kept-alive
	 * connection stop writing them. */
	if (r->evcon != NULL)
		bufferevent_setwatermark(evhttp_connection_get_bufferevent(r->evcon), EV_WRITE, 0,
		                         0);
	if (r->ev != NULL) {
		track_flush(r->srv, r->ev);
		evhttp_send_reply_end(r->ev);
		r->ev = NULL;
	}
	end_request(r);
}
