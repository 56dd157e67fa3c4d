/* tests/check_lifecycle.c: the broker under a service manager, with a real NOTIFY_SOCKET (a
 * datagram socket this suite owns) and real signals: READY=1 once the listener works,
 * STATUS= lines, WATCHDOG=1 pings at half of WATCHDOG_USEC, RELOADING=1 ... READY=1
 * around SIGHUP (new limits and a new SSH key for new execs, a running exec untouched, a
 * broken config file refused), STOPPING=1 and exit 0 on SIGTERM; and the SSH key found as a
 * systemd credential. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

static struct kit_world W;

/* The service manager's side: a datagram socket, and every message received so far. */
struct notify {
	int fd;
	char path[108];
	char log[16384]; /* the messages, each followed by "\n--\n" */
	size_t len;
};

static void notify_open(struct notify *n, const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	memset(n, 0, sizeof(*n));
	snprintf(n->path, sizeof(n->path), "/tmp/eb-notify-%d-%s", (int)getpid(), name);
	unlink(n->path);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(n->fd, 0);
	memcpy(a.sun_path, n->path, strlen(n->path) + 1);
	ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setenv("NOTIFY_SOCKET", n->path, 1);
}

static void notify_close(struct notify *n)
{
	close(n->fd);
	unlink(n->path);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
}

/* Receives for up to ms; true once the log holds `what` at or after offset from. */
static bool notify_wait(struct notify *n, const char *what, size_t from, int ms)
{
	long long end = kit_now_ms() + ms;

	for (;;) {
		struct pollfd p = {.fd = n->fd, .events = POLLIN};
		char buf[4096];
		ssize_t got;
		long long left;

		n->log[n->len] = '\0';
		if (strstr(n->log + from, what) != NULL)
			return true;
		left = end - kit_now_ms();
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		got = recv(n->fd, buf, sizeof(buf) - 1, 0);
		if (got <= 0)
			continue;
		if (n->len + (size_t)got + 5 < sizeof(n->log)) {
			memcpy(n->log + n->len, buf, (size_t)got);
			n->len += (size_t)got;
			memcpy(n->log + n->len, "\n--\n", 4);
			n->len += 4;
		}
	}
}

static int count(const char *hay, const char *needle)
{
	int c = 0;

	for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
		c++;
	return c;
}

/* Rewrites the broker's config file with key = value (replacing its line, or added). */
static void conf_set(const char *path, const char *key, const char *value)
{
	char *old = kit_file_read(path, NULL), *line, *save = NULL, *out;
	size_t cap, len = 0;
	bool done = false;
	FILE *f;

	ck_assert_ptr_nonnull(old);
	cap = strlen(old) + strlen(key) + strlen(value) + 16;
	out = malloc(cap);
	for (line = strtok_r(old, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ' ') {
			len += (size_t)snprintf(out + len, cap - len, "%s = %s\n", key, value);
			done = true;
		} else {
			len += (size_t)snprintf(out + len, cap - len, "%s\n", line);
		}
	}
	if (!done)
		len += (size_t)snprintf(out + len, cap - len, "%s = %s\n", key, value);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fwrite(out, 1, len, f);
	fclose(f);
	free(out);
	free(old);
}

/* An exec of argv on ws-a1; the first frame's timeout_s in *timeout if asked. */
static int run_exec(int port, const char *const argv[], const char *extra, int *timeout)
{
	char *body = sv_body(argv, extra ? json_loads(extra, 0, NULL) : NULL);
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_resp r;
	int status;

	sv_http(port, &q, &r);
	status = r.status;
	if (status == 200 && timeout != NULL) {
		struct kit_frames f;

		sv_stream(&r, &f);
		*timeout = (int)sv_int(kit_frame(&f, 0), "timeout_s");
		kit_frames_free(&f);
	}
	kit_resp_free(&r);
	free(body);
	return status;
}

static const char *const true_argv[] = {"true", NULL};

START_TEST(ready_once_listening_with_status_and_watchdog)
{
	struct kit_req q = {.method = "GET", .path = "/healthz"};
	struct kit_broker b = {0};
	struct notify n;
	struct kit_resp r;

	notify_open(&n, "ready");
	setenv("WATCHDOG_USEC", "400000", 1);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-life-ready", NULL), 0);
	ck_assert_msg(notify_wait(&n, "READY=1", 0, KIT_WAIT_MS), "no READY=1: %s", n.log);
	/* READY means the listener answers. */
	sv_http(b.port, &q, &r);
	ck_assert_int_eq(r.status, 200);
	kit_resp_free(&r);
	ck_assert_msg(strstr(n.log, "STATUS=serving, 0 execs running, ") != NULL, "%s", n.log);
	/* Pings at half of 400 ms: a few within two seconds. */
	notify_wait(&n, "never sent", 0, 2000);
	ck_assert_msg(count(n.log, "WATCHDOG=1") >= 3, "watchdog pings: %d",
	              count(n.log, "WATCHDOG=1"));
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	notify_close(&n);
}
END_TEST

