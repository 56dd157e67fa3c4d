/* tests/check_detached.c: a detached exec's host side (pool/detached.c) run as the real
 * scripts under the real /bin/sh (dash), with HOME in a private directory: the launcher
 * starts a supervisor that outlives it, the command's output lands in chunk files and the
 * reader gives back every byte at its offset, the cap keeps the newest output and says what
 * it dropped, signals and cancels reach the whole process group, the deadline holds with
 * nobody watching, the directory goes after its retention, and a dead supervisor reads as
 * gone. The parser of what the reader prints is checked on its own, fed byte by byte. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "pool/command.h"
#include "pool/detached.h"
#include "tests/runner.h"

#define B(s) ((struct eb_bytes){s, sizeof(s) - 1})
#define ID   "0b9a3c0e-8f6d-4d2b-9a56-3f1d2c4b5a69"

static char home[256];

static void make_home(void)
{
	/* A space in it: every path the scripts make must stay one word. */
	snprintf(home, sizeof(home), "/tmp/eb detached-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(home));
	setenv("HOME", home, 1);
}

/* Runs argv (eb_bytes, NUL-terminated copies made) with in on stdin; returns stdout. */
static char *run(const struct eb_bytes *argv, size_t argc, const char *in, size_t in_len,
                 size_t *len, int *status)
{
	int fo[2], fi[2];
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	char **av = calloc(argc + 1, sizeof(*av));
	pid_t pid, w = -1;
	ssize_t r;

	for (size_t i = 0; i < argc; i++)
		av[i] = strndup(argv[i].p, argv[i].len);
	ck_assert_int_eq(pipe2(fo, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(fi, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setsid(); /* as sshd runs a command */
		dup2(fo[1], 1);
		dup2(fi[0], 0);
		execv("/bin/sh", av);
		_exit(127);
	}
	close(fo[1]);
	close(fi[0]);
	if (in_len > 0) {
		w = fork();
		if (w == 0) {
			size_t off = 0;
			while (off < in_len && (r = write(fi[1], in + off, in_len - off)) > 0)
				off += (size_t)r;
			_exit(0);
		}
	}
	close(fi[1]);
	while ((r = read(fo[0], buf + n, cap - n - 1)) > 0) {
		n += (size_t)r;
		if (cap - n < 4096)
			buf = realloc(buf, cap *= 2);
	}
	close(fo[0]);
	buf[n] = '\0';
	*len = n;
	ck_assert_int_eq(waitpid(pid, status, 0), pid);
	if (w > 0)
		waitpid(w, NULL, 0);
	for (size_t i = 0; i < argc; i++)
		free(av[i]);
	free(av);
	return buf;
}

/* Starts cmd (sh -c cmd) detached; returns the group id the launcher printed. */
static long start_ex(const char *cmd, const char *in, size_t in_len, long long timeout_ms,
                     long long cap, int retain_s)
{
	struct eb_bytes cargv[] = {B("sh"), B("-c"), {cmd, strlen(cmd)}};
	struct command_spec spec = {.argv = cargv, .argc = 3};
	struct detached_start s = {ID, timeout_ms, 1, cap, retain_s};
	struct eb_bytes argv[DETACHED_LAUNCH_ARGC];
	char *body, *store, err[128], *out, *input;
	size_t blen, olen;
	int status;
	long pg = 0;

	ck_assert_int_eq(command_build_body(&spec, &body, &blen, err, sizeof(err)), 0);
	ck_assert_int_eq(detached_launch_argv(&s, blen, argv, &store), 0);
	input = malloc(blen + in_len + 1);
	memcpy(input, body, blen);
	if (in_len > 0)
		memcpy(input + blen, in, in_len);
	out = run(argv, DETACHED_LAUNCH_ARGC, input, blen + in_len, &olen, &status);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "launcher status %d: %s",
	              status, out);
	ck_assert_msg(strncmp(out, DETACHED_STARTED_TAG, strlen(DETACHED_STARTED_TAG)) == 0,
	              "no started line: \"%s\"", out);
	pg = atol(out + strlen(DETACHED_STARTED_TAG));
	ck_assert_int_gt(pg, 1);
	free(out);
	free(input);
	free(store);
	free(body);
	return pg;
}

static long start(const char *cmd)
{
	return start_ex(cmd, NULL, 0, 60000, 65536, 60);
}

struct got {
	char *data[3];
	size_t len[3];
	uint64_t next[3]; /* the offset the next data record must have */
	uint64_t skipped[3], skip_at[3];
	uint64_t kept_from[3], kept_to[3];
	int ended; /* the ending record's kind + 1 */
	struct detached_status st;
};

static void on_rec(const struct detached_rec *r, void *arg)
{
	struct got *g = arg;

	switch (r->kind) {
	case DREC_DATA:
		ck_assert_uint_eq(r->offset, g->next[r->stream]);
		g->data[r->stream] = realloc(g->data[r->stream], g->len[r->stream] + r->len + 1);
		memcpy(g->data[r->stream] + g->len[r->stream], r->data, r->len);
		g->len[r->stream] += r->len;
		g->data[r->stream][g->len[r->stream]] = '\0';
		g->next[r->stream] = r->offset + r->len;
		break;
	case DREC_SKIPPED:
		ck_assert_uint_eq(r->offset, g->next[r->stream]);
		g->skip_at[r->stream] = r->offset;
		g->skipped[r->stream] += r->len;
		g->next[r->stream] = r->offset + r->len;
		break;
	case DREC_KEPT:
		g->kept_from[r->stream] = r->offset;
		g->kept_to[r->stream] = r->len;
		break;
	case DREC_STATUS:
	case DREC_RUNNING:
	case DREC_GONE:
	case DREC_ABSENT:
		ck_assert_int_eq(g->ended, 0);
		g->ended = (int)r->kind + 1;
		g->st = r->status;
		break;
	default:
		ck_abort();
	}
}

/* Runs the reader and parses everything it printed, fed one byte at a time. */
static void read_exec(enum detached_read_mode m, uint64_t oo, uint64_t eo, long long cap,
                      int wait_s, struct got *g)
{
	struct eb_bytes argv[DETACHED_READ_ARGC];
	struct detached_parser p = {0};
	char *store, *out;
	size_t len;
	int status;

	memset(g, 0, sizeof(*g));
	g->next[1] = oo;
	g->next[2] = eo;
	ck_assert_int_eq(detached_read_argv(ID, m, oo, eo, cap, wait_s, argv, &store), 0);
	out = run(argv, DETACHED_READ_ARGC, NULL, 0, &len, &status);
	ck_assert_int_eq(status, 0);
	for (size_t i = 0; i < len; i++)
		ck_assert_int_eq(detached_parse(&p, out + i, 1, on_rec, g), 0);
	ck_assert_uint_eq(p.left, 0);
	ck_assert_uint_eq(p.llen, 0);
	ck_assert_int_ne(g->ended, 0);
	free(out);
	free(store);
}

static void got_free(struct got *g)
{
	free(g->data[1]);
	free(g->data[2]);
}

/* Waits (at most s seconds) for the exec to end; returns its outcome. */
static void wait_end(int s, struct got *g)
{
	read_exec(DETACHED_STAT, 0, 0, 65536, s, g);
	ck_assert_msg(g->ended == DREC_STATUS + 1, "the exec did not end (%d)", g->ended);
}

static int signal_exec(const char *sig)
{
	struct eb_bytes argv[DETACHED_SIGNAL_ARGC];
	char *store, *out;
	size_t len;
	int status;

	ck_assert_int_eq(detached_signal_argv(ID, sig, argv, &store), 0);
	out = run(argv, DETACHED_SIGNAL_ARGC, NULL, 0, &len, &status);
	free(out);
	free(store);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Alive: a process that is neither gone nor a zombie waiting to be reaped. */
static bool alive(long pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	bool live = false;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
		live = p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return live;
}

static char *dir_path(const char *leaf)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/.exec-broker/execs/" ID "%s%s", home, leaf[0] ? "/" : "", leaf);
	return p;
}

START_TEST(output_and_status_come_back_at_their_offsets)
{
	struct got g;

	make_home();
	start_ex("cat; printf 'err' >&2; exit 3", "hello", 5, 60000, 65536, 60);
	wait_end(10, &g);
	ck_assert_int_eq(g.st.kind, DST_EXITED);
	ck_assert_int_eq(g.st.exit_code, 3);
	ck_assert_uint_eq(g.st.stdout_bytes, 5);
	ck_assert_uint_eq(g.st.stderr_bytes, 3);
	got_free(&g);

	read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_STATUS + 1);
	ck_assert_str_eq(g.data[1], "hello");
	ck_assert_str_eq(g.data[2], "err");
	got_free(&g);

	read_exec(DETACHED_FOLLOW, 2, 3, 65536, 0, &g);
	ck_assert_str_eq(g.data[1], "llo");
	ck_assert_ptr_null(g.data[2]);
	ck_assert_int_eq(g.ended, DREC_STATUS + 1);
	got_free(&g);
	/* The command's files with env values and stdin are gone once it ended. */
	ck_assert_int_ne(access(dir_path("stdin"), F_OK), 0);
	ck_assert_int_ne(access(dir_path("cmd"), F_OK), 0);
}
END_TEST

