/* tests/check_detached_api.c: detached execs through the real binary over HTTP, with a real
 * PostgreSQL and real sshds: start (202, Location, the exec object), follow, a cut
 * connection resumed by offsets (byte-identical, binary included), a broker SIGKILLed with
 * three running and restarted (they ran on, their outcomes land once), a second broker
 * reading and signalling what the first started, TERM/INT/KILL and DELETE ending the whole
 * group, the host's own deadline with no broker, output past the cap (the newest kept, a
 * skipped frame), retention, the refusals (name in use, the quota, other tenants, admins
 * without a reason, finished execs), ?wait_s, the list, attached execs read from their row,
 * and `audit verify` over detached rows. */
#include <check.h>
#include <jansson.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/detached.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define CAP 65536
#define BASE_CONF                                                                                  \
	"exec_detached_output_cap_bytes = 65536\nworkspace_max_detached_execs = 6\n"               \
	"pool_kill_grace_s = 1\n"
#define MAIN_CONF BASE_CONF "exec_retain_s = 600\n"

static struct kit_world W;
static struct kit_broker B; /* started in main(), shared */

/* A command whose pid and its foreground child's pid land in the file "$0" (complete at
 * once), then sleeps: a signal to the group reaches both. */
#define PAIR                                                                                       \
	"echo $$ >\"$0.tmp\"; sh -c 'echo $$ >>\"$0.tmp\"; mv \"$0.tmp\" \"$0\"; exec sleep 300' "  \
	"\"$0\"; echo after"

static json_t *body_json(const struct kit_resp *r)
{
	json_t *o = json_loadb(r->body, r->body_len, 0, NULL);

	ck_assert_msg(json_is_object(o), "not a JSON object: %.300s", r->body);
	return o;
}

/* POST a detached exec; returns its exec_id (static) after checking the 202. */
static const char *start_on(int port, const char *ws, const char *token, const char *const argv[],
                            json_t *extra)
{
	static char id[64];
	struct kit_resp r;
	json_t *o;
	char *body, loc[128];

	if (extra == NULL)
		extra = json_object();
	json_object_set_new(extra, "detach", json_true());
	body = sv_body(argv, extra);
	sv_http(port, &(struct kit_req){.ws = ws, .token = token, .body = body}, &r);
	ck_assert_msg(r.status == 202, "status %d: %.300s", r.status, r.body);
	o = body_json(&r);
	snprintf(id, sizeof(id), "%s", sv_str(o, "exec_id"));
	kit_detached_remember(id);
	ck_assert_str_eq(sv_str(o, "status"), "running");
	ck_assert(json_is_true(json_object_get(o, "detached")));
	ck_assert_ptr_nonnull(kit_header(&r, "Location", loc, sizeof(loc)));
	ck_assert_str_eq(loc + strlen("/v1/execs/"), id);
	json_decref(o);
	kit_resp_free(&r);
	free(body);
	return id;
}

static const char *start(const char *const argv[], json_t *extra)
{
	return start_on(B.port, "ws-a1", W.tok_ws, argv, extra);
}

static void request(int port, const char *method, const char *path, const char *token,
                    const char *body, const char *reason, struct kit_resp *r)
{
	sv_http(port,
	        &(struct kit_req){.method = method, .path = path, .token = token, .body = body,
	                          .reason = reason},
	        r);
}

/* GET /v1/execs/id[?wait_s=N] on port: the exec object (json_decref it). */
static json_t *get_exec(int port, const char *id, int wait_s)
{
	char path[160];
	struct kit_resp r;
	json_t *o;

	snprintf(path, sizeof(path), "/v1/execs/%s%s%d", id, wait_s > 0 ? "?wait_s=" : "",
	         wait_s);
	if (wait_s <= 0)
		path[strlen(path) - 1] = '\0';
	request(port, "GET", path, W.tok_ws, NULL, NULL, &r);
	ck_assert_msg(r.status == 200, "GET %s: %d %.300s", path, r.status, r.body);
	o = body_json(&r);
	kit_resp_free(&r);
	return o;
}

/* Waits until the exec has ended; returns its object. */
static json_t *wait_end(int port, const char *id)
{
	for (int i = 0; i < 6; i++) {
		json_t *o = get_exec(port, id, 10);
		if (strcmp(sv_str(o, "status"), "running") != 0)
			return o;
		json_decref(o);
	}
	ck_abort_msg("exec %s did not end", id);
	return NULL;
}

/* A replay's frames put together: every byte checked against its offset. */
struct replay {
	char *data[3];
	size_t len[3];
	unsigned long long next[3]; /* the next offset each stream must bring */
	unsigned long long skipped[3];
	json_t *first, *last; /* the first frame, the last one (owned) */
	int frames;
};

