/* tests/check_review.c: the pure parts of reading the audit log (RFC 3339 times, query
 * filters and their errors, the keyset cursor, the page statements), and, against a real
 * PostgreSQL, the upgrade that links rows written before migration 0003 and a chain that
 * the verifier recomputes from awkward values. */
#include <check.h>
#include <limits.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit/chain.h"
#include "audit/filter.h"
#include "audit/query.h"
#include "audit/verify.h"
#include "common/err.h"
#include "db/migrate.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/runner.h"

static const struct {
	const char *text;
	int ok;
	long long us;
} times[] = {
    {"1970-01-01T00:00:00Z", 1, 0},
    {"1970-01-01T00:00:00.000001Z", 1, 1},
    {"1970-01-01T00:00:00.0000019Z", 1, 1}, /* past the microsecond: cut */
    {"1969-12-31T23:59:59.5Z", 1, -500000},
    {"2026-11-23T10:00:00+01:00", 1, 1795424400000000LL},
    {"2026-11-23t09:00:00z", 1, 1795424400000000LL},
    {"2026-11-23T09:30:00.25+00:30", 1, 1795424400250000LL},
    {"2026-11-23T07:00:00-02:00", 1, 1795424400000000LL},
    {"2026-11-23T10:00:00 01:00", 1, 1795424400000000LL}, /* '+' decoded as a space */
    {"2026-11-23T10:00:00 0100", 0, 0},
    {"2024-02-29T00:00:00Z", 1, 1709164800000000LL},
    {"2000-03-01T00:00:00Z", 1, 951868800000000LL},
    {"2023-02-29T00:00:00Z", 0, 0},
    {"1900-02-29T00:00:00Z", 0, 0},
    {"2026-13-01T00:00:00Z", 0, 0},
    {"2026-02-30T00:00:00Z", 0, 0},
    {"2026-11-31T00:00:00Z", 0, 0},
    {"2026-11-23T24:00:00Z", 0, 0},
    {"2026-11-23T10:60:00Z", 0, 0},
    {"2026-11-23T10:00:60Z", 0, 0},
    {"2026-11-23 10:00:00Z", 0, 0},
    {"2026-11-23T10:00:00", 0, 0},
    {"2026-11-23T10:00:00.Z", 0, 0},
    {"2026-11-23T10:00:00.1234567890Z", 0, 0},
    {"2026-11-23T10:00:00+0100", 0, 0},
    {"2026-11-23T10:00:00+24:00", 0, 0},
    {"2026-11-23T10:00:00Z ", 0, 0},
    {"2026-1-23T10:00:00Z", 0, 0},
    {"9999-12-31T23:59:59.999999Z", 1, 253402300799999999LL},
    {"9999-12-31T23:29:59-05:30", 0, 0}, /* 10000-01-01T04:59:59Z: past the range */
    {"yesterday", 0, 0},
    {"", 0, 0},
};

START_TEST(rfc3339_times)
{
	long long us = -1;
	int rc = audit_time_parse(times[_i].text, &us);

	if (times[_i].ok) {
		ck_assert_msg(rc == 0, "\"%s\" refused", times[_i].text);
		ck_assert_msg(us == times[_i].us, "\"%s\": %lld, not %lld", times[_i].text, us,
		              times[_i].us);
	} else {
		ck_assert_msg(rc == EB_ERR_INVAL, "\"%s\" accepted", times[_i].text);
	}
}
END_TEST

START_TEST(times_format_and_parse_back)
{
	static const long long values[] = {
	    0, 1, -1, -500000, 1795424400123456LL, 951868800000000LL, 253402300799999999LL};
	char out[32];
	long long back;

	audit_time_format(-500000, out);
	ck_assert_str_eq(out, "1969-12-31T23:59:59.500000Z");
	audit_time_format(1795424400123456LL, out);
	ck_assert_str_eq(out, "2026-11-23T09:00:00.123456Z");
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		audit_time_format(values[i], out);
		ck_assert_int_eq(audit_time_parse(out, &back), 0);
		ck_assert_msg(back == values[i], "%lld -> %s -> %lld", values[i], out, back);
	}
}
END_TEST

