/* fuzz/fuzz_argv.c: the remote command (pool/command.c) through a real /bin/sh. The argv, env
 * and cwd of the input are built into a command (command_build) and framed for a session
 * (command_frame: inline, or past COMMAND_INLINE_MAX read by the bootstrap from stdin), and
 * run with /bin/sh -c as sshd would; the program it runs, fuzz/argv_helper, prints what it
 * was given. It must be exactly the argv, the env and the cwd, after the pgid line naming
 * the shell. A NUL or an invalid env name is refused and nothing runs.
 * Input: a flags byte (1: cwd is a directory whose name needs quoting, 2: argv[0] starts
 * with '-', 4: an argument of 33 KiB makes the command go ahead of stdin, 8: a NUL in the
 * last argument), then fields separated by NUL bytes: "\x01NAME=value" exports FZ_NAME,
 * anything else is the next argument. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz/fuzz.h"
#include "pool/command.h"

#define MAX_FIELDS 300
#define PAD_LEN    (33 * 1024)

static char helper[PATH_MAX], dir[PATH_MAX], odd_dir[PATH_MAX], own_cwd[PATH_MAX];
static char path_env[PATH_MAX + 32];
static char *pad;

static void cleanup(void)
{
	char link[PATH_MAX + 16];

	snprintf(link, sizeof(link), "%s/-eb-helper", dir);
	unlink(link);
	rmdir(odd_dir);
	rmdir(dir);
}

/* The helper beside this binary; a private directory with "-eb-helper" (a link to it, found
 * through PATH) and a directory whose name needs every kind of quoting. */
static void setup(void)
{
	char self[PATH_MAX], link[PATH_MAX + 16], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	FUZZ_CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	slash = strrchr(self, '/');
	*slash = '\0';
	snprintf(helper, sizeof(helper), "%s/argv_helper", self);
	FUZZ_CHECK(access(helper, X_OK) == 0, "%s: %s (make fuzz-build)", helper, strerror(errno));
	snprintf(dir, sizeof(dir), "%s/eb-fuzz-argv.XXXXXX",
	         getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	FUZZ_CHECK(realpath(dir, self) != NULL, "realpath");
	snprintf(dir, sizeof(dir), "%s", self);
	snprintf(link, sizeof(link), "%s/-eb-helper", dir);
	FUZZ_CHECK(symlink(helper, link) == 0, "symlink: %s", strerror(errno));
	snprintf(odd_dir, sizeof(odd_dir), "%s/a 'b' \"c\" $d `e` \\f\n*", dir);
	FUZZ_CHECK(mkdir(odd_dir, 0700) == 0, "mkdir: %s", strerror(errno));
	FUZZ_CHECK(getcwd(own_cwd, sizeof(own_cwd)) != NULL, "getcwd");
	snprintf(path_env, sizeof(path_env), "PATH=%s:/usr/bin:/bin", dir);
	pad = malloc(PAD_LEN + 1);
	memset(pad, 'p', PAD_LEN);
	pad[PAD_LEN / 2] = '\n';
	pad[PAD_LEN / 2 + 1] = '\'';
	pad[PAD_LEN] = '\0';
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup);
}

