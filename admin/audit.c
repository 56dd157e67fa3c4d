/* admin/audit.c: `exec-broker audit` (rows of the audit log as a table, JSON lines or
 * CSV; --follow prints rows as they finish, woken by LISTEN/NOTIFY) and `exec-broker
 * audit verify` (the hash chain). Administrators' tools: they read the database directly,
 * every row in scope. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "audit/chain.h"
#include "audit/filter.h"
#include "audit/query.h"
#include "audit/render.h"
#include "audit/verify.h"
#include "common/duration.h"
#include "common/err.h"
#include "pool/command.h"

#define CLI_LIMIT_MAX      1000000
#define FOLLOW_BACKLOG     10
#define VERIFY_EXIT_BROKEN 1
#define VERIFY_EXIT_DB     3

enum { FMT_TABLE, FMT_JSON, FMT_CSV };

static void audit_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker audit [--workspace ID] [--org ORG] [--actor A] [--status S]\n"
	    "                         [--batch ID] [--break-glass] [--since T] [--until T]\n"
	    "                         [--limit N]\n"
	    "                         [--format table|json|csv] [--follow]\n"
	    "       exec-broker audit verify [--anchor SEQ:HASH]\n"
	    "\n"
	    "Prints audit rows newest first, read from the database (every org).\n"
	    "  --workspace ID, --org ORG, --actor A (e.g. token:ebk_AbCdEfGh)\n"
	    "  --status S       running, denied, exited, signaled, timeout, cancelled,\n"
	    "                   transport_error, failed_to_start, shutdown, abandoned,\n"
	    "                   lost\n"
	    "  --batch ID       only the execs of one batch (its batch_id)\n"
	    "  --break-glass    only break-glass execs (admin tokens, with a reason)\n"
	    "  --since T, --until T\n"
	    "                   started at or after / before T: RFC 3339\n"
	    "                   (2026-11-23T10:00:00Z) or a duration back from now (24h, 7d)\n"
	    "  --limit N        at most N rows, 1-%d (default %d)\n"
	    "  --format F       table (default), json (one object per line), csv (RFC 4180)\n"
	    "  --follow         print the last rows that finished (--limit, default %d), then\n"
	    "                   each row as it finishes, until interrupted\n"
	    "\n"
	    "verify walks the hash chain of finished rows and prints every row that was\n"
	    "altered, removed or forged; with --anchor, also checks a head printed before.\n"
	    "Exit status: 0 success (verify: the chain is intact), 1 failure (verify: problems\n"
	    "found), 2 usage error, 3 (verify) the database could not be read.\n",
	    CLI_LIMIT_MAX, AUDIT_LIMIT_DEFAULT, FOLLOW_BACKLOG);
}

/* --- output ---------------------------------------------------------------------------- */

/* A column of the table: header, width in characters, and how a value is made. */
struct tcol {
	const char *head;
	int width;
	bool right;
};

static const struct tcol tcols[] = {
    {"STARTED", 19, false}, {"EXEC_ID", 36, false}, {"WORKSPACE", 16, false},
    {"ACTOR", 18, false},   {"STATUS", 15, false},  {"RESULT", 16, false},
    {"MS", 8, true},        {"COMMAND", 60, false},
};
#define NTCOLS (sizeof(tcols) / sizeof(tcols[0]))

/* Prints s in exactly width characters (UTF-8 aware), cut with "…" when longer; the last
 * column is not padded. */
static void put_cell(FILE *out, const char *s, int width, bool right, bool last)
{
	size_t n = 0, bytes = 0, cut = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p & 0xC0) != 0x80) {
			if (n == (size_t)width - 1)
				cut = bytes;
			n++;
		}
		bytes++;
	}
	if (n > (size_t)width) {
		fwrite(s, 1, cut, out);
		fputs("…", out);
		return;
	}
	if (right)
		fprintf(out, "%*s", width - (int)n, "");
	fputs(s, out);
	if (!right && !last)
		fprintf(out, "%*s", width - (int)n, "");
}

/* A growing string (the layout command_quote() appends to). */
struct sbuf {
	char *p;
	size_t len, cap;
	int rc;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->rc != 0)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (b->len + n + 1 > cap)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->rc = EB_ERR_NOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One argv element as a shell word: bare when plainly safe, else single-quoted, or $'...'
 * with escapes when it holds control characters, so that a row stays on one line. */