/* A query string as pairs, and what parsing it says: NULL field when it is accepted. */
static const struct {
	const char *pairs[12]; /* name, value, name, value, ..., NULL */
	const char *field;
} filters[] = {
    {{NULL}, NULL},
    {{"workspace_id", "ws-1", "org_id", "acme", "actor", "token:ebk_AbCdEfGh", "status", "exited",
      NULL},
     NULL},
    {{"break_glass", "true", "since", "2026-11-23T00:00:00Z", "until", "2026-11-24T00:00:00Z",
      NULL},
     NULL},
    {{"limit", "1", NULL}, NULL},
    {{"limit", "1000", NULL}, NULL},
    {{"limit", "0", NULL}, "limit"},
    {{"limit", "5000", NULL}, "limit"},
    {{"limit", "1001", NULL}, "limit"},
    {{"limit", "-1", NULL}, "limit"},
    {{"limit", "+5", NULL}, "limit"},
    {{"limit", "10x", NULL}, "limit"},
    {{"limit", "", NULL}, "limit"},
    {{"status", "bogus", NULL}, "status"},
    {{"status", "EXITED", NULL}, "status"},
    {{"break_glass", "maybe", NULL}, "break_glass"},
    {{"break_glass", "1", NULL}, "break_glass"},
    {{"since", "yesterday", NULL}, "since"},
    {{"until", "2026-02-30T00:00:00Z", NULL}, "until"},
    {{"workspace_id", "", NULL}, "workspace_id"},
    {{"actor", "a\nb", NULL}, "actor"},
    {{"workspace_id", "\xff", NULL}, "workspace_id"},
    {{"org_id", "caf\xc3", NULL}, "org_id"},
    {{"actor", "\xed\xa0\x80", NULL}, "actor"},
    {{"org_id", "caf\xc3\xa9", NULL}, NULL},
    {{"cursor", "AQAGYPFG2wNdDIjCvZ_XTqmwLAHeSTtbHDjN36EmzAmq", NULL}, "cursor"},
    {{"cursor", "not a cursor", NULL}, "cursor"},
    {{"cursor", "", NULL}, "cursor"},
    {{"workspace", "ws-1", NULL}, "workspace"},
    {{"status", "exited", "status", "denied", NULL}, "status"},
    {{"limit", "5", "bogus", "1", NULL}, "bogus"},
    {{"batch_id", "0c88c2bd-9fd7-4ea9-b02c-01de493b5b1c", NULL}, NULL},
    {{"batch_id", "not-a-uuid", NULL}, "batch_id"},
    {{"batch_id", "", NULL}, "batch_id"},
};

static int parse_pairs(const char *const *pairs, struct audit_filter *f, char *field, char *err)
{
	const char *names[6], *values[6];
	size_t n = 0;

	for (; pairs[2 * n] != NULL; n++) {
		names[n] = pairs[2 * n];
		values[n] = pairs[2 * n + 1];
	}
	return audit_filter_parse(f, names, values, n, field, 64, err, 300);
}

START_TEST(filters_and_their_errors)
{
	struct audit_filter f;
	char field[64], err[300];
	int rc = parse_pairs(filters[_i].pairs, &f, field, err);

	if (filters[_i].field == NULL) {
		ck_assert_msg(rc == 0, "case %d refused: %s: %s", _i, field, err);
	} else {
		ck_assert_msg(rc == EB_ERR_INVAL, "case %d accepted", _i);
		ck_assert_str_eq(field, filters[_i].field);
		ck_assert_msg(strlen(err) > 10, "case %d: no message", _i);
	}
}
END_TEST

START_TEST(filter_values_are_kept)
{
	static const char *const pairs[] = {
	    "workspace_id",         "ws-1",  "status", "timeout", "break_glass", "false", "since",
	    "2026-11-23T09:00:00Z", "limit", "7",      NULL};
	struct audit_filter f;
	char field[64], err[300];

	ck_assert_int_eq(parse_pairs(pairs, &f, field, err), 0);
	ck_assert_str_eq(f.workspace_id, "ws-1");
	ck_assert_str_eq(f.status, "timeout");
	ck_assert_ptr_null(f.org_id);
	ck_assert_ptr_null(f.actor);
	ck_assert_int_eq(f.break_glass, 0);
	ck_assert(f.has_since && !f.has_until);
	ck_assert(f.since_us == 1795424400000000LL);
	ck_assert_int_eq(f.limit, 7);
	ck_assert(!f.has_cursor);
	ck_assert_int_eq(parse_pairs((const char *const[]){NULL}, &f, field, err), 0);
	ck_assert_int_eq(f.limit, AUDIT_LIMIT_DEFAULT);
	ck_assert_int_eq(f.break_glass, -1);
}
END_TEST

#define ID "0c88c2bd-9fd7-4ea9-b02c-01de493b5b1c"

