/* tests/check_client_detached.c: the pure parts of the client's detached execs: the command
 * lines of ps, logs, kill and wait; names and signals as the API takes them; the query
 * strings; an exec's outcome as exit status; argv as ps shows it; the frames of logs with
 * their offsets, so that every byte is written once across reconnects; and the shared
 * decoding of output frames and API errors. */
#include <check.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/common.h"
#include "client/detached.h"
#include "client/detached_args.h"
#include "common/err.h"
#include "tests/runner.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *o = json_loads(text, JSON_ALLOW_NUL, &e);

	ck_assert_msg(o != NULL, "bad JSON in the test: %s: %s", text, e.text);
	return o;
}

/* --- command lines --------------------------------------------------------------------- */

static int parse(enum detached_cmd cmd, struct detached_args *a, const char *const args[])
{
	char *argv[32];
	int argc = 0;

	for (; args[argc] != NULL; argc++)
		argv[argc] = (char *)args[argc];
	argv[argc] = NULL;
	return detached_args_parse(cmd, argc, argv, a);
}

START_TEST(ps_takes_its_filters_and_the_common_options)
{
	struct detached_args a;
	const char *const args[] = {
	    "ps",    "--status",     "running",      "--name", "build-1",
	    "--url", "http://b:1/p", "--token-file", "tok",    "--break-glass-reason",
	    "INC-1", "ws-1",         "--json",       NULL};

	ck_assert_int_eq(parse(DETACHED_PS, &a, args), 0);
	ck_assert_str_eq(a.ws, "ws-1");
	ck_assert_str_eq(a.status, "running");
	ck_assert_str_eq(a.name, "build-1");
	ck_assert_str_eq(a.url, "http://b:1/p");
	ck_assert_str_eq(a.token_file, "tok");
	ck_assert_str_eq(a.reason, "INC-1");
	ck_assert(a.json);
	ck_assert_ptr_null(a.exec_id);
}
END_TEST

START_TEST(defaults_when_nothing_is_given)
{
	struct detached_args a;
	const char *const args[] = {"wait", "e-1", NULL};

	ck_assert_int_eq(parse(DETACHED_WAIT, &a, args), 0);
	ck_assert_str_eq(a.exec_id, "e-1");
	ck_assert_str_eq(a.url, CLIENT_DEFAULT_URL);
	ck_assert_int_eq(a.timeout_s, -1);
	ck_assert_ptr_null(a.token_file);
	ck_assert_ptr_null(a.reason);
	ck_assert(!a.json && !a.follow);
}
END_TEST

START_TEST(logs_follow_short_and_long)
{
	struct detached_args a;
	const char *const s[] = {"logs", "-f", "e-1", NULL};
	const char *const l[] = {"logs", "--follow", "--json", "e-2", NULL};

	ck_assert_int_eq(parse(DETACHED_LOGS, &a, s), 0);
	ck_assert(a.follow && !a.json);
	ck_assert_str_eq(a.exec_id, "e-1");
	/* A second parse in the same process starts afresh (optind). */
	ck_assert_int_eq(parse(DETACHED_LOGS, &a, l), 0);
	ck_assert(a.follow && a.json);
	ck_assert_str_eq(a.exec_id, "e-2");
}
END_TEST

static const struct {
	const char *given, *want;
} kill_signals[] = {
    {"9", "KILL"},  {"SIGKILL", "KILL"}, {"kill", "KILL"}, {"KILL", "KILL"}, {"sigterm", "TERM"},
    {"15", "TERM"}, {"Term", "TERM"},    {"1", "HUP"},     {"2", "INT"},     {"3", "QUIT"},
    {"10", "USR1"}, {"12", "USR2"},      {"18", "CONT"},   {"19", "STOP"},   {"SIGCONT", "CONT"},
};

START_TEST(kill_signal_is_normalised_to_the_api_name)
{
	struct detached_args a;
	const char *const args[] = {"kill", "-s", kill_signals[_i].given, "e-1", NULL};

	ck_assert_int_eq(parse(DETACHED_KILL, &a, args), 0);
	ck_assert_str_eq(a.signal, kill_signals[_i].want);
	ck_assert_str_eq(detached_signal_name(kill_signals[_i].given), kill_signals[_i].want);
}
END_TEST

START_TEST(kill_without_signal_cancels)
{
	struct detached_args a;
	const char *const args[] = {"kill", "e-1", NULL};

	ck_assert_int_eq(parse(DETACHED_KILL, &a, args), 0);
	ck_assert_ptr_null(a.signal);
}
END_TEST

static const char *const bad_signals[] = {"SEGV", "11",    "0",       "",   "SIG",
                                          "99",   "KILLX", "-9",      "9a", "SIGSIGKILL",
                                          "1000", "PIPE",  "sig kill"};

