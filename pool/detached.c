/* pool/detached.c: the host's side of a detached exec as POSIX sh scripts (the launcher,
 * the supervisor it writes, the reader, the signaller), their argv, and the parser of what
 * the reader prints. Every value reaches a script as a positional parameter, never pasted
 * into its text, so nothing here needs quoting but the scripts themselves. */
#include "pool/detached.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* Quoted: a home with spaces stays one word. */
#define EXECS_DIR "\"$HOME\"/.exec-broker/execs"

/* The supervisor, written into the exec's directory by the launcher and run as
 * `setsid sh sup DIR TIMEOUT_MS GRACE_S CHUNK KEEP RETAIN_S` with its stdout on the
 * launcher's channel (where the started line goes, after which it lets the channel go).
 * One line per event arrives on the FIFO ctl (fd 3): p PGID (the command runs), x STATUS
 * (it exited), o BYTES / e BYTES (a stream ended), t (the clock), s SIG and c (a broker).
 * The deadline uses /proc/uptime in centiseconds, a clock no wall-clock step moves.
 * On a full disk the status goes first: the exec's own output is removed to make room for
 * it, and a status that still cannot be written ends the supervisor at once (the exec
 * reads as lost) rather than leaving it running, silent, until its retention is over. */
#define SUPERVISOR                                                                                 \
	"d=$1 g=$3 C=$4 K=$5 R=$6\n"                                                               \
	"trap '' HUP PIPE INT QUIT\n"                                                              \
	"cd \"$d\" || exit 1\n"                                                                    \
	"exec 4>&1 >/dev/null\n"                                                                   \
	"echo $$ >pid\n"                                                                           \
	"now() { read -r u x </proc/uptime && n=$((${u%.*} * 100 + 1${u#*.} - 100)); }\n"          \
	"now || exit 1\n"                                                                          \
	"t0=$n dl=$((n + ($2 + 9) / 10))\n"                                                        \
	"exec 3<>ctl\n"                                                                            \
	"rd() {\n"                                                                                 \
	" i=0\n"                                                                                   \
	" while stdbuf -o0 head -c \"$C\" >\"$1.$i\" && [ -s \"$1.$i\" ]; do\n"                    \
	"  i=$((i + 1)); [ $i -lt \"$K\" ] || rm -f \"$1.$((i - K))\"\n"                           \
	" done <\"$1.fifo\"\n"                                                                     \
	" rm -f \"$1.$i\"; t=0\n"                                                                  \
	" [ $i -gt 0 ] && t=$(((i - 1) * C + $(wc -c <\"$1.$((i - 1))\")))\n"                      \
	" echo \"$1 $t\" >&3\n"                                                                    \
	"}\n"                                                                                      \
	"(exec 4>&-; rd o) & (exec 4>&-; rd e) &\n"                                                \
	"(cd || cd /\n"                                                                            \
	" setsid env --default-signal sh -c '. \"$1\"' sh \"$d/cmd\" <\"$d/stdin\" >\"$d/o.fifo\" \\\n"   \
	"  2>\"$d/e.fifo\" 3>&- &\n"                                                                \
	" echo \"p $!\" >&3; wait $!; echo \"x $?\" >&3) 4>&- &\n"                                 \
	"(while sleep 1 && kill -0 $$; do echo t; done) >&3 4>&- 2>/dev/null &\n"                  \
	"ck=$! pg= st= w= k=0 kt=0 o= f=\n"                                                             \
	"while IFS=' ' read -r c a <&3; do\n"                                                      \
	" now\n"                                                                                   \
	" case $c in\n"                                                                            \
	" p) pg=$a; echo \"$a\" >pgid\n"                                                           \
	"  while ! kill -0 -\"$a\" 2>/dev/null && kill -0 \"$a\" 2>/dev/null; do :; done\n"          \
	"  printf '" DETACHED_STARTED_TAG "%s\\n' \"$a\" >&4; exec 4>&- ;;\n"                      \
	" x) st=$a ;;\n"                                                                           \
	" o) o=$a ;;\n"                                                                            \
	" e) f=$a ;;\n"                                                                            \
	" s) [ -n \"$pg\" ] && [ -z \"$st\" ] && kill -\"$a\" -\"$pg\" 2>/dev/null ;;\n"           \
	" c) [ -n \"$w\" ] || { w=cancelled k=$((n + g * 100)); kill -TERM -\"$pg\" 2>/dev/null; } ;;\n" \
	" esac\n"                                                                                  \
	" if [ -z \"$w\" ] && [ $n -ge $dl ]; then\n"                                              \
	"  w=timeout k=$((n + g * 100)); kill -TERM -\"$pg\" 2>/dev/null\n"                        \
	" fi\n"                                                                                    \
	" if [ $k -gt 0 ] && [ $n -ge $k ]; then kill -KILL -\"$pg\" 2>/dev/null; k=-1 kt=$n; fi\n" \
	" [ -n \"$st\" ] && [ -n \"$o\" ] && [ -n \"$f\" ] && break\n"                             \
	" [ -n \"$st\" ] && [ $k -eq -1 ] && [ $((n - kt)) -ge 200 ] && break\n"                     \
	"done\n"                                                                                   \
	"kill $ck 2>/dev/null\n"                                                                   \
	"cnt() {\n"                                                                                \
	" h=\n"                                                                                    \
	" for q in \"$1\".[0-9]*; do\n"                                                            \
	"  q=${q#*.}; case $q in *[!0-9]*) continue ;; esac\n"                                     \
	"  if [ -z \"$h\" ] || [ $q -gt $h ]; then h=$q; fi\n"                                     \
	" done\n"                                                                                  \
	" if [ -n \"$h\" ]; then echo $((h * C + $(wc -c <\"$1.$h\"))); else echo 0; fi\n"           \
	"}\n"                                                                                      \
	"[ -n \"$o\" ] || o=$(cnt o)\n"                                                            \
	"[ -n \"$f\" ] || f=$(cnt e)\n"                                                            \
	"if [ -n \"$w\" ]; then s=\"$w -\"\n"                                                      \
	"elif [ \"$st\" -gt 128 ] && [ \"$st\" -le 192 ]; then s=\"signaled $(kill -l $((st - 128)))\"\n" \
	"else s=\"exited $st\"; fi\n"                                                              \
	"put() { echo \"$s $o $f $(((n - t0) * 10))\" >status.new && mv status.new status; }\n"  \
	"put || { rm -f o.[0-9]* e.[0-9]* cmd stdin; put; } || { rm -f status.new; exit 1; }\n"   \
	"rm -f cmd stdin\n"                                                                        \
	"exec 3<&-\n"                                                                              \
	"sleep \"$R\"\n"                                                                           \
	"cd / && rm -rf \"$d\"\n"

