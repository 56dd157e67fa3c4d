/* tests/check_faults_host.c: the fault suite's host faults, with the real binary, a real
 * PostgreSQL and real sshds, each on a host of its own (a private sshd and workspace):
 * `MaxSessions 1`, a login that prints (banner, motd, profile, a startup file read by
 * non-interactive shells), no process slots left (a cgroup's pids.max), and a full disk
 * under the detached-exec directory. Each asserts what check_faults.c asserts: the broker
 * serves on, every exec it accepted has one final row with its real outcome (no exit code
 * invented, none left running), and nothing of it stays on the host. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
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

static struct kit_world W;

/* A host of its own: an sshd with opts and workspace ws (org acme) on it. */
static void host_start(struct th_sshd *s, const char *ws, const struct th_sshd_opts *o)
{
	const struct kit_ws w = {
	    .id = ws, .org = "acme", .port = 0, .host_key_fp = NULL, .state = "running"};
	struct kit_ws x = w;

	ck_assert_int_eq(th_sshd_start(s, o), 0);
	x.port = s->port;
	x.host_key_fp = s->host_key_fp;
	ck_assert_int_eq(kit_ws_add(W.db, &x), 0);
}

/* Waits (KIT_WAIT_MS) until nothing runs below the sshd's listener: every session, command
 * and watcher the broker had there is gone. */
static void host_quiet(const struct th_sshd *s, const char *what)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	pid_t pid = th_sshd_pid(s);

	ck_assert_msg(pid > 0, "%s: the sshd is not running", what);
	for (;;) {
		struct kit_procs p = {0};
		size_t n;

		kit_procs_add_tree(&p, pid, 0);
		n = p.n;
		kit_procs_free(&p);
		if (n == 0)
			return;
		ck_assert_msg(kit_now_ms() < end, "%s: %zu processes still below sshd %d", what, n,
		              (int)pid);
		kit_sleep_ms(100);
	}
}

static void no_row_running(const char *instance)
{
	char sql[256], *v;

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE broker_instance = '%s' AND "
	         "status = 'running'",
	         instance);
	v = sv_query(W.db, sql);
	ck_assert_msg(strcmp(v, "0") == 0, "%s rows of %s left running", v, instance);
	free(v);
}

/* A finished attached exec that must show exactly this output and exit code, in its stream
 * and in its row. */
static void assert_exact(const struct kit_resp *r, const char *out, const char *err, int code,
                         const char *what)
{
	struct kit_frames f;
	char want[64], *v;

	ck_assert_msg(r->status == 200, "%s: %d %s", what, r->status, r->body);
	sv_stream(r, &f);
	ck_assert_msg(strcmp(f.out, out) == 0, "%s: stdout [%s], want [%s]", what, f.out, out);
	ck_assert_msg(strcmp(f.err, err) == 0, "%s: stderr [%s], want [%s]", what, f.err, err);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), code);
	v = sv_row(W.db, r->rid, "status || ' ' || exit_code");
	snprintf(want, sizeof(want), "exited %d", code);
	ck_assert_msg(strcmp(v, want) == 0, "%s: row %s, want %s", what, v, want);
	free(v);
	kit_frames_free(&f);
}

static json_t *body_object(const struct kit_resp *r)
{
	json_t *o = json_loadb(r->body, r->body_len, 0, NULL);

	ck_assert_msg(json_is_object(o), "not a JSON object: %d %.300s", r->status, r->body);
	return o;
}

/* GET /v1/execs/id, waiting up to wait_s for its end. */
static json_t *exec_object(int port, const char *id, int wait_s)
{
	struct kit_resp r;
	char path[160];
	json_t *o;

	snprintf(path, sizeof(path), "/v1/execs/%s?wait_s=%d", id, wait_s);
	sv_http(port, &(struct kit_req){.method = "GET", .path = path, .token = W.tok_org}, &r);
	ck_assert_msg(r.status == 200, "GET %s: %d %.300s", path, r.status, r.body);
	o = body_object(&r);
	kit_resp_free(&r);
	return o;
}

/* Waits (within bound_s, a "never happened" bound) until the detached exec has ended; its
 * object. */
