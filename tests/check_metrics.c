/* tests/check_metrics.c: the Prometheus exposition: names, labels, histogram buckets. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"
#include "tests/runner.h"

static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

START_TEST(counters_and_labels)
{
	struct metrics m = {0};
	struct pool_stats ps = {0};
	char *t;

	m.execs_total[POOL_EXITED] = 5;
	m.execs_total[POOL_TIMEOUT] = 2;
	m.execs_denied = 3;
	m.audit_write_failures = 1;
	metrics_count_http(&m, 200);
	metrics_count_http(&m, 200);
	metrics_count_http(&m, 404);
	metrics_count_http(&m, 700); /* ignored */
	ps.handshakes_total = 4;
	ps.sessions_idle = 2;
	ps.handshake_failures[POOL_FAIL_HOST_KEY] = 1;
	t = metrics_render(&m, &ps, "eb-1:127.0.0.1:8080");
	ck_assert(has_line(
	    t, "exec_broker_info{broker=\"eb-1:127.0.0.1:8080\",version=\"" EB_VERSION "\"} 1"));
	ck_assert(has_line(t, "exec_broker_execs_total{outcome=\"exited\"} 5"));
	ck_assert(has_line(t, "exec_broker_execs_total{outcome=\"timeout\"} 2"));
	ck_assert(has_line(t, "exec_broker_execs_total{outcome=\"denied\"} 3"));
	ck_assert(has_line(t, "exec_broker_http_requests_total{code=\"200\"} 2"));
	ck_assert(has_line(t, "exec_broker_http_requests_total{code=\"404\"} 1"));
	ck_assert(!strstr(t, "code=\"700\""));
	ck_assert(has_line(t, "exec_broker_audit_write_failures_total 1"));
	ck_assert(has_line(t, "exec_broker_ssh_handshakes_total 4"));
	ck_assert(has_line(t, "exec_broker_pool_sessions{state=\"idle\"} 2"));
	ck_assert(has_line(
	    t, "exec_broker_ssh_handshake_failures_total{reason=\"host_key_mismatch\"} 1"));
	ck_assert(has_line(t, "# TYPE exec_broker_execs_total counter"));
	ck_assert(t[strlen(t) - 1] == '\n');
	free(t);
}
END_TEST

START_TEST(histogram_is_cumulative)
{
	struct metrics m = {0};
	char *t;

	metrics_observe_duration(&m, 0.001);
	metrics_observe_duration(&m, 0.02);
	metrics_observe_duration(&m, 0.02);
	metrics_observe_duration(&m, 3);
	metrics_observe_duration(&m, 99);
	t = metrics_render(&m, NULL, "a\"b\\c");
	ck_assert(
	    has_line(t, "exec_broker_info{broker=\"a\\\"b\\\\c\",version=\"" EB_VERSION "\"} 1"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"0.005\"} 1"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"0.025\"} 3"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"2.5\"} 3"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"5\"} 4"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"30\"} 4"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_bucket{le=\"+Inf\"} 5"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_count 5"));
	ck_assert(has_line(t, "exec_broker_exec_duration_seconds_sum 102.041000"));
	ck_assert(!strstr(t, "exec_broker_ssh_handshakes_total"));
	free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_test(tc, counters_and_labels);
	tcase_add_test(tc, histogram_is_cumulative);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
