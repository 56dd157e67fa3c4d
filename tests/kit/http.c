/* tests/kit/http.c: the HTTP/1.1 client (see http.h): requests built from fields or sent
 * raw, a response parser driven by whatever bytes have arrived, and one poll() loop under
 * streams, whole requests, parallel ones and the benchmarks' keep-alive connections. */
#include "tests/kit/http.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/kit/clock.h"
#include "tests/kit/net.h"

#define MAX_HEAD       65536
#define MAX_CHUNK_LINE 1024
#define READ_CHUNK     (256 * 1024)
#define DEFAULT_MAX_S  90
#define PARALLEL_MAX_S 120

/* Request ids unique in the run: the pid tells the processes of a run apart. */
static atomic_uint rid_counter;

/* Which states each state may move to. */
static const unsigned next_states[] = {
    [KIT_CONN_IDLE] = 1u << KIT_CONN_HEAD | 1u << KIT_CONN_DONE,
    [KIT_CONN_HEAD] = 1u << KIT_CONN_HEAD | 1u << KIT_CONN_BODY | 1u << KIT_CONN_CHUNK_SIZE |
                      1u << KIT_CONN_TO_CLOSE | 1u << KIT_CONN_DONE,
    [KIT_CONN_BODY] = 1u << KIT_CONN_DONE,
    [KIT_CONN_CHUNK_SIZE] =
        1u << KIT_CONN_CHUNK_DATA | 1u << KIT_CONN_TRAILER | 1u << KIT_CONN_DONE,
    [KIT_CONN_CHUNK_DATA] = 1u << KIT_CONN_CHUNK_END | 1u << KIT_CONN_DONE,
    [KIT_CONN_CHUNK_END] = 1u << KIT_CONN_CHUNK_SIZE | 1u << KIT_CONN_DONE,
    [KIT_CONN_TRAILER] = 1u << KIT_CONN_DONE,
    [KIT_CONN_TO_CLOSE] = 1u << KIT_CONN_DONE,
    [KIT_CONN_DONE] = 1u << KIT_CONN_HEAD,
};

void kit_conn_set_state(struct kit_conn *c, enum kit_conn_state s)
{
	if ((unsigned)c->state >= sizeof(next_states) / sizeof(next_states[0]) ||
	    !(next_states[c->state] & 1u << s)) {
		fprintf(stderr, "kit: HTTP connection state %d -> %d\n", (int)c->state, (int)s);
		abort();
	}
	c->state = s;
}

static bool in_flight(const struct kit_conn *c)
{
	return c->fd >= 0 && c->state != KIT_CONN_IDLE && c->state != KIT_CONN_DONE;
}

