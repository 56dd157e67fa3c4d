/* tests/check_audit_api.c: reading the audit log over HTTP (GET /v1/audit and
 * GET /v1/audit/{exec_id}) end to end: the real `exec-broker serve` started once in main()
 * against a real PostgreSQL and real sshds, driven by the kit's client. What each kind of
 * token sees, every filter and every refusal of one, the item against the row in the
 * database, keyset pages (also while rows are appended), the rows of real execs, and
 * PostgreSQL going away. Rows are seeded in SQL after the broker started (so that it does
 * not abandon the running ones), each data set under its own actor; the database's time
 * zone is not UTC. */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/filter.h"
#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define MAIN_INSTANCE "eb-audit-main"
#define REASON        "incident 77: reading the log back"
#define SEED_INSTANCE "eb-audit-seed"
#define NO_SUCH_ID    "a1000000-0000-4000-8000-0000000000ff"

static struct kit_world W;
static struct kit_broker B; /* started in main(), shared by every test */

/* Rows filed directly, finished a second after they start unless running; a helper function
 * in the throwaway database keeps the data sets below short. */
static const char seed_fn_sql[] =
    "CREATE FUNCTION t_seed(p_rid text, p_ws text, p_org text, p_actor text, p_kind text, "
    "p_status text, p_started timestamptz, p_id uuid DEFAULT gen_random_uuid()) "
    "RETURNS uuid LANGUAGE sql AS $$ "
    "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, actor_kind, "
    "break_glass_reason, argv, status, error_code, exit_code, exit_signal, started_at, "
    "finished_at, duration_ms, broker_instance) VALUES (p_id, p_rid, p_ws, p_org, p_actor, "
    "p_kind, CASE WHEN p_kind = 'admin' THEN 'seeded: ' || p_rid END, ARRAY['true', p_rid], "
    "p_status, CASE WHEN p_status IN ('denied', 'failed_to_start') THEN 'not_found' END, "
    "CASE WHEN p_status = 'exited' THEN 0 END, CASE WHEN p_status = 'signaled' THEN 'KILL' END, "
    "p_started, CASE WHEN p_status <> 'running' THEN p_started + interval '1 s' END, "
    "CASE WHEN p_status <> 'running' THEN 1000 END, '" SEED_INSTANCE "') "
    "RETURNING exec_id $$";

#define S1 "a1000000-0000-4000-8000-000000000001"
#define S2 "a1000000-0000-4000-8000-000000000002"
#define S3 "a1000000-0000-4000-8000-000000000003"
#define S4 "a1000000-0000-4000-8000-000000000004"
#define S5 "a1000000-0000-4000-8000-000000000005"
#define S6 "a1000000-0000-4000-8000-000000000006"

/* actor "scope": s4 is globex probing acme's ws-a1 (filed under globex), s6 still runs. */
static const char seed_scope_sql[] =
    "SELECT t_seed('s1', 'ws-a1', 'acme', 'scope', 'org', 'exited', '2024-01-01T00:00:01Z', "
    "'" S1 "');"
    "SELECT t_seed('s2', 'ws-a2', 'acme', 'scope', 'org', 'exited', '2024-01-01T00:00:02Z', "
    "'" S2 "');"
    "SELECT t_seed('s3', 'ws-b1', 'globex', 'scope', 'org', 'exited', '2024-01-01T00:00:03Z', "
    "'" S3 "');"
    "SELECT t_seed('s4', 'ws-a1', 'globex', 'scope', 'org', 'denied', '2024-01-01T00:00:04Z', "
    "'" S4 "');"
    "SELECT t_seed('s5', 'ws-a1', 'acme', 'scope', 'admin', 'exited', '2024-01-01T00:00:05Z', "
    "'" S5 "');"
    "SELECT t_seed('s6', 'ws-c2', 'globex', 'scope', 'org', 'running', '2024-01-01T00:00:06Z', "
    "'" S6 "');";

/* actor "filt": one row per status and kind at known microseconds; f7, f8 and f9 start at
 * the same time and are inserted in an order that is neither that of their exec_ids nor its
 * reverse (newest first they are f9, f7, f8). f10 is another actor's. */
static const char seed_filter_sql[] =
    "SELECT t_seed('f1', 'ws-a1', 'acme', 'filt', 'org', 'exited', '2024-03-10T10:00:00Z');"
    "SELECT t_seed('f2', 'ws-a2', 'acme', 'filt', 'org', 'signaled', "
    "'2024-03-10T10:00:01.5Z');"
    "SELECT t_seed('f3', 'ws-a1', 'acme', 'filt', 'admin', 'exited', "
    "'2024-03-10T12:00:02.25+02:00');"
    "SELECT t_seed('f4', 'ws-b1', 'globex', 'filt', 'org', 'denied', '2024-03-10T10:00:03Z');"
    "SELECT t_seed('f5', 'ws-a1', 'acme', 'filt', 'workspace', 'timeout', "
    "'2024-03-10T10:00:04.000001Z');"
    "SELECT t_seed('f6', 'ws-a1', 'acme', 'filt', 'org', 'running', '2024-03-10T10:00:05Z');"
    "SELECT t_seed('f7', 'ws-a2', 'acme', 'filt', 'org', 'exited', '2024-03-10T10:00:06Z', "
    "'50000000-0000-4000-8000-000000000007');"
    "SELECT t_seed('f8', 'ws-a2', 'acme', 'filt', 'org', 'exited', '2024-03-10T10:00:06Z', "
    "'30000000-0000-4000-8000-000000000008');"
    "SELECT t_seed('f9', 'ws-a2', 'acme', 'filt', 'org', 'exited', '2024-03-10T10:00:06Z', "
    "'90000000-0000-4000-8000-000000000009');"
    "SELECT t_seed('f10', 'ws-a1', 'acme', 'filt-other', 'org', 'exited', "
    "'2024-03-10T10:00:03.5Z');";

/* actor "page": 57 rows, three to a second (ties cross page boundaries); actor "dflt": 105. */
#define NPAGE 57
static const char seed_page_sql[] =
    "SELECT t_seed('page-' || g, 'ws-a1', 'acme', 'page', 'org', 'exited', "
    "'2024-05-01T00:00:00Z'::timestamptz + (g / 3) * interval '1 s') "
    "FROM generate_series(1, 57) g;"
    "SELECT t_seed('dflt-' || g, 'ws-a2', 'acme', 'dflt', 'org', 'exited', "
    "'2024-05-02T00:00:00Z'::timestamptz + g * interval '1 ms') "
    "FROM generate_series(1, 105) g;";

/* What the API must answer for a row, built by PostgreSQL from the row itself. */
#define UTC_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"
static const char oracle_sql[] =
    "SELECT json_build_object('exec_id', exec_id, 'chain_seq', chain_seq, 'chain_hash', "
    "encode(chain_hash, 'hex'), 'workspace_id', workspace_id, 'org_id', org_id, 'actor', "
    "actor, 'actor_kind', actor_kind, 'break_glass_reason', break_glass_reason, 'argv', argv, "
    "'cwd', cwd, 'env_keys', env_keys, 'stdin_bytes', stdin_bytes, 'client_addr', "
    "host(client_addr), 'request_id', request_id, 'timeout_s', timeout_s, 'status', status, "
    "'error_code', error_code, 'exit_code', exit_code, 'exit_signal', exit_signal, "
    "'started_at', to_char(started_at AT TIME ZONE 'UTC', " UTC_FMT "), "
    "'finished_at', to_char(finished_at AT TIME ZONE 'UTC', " UTC_FMT "), "
    "'duration_ms', duration_ms, 'stdout_bytes', stdout_bytes, 'stderr_bytes', stderr_bytes, "
    "'stdout_truncated', stdout_truncated, 'stderr_truncated', stderr_truncated, "
    "'broker_instance', broker_instance, 'detached', detached, 'name', name, 'batch_id', "
    "batch_id)::text "
    "FROM exec_audit WHERE exec_id = '%s'";

/* The keys of an item (docs/audit.md) and the JSON types each may have: s string, i integer,
 * a array of strings, b boolean, n null. */
