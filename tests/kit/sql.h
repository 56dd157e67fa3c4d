/* tests/kit/sql.h: SQL without Check, for setup steps and benchmarks: one statement on a
 * connection of its own, and the first value of a result. */
#ifndef EB_TESTS_KIT_SQL_H
#define EB_TESTS_KIT_SQL_H

struct pg_result;

/* Runs sql on conninfo: 0, or -1 with the error on stderr. */
int kit_sql(const char *conninfo, const char *sql);
/* The first value of sql's first row, malloc'd ("" without a row, or for NULL), or NULL
 * with the error on stderr. */
char *kit_sql_value(const char *conninfo, const char *sql);
/* The first value of a result's first row, malloc'd: "" without a row, "<null>" for NULL
 * (so that a test can tell them apart); NULL only if out of memory. */
char *kit_sql_first_value(const struct pg_result *res);

#endif