START_TEST(cursor_round_trips_and_is_bound_to_its_filters)
{
	struct audit_filter f, g;
	char c[AUDIT_CURSOR_MAX], forged[AUDIT_CURSOR_MAX];

	audit_filter_init(&f);
	f.workspace_id = "ws-1";
	f.status = "exited";
	audit_cursor_encode(&f, 1795424400123456LL, ID, c);
	ck_assert_uint_eq(strlen(c), 44);
	ck_assert_uint_eq(
	    strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 44);
	g = f;
	ck_assert_int_eq(audit_cursor_decode(&g, c), 0);
	ck_assert(g.has_cursor);
	ck_assert(g.cursor_us == 1795424400123456LL);
	ck_assert_str_eq(g.cursor_id, ID);
	/* The page size may change from page to page. */
	g = f;
	g.limit = 3;
	ck_assert_int_eq(audit_cursor_decode(&g, c), 0);
	/* Other filters, any one of them, make it an error. */
	g = f;
	g.status = "denied";
	ck_assert_int_eq(audit_cursor_decode(&g, c), EB_ERR_INVAL);
	g = f;
	g.workspace_id = NULL;
	ck_assert_int_eq(audit_cursor_decode(&g, c), EB_ERR_INVAL);
	g = f;
	g.break_glass = 1;
	ck_assert_int_eq(audit_cursor_decode(&g, c), EB_ERR_INVAL);
	g = f;
	g.batch_id = ID;
	ck_assert_int_eq(audit_cursor_decode(&g, c), EB_ERR_INVAL);
	g = f;
	g.has_since = true;
	ck_assert_int_eq(audit_cursor_decode(&g, c), EB_ERR_INVAL);
	/* Every single character changed, and cut or lengthened. */
	for (size_t i = 0; i < 44; i++) {
		memcpy(forged, c, sizeof(forged));
		forged[i] = forged[i] == 'A' ? 'B' : 'A';
		g = f;
		ck_assert_msg(audit_cursor_decode(&g, forged) == EB_ERR_INVAL, "changed at %zu", i);
		ck_assert(!g.has_cursor);
	}
	memcpy(forged, c, sizeof(forged));
	forged[43] = '\0';
	ck_assert_int_eq(audit_cursor_decode(&g, forged), EB_ERR_INVAL);
	snprintf(forged, sizeof(forged), "%sA", c);
	ck_assert_int_eq(audit_cursor_decode(&g, forged), EB_ERR_INVAL);
}
END_TEST

/* A cursor is only as good as its digest, which anyone can compute: a position PostgreSQL
 * cannot hold as a timestamp is refused here, before any query. */
START_TEST(cursor_positions_out_of_range_are_refused)
{
	static const long long bad[] = {LLONG_MIN, LLONG_MAX, -62167219200000001LL,
	                                253402300800000000LL};
	static const long long good[] = {-62167219200000000LL, 253402300799999999LL, 0};
	struct audit_filter f, g;
	char c[AUDIT_CURSOR_MAX];

	audit_filter_init(&f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		audit_cursor_encode(&f, bad[i], ID, c);
		g = f;
		ck_assert_msg(audit_cursor_decode(&g, c) == EB_ERR_INVAL, "accepted %lld", bad[i]);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		audit_cursor_encode(&f, good[i], ID, c);
		g = f;
		ck_assert_msg(audit_cursor_decode(&g, c) == 0, "refused %lld", good[i]);
		ck_assert(g.cursor_us == good[i]);
	}
}
END_TEST

/* The last placeholder of a statement, which must be its parameter count. */
static int last_placeholder(const char *sql)
{
	int max = 0;

	for (const char *p = strchr(sql, '$'); p != NULL; p = strchr(p + 1, '$'))
		if (atoi(p + 1) > max)
			max = atoi(p + 1);
	return max;
}

START_TEST(page_statements_bind_every_filter_and_the_scope)
{
	static const struct audit_scope all = {AUDIT_SCOPE_ALL, NULL, NULL},
	                                org = {AUDIT_SCOPE_ORG, "acme", NULL},
	                                ws = {AUDIT_SCOPE_WORKSPACE, "acme", "ws-1"};
	struct audit_filter f;
	struct audit_query q;

	audit_filter_init(&f);
	audit_query_list(&q, &f, &all);
	ck_assert_int_eq(q.nparams, 1); /* the limit */
	ck_assert_str_eq(q.params[0], "101");
	ck_assert_int_eq(last_placeholder(q.sql), q.nparams);
	ck_assert_ptr_null(strstr(q.sql, "org_id ="));

	audit_query_list(&q, &f, &org);
	ck_assert_int_eq(q.nparams, 2);
	ck_assert_str_eq(q.params[0], "acme");
	ck_assert_ptr_nonnull(strstr(q.sql, "org_id = $1"));

	audit_query_list(&q, &f, &ws);
	ck_assert_int_eq(q.nparams, 3);
	ck_assert_ptr_nonnull(strstr(q.sql, "workspace_id = $1"));
	ck_assert_ptr_nonnull(strstr(q.sql, "org_id = $2"));
	ck_assert_str_eq(q.params[0], "ws-1");
	ck_assert_str_eq(q.params[1], "acme");

	f.workspace_id = "w";
	f.org_id = "o";
	f.actor = "a";
	f.status = "exited";
	f.break_glass = 1;
	f.has_since = f.has_until = true;
	f.since_us = 5;
	f.until_us = 6;
	f.limit = 10;
	f.has_cursor = true;
	f.cursor_us = 7;
	memcpy(f.cursor_id, ID, sizeof(ID));
	audit_query_list(&q, &f, &ws);
	ck_assert_int_eq(q.nparams, 2 + 4 + 2 + 2 + 1);
	ck_assert_int_eq(last_placeholder(q.sql), q.nparams);
	ck_assert_str_eq(q.params[q.nparams - 1], "11");
	ck_assert_str_eq(q.params[q.nparams - 2], ID);
	ck_assert_str_eq(q.params[q.nparams - 3], "7");
	ck_assert_ptr_nonnull(strstr(q.sql, "break_glass_reason IS NOT NULL"));
	ck_assert_ptr_nonnull(strstr(q.sql, "ORDER BY started_at DESC, exec_id DESC"));

	audit_query_one(&q, ID, &org);
	ck_assert_int_eq(q.nparams, 2);
	ck_assert_str_eq(q.params[1], ID);
	ck_assert_int_eq(last_placeholder(q.sql), 2);

	audit_query_links(&q, &f, 3, 9, true);
	ck_assert_int_eq(last_placeholder(q.sql), q.nparams);
	ck_assert_ptr_nonnull(strstr(q.sql, "ORDER BY chain_seq DESC"));
}
END_TEST

