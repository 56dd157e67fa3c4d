/* tests/check_exec_client.c: `exec-broker exec`, the client, run as a process against a
 * real `exec-broker serve` (real PostgreSQL, real sshd): stdout and stderr byte for byte
 * and apart, base64 frames decoded, exit codes and signals passed through, the client's own
 * exit codes for a timeout, refused tokens, missing workspaces, other API errors, an
 * unreachable broker and a broker killed mid-stream, --json, and every request option. */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

/* The exit codes `exec-broker exec --help` and the README document. */
#define X_TIMEOUT       124
#define X_USAGE         201
#define X_UNREACHABLE   202
#define X_AUTH          203
#define X_NOT_FOUND     204
#define X_HOST          205
#define X_API           206
#define X_NO_LAST_FRAME 207

extern char **environ;

static struct kit_world W;
static struct kit_broker B; /* started in main(), shared */
static char URL[64];
static char *TOKFILE_WS, *TOKFILE_ADMIN; /* written in main() */

/* One run of the client. */
struct run {
	int code; /* exit status; 1000 + N if killed by signal N */
	char *out, *err;
	size_t out_len, err_len;
	char outp[128], errp[128];
};

/* Starts `exec-broker exec --url URL ARGS...` with stdout and stderr in files, stdin from
 * stdin_path (/dev/null when NULL) and EXEC_BROKER_TOKEN=token_env unless NULL (no other
 * EXEC_BROKER_* variable). */
static pid_t cli_start(struct run *r, const char *url, const char *token_env,
                       const char *stdin_path, const char *const args[])
{
	static int seq;
	const char *argv[64];
	char *envv[256], tokvar[128];
	int n = 0, e = 0;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	snprintf(r->outp, sizeof(r->outp), "/tmp/eb-exec-%d-%d.out", (int)getpid(), seq);
	snprintf(r->errp, sizeof(r->errp), "/tmp/eb-exec-%d-%d.err", (int)getpid(), seq++);
	argv[n++] = kit_broker_bin();
	argv[n++] = "exec";
	argv[n++] = "--url";
	argv[n++] = url;
	for (int i = 0; args[i] != NULL && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	for (int i = 0; environ[i] != NULL && e < 250; i++)
		if (strncmp(environ[i], "EXEC_BROKER_", 12) != 0)
			envv[e++] = environ[i];
	if (token_env != NULL) {
		snprintf(tokvar, sizeof(tokvar), "EXEC_BROKER_TOKEN=%s", token_env);
		envv[e++] = tokvar;
	}
	envv[e] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY);
		int out = open(r->outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int err = open(r->errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
		    dup2(err, 2) < 0)
			_exit(126);
		execve(argv[0], (char *const *)argv, envv);
		_exit(127);
	}
	return pid;
}

/* Waits (60 s, then SIGKILL) and reads both files. */
static void cli_wait(pid_t pid, struct run *r)
{
	long long end = kit_now_ms() + 60000;
	int st = 0;

	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (kit_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		kit_sleep_ms(10);
	}
	r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
	r->out = kit_file_read(r->outp, &r->out_len);
	r->err = kit_file_read(r->errp, &r->err_len);
	ck_assert_ptr_nonnull(r->out);
	ck_assert_ptr_nonnull(r->err);
	unlink(r->outp);
	unlink(r->errp);
}

static void cli_in(struct run *r, const char *stdin_path, const char *const args[])
{
	cli_wait(cli_start(r, URL, NULL, stdin_path, args), r);
}

/* The common case: a token file, stdin empty. */
static void cli(struct run *r, const char *const args[])
{
	cli_in(r, NULL, args);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

/* stderr is exactly one line "exec-broker: <code>: ...". */
static void one_error_line(const struct run *r, const char *code)
{
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "exec-broker: %s: ", code);
	ck_assert_msg(strncmp(r->err, prefix, strlen(prefix)) == 0 && tu_lines(r->err) == 1 &&
	                  r->err[r->err_len - 1] == '\n',
	              "stderr is not one line \"%s...\": [%s]", prefix, r->err);
}

