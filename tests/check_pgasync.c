/* tests/check_pgasync.c: the asynchronous PostgreSQL pool against the harness's real
 * cluster: results and text parameters, many queries on few connections, a loop that keeps
 * running during a slow statement, SQL errors, a server that stops and comes back, a
 * backend killed mid-statement, cancellation, freeing with work in flight, and a silent
 * server passed over for the next host of a list. Each test
 * makes its own event_base and pool and frees them, so LeakSanitizer sees every object go. */
#include <check.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "db/pgasync.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"

#define WAIT_S   30.0 /* longest any one wait may take before the test fails */
#define NCELLS   12
#define DEADLINE 20000L

struct outcome {
	int calls;
	bool ok;
	int ntuples;
	char cell[NCELLS][160]; /* the first row */
	bool null[NCELLS];
	char rows[1024]; /* every row: cells joined by '|', each row ended by '\n' */
	char error[512];
	char sqlstate[6];
	double at; /* when the callback ran (now_s) */
};

/* A base whose 10 ms ticker both counts loop turns and keeps EVLOOP_ONCE returning. */
struct tloop {
	struct event_base *base;
	struct event *tick;
	int ticks;
};

static bool issuing; /* inside pgasync_query: no callback may run now */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tloop *t = arg;

	(void)fd;
	(void)what;
	t->ticks++;
}

static void tloop_init(struct tloop *t)
{
	struct timeval ten_ms = {0, 10000};

	memset(t, 0, sizeof(*t));
	t->base = event_base_new();
	ck_assert_ptr_nonnull(t->base);
	t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, t);
	ck_assert_ptr_nonnull(t->tick);
	ck_assert_int_eq(event_add(t->tick, &ten_ms), 0);
}

static void tloop_free(struct tloop *t)
{
	event_free(t->tick);
	event_base_free(t->base);
}

