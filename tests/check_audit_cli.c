/* tests/check_audit_cli.c: `exec-broker audit` and `exec-broker audit verify` against a real
 * PostgreSQL whose time zone is not UTC: every filter, paging past 1000 rows, the table,
 * JSON and CSV formats, --follow as a child process woken by new rows, and the hash chain
 * verified on an honest log (awkward values, rows linked concurrently) and after tampering. */
#include <check.h>
#include <ctype.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"
#include "tests/kit/sql.h"
#include "tests/runner.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define ELLIPSIS  "\xe2\x80\xa6" /* … */

static char shared_db[512]; /* filter_rows, for the tests that only read */
static char write_db[512];  /* emptied before each of the other tests */
static char db[512];        /* the test's database: one of the two */

/* t_id(n): a readable exec_id (plus the session's t.base, so that a block of statements can
 * be run twice without clashing). t_ins(n, ...): one audit row with every column filled in,
 * finished unless st is 'running'; named arguments change a column, NULL where it may be.
 * Under session_replication_role = replica no trigger runs, so seq and hash are what is
 * given. t_finish(n, code): a running row completed, which the trigger links. */
static const char fixture_sql[] =
    "CREATE FUNCTION t_id(n int) RETURNS uuid LANGUAGE sql STABLE AS $$"
    " SELECT ('00000000-0000-4000-8000-' || lpad((n + coalesce(nullif("
    "  current_setting('t.base', true), ''), '0')::int)::text, 12, '0'))::uuid $$;"
    "CREATE FUNCTION t_ins(n int, st text DEFAULT 'exited',"
    " started timestamptz DEFAULT '2020-01-01 00:00:00+00', ws text DEFAULT 'ws-a',"
    " org text DEFAULT 'acme', who text DEFAULT 'token:ebk_aaaaaaaa', kind text DEFAULT NULL,"
    " reason text DEFAULT NULL, args text[] DEFAULT ARRAY['echo', 'hello'],"
    " dir text DEFAULT '/srv', env text[] DEFAULT ARRAY['CI'], stdin bigint DEFAULT 1,"
    " addr inet DEFAULT '10.0.0.1', tmo int DEFAULT 30, err text DEFAULT NULL,"
    " code int DEFAULT NULL, sig text DEFAULT NULL, finished timestamptz DEFAULT NULL,"
    " ms bigint DEFAULT NULL, outb bigint DEFAULT NULL, errb bigint DEFAULT 0,"
    " outt boolean DEFAULT false, errt boolean DEFAULT false, inst text DEFAULT 'broker-t',"
    " rid text DEFAULT NULL, seq bigint DEFAULT NULL, hash bytea DEFAULT NULL)"
    " RETURNS void LANGUAGE sql AS $$"
    " INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, actor_kind,"
    "  break_glass_reason, argv, cwd, env_keys, stdin_bytes, client_addr, timeout_s, status,"
    "  error_code, exit_code, exit_signal, started_at, finished_at, duration_ms, stdout_bytes,"
    "  stderr_bytes, stdout_truncated, stderr_truncated, broker_instance, chain_seq,"
    "  chain_hash)"
    " VALUES (t_id(n), coalesce(rid, 'req-' || n), ws, org, who,"
    "  coalesce(kind, CASE WHEN reason IS NULL THEN 'org' ELSE 'admin' END), reason, args,"
    "  dir, env, stdin, addr, tmo, st,"
    "  coalesce(err, CASE WHEN st IN ('denied', 'failed_to_start') THEN 'forbidden' END),"
    "  CASE WHEN st = 'exited' THEN coalesce(code, n % 256) END,"
    "  CASE WHEN st = 'signaled' THEN coalesce(sig, 'KILL') END, started,"
    "  CASE WHEN st <> 'running' THEN coalesce(finished, started + interval '1500 ms') END,"
    "  CASE WHEN st <> 'running' THEN coalesce(ms, 1500) END, coalesce(outb, 10 * n), errb,"
    "  outt, errt, inst, seq, hash) $$;"
    "CREATE FUNCTION t_finish(n int, code int) RETURNS void LANGUAGE sql AS $$"
    " UPDATE exec_audit SET status = 'exited', exit_code = code,"
    "  finished_at = greatest(now(), started_at), duration_ms = 7 WHERE exec_id = t_id(n) $$;";

/* A database migrated by the broker itself, with the functions above and a time zone that
 * is not UTC (as on a server whose administrators set a local one: output must stay UTC).
 * No Check: main() calls it. 0 or -1. */
static int db_make(char *conninfo, size_t len)
{
	char url[600], q[256];
	const char *argv[] = {kit_broker_bin(), "migrate", NULL};
	const char *env[] = {url, "EXEC_BROKER_CONFIG=/dev/null", NULL};
	const char *name;
	char *out = NULL, *err = NULL;
	int st = -1, rc = -1;

	if (th_db_create(conninfo, len) != 0)
		return -1;
	name = strstr(conninfo, "dbname=") + 7;
	snprintf(url, sizeof(url), "EXEC_BROKER_DATABASE_URL=%s", conninfo);
	snprintf(q, sizeof(q), "ALTER DATABASE %s SET timezone = 'Asia/Kolkata'", name);
	if (kit_run(argv, env, NULL, &out, &err, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		rc = th_pg_exec(name, fixture_sql) == 0 && th_pg_exec(name, q) == 0 ? 0 : -1;
	else
		fprintf(stderr, "check_audit_cli: migrate: %s", err ? err : "");
	free(out);
	free(err);
	return rc;
}

static PGconn *conn;
static char conn_db[512];

/* Runs sql (one or more statements) on the test's database over one connection kept by the
 * test process, then resets the session's settings; the first column of the first row
 * ("" when none, "<null>" for NULL), malloc'd. Fails the test on an error. */
static char *q_str(const char *sql)
{
	PGresult *res;
	char *v;

	if (conn == NULL || strcmp(conn_db, db) != 0) {
		PQfinish(conn);
		conn = PQconnectdb(db);
		snprintf(conn_db, sizeof(conn_db), "%s", db);
		ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%.600s", PQerrorMessage(conn));
	}
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK ||
	                  PQresultStatus(res) == PGRES_COMMAND_OK,
	              "%.600s: %.600s", sql, PQresultErrorMessage(res));
	v = kit_sql_first_value(res);
	PQclear(res);
	res = PQexec(conn, "RESET ALL");
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	ck_assert_ptr_nonnull(v);
	return v;
}

static long long q_int(const char *sql)
{
	char *v = q_str(sql);
	long long n = atoll(v);

	free(v);
	return n;
}

/* As good as a fresh database and much faster than making one: no rows, the head at 0, the
 * database's settings back to the time zone alone. The guard triggers do not fire for a
 * session in the replica role. */
static void setup(void)
{
	char q[1024];
	const char *name = strstr(write_db, "dbname=") + 7;

	snprintf(db, sizeof(db), "%s", write_db);
	snprintf(q, sizeof(q),
	         "SET session_replication_role = replica; DELETE FROM exec_audit;"
	         "UPDATE exec_audit_chain_head SET seq = 0, hash = decode(repeat('00', 32), 'hex');"
	         "ALTER DATABASE %s RESET ALL; ALTER DATABASE %s SET timezone = 'Asia/Kolkata'",
	         name, name);
	free(q_str(q));
}

static void setup_shared(void)
{
	snprintf(db, sizeof(db), "%s", shared_db);
}

__attribute__((format(printf, 1, 2))) static void sql(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(q_str(buf));
}

static void tid(int n, char out[37])
{
	snprintf(out, 37, "00000000-0000-4000-8000-%012d", n);
}

/* The number n of an exec_id made by t_id, or -1. */
static int tid_num(const char *id)
{
	if (id == NULL || strlen(id) != 36 || strncmp(id, "00000000-0000-4000-8000-", 24) != 0)
		return -1;
	return atoi(id + 24);
}

/* Runs the broker on the test's database with the NULL-terminated args. */
static void cli_env(struct tu_run *r, const char *const env[], const char *const args[])
{
	tu_broker(r, db, env, args);
}

#define CLI(r, ...) cli_env((r), NULL, (const char *const[]){__VA_ARGS__, NULL})

/* The lines of out as JSON objects, in order (fails the test on anything else). */
static json_t *json_lines(const char *out)
{
	json_t *all = json_array();
	const char *p = out;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		json_error_t je;
		json_t *o;

		ck_assert_msg(nl != NULL, "last line not ended: %.600s", p);
		o = json_loadb(p, (size_t)(nl - p), 0, &je);
		ck_assert_msg(o != NULL && json_is_object(o), "not a JSON object: %.*s",
		              (int)(nl - p), p);
		json_array_append_new(all, o);
		p = nl + 1;
	}
	return all;
}

/* "8,6,7": the t_id numbers of the items of a --format json output, in order. */
static void json_ids(const char *out, char *buf, size_t len)
{
	json_t *all = json_lines(out), *o;
	size_t i, used = 0;

	buf[0] = '\0';
	json_array_foreach(all, i, o)
	{
		used += (size_t)snprintf(buf + used, len - used, "%s%d", i ? "," : "",
		                         tid_num(json_string_value(json_object_get(o, "exec_id"))));
		ck_assert_uint_lt(used, len);
	}
	json_decref(all);
}

