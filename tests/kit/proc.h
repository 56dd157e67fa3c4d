/* tests/kit/proc.h: processes: starting one (own session, log, other account, dying with its
 * parent), running one to its end with a timeout and its output captured, waiting, /proc, and
 * stopping a pid held and its descendants found by /proc parent links (never by name). */
#ifndef EB_TESTS_KIT_PROC_H
#define EB_TESTS_KIT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Who a child runs as: this process's account, or (as root) a dropped one. */
struct kit_creds {
	bool drop;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
};

/* As root, the account user (-1 with a message if there is none); otherwise nothing to
 * drop. */
int kit_creds_for(const char *user, struct kit_creds *c);
/* Becomes that account (in a child about to exec): 0, or -1. Nothing if c is NULL or
 * has nothing to drop. */
int kit_creds_apply(const struct kit_creds *c);

/* How kit_spawn() starts a program. stdin is /dev/null; descriptors above 2 are closed. */
struct kit_spawn {
	const char *const *argv;  /* argv[0] a path, or a name looked up in PATH */
	const char *const *env;   /* "NAME=value" added to the environment; may be NULL */
	const char *unset_prefix; /* variables whose names start so are left out; may be NULL */
	const char *cwd;          /* may be NULL */
	const struct kit_creds *creds;   /* may be NULL */
	const char *log;                 /* stdout and stderr appended here; may be NULL */
	bool quiet_stdout, quiet_stderr; /* without a log: to /dev/null instead of ours */
	bool stdout_to_stderr;           /* without a log: stdout to our stderr */
	/* Out of reach of Check's killpg() of a test's process group and of ^C. */
	bool new_session;
	/* SIGKILL when the spawning process dies, so that no test leaves it running. */
	bool die_with_parent;
	/* RLIMIT_NOFILE (soft and hard) set in the child before exec; 0: ours. */
	unsigned long nofile;
};

/* Starts the program and returns its pid once it runs (exec succeeded), or -1 with a
 * message on stderr. The caller reaps it. */
pid_t kit_spawn(const struct kit_spawn *o);

/* Runs argv (execvp) with the current environment plus env ("NAME=value", NULL-terminated,
 * may be NULL; replaces same-named variables), stdin_data on stdin (/dev/null when NULL).
 * out and err (each may be NULL) receive all of stdout and stderr as malloc'd NUL-terminated
 * strings the caller frees; status (may be NULL) receives the wait status. After
 * kit_run_timeout_ms the child is killed with SIGKILL. Returns 0 if the program ran
 * (whatever its exit status), -1 with a message on stderr if it could not be started. */
int kit_run(const char *const argv[], const char *const env[], const char *stdin_data, char **out,
            char **err, int *status);
extern int kit_run_timeout_ms; /* 60000 */
/* kit_run() as another account (c, may be NULL) in another directory (cwd, may be NULL). */
int kit_run_as(const struct kit_creds *c, const char *cwd, const char *const argv[],
               const char *const env[], const char *stdin_data, char **out, char **err,
               int *status);

/* The directory of this program's binary (build/bench for a benchmark). */
const char *kit_self_dir(void);

/* Waits up to ms (forever if negative) for the child pid to end: 0 with its wait status in
 * *status (may be NULL), or -1 if it still runs or is not our child. */
int kit_wait(pid_t pid, int ms, int *status);
/* "exit status N", "killed by signal N", ... into buf. */
const char *kit_status_str(int status, char *buf, size_t len);

/* Whether pid runs (a zombie does not). */
bool kit_pid_alive(pid_t pid);
/* kit_pid_alive(), after reaping pid if it is a child of ours that ended: for servers,
 * which become our children when the harness adopts them (it is their subreaper), and
 * whose exit status nobody waits for. */
bool kit_pid_reap_alive(pid_t pid);
/* State letter, parent pid and start time (clock ticks after boot) from /proc/pid/stat;
 * each out-parameter may be NULL. 0, or -1 if pid is gone. */
int kit_proc_stat(pid_t pid, char *state, pid_t *ppid, unsigned long long *start);
/* CPU seconds (user + system) pid has used, or -1. */
double kit_proc_cpu_s(pid_t pid);
/* CPU seconds root and every process below it have used, those they reaped included
 * (utime, stime, cutime, cstime of each), or -1: a server's cost, its children's too. */
double kit_proc_tree_cpu_s(pid_t root);
/* A "Vm..." field of /proc/pid/status in KiB, or -1. */
long kit_proc_status_kib(pid_t pid, const char *field);

/* Processes to stop, each with the signal it gets first (0: none, it is expected to
 * follow its parent); kit_procs_stop() SIGKILLs what is left after its timeout. */
struct kit_procs {
	struct kit_proc {
		pid_t pid;
		int sig;
	} * v;
	size_t n, cap;
};

void kit_procs_add(struct kit_procs *p, pid_t pid, int sig);
/* Adds every descendant of root (not root itself), found by walking /proc parent links. */
void kit_procs_add_tree(struct kit_procs *p, pid_t root, int sig);
/* Sends each its first signal, waits up to timeout_ms for all of them to be gone, then
 * SIGKILLs the rest and waits again. 0 when all are gone. */
int kit_procs_stop(const struct kit_procs *p, int timeout_ms);
void kit_procs_free(struct kit_procs *p);

#endif
