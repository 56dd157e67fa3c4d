/* tests/kit/expect.c: Check-based helpers that fail the running test (see expect.h). */
#include "tests/kit/expect.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"
#include "tests/kit/sql.h"

void tu_broker(struct tu_run *r, const char *conninfo, const char *const env[],
               const char *const args[])
{
	const char *argv[320], *envv[16];
	char dburl[512];
	int n = 0, e = 0, status = 0;

	argv[n++] = kit_broker_bin();
	for (int i = 0; args[i] != NULL; i++) {
		ck_assert_msg(n < (int)(sizeof(argv) / sizeof(argv[0])) - 1,
		              "tu_broker: more than %zu arguments", sizeof(argv) / sizeof(argv[0]));
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	/* The test machine's /etc/exec-broker must play no part, unless a test names a file. */
	bool own_config = false;
	for (int i = 0; env != NULL && env[i] != NULL; i++)
		own_config |= strncmp(env[i], "EXEC_BROKER_CONFIG=", 19) == 0;
	if (!own_config)
		envv[e++] = "EXEC_BROKER_CONFIG=/dev/null";
	if (conninfo != NULL) {
		snprintf(dburl, sizeof(dburl), "EXEC_BROKER_DATABASE_URL=%s", conninfo);
		envv[e++] = dburl;
	}
	for (int i = 0; env != NULL && env[i] != NULL && e < 15; i++)
		envv[e++] = env[i];
	envv[e] = NULL;
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(kit_run(argv, envv, NULL, &r->out, &r->err, &status), 0);
	r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void tu_run_free(struct tu_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

static PGconn *connect_or_fail(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect %s: %s", conninfo, PQerrorMessage(c));
	return c;
}

char *tu_query(const char *conninfo, const char *sql)
{
	PGconn *c = connect_or_fail(conninfo);
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	char *v;

	ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
	              PQresultErrorMessage(res));
	v = kit_sql_first_value(res);
	PQclear(res);
	PQfinish(c);
	ck_assert_ptr_nonnull(v);
	return v;
}

const char *tu_query_fails(const char *conninfo, const char *sql)
{
	static char state[6];
	PGconn *c = connect_or_fail(conninfo);
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	snprintf(state, sizeof(state), "%s", s ? s : "");
	PQclear(res);
	PQfinish(c);
	ck_assert_msg(st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK, "succeeded: %s", sql);
	return state;
}

long long tu_query_int(const char *conninfo, const char *sql)
{
	char *v = tu_query(conninfo, sql);
	long long n = atoll(v);

	free(v);
	return n;
}

int tu_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

void tu_migrated_db(char *conninfo, size_t len)
{
	static const char *const args[] = {"migrate", NULL};
	struct tu_run r;

	ck_assert_int_eq(th_db_create(conninfo, len), 0);
	tu_broker(&r, conninfo, NULL, args);
	ck_assert_msg(r.exit_code == 0, "migrate failed: %s", r.err);
	tu_run_free(&r);
}

void sv_http(int port, const struct kit_req *q, struct kit_resp *r)
{
	ck_assert_msg(kit_http(port, q, r) == 0, "no HTTP request to port %d", port);
}

/* Request ids the suites send are [A-Za-z0-9._:-] (or checked to be) and safe in SQL. */
static void check_rid(const char *rid)
{
	ck_assert_msg(rid[0] != '\0' &&
	                  strspn(rid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
	                              "vwxyz0123456789._:-") == strlen(rid),
	              "request id \"%s\"", rid);
}

/* One connection per test process (connecting costs tens of milliseconds here); made again
 * when PostgreSQL was restarted under it. Never opened in main(), so that no two processes
 * share it. */
static PGconn *sv_conn;
static char sv_conn_db[512];
static pid_t sv_conn_pid;

static PGresult *sv_exec(const char *db, const char *sql)
{
	PGresult *res = NULL;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (sv_conn != NULL && (sv_conn_pid != getpid() || strcmp(sv_conn_db, db) != 0 ||
		                        PQstatus(sv_conn) != CONNECTION_OK)) {
			if (sv_conn_pid == getpid())
				PQfinish(sv_conn);
			sv_conn = NULL;
		}
		if (sv_conn == NULL) {
			sv_conn = PQconnectdb(db);
			sv_conn_pid = getpid();
			snprintf(sv_conn_db, sizeof(sv_conn_db), "%s", db);
			ck_assert_msg(PQstatus(sv_conn) == CONNECTION_OK, "connect %s: %s", db,
			              PQerrorMessage(sv_conn));
		}
		res = PQexec(sv_conn, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK || PQstatus(sv_conn) == CONNECTION_OK)
			break;
		PQclear(res); /* the server went away under this connection: once more */
		res = NULL;
	}
	ck_assert_msg(res != NULL && (PQresultStatus(res) == PGRES_TUPLES_OK ||
	                              PQresultStatus(res) == PGRES_COMMAND_OK),
	              "%s: %s", sql, res ? PQresultErrorMessage(res) : PQerrorMessage(sv_conn));
	return res;
}

char *sv_query(const char *db, const char *sql)
{
	PGresult *res = sv_exec(db, sql);
	char *v;

	v = kit_sql_first_value(res);
	PQclear(res);
	ck_assert_ptr_nonnull(v);
	return v;
}

long long sv_rows(const char *db, const char *rid)
{
	char sql[300], *v;
	long long n;

	check_rid(rid);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM exec_audit WHERE request_id = '%s'", rid);
	v = sv_query(db, sql);
	n = atoll(v);
	free(v);
	return n;
}

char *sv_row(const char *db, const char *rid, const char *expr)
{
	char *sql = NULL, *v;
	PGresult *res;

	check_rid(rid);
	ck_assert_int_ge(
	    asprintf(&sql, "SELECT %s FROM exec_audit WHERE request_id = '%s'", expr, rid), 0);
	res = sv_exec(db, sql);
	free(sql);
	ck_assert_msg(PQntuples(res) == 1, "%d audit rows for request %s, want 1", PQntuples(res),
	              rid);
	v = strdup(PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
	PQclear(res);
	ck_assert_ptr_nonnull(v);
	return v;
}

char *sv_row_final(const char *db, const char *rid)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char *st;

	for (;;) {
		st = sv_row(db, rid, "status");
		if (strcmp(st, "running") != 0)
			return st;
		ck_assert_msg(kit_now_ms() < end, "audit row of %s still running after %d ms", rid,
		              KIT_WAIT_MS);
		free(st);
		kit_sleep_ms(100);
	}
}

json_t *sv_json(const struct kit_resp *r)
{
	json_error_t je;
	json_t *o = json_loadb(r->body, r->body_len, 0, &je);

	ck_assert_msg(o != NULL && json_is_object(o), "status %d: body is not a JSON object: %s",
	              r->status, r->body);
	return o;
}

const char *sv_str(json_t *o, const char *path)
{
	char key[64];
	const char *dot;
	json_t *v = o;

	while (v != NULL && (dot = strchr(path, '.')) != NULL) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		v = json_object_get(v, key);
		path = dot + 1;
	}
	v = v ? json_object_get(v, path) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

void sv_error(const char *db, const struct kit_resp *r, int status, const char *code,
              const char *row_status, const char *row_error)
{
	char hv[200], *v;
	const char *xid;

	ck_assert_msg(r->status == status, "request %s: status %d, want %d (%s); body: %s", r->rid,
	              r->status, status, code, r->body);
	{
		json_t *o = sv_json(r);
		const char *got = sv_str(o, "error.code");

		ck_assert_msg(got != NULL && strcmp(got, code) == 0, "error code %s, want %s: %s",
		              got ? got : "(none)", code, r->body);
		ck_assert_msg(sv_str(o, "error.message") != NULL &&
		                  strlen(sv_str(o, "error.message")) > 0,
		              "no error.message: %s", r->body);
		json_decref(o);
		ck_assert_msg(kit_header(r, "Content-Type", hv, sizeof(hv)) != NULL &&
		                  strncmp(hv, "application/json", 16) == 0,
		              "Content-Type of an error: %s", r->head);
	}
	if (r->rid[0] == '\0')
		return;
	xid = kit_header(r, "X-Exec-Id", hv, sizeof(hv));
	if (row_status == NULL) {
		long long n = sv_rows(db, r->rid);
		ck_assert_msg(n == 0, "%s (%d) wrote %lld audit row(s)", code, status, n);
		ck_assert_msg(xid == NULL, "X-Exec-Id %s without an audit row", xid);
		return;
	}
	v = sv_row(db, r->rid, "status");
	ck_assert_msg(strcmp(v, row_status) == 0, "%s: audit status %s, want %s", code, v,
	              row_status);
	free(v);
	ck_assert_msg(xid != NULL, "%s: an audit row but no X-Exec-Id header", code);
	v = sv_row(db, r->rid, "exec_id");
	ck_assert_str_eq(v, xid);
	free(v);
	if (row_error != NULL) {
		v = sv_row(db, r->rid, "error_code");
		if (strcmp(row_error, "*") == 0)
			ck_assert_msg(strcmp(v, "<null>") != 0, "%s: row has no error_code", code);
		else
			ck_assert_msg(strcmp(v, row_error) == 0, "%s: row error_code %s, want %s",
			              code, v, row_error);
		free(v);
	}
}

static bool uuid_like(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (strchr("0123456789abcdef", s[i]) == NULL) {
			return false;
		}
	}
	return true;
}