START_TEST(exec_ids)
{
	ck_assert(audit_exec_id_valid(ID));
	ck_assert(audit_exec_id_valid("0C88C2BD-9FD7-4EA9-B02C-01DE493B5B1C"));
	ck_assert(!audit_exec_id_valid("0c88c2bd9fd74ea9b02c01de493b5b1c"));
	ck_assert(!audit_exec_id_valid("0c88c2bd-9fd7-4ea9-b02c-01de493b5b1"));
	ck_assert(!audit_exec_id_valid("0c88c2bd-9fd7-4ea9-b02c-01de493b5b1g"));
	ck_assert(!audit_exec_id_valid("0c88c2bd-9fd7-4ea9-b02c_01de493b5b1c"));
	ck_assert(!audit_exec_id_valid(""));
}
END_TEST

START_TEST(anchors)
{
	static const char z64[] =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	unsigned char h[AUDIT_HASH_LEN];
	char text[100];
	long long seq;

	snprintf(text, sizeof(text), "0:%s", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), 0); /* the empty chain's head */
	ck_assert(seq == 0);
	snprintf(text, sizeof(text), "1042:%.63sF", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), 0);
	ck_assert(seq == 1042 && h[31] == 0x0f && h[0] == 0);
	snprintf(text, sizeof(text), "-1:%s", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), EB_ERR_INVAL);
	snprintf(text, sizeof(text), "12:%.62s", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), EB_ERR_INVAL);
	snprintf(text, sizeof(text), "12:%.63sg", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), EB_ERR_INVAL);
	snprintf(text, sizeof(text), "12x:%s", z64);
	ck_assert_int_eq(audit_anchor_parse(text, &seq, h), EB_ERR_INVAL);
	ck_assert_int_eq(audit_anchor_parse(z64, &seq, h), EB_ERR_INVAL);
	ck_assert_int_eq(audit_anchor_parse("", &seq, h), EB_ERR_INVAL);
}
END_TEST

/* --- against PostgreSQL ----------------------------------------------------------------- */

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
	                  PQresultStatus(res) == PGRES_TUPLES_OK,
	              "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

static const char awkward_rows[] =
    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, actor_kind, "
    " break_glass_reason, argv, cwd, env_keys, stdin_bytes, client_addr, timeout_s, status, "
    " error_code, exit_code, exit_signal, started_at, finished_at, duration_ms, stdout_bytes, "
    " stderr_bytes, stdout_truncated, broker_instance) VALUES "
    "(gen_random_uuid(), 'r-1', 'ws-1', 'acme', 'token:ebk_AbCdEfGh', 'org', NULL, "
    " ARRAY['sh', '-c', E'echo \"a,b\"\\n''x''', '', 'caf\xc3\xa9 \xf0\x9f\x9a\x80'], NULL, "
    " '{}', 0, '10.0.0.7', 30, 'exited', NULL, 3, NULL, '1969-12-31 23:59:59.5+00', "
    " '1970-01-01 00:00:01.000001+00', 1500, 10, 0, true, 'b-1'),"
    "(gen_random_uuid(), 'r-2', 'ws-1', 'acme', 'token:ebk_AdMiNaDm', 'admin', "
    " 'incident \"42\", \xc3\xa9', ARRAY['kill', '-9', '1'], '/srv/app', '{LANG,CI}', 1234, "
    " '::1', NULL, 'signaled', NULL, NULL, 'KILL', now(), now(), 0, 0, 5, false, NULL),"
    "(gen_random_uuid(), 'r-3', 'ws-2', 'globex', 'token:ebk_GlObExGl', 'org', NULL, "
    " ARRAY['x'], NULL, '{}', 0, NULL, NULL, 'denied', 'not_found', NULL, NULL, now(), now(), "
    " 0, 0, 0, false, 'b-2')";

/* An upgrade: rows written under 0002, finished and running, are linked by 0003 in the
 * order they finished; the running one becomes a link when it completes later. */