static void replay_line(struct replay *p, const char *line, size_t n)
{
	json_t *f = json_loadb(line, n, 0, NULL), *st, *data;
	int s;

	ck_assert_msg(json_is_object(f), "not a frame: %.*s", (int)n, line);
	p->frames++;
	if (p->first == NULL) {
		p->first = f;
		ck_assert_ptr_nonnull(sv_str(f, "exec_id"));
		return;
	}
	st = json_object_get(f, "stream");
	if (st == NULL) {
		ck_assert_msg(p->last == NULL, "a frame after the last: %.*s", (int)n, line);
		p->last = f;
		return;
	}
	s = strcmp(json_string_value(st), "stdout") == 0 ? 1 : 2;
	ck_assert_int_eq(json_integer_value(json_object_get(f, "offset")), (json_int_t)p->next[s]);
	if (json_object_get(f, "skipped") != NULL) {
		unsigned long long k = (unsigned long long)json_integer_value(json_object_get(f, "skipped"));
		p->skipped[s] += k;
		p->next[s] += k;
	} else {
		const char *enc = sv_str(f, "encoding");
		size_t dl;
		char *d;

		data = json_object_get(f, "data");
		if (enc != NULL && strcmp(enc, "base64") == 0) {
			d = kit_b64_decode(json_string_value(data), &dl);
		} else {
			dl = json_string_length(data);
			d = malloc(dl + 1);
			memcpy(d, json_string_value(data), dl);
		}
		ck_assert_ptr_nonnull(d);
		p->data[s] = realloc(p->data[s], p->len[s] + dl + 1);
		memcpy(p->data[s] + p->len[s], d, dl);
		p->len[s] += dl;
		p->next[s] += dl;
		free(d);
	}
	json_decref(f);
}

static void replay_body(struct replay *p, const char *body, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++)
		if (body[i] == '\n') {
			replay_line(p, body + start, i - start);
			start = i + 1;
		}
	ck_assert_uint_eq(start, len); /* every frame ends with its newline */
}

static void replay_free(struct replay *p)
{
	free(p->data[1]);
	free(p->data[2]);
	json_decref(p->first);
	json_decref(p->last);
	memset(p, 0, sizeof(*p));
}

/* GET .../output from p's offsets; adds to p. Returns the HTTP status. */
static int read_output(int port, const char *id, bool follow, struct replay *p)
{
	char path[256];
	struct kit_resp r;
	int status;

	snprintf(path, sizeof(path), "/v1/execs/%s/output?stdout_offset=%llu&stderr_offset=%llu&follow=%s",
	         id, p->next[1], p->next[2], follow ? "true" : "false");
	json_decref(p->first);
	json_decref(p->last);
	p->first = p->last = NULL;
	request(port, "GET", path, W.tok_ws, NULL, NULL, &r);
	status = r.status;
	if (status == 200)
		replay_body(p, r.body, r.body_len);
	kit_resp_free(&r);
	return status;
}

/* n lines (prefix, then " line %05d" or, wide, "%09d") as the host's printf makes them:
 * what it must give back. */
static char *lines_of(const char *prefix, size_t plen, bool wide, int n, size_t *len)
{
	size_t cap = (size_t)n * (plen + 16) + 1, off = 0;
	char *out = malloc(cap);

	for (int i = 0; i < n; i++) {
		memcpy(out + off, prefix, plen);
		off += plen;
		off += (size_t)(wide ? snprintf(out + off, cap - off, "%09d\n", i)
		                     : snprintf(out + off, cap - off, " line %05d\n", i));
	}
	*len = off;
	return out;
}

/* 40 KB of binary lines (NULs, 0xff, invalid UTF-8), written in two bursts. */
#define BINARY_CMD                                                                                 \
	"i=0; while [ $i -lt 2000 ]; do printf '\\000\\377\\303 line %05d\\n' $i; "               \
	"[ $i = 1000 ] && sleep 1; i=$((i+1)); done; echo to-stderr >&2"

