/* tests/check_serve_life.c: the life of `exec-broker serve` around its requests, with the
 * real binary over HTTP against a real PostgreSQL and real sshds: per-org admission (429),
 * a full pool (503), the output cap, 200 concurrent execs on 4 hosts, SIGTERM with and
 * without time to finish, a broker killed mid-exec (rows abandoned at the next start, only
 * its own), and PostgreSQL stopped before and during an exec. Tests that need other
 * settings, or kill their broker, start their own; PostgreSQL is stopped only by the last
 * two tests. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "tests/kit/sql.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define MAIN_INSTANCE "eb-life-main"
#define NCONC         200

static struct kit_world W;
static struct kit_broker B; /* started in main(), shared */

/* A command that says "ready" and then waits until its gate file exists. */
#define GATED "echo ready; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo done"

static void start_broker(struct kit_broker *b, const char *instance, const char *conf)
{
	ck_assert_msg(kit_broker_start(b, W.db, instance, conf) == 0, "broker %s did not start",
	              instance);
}

/* Starts a gated command on ws as a stream and waits for its "ready". */
static void start_gated(struct kit_conn *s, int port, const char *ws, const char *token,
                        const char *gate, char *body_out[1])
{
	const char *argv[] = {"sh", "-c", GATED, gate, NULL};
	struct kit_req q = {.ws = ws, .token = token};
	struct kit_frames f;

	*body_out = sv_body(argv, json_pack("{s:i}", "timeout_s", 100));
	q.body = *body_out;
	ck_assert_int_eq(kit_stream_open(s, port, &q), 0);
	kit_frames_init(&f);
	sv_stream_until(s, &f, sv_out_has, "ready", "ready from the gated command");
	kit_frames_free(&f);
}

/* Opens the gate and checks the gated command ended well. */
static void finish_gated(struct kit_conn *s, const char *gate, const char *db)
{
	struct kit_resp r;
	struct kit_frames f;
	char *v;

	sv_touch(gate);
	kit_stream_finish(s, &r);
	sv_stream(&r, &f);
	ck_assert_str_eq(f.out, "ready\ndone\n");
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	v = sv_row(db, r.rid, "status");
	ck_assert_str_eq(v, "exited");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
}

