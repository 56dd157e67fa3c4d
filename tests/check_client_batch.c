/* tests/check_client_batch.c: the pure parts of exec for many workspaces (a batch, issue 14):
 * exec's command line with --org, --label, --all, --workspaces and the limits, and the body
 * it makes; the frames of a batch's reply, rendered as whole lines behind their workspace
 * id however the targets' output interleaves and splits; base64, truncated and error
 * frames; the end of a batch, with or without its summary; the summary's table and the
 * exit status; and --all's question. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/common.h"
#include "client/exec_args.h"
#include "client/fanout.h"
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

/* --- command lines ---------------------------------------------------------------------- */

static struct exec_args A; /* freed after each test */

static void args_free(void)
{
	exec_args_free(&A);
}

/* A's remote argv points into the command line, which therefore outlives the parse. */
static int parse(const char *const args[])
{
	static char *argv[64];
	int argc = 0;

	argv[argc++] = "exec";
	for (; args[argc - 1] != NULL; argc++)
		argv[argc] = (char *)args[argc - 1];
	argv[argc] = NULL;
	return exec_args_parse(argc, argv, &A);
}

/* The body of A (no stdin), compared with want as JSON. */
static void body_is(const char *want)
{
	char *body;
	json_t *got, *w = J(want);

	ck_assert_int_eq(exec_args_body(&A, NULL, 0, &body), 0);
	got = J(body);
	ck_assert_msg(json_equal(got, w), "body %s, want %s", body, want);
	json_decref(got);
	json_decref(w);
	free(body);
}

static const struct {
	const char *const args[24];
	const char *body;
} batches[] = {
    {{"--org", "acme", "--label", "role=web", "--label", "env=prod", "--", "uname", "-a", NULL},
     "{\"argv\":[\"uname\",\"-a\"],\"target\":{\"org\":\"acme\",\"labels\":{\"role\":\"web\","
     "\"env\":\"prod\"}}}"},
    {{"--label", "role=web", "--org", "acme", "--", "true", NULL}, /* in any order */
     "{\"argv\":[\"true\"],\"target\":{\"org\":\"acme\",\"labels\":{\"role\":\"web\"}}}"},
    {{"--org", "acme", "--label", "k=a=b", "--label", "e=", "--", "true", NULL},
     "{\"argv\":[\"true\"],\"target\":{\"org\":\"acme\",\"labels\":{\"k\":\"a=b\",\"e\":\"\"}}}"},
    {{"--org", "acme", "--all", "--", "true", NULL},
     "{\"argv\":[\"true\"],\"target\":{\"org\":\"acme\",\"all\":true}}"},
    {{"--org", "acme", "--all", "--yes", "--", "true", NULL},
     "{\"argv\":[\"true\"],\"target\":{\"org\":\"acme\",\"all\":true}}"},
    {{"--workspaces", "a,b", "--workspaces", "c", "--", "true", NULL},
     "{\"argv\":[\"true\"],\"target\":{\"workspaces\":[\"a\",\"b\",\"c\"]}}"},
    {{"--workspaces", "ws-1", "--max-concurrency", "10", "--max-errors", "10%", "--", "x", NULL},
     "{\"argv\":[\"x\"],\"target\":{\"workspaces\":[\"ws-1\"]},\"max_concurrency\":10,"
     "\"max_errors\":\"10%\"}"},
    {{"--max-concurrency", "25%", "--max-errors", "0", "--max-errors", "3", "--workspaces", "a",
      "--", "x", NULL}, /* the last of an option given twice */
     "{\"argv\":[\"x\"],\"target\":{\"workspaces\":[\"a\"]},\"max_concurrency\":\"25%\","
     "\"max_errors\":3}"},
    {{"--max-concurrency", "100%", "--max-errors", "0%", "--workspaces", "a", "--", "x", NULL},
     "{\"argv\":[\"x\"],\"target\":{\"workspaces\":[\"a\"]},\"max_concurrency\":\"100%\","
     "\"max_errors\":\"0%\"}"},
    /* The options of one exec go into a batch's body as they are. */
    {{"--timeout", "30", "--env", "A=1", "--cwd", "/srv", "--org", "acme", "--label", "k=v", "--",
      "sh", "-c", "echo $A", NULL},
     "{\"argv\":[\"sh\",\"-c\",\"echo $A\"],\"timeout_s\":30,\"env\":{\"A\":\"1\"},"
     "\"cwd\":\"/srv\",\"target\":{\"org\":\"acme\",\"labels\":{\"k\":\"v\"}}}"},
    /* What follows "--" is the remote argv, options or not. */
    {{"--workspaces", "a", "--", "ls", "--org", "x", "--", NULL},
     "{\"argv\":[\"ls\",\"--org\",\"x\",\"--\"],\"target\":{\"workspaces\":[\"a\"]}}"},
};

START_TEST(batch_command_lines_make_the_batch_body)
{
	ck_assert_int_eq(parse(batches[_i].args), 0);
	ck_assert(A.batch);
	ck_assert_ptr_null(A.ws);
	body_is(batches[_i].body);
}
END_TEST

