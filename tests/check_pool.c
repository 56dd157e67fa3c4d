/* tests/check_pool.c: the SSH session pool against a real sshd on loopback. Each test makes
 * its own event_base and pool, runs real commands through them (as th.user, by /bin/sh on
 * this machine, so that the "host" can be inspected with local tools) and frees everything,
 * so that LeakSanitizer sees every pool object go. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool/command.h"
#include "pool/fingerprint.h"
#include "pool/pool.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"

#define B(s)   ((struct eb_bytes){s, sizeof(s) - 1})
#define KIB    1024
#define MIB    (1024 * 1024)
#define WAIT_S 60.0 /* longest any one wait may take before the test fails */
#define SLACK  3.0  /* seconds allowed on top of a deadline or a kill grace */

struct buf {
	char *p;
	size_t len, cap;
};

struct drv;

/* One command to run: acquired, started, watched and judged by the driver. */
struct job {
	struct drv *d;
	struct eb_bytes argv[64];
	size_t argc;
	struct eb_bytes env_names[4], env_values[4];
	size_t nenv;
	const char *cwd;
	const char *stdin_data;
	size_t stdin_len;
	double acquire_s, deadline_s; /* from job_start() and from pool_exec_start() */
	bool discard;                 /* count output, keep none of it */
	bool pause_on_data;           /* pool_exec_pause() at the first chunk */
	bool keep_exec;               /* not released by finished: the test or drv_free does */
	bool cancel_on_started;       /* pool_exec_cancel() from the started callback */
	bool hold_lease;              /* keep the lease; job_launch() starts the exec later */
	bool prepare;                 /* pool_exec_prepare: the test calls pool_exec_go */
	char *owned[4];               /* strings argv points to, freed with the job */
	int nowned;

	struct pool_acquire *acq; /* until the acquire callback ran */
	struct pool_lease *lease; /* hold_lease: until job_launch() */
	struct pool_exec *e;      /* until released */
	bool in_acquire;
	bool acquired, acquire_failed, paused;
	enum pool_fail_reason acquire_why;
	char acquire_detail[200];
	int started, finished;
	struct pool_outcome o;
	struct buf out, err;
	uint64_t out_total, err_total;
	double t_exec, t_started, t_done;
};

/* One event_base and one pool to one target, and the jobs run on them. */
struct drv {
	struct event_base *base;
	struct pool *pool;
	struct pool_config cfg;
	struct pool_target target;
	char fp[64];
	struct event *tick;
	struct job **jobs;
	size_t njobs, cap;
	bool shutdown_started, shutdown_done;
	/* pool_exec_buffered() sampling, from the tick */
	struct job *watched;
	size_t max_buffered;
	unsigned samples;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An absolute deadline s seconds from now, on CLOCK_MONOTONIC as pool.h asks. */
static struct timeval deadline_in(double s)
{
	struct timespec ts;
	struct timeval tv;
	long long us;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + (long long)(s * 1e6);
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	return tv;
}

__attribute__((format(printf, 1, 2))) static char *str_printf(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, f);
	n = vasprintf(&s, f, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	return s;
}

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t c = b->cap ? b->cap : 4096;
		while (c < b->len + n)
			c *= 2;
		b->p = realloc(b->p, c);
		ck_assert_ptr_nonnull(b->p);
		b->cap = c;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* xorshift64: reproducible bytes of every value. */
static void fill_random(char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (char)(x >> 29);
	}
}

/* A file th.user can read, under the run's base dir (removed at teardown). */
static char *data_file(const char *name, const char *p, size_t n)
{
	char *path = str_printf("%s/pool-%d-%s", th.basedir, (int)getpid(), name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;
	ssize_t w;

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	while (off < n) {
		w = write(fd, p + off, n - off);
		ck_assert_msg(w > 0, "%s: %s", path, strerror(errno));
		off += (size_t)w;
	}
	ck_assert_int_eq(fchmod(fd, 0644), 0);
	ck_assert_int_eq(close(fd), 0);
	return path;
}

/* A path th.user can create (the base dir is root's), removed now if a run left it. */
static char *marker_path(const char *name)
{
	char *path = str_printf("/tmp/eb-pool-%d-%s", (int)getpid(), name);

	unlink(path);
	return path;
}

static off_t file_size(const char *path)
{
	struct stat sb;

	ck_assert_msg(stat(path, &sb) == 0, "%s: %s", path, strerror(errno));
	return sb.st_size;
}

/* The file from offset from on, NUL-terminated. */
static char *file_tail(const char *path, off_t from)
{
	FILE *f = fopen(path, "re");
	struct buf b = {0};
	char chunk[4096];
	size_t n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseeko(f, from, SEEK_SET), 0);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	fclose(f);
	buf_add(&b, "", 1);
	return b.p;
}

/* Processes of th.user whose command line matches pattern (pgrep -f). */
static int count_procs(const char *pattern)
{
	const char *argv[] = {"pgrep", "-u", th.user, "-f", pattern, NULL};
	char *out = NULL;
	int status = 0, n = 0;

	ck_assert_int_eq(kit_run(argv, NULL, NULL, &out, NULL, &status), 0);
	for (const char *p = out; p != NULL && *p != '\0'; p++)
		n += *p == '\n';
	free(out);
	return n;
}

/* The number of them still there after within_s, 0 as soon as they are gone. */
static int wait_procs_gone(const char *pattern, double within_s)
{
	double end = now_s() + within_s;
	int n;

	while ((n = count_procs(pattern)) > 0 && now_s() < end)
		usleep(100000);
	return n;
}

static void assert_procs_gone(const char *pattern, double within_s)
{
	int n = wait_procs_gone(pattern, within_s);

	ck_assert_msg(n == 0, "%d process(es) matching \"%s\" still run %.0f s later", n, pattern,
	              within_s);
}

static void default_config(struct pool_config *c)
{
	*c = (struct pool_config){.ssh_key_path = th.client_key,
	                          .max_channels_per_session = 8,
	                          .max_sessions_per_host = 4,
	                          .max_sessions_total = 1024,
	                          .idle_ttl_s = 300,
	                          .keepalive_s = 30,
	                          .connect_timeout_s = 10,
	                          .channel_buffer_bytes = 262144,
	                          .kill_grace_s = 5};
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct drv *d = arg;
	size_t n;

	(void)fd;
	(void)what;
	if (d->watched == NULL || d->watched->e == NULL)
		return;
	n = pool_exec_buffered(d->watched->e);
	d->samples++;
	if (n > d->max_buffered)
		d->max_buffered = n;
}

/* A pool on a fresh base to s (NULL: the default sshd) with cfg (NULL: the defaults). */
static void drv_init(struct drv *d, const struct pool_config *cfg, const struct th_sshd *s)
{
	struct timeval ten_ms = {0, 10000};
	char err[256] = "";
	int rc;

	memset(d, 0, sizeof(*d));
	if (cfg != NULL)
		d->cfg = *cfg;
	else
		default_config(&d->cfg);
	if (s == NULL)
		s = &th.sshd;
	snprintf(d->fp, sizeof(d->fp), "%s", s->host_key_fp);
	d->target = (struct pool_target){"127.0.0.1", s->port, th.user, d->fp};
	d->base = event_base_new();
	ck_assert_ptr_nonnull(d->base);
	rc = pool_new(d->base, &d->cfg, &d->pool, err, sizeof(err));
	ck_assert_msg(rc == 0 && d->pool != NULL, "pool_new: %d: %s", rc, err);
	/* The tick bounds each EVLOOP_ONCE turn, so drv_wait() checks its limit. */
	d->tick = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
	ck_assert_ptr_nonnull(d->tick);
	ck_assert_int_eq(event_add(d->tick, &ten_ms), 0);
}

typedef bool (*drv_pred)(struct drv *d, void *arg);

/* Runs the loop until done(d, arg), failing the test after limit_s. */
static void drv_wait(struct drv *d, drv_pred done, void *arg, double limit_s, const char *what)
{
	double end = now_s() + limit_s;

	while (!done(d, arg)) {
		ck_assert_msg(now_s() < end, "still waiting for %s after %.0f s", what, limit_s);
		event_base_loop(d->base, EVLOOP_ONCE);
	}
}

static bool pred_time(struct drv *d, void *arg)
{
	(void)d;
	return now_s() >= *(const double *)arg;
}

static void drv_run_for(struct drv *d, double s)
{
	double end = now_s() + s;

	drv_wait(d, pred_time, &end, s + WAIT_S, "time to pass");
}

static bool job_over(const struct job *j)
{
	return j->finished > 0 || j->acquire_failed;
}

static bool pred_job_over(struct drv *d, void *arg)
{
	(void)d;
	return job_over(arg);
}