#define RUN_UNTIL(t, cond)                                                                         \
	do {                                                                                       \
		double t0_ = now_s();                                                              \
		while (!(cond)) {                                                                  \
			ck_assert_msg(now_s() - t0_ < WAIT_S, "timed out waiting for %s", #cond);  \
			event_base_loop((t)->base, EVLOOP_ONCE);                                   \
		}                                                                                  \
	} while (0)

/* Runs the loop for about s seconds, whatever happens. */
static void run_for(struct tloop *t, double s)
{
	double t0 = now_s();

	while (now_s() - t0 < s)
		event_base_loop(t->base, EVLOOP_ONCE);
}

static void outcome_cb(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	struct outcome *o = arg;
	size_t used = 0;

	ck_assert_msg(!issuing, "callback ran inside pgasync_query");
	o->calls++;
	o->at = now_s();
	ck_assert_ptr_nonnull(sqlstate);
	snprintf(o->sqlstate, sizeof(o->sqlstate), "%s", sqlstate);
	if (res == NULL) {
		ck_assert_ptr_nonnull(error);
		snprintf(o->error, sizeof(o->error), "%s", error);
		return;
	}
	ck_assert_ptr_null(error);
	ck_assert_str_eq(sqlstate, "");
	o->ok = true;
	o->ntuples = PQntuples(res);
	for (int c = 0; c < PQnfields(res) && c < NCELLS && o->ntuples > 0; c++) {
		o->null[c] = PQgetisnull(res, 0, c);
		snprintf(o->cell[c], sizeof(o->cell[c]), "%s", PQgetvalue(res, 0, c));
	}
	o->rows[0] = '\0';
	for (int r = 0; r < o->ntuples; r++)
		for (int c = 0; c < PQnfields(res); c++)
			used += (size_t)snprintf(o->rows + used, sizeof(o->rows) - used, "%s%s",
			                         PQgetisnull(res, r, c) ? "<null>"
			                                                : PQgetvalue(res, r, c),
			                         c + 1 < PQnfields(res) ? "|" : "\n");
}

static struct pgasync_query *issue(struct pgasync *p, const char *sql, int nparams,
                                   const char *const *params, long deadline_ms, struct outcome *o)
{
	struct pgasync_query *q;

	issuing = true;
	q = pgasync_query(p, sql, nparams, params, deadline_ms, outcome_cb, o);
	issuing = false;
	ck_assert_ptr_nonnull(q);
	return q;
}

/* Issues one query and runs the loop until its callback ran. */
static void run_one(struct tloop *t, struct pgasync *p, const char *sql, int nparams,
                    const char *const *params, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	issue(p, sql, nparams, params, DEADLINE, o);
	RUN_UNTIL(t, o->calls > 0);
	ck_assert_int_eq(o->calls, 1);
}

static struct pgasync_stats stats_of(const struct pgasync *p)
{
	struct pgasync_stats s;

	pgasync_stats(p, &s);
	return s;
}

/* A fresh database, its conninfo with application_name=app, and a pool on it whose n
 * connections are all up. */
static struct pgasync *pool_up(struct tloop *t, const char *app, int n, char *db, size_t dblen)
{
	char conninfo[700], err[256];
	struct pgasync *p = NULL;

	ck_assert_int_eq(th_db_create(db, dblen), 0);
	snprintf(conninfo, sizeof(conninfo), "%s application_name=%s", db, app);
	ck_assert_msg(pgasync_new(t->base, conninfo, n, &p, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq((int)stats_of(p).conns_up, 0); /* nothing connects inside new */
	RUN_UNTIL(t, stats_of(p).conns_up == (unsigned)n);
	return p;
}

START_TEST(rows_and_text_parameters_arrive_unchanged)
{
	static const char *const params[] = {"it's a 'quote'", "back\\slash \\n \\\\",
	                                     "żółć ✓ 日本", "", NULL};
	struct tloop t;
	struct pgasync *p;
	struct outcome o, bad;
	char db[512];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_rows", 2, db, sizeof(db));

	run_one(&t, p, "SELECT g, 'row ' || g, NULL FROM generate_series(1, 3) g ORDER BY g", 0,
	        NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_int_eq(o.ntuples, 3);
	ck_assert_str_eq(o.rows, "1|row 1|<null>\n2|row 2|<null>\n3|row 3|<null>\n");

	/* Compared on the server with literals too: a symmetric mangling would round-trip. */
	run_one(&t, p,
	        "SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $5::text IS NULL, "
	        "$4::text = '', length($3::text), $1::text = 'it''s a ''quote''', "
	        "$2::text = 'back\\slash \\n \\\\', $3::text = 'żółć ✓ 日本'",
	        5, params, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], params[0]);
	ck_assert_str_eq(o.cell[1], params[1]);
	ck_assert_str_eq(o.cell[2], params[2]);
	ck_assert_str_eq(o.cell[3], "");
	ck_assert(!o.null[3]);
	ck_assert(o.null[4]);
	ck_assert_str_eq(o.cell[5], "t");
	ck_assert_str_eq(o.cell[6], "t");
	ck_assert_str_eq(o.cell[7], "9"); /* characters, not bytes: UTF-8 arrived as UTF-8 */
	ck_assert_str_eq(o.cell[8], "t");
	ck_assert_str_eq(o.cell[9], "t");
	ck_assert_str_eq(o.cell[10], "t");

	/* Bad arguments come back through the callback, from the loop. */
	memset(&bad, 0, sizeof(bad));
	issue(p, NULL, 0, NULL, DEADLINE, &bad);
	ck_assert_int_eq(bad.calls, 0);
	RUN_UNTIL(&t, bad.calls > 0);
	ck_assert(!bad.ok);
	ck_assert_msg(strstr(bad.error, "invalid query") != NULL, "%s", bad.error);
	run_for(&t, 0.05);
	ck_assert_int_eq(bad.calls, 1);
	ck_assert_int_eq(o.calls, 1);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(many_queries_share_few_connections)
{
	enum { N = 200, CONNS = 4 };
	static const char app[] = "pgasync_many";
	struct outcome *o = calloc(N, sizeof(*o));
	char num[N][16], pids[CONNS + 1][16], db[512];
	int npids = 0, max_seen = 0, done;
	struct pgasync_stats s;
	struct tloop t;
	struct pgasync *p;

	ck_assert_ptr_nonnull(o);
	tloop_init(&t);
	p = pool_up(&t, app, CONNS, db, sizeof(db));
	for (int i = 0; i < N; i++) {
		const char *params[] = {num[i], app};
		snprintf(num[i], sizeof(num[i]), "%d", i);
		issue(
		    p,
		    "SELECT $1::int * 2, pg_backend_pid(), (SELECT count(*) FROM pg_stat_activity "
		    "WHERE application_name = $2)",
		    2, params, DEADLINE, &o[i]);
	}
	/* Each connection took one statement; the rest wait. A connection reads its socket
	 * right after sending, so on a fast server a statement may already have finished
	 * (its callback still to come) and its connection taken the next one. */
	s = stats_of(p);
	ck_assert_uint_eq(s.queries_running, CONNS);
	ck_assert_uint_le(s.queries_queued, N - CONNS);
	ck_assert_uint_ge(s.queries_queued, N - 2 * CONNS);

	do {
		event_base_loop(t.base, EVLOOP_ONCE);
		s = stats_of(p);
		ck_assert_uint_le(s.conns_up, CONNS);
		ck_assert_uint_le(s.queries_running, CONNS);
		done = 0;
		for (int i = 0; i < N; i++)
			done += o[i].calls;
	} while (done < N);

	for (int i = 0; i < N; i++) {
		char want[16];
		int k;
		ck_assert_int_eq(o[i].calls, 1);
		ck_assert_msg(o[i].ok, "query %d: %s", i, o[i].error);
		snprintf(want, sizeof(want), "%d", 2 * i);
		ck_assert_str_eq(o[i].cell[0], want);
		for (k = 0; k < npids && strcmp(pids[k], o[i].cell[1]) != 0; k++)
			;
		if (k == npids) {
			ck_assert_int_lt(npids, CONNS); /* a fifth backend would fail here */
			snprintf(pids[npids++], sizeof(pids[0]), "%s", o[i].cell[1]);
		}
		if (atoi(o[i].cell[2]) > max_seen)
			max_seen = atoi(o[i].cell[2]);
	}
	ck_assert_int_eq(npids, CONNS); /* the first four went out at once, one per connection */
	ck_assert_int_eq(max_seen, CONNS);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM pg_stat_activity WHERE "
	                                  "application_name = 'pgasync_many'"),
	                 CONNS);
	s = stats_of(p);
	ck_assert_uint_eq(s.queries_ok, N);
	ck_assert_uint_eq(s.queries_failed, 0);
	ck_assert_uint_eq(s.queries_queued, 0);
	ck_assert_uint_eq(s.conns_up, CONNS);

	pgasync_free(p);
	tloop_free(&t);
	free(o);
}
END_TEST

START_TEST(statements_are_bounded_on_the_server)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o;
	char db[512];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_timeout", 1, db, sizeof(db));
	run_one(&t, p, "SHOW statement_timeout", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], PGASYNC_STATEMENT_TIMEOUT);
	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(loop_runs_while_a_statement_sleeps)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o = {0};
	char db[512];
	double t0;
	int ticks0;

	tloop_init(&t);
	p = pool_up(&t, "pgasync_sleep", 1, db, sizeof(db));
	ticks0 = t.ticks;
	t0 = now_s();
	issue(p, "SELECT pg_sleep(1)", 0, NULL, DEADLINE, &o);
	RUN_UNTIL(&t, o.calls > 0);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_double_ge(o.at - t0, 0.9);
	ck_assert_msg(t.ticks - ticks0 >= 50, "only %d ticks of 10 ms during the sleep",
	              t.ticks - ticks0);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(sql_errors_carry_sqlstate_and_keep_the_connection)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o;
	char db[512], pid[160];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_errors", 1, db, sizeof(db));
	run_one(&t, p, "CREATE TABLE u (id int PRIMARY KEY)", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	run_one(&t, p, "INSERT INTO u VALUES (1) RETURNING pg_backend_pid()", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	snprintf(pid, sizeof(pid), "%s", o.cell[0]);

	run_one(&t, p, "INSERT INTO u VALUES (1)", 0, NULL, &o);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, "23505");
	ck_assert_msg(strstr(o.error, "duplicate key value violates unique constraint") != NULL,
	              "%s", o.error);
	ck_assert_ptr_null(strchr(o.error, '\n'));

	/* A message with newlines in it arrives as one line. */
	run_one(&t, p, "DO $$BEGIN RAISE EXCEPTION E'first\\nsecond'; END$$", 0, NULL, &o);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, "P0001");
	ck_assert_str_eq(o.error, "first; second");

	/* The same connection, still usable. */
	run_one(&t, p, "SELECT pg_backend_pid(), count(*) FROM u", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], pid);
	ck_assert_str_eq(o.cell[1], "1");
	ck_assert_uint_eq(stats_of(p).conns_lost, 0);
	ck_assert_uint_eq(stats_of(p).queries_failed, 2);

	/* COPY is refused, and the connection it left mid-COPY is replaced. */
	run_one(&t, p, "COPY u TO STDOUT", 0, NULL, &o);
	ck_assert(!o.ok);
	ck_assert_msg(strstr(o.error, "COPY is not supported") != NULL, "%s", o.error);
	run_one(&t, p, "SELECT count(*) FROM u", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], "1");

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(killed_backend_fails_its_query_then_reconnects)
{
	static const char *const app[] = {"pgasync_victim"};
	struct tloop t;
	struct pgasync *p, *killer;
	struct outcome o, k, sleeper = {0};
	char db[512], db2[512], pid[160];
	double t0;

	tloop_init(&t);
	p = pool_up(&t, app[0], 1, db, sizeof(db));
	killer = pool_up(&t, "pgasync_killer", 1, db2, sizeof(db2));
	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	snprintf(pid, sizeof(pid), "%s", o.cell[0]);

	t0 = now_s();
	issue(p, "SELECT pg_sleep(30)", 0, NULL, DEADLINE, &sleeper);
	for (;;) {
		run_one(
		    &t, killer,
		    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
		    "application_name = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'",
		    1, app, &k);
		ck_assert_msg(k.ok, "%s", k.error);
		if (strcmp(k.cell[0], "1") == 0)
			break;
		ck_assert_int_eq(sleeper.calls, 0);
		ck_assert_double_lt(now_s() - t0, WAIT_S);
		run_for(&t, 0.02);
	}
	RUN_UNTIL(&t, sleeper.calls > 0);
	ck_assert(!sleeper.ok);
	ck_assert_str_eq(sleeper.sqlstate, PGASYNC_SQLSTATE_LOST);
	ck_assert_msg(strstr(sleeper.error, "connection to the database lost") != NULL, "%s",
	              sleeper.error);
	ck_assert_ptr_null(strchr(sleeper.error, '\n'));
	ck_assert_double_lt(sleeper.at - t0, 10.0);
	ck_assert_uint_eq(stats_of(p).conns_lost, 1);

	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_ne(o.cell[0], pid); /* a new connection, in the same pool */
	ck_assert_int_eq(sleeper.calls, 1);

	pgasync_free(killer);
	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

/* A static statement is prepared once per connection and then only run: the server holds
 * it prepared, it gives the same rows with any parameters, an error in it keeps the
 * connection, a cancel while it is being prepared leaves it usable, and a new connection
 * prepares it again. */
static const char static_sql[] = "SELECT $1::integer * 2, current_setting('application_name')";
static const char static_bad[] = "SELECT 1 / $1::integer";
static const char prepared_sql[] =
    "SELECT string_agg(statement, ' | ' ORDER BY name) FROM pg_prepared_statements";

static void run_static(struct tloop *t, struct pgasync *p, const char *sql, const char *arg,
                       struct outcome *o)
{
	const char *params[] = {arg};

	memset(o, 0, sizeof(*o));
	issuing = true;
	ck_assert_ptr_nonnull(pgasync_query_static(p, sql, 1, params, DEADLINE, outcome_cb, o));
	issuing = false;
	RUN_UNTIL(t, o->calls > 0);
	ck_assert_int_eq(o->calls, 1);
}

START_TEST(static_statements_are_prepared_once_per_connection)
{
	static const char *const app[] = {"pgasync_static"};
	struct tloop t;
	struct pgasync *p, *killer;
	struct pgasync_query *q;
	struct outcome o, k, gone = {0};
	const char *params[] = {"5"};
	char db[512], db2[512];

	tloop_init(&t);
	p = pool_up(&t, app[0], 1, db, sizeof(db));
	killer = pool_up(&t, "pgasync_static_killer", 1, db2, sizeof(db2));
	/* cancelled while being prepared: the next one still runs (no "already exists") */
	issuing = true;
	q = pgasync_query_static(p, static_sql, 1, params, DEADLINE, outcome_cb, &gone);
	issuing = false;
	ck_assert_ptr_nonnull(q);
	pgasync_cancel(q);
	for (int i = 0; i < 5; i++) {
		char arg[16], want[16];
		snprintf(arg, sizeof(arg), "%d", i * 7);
		snprintf(want, sizeof(want), "%d", i * 14);
		run_static(&t, p, static_sql, arg, &o);
		ck_assert_msg(o.ok, "%s", o.error);
		ck_assert_str_eq(o.cell[0], want);
		ck_assert_str_eq(o.cell[1], app[0]);
	}
	ck_assert_int_eq(gone.calls, 0);
	run_one(&t, p, prepared_sql, 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], static_sql); /* prepared once, on the one connection */
	/* an error in a prepared statement fails that query only */
	run_static(&t, p, static_bad, "0", &o);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, "22012");
	run_static(&t, p, static_bad, "1", &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_uint_eq(stats_of(p).conns_lost, 0);
	/* a new connection prepares them again */
	run_one(&t, killer,
	        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
	        "application_name = $1",
	        1, app, &k);
	ck_assert_msg(k.ok && strcmp(k.cell[0], "1") == 0, "%s %s", k.error, k.cell[0]);
	for (int tries = 0;; tries++) {
		run_static(&t, p, static_sql, "21", &o);
		if (o.ok)
			break;
		ck_assert_str_eq(o.sqlstate, PGASYNC_SQLSTATE_LOST); /* the first finds it gone */
		ck_assert_int_lt(tries, 1);
	}
	ck_assert_str_eq(o.cell[0], "42");
	run_one(&t, p, prepared_sql, 0, NULL, &o);
	ck_assert_str_eq(o.cell[0], static_sql);
	pgasync_free(killer);
	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(cancelled_queued_query_never_calls_back)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome a = {0}, b = {0}, c = {0};
	struct pgasync_query *qb;
	struct pgasync_stats s;
	char db[512];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_cancel", 1, db, sizeof(db));
	issue(p, "SELECT pg_sleep(0.3)", 0, NULL, DEADLINE, &a);
	qb = issue(p, "SELECT 1", 0, NULL, DEADLINE, &b);
	issue(p, "SELECT 2", 0, NULL, DEADLINE, &c);
	ck_assert_uint_eq(stats_of(p).queries_queued, 2);
	pgasync_cancel(qb);
	ck_assert_uint_eq(stats_of(p).queries_queued, 1);
	RUN_UNTIL(&t, a.calls > 0 && c.calls > 0);
	run_for(&t, 0.1);
	ck_assert_int_eq(b.calls, 0);
	ck_assert_msg(a.ok && c.ok, "%s %s", a.error, c.error);
	ck_assert_str_eq(c.cell[0], "2");
	s = stats_of(p);
	ck_assert_uint_eq(s.queries_cancelled, 1);
	ck_assert_uint_eq(s.queries_ok, 2);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

/* Its statement runs to the end on the server; the caller hears nothing, the connection
 * serves the next query. */
START_TEST(cancelled_running_query_never_calls_back)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome a = {0}, c = {0};
	struct pgasync_query *qa;
	char db[512];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_cancel_running", 1, db, sizeof(db));
	qa = issue(p, "SELECT pg_sleep(0.3)", 0, NULL, DEADLINE, &a);
	ck_assert_uint_eq(stats_of(p).queries_running, 1);
	run_for(&t, 0.05);
	pgasync_cancel(qa);
	ck_assert_uint_eq(stats_of(p).queries_running, 0);
	ck_assert_uint_eq(stats_of(p).conns_busy, 1);
	issue(p, "SELECT 3", 0, NULL, DEADLINE, &c);
	RUN_UNTIL(&t, c.calls > 0);
	run_for(&t, 0.05);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_msg(c.ok, "%s", c.error);
	ck_assert_str_eq(c.cell[0], "3");
	ck_assert_uint_eq(stats_of(p).conns_lost, 0);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(queued_query_fails_at_its_deadline_when_all_busy)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome a = {0}, b = {0};
	char db[512];
	double t0;

	tloop_init(&t);
	p = pool_up(&t, "pgasync_busy", 1, db, sizeof(db));
	issue(p, "SELECT pg_sleep(1)", 0, NULL, DEADLINE, &a);
	t0 = now_s();
	issue(p, "SELECT 1", 0, NULL, 200, &b);
	RUN_UNTIL(&t, b.calls > 0);
	ck_assert(!b.ok);
	ck_assert_str_eq(b.sqlstate, PGASYNC_SQLSTATE_UNAVAILABLE);
	ck_assert_msg(strstr(b.error, "database unavailable: all 1 connections busy") == b.error,
	              "%s", b.error);
	ck_assert_double_ge(b.at - t0, 0.19);
	ck_assert_int_eq(a.calls, 0); /* failed while the other still ran */
	RUN_UNTIL(&t, a.calls > 0);
	ck_assert_msg(a.ok, "%s", a.error);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

static struct pgasync *freed_from_callback;

static void free_pool_cb(const PGresult *res, const char *error, const char *sqlstate, void *arg)
{
	(void)res;
	(void)error;
	(void)sqlstate;
	(*(int *)arg)++;
	pgasync_free(freed_from_callback);
}

/* Nothing runs after pgasync_free, whether called between turns with statements in flight
 * or from a callback with more outcomes waiting; LeakSanitizer checks that all went. */
START_TEST(free_with_work_in_flight)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o[5] = {{0}};
	int freer_calls = 0;
	char db[512];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_free", 2, db, sizeof(db));
	for (int i = 0; i < 5; i++)
		issue(p, "SELECT pg_sleep(2)", 0, NULL, DEADLINE, &o[i]);
	run_for(&t, 0.05);
	ck_assert_uint_eq(stats_of(p).queries_running, 2);
	pgasync_free(p);
	run_for(&t, 0.1);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(o[i].calls, 0);

	/* Refused queries are reported in the order they were made: the freeing callback
	 * runs first, with the next outcome waiting behind it, one statement running and one
	 * queued. */
	p = pool_up(&t, "pgasync_free2", 1, db, sizeof(db));
	freed_from_callback = p;
	issue(p, "SELECT pg_sleep(2)", 0, NULL, DEADLINE, &o[0]);
	issue(p, "SELECT 1", 0, NULL, DEADLINE, &o[1]);
	ck_assert_ptr_nonnull(
	    pgasync_query(p, NULL, 0, NULL, DEADLINE, free_pool_cb, &freer_calls));
	issue(p, NULL, 0, NULL, DEADLINE, &o[2]);
	RUN_UNTIL(&t, freer_calls > 0);
	run_for(&t, 0.2);
	ck_assert_int_eq(freer_calls, 1);
	ck_assert_int_eq(o[0].calls + o[1].calls + o[2].calls, 0);

	tloop_free(&t);
}
END_TEST