START_TEST(one_workspace_is_no_batch)
{
	const char *const args[] = {"--timeout", "5", "ws-1", "--", "ls", "-l", NULL};

	ck_assert_int_eq(parse(args), 0);
	ck_assert(!A.batch);
	ck_assert_str_eq(A.ws, "ws-1");
	ck_assert_int_eq(A.argc, 2);
	body_is("{\"argv\":[\"ls\",\"-l\"],\"timeout_s\":5}");
}
END_TEST

START_TEST(all_and_yes_are_kept)
{
	const char *const ask[] = {"--org", "acme", "--all", "--", "true", NULL};
	const char *const yes[] = {"--yes", "--org", "acme", "--all", "--", "true", NULL};

	ck_assert_int_eq(parse(ask), 0);
	ck_assert(A.all && !A.yes);
	ck_assert_str_eq(A.org, "acme");
	exec_args_free(&A);
	ck_assert_int_eq(parse(yes), 0);
	ck_assert(A.all && A.yes);
}
END_TEST

START_TEST(stdin_goes_into_a_batch_body_too)
{
	const char *const args[] = {"-i", "--workspaces", "a", "--", "cat", NULL};
	char *body;
	json_t *got;

	ck_assert_int_eq(parse(args), 0);
	ck_assert_int_eq(exec_args_body(&A, "\xff\x00", 2, &body), 0);
	got = J(body);
	ck_assert_str_eq(json_string_value(json_object_get(got, "stdin_base64")), "/wA=");
	ck_assert_ptr_nonnull(json_object_get(got, "target"));
	json_decref(got);
	free(body);
}
END_TEST

static const struct {
	const char *const args[16];
	const char *why; /* in the message */
} usage_errors[] = {
    /* No way, or two ways, of choosing the workspaces. */
    {{"--label", "a=b", "--", "x", NULL}, "choose among an org"},
    {{"--all", "--", "x", NULL}, "choose among an org"},
    {{"--org", "acme", "--", "x", NULL}, "--org takes --label"},
    {{"--org", "acme", "--all", "--label", "a=b", "--", "x", NULL}, "not both"},
    {{"--workspaces", "a", "--org", "acme", "--label", "a=b", "--", "x", NULL},
     "--workspaces names"},
    {{"--workspaces", "a", "--org", "acme", "--", "x", NULL}, "--workspaces names"},
    {{"--workspaces", "a", "--all", "--", "x", NULL}, "--workspaces names"},
    {{"--workspaces", "a", "--label", "a=b", "--", "x", NULL}, "--workspaces names"},
    /* Labels and ids as the client can check them. */
    {{"--org", "acme", "--label", "a", "--", "x", NULL}, "--label takes KEY=VALUE"},
    {{"--org", "acme", "--label", "=b", "--", "x", NULL}, "--label takes KEY=VALUE"},
    {{"--org", "acme", "--label", "", "--", "x", NULL}, "--label takes KEY=VALUE"},
    {{"--org", "acme", "--label", "a=1", "--label", "a=2", "--", "x", NULL},
     "--label a is given twice"},
    {{"--org", "acme", "--label", "\xff=1", "--", "x", NULL}, "must be UTF-8"},
    {{"--org", "acme", "--label", "a=\xff", "--", "x", NULL}, "must be UTF-8"},
    {{"--org", "", "--all", "--", "x", NULL}, "--org takes an org id"},
    {{"--org", "\xc3", "--all", "--", "x", NULL}, "--org takes an org id"},
    {{"--workspaces", "", "--", "x", NULL}, "--workspaces takes"},
    {{"--workspaces", "a,,b", "--", "x", NULL}, "--workspaces takes"},
    {{"--workspaces", "a,", "--", "x", NULL}, "--workspaces takes"},
    {{"--workspaces", ",a", "--", "x", NULL}, "--workspaces takes"},
    {{"--workspaces", "a,\xff", "--", "x", NULL}, "--workspaces takes"},
    /* The limits. */
    {{"--workspaces", "a", "--max-concurrency", "0", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "0%", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "101%", "--", "x", NULL},
     "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "1.5", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "ten", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "99999999999999999999", "--", "x", NULL},
     "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-concurrency", "-1", "--", "x", NULL}, "--max-concurrency takes"},
    {{"--workspaces", "a", "--max-errors", "-1", "--", "x", NULL}, "--max-errors takes"},
    {{"--workspaces", "a", "--max-errors", "101%", "--", "x", NULL}, "--max-errors takes"},
    {{"--workspaces", "a", "--max-errors", "5%%", "--", "x", NULL}, "--max-errors takes"},
    {{"--workspaces", "a", "--max-errors", "%", "--", "x", NULL}, "--max-errors takes"},
    {{"--workspaces", "a", "--max-errors", "+1", "--", "x", NULL}, "--max-errors takes"},
    /* A batch's options without a batch. */
    {{"--max-concurrency", "2", "ws", "--", "x", NULL}, "are for a batch"},
    {{"--max-errors", "2", "ws", "--", "x", NULL}, "are for a batch"},
    {{"--yes", "ws", "--", "x", NULL}, "are for a batch"},
    /* One workspace's positional and options in a batch. */
    {{"--org", "acme", "--label", "a=b", "ws-1", "--", "x", NULL}, "a batch takes no WORKSPACE"},
    {{"--workspaces", "a", "ws-1", "--", "x", NULL}, "a batch takes no WORKSPACE"},
    {{"--org", "acme", "--all", "--detach", "--", "x", NULL}, "are for one workspace"},
    {{"--workspaces", "a", "--detach", "--name", "n", "--", "x", NULL}, "are for one workspace"},
    /* No command. */
    {{"--org", "acme", "--all", NULL}, "missing the command"},
    {{"--org", "acme", "--all", "--", NULL}, "missing the command"},
    /* What one exec refused, it still refuses in a batch. */
    {{"--workspaces", "a", "--stdin-file", "f", "-i", "--", "x", NULL}, "not both"},
    {{"--workspaces", "a", "--timeout", "soon", "--", "x", NULL}, "--timeout takes"},
    {{"--workspaces", "a", "--env", "=1", "--", "x", NULL}, "--env takes"},
    {{"--workspaces", "a", "--label", "--", "x", NULL}, "requires an argument"},
    {{"--workspaces", "a", "--nope", "--", "x", NULL}, "unrecognized option"},
};

