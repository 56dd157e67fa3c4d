/* client/detached.c: the pure core of the detached-exec subcommands: names, signals, query
 * strings, outcomes as exit statuses, argv as ps shows it, and the frames and offsets of
 * logs. Everything here is a function of its arguments, tested from tables of cases. */
#include "client/detached.h"

#include <ctype.h>
#include <event2/http.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

bool detached_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && strchr("._-", name[i]) == NULL)
			return false;
	return true;
}

const char *detached_signal_name(const char *sig)
{
	static const char *const allowed[] = {"HUP",  "INT",  "QUIT", "KILL", "USR1",
	                                      "USR2", "TERM", "CONT", "STOP"};
	char up[16];
	const char *name = up;
	size_t n = strlen(sig);

	if (n == 0 || n >= sizeof(up))
		return NULL;
	if (strspn(sig, "0123456789") == n) {
		name = n <= 3 ? client_signal_name(atoi(sig)) : NULL;
		if (name == NULL)
			return NULL;
	} else {
		for (size_t i = 0; i <= n; i++)
			up[i] = (char)toupper((unsigned char)sig[i]);
		if (strncmp(up, "SIG", 3) == 0)
			name = up + 3;
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(allowed[i], name) == 0)
			return allowed[i];
	return NULL;
}

/* Appends "&key=value" (or "?" first) to *q, value percent-encoded. 0 or EB_ERR_NOMEM. */
static int query_add(char **q, const char *key, const char *value)
{
	char *enc = evhttp_uriencode(value, -1, 0), *grown = NULL;

	if (enc == NULL)
		return EB_ERR_NOMEM;
	if (asprintf(&grown, "%s%c%s=%s", *q, (*q)[0] == '\0' ? '?' : '&', key, enc) < 0)
		grown = NULL;
	free(enc);
	if (grown == NULL)
		return EB_ERR_NOMEM;
	free(*q);
	*q = grown;
	return 0;
}

char *detached_query_list(const char *status, const char *name)
{
	char *q = strdup("");

	if (q != NULL && status != NULL && query_add(&q, "status", status) != 0)
		goto fail;
	if (q != NULL && name != NULL && query_add(&q, "name", name) != 0)
		goto fail;
	return q;
fail:
	free(q);
	return NULL;
}

void detached_query_output(char *buf, size_t len, const long long offset[2], bool follow)
{
	snprintf(buf, len, "?stdout_offset=%lld&stderr_offset=%lld&follow=%s", offset[0], offset[1],
	         follow ? "true" : "false");
}

void detached_query_wait(char *buf, size_t len, int wait_s)
{
	snprintf(buf, len, "?wait_s=%d", wait_s);
}

const char *detached_id_from_location(const char *loc)
{
	const char *p = loc != NULL ? strstr(loc, "/v1/execs/") : NULL;

	if (p == NULL)
		return NULL;
	p += strlen("/v1/execs/");
	return p[0] != '\0' && strchr(p, '/') == NULL && strchr(p, '?') == NULL ? p : NULL;
}

int detached_exit_of_exec(json_t *exec, const char **why)
{
	const char *status = json_string_value(json_object_get(exec, "status"));
	json_t *code = json_object_get(exec, "exit_code");
	const char *sig = json_string_value(json_object_get(exec, "signal"));

	*why = NULL;
	if (status == NULL) {
		*why = "the exec object has no status";
		return CLIENT_EXIT_API;
	}
	if (strcmp(status, "running") == 0)
		return DETACHED_RUNNING;
	if (strcmp(status, "exited") == 0 && json_is_integer(code))
		return (int)(json_integer_value(code) & 0xff);
	if (strcmp(status, "signaled") == 0 && sig != NULL && client_signal_number(sig) != 0)
		return 128 + client_signal_number(sig);
	if (strcmp(status, "signaled") == 0) {
		*why = "ended by a signal unknown here";
		return CLIENT_EXIT_API;
	}
	if (strcmp(status, "exited") == 0) {
		*why = "exited without an exit code";
		return CLIENT_EXIT_API;
	}
	*why = "ended";
	if (strcmp(status, "timeout") == 0)
		return CLIENT_EXIT_TIMEOUT;
	if (strcmp(status, "transport_error") == 0 || strcmp(status, "lost") == 0 ||
	    strcmp(status, "abandoned") == 0)
		return CLIENT_EXIT_HOST;
	return CLIENT_EXIT_API;
}

const char *detached_exit_column(json_t *exec, char *buf, size_t len)
{
	json_t *code = json_object_get(exec, "exit_code");
	const char *sig = json_string_value(json_object_get(exec, "signal"));

	if (json_is_integer(code))
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(code));
	else if (sig != NULL)
		snprintf(buf, len, "SIG%s", sig);
	else
		snprintf(buf, len, "-");
	return buf;
}

/* Characters a POSIX shell takes literally in a word. */
static bool shell_safe(const char *s)
{
	if (s[0] == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("@%_+=:,./-", *s) == NULL)
			return false;
	return true;
}

static bool has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Appends one word of argv to f, quoted as a shell would need it. */
static void quote_word(FILE *f, const char *s)
{
	if (shell_safe(s)) {
		fputs(s, f);
	} else if (!has_control(s)) {
		/* Inside single quotes nothing is special but the quote itself. */
		fputc('\'', f);
		for (; *s != '\0'; s++) {
			if (*s == '\'')
				fputs("'\\''", f);
			else
				fputc(*s, f);
		}
		fputc('\'', f);
	} else {
		/* A newline or a tab would break ps's table: $'...' shows them escaped. */
		fputs("$'", f);
		for (; *s != '\0'; s++) {
			unsigned char c = (unsigned char)*s;
			if (c == '\n')
				fputs("\\n", f);
			else if (c == '\t')
				fputs("\\t", f);
			else if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\x%02x", c);
			else if (c == '\'' || c == '\\')
				fprintf(f, "\\%c", c);
			else
				fputc(c, f);
		}
		fputc('\'', f);
	}
}

