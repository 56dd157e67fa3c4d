/* tests/check_command.c: the remote command string. Quoting is checked by handing the
 * built string to a real /bin/sh -c, as sshd hands it to the login shell, and comparing
 * the argv the program receives with what was sent, byte for byte. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "pool/command.h"
#include "tests/runner.h"

#define B(s) ((struct eb_bytes){s, sizeof(s) - 1})

/* Runs /bin/sh -c cmd; returns its stdout (length in *len) and its exit status. */
static char *run_sh(const char *cmd, size_t *len, int *status)
{
	int fd[2];
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	pid_t pid;
	ssize_t r;

	ck_assert_int_eq(pipe(fd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	while ((r = read(fd[0], buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	close(fd[0]);
	waitpid(pid, status, 0);
	*len = n;
	return buf;
}

/* Strips the "exec-broker-pgid N\n" line and checks N is the shell's pid (a number). */
static const char *after_pgid(const char *out, size_t len, size_t *rest)
{
	const char *nl = memchr(out, '\n', len);
	const char *tag = COMMAND_PGID_TAG;

	ck_assert_ptr_nonnull(nl);
	ck_assert_int_eq(strncmp(out, tag, strlen(tag)), 0);
	ck_assert_int_gt(atol(out + strlen(tag)), 1);
	*rest = len - (size_t)(nl + 1 - out);
	return nl + 1;
}

static const struct eb_bytes hostile[] = {
    B("it's"),    B("\"double\""),
    B("$(id)"),   B("`id`"),
    B("a;b"),     B("a|b"),
    B("*"),       B("~"),
    B("$HOME"),   B("line1\nline2"),
    B("-rf"),     B(""),
    B("a b  c"),  B("\\"),
    B("'"),       B("''"),
    B("\t"),      B("caf\xc3\xa9 \xf0\x9f\x9a\x80"),
    B("&& true"), B("!"),
    B("#x"),      B("{a,b}"),
    B("${x:-y}"), B("\x01\x7f\xff"),
};

/* printf '%s\0' prints each argument followed by NUL: the received argv, exactly. */
START_TEST(hostile_argv_arrives_unchanged)
{
	size_t n = sizeof(hostile) / sizeof(hostile[0]);
	struct eb_bytes *argv = calloc(n + 2, sizeof(*argv));
	struct command_spec spec = {.argv = argv, .argc = n + 2, .timeout_ms = 30000};
	char err[128], *cmd, *out, *want;
	size_t len, rest, wlen = 0;
	const char *got;
	int status;

	argv[0] = B("printf");
	argv[1] = B("%s\\0");
	for (size_t i = 0; i < n; i++)
		argv[i + 2] = hostile[i];
	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d for %s", status,
	              cmd);
	got = after_pgid(out, len, &rest);
	want = malloc(1 << 16);
	for (size_t i = 0; i < n; i++) {
		memcpy(want + wlen, hostile[i].p, hostile[i].len);
		wlen += hostile[i].len;
		want[wlen++] = '\0';
	}
	ck_assert_uint_eq(rest, wlen);
	ck_assert_int_eq(memcmp(got, want, wlen), 0);
	free(want);
	free(out);
	free(cmd);
	free(argv);
}
END_TEST

/* A 30 KiB element with quotes and newlines in it goes through whole. */
START_TEST(large_element_arrives_unchanged)
{
	size_t big = 30 * 1024;
	char *s = malloc(big);
	struct eb_bytes argv[3];
	struct command_spec spec = {.argv = argv, .argc = 3, .timeout_ms = 30000};
	char err[128], *cmd, *out;
	size_t len, rest;
	const char *got;
	int status;

	for (size_t i = 0; i < big; i++)
		s[i] = i % 64 == 0 ? '\'' : "ab\"$`\\ \nc"[i % 9];
	argv[0] = B("printf");
	argv[1] = B("%s");
	argv[2] = (struct eb_bytes){s, big};
	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	got = after_pgid(out, len, &rest);
	ck_assert_uint_eq(rest, big);
	ck_assert_int_eq(memcmp(got, s, big), 0);
	free(out);
	free(cmd);
	free(s);
}
END_TEST

START_TEST(env_and_cwd_apply_inside_the_command)
{
	struct eb_bytes argv[] = {B("sh"), B("-c"),
	                          B("printf '%s|%s|%s' \"$GREETING\" \"$Q\" \"$PWD\"")};
	struct eb_bytes names[] = {B("GREETING"), B("Q")};
	struct eb_bytes values[] = {B("hello world"), B("it's $(id) `x`")};
	struct command_spec spec = {.argv = argv,
	                            .argc = 3,
	                            .env_names = names,
	                            .env_values = values,
	                            .nenv = 2,
	                            .cwd = "/usr/share",
	                            .timeout_ms = 30000};
	char err[128], *cmd, *out;
	size_t len, rest;
	const char *got;
	int status;

	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	got = after_pgid(out, len, &rest);
	ck_assert_uint_eq(rest, strlen("hello world|it's $(id) `x`|/usr/share"));
	ck_assert_int_eq(memcmp(got, "hello world|it's $(id) `x`|/usr/share", rest), 0);
	free(out);
	free(cmd);
}
END_TEST

START_TEST(missing_cwd_means_the_program_never_runs)
{
	struct eb_bytes argv[] = {B("touch"), B("/tmp/eb-command-should-not-exist")};
	struct command_spec spec = {
	    .argv = argv, .argc = 2, .cwd = "/nonexistent/dir", .timeout_ms = 30000};
	char err[128], *cmd, *out;
	size_t len;
	int status;

	unlink("/tmp/eb-command-should-not-exist");
	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	ck_assert_int_ne(access("/tmp/eb-command-should-not-exist", F_OK), 0);
	free(out);
	free(cmd);
}
END_TEST

/* The remote timeout(1) is the second line of defence: it ends the command by itself, at a
 * fraction of a second too. */
START_TEST(remote_timeout_ends_the_command)
{
	struct eb_bytes argv[] = {B("sleep"), B("30")};
	struct command_spec spec = {.argv = argv, .argc = 2, .timeout_ms = 250, .kill_after_s = 1};
	char err[128], *cmd, *out;
	size_t len;
	int status;

	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 124);
	free(out);
	free(cmd);
}
END_TEST

/* The host's limit is the exec's own deadline, to the millisecond: TERM then, KILL after
 * the kill grace, and no more. */
START_TEST(remote_timeout_is_the_deadline_to_the_millisecond)
{
	struct eb_bytes argv[] = {B("sleep"), B("30")};
	struct command_spec spec = {
	    .argv = argv, .argc = 2, .timeout_ms = 14237, .kill_after_s = 5};
	char err[128], *cmd;

	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), 0);
	ck_assert_msg(strstr(cmd, " timeout -k 5 14.237 'sleep' '30'") != NULL, "%s", cmd);
	free(cmd);
}
END_TEST

static const struct {
	struct eb_bytes argv[2];
	size_t argc;
	struct eb_bytes env_name, env_value;
	const char *cwd;
	const char *says;
} refused[] = {
    {{B("")}, 1, {0}, {0}, NULL, "argv[0]"},
    {{B("ls"), B("a\0b")}, 2, {0}, {0}, NULL, "argv[1] contains a NUL"},
    {{B("l\0s")}, 1, {0}, {0}, NULL, "argv[0] contains a NUL"},
    {{B("env")}, 1, B("1X"), B("v"), NULL, "env name"},
    {{B("env")}, 1, B("A-B"), B("v"), NULL, "env name"},
    {{B("env")}, 1, B(""), B("v"), NULL, "env name"},
    {{B("env")}, 1, B("A;id"), B("v"), NULL, "env name"},
    {{B("env")}, 1, B("OK"), B("v\0w"), NULL, "env value"},
    {{B("ls")}, 1, {0}, {0}, "relative/dir", "absolute"},
};

START_TEST(bad_specs_are_refused_before_anything_is_sent)
{
	struct command_spec spec = {.argv = refused[_i].argv,
	                            .argc = refused[_i].argc,
	                            .cwd = refused[_i].cwd,
	                            .timeout_ms = 30000};
	char err[128] = "", *cmd = (char *)"untouched";

	if (refused[_i].env_name.p != NULL) {
		spec.env_names = &refused[_i].env_name;
		spec.env_values = &refused[_i].env_value;
		spec.nenv = 1;
	}
	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), EB_ERR_INVAL);
	ck_assert_ptr_null(cmd);
	ck_assert_msg(strstr(err, refused[_i].says) != NULL, "case %d: %s", _i, err);
}
END_TEST

