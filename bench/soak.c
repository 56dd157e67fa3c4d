/* bench/soak.c: the soak: one real broker on a real PostgreSQL (fsync on) and four sshds,
 * under a mixed workload for SOAK_MINUTES (attached execs streamed and buffered, detached
 * execs, batches, audit reads) with a SIGHUP reload and one sshd restart a minute. A line
 * every minute; at the end a verdict, and exit status 1 unless every criterion held (see
 * bench/README.md, "Soak"). */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/detached.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"

#define NHOSTS 4 /* hosts[0] is th.sshd, never restarted; 1..3 take turns */
#define NWS    (2 * NHOSTS)
/* An error of the transport on a host counts as caused by its restart when the request
 * overlapped the restart or began at most this long after it. */
#define RESTART_GRACE_MS 10000
/* How long a quiet moment before a sample waits for the clients' operations to end. */
#define QUIET_WAIT_MS 60000
#define CONF_BASE                                                                                  \
	"org_max_concurrent_execs = 200\nworkspace_max_detached_execs = 1000\n"                    \
	"exec_retain_s = 30\npool_kill_grace_s = 2\n"
#define MAX_CODES 64
#define MAX_MIN   600

enum kind { K_STREAM, K_BUFFERED, K_DETACHED, K_BATCH, K_AUDIT, K_NKINDS };
static const char *const kind_names[K_NKINDS] = {"streamed", "buffered", "detached", "batch",
                                                 "audit"};

struct ws {
	char id[32];
	int host;
};

/* Outcomes other than success, by code: explained (caused on purpose) or not. */
struct codes {
	struct {
		char code[48];
		long explained, unexplained;
	} v[MAX_CODES];
	size_t n;
};

/* One quiet sample of the broker. */
struct sample {
	long rss_kib;
	long fds;
	long sessions; /* pooled SSH sessions (/metrics): each holds a socket */
	long db_conns;
	long running;
};

static struct kit_world W; /* only db is used: the workspaces are the soak's own */
static struct kit_broker B;
static struct th_sshd *hosts[NHOSTS];
static struct th_sshd extra[NHOSTS - 1];
static struct ws wss[NWS];
static char tok[64]; /* org acme: exec, batch, audit:read */
static char *conf_text;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long done_min[K_NKINDS], done_all[K_NKINDS];
static struct codes codes_min, codes_all;
static long unexplained_total;
static long long restart_t0[NHOSTS], restart_t1[NHOSTS]; /* ms; 0: never */
static int last_restart = -1;
static char **cancel_ids;
static size_t ncancel, cancel_cap;

static atomic_bool stop_flag, pause_flag;
static atomic_int in_op;

static long long now_ms(void)
{
	return kit_now_ms();
}

static void codes_add(struct codes *c, const char *code, bool explained)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		if (strcmp(c->v[i].code, code) == 0)
			break;
	if (i == c->n) {
		if (c->n == MAX_CODES)
			i = MAX_CODES - 1; /* the last slot takes the rest */
		else
			snprintf(c->v[c->n++].code, sizeof(c->v[0].code), "%s", code);
	}
	if (explained)
		c->v[i].explained++;
	else
		c->v[i].unexplained++;
}

