/* http/server.c: the listener and its limits, and the arrival of a request: its context is
 * made (id, client, clock), the route table chooses its handler, and what no route serves
 * is answered here (404, 405 with Allow). Carried by libevent's evhttp. */
#include "http/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "common/err.h"
#include "common/log.h"
#include "http/internal.h"

#define MAX_HEADERS_BYTES (16 * 1024)

static enum http_verb method_of(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return HTTP_VERB_GET;
	case EVHTTP_REQ_POST:
		return HTTP_VERB_POST;
	case EVHTTP_REQ_HEAD:
		return HTTP_VERB_HEAD;
	case EVHTTP_REQ_PUT:
		return HTTP_VERB_PUT;
	case EVHTTP_REQ_DELETE:
		return HTTP_VERB_DELETE;
	case EVHTTP_REQ_OPTIONS:
		return HTTP_VERB_OPTIONS;
	case EVHTTP_REQ_TRACE:
		return HTTP_VERB_TRACE;
	case EVHTTP_REQ_CONNECT:
		return HTTP_VERB_CONNECT;
	case EVHTTP_REQ_PATCH:
		return HTTP_VERB_PATCH;
	default:
		abort(); /* evhttp only passes on the methods allowed in http_server_new */
	}
}

/* X-Request-Id: a client's own id when it is reasonable, else a new UUID. */
static void request_id(struct evhttp_request *req, char out[HTTP_REQUEST_ID_MAX + 1])
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
	uuid_t u;
	size_t n;

	if (v != NULL && (n = strlen(v)) >= 1 && n <= HTTP_REQUEST_ID_MAX &&
	    strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n) {
		memcpy(out, v, n + 1);
		return;
	}
	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

static struct http_request *request_new(struct http_server *s, struct evhttp_request *ev,
                                        const char *path)
{
	struct http_request *r = calloc(1, sizeof(*r));
	struct evhttp_connection *conn = evhttp_request_get_connection(ev);
	char *peer = NULL;
	ev_uint16_t port;

	if (r == NULL)
		return NULL;
	r->full_path = strdup(path);
	r->param_buf = malloc(strlen(path) + 1);
	if (r->full_path == NULL || r->param_buf == NULL) {
		free(r->full_path);
		free(r->param_buf);
		free(r);
		return NULL;
	}
	r->srv = s;
	r->ev = ev;
	r->evcon = conn;
	r->method = method_of(evhttp_request_get_command(ev));
	r->query.tqh_first = NULL;
	r->query.tqh_last = &r->query.tqh_first;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	request_id(ev, r->id);
	if (conn != NULL) {
		struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
		int one = 1;

		/* Frames are small and written as they come: without this, a last frame waits
		 * for the client's delayed ACK (about 40 ms). */
		if (bev != NULL)
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
			           sizeof(one));
		evhttp_connection_get_peer(conn, &peer, &port);
		snprintf(r->client, sizeof(r->client), "%s", peer != NULL ? peer : "");
	}
	snprintf(r->path, sizeof(r->path), "%s", path);
	return r;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
	struct http_server *s = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const struct http_route *route;
	char allow[HTTP_ALLOW_MAX];
	struct http_request *r;
	unsigned nparams;

	if (path == NULL || path[0] == '\0')
		path = "/";
	r = request_new(s, ev, path);
	if (r == NULL) {
		evhttp_send_error(ev, 500, NULL);
		return;
	}
	switch (http_route_match(s->routes, s->nroutes, r->method, r->full_path, &route,
	                         r->param_buf, r->params, &nparams, allow)) {
	case HTTP_ROUTE_FOUND:
		route->handler(r, s->route_arg);
		return;
	case HTTP_ROUTE_NO_METHOD:
		http_reply_header(r, "Allow", allow);
		http_reply_error(r, "method_not_allowed", "this endpoint does not take that method",
		                 NULL);
		return;
	case HTTP_ROUTE_NOT_FOUND:
		http_reply_error(r, "not_found", "no such endpoint", NULL);
		return;
	default:
		abort();
	}
}

unsigned http_server_flushing(const struct http_server *s)
{
	return s->flushing;
}

/* The server whose listener is up: the listener's error callback gets evhttp's argument,
 * and a resume timer may outlive the server. One per process. */
static struct http_server *accepting;

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = accepting;

	(void)fd;
	(void)what;
	(void)arg;
	if (s != NULL && s->listener != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(s->listener));
}

/* accept() failed, typically EMFILE: out of file descriptors (LimitNOFILE). The listening
 * socket stays readable, so libevent would retry at once, forever; pause accepting for a
 * second instead, while open connections finish and free descriptors. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct http_server *s = accepting;
	struct timeval pause = {1, 0};
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;
	log_kv(LOG_WARN, "cannot accept connections; pausing for 1 s", "error", strerror(e), NULL);
	evconnlistener_disable(l);
	event_base_once(s->base, -1, EV_TIMEOUT, on_accept_resume, NULL, &pause);
}

int http_server_new(struct event_base *base, const struct http_route *routes, size_t n,
                    void *route_arg, const struct http_limits *lim,
                    const struct http_server_hooks *hooks, struct http_server **out, char *err,
                    size_t errlen)
{
	struct http_server *s;
	const char *bad;

	*out = NULL;
	if (http_routes_check(routes, n, &bad) != 0) {
		snprintf(err, errlen, "route table: bad row \"%s\"", bad);
		return EB_ERR_INVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL || (s->http = evhttp_new(base)) == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return EB_ERR_NOMEM;
	}
	s->base = base;
	s->routes = routes;
	s->nroutes = n;
	s->route_arg = route_arg;
	if (hooks != NULL)
		s->hooks = *hooks;
	evhttp_set_max_headers_size(s->http, MAX_HEADERS_BYTES);
	/* Over the limit, read (and drop) the rest of the body before the 413: a client still
	 * sending when the connection closed would get a reset instead of the answer. */
	evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
	http_server_set_limits(s, lim);
	/* Every method evhttp parses reaches on_request, which answers 405 with Allow in the
	 * API's error format rather than evhttp's 501 page. */
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                        EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                        EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(s->http, on_request, s);
	*out = s;
	return 0;
}

int http_server_listen(struct http_server *s, const char *host, int port, char *err, size_t errlen)
{
	s->listener = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
	if (s->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port,
		         strerror(errno));
		return EB_ERR_IO;
	}
	accepting = s;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(s->listener), on_accept_error);
	return 0;
}

void http_server_stop_listening(struct http_server *s)
{
	s->closing = true;
	if (s->listener != NULL) {
		evhttp_del_accept_socket(s->http, s->listener);
		s->listener = NULL;
	}
}

void http_server_set_limits(struct http_server *s, const struct http_limits *lim)
{
	s->lim = *lim;
	evhttp_set_max_body_size(s->http, (ev_ssize_t)lim->max_body_bytes);
	evhttp_set_timeout(s->http, lim->idle_timeout_s);
}

void http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	if (accepting == s)
		accepting = NULL;
	if (s->http != NULL)
		evhttp_free(s->http);
	free(s);
}
