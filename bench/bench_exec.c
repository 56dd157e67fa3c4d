/* bench/bench_exec.c: the end-to-end benchmark. It starts `exec-broker serve` on the
 * harness's PostgreSQL (a migrated database, a workspace and a token made by the CLI) and
 * sends it execs over HTTP from keep-alive connections of the test kit's client in this
 * process, their NDJSON counted by the kit's reader as it arrives, so that every
 * exec pays for the token lookup, the audit row and the NDJSON stream. Beside it, in the
 * same run and against the same sshd: the bare libssh2 floor, the pool in process, a fresh
 * ssh per exec and an OpenSSH ControlMaster. Figures: sequential latency, execs per second
 * at 32 in flight, 256 MiB of stdout (zeros, as the issue asks, and text) streamed, and the
 * broker's memory with 200 idle sessions and with 200 streaming execs. It prints figures
 * and ratios and never fails on timing: the exit status is 1 only when something did not
 * work. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <libssh2.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "common/err.h"
#include "pool/command.h"
#include "pool/pool.h"
#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"

#define DEFAULT_N           300
#define DEFAULT_PAR_N       640
#define DEFAULT_STREAM_MIB  256
#define DEFAULT_STREAM_RUNS 2
#define DEFAULT_RSS_N       200
#define DEFAULT_RSS_LINES   300000
#define DEFAULT_IDLE_N      10000
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
#define MIB            (1024.0 * 1024.0)
/* how long the idle sessions' cost on the host is measured, after how long a wait */
#define IDLE_SETTLE_MS 11000
#define IDLE_CPU_MS    20000

/* ------------------------------------------------------------------ /proc */

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal
 * of /proc/stat), or 0. */
