/* tests/check_harness.c: proves the integration harness: its PostgreSQL answers, stops and
 * starts again and hands out fresh databases; its sshds take the client key and only that,
 * restart on their port, honour MaxSessions; kit_run() captures everything without deadlock.
 * After the run, main() checks that no server and no file of the run is left. */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"

#define MIB 1048576

struct conn {
	int fd;
	LIBSSH2_SESSION *s;
};

static PGconn *pg_open(const char *dbname)
{
	char ci[512];
	PGconn *c;

	th_pg_conninfo(dbname, ci, sizeof(ci));
	c = PQconnectdb(ci);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", ci, PQerrorMessage(c));
	return c;
}

/* The first value of the first row of sql, malloc'd. */
static char *pg_value(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	char *v;

	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
	              PQresultErrorMessage(r));
	v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static void assert_value(PGconn *c, const char *sql, const char *want)
{
	char *v = pg_value(c, sql);

	ck_assert_msg(strcmp(v, want) == 0, "%s: got %s, want %s", sql, v, want);
	free(v);
}

static const char *dbname_of(const char *conninfo)
{
	const char *p = strstr(conninfo, "dbname=");

	ck_assert_ptr_nonnull(p);
	return p + strlen("dbname=");
}

static void conn_open(struct conn *c, int port)
{
	c->fd = kit_connect(port, 0);
	ck_assert_msg(c->fd >= 0, "connect 127.0.0.1:%d: %s", port, strerror(errno));
	c->s = libssh2_session_init();
	ck_assert_ptr_nonnull(c->s);
	libssh2_session_set_blocking(c->s, 1);
	ck_assert_int_eq(libssh2_session_handshake(c->s, c->fd), 0);
}

static int conn_auth(struct conn *c, const char *key)
{
	char pub[600];

	snprintf(pub, sizeof(pub), "%s.pub", key);
	return libssh2_userauth_publickey_fromfile(c->s, th.user, pub, key, NULL);
}

static void conn_close(struct conn *c)
{
	libssh2_session_disconnect(c->s, "bye");
	libssh2_session_free(c->s);
	close(c->fd);
}

/* "SHA256:<unpadded base64>" of the server's host key, as ssh-keygen -l prints it. */
static void host_fp(struct conn *c, char *fp, size_t len)
{
	const char *h = libssh2_hostkey_hash(c->s, LIBSSH2_HOSTKEY_HASH_SHA256);
	unsigned char b64[64];
	int n;

	ck_assert_ptr_nonnull(h);
	n = EVP_EncodeBlock(b64, (const unsigned char *)h, 32);
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	snprintf(fp, len, "SHA256:%s", (const char *)b64);
}

/* Runs cmd on a new channel: its stdout (malloc'd) and exit status, or NULL if no channel
 * could be opened or the command could not be started. */
