/* api/seal.h: linking the rows this broker finishes into the audit hash chain, off the
 * exec's critical path. A row is completed with seal_pending (audit_end_sql); its exec_id
 * then waits here (20 ms for the first, so that others join it), and one statement at a
 * time (audit_seal_sql) links every id waiting, in a batch: the chain head's lock and a
 * commit once per batch, not once per exec. A failure
 * keeps the ids for the next try; the broker stays open until the queue is empty or its
 * completion time (api.completions_until_ms) is over. Rows a broker never linked (it died)
 * are linked by any broker's janitor once they are SEAL_STALE_S old. */
#ifndef EB_API_SEAL_H
#define EB_API_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "audit/writer.h"

struct api;
struct event;
struct pgasync_query;

/* Pending rows older than this are any broker's to link. */
#define SEAL_STALE_S 30
/* Ids per statement. */
#define SEAL_BATCH 1000

struct seal_queue {
	char (*ids)[AUDIT_EXEC_ID_LEN + 1];
	size_t n, cap;
	size_t sending; /* the first this many are in the statement in flight */
	struct pgasync_query *q;
	struct event *retry;
	long delay_ms;
	bool held; /* holds the broker open (api_hold) */
	unsigned long long sealed, failures;
};

/* Queues exec_id (a row just completed with seal_pending) and sends what waits unless a
 * statement is in flight. */
void seal_add(struct api *a, const char *exec_id);
/* Gives up what waits (the process is going): nothing more is sent. */
void seal_free(struct api *a);

#endif