/* parse(args), with what it said on stderr in a malloc'd string. */
static int parse_stderr(const char *const args[], char **said)
{
	char path[] = "/tmp/eb-batch-args-XXXXXX";
	int fd = mkstemp(path), saved = dup(2), rc;
	FILE *f;
	size_t n;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(saved, 0);
	dup2(fd, 2);
	rc = parse(args);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fdopen(fd, "r");
	ck_assert_ptr_nonnull(f);
	rewind(f);
	*said = calloc(1, 4096);
	n = fread(*said, 1, 4095, f);
	(*said)[n] = '\0';
	fclose(f);
	unlink(path);
	return rc;
}

START_TEST(usage_errors_are_201_and_say_why)
{
	char *said;

	ck_assert_int_eq(parse_stderr(usage_errors[_i].args, &said), CLIENT_EXIT_USAGE);
	ck_assert_msg(strstr(said, usage_errors[_i].why) != NULL, "said [%s], want [%s]", said,
	              usage_errors[_i].why);
	free(said);
}
END_TEST

START_TEST(help_is_not_an_error)
{
	const char *const args[] = {"--org", "acme", "--help", NULL};

	ck_assert_int_eq(parse(args), CLI_PARSED_HELP);
}
END_TEST

/* --- frames ----------------------------------------------------------------------------- */

/* One batch's reply fed frame by frame, and what it made us write, as the caller would have
 * written it: out[] emptied after each frame. */
static struct fanout FO;
static struct run {
	char *bytes[2];
	size_t len[2];
} R;

static void fanout_setup(void)
{
	fanout_init(&FO, false);
	memset(&R, 0, sizeof(R));
}

static void fanout_teardown(void)
{
	fanout_free(&FO);
	free(R.bytes[0]);
	free(R.bytes[1]);
}

static void collect(void)
{
	for (int s = 0; s < 2; s++) {
		R.bytes[s] = realloc(R.bytes[s], R.len[s] + FO.out[s].len + 1);
		ck_assert_ptr_nonnull(R.bytes[s]);
		if (FO.out[s].len > 0)
			memcpy(R.bytes[s] + R.len[s], FO.out[s].p, FO.out[s].len);
		R.len[s] += FO.out[s].len;
		R.bytes[s][R.len[s]] = '\0';
		FO.out[s].len = 0;
	}
}

/* Feeds one frame; its kind. */
static enum fanout_frame feed(const char *frame)
{
	json_t *f = J(frame);
	enum fanout_frame kind;

	ck_assert_int_eq(fanout_frame(&FO, f, &kind), 0);
	json_decref(f);
	collect();
	return kind;
}

static void wrote(int s, const char *want, size_t n)
{
	ck_assert_msg(R.len[s] == n && memcmp(R.bytes[s], want, n) == 0,
	              "%s is [%s] (%zu bytes), want [%s] (%zu)", s == 0 ? "stdout" : "stderr",
	              R.bytes[s] != NULL ? R.bytes[s] : "", R.len[s], want, n);
}
#define WROTE(s, lit) wrote((s), (lit), sizeof(lit) - 1)

#define FIRST_AB "{\"batch_id\":\"b-1\",\"targets\":[\"a\",\"b\"]}"
#define OUT(ws, stream, data)                                                                      \
	"{\"workspace_id\":\"" ws "\",\"exec_id\":\"e-" ws "\",\"stream\":\"" stream               \
	"\",\"data\":\"" data "\"}"
#define EXIT(ws)                                                                                   \
	"{\"workspace_id\":\"" ws "\",\"exec_id\":\"e-" ws "\",\"exit_code\":0,\"signal\":null,"   \
	"\"duration_ms\":5,\"stdout_bytes\":1,\"stderr_bytes\":0,\"truncated\":{\"stdout\":false," \
	"\"stderr\":false}}"