START_TEST(kill_refuses_other_signals)
{
	struct detached_args a;
	const char *const args[] = {"kill", "-s", bad_signals[_i], "e-1", NULL};

	ck_assert_int_eq(parse(DETACHED_KILL, &a, args), CLIENT_EXIT_USAGE);
	ck_assert_ptr_null(detached_signal_name(bad_signals[_i]));
}
END_TEST

START_TEST(wait_timeout_bounds)
{
	struct detached_args a;
	const char *const zero[] = {"wait", "--timeout", "0", "e", NULL};
	const char *const max[] = {"wait", "--timeout", "86400", "e", NULL};

	ck_assert_int_eq(parse(DETACHED_WAIT, &a, zero), 0);
	ck_assert_int_eq(a.timeout_s, 0);
	ck_assert_int_eq(parse(DETACHED_WAIT, &a, max), 0);
	ck_assert_int_eq(a.timeout_s, 86400);
}
END_TEST

static const struct {
	enum detached_cmd cmd;
	const char *const args[8];
} usage_errors[] = {
    {DETACHED_PS, {"ps", NULL}},                             /* no workspace */
    {DETACHED_PS, {"ps", "a", "b", NULL}},                   /* two */
    {DETACHED_PS, {"ps", "-f", "ws", NULL}},                 /* logs' option */
    {DETACHED_PS, {"ps", "--name", "bad name", "ws", NULL}}, /* not a name */
    {DETACHED_PS, {"ps", "--name", "", "ws", NULL}},
    {DETACHED_PS, {"ps", "--status", NULL}}, /* no value */
    {DETACHED_LOGS, {"logs", "-s", "9", "e", NULL}},
    {DETACHED_LOGS, {"logs", "", NULL}}, /* an empty exec_id */
    {DETACHED_LOGS, {"logs", "--nope", "e", NULL}},
    {DETACHED_KILL, {"kill", "-s", NULL}},
    {DETACHED_KILL, {"kill", "--follow", "e", NULL}},
    {DETACHED_WAIT, {"wait", "--timeout", "soon", "e", NULL}},
    {DETACHED_WAIT, {"wait", "--timeout", "-1", "e", NULL}},
    {DETACHED_WAIT, {"wait", "--timeout", "86401", "e", NULL}},
    {DETACHED_WAIT, {"wait", "--timeout", "", "e", NULL}},
    {DETACHED_WAIT, {"wait", "--json", "e", NULL}},
};

START_TEST(usage_errors_are_201)
{
	struct detached_args a;

	ck_assert_int_eq(parse(usage_errors[_i].cmd, &a, usage_errors[_i].args), CLIENT_EXIT_USAGE);
}
END_TEST

START_TEST(help_is_not_an_error)
{
	struct detached_args a;
	const char *const args[] = {_i == 0   ? "ps"
	                            : _i == 1 ? "logs"
	                            : _i == 2 ? "kill"
	                                      : "wait",
	                            "--help", NULL};

	ck_assert_int_eq(parse((enum detached_cmd)_i, &a, args), CLI_PARSED_HELP);
}
END_TEST

static const struct {
	const char *name;
	bool ok;
} names[] = {
    {"build", true},
    {"a", true},
    {"A.b_c-9", true},
    {"0123456789012345678901234567890123456789012345678901234567890123", true}, /* 64 */
    {"01234567890123456789012345678901234567890123456789012345678901234", false},
    {"", false},
    {"a b", false},
    {"a/b", false},
    {"caf\xc3\xa9", false},
    {"a\n", false},
};

START_TEST(names_are_1_to_64_of_the_safe_characters)
{
	ck_assert_int_eq(detached_name_valid(names[_i].name), names[_i].ok);
}
END_TEST

/* --- query strings ---------------------------------------------------------------------- */

static const struct {
	const char *status, *name, *want;
} list_queries[] = {
    {NULL, NULL, ""},
    {"running", NULL, "?status=running"},
    {NULL, "build", "?name=build"},
    {"running", "build", "?status=running&name=build"},
    {"a b&c=d", "x/y?", "?status=a%20b%26c%3Dd&name=x%2Fy%3F"},
};

START_TEST(list_query_has_only_the_filters_given_encoded)
{
	char *q = detached_query_list(list_queries[_i].status, list_queries[_i].name);

	ck_assert_str_eq(q, list_queries[_i].want);
	free(q);
}
END_TEST