START_TEST(migration_0003_links_rows_written_before_it)
{
	struct audit_verify_result r;
	char db[512], err[512], *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	PGconn *c;

	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	c = PQconnectdb(db);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	ck_assert_int_ge(migrations_embedded_count, 3);
	ck_assert_int_eq(migrations_embedded[2].version, 3);
	exec_ok(c, migrations_embedded[0].sql);
	exec_ok(c, migrations_embedded[1].sql);
	exec_ok(c, awkward_rows);
	exec_ok(c, "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	           "actor_kind, argv, status, started_at) VALUES "
	           "('11111111-1111-1111-1111-111111111111', 'r-run', 'ws-1', 'acme', 'token:x', "
	           "'org', '{sleep,9}', 'running', now())");
	exec_ok(c, migrations_embedded[2].sql);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM exec_audit WHERE chain_seq IS NOT "
	                                  "NULL"),
	                 3);
	/* in the order they finished: the 1970 row first */
	ck_assert_int_eq(tu_query_int(db, "SELECT chain_seq FROM exec_audit WHERE request_id = "
	                                  "'r-1'"),
	                 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT seq FROM exec_audit_chain_head"), 3);
	/* the later migrations, which today's verifier reads */
	for (size_t i = 3; i < migrations_embedded_count; i++)
		exec_ok(c, migrations_embedded[i].sql);
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 0);
	ck_assert(r.links == 3 && r.problems == 0 && r.head_seq == 3);
	exec_ok(c, "UPDATE exec_audit SET status = 'exited', exit_code = 0, finished_at = now(), "
	           "duration_ms = 9 WHERE request_id = 'r-run'");
	ck_assert_int_eq(tu_query_int(db, "SELECT chain_seq FROM exec_audit WHERE request_id = "
	                                  "'r-run'"),
	                 4);
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 0);
	ck_assert(r.links == 4 && r.problems == 0);
	fclose(f);
	ck_assert_msg(outlen == 0, "verify printed: %s", out);
	free(out);
	PQfinish(c);
}
END_TEST

/* The verifier's canonical content is byte for byte the database's, for every row. */
START_TEST(canonical_content_matches_the_database)
{
	char db[512], *canon = NULL;
	size_t len, cap = 0;
	struct audit_query q;
	struct audit_filter f;
	PGresult *res, *sqlres;
	PGconn *c;

	tu_migrated_db(db, sizeof(db));
	c = PQconnectdb(db);
	exec_ok(c, awkward_rows);
	audit_filter_init(&f);
	audit_query_links(&q, &f, 0, 1000, false);
	res = PQexecParams(c, q.sql, q.nparams, NULL, q.params, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_int_eq(PQntuples(res), 3);
	sqlres = PQexec(c, "SELECT encode(exec_audit_canonical(a), 'hex') FROM exec_audit a ORDER "
	                   "BY chain_seq");
	ck_assert_int_eq(PQntuples(sqlres), 3);
	for (int i = 0; i < 3; i++) {
		char *hex;

		len = 0;
		ck_assert_int_eq(audit_canonical(res, i, &canon, &len, &cap), 0);
		hex = malloc(2 * len + 1);
		for (size_t k = 0; k < len; k++)
			snprintf(hex + 2 * k, 3, "%02x", (unsigned char)canon[k]);
		ck_assert_str_eq(hex, PQgetvalue(sqlres, i, 0));
		free(hex);
	}
	free(canon);
	PQclear(res);
	PQclear(sqlres);
	PQfinish(c);
}
END_TEST

/* Rows finished at once by many connections (as by several brokers) form one chain, and
 * verify, walking one snapshot, finds it intact while they are still being written. */
START_TEST(concurrent_writers_make_one_chain)
{
	enum { WRITERS = 6, ROWS = 60 };
	struct audit_verify_result r;
	char db[512], err[512];
	pid_t pids[WRITERS];
	int verifies = 0, status;
	bool running = true;
	PGconn *c;

	tu_migrated_db(db, sizeof(db));
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		ck_assert_int_ge(pids[w], 0);
		if (pids[w] == 0) {
			PGconn *wc = PQconnectdb(db);
			char sql[600];
			int bad = PQstatus(wc) != CONNECTION_OK;

			for (int i = 0; i < ROWS && !bad; i++) {
				PGresult *res;

				snprintf(
				    sql, sizeof(sql),
				    "WITH n AS (INSERT INTO exec_audit (exec_id, request_id, "
				    "workspace_id, org_id, actor, actor_kind, argv, status) VALUES "
				    "(gen_random_uuid(), 'w%d-%d', 'ws-%d', 'acme', 'token:w%d', "
				    "'org', '{true}', 'running') RETURNING exec_id) SELECT 1 FROM "
				    "n",
				    w, i, w, w);
				res = PQexec(wc, sql);
				bad |= PQresultStatus(res) != PGRES_TUPLES_OK;
				PQclear(res);
				snprintf(sql, sizeof(sql),
				         "UPDATE exec_audit SET status = 'exited', exit_code = %d, "
				         "finished_at = now(), duration_ms = 1, seal_pending = %s "
				         "WHERE request_id = 'w%d-%d'",
				         i % 3, _i ? "true" : "false", w, i);
				res = PQexec(wc, sql);
				bad |= PQresultStatus(res) != PGRES_COMMAND_OK;
				PQclear(res);
				if (_i == 1 && (i % 5 == 4 || i == ROWS - 1)) {
					/* as a broker's sealer: its own rows, in batches */
					snprintf(sql, sizeof(sql),
					         "SELECT exec_audit_seal(array_agg(exec_id), "
					         "'30 s') FROM exec_audit WHERE request_id LIKE "
					         "'w%d-%%'",
					         w);
					res = PQexec(wc, sql);
					bad |= PQresultStatus(res) != PGRES_TUPLES_OK;
					PQclear(res);
				}
			}
			PQfinish(wc);
			_exit(bad);
		}
	}
	c = PQconnectdb(db);
	while (running) {
		running = false;
		for (int w = 0; w < WRITERS; w++) {
			if (pids[w] == 0)
				continue;
			if (waitpid(pids[w], &status, WNOHANG) == 0) {
				running = true;
				continue;
			}
			ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			              "writer %d failed", w);
			pids[w] = 0;
		}
		ck_assert_msg(audit_verify(c, NULL, stdout, &r, err, sizeof(err)) == 0,
		              "verify during writes: %lld problems (%s)", r.problems, err);
		verifies++;
	}
	ck_assert_int_eq(audit_verify(c, NULL, stdout, &r, err, sizeof(err)), 0);
	ck_assert_int_eq(r.links, WRITERS * ROWS);
	ck_assert_int_eq(r.pending, 0);
	ck_assert_int_eq(r.head_seq, WRITERS * ROWS);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(DISTINCT chain_seq) FROM exec_audit"),
	                 WRITERS * ROWS);
	ck_assert_int_ge(verifies, 2);
	PQfinish(c);
}
END_TEST

