/* http/server.h: the HTTP server as the process sees it: a listener and its connections
 * on the process's event loop, the limits a reload may change, the route table requests
 * are dispatched through, and what shutdown waits for (replies still being written). */
#ifndef EB_HTTP_SERVER_H
#define EB_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/router.h"

struct event_base;
struct http_server;

struct http_limits {
	size_t max_body_bytes; /* larger bodies are refused with 413 */
	int idle_timeout_s;    /* a client silent this long (sending, idle, not reading) is cut */
	/* Connections open at once; at the cap accepting pauses until one closes. 0: the
	 * open-files limit (RLIMIT_NOFILE) less a quarter of it, at least 64, kept for the
	 * process's other descriptors (PostgreSQL, SSH sessions, files). */
	unsigned max_connections;
};

struct http_server_hooks {
	/* The status of every reply, when it is sent (for the counters). May be NULL. */
	void (*on_reply)(int status, void *arg);
	/* The last reply still being written went out (see http_server_flushing). */
	void (*on_flushed)(void *arg);
	void *arg;
};

/* A server dispatching through routes[0..n) (kept, not copied) with route_arg as every
 * handler's arg. 0, or a negative EB_ERR_* with one line in err. */
int http_server_new(struct event_base *base, const struct http_route *routes, size_t n,
                    void *route_arg, const struct http_limits *lim,
                    const struct http_server_hooks *hooks, struct http_server **out, char *err,
                    size_t errlen);
/* Binds host:port (numeric, or a name resolved now, before serving). */
int http_server_listen(struct http_server *s, const char *host, int port, char *err, size_t errlen);
/* Stops accepting connections; open ones are served on, their replies asking the client
 * to close the connection. */
void http_server_stop_listening(struct http_server *s);
/* The name every reply carries in X-Exec-Broker-Instance, and every request's log line
 * (kept, not copied; NULL, "" or a name with other than printable ASCII: none). Behind a
 * load balancer it says which broker answered. */
void http_server_set_instance(struct http_server *s, const char *name);
/* New limits, for requests that arrive from now on. */
void http_server_set_limits(struct http_server *s, const struct http_limits *lim);
/* Replies handed over and not yet fully written. */
unsigned http_server_flushing(const struct http_server *s);
void http_server_free(struct http_server *s);

#endif