START_TEST(env_cwd_and_binary_output)
{
	struct eb_bytes cargv[] = {B("sh"), B("-c"), B("printf '%s|' \"$X\" \"$PWD\"; printf 'a\\000b\\377'")};
	struct eb_bytes names[] = {B("X")}, vals[] = {B("it's")};
	struct command_spec spec = {.argv = cargv, .argc = 3, .env_names = names,
	                            .env_values = vals, .nenv = 1, .cwd = "/tmp"};
	struct detached_start s = {ID, 60000, 1, 65536, 60};
	struct eb_bytes argv[DETACHED_LAUNCH_ARGC];
	char *body, *store, err[128], *out;
	size_t blen, olen;
	int status;
	struct got g;
	static const char want[] = "it's|/tmp|a\0b\377";

	make_home();
	ck_assert_int_eq(command_build_body(&spec, &body, &blen, err, sizeof(err)), 0);
	ck_assert_int_eq(detached_launch_argv(&s, blen, argv, &store), 0);
	out = run(argv, DETACHED_LAUNCH_ARGC, body, blen, &olen, &status);
	ck_assert_int_eq(status, 0);
	free(out);
	free(store);
	free(body);
	wait_end(10, &g);
	got_free(&g);
	read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
	ck_assert_uint_eq(g.len[1], sizeof(want) - 1);
	ck_assert_mem_eq(g.data[1], want, sizeof(want) - 1);
	got_free(&g);
}
END_TEST

