/* tests/check_fleet.c: three `exec-broker serve` on one database behind a real HAProxy
 * (Debian's, running scripts/haproxy.cfg as shipped), with a client that runs execs without
 * pause: a rolling restart loses no request and leaves every row final; a broker killed
 * with SIGKILL fails only what it was running, whose rows another broker ends 'abandoned';
 * the per-org limit holds across the three; one workspace's execs reach one broker;
 * `audit verify` is clean afterwards. Each test starts its own fleet. */
#include <check.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define NB         3
#define LB_CFG     "scripts/haproxy.cfg"
#define NLOAD      6    /* the client's connections, each one exec after another */
#define UP_WAIT_MS 20000 /* HAProxy's checks: 1 s apart, 2 to change its mind */

static struct kit_world W;
static char tok_batch[64]; /* org acme: exec, batch */

/* The brokers' settings in every test: leaving lasts longer than HAProxy's checks need to
 * take a broker out (2 s); a dead broker is noticed soon (heartbeats of 1 s). */
#define FLEET_CONF                                                                                 \
	"shutdown_delay_s = 3\nshutdown_grace_s = 20\nbroker_heartbeat_s = 1\n"                    \
	"pool_kill_grace_s = 1\n"

struct fleet {
	struct kit_broker b[NB];
	char conf[256];
	pid_t lb;
	int port, stats_port;
	char lb_log[160];
};

static void fleet_broker_start(struct fleet *f, int i)
{
	char name[32];

	snprintf(name, sizeof(name), "eb-fleet-%d", i + 1);
	ck_assert_msg(kit_broker_start(&f->b[i], W.db, name, f->conf) == 0, "%s did not start",
	              name);
}

