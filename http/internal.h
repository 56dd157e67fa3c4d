/* http/internal.h: what the HTTP layer's files share and nothing outside http/ includes:
 * the server (listener, connections, limits, counters), a connection and its state
 * machine, and one request's context (what its handler reads, what its reply and log line
 * need). */
#ifndef EB_HTTP_INTERNAL_H
#define EB_HTTP_INTERNAL_H

#include <event2/keyvalq_struct.h>
#include <http_parser.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <time.h>

#include "http/framing.h"
#include "http/http.h"
#include "http/server.h"

struct bufferevent;
struct evconnlistener;
struct sockaddr;
struct ssl_ctx_st;
struct event;
struct evbuffer;
struct http_conn;

/* What a connection hands up to the server, which it never calls by name. */
struct conn_hooks {
	/* A whole request, for its route's handler. */
	void (*dispatch)(struct http_server *s, struct http_request *r);
	/* A request refused before any handler (malformed, too large, timed out): its
	 * answer. */
	void (*refuse)(struct http_request *r, const struct framing_error *e);
};

struct http_server {
	struct event_base *base;
	const struct conn_hooks *conn_hooks;
	struct evconnlistener *listener;
	struct event *resume;  /* re-enables accepting after a pause (out of descriptors) */
	struct event *reclaim; /* frees closed connections after the loop turn */
	const struct http_route *routes;
	size_t nroutes;
	void *route_arg;
	struct http_limits lim;
	struct http_server_hooks hooks;
	const char *instance;           /* X-Exec-Broker-Instance, or NULL */
	struct ssl_ctx_st *tls;         /* new connections are TLS with it, or NULL (http/tls.c) */
	bool closing;                   /* not listening: replies ask the client to close */
	unsigned nconns;                /* open or closed and not yet freed: descriptors held */
	unsigned max_conns;             /* lim.max_connections, resolved */
	bool full;                      /* accepting paused: nconns reached max_conns */
	time_t full_warned;             /* when that was last logged as a warning */
	bool out_of_fds;                /* accepting paused by accept() failing, until resume */
	unsigned flushing;              /* connections writing the last bytes of a reply */
	TAILQ_HEAD(, http_conn) conns;  /* open */
	TAILQ_HEAD(, http_conn) closed; /* to free after the loop turn */
};

enum conn_state {
	CONN_IDLE,      /* between requests: waiting for the first byte of the next */
	CONN_HEAD,      /* reading a request's head */
	CONN_BODY,      /* reading its body */
	CONN_HANDLING,  /* its handler has it; what the client sends is only watched for EOF */
	CONN_WRITING,   /* the reply is whole; its last bytes are being written */
	CONN_LINGERING, /* closing: replied, write side shut, the rest of the input dropped
	                 * for a while, so that the client reads the reply, not a reset */
	CONN_CLOSED,    /* freed after the loop turn */
};

struct http_conn {
	struct http_server *srv;
	struct bufferevent *bev;
	enum conn_state state;
	bool driving, again; /* inside conn_drive: a change of state means another pass */
	char peer[64];
	http_parser parser;
	struct framing_scan scan;
	struct http_request *req; /* being read, or with its handler */
	bool keep_alive;          /* after the current reply */
	struct event *linger;     /* ends the lingering close */
	/* The whole head must arrive within the idle timeout of its first byte: a client
	 * sending a byte now and then is never silent long enough for the idle timeout. */
	struct event *head_deadline;
	TAILQ_ENTRY(http_conn) link;
};

struct http_header {
	const char *name, *value;
};

struct http_request {
	struct http_server *srv;
	struct http_conn *conn; /* NULL once the client is gone or the request ended */
	bool dispatched;        /* a handler owns it */
	enum http_verb verb;
	const char *method; /* as sent ("-" before the request line was read) */
	int minor;          /* HTTP/1.minor */
	char *head;         /* the head's bytes, which the strings below point into */
	const char *target;
	char *full_path; /* the target's path ("/" when empty) */
	const char *query;
	struct framing_head *fields; /* NULL until the head is read */
	struct evbuffer *body;
	uint64_t body_len;
	char id[HTTP_REQUEST_ID_MAX + 1];
	char client[64];
	char path[160]; /* for the log, cut */
	const char *params[HTTP_MAX_PARAMS];
	char *param_buf;
	struct timespec t0; /* arrival of its first byte, CLOCK_MONOTONIC */
	int status;         /* sent status, 0 until then */
	bool streaming;     /* a streamed reply is under way */
	bool chunked;       /* ... framed in chunks (HTTP/1.1) */
	bool gone;          /* the client went away */
	bool must_close;    /* close the connection after the reply */
	struct http_log_fields log;
	struct evkeyvalq query_pairs; /* decoded, once asked for */
	bool query_parsed;
	bool query_bad;                    /* the query string did not parse: every call says so */
	struct http_header out_headers[8]; /* added by the handler (copies) */
	unsigned nout;
	void (*on_close)(struct http_request *r, void *arg);
	void *on_close_arg;
	void (*on_drained)(struct http_request *r, void *arg);
	void *on_drained_arg;
	size_t low_water;
};

/* A new request arriving on c (its clock starts now). NULL if out of memory. */
struct http_request *http_request_new(struct http_conn *c);
/* Fills r from its parsed head (kept: h and head are r's from now on). 0, or -1 when out
 * of memory. */
int http_request_set_head(struct http_request *r, char *head, struct framing_head *h);
/* Writes the request's log line. */
void http_request_log_line(struct http_request *r);
/* Frees the request's context. */
void http_request_free(struct http_request *r);
/* The client went away: the close callback runs, once. */
void http_request_gone(struct http_request *r);

/* The connection side of a reply. */
/* The reply ended (all its bytes handed to c): the request is no longer c's. */
void conn_reply_done(struct http_conn *c);
/* The client stalled or left while a handler streams: end the connection. */
void conn_close(struct http_conn *c, const char *why);
struct evbuffer *conn_output(struct http_conn *c);

/* Opens a connection on an accepted socket: 0, or -1 (out of memory; fd closed). */
int conn_open(struct http_server *s, int fd, const struct sockaddr *sa, int salen);
/* Sets a connection's timeouts for its state (after a change of limits too). */
void conn_set_timeouts(struct http_conn *c);
/* Frees what conn_close left (after the loop turn). */
void conn_free(struct http_conn *c);

#endif
