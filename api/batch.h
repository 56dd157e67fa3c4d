/* api/batch.h: POST /v1/batches, GET /v1/batches and GET /v1/batches/{id}: one command fanned
 * out to many workspaces. A batch resolves its targets once, in the statement that
 * authorizes it and writes its row, then runs each target as an ordinary exec job
 * (api/exec_job.h) with its own audit row, at most max_concurrency at once, starting no
 * new one once more than max_errors have failed. The targets' output and ends reach the
 * batch through the calls below (made by api/exec_reply.c), and the batch tells its client:
 * a stream of NDJSON frames, one buffered document, or (detached) 202 once every target
 * has started. */
#ifndef EB_API_BATCH_H
#define EB_API_BATCH_H

#include <stdbool.h>
#include <stddef.h>

struct batch;
struct exec_job;

/* A frame of target j (line: malloc'd, one NDJSON object ending in '\n', taken over): sent
 * with the target's workspace_id and exec_id put in front of its fields. */
void batch_target_frame(struct batch *b, struct exec_job *j, char *line, size_t len);
/* Buffered: of want bytes of output, how many the batch may still keep (it keeps at most
 * BATCH_KEPT_MAX in all); they are counted as kept. */
size_t batch_target_keep(struct batch *b, size_t want);
/* Target j ended. code NULL: the command ran to an exit or a signal (j->outcome);
 * otherwise the error (code, message) of a target that failed, never ran, or was refused.
 * The job must not be touched by the batch afterwards. */
void batch_target_ended(struct batch *b, struct exec_job *j, const char *code, const char *message);
/* A detached target started: it runs on its host, its row stays running. */
void batch_target_detached(struct batch *b, struct exec_job *j);

#endif
