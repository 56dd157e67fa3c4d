/* http/conn.c: one client connection as a state machine (see http/internal.h): requests
 * are read one at a time (the head through the strict framing of http/framing.c, the body
 * through http-parser), handed to their handler, and answered in order; keep-alive,
 * pipelining, 100-continue, timeouts and the lingering close live here. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fsm.h"
#include "common/log.h"
#include "http/internal.h"

/* What the client sends while its request is handled (pipelined requests) is read up to
 * this much, so that a hang-up is still seen, and no more. */
#define PIPELINE_MAX (64 * 1024)
/* How long a connection refused or closed after its reply keeps reading and dropping. */
#define LINGER_S 5

static const char *const state_names[] = {"idle",    "head",      "body",  "handling",
                                          "writing", "lingering", "closed"};
static const unsigned conn_legal[] = {
    [CONN_IDLE] = FSM_BIT(CONN_HEAD) | FSM_BIT(CONN_CLOSED),
    [CONN_HEAD] = FSM_BIT(CONN_BODY) | FSM_BIT(CONN_HANDLING) | FSM_BIT(CONN_LINGERING) |
                  FSM_BIT(CONN_CLOSED),
    [CONN_BODY] = FSM_BIT(CONN_HANDLING) | FSM_BIT(CONN_LINGERING) | FSM_BIT(CONN_CLOSED),
    [CONN_HANDLING] = FSM_BIT(CONN_WRITING) | FSM_BIT(CONN_CLOSED),
    [CONN_WRITING] = FSM_BIT(CONN_IDLE) | FSM_BIT(CONN_LINGERING) | FSM_BIT(CONN_CLOSED),
    [CONN_LINGERING] = FSM_BIT(CONN_CLOSED),
    [CONN_CLOSED] = 0,
};
static const struct fsm conn_fsm = {"http connection", state_names, conn_legal, 7};

static void conn_drive(struct http_conn *c);

/* The only place a connection changes state. A connection in CONN_WRITING counts among
 * the server's replies still being written. */
static void conn_set_state(struct http_conn *c, enum conn_state to)
{
	struct http_server *s = c->srv;
	enum conn_state from = c->state;

	FSM_SET(&conn_fsm, c->state, to, c->peer);
	if (to == CONN_HEAD) {
		struct timeval t = {s->lim.idle_timeout_s, 0};

		evtimer_add(c->head_deadline, &t);
	} else if (from == CONN_HEAD) {
		evtimer_del(c->head_deadline);
	}
	if (to == CONN_WRITING)
		s->flushing++;
	if (to != CONN_CLOSED)
		conn_set_timeouts(c);
	c->again = true;
	if (from == CONN_WRITING && --s->flushing == 0 && s->hooks.on_flushed != NULL)
		s->hooks.on_flushed(s->hooks.arg);
}

void conn_set_timeouts(struct http_conn *c)
{
	struct timeval idle = {c->srv->lim.idle_timeout_s, 0};

	switch (c->state) {
	case CONN_IDLE:
	case CONN_HEAD:
	case CONN_BODY:
		bufferevent_set_timeouts(c->bev, &idle, &idle);
		break;
	case CONN_HANDLING:
	case CONN_WRITING:
	case CONN_LINGERING:
		/* Reading is only for a hang-up (or to drop what comes): it may be silent. */
		bufferevent_set_timeouts(c->bev, NULL, &idle);
		break;
	case CONN_CLOSED:
	default:
		abort();
	}
}

struct evbuffer *conn_output(struct http_conn *c)
{
	return bufferevent_get_output(c->bev);
}

void conn_free(struct http_conn *c)
{
	if (c->linger != NULL)
		event_free(c->linger);
	event_free(c->head_deadline);
	bufferevent_free(c->bev);
	free(c);
}

/* Ends the connection: a request its handler holds learns the client is gone; the rest is
 * freed after the loop turn. */
void conn_close(struct http_conn *c, const char *why)
{
	struct http_server *s = c->srv;
	struct http_request *r = c->req;

	if (c->state == CONN_CLOSED)
		return;
	if (log_enabled(LOG_DEBUG))
		log_kv(LOG_DEBUG, "connection closed", "client", c->peer, "state",
		       state_names[c->state], "why", why, NULL);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	TAILQ_REMOVE(&s->conns, c, link);
	TAILQ_INSERT_TAIL(&s->closed, c, link);
	event_active(s->reclaim, 0, 0);
	conn_set_state(c, CONN_CLOSED);
	c->req = NULL;
	if (r != NULL) {
		r->conn = NULL;
		if (r->dispatched)
			http_request_gone(r); /* its handler still ends it */
		else
			http_request_free(r);
	}
}

static void on_linger_over(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_close(arg, "lingering over");
}

/* The reply is out: stop writing, and read (and drop) a while before closing, so that a
 * client still sending reads the reply rather than a reset. */
static void conn_linger(struct http_conn *c)
{
	struct timeval t = {LINGER_S, 0};

	conn_set_state(c, CONN_LINGERING);
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->linger = evtimer_new(c->srv->base, on_linger_over, c);
	if (c->linger == NULL || evtimer_add(c->linger, &t) != 0) {
		conn_close(c, "out of memory");
		return;
	}
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_enable(c->bev, EV_READ);
}

