/* bench/bench_exec.c: the end-to-end benchmark. It starts `exec-broker serve` on the
 * harness's PostgreSQL (a migrated database, a workspace and a token made by the CLI) and
 * sends it execs over HTTP from a small keep-alive client in this process, so that every
 * exec pays for the token lookup, the audit row and the NDJSON stream. Beside it, in the
 * same run and against the same sshd: the bare libssh2 floor, the pool in process, a fresh
 * ssh per exec and an OpenSSH ControlMaster. Figures: sequential latency, execs per second
 * at 32 in flight, 256 MiB of stdout (zeros, as the issue asks, and text) streamed, and the
 * broker's memory with 200 idle sessions and with 200 streaming execs. It prints figures
 * and ratios and never fails on timing: the exit status is 1 only when something did not
 * work. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <libssh2.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "common/err.h"
#include "common/fdio.h"
#include "pool/command.h"
#include "pool/pool.h"
#include "tests/kit/harness.h"

#define DEFAULT_N           300
#define DEFAULT_PAR_N       640
#define DEFAULT_STREAM_MIB  256
#define DEFAULT_STREAM_RUNS 2
#define DEFAULT_RSS_N       200
#define DEFAULT_RSS_LINES   300000
/* As in bench_pool: the ControlMaster carries 32 sessions on one connection. */
#define SSHD_MAX_SESSIONS 64
/* The memory phase spreads its sessions over this many sshds: the pool opens at most
 * pool_max_sessions_per_host (64 at most) sessions to one target. */
#define RSS_SSHDS     4
#define RSS_MAX_N     (RSS_SSHDS * 64)
#define RSS_SAMPLE_MS 20
/* The memory phase starts at most this many execs at a time (others join as these start):
 * the sshds share the machine, and 200 SSH logins at once on 2 cores starve PostgreSQL past
 * the broker's 5 s query deadline (503 audit_unavailable). */
#define RSS_RAMP 20
/* timeout_s of the streaming and memory execs: the broker's exec_timeout_max_s. */
#define LONG_TIMEOUT_S 120
#define READ_CHUNK     (256 * 1024)
#define MAX_HEAD       65536
#define MIB            (1024.0 * 1024.0)

/* ------------------------------------------------------------------ /proc */

/* A "Vm..." line of /proc/pid/status in KiB, or -1. */
static long proc_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Resets pid's VmHWM to its current RSS (clear_refs 5, Linux 4.0). */
static int proc_reset_hwm(pid_t pid)
{
	char path[64];
	int fd, rc = -1;

	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0 && write(fd, "5", 1) == 1)
		rc = 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ------------------------------------------------------------------ broker processes */

/* The value of metric line `name` (e.g. exec_broker_pool_sessions{state="idle"}) in the
 * broker's /metrics, or -1. A blocking request: nothing else runs meanwhile. */
static long broker_metric(const struct broker *b, const char *name)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)b->port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static const char req[] =
	    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	char *buf = NULL, *p;
	size_t len = 0, cap = 0;
	long v = -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1))
		goto out;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;
		if (len + 4096 + 1 > cap) {
			char *nb = realloc(buf, cap = (cap + 4096) * 2);
			if (nb == NULL)
				goto out;
			buf = nb;
		}
		if (poll(&pfd, 1, 5000) <= 0)
			goto out;
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (buf == NULL)
		goto out;
	buf[len] = '\0';
	for (p = buf; (p = strstr(p, name)) != NULL; p += strlen(name))
		if (p[-1] == '\n' && p[strlen(name)] == ' ') {
			v = strtol(p + strlen(name) + 1, NULL, 10);
			break;
		}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return v;
}

/* ------------------------------------------------------------------ the HTTP client */

/* What the execs of one run post, and what each must print. */
struct http_exec {
	const char *const *ws; /* workspace ids; connection i posts to ws[i % nws] */
	size_t nws;
	const char *token;
	const char *body;       /* the JSON request */
	uint64_t expect_stdout; /* bytes the command writes to stdout */
};

enum hc_state {
	HC_IDLE,       /* no request in flight (connected or not) */
	HC_HEAD,       /* waiting for the status line and headers */
	HC_CHUNK_SIZE, /* chunked body: the size line */
	HC_CHUNK_DATA, /* chunked body: left bytes of a chunk */
	HC_CHUNK_END,  /* the CRLF after a chunk's data */
	HC_TRAILER,    /* after the last chunk, up to the empty line */
	HC_BODY,       /* a Content-Length body: left bytes */
};

struct hrun;

/* One keep-alive HTTP/1.1 connection to the broker, one request at a time. */
struct hconn {
	struct hrun *run;
	size_t idx;
	int fd; /* -1 when not connected */
	struct event *ev;
	enum hc_state state;
	char *in; /* received bytes, parsed up to in_off */
	size_t in_len, in_off, in_cap;
	uint64_t t0, left;
	int status;
	bool chunked, closing;
	char *line; /* the NDJSON line being assembled, or an error body */
	size_t line_len, line_cap;
	size_t nlines;
	bool first_ok, exit0, ended;
	int terminals, truncs;
	uint64_t out_bytes;   /* stdout bytes the frames decode to */
	uint64_t out_claimed; /* stdout_bytes of the last frame */
	char failure[256];    /* the first problem with this response, "" if none */
};

/* Execs over HTTP, as pool_run is for the pool. */
struct hrun {
	struct event_base *base;
	struct broker *broker;
	const struct http_exec *x;
	struct series *out;
	size_t total, launched, finished, started;
	bool stop;
	struct hconn *c;
	size_t nconns;
	/* ramp > 0: at most ramp execs in flight whose first frame has not come yet; the
	 * call's other connections join as execs start. */
	size_t ramp, conc, opened, unstarted;
	uint64_t stdout_bytes, recv_bytes; /* decoded stdout and raw bytes received, in all */
	/* release(arg) runs once per call, when `barrier` execs have sent their first frame
	 * or as soon as one ends before that (so that a failure cannot leave the rest
	 * waiting). */
	size_t barrier;
	void (*release)(void *arg);
	void *release_arg;
	bool released;
};

static void hconn_launch(struct hconn *c);
static void hrun_widen(struct hrun *r);

static void hconn_close(struct hconn *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	c->ev = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_len = c->in_off = 0;
}