static bool pred_job_started(struct drv *d, void *arg)
{
	const struct job *j = arg;

	(void)d;
	return j->started > 0 || job_over(j);
}

static bool pred_all_over(struct drv *d, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < d->njobs; i++)
		if (!job_over(d->jobs[i]))
			return false;
	return true;
}

static bool pred_all_started(struct drv *d, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < d->njobs; i++)
		if (!pred_job_started(d, d->jobs[i]))
			return false;
	return true;
}

static bool pred_shutdown_done(struct drv *d, void *arg)
{
	(void)arg;
	return d->shutdown_done;
}

static void on_shutdown_done(void *arg)
{
	struct drv *d = arg;

	ck_assert_msg(!d->shutdown_done, "pool_shutdown's done ran twice");
	d->shutdown_done = true;
}

static void drv_shutdown(struct drv *d)
{
	d->shutdown_started = true;
	pool_shutdown(d->pool, on_shutdown_done, d);
	drv_wait(d, pred_shutdown_done, NULL, WAIT_S, "pool_shutdown's done");
}

static void drv_free(struct drv *d)
{
	for (size_t i = 0; i < d->njobs; i++)
		if (d->jobs[i]->e != NULL) {
			pool_exec_release(d->jobs[i]->e);
			d->jobs[i]->e = NULL;
		}
	if (!d->shutdown_started)
		drv_shutdown(d);
	pool_free(d->pool);
	event_free(d->tick);
	event_base_free(d->base);
	for (size_t i = 0; i < d->njobs; i++) {
		struct job *j = d->jobs[i];
		for (int k = 0; k < j->nowned; k++)
			free(j->owned[k]);
		free(j->out.p);
		free(j->err.p);
		free(j);
	}
	free(d->jobs);
}

static void job_arg(struct job *j, const char *p, size_t len)
{
	ck_assert_uint_lt(j->argc, sizeof(j->argv) / sizeof(j->argv[0]));
	j->argv[j->argc++] = (struct eb_bytes){p, len};
}

/* Keeps s (malloc'd) until the job is freed, and returns it. */
static const char *job_keep(struct job *j, char *s)
{
	ck_assert_int_lt(j->nowned, 4);
	j->owned[j->nowned++] = s;
	return s;
}

static void job_env(struct job *j, const char *name, const char *value)
{
	ck_assert_uint_lt(j->nenv, 4);
	j->env_names[j->nenv] = (struct eb_bytes){name, strlen(name)};
	j->env_values[j->nenv] = (struct eb_bytes){value, strlen(value)};
	j->nenv++;
}

/* A job running argv (NULL-terminated strings that outlive it). */
__attribute__((sentinel)) static struct job *job_new(struct drv *d, const char *arg0, ...)
{
	struct job *j = calloc(1, sizeof(*j));
	const char *a;
	va_list ap;

	ck_assert_ptr_nonnull(j);
	j->d = d;
	j->acquire_s = 30;
	j->deadline_s = 60;
	va_start(ap, arg0);
	for (a = arg0; a != NULL; a = va_arg(ap, const char *))
		job_arg(j, a, strlen(a));
	va_end(ap);
	if (d->njobs == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->jobs = realloc(d->jobs, d->cap * sizeof(*d->jobs));
		ck_assert_ptr_nonnull(d->jobs);
	}
	d->jobs[d->njobs++] = j;
	return j;
}

static void on_started(struct pool_exec *e, void *arg)
{
	struct job *j = arg;

	ck_assert_msg(j->finished == 0, "started ran after finished");
	ck_assert_msg(j->e == NULL || j->e == e, "started ran with another exec");
	j->started++;
	ck_assert_msg(j->started == 1, "started ran %d times", j->started);
	j->t_started = now_s();
	if (j->cancel_on_started)
		pool_exec_cancel(e);
}

static void on_data(struct pool_exec *e, enum pool_stream s, const char *buf, size_t len, void *arg)
{
	struct job *j = arg;

	ck_assert_msg(j->finished == 0, "data ran after finished");
	ck_assert_msg(j->started == 1, "data ran before started");
	ck_assert_msg(j->e == NULL || j->e == e, "data ran with another exec");
	if (s == POOL_STDOUT) {
		j->out_total += len;
		if (!j->discard)
			buf_add(&j->out, buf, len);
	} else if (s == POOL_STDERR) {
		j->err_total += len;
		if (!j->discard)
			buf_add(&j->err, buf, len);
	} else {
		ck_abort_msg("data on stream %d", (int)s);
	}
	if (j->pause_on_data && !j->paused) {
		j->paused = true;
		pool_exec_pause(e);
	}
}

static void on_finished(struct pool_exec *e, const struct pool_outcome *o, void *arg)
{
	struct job *j = arg;

	j->finished++;
	ck_assert_msg(j->finished == 1, "finished ran %d times", j->finished);
	j->o = *o;
	j->t_done = now_s();
	/* Allowed by pool.h: release from inside the exec's own callback. */
	if (!j->keep_exec) {
		pool_exec_release(e);
		j->e = NULL;
	}
}

static const struct pool_exec_callbacks job_callbacks = {on_started, on_data, on_finished};

static void on_lease(struct pool_lease *l, enum pool_fail_reason why, const char *detail, void *arg)
{
	struct job *j = arg;
	struct command_spec spec = {.argv = j->argv,
	                            .argc = j->argc,
	                            .env_names = j->env_names,
	                            .env_values = j->env_values,
	                            .nenv = j->nenv,
	                            .cwd = j->cwd};
	struct timeval dl;
	struct pool_exec *e;

	ck_assert_msg(!j->in_acquire, "acquire callback ran inside pool_lease_acquire");
	ck_assert_msg(!j->acquired && !j->acquire_failed, "acquire callback ran twice");
	j->acq = NULL;
	if (l == NULL) {
		j->acquire_failed = true;
		j->acquire_why = why;
		snprintf(j->acquire_detail, sizeof(j->acquire_detail), "%s", detail ? detail : "");
		j->t_done = now_s();
		return;
	}
	j->acquired = true;
	if (j->hold_lease) {
		/* As the broker does: the lease waits while the audit row is written. */
		j->lease = l;
		return;
	}
	j->t_exec = now_s();
	dl = deadline_in(j->deadline_s);
	e = (j->prepare ? pool_exec_prepare : pool_exec_start)(
	    l, &spec, j->stdin_data, j->stdin_len, &dl, &job_callbacks, j);
	ck_assert_ptr_nonnull(e);
	/* Had finished run inside the call (pool.h does not forbid it), e may be released. */
	if (j->finished == 0 || j->keep_exec)
		j->e = e;
}

/* Starts the exec of a job that held its lease. */
static void job_launch(struct job *j)
{
	struct command_spec spec = {.argv = j->argv, .argc = j->argc};
	struct timeval dl = deadline_in(j->deadline_s);
	struct pool_lease *l = j->lease;

	ck_assert_ptr_nonnull(l);
	j->lease = NULL;
	j->hold_lease = false;
	j->t_exec = now_s();
	j->e = pool_exec_start(l, &spec, NULL, 0, &dl, &job_callbacks, j);
	ck_assert_ptr_nonnull(j->e);
}

static bool pred_all_acquired(struct drv *d, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < d->njobs; i++)
		if (!d->jobs[i]->acquired && !d->jobs[i]->acquire_failed)
			return false;
	return true;
}

static void job_start(struct job *j)
{
	struct timeval dl = deadline_in(j->acquire_s);

	j->in_acquire = true;
	j->acq = pool_lease_acquire(j->d->pool, &j->d->target, &dl, on_lease, j);
	j->in_acquire = false;
	ck_assert_ptr_nonnull(j->acq);
}

static void job_run(struct job *j)
{
	job_start(j);
	drv_wait(j->d, pred_job_over, j, WAIT_S, "an exec to finish");
}

/* One line on what happened to j, for failure messages: its last argv element (up to 40
 * bytes, unprintable ones as '.'), then the outcome. */
static const char *job_says(const struct job *j)
{
	static char s[640];
	char arg[41] = "";
	size_t n = 0;

	if (j->argc > 0)
		for (; n < j->argv[j->argc - 1].len && n < 40; n++) {
			unsigned char c = (unsigned char)j->argv[j->argc - 1].p[n];
			arg[n] = c >= 0x20 && c < 0x7f ? (char)c : '.';
		}
	arg[n] = '\0';
	if (j->acquire_failed)
		snprintf(s, sizeof(s), "[%s] acquire failed: %s: %s", arg,
		         pool_fail_reason_name(j->acquire_why), j->acquire_detail);
	else if (j->finished == 0)
		snprintf(s, sizeof(s), "[%s] not finished (started %d)", arg, j->started);
	else
		snprintf(s, sizeof(s),
		         "[%s] %s (%s) exit %d signal \"%s\" out %llu err %llu: \"%s\"; stderr "
		         "\"%.*s\"",
		         arg, pool_outcome_name(j->o.kind), pool_fail_reason_name(j->o.fail_reason),
		         j->o.exit_code, j->o.signal, (unsigned long long)j->o.stdout_bytes,
		         (unsigned long long)j->o.stderr_bytes, j->o.detail,
		         (int)(j->err.len > 120 ? 120 : j->err.len), j->err.p ? j->err.p : "");
	return s;
}

