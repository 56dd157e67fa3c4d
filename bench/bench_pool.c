/* bench/bench_pool.c: the pool benchmark. Against one throwaway sshd, it times execs of
 * `true` through the pool, over one bare blocking libssh2 session (the floor), as a fresh
 * `ssh` process each, and through an OpenSSH ControlMaster; then execs per second at 32 in
 * flight through the pool and through the ControlMaster. It prints figures and ratios and
 * never fails on timing: the exit status is 1 only when something did not work. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker/config.h"
#include "common/err.h"
#include "pool/command.h"
#include "pool/fingerprint.h"
#include "pool/hostkey.h"
#include "pool/pool.h"
#include "tests/harness.h"

#define DEFAULT_N        300
#define DEFAULT_PAR_N    640
#define CONCURRENCY      32
#define EXEC_DEADLINE_MS 30000
/* Sequential execs run in turns of this many per way, so that load from outside the
 * benchmark (the machine may be shared) falls on every way alike. */
#define BLOCK 10
/* Every phase ends well within this; past it the phase counts as broken. */
#define PHASE_TIMEOUT_S 120
/* The ControlMaster multiplexes CONCURRENCY sessions on one connection and sshd refuses
 * sessions beyond MaxSessions (10 in the harness), so the benchmark's sshd allows more.
 * The pool never opens more than pool_max_channels_per_session channels on a session. */
#define SSHD_MAX_SESSIONS 64

extern char **environ;