__attribute__((format(printf, 2, 3))) static int hconn_fail(struct hconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failure[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void hrun_release(struct hrun *r)
{
	if (r->release != NULL && !r->released) {
		r->released = true;
		r->release(r->release_arg);
	}
}

/* The response is over (or broken): count it, then send the next request on this
 * connection, or end the loop once every request sent has been answered. */
static void hconn_done(struct hconn *c)
{
	struct hrun *r = c->run;

	if (c->ev != NULL)
		event_del(c->ev);
	c->state = HC_IDLE;
	if (c->failure[0] != '\0') {
		series_fail(r->out, "%s", c->failure);
		hconn_close(c);
		r->stop = true;
	} else {
		series_add(r->out, bench_ms_since(c->t0));
		r->stdout_bytes += c->out_bytes;
		if (c->closing)
			hconn_close(c);
	}
	r->finished++;
	if (!c->first_ok)
		r->unstarted--;
	if (r->barrier > 0 && r->started < r->barrier)
		hrun_release(r);
	if (!r->stop && r->launched < r->total)
		hconn_launch(c);
	else if (r->finished == r->launched)
		event_base_loopbreak(r->base);
	hrun_widen(r);
}

static void line_append(struct hconn *c, const char *p, size_t n)
{
	if (c->line_len + n > c->line_cap) {
		size_t cap = c->line_cap ? c->line_cap : 4096;
		char *nl;
		while (cap < c->line_len + n)
			cap *= 2;
		nl = realloc(c->line, cap);
		if (nl == NULL) {
			hconn_fail(c, "out of memory");
			return;
		}
		c->line = nl;
		c->line_cap = cap;
	}
	memcpy(c->line + c->line_len, p, n);
	c->line_len += n;
}

static unsigned hex4(const char *p)
{
	char h[5] = {p[0], p[1], p[2], p[3], '\0'};

	return (unsigned)strtoul(h, NULL, 16);
}

/* Bytes the JSON string text at p decodes to (as UTF-8), up to its closing quote, which
 * *end is set to (lim if there is none). The text is as jansson writes it: escapes only
 * for '"', '\\' and control characters. */
static uint64_t json_text_bytes(const char *p, const char *lim, const char **end)
{
	uint64_t n = 0;

	while (p < lim && *p != '"') {
		if (*p != '\\') {
			p++;
			n++;
		} else if (p + 1 < lim && p[1] == 'u' && p + 6 <= lim) {
			unsigned cp = hex4(p + 2);
			p += 6;
			if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair: one 4-byte char */
				p += 6;
				n += 4;
			} else {
				n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
			}
		} else {
			p += 2;
			n++;
		}
	}
	*end = p < lim ? p : lim;
	return n;
}

static uint64_t b64_bytes(const char *p, size_t n)
{
	uint64_t k = n / 4 * 3;

	if (n >= 1 && p[n - 1] == '=')
		k--;
	if (n >= 2 && p[n - 2] == '=')
		k--;
	return k;
}

/* A frame other than an output frame of the usual shape: parsed in full. */
static void frame_parse(struct hconn *c, const char *s, size_t n)
{
	json_error_t jerr;
	json_t *o = json_loadb(s, n, 0, &jerr), *v;

	if (!json_is_object(o)) {
		hconn_fail(c, "frame %zu is not a JSON object: %.80s", c->nlines, s);
		goto out;
	}
	if (c->nlines == 1) {
		if (!json_is_string(json_object_get(o, "exec_id"))) {
			hconn_fail(c, "the first frame has no exec_id: %.80s", s);
			goto out;
		}
		c->first_ok = true;
		c->run->started++;
		c->run->unstarted--;
		if (c->run->barrier > 0 && c->run->started == c->run->barrier)
			hrun_release(c->run);
		hrun_widen(c->run);
	} else if ((v = json_object_get(o, "stream")) != NULL) {
		const char *data = json_string_value(json_object_get(o, "data"));
		bool b64 = json_object_get(o, "encoding") != NULL;
		if (json_is_true(json_object_get(o, "truncated")))
			c->truncs++;
		else if (data == NULL)
			hconn_fail(c, "an output frame without data: %.80s", s);
		else if (strcmp(json_string_value(v), "stdout") == 0)
			c->out_bytes += b64 ? b64_bytes(data, strlen(data))
			                    : json_string_length(json_object_get(o, "data"));
	} else if ((v = json_object_get(o, "exit_code")) != NULL ||
	           json_object_get(o, "error") != NULL) {
		c->terminals++;
		c->ended = true;
		c->out_claimed = (uint64_t)json_integer_value(json_object_get(o, "stdout_bytes"));
		if (json_is_integer(v) && json_integer_value(v) == 0)
			c->exit0 = true;
		else if (json_is_integer(v))
			hconn_fail(c, "exit code %lld", (long long)json_integer_value(v));
		else
			hconn_fail(c, "last frame: %.200s", s);
	} else {
		hconn_fail(c, "an unexpected frame: %.80s", s);
	}
out:
	json_decref(o);
}

/* One NDJSON line (without its '\n'). Output frames, nearly all of the bytes, are counted
 * without building JSON values. */
static void line_done(struct hconn *c, const char *s, size_t n)
{
	static const char out_pre[] = "{\"stream\":\"stdout\",\"data\":\"";
	static const char err_pre[] = "{\"stream\":\"stderr\",\"data\":\"";
	static const size_t pre = sizeof(out_pre) - 1;
	bool is_out;

	c->nlines++;
	if (c->ended) {
		hconn_fail(c, "a frame after the last frame: %.80s", s);
		return;
	}
	is_out = n > pre && memcmp(s, out_pre, pre) == 0;
	if (c->nlines > 1 && (is_out || (n > pre && memcmp(s, err_pre, pre) == 0))) {
		const char *q;
		uint64_t k = json_text_bytes(s + pre, s + n, &q);
		if (q == s + n) {
			hconn_fail(c, "an output frame without the end of its data");
			return;
		}
		if (memmem(q, (size_t)(s + n - q), "\"encoding\":\"base64\"", 19) != NULL)
			k = b64_bytes(s + pre, (size_t)(q - (s + pre)));
		if (is_out)
			c->out_bytes += k;
		return;
	}
	frame_parse(c, s, n);
}

/* Body bytes of the response: NDJSON lines of a 200, or an error body kept for the
 * message. */
static void body_feed(struct hconn *c, const char *p, size_t n)
{
	if (c->status != 200) {
		if (c->line_len < 400)
			line_append(c, p, n < 400 ? n : 400);
		return;
	}
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k;
		if (nl == NULL) {
			line_append(c, p, n);
			return;
		}
		k = (size_t)(nl - p);
		if (c->line_len == 0) {
			line_done(c, p, k);
		} else {
			line_append(c, p, k);
			line_done(c, c->line, c->line_len);
			c->line_len = 0;
		}
		p += k + 1;
		n -= k + 1;
	}
}

static int head_parse(struct hconn *c, const char *p, size_t n)
{
	const char *end = p + n, *l;

	if (sscanf(p, "HTTP/1.%*d %d", &c->status) != 1)
		return hconn_fail(c, "not an HTTP response: %.40s", p);
	c->chunked = c->closing = false;
	c->left = 0;
	for (l = memchr(p, '\n', n); l != NULL && l + 1 < end;
	     l = memchr(l + 1, '\n', end - l - 1)) {
		const char *h = l + 1;
		if (strncasecmp(h, "Transfer-Encoding:", 18) == 0)
			c->chunked = strncasecmp(h + 18 + strspn(h + 18, " "), "chunked", 7) == 0;
		else if (strncasecmp(h, "Content-Length:", 15) == 0)
			c->left = strtoull(h + 15, NULL, 10);
		else if (strncasecmp(h, "Connection:", 11) == 0)
			c->closing = strncasecmp(h + 11 + strspn(h + 11, " "), "close", 5) == 0;
	}
	return 0;
}

/* Parses what has arrived: 1 once the response is complete, 0 while more is needed, -1
 * if it is malformed. */
static int hconn_parse(struct hconn *c)
{
	for (;;) {
		char *p = c->in + c->in_off, *e;
		size_t avail = c->in_len - c->in_off, k;
		char *num_end;

		switch (c->state) {
		case HC_HEAD:
			e = memmem(p, avail, "\r\n\r\n", 4);
			if (e == NULL)
				return avail > MAX_HEAD
				           ? hconn_fail(c, "a response head over 64 KiB")
				           : 0;
			*e = '\0';
			if (head_parse(c, p, (size_t)(e - p)) != 0)
				return -1;
			c->in_off += (size_t)(e - p) + 4;
			c->state = c->chunked ? HC_CHUNK_SIZE : HC_BODY;
			if (!c->chunked && c->left == 0)
				return 1;
			break;
		case HC_CHUNK_SIZE:
			e = memmem(p, avail, "\r\n", 2);
			if (e == NULL)
				return avail > 64 ? hconn_fail(c, "a malformed chunk size line")
				                  : 0;
			c->left = strtoull(p, &num_end, 16);
			if (num_end == p)
				return hconn_fail(c, "a malformed chunk size line");
			c->in_off += (size_t)(e - p) + 2;
			c->state = c->left == 0 ? HC_TRAILER : HC_CHUNK_DATA;
			break;
		case HC_CHUNK_DATA:
		case HC_BODY:
			if (avail == 0)
				return 0;
			k = avail < c->left ? avail : (size_t)c->left;
			body_feed(c, p, k);
			c->in_off += k;
			c->left -= k;
			if (c->left > 0)
				return 0;
			if (c->state == HC_BODY)
				return 1;
			c->state = HC_CHUNK_END;
			break;
		case HC_CHUNK_END:
			if (avail < 2)
				return 0;
			if (p[0] != '\r' || p[1] != '\n')
				return hconn_fail(c, "a chunk not followed by CRLF");
			c->in_off += 2;
			c->state = HC_CHUNK_SIZE;
			break;
		case HC_TRAILER:
			e = memmem(p, avail, "\r\n", 2);
			if (e == NULL)
				return 0;
			c->in_off += (size_t)(e - p) + 2;
			if (e == p)
				return 1;
			break;
		case HC_IDLE:
		default:
			abort();
		}
	}
}

