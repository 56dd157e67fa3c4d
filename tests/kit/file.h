/* tests/kit/file.h: files as the kit and the suites use them: read or written whole, a log
 * searched from an offset or its tail shown in a failure, pid files, and scratch paths under
 * /tmp. */
#ifndef EB_TESTS_KIT_FILE_H
#define EB_TESTS_KIT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The whole file, NUL-terminated, malloc'd; NULL if it cannot be read. len (may be NULL)
 * receives its length. */
char *kit_file_read(const char *path, size_t *len);
/* Up to len-1 bytes of path into buf, NUL-terminated, without allocating: for the small
 * files read by the hundred (/proc/PID/..., pid files). The length, or -1. */
ssize_t kit_file_read_into(const char *path, char *buf, size_t len);
/* Creates or truncates path with data and mode: 0, or -1 with a message on stderr. */
int kit_file_write(const char *path, const char *data, mode_t mode);
bool kit_file_exists(const char *path);
/* Whether path, from byte from on, contains needle. */
bool kit_file_contains(const char *path, off_t from, const char *needle);
/* The last max bytes of path on stderr, between markers naming it. */
void kit_file_print_tail(const char *path, size_t max);
/* The pid on the first line of path, or 0 (no file, no number, or 0 or 1). */
pid_t kit_file_pid(const char *path);
/* A path under /tmp that the workspace account can create and this process can read,
 * removed now if a run left it: /tmp/eb-serve-<pid>-<name>. malloc'd. */
char *kit_tmp_path(const char *name);

#endif