/* The outcome's byte counts are what the data callback saw when the command ended by itself;
 * once it is being killed, pool.h does not say whether output drained after the kill (and not
 * delivered) counts, so only "at least what was delivered" is checked then. */
static void assert_kind(const struct job *j, enum pool_outcome_kind kind)
{
	bool killed = kind != POOL_EXITED && kind != POOL_SIGNALED;

	ck_assert_msg(j->finished == 1 && j->o.kind == kind, "want %s: %s", pool_outcome_name(kind),
	              job_says(j));
	ck_assert_msg(
	    killed ? j->o.stdout_bytes >= j->out_total && j->o.stderr_bytes >= j->err_total
	           : j->o.stdout_bytes == j->out_total && j->o.stderr_bytes == j->err_total,
	    "outcome counts %llu/%llu bytes, data callback saw %llu/%llu: %s",
	    (unsigned long long)j->o.stdout_bytes, (unsigned long long)j->o.stderr_bytes,
	    (unsigned long long)j->out_total, (unsigned long long)j->err_total, job_says(j));
}

static void assert_exited(const struct job *j, int code)
{
	assert_kind(j, POOL_EXITED);
	ck_assert_msg(j->o.exit_code == code, "want exit %d: %s", code, job_says(j));
	ck_assert_msg(j->started == 1, "started ran %d times: %s", j->started, job_says(j));
}

static void assert_bytes(const char *what, const struct buf *got, const char *want, size_t len)
{
	size_t i = 0, n = got->len < len ? got->len : len;

	while (i < n && got->p[i] == want[i])
		i++;
	ck_assert_msg(got->len == len && i == len,
	              "%s: got %zu bytes, want %zu; first difference at byte %zu", what, got->len,
	              len, i);
}

static void assert_out(const struct job *j, const char *out, const char *err)
{
	assert_bytes("stdout", &j->out, out, strlen(out));
	assert_bytes("stderr", &j->err, err, strlen(err));
}

/* The refused-spec cases: the command would create the marker if it ran. */
static void assert_never_ran(const struct job *j, const char *marker)
{
	ck_assert_msg(!j->acquire_failed && j->finished == 1 && j->o.kind == POOL_FAILED_TO_START &&
	                  j->o.fail_reason == POOL_FAIL_INVALID,
	              "want failed_to_start/invalid: %s", job_says(j));
	ck_assert_msg(j->started == 0, "started ran for a refused spec");
	ck_assert_msg(j->out_total == 0 && j->err_total == 0, "output from a refused spec");
	ck_assert_msg(access(marker, F_OK) != 0, "%s exists: the refused command ran", marker);
}

/* 1. */
START_TEST(sequential_execs_share_one_handshake)
{
	struct drv d;
	struct pool_stats st;

	drv_init(&d, NULL, NULL);
	for (int i = 0; i < 100; i++) {
		struct job *j = job_new(&d, "true", NULL);
		job_run(j);
		assert_exited(j, 0);
		assert_out(j, "", "");
	}
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.handshakes_total == 1, "100 sequential execs took %llu handshakes",
	              (unsigned long long)st.handshakes_total);
	ck_assert_uint_eq(st.execs_by_outcome[POOL_EXITED], 100);
	drv_free(&d);
}
END_TEST

/* 2. 50 at once fit on max_sessions_per_host (4) sessions of 8 channels, waiting for slots. */
START_TEST(concurrent_execs_each_get_their_own_output)
{
	struct drv d;
	struct job *jobs[50];
	struct pool_stats st;

	drv_init(&d, NULL, NULL);
	for (int i = 0; i < 50; i++) {
		const char *idx;

		jobs[i] = job_new(&d, "sh", "-c", "sleep 0.3; echo \"$0\"", NULL);
		idx = job_keep(jobs[i], str_printf("%d", i));
		job_arg(jobs[i], idx, strlen(idx));
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "50 concurrent execs");
	for (int i = 0; i < 50; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d\n", i);
		assert_exited(jobs[i], 0);
		assert_out(jobs[i], want, "");
	}
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.handshakes_total >= 1 && st.handshakes_total <= 4,
	              "50 concurrent execs took %llu handshakes (max_sessions_per_host 4)",
	              (unsigned long long)st.handshakes_total);
	drv_free(&d);
}
END_TEST

/* 3. */
START_TEST(exit_codes_and_signals_are_reported)
{
	static const char *const codes[] = {"0", "1", "7", "255"};
	struct drv d;
	struct job *jobs[4], *sig;

	drv_init(&d, NULL, NULL);
	for (int i = 0; i < 4; i++) {
		jobs[i] = job_new(&d, "sh", "-c", "exit \"$0\"", codes[i], NULL);
		job_start(jobs[i]);
	}
	sig = job_new(&d, "sh", "-c", "kill -TERM $$", NULL);
	job_start(sig);
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs");
	for (int i = 0; i < 4; i++)
		assert_exited(jobs[i], atoi(codes[i]));
	assert_kind(sig, POOL_SIGNALED);
	ck_assert_msg(strcmp(sig->o.signal, "TERM") == 0, "signal \"%s\": %s", sig->o.signal,
	              job_says(sig));
	drv_free(&d);
}
END_TEST

/* 4a. Every byte value, on each stream alone. */
START_TEST(binary_output_arrives_exactly_on_each_stream)
{
	char bytes[512];
	char *path;
	struct drv d;
	struct job *out, *err;

	for (int i = 0; i < 256; i++) {
		bytes[i] = (char)i;
		bytes[511 - i] = (char)i;
	}
	path = data_file("bytes", bytes, sizeof(bytes));
	drv_init(&d, NULL, NULL);
	out = job_new(&d, "cat", path, NULL);
	err = job_new(&d, "sh", "-c", "cat \"$0\" >&2", path, NULL);
	job_start(out);
	job_start(err);
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs");
	assert_exited(out, 0);
	assert_bytes("stdout", &out->out, bytes, sizeof(bytes));
	ck_assert_uint_eq(out->err.len, 0);
	assert_exited(err, 0);
	assert_bytes("stderr", &err->err, bytes, sizeof(bytes));
	ck_assert_uint_eq(err->out.len, 0);
	ck_assert_uint_eq(out->o.stdout_bytes, sizeof(bytes));
	ck_assert_uint_eq(err->o.stderr_bytes, sizeof(bytes));
	drv_free(&d);
	unlink(path);
	free(path);
}
END_TEST

/* 4b. Both streams at full speed at once: they share one channel window. */
START_TEST(ten_mib_on_both_streams_at_once_arrive_exactly)
{
	size_t n = 10 * MIB;
	char *a = malloc(n), *b = malloc(n), *fa, *fb;
	struct drv d;
	struct job *j;

	ck_assert(a != NULL && b != NULL);
	fill_random(a, n, 0x1234567);
	fill_random(b, n, 0x89abcdef);
	fa = data_file("f1", a, n);
	fb = data_file("f2", b, n);
	drv_init(&d, NULL, NULL);
	j = job_new(&d, "sh", "-c", "head -c 10485760 \"$0\" & head -c 10485760 \"$1\" >&2; wait",
	            fa, fb, NULL);
	job_run(j);
	assert_exited(j, 0);
	assert_bytes("stdout", &j->out, a, n);
	assert_bytes("stderr", &j->err, b, n);
	ck_assert_uint_eq(j->o.stdout_bytes, n);
	ck_assert_uint_eq(j->o.stderr_bytes, n);
	drv_free(&d);
	unlink(fa);
	unlink(fb);
	free(fa);
	free(fb);
	free(a);
	free(b);
}
END_TEST

static const struct eb_bytes hostile[] = {
    B("it's"),         B("\"double\""), B("$(id)"), B("`id`"),  B("a;b"),
    B("a|b"),          B("*"),          B("~"),     B("$HOME"), B("line1\nline2"),
    B("-rf"),          B("--"),         B("-n"),    B(""),      B("a b  c"),
    B("\\"),           B("'"),          B("''"),    B("\t"),    B("caf\xc3\xa9 \xf0\x9f\x9a\x80"),
    B("&& true"),      B("!"),          B("#x"),    B("{a,b}"), B("${x:-y}"),
    B("\x01\x7f\xff"), B(">x"),         B("\r\n"),
};

