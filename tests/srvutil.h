/* tests/srvutil.h: what the `exec-broker serve` suites share: a migrated database with
 * workspaces and tokens made by the CLI, broker processes started from a config file, HTTP
 * through curl (whole responses or read line by line while they stream), and the parsing
 * of responses and NDJSON frames. Functions named su_* never use Check, so that main() can
 * call them before srunner_run_all(); they return 0, or -1 with a message on stderr.
 * Functions named sv_* are for tests: they fail the test instead. */
#ifndef EB_TESTS_SRVUTIL_H
#define EB_TESTS_SRVUTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/kit/harness.h"

#define SU_WAIT_MS 30000 /* longest any one wait of these helpers may take */

/* A fingerprint no sshd of the run has (a well-formed SHA-256 of nothing real). */
#define SU_WRONG_FP "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE"

/* The world both suites run in: one migrated database, the workspaces and the tokens. */
struct su_world {
	char db[512];
	/* Extra sshds: conc[0..2] serve ws-c1..ws-c3 (ws-c0 is on th.sshd), cut serves ws-cut. */
	struct th_sshd conc[3];
	struct th_sshd cut;
	int closed_port; /* a loopback port nothing listens on (ws-closed) */
	/* Tokens as `token create` printed them. */
	char tok_ws[64];      /* workspace token of ws-a1 */
	char tok_org[64];     /* org acme */
	char tok_other[64];   /* org globex */
	char tok_admin[64];   /* admin */
	char tok_expired[64]; /* workspace token of ws-a1, expired */
	char tok_revoked[64]; /* org acme, revoked */
};

/* Workspaces (all on 127.0.0.1 as th.user, pinned to the right key unless said):
 *   ws-a1  acme   tier 3        ws-a2     acme    tier 4     ws-low   acme tier 2
 *   ws-stopped acme tier 3 stopped                           ws-b1    globex tier 3
 *   ws-badkey  acme, pinned to SU_WRONG_FP    ws-closed acme, a port nothing listens on
 *   ws-badauth acme, user "nobody" (sshd allows only th.user)
 *   ws-c0, ws-c1 acme and ws-c2, ws-c3 globex, each on its own sshd; ws-cut acme on w->cut */
int su_world_setup(struct su_world *w);

/* Runs the CLI on db with args (NULL-terminated); out (may be NULL) receives its stdout.
 * -1 unless it exits 0. */
int su_cli(const char *db, const char *const args[], char **out);
/* Runs sql on conninfo without Check: 0 or -1. */
int su_sql(const char *conninfo, const char *sql);

/* A broker process running `exec-broker --config conf serve`. */
struct su_broker {
	pid_t pid;  /* 0 when not running */
	int port;   /* chosen by su_broker_start unless set before */
	int status; /* wait status once it ended */
	char conf[160], log[160];
	char instance[64];
};

/* Writes the config (database, listen on port, ssh_key = th.client_key, instance_name,
 * then extra_conf verbatim, which may be NULL), starts the broker with stderr and stdout
 * appended to b->log, and waits for "msg=listening" in the log. A port already in b->port
 * is kept (a restart on the same address); otherwise a free one is chosen. The broker is
 * killed when the process that started it dies. */
int su_broker_start(struct su_broker *b, const char *db, const char *instance,
                    const char *extra_conf);
/* Waits up to ms for the broker to exit: 0 and b->status, or -1 if it still runs. */
int su_broker_wait(struct su_broker *b, int ms);
/* SIGTERM, and waits (SU_WAIT_MS) for an exit with status 0 (which, in an ASan build, also
 * means LeakSanitizer found nothing): 0, or -1 with the log's tail on stderr (and then
 * SIGKILL). For main(), after the tests. */
int su_broker_stop(struct su_broker *b);
/* SIGKILL and wait. Nothing if it does not run. */
void su_broker_kill(struct su_broker *b);

/* The whole file, NUL-terminated, malloc'd; NULL if it cannot be read. */
char *su_file_read(const char *path, size_t *len);

/* One HTTP request. Unset fields take the defaults. */
struct su_req {
	const char *method; /* "POST" when NULL */
	const char *path;   /* or, for an exec, ws: */
	const char *ws;     /* path becomes /v1/workspaces/<ws>/exec */
	const char *token;  /* Authorization: Bearer <token> */
	const char *auth;   /* the raw Authorization value instead (token then unused) */
	const char *body;   /* NULL: no body */
	size_t body_len;    /* 0: strlen(body) */
	const char *ctype; /* Content-Type; NULL: application/json when there is a body; "": none */
	const char *accept; /* Accept; NULL: none */
	const char *reason; /* X-Break-Glass-Reason */
	const char
	    *rid; /* X-Request-Id; NULL: a fresh unique one (kept in su_resp.rid); "": none */
	const char *headers[6]; /* more raw "Name: value" lines */
	int max_time_s;         /* curl --max-time; 0: 90 */
};