static const struct {
	const char *key, *types;
} item_keys[] = {
    {"exec_id", "s"},
    {"chain_seq", "in"},
    {"chain_hash", "sn"},
    {"workspace_id", "s"},
    {"org_id", "s"},
    {"actor", "s"},
    {"actor_kind", "s"},
    {"break_glass_reason", "sn"},
    {"argv", "a"},
    {"cwd", "sn"},
    {"env_keys", "a"},
    {"stdin_bytes", "i"},
    {"client_addr", "sn"},
    {"request_id", "s"},
    {"timeout_s", "in"},
    {"status", "s"},
    {"error_code", "sn"},
    {"exit_code", "in"},
    {"exit_signal", "sn"},
    {"started_at", "s"},
    {"finished_at", "sn"},
    {"duration_ms", "in"},
    {"stdout_bytes", "i"},
    {"stderr_bytes", "i"},
    {"stdout_truncated", "b"},
    {"stderr_truncated", "b"},
    {"broker_instance", "sn"},
    {"detached", "b"},
    {"name", "sn"},
    {"batch_id", "sn"},
};
#define NKEYS (sizeof(item_keys) / sizeof(item_keys[0]))

static const char *tok_name(const char *tok)
{
	if (tok == NULL)
		return "no token";
	if (tok == W.tok_admin)
		return "admin";
	if (tok == W.tok_org)
		return "org acme";
	if (tok == W.tok_other)
		return "org globex";
	if (tok == W.tok_ws)
		return "workspace ws-a1";
	return "another token";
}

/* A body cut short for a failure message (Check refuses messages past 8 KiB). */
static const char *brief(const char *s)
{
	static char buf[4][700];
	static unsigned k;
	char *b = buf[k++ % 4];

	snprintf(b, sizeof(buf[0]), "%.600s%s", s, strlen(s) > 600 ? "..." : "");
	return b;
}

/* s matches pat, where '9' is any digit, 'x' any lower-case hex digit, anything else itself. */
static bool shaped(const char *s, const char *pat)
{
	if (s == NULL || strlen(s) != strlen(pat))
		return false;
	for (; *pat != '\0'; pat++, s++) {
		if (*pat == '9'   ? !(*s >= '0' && *s <= '9')
		    : *pat == 'x' ? strchr("0123456789abcdef", *s) == NULL
		                  : *s != *pat)
			return false;
	}
	return true;
}

#define UUID_SHAPE "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
#define TIME_SHAPE "9999-99-99T99:99:99.999999Z"
#define HASH_SHAPE                                                                                 \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"                                                         \
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static bool type_ok(json_t *v, const char *types)
{
	size_t i;
	json_t *e;

	if (json_is_null(v))
		return strchr(types, 'n') != NULL;
	if (json_is_string(v))
		return strchr(types, 's') != NULL;
	if (json_is_integer(v))
		return strchr(types, 'i') != NULL;
	if (json_is_boolean(v))
		return strchr(types, 'b') != NULL;
	if (!json_is_array(v) || strchr(types, 'a') == NULL)
		return false;
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e))
			return false;
	}
	return true;
}

/* An item has exactly the documented keys with their types, times in UTC with microseconds,
 * a link exactly when final, and is equal to what PostgreSQL says of the row. */
static void check_item(json_t *it)
{
	char *dump = json_dumps(it, JSON_COMPACT | JSON_SORT_KEYS), *sql = NULL, *v;
	json_t *want;
	json_error_t je;
	bool running;

	ck_assert_msg(json_is_object(it) && json_object_size(it) == NKEYS,
	              "an item has %zu keys, want the %zu of docs/audit.md: %s",
	              json_object_size(it), NKEYS, dump);
	for (size_t k = 0; k < NKEYS; k++)
		ck_assert_msg(type_ok(json_object_get(it, item_keys[k].key), item_keys[k].types),
		              "item key %s missing or of the wrong type: %s", item_keys[k].key,
		              dump);
	ck_assert_msg(shaped(sv_str(it, "exec_id"), UUID_SHAPE), "exec_id: %s", dump);
	ck_assert_msg(shaped(sv_str(it, "started_at"), TIME_SHAPE), "started_at: %s", dump);
	running = strcmp(sv_str(it, "status"), "running") == 0;
	if (running) {
		ck_assert_msg(json_is_null(json_object_get(it, "chain_seq")) &&
		                  json_is_null(json_object_get(it, "chain_hash")) &&
		                  json_is_null(json_object_get(it, "finished_at")),
		              "a running row with a link or an end: %s", dump);
	} else if (json_is_null(json_object_get(it, "chain_seq"))) {
		/* final, waiting a moment to be linked (docs/audit.md) */
		ck_assert_msg(json_is_null(json_object_get(it, "chain_hash")) &&
		                  shaped(sv_str(it, "finished_at"), TIME_SHAPE),
		              "a final row waiting for its link with a hash or no end: %s", dump);
	} else {
		ck_assert_msg(json_integer_value(json_object_get(it, "chain_seq")) > 0 &&
		                  shaped(sv_str(it, "chain_hash"), HASH_SHAPE) &&
		                  shaped(sv_str(it, "finished_at"), TIME_SHAPE),
		              "a final row without its link or end: %s", dump);
	}
	ck_assert_int_ge(asprintf(&sql, oracle_sql, sv_str(it, "exec_id")), 0);
	v = sv_query(W.db, sql);
	want = json_loads(v, 0, &je);
	ck_assert_msg(want != NULL, "no row %s in the database: %s", sv_str(it, "exec_id"), dump);
	if (!running && json_is_null(json_object_get(it, "chain_seq"))) {
		/* linked since the item was read: the rest must not have changed */
		json_object_set(want, "chain_seq", json_null());
		json_object_set(want, "chain_hash", json_null());
	}
	if (!json_equal(want, it)) {
		char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
		ck_abort_msg("item differs from its row\n item: %s\n  row: %s", dump, w);
	}
	json_decref(want);
	free(v);
	free(sql);
	free(dump);
}

static void get(struct kit_resp *r, const char *token, const char *path)
{
	struct kit_req q = {.method = "GET", .path = path, .token = token};

	sv_http(B.port, &q, r);
}

/* A 200 answer of the audit API: JSON, no X-Exec-Id, and no audit row for the read. */
static json_t *ok_json(const struct kit_resp *r, const char *token, const char *path)
{
	char hv[200];

	ck_assert_msg(r->status == 200, "GET %s as %s: %d %s", path, tok_name(token), r->status,
	              brief(r->body));
	ck_assert_msg(kit_header(r, "Content-Type", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "application/json", 16) == 0,
	              "GET %s: Content-Type: %s", path, r->head);
	ck_assert_msg(kit_header(r, "X-Exec-Id", hv, sizeof(hv)) == NULL, "GET %s: X-Exec-Id %s",
	              path, hv);
	ck_assert_msg(sv_rows(W.db, r->rid) == 0, "reading the log wrote an audit row (GET %s)",
	              path);
	return sv_json(r);
}

/* GET /v1/audit?query as token: 200 and the page, every item checked. */
static json_t *list(const char *token, const char *query)
{
	char path[2048];
	struct kit_resp r;
	json_t *o, *items, *nc, *it;
	size_t i;

	snprintf(path, sizeof(path), "/v1/audit%s%s", query[0] != '\0' ? "?" : "", query);
	get(&r, token, path);
	o = ok_json(&r, token, path);
	items = json_object_get(o, "items");
	nc = json_object_get(o, "next_cursor");
	ck_assert_msg(json_object_size(o) == 2 && json_is_array(items) &&
	                  (json_is_null(nc) || (json_is_string(nc) && json_string_length(nc) > 0)),
	              "GET %s: not a page: %s", path, brief(r.body));
	json_array_foreach(items, i, it)
	{
		check_item(it);
	}
	kit_resp_free(&r);
	return o;
}

/* GET /v1/audit/{id} as token: 200 and the item, checked. */
static json_t *one(const char *token, const char *id)
{
	char path[256];
	struct kit_resp r;
	json_t *o;

	snprintf(path, sizeof(path), "/v1/audit/%s", id);
	get(&r, token, path);
	o = ok_json(&r, token, path);
	check_item(o);
	kit_resp_free(&r);
	return o;
}