/* Runs exec with /bin/sh -c, prefix on its stdin; its stdout in *out (malloc'd). */
static void run_sh(const char *exec, const char *prefix, size_t prefix_len, char **out,
                   size_t *out_len, pid_t *pid)
{
	int in[2], outp[2], status;
	posix_spawn_file_actions_t fa;
	char *argv[] = {"sh", "-c", (char *)exec, NULL};
	char *envp[] = {path_env, NULL};
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);

	FUZZ_CHECK(buf != NULL && pipe2(in, O_CLOEXEC) == 0 && pipe2(outp, O_CLOEXEC) == 0,
	           "pipe: %s", strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	FUZZ_CHECK(posix_spawn(pid, "/bin/sh", &fa, NULL, argv, envp) == 0, "posix_spawn");
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(outp[1]);
	/* The shell reads the whole line before it prints anything. */
	for (size_t off = 0; off < prefix_len;) {
		ssize_t n = write(in[1], prefix + off, prefix_len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(in[1]);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			buf = realloc(buf, cap *= 2);
			FUZZ_CHECK(buf != NULL, "out of memory");
		}
		n = read(outp[0], buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(outp[0]);
	while (waitpid(*pid, &status, 0) < 0 && errno == EINTR)
		;
	*out = buf;
	*out_len = len;
}

/* The next NUL-terminated piece of out, checked against want[0..wlen). */
static const char *expect(const char **p, const char *end, const char *what, const char *want,
                          size_t wlen)
{
	const char *nul = memchr(*p, '\0', (size_t)(end - *p)), *got = *p;

	FUZZ_CHECK(nul != NULL, "the output ends before %s", what);
	FUZZ_CHECK((size_t)(nul - got) == wlen && memcmp(got, want, wlen) == 0,
	           "%s: the program got \"%.*s\" (%zu bytes), not \"%.*s\" (%zu bytes)", what,
	           (int)(nul - got > 200 ? 200 : nul - got), got, (size_t)(nul - got),
	           (int)(wlen > 200 ? 200 : wlen), want, wlen);
	*p = nul + 1;
	return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct eb_bytes argv[MAX_FIELDS + 2], names[MAX_FIELDS], values[MAX_FIELDS];
	char name_buf[MAX_FIELDS][260], err[200] = "", num[32];
	size_t argc = 0, nenv = 0, body_len, exec_len, prefix_len, out_len;
	char *body = NULL, *exec = NULL, *prefix = NULL, *out = NULL, *copy;
	unsigned flags;
	bool refuse = false;
	pid_t pid;
	int rc;

	if (!ready) {
		setup();
		ready = 1;
	}
	if (size < 1)
		return 0;
	flags = data[0];
	/* A copy with a NUL after the last field: the fields point into it. */
	copy = malloc(size);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	argv[argc++] = (struct eb_bytes){flags & 2 ? "-eb-helper" : helper,
	                                 strlen(flags & 2 ? "-eb-helper" : helper)};
	for (char *f = copy; f < copy + size - 1 && argc + nenv < MAX_FIELDS;) {
		size_t flen = strlen(f);

		if (f[0] == '\x01') {
			char *eq = memchr(f + 1, '=', flen - 1);
			size_t nlen = eq != NULL ? (size_t)(eq - f - 1) : flen - 1;

			if (nlen > 250)
				nlen = 250;
			snprintf(name_buf[nenv], sizeof(name_buf[nenv]), "FZ_%.*s", (int)nlen,
			         f + 1);
			names[nenv] = (struct eb_bytes){name_buf[nenv], strlen(name_buf[nenv])};
			values[nenv] = eq != NULL
			                   ? (struct eb_bytes){eq + 1, flen - (size_t)(eq - f) - 1}
			                   : (struct eb_bytes){"", 0};
			if (!command_env_name_valid(names[nenv].p, names[nenv].len))
				refuse = true;
			nenv++;
		} else {
			argv[argc++] = (struct eb_bytes){f, flen};
		}
		f += flen + 1;
	}
	if (flags & 4)
		argv[argc++] = (struct eb_bytes){pad, PAD_LEN};
	if (flags & 8) {
		/* The NUL that ends the last argument, counted in. */
		argv[argc - 1].len++;
		refuse = true;
	}
	struct command_spec spec = {.argv = argv,
	                            .argc = argc,
	                            .env_names = names,
	                            .env_values = values,
	                            .nenv = nenv,
	                            .cwd = flags & 1 ? odd_dir : NULL};
	rc = command_build(&spec, &body, &body_len, err, sizeof(err));
	if (refuse) {
		FUZZ_CHECK(rc == EB_ERR_INVAL && body == NULL && err[0] != '\0',
		           "a NUL or a bad env name was not refused (%d)", rc);
		goto out;
	}
	FUZZ_CHECK(rc == 0, "command_build refused: %s", err);
	FUZZ_CHECK(command_frame(body, body_len, "/dev/null", 1000, &exec, &exec_len, &prefix,
	                         &prefix_len) == 0,
	           "command_frame failed");
	FUZZ_CHECK(exec_len + 1 <= COMMAND_INLINE_MAX, "an exec request of %zu bytes", exec_len);
	FUZZ_CHECK(prefix == NULL || (flags & 4), "a short command went ahead of stdin");
	run_sh(exec, prefix, prefix_len, &out, &out_len, &pid);

	const char *p = out, *end = out + out_len;
	char line[64];
	int ll = snprintf(line, sizeof(line), COMMAND_PGID_TAG "%d\n", (int)pid);
	FUZZ_CHECK(out_len >= (size_t)ll && memcmp(out, line, (size_t)ll) == 0,
	           "the output does not start with the shell's pgid line: \"%.*s\"",
	           (int)(out_len > 60 ? 60 : out_len), out);
	p += ll;
	const char *cwd = flags & 1 ? odd_dir : own_cwd;
	expect(&p, end, "cwd", cwd, strlen(cwd));
	snprintf(num, sizeof(num), "%zu", argc);
	expect(&p, end, "argc", num, strlen(num));
	for (size_t i = 0; i < argc; i++) {
		char what[32];

		snprintf(what, sizeof(what), "argv[%zu]", i);
		expect(&p, end, what, argv[i].p, argv[i].len);
	}
	/* The environment: each name once, with the value it was last exported with. */
	size_t seen = 0;
	while (p < end) {
		const char *e = p, *nul = memchr(p, '\0', (size_t)(end - p)), *eq;
		bool found = false;

		FUZZ_CHECK(nul != NULL, "the environment is cut");
		eq = memchr(e, '=', (size_t)(nul - e));
		FUZZ_CHECK(eq != NULL, "an environment entry without '='");
		for (size_t i = nenv; i-- > 0 && !found;) {
			if (names[i].len != (size_t)(eq - e) ||
			    memcmp(names[i].p, e, names[i].len) != 0)
				continue;
			found = true;
			FUZZ_CHECK(values[i].len == (size_t)(nul - eq - 1) &&
			               memcmp(values[i].p, eq + 1, values[i].len) == 0,
			           "%.*s has another value", (int)(eq - e), e);
		}
		FUZZ_CHECK(found, "the program has %.*s, which was not exported", (int)(eq - e), e);
		seen++;
		p = nul + 1;
	}
	size_t distinct = 0;
	for (size_t i = 0; i < nenv; i++) {
		bool later = false;

		for (size_t j = i + 1; j < nenv; j++)
			later |= names[j].len == names[i].len &&
			         memcmp(names[j].p, names[i].p, names[i].len) == 0;
		distinct += !later;
	}
	FUZZ_CHECK(seen == distinct, "the program has %zu of the %zu variables", seen, distinct);
out:
	free(out);
	free(exec);
	free(prefix);
	free(body);
	free(copy);
	return 0;
}