static json_t *detached_end(int port, const char *id, int bound_s)
{
	long long end = kit_now_ms() + bound_s * 1000LL;

	for (;;) {
		json_t *o = exec_object(port, id, 10);

		if (strcmp(sv_str(o, "status"), "running") != 0)
			return o;
		json_decref(o);
		ck_assert_msg(kit_now_ms() < end, "detached exec %s still running after %d s", id,
		              bound_s);
	}
}

/* POSTs a detached exec; its response in r (kit_resp_free it). */
static void detached_post(int port, const char *ws, const char *const argv[], int timeout_s,
                          struct kit_resp *r)
{
	char *body = sv_body(argv, json_pack("{s:b,s:i}", "detach", 1, "timeout_s", timeout_s));

	sv_http(port, &(struct kit_req){.ws = ws, .token = W.tok_org, .body = body}, r);
	free(body);
}

/* The id of a detached exec that started (202). Static. */
static const char *detached_started(const struct kit_resp *r)
{
	static char id[64];
	json_t *o;

	ck_assert_msg(r->status == 202, "detached start: %d %.300s", r->status, r->body);
	o = body_object(r);
	snprintf(id, sizeof(id), "%s", sv_str(o, "exec_id"));
	kit_detached_remember(id);
	json_decref(o);
	return id;
}

/* The whole output of a detached exec that ended (follow=false): stdout and stderr
 * appended to out and err (each at most len), and the last frame's status. */
static void detached_output(int port, const char *id, char *out, char *err, size_t len,
                            char *status, size_t slen)
{
	struct kit_resp r;
	struct kit_frames f;
	const char *last;
	char path[200];

	snprintf(path, sizeof(path), "/v1/execs/%s/output?follow=false", id);
	sv_http(port, &(struct kit_req){.method = "GET", .path = path, .token = W.tok_org}, &r);
	ck_assert_msg(r.status == 200, "GET %s: %d %.300s", path, r.status, r.body);
	kit_frames_init(&f);
	kit_frames_parse(&f, r.body, r.body_len);
	ck_assert_msg(f.bad == 0, "output of %s: %s", id, f.bad_line);
	snprintf(out, len, "%s", f.out != NULL ? f.out : "");
	snprintf(err, len, "%s", f.err != NULL ? f.err : "");
	last = kit_nframes(&f) > 0 ? sv_str(kit_frame(&f, kit_nframes(&f) - 1), "status") : NULL;
	snprintf(status, slen, "%s", last != NULL ? last : "");
	kit_frames_free(&f);
	kit_resp_free(&r);
}

#define NMS1 12

/* An sshd with MaxSessions 1 lets a connection have one channel, which the session's
 * watcher would take: NMS1 execs sent at once to that host must all run, on more
 * connections or one after another, never fail for want of a channel. */
START_TEST(max_sessions_1_runs_every_exec)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	struct kit_req q[NMS1];
	struct kit_resp r[NMS1];
	char *bodies[NMS1], want[32], *m;

	host_start(&s, "ws-ms1", &(struct th_sshd_opts){.max_sessions = 1});
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-ms1", NULL), 0);
	for (int i = 0; i < NMS1; i++) {
		char n[16];
		const char *argv[] = {"sh", "-c", "sleep 0.2; echo ok $0", n, NULL};

		snprintf(n, sizeof(n), "%d", i);
		bodies[i] = sv_body(argv, json_pack("{s:i}", "timeout_s", 60));
		q[i] = (struct kit_req){.ws = "ws-ms1", .token = W.tok_org, .body = bodies[i]};
	}
	ck_assert_int_eq(kit_http_parallel(b.port, q, NMS1, r), 0);
	for (int i = 0; i < NMS1; i++) {
		snprintf(want, sizeof(want), "ok %d\n", i);
		assert_exact(&r[i], want, "", 0, "an exec on a MaxSessions 1 host");
		kit_resp_free(&r[i]);
	}
	m = sv_metrics(b.port);
	fprintf(stderr,
	        "faults_host: MaxSessions 1: %d of %d concurrent execs exited 0 with their output, "
	        "%.0f sessions open after\n",
	        NMS1, NMS1,
	        kit_metric(m, "exec_broker_pool_sessions{state=\"idle\"}") +
	            kit_metric(m, "exec_broker_pool_sessions{state=\"busy\"}"));
	free(m);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	no_row_running("eb-fh-ms1");
	host_quiet(&s, "MaxSessions 1");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	for (int i = 0; i < NMS1; i++)
		free(bodies[i]);
}
END_TEST

