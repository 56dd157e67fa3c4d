/* tests/check_audit.c: the audit statements against the real schema: a running row, its
 * one completion (a retry changes nothing), denied rows, abandoned rows, and argv with
 * every awkward character stored exactly. */
#include <check.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "audit/writer.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/runner.h"

#define B(s) ((struct eb_bytes){s, sizeof(s) - 1})

static char db[512];

static void setup(void)
{
	tu_migrated_db(db, sizeof(db));
}

/* Runs sql with n of the params; returns the affected row count, or -1 (error in err). */
static int run(const char *sql, int n, const char *const *params, char *err, size_t errlen)
{
	PGconn *c = PQconnectdb(db);
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	int rows = -1;

	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		rows = atoi(PQcmdTuples(res));
	else
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	return rows;
}

/* Runs one or more statements as the test's superuser; fails the test on error. */
static void sql_ok(const char *sql)
{
	PGconn *c = PQconnectdb(db);
	PGresult *res = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql,
	              PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
}

static const struct eb_bytes argv[] = {B("sh"),     B("-c"),   B("echo \"$1\" 'x' \\n {a,b}"),
                                       B(""),       B("NULL"), B("caf\xc3\xa9 \xf0\x9f\x9a\x80"),
                                       B("a,b}{\"")};
static const struct eb_bytes env_names[] = {B("LANG"), B("SECRET_TOKEN")};

static struct audit_begin begin(const char *kind, const char *reason)
{
	struct audit_begin b = {.request_id = "req-1",
	                        .workspace_id = "ws-1",
	                        .org_id = "acme",
	                        .actor = "token:ebk_AbCd1234",
	                        .actor_kind = kind,
	                        .break_glass_reason = reason,
	                        .argv = argv,
	                        .argc = sizeof(argv) / sizeof(argv[0]),
	                        .env_names = env_names,
	                        .nenv = 2,
	                        .cwd = "/srv",
	                        .stdin_bytes = 12,
	                        .client_addr = "127.0.0.1",
	                        .timeout_s = 30,
	                        .broker_instance = "broker-a"};
	audit_new_exec_id(b.exec_id);
	return b;
}

START_TEST(row_is_written_running_then_completed_once)
{
	struct audit_begin b = begin("workspace", NULL);
	struct audit_end e = {.exec_id = b.exec_id,
	                      .status = "exited",
	                      .exit_code = 7,
	                      .duration_ms = 12,
	                      .stdout_bytes = 6,
	                      .stderr_bytes = 1,
	                      .stdout_truncated = true};
	const char *p[AUDIT_DENIED_NPARAMS], *q[AUDIT_END_NPARAMS];
	char err[512] = "", *store, *store2, sql[256], *v;

	ck_assert_int_eq(audit_begin_params(&b, p, &store), 0);
	ck_assert_msg(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, p, err, sizeof(err)) == 1, "%s",
	              err);
	snprintf(sql, sizeof(sql),
	         "SELECT status || cardinality(argv) || array_to_string(env_keys, ',') "
	         "|| stdin_bytes || host(client_addr) FROM exec_audit WHERE exec_id = '%s'",
	         b.exec_id);
	v = tu_query(db, sql);
	ck_assert_str_eq(v, "running7LANG,SECRET_TOKEN12127.0.0.1");
	free(v);
	/* argv stored exactly, element by element */
	for (size_t i = 0; i < b.argc; i++) {
		char q2[256];
		snprintf(q2, sizeof(q2), "SELECT argv[%zu] FROM exec_audit WHERE exec_id = '%s'",
		         i + 1, b.exec_id);
		v = tu_query(db, q2);
		ck_assert_uint_eq(strlen(v), argv[i].len);
		ck_assert_int_eq(memcmp(v, argv[i].p, argv[i].len), 0);
		free(v);
	}
	ck_assert_int_eq(audit_end_params(&e, q, &store2), 0);
	ck_assert_msg(run(audit_end_sql, AUDIT_END_NPARAMS, q, err, sizeof(err)) == 1, "%s", err);
	/* A retry after a lost reply changes nothing, and does not fail. */
	e.exit_code = 0;
	free(store2);
	ck_assert_int_eq(audit_end_params(&e, q, &store2), 0);
	ck_assert_int_eq(run(audit_end_sql, AUDIT_END_NPARAMS, q, err, sizeof(err)), 0);
	snprintf(sql, sizeof(sql),
	         "SELECT status || exit_code || duration_ms || stdout_truncated "
	         "|| stderr_truncated FROM exec_audit WHERE exec_id = '%s'",
	         b.exec_id);
	v = tu_query(db, sql);
	ck_assert_str_eq(v, "exited712truefalse");
	free(v);
	free(store);
	free(store2);
}
END_TEST

