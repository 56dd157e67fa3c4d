/* tests/check_batch_api.c: batches (POST /v1/batches) through the real binary over HTTP, with
 * a real PostgreSQL and real sshds: selection by labels (all must match, no match, another
 * org's workspaces never), per-target results mixing successes with refusals and
 * unreachable hosts, the error budget stopping new starts at the right count, concurrency
 * measured on the hosts, a client that goes away cancelling the batch, the buffered reply,
 * detached batches, reading batches back, the refusals of bad requests (nothing written),
 * one audit row per target plus the batch row, `audit verify` over them, and a batch of 200
 * workspaces on 4 sshds. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/detached.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define CONF "pool_kill_grace_s = 1\norg_max_concurrent_execs = 64\n"

static struct kit_world W;
static struct kit_broker B;
static char tok_fan[64];   /* org acme: exec, batch */
static char tok_fan_g[64]; /* org globex: exec, batch */

static void label(const char *ws, const char *key, const char *value)
{
	char sql[300];

	snprintf(
	    sql, sizeof(sql),
	    "INSERT INTO workspace_labels (workspace_id, key, value) VALUES ('%s', '%s', '%s') "
	    "ON CONFLICT (workspace_id, key) DO UPDATE SET value = EXCLUDED.value",
	    ws, key, value);
	free(sv_query(W.db, sql));
}

/* POST /v1/batches with body (taken over as text), the token and Accept. */
static void post(const char *token, char *body, const char *accept, struct kit_resp *r)
{
	sv_http(B.port,
	        &(struct kit_req){
	            .path = "/v1/batches", .token = token, .body = body, .accept = accept},
	        r);
	free(body);
}

/* A batch body: target (JSON text), the command, and more members (JSON text, no braces). */
static char *batch_body(const char *target, const char *const argv[], const char *more)
{
	json_t *o = json_object(), *a = json_array();
	char *s, *out;
	size_t n;

	for (size_t i = 0; argv[i] != NULL; i++)
		json_array_append_new(a, json_string(argv[i]));
	json_object_set_new(o, "argv", a);
	json_object_set_new(o, "target", json_loads(target, 0, NULL));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	n = strlen(s);
	if (more == NULL || more[0] == '\0')
		return s;
	out = malloc(n + strlen(more) + 2);
	memcpy(out, s, n - 1);
	sprintf(out + n - 1, ",%s}", more);
	free(s);
	return out;
}

/* The frames of a whole streamed batch, checked: 200, the first frame with the batch_id and
 * targets, exactly one last frame per target, and exactly one summary, last. Returns the
 * summary (owned by f). */
static json_t *stream_ok(const struct kit_resp *r, struct kit_frames *f)
{
	json_t *first, *summary;
	size_t n;

	ck_assert_msg(r->status == 200, "status %d: %.300s", r->status, r->body);
	ck_assert_msg(r->complete, "%s", r->error);
	kit_frames_init(f);
	kit_frames_parse(f, r->body, r->body_len);
	ck_assert_int_eq(f->bad, 0);
	n = kit_nframes(f);
	ck_assert_uint_ge(n, 2);
	first = kit_frame(f, 0);
	ck_assert_ptr_nonnull(sv_str(first, "batch_id"));
	ck_assert(json_is_array(json_object_get(first, "targets")));
	summary = kit_frame(f, n - 1);
	ck_assert_msg(json_is_array(json_object_get(summary, "results")), "last frame: %s",
	              json_dumps(summary, 0));
	ck_assert_str_eq(sv_str(summary, "batch_id"), sv_str(first, "batch_id"));
	/* Each target that started has exactly one last frame, tagged with its workspace. */
	for (size_t i = 0; i < json_array_size(json_object_get(first, "targets")); i++) {
		const char *ws =
		    json_string_value(json_array_get(json_object_get(first, "targets"), i));
		int last = 0;

		for (size_t k = 1; k + 1 < n; k++) {
			json_t *fr = kit_frame(f, k);
			const char *fws = sv_str(fr, "workspace_id");

			ck_assert_msg(fws != NULL, "a frame without workspace_id: %s",
			              json_dumps(fr, 0));
			if (strcmp(fws, ws) == 0 && (json_object_get(fr, "exit_code") != NULL ||
			                             json_object_get(fr, "error") != NULL))
				last++;
		}
		json_t *res = json_array_get(json_object_get(summary, "results"), i);
		ck_assert_str_eq(sv_str(res, "workspace_id"), ws);
		ck_assert_int_eq(last, strcmp(sv_str(res, "status"), "not_started") == 0 ? 0 : 1);
	}
	return summary;
}