/* A private home for a host's login account (sshd's SetEnv HOME=...): ebtest's real home is
 * shared with every other suite. Created at path, owned by the account. */
static void home_make(const char *path)
{
	struct passwd *pw = getpwnam(th.user);

	ck_assert_ptr_nonnull(pw);
	ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path,
	              strerror(errno));
	ck_assert_int_eq(chown(path, pw->pw_uid, pw->pw_gid), 0);
}

static void home_file(const char *home, const char *name, const char *text)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/%s", home, name);
	ck_assert_int_eq(kit_file_write(path, text, 0644), 0);
}

/* Runs argv on ws and asserts the exact outcome. */
static void exec_exact(int port, const char *ws, const char *const argv[], const char *out,
                       const char *err, int code, const char *what)
{
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 30));
	struct kit_resp r;

	sv_http(port, &(struct kit_req){.ws = ws, .token = W.tok_org, .body = body}, &r);
	assert_exact(&r, out, err, code, what);
	kit_resp_free(&r);
	free(body);
}

/* A detached exec on ws that prints to both streams and exits 5: its object and output say
 * exactly that. */
static void detached_exact(int port, const char *ws, const char *out, const char *err,
                           const char *what)
{
	const char *argv[] = {"sh", "-c", "printf dout; printf derr >&2; exit 5", NULL};
	char o[256], e[256], st[32];
	struct kit_resp r;
	const char *id;
	json_t *x;

	detached_post(port, ws, argv, 30, &r);
	id = detached_started(&r);
	kit_resp_free(&r);
	x = detached_end(port, id, 60);
	ck_assert_msg(strcmp(sv_str(x, "status"), "exited") == 0 &&
	                  json_integer_value(json_object_get(x, "exit_code")) == 5,
	              "%s: detached exec ended %s", what, sv_str(x, "status"));
	json_decref(x);
	detached_output(port, id, o, e, sizeof(o), st, sizeof(st));
	ck_assert_msg(strcmp(o, out) == 0, "%s: detached stdout [%s], want [%s]", what, o, out);
	ck_assert_msg(strcmp(e, err) == 0, "%s: detached stderr [%s], want [%s]", what, e, err);
	ck_assert_str_eq(st, "exited");
}

/* A host whose login prints: a pre-authentication Banner, the motd and last login, a
 * profile for login shells and an $ENV file for interactive ones. None of it is the
 * command's: the broker's execs run in a non-login, non-interactive shell, so the output
 * and exit codes are exactly the command's, attached and detached; only a command that asks
 * for a login shell itself gets the profile's text, as its own output. */
