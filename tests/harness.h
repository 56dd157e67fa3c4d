/* tests/harness.h: throwaway PostgreSQL and OpenSSH servers for integration tests.
 * One test binary run owns one base dir /tmp/eb-test-XXXXXX holding a private cluster, any
 * number of sshds on loopback ports and a client key; all of it goes away at the end of the
 * run, also when a test fails, the run is interrupted or the owner is killed. */
#ifndef EB_TESTS_HARNESS_H
#define EB_TESTS_HARNESS_H

#include <stddef.h>

enum { TH_PG = 1, TH_SSHD = 2 };

struct th_pg {
	char dir[96], datadir[128], sockdir[128], log[128];
	int running; /* as this process last saw it; pg/data/postmaster.pid is the truth */
	int pid;     /* postmaster pid this process last started or found */
};

struct th_sshd_opts {
	int max_sessions; /* MaxSessions; 0 means 10 */
	/* Appended verbatim to the generated config (read by th_sshd_start only). sshd keeps the
	 * first value it sees of a keyword, so a keyword set here before any Match line replaces
	 * the harness default instead of being ignored. */
	const char *extra_config;
};

struct th_sshd {
	char dir[128], config[160], host_key[160], host_key_fp[64], log[160], pidfile[160];
	int port;
	struct th_sshd_opts opts;
	int running; /* as this process last saw it; the pid file is the truth */
	int pid;     /* listener pid this process last started */
};

struct th_env {
	char basedir[64];
	char user[64];       /* the login account sshd accepts */
	char client_key[96]; /* private key path; client_key_pub is the .pub */
	char client_key_pub[128];
	struct th_pg pg;
	struct th_sshd sshd; /* the default sshd started by th_setup(TH_SSHD) */
};

extern struct th_env th;

/* Starts what is asked (TH_PG | TH_SSHD) under a fresh base dir, after removing what runs
 * killed with SIGKILL left behind. Returns 0, or -1 with a message on stderr. Call it once,
 * from main() before srunner_run_all(). It installs SIGINT/SIGTERM/SIGHUP handlers and an
 * atexit handler that tear down in the calling process only (not in Check's forked test
 * children), and a guardian process that tears down if this process dies any other way.
 * With TH_PG, the database eb_template exists and th_db_create() copies it. */
int th_setup(unsigned what);
/* Stops every server any process of this run started (from the registry file `servers`),
 * then removes the base dir; with EB_TEST_KEEP=1 the dir (logs, configs) stays and its path
 * is printed. Does nothing outside the th_setup() process or when already done. */
void th_teardown(void);

/* Starts the cluster (same data dir and socket every time); 0 if it already runs. Waits until
 * it accepts connections (20 s, then -1 and the tail of pg/log on stderr). */
int th_pg_start(struct th_pg *pg);
/* Fast shutdown (SIGINT), waits until the postmaster is gone (20 s, then SIGKILL). Works from
 * any process of the run, whoever started the server. 0 if it was not running. */
int th_pg_stop(struct th_pg *pg);
/* The running postmaster's pid from postmaster.pid, or 0. */
int th_pg_pid(const struct th_pg *pg);
/* "host=<sockdir> port=5432 user=postgres dbname=<dbname>" into buf. */
void th_pg_conninfo(const char *dbname, char *buf, size_t len);
/* Runs sql (one or more statements) as the superuser on dbname: 0, or -1 and the error on
 * stderr. */
int th_pg_exec(const char *dbname, const char *sql);
/* Creates a database t_<pid>_<n> as a copy of eb_template and writes its conninfo. */
int th_db_create(char *conninfo, size_t len);

/* Starts a new sshd with its own dir sshd-N, host key, config and a free loopback port;
 * opts may be NULL (and may point into *s). Waits until it accepts TCP connections (10 s).
 * Always a new server: to bring back a stopped one, use th_sshd_restart(). */
int th_sshd_start(struct th_sshd *s, const struct th_sshd_opts *opts);
/* Stops the listener and every connection it accepted, like a server going away; works from
 * any process of the run. 0 if it was not running. */
int th_sshd_stop(struct th_sshd *s);
/* th_sshd_stop() then start again on the same port with the same config and keys; also
 * how a stopped sshd comes back. The struct in Check's parent stays valid: port, keys and
 * paths do not change. */
int th_sshd_restart(struct th_sshd *s);
/* Kills the processes serving established connections (the clients see the TCP connection
 * drop) and leaves the listener running. */
int th_sshd_cut_sessions(struct th_sshd *s);
/* The listener's pid from its pid file, or 0. */
int th_sshd_pid(const struct th_sshd *s);

/* Runs argv (execvp) with the current environment plus env ("NAME=value", NULL-terminated,
 * may be NULL; replaces same-named variables), stdin_data on stdin (/dev/null when NULL).
 * out and err (each may be NULL) receive all of stdout and stderr as malloc'd NUL-terminated
 * strings the caller frees; status (may be NULL) receives the wait status. After
 * th_run_timeout_ms the child is killed with SIGKILL. Returns 0 if the program ran (whatever
 * its exit status), -1 with a message on stderr if it could not be started. */
int th_run(const char *const argv[], const char *const env[], const char *stdin_data, char **out,
           char **err, int *status);
extern int th_run_timeout_ms; /* 60000 */

#endif