START_TEST(follow_cut_and_resume_by_offsets_is_byte_identical)
{
	const char *argv[] = {"sh", "-c", BINARY_CMD, NULL};
	struct replay p = {0};
	struct kit_conn s;
	char path[256], *line, *want;
	size_t wlen;
	const char *id;
	int lines = 0;

	want = lines_of("\000\377\303", 3, false, 2000, &wlen);
	id = start(argv, NULL);
	/* Follow, take a few frames, cut the connection. */
	snprintf(path, sizeof(path), "/v1/execs/%s/output", id);
	ck_assert_int_eq(kit_stream_open(&s, B.port,
	                                 &(struct kit_req){.method = "GET", .path = path,
	                                                   .token = W.tok_ws}),
	                 0);
	while (lines < 3 && (line = kit_stream_line(&s, KIT_WAIT_MS)) != NULL) {
		replay_line(&p, line, strlen(line));
		free(line);
		lines++;
	}
	ck_assert_int_eq(lines, 3);
	kit_stream_abort(&s);
	/* Resume, as many times as it takes, from the last offsets received. */
	for (int i = 0; i < 20 && p.last == NULL; i++)
		ck_assert_int_eq(read_output(B.port, id, true, &p), 200);
	ck_assert_ptr_nonnull(p.last);
	ck_assert_int_eq(json_integer_value(json_object_get(p.last, "exit_code")), 0);
	ck_assert_uint_eq(p.skipped[1], 0);
	ck_assert_uint_eq(p.len[1], wlen);
	ck_assert_mem_eq(p.data[1], want, wlen);
	ck_assert_uint_eq(p.len[2], strlen("to-stderr\n"));
	ck_assert_mem_eq(p.data[2], "to-stderr\n", p.len[2]);
	/* And a replay from 0 of the ended exec gives it all again. */
	replay_free(&p);
	ck_assert_int_eq(read_output(B.port, id, false, &p), 200);
	ck_assert_uint_eq(p.len[1], wlen);
	ck_assert_mem_eq(p.data[1], want, wlen);
	ck_assert_int_eq(json_integer_value(json_object_get(p.last, "stdout_bytes")), (json_int_t)wlen);
	replay_free(&p);
	free(want);
}
END_TEST

START_TEST(a_running_exec_reads_as_running_and_ends_with_its_code)
{
	const char *argv[] = {"sh", "-c", "echo one; sleep 2; echo two; exit 7", NULL};
	struct replay p = {0};
	const char *id = start(argv, json_pack("{s:s}", "name", "seven"));
	char sid[64];
	json_t *o;

	snprintf(sid, sizeof(sid), "%s", id);
	usleep(500000);
	ck_assert_int_eq(read_output(B.port, sid, false, &p), 200);
	ck_assert_str_eq(sv_str(p.last, "status"), "running");
	ck_assert_int_eq(json_integer_value(json_object_get(p.last, "stdout_offset")), 4);
	ck_assert_mem_eq(p.data[1], "one\n", 4);
	replay_free(&p);
	o = get_exec(B.port, sid, 30); /* returns when it ends */
	ck_assert_str_eq(sv_str(o, "status"), "exited");
	ck_assert_int_eq(sv_int(o, "exit_code"), 7);
	ck_assert_int_eq(sv_int(o, "stdout_bytes"), 8);
	ck_assert_str_eq(sv_str(o, "name"), "seven");
	ck_assert(json_is_true(json_object_get(json_object_get(o, "output"), "retained")));
	json_decref(o);
	/* The row: final, detached, named, completed once. */
	{
		char q[256], *v;
		snprintf(q, sizeof(q),
		         "SELECT status || ' ' || exit_code || ' ' || detached || ' ' || name "
		         "FROM exec_audit WHERE exec_id = '%s'",
		         sid);
		v = sv_query(W.db, q);
		ck_assert_str_eq(v, "exited 7 true seven");
		free(v);
	}
}
END_TEST

/* TERM, INT, KILL by signal, and DELETE: the command and its child both end. */
START_TEST(signals_and_delete_end_the_whole_group)
{
	static const char *const sigs[] = {"TERM", "INT", "KILL", NULL};
	const char *sig = sigs[_i];
	char pidf[256], path[160], body[64], sid[64];
	const char *argv[] = {"sh", "-c", PAIR, pidf, NULL};
	char *tmp = kit_tmp_path("pair");
	struct kit_resp r;
	pid_t pids[2];
	json_t *o;

	snprintf(pidf, sizeof(pidf), "%s-%d", tmp, _i);
	free(tmp);
	snprintf(sid, sizeof(sid), "%s", start(argv, NULL));
	sv_read_pids(pidf, pids);
	if (sig != NULL) {
		snprintf(path, sizeof(path), "/v1/execs/%s/signal", sid);
		snprintf(body, sizeof(body), "{\"signal\":\"%s\"}", sig);
		request(B.port, "POST", path, W.tok_ws, body, NULL, &r);
	} else {
		snprintf(path, sizeof(path), "/v1/execs/%s", sid);
		request(B.port, "DELETE", path, W.tok_ws, NULL, NULL, &r);
	}
	ck_assert_msg(r.status == 202, "%d %.300s", r.status, r.body);
	kit_resp_free(&r);
	o = wait_end(B.port, sid);
	if (sig != NULL) {
		ck_assert_str_eq(sv_str(o, "status"), "signaled");
		ck_assert_str_eq(sv_str(o, "signal"), sig);
	} else {
		ck_assert_str_eq(sv_str(o, "status"), "cancelled");
	}
	json_decref(o);
	sv_pid_gone(pids[0], "the command");
	sv_pid_gone(pids[1], "the command's child");
	/* Once ended: 409 exec_finished. */
	snprintf(path, sizeof(path), "/v1/execs/%s/signal", sid);
	request(B.port, "POST", path, W.tok_ws, "{\"signal\":\"TERM\"}", NULL, &r);
	ck_assert_int_eq(r.status, 409);
	ck_assert_ptr_nonnull(strstr(r.body, "exec_finished"));
	kit_resp_free(&r);
}
END_TEST