/* The response is complete: was it a whole, successful exec? */
static void hconn_check(struct hconn *c)
{
	const struct http_exec *x = c->run->x;

	if (c->failure[0] != '\0')
		return;
	if (c->status != 200)
		hconn_fail(c, "HTTP %d: %.*s", c->status, (int)c->line_len, c->line);
	else if (c->line_len != 0)
		hconn_fail(c, "the body ends inside a line");
	else if (!c->first_ok)
		hconn_fail(c, "no first frame");
	else if (c->terminals != 1 || !c->exit0)
		hconn_fail(c, "%d last frames", c->terminals);
	else if (c->truncs > 0)
		hconn_fail(c, "the output was truncated");
	else if (c->out_bytes != c->out_claimed || c->out_bytes != x->expect_stdout)
		hconn_fail(c,
		           "stdout: %llu bytes in the frames, %llu in the last frame, the command "
		           "writes %llu",
		           (unsigned long long)c->out_bytes, (unsigned long long)c->out_claimed,
		           (unsigned long long)x->expect_stdout);
}

static void hconn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;
	ssize_t n;
	int rc;

	(void)what;
	if (c->in_cap - c->in_len < READ_CHUNK) {
		char *nb = realloc(c->in, c->in_len + READ_CHUNK);
		if (nb == NULL) {
			hconn_fail(c, "out of memory");
			hconn_done(c);
			return;
		}
		c->in = nb;
		c->in_cap = c->in_len + READ_CHUNK;
	}
	n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		hconn_fail(c,
		           "the connection ended in the middle of the response (%s after %zu "
		           "frames and %llu stdout bytes)",
		           n == 0 ? "EOF" : strerror(errno), c->nlines,
		           (unsigned long long)c->out_bytes);
		hconn_done(c);
		return;
	}
	c->in_len += (size_t)n;
	c->run->recv_bytes += (uint64_t)n;
	rc = hconn_parse(c);
	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (rc == 1 && c->in_len != 0)
		hconn_fail(c, "%zu bytes after the response", c->in_len);
	if (rc == 1)
		hconn_check(c);
	if (rc != 0)
		hconn_done(c);
}

/* Whether the idle connection is still open: the broker closes idle ones after
 * http_idle_timeout_s. */
