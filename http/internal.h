/* http/internal.h: the objects the HTTP layer's files share and nothing outside http/
 * includes: the server (listener, limits, counters) and one request's context (what its
 * reply and log line need, and the transport under it). */
#ifndef EB_HTTP_INTERNAL_H
#define EB_HTTP_INTERNAL_H

#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <time.h>

#include "http/http.h"
#include "http/server.h"

struct evhttp;
struct evhttp_request;
struct evhttp_connection;
struct evhttp_bound_socket;
struct event;

struct http_server {
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	const struct http_route *routes;
	size_t nroutes;
	void *route_arg;
	struct http_limits lim;
	struct http_server_hooks hooks;
	bool closing;      /* not listening: replies ask the client to close */
	unsigned flushing; /* replies handed to evhttp and not yet written out */
};

struct http_request {
	struct http_server *srv;
	struct evhttp_request *ev;       /* NULL once a reply has been handed over */
	struct evhttp_connection *evcon; /* NULL once the client is gone */
	enum http_verb method;
	char id[HTTP_REQUEST_ID_MAX + 1];
	char client[64];
	char path[160];  /* for the log, cut */
	char *full_path; /* the whole path, for the handler */
	const char *params[HTTP_MAX_PARAMS];
	char *param_buf;
	struct timespec t0; /* arrival, CLOCK_MONOTONIC */
	int status;         /* sent status, 0 until then */
	bool streaming;     /* a chunked reply is under way */
	bool gone;          /* the client went away */
	struct http_log_fields log;
	struct evkeyvalq query; /* decoded query pairs, once asked for */
	bool query_parsed;
	struct event *hangup; /* watches the socket for EOF until a reply starts */
	void (*on_close)(struct http_request *r, void *arg);
	void *on_close_arg;
	void (*on_drained)(struct http_request *r, void *arg);
	void *on_drained_arg;
};

/* Writes the request's log line; frees nothing. */
void http_request_log_line(struct http_request *r);
/* Frees the request object (the evhttp request is the transport's). */
void http_request_free(struct http_request *r);
/* Stops watching for a hang-up and tells the transport the handler no longer listens. */
void http_request_unwatch(struct http_request *r);
/* The client went away: the close callback runs once. */
void http_request_gone(struct http_request *r);

#endif