START_TEST(output_and_wait_queries)
{
	char buf[128];
	const long long zero[2] = {0, 0}, big[2] = {1LL << 40, 900};

	detached_query_output(buf, sizeof(buf), zero, false);
	ck_assert_str_eq(buf, "?stdout_offset=0&stderr_offset=0&follow=false");
	detached_query_output(buf, sizeof(buf), big, true);
	ck_assert_str_eq(buf, "?stdout_offset=1099511627776&stderr_offset=900&follow=true");
	detached_query_wait(buf, sizeof(buf), 60);
	ck_assert_str_eq(buf, "?wait_s=60");
}
END_TEST

static const struct {
	const char *loc, *want;
} locations[] = {
    {"/v1/execs/abc", "abc"},
    {"/prefix/v1/execs/abc", "abc"},
    {"http://h:1/v1/execs/5b0c-1", "5b0c-1"},
    {"/v1/execs/", NULL},
    {"/v1/execs/abc/output", NULL},
    {"/v1/execs/abc?x=1", NULL},
    {"/v1/other/abc", NULL},
    {NULL, NULL},
};

START_TEST(exec_id_from_location)
{
	const char *id = detached_id_from_location(locations[_i].loc);

	if (locations[_i].want == NULL)
		ck_assert_ptr_null(id);
	else
		ck_assert_str_eq(id, locations[_i].want);
}
END_TEST

/* --- outcomes --------------------------------------------------------------------------- */

static const struct {
	const char *exec;
	int want;
	bool why;
} outcomes[] = {
    {"{\"status\":\"running\",\"exit_code\":null}", DETACHED_RUNNING, false},
    {"{\"status\":\"exited\",\"exit_code\":0}", 0, false},
    {"{\"status\":\"exited\",\"exit_code\":3}", 3, false},
    {"{\"status\":\"exited\",\"exit_code\":255}", 255, false},
    {"{\"status\":\"exited\",\"exit_code\":null}", CLIENT_EXIT_API, true},
    {"{\"status\":\"signaled\",\"exit_code\":null,\"signal\":\"KILL\"}", 137, false},
    {"{\"status\":\"signaled\",\"signal\":\"TERM\"}", 143, false},
    {"{\"status\":\"signaled\",\"signal\":\"SIGINT\"}", 130, false},
    {"{\"status\":\"signaled\",\"signal\":\"NOPE\"}", CLIENT_EXIT_API, true},
    {"{\"status\":\"signaled\",\"signal\":null}", CLIENT_EXIT_API, true},
    {"{\"status\":\"timeout\",\"error_code\":\"exec_timeout\"}", CLIENT_EXIT_TIMEOUT, true},
    {"{\"status\":\"transport_error\"}", CLIENT_EXIT_HOST, true},
    {"{\"status\":\"lost\"}", CLIENT_EXIT_HOST, true},
    {"{\"status\":\"abandoned\"}", CLIENT_EXIT_HOST, true},
    {"{\"status\":\"cancelled\"}", CLIENT_EXIT_API, true},
    {"{\"status\":\"failed_to_start\"}", CLIENT_EXIT_API, true},
    {"{\"status\":\"denied\"}", CLIENT_EXIT_API, true},
    {"{\"status\":\"shutdown\"}", CLIENT_EXIT_API, true},
    {"{\"status\":\"something_newer\"}", CLIENT_EXIT_API, true},
    {"{\"exit_code\":0}", CLIENT_EXIT_API, true},
    /* The status decides, not a stray field: a cancelled exec says 206 whatever else. */
    {"{\"status\":\"cancelled\",\"exit_code\":0}", CLIENT_EXIT_API, true},
};

START_TEST(outcome_is_the_exit_status_exec_would_have_had)
{
	json_t *o = J(outcomes[_i].exec);
	const char *why = "unset";

	ck_assert_int_eq(detached_exit_of_exec(o, &why), outcomes[_i].want);
	ck_assert_msg((why != NULL) == outcomes[_i].why, "why=%s for %s", why ? why : "NULL",
	              outcomes[_i].exec);
	json_decref(o);
}
END_TEST

static const struct {
	int status;
	const char *code;
	int want;
} api_errors[] = {
    {401, "unauthorized", CLIENT_EXIT_AUTH},
    {403, "forbidden_tier", CLIENT_EXIT_AUTH},
    {404, "not_found", CLIENT_EXIT_NOT_FOUND},
    {502, "host_unreachable", CLIENT_EXIT_HOST},
    {409, "name_in_use", CLIENT_EXIT_API},
    {409, "exec_finished", CLIENT_EXIT_API},
    {429, "too_many_requests", CLIENT_EXIT_API},
    {400, "invalid_request", CLIENT_EXIT_API},
    {503, NULL, CLIENT_EXIT_API},
    {0, "exec_timeout", CLIENT_EXIT_TIMEOUT},
    {0, "transport_error", CLIENT_EXIT_HOST},
    {0, "cancelled", CLIENT_EXIT_API},
};

