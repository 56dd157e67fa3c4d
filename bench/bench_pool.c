/* bench/bench_pool.c: the pool benchmark. Against one throwaway sshd, it times execs of
 * `true` through the pool, over one bare blocking libssh2 session (the floor), as a fresh
 * `ssh` process each, and through an OpenSSH ControlMaster; then execs per second at 32 in
 * flight through the pool and through the ControlMaster. It prints figures and ratios and
 * never fails on timing: the exit status is 1 only when something did not work. */
#include <event2/event.h>
#include <libssh2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "common/err.h"
#include "pool/command.h"
#include "pool/pool.h"
#include "tests/kit/clock.h"
#include "tests/kit/harness.h"

#define DEFAULT_N     300
#define DEFAULT_PAR_N 640
/* The ControlMaster multiplexes BENCH_CONCURRENCY sessions on one connection and sshd refuses
 * sessions beyond MaxSessions (10 in the harness), so the benchmark's sshd allows more.
 * The pool never opens more than pool_max_channels_per_session channels on a session. */
#define SSHD_MAX_SESSIONS 64

/* ------------------------------------------------------------------ the run */

enum way { WAY_FLOOR, WAY_POOL, WAY_FLOOR_WRAPPED, WAY_MASTER, WAY_FRESH, WAY_COUNT };

struct bench {
	size_t n, par_n;
	struct pool_config pcfg;
	struct command_spec spec;
	char *wrapped;            /* the command string the pool sends for `true` */
	struct local_watch watch; /* the watcher wrapped registers with */
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
	long before = bench_sshd_logins();

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
	s->logins += bench_sshd_logins() - before;
}

/* Opens the floor session, warms the pool with its first exec, starts the master. */
static void bench_connect(struct bench *b)
{
	char err[256];
	long before = bench_sshd_logins();

	if (floor_open(&b->fl, err, sizeof(err)) != 0) {
		series_fail(&b->seq[WAY_FLOOR], "floor session: %s", err);
		series_fail(&b->seq[WAY_FLOOR_WRAPPED], "floor session: %s", err);
	}
	b->logins_floor = bench_sshd_logins() - before;

	before = bench_sshd_logins();
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
	b->logins_pool = bench_sshd_logins() - before;

	before = bench_sshd_logins();
	snprintf(b->sock, sizeof(b->sock), "%s/cm.sock", th.basedir);
	if (master_start(b->sock, err, sizeof(err)) != 0)
		series_fail(&b->seq[WAY_MASTER], "ControlMaster: %s", err);
	else
		b->master = true;
	b->logins_master = bench_sshd_logins() - before;
	ssh_argv_mux(&b->mux, b->sock, NULL);
	ssh_argv_direct(&b->fresh, (const char *const[]){NULL}, "true");
}

static void bench_sequential(struct bench *b)
{
	for (size_t done = 0; done < b->n; done += BENCH_BLOCK) {
		size_t k = b->n - done < BENCH_BLOCK ? b->n - done : BENCH_BLOCK;
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
		long before = bench_sshd_logins();
		pool_run_execs(&b->run, &b->pool_par_warm, BENCH_CONCURRENCY, BENCH_CONCURRENCY);
		b->pool_par_warm.logins = bench_sshd_logins() - before;
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
		long before = bench_sshd_logins();
		pool_run_execs(&b->run, &b->pool_par, k, BENCH_CONCURRENCY);
		b->pool_par.logins += bench_sshd_logins() - before;
		before = bench_sshd_logins();
		if (b->master_par.failures == 0)
			ssh_run_parallel(b->mux.v, &b->master_par, k, BENCH_CONCURRENCY);
		b->master_par.logins += bench_sshd_logins() - before;
	}
	if (b->run.p != NULL)
		pool_get_stats(b->run.p, &b->st_par);
}

/* ------------------------------------------------------------------ report */

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

static void print_throughput(struct series *s)
{
	if (!series_ok(s)) {
		printf("  %-42s broken (see failures)\n", s->name);
		return;
	}
	printf("  %-42s %8.0f %8.2f %8.2f %7.2fs\n", s->name, series_per_s(s), series_pct(s, 0.50),
	       series_pct(s, 0.99), s->wall_s);
}