/* Whether line names seq as a number of its own (not inside a hash or another number). */
static bool names_seq(const char *line, long long seq)
{
	char num[24];
	size_t n = (size_t)snprintf(num, sizeof(num), "%lld", seq);

	for (const char *p = strstr(line, num); p != NULL; p = strstr(p + 1, num)) {
		bool before = p == line || !(isalnum((unsigned char)p[-1]));
		bool after = !isalnum((unsigned char)p[n]);
		if (before && after)
			return true;
	}
	return false;
}

/* --- filters --------------------------------------------------------------------------- */

/* Newest first: 8, 6 (75 min ago), 7 (100 min), 9 (50 h), then the 2020 rows, where 5 and 4
 * started at the same microsecond (the larger exec_id first). */
static const char filter_rows[] =
    "SELECT t_ins(1, 'exited', '2020-01-01 10:00:00+00');"
    "SELECT t_ins(2, 'denied', '2020-01-01 10:01:00+00', ws => 'ws-b',"
    " who => 'token:ebk_bbbbbbbb');"
    "SELECT t_ins(3, 'signaled', '2020-01-01 10:02:00+00', ws => 'ws-c', org => 'beta');"
    "SELECT t_ins(4, 'exited', '2020-01-01 10:03:00+00', who => 'token:ebk_rootroot',"
    " reason => 'incident 42');"
    "SELECT t_ins(5, 'exited', '2020-01-01 10:03:00+00', ws => 'ws-b', org => 'beta',"
    " who => 'token:ebk_bbbbbbbb');"
    "SELECT t_ins(6, 'running', now() - interval '75 min');"
    "SELECT t_ins(7, 'timeout', now() - interval '100 min', ws => 'ws-b', org => 'beta',"
    " reason => 'prod down');"
    "SELECT t_ins(8, 'exited', now() - interval '1 min', who => 'token:ebk_bbbbbbbb');"
    "SELECT t_ins(9, 'denied', now() - interval '50 h', ws => 'ws-c', org => 'beta',"
    " reason => 'try');";

static const struct {
	const char *args[8];
	const char *want;
} filter_cases[] = {
    {{NULL}, "8,6,7,9,5,4,3,2,1"},
    {{"--workspace", "ws-a"}, "8,6,4,1"},
    {{"--workspace", "ws-b"}, "7,5,2"},
    {{"--workspace", "nope"}, ""},
    {{"--org", "beta"}, "7,9,5,3"},
    {{"--actor", "token:ebk_bbbbbbbb"}, "8,5,2"},
    {{"--status", "exited"}, "8,5,4,1"},
    {{"--status", "running"}, "6"},
    {{"--status", "denied"}, "9,2"},
    {{"--status", "timeout"}, "7"},
    {{"--break-glass"}, "7,9,4"},
    {{"--org", "acme", "--break-glass"}, "4"},
    {{"--actor", "token:ebk_aaaaaaaa", "--org", "beta"}, "7,9,3"},
    {{"--workspace", "ws-a", "--status", "exited", "--limit", "2"}, "8,4"},
    {{"--limit", "3"}, "8,6,7"},
    {{"--since", "10m"}, "8"},
    {{"--since", "1h30m"}, "8,6"},
    {{"--since", "2h"}, "8,6,7"},
    {{"--since", "2d"}, "8,6,7"},
    {{"--since", "3d"}, "8,6,7,9"},
    {{"--until", "2h"}, "9,5,4,3,2,1"},
    {{"--since", "2020-01-01T10:01:00Z", "--until", "2020-01-01T10:03:00Z"}, "3,2"},
    {{"--since", "2020-01-01T11:02:00+01:00", "--until", "2020-01-01T10:03:00.000001Z"}, "5,4,3"},
    {{"--until", "2020-01-01t10:01:00.5z"}, "2,1"},
    {{"--since", "2020-01-01T10:03:00Z", "--until", "2020-01-01T10:03:00Z"}, ""},
    {{"--since", "3d", "--until", "1h30m"}, "7,9"},
};

START_TEST(filters_select_the_right_rows_newest_first)
{
	const char *args[16];
	char got[256];
	struct tu_run r;
	int n = 0;

	args[n++] = "audit";
	for (int i = 0; filter_cases[_i].args[i] != NULL; i++)
		args[n++] = filter_cases[_i].args[i];
	args[n++] = "--format";
	args[n++] = "json";
	args[n] = NULL;
	cli_env(&r, NULL, args);
	ck_assert_msg(r.exit_code == 0, "case %d: exit %d: %.600s", _i, r.exit_code, r.err);
	json_ids(r.out, got, sizeof(got));
	ck_assert_msg(strcmp(got, filter_cases[_i].want) == 0,
	              "case %d (%.600s %.600s): got \"%.600s\", want \"%.600s\"", _i,
	              filter_cases[_i].args[0] ? filter_cases[_i].args[0] : "",
	              filter_cases[_i].args[1] ? filter_cases[_i].args[1] : "", got,
	              filter_cases[_i].want);
	tu_run_free(&r);
}
END_TEST

#define HEX64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct {
	const char *args[8];
	const char *says;
	bool with_usage; /* an option verify does not know: getopt's line, then the usage */
} bad_args[] = {
    {{"audit", "--status", "bogus"}, "--status", false},
    {{"audit", "--since", "yesterday"}, "--since", false},
    {{"audit", "--since", "2020-13-01T00:00:00Z"}, "--since", false},
    {{"audit", "--since", "2020-01-01T25:00:00Z"}, "--since", false},
    {{"audit", "--since", "-2h"}, "--since", false},
    {{"audit", "--since", "2h30"}, "--since", false},
    {{"audit", "--until", "2020-01-01"}, "--until", false},
    {{"audit", "--until", "2020-01-01T10:00:00"}, "--until", false},
    {{"audit", "--until", "5x"}, "--until", false},
    {{"audit", "--limit", "0"}, "--limit", false},
    {{"audit", "--limit", "1000001"}, "--limit", false},
    {{"audit", "--limit", "12abc"}, "--limit", false},
    {{"audit", "--limit", "-5"}, "--limit", false},
    {{"audit", "--format", "xml"}, "--format", false},
    {{"audit", "--follow", "--limit", "0"}, "--limit", false},
    {{"audit", "verfy"}, "verfy", false},
    {{"audit", "verify", "--anchor", "garbage"}, "--anchor", false},
    {{"audit", "verify", "--anchor", "3:abcd"}, "--anchor", false},
    {{"audit", "verify", "--anchor", "x:" HEX64}, "--anchor", false},
    {{"audit", "verify", "--anchor", "3:" HEX64 "aa"}, "--anchor", false},
    {{"audit", "verify", "--workspace", "ws-a"}, "--workspace", true},
    {{"audit", "verify", "extra"}, "extra", false},
};

/* A bad value: exit 2, one line on stderr naming the option (unless getopt names it and the
 * usage follows), nothing on stdout. */
START_TEST(bad_values_are_usage_errors_naming_the_option)
{
	struct tu_run r;

	cli_env(&r, NULL, bad_args[_i].args);
	ck_assert_msg(r.exit_code == 2, "case %d (%.600s %.600s): exit %d: %.600s", _i,
	              bad_args[_i].args[1], bad_args[_i].args[2] ? bad_args[_i].args[2] : "",
	              r.exit_code, r.err);
	ck_assert_msg(bad_args[_i].with_usage ||
	                  (tu_lines(r.err) == 1 && strncmp(r.err, "exec-broker: ", 13) == 0),
	              "case %d: stderr not one line: %.600s", _i, r.err);
	ck_assert_msg(strstr(r.err, bad_args[_i].says) != NULL,
	              "case %d: \"%.600s\" lacks \"%.600s\"", _i, r.err, bad_args[_i].says);
	ck_assert_msg(r.out[0] == '\0', "case %d: stdout: %.600s", _i, r.out);
	tu_run_free(&r);
}
END_TEST

/* 1500 rows in triples that share started_at, one triple across the 1000-row page boundary:
 * the CLI pages by itself and returns exactly the newest rows, each once, in order. Every
 * fifth row is of another org, so that a filter also holds across pages. */
START_TEST(limit_above_one_page_pages_internally)
{
	struct tu_run r;
	json_t *all, *o;
	size_t i;
	char want[37];
	int n;

	sql("SELECT t_ins(g, started => timestamptz '2020-06-01 00:00:00+00' +"
	    " ((g - 1) / 3) * interval '1 s', org => CASE WHEN g %% 5 = 0 THEN 'beta' ELSE"
	    " 'acme' END) FROM generate_series(1, 1500) g");

	CLI(&r, "audit", "--limit", "1200", "--format", "json");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	all = json_lines(r.out);
	ck_assert_int_eq(json_array_size(all), 1200);
	json_array_foreach(all, i, o)
	{
		tid(1500 - (int)i, want);
		ck_assert_msg(strcmp(json_string_value(json_object_get(o, "exec_id")), want) == 0,
		              "row %zu: %.600s, want %.600s", i,
		              json_string_value(json_object_get(o, "exec_id")), want);
	}
	json_decref(all);
	tu_run_free(&r);

	CLI(&r, "audit", "--limit", "1100", "--org", "acme", "--format", "json");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	all = json_lines(r.out);
	ck_assert_int_eq(json_array_size(all), 1100);
	n = 1500;
	json_array_foreach(all, i, o)
	{
		while (n % 5 == 0)
			n--;
		tid(n--, want);
		ck_assert_msg(strcmp(json_string_value(json_object_get(o, "exec_id")), want) == 0,
		              "acme row %zu: %.600s, want %.600s", i,
		              json_string_value(json_object_get(o, "exec_id")), want);
	}
	json_decref(all);
	tu_run_free(&r);

	CLI(&r, "audit", "--limit", "1000000", "--org", "beta", "--format", "json");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	ck_assert_int_eq(tu_lines(r.out), 300);
	tu_run_free(&r);

	CLI(&r, "audit", "--format", "json");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	ck_assert_int_eq(tu_lines(r.out), 100); /* the default limit */
	tu_run_free(&r);
}
END_TEST

