/* bench/bench_batch.c: a batch beside the single execs it stands for, through one real broker
 * on a real PostgreSQL (fsync on) and 4 sshds: a batch of `true` over 100 workspaces (25 on
 * each sshd) at max_concurrency 32, POST to its summary, beside 100 single execs of `true`,
 * one per workspace, 32 in flight. Wall time and execs/s of each, as a ratio measured in the
 * same run, over several rounds (the median). Figures only; it never fails on timing. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/benchutil.h"
#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/sql.h"
#include "tests/kit/world.h"

#define NWS      100
#define INFLIGHT 32
#define CONF     "org_max_concurrent_execs = 1000\n"

static struct kit_world W;
static struct kit_broker B;
static char tok[64]; /* org acme: exec, batch */

/* The batch: seconds from the POST to its summary, or -1. */
static double run_batch(void)
{
	static const char body[] =
	    "{\"target\":{\"org\":\"acme\",\"labels\":{\"bench\":\"batch\"}},\"argv\":[\"true\"],"
	    "\"max_concurrency\":32}";
	struct kit_resp r;
	uint64_t t0 = kit_now_ns();
	double s;
	json_t *last;
	const char *nl;

	kit_http(B.port,
	         &(struct kit_req){.path = "/v1/batches",
	                           .token = tok,
	                           .body = body,
	                           .accept = "application/x-ndjson"},
	         &r);
	s = bench_ms_since(t0) / 1000.0;
	if (r.status != 200 || !r.complete || r.body_len < 2) {
		bench_problem("batch: status %d %.200s", r.status, r.body != NULL ? r.body : "");
		kit_resp_free(&r);
		return -1;
	}
	r.body[r.body_len - 1] = '\0'; /* the last '\n' */
	nl = strrchr(r.body, '\n');
	last = json_loads(nl != NULL ? nl + 1 : r.body, 0, NULL);
	if (json_integer_value(json_object_get(last, "succeeded")) != NWS) {
		bench_problem("batch: not every target succeeded: %.300s",
		              nl != NULL ? nl + 1 : "");
		s = -1;
	}
	json_decref(last);
	kit_resp_free(&r);
	return s;
}

/* 100 single execs, one per workspace, INFLIGHT at once: seconds, or -1. */
static double run_singles(void)
{
	struct kit_conn c[INFLIGHT], *pc[INFLIGHT];
	char ws[INFLIGHT][32];
	bool busy[INFLIGHT] = {false};
	size_t next = 0, done = 0;
	uint64_t t0 = kit_now_ns();
	double s = -1;
	bool broken = false;

	for (int i = 0; i < INFLIGHT; i++) {
		kit_conn_init(&c[i], B.port);
		pc[i] = &c[i];
	}
	while (done < NWS && !broken) {
		for (int i = 0; i < INFLIGHT && !broken; i++) {
			if (busy[i] && c[i].state == KIT_CONN_DONE) {
				if (c[i].r.status != 200 || !c[i].r.complete) {
					bench_problem("single exec: status %d", c[i].r.status);
					broken = true;
					break;
				}
				done++;
				busy[i] = false;
			}
			if (!busy[i] && next < NWS) {
				busy[i] = true;
				snprintf(ws[i], sizeof(ws[i]), "ws-bench-%03zu", next++);
				broken =
				    kit_conn_send(&c[i], &(struct kit_req){
				                             .ws = ws[i],
				                             .token = tok,
				                             .body = "{\"argv\":[\"true\"]}"}) != 0;
			}
		}
		if (!broken && done < NWS && kit_conn_poll(pc, INFLIGHT, 1000) < 0)
			broken = true;
	}
	if (!broken && done == NWS)
		s = bench_ms_since(t0) / 1000.0;
	else if (!broken)
		bench_problem("single execs: %zu of %d succeeded", done, NWS);
	for (int i = 0; i < INFLIGHT; i++)
		kit_conn_free(&c[i]);
	return s;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int setup(void)
{
	const struct th_sshd *sshds[4] = {&th.sshd, &W.conc[0], &W.conc[1], &W.conc[2]};
	const char *args[] = {"token", "create", "--org", "acme", "--scope", "exec,batch", NULL};
	char sql[700];

	for (int k = 0; k < 4; k++) {
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO workspaces (id, org_id, host, port, ssh_user, tier, "
		    "host_key_sha256) SELECT format('ws-bench-%%s', lpad(i::text, 3, '0')),"
		    " 'acme', '127.0.0.1', %d, '%s', 3, '%s' FROM generate_series(%d, %d) i;"
		    " INSERT INTO workspace_labels SELECT format('ws-bench-%%s', lpad(i::text, 3, "
		    "'0')), 'bench', 'batch' FROM generate_series(%d, %d) i",
		    sshds[k]->port, th.user, sshds[k]->host_key_fp, k * 25, k * 25 + 24, k * 25,
		    k * 25 + 24);
		if (kit_sql(W.db, sql) != 0)
			return -1;
	}
	return kit_cli_token(W.db, args, tok, sizeof(tok));
}

int main(void)
{
	size_t rounds = bench_env_count("BENCH_BATCH_ROUNDS", 7), nb = 0, ns = 0;
	double b[64], s[64], mb, ms;

	if (rounds > 64)
		rounds = 64;
	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
		return 1;
	bench_progress("setting up: database, %d workspaces on 4 sshds (broker %s)", NWS,
	               kit_broker_bin());
	if (kit_world_setup(&W) != 0 || setup() != 0 ||
	    kit_broker_start(&B, W.db, "bench-batch", CONF) != 0) {
		th_teardown();
		return 1;
	}
	/* Warm the pool's sessions to the 4 sshds, both ways. */
	run_batch();
	run_singles();
	bench_progress("%zu rounds: a batch of `true` over %d workspaces at 32, then %d single "
	               "execs at 32 in flight",
	               rounds, NWS, NWS);
	for (size_t i = 0; i < rounds; i++) {
		double x = run_batch(), y = run_singles();

		if (x > 0)
			b[nb++] = x;
		if (y > 0)
			s[ns++] = y;
	}
	if (nb == 0 || ns == 0) {
		bench_problem("no round completed");
	} else {
		qsort(b, nb, sizeof(b[0]), cmp);
		qsort(s, ns, sizeof(s[0]), cmp);
		mb = b[nb / 2];
		ms = s[ns / 2];
		printf("\nbatches (%d workspaces on 4 sshds, 32 at once; median of %zu rounds; "
		       "PostgreSQL with fsync on)\n",
		       NWS, rounds);
		printf("  %-44s %9s %9s\n", "", "wall ms", "execs/s");
		printf("  %-44s %9.1f %9.0f\n", "one batch of `true`", mb * 1000, NWS / mb);
		printf("  %-44s %9.1f %9.0f\n", "100 single execs of `true`, 32 in flight",
		       ms * 1000, NWS / ms);
		printf("  batch / single execs: wall %.2fx, execs/s %.2fx\n", mb / ms, ms / mb);
	}
	kit_broker_stop(&B);
	th_teardown();
	return bench_problem_count() > 0;
}