static void shell_word(struct sbuf *b, const char *s)
{
	static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	                           "_@%+=:,./-";
	bool ctl = false;
	char esc[8];

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		ctl |= *p < 0x20 || *p == 0x7f;
	if (s[0] != '\0' && strspn(s, safe) == strlen(s)) {
		sb_add(b, s, strlen(s));
		return;
	}
	if (!ctl) {
		if (b->rc == 0 && command_quote(&b->p, &b->len, &b->cap, s, strlen(s)) != 0)
			b->rc = EB_ERR_NOMEM;
		return;
	}
	sb_add(b, "$'", 2);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\n')
			snprintf(esc, sizeof(esc), "\\n");
		else if (*p == '\t')
			snprintf(esc, sizeof(esc), "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
		else if (*p == '\'' || *p == '\\')
			snprintf(esc, sizeof(esc), "\\%c", *p);
		else
			snprintf(esc, sizeof(esc), "%c", *p);
		sb_add(b, esc, strlen(esc));
	}
	sb_add(b, "'", 1);
}

static const char *str(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : "";
}

static void print_table_head(FILE *out)
{
	for (size_t c = 0; c < NTCOLS; c++) {
		if (c > 0)
			fputs("  ", out);
		put_cell(out, tcols[c].head, tcols[c].width, tcols[c].right, c == NTCOLS - 1);
	}
	fputc('\n', out);
}

static int print_table_row(FILE *out, json_t *item)
{
	char started[32], result[40], ms[24];
	const char *cells[NTCOLS];
	struct sbuf cmd = {0};
	json_t *argv = json_object_get(item, "argv"), *v;
	size_t k;

	/* "2026-11-23T10:00:00.123456Z" as "2026-11-23 10:00:00" */
	snprintf(started, sizeof(started), "%.19s", str(item, "started_at"));
	if (strlen(started) > 10)
		started[10] = ' ';
	if (json_is_integer(v = json_object_get(item, "exit_code")))
		snprintf(result, sizeof(result), "exit %lld", (long long)json_integer_value(v));
	else if (json_is_string(v = json_object_get(item, "exit_signal")))
		snprintf(result, sizeof(result), "signal %s", json_string_value(v));
	else
		snprintf(result, sizeof(result), "%s", str(item, "error_code"));
	if (json_is_integer(v = json_object_get(item, "duration_ms")))
		snprintf(ms, sizeof(ms), "%lld", (long long)json_integer_value(v));
	else
		ms[0] = '\0';
	json_array_foreach(argv, k, v)
	{
		if (k > 0)
			sb_add(&cmd, " ", 1);
		shell_word(&cmd, json_string_value(v) != NULL ? json_string_value(v) : "");
	}
	if (cmd.rc != 0) {
		free(cmd.p);
		return EB_ERR_NOMEM;
	}
	cells[0] = started;
	cells[1] = str(item, "exec_id");
	cells[2] = str(item, "workspace_id");
	cells[3] = str(item, "actor");
	cells[4] = str(item, "status");
	cells[5] = result;
	cells[6] = ms;
	cells[7] = cmd.p != NULL ? cmd.p : "";
	for (size_t c = 0; c < NTCOLS; c++) {
		if (c > 0)
			fputs("  ", out);
		put_cell(out, cells[c], tcols[c].width, tcols[c].right, c == NTCOLS - 1);
	}
	fputc('\n', out);
	free(cmd.p);
	return 0;
}

/* RFC 4180: quoted when it holds a comma, a quote, CR or LF; quotes doubled. */
static void csv_field(FILE *out, const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void print_csv_head(FILE *out)
{
	const char *k;

	for (unsigned long i = 0; (k = audit_item_key(i)) != NULL; i++) {
		if (i > 0)
			fputc(',', out);
		csv_field(out, k);
	}
	fputs("\r\n", out);
}

static int print_csv_row(FILE *out, json_t *item)
{
	const char *k;

	for (unsigned long i = 0; (k = audit_item_key(i)) != NULL; i++) {
		json_t *v = json_object_get(item, k);
		char num[32], *text = NULL;

		if (i > 0)
			fputc(',', out);
		if (json_is_string(v)) {
			csv_field(out, json_string_value(v));
		} else if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
			fputs(num, out);
		} else if (json_is_boolean(v)) {
			fputs(json_is_true(v) ? "true" : "false", out);
		} else if (json_is_array(v)) {
			text = json_dumps(v, JSON_COMPACT);
			if (text == NULL)
				return EB_ERR_NOMEM;
			csv_field(out, text);
			free(text);
		}
	}
	fputs("\r\n", out);
	return 0;
}

static void print_head(FILE *out, int format)
{
	if (format == FMT_TABLE)
		print_table_head(out);
	else if (format == FMT_CSV)
		print_csv_head(out);
}