START_TEST(the_command_outlives_the_launcher_in_its_own_group)
{
	struct got g;
	long pg;

	make_home();
	pg = start("echo started; sleep 30");
	for (int i = 0; i < 250; i++) {
		read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
		bool there = g.len[1] > 0;
		got_free(&g);
		if (there)
			break;
		usleep(20000);
	}
	/* The launcher has exited; the command runs, leading a group of its own. */
	ck_assert_int_eq(kill((pid_t)-pg, 0), 0);
	ck_assert_int_eq(getpgid((pid_t)pg), pg);
	ck_assert_int_eq(signal_exec("KILL"), 0);
	read_exec(DETACHED_FOLLOW, 0, 0, 65536, 0, &g); /* ends with the exec */
	ck_assert_int_eq(g.ended, DREC_STATUS + 1);
	ck_assert_str_eq(g.data[1], "started\n");
	got_free(&g);
}
END_TEST

START_TEST(a_running_exec_reads_as_running)
{
	struct got g;
	struct timespec d = {0, 300 * 1000000};

	make_home();
	start("printf 'abc'; sleep 30");
	nanosleep(&d, NULL);
	read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_RUNNING + 1);
	ck_assert_str_eq(g.data[1], "abc");
	got_free(&g);
	read_exec(DETACHED_STAT, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_RUNNING + 1);
	ck_assert_uint_eq(g.kept_from[1], 0);
	ck_assert_uint_eq(g.kept_to[1], 3);
	got_free(&g);
	ck_assert_int_eq(signal_exec("KILL"), 0);
	wait_end(10, &g);
	ck_assert_int_eq(g.st.kind, DST_SIGNALED);
	ck_assert_str_eq(g.st.signal, "KILL");
	got_free(&g);
}
END_TEST

