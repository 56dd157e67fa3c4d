/* api/exec_reply.h: how an exec's output and outcome reach its client: a chunked NDJSON
 * stream (first frame, output frames with the cap, exactly one last frame) with
 * backpressure on the command, or one buffered JSON document, or an API error when it
 * never started. */
#ifndef EB_API_EXEC_REPLY_H
#define EB_API_EXEC_REPLY_H

#include <stdbool.h>
#include <jansson.h>
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

/* A command that ran and did not exit (timeout, transport error...): its error code and
 * message as a last frame says them. */
const char *exec_reply_outcome_error(const struct exec_job *j, const char **message);
/* The output kept for a buffered reply, as the document gives it, set in o: stdout and
 * stderr (UTF-8 text, or both base64), encoding, and the truncated flags. */
void exec_reply_output_fields(struct exec_job *j, json_t *o);

/* Whether a Content-Type value is type (parameters allowed). */
bool exec_media_type_is(const char *value, const char *type);
/* Whether an Accept header asks for one JSON document rather than NDJSON. */
bool exec_wants_buffered(const char *accept);

#endif