/* A finished row waiting for its link: verify counts it, then reports it once it has
 * waited past SEAL_LATE_S_TEXT; nothing about it can change but being linked, and once
 * linked the chain is whole. */
START_TEST(rows_waiting_for_their_link)
{
	struct audit_verify_result r;
	char db[512], err[512], *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	PGconn *c;
	PGresult *res;

	tu_migrated_db(db, sizeof(db));
	c = PQconnectdb(db);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	exec_ok(c, "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	           "actor_kind, argv, status, started_at) VALUES "
	           "('22222222-2222-2222-2222-222222222222', 'r-p', 'ws-1', 'acme', 'token:x', "
	           "'org', '{true}', 'running', now() - interval '10 min'), "
	           "('33333333-3333-3333-3333-333333333333', 'r-now', 'ws-1', 'acme', "
	           "'token:x', 'org', '{true}', 'running', now())");
	exec_ok(c, "UPDATE exec_audit SET status = 'exited', exit_code = 0, duration_ms = 1, "
	           "finished_at = started_at + interval '1 s', seal_pending = true");
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM exec_audit WHERE chain_seq IS "
	                                  "NULL AND seal_pending"),
	                 2);
	/* one finished moments ago, one ten minutes ago */
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 1);
	ck_assert_msg(r.problems == 1 && r.pending == 1, "%lld problems, %lld pending", r.problems,
	              r.pending);
	fflush(f);
	ck_assert_msg(strstr(out, "22222222-2222-2222-2222-222222222222: unlinked") != NULL,
	              "verify printed: %s", out);
	/* waiting, it still cannot change */
	res = PQexec(c, "UPDATE exec_audit SET exit_code = 1 WHERE request_id = 'r-now'");
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	PQclear(res);
	res = PQexec(c, "UPDATE exec_audit SET seal_pending = false WHERE request_id = 'r-now'");
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	PQclear(res);
	/* a seal of nothing but stale rows links the old one only */
	ck_assert_int_eq(tu_query_int(db, "SELECT exec_audit_seal('{}', '30 s')"), 1);
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 0);
	ck_assert(r.links == 1 && r.pending == 1 && r.problems == 0);
	/* its own broker's seal links the other; a second seal of it does nothing */
	ck_assert_int_eq(tu_query_int(db, "SELECT exec_audit_seal("
	                                  "'{33333333-3333-3333-3333-333333333333}', '30 s')"),
	                 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT exec_audit_seal("
	                                  "'{33333333-3333-3333-3333-333333333333}', '30 s')"),
	                 0);
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 0);
	ck_assert(r.links == 2 && r.pending == 0 && r.problems == 0 && r.head_seq == 2);
	/* the stale one went first */
	ck_assert_int_eq(tu_query_int(db, "SELECT chain_seq FROM exec_audit WHERE request_id = "
	                                  "'r-p'"),
	                 1);
	fclose(f);
	free(out);
	PQfinish(c);
}
END_TEST