/* A server that accepts the TCP connection and never answers (a listening socket nobody
 * accepts from): each attempt ends at connect_timeout, which PQconnectPoll leaves to the
 * pool, and the loop keeps running meanwhile. */
START_TEST(silent_server_times_out_the_connect)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	struct tloop t;
	struct pgasync *p;
	struct outcome o = {0};
	char conninfo[128], err[256];
	int fd, ticks0;
	double t0;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d user=postgres dbname=x connect_timeout=2",
	         ntohs(sa.sin_port));
	tloop_init(&t);
	t0 = now_s();
	ck_assert_msg(pgasync_new(t.base, conninfo, 1, &p, err, sizeof(err)) == 0, "%s", err);
	ticks0 = t.ticks;
	issue(p, "SELECT 1", 0, NULL, 3000, &o);
	RUN_UNTIL(&t, o.calls > 0);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, PGASYNC_SQLSTATE_UNAVAILABLE);
	ck_assert_str_eq(o.error, "database unavailable: no connection within 2 s");
	ck_assert_double_ge(o.at - t0, 2.9);
	ck_assert_uint_eq(stats_of(p).connects_failed, 1);
	ck_assert_msg(t.ticks - ticks0 >= 150, "only %d ticks of 10 ms while connecting",
	              t.ticks - ticks0);
	pgasync_free(p);
	tloop_free(&t);
	close(fd);
}
END_TEST