START_TEST(signals_reach_a_child_of_the_command)
{
	static const char *const sigs[] = {"TERM", "INT", "KILL"};
	const char *sig = sigs[_i];
	struct got g;
	char cmd[400];
	long child;
	FILE *f;

	make_home();
	/* A child in the foreground: a background one of a non-interactive shell ignores INT. */
	snprintf(cmd, sizeof(cmd), "sh -c 'echo $$ >\"%s/child\"; exec sleep 60'; echo after", home);
	start(cmd);
	snprintf(cmd, sizeof(cmd), "%s/child", home);
	for (int i = 0; i < 100 && access(cmd, F_OK) != 0; i++)
		usleep(20000);
	usleep(50000);
	f = fopen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &child), 1);
	fclose(f);
	ck_assert_int_eq(signal_exec(sig), 0);
	wait_end(10, &g);
	ck_assert_int_eq(g.st.kind, DST_SIGNALED);
	ck_assert_str_eq(g.st.signal, sig);
	got_free(&g);
	ck_assert(!alive(child)); /* the child went with the group */
	/* Once it has ended, a signal is refused. */
	ck_assert_int_eq(signal_exec("TERM"), DETACHED_SIGNAL_ENDED);
}
END_TEST

START_TEST(cancel_is_term_then_kill)
{
	struct got g;

	make_home();
	start("trap '' TERM; echo x; sleep 60");
	usleep(200000);
	ck_assert_int_eq(signal_exec(NULL), 0);
	wait_end(10, &g); /* the grace is 1 s: KILL follows the ignored TERM */
	ck_assert_int_eq(g.st.kind, DST_CANCELLED);
	got_free(&g);
}
END_TEST

START_TEST(the_deadline_holds_with_nobody_watching)
{
	struct got g;

	make_home();
	start_ex("sleep 60", NULL, 0, 500, 65536, 60);
	wait_end(10, &g);
	ck_assert_int_eq(g.st.kind, DST_TIMEOUT);
	ck_assert_int_lt(g.st.duration_ms, 5000);
	got_free(&g);
}
END_TEST

START_TEST(the_deadline_sends_term_first)
{
	struct got g;
	char cmd[600], mark[400];

	make_home();
	snprintf(mark, sizeof(mark), "%s/termed", home);
	snprintf(cmd, sizeof(cmd), "trap 'echo x >\"%s\"; exit 0' TERM; sleep 60 & wait", mark);
	start_ex(cmd, NULL, 0, 500, 65536, 60);
	wait_end(10, &g);
	ck_assert_int_eq(g.st.kind, DST_TIMEOUT);
	got_free(&g);
	ck_assert_int_eq(access(mark, F_OK), 0); /* it had the TERM and its grace */
}
END_TEST

/* A process that left the group keeps stdout open: the exec still ends, after its
 * deadline's KILL, with what was read. */