/* Writes n bytes to a fresh file that the workspace account can read too. */
static char *tmp_file(const char *name, const void *p, size_t n)
{
	char *path = kit_tmp_path(name);
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(p, 1, n, f), n);
	ck_assert_int_eq(fclose(f), 0);
	chmod(path, 0644);
	return path;
}

START_TEST(stdout_and_stderr_are_exact_and_apart)
{
	const char *args[] = {"--token-file",
	                      TOKFILE_WS,
	                      "ws-a1",
	                      "--",
	                      "sh",
	                      "-c",
	                      "printf 'out 1\\n'; printf 'err 1\\n' >&2; printf 'out 2'; "
	                      "printf 'err \\303\\251 2' >&2",
	                      NULL};
	struct run r;

	cli(&r, args);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.out_len, 11);
	ck_assert(memcmp(r.out, "out 1\nout 2", 11) == 0);
	ck_assert_uint_eq(r.err_len, 14);
	ck_assert(memcmp(r.err, "err 1\nerr \xc3\xa9 2", 14) == 0);
	run_free(&r);
}
END_TEST

/* Bytes that are not UTF-8 come as base64 frames; NULs and control characters inside
 * UTF-8 come as JSON escapes. Both are written back byte for byte. */
START_TEST(binary_output_is_decoded_byte_for_byte)
{
	static const char want_out[] = "\377\000\001abc\200\n";
	static const char want_err[] = "a\000b\tc\033[0m\n";
	const char *args[] = {
	    "--token-file",
	    TOKFILE_WS,
	    "ws-a1",
	    "--",
	    "sh",
	    "-c",
	    "printf '\\377\\000\\001abc\\200\\n'; printf 'a\\000b\\tc\\033[0m\\n' >&2",
	    NULL};
	const char *jargs[] = {
	    "--json", "--token-file", TOKFILE_WS, "ws-a1",
	    "--",     "sh",           "-c",       "printf '\\377\\000\\001abc\\200\\n'",
	    NULL};
	struct run r;
	struct kit_frames f;

	cli(&r, args);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.out_len, sizeof(want_out) - 1);
	ck_assert(memcmp(r.out, want_out, sizeof(want_out) - 1) == 0);
	ck_assert_uint_eq(r.err_len, sizeof(want_err) - 1);
	ck_assert(memcmp(r.err, want_err, sizeof(want_err) - 1) == 0);
	run_free(&r);
	/* the same output came as a base64 frame */
	cli(&r, jargs);
	ck_assert_int_eq(r.code, 0);
	kit_frames_init(&f);
	kit_frames_parse(&f, r.out, r.out_len);
	ck_assert_int_ge(f.b64, 1);
	ck_assert_uint_eq(f.out_len, sizeof(want_out) - 1);
	kit_frames_free(&f);
	run_free(&r);
}
END_TEST

/* 900 KB of random bytes (base64 frames, many of them) and 600 KB of text on stderr at
 * the same time. */
START_TEST(large_output_is_exact)
{
	size_t n = 900 * 1024;
	unsigned char *data = malloc(n);
	char *path, cmd[512], *want_err;
	size_t want_err_len = 0;
	struct run r;

	ck_assert_ptr_nonnull(data);
	srandom(7);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(random() >> 7);
	path = tmp_file("big", data, n);
	snprintf(cmd, sizeof(cmd), "cat \"$0\" & seq 1 90000 >&2; wait");
	const char *args[] = {"--token-file", TOKFILE_WS, "ws-a1", "--", "sh",
	                      "-c",           cmd,        path,    NULL};
	cli(&r, args);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.out_len, n);
	ck_assert_msg(memcmp(r.out, data, n) == 0, "stdout differs from the file");
	want_err = malloc(600 * 1024);
	for (int i = 1; i <= 90000; i++)
		want_err_len += (size_t)sprintf(want_err + want_err_len, "%d\n", i);
	ck_assert_uint_eq(r.err_len, want_err_len);
	ck_assert(memcmp(r.err, want_err, want_err_len) == 0);
	run_free(&r);
	unlink(path);
	free(path);
	free(want_err);
	free(data);
}
END_TEST

