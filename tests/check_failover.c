/* tests/check_failover.c: PostgreSQL failover under load. Two clusters of the test's own, a
 * primary and its synchronous streaming standby (pg_basebackup -R), behind one database_url
 * listing both with target_session_attrs=read-write; two brokers on it run a steady load of
 * execs; the primary is stopped (immediate shutdown), and then either refuses connections or
 * (a machine that froze, packets dropped) takes them and never answers; after longer than a
 * statement may wait, the standby is promoted. Every exec either completed with its row final
 * in the promoted database, or was refused 503 audit_unavailable without its command having
 * started; the brokers, never restarted, run execs again by themselves; the chain verifies.
 * The run's shared cluster is not started. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define PRIMARY_PORT 5433
#define STANDBY_PORT 5434
#define STANDBY_NAME "eb_standby"
#define DBNAME       "eb_failover"
#define WS           "ws-fo"

/* api/exec.c's QUERY_DEADLINE_MS: how long an exec's first statement waits for a
 * connection before the exec is refused 503. */
#define STATEMENT_WAIT_MS 5000
/* Load before the primary goes; the primary gone and no standby promoted, longer than a
 * statement waits, so that the execs sent meanwhile are refused for certain; load kept
 * up once both brokers run execs again; the bound on their coming back by themselves (a
 * backoff of at most 5 s in db/pgasync.c, and a silent primary's connect_timeout, 10 s by
 * default, before each try of the standby). */
#define WARMUP_MS    2000
#define GATE_OPEN_MS 500
#define GAP_MS       (STATEMENT_WAIT_MS + 1500)
#define AFTER_MS     3000
#define RECONNECT_MS 30000
#define PROMOTE_MS   KIT_WAIT_MS
#define PACE_MS      10
#define NBROKERS     2
#define NLOAD        6 /* load slots, half on each broker; odd ones sleep in their command */
#define MAX_RECS     4000

/* The marker is written first thing, so its existence says the command started. */
#define CMD_LOAD  "echo started >\"$0\"; sleep \"$1\"; echo ok"
#define CMD_GATED "echo started >\"$0\"; while [ ! -e \"$1\" ]; do sleep 0.05; done; echo ok"

static struct th_pg P, S; /* the primary; the standby, promoted by the test */
static char db_p[512], db_s[512], db_url[512];
static char tok[64];

enum rec_kind {
	REC_LOAD,  /* the steady load */
	REC_GATED, /* runs across the stop: its command ends while there is no primary */
	REC_PROBE, /* sent just after the stop: refused for certain */
};

struct rec {
	enum rec_kind kind;
	int broker;
	char rid[32];
	char marker[200];
	long long sent_ms, done_ms;
	struct kit_resp r;
};

static struct rec recs[MAX_RECS];
static int nrecs;

struct slot {
	struct kit_conn s;
	struct rec *rec; /* in flight; NULL when idle */
	long long next_ms;
};

/* The slots: NLOAD for the load, then a gated exec and a probe per broker. */
#define NSLOTS        (NLOAD + 2 * NBROKERS)
#define SLOT_GATED(b) (NLOAD + (b))
#define SLOT_PROBE(b) (NLOAD + NBROKERS + (b))

static char markers[160];
static struct kit_broker B[NBROKERS];

/* The timeline, CLOCK_MONOTONIC ms: the load began; the primary was stopped; pg_ctl promote
 * was sent; the standby left recovery (0 until it happened). */
static long long t0, t_stop, t_promote, t_promoted;
/* Per broker: execs completed before the stop; when the first exec sent after the
 * promotion completed. */
static int ok_before[NBROKERS];
static long long back[NBROKERS];

/* ------------------------------------------------------------------ the clusters */

/* The primary waits for the standby's flush at every commit (synchronous_commit=on beats the
 * fixture's off); the standby has neither setting: promoted, it must not wait for a standby
 * of its own. Replication over the local socket only. */
static const char *const primary_settings[] = {"wal_level=replica", "synchronous_commit=on",
                                               "synchronous_standby_names=" STANDBY_NAME, NULL};
static const char primary_hba[] = "local all postgres trust\n"
                                  "local replication postgres trust\n";

