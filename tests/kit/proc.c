/* tests/kit/proc.c: starting, running, waiting for and stopping processes (see proc.h). */
#include "tests/kit/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/clock.h"
#include "tests/kit/file.h"

#define KILL_TIMEOUT_MS 5000

extern char **environ;

int kit_run_timeout_ms = 60000;

/* What a forked child sets up before it execs. */
struct child {
	const char *const *argv;
	char **envp;
	const char *cwd;
	const struct kit_creds *creds;
	int in, out, err; /* become 0, 1 and 2 */
	int errfd;        /* receives errno if the exec fails */
	bool close_rest;  /* close every other descriptor */
	bool reset_term;  /* SIGTERM and SIGINT back to their defaults (they may be ignored) */
};

struct outbuf {
	char *p;
	size_t n, cap;
};

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kit: %s\n", line);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) != 0)
		for (int fd = lowfd; fd < 1024; fd++)
			close(fd);
}

int kit_creds_for(const char *user, struct kit_creds *c)
{
	struct passwd *pw;

	memset(c, 0, sizeof(*c));
	if (geteuid() != 0)
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		say("running as root needs the system user %s", user);
		return -1;
	}
	c->drop = true;
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	c->ngroups = (int)(sizeof(c->groups) / sizeof(c->groups[0]));
	if (getgrouplist(pw->pw_name, pw->pw_gid, c->groups, &c->ngroups) < 0) {
		c->groups[0] = pw->pw_gid;
		c->ngroups = 1;
	}
	return 0;
}

int kit_creds_apply(const struct kit_creds *c)
{
	if (c == NULL || !c->drop)
		return 0;
	if (setgroups((size_t)c->ngroups, c->groups) != 0 || setgid(c->gid) != 0 ||
	    setuid(c->uid) != 0)
		return -1;
	return 0;
}

static bool same_name(const char *a, const char *b)
{
	size_t la = strcspn(a, "="), lb = strcspn(b, "=");

	return la == lb && strncmp(a, b, la) == 0;
}

/* environ without the variables named with prefix, with env added or replacing
 * same-named entries; the strings are not copied. */
static char **env_merge(const char *const env[], const char *prefix)
{
	size_t n = 0, m = 0, k = 0;
	char **v;
	bool over;

	while (environ[n] != NULL)
		n++;
	while (env != NULL && env[m] != NULL)
		m++;
	v = calloc(n + m + 1, sizeof(*v));
	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		over = prefix != NULL && strncmp(environ[i], prefix, strlen(prefix)) == 0;
		for (size_t j = 0; j < m && !over; j++)
			over = same_name(environ[i], env[j]);
		if (!over)
			v[k++] = environ[i];
	}
	for (size_t j = 0; j < m; j++)
		v[k++] = (char *)env[j];
	v[k] = NULL;
	return v;
}

__attribute__((noreturn)) static void child_exec(const struct child *ch)
{
	sigset_t none;
	int e, errfd = ch->errfd;

	if (dup2(ch->in, 0) < 0 || dup2(ch->out, 1) < 0 || dup2(ch->err, 2) < 0)
		goto fail;
	if (ch->close_rest) {
		/* dup2() clears close-on-exec: set it again on the error pipe. */
		if (dup2(errfd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) != 0)
			_exit(127);
		errfd = 3;
		close_from(4);
	}
	signal(SIGPIPE, SIG_DFL);
	if (ch->reset_term) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (ch->cwd != NULL && chdir(ch->cwd) != 0)
		goto fail;
	if (kit_creds_apply(ch->creds) != 0)
		goto fail;
	execvpe(ch->argv[0], (char *const *)ch->argv, ch->envp);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0)
		_exit(126);
	_exit(127);
}

/* After fork: 0 once the child's exec succeeded (its end of ep closed by it), or the
 * child's errno, the child then reaped. ep[1] is closed here. */