static char *ssh_exec(LIBSSH2_SESSION *s, const char *cmd, int *exit_status)
{
	LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(s);
	char buf[4096], *out;
	size_t n = 0;
	ssize_t r;

	if (ch == NULL)
		return NULL;
	if (libssh2_channel_exec(ch, cmd) != 0) {
		libssh2_channel_free(ch);
		return NULL;
	}
	while (n < sizeof(buf) - 1 &&
	       (r = libssh2_channel_read(ch, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	libssh2_channel_close(ch);
	libssh2_channel_wait_closed(ch);
	*exit_status = libssh2_channel_get_exit_status(ch);
	libssh2_channel_free(ch);
	out = strdup(buf);
	ck_assert_ptr_nonnull(out);
	return out;
}

static void assert_login_works(int port)
{
	struct conn c;
	char want[80], *out;
	int code = -1;

	conn_open(&c, port);
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	out = ssh_exec(c.s, "id -un", &code);
	ck_assert_ptr_nonnull(out);
	snprintf(want, sizeof(want), "%s\n", th.user);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(code, 0);
	free(out);
	conn_close(&c);
}

static char *slurp(const char *path)
{
	char *buf = calloc(1, 65536);
	FILE *f = fopen(path, "r");

	ck_assert_ptr_nonnull(buf);
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	if (fread(buf, 1, 65535, f) == 0)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

START_TEST(pg_answers_and_db_create_gives_an_empty_copy_of_the_template)
{
	char db1[512], db2[512], sql[256];
	PGconn *c = pg_open("postgres"), *d;

	assert_value(c, "SELECT 1", "1");

	ck_assert_int_eq(th_db_create(db1, sizeof(db1)), 0);
	ck_assert_int_eq(th_db_create(db2, sizeof(db2)), 0);
	ck_assert_str_ne(db1, db2);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_database WHERE datname = '%s'",
	         dbname_of(db1));
	assert_value(c, sql, "1");

	d = PQconnectdb(db1);
	ck_assert_msg(PQstatus(d) == CONNECTION_OK, "%s: %s", db1, PQerrorMessage(d));
	snprintf(sql, sizeof(sql), "SELECT current_database() = '%s'", dbname_of(db1));
	assert_value(d, sql, "t");
	assert_value(d,
	             "SELECT count(*) FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace"
	             " WHERE k.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog',"
	             " 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
	             "0");
	ck_assert_int_eq(th_pg_exec(dbname_of(db1), "CREATE TABLE only_in_db1 (x int)"), 0);
	PQfinish(d);

	/* A copy of the template, not of a sibling: db1's table is not in a newer database. */
	ck_assert_int_eq(th_db_create(db2, sizeof(db2)), 0);
	d = PQconnectdb(db2);
	ck_assert_msg(PQstatus(d) == CONNECTION_OK, "%s: %s", db2, PQerrorMessage(d));
	assert_value(d, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_db1'", "0");
	PQfinish(d);

	/* And it is a copy of eb_template as it is now (after a migration, say). */
	ck_assert_int_eq(th_pg_exec("eb_template", "CREATE TABLE from_template (x int)"), 0);
	ck_assert_int_eq(th_db_create(db2, sizeof(db2)), 0);
	ck_assert_int_eq(th_pg_exec("eb_template", "DROP TABLE from_template"), 0);
	d = PQconnectdb(db2);
	ck_assert_msg(PQstatus(d) == CONNECTION_OK, "%s: %s", db2, PQerrorMessage(d));
	assert_value(d, "SELECT count(*) FROM pg_tables WHERE tablename = 'from_template'", "1");
	PQfinish(d);

	ck_assert_int_eq(th_pg_exec("postgres", "SELECT no_such_column"), -1);
	PQfinish(c);
}
END_TEST

START_TEST(pg_stop_refuses_connections_and_start_brings_the_same_cluster_back)
{
	char ci[512], db[512];
	int old_pid = th_pg_pid(&th.pg), new_pid;
	PGconn *c;

	ck_assert_int_gt(old_pid, 0);
	ck_assert_int_eq(th_db_create(db, sizeof(db)), 0);

	ck_assert_int_eq(th_pg_stop(&th.pg), 0);
	ck_assert_int_eq(th.pg.running, 0);
	ck_assert_int_eq(th_pg_pid(&th.pg), 0);
	ck_assert(!kit_pid_alive(old_pid));
	th_pg_conninfo("postgres", ci, sizeof(ci));
	ck_assert_int_ne(PQping(ci), PQPING_OK);
	c = PQconnectdb(ci);
	ck_assert_int_ne(PQstatus(c), CONNECTION_OK);
	PQfinish(c);
	ck_assert_int_eq(th_pg_stop(&th.pg), 0); /* stopping a stopped server is fine */

	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	ck_assert_int_eq(th.pg.running, 1);
	new_pid = th_pg_pid(&th.pg);
	ck_assert_int_gt(new_pid, 0);
	ck_assert_int_ne(new_pid, old_pid);
	c = pg_open("postgres");
	assert_value(c, "SELECT 1", "1");
	PQfinish(c);
	/* Same data dir: the database made before the stop is still there. */
	c = PQconnectdb(db);
	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s: %s", db, PQerrorMessage(c));
	PQfinish(c);
	ck_assert_int_eq(th_pg_start(&th.pg), 0); /* already running: no second postmaster */
	ck_assert_int_eq(th_pg_pid(&th.pg), new_pid);
}
END_TEST

START_TEST(pg_start_recovers_from_a_killed_postmaster)
{
	int pid = th_pg_pid(&th.pg);
	PGconn *c;

	ck_assert_int_gt(pid, 0);
	/* A crash: the postmaster alone dies, its lock files and backends stay behind. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	for (int i = 0; i < 500 && kit_pid_alive(pid); i++)
		usleep(10000);
	ck_assert(!kit_pid_alive(pid));
	ck_assert_int_eq(th_pg_pid(&th.pg), 0);
	ck_assert_int_eq(th_pg_start(&th.pg), 0);
	ck_assert_int_ne(th_pg_pid(&th.pg), pid);
	c = pg_open("postgres");
	assert_value(c, "SELECT 1", "1");
	PQfinish(c);
}
END_TEST

START_TEST(sshd_accepts_the_client_key_and_shows_its_host_key)
{
	struct conn c;
	char fp[128], want[80], *out;
	size_t klen;
	int ktype = -1, code = -1;

	conn_open(&c, th.sshd.port);
	ck_assert_ptr_nonnull(libssh2_session_hostkey(c.s, &klen, &ktype));
	ck_assert_int_eq(ktype, LIBSSH2_HOSTKEY_TYPE_ED25519);
	host_fp(&c, fp, sizeof(fp));
	ck_assert_str_eq(fp, th.sshd.host_key_fp);
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	ck_assert(libssh2_userauth_authenticated(c.s));
	out = ssh_exec(c.s, "id -un", &code);
	ck_assert_ptr_nonnull(out);
	snprintf(want, sizeof(want), "%s\n", th.user);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(code, 0);
	free(out);
	conn_close(&c);
}
END_TEST

START_TEST(sshd_refuses_another_key)
{
	char wrong[512];
	const char *argv[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrong, NULL};
	struct conn c;
	int st = -1, rc;

	snprintf(wrong, sizeof(wrong), "%s/keys/wrong-%d", th.basedir, (int)getpid());
	ck_assert_int_eq(kit_run(argv, NULL, NULL, NULL, NULL, &st), 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	conn_open(&c, th.sshd.port);
	rc = conn_auth(&c, wrong);
	ck_assert_msg(rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
	                  rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED,
	              "auth with another key: %d", rc);
	ck_assert(!libssh2_userauth_authenticated(c.s));
	/* The refusal was about the key: the right one still works on this connection. */
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	conn_close(&c);
}
END_TEST

START_TEST(sshd_restart_keeps_port_and_keys_and_cuts_old_sessions)
{
	int port = th.sshd.port, old_pid = th_sshd_pid(&th.sshd), new_pid, code = -1;
	struct conn before, after;
	char fp[128], *out;

	ck_assert_int_gt(old_pid, 0);
	conn_open(&before, port);
	ck_assert_int_eq(conn_auth(&before, th.client_key), 0);

	ck_assert_int_eq(th_sshd_restart(&th.sshd), 0);
	ck_assert_int_eq(th.sshd.port, port);
	new_pid = th_sshd_pid(&th.sshd);
	ck_assert_int_gt(new_pid, 0);
	ck_assert_int_ne(new_pid, old_pid);
	ck_assert(!kit_pid_alive(old_pid));

	out = ssh_exec(before.s, "true", &code);
	ck_assert_ptr_null(out);
	conn_close(&before);

	conn_open(&after, port);
	host_fp(&after, fp, sizeof(fp));
	ck_assert_str_eq(fp, th.sshd.host_key_fp);
	conn_close(&after);
	assert_login_works(port);
}
END_TEST

START_TEST(sshd_stop_closes_the_port)
{
	int port = th.sshd.port, fd;

	ck_assert_int_eq(th_sshd_stop(&th.sshd), 0);
	ck_assert_int_eq(th_sshd_pid(&th.sshd), 0);
	fd = kit_connect(port, 0);
	ck_assert_msg(fd < 0 && errno == ECONNREFUSED, "port %d still open", port);
	ck_assert_int_eq(th_sshd_stop(&th.sshd), 0);
	/* Restart is also how a stopped sshd comes back, on its port with its keys. */
	ck_assert_int_eq(th_sshd_restart(&th.sshd), 0);
	ck_assert_int_eq(th.sshd.port, port);
	assert_login_works(port);
}
END_TEST

START_TEST(sshd_cut_sessions_drops_connections_and_keeps_listening)
{
	int pid = th_sshd_pid(&th.sshd), code = -1;
	struct conn c;
	char *out;

	conn_open(&c, th.sshd.port);
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	out = ssh_exec(c.s, "true", &code);
	ck_assert_ptr_nonnull(out);
	free(out);
	ck_assert_int_eq(th_sshd_cut_sessions(&th.sshd), 0);
	ck_assert_ptr_null(ssh_exec(c.s, "true", &code));
	conn_close(&c);
	ck_assert_int_eq(th_sshd_pid(&th.sshd), pid);
	assert_login_works(th.sshd.port);
}
END_TEST

START_TEST(second_sshd_has_its_own_port_and_max_sessions)
{
	const struct th_sshd_opts o = {.max_sessions = 3,
	                               .extra_config = "MaxStartups 20:30:60\nLoginGraceTime 30"};
	LIBSSH2_CHANNEL *ch[4];
	struct th_sshd s2;
	struct conn c;
	char *cfg;
	int fd;

	ck_assert_int_eq(th_sshd_start(&s2, &o), 0);
	ck_assert_int_ne(s2.port, th.sshd.port);
	ck_assert_str_ne(s2.dir, th.sshd.dir);
	ck_assert_str_ne(s2.host_key_fp, th.sshd.host_key_fp);
	cfg = slurp(s2.config);
	ck_assert_ptr_nonnull(strstr(cfg, "\nMaxSessions 3\n"));
	ck_assert_ptr_nonnull(strstr(cfg, "\nLoginGraceTime 30\n"));
	/* A keyword of extra_config replaces the default rather than coming second. */
	ck_assert_ptr_nonnull(strstr(cfg, "\nMaxStartups 20:30:60\n"));
	ck_assert_ptr_null(strstr(cfg, "MaxStartups 200"));
	free(cfg);

	conn_open(&c, s2.port);
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	for (int i = 0; i < 3; i++) {
		ch[i] = libssh2_channel_open_session(c.s);
		ck_assert_msg(ch[i] != NULL, "channel %d: %d", i, libssh2_session_last_errno(c.s));
	}
	ck_assert_ptr_null(libssh2_channel_open_session(c.s));
	ck_assert_int_eq(libssh2_session_last_errno(c.s), LIBSSH2_ERROR_CHANNEL_FAILURE);
	for (int i = 0; i < 3; i++)
		libssh2_channel_free(ch[i]);
	conn_close(&c);

	/* The limit is the config's, not libssh2's: the default sshd allows a fourth. */
	conn_open(&c, th.sshd.port);
	ck_assert_int_eq(conn_auth(&c, th.client_key), 0);
	for (int i = 0; i < 4; i++) {
		ch[i] = libssh2_channel_open_session(c.s);
		ck_assert_msg(ch[i] != NULL, "channel %d: %d", i, libssh2_session_last_errno(c.s));
	}
	for (int i = 0; i < 4; i++)
		libssh2_channel_free(ch[i]);
	conn_close(&c);

	ck_assert_int_eq(th_sshd_stop(&s2), 0);
	fd = kit_connect(s2.port, 0);
	ck_assert_msg(fd < 0 && errno == ECONNREFUSED, "port %d still open", s2.port);
	assert_login_works(th.sshd.port);
}
END_TEST

START_TEST(bad_extra_config_is_refused_at_start)
{
	const struct th_sshd_opts o = {.extra_config = "NoSuchOption yes\n"};
	struct th_sshd s;

	ck_assert_int_eq(th_sshd_start(&s, &o), -1);
	ck_assert_int_eq(th_sshd_pid(&s), 0);
}
END_TEST

/* Left running on purpose: main() checks that teardown stops it. */
START_TEST(sshd_started_by_a_test_is_registered)
{
	struct th_sshd s;
	char path[512], *reg;

	ck_assert_int_eq(th_sshd_start(&s, NULL), 0);
	snprintf(path, sizeof(path), "%s/servers", th.basedir);
	reg = slurp(path);
	ck_assert_ptr_nonnull(strstr(reg, s.pidfile));
	ck_assert_ptr_nonnull(strstr(reg, th.pg.datadir));
	free(reg);
	assert_login_works(s.port);
}
END_TEST

START_TEST(run_captures_stdout_stderr_and_status)
{
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
	char *out = NULL, *err = NULL;
	int st = -1;

	ck_assert_int_eq(kit_run(argv, NULL, NULL, &out, &err, &st), 0);
	ck_assert_str_eq(out, "out\n");
	ck_assert_str_eq(err, "err\n");
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 3);
	free(out);
	free(err);
}
END_TEST

START_TEST(run_moves_megabytes_both_ways_without_deadlock)
{
	/* stderr first: a reader blocked on stdout alone would never see the end. */
	const char *gen[] = {"sh", "-c",
	                     "head -c 5242880 /dev/zero | tr '\\0' e >&2;"
	                     "head -c 5242880 /dev/zero | tr '\\0' o",
	                     NULL};
	const char *cat[] = {"cat", NULL};
	const char *no_read[] = {"true", NULL};
	char *in = malloc(5 * MIB + 1), *out = NULL, *err = NULL;
	int st = -1;

	ck_assert_int_eq(kit_run(gen, NULL, NULL, &out, &err, &st), 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(strlen(out), 5 * MIB);
	ck_assert_uint_eq(strlen(err), 5 * MIB);
	ck_assert_uint_eq(strspn(out, "o"), 5 * MIB);
	ck_assert_uint_eq(strspn(err, "e"), 5 * MIB);
	free(out);
	free(err);

	ck_assert_ptr_nonnull(in);
	for (size_t i = 0; i < 5 * MIB; i++)
		in[i] = (char)('a' + i % 26);
	in[5 * MIB] = '\0';
	ck_assert_int_eq(kit_run(cat, NULL, in, &out, NULL, &st), 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(strlen(out), 5 * MIB);
	ck_assert(memcmp(out, in, 5 * MIB) == 0);
	free(out);

	/* A program that never reads its stdin: EPIPE for us, not SIGPIPE. */
	ck_assert_int_eq(kit_run(no_read, NULL, in, NULL, NULL, &st), 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(in);
}
END_TEST

START_TEST(run_env_overrides_and_failures)
{
	const char *show[] = {"env", NULL};
	const char *env[] = {"EB_HARNESS_X=1", "HOME=/nowhere", NULL};
	const char *missing[] = {"/nonexistent/eb-program", NULL};
	const char *slow[] = {"sleep", "30", NULL};
	char *out = NULL, *line, *save = NULL;
	int st = -1, homes = 0, xs = 0, path = 0;
	struct timespec t0, t1;

	/* env(1) prints the environment it got, duplicates included. */
	ck_assert_int_eq(kit_run(show, env, NULL, &out, NULL, &st), 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "HOME=", 5) == 0) {
			homes++;
			ck_assert_str_eq(line, "HOME=/nowhere");
		}
		xs += strcmp(line, "EB_HARNESS_X=1") == 0;
		path += strncmp(line, "PATH=", 5) == 0; /* the current environment is kept */
	}
	ck_assert_int_eq(homes, 1);
	ck_assert_int_eq(xs, 1);
	ck_assert_int_eq(path, 1);
	free(out);

	ck_assert_int_eq(kit_run(missing, NULL, NULL, &out, NULL, &st), -1);
	ck_assert_ptr_null(out);

	kit_run_timeout_ms = 300;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(kit_run(slow, NULL, NULL, NULL, NULL, &st), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	kit_run_timeout_ms = 60000; /* for the tests after this one under CK_FORK=no */
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 10);
}
END_TEST

/* With EB_TEST_PAUSE=<seconds>: a test that waits, to interrupt a run by hand or script. */
START_TEST(pause_for_interruption)
{
	int secs = atoi(getenv("EB_TEST_PAUSE"));

	fprintf(stderr, "paused %d s in %s (pid %d)\n", secs, th.basedir, (int)getppid());
	sleep((unsigned)secs);
}
END_TEST

/* Processes whose command line names the base dir, after teardown: there must be none. */
static int count_leftovers(const char *basedir)
{
	char path[64], cmd[4096];
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;
	size_t len;
	FILE *f;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		int pid = atoi(de->d_name);

		if (pid <= 1 || pid == (int)getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		len = fread(cmd, 1, sizeof(cmd) - 1, f);
		fclose(f);
		for (size_t i = 0; i < len; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[len] = '\0';
		if (strstr(cmd, basedir) != NULL) {
			fprintf(stderr, "left behind: pid %d: %s\n", pid, cmd);
			n++;
		}
	}
	closedir(d);
	return n;
}

int main(void)
{
	Suite *s = suite_create("harness");
	TCase *tc = tcase_create("harness");
	char basedir[256];
	struct stat sb;
	SRunner *sr;
	int failed;

	if (libssh2_init(0) != 0)
		return EXIT_FAILURE;
	if (th_setup(TH_PG | TH_SSHD) != 0)
		return EXIT_FAILURE;
	snprintf(basedir, sizeof(basedir), "%s", th.basedir);
	tcase_set_timeout(tc, 60);
	if (getenv("EB_TEST_PAUSE") != NULL)
		tcase_add_test(tc, pause_for_interruption);
	tcase_add_test(tc, pg_answers_and_db_create_gives_an_empty_copy_of_the_template);
	tcase_add_test(tc, pg_stop_refuses_connections_and_start_brings_the_same_cluster_back);
	tcase_add_test(tc, pg_start_recovers_from_a_killed_postmaster);
	tcase_add_test(tc, sshd_accepts_the_client_key_and_shows_its_host_key);
	tcase_add_test(tc, sshd_refuses_another_key);
	tcase_add_test(tc, sshd_restart_keeps_port_and_keys_and_cuts_old_sessions);
	tcase_add_test(tc, sshd_stop_closes_the_port);
	tcase_add_test(tc, sshd_cut_sessions_drops_connections_and_keeps_listening);
	tcase_add_test(tc, second_sshd_has_its_own_port_and_max_sessions);
	tcase_add_test(tc, bad_extra_config_is_refused_at_start);
	tcase_add_test(tc, sshd_started_by_a_test_is_registered);
	tcase_add_test(tc, run_captures_stdout_stderr_and_status);
	tcase_add_test(tc, run_moves_megabytes_both_ways_without_deadlock);
	tcase_add_test(tc, run_env_overrides_and_failures);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	th_teardown();
	libssh2_exit();

	if (getenv("EB_TEST_KEEP") == NULL && stat(basedir, &sb) == 0) {
		fprintf(stderr, "teardown left %s\n", basedir);
		failed++;
	}
	if (count_leftovers(basedir) != 0) {
		fprintf(stderr, "teardown left processes of %s\n", basedir);
		failed++;
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