START_TEST(a_killed_broker_leaves_them_running_and_a_restart_finishes_them)
{
	struct kit_broker b = {0};
	char ids[3][64], cmd[3][64];
	json_t *o;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-detached-kill", MAIN_CONF), 0);
	for (int i = 0; i < 3; i++) {
		const char *argv[] = {"sh", "-c", cmd[i], NULL};
		snprintf(cmd[i], sizeof(cmd[i]), "echo start %d; sleep 3; echo end %d; exit %d", i, i,
		         i + 1);
		snprintf(ids[i], sizeof(ids[i]), "%s", start_on(b.port, "ws-a1", W.tok_ws, argv, NULL));
	}
	kit_broker_kill(&b);
	sleep(4); /* they end while no broker runs */
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-detached-kill", MAIN_CONF), 0);
	for (int i = 0; i < 3; i++) {
		struct replay p = {0};
		char want[64], q[300];

		o = wait_end(b.port, ids[i]);
		ck_assert_str_eq(sv_str(o, "status"), "exited");
		ck_assert_int_eq(sv_int(o, "exit_code"), i + 1);
		json_decref(o);
		ck_assert_int_eq(read_output(b.port, ids[i], true, &p), 200);
		snprintf(want, sizeof(want), "start %d\nend %d\n", i, i);
		ck_assert_uint_eq(p.len[1], strlen(want));
		ck_assert_mem_eq(p.data[1], want, p.len[1]);
		replay_free(&p);
		snprintf(q, sizeof(q), "SELECT count(*) FROM exec_audit WHERE exec_id = '%s' AND "
		                       "status = 'exited'", ids[i]);
		ck_assert_int_eq(tu_query_int(W.db, q), 1);
	}
	ck_assert_int_eq(kit_broker_stop(&b), 0);
}
END_TEST

START_TEST(a_second_broker_reads_and_signals_what_the_first_started)
{
	struct kit_broker b2 = {0};
	const char *argv[] = {"sh", "-c", "echo hello; exec sleep 300", NULL};
	char sid[64], path[160];
	struct replay p = {0};
	struct kit_resp r;
	json_t *o;

	ck_assert_int_eq(kit_broker_start(&b2, W.db, "eb-detached-second", MAIN_CONF), 0);
	snprintf(sid, sizeof(sid), "%s", start(argv, NULL));
	for (int i = 0; i < 50 && p.len[1] == 0; i++) {
		ck_assert_int_eq(read_output(b2.port, sid, false, &p), 200);
		if (p.len[1] == 0)
			usleep(100000);
	}
	ck_assert_mem_eq(p.data[1], "hello\n", 6);
	replay_free(&p);
	snprintf(path, sizeof(path), "/v1/execs/%s/signal", sid);
	request(b2.port, "POST", path, W.tok_ws, "{\"signal\":\"KILL\"}", NULL, &r);
	ck_assert_int_eq(r.status, 202);
	kit_resp_free(&r);
	o = wait_end(B.port, sid);
	ck_assert_str_eq(sv_str(o, "signal"), "KILL");
	json_decref(o);
	ck_assert_int_eq(kit_broker_stop(&b2), 0);
}
END_TEST