/* A silent server listed before the real one: libpq's own connect gives each host
 * connect_timeout and goes on to the next, and so does the pool (one host per attempt, since
 * PQconnectPoll cannot be told to skip a host): the query runs once the silent host's time
 * is out, not never. Three ways to say it: keyword lists, a port list whose second entry is
 * empty (libpq's default port, the run's cluster's), and a URI whose second host has no
 * port. */
START_TEST(silent_first_host_is_passed_over_at_connect_timeout)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	struct tloop t;
	struct pgasync *p;
	struct outcome o = {0};
	char db[512], conninfo[900], err[256];
	int fd;
	double t0;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	if (_i == 0) {
		/* The keywords given last win: the list replaces the database's own host and port.
		 */
		snprintf(conninfo, sizeof(conninfo),
		         "%s host=127.0.0.1,%s port=%d,5432 connect_timeout=2", db, th.pg.sockdir,
		         ntohs(sa.sin_port));
	} else if (_i == 1) {
		snprintf(conninfo, sizeof(conninfo),
		         "%s host=127.0.0.1,%s port=%d, connect_timeout=2", db, th.pg.sockdir,
		         ntohs(sa.sin_port));
	} else {
		char sock[256] = "", *dbname = strstr(db, "dbname=");
		size_t n = 0;

		ck_assert_ptr_nonnull(dbname);
		for (const char *c = th.pg.sockdir; *c != '\0' && n + 4 < sizeof(sock); c++)
			n += (size_t)snprintf(sock + n, sizeof(sock) - n, *c == '/' ? "%%2F" : "%c",
			                      *c);
		snprintf(conninfo, sizeof(conninfo),
		         "postgresql://127.0.0.1:%d,%s/%.*s?user=postgres&connect_timeout=2",
		         ntohs(sa.sin_port), sock, (int)strcspn(dbname + 7, " "), dbname + 7);
	}
	tloop_init(&t);
	t0 = now_s();
	ck_assert_msg(pgasync_new(t.base, conninfo, 1, &p, err, sizeof(err)) == 0, "%s", err);
	issue(p, "SELECT 42", 0, NULL, DEADLINE, &o);
	RUN_UNTIL(&t, o.calls > 0);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], "42");
	ck_assert_double_ge(o.at - t0, 1.9); /* the silent host was tried first */
	ck_assert_uint_eq(stats_of(p).connects_failed, 1);
	pgasync_free(p);
	tloop_free(&t);
	close(fd);
}
END_TEST