/* 5a. printf '%s\0' prints each argument followed by NUL: the received argv, exactly. The
 * last element is 100 KiB, quotes and newlines included. */
START_TEST(hostile_argv_arrives_unchanged_over_ssh)
{
	static const char in[] = "stdin after the command's own line\n'x'\n";
	size_t n = sizeof(hostile) / sizeof(hostile[0]), big = 100 * KIB;
	size_t wlen = 0;
	char *s = malloc(big), *want = malloc(big + 4096);
	struct drv d;
	struct job *j;

	ck_assert(s != NULL && want != NULL);
	/* Quoted, it is far past what one exec request carries: it goes ahead of stdin, which
	 * the program then reads untouched. */
	for (size_t i = 0; i < big; i++)
		s[i] = "ab\"$`\\ \n;|*\xc3\xa9-'"[i % 15];
	drv_init(&d, NULL, NULL);
	j = job_new(&d, "sh", "-c", "printf '%s\\0' \"$@\" && cat", "sh", NULL);
	for (size_t i = 0; i < n; i++) {
		job_arg(j, hostile[i].p, hostile[i].len);
		memcpy(want + wlen, hostile[i].p, hostile[i].len);
		wlen += hostile[i].len;
		want[wlen++] = '\0';
	}
	job_arg(j, s, big);
	memcpy(want + wlen, s, big);
	wlen += big;
	want[wlen++] = '\0';
	memcpy(want + wlen, in, sizeof(in) - 1);
	wlen += sizeof(in) - 1;
	j->stdin_data = in;
	j->stdin_len = sizeof(in) - 1;
	job_run(j);
	assert_exited(j, 0);
	assert_bytes("argv as printed, then stdin", &j->out, want, wlen);
	drv_free(&d);
	free(want);
	free(s);
}
END_TEST

/* 5b. Specs command_build refuses: each would create the marker if it ran. */
enum refusal { REF_NUL_ARG, REF_NUL_ENV, REF_TOO_LONG, REF_BAD_ENV_NAME, REF_RELATIVE_CWD };

START_TEST(refused_spec_fails_to_start_and_runs_nothing)
{
	size_t big = COMMAND_MAX_LEN + KIB;
	char *marker = marker_path("refused"), *s = malloc(big);
	struct drv d;
	struct job *j, *after;

	ck_assert_ptr_nonnull(s);
	memset(s, 'x', big);
	drv_init(&d, NULL, NULL);
	j = job_new(&d, "sh", "-c", "touch \"$0\"", marker, NULL);
	switch ((enum refusal)_i) {
	case REF_NUL_ARG:
		job_arg(j, "a\0b", 3);
		break;
	case REF_NUL_ENV:
		j->env_names[0] = B("OK");
		j->env_values[0] = B("v\0w");
		j->nenv = 1;
		break;
	case REF_TOO_LONG:
		job_arg(j, s, big);
		break;
	case REF_BAD_ENV_NAME:
		job_env(j, "A-B", "v");
		break;
	case REF_RELATIVE_CWD:
		j->cwd = "tmp";
		break;
	default:
		abort();
	}
	job_run(j);
	assert_never_ran(j, marker);
	/* The lease it took over went back: the pool still runs the next command. */
	after = job_new(&d, "echo", "next", NULL);
	job_run(after);
	assert_exited(after, 0);
	assert_out(after, "next\n", "");
	drv_free(&d);
	ck_assert_msg(access(marker, F_OK) != 0, "%s exists: the refused command ran", marker);
	free(marker);
	free(s);
}
END_TEST

/* 6a. */
START_TEST(env_and_cwd_reach_the_command)
{
	struct drv d;
	struct job *j;

	drv_init(&d, NULL, NULL);
	j = job_new(&d, "sh", "-c", "printf '%s|%s|%s' \"$A\" \"$B\" \"$(pwd)\"", NULL);
	job_env(j, "A", "x y");
	job_env(j, "B", "$(id)");
	j->cwd = "/tmp";
	job_run(j);
	assert_exited(j, 0);
	assert_out(j, "x y|$(id)|/tmp", "");
	drv_free(&d);
}
END_TEST

/* 6b. cat ends only at EOF, so an exit with the same bytes back proves both. */
START_TEST(stdin_is_delivered_exactly_then_eof)
{
	size_t n = MIB + 256;
	char *in = malloc(n);
	struct drv d;
	struct job *j, *none, *small;

	ck_assert_ptr_nonnull(in);
	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	fill_random(in + 256, MIB, 42);
	drv_init(&d, NULL, NULL);
	j = job_new(&d, "cat", NULL);
	j->stdin_data = in;
	j->stdin_len = n;
	j->deadline_s = 30;
	small = job_new(&d, "wc", "-c", NULL);
	small->stdin_data = "a\0b\n";
	small->stdin_len = 4;
	small->deadline_s = 30;
	none = job_new(&d, "cat", NULL);
	none->deadline_s = 30;
	job_start(j);
	job_start(small);
	job_start(none);
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs");
	assert_exited(j, 0);
	assert_bytes("stdin echoed by cat", &j->out, in, n);
	assert_exited(small, 0);
	assert_out(small, "4\n", "");
	assert_exited(none, 0);
	assert_out(none, "", "");
	drv_free(&d);
	free(in);
}
END_TEST