START_TEST(no_watchdog_pings_unless_asked)
{
	struct kit_broker b = {0};
	struct notify n;

	notify_open(&n, "nowd");
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-life-nowd", NULL), 0);
	ck_assert(notify_wait(&n, "READY=1", 0, KIT_WAIT_MS));
	notify_wait(&n, "never sent", 0, 1500);
	ck_assert_int_eq(count(n.log, "WATCHDOG=1"), 0);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	notify_close(&n);
}
END_TEST

/* SIGHUP: RELOADING=1, then READY=1; a new limit applies to the next exec; a config file
 * that does not load changes nothing and says so. */
START_TEST(sighup_reloads_limits_and_refuses_a_broken_file)
{
	struct kit_broker b = {0};
	struct notify n;
	size_t mark;
	char *log;
	int t = 0;

	notify_open(&n, "reload");
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-life-reload", "exec_timeout_max_s = 120\n"),
	                 0);
	ck_assert(notify_wait(&n, "READY=1", 0, KIT_WAIT_MS));
	ck_assert_int_eq(run_exec(b.port, true_argv, "{\"timeout_s\": 100}", &t), 200);
	ck_assert_int_eq(t, 100);

	conf_set(b.conf, "exec_timeout_max_s", "20");
	mark = n.len;
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert_msg(notify_wait(&n, "RELOADING=1", mark, KIT_WAIT_MS), "%s", n.log + mark);
	ck_assert_msg(notify_wait(&n, "READY=1",
	                          (size_t)(strstr(n.log + mark, "RELOADING=1") - n.log),
	                          KIT_WAIT_MS),
	              "no READY=1 after RELOADING=1: %s", n.log + mark);
	ck_assert_int_eq(run_exec(b.port, true_argv, "{\"timeout_s\": 100}", &t), 200);
	ck_assert_int_eq(t, 20); /* capped by the new maximum */

	conf_set(b.conf, "exec_timeout_max_s", "not-a-number");
	mark = n.len;
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(notify_wait(&n, "RELOADING=1", mark, KIT_WAIT_MS));
	ck_assert(notify_wait(&n, "READY=1", mark, KIT_WAIT_MS));
	ck_assert_int_eq(run_exec(b.port, true_argv, "{\"timeout_s\": 100}", &t), 200);
	ck_assert_int_eq(t, 20); /* the settings in force stayed */
	log = kit_file_read(b.log, NULL);
	ck_assert_ptr_nonnull(strstr(log, "configuration not reloaded"));
	ck_assert_ptr_nonnull(strstr(log, "exec_timeout_max_s"));
	free(log);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	notify_close(&n);
}
END_TEST

/* A new key takes effect for new execs (pooled sessions made with the old one take no new
 * lease) while an exec running on an old session finishes untouched. */