/* --- formats --------------------------------------------------------------------------- */

enum {
	COL_STARTED,
	COL_EXEC_ID,
	COL_WORKSPACE,
	COL_ACTOR,
	COL_STATUS,
	COL_RESULT,
	COL_MS,
	COL_COMMAND,
	NCOLS
};
static const char *const col_names[NCOLS] = {"STARTED", "EXEC_ID", "WORKSPACE", "ACTOR",
                                             "STATUS",  "RESULT",  "MS",        "COMMAND"};

/* Byte offsets of the UTF-8 characters of s, and of its end (returns the character count). */
static int u8_offsets(const char *s, size_t *off, int max)
{
	int n = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80 && n < max - 1)
			off[n++] = i;
	off[n] = i;
	return n;
}

static int u8_len(const char *s)
{
	size_t off[2048];

	return u8_offsets(s, off, 2048);
}

/* Where the header puts each column: names left-aligned at their column's start, or
 * right-aligned at its end (numbers), then two spaces before the next column. */
struct layout {
	int pos[NCOLS];    /* character position of each name */
	bool right[NCOLS]; /* the name ends where the column ends, and not where it starts */
};

static void table_header(const char *hdr, struct layout *l)
{
	const char *p = hdr;

	for (int i = 0; i < NCOLS; i++) {
		const char *hit = strstr(p, col_names[i]);
		ck_assert_msg(hit != NULL, "header lacks %.600s after column %d: %.600s",
		              col_names[i], i, hdr);
		l->pos[i] = (int)(hit - hdr); /* the header is ASCII */
		ck_assert_msg(i > 0 || l->pos[i] == 0, "header does not start with STARTED: %.600s",
		              hdr);
		ck_assert_msg(i == 0 || (hit[-1] == ' ' && hit[-2] == ' '),
		              "no two spaces before %.600s: %.600s", col_names[i], hdr);
		p = hit + strlen(col_names[i]);
	}
	for (int i = 0; i < NCOLS; i++)
		l->right[i] = i > 1 && i + 1 < NCOLS && !l->right[i - 1] &&
		              l->pos[i] + (int)strlen(col_names[i]) == l->pos[i + 1] - 2 &&
		              hdr[l->pos[i] - 3] == ' ';
}

/* The characters [from, to) of line (offsets off) into cell. */
static void cell_copy(const char *line, const size_t *off, int from, int to, char *cell)
{
	snprintf(cell, 1024, "%.*s", (int)(off[to] - off[from]), line + off[from]);
}

/* Cuts one data line by the header's layout (counting characters, not bytes): each column
 * at the same position as in the header after two spaces, left-aligned cells starting at
 * their column's first character, right-aligned ones ending at its last; padding removed. */
static void table_cells(const char *line, const struct layout *l, char cells[NCOLS][1024])
{
	size_t off[2048];
	int n = u8_offsets(line, off, 2048);
	const int *pos = l->pos;

	ck_assert_msg(n > pos[COL_COMMAND], "line shorter than the header's columns: %.600s", line);
	for (int i = 0; i < NCOLS; i++) {
		int from = pos[i], to, e;

		if (l->right[i])
			continue; /* cut with the column before it */
		if (i > 0)
			ck_assert_msg(line[off[from - 2]] == ' ' && line[off[from - 1]] == ' ',
			              "column %.600s does not start at character %d: %.600s",
			              col_names[i], from, line);
		if (i + 1 < NCOLS && l->right[i + 1]) {
			/* This column and a right-aligned one, then two spaces before pos[i + 2].
			 */
			int end = pos[i + 2] - 2, rs = end;

			while (rs > from && line[off[rs - 1]] != ' ')
				rs--;
			cell_copy(line, off, rs, end, cells[i + 1]);
			for (e = from; e < rs && !(line[off[e]] == ' ' && line[off[e + 1]] == ' ');)
				e++;
			cell_copy(line, off, from, e, cells[i]);
			ck_assert_msg(cells[i][0] != ' ', "column %.600s not left-aligned: %.600s",
			              col_names[i], line);
			continue;
		}
		to = i + 1 < NCOLS ? pos[i + 1] - 2 : n;
		for (e = to; e > from && line[off[e - 1]] == ' ';)
			e--;
		cell_copy(line, off, from, e, cells[i]);
		ck_assert_msg(cells[i][0] != ' ', "column %.600s not left-aligned at %d: %.600s",
		              col_names[i], from, line);
	}
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);

	return n >= m && strcmp(s + n - m, tail) == 0;
}

/* The cell shows value whole, or its beginning cut with "…". */
static bool cell_shows(const char *cell, const char *value)
{
	size_t n = strlen(cell);

	if (strcmp(cell, value) == 0)
		return true;
	return ends_with(cell, ELLIPSIS) && n > strlen(ELLIPSIS) &&
	       strncmp(cell, value, n - strlen(ELLIPSIS)) == 0 && strlen(value) > n - 3;
}

/* The RESULT cell holds what (maybe after words such as "exit"), or its beginning cut. */
static bool result_shows(const char *cell, const char *what)
{
	const char *last;

	if (strstr(cell, what) != NULL)
		return true;
	if (!ends_with(cell, ELLIPSIS))
		return false;
	last = strrchr(cell, ' ');
	last = last ? last + 1 : cell;
	return strlen(last) > strlen(ELLIPSIS) + 2 &&
	       strncmp(last, what, strlen(last) - strlen(ELLIPSIS)) == 0;
}

/* Four rows in the time zone of the database, one a workspace id of multi-byte characters,
 * one a workspace id and an argv too long for their columns, one an argv with a newline. */
START_TEST(table_columns_align_and_cut_long_values)
{
	char hdr[4096], lines[4][4096], cells[NCOLS][1024], id[37], longcmd[512];
	const char *p;
	struct layout lay;
	struct tu_run r;

	sql("SELECT t_ins(1, 'denied', '2020-03-04 02:00:00+00', ws => 'ws-' || repeat('x', 80),"
	    " args => ARRAY['sh', '-c', 'echo ' || repeat('y', 300)]);"
	    "SELECT t_ins(2, 'signaled', '2020-03-04 04:00:00+00',"
	    " ws => 'w\xc5\x9b-\xc3\xbcn\xc3\xaf', args => ARRAY['sleep', '100']);"
	    "SELECT t_ins(3, 'exited', '2020-03-04 05:06:07.89+02', args => ARRAY['sh', '-c',"
	    " 'echo a'], ms => 1234);"
	    "SELECT t_ins(4, 'running', '2020-03-04 06:00:00+00', args => ARRAY['printf',"
	    " E'a\\nb']);");
	CLI(&r, "audit");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	ck_assert_msg(tu_lines(r.out) == 5, "not a header and 4 lines:\n%.600s", r.out);
	p = r.out;
	snprintf(hdr, sizeof(hdr), "%.*s", (int)strcspn(p, "\n"), p);
	p += strcspn(p, "\n") + 1;
	for (int i = 0; i < 4; i++) {
		snprintf(lines[i], sizeof(lines[i]), "%.*s", (int)strcspn(p, "\n"), p);
		p += strcspn(p, "\n") + 1;
	}
	table_header(hdr, &lay);

	/* Newest first: the running row 4, then 2, 3 (03:06:07 UTC) and 1. */
	table_cells(lines[0], &lay, cells);
	ck_assert_str_eq(cells[COL_STARTED], "2020-03-04 06:00:00");
	tid(4, id);
	ck_assert_msg(cell_shows(cells[COL_EXEC_ID], id), "%.600s", lines[0]);
	ck_assert_str_eq(cells[COL_STATUS], "running");
	ck_assert_str_eq(cells[COL_WORKSPACE], "ws-a");

	table_cells(lines[1], &lay, cells);
	ck_assert_str_eq(cells[COL_STARTED], "2020-03-04 04:00:00");
	tid(2, id);
	ck_assert_msg(cell_shows(cells[COL_EXEC_ID], id), "%.600s", lines[1]);
	ck_assert_str_eq(cells[COL_WORKSPACE], "w\xc5\x9b-\xc3\xbcn\xc3\xaf");
	ck_assert_msg(cell_shows(cells[COL_ACTOR], "token:ebk_aaaaaaaa"), "%.600s", lines[1]);
	ck_assert_str_eq(cells[COL_STATUS], "signaled");
	ck_assert_msg(result_shows(cells[COL_RESULT], "KILL"), "%.600s", lines[1]);
	ck_assert_str_eq(cells[COL_MS], "1500");
	ck_assert_str_eq(cells[COL_COMMAND], "sleep 100");

	table_cells(lines[2], &lay, cells);
	ck_assert_str_eq(cells[COL_STARTED], "2020-03-04 03:06:07");
	ck_assert_str_eq(cells[COL_STATUS], "exited");
	ck_assert_msg(result_shows(cells[COL_RESULT], "3"), "%.600s", lines[2]);
	ck_assert_str_eq(cells[COL_MS], "1234");
	ck_assert_str_eq(cells[COL_COMMAND], "sh -c 'echo a'");

	table_cells(lines[3], &lay, cells);
	ck_assert_str_eq(cells[COL_STARTED], "2020-03-04 02:00:00");
	ck_assert_str_eq(cells[COL_STATUS], "denied");
	ck_assert_msg(result_shows(cells[COL_RESULT], "forbidden"), "%.600s", lines[3]);
	ck_assert_msg(ends_with(cells[COL_WORKSPACE], ELLIPSIS) &&
	                  strncmp(cells[COL_WORKSPACE], "ws-xxx", 6) == 0 &&
	                  u8_len(cells[COL_WORKSPACE]) <=
	                      lay.pos[COL_ACTOR] - 2 - lay.pos[COL_WORKSPACE],
	              "workspace not cut to its column: %.600s", lines[3]);
	snprintf(longcmd, sizeof(longcmd), "sh -c 'echo %0300d'", 0);
	memset(longcmd + 12, 'y', 300);
	ck_assert_msg(ends_with(cells[COL_COMMAND], ELLIPSIS) &&
	                  strlen(cells[COL_COMMAND]) < strlen(longcmd) &&
	                  strncmp(cells[COL_COMMAND], longcmd,
	                          strlen(cells[COL_COMMAND]) - strlen(ELLIPSIS)) == 0 &&
	                  strlen(cells[COL_COMMAND]) > 12,
	              "command not cut with an ellipsis: %.600s", lines[3]);
	tu_run_free(&r);
}
END_TEST