/* Latencies of one way of running `true`, in milliseconds. */
struct series {
	const char *name;
	double *ms;
	size_t n, cap;
	unsigned failures; /* a way stops at its first failure */
	char first_failure[256];
	double wall_s; /* throughput: time from the first start to the last end, summed */
	long logins;   /* SSH logins sshd accepted while this way ran */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

static int series_init(struct series *s, const char *name, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->ms = calloc(cap, sizeof(*s->ms));
	s->cap = cap;
	return s->ms == NULL ? EB_ERR_NOMEM : 0;
}

static void series_add(struct series *s, double ms)
{
	if (s->n < s->cap)
		s->ms[s->n++] = ms;
}

__attribute__((format(printf, 2, 3))) static void series_fail(struct series *s, const char *fmt,
                                                              ...)
{
	va_list ap;

	if (s->failures++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(s->first_failure, sizeof(s->first_failure), fmt, ap);
	va_end(ap);
}

static bool series_ok(const struct series *s)
{
	return s->failures == 0 && s->n > 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0 < q <= 1). Sorts the series. */
static double series_pct(struct series *s, double q)
{
	size_t k;

	if (s->n == 0)
		return 0;
	qsort(s->ms, s->n, sizeof(*s->ms), cmp_double);
	k = (size_t)(q * (double)s->n + 0.999999);
	if (k < 1)
		k = 1;
	return s->ms[(k > s->n ? s->n : k) - 1];
}

/* SSH logins sshd has accepted so far, from its log: how many connections each way made. */
static long sshd_logins(void)
{
	FILE *f = fopen(th.sshd.log, "r");
	char *line = NULL;
	size_t cap = 0;
	long n = 0;

	if (f == NULL)
		return 0;
	while (getline(&line, &cap, f) > 0)
		n += strstr(line, "Accepted publickey") != NULL;
	free(line);
	fclose(f);
	return n;
}

/* ------------------------------------------------------------------ the pool */

struct pool_run;

struct pool_job {
	struct pool_run *run;
	uint64_t t0;
};

struct pool_run {
	struct event_base *base;
	struct pool *p;
	struct pool_target target;
	const struct command_spec *spec;
	struct series *out;
	size_t total, launched, finished;
	bool stop; /* the phase timed out: launch nothing more */
	struct pool_job jobs[CONCURRENCY];
};

static void job_launch(struct pool_job *j);

/* One exec is over (failure is NULL when it ran and exited 0): start the next, or end the
 * loop once every exec launched has finished. */
static void job_done(struct pool_job *j, const char *failure)
{
	struct pool_run *r = j->run;

	if (failure != NULL)
		series_fail(r->out, "%s", failure);
	else
		series_add(r->out, ms_since(j->t0));
	r->finished++;
	if (!r->stop && r->launched < r->total)
		job_launch(j);
	else if (r->finished == r->launched)
		event_base_loopbreak(r->base);
}

static void job_finished(struct pool_exec *e, const struct pool_outcome *o, void *arg)
{
	struct pool_job *j = arg;
	char why[320];

	if (o->kind == POOL_EXITED && o->exit_code == 0) {
		pool_exec_release(e);
		job_done(j, NULL);
		return;
	}
	snprintf(why, sizeof(why), "%s%s%s, exit code %d: %s", pool_outcome_name(o->kind),
	         o->kind == POOL_FAILED_TO_START ? " " : "",
	         o->kind == POOL_FAILED_TO_START ? pool_fail_reason_name(o->fail_reason) : "",
	         o->exit_code, o->detail);
	pool_exec_release(e);
	job_done(j, why);
}

static void job_acquired(struct pool_lease *l, enum pool_fail_reason why, const char *detail,
                         void *arg)
{
	static const struct pool_exec_callbacks cbs = {NULL, NULL, job_finished};
	struct pool_job *j = arg;
	struct timeval deadline;
	char msg[320];

	if (l == NULL) {
		snprintf(msg, sizeof(msg), "no lease: %s: %s", pool_fail_reason_name(why),
		         detail ? detail : "");
		job_done(j, msg);
		return;
	}
	pool_deadline_after_ms(EXEC_DEADLINE_MS, &deadline);
	if (pool_exec_start(l, j->run->spec, NULL, 0, &deadline, &cbs, j) == NULL)
		job_done(j, "pool_exec_start: out of memory");
}

static void job_launch(struct pool_job *j)
{
	struct pool_run *r = j->run;
	struct timeval deadline;

	r->launched++;
	j->t0 = now_ns();
	pool_deadline_after_ms(EXEC_DEADLINE_MS, &deadline);
	if (pool_lease_acquire(r->p, &r->target, &deadline, job_acquired, j) == NULL)
		job_done(j, "pool_lease_acquire: out of memory");
}

static void phase_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_run *r = arg;

	(void)fd;
	(void)what;
	r->stop = true;
	series_fail(r->out, "the execs did not end within %d s", PHASE_TIMEOUT_S);
	event_base_loopbreak(r->base);
}

static void flag_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

static void shutdown_done(void *arg)
{
	*(bool *)arg = true;
}

/* Runs total execs of `true` through the pool, concurrency of them in flight at all
 * times, timing each from pool_lease_acquire to its finished callback. */
static void pool_run_execs(struct pool_run *r, struct series *out, size_t total, size_t concurrency)
{
	struct timeval limit = {PHASE_TIMEOUT_S, 0};
	struct event *timer;
	uint64_t t0;

	if (out->failures > 0)
		return;
	timer = evtimer_new(r->base, phase_timeout_cb, r);
	if (timer == NULL) {
		series_fail(out, "out of memory");
		return;
	}
	r->out = out;
	r->total = total;
	r->launched = r->finished = 0;
	r->stop = false;
	evtimer_add(timer, &limit);
	t0 = now_ns();
	for (size_t i = 0; i < concurrency && i < total; i++) {
		r->jobs[i].run = r;
		job_launch(&r->jobs[i]);
	}
	if (r->finished < r->launched)
		event_base_dispatch(r->base);
	out->wall_s += ms_since(t0) / 1000;
	event_free(timer);
}

/* ------------------------------------------------------------------ the floor */

struct floor {
	int fd;
	LIBSSH2_SESSION *ssh;
};

/* One blocking libssh2 session, host key checked, authenticated with the client key. */
static int floor_open(struct floor *f, char *err, size_t errlen)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)th.sshd.port)};
	char seen[FP_TEXT_LEN + 1] = "none";
	const char *hash;
	int one = 1;

	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(err, errlen, "cannot connect to 127.0.0.1 port %d: %s", th.sshd.port,
		         strerror(errno));
		return EB_ERR_IO;
	}
	/* As the pool does: no Nagle delay on the small packets of a channel's life. */
	setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	f->ssh = libssh2_session_init();
	if (f->ssh == NULL || hostkey_set_method_pref(f->ssh) != 0) {
		snprintf(err, errlen, "cannot create an SSH session");
		return EB_ERR_SSH;
	}
	libssh2_session_set_blocking(f->ssh, 1);
	libssh2_session_set_timeout(f->ssh, EXEC_DEADLINE_MS);
	if (libssh2_session_handshake(f->ssh, f->fd) != 0) {
		snprintf(err, errlen, "SSH handshake failed");
		return EB_ERR_SSH;
	}
	hash = libssh2_hostkey_hash(f->ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
	if (hash != NULL)
		fp_format((const unsigned char *)hash, seen);
	if (strcmp(seen, th.sshd.host_key_fp) != 0) {
		snprintf(err, errlen, "host key is %s, not %s", seen, th.sshd.host_key_fp);
		return EB_ERR_HOSTKEY;
	}
	if (libssh2_userauth_publickey_fromfile(f->ssh, th.user, th.client_key_pub, th.client_key,
	                                        NULL) != 0) {
		snprintf(err, errlen, "%s refused the client key", th.user);
		return EB_ERR_AUTH;
	}
	return 0;
}

