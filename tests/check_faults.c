/* tests/check_faults.c: faults injected while execs run and new ones arrive, with the real
 * binary, a real PostgreSQL and real sshds. Each asserts the same three things: the broker
 * keeps serving; every exec it accepted has exactly one final audit row with the right
 * outcome (none left 'running', no exit code invented); nothing it refused ran on the host.
 * The client and host faults are in check_faults_clients.c and check_faults_host.c; the
 * README's "Reliability" section lists every fault and the test that injects it. */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/detached.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define NRUN 4 /* execs running when the fault strikes */
#define NNEW 6 /* execs sent as it strikes */

static struct kit_world W;
static int strays; /* refusals whose row turned up after all (stray_ends) */

/* What a finished exec must show: 200, the whole stream, "ok", exit 0, its row exited 0. */
static void assert_ran(const struct kit_resp *r, const char *what)
{
	struct kit_frames f;
	char *v;

	ck_assert_msg(r->status == 200, "%s: %d %s", what, r->status, r->body);
	sv_stream(r, &f);
	/* "started" went to the marker file */
	ck_assert_msg(strcmp(f.out, "ok\n") == 0 &&
	                  json_is_integer(json_object_get(sv_last(&f), "exit_code")) &&
	                  sv_int(sv_last(&f), "exit_code") == 0,
	              "%s: %s (complete %d, %s)", what, r->body, r->complete, r->error);
	v = sv_row(W.db, r->rid, "status || ' ' || exit_code");
	ck_assert_str_eq(v, "exited 0");
	free(v);
	kit_frames_free(&f);
}

/* The load every fault strikes: NRUN execs running (each waits for its gate) and NNEW that
 * arrive as it strikes (their gates open at once), on the workspaces named. */
struct load {
	int port;
	const char *token;
	const char *ws_run[2], *ws_new[2]; /* alternately */
	int timeout_s;
	struct kit_conn run[NRUN];
	char *markers[NRUN + NNEW], *bodies[NRUN + NNEW];
	struct kit_resp r[NNEW]; /* the new ones' answers */
	int ran, refused;        /* of the new ones */
};

/* Starts l's running execs on port and waits until each command has started. */
static void load_begin(struct load *l, int port, const char *tag)
{
	char name[160];

	l->port = port;
	l->ran = l->refused = 0;
	for (int i = 0; i < NRUN + NNEW; i++) {
		snprintf(name, sizeof(name), "%s-m%d", tag, i);
		l->markers[i] = kit_tmp_path(name);
		l->bodies[i] = sv_marked_body(l->markers[i], l->timeout_s);
		if (i >= NRUN) {
			snprintf(name, sizeof(name), "%s.go", l->markers[i]);
			sv_touch(name);
		}
	}
	for (int i = 0; i < NRUN; i++) {
		struct kit_req sq = {.ws = l->ws_run[i % 2],
		                     .token = l->token,
		                     .body = l->bodies[i],
		                     .max_time_s = 300};

		ck_assert_int_eq(kit_stream_open(&l->run[i], port, &sq), 0);
	}
	for (int i = 0; i < NRUN; i++) {
		long long end = kit_now_ms() + KIT_WAIT_MS;

		while (!kit_file_exists(l->markers[i])) {
			ck_assert_msg(kit_now_ms() < end, "exec %d never started", i);
			kit_sleep_ms(20);
		}
	}
}

/* Lets the running commands end. */
static void load_release(struct load *l)
{
	char name[200];

	for (int i = 0; i < NRUN; i++) {
		snprintf(name, sizeof(name), "%s.go", l->markers[i]);
		sv_touch(name);
	}
}

/* Sends the new execs at once; their answers wait in l->r for load_judge (the database
 * may be away now). */
static void load_send(struct load *l)
{
	struct kit_req q[NNEW];

	for (int i = 0; i < NNEW; i++)
		q[i] = (struct kit_req){
		    .ws = l->ws_new[i % 2], .token = l->token, .body = l->bodies[NRUN + i]};
	ck_assert_int_eq(kit_http_parallel(l->port, q, NNEW, l->r), 0);
}