/* A write refused as read-only (25006: a standby, a fenced primary) fails as it is, and
 * the connection is dropped: the next statement runs on a new one, which goes through the
 * host list again (target_session_attrs=read-write finds the writable host). */
/* A backend that stops answering (SIGSTOP: its machine frozen, or gone with the kernel
 * still acknowledging) gets no chance to run its statement_timeout: the statement sent to
 * it fails with LOST once PGASYNC_ANSWER_TIMEOUT_MS passed, and the next query runs on a
 * new connection. Without that deadline the query, and every exec waiting on it, would wait
 * for ever. */
START_TEST(a_silent_backend_fails_its_statement_and_is_replaced)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o, stuck = {0};
	char db[512], pid[160], sql[200];
	pid_t backend, waker;

	tloop_init(&t);
	p = pool_up(&t, "pgasync_silent", 1, db, sizeof(db));
	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert(o.ok);
	snprintf(pid, sizeof(pid), "%s", o.cell[0]);
	backend = (pid_t)atoi(pid);
	ck_assert_int_gt(backend, 1);
	ck_assert_int_eq(kill(backend, SIGSTOP), 0); /* a backend of this run's cluster */
	/* Whatever happens here, the backend runs again after 25 s: it would answer then. */
	waker = fork();
	ck_assert_int_ge(waker, 0);
	if (waker == 0) {
		sleep(25);
		kill(backend, SIGCONT);
		_exit(0);
	}
	issue(p, "SELECT 1", 0, NULL, DEADLINE, &stuck);
	RUN_UNTIL(&t, stuck.calls > 0);
	kill(backend, SIGCONT);
	kill(waker, SIGKILL);
	waitpid(waker, NULL, 0);
	ck_assert(!stuck.ok);
	ck_assert_str_eq(stuck.sqlstate, PGASYNC_SQLSTATE_LOST);
	ck_assert_msg(strstr(stuck.error, "no answer within") != NULL, "%s", stuck.error);
	ck_assert_uint_eq(stats_of(p).conns_lost, 1);
	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_ne(o.cell[0], pid);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", (int)backend);
	run_one(&t, p, sql, 0, NULL, &o); /* it may have gone already, on its closed socket */
	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(read_only_refusal_drops_the_connection)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o;
	char db[512], pid[160];

	tloop_init(&t);
	p = pool_up(&t, "pgasync_ro", 1, db, sizeof(db));
	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert(o.ok);
	snprintf(pid, sizeof(pid), "%s", o.cell[0]);
	run_one(&t, p, "SET default_transaction_read_only = on", 0, NULL, &o);
	ck_assert(o.ok);
	run_one(&t, p, "CREATE TABLE ro_probe (x int)", 0, NULL, &o);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, "25006");
	ck_assert(pgasync_sqlstate_transient(o.sqlstate));
	run_one(&t, p, "SELECT pg_backend_pid()", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_ne(o.cell[0], pid);
	ck_assert_uint_eq(stats_of(p).conns_lost, 1);
	run_one(&t, p, "CREATE TABLE ro_probe (x int)", 0, NULL, &o);
	ck_assert_msg(o.ok, "%s", o.error);
	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(stopped_server_is_unavailable_then_reconnects)
{
	struct tloop t;
	struct pgasync *p;
	struct outcome o = {0};
	struct pgasync_stats s;
	char db[512];
	double t0;
	int ticks0;

	tloop_init(&t);
	p = pool_up(&t, "pgasync_restart", 2, db, sizeof(db));
	ck_assert_int_eq(th_pg_stop(&th.pg), 0);

	/* Issued at once: the connections have not yet seen the server go. */
	ticks0 = t.ticks;
	t0 = now_s();
	issue(p, "SELECT 1", 0, NULL, 1000, &o);
	RUN_UNTIL(&t, o.calls > 0);
	ck_assert(!o.ok);
	ck_assert_str_eq(o.sqlstate, PGASYNC_SQLSTATE_UNAVAILABLE);
	ck_assert_msg(strncmp(o.error, "database unavailable: ", 22) == 0, "%s", o.error);
	ck_assert_ptr_null(strchr(o.error, '\n'));
	ck_assert_double_ge(o.at - t0, 0.95);
	ck_assert_double_lt(o.at - t0, 5.0);
	ck_assert_msg(t.ticks - ticks0 >= 50, "only %d ticks of 10 ms while waiting",
	              t.ticks - ticks0);
	s = stats_of(p);
	ck_assert_uint_eq(s.conns_up, 0);
	ck_assert_uint_eq(s.conns_lost, 2);
	ck_assert_uint_ge(s.connects_failed, 1);

	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	memset(&o, 0, sizeof(o));
	issue(p, "SELECT 42", 0, NULL, DEADLINE, &o);
	RUN_UNTIL(&t, o.calls > 0);
	ck_assert_msg(o.ok, "%s", o.error);
	ck_assert_str_eq(o.cell[0], "42");
	RUN_UNTIL(&t, stats_of(p).conns_up == 2);

	pgasync_free(p);
	tloop_free(&t);
}
END_TEST

START_TEST(bad_arguments_are_refused_by_new)
{
	struct event_base *base = event_base_new();
	struct pgasync *p = (struct pgasync *)1;
	char err[256];

	ck_assert_int_eq(pgasync_new(base, "host=/tmp", 0, &p, err, sizeof(err)), EB_ERR_RANGE);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(pgasync_new(base, "host=/tmp nonsense", 1, &p, err, sizeof(err)),
	                 EB_ERR_INVAL);
	ck_assert_ptr_null(p);
	ck_assert_msg(strncmp(err, "invalid connection string: ", 27) == 0, "%s", err);
	ck_assert_ptr_null(strchr(err, '\n'));
	ck_assert_int_eq(pgasync_new(base, "mydb", 1, &p, err, sizeof(err)), 0);
	pgasync_free(p);
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pgasync");
	TCase *tc = tcase_create("pgasync");
	SRunner *sr;
	int failed;

	if (th_setup(TH_PG) != 0)
		return EXIT_FAILURE;
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, bad_arguments_are_refused_by_new);
	tcase_add_test(tc, rows_and_text_parameters_arrive_unchanged);
	tcase_add_test(tc, many_queries_share_few_connections);
	tcase_add_test(tc, loop_runs_while_a_statement_sleeps);
	tcase_add_test(tc, statements_are_bounded_on_the_server);
	tcase_add_test(tc, sql_errors_carry_sqlstate_and_keep_the_connection);
	tcase_add_test(tc, killed_backend_fails_its_query_then_reconnects);
	tcase_add_test(tc, static_statements_are_prepared_once_per_connection);
	tcase_add_test(tc, cancelled_queued_query_never_calls_back);
	tcase_add_test(tc, cancelled_running_query_never_calls_back);
	tcase_add_test(tc, queued_query_fails_at_its_deadline_when_all_busy);
	tcase_add_test(tc, free_with_work_in_flight);
	tcase_add_test(tc, silent_server_times_out_the_connect);
	tcase_add_loop_test(tc, silent_first_host_is_passed_over_at_connect_timeout, 0, 3);
	tcase_add_test(tc, read_only_refusal_drops_the_connection);
	tcase_add_test(tc, a_silent_backend_fails_its_statement_and_is_replaced);
	/* Last: it stops the cluster, and a failure part-way would leave it stopped. */
	tcase_add_test(tc, stopped_server_is_unavailable_then_reconnects);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	th_teardown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