static void floor_close(struct floor *f)
{
	if (f->ssh != NULL) {
		libssh2_session_disconnect(f->ssh, "benchmark done");
		libssh2_session_free(f->ssh);
	}
	if (f->fd >= 0)
		close(f->fd);
	f->ssh = NULL;
	f->fd = -1;
}

/* Channel, exec, read to EOF, close, free: the least one exec over SSH can cost. */
static int floor_exec(struct floor *f, const char *cmd, char *err, size_t errlen)
{
	LIBSSH2_CHANNEL *ch;
	char buf[4096];
	ssize_t n;
	int rc = EB_ERR_SSH, status;

	ch = libssh2_channel_open_session(f->ssh);
	if (ch == NULL) {
		snprintf(err, errlen, "the server refused a channel");
		return rc;
	}
	libssh2_channel_handle_extended_data2(ch, LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE);
	if (libssh2_channel_exec(ch, cmd) != 0) {
		snprintf(err, errlen, "the server refused the exec request");
		goto out;
	}
	while ((n = libssh2_channel_read(ch, buf, sizeof(buf))) > 0)
		;
	if (n < 0) {
		snprintf(err, errlen, "reading the output failed (libssh2 error %zd)", n);
		goto out;
	}
	if (libssh2_channel_close(ch) != 0) {
		snprintf(err, errlen, "closing the channel failed");
		goto out;
	}
	status = libssh2_channel_get_exit_status(ch);
	if (status != 0) {
		snprintf(err, errlen, "exit status %d", status);
		goto out;
	}
	rc = 0;
out:
	libssh2_channel_free(ch);
	return rc;
}

static void floor_run(struct floor *f, struct series *s, const char *cmd, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n && s->failures == 0; i++) {
		uint64_t t0 = now_ns();
		if (floor_exec(f, cmd, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, ms_since(t0));
	}
}

/* ------------------------------------------------------------------ ssh processes */

/* argv of one OpenSSH client run. -F /dev/null keeps the machine's ssh_config (GSSAPI,
 * SendEnv...) and ~/.ssh/config out of every run. */
struct ssh_argv {
	char port[16], dest[96];
	const char *v[40];
	size_t n;
};

static void ssh_argv_init(struct ssh_argv *a)
{
	snprintf(a->port, sizeof(a->port), "%d", th.sshd.port);
	snprintf(a->dest, sizeof(a->dest), "%s@127.0.0.1", th.user);
	a->n = 0;
	a->v[0] = NULL;
}

/* Appends words up to the first NULL. */
static void ssh_argv_add(struct ssh_argv *a, const char *const *words)
{
	while (*words != NULL && a->n + 1 < sizeof(a->v) / sizeof(a->v[0]))
		a->v[a->n++] = *words++;
	a->v[a->n] = NULL;
}

/* A client that logs in itself with the client key only (no agent keys) and runs command
 * (NULL: none). opts go before the destination. */
static void ssh_argv_direct(struct ssh_argv *a, const char *const *opts, const char *command)
{
	ssh_argv_init(a);
	ssh_argv_add(a, (const char *const[]){"ssh", "-F", "/dev/null", "-i", th.client_key, "-p",
	                                      a->port, "-o", "IdentitiesOnly=yes", "-o",
	                                      "StrictHostKeyChecking=no", "-o",
	                                      "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
	                                      "-o", "LogLevel=ERROR", NULL});
	ssh_argv_add(a, opts);
	ssh_argv_add(a, (const char *const[]){a->dest, command, NULL});
}

/* A mux client of the master on sock, running `true`, or the control command op. It has
 * no key and knows no host key: were the master unreachable, ssh's fallback to a direct
 * connection would fail instead of being timed as a multiplexed exec. */
static void ssh_argv_mux(struct ssh_argv *a, const char *sock, const char *op)
{
	ssh_argv_init(a);
	ssh_argv_add(a, (const char *const[]){"ssh", "-F", "/dev/null", "-S", sock, "-p", a->port,
	                                      "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", NULL});
	if (op != NULL)
		ssh_argv_add(a, (const char *const[]){"-O", op, NULL});
	ssh_argv_add(a, (const char *const[]){a->dest, op == NULL ? "true" : NULL, NULL});
}