static int wait_sync(void)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	char *v;

	for (;;) {
		v = kit_sql_value(db_p, "SELECT sync_state FROM pg_stat_replication "
		                        "WHERE application_name = '" STANDBY_NAME "'");
		if (v == NULL)
			return -1;
		if (strcmp(v, "sync") == 0)
			break;
		free(v);
		if (kit_now_ms() > end) {
			th_say("the standby is not a synchronous standby after %d ms", KIT_WAIT_MS);
			kit_file_print_tail(S.log, 3000);
			return -1;
		}
		kit_sleep_ms(50);
	}
	free(v);
	/* And every commit on the primary waits for it. */
	v = kit_sql_value(db_p, "SELECT current_setting('synchronous_commit') || ' ' || "
	                        "current_setting('synchronous_standby_names')");
	if (v == NULL || strcmp(v, "on " STANDBY_NAME) != 0) {
		th_say("the primary's commits do not wait for the standby: %s", v ? v : "");
		free(v);
		return -1;
	}
	free(v);
	return 0;
}

/* The primary, the standby streaming from it in sync, then the database, migrated, with the
 * workspace and a token, all made through the multi-host database_url and replicated; the
 * clusters' directories are named after run. 0, or -1 with a message. */
static int clusters_setup(int run)
{
	static const char *const migrate[] = {"migrate", NULL};
	static const char *const token[] = {"token", "create", "--org", "acme", NULL};
	char hba[300], src[400], pg_postgres[512], name[16];
	const char *backup[] = {"-D",     S.datadir, "-d",   src,         "-R", "-X",
	                        "stream", "-c",      "fast", "--no-sync", NULL};
	const struct kit_ws ws = {WS,       "acme", th.sshd.port, NULL, "3", th.sshd.host_key_fp,
	                          "running"};

	P.settings = primary_settings;
	snprintf(name, sizeof(name), "pga%d", run);
	if (th_pg_cluster(&P, name, PRIMARY_PORT, true) != 0 ||
	    th_fmt(hba, sizeof(hba), "%s/pg_hba.conf", P.datadir) != 0 ||
	    kit_file_write(hba, primary_hba, 0600) != 0 || th_pg_start(&P) != 0)
		return -1;
	th_pg_conninfo_of(&P, "postgres", pg_postgres, sizeof(pg_postgres));
	snprintf(db_p, sizeof(db_p), "%s", pg_postgres);
	snprintf(name, sizeof(name), "pgb%d", run);
	if (th_pg_cluster(&S, name, STANDBY_PORT, false) != 0 ||
	    th_fmt(src, sizeof(src), "host=%s port=%d user=postgres application_name=%s", P.sockdir,
	           PRIMARY_PORT, STANDBY_NAME) != 0 ||
	    th_pg_tool("pg_basebackup", backup, NULL) != 0 || th_pg_start(&S) != 0 ||
	    wait_sync() != 0)
		return -1;
	th_pg_conninfo_of(&P, DBNAME, db_p, sizeof(db_p));
	th_pg_conninfo_of(&S, DBNAME, db_s, sizeof(db_s));
	if (th_fmt(db_url, sizeof(db_url),
	           "host=%s,%s port=%d,%d user=postgres dbname=%s "
	           "target_session_attrs=read-write",
	           P.sockdir, S.sockdir, PRIMARY_PORT, STANDBY_PORT, DBNAME) != 0 ||
	    kit_sql(pg_postgres, "CREATE DATABASE " DBNAME) != 0 ||
	    kit_cli(db_url, migrate, NULL, NULL) != 0 || kit_ws_add(db_url, &ws) != 0 ||
	    kit_cli_token(db_url, token, tok, sizeof(tok)) != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ the load */

static void rec_send(struct slot *sl, enum rec_kind kind, int broker, const char *arg)
{
	struct rec *x;
	const char *argv[] = {"sh", "-c", kind == REC_GATED ? CMD_GATED : CMD_LOAD,
	                      NULL, arg,  NULL};
	char *body;
	struct kit_req q = {.ws = WS, .token = tok};

	ck_assert_int_lt(nrecs, MAX_RECS);
	x = &recs[nrecs++];
	x->kind = kind;
	x->broker = broker;
	snprintf(x->rid, sizeof(x->rid), "fo-%d", nrecs);
	snprintf(x->marker, sizeof(x->marker), "%s/fo-%d", markers, nrecs);
	argv[3] = x->marker;
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 60));
	q.body = body;
	q.rid = x->rid;
	x->sent_ms = kit_now_ms();
	ck_assert_int_eq(kit_stream_open(&sl->s, B[broker].port, &q), 0);
	free(body);
	sl->rec = x;
}

