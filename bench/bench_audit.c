/* bench/bench_audit.c: the audit benchmark. On the harness's PostgreSQL it fills exec_audit
 * with BENCH_AUDIT_ROWS (1,000,000) chained rows by running bench/audit_gen, starts
 * `exec-broker serve`, and times filtered pages of GET /v1/audit (one workspace in the last
 * 24 hours, one actor, one status, the same with org and workspace tokens, the next page)
 * from a keep-alive connection of the test kit's client in this process, beside the EXPLAIN
 * (ANALYZE, BUFFERS) of the SQL audit_query_list() builds for the same filters. Then `exec-broker
 * audit verify` over the whole chain, and what the chain costs writers: the audit completion
 * statement alone, and execs of `true` through the broker at 32 in flight, each with the chain
 * trigger on and off in alternating turns. It prints figures and never fails on timing: the exit
 * status is 1 only when something did not work (a response that is not the page it should be, a
 * phase that broke). */
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit/filter.h"
#include "audit/query.h"
#include "audit/writer.h"
#include "bench/benchutil.h"
#include "common/err.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"

#define DEFAULT_ROWS    1000000ULL
#define MAX_ROWS        100000000ULL
#define DEFAULT_N       300 /* requests per query */
#define DEFAULT_SQL_N   100 /* runs of each query's SQL alone */
#define DEFAULT_EXEC_N  640 /* execs of each mode */
#define DEFAULT_MICRO_N 2000
#define TARGET_MS       50.0
/* The exec and micro phases alternate the modes in turns A B B A ..., so that a drift of
 * the machine's load falls on both alike. */
#define EXEC_TURNS  8
#define MICRO_TURNS 4
#define MICRO_CONNS 8
#define IO_WAIT_MS  30000
#define MAX_QUERIES 10
#define MAX_PAIRS   6
#define PAGE_LIMIT  AUDIT_LIMIT_DEFAULT

/* What the generated log looks like (bench/audit_gen.c): ws-042 of org-02 is a workspace
 * of middling traffic, org-02's token 1 an org actor. */
#define BENCH_WS    "ws-042"
#define BENCH_ORG   "org-02"
#define BENCH_ACTOR "token:ebk_org02tk1"
#define EXEC_WS     "ws-bench"

static long long wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ processes */

/* CPU seconds of the postmaster's descendants (its backends and workers), living ones
 * only: a comparison over a phase in which the broker keeps its connections. */
static double pg_cpu_s(void)
{
	struct kit_procs p = {0};
	int pm = th_pg_pid(&th.pg);
	double sum = 0;

	if (pm <= 0)
		return -1;
	kit_procs_add_tree(&p, pm, 0);
	for (size_t i = 0; i < p.n; i++) {
		double s = kit_proc_cpu_s(p.v[i].pid);
		if (s > 0)
			sum += s;
	}
	kit_procs_free(&p);
	return sum;
}

/* The generator: $EB_AUDIT_GEN, else audit_gen beside this benchmark. */
static const char *gen_bin(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("EB_AUDIT_GEN");

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "%s/audit_gen", kit_self_dir());
	return path;
}

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 16384;
		char *nb;
		while (nc < *len + n + 1)
			nc *= 2;
		nb = realloc(*buf, nc);
		if (nb == NULL)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ the queries */

/* One filtered page of GET /v1/audit as a client asks for it. */
struct query {
	const char *label;
	const char *who;   /* "admin", "org", "workspace" */
	const char *token; /* points into struct bench */
	struct audit_scope scope;
	size_t npairs;
	const char *names[MAX_PAIRS];
	const char *values[MAX_PAIRS]; /* decoded */
	char cursor[AUDIT_CURSOR_MAX]; /* page 2: the first page's next_cursor */
	char path[1024];
	struct kit_req req; /* GET path with the token, on the benchmark's keep-alive connection */
	/* The expected page, from this benchmark's own SQL: exec ids in order. */
	char cond[600];
	long long offset;
	char (*ids)[40];
	size_t nids;
	bool more;
	bool skip; /* page 2 of a single page */
	struct series s, sql;
	char sql_name[120]; /* the name of sql */
	long long responses_ok;
	/* The plan of audit_query_list()'s SQL. */
	char *plan;
	char indexes[200];
	bool seq_scan, index_scan;
	char *sql_text;
	char params_text[600];
};

