/* tests/check_authz.c: bearer headers and break-glass reasons; the tenancy matrix. Tokens made by
 * the real CLI, the statement that authorizes and begins an exec run on the harness's
 * PostgreSQL, and the decision for every token and workspace pairing: 401 for bad tokens, 404
 * (never 403) for what a tenant cannot reach, the tier gate, the admin's break-glass reason,
 * stopped workspaces; and the statement's own predicate agreeing with the decision each time. */
#include <check.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "api/authz.h"
#include "audit/writer.h"
#include "common/token.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/runner.h"

#define FP "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE"

static char db[512];
enum {
	T_WS_A,
	T_ORG_ACME,
	T_ORG_OTHER,
	T_ADMIN,
	T_EXPIRED,
	T_REVOKED,
	T_AUDITOR,   /* an admin token with audit:read only */
	T_ORG_AUDIT, /* an org token of acme with audit:read only */
	T_ORG_BATCH, /* an org token of acme with batch only */
	T_UNKNOWN,
	NTOKENS
};
static char tokens[NTOKENS][TOKEN_LEN + 1];

static void add_ws(const char *id, const char *org, const char *tier, const char *state)
{
	const char *const args[] = {"workspace", "add",     id,    "--org",  org,  "--host",
	                            "10.0.0.1",  "--user",  "u",   "--tier", tier, "--host-key",
	                            FP,          "--state", state, NULL};
	struct tu_run r;

	tu_broker(&r, db, NULL, args);
	ck_assert_msg(r.exit_code == 0, "%s", r.err);
	tu_run_free(&r);
}

static void make_token_scoped(int slot, const char *flag, const char *reach, const char *scopes)
{
	const char *const args[] = {"token", "create", flag, reach, "--scope", scopes, NULL};
	const char *const noreach[] = {"token", "create", flag, "--scope", scopes, NULL};
	struct tu_run r;

	tu_broker(&r, db, NULL, reach != NULL ? args : noreach);
	ck_assert_msg(r.exit_code == 0, "%s", r.err);
	snprintf(tokens[slot], sizeof(tokens[slot]), "%.*s", (int)TOKEN_LEN, r.out);
	tu_run_free(&r);
}

static void make_token(int slot, const char *flag, const char *scope)
{
	const char *const args[] = {"token", "create", flag, scope, NULL};
	struct tu_run r;

	tu_broker(&r, db, NULL, args);
	ck_assert_msg(r.exit_code == 0, "%s", r.err);
	snprintf(tokens[slot], sizeof(tokens[slot]), "%.*s", (int)TOKEN_LEN, r.out);
	tu_run_free(&r);
}

static void setup(void)
{
	static const char *const revoke[] = {"token", "revoke", "6", NULL};
	struct tu_run r;

	tu_migrated_db(db, sizeof(db));
	add_ws("ws-a", "acme", "3", "running");
	add_ws("ws-low", "acme", "1", "running");
	add_ws("ws-stopped", "acme", "4", "stopped");
	add_ws("ws-o", "other", "4", "running");
	make_token(T_WS_A, "--workspace", "ws-a");    /* id 1 */
	make_token(T_ORG_ACME, "--org", "acme");      /* id 2 */
	make_token(T_ORG_OTHER, "--org", "other");    /* id 3 */
	make_token(T_ADMIN, "--admin", NULL);         /* id 4 */
	make_token(T_EXPIRED, "--workspace", "ws-a"); /* id 5 */
	make_token(T_REVOKED, "--org", "acme");       /* id 6 */
	free(tu_query(db, "UPDATE api_tokens SET created_at = now() - interval '2 days', "
	                  "expires_at = now() - interval '1 day' WHERE id = 5"));
	tu_broker(&r, db, NULL, revoke);
	ck_assert_int_eq(r.exit_code, 0);
	tu_run_free(&r);
	make_token_scoped(T_AUDITOR, "--admin", NULL, "audit:read");
	make_token_scoped(T_ORG_AUDIT, "--org", "acme", "audit:read");
	make_token_scoped(T_ORG_BATCH, "--org", "acme", "batch");
	ck_assert_int_eq(token_generate(tokens[T_UNKNOWN]), 0);
}

