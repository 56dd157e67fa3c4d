/* tests/kit/pg.c: the PostgreSQL fixture: initdb under the run's base dir, the postmaster
 * started in its own session as the postgres account (when running as root) and registered
 * for teardown, stopped from any process of the run, and databases copied from eb_template;
 * a suite's own clusters and the server programs, as the same account. */
#include "tests/kit/pg.h"

#include <errno.h>
#include <glob.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"

#define PG_PORT       5432
#define PG_TIMEOUT_MS 20000

static char pg_bindir[256];
static unsigned db_counter;

static int pg_give_to(const struct kit_creds *c, const char *path)
{
	if (c->drop && chown(path, c->uid, c->gid) != 0) {
		th_say("could not chown %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int find_pg_bindir(void)
{
	const char *env = getenv("EB_TEST_PG_BINDIR");
	char path[600];
	long best = -1, v;
	glob_t g;

	if (env != NULL && *env != '\0') {
		if (th_fmt(pg_bindir, sizeof(pg_bindir), "%s", env) != 0)
			return -1;
	} else {
		if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++) {
				v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL,
				           10);
				if (v > best &&
				    th_fmt(pg_bindir, sizeof(pg_bindir), "%s", g.gl_pathv[i]) == 0)
					best = v;
			}
			globfree(&g);
		}
		if (best < 0) {
			th_say("no /usr/lib/postgresql/*/bin; set EB_TEST_PG_BINDIR");
			return -1;
		}
	}
	snprintf(path, sizeof(path), "%s/initdb", pg_bindir);
	if (access(path, X_OK) != 0) {
		th_say("no initdb in %s", pg_bindir);
		return -1;
	}
	return 0;
}

void th_pg_conninfo_of(const struct th_pg *pg, const char *dbname, char *buf, size_t len)
{
	snprintf(buf, len, "host=%s port=%d user=postgres dbname=%s", pg->sockdir,
	         pg->port ? pg->port : PG_PORT, dbname);
}

void th_pg_conninfo(const char *dbname, char *buf, size_t len)
{
	th_pg_conninfo_of(&th.pg, dbname, buf, len);
}

int th_pg_pid(const struct th_pg *pg)
{
	char path[300];
	pid_t pid;

	if (pg->datadir[0] == '\0' || th_fmt(path, sizeof(path), "%s/postmaster.pid", pg->datadir))
		return 0;
	pid = kit_file_pid(path);
	return kit_pid_reap_alive(pid) && th_pid_in_dir(pid, pg->dir) ? (int)pid : 0;
}