/* one(), once the row is linked into the chain: the broker that finished it links it
 * moments later (api/seal.c). */
static json_t *one_linked(const char *token, const char *id)
{
	json_t *o = one(token, id);

	for (int i = 0; i < 100 && json_is_null(json_object_get(o, "chain_seq")); i++) {
		json_decref(o);
		usleep(50 * 1000);
		o = one(token, id);
	}
	ck_assert_msg(json_integer_value(json_object_get(o, "chain_seq")) > 0,
	              "row %s not linked into the chain after 5 s", id);
	return o;
}

static const char *next_cursor(json_t *page)
{
	return json_string_value(json_object_get(page, "next_cursor"));
}

/* The request ids of a page's items, comma-separated, malloc'd. */
static char *rids(json_t *page)
{
	json_t *it;
	size_t i, len = 0;
	char *s = NULL;
	FILE *f = open_memstream(&s, &len);

	ck_assert_ptr_nonnull(f);
	json_array_foreach(json_object_get(page, "items"), i, it)
	{
		fprintf(f, "%s%s", i > 0 ? "," : "",
		        sv_str(it, "request_id") ? sv_str(it, "request_id") : "?");
	}
	fclose(f);
	return s;
}

/* The page of query as token holds exactly the rows want (request ids, newest first); more:
 * 1 a next_cursor, 0 none, -1 either. */
static void expect_rows(const char *token, const char *query, const char *want, int more)
{
	json_t *p = list(token, query);
	char *got = rids(p);

	ck_assert_msg(strcmp(got, want) == 0, "GET /v1/audit?%s as %s: [%s], want [%s]", query,
	              tok_name(token), got, want);
	if (more >= 0)
		ck_assert_msg((next_cursor(p) != NULL) == (more == 1),
		              "GET /v1/audit?%s as %s: next_cursor %s, want %s", query,
		              tok_name(token), next_cursor(p) ? next_cursor(p) : "null",
		              more ? "one" : "null");
	free(got);
	json_decref(p);
}

/* An error of the audit API: status, code, a message, JSON, field (NULL: none), no row. */
static void expect_error(const struct kit_resp *r, int status, const char *code, const char *field)
{
	json_t *o;
	const char *got;

	ck_assert_msg(r->status == status, "request %s: status %d, want %d %s: %s", r->rid,
	              r->status, status, code, brief(r->body));
	sv_error(W.db, r, status, code, NULL, NULL);
	o = sv_json(r);
	got = sv_str(o, "error.field");
	if (field != NULL)
		ck_assert_msg(got != NULL && strcmp(got, field) == 0, "error.field %s, want %s: %s",
		              got ? got : "(none)", field, brief(r->body));
	json_decref(o);
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static void url_encode(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in != '\0' && o + 4 < len; in++) {
		unsigned char c = (unsigned char)*in;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c) != NULL)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
	}
	ck_assert_msg(*in == '\0', "url_encode: no room");
	out[o] = '\0';
}

/* ---- authentication and scope ---- */

static const struct {
	const char *auth; /* the raw Authorization header; NULL: none */
	const char *tok;  /* or Bearer <tok> */
} unauth[] = {
    {NULL, NULL},
    {"Basic ZWJ0ZXN0OnNlY3JldA==", NULL},
    {"Bearer not-a-token", NULL},
    {"Bearer ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL}, /* unknown */
    {NULL, W.tok_expired},
    {NULL, W.tok_revoked},
};

START_TEST(unauthenticated_is_401)
{
	static const char *const paths[] = {"/v1/audit", "/v1/audit?actor=scope", "/v1/audit/" S1,
	                                    "/v1/audit/" NO_SUCH_ID};
	struct kit_req q = {.method = "GET", .auth = unauth[_i].auth, .token = unauth[_i].tok};
	struct kit_resp r;
	char hv[200];

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		q.path = paths[i];
		sv_http(B.port, &q, &r);
		expect_error(&r, 401, "unauthorized", NULL);
		ck_assert_msg(kit_header(&r, "WWW-Authenticate", hv, sizeof(hv)) != NULL &&
		                  strncmp(hv, "Bearer", 6) == 0,
		              "%s: WWW-Authenticate: %s", paths[i], r.head);
		kit_resp_free(&r);
	}
}
END_TEST

/* Lists of the "scope" rows per token and filters: out-of-scope rows are absent whatever the
 * filters say. */
static const struct {
	const char *tok, *query, *want;
} scope_lists[] = {
    {W.tok_admin, "", "s6,s5,s4,s3,s2,s1"},
    {W.tok_org, "", "s5,s2,s1"},
    {W.tok_other, "", "s6,s4,s3"},
    {W.tok_ws, "", "s5,s1"},
    {W.tok_admin, "&org_id=globex", "s6,s4,s3"},
    {W.tok_admin, "&workspace_id=ws-a1", "s5,s4,s1"},
    {W.tok_org, "&org_id=globex", ""},
    {W.tok_org, "&workspace_id=ws-b1", ""},
    {W.tok_org, "&workspace_id=ws-c2", ""},
    {W.tok_org, "&workspace_id=ws-a1", "s5,s1"},
    {W.tok_org, "&org_id=acme", "s5,s2,s1"},
    {W.tok_org, "&status=denied", ""},
    {W.tok_org, "&status=running", ""},
    {W.tok_other, "&org_id=acme", ""},
    {W.tok_other, "&workspace_id=ws-a1", "s4"},
    {W.tok_other, "&workspace_id=ws-a2", ""},
    {W.tok_other, "&status=denied", "s4"},
    {W.tok_ws, "&workspace_id=ws-a2", ""},
    {W.tok_ws, "&org_id=globex", ""},
    {W.tok_ws, "&workspace_id=ws-a1&org_id=globex", ""},
    {W.tok_ws, "&status=denied", ""},
    {W.tok_ws, "&break_glass=true", "s5"},
};

START_TEST(scope_decides_what_a_list_holds)
{
	char q[256];

	snprintf(q, sizeof(q), "actor=scope%s", scope_lists[_i].query);
	expect_rows(scope_lists[_i].tok, q, scope_lists[_i].want, 0);
}
END_TEST

static const struct {
	const char *tok, *sees;
} scope_one[] = {
    {W.tok_admin, "s1,s2,s3,s4,s5,s6"},
    {W.tok_org, "s1,s2,s5"},
    {W.tok_other, "s3,s4,s6"},
    {W.tok_ws, "s1,s5"},
};

/* One row at a time: 200 in scope, else exactly the 404 of an exec_id that does not exist. */
START_TEST(scope_decides_which_rows_exist)
{
	static const char *const ids[] = {S1, S2, S3, S4, S5, S6};
	const char *tok = scope_one[_i].tok;
	struct kit_resp missing, r;
	char rid[8], path[128], sees[64];
	json_t *it;

	get(&missing, tok, "/v1/audit/" NO_SUCH_ID);
	expect_error(&missing, 404, "not_found", NULL);
	snprintf(sees, sizeof(sees), ",%s,", scope_one[_i].sees);
	for (int i = 0; i < 6; i++) {
		char key[16];

		snprintf(rid, sizeof(rid), "s%d", i + 1);
		snprintf(key, sizeof(key), ",%s,", rid);
		if (strstr(sees, key) != NULL) {
			it = one(tok, ids[i]);
			ck_assert_str_eq(sv_str(it, "exec_id"), ids[i]);
			ck_assert_str_eq(sv_str(it, "request_id"), rid);
			json_decref(it);
			continue;
		}
		snprintf(path, sizeof(path), "/v1/audit/%s", ids[i]);
		get(&r, tok, path);
		ck_assert_msg(r.status == 404, "%s as %s: %d, want 404: %s", rid, tok_name(tok),
		              r.status, brief(r.body));
		expect_error(&r, 404, "not_found", NULL);
		ck_assert_msg(strcmp(r.body, missing.body) == 0,
		              "%s as %s: a row out of scope answers\n%s\nnot as a missing one:\n%s",
		              rid, tok_name(tok), brief(r.body), brief(missing.body));
		kit_resp_free(&r);
	}
	kit_resp_free(&missing);
}
END_TEST

