/* tests/check_scopes_api.c: token scopes on every endpoint, through the real binary over
 * HTTP with a real PostgreSQL and sshd. For each endpoint, a token lacking the scope it needs
 * gets 403 missing_scope naming that scope (an exec's refusal leaves its denied row), and a
 * token holding it gets the endpoint's own answer; the auditor's token (an admin token with
 * audit:read alone) reads every org's rows without a break-glass reason and runs nothing;
 * tokens made before scopes existed keep their powers. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/detached.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

static struct kit_world W;
static struct kit_broker B;

/* Tokens of org acme, each lacking one scope (T_ALL has the three). */
enum { T_ALL, T_NO_EXEC, T_NO_BATCH, T_NO_AUDIT, T_AUDITOR, NTOK };
static const char *const tok_scopes[NTOK] = {"exec,batch,audit:read", "batch,audit:read",
                                             "exec,audit:read", "exec,batch", "audit:read"};
static char tok[NTOK][64];
static char exec_id[64];   /* a detached exec of ws-a1, running */
static char cancel_id[64]; /* another, for DELETE */
static char batch_id[64];

enum need { N_EXEC, N_BATCH, N_AUDIT };
static const char *const need_names[] = {"exec", "batch", "audit:read"};

/* One endpoint: its method, path (%s: an id) and body, the scope it needs, and the status a
 * token that holds the scope gets. */
static const struct endpoint {
	const char *method, *path, *body;
	enum need need;
	int ok_status;
} endpoints[] = {
    {"POST", "/v1/workspaces/ws-a1/exec", "{\"argv\":[\"true\"]}", N_EXEC, 200},
    {"POST", "/v1/workspaces/ws-a1/exec", "{\"argv\":[\"true\"],\"detach\":true}", N_EXEC, 202},
    {"GET", "/v1/workspaces/ws-a1/execs", NULL, N_EXEC, 200},
    {"GET", "/v1/execs/%s", NULL, N_EXEC, 200},
    {"GET", "/v1/execs/%s/output?follow=false", NULL, N_EXEC, 200},
    {"POST", "/v1/execs/%s/signal", "{\"signal\":\"CONT\"}", N_EXEC, 202},
    /* 202 the first time, 409 exec_finished after: either is the endpoint's answer */
    {"DELETE", "/v1/execs/%D", NULL, N_EXEC, 202},
    {"GET", "/v1/audit", NULL, N_AUDIT, 200},
    {"GET", "/v1/audit/%s", NULL, N_AUDIT, 200},
    {"POST", "/v1/batches", "{\"target\":{\"workspaces\":[\"ws-a1\"]},\"argv\":[\"true\"]}",
     N_BATCH, 200},
    {"GET", "/v1/batches", NULL, N_BATCH, 200},
    {"GET", "/v1/batches/%B", NULL, N_BATCH, 200},
};
#define NEP (sizeof(endpoints) / sizeof(endpoints[0]))

static int call(const struct endpoint *e, const char *token, struct kit_resp *r)
{
	char path[200];
	const char *p = strstr(e->path, "%");

	if (p == NULL)
		snprintf(path, sizeof(path), "%s", e->path);
	else
		snprintf(path, sizeof(path), "%.*s%s%s", (int)(p - e->path), e->path,
		         p[1] == 'B'   ? batch_id
		         : p[1] == 'D' ? cancel_id
		                       : exec_id,
		         p + 2);
	sv_http(
	    B.port,
	    &(struct kit_req){.method = e->method, .path = path, .token = token, .body = e->body},
	    r);
	return r->status;
}

/* Loop index: endpoint _i / 3, and which token lacks its scope or holds it. */
START_TEST(each_endpoint_needs_its_scope)
{
	const struct endpoint *e = &endpoints[_i];
	int lacking = e->need == N_EXEC ? T_NO_EXEC : e->need == N_BATCH ? T_NO_BATCH : T_NO_AUDIT;
	struct kit_resp r;
	json_t *o;
	char want[64];

	/* Lacking the scope: 403 missing_scope, naming it. */
	call(e, tok[lacking], &r);
	ck_assert_msg(r.status == 403, "%s %s without %s: %d %s", e->method, e->path,
	              need_names[e->need], r.status, r.body);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.code"), "missing_scope");
	snprintf(want, sizeof(want), "\"%s\" scope", need_names[e->need]);
	ck_assert_msg(strstr(sv_str(o, "error.message"), want) != NULL, "%s",
	              sv_str(o, "error.message"));
	json_decref(o);
	kit_resp_free(&r);
	/* Holding it (every other token of acme that has it): the endpoint's answer. */
	for (int t = T_ALL; t <= T_NO_AUDIT; t++) {
		if (t == lacking)
			continue;
		call(e, tok[t], &r);
		/* A batch is read back by the token that made it alone: to the others it is
		 * not_found, as any other token's batch is. */
		int expect = strstr(e->path, "%B") != NULL && t != T_ALL ? 404 : e->ok_status;

		if (strstr(e->path, "%D") != NULL && r.status == 409)
			expect = 409; /* cancelled by a token before */

		ck_assert_msg(r.status == expect, "%s %s with %s: %d %.300s", e->method, e->path,
		              tok_scopes[t], r.status, r.body);
		if (r.status == 202 && strcmp(e->path, "/v1/workspaces/ws-a1/exec") == 0) {
			o = sv_json(&r);
			kit_detached_remember(sv_str(o, "exec_id"));
			json_decref(o);
		}
		kit_resp_free(&r);
	}
}
END_TEST

