/* tests/tutil.c: helpers shared by the integration suites. */
#include "tests/tutil.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/kit/harness.h"

const char *tu_bin(void)
{
	const char *b = getenv("EB_BIN");

	return b && *b ? b : "build/exec-broker";
}

void tu_broker(struct tu_run *r, const char *conninfo, const char *const env[],
               const char *const args[])
{
	const char *argv[32], *envv[16];
	char dburl[512];
	int n = 0, e = 0, status = 0;

	argv[n++] = tu_bin();
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	/* The test machine's /etc/exec-broker must play no part, unless a test names a file. */
	bool own_config = false;
	for (int i = 0; env != NULL && env[i] != NULL; i++)
		own_config |= strncmp(env[i], "EXEC_BROKER_CONFIG=", 19) == 0;
	if (!own_config)
		envv[e++] = "EXEC_BROKER_CONFIG=/dev/null";
	if (conninfo != NULL) {
		snprintf(dburl, sizeof(dburl), "EXEC_BROKER_DATABASE_URL=%s", conninfo);
		envv[e++] = dburl;
	}
	for (int i = 0; env != NULL && env[i] != NULL && e < 15; i++)
		envv[e++] = env[i];
	envv[e] = NULL;
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(kit_run(argv, envv, NULL, &r->out, &r->err, &status), 0);
	r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void tu_run_free(struct tu_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

static PGconn *connect_or_fail(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect %s: %s", conninfo, PQerrorMessage(c));
	return c;
}

char *tu_first_value(const PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0)
		return strdup("");
	return strdup(PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
}

char *tu_query(const char *conninfo, const char *sql)
{
	PGconn *c = connect_or_fail(conninfo);
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	char *v;

	ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
	              PQresultErrorMessage(res));
	v = tu_first_value(res);
	PQclear(res);
	PQfinish(c);
	ck_assert_ptr_nonnull(v);
	return v;
}

const char *tu_query_fails(const char *conninfo, const char *sql)
{
	static char state[6];
	PGconn *c = connect_or_fail(conninfo);
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	snprintf(state, sizeof(state), "%s", s ? s : "");
	PQclear(res);
	PQfinish(c);
	ck_assert_msg(st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK, "succeeded: %s", sql);
	return state;
}

long long tu_query_int(const char *conninfo, const char *sql)
{
	char *v = tu_query(conninfo, sql);
	long long n = atoll(v);

	free(v);
	return n;
}

int tu_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

void tu_migrated_db(char *conninfo, size_t len)
{
	static const char *const args[] = {"migrate", NULL};
	struct tu_run r;

	ck_assert_int_eq(th_db_create(conninfo, len), 0);
	tu_broker(&r, conninfo, NULL, args);
	ck_assert_msg(r.exit_code == 0, "migrate failed: %s", r.err);
	tu_run_free(&r);
}

int tu_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