static int exec_outcome(pid_t pid, int ep[2])
{
	int child_errno = 0;
	ssize_t n;

	close_fd(&ep[1]);
	do
		n = read(ep[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close_fd(&ep[0]);
	if (n != (ssize_t)sizeof(child_errno))
		return 0;
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return child_errno;
}

pid_t kit_spawn(const struct kit_spawn *o)
{
	struct child ch = {.argv = o->argv,
	                   .cwd = o->cwd,
	                   .creds = o->creds,
	                   .close_rest = true,
	                   .reset_term = true};
	int ep[2] = {-1, -1}, nul = -1, logfd = -1, e;
	pid_t parent = getpid(), pid = -1;

	ch.envp = env_merge(o->env, o->unset_prefix);
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (o->log != NULL)
		logfd = open(o->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (ch.envp == NULL || nul < 0 || (o->log != NULL && logfd < 0) ||
	    pipe2(ep, O_CLOEXEC) != 0) {
		say("could not start %s: %s", o->argv[0], strerror(errno));
		goto out;
	}
	ch.in = nul;
	ch.out = logfd >= 0 ? logfd : o->quiet_stdout ? nul : o->stdout_to_stderr ? 2 : 1;
	ch.err = logfd >= 0 ? logfd : o->quiet_stderr ? nul : 2;
	ch.errfd = ep[1];
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		say("could not start %s: fork: %s", o->argv[0], strerror(errno));
		goto out;
	}
	if (pid == 0) {
		if (o->new_session)
			setsid();
		if (o->die_with_parent) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
		}
		if (o->nofile > 0) {
			struct rlimit rl = {o->nofile, o->nofile};

			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				_exit(127);
		}
		child_exec(&ch);
	}
	e = exec_outcome(pid, ep);
	if (e != 0) {
		say("could not run %s: %s", o->argv[0], strerror(e));
		pid = -1;
	}
out:
	close_fd(&ep[0]);
	close_fd(&ep[1]);
	close_fd(&nul);
	close_fd(&logfd);
	free(ch.envp);
	return pid;
}

static ssize_t outbuf_read(struct outbuf *b, int fd)
{
	size_t ncap;
	char *np;

	if (b->cap - b->n < 65536) {
		ncap = b->cap * 2 > b->n + 65537 ? b->cap * 2 : b->n + 65537;
		np = realloc(b->p, ncap);
		if (np == NULL) {
			errno = ENOMEM;
			return -1;
		}
		b->p = np;
		b->cap = ncap;
	}
	return read(fd, b->p + b->n, b->cap - b->n - 1);
}

static char *outbuf_take(struct outbuf *b)
{
	char *p = b->p;

	if (p == NULL)
		p = malloc(1);
	if (p != NULL)
		p[b->n] = '\0';
	b->p = NULL;
	return p;
}

/* Moves stdin_data into infd and stdout/stderr into ob/eb until all three are closed,
 * killing pid at the deadline. */
static void run_pump(pid_t pid, const char *name, int *infd, const char *data, int *ofd,
                     struct outbuf *ob, int *efd, struct outbuf *eb)
{
	long long deadline = kit_now_ms() + kit_run_timeout_ms, left;
	size_t off = 0, len = data ? strlen(data) : 0;
	bool killed = false;
	struct pollfd pf[3];
	int n, io, ie, ii;
	ssize_t r;

	if (len == 0)
		close_fd(infd);
	while (*ofd >= 0 || *efd >= 0 || *infd >= 0) {
		left = deadline - kit_now_ms();
		if (left <= 0) {
			if (killed) {
				say("%s: output still open %d ms after SIGKILL, giving up", name,
				    KILL_TIMEOUT_MS);
				break;
			}
			say("%s: no end after %d ms, sending SIGKILL", name, kit_run_timeout_ms);
			kill(pid, SIGKILL);
			killed = true;
			close_fd(infd);
			deadline = kit_now_ms() + KILL_TIMEOUT_MS;
			continue;
		}
		n = 0;
		io = ie = ii = -1;
		if (*ofd >= 0) {
			pf[n] = (struct pollfd){.fd = *ofd, .events = POLLIN};
			io = n++;
		}
		if (*efd >= 0) {
			pf[n] = (struct pollfd){.fd = *efd, .events = POLLIN};
			ie = n++;
		}
		if (*infd >= 0) {
			pf[n] = (struct pollfd){.fd = *infd, .events = POLLOUT};
			ii = n++;
		}
		if (poll(pf, (nfds_t)n, left > INT_MAX ? INT_MAX : (int)left) < 0) {
			if (errno == EINTR)
				continue;
			say("%s: poll: %s", name, strerror(errno));
			break;
		}
		if (io >= 0 && pf[io].revents != 0) {
			r = outbuf_read(ob, *ofd);
			if (r > 0)
				ob->n += (size_t)r;
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				close_fd(ofd);
		}
		if (ie >= 0 && pf[ie].revents != 0) {
			r = outbuf_read(eb, *efd);
			if (r > 0)
				eb->n += (size_t)r;
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				close_fd(efd);
		}
		if (ii >= 0 && pf[ii].revents != 0) {
			r = write(*infd, data + off, len - off > 65536 ? 65536 : len - off);
			if (r > 0)
				off += (size_t)r;
			/* EPIPE: the program stopped reading stdin, which is its right. */
			if ((r < 0 && errno != EAGAIN && errno != EINTR) || off == len)
				close_fd(infd);
		}
	}
}

int kit_run_as(const struct kit_creds *c, const char *cwd, const char *const argv[],
               const char *const env[], const char *stdin_data, char **outp, char **errp,
               int *status)
{
	int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, ep[2] = {-1, -1};
	struct outbuf ob = {0}, eb = {0};
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
	struct child ch = {.argv = argv, .cwd = cwd, .creds = c};
	bool pipe_ignored = false;
	int rc = -1, st = 0, child_errno, nul = -1;
	pid_t pid;

	if (outp != NULL)
		*outp = NULL;
	if (errp != NULL)
		*errp = NULL;
	if (status != NULL)
		*status = 0;
	ch.envp = env_merge(env, NULL);
	if (ch.envp == NULL || pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0 ||
	    pipe2(ep, O_CLOEXEC) != 0 || (stdin_data != NULL && pipe2(in, O_CLOEXEC) != 0) ||
	    (stdin_data == NULL && (nul = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)) {
		say("could not run %s: %s", argv[0], strerror(errno));
		goto out;
	}
	ch.in = stdin_data != NULL ? in[0] : nul;
	ch.out = o[1];
	ch.err = e[1];
	ch.errfd = ep[1];
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		say("could not run %s: fork: %s", argv[0], strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_exec(&ch);
	close_fd(&o[1]);
	close_fd(&e[1]);
	close_fd(&in[0]);
	/* The error pipe closes on a successful exec and carries errno on a failed one. */
	child_errno = exec_outcome(pid, ep);
	if (child_errno != 0) {
		say("could not run %s: %s", argv[0], strerror(child_errno));
		goto out;
	}
	/* Writing to a program that stopped reading must be EPIPE here, not a fatal signal. */
	pipe_ignored = sigaction(SIGPIPE, &ign, &old_pipe) == 0;
	fcntl(o[0], F_SETFL, O_NONBLOCK);
	fcntl(e[0], F_SETFL, O_NONBLOCK);
	if (in[1] >= 0)
		fcntl(in[1], F_SETFL, O_NONBLOCK);
	run_pump(pid, argv[0], &in[1], stdin_data, &o[0], &ob, &e[0], &eb);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			say("could not wait for %s: %s", argv[0], strerror(errno));
			goto out;
		}
	if (status != NULL)
		*status = st;
	if (outp != NULL)
		*outp = outbuf_take(&ob); /* transferred */
	if (errp != NULL)
		*errp = outbuf_take(&eb); /* transferred */
	rc = 0;
out:
	if (pipe_ignored)
		sigaction(SIGPIPE, &old_pipe, NULL);
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&o[i]);
		close_fd(&e[i]);
		close_fd(&ep[i]);
	}
	close_fd(&nul);
	free(ob.p);
	free(eb.p);
	free(ch.envp);
	return rc;
}