static void exec_touch(struct kit_resp *r, int port, const char *ws, const char *token,
                       const char *marker, int timeout_s)
{
	const char *argv[] = {"touch", marker, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", timeout_s));
	struct kit_req q = {.ws = ws, .token = token, .body = body};

	sv_http(port, &q, r);
	free(body);
}

/* A streamed exec of one argument, checked as a stream. */
static void exec_argv_port(struct kit_resp *r, int port, const char *ws, const char *token,
                           const char *arg0)
{
	const char *argv[] = {arg0, NULL};
	char *body = sv_body(argv, NULL);
	struct kit_req q = {.ws = ws, .token = token, .body = body};
	struct kit_frames f;

	sv_http(port, &q, r);
	sv_stream(r, &f);
	kit_frames_free(&f);
	free(body);
}

START_TEST(org_limit_is_429_with_retry_after)
{
	struct kit_broker b = {0};
	char *gate = kit_tmp_path("gate429"), *marker = kit_tmp_path("m429"), *body, hv[64];
	struct kit_conn hold;
	struct kit_resp r;
	struct kit_frames f;

	start_broker(&b, "eb-life-429", "org_max_concurrent_execs = 1\n");
	start_gated(&hold, b.port, "ws-a1", W.tok_org, gate, &body);
	/* acme has its one exec running */
	exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
	sv_error(W.db, &r, 429, "too_many_requests", "denied", "too_many_requests");
	ck_assert_msg(kit_header(&r, "Retry-After", hv, sizeof(hv)) != NULL && atoi(hv) >= 1 &&
	                  strspn(hv, "0123456789") == strlen(hv),
	              "Retry-After: %s", r.head);
	ck_assert_msg(!kit_file_exists(marker), "a refused command ran");
	kit_resp_free(&r);
	/* the limit is per org: globex still runs */
	exec_touch(&r, b.port, "ws-b1", W.tok_other, marker, 10);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert(kit_file_exists(marker));
	unlink(marker);
	kit_frames_free(&f);
	kit_resp_free(&r);
	/* and acme's slot comes back when its exec ends */
	finish_gated(&hold, gate, W.db);
	exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
	sv_stream(&r, &f);
	ck_assert(kit_file_exists(marker));
	kit_frames_free(&f);
	kit_resp_free(&r);
	kit_broker_kill(&b);
	unlink(marker);
	unlink(gate);
	free(body);
	free(marker);
	free(gate);
}
END_TEST

START_TEST(full_pool_is_503_pool_exhausted)
{
	struct kit_broker b = {0};
	char *gate = kit_tmp_path("gate503"), *marker = kit_tmp_path("m503"), *body;
	struct kit_conn hold;
	struct kit_resp r;

	start_broker(&b, "eb-life-pool",
	             "pool_max_sessions_per_host = 1\npool_max_channels_per_session = 1\n");
	start_gated(&hold, b.port, "ws-a1", W.tok_org, gate, &body);
	/* another org, the same host: admitted, but no slot frees before its deadline */
	exec_touch(&r, b.port, "ws-b1", W.tok_other, marker, 2);
	sv_error(W.db, &r, 503, "pool_exhausted", "failed_to_start", "*");
	ck_assert_msg(!kit_file_exists(marker), "the command ran");
	kit_resp_free(&r);

	/* A client that leaves while its exec waits for a slot: the command never runs, even
	 * once the slot is free. */
	{
		const char *argv[] = {"touch", marker, NULL};
		char *b2 = sv_body(argv, json_pack("{s:i}", "timeout_s", 20)), rid[80], *st;
		struct kit_req q = {.ws = "ws-b1", .token = W.tok_other, .body = b2};
		struct kit_conn s;
		long long end = kit_now_ms() + KIT_WAIT_MS;

		ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
		snprintf(rid, sizeof(rid), "%s", s.r.rid);
		while (sv_rows(W.db, rid) == 0) { /* admitted, waiting for the pool */
			ck_assert_msg(kit_now_ms() < end, "no audit row for %s", rid);
			kit_sleep_ms(20);
		}
		kit_stream_abort(&s);
		st = sv_row_final(W.db, rid);
		ck_assert_msg(strcmp(st, "cancelled") == 0, "a client gone while queued: row %s",
		              st);
		free(st);
		free(b2);
	}
	finish_gated(&hold, gate, W.db);
	kit_sleep_ms(500); /* time for a wrongly kept waiter to take the free slot */
	ck_assert_msg(!kit_file_exists(marker), "the command of a client that left ran");
	kit_broker_kill(&b);
	unlink(gate);
	free(body);
	free(marker);
	free(gate);
}
END_TEST

/* stdout passes the cap, stderr does not; the command still ends with its own code. */
START_TEST(output_is_capped_and_the_exit_code_is_real)
{
	static const char *const argv[] = {
	    "sh", "-c",
	    "head -c 5000 /dev/zero | tr '\\0' a; head -c 300 /dev/zero | tr '\\0' b >&2; exit 7",
	    NULL};
	struct kit_broker b = {0};
	char *body = sv_body(argv, NULL), *v;
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_resp r;
	struct kit_frames f;
	json_t *last, *tr, *o;
	int seen_trunc_at = -1;

	start_broker(&b, "eb-life-cap", "output_cap_bytes = 1000\n");
	sv_http(b.port, &q, &r);
	sv_stream(&r, &f);
	last = sv_last(&f);
	ck_assert_int_eq(sv_int(last, "exit_code"), 7);
	ck_assert_int_eq(f.out_trunc, 1);
	ck_assert_int_eq(f.err_trunc, 0);
	ck_assert_msg(f.out_len == 1000, "%zu stdout bytes sent, cap 1000", f.out_len);
	ck_assert_int_eq(f.err_len, 300);
	ck_assert_int_eq(sv_int(last, "stdout_bytes"), 5000);
	ck_assert_int_eq(sv_int(last, "stderr_bytes"), 300);
	tr = json_object_get(last, "truncated");
	ck_assert_msg(json_is_true(json_object_get(tr, "stdout")) &&
	                  json_is_false(json_object_get(tr, "stderr")),
	              "%s", r.body);
	/* no stdout data after the truncated frame */
	for (size_t i = 0; i < kit_nframes(&f); i++) {
		json_t *fr = kit_frame(&f, i);
		const char *st = sv_str(fr, "stream");
		if (st && strcmp(st, "stdout") == 0 &&
		    json_is_true(json_object_get(fr, "truncated")))
			seen_trunc_at = (int)i;
		else if (st && strcmp(st, "stdout") == 0)
			ck_assert_msg(seen_trunc_at < 0,
			              "stdout data after its truncated frame: %s", r.body);
	}
	v = sv_row(W.db, r.rid,
	           "concat_ws(' ', status, exit_code, stdout_bytes, stderr_bytes, "
	           "stdout_truncated::text, stderr_truncated::text)");
	ck_assert_str_eq(v, "exited 7 5000 300 true false");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);

	q.accept = "application/json";
	sv_http(b.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	o = sv_json(&r);
	ck_assert_int_eq(sv_int(o, "exit_code"), 7);
	ck_assert_msg(sv_str(o, "stdout") && strlen(sv_str(o, "stdout")) == 1000, "%s", r.body);
	ck_assert_msg(json_is_true(json_object_get(o, "stdout_truncated")) &&
	                  json_is_false(json_object_get(o, "stderr_truncated")) &&
	                  json_is_true(json_object_get(o, "truncated")),
	              "%s", r.body);
	ck_assert_int_eq(sv_int(o, "stdout_bytes"), 5000);
	json_decref(o);
	kit_resp_free(&r);
	kit_broker_kill(&b);
	free(body);
}
END_TEST

/* The broker's resident memory in KiB. */
static long rss_kib(pid_t pid)
{
	char path[64], *s, *p;
	long v = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	s = kit_file_read(path, NULL);
	ck_assert_ptr_nonnull(s);
	p = strstr(s, "VmRSS:");
	if (p != NULL)
		v = strtol(p + 6, NULL, 10);
	free(s);
	ck_assert_int_gt(v, 0);
	return v;
}

/* A client that reads nothing for a while: the command is paused (the SSH window closes)
 * instead of the broker buffering its 64 MiB of output, then everything arrives. */
START_TEST(slow_client_is_backpressure_not_memory)
{
	enum { MIB = 1024 * 1024, OUT = 64 * MIB };
	static const char *const argv[] = {"sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' y",
	                                   NULL};
	struct kit_broker b = {0};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100)), rid[80], *st;
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body, .rcvbuf = 4096};
	struct kit_conn s;
	struct kit_resp r;
	struct kit_frames f;
	long base, peak = 0;
	long long end;

	start_broker(&b, "eb-life-slow", "output_cap_bytes = 134217728\n");
	/* warm up: the SSH session exists, the loop has run an exec */
	exec_argv_port(&r, b.port, "ws-a1", W.tok_org, "true");
	kit_resp_free(&r);
	base = rss_kib(b.pid);
	ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
	snprintf(rid, sizeof(rid), "%s", s.r.rid);
	/* Two seconds of reading nothing: far more than it takes to produce 32 MiB. */
	end = kit_now_ms() + 2000;
	while (kit_now_ms() < end) {
		long v = rss_kib(b.pid);
		if (v > peak)
			peak = v;
		kit_sleep_ms(50);
	}
	st = sv_row(W.db, rid, "status");
	ck_assert_msg(strcmp(st, "running") == 0, "the exec ended (%s) with its client not reading",
	              st);
	free(st);
	/* Well under what the command wrote (ASan alone adds some 16 MiB) */
	ck_assert_msg(peak - base < OUT / 2 / 1024,
	              "the broker grew by %ld KiB for a client that reads nothing", peak - base);
	kit_stream_finish(&s, &r);
	ck_assert_msg(r.complete, "the response stopped after %zu body bytes (status %d)",
	              r.body_len, r.status);
	sv_stream(&r, &f);
	ck_assert_int_eq(f.out_len, OUT);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	st = sv_row(W.db, rid, "status || ' ' || stdout_bytes");
	ck_assert_str_eq(st, "exited 67108864");
	free(st);
	kit_frames_free(&f);
	kit_resp_free(&r);
	kit_broker_kill(&b);
	free(body);
}
END_TEST