/* One outcome that is not plain success. Unexplained ones are printed as they happen. */
static void record(enum kind k, const char *ws, const char *code, bool explained, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static void record(enum kind k, const char *ws, const char *code, bool explained, const char *fmt,
                   ...)
{
	char detail[400] = "";
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_lock(&mu);
	codes_add(&codes_min, code, explained);
	codes_add(&codes_all, code, explained);
	if (!explained && unexplained_total++ < 200) {
		time_t t = time(NULL);
		struct tm tm;
		char ts[32];

		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%H:%M:%SZ", &tm);
		printf("soak: %s unexplained %s %s on %s: %s\n", ts, kind_names[k], code,
		       ws != NULL ? ws : "-", detail);
		fflush(stdout);
	}
	pthread_mutex_unlock(&mu);
}

static void count_done(enum kind k)
{
	pthread_mutex_lock(&mu);
	done_min[k]++;
	done_all[k]++;
	pthread_mutex_unlock(&mu);
}

/* Whether a failure of the transport to host, of a request from t0 to t1, is the restart's. */
static bool restart_explains(int host, long long t0, long long t1)
{
	bool yes;

	pthread_mutex_lock(&mu);
	yes = restart_t0[host] != 0 && t0 <= restart_t1[host] + RESTART_GRACE_MS &&
	      t1 >= restart_t0[host];
	pthread_mutex_unlock(&mu);
	return yes;
}

static bool transport_code(const char *code)
{
	return strcmp(code, "transport_error") == 0 || strcmp(code, "ssh_connect_failed") == 0;
}

/* The error code of a JSON error body ({"error":{"code":...}}), or "http_<status>". */
static void body_code(const struct kit_resp *r, char *code, size_t len)
{
	json_t *o = r->body != NULL ? json_loads(r->body, 0, NULL) : NULL;
	const char *c = json_string_value(json_object_get(json_object_get(o, "error"), "code"));

	if (c != NULL)
		snprintf(code, len, "%s", c);
	else if (r->status == 0)
		snprintf(code, len, "no_response");
	else
		snprintf(code, len, "http_%d", r->status);
	json_decref(o);
}

static unsigned rnd(unsigned *seed, unsigned n)
{
	return (unsigned)rand_r(seed) % n;
}

/* ---- attached execs ---- */

enum cmd { C_ECHO, C_SEQ, C_FAIL, C_TIMEOUT, C_CANCEL };

#define SEQ_BYTES 23893 /* `seq 1 5000` */

static const char *cmd_body(enum cmd c)
{
	switch (c) {
	case C_ECHO:
		return "{\"argv\":[\"echo\",\"soak\"]}";
	case C_SEQ:
		return "{\"argv\":[\"seq\",\"1\",\"5000\"]}";
	case C_FAIL:
		return "{\"argv\":[\"sh\",\"-c\",\"echo oops >&2; exit 3\"]}";
	case C_TIMEOUT:
		return "{\"argv\":[\"sleep\",\"5\"],\"timeout_s\":1}";
	case C_CANCEL:
		return "{\"argv\":[\"sh\",\"-c\",\"echo c; exec sleep 30\"],\"timeout_s\":60}";
	default:
		abort();
	}
}

/* Judges an attached exec's outcome: exit code (or -1) and error code (or NULL) against
 * what the command was meant to do. */
static void judge_attached(enum kind k, const struct ws *w, enum cmd c, long long t0, int exit_code,
                           const char *err, size_t out_bytes, bool has_out)
{
	long long t1 = now_ms();

	if (err != NULL) {
		bool ok = (c == C_TIMEOUT && strcmp(err, "exec_timeout") == 0) ||
		          (transport_code(err) && restart_explains(w->host, t0, t1));
		record(k, w->id, err, ok, "command %d, %lld ms", (int)c, t1 - t0);
		return;
	}
	if (c == C_FAIL && exit_code == 3) {
		record(k, w->id, "exit_3", true, NULL);
		return;
	}
	if (c == C_TIMEOUT || exit_code != 0) {
		char code[32];

		snprintf(code, sizeof(code), "exit_%d", exit_code);
		record(k, w->id, code, false, "command %d", (int)c);
		return;
	}
	if (has_out && out_bytes != (c == C_SEQ ? SEQ_BYTES : 5)) {
		record(k, w->id, "bad_output", false, "%zu bytes", out_bytes);
		return;
	}
}

static void op_streamed(unsigned *seed)
{
	static const enum cmd mix[] = {C_ECHO, C_ECHO, C_ECHO,    C_SEQ,    C_SEQ,
	                               C_FAIL, C_FAIL, C_TIMEOUT, C_CANCEL, C_CANCEL};
	enum cmd c = mix[rnd(seed, sizeof(mix) / sizeof(mix[0]))];
	/* Cancels on the host that is never restarted: their outcome is known exactly. */
	const struct ws *w = c == C_CANCEL ? &wss[rnd(seed, 2)] : &wss[rnd(seed, NWS)];
	struct kit_req q = {.ws = w->id, .token = tok, .body = cmd_body(c), .max_time_s = 60};
	long long t0 = now_ms();
	struct kit_frames f;
	struct kit_resp r;

	if (c == C_CANCEL) {
		struct kit_conn s;
		char *line, id[64] = "";

		if (kit_stream_open(&s, B.port, &q) != 0 || kit_stream_head(&s, 30000) != 0 ||
		    s.r.status != 200) {
			char code[64];

			body_code(&s.r, code, sizeof(code));
			record(K_STREAM, w->id, code, false, "cancel: status %d", s.r.status);
			kit_stream_abort(&s);
			return;
		}
		/* The first frame names the exec; the second is the command's "c". */
		for (int i = 0; i < 2 && (line = kit_stream_line(&s, 30000)) != NULL; i++) {
			json_t *o = json_loads(line, 0, NULL);
			const char *e = json_string_value(json_object_get(o, "exec_id"));

			if (e != NULL)
				snprintf(id, sizeof(id), "%s", e);
			json_decref(o);
			free(line);
		}
		kit_stream_abort(&s);
		if (id[0] == '\0') {
			record(K_STREAM, w->id, "no_exec_id", false, "cancel");
			return;
		}
		pthread_mutex_lock(&mu);
		if (ncancel == cancel_cap) {
			cancel_cap = cancel_cap ? 2 * cancel_cap : 256;
			cancel_ids = realloc(cancel_ids, cancel_cap * sizeof(*cancel_ids));
		}
		cancel_ids[ncancel++] = strdup(id);
		pthread_mutex_unlock(&mu);
		record(K_STREAM, w->id, "cancelled", true, NULL);
		count_done(K_STREAM);
		return;
	}
	kit_http(B.port, &q, &r);
	if (r.status != 200 || !r.complete) {
		char code[64];

		if (r.status == 200)
			snprintf(code, sizeof(code), "incomplete");
		else
			body_code(&r, code, sizeof(code));
		judge_attached(K_STREAM, w, c, t0, -1, code, 0, false);
		kit_resp_free(&r);
		count_done(K_STREAM);
		return;
	}
	kit_frames_init(&f);
	kit_frames_parse(&f, r.body, r.body_len);
	if (f.terminal != 1 || f.bad != 0 || f.last_terminal == NULL ||
	    f.terminal_at != (int)f.n - 1) {
		record(K_STREAM, w->id, "bad_frames", false, "%d last frames, %d bad: %.200s",
		       f.terminal, f.bad, r.body);
	} else {
		json_t *lt = f.last_terminal;
		const char *err =
		    json_string_value(json_object_get(json_object_get(lt, "error"), "code"));
		json_t *ec = json_object_get(lt, "exit_code");

		judge_attached(
		    K_STREAM, w, c, t0, json_is_integer(ec) ? (int)json_integer_value(ec) : -1,
		    err != NULL ? err : (json_is_integer(ec) ? NULL : "signaled"), f.out_len, true);
	}
	kit_frames_free(&f);
	kit_resp_free(&r);
	count_done(K_STREAM);
}

static void op_buffered(unsigned *seed)
{
	static const enum cmd mix[] = {C_ECHO, C_ECHO, C_SEQ, C_FAIL, C_TIMEOUT};
	enum cmd c = mix[rnd(seed, sizeof(mix) / sizeof(mix[0]))];
	const struct ws *w = &wss[rnd(seed, NWS)];
	long long t0 = now_ms();
	struct kit_resp r;
	json_t *o;

	kit_http(B.port,
	         &(struct kit_req){.ws = w->id,
	                           .token = tok,
	                           .body = cmd_body(c),
	                           .accept = "application/json",
	                           .max_time_s = 60},
	         &r);
	o = r.complete && r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
	if (r.status == 200 && o != NULL) {
		json_t *ec = json_object_get(o, "exit_code");

		judge_attached(
		    K_BUFFERED, w, c, t0, json_is_integer(ec) ? (int)json_integer_value(ec) : -1,
		    json_is_integer(ec) ? NULL : "signaled",
		    (size_t)json_integer_value(json_object_get(o, "stdout_bytes")), true);
	} else {
		char code[64];

		body_code(&r, code, sizeof(code));
		judge_attached(K_BUFFERED, w, c, t0, -1, code, 0, false);
	}
	json_decref(o);
	kit_resp_free(&r);
	count_done(K_BUFFERED);
}

/* ---- detached execs, on the host that is never restarted ---- */

static json_t *get_json(const char *path, int *status)
{
	struct kit_resp r;
	json_t *o = NULL;

	kit_http(B.port, &(struct kit_req){.method = "GET", .path = path, .token = tok}, &r);
	*status = r.status;
	if (r.complete && r.body != NULL)
		o = json_loads(r.body, 0, NULL);
	kit_resp_free(&r);
	return o;
}

enum det_mode { D_WAIT, D_SIGNAL, D_TIMEOUT };

static void op_detached(unsigned *seed)
{
	static const char *const bodies[] = {
	    "{\"argv\":[\"sh\",\"-c\",\"echo start; sleep 1; echo end\"],\"detach\":true,"
	    "\"timeout_s\":60}",
	    "{\"argv\":[\"sh\",\"-c\",\"echo start; sleep 20; echo end\"],\"detach\":true,"
	    "\"timeout_s\":60}",
	    "{\"argv\":[\"sh\",\"-c\",\"echo start; sleep 20; echo end\"],\"detach\":true,"
	    "\"timeout_s\":2}"};
	static const char *const want[] = {"exited", "signaled", "timeout"};
	enum det_mode m = (enum det_mode)rnd(seed, 3);
	const struct ws *w = &wss[rnd(seed, 2)];
	char id[64], path[200], code[64];
	const char *st;
	struct kit_resp r;
	json_t *o;
	int status;
	long long end;

	kit_http(B.port, &(struct kit_req){.ws = w->id, .token = tok, .body = bodies[m]}, &r);
	o = r.complete && r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
	if (r.status != 202 || json_string_value(json_object_get(o, "exec_id")) == NULL) {
		body_code(&r, code, sizeof(code));
		record(K_DETACHED, w->id, code, false, "start: status %d", r.status);
		json_decref(o);
		kit_resp_free(&r);
		count_done(K_DETACHED);
		return;
	}
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(o, "exec_id")));
	json_decref(o);
	kit_resp_free(&r);
	kit_detached_remember(id);

	snprintf(path, sizeof(path), "/v1/workspaces/%s/execs", w->id);
	o = get_json(path, &status);
	if (status != 200 || !json_is_array(json_object_get(o, "execs")))
		record(K_DETACHED, w->id, "list_failed", false, "status %d", status);
	json_decref(o);

	snprintf(path, sizeof(path), "/v1/execs/%s/output?follow=false", id);
	kit_http(B.port, &(struct kit_req){.method = "GET", .path = path, .token = tok}, &r);
	if (r.status != 200 || !r.complete)
		record(K_DETACHED, w->id, "read_failed", false, "status %d %s", r.status, r.error);
	kit_resp_free(&r);

	if (m == D_SIGNAL) {
		snprintf(path, sizeof(path), "/v1/execs/%s/signal", id);
		kit_http(
		    B.port,
		    &(struct kit_req){.path = path, .token = tok, .body = "{\"signal\":\"TERM\"}"},
		    &r);
		if (r.status != 202) {
			body_code(&r, code, sizeof(code));
			record(K_DETACHED, w->id, code, false, "signal: status %d", r.status);
		}
		kit_resp_free(&r);
	}

	/* Wait for its end, as a client would. */
	snprintf(path, sizeof(path), "/v1/execs/%s?wait_s=30", id);
	end = now_ms() + 90000;
	for (;;) {
		o = get_json(path, &status);
		st = json_string_value(json_object_get(o, "status"));
		if (status != 200 || st == NULL || strcmp(st, "running") != 0 || now_ms() > end)
			break;
		json_decref(o);
	}
	if (status != 200 || st == NULL || strcmp(st, want[m]) != 0 ||
	    (m == D_WAIT && json_integer_value(json_object_get(o, "exit_code")) != 0)) {
		snprintf(code, sizeof(code), "detached_%s", st != NULL ? st : "unread");
		record(K_DETACHED, w->id, code, false, "exec %s, status %d, meant to be %s", id,
		       status, want[m]);
	} else if (m != D_WAIT) {
		record(K_DETACHED, w->id, m == D_SIGNAL ? "signaled_TERM" : "exec_timeout", true,
		       NULL);
	}
	json_decref(o);

	/* Replay its whole output: the first line, then exactly one last frame. */
	snprintf(path, sizeof(path), "/v1/execs/%s/output", id);
	kit_http(B.port,
	         &(struct kit_req){.method = "GET", .path = path, .token = tok, .max_time_s = 60},
	         &r);
	if (r.status != 200 || !r.complete) {
		record(K_DETACHED, w->id, "replay_failed", false, "status %d %s", r.status,
		       r.error);
	} else {
		struct kit_frames f;

		kit_frames_init(&f);
		kit_frames_parse(&f, r.body, r.body_len);
		if (f.terminal != 1 || f.out == NULL || strncmp(f.out, "start\n", 6) != 0 ||
		    (m == D_WAIT && strcmp(f.out, "start\nend\n") != 0))
			record(K_DETACHED, w->id, "replay_bad", false, "exec %s: %.200s", id,
			       r.body);
		kit_frames_free(&f);
	}
	kit_resp_free(&r);
	count_done(K_DETACHED);
}

