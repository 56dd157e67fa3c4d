/* tests/kit/sshd.c: the sshd fixture: a directory, host key, config and free loopback port
 * per server, `sshd -f` checked with -t and started (it daemonizes into its own session),
 * registered for teardown, and stopped with the processes serving its connections. */
#include "tests/kit/sshd.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"

#define SSHD_TIMEOUT_MS  10000
#define STOP_TIMEOUT_MS  20000
#define DEFAULT_SESSIONS 10

static int sshd_knows_penalties = -1; /* PerSourcePenalties (OpenSSH >= 9.8): -1 not probed */

static const char *sshd_path(void)
{
	static const char *const paths[] = {"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

int th_sshd_keygen(const char *path)
{
	const char *argv[] = {"ssh-keygen", "-q",      "-t", "ed25519", "-N", "",
	                      "-C",         "eb-test", "-f", path,      NULL};

	return th_run_ok(NULL, NULL, argv, NULL);
}

static int key_fingerprint(const char *pub, char *fp, size_t len)
{
	const char *argv[] = {"ssh-keygen", "-lf", pub, NULL};
	char *out, field[128];
	int rc = -1;

	if (th_run_ok(NULL, NULL, argv, &out) != 0)
		return -1;
	if (sscanf(out, "%*s %127s", field) == 1 && strncmp(field, "SHA256:", 7) == 0)
		rc = th_fmt(fp, len, "%s", field);
	else
		th_say("unexpected ssh-keygen -lf output: %s", out);
	free(out);
	return rc;
}

/* Whether extra sets keyword kw (before any Match block, whose settings are conditional). */
static bool extra_sets(const char *extra, const char *kw)
{
	size_t kl = strlen(kw);
	const char *l = extra;

	while (l != NULL && *l != '\0') {
		l += strspn(l, " \t");
		if (strncasecmp(l, "Match", 5) == 0 && (l[5] == ' ' || l[5] == '\t'))
			return false;
		if (strncasecmp(l, kw, kl) == 0 && (l[kl] == ' ' || l[kl] == '\t' || l[kl] == '='))
			return true;
		l = strchr(l, '\n');
		if (l != NULL)
			l++;
	}
	return false;
}

__attribute__((format(printf, 4, 5))) static void cfg_line(FILE *f, const char *extra,
                                                           const char *kw, const char *vfmt, ...)
{
	va_list ap;

	/* sshd keeps the first value of a keyword: leave it to extra_config. */
	if (extra_sets(extra, kw))
		return;
	fprintf(f, "%s ", kw);
	va_start(ap, vfmt);
	vfprintf(f, vfmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static int sshd_write_config(const struct th_sshd *s, bool penalties)
{
	const char *x = s->opts.extra_config;
	FILE *f = fopen(s->config, "we");

	if (f == NULL) {
		th_say("could not create %s: %s", s->config, strerror(errno));
		return -1;
	}
	cfg_line(f, x, "ListenAddress", "127.0.0.1:%d", s->port);
	cfg_line(f, x, "HostKey", "%s", s->host_key);
	cfg_line(f, x, "PidFile", "%s", s->pidfile);
	cfg_line(f, x, "AuthorizedKeysFile", "%s/authorized_keys", s->dir);
	cfg_line(f, x, "StrictModes", "no");
	cfg_line(f, x, "PubkeyAuthentication", "yes");
	cfg_line(f, x, "PasswordAuthentication", "no");
	cfg_line(f, x, "KbdInteractiveAuthentication", "no");
	cfg_line(f, x, "UsePAM", "no");
	cfg_line(f, x, "PermitRootLogin", "no");
	cfg_line(f, x, "AllowUsers", "%s", th.user);
	cfg_line(f, x, "X11Forwarding", "no");
	cfg_line(f, x, "AllowTcpForwarding", "no");
	cfg_line(f, x, "LogLevel", "VERBOSE");
	cfg_line(f, x, "MaxSessions", "%d", s->opts.max_sessions);
	/* Tests open many connections at once; the default 10:30:100 drops some. */
	cfg_line(f, x, "MaxStartups", "200:30:300");
	cfg_line(f, x, "PrintMotd", "no");
	cfg_line(f, x, "PrintLastLog", "no");
	cfg_line(f, x, "UseDNS", "no");
	/* OpenSSH >= 9.8 would lock 127.0.0.1 out after the failed logins tests provoke. */
	if (penalties)
		cfg_line(f, x, "PerSourcePenalties", "no");
	if (x != NULL && *x != '\0')
		fprintf(f, "%s%s", x, x[strlen(x) - 1] == '\n' ? "" : "\n");
	if (fclose(f) != 0) {
		th_say("could not write %s: %s", s->config, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes the config and has sshd -t check it, so that a bad extra_config is one clear
 * message and not a timeout. */
static int sshd_check_config(struct th_sshd *s)
{
	const char *argv[] = {sshd_path(), "-t", "-f", s->config, NULL};
	char *out = NULL, *err = NULL, why[64];
	int st, rc = -1;
	bool pen = sshd_knows_penalties != 0;

	for (;;) {
		if (sshd_write_config(s, pen) != 0 ||
		    kit_run_as(NULL, NULL, argv, NULL, NULL, &out, &err, &st) != 0)
			goto out;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			if (pen)
				sshd_knows_penalties = 1;
			rc = 0;
			goto out;
		}
		if (!pen || strstr(err, "PerSourcePenalties") == NULL)
			break;
		sshd_knows_penalties = 0;
		pen = false;
		free(out);
		free(err);
		out = err = NULL;
	}
	th_say("sshd rejects %s (%s):\n%s%s", s->config, kit_status_str(st, why, sizeof(why)), out,
	       err);
out:
	free(out);
	free(err);
	return rc;
}

/* 0 when sshd (already started) has written its pid file and accepts connections, 1 when it
 * could not bind its port, -1 on any other failure. */
static int sshd_wait(struct th_sshd *s, off_t logoff)
{
	long long deadline = kit_now_ms() + SSHD_TIMEOUT_MS;
	pid_t pid;

	for (;;) {
		pid = kit_file_pid(s->pidfile);
		if (pid > 0 && kit_pid_reap_alive(pid) && kit_port_accepts(s->port)) {
			s->pid = (int)pid;
			return 0;
		}
		if (kit_file_contains(s->log, logoff, "Cannot bind any address"))
			return 1;
		if (kit_file_contains(s->log, logoff, "fatal:") || kit_now_ms() > deadline) {
			th_say("sshd %s did not start on 127.0.0.1:%d", s->config, s->port);
			kit_file_print_tail(s->log, 4096);
			if (pid > 0 && kit_pid_reap_alive(pid))
				kill(pid, SIGKILL);
			return -1;
		}
		kit_sleep_ms(20);
	}
}

/* Starts sshd on s's config; with a fixed port retries that port, else a fresh one. */
static int sshd_launch(struct th_sshd *s, bool fixed_port)
{
	const char *argv[] = {sshd_path(), "-f", s->config, "-E", s->log, NULL};
	char *out = NULL, *err = NULL, why[64];
	struct stat sb;
	int st, r = -1;

	if (argv[0] == NULL) {
		th_say("no sshd in /usr/sbin, /usr/local/sbin or /sbin");
		return -1;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		if (attempt > 0 && fixed_port)
			kit_sleep_ms(200);
		if (attempt > 0 && !fixed_port) {
			s->port = kit_free_port();
			if (s->port < 0 || sshd_write_config(s, sshd_knows_penalties == 1) != 0)
				return -1;
		}
		unlink(s->pidfile);
		sb.st_size = 0;
		stat(s->log, &sb);
		/* Not -D: sshd daemonizes (its own session, out of reach of Check's killpg)
		 * after checking its config and keys, which is when this returns. */
		if (kit_run_as(NULL, NULL, argv, NULL, NULL, &out, &err, &st) != 0)
			return -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			th_say("sshd %s failed (%s): %s", s->config,
			       kit_status_str(st, why, sizeof(why)), err);
			kit_file_print_tail(s->log, 4096);
			free(out);
			free(err);
			return -1;
		}
		free(out);
		free(err);
		out = err = NULL;
		r = sshd_wait(s, sb.st_size);
		if (r == 0) {
			th_register_server("sshd", s->pid, s->pidfile);
			s->running = 1;
			return 0;
		}
		if (r < 0)
			return -1;
	}
	th_say("sshd %s could not bind 127.0.0.1:%d", s->config, s->port);
	kit_file_print_tail(s->log, 4096);
	return -1;
}

int th_sshd_start(struct th_sshd *s, const struct th_sshd_opts *opts)
{
	struct th_sshd_opts o = {DEFAULT_SESSIONS, NULL};
	char path[300], pub[300], key[4096];
	int n;

	/* Copied first: opts may point into *s. */
	if (opts != NULL)
		o = *opts;
	if (o.max_sessions <= 0)
		o.max_sessions = DEFAULT_SESSIONS;
	memset(s, 0, sizeof(*s));
	s->opts = o;
	if (th.basedir[0] == '\0' || th.client_key_pub[0] == '\0') {
		th_say("th_sshd_start: no th_setup(TH_SSHD) in this run");
		return -1;
	}
	/* mkdir is the lock: forked test children start sshds concurrently. */
	for (n = 1; n < 1000; n++) {
		if (th_fmt(s->dir, sizeof(s->dir), "%s/sshd-%d", th.basedir, n) != 0)
			return -1;
		if (mkdir(s->dir, 0755) == 0)
			break;
		if (errno != EEXIST) {
			th_say("could not create %s: %s", s->dir, strerror(errno));
			return -1;
		}
	}
	if (th_fmt(s->config, sizeof(s->config), "%s/sshd_config", s->dir) != 0 ||
	    th_fmt(s->host_key, sizeof(s->host_key), "%s/ssh_host_ed25519_key", s->dir) != 0 ||
	    th_fmt(s->log, sizeof(s->log), "%s/log", s->dir) != 0 ||
	    th_fmt(s->pidfile, sizeof(s->pidfile), "%s/sshd.pid", s->dir) != 0 ||
	    th_fmt(pub, sizeof(pub), "%s.pub", s->host_key) != 0 ||
	    th_fmt(path, sizeof(path), "%s/authorized_keys", s->dir) != 0 ||
	    chmod(s->dir, 0755) != 0)
		return -1;
	if (th_sshd_keygen(s->host_key) != 0 ||
	    key_fingerprint(pub, s->host_key_fp, sizeof(s->host_key_fp)))
		return -1;
	if (kit_file_read_into(th.client_key_pub, key, sizeof(key)) <= 0) {
		th_say("could not read %s", th.client_key_pub);
		return -1;
	}
	if (kit_file_write(path, key, 0644) != 0 || kit_file_write(s->log, "", 0644) != 0)
		return -1;
	s->port = kit_free_port();
	if (s->port < 0 || sshd_check_config(s) != 0)
		return -1;
	return sshd_launch(s, false);
}

int th_sshd_pid(const struct th_sshd *s)
{
	pid_t pid;

	if (s->pidfile[0] == '\0')
		return 0;
	pid = kit_file_pid(s->pidfile);
	return kit_pid_reap_alive(pid) && th_pid_in_dir(pid, s->dir) ? (int)pid : 0;
}

int th_sshd_stop(struct th_sshd *s)
{
	struct kit_procs p = {0};
	pid_t pid = th_sshd_pid(s);
	int rc;

	if (pid == 0 && kit_pid_reap_alive(s->pid) && th_pid_in_dir(s->pid, s->dir))
		pid = s->pid;
	s->running = 0;
	s->pid = 0;
	if (pid == 0)
		return 0;
	/* The listener alone would leave the established connections served. */
	kit_procs_add(&p, pid, SIGTERM);
	kit_procs_add_tree(&p, pid, SIGTERM);
	rc = kit_procs_stop(&p, STOP_TIMEOUT_MS);
	kit_procs_free(&p);
	unlink(s->pidfile);
	if (rc != 0)
		th_say("sshd (pid %d) did not stop", (int)pid);
	return rc;
}

int th_sshd_restart(struct th_sshd *s)
{
	if (s->config[0] == '\0' || access(s->config, R_OK) != 0) {
		th_say("th_sshd_restart: no sshd config %s", s->config);
		return -1;
	}
	if (th_sshd_stop(s) != 0)
		return -1;
	return sshd_launch(s, true);
}

int th_sshd_cut_sessions(struct th_sshd *s)
{
	struct kit_procs p = {0};
	pid_t pid = th_sshd_pid(s);
	int rc;

	if (pid == 0) {
		th_say("th_sshd_cut_sessions: sshd %s is not running", s->config);
		return -1;
	}
	kit_procs_add_tree(&p, pid, SIGTERM);
	rc = kit_procs_stop(&p, STOP_TIMEOUT_MS);
	kit_procs_free(&p);
	return rc;
}

/* The account sshd lets in: the current user, or as root ebtest, created if missing (with
 * sshd's privilege separation dir). */