/* A refusal whose row's insert went through after all (its answer was lost with the
 * connection, and the statement ran later): the refusal is status and code, and the row
 * ends as failed_to_start with that code, no exit code, once the broker's janitor finds it
 * (api_exec_doubt). */
static void stray_ends(const struct kit_resp *r, int status, const char *code)
{
	long long end = kit_now_ms() + 90000;
	char want[100], *v;
	json_t *o = sv_json(r);

	ck_assert_msg(r->status == status && sv_str(o, "error.code") != NULL &&
	                  strcmp(sv_str(o, "error.code"), code) == 0,
	              "%d %s", r->status, r->body);
	json_decref(o);
	snprintf(want, sizeof(want), "failed_to_start %s none", code);
	for (;;) {
		v = sv_row(W.db, r->rid,
		           "status || ' ' || coalesce(error_code, '') || ' ' || "
		           "coalesce(exit_code::text, 'none')");
		if (strncmp(v, "running", 7) != 0)
			break;
		ck_assert_msg(kit_now_ms() < end, "a refused exec's row still running: %s", v);
		free(v);
		kit_sleep_ms(200);
	}
	ck_assert_str_eq(v, want);
	free(v);
	strays++;
}

/* Judges each new exec: it ran whole (its row exited 0), or it was refused with status and
 * code (row_status as sv_error takes it: NULL for no row) and its command never started. */
static void load_judge(struct load *l, int status, const char *code, const char *row_status)
{
	for (int i = 0; i < NNEW; i++) {
		if (l->r[i].status == 200) {
			assert_ran(&l->r[i], "a new exec");
			ck_assert(kit_file_exists(l->markers[NRUN + i]));
			l->ran++;
		} else {
			if (row_status != NULL || sv_rows(W.db, l->r[i].rid) == 0)
				sv_error(W.db, &l->r[i], status, code, row_status,
				         row_status ? code : NULL);
			else
				stray_ends(&l->r[i], status, code);
			ck_assert_msg(!kit_file_exists(l->markers[NRUN + i]),
			              "a command refused with %d ran anyway", l->r[i].status);
			l->refused++;
		}
		kit_resp_free(&l->r[i]);
	}
}

static void load_new(struct load *l, int status, const char *code, const char *row_status)
{
	load_send(l);
	load_judge(l, status, code, row_status);
}

/* Each exec running when the fault struck ran to its end: whole stream, row exited 0. */
static void load_end(struct load *l)
{
	struct kit_resp rr;

	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&l->run[i], &rr);
		assert_ran(&rr, "an exec running at the fault");
		kit_resp_free(&rr);
	}
}

/* After the fault the broker serves as before: an exec on the first workspace runs. */
static void load_serves_on(struct load *l)
{
	struct kit_req q = {.ws = l->ws_run[0], .token = l->token, .body = l->bodies[NRUN]};
	struct kit_resp rr;

	unlink(l->markers[NRUN]);
	sv_http(l->port, &q, &rr);
	assert_ran(&rr, "an exec after the fault");
	kit_resp_free(&rr);
}

static void load_free(struct load *l)
{
	char name[200];

	for (int i = 0; i < NRUN + NNEW; i++) {
		snprintf(name, sizeof(name), "%s.go", l->markers[i]);
		unlink(name);
		unlink(l->markers[i]);
		free(l->markers[i]);
		free(l->bodies[i]);
	}
}

/* A child that terminates every backend of the broker every 30 ms for ms: a storm, so
 * that statements in flight, connections being made and idle ones are all cut. */
static pid_t terminate_storm(int ms)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		long long end = kit_now_ms() + ms;

		while (kit_now_ms() < end) {
			kit_sql(W.db,
			        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
			        "application_name = 'exec-broker' AND pid <> pg_backend_pid()");
			kit_sleep_ms(30);
		}
		_exit(0);
	}
	return pid;
}

#define LOAD_PG(to)                                                                                \
	{                                                                                          \
		.token = W.tok_org, .ws_run = {"ws-c0", "ws-a1"}, .ws_new = {"ws-c1", "ws-a2"},    \
		.timeout_s = (to)                                                                  \
	}