/* 7a. Nothing about the user may reach a server whose key is not the pinned one. */
START_TEST(host_key_mismatch_fails_before_authentication)
{
	unsigned char h[FP_SHA256_LEN];
	struct th_sshd s;
	struct drv d;
	struct job *j;
	struct pool_stats st;
	off_t off;
	char *log = NULL;
	double end;

	ck_assert_int_eq(th_sshd_start(&s, NULL), 0);
	off = file_size(s.log);
	drv_init(&d, NULL, &s);
	memset(h, 0x5a, sizeof(h));
	fp_format(h, d.fp);
	ck_assert_int_eq(fp_parse(d.fp, NULL), 0);
	ck_assert_str_ne(d.fp, s.host_key_fp);
	j = job_new(&d, "sh", "-c", "echo ran", NULL);
	j->acquire_s = 20;
	job_run(j);
	pool_get_stats(d.pool, &st);
	drv_shutdown(&d);
	/* sshd logs the connection's end once the pool has let go of it. */
	for (end = now_s() + 5; now_s() < end; usleep(100000)) {
		free(log);
		log = file_tail(s.log, off);
		if (strstr(log, "Connection closed") || strstr(log, "Disconnected") ||
		    strstr(log, "disconnect"))
			break;
	}
	ck_assert_msg(strstr(log, "Connection from") != NULL, "the pool never connected:\n%s", log);
	ck_assert_msg(strstr(log, "publickey") == NULL && strstr(log, "Accepted") == NULL &&
	                  strstr(log, th.user) == NULL,
	              "sshd saw an authentication attempt:\n%s", log);
	ck_assert_msg(j->acquire_failed && j->acquire_why == POOL_FAIL_HOST_KEY,
	              "want acquire failed with host_key_mismatch: %s (%llu host-key failures, "
	              "%llu handshakes)",
	              job_says(j), (unsigned long long)st.handshake_failures[POOL_FAIL_HOST_KEY],
	              (unsigned long long)st.handshakes_total);
	ck_assert_msg(j->started == 0 && j->finished == 0, "an exec ran: %s", job_says(j));
	ck_assert_uint_ge(st.handshake_failures[POOL_FAIL_HOST_KEY], 1);
	free(log);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* 7b. */
START_TEST(unknown_client_key_fails_with_auth)
{
	char *key = str_printf("%s/pool-wrong-key-%d", th.basedir, (int)getpid());
	char *pub = str_printf("%s.pub", key);
	const char *argv[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key, NULL};
	struct pool_config cfg;
	struct pool_stats st_pool;
	struct drv d;
	struct job *j;
	int st = -1;

	unlink(key);
	unlink(pub);
	ck_assert_int_eq(kit_run(argv, NULL, NULL, NULL, NULL, &st), 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	default_config(&cfg);
	cfg.ssh_key_path = key;
	drv_init(&d, &cfg, NULL);
	j = job_new(&d, "true", NULL);
	j->acquire_s = 20;
	job_run(j);
	pool_get_stats(d.pool, &st_pool);
	ck_assert_msg(j->acquire_failed && j->acquire_why == POOL_FAIL_AUTH,
	              "want acquire failed with auth_failed: %s (%llu auth failures)", job_says(j),
	              (unsigned long long)st_pool.handshake_failures[POOL_FAIL_AUTH]);
	ck_assert_uint_ge(st_pool.handshake_failures[POOL_FAIL_AUTH], 1);
	drv_free(&d);
	unlink(key);
	unlink(pub);
	free(key);
	free(pub);
}
END_TEST

/* 8a. A command whose session died has no exit status: it must not be reported as one. */
START_TEST(sshd_killed_mid_exec_is_a_transport_error)
{
	struct th_sshd s;
	struct drv d;
	struct job *jobs[3], *next;

	ck_assert_int_eq(th_sshd_start(&s, NULL), 0);
	drv_init(&d, NULL, &s);
	for (int i = 0; i < 3; i++) {
		jobs[i] = job_new(&d, "sleep", "30", NULL);
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_started, NULL, WAIT_S, "the sleeps to start");
	for (int i = 0; i < 3; i++)
		ck_assert_msg(jobs[i]->started == 1 && !job_over(jobs[i]), "%s", job_says(jobs[i]));
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs to end after sshd went away");
	for (int i = 0; i < 3; i++) {
		ck_assert_msg(jobs[i]->o.kind != POOL_EXITED, "exited: %s", job_says(jobs[i]));
		assert_kind(jobs[i], POOL_TRANSPORT_ERROR);
	}
	ck_assert_int_eq(th_sshd_restart(&s), 0);
	next = job_new(&d, "echo", "back", NULL);
	job_run(next);
	assert_exited(next, 0);
	assert_out(next, "back\n", "");
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* 8b. An idle session cut by the server is found dead and replaced, unseen by the caller. */
START_TEST(idle_session_cut_by_sshd_restart_is_replaced)
{
	struct th_sshd s;
	struct drv d;
	struct job *first, *second;
	struct pool_stats st;

	ck_assert_int_eq(th_sshd_start(&s, NULL), 0);
	drv_init(&d, NULL, &s);
	first = job_new(&d, "echo", "first", NULL);
	job_run(first);
	assert_exited(first, 0);
	ck_assert_int_eq(th_sshd_restart(&s), 0);
	second = job_new(&d, "echo", "second", NULL);
	job_run(second);
	assert_exited(second, 0);
	assert_out(second, "second\n", "");
	/* The restart closed the idle session (a FIN the kernel holds): it is replaced
	 * before the exec is given it, so nothing had to be retried. */
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.stale_retries == 0 && st.handshakes_total == 2,
	              "stale_retries %llu (handshakes %llu)", (unsigned long long)st.stale_retries,
	              (unsigned long long)st.handshakes_total);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* A new sshd and a pool to it holding one idle session. */
static void drv_warm(struct drv *d, struct th_sshd *s)
{
	struct job *warm;

	ck_assert_int_eq(th_sshd_start(s, NULL), 0);
	drv_init(d, NULL, s);
	warm = job_new(d, "echo", "warm", NULL);
	job_run(warm);
	assert_exited(warm, 0);
}

/* Execs leased on an idle session whose sshd processes then died: the first to use it finds
 * it dead, and every other one leased on it must move to a new session at once, not wait on
 * the dead one until its deadline. */
START_TEST(execs_leased_on_a_session_that_died_all_move_at_once)
{
	struct th_sshd s;
	struct drv d;
	struct job *jobs[4];
	struct pool_stats st;

	drv_warm(&d, &s);
	for (int i = 0; i < 4; i++) {
		jobs[i] = job_new(&d, "echo", "x", NULL);
		jobs[i]->hold_lease = true;
		jobs[i]->deadline_s = 10;
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_acquired, NULL, WAIT_S, "the leases");
	ck_assert_int_eq(th_sshd_cut_sessions(&s), 0);
	/* One after another, as their audit rows land. */
	for (int i = 0; i < 4; i++) {
		job_launch(jobs[i]);
		drv_run_for(&d, 0.05);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs to finish");
	for (int i = 0; i < 4; i++) {
		assert_exited(jobs[i], 0);
		assert_out(jobs[i], "x\n", "");
	}
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.stale_retries >= 1, "the first exec did not find the session dead");
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* A session whose server closed it while it was idle is never leased: the kernel has said
 * so (a FIN), so no exec has to find it out and be retried. */
START_TEST(session_closed_while_idle_is_never_leased)
{
	struct th_sshd s;
	struct drv d;
	struct job *jobs[4];
	struct pool_stats st;

	drv_warm(&d, &s);
	ck_assert_int_eq(th_sshd_cut_sessions(&s), 0);
	drv_run_for(&d, 0.2);
	for (int i = 0; i < 4; i++) {
		jobs[i] = job_new(&d, "echo", "x", NULL);
		jobs[i]->deadline_s = 10;
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs to finish");
	for (int i = 0; i < 4; i++)
		assert_exited(jobs[i], 0);
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.stale_retries == 0, "stale_retries %llu",
	              (unsigned long long)st.stale_retries);
	ck_assert_uint_eq(st.handshakes_total, 2);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

static bool pred_procs_seen(struct drv *d, void *arg)
{
	struct job *j = d->jobs[0];

	return job_over(j) || count_procs(arg) > 0;
}

/* 9. A deadline or a cancel ends the whole process group: background children, and
 * processes that ignore TERM (KILL after kill_grace_s), within deadline plus grace. A
 * cancel comes once the command has run a while, or at once from the started callback
 * (before the pool can have read the command's process group). */
enum { KILL_SLEEP, KILL_TREE, KILL_TREE_IGNORING_TERM, KILL_KINDS };
enum { BY_DEADLINE, BY_CANCEL_WHILE_RUNNING, BY_CANCEL_IN_STARTED, KILL_MODES };
#define KILL_CASES (KILL_KINDS * KILL_MODES)

START_TEST(deadline_and_cancel_leave_no_process_behind)
{
	int kind = _i % KILL_KINDS, mode = _i / KILL_KINDS;
	char *mark = str_printf("300.%d%d", (int)getpid(), _i);
	char *pattern = str_printf("sleep %s", mark);
	struct drv d;
	struct job *j;
	double took, limit;
	const char *script;
	int left;

	drv_init(&d, NULL, NULL);
	if (kind == KILL_SLEEP) {
		j = job_new(&d, "sleep", mark, NULL);
	} else {
		j = job_new(&d, "sh", "-c", NULL);
		script =
		    job_keep(j, str_printf("%ssleep %s & sleep %s; wait",
		                           kind == KILL_TREE_IGNORING_TERM ? "trap '' TERM; " : "",
		                           mark, mark));
		job_arg(j, script, strlen(script));
	}
	j->deadline_s = mode == BY_DEADLINE ? 1 : 60;
	j->cancel_on_started = mode == BY_CANCEL_IN_STARTED;
	job_start(j);
	drv_wait(&d, pred_job_started, j, WAIT_S, "the exec to start");
	if (mode != BY_CANCEL_IN_STARTED) {
		drv_wait(&d, pred_procs_seen, pattern, WAIT_S, "the command's processes");
		ck_assert_msg(!job_over(j), "over before its deadline: %s", job_says(j));
		ck_assert_int_ge(count_procs(pattern), kind == KILL_SLEEP ? 1 : 2);
	}
	if (mode == BY_CANCEL_WHILE_RUNNING) {
		drv_run_for(&d, 0.5);
		ck_assert_msg(j->e != NULL && !job_over(j), "%s", job_says(j));
		j->t_exec = now_s();
		pool_exec_cancel(j->e);
	}
	if (mode == BY_CANCEL_IN_STARTED)
		j->t_exec = j->t_started;
	drv_wait(&d, pred_job_over, j, WAIT_S, "the exec to end");
	took = j->t_done - j->t_exec;
	limit = (mode == BY_DEADLINE ? 1 : 0) + d.cfg.kill_grace_s + SLACK;
	left = wait_procs_gone(pattern, SLACK);
	ck_assert_msg(took <= limit && left == 0,
	              "ended %.1f s after the %s (allowed %.1f s), %d process(es) left %.0f s "
	              "later: %s",
	              took, mode == BY_DEADLINE ? "start" : "cancel", limit, left, SLACK,
	              job_says(j));
	if (mode == BY_DEADLINE)
		ck_assert_msg(took >= 0.9, "timed out %.2f s after the start, deadline 1 s", took);
	assert_kind(j, mode == BY_DEADLINE ? POOL_TIMEOUT : POOL_CANCELLED);
	drv_free(&d);
	free(pattern);
	free(mark);
}
END_TEST

static bool pred_job_paused(struct drv *d, void *arg)
{
	const struct job *j = arg;

	(void)d;
	return j->paused || job_over(j);
}

static bool pred_out_at_least(struct drv *d, void *arg)
{
	const struct job *j = d->jobs[0];

	return job_over(j) || j->out_total >= *(const uint64_t *)arg;
}

/* 10. A paused exec holds at most its window, and the others on its session flow. */
START_TEST(paused_exec_is_bounded_and_others_flow)
{
	char *mark = str_printf("eb-big-%d", (int)getpid());
	const char *head = "head -c 1073741824 /dev/zero";
	struct drv d;
	struct job *big, *other;
	uint64_t at_pause, after_resume, more;
	size_t bound;

	ck_assert_msg(count_procs(head) == 0, "a \"%s\" runs already", head);
	drv_init(&d, NULL, NULL);
	bound = (size_t)d.cfg.channel_buffer_bytes + 64 * KIB;
	big = job_new(&d, "sh", "-c", "head -c 1073741824 /dev/zero; exit", mark, NULL);
	big->discard = true;
	big->pause_on_data = true;
	big->keep_exec = true;
	big->deadline_s = 100;
	job_start(big);
	drv_wait(&d, pred_job_paused, big, WAIT_S, "the first chunk");
	ck_assert_msg(big->paused && !job_over(big), "%s", job_says(big));
	at_pause = big->out_total;
	d.watched = big;

	other = job_new(&d, "sh", "-c", "echo second; echo err >&2", NULL);
	job_start(other);
	drv_run_for(&d, 2.0);
	drv_wait(&d, pred_job_over, other, WAIT_S, "the second exec");
	assert_exited(other, 0);
	assert_out(other, "second\n", "err\n");
	ck_assert_msg(!job_over(big), "the paused exec ended: %s", job_says(big));
	ck_assert_uint_ge(d.samples, 50);
	ck_assert_msg(d.max_buffered <= bound, "pool_exec_buffered() reached %zu, bound %zu",
	              d.max_buffered, bound);
	ck_assert_msg(big->out_total - at_pause <= MIB,
	              "%llu bytes delivered after pool_exec_pause()",
	              (unsigned long long)(big->out_total - at_pause));

	/* Resumed, it flows again, still within its bound. */
	after_resume = big->out_total;
	more = after_resume + 8 * MIB;
	pool_exec_resume(big->e);
	drv_wait(&d, pred_out_at_least, &more, WAIT_S, "output after pool_exec_resume()");
	ck_assert_msg(!job_over(big), "%s", job_says(big));
	ck_assert_msg(d.max_buffered <= bound, "pool_exec_buffered() reached %zu, bound %zu",
	              d.max_buffered, bound);

	pool_exec_cancel(big->e);
	drv_wait(&d, pred_job_over, big, WAIT_S, "the cancelled exec");
	assert_kind(big, POOL_CANCELLED);
	assert_procs_gone(mark, d.cfg.kill_grace_s + SLACK);
	assert_procs_gone(head, SLACK);
	drv_free(&d);
	free(mark);
}
END_TEST

/* 11. The server allows fewer channels per session than the pool would open. */
/* An idle session is closed after pool_idle_ttl_s; the next exec connects again. */
START_TEST(idle_sessions_close_after_their_ttl)
{
	struct pool_config cfg;
	struct pool_stats st;
	struct drv d;
	struct job *j;

	default_config(&cfg);
	cfg.idle_ttl_s = 1;
	cfg.keepalive_s = 1;
	drv_init(&d, &cfg, NULL);
	j = job_new(&d, "true", NULL);
	job_run(j);
	assert_exited(j, 0);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.sessions_idle, 1);
	drv_run_for(&d, 2.5);
	pool_get_stats(d.pool, &st);
	ck_assert_msg(st.sessions_idle == 0 && st.sessions_ready == 0, "idle %u ready %u",
	              st.sessions_idle, st.sessions_ready);
	j = job_new(&d, "true", NULL);
	job_run(j);
	assert_exited(j, 0);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.handshakes_total, 2);
	drv_free(&d);
}
END_TEST

/* At pool_max_sessions_total, a new target's session replaces the least recently used
 * idle one instead of waiting. */
START_TEST(session_cap_evicts_the_least_recently_used_idle_session)
{
	struct pool_config cfg;
	struct pool_stats st;
	struct th_sshd other;
	struct pool_target first;
	char fp[64];
	struct drv d;
	struct job *j;

	ck_assert_int_eq(th_sshd_start(&other, NULL), 0);
	default_config(&cfg);
	cfg.max_sessions_total = 1;
	drv_init(&d, &cfg, NULL);
	first = d.target;
	j = job_new(&d, "true", NULL);
	job_run(j);
	assert_exited(j, 0);
	snprintf(fp, sizeof(fp), "%s", other.host_key_fp);
	d.target = (struct pool_target){"127.0.0.1", other.port, th.user, fp};
	j = job_new(&d, "echo", "second", NULL);
	job_run(j);
	assert_exited(j, 0);
	assert_out(j, "second\n", "");
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.handshakes_total, 2);
	ck_assert_uint_eq(st.sessions_idle + st.sessions_ready + st.sessions_connecting, 1);
	d.target = first;
	j = job_new(&d, "true", NULL);
	job_run(j);
	assert_exited(j, 0);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.handshakes_total, 3);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&other), 0);
}
END_TEST