/* Cuts s to at most max UTF-8 characters, the last three of them "...". */
static void cut_chars(char *s, size_t max)
{
	size_t chars = 0, keep = 0;

	for (size_t i = 0; s[i] != '\0'; i++) {
		if (((unsigned char)s[i] & 0xC0) == 0x80)
			continue;
		if (chars == (max > 3 ? max - 3 : 0))
			keep = i;
		chars++;
	}
	if (chars <= max)
		return;
	memcpy(s + keep, "...", 4);
}

char *detached_argv_display(json_t *argv, size_t max)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	size_t i;
	json_t *w;

	if (f == NULL)
		return NULL;
	json_array_foreach(argv, i, w)
	{
		if (i > 0)
			fputc(' ', f);
		quote_word(f, json_is_string(w) ? json_string_value(w) : "?");
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	cut_chars(buf, max);
	return buf;
}

/* The offset of frame f ("offset"), or def when it has none. EB_ERR_INVAL if negative or
 * not an integer. */
static int frame_offset(json_t *f, long long def, long long *off)
{
	json_t *o = json_object_get(f, "offset");

	*off = def;
	if (o == NULL)
		return 0;
	if (!json_is_integer(o) || json_integer_value(o) < 0)
		return EB_ERR_INVAL;
	*off = (long long)json_integer_value(o);
	return 0;
}

/* Moves stream i's next offset to end if that is further on. */
static void advance(struct detached_follow *d, int i, long long end)
{
	if (end > d->next[i]) {
		d->next[i] = end;
		d->progressed = true;
	}
}

/* {"stream","skipped":N,"offset":O}: bytes [O, O+N) are gone from the host. */
static int skipped_frame(struct detached_follow *d, int i, json_t *f, struct detached_step *st)
{
	json_t *n = json_object_get(f, "skipped");
	long long off;

	if (!json_is_integer(n) || json_integer_value(n) < 0 ||
	    frame_offset(f, d->next[i], &off) != 0 || json_integer_value(n) > LLONG_MAX - off)
		return EB_ERR_INVAL; /* an end past LLONG_MAX is no offset: a peer's lie */
	st->kind = DFRAME_SKIPPED;
	st->fd = i + 1;
	if (off + json_integer_value(n) > d->next[i])
		st->lost = off + json_integer_value(n) - d->next[i];
	advance(d, i, off + json_integer_value(n));
	return 0;
}

/* {"stream","data","encoding"?,"offset"}: write only what lies past next, once. */
static int output_frame(struct detached_follow *d, int i, json_t *f, struct detached_step *st)
{
	long long off, end;
	int rc = frame_offset(f, d->next[i], &off);

	if (rc == 0)
		rc = client_output_decode(f, i == 0 ? "stdout" : "stderr", &st->out);
	if (rc != 0)
		return rc;
	if (st->out.truncated)
		return 0; /* a cap of an attached exec's: no bytes, no offset */
	if (st->out.len > (unsigned long long)(LLONG_MAX - off)) {
		client_output_free(&st->out);
		return EB_ERR_INVAL;
	}
	st->kind = DFRAME_OUTPUT;
	st->fd = i + 1;
	end = off + (long long)st->out.len;
	if (off > d->next[i])
		st->lost = off - d->next[i]; /* a gap no skipped frame announced */
	if (d->next[i] > off)
		st->skip = d->next[i] >= end ? st->out.len : (size_t)(d->next[i] - off);
	advance(d, i, end);
	return 0;
}

/* A frame without a stream that ends the reply: the exec's end, or (follow=false) the
 * note that it still runs. */
static bool is_last(const struct detached_follow *d, json_t *f)
{
	const char *status = json_string_value(json_object_get(f, "status"));

	if (json_object_get(f, "exit_code") == NULL && json_object_get(f, "error") == NULL &&
	    status == NULL)
		return false;
	/* Following, a broker that ends the reply while the exec runs is a reply to resume,
	 * not the end. */
	return !(d->follow && status != NULL && strcmp(status, "running") == 0);
}

int detached_follow_frame(struct detached_follow *d, json_t *f, struct detached_step *st)
{
	const char *stream = json_string_value(json_object_get(f, "stream"));

	memset(st, 0, sizeof(*st));
	st->kind = DFRAME_OTHER;
	d->nframes++;
	if (stream != NULL) {
		int i = strcmp(stream, "stdout") == 0 ? 0 : strcmp(stream, "stderr") == 0 ? 1 : -1;
		if (i < 0)
			return 0; /* a stream this client does not know */
		if (json_object_get(f, "skipped") != NULL)
			return skipped_frame(d, i, f, st);
		return output_frame(d, i, f, st);
	}
	/* The first frame is known by its place: a last frame may carry exec_id too. */
	if (d->nframes == 1 && json_object_get(f, "exec_id") != NULL) {
		st->kind = DFRAME_FIRST;
		st->timeout_s = json_object_get(f, "timeout_s");
	} else if (is_last(d, f)) {
		st->kind = DFRAME_LAST;
	}
	return 0;
}

int detached_backoff_ms(int attempt)
{
	return attempt >= 5 ? 4000 : 250 << (attempt > 0 ? attempt - 1 : 0);
}
