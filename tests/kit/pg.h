/* tests/kit/pg.h: the PostgreSQL fixture: the run's throwaway cluster (initdb, a Unix socket
 * only; fsync off for tests, on as in production for benchmarks), started and stopped from
 * any process of the run, and fresh databases copied from its template; and more clusters of
 * a suite's own (a primary and its standby) made the same way, with the server programs. */
#ifndef EB_TESTS_KIT_PG_H
#define EB_TESTS_KIT_PG_H

#include <stdbool.h>
#include <stddef.h>

struct th_pg {
	char dir[96], datadir[128], sockdir[128], log[128];
	int port;    /* its socket's number (.s.PGSQL.<port> in sockdir); th.pg's is 5432 */
	int running; /* as this process last saw it; pg/data/postmaster.pid is the truth */
	int pid;     /* postmaster pid this process last started or found */
	int durable; /* fsync, full_page_writes and synchronous_commit on (th_setup TH_PG_DURABLE)
	              */
	/* "name=value" settings given after the fixture's own, so that they win (at most
	 * TH_PG_MAX_SETTINGS, NULL-terminated; NULL: none). Static storage: the forked test
	 * processes that restart a cluster read it too. */
	const char *const *settings;
};

#define TH_PG_MAX_SETTINGS 8

/* Starts the cluster (same data dir and socket every time); 0 if it already runs. Waits until
 * it accepts connections (20 s, then -1 and the tail of pg/log on stderr). */
int th_pg_start(struct th_pg *pg);
/* Fast shutdown (SIGINT), waits until the postmaster is gone (20 s, then SIGKILL). Works from
 * any process of the run, whoever started the server. 0 if it was not running. */
int th_pg_stop(struct th_pg *pg);
/* th_pg_stop with the immediate shutdown (SIGQUIT): no checkpoint, every session cut at
 * once, as clients see a server that crashed. */
int th_pg_stop_immediate(struct th_pg *pg);
/* The directory of PostgreSQL's programs the run uses (EB_TEST_PG_BINDIR, or the newest
 * /usr/lib/postgresql/N/bin), or NULL if there is none. */
const char *th_pg_bindir(void);
/* The running postmaster's pid from postmaster.pid, or 0. */
int th_pg_pid(const struct th_pg *pg);
/* "host=<sockdir> port=5432 user=postgres dbname=<dbname>" of th.pg into buf. */
void th_pg_conninfo(const char *dbname, char *buf, size_t len);
/* The same for the cluster pg. */
void th_pg_conninfo_of(const struct th_pg *pg, const char *dbname, char *buf, size_t len);
/* Runs sql (one or more statements) as the superuser on dbname: 0, or -1 and the error on
 * stderr. */
int th_pg_exec(const char *dbname, const char *sql);
/* Creates a database t_<pid>_<n> as a copy of eb_template and writes its conninfo. */
int th_db_create(char *conninfo, size_t len);

/* For th_setup(): initdb under th.basedir, start, and create eb_template. */
int th_pg_init(void);
/* A cluster of a suite's own: the paths of pg under <th.basedir>/<name> (the data dir, the
 * socket dir, the log), its port, and initdb as the run's cluster has it (trust, UTF8, C)
 * unless initdb is false (a data dir another program fills: pg_basebackup). Not started;
 * pg->settings is left as it is. 0, or -1 with a message on stderr. */
int th_pg_cluster(struct th_pg *pg, const char *name, int port, bool initdb);
/* Runs the PostgreSQL program tool (pg_basebackup, pg_ctl, ...) of the fixture's bindir with
 * args (NULL-terminated) as the account the servers run as; out (may be NULL) receives its
 * stdout. 0 if it exited 0; otherwise -1 with what it printed on stderr. */
int th_pg_tool(const char *tool, const char *const args[], char **out);

#endif