START_TEST(exit_code_is_passed_through)
{
	static const char *const codes[] = {"0", "3", "255"};
	char cmd[64];
	const char *args[] = {"--token-file", TOKFILE_WS, "ws-a1", "--", "sh", "-c", cmd, NULL};
	struct run r;

	snprintf(cmd, sizeof(cmd), "echo hi; exit %s", codes[_i]);
	cli(&r, args);
	ck_assert_int_eq(r.code, atoi(codes[_i]));
	ck_assert_str_eq(r.out, "hi\n");
	ck_assert_str_eq(r.err, "");
	run_free(&r);
}
END_TEST

START_TEST(signal_is_128_plus_n)
{
	static const int sigs[] = {SIGKILL, SIGTERM};
	char cmd[64];
	const char *args[] = {"--token-file", TOKFILE_WS, "ws-a1", "--", "sh", "-c", cmd, NULL};
	struct run r;

	snprintf(cmd, sizeof(cmd), "kill -%d $$", sigs[_i]);
	cli(&r, args);
	ck_assert_int_eq(r.code, 128 + sigs[_i]);
	ck_assert_str_eq(r.err, "");
	run_free(&r);
}
END_TEST

START_TEST(timeout_is_124_with_one_line)
{
	const char *args[] = {
	    "--timeout", "1",  "--token-file",           TOKFILE_WS, "ws-a1", "--",
	    "sh",        "-c", "echo started; sleep 30", NULL};
	struct run r;

	cli(&r, args);
	ck_assert_int_eq(r.code, X_TIMEOUT);
	ck_assert_str_eq(r.out, "started\n");
	one_error_line(&r, "exec_timeout");
	run_free(&r);
}
END_TEST

/* A refused token: unknown, then one from the environment that is not a token at all. */
START_TEST(bad_token_is_auth_failure_with_one_line)
{
	char *tf = tmp_file("badtok", "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 48);
	const char *args[] = {"--token-file", tf, "ws-a1", "--", "true", NULL};
	const char *eargs[] = {"ws-a1", "--", "true", NULL};
	struct run r;

	cli(&r, args);
	ck_assert_int_eq(r.code, X_AUTH);
	ck_assert_str_eq(r.out, "");
	one_error_line(&r, "unauthorized");
	ck_assert_msg(strstr(r.err, "ebk_AAAA") == NULL, "the token was printed: %s", r.err);
	run_free(&r);
	cli_wait(cli_start(&r, URL, "not-a-token", NULL, eargs), &r);
	ck_assert_int_eq(r.code, X_AUTH);
	one_error_line(&r, "unauthorized");
	ck_assert_msg(strstr(r.err, "not-a-token") == NULL, "the token was printed: %s", r.err);
	run_free(&r);
	unlink(tf);
	free(tf);
}
END_TEST

/* The token from EXEC_BROKER_TOKEN works as well as from a file. */
START_TEST(token_from_environment)
{
	const char *args[] = {"ws-a1", "--", "echo", "env token", NULL};
	struct run r;

	cli_wait(cli_start(&r, URL, W.tok_ws, NULL, args), &r);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "env token\n");
	run_free(&r);
	/* no token at all: a usage error, before any request */
	cli_wait(cli_start(&r, URL, NULL, NULL, args), &r);
	ck_assert_int_eq(r.code, X_USAGE);
	run_free(&r);
}
END_TEST