/* The response is over without arriving whole; the first reason given is kept. */
__attribute__((format(printf, 2, 3))) static void conn_fail(struct kit_conn *c, const char *fmt,
                                                            ...)
{
	va_list ap;

	if (c->state != KIT_CONN_DONE)
		kit_conn_set_state(c, KIT_CONN_DONE);
	c->r.complete = false;
	if (c->r.error[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(c->r.error, sizeof(c->r.error), fmt, ap);
		va_end(ap);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The response arrived whole. Bytes after it cannot belong to any request of ours. */
static void conn_end(struct kit_conn *c)
{
	size_t extra = c->in_len - c->in_off;

	if (extra > 0) {
		conn_fail(c, "%zu bytes after the response", extra);
		return;
	}
	kit_conn_set_state(c, KIT_CONN_DONE);
	c->r.complete = true;
	if (c->closing && c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

static void body_add(struct kit_conn *c, const char *p, size_t n)
{
	c->body_seen += n;
	if (!c->discard_body) {
		if (c->r.body_len + n + 1 > c->body_cap) {
			size_t cap = c->body_cap ? c->body_cap : 65536;
			char *nb;
			while (cap < c->r.body_len + n + 1)
				cap *= 2;
			nb = realloc(c->r.body, cap);
			if (nb == NULL)
				abort();
			c->r.body = nb;
			c->body_cap = cap;
		}
		memcpy(c->r.body + c->r.body_len, p, n);
		c->r.body_len += n;
		c->r.body[c->r.body_len] = '\0';
	}
	if (c->on_body != NULL)
		c->on_body(c->arg, p, n);
}

/* The final head (hl bytes at p, NUL-terminated at in_len): what the body is. Returns the
 * state that follows it, KIT_CONN_DONE for no body, or KIT_CONN_HEAD to skip a 1xx head; -1
 * if it is not HTTP. */
static int head_parse(struct kit_conn *c, const char *p, size_t hl)
{
	char v[128];
	int st = 0;
	bool chunked;

	if (sscanf(p, "HTTP/%*s %d", &st) != 1 || st < 100) {
		conn_fail(c, "not an HTTP response: %.40s", p);
		return -1;
	}
	if (st < 200)
		return KIT_CONN_HEAD;
	c->r.status = st;
	free(c->r.head);
	c->r.head = strndup(p, hl);
	if (c->r.head == NULL)
		abort();
	/* An early answer (a 413 to a body too large) ends the request: curl stops sending too. */
	if (c->out_off < c->out_len) {
		c->out_off = c->out_len;
		c->closing = true;
	}
	if (kit_header(&c->r, "Connection", v, sizeof(v)) != NULL && strcasestr(v, "close"))
		c->closing = true;
	chunked = kit_header(&c->r, "Transfer-Encoding", v, sizeof(v)) != NULL &&
	          strcasestr(v, "chunked") != NULL;
	if (c->head_only || st == 204 || st == 304)
		return KIT_CONN_DONE;
	if (chunked)
		return KIT_CONN_CHUNK_SIZE;
	if (kit_header(&c->r, "Content-Length", v, sizeof(v)) != NULL) {
		c->left = strtoull(v, NULL, 10);
		return c->left == 0 ? KIT_CONN_DONE : KIT_CONN_BODY;
	}
	c->closing = true;
	return KIT_CONN_TO_CLOSE;
}

/* Parses what has arrived, as far as it goes. */
static void conn_parse(struct kit_conn *c)
{
	for (;;) {
		char *p = c->in + c->in_off, *e, *num_end;
		size_t avail = c->in_len - c->in_off, k;
		int next;

		switch (c->state) {
		case KIT_CONN_HEAD:
			e = avail >= 4 ? memmem(p, avail, "\r\n\r\n", 4) : NULL;
			if (e == NULL) {
				if (avail > MAX_HEAD)
					conn_fail(c, "a response head over %d bytes", MAX_HEAD);
				return;
			}
			next = head_parse(c, p, (size_t)(e - p) + 4);
			if (next < 0)
				return;
			c->in_off += (size_t)(e - p) + 4;
			if (next == KIT_CONN_DONE) {
				conn_end(c);
				return;
			}
			kit_conn_set_state(c, (enum kit_conn_state)next);
			break;
		case KIT_CONN_CHUNK_SIZE:
			e = memmem(p, avail, "\r\n", 2);
			if (e == NULL) {
				if (avail > MAX_CHUNK_LINE)
					conn_fail(c, "a malformed chunk size line");
				return;
			}
			c->left = strtoull(p, &num_end, 16);
			if (num_end == p) {
				conn_fail(c, "a malformed chunk size line: %.20s", p);
				return;
			}
			c->in_off += (size_t)(e - p) + 2;
			kit_conn_set_state(c,
			                   c->left == 0 ? KIT_CONN_TRAILER : KIT_CONN_CHUNK_DATA);
			break;
		case KIT_CONN_BODY:
		case KIT_CONN_CHUNK_DATA:
			if (avail == 0)
				return;
			k = avail < c->left ? avail : (size_t)c->left;
			body_add(c, p, k);
			c->in_off += k;
			c->left -= k;
			if (c->left > 0)
				return;
			if (c->state == KIT_CONN_BODY) {
				conn_end(c);
				return;
			}
			kit_conn_set_state(c, KIT_CONN_CHUNK_END);
			break;
		case KIT_CONN_CHUNK_END:
			if (avail < 2)
				return;
			if (p[0] != '\r' || p[1] != '\n') {
				conn_fail(c, "a chunk not followed by CRLF");
				return;
			}
			c->in_off += 2;
			kit_conn_set_state(c, KIT_CONN_CHUNK_SIZE);
			break;
		case KIT_CONN_TRAILER:
			e = memmem(p, avail, "\r\n", 2);
			if (e == NULL)
				return;
			c->in_off += (size_t)(e - p) + 2;
			if (e == p) {
				conn_end(c);
				return;
			}
			break;
		case KIT_CONN_TO_CLOSE:
			body_add(c, p, avail);
			c->in_off += avail;
			return;
		case KIT_CONN_IDLE:
		case KIT_CONN_DONE:
			return;
		default:
			abort();
		}
	}
}

/* The server closed (or reset) the connection. */
static void conn_eof(struct kit_conn *c, const char *why)
{
	if (c->state == KIT_CONN_TO_CLOSE) {
		conn_end(c);
		return;
	}
	if (in_flight(c))
		conn_fail(c, "the connection ended (%s) %s after %llu body bytes", why,
		          c->r.head == NULL ? "before the head" : "in the body",
		          (unsigned long long)c->body_seen);
	else
		kit_conn_close(c);
}

static void conn_read(struct kit_conn *c)
{
	ssize_t n;

	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_cap - c->in_len < READ_CHUNK + 1) {
		char *nb = realloc(c->in, c->in_len + READ_CHUNK + 1);
		if (nb == NULL)
			abort();
		c->in = nb;
		c->in_cap = c->in_len + READ_CHUNK + 1;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_eof(c, n == 0 ? "EOF" : strerror(errno));
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	c->recv_bytes += (uint64_t)n;
	conn_parse(c);
}

static void conn_write(struct kit_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* The server stopped reading; whatever it answered before is still read. */
		c->out_off = c->out_len;
		c->closing = true;
		return;
	}
}

static void conn_timeout_check(struct kit_conn *c, long long now)
{
	if (in_flight(c) && c->deadline != 0 && now >= c->deadline)
		conn_fail(c, "no whole response within %lld ms (%llu body bytes)", c->max_ms,
		          (unsigned long long)c->body_seen);
}

static void conn_step(struct kit_conn *c, short revents)
{
	if ((revents & (POLLOUT | POLLERR | POLLHUP)) && c->out_off < c->out_len)
		conn_write(c);
	if (in_flight(c) && (revents & (POLLIN | POLLERR | POLLHUP)))
		conn_read(c);
}

int kit_conn_poll(struct kit_conn *const cs[], size_t n, int ms)
{
	struct pollfd *pf = calloc(n ? n : 1, sizeof(*pf));
	size_t *map = calloc(n ? n : 1, sizeof(*map)), k = 0;
	long long now = kit_now_ms();
	int wait = ms, left = 0, rc;

	if (pf == NULL || map == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct kit_conn *c = cs[i];
		conn_timeout_check(c, now);
		if (!in_flight(c))
			continue;
		if (c->deadline != 0 && (wait < 0 || c->deadline - now < wait))
			wait = (int)(c->deadline - now);
		pf[k] = (struct pollfd){.fd = c->fd,
		                        .events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0)};
		map[k++] = i;
	}
	if (k == 0) {
		rc = 0;
		goto out;
	}
	rc = poll(pf, (nfds_t)k, wait);
	if (rc < 0 && errno != EINTR) {
		rc = -1;
		goto out;
	}
	for (size_t j = 0; rc > 0 && j < k; j++)
		if (pf[j].revents != 0)
			conn_step(cs[map[j]], pf[j].revents);
	now = kit_now_ms();
	for (size_t j = 0; j < k; j++) {
		conn_timeout_check(cs[map[j]], now);
		left += in_flight(cs[map[j]]);
	}
	rc = left;
out:
	free(pf);
	free(map);
	return rc;
}

/* Runs c alone until done(c), the end of its response, or ms (negative: its deadline). */
static void conn_run(struct kit_conn *c, int ms, bool (*done)(struct kit_conn *c))
{
	struct kit_conn *one[1] = {c};
	long long end = kit_now_ms() + ms;

	while (in_flight(c) && (done == NULL || !done(c))) {
		long long left = end - kit_now_ms();
		if (ms >= 0 && left <= 0)
			return;
		if (kit_conn_poll(one, 1, ms < 0 ? 1000 : left > 1000 ? 1000 : (int)left) < 0)
			return;
	}
}

void kit_conn_init(struct kit_conn *c, int port)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->port = port;
}

/* The request q as bytes into c->out. */
static void req_build(struct kit_conn *c, const struct kit_req *q)
{
	size_t blen = q->body ? (q->body_len ? q->body_len : strlen(q->body)) : 0, len = 0;
	const char *method = q->method ? q->method : "POST";
	FILE *m;

	free(c->out);
	c->out = NULL;
	m = open_memstream(&c->out, &len);
	if (m == NULL)
		abort();
	if (q->ws != NULL)
		fprintf(m, "%s /v1/workspaces/%s/exec HTTP/1.1\r\n", method, q->ws);
	else
		fprintf(m, "%s %s HTTP/1.1\r\n", method, q->path);
	fprintf(m, "Host: 127.0.0.1:%d\r\n", c->port);
	if (q->auth != NULL)
		fprintf(m, "Authorization: %s\r\n", q->auth);
	else if (q->token != NULL)
		fprintf(m, "Authorization: Bearer %s\r\n", q->token);
	if (q->ctype != NULL && q->ctype[0] != '\0')
		fprintf(m, "Content-Type: %s\r\n", q->ctype);
	else if (q->ctype == NULL && q->body != NULL)
		fprintf(m, "Content-Type: application/json\r\n");
	if (q->accept == NULL)
		fprintf(m, "Accept: */*\r\n");
	else if (q->accept[0] != '\0')
		fprintf(m, "Accept: %s\r\n", q->accept);
	if (q->reason != NULL)
		fprintf(m, "X-Break-Glass-Reason: %s\r\n", q->reason);
	if (c->r.rid[0] != '\0')
		fprintf(m, "X-Request-Id: %s\r\n", c->r.rid);
	for (int i = 0; i < 6 && q->headers[i] != NULL; i++)
		fprintf(m, "%s\r\n", q->headers[i]);
	if (q->body != NULL)
		fprintf(m, "Content-Length: %zu\r\n", blen);
	fputs("\r\n", m);
	if (blen > 0)
		fwrite(q->body, 1, blen, m);
	if (fclose(m) != 0)
		abort();
	c->out_len = len;
}

/* Whether the idle connection is still open: the broker closes idle ones. */
static bool conn_alive(const struct kit_conn *c)
{
	char ch;

	return recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
	       (errno == EAGAIN || errno == EWOULDBLOCK);
}

int kit_conn_send(struct kit_conn *c, const struct kit_req *q)
{
	int one = 1, max_s = q->max_time_s == 0 ? DEFAULT_MAX_S : q->max_time_s;

	free(c->r.head);
	c->r.head = NULL;
	c->r.status = 0;
	c->r.complete = false;
	c->r.error[0] = '\0';
	c->r.body_len = 0;
	if (c->r.body != NULL)
		c->r.body[0] = '\0';
	c->body_seen = c->left = 0;
	c->consumed = c->scanned = 0;
	c->closing = false;
	if (q->raw != NULL)
		c->r.rid[0] = '\0';
	else if (q->rid == NULL)
		snprintf(c->r.rid, sizeof(c->r.rid), "t%d-%u", (int)getpid(),
		         atomic_fetch_add(&rid_counter, 1) + 1);
	else
		snprintf(c->r.rid, sizeof(c->r.rid), "%s", q->rid);
	if (q->raw != NULL) {
		free(c->out);
		c->out = malloc(q->raw_len + 1);
		if (c->out == NULL)
			abort();
		memcpy(c->out, q->raw, q->raw_len);
		c->out_len = q->raw_len;
		c->head_only = q->raw_len >= 5 && memcmp(q->raw, "HEAD ", 5) == 0;
	} else {
		req_build(c, q);
		c->head_only = q->method != NULL && strcmp(q->method, "HEAD") == 0;
	}
	c->out_off = 0;
	c->max_ms = max_s < 0 ? 0 : max_s * 1000LL;
	c->deadline = max_s < 0 ? 0 : kit_now_ms() + c->max_ms;
	if (q->rcvbuf > 0)
		c->rcvbuf = q->rcvbuf;
	/* Bytes left from before, or a connection the server closed while it was idle: a new
	 * connection rather than a request into a dead one. */
	if (c->fd >= 0 && (c->in_len > c->in_off || !conn_alive(c)))
		kit_conn_close(c);
	c->in_len = c->in_off = 0;
	kit_conn_set_state(c, KIT_CONN_HEAD);
	if (c->fd < 0) {
		c->fd = kit_connect(c->port, c->rcvbuf);
		if (c->fd < 0) {
			conn_fail(c, "connect to 127.0.0.1:%d: %s", c->port, strerror(errno));
			return -1;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	}
	conn_write(c);
	return 0;
}

int kit_conn_finish(struct kit_conn *c)
{
	conn_run(c, -1, NULL);
	return c->state == KIT_CONN_DONE && c->r.complete ? 0 : -1;
}

int kit_conn_request(struct kit_conn *c, const struct kit_req *q)
{
	if (kit_conn_send(c, q) != 0)
		return -1;
	return kit_conn_finish(c);
}

int kit_conn_read_to_close(struct kit_conn *c, int ms, char **out, size_t *len)
{
	long long end = kit_now_ms() + ms;
	int rc = -1;

	*out = NULL;
	*len = 0;
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	while (c->fd >= 0) {
		struct pollfd pf = {.fd = c->fd,
		                    .events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0)};
		long long left = end - kit_now_ms();
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		if ((pf.revents & (POLLOUT | POLLERR | POLLHUP)) && c->out_off < c->out_len)
			conn_write(c);
		if (!(pf.revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		if (c->in_cap - c->in_len < 65537) {
			char *nb = realloc(c->in, c->in_len + 65537);
			if (nb == NULL)
				abort();
			c->in = nb;
			c->in_cap = c->in_len + 65537;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			rc = 0;
			break;
		}
		c->in_len += (size_t)n;
		c->recv_bytes += (uint64_t)n;
	}
	*out = malloc(c->in_len + 1);
	if (*out == NULL)
		abort();
	memcpy(*out, c->in, c->in_len);
	(*out)[c->in_len] = '\0';
	*len = c->in_len;
	c->in_len = 0;
	kit_conn_close(c);
	return rc;
}

void kit_conn_close(struct kit_conn *c)
{
	if (in_flight(c))
		conn_fail(c, "closed by the client after %llu body bytes",
		          (unsigned long long)c->body_seen);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

void kit_conn_free(struct kit_conn *c)
{
	kit_conn_close(c);
	free(c->out);
	free(c->in);
	kit_resp_free(&c->r);
	kit_conn_init(c, c->port);
}

int kit_stream_open(struct kit_conn *s, int port, const struct kit_req *q)
{
	struct kit_conn *one[1] = {s};

	kit_conn_init(s, port);
	if (kit_conn_send(s, q) != 0)
		return 0; /* no connection: a response with status 0, as curl reports it */
	/* All of the request before the test goes on: it may wait for something else (an
	 * audit row, a file) before it reads. */
	while (in_flight(s) && s->out_off < s->out_len)
		if (kit_conn_poll(one, 1, 1000) < 0)
			break;
	return 0;
}

static bool has_head(struct kit_conn *c)
{
	return c->r.head != NULL;
}

int kit_stream_head(struct kit_conn *s, int ms)
{
	conn_run(s, ms, has_head);
	return s->r.head != NULL ? 0 : -1;
}

/* A complete line not yet handed out, found by searching only what was not searched. */
static bool has_line(struct kit_conn *c)
{
	if (c->r.body == NULL || c->scanned >= c->r.body_len)
		return false;
	if (memchr(c->r.body + c->scanned, '\n', c->r.body_len - c->scanned) != NULL)
		return true;
	c->scanned = c->r.body_len;
	return false;
}

char *kit_stream_line(struct kit_conn *s, int ms)
{
	long long end = kit_now_ms() + ms;
	char *nl, *line;
	size_t start = s->consumed;

	if (kit_stream_head(s, ms) != 0)
		return NULL;
	s->scanned = s->consumed;
	if (!has_line(s)) {
		long long left = end - kit_now_ms();
		conn_run(s, left > 0 ? (int)left : 0, has_line);
	}
	nl = s->r.body != NULL && s->consumed < s->r.body_len
	         ? memchr(s->r.body + s->consumed, '\n', s->r.body_len - s->consumed)
	         : NULL;
	if (nl != NULL) {
		s->consumed = (size_t)(nl - s->r.body) + 1;
		line = strndup(s->r.body + start, (size_t)(nl - s->r.body) - start);
	} else if (!in_flight(s) && s->consumed < s->r.body_len) {
		s->consumed = s->r.body_len;
		line = strndup(s->r.body + start, s->r.body_len - start);
	} else {
		return NULL;
	}
	if (line == NULL)
		abort();
	return line;
}

bool kit_stream_over(const struct kit_conn *s)
{
	return !in_flight(s);
}

int kit_stream_finish(struct kit_conn *s, struct kit_resp *r)
{
	kit_conn_finish(s);
	kit_conn_close(s);
	*r = s->r; /* transferred */
	memset(&s->r, 0, sizeof(s->r));
	if (r->head == NULL)
		r->head = strdup("");
	if (r->body == NULL)
		r->body = calloc(1, 1);
	if (r->head == NULL || r->body == NULL)
		abort();
	kit_conn_free(s);
	return 0;
}

void kit_stream_abort(struct kit_conn *s)
{
	kit_conn_free(s);
}

int kit_http(int port, const struct kit_req *q, struct kit_resp *r)
{
	struct kit_conn s;

	memset(r, 0, sizeof(*r));
	kit_stream_open(&s, port, q);
	return kit_stream_finish(&s, r);
}

int kit_http_parallel(int port, const struct kit_req *q, size_t n, struct kit_resp *r)
{
	struct kit_conn *cs = calloc(n ? n : 1, sizeof(*cs));
	struct kit_conn **pp = calloc(n ? n : 1, sizeof(*pp));

	if (cs == NULL || pp == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct kit_req qi = q[i];
		if (qi.max_time_s == 0)
			qi.max_time_s = PARALLEL_MAX_S;
		kit_conn_init(&cs[i], port);
		kit_conn_send(&cs[i], &qi);
		pp[i] = &cs[i];
	}
	while (kit_conn_poll(pp, n, 1000) > 0)
		;
	for (size_t i = 0; i < n; i++)
		kit_stream_finish(&cs[i], &r[i]);
	free(pp);
	free(cs);
	return 0;
}

void kit_resp_free(struct kit_resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

const char *kit_header(const struct kit_resp *r, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);

	for (const char *p = r->head; p != NULL && *p != '\0';) {
		const char *eol = strstr(p, "\r\n");
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);

		if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			size_t vl = ll - nl - 1;
			while (vl > 0 && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
				vl--;
			snprintf(buf, len, "%.*s", (int)vl, v);
			return buf;
		}
		p = eol ? eol + 2 : NULL;
	}
	return NULL;
}