/* ---- batches over the workspaces labelled soak=batch (all of them) ---- */

static int host_of(const char *ws)
{
	for (size_t i = 0; i < NWS; i++)
		if (strcmp(wss[i].id, ws) == 0)
			return wss[i].host;
	return -1;
}

static void op_batch(unsigned *seed)
{
	static const char body[] =
	    "{\"target\":{\"org\":\"acme\",\"labels\":{\"soak\":\"batch\"}},"
	    "\"argv\":[\"echo\",\"soak\"],\"max_concurrency\":4,\"max_errors\":\"100%\"}";
	long long t0 = now_ms(), t1;
	struct kit_resp r;
	json_t *sum = NULL, *res;
	char *nl;
	size_t i;

	(void)seed;
	kit_http(B.port, &(struct kit_req){.path = "/v1/batches", .token = tok, .body = body}, &r);
	t1 = now_ms();
	if (r.status != 200 || !r.complete || r.body_len < 2) {
		char code[64];

		body_code(&r, code, sizeof(code));
		record(K_BATCH, NULL, code, false, "status %d %s", r.status, r.error);
		goto out;
	}
	r.body[r.body_len - 1] = '\0';
	nl = strrchr(r.body, '\n');
	sum = json_loads(nl != NULL ? nl + 1 : r.body, 0, NULL);
	res = json_object_get(sum, "results");
	if (json_array_size(res) != NWS) {
		record(K_BATCH, NULL, "bad_summary", false, "%.300s", nl != NULL ? nl + 1 : r.body);
		goto out;
	}
	for (i = 0; i < NWS; i++) {
		json_t *e = json_array_get(res, i);
		const char *ws = json_string_value(json_object_get(e, "workspace_id"));
		const char *st = json_string_value(json_object_get(e, "status"));
		const char *err =
		    json_string_value(json_object_get(json_object_get(e, "error"), "code"));

		if (st != NULL && strcmp(st, "succeeded") == 0)
			continue;
		if (err == NULL)
			err = st != NULL ? st : "no_status";
		record(K_BATCH, ws, err,
		       ws != NULL && transport_code(err) && restart_explains(host_of(ws), t0, t1),
		       "target status %s", st != NULL ? st : "-");
	}
out:
	json_decref(sum);
	kit_resp_free(&r);
	count_done(K_BATCH);
}