START_TEST(missing_workspace_is_not_found)
{
	const char *args[] = {"--token-file", TOKFILE_WS, "ws-nope", "--", "true", NULL};
	const char *other[] = {"--token-file", TOKFILE_WS, "ws-b1", "--", "true", NULL};
	struct run r;

	cli(&r, args);
	ck_assert_int_eq(r.code, X_NOT_FOUND);
	one_error_line(&r, "not_found");
	run_free(&r);
	/* another org's workspace answers the same */
	cli(&r, other);
	ck_assert_int_eq(r.code, X_NOT_FOUND);
	one_error_line(&r, "not_found");
	run_free(&r);
}
END_TEST

/* Other refusals: a stopped workspace (409), an SSH host nothing listens on (502), a bad
 * --cwd (400). */
START_TEST(other_api_errors_have_their_codes)
{
	char *tf = tmp_file("orgtok", W.tok_org, strlen(W.tok_org));
	const char *stopped[] = {"--token-file", tf, "ws-stopped", "--", "true", NULL};
	const char *closed[] = {"--token-file", tf, "ws-closed", "--", "true", NULL};
	const char *badcwd[] = {"--token-file", tf,   "--cwd", "relative",
	                        "ws-a1",        "--", "true",  NULL};
	struct run r;

	cli(&r, stopped);
	ck_assert_int_eq(r.code, X_API);
	one_error_line(&r, "workspace_not_running");
	run_free(&r);
	cli(&r, closed);
	ck_assert_int_eq(r.code, X_HOST);
	one_error_line(&r, "ssh_connect_failed");
	run_free(&r);
	cli(&r, badcwd);
	ck_assert_int_eq(r.code, X_API);
	one_error_line(&r, "invalid_request");
	run_free(&r);
	unlink(tf);
	free(tf);
}
END_TEST

START_TEST(unreachable_broker_is_202)
{
	char url[64];
	const char *args[] = {"--token-file", TOKFILE_WS, "ws-a1", "--", "true", NULL};
	struct run r;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d", kit_free_port());
	cli_wait(cli_start(&r, url, NULL, NULL, args), &r);
	ck_assert_int_eq(r.code, X_UNREACHABLE);
	ck_assert_str_eq(r.out, "");
	ck_assert_msg(strncmp(r.err, "exec-broker: cannot reach the broker", 36) == 0 &&
	                  tu_lines(r.err) == 1,
	              "%s", r.err);
	run_free(&r);
}
END_TEST

START_TEST(json_prints_the_frames)
{
	const char *args[] = {
	    "--json", "--token-file", TOKFILE_WS, "ws-a1",
	    "--",     "sh",           "-c",       "echo hi; echo oops >&2; exit 4",
	    NULL};
	struct run r;
	struct kit_frames f;

	cli(&r, args);
	ck_assert_int_eq(r.code, 4);
	ck_assert_str_eq(r.err, "");
	kit_frames_init(&f);
	kit_frames_parse(&f, r.out, r.out_len);
	ck_assert_msg(f.bad == 0, "%s", f.bad_line);
	ck_assert_int_eq(tu_lines(r.out), (int)kit_nframes(&f));
	ck_assert_ptr_nonnull(sv_str(kit_frame(&f, 0), "exec_id"));
	ck_assert_int_eq(f.terminal, 1);
	ck_assert_int_eq(f.terminal_at, (int)kit_nframes(&f) - 1);
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 4);
	ck_assert_str_eq(f.out, "hi\n");
	ck_assert_str_eq(f.err, "oops\n");
	kit_frames_free(&f);
	run_free(&r);
}
END_TEST

