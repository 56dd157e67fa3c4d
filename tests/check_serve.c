/* tests/check_serve.c: the HTTP API of `exec-broker serve` end to end: the real binary,
 * started once in main() against a real PostgreSQL and real sshds, driven over HTTP by the kit's
 * client. Every status and error code, the tenancy matrix, the NDJSON stream and the buffered
 * document, what reaches the command, timeouts and disconnects that leave no process, one
 * audit row per exec (or none) and nothing secret in the database or the log. The broker's
 * life (limits, shutdown, crashes, PostgreSQL going away, load) is in check_serve_life.c. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define MAIN_INSTANCE "eb-serve-main"
#define REASON        "incident 42: disk full on ws"

static struct kit_world W;
static struct kit_broker B; /* started in main(), shared by every test */

static const char *const true_argv[] = {"true", NULL};

/* POST an exec of argv (extra: more body members, stolen) to ws with token. */
static void exec_argv(struct kit_resp *r, const char *ws, const char *token,
                      const char *const argv[], json_t *extra, const char *accept)
{
	char *body = sv_body(argv, extra);
	struct kit_req q = {.ws = ws, .token = token, .body = body, .accept = accept};

	sv_http(B.port, &q, r);
	free(body);
}

/* sh -c script arg0 [arg1] on ws-a1 with the org token, streamed, checked as a stream. */
static void run_sh(struct kit_resp *r, struct kit_frames *f, const char *script, const char *arg0,
                   json_t *extra)
{
	const char *argv[] = {"sh", "-c", script, arg0 ? arg0 : "sh", NULL};

	exec_argv(r, "ws-a1", W.tok_org, argv, extra, NULL);
	sv_stream(r, f);
}

START_TEST(health_ready_and_metrics_answer)
{
	static const char *const series[] = {
	    "exec_broker_execs_total{outcome=\"exited\"}",
	    "exec_broker_exec_duration_seconds_count",
	    "exec_broker_exec_duration_seconds_bucket{le=\"+Inf\"}",
	    "exec_broker_ssh_handshakes_total", "exec_broker_audit_write_failures_total"};
	static const char *const names[] = {
	    "exec_broker_http_requests_total{code=", "exec_broker_pool_sessions{state=",
	    "# TYPE exec_broker_exec_duration_seconds histogram"};
	struct kit_req q = {.method = "GET", .path = "/healthz"};
	struct kit_resp r;
	char hv[100], *m;
	json_t *o;

	sv_http(B.port, &q, &r);
	ck_assert_msg(r.status == 200, "healthz: %d %s", r.status, r.body);
	o = sv_json(&r);
	ck_assert_msg(sv_str(o, "status") && strcmp(sv_str(o, "status"), "ok") == 0, "%s", r.body);
	json_decref(o);
	ck_assert_msg(kit_header(&r, "X-Request-Id", hv, sizeof(hv)) != NULL &&
	                  strcmp(hv, r.rid) == 0,
	              "healthz X-Request-Id: %s", r.head);
	kit_resp_free(&r);

	q.path = "/readyz";
	sv_http(B.port, &q, &r);
	ck_assert_msg(r.status == 200, "readyz: %d %s", r.status, r.body);
	o = sv_json(&r);
	ck_assert_msg(sv_str(o, "status") && strcmp(sv_str(o, "status"), "ready") == 0, "%s",
	              r.body);
	json_decref(o);
	kit_resp_free(&r);

	q.path = "/metrics";
	sv_http(B.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(kit_header(&r, "Content-Type", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "text/plain", 10) == 0,
	              "metrics Content-Type: %s", r.head);
	m = r.body;
	for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
		ck_assert_msg(kit_metric(m, series[i]) >= 0, "no %s in:\n%s", series[i], m);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_msg(strstr(m, names[i]) != NULL, "no %s in:\n%s", names[i], m);
	kit_resp_free(&r);
}
END_TEST

START_TEST(metrics_count_execs_and_requests)
{
	const char *exited = "exec_broker_execs_total{outcome=\"exited\"}";
	const char *c404 = "exec_broker_http_requests_total{code=\"404\"}";
	struct kit_req q = {.method = "GET", .path = "/no-such-thing"};
	struct kit_resp r;
	struct kit_frames f;
	char *before, *after;

	before = sv_metrics(B.port);
	run_sh(&r, &f, "exit 0", NULL, NULL);
	kit_frames_free(&f);
	kit_resp_free(&r);
	sv_http(B.port, &q, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	after = sv_metrics(B.port);
	ck_assert_msg(kit_metric(after, exited) >= kit_metric(before, exited) + 1, "%s: %g then %g",
	              exited, kit_metric(before, exited), kit_metric(after, exited));
	ck_assert_msg(kit_metric(after, c404) >=
	                  (kit_metric(before, c404) < 0 ? 0 : kit_metric(before, c404)) + 1,
	              "%s: %g then %g", c404, kit_metric(before, c404), kit_metric(after, c404));
	free(before);
	free(after);
}
END_TEST

/* Paths the API does not have, with a good token and a good body: 404, no row. */
static const struct {
	const char *method, *path;
} unknown_paths[] = {
    {"GET", "/"},
    {"POST", "/nope"},
    {"POST", "/v1/workspaces/ws-a1/exec/more"},
    {"POST", "/v1/workspaces//exec"},
    {"POST", "/v1/workspaces/ws-a1"},
    {"POST", "/v1/workspaces/ws-a1/execute"},
    {"POST", "/v2/workspaces/ws-a1/exec"},
    {"GET", "/healthz/more"},
};

START_TEST(unknown_path_is_404_without_a_row)
{
	struct kit_req q = {.method = unknown_paths[_i].method,
	                    .path = unknown_paths[_i].path,
	                    .token = W.tok_org,
	                    .body = "{\"argv\":[\"true\"]}"};
	struct kit_resp r;
	char hv[200];

	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 404, "not_found", NULL, NULL);
	ck_assert_msg(kit_header(&r, "X-Request-Id", hv, sizeof(hv)) != NULL &&
	                  strcmp(hv, r.rid) == 0,
	              "X-Request-Id of a 404: %s", r.head);
	kit_resp_free(&r);
}
END_TEST

static const struct {
	const char *method, *path, *allow;
} wrong_methods[] = {
    {"GET", "/v1/workspaces/ws-a1/exec", "POST"},
    {"PUT", "/v1/workspaces/ws-a1/exec", "POST"},
    {"DELETE", "/v1/workspaces/ws-a1/exec", "POST"},
    {"PATCH", "/v1/workspaces/ws-a1/exec", "POST"},
    {"POST", "/healthz", "GET"},
    {"POST", "/readyz", "GET"},
    {"DELETE", "/metrics", "GET"},
};

START_TEST(wrong_method_is_405_with_allow)
{
	struct kit_req q = {.method = wrong_methods[_i].method,
	                    .path = wrong_methods[_i].path,
	                    .token = W.tok_org,
	                    .body = "{\"argv\":[\"true\"]}"};
	struct kit_resp r;
	char hv[200];

	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 405, "method_not_allowed", NULL, NULL);
	ck_assert_msg(kit_header(&r, "Allow", hv, sizeof(hv)) != NULL &&
	                  strstr(hv, wrong_methods[_i].allow) != NULL,
	              "%s %s: Allow: %s", q.method, q.path, r.head);
	kit_resp_free(&r);
}
END_TEST

/* Missing, malformed, unknown, expired and revoked credentials: 401, WWW-Authenticate,
 * no row, and the command (which would create a file) never ran. */
