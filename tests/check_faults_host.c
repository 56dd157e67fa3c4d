/* tests/check_faults_host.c: the fault suite's host faults, with the real binary, a real
 * PostgreSQL and real sshds, each on a host of its own (a private sshd and workspace):
 * `MaxSessions 1`, a login that prints (banner, motd, profile, a startup file read by
 * non-interactive shells), no process slots left (a cgroup's pids.max), a full disk
 * under the detached-exec directory, and the broker's watcher harmed on the host (its FIFO
 * removed, the shell killed). Each asserts what check_faults.c asserts: the broker
 * serves on, every exec it accepted has one final row with its real outcome (no exit code
 * invented, none left running), and nothing of it stays on the host. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
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
#include "pool/command.h"
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

/* Something set up as root that must be undone however the test ends (a failed assertion
 * _exits its process, a timeout kills it): a keeper, in a session of its own, waits for
 * the test's process to go (the pipe's end closes) and then undoes it. The test closes the
 * pipe itself at its end and waits for the keeper. */
struct keeper {
	pid_t pid;
	int fd; /* the write end, held by the test */
};

static void keeper_start(struct keeper *k, void (*undo)(const char *arg), const char *arg)
{
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	k->pid = fork();
	ck_assert_int_ge(k->pid, 0);
	if (k->pid == 0) {
		char c;

		setsid(); /* out of reach of Check's killpg of the test */
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		undo(arg);
		_exit(0);
	}
	close(p[0]);
	k->fd = p[1];
}

/* Undoes now (the keeper does it) and waits for that. */
static void keeper_finish(struct keeper *k)
{
	int st = -1;

	close(k->fd);
	ck_assert_int_eq(kit_wait(k->pid, KIT_WAIT_MS, &st), 0);
	ck_assert_int_eq(st, 0);
}

/* Kills the groups of the supervisors (and commands) of every detached exec under execs,
 * by the pids they wrote: a supervisor waits out its exec's retention, which must not
 * outlive the test (kit_detached_end_all looks in the account's real home only). */
static void detached_end_under(const char *execs)
{
	char path[600];
	DIR *d = opendir(execs);
	struct dirent *de;

	while (d != NULL && (de = readdir(d)) != NULL) {
		static const char *const files[] = {"pgid", "pid"};

		if (de->d_name[0] == '.')
			continue;
		for (size_t i = 0; i < 2; i++) {
			pid_t pid;

			snprintf(path, sizeof(path), "%s/%s/%s", execs, de->d_name, files[i]);
			pid = kit_file_pid(path);
			if (pid > 1)
				kill(-pid, SIGKILL); /* the group it leads */
		}
	}
	if (d != NULL)
		closedir(d);
}

#define NMS1 12

/* An sshd with MaxSessions 1 lets a connection have one channel, which the session's
 * watcher would take: NMS1 execs sent at once to that host must all run, on more
 * connections or one after another, never fail for want of a channel; and a command whose
 * client goes is still killed, with its child. */
