/* api/exec_reply.h: how an exec's output and outcome reach its client: a chunked NDJSON
 * stream (first frame, output frames with the cap, exactly one last frame) with
 * backpressure on the command, or one buffered JSON document, or an API error when it
 * never started. */
#ifndef EB_API_EXEC_REPLY_H
#define EB_API_EXEC_REPLY_H

#include <stddef.h>

#include "api/exec_job.h"

/* An API error reply; ends the request. */
void exec_reply_error(struct exec_job *j, const char *code, const char *message, const char *field);
/* The command started: a streamed reply begins with its first frame. */
void exec_reply_started(struct exec_job *j);
/* A detached exec started: 202, Location and the exec object. Ends the request. */
void exec_reply_detached(struct exec_job *j);
/* A chunk of output: a frame (streamed) or kept (buffered), up to output_cap_bytes. */
void exec_reply_output(struct exec_job *j, enum pool_stream s, const char *buf, size_t len);
/* The API code of an outcome told in a plain reply rather than a last frame. */
const char *exec_reply_code(const struct exec_job *j);
/* The last word: the last frame, the document, the error, or, for a client that left,
 * nothing. Ends the request. */
void exec_reply_final(struct exec_job *j);

#endif