#define SUMMARY_OK                                                                                 \
	"{\"batch_id\":\"b-1\",\"status\":\"completed\",\"succeeded\":2,\"failed\":0,"             \
	"\"not_started\":0,\"results\":[]}"

START_TEST(interleaved_partial_lines_come_out_whole_and_prefixed)
{
	ck_assert_int_eq(feed(FIRST_AB), FFRAME_FIRST);
	ck_assert_str_eq(FO.batch_id, "b-1");
	ck_assert_int_eq(feed(OUT("a", "stdout", "hel")), FFRAME_OUTPUT);
	ck_assert_int_eq(feed(OUT("b", "stdout", "wor")), FFRAME_OUTPUT);
	WROTE(0, ""); /* nothing whole yet */
	feed(OUT("a", "stdout", "lo\\nwo"));
	WROTE(0, "a: hello\n");
	feed(OUT("b", "stdout", "ld\\n"));
	feed(OUT("a", "stdout", "rld\\nand more\\nlines\\n"));
	WROTE(0, "a: hello\nb: world\na: world\na: and more\na: lines\n");
	WROTE(1, "");
}
END_TEST

START_TEST(stdout_and_stderr_are_apart_with_a_line_each)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "o1"));
	feed(OUT("a", "stderr", "e1\\n"));
	feed(OUT("a", "stdout", "\\n"));
	feed(OUT("b", "stderr", "e2"));
	WROTE(0, "a: o1\n");
	WROTE(1, "a: e1\n");
	ck_assert_int_eq(feed(EXIT("b")), FFRAME_END);
	WROTE(1, "a: e1\nb: e2\n");
}
END_TEST

START_TEST(empty_lines_and_empty_frames)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", ""));
	feed(OUT("a", "stdout", "\\n\\n"));
	WROTE(0, "a: \na: \n");
}
END_TEST

START_TEST(a_target_s_last_frame_ends_its_unfinished_lines)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "no newline"));
	feed(OUT("a", "stderr", "err"));
	feed(OUT("b", "stdout", "b's"));
	ck_assert_int_eq(feed(EXIT("a")), FFRAME_END);
	WROTE(0, "a: no newline\n");
	WROTE(1, "a: err\n");
	/* An error frame ends b the same way. */
	ck_assert_int_eq(feed("{\"workspace_id\":\"b\",\"exec_id\":\"e-b\",\"error\":{\"code\":"
	                      "\"exec_timeout\",\"message\":\"m\"}}"),
	                 FFRAME_END);
	WROTE(0, "a: no newline\nb: b's\n");
	/* Nothing is held: the summary adds nothing. */
	ck_assert_int_eq(feed(SUMMARY_OK), FFRAME_SUMMARY);
	WROTE(0, "a: no newline\nb: b's\n");
	WROTE(1, "a: err\n");
}
END_TEST

START_TEST(the_summary_ends_every_open_target)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "x"));
	feed(OUT("b", "stderr", "y"));
	ck_assert_int_eq(feed(SUMMARY_OK), FFRAME_SUMMARY);
	ck_assert_int_eq(FO.state, FANOUT_DONE);
	ck_assert_ptr_nonnull(FO.last);
	WROTE(0, "a: x\n");
	WROTE(1, "b: y\n");
	/* Nothing after the summary counts. */
	ck_assert_int_eq(feed(OUT("a", "stdout", "late\\n")), FFRAME_OTHER);
	ck_assert_int_eq(feed(SUMMARY_OK), FFRAME_OTHER);
	WROTE(0, "a: x\n");
}
END_TEST

START_TEST(a_reply_cut_short_still_writes_what_was_held)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "x\\nhalf"));
	feed(OUT("b", "stdout", "other half"));
	ck_assert_int_eq(fanout_flush(&FO), 0);
	collect();
	WROTE(0, "a: x\na: half\nb: other half\n");
	/* Once only. */
	ck_assert_int_eq(fanout_flush(&FO), 0);
	collect();
	WROTE(0, "a: x\na: half\nb: other half\n");
}
END_TEST

START_TEST(base64_frames_are_decoded_byte_for_byte)
{
	static const char want[] = "a: \xff"
	                           "bin\na: \x00\x01\n";

	feed(FIRST_AB);
	/* "\xff" "bin\n\0\1" in two frames, split inside the second line. */
	feed("{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"/2Jpbgo=\","
	     "\"encoding\":\"base64\"}");
	feed("{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"AA==\",\"encoding\":"
	     "\"base64\"}");
	feed("{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"AQo=\",\"encoding\":"
	     "\"base64\"}");
	wrote(0, want, sizeof(want) - 1);
	/* NULs in a text frame (JSON escapes) are bytes like any other. */
	feed(OUT("b", "stderr", "x\\u0000y\\n"));
	wrote(1, "b: x\0y\n", 7);
}
END_TEST

#define CUT(ws, stream)                                                                            \
	"exec-broker: " ws ": the remote " stream                                                  \
	" was cut at the broker's output_cap_bytes; the "                                          \
	"rest was not sent\n"