START_TEST(the_hosts_deadline_holds_with_no_broker)
{
	struct kit_broker b = {0};
	char pidf[256], sid[64], *tmp = kit_tmp_path("deadline-pair");
	const char *argv[] = {"sh", "-c", PAIR, pidf, NULL};
	pid_t pids[2];
	json_t *o;

	snprintf(pidf, sizeof(pidf), "%s", tmp);
	free(tmp);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-detached-deadline", MAIN_CONF), 0);
	snprintf(sid, sizeof(sid), "%s",
	         start_on(b.port, "ws-a1", W.tok_ws, argv, json_pack("{s:i}", "timeout_s", 2)));
	kit_broker_kill(&b);
	sv_read_pids(pidf, pids);
	sv_pid_gone(pids[0], "the command, at its deadline");
	sv_pid_gone(pids[1], "the command's child, at its deadline");
	o = wait_end(B.port, sid);
	ck_assert_str_eq(sv_str(o, "status"), "timeout");
	json_decref(o);
}
END_TEST

START_TEST(output_past_the_cap_keeps_the_newest_with_a_skipped_frame)
{
#define COUNTER "i=0; while [ $i -lt 20000 ]; do printf '%09d\\n' $i; i=$((i+1)); done"
	const char *argv[] = {"sh", "-c", COUNTER, NULL};
	struct replay p = {0};
	char sid[64], *want;
	size_t wlen;
	json_t *o;

	want = lines_of("", 0, true, 20000, &wlen);
	snprintf(sid, sizeof(sid), "%s", start(argv, NULL));
	o = wait_end(B.port, sid);
	ck_assert_int_eq(sv_int(o, "stdout_bytes"), 200000);
	json_decref(o);
	ck_assert_int_eq(read_output(B.port, sid, true, &p), 200);
	ck_assert_uint_gt(p.skipped[1], 0);
	ck_assert_uint_le(p.len[1], CAP);
	ck_assert_uint_eq(p.skipped[1] + p.len[1], wlen);
	ck_assert_mem_eq(p.data[1], want + p.skipped[1], p.len[1]);
	ck_assert_int_eq(json_integer_value(json_object_get(p.last, "exit_code")), 0);
	replay_free(&p);
	free(want);
}
END_TEST

START_TEST(output_goes_after_retention)
{
	struct kit_broker b = {0};
	const char *argv[] = {"sh", "-c", "echo short-lived", NULL};
	struct replay p = {0};
	char sid[64];
	json_t *o;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-detached-retain",
	                                  BASE_CONF "exec_retain_s = 2\n"),
	                 0);
	snprintf(sid, sizeof(sid), "%s", start_on(b.port, "ws-a1", W.tok_ws, argv, NULL));
	o = wait_end(b.port, sid);
	ck_assert(json_is_true(json_object_get(json_object_get(o, "output"), "retained")));
	json_decref(o);
	sleep(4);
	ck_assert_int_eq(read_output(b.port, sid, true, &p), 200);
	ck_assert_uint_eq(p.skipped[1], strlen("short-lived\n"));
	ck_assert_uint_eq(p.len[1], 0);
	ck_assert_int_eq(json_integer_value(json_object_get(p.last, "exit_code")), 0);
	replay_free(&p);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
}
END_TEST

