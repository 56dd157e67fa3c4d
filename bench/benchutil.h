/* bench/benchutil.h: what the benchmarks share beyond the test kit (tests/kit/: fixtures,
 * broker processes, the HTTP client, the NDJSON reader): latency series and their
 * percentiles, the logins sshd accepted, the bare blocking libssh2 session that is every
 * benchmark's floor, OpenSSH clients (fresh, and through a ControlMaster), execs through an
 * in-process pool, the BENCH_* counts, the audit hash chain switched off and on, and the
 * problems and progress lines they print. */
#ifndef EB_BENCH_BENCHUTIL_H
#define EB_BENCH_BENCHUTIL_H

#include <libssh2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pool/pool.h"
#include "tests/kit/broker.h"

/* Execs in flight at once in the parallel phases. */
#define BENCH_CONCURRENCY 32
/* The deadline of every exec the benchmarks run through the pool. */
#define BENCH_EXEC_DEADLINE_MS 30000
/* Sequential execs run in turns of this many per way, so that load from outside the
 * benchmark (the machine may be shared) falls on every way alike. */
#define BENCH_BLOCK 10
/* Every phase ends well within this; past it the phase counts as broken. */
#define BENCH_PHASE_TIMEOUT_S 120

/* Latencies of one way of running a command, in milliseconds. */
struct series {
	const char *name;
	double *ms;
	size_t n, cap;
	unsigned failures; /* a way stops at its first failure */
	char first_failure[256];
	double wall_s; /* throughput: time from the first start to the last end, summed */
	long logins;   /* SSH logins sshd accepted while this way ran */
};

/* Milliseconds since t0 (kit_now_ns()). */
double bench_ms_since(uint64_t t0);

int series_init(struct series *s, const char *name, size_t cap);
void series_add(struct series *s, double ms);
/* Counts a failure; the first one's text is kept. */
void series_fail(struct series *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool series_ok(const struct series *s);
/* Nearest-rank percentile q (0 < q <= 1). Sorts the series. */
double series_pct(struct series *s, double q);
/* One table row: s's p50 and p99 in ms, and their ratios to fl's ("-" if fl broke). */
void bench_print_row(struct series *s, struct series *fl);
/* Execs per second over wall_s. */
double series_per_s(const struct series *s);
/* "label = r (target ...: met|missed)", or n/a if a way broke (!ok). */
void bench_print_target(const char *label, bool ok, double r, const char *target, bool met);

/* Records a problem outside any series (a broker that would not start or stop, figures
 * that do not add up); the first 16 are kept. Any of them should make the exit status 1. */
void bench_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Problems recorded so far, kept or not. */
unsigned bench_problem_count(void);
/* The end of a report: the first failure of each series of all[n] that failed, then the
 * kept problems, under a "failures" heading if there is any of either. */
void bench_print_failures(struct series *const all[], size_t n);
/* One line on stderr, after the program's name. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* SSH logins the harness's sshd (th.sshd) has accepted so far, from its log. */
long bench_sshd_logins(void);

/* A count from the environment (1 to 100000), else def. */
size_t bench_env_count(const char *name, size_t def);

/* The pool settings' defaults, from the broker's settings table: no file, no
 * environment. */
int bench_default_pool_config(struct pool_config *pc);

/* ---- the floor: one bare libssh2 session in blocking mode to th.sshd ---- */

struct floor {
	int fd; /* -1 when closed */
	LIBSSH2_SESSION *ssh;
};

/* Connects, checks the host key, authenticates with the client key. */
int floor_open(struct floor *f, char *err, size_t errlen);
void floor_close(struct floor *f);
/* Channel, exec cmd, read to EOF, close, free: the least one exec over SSH can cost. 0 if
 * the command exited 0; *bytes (may be NULL) receives how many output bytes were read. */
int floor_exec(struct floor *f, const char *cmd, uint64_t *bytes, char *err, size_t errlen);
/* n timed execs of cmd into s; stops at the first failure. */
void floor_run(struct floor *f, struct series *s, const char *cmd, size_t n);

/* The string the pool sends for spec: registration with a watcher listening on fifo, a
 * fresh BENCH_EXEC_DEADLINE_MS deadline, the body. */
int bench_wrapped(const struct command_spec *spec, const char *fifo, char **out);

/* A session's watcher (command_watcher) run here as th.user, so that the floor can run the
 * very string the pool sends: the benchmark's sshd is on this machine and logs in as that
 * user, so commands it runs register on this watcher's FIFO. After th_setup(). */
struct local_watch {
	pid_t pid; /* 0 when not running */
	int in;
	char fifo[256];
};
int local_watch_start(struct local_watch *w, char *err, size_t errlen);
/* Closes its stdin (it exits, as at the broker's end) and waits for it. */
void local_watch_stop(struct local_watch *w);

/* ---- OpenSSH clients ---- */

/* argv of one OpenSSH client run. -F /dev/null keeps the machine's ssh_config (GSSAPI,
 * SendEnv...) and ~/.ssh/config out of every run. */
struct ssh_argv {
	char port[16], dest[96];
	const char *v[40];
	size_t n;
};

/* A client that logs in itself with the client key only (no agent keys) and runs command
 * (NULL: none). opts (NULL-terminated) go before the destination. */
void ssh_argv_direct(struct ssh_argv *a, const char *const *opts, const char *command);
/* A mux client of the master on sock, running `true`, or the control command op. It has
 * no key and knows no host key: were the master unreachable, ssh's fallback to a direct
 * connection would fail instead of being timed as a multiplexed exec. */
void ssh_argv_mux(struct ssh_argv *a, const char *sock, const char *op);

/* Runs argv to its end with stdin and stdout on /dev/null (stderr too when quiet): 0 if
 * it exited 0. Waits for that pid only: the harness reaps its own children by pid. */
int bench_run_wait(const char *const argv[], bool quiet, char *err, size_t errlen);
/* n timed runs of argv into s; stops at the first failure. */
void ssh_run_sequential(const char *const argv[], struct series *s, size_t n);
/* Keeps concurrency (at most BENCH_CONCURRENCY) copies of argv running until total have
 * run, timing each. */
void ssh_run_parallel(const char *const argv[], struct series *s, size_t total, size_t concurrency);

/* Starts a ControlMaster on sock and waits until it answers -O check. */
int master_start(const char *sock, char *err, size_t errlen);
void master_stop(const char *sock);

/* ---- execs through an in-process pool ---- */

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
	bool stop;             /* the phase timed out: launch nothing more */
	uint64_t stdout_bytes; /* output handed to the data callback, over all execs */
	struct pool_job jobs[BENCH_CONCURRENCY];
};