/* A cursor is a position, not a permission: an admin's cursor used by an org token pages
 * on through that org's rows only. */
START_TEST(cursor_carries_no_scope)
{
	json_t *p = list(W.tok_admin, "actor=scope&limit=2");
	char q[512], enc[256], *got;

	got = rids(p);
	ck_assert_str_eq(got, "s6,s5");
	free(got);
	ck_assert_ptr_nonnull(next_cursor(p));
	url_encode(next_cursor(p), enc, sizeof(enc));
	snprintf(q, sizeof(q), "actor=scope&limit=2&cursor=%s", enc);
	expect_rows(W.tok_org, q, "s2,s1", 0);
	expect_rows(W.tok_ws, q, "s1", 0);
	expect_rows(W.tok_other, q, "s4,s3", 0);
	json_decref(p);
}
END_TEST

/* ---- filters ---- */

#define ALL_F "f9,f7,f8,f6,f5,f4,f3,f2,f1"

static const struct {
	const char *query, *want;
	int more;
} filters[] = {
    {"actor=filt", ALL_F, 0},
    {"actor=filt-other", "f10", 0},
    {"actor=filt%2Dother", "f10", 0},
    {"actor=fil", "", 0},
    {"actor=filt%25", "", 0},
    {"actor=FILT", "", 0},
    {"actor=filt&workspace_id=ws-a1", "f6,f5,f3,f1", 0},
    {"actor=filt&workspace_id=ws-a_", "", 0},
    {"actor=filt&workspace_id=ws-a2", "f9,f7,f8,f2", 0},
    {"actor=filt&org_id=globex", "f4", 0},
    {"actor=filt&org_id=acme", "f9,f7,f8,f6,f5,f3,f2,f1", 0},
    {"actor=filt&status=signaled", "f2", 0},
    {"actor=filt&status=running", "f6", 0},
    {"actor=filt&status=denied", "f4", 0},
    {"actor=filt&status=timeout", "f5", 0},
    {"actor=filt&status=exited", "f9,f7,f8,f3,f1", 0},
    {"actor=filt&status=abandoned", "", 0},
    {"actor=filt&break_glass=true", "f3", 0},
    {"actor=filt&break_glass=false", "f9,f7,f8,f6,f5,f4,f2,f1", 0},
    {"actor=filt&since=2024-03-10T10:00:02.25Z", "f9,f7,f8,f6,f5,f4,f3", 0},
    {"actor=filt&since=2024-03-10T10:00:02.250001Z", "f9,f7,f8,f6,f5,f4", 0},
    {"actor=filt&until=2024-03-10T10:00:02.25Z", "f2,f1", 0},
    {"actor=filt&until=2024-03-10T10:00:02.250001Z", "f3,f2,f1", 0},
    {"actor=filt&since=2024-03-10T12:00:02.25%2B02:00", "f9,f7,f8,f6,f5,f4,f3", 0},
    {"actor=filt&since=2024-03-10T08:30:04-01:30", "f9,f7,f8,f6,f5", 0},
    {"actor=filt&until=2024-03-10T08:30:04.000001-01:30", "f4,f3,f2,f1", 0},
    {"actor=filt&since=2024-03-10T10:00:04.000001000Z", "f9,f7,f8,f6,f5", 0},
    {"actor=filt&since=2024-03-10T10:00:04.0000011Z", "f9,f7,f8,f6,f5", 0},
    {"actor=filt&since=2024-03-10T10:00:04.000002Z", "f9,f7,f8,f6", 0},
    {"actor=filt&since=2024-03-10t10:00:03z", "f9,f7,f8,f6,f5,f4", 0},
    {"actor=filt&since=2024-03-10T10:00:05%2B00:00", "f9,f7,f8,f6", 0},
    {"actor=filt&since=2024-03-10T10:00:06Z", "f9,f7,f8", 0},
    {"actor=filt&until=2024-03-10T10:00:06Z", "f6,f5,f4,f3,f2,f1", 0},
    {"actor=filt&since=2024-03-10T10:00:01Z&until=2024-03-10T10:00:04Z", "f4,f3,f2", 0},
    {"actor=filt&since=2024-03-10T10:00:04Z&until=2024-03-10T10:00:01Z", "", 0},
    {"actor=filt&since=2024-02-29T00:00:00Z", ALL_F, 0},
    {"actor=filt&until=2024-02-29T00:00:00Z", "", 0},
    {"actor=filt&limit=2", "f9,f7", 1},
    {"actor=filt&limit=8", "f9,f7,f8,f6,f5,f4,f3,f2", 1},
    {"actor=filt&limit=9", ALL_F, 0},
    {"actor=filt&limit=1000", ALL_F, 0},
    {"actor=filt&workspace_id=ws-a1&status=exited", "f3,f1", 0},
    {"actor=filt&workspace_id=ws-a1&status=exited&break_glass=false", "f1", 0},
    {"status=timeout&workspace_id=ws-a1&org_id=acme&actor=filt&break_glass=false&"
     "since=2024-03-10T00:00:00Z&until=2024-03-11T00:00:00Z&limit=5",
     "f5", 0},
};

START_TEST(filters_select_rows_newest_first)
{
	expect_rows(W.tok_admin, filters[_i].query, filters[_i].want, filters[_i].more);
}
END_TEST

START_TEST(limit_defaults_to_100_and_goes_to_1000)
{
	json_t *p = list(W.tok_admin, "actor=dflt"), *p2;
	char q[512], enc[256], *v;

	ck_assert_int_eq(json_array_size(json_object_get(p, "items")), 100);
	ck_assert_ptr_nonnull(next_cursor(p));
	url_encode(next_cursor(p), enc, sizeof(enc));
	snprintf(q, sizeof(q), "actor=dflt&cursor=%s", enc);
	p2 = list(W.tok_admin, q);
	v = rids(p2);
	ck_assert_str_eq(v, "dflt-5,dflt-4,dflt-3,dflt-2,dflt-1");
	ck_assert_ptr_null(next_cursor(p2));
	free(v);
	json_decref(p2);
	json_decref(p);
	p = list(W.tok_admin, "actor=dflt&limit=1000");
	ck_assert_int_eq(json_array_size(json_object_get(p, "items")), 105);
	ck_assert_ptr_null(next_cursor(p));
	json_decref(p);
}
END_TEST

/* ---- refusals ---- */

