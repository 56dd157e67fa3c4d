/* tests/kit/pg.h: the PostgreSQL fixture: the run's throwaway cluster (initdb, a Unix socket
 * only; fsync off for tests, on as in production for benchmarks), started and stopped from
 * any process of the run, and fresh databases copied from its template. */
#ifndef EB_TESTS_KIT_PG_H
#define EB_TESTS_KIT_PG_H

#include <stddef.h>

struct th_pg {
	char dir[96], datadir[128], sockdir[128], log[128];
	int running; /* as this process last saw it; pg/data/postmaster.pid is the truth */
	int pid;     /* postmaster pid this process last started or found */
	int durable; /* fsync, full_page_writes and synchronous_commit on (th_setup TH_PG_DURABLE)
	              */
};

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

/* For th_setup(): initdb under th.basedir, start, and create eb_template. */
int th_pg_init(void);

#endif