/* A host name goes through libevent's asynchronous resolver (here from /etc/hosts: tests
 * send nothing to the machine's name servers). */
START_TEST(host_names_are_resolved_asynchronously)
{
	struct drv d;
	struct job *j;

	drv_init(&d, NULL, NULL);
	d.target.host = "localhost";
	j = job_new(&d, "echo", "resolved", NULL);
	job_run(j);
	assert_exited(j, 0);
	assert_out(j, "resolved\n", "");
	drv_free(&d);
}
END_TEST

START_TEST(server_max_sessions_below_pool_channels)
{
	struct th_sshd s;
	struct drv d;
	struct job *jobs[20];

	ck_assert_int_eq(th_sshd_start(&s, &(struct th_sshd_opts){.max_sessions = 3}), 0);
	drv_init(&d, NULL, &s);
	for (int i = 0; i < 20; i++) {
		jobs[i] = job_new(&d, "sh", "-c", "sleep 0.2; echo ok", NULL);
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "20 execs");
	for (int i = 0; i < 20; i++) {
		assert_exited(jobs[i], 0);
		assert_out(jobs[i], "ok\n", "");
	}
	/* The refusals taught the pool the server's limit: 3 sessions, one the watcher's. */
	struct pool_stats st;
	pool_get_stats(d.pool, &st);
	ck_assert_uint_ge(st.channel_refusals, 1);
	ck_assert_uint_eq(st.channel_limit_learned, 2);
	for (int i = 0; i < 20; i++) {
		jobs[i] = job_new(&d, "sh", "-c", "sleep 0.2; echo ok", NULL);
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "20 more execs");
	/* A second round at the limit: an open right after a close may be refused (sshd has
	 * not freed the closed one yet) and is retried, and that does not lower the limit. */
	for (int i = 0; i < 20; i++) {
		assert_exited(jobs[i], 0);
		assert_out(jobs[i], "ok\n", "");
	}
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.channel_limit_learned, 2);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* 11a. MaxSessions 1 with room for two sessions per host: the sessions first opened come up
 * together and each starts its watcher before learning the host allows one channel. One
 * lends its watcher; the other must not become a second lender (it would hold the other
 * place under the cap and never be used): every exec runs, on borrowers. */
START_TEST(max_sessions_1_two_sessions_per_host_runs_every_exec)
{
	struct pool_config cfg;
	struct th_sshd s;
	struct drv d;
	struct job *jobs[12];

	ck_assert_int_eq(th_sshd_start(&s, &(struct th_sshd_opts){.max_sessions = 1}), 0);
	default_config(&cfg);
	cfg.max_sessions_per_host = 2;
	drv_init(&d, &cfg, &s);
	for (int i = 0; i < 12; i++) {
		jobs[i] = job_new(&d, "sh", "-c", "sleep 0.2; echo ok", NULL);
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "12 execs");
	for (int i = 0; i < 12; i++) {
		assert_exited(jobs[i], 0);
		assert_out(jobs[i], "ok\n", "");
	}
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* 11a'. pool_free with a lender and its borrower still listed (no shutdown ran: the
 * sessions are freed in list order, the lender first): nothing is used after it is freed
 * (run under ASan). */
