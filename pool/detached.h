/* pool/detached.h: what a detached exec is on its workspace host, and how a broker talks
 * to it. Everything here is a POSIX sh script run over an ordinary exec channel, and the
 * pure reader of what those scripts print; nothing here holds state in the broker.
 *
 * On the host, a detached exec is a directory, ~/.exec-broker/execs/EXEC_ID (mode 0700),
 * and one small supervisor shell (its own session) that:
 *   - runs the command in a session and process group of its own (util-linux setsid), with
 *     stdin from a file, its stdout and stderr into two FIFOs;
 *   - copies each stream into chunk files o.N / e.N of DETACHED_CHUNK(cap) bytes: chunk N
 *     holds bytes [N*chunk, (N+1)*chunk) of its stream, so offsets count from the true start
 *     whatever was dropped; once a stream has more than cap/chunk chunks the oldest goes;
 *   - ends the group at the deadline (TERM, KILL grace_s later) with no broker involved;
 *   - takes "s SIG" (signal the group) and "c" (cancel: TERM, grace, KILL) lines on the
 *     FIFO ctl;
 *   - writes the outcome to status when the command has exited and both streams ended,
 *     then removes the directory retain_s seconds later.
 * A process that left the group (a session of its own) and keeps an output stream open
 * does not hold the exec past its deadline: 2 s after the KILL it ends with what was read.
 * The status line: KIND VALUE STDOUT_BYTES STDERR_BYTES DURATION_MS, KIND one of exited
 * (VALUE the exit code), signaled (VALUE the signal's name), timeout, cancelled (VALUE -).
 * POSIX sh reports a death by signal N as status 128+N, so a command that itself exits
 * with 129-192 reads as signaled; the README says so. */
#ifndef EB_POOL_DETACHED_H
#define EB_POOL_DETACHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/command.h"

/* The line the launcher's channel prints once the command runs: the tag, its group id. */
/* How long a start may take (a session, the launcher, the supervisor): until then a row
 * whose host knows nothing of it is still starting, not lost. */
#define DETACHED_START_MS 60000
#define DETACHED_STARTED_TAG "exec-broker-detached "

/* Chunks are a sixteenth of the cap, so the newest 15/16 to 16/16 of it are kept. */
#define DETACHED_CHUNKS 16
static inline long long detached_chunk(long long cap)
{
	return cap / DETACHED_CHUNKS;
}

struct detached_start {
	const char *exec_id; /* the directory's name: a UUID */
	long long timeout_ms;
	int grace_s;
	long long cap; /* exec_detached_output_cap_bytes */
	int retain_s;
};

/* The launcher: a command_spec argv (in *argv, 11 strings held in *store, malloc'd) that
 * makes the directory, stores the command body (body_len bytes, the first thing on its
 * stdin; command_build_body) and the rest of stdin, starts the supervisor and prints
 * DETACHED_STARTED_TAG PGID once the command runs. Its exit status says what failed
 * (detached_launch_error). 0 or EB_ERR_NOMEM. */
#define DETACHED_LAUNCH_ARGC 11
int detached_launch_argv(const struct detached_start *s, size_t body_len,
                         struct eb_bytes argv[DETACHED_LAUNCH_ARGC], char **store);
/* A person's words for the launcher's exit status (NULL if it is none of its own). */
const char *detached_launch_error(int status);

enum detached_read_mode {
	DETACHED_STAT,   /* the outcome if any, and what is retained */
	DETACHED_READ,   /* output from the offsets to what exists now */
	DETACHED_FOLLOW, /* output from the offsets until the exec ends */
};

/* A reader of the directory of exec_id: a command_spec argv (DETACHED_READ_ARGC strings in
 * *store). wait_s > 0 (DETACHED_STAT only): first wait until the exec ends or wait_s pass.
 * It prints records (struct detached_rec) and nothing else. */
#define DETACHED_READ_ARGC 10
int detached_read_argv(const char *exec_id, enum detached_read_mode m, uint64_t stdout_off,
                       uint64_t stderr_off, long long cap, int wait_s,
                       struct eb_bytes argv[DETACHED_READ_ARGC], char **store);

/* Sends a line to the supervisor: "s SIG" (sig non-NULL) or "c" (cancel). Its exit status:
 * 0 sent, DETACHED_SIGNAL_ENDED the exec has ended (or its directory is gone),
 * DETACHED_SIGNAL_LOST no supervisor is left. */
#define DETACHED_SIGNAL_ARGC  6
#define DETACHED_SIGNAL_ENDED 3
#define DETACHED_SIGNAL_LOST  4
int detached_signal_argv(const char *exec_id, const char *sig,
                         struct eb_bytes argv[DETACHED_SIGNAL_ARGC], char **store);
/* 1 if name is one of the signals the API may send (HUP INT QUIT KILL USR1 USR2 TERM CONT
 * STOP). */
int detached_signal_valid(const char *name);

/* What a reader prints, record by record. */
enum detached_rec_kind {
	DREC_DATA,    /* stream, offset, len bytes at data */
	DREC_SKIPPED, /* stream, offset: len bytes from there are no longer kept */
	DREC_KEPT,    /* stream: the first byte still kept is at offset, the end at len */
	DREC_STATUS,  /* the exec ended: the outcome */
	DREC_RUNNING, /* it still runs (after a read, or a stat) */
	DREC_GONE,    /* no outcome will come: its supervisor died without one */
	DREC_ABSENT,  /* no directory: not made yet (a start under way), or removed */
};

enum detached_status_kind { DST_EXITED, DST_SIGNALED, DST_TIMEOUT, DST_CANCELLED };

struct detached_status {
	enum detached_status_kind kind;
	int exit_code;   /* DST_EXITED */
	char signal[16]; /* DST_SIGNALED */
	uint64_t stdout_bytes, stderr_bytes;
	long long duration_ms;
};

struct detached_rec {
	enum detached_rec_kind kind;
	int stream; /* 1 stdout, 2 stderr (enum pool_stream) */
	uint64_t offset, len;
	const char *data; /* DREC_DATA: valid during the callback */
	struct detached_status status;
};

/* Reads a reader's output incrementally: bytes as they arrive, records to cb. A data record
 * may come in pieces (several DREC_DATA with consecutive offsets). */
struct detached_parser {
	char line[160];
	size_t llen;
	uint64_t left; /* data bytes still to come in the current record */
	int stream;
	uint64_t offset;
	bool failed;
};
typedef void (*detached_rec_cb)(const struct detached_rec *r, void *arg);
/* 0, or EB_ERR_INVAL once the input is not what a reader prints (and from then on). */
int detached_parse(struct detached_parser *p, const char *buf, size_t len, detached_rec_cb cb,
                   void *arg);
/* Parses a status line (after "x "): 0 or EB_ERR_INVAL. */
int detached_status_parse(const char *line, struct detached_status *st);
/* The audit status of an outcome: "exited", "signaled", "timeout", "cancelled". */
const char *detached_status_name(enum detached_status_kind k);

#endif
