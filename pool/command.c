/* pool/command.c: building the remote command string. */
#include "pool/command.h"

#include <stdbool.h>
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

/* Keeps what fits of n bytes that came before the pgid line: COMMAND_NOISE_MAX in all, the
 * rest dropped (the scan goes on: the group must still be found). */
static void pgid_keep_noise(struct command_pgid_scan *sc, const char *p, size_t n)
{
	char *v;

	if (n > COMMAND_NOISE_MAX - sc->noise_len)
		n = COMMAND_NOISE_MAX - sc->noise_len;
	if (n == 0 || (v = realloc(sc->noise, sc->noise_len + n)) == NULL)
		return;
	sc->noise = v;
	memcpy(sc->noise + sc->noise_len, p, n);
	sc->noise_len += n;
}

size_t command_scan_line(struct command_pgid_scan *sc, const char *tag_s, const char *buf, size_t n)
{
	const size_t tag = strlen(tag_s);
	size_t k = 0;

	while (k < n && !sc->done) {
		char c = buf[k++];
		const char *at;
		size_t keep;

		if (c != '\n') {
			sc->line[sc->len++] = c;
			if (sc->len + 1 < sizeof(sc->line))
				continue;
			/* A long line: keep from the tag on if it began (not at the very start:
			 * that line is full, so not the one sought), else all but what could be
			 * the start of one. */
			at = sc->len > tag ? memmem(sc->line + 1, sc->len - 1, tag_s, tag) : NULL;
			keep = at != NULL ? sc->len - (size_t)(at - sc->line) : tag - 1;
			pgid_keep_noise(sc, sc->line, sc->len - keep);
			memmove(sc->line, sc->line + sc->len - keep, keep);
			sc->len = keep;
			continue;
		}
		sc->line[sc->len] = '\0';
		at = memmem(sc->line, sc->len, tag_s, tag);
		if (at != NULL) {
			size_t before = (size_t)(at - sc->line);

			pgid_keep_noise(sc, sc->line, before);
			sc->len -= before;
			memmove(sc->line, at, sc->len + 1);
			sc->done = true;
			break;
		}
		sc->line[sc->len++] = '\n';
		pgid_keep_noise(sc, sc->line, sc->len);
		sc->len = 0;
	}
	return k;
}

