/* tests/check_labels.c: label keys, values and the --label argument, from tables. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/labels.h"
#include "tests/runner.h"

#define S63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct {
	const char *s;
	size_t len; /* 0: strlen(s) */
	bool valid;
} keys[] = {
    {"a", 0, true},
    {"0", 0, true},
    {"team.eu-west_1/role", 0, true},
    {"a-", 0, true},
    {S63, 0, true},
    {S63 "a", 0, false}, /* 64 */
    {"", 0, false},
    {"A", 0, false},
    {"appName", 0, false},
    {"-a", 0, false},
    {".a", 0, false},
    {"_a", 0, false},
    {"/a", 0, false},
    {"a b", 0, false},
    {"a=b", 0, false},
    {"a:b", 0, false},
    {"caf\xc3\xa9", 0, false},
    {"a\0b", 3, false}, /* a JSON string may hold NUL */
};

START_TEST(keys_have_the_format)
{
	size_t len = keys[_i].len ? keys[_i].len : strlen(keys[_i].s);

	ck_assert_msg(labels_key_valid(keys[_i].s, len) == keys[_i].valid, "key \"%s\": %s",
	              keys[_i].s, keys[_i].valid ? "refused" : "accepted");
}
END_TEST

static const struct {
	const char *s;
	size_t len;
	bool valid;
} values[] = {
    {"", 0, true},
    {"prod", 0, true},
    {"Prod-1.2_x", 0, true},
    {"-", 0, true},
    {S63, 0, true},
    {S63 "a", 0, false},
    {"a/b", 0, false}, /* '/' is for keys only */
    {"a b", 0, false},
    {"a=b", 0, false},
    {"a,b", 0, false},
    {"\"", 0, false},
    {"caf\xc3\xa9", 0, false},
    {"a\0b", 3, false},
};

START_TEST(values_have_the_format)
{
	size_t len = values[_i].len ? values[_i].len : strlen(values[_i].s);

	ck_assert_msg(labels_value_valid(values[_i].s, len) == values[_i].valid, "value \"%s\": %s",
	              values[_i].s, values[_i].valid ? "refused" : "accepted");
}
END_TEST

static const struct {
	const char *arg;
	int rc;
	const char *key, *value; /* when rc == 0 */
	bool remove;
	const char *says; /* when rc != 0: a substring of err */
} args[] = {
    {"env=prod", 0, "env", "prod", false, NULL},
    {"env=", 0, "env", "", false, NULL},
    {"env-", 0, "env", "", true, NULL},
    {"a--", 0, "a-", "", true, NULL},
    {"a-b=c-", 0, "a-b", "c-", false, NULL},
    {"k8s.io/zone=eu-1", 0, "k8s.io/zone", "eu-1", false, NULL},
    {S63 "=" S63, 0, S63, S63, false, NULL},
    {"env", EB_ERR_INVAL, NULL, NULL, false, "neither KEY=VALUE"},
    {"", EB_ERR_INVAL, NULL, NULL, false, "neither KEY=VALUE"},
    {"=prod", EB_ERR_INVAL, NULL, NULL, false, "label key \"\" is invalid"},
    {"-", EB_ERR_INVAL, NULL, NULL, false, "label key \"\" is invalid"},
    {"Env=prod", EB_ERR_INVAL, NULL, NULL, false, "label key \"Env\" is invalid"},
    {S63 "a=x", EB_ERR_INVAL, NULL, NULL, false, "1-63 lower-case"},
    {"env=a/b", EB_ERR_INVAL, NULL, NULL, false, "value \"a/b\" of key \"env\""},
    {"env=a=b", EB_ERR_INVAL, NULL, NULL, false, "value \"a=b\""},
    {"env=" S63 "a", EB_ERR_INVAL, NULL, NULL, false, "at most 63"},
};

START_TEST(arguments_set_or_remove)
{
	struct label_arg a;
	char err[256] = "";
	int rc = labels_parse_arg(args[_i].arg, &a, err, sizeof(err));

	ck_assert_msg(rc == args[_i].rc, "\"%s\": rc %d (%s)", args[_i].arg, rc, err);
	if (rc == 0) {
		ck_assert_str_eq(a.key, args[_i].key);
		ck_assert_str_eq(a.value, args[_i].value);
		ck_assert(a.remove == args[_i].remove);
	} else {
		ck_assert_msg(strstr(err, args[_i].says) != NULL, "\"%s\": \"%s\" lacks \"%s\"",
		              args[_i].arg, err, args[_i].says);
		ck_assert_str_eq(a.key, "");
		ck_assert(!a.remove);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("labels");
	TCase *tc = tcase_create("labels");

	tcase_add_loop_test(tc, keys_have_the_format, 0, sizeof(keys) / sizeof(keys[0]));
	tcase_add_loop_test(tc, values_have_the_format, 0, sizeof(values) / sizeof(values[0]));
	tcase_add_loop_test(tc, arguments_set_or_remove, 0, sizeof(args) / sizeof(args[0]));
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