/* The launcher: `sh -c LAUNCHER exec-broker-launch ID TIMEOUT_MS GRACE_S CHUNK KEEP
 * RETAIN_S BODY_LEN`, its stdin the command's body then the command's stdin. Its exit
 * statuses are detached_launch_error's. It exits at once; the channel closes when the
 * supervisor has printed its started line (or died before). On its way it removes the
 * directories of supervisors that died, RETAIN_S after their exec ended (or, with no
 * status, after it started). */
static const char launcher[] =
    "umask 077\n"
    "d=" EXECS_DIR "/$1\n"
    "mkdir -p " EXECS_DIR " 2>/dev/null\n"
    /* Directories whose supervisor died (a reboot, a kill) are not removed by it: those
     * started more than the retention ago go now. */
    "for o in " EXECS_DIR "/*/pid; do\n"
    " [ -e \"$o\" ] || continue\n"
    " { read -r x <\"$o\" && read -r x x y x </proc/\"$x\"/stat && [ \"$y\" != Z ]; }"
    " 2>/dev/null && continue\n"
    " x=${o%/pid}/status; [ -e \"$x\" ] || x=$o\n"
    " [ -n \"$(find \"$x\" -mmin +$(($6 / 60)) 2>/dev/null)\" ] && rm -rf \"${o%/pid}\"\n"
    "done\n"
    "mkdir \"$d\" || exit 90\n"
    "fail() { rm -rf \"$d\"; exit $1; }\n"
    "command -v setsid >/dev/null && command -v stdbuf >/dev/null &&"
    " env --default-signal true >/dev/null 2>&1 || fail 93\n"
    "head -c \"$7\" >\"$d/cmd\" && cat >\"$d/stdin\" || fail 91\n"
    "[ \"$(wc -c <\"$d/cmd\")\" = \"$7\" ] || fail 91\n"
    "mkfifo \"$d/ctl\" \"$d/o.fifo\" \"$d/e.fifo\" || fail 92\n"
    "cat >\"$d/sup\" <<'EXEC_BROKER_SUPERVISOR'\n" SUPERVISOR "EXEC_BROKER_SUPERVISOR\n"
    "[ -s \"$d/sup\" ] || fail 91\n"
    "setsid sh \"$d/sup\" \"$d\" \"$2\" \"$3\" \"$4\" \"$5\" \"$6\" </dev/null 2>/dev/null &\n"
    "exit 0\n";