/* Every connection the broker holds to PostgreSQL is terminated by the server (an
 * operator's pg_terminate_backend, a failover's end of old sessions) while NRUN execs run
 * and NNEW arrive: the running ones end well, their rows completed on new connections; each
 * new one either runs whole or is refused 503 audit_unavailable with nothing run; then the
 * broker serves as before. */
START_TEST(pg_terminate_backend_of_the_brokers_connections)
{
	struct kit_broker b = {0};
	struct load l = LOAD_PG(30);
	char *v;
	pid_t storm;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-term", "db_connections = 4\n"), 0);
	load_begin(&l, b.port, "fault-term");
	/* The fault: every backend of the broker terminated, again and again for 2 s, while
	 * the running commands end (their rows are completed then) and new execs arrive. */
	v = sv_query(W.db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
	                   "'exec-broker'");
	ck_assert_msg(atoi(v) >= 1, "no connection of the broker to terminate (%s)", v);
	free(v);
	storm = terminate_storm(2000);
	load_release(&l);
	load_new(&l, 503, "audit_unavailable", NULL);
	load_end(&l);
	ck_assert_int_eq(kit_wait(storm, 10000, NULL), 0);
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fault-term");
	fprintf(stderr, "faults: pg_terminate_backend: %d new execs ran, %d refused 503\n", l.ran,
	        l.refused);
	load_free(&l);
}
END_TEST

/* PostgreSQL stopped for away_ms while NRUN execs run (a second broker on the same database
 * too): the running commands end during the outage and their rows are completed once it is
 * back (neither broker takes the other's rows for abandoned); every new exec sent during the
 * outage is refused 503 audit_unavailable and nothing runs; both brokers serve after it. With
 * restart, it is stopped and started at once instead (a restart: every connection cut). */
static void postgres_away(const char *tag, int away_ms, bool restart)
{
	static const char conf[] = "broker_heartbeat_s = 1\npool_kill_grace_s = 1\n";
	struct kit_broker b = {0}, other = {0};
	struct load l = LOAD_PG(5);
	char inst[64], inst2[64];
	long long back;

	snprintf(inst, sizeof(inst), "eb-%s", tag);
	snprintf(inst2, sizeof(inst2), "eb-%s-2", tag);
	ck_assert_int_eq(kit_broker_start(&b, W.db, inst, conf), 0);
	ck_assert_int_eq(kit_broker_start(&other, W.db, inst2, conf), 0);
	load_begin(&l, b.port, tag);
	ck_assert_int_eq(th_pg_stop(&th.pg), 0);
	back = kit_now_ms() + away_ms;
	if (restart)
		ck_assert_int_eq(th_pg_start(&th.pg), 0);
	load_release(&l);
	load_send(&l);
	if (!restart) {
		while (kit_now_ms() < back)
			kit_sleep_ms(100);
		ck_assert_int_eq(th_pg_start(&th.pg), 0);
	}
	load_judge(&l, 503, "audit_unavailable", NULL);
	if (!restart)
		ck_assert_int_eq(l.ran, 0);
	load_end(&l);
	load_serves_on(&l);
	l.port = other.port;
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	ck_assert_int_eq(kit_broker_stop(&other), 0);
	sv_none_running(W.db, inst);
	sv_none_running(W.db, inst2);
	fprintf(stderr, "faults: %s: %d new execs ran, %d refused 503\n", tag, l.ran, l.refused);
	load_free(&l);
}

START_TEST(postgres_stopped_5s)
{
	postgres_away("fault-pg5", 5000, false);
}
END_TEST

/* Longer than the rows' deadlines (5 s), a statement's time (10 s) and the time after which
 * a silent broker is judged gone: the brokers must not sweep each other's rows then. */
START_TEST(postgres_stopped_60s)
{
	postgres_away("fault-pg60", 60000, false);
}
END_TEST

START_TEST(postgres_restarted)
{
	postgres_away("fault-pgre", 0, true);
}
END_TEST

/* A child holding exec_audit locked (ACCESS EXCLUSIVE) for ms: every statement of the
 * brokers on it waits, past their statement_timeout (PGASYNC_STATEMENT_TIMEOUT, 10 s). It
 * writes path once the lock is held. */