static int print_row(FILE *out, int format, const PGresult *res, int i)
{
	json_t *item = audit_item_json(res, i);
	char *line;
	int rc = 0;

	if (item == NULL)
		return EB_ERR_NOMEM;
	switch (format) {
	case FMT_TABLE:
		rc = print_table_row(out, item);
		break;
	case FMT_JSON:
		line = json_dumps(item, JSON_COMPACT);
		if (line == NULL) {
			rc = EB_ERR_NOMEM;
			break;
		}
		fprintf(out, "%s\n", line);
		free(line);
		break;
	case FMT_CSV:
		rc = print_csv_row(out, item);
		break;
	default:
		abort();
	}
	json_decref(item);
	return rc;
}

/* --- queries --------------------------------------------------------------------------- */

static PGresult *run(PGconn *c, const struct audit_query *q)
{
	PGresult *res = PQexecParams(c, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *m = PQresultErrorMessage(res);

		cli_error("cannot read the audit log: %.*s", (int)strcspn(m, "\n"), m);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Up to limit rows newest first, a page of at most AUDIT_LIMIT_MAX at a time. */
static int list_rows(PGconn *c, struct audit_filter *f, long limit, int format)
{
	static const struct audit_scope all = {AUDIT_SCOPE_ALL, NULL, NULL};
	struct audit_query q;
	long printed = 0;

	print_head(stdout, format);
	while (printed < limit) {
		PGresult *res;
		int n;

		f->limit =
		    (int)(limit - printed < AUDIT_LIMIT_MAX ? limit - printed : AUDIT_LIMIT_MAX);
		audit_query_list(&q, f, &all);
		res = run(c, &q);
		if (res == NULL)
			return CLI_EXIT_FAIL;
		n = PQntuples(res) < f->limit ? PQntuples(res) : f->limit;
		for (int i = 0; i < n; i++)
			if (print_row(stdout, format, res, i) != 0) {
				PQclear(res);
				cli_error("out of memory");
				return CLI_EXIT_FAIL;
			}
		printed += n;
		if (PQntuples(res) <= f->limit) {
			PQclear(res);
			break;
		}
		audit_filter_after(f, res, n - 1);
		PQclear(res);
	}
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static long long head_seq(PGconn *c)
{
	PGresult *res = PQexec(c, "SELECT seq FROM exec_audit_chain_head");
	long long seq = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	else
		cli_error("cannot read the audit chain's head: %s",
		          PQntuples(res) != 1 ? "exec_audit_chain_head is not one row"
		                              : PQresultErrorMessage(res));
	PQclear(res);
	return seq;
}

static volatile sig_atomic_t follow_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	follow_stop = 1;
}

/* Prints the matching links in (*after, upto], oldest first, a page at a time; *after
 * moves on to upto. */
static int print_links(PGconn *c, struct audit_filter *f, long long *after, long long upto,
                       int format)
{
	struct audit_query q;

	f->limit = AUDIT_LIMIT_MAX;
	while (*after < upto) {
		PGresult *res;
		int n;

		audit_query_links(&q, f, *after, upto, false);
		res = run(c, &q);
		if (res == NULL)
			return CLI_EXIT_FAIL;
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
			if (print_row(stdout, format, res, i) != 0) {
				PQclear(res);
				return CLI_EXIT_FAIL;
			}
		*after = n == f->limit ? audit_row_chain_seq(res, n - 1) : upto;
		PQclear(res);
	}
	return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* The links after *after up to the current head. */
static int print_new_links(PGconn *c, struct audit_filter *f, long long *after, int format)
{
	long long head = head_seq(c);

	return head < 0 ? CLI_EXIT_FAIL : print_links(c, f, after, head, format);
}

/* The seq just before the last `count` matching links up to upto (0 if there are fewer),
 * found a page at a time from the newest; -1 if the database could not be read. */
static long long backlog_start(PGconn *c, struct audit_filter *f, long count, long long upto)
{
	struct audit_query q;

	while (count > 0) {
		PGresult *res;
		long long oldest;
		int n;

		f->limit = (int)(count < AUDIT_LIMIT_MAX ? count : AUDIT_LIMIT_MAX);
		audit_query_links(&q, f, 0, upto, true);
		res = run(c, &q);
		if (res == NULL)
			return -1;
		n = PQntuples(res);
		oldest = n > 0 ? audit_row_chain_seq(res, n - 1) : 0;
		PQclear(res);
		if (n < f->limit)
			return 0;
		count -= n;
		upto = oldest - 1;
	}
	return upto;
}

/* The last `backlog` finished rows, then every row as it finishes. Woken by NOTIFY (the
 * chain trigger sends one per transaction that finished rows); the rows themselves are
 * found by chain_seq, so coalesced notifications lose nothing. */
static int follow_rows(PGconn *c, struct audit_filter *f, long backlog, int format)
{
	struct sigaction sa = {.sa_handler = on_stop_signal};
	sigset_t block, unblocked;
	long long after, head;
	PGresult *res;
	int rc;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &unblocked);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	res = PQexec(c, "LISTEN exec_audit");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		cli_error("cannot listen for new audit rows: %s", PQresultErrorMessage(res));
		PQclear(res);
		return CLI_EXIT_FAIL;
	}
	PQclear(res);
	/* After LISTEN: every link past this head will be announced. */
	head = head_seq(c);
	if (head < 0)
		return CLI_EXIT_FAIL;
	print_head(stdout, format);
	after = backlog_start(c, f, backlog, head);
	if (after < 0 || print_links(c, f, &after, head, format) != CLI_EXIT_OK)
		return CLI_EXIT_FAIL;
	while (!follow_stop) {
		struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
		bool woken = false;
		PGnotify *n;

		/* Notifications that arrived during the last queries are already in libpq's
		 * queue, and would not wake ppoll: look there first. */
		while ((n = PQnotifies(c)) != NULL) {
			woken = true;
			PQfreemem(n);
		}
		if (woken) {
			rc = print_new_links(c, f, &after, format);
			if (rc != CLI_EXIT_OK)
				return rc;
			continue;
		}
		if (ppoll(&pfd, 1, NULL, &unblocked) < 0) {
			if (errno == EINTR)
				continue;
			cli_error("waiting for the database: %s", strerror(errno));
			return CLI_EXIT_FAIL;
		}
		if (PQconsumeInput(c) == 0) {
			cli_error("lost the database connection: %.*s",
			          (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
			return CLI_EXIT_FAIL;
		}
	}
	return CLI_EXIT_OK;
}

/* --- the command ----------------------------------------------------------------------- */

/* --since / --until: RFC 3339, or a duration back from now, as RFC 3339 text in buf. */
static int time_arg(const char *opt, const char *v, char buf[40])
{
	long long us, secs;
	struct timespec now;

	if (audit_time_parse(v, &us) == 0) {
		snprintf(buf, 40, "%s", v);
		return 0;
	}
	if (duration_parse(v, 100LL * 365 * 86400, &secs) != 0) {
		cli_error("--%s: \"%s\" is neither an RFC 3339 time (2026-11-23T10:00:00Z) nor a "
		          "duration back from now (24h, 7d, 1h30m)",
		          opt, v);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	us = ((long long)now.tv_sec - secs) * 1000000 + now.tv_nsec / 1000;
	audit_time_format(us, buf);
	return 0;
}

static int cmd_verify(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"anchor", required_argument, NULL, 1}, CLI_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
	const char *vals[2], *anchor;
	unsigned char hash[AUDIT_HASH_LEN];
	struct audit_verify_result r;
	long long seq;
	PGconn *conn = NULL;
	char err[512], hx[2 * AUDIT_HASH_LEN + 1];
	int rc;

	rc = cli_parse(cli, argc, argv, "audit", opts, "\x01", vals, 2, 0, "", NULL, audit_usage);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	anchor = vals[1];
	if (anchor != NULL && audit_anchor_parse(anchor, &seq, hash) != 0) {
		cli_error("--anchor: \"%s\" is not SEQ:HASH as verify printed its head (a number, "
		          "a colon, 64 hex digits)",
		          anchor);
		return CLI_EXIT_USAGE;
	}
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc == CLI_EXIT_FAIL ? VERIFY_EXIT_DB : rc;
	rc = audit_verify(conn, anchor, stdout, &r, err, sizeof(err));
	PQfinish(conn);
	if (rc == EB_ERR_INVAL) {
		cli_error("--anchor: %s", err);
		return CLI_EXIT_USAGE;
	}
	if (rc < 0) {
		cli_error("%s", err);
		return VERIFY_EXIT_DB;
	}
	for (int i = 0; i < AUDIT_HASH_LEN; i++)
		snprintf(hx + 2 * i, 3, "%02x", r.head_hash[i]);
	if (rc == 0) {
		if (r.pending > 0)
			printf("ok: %lld links, head %lld:%s; %lld finished rows waiting for their "
			       "link\n",
			       r.links, r.head_seq, hx, r.pending);
		else
			printf("ok: %lld links, head %lld:%s\n", r.links, r.head_seq, hx);
		return CLI_EXIT_OK;
	}
	printf("FAILED: %lld problems in %lld links (the head says %lld:%s)\n", r.problems, r.links,
	       r.head_seq, hx);
	return VERIFY_EXIT_BROKEN;
}

int admin_audit(struct cli *cli, int argc, char **argv)
{
	enum {
		O_WS = 1,
		O_ORG,
		O_ACTOR,
		O_STATUS,
		O_BATCH,
		O_BG,
		O_SINCE,
		O_UNTIL,
		O_LIMIT,
		O_FORMAT,
		O_FOLLOW,
		NOPTS
	};
	static const struct option opts[] = {{"workspace", required_argument, NULL, O_WS},
	                                     {"org", required_argument, NULL, O_ORG},
	                                     {"actor", required_argument, NULL, O_ACTOR},
	                                     {"status", required_argument, NULL, O_STATUS},
	                                     {"batch", required_argument, NULL, O_BATCH},
	                                     {"break-glass", no_argument, NULL, O_BG},
	                                     {"since", required_argument, NULL, O_SINCE},
	                                     {"until", required_argument, NULL, O_UNTIL},
	                                     {"limit", required_argument, NULL, O_LIMIT},
	                                     {"format", required_argument, NULL, O_FORMAT},
	                                     {"follow", no_argument, NULL, O_FOLLOW},
	                                     CLI_COMMON_OPTIONS,
	                                     {NULL, 0, NULL, 0}};
	static const char allowed[] = {O_WS,    O_ORG,   O_ACTOR, O_STATUS, O_BATCH,  O_BG,
	                               O_SINCE, O_UNTIL, O_LIMIT, O_FORMAT, O_FOLLOW, '\0'};
	/* Each filter option and the API parameter that it sets. */
	static const struct {
		int opt;
		const char *param, *name;
	} params[] = {{O_WS, "workspace_id", "workspace"}, {O_ORG, "org_id", "org"},
	              {O_ACTOR, "actor", "actor"},         {O_STATUS, "status", "status"},
	              {O_BATCH, "batch_id", "batch"},      {O_BG, "break_glass", "break-glass"},
	              {O_SINCE, "since", "since"},         {O_UNTIL, "until", "until"}};
	const char *vals[NOPTS], *names[9], *values[9];
	char since[40], until[40], field[64], err[300], *end;
	struct audit_filter f;
	PGconn *conn = NULL;
	int rc, format = FMT_TABLE;
	long limit = -1;
	size_t n = 0;

	if (argc > 1 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(cli, argc - 1, argv + 1);
	rc = cli_parse(cli, argc, argv, "audit", opts, allowed, vals, NOPTS, 0, "", NULL,
	               audit_usage);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if ((vals[O_SINCE] && time_arg("since", vals[O_SINCE], since) != 0) ||
	    (vals[O_UNTIL] && time_arg("until", vals[O_UNTIL], until) != 0))
		return CLI_EXIT_USAGE;
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		const char *v = vals[params[i].opt];

		if (v == NULL)
			continue;
		names[n] = params[i].param;
		values[n++] = params[i].opt == O_BG      ? "true"
		              : params[i].opt == O_SINCE ? since
		              : params[i].opt == O_UNTIL ? until
		                                         : v;
	}
	if (audit_filter_parse(&f, names, values, n, field, sizeof(field), err, sizeof(err)) != 0) {
		for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
			if (strcmp(params[i].param, field) == 0)
				cli_error("--%s: %s", params[i].name, err);
		return CLI_EXIT_USAGE;
	}
	if (vals[O_LIMIT] != NULL) {
		limit = strtol(vals[O_LIMIT], &end, 10);
		if (vals[O_LIMIT][0] < '0' || vals[O_LIMIT][0] > '9' || *end != '\0' || limit < 1 ||
		    limit > CLI_LIMIT_MAX) {
			cli_error("--limit: must be a whole number from 1 to %d", CLI_LIMIT_MAX);
			return CLI_EXIT_USAGE;
		}
	}
	if (vals[O_FORMAT] != NULL) {
		if (strcmp(vals[O_FORMAT], "json") == 0)
			format = FMT_JSON;
		else if (strcmp(vals[O_FORMAT], "csv") == 0)
			format = FMT_CSV;
		else if (strcmp(vals[O_FORMAT], "table") != 0) {
			cli_error("--format: one of table, json, csv (got \"%s\")", vals[O_FORMAT]);
			return CLI_EXIT_USAGE;
		}
	}
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
	if (vals[O_FOLLOW] != NULL)
		rc = follow_rows(conn, &f, limit > 0 ? limit : FOLLOW_BACKLOG, format);
	else
		rc = list_rows(conn, &f, limit > 0 ? limit : AUDIT_LIMIT_DEFAULT, format);
	PQfinish(conn);
	return rc;
}