/* The reader: `sh -c READER exec-broker-read ID MODE STDOUT_OFF STDERR_OFF CHUNK WAIT_S`.
 * Records, one per line, the data of a d record right after its line:
 *   d S OFF LEN   LEN bytes of stream S (o, e) from offset OFF follow
 *   k S OFF N     N bytes from OFF are no longer kept
 *   l S FROM TO   (stat) stream S is kept from FROM to TO
 *   x STATUS      the exec ended (the supervisor's status line)
 *   r             it still runs
 *   a             there is no directory (not made yet, or removed)
 *   g             its supervisor died without a status
 *                 (gone from /proc, or a zombie nobody reaped yet)
 * A chunk is opened before its size is taken, so one removed meanwhile is still read
 * whole. With follow, it polls what grows: every 50 ms while output flows, backing off to
 * every 500 ms while none does. */
static const char reader[] =
    "cd " EXECS_DIR "/\"$1\" 2>/dev/null || { echo a; exit 0; }\n"
    "m=$2 C=$5\n"
    "alive() { [ -e status ] || { read -r p <pid && read -r u u v u </proc/\"$p\"/stat &&"
    " [ \"$v\" != Z ]; } 2>/dev/null; }\n"
    "ends() {\n"
    " l= h=\n"
    " for f in \"$1\".[0-9]*; do\n"
    "  q=${f#*.}\n"
    "  case $q in *[!0-9]*) continue ;; esac\n"
    "  [ -e \"$f\" ] || continue\n"
    "  if [ -z \"$l\" ] || [ $q -lt $l ]; then l=$q; fi\n"
    "  if [ -z \"$h\" ] || [ $q -gt $h ]; then h=$q; fi\n"
    " done\n"
    "}\n"
    "pump() {\n"
    " r=$2\n"
    " while :; do\n"
    "  i=$((r / C)) k=$((r % C))\n"
    "  if ! { command exec 5<\"$1.$i\"; } 2>/dev/null; then\n"
    "   ends \"$1\"\n"
    "   [ -n \"$l\" ] && [ $i -lt $l ] || break\n"
    "   echo \"k $1 $r $((l * C - r))\"; r=$((l * C)); y=1; continue\n"
    "  fi\n"
    "  z=$(stat -L -c %s /dev/fd/5)\n"
    "  if [ \"$z\" -gt $k ]; then\n"
    "   echo \"d $1 $r $((z - k))\"\n"
    "   dd bs=65536 skip=$k count=$((z - k)) iflag=skip_bytes,count_bytes status=none <&5\n"
    "   r=$((r + z - k)); y=1\n"
    "  fi\n"
    "  exec 5<&-\n"
    "  [ \"$z\" -ge \"$C\" ] || break\n"
    " done\n"
    "}\n"
    "end() {\n"
    " if [ -e status ]; then read -r s <status; echo \"x $s\"; elif alive; then echo r;"
    " else echo g; fi\n"
    "}\n"
    "if [ \"$m\" = stat ]; then\n"
    " j=$(($6 * 5))\n"
    " while [ $j -gt 0 ] && [ ! -e status ] && alive; do sleep 0.2; j=$((j - 1)); done\n"
    " for s in o e; do\n"
    "  ends $s\n"
    "  [ -n \"$h\" ] && echo \"l $s $((l * C)) $((h * C + $(stat -c %s \"$s.$h\" 2>/dev/null"
    " || echo 0)))\"\n"
    " done\n"
    " end; exit 0\n"
    "fi\n"
    "o=$3 e=$4 b=0\n"
    "while :; do\n"
    " y=; pump o $o; o=$r; pump e $e; e=$r\n"
    " if [ -e status ]; then pump o $o; pump e $e; end; exit 0; fi\n"
    " alive || { end; exit 0; }\n"
    " [ \"$m\" = follow ] || { echo r; exit 0; }\n"
    " if [ -n \"$y\" ]; then b=0; continue; fi\n"
    " case $b in 0) t=0.05 ;; 1) t=0.1 ;; 2) t=0.2 ;; *) t=0.5 ;; esac\n"
    " b=$((b + 1)); sleep $t\n"
    "done\n";

