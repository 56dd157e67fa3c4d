/* tests/check_faults.c: faults injected while execs run and new ones arrive, with the real
 * binary, a real PostgreSQL and real sshds. Each asserts the same three things: the broker
 * keeps serving; every exec it accepted has exactly one final audit row with the right
 * outcome (none left 'running', no exit code invented); nothing it refused ran on the host.
 * This is the start of the fault suite; the rest of its faults are listed in the README. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define NRUN 4 /* execs running when the fault strikes */
#define NNEW 6 /* execs sent as it strikes */

static struct kit_world W;

/* The command: its pid in $0 (the marker that it started), then it waits for $0.go and
 * says "ok". */
#define MARKED                                                                                     \
	"echo $$ > \"$0.tmp\"; mv \"$0.tmp\" \"$0\"; while [ ! -e \"$0.go\" ]; do sleep 0.02; "   \
	"done; echo ok"

static char *marked_body(const char *marker, int timeout_s)
{
	const char *argv[] = {"sh", "-c", MARKED, marker, NULL};

	return sv_body(argv, json_pack("{s:i}", "timeout_s", timeout_s));
}

/* What a finished exec must show: 200, the whole stream, "ok", exit 0, its row exited 0. */
static void assert_ran(const struct kit_resp *r, const char *what)
{
	struct kit_frames f;
	char *v;

	ck_assert_msg(r->status == 200, "%s: %d %s", what, r->status, r->body);
	sv_stream(r, &f);
	ck_assert_str_eq(f.out, "ok\n"); /* "started" went to the marker file */
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	v = sv_row(W.db, r->rid, "status || ' ' || exit_code");
	ck_assert_str_eq(v, "exited 0");
	free(v);
	kit_frames_free(&f);
}

/* A child that terminates every backend of the broker every 30 ms for ms: a storm, so
 * that statements in flight, connections being made and idle ones are all cut. */
static pid_t terminate_storm(int ms)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		long long end = kit_now_ms() + ms;

		while (kit_now_ms() < end) {
			kit_sql(W.db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
			              "application_name = 'exec-broker' AND pid <> pg_backend_pid()");
			kit_sleep_ms(30);
		}
		_exit(0);
	}
	return pid;
}

/* Every connection the broker holds to PostgreSQL is terminated by the server (an
 * operator's pg_terminate_backend, a failover's end of old sessions) while NRUN execs run
 * and NNEW arrive: the running ones end well, their rows completed on new connections; each
 * new one either runs whole or is refused 503 audit_unavailable with nothing run; then the
 * broker serves as before. */