static const struct {
	const char *auth; /* NULL: no header */
	const char *tok;  /* or "Bearer <tok>" */
	const char *suffix;
} unauth[] = {
    {NULL, NULL, NULL},
    {"Basic ZWJ0ZXN0OnNlY3JldA==", NULL, NULL},
    {"Bearer", NULL, NULL},
    {"Bearer ", NULL, NULL},
    {"Bearer not-a-token", NULL, NULL},
    {"Bearer ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, NULL}, /* unknown */
    {NULL, W.tok_org, "x"},                                                 /* too long */
    {NULL, W.tok_expired, NULL},
    {NULL, W.tok_revoked, NULL},
    {"Token", W.tok_org, NULL}, /* wrong scheme, good token */
};

START_TEST(unauthenticated_is_401_without_a_row)
{
	char auth[200], hv[200], *marker = kit_tmp_path("unauth"), *line;
	const char *argv[] = {"touch", marker, NULL};
	char *body = sv_body(argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .body = body};
	struct kit_resp r;

	if (unauth[_i].tok != NULL) {
		snprintf(auth, sizeof(auth), "%s %s%s",
		         unauth[_i].auth ? unauth[_i].auth : "Bearer", unauth[_i].tok,
		         unauth[_i].suffix ? unauth[_i].suffix : "");
		q.auth = auth;
	} else {
		q.auth = unauth[_i].auth;
	}
	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 401, "unauthorized", NULL, NULL);
	ck_assert_msg(kit_header(&r, "WWW-Authenticate", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "Bearer", 6) == 0,
	              "WWW-Authenticate: %s", r.head);
	ck_assert_msg(!kit_file_exists(marker), "the command ran");
	line = sv_log_request(B.log, r.rid); /* no row, but a log line */
	ck_assert_msg(strstr(line, "status=401") != NULL, "%s", line);
	free(line);
	kit_resp_free(&r);
	free(body);
	free(marker);
}
END_TEST

START_TEST(bearer_scheme_is_case_insensitive)
{
	char auth[200];
	char *body = sv_body(true_argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .body = body, .auth = auth};
	struct kit_resp r;
	struct kit_frames f;

	snprintf(auth, sizeof(auth), "bearer  %s", W.tok_org);
	sv_http(B.port, &q, &r);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(body);
}
END_TEST

/* Bodies refused before anything is looked up: 400, the code, the field, no row. */
static const struct {
	const char *body, *code, *field;
} bad_bodies[] = {
    {"{", "invalid_json", NULL},
    {"{\"argv\":[\"true\"]} x", "invalid_json", NULL},
    {"{\"argv\":\"rm -rf /\"}", "invalid_request", "argv"},
    {"{}", "invalid_request", "argv"},
    {"{\"argv\":[]}", "invalid_request", "argv"},
    {"{\"argv\":[\"\"]}", "invalid_request", "argv[0]"},
    {"{\"argv\":[\"ls\",\"-l\",\"x\",3]}", "invalid_request", "argv[3]"},
    {"{\"argv\":[\"ls\",\"a\\u0000b\"]}", "invalid_request", "argv[1]"},
    {"{\"argv\":[\"true\"],\"timeout_s\":-1}", "invalid_request", "timeout_s"},
    {"{\"argv\":[\"true\"],\"timeout_s\":1.5}", "invalid_request", "timeout_s"},
    {"{\"argv\":[\"true\"],\"timeout_s\":\"5\"}", "invalid_request", "timeout_s"},
    {"{\"argv\":[\"true\"],\"env\":{\"1BAD\":\"x\"}}", "invalid_request", "env.1BAD"},
    {"{\"argv\":[\"true\"],\"env\":{\"A\":1}}", "invalid_request", "env.A"},
    {"{\"argv\":[\"true\"],\"cwd\":\"relative/dir\"}", "invalid_request", "cwd"},
    {"{\"argv\":[\"true\"],\"stdin\":\"a\",\"stdin_base64\":\"YQ==\"}", "invalid_request", "stdin"},
    {"{\"argv\":[\"true\"],\"stdin\":5}", "invalid_request", "stdin"},
    {"{\"argv\":[\"true\"],\"cmd\":\"ls\"}", "invalid_request", "cmd"},
    {"{\"argv\":[\"true\"],\"shell\":true}", "invalid_request", "shell"},
    /* Names of multibyte characters longer than an error names: cut between characters. */
    {"{\"argv\":[\"true\"],"
     "\"a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
     "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\":1}",
     "invalid_request", NULL},
    {"{\"argv\":[\"true\"],\"env\":{"
     "\"a\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
     "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\":\"x\"}}",
     "invalid_request", NULL},
};

START_TEST(bad_body_is_400_naming_the_field_without_a_row)
{
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = bad_bodies[_i].body};
	struct kit_resp r;
	char *line;
	json_t *o;

	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 400, bad_bodies[_i].code, NULL, NULL);
	o = sv_json(&r);
	if (bad_bodies[_i].field != NULL)
		ck_assert_msg(sv_str(o, "error.field") != NULL &&
		                  strcmp(sv_str(o, "error.field"), bad_bodies[_i].field) == 0,
		              "%s: field, want %s: %s", bad_bodies[_i].body, bad_bodies[_i].field,
		              r.body);
	if (strcmp(bad_bodies[_i].body, "{\"argv\":[\"true\"],\"cmd\":\"ls\"}") == 0)
		ck_assert_msg(strstr(sv_str(o, "error.message"), "argv") != NULL,
		              "no hint to argv: %s", r.body);
	json_decref(o);
	line = sv_log_request(B.log, r.rid); /* no row, but a log line */
	ck_assert_msg(strstr(line, "status=400") != NULL, "%s", line);
	free(line);
	kit_resp_free(&r);
}
END_TEST

START_TEST(too_many_or_too_long_arguments_are_400)
{
	const char *argv[300];
	char *big = malloc(40001);
	struct kit_resp r;
	json_t *o;

	/* 257 arguments */
	for (int i = 0; i < 257; i++)
		argv[i] = "x";
	argv[257] = NULL;
	exec_argv(&r, "ws-a1", W.tok_org, argv, NULL, NULL);
	sv_error(W.db, &r, 400, "invalid_request", NULL, NULL);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.field") ? sv_str(o, "error.field") : "", "argv");
	json_decref(o);
	kit_resp_free(&r);

	/* One argument over what Linux gives a program (MAX_ARG_STRLEN): 400, named, before
	 * any row. */
	big = realloc(big, 140001);
	memset(big, 'a', 140000);
	big[140000] = '\0';
	argv[0] = "echo";
	argv[1] = big;
	argv[2] = NULL;
	exec_argv(&r, "ws-a1", W.tok_org, argv, NULL, NULL);
	sv_error(W.db, &r, 400, "invalid_request", NULL, NULL);
	o = sv_json(&r);
	ck_assert_msg(sv_str(o, "error.field") && strcmp(sv_str(o, "error.field"), "argv[1]") == 0,
	              "field: %.200s", r.body);
	json_decref(o);
	kit_resp_free(&r);
	free(big);
}
END_TEST

START_TEST(bad_break_glass_reason_is_400)
{
	char reason[502];
	char *body = sv_body(true_argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_admin, .body = body, .reason = reason};
	struct kit_resp r;
	json_t *o;

	memset(reason, 'r', 501);
	reason[501] = '\0';
	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 400, "invalid_request", NULL, NULL);
	o = sv_json(&r);
	ck_assert_msg(sv_str(o, "error.field") &&
	                  strcmp(sv_str(o, "error.field"), "X-Break-Glass-Reason") == 0,
	              "field: %s", r.body);
	json_decref(o);
	kit_resp_free(&r);
	free(body);
}
END_TEST

static const struct {
	const char *ctype;
	int status;
} ctypes[] = {
    {"text/plain", 415},
    {"", 415}, /* no Content-Type at all */
    {"application/x-www-form-urlencoded", 415},
    {"application/jsonx", 415},
    {"application/json; charset=utf-8", 200},
};

START_TEST(content_type_must_be_json)
{
	char *body = sv_body(true_argv, NULL);
	struct kit_req q = {
	    .ws = "ws-a1", .token = W.tok_org, .body = body, .ctype = ctypes[_i].ctype};
	struct kit_resp r;
	struct kit_frames f;

	sv_http(B.port, &q, &r);
	if (ctypes[_i].status == 200) {
		sv_stream(&r, &f);
		kit_frames_free(&f);
	} else {
		sv_error(W.db, &r, ctypes[_i].status, "unsupported_media_type", NULL, NULL);
	}
	kit_resp_free(&r);
	free(body);
}
END_TEST

/* The contract's order: path/method, Content-Type, bearer, body, then the lookup's
 * 401/404/403/409. Each case would fail two checks; the earlier one must answer. */