/* Starts argv with stdin and stdout on /dev/null; stderr too when quiet. */
static int spawn(const char *const argv[], bool quiet, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (quiet)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		errno = rc;
		return EB_ERR_IO;
	}
	return 0;
}

static const char *status_text(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, len, "wait status %#x", (unsigned)st);
	return buf;
}

/* Runs argv to its end: 0 if it exited 0. Waits for that pid only, never for any child:
 * the harness (a subreaper) reaps its own children by pid. */
static int run_wait(const char *const argv[], bool quiet, char *err, size_t errlen)
{
	pid_t pid;
	int st;
	char why[64];

	if (spawn(argv, quiet, &pid) != 0) {
		snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(errno));
		return EB_ERR_IO;
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			snprintf(err, errlen, "waitpid: %s", strerror(errno));
			return EB_ERR_IO;
		}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "%s %s: %s", argv[0], argv[1],
		         status_text(st, why, sizeof(why)));
		return EB_ERR_IO;
	}
	return 0;
}

static void ssh_run_sequential(const char *const argv[], struct series *s, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n && s->failures == 0; i++) {
		uint64_t t0 = now_ns();
		if (run_wait(argv, false, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, ms_since(t0));
	}
}

/* Keeps concurrency copies of argv running until total have run; a pidfd per child says
 * when it ended. */
static void ssh_run_parallel(const char *const argv[], struct series *s, size_t total,
                             size_t concurrency)
{
	pid_t pid[CONCURRENCY];
	uint64_t t0[CONCURRENCY], start = now_ns();
	struct pollfd pfd[CONCURRENCY];
	size_t launched = 0, running = 0;
	char why[64];

	for (size_t i = 0; i < concurrency; i++)
		pfd[i] = (struct pollfd){.fd = -1, .events = POLLIN};
	for (;;) {
		int ready;
		for (size_t i = 0; i < concurrency && launched < total && s->failures == 0; i++) {
			if (pfd[i].fd >= 0)
				continue;
			launched++;
			t0[i] = now_ns();
			if (spawn(argv, false, &pid[i]) != 0) {
				series_fail(s, "cannot start ssh: %s", strerror(errno));
				break;
			}
			pfd[i].fd = pidfd_open(pid[i], 0);
			if (pfd[i].fd < 0) {
				series_fail(s, "pidfd_open: %s", strerror(errno));
				waitpid(pid[i], NULL, 0);
				break;
			}
			running++;
		}
		if (running == 0)
			break;
		ready = poll(pfd, concurrency, PHASE_TIMEOUT_S * 1000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			series_fail(s, "no ssh client ended within %d s", PHASE_TIMEOUT_S);
			break;
		}
		for (size_t i = 0; i < concurrency; i++) {
			int st;
			if (pfd[i].fd < 0 || !(pfd[i].revents & POLLIN))
				continue;
			waitpid(pid[i], &st, 0);
			close(pfd[i].fd);
			pfd[i].fd = -1;
			running--;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
				series_add(s, ms_since(t0[i]));
			else
				series_fail(s, "ssh -S: %s", status_text(st, why, sizeof(why)));
		}
	}
	s->wall_s += ms_since(start) / 1000;
	for (size_t i = 0; i < concurrency; i++)
		if (pfd[i].fd >= 0) {
			kill(pid[i], SIGKILL);
			waitpid(pid[i], NULL, 0);
			close(pfd[i].fd);
		}
}

/* Starts a ControlMaster on sock and waits until it answers -O check. */
static int master_start(const char *sock, char *err, size_t errlen)
{
	struct ssh_argv a, check;

	ssh_argv_direct(
	    &a,
	    (const char *const[]){"-M", "-S", sock, "-o", "ControlPersist=yes", "-N", "-f", NULL},
	    NULL);
	if (run_wait(a.v, false, err, errlen) != 0)
		return EB_ERR_SSH;
	ssh_argv_mux(&check, sock, "check");
	for (int i = 0; i < 100; i++) {
		if (run_wait(check.v, true, err, errlen) == 0)
			return 0;
		usleep(50000);
	}
	return EB_ERR_TIMEOUT;
}

static void master_stop(const char *sock)
{
	struct ssh_argv a;
	char err[256];

	ssh_argv_mux(&a, sock, "exit");
	if (run_wait(a.v, true, err, sizeof(err)) != 0)
		fprintf(stderr, "bench: stopping the ControlMaster: %s\n", err);
}

/* ------------------------------------------------------------------ the run */