START_TEST(a_refused_exec_leaves_its_denied_row)
{
	struct kit_resp r;

	sv_http(B.port,
	        &(struct kit_req){
	            .ws = "ws-a1", .token = tok[T_NO_EXEC], .body = "{\"argv\":[\"true\"]}"},
	        &r);
	sv_error(W.db, &r, 403, "missing_scope", "denied", "missing_scope");
	kit_resp_free(&r);
	/* Even on another org's workspace: the scope is the token's own, so the answer says
	 * nothing about the workspace. */
	sv_http(B.port,
	        &(struct kit_req){
	            .ws = "ws-b1", .token = tok[T_NO_EXEC], .body = "{\"argv\":[\"true\"]}"},
	        &r);
	sv_error(W.db, &r, 403, "missing_scope", "denied", "missing_scope");
	kit_resp_free(&r);
}
END_TEST

START_TEST(the_auditor_reads_everything_and_runs_nothing)
{
	struct kit_resp r;
	json_t *o, *e;
	size_t i;
	bool acme = false, globex = false;

	/* Some rows of both orgs exist (the earlier tests ran on acme; this one on globex). */
	sv_http(
	    B.port,
	    &(struct kit_req){.ws = "ws-b1", .token = W.tok_other, .body = "{\"argv\":[\"true\"]}"},
	    &r);
	ck_assert_int_eq(r.status, 200);
	kit_resp_free(&r);
	/* No reason needed to read. */
	sv_http(B.port,
	        &(struct kit_req){
	            .method = "GET", .path = "/v1/audit?limit=500", .token = tok[T_AUDITOR]},
	        &r);
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	o = sv_json(&r);
	json_array_foreach(json_object_get(o, "items"), i, e)
	{
		acme |= strcmp(sv_str(e, "org_id"), "acme") == 0;
		globex |= strcmp(sv_str(e, "org_id"), "globex") == 0;
	}
	ck_assert(acme && globex);
	json_decref(o);
	kit_resp_free(&r);
	/* Nothing runs, with a reason or without. */
	sv_http(B.port,
	        &(struct kit_req){.ws = "ws-b1",
	                          .token = tok[T_AUDITOR],
	                          .reason = "audit",
	                          .body = "{\"argv\":[\"true\"]}"},
	        &r);
	sv_error(W.db, &r, 403, "missing_scope", "denied", "missing_scope");
	kit_resp_free(&r);
	sv_http(B.port,
	        &(struct kit_req){.path = "/v1/batches",
	                          .token = tok[T_AUDITOR],
	                          .reason = "audit",
	                          .body = "{\"target\":{\"workspaces\":[\"ws-b1\"]},"
	                                  "\"argv\":[\"true\"]}"},
	        &r);
	ck_assert_int_eq(r.status, 403);
	kit_resp_free(&r);
}
END_TEST