START_TEST(an_escaped_process_does_not_hold_the_exec)
{
	struct got g;
	char cmd[600], esc[400];
	long pid = 0;
	FILE *f;

	make_home();
	snprintf(esc, sizeof(esc), "%s/escaped", home);
	snprintf(cmd, sizeof(cmd), "setsid sh -c 'echo $$ >\"%s\"; exec sleep 60' & echo started",
	         esc);
	start_ex(cmd, NULL, 0, 1000, 65536, 60);
	wait_end(15, &g);
	ck_assert_int_eq(g.st.kind, DST_TIMEOUT);
	ck_assert_uint_eq(g.st.stdout_bytes, 8);
	got_free(&g);
	f = fopen(esc, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	ck_assert(alive(pid)); /* it escaped the group, as it meant to */
	kill((pid_t)-pid, SIGKILL);
}
END_TEST

START_TEST(output_past_the_cap_keeps_the_newest_and_says_what_went)
{
	/* 65536 cap: chunks of 4096, 16 kept. 200,000 bytes of a counter. */
	const long long cap = 65536;
	struct got g;
	uint64_t total = 0;

	make_home();
	start_ex("i=0; while [ $i -lt 20000 ]; do printf '%09d\\n' $i; i=$((i+1)); done", NULL, 0,
	         60000, cap, 60);
	wait_end(20, &g);
	total = g.st.stdout_bytes;
	ck_assert_uint_eq(total, 200000);
	ck_assert_uint_eq(g.kept_to[1], total);
	ck_assert_uint_le(total - g.kept_from[1], (uint64_t)cap);
	ck_assert_uint_ge(total - g.kept_from[1], (uint64_t)cap - 2 * detached_chunk(cap));
	got_free(&g);

	read_exec(DETACHED_READ, 0, 0, cap, 0, &g);
	ck_assert_uint_eq(g.skip_at[1], 0);
	ck_assert_uint_gt(g.skipped[1], 0);
	ck_assert_uint_eq(g.skipped[1] + g.len[1], total);
	ck_assert_uint_eq(g.skipped[1] % detached_chunk(cap), 0);
	/* What is kept is the counter's tail, exactly. */
	for (uint64_t off = (g.skipped[1] + 9) / 10 * 10; off + 10 <= total; off += 10) {
		char want[24];
		snprintf(want, sizeof(want), "%09llu\n", (unsigned long long)(off / 10));
		ck_assert_mem_eq(g.data[1] + (off - g.skipped[1]), want, 10);
	}
	got_free(&g);

	/* Resuming inside what is kept gives no skip. */
	read_exec(DETACHED_READ, total - 10, 0, cap, 0, &g);
	ck_assert_uint_eq(g.skipped[1], 0);
	ck_assert_str_eq(g.data[1], "000019999\n");
	got_free(&g);
}
END_TEST

START_TEST(the_directory_goes_after_retention)
{
	struct got g;

	make_home();
	start_ex("true", NULL, 0, 60000, 65536, 1);
	wait_end(10, &g);
	got_free(&g);
	for (int i = 0; i < 50 && access(dir_path(""), F_OK) == 0; i++)
		usleep(100000);
	ck_assert_int_ne(access(dir_path(""), F_OK), 0);
	read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_ABSENT + 1);
	got_free(&g);
}
END_TEST

