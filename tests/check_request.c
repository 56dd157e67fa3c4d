/* tests/check_request.c: validation of the exec request body, from a table of bodies and
 * what each must give: the accepted request, or the error code and field. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec_request.h"
#include "common/err.h"
#include "common/utf8.h"
#include "tests/runner.h"

static const struct request_limits lim = {
    .timeout_default_s = 30, .timeout_max_s = 120, .stdin_max = 1024};

static const struct {
	const char *body;
	const char *code;  /* NULL: accepted */
	const char *field; /* the field named, or the substring the message must hold */
	const char *says;
} cases[] = {
    {"{\"argv\": [\"ls\", \"-l\", \"/srv/app\"]}", NULL, NULL, NULL},
    {"{\"argv\": [\"true\"], \"timeout_s\": 0}", NULL, NULL, NULL},
    {"", "invalid_json", "", "not valid JSON"},
    {"{\"argv\": [\"ls\"", "invalid_json", "", "not valid JSON"},
    {"{\"argv\": [\"a\"], \"argv\": [\"b\"]}", "invalid_json", "", "duplicate"},
    {"[\"ls\"]", "invalid_request", "", "JSON object"},
    {"{}", "invalid_request", "argv", "required"},
    {"{\"argv\": \"rm -rf /\"}", "invalid_request", "argv", "never adds a shell"},
    {"{\"argv\": []}", "invalid_request", "argv", "1 to 256"},
    {"{\"argv\": [\"\"]}", "invalid_request", "argv[0]", "name the program"},
    {"{\"argv\": [\"ls\", 3]}", "invalid_request", "argv[1]", "must be a string"},
    {"{\"argv\": [\"ls\", \"a\\u0000b\"]}", "invalid_request", "argv[1]", "NUL"},
    {"{\"argv\": [\"ls\"], \"cmd\": \"ls\"}", "invalid_request", "cmd", "\"argv\""},
    {"{\"argv\": [\"ls\"], \"verbose\": true}", "invalid_request", "verbose", "unknown field"},
    {"{\"argv\": [\"ls\"], \"timeout_s\": -1}", "invalid_request", "timeout_s", "negative"},
    {"{\"argv\": [\"ls\"], \"timeout_s\": 1.5}", "invalid_request", "timeout_s", "whole"},
    {"{\"argv\": [\"ls\"], \"timeout_s\": \"30\"}", "invalid_request", "timeout_s", "whole"},
    {"{\"argv\": [\"ls\"], \"stdin\": \"x\", \"stdin_base64\": \"eA==\"}", "invalid_request",
     "stdin", "not both"},
    {"{\"argv\": [\"ls\"], \"stdin\": 5}", "invalid_request", "stdin", "string"},
    {"{\"argv\": [\"ls\"], \"stdin_base64\": \"eA=\"}", "invalid_request", "stdin_base64",
     "base64"},
    {"{\"argv\": [\"ls\"], \"stdin_base64\": \"e-A_\"}", "invalid_request", "stdin_base64",
     "base64"},
    {"{\"argv\": [\"ls\"], \"env\": [\"A=1\"]}", "invalid_request", "env", "object"},
    {"{\"argv\": [\"ls\"], \"env\": {\"1A\": \"x\"}}", "invalid_request", "env.1A", "names"},
    {"{\"argv\": [\"ls\"], \"env\": {\"A-B\": \"x\"}}", "invalid_request", "env.A-B", "names"},
    {"{\"argv\": [\"ls\"], \"env\": {\"A\": 1}}", "invalid_request", "env.A", "string"},
    {"{\"argv\": [\"ls\"], \"env\": {\"A\": \"x\\u0000\"}}", "invalid_request", "env.A", "NUL"},
    {"{\"argv\": [\"ls\"], \"cwd\": \"srv\"}", "invalid_request", "cwd", "absolute"},
    {"{\"argv\": [\"ls\"], \"cwd\": 7}", "invalid_request", "cwd", "string"},
};