/* Percent-encodes s (all but the unreserved characters) onto out. */
static void url_encode(char *out, size_t len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(out);

	for (; *s != '\0' && o + 4 < len; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}

static void query_build_request(struct query *q)
{
	snprintf(q->path, sizeof(q->path), "/v1/audit");
	for (size_t i = 0; i < q->npairs; i++) {
		strncat(q->path, i == 0 ? "?" : "&", sizeof(q->path) - strlen(q->path) - 1);
		url_encode(q->path, sizeof(q->path), q->names[i]);
		strncat(q->path, "=", sizeof(q->path) - strlen(q->path) - 1);
		url_encode(q->path, sizeof(q->path), q->values[i]);
	}
	q->req = (struct kit_req){.method = "GET",
	                          .path = q->path,
	                          .token = q->token,
	                          .accept = "application/json",
	                          .rid = "",
	                          .max_time_s = IO_WAIT_MS / 1000};
}

static void query_pair(struct query *q, const char *name, const char *value)
{
	q->names[q->npairs] = name;
	q->values[q->npairs] = value;
	q->npairs++;
}

/* The ids a page must hold, by this benchmark's own SQL (not audit_query_list's): the
 * rows under cond, newest first, from offset, limit + 1 of them. */
static int query_expect(PGconn *c, struct query *q)
{
	char sql[1024];
	PGresult *r;
	int n;

	snprintf(sql, sizeof(sql),
	         "SELECT exec_id::text FROM exec_audit WHERE %s "
	         "ORDER BY started_at DESC, exec_id DESC OFFSET %lld LIMIT %d",
	         q->cond, q->offset, PAGE_LIMIT + 1);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		bench_problem("%s: the expected page: %s", q->label, PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	n = PQntuples(r);
	q->more = n > PAGE_LIMIT;
	q->nids = (size_t)(n > PAGE_LIMIT ? PAGE_LIMIT : n);
	q->ids = calloc(q->nids + 1, sizeof(*q->ids));
	if (q->ids == NULL) {
		PQclear(r);
		return -1;
	}
	for (size_t i = 0; i < q->nids; i++)
		snprintf(q->ids[i], sizeof(q->ids[i]), "%s", PQgetvalue(r, (int)i, 0));
	PQclear(r);
	return 0;
}

static bool hex64(const char *s)
{
	if (s == NULL || strlen(s) != 64)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* Whether the response is the expected page: 200, a JSON object whose items are exactly
 * the expected rows in order, next_cursor a string exactly when more rows follow. full:
 * also the shape of every item. cursor (may be NULL) receives next_cursor. */
static int check_page(const struct query *q, const struct kit_resp *r, bool full, char *cursor,
                      char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *o = NULL, *items, *nc;
	int rc = -1;

	if (r->status != 200) {
		snprintf(err, errlen, "HTTP %d: %.300s", r->status, r->body);
		goto out;
	}
	o = json_loadb(r->body, r->body_len, 0, &jerr);
	items = json_object_get(o, "items");
	nc = json_object_get(o, "next_cursor");
	if (!json_is_object(o) || !json_is_array(items) || nc == NULL) {
		snprintf(err, errlen, "not a page {\"items\":[...],\"next_cursor\":...}: %.200s%s",
		         r->body, o == NULL ? jerr.text : "");
		goto out;
	}
	if (json_array_size(items) != q->nids) {
		snprintf(err, errlen, "%zu items, expected %zu", json_array_size(items), q->nids);
		goto out;
	}
	if (q->more != json_is_string(nc)) {
		snprintf(err, errlen, "next_cursor is %s, but %s",
		         json_is_string(nc) ? "set" : "null",
		         q->more ? "more rows follow" : "this is the last page");
		goto out;
	}
	for (size_t i = 0; i < q->nids; i++) {
		json_t *it = json_array_get(items, i);
		const char *id = json_string_value(json_object_get(it, "exec_id"));
		if (id == NULL || strcmp(id, q->ids[i]) != 0) {
			snprintf(err, errlen, "item %zu is %s, expected %s", i,
			         id ? id : "(no exec_id)", q->ids[i]);
			goto out;
		}
		if (full && (!json_is_integer(json_object_get(it, "chain_seq")) ||
		             !hex64(json_string_value(json_object_get(it, "chain_hash"))) ||
		             !json_is_array(json_object_get(it, "argv")) ||
		             !json_is_string(json_object_get(it, "started_at")) ||
		             !json_is_string(json_object_get(it, "status")) ||
		             json_object_size(it) != 30)) {
			char *s = json_dumps(it, JSON_COMPACT);
			snprintf(err, errlen, "item %zu is not a finished row's item: %.300s", i,
			         s ? s : "");
			free(s);
			goto out;
		}
	}
	if (cursor != NULL)
		snprintf(cursor, AUDIT_CURSOR_MAX, "%s",
		         json_is_string(nc) ? json_string_value(nc) : "");
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/* One timed request of q, checked. */
static void query_once(struct query *q, struct kit_conn *c)
{
	char err[512];
	uint64_t t0 = kit_now_ns();
	double ms;

	if (kit_conn_request(c, &q->req) != 0) {
		series_fail(&q->s, "%s", c->r.error);
		return;
	}
	ms = bench_ms_since(t0);
	if (check_page(q, &c->r, q->responses_ok == 0, NULL, err, sizeof(err)) != 0) {
		series_fail(&q->s, "%s", err);
		return;
	}
	q->responses_ok++;
	series_add(&q->s, ms);
}

/* The statement the broker runs for q, and its parameters, by the same functions the
 * broker uses: 0, or -1 with a problem recorded. */
static int query_sql(struct query *q, struct audit_filter *f, struct audit_query *aq)
{
	char field[64], err[256];

	audit_filter_init(f);
	if (audit_filter_parse(f, q->names, q->values, q->npairs, field, sizeof(field), err,
	                       sizeof(err)) != 0) {
		bench_problem("%s: audit_filter_parse refused %s: %s", q->label, field, err);
		return -1;
	}
	audit_query_list(aq, f, &q->scope);
	return 0;
}

/* Runs the broker's SQL alone n times from here (the database's share of a request), then
 * EXPLAIN (ANALYZE, BUFFERS) of it with the same parameters. */
static void query_plan(PGconn *c, struct query *q, size_t n)
{
	struct audit_filter f;
	struct audit_query aq;
	char *explain = NULL;
	size_t len = 0, cap = 0, pl = 0;
	PGresult *r = NULL;

	if (query_sql(q, &f, &aq) != 0)
		return;
	q->sql_text = strdup(aq.sql);
	for (int i = 0; i < aq.nparams; i++) {
		pl += (size_t)snprintf(
		    q->params_text + pl,
		    pl < sizeof(q->params_text) ? sizeof(q->params_text) - pl : 0, "%s$%d = %s",
		    i ? ", " : "", i + 1, aq.params[i] ? aq.params[i] : "NULL");
		if (pl >= sizeof(q->params_text))
			break;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t t0 = kit_now_ns();
		r = PQexecParams(c, aq.sql, aq.nparams, NULL, aq.params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			series_fail(&q->sql, "%s", PQresultErrorMessage(r));
			PQclear(r);
			break;
		}
		series_add(&q->sql, bench_ms_since(t0));
		if (i == 0 && (size_t)PQntuples(r) != q->nids + q->more)
			series_fail(&q->sql, "%d rows, expected %zu", PQntuples(r),
			            q->nids + q->more);
		PQclear(r);
	}
	if (append(&explain, &len, &cap, "EXPLAIN (ANALYZE, BUFFERS) ", 27) != 0 ||
	    append(&explain, &len, &cap, aq.sql, strlen(aq.sql)) != 0) {
		free(explain);
		return;
	}
	r = PQexecParams(c, explain, aq.nparams, NULL, aq.params, NULL, NULL, 0);
	free(explain);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		bench_problem("%s: EXPLAIN: %s", q->label, PQresultErrorMessage(r));
		PQclear(r);
		return;
	}
	len = cap = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *line = PQgetvalue(r, i, 0), *p;
		char name[96];
		append(&q->plan, &len, &cap, "    ", 4);
		append(&q->plan, &len, &cap, line, strlen(line));
		append(&q->plan, &len, &cap, "\n", 1);
		if (strstr(line, "Seq Scan") != NULL)
			q->seq_scan = true;
		if ((p = strstr(line, "Index Scan using ")) != NULL ||
		    (p = strstr(line, "Index Only Scan using ")) != NULL ||
		    (p = strstr(line, "Bitmap Index Scan on ")) != NULL) {
			q->index_scan = true;
			p = strstr(p, p[0] == 'B' ? " on " : " using ") + (p[0] == 'B' ? 4 : 7);
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(p, " "), p);
			if (strstr(q->indexes, name) == NULL &&
			    strlen(q->indexes) + strlen(name) + 2 < sizeof(q->indexes)) {
				if (q->indexes[0] != '\0')
					strcat(q->indexes, ",");
				strcat(q->indexes, name);
			}
		}
	}
	PQclear(r);
}

/* ------------------------------------------------------------------ the chain on and off */

enum mode { MODE_CHAIN, MODE_NOCHAIN, MODE_COUNT };

static const char *const mode_names[MODE_COUNT] = {"chain", "no chain"};

/* The mode of turn t: A B B A A B B A ... */
static enum mode turn_mode(int t)
{
	return ((t + 1) / 2) % 2 == 0 ? MODE_CHAIN : MODE_NOCHAIN;
}

/* ------------------------------------------------------------------ parallel runs */

/* total timed calls of one(), spread over nthreads threads; ms[i] is call i's time. */
struct prun {
	size_t total;
	atomic_size_t next;
	double *ms;
	atomic_size_t failures;
	pthread_mutex_t mu;
	char first_failure[400];
	void *ctx[BENCH_CONCURRENCY];
	/* One call: 0, or -1 with why in err; *ms its time. */
	int (*one)(void *ctx, size_t i, double *ms, char *err, size_t errlen);
};

struct pthr {
	struct prun *run;
	size_t idx;
};

static void *prun_thread(void *arg)
{
	struct pthr *t = arg;
	struct prun *r = t->run;
	char err[400];
	size_t i;

	while ((i = atomic_fetch_add(&r->next, 1)) < r->total) {
		double ms = 0;
		if (atomic_load(&r->failures) > 0)
			break;
		if (r->one(r->ctx[t->idx], i, &ms, err, sizeof(err)) != 0) {
			pthread_mutex_lock(&r->mu);
			if (atomic_fetch_add(&r->failures, 1) == 0)
				snprintf(r->first_failure, sizeof(r->first_failure), "%s", err);
			pthread_mutex_unlock(&r->mu);
			break;
		}
		r->ms[i] = ms;
	}
	return NULL;
}

/* Runs total calls on nthreads threads (ctx[k] for thread k), adding their times to s and
 * the wall time to s->wall_s. */
static void prun_go(struct prun *r, size_t nthreads, size_t total, struct series *s)
{
	pthread_t th_ids[BENCH_CONCURRENCY];
	struct pthr t[BENCH_CONCURRENCY];
	uint64_t t0;
	size_t started = 0;

	if (s->failures > 0)
		return;
	r->total = total;
	atomic_store(&r->next, 0);
	atomic_store(&r->failures, 0);
	r->first_failure[0] = '\0';
	r->ms = calloc(total, sizeof(*r->ms));
	if (r->ms == NULL) {
		series_fail(s, "out of memory");
		return;
	}
	pthread_mutex_init(&r->mu, NULL);
	t0 = kit_now_ns();
	for (size_t k = 0; k < nthreads && k < BENCH_CONCURRENCY; k++) {
		t[k] = (struct pthr){r, k};
		if (pthread_create(&th_ids[k], NULL, prun_thread, &t[k]) != 0)
			break;
		started++;
	}
	for (size_t k = 0; k < started; k++)
		pthread_join(th_ids[k], NULL);
	s->wall_s += bench_ms_since(t0) / 1000;
	if (started == 0)
		series_fail(s, "cannot start threads");
	else if (atomic_load(&r->failures) > 0)
		series_fail(s, "%s", r->first_failure);
	else
		for (size_t i = 0; i < total; i++)
			series_add(s, r->ms[i]);
	pthread_mutex_destroy(&r->mu);
	free(r->ms);
	r->ms = NULL;
}

/* ---- execs of `true` through the broker ---- */

struct exec_ctx {
	struct kit_conn conn; /* kept alive */
	const struct kit_req *req;
};

/* A whole exec: 200, NDJSON whose first frame has an exec_id and whose only last frame, at
 * the end, says exit code 0. */
static int exec_check(const struct kit_resp *r, char *err, size_t errlen)
{
	struct kit_frames f;
	json_t *v;
	int rc = -1;

	if (r->status != 200) {
		snprintf(err, errlen, "HTTP %d: %.300s", r->status, r->body);
		return -1;
	}
	if (r->body_len == 0 || r->body[r->body_len - 1] != '\n') {
		snprintf(err, errlen, "the body ends inside a line: %.100s", r->body);
		return -1;
	}
	kit_frames_init(&f);
	kit_frames_parse(&f, r->body, r->body_len);
	if (f.bad > 0)
		snprintf(err, errlen, "a frame that is not a JSON object: %s", f.bad_line);
	else if (f.terminal_at >= 0 && f.terminal_at != (int)f.n - 1)
		snprintf(err, errlen, "a frame after the last frame: %.300s", r->body);
	else if (!json_is_string(json_object_get(kit_frame(&f, 0), "exec_id")) || f.terminal != 1 ||
	         !json_is_integer(v = json_object_get(f.last_terminal, "exit_code")) ||
	         json_integer_value(v) != 0)
		snprintf(err, errlen, "not a whole exec of `true` with exit code 0: %.300s",
		         r->body);
	else
		rc = 0;
	kit_frames_free(&f);
	return rc;
}

static int exec_one(void *arg, size_t i, double *ms, char *err, size_t errlen)
{
	struct exec_ctx *x = arg;
	uint64_t t0 = kit_now_ns();

	(void)i;
	if (kit_conn_request(&x->conn, x->req) != 0) {
		snprintf(err, errlen, "%s", x->conn.r.error);
		return -1;
	}
	*ms = bench_ms_since(t0);
	return exec_check(&x->conn.r, err, errlen);
}

/* ---- the audit completion statement alone ---- */

struct micro_ctx {
	PGconn *c;
	atomic_ulong *serial; /* request ids */
};

static int micro_one(void *arg, size_t i, double *ms, char *err, size_t errlen)
{
	static const struct eb_bytes argv_true[] = {{"true", 4}};
	struct micro_ctx *m = arg;
	struct audit_begin b = {0};
	struct audit_end e = {0};
	const char *bp[AUDIT_DENIED_NPARAMS], *ep[AUDIT_END_NPARAMS];
	char *bstore = NULL, *estore = NULL, rid[48];
	PGresult *r = NULL;
	uint64_t t0;
	int rc = -1;

	(void)i;
	audit_new_exec_id(b.exec_id);
	snprintf(rid, sizeof(rid), "micro-%lu", atomic_fetch_add(m->serial, 1));
	b.request_id = rid;
	b.workspace_id = "ws-micro";
	b.org_id = "micro";
	b.actor = "token:ebk_micro0000";
	b.actor_kind = "workspace";
	b.argv = argv_true;
	b.argc = 1;
	b.client_addr = "127.0.0.1";
	b.timeout_s = 30;
	b.broker_instance = "bench-micro";
	e.exec_id = b.exec_id;
	e.status = "exited";
	e.exit_code = 0;
	e.duration_ms = 3;
	if (audit_begin_params(&b, bp, &bstore) != 0 || audit_end_params(&e, ep, &estore) != 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r = PQexecParams(m->c, audit_begin_sql, AUDIT_BEGIN_NPARAMS, NULL, bp, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "audit_begin_sql: %s", PQresultErrorMessage(r));
		goto out;
	}
	PQclear(r);
	t0 = kit_now_ns();
	r = PQexecParams(m->c, audit_end_sql, AUDIT_END_NPARAMS, NULL, ep, NULL, NULL, 0);
	*ms = bench_ms_since(t0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(r), "1") != 0) {
		snprintf(err, errlen, "audit_end_sql: %s (%s rows)", PQresultErrorMessage(r),
		         PQcmdTuples(r));
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	free(bstore);
	free(estore);
	return rc;
}

/* ------------------------------------------------------------------ the run */

enum qid {
	Q_WS,
	Q_ACTOR,
	Q_STATUS,
	Q_WS_ORG,
	Q_WS_WS,
	Q_PAGE2,
	Q_BREAK_GLASS,
	Q_STATUS_ORG,
	Q_STATUS_WS,
	Q_COUNT
};

struct bench {
	unsigned long long rows;
	size_t n, sql_n, exec_n, micro_n;
	char db[512];
	char tok_admin[64], tok_org[64], tok_ws[64], tok_exec[64];
	struct kit_broker b;
	double gen_s, vacuum_s;
	long long table_bytes, head_bytes_gen, head_bytes_end, rows_counted;
	char since[32];
	struct query q[Q_COUNT];

	bool verified;
	double verify_s;
	long long verify_links;
	char verify_line[200];

	struct series micro[2][MODE_COUNT]; /* [1 conn, 8 conns][mode] */
	struct series exec_warm, exec[MODE_COUNT];
	double exec_pg_cpu[MODE_COUNT], exec_broker_cpu[MODE_COUNT];
	long long exec_linked, exec_unlinked, exec_rows;
	size_t exec_sent[MODE_COUNT];
};

/* The first value of sql as a number, or -1 with a problem recorded. */
static long long sql_ll(const char *db, const char *sql)
{
	char *v = kit_sql_value(db, sql);
	long long n = v != NULL ? atoll(v) : -1;

	if (v == NULL)
		bench_problem("%s: failed (see above)", sql);
	free(v);
	return n;
}

/* The database, the workspaces and tokens the queries and execs use. ws-042 exists as a
 * workspace (a workspace token needs one) on the harness's sshd, like ws-bench. */
static int bench_world(struct bench *b)
{
	static const char *const t_admin[] = {"token", "create", "--admin", NULL};
	static const char *const t_org[] = {"token", "create", "--org", BENCH_ORG, NULL};
	static const char *const t_ws[] = {"token", "create", "--workspace", BENCH_WS, NULL};
	static const char *const t_exec[] = {"token", "create", "--workspace", EXEC_WS, NULL};
	const struct kit_ws ws[] = {
	    {.id = BENCH_WS,
	     .org = BENCH_ORG,
	     .port = th.sshd.port,
	     .host_key_fp = th.sshd.host_key_fp},
	    {.id = EXEC_WS,
	     .org = "bench",
	     .port = th.sshd.port,
	     .host_key_fp = th.sshd.host_key_fp},
	};

	if (kit_db_migrated(b->db, sizeof(b->db)) != 0 || kit_ws_add(b->db, &ws[0]) != 0 ||
	    kit_ws_add(b->db, &ws[1]) != 0)
		return -1;
	if (kit_cli_token(b->db, t_admin, b->tok_admin, sizeof(b->tok_admin)) != 0 ||
	    kit_cli_token(b->db, t_org, b->tok_org, sizeof(b->tok_org)) != 0 ||
	    kit_cli_token(b->db, t_ws, b->tok_ws, sizeof(b->tok_ws)) != 0 ||
	    kit_cli_token(b->db, t_exec, b->tok_exec, sizeof(b->tok_exec)) != 0)
		return -1;
	return 0;
}

/* audit_gen CONNINFO rows, its output on stderr beside this benchmark's progress. */
static int bench_generate(struct bench *b)
{
	char n[32];
	const char *argv[] = {gen_bin(), b->db, n, NULL};
	const struct kit_spawn sp = {.argv = argv, .stdout_to_stderr = true};
	uint64_t t0 = kit_now_ns();
	pid_t pid;
	int st = 0;

	snprintf(n, sizeof(n), "%llu", b->rows);
	pid = kit_spawn(&sp);
	if (pid < 0 || kit_wait(pid, -1, &st) != 0) {
		bench_problem("cannot run %s", argv[0]);
		return -1;
	}
	b->gen_s = bench_ms_since(t0) / 1000;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		bench_problem("%s ended with wait status %#x", argv[0], (unsigned)st);
		return -1;
	}
	t0 = kit_now_ns();
	if (kit_sql(b->db, "VACUUM (ANALYZE) exec_audit") != 0) {
		bench_problem("VACUUM (ANALYZE) exec_audit failed (see above)");
		return -1;
	}
	b->vacuum_s = bench_ms_since(t0) / 1000;
	b->rows_counted = sql_ll(b->db, "SELECT count(*) FROM exec_audit");
	b->table_bytes = sql_ll(b->db, "SELECT pg_total_relation_size('exec_audit')");
	b->head_bytes_gen = sql_ll(b->db, "SELECT pg_relation_size('exec_audit_chain_head')");
	if (b->rows_counted != (long long)b->rows) {
		bench_problem("exec_audit holds %lld rows after audit_gen, not %llu",
		              b->rows_counted, b->rows);
		return -1;
	}
	return 0;
}