START_TEST(tokens_keep_their_powers_and_list_their_scopes)
{
	const char *list[] = {"token", "list", "--format", "json", NULL};
	const char *bad[][8] = {
	    {"token", "create", "--workspace", "ws-a1", "--scope", "exec,batch", NULL},
	    {"token", "create", "--org", "acme", "--scope", "exec,root", NULL},
	    {"token", "create", "--org", "acme", "--scope", "", NULL},
	};
	char *out = NULL, *line;
	struct kit_resp r;
	int seen = 0;

	/* The world's tokens were made without --scope: workspace and org tokens run and read;
	 * the admin token may also fan out. */
	sv_http(
	    B.port,
	    &(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = "{\"argv\":[\"true\"]}"},
	    &r);
	ck_assert_int_eq(r.status, 200);
	kit_resp_free(&r);
	sv_http(B.port,
	        &(struct kit_req){.path = "/v1/batches",
	                          .token = W.tok_org,
	                          .body = "{\"target\":{\"workspaces\":[\"ws-a1\"]},"
	                                  "\"argv\":[\"true\"]}"},
	        &r);
	ck_assert_int_eq(r.status, 403);
	kit_resp_free(&r);
	sv_http(B.port,
	        &(struct kit_req){.method = "GET", .path = "/v1/batches", .token = W.tok_admin},
	        &r);
	ck_assert_int_eq(r.status, 200);
	kit_resp_free(&r);
	ck_assert_int_eq(kit_cli(W.db, list, &out, NULL), 0);
	for (line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		json_t *o = json_loads(line, 0, NULL);
		char *scopes = json_dumps(json_object_get(o, "scopes"), JSON_COMPACT);

		if (strcmp(sv_str(o, "kind"), "admin") == 0 &&
		    strcmp(sv_str(o, "name"), "oncall") == 0)
			seen += strcmp(scopes, "[\"exec\",\"batch\",\"audit:read\"]") == 0;
		if (strcmp(sv_str(o, "kind"), "workspace") == 0)
			seen += strcmp(scopes, "[\"exec\",\"audit:read\"]") == 0 ? 0 : 100;
		free(scopes);
		json_decref(o);
	}
	ck_assert_int_eq(seen, 1);
	free(out);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int status;

		ck_assert_int_ne(kit_cli(W.db, bad[i], &out, &status), 0);
		free(out);
	}
}
END_TEST

/* A detached `sleep 300` on ws-a1: its exec_id in id. 0, or -1. */
static int start_sleeper(char *id, size_t len)
{
	struct kit_resp r;
	json_t *o;
	int rc = -1;

	kit_http(B.port,
	         &(struct kit_req){.ws = "ws-a1",
	                           .token = tok[T_ALL],
	                           .body = "{\"argv\":[\"sleep\",\"300\"],\"detach\":true}"},
	         &r);
	o = json_loadb(r.body, r.body_len, 0, NULL);
	if (r.status == 202 && json_is_string(json_object_get(o, "exec_id"))) {
		snprintf(id, len, "%s", json_string_value(json_object_get(o, "exec_id")));
		kit_detached_remember(id);
		rc = 0;
	}
	json_decref(o);
	kit_resp_free(&r);
	return rc;
}

int main(void)
{
	Suite *s = suite_create("scopes_api");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0)
		goto fail;
	for (int t = 0; t < NTOK; t++) {
		const char *args[] = {"token",
		                      "create",
		                      t == T_AUDITOR ? "--admin" : "--org",
		                      t == T_AUDITOR ? "--scope" : "acme",
		                      t == T_AUDITOR ? tok_scopes[t] : "--scope",
		                      t == T_AUDITOR ? NULL : tok_scopes[t],
		                      NULL};
		if (kit_cli_token(W.db, args, tok[t], sizeof(tok[t])) != 0)
			goto fail;
	}
	if (kit_broker_start(&B, W.db, "eb-scopes", NULL) != 0)
		goto fail;
	/* What the read endpoints read: a running detached exec, and a batch. */
	{
		struct kit_resp r;
		json_t *o;

		if (start_sleeper(exec_id, sizeof(exec_id)) != 0 ||
		    start_sleeper(cancel_id, sizeof(cancel_id)) != 0)
			goto fail;
		kit_http(B.port,
		         &(struct kit_req){.path = "/v1/batches",
		                           .token = tok[T_ALL],
		                           .accept = "application/json",
		                           .body = "{\"target\":{\"workspaces\":[\"ws-a1\"]},"
		                                   "\"argv\":[\"true\"]}"},
		         &r);
		o = json_loadb(r.body, r.body_len, 0, NULL);
		if (r.status != 200 || o == NULL)
			goto fail;
		snprintf(batch_id, sizeof(batch_id), "%s",
		         json_string_value(json_object_get(o, "batch_id")));
		json_decref(o);
		kit_resp_free(&r);
	}
	SV_ADD_LOOP(s, each_endpoint_needs_its_scope, NEP, 60);
	SV_ADD_LOOP(s, a_refused_exec_leaves_its_denied_row, 1, 30);
	SV_ADD_LOOP(s, the_auditor_reads_everything_and_runs_nothing, 1, 30);
	SV_ADD_LOOP(s, tokens_keep_their_powers_and_list_their_scopes, 1, 60);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	kit_detached_end_all();
	th_teardown();
	return failed;
fail:
	kit_detached_end_all();
	th_teardown();
	return EXIT_FAILURE;
}
