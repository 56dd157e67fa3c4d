/* tests/tutil.h: small helpers the integration suites share: running the broker binary
 * against a database, and one-value SQL queries. Built on tests/harness.h. */
#ifndef EB_TESTS_TUTIL_H
#define EB_TESTS_TUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* The binary under test: $EB_BIN (set by the Makefile), else build/exec-broker. */
const char *tu_bin(void);

/* Output of one run of the broker. */
struct tu_run {
	char *out, *err;
	int exit_code; /* -1 if it did not exit normally */
};

/* Runs the broker with args (NULL-terminated) and EXEC_BROKER_DATABASE_URL=conninfo (none
 * when conninfo is NULL), plus extra "NAME=value" env entries (may be NULL). Fails the
 * test if the binary cannot be started. */
void tu_broker(struct tu_run *r, const char *conninfo, const char *const env[],
               const char *const args[]);
void tu_run_free(struct tu_run *r);

/* Runs sql on conninfo; returns the first column of the first row as a malloc'd string
 * ("" when there is no row, "<null>" for NULL). Fails the test on error. */
char *tu_query(const char *conninfo, const char *sql);
/* The first column of a result's first row as tu_query() returns it (malloc'd; NULL only
 * if out of memory). */
struct pg_result;
char *tu_first_value(const struct pg_result *res);
/* Runs sql and expects it to fail: returns the SQLSTATE (static buffer). Fails the test if
 * the statement succeeds. */
const char *tu_query_fails(const char *conninfo, const char *sql);
/* tu_query() parsed as a number. */
long long tu_query_int(const char *conninfo, const char *sql);

/* Number of '\n' in s. */
int tu_lines(const char *s);

struct Suite;
/* Runs every test of s (fork mode unless CK_FORK says otherwise), frees it, and returns
 * the exit status for main(). */
int tu_run_suite(struct Suite *s);

/* A fresh database migrated by the broker itself; conninfo receives its conninfo. */
void tu_migrated_db(char *conninfo, size_t len);

#endif