/* The status HAProxy's page gives server "brokerN" ("UP", "DOWN", "UP 1/2", ...) into st. */
static void lb_server_status(const struct fleet *f, int i, char *st, size_t len)
{
	struct kit_req q = {.method = "GET", .path = "/stats;csv", .max_time_s = 5};
	struct kit_resp r;
	char want[32];
	int col = -1;

	snprintf(st, len, "?");
	snprintf(want, sizeof(want), "brokers,broker%d,", i + 1);
	sv_http(f->stats_port, &q, &r);
	if (r.status == 200) {
		char *save = NULL;
		for (char *line = strtok_r(r.body, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			int c = 0;
			char *p = line;

			if (line[0] == '#') {
				for (char *q2 = line + 2; *q2 != '\0'; q2++, c++) {
					if (strncmp(q2, "status,", 7) == 0) {
						col = c;
						break;
					}
					q2 = strchr(q2, ',');
					if (q2 == NULL)
						break;
				}
				continue;
			}
			if (col < 0 || strncmp(line, want, strlen(want)) != 0)
				continue;
			for (c = 0; c < col && p != NULL; c++) {
				p = strchr(p, ',');
				if (p != NULL)
					p++;
			}
			if (p != NULL)
				snprintf(st, len, "%.*s", (int)strcspn(p, ","), p);
		}
	}
	kit_resp_free(&r);
}

static bool lb_server_up(const struct fleet *f, int i)
{
	char st[32];

	lb_server_status(f, i, st, sizeof(st));
	return strcmp(st, "UP") == 0;
}

static void lb_wait_up(const struct fleet *f, int i)
{
	long long end = kit_now_ms() + UP_WAIT_MS;
	char st[32];

	while (!lb_server_up(f, i)) {
		lb_server_status(f, i, st, sizeof(st));
		ck_assert_msg(kit_now_ms() < end, "HAProxy has broker%d %s, not UP", i + 1, st);
		kit_sleep_ms(100);
	}
}

/* Three brokers with FLEET_CONF and extra, and HAProxy in front of them. */
static void fleet_start(struct fleet *f, const char *extra)
{
	char bind[64], stats[64], be[NB][64];
	const char *env[NB + 3];
	const char *argv[] = {"haproxy", "-db", "-f", LB_CFG, NULL};
	char *path;

	memset(f, 0, sizeof(*f));
	snprintf(f->conf, sizeof(f->conf), "%s%s", FLEET_CONF, extra != NULL ? extra : "");
	for (int i = 0; i < NB; i++) {
		fleet_broker_start(f, i);
		snprintf(be[i], sizeof(be[i]), "EB_BROKER_%d=127.0.0.1:%d", i + 1, f->b[i].port);
		env[i] = be[i];
	}
	f->port = kit_free_port();
	f->stats_port = kit_free_port();
	snprintf(bind, sizeof(bind), "EB_LB_BIND=127.0.0.1:%d", f->port);
	snprintf(stats, sizeof(stats), "EB_LB_STATS_BIND=127.0.0.1:%d", f->stats_port);
	env[NB] = bind;
	env[NB + 1] = stats;
	env[NB + 2] = NULL;
	path = kit_tmp_path("haproxy.log");
	snprintf(f->lb_log, sizeof(f->lb_log), "%s", path);
	free(path);
	f->lb = kit_spawn(&(struct kit_spawn){.argv = argv,
	                                      .env = env,
	                                      .log = f->lb_log,
	                                      .new_session = true,
	                                      .die_with_parent = true});
	ck_assert_msg(f->lb > 0, "haproxy did not start");
	for (int i = 0; i < NB; i++)
		lb_wait_up(f, i);
}

/* HAProxy's log, for a failure's message. */
static void fleet_dump_lb(const struct fleet *f)
{
	char *log = kit_file_read(f->lb_log, NULL);

	fprintf(stderr, "haproxy log:\n%s\n", log != NULL ? log : "(none)");
	free(log);
}

/* Stops the brokers as systemd would (each must exit 0) and HAProxy. */
static void fleet_stop(struct fleet *f)
{
	for (int i = 0; i < NB; i++)
		if (f->b[i].pid != 0)
			ck_assert_int_eq(kit_broker_stop(&f->b[i]), 0);
	if (f->lb > 0) {
		kill(f->lb, SIGTERM);
		if (kit_wait(f->lb, 10000, NULL) != 0) {
			kill(f->lb, SIGKILL);
			kit_wait(f->lb, -1, NULL);
		}
		f->lb = 0;
	}
}

/* `exec-broker audit verify` finds nothing wrong. */
static void verify_clean(void)
{
	const char *args[] = {"audit", "verify", NULL};
	char *out = NULL;
	int status = -1;

	ck_assert_int_eq(kit_cli(W.db, args, &out, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "audit verify: %s", out);
	free(out);
}

/* ------------------------------------------------------------------ the client's load */

/* The workspaces the load spreads over, with the token of their org. */
struct target {
	const char *ws;
	const char *token;
};

static struct target targets[7];

static void targets_init(void)
{
	const struct target t[] = {{"ws-a1", W.tok_org},   {"ws-a2", W.tok_org},
	                           {"ws-c0", W.tok_org},   {"ws-c1", W.tok_org},
	                           {"ws-b1", W.tok_other}, {"ws-c2", W.tok_other},
	                           {"ws-c3", W.tok_other}};

	memcpy(targets, t, sizeof(t));
}

/* One exec the client sent and what came of it. */
struct sent {
	char rid[80];
	char broker[64]; /* X-Exec-Broker-Instance, "" if no head came */
	long long at;    /* when it was sent (kit_now_ms) */
	int status;
	bool ok; /* 200, the whole stream, "ok" on stdout and exit code 0 */
	char why[160];
};

struct load {
	struct kit_conn c[NLOAD];
	struct kit_req q[NLOAD];
	bool busy[NLOAD];
	size_t next;
	struct sent *sent;
	size_t n, cap;
	int slot[NLOAD]; /* index in sent of each connection's request */
	char *body;
};

static void load_send(struct load *l, int i)
{
	const struct target *t = &targets[l->next++ % (sizeof(targets) / sizeof(targets[0]))];
	struct sent *s;

	if (l->n == l->cap) {
		l->cap = l->cap != 0 ? 2 * l->cap : 256;
		l->sent = realloc(l->sent, l->cap * sizeof(*l->sent));
		ck_assert_ptr_nonnull(l->sent);
	}
	s = &l->sent[l->n];
	memset(s, 0, sizeof(*s));
	snprintf(s->rid, sizeof(s->rid), "fleet-%zu-%d", l->n, (int)getpid());
	s->at = kit_now_ms();
	l->q[i] = (struct kit_req){.ws = t->ws, .token = t->token, .body = l->body, .rid = s->rid,
	                           .max_time_s = 60};
	l->slot[i] = (int)l->n++;
	/* Half the connections are kept alive from one exec to the next, as SDKs do; the
	 * others are fresh for each exec, as curl in a script is. */
	if (i % 2 == 1)
		kit_conn_close(&l->c[i]);
	(void)kit_conn_send(&l->c[i], &l->q[i]); /* no connection: judged as failed */
	l->busy[i] = true;
}

static void load_judge(struct load *l, int i)
{
	struct sent *s = &l->sent[l->slot[i]];
	const struct kit_resp *r = &l->c[i].r;
	struct kit_frames f;
	json_t *last;

	s->status = r->status;
	if (kit_header(r, "X-Exec-Broker-Instance", s->broker, sizeof(s->broker)) == NULL)
		s->broker[0] = '\0';
	if (r->status != 200 || !r->complete) {
		snprintf(s->why, sizeof(s->why), "status %d%s %s %.80s", r->status,
		         r->complete ? "" : " cut:", r->complete ? "" : r->error,
		         r->body != NULL ? r->body : "");
		return;
	}
	kit_frames_init(&f);
	kit_frames_parse(&f, r->body, r->body_len);
	last = f.last_terminal;
	if (f.bad == 0 && f.terminal == 1 && last != NULL && f.out != NULL &&
	    strcmp(f.out, "ok\n") == 0 && json_integer_value(json_object_get(last, "exit_code")) == 0 &&
	    json_object_get(last, "exit_code") != NULL)
		s->ok = true;
	else
		snprintf(s->why, sizeof(s->why), "200 but: %.120s", r->body);
	kit_frames_free(&f);
}

static void load_init(struct load *l, const char *cmd)
{
	const char *argv[] = {"sh", "-c", cmd, NULL};

	memset(l, 0, sizeof(*l));
	l->body = sv_body(argv, json_pack("{s:i}", "timeout_s", 5));
	for (int i = 0; i < NLOAD; i++)
		kit_conn_init(&l->c[i], 0);
}

/* Runs the load for ms: every connection always has an exec in flight. */
static void load_run(struct load *l, int port, int ms)
{
	long long end = kit_now_ms() + ms;
	struct kit_conn *cs[NLOAD];

	for (int i = 0; i < NLOAD; i++) {
		cs[i] = &l->c[i];
		l->c[i].port = port;
	}
	while (kit_now_ms() < end) {
		for (int i = 0; i < NLOAD; i++) {
			if (l->busy[i] && l->c[i].state == KIT_CONN_DONE) {
				load_judge(l, i);
				l->busy[i] = false;
			}
			if (!l->busy[i])
				load_send(l, i);
		}
		ck_assert_int_ge(kit_conn_poll(cs, NLOAD, 20), 0);
	}
}

/* Lets what is in flight end, sending nothing more. */
static void load_finish(struct load *l)
{
	struct kit_conn *cs[NLOAD];
	long long end = kit_now_ms() + 60000;

	for (int i = 0; i < NLOAD; i++)
		cs[i] = &l->c[i];
	while (kit_conn_poll(cs, NLOAD, 100) > 0)
		ck_assert_msg(kit_now_ms() < end, "execs in flight did not end");
	for (int i = 0; i < NLOAD; i++)
		if (l->busy[i]) {
			load_judge(l, i);
			l->busy[i] = false;
		}
}

static void load_free(struct load *l)
{
	for (int i = 0; i < NLOAD; i++)
		kit_conn_free(&l->c[i]);
	free(l->sent);
	free(l->body);
}

static long long count(const char *sql)
{
	char *v = sv_query(W.db, sql);
	long long n = atoll(v);

	free(v);
	return n;
}

/* ------------------------------------------------------------------ tests */

/* Each broker in turn: SIGTERM (it leaves: /readyz 503, HAProxy takes it out, then it
 * drains within the grace), exits 0, starts again on its address and is back in the ring,
 * while the client sends execs without pause. No request fails, every exec has exactly one
 * row, final, and each broker served execs. */
START_TEST(a_rolling_restart_under_load_fails_nothing)
{
	struct fleet f;
	struct load l;
	size_t before[NB] = {0}, failed = 0;
	char sql[256];

	fleet_start(&f, "org_max_concurrent_execs = 64\n");
	load_init(&l, "sleep 0.4; echo ok");
	load_run(&l, f.port, 2000);
	for (int i = 0; i < NB; i++) {
		long long end = kit_now_ms() + 60000;

		ck_assert_int_eq(kill(f.b[i].pid, SIGTERM), 0);
		while (kit_broker_wait(&f.b[i], 0) != 0) {
			ck_assert_msg(kit_now_ms() < end, "eb-fleet-%d did not exit", i + 1);
			load_run(&l, f.port, 100);
		}
		ck_assert_msg(WIFEXITED(f.b[i].status) && WEXITSTATUS(f.b[i].status) == 0,
		              "eb-fleet-%d: status %d", i + 1, f.b[i].status);
		before[i] = l.n;
		fleet_broker_start(&f, i); /* same port: kit_broker_start keeps it */
		while (!lb_server_up(&f, i)) {
			ck_assert_msg(kit_now_ms() < end, "eb-fleet-%d not back in HAProxy", i + 1);
			load_run(&l, f.port, 200);
		}
		load_run(&l, f.port, 1500);
	}
	load_finish(&l);
	fleet_stop(&f);

	for (size_t k = 0; k < l.n; k++)
		if (!l.sent[k].ok && failed++ < 5)
			fprintf(stderr, "exec %s via %s failed: %s\n", l.sent[k].rid, l.sent[k].broker,
			        l.sent[k].why);
	if (failed != 0)
		fleet_dump_lb(&f);
	ck_assert_msg(failed == 0, "%zu of %zu execs failed during the rolling restart", failed,
	              l.n);
	ck_assert_msg(l.n >= 60, "only %zu execs were sent", l.n);
	fprintf(stderr, "fleet: rolling restart of %d brokers: %zu execs, none failed\n", NB, l.n);
	/* every broker served before and after its restart */
	for (int i = 0; i < NB; i++) {
		char name[32];
		size_t pre = 0, post = 0;

		snprintf(name, sizeof(name), "eb-fleet-%d", i + 1);
		for (size_t k = 0; k < l.n; k++)
			if (strcmp(l.sent[k].broker, name) == 0)
				*(k < before[i] ? &pre : &post) += 1;
		ck_assert_msg(pre > 0 && post > 0, "%s served %zu execs before its restart and %zu after",
		              name, pre, post);
	}
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE request_id LIKE 'fleet-%%-%d'", (int)getpid());
	ck_assert_int_eq(count(sql), (long long)l.n);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE request_id LIKE 'fleet-%%-%d' "
	         "AND status = 'exited' AND exit_code = 0",
	         (int)getpid());
	ck_assert_int_eq(count(sql), (long long)l.n);
	verify_clean();
	load_free(&l);
}
END_TEST

/* A broker killed with SIGKILL under load: only the execs it was running fail; requests
 * sent once HAProxy's checks have seen it gone all succeed on the others; its rows end
 * 'abandoned', by another broker, soon after (3 heartbeats + 10 s, then the exec's timeout
 * and the kill grace). */
START_TEST(a_killed_broker_fails_only_its_running_execs)
{
	struct fleet f;
	struct load l;
	char sql[512], victim[32];
	long long killed_at, end, running = 0;
	size_t failed = 0;
	int v = -1;

	fleet_start(&f, "org_max_concurrent_execs = 64\n");
	load_init(&l, "sleep 1; echo ok");
	load_run(&l, f.port, 2500);
	/* the broker with the most execs running now */
	for (int i = 0; i < NB; i++) {
		char name[32];
		long long n;

		snprintf(name, sizeof(name), "eb-fleet-%d", i + 1);
		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM exec_audit WHERE status = 'running' AND "
		         "broker_instance = '%s'",
		         name);
		n = count(sql);
		if (n > 0 && (v < 0 || n > running)) {
			v = i;
			running = n;
		}
	}
	ck_assert_msg(v >= 0, "no broker had an exec running");
	snprintf(victim, sizeof(victim), "eb-fleet-%d", v + 1);
	kit_broker_kill(&f.b[v]);
	killed_at = kit_now_ms();
	load_run(&l, f.port, 6000);
	load_finish(&l);

	for (size_t k = 0; k < l.n; k++) {
		struct sent *s = &l.sent[k];
		char *inst;

		if (s->ok)
			continue;
		failed++;
		/* sent before the kill, and run (if at all) by the victim */
		ck_assert_msg(s->at < killed_at, "exec %s sent %lld ms after the kill failed: %s",
		              s->rid, s->at - killed_at, s->why);
		if (sv_rows(W.db, s->rid) == 1) {
			inst = sv_row(W.db, s->rid, "broker_instance");
			ck_assert_msg(strcmp(inst, victim) == 0, "exec %s on %s failed: %s", s->rid, inst,
			              s->why);
			free(inst);
		}
	}
	ck_assert_msg(failed >= 1 && failed <= (size_t)NLOAD,
	              "%zu execs failed; the victim ran %lld", failed, running);
	/* its running rows are ended by another broker */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE broker_instance = '%s' AND status = "
	         "'running'",
	         victim);
	end = kit_now_ms() + 60000;
	while (count(sql) != 0) {
		ck_assert_msg(kit_now_ms() < end, "%s's rows still running 60 s after its kill",
		              victim);
		kit_sleep_ms(250);
	}
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM exec_audit WHERE broker_instance = '%s' AND status = "
	         "'abandoned' AND request_id LIKE 'fleet-%%-%d'",
	         victim, (int)getpid());
	ck_assert_msg(count(sql) >= 1, "no row of %s became abandoned", victim);
	ck_assert_msg(kit_now_ms() - killed_at < 40000, "abandoned only %lld ms after the kill",
	              kit_now_ms() - killed_at);
	fleet_stop(&f);
	verify_clean();
	fprintf(stderr, "fleet: %s killed with %lld execs running: %zu of %zu execs failed\n",
	        victim, running, failed, l.n);
	load_free(&l);
}
END_TEST