int kit_run(const char *const argv[], const char *const env[], const char *stdin_data, char **out,
            char **err, int *status)
{
	return kit_run_as(NULL, NULL, argv, env, stdin_data, out, err, status);
}

const char *kit_self_dir(void)
{
	static char dir[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n;

	if (dir[0] != '\0')
		return dir;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return ".";
	self[n] = '\0';
	snprintf(dir, sizeof(dir), "%s", dirname(self));
	return dir;
}

int kit_wait(pid_t pid, int ms, int *status)
{
	long long end = kit_now_ms() + (ms > 0 ? ms : 0);
	int st = 0;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &st, ms < 0 ? 0 : WNOHANG);
		if (r == pid) {
			if (status != NULL)
				*status = st;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (ms >= 0 && kit_now_ms() >= end) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (ms >= 0)
			kit_sleep_ms(20);
	}
}

const char *kit_status_str(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, len, "wait status %#x", (unsigned)st);
	return buf;
}

int kit_proc_stat(pid_t pid, char *state, pid_t *ppid, unsigned long long *start)
{
	char path[64], buf[1024], *p, st = 0;
	unsigned long long t = 0;
	int pp = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (kit_file_read_into(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* The command name in parentheses may itself hold spaces and parentheses. */
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 1,
	           " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
	           "%*s %*s %llu",
	           &st, &pp, &t) != 3)
		return -1;
	if (state != NULL)
		*state = st;
	if (ppid != NULL)
		*ppid = pp;
	if (start != NULL)
		*start = t;
	return 0;
}

bool kit_pid_alive(pid_t pid)
{
	char state;

	if (pid <= 1)
		return false;
	if (kit_proc_stat(pid, &state, NULL, NULL) != 0)
		return false;
	return state != 'Z' && state != 'X';
}

bool kit_pid_reap_alive(pid_t pid)
{
	if (pid <= 1)
		return false;
	if (waitpid(pid, NULL, WNOHANG) == pid)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	return kit_pid_alive(pid);
}