/* The signaller: `sh -c SIGNALLER exec-broker-signal ID LINE`. */
static const char signaller[] =
    "cd " EXECS_DIR "/\"$1\" 2>/dev/null || exit 3\n"
    "[ -e status ] && exit 3\n"
    "{ read -r p <pid && read -r x x y x </proc/\"$p\"/stat && [ \"$y\" != Z ]; } 2>/dev/null ||"
    " exit 4\n"
    "printf '%s\\n' \"$2\" 1<>ctl\n";

/* argv of n strings: the first three are sh -c script; the rest are formatted into one
 * store, NUL-separated. */
static int make_argv(struct eb_bytes *argv, size_t n, char **store, const char *script,
                     const char *const *vals)
{
	size_t total = 0;
	char *p;

	*store = NULL;
	for (size_t i = 3; i < n; i++)
		total += strlen(vals[i - 3]) + 1;
	p = *store = malloc(total + 1);
	if (p == NULL)
		return EB_ERR_NOMEM;
	argv[0] = (struct eb_bytes){"sh", 2};
	argv[1] = (struct eb_bytes){"-c", 2};
	argv[2] = (struct eb_bytes){script, strlen(script)};
	for (size_t i = 3; i < n; i++) {
		size_t len = strlen(vals[i - 3]);

		memcpy(p, vals[i - 3], len + 1);
		argv[i] = (struct eb_bytes){p, len};
		p += len + 1;
	}
	return 0;
}

int detached_launch_argv(const struct detached_start *s, size_t body_len,
                         struct eb_bytes argv[DETACHED_LAUNCH_ARGC], char **store)
{
	char t[24], g[16], c[24], k[16], r[16], b[24];
	const char *vals[] = {"exec-broker-launch", s->exec_id, t, g, c, k, r, b};

	snprintf(t, sizeof(t), "%lld", s->timeout_ms > 0 ? s->timeout_ms : 1);
	snprintf(g, sizeof(g), "%d", s->grace_s > 0 ? s->grace_s : 1);
	snprintf(c, sizeof(c), "%lld", detached_chunk(s->cap));
	snprintf(k, sizeof(k), "%d", DETACHED_CHUNKS);
	snprintf(r, sizeof(r), "%d", s->retain_s > 0 ? s->retain_s : 1);
	snprintf(b, sizeof(b), "%zu", body_len);
	return make_argv(argv, DETACHED_LAUNCH_ARGC, store, launcher, vals);
}

