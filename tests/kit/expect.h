/* tests/kit/expect.h: the kit's Check side, for suites only: helpers that fail the running
 * test, under the names the suites always called (tu_*: the CLI and queries; sv_*:
 * responses, frames, audit rows, processes). Benchmarks link the kit without it. */
#ifndef EB_TESTS_KIT_EXPECT_H
#define EB_TESTS_KIT_EXPECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/kit/frames.h"
#include "tests/kit/http.h"

/* Output of one run of the broker binary. */
struct tu_run {
	char *out, *err;
	int exit_code; /* -1 if it did not exit normally */
};

/* Runs the broker with args (NULL-terminated) and EXEC_BROKER_DATABASE_URL=conninfo (none
 * when conninfo is NULL), plus extra "NAME=value" env entries (may be NULL). Fails the
 * test if the binary cannot be started. */
void tu_broker(struct tu_run *r, const char *conninfo, const char *const env[],
               const char *const args[]);
void tu_run_free(struct tu_run *r);

/* Runs sql on conninfo; returns the first column of the first row as a malloc'd string
 * ("" when there is no row, "<null>" for NULL). Fails the test on error. */
char *tu_query(const char *conninfo, const char *sql);
/* Runs sql and expects it to fail: returns the SQLSTATE (static buffer). Fails the test if
 * the statement succeeds. */
const char *tu_query_fails(const char *conninfo, const char *sql);
/* tu_query() parsed as a number. */
long long tu_query_int(const char *conninfo, const char *sql);
/* Number of '\n' in s. */
int tu_lines(const char *s);
/* A fresh database migrated by the broker itself; conninfo receives its conninfo. */
void tu_migrated_db(char *conninfo, size_t len);

/* sh -c SV_SLEEPER <pidfile>: the command and a child write their pids to the file (at
 * once, when complete), print "ready" and sleep 300 s. */
#define SV_SLEEPER                                                                                 \
	"echo $$ >\"$0.tmp\"; sleep 300 & echo $! >>\"$0.tmp\"; mv \"$0.tmp\" \"$0\"; echo "       \
	"ready; "                                                                                  \
	"wait"

/* kit_http, failing the test if out of memory. */
void sv_http(int port, const struct kit_req *q, struct kit_resp *r);
/* tu_query() on a connection kept for the test process. */
char *sv_query(const char *db, const char *sql);
/* Rows of exec_audit with this request_id. */
long long sv_rows(const char *db, const char *rid);
/* expr (SQL over the columns of exec_audit) of the one row with this request_id; fails the
 * test unless there is exactly one. malloc'd; "<null>" for NULL. */
char *sv_row(const char *db, const char *rid, const char *expr);
/* Waits (KIT_WAIT_MS) until that row is no longer 'running'; returns its status. */
char *sv_row_final(const char *db, const char *rid);
/* The body as a JSON object (fails the test if it is not one). json_decref it. */
json_t *sv_json(const struct kit_resp *r);
/* The string member path ("error.code", "workspace_id") of o, or NULL. */
const char *sv_str(json_t *o, const char *path);
/* An error response: status, a JSON body {"error":{"code"...}} with code (every status,
 * 413 included), and the audit: with row_status NULL no row and no
 * X-Exec-Id header; else exactly one row with that status whose exec_id is in X-Exec-Id,
 * and error_code equal to row_error ("*": any non-NULL, NULL: not checked). */
void sv_error(const char *db, const struct kit_resp *r, int status, const char *code,
              const char *row_status, const char *row_error);
/* A complete streamed exec: 200, NDJSON, the whole response, every line a JSON object, the
 * first frame exec_id/workspace_id/timeout_s (exec_id also in X-Exec-Id), output frames,
 * and exactly one last frame, last. Fills f (kit_frames_free it). */
void sv_stream(const struct kit_resp *r, struct kit_frames *f);
/* The last frame of f (borrowed). */
json_t *sv_last(const struct kit_frames *f);
/* Integer member of o, failing the test if it is absent or not an integer. */
long long sv_int(json_t *o, const char *key);
/* Waits (KIT_WAIT_MS) until pid is gone; fails the test naming what if it still lives. */
void sv_pid_gone(pid_t pid, const char *what);
/* Waits (KIT_WAIT_MS) until file path holds a pid, and returns it. */
pid_t sv_pid_wait(const char *path);
/* No audit row of broker instance is left 'running' in db (fails the test naming how many). */
void sv_none_running(const char *db, const char *instance);
/* A command for the fault suites: its pid goes to the file $0 (the marker that it
 * started), then it waits for $0.go and says "ok". sv_marked_body: its request body, with
 * marker as $0 and timeout_s. */
#define SV_MARKED                                                                                  \
	"echo $$ > \"$0.tmp\"; mv \"$0.tmp\" \"$0\"; while [ ! -e \"$0.go\" ]; do sleep 0.02; "    \
	"done; echo ok"
char *sv_marked_body(const char *marker, int timeout_s);
/* Creates an empty file (a gate a waiting command looks for). */
void sv_touch(const char *path);
/* Waits for SV_SLEEPER's pid file and reads both pids. */
void sv_read_pids(const char *path, pid_t pids[2]);
/* Reads stream lines into f until pred(f, arg) holds; fails after KIT_WAIT_MS. */
void sv_stream_until(struct kit_conn *s, struct kit_frames *f,
                     bool (*pred)(const struct kit_frames *f, const void *arg), const void *arg,
                     const char *what);
/* pred for sv_stream_until: stdout so far contains the string arg. */
bool sv_out_has(const struct kit_frames *f, const void *arg);
/* A JSON request body {"argv":[...]} plus the members of extra (may be NULL, stolen). */
char *sv_body(const char *const argv[], json_t *extra);
/* The "msg=request" line of request rid in a broker's log (waits for it), malloc'd. */
char *sv_log_request(const char *log, const char *rid);
/* GET /metrics of the broker on port, as text. */
char *sv_metrics(int port);
/* Reads s until SV_SLEEPER has printed "ready", then reads both its pids from pidf. */
void sv_wait_sleeper(struct kit_conn *s, const char *pidf, pid_t pids[2]);

/* One Check test case per test, so that CK_RUN_CASE=<test name> runs one alone. */
#define SV_ADD_LOOP(s, fn, n, timeout_s)                                                           \
	do {                                                                                       \
		TCase *tc_ = tcase_create(#fn);                                                    \
		tcase_set_timeout(tc_, (timeout_s));                                               \
		tcase_add_loop_test(tc_, fn, 0, (int)(n));                                         \
		suite_add_tcase(s, tc_);                                                           \
	} while (0)

#endif