static const char *const item_keys[] = {"exec_id",
                                        "chain_seq",
                                        "chain_hash",
                                        "workspace_id",
                                        "org_id",
                                        "actor",
                                        "actor_kind",
                                        "break_glass_reason",
                                        "argv",
                                        "cwd",
                                        "env_keys",
                                        "stdin_bytes",
                                        "client_addr",
                                        "request_id",
                                        "timeout_s",
                                        "status",
                                        "error_code",
                                        "exit_code",
                                        "exit_signal",
                                        "started_at",
                                        "finished_at",
                                        "duration_ms",
                                        "stdout_bytes",
                                        "stderr_bytes",
                                        "stdout_truncated",
                                        "stderr_truncated",
                                        "broker_instance",
                                        "detached",
                                        "name",
                                        "batch_id"};
#define NKEYS (sizeof(item_keys) / sizeof(item_keys[0]))

static void expect_str(json_t *o, const char *key, const char *want)
{
	json_t *v = json_object_get(o, key);

	if (want == NULL) {
		ck_assert_msg(json_is_null(v), "%.600s: not null", key);
		return;
	}
	ck_assert_msg(json_is_string(v), "%.600s: not a string", key);
	ck_assert_msg(strcmp(json_string_value(v), want) == 0,
	              "%.600s: \"%.600s\", want \"%.600s\"", key, json_string_value(v), want);
}

static void expect_int(json_t *o, const char *key, long long want)
{
	json_t *v = json_object_get(o, key);

	ck_assert_msg(json_is_integer(v), "%.600s: not an integer", key);
	ck_assert_msg(json_integer_value(v) == want, "%.600s: %lld, want %lld", key,
	              (long long)json_integer_value(v), want);
}

static void expect_strings(json_t *a, const char *key, const char *const *want, size_t n)
{
	ck_assert_msg(json_is_array(a) && json_array_size(a) == n, "%.600s: not an array of %zu",
	              key, n);
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(a, i);
		ck_assert_msg(json_is_string(e) && strcmp(json_string_value(e), want[i]) == 0,
		              "%.600s[%zu] differs", key, i);
	}
}

/* One line per row, the API's item: every documented key and no other, values typed and
 * times in UTC with microseconds whatever the database's time zone. */
START_TEST(json_lines_are_the_api_items)
{
	static const char *const argv1[] = {"make", "test", "\xc3\xa9 \"q\""};
	static const char *const env1[] = {"CI", "LANG"};
	struct tu_run r;
	json_t *all, *o;
	char id[37], *hash;

	sql("SELECT t_ins(1, 'exited', '2026-11-23 10:00:00.123456+00', ws => 'demo',"
	    " who => 'token:ebk_AbCdEfGh', reason => 'prod is \"down\"',"
	    " args => ARRAY['make', 'test', '\xc3\xa9 \"q\"'], dir => '/srv/app',"
	    " env => ARRAY['CI', 'LANG'], stdin => 12, addr => '10.0.0.7', rid => 'ci-1234',"
	    " code => 0, finished => '2026-11-23 10:00:02.001+00', ms => 1877, outb => 5000000000,"
	    " errb => 7, outt => true, inst => 'broker-1');"
	    "SELECT t_ins(2, 'running', '2026-11-23 09:00:00+00', dir => NULL, addr => '::1',"
	    " tmo => NULL, env => '{}', inst => NULL)");
	hash = q_str("SELECT encode(chain_hash, 'hex') FROM exec_audit WHERE exec_id = t_id(1)");
	CLI(&r, "audit", "--format", "json");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	all = json_lines(r.out);
	ck_assert_int_eq(json_array_size(all), 2);

	o = json_array_get(all, 0);
	ck_assert_int_eq(json_object_size(o), NKEYS);
	for (size_t i = 0; i < NKEYS; i++)
		ck_assert_msg(json_object_get(o, item_keys[i]) != NULL, "no %.600s", item_keys[i]);
	tid(1, id);
	expect_str(o, "exec_id", id);
	expect_int(o, "chain_seq", 1);
	expect_str(o, "chain_hash", hash);
	expect_str(o, "workspace_id", "demo");
	expect_str(o, "org_id", "acme");
	expect_str(o, "actor", "token:ebk_AbCdEfGh");
	expect_str(o, "actor_kind", "admin");
	expect_str(o, "break_glass_reason", "prod is \"down\"");
	expect_strings(json_object_get(o, "argv"), "argv", argv1, 3);
	expect_str(o, "cwd", "/srv/app");
	expect_strings(json_object_get(o, "env_keys"), "env_keys", env1, 2);
	expect_int(o, "stdin_bytes", 12);
	expect_str(o, "client_addr", "10.0.0.7");
	expect_str(o, "request_id", "ci-1234");
	expect_int(o, "timeout_s", 30);
	expect_str(o, "status", "exited");
	expect_str(o, "error_code", NULL);
	expect_int(o, "exit_code", 0);
	expect_str(o, "exit_signal", NULL);
	expect_str(o, "started_at", "2026-11-23T10:00:00.123456Z");
	expect_str(o, "finished_at", "2026-11-23T10:00:02.001000Z");
	expect_int(o, "duration_ms", 1877);
	expect_int(o, "stdout_bytes", 5000000000LL);
	expect_int(o, "stderr_bytes", 7);
	ck_assert(json_is_true(json_object_get(o, "stdout_truncated")));
	ck_assert(json_is_false(json_object_get(o, "stderr_truncated")));
	expect_str(o, "broker_instance", "broker-1");

	o = json_array_get(all, 1);
	ck_assert_int_eq(json_object_size(o), NKEYS);
	tid(2, id);
	expect_str(o, "exec_id", id);
	ck_assert_msg(json_is_null(json_object_get(o, "chain_seq")), "running row has a chain_seq");
	expect_str(o, "chain_hash", NULL);
	expect_str(o, "status", "running");
	expect_str(o, "break_glass_reason", NULL);
	expect_str(o, "cwd", NULL);
	expect_strings(json_object_get(o, "env_keys"), "env_keys", NULL, 0);
	expect_str(o, "client_addr", "::1");
	ck_assert(json_is_null(json_object_get(o, "timeout_s")));
	ck_assert(json_is_null(json_object_get(o, "exit_code")));
	ck_assert(json_is_null(json_object_get(o, "duration_ms")));
	expect_str(o, "started_at", "2026-11-23T09:00:00.000000Z");
	expect_str(o, "finished_at", NULL);
	expect_str(o, "broker_instance", NULL);
	json_decref(all);
	free(hash);
	tu_run_free(&r);
}
END_TEST

#define CSV_MAXREC 8
#define CSV_MAXF   40

struct csv {
	int nrec;
	int nf[CSV_MAXREC];
	char *f[CSV_MAXREC][CSV_MAXF];
};

static void csv_free(struct csv *c)
{
	for (int i = 0; i < c->nrec; i++)
		for (int j = 0; j < c->nf[i]; j++)
			free(c->f[i][j]);
}

/* Parses s as RFC 4180 with CRLF ends: fails the test on a bare CR or LF outside quotes, a
 * quote inside an unquoted field, anything but a comma or CRLF after a closing quote, or a
 * last record without its CRLF. */
static void csv_parse(const char *s, struct csv *c)
{
	size_t i = 0, n = strlen(s);

	memset(c, 0, sizeof(*c));
	while (i < n) {
		ck_assert_int_lt(c->nrec, CSV_MAXREC);
		for (;;) {
			char *f = malloc(n + 1);
			size_t fl = 0;

			ck_assert_ptr_nonnull(f);
			if (s[i] == '"') {
				for (i++;; i++) {
					ck_assert_msg(i < n, "unterminated quoted field");
					if (s[i] == '"') {
						if (s[i + 1] == '"') {
							f[fl++] = '"';
							i++;
							continue;
						}
						i++;
						break;
					}
					f[fl++] = s[i];
				}
			} else {
				for (; i < n && s[i] != ',' && s[i] != '\r' && s[i] != '\n'; i++) {
					ck_assert_msg(s[i] != '"',
					              "quote in an unquoted field at %zu: %.600s",
					              i, s + i);
					f[fl++] = s[i];
				}
			}
			f[fl] = '\0';
			ck_assert_int_lt(c->nf[c->nrec], CSV_MAXF);
			c->f[c->nrec][c->nf[c->nrec]++] = f;
			if (i < n && s[i] == ',') {
				i++;
				continue;
			}
			ck_assert_msg(i + 1 < n && s[i] == '\r' && s[i + 1] == '\n',
			              "record %d field %d not ended by CRLF: \"%.20s\"", c->nrec,
			              c->nf[c->nrec], s + i);
			i += 2;
			break;
		}
		c->nrec++;
	}
}

