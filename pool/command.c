/* pool/command.c: building the remote command string. */
#include "pool/command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *len + n + 1)
			c *= 2;
		char *b = realloc(*buf, c);
		if (b == NULL)
			return EB_ERR_NOMEM;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

int command_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t slen)
{
	size_t start = 0;
	int rc = append(buf, len, cap, "'", 1);

	/* Inside single quotes nothing is special but the quote itself: close the quoted
	 * run, add an escaped quote, reopen. */
	for (size_t i = 0; rc == 0 && i < slen; i++) {
		if (s[i] != '\'')
			continue;
		rc = append(buf, len, cap, s + start, i - start);
		if (rc == 0)
			rc = append(buf, len, cap, "'\\''", 4);
		start = i + 1;
	}
	if (rc == 0)
		rc = append(buf, len, cap, s + start, slen - start);
	if (rc == 0)
		rc = append(buf, len, cap, "'", 1);
	return rc;
}

int command_env_name_valid(const char *p, size_t len)
{
	if (len == 0 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

int command_build(const struct command_spec *spec, char **out, char *err, size_t errlen)
{
	char *buf = NULL, num[64];
	size_t len = 0, cap = 0;
	int rc = EB_ERR_INVAL;

	*out = NULL;
	if (spec->argc == 0 || spec->argv[0].len == 0) {
		snprintf(err, errlen, "argv[0] must name a program");
		goto out;
	}
	for (size_t i = 0; i < spec->argc; i++)
		if (memchr(spec->argv[i].p, '\0', spec->argv[i].len) != NULL) {
			snprintf(err, errlen, "argv[%zu] contains a NUL byte", i);
			goto out;
		}
	for (size_t i = 0; i < spec->nenv; i++) {
		if (!command_env_name_valid(spec->env_names[i].p, spec->env_names[i].len)) {
			snprintf(err, errlen, "env name %zu is not [A-Za-z_][A-Za-z0-9_]*", i);
			goto out;
		}
		if (memchr(spec->env_values[i].p, '\0', spec->env_values[i].len) != NULL) {
			snprintf(err, errlen, "env value %zu contains a NUL byte", i);
			goto out;
		}
	}
	if (spec->cwd != NULL && spec->cwd[0] != '/') {
		snprintf(err, errlen, "cwd must be an absolute path");
		goto out;
	}

	/* printf, not echo: echo's handling of its arguments differs between shells. */
	rc = append(&buf, &len, &cap, "printf '" COMMAND_PGID_TAG "%d\\n' $$ && ",
	            strlen("printf '" COMMAND_PGID_TAG "%d\\n' $$ && "));
	if (rc == 0 && spec->cwd != NULL) {
		rc = append(&buf, &len, &cap, "cd -- ", 6);
		if (rc == 0)
			rc = command_quote(&buf, &len, &cap, spec->cwd, strlen(spec->cwd));
		if (rc == 0)
			rc = append(&buf, &len, &cap, " && ", 4);
	}
	for (size_t i = 0; rc == 0 && i < spec->nenv; i++) {
		rc = append(&buf, &len, &cap, "export ", 7);
		if (rc == 0)
			rc = append(&buf, &len, &cap, spec->env_names[i].p, spec->env_names[i].len);
		if (rc == 0)
			rc = append(&buf, &len, &cap, "=", 1);
		if (rc == 0)
			rc = command_quote(&buf, &len, &cap, spec->env_values[i].p,
			                   spec->env_values[i].len);
		if (rc == 0)
			rc = append(&buf, &len, &cap, " && ", 4);
	}
	if (rc == 0)
		rc = append(&buf, &len, &cap, "exec", 4);
	if (rc == 0 && spec->timeout_ms > 0) {
		/* timeout(1) stops parsing options at the duration, so an argv[0] starting
		 * with '-' is still the program. It takes fractions of a second. */
		snprintf(num, sizeof(num), " timeout -k %d %ld.%03ld",
		         spec->kill_after_s > 0 ? spec->kill_after_s : 5, spec->timeout_ms / 1000,
		         spec->timeout_ms % 1000);
		rc = append(&buf, &len, &cap, num, strlen(num));
	}
	for (size_t i = 0; rc == 0 && i < spec->argc; i++) {
		rc = append(&buf, &len, &cap, " ", 1);
		if (rc == 0)
			rc = command_quote(&buf, &len, &cap, spec->argv[i].p, spec->argv[i].len);
	}
	if (rc == 0 && len + 1 > COMMAND_MAX_LEN) {
		snprintf(
		    err, errlen,
		    "the command is %zu bytes once quoted; an SSH exec request carries at most %d",
		    len, COMMAND_MAX_LEN - 1);
		rc = EB_ERR_RANGE;
	}
	if (rc == 0 && spec->timeout_ms <= 0 && spec->argv[0].p[0] == '-') {
		/* Without timeout(1) in front, exec would take it as an option. */
		snprintf(err, errlen, "argv[0] must not start with '-'");
		rc = EB_ERR_INVAL;
	}
out:
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int command_kill_group(long pgid, int grace_s, char **out)
{
	char *s = NULL;

	/* "kill -SIG -PGID" signals the group. Not "--": dash's kill does not take it. The
	 * group is gone once kill -0 fails; whatever is left after the grace period gets KILL. */
	if (asprintf(&s,
	             "kill -TERM -%ld 2>/dev/null; i=0; while [ $i -lt %d ] && "
	             "kill -0 -%ld 2>/dev/null; do sleep 0.1; i=$((i+1)); done; "
	             "kill -KILL -%ld 2>/dev/null; exit 0",
	             pgid, grace_s * 10, pgid, pgid) < 0)
		return EB_ERR_NOMEM;
	*out = s;
	return 0;
}