START_TEST(api_errors_map_as_for_exec)
{
	ck_assert_int_eq(client_exit_of_error(api_errors[_i].status, api_errors[_i].code),
	                 api_errors[_i].want);
}
END_TEST

START_TEST(signal_names_and_numbers)
{
	ck_assert_int_eq(client_signal_number("KILL"), 9);
	ck_assert_int_eq(client_signal_number("SIGTERM"), 15);
	ck_assert_int_eq(client_signal_number("NOPE"), 0);
	ck_assert_str_eq(client_signal_name(9), "KILL");
	ck_assert_str_eq(client_signal_name(6), "ABRT"); /* not its alias IOT */
	ck_assert_ptr_null(client_signal_name(0));
	ck_assert_ptr_null(client_signal_name(999));
}
END_TEST

/* --- ps --------------------------------------------------------------------------------- */

START_TEST(exit_column)
{
	char buf[32];
	json_t *a = J("{\"status\":\"exited\",\"exit_code\":2,\"signal\":null}");
	json_t *b = J("{\"status\":\"signaled\",\"exit_code\":null,\"signal\":\"KILL\"}");
	json_t *c = J("{\"status\":\"running\",\"exit_code\":null,\"signal\":null}");

	ck_assert_str_eq(detached_exit_column(a, buf, sizeof(buf)), "2");
	ck_assert_str_eq(detached_exit_column(b, buf, sizeof(buf)), "SIGKILL");
	ck_assert_str_eq(detached_exit_column(c, buf, sizeof(buf)), "-");
	json_decref(a);
	json_decref(b);
	json_decref(c);
}
END_TEST

static const struct {
	const char *argv, *want;
} displays[] = {
    {"[\"make\",\"-j8\",\"all\"]", "make -j8 all"},
    {"[\"echo\",\"hi there\"]", "echo 'hi there'"},
    {"[\"sh\",\"-c\",\"it's\"]", "sh -c 'it'\\''s'"},
    {"[\"printf\",\"\"]", "printf ''"},
    {"[\"a=b\",\"x@y:1,2/%+_.\"]", "a=b x@y:1,2/%+_."},
    {"[\"echo\",\"$HOME\",\"*\",\"a;b\"]", "echo '$HOME' '*' 'a;b'"},
    {"[\"printf\",\"a\\nb\"]", "printf $'a\\nb'"},
    {"[\"x\",\"t\\t'q'\\\\\"]", "x $'t\\t\\'q\\'\\\\'"},
    {"[\"x\",\"\\u0001\"]", "x $'\\x01'"},
    {"[\"caf\\u00e9\"]", "'caf\xc3\xa9'"},
    {"[\"x\",7]", "x '?'"}, /* not a string: a placeholder, quoted as a glob */
    {"[]", ""},
    /* 60 characters exactly: kept whole. */
    {"[\"012345678901234567890123456789012345678901234567890123456789\"]",
     "012345678901234567890123456789012345678901234567890123456789"},
    /* 65: cut to 57 and "...". */
    {"[\"0123456789\",\"0123456789\",\"0123456789\",\"0123456789\",\"0123456789\","
     "\"0123456789\"]",
     "0123456789 0123456789 0123456789 0123456789 0123456789 01..."},
};

START_TEST(argv_is_quoted_where_needed_and_cut_to_fit)
{
	json_t *argv = J(displays[_i].argv);
	char *s = detached_argv_display(argv, 60);

	ck_assert_str_eq(s, displays[_i].want);
	free(s);
	json_decref(argv);
}
END_TEST

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