START_TEST(checks_run_in_the_contract_order)
{
	struct {
		struct kit_req q;
		int status;
		const char *code, *row;
	} cases[] = {
	    {{.method = "POST", .path = "/nope", .ctype = "text/plain", .body = "x"},
	     404,
	     "not_found",
	     NULL},
	    {{.method = "GET", .ws = "ws-a1", .ctype = "text/plain", .body = "x"},
	     405,
	     "method_not_allowed",
	     NULL},
	    {{.ws = "ws-a1", .ctype = "text/plain", .body = "{"},
	     415,
	     "unsupported_media_type",
	     NULL},
	    {{.ws = "ws-a1", .body = "{"}, 401, "unauthorized", NULL},
	    {{.ws = "ws-nope", .token = W.tok_org, .body = "{"}, 400, "invalid_json", NULL},
	    {{.ws = "ws-nope", .token = W.tok_expired, .body = "{\"argv\":[\"true\"]}"},
	     401,
	     "unauthorized",
	     NULL},
	    {{.ws = "ws-nope", .token = W.tok_admin, .body = "{\"argv\":[\"true\"]}"},
	     404,
	     "not_found",
	     "denied"},
	    {{.ws = "ws-low", .token = W.tok_ws, .body = "{\"argv\":[\"true\"]}"},
	     404,
	     "not_found",
	     "denied"},
	    {{.ws = "ws-low", .token = W.tok_admin, .body = "{\"argv\":[\"true\"]}"},
	     403,
	     "break_glass_reason_required",
	     "denied"},
	};
	struct kit_resp r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sv_http(B.port, &cases[i].q, &r);
		ck_assert_msg(r.status == cases[i].status, "case %zu: %d, want %d: %s", i, r.status,
		              cases[i].status, r.body);
		sv_error(W.db, &r, cases[i].status, cases[i].code, cases[i].row,
		         cases[i].row ? cases[i].code : NULL);
		kit_resp_free(&r);
	}
}
END_TEST

START_TEST(oversized_body_is_413_without_a_row)
{
	size_t n = 1100 * 1024;
	char *body = malloc(n + 64);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org};
	struct kit_resp r;

	snprintf(body, 64, "{\"argv\":[\"true\"],\"stdin\":\"");
	memset(body + strlen(body), 'x', n);
	strcpy(body + n, "\"}");
	q.body = body;
	sv_http(B.port, &q, &r);
	sv_error(W.db, &r, 413, "payload_too_large", NULL, NULL);
	kit_resp_free(&r);
	free(body);
}
END_TEST

/* Who may run what: each token against each kind of workspace, for the status and for the
 * audit row (or its absence). */
static const struct {
	const char *name, *tok, *ws, *reason;
	int status;
	const char *code;       /* error code, NULL for a run */
	const char *row;        /* audit status, NULL: no row */
	const char *actor_kind; /* of the row */
	const char *org;        /* of the row, NULL: not checked */
} tenancy[] = {
    {"workspace token, its workspace", W.tok_ws, "ws-a1", NULL, 200, NULL, "exited", "workspace",
     "acme"},
    {"workspace token, same org", W.tok_ws, "ws-a2", NULL, 404, "not_found", "denied", "workspace",
     NULL},
    {"workspace token, other org", W.tok_ws, "ws-b1", NULL, 404, "not_found", "denied", "workspace",
     NULL},
    {"org token, tier 3", W.tok_org, "ws-a1", NULL, 200, NULL, "exited", "org", "acme"},
    {"org token, tier 4", W.tok_org, "ws-a2", NULL, 200, NULL, "exited", "org", "acme"},
    {"org token, other org", W.tok_org, "ws-b1", NULL, 404, "not_found", "denied", "org", NULL},
    {"org token, missing", W.tok_org, "ws-nope", NULL, 404, "not_found", "denied", "org", NULL},
    {"org token, tier 2", W.tok_org, "ws-low", NULL, 403, "forbidden_tier", "denied", "org",
     "acme"},
    {"org token, stopped", W.tok_org, "ws-stopped", NULL, 409, "workspace_not_running", "denied",
     "org", "acme"},
    {"other org, acme workspace", W.tok_other, "ws-a1", NULL, 404, "not_found", "denied", "org",
     NULL},
    {"other org, its workspace", W.tok_other, "ws-b1", NULL, 200, NULL, "exited", "org", "globex"},
    {"admin without reason", W.tok_admin, "ws-a1", NULL, 403, "break_glass_reason_required",
     "denied", "admin", "acme"},
    {"admin with reason", W.tok_admin, "ws-b1", REASON, 200, NULL, "exited", "admin", "globex"},
    {"admin with reason, tier 2", W.tok_admin, "ws-low", REASON, 200, NULL, "exited", "admin",
     "acme"},
    {"admin with reason, stopped", W.tok_admin, "ws-stopped", REASON, 409, "workspace_not_running",
     "denied", "admin", "acme"},
    {"admin with reason, missing", W.tok_admin, "ws-nope", REASON, 404, "not_found", "denied",
     "admin", NULL},
    {"expired", W.tok_expired, "ws-a1", NULL, 401, "unauthorized", NULL, NULL, NULL},
    {"revoked", W.tok_revoked, "ws-a1", NULL, 401, "unauthorized", NULL, NULL, NULL},
};

START_TEST(tenancy_matrix)
{
	char *marker = kit_tmp_path("tenancy");
	const char *argv[] = {"touch", marker, NULL};
	char *body = sv_body(argv, NULL), want[64], *v;
	struct kit_req q = {.ws = tenancy[_i].ws,
	                    .token = tenancy[_i].tok,
	                    .body = body,
	                    .reason = tenancy[_i].reason};
	struct kit_resp r;
	struct kit_frames f;

	sv_http(B.port, &q, &r);
	if (tenancy[_i].status == 200) {
		sv_stream(&r, &f);
		ck_assert_msg(sv_int(sv_last(&f), "exit_code") == 0, "%s: %s", tenancy[_i].name,
		              r.body);
		ck_assert_str_eq(sv_str(kit_frame(&f, 0), "workspace_id"), tenancy[_i].ws);
		kit_frames_free(&f);
		ck_assert_msg(kit_file_exists(marker), "%s: the command did not run",
		              tenancy[_i].name);
		v = sv_row(W.db, r.rid, "status || ' ' || exit_code");
		ck_assert_str_eq(v, "exited 0");
		free(v);
		v = sv_row(W.db, r.rid, "coalesce(break_glass_reason, '<none>')");
		ck_assert_str_eq(v, tenancy[_i].reason ? tenancy[_i].reason : "<none>");
		free(v);
	} else {
		sv_error(W.db, &r, tenancy[_i].status, tenancy[_i].code, tenancy[_i].row,
		         tenancy[_i].row ? tenancy[_i].code : NULL);
		ck_assert_msg(!kit_file_exists(marker), "%s: the command ran", tenancy[_i].name);
	}
	if (tenancy[_i].row != NULL) {
		snprintf(want, sizeof(want), "token:%.12s", tenancy[_i].tok);
		v = sv_row(W.db, r.rid, "actor");
		ck_assert_str_eq(v, want);
		free(v);
		v = sv_row(W.db, r.rid, "actor_kind || ' ' || workspace_id");
		snprintf(want, sizeof(want), "%s %s", tenancy[_i].actor_kind, tenancy[_i].ws);
		ck_assert_str_eq(v, want);
		free(v);
		if (tenancy[_i].org != NULL) {
			v = sv_row(W.db, r.rid, "org_id");
			ck_assert_str_eq(v, tenancy[_i].org);
			free(v);
		}
	}
	unlink(marker);
	kit_resp_free(&r);
	free(body);
	free(marker);
}
END_TEST

/* A tenant cannot tell another org's workspace from one that does not exist. */
static char *without(const char *s, const char *word)
{
	char *out = calloc(1, strlen(s) + 1), *o = out;
	size_t wl = strlen(word);

	while (*s != '\0') {
		if (strncmp(s, word, wl) == 0) {
			*o++ = '@';
			s += wl;
		} else {
			*o++ = *s++;
		}
	}
	return out;
}