static pid_t audit_locked(int ms, const char *path)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		PGconn *c = PQconnectdb(W.db);
		PGresult *res;

		if (PQstatus(c) != CONNECTION_OK)
			_exit(1);
		res = PQexec(c, "BEGIN; LOCK TABLE exec_audit IN ACCESS EXCLUSIVE MODE");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			_exit(2);
		PQclear(res);
		kit_file_write(path, "locked\n", 0644);
		kit_sleep_ms(ms);
		res = PQexec(c, "COMMIT");
		PQclear(res);
		PQfinish(c);
		_exit(0);
	}
	return pid;
}

/* The audit table locked longer than a statement may run (a DBA's ALTER TABLE, a VACUUM
 * FULL): the brokers' statements hit statement_timeout. The commands that end meanwhile get
 * their rows once the lock goes (the last frame waits for it); new execs are refused 503
 * audit_unavailable, nothing run; the broker serves on. */
START_TEST(statement_timeout_hit)
{
	struct kit_broker b = {0};
	struct load l = LOAD_PG(60);
	char *flag = kit_tmp_path("fault-lock"), *v;
	long long end = kit_now_ms() + KIT_WAIT_MS;
	pid_t locker;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-lock", NULL), 0);
	load_begin(&l, b.port, "fault-lock");
	locker = audit_locked(14000, flag);
	while (!kit_file_exists(flag)) {
		ck_assert_msg(kit_now_ms() < end, "the lock was never taken");
		kit_sleep_ms(20);
	}
	load_release(&l);
	load_new(&l, 503, "audit_unavailable", NULL);
	load_end(&l);
	ck_assert_int_eq(kit_wait(locker, 30000, NULL), 0);
	load_serves_on(&l);
	/* The lock outlived a statement's time: every new exec waited for it and was refused
	 * (a broker without a statement deadline would have run them once it went). */
	ck_assert_int_eq(l.refused, NNEW);
	/* exactly one row per exec accepted, none for those refused */
	v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE broker_instance = "
	                   "'eb-fault-lock'");
	ck_assert_int_eq(atoi(v), NRUN + l.ran + 1);
	free(v);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fault-lock");
	fprintf(stderr, "faults: statement_timeout: %d new execs ran, %d refused 503\n", l.ran,
	        l.refused);
	load_free(&l);
	unlink(flag);
	free(flag);
}
END_TEST

/* The host's sshd kills the processes serving the broker's connections (busy and idle
 * sessions) while NRUN execs run there: each of those ends with its stream's last frame
 * transport_error and its row transport_error with no exit code (the outcome is unknown,
 * none is invented); execs sent after it run on new sessions. */
START_TEST(sshd_sessions_killed_under_running_execs)
{
	struct kit_broker b = {0};
	struct kit_conn run[NRUN];
	struct kit_req q[NNEW];
	struct kit_resp r[NNEW], rr;
	struct kit_frames f;
	char *markers[NRUN], *bodies[NRUN], *v, name[160];
	const char *argv[] = {"echo", "ok", NULL};
	pid_t pids[NRUN];
	char *after = sv_body(argv, NULL);

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-cut", NULL), 0);
	for (int i = 0; i < NRUN; i++) {
		struct kit_req sq = {.ws = "ws-cut", .token = W.tok_org};
		long long end = kit_now_ms() + KIT_WAIT_MS;

		snprintf(name, sizeof(name), "fault-cut%d", i);
		markers[i] = kit_tmp_path(name);
		bodies[i] = sv_marked_body(markers[i], 5);
		sq.body = bodies[i];
		ck_assert_int_eq(kit_stream_open(&run[i], b.port, &sq), 0);
		while (!kit_file_exists(markers[i])) {
			ck_assert_msg(kit_now_ms() < end, "exec %d never started", i);
			kit_sleep_ms(20);
		}
	}
	for (int i = 0; i < NRUN; i++)
		pids[i] = sv_pid_wait(markers[i]);
	ck_assert_int_eq(th_sshd_cut_sessions(&W.cut), 0);
	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&run[i], &rr);
		sv_stream(&rr, &f);
		ck_assert_msg(sv_str(sv_last(&f), "error.code") != NULL &&
		                  strcmp(sv_str(sv_last(&f), "error.code"), "transport_error") == 0,
		              "exec %d's last frame: %s", i, rr.body);
		v = sv_row(W.db, rr.rid, "status || ' ' || coalesce(exit_code::text, 'none')");
		ck_assert_str_eq(v, "transport_error none");
		free(v);
		kit_frames_free(&f);
		kit_resp_free(&rr);
	}
	for (int i = 0; i < NNEW; i++)
		q[i] = (struct kit_req){.ws = "ws-cut", .token = W.tok_org, .body = after};
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		ck_assert_msg(r[i].status == 200, "an exec after the cut: %d %s", r[i].status,
		              r[i].body);
		sv_stream(&r[i], &f);
		ck_assert_str_eq(f.out, "ok\n");
		kit_frames_free(&f);
		kit_resp_free(&r[i]);
	}
	/* the commands whose sessions were cut are gone by their deadline (5 s) */
	for (int i = 0; i < NRUN; i++)
		sv_pid_gone(pids[i], "a command whose SSH session was cut");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE broker_instance = "
	                   "'eb-fault-cut' AND status = 'running'");
	ck_assert_str_eq(v, "0");
	free(v);
	for (int i = 0; i < NRUN; i++) {
		unlink(markers[i]);
		free(markers[i]);
		free(bodies[i]);
	}
	free(after);
}
END_TEST

