/* tests/check_log.c: logfmt escaping: a value can never break the line or forge a key. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/runner.h"

static const struct {
	const char *value, *want;
} kvs[] = {
    {"plain-value_1.2:3/4@x", "k=plain-value_1.2:3/4@x"},
    {"", "k=\"\""},
    {NULL, "k=\"\""},
    {"two words", "k=\"two words\""},
    {"a=b", "k=\"a=b\""},
    {"say \"hi\"", "k=\"say \\\"hi\\\"\""},
    {"back\\slash", "k=\"back\\\\slash\""},
    {"line1\nlevel=error msg=forged", "k=\"line1\\nlevel=error msg=forged\""},
    {"cr\r\ttab", "k=\"cr\\r\\ttab\""},
    {"bell\x07 del\x7f", "k=\"bell\\x07 del\\x7f\""},
    {"caf\xc3\xa9", "k=\"caf\xc3\xa9\""},
};

START_TEST(values_are_quoted_and_escaped)
{
	char buf[256];
	size_t n = log_append_kv(buf, 0, sizeof(buf), "k", kvs[_i].value);

	ck_assert_str_eq(buf, kvs[_i].want);
	ck_assert_uint_eq(n, strlen(kvs[_i].want));
	ck_assert_ptr_null(strchr(buf, '\n'));
}
END_TEST

START_TEST(lines_have_time_level_message_and_pairs)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	log_set_stream(f);
	log_set_level(LOG_INFO);
	log_kv(LOG_DEBUG, "hidden", "a", "1", NULL);
	log_kv(LOG_INFO, "exec finished", "request_id", "r-1", "status", "200", NULL);
	log_set_stream(NULL);
	fclose(f);
	ck_assert_ptr_null(strstr(out, "hidden"));
	ck_assert_ptr_nonnull(strstr(out, " level=info msg=\"exec finished\" request_id=r-1 "
	                                  "status=200\n"));
	ck_assert_int_eq(strncmp(out, "ts=20", 5), 0);
	ck_assert_int_eq(log_level_parse("warn"), LOG_WARN);
	ck_assert_int_eq(log_level_parse("verbose"), -1);
	free(out);
}
END_TEST

START_TEST(pairs_without_a_value_are_left_out)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	log_set_stream(f);
	log_set_level(LOG_INFO);
	log_kv(LOG_INFO, "request", "status", "404", "exec_id", (const char *)NULL, "error",
	       "not_found", NULL);
	log_set_stream(NULL);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(out, " msg=request status=404 error=not_found\n"));
	ck_assert_ptr_null(strstr(out, "exec_id"));
	free(out);
}
END_TEST

/* A broker names itself on every line, quoted like any value; unset, no line has it. */
START_TEST(every_line_ends_with_the_instance_once_set)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	log_set_stream(f);
	log_set_level(LOG_INFO);
	log_kv(LOG_INFO, "before", NULL);
	log_set_instance("broker 1");
	log_kv(LOG_INFO, "stopping", "execs", "2", NULL);
	log_kv(LOG_WARN, "request", "status", "500", NULL);
	log_set_instance(NULL);
	log_kv(LOG_INFO, "after", NULL);
	log_set_stream(NULL);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(out, " msg=before\n"));
	ck_assert_ptr_nonnull(strstr(out, " msg=stopping execs=2 instance=\"broker 1\"\n"));
	ck_assert_ptr_nonnull(strstr(out, " msg=request status=500 instance=\"broker 1\"\n"));
	ck_assert_ptr_nonnull(strstr(out, " msg=after\n"));
	free(out);
}
END_TEST

START_TEST(long_values_are_cut_not_overflowed)
{
	char buf[32], big[100];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_append_kv(buf, 0, sizeof(buf), "k", big);
	ck_assert_uint_eq(strlen(buf), sizeof(buf) - 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_loop_test(tc, values_are_quoted_and_escaped, 0, sizeof(kvs) / sizeof(kvs[0]));
	tcase_add_test(tc, lines_have_time_level_message_and_pairs);
	tcase_add_test(tc, long_values_are_cut_not_overflowed);
	tcase_add_test(tc, pairs_without_a_value_are_left_out);
	tcase_add_test(tc, every_line_ends_with_the_instance_once_set);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