START_TEST(other_orgs_workspace_looks_missing)
{
	char *body = sv_body(true_argv, NULL), *a, *b;
	struct kit_req q = {.ws = "ws-b1", .token = W.tok_org, .body = body};
	struct kit_resp r1, r2;

	sv_http(B.port, &q, &r1);
	q.ws = "ws-zz";
	sv_http(B.port, &q, &r2);
	ck_assert_int_eq(r1.status, 404);
	ck_assert_int_eq(r2.status, 404);
	a = without(r1.body, "ws-b1");
	b = without(r2.body, "ws-zz");
	ck_assert_msg(strcmp(a, b) == 0, "other org: %s\nmissing: %s", r1.body, r2.body);
	free(a);
	free(b);
	kit_resp_free(&r1);
	kit_resp_free(&r2);
	free(body);
}
END_TEST

START_TEST(stream_frames_come_in_order)
{
	struct kit_resp r;
	struct kit_frames f;
	json_t *last, *tr;
	char hv[100], want[200], *v;

	run_sh(&r, &f, "echo one; echo two >&2; printf three; exit 3", NULL, NULL);
	ck_assert_str_eq(sv_str(kit_frame(&f, 0), "workspace_id"), "ws-a1");
	ck_assert_int_eq(sv_int(kit_frame(&f, 0), "timeout_s"), 30);
	ck_assert_msg(kit_header(&r, "Transfer-Encoding", hv, sizeof(hv)) != NULL &&
	                  strcmp(hv, "chunked") == 0,
	              "not chunked: %s", r.head);
	ck_assert_str_eq(f.out, "one\nthree");
	ck_assert_str_eq(f.err, "two\n");
	ck_assert_int_eq(f.b64, 0);
	ck_assert_int_eq(f.out_trunc + f.err_trunc, 0);
	last = sv_last(&f);
	ck_assert_int_eq(sv_int(last, "exit_code"), 3);
	ck_assert_msg(json_is_null(json_object_get(last, "signal")), "signal not null: %s", r.body);
	ck_assert_int_eq(sv_int(last, "stdout_bytes"), 9);
	ck_assert_int_eq(sv_int(last, "stderr_bytes"), 4);
	ck_assert_int_ge(sv_int(last, "duration_ms"), 0);
	tr = json_object_get(last, "truncated");
	ck_assert_msg(json_is_false(json_object_get(tr, "stdout")) &&
	                  json_is_false(json_object_get(tr, "stderr")),
	              "truncated: %s", r.body);
	/* The row is final before the last frame is sent: no waiting here. */
	v = sv_row(W.db, r.rid,
	           "concat_ws(' ', status, exit_code, stdout_bytes, stderr_bytes, "
	           "(finished_at IS NOT NULL)::text, (duration_ms >= 0)::text, exec_id)");
	snprintf(want, sizeof(want), "exited 3 9 4 true true %s",
	         sv_str(kit_frame(&f, 0), "exec_id"));
	ck_assert_str_eq(v, want);
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

/* The first frame and the first output arrive while the command still runs: it waits for
 * a file the test creates only after it read them. */
START_TEST(output_streams_before_the_command_exits)
{
	char *gate = kit_tmp_path("gate");
	const char *argv[] = {"sh", "-c",
	                      "printf 'first\\n'; while [ ! -e \"$0\" ]; do sleep 0.05; done; "
	                      "printf 'second\\n'",
	                      gate, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 60));
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_conn s;
	struct kit_frames f;
	struct kit_resp r;

	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	ck_assert_msg(kit_stream_head(&s, KIT_WAIT_MS) == 0,
	              "no status line while the command runs");
	ck_assert_int_eq(s.r.status, 200);
	kit_frames_init(&f);
	sv_stream_until(&s, &f, sv_out_has, "first\n", "the first output before the command exits");
	ck_assert_msg(strstr(f.out, "second") == NULL, "output after the gate: %s", f.out);
	ck_assert_int_eq(f.terminal, 0);
	kit_frames_free(&f);
	sv_touch(gate);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_str_eq(f.out, "first\nsecond\n");
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	kit_frames_free(&f);
	kit_resp_free(&r);
	unlink(gate);
	free(gate);
	free(body);
}
END_TEST

static const struct {
	const char *script;
	int exit_code; /* -1: killed by signal */
	const char *signal;
} exits[] = {
    {"exit 0", 0, NULL},           {"exit 1", 1, NULL},           {"exit 255", 255, NULL},
    {"kill -TERM $$", -1, "TERM"}, {"kill -KILL $$", -1, "KILL"}, {"kill -SEGV $$", -1, "SEGV"},
};

START_TEST(exit_codes_and_signals_are_reported)
{
	struct kit_resp r;
	struct kit_frames f;
	json_t *last;
	char want[64], *v;

	run_sh(&r, &f, exits[_i].script, NULL, NULL);
	last = sv_last(&f);
	if (exits[_i].exit_code >= 0) {
		ck_assert_int_eq(sv_int(last, "exit_code"), exits[_i].exit_code);
		ck_assert_msg(json_is_null(json_object_get(last, "signal")), "%s", r.body);
		snprintf(want, sizeof(want), "exited %d <null>", exits[_i].exit_code);
	} else {
		ck_assert_msg(json_is_null(json_object_get(last, "exit_code")), "%s", r.body);
		ck_assert_msg(sv_str(last, "signal") &&
		                  strcmp(sv_str(last, "signal"), exits[_i].signal) == 0,
		              "signal, want %s: %s", exits[_i].signal, r.body);
		snprintf(want, sizeof(want), "signaled <null> %s", exits[_i].signal);
	}
	v = sv_row(W.db, r.rid,
	           "status || ' ' || coalesce(exit_code::text, '<null>') || ' ' || "
	           "coalesce(exit_signal, '<null>')");
	ck_assert_str_eq(v, want);
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(timeout_kills_the_remote_command)
{
	char *pidf = kit_tmp_path("timeout.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 2));
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_conn s;
	struct kit_frames f;
	struct kit_resp r;
	pid_t pids[2];
	json_t *last;
	char *v;

	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	sv_wait_sleeper(&s, pidf, pids);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(kit_frame(&f, 0), "timeout_s"), 2);
	last = sv_last(&f);
	ck_assert_msg(sv_str(last, "error.code") &&
	                  strcmp(sv_str(last, "error.code"), "exec_timeout") == 0,
	              "last frame: %s", r.body);
	ck_assert_msg(sv_str(last, "exec_id") &&
	                  strcmp(sv_str(last, "exec_id"), sv_str(kit_frame(&f, 0), "exec_id")) == 0,
	              "error frame exec_id: %s", r.body);
	ck_assert_int_eq(sv_int(last, "stdout_bytes"), 6);
	ck_assert_int_ge(sv_int(last, "duration_ms"), 0);
	v = sv_row(W.db, r.rid,
	           "status || ' ' || coalesce(exit_code::text, '<null>') || ' ' || timeout_s");
	ck_assert_str_eq(v, "timeout <null> 2");
	free(v);
	sv_pid_gone(pids[0], "the timed-out command");
	sv_pid_gone(pids[1], "the timed-out command's child");
	kit_frames_free(&f);
	kit_resp_free(&r);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

START_TEST(timeout_is_504_when_buffered)
{
	char *pidf = kit_tmp_path("timeout504.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	struct kit_resp r;
	pid_t pids[2];
	json_t *o;
	char *v;

	exec_argv(&r, "ws-a1", W.tok_org, argv, json_pack("{s:i}", "timeout_s", 1),
	          "application/json");
	sv_error(W.db, &r, 504, "exec_timeout", "timeout", NULL);
	o = sv_json(&r);
	v = sv_row(W.db, r.rid, "exec_id");
	ck_assert_msg(sv_str(o, "exec_id") && strcmp(sv_str(o, "exec_id"), v) == 0,
	              "exec_id in a buffered 504: %s", r.body);
	free(v);
	json_decref(o);
	sv_read_pids(pidf, pids);
	sv_pid_gone(pids[0], "the timed-out command");
	sv_pid_gone(pids[1], "the timed-out command's child");
	kit_resp_free(&r);
	unlink(pidf);
	free(pidf);
}
END_TEST

START_TEST(timeout_is_defaulted_and_clamped)
{
	static const struct {
		json_int_t given; /* -1: not given */
		int want;
	} t[] = {{-1, 30}, {0, 30}, {7, 7}, {120, 120}, {100000, 120}};
	struct kit_resp r;
	struct kit_frames f;
	char want[16], *v;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		exec_argv(&r, "ws-a1", W.tok_org, true_argv,
		          t[i].given >= 0 ? json_pack("{s:I}", "timeout_s", t[i].given) : NULL,
		          NULL);
		sv_stream(&r, &f);
		ck_assert_msg(sv_int(kit_frame(&f, 0), "timeout_s") == t[i].want,
		              "timeout_s %lld: first frame %s", (long long)t[i].given, r.body);
		v = sv_row(W.db, r.rid, "timeout_s");
		snprintf(want, sizeof(want), "%d", t[i].want);
		ck_assert_str_eq(v, want);
		free(v);
		kit_frames_free(&f);
		kit_resp_free(&r);
	}
}
END_TEST

static void fill_random(char *p, size_t n, unsigned long long seed)
{
	unsigned long long x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)(x >> 29);
	}
}