const char *detached_launch_error(int status)
{
	switch (status) {
	case 90:
		return "could not create the exec's directory under ~/.exec-broker/execs on the "
		       "host (is the home directory writable?)";
	case 91:
		return "could not store the command and its stdin on the host (is the disk full?)";
	case 92:
		return "could not create the exec's FIFOs on the host";
	case 93:
		return "the host lacks setsid(1) (util-linux), stdbuf(1) or env --default-signal "
		       "(GNU coreutils 9.0 or later), which detached execs need";
	default:
		return NULL;
	}
}

int detached_read_argv(const char *exec_id, enum detached_read_mode m, uint64_t stdout_off,
                       uint64_t stderr_off, long long cap, int wait_s,
                       struct eb_bytes argv[DETACHED_READ_ARGC], char **store)
{
	static const char *const modes[] = {"stat", "read", "follow"};
	char o[24], e[24], c[24], w[16];
	const char *vals[] = {"exec-broker-read", exec_id, modes[m], o, e, c, w};

	snprintf(o, sizeof(o), "%" PRIu64, stdout_off);
	snprintf(e, sizeof(e), "%" PRIu64, stderr_off);
	snprintf(c, sizeof(c), "%lld", detached_chunk(cap));
	snprintf(w, sizeof(w), "%d", wait_s > 0 && m == DETACHED_STAT ? wait_s : 0);
	return make_argv(argv, DETACHED_READ_ARGC, store, reader, vals);
}

int detached_signal_argv(const char *exec_id, const char *sig,
                         struct eb_bytes argv[DETACHED_SIGNAL_ARGC], char **store)
{
	char line[24];
	const char *vals[] = {"exec-broker-signal", exec_id, line};

	snprintf(line, sizeof(line), sig != NULL ? "s %s" : "c", sig);
	return make_argv(argv, DETACHED_SIGNAL_ARGC, store, signaller, vals);
}

int detached_signal_valid(const char *name)
{
	static const char *const names[] = {"HUP",  "INT",  "QUIT", "KILL", "USR1",
	                                    "USR2", "TERM", "CONT", "STOP"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return 1;
	return 0;
}

const char *detached_status_name(enum detached_status_kind k)
{
	switch (k) {
	case DST_EXITED:
		return "exited";
	case DST_SIGNALED:
		return "signaled";
	case DST_TIMEOUT:
		return "timeout";
	case DST_CANCELLED:
		return "cancelled";
	default:
		abort();
	}
}

/* A number as sh arithmetic prints it (digits, no sign, no leading zero) and at most
 * INT64_MAX, which a tenant's forged status line must not pass: the audit row's bigint
 * and the API's JSON integers hold no more. Moves *s past it; 0 or EB_ERR_INVAL. */
static int number_at(const char **s, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return EB_ERR_INVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (uint64_t)(INT64_MAX - (*p - '0')) / 10)
			return EB_ERR_INVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*s = p;
	*out = v;
	return 0;
}

/* A word of 1 to cap - 1 characters up to the next space or the end, into w. */
static int word_at(const char **s, char *w, size_t cap)
{
	size_t n = strcspn(*s, " ");

	if (n == 0 || n >= cap)
		return EB_ERR_INVAL;
	memcpy(w, *s, n);
	w[n] = '\0';
	*s += n;
	return 0;
}

/* " NUMBER": one space, then a number. */
static int next_number(const char **s, uint64_t *out)
{
	if (**s != ' ')
		return EB_ERR_INVAL;
	(*s)++;
	return number_at(s, out);
}

