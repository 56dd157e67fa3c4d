/* tests/check_command.c: the remote command string and the session's watcher. Quoting is
 * checked by handing the built string to a real shell -c (dash and bash), as sshd hands it
 * to the login shell, and comparing the argv the program receives with what was sent, byte
 * for byte; the watcher runs as the real script, its commands as real process groups. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "pool/command.h"
#include "tests/runner.h"

#define B(s) ((struct eb_bytes){s, sizeof(s) - 1})

/* Runs shell -c cmd with in (in_len bytes) on its stdin, in a new session as sshd runs
 * it; returns its stdout (length in *len) and its exit status. */
static char *run_shell(const char *shell, const char *cmd, const char *in, size_t in_len,
                       size_t *len, int *status)
{
	int fd[2], fi[2];
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	pid_t pid;
	ssize_t r;

	ck_assert_int_eq(pipe2(fd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(fi, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setsid();
		dup2(fd[1], 1);
		dup2(fi[0], 0);
		close(fd[0]);
		close(fi[1]);
		execl(shell, shell, "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	close(fi[0]);
	/* Small enough for the pipe, or written by a child of ours while we read. */
	if (in_len > 0) {
		pid_t w = fork();
		if (w == 0) {
			size_t off = 0;
			close(fd[0]);
			while (off < in_len && (r = write(fi[1], in + off, in_len - off)) > 0)
				off += (size_t)r;
			_exit(0);
		}
	}
	close(fi[1]);
	while ((r = read(fd[0], buf + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	close(fd[0]);
	waitpid(pid, status, 0);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	*len = n;
	return buf;
}

static char *run_sh(const char *cmd, size_t *len, int *status)
{
	return run_shell("/bin/sh", cmd, NULL, 0, len, status);
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

static const char *const shells[] = {"/bin/sh", "/bin/bash"};

/* printf '%s\0' prints each argument followed by NUL: the received argv, exactly. */
START_TEST(hostile_argv_arrives_unchanged)
{
	size_t n = sizeof(hostile) / sizeof(hostile[0]);
	struct eb_bytes *argv = calloc(n + 2, sizeof(*argv));
	struct command_spec spec = {.argv = argv, .argc = n + 2};
	char err[128], *cmd, *out, *want;
	size_t len, clen, rest, wlen = 0;
	const char *got;
	int status;

	argv[0] = B("printf");
	argv[1] = B("%s\\0");
	for (size_t i = 0; i < n; i++)
		argv[i + 2] = hostile[i];
	ck_assert_int_eq(command_build(&spec, &cmd, &clen, err, sizeof(err)), 0);
	ck_assert_uint_eq(clen, strlen(cmd));
	out = run_shell(shells[_i], cmd, NULL, 0, &len, &status);
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

/* A FIFO in a fresh directory, held open read-write by the test so that registrations
 * never block: a stand-in for the watcher's. */
struct fake_watch {
	char dir[64], fifo[96];
	int fd;
};

static void fake_watch_open(struct fake_watch *w)
{
	snprintf(w->dir, sizeof(w->dir), "/tmp/eb-check-command-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(w->dir));
	snprintf(w->fifo, sizeof(w->fifo), "%s/fi'fo", w->dir); /* a quote: it is quoted */
	ck_assert_int_eq(mkfifo(w->fifo, 0600), 0);
	w->fd = open(w->fifo, O_RDWR | O_NONBLOCK);
	ck_assert_int_ge(w->fd, 0);
}

static void fake_watch_close(struct fake_watch *w)
{
	close(w->fd);
	unlink(w->fifo);
	rmdir(w->dir);
}

/* A 100 KiB element with quotes and newlines in it, too long for an exec request, goes
 * ahead of stdin, arrives whole, and leaves the program's own stdin untouched. */
START_TEST(large_argv_goes_ahead_of_stdin_and_arrives_unchanged)
{
	size_t big = 100 * 1024;
	char *s = malloc(big), *body, *exec, *prefix, *in, *out, reg[128], want[64];
	struct eb_bytes argv[5];
	struct command_spec spec = {.argv = argv, .argc = 5};
	static const char user_in[] = "the program's stdin\nline 2 'x'\n";
	size_t blen, elen, plen, len, rest;
	const char *got;
	struct fake_watch w;
	int status;
	ssize_t r;

	for (size_t i = 0; i < big; i++)
		s[i] = i % 64 == 0 ? '\'' : "ab\"$`\\ \nc\t"[i % 10];
	argv[0] = B("sh");
	argv[1] = B("-c");
	argv[2] = B("printf %s \"$1\" && cat");
	argv[3] = B("sh");
	argv[4] = (struct eb_bytes){s, big};
	fake_watch_open(&w);
	ck_assert_int_eq(command_build(&spec, &body, &blen, (char[128]){0}, 128), 0);
	ck_assert_int_eq(command_frame(body, blen, w.fifo, 5000, &exec, &elen, &prefix, &plen), 0);
	ck_assert_str_eq(exec, COMMAND_BOOTSTRAP);
	ck_assert_ptr_nonnull(prefix);
	ck_assert_ptr_null(memchr(prefix, '\n', plen - 1)); /* one line */
	in = malloc(plen + sizeof(user_in) - 1);
	memcpy(in, prefix, plen);
	memcpy(in + plen, user_in, sizeof(user_in) - 1);
	out = run_shell(shells[_i], exec, in, plen + sizeof(user_in) - 1, &len, &status);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
	got = after_pgid(out, len, &rest);
	ck_assert_uint_eq(rest, big + sizeof(user_in) - 1);
	ck_assert_int_eq(memcmp(got, s, big), 0);
	ck_assert_int_eq(memcmp(got + big, user_in, sizeof(user_in) - 1), 0);
	/* It registered its group (the pid of its pgid line) with the deadline. */
	r = read(w.fd, reg, sizeof(reg) - 1);
	ck_assert_int_gt(r, 0);
	reg[r] = '\0';
	snprintf(want, sizeof(want), "r %ld 5000\n", atol(out + strlen(COMMAND_PGID_TAG)));
	ck_assert_str_eq(reg, want);
	fake_watch_close(&w);
	free(in);
	free(out);
	free(exec);
	free(prefix);
	free(body);
	free(s);
}
END_TEST

/* A short command goes in the exec request itself, nothing ahead of stdin. */
START_TEST(short_command_goes_in_the_request)
{
	struct eb_bytes argv[] = {B("cat")};
	struct command_spec spec = {.argv = argv, .argc = 1};
	char *body, *exec, *prefix, *out;
	size_t blen, elen, plen, len, rest;
	struct fake_watch w;
	const char *got;
	int status;

	fake_watch_open(&w);
	ck_assert_int_eq(command_build(&spec, &body, &blen, (char[128]){0}, 128), 0);
	ck_assert_int_eq(command_frame(body, blen, w.fifo, 1, &exec, &elen, &prefix, &plen), 0);
	ck_assert_ptr_null(prefix);
	ck_assert_uint_lt(elen, COMMAND_INLINE_MAX);
	out = run_shell(shells[_i], exec, "in", 2, &len, &status);
	got = after_pgid(out, len, &rest);
	ck_assert_uint_eq(rest, 2);
	ck_assert_int_eq(memcmp(got, "in", 2), 0);
	fake_watch_close(&w);
	free(out);
	free(exec);
	free(body);
}
END_TEST

/* Without a watcher to register with, nothing of the program runs, and there is no pgid
 * line: how the broker knows it did not start. */
START_TEST(without_a_watcher_nothing_runs)
{
	struct eb_bytes argv[] = {B("touch"), B("/tmp/eb-command-should-not-exist")};
	struct command_spec spec = {.argv = argv, .argc = 2};
	char *body, *exec, *prefix, *out;
	size_t blen, elen, plen, len;
	int status;

	unlink("/tmp/eb-command-should-not-exist");
	ck_assert_int_eq(command_build(&spec, &body, &blen, (char[128]){0}, 128), 0);
	ck_assert_int_eq(
	    command_frame(body, blen, "/nonexistent/eb/fifo", 1000, &exec, &elen, &prefix, &plen),
	    0);
	out = run_shell(shells[_i], exec, NULL, 0, &len, &status);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_ne(access("/tmp/eb-command-should-not-exist", F_OK), 0);
	free(out);
	free(exec);
	free(body);
}
END_TEST

/* A program whose name starts with '-' is still the program, not an option of exec. */
START_TEST(program_named_like_an_option_runs)
{
	char dir[] = "/tmp/eb-check-dash-XXXXXX", prog[64], path[128], *cmd, *out;
	struct eb_bytes argv[] = {B("-prog"), B("arg")};
	struct eb_bytes names[] = {B("PATH")};
	struct eb_bytes values[1];
	struct command_spec spec = {
	    .argv = argv, .argc = 2, .env_names = names, .env_values = values, .nenv = 1};
	size_t clen, len, rest;
	const char *got;
	int status;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(prog, sizeof(prog), "%s/-prog", dir);
	f = fopen(prog, "w");
	fputs("#!/bin/sh\nprintf 'ran %s' \"$1\"\n", f);
	fclose(f);
	chmod(prog, 0700);
	snprintf(path, sizeof(path), "%s:/usr/bin:/bin", dir);
	values[0] = (struct eb_bytes){path, strlen(path)};
	ck_assert_int_eq(command_build(&spec, &cmd, &clen, (char[128]){0}, 128), 0);
	out = run_shell(shells[_i], cmd, NULL, 0, &len, &status);
	got = after_pgid(out, len, &rest);
	ck_assert_uint_eq(rest, 7);
	ck_assert_int_eq(memcmp(got, "ran arg", 7), 0);
	unlink(prog);
	rmdir(dir);
	free(out);
	free(cmd);
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
	                            .cwd = "/usr/share"};
	char err[128], *cmd, *out;
	size_t clen, len, rest;
	const char *got;
	int status;

	ck_assert_int_eq(command_build(&spec, &cmd, &clen, err, sizeof(err)), 0);
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
	struct command_spec spec = {.argv = argv, .argc = 2, .cwd = "/nonexistent/dir"};
	char err[128], *cmd, *out;
	size_t clen, len;
	int status;

	unlink("/tmp/eb-command-should-not-exist");
	ck_assert_int_eq(command_build(&spec, &cmd, &clen, err, sizeof(err)), 0);
	out = run_sh(cmd, &len, &status);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
	ck_assert_int_ne(access("/tmp/eb-command-should-not-exist", F_OK), 0);
	free(out);
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
	struct command_spec spec = {
	    .argv = refused[_i].argv, .argc = refused[_i].argc, .cwd = refused[_i].cwd};
	char err[128] = "", *cmd = (char *)"untouched";
	size_t clen;

	if (refused[_i].env_name.p != NULL) {
		spec.env_names = &refused[_i].env_name;
		spec.env_values = &refused[_i].env_value;
		spec.nenv = 1;
	}
	ck_assert_int_eq(command_build(&spec, &cmd, &clen, err, sizeof(err)), EB_ERR_INVAL);
	ck_assert_ptr_null(cmd);
	ck_assert_msg(strstr(err, refused[_i].says) != NULL, "case %d: %s", _i, err);
}
END_TEST

/* Quoting can make a command four times longer: past the limit it is refused, not cut. */
START_TEST(overlong_command_is_refused)
{
	size_t big = COMMAND_MAX_LEN / 4 + 1;
	char *s = malloc(big), err[160] = "", *cmd = NULL;
	struct eb_bytes argv[2] = {B("echo"), {s, big}};
	struct command_spec spec = {.argv = argv, .argc = 2};
	size_t clen;

	memset(s, '\'', big);
	ck_assert_int_eq(command_build(&spec, &cmd, &clen, err, sizeof(err)), EB_ERR_RANGE);
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

/* Scans in + the pgid line of 12345 + "OUT" in pieces of step bytes (0: all at once) and
 * asserts the group is found, in is the noise (its first COMMAND_NOISE_MAX bytes), and
 * the scan took exactly up to the end of the pgid line. */
static void pgid_scan_case(const char *in, size_t in_len, size_t step, const char *what)
{
	static const char pl[] = COMMAND_PGID_TAG "12345\n";
	struct command_pgid_scan sc = {0};
	size_t n = in_len + strlen(pl) + 3, off = 0, keep;
	char *buf = malloc(n);

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, in, in_len);
	memcpy(buf + in_len, pl, strlen(pl));
	memcpy(buf + in_len + strlen(pl), "OUT", 3);
	while (off < n && !sc.done) {
		size_t len = step == 0 || n - off < step ? n - off : step;
		size_t k = command_pgid_scan(&sc, buf + off, len);

		ck_assert_uint_le(k, len);
		off += k;
		if (k < len)
			break;
	}
	ck_assert_msg(sc.done && sc.pgid == 12345, "%s (%zu bytes, by %zu): done %d pgid %ld", what,
	              in_len, step, sc.done, sc.pgid);
	ck_assert_msg(off == n - 3, "%s (%zu bytes, by %zu): took %zu of %zu", what, in_len, step,
	              off, n);
	keep = in_len < COMMAND_NOISE_MAX ? in_len : COMMAND_NOISE_MAX;
	ck_assert_msg(sc.noise_len == keep && (keep == 0 || memcmp(sc.noise, in, keep) == 0),
	              "%s (%zu bytes, by %zu): noise of %zu bytes, want %zu", what, in_len, step,
	              sc.noise_len, keep);
	free(sc.noise);
	free(buf);
}

/* Startup text before the pgid line, with no newline of its own: whatever its length, and
 * however the output is cut into reads, the group is found and the text is the noise. */
START_TEST(pgid_line_is_found_after_any_startup_text)
{
	static const size_t steps[] = {0, 1, 7, 256};
	char in[700];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)('a' + i % 26);
	for (size_t len = 0; len <= 600; len++)
		for (size_t j = 0; j < sizeof(steps) / sizeof(steps[0]); j++)
			pgid_scan_case(in, len, steps[j], "a prefix without newline");
	/* After lines, the same. */
	memcpy(in, "LINE\nLINE\n", 10);
	for (size_t len = 10; len <= 600; len++)
		pgid_scan_case(in, len, 0, "lines, then a prefix without newline");
}
END_TEST

/* More startup text than is kept: the first COMMAND_NOISE_MAX bytes are, the rest dropped;
 * the group is still found, and the pgid line is never taken for output. */
START_TEST(pgid_line_is_found_after_too_much_startup_text)
{
	static const size_t lens[] = {COMMAND_NOISE_MAX - 1, COMMAND_NOISE_MAX,
	                              COMMAND_NOISE_MAX + 1, COMMAND_NOISE_MAX + 300, 40000};
	char *in = malloc(40000);

	ck_assert_ptr_nonnull(in);
	for (int lined = 0; lined < 2; lined++) {
		for (size_t i = 0; i < 40000; i++)
			in[i] = lined && i % 50 == 49 ? '\n' : (char)('a' + i % 26);
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			pgid_scan_case(in, lens[i], 0,
			               lined ? "lines past the limit" : "one long line");
			pgid_scan_case(in, lens[i], 1000,
			               lined ? "lines past the limit" : "one long line");
		}
	}
	free(in);
}
END_TEST

/* The watcher's line, after startup text without a newline of any length: found, and the
 * line from its tag on is what the scan holds. */
START_TEST(watcher_line_is_found_after_any_startup_text)
{
	static const char wl[] = COMMAND_WATCH_TAG "/tmp/exec-broker-watch.AbC123/fifo";
	char buf[700 + sizeof(wl) + 1];

	for (size_t len = 0; len <= 600; len++) {
		struct command_pgid_scan sc = {0};
		size_t n;

		memset(buf, 'q', len);
		memcpy(buf + len, wl, strlen(wl));
		buf[len + strlen(wl)] = '\n';
		n = command_scan_line(&sc, COMMAND_WATCH_TAG, buf, len + strlen(wl) + 1);
		ck_assert_msg(sc.done && n == len + strlen(wl) + 1, "%zu bytes before: done %d",
		              len, sc.done);
		ck_assert_str_eq(sc.line, wl);
		free(sc.noise);
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

	ck_assert_int_eq(pipe2(fd, O_CLOEXEC), 0);
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

/* Every process group a test starts, killed when the test's process exits however it
 * ends (a failed assertion exits it), so that nothing outlives a failed test. */
static pid_t groups[32];
static size_t ngroups;

static void track(pid_t pgid)
{
	if (ngroups < sizeof(groups) / sizeof(groups[0]))
		groups[ngroups++] = pgid;
}

static void kill_groups(void)
{
	for (size_t i = 0; i < ngroups; i++)
		kill(-groups[i], SIGKILL);
	ngroups = 0;
}

/* The watcher, run as sshd would run it: its own session, stdin and stdout pipes. */
struct watcher {
	pid_t pid;
	int in, out;
	char fifo[400];
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void watcher_start(struct watcher *w, const char *shell, int grace_s, int idle_exit_s)
{
	int fi[2], fo[2];
	char *script, line[400];
	size_t n = 0;

	ck_assert_int_eq(command_watcher(grace_s, idle_exit_s, &script), 0);
	ck_assert_int_eq(pipe2(fi, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(fo, O_CLOEXEC), 0);
	w->pid = fork();
	ck_assert_int_ge(w->pid, 0);
	if (w->pid == 0) {
		setsid();
		dup2(fi[0], 0);
		dup2(fo[1], 1);
		close(fi[1]);
		close(fo[0]);
		execl(shell, shell, "-c", script, (char *)NULL);
		_exit(127);
	}
	track(w->pid);
	free(script);
	close(fi[0]);
	close(fo[1]);
	w->in = fi[1];
	w->out = fo[0];
	while (n + 1 < sizeof(line) && read(w->out, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = '\0';
	ck_assert_msg(strncmp(line, COMMAND_WATCH_TAG, strlen(COMMAND_WATCH_TAG)) == 0, "%s", line);
	snprintf(w->fifo, sizeof(w->fifo), "%s", line + strlen(COMMAND_WATCH_TAG));
	ck_assert_int_eq(access(w->fifo, F_OK), 0);
}

static void watcher_say(struct watcher *w, const char *line)
{
	ck_assert_int_eq(write(w->in, line, strlen(line)), (ssize_t)strlen(line));
}

/* Waits up to limit_ms for pid; returns its status, or -1 if it still runs. */
static int wait_for(pid_t pid, long long limit_ms)
{
	long long end = now_ms() + limit_ms;
	int status;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		if (now_ms() >= end)
			return -1;
		usleep(20000);
	}
}

static void watcher_end(struct watcher *w)
{
	close(w->in);
	ck_assert_msg(wait_for(w->pid, 5000) >= 0, "the watcher did not exit at eof");
	close(w->out);
	ck_assert_int_ne(access(w->fifo, F_OK), 0); /* its directory is gone */
}

/* A command registered with deadline_ms, running script under sh -c, as sshd would run
 * it: in its own session. Its pgid line is read, so it has registered on return. */
static pid_t command_run(const struct watcher *w, const char *shell, long deadline_ms,
                         const char *script)
{
	struct eb_bytes argv[] = {B("sh"), B("-c"), {script, strlen(script)}};
	struct command_spec spec = {.argv = argv, .argc = 3};
	char *body, *exec, *prefix, c;
	size_t blen, elen, plen;
	int fo[2];
	pid_t pid;

	ck_assert_int_eq(command_build(&spec, &body, &blen, (char[128]){0}, 128), 0);
	ck_assert_int_eq(
	    command_frame(body, blen, w->fifo, deadline_ms, &exec, &elen, &prefix, &plen), 0);
	ck_assert_int_eq(pipe2(fo, O_CLOEXEC), 0);
	pid = fork();
	if (pid == 0) {
		setsid();
		dup2(fo[1], 1);
		close(fo[0]);
		execl(shell, shell, "-c", exec, (char *)NULL);
		_exit(127);
	}
	track(pid);
	close(fo[1]);
	while (read(fo[0], &c, 1) == 1 && c != '\n')
		;
	close(fo[0]);
	free(body);
	free(exec);
	return pid;
}

/* At its deadline (to the second: the watcher's clock ticks once a second), TERM. */
START_TEST(watcher_ends_a_command_at_its_deadline)
{
	struct watcher w;
	long long t0 = now_ms();
	pid_t c;
	int st;

	watcher_start(&w, shells[_i], 5, 60);
	c = command_run(&w, shells[_i], 1200, "exec sleep 30");
	st = wait_for(c, 8000);
	ck_assert_msg(st != -1, "still running after 8 s");
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	ck_assert_int_ge(now_ms() - t0, 1200);
	watcher_end(&w);
}
END_TEST

/* Never before its deadline, counted from the moment the broker framed the command: the
 * broker's timer must fire first, or an exit by the host's TERM reads as a signal instead of
 * a timeout. The host's clock reads in centiseconds; ticks come here every millisecond
 * (as a "t" line, as the clock sends them) so that the watcher acts as soon as it may. */
START_TEST(watcher_never_ends_a_command_before_its_deadline)
{
	struct watcher w;

	watcher_start(&w, shells[_i], 5, 60);
	for (int i = 0; i < 20; i++) {
		long long t0 = now_us(), end = t0 + 5000000, t;
		pid_t c = command_run(&w, shells[_i], 100, "exec sleep 30");
		int st;

		for (;;) {
			watcher_say(&w, "t\n");
			t = now_us();
			if (waitpid(c, &st, WNOHANG) == c)
				break;
			ck_assert_msg(t < end, "still running after 5 s");
			usleep(500);
		}
		ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
		ck_assert_msg(t - t0 >= 100000,
		              "run %d ended %lld us after its framing, deadline 100 ms", i, t - t0);
	}
	watcher_end(&w);
}
END_TEST

/* term: TERM to the whole group now; what ignores it gets KILL after the grace. */
START_TEST(watcher_kills_what_ignores_term_after_the_grace)
{
	struct watcher w;
	char line[64];
	long long t0;
	pid_t c;
	int st;

	watcher_start(&w, shells[_i], 5, 60);
	c = command_run(&w, shells[_i], 60000,
	                "trap '' TERM; sleep 30 & while :; do sleep 0.1; done");
	usleep(300000); /* the watcher reads the registration */
	snprintf(line, sizeof(line), "term %d 2\n", (int)c);
	t0 = now_ms();
	watcher_say(&w, line);
	st = wait_for(c, 8000);
	ck_assert_msg(st != -1, "still running 8 s after the term");
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
	ck_assert_int_ge(now_ms() - t0, 900); /* the grace, less the clock's tick */
	/* Nothing of the group is left (its last members may still be reaped meanwhile). */
	t0 = now_ms();
	while (kill(-c, 0) == 0 && now_ms() - t0 < 2000)
		usleep(20000);
	ck_assert_int_ne(kill(-c, 0), 0);
	watcher_end(&w);
}
END_TEST

/* Its stdin ends when the broker's connection does: every command is ended then, however
 * far its deadline. */
START_TEST(watcher_ends_every_command_when_the_broker_is_gone)
{
	struct watcher w;
	pid_t c1, c2;
	int st;

	watcher_start(&w, shells[_i], 5, 60);
	c1 = command_run(&w, shells[_i], 600000, "exec sleep 300");
	c2 = command_run(&w, shells[_i], 600000, "sleep 300; sleep 300");
	usleep(300000);
	close(w.in);
	st = wait_for(c1, 4000);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	st = wait_for(c2, 4000);
	ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %d", st);
	ck_assert_msg(wait_for(w.pid, 5000) >= 0, "the watcher did not exit");
	close(w.out);
	ck_assert_int_ne(access(w.fifo, F_OK), 0);
}
END_TEST

/* d: the command's channel closed; the watcher no longer holds it to its deadline. */
START_TEST(watcher_forgets_a_command_whose_channel_closed)
{
	struct watcher w;
	char line[64];
	pid_t c;
	int st;

	watcher_start(&w, shells[_i], 5, 60);
	c = command_run(&w, shells[_i], 500, "sleep 2.5");
	snprintf(line, sizeof(line), "d %d\n", (int)c);
	watcher_say(&w, line);
	st = wait_for(c, 8000);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	watcher_end(&w);
}
END_TEST

/* A term for a group that never registered signals nothing. */
START_TEST(watcher_signals_only_registered_groups)
{
	struct watcher w;
	char line[64];
	pid_t other;

	watcher_start(&w, shells[_i], 1, 60);
	other = fork();
	if (other == 0) {
		setsid();
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	track(other);
	usleep(100000);
	snprintf(line, sizeof(line), "term %d 1\n", (int)other);
	watcher_say(&w, line);
	sleep(3); /* past the grace and a tick or two */
	ck_assert_int_eq(wait_for(other, 0), -1);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	watcher_end(&w);
}
END_TEST

/* No beat from the broker for idle_exit_s, and nothing to watch: it exits by itself (a
 * session lost without a word to a silent network). */
START_TEST(watcher_exits_when_the_broker_goes_silent)
{
	struct watcher w;

	watcher_start(&w, shells[_i], 5, 2);
	ck_assert_msg(wait_for(w.pid, 6000) >= 0, "still running 6 s after its last beat");
	close(w.in);
	close(w.out);
	ck_assert_int_ne(access(w.fifo, F_OK), 0);
}
END_TEST

/* A directory as a watcher leaves it, naming pid in its pid file. */
static char *fake_watch_dir(pid_t pid)
{
	char *d = strdup("/tmp/exec-broker-watch.XXXXXX"), path[128];
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(d));
	snprintf(path, sizeof(path), "%s/pid", d);
	f = fopen(path, "we");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%d\n", (int)pid);
	fclose(f);
	snprintf(path, sizeof(path), "%s/fifo", d);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	return d;
}

/* A watcher killed outright leaves its directory behind: the next watcher removes it, and
 * leaves alone the directory of a watcher that still runs. */
START_TEST(watcher_removes_what_dead_watchers_left)
{
	struct watcher w;
	char *dead, *alive, path[128];
	pid_t gone = fork();
	int st;

	ck_assert_int_ge(gone, 0);
	if (gone == 0)
		_exit(0);
	waitpid(gone, &st, 0);
	dead = fake_watch_dir(gone);
	alive = fake_watch_dir(getpid());
	watcher_start(&w, shells[_i], 5, 60); /* returns once it listens */
	ck_assert_msg(access(dead, F_OK) != 0, "%s is still there", dead);
	ck_assert_int_eq(access(alive, F_OK), 0);
	watcher_end(&w);
	snprintf(path, sizeof(path), "%s/pid", alive);
	unlink(path);
	snprintf(path, sizeof(path), "%s/fifo", alive);
	unlink(path);
	rmdir(alive);
	free(dead);
	free(alive);
}
END_TEST

/* The parent of pid from /proc, or -1. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int pp = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		sscanf(p + 2, "%*c %d", &pp);
	fclose(f);
	return pp;
}

/* The seconds of the `sleep N` the watcher's clock runs now (a process below the watcher),
 * or -1 if none shows within 3 s. */
static int clock_period(pid_t watcher)
{
	for (int tries = 0; tries < 150; tries++) {
		DIR *d = opendir("/proc");
		struct dirent *de;
		int found = -1;

		while (d != NULL && (de = readdir(d)) != NULL && found < 0) {
			pid_t pid = (pid_t)atoi(de->d_name), a = pid;
			char path[64], cmd[64] = {0};
			FILE *f;
			size_t n;

			if (pid <= 0)
				continue;
			for (int depth = 0; depth < 4 && a > 1 && a != watcher; depth++)
				a = parent_of(a);
			if (a != watcher)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
			if ((f = fopen(path, "re")) == NULL)
				continue;
			n = fread(cmd, 1, sizeof(cmd) - 1, f);
			fclose(f);
			if (n > 6 && strcmp(cmd, "sleep") == 0)
				found = atoi(cmd + 6);
		}
		if (d != NULL)
			closedir(d);
		if (found >= 0)
			return found;
		usleep(20000);
	}
	return -1;
}

/* With nothing registered the clock ticks every 10 s (an idle session costs the host a
 * `sleep` every 10 s); a registration makes it tick every second. */
START_TEST(watcher_clock_is_slow_while_idle)
{
	struct watcher w;
	pid_t c;

	watcher_start(&w, shells[_i], 5, 60);
	ck_assert_int_eq(clock_period(w.pid), 10);
	c = command_run(&w, shells[_i], 60000, "exec sleep 30");
	usleep(300000); /* the watcher reads the registration */
	for (int i = 0; i < 10 && clock_period(w.pid) != 1; i++)
		usleep(100000); /* the slow clock's last sleep may still show */
	ck_assert_int_eq(clock_period(w.pid), 1);
	kill(-c, SIGKILL);
	watcher_end(&w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("command");
	TCase *tc = tcase_create("command");
	TCase *tw = tcase_create("watcher");
	int nsh = (int)(sizeof(shells) / sizeof(shells[0]));

	atexit(kill_groups); /* runs in each test's process */

	tcase_add_loop_test(tc, hostile_argv_arrives_unchanged, 0, nsh);
	tcase_add_loop_test(tc, large_argv_goes_ahead_of_stdin_and_arrives_unchanged, 0, nsh);
	tcase_add_loop_test(tc, short_command_goes_in_the_request, 0, nsh);
	tcase_add_loop_test(tc, without_a_watcher_nothing_runs, 0, nsh);
	tcase_add_loop_test(tc, program_named_like_an_option_runs, 0, nsh);
	tcase_add_test(tc, env_and_cwd_apply_inside_the_command);
	tcase_add_test(tc, missing_cwd_means_the_program_never_runs);
	tcase_add_loop_test(tc, bad_specs_are_refused_before_anything_is_sent, 0,
	                    sizeof(refused) / sizeof(refused[0]));
	tcase_add_test(tc, overlong_command_is_refused);
	tcase_add_test(tc, quote_examples);
	tcase_add_test(tc, pgid_line_is_found_after_any_startup_text);
	tcase_add_test(tc, pgid_line_is_found_after_too_much_startup_text);
	tcase_add_test(tc, watcher_line_is_found_after_any_startup_text);
	tcase_add_test(tc, kill_group_ends_every_process_of_the_group);
	suite_add_tcase(s, tc);
	tcase_set_timeout(tw, 30);
	tcase_add_loop_test(tw, watcher_ends_a_command_at_its_deadline, 0, nsh);
	tcase_add_loop_test(tw, watcher_never_ends_a_command_before_its_deadline, 0, nsh);
	tcase_add_loop_test(tw, watcher_kills_what_ignores_term_after_the_grace, 0, nsh);
	tcase_add_loop_test(tw, watcher_ends_every_command_when_the_broker_is_gone, 0, nsh);
	tcase_add_loop_test(tw, watcher_forgets_a_command_whose_channel_closed, 0, nsh);
	tcase_add_loop_test(tw, watcher_signals_only_registered_groups, 0, nsh);
	tcase_add_loop_test(tw, watcher_exits_when_the_broker_goes_silent, 0, nsh);
	tcase_add_loop_test(tw, watcher_clock_is_slow_while_idle, 0, nsh);
	tcase_add_loop_test(tw, watcher_removes_what_dead_watchers_left, 0, nsh);
	suite_add_tcase(s, tw);
	return tu_run_suite(s);
}