START_TEST(concurrent_execs_on_four_hosts_all_complete)
{
	static struct kit_req q[NCONC];
	static struct kit_resp rs[NCONC];
	static char rids[NCONC][48], wss[NCONC][8];
	const char *tok[4] = {W.tok_org, W.tok_org, W.tok_other, W.tok_other};
	char ws[8], n[16], rid[64], want[160], *v, *sql, *more;
	struct kit_resp r;
	struct kit_frames f;

	for (int i = 0; i < NCONC; i++) {
		snprintf(n, sizeof(n), "%d", i);
		const char *argv[] = {"sh", "-c", "printf '%s\\n' \"$0\"; exit $(($0 % 7))", n,
		                      NULL};
		snprintf(wss[i], sizeof(wss[i]), "ws-c%d", i % 4);
		snprintf(rids[i], sizeof(rids[i]), "conc-%d-%d", (int)getpid(), i);
		q[i] = (struct kit_req){.ws = wss[i],
		                        .token = tok[i % 4],
		                        .body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100)),
		                        .rid = rids[i]};
	}
	ck_assert_int_eq(kit_http_parallel(B.port, q, NCONC, rs), 0);
	for (int i = 0; i < NCONC; i++)
		free((char *)q[i].body);
	sql = strdup("SELECT count(*) FROM exec_audit a JOIN (VALUES ");
	for (int i = 0; i < NCONC; i++) {
		r = rs[i];
		sv_stream(&r, &f);
		snprintf(ws, sizeof(ws), "ws-c%d", i % 4);
		snprintf(want, sizeof(want), "%d\n", i);
		ck_assert_str_eq(sv_str(kit_frame(&f, 0), "workspace_id"), ws);
		ck_assert_str_eq(f.out, want);
		ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), i % 7);
		/* (request id, exec id, workspace, exit code, stdout bytes) as the client saw them
		 */
		ck_assert_int_ge(asprintf(&more, "%s%s('%s', '%s'::uuid, '%s', %d, %zu)", sql,
		                          i ? ", " : "", r.rid, sv_str(kit_frame(&f, 0), "exec_id"),
		                          ws, i % 7, strlen(want)),
		                 0);
		free(sql);
		sql = more;
		kit_frames_free(&f);
		kit_resp_free(&r);
	}
	ck_assert_int_ge(asprintf(&more,
	                          "%s) v(rid, eid, ws, code, nout) ON a.request_id = v.rid "
	                          "WHERE a.exec_id = v.eid AND a.workspace_id = v.ws AND "
	                          "a.status = 'exited' AND a.exit_code = v.code AND "
	                          "a.stdout_bytes = v.nout AND a.stderr_bytes = 0",
	                          sql),
	                 0);
	free(sql);
	snprintf(rid, sizeof(rid), "conc-%d-%%", (int)getpid());
	snprintf(want, sizeof(want), "%d", NCONC);
	v = sv_query(W.db, more);
	ck_assert_msg(strcmp(v, want) == 0, "%s of %d rows as the clients saw them", v, NCONC);
	free(v);
	free(more);
	snprintf(want, sizeof(want), "SELECT count(*) FROM exec_audit WHERE request_id LIKE '%s'",
	         rid);
	v = sv_query(W.db, want);
	ck_assert_int_eq(atoi(v), NCONC);
	free(v);
}
END_TEST

/* Whether a fresh connection still gets a 200 from /healthz. */
static bool healthz_ok(int port)
{
	struct kit_req q = {.method = "GET", .path = "/healthz", .max_time_s = 10};
	struct kit_resp r;
	bool ok;

	sv_http(port, &q, &r);
	ok = r.status == 200;
	kit_resp_free(&r);
	return ok;
}

static const int stop_signals[] = {SIGTERM, SIGINT};

START_TEST(sigterm_lets_running_execs_finish)
{
	struct kit_broker b = {0};
	char *gate = kit_tmp_path("gateterm"), *marker = kit_tmp_path("mterm"), *body;
	struct kit_conn hold;
	struct kit_resp r;
	long long end;

	start_broker(&b, "eb-life-term", "shutdown_grace_s = 60\n");
	start_gated(&hold, b.port, "ws-a1", W.tok_org, gate, &body);
	ck_assert_int_eq(kill(b.pid, stop_signals[_i]), 0);
	/* It stops accepting. */
	end = kit_now_ms() + KIT_WAIT_MS;
	while (healthz_ok(b.port)) {
		ck_assert_msg(kit_now_ms() < end,
		              "new connections still served %d ms after SIGTERM", KIT_WAIT_MS);
		kit_sleep_ms(50);
	}
	exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
	ck_assert_msg(r.status == 0 || r.status == 503, "exec after SIGTERM: %d %s", r.status,
	              r.body);
	if (r.status == 503)
		sv_error(W.db, &r, 503, "shutting_down", NULL, NULL);
	ck_assert_msg(!kit_file_exists(marker), "a command started after SIGTERM");
	kit_resp_free(&r);
	ck_assert_msg(kit_broker_wait(&b, 0) != 0, "the broker exited with an exec running");
	/* The running exec finishes within the grace, then the broker exits 0. */
	finish_gated(&hold, gate, W.db);
	ck_assert_msg(kit_broker_wait(&b, KIT_WAIT_MS) == 0, "no exit after its last exec");
	ck_assert_msg(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0, "broker status %d",
	              b.status);
	unlink(gate);
	free(body);
	free(marker);
	free(gate);
}
END_TEST