int th_pg_start(struct th_pg *pg)
{
	char postgres[300], sock[300], pidfile[300], ci[512], why[64], port[16];
	const char *argv[19 + 2 * TH_PG_MAX_SETTINGS] = {
	    postgres,
	    "-D",
	    pg->datadir,
	    "-k",
	    sock,
	    "-c",
	    "listen_addresses=",
	    "-p",
	    port,
	    "-c",
	    pg->durable ? "fsync=on" : "fsync=off",
	    "-c",
	    pg->durable ? "full_page_writes=on" : "full_page_writes=off",
	    "-c",
	    pg->durable ? "synchronous_commit=on" : "synchronous_commit=off",
	    "-c",
	    "max_connections=400",
	    NULL};
	/* In its own session: out of reach of Check's killpg of the test's process group and
	 * of the terminal's ^C. */
	struct kit_spawn sp = {
	    .argv = argv, .cwd = pg->datadir, .log = pg->log, .new_session = true};
	struct kit_procs stray = {0};
	long long deadline;
	struct kit_creds c;
	size_t n = 17;
	pid_t pid;
	int st, rc;

	if (pg->datadir[0] == '\0' || pg_bindir[0] == '\0') {
		th_say("th_pg_start: no cluster (th_setup without TH_PG)");
		return -1;
	}
	pid = th_pg_pid(pg);
	if (pid > 0) {
		pg->pid = pid;
		pg->running = 1;
		return 0;
	}
	/* The last -c of a setting wins. */
	for (size_t i = 0; pg->settings != NULL && pg->settings[i] != NULL; i++) {
		if (i == TH_PG_MAX_SETTINGS) {
			th_say("th_pg_start: more than %d settings", TH_PG_MAX_SETTINGS);
			return -1;
		}
		argv[n++] = "-c";
		argv[n++] = pg->settings[i];
	}
	argv[n] = NULL;
	snprintf(port, sizeof(port), "%d", pg->port ? pg->port : PG_PORT);
	if (kit_creds_for("postgres", &c) != 0 ||
	    th_fmt(postgres, sizeof(postgres), "%s/postgres", pg_bindir) != 0 ||
	    th_fmt(sock, sizeof(sock), "%s/.s.PGSQL.%s.lock", pg->sockdir, port) != 0 ||
	    th_fmt(pidfile, sizeof(pidfile), "%s/postmaster.pid", pg->datadir) != 0)
		return -1;
	/* No postmaster runs. If one was killed with SIGKILL, its backends may still run on the
	 * old shared memory: stop them before the new one starts. Its lock files remain, and if
	 * it was another process's child it is still a zombie, which postgres would take for a
	 * running server and refuse to start. */
	th_add_strays(&stray, pg->dir);
	rc = kit_procs_stop(&stray, PG_TIMEOUT_MS);
	kit_procs_free(&stray);
	if (rc != 0)
		return -1;
	unlink(pidfile);
	unlink(sock);
	snprintf(sock, sizeof(sock), "%s", pg->sockdir);
	sp.creds = &c;
	pid = kit_spawn(&sp);
	if (pid < 0)
		return -1;
	th_register_server("pg", pid, pidfile);
	th_pg_conninfo_of(pg, "postgres", ci, sizeof(ci));
	deadline = kit_now_ms() + PG_TIMEOUT_MS;
	while (PQping(ci) != PQPING_OK) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			th_say("postgres exited while starting (%s)",
			       kit_status_str(st, why, sizeof(why)));
			kit_file_print_tail(pg->log, 4096);
			return -1;
		}
		if (kit_now_ms() > deadline) {
			th_say("postgres did not accept connections within %d ms", PG_TIMEOUT_MS);
			kit_file_print_tail(pg->log, 4096);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		kit_sleep_ms(30);
	}
	if (kit_file_pid(pidfile) != pid)
		th_say("warning: %s does not name pid %d", pidfile, (int)pid);
	pg->pid = (int)pid;
	pg->running = 1;
	return 0;
}

/* sig: SIGINT, the fast shutdown (sessions are cut, nothing waits for clients, a shutdown
 * checkpoint is written), or SIGQUIT, the immediate one (no checkpoint: recovery at the next
 * start). */
static int pg_stop(struct th_pg *pg, int sig)
{
	struct kit_procs p = {0};
	pid_t pid = th_pg_pid(pg);
	int rc;

	if (pid == 0 && kit_pid_reap_alive(pg->pid) && th_pid_in_dir(pg->pid, pg->dir))
		pid = pg->pid;
	pg->running = 0;
	pg->pid = 0;
	if (pid == 0)
		return 0;
	kit_procs_add(&p, pid, sig);
	kit_procs_add_tree(&p, pid, 0);
	rc = kit_procs_stop(&p, PG_TIMEOUT_MS);
	kit_procs_free(&p);
	if (rc != 0)
		th_say("postgres (pid %d) did not stop", (int)pid);
	return rc;
}

int th_pg_stop(struct th_pg *pg)
{
	return pg_stop(pg, SIGINT);
}

int th_pg_stop_immediate(struct th_pg *pg)
{
	return pg_stop(pg, SIGQUIT);
}