/* Runs the statement and the decision as the broker will: the row goes in exactly when
 * the decision is AUTHZ_OK (the SQL predicate and authz_decide agree). Rolled back unless
 * commit. */
static enum authz_verdict decide_and(int tok, const char *ws, bool reason, bool commit)
{
	char hash[TOKEN_HASH_HEX_LEN + 1], *store = NULL;
	const char *params[AUDIT_AUTHZ_BEGIN_NPARAMS];
	static const struct eb_bytes argv[] = {{"true", 4}};
	struct audit_begin b = {.request_id = "req-authz",
	                        .workspace_id = ws,
	                        .actor = "token:ebk_test0000",
	                        .break_glass_reason = reason ? "incident 42" : NULL,
	                        .argv = argv,
	                        .argc = 1,
	                        .timeout_s = 30,
	                        .broker_instance = "check-authz"};
	struct authz_row row = {0};
	enum authz_verdict v;
	PGconn *c = PQconnectdb(db);
	PGresult *res;
	bool inserted;

	audit_new_exec_id(b.exec_id);
	token_hash_hex(tokens[tok], strlen(tokens[tok]), hash);
	ck_assert_int_eq(audit_authz_begin_params(&b, hash, 3, true, "exec", params, &store), 0);
	PQclear(PQexec(c, "BEGIN"));
	res = PQexecParams(c, audit_authz_begin_sql, AUDIT_AUTHZ_BEGIN_NPARAMS, NULL, params, NULL,
	                   NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	ck_assert_int_le(PQntuples(res), 1);
	authz_row_from_result(res, &row);
	v = authz_decide(&row, SCOPE_EXEC, 3, reason);
	inserted =
	    PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, AUDIT_AUTHZ_COL_INSERTED), "t") == 0;
	ck_assert_msg(inserted == (v == AUTHZ_OK),
	              "token %d on %s: the row %s in, the verdict is %s", tok, ws,
	              inserted ? "went" : "did not go", authz_code(v) ? authz_code(v) : "ok");
	PQclear(res);
	PQclear(PQexec(c, commit ? "COMMIT" : "ROLLBACK"));
	PQfinish(c);
	free(store);
	return v;
}

static enum authz_verdict decide(int tok, const char *ws, bool reason)
{
	return decide_and(tok, ws, reason, false);
}

static const struct {
	int token;
	const char *ws;
	bool reason;
	enum authz_verdict want;
} matrix[] = {
    {T_WS_A, "ws-a", false, AUTHZ_OK},
    {T_WS_A, "ws-low", false, AUTHZ_NOT_FOUND}, /* same org, other workspace */
    {T_WS_A, "ws-o", false, AUTHZ_NOT_FOUND},   /* other org */
    {T_WS_A, "nope", false, AUTHZ_NOT_FOUND},   /* missing: the same answer */
    {T_ORG_ACME, "ws-a", false, AUTHZ_OK},
    {T_ORG_ACME, "ws-low", false, AUTHZ_FORBIDDEN_TIER},
    {T_ORG_ACME, "ws-stopped", false, AUTHZ_NOT_RUNNING},
    {T_ORG_ACME, "ws-o", false, AUTHZ_NOT_FOUND},
    {T_ORG_ACME, "nope", false, AUTHZ_NOT_FOUND},
    {T_ORG_OTHER, "ws-a", false, AUTHZ_NOT_FOUND},       /* not forbidden: invisible */
    {T_ORG_OTHER, "ws-low", false, AUTHZ_NOT_FOUND},     /* no tier hint across orgs */
    {T_ORG_OTHER, "ws-stopped", false, AUTHZ_NOT_FOUND}, /* no state hint either */
    {T_ORG_OTHER, "ws-o", false, AUTHZ_OK},
    {T_ADMIN, "ws-o", false, AUTHZ_REASON_REQUIRED},
    {T_ADMIN, "ws-o", true, AUTHZ_OK},
    {T_ADMIN, "ws-low", true, AUTHZ_OK}, /* every tier */
    {T_ADMIN, "ws-stopped", true, AUTHZ_NOT_RUNNING},
    {T_ADMIN, "nope", true, AUTHZ_NOT_FOUND},
    {T_EXPIRED, "ws-a", false, AUTHZ_UNAUTHORIZED},
    {T_REVOKED, "ws-a", false, AUTHZ_UNAUTHORIZED},
    /* Scopes are the token's own: decided before the workspace, so a token without exec
     * learns nothing about any workspace either. */
    {T_AUDITOR, "ws-o", true, AUTHZ_MISSING_SCOPE},
    {T_AUDITOR, "nope", true, AUTHZ_MISSING_SCOPE},
    {T_ORG_AUDIT, "ws-a", false, AUTHZ_MISSING_SCOPE},
    {T_ORG_AUDIT, "ws-o", false, AUTHZ_MISSING_SCOPE},
    {T_ORG_BATCH, "ws-a", false, AUTHZ_MISSING_SCOPE},
    {T_UNKNOWN, "ws-a", false, AUTHZ_UNAUTHORIZED},
    {T_UNKNOWN, "nope", false, AUTHZ_UNAUTHORIZED},
};

