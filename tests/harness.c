/* tests/harness.c: starts and stops the throwaway PostgreSQL cluster and sshds of one test run,
 * keeps the registry of every server any process of the run started, and tears it all down:
 * from the owner (the th_setup() process) at exit or on a signal, or from a guardian process
 * when the owner dies any other way. Also th_run(), the one way tests run programs. */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <shadow.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_PORT          5432
#define PG_TIMEOUT_MS    20000
#define SSHD_TIMEOUT_MS  10000
#define STOP_TIMEOUT_MS  20000
#define KILL_TIMEOUT_MS  5000
#define LOGIN_USER_ROOT  "ebtest"
#define DEFAULT_SESSIONS 10
#define BASEDIR_TEMPLATE "/tmp/eb-test-XXXXXX"
#define BASEDIR_GLOB     "/tmp/eb-test-*"
#define ORPHAN_DIR_AGE_S 600

struct th_env th;
int th_run_timeout_ms = 60000;

static pid_t owner_pid;    /* the th_setup() process; 0 before */
static pid_t guardian_pid; /* its guardian, a child of the owner; 0 when gone */
static volatile sig_atomic_t torn_down;
static char pg_bindir[256];
static int sshd_knows_penalties = -1; /* PerSourcePenalties (OpenSSH >= 9.8): -1 not probed */
static unsigned db_counter;

/* Who a child process runs as: the current user, or (as root) a dropped account. */
struct creds {
	bool drop;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
};

/* A process to stop and the signal it gets first (0: none, it is expected to follow its
 * parent); everything still alive after the timeout gets SIGKILL. */
struct proc {
	pid_t pid;
	int sig;
};

struct procs {
	struct proc *v;
	size_t n, cap;
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
	fprintf(stderr, "harness: %s\n", line);
}

/* snprintf that refuses to truncate: paths cut short would name other files. */
__attribute__((format(printf, 3, 4))) static int fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		say("name too long: %s...", buf);
		return -1;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *status_str(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, len, "wait status %#x", (unsigned)st);
	return buf;
}

static bool keep_requested(void)
{
	const char *k = getenv("EB_TEST_KEEP");

	return k != NULL && strcmp(k, "1") == 0;
}

/* Reads up to len-1 bytes of path into buf, NUL-terminated. Returns the length or -1. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
	ssize_t n, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got < len - 1) {
		n = read(fd, buf + got, len - 1 - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = '\0';
	return got;
}

static int write_file(const char *path, const char *data, mode_t mode)
{
	size_t len = strlen(data), off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	ssize_t n;

	if (fd < 0) {
		say("could not create %s: %s", path, strerror(errno));
		return -1;
	}
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			say("could not write %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fchmod(fd, mode) != 0 || close(fd) != 0) {
		say("could not write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The pid on the first line of a pid file, or 0. */
static pid_t read_pidfile(const char *path)
{
	char buf[64];
	long v;

	if (read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	v = strtol(buf, NULL, 10);
	return v > 1 && v <= INT_MAX ? (pid_t)v : 0;
}

static void print_log_tail(const char *path)
{
	char buf[4096];
	struct stat sb;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && sb.st_size > (off_t)sizeof(buf) - 1)
		lseek(fd, sb.st_size - (off_t)sizeof(buf) + 1, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	fprintf(stderr, "harness: ---- end of %s ----\n%s%s", path, buf,
	        buf[n - 1] == '\n' ? "" : "\n");
	fprintf(stderr, "harness: ----\n");
}

/* Process state letter, parent pid and start time (clock ticks after boot) of pid. */
static int proc_stat(pid_t pid, char *state, pid_t *ppid, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	unsigned long long st = 0;
	int pp = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* The command name in parentheses may itself hold spaces and parentheses. */
	p = strrchr(buf, ')');
	if (p == NULL ||
	    sscanf(p + 1,
	           " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
	           "%*s %*s %llu",
	           state, &pp, &st) != 3)
		return -1;
	if (ppid != NULL)
		*ppid = pp;
	if (start != NULL)
		*start = st;
	return 0;
}

/* Whether pid runs. A server that was our child (or was adopted by us, the subreaper) is
 * a zombie once it exits: reap it; one that belongs to another process stays a zombie until
 * that process reaps it, and counts as gone too. */
static bool pid_alive(pid_t pid)
{
	char state;

	if (pid <= 1)
		return false;
	if (waitpid(pid, NULL, WNOHANG) == pid)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	if (proc_stat(pid, &state, NULL, NULL) != 0)
		return false;
	return state != 'Z' && state != 'X';
}

/* Whether pid started after the epoch time t (then it is not the process that wrote a file
 * at t, but a later one that got the same pid). */
static bool pid_started_after(pid_t pid, time_t t)
{
	char buf[8192], *p;
	unsigned long long start, btime;
	char state;
	long tck = sysconf(_SC_CLK_TCK);

	if (proc_stat(pid, &state, NULL, &start) != 0 || tck <= 0)
		return false;
	if (read_file("/proc/stat", buf, sizeof(buf)) <= 0 || (p = strstr(buf, "\nbtime ")) == NULL)
		return false;
	btime = strtoull(p + 7, NULL, 10);
	return (time_t)(btime + start / (unsigned long long)tck) > t + 2;
}

static bool contains_path_in(const char *s, size_t len, const char *dir)
{
	size_t dl = strlen(dir);

	for (size_t i = 0; i + dl < len; i++)
		if (memcmp(s + i, dir, dl) == 0 && s[i + dl] == '/')
			return true;
	return false;
}

/* Whether pid is one of ours: its command line names a path under dir (sshd -f, postgres
 * -D) or it runs in dir (the postmaster chdirs to its data dir). Guards against pid reuse. */
static bool pid_in_dir(pid_t pid, const char *dir)
{
	char path[64], buf[4096];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	n = read_file(path, buf, sizeof(buf));
	if (n > 0 && contains_path_in(buf, (size_t)n, dir))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		if (strncmp(buf, dir, strlen(dir)) == 0 && buf[strlen(dir)] == '/')
			return true;
	}
	return false;
}