START_TEST(max_sessions_1_runs_every_exec)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	struct kit_req q[NMS1];
	struct kit_resp r[NMS1];
	char *bodies[NMS1], want[32], *m, rid[80], *pidf = kit_tmp_path("fh-ms1.pid");
	const char *sargv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *sleeper = sv_body(sargv, json_pack("{s:i}", "timeout_s", 100));
	struct kit_conn c;
	pid_t pids[2];

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
	/* A command whose client goes is killed, through a watcher on another connection. */
	ck_assert_int_eq(
	    kit_stream_open(&c, b.port,
	                    &(struct kit_req){.ws = "ws-ms1", .token = W.tok_org, .body = sleeper}),
	    0);
	snprintf(rid, sizeof(rid), "%s", c.r.rid);
	sv_wait_sleeper(&c, pidf, pids);
	kit_stream_abort(&c);
	m = sv_row_final(W.db, rid);
	ck_assert_str_eq(m, "cancelled");
	free(m);
	sv_pid_gone(pids[0], "the command of a client that went away (MaxSessions 1)");
	sv_pid_gone(pids[1], "its child");
	/* Every connection cut, the one whose watcher the others used too: the next execs find
	 * a new one. */
	ck_assert_int_eq(th_sshd_cut_sessions(&s), 0);
	ck_assert_int_eq(kit_http_parallel(b.port, q, 4, r), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "ok %d\n", i);
		assert_exact(&r[i], want, "", 0, "an exec on a MaxSessions 1 host after a cut");
		kit_resp_free(&r[i]);
	}
	m = sv_metrics(b.port);
	fprintf(stderr,
	        "faults_host: MaxSessions 1: %d of %d concurrent execs exited 0 with their output, "
	        "a cancelled one killed with its child, 4 more after every connection was cut, "
	        "%.0f sessions open after\n",
	        NMS1, NMS1,
	        kit_metric(m, "exec_broker_pool_sessions{state=\"idle\"}") +
	            kit_metric(m, "exec_broker_pool_sessions{state=\"busy\"}"));
	free(m);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-ms1");
	/* Two sessions per host at most: the two first opened come up together, and only one
	 * may lend its watcher, or the other holds the second place and no borrower opens. */
	ck_assert_int_eq(
	    kit_broker_start(&b, W.db, "eb-fh-ms1-cap2", "pool_max_sessions_per_host = 2\n"), 0);
	ck_assert_int_eq(kit_http_parallel(b.port, q, NMS1, r), 0);
	for (int i = 0; i < NMS1; i++) {
		snprintf(want, sizeof(want), "ok %d\n", i);
		assert_exact(&r[i], want, "", 0,
		             "an exec on a MaxSessions 1 host, 2 sessions at most");
		kit_resp_free(&r[i]);
	}
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-ms1-cap2");
	fprintf(stderr,
	        "faults_host: MaxSessions 1, pool_max_sessions_per_host 2: %d of %d concurrent "
	        "execs exited 0 with their output\n",
	        NMS1, NMS1);
	host_quiet(&s, "MaxSessions 1");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	for (int i = 0; i < NMS1; i++)
		free(bodies[i]);
	free(sleeper);
	unlink(pidf);
	free(pidf);
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

/* The keeper's undo of a private home: what detached execs left there ended, the home
 * removed. */
static void home_undo(const char *home)
{
	const char *rm[] = {"rm", "-rf", home, NULL};
	char execs[400];
	int st;

	snprintf(execs, sizeof(execs), "%s/.exec-broker/execs", home);
	detached_end_under(execs);
	kit_run(rm, NULL, NULL, NULL, NULL, &st);
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
	struct keeper k;
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
	keeper_start(&k, home_undo, home);
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
	sv_none_running(W.db, "eb-fh-login");
	host_quiet(&s, "a login that prints");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	motd = kit_file_read("/etc/motd", NULL);
	fprintf(stderr,
	        "faults_host: login banner, motd (%zu bytes), profile, $ENV: attached and detached "
	        "output exact, exit codes 7, 0, 5; sh -l got the profile's text\n",
	        motd != NULL ? strlen(motd) : 0);
	free(motd);
	keeper_finish(&k);
	ck_assert_msg(access(home, F_OK) != 0, "%s still there", home);
	free(home);
}
END_TEST

/* A host whose shell reads a startup file for non-interactive shells too, and that file
 * prints: bash as the login shell (sshd's ForceCommand runs the command with bash, as sshd
 * would for an account whose shell is bash) reads ~/.bashrc when sshd runs it, not
 * BASH_ENV (Debian builds bash with SSH_SOURCE_BASHRC). Its text is the host's output: it comes
 * before the command's on the same streams, the frames stay whole and the exit code is the
 * command's; the broker's own channels (watcher, detached start, reads) are not fooled. */
#define NOLF 236 /* with the tag (17) and a pid of 2 digits or more, past a 255-byte line */

