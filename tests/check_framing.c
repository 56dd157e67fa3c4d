/* tests/check_framing.c: the broker's strict reading of request heads, from a table of raw
 * heads and what each must give: accepted (with its body framing), or the status and API
 * code of the refusal. Ambiguous framing (the raw material of request smuggling) is
 * refused. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "http/framing.h"
#include "tests/runner.h"

#define H        "Host: b\r\n"
#define MAX_BODY 1000

static const struct {
	const char *head;
	int status;       /* 0: accepted */
	const char *code; /* the refusal's code */
	enum framing_body body;
	unsigned long long length;
} cases[] = {
    {"GET / HTTP/1.1\r\n" H "\r\n", 0, NULL, FRAMING_BODY_NONE, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17\r\n\r\n", 0, NULL, FRAMING_BODY_LENGTH, 17},
    {"POST /x HTTP/1.1\r\n" H "content-length:17\r\n\r\n", 0, NULL, FRAMING_BODY_LENGTH, 17},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 0, NULL, FRAMING_BODY_NONE, 0},
    {"POST /x HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 0, NULL, FRAMING_BODY_CHUNKED,
     0},
    {"POST /x HTTP/1.1\r\n" H "Transfer-Encoding: Chunked\r\n\r\n", 0, NULL, FRAMING_BODY_CHUNKED,
     0},
    {"GET / HTTP/1.0\r\n\r\n", 0, NULL, FRAMING_BODY_NONE, 0},
    {"\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n", 0, NULL, FRAMING_BODY_NONE, 0},
    /* Ambiguous bodies. */
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17\r\nContent-Length: 18\r\n\r\n", 400,
     "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17\r\nContent-Length: 17\r\n\r\n", 400,
     "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: +17\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17 \r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17,17\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 0x11\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length : 17\r\n\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 17\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, "not_implemented", 0,
     0},
    {"POST /x HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     501, "not_implemented", 0, 0},
    {"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "malformed_request", 0, 0},
    /* http-parser reads no body after a CONNECT's head: its body would be another request. */
    {"CONNECT b:443 HTTP/1.1\r\n" H "Content-Length: 3\r\n\r\n", 400, "malformed_request", 0, 0},
    {"CONNECT b:443 HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 400, "malformed_request",
     0, 0},
    {"CONNECT b:443 HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 0, NULL, FRAMING_BODY_NONE, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 413,
     "payload_too_large", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Content-Length: 1001\r\n\r\n", 413, "payload_too_large", 0, 0},
    /* Lines and fields. */
    {"GET / HTTP/1.1\n" H "\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H "X: a\rb\r\n\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H "X: a\x01"
     "b\r\n\r\n",
     400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H "no colon here\r\n\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H ": empty name\r\n\r\n", 400, "malformed_request", 0, 0},
    {" GET / HTTP/1.1\r\n" H "\r\n", 400, "malformed_request", 0, 0},
    {"GET  / HTTP/1.1\r\n" H "\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1 x\r\n" H "\r\n", 400, "malformed_request", 0, 0},
    {"GET /\r\n" H "\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/2.0\r\n" H "\r\n", 505, "http_version_not_supported", 0, 0},
    {"GET / HTTP/1.2\r\n" H "\r\n", 505, "http_version_not_supported", 0, 0},
    {"FOO / HTTP/1.1\r\n" H "\r\n", 501, "not_implemented", 0, 0},
    {"get / HTTP/1.1\r\n" H "\r\n", 501, "not_implemented", 0, 0},
    {"GET / HTTP/1.1\r\n\r\n", 400, "malformed_request", 0, 0},
    {"GET / HTTP/1.1\r\n" H H "\r\n", 400, "malformed_request", 0, 0},
    {"POST /x HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", 0, NULL,
     FRAMING_BODY_LENGTH, 5},
    {"POST /x HTTP/1.1\r\n" H "Expect: something\r\nContent-Length: 5\r\n\r\n", 417,
     "expectation_failed", 0, 0},
};

/* Scans the head in two pieces (to see that scanning resumes), then parses and checks. */
static int read_head(const char *raw, struct framing_head *h, char *buf, struct framing_error *e)
{
	size_t len = strlen(raw), head_len = 0, cut = len / 2;
	struct framing_scan s;
	int rc;

	framing_scan_init(&s);
	rc = framing_scan(&s, raw, cut, &head_len, e);
	if (rc < 0)
		return -1;
	if (rc == 0)
		rc = framing_scan(&s, raw, len, &head_len, e);
	if (rc < 0)
		return -1;
	ck_assert_int_eq(rc, 1);
	ck_assert_uint_eq(s.skip + head_len, len);
	memcpy(buf, raw + s.skip, head_len);
	if (framing_parse_head(buf, head_len, h, e) != 0)
		return -1;
	return framing_check(h, MAX_BODY, e);
}

START_TEST(heads_give_the_right_answer)
{
	struct framing_head h;
	struct framing_error e = {0};
	char buf[4096];
	int rc = read_head(cases[_i].head, &h, buf, &e);

	if (cases[_i].status == 0) {
		ck_assert_msg(rc == 0, "case %d refused: %d %s", _i, e.status, e.message);
		ck_assert_int_eq(h.body, cases[_i].body);
		ck_assert_uint_eq(h.length, cases[_i].length);
		return;
	}
	ck_assert_msg(rc != 0, "case %d accepted", _i);
	ck_assert_int_eq(e.status, cases[_i].status);
	ck_assert_str_eq(e.code, cases[_i].code);
	ck_assert_uint_gt(strlen(e.message), 10);
}
END_TEST

START_TEST(fields_and_request_line_are_read)
{
	static const char raw[] = "POST /v1/x?a=1 HTTP/1.1\r\nHost: b\r\nX-Two:  a b \t\r\n"
	                          "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n";
	struct framing_head h;
	struct framing_error e;
	char buf[512];

	ck_assert_int_eq(read_head(raw, &h, buf, &e), 0);
	ck_assert_int_eq(h.verb, HTTP_VERB_POST);
	ck_assert_str_eq(h.target, "/v1/x?a=1");
	ck_assert_int_eq(h.minor, 1);
	ck_assert_str_eq(framing_field(&h, "x-two"), "a b");
	ck_assert(h.expect_continue);
	ck_assert(h.keep_alive);
}
END_TEST

START_TEST(connection_close_and_http_1_0)
{
	struct framing_head h;
	struct framing_error e;
	char buf[512];

	ck_assert_int_eq(
	    read_head("GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", &h, buf, &e), 0);
	ck_assert(!h.keep_alive);
	ck_assert_int_eq(read_head("GET / HTTP/1.0\r\n\r\n", &h, buf, &e), 0);
	ck_assert(!h.keep_alive);
	ck_assert_int_eq(read_head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, buf, &e),
	                 0);
	ck_assert(h.keep_alive);
}
END_TEST

START_TEST(too_long_heads_are_refused_while_they_arrive)
{
	static char big[FRAMING_MAX_HEAD + 64];
	struct framing_scan s;
	struct framing_error e;
	size_t head_len;

	/* A request line that never ends: 414 once it passes the limit. */
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', sizeof(big) - 5);
	framing_scan_init(&s);
	ck_assert_int_eq(framing_scan(&s, big, sizeof(big), &head_len, &e), -1);
	ck_assert_int_eq(e.status, 414);
	/* Fields that never end: 431. */
	memcpy(big, "GET / HTTP/1.1\r\n", 16);
	for (size_t i = 16; i + 8 < sizeof(big); i += 8)
		memcpy(big + i, "X: 123\r\n", 8);
	framing_scan_init(&s);
	ck_assert_int_eq(framing_scan(&s, big, sizeof(big), &head_len, &e), -1);
	ck_assert_int_eq(e.status, 431);
	/* Endless empty lines count too. */
	for (size_t i = 0; i + 2 <= sizeof(big); i += 2)
		memcpy(big + i, "\r\n", 2);
	framing_scan_init(&s);
	ck_assert_int_eq(framing_scan(&s, big, sizeof(big), &head_len, &e), -1);
	/* A CR at the end waits for its LF. */
	framing_scan_init(&s);
	ck_assert_int_eq(framing_scan(&s, "GET / HTTP/1.1\r", 15, &head_len, &e), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("framing");
	TCase *tc = tcase_create("framing");

	tcase_add_loop_test(tc, heads_give_the_right_answer, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, fields_and_request_line_are_read);
	tcase_add_test(tc, connection_close_and_http_1_0);
	tcase_add_test(tc, too_long_heads_are_refused_while_they_arrive);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