size_t command_pgid_scan(struct command_pgid_scan *sc, const char *buf, size_t n)
{
	size_t k = command_scan_line(sc, COMMAND_PGID_TAG, buf, n);

	if (sc->done)
		sc->pgid = atol(sc->line + strlen(COMMAND_PGID_TAG));
	return k;
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

static int build(const struct command_spec *spec, bool with_pgid, char **out, size_t *outlen,
                 char *err, size_t errlen)
{
	static const char pgid[] = "printf '" COMMAND_PGID_TAG "%d\\n' $$ && ";
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = EB_ERR_INVAL;

	*out = NULL;
	*outlen = 0;
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
	rc = with_pgid ? append(&buf, &len, &cap, pgid, strlen(pgid)) : 0;
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
	/* dash's exec takes no "--": a program whose name starts with '-' is run through
	 * env(1), which execs it in turn (the same process, no fork). */
	if (rc == 0)
		rc = spec->argv[0].p[0] == '-' ? append(&buf, &len, &cap, "exec env --", 11)
		                               : append(&buf, &len, &cap, "exec", 4);
	for (size_t i = 0; rc == 0 && i < spec->argc; i++) {
		rc = append(&buf, &len, &cap, " ", 1);
		if (rc == 0)
			rc = command_quote(&buf, &len, &cap, spec->argv[i].p, spec->argv[i].len);
	}
	if (rc == 0 && len + 1 > COMMAND_MAX_LEN) {
		snprintf(err, errlen, "the command is %zu bytes once quoted; at most %d", len,
		         COMMAND_MAX_LEN - 1);
		rc = EB_ERR_RANGE;
	}
out:
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

int command_build(const struct command_spec *spec, char **out, size_t *outlen, char *err,
                  size_t errlen)
{
	return build(spec, true, out, outlen, err, errlen);
}

int command_build_body(const struct command_spec *spec, char **out, size_t *outlen, char *err,
                       size_t errlen)
{
	return build(spec, false, out, outlen, err, errlen);
}

int command_frame(const char *body, size_t body_len, const char *fifo, long deadline_ms,
                  char **exec, size_t *exec_len, char **prefix, size_t *prefix_len)
{
	char *buf = NULL, num[64];
	size_t len = 0, cap = 0;
	int rc;

	*exec = *prefix = NULL;
	*exec_len = *prefix_len = 0;
	/* Registration first, its errors silenced: without a watcher to register with, the
	 * chain stops before the pgid line, and the broker knows nothing ran. The FIFO is
	 * opened read-write, which never blocks, and the line is one write (atomic). */
	snprintf(num, sizeof(num), "echo \"r $$ %ld\" 2>/dev/null 1<>",
	         deadline_ms > 0 ? deadline_ms : 1);
	rc = append(&buf, &len, &cap, num, strlen(num));
	if (rc == 0)
		rc = command_quote(&buf, &len, &cap, fifo, strlen(fifo));
	if (rc == 0)
		rc = append(&buf, &len, &cap, " && ", 4);
	if (rc == 0)
		rc = append(&buf, &len, &cap, body, body_len);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	if (len + 1 <= COMMAND_INLINE_MAX) {
		*exec = buf;
		*exec_len = len;
		return 0;
	}
	/* Too long for the exec request: it goes as one line ahead of stdin. Every newline of
	 * the frame is inside single quotes (quoted argv, env, cwd), where it becomes
	 * '"$nl"' -- close the quotes, a newline from a variable, reopen. */
	char *line = NULL;
	size_t llen = 0, lcap = 0, start = 0;
	for (size_t i = 0; rc == 0 && i < len; i++) {
		if (buf[i] != '\n')
			continue;
		rc = append(&line, &llen, &lcap, buf + start, i - start);
		if (rc == 0)
			rc = append(&line, &llen, &lcap, "'\"$nl\"'", 7);
		start = i + 1;
	}
	if (rc == 0)
		rc = append(&line, &llen, &lcap, buf + start, len - start);
	if (rc == 0)
		rc = append(&line, &llen, &lcap, "\n", 1);
	free(buf);
	if (rc == 0)
		*exec = strdup(COMMAND_BOOTSTRAP);
	if (rc != 0 || *exec == NULL) {
		free(line);
		return EB_ERR_NOMEM;
	}
	*exec_len = strlen(*exec);
	*prefix = line;
	*prefix_len = llen;
	return 0;
}

/* The watcher (see command.h). Entries of L are "pgid:deadline:killat" in centiseconds of
 * /proc/uptime (a monotonic clock every shell can read without a fork); killat 0 means
 * not being killed. A deadline is rounded up, and one centisecond more covers the reading
 * of the clock, which lags up to one: the broker's timer must fire first (channel.c). The clock
 * subshell stops when the watcher is gone; the forwarder when its stdin ends. Nothing here forks
 * per command: registration is a builtin's write to the FIFO, and each line costs the watcher a
 * read of /proc/uptime. The clock ticks every second while anything is registered and for 10 s
 * after, else every h seconds (up to 10: an idle session costs the host a `sleep` every 10 s, not
 * every second); switching starts one clock subshell per busy spell, not per command. A watcher
 * killed outright (KILL: its EXIT trap never runs) leaves its directory; the next one on the host
 * removes every such directory of the same user whose pid file names no live process. */
static const char watcher_script[] =
    "umask 077; trap '' HUP PIPE INT QUIT\n"
    "g=%d q=%d\n"
    "now() { read -r u x </proc/uptime && n=$((${u%%.*} * 100 + 1${u#*.} - 100)); }\n"
    "now || { echo 'exec-broker: no /proc/uptime on this host' >&2; exit 1; }\n"
    "for o in \"${TMPDIR:-/tmp}\"/exec-broker-watch.*; do\n"
    " [ -O \"$o/pid\" ] && read -r x <\"$o/pid\" && ! kill -0 \"$x\" 2>/dev/null && rm -rf \"$o\"\n"
    "done\n"
    "d=$(mktemp -d \"${TMPDIR:-/tmp}/exec-broker-watch.XXXXXXXX\") || exit 1\n"
    "f=$d/fifo\n"
    "mkfifo \"$f\" || { rm -rf \"$d\"; exit 1; }\n"
    "echo $$ >\"$d/pid\"\n"
    "exec 3<>\"$f\" 4<&0 </dev/null\n"
    "w=$$\n"
    "(while IFS= read -r l; do printf '%%s\\n' \"$l\"; done; echo eof) <&4 >&3 2>/dev/null &\n"
    "a=$!\n"
    "clock() { (while sleep $1 && kill -0 $w; do echo t; done) >&3 2>/dev/null & b=$!; }\n"
    "h=$((q / 6)); [ $h -ge 1 ] || h=1; [ $h -le 10 ] || h=10\n"
    "clock $h; fast= z=$n\n"
    "exec 4<&-\n"
    "trap 'kill $a $b 2>/dev/null; rm -rf \"$d\"' EXIT\n"
    "trap 'exit 0' TERM\n"
    "s=$n L= e=\n"
    "printf '" COMMAND_WATCH_TAG "%%s\\n' \"$f\"\n"
    "while IFS=' ' read -r c p m <&3; do\n"
    " now\n"
    " case $c in\n"
    " a) s=$n ;;\n"
    " r) L=\"$L $p:$((n + (m + 9) / 10 + 1)):0\" ;;\n"
    " term|d|eof) M=\n"
    "  for x in $L; do\n"
    "   y=${x%%%%:*}\n"
    "   if [ \"$c\" = eof ] || [ \"$y\" = \"$p\" ]; then\n"
    "    if [ \"$c\" != d ] && [ \"${x##*:}\" = 0 ]; then\n"
    "     kill -TERM -$y 2>/dev/null\n"
    "     x=${x%%:*}:$((n + ${m:-$g} * 100 - 100))\n"
    "    elif [ \"$c\" = d ] && [ \"${x##*:}\" = 0 ]; then\n"
    "     continue\n"
    "    fi\n"
    "   fi\n"
    "   M=\"$M $x\"\n"
    "  done\n"
    "  L=$M\n"
    "  [ \"$c\" = eof ] && e=1 ;;\n"
    " esac\n"
    " if [ -n \"$L\" ]; then\n"
    "  z=$n\n"
    "  [ -n \"$fast\" ] || { kill $b 2>/dev/null; clock 1; fast=1; }\n"
    " elif [ -n \"$fast\" ] && [ $((n - z)) -ge 1000 ]; then\n"
    "  kill $b 2>/dev/null; clock $h; fast=\n"
    " fi\n"
    " [ \"$c\" = t ] || [ \"$c\" = eof ] || continue\n"
    " M=\n"
    " for x in $L; do\n"
    "  y=${x%%%%:*} r=${x#*:}\n"
    "  k=${r#*:} r=${r%%:*}\n"
    "  kill -0 -$y 2>/dev/null || continue\n"
    "  if [ $k -gt 0 ]; then\n"
    "   if [ $n -ge $k ]; then kill -KILL -$y 2>/dev/null; continue; fi\n"
    "  elif [ $n -ge $r ]; then\n"
    "   kill -TERM -$y 2>/dev/null\n"
    "   k=$((r + g * 100 - 150))\n"
    "  fi\n"
    "  M=\"$M $y:$r:$k\"\n"
    " done\n"
    " L=$M\n"
    " if [ -z \"$L\" ] && { [ -n \"$e\" ] || [ $((n - s)) -ge $((q * 100)) ]; }; then exit 0; fi\n"
    "done\n";

int command_watcher(int grace_s, int idle_exit_s, char **out)
{
	*out = NULL;
	if (asprintf(out, watcher_script, grace_s > 0 ? grace_s : 1,
	             idle_exit_s > 0 ? idle_exit_s : 60) < 0) {
		*out = NULL;
		return EB_ERR_NOMEM;
	}
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