START_TEST(a_dead_supervisor_reads_as_gone)
{
	struct got g;
	long pid;
	FILE *f;

	make_home();
	start("sleep 60");
	f = fopen(dir_path("pid"), "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	ck_assert_int_eq(kill((pid_t)pid, SIGKILL), 0);
	for (int i = 0; i < 100 && kill((pid_t)pid, 0) == 0; i++)
		usleep(20000);
	read_exec(DETACHED_FOLLOW, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_GONE + 1);
	got_free(&g);
	ck_assert_int_eq(signal_exec("TERM"), DETACHED_SIGNAL_LOST);
}
END_TEST

/* A directory whose supervisor died is removed by a later launch once it is older than
 * the retention; one whose supervisor lives is not. */
START_TEST(a_later_start_removes_dead_supervisors_directories)
{
	char cmd[2048];
	long pid;
	FILE *f;
	struct got g;

	make_home();
	start("sleep 60");
	f = fopen(dir_path("pid"), "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	/* A sibling that lives, started as long ago. */
	snprintf(cmd, sizeof(cmd),
	         "mkdir -p \"%s/.exec-broker/execs/live\" && echo %d >\"%s/.exec-broker/execs/live/pid\" && "
	         "touch -d '2 hours ago' \"%s\" \"%s/.exec-broker/execs/live/pid\"",
	         home, (int)getpid(), home, dir_path("pid"), home);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(kill((pid_t)-pid, SIGKILL), 0);
	for (int i = 0; i < 100 && alive(pid); i++)
		usleep(20000);
	read_exec(DETACHED_READ, 0, 0, 65536, 0, &g);
	ck_assert_int_eq(g.ended, DREC_GONE + 1);
	got_free(&g);
	/* The next start (another id) clears the dead one's directory. */
	snprintf(cmd, sizeof(cmd), "mv \"%s\" \"%s/.exec-broker/execs/dead\"", dir_path(""), home);
	ck_assert_int_eq(system(cmd), 0);
	start_ex("true", NULL, 0, 60000, 65536, 60);
	snprintf(cmd, sizeof(cmd), "%s/.exec-broker/execs/dead", home);
	ck_assert_int_ne(access(cmd, F_OK), 0);
	snprintf(cmd, sizeof(cmd), "%s/.exec-broker/execs/live", home);
	ck_assert_int_eq(access(cmd, F_OK), 0);
	wait_end(10, &g);
	got_free(&g);
}
END_TEST

START_TEST(a_missing_home_fails_the_start)
{
	struct eb_bytes cargv[] = {B("true")};
	struct command_spec spec = {.argv = cargv, .argc = 1};
	struct detached_start s = {ID, 60000, 1, 65536, 60};
	struct eb_bytes argv[DETACHED_LAUNCH_ARGC];
	char *body, *store, err[128], *out;
	size_t blen, olen;
	int status;

	setenv("HOME", "/proc/nonexistent", 1);
	ck_assert_int_eq(command_build_body(&spec, &body, &blen, err, sizeof(err)), 0);
	ck_assert_int_eq(detached_launch_argv(&s, blen, argv, &store), 0);
	out = run(argv, DETACHED_LAUNCH_ARGC, body, blen, &olen, &status);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 90);
	ck_assert_ptr_nonnull(detached_launch_error(WEXITSTATUS(status)));
	ck_assert_uint_eq(olen, 0);
	free(out);
	free(store);
	free(body);
}
END_TEST

/* The parser, on what a reader prints. */
START_TEST(parser_reads_records_in_any_pieces)
{
	static const char in[] = "k o 0 4096\nd o 4096 5\nab\ncdd e 0 0\nl e 0 0\n"
	                         "x signaled TERM 4101 0 1500\n";
	struct got g;
	struct detached_parser p = {0};

	for (size_t cut = 1; cut <= sizeof(in) - 1; cut++) {
		memset(&g, 0, sizeof(g));
		memset(&p, 0, sizeof(p));
		for (size_t i = 0; i < sizeof(in) - 1; i += cut) {
			size_t n = sizeof(in) - 1 - i < cut ? sizeof(in) - 1 - i : cut;
			ck_assert_int_eq(detached_parse(&p, in + i, n, on_rec, &g), 0);
		}
		ck_assert_uint_eq(g.skipped[1], 4096);
		ck_assert_uint_eq(g.len[1], 5);
		ck_assert_mem_eq(g.data[1], "ab\ncd", 5);
		ck_assert_int_eq(g.ended, DREC_STATUS + 1);
		ck_assert_int_eq(g.st.kind, DST_SIGNALED);
		ck_assert_str_eq(g.st.signal, "TERM");
		ck_assert_int_eq(g.st.duration_ms, 1500);
		got_free(&g);
	}
}
END_TEST

START_TEST(parser_refuses_what_a_reader_never_prints)
{
	static const char *const bad[] = {
	    "q\n", "d z 0 1\nx", "x exited 300 0 0 0\n", "x exited 0 0 0\n", "l o 5 4\n",
	    "x timeout 3 0 0 0\n", "d o 0\n", "x signaled term 0 0 0\n",
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
	    /* Numbers as sh arithmetic prints them: no sign, no leading zero, no blank more,
	     * and at most 2^63-1, the end of a range too (fuzz_detached_record found these). */
	    "d o 01 1\n", "d o +1 1\n", "k o -1 5\n", "l o 0  5\n", "d  o 0 1\n", "l o\t0 1\n",
	    "k o 0 9223372036854775808\n", "d o 9223372036854775807 1\n",
	    "k o 18446744073709551615 1\n", "x exited 007 0 0 0\n", "x exited +7 0 0 0\n",
	    "x exited 0 0 0 -0\n", "x exited  0 0 0 0\n", "x exited 0000000000000005 6 7\n",
	    "x exited 0 18446744073709551615 0 0\n", "x signaled  TERM 0 0 0\n",
	    "x timeout - 0 0 0 \n",
	};
	struct got g;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct detached_parser p = {0};
		memset(&g, 0, sizeof(g));
		ck_assert_msg(detached_parse(&p, bad[i], strlen(bad[i]), on_rec, &g) != 0, "%s",
		              bad[i]);
		got_free(&g);
	}
}
END_TEST