static void query_init(struct bench *b, enum qid id)
{
	static const char *const labels[Q_COUNT] = {
	    [Q_WS] = "(a) workspace " BENCH_WS ", last 24 h",
	    [Q_ACTOR] = "(b) actor " BENCH_ACTOR,
	    [Q_STATUS] = "(c) status timeout",
	    [Q_WS_ORG] = "(d) as (a), org token " BENCH_ORG,
	    [Q_WS_WS] = "(e) as (a), workspace token " BENCH_WS,
	    [Q_PAGE2] = "(f) as (a), page 2 (cursor)",
	    [Q_BREAK_GLASS] = "(g) break-glass execs",
	    [Q_STATUS_ORG] = "(h) status timeout, org token " BENCH_ORG,
	    [Q_STATUS_WS] = "(i) status timeout, workspace token " BENCH_WS,
	};
	struct query *q = &b->q[id];
	const struct audit_scope all = {AUDIT_SCOPE_ALL, NULL, NULL};
	const struct audit_scope org = {AUDIT_SCOPE_ORG, BENCH_ORG, NULL};
	const struct audit_scope ws = {AUDIT_SCOPE_WORKSPACE, BENCH_ORG, BENCH_WS};
	char since_cond[120];

	memset(q, 0, sizeof(*q));
	q->label = labels[id];
	q->who = "admin";
	q->token = b->tok_admin;
	q->scope = all;
	snprintf(since_cond, sizeof(since_cond), "started_at >= '%s'::timestamptz", b->since);
	switch (id) {
	case Q_WS:
	case Q_WS_ORG:
	case Q_WS_WS:
	case Q_PAGE2:
		query_pair(q, "workspace_id", BENCH_WS);
		query_pair(q, "since", b->since);
		snprintf(q->cond, sizeof(q->cond), "workspace_id = '%s' AND %s", BENCH_WS,
		         since_cond);
		if (id == Q_WS_ORG) {
			q->who = "org";
			q->token = b->tok_org;
			q->scope = org;
			strcat(q->cond, " AND org_id = '" BENCH_ORG "'");
		} else if (id == Q_WS_WS) {
			q->who = "workspace";
			q->token = b->tok_ws;
			q->scope = ws;
			strcat(q->cond, " AND org_id = '" BENCH_ORG "'");
		} else if (id == Q_PAGE2) {
			q->offset = PAGE_LIMIT;
		}
		break;
	case Q_ACTOR:
		query_pair(q, "actor", BENCH_ACTOR);
		snprintf(q->cond, sizeof(q->cond), "actor = '%s'", BENCH_ACTOR);
		break;
	case Q_STATUS:
	case Q_STATUS_ORG:
	case Q_STATUS_WS:
		query_pair(q, "status", "timeout");
		snprintf(q->cond, sizeof(q->cond), "status = 'timeout'");
		if (id == Q_STATUS_ORG) {
			q->who = "org";
			q->token = b->tok_org;
			q->scope = org;
			strcat(q->cond, " AND org_id = '" BENCH_ORG "'");
		} else if (id == Q_STATUS_WS) {
			q->who = "workspace";
			q->token = b->tok_ws;
			q->scope = ws;
			strcat(q->cond,
			       " AND workspace_id = '" BENCH_WS "' AND org_id = '" BENCH_ORG "'");
		}
		break;
	case Q_BREAK_GLASS:
		query_pair(q, "break_glass", "true");
		snprintf(q->cond, sizeof(q->cond), "break_glass_reason IS NOT NULL");
		break;
	case Q_COUNT:
	default:
		abort();
	}
}