START_TEST(a_startup_file_that_prints_is_the_hosts_output)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	char *home = kit_tmp_path("fh-home-bashrc"), extra[1024];
	struct keeper k;
	const char *printf7[] = {"sh", "-c", "printf out; printf err >&2; exit 7", NULL};
	const char *tru[] = {"true", NULL};
	char *pidf = kit_tmp_path("fh-bashrc.pid"), rid[80], *st;
	const char *sargv[] = {"sh", "-c", SV_SLEEPER, pidf, NULL};
	char *sleeper = sv_body(sargv, json_pack("{s:i}", "timeout_s", 100));
	struct kit_conn c;
	pid_t pids[2];
	char text[NOLF + 1], rc[NOLF + 32], want[NOLF + 8];

	home_make(home);
	keeper_start(&k, home_undo, home);
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
	/* The command's process group is still known: a client that goes has it killed. */
	ck_assert_int_eq(
	    kit_stream_open(
	        &c, b.port,
	        &(struct kit_req){.ws = "ws-bashenv", .token = W.tok_org, .body = sleeper}),
	    0);
	snprintf(rid, sizeof(rid), "%s", c.r.rid);
	sv_wait_sleeper(&c, pidf, pids);
	kit_stream_abort(&c);
	st = sv_row_final(W.db, rid);
	ck_assert_str_eq(st, "cancelled");
	free(st);
	sv_pid_gone(pids[0], "the command of a client that went away (~/.bashrc)");
	sv_pid_gone(pids[1], "its child");
	/* Startup text without a newline, as long as the line the broker scans for the pgid
	 * line would hold only part of the tag: the pgid line is found after it, on sessions
	 * already up, and on new ones, whose watcher's line comes after it too. */
	memset(text, 'x', NOLF);
	text[NOLF] = '\0';
	snprintf(rc, sizeof(rc), "printf %%s %s\n", text);
	home_file(home, ".bashrc", rc);
	snprintf(want, sizeof(want), "%sout", text);
	exec_exact(b.port, "ws-bashenv", printf7, want, "err", 7,
	           "a command under a ~/.bashrc printing no newline");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-bashenv", NULL), 0);
	exec_exact(b.port, "ws-bashenv", printf7, want, "err", 7,
	           "a command under a ~/.bashrc printing no newline, on a new session");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-bashenv");
	host_quiet(&s, "a startup file that prints");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	fprintf(stderr,
	        "faults_host: a ~/.bashrc that prints: its lines lead stdout and stderr, "
	        "exit codes 7, 0 and the detached 5 exact, a cancelled command killed; "
	        "%d bytes without a newline lead stdout, on old and new sessions\n",
	        NOLF);
	keeper_finish(&k);
	ck_assert_msg(access(home, F_OK) != 0, "%s still there", home);
	free(home);
	free(sleeper);
	unlink(pidf);
	free(pidf);
}
END_TEST

#define PIDS_ROOT "/sys/fs/cgroup/pids"

/* The cgroup (v1 pids controller) this process runs in, as a directory. */
static void pids_own_group(char *dir, size_t len)
{
	char *t = kit_file_read("/proc/self/cgroup", NULL), *l;

	ck_assert_ptr_nonnull(t);
	l = strstr(t, ":pids:");
	ck_assert_msg(l != NULL, "no pids controller in /proc/self/cgroup:\n%s", t);
	l += strlen(":pids:");
	l[strcspn(l, "\n")] = '\0';
	snprintf(dir, len, PIDS_ROOT "%s", l);
	free(t);
}

static void cg_write(const char *group, const char *file, const char *val)
{
	char path[300];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", group, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	n = (int)write(fd, val, strlen(val));
	ck_assert_msg(n == (int)strlen(val), "write %s to %s: %s", val, path, strerror(errno));
	close(fd);
}

static long cg_read(const char *group, const char *file)
{
	char path[300], buf[64];

	snprintf(path, sizeof(path), "%s/%s", group, file);
	ck_assert_msg(kit_file_read_into(path, buf, sizeof(buf)) > 0, "read %s", path);
	return atol(buf);
}

/* The keeper's undo of a pids group: its processes (the sshd, if the test failed before
 * stopping it) back to the group the test ran in, then the group removed. arg is
 * "GROUP\nHOME_GROUP". */
static void cg_undo(const char *arg)
{
	char group[256], home[256], path[300], *t, *l;
	int fd;

	if (sscanf(arg, "%255[^\n]\n%255s", group, home) != 2)
		return;
	snprintf(path, sizeof(path), "%s/pids.max", group);
	if ((fd = open(path, O_WRONLY)) >= 0) {
		if (write(fd, "max", 3) < 0) {
		}
		close(fd);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", group);
		t = kit_file_read(path, NULL);
		if (t == NULL)
			return;
		snprintf(path, sizeof(path), "%s/cgroup.procs", home);
		for (l = strtok(t, "\n"); l != NULL; l = strtok(NULL, "\n"))
			if ((fd = open(path, O_WRONLY)) >= 0) {
				if (write(fd, l, strlen(l)) < 0) {
				} /* gone meanwhile */
				close(fd);
			}
		free(t);
		if (rmdir(group) == 0 || errno == ENOENT)
			return;
		kit_sleep_ms(100); /* a fork raced the move */
	}
	fprintf(stderr, "faults_host: could not remove cgroup %s: %s\n", group, strerror(errno));
}

