/* bench/bench_fleet.c: a fleet of brokers on one PostgreSQL (fsync on) behind HAProxy running
 * scripts/haproxy.cfg: execs/s of `true` through it with 1, 2 and 3 brokers beside one broker
 * reached directly, with the CPU each part of the machine spent; then the SSH handshakes that
 * the config's affinity (a hash of the workspace id) saves against round-robin, over 20
 * workspace hosts and three fresh brokers. Figures only; it fails only when something did
 * not work. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench/benchutil.h"
#include "tests/kit/broker.h"
#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/net.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"

#define NB             3  /* brokers: the shipped config's server lines */
#define NHOSTS         20 /* workspaces, each on a host of its own */
#define NORGS          4  /* the workspaces' orgs, 5 workspaces each */
#define NSSHD          2  /* sshds serving the hosts (OpenSSH listens on 16 sockets at most), */
#define PORTS_PER_SSHD (NHOSTS / NSSHD) /* each on this many ports */
#define INFLIGHT       BENCH_CONCURRENCY
#define NWAYS          4 /* (a) direct, (b1) to (b3) through HAProxy */
#define TURNS          4 /* of each way, in the order a b1 b2 b3 b3 b2 b1 a a ... */
#define WARM_N         (2 * INFLIGHT)
#define AFF_RUNS       4 /* hash, roundrobin, roundrobin, hash; fresh brokers each time */
#define LB_CFG         "scripts/haproxy.cfg"
#define LB_UP_MS       20000 /* HAProxy's checks: 1 s apart, 2 to call a broker up */
#define RING_N         3000  /* made-up workspace ids whose broker the ring is asked for */
/* No per-org limit in the way: 32 in flight over 4 orgs is far below it. */
#define CONF      "org_max_concurrent_execs = 100000\n"
#define EXEC_BODY "{\"argv\":[\"true\"]}"

static char db[512];
static struct th_sshd hosts[NSSHD]; /* NHOSTS ports in all */
static int host_port[NHOSTS];
static char ws_id[NHOSTS][16];
static char tok[NORGS][64]; /* org org-k, which owns ws-k, ws-(k+4), ... */

/* ------------------------------------------------------------------ the hosts */

/* NSSHD sshds listening on PORTS_PER_SSHD ports each. The pool keys a session on (host,
 * port, user, pinned host key), so each port is a host of its own to every broker, for the
 * cost of two sshds (OpenSSH listens on at most 16 sockets). The kit writes an sshd's config;
 * the other ports are added to it and the sshd restarted, which reads the same file again. */
static int hosts_start(void)
{
	for (int h = 0; h < NSSHD; h++) {
		struct th_sshd *d = &hosts[h];
		int *port = &host_port[h * PORTS_PER_SSHD];
		FILE *f;

		if (th_sshd_start(d, NULL) != 0)
			return -1;
		port[0] = d->port;
		f = fopen(d->config, "ae");
		if (f == NULL) {
			bench_problem("cannot append to %s", d->config);
			return -1;
		}
		for (int i = 1; i < PORTS_PER_SSHD; i++) {
			int p, seen;

			do {
				p = kit_free_port();
				seen = 0;
				for (int k = 0; k < h * PORTS_PER_SSHD + i; k++)
					seen |= host_port[k] == p;
			} while (p > 0 && seen);
			if (p < 0) {
				fclose(f);
				return -1;
			}
			port[i] = p;
			fprintf(f, "ListenAddress 127.0.0.1:%d\n", p);
		}
		if (fclose(f) != 0 || th_sshd_restart(d) != 0) {
			bench_problem("sshd %s did not start again on %d ports; see %s", d->config,
			              PORTS_PER_SSHD, d->log);
			return -1;
		}
	}
	for (int i = 0; i < NHOSTS; i++) {
		long long end = kit_now_ms() + 5000;

		while (!kit_port_accepts(host_port[i])) {
			if (kit_now_ms() > end) {
				bench_problem("no sshd listens on 127.0.0.1:%d; see %s",
				              host_port[i], hosts[i / PORTS_PER_SSHD].log);
				return -1;
			}
			kit_sleep_ms(20);
		}
	}
	return 0;
}

