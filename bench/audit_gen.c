/* bench/audit_gen.c: `audit_gen [--batch B] [--days D] [--seed S] CONNINFO ROWS` fills
 * exec_audit of a migrated database with ROWS realistic finished rows: 200 workspaces in 20
 * orgs (a few busy, most quiet), some 500 actors (workspace, org and a few break-glass admin
 * tokens), mostly `exited` with some denied, timeout, signaled, failed_to_start and the
 * rest, started over the last D days, argv of 1 to 6 elements. Rows go in through the
 * normal INSERT and its triggers, so every one is a link of the hash chain. bench_audit
 * runs it; it is also usable on its own (bench/README.md). */
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_BATCH 100
#define DEFAULT_DAYS  30
#define MAX_ROWS      1000000000ULL
#define PROGRESS_S    10.0
/* Statements between two VACUUMs of the chain head (see insert_sql). */
#define VACUUM_EVERY 20

/* One statement inserts $1 rows; $2 is the number of rows inserted before it (request ids
 * continue), $3 the time the last row may have finished, $4 how many days back the oldest
 * one finished.
 *
 * Each row takes its random draws once (r0), then its status (r1), then its times (r2):
 *   w  workspace ws-000..ws-199, skewed: ws-000 gets some 7 % of the rows, ws-199 0.1 %;
 *      its org is org-(w mod 20);
 *   k  the kind of token: 3 % admin (break-glass, with a reason), 27 % org (4 tokens per
 *      org), 70 % workspace (2 tokens per workspace);
 *   s  the status: 2 % denied, 2 % timeout, 1.5 % signaled, 1 % failed_to_start, 0.5 %
 *      transport_error, 1.5 % cancelled, 0.5 % shutdown, 0.5 % abandoned, 90.5 % exited
 *      (exit code 0 for 88 % of those);
 *   c, n  one of 8 commands, cut to its first n (1 to 6) words.
 * The batch is kept small: the chain trigger updates the one-row head table once per row,
 * and every version of that row a transaction leaves behind is read again by the next
 * row's lookup until the transaction ends. */