START_TEST(bodies_give_the_right_answer)
{
	struct exec_request req;
	struct request_error e;
	const char *b = cases[_i].body;
	int rc = request_parse(b, strlen(b), &lim, &req, &e);

	if (cases[_i].code == NULL) {
		ck_assert_msg(rc == 0, "case %d refused: %s %s: %s", _i, e.code, e.field,
		              e.message);
		request_free(&req);
		return;
	}
	ck_assert_msg(rc == EB_ERR_INVAL, "case %d accepted: %s", _i, b);
	ck_assert_str_eq(e.code, cases[_i].code);
	ck_assert_str_eq(e.field, cases[_i].field);
	ck_assert_msg(strstr(e.message, cases[_i].says) != NULL, "case %d: \"%s\" lacks \"%s\"", _i,
	              e.message, cases[_i].says);
	ck_assert_ptr_null(req.root); /* nothing kept of a refused body */
	ck_assert_ptr_null(req.stdin_data);
}
END_TEST

START_TEST(accepted_request_carries_every_field)
{
	const char *b = "{\"argv\": [\"sh\", \"-c\", \"echo $A\", \"caf\\u00e9\"], "
	                "\"timeout_s\": 45, \"stdin_base64\": \"AP8K\", "
	                "\"env\": {\"A\": \"x y\", \"LANG\": \"C\"}, \"cwd\": \"/srv\"}";
	struct exec_request req;
	struct request_error e;

	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), 0);
	ck_assert_uint_eq(req.argc, 4);
	ck_assert_uint_eq(req.argv[3].len, 5);
	ck_assert_int_eq(memcmp(req.argv[3].p, "caf\xc3\xa9", 5), 0);
	ck_assert_int_eq(req.timeout_s, 45);
	ck_assert_int_eq(req.timeout_clamped, 0);
	ck_assert_uint_eq(req.stdin_len, 3);
	ck_assert_int_eq(memcmp(req.stdin_data, "\x00\xff\n", 3), 0);
	ck_assert_uint_eq(req.nenv, 2);
	ck_assert_int_eq(strncmp(req.env_names[0].p, "A", req.env_names[0].len), 0);
	ck_assert_int_eq(memcmp(req.env_values[0].p, "x y", 3), 0);
	ck_assert_str_eq(req.cwd, "/srv");
	request_free(&req);
}
END_TEST

START_TEST(timeout_defaults_and_clamps)
{
	static const struct {
		const char *body;
		int timeout, clamped;
	} t[] = {{"{\"argv\": [\"x\"]}", 30, 0},
	         {"{\"argv\": [\"x\"], \"timeout_s\": 0}", 30, 0},
	         {"{\"argv\": [\"x\"], \"timeout_s\": null}", 30, 0},
	         {"{\"argv\": [\"x\"], \"timeout_s\": 120}", 120, 0},
	         {"{\"argv\": [\"x\"], \"timeout_s\": 121}", 120, 1},
	         {"{\"argv\": [\"x\"], \"timeout_s\": 99999999999}", 120, 1}};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct exec_request req;
		struct request_error e;
		ck_assert_int_eq(request_parse(t[i].body, strlen(t[i].body), &lim, &req, &e), 0);
		ck_assert_int_eq(req.timeout_s, t[i].timeout);
		ck_assert_int_eq(req.timeout_clamped, t[i].clamped);
		request_free(&req);
	}
}
END_TEST