static void procs_add(struct procs *p, pid_t pid, int sig)
{
	struct proc *nv;

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

/* Adds every descendant of root with signal sig. */
static void procs_add_tree(struct procs *p, pid_t root, int sig)
{
	struct {
		pid_t pid, ppid;
	} *all = NULL, *na;
	size_t n = 0, cap = 0, qn = 1;
	pid_t *q = NULL;
	struct dirent *de;
	DIR *d = opendir("/proc");
	char state;
	pid_t pid, ppid;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (pid <= 1 || proc_stat(pid, &state, &ppid, NULL) != 0)
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
				procs_add(p, all[j].pid, sig);
			}
out:
	free(q);
	free(all);
}

/* Adds sshd and postgres processes of dir: a server whose start was interrupted before it
 * made it into the registry (its command line names dir), or postgres backends orphaned by
 * a postmaster killed with SIGKILL (they run in its data dir, and exit on SIGQUIT). */
static void procs_add_strays(struct procs *p, const char *dir)
{
	char path[64], exe[PATH_MAX], cmd[4096];
	const char *base;
	struct dirent *de;
	DIR *d = opendir("/proc");
	ssize_t n;
	pid_t pid;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		pid = (pid_t)strtol(de->d_name, NULL, 10);
		if (pid <= 1 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n <= 0)
			continue;
		exe[n] = '\0';
		base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
		if (strcmp(base, "sshd") != 0 && strcmp(base, "postgres") != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
		n = read_file(path, cmd, sizeof(cmd));
		if (!pid_alive(pid))
			continue;
		if (n > 0 && contains_path_in(cmd, (size_t)n, dir))
			procs_add(p, pid, strcmp(base, "sshd") == 0 ? SIGTERM : SIGINT);
		else if (strcmp(base, "postgres") == 0 && pid_in_dir(pid, dir))
			procs_add(p, pid, SIGQUIT);
	}
	closedir(d);
}

static int procs_wait_gone(const struct procs *p, int timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	bool any;

	for (;;) {
		any = false;
		for (size_t i = 0; i < p->n; i++)
			if (pid_alive(p->v[i].pid))
				any = true;
		if (!any)
			return 0;
		if (now_ms() > deadline)
			return -1;
		sleep_ms(20);
	}
}

/* Sends each its first signal, waits up to timeout_ms for all of them to be gone, then
 * SIGKILLs the rest. 0 when all are gone. */
static int procs_stop(const struct procs *p, int timeout_ms)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].sig != 0)
			kill(p->v[i].pid, p->v[i].sig);
	if (procs_wait_gone(p, timeout_ms) == 0)
		return 0;
	for (size_t i = 0; i < p->n; i++)
		if (pid_alive(p->v[i].pid)) {
			say("pid %d did not stop within %d ms, sending SIGKILL", (int)p->v[i].pid,
			    timeout_ms);
			kill(p->v[i].pid, SIGKILL);
		}
	return procs_wait_gone(p, KILL_TIMEOUT_MS);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		say("could not remove %s: %s", path, strerror(errno));
	return 0;
}

/* Stops every server registered in dir/servers (and strays naming dir), then removes dir,
 * or with keep leaves it and says so. Used by the owner, the guardian and the sweep. */