static double machine_cpu_s(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "re");
	int n = 0;

	if (f != NULL) {
		n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		           &v[3], &v[4], &v[5], &v[6], &v[7]);
		fclose(f);
	}
	if (n != 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
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

/* A broker of the benchmark and the exec requests sent to it (one audit row each). */
struct bbroker {
	struct kit_broker k;
	unsigned long sent;
};

/* The value of metric line `name` (e.g. exec_broker_pool_sessions{state="idle"}) in the
 * broker's /metrics, or -1. A blocking request: nothing else runs meanwhile. */
static long broker_metric(const struct bbroker *b, const char *name)
{
	const struct kit_req q = {.method = "GET", .path = "/metrics", .rid = "", .max_time_s = 5};
	struct kit_resp r;
	long v = -1;

	if (kit_http(b->k.port, &q, &r) == 0 && r.complete && r.status == 200)
		v = (long)kit_metric(r.body, name);
	kit_resp_free(&r);
	return v;
}

/* ------------------------------------------------------------------ execs over HTTP */

/* What the execs of one run post, and what each must print. */
struct http_exec {
	const char *const *ws; /* workspace ids; connection i posts to ws[i % nws] */
	size_t nws;
	const char *token;
	const char *body;       /* the JSON request */
	uint64_t expect_stdout; /* bytes the command writes to stdout */
};

struct hrun;

/* One keep-alive connection of a run (the kit's client) and the exec in flight on it, its
 * NDJSON counted as it arrives (the kit's reader in counting mode). */
struct hconn {
	struct hrun *run;
	size_t idx;
	struct kit_conn conn;
	struct kit_frames f;
	bool busy;    /* an exec in flight */
	bool started; /* its first frame came */
	uint64_t t0;
	char err_body[300]; /* the start of a body that is not 200's NDJSON */
	size_t err_len;
};

/* Execs over HTTP, as pool_run is for the pool. */
struct hrun {
	struct bbroker *broker;
	const struct http_exec *x;
	struct series *out;
	size_t total, launched, finished, started;
	bool stop;
	struct hconn *c;
	struct kit_conn **pc; /* &c[i].conn, for kit_conn_poll() */
	size_t nconns;
	/* ramp > 0: at most ramp execs in flight whose first frame has not come yet; the
	 * call's other connections join as execs start. */
	size_t ramp, conc, opened, unstarted;
	uint64_t stdout_bytes; /* decoded stdout, in all */
	/* release(arg) runs once per call, when `barrier` execs have sent their first frame
	 * or as soon as one ends before that (so that a failure cannot leave the rest
	 * waiting). */
	size_t barrier;
	void (*release)(void *arg);
	void *release_arg;
	bool released;
	/* tick(arg) runs every tick_ms (if set) while the execs run. */
	void (*tick)(void *arg);
	void *tick_arg;
	int tick_ms;
};

static void hconn_launch(struct hconn *c);
static void hrun_widen(struct hrun *r);

static void hrun_release(struct hrun *r)
{
	if (r->release != NULL && !r->released) {
		r->released = true;
		r->release(r->release_arg);
	}
}

/* Raw bytes received over all of the run's connections. */
static uint64_t hrun_recv_bytes(const struct hrun *r)
{
	uint64_t n = 0;

	for (size_t i = 0; i < r->nconns; i++)
		n += r->c[i].conn.recv_bytes;
	return n;
}

static void hconn_body(void *arg, const char *p, size_t n)
{
	struct hconn *c = arg;

	if (c->conn.r.status == 200) {
		kit_frames_feed(&c->f, p, n);
		return;
	}
	if (c->err_len + 1 < sizeof(c->err_body)) {
		size_t k = sizeof(c->err_body) - 1 - c->err_len;
		memcpy(c->err_body + c->err_len, p, n < k ? n : k);
		c->err_len += n < k ? n : k;
		c->err_body[c->err_len] = '\0';
	}
}

/* Whether the response was a whole, successful exec: "" or why not, into why. */
static void hconn_check(const struct hconn *c, char *why, size_t len)
{
	const struct kit_resp *r = &c->conn.r;
	const struct kit_frames *f = &c->f;
	json_t *first = kit_frame(f, 0), *last = f->last_terminal, *v;
	uint64_t claimed;

	why[0] = '\0';
	if (!r->complete)
		snprintf(why, len, "%s (after %zu frames and %zu stdout bytes)", r->error, f->n,
		         f->out_len);
	else if (r->status != 200)
		snprintf(why, len, "HTTP %d: %s", r->status, c->err_body);
	else if (f->bad > 0)
		snprintf(why, len, "a frame that is not a JSON object: %s", f->bad_line);
	else if (f->part_len != 0)
		snprintf(why, len, "the body ends inside a line");
	else if (first == NULL || !json_is_string(json_object_get(first, "exec_id")))
		snprintf(why, len, "the first frame has no exec_id");
	else if (f->terminal != 1 || f->terminal_at != (int)f->n - 1)
		snprintf(why, len, "%d last frames, the last at %d of %zu", f->terminal,
		         f->terminal_at, f->n);
	else if (!json_is_integer(v = json_object_get(last, "exit_code")))
		snprintf(
		    why, len, "last frame without an exit code (error %s)",
		    json_string_value(json_object_get(json_object_get(last, "error"), "code")));
	else if (json_integer_value(v) != 0)
		snprintf(why, len, "exit code %lld", (long long)json_integer_value(v));
	else if (f->out_trunc + f->err_trunc > 0)
		snprintf(why, len, "the output was truncated");
	else if (kit_nframes(f) != 2)
		snprintf(why, len, "%zu frames that are neither output nor first or last",
		         kit_nframes(f) - 2);
	else if ((claimed = (uint64_t)json_integer_value(json_object_get(last, "stdout_bytes"))) !=
	             f->out_len ||
	         f->out_len != c->run->x->expect_stdout)
		snprintf(why, len,
		         "stdout: %zu bytes in the frames, %llu in the last frame, the command "
		         "writes %llu",
		         f->out_len, (unsigned long long)claimed,
		         (unsigned long long)c->run->x->expect_stdout);
}

/* The exec's first frame came. */
static void hconn_started(struct hconn *c)
{
	struct hrun *r = c->run;

	c->started = true;
	r->started++;
	r->unstarted--;
	if (r->barrier > 0 && r->started == r->barrier)
		hrun_release(r);
	hrun_widen(r);
}

/* The response is over (or broken): count it, then send the next request on this
 * connection if there is one to send. */
static void hconn_done(struct hconn *c)
{
	struct hrun *r = c->run;
	char why[512];

	hconn_check(c, why, sizeof(why));
	c->busy = false;
	if (why[0] != '\0') {
		series_fail(r->out, "%s", why);
		kit_conn_close(&c->conn);
		r->stop = true;
	} else {
		series_add(r->out, bench_ms_since(c->t0));
		r->stdout_bytes += c->f.out_len;
	}
	r->finished++;
	if (!c->started)
		r->unstarted--;
	if (r->barrier > 0 && r->started < r->barrier)
		hrun_release(r);
	if (!r->stop && r->launched < r->total)
		hconn_launch(c);
	hrun_widen(r);
}

static void hconn_launch(struct hconn *c)
{
	struct hrun *r = c->run;
	const struct http_exec *x = r->x;
	const struct kit_req q = {.ws = x->ws[c->idx % x->nws],
	                          .token = x->token,
	                          .body = x->body,
	                          .accept = "application/x-ndjson",
	                          .rid = "",
	                          .max_time_s = -1};

	r->launched++;
	r->unstarted++;
	kit_frames_free(&c->f);
	kit_frames_init_counting(&c->f);
	c->err_len = 0;
	c->err_body[0] = '\0';
	c->started = false;
	c->busy = true;
	c->t0 = kit_now_ns();
	if (kit_conn_send(&c->conn, &q) != 0) {
		hconn_done(c);
		return;
	}
	r->broker->sent++;
}

/* A ramped run: more connections join while few execs are starting. */
static void hrun_widen(struct hrun *r)
{
	while (r->ramp > 0 && !r->stop && r->opened < r->conc && r->launched < r->total &&
	       r->unstarted < r->ramp)
		hconn_launch(&r->c[r->opened++]);
}

static int hrun_init(struct hrun *r, struct bbroker *b, size_t nconns)
{
	memset(r, 0, sizeof(*r));
	r->broker = b;
	r->c = calloc(nconns, sizeof(*r->c));
	r->pc = calloc(nconns, sizeof(*r->pc));
	if (r->c == NULL || r->pc == NULL) {
		free(r->c);
		free(r->pc);
		return EB_ERR_NOMEM;
	}
	r->nconns = nconns;
	for (size_t i = 0; i < nconns; i++) {
		struct hconn *c = &r->c[i];
		c->run = r;
		c->idx = i;
		kit_conn_init(&c->conn, b->k.port);
		c->conn.discard_body = true;
		c->conn.on_body = hconn_body;
		c->conn.arg = c;
		kit_frames_init_counting(&c->f);
		r->pc[i] = &c->conn;
	}
	return 0;
}

static void hrun_free(struct hrun *r)
{
	for (size_t i = 0; i < r->nconns; i++) {
		kit_conn_free(&r->c[i].conn);
		kit_frames_free(&r->c[i].f);
	}
	free(r->c);
	free(r->pc);
	r->c = NULL;
	r->pc = NULL;
	r->nconns = 0;
}

/* Runs total execs of x over HTTP, concurrency of them in flight at all times (at most
 * the run's connections), timing each from sending the request to the end of the
 * response; an exec counts only if its stream is whole and its last frame says exit code
 * 0. */
static void hrun_execs(struct hrun *r, const struct http_exec *x, struct series *out, size_t total,
                       size_t concurrency)
{
	long long deadline = kit_now_ms() + BENCH_PHASE_TIMEOUT_S * 1000LL, next_tick = 0;
	uint64_t t0;

	if (out->failures > 0)
		return;
	if (concurrency > r->nconns)
		concurrency = r->nconns;
	r->x = x;
	r->out = out;
	r->total = total;
	r->launched = r->finished = r->started = r->opened = r->unstarted = 0;
	r->conc = concurrency;
	r->stop = r->released = false;
	t0 = kit_now_ns();
	while (r->opened < concurrency && r->opened < total &&
	       (r->ramp == 0 || r->opened < r->ramp))
		hconn_launch(&r->c[r->opened++]);
	while (r->finished < r->launched) {
		long long now = kit_now_ms();
		if (now > deadline) {
			r->stop = true;
			series_fail(out, "the execs did not end within %d s",
			            BENCH_PHASE_TIMEOUT_S);
			for (size_t i = 0; i < r->nconns; i++)
				if (r->c[i].busy) {
					r->c[i].busy = false;
					kit_conn_close(&r->c[i].conn);
				}
			hrun_release(r);
			break;
		}
		if (r->tick != NULL && now >= next_tick) {
			r->tick(r->tick_arg);
			next_tick = now + r->tick_ms;
		}
		if (kit_conn_poll(r->pc, r->nconns, r->tick != NULL ? r->tick_ms : 1000) < 0) {
			series_fail(out, "poll: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < r->nconns; i++) {
			struct hconn *c = &r->c[i];
			if (c->busy && !c->started && c->f.n > 0)
				hconn_started(c);
			if (c->busy && c->conn.state == KIT_CONN_DONE)
				hconn_done(c);
		}
	}
	out->wall_s += bench_ms_since(t0) / 1000;
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

	g->opened_ns = kit_now_ns();
	if (g->broker > 0)
		g->rss_at_open = kit_proc_status_kib(g->broker, "VmRSS");
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

enum way {
	WAY_FLOOR,
	WAY_FLOOR_EXEC,
	WAY_POOL,
	WAY_FLOOR_WRAPPED,
	WAY_HTTP,
	WAY_MASTER,
	WAY_FRESH,
	WAY_COUNT
};
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
	char *wrapped;            /* the command string the pool sends for `true` */
	struct local_watch watch; /* the watcher wrapped registers with */
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
	struct bbroker main_b, stream_b, rss_b;
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

	/* CPU seconds over the sequential execs of each way: the sshd's whole tree (sshd, the
	 * shells and commands, the watchers) and, for the HTTP way, the broker. */
	double host_cpu[WAY_COUNT], broker_cpu;
	double par_cpu[PAR_COUNT]; /* the machine's CPU seconds during each parallel way */
	double idle_host_cpu_s;    /* per second, the sessions open and idle (their watchers) */
	long idle_sessions;        /* sessions open with a watcher meanwhile */

	/* idle keep-alive HTTP connections held by another broker */
	size_t idle_n, idle_open, idle_alive;
	long idle_rss_start, idle_rss;
	char idle_failure[200];
};

static const char *const ws_main[] = {"ws-bench"};

static void way_run(struct bench *b, enum way w, size_t n)
{
	struct series *s = &b->seq[w];
	long before = bench_sshd_logins();

	double host0 = kit_proc_tree_cpu_s(th.sshd.pid), broker0 = kit_proc_cpu_s(b->main_b.k.pid);

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
	case WAY_FLOOR_EXEC:
		floor_run(&b->fl, s, "exec true", n);
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
	b->host_cpu[w] += kit_proc_tree_cpu_s(th.sshd.pid) - host0;
	if (w == WAY_HTTP)
		b->broker_cpu += kit_proc_cpu_s(b->main_b.k.pid) - broker0;
}

static int add_ws(const char *db, const char *id, const char *org, const struct th_sshd *s)
{
	const struct kit_ws ws = {
	    .id = id, .org = org, .port = s->port, .host_key_fp = s->host_key_fp};

	return kit_ws_add(db, &ws);
}

/* The database (migrated by the CLI), ws-bench on th.sshd with a workspace token, and for
 * the memory phase RSS_SSHDS workspaces on as many sshds with an org token. */
static int bench_world(struct bench *b)
{
	static const char *const t_ws[] = {"token", "create", "--workspace", "ws-bench", NULL};
	static const char *const t_rss[] = {"token", "create", "--org", "rss", NULL};
	static const char *const names[RSS_SSHDS] = {"ws-rss0", "ws-rss1", "ws-rss2", "ws-rss3"};

	if (kit_db_migrated(b->db, sizeof(b->db)) != 0 ||
	    add_ws(b->db, "ws-bench", "bench", &th.sshd) != 0 ||
	    kit_cli_token(b->db, t_ws, b->tok_ws, sizeof(b->tok_ws)) != 0)
		return -1;
	for (int i = 0; i < RSS_SSHDS; i++) {
		const struct th_sshd *s = i == 0 ? &th.sshd : &b->rss_sshd[i - 1];
		if (i > 0 && th_sshd_start(&b->rss_sshd[i - 1], NULL) != 0)
			return -1;
		b->rss_ws[i] = names[i];
		if (add_ws(b->db, names[i], "rss", s) != 0)
			return -1;
	}
	return kit_cli_token(b->db, t_rss, b->tok_rss, sizeof(b->tok_rss));
}

/* Opens the floor session, warms the pool, starts the master and the main broker, and
 * sends the broker its first exec (which pays the SSH handshake). */
static int bench_connect(struct bench *b)
{
	char err[256];

	if (floor_open(&b->fl, err, sizeof(err)) != 0) {
		series_fail(&b->seq[WAY_FLOOR], "floor session: %s", err);
		series_fail(&b->seq[WAY_FLOOR_WRAPPED], "floor session: %s", err);
		series_fail(&b->seq[WAY_FLOOR_EXEC], "floor session: %s", err);
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

	if (bench_broker_start(&b->main_b.k, b->db, "main", NULL) != 0 ||
	    hrun_init(&b->main_h, &b->main_b, BENCH_CONCURRENCY) != 0)
		return -1;
	hrun_execs(&b->main_h, &b->x_true, &b->http_first, 1, 1);
	if (!series_ok(&b->http_first))
		series_fail(&b->seq[WAY_HTTP], "first exec: %s", b->http_first.first_failure);
	return 0;
}

static void bench_sequential(struct bench *b)
{
	double host0;

	for (size_t done = 0; done < b->n; done += BENCH_BLOCK) {
		size_t k = b->n - done < BENCH_BLOCK ? b->n - done : BENCH_BLOCK;
		for (enum way w = 0; w < WAY_COUNT; w++)
			way_run(b, w, k);
	}
	/* What the pooled sessions cost the host while nothing runs: their watchers (the
	 * floor's session and the ControlMaster have none). */
	b->idle_sessions = broker_metric(&b->main_b, "exec_broker_pool_sessions{state=\"idle\"}");
	if (b->idle_sessions >= 0 && b->run.p != NULL)
		b->idle_sessions += 1; /* the in-process pool's one session */
	kit_sleep_ms(IDLE_SETTLE_MS);  /* their clocks slow down 10 s after the last command */
	host0 = kit_proc_tree_cpu_s(th.sshd.pid);
	kit_sleep_ms(IDLE_CPU_MS);
	b->idle_host_cpu_s = (kit_proc_tree_cpu_s(th.sshd.pid) - host0) / (IDLE_CPU_MS / 1000.0);
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
		double c0 = machine_cpu_s();
		pool_run_execs(&b->run, &b->par[PAR_POOL], k, BENCH_CONCURRENCY);
		double c1 = machine_cpu_s();
		hrun_execs(&b->main_h, &b->x_true, &b->par[PAR_HTTP], k, BENCH_CONCURRENCY);
		double c2 = machine_cpu_s();
		if (b->par[PAR_MASTER].failures == 0)
			ssh_run_parallel(b->mux.v, &b->par[PAR_MASTER], k, BENCH_CONCURRENCY);
		b->par_cpu[PAR_POOL] += c1 - c0;
		b->par_cpu[PAR_HTTP] += c2 - c1;
		b->par_cpu[PAR_MASTER] += machine_cpu_s() - c2;
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
		t0 = kit_now_ns();
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
	cpu_b = kit_proc_cpu_s(b->stream_b.k.pid);
	cpu_c = self_cpu_s();
	t0 = hrun_recv_bytes(h);
	hrun_execs(h, &c->x, &c->s[STREAM_HTTP], 1, 1);
	c->cpu_broker += kit_proc_cpu_s(b->stream_b.k.pid) - cpu_b;
	c->cpu_client += self_cpu_s() - cpu_c;
	c->recv += hrun_recv_bytes(h) - t0;
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
	if (bench_broker_start(&b->stream_b.k, b->db, "stream", extra) != 0 ||
	    hrun_init(&h, &b->stream_b, 1) != 0) {
		for (enum skind k = 0; k < KIND_COUNT; k++)
			series_fail(&b->sc[k].s[STREAM_HTTP], "no broker");
		h.c = NULL;
	}
	for (size_t i = 0; i < b->stream_runs; i++)
		for (enum skind k = 0; k < KIND_COUNT; k++)
			stream_turn(b, &b->sc[k], &h);
	if (h.c != NULL)
		hrun_free(&h);
	bench_broker_stop(&b->stream_b.k);
}

static void rss_sample(void *arg)
{
	struct bench *b = arg;
	long v = kit_proc_status_kib(b->rss_b.k.pid, "VmRSS");

	if (v > b->rss_stream_max)
		b->rss_stream_max = v;
}

/* Another broker, whose pool keeps one exec per session and up to rss_n / RSS_SSHDS
 * sessions per host: rss_n execs waiting at a gate open rss_n sessions, which then sit
 * idle; then rss_n execs stream `seq` output at once to clients that read it all. */
static void bench_memory(struct bench *b)
{
	struct gate g = {.fd = -1};
	char extra[256];
	struct hrun h = {0};
	uint64_t recv;

	snprintf(extra, sizeof(extra),
	         "pool_max_channels_per_session = 1\npool_max_sessions_per_host = %zu\n"
	         "pool_connect_timeout_s = 60\norg_max_concurrent_execs = %zu\n"
	         "output_cap_bytes = %d\n",
	         (b->rss_n + RSS_SSHDS - 1) / RSS_SSHDS, b->rss_n, INT_MAX);
	if (bench_broker_start(&b->rss_b.k, b->db, "rss", extra) != 0 ||
	    hrun_init(&h, &b->rss_b, b->rss_n) != 0) {
		series_fail(&b->rss_open, "no broker");
		series_fail(&b->rss_stream, "no broker");
		goto out;
	}
	b->rss_start = kit_proc_status_kib(b->rss_b.k.pid, "VmRSS");
	if (gate_init(&g, "gate") != 0) {
		series_fail(&b->rss_open, "cannot make the FIFO %s: %s", g.path, strerror(errno));
		series_fail(&b->rss_stream, "no FIFO");
		goto out;
	}
	g.n = b->rss_n;
	g.broker = b->rss_b.k.pid;
	h.barrier = b->rss_n;
	h.ramp = RSS_RAMP;
	h.release = gate_open;
	h.release_arg = &g;
	hrun_execs(&h, &b->x_idle, &b->rss_open, b->rss_n, b->rss_n);
	b->rss_waiting = g.rss_at_open;
	/* Let the broker reclaim the finished jobs before looking. */
	kit_sleep_ms(500);
	b->rss_idle = kit_proc_status_kib(b->rss_b.k.pid, "VmRSS");
	b->rss_idle_hwm = kit_proc_status_kib(b->rss_b.k.pid, "VmHWM");
	b->rss_idle_sessions =
	    broker_metric(&b->rss_b, "exec_broker_pool_sessions{state=\"idle\"}");
	if (series_ok(&b->rss_open) && b->rss_idle_sessions != (long)b->rss_n)
		series_fail(&b->rss_open, "the broker has %ld idle sessions, not %zu",
		            b->rss_idle_sessions, b->rss_n);
	if (!series_ok(&b->rss_open)) {
		series_fail(&b->rss_stream, "the sessions were not opened");
		goto out;
	}

	b->rss_hwm_reset = proc_reset_hwm(b->rss_b.k.pid) == 0;
	b->rss_stream_max = kit_proc_status_kib(b->rss_b.k.pid, "VmRSS");
	h.tick = rss_sample;
	h.tick_arg = b;
	h.tick_ms = RSS_SAMPLE_MS;
	recv = hrun_recv_bytes(&h);
	hrun_execs(&h, &b->x_seq, &b->rss_stream, b->rss_n, b->rss_n);
	b->rss_stream_s = (double)(kit_now_ns() - g.opened_ns) / 1e9;
	b->rss_stream_hwm = kit_proc_status_kib(b->rss_b.k.pid, "VmHWM");
	b->rss_stream_recv = hrun_recv_bytes(&h) - recv;
out:
	hrun_free(&h);
	gate_free(&g);
	bench_broker_stop(&b->rss_b.k);
}

/* One GET /healthz on fd and its whole response (Content-Length framed), blocking: 0 when
 * it came back 200 and the connection stays open. */
static int idle_roundtrip(int fd)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
	char buf[2048], *end, *cl;
	size_t got = 0;
	ssize_t n;

	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		return -1;
	for (;;) {
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end == NULL) {
			if (got == sizeof(buf) - 1)
				return -1;
			continue;
		}
		cl = strcasestr(buf, "\r\nContent-Length:");
		if (cl == NULL || cl > end)
			return -1;
		if (got >= (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10))
			return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
	}
}

/* Another broker holds idle_n keep-alive connections, each having made one request: its
 * RSS before and after, and whether they are all still served. */
static void bench_idle_conns(struct bench *b)
{
	struct kit_broker k = {0};
	int *fds = malloc(b->idle_n * sizeof(*fds));
	struct rlimit rl;

	if (fds == NULL) {
		snprintf(b->idle_failure, sizeof(b->idle_failure), "out of memory");
		return;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < b->idle_n + 256) {
		snprintf(b->idle_failure, sizeof(b->idle_failure),
		         "RLIMIT_NOFILE %llu is too low for %zu connections",
		         (unsigned long long)rl.rlim_cur, b->idle_n);
		bench_problem("idle connections: %s", b->idle_failure);
		free(fds);
		return;
	}
	if (bench_broker_start(&k, b->db, "idle", "http_idle_timeout_s = 600\n") != 0) {
		snprintf(b->idle_failure, sizeof(b->idle_failure), "the broker did not start");
		bench_problem("idle connections: %s", b->idle_failure);
		free(fds);
		return;
	}
	b->idle_rss_start = kit_proc_status_kib(k.pid, "VmRSS");
	for (b->idle_open = 0; b->idle_open < b->idle_n; b->idle_open++) {
		int fd = kit_connect(k.port, 0);
		const struct timeval tmo = {.tv_sec = 10};
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
		if (fd < 0 || idle_roundtrip(fd) != 0) {
			snprintf(b->idle_failure, sizeof(b->idle_failure), "connection %zu: %s",
			         b->idle_open + 1,
			         fd < 0 ? "connect failed" : "no 200 to GET /healthz");
			if (fd >= 0)
				close(fd);
			break;
		}
		fds[b->idle_open] = fd;
	}
	if (b->idle_failure[0] != '\0')
		bench_problem("idle connections: %s", b->idle_failure);
	kit_sleep_ms(1000);
	b->idle_rss = kit_proc_status_kib(k.pid, "VmRSS");
	/* Every one of them is still open and served. */
	for (size_t i = 0; i < b->idle_open; i++)
		b->idle_alive += idle_roundtrip(fds[i]) == 0;
	if (b->idle_alive != b->idle_open)
		bench_problem("idle connections: %zu of %zu were not served a second time",
		              b->idle_open - b->idle_alive, b->idle_open);
	for (size_t i = 0; i < b->idle_open; i++)
		close(fds[i]);
	free(fds);
	bench_broker_stop(&k);
}

/* Every exec sent leaves one row, final and 'exited' (each exec was checked to exit 0). */
static void bench_audit(struct bench *b)
{
	static const char sql[] =
	    "SELECT broker_instance, count(*), count(*) FILTER (WHERE status = 'exited') "
	    "FROM exec_audit GROUP BY broker_instance";
	struct bbroker *brokers[3] = {&b->main_b, &b->stream_b, &b->rss_b};
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
			if (strcmp(PQgetvalue(res, i, 0), brokers[k]->k.instance) == 0) {
				b->audit_rows[k] = atol(PQgetvalue(res, i, 1));
				b->audit_exited[k] = atol(PQgetvalue(res, i, 2));
			}
	b->audit_checked = true;
	for (int k = 0; k < 3; k++)
		if (b->audit_rows[k] != (long)brokers[k]->sent ||
		    b->audit_exited[k] != (long)brokers[k]->sent)
			bench_problem("audit rows of %s: %ld, %ld of them exited, for %lu requests",
			              brokers[k]->k.instance, b->audit_rows[k], b->audit_exited[k],
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

static void print_throughput(struct series *s, double cpu_s)
{
	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	printf("  %-42s %8.0f %8.2f %8.2f %7.2fs %8.2f\n", s->name, series_per_s(s),
	       series_pct(s, 0.50), series_pct(s, 0.99), s->wall_s,
	       s->n > 0 ? 1000 * cpu_s / (double)s->n : 0);
}

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
	       "harness's PostgreSQL\n  (Unix socket; fsync, full page writes and synchronous "
	       "commit on, as in production);\n  each exec: POST with a workspace token, NDJSON "
	       "response, one audit row; client: HTTP/1.1\n  keep-alive in this process, each "
	       "stream checked\n",
	       b->main_b.k.port);

	snprintf(title, sizeof(title), "sequential execs of `true`, N=%zu each", b->n);
	printf("\n%-44s %8s %8s %9s %9s\n", title, "p50 ms", "p99 ms", "p50/floor", "p99/floor");
	for (enum way w = 0; w < WAY_COUNT; w++)
		bench_print_row(&b->seq[w], &b->seq[WAY_FLOOR]);
	printf("(the ways took turns, %d execs each, so that outside load fell on all alike; the "
	       "pool and\n  HTTP rows send the pool's command, which registers with the "
	       "session's watcher:\n  %s)\n",
	       BENCH_BLOCK, b->wrapped);
	if (series_ok(&b->http_first))
		printf("HTTP: the first exec (not in the table) took %.2f ms with the broker's SSH "
		       "handshake;\n  sshd logins during the sequential HTTP execs: %ld (fresh "
		       "ssh: %ld)\n",
		       b->http_first.ms[0], b->seq[WAY_HTTP].logins, b->seq[WAY_FRESH].logins);
	printf("\n");
	print_p50_ratio("end-to-end p50 / floor p50", &b->seq[WAY_HTTP], &b->seq[WAY_FLOOR],
	                "<= 1.3", true, 1.3);
	ok = series_ok(&b->seq[WAY_HTTP]) && series_ok(&b->seq[WAY_FLOOR]);
	r = ok ? series_pct(&b->seq[WAY_HTTP], 0.99) / series_pct(&b->seq[WAY_FLOOR], 0.99) : 0;
	bench_print_target("end-to-end p99 / floor p99", ok, r, "<= 1.5", r <= 1.5);
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
	printf("\n%-44s %8s\n", "CPU per sequential exec on the host", "ms");
	for (enum way w = 0; w < WAY_COUNT; w++)
		if (series_ok(&b->seq[w]) && b->seq[w].n > 0)
			printf("  %-42s %8.2f\n", b->seq[w].name,
			       1000 * b->host_cpu[w] / (double)b->seq[w].n);
	printf("(the sshd's whole process tree from /proc: sshd, the shells, the commands, the "
	       "watchers,\n  the children they reaped; the floor's session has no watcher)\n");
	if (series_ok(&b->seq[WAY_HTTP]) && b->seq[WAY_HTTP].n > 0)
		printf("CPU ms per exec in the broker: %.3f\n",
		       1000 * b->broker_cpu / (double)b->seq[WAY_HTTP].n);
	if (b->idle_sessions > 0)
		printf("host CPU while %ld pooled sessions sit idle (their watchers): %.2f ms per "
		       "second\n",
		       b->idle_sessions, 1000 * b->idle_host_cpu_s);

	snprintf(title, sizeof(title), "%zu execs of `true`, %d in flight", b->par_n,
	         BENCH_CONCURRENCY);
	printf("\n%-44s %8s %8s %8s %8s %8s\n", title, "execs/s", "p50 ms", "p99 ms", "wall",
	       "CPU ms");
	for (enum pway w = 0; w < PAR_COUNT; w++)
		print_throughput(&b->par[w], b->par_cpu[w]);
	printf("(CPU ms: the whole machine's CPU time per exec while the way ran, from /proc/stat: "
	       "sshd,\n  PostgreSQL, the broker, this client; with %ld CPUs busy, execs/s is about "
	       "%ld000 / CPU ms)\n",
	       sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_ONLN));
	ok = series_ok(&b->par[PAR_HTTP]) && series_ok(&b->par[PAR_POOL]);
	r = ok ? series_per_s(&b->par[PAR_HTTP]) / series_per_s(&b->par[PAR_POOL]) : 0;
	bench_print_target("end-to-end execs/s / in-process pool execs/s", ok, r, ">= 0.9",
	                   r >= 0.9);
	ok = series_ok(&b->par[PAR_HTTP]) && series_ok(&b->par[PAR_MASTER]);
	r = ok ? series_per_s(&b->par[PAR_HTTP]) / series_per_s(&b->par[PAR_MASTER]) : 0;
	bench_print_target("end-to-end execs/s / ControlMaster execs/s", ok, r, ">= 2", r >= 2);
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
	bench_print_target("end-to-end MB/s / floor MB/s (text)", ok, r, ">= 0.9", r >= 0.9);
	for (enum skind k = 0; k < KIND_COUNT; k++) {
		const struct stream_case *c = &b->sc[k];
		if (series_ok(&c->s[STREAM_HTTP]))
			printf("(%s over HTTP: %.2f bytes received per output byte; CPU seconds: "
			       "broker %.2f, this client %.2f)\n",
			       c->label, (double)c->recv / (double)c->bytes[STREAM_HTTP],
			       c->cpu_broker, c->cpu_client);
	}
	printf("(the streaming broker has output_cap_bytes raised; a chunk goes as base64 when "
	       "that is\n  shorter than its escaped JSON text: a NUL is \\u0000 in a JSON "
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
	ok = b->rss_stream_hwm > 0 && b->rss_start > 0 && series_ok(&b->rss_stream);
	r = ok ? (double)(b->rss_stream_hwm - b->rss_start) / (double)b->rss_n : 0;
	bench_print_target("KiB of broker RSS per streaming exec (peak - at start, its session "
	                   "included)",
	                   ok, r, "<= 512", r <= 512);
	if (ok && b->rss_idle > 0)
		printf("(of which the idle session: %.0f KiB each: RSS with the idle sessions - at "
		       "start, / %zu)\n",
		       (double)(b->rss_idle - b->rss_start) / (double)b->rss_n, b->rss_n);
	if (series_ok(&b->rss_stream))
		printf("(streaming: each exec `seq 1 %zu` (%.1f MB) behind a gate that opened once "
		       "all %zu had\n  started; from then %.0f MB received in %.2f s)\n",
		       b->rss_lines, (double)seq_bytes(b->rss_lines) / 1e6, b->rss_n,
		       (double)b->rss_stream_recv / 1e6, b->rss_stream_s);

	printf("\nidle keep-alive HTTP connections, another broker (http_idle_timeout_s 600): "
	       "%zu opened,\n  each after one GET /healthz; %zu still served a second request "
	       "after all were open\n",
	       b->idle_open, b->idle_alive);
	print_mib("RSS when started", b->idle_rss_start);
	snprintf(title, sizeof(title), "RSS holding %zu idle connections", b->idle_open);
	print_mib(title, b->idle_rss);
	ok = b->idle_open == b->idle_n && b->idle_alive == b->idle_open && b->idle_rss > 0;
	r = ok ? (double)b->idle_rss / 1024 : 0;
	snprintf(title, sizeof(title), "MiB of broker RSS with %zu idle connections", b->idle_n);
	bench_print_target(title, ok, r, "<= 200", r <= 200);
	if (ok && b->idle_n > 0)
		printf("(%.1f KiB per connection over the RSS at start)\n",
		       (double)(b->idle_rss - b->idle_rss_start) / (double)b->idle_n);

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
	    [WAY_FLOOR_EXEC] = "floor running `exec true` (/bin/true)",
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
	local_watch_stop(&b->watch);
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
	if (local_watch_start(&b->watch, err, sizeof(err)) != 0 ||
	    bench_wrapped(&b->spec_true, b->watch.fifo, &b->wrapped) != 0) {
		fprintf(stderr, "bench_exec: the wrapped command: %s\n", err);
		return -1;
	}

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
	uint64_t t_start = kit_now_ns();
	int rc;

	b.n = bench_env_count("BENCH_N", DEFAULT_N);
	b.par_n = bench_env_count("BENCH_PAR_N", DEFAULT_PAR_N);
	b.stream_bytes = (uint64_t)bench_env_count("BENCH_STREAM_MIB", DEFAULT_STREAM_MIB) << 20;
	b.stream_runs = bench_env_count("BENCH_STREAM_RUNS", DEFAULT_STREAM_RUNS);
	b.rss_n = bench_env_count("BENCH_RSS_N", DEFAULT_RSS_N);
	b.rss_lines = bench_env_count("BENCH_RSS_LINES", DEFAULT_RSS_LINES);
	b.idle_n = bench_env_count("BENCH_IDLE_N", DEFAULT_IDLE_N);
	{
		/* Room for the idle connections, here and in the broker (it inherits it). */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < b.idle_n + 1024) {
			rl.rlim_cur = rl.rlim_max < b.idle_n + 1024 ? rl.rlim_max : b.idle_n + 1024;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
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

	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
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
	               kit_broker_bin());
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
	bench_broker_stop(&b.main_b.k);
	bench_progress("streaming %llu MiB of zeros and of text, %zu runs of 3 ways",
	               (unsigned long long)(b.stream_bytes >> 20), b.stream_runs);
	bench_streaming(&b);
	bench_progress("memory: %zu sessions, %zu streaming execs", b.rss_n, b.rss_n);
	bench_memory(&b);
	bench_progress("%zu idle keep-alive connections", b.idle_n);
	bench_idle_conns(&b);
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