/* A line holds no NUL: "r" then a NUL is no "r". */
START_TEST(parser_refuses_a_nul_in_a_line)
{
	static const char in[] = "r\0junk\n";
	struct detached_parser p = {0};
	struct got g;

	memset(&g, 0, sizeof(g));
	ck_assert_int_ne(detached_parse(&p, in, sizeof(in) - 1, on_rec, &g), 0);
	ck_assert_int_eq(g.ended, 0);
	got_free(&g);
}
END_TEST

START_TEST(signal_names)
{
	ck_assert(detached_signal_valid("TERM"));
	ck_assert(detached_signal_valid("USR2"));
	ck_assert(!detached_signal_valid("SIGTERM"));
	ck_assert(!detached_signal_valid("term"));
	ck_assert(!detached_signal_valid("9"));
	ck_assert(!detached_signal_valid(""));
}
END_TEST

/* What a test started is ended with it: the supervisors of HOME's execs and their groups. */
static void kill_supervisors(void)
{
	char path[512];
	long pid;
	FILE *f;

	if (home[0] == '\0')
		return;
	snprintf(path, sizeof(path), "%s/.exec-broker/execs/" ID "/pgid", home);
	if ((f = fopen(path, "r")) != NULL) {
		if (fscanf(f, "%ld", &pid) == 1 && pid > 1)
			kill((pid_t)-pid, SIGKILL);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/.exec-broker/execs/" ID "/pid", home);
	if ((f = fopen(path, "r")) != NULL) {
		if (fscanf(f, "%ld", &pid) == 1 && pid > 1)
			kill((pid_t)-pid, SIGKILL); /* its session's group: itself and its helpers */
		fclose(f);
	}
	snprintf(path, sizeof(path), "rm -rf '%s'", home);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", home);
}

int main(void)
{
	Suite *s = suite_create("detached");
	TCase *th = tcase_create("host");
	TCase *tp = tcase_create("parser");

	atexit(kill_supervisors); /* runs in each test's process */
	tcase_set_timeout(th, 60);
	tcase_add_test(th, output_and_status_come_back_at_their_offsets);
	tcase_add_test(th, env_cwd_and_binary_output);
	tcase_add_test(th, the_command_outlives_the_launcher_in_its_own_group);
	tcase_add_test(th, a_running_exec_reads_as_running);
	tcase_add_loop_test(th, signals_reach_a_child_of_the_command, 0, 3);
	tcase_add_test(th, cancel_is_term_then_kill);
	tcase_add_test(th, the_deadline_holds_with_nobody_watching);
	tcase_add_test(th, the_deadline_sends_term_first);
	tcase_add_test(th, an_escaped_process_does_not_hold_the_exec);
	tcase_add_test(th, output_past_the_cap_keeps_the_newest_and_says_what_went);
	tcase_add_test(th, the_directory_goes_after_retention);
	tcase_add_test(th, a_dead_supervisor_reads_as_gone);
	tcase_add_test(th, a_later_start_removes_dead_supervisors_directories);
	tcase_add_test(th, a_missing_home_fails_the_start);
	tcase_add_test(tp, parser_reads_records_in_any_pieces);
	tcase_add_test(tp, parser_refuses_what_a_reader_never_prints);
	tcase_add_test(tp, parser_refuses_a_nul_in_a_line);
	tcase_add_test(tp, signal_names);
	suite_add_tcase(s, th);
	suite_add_tcase(s, tp);
	return tu_run_suite(s);
}
