/* client/detached.h: the pure core of the client's detached execs (exec --detach, ps,
 * logs, kill, wait): names and signals as the API takes them, the query strings, an exec's
 * outcome as an exit status, argv as ps shows it, and the frames of logs with the offsets
 * that let it resume without writing a byte twice. No I/O but the notes they return. */
#ifndef EB_CLIENT_DETACHED_H
#define EB_CLIENT_DETACHED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "client/common.h"

/* exec's names: 1-64 of [A-Za-z0-9._-]. */
bool detached_name_valid(const char *name);

/* The name the API takes for sig, given as kill(1) would ("9", "SIGKILL", "kill", "KILL" ->
 * "KILL"); NULL unless it is one of DETACHED_SIGNALS. */
const char *detached_signal_name(const char *sig);
#define DETACHED_SIGNALS "HUP INT QUIT KILL USR1 USR2 TERM CONT STOP"

/* "" or "?status=S&name=N" (either may be NULL), values percent-encoded. malloc'd; NULL if
 * out of memory. */
char *detached_query_list(const char *status, const char *name);
/* "?stdout_offset=A&stderr_offset=B&follow=true|false" into buf. */
void detached_query_output(char *buf, size_t len, const long long offset[2], bool follow);
/* "?wait_s=N" into buf. */
void detached_query_wait(char *buf, size_t len, int wait_s);

/* The exec_id of a Location header (/v1/execs/ID, after any path prefix); NULL if it has
 * none. Points into loc. */
const char *detached_id_from_location(const char *loc);

/* What detached_exit_of_exec returns while the exec runs. */
#define DETACHED_RUNNING (-1)
/* The exit status `exec` would have had for this exec object's outcome: the exit code,
 * 128+N for signal N, 124 for a timeout, 205 for transport_error, lost and abandoned, 206
 * for anything else; DETACHED_RUNNING while status is "running". For the outcomes that are
 * not an exit code or a known signal, *why says how it ended ("ended", "ended by a signal
 * unknown here"), for a line "CODE: exec ID WHY (status S)"; else it is NULL. */
int detached_exit_of_exec(json_t *exec, const char **why);

/* ps's EXIT column of an exec object into buf: its exit code, SIGNAME for a signal, "-"
 * while it runs or when it ended otherwise. Returns buf. */
const char *detached_exit_column(json_t *exec, char *buf, size_t len);

/* argv (a JSON array of strings) joined by spaces, each word shell-quoted when it needs it
 * ('...', or $'...' when it holds control characters), cut to at most max characters
 * (UTF-8) ending in "...". malloc'd; NULL if out of memory. */
char *detached_argv_display(json_t *argv, size_t max);

/* Where logs is in an exec's output, across its reconnects. */
struct detached_follow {
	bool follow;       /* follow=true: a "running" status frame is not the last */
	long long next[2]; /* stdout, stderr: the offset just past the last byte written */
	int nframes;       /* frames in the current reply (0 before each request) */
	bool progressed;   /* next[] advanced in the current reply */
};

enum detached_frame {
	DFRAME_OTHER,   /* nothing to do (a newer broker's frame, an unknown stream, ...) */
	DFRAME_FIRST,   /* the reply's first frame: {"exec_id",...,"timeout_s"?} */
	DFRAME_OUTPUT,  /* bytes to write */
	DFRAME_SKIPPED, /* bytes the host no longer kept */
	DFRAME_LAST,    /* the exec ended, or (without follow) still runs: the reply is all */
};

/* What to do for one frame. */
struct detached_step {
	enum detached_frame kind;
	int fd;                   /* DFRAME_OUTPUT and DFRAME_SKIPPED: 1 or 2 */
	struct client_output out; /* DFRAME_OUTPUT: the decoded bytes (client_output_free) */
	size_t skip;              /* DFRAME_OUTPUT: leading bytes written already */
	long long lost;           /* bytes of fd's stream that will never be written */
	json_t *timeout_s;        /* DFRAME_FIRST: borrowed from the frame */
};

/* Classifies frame f (a JSON object) of the current reply and moves f's offsets on. 0,
 * or EB_ERR_INVAL when f is malformed (an output frame without decodable data, a skipped
 * frame without its numbers), EB_ERR_NOMEM. */
int detached_follow_frame(struct detached_follow *d, json_t *f, struct detached_step *st);

/* Milliseconds to wait before reconnect attempt n (1, 2, ...): short, doubling, capped. */
int detached_backoff_ms(int attempt);

#endif