int detached_status_parse(const char *line, struct detached_status *st)
{
	char kind[16], val[16];
	uint64_t o, e, dur;
	const char *p = line;

	memset(st, 0, sizeof(*st));
	if (word_at(&p, kind, sizeof(kind)) != 0 || *p++ != ' ' ||
	    word_at(&p, val, sizeof(val)) != 0 || next_number(&p, &o) != 0 ||
	    next_number(&p, &e) != 0 || next_number(&p, &dur) != 0 || *p != '\0')
		return EB_ERR_INVAL;
	if (strcmp(kind, "exited") == 0) {
		const char *v = val;
		uint64_t c;

		if (number_at(&v, &c) != 0 || *v != '\0' || c > 255)
			return EB_ERR_INVAL;
		st->kind = DST_EXITED;
		st->exit_code = (int)c;
	} else if (strcmp(kind, "signaled") == 0) {
		if (strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-") != strlen(val))
			return EB_ERR_INVAL;
		st->kind = DST_SIGNALED;
		snprintf(st->signal, sizeof(st->signal), "%s", val);
	} else if (strcmp(kind, "timeout") == 0 && strcmp(val, "-") == 0) {
		st->kind = DST_TIMEOUT;
	} else if (strcmp(kind, "cancelled") == 0 && strcmp(val, "-") == 0) {
		st->kind = DST_CANCELLED;
	} else {
		return EB_ERR_INVAL;
	}
	st->stdout_bytes = o;
	st->stderr_bytes = e;
	st->duration_ms = (long long)dur;
	return 0;
}

/* "d S A B", "k S A B" or "l S A B" after its letter: S "o" or "e", A and B numbers. */
static int range_line(const char *line, int *stream, uint64_t *a, uint64_t *b)
{
	const char *p = line + 3;

	if (line[1] != ' ' || (line[2] != 'o' && line[2] != 'e'))
		return EB_ERR_INVAL;
	if (next_number(&p, a) != 0 || next_number(&p, b) != 0 || *p != '\0')
		return EB_ERR_INVAL;
	*stream = line[2] == 'o' ? 1 : 2;
	return 0;
}

/* One record line (without its newline). */
static int parse_line(struct detached_parser *p, const char *line, detached_rec_cb cb, void *arg)
{
	struct detached_rec r;
	uint64_t a, b;
	int stream;

	memset(&r, 0, sizeof(r));
	if (strcmp(line, "r") == 0) {
		r.kind = DREC_RUNNING;
	} else if (strcmp(line, "g") == 0) {
		r.kind = DREC_GONE;
	} else if (strcmp(line, "a") == 0) {
		r.kind = DREC_ABSENT;
	} else if (strncmp(line, "x ", 2) == 0) {
		r.kind = DREC_STATUS;
		if (detached_status_parse(line + 2, &r.status) != 0)
			return EB_ERR_INVAL;
	} else if ((line[0] == 'd' || line[0] == 'k' || line[0] == 'l') &&
	           range_line(line, &stream, &a, &b) == 0) {
		/* A data or skipped range ends in the stream too: within INT64_MAX. A kept
		 * range is from a to b. */
		if (line[0] == 'l' ? b < a : b > (uint64_t)INT64_MAX - a)
			return EB_ERR_INVAL;
		r.stream = stream;
		r.offset = a;
		r.len = b;
		if (line[0] == 'd') {
			p->stream = r.stream;
			p->offset = a;
			p->left = b;
			return 0; /* the data follows */
		}
		r.kind = line[0] == 'k' ? DREC_SKIPPED : DREC_KEPT;
	} else {
		return EB_ERR_INVAL;
	}
	cb(&r, arg);
	return 0;
}

int detached_parse(struct detached_parser *p, const char *buf, size_t len, detached_rec_cb cb,
                   void *arg)
{
	size_t i = 0;

	while (!p->failed && i < len) {
		if (p->left > 0) {
			size_t n = len - i < p->left ? len - i : (size_t)p->left;
			struct detached_rec r = {.kind = DREC_DATA,
			                         .stream = p->stream,
			                         .offset = p->offset,
			                         .len = n,
			                         .data = buf + i};

			p->left -= n;
			p->offset += n;
			i += n;
			cb(&r, arg);
			continue;
		}
		if (buf[i] != '\n') {
			/* A NUL would end the line early: "r\0..." is no "r". */
			if (p->llen + 1 >= sizeof(p->line) || buf[i] == '\0') {
				p->failed = true;
				break;
			}
			p->line[p->llen++] = buf[i++];
			continue;
		}
		i++;
		p->line[p->llen] = '\0';
		p->llen = 0;
		if (parse_line(p, p->line, cb, arg) != 0)
			p->failed = true;
	}
	return p->failed ? EB_ERR_INVAL : 0;
}
