/* api/metrics.c: counters and the Prometheus text format. */
#include "api/metrics.h"

#include <stdio.h>
#include <stdlib.h>

const double metrics_duration_bounds[METRICS_DURATION_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

void metrics_observe_duration(struct metrics *m, double seconds)
{
	for (int i = 0; i < METRICS_DURATION_BUCKETS; i++)
		if (seconds <= metrics_duration_bounds[i]) {
			m->duration_buckets[i]++;
			break;
		}
	m->duration_count++;
	m->duration_sum_s += seconds;
}

void metrics_count_http(struct metrics *m, int status)
{
	if (status >= 100 && status < 600)
		m->http_requests[status]++;
}

char *metrics_render(const struct metrics *m, const struct pool_stats *ps, const char *instance)
{
	static const enum pool_outcome_kind kinds[] = {
	    POOL_EXITED,          POOL_SIGNALED,        POOL_TIMEOUT, POOL_CANCELLED,
	    POOL_TRANSPORT_ERROR, POOL_FAILED_TO_START, POOL_SHUTDOWN};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	uint64_t cum = 0;

	if (f == NULL)
		return NULL;
	fprintf(f, "# HELP exec_broker_info The broker answering: its instance name and version.\n"
	           "# TYPE exec_broker_info gauge\n"
	           "exec_broker_info{broker=\"");
	/* A label value escapes \\, " and newlines. */
	for (const char *p = instance != NULL ? instance : ""; *p != '\0'; p++) {
		if (*p == '\\' || *p == '"')
			fputc('\\', f);
		if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	fprintf(f, "\",version=\"%s\"} 1\n", EB_VERSION);
	fprintf(f, "# HELP exec_broker_execs_total Execs by how they ended.\n"
	           "# TYPE exec_broker_execs_total counter\n");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		fprintf(f, "exec_broker_execs_total{outcome=\"%s\"} %llu\n",
		        pool_outcome_name(kinds[i]), (unsigned long long)m->execs_total[kinds[i]]);
	fprintf(f, "exec_broker_execs_total{outcome=\"denied\"} %llu\n",
	        (unsigned long long)m->execs_denied);

	fprintf(f, "# HELP exec_broker_exec_duration_seconds Time from request to last frame.\n"
	           "# TYPE exec_broker_exec_duration_seconds histogram\n");
	for (int i = 0; i < METRICS_DURATION_BUCKETS; i++) {
		cum += m->duration_buckets[i];
		fprintf(f, "exec_broker_exec_duration_seconds_bucket{le=\"%g\"} %llu\n",
		        metrics_duration_bounds[i], (unsigned long long)cum);
	}
	fprintf(f,
	        "exec_broker_exec_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	        "exec_broker_exec_duration_seconds_sum %.6f\n"
	        "exec_broker_exec_duration_seconds_count %llu\n",
	        (unsigned long long)m->duration_count, m->duration_sum_s,
	        (unsigned long long)m->duration_count);

	fprintf(f, "# HELP exec_broker_http_requests_total HTTP requests by status code.\n"
	           "# TYPE exec_broker_http_requests_total counter\n");
	for (int code = 100; code < 600; code++)
		if (m->http_requests[code] > 0)
			fprintf(f, "exec_broker_http_requests_total{code=\"%d\"} %llu\n", code,
			        (unsigned long long)m->http_requests[code]);

	fprintf(f,
	        "# HELP exec_broker_audit_write_failures_total Audit inserts or completions "
	        "that failed.\n"
	        "# TYPE exec_broker_audit_write_failures_total counter\n"
	        "exec_broker_audit_write_failures_total %llu\n",
	        (unsigned long long)m->audit_write_failures);

	if (ps != NULL) {
		fprintf(
		    f,
		    "# HELP exec_broker_ssh_handshakes_total SSH handshakes started.\n"
		    "# TYPE exec_broker_ssh_handshakes_total counter\n"
		    "exec_broker_ssh_handshakes_total %llu\n"
		    "# HELP exec_broker_pool_sessions SSH sessions by state.\n"
		    "# TYPE exec_broker_pool_sessions gauge\n"
		    "exec_broker_pool_sessions{state=\"connecting\"} %u\n"
		    "exec_broker_pool_sessions{state=\"busy\"} %u\n"
		    "exec_broker_pool_sessions{state=\"idle\"} %u\n"
		    "# HELP exec_broker_pool_channels_in_use Exec channels open.\n"
		    "# TYPE exec_broker_pool_channels_in_use gauge\n"
		    "exec_broker_pool_channels_in_use %u\n"
		    "# HELP exec_broker_pool_acquires_waiting Execs waiting for a session slot.\n"
		    "# TYPE exec_broker_pool_acquires_waiting gauge\n"
		    "exec_broker_pool_acquires_waiting %u\n",
		    (unsigned long long)ps->handshakes_total, ps->sessions_connecting,
		    ps->sessions_ready, ps->sessions_idle, ps->channels_in_use,
		    ps->acquires_waiting);
		fprintf(f, "# HELP exec_broker_ssh_handshake_failures_total Failed SSH "
		           "connections by reason.\n"
		           "# TYPE exec_broker_ssh_handshake_failures_total counter\n");
		for (int r = POOL_FAIL_CONNECT; r <= POOL_FAIL_AUTH; r++)
			fprintf(f, "exec_broker_ssh_handshake_failures_total{reason=\"%s\"} %llu\n",
			        pool_fail_reason_name((enum pool_fail_reason)r),
			        (unsigned long long)ps->handshake_failures[r]);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