static const char *csv_get(const struct csv *c, int rec, const char *key)
{
	for (int j = 0; j < c->nf[0]; j++)
		if (strcmp(c->f[0][j], key) == 0)
			return c->f[rec][j];
	ck_abort_msg("no column %.600s", key);
	return NULL;
}

static void expect_json_strings(const char *text, const char *key, const char *const *want,
                                size_t n)
{
	json_error_t je;
	json_t *a = json_loads(text, 0, &je);

	ck_assert_msg(a != NULL, "%.600s is not JSON: %.600s", key, text);
	expect_strings(a, key, want, n);
	json_decref(a);
}

/* Fields with commas, quotes, CR and LF survive RFC 4180 quoting; argv and env_keys are
 * JSON arrays; every record ends with CRLF. */
START_TEST(csv_is_rfc4180_with_crlf)
{
	static const char *const argv1[] = {"sh", "-c", "echo \"a,b\"\nprintf '%s' x"};
	static const char *const argv2[] = {"a,b", "\"q\"", "line1\r\nline2", "", "NULL"};
	static const char *const env1[] = {"A", "B"};
	const char *reason1 = "why, \"because\"\r\nreally\nso";
	struct tu_run r;
	struct csv c;
	char id[37];

	sql("SELECT t_ins(1, 'exited', '2020-05-01 10:00:00+00', reason => E'why, \"because\"\\r\\n"
	    "really\\nso', args => ARRAY['sh', '-c', E'echo \"a,b\"\\nprintf ''%%s'' x'],"
	    " dir => '/tmp/with,comma', env => ARRAY['A', 'B']);"
	    "SELECT t_ins(2, 'denied', '2020-05-01 09:00:00+00', args => ARRAY['a,b', '\"q\"',"
	    " E'line1\\r\\nline2', '', 'NULL'], dir => NULL, env => '{}',"
	    " reason => E'first\\r\\nsecond\\nthird', rid => E'r\\rx');");
	CLI(&r, "audit", "--format", "csv");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	csv_parse(r.out, &c);
	ck_assert_int_eq(c.nrec, 3);
	ck_assert_int_eq(c.nf[0], NKEYS);
	for (size_t j = 0; j < NKEYS; j++)
		ck_assert_str_eq(c.f[0][j], item_keys[j]);
	for (int i = 1; i < 3; i++)
		ck_assert_msg(c.nf[i] == (int)NKEYS, "record %d has %d fields", i, c.nf[i]);

	tid(1, id);
	ck_assert_str_eq(csv_get(&c, 1, "exec_id"), id);
	ck_assert_str_eq(csv_get(&c, 1, "break_glass_reason"), reason1);
	ck_assert_str_eq(csv_get(&c, 1, "cwd"), "/tmp/with,comma");
	ck_assert_str_eq(csv_get(&c, 1, "exit_code"), "1");
	ck_assert_str_eq(csv_get(&c, 1, "status"), "exited");
	expect_json_strings(csv_get(&c, 1, "argv"), "argv", argv1, 3);
	expect_json_strings(csv_get(&c, 1, "env_keys"), "env_keys", env1, 2);

	tid(2, id);
	ck_assert_str_eq(csv_get(&c, 2, "exec_id"), id);
	ck_assert_str_eq(csv_get(&c, 2, "error_code"), "forbidden");
	ck_assert_str_eq(csv_get(&c, 2, "break_glass_reason"), "first\r\nsecond\nthird");
	ck_assert_str_eq(csv_get(&c, 2, "request_id"), "r\rx");
	expect_json_strings(csv_get(&c, 2, "argv"), "argv", argv2, 5);
	expect_json_strings(csv_get(&c, 2, "env_keys"), "env_keys", NULL, 0);
	csv_free(&c);
	tu_run_free(&r);
}
END_TEST

/* The database's own DateStyle, IntervalStyle, bytea_output and time zone change nothing:
 * times are read as times, hashes as bytes. */
START_TEST(output_and_verify_ignore_session_settings)
{
	struct tu_run r;
	json_t *all;
	char want[128], *head;

	sql("DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I SET timezone = %%L', "
	    "current_database(),"
	    " 'America/St_Johns'); EXECUTE format('ALTER DATABASE %%I SET DateStyle = %%L',"
	    " current_database(), 'SQL, DMY'); EXECUTE format('ALTER DATABASE %%I SET bytea_output"
	    " = %%L', current_database(), 'escape'); EXECUTE format('ALTER DATABASE %%I SET"
	    " IntervalStyle = %%L', current_database(), 'postgres_verbose'); END $$;");
	sql("SELECT t_ins(1, 'exited', '2020-02-03 04:05:06.000007+00');"
	    "SELECT t_ins(2, 'running', '2020-02-03 05:00:00+00'); SELECT t_finish(2, 9);");

	CLI(&r, "audit", "--format", "json", "--since", "2020-02-03T04:05:06.000007Z", "--until",
	    "2020-02-03T04:05:06.000008Z");
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s", r.exit_code, r.err);
	all = json_lines(r.out);
	ck_assert_int_eq(json_array_size(all), 1);
	expect_str(json_array_get(all, 0), "started_at", "2020-02-03T04:05:06.000007Z");
	expect_str(json_array_get(all, 0), "finished_at", "2020-02-03T04:05:07.500007Z");
	head = q_str("SELECT encode(chain_hash, 'hex') FROM exec_audit WHERE exec_id = t_id(1)");
	expect_str(json_array_get(all, 0), "chain_hash", head);
	free(head);
	json_decref(all);
	tu_run_free(&r);

	CLI(&r, "audit", "verify");
	head = q_str("SELECT seq || ':' || encode(hash, 'hex') FROM exec_audit_chain_head");
	snprintf(want, sizeof(want), "ok: 2 links, head %s\n", head);
	ck_assert_msg(r.exit_code == 0, "exit %d: %.600s%.600s", r.exit_code, r.out, r.err);
	ck_assert_msg(strcmp(r.out, want) == 0, "verify said \"%.600s\", want \"%.600s\"", r.out,
	              want);
	free(head);
	tu_run_free(&r);
}
END_TEST

/* --- follow ---------------------------------------------------------------------------- */

/* `exec-broker audit --follow ...` as a child with its stdout on a pipe. */
struct follower {
	pid_t pid;
	int fd;
	char *buf;
	size_t len, cap;
	char errpath[200];
};

