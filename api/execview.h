/* api/execview.h: the pure parts of the exec resource (/v1/execs/{exec_id}, its output, its
 * signals, and a workspace's list): the exec object as JSON, built from an audit row and
 * what the host says of the exec's output, and the NDJSON frames of a replay. */
#ifndef EB_API_EXECVIEW_H
#define EB_API_EXECVIEW_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/frame.h"
#include "pool/detached.h"

/* What the host keeps of a detached exec's output. */
struct execs_output {
	bool known;              /* the host was asked and answered */
	bool retained;           /* the directory exists */
	uint64_t from[3], to[3]; /* per stream (1 stdout, 2 stderr): the bytes kept */
};

/* The exec object of row i of a result whose first columns are AUDIT_ITEM_COLUMNS:
 * exec_id, workspace_id, name, argv, detached, status, exit_code, signal, error_code,
 * started_at, finished_at, duration_ms, stdout_bytes, stderr_bytes, timeout_s, and
 * "output" (null for an attached exec: its output was never kept): whether it is retained,
 * the byte range kept of each stream when known, and expires_at (the end + retain_s).
 * admin_access (a JSON array, taken over; may be NULL) is added when it has entries. */
json_t *execs_object(const PGresult *res, int i, const struct execs_output *out, int retain_s,
                     json_t *admin_access);

/* The status of a detached exec's row once the host says it ended. */
const char *execs_status_of(const struct detached_status *st);

/* The NDJSON line of output bytes of stream s at offset (the offset of the first byte of the
 * frame, counting carried bytes), the frame's bytes carried over as frame_output does;
 * NULL when everything was carried. final flushes the carry. malloc'd. */
char *execs_output_frame(int s, struct utf8_carry *carry, uint64_t offset, const char *data,
                         size_t len, bool final);

#endif
