/* bench/benchutil.c: what the benchmarks share beyond the test kit (see benchutil.h): series,
 * the libssh2 floor, OpenSSH clients and the ControlMaster, execs through the pool, the audit
 * chain off and on, and the problems and progress lines of a report. */
#include "bench/benchutil.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "common/err.h"
#include "pool/fingerprint.h"
#include "pool/hostkey.h"
#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"

extern char **environ;

/* Problems outside any series: the first ones, and how many there were. */
static char problems[16][400];
static unsigned nproblems;

double bench_ms_since(uint64_t t0)
{
	return (double)(kit_now_ns() - t0) / 1e6;
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
	j->t0 = kit_now_ns();
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
	t0 = kit_now_ns();
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
	char seen[FP_TEXT_LEN + 1] = "none";
	const char *hash;
	int one = 1;

	f->fd = kit_connect(th.sshd.port, 0);
	if (f->fd < 0) {
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
		uint64_t t0 = kit_now_ns();
		if (floor_exec(f, cmd, NULL, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, bench_ms_since(t0));
	}
}

int bench_wrapped(const struct command_spec *spec, const char *fifo, char **out)
{
	char err[160], *body, *prefix;
	size_t blen, len, plen;
	int rc;

	*out = NULL;
	rc = command_build(spec, &body, &blen, err, sizeof(err));
	if (rc != 0)
		return rc;
	rc = command_frame(body, blen, fifo, BENCH_EXEC_DEADLINE_MS, out, &len, &prefix, &plen);
	free(body);
	free(prefix); /* `true` needs none */
	return rc;
}

int local_watch_start(struct local_watch *w, char *err, size_t errlen)
{
	const struct pool_config defaults = {.kill_grace_s = 5};
	struct kit_creds creds;
	int fi[2], fo[2];
	char *script, line[240];
	size_t n = 0;
	ssize_t r;

	w->pid = 0;
	/* No beats are sent: it lives until its stdin closes (local_watch_stop). */
	if (command_watcher(defaults.kill_grace_s, 24 * 3600, &script) != 0 ||
	    pipe2(fi, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "cannot start a watcher");
		return -1;
	}
	if (pipe2(fo, O_CLOEXEC) != 0) {
		close(fi[0]);
		close(fi[1]);
		free(script);
		snprintf(err, errlen, "cannot start a watcher");
		return -1;
	}
	if (kit_creds_for(th.user, &creds) != 0) {
		snprintf(err, errlen, "no account %s", th.user);
		return -1;
	}
	w->pid = fork();
	if (w->pid == 0) {
		setsid();
		dup2(fi[0], 0);
		dup2(fo[1], 1);
		if (kit_creds_apply(&creds) != 0 || chdir("/") != 0)
			_exit(126);
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	free(script);
	close(fi[0]);
	close(fo[1]);
	w->in = fi[1];
	while (n + 1 < sizeof(line) && (r = read(fo[0], line + n, 1)) == 1 && line[n] != '\n')
		n++;
	close(fo[0]);
	line[n] = '\0';
	if (w->pid < 0 || strncmp(line, COMMAND_WATCH_TAG, strlen(COMMAND_WATCH_TAG)) != 0) {
		snprintf(err, errlen, "the local watcher did not start: %s", line);
		local_watch_stop(w);
		return -1;
	}
	snprintf(w->fifo, sizeof(w->fifo), "%s", line + strlen(COMMAND_WATCH_TAG));
	return 0;
}

void local_watch_stop(struct local_watch *w)
{
	if (w->pid <= 0)
		return;
	close(w->in);
	waitpid(w->pid, NULL, 0);
	w->pid = 0;
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
static pid_t spawn(const char *const argv[], bool quiet)
{
	const struct kit_spawn sp = {.argv = argv, .quiet_stdout = true, .quiet_stderr = quiet};

	return kit_spawn(&sp);
}

int bench_run_wait(const char *const argv[], bool quiet, char *err, size_t errlen)
{
	pid_t pid = spawn(argv, quiet);
	int st = 0;
	char why[64];

	if (pid < 0) {
		snprintf(err, errlen, "cannot start %s", argv[0]);
		return EB_ERR_IO;
	}
	if (kit_wait(pid, -1, &st) != 0) {
		snprintf(err, errlen, "waitpid: %s", strerror(errno));
		return EB_ERR_IO;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "%s %s: %s", argv[0], argv[1],
		         kit_status_str(st, why, sizeof(why)));
		return EB_ERR_IO;
	}
	return 0;
}

void ssh_run_sequential(const char *const argv[], struct series *s, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n && s->failures == 0; i++) {
		uint64_t t0 = kit_now_ns();
		if (bench_run_wait(argv, false, err, sizeof(err)) != 0)
			series_fail(s, "%s", err);
		else
			series_add(s, bench_ms_since(t0));
	}
}

void ssh_run_parallel(const char *const argv[], struct series *s, size_t total, size_t concurrency)
{
	pid_t pid[BENCH_CONCURRENCY];
	uint64_t t0[BENCH_CONCURRENCY], start = kit_now_ns();
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
			t0[i] = kit_now_ns();
			pid[i] = spawn(argv, false);
			if (pid[i] < 0) {
				series_fail(s, "cannot start %s", argv[0]);
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
				series_fail(s, "ssh -S: %s", kit_status_str(st, why, sizeof(why)));
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

/* ------------------------------------------------------------------ the chain off and on */

int chain_switch_init(struct chain_switch *sw, const char *db)
{
	PGresult *r;
	int rc = -1;

	memset(sw, 0, sizeof(*sw));
	sw->c = PQconnectdb(db);
	if (PQstatus(sw->c) != CONNECTION_OK) {
		bench_problem("chain switch: %s", PQerrorMessage(sw->c));
		return -1;
	}
	r = PQexec(sw->c, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
	                  "WHERE conrelid = 'exec_audit'::regclass AND contype = 'c' "
	                  "AND pg_get_constraintdef(oid) LIKE '%chain_seq IS NULL%' ORDER BY 1");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 2) {
		bench_problem("chain switch: the two checks on chain_seq IS NULL: %s (%d rows)",
		              PQresultErrorMessage(r), PQntuples(r));
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		snprintf(sw->name[i], sizeof(sw->name[i]), "%s", PQgetvalue(r, i, 0));
		snprintf(sw->def[i], sizeof(sw->def[i]), "%s", PQgetvalue(r, i, 1));
	}
	PQclear(r);
	r = PQexec(sw->c, "SELECT pg_get_functiondef('exec_audit_seal(uuid[], interval)'::"
	                  "regprocedure)");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
	    (sw->seal_def = strdup(PQgetvalue(r, 0, 0))) == NULL) {
		bench_problem("chain switch: exec_audit_seal: %s", PQresultErrorMessage(r));
		goto out;
	}
	sw->on = true;
	rc = 0;
out:
	PQclear(r);
	return rc;
}

int chain_switch_set(struct chain_switch *sw, bool on)
{
	char sql[800];
	PGresult *r;
	int rc;

	if (sw->on == on)
		return 0;
	if (!on)
		snprintf(sql, sizeof(sql),
		         "ALTER TABLE exec_audit DISABLE TRIGGER exec_audit_link, "
		         "DROP CONSTRAINT %s, DROP CONSTRAINT %s",
		         sw->name[0], sw->name[1]);
	else
		snprintf(sql, sizeof(sql),
		         "ALTER TABLE exec_audit ENABLE TRIGGER exec_audit_link, "
		         "ADD CONSTRAINT %s %s NOT VALID, ADD CONSTRAINT %s %s NOT VALID",
		         sw->name[0], sw->def[0], sw->name[1], sw->def[1]);
	r = PQexec(sw->c, sql);
	rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc == 0) {
		/* The brokers' batches of links (api/seal.c) go too: a no-op, or the real one. */
		PQclear(r);
		r = PQexec(sw->c, !on ? "CREATE OR REPLACE FUNCTION exec_audit_seal(ids uuid[], "
		                        "stale interval) RETURNS integer LANGUAGE sql AS 'SELECT 0'"
		                      : sw->seal_def);
		rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	}
	if (rc != 0)
		bench_problem("switching the chain %s: %s", on ? "on" : "off",
		              PQresultErrorMessage(r));
	else
		sw->on = on;
	PQclear(r);
	return rc;
}

void chain_switch_free(struct chain_switch *sw)
{
	if (sw->c != NULL)
		PQfinish(sw->c);
	free(sw->seal_def);
	memset(sw, 0, sizeof(*sw));
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

int bench_broker_start(struct kit_broker *b, const char *db, const char *name,
                       const char *extra_conf)
{
	char instance[64];

	memset(b, 0, sizeof(*b));
	snprintf(instance, sizeof(instance), "bench-%s", name);
	if (kit_broker_start(b, db, instance, extra_conf) != 0) {
		bench_problem("broker %s did not start; see %s", instance, b->log);
		return -1;
	}
	return 0;
}

void bench_broker_stop(struct kit_broker *b)
{
	if (b->pid != 0 && kit_broker_stop(b) != 0)
		bench_problem("broker %s did not exit 0 within %d ms of SIGTERM (wait status %#x); "
		              "see %s",
		              b->instance, KIT_WAIT_MS, (unsigned)b->status, b->log);
}
