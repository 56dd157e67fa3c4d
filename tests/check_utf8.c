/* tests/check_utf8.c: cutting UTF-8 between characters and making any bytes UTF-8, from
 * tables. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "tests/runner.h"

static const struct {
	const char *s;
	size_t max, want;
} cuts[] = {
    {"abc", 2, 2},
    {"abc", 10, 3},
    {"\xc3\xa9\xc3\xa9", 3, 2}, /* é|é: not inside the second */
    {"\xc3\xa9\xc3\xa9", 4, 4},
    {"a\xe2\x82\xac", 3, 1},     /* a€ cut inside the euro sign */
    {"\xf0\x9f\x98\x80x", 4, 4}, /* an emoji, whole */
    {"\xf0\x9f\x98\x80x", 2, 0},
    {"", 5, 0},
};

START_TEST(cut_between_characters)
{
	ck_assert_uint_eq(utf8_cut(cuts[_i].s, strlen(cuts[_i].s), cuts[_i].max), cuts[_i].want);
}
END_TEST

static const struct {
	const char *in;
	size_t len;
	const char *want;
} sanitized[] = {
    {"plain", 5, "plain"},
    {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
    {"caf\xc3", 4, "caf\xef\xbf\xbd"},
    {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"a\0b", 3,
     "a\xef\xbf\xbd"
     "b"},
    {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
    {"", 0, ""},
};

START_TEST(sanitize_replaces_what_is_not_utf8)
{
	char *out = utf8_sanitize(sanitized[_i].in, sanitized[_i].len);
	bool incomplete;

	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, sanitized[_i].want);
	ck_assert_uint_eq(utf8_valid_prefix((const unsigned char *)out, strlen(out), &incomplete),
	                  strlen(out));
	free(out);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("utf8");
	TCase *tc = tcase_create("utf8");

	tcase_add_loop_test(tc, cut_between_characters, 0, sizeof(cuts) / sizeof(cuts[0]));
	tcase_add_loop_test(tc, sanitize_replaces_what_is_not_utf8, 0,
	                    sizeof(sanitized) / sizeof(sanitized[0]));
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