void conn_reply_done(struct http_conn *c)
{
	struct http_request *r = c->req;

	c->keep_alive =
	    c->keep_alive && !r->must_close && !c->srv->closing && !(r->streaming && !r->chunked);
	c->req = NULL;
	conn_set_state(c, CONN_WRITING);
	/* The write callback comes once everything is written. */
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_enable(c->bev, EV_WRITE);
	if (!c->driving)
		conn_drive(c);
}

/* Answers a request that never reached a handler (malformed, too large, timed out); the
 * connection closes once the answer is out. */
static void conn_refuse(struct http_conn *c, const struct framing_error *e)
{
	struct http_request *r = c->req;

	r->must_close = true;
	r->dispatched = true; /* answered by the layer itself, as a handler would */
	/* Nothing more of it is read as HTTP. */
	bufferevent_disable(c->bev, EV_READ);
	conn_set_state(c, CONN_HANDLING);
	c->srv->conn_hooks->refuse(r, e);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	struct http_request *r = c->req;

	if (r->body_len + len > c->srv->lim.max_body_bytes)
		return -1; /* a chunked body past the limit: see feed() */
	r->body_len += len;
	return evbuffer_add(r->body, at, len);
}

/* The request is whole: the parser stops here, before any pipelined request. */
static int on_message_complete(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feeds the input to http-parser until the request is complete or the input is used up.
 * 1: complete; 0: more is needed; -1 with e: refused. */
static int feed(struct http_conn *c, const char *data, size_t len, size_t *used,
                struct framing_error *e)
{
	size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
	enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);

	*used = n;
	if (err == HPE_PAUSED)
		return 1;
	if (err == HPE_OK)
		return 0;
	if (err == HPE_CB_body && c->req->body_len + 1 > c->srv->lim.max_body_bytes) {
		e->status = 413;
		e->code = "payload_too_large";
		snprintf(e->message, sizeof(e->message),
		         "the body is larger than %zu bytes, the most this broker takes",
		         c->srv->lim.max_body_bytes);
		return -1;
	}
	e->status = 400;
	e->code = "malformed_request";
	snprintf(e->message, sizeof(e->message), "the request is not valid HTTP/1.1: %s",
	         http_errno_description(err));
	return -1;
}