START_TEST(cut_keeps_whole_characters)
{
	/* 40 two-byte characters in one quoted word: 42 characters, cut at 20. */
	json_t *argv = json_pack("[s]", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                                "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	char *s = detached_argv_display(argv, 20);
	json_t *valid = json_string(s); /* NULL if the cut split a character */

	ck_assert_uint_eq(utf8_chars(s), 20);
	ck_assert_ptr_nonnull(valid);
	ck_assert_str_eq(s + strlen(s) - 3, "...");
	json_decref(valid);
	free(s);
	json_decref(argv);
}
END_TEST

/* --- output frames ---------------------------------------------------------------------- */

START_TEST(output_frames_decode_text_and_base64)
{
	json_t *t = J("{\"stream\":\"stdout\",\"data\":\"hi\\u0000\\n\"}");
	json_t *u = J("{\"stream\":\"stderr\",\"data\":\"x\",\"encoding\":\"utf-8\"}");
	json_t *b = J("{\"stream\":\"stdout\",\"data\":\"/wBh\",\"encoding\":\"base64\"}");
	struct client_output o;

	ck_assert_int_eq(client_output_decode(t, "stdout", &o), 0);
	ck_assert_int_eq(o.fd, 1);
	ck_assert_uint_eq(o.len, 4);
	ck_assert_mem_eq(o.data, "hi\0\n", 4);
	client_output_free(&o);
	ck_assert_int_eq(client_output_decode(u, "stderr", &o), 0);
	ck_assert_int_eq(o.fd, 2);
	ck_assert_uint_eq(o.len, 1);
	client_output_free(&o);
	ck_assert_int_eq(client_output_decode(b, "stdout", &o), 0);
	ck_assert_uint_eq(o.len, 3);
	ck_assert_mem_eq(o.data,
	                 "\xff\x00"
	                 "a",
	                 3);
	client_output_free(&o);
	json_decref(t);
	json_decref(u);
	json_decref(b);
}
END_TEST

static const char *const bad_output[] = {
    "{\"stream\":\"stdout\"}",
    "{\"stream\":\"stdout\",\"data\":5}",
    "{\"stream\":\"stdout\",\"data\":\"abc\",\"encoding\":\"base64\"}",
    "{\"stream\":\"stdout\",\"data\":\"@@@@\",\"encoding\":\"base64\"}",
    "{\"stream\":\"stdout\",\"data\":\"x\",\"encoding\":\"rot13\"}",
};

START_TEST(malformed_output_frames_are_refused)
{
	json_t *f = J(bad_output[_i]);
	struct client_output o;

	ck_assert_int_eq(client_output_decode(f, "stdout", &o), EB_ERR_INVAL);
	ck_assert_ptr_null(o.owned);
	json_decref(f);
}
END_TEST

START_TEST(unknown_stream_and_truncated_have_no_bytes)
{
	json_t *x = J("{\"stream\":\"stdlog\",\"data\":\"x\"}");
	json_t *t = J("{\"stream\":\"stderr\",\"truncated\":true}");
	struct client_output o;

	ck_assert_int_eq(client_output_decode(x, "stdlog", &o), 0);
	ck_assert_int_eq(o.fd, -1);
	ck_assert_int_eq(client_output_decode(t, "stderr", &o), 0);
	ck_assert(o.truncated);
	ck_assert_uint_eq(o.len, 0);
	json_decref(x);
	json_decref(t);
}
END_TEST

/* --- logs: frames and offsets ----------------------------------------------------------- */

/* The frames a test stepped through: st->timeout_s points into one. Freed after each test. */
static json_t *stepped[64];
static size_t nstepped;

static void stepped_free(void)
{
	while (nstepped > 0)
		json_decref(stepped[--nstepped]);
}

/* One frame through d, its step in st. The decoded bytes are freed at once: these tests
 * look at lengths and offsets (every_byte_is_written_once_across_reconnects at bytes). */
static int step(struct detached_follow *d, const char *frame, struct detached_step *st)
{
	json_t *f = J(frame);
	int rc = detached_follow_frame(d, f, st);

	client_output_free(&st->out);
	ck_assert_uint_lt(nstepped, N(stepped));
	stepped[nstepped++] = f;
	return rc;
}

START_TEST(first_frame_is_known_by_its_place)
{
	struct detached_follow d = {.follow = true};
	struct detached_step st;
	const char *first = "{\"exec_id\":\"e\",\"workspace_id\":\"w\",\"status\":\"running\","
	                    "\"timeout_s\":30}";

	ck_assert_int_eq(step(&d, first, &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_FIRST);
	ck_assert_int_eq(json_integer_value(st.timeout_s), 30);
	/* The same keys later in the reply, with an outcome: the last frame. */
	ck_assert_int_eq(step(&d, "{\"exec_id\":\"e\",\"exit_code\":0,\"status\":\"exited\"}", &st),
	                 0);
	ck_assert_int_eq(st.kind, DFRAME_LAST);
	/* A new reply (after a reconnect) has a first frame again. */
	d.nframes = 0;
	ck_assert_int_eq(step(&d, first, &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_FIRST);
}
END_TEST

START_TEST(last_frames_end_and_running_ends_only_without_follow)
{
	static const char *const last[] = {
	    "{\"exit_code\":0,\"signal\":null,\"status\":\"exited\"}",
	    "{\"exit_code\":null,\"signal\":\"TERM\",\"status\":\"signaled\"}",
	    "{\"error\":{\"code\":\"exec_timeout\",\"message\":\"m\"},\"status\":\"timeout\"}",
	};
	const char *running = "{\"status\":\"running\",\"stdout_offset\":5,\"stderr_offset\":0}";
	struct detached_follow f = {.follow = true, .nframes = 1}, n = {.nframes = 1};
	struct detached_step st;

	for (size_t i = 0; i < N(last); i++) {
		ck_assert_int_eq(step(&f, last[i], &st), 0);
		ck_assert_int_eq(st.kind, DFRAME_LAST);
	}
	ck_assert_int_eq(step(&n, running, &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_LAST);
	ck_assert_int_eq(step(&f, running, &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_OTHER); /* following: resume instead */
	ck_assert_int_eq(step(&f, "{\"newer\":1}", &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_OTHER);
}
END_TEST

START_TEST(offsets_advance_by_decoded_bytes)
{
	struct detached_follow d = {0};
	struct detached_step st;

	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"data\":\"hello\",\"offset\":0}", &st),
	                 0);
	ck_assert_int_eq(st.kind, DFRAME_OUTPUT);
	ck_assert_int_eq(st.fd, 1);
	ck_assert_uint_eq(st.skip, 0);
	ck_assert_int_eq(d.next[0], 5);
	ck_assert(d.progressed);
	/* Base64: the offset moves by the 6 decoded bytes, not by the 8 characters. */
	ck_assert_int_eq(
	    step(&d,
	         "{\"stream\":\"stdout\",\"data\":\"AAECAwQF\",\"encoding\":\"base64\","
	         "\"offset\":5}",
	         &st),
	    0);
	ck_assert_uint_eq(st.out.len, 6);
	ck_assert_int_eq(d.next[0], 11);
	/* Padding counts no bytes. */
	ck_assert_int_eq(
	    step(&d,
	         "{\"stream\":\"stdout\",\"data\":\"/w==\",\"encoding\":\"base64\",\"offset\":11}",
	         &st),
	    0);
	ck_assert_int_eq(d.next[0], 12);
	/* stderr has offsets of its own. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stderr\",\"data\":\"e\",\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.fd, 2);
	ck_assert_int_eq(d.next[1], 1);
	ck_assert_int_eq(d.next[0], 12);
	/* A frame without an offset follows on. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stderr\",\"data\":\"ab\"}", &st), 0);
	ck_assert_int_eq(d.next[1], 3);
}
END_TEST

START_TEST(bytes_written_already_are_skipped)
{
	struct detached_follow d = {.next = {5, 0}};
	struct detached_step st;

	/* [3, 7): bytes 3 and 4 were written. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"data\":\"abcd\",\"offset\":3}", &st),
	                 0);
	ck_assert_uint_eq(st.skip, 2);
	ck_assert_int_eq(st.lost, 0);
	ck_assert_int_eq(d.next[0], 7);
	/* All of it written already: nothing to write, no progress. */
	d.progressed = false;
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"data\":\"abcde\",\"offset\":0}", &st),
	                 0);
	ck_assert_uint_eq(st.skip, st.out.len);
	ck_assert_int_eq(d.next[0], 7);
	ck_assert(!d.progressed);
}
END_TEST

START_TEST(skipped_bytes_are_counted_once)
{
	struct detached_follow d = {0};
	struct detached_step st;

	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"skipped\":4000,\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_SKIPPED);
	ck_assert_int_eq(st.fd, 1);
	ck_assert_int_eq(st.lost, 4000);
	ck_assert_int_eq(d.next[0], 4000);
	ck_assert(d.progressed);
	/* The same frame again (a reply resent from an older offset): nothing more lost. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"skipped\":4000,\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.lost, 0);
	ck_assert_int_eq(d.next[0], 4000);
	/* Overlapping what was written: only the rest is lost. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"skipped\":100,\"offset\":3950}", &st),
	                 0);
	ck_assert_int_eq(st.lost, 50);
	ck_assert_int_eq(d.next[0], 4050);
	/* Wholly before what was written: nothing lost, nothing moves. */
	d.progressed = false;
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"skipped\":10,\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.lost, 0);
	ck_assert_int_eq(d.next[0], 4050);
	ck_assert(!d.progressed);
	/* stderr's skipped frame leaves stdout alone. */
	ck_assert_int_eq(step(&d, "{\"stream\":\"stderr\",\"skipped\":7,\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.fd, 2);
	ck_assert_int_eq(d.next[1], 7);
	ck_assert_int_eq(d.next[0], 4050);
}
END_TEST

START_TEST(a_gap_without_skipped_frame_is_counted_lost)
{
	struct detached_follow d = {.next = {7, 0}};
	struct detached_step st;

	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"data\":\"xy\",\"offset\":10}", &st), 0);
	ck_assert_int_eq(st.lost, 3);
	ck_assert_uint_eq(st.skip, 0);
	ck_assert_int_eq(d.next[0], 12);
}
END_TEST

static const char *const bad_frames[] = {
    "{\"stream\":\"stdout\",\"data\":\"x\",\"offset\":-1}",
    "{\"stream\":\"stdout\",\"data\":\"x\",\"offset\":\"1\"}",
    "{\"stream\":\"stdout\",\"offset\":1}",
    "{\"stream\":\"stdout\",\"skipped\":\"9\",\"offset\":0}",
    "{\"stream\":\"stdout\",\"skipped\":-9,\"offset\":0}",
    "{\"stream\":\"stdout\",\"skipped\":9,\"offset\":1.5}",
    "{\"stream\":\"stdout\",\"data\":\"abc\",\"encoding\":\"base64\",\"offset\":0}",
    /* Ends past 2^63-1, which no offset reaches (fuzz_client_frames found these). */
    "{\"stream\":\"stdout\",\"data\":\"x\",\"offset\":9223372036854775807}",
    "{\"stream\":\"stdout\",\"skipped\":9223372036854775807,\"offset\":1}",
    "{\"stream\":\"stderr\",\"skipped\":1,\"offset\":9223372036854775807}",
};

START_TEST(malformed_frames_are_errors_and_move_nothing)
{
	struct detached_follow d = {.next = {3, 4}};
	struct detached_step st;

	ck_assert_int_eq(step(&d, bad_frames[_i], &st), EB_ERR_INVAL);
	ck_assert_int_eq(d.next[0], 3);
	ck_assert_int_eq(d.next[1], 4);
	ck_assert(!d.progressed);
}
END_TEST

START_TEST(unknown_streams_and_truncated_frames_move_nothing)
{
	struct detached_follow d = {0};
	struct detached_step st;

	ck_assert_int_eq(step(&d, "{\"stream\":\"stdlog\",\"data\":\"x\",\"offset\":0}", &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_OTHER);
	ck_assert_int_eq(step(&d, "{\"stream\":\"stdout\",\"truncated\":true}", &st), 0);
	ck_assert_int_eq(st.kind, DFRAME_OTHER);
	ck_assert_int_eq(d.next[0], 0);
	ck_assert_int_eq(d.nframes, 2);
}
END_TEST

/* A broker's view: stream s of n bytes, sent as frames of random sizes and encodings,
 * from whatever offset it is asked for, minus up to `back` bytes (a broker that resends
 * from the start of its chunk file), and cut after a random number of frames. */
struct model {
	unsigned char bytes[2][4096];
	size_t n[2];
	unsigned seed;
};

static unsigned rnd(struct model *m, unsigned below)
{
	m->seed = m->seed * 1103515245u + 12345u;
	return (m->seed >> 16) % below;
}

static char *frame_of(struct model *m, int s, size_t off, size_t len)
{
	const char *name = s == 0 ? "stdout" : "stderr";
	char *text;

	if (rnd(m, 2) == 0) {
		unsigned char b64[4096 * 4 / 3 + 8];
		EVP_EncodeBlock(b64, m->bytes[s] + off, (int)len);
		if (asprintf(&text,
		             "{\"stream\":\"%s\",\"data\":\"%s\",\"encoding\":\"base64\","
		             "\"offset\":%zu}",
		             name, b64, off) < 0)
			text = NULL;
	} else {
		json_t *o =
		    json_pack("{s:s, s:s%, s:I}", "stream", name, "data",
		              (const char *)m->bytes[s] + off, len, "offset", (json_int_t)off);
		text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
	}
	ck_assert_ptr_nonnull(text);
	return text;
}

START_TEST(every_byte_is_written_once_across_reconnects)
{
	struct model m = {.seed = 7u + (unsigned)_i};
	struct detached_follow d = {.follow = true};
	unsigned char got[2][4096];
	size_t gotn[2] = {0, 0};

	for (int s = 0; s < 2; s++) {
		m.n[s] = 1000 + rnd(&m, 3000);
		for (size_t k = 0; k < m.n[s]; k++)
			m.bytes[s][k] = (unsigned char)(s == 0 ? 'a' + rnd(&m, 26) : rnd(&m, 256));
		if (s == 0)
			continue;
		/* Text frames must be UTF-8: make stderr's bytes ASCII too, NULs included. */
		for (size_t k = 0; k < m.n[s]; k++)
			m.bytes[s][k] &= 0x7f;
	}
	for (int attempt = 0;
	     attempt < 200 && (d.next[0] < (long long)m.n[0] || d.next[1] < (long long)m.n[1]);
	     attempt++) {
		size_t off[2], frames = 1 + rnd(&m, 6);
		d.nframes = 0;
		for (int s = 0; s < 2; s++) {
			size_t back = rnd(&m, 300);
			off[s] = (size_t)d.next[s] > back ? (size_t)d.next[s] - back : 0;
		}
		for (size_t f = 0; f < frames; f++) {
			int s = (int)rnd(&m, 2);
			size_t len;
			struct detached_step st;
			json_t *fr;
			char *text;
			if (off[s] >= m.n[s])
				continue;
			len = 1 + rnd(&m, 400);
			if (len > m.n[s] - off[s])
				len = m.n[s] - off[s];
			text = frame_of(&m, s, off[s], len);
			fr = J(text);
			ck_assert_int_eq(detached_follow_frame(&d, fr, &st), 0);
			ck_assert_int_eq(st.kind, DFRAME_OUTPUT);
			ck_assert_int_eq(st.lost, 0);
			memcpy(got[s] + gotn[s], st.out.data + st.skip, st.out.len - st.skip);
			gotn[s] += st.out.len - st.skip;
			off[s] += len;
			client_output_free(&st.out);
			json_decref(fr);
			free(text);
		}
	}
	for (int s = 0; s < 2; s++) {
		ck_assert_uint_eq(gotn[s], m.n[s]);
		ck_assert_mem_eq(got[s], m.bytes[s], m.n[s]);
		ck_assert_int_eq(d.next[s], (long long)m.n[s]);
	}
}
END_TEST

START_TEST(backoff_is_short_doubling_and_capped)
{
	int prev = 0;

	ck_assert_int_eq(detached_backoff_ms(1), 250);
	ck_assert_int_eq(detached_backoff_ms(2), 500);
	for (int n = 1; n <= 20; n++) {
		int ms = detached_backoff_ms(n);
		ck_assert_int_ge(ms, prev);
		ck_assert_int_le(ms, 4000);
		prev = ms;
	}
	ck_assert_int_eq(detached_backoff_ms(10), 4000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client_detached");
	TCase *args = tcase_create("command lines");
	TCase *pure = tcase_create("names, queries, outcomes");
	TCase *ps = tcase_create("ps");
	TCase *frames = tcase_create("frames");

	tcase_add_checked_fixture(frames, NULL, stepped_free);
	tcase_add_test(args, ps_takes_its_filters_and_the_common_options);
	tcase_add_test(args, defaults_when_nothing_is_given);
	tcase_add_test(args, logs_follow_short_and_long);
	tcase_add_loop_test(args, kill_signal_is_normalised_to_the_api_name, 0, N(kill_signals));
	tcase_add_test(args, kill_without_signal_cancels);
	tcase_add_loop_test(args, kill_refuses_other_signals, 0, N(bad_signals));
	tcase_add_test(args, wait_timeout_bounds);
	tcase_add_loop_test(args, usage_errors_are_201, 0, N(usage_errors));
	tcase_add_loop_test(args, help_is_not_an_error, 0, 4);
	suite_add_tcase(s, args);

	tcase_add_loop_test(pure, names_are_1_to_64_of_the_safe_characters, 0, N(names));
	tcase_add_loop_test(pure, list_query_has_only_the_filters_given_encoded, 0,
	                    N(list_queries));
	tcase_add_test(pure, output_and_wait_queries);
	tcase_add_loop_test(pure, exec_id_from_location, 0, N(locations));
	tcase_add_loop_test(pure, outcome_is_the_exit_status_exec_would_have_had, 0, N(outcomes));
	tcase_add_loop_test(pure, api_errors_map_as_for_exec, 0, N(api_errors));
	tcase_add_test(pure, signal_names_and_numbers);
	suite_add_tcase(s, pure);

	tcase_add_test(ps, exit_column);
	tcase_add_loop_test(ps, argv_is_quoted_where_needed_and_cut_to_fit, 0, N(displays));
	tcase_add_test(ps, cut_keeps_whole_characters);
	suite_add_tcase(s, ps);

	tcase_add_test(frames, output_frames_decode_text_and_base64);
	tcase_add_loop_test(frames, malformed_output_frames_are_refused, 0, N(bad_output));
	tcase_add_test(frames, unknown_stream_and_truncated_have_no_bytes);
	tcase_add_test(frames, first_frame_is_known_by_its_place);
	tcase_add_test(frames, last_frames_end_and_running_ends_only_without_follow);
	tcase_add_test(frames, offsets_advance_by_decoded_bytes);
	tcase_add_test(frames, bytes_written_already_are_skipped);
	tcase_add_test(frames, skipped_bytes_are_counted_once);
	tcase_add_test(frames, a_gap_without_skipped_frame_is_counted_lost);
	tcase_add_loop_test(frames, malformed_frames_are_errors_and_move_nothing, 0, N(bad_frames));
	tcase_add_test(frames, unknown_streams_and_truncated_frames_move_nothing);
	tcase_add_loop_test(frames, every_byte_is_written_once_across_reconnects, 0, 30);
	tcase_add_test(frames, backoff_is_short_doubling_and_capped);
	suite_add_tcase(s, frames);
	return tu_run_suite(s);
}