START_TEST(a_truncated_frame_is_said_at_its_target_s_end)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "kept"));
	ck_assert_int_eq(feed("{\"workspace_id\":\"a\",\"exec_id\":\"e\",\"stream\":\"stdout\","
	                      "\"truncated\":true}"),
	                 FFRAME_OUTPUT);
	WROTE(1, ""); /* at the end, not in the middle of the output */
	/* An exit frame that does not repeat it. */
	feed("{\"workspace_id\":\"a\",\"exit_code\":0}");
	WROTE(0, "a: kept\n");
	WROTE(1, CUT("a", "stdout"));
}
END_TEST

START_TEST(an_exit_frame_s_truncated_is_said_too)
{
	feed(FIRST_AB);
	feed("{\"workspace_id\":\"b\",\"exit_code\":1,\"truncated\":{\"stdout\":false,\"stderr\":"
	     "true}}");
	WROTE(1, CUT("b", "stderr"));
	WROTE(0, "");
}
END_TEST

START_TEST(truncation_is_said_once)
{
	feed(FIRST_AB);
	feed("{\"workspace_id\":\"a\",\"stream\":\"stderr\",\"truncated\":true}");
	feed("{\"workspace_id\":\"a\",\"exit_code\":0,\"truncated\":{\"stdout\":false,\"stderr\":"
	     "true}}");
	WROTE(1, CUT("a", "stderr"));
	/* Neither the end of the batch nor a reply cut short says it again. */
	ck_assert_int_eq(fanout_flush(&FO), 0);
	collect();
	feed(SUMMARY_OK);
	WROTE(1, CUT("a", "stderr"));
}
END_TEST

START_TEST(a_target_still_open_at_the_end_says_its_truncation)
{
	feed(FIRST_AB);
	feed("{\"workspace_id\":\"b\",\"stream\":\"stdout\",\"truncated\":true}");
	feed(SUMMARY_OK);
	WROTE(1, CUT("b", "stdout"));
}
END_TEST

static const struct {
	const char *const data[4]; /* frames of target a's stdout, line_max 8 */
	const char *want;
} long_lines[] = {
    {{"0123456789ab\\n", NULL}, "a: 01234567\na: 89ab\n"},
    {{"01234567\\n", NULL}, "a: 01234567\n"}, /* exactly line_max: one line */
    {{"0123", "4567", "\\n", NULL}, "a: 01234567\n"},
    {{"0123", "4567", "89\\n", NULL}, "a: 01234567\na: 89\n"},
    {{"0123456789abcdefXY", NULL}, "a: 01234567\na: 89abcdef\na: XY\n"},
    {{"0123456\\n01234567", "8\\n", NULL}, "a: 0123456\na: 01234567\na: 8\n"},
};

START_TEST(long_lines_are_cut_at_line_max)
{
	char frame[128];

	FO.line_max = 8;
	feed(FIRST_AB);
	for (int i = 0; long_lines[_i].data[i] != NULL; i++) {
		snprintf(frame, sizeof(frame),
		         "{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"%s\"}",
		         long_lines[_i].data[i]);
		feed(frame);
	}
	feed(EXIT("a"));
	wrote(0, long_lines[_i].want, strlen(long_lines[_i].want));
}
END_TEST

START_TEST(targets_the_first_frame_did_not_name_are_written_too)
{
	ck_assert_int_eq(feed(OUT("z", "stdout", "before the first frame\\n")), FFRAME_OUTPUT);
	ck_assert_int_eq(FO.state, FANOUT_TARGETS);
	/* A first frame after other frames is no first frame. */
	ck_assert_int_eq(feed(FIRST_AB), FFRAME_OTHER);
	feed(OUT("m", "stdout", "m1"));
	feed(OUT("c", "stdout", "c1"));
	feed(OUT("m", "stdout", "m2\\n"));
	feed(EXIT("c"));
	WROTE(0, "z: before the first frame\nm: m1m2\nc: c1\n");
	ck_assert_uint_eq(FO.ntargets, 3);
}
END_TEST

START_TEST(a_target_named_twice_is_one_target)
{
	feed("{\"batch_id\":\"b\",\"targets\":[\"b\",\"a\",\"b\",\"a\",\"c\"]}");
	ck_assert_uint_eq(FO.ntargets, 3);
	feed(OUT("b", "stdout", "1"));
	feed(OUT("b", "stdout", "2\\n"));
	WROTE(0, "b: 12\n");
}
END_TEST

START_TEST(other_frames_write_nothing)
{
	feed(FIRST_AB);
	ck_assert_int_eq(feed(OUT("a", "stdlog", "x\\n")), FFRAME_OTHER);
	ck_assert_int_eq(feed("{\"workspace_id\":\"a\",\"progress\":50}"), FFRAME_OTHER);
	ck_assert_int_eq(feed("{\"newer\":true}"), FFRAME_OTHER);
	WROTE(0, "");
	WROTE(1, "");
	ck_assert_int_eq(FO.state, FANOUT_TARGETS);
}
END_TEST