/* ---- audit reads: filters, and a cursor followed for up to 3 pages ---- */

static void op_audit(unsigned *seed)
{
	char filter[120], path[600], since[40];
	const char *cursor = NULL;
	json_t *o = NULL;
	int status = 0;
	time_t t = time(NULL) - 120;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	switch (rnd(seed, 5)) {
	case 0:
		snprintf(filter, sizeof(filter), "limit=50");
		break;
	case 1:
		snprintf(filter, sizeof(filter), "limit=20&status=exited");
		break;
	case 2:
		snprintf(filter, sizeof(filter), "limit=20&workspace_id=%s",
		         wss[rnd(seed, NWS)].id);
		break;
	case 3:
		snprintf(filter, sizeof(filter), "limit=10&status=cancelled");
		break;
	default:
		snprintf(filter, sizeof(filter), "limit=30&since=%s", since);
		break;
	}
	for (int page = 0; page < 3; page++) {
		if (cursor != NULL)
			snprintf(path, sizeof(path), "/v1/audit?%s&cursor=%s", filter, cursor);
		else
			snprintf(path, sizeof(path), "/v1/audit?%s", filter);
		json_decref(o);
		o = get_json(path, &status);
		if (status != 200 || !json_is_array(json_object_get(o, "items"))) {
			record(K_AUDIT, NULL, status == 200 ? "bad_page" : "audit_failed", false,
			       "%s: status %d", path, status);
			break;
		}
		cursor = json_string_value(json_object_get(o, "next_cursor"));
		if (cursor == NULL)
			break;
	}
	json_decref(o);
	count_done(K_AUDIT);
}