/* The queries, their expected pages, and the cursor page 2 starts from (page 1's
 * next_cursor, as a client gets it). */
static int bench_queries_init(struct bench *b, struct kit_conn *hc)
{
	char err[512];
	PGconn *c = PQconnectdb(b->db);
	int rc = -1;

	audit_time_format(wall_us() - 24LL * 3600 * 1000000, b->since);
	if (PQstatus(c) != CONNECTION_OK) {
		bench_problem("queries: %s", PQerrorMessage(c));
		goto out;
	}
	for (enum qid id = 0; id < Q_COUNT; id++) {
		query_init(b, id);
		snprintf(b->q[id].sql_name, sizeof(b->q[id].sql_name), "%s, its SQL alone",
		         b->q[id].label);
		if (series_init(&b->q[id].s, b->q[id].label, b->n) != 0 ||
		    series_init(&b->q[id].sql, b->q[id].sql_name, b->sql_n) != 0 ||
		    query_expect(c, &b->q[id]) != 0)
			goto out;
		query_build_request(&b->q[id]);
	}
	/* Page 1 once, for its cursor. */
	if (kit_conn_request(hc, &b->q[Q_WS].req) != 0)
		snprintf(err, sizeof(err), "%s", hc->r.error);
	if (!hc->r.complete ||
	    check_page(&b->q[Q_WS], &hc->r, true, b->q[Q_PAGE2].cursor, err, sizeof(err)) != 0) {
		series_fail(&b->q[Q_WS].s, "the first request: %s", err);
		series_fail(&b->q[Q_PAGE2].s, "no first page: %s", err);
	} else if (b->q[Q_PAGE2].cursor[0] == '\0') {
		b->q[Q_PAGE2].skip = true;
	} else {
		query_pair(&b->q[Q_PAGE2], "cursor", b->q[Q_PAGE2].cursor);
		query_build_request(&b->q[Q_PAGE2]);
	}
	rc = 0;
out:
	PQfinish(c);
	return rc;
}