/* Whether a finished request's response looks like a completed exec (checked properly
 * later; this only steers the phases). */
static bool rec_ok(const struct rec *x)
{
	return x->r.status == 200 && x->r.complete && strstr(x->r.body, "\"exit_code\":0") != NULL;
}

static void rec_done(struct rec *x)
{
	x->done_ms = kit_now_ms();
	if (!rec_ok(x))
		return;
	if (t_stop == 0)
		ok_before[x->broker]++;
	else if (t_promoted > 0 && x->sent_ms >= t_promoted && back[x->broker] == 0)
		back[x->broker] = x->done_ms;
}

/* Collects the responses that ended; true while any slot still has one in flight. */
static bool slots_step(struct slot sl[NSLOTS], int wait_ms)
{
	struct kit_conn *cs[NSLOTS];
	bool busy = false;

	for (size_t i = 0; i < NSLOTS; i++)
		cs[i] = &sl[i].s;
	if (kit_conn_poll(cs, NSLOTS, wait_ms) == 0)
		kit_sleep_ms(wait_ms / 4); /* nothing in flight: the load's pace */
	for (size_t i = 0; i < NSLOTS; i++) {
		if (sl[i].rec == NULL)
			continue;
		if (sl[i].s.state != KIT_CONN_DONE && sl[i].s.fd >= 0) {
			busy = true;
			continue;
		}
		kit_stream_finish(&sl[i].s, &sl[i].rec->r);
		rec_done(sl[i].rec);
		sl[i].rec = NULL;
		sl[i].next_ms = kit_now_ms() + PACE_MS;
	}
	return busy;
}

static bool slot_idle(const struct slot *sl)
{
	return sl->rec == NULL;
}

static bool markers_exist(const struct rec *const xs[], int n)
{
	for (int i = 0; i < n; i++)
		if (!kit_file_exists(xs[i]->marker))
			return false;
	return true;
}

static bool is_promoted(void)
{
	char *v = kit_sql_value(db_s, "SELECT pg_is_in_recovery()");
	bool done = v != NULL && strcmp(v, "f") == 0;

	free(v);
	return done;
}

/* What clients see of a primary whose machine froze, or whose packets are dropped: its socket
 * takes connections into the backlog and nothing ever answers. The socket stays open until
 * the test process ends. */
static void silent_listener(const struct th_pg *pg)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_lt(
	    snprintf(a.sun_path, sizeof(a.sun_path), "%s/.s.PGSQL.%d", pg->sockdir, pg->port),
	    (int)sizeof(a.sun_path));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 1024), 0);
}