/* ---- the clients ---- */

static void *client_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 7919u + (unsigned)time(NULL);

	while (!atomic_load(&stop_flag)) {
		unsigned x;

		if (atomic_load(&pause_flag)) {
			kit_sleep_ms(50);
			continue;
		}
		atomic_fetch_add(&in_op, 1);
		if (atomic_load(&pause_flag) || atomic_load(&stop_flag)) {
			atomic_fetch_sub(&in_op, 1);
			continue;
		}
		x = rnd(&seed, 100);
		if (x < 45)
			op_streamed(&seed);
		else if (x < 65)
			op_buffered(&seed);
		else if (x < 75)
			op_detached(&seed);
		else if (x < 83)
			op_batch(&seed);
		else
			op_audit(&seed);
		atomic_fetch_sub(&in_op, 1);
	}
	return NULL;
}

/* ---- the broker, the hosts and the database as the soak watches them ---- */

static long count_fds(pid_t pid)
{
	char path[64];
	struct dirent *d;
	long n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL)
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

static long sql_long(const char *sql)
{
	char *v = kit_sql_value(W.db, sql);
	long n = v != NULL ? strtol(v, NULL, 10) : -1;

	free(v);
	return n;
}

static void take_sample(struct sample *s)
{
	struct kit_resp r;

	s->rss_kib = kit_proc_status_kib(B.pid, "VmRSS");
	s->fds = count_fds(B.pid);
	s->sessions = -1;
	kit_http(B.port, &(struct kit_req){.method = "GET", .path = "/metrics"}, &r);
	if (r.status == 200 && r.body != NULL)
		s->sessions =
		    (long)(kit_metric(r.body, "exec_broker_pool_sessions{state=\"connecting\"}") +
		           kit_metric(r.body, "exec_broker_pool_sessions{state=\"busy\"}") +
		           kit_metric(r.body, "exec_broker_pool_sessions{state=\"idle\"}"));
	kit_resp_free(&r);
	s->db_conns =
	    sql_long("SELECT count(*) FROM pg_stat_activity "
	             "WHERE application_name = 'exec-broker' AND pid <> pg_backend_pid()");
	s->running = sql_long("SELECT count(*) FROM exec_audit WHERE status = 'running'");
}