START_TEST(pg_terminate_backend_of_the_brokers_connections)
{
	struct kit_broker b = {0};
	struct kit_conn run[NRUN];
	struct kit_req q[NNEW];
	struct kit_resp r[NNEW], rr;
	char *markers[NRUN + NNEW], *bodies[NRUN + NNEW], *v, name[160];
	int ran = 0, refused = 0;
	pid_t storm;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-term", "db_connections = 4\n"), 0);
	for (int i = 0; i < NRUN + NNEW; i++) {
		snprintf(name, sizeof(name), "fault-m%d", i);
		markers[i] = kit_tmp_path(name);
		bodies[i] = marked_body(markers[i], 30);
		if (i >= NRUN) { /* the new ones run straight through */
			snprintf(name, sizeof(name), "%s.go", markers[i]);
			sv_touch(name);
		}
	}
	for (int i = 0; i < NRUN; i++) {
		struct kit_req sq = {.ws = i % 2 ? "ws-a1" : "ws-c0", .token = W.tok_org,
		                     .body = bodies[i]};

		ck_assert_int_eq(kit_stream_open(&run[i], b.port, &sq), 0);
	}
	for (int i = 0; i < NRUN; i++) {
		long long end = kit_now_ms() + KIT_WAIT_MS;

		while (!kit_file_exists(markers[i])) {
			ck_assert_msg(kit_now_ms() < end, "exec %d never started", i);
			kit_sleep_ms(20);
		}
	}
	/* The fault: every backend of the broker terminated, again and again for 2 s, while
	 * the running commands end (their rows are completed then) and new execs arrive. */
	v = sv_query(W.db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
	                   "'exec-broker'");
	ck_assert_msg(atoi(v) >= 1, "no connection of the broker to terminate (%s)", v);
	free(v);
	storm = terminate_storm(2000);
	for (int i = 0; i < NRUN; i++) {
		snprintf(name, sizeof(name), "%s.go", markers[i]);
		sv_touch(name);
	}
	for (int i = 0; i < NNEW; i++)
		q[i] = (struct kit_req){.ws = i % 2 ? "ws-a2" : "ws-c1", .token = W.tok_org,
		                        .body = bodies[NRUN + i]};
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		if (r[i].status == 200) {
			assert_ran(&r[i], "a new exec");
			ck_assert(kit_file_exists(markers[NRUN + i]));
			ran++;
		} else {
			sv_error(W.db, &r[i], 503, "audit_unavailable", NULL, NULL);
			ck_assert_msg(!kit_file_exists(markers[NRUN + i]),
			              "a command refused with 503 ran anyway");
			refused++;
		}
		kit_resp_free(&r[i]);
	}
	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&run[i], &rr);
		assert_ran(&rr, "an exec running at the fault");
		kit_resp_free(&rr);
	}
	ck_assert_int_eq(kit_wait(storm, 10000, NULL), 0);
	/* It serves on as before. */
	q[0] = (struct kit_req){.ws = "ws-a1", .token = W.tok_org, .body = bodies[0]};
	unlink(markers[0]);
	sv_http(b.port, &q[0], &rr);
	assert_ran(&rr, "an exec after the fault");
	kit_resp_free(&rr);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE broker_instance = "
	                   "'eb-fault-term' AND status = 'running'");
	ck_assert_str_eq(v, "0");
	free(v);
	fprintf(stderr, "faults: pg_terminate_backend: %d new execs ran, %d refused 503\n", ran,
	        refused);
	for (int i = 0; i < NRUN + NNEW; i++) {
		snprintf(name, sizeof(name), "%s.go", markers[i]);
		unlink(name);
		unlink(markers[i]);
		free(markers[i]);
		free(bodies[i]);
	}
}
END_TEST

/* The host's sshd kills the processes serving the broker's connections (busy and idle
 * sessions) while NRUN execs run there: each of those ends with its stream's last frame
 * transport_error and its row transport_error with no exit code (the outcome is unknown,
 * none is invented); execs sent after it run on new sessions. */
START_TEST(sshd_sessions_killed_under_running_execs)
{
	struct kit_broker b = {0};
	struct kit_conn run[NRUN];
	struct kit_req q[NNEW];
	struct kit_resp r[NNEW], rr;
	struct kit_frames f;
	char *markers[NRUN], *bodies[NRUN], *v, name[160];
	const char *argv[] = {"echo", "ok", NULL};
	pid_t pids[NRUN];
	char *after = sv_body(argv, NULL);

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-cut", NULL), 0);
	for (int i = 0; i < NRUN; i++) {
		struct kit_req sq = {.ws = "ws-cut", .token = W.tok_org};
		long long end = kit_now_ms() + KIT_WAIT_MS;

		snprintf(name, sizeof(name), "fault-cut%d", i);
		markers[i] = kit_tmp_path(name);
		bodies[i] = marked_body(markers[i], 5);
		sq.body = bodies[i];
		ck_assert_int_eq(kit_stream_open(&run[i], b.port, &sq), 0);
		while (!kit_file_exists(markers[i])) {
			ck_assert_msg(kit_now_ms() < end, "exec %d never started", i);
			kit_sleep_ms(20);
		}
	}
	for (int i = 0; i < NRUN; i++)
		pids[i] = sv_pid_wait(markers[i]);
	ck_assert_int_eq(th_sshd_cut_sessions(&W.cut), 0);
	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&run[i], &rr);
		sv_stream(&rr, &f);
		ck_assert_msg(sv_str(sv_last(&f), "error.code") != NULL &&
		                  strcmp(sv_str(sv_last(&f), "error.code"), "transport_error") == 0,
		              "exec %d's last frame: %s", i, rr.body);
		v = sv_row(W.db, rr.rid, "status || ' ' || coalesce(exit_code::text, 'none')");
		ck_assert_str_eq(v, "transport_error none");
		free(v);
		kit_frames_free(&f);
		kit_resp_free(&rr);
	}
	for (int i = 0; i < NNEW; i++)
		q[i] = (struct kit_req){.ws = "ws-cut", .token = W.tok_org, .body = after};
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		ck_assert_msg(r[i].status == 200, "an exec after the cut: %d %s", r[i].status,
		              r[i].body);
		sv_stream(&r[i], &f);
		ck_assert_str_eq(f.out, "ok\n");
		kit_frames_free(&f);
		kit_resp_free(&r[i]);
	}
	/* the commands whose sessions were cut are gone by their deadline (5 s) */
	for (int i = 0; i < NRUN; i++)
		sv_pid_gone(pids[i], "a command whose SSH session was cut");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	v = sv_query(W.db, "SELECT count(*) FROM exec_audit WHERE broker_instance = "
	                   "'eb-fault-cut' AND status = 'running'");
	ck_assert_str_eq(v, "0");
	free(v);
	for (int i = 0; i < NRUN; i++) {
		unlink(markers[i]);
		free(markers[i]);
		free(bodies[i]);
	}
	free(after);
}
END_TEST