static const struct {
	const char *path, *field;
} bad[] = {
    {"/v1/audit?since=yesterday", "since"},
    {"/v1/audit?since=2026-13-01T00:00:00Z", "since"},
    {"/v1/audit?since=2026-02-30T00:00:00Z", "since"},
    {"/v1/audit?since=2026-02-29T00:00:00Z", "since"},
    {"/v1/audit?since=2026-01-01T24:00:00Z", "since"},
    {"/v1/audit?since=2026-01-01T23:60:00Z", "since"},
    {"/v1/audit?since=2026-01-01T00:00:00", "since"},
    {"/v1/audit?since=2026-01-01", "since"},
    {"/v1/audit?since=2026-01-01T00:00:00.Z", "since"},
    {"/v1/audit?since=2026-01-01T00:00:00.1234567890Z", "since"},
    {"/v1/audit?since=2026-01-01T00:00:00%2B0200", "since"},
    {"/v1/audit?since=", "since"},
    {"/v1/audit?until=2026-01-01T00:00:00Zjunk", "until"},
    {"/v1/audit?until=%202026-01-01T00:00:00Z", "until"},
    {"/v1/audit?actor=filt&until=tomorrow", "until"},
    {"/v1/audit?limit=0", "limit"},
    {"/v1/audit?limit=5000", "limit"},
    {"/v1/audit?limit=1001", "limit"},
    {"/v1/audit?limit=-1", "limit"},
    {"/v1/audit?limit=abc", "limit"},
    {"/v1/audit?limit=10abc", "limit"},
    {"/v1/audit?limit=", "limit"},
    {"/v1/audit?limit=99999999999999999999", "limit"},
    {"/v1/audit?status=bogus", "status"},
    {"/v1/audit?status=EXITED", "status"},
    {"/v1/audit?status=", "status"},
    {"/v1/audit?break_glass=maybe", "break_glass"},
    {"/v1/audit?break_glass=", "break_glass"},
    {"/v1/audit?foo=bar", "foo"},
    {"/v1/audit?actor=filt&workspace=ws-a1", "workspace"},
    {"/v1/audit?Actor=filt", "Actor"},
    {"/v1/audit?actor=filt&actor=filt", "actor"},
    {"/v1/audit?limit=5&actor=filt&limit=5", "limit"},
    {"/v1/audit?since=2024-01-01T00:00:00Z&since=2024-01-01T00:00:00Z", "since"},
    {"/v1/audit?workspace_id=ws-a1&workspace_id=ws-a2", "workspace_id"},
    {"/v1/audit?cursor=bm90IGEgY3Vyc29y", "cursor"},
    {"/v1/audit?cursor=%21%21%21", "cursor"},
    {"/v1/audit?cursor=", "cursor"},
    {"/v1/audit/not-a-uuid", "exec_id"},
    {"/v1/audit/a1000000-0000-4000-8000-00000000000", "exec_id"},
    {"/v1/audit/a1000000-0000-4000-8000-0000000000011", "exec_id"},
    {"/v1/audit/a1000000000040008000000000000001", "exec_id"},
    {"/v1/audit/%7Ba1000000-0000-4000-8000-000000000001%7D", "exec_id"},
    {"/v1/audit/g1000000-0000-4000-8000-000000000001", "exec_id"},
    {"/v1/audit/a1000000-0000-4000-8000-00000000000%27", "exec_id"},
    {"/v1/audit/" S1 S1 S1, "exec_id"}, /* 108 characters */
    /* What PostgreSQL would refuse is the client's mistake, said before any query. */
    {"/v1/audit?workspace_id=%ff", "workspace_id"},
    {"/v1/audit?org_id=%ff", "org_id"},
    {"/v1/audit?actor=caf%c3", "actor"},
};

START_TEST(bad_filter_is_400_naming_the_parameter)
{
	struct kit_resp r;

	get(&r, W.tok_admin, bad[_i].path);
	ck_assert_msg(r.status == 400, "GET %s: %d %s", bad[_i].path, r.status, brief(r.body));
	expect_error(&r, 400, "invalid_request", bad[_i].field);
	kit_resp_free(&r);
}
END_TEST

/* The first page of actor=filt&limit=2 as admin, and its cursor (malloc'd). */
static char *filt_cursor(void)
{
	json_t *p = list(W.tok_admin, "actor=filt&limit=2");
	char *c;

	ck_assert_msg(next_cursor(p) != NULL, "no next_cursor for actor=filt&limit=2");
	c = strdup(next_cursor(p));
	json_decref(p);
	return c;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Every character of a real cursor changed, one at a time, in its highest and its lowest
 * bit as base64url: each is a 400 naming cursor. The cursor itself still works. */
START_TEST(altered_cursor_is_400)
{
	char *c = filt_cursor(), *alt, q[300], enc[256], path[300];
	size_t n = strlen(c);
	struct kit_resp r;

	url_encode(c, enc, sizeof(enc));
	snprintf(q, sizeof(q), "actor=filt&limit=2&cursor=%s", enc);
	expect_rows(W.tok_admin, q, "f8,f6", 1);
	alt = strdup(c);
	for (size_t i = 0; i < n; i++) {
		const char *pos = strchr(b64url, c[i]);
		size_t v = pos != NULL ? (size_t)(pos - b64url) : 0;

		for (int flip = 0; flip < 2; flip++) {
			alt[i] =
			    pos != NULL ? b64url[v ^ (flip ? 0x01 : 0x20)] : (flip ? 'A' : 'B');
			url_encode(alt, enc, sizeof(enc));
			snprintf(path, sizeof(path), "/v1/audit?actor=filt&limit=2&cursor=%s", enc);
			get(&r, W.tok_admin, path);
			ck_assert_msg(r.status == 400,
			              "cursor %s with character %zu of %zu changed (%c to %c) was "
			              "accepted: %d %s",
			              c, i, n, c[i], alt[i], r.status, brief(r.body));
			expect_error(&r, 400, "invalid_request", "cursor");
			kit_resp_free(&r);
		}
		alt[i] = c[i];
	}
	/* one character more, one less */
	for (int cut = 0; cut < 2; cut++) {
		if (cut)
			alt[n - 1] = '\0';
		url_encode(alt, enc, sizeof(enc));
		snprintf(path, sizeof(path), "/v1/audit?actor=filt&limit=2&cursor=%s%s", enc,
		         cut ? "" : "A");
		get(&r, W.tok_admin, path);
		expect_error(&r, 400, "invalid_request", "cursor");
		kit_resp_free(&r);
	}
	free(alt);
	free(c);
}
END_TEST

/* A cursor is only as good as its digest, which anyone can compute: one that names a
 * position no timestamp can hold is a 400, not the database's error. */
START_TEST(cursor_out_of_range_is_400)
{
	static const long long at[] = {LLONG_MIN, LLONG_MAX};
	struct audit_filter f;
	char c[AUDIT_CURSOR_MAX], enc[256], path[300];
	struct kit_resp r;

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		audit_filter_init(&f);
		f.actor = "filt";
		audit_cursor_encode(&f, at[i], "a1000000-0000-4000-8000-000000000001", c);
		url_encode(c, enc, sizeof(enc));
		snprintf(path, sizeof(path), "/v1/audit?actor=filt&cursor=%s", enc);
		get(&r, W.tok_admin, path);
		ck_assert_msg(r.status == 400, "cursor at %lld: %d %s", at[i], r.status,
		              brief(r.body));
		expect_error(&r, 400, "invalid_request", "cursor");
		kit_resp_free(&r);
	}
}
END_TEST

/* A cursor made for actor=filt is refused with any other filters, and taken with the same
 * filters in another order. */
START_TEST(cursor_of_other_filters_is_400)
{
	static const char *const others[] = {
	    "actor=filt&limit=2&status=exited",
	    "actor=filt-other&limit=2",
	    "actor=filt&limit=2&workspace_id=ws-a2",
	    "actor=filt&limit=2&org_id=acme",
	    "actor=filt&limit=2&break_glass=false",
	    "actor=filt&limit=2&since=2024-01-01T00:00:00Z",
	    "actor=filt&limit=2&until=2030-01-01T00:00:00Z",
	    "limit=2",
	};
	char *c = filt_cursor(), enc[256], path[400], q[400];
	struct kit_resp r;

	url_encode(c, enc, sizeof(enc));
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		snprintf(path, sizeof(path), "/v1/audit?%s&cursor=%s", others[i], enc);
		get(&r, W.tok_admin, path);
		ck_assert_msg(r.status == 400, "a cursor of actor=filt taken with %s: %d %s",
		              others[i], r.status, brief(r.body));
		expect_error(&r, 400, "invalid_request", "cursor");
		kit_resp_free(&r);
	}
	snprintf(q, sizeof(q), "cursor=%s&limit=2&actor=filt", enc);
	expect_rows(W.tok_admin, q, "f8,f6", 1);
	free(c);
}
END_TEST

static const struct {
	const char *method, *path;
} methods[] = {
    {"POST", "/v1/audit"},     {"PUT", "/v1/audit"},        {"DELETE", "/v1/audit"},
    {"POST", "/v1/audit/" S1}, {"DELETE", "/v1/audit/" S1}, {"PATCH", "/v1/audit/" S1},
};

