/* http/server.c: the listener and its connections, the limits a reload may change, and the
 * dispatch of a complete request: the route table chooses its handler, and what no route
 * serves is answered here (404, 405 with Allow). */
#include "http/server.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "common/err.h"
#include "common/log.h"
#include "http/internal.h"
#include "http/tls.h"

#define LISTEN_BACKLOG 1024
/* max_connections 0: the open-files limit (at most this) less a quarter, at least
 * FD_RESERVE_MIN, left to the rest of the process. */
#define MAX_CONNS_AUTO 1000000
#define FD_RESERVE_MIN 64

/* A whole request goes to its route's handler, or is answered here (404, 405). */
static void dispatch(struct http_server *s, struct http_request *r)
{
	const struct http_route *route;
	char allow[HTTP_ALLOW_MAX];
	unsigned nparams;

	switch (http_route_match(s->routes, s->nroutes, r->verb, r->full_path, &route, r->param_buf,
	                         r->params, &nparams, allow)) {
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

static void refuse(struct http_request *r, const struct framing_error *e)
{
	http_reply_error(r, e->code, e->message, NULL);
}

static const struct conn_hooks hooks_of_conns = {dispatch, refuse};

unsigned http_server_flushing(const struct http_server *s)
{
	return s->flushing;
}

/* Accepting runs unless the connections are at their cap or accept() failed a moment
 * ago; the only place the listener is enabled or disabled while it lives. */
static void accepting_update(struct http_server *s)
{
	bool full = s->nconns >= s->max_conns;
	char n[16];

	if (s->listener == NULL)
		return;
	if (full != s->full) {
		/* under a flood it comes and goes with every connection: warn once a minute */
		time_t now = time(NULL);
		enum log_level l = full && now - s->full_warned >= 60 ? LOG_WARN : LOG_DEBUG;

		if (l == LOG_WARN)
			s->full_warned = now;
		snprintf(n, sizeof(n), "%u", s->max_conns);
		log_kv(l,
		       full ? "connections at max_connections; accepting none until one closes"
		            : "accepting connections again",
		       "max_connections", n, NULL);
	}
	s->full = full;
	if (full || s->out_of_fds)
		evconnlistener_disable(s->listener);
	else
		evconnlistener_enable(s->listener);
}

/* lim->max_connections, or its default from the open-files limit. */
static unsigned max_conns_of(const struct http_limits *lim)
{
	struct rlimit rl;
	rlim_t n, reserve;

	if (lim->max_connections > 0)
		return lim->max_connections;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > MAX_CONNS_AUTO)
		n = MAX_CONNS_AUTO;
	else
		n = rl.rlim_cur;
	reserve = n / 4 > FD_RESERVE_MIN ? n / 4 : FD_RESERVE_MIN;
	return n > reserve ? (unsigned)(n - reserve) : 1;
}

static void on_reclaim(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	struct http_conn *c;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&s->closed)) != NULL) {
		TAILQ_REMOVE(&s->closed, c, link);
		conn_free(c);
		s->nconns--;
	}
	accepting_update(s);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct http_server *s = arg;

	(void)l;
	if (conn_open(s, fd, sa, salen) == 0)
		s->nconns++;
	if (s->nconns >= s->max_conns)
		accepting_update(s); /* libevent's accept loop stops once disabled */
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	s->out_of_fds = false;
	accepting_update(s);
}

/* accept() failed, typically EMFILE: out of file descriptors (LimitNOFILE). The listening
 * socket stays readable, so libevent would retry at once, forever; pause accepting for a
 * second instead, while open connections finish and free descriptors. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct http_server *s = arg;
	struct timeval pause = {1, 0};
	int e = EVUTIL_SOCKET_ERROR();

	(void)l;
	log_kv(LOG_WARN, "cannot accept connections; pausing for 1 s", "error", strerror(e), NULL);
	s->out_of_fds = true;
	accepting_update(s);
	evtimer_add(s->resume, &pause);
}

void http_server_set_instance(struct http_server *s, const char *name)
{
	/* Only what a header value may hold as it is: printable ASCII. */
	for (const char *p = name; p != NULL && *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			name = NULL;
	s->instance = name != NULL && name[0] != '\0' ? name : NULL;
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
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return EB_ERR_NOMEM;
	}
	s->base = base;
	s->conn_hooks = &hooks_of_conns;
	s->routes = routes;
	s->nroutes = n;
	s->route_arg = route_arg;
	s->lim = *lim;
	s->max_conns = max_conns_of(lim);
	if (hooks != NULL)
		s->hooks = *hooks;
	TAILQ_INIT(&s->conns);
	TAILQ_INIT(&s->closed);
	s->resume = evtimer_new(base, on_resume, s);
	s->reclaim = event_new(base, -1, 0, on_reclaim, s);
	if (s->resume == NULL || s->reclaim == NULL) {
		http_server_free(s);
		snprintf(err, errlen, "out of memory");
		return EB_ERR_NOMEM;
	}
	*out = s;
	return 0;
}

int http_server_listen(struct http_server *s, const char *host, int port, char *err, size_t errlen)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
	                                .ai_socktype = SOCK_STREAM,
	                                .ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV};
	struct evutil_addrinfo *res = NULL;
	char portname[16], cap[16];
	int rc;

	snprintf(portname, sizeof(portname), "%d", port);
	rc = evutil_getaddrinfo(host, portname, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port,
		         evutil_gai_strerror(rc));
		return EB_ERR_IO;
	}
	s->listener = evconnlistener_new_bind(s->base, on_accept, s,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                          LEV_OPT_CLOSE_ON_EXEC,
	                                      LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
	evutil_freeaddrinfo(res);
	if (s->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port,
		         strerror(errno));
		return EB_ERR_IO;
	}
	evconnlistener_set_error_cb(s->listener, on_accept_error);
	snprintf(cap, sizeof(cap), "%u", s->max_conns);
	log_kv(LOG_INFO, "accepting connections", "max_connections", cap, NULL);
	return 0;
}

void http_server_stop_listening(struct http_server *s)
{
	struct http_conn *c, *next;

	s->closing = true;
	if (s->listener != NULL) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	/* Idle keep-alive connections would only wait for requests that are now refused. */
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state == CONN_IDLE)
			conn_close(c, "the broker is stopping");
	}
}

void http_server_set_limits(struct http_server *s, const struct http_limits *lim)
{
	struct http_conn *c;

	s->lim = *lim;
	s->max_conns = max_conns_of(lim);
	TAILQ_FOREACH(c, &s->conns, link)
	conn_set_timeouts(c);
	accepting_update(s);
}

void http_server_free(struct http_server *s)
{
	struct http_conn *c;

	if (s == NULL)
		return;
	if (s->listener != NULL)
		evconnlistener_free(s->listener);
	s->listener = NULL; /* on_reclaim below must not touch it */
	while ((c = TAILQ_FIRST(&s->conns)) != NULL)
		conn_close(c, "the broker stopped");
	on_reclaim(-1, 0, s);
	if (s->resume != NULL)
		event_free(s->resume);
	if (s->reclaim != NULL)
		event_free(s->reclaim);
	http_server_set_tls(s, NULL);
	free(s);
}