START_TEST(binary_output_is_base64_and_exact)
{
	enum { N = 200000 };
	char *data = malloc(N), *path = kit_tmp_path("binary");
	const char *argv[] = {"sh", "-c", "cat \"$0\"; printf '\\377\\000\\001' >&2", path, NULL};
	struct kit_resp r;
	struct kit_frames f;
	FILE *fp;
	char *v;

	fill_random(data, N, 42);
	fp = fopen(path, "we");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fwrite(data, 1, N, fp), N);
	fclose(fp);
	chmod(path, 0644);
	exec_argv(&r, "ws-a1", W.tok_org, argv, NULL, NULL);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_int_gt(f.b64, 0);
	ck_assert_msg(f.out_len == N && memcmp(f.out, data, N) == 0,
	              "stdout: %zu bytes, not the file", f.out_len);
	ck_assert_msg(f.err_len == 3 && memcmp(f.err, "\377\000\001", 3) == 0, "stderr: %zu bytes",
	              f.err_len);
	ck_assert_int_eq(sv_int(sv_last(&f), "stdout_bytes"), N);
	ck_assert_int_eq(sv_int(sv_last(&f), "stderr_bytes"), 3);
	v = sv_row(W.db, r.rid, "stdout_bytes || ' ' || stderr_bytes");
	ck_assert_str_eq(v, "200000 3");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	unlink(path);
	free(path);
	free(data);
}
END_TEST

/* Output full of NULs (valid UTF-8, but 6 bytes each escaped) streams as base64, chunk by
 * chunk: the body is about 4/3 of the output, not 6 times it, and decodes exactly; plain
 * text around it still comes as text. */
START_TEST(nul_output_streams_as_base64_not_escaped)
{
	enum { N = 300000 };
	const char *argv[] = {"sh", "-c", "echo before; head -c 300000 /dev/zero; echo; echo after",
	                      NULL};
	struct kit_resp r;
	struct kit_frames f;
	char *want = calloc(1, N + 20);

	exec_argv(&r, "ws-a1", W.tok_org, argv, NULL, NULL);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	memcpy(want, "before\n", 7);
	memcpy(want + 7 + N, "\nafter\n", 7);
	ck_assert_msg(f.out_len == N + 14 && memcmp(f.out, want, N + 14) == 0,
	              "stdout: %zu bytes, not the output", f.out_len);
	ck_assert_int_gt(f.b64, 0);
	ck_assert_msg(r.body_len < N * 3 / 2, "%zu bytes on the wire for %d NULs", r.body_len, N);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(want);
}
END_TEST

/* Responses of a few hundred KiB, one after another: each arrives whole, ends with its last
 * frame and the client sees the chunked body end (no cut, no stall). */
START_TEST(every_streamed_response_arrives_whole)
{
	enum { N = 150000, REPS = 20 };
	char *data = malloc(N), *path = kit_tmp_path("whole");
	const char *argv[] = {"sh", "-c", "cat \"$0\"; echo end >&2", path, NULL};
	char *body = sv_body(argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body, .max_time_s = 45};
	struct kit_resp r;
	struct kit_frames f;
	FILE *fp;

	fill_random(data, N, 7);
	fp = fopen(path, "we");
	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(fwrite(data, 1, N, fp), N);
	fclose(fp);
	chmod(path, 0644);
	for (int i = 0; i < REPS; i++) {
		sv_http(B.port, &q, &r);
		ck_assert_msg(r.complete, "response %d: not whole after %zu body bytes: %s", i,
		              r.body_len, r.error);
		sv_stream(&r, &f);
		ck_assert_msg(f.out_len == N && memcmp(f.out, data, N) == 0, "response %d: stdout",
		              i);
		ck_assert_str_eq(f.err, "end\n");
		kit_frames_free(&f);
		kit_resp_free(&r);
	}
	unlink(path);
	free(path);
	free(body);
	free(data);
}
END_TEST

/* A client that lags so far behind that the command has ended, and the broker has queued
 * the whole response, before it reads anything: it still gets all of it. (Its receive
 * buffer is small, so the broker writes the response in many small pieces.) */
START_TEST(stream_is_complete_for_a_client_that_lags)
{
	const char *argv[] = {"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' y; exit 3", NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 60)), rid[80], *st;
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body, .rcvbuf = 4096};
	long long end = kit_now_ms() + KIT_WAIT_MS;
	struct kit_conn s;
	struct kit_resp r;
	struct kit_frames f;

	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	snprintf(rid, sizeof(rid), "%s", s.r.rid);
	while (sv_rows(W.db, rid) == 0) {
		ck_assert_msg(kit_now_ms() < end, "no audit row for %s", rid);
		kit_sleep_ms(20);
	}
	st = sv_row_final(W.db, rid);
	ck_assert_str_eq(st, "exited");
	free(st);
	kit_stream_finish(&s, &r);
	ck_assert_msg(r.complete, "the response stopped after %zu body bytes (status %d)",
	              r.body_len, r.status);
	sv_stream(&r, &f);
	ck_assert_int_eq(f.out_len, 200000);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 3);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(body);
}
END_TEST

/* UTF-8 sequences written in pieces, with pauses so that the broker reads them apart: text
 * frames only, and the exact text. */
START_TEST(split_utf8_is_carried_over)
{
	struct kit_resp r;
	struct kit_frames f;

	run_sh(
	    &r, &f,
	    "printf 'a\\342'; sleep 0.3; printf '\\202\\254'; sleep 0.3; printf '\\360\\237\\230'; "
	    "sleep 0.3; printf '\\200\\303'; sleep 0.3; printf '\\251\\n'; "
	    "printf '\\303' >&2; sleep 0.3; printf '\\251' >&2",
	    NULL, NULL);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_msg(f.b64 == 0, "%d base64 frame(s): %s", f.b64, r.body);
	ck_assert_str_eq(f.out, "a\342\202\254\360\237\230\200\303\251\n");
	ck_assert_str_eq(f.err, "\303\251");
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(stdin_reaches_the_command)
{
	const char *cat[] = {"cat", NULL};
	const char *wc[] = {"sh", "-c", "wc -c | tr -d ' '", NULL};
	unsigned char bin[256];
	char *b64, *big, *v;
	struct kit_resp r;
	struct kit_frames f;

	/* text */
	exec_argv(&r, "ws-a1", W.tok_org, cat, json_pack("{s:s}", "stdin", "hello\nw\303\266rld\n"),
	          NULL);
	sv_stream(&r, &f);
	ck_assert_str_eq(f.out, "hello\nw\303\266rld\n");
	v = sv_row(W.db, r.rid, "stdin_bytes");
	ck_assert_str_eq(v, "13");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* every byte value, as base64 */
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)i;
	b64 = kit_b64_encode(bin, sizeof(bin));
	exec_argv(&r, "ws-a1", W.tok_org, cat, json_pack("{s:s}", "stdin_base64", b64), NULL);
	sv_stream(&r, &f);
	ck_assert_msg(f.out_len == 256 && memcmp(f.out, bin, 256) == 0, "%zu bytes back",
	              f.out_len);
	v = sv_row(W.db, r.rid, "stdin_bytes");
	ck_assert_str_eq(v, "256");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(b64);

	/* none: the command sees EOF at once */
	exec_argv(&r, "ws-a1", W.tok_org, cat, json_pack("{s:i}", "timeout_s", 30), NULL);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_str_eq(f.out, "");
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* larger than a window */
	big = malloc(500001);
	memset(big, 'z', 500000);
	big[500000] = '\0';
	exec_argv(&r, "ws-a1", W.tok_org, wc, json_pack("{s:s}", "stdin", big), NULL);
	sv_stream(&r, &f);
	ck_assert_str_eq(f.out, "500000\n");
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(big);
}
END_TEST

