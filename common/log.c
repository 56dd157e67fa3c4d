/* common/log.c: logfmt lines. */
#include "common/log.h"

#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static FILE *stream;
static char instance[256];

int log_level_parse(const char *s)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void log_set_level(enum log_level l)
{
	min_level = l;
}

void log_set_instance(const char *name)
{
	snprintf(instance, sizeof(instance), "%s", name != NULL ? name : "");
}

void log_set_stream(FILE *f)
{
	stream = f;
}

int log_enabled(enum log_level l)
{
	return l >= min_level;
}

static size_t put(char *buf, size_t len, size_t cap, const char *s, size_t n)
{
	if (len + 1 >= cap)
		return len;
	if (n > cap - 1 - len)
		n = cap - 1 - len;
	memcpy(buf + len, s, n);
	buf[len + n] = '\0';
	return len + n;
}

static int safe_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("-_.:/@+,", c) != NULL;
}

size_t log_append_kv(char *buf, size_t len, size_t cap, const char *key, const char *value)
{
	const unsigned char *v = (const unsigned char *)(value ? value : "");
	int bare = *v != '\0';

	for (const unsigned char *p = v; *p && bare; p++)
		bare = safe_char(*p);
	if (len > 0)
		len = put(buf, len, cap, " ", 1);
	len = put(buf, len, cap, key, strlen(key));
	len = put(buf, len, cap, "=", 1);
	if (bare)
		return put(buf, len, cap, (const char *)v, strlen((const char *)v));
	len = put(buf, len, cap, "\"", 1);
	for (const unsigned char *p = v; *p; p++) {
		char esc[8];
		switch (*p) {
		case '"':
			len = put(buf, len, cap, "\\\"", 2);
			break;
		case '\\':
			len = put(buf, len, cap, "\\\\", 2);
			break;
		case '\n':
			len = put(buf, len, cap, "\\n", 2);
			break;
		case '\r':
			len = put(buf, len, cap, "\\r", 2);
			break;
		case '\t':
			len = put(buf, len, cap, "\\t", 2);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\x%02x", *p);
				len = put(buf, len, cap, esc, 4);
			} else {
				len = put(buf, len, cap, (const char *)p, 1);
			}
		}
	}
	return put(buf, len, cap, "\"", 1);
}

void log_kv(enum log_level l, const char *msg, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char line[4096], ts[96];
	struct timeval tv;
	struct tm tm;
	size_t len = 0;
	va_list ap;
	const char *k;

	if (!log_enabled(l))
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         (int)(tv.tv_usec / 1000));
	line[0] = '\0';
	len = log_append_kv(line, len, sizeof(line), "ts", ts);
	len = log_append_kv(line, len, sizeof(line), "level", names[l]);
	len = log_append_kv(line, len, sizeof(line), "msg", msg);
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (v != NULL)
			len = log_append_kv(line, len, sizeof(line), k, v);
	}
	va_end(ap);
	if (instance[0] != '\0')
		len = log_append_kv(line, len, sizeof(line), "instance", instance);
	fprintf(stream ? stream : stderr, "%s\n", line);
	fflush(stream ? stream : stderr);
}