static const char insert_sql[] =
    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, actor_kind, "
    " break_glass_reason, argv, cwd, env_keys, stdin_bytes, client_addr, timeout_s, status, "
    " error_code, exit_code, exit_signal, started_at, finished_at, duration_ms, stdout_bytes, "
    " stderr_bytes, stdout_truncated, stderr_truncated, broker_instance) "
    "SELECT gen_random_uuid(), 'gen-' || ($2::bigint + g), "
    " 'ws-' || lpad(w::text, 3, '0'), 'org-' || lpad((w % 20)::text, 2, '0'), "
    " CASE WHEN k < 0.03 THEN 'token:ebk_admin0' || lpad((a % 10)::text, 2, '0') "
    "      WHEN k < 0.30 THEN 'token:ebk_org' || lpad((w % 20)::text, 2, '0') || 'tk' || (a % 4) "
    "      ELSE 'token:ebk_ws' || lpad(w::text, 3, '0') || 't0' || (a % 2) END, "
    " CASE WHEN k < 0.03 THEN 'admin' WHEN k < 0.30 THEN 'org' ELSE 'workspace' END, "
    " CASE WHEN k < 0.03 THEN 'incident INC-' || (4000 + a) || ': on-call repair' END, "
    " (CASE c WHEN 0 THEN ARRAY['make', '-j4', 'test', 'V=1', '--keep-going', 'CI=1'] "
    "   WHEN 1 THEN ARRAY['git', 'status', '--porcelain', '-b', '--untracked-files=no', '.'] "
    "   WHEN 2 THEN ARRAY['npm', 'run', 'build', '--', '--mode', 'production'] "
    "   WHEN 3 THEN ARRAY['python3', '-m', 'pytest', '-x', '-q', 'tests/'] "
    "   WHEN 4 THEN ARRAY['ls', '-la', '/srv/app', '/var/log', '/tmp', '/etc'] "
    "   WHEN 5 THEN ARRAY['cargo', 'build', '--release', '--locked', '-p', 'server'] "
    "   WHEN 6 THEN ARRAY['sh', '-c', 'df -h && free -m', 'x', 'y', 'z'] "
    "   ELSE ARRAY['systemctl', 'status', 'app.service', '--no-pager', '-n', '50'] END)[1:n], "
    " CASE WHEN c % 3 = 0 THEN NULL ELSE '/srv/app' END, "
    " CASE WHEN c % 2 = 0 THEN '{}'::text[] ELSE '{CI,GIT_SHA}'::text[] END, "
    " CASE WHEN c = 3 THEN 512 ELSE 0 END, "
    " ('10.' || (w % 20) || '.' || (a % 250) || '.' || (1 + (a * 7) % 250))::inet, "
    " CASE WHEN st = 'timeout' OR c < 6 THEN tmo END, "
    " st, "
    " CASE st WHEN 'denied' THEN "
    "   (ARRAY['forbidden_tier', 'workspace_not_running', 'org_limit'])[1 + a % 3] "
    "   WHEN 'failed_to_start' THEN "
    "   (ARRAY['connect_failed', 'auth_failed', 'host_key_mismatch'])[1 + a % 3] END, "
    " CASE WHEN st = 'exited' THEN (CASE WHEN x < 0.88 THEN 0 WHEN x < 0.97 THEN 1 "
    "   WHEN x < 0.99 THEN 2 ELSE 127 END) END, "
    " CASE WHEN st = 'signaled' THEN (ARRAY['KILL', 'TERM', 'SEGV', 'INT'])[1 + a % 4] END, "
    " t1 - dur * interval '1 millisecond', t1, dur, "
    " CASE WHEN st IN ('exited', 'signaled', 'timeout', 'cancelled') "
    "   THEN floor(power(x, 4) * 2000000)::bigint ELSE 0 END, "
    " CASE WHEN st IN ('exited', 'signaled', 'timeout', 'cancelled') "
    "   THEN floor(power(x, 6) * 100000)::bigint ELSE 0 END, "
    " x > 0.999, false, 'broker-' || (1 + a % 3) "
    "FROM (SELECT r1.*, $3::timestamptz - u * $4::integer * interval '1 day' AS t1, "
    "  CASE st WHEN 'denied' THEN 0 "
    "   WHEN 'timeout' THEN tmo * 1000 + floor(x * 400)::bigint "
    "   WHEN 'failed_to_start' THEN floor(x * 10000)::bigint "
    "   ELSE floor(power(x, 3) * 120000)::bigint END AS dur "
    " FROM (SELECT r0.*, (ARRAY[30, 60, 300, 600])[1 + a % 4] AS tmo, "
    "   CASE WHEN s < 0.020 THEN 'denied' WHEN s < 0.040 THEN 'timeout' "
    "    WHEN s < 0.055 THEN 'signaled' WHEN s < 0.065 THEN 'failed_to_start' "
    "    WHEN s < 0.070 THEN 'transport_error' WHEN s < 0.085 THEN 'cancelled' "
    "    WHEN s < 0.090 THEN 'shutdown' WHEN s < 0.095 THEN 'abandoned' "
    "    ELSE 'exited' END AS st "
    "  FROM (SELECT g, floor(200 * power(random(), 2))::int AS w, random() AS k, "
    "    floor(random() * 1000)::int AS a, floor(random() * 8)::int AS c, "
    "    1 + floor(random() * 6)::int AS n, random() AS x, random() AS s, random() AS u "
    "   FROM generate_series(1, $1::integer) g) r0) r1) r2";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: audit_gen [--batch B] [--days D] [--seed S] CONNINFO ROWS\n"
	        "\n"
	        "Inserts ROWS finished rows into exec_audit of the migrated database CONNINFO\n"
	        "(a libpq connection string or URL), B rows per statement (default %d), each\n"
	        "statement its own transaction, through the table's triggers (every row is\n"
	        "chained). Rows finished within the last D days (default %d). S (default 1, a\n"
	        "whole number) seeds the draws: the same S gives the same distribution.\n"
	        "Progress goes to stderr, the summary to stdout.\n",
	        DEFAULT_BATCH, DEFAULT_DAYS);
}