START_TEST(an_error_for_the_whole_batch_is_its_last_frame)
{
	feed(FIRST_AB);
	feed(OUT("a", "stdout", "held"));
	ck_assert_int_eq(feed("{\"error\":{\"code\":\"shutdown\",\"message\":\"m\"}}"),
	                 FFRAME_ERROR);
	ck_assert_int_eq(FO.state, FANOUT_DONE);
	ck_assert_str_eq(
	    json_string_value(json_object_get(json_object_get(FO.last, "error"), "code")),
	    "shutdown");
	WROTE(0, "a: held\n");
}
END_TEST

START_TEST(raw_frames_are_classified_and_not_rendered)
{
	fanout_free(&FO);
	fanout_init(&FO, true);
	ck_assert_int_eq(feed(FIRST_AB), FFRAME_FIRST);
	ck_assert_int_eq(feed(OUT("a", "stdout", "x\\n")), FFRAME_OUTPUT);
	ck_assert_int_eq(feed(EXIT("a")), FFRAME_END);
	ck_assert_int_eq(feed(SUMMARY_OK), FFRAME_SUMMARY);
	WROTE(0, "");
	WROTE(1, "");
	ck_assert_uint_eq(FO.ntargets, 0);
}
END_TEST

static const char *const bad_frames[] = {
    "{\"workspace_id\":\"a\",\"stream\":\"stdout\"}",
    "{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":5}",
    "{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"abc\",\"encoding\":\"base64\"}",
    "{\"workspace_id\":\"a\",\"stream\":\"stdout\",\"data\":\"x\",\"encoding\":\"rot13\"}",
    "{\"workspace_id\":7,\"stream\":\"stdout\",\"data\":\"x\"}",
    "{\"batch_id\":\"b\",\"targets\":[\"a\",7]}",
};

START_TEST(malformed_frames_are_errors)
{
	json_t *f = J(bad_frames[_i]);
	enum fanout_frame kind;

	ck_assert_int_eq(fanout_frame(&FO, f, &kind), EB_ERR_INVAL);
	json_decref(f);
}
END_TEST

/* A batch's model: each target prints lines of its own; the broker cuts each stream into
 * frames at random places, text or base64, and interleaves the targets' frames at random.
 * Read back, every line is whole, behind its target's id, in its target's order. */
struct model {
	unsigned seed;
};

static unsigned rnd(struct model *m, unsigned below)
{
	m->seed = m->seed * 1103515245u + 12345u;
	return (m->seed >> 16) % below;
}

#define MT 6   /* targets */
#define ML 40  /* lines each */
#define MW 120 /* the longest line */

START_TEST(any_interleaving_gives_whole_lines_in_order)
{
	struct model m = {.seed = 11u + (unsigned)_i};
	static char text[MT][2][ML * (MW + 1) + 1];
	size_t len[MT][2], sent[MT][2];
	char first[256] = "{\"batch_id\":\"b\",\"targets\":[";
	int left = 0;

	for (int t = 0; t < MT; t++) {
		snprintf(first + strlen(first), sizeof(first) - strlen(first), "%s\"ws-%d\"",
		         t > 0 ? "," : "", t);
		for (int s = 0; s < 2; s++) {
			char *p = text[t][s];
			for (int l = 0; l < ML; l++) {
				int w = (int)rnd(&m, MW);
				for (int k = 0; k < w; k++)
					*p++ = (char)('!' + rnd(&m, 90));
				if (l < ML - 1 || rnd(&m, 2) == 0)
					*p++ = '\n'; /* the last line may have no newline */
			}
			*p = '\0';
			len[t][s] = (size_t)(p - text[t][s]);
			sent[t][s] = 0;
			left++;
		}
	}
	strcat(first, "]}");
	feed(first);
	while (left > 0) {
		int t = (int)rnd(&m, MT), s = (int)rnd(&m, 2);
		size_t n;
		json_t *f;
		enum fanout_frame kind;
		char ws[16];
		if (sent[t][s] == len[t][s])
			continue;
		n = 1 + rnd(&m, 200);
		if (n > len[t][s] - sent[t][s])
			n = len[t][s] - sent[t][s];
		snprintf(ws, sizeof(ws), "ws-%d", t);
		f = json_pack("{s:s, s:s, s:s%}", "workspace_id", ws, "stream",
		              s == 0 ? "stdout" : "stderr", "data", text[t][s] + sent[t][s], n);
		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(fanout_frame(&FO, f, &kind), 0);
		json_decref(f);
		collect();
		sent[t][s] += n;
		if (sent[t][s] == len[t][s]) {
			left--;
			if (sent[t][1 - s] == len[t][1 - s]) {
				char end[64];
				snprintf(end, sizeof(end),
				         "{\"workspace_id\":\"%s\",\"exit_code\":0}", ws);
				feed(end);
			}
		}
	}
	/* Each stream, read back line by line, is each target's text with its prefix. */
	for (int s = 0; s < 2; s++) {
		size_t pos[MT] = {0};
		char *line = R.bytes[s], *nl;
		for (; line < R.bytes[s] + R.len[s]; line = nl + 1) {
			int t;
			size_t n;
			nl = memchr(line, '\n', (size_t)(R.bytes[s] + R.len[s] - line));
			ck_assert_ptr_nonnull(nl); /* every line ends */
			ck_assert_int_eq(sscanf(line, "ws-%d: ", &t), 1);
			ck_assert(t >= 0 && t < MT);
			line = strchr(line, ':') + 2;
			n = (size_t)(nl - line);
			ck_assert_msg(memcmp(line, text[t][s] + pos[t], n) == 0,
			              "ws-%d: a line that is not its next one", t);
			pos[t] += n;
			/* Its own newline, or the one added at its end. */
			if (pos[t] < len[t][s]) {
				ck_assert_int_eq(text[t][s][pos[t]], '\n');
				pos[t]++;
			}
		}
		for (int t = 0; t < MT; t++)
			ck_assert_uint_eq(pos[t], len[t][s]);
	}
}
END_TEST