START_TEST(sighup_replaces_the_ssh_key_without_disturbing_a_running_exec)
{
	static const char *const slow[] = {"sh", "-c", "echo started; sleep 3; echo finished",
	                                   NULL};
	char *other = kit_tmp_path("otherkey"), *body = sv_body(slow, NULL), *line;
	const char *keygen[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other, NULL};
	struct kit_req q = {.ws = "ws-a1", .token = W.tok_org, .body = body};
	struct kit_broker b = {0};
	struct kit_conn st;
	struct kit_frames f;
	struct kit_resp r;
	struct notify n;
	size_t mark;

	ck_assert_int_eq(kit_run(keygen, NULL, NULL, NULL, NULL, NULL), 0);
	chmod(other, 0644);
	notify_open(&n, "key");
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-life-key", NULL), 0);
	ck_assert(notify_wait(&n, "READY=1", 0, KIT_WAIT_MS));
	ck_assert_int_eq(run_exec(b.port, true_argv, NULL, NULL), 200); /* a pooled session */
	ck_assert_int_eq(kit_stream_open(&st, b.port, &q), 0);
	ck_assert_int_eq(kit_stream_head(&st, KIT_WAIT_MS), 0);
	kit_frames_init(&f);
	while (!sv_out_has(&f, "started") && (line = kit_stream_line(&st, KIT_WAIT_MS)) != NULL) {
		kit_frames_add(&f, line);
		free(line);
	}
	ck_assert(sv_out_has(&f, "started"));

	/* The host does not know the new key: a new exec must fail to log in, which it can
	 * only do on a new session. */
	conf_set(b.conf, "ssh_key", other);
	mark = n.len;
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(notify_wait(&n, "READY=1", mark, KIT_WAIT_MS));
	sv_http(
	    b.port,
	    &(struct kit_req){.ws = "ws-a1", .token = W.tok_org, .body = "{\"argv\":[\"true\"]}"},
	    &r);
	sv_error(W.db, &r, 502, "ssh_auth_failed", "failed_to_start", "ssh_auth_failed");
	kit_resp_free(&r);

	/* The exec that was running finishes on its old session. */
	while ((line = kit_stream_line(&st, KIT_WAIT_MS)) != NULL) {
		kit_frames_add(&f, line);
		free(line);
	}
	ck_assert_str_eq(f.out, "started\nfinished\n");
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	kit_stream_abort(&st);
	kit_frames_free(&f);

	/* And back: the right key serves again. */
	conf_set(b.conf, "ssh_key", th.client_key);
	mark = n.len;
	ck_assert_int_eq(kill(b.pid, SIGHUP), 0);
	ck_assert(notify_wait(&n, "READY=1", mark, KIT_WAIT_MS));
	ck_assert_int_eq(run_exec(b.port, true_argv, NULL, NULL), 200);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	notify_close(&n);
	unlink(other);
	free(other);
	free(body);
}
END_TEST

START_TEST(sigterm_is_stopping_then_exit_0)
{
	struct kit_broker b = {0};
	struct notify n;
	size_t mark;

	notify_open(&n, "stop");
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-life-stop", NULL), 0);
	ck_assert(notify_wait(&n, "READY=1", 0, KIT_WAIT_MS));
	mark = n.len;
	ck_assert_int_eq(kill(b.pid, SIGTERM), 0);
	ck_assert_msg(notify_wait(&n, "STOPPING=1", mark, KIT_WAIT_MS), "%s", n.log + mark);
	ck_assert_int_eq(kit_broker_wait(&b, KIT_WAIT_MS), 0);
	ck_assert(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0);
	notify_close(&n);
}
END_TEST

/* Under systemd the key comes with LoadCredential=ssh_key:...; an ssh_key set anywhere else
 * still wins. */
START_TEST(ssh_key_from_the_credentials_directory)
{
	static const char *const args[] = {"config", NULL};
	char *conf = kit_tmp_path("cred.conf"), env_dir[200], env_conf[220];
	const char *env[] = {env_dir, env_conf, NULL};
	struct tu_run r;
	FILE *f = fopen(conf, "w");

	ck_assert_ptr_nonnull(f);
	fputs("log_level = info\n", f);
	fclose(f);
	snprintf(env_dir, sizeof(env_dir),
	         "CREDENTIALS_DIRECTORY=/run/credentials/exec-broker.service");
	snprintf(env_conf, sizeof(env_conf), "EXEC_BROKER_CONFIG=%s", conf);
	tu_broker(&r, NULL, env, args);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_msg(strstr(r.out, "ssh_key = /run/credentials/exec-broker.service/ssh_key") !=
	                  NULL,
	              "%s", r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "credential ssh_key"));
	tu_run_free(&r);

	f = fopen(conf, "w");
	fputs("ssh_key = /etc/exec-broker/id\n", f);
	fclose(f);
	tu_broker(&r, NULL, env, args);
	ck_assert_ptr_nonnull(strstr(r.out, "ssh_key = /etc/exec-broker/id"));
	tu_run_free(&r);
	unlink(conf);
	free(conf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lifecycle");

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	SV_ADD_LOOP(s, ready_once_listening_with_status_and_watchdog, 1, 90);
	SV_ADD_LOOP(s, no_watchdog_pings_unless_asked, 1, 90);
	SV_ADD_LOOP(s, sighup_reloads_limits_and_refuses_a_broken_file, 1, 90);
	SV_ADD_LOOP(s, sighup_replaces_the_ssh_key_without_disturbing_a_running_exec, 1, 120);
	SV_ADD_LOOP(s, sigterm_is_stopping_then_exit_0, 1, 90);
	SV_ADD_LOOP(s, ssh_key_from_the_credentials_directory, 1, 60);
	return tu_run_suite(s);
}
