/* tests/check_apierr.c: error codes and statuses, error bodies. */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/apierr.h"
#include "tests/runner.h"

START_TEST(every_code_has_its_status)
{
	static const struct {
		const char *code;
		int status;
	} want[] = {{"invalid_json", 400},       {"unauthorized", 401},
	            {"forbidden_tier", 403},     {"break_glass_reason_required", 403},
	            {"missing_scope", 403},      {"not_found", 404},
	            {"method_not_allowed", 405}, {"workspace_not_running", 409},
	            {"payload_too_large", 413},  {"unsupported_media_type", 415},
	            {"too_many_requests", 429},  {"host_key_mismatch", 502},
	            {"shutdown", 502},           {"shutting_down", 503},
	            {"pool_exhausted", 503},     {"audit_unavailable", 503},
	            {"exec_timeout", 504},       {"malformed_request", 400},
	            {"request_timeout", 408},    {"uri_too_long", 414},
	            {"expectation_failed", 417}, {"headers_too_large", 431},
	            {"not_implemented", 501},    {"http_version_not_supported", 505}};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_int_eq(apierr_status(want[i].code), want[i].status);
	for (; apierr_code(n) != NULL; n++)
		ck_assert_msg(apierr_known(apierr_code(n)), "%s", apierr_code(n));
	ck_assert_uint_eq(n, 32); /* 25 of the API, 7 of the HTTP layer's own refusals */
	ck_assert_int_eq(apierr_status("no_such_code"), 500);
}
END_TEST

START_TEST(error_body_shape)
{
	char *b = apierr_body("invalid_request", "argv must be \"an array\"", "argv");
	json_t *o = json_loads(b, 0, NULL);

	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
	                 "invalid_request");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
	                 "argv must be \"an array\"");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "field")),
	                 "argv");
	ck_assert_uint_eq(json_object_size(o), 1);
	json_decref(o);
	free(b);
	b = apierr_body("not_found", "no such workspace", NULL);
	ck_assert_ptr_null(strstr(b, "field"));
	free(b);
}
END_TEST

/* Whatever bytes a message or field holds (a client's field name cut anywhere), the body is
 * JSON with the code: invalid UTF-8 becomes U+FFFD. */
START_TEST(error_body_of_any_bytes)
{
	static const char *const texts[] = {"caf\xc3", "\xff\xfe", "a\xc3\xa9\xc3", "\xed\xa0\x80",
	                                    "ok"};
	char *b = apierr_body("invalid_request", texts[_i], texts[_i]);
	json_t *o = b != NULL ? json_loads(b, 0, NULL) : NULL;
	json_t *err = json_object_get(o, "error");

	ck_assert_msg(o != NULL, "not JSON: %s", b != NULL ? b : "(null)");
	ck_assert_str_eq(json_string_value(json_object_get(err, "code")), "invalid_request");
	ck_assert_ptr_nonnull(json_string_value(json_object_get(err, "message")));
	ck_assert_ptr_nonnull(json_string_value(json_object_get(err, "field")));
	if (_i == 0)
		ck_assert_str_eq(json_string_value(json_object_get(err, "message")),
		                 "caf\xef\xbf\xbd");
	json_decref(o);
	free(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("apierr");
	TCase *tc = tcase_create("apierr");

	tcase_add_test(tc, every_code_has_its_status);
	tcase_add_test(tc, error_body_shape);
	tcase_add_loop_test(tc, error_body_of_any_bytes, 0, 5);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
