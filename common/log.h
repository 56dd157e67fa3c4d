/* common/log.h: logfmt logging, one line per event on stderr (journald keeps it):
 *   ts=2026-11-23T08:00:00.123Z level=info msg="exec finished" request_id=... status=200
 * Values are quoted when they need it and escaped, so a value can never start a new line
 * or forge another key. Never pass a token, command output, stdin or env values. */
#ifndef EB_COMMON_LOG_H
#define EB_COMMON_LOG_H

#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* "debug", "info", "warn", "error" -> level; -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(enum log_level l);
void log_set_stream(FILE *f); /* default stderr */
/* Ends every line with instance=<name> (the broker's instance_name; copied, at most 255
 * bytes), so that the lines of a fleet, gathered in one place, each lead to their broker;
 * NULL or "": none. */
void log_set_instance(const char *name);
int log_enabled(enum log_level l);

/* Logs msg with key/value pairs: a NULL-terminated list of alternating const char *key,
 * const char *value; a pair whose value is NULL is left out. */
void log_kv(enum log_level l, const char *msg, ...) __attribute__((sentinel));

/* Appends key=value to buf (NUL-terminated, cap bytes): the value bare when it is made of
 * safe characters, else in double quotes with \", \\, \n, \r, \t and \xNN escapes. Returns
 * the length written (excess is cut at cap). */
size_t log_append_kv(char *buf, size_t len, size_t cap, const char *key, const char *value);

#endif