/* Sample rows of every shape for the canonical content, as exec_audit values that no
 * constraint holds back: each column takes, pseudo-randomly per row, one of a few awkward
 * values, NULL among them (multi-byte text, empty strings, the encoding's own ':' and '-',
 * arrays empty, with NULL or empty elements, of two dimensions or not starting at 1). */
static const char canon_samples_sql[] =
    "CREATE FUNCTION pick(n integer, j integer, k integer) RETURNS integer LANGUAGE sql "
    " AS $$ SELECT 1 + abs(hashint4(n * 37 + j)) % k $$;"
    "CREATE FUNCTION ct(n integer, j integer) RETURNS text LANGUAGE sql AS $$ SELECT "
    " (ARRAY[NULL, '', '-', '0:', 'a', 'caf\xc3\xa9 \xf0\x9f\x9a\x80', E'two\\nlines', "
    " 'x:y-z', repeat('\xc3\xa9', 300), '42'])[pick(n, j, 10)] $$;"
    "CREATE FUNCTION ca(n integer, j integer) RETURNS text[] LANGUAGE sql AS $$ SELECT "
    " (ARRAY[NULL, '{}', '{\"\"}', '{NULL}', '{a,NULL,\"\"}', "
    " '{caf\xc3\xa9,\xf0\x9f\x9a\x80,\"-\",\"1:\"}', '{{a,b},{c,NULL}}', '[0:1]={x,y}', "
    " (SELECT array_agg(g::text)::text FROM generate_series(1, 300) g)])[pick(n, j, 9)]"
    " ::text[] $$;"
    "CREATE FUNCTION cb(n integer, j integer) RETURNS bigint LANGUAGE sql AS $$ SELECT "
    " (ARRAY[NULL, 0, 1, -1, 255, 9223372036854775807])[pick(n, j, 6)] $$;"
    "CREATE FUNCTION cbool(n integer, j integer) RETURNS boolean LANGUAGE sql AS $$ SELECT "
    " (ARRAY[NULL, true, false])[pick(n, j, 3)] $$;"
    "CREATE FUNCTION cts(n integer, j integer) RETURNS timestamptz LANGUAGE sql AS $$ SELECT "
    " (ARRAY[NULL, '1969-12-31 23:59:59.5+00', '1970-01-01 00:00:00.000001+00', "
    " '2026-11-23 10:00:00.123456+01', '1900-06-01 12:34:56.789+00', "
    " '2999-12-31 23:59:59.999999+00', now()])[pick(n, j, 7)]::timestamptz $$;"
    "CREATE TABLE canon_samples AS SELECT i, ROW("
    " CASE WHEN pick(i, 1, 5) = 1 THEN NULL ELSE gen_random_uuid() END, ct(i, 2), ct(i, 3),"
    " ct(i, 4), ct(i, 5), ct(i, 6), ct(i, 7), ca(i, 8), ct(i, 9), ca(i, 10), cb(i, 11),"
    " (ARRAY[NULL, '10.0.0.7', '::1', '192.168.0.0/16', '2001:db8::1/64'])"
    "  [pick(i, 12, 5)]::inet, (cb(i, 13) % 1000)::integer, ct(i, 14), ct(i, 15),"
    " (cb(i, 16) % 256)::integer, ct(i, 17), cts(i, 18), cts(i, 19), cb(i, 20), cb(i, 21),"
    " cb(i, 22), cbool(i, 23), cbool(i, 24), ct(i, 25), cb(i, 26), sha256(i::text::bytea),"
    " cbool(i, 27), cbool(i, 28), ct(i, 29),"
    " CASE WHEN pick(i, 30, 2) = 1 THEN NULL ELSE gen_random_uuid() END)::exec_audit AS r"
    " FROM generate_series(1, 2000) i";

/* Migration 0012 made the canonical content cheaper to build: for every shape of row it
 * must give the bytes the functions before it gave. */
START_TEST(canonical_content_is_kept_by_migration_0012)
{
	char db[512];
	size_t i;
	PGconn *c;

	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);
	c = PQconnectdb(db);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	for (i = 0; i < migrations_embedded_count && migrations_embedded[i].version < 12; i++)
		exec_ok(c, migrations_embedded[i].sql);
	ck_assert_uint_lt(i, migrations_embedded_count);
	ck_assert_int_eq(migrations_embedded[i].version, 12);
	exec_ok(c, canon_samples_sql);
	exec_ok(c, "CREATE TABLE canon_before AS SELECT i, exec_audit_canonical(r) AS c "
	           "FROM canon_samples");
	/* the samples are as varied as they claim */
	ck_assert_int_eq(tu_query_int(db, "SELECT count(DISTINCT c) FROM canon_before"), 2000);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM canon_before WHERE c IS NULL"), 0);
	ck_assert_int_ge(tu_query_int(db, "SELECT count(*) FROM canon_samples WHERE "
	                                  "(r).argv::text LIKE '%NULL%' AND "
	                                  "(r).cwd = '' AND "
	                                  "(r).detached"),
	                 1);
	exec_ok(c, migrations_embedded[i].sql);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM canon_samples s JOIN canon_before "
	                                  "b USING (i) WHERE exec_audit_canonical(s.r) IS "
	                                  "DISTINCT FROM b.c"),
	                 0);
	exec_ok(c, "DROP TABLE canon_samples, canon_before");
	for (i++; i < migrations_embedded_count; i++)
		exec_ok(c, migrations_embedded[i].sql);
	PQfinish(c);
}
END_TEST