/* n requests of every query on one keep-alive connection, in turns of BENCH_BLOCK; then
 * each one's SQL alone and its plan. */
static void bench_queries(struct bench *b)
{
	struct kit_conn hc;
	PGconn *c;

	kit_conn_init(&hc, b->b.port);
	if (bench_queries_init(b, &hc) != 0)
		goto out;
	for (size_t done = 0; done < b->n; done += BENCH_BLOCK)
		for (enum qid id = 0; id < Q_COUNT; id++) {
			struct query *q = &b->q[id];
			for (size_t k = 0; k < BENCH_BLOCK && done + k < b->n; k++) {
				if (q->skip || q->s.failures > 0)
					break;
				query_once(q, &hc);
			}
		}
	c = PQconnectdb(b->db);
	if (PQstatus(c) != CONNECTION_OK)
		bench_problem("plans: %s", PQerrorMessage(c));
	else
		for (enum qid id = 0; id < Q_COUNT; id++)
			if (!b->q[id].skip)
				query_plan(c, &b->q[id], b->sql_n);
	PQfinish(c);
out:
	kit_conn_free(&hc);
}

/* `exec-broker audit verify` over the whole chain. */
static void bench_verify(struct bench *b)
{
	static const char *const args[] = {"audit", "verify", NULL};
	uint64_t t0 = kit_now_ns();
	char *out = NULL;
	int st = 0;

	if (kit_cli(b->db, args, &out, &st) != 0) {
		bench_problem("exec-broker audit verify ended with wait status %#x: %.200s",
		              (unsigned)st, out ? out : "");
		free(out);
		return;
	}
	b->verify_s = bench_ms_since(t0) / 1000;
	snprintf(b->verify_line, sizeof(b->verify_line), "%.*s", (int)strcspn(out, "\n"), out);
	if (sscanf(out, "ok: %lld links", &b->verify_links) != 1)
		bench_problem("exec-broker audit verify printed \"%s\"", b->verify_line);
	else if (b->verify_links != (long long)b->rows)
		bench_problem("exec-broker audit verify read %lld links, the log holds %llu rows",
		              b->verify_links, b->rows);
	else
		b->verified = true;
	free(out);
}

