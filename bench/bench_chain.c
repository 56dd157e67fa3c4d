/* bench/bench_chain.c: how the audit hash chain scales with the execs that finish at once.
 * pgbench replays the broker's own audit statements (audit/writer.c, with the parameters its
 * functions build) against the harness's PostgreSQL, fsync on, at 1, 8 and 64 clients, one
 * transaction per exec: the statement that authorizes and inserts the running row, then the
 * completion. Three ways, in alternating turns: every row linked at once under the chain
 * head's lock (what migration 0003 did), the broker's statements with three brokers' sealers
 * (threads of this process, as api/seal.c) linking the rows in batches, and no chain at all.
 * Figures only: the exit status is 1 when something did not work (pgbench failed, rows
 * missing or left unlinked, `exec-broker audit verify` not clean), never for timing. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "api/authz.h"
#include "api/seal.h"
#include "audit/writer.h"
#include "bench/benchutil.h"
#include "common/scopes.h"
#include "config/config.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"

/* The most clients of a run; each has an org of its own (a workspace, an org token). */
#define NCLIENTS_MAX 64
#define NCOUNTS      3
/* Brokers simulated: client i's rows are broker (i mod NBROKERS)'s, each broker a sealer. */
#define NBROKERS 3
/* org_max_concurrent_execs of every org: the limit is checked, never reached. */
#define ORG_LIMIT 100000
/* api/seal.c's SEAL_DELAY_MS: the first finished row waits this long for others to join. */
#define SEAL_DELAY_MS 20
#define INSTANCE      "bench-chain-"
/* Stand-ins for the values that change with every exec, found among the parameters that
 * audit_authz_begin_params and audit_end_params build, and replaced by fresh ones. */
#define EXEC_SENTINEL    "00000000-0000-4000-8000-0000000c4a1e"
#define REQUEST_SENTINEL "bench-chain-request-id"
#define DEFAULT_ROUNDS   3
#define MAX_ROUNDS       16
#define DEFAULT_SECONDS  4
#define MAX_SECONDS      30 /* a pgbench run must end within kit_run_timeout_ms */
#define WARMUP_SECONDS   2
/* After the execs, the sealers have this long to link what waits; then it is a failure. */
#define DRAIN_MAX_MS 60000
/* pg_stat_activity is sampled this often during a run, for who waits on a row lock. */
#define SAMPLE_MS  20
#define SEALER_APP "bench-chain-sealer"

static const int client_counts[NCOUNTS] = {1, 8, 64};

enum variant { V_BEFORE, V_AFTER, V_NOCHAIN, V_COUNT };

static const char *const variant_names[V_COUNT] = {"before", "after", "no chain"};

/* The statements of one exec as pgbench reports their latencies (-r): a key found in the
 * command's text. */
enum xstmt { XS_IDS, XS_BEGIN, XS_END, XS_COUNT };
static const char *const xstmt_keys[XS_COUNT] = {"gen_random_uuid()", "WITH t AS",
                                                 "UPDATE exec_audit"};
static const char *const xstmt_names[XS_COUNT] = {"ids", "authz+begin", "end"};

/* One of the broker's statements as pgbench runs it: $n becomes the pgbench variable
 * var[n-1], or the word NULL where the broker sends a null (a pgbench variable is text: one
 * that holds NULL is sent as the string "NULL"). */
struct replay {
	const char *sql;
	int nparams;
	char var[AUDIT_AUTHZ_BEGIN_NPARAMS][16]; /* "" for a null */
	bool column[AUDIT_AUTHZ_BEGIN_NPARAMS];  /* from the clients' table (else made per exec) */
};

/* What pgbench printed of one run. */
struct pgb_report {
	long long xacts, failed;
	double tps;
	double lat_ms[XS_COUNT]; /* per statement, -1 when not found */
};

/* One way at one client count, summed over the rounds. */
struct cell {
	int runs;
	double tps[MAX_ROUNDS]; /* each round's */
	double tps_sum;
	long long xacts;
	double lat_sum[XS_COUNT];
	/* Sampled every SAMPLE_MS: pgbench's backends and the sealers waiting on a row lock
	 * (the chain head's: the only row two execs share), summed over the samples. */
	long long samples, exec_waiting, sealers_waiting;
	/* "after": the sealers' */
	double run_s;          /* the execs' seconds (wall) */
	long long calls, rows; /* seal statements, and the rows they linked */
	long long max_batch;   /* the most rows one statement linked */
	double seal_ms;        /* the seal statements' latencies, summed */
	double lookup_ms;      /* the lookups of the ids, summed */
	long long lookups;
	long long rows_in_run; /* rows linked while the execs ran */
	long long backlog_sum; /* rows waiting when the execs ended */
	double drain_ms_sum;   /* from the execs' end until nothing waited */
};

/* A simulated broker's sealer: a thread and its connection. */
struct sealer {
	pthread_t t;
	bool started;
	PGconn *c;
	char instance[32];
	struct sealers *all;
	long long calls, rows, max_batch, lookups;
	double seal_ms, lookup_ms;
	char error[300];
};

struct sealers {
	struct sealer s[NBROKERS];
	atomic_bool drain; /* the execs are over: stop once nothing waits */
	atomic_bool quit;
	long long drain_deadline_ms;
};

