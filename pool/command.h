/* pool/command.h: the strings an exec sends over SSH. Each argv element is POSIX
 * single-quoted, so the remote login shell (POSIX sh) passes the program exactly the argv:
 * no word splitting, globbing or expansion. Before the program runs, the command registers
 * itself with its session's watcher (command_watcher: one small shell per SSH session, not
 * per exec), which ends it at its deadline whatever becomes of the broker, and then reports
 * its process group on stdout (sshd makes a non-pty command a session leader, so the group
 * is the shell's pid): a cancel asks the watcher to signal that group. The program then
 * replaces the shell (exec): no process of the broker's stays between sshd and it. */
#ifndef EB_POOL_COMMAND_H
#define EB_POOL_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "common/bytes.h"

struct command_spec {
	const struct eb_bytes *argv; /* argc >= 1, argv[0] not empty */
	size_t argc;
	const struct eb_bytes *env_names; /* nenv names and values */
	const struct eb_bytes *env_values;
	size_t nenv;
	const char *cwd; /* absolute path, or NULL */
	/* One of the broker's own scripts (a detached exec's launcher, reader, signaller), whose
	 * output the broker parses: what the login shell prints before the command's first line
	 * is dropped. For a client's command it is the host's output, and passed on. */
	bool broker_script;
};

/* The longest command an exec request carries itself: the string travels in one SSH packet,
 * and libssh2 1.10 refuses payloads of 34744 bytes or more (MAX_SSH_PACKET_LEN 35000 less
 * 256, src/transport.c). A longer one goes ahead of stdin (command_frame). */
#define COMMAND_INLINE_MAX (32 * 1024)
/* The exec request of a frame carried ahead of stdin: nl holds a newline for the line's
 * '"$nl"' (a line cannot hold one itself). */
#define COMMAND_BOOTSTRAP "nl='\n'; IFS= read -r c && eval \"$c\""
/* The longest body at all: past what any request can make (a 1 MiB body quotes to at most
 * 4 MiB), and below Linux's limits on what a program may be given. */
#define COMMAND_MAX_LEN (16 * 1024 * 1024)

/* The first line the command prints on stdout: COMMAND_PGID_TAG, the group id, '\n'. */
#define COMMAND_PGID_TAG "exec-broker-pgid "
/* How much of what a login shell's startup files print before it is kept (the host's
 * output); the rest is dropped. */
#define COMMAND_NOISE_MAX 8192

/* The scan of a channel's stdout for the first line with a tag in it: a command's pgid line,
 * or the watcher's. A login shell whose startup files print (bash reads ~/.bashrc when sshd
 * runs it) puts lines, or the start of a line, before it: that is the host's output, kept
 * in noise (malloc'd, freed by the owner of the scan). */
struct command_pgid_scan {
	char line[256]; /* the current line, or the end of a long one; once done, the line
	                   from the tag on, NUL-terminated, without its newline */
	size_t len;
	char *noise;
	size_t noise_len;
	long pgid; /* command_pgid_scan's */
	bool done; /* the line was found */
};

/* Feeds sc n bytes of stdout, looking for a line with tag in it (that fits sc->line from
 * the tag on); returns how many it took: up to the end of that line. */
size_t command_scan_line(struct command_pgid_scan *sc, const char *tag, const char *buf, size_t n);
/* command_scan_line for the pgid line, whose group it puts in sc->pgid. */
size_t command_pgid_scan(struct command_pgid_scan *sc, const char *buf, size_t n);

/* The one line the watcher prints on stdout once it listens: the tag, then the path of
 * the FIFO commands register on, '\n'. */
#define COMMAND_WATCH_TAG "exec-broker-watch "

/* 1 if name is a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
int command_env_name_valid(const char *p, size_t len);

/* POSIX single-quoting of s, appended to *buf (malloc'd, grown as needed). */
int command_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t slen);

/* Builds the command's body into *out (malloc'd, NUL-terminated; its length in *len): the
 * pgid line, cd, exports, exec of the program. EB_ERR_INVAL with a reason in err if an argv
 * element, env name or value, or cwd contains NUL, argv is empty or argv[0] is empty, an
 * env name is invalid, or cwd is not absolute; EB_ERR_RANGE past COMMAND_MAX_LEN. */
int command_build(const struct command_spec *spec, char **out, size_t *len, char *err,
                  size_t errlen);

/* command_build without the pgid line: cd, exports, exec of the program, for a shell that
 * sources it (a detached exec's supervisor, pool/detached.h). */
int command_build_body(const struct command_spec *spec, char **out, size_t *len, char *err,
                       size_t errlen);

/* What is sent for a body on a session whose watcher listens on fifo: the exec request's
 * command in *exec, and in *prefix what goes to the command's stdin ahead of the caller's
 * (NULL when nothing). The command first registers its process group with the watcher,
 * with deadline_ms left; if that fails (no watcher) it ends before printing its pgid line,
 * and nothing of the program runs. A frame that does not fit COMMAND_INLINE_MAX is read by
 * a bootstrap from the first line of stdin instead (the shell reads it byte by byte, so
 * the rest of stdin is the program's). 0 or EB_ERR_NOMEM. */
int command_frame(const char *body, size_t body_len, const char *fifo, long deadline_ms,
                  char **exec, size_t *exec_len, char **prefix, size_t *prefix_len);

/* The watcher of one SSH session: a POSIX sh script that makes a private FIFO, prints
 * COMMAND_WATCH_TAG and its path, and then reads lines from the FIFO (its own stdin is
 * forwarded into it, and a clock ticks into it every second):
 *   r PGID MS     a command registered: its group ends MS ms from now
 *   term PGID S   the broker cancels it: TERM now, KILL after S seconds if any is left
 *   d PGID        the command's channel closed: forget it (unless being killed)
 *   a             the broker is alive (sent every COMMAND_WATCH_BEAT_S)
 *   eof           its stdin ended: the broker is gone, so every command is ended
 * It TERMs a group at its deadline and KILLs what is left grace_s seconds later (to the
 * tick: each check runs once a second); it exits once it holds nothing and either the
 * broker is gone or idle_exit_s passed without a beat, removing its FIFO. */
#define COMMAND_WATCH_BEAT_S 10
int command_watcher(int grace_s, int idle_exit_s, char **out);

/* The command a control channel runs to kill process group pgid: TERM now, KILL after
 * grace_s seconds if anything of it is left. Used only when a session lost its watcher. */
int command_kill_group(long pgid, int grace_s, char **out);

#endif
