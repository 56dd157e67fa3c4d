/* bench/benchutil.c: the pieces the benchmarks share (see benchutil.h): series, the libssh2
 * floor, OpenSSH clients and the ControlMaster, execs through the pool, problems and
 * progress lines, and exec-broker processes (the CLI, `serve`). */
#include "bench/benchutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "common/err.h"
#include "pool/fingerprint.h"
#include "pool/hostkey.h"
#include "tests/kit/harness.h"

extern char **environ;

/* Problems outside any series: the first ones, and how many there were. */
static char problems[16][400];
static unsigned nproblems;

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_ms_since(uint64_t t0)
{
	return (double)(bench_now_ns() - t0) / 1e6;
}

int series_init(struct series *s, const char *name, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->ms = calloc(cap, sizeof(*s->ms));
	s->cap = cap;
	return s->ms == NULL ? EB_ERR_NOMEM : 0;
}

void series_add(struct series *s, double ms)
{
	if (s->n < s->cap)
		s->ms[s->n++] = ms;
}

void series_fail(struct series *s, const char *fmt, ...)
{
	va_list ap;

	if (s->failures++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(s->first_failure, sizeof(s->first_failure), fmt, ap);
	va_end(ap);
}

bool series_ok(const struct series *s)
{
	return s->failures == 0 && s->n > 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double series_pct(struct series *s, double q)
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

double series_per_s(const struct series *s)
{
	return s->wall_s > 0 ? (double)s->n / s->wall_s : 0;
}

long bench_sshd_logins(void)
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

size_t bench_env_count(const char *name, size_t def)
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

int bench_default_pool_config(struct pool_config *pc)
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

/* ------------------------------------------------------------------ the pool */

static void job_launch(struct pool_job *j);

/* One exec is over (failure is NULL when it ran and exited 0): start the next, or end the
 * loop once every exec launched has finished. */
static void job_done(struct pool_job *j, const char *failure)
{
	struct pool_run *r = j->run;

	if (failure != NULL)
		series_fail(r->out, "%s", failure);
	else
		series_add(r->out, bench_ms_since(j->t0));
	r->finished++;
	if (!r->stop && r->launched < r->total)
		job_launch(j);
	else if (r->finished == r->launched)
		event_base_loopbreak(r->base);
}

static void job_data(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len,
                     void *arg)
{
	struct pool_job *j = arg;

	(void)e;
	(void)buf;
	if (s == POOL_STDOUT)
		j->run->stdout_bytes += len;
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
	static const struct pool_exec_callbacks cbs = {NULL, job_data, job_finished};
	struct pool_job *j = arg;
	struct timeval deadline;
	char msg[320];

	if (l == NULL) {
		snprintf(msg, sizeof(msg), "no lease: %s: %s", pool_fail_reason_name(why),
		         detail ? detail : "");
		job_done(j, msg);
		return;
	}
	pool_deadline_after_ms(BENCH_EXEC_DEADLINE_MS, &deadline);
	if (pool_exec_start(l, j->run->spec, NULL, 0, &deadline, &cbs, j) == NULL)
		job_done(j, "pool_exec_start: out of memory");
}

static void job_launch(struct pool_job *j)
{
	struct pool_run *r = j->run;
	struct timeval deadline;

	r->launched++;
	j->t0 = bench_now_ns();
	pool_deadline_after_ms(BENCH_EXEC_DEADLINE_MS, &deadline);
	if (pool_lease_acquire(r->p, &r->target, &deadline, job_acquired, j) == NULL)
		job_done(j, "pool_lease_acquire: out of memory");
}

static void phase_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_run *r = arg;

	(void)fd;
	(void)what;
	r->stop = true;
	series_fail(r->out, "the execs did not end within %d s", BENCH_PHASE_TIMEOUT_S);
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

void pool_run_execs(struct pool_run *r, struct series *out, size_t total, size_t concurrency)
{
	struct timeval limit = {BENCH_PHASE_TIMEOUT_S, 0};
	struct event *timer;
	uint64_t t0;

	if (out->failures > 0)
		return;
	if (concurrency > BENCH_CONCURRENCY)
		concurrency = BENCH_CONCURRENCY;
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
	t0 = bench_now_ns();
	for (size_t i = 0; i < concurrency && i < total; i++) {
		r->jobs[i].run = r;
		job_launch(&r->jobs[i]);
	}
	if (r->finished < r->launched)
		event_base_dispatch(r->base);
	out->wall_s += bench_ms_since(t0) / 1000;
	event_free(timer);
}

void pool_run_close(struct pool_run *r)
{
	if (r->p != NULL) {
		struct timeval limit = {10, 0};
		bool shut = false, expired = false;
		struct event *timer = evtimer_new(r->base, flag_cb, &expired);
		pool_shutdown(r->p, shutdown_done, &shut);
		if (timer != NULL)
			evtimer_add(timer, &limit);
		while (!shut && !expired && timer != NULL)
			event_base_loop(r->base, EVLOOP_ONCE);
		if (timer != NULL)
			event_free(timer);
		if (shut)
			pool_free(r->p);
		else
			fprintf(stderr, "bench: the pool did not shut down within 10 s\n");
		r->p = NULL;
	}
	if (r->base != NULL)
		event_base_free(r->base);
	r->base = NULL;
}

/* ------------------------------------------------------------------ the floor */

int floor_open(struct floor *f, char *err, size_t errlen)
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
	libssh2_session_set_timeout(f->ssh, BENCH_EXEC_DEADLINE_MS);
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

void floor_close(struct floor *f)
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

int floor_exec(struct floor *f, const char *cmd, uint64_t *bytes, char *err, size_t errlen)
{
	static char buf[65536];
	LIBSSH2_CHANNEL *ch;
	uint64_t total = 0;
	ssize_t n;
	int rc = EB_ERR_SSH, status;

	if (bytes != NULL)
		*bytes = 0;
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
		total += (uint64_t)n;
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
	if (bytes != NULL)
		*bytes = total;
	rc = 0;
out:
	libssh2_channel_free(ch);
	return rc;
}

void floor_run(struct floor *f, struct series *s, const char *cmd, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n && s->failures == 0; i++) {
		uint64_t t0 = bench_now_ns();
		if (floor_exec(f, cmd, NULL, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, bench_ms_since(t0));
	}
}

/* ------------------------------------------------------------------ ssh processes */

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

void ssh_argv_direct(struct ssh_argv *a, const char *const *opts, const char *command)
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

void ssh_argv_mux(struct ssh_argv *a, const char *sock, const char *op)
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

int bench_run_wait(const char *const argv[], bool quiet, char *err, size_t errlen)
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

void ssh_run_sequential(const char *const argv[], struct series *s, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n && s->failures == 0; i++) {
		uint64_t t0 = bench_now_ns();
		if (bench_run_wait(argv, false, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, bench_ms_since(t0));
	}
}

void ssh_run_parallel(const char *const argv[], struct series *s, size_t total, size_t concurrency)
{
	pid_t pid[BENCH_CONCURRENCY];
	uint64_t t0[BENCH_CONCURRENCY], start = bench_now_ns();
	struct pollfd pfd[BENCH_CONCURRENCY];
	size_t launched = 0, running = 0;
	char why[64];

	if (concurrency > BENCH_CONCURRENCY)
		concurrency = BENCH_CONCURRENCY;
	for (size_t i = 0; i < concurrency; i++)
		pfd[i] = (struct pollfd){.fd = -1, .events = POLLIN};
	for (;;) {
		int ready;
		for (size_t i = 0; i < concurrency && launched < total && s->failures == 0; i++) {
			if (pfd[i].fd >= 0)
				continue;
			launched++;
			t0[i] = bench_now_ns();
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
		ready = poll(pfd, concurrency, BENCH_PHASE_TIMEOUT_S * 1000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			series_fail(s, "no ssh client ended within %d s", BENCH_PHASE_TIMEOUT_S);
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
				series_add(s, bench_ms_since(t0[i]));
			else
				series_fail(s, "ssh -S: %s", status_text(st, why, sizeof(why)));
		}
	}
	s->wall_s += bench_ms_since(start) / 1000;
	for (size_t i = 0; i < concurrency; i++)
		if (pfd[i].fd >= 0) {
			kill(pid[i], SIGKILL);
			waitpid(pid[i], NULL, 0);
			close(pfd[i].fd);
		}
}

int master_start(const char *sock, char *err, size_t errlen)
{
	struct ssh_argv a, check;

	ssh_argv_direct(
	    &a,
	    (const char *const[]){"-M", "-S", sock, "-o", "ControlPersist=yes", "-N", "-f", NULL},
	    NULL);
	if (bench_run_wait(a.v, false, err, errlen) != 0)
		return EB_ERR_SSH;
	ssh_argv_mux(&check, sock, "check");
	for (int i = 0; i < 100; i++) {
		if (bench_run_wait(check.v, true, err, errlen) == 0)
			return 0;
		usleep(50000);
	}
	return EB_ERR_TIMEOUT;
}

void master_stop(const char *sock)
{
	struct ssh_argv a;
	char err[256];

	ssh_argv_mux(&a, sock, "exit");
	if (bench_run_wait(a.v, true, err, sizeof(err)) != 0)
		fprintf(stderr, "bench: stopping the ControlMaster: %s\n", err);
}

void bench_print_row(struct series *s, struct series *fl)
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

void bench_print_target(const char *label, bool ok, double r, const char *target, bool met)
{
	if (!ok)
		printf("%s = n/a, a way broke (target %s)\n", label, target);
	else
		printf("%s = %.2f (target %s: %s)\n", label, r, target, met ? "met" : "missed");
}

/* ---- problems and progress ---- */

void bench_problem(const char *fmt, ...)
{
	va_list ap;

	if (nproblems < sizeof(problems) / sizeof(problems[0])) {
		va_start(ap, fmt);
		vsnprintf(problems[nproblems], sizeof(problems[0]), fmt, ap);
		va_end(ap);
	}
	nproblems++;
}

unsigned bench_problem_count(void)
{
	return nproblems;
}

void bench_print_failures(struct series *const all[], size_t n)
{
	bool header = false;

	for (size_t i = 0; i < n; i++) {
		if (all[i]->failures == 0)
			continue;
		if (!header)
			printf("\nfailures (a way stops at its first):\n");
		header = true;
		printf("  %s: %s\n", all[i]->name, all[i]->first_failure);
	}
	for (unsigned i = 0; i < nproblems && i < sizeof(problems) / sizeof(problems[0]); i++) {
		if (!header)
			printf("\nfailures:\n");
		header = true;
		printf("  %s\n", problems[i]);
	}
}

void bench_progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void bench_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

double bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the command name in parentheses: state is field 3, utime 14, stime 15. */
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int bench_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

bool bench_file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (f == NULL)
		return false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return found;
}

/* ---- exec-broker processes ---- */

const char *bench_self_dir(void)
{
	static char dir[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n;

	if (dir[0] != '\0')
		return dir;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return "build/bench";
	self[n] = '\0';
	snprintf(dir, sizeof(dir), "%s", dirname(self));
	return dir;
}

const char *bench_broker_bin(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("EB_BIN");
	char d[PATH_MAX];

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] == '\0') {
		snprintf(d, sizeof(d), "%s", bench_self_dir());
		snprintf(path, sizeof(path), "%s/exec-broker", dirname(d));
	}
	return path;
}

int bench_cli(const char *db, const char *const args[], char **out, int *status)
{
	const char *argv[32];
	char dburl[600];
	const char *env[] = {"EXEC_BROKER_CONFIG=/dev/null", dburl, NULL};
	char *o = NULL, *e = NULL;
	int n = 0, st = 0, rc = -1;

	argv[n++] = bench_broker_bin();
	for (int i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(dburl, sizeof(dburl), "EXEC_BROKER_DATABASE_URL=%s", db);
	if (kit_run(argv, env, NULL, &o, &e, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		rc = 0;
	else
		fprintf(stderr, "%s: exec-broker %s %s failed (status %#x): %s%s\n",
		        program_invocation_short_name, args[0], args[1] != NULL ? args[1] : "",
		        (unsigned)st, e != NULL ? e : "", o != NULL ? o : "");
	if (status != NULL)
		*status = st;
	if (out != NULL) {
		*out = o; /* transferred */
		o = NULL;
	}
	free(o);
	free(e);
	return rc;
}

int bench_make_token(const char *db, const char *const args[], char *tok, size_t len)
{
	char *out = NULL;
	int rc = bench_cli(db, args, &out, NULL);

	if (rc == 0) {
		out[strcspn(out, "\n")] = '\0';
		if (strncmp(out, "ebk_", 4) != 0 || strlen(out) >= len) {
			fprintf(stderr, "%s: token create printed \"%s\"\n",
			        program_invocation_short_name, out);
			rc = -1;
		} else {
			snprintf(tok, len, "%s", out);
		}
	}
	free(out);
	return rc;
}

int broker_wait(struct broker *b, int ms, int *st)
{
	uint64_t t0 = bench_now_ns();

	for (;;) {
		pid_t r = waitpid(b->pid, st, WNOHANG);
		if (r == b->pid) {
			b->pid = 0;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (bench_ms_since(t0) > ms)
			return -1;
		bench_sleep_ms(20);
	}
}

int broker_start(struct broker *b, const char *db, const char *name, const char *extra_conf)
{
	const char *bin = bench_broker_bin();
	const char *argv[] = {bin, "--config", b->conf, "serve", NULL};
	pid_t parent = getpid(), pid;
	uint64_t t0;
	FILE *f;
	int st;

	memset(b, 0, sizeof(*b));
	b->port = bench_free_port();
	snprintf(b->instance, sizeof(b->instance), "bench-%s", name);
	snprintf(b->conf, sizeof(b->conf), "%s/broker-%s.conf", th.basedir, name);
	snprintf(b->log, sizeof(b->log), "%s/broker-%s.log", th.basedir, name);
	f = fopen(b->conf, "we");
	if (f == NULL || b->port <= 0) {
		bench_problem("broker %s: cannot write %s: %s", name, b->conf, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	fprintf(f, "database_url = %s\nlisten = 127.0.0.1:%d\nssh_key = %s\ninstance_name = %s\n%s",
	        db, b->port, th.client_key, b->instance, extra_conf != NULL ? extra_conf : "");
	if (fclose(f) != 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		bench_problem("broker %s: fork: %s", name, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		sigset_t none;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent || fd < 0 || in < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 ||
		    dup2(fd, 2) < 0)
			_exit(127);
		/* Only the config file speaks: no EXEC_BROKER_* from the caller's environment. */
		for (char **e = environ; *e != NULL;) {
			if (strncmp(*e, "EXEC_BROKER_", 12) == 0) {
				char var[128];
				snprintf(var, sizeof(var), "%.*s", (int)strcspn(*e, "="), *e);
				unsetenv(var);
			} else {
				e++;
			}
		}
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	b->pid = pid;
	t0 = bench_now_ns();
	while (!bench_file_contains(b->log, "msg=listening")) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			b->pid = 0;
			bench_problem("broker %s exited while starting (wait status %#x); see %s",
			              name, (unsigned)st, b->log);
			return -1;
		}
		if (bench_ms_since(t0) > BENCH_BROKER_WAIT_MS) {
			kill(pid, SIGKILL);
			broker_wait(b, BENCH_BROKER_WAIT_MS, &st);
			bench_problem("broker %s did not log msg=listening within %d ms; see %s",
			              name, BENCH_BROKER_WAIT_MS, b->log);
			return -1;
		}
		bench_sleep_ms(20);
	}
	return 0;
}

void broker_stop(struct broker *b)
{
	int st = 0;

	if (b->pid == 0)
		return;
	kill(b->pid, SIGTERM);
	if (broker_wait(b, BENCH_BROKER_WAIT_MS, &st) != 0) {
		kill(b->pid, SIGKILL);
		broker_wait(b, BENCH_BROKER_WAIT_MS, &st);
		b->pid = 0;
		bench_problem("broker %s did not exit within %d ms of SIGTERM; see %s", b->instance,
		              BENCH_BROKER_WAIT_MS, b->log);
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		bench_problem("broker %s ended with wait status %#x after SIGTERM; see %s",
		              b->instance, (unsigned)st, b->log);
	}
}