/* org_max_concurrent_execs = 2 on each of three brokers: six execs of one org at once,
 * spread over the brokers by their workspaces, run two; the others are 429. */
START_TEST(the_org_limit_holds_across_three_brokers)
{
	static const char *const ws[] = {"ws-a1", "ws-a2", "ws-c0", "ws-c1", "ws-a1", "ws-c0"};
	const size_t n = sizeof(ws) / sizeof(ws[0]);
	struct fleet f;
	struct kit_conn c[6];
	char *gate = kit_tmp_path("fleetgate"), *body, brokers[6][64];
	const char *argv[] = {"sh", "-c",
	                      "echo ready; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo done",
	                      gate, NULL};
	int ran = 0, refused = 0, distinct = 0;

	fleet_start(&f, "org_max_concurrent_execs = 2\n");
	body = sv_body(argv, json_pack("{s:i}", "timeout_s", 60));
	for (size_t i = 0; i < n; i++) {
		struct kit_req q = {.ws = ws[i], .token = W.tok_org, .body = body};

		ck_assert_int_eq(kit_stream_open(&c[i], f.port, &q), 0);
		ck_assert_int_eq(kit_stream_head(&c[i], 20000), 0);
		if (kit_header(&c[i].r, "X-Exec-Broker-Instance", brokers[i], sizeof(brokers[i])) ==
		    NULL)
			brokers[i][0] = '\0';
		if (c[i].r.status == 200) {
			char *line = kit_stream_line(&c[i], 20000); /* the first frame */
			free(line);
			ran++;
		} else {
			ck_assert_msg(c[i].r.status == 429, "exec %zu: %d", i, c[i].r.status);
			refused++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			seen = seen || strcmp(brokers[i], brokers[j]) == 0;
		distinct += !seen;
	}
	ck_assert_msg(distinct >= 2, "all six went to one broker");
	ck_assert_int_eq(ran, 2);
	ck_assert_int_eq(refused, 4);
	sv_touch(gate);
	for (size_t i = 0; i < n; i++) {
		struct kit_resp r;

		kit_stream_finish(&c[i], &r);
		kit_resp_free(&r);
	}
	fleet_stop(&f);
	verify_clean();
	unlink(gate);
	free(gate);
	free(body);
}
END_TEST

/* GET path on every broker directly, as token: 200 with "status": status each time. */
static void every_broker_says(const struct fleet *f, const char *path, const char *token,
                              const char *status)
{
	for (int i = 0; i < NB; i++) {
		struct kit_req q = {.method = "GET", .path = path, .token = token};
		struct kit_resp r;
		json_t *o;

		sv_http(f->b[i].port, &q, &r);
		ck_assert_msg(r.status == 200, "eb-fleet-%d: GET %s: %d %s", i + 1, path, r.status,
		              r.body);
		o = sv_json(&r);
		ck_assert_str_eq(sv_str(o, "status"), status);
		json_decref(o);
		kit_resp_free(&r);
	}
}

/* Every broker answers GET /v1/execs/{id} of an exec another one ran: the row is the
 * truth, not the broker. */
static void any_broker_reads(const struct fleet *f, const struct kit_resp *ran,
                             const char *token)
{
	char id[64], path[128];

	ck_assert_ptr_nonnull(kit_header(ran, "X-Exec-Id", id, sizeof(id)));
	snprintf(path, sizeof(path), "/v1/execs/%s", id);
	every_broker_says(f, path, token, "exited");
}

/* A batch run through HAProxy is read back, whole, from every broker. */
static void any_broker_reads_a_batch(const struct fleet *f)
{
	const char *body = "{\"argv\":[\"true\"],\"target\":{\"workspaces\":[\"ws-a1\",\"ws-c0\","
	                   "\"ws-c1\"]}}";
	struct kit_req q = {
	    .path = "/v1/batches", .token = tok_batch, .body = body, .accept = "application/json"};
	struct kit_resp r;
	char path[128];
	json_t *o;

	sv_http(f->port, &q, &r);
	ck_assert_msg(r.status == 200, "batch: %d %s", r.status, r.body);
	o = sv_json(&r);
	ck_assert_str_eq(sv_str(o, "status"), "completed");
	snprintf(path, sizeof(path), "/v1/batches/%s", sv_str(o, "batch_id"));
	json_decref(o);
	kit_resp_free(&r);
	every_broker_says(f, path, tok_batch, "completed");
}

/* The shipped config hashes on the workspace id: one workspace's execs always reach the
 * same broker, and the workspaces spread over more than one; any broker reads any exec and
 * any batch. */
START_TEST(one_workspace_reaches_one_broker_and_any_reads_it)
{
	struct fleet f;
	const char *argv[] = {"true", NULL};
	char *body = sv_body(argv, NULL);
	char first[7][64];
	int distinct = 0;

	targets_init();
	fleet_start(&f, NULL);
	for (int round = 0; round < 3; round++)
		for (size_t t = 0; t < 7; t++) {
			struct kit_req q = {.ws = targets[t].ws, .token = targets[t].token, .body = body};
			struct kit_resp r;
			char b[64];

			sv_http(f.port, &q, &r);
			ck_assert_int_eq(r.status, 200);
			ck_assert_ptr_nonnull(kit_header(&r, "X-Exec-Broker-Instance", b, sizeof(b)));
			if (round == 0) {
				snprintf(first[t], sizeof(first[t]), "%s", b);
				any_broker_reads(&f, &r, targets[t].token);
			}
			else
				ck_assert_msg(strcmp(first[t], b) == 0, "%s went to %s, then to %s",
				              targets[t].ws, first[t], b);
			kit_resp_free(&r);
		}
	for (size_t t = 0; t < 7; t++) {
		bool seen = false;
		for (size_t u = 0; u < t; u++)
			seen = seen || strcmp(first[t], first[u]) == 0;
		distinct += !seen;
	}
	ck_assert_msg(distinct >= 2, "seven workspaces all went to %s", first[0]);
	any_broker_reads_a_batch(&f);
	fleet_stop(&f);
	free(body);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 180)

int main(void)
{
	Suite *s = suite_create("fleet");
	const char *tok_args[] = {"token", "create", "--org", "acme", "--scope", "exec,batch", NULL};
	int failed;

	if (access(LB_CFG, R_OK) != 0) {
		fprintf(stderr, "check_fleet: run from the source tree (%s)\n", LB_CFG);
		return EXIT_FAILURE;
	}
	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0 ||
	    kit_cli_token(W.db, tok_args, tok_batch, sizeof(tok_batch)) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	targets_init();
	ADD(s, one_workspace_reaches_one_broker_and_any_reads_it);
	ADD(s, a_rolling_restart_under_load_fails_nothing);
	ADD(s, a_killed_broker_fails_only_its_running_execs);
	ADD(s, the_org_limit_holds_across_three_brokers);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