START_TEST(signals_failures_and_break_glass)
{
	struct audit_begin b = begin("admin", "incident 4711");
	struct audit_end e = {
	    .exec_id = b.exec_id, .status = "signaled", .exit_signal = "TERM", .duration_ms = 5};
	const char *p[AUDIT_DENIED_NPARAMS], *q[AUDIT_END_NPARAMS];
	char err[512] = "", *store, *store2, sql[256], *v;

	ck_assert_int_eq(audit_begin_params(&b, p, &store), 0);
	ck_assert_msg(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, p, err, sizeof(err)) == 1, "%s",
	              err);
	ck_assert_int_eq(audit_end_params(&e, q, &store2), 0);
	ck_assert_msg(run(audit_end_sql, AUDIT_END_NPARAMS, q, err, sizeof(err)) == 1, "%s", err);
	snprintf(sql, sizeof(sql),
	         "SELECT status || exit_signal || coalesce(exit_code::text, '-') "
	         "|| break_glass_reason FROM exec_audit WHERE exec_id = '%s'",
	         b.exec_id);
	v = tu_query(db, sql);
	ck_assert_str_eq(v, "signaledTERM-incident 4711");
	free(v);
	free(store);
	free(store2);
	/* failed_to_start needs its reason */
	b = begin("org", NULL);
	ck_assert_int_eq(audit_begin_params(&b, p, &store), 0);
	ck_assert_int_eq(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, p, err, sizeof(err)), 1);
	e = (struct audit_end){
	    .exec_id = b.exec_id, .status = "failed_to_start", .error_code = "host_key_mismatch"};
	ck_assert_int_eq(audit_end_params(&e, q, &store2), 0);
	ck_assert_msg(run(audit_end_sql, AUDIT_END_NPARAMS, q, err, sizeof(err)) == 1, "%s", err);
	free(store);
	free(store2);
}
END_TEST

START_TEST(denied_rows_are_final_at_once)
{
	struct audit_begin b = begin("org", NULL);
	const char *p[AUDIT_DENIED_NPARAMS];
	char err[512] = "", *store, sql[256], *v;

	b.error_code = "forbidden_tier";
	ck_assert_int_eq(audit_begin_params(&b, p, &store), 0);
	ck_assert_msg(run(audit_denied_sql, AUDIT_DENIED_NPARAMS, p, err, sizeof(err)) == 1, "%s",
	              err);
	snprintf(sql, sizeof(sql),
	         "SELECT status || error_code || (finished_at IS NOT NULL) "
	         "FROM exec_audit WHERE exec_id = '%s'",
	         b.exec_id);
	v = tu_query(db, sql);
	ck_assert_str_eq(v, "deniedforbidden_tiertrue");
	free(v);
	free(store);
}
END_TEST

START_TEST(rows_left_running_become_abandoned)
{
	struct audit_begin mine = begin("workspace", NULL), other = begin("workspace", NULL);
	const char *p[AUDIT_DENIED_NPARAMS], *q[AUDIT_DENIED_NPARAMS];
	const char *abandon[1] = {"broker-a"};
	char err[512] = "", *store, *store2, *v;

	other.broker_instance = "broker-b";
	ck_assert_int_eq(audit_begin_params(&mine, p, &store), 0);
	ck_assert_int_eq(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, p, err, sizeof(err)), 1);
	ck_assert_int_eq(audit_begin_params(&other, q, &store2), 0);
	ck_assert_int_eq(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, q, err, sizeof(err)), 1);
	/* Only this broker's row: broker-b's exec is still running, as far as anyone knows. */
	ck_assert_int_eq(run(audit_abandon_sql, 1, abandon, err, sizeof(err)), 1);
	v = tu_query(db, "SELECT string_agg(broker_instance || '=' || status, ',' ORDER BY "
	                 "broker_instance) FROM exec_audit");
	ck_assert_str_eq(v, "broker-a=abandoned,broker-b=running");
	free(v);
	ck_assert_int_eq(run(audit_abandon_sql, 1, abandon, err, sizeof(err)), 0);
	free(store);
	free(store2);
}
END_TEST