/* pids.max of a group: the number, or "max". */
static void cg_set_max(const char *group, long n)
{
	char v[32];

	if (n < 0)
		snprintf(v, sizeof(v), "max");
	else
		snprintf(v, sizeof(v), "%ld", n);
	cg_write(group, "pids.max", v);
}

/* Waits (KIT_WAIT_MS) until the group holds the sshd listener alone: nothing the broker
 * started stays on the host, also what left sshd's tree (a daemon, an orphan). */
static void cg_quiet(const char *group, const char *what)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char path[300], line[300], *t = NULL;

	snprintf(path, sizeof(path), "%s/cgroup.procs", group);
	for (;;) {
		free(t);
		t = kit_file_read(path, NULL);
		ck_assert_ptr_nonnull(t);
		if (strchr(t, '\n') == strrchr(t, '\n'))
			break;
		if (kit_now_ms() > end) {
			for (char *l = strtok(t, "\n"); l != NULL; l = strtok(NULL, "\n")) {
				char cmd[200] = "";
				ssize_t n;

				snprintf(line, sizeof(line), "/proc/%s/cmdline", l);
				n = kit_file_read_into(line, cmd, sizeof(cmd));
				for (ssize_t i = 0; i + 1 < n; i++)
					cmd[i] = cmd[i] == '\0' ? ' ' : cmd[i];
				fprintf(stderr, "faults_host: %s: left on the host: %s %s\n", what,
				        l, cmd);
			}
			ck_abort_msg("%s: processes left in %s (above)", what, group);
		}
		kit_sleep_ms(100);
	}
	free(t);
}

#define NSLOT 6

/* The command of the slots test: it forks once (the inner sh) and says how that went. */
#define SLOT_CMD "sh -c 'exit 7'; echo \"inner=$?\"; exit 3"
/* One that forks short sleepers until it cannot. */
#define HOG_CMD "while :; do sleep 2 </dev/null >/dev/null 2>&1 & done"

/* The host runs out of process slots for the login account (what `ulimit -u` does, done
 * here with a pids cgroup around one sshd, so that only that host's processes count and
 * other suites running as the same account are not touched). Execs sent while no process
 * can be made end with a real outcome: the command's shell failing its fork (exit 2, its
 * message on stderr), or failed_to_start when sshd cannot start the shell at all, never an
 * exit code the host did not give and never a row left running; another workspace is
 * served meanwhile, and this one again once slots are free. */