START_TEST(env_and_cwd_reach_the_command)
{
	const char *args[] = {"--token-file",
	                      TOKFILE_WS,
	                      "--env",
	                      "EB_A=one two",
	                      "--env",
	                      "EB_B=x=y",
	                      "--cwd",
	                      "/tmp",
	                      "ws-a1",
	                      "--",
	                      "sh",
	                      "-c",
	                      "printf '%s|%s|' \"$EB_A\" \"$EB_B\"; pwd",
	                      NULL};
	const char *bad[] = {"--token-file", TOKFILE_WS, "--env", "NOEQUALS",
	                     "ws-a1",        "--",       "true",  NULL};
	struct run r;

	cli(&r, args);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "one two|x=y|/tmp\n");
	run_free(&r);
	cli(&r, bad);
	ck_assert_int_eq(r.code, X_USAGE);
	run_free(&r);
}
END_TEST

/* --stdin-file and -i, with text and with bytes that are not UTF-8 (sent as base64). */
START_TEST(stdin_file_and_dash_i)
{
	static const char bin[] = "\377\376\000zz\n\200";
	static const char text[] = "h\303\251llo\nworld\n";
	char *bf = tmp_file("stdin-bin", bin, sizeof(bin) - 1);
	char *tf = tmp_file("stdin-txt", text, sizeof(text) - 1);
	const char *fargs[] = {"--token-file", TOKFILE_WS, "--stdin-file", bf,
	                       "ws-a1",        "--",       "cat",          NULL};
	const char *targs[] = {"--token-file", TOKFILE_WS, "--stdin-file", tf,
	                       "ws-a1",        "--",       "cat",          NULL};
	const char *iargs[] = {"--token-file", TOKFILE_WS, "-i", "ws-a1", "--", "cat", NULL};
	const char *none[] = {"--token-file", TOKFILE_WS, "ws-a1", "--", "cat", NULL};
	const char *both[] = {"--token-file", TOKFILE_WS, "-i", "--stdin-file", tf, "ws-a1",
	                      "--",           "cat",      NULL};
	struct run r;

	cli(&r, fargs);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.out_len, sizeof(bin) - 1);
	ck_assert(memcmp(r.out, bin, sizeof(bin) - 1) == 0);
	run_free(&r);
	cli(&r, targs);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, text);
	run_free(&r);
	cli_in(&r, bf, iargs);
	ck_assert_int_eq(r.code, 0);
	ck_assert_uint_eq(r.out_len, sizeof(bin) - 1);
	ck_assert(memcmp(r.out, bin, sizeof(bin) - 1) == 0);
	run_free(&r);
	/* without either, the command's stdin is empty even when ours is not */
	cli_in(&r, tf, none);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "");
	run_free(&r);
	cli(&r, both);
	ck_assert_int_eq(r.code, X_USAGE);
	run_free(&r);
	unlink(bf);
	unlink(tf);
	free(bf);
	free(tf);
}
END_TEST

/* An admin token needs a reason; with one it runs and the reason is in the audit row. */
/* A batch through the client against the real broker: each line whole behind its
 * workspace, stdout and stderr apart, the table and the counts on stderr, and the exit
 * status: 0 when every workspace exited 0, else 1. */
START_TEST(a_batch_prefixes_lines_and_sums_up)
{
	const char *mixed[] = {"--token-file",
	                       TOKFILE_ADMIN,
	                       "--break-glass-reason",
	                       "fleet check",
	                       "--workspaces",
	                       "ws-a1,ws-c0,ws-stopped",
	                       "--max-errors",
	                       "5",
	                       "--",
	                       "sh",
	                       "-c",
	                       "echo one; echo two >&2; printf three",
	                       NULL};
	const char *clean[] = {"--token-file", TOKFILE_ADMIN,  "--break-glass-reason",
	                       "fleet check",  "--workspaces", "ws-a1,ws-c0",
	                       "--",           "true",         NULL};
	struct run r;

	cli(&r, mixed);
	ck_assert_int_eq(r.code, 1);
	ck_assert_msg(strstr(r.out, "ws-a1: one\n") != NULL &&
	                  strstr(r.out, "ws-c0: one\n") != NULL &&
	                  strstr(r.out, "ws-a1: three\n") != NULL && strstr(r.out, "two") == NULL,
	              "stdout: [%s]", r.out);
	ck_assert_int_eq(tu_lines(r.out), 4);
	ck_assert_msg(strstr(r.err, "ws-c0: two\n") != NULL &&
	                  strstr(r.err, "workspace_not_running") != NULL &&
	                  strstr(r.err, "partial_failure, 2 succeeded, 1 failed, 0 not started") !=
	                      NULL,
	              "stderr: [%s]", r.err);
	run_free(&r);
	cli(&r, clean);
	ck_assert_msg(r.code == 0, "exit %d: %s", r.code, r.err);
	ck_assert_str_eq(r.out, "");
	ck_assert_ptr_nonnull(strstr(r.err, "completed, 2 succeeded, 0 failed, 0 not started"));
	run_free(&r);
}
END_TEST

