/* client/fanout.h: the pure core of a batch (exec on many workspaces, POST /v1/batches): its
 * streamed frames turned into the bytes to write, every line of a workspace's output whole
 * and prefixed by its id, so that lines of different workspaces never mix; the summary as a
 * table; the exit status; the answer to --all's question. No I/O: the caller writes what
 * fanout_frame leaves in out[]. */
#ifndef EB_CLIENT_FANOUT_H
#define EB_CLIENT_FANOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A line held longer than this is passed on cut, as lines of this many bytes. */
#define FANOUT_LINE_MAX 65536

/* A growable byte string. */
struct fanout_buf {
	char *p; /* malloc'd; NULL while empty */
	size_t len, cap;
};

/* One workspace of the batch. */
struct fanout_target {
	char *id;                  /* its workspace_id; malloc'd */
	struct fanout_buf part[2]; /* stdout, stderr: bytes after the last line passed on */
	bool truncated[2];         /* the broker's output cap cut the stream */
	bool ended;                /* its last frame came, or the batch ended */
};

/* The states of the reply, in order. */
enum fanout_state {
	FANOUT_FIRST,   /* the first frame {"batch_id","targets"} is awaited */
	FANOUT_TARGETS, /* output, exit and error frames of the targets */
	FANOUT_DONE,    /* the summary (or an error for the whole batch) came: nothing follows */
};

enum fanout_frame {
	FFRAME_OTHER,   /* nothing to do (a newer broker's frame, an unknown stream, ...) */
	FFRAME_FIRST,   /* the batch's id and targets */
	FFRAME_OUTPUT,  /* output of one target (lines, or a truncated mark) */
	FFRAME_END,     /* one target's exit or error frame */
	FFRAME_SUMMARY, /* the summary, the last frame: fo->last */
	FFRAME_ERROR,   /* {"error":{...}} for the whole batch, without a summary: fo->last */
};

struct fanout {
	enum fanout_state state;
	bool raw;                      /* --json: frames are only classified; nothing is rendered */
	size_t line_max;               /* FANOUT_LINE_MAX (tests make it small) */
	char batch_id[64];             /* from the first frame; "" before */
	struct fanout_target *targets; /* sorted by id */
	size_t ntargets, cap;
	/* The bytes for our stdout and stderr from the frames so far: the caller writes them
	 * and sets len to 0. */
	struct fanout_buf out[2];
	json_t *last; /* FANOUT_DONE: the summary or error frame; owned */
};

void fanout_init(struct fanout *fo, bool raw);
/* Takes frame f (a JSON object) of the reply: says in *kind what it was and appends to
 * out[] what it makes us write. A target's last frame passes on its unfinished lines, with
 * a newline added, and says on stderr if the broker's cap cut its output; so does the end
 * of the batch for every target still open. 0, or EB_ERR_INVAL when f is malformed (an
 * output frame without decodable data, a frame of a target without a workspace_id),
 * EB_ERR_NOMEM. */
int fanout_frame(struct fanout *fo, json_t *f, enum fanout_frame *kind);
/* For a reply that ended without its last frame: every open target as at its end. 0 or
 * EB_ERR_NOMEM. */
int fanout_flush(struct fanout *fo);
void fanout_free(struct fanout *fo);

/* A batch's exit status from its summary {"status","failed","not_started",...}: 0 when the
 * command exited 0 on every target (status "completed", no target failed or not started),
 * otherwise CLIENT_EXIT_BATCH. */
int fanout_exit_of_summary(json_t *summary);
/* The summary as a table, one row per result (WORKSPACE STATUS EXIT DURATION ERROR), then
 * one line "batch ID: STATUS, N succeeded, N failed, N not started". 0 or EB_ERR_NOMEM. */
int fanout_summary_print(json_t *summary, FILE *out);

/* Whether to ask before running: --all without --yes, on a terminal. Off a terminal (a
 * script, a pipe) nobody could answer, so it runs. */
bool fanout_must_ask(bool all, bool yes, bool on_terminal);
/* Whether a line typed in answer is a yes ("y", "yes", any case, blanks around). */
bool fanout_answer_yes(const char *answer);

#endif
