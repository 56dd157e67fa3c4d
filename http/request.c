/* http/request.c: one request's context as handlers read it (method, path parameters,
 * query, headers, body, id, client, clock), its log line, and how the layer notices a
 * client that went away while its handler works. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "http/internal.h"

const char *http_verb_name(enum http_verb m)
{
	static const char *const names[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
	                                    "PATCH", "OPTIONS", "TRACE", "CONNECT"};

	if ((unsigned)m >= HTTP_NVERBS)
		abort();
	return names[m];
}

enum http_verb http_request_verb(const struct http_request *r)
{
	return r->method;
}

const char *http_request_path(const struct http_request *r)
{
	return r->full_path;
}

const char *http_request_query(const struct http_request *r)
{
	const struct evhttp_uri *uri = r->ev != NULL ? evhttp_request_get_evhttp_uri(r->ev) : NULL;

	return uri != NULL ? evhttp_uri_get_query(uri) : NULL;
}

const char *http_request_param(const struct http_request *r, unsigned i)
{
	return i < HTTP_MAX_PARAMS ? r->params[i] : NULL;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
	if (r->ev == NULL)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_request_body(struct http_request *r, size_t *len)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(r->ev);

	*len = evbuffer_get_length(b);
	return (const char *)evbuffer_pullup(b, -1);
}

const char *http_request_id(const struct http_request *r)
{
	return r->id;
}

const char *http_request_client(const struct http_request *r)
{
	return r->client;
}

long long http_request_elapsed_ms(const struct http_request *r)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - r->t0.tv_sec) * 1000 +
	       (now.tv_nsec - r->t0.tv_nsec) / 1000000;
}

int http_request_query_pairs(struct http_request *r, const char **names, const char **values,
                             size_t max, size_t *n)
{
	const char *query = http_request_query(r);
	struct evkeyval *kv;

	*n = 0;
	if (!r->query_parsed) {
		r->query_parsed = true;
		if (query != NULL && evhttp_parse_query_str(query, &r->query) != 0)
			return -1;
	}
	for (kv = r->query.tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		if (*n == max) {
			*n = max + 1;
			return -1;
		}
		names[*n] = kv->key;
		values[(*n)++] = kv->value;
	}
	return 0;
}

struct http_log_fields *http_request_log(struct http_request *r)
{
	return &r->log;
}

void http_request_log_line(struct http_request *r)
{
	char status[8], ms[24];

	snprintf(status, sizeof(status), "%d", r->status);
	snprintf(ms, sizeof(ms), "%lld", http_request_elapsed_ms(r));
	log_kv(r->status >= 500 ? LOG_WARN : LOG_INFO, "request", "method",
	       http_verb_name(r->method), "path", r->path, "status", status, "request_id", r->id,
	       "client", r->client, "duration_ms", ms, "workspace_id", r->log.workspace_id, "actor",
	       r->log.actor, "exec_id", r->log.exec_id, "outcome", r->log.outcome, "error",
	       r->log.error, NULL);
}

void http_request_free(struct http_request *r)
{
	http_request_unwatch(r);
	evhttp_clear_headers(&r->query);
	free(r->full_path);
	free(r->param_buf);
	free(r);
}

bool http_request_client_gone(const struct http_request *r)
{
	return r->gone;
}

static void stop_hangup_watch(struct http_request *r)
{
	if (r->hangup != NULL) {
		event_free(r->hangup);
		r->hangup = NULL;
	}
}

void http_request_gone(struct http_request *r)
{
	if (r->gone)
		return;
	r->gone = true;
	stop_hangup_watch(r);
	if (r->on_close != NULL)
		r->on_close(r, r->on_close_arg);
}

/* evhttp closes the connection (EOF or a write error while replying): the request stays
 * the handler's, detached; ending it later frees it. */
static void on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct http_request *r = arg;

	(void)evcon;
	r->evcon = NULL;
	http_request_gone(r);
}

/* Until a reply is under way evhttp does not read the socket, so a client that hangs up
 * while its handler works would go unnoticed: watch for EOF here. */
static void on_hangup(evutil_socket_t fd, short what, void *arg)
{
	struct http_request *r = arg;
	char c;
	ssize_t n;

	(void)what;
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		stop_hangup_watch(r); /* a pipelined request: not ours to read */
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	http_request_gone(r);
}

void http_request_on_close(struct http_request *r, void (*cb)(struct http_request *r, void *arg),
                           void *arg)
{
	struct bufferevent *bev;
	evutil_socket_t fd;

	r->on_close = cb;
	r->on_close_arg = arg;
	if (r->evcon == NULL || r->gone)
		return;
	evhttp_connection_set_closecb(r->evcon, on_conn_closed, r);
	if (r->streaming)
		return; /* evhttp reads the socket while it writes a reply, and reports EOF */
	bev = evhttp_connection_get_bufferevent(r->evcon);
	fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	if (fd < 0)
		return;
	r->hangup = event_new(r->srv->base, fd, EV_READ | EV_PERSIST, on_hangup, r);
	if (r->hangup != NULL)
		event_add(r->hangup, NULL);
}

/* Before the request goes back to evhttp: nothing of the request may be called from the
 * connection afterwards. */
void http_request_unwatch(struct http_request *r)
{
	stop_hangup_watch(r);
	if (r->evcon != NULL)
		evhttp_connection_set_closecb(r->evcon, NULL, NULL);
}

void http_request_drop(struct http_request *r)
{
	http_request_unwatch(r);
	if (r->evcon != NULL)
		evhttp_connection_free(r->evcon); /* frees the evhttp request with it */
	else if (r->ev != NULL)
		evhttp_request_free(r->ev); /* detached when evhttp closed the connection */
	r->evcon = NULL;
	r->ev = NULL;
	if (r->status == 0)
		r->status = 499; /* as nginx logs it: the client closed the request */
	r->log.error = "client_gone";
	http_request_log_line(r);
	http_request_free(r);
}