/* With shutdown_delay_s, SIGTERM first only turns /readyz to 503 ("shutting down"): new
 * connections and execs are still served for the delay, then the broker drains as without
 * it. */
START_TEST(sigterm_with_a_delay_serves_until_it_is_over)
{
	struct kit_broker b = {0};
	struct kit_req rq = {.method = "GET", .path = "/readyz"};
	char *marker = kit_tmp_path("mdelay");
	struct kit_resp r;
	long long t0;

	start_broker(&b, "eb-life-delay", "shutdown_delay_s = 6\nshutdown_grace_s = 5\n");
	sv_http(b.port, &rq, &r);
	ck_assert_int_eq(r.status, 200);
	kit_resp_free(&r);
	t0 = kit_now_ms();
	ck_assert_int_eq(kill(b.pid, SIGTERM), 0);
	for (;;) { /* the signal is handled on the loop's next turn */
		sv_http(b.port, &rq, &r);
		if (r.status != 200)
			break;
		kit_resp_free(&r);
		ck_assert_msg(kit_now_ms() - t0 < 3000, "readyz still 200 3 s after SIGTERM");
		kit_sleep_ms(50);
	}
	ck_assert_msg(r.status == 503 && strstr(r.body, "shutting down") != NULL,
	              "readyz while leaving: %d %s", r.status, r.body);
	kit_resp_free(&r);
	/* A new connection, and an exec on it, are still served. */
	exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
	ck_assert_msg(r.status == 200, "exec while leaving: %d %s", r.status, r.body);
	ck_assert(kit_file_exists(marker));
	kit_resp_free(&r);
	ck_assert(healthz_ok(b.port));
	/* Then it stops accepting and exits 0, not before the delay. */
	ck_assert_msg(kit_broker_wait(&b, KIT_WAIT_MS) == 0, "no exit after the delay");
	ck_assert_msg(kit_now_ms() - t0 >= 5900, "exited %lld ms after SIGTERM, before the delay",
	              kit_now_ms() - t0);
	ck_assert_msg(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0, "broker status %d",
	              b.status);
	unlink(marker);
	free(marker);
}
END_TEST

START_TEST(sigterm_past_the_grace_kills_with_shutdown)
{
	struct kit_broker b = {0};
	char *pidf = kit_tmp_path("shutdown.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100)), *v;
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_conn s;
	struct kit_frames f;
	struct kit_resp r;
	pid_t pids[2];

	start_broker(&b, "eb-life-grace", "shutdown_grace_s = 1\npool_kill_grace_s = 1\n");
	ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
	sv_wait_sleeper(&s, pidf, pids);
	ck_assert_int_eq(kill(b.pid, SIGTERM), 0);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_msg(sv_str(sv_last(&f), "error.code") &&
	                  strcmp(sv_str(sv_last(&f), "error.code"), "shutdown") == 0,
	              "last frame: %s", r.body);
	v = sv_row(W.db, r.rid, "status");
	ck_assert_str_eq(v, "shutdown");
	free(v);
	ck_assert_msg(kit_broker_wait(&b, KIT_WAIT_MS) == 0, "no exit after the grace");
	ck_assert_msg(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0, "broker status %d",
	              b.status);
	sv_pid_gone(pids[0], "a command killed at shutdown");
	sv_pid_gone(pids[1], "its child");
	kit_frames_free(&f);
	kit_resp_free(&r);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

/* The same in the buffered mode: the command ran, so the reply is 502 shutdown with its
 * exec_id, never a 503 (which says nothing ran, and a balancer would send it again). */
START_TEST(a_buffered_exec_killed_at_shutdown_is_502_not_503)
{
	struct kit_broker b = {0};
	char *pidf = kit_tmp_path("shutdownbuf.pid");
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100)), *v;
	struct kit_req q = {
	    .ws = "ws-a1", .token = W.tok_org, .body = body, .accept = "application/json"};
	struct kit_conn s;
	struct kit_resp r;
	pid_t pids[2];
	json_t *o;

	start_broker(&b, "eb-life-gracebuf", "shutdown_grace_s = 1\npool_kill_grace_s = 1\n");
	ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
	sv_read_pids(pidf, pids);
	ck_assert_int_eq(kill(b.pid, SIGTERM), 0);
	kit_stream_finish(&s, &r);
	ck_assert_msg(r.status == 502, "buffered exec killed at shutdown: %d %s", r.status, r.body);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "error.code"), "shutdown");
	ck_assert_ptr_nonnull(sv_str(o, "exec_id"));
	json_decref(o);
	v = sv_row(W.db, r.rid, "status");
	ck_assert_str_eq(v, "shutdown");
	free(v);
	ck_assert_msg(kit_broker_wait(&b, KIT_WAIT_MS) == 0, "no exit after the grace");
	sv_pid_gone(pids[0], "a command killed at shutdown");
	kit_resp_free(&r);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

/* A broker killed with SIGKILL leaves its row running; its next start (same
 * instance_name) marks it abandoned, and leaves alone the running exec of another broker
 * on the same database. */