static void follow_start(struct follower *f, const char *const args[])
{
	const char *argv[24];
	pid_t parent = getpid();
	int p[2], n = 0;

	memset(f, 0, sizeof(*f));
	argv[n++] = kit_broker_bin();
	for (int i = 0; args[i] != NULL && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(f->errpath, sizeof(f->errpath), "%s/follow-%d.err", th.basedir, (int)parent);
	f->cap = 65536;
	f->buf = calloc(1, f->cap);
	ck_assert_ptr_nonnull(f->buf);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int err = open(f->errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		sigset_t none;

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no follower behind */
		if (getppid() != parent || in < 0 || err < 0 || dup2(in, 0) < 0 ||
		    dup2(p[1], 1) < 0 || dup2(err, 2) < 0)
			_exit(127);
		setenv("EXEC_BROKER_DATABASE_URL", db, 1);
		setenv("EXEC_BROKER_CONFIG", "/dev/null", 1);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	f->fd = p[0];
}

/* Reads the follower's stdout until it holds needle (true), ms pass, or it ends. */
static bool follow_wait(struct follower *f, const char *needle, int ms)
{
	long long end = kit_now_ms() + ms;

	for (;;) {
		struct pollfd pf = {f->fd, POLLIN, 0};
		long long left;
		ssize_t n;

		if (strstr(f->buf, needle) != NULL)
			return true;
		left = end - kit_now_ms();
		if (left <= 0 || f->fd < 0)
			return false;
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		if (f->len + 4097 > f->cap) {
			f->cap *= 2;
			f->buf = realloc(f->buf, f->cap);
			ck_assert_ptr_nonnull(f->buf);
		}
		n = read(f->fd, f->buf + f->len, 4096);
		if (n <= 0) {
			close(f->fd);
			f->fd = -1;
			continue;
		}
		f->len += (size_t)n;
		f->buf[f->len] = '\0';
	}
}

/* What the follower said on stderr (for messages), malloc'd. */
static char *follow_err(const struct follower *f)
{
	char *s = kit_file_read(f->errpath, NULL);

	return s ? s : strdup("(no stderr)");
}

/* Sends sig and waits (10 s) for the follower to end: its wait status, or -1 after SIGKILL. */
static int follow_stop(struct follower *f, int sig)
{
	long long end = kit_now_ms() + 10000;
	int st;

	kill(f->pid, sig);
	while (kit_now_ms() < end) {
		if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
			f->pid = 0;
			return st;
		}
		kit_sleep_ms(20);
	}
	kill(f->pid, SIGKILL);
	waitpid(f->pid, &st, 0);
	f->pid = 0;
	return -1;
}

static void follow_free(struct follower *f)
{
	if (f->pid > 0)
		follow_stop(f, SIGKILL);
	if (f->fd >= 0)
		close(f->fd);
	unlink(f->errpath);
	free(f->buf);
}

static int count(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Backlog: the last --limit finished rows of the filter, by chain_seq. Then rows as they
 * finish, in chain order also within one transaction (the later-started one first), never
 * a running row, never a row outside the filter; SIGTERM ends it with 0. */
START_TEST(follow_prints_rows_as_they_finish)
{
	static const char *const args[] = {"audit", "--follow", "--workspace", "ws-f", "--limit",
	                                   "2",     "--format", "json",        NULL};
	char ids[10][37], *err;
	struct follower f;
	json_t *all;
	int st;

	for (int i = 1; i < 10; i++)
		tid(i, ids[i]);
	sql("SELECT t_ins(1, 'exited', '2020-08-01 00:01:00+00', ws => 'ws-f');"
	    "SELECT t_ins(2, 'exited', '2020-08-01 00:02:00+00', ws => 'ws-f');"
	    "SELECT t_ins(3, 'denied', '2020-08-01 00:03:00+00', ws => 'ws-f');"
	    "SELECT t_ins(4, 'exited', '2020-08-01 00:04:00+00', ws => 'ws-x');"
	    "SELECT t_ins(5, 'running', '2020-08-01 00:05:00+00', ws => 'ws-f');");
	follow_start(&f, args);
	err = NULL;
	ck_assert_msg(follow_wait(&f, ids[3], 10000), "backlog not printed: \"%.600s\" %.600s",
	              f.buf, err = follow_err(&f));
	follow_wait(&f, "\x01", 500); /* reads on: row 1 (beyond --limit), 4 and 5 are not due */
	all = json_lines(f.buf);
	ck_assert_msg(json_array_size(all) == 2 && strstr(f.buf, ids[2]) < strstr(f.buf, ids[3]) &&
	                  strstr(f.buf, ids[2]) != NULL,
	              "backlog: %.600s", f.buf);
	json_decref(all);

	/* One transaction: a row of another workspace, row 5 completed (started 2020), and row
	 * 6 denied (started 2019): printed 5 then 6, their chain order. */
	sql("BEGIN; SELECT t_ins(7, 'exited', '2020-08-01 00:07:00+00', ws => 'ws-x');"
	    "SELECT t_finish(5, 4);"
	    "SELECT t_ins(6, 'denied', '2019-01-01 00:00:00+00', ws => 'ws-f'); COMMIT;");
	ck_assert_msg(follow_wait(&f, ids[6], 10000),
	              "row 6 not printed within 10 s: \"%.600s\" %.600s", f.buf,
	              err = follow_err(&f));
	/* Another wake-up, after the first. */
	sql("SELECT t_ins(8, 'signaled', '2020-08-01 00:08:00+00', ws => 'ws-f')");
	ck_assert_msg(follow_wait(&f, ids[8], 10000),
	              "row 8 not printed within 10 s: \"%.600s\" %.600s", f.buf,
	              err = follow_err(&f));
	follow_wait(&f, "\x01", 300);

	all = json_lines(f.buf);
	ck_assert_msg(json_array_size(all) == 5, "want rows 2 3 5 6 8: %.600s", f.buf);
	expect_str(json_array_get(all, 0), "exec_id", ids[2]);
	expect_str(json_array_get(all, 1), "exec_id", ids[3]);
	expect_str(json_array_get(all, 2), "exec_id", ids[5]);
	expect_str(json_array_get(all, 2), "status", "exited");
	expect_int(json_array_get(all, 2), "exit_code", 4);
	expect_int(json_array_get(all, 2), "chain_seq",
	           q_int("SELECT chain_seq FROM exec_audit WHERE exec_id = t_id(5)"));
	expect_str(json_array_get(all, 3), "exec_id", ids[6]);
	expect_str(json_array_get(all, 4), "exec_id", ids[8]);
	ck_assert_int_eq(count(f.buf, ids[5]), 1);
	ck_assert_ptr_null(strstr(f.buf, ids[1]));
	ck_assert_ptr_null(strstr(f.buf, ids[4]));
	ck_assert_ptr_null(strstr(f.buf, ids[7]));
	json_decref(all);

	st = follow_stop(&f, SIGTERM);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "after SIGTERM: status %d, %.600s", st, err = follow_err(&f));
	free(err);
	follow_free(&f);
}
END_TEST

/* Without --limit the backlog is the last 10 finished rows, oldest link first; the table
 * format follows too, and SIGINT ends it with 0. */
START_TEST(follow_default_backlog_and_sigint)
{
	static const char *const args[] = {"audit", "--follow", NULL};
	struct follower f;
	char *err = NULL;
	const char *prev = NULL;
	int st;

	sql("SELECT t_ins(g, started => timestamptz '2020-09-01 00:00:00+00' - g * interval '1 h',"
	    " args => ARRAY['echo', 'm' || lpad(g::text, 2, '0')]) FROM generate_series(1, 12) g");
	follow_start(&f, args);
	ck_assert_msg(follow_wait(&f, "echo m12", 10000), "backlog not printed: \"%.600s\" %.600s",
	              f.buf, err = follow_err(&f));
	follow_wait(&f, "\x01", 500);
	ck_assert_msg(strstr(f.buf, "echo m01") == NULL && strstr(f.buf, "echo m02") == NULL,
	              "more than 10 rows: %.600s", f.buf);
	for (int i = 3; i <= 12; i++) {
		char m[16];
		const char *at;

		snprintf(m, sizeof(m), "echo m%02d", i);
		at = strstr(f.buf, m);
		ck_assert_msg(at != NULL && at > prev,
		              "%.600s missing or out of chain order: %.600s", m, f.buf);
		prev = at;
	}
	st = follow_stop(&f, SIGINT);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "after SIGINT: status %d, %.600s", st, err = follow_err(&f));
	free(err);
	follow_free(&f);
}
END_TEST

/* A backlog longer than a page: --limit 1200 prints the last 1200 links, oldest first. */
START_TEST(follow_backlog_above_one_page)
{
	static const char *const args[] = {"audit",    "--follow", "--limit", "1200",
	                                   "--format", "json",     NULL};
	struct follower f;
	char *err = NULL, want[37];
	json_t *all, *o;
	size_t i;
	int st;

	sql("SELECT t_ins(g, started => timestamptz '2020-06-01 00:00:00+00' + g * interval"
	    " '1 s') FROM generate_series(1, 1500) g");
	follow_start(&f, args);
	tid(1500, want);
	ck_assert_msg(follow_wait(&f, want, 10000), "backlog not printed: %zu bytes, %.600s", f.len,
	              err = follow_err(&f));
	follow_wait(&f, "\x01", 300);
	all = json_lines(f.buf);
	ck_assert_msg(json_array_size(all) == 1200, "%zu rows, want 1200", json_array_size(all));
	json_array_foreach(all, i, o)
	{
		tid(301 + (int)i, want);
		expect_str(o, "exec_id", want);
	}
	json_decref(all);
	st = follow_stop(&f, SIGTERM);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "after SIGTERM: status %d, %.600s", st, err = follow_err(&f));
	free(err);
	follow_free(&f);
}
END_TEST

/* --- verify ---------------------------------------------------------------------------- */

static void verify(struct tu_run *r, const char *anchor)
{
	if (anchor != NULL)
		CLI(r, "audit", "verify", "--anchor", anchor);
	else
		CLI(r, "audit", "verify");
}

/* The head as the database records it, "SEQ:HEX", malloc'd. */
static char *db_head(void)
{
	return q_str("SELECT seq || ':' || encode(hash, 'hex') FROM exec_audit_chain_head");
}

/* verify (with anchor, if any) exits 0 printing exactly "ok: N links, head SEQ:HEX" with the
 * database's head and N its finished rows; returns the head. */
static char *expect_ok(const char *anchor, long long links)
{
	char want[160], *head = db_head();
	struct tu_run r;

	ck_assert_int_eq(q_int("SELECT count(*) FROM exec_audit WHERE status <>"
	                       " 'running'"),
	                 links);
	verify(&r, anchor);
	snprintf(want, sizeof(want), "ok: %lld links, head %s\n", links, head);
	ck_assert_msg(r.exit_code == 0, "verify %.600s: exit %d: %.600s%.600s",
	              anchor ? anchor : "", r.exit_code, r.out, r.err);
	ck_assert_msg(strcmp(r.out, want) == 0, "verify said \"%.600s\", want \"%.600s\"", r.out,
	              want);
	tu_run_free(&r);
	return head;
}

/* verify exits 1 and its first line holds one of the words (comma-separated) and names the
 * link seq or exec_id id (either may be 0 / NULL). */