START_TEST(break_glass_with_admin_token)
{
	char reason[64], sql[160], *v;
	const char *noreason[] = {"--token-file", TOKFILE_ADMIN, "ws-low", "--", "true", NULL};
	const char *args[] = {"--token-file", TOKFILE_ADMIN, "--break-glass-reason",
	                      reason,         "ws-low",      "--",
	                      "echo",         "glass",       NULL};
	struct run r;

	snprintf(reason, sizeof(reason), "incident %d from the cli", (int)getpid());
	cli(&r, noreason);
	ck_assert_int_eq(r.code, X_AUTH);
	one_error_line(&r, "break_glass_reason_required");
	run_free(&r);
	cli(&r, args);
	ck_assert_int_eq(r.code, 0);
	ck_assert_str_eq(r.out, "glass\n");
	run_free(&r);
	snprintf(sql, sizeof(sql),
	         "SELECT status || ' ' || workspace_id FROM exec_audit WHERE "
	         "break_glass_reason = '%s'",
	         reason);
	v = sv_query(W.db, sql);
	ck_assert_str_eq(v, "exited ws-low");
	free(v);
}
END_TEST

/* A broker that dies mid-stream leaves no last frame: the client says so, distinctly. */
START_TEST(broker_killed_mid_stream_is_207)
{
	struct kit_broker b = {0};
	char url[64], *gate = kit_tmp_path("gate207");
	const char *args[] = {"--token-file",
	                      TOKFILE_WS,
	                      "ws-a1",
	                      "--",
	                      "sh",
	                      "-c",
	                      "echo ready; while [ ! -e \"$0\" ]; do sleep 0.05; done",
	                      gate,
	                      NULL};
	struct run r;
	long long end;
	pid_t pid;

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-exec-client-kill", NULL), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", b.port);
	pid = cli_start(&r, url, NULL, NULL, args);
	end = kit_now_ms() + KIT_WAIT_MS;
	for (;;) {
		char *o = kit_file_read(r.outp, NULL);
		bool ready = o != NULL && strcmp(o, "ready\n") == 0;
		free(o);
		if (ready)
			break;
		ck_assert_msg(kit_now_ms() < end, "no \"ready\" from the command");
		kit_sleep_ms(20);
	}
	kit_broker_kill(&b);
	cli_wait(pid, &r);
	ck_assert_int_eq(r.code, X_NO_LAST_FRAME);
	ck_assert_str_eq(r.out, "ready\n");
	ck_assert_msg(strstr(r.err, "without a last frame") != NULL && tu_lines(r.err) == 1, "%s",
	              r.err);
	run_free(&r);
	sv_touch(gate); /* the orphaned command ends */
	unlink(gate);
	free(gate);
}
END_TEST

/* Our stdout closed (as `| head` closes it): the client stops with 128+SIGPIPE at once,
 * rather than waiting for a command that would run for a minute. */