static void trim_nl(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static PGconn *pg_connect(const char *dbname)
{
	char ci[512], msg[1024];
	PGconn *c;

	th_pg_conninfo(dbname, ci, sizeof(ci));
	c = PQconnectdb(ci);
	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
	trim_nl(msg);
	th_say("could not connect to database %s: %s", dbname, msg);
	PQfinish(c);
	return NULL;
}

int th_pg_exec(const char *dbname, const char *sql)
{
	PGconn *c = pg_connect(dbname);
	PGresult *r;
	ExecStatusType st;
	char msg[1024];
	int rc = -1;

	if (c == NULL)
		return -1;
	r = PQexec(c, sql);
	st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		rc = 0;
	} else {
		snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
		trim_nl(msg);
		th_say("%s: %s", sql, msg);
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

int th_db_create(char *conninfo, size_t len)
{
	char name[64], sql[256], msg[1024];
	long long deadline = kit_now_ms() + PG_TIMEOUT_MS;
	PGconn *c = pg_connect("postgres");
	const char *state;
	PGresult *r;
	int rc = -1;

	if (c == NULL)
		return -1;
	snprintf(name, sizeof(name), "t_%d_%u", (int)getpid(), ++db_counter);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE eb_template%s", name,
	         PQserverVersion(c) >= 150000 ? " STRATEGY FILE_COPY" : "");
	for (;;) {
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			break;
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		/* 55006: someone (a migration of eb_template) is connected to the template. */
		if (state != NULL && strcmp(state, "55006") == 0 && kit_now_ms() < deadline) {
			PQclear(r);
			kit_sleep_ms(50);
			continue;
		}
		snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
		trim_nl(msg);
		th_say("%s: %s", sql, msg);
		goto out;
	}
	th_pg_conninfo(name, conninfo, len);
	if (strlen(conninfo) + 1 >= len) {
		th_say("conninfo buffer too small (%zu)", len);
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	PQfinish(c);
	return rc;
}

int th_pg_cluster(struct th_pg *pg, const char *name, int port, bool initdb)
{
	char prog[300];
	const char *argv[] = {prog,    "-D", pg->datadir, "-U",         "postgres",  "-A",
	                      "trust", "-E", "UTF8",      "--locale=C", "--no-sync", NULL};
	struct kit_creds c;

	pg->port = port;
	if (th_fmt(pg->dir, sizeof(pg->dir), "%s/%s", th.basedir, name) != 0 ||
	    th_fmt(pg->datadir, sizeof(pg->datadir), "%s/data", pg->dir) != 0 ||
	    th_fmt(pg->sockdir, sizeof(pg->sockdir), "%s/sock", pg->dir) != 0 ||
	    th_fmt(pg->log, sizeof(pg->log), "%s/log", pg->dir) != 0 ||
	    (pg_bindir[0] == '\0' && find_pg_bindir() != 0) ||
	    th_fmt(prog, sizeof(prog), "%s/initdb", pg_bindir) != 0 ||
	    kit_creds_for("postgres", &c) != 0)
		return -1;
	if (th_make_dir(pg->dir, 0755) != 0 || th_make_dir(pg->sockdir, 0755) != 0 ||
	    kit_file_write(pg->log, "", 0644) != 0 || pg_give_to(&c, pg->dir) != 0 ||
	    pg_give_to(&c, pg->sockdir) != 0 || pg_give_to(&c, pg->log) != 0)
		return -1;
	return initdb ? th_run_ok(&c, pg->dir, argv, NULL) : 0;
}

const char *th_pg_bindir(void)
{
	if (pg_bindir[0] == '\0' && find_pg_bindir() != 0)
		return NULL;
	return pg_bindir;
}

int th_pg_tool(const char *tool, const char *const args[], char **out)
{
	const char *argv[32];
	char prog[300];
	struct kit_creds c;
	int n = 0;

	if ((pg_bindir[0] == '\0' && find_pg_bindir() != 0) ||
	    th_fmt(prog, sizeof(prog), "%s/%s", pg_bindir, tool) != 0 ||
	    kit_creds_for("postgres", &c) != 0)
		return -1;
	argv[n++] = prog;
	for (int i = 0; args[i] != NULL; i++) {
		if (n == 31) {
			th_say("th_pg_tool: too many arguments for %s", tool);
			return -1;
		}
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	/* In the base dir: the account may not enter the caller's working directory. */
	return th_run_ok(&c, th.basedir, argv, out);
}

int th_pg_init(void)
{
	if (th_pg_cluster(&th.pg, "pg", PG_PORT, true) != 0 || th_pg_start(&th.pg) != 0)
		return -1;
	return th_pg_exec("postgres", "CREATE DATABASE eb_template");
}
