/* http/http.h: what a handler sees of an HTTP request: its method, path parameters, query,
 * headers and body, the fields its log line carries, and the ways to answer it (a whole
 * reply, an API error, or a streamed chunked reply with backpressure). Handlers never see
 * the transport underneath.
 *
 * Ownership: the HTTP layer hands a request to its route's handler, which owns it until it
 * ends it with exactly one of http_reply*, http_stream_end or http_request_drop; the
 * pointer is invalid afterwards. A client that goes away meanwhile does not free the
 * request: the handler learns it from the close callback and still ends it (the reply then
 * goes nowhere; the log says 499). */
#ifndef EB_HTTP_HTTP_H
#define EB_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct http_request;

#define HTTP_REQUEST_ID_MAX 128
#define HTTP_MAX_PARAMS     4 /* path parameters of one route */

enum http_verb {
	HTTP_VERB_GET,
	HTTP_VERB_HEAD,
	HTTP_VERB_POST,
	HTTP_VERB_PUT,
	HTTP_VERB_DELETE,
	HTTP_VERB_PATCH,
	HTTP_VERB_OPTIONS,
	HTTP_VERB_TRACE,
	HTTP_VERB_CONNECT,
	HTTP_NVERBS,
};

#define HTTP_M(m) (1u << (unsigned)(m))

/* "GET", ... */
const char *http_verb_name(enum http_verb m);

enum http_verb http_request_verb(const struct http_request *r);
/* The path without the query, as received ("/" when empty). */
const char *http_request_path(const struct http_request *r);
/* The raw query string (after '?'), or NULL when there is none. */
const char *http_request_query(const struct http_request *r);
/* Path parameter i of the route that matched ("{id}" segments, left to right), as
 * received: not decoded, never empty, never containing '/'. NULL past the last. */
const char *http_request_param(const struct http_request *r, unsigned i);
/* The first value of header name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *r, const char *name);
/* The whole body and its length (not NUL-terminated; NULL when empty). */
const char *http_request_body(struct http_request *r, size_t *len);
/* The request's id: the client's X-Request-Id when it is 1-128 of [A-Za-z0-9._:-], else a
 * new UUID. Sent back in X-Request-Id and logged. */
const char *http_request_id(const struct http_request *r);
/* The client's address ("" if unknown). */
const char *http_request_client(const struct http_request *r);
/* Milliseconds since the request arrived. */
long long http_request_elapsed_ms(const struct http_request *r);

/* The query as decoded name/value pairs (owned by the request, valid until it ends), in
 * order of appearance: 0 and *n pairs, or -1 when the query string is malformed. NULL
 * query: 0 pairs. At most max pairs; more is -1 with *n = max + 1. */
int http_request_query_pairs(struct http_request *r, const char **names, const char **values,
                             size_t max, size_t *n);

/* Fields of the request's log line; strings must outlive the request (static strings, or
 * owned by the handler until it ends the request). NULL leaves a field out. exec_id also
 * goes out as the X-Exec-Id header of a reply not yet started. */
struct http_log_fields {
	const char *exec_id, *workspace_id, *outcome, *error, *actor;
	/* A probe (health checks, scrapes) whose success is logged at debug level only: a load
	 * balancer's checks every second would otherwise bury the requests. */
	bool probe;
};
struct http_log_fields *http_request_log(struct http_request *r);

/* Adds a response header to a reply not yet started. */
void http_reply_header(struct http_request *r, const char *name, const char *value);

/* A whole reply: status, Content-Type and body. Ends the request. */
void http_reply(struct http_request *r, int status, const char *content_type, const void *body,
                size_t len);
/* o (taken over) as application/json; a 500 with an empty body if o is NULL. */
void http_reply_json(struct http_request *r, int status, json_t *o);
/* An API error: the code's status (http/apierr.h) and {"error":{"code","message"[,"field"]}};
 * WWW-Authenticate on 401s. Ends the request. */
void http_reply_error(struct http_request *r, const char *code, const char *message,
                      const char *field);

/* Starts a chunked 200 reply of content_type (headers only). */
void http_stream_start(struct http_request *r, const char *content_type);
/* Sends the bytes of chunk (taken out of it: chunk is empty afterwards) as one HTTP chunk.
 * Does nothing once the client is gone. */
void http_stream_write(struct http_request *r, struct evbuffer *chunk);
/* Bytes handed to the stream and not yet written to the client's socket. */
size_t http_stream_backlog(const struct http_request *r);
/* Calls cb once the backlog falls to low_water bytes or below after a write: the client
 * caught up. Set once, after http_stream_start. */
void http_stream_on_drained(struct http_request *r, size_t low_water,
                            void (*cb)(struct http_request *r, void *arg), void *arg);
/* Ends the chunked reply (the last chunk). Ends the request. */
void http_stream_end(struct http_request *r);

/* Calls cb (once) when the client goes away before the request ended: a hang-up while the
 * handler works, or a write that failed. Never called after the request ended. */
void http_request_on_close(struct http_request *r, void (*cb)(struct http_request *r, void *arg),
                           void *arg);
/* Whether the client went away. */
bool http_request_client_gone(const struct http_request *r);
/* Ends a request without a reply (the client is gone or is to be cut off): logs it as 499
 * with error client_gone unless a status was already sent. Ends the request. */
void http_request_drop(struct http_request *r);

#endif