START_TEST(closed_stdout_is_141)
{
	const char *argv[] = {kit_broker_bin(),   "exec",  "--url", URL,  "--token-file",
	                      TOKFILE_WS,         "ws-a1", "--",    "sh", "-c",
	                      "echo x; sleep 60", NULL};
	long long t0 = kit_now_ms();
	int p[2], st = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]); /* nobody reads: the first write fails with EPIPE */
		if (dup2(p[1], 1) < 0)
			_exit(126);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[0]);
	close(p[1]);
	while (waitpid(pid, &st, WNOHANG) == 0 && kit_now_ms() - t0 < 30000)
		kit_sleep_ms(20);
	if (kit_now_ms() - t0 >= 30000) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGPIPE, "status %#x", st);
	ck_assert_int_lt(kit_now_ms() - t0, 30000);
}
END_TEST

START_TEST(usage_errors_are_201)
{
	static const char *const cases[][6] = {
	    {"ws-a1", "true", NULL}, /* no -- */
	    {"--", "true", NULL},    /* no workspace */
	    {"ws-a1", "--", NULL},   /* no command */
	    {"--timeout", "soon", "ws-a1", "--", "true", NULL},
	    {"--no-such-option", "ws-a1", "--", "true", NULL},
	};
	struct run r;

	cli_wait(cli_start(&r, URL, W.tok_ws, NULL, cases[_i]), &r);
	ck_assert_int_eq(r.code, X_USAGE);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_ne(r.err, "");
	run_free(&r);
}
END_TEST

#define ADD_LOOP(s, fn, n) SV_ADD_LOOP(s, fn, n, 60)
#define ADD(s, fn)         ADD_LOOP(s, fn, 1)

int main(void)
{
	Suite *s = suite_create("exec_client");
	char line[128];
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_broker_start(&B, W.db, "eb-exec-client", NULL) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	snprintf(URL, sizeof(URL), "http://127.0.0.1:%d", B.port);
	/* Token files as people write them: surrounding blanks and a newline are ignored. */
	TOKFILE_WS = kit_tmp_path("tok-ws");
	TOKFILE_ADMIN = kit_tmp_path("tok-admin");
	snprintf(line, sizeof(line), "  %s \n# more\n", W.tok_ws);
	if (kit_file_exists(TOKFILE_WS) || kit_file_exists(TOKFILE_ADMIN))
		return EXIT_FAILURE;
	FILE *f = fopen(TOKFILE_WS, "w");
	if (f == NULL || fputs(line, f) < 0 || fclose(f) != 0)
		return EXIT_FAILURE;
	snprintf(line, sizeof(line), "%s\n", W.tok_admin);
	f = fopen(TOKFILE_ADMIN, "w");
	if (f == NULL || fputs(line, f) < 0 || fclose(f) != 0)
		return EXIT_FAILURE;

	ADD(s, stdout_and_stderr_are_exact_and_apart);
	ADD(s, binary_output_is_decoded_byte_for_byte);
	ADD(s, large_output_is_exact);
	ADD_LOOP(s, exit_code_is_passed_through, 3);
	ADD_LOOP(s, signal_is_128_plus_n, 2);
	ADD(s, timeout_is_124_with_one_line);
	ADD(s, bad_token_is_auth_failure_with_one_line);
	ADD(s, token_from_environment);
	ADD(s, missing_workspace_is_not_found);
	ADD(s, other_api_errors_have_their_codes);
	ADD(s, unreachable_broker_is_202);
	ADD(s, json_prints_the_frames);
	ADD(s, env_and_cwd_reach_the_command);
	ADD(s, stdin_file_and_dash_i);
	ADD(s, break_glass_with_admin_token);
	ADD(s, a_batch_prefixes_lines_and_sums_up);
	ADD(s, broker_killed_mid_stream_is_207);
	ADD(s, closed_stdout_is_141);
	ADD_LOOP(s, usage_errors_are_201, 5);
	failed = tu_run_suite(s);
	unlink(TOKFILE_WS);
	unlink(TOKFILE_ADMIN);
	if (kit_broker_stop(&B) != 0)
		failed = EXIT_FAILURE;
	th_teardown();
	return failed;
}