START_TEST(tenancy_matrix)
{
	for (size_t i = 0; i < sizeof(matrix) / sizeof(matrix[0]); i++) {
		enum authz_verdict v = decide(matrix[i].token, matrix[i].ws, matrix[i].reason);
		ck_assert_msg(v == matrix[i].want, "case %zu (token %d on %s): got %s, want %s", i,
		              matrix[i].token, matrix[i].ws, authz_code(v) ? authz_code(v) : "ok",
		              authz_code(matrix[i].want) ? authz_code(matrix[i].want) : "ok");
	}
}
END_TEST

START_TEST(lookup_stamps_last_used)
{
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM api_tokens WHERE id = 2 AND "
	                                  "last_used_at IS NULL"),
	                 1);
	ck_assert_int_eq(decide_and(T_ORG_ACME, "ws-a", false, true), AUTHZ_OK);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM api_tokens WHERE id = 2 AND "
	                                  "last_used_at IS NOT NULL"),
	                 1);
}
END_TEST

static const struct {
	const char *header;
	const char *token; /* NULL: refused */
} bearers[] = {
    {"Bearer ebk_abc", "ebk_abc"},
    {"bearer ebk_abc", "ebk_abc"},
    {"BEARER  ebk_abc", "ebk_abc"},
    {"Basic dXNlcjpwdw==", NULL},
    {"Bearer", NULL},
    {"Bearer ", NULL},
    {"Bearer a b", NULL},
    {"Bearerebk_abc", NULL},
    {"Bearer ebk_abc ", NULL},
    {"", NULL},
};

START_TEST(bearer_header_parsing)
{
	const char *tok = NULL;
	unsigned long len = 0;
	int rc = authz_parse_bearer(bearers[_i].header, &tok, &len);

	if (bearers[_i].token == NULL) {
		ck_assert_msg(rc != 0, "accepted \"%s\"", bearers[_i].header);
		return;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(len, strlen(bearers[_i].token));
	ck_assert_int_eq(strncmp(tok, bearers[_i].token, len), 0);
}
END_TEST

START_TEST(break_glass_reasons)
{
	char long_reason[600];

	ck_assert(authz_reason_valid("incident 4711: disk full on ws-3"));
	ck_assert(authz_reason_valid("r\xc3\xa9paration urgente"));
	ck_assert(!authz_reason_valid(""));
	ck_assert(!authz_reason_valid("line1\nline2"));
	ck_assert(!authz_reason_valid("tab\there"));
	ck_assert(!authz_reason_valid("bad \xff byte"));
	memset(long_reason, 'x', 500);
	long_reason[500] = '\0';
	ck_assert(authz_reason_valid(long_reason));
	long_reason[500] = 'x';
	long_reason[501] = '\0';
	ck_assert(!authz_reason_valid(long_reason));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("authz");
	TCase *tc = tcase_create("authz");
	TCase *headers = tcase_create("headers");
	int failed;

	if (th_setup(TH_PG) != 0)
		return EXIT_FAILURE;
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, tenancy_matrix);
	tcase_add_test(tc, lookup_stamps_last_used);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(headers, bearer_header_parsing, 0,
	                    sizeof(bearers) / sizeof(bearers[0]));
	tcase_add_test(headers, break_glass_reasons);
	suite_add_tcase(s, headers);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