START_TEST(refusals_have_their_codes)
{
	const char *sleeper[] = {"sleep", "300", NULL};
	char sid[64], path[160], q[256];
	struct kit_resp r;
	char *body;

	/* A name is unique among the workspace's running execs. */
	snprintf(sid, sizeof(sid), "%s", start(sleeper, json_pack("{s:s}", "name", "web")));
	body = sv_body(sleeper, json_pack("{s:b, s:s}", "detach", 1, "name", "web"));
	sv_http(B.port, &(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = body}, &r);
	sv_error(W.db, &r, 409, "name_in_use", "denied", "name_in_use");
	kit_resp_free(&r);
	free(body);
	/* Others' tokens do not see it: 404; an admin needs a reason: 403. */
	snprintf(path, sizeof(path), "/v1/execs/%s", sid);
	request(B.port, "GET", path, W.tok_other, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	request(B.port, "GET", path, W.tok_admin, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 403);
	ck_assert_ptr_nonnull(strstr(r.body, "break_glass_reason_required"));
	kit_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/execs/%s/signal", sid);
	request(B.port, "POST", path, W.tok_other, "{\"signal\":\"KILL\"}", NULL, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	/* An admin's signal, with a reason, is recorded with the exec. */
	request(B.port, "POST", path, W.tok_admin, "{\"signal\":\"CONT\"}", "incident 42", &r);
	ck_assert_msg(r.status == 202, "%d %.300s", r.status, r.body);
	kit_resp_free(&r);
	snprintf(q, sizeof(q),
	         "SELECT action || ' ' || detail || ' ' || reason FROM exec_admin_access "
	         "WHERE exec_id = '%s'",
	         sid);
	body = sv_query(W.db, q);
	ck_assert_str_eq(body, "signal CONT incident 42");
	free(body);
	/* Bad signals and bodies: 400. */
	request(B.port, "POST", path, W.tok_ws, "{\"signal\":\"SIGTERM\"}", NULL, &r);
	ck_assert_int_eq(r.status, 400);
	kit_resp_free(&r);
	request(B.port, "POST", path, W.tok_ws, "{\"signal\":\"TERM\",\"x\":1}", NULL, &r);
	ck_assert_int_eq(r.status, 400);
	kit_resp_free(&r);
	/* The quota: 6 running on the workspace, the 7th is 429 with Retry-After. */
	{
		char extra[5][64], ra[16];
		long long running;

		snprintf(q, sizeof(q),
		         "SELECT count(*) FROM exec_audit WHERE workspace_id = 'ws-a2' AND detached "
		         "AND status = 'running'");
		running = tu_query_int(W.db, q);
		for (long long i = running; i < 6; i++)
			snprintf(extra[i % 5], sizeof(extra[0]), "%s",
			         start_on(B.port, "ws-a2", W.tok_org, sleeper, NULL));
		body = sv_body(sleeper, json_pack("{s:b}", "detach", 1));
		sv_http(B.port, &(struct kit_req){.ws = "ws-a2", .token = W.tok_org, .body = body},
		        &r);
		sv_error(W.db, &r, 429, "too_many_requests", "denied", "too_many_requests");
		ck_assert_ptr_nonnull(kit_header(&r, "Retry-After", ra, sizeof(ra)));
		kit_resp_free(&r);
		free(body);
	}
	/* Detach-only fields are refused on an attached exec. */
	body = sv_body(sleeper, json_pack("{s:s}", "name", "x"));
	sv_http(B.port, &(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = body}, &r);
	sv_error(W.db, &r, 400, "invalid_request", NULL, NULL);
	kit_resp_free(&r);
	free(body);
	/* Unknown exec ids, and malformed ones, are 404. */
	request(B.port, "GET", "/v1/execs/00000000-0000-4000-8000-000000000000", W.tok_ws, NULL,
	        NULL, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	request(B.port, "GET", "/v1/execs/nope", W.tok_ws, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/execs/%s", sid);
	request(B.port, "DELETE", path, W.tok_ws, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 202);
	kit_resp_free(&r);
}
END_TEST

/* Twenty starts at once on a workspace with room for six: exactly six run. */
START_TEST(the_quota_holds_against_concurrent_starts)
{
	const char *argv[] = {"sleep", "300", NULL};
	char *body = sv_body(argv, json_pack("{s:b}", "detach", 1));
	struct kit_req q[20];
	struct kit_resp r[20];
	int ok = 0, refused = 0;
	char path[160];

	for (int i = 0; i < 20; i++)
		q[i] = (struct kit_req){.ws = "ws-c1", .token = W.tok_org, .body = body};
	ck_assert_int_eq(kit_http_parallel(B.port, q, 20, r), 0);
	for (int i = 0; i < 20; i++) {
		if (r[i].status == 202) {
			json_t *o = body_json(&r[i]);
			kit_detached_remember(sv_str(o, "exec_id"));
			snprintf(path, sizeof(path), "/v1/execs/%s", sv_str(o, "exec_id"));
			json_decref(o);
			ok++;
		} else {
			ck_assert_msg(r[i].status == 429, "%d %.200s", r[i].status, r[i].body);
			refused++;
		}
		kit_resp_free(&r[i]);
	}
	free(body);
	ck_assert_int_eq(ok, 6);
	ck_assert_int_eq(refused, 14);
	ck_assert_int_eq(tu_query_int(W.db, "SELECT count(*) FROM exec_audit WHERE workspace_id = "
	                                    "'ws-c1' AND detached AND status = 'running'"),
	                 6);
	free(sv_query(W.db, "SELECT 1")); /* and they are cancelled by the suite's end */
}
END_TEST

START_TEST(an_attached_exec_is_read_from_its_row)
{
	const char *argv[] = {"sh", "-c", "echo hi", NULL};
	char *body = sv_body(argv, NULL), path[200], id[64];
	struct kit_resp r;
	json_t *o;

	sv_http(B.port, &(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = body}, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(kit_header(&r, "X-Exec-Id", id, sizeof(id)));
	kit_resp_free(&r);
	free(body);
	o = get_exec(B.port, id, 0);
	ck_assert_str_eq(sv_str(o, "status"), "exited");
	ck_assert(json_is_false(json_object_get(o, "detached")));
	ck_assert(json_is_null(json_object_get(o, "output")));
	json_decref(o);
	snprintf(path, sizeof(path), "/v1/execs/%s/output", id);
	request(B.port, "GET", path, W.tok_ws, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 409);
	ck_assert_ptr_nonnull(strstr(r.body, "not_detached"));
	kit_resp_free(&r);
}
END_TEST

START_TEST(the_list_shows_the_workspaces_detached_execs_newest_first)
{
	const char *argv[] = {"sleep", "300", NULL};
	char a[64], b[64], path[160];
	struct kit_resp r;
	json_t *o, *list;

	snprintf(a, sizeof(a), "%s", start(argv, json_pack("{s:s}", "name", "list-a")));
	snprintf(b, sizeof(b), "%s", start(argv, json_pack("{s:s}", "name", "list-b")));
	request(B.port, "GET", "/v1/workspaces/ws-a1/execs?status=running", W.tok_ws, NULL, NULL,
	        &r);
	ck_assert_int_eq(r.status, 200);
	o = body_json(&r);
	list = json_object_get(o, "execs");
	ck_assert_uint_ge(json_array_size(list), 2);
	ck_assert_str_eq(sv_str(json_array_get(list, 0), "exec_id"), b);
	ck_assert_str_eq(sv_str(json_array_get(list, 1), "exec_id"), a);
	json_decref(o);
	kit_resp_free(&r);
	request(B.port, "GET", "/v1/workspaces/ws-a1/execs?name=list-a", W.tok_ws, NULL, NULL, &r);
	o = body_json(&r);
	ck_assert_uint_eq(json_array_size(json_object_get(o, "execs")), 1);
	json_decref(o);
	kit_resp_free(&r);
	request(B.port, "GET", "/v1/workspaces/ws-a1/execs", W.tok_other, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 404);
	kit_resp_free(&r);
	request(B.port, "GET", "/v1/workspaces/ws-a1/execs?status=bogus", W.tok_ws, NULL, NULL, &r);
	ck_assert_int_eq(r.status, 400);
	kit_resp_free(&r);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/v1/execs/%s", i == 0 ? a : b);
		request(B.port, "DELETE", path, W.tok_ws, NULL, NULL, &r);
		ck_assert_int_eq(r.status, 202);
		kit_resp_free(&r);
	}
}
END_TEST

/* The host lost the exec (its supervisor and command killed outright, as by a reboot):
 * the row ends 'lost', and the output read so far stays readable until then. */
START_TEST(a_dead_supervisor_makes_the_exec_lost)
{
	const char *argv[] = {"sh", "-c", "echo before; exec sleep 300", NULL};
	struct passwd *pw = getpwnam(th.user);
	char sid[64], path[512];
	struct replay p = {0};
	json_t *o;

	ck_assert_ptr_nonnull(pw);
	snprintf(sid, sizeof(sid), "%s", start(argv, NULL));
	for (int i = 0; i < 2; i++) {
		FILE *f;
		long pid = 0;

		snprintf(path, sizeof(path), "%s/.exec-broker/execs/%s/%s", pw->pw_dir, sid,
		         i == 0 ? "pid" : "pgid");
		for (int k = 0; k < 100 && (f = fopen(path, "r")) == NULL; k++)
			usleep(50000);
		ck_assert_ptr_nonnull(f = fopen(path, "r"));
		ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
		fclose(f);
		ck_assert_int_gt(pid, 1);
		kill((pid_t)-pid, SIGKILL); /* the group this test's exec leads */
	}
	/* The host is asked on every read: lost as soon as the kills have landed. */
	for (int k = 0;; k++) {
		o = get_exec(B.port, sid, 0);
		if (strcmp(sv_str(o, "status"), "running") != 0 || k == 100)
			break;
		json_decref(o);
		usleep(100000);
	}
	ck_assert_str_eq(sv_str(o, "status"), "lost");
	json_decref(o);
	ck_assert_int_eq(read_output(B.port, sid, true, &p), 200);
	ck_assert_str_eq(sv_str(json_object_get(p.last, "error"), "code"), "lost");
	replay_free(&p);
}
END_TEST

/* A running row the host knows nothing of: still starting while young (the launcher may
 * not have made its directory yet), lost once older than a start may take. */
START_TEST(a_row_the_host_does_not_know_is_starting_then_lost)
{
	static const char *const ages[] = {"0 seconds", "5 minutes"};
	static const char *const want[] = {"running", "lost"};
	char id[64], sql[700];
	json_t *o;

	for (int i = 0; i < 2; i++) {
		snprintf(id, sizeof(id), "7e57ab1e-0000-4000-8000-00000000000%d", i);
		snprintf(sql, sizeof(sql),
		         "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, actor, "
		         "actor_kind, argv, timeout_s, status, detached, started_at) VALUES ('%s', "
		         "'starting-%d', 'ws-a1', 'acme', 'token:test', 'workspace', '{true}', 60, "
		         "'running', true, now() - interval '%s')",
		         id, i, ages[i]);
		free(sv_query(W.db, sql));
		o = get_exec(B.port, id, 0);
		ck_assert_str_eq(sv_str(o, "status"), want[i]);
		json_decref(o);
	}
}
END_TEST

START_TEST(rows_complete_with_nobody_reading)
{
	struct kit_broker b = {0};
	const char *argv[] = {"sh", "-c", "exit 5", NULL};
	char sid[64], q[200], *v = NULL;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-detached-sweep",
	                                  MAIN_CONF "broker_heartbeat_s = 1\n"),
	                 0);
	snprintf(sid, sizeof(sid), "%s", start_on(b.port, "ws-a1", W.tok_ws, argv, NULL));
	snprintf(q, sizeof(q),
	         "SELECT status || ' ' || coalesce(exit_code::text, '-') FROM exec_audit "
	         "WHERE exec_id = '%s'",
	         sid);
	for (int i = 0; i < 300; i++) {
		free(v);
		v = sv_query(W.db, q);
		if (strcmp(v, "running") != 0 && strncmp(v, "running ", 8) != 0)
			break;
		usleep(100000);
	}
	ck_assert_str_eq(v, "exited 5");
	free(v);
	v = NULL;
	/* More running rows than the janitor takes in a turn (32), long past any start and
	 * unknown to their host: every one of them is found lost. */
	free(sv_query(W.db, "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, "
	                    "actor, actor_kind, argv, timeout_s, status, detached, started_at) "
	                    "SELECT ('5eeb0000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid, "
	                    "'sweep-' || i, 'ws-a1', 'acme', 'token:test', 'workspace', '{true}', 60, "
	                    "'running', true, now() - interval '5 minutes' - i * interval '1 ms' "
	                    "FROM generate_series(1, 70) i"));
	for (int i = 0; i < 600; i++) {
		free(v);
		v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE request_id LIKE 'sweep-%' "
		                   "AND status = 'lost'");
		if (strcmp(v, "70") == 0)
			break;
		usleep(100000);
	}
	ck_assert_str_eq(v, "70");
	free(v);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
}
END_TEST

START_TEST(audit_verify_holds_over_detached_rows)
{
	const char *argv[] = {"sh", "-c", "exit 4", NULL};
	const char *args[] = {"audit", "verify", NULL};
	char sid[64];
	struct tu_run run;
	json_t *o;

	snprintf(sid, sizeof(sid), "%s", start(argv, json_pack("{s:s}", "name", "verify-me")));
	o = wait_end(B.port, sid);
	json_decref(o);
	sleep(1); /* linked into the chain moments later */
	tu_broker(&run, W.db, NULL, args);
	ck_assert_msg(run.exit_code == 0, "verify: %s %s", run.out, run.err);
	tu_run_free(&run);
}
END_TEST

#define ADD_LOOP(s, fn, n) SV_ADD_LOOP(s, fn, n, 120)
#define ADD(s, fn)         ADD_LOOP(s, fn, 1)

int main(void)
{
	Suite *s = suite_create("detached_api");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, "eb-detached-main", MAIN_CONF) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, follow_cut_and_resume_by_offsets_is_byte_identical);
	ADD(s, a_running_exec_reads_as_running_and_ends_with_its_code);
	ADD_LOOP(s, signals_and_delete_end_the_whole_group, 4);
	ADD(s, a_killed_broker_leaves_them_running_and_a_restart_finishes_them);
	ADD(s, a_second_broker_reads_and_signals_what_the_first_started);
	ADD(s, the_hosts_deadline_holds_with_no_broker);
	ADD(s, output_past_the_cap_keeps_the_newest_with_a_skipped_frame);
	ADD(s, output_goes_after_retention);
	ADD(s, refusals_have_their_codes);
	ADD(s, the_quota_holds_against_concurrent_starts);
	ADD(s, an_attached_exec_is_read_from_its_row);
	ADD(s, the_list_shows_the_workspaces_detached_execs_newest_first);
	ADD(s, a_dead_supervisor_makes_the_exec_lost);
	ADD(s, a_row_the_host_does_not_know_is_starting_then_lost);
	ADD(s, rows_complete_with_nobody_reading);
	ADD(s, audit_verify_holds_over_detached_rows);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	kit_detached_end_all();
	th_teardown();
	return failed;
}