/* --- the summary ------------------------------------------------------------------------ */

static const struct {
	const char *summary;
	int want;
} exits[] = {
    {"{\"status\":\"completed\",\"succeeded\":3,\"failed\":0,\"not_started\":0}", 0},
    {"{\"status\":\"completed\",\"succeeded\":0,\"failed\":0,\"not_started\":0,\"results\":[]}",
     0}, /* no targets: nothing failed */
    {"{\"status\":\"completed\",\"succeeded\":2,\"failed\":1,\"not_started\":0}",
     CLIENT_EXIT_BATCH},
    {"{\"status\":\"completed\",\"succeeded\":2,\"failed\":0,\"not_started\":1}",
     CLIENT_EXIT_BATCH},
    {"{\"status\":\"partial_failure\",\"succeeded\":2,\"failed\":1,\"not_started\":0}",
     CLIENT_EXIT_BATCH},
    {"{\"status\":\"failed\",\"succeeded\":0,\"failed\":3,\"not_started\":0}", CLIENT_EXIT_BATCH},
    {"{\"status\":\"stopped\",\"succeeded\":1,\"failed\":1,\"not_started\":5}", CLIENT_EXIT_BATCH},
    {"{\"status\":\"cancelled\",\"succeeded\":0,\"failed\":0,\"not_started\":0}",
     CLIENT_EXIT_BATCH},
    {"{\"status\":\"something_newer\",\"succeeded\":1,\"failed\":0,\"not_started\":0}",
     CLIENT_EXIT_BATCH},
    /* A summary that does not say its counts is no proof of success. */
    {"{\"status\":\"completed\"}", CLIENT_EXIT_BATCH},
    {"{\"status\":\"completed\",\"failed\":\"0\",\"not_started\":0}", CLIENT_EXIT_BATCH},
    {"{\"succeeded\":1,\"failed\":0,\"not_started\":0}", CLIENT_EXIT_BATCH},
};

START_TEST(exit_status_from_the_summary)
{
	json_t *s = J(exits[_i].summary);

	ck_assert_int_eq(fanout_exit_of_summary(s), exits[_i].want);
	json_decref(s);
}
END_TEST

/* fanout_summary_print of text, as a string (malloc'd). */
static char *printed(const char *text)
{
	json_t *s = J(text);
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fanout_summary_print(s, f), 0);
	fclose(f);
	json_decref(s);
	return buf;
}

START_TEST(summary_table_has_a_row_per_result_and_the_counts)
{
	char *got = printed(
	    "{\"batch_id\":\"b-1\",\"status\":\"partial_failure\",\"succeeded\":1,\"failed\":2,"
	    "\"not_started\":1,\"results\":["
	    "{\"workspace_id\":\"ws1\",\"exec_id\":\"e1\",\"status\":\"succeeded\",\"exit_code\":0,"
	    "\"signal\":null,\"duration_ms\":1234,\"error\":null},"
	    "{\"workspace_id\":\"web-2\",\"exec_id\":\"e2\",\"status\":\"failed\",\"exit_code\":"
	    "null,"
	    "\"signal\":\"KILL\",\"duration_ms\":30001,\"error\":null},"
	    "{\"workspace_id\":\"ws3\",\"exec_id\":\"e3\",\"status\":\"failed\",\"exit_code\":2,"
	    "\"signal\":null,\"duration_ms\":7,\"error\":null},"
	    "{\"workspace_id\":\"ws4\",\"exec_id\":null,\"status\":\"not_started\",\"exit_code\":"
	    "null,"
	    "\"signal\":null,\"duration_ms\":null,\"error\":{\"code\":\"workspace_not_running\","
	    "\"message\":\"ws4 is stopped\"}}]}");

	ck_assert_str_eq(got, "WORKSPACE  STATUS       EXIT     DURATION  ERROR\n"
	                      "ws1        succeeded    0        1.234s    -\n"
	                      "web-2      failed       SIGKILL  30.001s   -\n"
	                      "ws3        failed       2        0.007s    -\n"
	                      "ws4        not_started  -        -         workspace_not_running: "
	                      "ws4 is stopped\n"
	                      "batch b-1: partial_failure, 1 succeeded, 2 failed, 1 not started\n");
	free(got);
}
END_TEST

