/* api/metrics.h: the broker's counters and their Prometheus text exposition for GET
 * /metrics. Counting is plain increments on the loop thread; rendering is a pure function
 * of the counters and the pool's stats. */
#ifndef EB_API_METRICS_H
#define EB_API_METRICS_H

#include <stdint.h>

#include "pool/pool.h"

#define METRICS_DURATION_BUCKETS 12

struct metrics {
	uint64_t execs_total[7]; /* by enum pool_outcome_kind */
	uint64_t execs_denied;   /* refused before running (auth, tier, ...) */
	uint64_t duration_buckets[METRICS_DURATION_BUCKETS]; /* not cumulative */
	uint64_t duration_count;
	double duration_sum_s;
	uint64_t http_requests[600]; /* by status code */
	uint64_t audit_write_failures;
};

/* Upper bounds (seconds) of the duration histogram's buckets, +Inf aside. */
extern const double metrics_duration_bounds[METRICS_DURATION_BUCKETS];

void metrics_observe_duration(struct metrics *m, double seconds);
void metrics_count_http(struct metrics *m, int status);

/* The exposition text (malloc'd), beginning with exec_broker_info naming the broker
 * (instance) and its version. pool may be NULL (no pool figures then). */
char *metrics_render(const struct metrics *m, const struct pool_stats *pool,
                     const char *instance);

#endif
