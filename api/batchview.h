/* api/batchview.h: a batch's summary as its client and GET /v1/batches/{id} show it: each
 * target's result and the counts and status they add up to. Pure: the running batch builds
 * it from what its targets told it, GET from the targets' audit rows. */
#ifndef EB_API_BATCHVIEW_H
#define EB_API_BATCHVIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One target's result. Strings are borrowed. */
struct batch_result {
	const char *workspace_id;
	const char *exec_id; /* NULL: it has no audit row */
	/* "succeeded" (exited 0), "failed", "not_started", "running", "pending" (a running
	 * batch has not started it yet) */
	const char *status;
	bool exited;
	int exit_code;
	const char *signal;                     /* NULL unless killed by one */
	long long duration_ms;                  /* -1: none */
	const char *error_code, *error_message; /* NULL when none */
	json_t *output; /* buffered: the fields of its output (borrowed), or NULL */
};

/* How many results are of each status ("pending" counts as running). */
struct batch_counts {
	size_t succeeded, failed, not_started, running;
};
struct batch_counts batchview_count(const struct batch_result *r, size_t n);

/* The batch's status: "cancelled" when its client left, "running" while a target runs or
 * waits, "stopped" when the error budget left targets unstarted, "completed" when none
 * failed, "failed" when none succeeded, else "partial_failure". */
const char *batchview_status(const struct batch_result *r, size_t n, bool cancelled);

/* {"batch_id","status","succeeded","failed","not_started","running","results":[...]}; NULL
 * when out of memory. */
json_t *batchview_summary(const char *batch_id, const char *status, const struct batch_result *r,
                          size_t n);

/* Records a batch's outcome in its row, once every target that was to start has started:
 * $1 batch_id, $2 status; a final status also sets the counts ($3 succeeded, $4 failed, $5
 * not_started; NULL while it runs) and its end. Only a running row changes. */
extern const char batchview_outcome_sql[];
#define BATCHVIEW_OUTCOME_NPARAMS 5
/* Its parameters for status and c; the numbers are written into nums. */
void batchview_outcome_params(const char *batch_id, const char *status,
                              const struct batch_counts *c, char nums[3][24],
                              const char *params[BATCHVIEW_OUTCOME_NPARAMS]);

/* Result of a target from its audit row (GET): row is {"workspace_id","exec_id","status",
 * "exit_code","signal","duration_ms","error_code"} as the lookup aggregates it; its strings
 * stay owned by row. */
void batchview_result_from_row(json_t *row, struct batch_result *out);

/* The message of a target's error code, for results read back from rows (which keep only
 * the code). */
const char *batchview_error_message(const char *code);

#endif
