/* tests/kit/sql.c: one-shot SQL (see sql.h). */
#include "tests/kit/sql.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *kit_sql_value(const char *conninfo, const char *sql)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *res = NULL;
	char *v = NULL;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "kit: connect %s: %s", conninfo, PQerrorMessage(c));
		goto out;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "kit: %s: %s", sql, PQresultErrorMessage(res));
		goto out;
	}
	v = strdup(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
	                   !PQgetisnull(res, 0, 0)
	               ? PQgetvalue(res, 0, 0)
	               : "");
out:
	PQclear(res);
	PQfinish(c);
	return v;
}

int kit_sql(const char *conninfo, const char *sql)
{
	char *v = kit_sql_value(conninfo, sql);

	free(v);
	return v != NULL ? 0 : -1;
}

char *kit_sql_first_value(const PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0)
		return strdup("");
	return strdup(PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
}