static bool hconn_alive(struct hconn *c)
{
	char ch;

	return recv(c->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
	       (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int hconn_connect(struct hconn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)c->run->broker->port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		hconn_fail(c, "cannot connect to the broker on port %d: %s", c->run->broker->port,
		           strerror(errno));
		hconn_close(c);
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	c->ev = event_new(c->run->base, c->fd, EV_READ | EV_PERSIST, hconn_on_read, c);
	if (c->ev == NULL) {
		hconn_fail(c, "out of memory");
		hconn_close(c);
		return -1;
	}
	return 0;
}

static void hconn_launch(struct hconn *c)
{
	struct hrun *r = c->run;
	const struct http_exec *x = r->x;
	char req[2048];
	int len;

	r->launched++;
	r->unstarted++;
	c->t0 = bench_now_ns();
	c->failure[0] = '\0';
	c->status = 0;
	c->line_len = c->nlines = 0;
	c->first_ok = c->exit0 = c->ended = false;
	c->terminals = c->truncs = 0;
	c->out_bytes = c->out_claimed = 0;
	if (c->fd >= 0 && !hconn_alive(c))
		hconn_close(c);
	if (c->fd < 0 && hconn_connect(c) != 0) {
		hconn_done(c);
		return;
	}
	len = snprintf(req, sizeof(req),
	               "POST /v1/workspaces/%s/exec HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	               "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
	               "Accept: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n%s",
	               x->ws[c->idx % x->nws], r->broker->port, x->token, strlen(x->body), x->body);
	if (len < 0 || (size_t)len >= sizeof(req)) {
		hconn_fail(c, "the request does not fit in %zu bytes", sizeof(req));
		hconn_done(c);
		return;
	}
	if (fdio_write_all(c->fd, req, (size_t)len, 5000) != 0) {
		hconn_fail(c, "sending the request: %s", strerror(errno));
		hconn_done(c);
		return;
	}
	r->broker->sent++;
	c->state = HC_HEAD;
	event_add(c->ev, NULL);
}

/* A ramped run: more connections join while few execs are starting. */
static void hrun_widen(struct hrun *r)
{
	while (r->ramp > 0 && !r->stop && r->opened < r->conc && r->launched < r->total &&
	       r->unstarted < r->ramp)
		hconn_launch(&r->c[r->opened++]);
}

static int hrun_init(struct hrun *r, struct event_base *base, struct broker *b, size_t nconns)
{
	memset(r, 0, sizeof(*r));
	r->base = base;
	r->broker = b;
	r->c = calloc(nconns, sizeof(*r->c));
	if (r->c == NULL)
		return EB_ERR_NOMEM;
	r->nconns = nconns;
	for (size_t i = 0; i < nconns; i++) {
		r->c[i].run = r;
		r->c[i].idx = i;
		r->c[i].fd = -1;
	}
	return 0;
}

static void hrun_free(struct hrun *r)
{
	for (size_t i = 0; i < r->nconns; i++) {
		hconn_close(&r->c[i]);
		free(r->c[i].in);
		free(r->c[i].line);
	}
	free(r->c);
	r->c = NULL;
	r->nconns = 0;
}

static void hrun_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hrun *r = arg;

	(void)fd;
	(void)what;
	r->stop = true;
	series_fail(r->out, "the execs did not end within %d s", BENCH_PHASE_TIMEOUT_S);
	for (size_t i = 0; i < r->nconns; i++)
		if (r->c[i].state != HC_IDLE) {
			r->c[i].state = HC_IDLE;
			hconn_close(&r->c[i]);
		}
	hrun_release(r);
	event_base_loopbreak(r->base);
}

/* Runs total execs of x over HTTP, concurrency of them in flight at all times (at most
 * the run's connections), timing each from sending the request to the end of the
 * response; an exec counts only if its stream is whole and its last frame says exit code
 * 0. */
static void hrun_execs(struct hrun *r, const struct http_exec *x, struct series *out, size_t total,
                       size_t concurrency)
{
	struct timeval limit = {BENCH_PHASE_TIMEOUT_S, 0};
	struct event *timer;
	uint64_t t0;

	if (out->failures > 0)
		return;
	timer = evtimer_new(r->base, hrun_timeout_cb, r);
	if (timer == NULL) {
		series_fail(out, "out of memory");
		return;
	}
	if (concurrency > r->nconns)
		concurrency = r->nconns;
	r->x = x;
	r->out = out;
	r->total = total;
	r->launched = r->finished = r->started = r->opened = r->unstarted = 0;
	r->conc = concurrency;
	r->stop = r->released = false;
	evtimer_add(timer, &limit);
	t0 = bench_now_ns();
	while (r->opened < concurrency && r->opened < total &&
	       (r->ramp == 0 || r->opened < r->ramp))
		hconn_launch(&r->c[r->opened++]);
	if (r->finished < r->launched)
		event_base_dispatch(r->base);
	out->wall_s += bench_ms_since(t0) / 1000;
	event_free(timer);
}

/* {"argv":[...],"timeout_s":N}, malloc'd. */
static char *exec_body(const char *const argv[], int timeout_s)
{
	json_t *a = json_array(), *o;
	char *s;

	for (size_t i = 0; argv[i] != NULL; i++)
		json_array_append_new(a, json_string(argv[i]));
	o = json_pack("{s:o}", "argv", a);
	if (timeout_s > 0)
		json_object_set_new(o, "timeout_s", json_integer(timeout_s));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* ------------------------------------------------------------------ the gate */

/* A FIFO on the host (which is this machine) that commands wait on with `read -r x <
 * gate`: opening the gate writes one line per waiting command, so that every one of them
 * proceeds, also those that open the FIFO late. */
struct gate {
	char path[96];
	int fd;
	size_t n;
	pid_t broker; /* sampled when the gate opens */
	long rss_at_open;
	uint64_t opened_ns;
};

static int gate_init(struct gate *g, const char *name)
{
	snprintf(g->path, sizeof(g->path), "/tmp/eb-bench-%d-%s", (int)getpid(), name);
	unlink(g->path);
	g->fd = -1;
	if (mkfifo(g->path, 0600) != 0 || chmod(g->path, 0644) != 0)
		return -1;
	/* O_RDWR: never blocks, and the writer side stays open for late readers. */
	g->fd = open(g->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	return g->fd >= 0 ? 0 : -1;
}

static void gate_open(void *arg)
{
	struct gate *g = arg;
	char nl[256];
	size_t left = g->n;

	g->opened_ns = bench_now_ns();
	if (g->broker > 0)
		g->rss_at_open = proc_status_kib(g->broker, "VmRSS");
	memset(nl, '\n', sizeof(nl));
	while (left > 0) {
		ssize_t k = write(g->fd, nl, left < sizeof(nl) ? left : sizeof(nl));
		if (k <= 0)
			break; /* the pipe is full: far more waiters than this benchmark starts */
		left -= (size_t)k;
	}
}

static void gate_free(struct gate *g)
{
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	if (g->path[0] != '\0')
		unlink(g->path);
}

/* Bytes `seq 1 n` prints. */
static uint64_t seq_bytes(uint64_t n)
{
	uint64_t total = 0, lo = 1, digits = 1;

	while (lo <= n) {
		uint64_t hi = lo * 10 - 1 < n ? lo * 10 - 1 : n;
		total += (hi - lo + 1) * (digits + 1);
		lo *= 10;
		digits++;
	}
	return total;
}

/* ------------------------------------------------------------------ the run */

enum way { WAY_FLOOR, WAY_POOL, WAY_FLOOR_WRAPPED, WAY_HTTP, WAY_MASTER, WAY_FRESH, WAY_COUNT };
enum pway { PAR_POOL, PAR_HTTP, PAR_MASTER, PAR_COUNT };
enum sway { STREAM_FLOOR, STREAM_POOL, STREAM_HTTP, STREAM_COUNT };
enum skind { KIND_ZEROS, KIND_TEXT, KIND_COUNT };

/* One command whose output the three ways stream. */
struct stream_case {
	const char *label;
	char cmd[200];           /* as the floor sends it, and as the report shows it */
	struct eb_bytes argv[4]; /* what the pool and the broker run */
	struct command_spec spec;
	char *body;
	struct http_exec x;
	struct series s[STREAM_COUNT];
	uint64_t bytes[STREAM_COUNT];
	double cpu_broker, cpu_client; /* over the HTTP runs */
	uint64_t recv;                 /* bytes the HTTP client received */
};

struct bench {
	size_t n, par_n, stream_runs, rss_n, rss_lines;
	uint64_t stream_bytes;
	struct event_base *base;
	struct pool_config pcfg;
	struct command_spec spec_true;
	char *wrapped; /* the command string the pool sends for `true` */
	char stream_count[24], text_pipeline[160];
	struct floor fl;
	struct pool_run run;
	char sock[160];
	bool master;
	struct ssh_argv fresh, mux;

	char db[512];
	char tok_ws[64], tok_rss[64];
	struct th_sshd rss_sshd[RSS_SSHDS - 1];
	const char *rss_ws[RSS_SSHDS];
	struct broker main_b, stream_b, rss_b;
	struct hrun main_h;
	char *body_true, *body_idle, *body_seq;
	struct http_exec x_true, x_idle, x_seq;

	struct series seq[WAY_COUNT];
	struct series http_first, pool_first, http_par_warm, pool_par_warm;
	struct series par[PAR_COUNT];
	struct stream_case sc[KIND_COUNT];
	struct series rss_open, rss_stream;
	long rss_start, rss_idle, rss_idle_hwm, rss_idle_sessions, rss_waiting, rss_stream_hwm,
	    rss_stream_max;
	bool rss_hwm_reset;
	uint64_t rss_stream_recv;
	double rss_stream_s; /* from the gate opening to the last response's end */
	bool audit_checked;
	long audit_rows[3], audit_exited[3];
};

static const char *const ws_main[] = {"ws-bench"};

static void way_run(struct bench *b, enum way w, size_t n)
{
	struct series *s = &b->seq[w];
	long before = bench_sshd_logins();

	if (s->failures > 0)
		return;
	switch (w) {
	case WAY_FLOOR:
		floor_run(&b->fl, s, "true", n);
		break;
	case WAY_POOL:
		b->run.spec = &b->spec_true;
		pool_run_execs(&b->run, s, n, 1);
		break;
	case WAY_FLOOR_WRAPPED:
		floor_run(&b->fl, s, b->wrapped, n);
		break;
	case WAY_HTTP:
		hrun_execs(&b->main_h, &b->x_true, s, n, 1);
		break;
	case WAY_MASTER:
		ssh_run_sequential(b->mux.v, s, n);
		break;
	case WAY_FRESH:
		ssh_run_sequential(b->fresh.v, s, n);
		break;
	default:
		abort();
	}
	s->logins += bench_sshd_logins() - before;
}

static int add_ws(const char *db, const char *id, const char *org, const struct th_sshd *s)
{
	char port[16];
	const char *args[] = {
	    "workspace", "add",    id,      "--org",  org, "--host",     "127.0.0.1",    "--port",
	    port,        "--user", th.user, "--tier", "3", "--host-key", s->host_key_fp, NULL};

	snprintf(port, sizeof(port), "%d", s->port);
	return bench_cli(db, args, NULL, NULL);
}

/* The database (migrated by the CLI), ws-bench on th.sshd with a workspace token, and for
 * the memory phase RSS_SSHDS workspaces on as many sshds with an org token. */
static int bench_world(struct bench *b)
{
	static const char *const migrate[] = {"migrate", NULL};
	static const char *const t_ws[] = {"token", "create", "--workspace", "ws-bench", NULL};
	static const char *const t_rss[] = {"token", "create", "--org", "rss", NULL};
	static const char *const names[RSS_SSHDS] = {"ws-rss0", "ws-rss1", "ws-rss2", "ws-rss3"};

	if (th_db_create(b->db, sizeof(b->db)) != 0 || bench_cli(b->db, migrate, NULL, NULL) != 0 ||
	    add_ws(b->db, "ws-bench", "bench", &th.sshd) != 0 ||
	    bench_make_token(b->db, t_ws, b->tok_ws, sizeof(b->tok_ws)) != 0)
		return -1;
	for (int i = 0; i < RSS_SSHDS; i++) {
		const struct th_sshd *s = i == 0 ? &th.sshd : &b->rss_sshd[i - 1];
		if (i > 0 && th_sshd_start(&b->rss_sshd[i - 1], NULL) != 0)
			return -1;
		b->rss_ws[i] = names[i];
		if (add_ws(b->db, names[i], "rss", s) != 0)
			return -1;
	}
	return bench_make_token(b->db, t_rss, b->tok_rss, sizeof(b->tok_rss));
}

/* Opens the floor session, warms the pool, starts the master and the main broker, and
 * sends the broker its first exec (which pays the SSH handshake). */
static int bench_connect(struct bench *b)
{
	char err[256];

	if (floor_open(&b->fl, err, sizeof(err)) != 0) {
		series_fail(&b->seq[WAY_FLOOR], "floor session: %s", err);
		series_fail(&b->seq[WAY_FLOOR_WRAPPED], "floor session: %s", err);
		for (enum skind k = 0; k < KIND_COUNT; k++)
			series_fail(&b->sc[k].s[STREAM_FLOOR], "floor session: %s", err);
	}
	b->run.base = b->base;
	if (pool_new(b->base, &b->pcfg, &b->run.p, err, sizeof(err)) != 0) {
		series_fail(&b->seq[WAY_POOL], "pool_new: %s", err);
	} else {
		b->run.spec = &b->spec_true;
		pool_run_execs(&b->run, &b->pool_first, 1, 1);
		if (!series_ok(&b->pool_first))
			series_fail(&b->seq[WAY_POOL], "first exec: %s",
			            b->pool_first.first_failure);
	}
	snprintf(b->sock, sizeof(b->sock), "%s/cm.sock", th.basedir);
	if (master_start(b->sock, err, sizeof(err)) != 0)
		series_fail(&b->seq[WAY_MASTER], "ControlMaster: %s", err);
	else
		b->master = true;
	ssh_argv_mux(&b->mux, b->sock, NULL);
	ssh_argv_direct(&b->fresh, (const char *const[]){NULL}, "true");

	if (broker_start(&b->main_b, b->db, "main", NULL) != 0 ||
	    hrun_init(&b->main_h, b->base, &b->main_b, BENCH_CONCURRENCY) != 0)
		return -1;
	hrun_execs(&b->main_h, &b->x_true, &b->http_first, 1, 1);
	if (!series_ok(&b->http_first))
		series_fail(&b->seq[WAY_HTTP], "first exec: %s", b->http_first.first_failure);
	return 0;
}

static void bench_sequential(struct bench *b)
{
	for (size_t done = 0; done < b->n; done += BENCH_BLOCK) {
		size_t k = b->n - done < BENCH_BLOCK ? b->n - done : BENCH_BLOCK;
		for (enum way w = 0; w < WAY_COUNT; w++)
			way_run(b, w, k);
	}
}

/* 32 in flight: the pool and the broker open their other sessions first, then the three
 * ways take two turns each. */
static void bench_parallel(struct bench *b)
{
	size_t half = b->par_n / 2;

	b->run.spec = &b->spec_true;
	if (b->run.p != NULL && series_ok(&b->seq[WAY_POOL]))
		pool_run_execs(&b->run, &b->pool_par_warm, BENCH_CONCURRENCY, BENCH_CONCURRENCY);
	else
		series_fail(&b->par[PAR_POOL], "the sequential pool phase broke");
	if (b->pool_par_warm.failures > 0)
		series_fail(&b->par[PAR_POOL], "warm-up: %s", b->pool_par_warm.first_failure);
	if (series_ok(&b->seq[WAY_HTTP]))
		hrun_execs(&b->main_h, &b->x_true, &b->http_par_warm, BENCH_CONCURRENCY,
		           BENCH_CONCURRENCY);
	else
		series_fail(&b->par[PAR_HTTP], "the sequential HTTP phase broke");
	if (b->http_par_warm.failures > 0)
		series_fail(&b->par[PAR_HTTP], "warm-up: %s", b->http_par_warm.first_failure);
	if (!b->master)
		series_fail(&b->par[PAR_MASTER], "no ControlMaster");
	for (int turn = 0; turn < 2; turn++) {
		size_t k = turn == 0 ? half : b->par_n - half;
		pool_run_execs(&b->run, &b->par[PAR_POOL], k, BENCH_CONCURRENCY);
		hrun_execs(&b->main_h, &b->x_true, &b->par[PAR_HTTP], k, BENCH_CONCURRENCY);
		if (b->par[PAR_MASTER].failures == 0)
			ssh_run_parallel(b->mux.v, &b->par[PAR_MASTER], k, BENCH_CONCURRENCY);
	}
}

/* One run of c by each way, in turn. */
static void stream_turn(struct bench *b, struct stream_case *c, struct hrun *h)
{
	struct series *s = &c->s[STREAM_FLOOR];
	uint64_t t0, got, before;
	double cpu_b, cpu_c;
	char err[256];

	if (s->failures == 0) {
		t0 = bench_now_ns();
		if (floor_exec(&b->fl, c->cmd, &got, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else if (got != b->stream_bytes)
			series_fail(s, "read %llu bytes, not %llu", (unsigned long long)got,
			            (unsigned long long)b->stream_bytes);
		else
			series_add(s, bench_ms_since(t0));
		c->bytes[STREAM_FLOOR] += got;
	}

	s = &c->s[STREAM_POOL];
	if (b->run.p == NULL)
		series_fail(s, "no pool");
	before = b->run.stdout_bytes;
	b->run.spec = &c->spec;
	pool_run_execs(&b->run, s, 1, 1);
	got = b->run.stdout_bytes - before;
	c->bytes[STREAM_POOL] += got;
	if (s->failures == 0 && got != b->stream_bytes)
		series_fail(s, "the data callback got %llu bytes, not %llu",
		            (unsigned long long)got, (unsigned long long)b->stream_bytes);

	if (h->c == NULL)
		return;
	before = h->stdout_bytes;
	cpu_b = bench_proc_cpu_s(b->stream_b.pid);
	cpu_c = self_cpu_s();
	t0 = h->recv_bytes;
	hrun_execs(h, &c->x, &c->s[STREAM_HTTP], 1, 1);
	c->cpu_broker += bench_proc_cpu_s(b->stream_b.pid) - cpu_b;
	c->cpu_client += self_cpu_s() - cpu_c;
	c->recv += h->recv_bytes - t0;
	c->bytes[STREAM_HTTP] += h->stdout_bytes - before;
}

/* 256 MiB of stdout, zeros and text, read by the floor, the pool and a client of a broker
 * whose output_cap_bytes lets it all through, in turns. */
static void bench_streaming(struct bench *b)
{
	char extra[128];
	struct hrun h = {0};

	snprintf(extra, sizeof(extra), "output_cap_bytes = %llu\n",
	         (unsigned long long)(b->stream_bytes + (1u << 20) > INT_MAX
	                                  ? INT_MAX
	                                  : b->stream_bytes + (1u << 20)));
	if (broker_start(&b->stream_b, b->db, "stream", extra) != 0 ||
	    hrun_init(&h, b->base, &b->stream_b, 1) != 0) {
		for (enum skind k = 0; k < KIND_COUNT; k++)
			series_fail(&b->sc[k].s[STREAM_HTTP], "no broker");
		h.c = NULL;
	}
	for (size_t i = 0; i < b->stream_runs; i++)
		for (enum skind k = 0; k < KIND_COUNT; k++)
			stream_turn(b, &b->sc[k], &h);
	if (h.c != NULL)
		hrun_free(&h);
	broker_stop(&b->stream_b);
}

static void rss_sample_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	long v = proc_status_kib(b->rss_b.pid, "VmRSS");

	(void)fd;
	(void)what;
	if (v > b->rss_stream_max)
		b->rss_stream_max = v;
}

/* Another broker, whose pool keeps one exec per session and up to rss_n / RSS_SSHDS
 * sessions per host: rss_n execs waiting at a gate open rss_n sessions, which then sit
 * idle; then rss_n execs stream `seq` output at once to clients that read it all. */
static void bench_memory(struct bench *b)
{
	struct timeval every = {0, RSS_SAMPLE_MS * 1000};
	struct event *sampler = NULL;
	struct gate g = {.fd = -1};
	char extra[256];
	struct hrun h = {0};
	uint64_t recv;

	snprintf(extra, sizeof(extra),
	         "pool_max_channels_per_session = 1\npool_max_sessions_per_host = %zu\n"
	         "pool_connect_timeout_s = 60\norg_max_concurrent_execs = %zu\n"
	         "output_cap_bytes = %d\n",
	         (b->rss_n + RSS_SSHDS - 1) / RSS_SSHDS, b->rss_n, INT_MAX);
	if (broker_start(&b->rss_b, b->db, "rss", extra) != 0 ||
	    hrun_init(&h, b->base, &b->rss_b, b->rss_n) != 0) {
		series_fail(&b->rss_open, "no broker");
		series_fail(&b->rss_stream, "no broker");
		goto out;
	}
	b->rss_start = proc_status_kib(b->rss_b.pid, "VmRSS");
	if (gate_init(&g, "gate") != 0) {
		series_fail(&b->rss_open, "cannot make the FIFO %s: %s", g.path, strerror(errno));
		series_fail(&b->rss_stream, "no FIFO");
		goto out;
	}
	g.n = b->rss_n;
	g.broker = b->rss_b.pid;
	h.barrier = b->rss_n;
	h.ramp = RSS_RAMP;
	h.release = gate_open;
	h.release_arg = &g;
	hrun_execs(&h, &b->x_idle, &b->rss_open, b->rss_n, b->rss_n);
	b->rss_waiting = g.rss_at_open;
	/* Let the broker reclaim the finished jobs before looking. */
	bench_sleep_ms(500);
	b->rss_idle = proc_status_kib(b->rss_b.pid, "VmRSS");
	b->rss_idle_hwm = proc_status_kib(b->rss_b.pid, "VmHWM");
	b->rss_idle_sessions =
	    broker_metric(&b->rss_b, "exec_broker_pool_sessions{state=\"idle\"}");
	if (series_ok(&b->rss_open) && b->rss_idle_sessions != (long)b->rss_n)
		series_fail(&b->rss_open, "the broker has %ld idle sessions, not %zu",
		            b->rss_idle_sessions, b->rss_n);
	if (!series_ok(&b->rss_open)) {
		series_fail(&b->rss_stream, "the sessions were not opened");
		goto out;
	}

	b->rss_hwm_reset = proc_reset_hwm(b->rss_b.pid) == 0;
	b->rss_stream_max = proc_status_kib(b->rss_b.pid, "VmRSS");
	sampler = event_new(b->base, -1, EV_PERSIST, rss_sample_cb, b);
	if (sampler != NULL)
		evtimer_add(sampler, &every);
	recv = h.recv_bytes;
	hrun_execs(&h, &b->x_seq, &b->rss_stream, b->rss_n, b->rss_n);
	b->rss_stream_s = (double)(bench_now_ns() - g.opened_ns) / 1e9;
	if (sampler != NULL)
		event_free(sampler);
	b->rss_stream_hwm = proc_status_kib(b->rss_b.pid, "VmHWM");
	b->rss_stream_recv = h.recv_bytes - recv;
out:
	hrun_free(&h);
	gate_free(&g);
	broker_stop(&b->rss_b);
}

/* Every exec sent leaves one row, final and 'exited' (each exec was checked to exit 0). */
static void bench_audit(struct bench *b)
{
	static const char sql[] =
	    "SELECT broker_instance, count(*), count(*) FILTER (WHERE status = 'exited') "
	    "FROM exec_audit GROUP BY broker_instance";
	struct broker *brokers[3] = {&b->main_b, &b->stream_b, &b->rss_b};
	PGconn *c = PQconnectdb(b->db);
	PGresult *res = NULL;

	if (PQstatus(c) != CONNECTION_OK) {
		bench_problem("audit check: %s", PQerrorMessage(c));
		goto out;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		bench_problem("audit check: %s", PQresultErrorMessage(res));
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++)
		for (int k = 0; k < 3; k++)
			if (strcmp(PQgetvalue(res, i, 0), brokers[k]->instance) == 0) {
				b->audit_rows[k] = atol(PQgetvalue(res, i, 1));
				b->audit_exited[k] = atol(PQgetvalue(res, i, 2));
			}
	b->audit_checked = true;
	for (int k = 0; k < 3; k++)
		if (b->audit_rows[k] != (long)brokers[k]->sent ||
		    b->audit_exited[k] != (long)brokers[k]->sent)
			bench_problem("audit rows of %s: %ld, %ld of them exited, for %lu requests",
			              brokers[k]->instance, b->audit_rows[k], b->audit_exited[k],
			              brokers[k]->sent);
out:
	PQclear(res);
	PQfinish(c);
}

/* ------------------------------------------------------------------ report */

#define SERIES_MAX (WAY_COUNT + PAR_COUNT + KIND_COUNT * STREAM_COUNT + 6)

/* Every series of the run, in the order of the report. */
static size_t bench_series(struct bench *b, struct series **all)
{
	size_t n = 0;

	for (enum way w = 0; w < WAY_COUNT; w++)
		all[n++] = &b->seq[w];
	all[n++] = &b->pool_first;
	all[n++] = &b->http_first;
	all[n++] = &b->pool_par_warm;
	all[n++] = &b->http_par_warm;
	for (enum pway w = 0; w < PAR_COUNT; w++)
		all[n++] = &b->par[w];
	for (enum skind k = 0; k < KIND_COUNT; k++)
		for (enum sway w = 0; w < STREAM_COUNT; w++)
			all[n++] = &b->sc[k].s[w];
	all[n++] = &b->rss_open;
	all[n++] = &b->rss_stream;
	return n;
}

static void print_p50_ratio(const char *label, struct series *num, struct series *den,
                            const char *target, bool at_most, double bound)
{
	bool ok = series_ok(num) && series_ok(den);
	double r = ok ? series_pct(num, 0.50) / series_pct(den, 0.50) : 0;

	bench_print_target(label, ok, r, target, at_most ? r <= bound : r >= bound);
}

static void print_throughput(struct series *s)
{
	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	printf("  %-42s %8.0f %8.2f %8.2f %7.2fs\n", s->name, series_per_s(s), series_pct(s, 0.50),
	       series_pct(s, 0.99), s->wall_s);
}

/* MB/s (10^6 bytes) of a streaming way over all its runs. */
/* MB/s (10^6 bytes) of a streaming way over all its runs. */
static double stream_mbs(const struct stream_case *c, enum sway w)
{
	const struct series *s = &c->s[w];
	double ms = 0;

	for (size_t i = 0; i < s->n; i++)
		ms += s->ms[i];
	return ms > 0 ? (double)c->bytes[w] / 1e6 / (ms / 1000) : 0;
}

static void print_stream(const struct stream_case *c, enum sway w)
{
	const struct series *s = &c->s[w];
	double ms = 0;

	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	for (size_t i = 0; i < s->n; i++)
		ms += s->ms[i];
	if (series_ok(&c->s[STREAM_FLOOR]))
		printf("  %-42s %8.0f %8.2f %8.2fx\n", s->name, stream_mbs(c, w),
		       ms / 1000 / (double)s->n, stream_mbs(c, w) / stream_mbs(c, STREAM_FLOOR));
	else
		printf("  %-42s %8.0f %8.2f %9s\n", s->name, stream_mbs(c, w),
		       ms / 1000 / (double)s->n, "-");
}

static double stream_ratio(const struct stream_case *c, bool *ok)
{
	*ok = series_ok(&c->s[STREAM_HTTP]) && series_ok(&c->s[STREAM_FLOOR]);
	return *ok ? stream_mbs(c, STREAM_HTTP) / stream_mbs(c, STREAM_FLOOR) : 0;
}

static void print_mib(const char *what, long kib)
{
	if (kib < 0)
		printf("  %-50s %8s\n", what, "n/a");
	else
		printf("  %-50s %8.1f\n", what, (double)kib / 1024);
}

static void bench_report(struct bench *b)
{
	struct series *all[SERIES_MAX];
	size_t nall = bench_series(b, all);
	bool ok;
	char title[128];
	double r;

	printf("\nexec-broker end-to-end benchmark: sshd (OpenSSH, MaxSessions %d) on "
	       "127.0.0.1:%d, login %s, %ld CPUs\n",
	       SSHD_MAX_SESSIONS, th.sshd.port, th.user, sysconf(_SC_NPROCESSORS_ONLN));
	printf("broker: `exec-broker serve` with the default settings on 127.0.0.1:%d, the "
	       "harness's PostgreSQL\n  (Unix socket, fsync off); each exec: POST with a "
	       "workspace token, NDJSON response,\n  one audit row; client: HTTP/1.1 keep-alive "
	       "in this process, each stream checked\n",
	       b->main_b.port);

	snprintf(title, sizeof(title), "sequential execs of `true`, N=%zu each", b->n);
	printf("\n%-44s %8s %8s %9s %9s\n", title, "p50 ms", "p99 ms", "p50/floor", "p99/floor");
	for (enum way w = 0; w < WAY_COUNT; w++)
		bench_print_row(&b->seq[w], &b->seq[WAY_FLOOR]);
	printf("(the ways took turns, %d execs each, so that outside load fell on all alike; the "
	       "pool and\n  HTTP rows run the pool's wrapper on the host: %s)\n",
	       BENCH_BLOCK, b->wrapped);
	if (series_ok(&b->http_first))
		printf("HTTP: the first exec (not in the table) took %.2f ms with the broker's SSH "
		       "handshake;\n  sshd logins during the sequential HTTP execs: %ld (fresh "
		       "ssh: %ld)\n",
		       b->http_first.ms[0], b->seq[WAY_HTTP].logins, b->seq[WAY_FRESH].logins);
	printf("\n");
	print_p50_ratio("end-to-end p50 / floor p50", &b->seq[WAY_HTTP], &b->seq[WAY_FLOOR],
	                "<= 1.5", true, 1.5);
	print_p50_ratio("ControlMaster p50 / end-to-end p50", &b->seq[WAY_MASTER],
	                &b->seq[WAY_HTTP], ">= 2", false, 2);
	if (series_ok(&b->seq[WAY_HTTP]) && series_ok(&b->seq[WAY_POOL]) &&
	    series_ok(&b->seq[WAY_FLOOR_WRAPPED]))
		printf("(end-to-end p50 / p50 of the floor running the wrapper = %.2f; end-to-end "
		       "p50 - pool p50\n  = %.2f ms: HTTP, the token lookup and the two audit "
		       "statements)\n",
		       series_pct(&b->seq[WAY_HTTP], 0.50) /
		           series_pct(&b->seq[WAY_FLOOR_WRAPPED], 0.50),
		       series_pct(&b->seq[WAY_HTTP], 0.50) - series_pct(&b->seq[WAY_POOL], 0.50));

	snprintf(title, sizeof(title), "%zu execs of `true`, %d in flight", b->par_n,
	         BENCH_CONCURRENCY);
	printf("\n%-44s %8s %8s %8s %8s\n", title, "execs/s", "p50 ms", "p99 ms", "wall");
	for (enum pway w = 0; w < PAR_COUNT; w++)
		print_throughput(&b->par[w]);
	ok = series_ok(&b->par[PAR_HTTP]) && series_ok(&b->par[PAR_MASTER]);
	r = ok ? series_per_s(&b->par[PAR_HTTP]) / series_per_s(&b->par[PAR_MASTER]) : 0;
	bench_print_target("end-to-end execs/s / ControlMaster execs/s", ok, r, ">= 3", r >= 3);
	printf("(each took two turns of %zu; before them the pool and the broker ran %d execs at "
	       "%d in flight\n  to open their sessions)\n",
	       b->par_n / 2, BENCH_CONCURRENCY, BENCH_CONCURRENCY);

	snprintf(title, sizeof(title), "%.0f MiB of stdout, %zu run%s of each, in turns",
	         (double)b->stream_bytes / MIB, b->stream_runs, b->stream_runs == 1 ? "" : "s");
	printf("\n%-44s %8s %8s %9s\n", title, "MB/s", "s/run", "vs floor");
	for (enum skind k = 0; k < KIND_COUNT; k++) {
		printf(" %s: `%s`\n", b->sc[k].label, b->sc[k].cmd);
		for (enum sway w = 0; w < STREAM_COUNT; w++)
			print_stream(&b->sc[k], w);
	}
	r = stream_ratio(&b->sc[KIND_ZEROS], &ok);
	bench_print_target("end-to-end MB/s / floor MB/s (zeros)", ok, r, ">= 0.7", r >= 0.7);
	r = stream_ratio(&b->sc[KIND_TEXT], &ok);
	bench_print_target("end-to-end MB/s / floor MB/s (text)", ok, r, ">= 0.7", r >= 0.7);
	for (enum skind k = 0; k < KIND_COUNT; k++) {
		const struct stream_case *c = &b->sc[k];
		if (series_ok(&c->s[STREAM_HTTP]))
			printf("(%s over HTTP: %.2f bytes received per output byte; CPU seconds: "
			       "broker %.2f, this client %.2f)\n",
			       c->label, (double)c->recv / (double)c->bytes[STREAM_HTTP],
			       c->cpu_broker, c->cpu_client);
	}
	printf("(the streaming broker has output_cap_bytes raised; a NUL byte is \\u0000 in a JSON "
	       "string)\n");

	printf("\nbroker memory (MiB, /proc/PID/status), another broker: "
	       "pool_max_channels_per_session 1,\n  pool_max_sessions_per_host %zu, "
	       "output_cap_bytes raised, %d sshds, %zu execs at once\n",
	       (b->rss_n + RSS_SSHDS - 1) / RSS_SSHDS, RSS_SSHDS, b->rss_n);
	print_mib("RSS when started", b->rss_start);
	snprintf(title, sizeof(title), "RSS with %zu execs running (waiting, no output)", b->rss_n);
	print_mib(title, b->rss_waiting);
	snprintf(title, sizeof(title), "RSS with %ld pooled idle sessions", b->rss_idle_sessions);
	print_mib(title, b->rss_idle);
	print_mib("  peak so far (VmHWM: opening them, the execs)", b->rss_idle_hwm);
	snprintf(title, sizeof(title), "peak with %zu streaming execs (VmHWM%s)", b->rss_n,
	         b->rss_hwm_reset ? ", reset before" : ", NOT reset");
	print_mib(title, b->rss_stream_hwm);
	print_mib("  highest RSS sampled meanwhile", b->rss_stream_max);
	if (series_ok(&b->rss_stream))
		printf("(streaming: each exec `seq 1 %zu` (%.1f MB) behind a gate that opened once "
		       "all %zu had\n  started; from then %.0f MB received in %.2f s)\n",
		       b->rss_lines, (double)seq_bytes(b->rss_lines) / 1e6, b->rss_n,
		       (double)b->rss_stream_recv / 1e6, b->rss_stream_s);

	if (b->audit_checked)
		printf(
		    "\naudit rows (all 'exited', one per request): main %ld/%lu, stream %ld/%lu, "
		    "memory %ld/%lu\n",
		    b->audit_exited[0], b->main_b.sent, b->audit_exited[1], b->stream_b.sent,
		    b->audit_exited[2], b->rss_b.sent);

	bench_print_failures(all, nall);
}

/* Whether something did not work: every series must have run without a failure. */
static bool bench_broke(struct bench *b)
{
	struct series *all[SERIES_MAX];
	size_t nall = bench_series(b, all);

	for (size_t i = 0; i < nall; i++)
		if (!series_ok(all[i]))
			return true;
	return bench_problem_count() > 0;
}

static int bench_init(struct bench *b)
{
	static const char *const names[WAY_COUNT] = {
	    [WAY_FLOOR] = "floor: bare libssh2 session, blocking",
	    [WAY_POOL] = "pool in process (warm, wrapper)",
	    [WAY_FLOOR_WRAPPED] = "floor running the pool's wrapper",
	    [WAY_HTTP] = "HTTP end to end (token, audit, NDJSON)",
	    [WAY_MASTER] = "ssh -S through a ControlMaster",
	    [WAY_FRESH] = "fresh ssh process per exec",
	};
	static const char *const pnames[PAR_COUNT] = {
	    [PAR_POOL] = "pool in process",
	    [PAR_HTTP] = "HTTP end to end",
	    [PAR_MASTER] = "ControlMaster, parallel ssh -S",
	};
	static const char *const snames[KIND_COUNT][STREAM_COUNT] = {
	    [KIND_ZEROS] =
	        {
	            [STREAM_FLOOR] = "floor: one libssh2 channel read to EOF",
	            [STREAM_POOL] = "pool in process (data callback)",
	            [STREAM_HTTP] = "HTTP end to end (NDJSON frames)",
	        },
	    [KIND_TEXT] =
	        {
	            [STREAM_FLOOR] = "text: floor, one libssh2 channel",
	            [STREAM_POOL] = "text: pool in process",
	            [STREAM_HTTP] = "text: HTTP end to end",
	        },
	};
	int rc = 0;

	for (enum way w = 0; w < WAY_COUNT; w++)
		rc |= series_init(&b->seq[w], names[w], b->n);
	for (enum pway w = 0; w < PAR_COUNT; w++)
		rc |= series_init(&b->par[w], pnames[w], b->par_n);
	for (enum skind k = 0; k < KIND_COUNT; k++)
		for (enum sway w = 0; w < STREAM_COUNT; w++)
			rc |= series_init(&b->sc[k].s[w], snames[k][w], b->stream_runs);
	rc |= series_init(&b->pool_first, "pool, first exec", 1);
	rc |= series_init(&b->http_first, "HTTP, first exec", 1);
	rc |= series_init(&b->pool_par_warm, "pool, warm-up at 32 in flight", BENCH_CONCURRENCY);
	rc |= series_init(&b->http_par_warm, "HTTP, warm-up at 32 in flight", BENCH_CONCURRENCY);
	rc |= series_init(&b->rss_open, "memory: execs opening the sessions", b->rss_n);
	rc |= series_init(&b->rss_stream, "memory: streaming execs", b->rss_n);
	return rc;
}

static void bench_free(struct bench *b)
{
	struct series *all[SERIES_MAX];
	size_t nall = bench_series(b, all);

	for (size_t i = 0; i < nall; i++)
		free(all[i]->ms);
	for (enum skind k = 0; k < KIND_COUNT; k++)
		free(b->sc[k].body);
	free(b->wrapped);
	free(b->body_true);
	free(b->body_idle);
	free(b->body_seq);
}

/* The line `yes` repeats for the text stream: printable ASCII, as JSON carries it. */
#define TEXT_LINE "exec-broker-benchmark-text-0123456789-abcdefghijklmnopqrstuvwxyz"

/* The streams: zeros, as the issue asks (`head -c N /dev/zero`), and text. The floor
 * sends the text pipeline through `sh -c` as the pool and the broker do, so that all three
 * run the same processes. */
static int stream_cases(struct bench *b)
{
	struct stream_case *z = &b->sc[KIND_ZEROS], *t = &b->sc[KIND_TEXT];
	const char *count = b->stream_count;

	snprintf(b->stream_count, sizeof(b->stream_count), "%llu",
	         (unsigned long long)b->stream_bytes);
	z->label = "zeros";
	snprintf(z->cmd, sizeof(z->cmd), "head -c %s /dev/zero", count);
	z->argv[0] = (struct eb_bytes){"head", 4};
	z->argv[1] = (struct eb_bytes){"-c", 2};
	z->argv[2] = (struct eb_bytes){count, strlen(count)};
	z->argv[3] = (struct eb_bytes){"/dev/zero", 9};
	z->spec = (struct command_spec){.argv = z->argv, .argc = 4};
	z->body = exec_body((const char *const[]){"head", "-c", count, "/dev/zero", NULL},
	                    LONG_TIMEOUT_S);

	t->label = "text";
	snprintf(b->text_pipeline, sizeof(b->text_pipeline), "yes %s | head -c %s", TEXT_LINE,
	         count);
	snprintf(t->cmd, sizeof(t->cmd), "sh -c '%s'", b->text_pipeline);
	t->argv[0] = (struct eb_bytes){"sh", 2};
	t->argv[1] = (struct eb_bytes){"-c", 2};
	t->argv[2] = (struct eb_bytes){b->text_pipeline, strlen(b->text_pipeline)};
	t->spec = (struct command_spec){.argv = t->argv, .argc = 3};
	t->body =
	    exec_body((const char *const[]){"sh", "-c", b->text_pipeline, NULL}, LONG_TIMEOUT_S);
	for (enum skind k = 0; k < KIND_COUNT; k++)
		b->sc[k].x =
		    (struct http_exec){ws_main, 1, b->tok_ws, b->sc[k].body, b->stream_bytes};
	return z->body != NULL && t->body != NULL ? 0 : -1;
}

/* The requests and the commands: `true`, the streams, the gate and the gated seq. */
static int bench_commands(struct bench *b)
{
	static const struct eb_bytes argv_true[] = {{"true", 4}};
	static char gate_line[160], seq_line[200];
	char err[256];

	b->spec_true = (struct command_spec){.argv = argv_true, .argc = 1};
	/* The string the pool sends for `true`, with a fresh BENCH_EXEC_DEADLINE_MS deadline. */
	b->spec_true.timeout_s = BENCH_EXEC_DEADLINE_MS / 1000 + 1 + b->pcfg.kill_grace_s;
	b->spec_true.kill_after_s = b->pcfg.kill_grace_s;
	if (command_build(&b->spec_true, &b->wrapped, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_exec: command_build: %s\n", err);
		return -1;
	}
	b->spec_true.timeout_s = b->spec_true.kill_after_s = 0;

	snprintf(gate_line, sizeof(gate_line), "read -r x < /tmp/eb-bench-%d-gate", (int)getpid());
	snprintf(seq_line, sizeof(seq_line), "%s && exec seq 1 %zu", gate_line, b->rss_lines);
	b->body_true = exec_body((const char *const[]){"true", NULL}, 0);
	b->body_idle =
	    exec_body((const char *const[]){"sh", "-c", gate_line, NULL}, LONG_TIMEOUT_S);
	b->body_seq = exec_body((const char *const[]){"sh", "-c", seq_line, NULL}, LONG_TIMEOUT_S);
	if (b->body_true == NULL || b->body_idle == NULL || b->body_seq == NULL ||
	    stream_cases(b) != 0)
		return -1;
	b->x_true = (struct http_exec){ws_main, 1, b->tok_ws, b->body_true, 0};
	b->x_idle = (struct http_exec){b->rss_ws, RSS_SSHDS, b->tok_rss, b->body_idle, 0};
	b->x_seq = (struct http_exec){b->rss_ws, RSS_SSHDS, b->tok_rss, b->body_seq,
	                              seq_bytes(b->rss_lines)};
	return 0;
}

int main(void)
{
	static struct bench b;
	struct th_sshd_opts sopts = {.max_sessions = SSHD_MAX_SESSIONS};
	uint64_t t_start = bench_now_ns();
	int rc;

	b.n = bench_env_count("BENCH_N", DEFAULT_N);
	b.par_n = bench_env_count("BENCH_PAR_N", DEFAULT_PAR_N);
	b.stream_bytes = (uint64_t)bench_env_count("BENCH_STREAM_MIB", DEFAULT_STREAM_MIB) << 20;
	b.stream_runs = bench_env_count("BENCH_STREAM_RUNS", DEFAULT_STREAM_RUNS);
	b.rss_n = bench_env_count("BENCH_RSS_N", DEFAULT_RSS_N);
	b.rss_lines = bench_env_count("BENCH_RSS_LINES", DEFAULT_RSS_LINES);
	if (b.stream_bytes > 2000ull << 20) {
		fprintf(stderr, "bench_exec: BENCH_STREAM_MIB is at most 2000 (output_cap_bytes is "
		                "an int); using 2000\n");
		b.stream_bytes = 2000ull << 20;
	}
	if (b.rss_n > RSS_MAX_N) {
		fprintf(stderr, "bench_exec: BENCH_RSS_N is at most %d; using it\n", RSS_MAX_N);
		b.rss_n = RSS_MAX_N;
	}
	b.fl.fd = -1;
	if (bench_init(&b) != 0 || bench_default_pool_config(&b.pcfg) != 0)
		return 1;

	if (th_setup(TH_PG | TH_SSHD) != 0)
		return 1;
	if (th_sshd_stop(&th.sshd) != 0 || th_sshd_start(&th.sshd, &sopts) != 0) {
		fprintf(stderr, "bench_exec: cannot start the benchmark's sshd\n");
		return 1;
	}
	b.pcfg.ssh_key_path = th.client_key;
	b.run.target =
	    (struct pool_target){"127.0.0.1", th.sshd.port, th.user, th.sshd.host_key_fp};
	b.base = event_base_new();
	if (b.base == NULL || libssh2_init(0) != 0) {
		fprintf(stderr, "bench_exec: cannot initialise libevent or libssh2\n");
		return 1;
	}
	bench_progress("setting up: database, workspaces, tokens, %d sshds (broker %s)", RSS_SSHDS,
	               bench_broker_bin());
	if (bench_world(&b) != 0 || bench_commands(&b) != 0) {
		fprintf(stderr, "bench_exec: setting up failed (above)\n");
		return 1;
	}
	if (bench_connect(&b) != 0) {
		bench_report(&b);
		return 1;
	}
	bench_progress("sequential execs, %zu of each of %d ways", b.n, WAY_COUNT);
	bench_sequential(&b);
	bench_progress("%zu execs at %d in flight, 3 ways", b.par_n, BENCH_CONCURRENCY);
	bench_parallel(&b);
	hrun_free(&b.main_h);
	broker_stop(&b.main_b);
	bench_progress("streaming %llu MiB of zeros and of text, %zu runs of 3 ways",
	               (unsigned long long)(b.stream_bytes >> 20), b.stream_runs);
	bench_streaming(&b);
	bench_progress("memory: %zu sessions, %zu streaming execs", b.rss_n, b.rss_n);
	bench_memory(&b);
	bench_audit(&b);

	bench_report(&b);
	rc = bench_broke(&b) ? 1 : 0;
	if (b.master)
		master_stop(b.sock);
	floor_close(&b.fl);
	b.run.base = b.base; /* pool_run_close frees it */
	pool_run_close(&b.run);
	libssh2_exit();
	printf("\nbench_exec: %s in %.0f s\n", rc ? "something broke (above)" : "done",
	       bench_ms_since(t_start) / 1000);
	bench_free(&b);
	th_teardown();
	return rc;
}