START_TEST(killed_broker_rows_are_abandoned_at_next_start)
{
	struct kit_broker b = {0};
	char *gate_k = kit_tmp_path("gatekill"), *gate_m = kit_tmp_path("gatemain"), *bk, *bm, *v;
	struct kit_conn sk, sm;
	struct kit_resp r;
	struct kit_frames f;
	char rid_k[80], rid_m[80];

	start_broker(&b, "eb-life-kill", NULL);
	start_gated(&sm, B.port, "ws-a1", W.tok_org, gate_m, &bm);
	start_gated(&sk, b.port, "ws-a2", W.tok_org, gate_k, &bk);
	snprintf(rid_k, sizeof(rid_k), "%s", sk.r.rid);
	snprintf(rid_m, sizeof(rid_m), "%s", sm.r.rid);
	kit_broker_kill(&b);
	kit_stream_finish(&sk, &r);
	kit_frames_init(&f);
	kit_frames_parse(&f, r.body, r.body_len);
	ck_assert_msg(f.terminal == 0, "a last frame from a killed broker: %s", r.body);
	kit_frames_free(&f);
	kit_resp_free(&r);
	v = sv_row(W.db, rid_k, "status");
	ck_assert_str_eq(v, "running");
	free(v);

	start_broker(&b, "eb-life-kill", NULL); /* same name, same port */
	v = sv_row(W.db, rid_k, "status || ' ' || (finished_at IS NOT NULL)::text");
	ck_assert_str_eq(v, "abandoned true");
	free(v);
	v = sv_row(W.db, rid_m, "status");
	ck_assert_str_eq(v, "running");
	free(v);
	finish_gated(&sm, gate_m, W.db);
	sv_touch(gate_k); /* the orphaned command ends too */
	kit_broker_kill(&b);
	unlink(gate_k);
	unlink(gate_m);
	free(bk);
	free(bm);
	free(gate_k);
	free(gate_m);
}
END_TEST

static void wait_ready(int port, int want)
{
	struct kit_req q = {.method = "GET", .path = "/readyz", .max_time_s = 10};
	long long end = kit_now_ms() + KIT_WAIT_MS;
	struct kit_resp r;

	for (;;) {
		sv_http(port, &q, &r);
		if (r.status == want)
			break;
		ck_assert_msg(kit_now_ms() < end, "/readyz %d, want %d, after %d ms: %s", r.status,
		              want, KIT_WAIT_MS, r.body);
		kit_resp_free(&r);
		kit_sleep_ms(100);
	}
	kit_resp_free(&r);
}

/* With PostgreSQL down no token can be checked and no audit row written: the broker
 * answers 503 and runs nothing; it is not ready, but alive, and recovers. */
START_TEST(postgres_down_is_503_and_nothing_runs)
{
	struct kit_broker b = {0};
	char *marker = kit_tmp_path("pgdown");
	struct kit_resp r;
	struct kit_frames f;
	char rid[80];

	start_broker(&b, "eb-life-pgdown", NULL);
	ck_assert_int_eq(th_pg_stop(&th.pg), 0);
	exec_touch(&r, b.port, "ws-a1", W.tok_org, marker, 10);
	snprintf(rid, sizeof(rid), "%s", r.rid);
	ck_assert_msg(r.status == 503, "with PostgreSQL down: %d %s", r.status, r.body);
	{
		json_t *o = sv_json(&r);
		ck_assert_msg(sv_str(o, "error.code") &&
		                  strcmp(sv_str(o, "error.code"), "audit_unavailable") == 0,
		              "%s", r.body);
		json_decref(o);
	}
	kit_resp_free(&r);
	kit_sleep_ms(1000); /* a command started anyway would have touched the file by now */
	ck_assert_msg(!kit_file_exists(marker), "the command ran with PostgreSQL down");
	wait_ready(b.port, 503);
	ck_assert(healthz_ok(b.port));
	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	wait_ready(b.port, 200);
	ck_assert_int_eq(sv_rows(W.db, rid), 0);
	ck_assert(!kit_file_exists(marker));
	exec_touch(&r, b.port, "ws-a1", W.tok_org, marker, 10);
	sv_stream(&r, &f);
	ck_assert(kit_file_exists(marker));
	kit_frames_free(&f);
	kit_resp_free(&r);
	kit_broker_kill(&b);
	unlink(marker);
	free(marker);
}
END_TEST

/* PostgreSQL goes away while a command runs: the completion waits and is retried, the
 * last frame comes only once the row is final. */
/* A command on broker b (timeout_s) that ends while PostgreSQL is away: it is stopped before
 * the command's gate opens and kept away away_ms after the command ended, with no last frame
 * meanwhile (the row cannot be completed); once it is back, the exit frame comes and the row
 * is 'exited 0'. rid receives the request's id. */