/* A running row written by broker as long ago as age (an SQL interval). */
static void running_row(const char *broker, const char *age)
{
	struct audit_begin b = begin("workspace", NULL);
	const char *p[AUDIT_DENIED_NPARAMS];
	char err[512] = "", *store, sql[300];

	b.broker_instance = broker;
	ck_assert_int_eq(audit_begin_params(&b, p, &store), 0);
	ck_assert_msg(run(audit_begin_sql, AUDIT_BEGIN_NPARAMS, p, err, sizeof(err)) == 1, "%s",
	              err);
	free(store);
	snprintf(sql, sizeof(sql),
	         "ALTER TABLE exec_audit DISABLE TRIGGER exec_audit_final;"
	         "UPDATE exec_audit SET started_at = now() - interval '%s' WHERE exec_id = '%s';"
	         "ALTER TABLE exec_audit ENABLE TRIGGER exec_audit_final",
	         age, b.exec_id);
	sql_ok(sql);
}

static char *statuses(void)
{
	return tu_query(db, "SELECT string_agg(coalesce(broker_instance, '-') || '=' || status, "
	                    "',' ORDER BY broker_instance NULLS FIRST) FROM exec_audit");
}

/* The sweep: the rows of a broker not heard from (or of none) become abandoned once past
 * their deadline; a live broker's rows and rows still within their time are left alone, and
 * a sweeper that was itself just (re)connected judges nobody yet. */
START_TEST(rows_of_gone_brokers_are_swept_past_their_deadline)
{
	const char *beat[2] = {"broker-a", "20"};
	const char *beat_b[2] = {"broker-b", "20"}, *beat_c[2] = {"broker-c", "20"};
	const char *sweep[3] = {"broker-a", "5", "30"};
	char err[512] = "", *v;

	running_row("broker-b", "2 hours");  /* alive */
	running_row("broker-c", "2 hours");  /* gone */
	running_row("broker-d", "1 second"); /* gone, but the row is within its time */
	running_row(NULL, "2 hours");        /* written before rows named their broker */
	ck_assert_msg(run(audit_heartbeat_sql, 2, beat, err, sizeof(err)) == 1, "%s", err);
	ck_assert_int_eq(run(audit_heartbeat_sql, 2, beat_b, err, sizeof(err)), 1);
	ck_assert_int_eq(run(audit_heartbeat_sql, 2, beat_c, err, sizeof(err)), 1);
	sql_ok("UPDATE broker_instances SET heartbeat_at = now() - "
	       "interval '1 hour' WHERE instance = 'broker-c'");
	/* broker-a has only just been heard from: it judges nobody yet. */
	ck_assert_msg(run(audit_sweep_sql, 3, sweep, err, sizeof(err)) == 0, "%s", err);
	sql_ok("UPDATE broker_instances SET up_since = now() - "
	       "interval '1 hour' WHERE instance = 'broker-a'");
	ck_assert_int_eq(run(audit_sweep_sql, 3, sweep, err, sizeof(err)), 2);
	v = statuses();
	ck_assert_str_eq(v, "-=abandoned,broker-b=running,broker-c=abandoned,broker-d=running");
	free(v);
	ck_assert_int_eq(run(audit_sweep_sql, 3, sweep, err, sizeof(err)), 0);
}
END_TEST

/* A heartbeat after a silence longer than the gap starts the broker's presence anew; one on
 * time keeps it. */
START_TEST(a_heartbeat_after_a_gap_starts_presence_anew)
{
	const char *beat[2] = {"broker-a", "20"};
	char err[512] = "", *v;

	ck_assert_int_eq(run(audit_heartbeat_sql, 2, beat, err, sizeof(err)), 1);
	sql_ok("UPDATE broker_instances SET up_since = now() - "
	       "interval '1 hour', heartbeat_at = now() - interval '10 seconds'");
	ck_assert_int_eq(run(audit_heartbeat_sql, 2, beat, err, sizeof(err)), 1);
	v = tu_query(db, "SELECT up_since < now() - interval '30 minutes' FROM broker_instances");
	ck_assert_str_eq(v, "t");
	free(v);
	sql_ok("UPDATE broker_instances SET heartbeat_at = now() - "
	       "interval '1 minute'");
	ck_assert_int_eq(run(audit_heartbeat_sql, 2, beat, err, sizeof(err)), 1);
	v = tu_query(db, "SELECT up_since > now() - interval '1 minute' FROM broker_instances");
	ck_assert_str_eq(v, "t");
	free(v);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("audit");
	int failed;

	if (th_setup(TH_PG) != 0)
		return EXIT_FAILURE;
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, row_is_written_running_then_completed_once);
	tcase_add_test(tc, signals_failures_and_break_glass);
	tcase_add_test(tc, denied_rows_are_final_at_once);
	tcase_add_test(tc, rows_left_running_become_abandoned);
	tcase_add_test(tc, rows_of_gone_brokers_are_swept_past_their_deadline);
	tcase_add_test(tc, a_heartbeat_after_a_gap_starts_presence_anew);
	suite_add_tcase(s, tc);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
