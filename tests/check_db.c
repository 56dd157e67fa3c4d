/* tests/check_db.c: migrations and the schema's own guarantees, against a real PostgreSQL
 * started by the harness: migrate twice, two migrators at once, tampered checksums and
 * unknown versions refused, failed migrations rolled back, and an audit table that refuses
 * DELETE, TRUNCATE and changes to finished rows. */
#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db/migrate.h"
#include "tests/kit/broker.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/runner.h"

static const char *const migrate_args[] = {"migrate", NULL};
static const char *const status_args[] = {"migrate", "--status", NULL};

START_TEST(migrate_twice_is_a_noop)
{
	char db[512], sum[MIGRATE_CHECKSUM_LEN + 1], sql[256];
	struct tu_run r;

	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	tu_broker(&r, db, NULL, status_args);
	ck_assert_int_eq(r.exit_code, 1); /* pending */
	ck_assert_ptr_nonnull(strstr(r.out, "pending"));
	tu_run_free(&r);

	tu_broker(&r, db, NULL, migrate_args);
	ck_assert_msg(r.exit_code == 0, "%s", r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "applied 0001_initial"));
	tu_run_free(&r);

	tu_broker(&r, db, NULL, migrate_args);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_ptr_null(strstr(r.out, "applied 0001"));
	ck_assert_ptr_nonnull(strstr(r.out, "nothing to apply"));
	ck_assert_str_eq(r.err, "");
	tu_run_free(&r);

	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM schema_migrations"),
	                 (long long)migrations_embedded_count);
	migrate_checksum(&migrations_embedded[0], sum);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM schema_migrations WHERE version = 1 "
	         "AND checksum = '%s'",
	         sum);
	ck_assert_int_eq(tu_query_int(db, sql), 1);

	tu_broker(&r, db, NULL, status_args);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "applied"));
	ck_assert_ptr_null(strstr(r.out, "pending"));
	tu_run_free(&r);
}
END_TEST

/* Two migrators held at the advisory lock, then released together: one applies, the other
 * waits and finds nothing to do; neither fails. */