void sv_stream(const struct kit_resp *r, struct kit_frames *f)
{
	char hv[200];
	json_t *first;
	size_t n;

	ck_assert_msg(r->status == 200, "request %s: status %d, want 200: %s", r->rid, r->status,
	              r->body);
	ck_assert_msg(kit_header(r, "Content-Type", hv, sizeof(hv)) != NULL &&
	                  strncmp(hv, "application/x-ndjson", 20) == 0,
	              "Content-Type: %s", r->head);
	ck_assert_msg(r->complete, "request %s: not whole after %zu body bytes: %s", r->rid,
	              r->body_len, r->error);
	kit_frames_init(f);
	kit_frames_parse(f, r->body, r->body_len);
	ck_assert_msg(f->bad == 0, "%d bad frame(s) in %zu bytes, first: %s", f->bad, r->body_len,
	              f->bad_line);
	ck_assert_msg(r->body_len > 0 && r->body[r->body_len - 1] == '\n',
	              "the stream does not end with a newline: %s", r->body);
	n = kit_nframes(f);
	ck_assert_msg(n >= 2, "%zu frames: %s", n, r->body);
	first = kit_frame(f, 0);
	ck_assert_msg(uuid_like(sv_str(first, "exec_id")) && sv_str(first, "workspace_id") &&
	                  json_is_integer(json_object_get(first, "timeout_s")) &&
	                  json_object_get(first, "stream") == NULL,
	              "first frame: %s", r->body);
	ck_assert_msg(kit_header(r, "X-Exec-Id", hv, sizeof(hv)) != NULL &&
	                  strcmp(hv, sv_str(first, "exec_id")) == 0,
	              "X-Exec-Id is not the first frame's exec_id: %s", r->head);
	ck_assert_msg(f->terminal == 1, "%d last frames: %s", f->terminal, r->body);
	ck_assert_msg(f->terminal_at == (int)n - 1, "the exit/error frame is not last: %s",
	              r->body);
	for (size_t i = 1; i + 1 < n; i++)
		ck_assert_msg(json_object_get(kit_frame(f, i), "stream") != NULL,
		              "frame %zu is neither output nor last: %s", i, r->body);
}