START_TEST(no_process_slots_left_on_the_host)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	struct keeper k;
	struct kit_req q[NSLOT + 2];
	struct kit_resp r[NSLOT + 2];
	const char *argv[] = {"sh", "-c", SLOT_CMD, NULL};
	const char *hog_argv[] = {"sh", "-c", HOG_CMD, NULL};
	char group[256], home[128], arg[400], pid[16], *body, *hog, *v;
	int whole = 0, nofork = 0, nostart = 0, after = 0;
	long limit;
	struct stat sb;

	ck_assert_msg(stat(PIDS_ROOT "/cgroup.procs", &sb) == 0 && access(PIDS_ROOT, W_OK) == 0,
	              "this test needs the cgroup v1 pids controller writable at " PIDS_ROOT
	              " (run as root); it is not there, so the fault cannot be made");
	host_start(&s, "ws-slots", NULL);
	pids_own_group(home, sizeof(home));
	snprintf(group, sizeof(group), "%s/eb-test-%d-slots", home, (int)getpid());
	ck_assert_msg(mkdir(group, 0755) == 0, "mkdir %s: %s", group, strerror(errno));
	snprintf(arg, sizeof(arg), "%s\n%s", group, home);
	keeper_start(&k, cg_undo, arg);
	/* The listener only: its children from now on count, nothing else of the account. */
	snprintf(pid, sizeof(pid), "%d", th_sshd_pid(&s));
	cg_write(group, "cgroup.procs", pid);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-slots", NULL), 0);
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 20));
	hog = sv_body(hog_argv, json_pack("{s:i}", "timeout_s", 20));
	for (int i = 0; i < NSLOT + 2; i++)
		q[i] = (struct kit_req){
		    .ws = i < NSLOT ? "ws-slots" : "ws-c0", .token = W.tok_org, .body = body};
	/* A session to the host, with its watcher: then not one more process. */
	sv_http(b.port, &q[0], &r[0]);
	assert_exact(&r[0], "inner=7\n", "", 3, "an exec before the fault");
	kit_resp_free(&r[0]);
	/* A few slots left, which the command itself uses up: its shell cannot fork. */
	limit = cg_read(group, "pids.current") + 4;
	cg_set_max(group, limit);
	sv_http(b.port, &(struct kit_req){.ws = "ws-slots", .token = W.tok_org, .body = hog},
	        &r[0]);
	{
		struct kit_frames f;

		ck_assert_msg(r[0].status == 200, "a command using up the slots: %d %s",
		              r[0].status, r[0].body);
		sv_stream(&r[0], &f);
		ck_assert_msg(strstr(f.err, "fork") != NULL, "the shell's fork did not fail: [%s]",
		              f.err);
		assert_exact(&r[0], "", f.err, 2, "a command using up the slots");
		kit_frames_free(&f);
		kit_resp_free(&r[0]);
	}
	/* None left at all (what the host has running stays): sshd cannot start a shell. */
	limit = cg_read(group, "pids.current");
	cg_set_max(group, limit);
	ck_assert_int_eq(kit_http_parallel(b.port, q, NSLOT + 2, r), 0);
	for (int i = 0; i < NSLOT; i++) {
		struct kit_frames f;

		if (r[i].status != 200) {
			/* Nothing ran: a plain error, its row failed_to_start without an exit code.
			 */
			v = sv_row(W.db, r[i].rid,
			           "status || ' ' || coalesce(exit_code::text, 'none')");
			ck_assert_msg(r[i].status == 502 && strcmp(v, "failed_to_start none") == 0,
			              "an exec without slots: %d %s, row %s", r[i].status,
			              r[i].body, v);
			free(v);
			nostart++;
			kit_resp_free(&r[i]);
			continue;
		}
		sv_stream(&r[i], &f);
		if (sv_last(&f) != NULL && json_object_get(sv_last(&f), "exit_code") != NULL &&
		    sv_int(sv_last(&f), "exit_code") == 3) {
			assert_exact(&r[i], "inner=7\n", "", 3, "an exec that found a slot");
			whole++;
		} else {
			/* The shell ran and could not fork: dash's message and its status 2. */
			ck_assert_msg(strstr(f.err, "fork") != NULL,
			              "an exec without slots: stdout [%s] stderr [%s] last %s",
			              f.out, f.err, r[i].body);
			assert_exact(&r[i], "", f.err, 2, "an exec whose shell could not fork");
			nofork++;
		}
		kit_frames_free(&f);
		kit_resp_free(&r[i]);
	}
	for (int i = NSLOT; i < NSLOT + 2; i++) {
		assert_exact(&r[i], "inner=7\n", "", 3, "another workspace during the fault");
		kit_resp_free(&r[i]);
	}
	ck_assert_msg(whole < NSLOT, "all %d execs ran whole with pids.max %ld: no fault made",
	              NSLOT, limit);
	/* Slots free again: this workspace is served. */
	cg_set_max(group, -1);
	for (int i = 0; i < 3; i++, after++) {
		sv_http(b.port, &q[0], &r[0]);
		assert_exact(&r[0], "inner=7\n", "", 3, "an exec once slots are free");
		kit_resp_free(&r[0]);
	}
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-slots");
	host_quiet(&s, "no process slots");
	cg_quiet(group, "no process slots");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	keeper_finish(&k);
	ck_assert_msg(access(group, F_OK) != 0, "cgroup %s still there", group);
	fprintf(stderr,
	        "faults_host: no process slots: a command forking past pids.max exited 2 (cannot "
	        "fork); at pids.max %ld, of %d execs %d ran whole, %d exited 2, %d "
	        "failed_to_start; ws-c0 served; %d ran after\n",
	        limit, NSLOT, whole, nofork, nostart, after);
	free(body);
	free(hog);
}
END_TEST

/* The keeper's undo of the full disk: arg is the mount point, the detached-exec directory
 * of a private home. The tmpfs is unmounted lazily (a process may still hold a file
 * there), then the home removed. */
static void disk_undo(const char *execs)
{
	char home[400];
	size_t n = strlen(execs), tail = strlen("/.exec-broker/execs");

	detached_end_under(execs);
	if (umount2(execs, MNT_DETACH) != 0)
		fprintf(stderr, "faults_host: umount %s: %s\n", execs, strerror(errno));
	rmdir(execs);
	if (n > tail && n - tail < sizeof(home)) {
		snprintf(home, sizeof(home), "%.*s", (int)(n - tail), execs);
		home_undo(home);
	}
}

/* Whether the command of detached exec id (its group, by the pgid its supervisor wrote)
 * still has a process. */