START_TEST(pool_free_with_borrowers_listed)
{
	struct pool_config cfg;
	struct th_sshd s;
	struct drv d;
	struct job *jobs[12];
	struct pool_stats st;

	ck_assert_int_eq(th_sshd_start(&s, &(struct th_sshd_opts){.max_sessions = 1}), 0);
	default_config(&cfg);
	cfg.max_sessions_per_host = 2;
	drv_init(&d, &cfg, &s);
	for (int i = 0; i < 12; i++) {
		jobs[i] = job_new(&d, "sh", "-c", "sleep 0.2; echo ok", NULL);
		job_start(jobs[i]);
	}
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "12 execs");
	for (int i = 0; i < 12; i++)
		assert_exited(jobs[i], 0);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.sessions_idle, 2); /* the lender and a borrower */
	d.shutdown_started = true;              /* drv_free: straight to pool_free */
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
}
END_TEST

/* Cancels j (running, its processes seen) and asserts it ends cancelled within the grace
 * with nothing of it left on the host. */
static void cancel_ends_it(struct drv *d, struct job *j, const char *pattern)
{
	ck_assert_msg(!job_over(j), "%s", job_says(j));
	j->t_exec = now_s();
	pool_exec_cancel(j->e);
	drv_wait(d, pred_job_over, j, WAIT_S, "the exec to end");
	ck_assert_msg(j->t_done - j->t_exec <= d->cfg.kill_grace_s + SLACK,
	              "ended %.1f s after the cancel: %s", j->t_done - j->t_exec, job_says(j));
	assert_kind(j, POOL_CANCELLED);
	ck_assert_int_eq(wait_procs_gone(pattern, SLACK), 0);
}

/* 11b. A session as full as the server allows (MaxSessions 2: the watcher and one exec)
 * still cancels its command: the kill goes through the watcher, never through a channel
 * the server would refuse. */
START_TEST(cancel_needs_no_spare_channel)
{
	char *mark = str_printf("300.%d7", (int)getpid());
	char *pattern = str_printf("sleep %s", mark);
	struct pool_config cfg;
	struct th_sshd s;
	struct drv d;
	struct job *j;

	ck_assert_int_eq(th_sshd_start(&s, &(struct th_sshd_opts){.max_sessions = 2}), 0);
	default_config(&cfg);
	cfg.max_channels_per_session = 1;
	cfg.max_sessions_per_host = 1;
	drv_init(&d, &cfg, &s);
	j = job_new(&d, "sleep", mark, NULL);
	j->deadline_s = 60;
	job_start(j);
	drv_wait(&d, pred_procs_seen, pattern, WAIT_S, "the command's process");
	cancel_ends_it(&d, j, pattern);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	free(pattern);
	free(mark);
}
END_TEST

/* Whether pid's command line has the watcher's tag in it (its script does). */
static bool is_watcher(pid_t pid)
{
	char path[64], cmd[8192];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	n = fread(cmd, 1, sizeof(cmd) - 1, f);
	fclose(f);
	for (size_t k = 0; k < n; k++)
		if (cmd[k] == '\0')
			cmd[k] = ' ';
	cmd[n] = '\0';
	return strstr(cmd, COMMAND_WATCH_TAG) != NULL;
}

/* The pid of the watcher shell among sshd s's descendants (its subshells are forks with
 * the same command line: the watcher is the one whose parent is not one), or 0. */
static pid_t find_watcher(const struct th_sshd *s)
{
	struct kit_procs tree = {0};
	pid_t found = 0, ppid;

	kit_procs_add_tree(&tree, th_sshd_pid(s), 0);
	for (size_t i = 0; i < tree.n && found == 0; i++)
		if (is_watcher(tree.v[i].pid) &&
		    kit_proc_stat(tree.v[i].pid, NULL, &ppid, NULL) == 0 && !is_watcher(ppid))
			found = tree.v[i].pid;
	kit_procs_free(&tree);
	return found;
}

/* 11c. The watcher of a session is killed on the host: the session takes no new exec
 * (the next one gets a new session and its own watcher), and a command still running on
 * it is cancelled all the same, through a kill channel. */
START_TEST(a_session_whose_watcher_died_is_retired)
{
	char *mark = str_printf("300.%d8", (int)getpid());
	char *pattern = str_printf("sleep %s", mark);
	struct pool_stats st;
	struct th_sshd s;
	struct drv d;
	struct job *j, *next;
	pid_t w;

	ck_assert_int_eq(th_sshd_start(&s, NULL), 0);
	drv_init(&d, NULL, &s);
	j = job_new(&d, "sleep", mark, NULL);
	j->deadline_s = 60;
	job_start(j);
	drv_wait(&d, pred_procs_seen, pattern, WAIT_S, "the command's process");
	w = find_watcher(&s);
	ck_assert_int_gt(w, 1);
	ck_assert_int_eq(kill(w, SIGKILL), 0);
	drv_run_for(&d, 1.0); /* the broker reads the watcher's channel end */
	next = job_new(&d, "echo", "next", NULL);
	job_run(next);
	assert_exited(next, 0);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.handshakes_total, 2);
	cancel_ends_it(&d, j, pattern);
	drv_free(&d);
	ck_assert_int_eq(th_sshd_stop(&s), 0);
	free(pattern);
	free(mark);
}
END_TEST

static bool pred_channels_free(struct drv *d, void *arg)
{
	struct pool_stats st;

	(void)arg;
	pool_get_stats(d->pool, &st);
	return st.channels_in_use == 0;
}

static bool pred_channels_open(struct drv *d, void *arg)
{
	struct pool_stats st;

	pool_get_stats(d->pool, &st);
	return st.channels_in_use == (unsigned)(uintptr_t)arg;
}

/* A prepared exec opens its channel and waits: nothing runs on the host before
 * pool_exec_go, another exec on the same session runs meanwhile, and one cancelled or
 * released while it waits never runs. */
START_TEST(prepared_exec_runs_only_after_go)
{
	char *f[3];
	struct job *held, *other, *cancelled, *released;
	struct pool_stats st;
	struct drv d;

	for (int i = 0; i < 3; i++) {
		f[i] = str_printf("/tmp/eb-prepared-%d-%d", (int)getpid(), i);
		unlink(f[i]);
	}
	drv_init(&d, NULL, NULL);
	held = job_new(&d, "sh", "-c", "touch \"$0\"", f[0], NULL);
	held->prepare = held->keep_exec = true;
	job_start(held);
	drv_wait(&d, pred_channels_open, (void *)(uintptr_t)1, WAIT_S, "the held channel");
	drv_run_for(&d, 0.3);
	ck_assert_msg(!job_over(held) && held->started == 0, "%s", job_says(held));
	ck_assert_int_ne(access(f[0], F_OK), 0);
	other = job_new(&d, "echo", "meanwhile", NULL);
	job_run(other);
	assert_exited(other, 0);
	assert_out(other, "meanwhile\n", "");
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.handshakes_total, 1); /* the same session */
	ck_assert_int_ne(access(f[0], F_OK), 0);
	pool_exec_go(held->e);
	drv_wait(&d, pred_job_over, held, WAIT_S, "the held exec");
	assert_exited(held, 0);
	ck_assert_int_eq(access(f[0], F_OK), 0);

	cancelled = job_new(&d, "sh", "-c", "touch \"$0\"", f[1], NULL);
	cancelled->prepare = cancelled->keep_exec = true;
	job_start(cancelled);
	drv_wait(&d, pred_channels_open, (void *)(uintptr_t)1, WAIT_S, "the second held channel");
	pool_exec_cancel(cancelled->e);
	pool_exec_go(cancelled->e); /* too late: it stays cancelled */
	drv_wait(&d, pred_job_over, cancelled, WAIT_S, "the cancelled exec");
	assert_kind(cancelled, POOL_CANCELLED);
	ck_assert_int_eq(cancelled->started, 0);

	released = job_new(&d, "sh", "-c", "touch \"$0\"", f[2], NULL);
	released->prepare = released->keep_exec = true;
	job_start(released);
	drv_wait(&d, pred_channels_open, (void *)(uintptr_t)1, WAIT_S, "the third held channel");
	pool_exec_release(released->e);
	released->e = NULL;
	drv_wait(&d, pred_channels_free, NULL, WAIT_S, "the released channel to close");
	drv_run_for(&d, 0.3);
	ck_assert_int_ne(access(f[1], F_OK), 0);
	ck_assert_int_ne(access(f[2], F_OK), 0);
	ck_assert_int_eq(released->finished, 0);
	drv_free(&d);
	for (int i = 0; i < 3; i++) {
		unlink(f[i]);
		free(f[i]);
	}
}
END_TEST

