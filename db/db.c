/* db/db.c: blocking libpq helpers for the administrative subcommands. */
#include "db/db.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void db_error_line(const char *msg, char *err, size_t errlen)
{
	size_t n = 0;

	if (errlen == 0)
		return;
	if (msg == NULL)
		msg = "";
	for (const char *p = msg; *p && n + 1 < errlen; p++) {
		if (*p == '\n') {
			if (p[1] == '\0')
				break;
			if (n + 3 >= errlen)
				break;
			err[n++] = ';';
			err[n++] = ' ';
			while (p[1] == ' ' || p[1] == '\t')
				p++;
			continue;
		}
		err[n++] = *p == '\t' ? ' ' : *p;
	}
	while (n > 0 && err[n - 1] == ' ')
		n--;
	err[n] = '\0';
}

/* NOTICE and below ("relation ... already exists, skipping") are noise on a terminal;
 * warnings are not. */
static void notice_receiver(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char line[512];

	(void)arg;
	if (severity == NULL || strcmp(severity, "WARNING") != 0)
		return;
	db_error_line(PQresultErrorMessage(res), line, sizeof(line));
	fprintf(stderr, "exec-broker: database: %s\n", line);
}

int db_connect(const char *conninfo, PGconn **out, char *err, size_t errlen)
{
	/* Earlier keywords are defaults; the expanded conninfo after them overrides them. */
	const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *const vals[] = {"10", "exec-broker", conninfo, NULL};
	PGconn *conn;

	*out = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		snprintf(err, errlen, "out of memory connecting to the database");
		return EB_ERR_NOMEM;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		char line[512];
		db_error_line(PQerrorMessage(conn), line, sizeof(line));
		snprintf(err, errlen, "cannot connect to the database: %s", line);
		PQfinish(conn);
		return EB_ERR_DB;
	}
	PQsetNoticeReceiver(conn, notice_receiver, NULL);
	*out = conn;
	return 0;
}

PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                  size_t errlen, char sqlstate[6])
{
	return db_check(conn, PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0), err,
	                errlen, sqlstate);
}

PGresult *db_exec_script(PGconn *conn, const char *sql, char *err, size_t errlen, char sqlstate[6])
{
	return db_check(conn, PQexec(conn, sql), err, errlen, sqlstate);
}

PGresult *db_check(PGconn *conn, PGresult *res, char *err, size_t errlen, char sqlstate[6])
{
	ExecStatusType st = PQresultStatus(res);

	sqlstate[0] = '\0';
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	if (res != NULL) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		if (state != NULL)
			snprintf(sqlstate, 6, "%s", state);
		db_error_line(primary ? primary : PQresultErrorMessage(res), err, errlen);
	} else {
		db_error_line(PQerrorMessage(conn), err, errlen);
	}
	if (err[0] == '\0')
		snprintf(err, errlen, "the database did not answer");
	PQclear(res);
	return NULL;
}

char *db_conninfo_redact(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (opts == NULL)
		return NULL;
	f = open_memstream(&buf, &len);
	if (f == NULL)
		goto out;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		bool secret = strcmp(o->keyword, "password") == 0;
		fprintf(f, "%s%s='", ftell(f) > 0 ? " " : "", o->keyword);
		for (const char *p = secret ? "********" : o->val; *p; p++) {
			if (*p == '\'' || *p == '\\')
				fputc('\\', f);
			fputc(*p, f);
		}
		fputc('\'', f);
	}
	if (fclose(f) != 0) {
		free(buf);
		buf = NULL;
	}
out:
	PQconninfoFree(opts);
	return buf;
}