static bool detached_group_alive(const char *execs, const char *id)
{
	char path[400];
	pid_t pg;

	snprintf(path, sizeof(path), "%s/%s/pgid", execs, id);
	pg = kit_file_pid(path);
	return pg > 1 && kill(-pg, 0) == 0;
}

/* Fills the file system of dir to its last byte (as root: tmpfs keeps nothing back). */
static long long disk_fill(const char *dir)
{
	static char block[4096];
	char path[400];
	long long n = 0;
	ssize_t w;
	int fd;

	snprintf(path, sizeof(path), "%s/fill", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "create %s: %s", path, strerror(errno));
	while ((w = write(fd, block, sizeof(block))) > 0)
		n += w;
	ck_assert_msg(w < 0 && errno == ENOSPC, "filling %s: %s", path, strerror(errno));
	close(fd);
	return n;
}

/* The row of exec id: status and exit code, one of two; which, into got. */
static void disk_row_is(const char *id, const char *one, const char *other, char *got, size_t len)
{
	char sql[300], *v;

	snprintf(sql, sizeof(sql),
	         "SELECT status || ' ' || coalesce(exit_code::text, 'none') FROM exec_audit "
	         "WHERE exec_id = '%s'",
	         id);
	v = sv_query(W.db, sql);
	ck_assert_msg(strcmp(v, one) == 0 || strcmp(v, other) == 0,
	              "detached exec %s running as the disk filled: row %s, want %s or %s", id, v,
	              one, other);
	snprintf(got, len, "%s", v);
	free(v);
}

#define DISK_CONF                                                                                  \
	"exec_detached_output_cap_bytes = 65536\nexec_retain_s = 600\npool_kill_grace_s = 1\n"

/* The disk under the host's detached-exec directory fills up (a tmpfs mounted there, in a
 * private home: ebtest's own is every suite's). A detached exec already running ends with
 * a final status, no hang; one started while the disk is full is refused 502 detach_failed,
 * its row final and its command never run; attached execs to the host run on; once there
 * is room again detached execs start as before. */
