/* tests/check_http.c: the broker's HTTP/1.1 layer end to end, over raw sockets against the
 * real binary: whatever arrives, every refusal is the API's JSON error with a stable code,
 * ambiguous framing (the raw material of request smuggling) is refused, nothing refused
 * reaches a handler or the audit log, and keep-alive, pipelining, 100-continue, HEAD and
 * HTTP/1.0 behave as HTTP/1.1 says. */
#include <check.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define EXEC_PATH "/v1/workspaces/ws-a1/exec"

static struct kit_world W;
static struct kit_broker B; /* max_body_bytes 4096, http_idle_timeout_s 2 */

/* A request head that would be an exec if its framing were sound; %s is the rest. */
#define EXEC_HEAD(rid) "POST " EXEC_PATH " HTTP/1.1\r\nHost: b\r\nX-Request-Id: " rid "\r\n"

static const struct {
	const char *name, *raw;
	int status;
	const char *code;
} refusals[] = {
    {"body over max_body_bytes by its Content-Length",
     EXEC_HEAD("h-413cl") "Content-Type: application/json\r\nContent-Length: 9999\r\n\r\n{\"a\"",
     413, "payload_too_large"},
    {"chunked body past max_body_bytes",
     EXEC_HEAD("h-413ch") "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "1000\r\n%4096s\r\n1000\r\n%4096s\r\n0\r\n\r\n",
     413, "payload_too_large"},
    {"unknown method", "FROB / HTTP/1.1\r\nHost: b\r\nX-Request-Id: h-501\r\n\r\n", 501,
     "not_implemented"},
    {"not HTTP at all", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400,
     "malformed_request"},
    {"bare LF", "GET /healthz HTTP/1.1\nHost: b\n\n", 400, "malformed_request"},
    {"two different Content-Length",
     EXEC_HEAD("h-2cl") "Content-Length: 17\r\nContent-Length: 18\r\n\r\n", 400,
     "malformed_request"},
    {"Content-Length: +17", EXEC_HEAD("h-plus") "Content-Length: +17\r\n\r\n", 400,
     "malformed_request"},
    {"Content-Length with trailing space", EXEC_HEAD("h-sp") "Content-Length: 17 \r\n\r\n", 400,
     "malformed_request"},
    {"Content-Length and Transfer-Encoding",
     EXEC_HEAD("h-clte") "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "malformed_request"},
    {"a transfer coding other than chunked",
     EXEC_HEAD("h-gzip") "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, "not_implemented"},
    {"a folded header line", EXEC_HEAD("h-fold") "X-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
     400, "malformed_request"},
    {"space before a header's colon", EXEC_HEAD("h-colon") "Content-Length : 2\r\n\r\n{}", 400,
     "malformed_request"},
    {"no Host in HTTP/1.1", "GET /healthz HTTP/1.1\r\n\r\n", 400, "malformed_request"},
    {"HTTP/2.0", "GET /healthz HTTP/2.0\r\nHost: b\r\n\r\n", 505, "http_version_not_supported"},
    {"Expect other than 100-continue",
     EXEC_HEAD("h-417") "Expect: x-fast\r\nContent-Length: 2\r\n\r\n{}", 417, "expectation_failed"},
};

/* refusals[i].raw with its %4096s fillers made. */
static char *raw_of(int i)
{
	const char *t = refusals[i].raw;
	char *out = malloc(strlen(t) + 2 * 4096 + 1), *o = out;

	ck_assert_ptr_nonnull(out);
	for (const char *p = t; *p != '\0';) {
		if (strncmp(p, "%4096s", 6) == 0) {
			memset(o, 'x', 4096);
			o += 4096;
			p += 6;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* Sends raw on a fresh connection and reads everything until the broker closes it. */
static char *exchange(const char *raw, size_t len, size_t *outlen)
{
	struct kit_conn c;
	struct kit_req q = {.raw = raw, .raw_len = len, .max_time_s = 20};
	char *out = NULL;

	kit_conn_init(&c, B.port);
	ck_assert_int_eq(kit_conn_send(&c, &q), 0);
	ck_assert_msg(kit_conn_read_to_close(&c, 20000, &out, outlen) == 0,
	              "the broker kept the connection open after a refusal");
	kit_conn_free(&c);
	return out;
}

/* The status of a raw response, its body (after the empty line) and one header's value. */
static int status_of(const char *resp)
{
	int status = 0;

	ck_assert_msg(sscanf(resp, "HTTP/1.%*1[01] %d ", &status) == 1, "not a response: %.200s",
	              resp);
	return status;
}

static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");

	ck_assert_ptr_nonnull(b);
	return b + 4;
}

static bool has_header(const char *resp, const char *line)
{
	const char *end = strstr(resp, "\r\n\r\n");
	const char *p = strstr(resp, line);

	return p != NULL && end != NULL && p < end;
}

START_TEST(every_refusal_is_json_and_closes)
{
	size_t len;
	char *raw = raw_of(_i), *resp = exchange(raw, strlen(raw), &len);
	json_t *o = json_loads(body_of(resp), 0, NULL);
	const char *code = json_string_value(json_object_get(json_object_get(o, "error"), "code"));
	char *rid = strstr(raw, "X-Request-Id: ");

	ck_assert_msg(status_of(resp) == refusals[_i].status, "%s: %.300s", refusals[_i].name,
	              resp);
	ck_assert_msg(o != NULL, "%s: the body is not JSON: %s", refusals[_i].name, body_of(resp));
	ck_assert_msg(code != NULL && strcmp(code, refusals[_i].code) == 0, "%s: code %s",
	              refusals[_i].name, code ? code : "(none)");
	ck_assert(has_header(resp, "\r\nContent-Type: application/json\r\n"));
	ck_assert(has_header(resp, "\r\nConnection: close\r\n"));
	/* Behind a balancer, even a refusal says which broker gave it. */
	ck_assert(has_header(resp, "\r\nX-Exec-Broker-Instance: eb-http\r\n"));
	/* Nothing refused reached the exec handler: no audit row under its request id. */
	if (rid != NULL) {
		char id[40];

		ck_assert_int_eq(sscanf(rid, "X-Request-Id: %39[^\r]", id), 1);
		ck_assert_int_eq(sv_rows(W.db, id), 0);
	}
	json_decref(o);
	free(resp);
	free(raw);
}
END_TEST

/* Every reply names the broker that gave it, and so does the request's log line. */
START_TEST(every_reply_names_its_broker)
{
	static const char *const paths[] = {"/healthz", "/v1/nowhere", "/v1/audit"};
	char value[64], *line;
	struct kit_resp r;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		sv_http(B.port,
		        &(struct kit_req){.method = "GET", .path = paths[i], .rid = "h-inst"}, &r);
		ck_assert_msg(kit_header(&r, "X-Exec-Broker-Instance", value, sizeof(value)) !=
		                  NULL,
		              "%s: %d without the header", paths[i], r.status);
		ck_assert_str_eq(value, "eb-http");
		kit_resp_free(&r);
	}
	line = sv_log_request(B.log, "h-inst");
	ck_assert_msg(strstr(line, "instance=eb-http") != NULL, "%s", line);
	free(line);
}
END_TEST

/* Health checks and scrapes that succeed are logged at debug level only (a balancer's
 * checks every second would bury the requests); the next request is logged as ever. */
START_TEST(successful_probes_are_not_logged_at_info)
{
	static const char *const probes[] = {"/healthz", "/readyz", "/metrics"};
	char *line, *log;
	struct kit_resp r;

	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		sv_http(B.port, &(struct kit_req){.method = "GET", .path = probes[i], .rid = "h-probe"},
		        &r);
		ck_assert_int_eq(r.status, 200);
		kit_resp_free(&r);
	}
	sv_http(B.port, &(struct kit_req){.method = "GET", .path = "/v1/nowhere", .rid = "h-after"},
	        &r);
	kit_resp_free(&r);
	line = sv_log_request(B.log, "h-after"); /* logged after the probes' would have been */
	free(line);
	log = kit_file_read(B.log, NULL);
	ck_assert_ptr_nonnull(log);
	ck_assert_msg(strstr(log, "request_id=h-probe") == NULL, "a probe was logged at info");
	free(log);
}
END_TEST

/* A request begun and not finished within http_idle_timeout_s is told so, in JSON. */
START_TEST(a_request_that_stalls_is_408)
{
	static const char raw[] =
	    "POST /v1/audit HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\n{\"a";
	size_t len;
	char *resp = exchange(raw, sizeof(raw) - 1, &len);
	json_t *o = json_loads(body_of(resp), 0, NULL);

	ck_assert_int_eq(status_of(resp), 408);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "code")),
	                 "request_timeout");
	json_decref(o);
	free(resp);
}
END_TEST