/* The descriptors that are not pooled sessions: those must not grow. */
static long base_fds(const struct sample *s)
{
	return s->fds - (s->sessions > 0 ? s->sessions : 0);
}

/* Supervisors of detached execs outlive their sshd session and are adopted by the harness
 * (the subreaper): reap those that ended, by pid, never the broker. */
static void reap_adopted(void)
{
	pid_t self = getpid();
	struct dirent *d;
	DIR *dir = opendir("/proc");

	if (dir == NULL)
		return;
	while ((d = readdir(dir)) != NULL) {
		pid_t pid = (pid_t)atoi(d->d_name), ppid;
		char state;

		if (pid <= 1 || pid == B.pid)
			continue;
		if (kit_proc_stat(pid, &state, &ppid, NULL) == 0 && ppid == self && state == 'Z')
			waitpid(pid, NULL, WNOHANG);
	}
	closedir(dir);
}

/* Waits up to ms while the reaping goes on. */
static void idle_ms(long long ms)
{
	long long end = now_ms() + ms;

	while (now_ms() < end) {
		reap_adopted();
		kit_sleep_ms((int)(end - now_ms() < 500 ? end - now_ms() : 500));
	}
}

/* A quiet moment: the clients finish what they are doing and wait; 2 s later the broker
 * has closed what they held. */
static void quiet_sample(struct sample *s)
{
	long long end = now_ms() + QUIET_WAIT_MS;

	atomic_store(&pause_flag, true);
	while (atomic_load(&in_op) > 0 && now_ms() < end)
		idle_ms(100);
	idle_ms(2000);
	take_sample(s);
	atomic_store(&pause_flag, false);
}

static void reload(int n)
{
	/* Odd reloads raise output_cap_bytes by one byte, even ones put it back. */
	const char *a = n % 2 ? "output_cap_bytes = 1048577" : "output_cap_bytes = 1048576";
	const char *b = n % 2 ? "output_cap_bytes = 1048576" : "output_cap_bytes = 1048577";
	char *p = strstr(conf_text, b);
	FILE *f;

	if (p != NULL)
		memcpy(p, a, strlen(a));
	f = fopen(B.conf, "we");
	if (f == NULL || fputs(conf_text, f) < 0 || fclose(f) != 0) {
		bench_problem("reload: cannot write %s", B.conf);
		return;
	}
	kill(B.pid, SIGHUP);
}

static void restart_host(int h)
{
	long long t0 = now_ms(), t1;
	int rc;

	pthread_mutex_lock(&mu);
	restart_t0[h] = t0;
	restart_t1[h] = t0 + 3600000; /* until it is back */
	pthread_mutex_unlock(&mu);
	rc = th_sshd_restart(hosts[h]);
	t1 = now_ms();
	pthread_mutex_lock(&mu);
	restart_t1[h] = t1;
	last_restart = h;
	pthread_mutex_unlock(&mu);
	if (rc != 0)
		bench_problem("sshd of host %d did not restart", h);
}

static void print_minute(int m, const struct sample *s)
{
	char line[1600];
	size_t o = 0;
	long unexp = 0;

	pthread_mutex_lock(&mu);
	o += (size_t)snprintf(line + o, sizeof(line) - o, "soak: min %3d  done", m);
	for (int k = 0; k < K_NKINDS; k++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, " %s %ld", kind_names[k],
		                      done_min[k]);
	o += (size_t)snprintf(line + o, sizeof(line) - o, " | errors");
	for (size_t i = 0; i < codes_min.n && o < sizeof(line) - 100; i++) {
		o += (size_t)snprintf(line + o, sizeof(line) - o, " %s=%ld", codes_min.v[i].code,
		                      codes_min.v[i].explained + codes_min.v[i].unexplained);
		unexp += codes_min.v[i].unexplained;
	}
	if (codes_min.n == 0)
		o += (size_t)snprintf(line + o, sizeof(line) - o, " none");
	snprintf(line + o, sizeof(line) - o,
	         " (unexplained %ld) | sshd h%d restarted in %lld ms | rss %ld KiB fds %ld "
	         "(sessions %ld) db %ld running %ld",
	         unexp, last_restart,
	         last_restart >= 0 ? restart_t1[last_restart] - restart_t0[last_restart] : -1LL,
	         s->rss_kib, s->fds, s->sessions, s->db_conns, s->running);
	memset(done_min, 0, sizeof(done_min));
	memset(&codes_min, 0, sizeof(codes_min));
	pthread_mutex_unlock(&mu);
	printf("%s\n", line);
	fflush(stdout);
}