static void command_ends_while_postgres_is_away(struct kit_broker *b, int timeout_s, int away_ms,
                                                char rid[80])
{
	char *gate = kit_tmp_path("gatepg"), *done = kit_tmp_path("donepg"), *v, *line;
	const char *argv[] = {"sh",
	                      "-c",
	                      "echo ready; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo bye; "
	                      "touch \"$1\"",
	                      gate,
	                      done,
	                      NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", timeout_s));
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_conn s;
	struct kit_frames f;
	struct kit_resp r;
	long long end;

	ck_assert_int_eq(kit_stream_open(&s, b->port, &q), 0);
	snprintf(rid, 80, "%s", s.r.rid);
	kit_frames_init(&f);
	sv_stream_until(&s, &f, sv_out_has, "ready", "ready");
	ck_assert_int_eq(th_pg_stop(&th.pg), 0);
	sv_touch(gate);
	end = kit_now_ms() + KIT_WAIT_MS;
	while (!kit_file_exists(done)) {
		ck_assert_msg(kit_now_ms() < end, "the command did not finish");
		kit_sleep_ms(20);
	}
	end = kit_now_ms() + away_ms;
	while (kit_now_ms() < end && !kit_stream_over(&s)) {
		line = kit_stream_line(&s, 100);
		if (line != NULL)
			kit_frames_add(&f, line);
		free(line);
	}
	ck_assert_msg(f.terminal == 0, "a last frame before the audit row could be final: %s",
	              s.r.body ? s.r.body : "");
	kit_frames_free(&f);
	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	ck_assert_str_eq(f.out, "ready\nbye\n");
	v = sv_row(W.db, rid, "status || ' ' || exit_code");
	ck_assert_str_eq(v, "exited 0");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	unlink(gate);
	unlink(done);
	free(gate);
	free(done);
	free(body);
}

/* PostgreSQL stays away longer than one query may wait (db/pgasync), so that completing the
 * row has to be retried. */
START_TEST(postgres_down_mid_exec_completion_is_retried)
{
	struct kit_broker b = {0};
	char rid[80];

	start_broker(&b, "eb-life-pgmid", NULL);
	command_ends_while_postgres_is_away(&b, 100, 8000, rid);
	kit_broker_kill(&b);
}
END_TEST

/* Makes every session of the cluster read-only (a standby would refuse writes alike), or
 * writable again: default_transaction_read_only, reloaded. */
static void cluster_read_only(bool on)
{
	ck_assert_int_eq(th_pg_exec("postgres", on ? "ALTER SYSTEM SET default_transaction_read_only"
	                                            " = on"
	                                          : "ALTER SYSTEM RESET default_transaction_read_only"),
	                 0);
	ck_assert_int_eq(th_pg_exec("postgres", "SELECT pg_reload_conf()"), 0);
}

/* A completion refused because the server is read-only (25006, what a standby answers
 * while a primary is being replaced) is retried until it lands; the last frame waits for
 * it: the row is final before the client hears the end. */
START_TEST(a_read_only_database_delays_the_last_frame_until_the_row_lands)
{
	struct kit_broker b = {0};
	char *gate = kit_tmp_path("gatero"), *body, *v;
	struct kit_conn s;
	struct kit_resp r;
	struct kit_frames f;
	char *line, *running;
	bool early = false;

	start_broker(&b, "eb-life-ro", NULL);
	start_gated(&s, b.port, "ws-a1", W.tok_org, gate, &body);
	/* Nothing may fail the test while the cluster is read-only: every later test needs it
	 * writable. What is seen is asserted once it is writable again. */
	cluster_read_only(true);
	sv_touch(gate);
	/* the command ends ("done"), but no last frame comes while the row cannot be written */
	while ((line = kit_stream_line(&s, 3000)) != NULL) {
		early = early || strstr(line, "\"exit_code\"") != NULL;
		free(line);
	}
	running = tu_query(W.db, "SELECT count(*) FROM exec_audit WHERE broker_instance = "
	                         "'eb-life-ro' AND status = 'running'");
	cluster_read_only(false);
	ck_assert_msg(!early, "the last frame came while the database was read-only");
	ck_assert_str_eq(running != NULL ? running : "(error)", "1");
	free(running);
	kit_stream_finish(&s, &r);
	sv_stream(&r, &f);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	v = sv_row(W.db, r.rid, "status");
	ck_assert_str_eq(v, "exited");
	free(v);
	kit_frames_free(&f);
	kit_resp_free(&r);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	unlink(gate);
	free(gate);
	free(body);
}
END_TEST

/* The run: the sessions of an idle pool killed on the host (sshd's per-connection
 * processes, not its listener), then four execs at once. Each must move to a new session at
 * once and run, in every round: none waits out its timeout on the dead session. */
START_TEST(execs_after_the_pooled_sessions_died_all_run)
{
	const char *argv[] = {"echo", "x", NULL};
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 10));
	struct kit_req q[4];
	struct kit_resp warm, r[4];

	for (int i = 0; i < 4; i++)
		q[i] = (struct kit_req){
		    .ws = "ws-cut", .token = W.tok_org, .body = body, .accept = "application/json"};
	exec_argv_port(&warm, B.port, "ws-cut", W.tok_org, "true");
	kit_resp_free(&warm);
	for (int round = 0; round < 4; round++) {
		ck_assert_int_eq(th_sshd_cut_sessions(&W.cut), 0);
		ck_assert_int_eq(kit_http_parallel(B.port, q, 4, r), 0);
		for (int i = 0; i < 4; i++) {
			json_t *o;

			ck_assert_msg(r[i].status == 200, "round %d, exec %d: %d %s", round, i,
			              r[i].status, r[i].body);
			o = sv_json(&r[i]);
			ck_assert_int_eq(sv_int(o, "exit_code"), 0);
			ck_assert_str_eq(sv_str(o, "stdout"), "x\n");
			json_decref(o);
			kit_resp_free(&r[i]);
		}
	}
	free(body);
}
END_TEST

/* Waits until pid is gone, at most until CLOCK_MONOTONIC ms by; true if it went. */
static bool gone_by(pid_t pid, long long by)
{
	while (kit_pid_alive(pid)) {
		if (kit_now_ms() >= by)
			return false;
		kit_sleep_ms(50);
	}
	return true;
}

/* A broker SIGKILLed while its commands run: its connection closes, and the session's
 * watcher on the host ends them then, far before their deadline (TERM to the group), and
 * what ignores TERM with KILL after the kill grace, no later. */
START_TEST(a_killed_brokers_commands_end_when_it_goes)
{
	static const char *const scripts[] = {SV_SLEEPER, "trap '' TERM; " SV_SLEEPER};
	struct kit_broker b = {0};
	char *pidf = kit_tmp_path("k7pids"), *body;
	const char *argv[] = {"sh", "-c", scripts[_i], pidf, NULL};
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org};
	struct kit_conn s;
	pid_t pids[2];
	long long by;

	start_broker(&b, "eb-life-k7", "pool_kill_grace_s = 3\n");
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 600));
	q.body = body;
	ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
	sv_wait_sleeper(&s, pidf, pids);
	kit_broker_kill(&b);
	/* TERM at once; KILL 3 s later for a group that ignores TERM; 2 s of slack. */
	by = kit_now_ms() + (_i == 0 ? 0 : 3000) + 2000;
	for (int i = 0; i < 2; i++)
		ck_assert_msg(gone_by(pids[i], by), "pid %d outlived its broker by more than %d s",
		              (int)pids[i], _i == 0 ? 2 : 5);
	kit_stream_abort(&s);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