json_t *sv_last(const struct kit_frames *f)
{
	return kit_frame(f, kit_nframes(f) - 1);
}

long long sv_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	char *dump = json_dumps(o, JSON_COMPACT);

	ck_assert_msg(json_is_integer(v), "no integer \"%s\" in %s", key, dump);
	free(dump);
	return json_integer_value(v);
}

void sv_pid_gone(pid_t pid, const char *what)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;

	while (kit_pid_alive(pid)) {
		ck_assert_msg(kit_now_ms() < end, "%s (pid %d) still runs %d ms later", what,
		              (int)pid, KIT_WAIT_MS);
		kit_sleep_ms(50);
	}
}

pid_t sv_pid_wait(const char *path)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	pid_t pid;

	while ((pid = kit_file_pid(path)) <= 0) {
		ck_assert_msg(kit_now_ms() < end, "no pid in %s after %d ms", path, KIT_WAIT_MS);
		kit_sleep_ms(20);
	}
	return pid;
}

void sv_stream_until(struct kit_conn *s, struct kit_frames *f,
                     bool (*pred)(const struct kit_frames *f, const void *arg), const void *arg,
                     const char *what)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char *line;

	while (!pred(f, arg)) {
		long long left = end - kit_now_ms();
		ck_assert_msg(left > 0, "no %s after %d ms (status %d)", what, KIT_WAIT_MS,
		              s->r.status);
		line = kit_stream_line(s, (int)left);
		ck_assert_msg(line != NULL || !kit_stream_over(s),
		              "the stream ended before %s (status %d, %s): %s", what, s->r.status,
		              s->r.error, s->r.body ? s->r.body : "");
		if (line != NULL) {
			kit_frames_add(f, line);
			free(line);
		}
	}
}