struct su_resp {
	int status;      /* 0 when no response came */
	int curl_status; /* curl's wait status */
	char *head;      /* the final header block (1xx ones skipped) */
	char *body;      /* NUL-terminated; body_len excludes the NUL */
	size_t body_len;
	char rid[80]; /* the X-Request-Id sent, "" if none */
};

/* A request whose response is read as it arrives. */
struct su_stream {
	pid_t pid; /* curl, 0 once reaped */
	int fd;    /* curl's stdout */
	char *buf;
	size_t len, cap;
	bool head_done, eof;
	struct su_resp r; /* status and head once the head arrived; body grows as read */
	size_t consumed;  /* body bytes handed out as lines */
	char bodyfile[80];
};

/* Starts curl for q against 127.0.0.1:port. */
int su_stream_open(struct su_stream *s, int port, const struct su_req *q);
/* Waits up to ms for the status line and headers: 0, or -1 (timeout, or the stream ended
 * without them; s->r.status is then 0). */
int su_stream_head(struct su_stream *s, int ms);
/* The next body line without its '\n' (malloc'd), or NULL when the body ended (s->eof) or
 * nothing came for ms. */
char *su_stream_line(struct su_stream *s, int ms);
/* Reads to the end, reaps curl and moves the response into *r (s is then empty). */
int su_stream_finish(struct su_stream *s, struct su_resp *r);
/* Kills curl (the connection drops), reaps it and frees everything. */
void su_stream_abort(struct su_stream *s);

/* A whole request: su_stream_open + su_stream_finish. */
int su_http(int port, const struct su_req *q, struct su_resp *r);
/* n requests at once through one `curl --parallel` (method, path or ws, token, body,
 * accept, rid and max_time_s are used); r[i] receives the response to q[i]. */
int su_http_parallel(int port, const struct su_req *q, size_t n, struct su_resp *r);
/* A raw HTTP/1.1 exec request (q->ws, token, body, accept, reason, rid) on a socket whose
 * receive buffer is rcvbuf bytes (0: the default), for a client that reads slowly or not at
 * all; rid receives the request id sent. Returns the socket, or -1. */
int su_raw_open(int port, int rcvbuf, const struct su_req *q, char rid[80]);
/* Reads one response from a raw socket until it is complete (by Content-Length or the last
 * chunk) or nothing arrives for idle_ms or the peer closes: r gets the status, the head and
 * the body (de-chunked when complete, else what came). 0 when complete, -1 otherwise. */
int su_raw_read(int fd, int idle_ms, struct su_resp *r);
void su_resp_free(struct su_resp *r);
/* The value of header name (case-insensitive) in r->head, copied into buf; NULL if absent. */
const char *su_header(const struct su_resp *r, const char *name, char *buf, size_t len);

/* NDJSON frames of a streamed exec. */
struct su_frames {
	json_t *all;              /* array of every frame (objects), in order */
	char *out, *err;          /* the decoded stdout and stderr bytes, NUL-terminated */
	size_t out_len, err_len;  /* their lengths */
	size_t out_cap, err_cap;  /* their allocations */
	int out_trunc, err_trunc; /* "truncated" frames per stream */
	int b64;                  /* output frames with "encoding":"base64" */
	int terminal;             /* frames with "exit_code" or "error" */
	int terminal_at;          /* index of the last such frame, -1 if none */
	int bad;                  /* lines that are not JSON objects, or bad base64 */
	char bad_line[300];       /* the first of them, and why */
};

void su_frames_init(struct su_frames *f);
/* Adds one line (without '\n'). */
void su_frames_add(struct su_frames *f, const char *line);
/* Every line of body. */
void su_frames_parse(struct su_frames *f, const char *body, size_t len);
void su_frames_free(struct su_frames *f);
json_t *su_frame(const struct su_frames *f, size_t i); /* borrowed; NULL past the end */
size_t su_nframes(const struct su_frames *f);

/* Base64 (standard alphabet, padded): malloc'd, NUL-terminated; decode returns NULL on
 * malformed input. */
char *su_b64_encode(const void *p, size_t n);
char *su_b64_decode(const char *s, size_t *n);

/* sh -c SU_SLEEPER <pidfile>: the command and a child write their pids to the file (at
 * once, when complete), print "ready" and sleep 300 s. */
#define SU_SLEEPER                                                                                 \
	"echo $$ >\"$0.tmp\"; sleep 300 & echo $! >>\"$0.tmp\"; mv \"$0.tmp\" \"$0\"; echo "       \
	"ready; "                                                                                  \
	"wait"