enum way { WAY_FLOOR, WAY_POOL, WAY_FLOOR_WRAPPED, WAY_MASTER, WAY_FRESH, WAY_COUNT };

struct bench {
	size_t n, par_n;
	struct pool_config pcfg;
	struct command_spec spec;
	char *wrapped; /* the command string the pool sends for `true` */
	struct floor fl;
	struct pool_run run;
	char sock[160];
	bool master;
	struct ssh_argv fresh, mux;
	struct series seq[WAY_COUNT];
	struct series pool_first, pool_par_warm, pool_par, master_par;
	struct pool_stats st_first, st_seq, st_par_warm, st_par;
	long logins_floor, logins_pool, logins_master;
};

static void way_run(struct bench *b, enum way w, size_t n)
{
	struct series *s = &b->seq[w];
	long before = sshd_logins();

	if (s->failures > 0)
		return;
	switch (w) {
	case WAY_FLOOR:
		floor_run(&b->fl, s, "true", n);
		break;
	case WAY_POOL:
		pool_run_execs(&b->run, s, n, 1);
		break;
	case WAY_FLOOR_WRAPPED:
		floor_run(&b->fl, s, b->wrapped, n);
		break;
	case WAY_MASTER:
		ssh_run_sequential(b->mux.v, s, n);
		break;
	case WAY_FRESH:
		ssh_run_sequential(b->fresh.v, s, n);
		break;
	default:
		abort();
	}
	s->logins += sshd_logins() - before;
}

/* Opens the floor session, warms the pool with its first exec, starts the master. */
static void bench_connect(struct bench *b)
{
	char err[256];
	long before = sshd_logins();

	if (floor_open(&b->fl, err, sizeof(err)) != 0) {
		series_fail(&b->seq[WAY_FLOOR], "floor session: %s", err);
		series_fail(&b->seq[WAY_FLOOR_WRAPPED], "floor session: %s", err);
	}
	b->logins_floor = sshd_logins() - before;

	before = sshd_logins();
	b->run.base = event_base_new();
	if (b->run.base == NULL || pool_new(b->run.base, &b->pcfg, &b->run.p, err, sizeof(err))) {
		series_fail(&b->seq[WAY_POOL], "pool_new: %s", b->run.base ? err : "no event base");
	} else {
		pool_run_execs(&b->run, &b->pool_first, 1, 1);
		if (!series_ok(&b->pool_first))
			series_fail(&b->seq[WAY_POOL], "first exec: %s",
			            b->pool_first.first_failure);
		pool_get_stats(b->run.p, &b->st_first);
	}
	b->logins_pool = sshd_logins() - before;

	before = sshd_logins();
	snprintf(b->sock, sizeof(b->sock), "%s/cm.sock", th.basedir);
	if (master_start(b->sock, err, sizeof(err)) != 0)
		series_fail(&b->seq[WAY_MASTER], "ControlMaster: %s", err);
	else
		b->master = true;
	b->logins_master = sshd_logins() - before;
	ssh_argv_mux(&b->mux, b->sock, NULL);
	ssh_argv_direct(&b->fresh, (const char *const[]){NULL}, "true");
}

static void bench_sequential(struct bench *b)
{
	for (size_t done = 0; done < b->n; done += BLOCK) {
		size_t k = b->n - done < BLOCK ? b->n - done : BLOCK;
		for (enum way w = 0; w < WAY_COUNT; w++)
			way_run(b, w, k);
	}
	if (b->run.p != NULL)
		pool_get_stats(b->run.p, &b->st_seq);
}

/* 32 in flight: the pool warms its other sessions first, then pool and ControlMaster take
 * two turns each. */
static void bench_parallel(struct bench *b)
{
	size_t half = b->par_n / 2;

	if (b->run.p != NULL && series_ok(&b->seq[WAY_POOL])) {
		long before = sshd_logins();
		pool_run_execs(&b->run, &b->pool_par_warm, CONCURRENCY, CONCURRENCY);
		b->pool_par_warm.logins = sshd_logins() - before;
		pool_get_stats(b->run.p, &b->st_par_warm);
	} else {
		series_fail(&b->pool_par, "the sequential pool phase broke");
	}
	if (!b->master)
		series_fail(&b->master_par, "no ControlMaster");
	if (b->pool_par_warm.failures > 0)
		series_fail(&b->pool_par, "warm-up: %s", b->pool_par_warm.first_failure);
	for (int turn = 0; turn < 2; turn++) {
		size_t k = turn == 0 ? half : b->par_n - half;
		long before = sshd_logins();
		pool_run_execs(&b->run, &b->pool_par, k, CONCURRENCY);
		b->pool_par.logins += sshd_logins() - before;
		before = sshd_logins();
		if (b->master_par.failures == 0)
			ssh_run_parallel(b->mux.v, &b->master_par, k, CONCURRENCY);
		b->master_par.logins += sshd_logins() - before;
	}
	if (b->run.p != NULL)
		pool_get_stats(b->run.p, &b->st_par);
}

