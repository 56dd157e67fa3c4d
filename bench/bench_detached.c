/* bench/bench_detached.c: detached execs beside attached ones, through one real broker on a
 * real PostgreSQL (fsync on) and sshd: the start (POST to 202) beside an attached exec of
 * the same command (POST to its last frame), the attach (GET .../output to its first output
 * frame), and a follow's throughput beside an attached exec streaming the same bytes.
 * Figures only, as ratios measured in the same run; it never fails on timing. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/world.h"

#define STREAM_BYTES (32 * 1024 * 1024)
#define STREAM_CMD   "yes abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 33554432"
#define CONF                                                                                       \
	"workspace_max_detached_execs = 10000\nexec_retain_s = 20\n"                              \
	"exec_detached_output_cap_bytes = 67108864\noutput_cap_bytes = 67108864\n"               \
	"org_max_concurrent_execs = 1000\n"

static struct kit_world W;
static struct kit_broker B;

static char *body_of(const char *cmd, bool detach)
{
	json_t *o = json_pack("{s:[s,s,s], s:i}", "argv", "sh", "-c", cmd, "timeout_s", 600);
	char *s;

	if (detach)
		json_object_set_new(o, "detach", json_true());
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* One POST; the exec_id of a 202 in id (may be NULL). ms, or -1. */
static double post(const char *cmd, bool detach, char *id, size_t idlen)
{
	char *body = body_of(cmd, detach);
	struct kit_resp r;
	uint64_t t0 = kit_now_ns();
	double ms;

	kit_http(B.port, &(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = body}, &r);
	ms = bench_ms_since(t0);
	free(body);
	if (r.status != (detach ? 202 : 200) || !r.complete) {
		bench_problem("POST (detach %d): status %d %.200s", detach, r.status,
		              r.body != NULL ? r.body : "");
		kit_resp_free(&r);
		return -1;
	}
	if (id != NULL) {
		json_t *o = json_loads(r.body, 0, NULL);
		snprintf(id, idlen, "%s", json_string_value(json_object_get(o, "exec_id")));
		json_decref(o);
	}
	kit_resp_free(&r);
	return ms;
}

/* GET .../output?follow=false: ms to the first output frame. */
static double attach(const char *id)
{
	char path[160], *line;
	struct kit_conn s;
	uint64_t t0 = kit_now_ns();
	double ms = -1;

	snprintf(path, sizeof(path), "/v1/execs/%s/output?follow=false", id);
	if (kit_stream_open(&s, B.port,
	                    &(struct kit_req){.method = "GET", .path = path, .token = W.tok_ws}) != 0)
		return -1;
	while ((line = kit_stream_line(&s, 10000)) != NULL) {
		bool data = strstr(line, "\"data\"") != NULL;
		free(line);
		if (data) {
			ms = bench_ms_since(t0);
			break;
		}
	}
	kit_stream_abort(&s);
	if (ms < 0)
		bench_problem("attach to %s: no output frame", id);
	return ms;
}

static void count_body(void *arg, const char *p, size_t n)
{
	(void)p;
	*(uint64_t *)arg += n;
}

/* One whole request whose body is only counted: seconds, or -1. */
static double timed_stream(const struct kit_req *q, uint64_t *bytes)
{
	struct kit_conn c;
	uint64_t t0 = kit_now_ns();
	int rc;

	*bytes = 0;
	kit_conn_init(&c, B.port);
	c.on_body = count_body;
	c.arg = bytes;
	c.discard_body = true;
	rc = kit_conn_request(&c, q);
	if (rc != 0 || c.r.status != 200 || !c.r.complete) {
		bench_problem("stream: status %d %s", c.r.status, c.r.error);
		kit_conn_free(&c);
		return -1;
	}
	kit_conn_free(&c);
	return bench_ms_since(t0) / 1000.0;
}

int main(void)
{
	size_t n = bench_env_count("BENCH_DETACHED_N", 100);
	struct series att, det, atc;
	char id[64], path[200], *body;
	double s_att = -1, s_fol = -1;
	uint64_t bytes = 0;

	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
		return 1;
	bench_progress("setting up: database, workspaces, tokens (broker %s)", kit_broker_bin());
	if (kit_world_setup(&W) != 0 || kit_broker_start(&B, W.db, "bench-detached", CONF) != 0) {
		th_teardown();
		return 1;
	}
	series_init(&att, "attached exec (POST to last frame)", n);
	series_init(&det, "detached start (POST to 202)", n);
	series_init(&atc, "attach (GET output to first frame)", n);
	/* Warm the pool's session. */
	post("true", false, NULL, 0);
	bench_progress("latency: %zu attached and %zu detached execs of `echo hello`, in turns", n, n);
	for (size_t i = 0; i < n; i++) {
		double a = post("echo hello", false, NULL, 0), d = post("echo hello", true, id, sizeof(id));

		if (a >= 0)
			series_add(&att, a);
		if (d >= 0)
			series_add(&det, d);
		usleep(100000); /* the command has printed by then */
		if (d >= 0 && (a = attach(id)) >= 0)
			series_add(&atc, a);
	}
	bench_progress("throughput: %d MiB of text, attached and followed", STREAM_BYTES >> 20);
	body = body_of(STREAM_CMD, false);
	s_att = timed_stream(&(struct kit_req){.ws = "ws-a1", .token = W.tok_ws, .body = body,
	                                       .accept = "application/x-ndjson"},
	                     &bytes);
	free(body);
	if (post(STREAM_CMD, true, id, sizeof(id)) >= 0) {
		uint64_t t0 = kit_now_ns();
		double start_s;

		snprintf(path, sizeof(path), "/v1/execs/%s/output", id);
		s_fol = timed_stream(&(struct kit_req){.method = "GET", .path = path, .token = W.tok_ws},
		                     &bytes);
		start_s = bench_ms_since(t0) / 1000.0;
		(void)start_s;
	}
	printf("\ndetached execs (%zu of each; PostgreSQL with fsync on)\n", n);
	printf("  %-40s %9s %9s\n", "", "p50 ms", "p99 ms");
	printf("  %-40s %9.2f %9.2f\n", att.name, series_pct(&att, 0.5), series_pct(&att, 0.99));
	printf("  %-40s %9.2f %9.2f  (p50 %.2fx the attached exec)\n", det.name,
	       series_pct(&det, 0.5), series_pct(&det, 0.99),
	       series_pct(&det, 0.5) / series_pct(&att, 0.5));
	printf("  %-40s %9.2f %9.2f  (p50 %.2fx the attached exec)\n", atc.name,
	       series_pct(&atc, 0.5), series_pct(&atc, 0.99),
	       series_pct(&atc, 0.5) / series_pct(&att, 0.5));
	if (s_att > 0 && s_fol > 0)
		printf("  %d MiB of text: attached stream %.1f MB/s, follow of a detached exec (started "
		       "with it) %.1f MB/s = %.2fx\n",
		       STREAM_BYTES >> 20, STREAM_BYTES / s_att / 1e6, STREAM_BYTES / s_fol / 1e6,
		       s_att / s_fol);
	kit_broker_stop(&B);
	th_teardown();
	return bench_problem_count() > 0;
}