START_TEST(concurrent_migrators_are_safe)
{
	char db[512], url[600];
	int out_fd[2][2];
	pid_t pid[2];
	PGconn *holder;
	PGresult *res;
	int applied = 0;

	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	holder = PQconnectdb(db);
	ck_assert_int_eq(PQstatus(holder), CONNECTION_OK);
	res = PQexec(holder, "SELECT pg_advisory_lock(7305521845022908788)");
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);

	snprintf(url, sizeof(url), "EXEC_BROKER_DATABASE_URL=%s", db);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pipe(out_fd[i]), 0);
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			char *env[] = {url, "EXEC_BROKER_CONFIG=/dev/null", NULL};
			dup2(out_fd[i][1], 1);
			execle(kit_broker_bin(), kit_broker_bin(), "migrate", (char *)NULL, env);
			_exit(127);
		}
		close(out_fd[i][1]);
	}
	/* Both must be waiting on the lock, not finished or failed. */
	for (int tries = 0; tries < 100; tries++) {
		char *n = tu_query(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
		                       "AND NOT granted");
		int waiting = atoi(n);
		free(n);
		if (waiting == 2)
			break;
		usleep(50000);
	}
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM pg_locks WHERE locktype = "
	                                  "'advisory' AND NOT granted"),
	                 2);
	PQfinish(holder); /* releases the lock */

	for (int i = 0; i < 2; i++) {
		char buf[4096];
		ssize_t n, len = 0;
		int status;
		while ((n = read(out_fd[i][0], buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
			len += n;
		buf[len] = '\0';
		close(out_fd[i][0]);
		ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "migrator %d: %s", i,
		              buf);
		applied += strstr(buf, "applied 0001_initial") != NULL;
	}
	ck_assert_int_eq(applied, 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM schema_migrations"),
	                 (long long)migrations_embedded_count);
}
END_TEST

START_TEST(changed_checksum_is_refused)
{
	char db[512];
	struct tu_run r;

	tu_migrated_db(db, sizeof(db));
	free(tu_query(db, "UPDATE schema_migrations SET checksum = repeat('0', 64) "
	                  "WHERE version = 1"));
	tu_broker(&r, db, NULL, migrate_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_int_eq(tu_lines(r.err), 1);
	ck_assert_msg(strstr(r.err, "0001_initial was changed after it was applied"), "%s", r.err);
	tu_run_free(&r);

	tu_broker(&r, db, NULL, status_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_ptr_nonnull(strstr(r.out, "changed since applied"));
	tu_run_free(&r);
}
END_TEST

START_TEST(unknown_version_is_refused)
{
	char db[512];
	struct tu_run r;

	tu_migrated_db(db, sizeof(db));
	free(tu_query(db, "INSERT INTO schema_migrations (version, name, checksum) "
	                  "VALUES (9999, 'from_the_future', repeat('a', 64))"));
	tu_broker(&r, db, NULL, migrate_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_msg(strstr(r.err, "9999") && strstr(r.err, "upgrade exec-broker"), "%s", r.err);
	tu_run_free(&r);

	tu_broker(&r, db, NULL, status_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_ptr_nonnull(strstr(r.out, "unknown to this exec-broker"));
	tu_run_free(&r);
}
END_TEST

/* A migration that fails part-way leaves nothing behind: not its tables, not its row. */
START_TEST(failed_migration_is_rolled_back)
{
	char db[512];
	struct tu_run r;

	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	free(tu_query(db, "CREATE TABLE exec_audit (x int)")); /* 0001 creates it too */
	tu_broker(&r, db, NULL, migrate_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_msg(strstr(r.err, "0001_initial failed and was rolled back") &&
	                  strstr(r.err, "exec_audit"),
	              "%s", r.err);
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM schema_migrations"), 0);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM pg_tables WHERE tablename IN "
	                                  "('workspaces', 'api_tokens')"),
	                 0);
}
END_TEST

START_TEST(unreachable_database_is_one_clear_line)
{
	struct tu_run r;

	tu_broker(&r, "host=/nonexistent-dir port=5432 dbname=x", NULL, migrate_args);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_int_eq(tu_lines(r.err), 1);
	ck_assert_msg(strncmp(r.err, "exec-broker: cannot connect to the database", 43) == 0, "%s",
	              r.err);
	tu_run_free(&r);
}
END_TEST

#define RUNNING_ROW                                                                                \
	"INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "               \
	"actor_kind, argv, status) VALUES ('00000000-0000-4000-8000-000000000001', 'req-1', "      \
	"'ws-1', 'acme', 'token:ebk_AAAAAAAA', 'workspace', ARRAY['true'], 'running')"
#define ROW1 "exec_id = '00000000-0000-4000-8000-000000000001'"

START_TEST(audit_rows_cannot_be_deleted_or_truncated)
{
	char db[512];

	tu_migrated_db(db, sizeof(db));
	free(tu_query(db, RUNNING_ROW));
	ck_assert_str_eq(tu_query_fails(db, "DELETE FROM exec_audit WHERE " ROW1), "42501");
	ck_assert_str_eq(tu_query_fails(db, "TRUNCATE exec_audit"), "42501");
	ck_assert_str_eq(tu_query_fails(db, "DELETE FROM exec_audit"), "42501");
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM exec_audit"), 1);
}
END_TEST

START_TEST(audit_rows_complete_once_then_are_final)
{
	char db[512];
	char *v;

	tu_migrated_db(db, sizeof(db));
	free(tu_query(db, RUNNING_ROW));
	/* While running, what identifies the exec cannot change. */
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET argv = ARRAY['rm'] WHERE " ROW1),
	                 "42501");
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET actor = 'x' WHERE " ROW1),
	                 "42501");
	/* Completing it works once. */
	free(tu_query(db, "UPDATE exec_audit SET status = 'exited', exit_code = 0, "
	                  "finished_at = now(), duration_ms = 5 WHERE " ROW1));
	v = tu_query(db, "SELECT status FROM exec_audit WHERE " ROW1);
	ck_assert_str_eq(v, "exited");
	free(v);
	/* Then nothing changes any more. */
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET exit_code = 1 WHERE " ROW1),
	                 "42501");
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET status = 'running', "
	                                    "finished_at = NULL, exit_code = NULL WHERE " ROW1),
	                 "42501");
	v = tu_query(db, "SELECT exit_code FROM exec_audit WHERE " ROW1);
	ck_assert_str_eq(v, "0");
	free(v);
}
END_TEST