/* ------------------------------------------------------------------ report */

static void print_row(struct series *s, struct series *fl)
{
	double p50, p99;

	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	p50 = series_pct(s, 0.50);
	p99 = series_pct(s, 0.99);
	if (series_ok(fl))
		printf("  %-42s %8.2f %8.2f %8.2fx %8.2fx\n", s->name, p50, p99,
		       p50 / series_pct(fl, 0.50), p99 / series_pct(fl, 0.99));
	else
		printf("  %-42s %8.2f %8.2f %9s %9s\n", s->name, p50, p99, "-", "-");
}

static void print_ratio(const char *label, struct series *num, struct series *den,
                        const char *target, bool at_most, double bound)
{
	double r;

	if (!series_ok(num) || !series_ok(den)) {
		printf("%s = n/a, a way broke (target %s)\n", label, target);
		return;
	}
	r = series_pct(num, 0.50) / series_pct(den, 0.50);
	printf("%s = %.2f (target %s: %s)\n", label, r, target,
	       (at_most ? r <= bound : r >= bound) ? "met" : "missed");
}

static double per_s(const struct series *s)
{
	return s->wall_s > 0 ? (double)s->n / s->wall_s : 0;
}

static void print_throughput(struct series *s)
{
	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	printf("  %-42s %8.0f %8.2f %8.2f %7.2fs\n", s->name, per_s(s), series_pct(s, 0.50),
	       series_pct(s, 0.99), s->wall_s);
}