START_TEST(only_get_is_allowed)
{
	struct kit_req q = {
	    .method = methods[_i].method, .path = methods[_i].path, .token = W.tok_admin};
	struct kit_resp r;
	char hv[200], *v;

	sv_http(B.port, &q, &r);
	expect_error(&r, 405, "method_not_allowed", NULL);
	ck_assert_msg(kit_header(&r, "Allow", hv, sizeof(hv)) != NULL &&
	                  strstr(hv, "GET") != NULL && strstr(hv, "POST") == NULL &&
	                  strstr(hv, "DELETE") == NULL,
	              "%s %s: Allow: %s", q.method, q.path, r.head);
	kit_resp_free(&r);
	v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE exec_id = '" S1 "'");
	ck_assert_str_eq(v, "1");
	free(v);
}
END_TEST

START_TEST(unknown_exec_id_is_404_and_any_case_is_found)
{
	struct kit_resp r;
	json_t *it;

	get(&r, W.tok_admin, "/v1/audit/" NO_SUCH_ID);
	expect_error(&r, 404, "not_found", NULL);
	kit_resp_free(&r);
	it = one(W.tok_admin, "A1000000-0000-4000-8000-000000000005");
	ck_assert_str_eq(sv_str(it, "request_id"), "s5");
	ck_assert_str_eq(sv_str(it, "exec_id"), S5);
	json_decref(it);
}
END_TEST

/* ---- items ---- */

/* Seeded rows: times converted to UTC (the database's zone is not), every null a JSON null,
 * a running row without its link. */
START_TEST(item_of_a_seeded_row)
{
	json_t *p = list(W.tok_admin, "actor=filt&since=2024-03-10T10:00:02.25Z&"
	                              "until=2024-03-10T10:00:02.250001Z");
	json_t *it = json_array_get(json_object_get(p, "items"), 0), *argv;

	ck_assert_ptr_nonnull(it);
	ck_assert_str_eq(sv_str(it, "request_id"), "f3");
	ck_assert_str_eq(sv_str(it, "started_at"), "2024-03-10T10:00:02.250000Z");
	ck_assert_str_eq(sv_str(it, "finished_at"), "2024-03-10T10:00:03.250000Z");
	ck_assert_str_eq(sv_str(it, "actor_kind"), "admin");
	ck_assert_str_eq(sv_str(it, "break_glass_reason"), "seeded: f3");
	ck_assert_int_eq(sv_int(it, "duration_ms"), 1000);
	ck_assert_int_eq(sv_int(it, "exit_code"), 0);
	ck_assert_str_eq(sv_str(it, "broker_instance"), SEED_INSTANCE);
	argv = json_pack("[s,s]", "true", "f3");
	ck_assert(json_equal(json_object_get(it, "argv"), argv));
	json_decref(argv);
	ck_assert(json_is_array(json_object_get(it, "env_keys")) &&
	          json_array_size(json_object_get(it, "env_keys")) == 0);
	ck_assert(json_is_null(json_object_get(it, "client_addr")));
	ck_assert(json_is_null(json_object_get(it, "cwd")));
	ck_assert(json_is_null(json_object_get(it, "timeout_s")));
	ck_assert(json_is_null(json_object_get(it, "exit_signal")));
	ck_assert(json_is_null(json_object_get(it, "error_code")));
	json_decref(p);

	p = list(W.tok_admin, "actor=filt&status=running");
	it = json_array_get(json_object_get(p, "items"), 0);
	ck_assert_ptr_nonnull(it);
	ck_assert_str_eq(sv_str(it, "started_at"), "2024-03-10T10:00:05.000000Z");
	ck_assert(json_is_null(json_object_get(it, "chain_seq")));
	ck_assert(json_is_null(json_object_get(it, "chain_hash")));
	ck_assert(json_is_null(json_object_get(it, "finished_at")));
	ck_assert(json_is_null(json_object_get(it, "duration_ms")));
	ck_assert(json_is_null(json_object_get(it, "exit_code")));
	json_decref(p);

	p = list(W.tok_admin, "actor=filt&status=signaled");
	it = json_array_get(json_object_get(p, "items"), 0);
	ck_assert_ptr_nonnull(it);
	ck_assert_str_eq(sv_str(it, "started_at"), "2024-03-10T10:00:01.500000Z");
	ck_assert_str_eq(sv_str(it, "exit_signal"), "KILL");
	ck_assert(json_is_null(json_object_get(it, "exit_code")));
	json_decref(p);
}
END_TEST

/* A real exec with awkward arguments, env, cwd and stdin: the item has argv exactly as sent,
 * the env names but no values, and no output or stdin. */
START_TEST(item_of_a_real_exec)
{
	const char *argv[] = {"sh",
	                      "-c",
	                      "printf %s \"$((6 * 7))out\"; printf e%s rr >&2; cat >/dev/null",
	                      "",
	                      " lead",
	                      "trail ",
	                      "a b",
	                      "it's",
	                      "\"q\"",
	                      "back\\sl",
	                      "$HOME",
	                      "$(touch /tmp/x)",
	                      "a\nb",
	                      "tab\there",
	                      "\303\251t\303\251 \342\230\203",
	                      "NULL",
	                      "null",
	                      "{x,y}",
	                      "\\N",
	                      "--",
	                      NULL};
	char *body = sv_body(argv, json_pack("{s:i,s:s,s:{s:s,s:s},s:s}", "timeout_s", 17, "stdin",
	                                     "stdin-secret", "env", "EB_ONE", "env-secret-1",
	                                     "EB_TWO", "env-secret-2", "cwd", "/tmp"));
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_resp r;
	struct kit_frames f;
	char hv[64], actor[32], *dump;
	json_t *it, *sent, *keys;

	sv_http(B.port, &q, &r);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_ptr_nonnull(kit_header(&r, "X-Exec-Id", hv, sizeof(hv)));
	it = one_linked(W.tok_org, hv);
	dump = json_dumps(it, JSON_COMPACT);
	sent = json_array();
	for (int i = 0; argv[i] != NULL; i++)
		json_array_append_new(sent, json_string(argv[i]));
	ck_assert_msg(json_equal(json_object_get(it, "argv"), sent), "argv: %s", dump);
	keys = json_object_get(it, "env_keys");
	ck_assert_msg(json_array_size(keys) == 2 &&
	                  ((strcmp(json_string_value(json_array_get(keys, 0)), "EB_ONE") == 0 &&
	                    strcmp(json_string_value(json_array_get(keys, 1)), "EB_TWO") == 0) ||
	                   (strcmp(json_string_value(json_array_get(keys, 0)), "EB_TWO") == 0 &&
	                    strcmp(json_string_value(json_array_get(keys, 1)), "EB_ONE") == 0)),
	              "env_keys: %s", dump);
	ck_assert_str_eq(sv_str(it, "exec_id"), hv);
	ck_assert_str_eq(sv_str(it, "request_id"), r.rid);
	ck_assert_str_eq(sv_str(it, "workspace_id"), "ws-a1");
	ck_assert_str_eq(sv_str(it, "org_id"), "acme");
	snprintf(actor, sizeof(actor), "token:%.12s", W.tok_org);
	ck_assert_str_eq(sv_str(it, "actor"), actor);
	ck_assert_str_eq(sv_str(it, "actor_kind"), "org");
	ck_assert_str_eq(sv_str(it, "cwd"), "/tmp");
	ck_assert_str_eq(sv_str(it, "client_addr"), "127.0.0.1");
	ck_assert_str_eq(sv_str(it, "status"), "exited");
	ck_assert_str_eq(sv_str(it, "broker_instance"), MAIN_INSTANCE);
	ck_assert_int_eq(sv_int(it, "stdin_bytes"), 12);
	ck_assert_int_eq(sv_int(it, "timeout_s"), 17);
	ck_assert_int_eq(sv_int(it, "exit_code"), 0);
	ck_assert_int_eq(sv_int(it, "stdout_bytes"), 5);
	ck_assert_int_eq(sv_int(it, "stderr_bytes"), 3);
	ck_assert_int_ge(sv_int(it, "duration_ms"), 0);
	ck_assert(json_is_false(json_object_get(it, "stdout_truncated")));
	ck_assert(json_is_null(json_object_get(it, "break_glass_reason")));
	ck_assert_msg(strcmp(sv_str(it, "finished_at"), sv_str(it, "started_at")) >= 0, "%s", dump);
	ck_assert_msg(strstr(dump, "secret") == NULL && strstr(dump, "42out") == NULL,
	              "output, stdin or env values in an item: %s", dump);
	free(dump);
	json_decref(sent);
	json_decref(it);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(body);
}
END_TEST