/* argv and env far past what one SSH exec request carries (libssh2 1.10 sends at most
 * 32 KiB): the command goes ahead of stdin, arrives byte for byte, and the program's own
 * stdin follows untouched. */
START_TEST(large_argv_and_env_arrive_byte_exact)
{
	const size_t big = 100 * 1024;
	char *arg = malloc(big + 1), *val = malloc(big + 1), *want;
	const char *argv[] = {"sh", "-c", "printf '%s|%s|' \"$1\" \"$BIGVAR\" && cat",
	                      "sh", arg,  NULL};
	struct kit_resp r;
	struct kit_frames f;

	for (size_t i = 0; i < big; i++) {
		arg[i] = "ab'\"$`\\ \n;|*-"[i % 13];
		val[i] = "\n'x$(id)"[i % 8];
	}
	arg[big] = val[big] = '\0';
	exec_argv(&r, "ws-a1", W.tok_org, argv,
	          json_pack("{s:{s:s},s:s}", "env", "BIGVAR", val, "stdin", "then stdin\n"), NULL);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	want = malloc(2 * big + 64);
	memcpy(want, arg, big);
	want[big] = '|';
	memcpy(want + big + 1, val, big);
	memcpy(want + 2 * big + 1, "|then stdin\n", 12);
	ck_assert_msg(f.out_len == 2 * big + 13 && memcmp(f.out, want, f.out_len) == 0,
	              "%zu bytes back, want %zu: %.60s; stderr %.200s", f.out_len, 2 * big + 13,
	              f.out, f.err);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(want);
	free(arg);
	free(val);
}
END_TEST

START_TEST(env_and_cwd_reach_the_command)
{
	const char *argv[] = {"sh", "-c", "printf '%s|%s|%s' \"$FOO\" \"$BAR_2\" \"$(pwd)\"", NULL};
	struct kit_resp r;
	struct kit_frames f;
	char *v;

	exec_argv(&r, "ws-a1", W.tok_org, argv,
	          json_pack("{s:{s:s,s:s},s:s}", "env", "FOO", "a b'c", "BAR_2", "x\ny$HOME;`id`",
	                    "cwd", "/tmp"),
	          NULL);
	sv_stream(&r, &f);
	ck_assert_str_eq(f.out, "a b'c|x\ny$HOME;`id`|/tmp");
	v = sv_row(
	    W.db, r.rid,
	    "(env_keys @> ARRAY['FOO','BAR_2']) || ' ' || cardinality(env_keys) || ' ' || cwd");
	ck_assert_str_eq(v, "true 2 /tmp");
	free(v);
	/* names, never values */
	v = sv_row(W.db, r.rid, "position('a b''c' in row_to_json(exec_audit)::text)");
	ck_assert_str_eq(v, "0");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(hostile_argv_arrives_unchanged)
{
	char *marker = kit_tmp_path("pwned");
	char subst[128], back[128];
	const char *args[] = {"a'b",      "\"q\"",    subst,       back,      "; rm -rf /tmp/x",
	                      "a\nb",     "*",        "?",         "~",       "$HOME",
	                      "\\",       "--",       "-n",        " lead",   "trail ",
	                      "",         "\303\251", "tab\there", "!x",      "{a,b}",
	                      ">out",     "|cat",     "&&",        "'\"'\"'", "\r\n",
	                      "$((1+1))", NULL};
	const char *argv[40] = {"printf", "%s\n"};
	char want[4096] = "";
	struct kit_resp r;
	struct kit_frames f;
	json_t *sent, *got;
	json_error_t je;
	char *v;
	int n = 2;

	snprintf(subst, sizeof(subst), "$(touch %s)", marker);
	snprintf(back, sizeof(back), "`touch %s`", marker);
	for (int i = 0; args[i] != NULL; i++) {
		argv[n++] = args[i];
		strcat(want, args[i]);
		strcat(want, "\n");
	}
	argv[n] = NULL;
	exec_argv(&r, "ws-a1", W.tok_org, argv, NULL, NULL);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_msg(strcmp(f.out, want) == 0, "got:\n%s\nwant:\n%s", f.out, want);
	ck_assert_msg(!kit_file_exists(marker), "a substitution in argv ran");
	/* and the audit row has exactly the argv */
	sent = json_array();
	for (int i = 0; argv[i] != NULL; i++)
		json_array_append_new(sent, json_string(argv[i]));
	v = sv_row(W.db, r.rid, "array_to_json(argv)::text");
	got = json_loads(v, 0, &je);
	ck_assert_msg(got != NULL && json_equal(got, sent), "audit argv: %s", v);
	json_decref(got);
	json_decref(sent);
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(marker);
}
END_TEST

START_TEST(buffered_mode_returns_one_document)
{
	const char *text[] = {"sh", "-c", "echo out; echo err >&2; exit 5", NULL};
	const char *binary[] = {"sh", "-c", "printf '\\377'; echo ok >&2", NULL};
	const char *sig[] = {"sh", "-c", "kill -TERM $$", NULL};
	struct kit_resp r;
	char hv[100], *v, *raw;
	size_t n;
	json_t *o;

	exec_argv(&r, "ws-a1", W.tok_org, text, NULL, "application/json");
	ck_assert_msg(r.status == 200, "%d: %s", r.status, r.body);
	ck_assert_msg(kit_header(&r, "Content-Type", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "application/json", 16) == 0,
	              "%s", r.head);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "workspace_id"), "ws-a1");
	ck_assert_int_eq(sv_int(o, "exit_code"), 5);
	ck_assert_msg(json_is_null(json_object_get(o, "signal")), "%s", r.body);
	ck_assert_str_eq(sv_str(o, "stdout"), "out\n");
	ck_assert_str_eq(sv_str(o, "stderr"), "err\n");
	ck_assert_str_eq(sv_str(o, "encoding"), "utf-8");
	ck_assert_msg(json_is_false(json_object_get(o, "stdout_truncated")) &&
	                  json_is_false(json_object_get(o, "stderr_truncated")) &&
	                  json_is_false(json_object_get(o, "truncated")),
	              "%s", r.body);
	ck_assert_int_ge(sv_int(o, "duration_ms"), 0);
	ck_assert_msg(kit_header(&r, "X-Exec-Id", hv, sizeof(hv)) && sv_str(o, "exec_id") &&
	                  strcmp(hv, sv_str(o, "exec_id")) == 0,
	              "X-Exec-Id: %s", r.head);
	v = sv_row(W.db, r.rid, "status || ' ' || exit_code || ' ' || exec_id");
	snprintf(hv, sizeof(hv), "exited 5 %s", sv_str(o, "exec_id"));
	ck_assert_str_eq(v, hv);
	free(v);
	json_decref(o);
	kit_resp_free(&r);

	exec_argv(&r, "ws-a1", W.tok_org, binary, NULL, "application/json");
	ck_assert_int_eq(r.status, 200);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "encoding"), "base64");
	raw = kit_b64_decode(sv_str(o, "stdout") ? sv_str(o, "stdout") : "?", &n);
	ck_assert_msg(raw && n == 1 && raw[0] == '\377', "stdout: %s", r.body);
	free(raw);
	raw = kit_b64_decode(sv_str(o, "stderr") ? sv_str(o, "stderr") : "?", &n);
	ck_assert_msg(raw && n == 3 && memcmp(raw, "ok\n", 3) == 0, "stderr: %s", r.body);
	free(raw);
	json_decref(o);
	kit_resp_free(&r);

	exec_argv(&r, "ws-a1", W.tok_org, sig, NULL, "application/json");
	ck_assert_int_eq(r.status, 200);
	o = sv_json(&r);
	ck_assert_msg(json_is_null(json_object_get(o, "exit_code")) && sv_str(o, "signal") &&
	                  strcmp(sv_str(o, "signal"), "TERM") == 0,
	              "%s", r.body);
	json_decref(o);
	kit_resp_free(&r);
}
END_TEST