/* The result of workspace ws in a summary. */
static json_t *result_of(json_t *summary, const char *ws)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(summary, "results"), i, e)
	{
		if (strcmp(sv_str(e, "workspace_id"), ws) == 0)
			return e;
	}
	ck_abort_msg("no result for %s", ws);
	return NULL;
}

/* stdout of one target, from its frames (text frames only). */
static char *target_out(const struct kit_frames *f, const char *ws)
{
	size_t cap = 1, len = 0;
	char *out = calloc(1, cap);

	for (size_t k = 0; k < kit_nframes(f); k++) {
		json_t *fr = kit_frame(f, k);
		const char *data = sv_str(fr, "data");

		if (data == NULL || sv_str(fr, "workspace_id") == NULL ||
		    strcmp(sv_str(fr, "workspace_id"), ws) != 0 ||
		    strcmp(sv_str(fr, "stream"), "stdout") != 0)
			continue;
		ck_assert_ptr_nonnull(sv_str(fr, "exec_id"));
		cap += strlen(data);
		out = realloc(out, cap);
		memcpy(out + len, data, strlen(data) + 1);
		len += strlen(data);
	}
	return out;
}

static long long count(const char *sql)
{
	return tu_query_int(W.db, sql);
}

START_TEST(labels_select_every_match_and_nothing_else)
{
	const char *argv[] = {"sh", "-c", "echo hello from $0", "x", NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s, *first;
	char sql[300], *out;

	label("ws-a1", "role", "web");
	label("ws-a1", "env", "prod");
	label("ws-a2", "role", "web");
	label("ws-a2", "env", "dev");
	label("ws-c0", "role", "web");
	label("ws-c0", "env", "prod");
	label("ws-b1", "role", "web"); /* globex: never selected for acme */
	label("ws-b1", "env", "prod");

	post(tok_fan,
	     batch_body("{\"org\":\"acme\",\"labels\":{\"role\":\"web\",\"env\":\"prod\"}}", argv,
	                NULL),
	     NULL, &r);
	s = stream_ok(&r, &f);
	first = kit_frame(&f, 0);
	ck_assert_uint_eq(json_array_size(json_object_get(first, "targets")), 2);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(first, "targets"), 0)),
	                 "ws-a1");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(first, "targets"), 1)),
	                 "ws-c0");
	ck_assert_str_eq(sv_str(s, "status"), "completed");
	ck_assert_int_eq(sv_int(s, "succeeded"), 2);
	ck_assert_int_eq(sv_int(s, "failed"), 0);
	out = target_out(&f, "ws-c0");
	ck_assert_str_eq(out, "hello from x\n");
	free(out);
	/* One row per target, naming the batch; the batch row final with its counts. */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE batch_id = '%s' AND status = 'exited' "
	         "AND exit_code = 0",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 2);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM batches WHERE batch_id = '%s' AND status = 'completed' AND "
	         "succeeded = 2 AND failed = 0 AND not_started = 0 AND targets = '{ws-a1,ws-c0}'",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 1);
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* One label: every acme workspace that has it. */
	post(tok_fan, batch_body("{\"org\":\"acme\",\"labels\":{\"role\":\"web\"}}", argv, NULL),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(kit_frame(&f, 0), "targets")), 3);
	ck_assert_int_eq(sv_int(s, "succeeded"), 3);
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* No match: an empty batch, completed, nothing run. */
	post(tok_fan, batch_body("{\"org\":\"acme\",\"labels\":{\"role\":\"db\"}}", argv, NULL),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(kit_frame(&f, 0), "targets")), 0);
	ck_assert_str_eq(sv_str(s, "status"), "completed");
	ck_assert_int_eq(sv_int(s, "succeeded"), 0);
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* Another org's token names acme: nothing of acme is within its reach. */
	post(tok_fan_g, batch_body("{\"org\":\"acme\",\"labels\":{\"role\":\"web\"}}", argv, NULL),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(kit_frame(&f, 0), "targets")), 0);
	kit_frames_free(&f);
	kit_resp_free(&r);
	/* Its own org: its own workspace only. */
	post(tok_fan_g,
	     batch_body("{\"org\":\"globex\",\"labels\":{\"role\":\"web\"}}", argv, NULL), NULL,
	     &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(kit_frame(&f, 0), "targets")), 1);
	ck_assert_str_eq(sv_str(json_array_get(json_object_get(s, "results"), 0), "workspace_id"),
	                 "ws-b1");
	/* Its targets need the batch scope, not exec (this token has batch alone). */
	ck_assert_int_eq(sv_int(s, "succeeded"), 1);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(per_target_results_mix_successes_and_failures)
{
	const char *argv[] = {"true", NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s;
	char sql[300];
	static const struct {
		const char *ws, *status, *code;
	} want[] = {
	    {"ws-a1", "succeeded", NULL},
	    {"ws-low", "failed", "forbidden_tier"},
	    {"ws-stopped", "failed", "workspace_not_running"},
	    {"ws-closed", "failed", "ssh_connect_failed"},
	    {"ws-badkey", "failed", "host_key_mismatch"},
	    {"ws-b1", "failed", "not_found"}, /* globex's: as a single exec would see it */
	    {"nope", "failed", "not_found"},
	};

	post(tok_fan,
	     batch_body("{\"workspaces\":[\"ws-a1\",\"ws-low\",\"ws-stopped\",\"ws-closed\","
	                "\"ws-badkey\",\"ws-b1\",\"nope\",\"ws-a1\"]}",
	                argv, "\"max_errors\":\"100%\",\"max_concurrency\":3"),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(kit_frame(&f, 0), "targets")), 7);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		json_t *e = result_of(s, want[i].ws);

		ck_assert_msg(strcmp(sv_str(e, "status"), want[i].status) == 0, "%s: %s",
		              want[i].ws, json_dumps(e, 0));
		if (want[i].code == NULL) {
			ck_assert(json_is_null(json_object_get(e, "error")));
			ck_assert_int_eq(sv_int(e, "exit_code"), 0);
		} else {
			ck_assert_msg(sv_str(e, "error.code") != NULL &&
			                  strcmp(sv_str(e, "error.code"), want[i].code) == 0,
			              "%s: %s", want[i].ws, json_dumps(e, 0));
		}
		/* Every target has its row, refusals included, as single execs have. */
		ck_assert_ptr_nonnull(sv_str(e, "exec_id"));
	}
	ck_assert_str_eq(sv_str(s, "status"), "partial_failure");
	ck_assert_int_eq(sv_int(s, "succeeded"), 1);
	ck_assert_int_eq(sv_int(s, "failed"), 6);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE batch_id = '%s'",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 7);
	/* globex's workspace's refusal is filed under acme, the prober's org. */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE batch_id = '%s' AND workspace_id = 'ws-b1'"
	         " AND org_id = 'acme' AND status = 'denied' AND error_code = 'not_found'",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 1);
	/* The audit log finds a batch's rows by its id, over the API and the CLI. */
	{
		char path[128], *out = NULL;
		const char *args[] = {"audit",    "--batch", sv_str(s, "batch_id"),
		                      "--format", "json",    NULL};
		struct kit_resp a;
		json_t *page, *it;
		size_t k;

		/* a row of acme outside the batch, which the filter must leave out */
		sv_http(B.port,
		        &(struct kit_req){
		            .ws = "ws-a1", .token = tok_fan, .body = "{\"argv\":[\"true\"]}"},
		        &a);
		ck_assert_int_eq(a.status, 200);
		kit_resp_free(&a);
		snprintf(path, sizeof(path), "/v1/audit?batch_id=%s", sv_str(s, "batch_id"));
		sv_http(B.port,
		        &(struct kit_req){.method = "GET", .path = path, .token = W.tok_org}, &a);
		ck_assert_msg(a.status == 200, "%d %s", a.status, a.body);
		page = sv_json(&a);
		ck_assert_uint_eq(json_array_size(json_object_get(page, "items")), 7);
		json_array_foreach(json_object_get(page, "items"), k, it)
		    ck_assert_str_eq(sv_str(it, "batch_id"), sv_str(s, "batch_id"));
		json_decref(page);
		kit_resp_free(&a);
		ck_assert_int_eq(kit_cli(W.db, args, &out, NULL), 0);
		ck_assert_int_eq(tu_lines(out), 7);
		free(out);
	}
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(the_error_budget_stops_new_starts)
{
	const char *argv[] = {"sh", "-c", "exit 3", NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s;
	char sql[300];

	post(tok_fan,
	     batch_body("{\"workspaces\":[\"ws-a1\",\"ws-a2\",\"ws-c0\",\"ws-c1\",\"ws-cut\"]}",
	                argv, "\"max_concurrency\":1,\"max_errors\":2"),
	     NULL, &r);
	s = stream_ok(&r, &f);
	/* Three failed (more than 2): no fourth started. */
	ck_assert_str_eq(sv_str(s, "status"), "stopped");
	ck_assert_int_eq(sv_int(s, "failed"), 3);
	ck_assert_int_eq(sv_int(s, "not_started"), 2);
	ck_assert_int_eq(sv_int(result_of(s, "ws-a1"), "exit_code"), 3);
	ck_assert_str_eq(sv_str(result_of(s, "ws-cut"), "status"), "not_started");
	ck_assert(json_is_null(json_object_get(result_of(s, "ws-cut"), "exec_id")));
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE batch_id = '%s'",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 3);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM batches WHERE batch_id = '%s' AND status = 'stopped'"
	         " AND failed = 3 AND not_started = 2",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 1);
	kit_frames_free(&f);
	kit_resp_free(&r);

	/* A percentage: 40% of 5 is 2 errors allowed, so the same. */
	post(tok_fan,
	     batch_body("{\"workspaces\":[\"ws-a1\",\"ws-a2\",\"ws-c0\",\"ws-c1\",\"ws-cut\"]}",
	                argv, "\"max_concurrency\":1,\"max_errors\":\"40%\""),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_int_eq(sv_int(s, "failed"), 3);
	ck_assert_int_eq(sv_int(s, "not_started"), 2);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

/* Each target appends "<start ns> <end ns>" to one file on the host; the most that ran at
 * once, from those intervals. */
static int max_overlap(const char *path)
{
	long long s[256], e[256];
	int n = 0, best = 0;
	FILE *fp = fopen(path, "r");

	ck_assert_ptr_nonnull(fp);
	while (n < 256 && fscanf(fp, "%lld %lld", &s[n], &e[n]) == 2)
		n++;
	fclose(fp);
	for (int i = 0; i < n; i++) {
		int at = 0;

		for (int k = 0; k < n; k++)
			at += s[k] <= s[i] && s[i] < e[k];
		best = at > best ? at : best;
	}
	return n * 1000 + best;
}

START_TEST(concurrency_never_exceeds_the_limit_on_the_hosts)
{
	char *path = kit_tmp_path("overlap.txt");
	const char *argv[] = {"sh", "-c",
	                      "s=$(date +%s%N); sleep 0.4; echo \"$s $(date +%s%N)\" >>\"$0\"",
	                      path, NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s;
	int m;

	for (int i = 0; i < 12; i++) {
		char id[32];

		snprintf(id, sizeof(id), "ws-conc-%02d", i);
		label(id, "pool", "conc");
	}
	post(tok_fan,
	     batch_body("{\"org\":\"acme\",\"labels\":{\"pool\":\"conc\"}}", argv,
	                "\"max_concurrency\":\"25%\""),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_int_eq(sv_int(s, "succeeded"), 12);
	m = max_overlap(path);
	ck_assert_int_eq(m / 1000, 12);
	/* 25% of 12: 3 at most, and it did run several at once. */
	ck_assert_msg(m % 1000 <= 3 && m % 1000 >= 2, "%d ran at once", m % 1000);
	kit_frames_free(&f);
	kit_resp_free(&r);
	free(path);
}
END_TEST

/* A broker whose orgs may run 2 execs at once: a label batch at 6 waits for the org's
 * room rather than have its targets refused, and never runs more than 2. */
START_TEST(a_batch_waits_for_its_orgs_room)
{
	char *path = kit_tmp_path("orgroom.txt");
	const char *argv[] = {"sh", "-c",
	                      "s=$(date +%s%N); sleep 0.3; echo \"$s $(date +%s%N)\" >>\"$0\"",
	                      path, NULL};
	struct kit_broker small = {0};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s;
	char *body;
	int m;

	for (int i = 0; i < 6; i++) {
		char id[32];

		snprintf(id, sizeof(id), "ws-conc-%02d", i);
		label(id, "room", "two");
	}
	ck_assert_int_eq(
	    kit_broker_start(&small, W.db, "eb-batch-small", "org_max_concurrent_execs = 2\n"), 0);
	body = batch_body("{\"org\":\"acme\",\"labels\":{\"room\":\"two\"}}", argv,
	                  "\"max_concurrency\":6");
	sv_http(small.port,
	        &(struct kit_req){.path = "/v1/batches", .token = tok_fan, .body = body}, &r);
	free(body);
	s = stream_ok(&r, &f);
	ck_assert_msg(sv_int(s, "succeeded") == 6, "%s", json_dumps(s, 0));
	m = max_overlap(path);
	ck_assert_int_eq(m / 1000, 6);
	ck_assert_msg(m % 1000 <= 2, "%d ran at once", m % 1000);
	kit_frames_free(&f);
	kit_resp_free(&r);
	ck_assert_int_eq(kit_broker_stop(&small), 0);
	free(path);
}
END_TEST

START_TEST(a_client_that_goes_away_cancels_the_batch)
{
	char *base = kit_tmp_path("bcancel"), pidf[2][200], sql[300], *body, *line, *id;
	/* Two sleepers at once, each writing its pid to its own file (the first to make the
	 * directory is number 0), and two that wait for a place. */
	const char *sleeper[] = {"sh", "-c",
	                         "i=$(mkdir \"$0.0\" 2>/dev/null && echo 0 || echo 1); "
	                         "echo $$ >\"$0$i.pid.tmp\"; mv \"$0$i.pid.tmp\" \"$0$i.pid\"; "
	                         "exec sleep 300",
	                         base, NULL};
	struct kit_conn c;
	json_t *first;
	long long t0;
	pid_t p0, p1;

	snprintf(pidf[0], sizeof(pidf[0]), "%s0.pid", base);
	snprintf(pidf[1], sizeof(pidf[1]), "%s1.pid", base);
	body = batch_body("{\"workspaces\":[\"ws-a1\",\"ws-a2\",\"ws-c0\",\"ws-c1\"]}", sleeper,
	                  "\"max_concurrency\":2");
	ck_assert_int_eq(
	    kit_stream_open(
	        &c, B.port,
	        &(struct kit_req){.path = "/v1/batches", .token = tok_fan, .body = body}),
	    0);
	ck_assert_int_eq(kit_stream_head(&c, 20000), 0);
	ck_assert_int_eq(c.r.status, 200);
	line = kit_stream_line(&c, 20000);
	ck_assert_ptr_nonnull(line);
	first = json_loads(line, 0, NULL);
	id = strdup(sv_str(first, "batch_id"));
	json_decref(first);
	free(line);
	p0 = sv_pid_wait(pidf[0]);
	p1 = sv_pid_wait(pidf[1]);
	kit_stream_abort(&c);
	/* Both commands are killed, the batch row says cancelled, and the two that waited never
	 * started (no rows). */
	sv_pid_gone(p0, "the first target's command");
	sv_pid_gone(p1, "the second target's command");
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM batches WHERE batch_id = '%s' AND status = 'cancelled'"
	         " AND not_started = 2 AND failed = 2",
	         id);
	t0 = kit_now_ms();
	while (count(sql) != 1 && kit_now_ms() - t0 < KIT_WAIT_MS)
		usleep(50000);
	ck_assert_int_eq(count(sql), 1);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE batch_id = '%s' AND status = 'cancelled'",
	         id);
	ck_assert_int_eq(count(sql), 2);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE batch_id = '%s'", id);
	ck_assert_int_eq(count(sql), 2);
	free(body);
	free(id);
	free(base);
}
END_TEST

START_TEST(the_buffered_reply_carries_each_targets_output)
{
	const char *argv[] = {"sh", "-c", "echo out-$0; echo err >&2; exit 2", "v", NULL};
	struct kit_resp r;
	json_t *s, *e;

	post(tok_fan,
	     batch_body("{\"workspaces\":[\"ws-a1\",\"ws-c0\",\"ws-stopped\"]}", argv,
	                "\"max_errors\":5"),
	     "application/json", &r);
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	s = sv_json(&r);
	ck_assert_str_eq(sv_str(s, "status"), "failed");
	e = result_of(s, "ws-c0");
	ck_assert_str_eq(sv_str(e, "stdout"), "out-v\n");
	ck_assert_str_eq(sv_str(e, "stderr"), "err\n");
	ck_assert_int_eq(sv_int(e, "exit_code"), 2);
	ck_assert_str_eq(sv_str(e, "status"), "failed");
	ck_assert_str_eq(sv_str(result_of(s, "ws-stopped"), "error.code"), "workspace_not_running");
	json_decref(s);
	kit_resp_free(&r);
}
END_TEST

/* GET /v1/batches/{id} with token: the summary (json_decref it). */
static json_t *get_batch(const char *id, const char *token, int want)
{
	char path[96];
	struct kit_resp r;
	json_t *o;

	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	sv_http(B.port, &(struct kit_req){.method = "GET", .path = path, .token = token}, &r);
	ck_assert_msg(r.status == want, "GET %s: %d %.300s", path, r.status, r.body);
	o = sv_json(&r);
	kit_resp_free(&r);
	return o;
}

START_TEST(a_detached_batch_starts_every_target_and_is_read_back)
{
	const char *argv[] = {"sh", "-c", "sleep 1; echo done; exit $(( $$ % 1 ))", NULL};
	struct kit_resp r;
	json_t *s, *g, *e;
	char loc[128], id[64];
	size_t i;
	long long t0;

	post(tok_fan,
	     batch_body("{\"workspaces\":[\"ws-a1\",\"ws-a2\",\"ws-stopped\"]}", argv,
	                "\"detach\":true,\"max_errors\":1"),
	     NULL, &r);
	ck_assert_msg(r.status == 202, "%d %s", r.status, r.body);
	s = sv_json(&r);
	snprintf(id, sizeof(id), "%s", sv_str(s, "batch_id"));
	ck_assert_ptr_nonnull(kit_header(&r, "Location", loc, sizeof(loc)));
	ck_assert_str_eq(loc + strlen("/v1/batches/"), id);
	ck_assert_str_eq(sv_str(s, "status"), "running");
	ck_assert_str_eq(sv_str(result_of(s, "ws-a1"), "status"), "running");
	ck_assert_str_eq(sv_str(result_of(s, "ws-stopped"), "error.code"), "workspace_not_running");
	json_array_foreach(json_object_get(s, "results"), i, e)
	{
		if (strcmp(sv_str(e, "status"), "running") == 0)
			kit_detached_remember(sv_str(e, "exec_id"));
	}
	kit_resp_free(&r);
	/* Each target is a detached exec of its own. */
	e = result_of(s, "ws-a2");
	{
		char sql[200];

		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM exec_audit WHERE exec_id = '%s' AND detached AND "
		         "batch_id = '%s'",
		         sv_str(e, "exec_id"), id);
		ck_assert_int_eq(count(sql), 1);
	}
	json_decref(s);
	/* Read back until it ends: completed by whoever reads it. */
	t0 = kit_now_ms();
	for (;;) {
		g = get_batch(id, tok_fan, 200);
		if (strcmp(sv_str(g, "status"), "running") != 0 || kit_now_ms() - t0 > KIT_WAIT_MS)
			break;
		json_decref(g);
		usleep(200000);
	}
	ck_assert_str_eq(sv_str(g, "status"), "partial_failure");
	ck_assert_int_eq(sv_int(g, "succeeded"), 2);
	ck_assert_int_eq(sv_int(g, "failed"), 1);
	ck_assert(json_is_true(json_object_get(g, "detached")));
	ck_assert_str_eq(sv_str(result_of(g, "ws-a1"), "status"), "succeeded");
	json_decref(g);
	{
		char sql[200];

		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM batches WHERE batch_id = '%s' AND status = "
		         "'partial_failure' AND succeeded = 2",
		         id);
		ck_assert_int_eq(count(sql), 1);
	}
	/* Another token does not see it; the list of its own does. */
	g = get_batch(id, tok_fan_g, 404);
	json_decref(g);
	sv_http(B.port, &(struct kit_req){.method = "GET", .path = "/v1/batches", .token = tok_fan},
	        &r);
	ck_assert_int_eq(r.status, 200);
	g = sv_json(&r);
	ck_assert(json_array_size(json_object_get(g, "batches")) >= 1);
	ck_assert_str_eq(sv_str(json_array_get(json_object_get(g, "batches"), 0), "batch_id"), id);
	json_decref(g);
	kit_resp_free(&r);
}
END_TEST

