/* tests/kit/harness.h: the run's fixtures and their lifetime: one base dir /tmp/eb-test-XXXXXX
 * per test binary run, with its PostgreSQL (pg.h), sshds (sshd.h) and client key, all gone at
 * the end, also after a failure, ^C, or the owner's death. */
#ifndef EB_TESTS_KIT_HARNESS_H
#define EB_TESTS_KIT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/kit/pg.h"
#include "tests/kit/proc.h"
#include "tests/kit/sshd.h"

/* TH_PG_DURABLE: the cluster commits as production does (fsync, full page writes and
 * synchronous commits on), for benchmarks; tests run without. */
enum { TH_PG = 1, TH_SSHD = 2, TH_PG_DURABLE = 4 };

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

/* What the fixtures (pg.c, sshd.c) share with the run. */

/* Records a server any process of the run started, so that teardown stops it: kind "pg"
 * or "sshd", the pid started and the pid file that names its current process. */
void th_register_server(const char *kind, pid_t pid, const char *pidfile);
/* Adds the sshd and postgres processes of dir that no registry names: a server whose start
 * was interrupted before it was registered (its command line names dir), or backends
 * orphaned by a postmaster killed with SIGKILL (they run in its data dir). */
void th_add_strays(struct kit_procs *p, const char *dir);
/* Whether pid is one of the run's servers: its command line names a path under dir (sshd
 * -f, postgres -D) or it runs in dir. Guards against pid reuse. */
bool th_pid_in_dir(pid_t pid, const char *dir);
/* A message on stderr after "harness: ". */
void th_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* snprintf that refuses to truncate (paths cut short would name other files): 0, or -1 with
 * a message. */
int th_fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
/* mkdir (or keep) and chmod: 0, or -1 with a message. */
int th_make_dir(const char *path, mode_t mode);
/* Runs a setup command that must succeed (as c, may be NULL, in cwd, may be NULL); on
 * failure says what it printed. out (may be NULL) receives its stdout. */
int th_run_ok(const struct kit_creds *c, const char *cwd, const char *const argv[], char **out);

#endif
