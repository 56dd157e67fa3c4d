/* http/reply.c: answering a request: the status line and the headers every reply carries,
 * whole replies and API errors, chunked streams with backpressure, and the ends of a
 * request (each logs it and frees its context). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/apierr.h"
#include "http/internal.h"

static const char *reason_phrase(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
	    {200, "OK"},
	    {202, "Accepted"},
	    {204, "No Content"},
	    {400, "Bad Request"},
	    {401, "Unauthorized"},
	    {403, "Forbidden"},
	    {404, "Not Found"},
	    {405, "Method Not Allowed"},
	    {408, "Request Timeout"},
	    {409, "Conflict"},
	    {413, "Content Too Large"},
	    {414, "URI Too Long"},
	    {415, "Unsupported Media Type"},
	    {417, "Expectation Failed"},
	    {429, "Too Many Requests"},
	    {431, "Request Header Fields Too Large"},
	    {500, "Internal Server Error"},
	    {501, "Not Implemented"},
	    {502, "Bad Gateway"},
	    {503, "Service Unavailable"},
	    {504, "Gateway Timeout"},
	    {505, "HTTP Version Not Supported"},
	};

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Status";
}

/* The Date header's value, made at most once a second. */
static const char *http_date(void)
{
	static char buf[40];
	static time_t made;
	time_t now = time(NULL);
	struct tm tm;

	if (now != made && gmtime_r(&now, &tm) != NULL) {
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		made = now;
	}
	return buf;
}

/* Whether the connection stays open after this reply. */
static bool keeps_alive(const struct http_request *r)
{
	return r->conn != NULL && r->conn->keep_alive && !r->must_close && !r->srv->closing;
}

/* The status line and headers into out; length is the body's (-1: chunked or until the
 * connection closes). */
static void write_head(struct http_request *r, struct evbuffer *out, int status,
                       const char *content_type, long long length)
{
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
	                    "X-Request-Id: %s\r\nCache-Control: no-store\r\n",
	                    status, reason_phrase(status), http_date(), content_type, r->id);
	if (length >= 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
	else if (r->chunked)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	if (r->srv->instance != NULL)
		evbuffer_add_printf(out, "X-Exec-Broker-Instance: %s\r\n", r->srv->instance);
	if (r->log.exec_id != NULL)
		evbuffer_add_printf(out, "X-Exec-Id: %s\r\n", r->log.exec_id);
	for (unsigned i = 0; i < r->nout; i++)
		evbuffer_add_printf(out, "%s: %s\r\n", r->out_headers[i].name,
		                    r->out_headers[i].value);
	if (!keeps_alive(r) || (length < 0 && !r->chunked))
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (r->minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	evbuffer_add(out, "\r\n", 2);
}

static void count_reply(struct http_request *r, int status)
{
	r->status = status;
	if (r->srv->hooks.on_reply != NULL)
		r->srv->hooks.on_reply(status, r->srv->hooks.arg);
}

/* The request is over: the connection moves on, the log line is written. */
static void end_request(struct http_request *r)
{
	if (r->conn != NULL)
		conn_reply_done(r->conn);
	http_request_log_line(r);
	http_request_free(r);
}

void http_reply_header(struct http_request *r, const char *name, const char *value)
{
	char *n, *v;

	if (r->nout == sizeof(r->out_headers) / sizeof(r->out_headers[0]))
		abort(); /* a handler adds a handful at most */
	n = strdup(name);
	v = strdup(value);
	if (n == NULL || v == NULL) {
		free(n);
		free(v);
		return;
	}
	r->out_headers[r->nout++] = (struct http_header){n, v};
}

void http_reply(struct http_request *r, int status, const char *content_type, const void *body,
                size_t len)
{
	if (r->conn != NULL) {
		struct evbuffer *out = conn_output(r->conn);

		write_head(r, out, status, content_type, (long long)len);
		/* A HEAD reply has the length a GET would have, and no body. */
		if (r->verb != HTTP_VERB_HEAD && len > 0)
			evbuffer_add(out, body, len);
	}
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
	r->streaming = true;
	/* HTTP/1.0 has no chunks: the body ends when the connection does. */
	r->chunked = r->minor == 1;
	if (r->conn != NULL)
		write_head(r, conn_output(r->conn), 200, content_type, -1);
	count_reply(r, 200);
}

void http_stream_write(struct http_request *r, struct evbuffer *chunk)
{
	size_t n = evbuffer_get_length(chunk);
	struct evbuffer *out;

	if (r->conn == NULL || r->gone || !r->streaming || n == 0) {
		evbuffer_drain(chunk, n);
		return;
	}
	out = conn_output(r->conn);
	if (r->chunked)
		evbuffer_add_printf(out, "%zx\r\n", n);
	/* Moves the chunk's memory into the connection: no copy. */
	evbuffer_add_buffer(out, chunk);
	if (r->chunked)
		evbuffer_add(out, "\r\n", 2);
}

size_t http_stream_backlog(const struct http_request *r)
{
	return r->conn != NULL ? evbuffer_get_length(conn_output(r->conn)) : 0;
}

void http_stream_on_drained(struct http_request *r, size_t low_water,
                            void (*cb)(struct http_request *r, void *arg), void *arg)
{
	r->on_drained = cb;
	r->on_drained_arg = arg;
	r->low_water = low_water;
	if (r->conn != NULL)
		bufferevent_setwatermark(r->conn->bev, EV_WRITE, low_water, 0);
}

void http_stream_end(struct http_request *r)
{
	if (r->conn != NULL && r->chunked)
		evbuffer_add(conn_output(r->conn), "0\r\n\r\n", 5);
	if (!r->chunked)
		r->must_close = true;
	end_request(r);
}

void http_request_drop(struct http_request *r)
{
	if (r->conn != NULL)
		conn_close(r->conn, "dropped by its handler");
	if (r->status == 0)
		r->status = 499; /* as nginx logs it: the client closed the request */
	r->log.error = "client_gone";
	http_request_log_line(r);
	http_request_free(r);
}