/* 12. */
START_TEST(stats_count_execs_by_outcome)
{
	char *mark_t = str_printf("300.%d1", (int)getpid()),
	     *mark_c = str_printf("300.%d2", (int)getpid());
	uint64_t want[7] = {0}, seen[7] = {0};
	struct pool_stats st;
	struct drv d;
	struct job *ok1, *ok2, *ex3, *sig, *to, *ca, *bad;

	drv_init(&d, NULL, NULL);
	ok1 = job_new(&d, "true", NULL);
	ok2 = job_new(&d, "echo", "x", NULL);
	ex3 = job_new(&d, "sh", "-c", "exit 3", NULL);
	sig = job_new(&d, "sh", "-c", "kill -TERM $$", NULL);
	to = job_new(&d, "sleep", mark_t, NULL);
	to->deadline_s = 1;
	ca = job_new(&d, "sleep", mark_c, NULL);
	bad = job_new(&d, "echo", NULL);
	job_arg(bad, "a\0b", 3);
	for (size_t i = 0; i < d.njobs; i++)
		job_start(d.jobs[i]);
	drv_wait(&d, pred_job_started, ca, WAIT_S, "the exec to cancel");
	drv_run_for(&d, 0.5);
	ck_assert_msg(ca->e != NULL && !job_over(ca), "%s", job_says(ca));
	pool_exec_cancel(ca->e);
	drv_wait(&d, pred_all_over, NULL, WAIT_S, "the execs");

	assert_exited(ok1, 0);
	assert_exited(ok2, 0);
	assert_exited(ex3, 3);
	assert_kind(sig, POOL_SIGNALED);
	assert_kind(to, POOL_TIMEOUT);
	assert_kind(ca, POOL_CANCELLED);
	assert_kind(bad, POOL_FAILED_TO_START);
	want[POOL_EXITED] = 3;
	want[POOL_SIGNALED] = want[POOL_TIMEOUT] = want[POOL_CANCELLED] = 1;
	want[POOL_FAILED_TO_START] = 1;
	for (size_t i = 0; i < d.njobs; i++)
		seen[d.jobs[i]->o.kind]++;
	drv_wait(&d, pred_channels_free, NULL, WAIT_S, "channels_in_use to drop to 0");
	pool_get_stats(d.pool, &st);
	for (int k = 0; k < 7; k++) {
		ck_assert_uint_eq(seen[k], want[k]);
		ck_assert_msg(
		    st.execs_by_outcome[k] == want[k], "execs_by_outcome[%s] = %llu, want %llu",
		    pool_outcome_name((enum pool_outcome_kind)k),
		    (unsigned long long)st.execs_by_outcome[k], (unsigned long long)want[k]);
	}
	ck_assert_uint_eq(st.acquires_waiting, 0);
	drv_free(&d);
	free(mark_t);
	free(mark_c);
}
END_TEST

/* Beyond the list: the acquire deadline, and pool_acquire_cancel. */
START_TEST(acquire_waits_until_deadline_then_is_exhausted)
{
	char *mark = str_printf("300.%d", (int)getpid());
	struct pool_config cfg;
	struct pool_stats st;
	struct drv d;
	struct job *hold, *late, *gone, *next;
	double t0, took;

	default_config(&cfg);
	cfg.max_sessions_per_host = 1;
	cfg.max_channels_per_session = 1;
	drv_init(&d, &cfg, NULL);
	hold = job_new(&d, "sleep", mark, NULL);
	job_start(hold);
	drv_wait(&d, pred_job_started, hold, WAIT_S, "the first exec");
	ck_assert_msg(hold->started == 1 && !job_over(hold), "%s", job_says(hold));

	late = job_new(&d, "echo", "late", NULL);
	late->acquire_s = 1;
	gone = job_new(&d, "echo", "gone", NULL);
	job_start(gone);
	pool_acquire_cancel(gone->acq);
	gone->acq = NULL;
	t0 = now_s();
	job_start(late);
	pool_get_stats(d.pool, &st);
	ck_assert_uint_eq(st.acquires_waiting, 1);
	drv_wait(&d, pred_job_over, late, WAIT_S, "the acquire deadline");
	ck_assert_msg(late->acquire_failed && late->acquire_why == POOL_FAIL_EXHAUSTED,
	              "want exhausted: %s", job_says(late));
	took = late->t_done - t0;
	ck_assert_msg(took >= 0.9 && took <= 1 + SLACK, "exhausted %.2f s after a 1 s deadline",
	              took);
	drv_run_for(&d, 0.5);
	ck_assert_msg(!gone->acquired && !gone->acquire_failed,
	              "the callback of a cancelled acquire ran");

	pool_exec_cancel(hold->e);
	drv_wait(&d, pred_job_over, hold, WAIT_S, "the cancelled exec");
	assert_kind(hold, POOL_CANCELLED);
	next = job_new(&d, "echo", "next", NULL);
	job_run(next);
	assert_exited(next, 0);
	assert_out(next, "next\n", "");
	drv_free(&d);
	free(mark);
}
END_TEST

/* Beyond the list: shutdown kills what runs and fails what waits. */
START_TEST(shutdown_kills_running_execs_and_fails_waiting_acquires)
{
	char *mark = str_printf("300.%d", (int)getpid());
	char *pattern = str_printf("sleep %s", mark);
	struct pool_config cfg;
	struct drv d;
	struct job *run, *waiter;

	default_config(&cfg);
	cfg.max_sessions_per_host = 1;
	cfg.max_channels_per_session = 1;
	drv_init(&d, &cfg, NULL);
	run = job_new(&d, "sleep", mark, NULL);
	job_start(run);
	drv_wait(&d, pred_job_started, run, WAIT_S, "the exec");
	drv_wait(&d, pred_procs_seen, pattern, WAIT_S, "its process");
	waiter = job_new(&d, "echo", "never", NULL);
	job_start(waiter);
	drv_run_for(&d, 0.2);
	ck_assert_msg(!job_over(waiter), "%s", job_says(waiter));
	drv_shutdown(&d);
	assert_kind(run, POOL_SHUTDOWN);
	ck_assert_msg(waiter->acquire_failed && waiter->acquire_why == POOL_FAIL_SHUTDOWN,
	              "want shutdown: %s", job_says(waiter));
	assert_procs_gone(pattern, d.cfg.kill_grace_s + SLACK);
	drv_free(&d);
	free(pattern);
	free(mark);
}
END_TEST

/* One case per test, named after it, so that CK_RUN_CASE=<name> runs one test alone. */
static void add(Suite *s, const char *name, const TTest *t, int loops)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 120);
	if (loops > 0)
		tcase_add_loop_test(tc, t, 0, loops);
	else
		tcase_add_test(tc, t);
	suite_add_tcase(s, tc);
}

#define ADD(s, t)         add(s, #t, t, 0)
#define ADD_LOOP(s, t, n) add(s, #t, t, n)

int main(void)
{
	Suite *s = suite_create("pool");
	SRunner *sr;
	int failed;

	if (th_setup(TH_SSHD) != 0)
		return EXIT_FAILURE;
	ADD(s, sequential_execs_share_one_handshake);
	ADD(s, concurrent_execs_each_get_their_own_output);
	ADD(s, exit_codes_and_signals_are_reported);
	ADD(s, binary_output_arrives_exactly_on_each_stream);
	ADD(s, ten_mib_on_both_streams_at_once_arrive_exactly);
	ADD(s, hostile_argv_arrives_unchanged_over_ssh);
	ADD_LOOP(s, refused_spec_fails_to_start_and_runs_nothing, REF_RELATIVE_CWD + 1);
	ADD(s, env_and_cwd_reach_the_command);
	ADD(s, stdin_is_delivered_exactly_then_eof);
	ADD(s, host_key_mismatch_fails_before_authentication);
	ADD(s, unknown_client_key_fails_with_auth);
	ADD(s, sshd_killed_mid_exec_is_a_transport_error);
	ADD(s, idle_session_cut_by_sshd_restart_is_replaced);
	ADD(s, execs_leased_on_a_session_that_died_all_move_at_once);
	ADD(s, session_closed_while_idle_is_never_leased);
	ADD_LOOP(s, deadline_and_cancel_leave_no_process_behind, KILL_CASES);
	ADD(s, paused_exec_is_bounded_and_others_flow);
	ADD(s, server_max_sessions_below_pool_channels);
	ADD(s, cancel_needs_no_spare_channel);
	ADD(s, max_sessions_1_two_sessions_per_host_runs_every_exec);
	ADD(s, pool_free_with_borrowers_listed);
	ADD(s, a_session_whose_watcher_died_is_retired);
	ADD(s, idle_sessions_close_after_their_ttl);
	ADD(s, host_names_are_resolved_asynchronously);
	ADD(s, session_cap_evicts_the_least_recently_used_idle_session);
	ADD(s, prepared_exec_runs_only_after_go);
	ADD(s, stats_count_execs_by_outcome);
	ADD(s, acquire_waits_until_deadline_then_is_exhausted);
	ADD(s, shutdown_kills_running_execs_and_fails_waiting_acquires);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	th_teardown();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