/* The completion statement alone, chain on and off, on 1 and MICRO_CONNS connections. */
static void bench_micro(struct bench *b, struct chain_switch *sw)
{
	static const size_t conns[2] = {1, MICRO_CONNS};
	struct micro_ctx m[MICRO_CONNS];
	struct prun run = {0};
	atomic_ulong serial = 0;

	for (size_t k = 0; k < MICRO_CONNS; k++) {
		m[k] = (struct micro_ctx){PQconnectdb(b->db), &serial};
		run.ctx[k] = &m[k];
		if (PQstatus(m[k].c) != CONNECTION_OK) {
			bench_problem("micro: %s", PQerrorMessage(m[k].c));
			goto out;
		}
	}
	run.one = micro_one;
	for (int ci = 0; ci < 2; ci++)
		for (int t = 0; t < MICRO_TURNS; t++) {
			enum mode md = turn_mode(t);
			if (chain_switch_set(sw, md == MODE_CHAIN) != 0)
				goto out;
			prun_go(&run, conns[ci], b->micro_n / (MICRO_TURNS / 2), &b->micro[ci][md]);
		}
out:
	chain_switch_set(sw, true);
	for (size_t k = 0; k < MICRO_CONNS; k++)
		PQfinish(m[k].c);
}

/* Execs of `true` at 32 in flight through the broker: warm-up (opening its sessions),
 * then EXEC_TURNS turns alternating the chain on and off. */
static void bench_exec_chain(struct bench *b, struct chain_switch *sw)
{
	static struct exec_ctx x[BENCH_CONCURRENCY];
	const struct kit_req req = {.ws = EXEC_WS,
	                            .token = b->tok_exec,
	                            .body = "{\"argv\":[\"true\"]}",
	                            .accept = "application/x-ndjson",
	                            .rid = "",
	                            .max_time_s = IO_WAIT_MS / 1000};
	struct prun run = {0};
	size_t per_turn = b->exec_n / (EXEC_TURNS / 2);

	for (size_t k = 0; k < BENCH_CONCURRENCY; k++) {
		kit_conn_init(&x[k].conn, b->b.port);
		x[k].req = &req;
		run.ctx[k] = &x[k];
	}
	run.one = exec_one;
	if (chain_switch_set(sw, true) != 0)
		goto out;
	prun_go(&run, BENCH_CONCURRENCY, BENCH_CONCURRENCY, &b->exec_warm);
	b->exec_sent[MODE_CHAIN] += BENCH_CONCURRENCY;
	if (!series_ok(&b->exec_warm))
		goto out;
	for (int t = 0; t < EXEC_TURNS; t++) {
		enum mode md = turn_mode(t);
		double pg0, br0;
		if (chain_switch_set(sw, md == MODE_CHAIN) != 0)
			goto out;
		pg0 = pg_cpu_s();
		br0 = kit_proc_cpu_s(b->b.pid);
		prun_go(&run, BENCH_CONCURRENCY, per_turn, &b->exec[md]);
		b->exec_pg_cpu[md] += pg_cpu_s() - pg0;
		b->exec_broker_cpu[md] += kit_proc_cpu_s(b->b.pid) - br0;
		b->exec_sent[md] += per_turn;
	}
out:
	chain_switch_set(sw, true);
	for (size_t k = 0; k < BENCH_CONCURRENCY; k++)
		kit_conn_free(&x[k].conn);
	/* The broker's last batch (20 ms), then what the turns without the chain left waiting,
	 * linked as another broker's janitor would. */
	kit_sleep_ms(500);
	sql_ll(b->db, "SELECT exec_audit_seal('{}', '0 s')");
	b->exec_rows =
	    sql_ll(b->db, "SELECT count(*) FROM exec_audit WHERE workspace_id = '" EXEC_WS
	                  "' AND status = 'exited'");
	b->exec_linked =
	    sql_ll(b->db, "SELECT count(*) FROM exec_audit WHERE workspace_id = '" EXEC_WS
	                  "' AND chain_seq IS NOT NULL");
	b->exec_unlinked = b->exec_rows - b->exec_linked;
	if (series_ok(&b->exec[MODE_CHAIN]) && series_ok(&b->exec[MODE_NOCHAIN]) &&
	    (b->exec_rows != (long long)(b->exec_sent[0] + b->exec_sent[1]) ||
	     b->exec_linked != b->exec_rows))
		bench_problem(
		    "exec audit rows: %lld exited, %lld of them linked at the end, for %zu execs "
		    "with the chain and %zu without",
		    b->exec_rows, b->exec_linked, b->exec_sent[MODE_CHAIN],
		    b->exec_sent[MODE_NOCHAIN]);
}

/* ------------------------------------------------------------------ report */