/* Quoting can make a command four times longer: past the limit it is refused, not cut. */
START_TEST(overlong_command_is_refused)
{
	size_t big = 10 * 1024;
	char *s = malloc(big), err[160] = "", *cmd = NULL;
	struct eb_bytes argv[2] = {B("echo"), {s, big}};
	struct command_spec spec = {.argv = argv, .argc = 2, .timeout_ms = 30000};

	memset(s, '\'', big);
	ck_assert_int_eq(command_build(&spec, &cmd, err, sizeof(err)), EB_ERR_RANGE);
	ck_assert_ptr_null(cmd);
	ck_assert_ptr_nonnull(strstr(err, "once quoted"));
	free(s);
}
END_TEST

START_TEST(quote_examples)
{
	static const struct {
		const char *in, *out;
	} q[] = {{"", "''"}, {"a", "'a'"}, {"it's", "'it'\\''s'"}, {"''", "''\\'''\\'''"}};
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		char *buf = NULL;
		size_t len = 0, cap = 0;
		ck_assert_int_eq(command_quote(&buf, &len, &cap, q[i].in, strlen(q[i].in)), 0);
		ck_assert_str_eq(buf, q[i].out);
		free(buf);
	}
}
END_TEST

/* The kill command ends a whole process group, children included. */
START_TEST(kill_group_ends_every_process_of_the_group)
{
	char *kill_cmd, *out, script[512];
	size_t len;
	int status, fd[2];
	pid_t leader;

	ck_assert_int_eq(pipe(fd), 0);
	leader = fork();
	if (leader == 0) {
		setsid(); /* as sshd does for a non-pty command */
		dup2(fd[1], 1);
		close(fd[0]);
		execl("/bin/sh", "sh", "-c", "sleep 300 & sleep 300 & echo ready; wait",
		      (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	char buf[16];
	ck_assert_int_gt(read(fd[0], buf, sizeof(buf)), 0);
	ck_assert_int_eq(command_kill_group(leader, 2, &kill_cmd), 0);
	out = run_sh(kill_cmd, &len, &status);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	waitpid(leader, &status, 0);
	snprintf(script, sizeof(script), "pgrep -g %d", (int)leader);
	free(out);
	out = run_sh(script, &len, &status);
	ck_assert_msg(len == 0, "left in the group: %.*s", (int)len, out);
	free(out);
	free(kill_cmd);
	close(fd[0]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("command");
	TCase *tc = tcase_create("command");

	tcase_add_test(tc, hostile_argv_arrives_unchanged);
	tcase_add_test(tc, large_element_arrives_unchanged);
	tcase_add_test(tc, env_and_cwd_apply_inside_the_command);
	tcase_add_test(tc, missing_cwd_means_the_program_never_runs);
	tcase_add_test(tc, remote_timeout_ends_the_command);
	tcase_add_test(tc, remote_timeout_is_the_deadline_to_the_millisecond);
	tcase_add_loop_test(tc, bad_specs_are_refused_before_anything_is_sent, 0,
	                    sizeof(refused) / sizeof(refused[0]));
	tcase_add_test(tc, overlong_command_is_refused);
	tcase_add_test(tc, quote_examples);
	tcase_add_test(tc, kill_group_ends_every_process_of_the_group);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