bool su_file_exists(const char *path);
/* A path under /tmp that th.user can create and this process can read, removed now if a
 * run left it: /tmp/eb-serve-<pid>-<name>. malloc'd. */
char *su_tmp_path(const char *name);
/* Whether pid is a live process (not a zombie). */
bool su_pid_alive(pid_t pid);
/* The pid written in file path (0 if none yet). */
pid_t su_pid_from_file(const char *path);
/* A loopback port nothing listens on right now. */
int su_free_port(void);
/* Monotonic milliseconds. */
long long su_now_ms(void);
void su_sleep_ms(int ms);

/* --- for tests (Check) ----------------------------------------------------------------- */

/* su_http, failing the test if curl cannot be run. */
void sv_http(int port, const struct su_req *q, struct su_resp *r);
/* tu_query() on a connection kept for the test process. */
char *sv_query(const char *db, const char *sql);
/* Rows of exec_audit with this request_id. */
long long sv_rows(const char *db, const char *rid);
/* expr (SQL over the columns of exec_audit) of the one row with this request_id; fails the
 * test unless there is exactly one. malloc'd; "<null>" for NULL. */
char *sv_row(const char *db, const char *rid, const char *expr);
/* Waits (SU_WAIT_MS) until that row is no longer 'running'; returns its status. */
char *sv_row_final(const char *db, const char *rid);
/* The body as a JSON object (fails the test if it is not one). json_decref it. */
json_t *sv_json(const struct su_resp *r);
/* The string member path ("error.code", "workspace_id") of o, or NULL. */
const char *sv_str(json_t *o, const char *path);
/* An error response: status, a JSON body {"error":{"code"...}} with code (not checked for
 * 413, whose body libevent 2.1 writes), and the audit: with row_status NULL no row and no
 * X-Exec-Id header; else exactly one row with that status whose exec_id is in X-Exec-Id,
 * and error_code equal to row_error ("*": any non-NULL, NULL: not checked). */
void sv_error(const char *db, const struct su_resp *r, int status, const char *code,
              const char *row_status, const char *row_error);
/* A complete streamed exec: 200, NDJSON, every line a JSON object, the first frame
 * exec_id/workspace_id/timeout_s (exec_id also in X-Exec-Id), output frames, and exactly
 * one last frame, last. Fills f (su_frames_free it). */
void sv_stream(const struct su_resp *r, struct su_frames *f);
/* The last frame of f (borrowed). */
json_t *sv_last(const struct su_frames *f);
/* Integer member of o, failing the test if it is absent or not an integer. */
long long sv_int(json_t *o, const char *key);
/* Waits (SU_WAIT_MS) until pid is gone; fails the test naming what if it still lives. */
void sv_pid_gone(pid_t pid, const char *what);
/* Waits (SU_WAIT_MS) until file path holds a pid, and returns it. */
pid_t sv_pid_wait(const char *path);
/* Creates an empty file (a gate a waiting command looks for). */
void sv_touch(const char *path);
/* Waits for SU_SLEEPER's pid file and reads both pids. */
void sv_read_pids(const char *path, pid_t pids[2]);
/* Reads stream lines into f until pred(f, arg) holds; fails after SU_WAIT_MS. */
void sv_stream_until(struct su_stream *s, struct su_frames *f,
                     bool (*pred)(const struct su_frames *f, const void *arg), const void *arg,
                     const char *what);
/* pred for sv_stream_until: stdout so far contains the string arg. */
bool sv_out_has(const struct su_frames *f, const void *arg);
/* A JSON request body {"argv":[...]} plus the members of extra (may be NULL, stolen). */
char *sv_body(const char *const argv[], json_t *extra);
/* The value of a metric line "name{labels} value" in a /metrics text, -1 if absent. */
double sv_metric(const char *text, const char *series);
/* The "msg=request" line of request rid in a broker's log (waits for it), malloc'd. */
char *sv_log_request(const char *log, const char *rid);
/* GET /metrics of the broker on port, as text. */
char *sv_metrics(int port);

/* Reads s until SU_SLEEPER has printed "ready", then reads both its pids from pidf. */
void sv_wait_sleeper(struct su_stream *s, const char *pidf, pid_t pids[2]);

/* One Check test case per test, so that CK_RUN_CASE=<test name> runs one alone. */
#define SU_ADD_LOOP(s, fn, n, timeout_s)                                                           \
	do {                                                                                       \
		TCase *tc_ = tcase_create(#fn);                                                    \
		tcase_set_timeout(tc_, (timeout_s));                                               \
		tcase_add_loop_test(tc_, fn, 0, (int)(n));                                         \
		suite_add_tcase(s, tc_);                                                           \
	} while (0)

#endif