static const struct {
	const char *body, *field;
} bad_bodies[] = {
    {"{\"target\":{\"org\":\"acme\",\"labels\":{}},\"argv\":[\"true\"]}", "target.labels"},
    {"{\"target\":{\"org\":\"acme\"},\"argv\":[\"true\"]}", "target"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true,\"labels\":{\"a\":\"b\"}},\"argv\":[\"true\"]}",
     "target"},
    {"{\"target\":{\"org\":\"acme\",\"all\":false},\"argv\":[\"true\"]}", "target.all"},
    {"{\"target\":{\"workspaces\":[]},\"argv\":[\"true\"]}", "target.workspaces"},
    {"{\"target\":{\"workspaces\":[\"a b\"]},\"argv\":[\"true\"]}", "target.workspaces[0]"},
    {"{\"target\":{\"labels\":{\"a\":\"b\"}},\"argv\":[\"true\"]}", "target.org"},
    {"{\"target\":{\"org\":\"acme\",\"labels\":{\"Bad\":\"x\"}},\"argv\":[\"true\"]}",
     "target.labels.Bad"},
    {"{\"target\":{\"org\":\"acme\",\"labels\":{\"a\":\"x y\"}},\"argv\":[\"true\"]}",
     "target.labels.a"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true},\"argv\":[\"true\"],\"max_concurrency\":0}",
     "max_concurrency"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true},\"argv\":[\"true\"],\"max_errors\":\"101%\"}",
     "max_errors"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true},\"argv\":[\"true\"],\"name\":\"x\"}", "name"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true},\"argv\":\"true\"}", "argv"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true}}", "argv"},
    {"{\"argv\":[\"true\"]}", "target"},
    {"{\"target\":{\"org\":\"acme\",\"all\":true},\"argv\":[\"true\"],\"nope\":1}", "nope"},
};