/* ---- setup ---- */

static int setup(void)
{
	const char *targs[] = {
	    "token", "create", "--org", "acme", "--scope", "exec,batch,audit:read", NULL};
	char sql[400];

	if (kit_db_migrated(W.db, sizeof(W.db)) != 0)
		return -1;
	hosts[0] = &th.sshd;
	for (int h = 1; h < NHOSTS; h++) {
		if (th_sshd_start(&extra[h - 1], NULL) != 0)
			return -1;
		hosts[h] = &extra[h - 1];
	}
	for (int i = 0; i < NWS; i++) {
		struct kit_ws ws = {.org = "acme", .state = "running"};

		wss[i].host = i / 2;
		snprintf(wss[i].id, sizeof(wss[i].id), "ws-h%d-%c", i / 2, 'a' + i % 2);
		ws.id = wss[i].id;
		ws.port = hosts[wss[i].host]->port;
		ws.host_key_fp = hosts[wss[i].host]->host_key_fp;
		if (kit_ws_add(W.db, &ws) != 0)
			return -1;
		snprintf(sql, sizeof(sql),
		         "INSERT INTO workspace_labels VALUES ('%s', 'soak', 'batch')", wss[i].id);
		if (kit_sql(W.db, sql) != 0)
			return -1;
	}
	return kit_cli_token(W.db, targs, tok, sizeof(tok));
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *s = NULL;
	size_t len = 0;

	if (f == NULL)
		return NULL;
	if (getdelim(&s, &len, '\0', f) < 0) {
		free(s);
		s = NULL;
	}
	fclose(f);
	return s;
}

/* The statuses of the execs cancelled by a disconnect that are not `cancelled`. */
static long cancels_not_cancelled(void)
{
	size_t cap = 64 + ncancel * 40, o = 0;
	char *sql = malloc(cap);
	long n;

	o += (size_t)snprintf(sql, cap,
	                      "SELECT count(*) FROM exec_audit WHERE status <> 'cancelled' AND "
	                      "exec_id = ANY('{");
	for (size_t i = 0; i < ncancel; i++)
		o += (size_t)snprintf(sql + o, cap - o, "%s%s", i ? "," : "", cancel_ids[i]);
	snprintf(sql + o, cap - o, "}'::uuid[])");
	n = ncancel > 0 ? sql_long(sql) : 0;
	free(sql);
	return n;
}