START_TEST(a_full_disk_under_the_detached_exec_directory)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	struct keeper k;
	struct passwd *pw = getpwnam(th.user);
	char *home = kit_tmp_path("fh-home-disk"), *mark = kit_tmp_path("fh-disk-mark"),
	     *gate = kit_tmp_path("fh-disk-go"), dir[200], execs[240], fill[300], opts[128],
	     extra[400], running[64], *v;
	const char *ticker[] = {"sh", "-c",
	                        "while [ ! -e \"$0\" ]; do echo tick; sleep 0.05; done; echo end",
	                        gate, NULL};
	const char *marker[] = {"sh", "-c", "echo ran > \"$0\"", mark, NULL};
	const char *silent[] = {"sh", "-c", "while [ ! -e \"$0\" ]; do sleep 0.05; done; exit 4",
	                        gate, NULL};
	const char *echo[] = {"echo", "ok", NULL};
	char quiet[64], status_q[32];
	struct kit_resp r;
	json_t *x;
	long long filled;
	char status_a[32];

	ck_assert_ptr_nonnull(pw);
	home_make(home);
	snprintf(dir, sizeof(dir), "%s/.exec-broker", home);
	snprintf(execs, sizeof(execs), "%s/execs", dir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(chown(dir, pw->pw_uid, pw->pw_gid), 0);
	ck_assert_int_eq(mkdir(execs, 0700), 0);
	keeper_start(&k, disk_undo, execs);
	snprintf(opts, sizeof(opts), "size=1m,mode=0700,uid=%d,gid=%d", (int)pw->pw_uid,
	         (int)pw->pw_gid);
	ck_assert_msg(mount("eb-test-disk", execs, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0,
	              "this test mounts a tmpfs (as root): mount %s: %s", execs, strerror(errno));
	snprintf(extra, sizeof(extra), "SetEnv HOME=%s\n", home);
	host_start(&s, "ws-disk", &(struct th_sshd_opts){.extra_config = extra});
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-disk", DISK_CONF), 0);
	/* Running when the disk fills: one prints on until its gate opens, one is silent (it
	 * has no output whose room its status could take) and exits 4. */
	detached_post(b.port, "ws-disk", ticker, 15, &r);
	snprintf(running, sizeof(running), "%s", detached_started(&r));
	kit_resp_free(&r);
	detached_post(b.port, "ws-disk", silent, 15, &r);
	snprintf(quiet, sizeof(quiet), "%s", detached_started(&r));
	kit_resp_free(&r);
	filled = disk_fill(execs);
	/* Started on a full disk: refused, its row final, nothing run. */
	detached_post(b.port, "ws-disk", marker, 15, &r);
	sv_error(W.db, &r, 502, "detach_failed", "failed_to_start", "detach_failed");
	v = sv_row(W.db, r.rid, "coalesce(exit_code::text, 'none')");
	ck_assert_str_eq(v, "none");
	free(v);
	kit_resp_free(&r);
	ck_assert_msg(!kit_file_exists(mark), "a detached exec refused on a full disk ran");
	/* Attached execs need no disk there. */
	exec_exact(b.port, "ws-disk", echo, "ok\n", "", 0, "an attached exec on a full disk");
	/* The running one ends, and says how: never a hang. */
	sv_touch(gate);
	x = detached_end(b.port, running, 90);
	snprintf(status_a, sizeof(status_a), "%s", sv_str(x, "status"));
	json_decref(x);
	x = detached_end(b.port, quiet, 90);
	snprintf(status_q, sizeof(status_q), "%s", sv_str(x, "status"));
	json_decref(x);
	/* Each row final with a real outcome: the printer exits 0, or dies of SIGPIPE once its
	 * output can no longer be stored; the silent one exits 4, or is lost if even its
	 * status found no room. Never an exit code the command did not give. */
	disk_row_is(running, "exited 0", "signaled none", status_a, sizeof(status_a));
	disk_row_is(quiet, "exited 4", "lost none", status_q, sizeof(status_q));
	ck_assert_msg(!detached_group_alive(execs, running), "the detached command still runs");
	ck_assert_msg(!detached_group_alive(execs, quiet), "the silent command still runs");
	/* Room again: detached execs start and end as ever. */
	snprintf(fill, sizeof(fill), "%s/fill", execs);
	ck_assert_int_eq(unlink(fill), 0);
	detached_exact(b.port, "ws-disk", "dout", "derr",
	               "a detached exec after the disk had room");
	ck_assert_msg(!kit_file_exists(mark), "a detached exec refused on a full disk ran");
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-disk");
	keeper_finish(&k);
	ck_assert_msg(access(home, F_OK) != 0, "%s still there", home);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	fprintf(stderr,
	        "faults_host: full disk (%lld bytes filled): detached execs running ended %s "
	        "(printing) and %s (silent), rows final, a start refused 502 detach_failed with "
	        "nothing run, "
	        "attached and later detached execs ran\n",
	        filled, status_a, status_q);
	unlink(gate);
	free(home);
	free(mark);
	free(gate);
}
END_TEST

/* Whether pid is a watcher shell (its script has the tag in it) whose parent is not one. */
static bool is_watcher_shell(pid_t pid)
{
	char path[64], cmd[8192];
	pid_t ppid;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	n = kit_file_read_into(path, cmd, sizeof(cmd));
	for (ssize_t k = 0; k < n; k++)
		cmd[k] = cmd[k] == '\0' ? ' ' : cmd[k];
	if (n <= 0 || strstr(cmd, COMMAND_WATCH_TAG) == NULL)
		return false;
	if (kit_proc_stat(pid, NULL, &ppid, NULL) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)ppid);
	n = kit_file_read_into(path, cmd, sizeof(cmd));
	for (ssize_t k = 0; k < n; k++)
		cmd[k] = cmd[k] == '\0' ? ' ' : cmd[k];
	return n <= 0 || strstr(cmd, COMMAND_WATCH_TAG) == NULL;
}

/* The watcher shell of sshd s's sessions (the first found), or 0. */
static pid_t watcher_of(const struct th_sshd *s)
{
	struct kit_procs tree = {0};
	pid_t w = 0;

	kit_procs_add_tree(&tree, th_sshd_pid(s), 0);
	for (size_t i = 0; i < tree.n && w == 0; i++)
		if (is_watcher_shell(tree.v[i].pid))
			w = tree.v[i].pid;
	kit_procs_free(&tree);
	ck_assert_msg(w > 1, "no watcher below sshd %d", th_sshd_pid(s));
	return w;
}

/* Removes the directory of watcher w's FIFO, as a cleaner of /tmp would: the one whose pid
 * file names w. */
