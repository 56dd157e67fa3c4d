/* pool/command.h: the one command string an exec sends over SSH. Each argv element is POSIX
 * single-quoted, so the remote login shell (POSIX sh) passes the program exactly the argv:
 * no word splitting, globbing or expansion. The string first reports the command's process
 * group on stdout (sshd makes a non-pty command a session leader, so the group is the
 * shell's pid), which is how a cancel kills the command and all its descendants; and it
 * runs the program under coreutils `timeout -k`, so that nothing outlives its deadline even
 * if the broker dies. */
#ifndef EB_POOL_COMMAND_H
#define EB_POOL_COMMAND_H

#include <stddef.h>

#include "common/bytes.h"

struct command_spec {
	const struct eb_bytes *argv; /* argc >= 1, argv[0] not empty */
	size_t argc;
	const struct eb_bytes *env_names; /* nenv names and values */
	const struct eb_bytes *env_values;
	size_t nenv;
	const char *cwd;  /* absolute path, or NULL */
	long timeout_ms;  /* > 0: the remote `timeout` duration, to the millisecond */
	int kill_after_s; /* > 0: KILL this long after the remote timeout's TERM */
};

/* The quoted command travels in one SSH packet, and libssh2 1.10 refuses payloads of
 * 34744 bytes or more (MAX_SSH_PACKET_LEN 35000 less 256, src/transport.c): the whole
 * string, NUL included, must fit in 32 KiB. (sshd's own limit, Linux's 128 KiB for one exec
 * argument, is further away.) */
#define COMMAND_MAX_LEN (32 * 1024)

/* The first line the command prints on stdout: COMMAND_PGID_TAG, the group id, '\n'. */
#define COMMAND_PGID_TAG "exec-broker-pgid "

/* 1 if name is a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
int command_env_name_valid(const char *p, size_t len);

/* POSIX single-quoting of s, appended to *buf (malloc'd, grown as needed). */
int command_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t slen);

/* Builds the command string into *out (malloc'd, NUL-terminated). EB_ERR_INVAL with a
 * reason in err if an argv element, env name or value, or cwd contains NUL, argv is empty
 * or argv[0] is empty, an env name is invalid, or cwd is not absolute; EB_ERR_RANGE if the
 * quoted command would not fit in COMMAND_MAX_LEN. */
int command_build(const struct command_spec *spec, char **out, char *err, size_t errlen);

/* The command a control channel runs to kill process group pgid: TERM now, KILL after
 * grace_s seconds if anything of it is left. */
int command_kill_group(long pgid, int grace_s, char **out);

#endif