/* The database, ws-00 to ws-19 (org org-(i mod 4), host port i), an exec token per org. */
static int world_setup(void)
{
	char org[NORGS][16];

	if (kit_db_migrated(db, sizeof(db)) != 0)
		return -1;
	for (int k = 0; k < NORGS; k++) {
		const char *args[] = {"token", "create", "--org", org[k], "--scope", "exec", NULL};

		snprintf(org[k], sizeof(org[k]), "org-%d", k);
		if (kit_cli_token(db, args, tok[k], sizeof(tok[k])) != 0)
			return -1;
	}
	for (int i = 0; i < NHOSTS; i++) {
		snprintf(ws_id[i], sizeof(ws_id[i]), "ws-%02d", i);
		if (kit_ws_add(db, &(struct kit_ws){
		                       .id = ws_id[i],
		                       .org = org[i % NORGS],
		                       .port = host_port[i],
		                       .host_key_fp = hosts[i / PORTS_PER_SSHD].host_key_fp}) != 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ HAProxy */

struct lb {
	pid_t pid; /* 0 when not running */
	int port, stats_port;
	char log[200];
};

/* scripts/haproxy.cfg read now and written to path, changed as the issue asks and in nothing
 * else: the server lines of brokers beyond nb left out; with roundrobin, the two lines that
 * hash on the workspace id (balance hash ..., hash-type consistent) replaced by `balance
 * roundrobin`. -1, a problem recorded, if the shipped file does not have those lines. */
static int lb_cfg_derive(const char *path, int nb, bool roundrobin)
{
	char *text = kit_file_read(LB_CFG, NULL), *out = NULL;
	size_t len = 0;
	FILE *f;
	int servers = 0, balance = 0, hashtype = 0, rc = -1;

	if (text == NULL) {
		bench_problem("cannot read %s (run from the source tree)", LB_CFG);
		return -1;
	}
	f = open_memstream(&out, &len);
	if (f == NULL)
		goto out;
	fprintf(f, "# bench_fleet: %s read at run time, with %d server line%s%s\n", LB_CFG, nb,
	        nb == 1 ? "" : "s", roundrobin ? " and balance roundrobin" : "");
	for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
		const char *t = line + strspn(line, " \t");
		int k;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (sscanf(t, "server broker%d ", &k) == 1) {
			servers++;
			if (k > nb)
				continue;
		} else if (roundrobin && strncmp(t, "balance hash ", 13) == 0) {
			balance++;
			fputs("\tbalance roundrobin\n", f);
			continue;
		} else if (roundrobin && strncmp(t, "hash-type ", 10) == 0) {
			hashtype++;
			continue;
		}
		fprintf(f, "%s\n", line);
	}
	if (fclose(f) != 0)
		goto out;
	if (servers != NB || (roundrobin && (balance != 1 || hashtype != 1))) {
		bench_problem("%s has %d server lines, %d `balance hash` and %d `hash-type` lines; "
		              "the benchmark expects %d, 1 and 1",
		              LB_CFG, servers, balance, hashtype, NB);
		goto out;
	}
	rc = kit_file_write(path, out, 0644);
	if (rc != 0)
		bench_problem("cannot write %s", path);
out:
	free(out);
	free(text);
	return rc;
}

/* The value of column col of one line of HAProxy's CSV status, into buf. */
static void csv_field(const char *line, int col, char *buf, size_t len)
{
	const char *p = line;

	buf[0] = '\0';
	for (int c = 0; c < col && p != NULL; c++) {
		p = strchr(p, ',');
		if (p != NULL)
			p++;
	}
	if (p != NULL)
		snprintf(buf, len, "%.*s", (int)strcspn(p, ","), p);
}

/* Whether HAProxy's status page says UP for broker1 to brokerN of backend brokers. */
static bool lb_all_up(const struct lb *l, int nb)
{
	struct kit_resp r;
	char *save = NULL;
	int col = -1, up = 0;

	kit_http(l->stats_port,
	         &(struct kit_req){.method = "GET", .path = "/stats;csv", .max_time_s = 5}, &r);
	for (char *line = r.status == 200 ? strtok_r(r.body, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[32], st[32];
		int k;

		if (strncmp(line, "# ", 2) == 0) {
			for (int c = 0; c < 100 && col < 0; c++) {
				csv_field(line + 2, c, name, sizeof(name));
				if (strcmp(name, "status") == 0)
					col = c;
			}
			continue;
		}
		csv_field(line, 1, name, sizeof(name));
		if (col < 0 || strncmp(line, "brokers,", 8) != 0 ||
		    sscanf(name, "broker%d", &k) != 1 || k > nb)
			continue;
		csv_field(line, col, st, sizeof(st));
		up += strcmp(st, "UP") == 0;
	}
	kit_resp_free(&r);
	return up == nb;
}

/* HAProxy (haproxy -db -f cfg) in front of b[0..nb), on fresh ports, once it has them all
 * UP. Only EB_BROKER_1..nb are set: a config that still named another broker would not
 * start. 0, or -1 with a problem recorded. */
static int lb_start(struct lb *l, const char *name, const char *cfg, const struct kit_broker *b,
                    int nb)
{
	const char *argv[] = {"haproxy", "-db", "-f", cfg, NULL};
	char vars[NB + 2][64];
	const char *env[NB + 3];
	long long end;

	memset(l, 0, sizeof(*l));
	l->port = kit_free_port();
	l->stats_port = kit_free_port();
	if (l->port < 0 || l->stats_port < 0 ||
	    th_fmt(l->log, sizeof(l->log), "%s/haproxy-%s.log", th.basedir, name) != 0)
		return -1;
	snprintf(vars[0], sizeof(vars[0]), "EB_LB_BIND=127.0.0.1:%d", l->port);
	snprintf(vars[1], sizeof(vars[1]), "EB_LB_STATS_BIND=127.0.0.1:%d", l->stats_port);
	env[0] = vars[0];
	env[1] = vars[1];
	for (int i = 0; i < nb; i++) {
		snprintf(vars[i + 2], sizeof(vars[i + 2]), "EB_BROKER_%d=127.0.0.1:%d", i + 1,
		         b[i].port);
		env[i + 2] = vars[i + 2];
	}
	env[nb + 2] = NULL;
	l->pid = kit_spawn(&(struct kit_spawn){
	    .argv = argv, .env = env, .log = l->log, .new_session = true, .die_with_parent = true});
	if (l->pid <= 0) {
		l->pid = 0;
		bench_problem("haproxy (%s) did not start; see %s", name, l->log);
		return -1;
	}
	end = kit_now_ms() + LB_UP_MS;
	while (!lb_all_up(l, nb)) {
		if (kit_now_ms() > end || !kit_pid_alive(l->pid)) {
			bench_problem("haproxy (%s) does not have its %d broker(s) UP after %d ms; "
			              "see %s",
			              name, nb, LB_UP_MS, l->log);
			return -1;
		}
		kit_sleep_ms(100);
	}
	return 0;
}

static void lb_stop(struct lb *l)
{
	if (l->pid == 0)
		return;
	kill(l->pid, SIGTERM);
	if (kit_wait(l->pid, 10000, NULL) != 0) {
		bench_problem("haproxy (pid %d) did not stop on SIGTERM within 10 s", (int)l->pid);
		kill(l->pid, SIGKILL);
		kit_wait(l->pid, -1, NULL);
	}
	l->pid = 0;
}

/* ------------------------------------------------------------------ CPU from /proc */

enum cpu_part { CPU_BROKERS, CPU_LB, CPU_PG, CPU_HOSTS, CPU_CLIENT, CPU_MACHINE, CPU_N };

static const char *const cpu_names[CPU_N] = {"brokers",   "haproxy", "postgres",
                                             "sshd+host", "client",  "machine"};

static double tree_cpu_s(pid_t pid)
{
	double s = pid > 1 ? kit_proc_tree_cpu_s(pid) : 0;

	return s > 0 ? s : 0;
}

/* CPU seconds the whole machine has been busy (all but idle and iowait of /proc/stat). */
static double machine_busy_s(void)
{
	unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
	FILE *f = fopen("/proc/stat", "re");
	int n = 0;

	if (f != NULL) {
		n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys,
		           &idle, &iowait, &irq, &softirq, &steal);
		fclose(f);
	}
	if (n != 8)
		return 0;
	return (double)(user + nice + sys + irq + softirq + steal) / (double)sysconf(_SC_CLK_TCK);
}

/* What a run's CPU is read from: the brokers b[0..nb) and the balancers lbs[0..nlb) (any of
 * them may not run), besides PostgreSQL, the hosts' sshds, this process and the machine. */
struct cpu_of {
	const struct kit_broker *b;
	int nb;
	const struct lb *lbs;
	int nlb;
};

/* A reading at the start of a run. */
struct cpu_mark {
	double v[CPU_N];
	uint64_t ns;
};

/* The servers' CPU seconds so far, each with its descendants and the children they reaped
 * (reading them scans /proc, which takes a while). */
static void cpu_servers(double v[CPU_N], const struct cpu_of *o)
{
	v[CPU_BROKERS] = v[CPU_LB] = v[CPU_HOSTS] = 0;
	for (int i = 0; i < o->nb; i++)
		v[CPU_BROKERS] += tree_cpu_s(o->b[i].pid);
	for (int i = 0; i < o->nlb; i++)
		v[CPU_LB] += tree_cpu_s(o->lbs[i].pid);
	v[CPU_PG] = tree_cpu_s(th_pg_pid(&th.pg));
	for (int h = 0; h < NSSHD; h++)
		v[CPU_HOSTS] += tree_cpu_s(th_sshd_pid(&hosts[h]));
}

/* This process's CPU seconds and the machine's. */
static void cpu_self(double v[CPU_N])
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	v[CPU_CLIENT] = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	v[CPU_MACHINE] = machine_busy_s();
}

/* The servers first, then the client, the machine and the clock: the scan of /proc stays
 * out of the client's and the machine's figures. */
static void cpu_start(struct cpu_mark *m, const struct cpu_of *o)
{
	cpu_servers(m->v, o);
	cpu_self(m->v);
	m->ns = kit_now_ns();
}

/* Adds what each part used since m to acc, and the seconds since m to *wall_s; the reverse
 * order of cpu_start. */
static void cpu_stop(const struct cpu_mark *m, const struct cpu_of *o, double acc[CPU_N],
                     double *wall_s)
{
	double v[CPU_N];

	*wall_s += (double)(kit_now_ns() - m->ns) / 1e9;
	cpu_self(v);
	cpu_servers(v, o);
	for (int c = 0; c < CPU_N; c++)
		acc[c] += v[c] - m->v[c];
}

/* ------------------------------------------------------------------ the client */

/* One way of reaching the brokers: where the client connects, its INFLIGHT keep-alive
 * connections, and what its execs gave. */
struct way {
	const char *name;
	int port;
	const struct kit_broker *b; /* the NB brokers that may answer, to tell who did */
	struct kit_conn c[INFLIGHT];
	size_t next_ws;        /* the workspaces take turns, ws-00 to ws-19 and again */
	size_t served[NB + 1]; /* execs each broker answered; [NB]: no or an unknown name */
	double cpu[CPU_N];     /* CPU seconds of each part while its timed execs ran */
	double cpu_wall_s;     /* and the seconds they were read over */
};

static void way_init(struct way *w, const char *name, int port, const struct kit_broker *b)
{
	memset(w, 0, sizeof(*w));
	w->name = name;
	w->port = port;
	w->b = b;
	for (int i = 0; i < INFLIGHT; i++)
		kit_conn_init(&w->c[i], port);
}

static void way_free(struct way *w)
{
	for (int i = 0; i < INFLIGHT; i++)
		kit_conn_free(&w->c[i]);
}

/* Counts one exec's response: into s (ms) if it is whole and right, else a failure of s. */
static void way_judge(struct way *w, struct series *s, const struct kit_resp *r, double ms)
{
	struct kit_frames f;
	char inst[64];
	json_t *code, *first;
	int who = NB;

	if (kit_header(r, "X-Exec-Broker-Instance", inst, sizeof(inst)) != NULL)
		for (int i = 0; i < NB; i++)
			if (strcmp(inst, w->b[i].instance) == 0)
				who = i;
	w->served[who]++;
	if (r->status != 200 || !r->complete) {
		series_fail(s, "%s: status %d%s%s %.120s", w->name, r->status,
		            r->complete ? "" : ", cut: ", r->complete ? "" : r->error,
		            r->body != NULL ? r->body : "");
		return;
	}
	kit_frames_init(&f);
	kit_frames_parse(&f, r->body, r->body_len);
	first = kit_frame(&f, 0);
	code = f.last_terminal != NULL ? json_object_get(f.last_terminal, "exit_code") : NULL;
	if (f.bad == 0 && f.terminal == 1 && f.terminal_at == (int)f.n - 1 &&
	    json_is_string(json_object_get(first, "exec_id")) && json_is_integer(code) &&
	    json_integer_value(code) == 0)
		series_add(s, ms);
	else
		series_fail(s, "%s: 200 but %.160s", w->name, r->body);
	kit_frames_free(&f);
}

/* n execs of `true`, INFLIGHT at all times on w's connections, each timed from its request
 * to the end of its response into s (whose wall_s grows by the time from the first request
 * to the last response). -1 if the client broke (poll failed, or the phase outlived
 * BENCH_PHASE_TIMEOUT_S): the connections are then unusable. */
static int way_run(struct way *w, struct series *s, size_t n)
{
	struct kit_conn *pc[INFLIGHT];
	uint64_t t0[INFLIGHT], start = kit_now_ns();
	bool busy[INFLIGHT] = {false};
	size_t sent = 0, done = 0;
	long long end = kit_now_ms() + BENCH_PHASE_TIMEOUT_S * 1000LL;

	for (int i = 0; i < INFLIGHT; i++)
		pc[i] = &w->c[i];
	while (done < n) {
		for (int i = 0; i < INFLIGHT; i++) {
			if (busy[i] && w->c[i].state == KIT_CONN_DONE) {
				way_judge(w, s, &w->c[i].r, bench_ms_since(t0[i]));
				busy[i] = false;
				done++;
			}
			if (!busy[i] && sent < n) {
				size_t k = w->next_ws++ % NHOSTS;

				t0[i] = kit_now_ns();
				/* No connection: DONE at once, judged as failed next time round. */
				(void)kit_conn_send(&w->c[i],
				                    &(struct kit_req){.ws = ws_id[k],
				                                      .token = tok[k % NORGS],
				                                      .body = EXEC_BODY});
				busy[i] = true;
				sent++;
			}
		}
		if (done == n)
			break;
		if (kit_conn_poll(pc, INFLIGHT, 1000) < 0 || kit_now_ms() > end) {
			bench_problem("%s: %zu of %zu execs not over after %d s", w->name, n - done,
			              n, BENCH_PHASE_TIMEOUT_S);
			return -1;
		}
	}
	s->wall_s += (double)(kit_now_ns() - start) / 1e9;
	return 0;
}

/* How the ring of HAProxy at port shares workspaces out over the brokers b: RING_N made-up
 * workspace ids (the same every run), one request each without a token, which whichever
 * broker the hash picks answers 401; got[i] counts broker i's answers, got[NB] the rest. */
static void ring_shares(int port, const struct kit_broker *b, size_t got[NB + 1])
{
	struct kit_conn c;
	uint32_t x = 2463534242u;

	memset(got, 0, (NB + 1) * sizeof(*got));
	kit_conn_init(&c, port);
	for (int k = 0; k < RING_N; k++) {
		char path[64], inst[64];
		int who = NB;

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		snprintf(path, sizeof(path), "/v1/workspaces/ws-%08x/exec", x);
		kit_conn_request(&c, &(struct kit_req){.path = path, .body = EXEC_BODY});
		if (c.r.status == 401 &&
		    kit_header(&c.r, "X-Exec-Broker-Instance", inst, sizeof(inst)) != NULL)
			for (int i = 0; i < NB; i++)
				if (strcmp(inst, b[i].instance) == 0)
					who = i;
		got[who]++;
	}
	kit_conn_free(&c);
}

/* ------------------------------------------------------------------ 1: scaling */

static const char *const way_names[NWAYS] = {"(a) one broker, direct", "(b1) HAProxy, 1 broker",
                                             "(b2) HAProxy, 2 brokers", "(b3) HAProxy, 3 brokers"};

static void print_scaling(struct way w[NWAYS], struct series s[NWAYS], size_t n)
{
	double a_rate = series_per_s(&s[0]), a_p50 = series_pct(&s[0], 0.5);

	printf("\n1. execs of `true` with %d in flight, %zu per way in %d turns (a b1 b2 b3, then "
	       "back), over %d workspaces in %d orgs on %d hosts (%d sshds, %d ports each); "
	       "PostgreSQL with fsync on\n",
	       INFLIGHT, n, TURNS, NHOSTS, NORGS, NHOSTS, NSSHD, PORTS_PER_SSHD);
	printf("   HAProxy runs %s: (b3) as shipped; (b1) and (b2) that file read at run time, "
	       "without the server lines after broker1 (after broker2)\n",
	       LB_CFG);
	printf("  %-26s %8s %8s %8s %9s %8s   %s\n", "", "execs/s", "p50 ms", "p99 ms", "execs/s",
	       "p50", "execs served by broker 1 / 2 / 3");
	printf("  %-26s %8s %8s %8s %9s %8s\n", "", "", "", "", "/ (a)", "/ (a)");
	for (int k = 0; k < NWAYS; k++) {
		bool ok = series_ok(&s[k]) && series_ok(&s[0]);

		printf("  %-26s %8.0f %8.1f %8.1f ", way_names[k], series_per_s(&s[k]),
		       series_pct(&s[k], 0.5), series_pct(&s[k], 0.99));
		if (ok)
			printf("%9.2f %8.2f", series_per_s(&s[k]) / a_rate,
			       series_pct(&s[k], 0.5) / a_p50);
		else
			printf("%9s %8s", "-", "-");
		printf("   %zu / %zu / %zu", w[k].served[0], w[k].served[1], w[k].served[2]);
		if (w[k].served[NB] != 0)
			printf(" (+%zu unnamed)", w[k].served[NB]);
		printf("\n");
	}

	printf("\n   CPU seconds while each way's timed execs ran (utime + stime from /proc of the "
	       "processes started and their descendants, reaped children included); machine: all "
	       "of /proc/stat but idle\n");
	printf("  %-26s", "");
	for (int c = 0; c < CPU_N; c++)
		printf(" %9s", cpu_names[c]);
	printf(" %9s %11s\n", "others", "cores busy");
	for (int k = 0; k < NWAYS; k++) {
		double ours = 0;

		printf("  %-26s", way_names[k]);
		for (int c = 0; c < CPU_N; c++) {
			printf(" %9.2f", w[k].cpu[c]);
			if (c != CPU_MACHINE)
				ours += w[k].cpu[c];
		}
		printf(" %9.2f %11.2f\n", w[k].cpu[CPU_MACHINE] - ours,
		       w[k].cpu_wall_s > 0 ? w[k].cpu[CPU_MACHINE] / w[k].cpu_wall_s : 0);
	}
	printf("   the same per exec, in ms:\n");
	for (int k = 0; k < NWAYS; k++) {
		double ours = 0, per = s[k].n > 0 ? 1000.0 / (double)s[k].n : 0;

		printf("  %-26s", way_names[k]);
		for (int c = 0; c < CPU_N; c++) {
			printf(" %9.2f", w[k].cpu[c] * per);
			if (c != CPU_MACHINE)
				ours += w[k].cpu[c];
		}
		printf(" %9.2f\n", (w[k].cpu[CPU_MACHINE] - ours) * per);
	}
}

/* A series' failed execs as a problem, so that they make the exit status 1. */
static void series_report(const struct series *s)
{
	if (s->failures != 0)
		bench_problem("%s: %u execs failed; the first: %s", s->name, s->failures,
		              s->first_failure);
}

/* Three brokers, and three HAProxies in front of the first 1, 2 and 3 of them, all running
 * through the phase: the ways take turns without a restart between them. */
static void phase_scaling(size_t n)
{
	static const char *const lb_names[NB] = {"scale-1", "scale-2", "scale-3"};
	struct kit_broker b[NB];
	struct lb lbs[NB];
	struct way w[NWAYS];
	struct series s[NWAYS], warm;
	char cfg[NB][200];
	const struct cpu_of cpu = {.b = b, .nb = NB, .lbs = lbs, .nlb = NB};
	bool broken = false;

	memset(b, 0, sizeof(b));
	memset(lbs, 0, sizeof(lbs));
	memset(w, 0, sizeof(w));
	memset(s, 0, sizeof(s));
	memset(&warm, 0, sizeof(warm));
	for (int i = 0; i < NB && !broken; i++) {
		char name[32];

		snprintf(name, sizeof(name), "fleet-%d", i + 1);
		broken = bench_broker_start(&b[i], db, name, CONF) != 0;
	}
	for (int i = 0; i < NB && !broken; i++) {
		if (i + 1 < NB)
			broken = th_fmt(cfg[i], sizeof(cfg[i]), "%s/haproxy-%d.cfg", th.basedir,
			                i + 1) != 0 ||
			         lb_cfg_derive(cfg[i], i + 1, false) != 0;
		else
			snprintf(cfg[i], sizeof(cfg[i]), "%s", LB_CFG);
		broken = broken || lb_start(&lbs[i], lb_names[i], cfg[i], b, i + 1) != 0;
	}
	for (int k = 0; k < NWAYS; k++) {
		way_init(&w[k], way_names[k], k == 0 ? b[0].port : lbs[k - 1].port, b);
		broken = broken || series_init(&s[k], way_names[k], n) != 0;
	}
	broken = broken || series_init(&warm, "warm-up", WARM_N) != 0;
	if (!broken)
		bench_progress("warming each way's sessions: %d execs", WARM_N);
	for (int k = 0; k < NWAYS && !broken; k++) {
		warm.n = 0;
		broken = way_run(&w[k], &warm, WARM_N) != 0;
		if (warm.failures != 0)
			bench_problem("warm-up of %s: %u execs failed; the first: %s", way_names[k],
			              warm.failures, warm.first_failure);
		warm.failures = 0;
		memset(w[k].served, 0, sizeof(w[k].served));
	}
	if (!broken)
		bench_progress("%zu execs of each way in %d turns", n, TURNS);
	for (int t = 0; t < TURNS && !broken; t++) {
		size_t m = n * (size_t)(t + 1) / TURNS - n * (size_t)t / TURNS;

		for (int j = 0; j < NWAYS && !broken; j++) {
			int k = t % 2 == 0 ? j : NWAYS - 1 - j;
			struct cpu_mark cm;

			cpu_start(&cm, &cpu);
			broken = way_run(&w[k], &s[k], m) != 0;
			cpu_stop(&cm, &cpu, w[k].cpu, &w[k].cpu_wall_s);
		}
	}
	if (!broken) {
		size_t got[NB + 1];

		print_scaling(w, s, n);
		ring_shares(lbs[NB - 1].port, b, got);
		printf(
		    "\n   HAProxy's ring as shipped, asked for %d made-up workspace ids (ws-%%08x, "
		    "answered 401): broker 1 / 2 / 3 got %.0f / %.0f / %.0f %%",
		    RING_N, 100.0 * (double)got[0] / RING_N, 100.0 * (double)got[1] / RING_N,
		    100.0 * (double)got[2] / RING_N);
		if (got[NB] != 0)
			printf(", %zu other answers", got[NB]);
		printf("\n");
		if (got[NB] != 0)
			bench_problem(
			    "ring shares: %zu of %d requests not answered 401 by a broker", got[NB],
			    RING_N);
	}
	for (int k = 0; k < NWAYS; k++) {
		series_report(&s[k]);
		way_free(&w[k]);
		free(s[k].ms);
	}
	free(warm.ms);
	for (int i = 0; i < NB; i++)
		lb_stop(&lbs[i]);
	for (int i = 0; i < NB; i++)
		bench_broker_stop(&b[i]);
}

/* ------------------------------------------------------------------ 2: affinity */

/* One run: three fresh brokers, n execs while their pools fill (cold), then n more (warm). */
struct aff_run {
	bool rr;
	struct series s[2];             /* [0] cold, [1] warm */
	double handshakes[2], sessions; /* over the three brokers: during each pass; after */
	size_t served[NB + 1];          /* over both passes */
	double cpu[CPU_N], cpu_wall_s;  /* during the cold pass */
};

/* The sum over the brokers of their handshakes and pooled sessions (all states), from
 * /metrics. -1 if one did not answer. */
static int fleet_metrics(const struct kit_broker *b, double *handshakes, double *sessions)
{
	static const char *const states[] = {"exec_broker_pool_sessions{state=\"connecting\"}",
	                                     "exec_broker_pool_sessions{state=\"busy\"}",
	                                     "exec_broker_pool_sessions{state=\"idle\"}"};

	*handshakes = *sessions = 0;
	for (int i = 0; i < NB; i++) {
		struct kit_resp r;
		double h;

		kit_http(b[i].port, &(struct kit_req){.method = "GET", .path = "/metrics"}, &r);
		h = r.status == 200 ? kit_metric(r.body, "exec_broker_ssh_handshakes_total") : -1;
		if (h < 0) {
			bench_problem("%s: GET /metrics: status %d, or no handshakes in it",
			              b[i].instance, r.status);
			kit_resp_free(&r);
			return -1;
		}
		*handshakes += h;
		for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
			*sessions +=
			    kit_metric(r.body, states[k]) > 0 ? kit_metric(r.body, states[k]) : 0;
		kit_resp_free(&r);
	}
	return 0;
}

/* Three fresh brokers behind HAProxy running cfg, and a's two passes through it. */
static int affinity_run(struct aff_run *a, const char *cfg, size_t n)
{
	struct kit_broker b[NB];
	struct lb l;
	struct way w;
	const struct cpu_of cpu = {.b = b, .nb = NB, .lbs = &l, .nlb = 1};
	struct cpu_mark cm;
	double h[3], sessions;
	int rc = -1;

	memset(b, 0, sizeof(b));
	memset(&l, 0, sizeof(l));
	for (int i = 0; i < NB; i++) {
		char name[32];

		snprintf(name, sizeof(name), "affinity-%d", i + 1);
		if (bench_broker_start(&b[i], db, name, CONF) != 0)
			goto out;
	}
	if (lb_start(&l, a->rr ? "roundrobin" : "hash", cfg, b, NB) != 0 ||
	    fleet_metrics(b, &h[0], &sessions) != 0)
		goto out;
	way_init(&w, a->rr ? "roundrobin" : "hash on the workspace id", l.port, b);
	cpu_start(&cm, &cpu);
	rc = way_run(&w, &a->s[0], n);
	cpu_stop(&cm, &cpu, a->cpu, &a->cpu_wall_s);
	rc = rc != 0 ? rc : fleet_metrics(b, &h[1], &sessions);
	rc = rc != 0 ? rc : way_run(&w, &a->s[1], n);
	rc = rc != 0 ? rc : fleet_metrics(b, &h[2], &a->sessions);
	way_free(&w);
	if (rc == 0) {
		a->handshakes[0] = h[1] - h[0];
		a->handshakes[1] = h[2] - h[1];
	}
	memcpy(a->served, w.served, sizeof(a->served));
out:
	lb_stop(&l);
	for (int i = 0; i < NB; i++)
		bench_broker_stop(&b[i]);
	return rc;
}

static const char *const pass_names[2] = {"cold", "warm"};

static void print_affinity(struct aff_run a[AFF_RUNS], struct series mode[2][2], size_t n)
{
	double hs[2][2] = {{0}}, ss[2] = {0};

	printf("\n2. affinity: through HAProxy and 3 fresh brokers per run, %zu execs of `true` "
	       "while the pools fill (cold), then %zu more (warm); %d in flight, the %d workspaces "
	       "in turn, each on a host of its own; CPU seconds of the cold pass\n",
	       n, n, INFLIGHT, NHOSTS);
	printf("   hash: %s as shipped (balance hash path,field(4,/), hash-type consistent); "
	       "roundrobin: that file read at run time, with those two lines replaced by "
	       "`balance roundrobin`\n",
	       LB_CFG);
	printf("  %-3s %-10s %26s  %17s  %15s %8s %10s %8s   %s\n", "", "", "cold", "warm",
	       "handshakes", "sessions", "sshd+host", "brokers", "execs served by");
	printf("  %-3s %-10s %8s %8s %8s  %8s %8s  %7s %7s %8s %10s %8s   %s\n", "run", "balance",
	       "execs/s", "p50 ms", "p99 ms", "execs/s", "p50 ms", "cold", "warm", "after", "CPU s",
	       "CPU s", "broker 1 / 2 / 3");
	for (int i = 0; i < AFF_RUNS; i++) {
		struct aff_run *r = &a[i];

		printf(
		    "  %-3d %-10s %8.0f %8.1f %8.1f  %8.0f %8.1f  %7.0f %7.0f %8.0f %10.2f %8.2f   "
		    "%zu / %zu / %zu\n",
		    i + 1, r->rr ? "roundrobin" : "hash", series_per_s(&r->s[0]),
		    series_pct(&r->s[0], 0.5), series_pct(&r->s[0], 0.99), series_per_s(&r->s[1]),
		    series_pct(&r->s[1], 0.5), r->handshakes[0], r->handshakes[1], r->sessions,
		    r->cpu[CPU_HOSTS], r->cpu[CPU_BROKERS], r->served[0], r->served[1],
		    r->served[2]);
		hs[r->rr][0] += r->handshakes[0] / (AFF_RUNS / 2);
		hs[r->rr][1] += r->handshakes[1] / (AFF_RUNS / 2);
		ss[r->rr] += r->sessions / (AFF_RUNS / 2);
	}
	printf("  the two runs of each balance together (handshakes and sessions per run):\n");
	for (int m = 0; m < 2; m++) {
		printf("  %-10s handshakes %4.1f + %3.1f, sessions %4.1f",
		       m == 0 ? "hash" : "roundrobin", hs[m][0], hs[m][1], ss[m]);
		for (int p = 0; p < 2; p++)
			printf(";  %s %4.0f execs/s, p50 %5.1f ms, p99 %6.1f ms", pass_names[p],
			       series_per_s(&mode[m][p]), series_pct(&mode[m][p], 0.5),
			       series_pct(&mode[m][p], 0.99));
		printf("\n");
	}
	if (hs[0][0] > 0 && ss[0] > 0)
		printf("  roundrobin / hash: handshakes %.2fx, sessions %.2fx\n",
		       hs[1][0] / hs[0][0], ss[1] / ss[0]);
	for (int p = 0; p < 2; p++)
		if (series_ok(&mode[0][p]) && series_ok(&mode[1][p]))
			printf("  hash / roundrobin, %s: execs/s %.2fx, p50 %.2fx, p99 %.2fx\n",
			       pass_names[p], series_per_s(&mode[0][p]) / series_per_s(&mode[1][p]),
			       series_pct(&mode[0][p], 0.5) / series_pct(&mode[1][p], 0.5),
			       series_pct(&mode[0][p], 0.99) / series_pct(&mode[1][p], 0.99));
}

/* Runs of each balance in the order hash, roundrobin, roundrobin, hash, so that load from
 * outside falls on both alike. */
static void phase_affinity(size_t n)
{
	static const char *const mode_names[2][2] = {
	    {"affinity, hash, cold", "affinity, hash, warm"},
	    {"affinity, roundrobin, cold", "affinity, roundrobin, warm"}};
	struct aff_run a[AFF_RUNS];
	struct series mode[2][2]; /* [hash, roundrobin][cold, warm] over both runs */
	char rr_cfg[200];
	bool broken;

	memset(a, 0, sizeof(a));
	memset(mode, 0, sizeof(mode));
	broken = th_fmt(rr_cfg, sizeof(rr_cfg), "%s/haproxy-roundrobin.cfg", th.basedir) != 0 ||
	         lb_cfg_derive(rr_cfg, NB, true) != 0;
	for (int m = 0; m < 2; m++)
		for (int p = 0; p < 2; p++)
			broken = broken ||
			         series_init(&mode[m][p], mode_names[m][p], n * AFF_RUNS / 2) != 0;
	for (int i = 0; i < AFF_RUNS; i++) {
		a[i].rr = i == 1 || i == 2;
		for (int p = 0; p < 2; p++)
			broken = broken || series_init(&a[i].s[p], mode_names[a[i].rr][p], n) != 0;
	}
	for (int i = 0; i < AFF_RUNS && !broken; i++) {
		struct aff_run *r = &a[i];

		bench_progress("affinity run %d of %d: 2 x %zu execs through 3 fresh brokers, %s",
		               i + 1, AFF_RUNS, n, r->rr ? "balance roundrobin" : "as shipped");
		broken = affinity_run(r, r->rr ? rr_cfg : LB_CFG, n) != 0;
		for (int p = 0; p < 2; p++) {
			struct series *m = &mode[r->rr][p];

			for (size_t k = 0; k < r->s[p].n; k++)
				series_add(m, r->s[p].ms[k]);
			m->wall_s += r->s[p].wall_s;
			series_report(&r->s[p]);
		}
	}
	if (!broken)
		print_affinity(a, mode, n);
	for (int i = 0; i < AFF_RUNS; i++)
		for (int p = 0; p < 2; p++)
			free(a[i].s[p].ms);
	for (int m = 0; m < 2; m++)
		for (int p = 0; p < 2; p++)
			free(mode[m][p].ms);
}

int main(void)
{
	size_t n = bench_env_count("BENCH_FLEET_N", 1000);
	size_t an = bench_env_count("BENCH_FLEET_AFFINITY_N", 1000);

	if (access(LB_CFG, R_OK) != 0) {
		fprintf(stderr, "bench_fleet: run from the source tree (%s)\n", LB_CFG);
		return 1;
	}
	if (th_setup(TH_PG | TH_PG_DURABLE | TH_SSHD) != 0)
		return 1;
	bench_progress("setting up: database, %d workspaces on %d sshds listening on %d ports "
	               "each (broker %s)",
	               NHOSTS, NSSHD, PORTS_PER_SSHD, kit_broker_bin());
	if (hosts_start() == 0 && world_setup() == 0) {
		phase_scaling(n);
		phase_affinity(an);
	} else {
		bench_problem("setup failed");
	}
	bench_print_failures(NULL, 0);
	th_teardown();
	return bench_problem_count() > 0;
}