/* The thread that samples pg_stat_activity during a run. */
struct sampler {
	pthread_t t;
	bool started;
	PGconn *c;
	atomic_bool stop;
	long long samples, exec_waiting, sealers_waiting;
	char error[300];
};

struct bench {
	char db[512];
	PGconn *c; /* checks and heartbeats */
	struct chain_switch sw;
	struct replay begin, end;
	char script[V_COUNT][300];
	int rounds, seconds;
	int dead_s;
	struct cell cell[NCOUNTS][V_COUNT];
	bool verified;
	char verify_line[200];
};

/* ------------------------------------------------------------------ SQL helpers */

/* The first value of sql as a number, or -1 (a problem recorded). */
static long long sql_ll(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long long v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		bench_problem("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

static int sql_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int rc =
	    PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;

	if (rc != 0)
		bench_problem("%.120s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

/* Every simulated broker is alive (audit_heartbeat_sql), so that the org check counts
 * their running rows as a live broker's. */
static int heartbeat(struct bench *b)
{
	char inst[32], secs[16];
	const char *p[2] = {inst, secs};
	int rc = 0;

	snprintf(secs, sizeof(secs), "%d", b->dead_s);
	for (int k = 0; k < NBROKERS && rc == 0; k++) {
		PGresult *r;
		snprintf(inst, sizeof(inst), INSTANCE "%d", k);
		r = PQexecParams(b->c, audit_heartbeat_sql, 2, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			bench_problem("heartbeat: %s", PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

/* ------------------------------------------------------------------ the scripts */

/* Names the pgbench variable of each parameter of a statement, from the parameters the
 * writer built for one client (the first: names; the others must agree on the nulls). */
static int replay_map(struct replay *rp, const char *const p[], char prefix, bool first)
{
	for (int k = 0; k < rp->nparams; k++) {
		char v[16] = ""; /* a null: the word NULL in the text */
		bool column = false;
		if (p[k] == NULL) {
			/* v stays "" */
		} else if (strcmp(p[k], EXEC_SENTINEL) == 0) {
			snprintf(v, sizeof(v), "exec_id");
		} else if (strcmp(p[k], REQUEST_SENTINEL) == 0) {
			snprintf(v, sizeof(v), "request_id");
		} else {
			snprintf(v, sizeof(v), "%c%d", prefix, k + 1);
			column = true;
		}
		if (first) {
			memcpy(rp->var[k], v, sizeof(v));
			rp->column[k] = column;
		} else if (strcmp(rp->var[k], v) != 0) {
			bench_problem(
			    "parameter $%d of a statement is %s for one client and %s for "
			    "another",
			    k + 1, rp->var[k][0] ? rp->var[k] : "null", v[0] ? v : "null");
			return -1;
		}
	}
	return 0;
}

/* rp's SQL with every $n replaced by :var, or NULL; malloc'd. */
static char *replay_sql(const struct replay *rp)
{
	size_t cap = strlen(rp->sql) * 2 + 64, n = 0;
	char *out = malloc(cap);
	const char *s = rp->sql;

	if (out == NULL)
		return NULL;
	while (*s != '\0') {
		if (*s == '$' && s[1] >= '1' && s[1] <= '9') {
			char *end;
			long k = strtol(s + 1, &end, 10);
			if (k < 1 || k > rp->nparams) {
				free(out);
				return NULL;
			}
			n += snprintf(out + n, cap - n, rp->var[k - 1][0] ? ":%s" : "NULL",
			              rp->var[k - 1]);
			s = end;
		} else {
			out[n++] = *s++;
		}
		if (n + 32 > cap) {
			free(out);
			return NULL;
		}
	}
	out[n] = '\0';
	return out;
}

/* The clients' table: one row per pgbench client (:client_id) with the parameters that the
 * writer built for it and that do not change from one exec to the next. */
static int clients_table(struct bench *b)
{
	char sql[2048];
	size_t n = 0;

	n += snprintf(sql + n, sizeof(sql) - n,
	              "CREATE TABLE bench_chain_client "
	              "(client integer PRIMARY KEY");
	for (int k = 0; k < b->begin.nparams; k++)
		if (b->begin.column[k])
			n += snprintf(sql + n, sizeof(sql) - n, ", %s text", b->begin.var[k]);
	for (int k = 0; k < b->end.nparams; k++)
		if (b->end.column[k])
			n += snprintf(sql + n, sizeof(sql) - n, ", %s text", b->end.var[k]);
	snprintf(sql + n, sizeof(sql) - n, ")");
	return sql_ok(b->c, sql);
}

static int clients_insert(struct bench *b, int client, const char *const bp[],
                          const char *const ep[])
{
	const char *v[1 + AUDIT_AUTHZ_BEGIN_NPARAMS + AUDIT_END_NPARAMS];
	char sql[1024], num[16];
	size_t n = 0;
	int nv = 0, rc;
	PGresult *r;

	snprintf(num, sizeof(num), "%d", client);
	v[nv++] = num;
	for (int k = 0; k < b->begin.nparams; k++)
		if (b->begin.column[k])
			v[nv++] = bp[k];
	for (int k = 0; k < b->end.nparams; k++)
		if (b->end.column[k])
			v[nv++] = ep[k];
	n += snprintf(sql + n, sizeof(sql) - n, "INSERT INTO bench_chain_client VALUES ($1");
	for (int k = 2; k <= nv; k++)
		n += snprintf(sql + n, sizeof(sql) - n, ", $%d", k);
	snprintf(sql + n, sizeof(sql) - n, ")");
	r = PQexecParams(b->c, sql, nv, NULL, v, NULL, NULL, 0);
	rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
	if (rc != 0)
		bench_problem("clients' table: %s", PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

/* The workspaces, org tokens and parameters of the NCLIENTS_MAX clients, made the way an
 * operator and the broker make them: the CLI, then the writer's own functions with the
 * broker's default settings. */
static int clients_setup(struct bench *b)
{
	static const struct eb_bytes argv_true[] = {{"true", 4}};
	static char *const no_env[] = {NULL};
	const struct config_flags flags = {.config_path = "/dev/null"};
	struct config cfg;
	char err[256];
	int rc = -1;

	if (config_load(&cfg, &flags, no_env, err, sizeof(err)) != 0) {
		bench_problem("the default settings: %s", err);
		return -1;
	}
	b->dead_s = audit_dead_after_s(cfg.broker_heartbeat_s);
	b->begin =
	    (struct replay){.sql = audit_authz_begin_sql, .nparams = AUDIT_AUTHZ_BEGIN_NPARAMS};
	b->end = (struct replay){.sql = audit_end_sql, .nparams = AUDIT_END_NPARAMS};
	for (int i = 0; i < NCLIENTS_MAX; i++) {
		char ws[32], org[32], inst[32], tok[64], auth[80], hash[TOKEN_HASH_HEX_LEN + 1],
		    actor[AUTHZ_ACTOR_LEN + 1];
		const char *targs[] = {"token", "create", "--org", org, "--scope", "exec", NULL};
		const char *bp[AUDIT_AUTHZ_BEGIN_NPARAMS], *ep[AUDIT_END_NPARAMS];
		char *bstore = NULL, *estore = NULL;
		struct audit_begin ab = {0};
		struct audit_end ae = {0};
		int bad;

		snprintf(ws, sizeof(ws), "ws-chain-%02d", i);
		snprintf(org, sizeof(org), "org-chain-%02d", i);
		snprintf(inst, sizeof(inst), INSTANCE "%d", i % NBROKERS);
		if (kit_ws_add(b->db, &(struct kit_ws){.id = ws,
		                                       .org = org,
		                                       .port = 22,
		                                       .host_key_fp = KIT_WRONG_FP,
		                                       .state = "running"}) != 0 ||
		    kit_cli_token(b->db, targs, tok, sizeof(tok)) != 0) {
			bench_problem("client %d: the workspace or its token (above)", i);
			goto out;
		}
		snprintf(auth, sizeof(auth), "Bearer %s", tok);
		if (authz_bearer(auth, hash, actor) != NULL) {
			bench_problem("token create printed %s, not a token", tok);
			goto out;
		}
		/* An attached exec of `true` as a client sends it: the default timeout, no
		 * env, no stdin, no cwd. */
		snprintf(ab.exec_id, sizeof(ab.exec_id), "%s", EXEC_SENTINEL);
		ab.request_id = REQUEST_SENTINEL;
		ab.workspace_id = ws;
		ab.actor = actor;
		ab.argv = argv_true;
		ab.argc = 1;
		ab.client_addr = "127.0.0.1";
		ab.timeout_s = cfg.exec_timeout_default_s;
		ab.broker_instance = inst;
		ab.max_detached = cfg.workspace_max_detached_execs;
		ab.max_org_execs = ORG_LIMIT;
		ab.dead_after_s = b->dead_s;
		ae.exec_id = EXEC_SENTINEL;
		ae.status = "exited";
		ae.duration_ms = 3;
		bad = audit_authz_begin_params(&ab, hash, cfg.min_exec_tier, true,
		                               scope_name(SCOPE_EXEC), bp, &bstore) != 0 ||
		      audit_end_params(&ae, ep, &estore) != 0;
		if (bad)
			bench_problem("out of memory");
		else
			bad = replay_map(&b->begin, bp, 'b', i == 0) != 0 ||
			      replay_map(&b->end, ep, 'e', i == 0) != 0 ||
			      (i == 0 && clients_table(b) != 0) ||
			      clients_insert(b, i, bp, ep) != 0;
		free(bstore);
		free(estore);
		if (bad)
			goto out;
	}
	rc = 0;
out:
	config_free(&cfg);
	return rc;
}

/* The completion as migration 0003 made it: the same statement, but for seal_pending =
 * false, with which the link trigger links the row at once, under the head's lock. */
static char *end_now_sql(void)
{
	static const char pending[] = "seal_pending = true";
	const char *at = strstr(audit_end_sql, pending);
	char *s;

	if (at == NULL || strstr(at + 1, pending) != NULL) {
		bench_problem("audit_end_sql does not set \"%s\" exactly once", pending);
		return NULL;
	}
	if (asprintf(&s, "%.*sseal_pending = false%s", (int)(at - audit_end_sql), audit_end_sql,
	             at + strlen(pending)) < 0)
		return NULL;
	return s;
}

/* The scripts, one per way: what changes with each exec, its begin, its end. */
static int scripts_write(struct bench *b)
{
	static const char *const names[V_COUNT] = {"chain-before.sql", "chain-after.sql",
	                                           "chain-nochain.sql"};
	char *begin = replay_sql(&b->begin), *end = replay_sql(&b->end), *now_sql = end_now_sql(),
	     *end_now = NULL, *ids = NULL, *text = NULL;
	struct replay now = b->end;
	size_t n = 0, cap = 0;
	FILE *f;
	int rc = -1;

	now.sql = now_sql;
	if (begin == NULL || end == NULL || now_sql == NULL ||
	    (end_now = replay_sql(&now)) == NULL) {
		bench_problem("the statements could not be turned into pgbench's");
		goto out;
	}
	/* One round trip before each exec for what changes with each: a fresh exec id and
	 * request id (the broker makes both in memory), and the client's own values. */
	if ((f = open_memstream(&ids, &n)) == NULL)
		goto out;
	fprintf(f, "SELECT gen_random_uuid() AS exec_id, gen_random_uuid() AS request_id");
	for (int k = 0; k < b->begin.nparams; k++)
		if (b->begin.column[k])
			fprintf(f, ", %s", b->begin.var[k]);
	for (int k = 0; k < b->end.nparams; k++)
		if (b->end.column[k])
			fprintf(f, ", %s", b->end.var[k]);
	fprintf(f, " FROM bench_chain_client WHERE client = :client_id \\gset\n");
	fclose(f);
	for (enum variant v = 0; v < V_COUNT; v++) {
		free(text);
		text = NULL;
		if ((f = open_memstream(&text, &cap)) == NULL)
			goto out;
		fprintf(f, "%s%s;\n%s;\n", ids, begin, v == V_BEFORE ? end_now : end);
		fclose(f);
		snprintf(b->script[v], sizeof(b->script[v]), "%s/%s", th.basedir, names[v]);
		if (kit_file_write(b->script[v], text, 0644) != 0)
			goto out;
	}
	rc = 0;
out:
	free(begin);
	free(end);
	free(now_sql);
	free(end_now);
	free(ids);
	free(text);
	return rc;
}

/* ------------------------------------------------------------------ pgbench */

/* pgbench's summary and the mean latency of each statement of the script (pgbench -r: the
 * first number on the line of the command whose text contains xstmt_keys[i]). */
static int pgb_parse(const char *out, struct pgb_report *r)
{
	static const char processed[] = "number of transactions actually processed: ";
	static const char failed[] = "number of failed transactions: ";
	const char *p;

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < XS_COUNT; i++)
		r->lat_ms[i] = -1;
	if ((p = strstr(out, processed)) == NULL ||
	    sscanf(p + strlen(processed), "%lld", &r->xacts) != 1 ||
	    (p = strstr(out, "\ntps = ")) == NULL || sscanf(p + 7, "%lf", &r->tps) != 1)
		return -1;
	if ((p = strstr(out, failed)) != NULL)
		sscanf(p + strlen(failed), "%lld", &r->failed);
	p = strstr(out, "statement latencies in milliseconds");
	while (p != NULL && (p = strchr(p, '\n')) != NULL) {
		const char *line = ++p, *eol = strchr(line, '\n');
		size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
		for (int i = 0; i < XS_COUNT; i++)
			if (r->lat_ms[i] < 0 &&
			    memmem(line, len, xstmt_keys[i], strlen(xstmt_keys[i])))
				sscanf(line, "%lf", &r->lat_ms[i]);
	}
	return 0;
}

/* One run of an exec script: pgbench with clients connections (on at most 2 threads: the
 * machine this was written for has 2 cores) for seconds. 0 and the report, or -1 (a problem
 * recorded). */
static int execs_run(struct bench *b, const char *script, int clients, int seconds,
                     struct pgb_report *r)
{
	char nc[16], nj[16], ns[16], *out = NULL, *err = NULL, why[64];
	const char *argv[] = {"pgbench", "-n",       /* no pgbench tables to vacuum */
	                      "-M",      "prepared", /* as the broker: statements prepared once */
	                      "-r",      "-c",       nc,     "-j",  nj,  "-T",
	                      ns,        "-f",       script, b->db, NULL};
	int st = 0, rc = -1;

	snprintf(nc, sizeof(nc), "%d", clients);
	snprintf(nj, sizeof(nj), "%d", clients > 1 ? 2 : 1);
	snprintf(ns, sizeof(ns), "%d", seconds);
	if (kit_run(argv, NULL, NULL, &out, &err, &st) != 0)
		goto out;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || pgb_parse(out, r) != 0) {
		bench_problem("pgbench -c %d -f %s: %s: %.300s", clients, script,
		              kit_status_str(st, why, sizeof(why)), err != NULL ? err : "");
		goto out;
	}
	if (r->failed > 0 || r->xacts == 0) {
		bench_problem("pgbench -c %d -f %s: %lld transactions, %lld failed: %.300s",
		              clients, script, r->xacts, r->failed, err != NULL ? err : "");
		goto out;
	}
	rc = 0;
out:
	free(out);
	free(err);
	return rc;
}

/* ------------------------------------------------------------------ the sealers */

/* What a broker's sealer knows from memory, the ids of the rows it finished, is looked up
 * here (the execs run in pgbench): its rows waiting, oldest first, at most SEAL_BATCH, as
 * the uuid[] literal the broker sends. */
static const char sealer_lookup_sql[] =
    "SELECT coalesce(array_agg(exec_id ORDER BY finished_at, exec_id)::text, '{}'), count(*) "
    "FROM (SELECT exec_id, finished_at FROM exec_audit WHERE seal_pending "
    "AND broker_instance = $1 ORDER BY finished_at, exec_id LIMIT $2::integer) p";

static void sealer_fail(struct sealer *s, const char *what, const PGresult *r)
{
	snprintf(s->error, sizeof(s->error), "sealer %s: %s: %s", s->instance, what,
	         r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(s->c));
	atomic_store(&s->all->quit, true);
}

/* api/seal.c's loop, one statement in flight: SEAL_DELAY_MS after the last statement, the
 * rows that wait are linked by audit_seal_sql (prepared, as pgasync prepares it), with the
 * broker's stale age; nothing is sent when nothing waits. Once the execs are over, it
 * stops when nothing waits. */
static void *sealer_main(void *arg)
{
	struct sealer *s = arg;
	struct sealers *all = s->all;
	char stale[16], batch[16];
	const char *lp[2] = {s->instance, batch}, *sp[AUDIT_SEAL_NPARAMS] = {NULL, stale};
	PGresult *r;

	snprintf(stale, sizeof(stale), "%d", SEAL_STALE_S);
	snprintf(batch, sizeof(batch), "%d", SEAL_BATCH);
	while (!atomic_load(&all->quit)) {
		uint64_t t0;
		long long n;
		double ms;

		kit_sleep_ms(SEAL_DELAY_MS);
		t0 = kit_now_ns();
		r = PQexecPrepared(s->c, "lookup", 2, lp, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
			sealer_fail(s, "lookup", r);
			PQclear(r);
			break;
		}
		s->lookup_ms += bench_ms_since(t0);
		s->lookups++;
		n = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		if (n == 0) {
			PQclear(r);
			if (atomic_load(&all->drain))
				break;
			continue;
		}
		sp[0] = PQgetvalue(r, 0, 0);
		t0 = kit_now_ns();
		{
			PGresult *q =
			    PQexecPrepared(s->c, "seal", AUDIT_SEAL_NPARAMS, sp, NULL, NULL, 0);
			ms = bench_ms_since(t0);
			if (PQresultStatus(q) != PGRES_TUPLES_OK || PQntuples(q) != 1) {
				sealer_fail(s, "audit_seal_sql", q);
				PQclear(q);
				PQclear(r);
				break;
			}
			n = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
			PQclear(q);
		}
		PQclear(r);
		s->calls++;
		s->rows += n;
		s->seal_ms += ms;
		if (n > s->max_batch)
			s->max_batch = n;
		if (atomic_load(&all->drain) && kit_now_ms() > all->drain_deadline_ms) {
			snprintf(s->error, sizeof(s->error),
			         "sealer %s: rows still waited %d ms after the execs", s->instance,
			         DRAIN_MAX_MS);
			break;
		}
	}
	return NULL;
}

/* Connects and prepares the NBROKERS sealers and starts their threads: 0, or -1 (a problem
 * recorded; sealers_join() cleans up what started). */
static int sealers_start(struct bench *b, struct sealers *all)
{
	char ci[700];

	memset(all, 0, sizeof(*all));
	snprintf(ci, sizeof(ci), "%s application_name=" SEALER_APP, b->db);
	for (int k = 0; k < NBROKERS; k++) {
		struct sealer *s = &all->s[k];
		PGresult *r1, *r2;
		int ok;

		s->all = all;
		snprintf(s->instance, sizeof(s->instance), INSTANCE "%d", k);
		s->c = PQconnectdb(ci);
		if (PQstatus(s->c) != CONNECTION_OK) {
			bench_problem("sealer: %s", PQerrorMessage(s->c));
			return -1;
		}
		r1 = PQprepare(s->c, "lookup", sealer_lookup_sql, 0, NULL);
		r2 = PQprepare(s->c, "seal", audit_seal_sql, AUDIT_SEAL_NPARAMS, NULL);
		ok = PQresultStatus(r1) == PGRES_COMMAND_OK &&
		     PQresultStatus(r2) == PGRES_COMMAND_OK;
		if (!ok)
			bench_problem("sealer: prepare: %s%s", PQresultErrorMessage(r1),
			              PQresultErrorMessage(r2));
		PQclear(r1);
		PQclear(r2);
		if (!ok)
			return -1;
	}
	for (int k = 0; k < NBROKERS; k++) {
		if (pthread_create(&all->s[k].t, NULL, sealer_main, &all->s[k]) != 0) {
			bench_problem("sealer: no thread");
			atomic_store(&all->quit, true);
			return -1;
		}
		all->s[k].started = true;
	}
	return 0;
}

/* Lets the sealers link what waits (drain) or stops them (!drain), waits for them and
 * closes their connections. */
static void sealers_join(struct sealers *all, bool drain)
{
	all->drain_deadline_ms = kit_now_ms() + DRAIN_MAX_MS;
	atomic_store(drain ? &all->drain : &all->quit, true);
	for (int k = 0; k < NBROKERS; k++) {
		struct sealer *s = &all->s[k];
		if (s->started)
			pthread_join(s->t, NULL);
		s->started = false;
		if (s->error[0] != '\0')
			bench_problem("%s", s->error);
		if (s->c != NULL)
			PQfinish(s->c);
		s->c = NULL;
	}
}

/* ------------------------------------------------------------------ lock waits */

static void *sampler_main(void *arg)
{
	struct sampler *m = arg;
	static const char sql[] = "SELECT count(*) FILTER (WHERE application_name = 'pgbench'), "
	                          "count(*) FILTER (WHERE application_name = '" SEALER_APP "') "
	                          "FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
	                          "AND wait_event IN ('transactionid', 'tuple')";

	while (!atomic_load(&m->stop)) {
		PGresult *r = PQexec(m->c, sql);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
			snprintf(m->error, sizeof(m->error), "sampler: %s",
			         PQresultErrorMessage(r));
			PQclear(r);
			break;
		}
		m->samples++;
		m->exec_waiting += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		m->sealers_waiting += strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		PQclear(r);
		kit_sleep_ms(SAMPLE_MS);
	}
	return NULL;
}

static int sampler_start(struct bench *b, struct sampler *m)
{
	memset(m, 0, sizeof(*m));
	m->c = PQconnectdb(b->db);
	if (PQstatus(m->c) != CONNECTION_OK) {
		bench_problem("sampler: %s", PQerrorMessage(m->c));
		return -1;
	}
	if (pthread_create(&m->t, NULL, sampler_main, m) != 0) {
		bench_problem("sampler: no thread");
		return -1;
	}
	m->started = true;
	return 0;
}

static void sampler_stop(struct sampler *m)
{
	atomic_store(&m->stop, true);
	if (m->started)
		pthread_join(m->t, NULL);
	if (m->error[0] != '\0')
		bench_problem("%s", m->error);
	PQfinish(m->c);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ one run */

/* Rows of this benchmark's execs matching cond. */
static long long rows_where(struct bench *b, const char *cond)
{
	char sql[300];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE broker_instance LIKE '" INSTANCE "%%' "
	         "AND %s",
	         cond);
	return sql_ll(b->c, sql);
}

static void cell_add_sealers(struct cell *c, const struct sealers *all)
{
	for (int k = 0; k < NBROKERS; k++) {
		const struct sealer *s = &all->s[k];
		c->calls += s->calls;
		c->rows += s->rows;
		c->seal_ms += s->seal_ms;
		c->lookup_ms += s->lookup_ms;
		c->lookups += s->lookups;
		if (s->max_batch > c->max_batch)
			c->max_batch = s->max_batch;
	}
}

/* One turn: way v with clients for seconds, counted in c unless it is NULL (warm-up). Every
 * exec must have left exactly one finished row and none running, and with the chain on every
 * finished row must be linked once the sealers are done. */
static void run_once(struct bench *b, enum variant v, int clients, int seconds, struct cell *c)
{
	struct pgb_report r = {0};
	struct sealers all;
	struct sampler m;
	long long seq0, before, after, backlog = 0, n;
	uint64_t t0, t_end = 0;
	bool ran, sealing = false, sampling;

	if (chain_switch_set(&b->sw, v != V_NOCHAIN) != 0 || heartbeat(b) != 0)
		return;
	seq0 = sql_ll(b->c, "SELECT seq FROM exec_audit_chain_head");
	before = rows_where(b, "status <> 'running'");
	if (v == V_AFTER) {
		sealing = sealers_start(b, &all) == 0;
		if (!sealing) {
			sealers_join(&all, false);
			return;
		}
	}
	sampling = sampler_start(b, &m) == 0;
	t0 = kit_now_ns();
	ran = execs_run(b, b->script[v], clients, seconds, &r) == 0;
	if (sealing) {
		t_end = kit_now_ns();
		backlog = rows_where(b, "seal_pending");
		n = sql_ll(b->c, "SELECT seq FROM exec_audit_chain_head");
		if (c != NULL)
			c->rows_in_run += n - seq0;
	}
	if (sampling && c != NULL) {
		c->samples += m.samples;
		c->exec_waiting += m.exec_waiting;
		c->sealers_waiting += m.sealers_waiting;
	}
	if (sealing) {
		sealers_join(&all, true);
		if (c != NULL) {
			c->drain_ms_sum += bench_ms_since(t_end);
			c->backlog_sum += backlog;
			c->run_s += (double)(t_end - t0) / 1e9;
			cell_add_sealers(c, &all);
		}
		if ((n = rows_where(b, "seal_pending")) != 0)
			bench_problem(
			    "%s, %d clients: %lld rows still wait for their link after the "
			    "sealers' last turn",
			    variant_names[v], clients, n);
	}
	if (sampling)
		sampler_stop(&m);
	if (ran && c != NULL) {
		c->tps[c->runs++] = r.tps;
		c->tps_sum += r.tps;
		c->xacts += r.xacts;
		for (int i = 0; i < XS_COUNT; i++)
			c->lat_sum[i] += r.lat_ms[i];
	}
	/* What was finished without the chain is linked, as a janitor would. */
	if (v == V_NOCHAIN && (chain_switch_set(&b->sw, true) != 0 ||
	                       sql_ok(b->c, "SELECT exec_audit_seal('{}', '0 s')") != 0))
		return;
	after = rows_where(b, "status <> 'running'");
	if (ran && after - before != r.xacts)
		bench_problem("%s, %d clients: pgbench counted %lld execs, the log gained %lld "
		              "finished rows",
		              variant_names[v], clients, r.xacts, after - before);
	if ((n = rows_where(b, "status = 'running'")) != 0)
		bench_problem("%s, %d clients: %lld rows left running", variant_names[v], clients,
		              n);
	if ((n = rows_where(b, "status <> 'running' AND chain_seq IS NULL")) != 0)
		bench_problem("%s, %d clients: %lld finished rows not linked", variant_names[v],
		              clients, n);
}

/* `exec-broker audit verify` over the whole chain: it must link every finished row. */
static void verify(struct bench *b)
{
	static const char *const args[] = {"audit", "verify", NULL};
	long long links = -1, all = sql_ll(b->c, "SELECT count(*) FROM exec_audit "
	                                         "WHERE status <> 'running'");
	char *out = NULL;

	if (kit_cli(b->db, args, &out, NULL) != 0) {
		bench_problem("exec-broker audit verify failed: %.200s", out ? out : "");
		free(out);
		return;
	}
	snprintf(b->verify_line, sizeof(b->verify_line), "%.*s", (int)strcspn(out, "\n"), out);
	if (sscanf(out, "ok: %lld links", &links) != 1 || links != all)
		bench_problem("exec-broker audit verify printed \"%s\"; the log has %lld finished "
		              "rows",
		              b->verify_line, all);
	else
		b->verified = true;
	free(out);
}

/* ------------------------------------------------------------------ the report */

static double mean(double sum, int n)
{
	return n > 0 ? sum / n : 0;
}

static void report(struct bench *b)
{
	printf("\naudit chain scaling: pgbench -M prepared replaying audit/writer.c's statements, "
	       "one transaction = one exec\n(authorize and insert 'running', then complete), "
	       "PostgreSQL with fsync on; %d round%s of %d s per cell, turns alternated\n\n",
	       b->rounds, b->rounds > 1 ? "s" : "", b->seconds);
	printf("  %7s %10s %10s %10s %13s %15s\n", "clients", "before", "after", "no chain",
	       "after/before", "after/no chain");
	for (int ci = 0; ci < NCOUNTS; ci++) {
		struct cell *c = b->cell[ci];
		double t[V_COUNT];
		printf("  %7d", client_counts[ci]);
		for (enum variant v = 0; v < V_COUNT; v++) {
			t[v] = mean(c[v].tps_sum, c[v].runs);
			if (c[v].runs > 0)
				printf(" %10.0f", t[v]);
			else
				printf(" %10s", "broken");
		}
		if (t[V_BEFORE] > 0 && t[V_AFTER] > 0)
			printf(" %12.2fx", t[V_AFTER] / t[V_BEFORE]);
		else
			printf(" %13s", "-");
		if (t[V_NOCHAIN] > 0 && t[V_AFTER] > 0)
			printf(" %14.2fx", t[V_AFTER] / t[V_NOCHAIN]);
		else
			printf(" %15s", "-");
		printf("\n");
	}
	printf("  (execs per second: pgbench's tps without its connection time, mean of the "
	       "rounds)\n\n  each round's:\n");
	for (int ci = 0; ci < NCOUNTS; ci++)
		for (enum variant v = 0; v < V_COUNT; v++) {
			const struct cell *c = &b->cell[ci][v];
			printf("  %7d %-9s", client_counts[ci], variant_names[v]);
			for (int k = 0; k < c->runs; k++)
				printf(" %6.0f", c->tps[k]);
			printf("\n");
		}

	printf("\nper exec: mean latency of each statement in ms (pgbench -r), and backends "
	       "waiting on a row lock\n(pg_stat_activity every %d ms, mean)\n",
	       SAMPLE_MS);
	printf("  %7s %-9s %8s %12s %9s %13s %15s\n", "clients", "way", xstmt_names[XS_IDS],
	       xstmt_names[XS_BEGIN], xstmt_names[XS_END], "execs waiting", "sealers waiting");
	for (int ci = 0; ci < NCOUNTS; ci++)
		for (enum variant v = 0; v < V_COUNT; v++) {
			struct cell *c = &b->cell[ci][v];
			double ns = c->samples > 0 ? (double)c->samples : 1;
			printf("  %7d %-9s %8.3f %12.3f %9.3f %13.2f", client_counts[ci],
			       variant_names[v], mean(c->lat_sum[XS_IDS], c->runs),
			       mean(c->lat_sum[XS_BEGIN], c->runs),
			       mean(c->lat_sum[XS_END], c->runs), c->exec_waiting / ns);
			if (v == V_AFTER)
				printf(" %15.2f\n", c->sealers_waiting / ns);
			else
				printf(" %15s\n", "-");
		}

	printf("\nthe sealers of the \"after\" runs (%d brokers, one statement each in flight, "
	       "%d ms after the last)\n",
	       NBROKERS, SEAL_DELAY_MS);
	printf("  %7s %8s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "clients", "seals/s", "rows/seal",
	       "max rows", "seal ms", "ms/row", "in flight", "linked/s", "backlog", "drain ms",
	       "lookup ms");
	for (int ci = 0; ci < NCOUNTS; ci++) {
		struct cell *c = &b->cell[ci][V_AFTER];
		double s = c->run_s > 0 ? c->run_s : 1, calls = c->calls > 0 ? (double)c->calls : 1;
		double wall_s = c->run_s + c->drain_ms_sum / 1000;
		printf("  %7d %8.1f %9.1f %9lld %9.2f %9.3f %9.2f %9.0f %9.0f %9.0f %9.3f\n",
		       client_counts[ci], c->calls / (wall_s > 0 ? wall_s : 1), c->rows / calls,
		       c->max_batch, c->seal_ms / calls, c->rows > 0 ? c->seal_ms / c->rows : 0,
		       wall_s > 0 ? c->seal_ms / 1000 / wall_s : 0, c->rows_in_run / s,
		       mean((double)c->backlog_sum, c->runs), mean(c->drain_ms_sum, c->runs),
		       c->lookups > 0 ? c->lookup_ms / c->lookups : 0);
	}
	printf(
	    "  seals/s: statements, all brokers, from the execs' start until nothing waited; "
	    "rows/seal: rows each\n  linked; seal ms: its latency, the wait for the chain "
	    "head's lock included; ms/row: seal ms per row;\n  in flight: seal statements "
	    "running or waiting at once, mean (%d: the brokers always wait for each\n  other); "
	    "linked/s: rows linked while the execs ran, per second (keeping up: the execs/s "
	    "above);\n  backlog: rows waiting when the execs ended (mean of the rounds); drain "
	    "ms: until none waited;\n  lookup ms: the sealer's query for its ids, which a broker "
	    "keeps in memory instead\n",
	    NBROKERS);
	printf("\n  %s\n", b->verified ? b->verify_line : "exec-broker audit verify: NOT CLEAN");
}

/* ------------------------------------------------------------------ the run */

static int bench_setup(struct bench *b)
{
	if (kit_db_migrated(b->db, sizeof(b->db)) != 0)
		return -1;
	b->c = PQconnectdb(b->db);
	if (PQstatus(b->c) != CONNECTION_OK) {
		bench_problem("connect: %s", PQerrorMessage(b->c));
		return -1;
	}
	if (clients_setup(b) != 0 || scripts_write(b) != 0 || chain_switch_init(&b->sw, b->db) != 0)
		return -1;
	return 0;
}

int main(void)
{
	static struct bench b;
	uint64_t t_start = kit_now_ns();
	int rc;

	b.rounds = (int)bench_env_count("BENCH_CHAIN_ROUNDS", DEFAULT_ROUNDS);
	b.seconds = (int)bench_env_count("BENCH_CHAIN_SECONDS", DEFAULT_SECONDS);
	if (b.seconds > MAX_SECONDS)
		b.seconds = MAX_SECONDS;
	if (b.rounds > MAX_ROUNDS)
		b.rounds = MAX_ROUNDS;
	if (th_setup(TH_PG | TH_PG_DURABLE) != 0)
		return 1;
	bench_progress("setting up: database, %d orgs with a workspace and a token each "
	               "(broker %s)",
	               NCLIENTS_MAX, kit_broker_bin());
	if (bench_setup(&b) != 0) {
		bench_print_failures(NULL, 0);
		th_teardown();
		return 1;
	}
	bench_progress("warm-up: %d s of each way at 8 clients", WARMUP_SECONDS);
	for (enum variant v = 0; v < V_COUNT; v++)
		run_once(&b, v, 8, WARMUP_SECONDS, NULL);
	bench_progress("%d rounds of %d s per way and client count (1, 8, 64)", b.rounds,
	               b.seconds);
	for (int round = 0; round < b.rounds && bench_problem_count() == 0; round++)
		for (int ci = 0; ci < NCOUNTS; ci++)
			for (int k = 0; k < V_COUNT; k++) {
				/* before, after, no chain; then the other way round */
				enum variant v = (round + ci) % 2 == 0
				                     ? (enum variant)k
				                     : (enum variant)(V_COUNT - 1 - k);
				run_once(&b, v, client_counts[ci], b.seconds, &b.cell[ci][v]);
			}
	bench_progress("exec-broker audit verify over the whole chain");
	verify(&b);
	report(&b);
	chain_switch_free(&b.sw);
	PQfinish(b.c);
	bench_print_failures(NULL, 0);
	rc = bench_problem_count() > 0 ? 1 : 0;
	printf("\nbench_chain: %s in %.0f s\n", rc ? "something broke (above)" : "done",
	       bench_ms_since(t_start) / 1000);
	th_teardown();
	return rc;
}