static int count_in(const char *path, const char *needle)
{
	char *s = kit_file_read(path, NULL);
	int n = 0;

	for (const char *p = s; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	free(s);
	return n;
}

/* ------------------------------------------------------------------ the checks */

static const char *kind_name(enum rec_kind k)
{
	switch (k) {
	case REC_LOAD:
		return "load";
	case REC_GATED:
		return "gated";
	case REC_PROBE:
		return "probe";
	default:
		abort();
	}
}

/* A completed exec: the whole stream, the exit frame last with exit_code 0, its command ran,
 * and its row is final in the promoted database with the same exec_id. */
static void check_completed(const struct rec *x)
{
	char want[160], id[80], *v;
	struct kit_frames f;

	ck_assert_msg(x->r.complete, "%s %s (broker %d): 200 but the stream broke: %s; %s",
	              kind_name(x->kind), x->rid, x->broker, x->r.error, x->r.body);
	sv_stream(&x->r, &f);
	ck_assert_msg(json_object_get(sv_last(&f), "exit_code") != NULL &&
	                  sv_int(sv_last(&f), "exit_code") == 0,
	              "%s %s: last frame %s", kind_name(x->kind), x->rid, x->r.body);
	ck_assert_msg(f.out != NULL && strcmp(f.out, "ok\n") == 0, "%s %s: stdout \"%s\"",
	              kind_name(x->kind), x->rid, f.out ? f.out : "");
	kit_frames_free(&f);
	ck_assert_msg(kit_file_exists(x->marker), "%s %s completed, but its command never ran",
	              kind_name(x->kind), x->rid);
	ck_assert_ptr_nonnull(kit_header(&x->r, "X-Exec-Id", id, sizeof(id)));
	v = sv_row(db_s, x->rid,
	           "status || ' ' || coalesce(exit_code::text, '-') || ' ' || exec_id");
	snprintf(want, sizeof(want), "exited 0 %s", id);
	ck_assert_msg(strcmp(v, want) == 0,
	              "%s %s completed (sent at %lld ms, done at %lld ms; the primary stopped at "
	              "%lld ms) but its row in the promoted database is \"%s\", want \"%s\"",
	              kind_name(x->kind), x->rid, x->sent_ms - t0, x->done_ms - t0, t_stop - t0, v,
	              want);
	free(v);
}

/* A refused exec: 503 audit_unavailable, its command never started, and its row absent or,
 * when the insert's fate was unknown, completed as not started. */
static void check_refused(const struct rec *x)
{
	json_t *o = sv_json(&x->r);
	const char *code = sv_str(o, "error.code");
	char *v;

	ck_assert_msg(code != NULL && strcmp(code, "audit_unavailable") == 0, "%s %s: 503 %s",
	              kind_name(x->kind), x->rid, x->r.body);
	json_decref(o);
	ck_assert_msg(!kit_file_exists(x->marker), "%s %s was refused 503, but its command ran",
	              kind_name(x->kind), x->rid);
	if (sv_rows(db_s, x->rid) == 0)
		return;
	v = sv_row(db_s, x->rid, "status || ' ' || coalesce(error_code, '-')");
	ck_assert_msg(strcmp(v, "failed_to_start audit_unavailable") == 0,
	              "%s %s was refused 503, but its row says \"%s\"", kind_name(x->kind), x->rid,
	              v);
	free(v);
}

/* exec-broker audit verify on the promoted database: clean (exit 0), every final row a link
 * or waiting for one. A completion whose commit went through but whose answer was lost with
 * the primary is retried, finds the row final already, and leaves the link to the next seal
 * after SEAL_STALE_S (any broker's); the brokers are gone before that. Returns how many
 * rows wait. */
static long long check_chain(void)
{
	static const char *const args[] = {"audit", "verify", NULL};
	long long links = tu_query_int(db_s, "SELECT count(*) FROM exec_audit "
	                                     "WHERE status <> 'running' AND NOT seal_pending");
	long long waiting = tu_query_int(db_s, "SELECT count(*) FROM exec_audit "
	                                       "WHERE status <> 'running' AND seal_pending");
	char *head = tu_query(db_s, "SELECT seq || ':' || encode(hash, 'hex') "
	                            "FROM exec_audit_chain_head");
	char want[300];
	struct tu_run r;

	tu_broker(&r, db_s, NULL, args);
	if (waiting > 0)
		snprintf(want, sizeof(want),
		         "ok: %lld links, head %s; %lld finished rows waiting for their link\n",
		         links, head, waiting);
	else
		snprintf(want, sizeof(want), "ok: %lld links, head %s\n", links, head);
	ck_assert_msg(r.exit_code == 0 && strcmp(r.out, want) == 0,
	              "audit verify: exit %d: %.600s%.600s (want \"%s\")", r.exit_code, r.out,
	              r.err, want);
	tu_run_free(&r);
	free(head);
	return waiting;
}

/* ------------------------------------------------------------------ the test */

enum phase {
	PH_WARMUP,    /* load on the primary */
	PH_GATED,     /* a gated exec started on each broker, waiting for their commands */
	PH_GAP,       /* the primary stopped, the standby not yet promoted */
	PH_PROMOTING, /* pg_ctl promote sent, waiting for the standby to leave recovery */
	PH_AFTER,     /* promoted: waiting for both brokers to run execs again, then a while */
	PH_DRAIN,     /* no new requests */
};

/* How the primary goes: stopped, its socket gone (connections refused at once); or stopped
 * with a silent listener left on its socket (each connection waits out connect_timeout, which
 * the brokers must give each host of the list, as libpq's own connect does). */
static const char *const variants[] = {"refused", "silent"};

/* The issue's run: a primary and a synchronous standby, the primary stopped mid-load, the
 * standby promoted; brokers reconnect by themselves, execs during the switch fail closed
 * or complete, and no completed row is lost. */
START_TEST(failover_under_load_fails_closed_and_loses_no_completed_row)
{
	struct slot sl[NSLOTS];
	const struct rec *gx[NBROKERS] = {NULL};
	const char *promote[] = {"promote", "-W", "-D", S.datadir, NULL};
	char gate[200], dir[32];
	long long t_after = 0, t_asked = 0, now;
	enum phase ph = PH_WARMUP;
	int n200 = 0, n503 = 0, spanned = 0;
	long long waiting;
	pid_t pids[NBROKERS];
	bool busy;

	/* The state of an earlier run of the loop, when not forked. */
	memset(recs, 0, sizeof(recs));
	nrecs = 0;
	t0 = t_stop = t_promote = t_promoted = 0;
	memset(ok_before, 0, sizeof(ok_before));
	memset(back, 0, sizeof(back));
	memset(sl, 0, sizeof(sl));
	ck_assert_msg(clusters_setup(_i) == 0, "the primary and its standby could not be set up");
	snprintf(dir, sizeof(dir), "markers%d", _i);
	ck_assert_int_eq(th_fmt(markers, sizeof(markers), "%s/%s", th.basedir, dir), 0);
	ck_assert_int_eq(th_make_dir(markers, 01777), 0);
	ck_assert_int_eq(th_fmt(gate, sizeof(gate), "%s/gate", markers), 0);
	for (int b = 0; b < NBROKERS; b++) {
		char name[32];
		snprintf(name, sizeof(name), "eb-fo%d-%d", _i, b + 1);
		ck_assert_msg(kit_broker_start(&B[b], db_url, name, NULL) == 0,
		              "broker %s did not start on %s", name, db_url);
		pids[b] = B[b].pid;
	}

	t0 = kit_now_ms();
	for (;;) {
		now = kit_now_ms();
		if (ph != PH_DRAIN && nrecs < MAX_RECS - NSLOTS)
			for (int i = 0; i < NLOAD; i++)
				if (slot_idle(&sl[i]) && now >= sl[i].next_ms)
					rec_send(&sl[i], REC_LOAD, i % NBROKERS,
					         i % 2 ? "0.3" : "0");
		busy = slots_step(sl, 20);
		now = kit_now_ms();
		switch (ph) {
		case PH_WARMUP:
			ck_assert_msg(now - t0 < KIT_WAIT_MS,
			              "no steady load on the primary after %d ms: %d and %d execs",
			              KIT_WAIT_MS, ok_before[0], ok_before[1]);
			if (now - t0 < WARMUP_MS || ok_before[0] < 5 || ok_before[1] < 5)
				break;
			for (int b = 0; b < NBROKERS; b++) {
				rec_send(&sl[SLOT_GATED(b)], REC_GATED, b, gate);
				gx[b] = sl[SLOT_GATED(b)].rec;
			}
			ph = PH_GATED;
			break;
		case PH_GATED:
			/* Started means its 'running' row was committed, on both clusters. */
			ck_assert_msg(now - t0 < 2 * KIT_WAIT_MS,
			              "the gated commands did not start");
			if (!markers_exist(gx, NBROKERS))
				break;
			ck_assert_int_eq(th_pg_stop_immediate(&P), 0);
			if (_i == 1)
				silent_listener(&P);
			t_stop = kit_now_ms();
			for (int b = 0; b < NBROKERS; b++)
				rec_send(&sl[SLOT_PROBE(b)], REC_PROBE, b, "0");
			ph = PH_GAP;
			break;
		case PH_GAP:
			if (now - t_stop >= GATE_OPEN_MS && !kit_file_exists(gate))
				sv_touch(gate);
			if (now - t_stop < GAP_MS)
				break;
			ck_assert_int_eq(th_pg_tool("pg_ctl", promote, NULL), 0);
			t_promote = kit_now_ms();
			ph = PH_PROMOTING;
			break;
		case PH_PROMOTING:
			ck_assert_msg(now - t_promote < PROMOTE_MS,
			              "the standby was not promoted within %d ms", PROMOTE_MS);
			if (now - t_asked < 100)
				break;
			t_asked = now;
			if (!is_promoted())
				break;
			t_promoted = kit_now_ms();
			ph = PH_AFTER;
			break;
		case PH_AFTER:
			for (int b = 0; b < NBROKERS; b++)
				ck_assert_msg(
				    back[b] > 0 || now - t_promoted <= RECONNECT_MS,
				    "broker %s ran no exec sent after the promotion within "
				    "%d ms",
				    B[b].instance, RECONNECT_MS);
			if (back[0] > 0 && back[1] > 0 && t_after == 0)
				t_after = now;
			if (t_after > 0 && now - t_after >= AFTER_MS)
				ph = PH_DRAIN;
			break;
		case PH_DRAIN:
			break;
		default:
			abort();
		}
		if (ph == PH_DRAIN && !busy)
			break;
		ck_assert_msg(now - t0 < 150000, "the load did not end");
	}

	/* The brokers came back by themselves (above): the same processes, started once. */
	for (int b = 0; b < NBROKERS; b++) {
		ck_assert_msg(B[b].pid == pids[b] && kit_pid_alive(B[b].pid),
		              "broker %s is not the process started", B[b].instance);
		ck_assert_int_eq(count_in(B[b].log, "msg=listening"), 1);
	}
	ck_assert_int_eq(kit_broker_stop(&B[0]), 0);
	ck_assert_int_eq(kit_broker_stop(&B[1]), 0);

	/* Every request: completed with its row, or refused with nothing run. */
	for (int i = 0; i < nrecs; i++) {
		const struct rec *x = &recs[i];
		if (x->r.status == 200) {
			check_completed(x);
			n200++;
			spanned += x->sent_ms < t_stop && x->done_ms > t_promoted;
		} else if (x->r.status == 503) {
			check_refused(x);
			n503++;
		} else {
			ck_abort_msg(
			    "%s %s (broker %d, sent at %lld ms, done at %lld ms): %d %s %s",
			    kind_name(x->kind), x->rid, x->broker, x->sent_ms - t0, x->done_ms - t0,
			    x->r.status, x->r.error, x->r.body);
		}
	}
	/* The switch was met: a command that ended while there was no primary completed once
	 * its row could be final (after the promotion), and execs sent with no primary were
	 * refused. */
	for (int b = 0; b < NBROKERS; b++) {
		ck_assert_msg(gx[b]->r.status == 200 && gx[b]->done_ms > t_promoted,
		              "gated exec %s: %d, done %lld ms after the promotion", gx[b]->rid,
		              gx[b]->r.status, gx[b]->done_ms - t_promoted);
	}
	for (int i = 0; i < nrecs; i++)
		if (recs[i].kind == REC_PROBE)
			ck_assert_msg(recs[i].r.status == 503 && recs[i].done_ms < t_promote,
			              "probe %s sent with no primary: %d after %lld ms",
			              recs[i].rid, recs[i].r.status,
			              recs[i].done_ms - recs[i].sent_ms);
	ck_assert_int_eq(tu_query_int(db_s, "SELECT count(*) FROM exec_audit "
	                                    "WHERE status = 'exited'"),
	                 n200);
	ck_assert_int_eq(tu_query_int(db_s, "SELECT count(*) FROM exec_audit "
	                                    "WHERE status = 'running'"),
	                 0);
	ck_assert_int_eq(tu_query_int(db_s, "SELECT count(*) FROM exec_audit WHERE status NOT IN "
	                                    "('exited', 'failed_to_start')"),
	                 0);
	waiting = check_chain();
	fprintf(
	    stderr,
	    "failover (%s primary): %d execs: %d completed (%d across the switch), %d refused 503; "
	    "primary stopped at %lld ms, promoted %lld ms later; brokers ran execs again "
	    "%lld and %lld ms after the promotion; %lld rows waiting for their link\n",
	    variants[_i], nrecs, n200, spanned, n503, t_stop - t0, t_promoted - t_stop,
	    back[0] - t_promoted, back[1] - t_promoted, waiting);
	ck_assert_int_eq(th_pg_stop(&S), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("failover");
	int failed;

	if (th_setup(TH_SSHD) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	SV_ADD_LOOP(s, failover_under_load_fails_closed_and_loses_no_completed_row,
	            sizeof(variants) / sizeof(variants[0]), 180);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