static void bench_report(struct bench *b)
{
	struct series *all[] = {&b->seq[WAY_FLOOR],  &b->seq[WAY_POOL],  &b->seq[WAY_FLOOR_WRAPPED],
	                        &b->seq[WAY_MASTER], &b->seq[WAY_FRESH], &b->pool_first,
	                        &b->pool_par_warm,   &b->pool_par,       &b->master_par};
	bool header = false;
	char title[96];

	printf("\nexec-broker pool benchmark: sshd (OpenSSH, MaxSessions %d) on 127.0.0.1:%d, "
	       "login %s, %ld CPUs\n",
	       SSHD_MAX_SESSIONS, th.sshd.port, th.user, sysconf(_SC_NPROCESSORS_ONLN));
	printf("pool: default settings (max_channels_per_session %d, max_sessions_per_host %d)\n",
	       b->pcfg.max_channels_per_session, b->pcfg.max_sessions_per_host);
	snprintf(title, sizeof(title), "sequential execs of `true`, N=%zu each", b->n);
	printf("\n%-44s %8s %8s %9s %9s\n", title, "p50 ms", "p99 ms", "p50/floor", "p99/floor");
	for (enum way w = 0; w < WAY_COUNT; w++)
		print_row(&b->seq[w], &b->seq[WAY_FLOOR]);
	printf("(the ways took turns, %d execs each, so that outside load fell on all alike)\n",
	       BLOCK);
	printf("\nnote: each pool exec runs the pool's wrapper on the host, not bare `true`:\n"
	       "    %s\n"
	       "  sh prints its process group, then execs timeout(1), which forks and execs true: "
	       "one\n  fork/exec more on the host than the floor, ControlMaster and fresh ssh "
	       "rows. The floor\n  row with the wrapper runs this same string over the floor's "
	       "session.\n",
	       b->wrapped);
	if (series_ok(&b->pool_first))
		printf("pool: the first exec (not in the table) took %.2f ms with the handshake; "
		       "handshakes:\n  %llu after it, %llu after the sequential execs; stale "
		       "retries %llu\n",
		       b->pool_first.ms[0], (unsigned long long)b->st_first.handshakes_total,
		       (unsigned long long)b->st_seq.handshakes_total,
		       (unsigned long long)b->st_seq.stale_retries);
	printf("\n");
	print_ratio("pool p50 / floor p50", &b->seq[WAY_POOL], &b->seq[WAY_FLOOR], "<= 1.15", true,
	            1.15);
	print_ratio("ControlMaster p50 / pool p50", &b->seq[WAY_MASTER], &b->seq[WAY_POOL], ">= 2",
	            false, 2);
	if (series_ok(&b->seq[WAY_POOL]) && series_ok(&b->seq[WAY_FLOOR_WRAPPED]))
		printf("(pool p50 / p50 of the floor running the wrapper = %.2f: the pool's own "
		       "share)\n",
		       series_pct(&b->seq[WAY_POOL], 0.50) /
		           series_pct(&b->seq[WAY_FLOOR_WRAPPED], 0.50));

	snprintf(title, sizeof(title), "%zu execs of `true`, %d in flight", b->par_n, CONCURRENCY);
	printf("\n%-44s %8s %8s %8s %8s\n", title, "execs/s", "p50 ms", "p99 ms", "wall");
	print_throughput(&b->pool_par);
	print_throughput(&b->master_par);
	if (series_ok(&b->pool_par) && series_ok(&b->master_par))
		printf("pool execs/s / ControlMaster execs/s = %.2f\n",
		       per_s(&b->pool_par) / per_s(&b->master_par));
	else
		printf("pool execs/s / ControlMaster execs/s = n/a, a way broke\n");
	printf("(each took two turns of %zu; before them the pool ran %d execs at %d in flight "
	       "to open\n  its sessions: handshakes %llu before that, %llu after, %llu at the end; "
	       "%u sessions idle)\n",
	       b->par_n / 2, CONCURRENCY, CONCURRENCY,
	       (unsigned long long)b->st_seq.handshakes_total,
	       (unsigned long long)b->st_par_warm.handshakes_total,
	       (unsigned long long)b->st_par.handshakes_total, b->st_par.sessions_idle);

	if (b->run.p != NULL) {
		printf("pool execs by outcome:");
		for (int k = POOL_EXITED; k <= POOL_SHUTDOWN; k++)
			if (b->st_par.execs_by_outcome[k] > 0)
				printf(" %s %llu", pool_outcome_name(k),
				       (unsigned long long)b->st_par.execs_by_outcome[k]);
		printf("; stale retries %llu\n", (unsigned long long)b->st_par.stale_retries);
	}

	printf("\nSSH logins sshd accepted (from its log): setup: floor %ld, pool %ld, "
	       "ControlMaster %ld;\n  during the sequential execs: floor %ld, pool %ld, floor "
	       "with wrapper %ld, ControlMaster %ld,\n  fresh ssh %ld; at %d in flight: pool "
	       "warm-up %ld, pool %ld, ControlMaster %ld\n",
	       b->logins_floor, b->logins_pool, b->logins_master, b->seq[WAY_FLOOR].logins,
	       b->seq[WAY_POOL].logins, b->seq[WAY_FLOOR_WRAPPED].logins, b->seq[WAY_MASTER].logins,
	       b->seq[WAY_FRESH].logins, CONCURRENCY, b->pool_par_warm.logins, b->pool_par.logins,
	       b->master_par.logins);

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i]->failures == 0)
			continue;
		if (!header)
			printf("\nfailures (a way stops at its first):\n");
		header = true;
		printf("  %s: %s\n", all[i]->name, all[i]->first_failure);
	}
}

static bool bench_broke(const struct bench *b)
{
	const struct series *all[] = {
	    &b->seq[WAY_FLOOR],  &b->seq[WAY_POOL],  &b->seq[WAY_FLOOR_WRAPPED],
	    &b->seq[WAY_MASTER], &b->seq[WAY_FRESH], &b->pool_par,
	    &b->master_par};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!series_ok(all[i]))
			return true;
	return false;
}

static void bench_close(struct bench *b)
{
	if (b->master)
		master_stop(b->sock);
	floor_close(&b->fl);
	if (b->run.p != NULL) {
		struct timeval limit = {10, 0};
		bool shut = false, expired = false;
		struct event *timer = evtimer_new(b->run.base, flag_cb, &expired);
		pool_shutdown(b->run.p, shutdown_done, &shut);
		if (timer != NULL)
			evtimer_add(timer, &limit);
		while (!shut && !expired && timer != NULL)
			event_base_loop(b->run.base, EVLOOP_ONCE);
		if (timer != NULL)
			event_free(timer);
		if (shut)
			pool_free(b->run.p);
		else
			fprintf(stderr, "bench: the pool did not shut down within 10 s\n");
	}
	if (b->run.base != NULL)
		event_base_free(b->run.base);
}

static size_t env_count(const char *name, size_t def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long n;

	if (v == NULL || *v == '\0')
		return def;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 1 || n > 100000) {
		fprintf(stderr, "bench: %s=%s is not a count from 1 to 100000; using %zu\n", name,
		        v, def);
		return def;
	}
	return (size_t)n;
}