START_TEST(client_disconnect_cancels_and_kills)
{
	char *pidf = kit_tmp_path("disconnect.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100));
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_conn s;
	char rid[80], *st;
	pid_t pids[2];

	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	snprintf(rid, sizeof(rid), "%s", s.r.rid);
	sv_wait_sleeper(&s, pidf, pids);
	ck_assert(kit_pid_alive(pids[0]) && kit_pid_alive(pids[1]));
	kit_stream_abort(&s);
	st = sv_row_final(W.db, rid);
	ck_assert_str_eq(st, "cancelled");
	free(st);
	sv_pid_gone(pids[0], "the command of a client that went away");
	sv_pid_gone(pids[1], "its child");
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

static const struct {
	const char *ws, *code;
} ssh_failures[] = {
    {"ws-badkey", "host_key_mismatch"},
    {"ws-closed", "ssh_connect_failed"},
    {"ws-badauth", "ssh_auth_failed"},
};

/* The status line waits for the command to start, so SSH failures get their own status,
 * streamed or not, and a failed_to_start row; the command never ran. */
START_TEST(ssh_failures_are_502_before_any_output)
{
	char *marker = kit_tmp_path("ssh502");
	const char *argv[] = {"touch", marker, NULL};
	struct kit_resp r;

	for (int buffered = 0; buffered < 2; buffered++) {
		exec_argv(&r, ssh_failures[_i].ws, W.tok_org, argv,
		          json_pack("{s:i}", "timeout_s", 20),
		          buffered ? "application/json" : NULL);
		sv_error(W.db, &r, 502, ssh_failures[_i].code, "failed_to_start", "*");
		kit_resp_free(&r);
	}
	ck_assert_msg(!kit_file_exists(marker), "the command ran");
	free(marker);
}
END_TEST

/* The workspace's sshd drops every connection while a command runs. */
START_TEST(broken_ssh_mid_run_is_a_transport_error)
{
	char *pidf = kit_tmp_path("cut.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 60));
	struct kit_req q = {.ws = "ws-cut", .token = W.tok_org, .body = body};
	struct kit_conn s;
	struct kit_frames f;
	struct kit_resp r;
	pid_t pids[2];
	json_t *o;
	char *v;

	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	sv_wait_sleeper(&s, pidf, pids);
	ck_assert_int_eq(th_sshd_cut_sessions(&W.cut), 0);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_msg(sv_str(sv_last(&f), "error.code") &&
	                  strcmp(sv_str(sv_last(&f), "error.code"), "transport_error") == 0,
	              "last frame: %s", r.body);
	v = sv_row(W.db, r.rid, "status");
	ck_assert_str_eq(v, "transport_error");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	kill(pids[0], SIGKILL);
	kill(pids[1], SIGKILL);

	/* buffered: 502 with the exec id */
	unlink(pidf);
	q.accept = "application/json";
	ck_assert_int_eq(kit_stream_open(&s, B.port, &q), 0);
	sv_read_pids(pidf, pids);
	ck_assert_int_eq(th_sshd_cut_sessions(&W.cut), 0);
	kit_stream_finish(&s, &r);
	sv_error(W.db, &r, 502, "transport_error", "transport_error", NULL);
	o = sv_json(&r);
	v = sv_row(W.db, r.rid, "exec_id");
	ck_assert_msg(sv_str(o, "exec_id") && strcmp(sv_str(o, "exec_id"), v) == 0,
	              "exec_id in a buffered 502: %s", r.body);
	free(v);
	json_decref(o);
	kit_resp_free(&r);
	kill(pids[0], SIGKILL);
	kill(pids[1], SIGKILL);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

START_TEST(request_id_is_honoured_returned_and_logged)
{
	char rid[64], hv[200], *line, *v;
	struct kit_resp r;
	struct kit_frames f;
	char *body = sv_body(true_argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body, .rid = rid};

	snprintf(rid, sizeof(rid), "Req.%d:a-b_", (int)getpid());
	rid[strlen(rid) - 1] = '9'; /* [A-Za-z0-9._:-] only */
	sv_http(B.port, &q, &r);
	sv_stream(&r, &f);
	ck_assert_msg(kit_header(&r, "X-Request-Id", hv, sizeof(hv)) && strcmp(hv, rid) == 0,
	              "X-Request-Id: %s", r.head);
	v = sv_row(W.db, rid, "request_id");
	ck_assert_str_eq(v, rid);
	free(v);
	line = sv_log_request(B.log, rid);
	ck_assert_msg(strstr(line, "status=200") && strstr(line, "method=POST") &&
	                  strstr(line, "path=/v1/workspaces/ws-a1/exec") &&
	                  strstr(line, sv_str(kit_frame(&f, 0), "exec_id")) &&
	                  strstr(line, "duration_ms="),
	              "request log line: %s", line);
	free(line);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(body);
}
END_TEST

START_TEST(unusable_request_id_is_replaced)
{
	char long_id[140], hv[200], *v;
	const char *ids[] = {"has space", long_id, "semi;colon", ""};
	char *body = sv_body(true_argv, NULL);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_resp r;
	struct kit_frames f;

	memset(long_id, 'a', 129);
	long_id[129] = '\0';
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		q.rid = ids[i];
		sv_http(B.port, &q, &r);
		sv_stream(&r, &f);
		ck_assert_msg(kit_header(&r, "X-Request-Id", hv, sizeof(hv)) != NULL,
		              "no X-Request-Id");
		ck_assert_msg(strcmp(hv, ids[i]) != 0 && strlen(hv) >= 1 && strlen(hv) <= 128 &&
		                  strspn(hv, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		                             "0123456789._:-") == strlen(hv),
		              "X-Request-Id for \"%s\": \"%s\"", ids[i], hv);
		v = sv_row(W.db, hv, "exec_id");
		ck_assert_str_eq(v, sv_str(kit_frame(&f, 0), "exec_id"));
		free(v);
		kit_frames_free(&f);
		kit_resp_free(&r);
	}
	free(body);
}
END_TEST

/* Output, stdin and env values of a command reach the client and nothing else: not the
 * database (a full pg_dump), not the log. Nor do tokens. */
START_TEST(secrets_reach_neither_database_nor_log)
{
	/* The secrets are assembled by the command: argv (which is audited) never holds them. */
	const char *argv[] = {
	    "sh", "-c",
	    "printf 'out-%s-%s\\n' s3cr3t 7781; printf 'err-%s-%s' s3cr3t 7782 >&2; "
	    "printf '%s' \"$EBVAR\"; cat",
	    NULL};
	const char *secrets[] = {"out-s3cr3t-7781", "err-s3cr3t-7782", "env-s3cr3t-7783",
	                         "in-s3cr3t-7784"};
	const char *toks[] = {W.tok_ws,    W.tok_org,     W.tok_other,
	                      W.tok_admin, W.tok_expired, W.tok_revoked};
	const char *pg_dump_argv[] = {"pg_dump", "--inserts", W.db, NULL};
	const char *bindir = th_pg_bindir();
	char pg_dump[300], *dump, *dump_err, *log;
	struct kit_resp r;
	struct kit_frames f;
	int status;

	for (int buffered = 0; buffered < 2; buffered++) {
		exec_argv(&r, "ws-a1", W.tok_org, argv,
		          json_pack("{s:{s:s},s:s}", "env", "EBVAR", "env-s3cr3t-7783", "stdin",
		                    "in-s3cr3t-7784"),
		          buffered ? "application/json" : NULL);
		ck_assert_int_eq(r.status, 200);
		for (size_t i = 0; i < 4; i++) /* the command did print them */
			ck_assert_msg(strstr(r.body, secrets[i]) != NULL, "%s not in %s",
			              secrets[i], r.body);
		if (!buffered) {
			sv_stream(&r, &f);
			kit_frames_free(&f);
		}
		kit_resp_free(&r);
	}
	ck_assert_ptr_nonnull(bindir);
	snprintf(pg_dump, sizeof(pg_dump), "%s/pg_dump", bindir);
	pg_dump_argv[0] = pg_dump;
	ck_assert_int_eq(kit_run(pg_dump_argv, NULL, NULL, &dump, &dump_err, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pg_dump: %s", dump_err);
	ck_assert_ptr_nonnull(strstr(dump, "INSERT INTO public.exec_audit")); /* it dumped rows */
	ck_assert_ptr_nonnull(strstr(dump, "7782 >&2")); /* and this exec's argv */
	log = kit_file_read(B.log, NULL);
	ck_assert_ptr_nonnull(log);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_msg(strstr(dump, secrets[i]) == NULL, "%s is in pg_dump", secrets[i]);
		ck_assert_msg(strstr(log, secrets[i]) == NULL, "%s is in the broker's log",
		              secrets[i]);
	}
	for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
		ck_assert_msg(strstr(log, toks[i] + 12) == NULL,
		              "a token's secret part is in the log");
		ck_assert_msg(strstr(dump, toks[i] + 12) == NULL,
		              "a token's secret part is in pg_dump");
	}
	free(log);
	free(dump);
	free(dump_err);
}
END_TEST

/* The 'running' row must be committed before the command may start: when the insert
 * fails (here a trigger refuses it, 0.3 s late, while the channel the broker opens
 * meanwhile on the session this token used before is ready), 503 audit_unavailable and
 * the command never runs. */
START_TEST(failed_audit_insert_runs_nothing)
{
	char *marker = kit_tmp_path("noaudit");
	const char *argv[] = {"touch", marker, NULL};
	const char *warm[] = {"true", NULL};
	const char *fails = "exec_broker_audit_write_failures_total";
	char rid[64], *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 10)), *before, *after;
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body, .rid = rid};
	struct kit_resp r;
	struct kit_frames f;

	exec_argv(&r, "ws-a1", W.tok_org, warm, NULL, NULL); /* the session hint */
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	kit_frames_free(&f);
	kit_resp_free(&r);
	snprintf(rid, sizeof(rid), "refuse-insert-%d", (int)getpid());
	free(tu_query(W.db,
	              "CREATE OR REPLACE FUNCTION t_refuse_insert() RETURNS trigger "
	              "LANGUAGE plpgsql AS $$ BEGIN IF NEW.request_id LIKE 'refuse-insert-%' "
	              "THEN PERFORM pg_sleep(0.3); RAISE EXCEPTION 'refused by the test'; END IF; "
	              "RETURN NEW; END $$"));
	free(tu_query(W.db, "DROP TRIGGER IF EXISTS t_refuse_insert ON exec_audit"));
	free(tu_query(W.db, "CREATE TRIGGER t_refuse_insert BEFORE INSERT ON exec_audit "
	                    "FOR EACH ROW EXECUTE FUNCTION t_refuse_insert()"));
	before = sv_metrics(B.port);
	sv_http(B.port, &q, &r);
	ck_assert_msg(r.status == 503, "%d: %s", r.status, r.body);
	kit_sleep_ms(1000); /* a command started anyway would have touched the file by now */
	ck_assert_msg(!kit_file_exists(marker), "the command ran without its audit row");
	after = sv_metrics(B.port);
	ck_assert_msg(kit_metric(after, fails) >= kit_metric(before, fails) + 1, "%s: %g then %g",
	              fails, kit_metric(before, fails), kit_metric(after, fails));
	sv_error(W.db, &r, 503, "audit_unavailable", NULL, NULL);
	kit_resp_free(&r);
	free(before);
	free(after);
	free(body);
	free(marker);
}
END_TEST