static void expect_problem(const char *anchor, const char *words, long long seq, const char *id,
                           const char *id2)
{
	char first[1024], w[64];
	const char *p = words;
	bool word = false, named;
	struct tu_run r;

	verify(&r, anchor);
	ck_assert_msg(r.exit_code == 1, "verify %.600s: exit %d, want 1: %.600s%.600s",
	              anchor ? anchor : "", r.exit_code, r.out, r.err);
	snprintf(first, sizeof(first), "%.*s", (int)strcspn(r.out, "\n"), r.out);
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		snprintf(w, sizeof(w), "%.*s", (int)n, p);
		word |= strstr(first, w) != NULL;
		p += n + (p[n] == ',');
	}
	named = (seq > 0 && names_seq(first, seq)) || (id != NULL && strstr(first, id) != NULL) ||
	        (id2 != NULL && strstr(first, id2) != NULL);
	ck_assert_msg(
	    word && named,
	    "first line \"%.600s\" lacks %.600s or does not name %lld / %.600s (all: %.600s)",
	    first, words, seq, id ? id : "-", r.out);
	tu_run_free(&r);
}

/* n finished rows linked 1..n, and a running row outside the chain; with check, verify
 * first finds them intact. */
static void build_chain(int n, bool check)
{
	sql("SELECT t_ins(g, started => timestamptz '2020-07-01 00:00:00+00' + g * interval"
	    " '1 min') FROM generate_series(1, %d) g; SELECT t_ins(900, 'running');",
	    n);
	if (check)
		free(expect_ok(NULL, n));
}

/* The exec_id of link seq, into id. */
static void link_id(long long seq, char id[37])
{
	char q[128], *v;

	snprintf(q, sizeof(q), "SELECT exec_id FROM exec_audit WHERE chain_seq = %lld", seq);
	v = q_str(q);
	snprintf(id, 37, "%s", v);
	free(v);
}

#define REPLICA "SET session_replication_role = replica; "

/* Rows whose canonical content is awkward: verify, which recomputes every link in C, agrees
 * with the hashes the database made with exec_audit_canonical(). One row 1 first. */
static const char *const awkward_rows[] = {
    /* 0: multi-byte text everywhere (lengths are octets) */
    "SELECT t_ins(2, rid => 'req-\xc3\xbc\xe2\x82\xac', ws => 'w\xc5\xa1-\xe6\x97\xa5',"
    " org => '\xc3\xb8rg', who => 'token:\xc3\xa9\x62k_\xf0\x9f\x98\x80',"
    " args => ARRAY['echo', '\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80', '\xc3\xa9'],"
    " dir => '/srv/\xc3\xbc', env => ARRAY['L\xc3\x84NG'])",
    /* 1: empty strings */
    "SELECT t_ins(2, ws => '', org => '', args => ARRAY['', ''], dir => '', env => ARRAY[''])",
    /* 2: NULLs */
    "SELECT t_ins(2, dir => NULL, addr => NULL, tmo => NULL, inst => NULL, env => '{}')",
    /* 3: a break-glass reason with quotes, a backslash, a tab and a newline */
    "SELECT t_ins(2, reason => E'it''s \"urgent\" \\\\ back\\ttab\\nnew line')",
    /* 4, 5: inet text: IPv6 /128, a network with its mask */
    "SELECT t_ins(2, addr => '2001:db8::1')",
    "SELECT t_ins(2, addr => '10.1.2.0/24')",
    /* 6: array elements that need quoting in PostgreSQL's array text, and the string NULL */
    "SELECT t_ins(2, args => ARRAY['NULL', 'null', 'a,b', 'c\"d', 'e\\f', '{x}', ' lead',"
    " E'new\\nline', '1:', '-', '2[', ']'], rid => '3:abc', env => ARRAY['NULL', 'A B'])",
    /* 7: extreme numbers and flags */
    "SELECT t_ins(2, stdin => 9223372036854775807, outb => 0, errb => 9223372036854775807,"
    " ms => 0, code => 255, tmo => 2147483647, outt => true, errt => true)",
    /* 8: one microsecond, equal start and end */
    "SELECT t_ins(2, started => '2020-01-01 00:00:00.000001+00',"
    " finished => '2020-01-01 00:00:00.000001+00')",
    /* 9: before 1970 (negative microseconds) */
    "SELECT t_ins(2, started => '1969-12-31 23:59:59.999999+00',"
    " finished => '1970-01-01 00:00:00+00')",
    /* 10: far in the future */
    "SELECT t_ins(2, started => '2999-12-31 23:59:59.999999+00',"
    " finished => '2999-12-31 23:59:59.999999+00')",
    /* 11: every final status */
    "SELECT t_ins(2, st => 'signaled', sig => 'RTMIN+1'), t_ins(3, st => 'failed_to_start',"
    " err => 'spawn_failed'), t_ins(4, st => 'timeout'), t_ins(5, st => 'cancelled'),"
    " t_ins(6, st => 'transport_error', err => 'ssh_lost'), t_ins(7, st => 'shutdown'),"
    " t_ins(8, st => 'abandoned'), t_ins(9, st => 'denied', kind => 'admin')",
    /* 12: the longest argv and reason, two bytes a character */
    "SELECT t_ins(2, args => array_fill('\xc3\xa9'::text, ARRAY[256]),"
    " reason => repeat('\xc3\xa9', 500))",
    /* 13: completed by UPDATE, finished now() */
    "SELECT t_ins(2, st => 'running', started => now() - interval '1 s'); SELECT t_finish(2, 0)",
    /* 14: a NULL array element ("-" as a field) */
    "SELECT t_ins(2, args => ARRAY['a', NULL])",
};
#define NAWKWARD (sizeof(awkward_rows) / sizeof(awkward_rows[0]))

START_TEST(verify_agrees_with_the_database_on_awkward_rows)
{
	long long links;

	sql("SELECT t_ins(1)");
	sql("%s", awkward_rows[_i]);
	links = q_int("SELECT count(*) FROM exec_audit WHERE status <> 'running'");
	free(expect_ok(NULL, links));
}
END_TEST

/* A child that inserts and completes 50 rows on its own connection once the gate opens. */
static void chain_writer(int k, int gate)
{
	PGconn *c = PQconnectdb(db);
	char q[512], b;
	int bad = PQstatus(c) != CONNECTION_OK;

	while (read(gate, &b, 1) > 0)
		;
	for (int i = 0; i < 50 && !bad; i++) {
		int n = 30000 + k * 100 + i;
		PGresult *res;

		if (i % 5 == 4)
			snprintf(q, sizeof(q), "SELECT t_ins(%d, 'denied', now())", n);
		else
			snprintf(q, sizeof(q),
			         "SELECT t_ins(%d, 'running', now(), ws => 'ws-w%d'); "
			         "SELECT t_finish(%d, %d)",
			         n, k, n, i);
		res = PQexec(c, q);
		bad = PQresultStatus(res) != PGRES_TUPLES_OK;
		if (bad)
			fprintf(stderr, "writer %d: %s", k, PQresultErrorMessage(res));
		PQclear(res);
	}
	PQfinish(c);
	_exit(bad);
}

/* An honest log: empty, then awkward rows, rows completed and denied, running rows, 1500 rows
 * linked by one statement, and 400 rows linked by 8 connections at once. */