int main(void)
{
	int minutes = (int)bench_env_count("SOAK_MINUTES", 10);
	int nclients = (int)bench_env_count("SOAK_CLIENTS", 4);
	struct sample samples[MAX_MIN + 1], fin;
	pthread_t cl[16];
	long long start, end;
	long running = -1, pending = -1, not_cancelled, maxrss = 0, maxfds = 0;
	char *verify = NULL;
	bool verify_ok, stop_ok, rss_ok, fds_ok;
	int vst = 0, last;

	if (minutes > MAX_MIN)
		minutes = MAX_MIN;
	if (nclients > 16)
		nclients = 16;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
		return 1;
	bench_progress("setting up: database, %d workspaces on %d sshds (broker %s)", NWS, NHOSTS,
	               kit_broker_bin());
	if (setup() != 0 ||
	    kit_broker_start(&B, W.db, "soak", CONF_BASE "output_cap_bytes = 1048576\n") != 0 ||
	    (conf_text = read_file(B.conf)) == NULL) {
		th_teardown();
		return 1;
	}
	bench_progress("%d minutes, %d clients; broker pid %d, log %s", minutes, nclients,
	               (int)B.pid, B.log);
	printf("soak: %d minutes, %d clients, %d workspaces on %d sshds (host 0 never restarted; "
	       "1-3 in turns), PostgreSQL with fsync on\n",
	       minutes, nclients, NWS, NHOSTS);
	for (int i = 0; i < nclients; i++)
		pthread_create(&cl[i], NULL, client_main, (void *)(uintptr_t)(i + 1));
	start = now_ms();
	for (int m = 1; m <= minutes; m++) {
		long long t = start + (long long)(m - 1) * 60000;

		idle_ms(t + 15000 - now_ms());
		reload(m);
		idle_ms(t + 30000 - now_ms());
		restart_host(1 + (m - 1) % (NHOSTS - 1));
		idle_ms(t + 60000 - now_ms());
		quiet_sample(&samples[m]);
		print_minute(m, &samples[m]);
	}

	/* The end: no new work, wait for what runs, then the checks. */
	atomic_store(&stop_flag, true);
	for (int i = 0; i < nclients; i++)
		pthread_join(cl[i], NULL);
	end = now_ms() + 120000;
	while (now_ms() < end &&
	       (running = sql_long("SELECT count(*) FROM exec_audit WHERE status = 'running'")) !=
	           0)
		idle_ms(1000);
	end = now_ms() + 60000;
	while (now_ms() < end &&
	       (pending = sql_long("SELECT count(*) FROM exec_audit WHERE seal_pending")) != 0)
		idle_ms(500);
	idle_ms(2000);
	take_sample(&fin);
	{
		const char *args[] = {"audit", "verify", NULL};
		verify_ok = kit_cli(W.db, args, &verify, &vst) == 0 && verify != NULL &&
		            strncmp(verify, "ok", 2) == 0;
	}
	not_cancelled = cancels_not_cancelled();
	stop_ok = kit_broker_stop(&B) == 0;

	/* The verdict. */
	last = minutes;
	for (int m = minutes > 3 ? minutes - 2 : 2; m <= last; m++) {
		if (samples[m].rss_kib > maxrss)
			maxrss = samples[m].rss_kib;
		if (base_fds(&samples[m]) > maxfds)
			maxfds = base_fds(&samples[m]);
	}
	if (minutes < 2) {
		maxrss = fin.rss_kib;
		maxfds = base_fds(&fin);
	}
	rss_ok = samples[1].rss_kib > 0 && maxrss <= samples[1].rss_kib * 105 / 100;
	fds_ok = base_fds(&samples[1]) > 0 && maxfds <= base_fds(&samples[1]) * 105 / 100;
	printf("\nsoak: totals:");
	for (int k = 0; k < K_NKINDS; k++)
		printf(" %s %ld", kind_names[k], done_all[k]);
	printf("\nsoak: outcomes other than success (explained / unexplained):");
	for (size_t i = 0; i < codes_all.n; i++)
		printf(" %s %ld/%ld", codes_all.v[i].code, codes_all.v[i].explained,
		       codes_all.v[i].unexplained);
	printf("\nsoak: after the load: rss %ld KiB fds %ld (sessions %ld) db %ld running %ld, "
	       "seal pending %ld\n",
	       fin.rss_kib, fin.fds, fin.sessions, fin.db_conns, running, pending);
	printf("soak: verdict\n");
	printf("  %-4s rss: minute 1 %ld KiB, max of the last minutes %ld KiB (%+.1f%%, limit "
	       "+5%%)\n",
	       rss_ok ? "ok" : "FAIL", samples[1].rss_kib, maxrss,
	       samples[1].rss_kib > 0 ? 100.0 * (maxrss - samples[1].rss_kib) / samples[1].rss_kib
	                              : 0.0);
	printf("  %-4s open fds other than pooled sessions: minute 1 %ld, max of the last minutes "
	       "%ld (limit +5%%)\n",
	       fds_ok ? "ok" : "FAIL", base_fds(&samples[1]), maxfds);
	printf("  %-4s unexplained errors: %ld\n", unexplained_total == 0 ? "ok" : "FAIL",
	       unexplained_total);
	printf("  %-4s rows running after the load: %ld\n", running == 0 ? "ok" : "FAIL", running);
	printf("  %-4s execs cancelled by a disconnect whose row is not cancelled: %ld of %zu\n",
	       not_cancelled == 0 ? "ok" : "FAIL", not_cancelled, ncancel);
	printf("  %-4s audit verify: %s", verify_ok ? "ok" : "FAIL",
	       verify != NULL && verify[0] != '\0' ? verify : "(no output)\n");
	printf("  %-4s broker exit on SIGTERM: status %d\n", stop_ok ? "ok" : "FAIL", B.status);
	printf("  %-4s other problems: %u\n", bench_problem_count() == 0 ? "ok" : "FAIL",
	       bench_problem_count());
	bench_print_failures(NULL, 0);
	{
		bool pass = rss_ok && fds_ok && unexplained_total == 0 && running == 0 &&
		            not_cancelled == 0 && verify_ok && stop_ok &&
		            bench_problem_count() == 0;

		printf("soak: %s\n", pass ? "PASS" : "FAIL");
		free(verify);
		kit_detached_end_all();
		th_teardown();
		return pass ? 0 : 1;
	}
}
