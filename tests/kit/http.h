/* tests/kit/http.h: the one HTTP/1.1 client of suites and benchmarks: connections to 127.0.0.1
 * that send built or raw requests and read responses as they arrive (whole, by line, or many
 * in one poll() loop), fresh or kept alive, reading only when asked (a client that lags). */
#ifndef EB_TESTS_KIT_HTTP_H
#define EB_TESTS_KIT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One request. Unset fields take the defaults. */
struct kit_req {
	const char *method; /* "POST" when NULL */
	const char *path;   /* or, for an exec, ws: */
	const char *ws;     /* path becomes /v1/workspaces/<ws>/exec */
	const char *token;  /* Authorization: Bearer <token> */
	const char *auth;   /* the raw Authorization value instead (token then unused) */
	const char *body;   /* NULL: no body */
	size_t body_len;    /* 0: strlen(body) */
	const char *ctype; /* Content-Type; NULL: application/json when there is a body; "": none */
	const char *accept; /* Accept; NULL: any media type, as curl sends it */
	const char *reason; /* X-Break-Glass-Reason */
	/* X-Request-Id; NULL: a fresh unique one (kept in kit_resp.rid); "": none */
	const char *rid;
	const char *headers[6]; /* more raw "Name: value" lines */
	int max_time_s;         /* the whole exchange; 0: 90; negative: no limit */
	int rcvbuf;             /* SO_RCVBUF of a connection made for it; 0: the system's */
	/* Sent as they are instead of a request made of the fields above (malformed requests;
	 * only max_time_s and rcvbuf still apply). */
	const char *raw;
	size_t raw_len;
};

struct kit_resp {
	int status;      /* 0 when no response came */
	bool complete;   /* it arrived whole, as its framing says, in time */
	char error[200]; /* why not, when !complete */
	char *head;      /* the final header block (1xx ones skipped), "" if none */
	char *body;      /* NUL-terminated, de-chunked; body_len excludes the NUL */
	size_t body_len;
	char rid[80]; /* the X-Request-Id sent, "" if none */
};

/* One explicit state per connection; kit_conn_set_state() is the only place it changes. */
enum kit_conn_state {
	KIT_CONN_IDLE,       /* no request in flight (connected or not) */
	KIT_CONN_HEAD,       /* the request is (being) sent; waiting for the status and headers */
	KIT_CONN_BODY,       /* a Content-Length body: left bytes to come */
	KIT_CONN_CHUNK_SIZE, /* a chunked body: the size line */
	KIT_CONN_CHUNK_DATA, /* left bytes of a chunk */
	KIT_CONN_CHUNK_END,  /* the CRLF after a chunk's data */
	KIT_CONN_TRAILER,    /* after the last chunk, up to the empty line */
	KIT_CONN_TO_CLOSE,   /* a body that ends when the server closes */
	KIT_CONN_DONE,       /* the response is over; r.complete says whether whole */
};

struct kit_conn {
	int port;
	int fd; /* -1 when not connected */
	enum kit_conn_state state;
	/* Body bytes as they are decoded (arg is the connection's arg); the callback must not
	 * use the connection. With discard_body they are not kept in r.body. */
	void (*on_body)(void *arg, const char *p, size_t n);
	void *arg;
	bool discard_body;
	struct kit_resp r;   /* the response being read, or the last one */
	uint64_t recv_bytes; /* raw bytes received over the connection's life */

	/* Internal. */
	char *out; /* the request, sent up to out_off */
	size_t out_len, out_off;
	char *in; /* received bytes, parsed up to in_off */
	size_t in_len, in_off, in_cap, body_cap;
	uint64_t left;      /* of the body or the chunk */
	uint64_t body_seen; /* body bytes of this response, kept or not */
	bool head_only;     /* a response to HEAD: no body */
	bool closing;       /* close once the response is over */
	int rcvbuf;         /* SO_RCVBUF for the next connection */
	long long deadline; /* CLOCK_MONOTONIC ms; 0: none */
	long long max_ms;   /* the request's time */
	size_t consumed;    /* body bytes handed out as lines */
	size_t scanned;     /* body bytes searched for '\n' */
};

/* An idle, unconnected connection to 127.0.0.1:port. */
void kit_conn_init(struct kit_conn *c, int port);
/* Starts q on c, connecting first (again if the server closed the connection while it was
 * idle): what does not fit into the socket now is sent as the connection runs. 0, or -1
 * when there is no connection (c is then KIT_CONN_DONE with status 0 and the error). */
int kit_conn_send(struct kit_conn *c, const struct kit_req *q);
/* Runs c's I/O until its response is over, or the request's time is up: 0 if it arrived
 * whole, else -1 (c->r.error says why). */
int kit_conn_finish(struct kit_conn *c);
/* q on c and its whole response in c->r: kit_conn_send then kit_conn_finish. */
int kit_conn_request(struct kit_conn *c, const struct kit_req *q);
/* One poll() over the connections of cs with a request in flight (others are skipped),
 * waiting at most ms, then their I/O; a connection whose response ended is KIT_CONN_DONE.
 * Returns how many still have a request in flight, or -1 if poll failed. */
int kit_conn_poll(struct kit_conn *const cs[], size_t n, int ms);
/* Bytes until the server closes, unparsed (after a raw request, to see exactly what a
 * server answers): a malloc'd NUL-terminated copy in *out and its length in *len. 0, or -1
 * if it did not close within ms. */
int kit_conn_read_to_close(struct kit_conn *c, int ms, char **out, size_t *len);
/* Closes the socket (the server sees the connection drop); the buffers stay. */
void kit_conn_close(struct kit_conn *c);
/* Closes and frees everything, c->r included. */
void kit_conn_free(struct kit_conn *c);
/* The one setter of c->state; aborts on a transition that cannot happen. */
void kit_conn_set_state(struct kit_conn *c, enum kit_conn_state s);

/* Streams: one request on a fresh connection whose response is read as the test asks. */

/* Connects and sends the whole of q (rcvbuf applies). 0, or -1 if out of memory; a
 * connection refused is a response with status 0, as a client sees it. */
int kit_stream_open(struct kit_conn *s, int port, const struct kit_req *q);
/* Waits up to ms for the status line and headers: 0, or -1 (timeout, or the response ended
 * without them; s->r.status is then 0). */
int kit_stream_head(struct kit_conn *s, int ms);
/* The next body line without its '\n' (malloc'd), or NULL when the body ended or nothing
 * came for ms. After the end, what follows the last '\n' comes as a last line. */
char *kit_stream_line(struct kit_conn *s, int ms);
/* Whether the response is over (whole or not). */
bool kit_stream_over(const struct kit_conn *s);
/* Reads to the end of the response (or of its time), moves it into *r and closes: 0. */
int kit_stream_finish(struct kit_conn *s, struct kit_resp *r);
/* Drops the connection unread and frees everything. */
void kit_stream_abort(struct kit_conn *s);

/* A whole request on a fresh connection: kit_stream_open + kit_stream_finish. 0, or -1 if
 * out of memory. */
int kit_http(int port, const struct kit_req *q, struct kit_resp *r);
/* n requests at once, each on its own connection, in one poll() loop (max_time_s 0 is
 * 120 s here); r[i] receives the response to q[i]. */
int kit_http_parallel(int port, const struct kit_req *q, size_t n, struct kit_resp *r);

void kit_resp_free(struct kit_resp *r);
/* The value of header name (case-insensitive) in r->head, copied into buf; NULL if absent. */
const char *kit_header(const struct kit_resp *r, const char *name, char *buf, size_t len);

#endif