static void report_queries(struct bench *b)
{
	bool all_met = true, any = false;

	printf("\nGET /v1/audit, %zu sequential requests of each query on one keep-alive "
	       "connection, in turns of %d;\n  limit %d (the default); since = %s; every "
	       "response checked against this benchmark's own SQL\n",
	       b->n, BENCH_BLOCK, PAGE_LIMIT, b->since);
	printf("%-44s %-9s %5s %7s %7s %7s %8s %7s  %s\n", "query", "token", "items", "p50 ms",
	       "p99 ms", "max ms", "p99/50ms", "SQL p50", "plan");
	for (enum qid id = 0; id < Q_COUNT; id++) {
		struct query *q = &b->q[id];
		char plan[240];
		if (q->skip) {
			printf("%-44s %-9s skipped: page 1 is the last page\n", q->label, q->who);
			continue;
		}
		snprintf(plan, sizeof(plan), "%s%s%s", q->index_scan ? "index: " : "",
		         q->indexes[0] ? q->indexes : "", q->seq_scan ? " SEQ SCAN" : "");
		if (!series_ok(&q->s)) {
			printf("%-44s %-9s broken (see failures)\n", q->label, q->who);
			all_met = false;
			continue;
		}
		any = true;
		if (series_pct(&q->s, 0.99) >= TARGET_MS)
			all_met = false;
		printf("%-44s %-9s %5zu %7.2f %7.2f %7.2f %8.2f ", q->label, q->who, q->nids,
		       series_pct(&q->s, 0.50), series_pct(&q->s, 0.99), series_pct(&q->s, 1.0),
		       series_pct(&q->s, 0.99) / TARGET_MS);
		if (series_ok(&q->sql))
			printf("%7.2f", series_pct(&q->sql, 0.50));
		else
			printf("%7s", "-");
		printf("  %s\n", plan);
	}
	printf("(SQL p50: audit_query_list()'s statement alone from this process, %zu runs, "
	       "rows not parsed)\n",
	       b->sql_n);
	for (enum qid id = 0; id <= Q_STATUS; id++) {
		struct query *q = &b->q[id];
		char label[120];
		bool ok = series_ok(&q->s);
		double p99 = ok ? series_pct(&q->s, 0.99) : 0;
		snprintf(label, sizeof(label), "%.3s p99", q->label);
		bench_print_target(label, ok, p99, "< 50 ms", p99 < TARGET_MS);
	}
	printf("all queries: %s\n", !any ? "n/a" : all_met ? "p99 < 50 ms" : "some p99 >= 50 ms");
	for (enum qid id = 0; id < Q_COUNT; id++) {
		const struct query *q = &b->q[id];
		if (q->skip || q->plan == NULL)
			continue;
		printf("\n%s, %s token: %s%s; EXPLAIN (ANALYZE, BUFFERS) of audit_query_list()'s "
		       "SQL:\n",
		       q->label, q->who,
		       q->seq_scan     ? "SEQUENTIAL SCAN"
		       : q->index_scan ? "index scan"
		                       : "no index scan",
		       q->seq_scan || !q->index_scan ? "" : " only");
		printf("  params: %s\n", q->params_text);
		printf("%s", q->plan);
	}
	if (b->q[Q_WS].sql_text != NULL)
		printf("\nthe SQL of (a), as audit_query_list() builds it:\n  %s\n",
		       b->q[Q_WS].sql_text);
}

static void print_mode_row(const char *conns, enum mode md, struct series *s)
{
	if (!series_ok(s)) {
		printf("  %-6s %-9s broken (see failures)\n", conns, mode_names[md]);
		return;
	}
	printf("  %-6s %-9s %9.0f %8.3f %8.3f %7zu\n", conns, mode_names[md], series_per_s(s),
	       series_pct(s, 0.50), series_pct(s, 0.99), s->n);
}

static void report_writers(struct bench *b)
{
	static const char *const conn_names[2] = {"1", "8"};
	bool ok;
	double r;

	printf("\nthe audit completion alone (audit_begin_sql, then audit_end_sql timed), chain "
	       "on and off in turns\n  (A B B A), %zu completions of each mode and connection "
	       "count\n",
	       b->micro_n);
	printf("  %-6s %-9s %9s %8s %8s %7s\n", "conns", "mode", "pairs/s", "end p50", "end p99",
	       "n");
	for (int ci = 0; ci < 2; ci++)
		for (enum mode md = 0; md < MODE_COUNT; md++)
			print_mode_row(conn_names[ci], md, &b->micro[ci][md]);
	for (int ci = 0; ci < 2; ci++) {
		char label[80];
		ok = series_ok(&b->micro[ci][0]) && series_ok(&b->micro[ci][1]);
		r = ok ? series_per_s(&b->micro[ci][MODE_CHAIN]) /
		             series_per_s(&b->micro[ci][MODE_NOCHAIN])
		       : 0;
		snprintf(label, sizeof(label), "  begin+end pairs/s, chain / no chain, %s conn%s",
		         conn_names[ci], ci ? "s" : "");
		if (ok)
			printf("%s = %.2f; end p50 %+.3f ms\n", label, r,
			       series_pct(&b->micro[ci][MODE_CHAIN], 0.5) -
			           series_pct(&b->micro[ci][MODE_NOCHAIN], 0.5));
		else
			printf("%s = n/a\n", label);
	}

	printf("\nexecs of `true` through the broker (POST, workspace token, NDJSON), %d in "
	       "flight,\n  %zu of each mode in %d alternating turns (A B B A ...), after %d "
	       "warm-up execs\n",
	       BENCH_CONCURRENCY, b->exec_n, EXEC_TURNS, BENCH_CONCURRENCY);
	printf("  %-9s %8s %8s %8s %8s %12s %12s\n", "mode", "execs/s", "p50 ms", "p99 ms", "wall",
	       "PG CPU/exec", "broker CPU");
	for (enum mode md = 0; md < MODE_COUNT; md++) {
		struct series *s = &b->exec[md];
		if (!series_ok(s)) {
			printf("  %-9s broken (see failures)\n", mode_names[md]);
			continue;
		}
		printf("  %-9s %8.0f %8.2f %8.2f %7.2fs %9.3f ms %9.3f ms\n", mode_names[md],
		       series_per_s(s), series_pct(s, 0.50), series_pct(s, 0.99), s->wall_s,
		       b->exec_pg_cpu[md] * 1000 / (double)s->n,
		       b->exec_broker_cpu[md] * 1000 / (double)s->n);
	}
	ok = series_ok(&b->exec[0]) && series_ok(&b->exec[1]);
	r = ok ? series_per_s(&b->exec[MODE_CHAIN]) / series_per_s(&b->exec[MODE_NOCHAIN]) : 0;
	bench_print_target("exec throughput, chain / no chain", ok, r, ">= 0.9", r >= 0.9);
	printf("(CPU per exec: all PostgreSQL backends, and the broker; no chain = trigger "
	       "exec_audit_link\n  disabled, its two checks dropped, exec_audit_seal() a no-op; "
	       "audit rows of the execs at\n  the end: %lld exited, %lld linked)\n",
	       b->exec_rows, b->exec_linked);
}