/* ---- pages ---- */

static const int page_limits[] = {1, 10, 19, 56, 57, 100};

/* Follows next_cursor from the first page of query with limit rows a page: the request ids
 * of every page, comma-joined, malloc'd; *npages receives the number of pages. Only the last
 * page has no next_cursor, and every other page is full. */
static char *walk(const char *query, int limit, int *npages)
{
	char q[512], enc[300], *all = NULL, *ids;
	size_t len = 0, size;
	FILE *f = open_memstream(&all, &len);
	json_t *p = NULL, *np;
	const char *cur = NULL;
	int n = 0;

	ck_assert_ptr_nonnull(f);
	for (;;) {
		if (cur != NULL) {
			url_encode(cur, enc, sizeof(enc));
			snprintf(q, sizeof(q), "%s&limit=%d&cursor=%s", query, limit, enc);
		} else {
			snprintf(q, sizeof(q), "%s&limit=%d", query, limit);
		}
		np = list(W.tok_admin, q);
		json_decref(p);
		p = np;
		ck_assert_msg(++n <= 200, "more than 200 pages");
		ids = rids(p);
		fprintf(f, "%s%s", n > 1 && ids[0] != '\0' ? "," : "", ids);
		free(ids);
		size = json_array_size(json_object_get(p, "items"));
		cur = next_cursor(p);
		if (cur == NULL)
			break;
		ck_assert_msg(size == (size_t)limit, "page %d of %s has %zu rows and a next_cursor",
		              n, query, size);
	}
	json_decref(p);
	fclose(f);
	*npages = n;
	return all;
}

static char *order_of(const char *actor)
{
	char sql[300];

	snprintf(sql, sizeof(sql),
	         "SELECT string_agg(request_id, ',' ORDER BY started_at DESC, exec_id DESC) "
	         "FROM exec_audit WHERE actor = '%s'",
	         actor);
	return sv_query(W.db, sql);
}

START_TEST(pages_yield_every_row_once_in_order)
{
	int limit = page_limits[_i], npages;
	char *want = order_of("page"), *got = walk("actor=page", limit, &npages);

	ck_assert_int_eq(tu_query_int(W.db, "SELECT count(*) FROM exec_audit WHERE actor = 'page'"),
	                 NPAGE);
	ck_assert_msg(strcmp(got, want) == 0, "limit %d:\n got %s\nwant %s", limit, got, want);
	ck_assert_int_eq(npages, (NPAGE + limit - 1) / limit);
	free(got);
	free(want);
}
END_TEST

/* Rows inserted (newer) and a row completed between two pages: the pages still hold exactly
 * the rows there were when paging began, in order, each once. */
START_TEST(pages_hold_still_while_rows_are_appended)
{
	char *want, *v, q[512], enc[300];
	const char *cur = NULL;
	json_t *p = NULL, *np, *it;
	size_t i, len = 0;
	char *all = NULL;
	FILE *f = open_memstream(&all, &len);
	int n = 0, rows = 0;
	bool saw15 = false;

	v = sv_query(W.db, "SELECT count(*) FROM (SELECT t_seed('app-' || g, 'ws-a1', 'acme', "
	                   "'append', 'org', CASE WHEN g = 15 THEN 'running' ELSE 'exited' END, "
	                   "'2024-06-01T00:00:00Z'::timestamptz + g * interval '1 s') "
	                   "FROM generate_series(1, 30) g) s");
	ck_assert_str_eq(v, "30");
	free(v);
	want = order_of("append");
	for (;;) {
		if (cur != NULL) {
			url_encode(cur, enc, sizeof(enc));
			snprintf(q, sizeof(q), "actor=append&limit=7&cursor=%s", enc);
		} else {
			snprintf(q, sizeof(q), "actor=append&limit=7");
		}
		np = list(W.tok_admin, q);
		json_decref(p);
		p = np;
		n++;
		json_array_foreach(json_object_get(p, "items"), i, it)
		{
			fprintf(f, "%s%s", rows++ > 0 ? "," : "", sv_str(it, "request_id"));
			if (strcmp(sv_str(it, "request_id"), "app-15") == 0) {
				saw15 = true;
				ck_assert_str_eq(sv_str(it, "status"), "exited");
			}
		}
		if (n == 1) {
			v = sv_query(W.db, "SELECT count(*) FROM (SELECT t_seed('app-new-' || g, "
			                   "'ws-a1', 'acme', 'append', 'org', 'exited', now()) "
			                   "FROM generate_series(1, 3) g) s");
			free(v);
			v = sv_query(W.db,
			             "SELECT t_seed('app-new-run', 'ws-a1', 'acme', 'append', "
			             "'org', 'running', now())");
			free(v);
		} else if (n == 2) {
			/* app-15 is on page 3 */
			v = sv_query(W.db,
			             "UPDATE exec_audit SET status = 'exited', exit_code = 0, "
			             "finished_at = started_at + interval '2 s', duration_ms = "
			             "2000 WHERE request_id = 'app-15' RETURNING chain_seq");
			ck_assert_msg(atoll(v) > 0, "completing app-15: %s", v);
			free(v);
		} else if (n == 3) {
			v = sv_query(W.db, "SELECT count(*) FROM (SELECT t_seed('app-new-' || g, "
			                   "'ws-a1', 'acme', 'append', 'org', 'exited', "
			                   "clock_timestamp()) FROM generate_series(4, 5) g) s");
			free(v);
		}
		cur = next_cursor(p);
		if (cur == NULL)
			break;
		ck_assert_msg(n < 20, "more than 20 pages of 7 for 30 rows");
	}
	json_decref(p);
	fclose(f);
	ck_assert_msg(strcmp(all, want) == 0, "paging while rows were added:\n got %s\nwant %s",
	              all, want);
	ck_assert_int_eq(n, 5);
	ck_assert(saw15);
	/* and the rows added meanwhile are at the head of a new walk */
	p = list(W.tok_admin, "actor=append&limit=6");
	json_array_foreach(json_object_get(p, "items"), i, it)
	{
		ck_assert_msg(strncmp(sv_str(it, "request_id"), "app-new-", 8) == 0,
		              "row %zu of a new walk is %s", i, sv_str(it, "request_id"));
	}
	ck_assert_int_eq(json_array_size(json_object_get(p, "items")), 6);
	json_decref(p);
	free(all);
	free(want);
}
END_TEST

/* ---- real execs ---- */

#define N_REAL 5