/* The host's sshd comes back with a new host key (a reinstalled machine, or someone in the
 * middle): execs to it get 502 host_key_mismatch, their rows say so, and nothing runs;
 * other workspaces are served as ever. Last: ws-c2's sshd keeps its new key. */
START_TEST(sshd_back_with_a_new_host_key_runs_nothing)
{
	struct kit_broker b = {0};
	struct th_sshd *h = &W.conc[1]; /* ws-c2 */
	const char *keygen[] = {"ssh-keygen", "-q", "-t",        "ed25519", "-N",
	                        "",           "-f", h->host_key, NULL};
	const char *argv[] = {"echo", "ok", NULL};
	char *ok = sv_body(argv, NULL), *markers[NNEW], *bodies[NNEW], name[200];
	struct kit_req q[NNEW], one = {.ws = "ws-c2", .token = W.tok_other, .body = ok};
	struct kit_resp r[NNEW], rr;
	int status = -1;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-key", NULL), 0);
	sv_http(b.port, &one, &rr); /* a warm session with the old key */
	ck_assert_int_eq(rr.status, 200);
	kit_resp_free(&rr);
	ck_assert_int_eq(th_sshd_stop(h), 0);
	unlink(h->host_key);
	snprintf(name, sizeof(name), "%s.pub", h->host_key);
	unlink(name);
	ck_assert_int_eq(kit_run(keygen, NULL, NULL, NULL, NULL, &status), 0);
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(th_sshd_restart(h), 0);
	for (int i = 0; i < NNEW; i++) {
		snprintf(name, sizeof(name), "fault-key%d", i);
		markers[i] = kit_tmp_path(name);
		bodies[i] = sv_marked_body(markers[i], 10);
		q[i] = (struct kit_req){.ws = "ws-c2", .token = W.tok_other, .body = bodies[i]};
	}
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		sv_error(W.db, &r[i], 502, "host_key_mismatch", "failed_to_start",
		         "host_key_mismatch");
		ck_assert_msg(!kit_file_exists(markers[i]),
		              "a command ran on a host with a new key");
		kit_resp_free(&r[i]);
	}
	one.ws = "ws-c0";
	one.token = W.tok_org;
	sv_http(b.port, &one, &rr);
	ck_assert_msg(rr.status == 200, "another workspace after the key change: %d", rr.status);
	kit_resp_free(&rr);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	for (int i = 0; i < NNEW; i++) {
		unlink(markers[i]);
		free(markers[i]);
		free(bodies[i]);
	}
	free(ok);
}
END_TEST

/* The backends serving the broker stop answering while execs run and arrive (SIGSTOP: a
 * frozen machine, or one gone while its kernel still acknowledges): no statement_timeout can
 * come back, so the broker's own answer deadline (PGASYNC_ANSWER_TIMEOUT_MS) drops those
 * connections; the completions are retried on new ones and land, the new execs run or are
 * refused 503 with nothing run. The backends are let go after 40 s whatever happens. */