static void bench_report(struct bench *b)
{
	struct series *all[Q_COUNT * 2 + 8];
	size_t nall = 0;

	printf("\nexec-broker audit benchmark: %llu audit rows, PostgreSQL (harness: Unix socket, "
	       "fsync on),\n  `exec-broker serve` on 127.0.0.1:%d, %ld CPUs\n",
	       b->rows, b->b.port, sysconf(_SC_NPROCESSORS_ONLN));
	if (b->gen_s > 0)
		printf(
		    "\naudit_gen: %llu rows in %.1f s (%.0f rows/s through the chain trigger); "
		    "VACUUM (ANALYZE) %.1f s;\n  exec_audit %.0f MB with its indexes; chain head "
		    "table %.0f kB\n",
		    b->rows, b->gen_s, (double)b->rows / b->gen_s, b->vacuum_s,
		    (double)b->table_bytes / 1e6, (double)b->head_bytes_gen / 1024);
	report_queries(b);
	if (b->verified)
		printf("\nexec-broker audit verify: %lld links in %.2f s (%.0f rows/s): %s\n",
		       b->verify_links, b->verify_s, (double)b->verify_links / b->verify_s,
		       b->verify_line);
	report_writers(b);
	if (b->head_bytes_end >= 0)
		printf("\nchain head table at the end: %.0f kB\n",
		       (double)b->head_bytes_end / 1024);

	for (enum qid id = 0; id < Q_COUNT; id++) {
		all[nall++] = &b->q[id].s;
		all[nall++] = &b->q[id].sql;
	}
	for (int ci = 0; ci < 2; ci++)
		for (enum mode md = 0; md < MODE_COUNT; md++)
			all[nall++] = &b->micro[ci][md];
	all[nall++] = &b->exec_warm;
	all[nall++] = &b->exec[0];
	all[nall++] = &b->exec[1];
	bench_print_failures(all, nall);
}

static bool bench_broke(struct bench *b)
{
	for (enum qid id = 0; id < Q_COUNT; id++)
		if (!b->q[id].skip && (!series_ok(&b->q[id].s) || !series_ok(&b->q[id].sql)))
			return true;
	for (int ci = 0; ci < 2; ci++)
		for (enum mode md = 0; md < MODE_COUNT; md++)
			if (!series_ok(&b->micro[ci][md]))
				return true;
	return !series_ok(&b->exec[0]) || !series_ok(&b->exec[1]) || bench_problem_count() > 0;
}

static void bench_free(struct bench *b)
{
	for (enum qid id = 0; id < Q_COUNT; id++) {
		free(b->q[id].s.ms);
		free(b->q[id].sql.ms);
		free(b->q[id].ids);
		free(b->q[id].plan);
		free(b->q[id].sql_text);
	}
	for (int ci = 0; ci < 2; ci++)
		for (enum mode md = 0; md < MODE_COUNT; md++)
			free(b->micro[ci][md].ms);
	free(b->exec_warm.ms);
	free(b->exec[0].ms);
	free(b->exec[1].ms);
}

static int bench_init(struct bench *b)
{
	static const char *const micro_names[2][MODE_COUNT] = {
	    {"completion alone, 1 conn, chain", "completion alone, 1 conn, no chain"},
	    {"completion alone, 8 conns, chain", "completion alone, 8 conns, no chain"},
	};
	static const char *const exec_names[MODE_COUNT] = {"execs, chain", "execs, no chain"};
	const char *v = getenv("BENCH_AUDIT_ROWS");
	int rc = 0;

	b->rows = DEFAULT_ROWS;
	if (v != NULL && *v != '\0') {
		char *end;
		unsigned long long n;
		errno = 0;
		n = strtoull(v, &end, 10);
		if (errno != 0 || *end != '\0' || n < 1 || n > MAX_ROWS)
			fprintf(stderr,
			        "bench_audit: BENCH_AUDIT_ROWS=%s is not a count from 1 to "
			        "%llu; using %llu\n",
			        v, MAX_ROWS, DEFAULT_ROWS);
		else
			b->rows = n;
	}
	b->n = bench_env_count("BENCH_AUDIT_N", DEFAULT_N);
	b->sql_n = bench_env_count("BENCH_AUDIT_SQL_N", DEFAULT_SQL_N);
	b->exec_n = bench_env_count("BENCH_AUDIT_EXEC_N", DEFAULT_EXEC_N);
	b->micro_n = bench_env_count("BENCH_AUDIT_MICRO_N", DEFAULT_MICRO_N);
	if (b->exec_n < EXEC_TURNS / 2)
		b->exec_n = EXEC_TURNS / 2;
	b->exec_n -= b->exec_n % (EXEC_TURNS / 2);
	if (b->micro_n < MICRO_TURNS / 2)
		b->micro_n = MICRO_TURNS / 2;
	b->micro_n -= b->micro_n % (MICRO_TURNS / 2);
	b->head_bytes_end = -1;
	for (int ci = 0; ci < 2; ci++)
		for (enum mode md = 0; md < MODE_COUNT; md++)
			rc |= series_init(&b->micro[ci][md], micro_names[ci][md], b->micro_n);
	rc |= series_init(&b->exec_warm, "execs, warm-up", BENCH_CONCURRENCY);
	for (enum mode md = 0; md < MODE_COUNT; md++)
		rc |= series_init(&b->exec[md], exec_names[md], b->exec_n);
	return rc;
}

int main(void)
{
	static struct bench b;
	struct chain_switch sw = {0};
	uint64_t t_start = kit_now_ns();
	int rc;

	if (bench_init(&b) != 0)
		return 1;
	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
		return 1;
	bench_progress("setting up: database, workspaces, tokens (broker %s)", kit_broker_bin());
	if (bench_world(&b) != 0) {
		fprintf(stderr, "bench_audit: setting up failed (above)\n");
		return 1;
	}
	bench_progress("generating %llu audit rows with %s", b.rows, gen_bin());
	if (bench_generate(&b) != 0 || bench_broker_start(&b.b, b.db, "audit", NULL) != 0) {
		bench_report(&b);
		th_teardown();
		return 1;
	}
	bench_progress("%zu requests of each of %d queries, then their SQL and plans", b.n,
	               Q_COUNT);
	bench_queries(&b);
	bench_progress("exec-broker audit verify over %llu rows", b.rows);
	bench_verify(&b);
	if (chain_switch_init(&sw, b.db) == 0) {
		bench_progress("the audit completion alone, chain on and off, 1 and %d connections",
		               MICRO_CONNS);
		bench_micro(&b, &sw);
		bench_progress("%zu execs of each mode at %d in flight, chain on and off", b.exec_n,
		               BENCH_CONCURRENCY);
		bench_exec_chain(&b, &sw);
	}
	chain_switch_free(&sw);
	b.head_bytes_end = sql_ll(b.db, "SELECT pg_relation_size('exec_audit_chain_head')");
	bench_broker_stop(&b.b);

	bench_report(&b);
	rc = bench_broke(&b) ? 1 : 0;
	printf("\nbench_audit: %s in %.0f s\n", rc ? "something broke (above)" : "done",
	       bench_ms_since(t_start) / 1000);
	bench_free(&b);
	th_teardown();
	return rc;
}