/* One seal of many pending rows, finished in an order that is neither their insertion's nor
 * their ids': they are linked in the order they finished (ties by exec_id), each row's
 * link recomputes (verify), and a row already linked or not asked for is left alone. */
START_TEST(seal_links_a_batch_in_finished_order)
{
	struct audit_verify_result r;
	char db[512], err[512], *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	PGconn *c;

	tu_migrated_db(db, sizeof(db));
	c = PQconnectdb(db);
	ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
	exec_ok(c, "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
	           "actor_kind, argv, status, started_at) SELECT gen_random_uuid(), 'r-' || g, "
	           "'ws-1', 'acme', 'token:x', 'org', ARRAY['echo', g::text], 'running', "
	           "now() - interval '1 s' FROM generate_series(1, 300) g");
	/* finished in a shuffled order, some at the same microsecond */
	exec_ok(c, "UPDATE exec_audit SET status = 'exited', exit_code = 0, duration_ms = 1, "
	           "seal_pending = true, finished_at = started_at + "
	           "((abs(hashtext(request_id)) % 100) * interval '1 ms')");
	/* one of them is linked first, alone */
	ck_assert_int_eq(tu_query_int(db, "SELECT exec_audit_seal(ARRAY(SELECT exec_id FROM "
	                                  "exec_audit WHERE request_id = 'r-7'), '1 day')"),
	                 1);
	/* the others but r-9, and r-7 again */
	ck_assert_int_eq(tu_query_int(db, "SELECT exec_audit_seal(ARRAY(SELECT exec_id FROM "
	                                  "exec_audit WHERE request_id <> 'r-9'), '1 day')"),
	                 298);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM exec_audit WHERE seal_pending"), 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT chain_seq FROM exec_audit WHERE request_id = "
	                                  "'r-7'"),
	                 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM (SELECT chain_seq, row_number() "
	                                  "OVER (ORDER BY finished_at, exec_id) + 1 AS want FROM "
	                                  "exec_audit WHERE request_id NOT IN ('r-7', 'r-9')) x "
	                                  "WHERE chain_seq = want"),
	                 298);
	ck_assert_int_ge(tu_query_int(db, "SELECT count(*) - count(DISTINCT finished_at) FROM "
	                                  "exec_audit"),
	                 1);
	ck_assert_int_eq(tu_query_int(db, "SELECT seq FROM exec_audit_chain_head"), 299);
	ck_assert_int_eq(audit_verify(c, NULL, f, &r, err, sizeof(err)), 0);
	ck_assert(r.links == 299 && r.pending == 1 && r.problems == 0);
	fclose(f);
	free(out);
	PQfinish(c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("review");
	TCase *pure = tcase_create("pure"), *pg = tcase_create("pg");

	tcase_add_loop_test(pure, rfc3339_times, 0, sizeof(times) / sizeof(times[0]));
	tcase_add_test(pure, times_format_and_parse_back);
	tcase_add_loop_test(pure, filters_and_their_errors, 0,
	                    sizeof(filters) / sizeof(filters[0]));
	tcase_add_test(pure, filter_values_are_kept);
	tcase_add_test(pure, cursor_round_trips_and_is_bound_to_its_filters);
	tcase_add_test(pure, cursor_positions_out_of_range_are_refused);
	tcase_add_test(pure, page_statements_bind_every_filter_and_the_scope);
	tcase_add_test(pure, exec_ids);
	tcase_add_test(pure, anchors);
	suite_add_tcase(s, pure);
	tcase_set_timeout(pg, 60);
	tcase_add_test(pg, migration_0003_links_rows_written_before_it);
	tcase_add_test(pg, canonical_content_matches_the_database);
	tcase_add_loop_test(pg, concurrent_writers_make_one_chain, 0,
	                    2); /* linked at once, sealed */
	tcase_add_test(pg, rows_waiting_for_their_link);
	tcase_add_test(pg, canonical_content_is_kept_by_migration_0012);
	tcase_add_test(pg, seal_links_a_batch_in_finished_order);
	suite_add_tcase(s, pg);
	if (th_setup(TH_PG) != 0)
		return 2;
	return tu_run_suite(s);
}