START_TEST(postgres_backends_go_silent)
{
	struct kit_broker b = {0};
	struct load l = LOAD_PG(120);
	char *v, *p, *save = NULL;

	strays = 0;
	pid_t stopped[16], waker;
	int n = 0;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-silent", "db_connections = 2\n"), 0);
	load_begin(&l, b.port, "fault-silent");
	v = sv_query(W.db, "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE "
	                   "application_name = 'exec-broker'");
	for (p = strtok_r(v, " ", &save); p != NULL && n < 16; p = strtok_r(NULL, " ", &save))
		stopped[n++] = (pid_t)atoi(p); /* backends of this run's cluster */
	free(v);
	ck_assert_int_ge(n, 1);
	waker = fork();
	ck_assert_int_ge(waker, 0);
	if (waker == 0) {
		sleep(40);
		for (int i = 0; i < n; i++)
			kill(stopped[i], SIGCONT);
		_exit(0);
	}
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(kill(stopped[i], SIGSTOP), 0);
	load_release(&l);
	load_send(&l);
	load_end(&l); /* their completions were sent to the silent backends */
	for (int i = 0; i < n; i++)
		kill(stopped[i], SIGCONT);
	kill(waker, SIGKILL);
	ck_assert_int_eq(kit_wait(waker, 10000, NULL), 0);
	load_judge(&l, 503, "audit_unavailable", NULL);
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fault-silent");
	fprintf(stderr,
	        "faults: %d silent backends: %d new execs ran, %d refused 503 (%d of them with a "
	        "row inserted late, ended failed_to_start)\n",
	        n, l.ran, l.refused, strays);
	load_free(&l);
}
END_TEST

/* The host's sshd listener dies (OOM killer, a botched upgrade) while the processes serving
 * established connections live on. The execs running there end well on their sessions; the
 * new ones, which need more sessions than are open, wait for a channel on those (a connection
 * refused does not fail them while a session lives) and run. Once those sessions die too, a
 * new exec is refused 502 ssh_connect_failed, its row failed_to_start, nothing run; once
 * sshd is back, all run. */
START_TEST(sshd_listener_killed_under_running_execs)
{
	struct kit_broker b = {0};
	struct th_sshd *h = &W.conc[0]; /* ws-c1 */
	struct load l = {.token = W.tok_org,
	                 .ws_run = {"ws-c1", "ws-c1"},
	                 .ws_new = {"ws-c1", "ws-c1"},
	                 .timeout_s = 60};
	struct kit_procs sessions = {0};
	struct kit_conn nw[NNEW];
	struct kit_resp rr;
	pid_t listener = th_sshd_pid(h);

	ck_assert_int_gt(listener, 0);
	/* NRUN execs fill two sessions: the new ones need more */
	ck_assert_int_eq(
	    kit_broker_start(&b, W.db, "eb-fault-listen", "pool_max_channels_per_session = 2\n"),
	    0);
	load_begin(&l, b.port, "fault-listen");
	/* The serving processes, which outlive the listener: stopped by this test. */
	kit_procs_add_tree(&sessions, listener, SIGTERM);
	ck_assert_int_eq(kill(listener, SIGKILL), 0);
	while (kit_pid_reap_alive(listener))
		kit_sleep_ms(20);
	for (int i = 0; i < NNEW; i++) {
		struct kit_req q = {.ws = "ws-c1", .token = l.token, .body = l.bodies[NRUN + i]};

		ck_assert_int_eq(kit_stream_open(&nw[i], b.port, &q), 0);
	}
	kit_sleep_ms(500); /* they have tried to connect, and wait */
	load_release(&l);
	load_end(&l);
	for (int i = 0; i < NNEW; i++) {
		kit_stream_finish(&nw[i], &rr);
		assert_ran(&rr, "an exec sent after the listener died");
		kit_resp_free(&rr);
	}
	/* The sessions go too: nothing can serve ws-c1 now. */
	ck_assert_int_eq(kit_procs_stop(&sessions, 10000), 0);
	kit_procs_free(&sessions);
	unlink(l.markers[NRUN]);
	sv_http(b.port, &(struct kit_req){.ws = "ws-c1", .token = l.token, .body = l.bodies[NRUN]},
	        &rr);
	sv_error(W.db, &rr, 502, "ssh_connect_failed", "failed_to_start", "ssh_connect_failed");
	ck_assert(!kit_file_exists(l.markers[NRUN]));
	kit_resp_free(&rr);
	ck_assert_int_eq(th_sshd_restart(h), 0);
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fault-listen");
	fprintf(stderr,
	        "faults: sshd listener killed: %d running and %d new execs ran on the "
	        "sessions left, then 502 ssh_connect_failed\n",
	        NRUN, NNEW);
	load_free(&l);
}
END_TEST