static void teardown_dir(const char *dir, bool keep)
{
	struct procs p = {0};
	char path[512], kind[16], pidfile[512], *line = NULL;
	size_t cap = 0;
	pid_t cand[2];
	int rec;
	FILE *f;

	if (dir[0] == '\0')
		return;
	snprintf(path, sizeof(path), "%s/servers", dir);
	f = fopen(path, "re");
	while (f != NULL && getline(&line, &cap, f) > 0) {
		if (sscanf(line, "%15s %d %511s", kind, &rec, pidfile) != 3)
			continue;
		/* The pid file names the current process of a restarted server; the recorded pid
		 * covers a server that died without removing it or never wrote it. */
		cand[0] = read_pidfile(pidfile);
		cand[1] = rec;
		for (int i = 0; i < 2; i++) {
			if (!pid_alive(cand[i]) || !pid_in_dir(cand[i], dir))
				continue;
			procs_add(&p, cand[i], strcmp(kind, "pg") == 0 ? SIGINT : SIGTERM);
			procs_add_tree(&p, cand[i], strcmp(kind, "pg") == 0 ? 0 : SIGTERM);
		}
	}
	free(line);
	if (f != NULL)
		fclose(f);
	procs_add_strays(&p, dir);
	if (procs_stop(&p, STOP_TIMEOUT_MS) != 0)
		say("some servers of %s survived SIGKILL", dir);
	free(p.v);
	if (keep) {
		snprintf(path, sizeof(path), "%s/kept", dir);
		write_file(path, "EB_TEST_KEEP=1\n", 0644);
		say("servers stopped; kept %s (EB_TEST_KEEP=1), remove it when done", dir);
		return;
	}
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* Removes what runs killed with SIGKILL (owner and guardian both) left in /tmp. */
static void sweep_leftovers(void)
{
	char path[512];
	struct stat sb, ob;
	pid_t owner, guardian;
	bool owner_live, guardian_live;
	glob_t g;

	if (glob(BASEDIR_GLOB, GLOB_NOSORT, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *dir = g.gl_pathv[i];

		if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid())
			continue;
		if (fmt(path, sizeof(path), "%s/kept", dir) != 0 || access(path, F_OK) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/owner", dir);
		if (stat(path, &ob) != 0) {
			/* th_setup writes owner right after mkdtemp and starts no server before:
			 * a dir without one is empty, or still being set up if it is young. */
			if (time(NULL) - sb.st_mtime > ORPHAN_DIR_AGE_S)
				nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
			continue;
		}
		owner = read_pidfile(path);
		owner_live = pid_alive(owner) && !pid_started_after(owner, ob.st_mtime);
		snprintf(path, sizeof(path), "%s/guardian", dir);
		guardian = read_pidfile(path);
		guardian_live = stat(path, &ob) == 0 && pid_alive(guardian) &&
		                !pid_started_after(guardian, ob.st_mtime);
		if (owner_live || guardian_live)
			continue;
		say("removing what an interrupted run left in %s", dir);
		teardown_dir(dir, false);
	}
	globfree(&g);
}

static void register_server(const char *kind, pid_t pid, const char *pidfile)
{
	char path[512], line[600];
	int fd, n;

	snprintf(path, sizeof(path), "%s/servers", th.basedir);
	n = snprintf(line, sizeof(line), "%s %d %s\n", kind, (int)pid, pidfile);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	/* One write() per line: forked test children append to the same file. */
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		say("could not register %s in %s: %s", pidfile, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void close_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) != 0)
		for (int fd = lowfd; fd < 1024; fd++)
			close(fd);
}

static int creds_apply(const struct creds *c)
{
	if (!c->drop)
		return 0;
	if (setgroups((size_t)c->ngroups, c->groups) != 0 || setgid(c->gid) != 0 ||
	    setuid(c->uid) != 0)
		return -1;
	return 0;
}

static int creds_for(const char *user, struct creds *c)
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

static bool same_name(const char *a, const char *b)
{
	size_t la = strcspn(a, "="), lb = strcspn(b, "=");

	return la == lb && strncmp(a, b, la) == 0;
}

/* environ with env added or replacing same-named entries; the strings are not copied. */
static char **env_merge(const char *const env[])
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
		over = false;
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

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Moves stdin_data into infd and stdout/stderr into ob/eb until all three are closed,
 * killing pid at the deadline. */
static void run_pump(pid_t pid, const char *name, int *infd, const char *data, int *ofd,
                     struct outbuf *ob, int *efd, struct outbuf *eb)
{
	long long deadline = now_ms() + th_run_timeout_ms, left;
	size_t off = 0, len = data ? strlen(data) : 0;
	bool killed = false;
	struct pollfd pf[3];
	int n, io, ie, ii;
	ssize_t r;

	if (len == 0)
		close_fd(infd);
	while (*ofd >= 0 || *efd >= 0 || *infd >= 0) {
		left = deadline - now_ms();
		if (left <= 0) {
			if (killed) {
				say("%s: output still open %d ms after SIGKILL, giving up", name,
				    KILL_TIMEOUT_MS);
				break;
			}
			say("%s: no end after %d ms, sending SIGKILL", name, th_run_timeout_ms);
			kill(pid, SIGKILL);
			killed = true;
			close_fd(infd);
			deadline = now_ms() + KILL_TIMEOUT_MS;
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

__attribute__((noreturn)) static void run_child(const struct creds *c, const char *cwd,
                                                const char *const argv[], char **envp, int infd,
                                                int ofd, int efd, int errfd)
{
	sigset_t none;
	int e, in = infd >= 0 ? infd : open("/dev/null", O_RDONLY);

	if (in < 0 || dup2(in, 0) < 0 || dup2(ofd, 1) < 0 || dup2(efd, 2) < 0)
		goto fail;
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (cwd != NULL && chdir(cwd) != 0)
		goto fail;
	if (c != NULL && creds_apply(c) != 0)
		goto fail;
	execvpe(argv[0], (char *const *)argv, envp);
fail:
	e = errno;
	if (write(errfd, &e, sizeof(e)) < 0)
		_exit(126);
	_exit(127);
}

/* th_run(), optionally as another user (c) in another directory (cwd). */
static int run_cmd(const struct creds *c, const char *cwd, const char *const argv[],
                   const char *const env[], const char *stdin_data, char **outp, char **errp,
                   int *status)
{
	int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, ep[2] = {-1, -1};
	struct outbuf ob = {0}, eb = {0};
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
	bool pipe_ignored = false;
	char **envp = NULL;
	int rc = -1, st = 0, child_errno;
	ssize_t n;
	pid_t pid;

	if (outp != NULL)
		*outp = NULL;
	if (errp != NULL)
		*errp = NULL;
	if (status != NULL)
		*status = 0;
	envp = env_merge(env);
	if (envp == NULL || pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0 ||
	    pipe2(ep, O_CLOEXEC) != 0 || (stdin_data != NULL && pipe2(in, O_CLOEXEC) != 0)) {
		say("could not run %s: %s", argv[0], strerror(errno));
		goto out;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		say("could not run %s: fork: %s", argv[0], strerror(errno));
		goto out;
	}
	if (pid == 0)
		run_child(c, cwd, argv, envp, in[0], o[1], e[1], ep[1]);
	close_fd(&o[1]);
	close_fd(&e[1]);
	close_fd(&ep[1]);
	close_fd(&in[0]);
	/* The error pipe closes on a successful exec and carries errno on a failed one. */
	do
		n = read(ep[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(child_errno)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
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
	free(ob.p);
	free(eb.p);
	free(envp);
	return rc;
}

int th_run(const char *const argv[], const char *const env[], const char *stdin_data, char **out,
           char **err, int *status)
{
	return run_cmd(NULL, NULL, argv, env, stdin_data, out, err, status);
}

/* Runs a setup command that must succeed; on failure says what it printed. out (may be
 * NULL) receives its stdout. */
static int run_ok(const struct creds *c, const char *cwd, const char *const argv[], char **out)
{
	char *o = NULL, *e = NULL, why[64];
	int st, rc = -1;

	if (out != NULL)
		*out = NULL;
	if (run_cmd(c, cwd, argv, NULL, NULL, &o, &e, &st) != 0)
		goto out;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("%s failed (%s):\n%s%s", argv[0], status_str(st, why, sizeof(why)), o, e);
		goto out;
	}
	rc = 0;
	if (out != NULL) {
		*out = o; /* transferred */
		o = NULL;
	}
out:
	free(o);
	free(e);
	return rc;
}

static int make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST) {
		say("could not create %s: %s", path, strerror(errno));
		return -1;
	}
	if (chmod(path, mode) != 0) {
		say("could not chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int give_to(const struct creds *c, const char *path)
{
	if (c->drop && chown(path, c->uid, c->gid) != 0) {
		say("could not chown %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* --- PostgreSQL --- */

static int find_pg_bindir(void)
{
	const char *env = getenv("EB_TEST_PG_BINDIR");
	char path[600];
	long best = -1, v;
	glob_t g;

	if (env != NULL && *env != '\0') {
		if (fmt(pg_bindir, sizeof(pg_bindir), "%s", env) != 0)
			return -1;
	} else {
		if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++) {
				v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL,
				           10);
				if (v > best &&
				    fmt(pg_bindir, sizeof(pg_bindir), "%s", g.gl_pathv[i]) == 0)
					best = v;
			}
			globfree(&g);
		}
		if (best < 0) {
			say("no /usr/lib/postgresql/*/bin; set EB_TEST_PG_BINDIR");
			return -1;
		}
	}
	snprintf(path, sizeof(path), "%s/initdb", pg_bindir);
	if (access(path, X_OK) != 0) {
		say("no initdb in %s", pg_bindir);
		return -1;
	}
	return 0;
}

void th_pg_conninfo(const char *dbname, char *buf, size_t len)
{
	snprintf(buf, len, "host=%s port=%d user=postgres dbname=%s", th.pg.sockdir, PG_PORT,
	         dbname);
}

int th_pg_pid(const struct th_pg *pg)
{
	char path[300];
	pid_t pid;

	if (pg->datadir[0] == '\0' || fmt(path, sizeof(path), "%s/postmaster.pid", pg->datadir))
		return 0;
	pid = read_pidfile(path);
	return pid_alive(pid) && pid_in_dir(pid, pg->dir) ? (int)pid : 0;
}

/* Forks a server in its own session (out of reach of Check's killpg of the test's process
 * group and of the terminal's ^C), stdout and stderr appended to logpath. */
static pid_t spawn_server(const struct creds *c, const char *cwd, const char *logpath,
                          const char *const argv[])
{
	sigset_t none;
	pid_t pid;
	int fd;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		say("could not start %s: fork: %s", argv[0], strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	setsid();
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0)
		dup2(fd, 0);
	fd = open(logpath, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	close_from(3);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (chdir(cwd) != 0 || creds_apply(c) != 0)
		dprintf(2, "harness: could not prepare %s: %s\n", argv[0], strerror(errno));
	else
		execv(argv[0], (char *const *)argv);
	dprintf(2, "harness: could not exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int th_pg_start(struct th_pg *pg)
{
	char postgres[300], sock[300], pidfile[300], ci[512], why[64];
	const char *argv[] = {postgres,
	                      "-D",
	                      pg->datadir,
	                      "-k",
	                      sock,
	                      "-c",
	                      "listen_addresses=",
	                      "-p",
	                      "5432",
	                      "-c",
	                      "fsync=off",
	                      "-c",
	                      "full_page_writes=off",
	                      "-c",
	                      "synchronous_commit=off",
	                      "-c",
	                      "max_connections=400",
	                      NULL};
	struct procs stray = {0};
	long long deadline;
	struct creds c;
	pid_t pid;
	int st, rc;

	if (pg->datadir[0] == '\0' || pg_bindir[0] == '\0') {
		say("th_pg_start: no cluster (th_setup without TH_PG)");
		return -1;
	}
	pid = th_pg_pid(pg);
	if (pid > 0) {
		pg->pid = pid;
		pg->running = 1;
		return 0;
	}
	if (creds_for("postgres", &c) != 0 ||
	    fmt(postgres, sizeof(postgres), "%s/postgres", pg_bindir) != 0 ||
	    fmt(sock, sizeof(sock), "%s/.s.PGSQL.%d.lock", pg->sockdir, PG_PORT) != 0 ||
	    fmt(pidfile, sizeof(pidfile), "%s/postmaster.pid", pg->datadir) != 0)
		return -1;
	/* No postmaster runs. If one was killed with SIGKILL, its backends may still run on the
	 * old shared memory: stop them before the new one starts. Its lock files remain, and if
	 * it was another process's child it is still a zombie, which postgres would take for a
	 * running server and refuse to start. */
	procs_add_strays(&stray, pg->dir);
	rc = procs_stop(&stray, PG_TIMEOUT_MS);
	free(stray.v);
	if (rc != 0)
		return -1;
	unlink(pidfile);
	unlink(sock);
	snprintf(sock, sizeof(sock), "%s", pg->sockdir);
	pid = spawn_server(&c, pg->datadir, pg->log, argv);
	if (pid < 0)
		return -1;
	register_server("pg", pid, pidfile);
	th_pg_conninfo("postgres", ci, sizeof(ci));
	deadline = now_ms() + PG_TIMEOUT_MS;
	while (PQping(ci) != PQPING_OK) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			say("postgres exited while starting (%s)",
			    status_str(st, why, sizeof(why)));
			print_log_tail(pg->log);
			return -1;
		}
		if (now_ms() > deadline) {
			say("postgres did not accept connections within %d ms", PG_TIMEOUT_MS);
			print_log_tail(pg->log);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		sleep_ms(30);
	}
	if (read_pidfile(pidfile) != pid)
		say("warning: %s does not name pid %d", pidfile, (int)pid);
	pg->pid = (int)pid;
	pg->running = 1;
	return 0;
}

int th_pg_stop(struct th_pg *pg)
{
	struct procs p = {0};
	pid_t pid = th_pg_pid(pg);
	int rc;

	if (pid == 0 && pid_alive(pg->pid) && pid_in_dir(pg->pid, pg->dir))
		pid = pg->pid;
	pg->running = 0;
	pg->pid = 0;
	if (pid == 0)
		return 0;
	/* SIGINT is the fast shutdown: sessions are cut, nothing waits for clients. */
	procs_add(&p, pid, SIGINT);
	procs_add_tree(&p, pid, 0);
	rc = procs_stop(&p, PG_TIMEOUT_MS);
	free(p.v);
	if (rc != 0)
		say("postgres (pid %d) did not stop", (int)pid);
	return rc;
}

static void trim_nl(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static PGconn *pg_connect(const char *dbname)
{
	char ci[512], msg[1024];
	PGconn *c;

	th_pg_conninfo(dbname, ci, sizeof(ci));
	c = PQconnectdb(ci);
	if (c != NULL && PQstatus(c) == CONNECTION_OK)
		return c;
	snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
	trim_nl(msg);
	say("could not connect to database %s: %s", dbname, msg);
	PQfinish(c);
	return NULL;
}

int th_pg_exec(const char *dbname, const char *sql)
{
	PGconn *c = pg_connect(dbname);
	PGresult *r;
	ExecStatusType st;
	char msg[1024];
	int rc = -1;

	if (c == NULL)
		return -1;
	r = PQexec(c, sql);
	st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		rc = 0;
	} else {
		snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
		trim_nl(msg);
		say("%s: %s", sql, msg);
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

int th_db_create(char *conninfo, size_t len)
{
	char name[64], sql[256], msg[1024];
	long long deadline = now_ms() + PG_TIMEOUT_MS;
	PGconn *c = pg_connect("postgres");
	const char *state;
	PGresult *r;
	int rc = -1;

	if (c == NULL)
		return -1;
	snprintf(name, sizeof(name), "t_%d_%u", (int)getpid(), ++db_counter);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE eb_template%s", name,
	         PQserverVersion(c) >= 150000 ? " STRATEGY FILE_COPY" : "");
	for (;;) {
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			break;
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		/* 55006: someone (a migration of eb_template) is connected to the template. */
		if (state != NULL && strcmp(state, "55006") == 0 && now_ms() < deadline) {
			PQclear(r);
			sleep_ms(50);
			continue;
		}
		snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
		trim_nl(msg);
		say("%s: %s", sql, msg);
		goto out;
	}
	th_pg_conninfo(name, conninfo, len);
	if (strlen(conninfo) + 1 >= len) {
		say("conninfo buffer too small (%zu)", len);
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	PQfinish(c);
	return rc;
}

static int pg_init(void)
{
	struct th_pg *pg = &th.pg;
	char initdb[300];
	const char *argv[] = {initdb,  "-D", pg->datadir, "-U",         "postgres",  "-A",
	                      "trust", "-E", "UTF8",      "--locale=C", "--no-sync", NULL};
	struct creds c;

	if (fmt(pg->dir, sizeof(pg->dir), "%s/pg", th.basedir) != 0 ||
	    fmt(pg->datadir, sizeof(pg->datadir), "%s/data", pg->dir) != 0 ||
	    fmt(pg->sockdir, sizeof(pg->sockdir), "%s/sock", pg->dir) != 0 ||
	    fmt(pg->log, sizeof(pg->log), "%s/log", pg->dir) != 0 || find_pg_bindir() != 0 ||
	    fmt(initdb, sizeof(initdb), "%s/initdb", pg_bindir) != 0 ||
	    creds_for("postgres", &c) != 0)
		return -1;
	if (make_dir(pg->dir, 0755) != 0 || make_dir(pg->sockdir, 0755) != 0 ||
	    write_file(pg->log, "", 0644) != 0 || give_to(&c, pg->dir) != 0 ||
	    give_to(&c, pg->sockdir) != 0 || give_to(&c, pg->log) != 0)
		return -1;
	if (run_ok(&c, pg->dir, argv, NULL) != 0 || th_pg_start(pg) != 0)
		return -1;
	return th_pg_exec("postgres", "CREATE DATABASE eb_template");
}

/* --- sshd --- */

static const char *sshd_path(void)
{
	static const char *const paths[] = {"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

static int keygen(const char *path)
{
	const char *argv[] = {"ssh-keygen", "-q",      "-t", "ed25519", "-N", "",
	                      "-C",         "eb-test", "-f", path,      NULL};

	return run_ok(NULL, NULL, argv, NULL);
}

static int key_fingerprint(const char *pub, char *fp, size_t len)
{
	const char *argv[] = {"ssh-keygen", "-lf", pub, NULL};
	char *out, field[128];
	int rc = -1;

	if (run_ok(NULL, NULL, argv, &out) != 0)
		return -1;
	if (sscanf(out, "%*s %127s", field) == 1 && strncmp(field, "SHA256:", 7) == 0)
		rc = fmt(fp, len, "%s", field);
	else
		say("unexpected ssh-keygen -lf output: %s", out);
	free(out);
	return rc;
}

/* A port the kernel just had free on 127.0.0.1: sshd gets it a moment later, or fails to
 * bind and th_sshd_start() tries another. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	else
		say("could not find a free port: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return port;
}

static bool tcp_accepts(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* Whether extra sets keyword kw (before any Match block, whose settings are conditional). */
static bool extra_sets(const char *extra, const char *kw)
{
	size_t kl = strlen(kw);
	const char *l = extra;

	while (l != NULL && *l != '\0') {
		l += strspn(l, " \t");
		if (strncasecmp(l, "Match", 5) == 0 && (l[5] == ' ' || l[5] == '\t'))
			return false;
		if (strncasecmp(l, kw, kl) == 0 && (l[kl] == ' ' || l[kl] == '\t' || l[kl] == '='))
			return true;
		l = strchr(l, '\n');
		if (l != NULL)
			l++;
	}
	return false;
}

__attribute__((format(printf, 4, 5))) static void cfg_line(FILE *f, const char *extra,
                                                           const char *kw, const char *vfmt, ...)
{
	va_list ap;

	/* sshd keeps the first value of a keyword: leave it to extra_config. */
	if (extra_sets(extra, kw))
		return;
	fprintf(f, "%s ", kw);
	va_start(ap, vfmt);
	vfprintf(f, vfmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static int sshd_write_config(const struct th_sshd *s, bool penalties)
{
	const char *x = s->opts.extra_config;
	FILE *f = fopen(s->config, "we");

	if (f == NULL) {
		say("could not create %s: %s", s->config, strerror(errno));
		return -1;
	}
	cfg_line(f, x, "ListenAddress", "127.0.0.1:%d", s->port);
	cfg_line(f, x, "HostKey", "%s", s->host_key);
	cfg_line(f, x, "PidFile", "%s", s->pidfile);
	cfg_line(f, x, "AuthorizedKeysFile", "%s/authorized_keys", s->dir);
	cfg_line(f, x, "StrictModes", "no");
	cfg_line(f, x, "PubkeyAuthentication", "yes");
	cfg_line(f, x, "PasswordAuthentication", "no");
	cfg_line(f, x, "KbdInteractiveAuthentication", "no");
	cfg_line(f, x, "UsePAM", "no");
	cfg_line(f, x, "PermitRootLogin", "no");
	cfg_line(f, x, "AllowUsers", "%s", th.user);
	cfg_line(f, x, "X11Forwarding", "no");
	cfg_line(f, x, "AllowTcpForwarding", "no");
	cfg_line(f, x, "LogLevel", "VERBOSE");
	cfg_line(f, x, "MaxSessions", "%d", s->opts.max_sessions);
	/* Tests open many connections at once; the default 10:30:100 drops some. */
	cfg_line(f, x, "MaxStartups", "200:30:300");
	cfg_line(f, x, "PrintMotd", "no");
	cfg_line(f, x, "PrintLastLog", "no");
	cfg_line(f, x, "UseDNS", "no");
	/* OpenSSH >= 9.8 would lock 127.0.0.1 out after the failed logins tests provoke. */
	if (penalties)
		cfg_line(f, x, "PerSourcePenalties", "no");
	if (x != NULL && *x != '\0')
		fprintf(f, "%s%s", x, x[strlen(x) - 1] == '\n' ? "" : "\n");
	if (fclose(f) != 0) {
		say("could not write %s: %s", s->config, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes the config and has sshd -t check it, so that a bad extra_config is one clear
 * message and not a timeout. */
static int sshd_check_config(struct th_sshd *s)
{
	const char *argv[] = {sshd_path(), "-t", "-f", s->config, NULL};
	char *out = NULL, *err = NULL, why[64];
	int st, rc = -1;
	bool pen = sshd_knows_penalties != 0;

	for (;;) {
		if (sshd_write_config(s, pen) != 0 ||
		    run_cmd(NULL, NULL, argv, NULL, NULL, &out, &err, &st) != 0)
			goto out;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			if (pen)
				sshd_knows_penalties = 1;
			rc = 0;
			goto out;
		}
		if (!pen || strstr(err, "PerSourcePenalties") == NULL)
			break;
		sshd_knows_penalties = 0;
		pen = false;
		free(out);
		free(err);
		out = err = NULL;
	}
	say("sshd rejects %s (%s):\n%s%s", s->config, status_str(st, why, sizeof(why)), out, err);
out:
	free(out);
	free(err);
	return rc;
}

/* Whether log, from offset off on, holds needle. */
static bool log_has(const char *log, off_t off, const char *needle)
{
	char buf[16384];
	ssize_t n;
	int fd = open(log, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = pread(fd, buf, sizeof(buf) - 1, off);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* 0 when sshd (already started) has written its pid file and accepts connections, 1 when it
 * could not bind its port, -1 on any other failure. */
static int sshd_wait(struct th_sshd *s, off_t logoff)
{
	long long deadline = now_ms() + SSHD_TIMEOUT_MS;
	pid_t pid;

	for (;;) {
		pid = read_pidfile(s->pidfile);
		if (pid > 0 && pid_alive(pid) && tcp_accepts(s->port)) {
			s->pid = (int)pid;
			return 0;
		}
		if (log_has(s->log, logoff, "Cannot bind any address"))
			return 1;
		if (log_has(s->log, logoff, "fatal:") || now_ms() > deadline) {
			say("sshd %s did not start on 127.0.0.1:%d", s->config, s->port);
			print_log_tail(s->log);
			if (pid > 0 && pid_alive(pid))
				kill(pid, SIGKILL);
			return -1;
		}
		sleep_ms(20);
	}
}

/* Starts sshd on s's config; with a fixed port retries that port, else a fresh one. */
static int sshd_launch(struct th_sshd *s, bool fixed_port)
{
	const char *argv[] = {sshd_path(), "-f", s->config, "-E", s->log, NULL};
	char *out = NULL, *err = NULL, why[64];
	struct stat sb;
	int st, r = -1;

	if (argv[0] == NULL) {
		say("no sshd in /usr/sbin, /usr/local/sbin or /sbin");
		return -1;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		if (attempt > 0 && fixed_port)
			sleep_ms(200);
		if (attempt > 0 && !fixed_port) {
			s->port = free_port();
			if (s->port < 0 || sshd_write_config(s, sshd_knows_penalties == 1) != 0)
				return -1;
		}
		unlink(s->pidfile);
		sb.st_size = 0;
		stat(s->log, &sb);
		/* Not -D: sshd daemonizes (its own session, out of reach of Check's killpg)
		 * after checking its config and keys, which is when this returns. */
		if (run_cmd(NULL, NULL, argv, NULL, NULL, &out, &err, &st) != 0)
			return -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			say("sshd %s failed (%s): %s", s->config, status_str(st, why, sizeof(why)),
			    err);
			print_log_tail(s->log);
			free(out);
			free(err);
			return -1;
		}
		free(out);
		free(err);
		out = err = NULL;
		r = sshd_wait(s, sb.st_size);
		if (r == 0) {
			register_server("sshd", s->pid, s->pidfile);
			s->running = 1;
			return 0;
		}
		if (r < 0)
			return -1;
	}
	say("sshd %s could not bind 127.0.0.1:%d", s->config, s->port);
	print_log_tail(s->log);
	return -1;
}

int th_sshd_start(struct th_sshd *s, const struct th_sshd_opts *opts)
{
	struct th_sshd_opts o = {DEFAULT_SESSIONS, NULL};
	char path[300], pub[300], key[4096];
	int n;

	/* Copied first: opts may point into *s. */
	if (opts != NULL)
		o = *opts;
	if (o.max_sessions <= 0)
		o.max_sessions = DEFAULT_SESSIONS;
	memset(s, 0, sizeof(*s));
	s->opts = o;
	if (th.basedir[0] == '\0' || th.client_key_pub[0] == '\0') {
		say("th_sshd_start: no th_setup(TH_SSHD) in this run");
		return -1;
	}
	/* mkdir is the lock: forked test children start sshds concurrently. */
	for (n = 1; n < 1000; n++) {
		if (fmt(s->dir, sizeof(s->dir), "%s/sshd-%d", th.basedir, n) != 0)
			return -1;
		if (mkdir(s->dir, 0755) == 0)
			break;
		if (errno != EEXIST) {
			say("could not create %s: %s", s->dir, strerror(errno));
			return -1;
		}
	}
	if (fmt(s->config, sizeof(s->config), "%s/sshd_config", s->dir) != 0 ||
	    fmt(s->host_key, sizeof(s->host_key), "%s/ssh_host_ed25519_key", s->dir) != 0 ||
	    fmt(s->log, sizeof(s->log), "%s/log", s->dir) != 0 ||
	    fmt(s->pidfile, sizeof(s->pidfile), "%s/sshd.pid", s->dir) != 0 ||
	    fmt(pub, sizeof(pub), "%s.pub", s->host_key) != 0 ||
	    fmt(path, sizeof(path), "%s/authorized_keys", s->dir) != 0 || chmod(s->dir, 0755) != 0)
		return -1;
	if (keygen(s->host_key) != 0 ||
	    key_fingerprint(pub, s->host_key_fp, sizeof(s->host_key_fp)))
		return -1;
	if (read_file(th.client_key_pub, key, sizeof(key)) <= 0) {
		say("could not read %s", th.client_key_pub);
		return -1;
	}
	if (write_file(path, key, 0644) != 0 || write_file(s->log, "", 0644) != 0)
		return -1;
	s->port = free_port();
	if (s->port < 0 || sshd_check_config(s) != 0)
		return -1;
	return sshd_launch(s, false);
}

int th_sshd_pid(const struct th_sshd *s)
{
	pid_t pid;

	if (s->pidfile[0] == '\0')
		return 0;
	pid = read_pidfile(s->pidfile);
	return pid_alive(pid) && pid_in_dir(pid, s->dir) ? (int)pid : 0;
}

int th_sshd_stop(struct th_sshd *s)
{
	struct procs p = {0};
	pid_t pid = th_sshd_pid(s);
	int rc;

	if (pid == 0 && pid_alive(s->pid) && pid_in_dir(s->pid, s->dir))
		pid = s->pid;
	s->running = 0;
	s->pid = 0;
	if (pid == 0)
		return 0;
	/* The listener alone would leave the established connections served. */
	procs_add(&p, pid, SIGTERM);
	procs_add_tree(&p, pid, SIGTERM);
	rc = procs_stop(&p, STOP_TIMEOUT_MS);
	free(p.v);
	unlink(s->pidfile);
	if (rc != 0)
		say("sshd (pid %d) did not stop", (int)pid);
	return rc;
}

int th_sshd_restart(struct th_sshd *s)
{
	if (s->config[0] == '\0' || access(s->config, R_OK) != 0) {
		say("th_sshd_restart: no sshd config %s", s->config);
		return -1;
	}
	if (th_sshd_stop(s) != 0)
		return -1;
	return sshd_launch(s, true);
}

int th_sshd_cut_sessions(struct th_sshd *s)
{
	struct procs p = {0};
	pid_t pid = th_sshd_pid(s);
	int rc;

	if (pid == 0) {
		say("th_sshd_cut_sessions: sshd %s is not running", s->config);
		return -1;
	}
	procs_add_tree(&p, pid, SIGTERM);
	rc = procs_stop(&p, STOP_TIMEOUT_MS);
	free(p.v);
	return rc;
}

/* The account sshd lets in: the current user, or as root ebtest, created if missing (with
 * sshd's privilege separation dir). */
static int login_user_setup(bool create)
{
	const char *useradd[] = {"useradd",       "-m", "-s", "/bin/sh", "-p", "*",
	                         LOGIN_USER_ROOT, NULL};
	const char *usermod[] = {"usermod", "-p", "*", LOGIN_USER_ROOT, NULL};
	struct passwd *pw;
	struct spwd *sp;

	if (geteuid() != 0) {
		pw = getpwuid(geteuid());
		if (pw == NULL) {
			say("the current uid %d has no account", (int)geteuid());
			return -1;
		}
		return fmt(th.user, sizeof(th.user), "%s", pw->pw_name);
	}
	snprintf(th.user, sizeof(th.user), "%s", LOGIN_USER_ROOT);
	if (!create)
		return 0;
	/* Another test binary may create it at the same time: only the outcome counts. */
	if (getpwnam(LOGIN_USER_ROOT) == NULL && run_ok(NULL, NULL, useradd, NULL) != 0 &&
	    getpwnam(LOGIN_USER_ROOT) == NULL)
		return -1;
	/* Without PAM, sshd refuses an account whose password field starts with '!' (locked),
	 * useradd's default; '*' is "no password" and lets keys in. */
	sp = getspnam(LOGIN_USER_ROOT);
	if (sp != NULL && sp->sp_pwdp[0] == '!' && run_ok(NULL, NULL, usermod, NULL) != 0)
		return -1;
	return make_dir("/run/sshd", 0755);
}

/* --- setup and teardown --- */

/* The guardian tears down when the owner asks (SIGUSR1) or dies (PR_SET_PDEATHSIG), so that
 * an owner killed with SIGKILL, or by Check's SIGKILL of its own process group, leaves
 * nothing behind. It lives in its own session, out of reach of both. */
static int guardian_start(void)
{
	sigset_t set, old;
	char path[300], line[32];
	pid_t pid;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &old);
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		say("could not start the guardian: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		setsid();
		close_from(3);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == owner_pid)
			while (sigwaitinfo(&set, NULL) < 0 && errno == EINTR)
				;
		teardown_dir(th.basedir, keep_requested());
		_exit(0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	guardian_pid = pid;
	snprintf(line, sizeof(line), "%d\n", (int)pid);
	snprintf(path, sizeof(path), "%s/guardian", th.basedir);
	return write_file(path, line, 0644);
}

/* Has the guardian tear down and waits for it; does it here if the guardian is gone. Only
 * kill() and waitpid() while the guardian works: this also runs in a signal handler. */
static void teardown_now(void)
{
	int st = 0;
	bool done = false;

	if (guardian_pid > 0 && kill(guardian_pid, SIGUSR1) == 0) {
		while (waitpid(guardian_pid, &st, 0) < 0)
			if (errno != EINTR)
				break;
		done = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	guardian_pid = 0;
	if (!done)
		teardown_dir(th.basedir, keep_requested());
}

static void on_signal(int sig)
{
	if (owner_pid != 0 && getpid() == owner_pid && !torn_down) {
		torn_down = 1;
		teardown_now();
	}
	signal(sig, SIG_DFL);
	raise(sig); /* delivered when this handler returns */
}

static void on_exit_teardown(void)
{
	th_teardown();
}

static void install_handlers(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {.sa_handler = on_signal}, old;

	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		/* A run started with the signal ignored (nohup, a background job) keeps it so. */
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			continue;
		sigaction(sigs[i], &sa, NULL);
	}
	atexit(on_exit_teardown);
}

void th_teardown(void)
{
	if (owner_pid == 0 || getpid() != owner_pid || torn_down)
		return;
	torn_down = 1;
	teardown_now();
	/* We are the subreaper: collect the servers that were adopted and stopped. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	th.pg.running = 0;
	th.sshd.running = 0;
}

int th_setup(unsigned what)
{
	char tmpl[] = BASEDIR_TEMPLATE, path[300], line[32];

	if (owner_pid != 0) {
		say("th_setup called twice");
		return -1;
	}
	owner_pid = getpid();
	/* Daemonized sshds and servers started by test children become our children rather
	 * than init's (which in some containers never reaps), so we can reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sweep_leftovers();
	if (mkdtemp(tmpl) == NULL) {
		say("could not create %s: %s", tmpl, strerror(errno));
		return -1;
	}
	snprintf(th.basedir, sizeof(th.basedir), "%s", tmpl);
	snprintf(line, sizeof(line), "%d\n", (int)owner_pid);
	/* 0755: the postgres and ebtest accounts must traverse it. */
	if (chmod(th.basedir, 0755) != 0 || fmt(path, sizeof(path), "%s/owner", th.basedir) != 0 ||
	    write_file(path, line, 0644) != 0 ||
	    fmt(path, sizeof(path), "%s/servers", th.basedir) != 0 ||
	    write_file(path, "", 0644) != 0 || guardian_start() != 0) {
		say("could not set up %s", th.basedir);
		nftw(th.basedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		return -1;
	}
	install_handlers();
	if (fmt(th.client_key, sizeof(th.client_key), "%s/keys/id_ed25519", th.basedir) != 0 ||
	    fmt(th.client_key_pub, sizeof(th.client_key_pub), "%s.pub", th.client_key) != 0 ||
	    login_user_setup(what & TH_SSHD) != 0)
		return -1;
	if (what & TH_SSHD) {
		if (fmt(path, sizeof(path), "%s/keys", th.basedir) != 0 || make_dir(path, 0755) ||
		    keygen(th.client_key) != 0)
			return -1;
	}
	if ((what & TH_PG) && pg_init() != 0)
		return -1;
	if ((what & TH_SSHD) && th_sshd_start(&th.sshd, NULL) != 0)
		return -1;
	return 0;
}