bool sv_out_has(const struct kit_frames *f, const void *arg)
{
	return strstr(f->out, arg) != NULL;
}

char *sv_body(const char *const argv[], json_t *extra)
{
	json_t *o = json_object(), *a = json_array();
	char *s;

	for (int i = 0; argv[i] != NULL; i++)
		json_array_append_new(a, json_string(argv[i]));
	json_object_set_new(o, "argv", a);
	if (extra != NULL) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	ck_assert_ptr_nonnull(s);
	return s;
}

char *sv_metrics(int port)
{
	struct kit_req q = {.method = "GET", .path = "/metrics", .rid = ""};
	struct kit_resp r;
	char *t;

	sv_http(port, &q, &r);
	ck_assert_msg(r.status == 200, "GET /metrics: %d", r.status);
	t = r.body;
	r.body = NULL;
	kit_resp_free(&r);
	return t;
}

char *sv_log_request(const char *log, const char *rid)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char needle[120], *text, *eol, *line = NULL;

	snprintf(needle, sizeof(needle), " request_id=%s ", rid);
	/* The line may be written just after the response ended. */
	while (line == NULL) {
		ck_assert_msg(kit_now_ms() < end, "no msg=request line with%sin %s", needle, log);
		text = kit_file_read(log, NULL);
		ck_assert_ptr_nonnull(text);
		for (char *bol = text; bol != NULL && *bol != '\0'; bol = eol ? eol + 1 : NULL) {
			eol = strchr(bol, '\n');
			if (eol != NULL)
				*eol = '\0';
			if (strstr(bol, needle) != NULL && strstr(bol, " msg=request ") != NULL) {
				line = strdup(bol);
				break;
			}
		}
		free(text);
		if (line == NULL)
			kit_sleep_ms(50);
	}
	return line;
}

void sv_none_running(const char *db, const char *instance)
{
	char sql[256], *v;

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE broker_instance = '%s' AND status = "
	         "'running'",
	         instance);
	v = sv_query(db, sql);
	ck_assert_msg(strcmp(v, "0") == 0, "%s rows of %s left running", v, instance);
	free(v);
}

char *sv_marked_body(const char *marker, int timeout_s)
{
	const char *argv[] = {"sh", "-c", SV_MARKED, marker, NULL};

	return sv_body(argv, json_pack("{s:i}", "timeout_s", timeout_s));
}

void sv_touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	close(fd);
}

void sv_read_pids(const char *path, pid_t pids[2])
{
	char *s;

	sv_pid_wait(path);
	s = kit_file_read(path, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(sscanf(s, "%d %d", &pids[0], &pids[1]) == 2, "pids: %s", s);
	free(s);
}

void sv_wait_sleeper(struct kit_conn *s, const char *pidf, pid_t pids[2])
{
	struct kit_frames f;

	kit_frames_init(&f);
	sv_stream_until(s, &f, sv_out_has, "ready", "ready");
	kit_frames_free(&f);
	sv_read_pids(pidf, pids);
}