START_TEST(real_execs_are_found_with_their_outcome)
{
	struct {
		const char *ws, *tok, *reason, *script;
		const char *status, *kind, *org;
		int exit_code; /* -1: none */
		const char *signal;
		const char *seen_by; /* o: org acme, w: workspace ws-a1, x: org globex */
	} e[N_REAL] = {
	    {"ws-a1", W.tok_ws, NULL, "exit 0", "exited", "workspace", "acme", 0, NULL, "ow"},
	    {"ws-a2", W.tok_org, NULL, "exit 3", "exited", "org", "acme", 3, NULL, "o"},
	    {"ws-a1", W.tok_admin, REASON, "exit 0", "exited", "admin", "acme", 0, NULL, "ow"},
	    {"ws-b1", W.tok_other, NULL, "kill -TERM $$", "signaled", "org", "globex", -1, "TERM",
	     "x"},
	    {"ws-a1", W.tok_other, NULL, "exit 0", "denied", "org", "globex", -1, NULL, "x"},
	};
	const char *const readers[] = {W.tok_org, W.tok_ws, W.tok_other};
	const char reader_keys[] = "owx";
	char xid[N_REAL][64], rid[N_REAL][80];
	long long before;
	char actor[32], q[256];

	for (size_t k = 0; k < sizeof(e) / sizeof(e[0]); k++) {
		const char *argv[] = {"sh", "-c", e[k].script, NULL};
		char *body = sv_body(argv, NULL);
		struct kit_req rq = {
		    .ws = e[k].ws, .token = e[k].tok, .reason = e[k].reason, .body = body};
		struct kit_resp r;
		struct kit_frames f;

		sv_http(B.port, &rq, &r);
		if (strcmp(e[k].status, "denied") == 0) {
			sv_error(W.db, &r, 404, "not_found", "denied", "not_found");
		} else {
			sv_stream(&r, &f);
			kit_frames_free(&f);
		}
		ck_assert_ptr_nonnull(kit_header(&r, "X-Exec-Id", xid[k], sizeof(xid[k])));
		snprintf(rid[k], sizeof(rid[k]), "%s", r.rid);
		kit_resp_free(&r);
		free(body);
	}
	before = tu_query_int(W.db, "SELECT count(*) FROM exec_audit");
	for (size_t k = 0; k < sizeof(e) / sizeof(e[0]); k++) {
		json_t *it = one(W.tok_admin, xid[k]);
		char *dump = json_dumps(it, JSON_COMPACT);

		ck_assert_str_eq(sv_str(it, "exec_id"), xid[k]);
		ck_assert_str_eq(sv_str(it, "request_id"), rid[k]);
		ck_assert_str_eq(sv_str(it, "workspace_id"), e[k].ws);
		ck_assert_str_eq(sv_str(it, "org_id"), e[k].org);
		ck_assert_str_eq(sv_str(it, "status"), e[k].status);
		ck_assert_str_eq(sv_str(it, "actor_kind"), e[k].kind);
		snprintf(actor, sizeof(actor), "token:%.12s", e[k].tok);
		ck_assert_str_eq(sv_str(it, "actor"), actor);
		ck_assert_str_eq(sv_str(it, "broker_instance"), MAIN_INSTANCE);
		if (e[k].exit_code >= 0)
			ck_assert_msg(sv_int(it, "exit_code") == e[k].exit_code, "%s", dump);
		else
			ck_assert_msg(json_is_null(json_object_get(it, "exit_code")), "%s", dump);
		if (e[k].signal != NULL)
			ck_assert_msg(sv_str(it, "exit_signal") &&
			                  strcmp(sv_str(it, "exit_signal"), e[k].signal) == 0,
			              "%s", dump);
		if (e[k].reason != NULL)
			ck_assert_msg(sv_str(it, "break_glass_reason") &&
			                  strcmp(sv_str(it, "break_glass_reason"), e[k].reason) ==
			                      0,
			              "%s", dump);
		else
			ck_assert_msg(json_is_null(json_object_get(it, "break_glass_reason")), "%s",
			              dump);
		if (strcmp(e[k].status, "denied") == 0)
			ck_assert_msg(sv_str(it, "error_code") &&
			                  strcmp(sv_str(it, "error_code"), "not_found") == 0,
			              "%s", dump);
		free(dump);
		json_decref(it);

		/* in the list of its actor and workspace */
		snprintf(q, sizeof(q), "actor=%s&workspace_id=%s&status=%s&limit=1000", actor,
		         e[k].ws, e[k].status);
		{
			json_t *p = list(W.tok_admin, q), *x;
			size_t i;
			bool found = false;

			json_array_foreach(json_object_get(p, "items"), i, x)
			{
				found = found || strcmp(sv_str(x, "request_id"), rid[k]) == 0;
			}
			ck_assert_msg(found, "%s not in the list of %s", rid[k], q);
			json_decref(p);
		}
		/* and seen by exactly the tokens whose scope it is in */
		for (int t = 0; t < 3; t++) {
			bool sees = strchr(e[k].seen_by, reader_keys[t]) != NULL;
			char path[512];
			struct kit_resp r;

			snprintf(path, sizeof(path), "/v1/audit/%s", xid[k]);
			get(&r, readers[t], path);
			if (sees) {
				json_t *o = ok_json(&r, readers[t], path);
				ck_assert_str_eq(sv_str(o, "exec_id"), xid[k]);
				json_decref(o);
			} else {
				ck_assert_msg(r.status == 404, "%s's row %s seen by %s: %d %s",
				              e[k].kind, rid[k], tok_name(readers[t]), r.status,
				              brief(r.body));
				expect_error(&r, 404, "not_found", NULL);
			}
			kit_resp_free(&r);
		}
	}
	ck_assert_int_eq(tu_query_int(W.db, "SELECT count(*) FROM exec_audit"), before);
}
END_TEST

/* Last: PostgreSQL is stopped under the shared broker, and started again. */
START_TEST(database_down_is_503_audit_unavailable)
{
	static const char *const paths[] = {"/v1/audit?actor=filt", "/v1/audit/" S1};
	struct kit_resp r;
	long long end;

	ck_assert_int_eq(th_pg_stop(&th.pg), 0);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		json_t *o;

		get(&r, W.tok_admin, paths[i]);
		ck_assert_msg(r.status == 503, "%s with PostgreSQL down: %d %s", paths[i], r.status,
		              brief(r.body));
		o = sv_json(&r);
		ck_assert_msg(sv_str(o, "error.code") &&
		                  strcmp(sv_str(o, "error.code"), "audit_unavailable") == 0,
		              "%s", brief(r.body));
		json_decref(o);
		kit_resp_free(&r);
	}
	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	end = kit_now_ms() + KIT_WAIT_MS;
	for (;;) {
		get(&r, W.tok_admin, "/v1/audit?actor=filt&limit=1");
		if (r.status == 200)
			break;
		ck_assert_msg(kit_now_ms() < end, "no 200 after PostgreSQL came back: %d %s",
		              r.status, brief(r.body));
		kit_resp_free(&r);
		kit_sleep_ms(200);
	}
	kit_resp_free(&r);
	expect_rows(W.tok_admin, "actor=filt&limit=1", "f9", 1);
}
END_TEST

#define ADD_LOOP(s, fn, n) SV_ADD_LOOP(s, fn, n, 60)
#define ADD(s, fn)         ADD_LOOP(s, fn, 1)
#define N(a)               (sizeof(a) / sizeof((a)[0]))

int main(void)
{
	Suite *s = suite_create("audit_api");
	int failed;

	/* The database's zone is not UTC, as on many a server (this one is 3:30 behind, with
	 * summer time): the API's times must not depend on it. Set before the broker connects. */
	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_sql(W.db, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = %L', "
	                  "current_database(), 'America/St_Johns'); END $$") != 0 ||
	    kit_broker_start(&B, W.db, MAIN_INSTANCE, NULL) != 0 ||
	    kit_sql(W.db, seed_fn_sql) != 0 || kit_sql(W.db, seed_scope_sql) != 0 ||
	    kit_sql(W.db, seed_filter_sql) != 0 || kit_sql(W.db, seed_page_sql) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD_LOOP(s, unauthenticated_is_401, N(unauth));
	ADD_LOOP(s, scope_decides_what_a_list_holds, N(scope_lists));
	ADD_LOOP(s, scope_decides_which_rows_exist, N(scope_one));
	ADD(s, cursor_carries_no_scope);
	ADD_LOOP(s, filters_select_rows_newest_first, N(filters));
	ADD(s, limit_defaults_to_100_and_goes_to_1000);
	ADD_LOOP(s, bad_filter_is_400_naming_the_parameter, N(bad));
	ADD(s, altered_cursor_is_400);
	ADD(s, cursor_out_of_range_is_400);
	ADD(s, cursor_of_other_filters_is_400);
	ADD_LOOP(s, only_get_is_allowed, N(methods));
	ADD(s, unknown_exec_id_is_404_and_any_case_is_found);
	ADD(s, item_of_a_seeded_row);
	ADD(s, item_of_a_real_exec);
	ADD_LOOP(s, pages_yield_every_row_once_in_order, N(page_limits));
	ADD(s, pages_hold_still_while_rows_are_appended);
	ADD(s, real_execs_are_found_with_their_outcome);
	/* last: it stops PostgreSQL under the shared broker */
	ADD(s, database_down_is_503_audit_unavailable);
	failed = tu_run_suite(s);
	/* The shared broker ends as it should after everything above. */
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