static void start_handling(struct http_conn *c)
{
	struct http_request *r = c->req;

	c->keep_alive = r->fields->keep_alive;
	r->dispatched = true;
	conn_set_state(c, CONN_HANDLING);
	/* Read on only to see a hang-up; a pipelined request waits in the buffer. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, PIPELINE_MAX);
	c->srv->conn_hooks->dispatch(c->srv, r);
}

/* The head is in: parse it, check its framing, and set the body's reading up. */
static void read_head(struct http_conn *c, size_t skip, size_t head_len)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct framing_head *h = calloc(1, sizeof(*h));
	struct framing_error e;
	char *head = malloc(head_len + 1), *copy = malloc(head_len);
	size_t used;
	int rc;

	if (h == NULL || head == NULL || copy == NULL) {
		free(h);
		free(head);
		free(copy);
		conn_close(c, "out of memory");
		return;
	}
	evbuffer_drain(in, skip);
	evbuffer_remove(in, head, head_len);
	head[head_len] = '\0';
	memcpy(copy, head, head_len);
	rc = framing_parse_head(head, head_len, h, &e);
	if (rc == 0 && http_request_set_head(c->req, head, h) != 0) {
		conn_close(c, "out of memory");
		free(copy);
		return;
	}
	if (rc != 0) {
		free(h);
		free(head);
	}
	if (rc == 0)
		rc = framing_check(c->req->fields, c->srv->lim.max_body_bytes, &e);
	if (rc == 0) {
		/* http-parser reads the same head: it frames the body, and must agree. */
		http_parser_pause(&c->parser, 0);
		rc = feed(c, copy, head_len, &used, &e);
		if (rc >= 0 && used != head_len) {
			e = (struct framing_error){400, "malformed_request",
			                           "the request is not valid HTTP/1.1"};
			rc = -1;
		} else if (rc >= 0 && ((c->parser.flags & F_CHUNKED) != 0) !=
		                          (c->req->fields->body == FRAMING_BODY_CHUNKED)) {
			e = (struct framing_error){400, "malformed_request",
			                           "the request's body framing is ambiguous"};
			rc = -1;
		}
	}
	free(copy);
	if (rc < 0) {
		conn_refuse(c, &e);
		return;
	}
	if (rc == 1) {
		start_handling(c);
		return;
	}
	if (c->req->fields->expect_continue)
		evbuffer_add(conn_output(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	conn_set_state(c, CONN_BODY);
}

static void drive_head(struct http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), head_len = 0;
	size_t want = len < FRAMING_MAX_HEAD + 1 ? len : FRAMING_MAX_HEAD + 1;
	const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
	struct framing_error e;
	int rc;

	if (want == 0)
		return;
	rc = framing_scan(&c->scan, data, want, &head_len, &e);
	if (rc < 0)
		conn_refuse(c, &e);
	else if (rc == 1)
		read_head(c, c->scan.skip, head_len);
}

static void drive_body(struct http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v[8];
	struct framing_error e;
	size_t total = 0, used;
	int n, rc = 0;

	n = evbuffer_peek(in, -1, NULL, v, 8);
	for (int i = 0; i < n && rc == 0; i++) {
		rc = feed(c, v[i].iov_base, v[i].iov_len, &used, &e);
		total += used;
	}
	evbuffer_drain(in, total);
	if (rc < 0)
		conn_refuse(c, &e);
	else if (rc == 1)
		start_handling(c);
	else if (n > 8)
		c->again = true; /* more chains than one pass takes */
}

/* One pass over what the connection can do now without waiting. */
static void conn_drive(struct http_conn *c)
{
	struct evbuffer *in;

	if (c->driving) {
		c->again = true;
		return;
	}
	c->driving = true;
	do {
		c->again = false;
		in = bufferevent_get_input(c->bev);
		switch (c->state) {
		case CONN_IDLE:
			if (evbuffer_get_length(in) == 0)
				break;
			c->req = http_request_new(c);
			if (c->req == NULL) {
				conn_close(c, "out of memory");
				break;
			}
			framing_scan_init(&c->scan);
			conn_set_state(c, CONN_HEAD);
			break;
		case CONN_HEAD:
			drive_head(c);
			break;
		case CONN_BODY:
			drive_body(c);
			break;
		case CONN_HANDLING:
			break;
		case CONN_WRITING:
			if (evbuffer_get_length(conn_output(c)) > 0)
				break;
			if (c->keep_alive) {
				conn_set_state(c, CONN_IDLE);
				bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
				bufferevent_enable(c->bev, EV_READ);
			} else {
				conn_linger(c);
			}
			break;
		case CONN_LINGERING:
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		case CONN_CLOSED:
			break;
		default:
			abort();
		}
	} while (c->again && c->state != CONN_CLOSED);
	c->driving = false;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_drive(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	struct http_request *r = c->req;

	(void)bev;
	if (c->state == CONN_HANDLING && r != NULL && r->on_drained != NULL &&
	    evbuffer_get_length(conn_output(c)) <= r->low_water)
		r->on_drained(r, r->on_drained_arg);
	else if (c->state == CONN_WRITING)
		conn_drive(c);
}

/* The request is late: 408, and the connection closes. */
static void conn_refuse_late(struct http_conn *c, const char *what)
{
	struct framing_error e = {408, "request_timeout", ""};

	snprintf(e.message, sizeof(e.message), "%s within %d s", what, c->srv->lim.idle_timeout_s);
	conn_refuse(c, &e);
}

static void on_head_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CONN_HEAD)
		conn_refuse_late(c, "the request's head did not arrive whole");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)bev;
	if (what == BEV_EVENT_CONNECTED)
		return; /* a TLS connection's handshake is over */
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
	    (c->state == CONN_HEAD || c->state == CONN_BODY)) {
		conn_refuse_late(c, "the request did not arrive whole");
		return;
	}
	if (what & BEV_EVENT_EOF)
		conn_close(c, "the client closed the connection");
	else if (what & BEV_EVENT_TIMEOUT)
		conn_close(c, (what & BEV_EVENT_WRITING) ? "the client stopped reading"
		                                         : "the client was silent");
	else
		conn_close(c, "the connection failed");
}

static void peer_name(const struct sockaddr *sa, char *out, size_t len)
{
	const void *addr = NULL;

	out[0] = '\0';
	if (sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (addr == NULL || inet_ntop(sa->sa_family, addr, out, (socklen_t)len) == NULL)
		out[0] = '\0';
}

int conn_open(struct http_server *s, int fd, const struct sockaddr *sa, int salen)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	(void)salen;
	if (c == NULL) {
		close(fd);
		return -1;
	}
	/* Frames are small and written as they come: without this, a last frame waits for the
	 * client's delayed ACK (about 40 ms). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = s;
	c->state = CONN_IDLE;
	peer_name(sa, c->peer, sizeof(c->peer));
	if (s->tls != NULL) {
		SSL *ssl = SSL_new(s->tls);

		c->bev = ssl != NULL ? bufferevent_openssl_socket_new(s->base, fd, ssl,
		                                                      BUFFEREVENT_SSL_ACCEPTING,
		                                                      BEV_OPT_CLOSE_ON_FREE)
		                     : NULL;
		if (c->bev == NULL)
			SSL_free(ssl); /* NULL is fine */
		else /* a client that closes without close_notify has still sent its request */
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	} else {
		c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	c->head_deadline = c->bev != NULL ? evtimer_new(s->base, on_head_deadline, c) : NULL;
	if (c->head_deadline == NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev); /* closes fd */
		else
			close(fd);
		free(c);
		return -1;
	}
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	conn_set_timeouts(c);
	bufferevent_enable(c->bev, EV_READ);
	TAILQ_INSERT_TAIL(&s->conns, c, link);
	return 0;
}