/* A whole number from lo to hi, or -1. */
static long long parse_count(const char *s, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	return v;
}

/* One statement without parameters or rows: 0, or -1 with the message on stderr. */
static int exec_simple(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int rc =
	    PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;

	if (rc != 0)
		fprintf(stderr, "audit_gen: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"batch", required_argument, NULL, 'b'},
	                                     {"days", required_argument, NULL, 'd'},
	                                     {"seed", required_argument, NULL, 's'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	long long batch = DEFAULT_BATCH, days = DEFAULT_DAYS, seed = 1, total, done = 0, before;
	char seed_sql[64], now_text[64], nbuf[24], dbuf[24], bbuf[24];
	const char *params[4];
	double t0, last;
	PGconn *c = NULL;
	PGresult *r = NULL;
	long long stmts = 0;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			batch = parse_count(optarg, 1, 100000);
			break;
		case 'd':
			days = parse_count(optarg, 1, 3650);
			break;
		case 's':
			seed = parse_count(optarg, 0, 1000000);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (batch < 0 || days < 0 || seed < 0) {
			fprintf(stderr, "audit_gen: --%s %s is out of range\n",
			        opt == 'b'   ? "batch"
			        : opt == 'd' ? "days"
			                     : "seed",
			        optarg);
			return 2;
		}
	}
	if (argc - optind != 2 ||
	    (total = parse_count(argv[optind + 1], 1, (long long)MAX_ROWS)) < 0) {
		usage(stderr);
		return 2;
	}

	c = PQconnectdb(argv[optind]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "audit_gen: cannot connect: %s", PQerrorMessage(c));
		goto out;
	}
	/* setseed takes -1..1; the same seed gives the same draws in this session. */
	snprintf(seed_sql, sizeof(seed_sql), "SELECT setseed(%lld / 1000001.0)", seed);
	if (exec_simple(c, "SET synchronous_commit = off") != 0 || exec_simple(c, seed_sql) != 0)
		goto out;
	r = PQexec(c, "SELECT now(), (SELECT count(*) FROM exec_audit)");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "audit_gen: is the database migrated? %s", PQresultErrorMessage(r));
		goto out;
	}
	snprintf(now_text, sizeof(now_text), "%s", PQgetvalue(r, 0, 0));
	before = atoll(PQgetvalue(r, 0, 1));
	PQclear(r);
	r = PQprepare(c, "gen", insert_sql, 4, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "audit_gen: preparing the insert: %s", PQresultErrorMessage(r));
		goto out;
	}
	PQclear(r);
	r = NULL;

	fprintf(stderr,
	        "audit_gen: inserting %lld rows, %lld per statement, over the %lld days "
	        "before %s\n",
	        total, batch, days, now_text);
	snprintf(dbuf, sizeof(dbuf), "%lld", days);
	params[2] = now_text;
	params[3] = dbuf;
	t0 = last = now_s();
	while (done < total) {
		long long k = total - done < batch ? total - done : batch;
		double t;

		snprintf(bbuf, sizeof(bbuf), "%lld", k);
		snprintf(nbuf, sizeof(nbuf), "%lld", before + done);
		params[0] = bbuf;
		params[1] = nbuf;
		r = PQexecPrepared(c, "gen", 4, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "audit_gen: after %lld rows: %s", done,
			        PQresultErrorMessage(r));
			goto out;
		}
		PQclear(r);
		r = NULL;
		done += k;
		if (++stmts % VACUUM_EVERY == 0 &&
		    exec_simple(c, "VACUUM exec_audit_chain_head") != 0)
			goto out;
		t = now_s();
		if (t - last >= PROGRESS_S || done == total) {
			fprintf(stderr, "audit_gen: %lld/%lld rows (%.0f%%), %.0f rows/s\n", done,
			        total, 100.0 * (double)done / (double)total,
			        (double)done / (t - t0));
			last = t;
		}
	}
	printf("audit_gen: %lld rows in %.1f s, %.0f rows/s\n", total, now_s() - t0,
	       (double)total / (now_s() - t0));
	rc = 0;
out:
	PQclear(r);
	PQfinish(c);
	return rc;
}