START_TEST(an_empty_batch_prints_only_its_counts)
{
	char *got = printed("{\"batch_id\":\"b-0\",\"status\":\"completed\",\"succeeded\":0,"
	                    "\"failed\":0,\"not_started\":0,\"results\":[]}");

	ck_assert_str_eq(got, "batch b-0: completed, 0 succeeded, 0 failed, 0 not started\n");
	free(got);
}
END_TEST

START_TEST(missing_fields_show_as_dashes)
{
	char *got = printed("{\"status\":\"stopped\",\"results\":[{\"status\":\"running\"}]}");

	ck_assert_str_eq(got, "WORKSPACE  STATUS   EXIT  DURATION  ERROR\n"
	                      "-          running  -     -         -\n"
	                      "batch -: stopped, 0 succeeded, 0 failed, 0 not started\n");
	free(got);
}
END_TEST

/* --- --all's question ------------------------------------------------------------------- */

static const struct {
	bool all, yes, tty, ask;
} asks[] = {
    {true, false, true, true},    {true, true, true, false},   {true, false, false, false},
    {true, true, false, false},   {false, false, true, false}, {false, true, true, false},
    {false, false, false, false},
};

START_TEST(all_asks_on_a_terminal_unless_yes)
{
	ck_assert_int_eq(fanout_must_ask(asks[_i].all, asks[_i].yes, asks[_i].tty), asks[_i].ask);
}
END_TEST

static const struct {
	const char *answer;
	bool yes;
} answers[] = {
    {"y", true},   {"Y", true},    {"yes", true},   {"YES", true}, {" y \r", true},
    {"Yes", true}, {"", false},    {"n", false},    {"no", false}, {"yess", false},
    {"ye", false}, {"y y", false}, {"sure", false},
};

START_TEST(only_yes_confirms)
{
	ck_assert_int_eq(fanout_answer_yes(answers[_i].answer), answers[_i].yes);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client_batch");
	TCase *args = tcase_create("command lines");
	TCase *frames = tcase_create("frames");
	TCase *summary = tcase_create("summary");
	TCase *ask = tcase_create("confirmation");

	tcase_add_checked_fixture(args, NULL, args_free);
	tcase_add_loop_test(args, batch_command_lines_make_the_batch_body, 0, N(batches));
	tcase_add_test(args, one_workspace_is_no_batch);
	tcase_add_test(args, all_and_yes_are_kept);
	tcase_add_test(args, stdin_goes_into_a_batch_body_too);
	tcase_add_loop_test(args, usage_errors_are_201_and_say_why, 0, N(usage_errors));
	tcase_add_test(args, help_is_not_an_error);
	suite_add_tcase(s, args);

	tcase_add_checked_fixture(frames, fanout_setup, fanout_teardown);
	tcase_add_test(frames, interleaved_partial_lines_come_out_whole_and_prefixed);
	tcase_add_test(frames, stdout_and_stderr_are_apart_with_a_line_each);
	tcase_add_test(frames, empty_lines_and_empty_frames);
	tcase_add_test(frames, a_target_s_last_frame_ends_its_unfinished_lines);
	tcase_add_test(frames, the_summary_ends_every_open_target);
	tcase_add_test(frames, a_reply_cut_short_still_writes_what_was_held);
	tcase_add_test(frames, base64_frames_are_decoded_byte_for_byte);
	tcase_add_test(frames, a_truncated_frame_is_said_at_its_target_s_end);
	tcase_add_test(frames, an_exit_frame_s_truncated_is_said_too);
	tcase_add_test(frames, truncation_is_said_once);
	tcase_add_test(frames, a_target_still_open_at_the_end_says_its_truncation);
	tcase_add_loop_test(frames, long_lines_are_cut_at_line_max, 0, N(long_lines));
	tcase_add_test(frames, targets_the_first_frame_did_not_name_are_written_too);
	tcase_add_test(frames, a_target_named_twice_is_one_target);
	tcase_add_test(frames, other_frames_write_nothing);
	tcase_add_test(frames, an_error_for_the_whole_batch_is_its_last_frame);
	tcase_add_test(frames, raw_frames_are_classified_and_not_rendered);
	tcase_add_loop_test(frames, malformed_frames_are_errors, 0, N(bad_frames));
	tcase_add_loop_test(frames, any_interleaving_gives_whole_lines_in_order, 0, 20);
	suite_add_tcase(s, frames);

	tcase_add_loop_test(summary, exit_status_from_the_summary, 0, N(exits));
	tcase_add_test(summary, summary_table_has_a_row_per_result_and_the_counts);
	tcase_add_test(summary, an_empty_batch_prints_only_its_counts);
	tcase_add_test(summary, missing_fields_show_as_dashes);
	suite_add_tcase(s, summary);

	tcase_add_loop_test(ask, all_asks_on_a_terminal_unless_yes, 0, N(asks));
	tcase_add_loop_test(ask, only_yes_confirms, 0, N(answers));
	suite_add_tcase(s, ask);
	return tu_run_suite(s);
}