static void watcher_fifo_remove(pid_t w)
{
	glob_t g;
	int found = 0;

	ck_assert_int_eq(glob("/tmp/exec-broker-watch.*/pid", 0, NULL, &g), 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		if (kit_file_pid(g.gl_pathv[i]) != w)
			continue;
		char dir[256];
		const char *rm[] = {"rm", "-rf", dir, NULL};
		int st;

		snprintf(dir, sizeof(dir), "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/pid")),
		         g.gl_pathv[i]);
		ck_assert_int_eq(kit_run(rm, NULL, NULL, NULL, NULL, &st), 0);
		found++;
	}
	globfree(&g);
	ck_assert_msg(found == 1, "%d FIFO directories of watcher %d", found, (int)w);
}

/* One exec of echo ok after the watcher was harmed: it ran (1), or found no watcher to
 * register with and did not run (0): a last frame with an error, its row failed_to_start
 * with an error code and no exit code, never left running. */
static int exec_after_watcher(int port, const struct kit_req *q)
{
	struct kit_frames f;
	struct kit_resp r;
	int ran;
	char *v;

	sv_http(port, q, &r);
	ck_assert_msg(r.status == 200, "%d %s", r.status, r.body);
	sv_stream(&r, &f);
	v = sv_row_final(W.db, r.rid);
	ran = strcmp(v, "exited") == 0;
	free(v);
	if (ran) {
		assert_exact(&r, "ok\n", "", 0, "an exec after the watcher was harmed");
	} else {
		v = sv_row(W.db, r.rid,
		           "status || ' ' || coalesce(exit_code::text, 'none') || ' ' || "
		           "coalesce(error_code, 'none')");
		ck_assert_msg(strncmp(v, "failed_to_start none ", 21) == 0 &&
		                  strcmp(v + 21, "none"),
		              "an exec finding no watcher: row %s, last frame %s", v, r.body);
		ck_assert_ptr_nonnull(sv_str(sv_last(&f), "error.code"));
		free(v);
	}
	kit_frames_free(&f);
	kit_resp_free(&r);
	return ran;
}

/* The broker's watcher on the host is harmed while its session is idle: its FIFO removed
 * (a cleaner of /tmp), then the next session's watcher killed (an administrator, the OOM
 * killer). The session still looks alive, so an exec may be sent on it and find no watcher
 * to register with: it did not run, its stream ends with a last frame and its row is final
 * (failed_to_start with an error code), never left running; the next execs run on a new
 * session with a watcher of its own. */
START_TEST(a_watcher_harmed_on_the_host)
{
	struct kit_broker b = {0};
	struct th_sshd s;
	const char *argv[] = {"echo", "ok", NULL};
	char *body = sv_body(argv, NULL);
	struct kit_req q = {.ws = "ws-watch", .token = W.tok_org, .body = body};
	int fifo_ran, fifo_after = 0, term_ran = 0;
	pid_t w;

	host_start(&s, "ws-watch", NULL);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fh-watch", NULL), 0);
	exec_exact(b.port, "ws-watch", argv, "ok\n", "", 0, "an exec before the watcher ended");
	w = watcher_of(&s);
	watcher_fifo_remove(w);
	/* The watcher runs on and says nothing: the first exec cannot tell, the next can. */
	fifo_ran = exec_after_watcher(b.port, &q);
	for (int i = 0; i < 2; i++)
		fifo_after += exec_after_watcher(b.port, &q);
	ck_assert_int_eq(fifo_ran, 0);
	ck_assert_int_eq(fifo_after, 2);
	/* Now the watcher of the new session, killed: it removes its FIFO as it goes. */
	w = watcher_of(&s);
	ck_assert_int_eq(kill(w, SIGTERM), 0);
	sv_pid_gone(w, "the watcher");
	for (int i = 0; i < 3; i++)
		term_ran += exec_after_watcher(b.port, &q);
	ck_assert_msg(term_ran >= 2, "%d of 3 execs ran after the watcher was killed", term_ran);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fh-watch");
	host_quiet(&s, "a watcher harmed");
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	fprintf(
	    stderr,
	    "faults_host: the watcher's FIFO removed: the next exec failed_to_start (row final, "
	    "nothing run), 2 ran after; the watcher killed: %d of 3 ran after\n",
	    term_ran);
	free(body);
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
	ADD(s, no_process_slots_left_on_the_host);
	ADD(s, a_full_disk_under_the_detached_exec_directory);
	ADD(s, a_watcher_harmed_on_the_host);
	failed = tu_run_suite(s);
	kit_detached_end_all();
	th_teardown();
	return failed;
}