START_TEST(limits_on_sizes)
{
	struct exec_request req;
	struct request_error e;
	char *b = malloc(2 << 20);
	size_t n;

	/* 257 elements */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\"");
	for (int i = 0; i < 256; i++)
		n += (size_t)sprintf(b + n, ", \"a\"");
	strcpy(b + n, "]}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "argv");
	/* One element the host's kernel would refuse (MAX_ARG_STRLEN), named. */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\", \"");
	memset(b + n, 'a', REQ_MAX_ARG_STRLEN);
	n += REQ_MAX_ARG_STRLEN;
	strcpy(b + n, "\"]}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "argv[1]");
	ck_assert_ptr_nonnull(strstr(e.message, "131071"));
	/* One byte less is a valid request. */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\", \"");
	memset(b + n, 'a', REQ_MAX_ARG_STRLEN - 1);
	n += REQ_MAX_ARG_STRLEN - 1;
	strcpy(b + n, "\"]}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), 0);
	request_free(&req);
	/* Nine elements of 120 KiB: over the 1 MiB of argv and env in all. */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\"");
	for (int i = 0; i < 9; i++) {
		n += (size_t)sprintf(b + n, ", \"");
		memset(b + n, 'a', 120 * 1024);
		n += 120 * 1024;
		b[n++] = '"';
	}
	strcpy(b + n, "]}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "argv");
	ck_assert_ptr_nonnull(strstr(e.message, "at most 1048576"));
	/* An env variable the kernel would refuse, and argv and env together too large. */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\"], \"env\": {\"V\": \"");
	memset(b + n, 'a', REQ_MAX_ARG_STRLEN);
	n += REQ_MAX_ARG_STRLEN;
	strcpy(b + n, "\"}}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "env.V");
	n = (size_t)sprintf(b, "{\"argv\": [\"x\"");
	for (int i = 0; i < 5; i++) {
		n += (size_t)sprintf(b + n, ", \"");
		memset(b + n, 'a', 120 * 1024);
		n += 120 * 1024;
		b[n++] = '"';
	}
	n += (size_t)sprintf(b + n, "], \"env\": {");
	for (int i = 0; i < 4; i++) {
		n += (size_t)sprintf(b + n, "%s\"V%d\": \"", i ? ", " : "", i);
		memset(b + n, 'a', 120 * 1024);
		n += 120 * 1024;
		b[n++] = '"';
	}
	strcpy(b + n, "}}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "env");
	/* stdin over the limit */
	n = (size_t)sprintf(b, "{\"argv\": [\"x\"], \"stdin\": \"");
	memset(b + n, 'a', 1025);
	strcpy(b + n + 1025, "\"}");
	ck_assert_int_eq(request_parse(b, strlen(b), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.field, "stdin");
	free(b);
}
END_TEST

/* A field name of multibyte characters longer than what an error names: the field and the
 * message are cut at a character boundary, so they stay UTF-8 (JSON text). */
START_TEST(long_multibyte_names_are_cut_between_characters)
{
	static const char *const before[] = {"{\"argv\": [\"ls\"], \"a",
	                                     "{\"argv\": [\"ls\"], \"env\": {\"a"};
	static const char *const after[] = {"\": 1}", "\": \"x\"}}"};
	char name[200] = "", body[300];
	struct exec_request req;
	struct request_error e;
	bool incomplete;

	for (int i = 0; i < 40; i++)
		strcat(name, "\xc3\xa9"); /* é */
	snprintf(body, sizeof(body), "%s%s%s", before[_i], name, after[_i]);
	ck_assert_int_eq(request_parse(body, strlen(body), &lim, &req, &e), EB_ERR_INVAL);
	ck_assert_str_eq(e.code, "invalid_request");
	ck_assert_uint_gt(strlen(e.field), 0);
	ck_assert_uint_eq(
	    utf8_valid_prefix((const unsigned char *)e.field, strlen(e.field), &incomplete),
	    strlen(e.field));
	ck_assert_uint_eq(
	    utf8_valid_prefix((const unsigned char *)e.message, strlen(e.message), &incomplete),
	    strlen(e.message));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("request");
	TCase *tc = tcase_create("request");

	tcase_add_loop_test(tc, bodies_give_the_right_answer, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, accepted_request_carries_every_field);
	tcase_add_test(tc, timeout_defaults_and_clamps);
	tcase_add_test(tc, limits_on_sizes);
	tcase_add_loop_test(tc, long_multibyte_names_are_cut_between_characters, 0, 2);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