/* SIGTERM while execs run and new ones arrive: the running ones finish whole (the grace is
 * theirs), each new one is refused (503 shutting_down while the broker still answers, or no
 * connection once its listener closed) and never runs; the broker exits 0 once the running
 * ones are done, no row left running, and a new process serves. */
START_TEST(broker_sigterm_with_execs_running)
{
	struct kit_broker b = {0};
	struct load l = LOAD_PG(30);
	int answered = 0, unreachable = 0;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-term2", "shutdown_grace_s = 60\n"),
	                 0);
	load_begin(&l, b.port, "fault-sigterm");
	ck_assert_int_eq(kill(b.pid, SIGTERM), 0);
	/* once the broker has taken the signal: no longer ready, or no longer listening */
	for (long long end = kit_now_ms() + KIT_WAIT_MS;;) {
		struct kit_resp rr;
		int status;

		sv_http(b.port,
		        &(struct kit_req){.method = "GET", .path = "/readyz", .max_time_s = 5},
		        &rr);
		status = rr.status;
		kit_resp_free(&rr);
		if (status != 200)
			break;
		ck_assert_msg(kit_now_ms() < end, "still ready after SIGTERM");
		kit_sleep_ms(20);
	}
	load_send(&l);
	for (int i = 0; i < NNEW; i++) {
		if (l.r[i].status == 0) {
			unreachable++;
		} else {
			sv_error(W.db, &l.r[i], 503, "shutting_down", NULL, NULL);
			answered++;
		}
		ck_assert_msg(!kit_file_exists(l.markers[NRUN + i]), "a refused exec ran");
		kit_resp_free(&l.r[i]);
	}
	ck_assert_int_eq(kit_broker_wait(&b, 1000), -1); /* still running: its execs are */
	load_release(&l);
	load_end(&l);
	ck_assert_int_eq(kit_broker_wait(&b, KIT_WAIT_MS), 0);
	ck_assert(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0);
	sv_none_running(W.db, "eb-fault-term2");
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-term2", NULL), 0);
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	fprintf(stderr,
	        "faults: SIGTERM: %d running execs finished, %d new ones refused 503, %d found no "
	        "listener\n",
	        NRUN, answered, unreachable);
	load_free(&l);
}
END_TEST

/* A detached exec on port that waits for the file gate, then exits with code: its exec_id
 * (static), after the 202. */
static const char *detach(int port, const char *ws, const char *gate, int code)
{
	static char id[64];
	char script[120];
	const char *argv[] = {"sh", "-c", script, gate, NULL};
	char *body;
	struct kit_resp r;
	json_t *o;

	snprintf(script, sizeof(script),
	         "while [ ! -e \"$0\" ]; do sleep 0.05; done; echo det; exit %d", code);
	body = sv_body(argv, json_pack("{s:b}", "detach", 1));
	sv_http(port, &(struct kit_req){.ws = ws, .token = W.tok_org, .body = body}, &r);
	ck_assert_msg(r.status == 202, "detached start: %d %s", r.status, r.body);
	o = sv_json(&r);
	snprintf(id, sizeof(id), "%s", sv_str(o, "exec_id"));
	kit_detached_remember(id);
	json_decref(o);
	kit_resp_free(&r);
	free(body);
	return id;
}

/* The final row of exec id, "status exit_code", once it is no longer running (waits). */
static char *final_row(const char *id)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char sql[300], *v;

	snprintf(sql, sizeof(sql),
	         "SELECT status || ' ' || coalesce(exit_code::text, 'none') FROM exec_audit WHERE "
	         "exec_id = '%s'",
	         id);
	for (;;) {
		v = sv_query(W.db, sql);
		if (strncmp(v, "running", 7) != 0)
			return v;
		ck_assert_msg(kit_now_ms() < end, "exec %s still running", id);
		free(v);
		kit_sleep_ms(100);
	}
}

