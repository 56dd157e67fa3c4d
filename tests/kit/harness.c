/* tests/kit/harness.c: the run's base dir, the registry of the servers any of its processes
 * started, and teardown: by the owner at exit or on a signal, by a guardian when the owner
 * dies otherwise, and at the next start for what killed runs left. */
#include "tests/kit/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <shadow.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/kit/file.h"
#include "tests/kit/proc.h"

#define STOP_TIMEOUT_MS  20000
#define LOGIN_USER_ROOT  "ebtest"
#define BASEDIR_TEMPLATE "/tmp/eb-test-XXXXXX"
#define BASEDIR_GLOB     "/tmp/eb-test-*"
#define ORPHAN_DIR_AGE_S 600

struct th_env th;

static pid_t owner_pid;    /* the th_setup() process; 0 before */
static pid_t guardian_pid; /* its guardian, a child of the owner; 0 when gone */
static volatile sig_atomic_t torn_down;

void th_say(const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "harness: %s\n", line);
}

int th_fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, len, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len) {
		th_say("name too long: %s...", buf);
		return -1;
	}
	return 0;
}

static bool keep_requested(void)
{
	const char *k = getenv("EB_TEST_KEEP");

	return k != NULL && strcmp(k, "1") == 0;
}

/* Whether pid started after the epoch time t (then it is not the process that wrote a file
 * at t, but a later one that got the same pid). */
static bool pid_started_after(pid_t pid, time_t t)
{
	char buf[8192], *p;
	unsigned long long start, btime;
	char state;
	long tck = sysconf(_SC_CLK_TCK);

	if (kit_proc_stat(pid, &state, NULL, &start) != 0 || tck <= 0)
		return false;
	if (kit_file_read_into("/proc/stat", buf, sizeof(buf)) <= 0 ||
	    (p = strstr(buf, "\nbtime ")) == NULL)
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

/* The postmaster chdirs to its data dir. */
bool th_pid_in_dir(pid_t pid, const char *dir)
{
	char path[64], buf[4096];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	n = kit_file_read_into(path, buf, sizeof(buf));
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

/* sshd gets SIGTERM, a postmaster SIGINT, orphaned backends SIGQUIT (on which they exit). */
void th_add_strays(struct kit_procs *p, const char *dir)
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
		n = kit_file_read_into(path, cmd, sizeof(cmd));
		if (!kit_pid_reap_alive(pid))
			continue;
		if (n > 0 && contains_path_in(cmd, (size_t)n, dir))
			kit_procs_add(p, pid, strcmp(base, "sshd") == 0 ? SIGTERM : SIGINT);
		else if (strcmp(base, "postgres") == 0 && th_pid_in_dir(pid, dir))
			kit_procs_add(p, pid, SIGQUIT);
	}
	closedir(d);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		th_say("could not remove %s: %s", path, strerror(errno));
	return 0;
}

/* Stops every server registered in dir/servers (and strays naming dir), then removes dir,
 * or with keep leaves it and says so. Used by the owner, the guardian and the sweep. */
static void teardown_dir(const char *dir, bool keep)
{
	struct kit_procs p = {0};
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
		cand[0] = kit_file_pid(pidfile);
		cand[1] = rec;
		for (int i = 0; i < 2; i++) {
			if (!kit_pid_reap_alive(cand[i]) || !th_pid_in_dir(cand[i], dir))
				continue;
			kit_procs_add(&p, cand[i], strcmp(kind, "pg") == 0 ? SIGINT : SIGTERM);
			kit_procs_add_tree(&p, cand[i], strcmp(kind, "pg") == 0 ? 0 : SIGTERM);
		}
	}
	free(line);
	if (f != NULL)
		fclose(f);
	th_add_strays(&p, dir);
	if (kit_procs_stop(&p, STOP_TIMEOUT_MS) != 0)
		th_say("some servers of %s survived SIGKILL", dir);
	kit_procs_free(&p);
	if (keep) {
		snprintf(path, sizeof(path), "%s/kept", dir);
		kit_file_write(path, "EB_TEST_KEEP=1\n", 0644);
		th_say("servers stopped; kept %s (EB_TEST_KEEP=1), remove it when done", dir);
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
		if (th_fmt(path, sizeof(path), "%s/kept", dir) != 0 || access(path, F_OK) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/owner", dir);
		if (stat(path, &ob) != 0) {
			/* th_setup writes owner right after mkdtemp and starts no server before:
			 * a dir without one is empty, or still being set up if it is young. */
			if (time(NULL) - sb.st_mtime > ORPHAN_DIR_AGE_S)
				nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
			continue;
		}
		owner = kit_file_pid(path);
		owner_live = kit_pid_reap_alive(owner) && !pid_started_after(owner, ob.st_mtime);
		snprintf(path, sizeof(path), "%s/guardian", dir);
		guardian = kit_file_pid(path);
		guardian_live = stat(path, &ob) == 0 && kit_pid_reap_alive(guardian) &&
		                !pid_started_after(guardian, ob.st_mtime);
		if (owner_live || guardian_live)
			continue;
		th_say("removing what an interrupted run left in %s", dir);
		teardown_dir(dir, false);
	}
	globfree(&g);
}