/* The network between broker and host goes silent (the broker is stopped: its connection
 * stays open and says nothing): nothing tells the host, and the watcher ends the commands
 * at their deadline by its own clock, KILL after the kill grace for what ignores TERM. */
START_TEST(a_silent_brokers_commands_end_at_their_deadline)
{
	static const char *const scripts[] = {SV_SLEEPER, "trap '' TERM; " SV_SLEEPER};
	struct kit_broker b = {0};
	char *pidf = kit_tmp_path("k8pids"), *body;
	const char *argv[] = {"sh", "-c", scripts[_i], pidf, NULL};
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org};
	struct kit_conn s;
	pid_t pids[2];
	long long t0, by;

	start_broker(&b, "eb-life-k8", "pool_kill_grace_s = 3\n");
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 3));
	q.body = body;
	t0 = kit_now_ms();
	ck_assert_int_eq(kit_stream_open(&s, b.port, &q), 0);
	sv_wait_sleeper(&s, pidf, pids);
	ck_assert_int_eq(kill(b.pid, SIGSTOP), 0);
	/* TERM at the deadline; KILL 3 s later for a group that ignores TERM; 2 s of slack. */
	by = t0 + 3000 + (_i == 0 ? 0 : 3000) + 2000;
	for (int i = 0; i < 2; i++)
		ck_assert_msg(gone_by(pids[i], by),
		              "pid %d outlived its deadline (3 s%s) by more than 2 s", (int)pids[i],
		              _i == 0 ? "" : " and the 3 s kill grace");
	kill(b.pid, SIGCONT);
	kit_stream_abort(&s);
	kit_broker_kill(&b);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

/* Waits up to ms for the row of rid to have status; returns the status it has then. */
static char *row_becomes(const char *rid, const char *status, int ms)
{
	long long end = kit_now_ms() + ms;
	char *v;

	for (;;) {
		v = sv_row(W.db, rid, "status");
		if (strcmp(v, status) == 0 || kit_now_ms() >= end)
			return v;
		free(v);
		kit_sleep_ms(200);
	}
}

/* A broker killed for good (it never comes back, not even under its name): another broker
 * on the database marks the rows it left running 'abandoned' once they are past their
 * deadline, without waiting for a restart. */
START_TEST(rows_of_a_broker_gone_for_good_are_swept_by_another)
{
	struct kit_broker gone = {0}, live = {0};
	char *pidf = kit_tmp_path("sweeppids"), *body, *v;
	const char *argv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org};
	struct kit_conn s;
	pid_t pids[2];
	char rid[80];

	start_broker(&gone, "eb-life-gone", "broker_heartbeat_s = 1\n");
	start_broker(&live, "eb-life-live", "broker_heartbeat_s = 1\npool_kill_grace_s = 1\n");
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 2));
	q.body = body;
	ck_assert_int_eq(kit_stream_open(&s, gone.port, &q), 0);
	snprintf(rid, sizeof(rid), "%s", s.r.rid);
	sv_wait_sleeper(&s, pidf, pids);
	kit_broker_kill(&gone);
	kit_stream_abort(&s);
	/* Past its deadline (2 s and the sweeper's 1 s grace) and its broker silent for three
	 * heartbeats and 10 s: about 14 s. */
	v = row_becomes(rid, "abandoned", 60000);
	ck_assert_msg(strcmp(v, "abandoned") == 0, "the row of the gone broker is %s", v);
	free(v);
	v = sv_row(W.db, rid, "(finished_at IS NOT NULL)::text || ' ' || broker_instance");
	ck_assert_str_eq(v, "true eb-life-gone");
	free(v);
	ck_assert_int_eq(kit_broker_stop(&live), 0);
	unlink(pidf);
	free(pidf);
	free(body);
}
END_TEST

/* Rows a broker finished but never linked into the chain (it died between the two) are
 * linked by another broker's janitor once they are SEAL_STALE_S old; fresher ones are left
 * to their own broker. */
START_TEST(finished_rows_a_gone_broker_never_linked_are_linked_by_another)
{
	struct kit_broker live = {0};
	char *v;

	ck_assert_int_eq(
	    kit_sql(W.db, "INSERT INTO exec_audit (exec_id, request_id, workspace_id, org_id, "
	                  "actor, actor_kind, argv, status, started_at, broker_instance) VALUES "
	                  "(gen_random_uuid(), 'r-seal-old', 'ws-a1', 'acme', 'token:x', 'org', "
	                  "'{true}', 'running', now() - interval '2 min', 'eb-life-dead'), "
	                  "(gen_random_uuid(), 'r-seal-new', 'ws-a1', 'acme', 'token:x', 'org', "
	                  "'{true}', 'running', now(), 'eb-life-dead')"),
	    0);
	ck_assert_int_eq(
	    kit_sql(W.db, "UPDATE exec_audit SET status = 'exited', exit_code = 0, duration_ms = "
	                  "1, finished_at = started_at, seal_pending = true WHERE request_id "
	                  "LIKE 'r-seal-%'"),
	    0);
	start_broker(&live, "eb-life-sealer", "broker_heartbeat_s = 1\n");
	for (int i = 0; i < 100; i++) {
		v = sv_row(W.db, "r-seal-old", "(chain_seq IS NOT NULL)::text");
		bool linked = strcmp(v, "true") == 0;
		free(v);
		if (linked)
			break;
		kit_sleep_ms(100);
	}
	v = sv_row(W.db, "r-seal-old", "(chain_seq IS NOT NULL)::text || ' ' || seal_pending");
	ck_assert_str_eq(v, "true false");
	free(v);
	v = sv_row(W.db, "r-seal-new", "(chain_seq IS NULL)::text || ' ' || seal_pending");
	ck_assert_str_eq(v, "true true");
	free(v);
	ck_assert_int_eq(kit_broker_stop(&live), 0);
}
END_TEST