/* The broker SIGKILLed while attached and detached execs run, then started again: the
 * attached commands end when their connections go (the session's watcher), and their rows
 * say abandoned with no exit code; requests sent while it is dead reach nothing; the
 * detached ones run on, end while no broker runs, and their rows get their own exit codes
 * after the restart; then everything runs. */
START_TEST(broker_sigkilled_with_attached_and_detached_then_restarted)
{
	static const char conf[] = "pool_kill_grace_s = 1\n";
	struct kit_broker b = {0};
	struct load l = LOAD_PG(30);
	struct kit_req q[NNEW];
	struct kit_resp r[NNEW], rr;
	char det[2][64], rid[NRUN][80], *v, *gate = kit_tmp_path("fault-kill-det");
	pid_t pids[NRUN];

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-kill", conf), 0);
	load_begin(&l, b.port, "fault-kill");
	for (int i = 0; i < 2; i++)
		snprintf(det[i], sizeof(det[i]), "%s",
		         detach(b.port, i ? "ws-a2" : "ws-a1", gate, 7 + i));
	for (int i = 0; i < NRUN; i++) {
		snprintf(rid[i], sizeof(rid[i]), "%s", l.run[i].r.rid);
		pids[i] = sv_pid_wait(l.markers[i]);
	}
	kit_broker_kill(&b);
	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&l.run[i], &rr);
		ck_assert_msg(strstr(rr.body, "\"exit_code\"") == NULL,
		              "an exit code from a killed broker: %s", rr.body);
		kit_resp_free(&rr);
	}
	for (int i = 0; i < NNEW; i++)
		q[i] = (struct kit_req){.ws = l.ws_new[i % 2],
		                        .token = l.token,
		                        .body = l.bodies[NRUN + i],
		                        .max_time_s = 10};
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		ck_assert_int_eq(r[i].status, 0);
		kit_resp_free(&r[i]);
	}
	for (int i = 0; i < NRUN; i++)
		sv_pid_gone(pids[i], "an attached command of the killed broker");
	sv_touch(gate); /* the detached commands end while no broker runs */
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-kill", conf), 0);
	for (int i = 0; i < NRUN; i++) {
		v = sv_row(W.db, rid[i], "status || ' ' || coalesce(exit_code::text, 'none')");
		ck_assert_str_eq(v, "abandoned none");
		free(v);
	}
	for (int i = 0; i < 2; i++) {
		char want[32];

		snprintf(want, sizeof(want), "exited %d", 7 + i);
		v = final_row(det[i]);
		ck_assert_str_eq(v, want);
		free(v);
	}
	for (int i = 0; i < NNEW; i++)
		ck_assert_msg(!kit_file_exists(l.markers[NRUN + i]),
		              "a request sent to the dead broker ran");
	load_serves_on(&l);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fault-kill");
	fprintf(stderr,
	        "faults: broker SIGKILLed: %d attached rows abandoned, their commands gone; 2 "
	        "detached exited 7 and 8 after the restart; %d requests to it refused\n",
	        NRUN, NNEW);
	load_free(&l);
	unlink(gate);
	free(gate);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 120)

int main(void)
{
	Suite *s = suite_create("faults");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, pg_terminate_backend_of_the_brokers_connections);
	ADD(s, postgres_stopped_5s);
	SV_ADD_LOOP(s, postgres_stopped_60s, 1, 240);
	ADD(s, postgres_restarted);
	ADD(s, statement_timeout_hit);
	ADD(s, postgres_backends_go_silent);
	ADD(s, sshd_sessions_killed_under_running_execs);
	ADD(s, sshd_listener_killed_under_running_execs);
	ADD(s, broker_sigkilled_with_attached_and_detached_then_restarted);
	ADD(s, broker_sigterm_with_execs_running);
	ADD(s, sshd_back_with_a_new_host_key_runs_nothing); /* last: the key stays new */
	failed = tu_run_suite(s);
	kit_detached_end_all();
	th_teardown();
	return failed;
}