void th_register_server(const char *kind, pid_t pid, const char *pidfile)
{
	char path[512], line[600];
	int fd, n;

	snprintf(path, sizeof(path), "%s/servers", th.basedir);
	n = snprintf(line, sizeof(line), "%s %d %s\n", kind, (int)pid, pidfile);
	fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	/* One write() per line: forked test children append to the same file. */
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		th_say("could not register %s in %s: %s", pidfile, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

int th_run_ok(const struct kit_creds *c, const char *cwd, const char *const argv[], char **out)
{
	char *o = NULL, *e = NULL, why[64];
	int st, rc = -1;

	if (out != NULL)
		*out = NULL;
	if (kit_run_as(c, cwd, argv, NULL, NULL, &o, &e, &st) != 0)
		goto out;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		th_say("%s failed (%s):\n%s%s", argv[0], kit_status_str(st, why, sizeof(why)), o,
		       e);
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

int th_make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST) {
		th_say("could not create %s: %s", path, strerror(errno));
		return -1;
	}
	if (chmod(path, mode) != 0) {
		th_say("could not chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
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
			th_say("the current uid %d has no account", (int)geteuid());
			return -1;
		}
		return th_fmt(th.user, sizeof(th.user), "%s", pw->pw_name);
	}
	snprintf(th.user, sizeof(th.user), "%s", LOGIN_USER_ROOT);
	if (!create)
		return 0;
	/* Another test binary may create it at the same time: only the outcome counts. */
	if (getpwnam(LOGIN_USER_ROOT) == NULL && th_run_ok(NULL, NULL, useradd, NULL) != 0 &&
	    getpwnam(LOGIN_USER_ROOT) == NULL)
		return -1;
	/* Without PAM, sshd refuses an account whose password field starts with '!' (locked),
	 * useradd's default; '*' is "no password" and lets keys in. */
	sp = getspnam(LOGIN_USER_ROOT);
	if (sp != NULL && sp->sp_pwdp[0] == '!' && th_run_ok(NULL, NULL, usermod, NULL) != 0)
		return -1;
	return th_make_dir("/run/sshd", 0755);
}

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
		th_say("could not start the guardian: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		setsid();
		if (close_range(3, ~0U, 0) != 0)
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
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
	return kit_file_write(path, line, 0644);
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
		th_say("th_setup called twice");
		return -1;
	}
	owner_pid = getpid();
	/* Daemonized sshds and servers started by test children become our children rather
	 * than init's (which in some containers never reaps), so we can reap them. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	sweep_leftovers();
	if (mkdtemp(tmpl) == NULL) {
		th_say("could not create %s: %s", tmpl, strerror(errno));
		return -1;
	}
	snprintf(th.basedir, sizeof(th.basedir), "%s", tmpl);
	snprintf(line, sizeof(line), "%d\n", (int)owner_pid);
	/* 0755: the postgres and ebtest accounts must traverse it. */
	if (chmod(th.basedir, 0755) != 0 ||
	    th_fmt(path, sizeof(path), "%s/owner", th.basedir) != 0 ||
	    kit_file_write(path, line, 0644) != 0 ||
	    th_fmt(path, sizeof(path), "%s/servers", th.basedir) != 0 ||
	    kit_file_write(path, "", 0644) != 0 || guardian_start() != 0) {
		th_say("could not set up %s", th.basedir);
		nftw(th.basedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		return -1;
	}
	install_handlers();
	if (th_fmt(th.client_key, sizeof(th.client_key), "%s/keys/id_ed25519", th.basedir) != 0 ||
	    th_fmt(th.client_key_pub, sizeof(th.client_key_pub), "%s.pub", th.client_key) != 0 ||
	    login_user_setup(what & TH_SSHD) != 0)
		return -1;
	if (what & TH_SSHD) {
		if (th_fmt(path, sizeof(path), "%s/keys", th.basedir) != 0 ||
		    th_make_dir(path, 0755) || th_sshd_keygen(th.client_key) != 0)
			return -1;
	}
	th.pg.durable = (what & TH_PG_DURABLE) != 0;
	if ((what & TH_PG) && th_pg_init() != 0)
		return -1;
	if ((what & TH_SSHD) && th_sshd_start(&th.sshd, NULL) != 0)
		return -1;
	return 0;
}