/* Runs total execs of r->spec through the pool, concurrency (at most BENCH_CONCURRENCY)
 * of them in flight at all times, timing each from pool_lease_acquire to its finished
 * callback; an exec counts only if it exited 0. */
void pool_run_execs(struct pool_run *r, struct series *out, size_t total, size_t concurrency);
/* Shuts the pool down (waiting up to 10 s) and frees it and the base. */
void pool_run_close(struct pool_run *r);

/* ---- the audit hash chain off and on (bench_audit, bench_chain) ---- */

struct pg_conn;

/* How "no chain" is made, as the superuser: the link trigger disabled, the two checks that
 * tie a finished row to its link dropped (a finished row without a link would violate
 * them), and exec_audit_seal(), with which brokers link their rows in batches (migration
 * 0005), made a no-op: the table as it was before migration 0003 but for three columns.
 * "On" enables the trigger, puts the checks back NOT VALID and the function back as
 * migrated. Rows finished without the chain stay unlinked until someone links them, as a
 * broker's janitor would: exec_audit_seal('{}', '0 s'). The table is ALTERed: nothing
 * may be in flight on it while it switches. */
struct chain_switch {
	struct pg_conn *c;
	char name[2][64]; /* the two checks, as migrated */
	char def[2][200];
	char *seal_def; /* CREATE OR REPLACE FUNCTION exec_audit_seal ..., as migrated */
	bool on;
};

/* Connects to db and reads what switching on puts back; the chain is taken to be on. 0, or
 * -1 with a problem recorded (bench_problem). */
int chain_switch_init(struct chain_switch *sw, const char *db);
/* Switches the chain on or off (nothing if it is so already): 0, or -1 with a problem
 * recorded. */
int chain_switch_set(struct chain_switch *sw, bool on);
/* Closes its connection, leaving the chain as it is. Accepts a zeroed switch. */
void chain_switch_free(struct chain_switch *sw);

/* ---- exec-broker processes ---- */

/* kit_broker_start() as instance bench-name (its config and log under the harness's
 * directory), a problem recorded if it does not start. */
int bench_broker_start(struct kit_broker *b, const char *db, const char *name,
                       const char *extra_conf);
/* kit_broker_stop(), as systemd stops it: a problem unless it exits 0 (once its execs are
 * done) within KIT_WAIT_MS. Nothing if it does not run. */
void bench_broker_stop(struct kit_broker *b);

#endif