/* PostgreSQL away for longer than any retry used to last (35 s) while a command ends: the
 * row is completed once it is back, with the real exit code, and the last frame waits for it;
 * another live broker sweeping meanwhile does not take the row for abandoned. */
START_TEST(completion_outlives_a_long_database_outage)
{
	struct kit_broker b = {0}, other = {0};
	char rid[80], *v;

	start_broker(&b, "eb-life-long", "broker_heartbeat_s = 1\npool_kill_grace_s = 1\n");
	start_broker(&other, "eb-life-other", "broker_heartbeat_s = 1\npool_kill_grace_s = 1\n");
	command_ends_while_postgres_is_away(&b, 4, 35000, rid);
	/* The other broker went on sweeping after the outage, past the row's deadline: the
	 * row stays as it is. */
	kit_sleep_ms(16000);
	v = sv_row(W.db, rid, "status");
	ck_assert_str_eq(v, "exited");
	free(v);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	ck_assert_int_eq(kit_broker_stop(&other), 0);
}
END_TEST

#define ADD_LOOP(s, fn, n) SV_ADD_LOOP(s, fn, n, 120)
#define ADD(s, fn)         ADD_LOOP(s, fn, 1)

/* Two brokers on one database: org_max_concurrent_execs counts the org's execs on both,
 * and a broker SIGKILLed frees its org's places once it is judged gone (3 heartbeats and
 * 10 s), without waiting for its rows to be swept. */
START_TEST(the_org_limit_holds_across_brokers)
{
	static const char conf[] = "org_max_concurrent_execs = 1\nbroker_heartbeat_s = 1\n";
	struct kit_broker a = {0}, b = {0};
	char *gate = kit_tmp_path("gate-fleet"), *marker = kit_tmp_path("m-fleet"), *body;
	struct kit_conn hold;
	struct kit_resp r;
	struct kit_frames f;
	long long killed, t0;

	start_broker(&a, "eb-life-fleet-a", conf);
	start_broker(&b, "eb-life-fleet-b", conf);
	start_gated(&hold, a.port, "ws-a1", W.tok_org, gate, &body);
	/* acme's one place is taken on a: b refuses, and nothing runs */
	exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
	sv_error(W.db, &r, 429, "too_many_requests", "denied", "too_many_requests");
	ck_assert_msg(!kit_file_exists(marker), "a refused command ran");
	kit_resp_free(&r);
	/* another org is not held back by acme */
	exec_touch(&r, b.port, "ws-b1", W.tok_other, marker, 10);
	sv_stream(&r, &f);
	ck_assert(kit_file_exists(marker));
	unlink(marker);
	kit_frames_free(&f);
	kit_resp_free(&r);
	/* a dies with acme's exec running: b lets acme run again once a is gone */
	kit_broker_kill(&a);
	kit_stream_abort(&hold);
	killed = kit_now_ms();
	for (;;) {
		exec_touch(&r, b.port, "ws-a2", W.tok_org, marker, 10);
		if (r.status == 200)
			break;
		ck_assert_int_eq(r.status, 429);
		ck_assert_msg(kit_now_ms() - killed < 30000, "acme still refused 30 s after");
		kit_resp_free(&r);
		kit_sleep_ms(500);
	}
	t0 = kit_now_ms() - killed;
	sv_stream(&r, &f);
	ck_assert(kit_file_exists(marker));
	/* not before the dead broker's heartbeat had gone stale (3 s + 10 s after its last) */
	ck_assert_msg(t0 >= 10000, "acme ran again %lld ms after the kill", t0);
	kit_frames_free(&f);
	kit_resp_free(&r);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	unlink(marker);
	unlink(gate);
	free(body);
	free(marker);
	free(gate);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("serve_life");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, MAIN_INSTANCE, "org_max_concurrent_execs = 1000\n") != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, org_limit_is_429_with_retry_after);
	ADD(s, full_pool_is_503_pool_exhausted);
	ADD(s, output_is_capped_and_the_exit_code_is_real);
	ADD(s, slow_client_is_backpressure_not_memory);
	ADD(s, concurrent_execs_on_four_hosts_all_complete);
	ADD_LOOP(s, sigterm_lets_running_execs_finish, 2); /* SIGTERM, SIGINT */
	ADD(s, sigterm_past_the_grace_kills_with_shutdown);
	ADD(s, a_buffered_exec_killed_at_shutdown_is_502_not_503);
	ADD(s, sigterm_with_a_delay_serves_until_it_is_over);
	ADD(s, killed_broker_rows_are_abandoned_at_next_start);
	ADD(s, execs_after_the_pooled_sessions_died_all_run);
	ADD_LOOP(s, a_killed_brokers_commands_end_when_it_goes, 2);
	ADD_LOOP(s, a_silent_brokers_commands_end_at_their_deadline, 2);
	ADD(s, rows_of_a_broker_gone_for_good_are_swept_by_another);
	ADD(s, finished_rows_a_gone_broker_never_linked_are_linked_by_another);
	ADD(s, the_org_limit_holds_across_brokers);
	ADD(s, a_read_only_database_delays_the_last_frame_until_the_row_lands);
	/* last: they stop PostgreSQL under every broker */
	ADD(s, postgres_down_is_503_and_nothing_runs);
	ADD(s, postgres_down_mid_exec_completion_is_retried);
	ADD(s, completion_outlives_a_long_database_outage);
	failed = tu_run_suite(s);
	/* The shared broker ends as it should after everything above. */
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