START_TEST(a_login_that_prints_stays_out_of_the_output)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	char *home = kit_tmp_path("fh-home-login"), extra[1024], *motd;
	const char *printf7[] = {"sh", "-c", "printf out; printf err >&2; exit 7", NULL};
	const char *tru[] = {"true", NULL};
	const char *login[] = {"sh", "-lc", "echo in", NULL};
	const char *sshv[] = {"ssh",
	                      "-F",
	                      "/dev/null",
	                      "-i",
	                      th.client_key,
	                      "-p",
	                      NULL,
	                      "-o",
	                      "StrictHostKeyChecking=no",
	                      "-o",
	                      "UserKnownHostsFile=/dev/null",
	                      "-o",
	                      "BatchMode=yes",
	                      NULL,
	                      "true",
	                      NULL};
	char port[16], dest[96], *out = NULL, *err = NULL;
	int st;

	home_make(home);
	home_file(home, "banner", "BANNER: authorized use only\n");
	home_file(home, ".profile", "echo PROFILE-OUT; echo PROFILE-ERR >&2\n");
	home_file(home, ".shrc", "echo SHRC-OUT; echo SHRC-ERR >&2\n");
	snprintf(extra, sizeof(extra),
	         "Banner %s/banner\nPrintMotd yes\nPrintLastLog yes\nSetEnv HOME=%s ENV=%s/.shrc\n",
	         home, home, home);
	host_start(&s, "ws-login", &(struct th_sshd_opts){.extra_config = extra});
	/* The fault is there: an ssh client sees the banner. */
	snprintf(port, sizeof(port), "%d", s.port);
	snprintf(dest, sizeof(dest), "%s@127.0.0.1", th.user);
	sshv[6] = port;
	sshv[13] = dest;
	ck_assert_int_eq(kit_run(sshv, NULL, NULL, &out, &err, &st), 0);
	ck_assert_msg(strstr(err, "BANNER: authorized use only") != NULL, "ssh saw no banner: %s",
	              err);
	free(out);
	free(err);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-login", NULL), 0);
	exec_exact(b.port, "ws-login", printf7, "out", "err", 7, "a command on a printing login");
	exec_exact(b.port, "ws-login", tru, "", "", 0, "true on a printing login");
	/* The profile prints when a login shell is asked for: the fixture is live. */
	exec_exact(b.port, "ws-login", login, "PROFILE-OUT\nin\n", "PROFILE-ERR\n", 0,
	           "sh -l on a printing login");
	detached_exact(b.port, "ws-login", "dout", "derr", "a detached exec on a printing login");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	no_row_running("eb-fh-login");
	host_quiet(&s, "a login that prints");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	motd = kit_file_read("/etc/motd", NULL);
	fprintf(stderr,
	        "faults_host: login banner, motd (%zu bytes), profile, $ENV: attached and detached "
	        "output exact, exit codes 7, 0, 5; sh -l got the profile's text\n",
	        motd != NULL ? strlen(motd) : 0);
	free(motd);
	free(home);
}
END_TEST

/* A host whose shell reads a startup file for non-interactive shells too, and that file
 * prints: bash as the login shell (sshd's ForceCommand runs the command with bash, as sshd
 * would for an account whose shell is bash) reads ~/.bashrc when sshd runs it, not
 * BASH_ENV (Debian builds bash with SSH_SOURCE_BASHRC). Its text is the host's output: it comes
 * before the command's on the same streams, the frames stay whole and the exit code is the
 * command's; the broker's own channels (watcher, detached start, reads) are not fooled. */
START_TEST(a_startup_file_that_prints_is_the_hosts_output)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	char *home = kit_tmp_path("fh-home-bashenv"), extra[1024];
	const char *printf7[] = {"sh", "-c", "printf out; printf err >&2; exit 7", NULL};
	const char *tru[] = {"true", NULL};

	home_make(home);
	home_file(home, ".bashrc", "echo STARTUP-OUT; echo STARTUP-ERR >&2\n");
	snprintf(extra, sizeof(extra),
	         "SetEnv HOME=%s\nForceCommand exec bash -c \"$SSH_ORIGINAL_COMMAND\"\n", home);
	host_start(&s, "ws-bashenv", &(struct th_sshd_opts){.extra_config = extra});
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-bashenv", NULL), 0);
	exec_exact(b.port, "ws-bashenv", printf7, "STARTUP-OUT\nout", "STARTUP-ERR\nerr", 7,
	           "a command under a printing ~/.bashrc");
	exec_exact(b.port, "ws-bashenv", tru, "STARTUP-OUT\n", "STARTUP-ERR\n", 0,
	           "true under a printing ~/.bashrc");
	detached_exact(b.port, "ws-bashenv", "dout", "derr",
	               "a detached exec under a printing ~/.bashrc");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	no_row_running("eb-fh-bashenv");
	host_quiet(&s, "a startup file that prints");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	fprintf(stderr, "faults_host: a ~/.bashrc that prints: its lines lead stdout and stderr, "
	                "exit codes 7, 0 and the detached 5 exact\n");
	free(home);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 120)

int main(void)
{
	Suite *s = suite_create("faults_host");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, max_sessions_1_runs_every_exec);
	ADD(s, a_login_that_prints_stays_out_of_the_output);
	ADD(s, a_startup_file_that_prints_is_the_hosts_output);
	failed = tu_run_suite(s);
	kit_detached_end_all();
	th_teardown();
	return failed;
}