START_TEST(audit_row_records_the_request)
{
	const char *argv[] = {"sh", "-c", "cat >/dev/null; exit 4", NULL};
	struct kit_resp r;
	struct kit_frames f;
	char want[512], *v;

	exec_argv(&r, "ws-a2", W.tok_org, argv,
	          json_pack("{s:i,s:s,s:{s:s},s:s}", "timeout_s", 9, "stdin", "12345", "env",
	                    "LANG", "C", "cwd", "/"),
	          NULL);
	sv_stream(&r, &f);
	v = sv_row(
	    W.db, r.rid,
	    "concat_ws(' ', exec_id, workspace_id, org_id, actor, actor_kind, "
	    "coalesce(break_glass_reason, '-'), array_to_string(argv, ','), cwd, "
	    "array_to_string(env_keys, ','), stdin_bytes, host(client_addr), timeout_s, status, "
	    "exit_code, coalesce(exit_signal, '-'), stdout_bytes, stderr_bytes, "
	    "stdout_truncated::text, stderr_truncated::text, broker_instance, "
	    "(finished_at >= started_at)::text)");
	snprintf(
	    want, sizeof(want),
	    "%s ws-a2 acme token:%.12s org - sh,-c,cat >/dev/null; exit 4 / LANG 5 127.0.0.1 9 "
	    "exited 4 - 0 0 false false " MAIN_INSTANCE " true",
	    sv_str(kit_frame(&f, 0), "exec_id"), W.tok_org);
	ck_assert_str_eq(v, want);
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

#define ADD_LOOP(s, fn, n) SV_ADD_LOOP(s, fn, n, 90)
#define ADD(s, fn)         ADD_LOOP(s, fn, 1)

int main(void)
{
	Suite *s = suite_create("serve");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, MAIN_INSTANCE,
	                     "log_level = debug\npool_kill_grace_s = 1\n") != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, health_ready_and_metrics_answer);
	ADD(s, metrics_count_execs_and_requests);
	ADD_LOOP(s, unknown_path_is_404_without_a_row,
	         sizeof(unknown_paths) / sizeof(unknown_paths[0]));
	ADD_LOOP(s, wrong_method_is_405_with_allow,
	         sizeof(wrong_methods) / sizeof(wrong_methods[0]));
	ADD_LOOP(s, unauthenticated_is_401_without_a_row, sizeof(unauth) / sizeof(unauth[0]));
	ADD(s, bearer_scheme_is_case_insensitive);
	ADD_LOOP(s, bad_body_is_400_naming_the_field_without_a_row,
	         sizeof(bad_bodies) / sizeof(bad_bodies[0]));
	ADD(s, too_many_or_too_long_arguments_are_400);
	ADD(s, large_argv_and_env_arrive_byte_exact);
	ADD(s, bad_break_glass_reason_is_400);
	ADD_LOOP(s, content_type_must_be_json, sizeof(ctypes) / sizeof(ctypes[0]));
	ADD(s, checks_run_in_the_contract_order);
	ADD(s, oversized_body_is_413_without_a_row);
	ADD_LOOP(s, tenancy_matrix, sizeof(tenancy) / sizeof(tenancy[0]));
	ADD(s, other_orgs_workspace_looks_missing);
	ADD(s, stream_frames_come_in_order);
	ADD(s, output_streams_before_the_command_exits);
	ADD_LOOP(s, exit_codes_and_signals_are_reported, sizeof(exits) / sizeof(exits[0]));
	ADD(s, timeout_kills_the_remote_command);
	ADD(s, timeout_is_504_when_buffered);
	ADD(s, timeout_is_defaulted_and_clamped);
	ADD(s, binary_output_is_base64_and_exact);
	ADD(s, nul_output_streams_as_base64_not_escaped);
	ADD(s, every_streamed_response_arrives_whole);
	ADD(s, stream_is_complete_for_a_client_that_lags);
	ADD(s, split_utf8_is_carried_over);
	ADD(s, stdin_reaches_the_command);
	ADD(s, env_and_cwd_reach_the_command);
	ADD(s, hostile_argv_arrives_unchanged);
	ADD(s, buffered_mode_returns_one_document);
	ADD(s, client_disconnect_cancels_and_kills);
	ADD_LOOP(s, ssh_failures_are_502_before_any_output,
	         sizeof(ssh_failures) / sizeof(ssh_failures[0]));
	ADD(s, broken_ssh_mid_run_is_a_transport_error);
	ADD(s, request_id_is_honoured_returned_and_logged);
	ADD(s, unusable_request_id_is_replaced);
	ADD(s, secrets_reach_neither_database_nor_log);
	ADD(s, failed_audit_insert_runs_nothing);
	ADD(s, audit_row_records_the_request);
	failed = tu_run_suite(s);
	/* The shared broker ends as it should after everything above. */
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