START_TEST(verify_passes_an_honest_log)
{
	char *head = expect_ok(NULL, 0);
	pid_t pid[8];
	int gate[2];

	ck_assert_str_eq(head, "0:" ZERO_HASH);
	free(head);
	for (size_t i = 0; i < NAWKWARD; i++)
		sql("SET t.base = %zu; SELECT t_ins(1); %s", (i + 1) * 100, awkward_rows[i]);
	sql("SELECT t_ins(5000, 'running'); SELECT t_ins(5001, 'running', now());"
	    "SELECT t_ins(5002, 'running', now()); SELECT t_finish(5002, 0);"
	    "SELECT t_ins(5003, 'denied', now());"
	    "SELECT t_ins(g + 10000, started => timestamptz '2020-06-01 00:00:00+00' + g * interval"
	    " '1 ms') FROM generate_series(1, 1500) g");

	ck_assert_int_eq(pipe(gate), 0);
	fflush(NULL);
	for (int k = 0; k < 8; k++) {
		pid[k] = fork();
		ck_assert_int_ge(pid[k], 0);
		if (pid[k] == 0) {
			close(gate[1]);
			chain_writer(k, gate[0]);
		}
	}
	close(gate[0]);
	close(gate[1]); /* all start at once */
	for (int k = 0; k < 8; k++) {
		int st;
		ck_assert_int_eq(waitpid(pid[k], &st, 0), pid[k]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed", k);
	}
	ck_assert_int_eq(q_int("SELECT count(*) FROM exec_audit WHERE exec_id >="
	                       " t_id(30000) AND status <> 'running'"),
	                 400);
	ck_assert_int_eq(q_int("SELECT count(*) FROM exec_audit WHERE status ="
	                       " 'running'"),
	                 2);
	free(expect_ok(NULL, q_int("SELECT seq FROM exec_audit_chain_head")));
}
END_TEST

/* One change to one column of link 3 of 5 (as a superuser past the guard triggers): verify
 * names link 3 as altered first. Every column of the canonical content is covered. */
static const char *const alterations[] = {
    "request_id = 'req-x'",
    "workspace_id = 'ws-z'",
    "org_id = 'other'",
    "actor = 'token:ebk_zzzzzzzz'",
    "actor_kind = 'workspace'",
    "actor_kind = 'admin', break_glass_reason = 'x'",
    "argv = argv || 'x'::text",
    "argv = ARRAY['echo', 'hellO']",
    "cwd = NULL",
    "cwd = '/srv/'",
    "env_keys = '{}'",
    "stdin_bytes = stdin_bytes + 1",
    "client_addr = '10.0.0.2'",
    "client_addr = '10.0.0.1/31'",
    "timeout_s = NULL",
    "status = 'signaled', exit_code = NULL, exit_signal = 'KILL'",
    "status = 'timeout', exit_code = NULL",
    "error_code = 'oops'",
    "exit_code = exit_code + 1",
    "started_at = started_at - interval '1 microsecond'",
    "finished_at = finished_at + interval '1 microsecond'",
    "duration_ms = duration_ms + 1",
    "stdout_bytes = stdout_bytes + 1",
    "stderr_bytes = stderr_bytes + 1",
    "stdout_truncated = true",
    "stderr_truncated = true",
    "broker_instance = 'broker-z'",
    "broker_instance = NULL",
    "exec_id = '00000000-0000-4000-8000-0000000000ff'",
    "chain_hash = sha256('x')",
};

START_TEST(verify_names_an_altered_row)
{
	char id[37];

	build_chain(5, false); /* the same chain verify_names_a_removed_link finds intact */
	link_id(3, id);
	sql(REPLICA "UPDATE exec_audit SET %s WHERE chain_seq = 3", alterations[_i]);
	expect_problem(NULL, "altered", 3, id, "00000000-0000-4000-8000-0000000000ff");
}
END_TEST

START_TEST(verify_names_a_removed_link)
{
	build_chain(6, true);
	sql(REPLICA "DELETE FROM exec_audit WHERE chain_seq = 3");
	expect_problem(NULL, "removed", 3, NULL, NULL);
}
END_TEST

START_TEST(verify_names_a_removed_tail)
{
	build_chain(6, true);
	sql(REPLICA "DELETE FROM exec_audit WHERE chain_seq = 6");
	expect_problem(NULL, "removed", 6, NULL, NULL);
}
END_TEST

/* A link after the head with a made-up hash. */
START_TEST(verify_names_a_forged_link)
{
	char id[37];

	build_chain(5, true);
	sql(REPLICA "SELECT t_ins(50, seq => 6, hash => sha256('made up'))");
	tid(50, id);
	expect_problem(NULL, "forged,altered", 6, id, NULL);
}
END_TEST

/* A link after the head whose hash is right (computed as the trigger would), with the head
 * left alone: forged, being past the head. */
START_TEST(verify_names_a_well_forged_link_past_the_head)
{
	char id[37];

	build_chain(5, true);
	sql(REPLICA "SELECT t_ins(50, seq => 6, hash => sha256('x'));"
	            "UPDATE exec_audit e SET chain_hash = sha256(h.hash || exec_audit_canonical(e))"
	            " FROM exec_audit_chain_head h WHERE e.exec_id = t_id(50)");
	tid(50, id);
	expect_problem(NULL, "forged", 6, id, NULL);
}
END_TEST

/* Rewrites the chain from link from onwards with hashes recomputed in SQL, head included. */
static void rewrite_chain_from(int from)
{
	sql(REPLICA "DO $$ DECLARE r exec_audit; h bytea; BEGIN"
	            " SELECT coalesce((SELECT chain_hash FROM exec_audit WHERE chain_seq = %d),"
	            "  decode(repeat('00', 32), 'hex')) INTO h;"
	            " FOR r IN SELECT * FROM exec_audit WHERE chain_seq >= %d ORDER BY chain_seq"
	            " LOOP h := sha256(h || exec_audit_canonical(r));"
	            "  UPDATE exec_audit SET chain_hash = h WHERE exec_id = r.exec_id; END LOOP;"
	            " UPDATE exec_audit_chain_head SET hash = h; END $$",
	    from - 1, from);
}

/* A rewrite of the tail passes a plain verify; the head recorded earlier (anchor) catches
 * it, as it catches a shortened chain whose head was moved back. */
START_TEST(verify_anchor_catches_a_rewritten_chain)
{
	char *a5, *a10, *b10, bad[160];

	build_chain(5, true);
	a5 = expect_ok(NULL, 5);
	sql("SELECT t_ins(g, started => timestamptz '2020-07-02 00:00:00+00' + g * interval"
	    " '1 min') FROM generate_series(6, 10) g");
	a10 = expect_ok(a5, 10);

	snprintf(bad, sizeof(bad), "%s", a5); /* the same link, another hash */
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
	expect_problem(bad, "altered,removed,forged", 5, NULL, NULL);

	sql(REPLICA "UPDATE exec_audit SET exit_code = 99 WHERE chain_seq = 3");
	expect_problem(NULL, "altered", 3, NULL, NULL);
	rewrite_chain_from(3);
	b10 = expect_ok(NULL, 10);
	ck_assert_str_ne(a10, b10);
	expect_problem(a5, "altered,removed,forged", 5, NULL, NULL);
	expect_problem(a10, "altered,removed,forged", 10, NULL, NULL);

	/* Cut to 8 links and the head moved back with them: plain verify passes. */
	sql(REPLICA "DELETE FROM exec_audit WHERE chain_seq > 8;"
	            "UPDATE exec_audit_chain_head SET seq = 8, hash = (SELECT chain_hash FROM"
	            " exec_audit WHERE chain_seq = 8)");
	free(expect_ok(NULL, 8));
	expect_problem(b10, "altered,removed,forged", 10, NULL, NULL);
	free(a5);
	free(a10);
	free(b10);
}
END_TEST

/* A database that cannot be read: verify exits 3, a list 1, each saying why on stderr. */
START_TEST(unreadable_database_exit_codes)
{
	static const char *const verify_args[] = {"audit", "verify", NULL};
	static const char *const list_args[] = {"audit", NULL};
	char nodb[512], empty[512];
	struct tu_run r;

	th_pg_conninfo("no_such_db", nodb, sizeof(nodb));
	ck_assert_int_eq(th_db_create(empty, sizeof(empty)), 0); /* not migrated */

	tu_broker(&r, nodb, NULL, verify_args);
	ck_assert_msg(r.exit_code == 3, "verify, no database: exit %d: %.600s", r.exit_code, r.err);
	ck_assert_msg(r.out[0] == '\0' && r.err[0] != '\0', "out: %.600s err: %.600s", r.out,
	              r.err);
	tu_run_free(&r);
	tu_broker(&r, empty, NULL, verify_args);
	ck_assert_msg(r.exit_code == 3, "verify, no schema: exit %d: %.600s", r.exit_code, r.err);
	ck_assert_msg(r.out[0] == '\0' && r.err[0] != '\0', "out: %.600s err: %.600s", r.out,
	              r.err);
	tu_run_free(&r);
	tu_broker(&r, nodb, NULL, list_args);
	ck_assert_msg(r.exit_code == 1, "list, no database: exit %d: %.600s", r.exit_code, r.err);
	ck_assert_msg(r.err[0] != '\0', "no message");
	tu_run_free(&r);
	tu_broker(&r, empty, NULL, list_args);
	ck_assert_msg(r.exit_code == 1, "list, no schema: exit %d: %.600s", r.exit_code, r.err);
	tu_run_free(&r);
}
END_TEST

/* Tests that only read share one database; the others share another, emptied before each. */
int main(void)
{
	Suite *s = suite_create("audit_cli");
	TCase *rd = tcase_create("read"), *tc = tcase_create("write");
	char name[64];
	int failed;

	if (th_setup(TH_PG) != 0)
		return EXIT_FAILURE;
	if (db_make(shared_db, sizeof(shared_db)) != 0 || db_make(write_db, sizeof(write_db)) != 0)
		return EXIT_FAILURE;
	snprintf(name, sizeof(name), "%s", strstr(shared_db, "dbname=") + 7);
	if (th_pg_exec(name, filter_rows) != 0)
		return EXIT_FAILURE;
	kit_run_timeout_ms = 20000; /* a --follow that does not stop must not hold a test long */

	tcase_set_timeout(rd, 30);
	tcase_add_checked_fixture(rd, setup_shared, NULL);
	tcase_add_loop_test(rd, filters_select_the_right_rows_newest_first, 0,
	                    sizeof(filter_cases) / sizeof(filter_cases[0]));
	tcase_add_loop_test(rd, bad_values_are_usage_errors_naming_the_option, 0,
	                    sizeof(bad_args) / sizeof(bad_args[0]));
	suite_add_tcase(s, rd);

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, limit_above_one_page_pages_internally);
	tcase_add_test(tc, table_columns_align_and_cut_long_values);
	tcase_add_test(tc, json_lines_are_the_api_items);
	tcase_add_test(tc, csv_is_rfc4180_with_crlf);
	tcase_add_test(tc, output_and_verify_ignore_session_settings);
	tcase_add_test(tc, follow_prints_rows_as_they_finish);
	tcase_add_test(tc, follow_default_backlog_and_sigint);
	tcase_add_test(tc, follow_backlog_above_one_page);
	tcase_add_loop_test(tc, verify_agrees_with_the_database_on_awkward_rows, 0, NAWKWARD);
	tcase_add_test(tc, verify_passes_an_honest_log);
	tcase_add_loop_test(tc, verify_names_an_altered_row, 0,
	                    sizeof(alterations) / sizeof(alterations[0]));
	tcase_add_test(tc, verify_names_a_removed_link);
	tcase_add_test(tc, verify_names_a_removed_tail);
	tcase_add_test(tc, verify_names_a_forged_link);
	tcase_add_test(tc, verify_names_a_well_forged_link_past_the_head);
	tcase_add_test(tc, verify_anchor_catches_a_rewritten_chain);
	tcase_add_test(tc, unreadable_database_exit_codes);
	suite_add_tcase(s, tc);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