double kit_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (kit_file_read_into(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* After the command name in parentheses: state is field 3, utime 14, stime 15. */
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime + cutime + cstime of /proc/pid/stat in clock ticks, and the parent. */
static int proc_times(pid_t pid, unsigned long long *ticks, pid_t *ppid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st, cut, cst;
	int pp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (kit_file_read_into(path, buf, sizeof(buf)) <= 0)
		return -1;
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &pp,
	           &ut, &st, &cut, &cst) != 5)
		return -1;
	*ticks = ut + st + cut + cst;
	*ppid = pp;
	return 0;
}

double kit_proc_tree_cpu_s(pid_t root)
{
	enum { MAXP = 32768 };
	static pid_t pids[MAXP], parents[MAXP];
	static unsigned long long ticks[MAXP];
	size_t n = 0;
	unsigned long long sum = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL && n < MAXP) {
		char *end;
		long v = strtol(de->d_name, &end, 10);
		if (*end != '\0' || v <= 0)
			continue;
		if (proc_times((pid_t)v, &ticks[n], &parents[n]) == 0)
			pids[n++] = (pid_t)v;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		/* Whether pids[i] is root or below it: follow the parents (bounded). */
		pid_t p = pids[i];
		for (int depth = 0; depth < 64 && p > 1 && p != root; depth++) {
			size_t k;
			for (k = 0; k < n && pids[k] != p; k++)
				;
			p = k < n ? parents[k] : 0;
		}
		if (p == root)
			sum += ticks[i];
	}
	return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

long kit_proc_status_kib(pid_t pid, const char *field)
{
	char path[64], buf[4096], *p;
	size_t n = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (kit_file_read_into(path, buf, sizeof(buf)) <= 0)
		return -1;
	for (p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, field, n) == 0 && p[n] == ':')
			return strtol(p + n + 1, NULL, 10);
	return -1;
}

void kit_procs_add(struct kit_procs *p, pid_t pid, int sig)
{
	struct kit_proc *nv;

	if (pid <= 1)
		return;
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].pid == pid)
			return;
	if (p->n == p->cap) {
		nv = realloc(p->v, (p->cap ? p->cap * 2 : 16) * sizeof(*nv));
		if (nv == NULL)
			return;
		p->v = nv;
		p->cap = p->cap ? p->cap * 2 : 16;
	}
	p->v[p->n].pid = pid;
	p->v[p->n].sig = sig;
	p->n++;
}

void kit_procs_add_tree(struct kit_procs *p, pid_t root, int sig)
{
	struct {
		pid_t pid, ppid;
	} *all = NULL, *na;
	size_t n = 0, cap = 0, qn = 1;
	pid_t *q = NULL;
	struct dirent *de;
	DIR *d = opendir("/proc");
	pid_t pid, ppid;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (pid <= 1 || kit_proc_stat(pid, NULL, &ppid, NULL) != 0)
			continue;
		if (n == cap) {
			na = realloc(all, (cap ? cap * 2 : 256) * sizeof(*all));
			if (na == NULL)
				break;
			all = na;
			cap = cap ? cap * 2 : 256;
		}
		all[n].pid = pid;
		all[n].ppid = ppid;
		n++;
	}
	closedir(d);
	q = malloc((n + 1) * sizeof(*q));
	if (q == NULL)
		goto out;
	q[0] = root;
	for (size_t i = 0; i < qn; i++)
		for (size_t j = 0; j < n; j++)
			if (all[j].ppid == q[i] && qn <= n) {
				q[qn++] = all[j].pid;
				kit_procs_add(p, all[j].pid, sig);
			}
out:
	free(q);
	free(all);
}

static int procs_wait_gone(const struct kit_procs *p, int timeout_ms)
{
	long long deadline = kit_now_ms() + timeout_ms;
	bool any;

	for (;;) {
		any = false;
		for (size_t i = 0; i < p->n; i++)
			if (kit_pid_reap_alive(p->v[i].pid))
				any = true;
		if (!any)
			return 0;
		if (kit_now_ms() > deadline)
			return -1;
		kit_sleep_ms(20);
	}
}

int kit_procs_stop(const struct kit_procs *p, int timeout_ms)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].sig != 0)
			kill(p->v[i].pid, p->v[i].sig);
	if (procs_wait_gone(p, timeout_ms) == 0)
		return 0;
	for (size_t i = 0; i < p->n; i++)
		if (kit_pid_reap_alive(p->v[i].pid)) {
			say("pid %d did not stop within %d ms, sending SIGKILL", (int)p->v[i].pid,
			    timeout_ms);
			kill(p->v[i].pid, SIGKILL);
		}
	return procs_wait_gone(p, KILL_TIMEOUT_MS);
}

void kit_procs_free(struct kit_procs *p)
{
	free(p->v);
	memset(p, 0, sizeof(*p));
}