/* The pool settings' defaults, from the broker's settings table: no file, no environment. */
static int default_pool_config(struct pool_config *pc)
{
	static char *const no_env[] = {NULL};
	const struct config_flags flags = {.config_path = "/dev/null"};
	struct config cfg;
	char err[256];

	if (config_load(&cfg, &flags, no_env, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench: cannot load the default settings: %s\n", err);
		return EB_ERR_INVAL;
	}
	*pc = (struct pool_config){
	    .max_channels_per_session = cfg.pool_max_channels_per_session,
	    .max_sessions_per_host = cfg.pool_max_sessions_per_host,
	    .max_sessions_total = cfg.pool_max_sessions_total,
	    .idle_ttl_s = cfg.pool_idle_ttl_s,
	    .keepalive_s = cfg.pool_keepalive_s,
	    .connect_timeout_s = cfg.pool_connect_timeout_s,
	    .channel_buffer_bytes = cfg.pool_channel_buffer_bytes,
	    .kill_grace_s = cfg.pool_kill_grace_s,
	};
	config_free(&cfg);
	return 0;
}

int main(void)
{
	static const struct eb_bytes argv_true[] = {{"true", 4}};
	static const char *const names[WAY_COUNT] = {
	    [WAY_FLOOR] = "floor: bare libssh2 session, blocking",
	    [WAY_POOL] = "pool (warm; runs its wrapper, see note)",
	    [WAY_FLOOR_WRAPPED] = "floor running the pool's wrapper",
	    [WAY_MASTER] = "ssh -S through a ControlMaster",
	    [WAY_FRESH] = "fresh ssh process per exec",
	};
	static struct bench b;
	struct th_sshd_opts sopts = {.max_sessions = SSHD_MAX_SESSIONS};
	uint64_t t_start = now_ns();
	char err[256];
	int rc = 0;

	b.n = env_count("BENCH_N", DEFAULT_N);
	b.par_n = env_count("BENCH_PAR_N", DEFAULT_PAR_N);
	b.fl.fd = -1;
	b.spec = (struct command_spec){.argv = argv_true, .argc = 1};
	for (enum way w = 0; w < WAY_COUNT; w++)
		rc |= series_init(&b.seq[w], names[w], b.n);
	rc |= series_init(&b.pool_first, "pool, first exec", 1);
	rc |= series_init(&b.pool_par_warm, "pool, warm-up at 32 in flight", CONCURRENCY);
	rc |= series_init(&b.pool_par, "pool", b.par_n);
	rc |= series_init(&b.master_par, "ControlMaster, parallel ssh -S", b.par_n);
	if (rc != 0 || default_pool_config(&b.pcfg) != 0)
		return 1;
	/* The string the pool sends, for an exec with a fresh EXEC_DEADLINE_MS deadline. */
	b.spec.timeout_s = EXEC_DEADLINE_MS / 1000 + 1 + b.pcfg.kill_grace_s;
	b.spec.kill_after_s = b.pcfg.kill_grace_s;
	if (command_build(&b.spec, &b.wrapped, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench: command_build: %s\n", err);
		return 1;
	}
	b.spec.timeout_s = b.spec.kill_after_s = 0; /* the pool sets them from the deadline */

	if (th_setup(TH_SSHD) != 0)
		return 1;
	if (th_sshd_stop(&th.sshd) != 0 || th_sshd_start(&th.sshd, &sopts) != 0) {
		fprintf(stderr, "bench: cannot start the benchmark's sshd\n");
		return 1;
	}
	b.pcfg.ssh_key_path = th.client_key;
	b.run.target =
	    (struct pool_target){"127.0.0.1", th.sshd.port, th.user, th.sshd.host_key_fp};
	b.run.spec = &b.spec;
	if (libssh2_init(0) != 0) {
		fprintf(stderr, "bench: cannot initialise libssh2\n");
		return 1;
	}

	bench_connect(&b);
	bench_sequential(&b);
	bench_parallel(&b);
	bench_report(&b);
	rc = bench_broke(&b) ? 1 : 0;
	bench_close(&b);
	libssh2_exit();
	printf("\nbench: %s in %.0f s\n", rc ? "something broke (above)" : "done",
	       ms_since(t_start) / 1000);
	free(b.wrapped);
	for (enum way w = 0; w < WAY_COUNT; w++)
		free(b.seq[w].ms);
	free(b.pool_first.ms);
	free(b.pool_par_warm.ms);
	free(b.pool_par.ms);
	free(b.master_par.ms);
	th_teardown();
	return rc;
}