/* Two requests in one write: two answers, in order, on the one connection. */
START_TEST(pipelined_requests_are_answered_in_order)
{
	static const char raw[] = "GET /healthz HTTP/1.1\r\nHost: b\r\nX-Request-Id: first\r\n\r\n"
	                          "GET /nowhere HTTP/1.1\r\nHost: b\r\nX-Request-Id: second\r\n"
	                          "Connection: close\r\n\r\n";
	size_t len;
	char *resp = exchange(raw, sizeof(raw) - 1, &len);
	char *second = strstr(resp + 1, "HTTP/1.1 ");

	ck_assert_int_eq(status_of(resp), 200);
	ck_assert(has_header(resp, "\r\nX-Request-Id: first\r\n"));
	ck_assert_msg(!has_header(resp, "\r\nConnection: close\r\n"), "%s", resp);
	ck_assert_ptr_nonnull(second);
	ck_assert_int_eq(status_of(second), 404);
	ck_assert(has_header(second, "\r\nX-Request-Id: second\r\n"));
	free(resp);
}
END_TEST

/* Expect: 100-continue gets its interim answer before the body is sent, then the answer. */
START_TEST(expect_100_continue_is_answered)
{
	static const char head[] = "POST /v1/audit HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n"
	                           "Expect: 100-continue\r\nConnection: close\r\n\r\n";
	struct kit_conn c;
	struct kit_req q = {.raw = head, .raw_len = sizeof(head) - 1, .max_time_s = 20};
	char buf[256], *out = NULL;
	size_t got = 0, len;
	long long end = kit_now_ms() + 5000;

	kit_conn_init(&c, B.port);
	ck_assert_int_eq(kit_conn_send(&c, &q), 0);
	/* Nothing but the interim answer comes before the body. */
	while (got < 25 && kit_now_ms() < end) {
		struct pollfd pf = {.fd = c.fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		n = recv(c.fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	ck_assert_msg(got == 25 && strcmp(buf, "HTTP/1.1 100 Continue\r\n\r\n") == 0, "%s", buf);
	/* The body, on the same connection. */
	ck_assert_int_eq(write(c.fd, "{}", 2), 2);
	ck_assert_int_eq(kit_conn_read_to_close(&c, 20000, &out, &len), 0);
	ck_assert_msg(status_of(out) == 405, "%s", out);
	free(out);
	kit_conn_free(&c);
}
END_TEST

/* HEAD: the length a GET would have, no body; the connection serves on. */
START_TEST(head_has_a_length_and_no_body)
{
	static const char raw[] = "HEAD /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
	                          "GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
	size_t len;
	char *resp = exchange(raw, sizeof(raw) - 1, &len);
	const char *second = body_of(resp);

	ck_assert_int_eq(status_of(resp), 200);
	ck_assert(has_header(resp, "\r\nContent-Length: 15\r\n"));
	ck_assert_msg(strncmp(second, "HTTP/1.1 200 ", 13) == 0, "a body after HEAD: %s", second);
	ck_assert_str_eq(body_of(second), "{\"status\":\"ok\"}");
	free(resp);
}
END_TEST

/* An HTTP/1.0 client gets its stream without chunks, ended by the connection's close. */
START_TEST(http_1_0_streams_end_with_the_connection)
{
	char *body = sv_body((const char *const[]){"echo", "one-oh", NULL}, NULL), raw[1024];
	struct kit_frames f;
	size_t len;
	char *resp;
	int n;

	n = snprintf(raw, sizeof(raw),
	             "POST " EXEC_PATH " HTTP/1.0\r\nAuthorization: Bearer %s\r\n"
	             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	             W.tok_org, strlen(body), body);
	resp = exchange(raw, (size_t)n, &len);
	ck_assert_int_eq(status_of(resp), 200);
	ck_assert(has_header(resp, "\r\nConnection: close\r\n"));
	ck_assert(!has_header(resp, "Transfer-Encoding"));
	kit_frames_init(&f);
	kit_frames_parse(&f, body_of(resp), strlen(body_of(resp)));
	ck_assert_int_eq(f.bad, 0);
	ck_assert_str_eq(f.out, "one-oh\n");
	ck_assert_int_eq(f.terminal, 1);
	kit_frames_free(&f);
	free(resp);
	free(body);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("http");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, "eb-http",
	                     "max_body_bytes = 4096\nhttp_idle_timeout_s = 2\n") != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	SV_ADD_LOOP(s, every_refusal_is_json_and_closes, sizeof(refusals) / sizeof(refusals[0]),
	            60);
	SV_ADD_LOOP(s, every_reply_names_its_broker, 1, 60);
	SV_ADD_LOOP(s, successful_probes_are_not_logged_at_info, 1, 60);
	SV_ADD_LOOP(s, a_request_that_stalls_is_408, 1, 60);
	SV_ADD_LOOP(s, pipelined_requests_are_answered_in_order, 1, 60);
	SV_ADD_LOOP(s, expect_100_continue_is_answered, 1, 60);
	SV_ADD_LOOP(s, head_has_a_length_and_no_body, 1, 60);
	SV_ADD_LOOP(s, http_1_0_streams_end_with_the_connection, 1, 60);
	failed = tu_run_suite(s);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