static void bench_report(struct bench *b)
{
	struct series *all[] = {&b->seq[WAY_FLOOR],  &b->seq[WAY_POOL],  &b->seq[WAY_FLOOR_WRAPPED],
	                        &b->seq[WAY_MASTER], &b->seq[WAY_FRESH], &b->pool_first,
	                        &b->pool_par_warm,   &b->pool_par,       &b->master_par};
	char title[96];

	printf("\nexec-broker pool benchmark: sshd (OpenSSH, MaxSessions %d) on 127.0.0.1:%d, "
	       "login %s, %ld CPUs\n",
	       SSHD_MAX_SESSIONS, th.sshd.port, th.user, sysconf(_SC_NPROCESSORS_ONLN));
	printf("pool: default settings (max_channels_per_session %d, max_sessions_per_host %d)\n",
	       b->pcfg.max_channels_per_session, b->pcfg.max_sessions_per_host);
	snprintf(title, sizeof(title), "sequential execs of `true`, N=%zu each", b->n);
	printf("\n%-44s %8s %8s %9s %9s\n", title, "p50 ms", "p99 ms", "p50/floor", "p99/floor");
	for (enum way w = 0; w < WAY_COUNT; w++)
		bench_print_row(&b->seq[w], &b->seq[WAY_FLOOR]);
	printf("(the ways took turns, %d execs each, so that outside load fell on all alike)\n",
	       BENCH_BLOCK);
	printf(
	    "\nnote: each pool exec sends the pool's command, not bare `true`:\n"
	    "    %s\n"
	    "  sh registers the command's process group with the session's watcher (echo into\n"
	    "  its FIFO, a builtin), prints the group, then execs true: where the floor's `true`\n"
	    "  is a builtin of the login shell, this one is /bin/true, one exec more. The floor\n"
	    "  row with the wrapper runs this same string over the floor's session, with a\n"
	    "  watcher started for it.\n",
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

	snprintf(title, sizeof(title), "%zu execs of `true`, %d in flight", b->par_n,
	         BENCH_CONCURRENCY);
	printf("\n%-44s %8s %8s %8s %8s\n", title, "execs/s", "p50 ms", "p99 ms", "wall");
	print_throughput(&b->pool_par);
	print_throughput(&b->master_par);
	if (series_ok(&b->pool_par) && series_ok(&b->master_par))
		printf("pool execs/s / ControlMaster execs/s = %.2f\n",
		       series_per_s(&b->pool_par) / series_per_s(&b->master_par));
	else
		printf("pool execs/s / ControlMaster execs/s = n/a, a way broke\n");
	printf("(each took two turns of %zu; before them the pool ran %d execs at %d in flight "
	       "to open\n  its sessions: handshakes %llu before that, %llu after, %llu at the end; "
	       "%u sessions idle)\n",
	       b->par_n / 2, BENCH_CONCURRENCY, BENCH_CONCURRENCY,
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
	       b->seq[WAY_FRESH].logins, BENCH_CONCURRENCY, b->pool_par_warm.logins,
	       b->pool_par.logins, b->master_par.logins);

	bench_print_failures(all, sizeof(all) / sizeof(all[0]));
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
	pool_run_close(&b->run);
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
	uint64_t t_start = kit_now_ns();
	char err[256];
	int rc = 0;

	b.n = bench_env_count("BENCH_N", DEFAULT_N);
	b.par_n = bench_env_count("BENCH_PAR_N", DEFAULT_PAR_N);
	b.fl.fd = -1;
	b.spec = (struct command_spec){.argv = argv_true, .argc = 1};
	for (enum way w = 0; w < WAY_COUNT; w++)
		rc |= series_init(&b.seq[w], names[w], b.n);
	rc |= series_init(&b.pool_first, "pool, first exec", 1);
	rc |= series_init(&b.pool_par_warm, "pool, warm-up at 32 in flight", BENCH_CONCURRENCY);
	rc |= series_init(&b.pool_par, "pool", b.par_n);
	rc |= series_init(&b.master_par, "ControlMaster, parallel ssh -S", b.par_n);
	if (rc != 0 || bench_default_pool_config(&b.pcfg) != 0)
		return 1;
	if (th_setup(TH_SSHD) != 0)
		return 1;
	if (th_sshd_stop(&th.sshd) != 0 || th_sshd_start(&th.sshd, &sopts) != 0) {
		fprintf(stderr, "bench: cannot start the benchmark's sshd\n");
		return 1;
	}
	/* The string the pool sends, for an exec with a fresh BENCH_EXEC_DEADLINE_MS deadline. */
	if (local_watch_start(&b.watch, err, sizeof(err)) != 0 ||
	    bench_wrapped(&b.spec, b.watch.fifo, &b.wrapped) != 0) {
		fprintf(stderr, "bench: the wrapped command: %s\n", err);
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
	       bench_ms_since(t_start) / 1000);
	free(b.wrapped);
	local_watch_stop(&b.watch);
	for (enum way w = 0; w < WAY_COUNT; w++)
		free(b.seq[w].ms);
	free(b.pool_first.ms);
	free(b.pool_par_warm.ms);
	free(b.pool_par.ms);
	free(b.master_par.ms);
	th_teardown();
	return rc;
}