/* A final row waiting for its link (seal_pending) changes only by being linked, once: an
 * update that sets the link and anything else besides is refused by the guard (42501, not a
 * check constraint's 23514), whether the other column goes from a value to NULL, from NULL
 * to a value, or to another value. */
START_TEST(pending_row_changes_only_by_its_link)
{
#define LINK "UPDATE exec_audit SET chain_seq = 1, chain_hash = sha256(''), seal_pending = false"
	static const char *const extra[] = {
	    "exit_code = 1",
	    "exit_code = NULL",
	    "cwd = '/srv'",
	    "cwd = ''",
	    "argv = ARRAY['true', 'x']",
	    "argv = '[0:0]={true}'",
	    "env_keys = '{NULL}'",
	    "client_addr = '10.0.0.1'",
	    "finished_at = finished_at + interval '1 us'",
	    "status = 'timeout', exit_code = NULL",
	    "stdout_bytes = 1",
	    "stdout_truncated = true",
	    "break_glass_reason = 'x'",
	    "broker_instance = 'b-2'",
	    "detached = true",
	    "name = 'n'",
	    "batch_id = '00000000-0000-4000-8000-000000000009'",
	    "request_id = 'req-1 '",
	};
	char db[512], sql[512];
	char *v;

	tu_migrated_db(db, sizeof(db));
	free(tu_query(db, RUNNING_ROW));
	free(tu_query(db, "UPDATE exec_audit SET status = 'exited', exit_code = 0, "
	                  "finished_at = now(), duration_ms = 5, seal_pending = true WHERE " ROW1));
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		snprintf(sql, sizeof(sql), LINK ", %s WHERE " ROW1, extra[i]);
		ck_assert_msg(strcmp(tu_query_fails(db, sql), "42501") == 0, "%s: allowed", sql);
	}
	/* unlinked by hand, or half linked */
	ck_assert_str_eq(
	    tu_query_fails(db, "UPDATE exec_audit SET seal_pending = false WHERE " ROW1), "42501");
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET chain_seq = 1, chain_hash = "
	                                    "sha256('') WHERE " ROW1),
	                 "42501");
	v = tu_query(db, "SELECT exit_code || ' ' || seal_pending || ' ' || (chain_seq IS NULL) "
	                 "FROM exec_audit WHERE " ROW1);
	ck_assert_str_eq(v, "0 true true");
	free(v);
	/* the link alone, with columns set to what they are, is allowed, once */
	free(tu_query(db, LINK ", cwd = NULL, exit_code = 0 WHERE " ROW1));
	v = tu_query(db, "SELECT chain_seq || ' ' || seal_pending FROM exec_audit WHERE " ROW1);
	ck_assert_str_eq(v, "1 false");
	free(v);
	ck_assert_str_eq(tu_query_fails(db, "UPDATE exec_audit SET chain_seq = 2, seal_pending = "
	                                    "false WHERE " ROW1),
	                 "42501");
	ck_assert_str_eq(tu_query_fails(db,
	                                "UPDATE exec_audit SET seal_pending = true, chain_seq = "
	                                "NULL, chain_hash = NULL WHERE " ROW1),
	                 "42501");
#undef LINK
}
END_TEST