/* The host's sshd comes back with a new host key (a reinstalled machine, or someone in the
 * middle): execs to it get 502 host_key_mismatch, their rows say so, and nothing runs;
 * other workspaces are served as ever. Last: ws-c2's sshd keeps its new key. */
START_TEST(sshd_back_with_a_new_host_key_runs_nothing)
{
	struct kit_broker b = {0};
	struct th_sshd *h = &W.conc[1]; /* ws-c2 */
	const char *keygen[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", h->host_key,
	                        NULL};
	const char *argv[] = {"echo", "ok", NULL};
	char *ok = sv_body(argv, NULL), *markers[NNEW], *bodies[NNEW], name[200];
	struct kit_req q[NNEW], one = {.ws = "ws-c2", .token = W.tok_other, .body = ok};
	struct kit_resp r[NNEW], rr;
	int status = -1;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fault-key", NULL), 0);
	sv_http(b.port, &one, &rr); /* a warm session with the old key */
	ck_assert_int_eq(rr.status, 200);
	kit_resp_free(&rr);
	ck_assert_int_eq(th_sshd_stop(h), 0);
	unlink(h->host_key);
	snprintf(name, sizeof(name), "%s.pub", h->host_key);
	unlink(name);
	ck_assert_int_eq(kit_run(keygen, NULL, NULL, NULL, NULL, &status), 0);
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(th_sshd_restart(h), 0);
	for (int i = 0; i < NNEW; i++) {
		snprintf(name, sizeof(name), "fault-key%d", i);
		markers[i] = kit_tmp_path(name);
		bodies[i] = marked_body(markers[i], 10);
		q[i] = (struct kit_req){.ws = "ws-c2", .token = W.tok_other, .body = bodies[i]};
	}
	ck_assert_int_eq(kit_http_parallel(b.port, q, NNEW, r), 0);
	for (int i = 0; i < NNEW; i++) {
		sv_error(W.db, &r[i], 502, "host_key_mismatch", "failed_to_start", "host_key_mismatch");
		ck_assert_msg(!kit_file_exists(markers[i]), "a command ran on a host with a new key");
		kit_resp_free(&r[i]);
	}
	one.ws = "ws-c0";
	one.token = W.tok_org;
	sv_http(b.port, &one, &rr);
	ck_assert_msg(rr.status == 200, "another workspace after the key change: %d", rr.status);
	kit_resp_free(&rr);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	for (int i = 0; i < NNEW; i++) {
		unlink(markers[i]);
		free(markers[i]);
		free(bodies[i]);
	}
	free(ok);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 120)

int main(void)
{
	Suite *s = suite_create("faults");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, pg_terminate_backend_of_the_brokers_connections);
	ADD(s, sshd_sessions_killed_under_running_execs);
	ADD(s, sshd_back_with_a_new_host_key_runs_nothing); /* last: the key stays new */
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