START_TEST(bad_requests_are_refused_and_write_nothing)
{
	struct kit_resp r;
	json_t *o;
	long long before = count("SELECT count(*) FROM batches");
	long long rows = count("SELECT count(*) FROM exec_audit");

	post(tok_fan, strdup(bad_bodies[_i].body), NULL, &r);
	ck_assert_msg(r.status == 400, "%s: %d %s", bad_bodies[_i].body, r.status, r.body);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.code"), "invalid_request");
	ck_assert_msg(sv_str(o, "error.field") != NULL &&
	                  strcmp(sv_str(o, "error.field"), bad_bodies[_i].field) == 0,
	              "%s: %s", bad_bodies[_i].body, r.body);
	json_decref(o);
	kit_resp_free(&r);
	ck_assert_int_eq(count("SELECT count(*) FROM batches"), before);
	ck_assert_int_eq(count("SELECT count(*) FROM exec_audit"), rows);
}
END_TEST

START_TEST(an_admin_needs_a_reason_and_is_recorded_with_it)
{
	const char *argv[] = {"true", NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s, *o;
	char sql[300];

	post(W.tok_admin, batch_body("{\"workspaces\":[\"ws-b1\"]}", argv, NULL), NULL, &r);
	ck_assert_int_eq(r.status, 403);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.code"), "break_glass_reason_required");
	json_decref(o);
	kit_resp_free(&r);
	sv_http(B.port,
	        &(struct kit_req){.path = "/v1/batches",
	                          .token = W.tok_admin,
	                          .reason = "INC-7 check the fleet",
	                          .body = "{\"target\":{\"workspaces\":[\"ws-b1\",\"ws-a1\"]},"
	                                  "\"argv\":[\"true\"]}"},
	        &r);
	s = stream_ok(&r, &f);
	ck_assert_int_eq(sv_int(s, "succeeded"), 2);
	snprintf(
	    sql, sizeof(sql),
	    "SELECT count(*) FROM batches b WHERE batch_id = '%s' AND actor_kind = 'admin' AND "
	    "break_glass_reason = 'INC-7 check the fleet' AND (SELECT count(*) FROM exec_audit"
	    " a WHERE a.batch_id = b.batch_id AND a.break_glass_reason = b.break_glass_reason)"
	    " = 2",
	    sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 1);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(a_batch_of_200_workspaces_on_4_sshds)
{
	const char *argv[] = {"sh", "-c", "echo $0", "ok", NULL};
	struct kit_resp r;
	struct kit_frames f;
	json_t *s;
	char sql[300];

	post(tok_fan,
	     batch_body("{\"org\":\"acme\",\"labels\":{\"fleet\":\"big\"}}", argv,
	                "\"max_concurrency\":32"),
	     NULL, &r);
	s = stream_ok(&r, &f);
	ck_assert_uint_eq(json_array_size(json_object_get(s, "results")), 200);
	ck_assert_str_eq(sv_str(s, "status"), "completed");
	ck_assert_int_eq(sv_int(s, "succeeded"), 200);
	snprintf(sql, sizeof(sql),
	         "SELECT count(DISTINCT workspace_id) FROM exec_audit WHERE batch_id = '%s' AND "
	         "status = 'exited' AND exit_code = 0 AND stdout_bytes = 3",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 200);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE batch_id = '%s'",
	         sv_str(s, "batch_id"));
	ck_assert_int_eq(count(sql), 200);
	for (int i = 0; i < 200; i += 37) {
		char ws[32], *out;

		snprintf(ws, sizeof(ws), "ws-big-%03d", i);
		out = target_out(&f, ws);
		ck_assert_str_eq(out, "ok\n");
		free(out);
	}
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

START_TEST(audit_verify_holds_over_batch_rows)
{
	const char *args[] = {"audit", "verify", NULL};
	const char *argv[] = {"true", NULL};
	struct kit_resp r;
	struct kit_frames f;
	char *out = NULL;
	json_t *s;
	char sql[300];
	long long t0 = kit_now_ms();

	post(tok_fan, batch_body("{\"workspaces\":[\"ws-a1\",\"ws-c0\"]}", argv, NULL), NULL, &r);
	s = stream_ok(&r, &f);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE batch_id = '%s' AND chain_seq IS NULL",
	         sv_str(s, "batch_id"));
	while (count(sql) > 0 && kit_now_ms() - t0 < KIT_WAIT_MS)
		usleep(50000);
	ck_assert_int_eq(kit_cli(W.db, args, &out, NULL), 0);
	free(out);
	/* A target's batch_id is in its link: changing it (past the guard) breaks verify. */
	snprintf(sql, sizeof(sql),
	         "ALTER TABLE exec_audit DISABLE TRIGGER USER; UPDATE exec_audit SET batch_id = "
	         "gen_random_uuid() WHERE batch_id = '%s' AND workspace_id = 'ws-c0'; ALTER TABLE "
	         "exec_audit ENABLE TRIGGER USER",
	         sv_str(s, "batch_id"));
	free(sv_query(W.db, sql));
	ck_assert_int_ne(kit_cli(W.db, args, &out, NULL), 0);
	free(out);
	kit_frames_free(&f);
	kit_resp_free(&r);
}
END_TEST

/* The workspaces only this suite uses: 12 for the concurrency test on the default sshd, and
 * 200 labelled fleet=big, 50 on each of 4 sshds. Inserted in one statement each (the CLI
 * would take 200 processes). */
static int more_workspaces(void)
{
	char sql[600];
	const struct th_sshd *sshds[4] = {&th.sshd, &W.conc[0], &W.conc[1], &W.conc[2]};

	snprintf(sql, sizeof(sql),
	         "INSERT INTO workspaces (id, org_id, host, port, ssh_user, tier, host_key_sha256)"
	         " SELECT format('ws-conc-%%s', lpad(i::text, 2, '0')), 'acme', '127.0.0.1', %d,"
	         " '%s', 3, '%s' FROM generate_series(0, 11) i",
	         th.sshd.port, th.user, th.sshd.host_key_fp);
	if (kit_sql(W.db, sql) != 0)
		return -1;
	for (int k = 0; k < 4; k++) {
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO workspaces (id, org_id, host, port, ssh_user, tier, "
		    "host_key_sha256) SELECT format('ws-big-%%s', lpad(i::text, 3, '0')),"
		    " 'acme', '127.0.0.1', %d, '%s', 3, '%s' FROM generate_series(%d, %d) i;"
		    " INSERT INTO workspace_labels SELECT format('ws-big-%%s', lpad(i::text, 3, "
		    "'0')), 'fleet', 'big' FROM generate_series(%d, %d) i",
		    sshds[k]->port, th.user, sshds[k]->host_key_fp, k * 50, k * 50 + 49, k * 50,
		    k * 50 + 49);
		if (kit_sql(W.db, sql) != 0)
			return -1;
	}
	return 0;
}

int main(void)
{
	Suite *s = suite_create("batch_api");
	const char *t1[] = {"token", "create", "--org", "acme", "--scope", "exec,batch", NULL};
	const char *t2[] = {"token", "create", "--org", "globex", "--scope", "batch", NULL};
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 || more_workspaces() != 0 ||
	    kit_cli_token(W.db, t1, tok_fan, sizeof(tok_fan)) != 0 ||
	    kit_cli_token(W.db, t2, tok_fan_g, sizeof(tok_fan_g)) != 0 ||
	    kit_broker_start(&B, W.db, "eb-batch", CONF) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	SV_ADD_LOOP(s, labels_select_every_match_and_nothing_else, 1, 60);
	SV_ADD_LOOP(s, per_target_results_mix_successes_and_failures, 1, 60);
	SV_ADD_LOOP(s, the_error_budget_stops_new_starts, 1, 60);
	SV_ADD_LOOP(s, concurrency_never_exceeds_the_limit_on_the_hosts, 1, 60);
	SV_ADD_LOOP(s, a_batch_waits_for_its_orgs_room, 1, 60);
	SV_ADD_LOOP(s, a_client_that_goes_away_cancels_the_batch, 1, 60);
	SV_ADD_LOOP(s, the_buffered_reply_carries_each_targets_output, 1, 60);
	SV_ADD_LOOP(s, a_detached_batch_starts_every_target_and_is_read_back, 1, 60);
	SV_ADD_LOOP(s, bad_requests_are_refused_and_write_nothing,
	            sizeof(bad_bodies) / sizeof(bad_bodies[0]), 30);
	SV_ADD_LOOP(s, an_admin_needs_a_reason_and_is_recorded_with_it, 1, 60);
	SV_ADD_LOOP(s, a_batch_of_200_workspaces_on_4_sshds, 1, 120);
	SV_ADD_LOOP(s, audit_verify_holds_over_batch_rows, 1, 60);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	kit_detached_end_all();
	th_teardown();
	return failed;
}