/* The rows' shape is checked by the database itself, whoever writes them. */
START_TEST(schema_checks_refuse_inconsistent_rows)
{
	static const char *const bad[] = {
	    /* running with an end */
	    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	    "actor_kind, argv, status, finished_at) VALUES (gen_random_uuid(), 'r', 'w', 'o', "
	    "'a', 'org', ARRAY['x'], 'running', now())",
	    /* exited without an exit code */
	    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	    "actor_kind, argv, status, finished_at) VALUES (gen_random_uuid(), 'r', 'w', 'o', "
	    "'a', 'org', ARRAY['x'], 'exited', now())",
	    /* empty argv */
	    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	    "actor_kind, argv, status) VALUES (gen_random_uuid(), 'r', 'w', 'o', 'a', 'org', "
	    "'{}', 'running')",
	    /* admin exec without a break-glass reason */
	    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	    "actor_kind, argv, status) VALUES (gen_random_uuid(), 'r', 'w', 'o', 'a', 'admin', "
	    "ARRAY['x'], 'running')",
	    /* unknown status */
	    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	    "actor_kind, argv, status, finished_at) VALUES (gen_random_uuid(), 'r', 'w', 'o', "
	    "'a', 'org', ARRAY['x'], 'done', now())",
	    /* tier 7, malformed fingerprint, port 0, user with a leading dash */
	    "INSERT INTO workspaces (id, org_id, host, ssh_user, host_key_sha256, tier) VALUES "
	    "('w', 'o', 'h', 'u', 'SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE', 7)",
	    "INSERT INTO workspaces (id, org_id, host, ssh_user, host_key_sha256, tier) VALUES "
	    "('w', 'o', 'h', 'u', 'SHA256:nope', 1)",
	    "INSERT INTO workspaces (id, org_id, host, port, ssh_user, host_key_sha256, tier) "
	    "VALUES ('w', 'o', 'h', 0, 'u', 'SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE', "
	    "1)",
	    "INSERT INTO workspaces (id, org_id, host, ssh_user, host_key_sha256, tier) VALUES "
	    "('w', 'o', 'h', '-oProxyCommand', "
	    "'SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE', 1)",
	    /* an admin token bound to an org; an org token without one */
	    "INSERT INTO api_tokens (prefix, secret_sha256, kind, org_id) VALUES "
	    "('ebk_AAAAAAAA', sha256('x'), 'admin', 'acme')",
	    "INSERT INTO api_tokens (prefix, secret_sha256, kind) VALUES "
	    "('ebk_AAAAAAAA', sha256('x'), 'org')",
	    /* a secret that is not a SHA-256 */
	    "INSERT INTO api_tokens (prefix, secret_sha256, kind) VALUES "
	    "('ebk_AAAAAAAA', 'plaintext', 'admin')",
	};
	char db[512];

	tu_migrated_db(db, sizeof(db));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *state = tu_query_fails(db, bad[i]);
		ck_assert_msg(strcmp(state, "23514") == 0 || strcmp(state, "22P02") == 0,
		              "statement %zu: SQLSTATE %s", i, state);
	}
	ck_assert_int_eq(tu_query_int(db, "SELECT (SELECT count(*) FROM exec_audit) + "
	                                  "(SELECT count(*) FROM workspaces) + "
	                                  "(SELECT count(*) FROM api_tokens)"),
	                 0);
}
END_TEST

/* The audit table has no place for output: its columns are exactly these. */
START_TEST(audit_table_has_no_column_for_output)
{
	char db[512];
	char *cols;

	tu_migrated_db(db, sizeof(db));
	cols = tu_query(db, "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) "
	                    "FROM information_schema.columns WHERE table_name = 'exec_audit'");
	ck_assert_str_eq(cols, "exec_id,request_id,workspace_id,org_id,actor,actor_kind,"
	                       "break_glass_reason,argv,cwd,env_keys,stdin_bytes,client_addr,"
	                       "timeout_s,status,error_code,exit_code,exit_signal,started_at,"
	                       "finished_at,duration_ms,stdout_bytes,stderr_bytes,"
	                       "stdout_truncated,stderr_truncated,broker_instance,chain_seq,"
	                       "chain_hash,seal_pending,detached,name,batch_id");
	free(cols);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("db");
	int failed;

	if (th_setup(TH_PG) != 0)
		return EXIT_FAILURE;
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, migrate_twice_is_a_noop);
	tcase_add_test(tc, concurrent_migrators_are_safe);
	tcase_add_test(tc, changed_checksum_is_refused);
	tcase_add_test(tc, unknown_version_is_refused);
	tcase_add_test(tc, failed_migration_is_rolled_back);
	tcase_add_test(tc, unreachable_database_is_one_clear_line);
	tcase_add_test(tc, audit_rows_cannot_be_deleted_or_truncated);
	tcase_add_test(tc, audit_rows_complete_once_then_are_final);
	tcase_add_test(tc, pending_row_changes_only_by_its_link);
	tcase_add_test(tc, schema_checks_refuse_inconsistent_rows);
	tcase_add_test(tc, audit_table_has_no_column_for_output);
	suite_add_tcase(s, tc);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
