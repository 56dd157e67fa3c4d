/* tests/check_faults_clients.c: the fault suite's client faults, with the real binary, a real
 * PostgreSQL and real sshds: clients that vanish mid-stream, half-close after their request,
 * never read, trickle or stall their heads (slowloris), or hold thousands of idle
 * connections, also
 * against a broker limited to 1,024 file descriptors. As in check_faults.c, each asserts that
 * the broker keeps serving the execs that arrive meanwhile, that every exec it accepted has
 * one final row with its real outcome (none left 'running'), and that no command outlives
 * its client. One exec cut alone is check_serve.c's client_disconnect_cancels_and_kills; one
 * client that does not read is check_serve_life.c's slow_client_is_backpressure_not_memory. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/kit/broker.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/file.h"
#include "tests/kit/frames.h"
#include "tests/kit/harness.h"
#include "tests/kit/http.h"
#include "tests/kit/proc.h"
#include "tests/kit/world.h"
#include "tests/runner.h"

#define NRUN          4 /* execs running when the fault strikes */
#define NNEW          6 /* execs sent while it lasts */
#define NCUT          3 /* clients cut, or half-closed, at once */
#define NOFILE_BROKER 1024

static struct kit_world W;

/* The workspaces of the execs that run while a fault strikes (on two sshds), and of those
 * sent meanwhile (on four, two of which no running exec holds a session to). */
static const char *const run_wss[] = {"ws-a1", "ws-c1", "ws-a2", "ws-c1"};
static const char *const new_wss[] = {"ws-c2", "ws-c3", "ws-c0", "ws-c1", "ws-c2", "ws-c3"};
#define RUN_WS(i) run_wss[(i) % 4]
#define NEW_WS(i) new_wss[(i) % 6]
#define TOK(ws)   (strcmp((ws), "ws-c2") == 0 || strcmp((ws), "ws-c3") == 0 ? W.tok_other : W.tok_org)

/* What a finished exec must show: 200, the whole stream, "ok", exit 0, its row exited 0. */
static void assert_ran(const struct kit_resp *r, const char *what)
{
	struct kit_frames f;
	char *v;

	ck_assert_msg(r->status == 200 && r->complete, "%s: %d %s %s", what, r->status, r->error,
	              r->body);
	sv_stream(r, &f);
	ck_assert_str_eq(f.out, "ok\n");
	ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
	v = sv_row(W.db, r->rid, "status || ' ' || exit_code");
	ck_assert_str_eq(v, "exited 0");
	free(v);
	kit_frames_free(&f);
}

/* NRUN execs that run (started, waiting for their gate) while a fault strikes. */
struct running {
	struct kit_conn c[NRUN];
	char *marker[NRUN], *body[NRUN];
};

static void running_start(struct running *g, int port, const char *tag)
{
	char name[160];

	for (int i = 0; i < NRUN; i++) {
		struct kit_req q = {.ws = RUN_WS(i), .token = TOK(RUN_WS(i))};

		snprintf(name, sizeof(name), "fc-%s-%d", tag, i);
		g->marker[i] = kit_tmp_path(name);
		g->body[i] = sv_marked_body(g->marker[i], 100);
		q.body = g->body[i];
		ck_assert_int_eq(kit_stream_open(&g->c[i], port, &q), 0);
	}
	for (int i = 0; i < NRUN; i++)
		sv_pid_wait(g->marker[i]);
}

/* Opens their gates; each must end as if nothing had happened. */
static void running_finish(struct running *g)
{
	struct kit_resp r;
	char name[200];

	for (int i = 0; i < NRUN; i++) {
		snprintf(name, sizeof(name), "%s.go", g->marker[i]);
		sv_touch(name);
	}
	for (int i = 0; i < NRUN; i++) {
		kit_stream_finish(&g->c[i], &r);
		assert_ran(&r, "an exec running while the fault struck");
		kit_resp_free(&r);
		snprintf(name, sizeof(name), "%s.go", g->marker[i]);
		unlink(name);
		unlink(g->marker[i]);
		free(g->marker[i]);
		free(g->body[i]);
	}
}

/* n execs at once that must all run whole, or with tolerant, each either run whole or
 * refused; max_time_s bounds each ("never happened"). How many ran. */
static int burst_or_refused(int port, int n, int max_time_s, bool tolerant)
{
	const char *argv[] = {"echo", "ok", NULL};
	char *body = sv_body(argv, NULL);
	struct kit_req q[NNEW];
	struct kit_resp r[NNEW];
	int ran = 0;

	ck_assert_int_le(n, NNEW);
	for (int i = 0; i < n; i++)
		q[i] = (struct kit_req){.ws = NEW_WS(i),
		                        .token = TOK(NEW_WS(i)),
		                        .body = body,
		                        .max_time_s = max_time_s};
	ck_assert_int_eq(kit_http_parallel(port, q, (size_t)n, r), 0);
	for (int i = 0; i < n; i++) {
		if (!tolerant || r[i].status == 200) {
			assert_ran(&r[i], "an exec sent during the fault");
			ran++;
		} else if (r[i].status != 0 && sv_rows(W.db, r[i].rid) > 0) {
			char *st = sv_row_final(W.db, r[i].rid);

			ck_assert_msg(strcmp(st, "exited") != 0, "refused %d, yet its row: %s",
			              r[i].status, st);
			free(st);
		}
		kit_resp_free(&r[i]);
	}
	free(body);
	return ran;
}

static int burst(int port, int n, int max_time_s)
{
	return burst_or_refused(port, n, max_time_s, false);
}

/* Open descriptors of pid, or -1. */
static int fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* As many descriptors as the hard limit allows, for thousands of connections. */
static void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_msg(rl.rlim_max >= want, "RLIMIT_NOFILE hard limit %llu < %llu",
	              (unsigned long long)rl.rlim_max, (unsigned long long)want);
	if (rl.rlim_cur < want) {
		rl.rlim_cur = want;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
}

/* A flood: a child process holding n connections to the broker, each doing as its mode
 * says, until told to stop; it reports what it saw. */
enum flood_mode {
	FLOOD_IDLE,    /* connect and send nothing */
	FLOOD_CHURN,   /* idle, and every connection the broker drops is made again */
	FLOOD_TRICKLE, /* a request head a byte every TRICKLE_MS, never finished */
	FLOOD_STALL,   /* a part of a head, then nothing */
};

#define TRICKLE_MS 500
#define FLOOD_HEAD "POST /v1/workspaces/ws-a1/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

/* What the child saw, sent whole (smaller than PIPE_BUF) every FLOOD_TICK_MS and at its
 * end. */
struct flood_seen {
	int connected; /* connects completed, reconnections included */
	int open;      /* connections open now */
	int max_open;
	int dropped; /* closed by the broker (EOF or reset) */
	int got_408; /* ... after a 408 reply */
	int refused; /* connects that failed */
	int bytes;   /* head bytes sent */
	int final;   /* the last report */
};

#define FLOOD_TICK_MS 100

struct flood {
	pid_t pid;
	int ctl;    /* closing it stops the child */
	int report; /* reports, non-blocking */
	struct flood_seen seen;
};

enum fconn_state { FC_NEW, FC_CONNECTING, FC_OPEN, FC_DONE };

struct fconn {
	int fd;
	enum fconn_state st;
	size_t sent;
	bool replied;
};

static void fconn_close(struct fconn *c)
{
	/* A reset, not a FIN: no TIME_WAIT left holding a port of the machine's. */
	struct linger lg = {1, 0};

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
}

static void fconn_connect(struct fconn *c, int port, struct flood_seen *s)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->sent = 0;
	c->replied = false;
	if (c->fd < 0) {
		s->refused++;
		c->st = FC_DONE;
		return;
	}
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS) {
		c->st = FC_CONNECTING;
		return;
	}
	s->refused++;
	fconn_close(c);
	c->st = FC_NEW;
}

static void flood_send(int fd, const struct flood_seen *s)
{
	(void)!write(fd, s, sizeof(*s));
}

/* The child's loop: at most 256 connects in flight at once, so that the SYNs of many do not
 * overflow the listen queue in one go. */
static void __attribute__((noreturn))
flood_child(int port, int n, enum flood_mode mode, int ctl, int report)
{
	struct fconn *cs = calloc((size_t)n, sizeof(*cs));
	struct pollfd *pf = calloc((size_t)n + 1, sizeof(*pf));
	int *idx = calloc((size_t)n + 1, sizeof(*idx));
	struct flood_seen s = {0};
	long long next_tick = 0, next_trickle = 0;
	const size_t hlen = strlen(FLOOD_HEAD);
	char buf[512];

	if (cs == NULL || pf == NULL || idx == NULL)
		_exit(2);
	for (int i = 0; i < n; i++)
		cs[i] = (struct fconn){.fd = -1, .st = FC_NEW};
	for (;;) {
		int np = 0, connecting = 0;
		long long now = kit_now_ms();
		bool trickle = mode == FLOOD_TRICKLE && now >= next_trickle;

		if (trickle)
			next_trickle = now + TRICKLE_MS;
		for (int i = 0; i < n; i++)
			connecting += cs[i].st == FC_CONNECTING;
		for (int i = 0; i < n && connecting < 256; i++)
			if (cs[i].st == FC_NEW) {
				fconn_connect(&cs[i], port, &s);
				connecting += cs[i].st == FC_CONNECTING;
			}
		pf[np] = (struct pollfd){.fd = ctl, .events = POLLIN};
		idx[np++] = -1;
		for (int i = 0; i < n; i++) {
			struct fconn *c = &cs[i];

			if (c->st == FC_OPEN && (mode == FLOOD_TRICKLE || mode == FLOOD_STALL) &&
			    !c->replied) {
				/* a stalled head is sent up to its last header's value; a trickled
				 * one a byte at a time, then a header's value forever */
				size_t want =
				    mode == FLOOD_STALL ? hlen : c->sent + (trickle ? 1 : 0);
				while (c->sent < want) {
					char ch = c->sent < hlen ? FLOOD_HEAD[c->sent] : 'x';
					if (write(c->fd, &ch, 1) != 1)
						break;
					c->sent++;
					s.bytes++;
				}
			}
			if (c->st == FC_CONNECTING || c->st == FC_OPEN) {
				pf[np] = (struct pollfd){.fd = c->fd,
				                         .events = c->st == FC_CONNECTING ? POLLOUT
				                                                          : POLLIN};
				idx[np++] = i;
			}
		}
		if (now >= next_tick) {
			next_tick = now + FLOOD_TICK_MS;
			flood_send(report, &s);
		}
		if (poll(pf, (nfds_t)np, 50) < 0 && errno != EINTR)
			_exit(3);
		if (pf[0].revents != 0)
			break; /* told to stop */
		for (int k = 1; k < np; k++) {
			struct fconn *c = &cs[idx[k]];
			bool gone = false;

			if (pf[k].revents == 0)
				continue;
			if (c->st == FC_CONNECTING) {
				int err = 0;
				socklen_t len = sizeof(err);

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err != 0) {
					s.refused++;
					fconn_close(c);
					c->st = FC_NEW;
					continue;
				}
				c->st = FC_OPEN;
				s.connected++;
				if (++s.open > s.max_open)
					s.max_open = s.open;
				continue;
			}
			for (;;) {
				ssize_t r = read(c->fd, buf, sizeof(buf) - 1);

				if (r > 0) {
					buf[r] = '\0';
					if (!c->replied && strncmp(buf, "HTTP/1.1 408", 12) == 0)
						s.got_408++;
					c->replied = true;
					continue;
				}
				gone = r == 0 || (errno != EAGAIN && errno != EINTR);
				break;
			}
			if (gone) {
				s.dropped++;
				s.open--;
				fconn_close(c);
				c->st = mode == FLOOD_CHURN ? FC_NEW : FC_DONE;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (cs[i].fd >= 0)
			fconn_close(&cs[i]);
	s.final = 1;
	fcntl(report, F_SETFL, 0);
	flood_send(report, &s);
	_exit(0);
}

static void flood_start(struct flood *f, int port, int n, enum flood_mode mode)
{
	int ctl[2], rep[2];
	pid_t parent = getpid();

	memset(f, 0, sizeof(*f));
	ck_assert_int_eq(pipe2(ctl, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(rep, O_CLOEXEC), 0);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		unsigned lo = (unsigned)(ctl[0] < rep[1] ? ctl[0] : rep[1]);
		unsigned hi = (unsigned)(ctl[0] < rep[1] ? rep[1] : ctl[0]);

		/* Nothing of the test's: another flood's control pipe held here would never
		 * close, nor would a connection the test drops. */
		if (lo > 3)
			close_range(3, lo - 1, 0);
		if (hi > lo + 1)
			close_range(lo + 1, hi - 1, 0);
		close_range(hi + 1, ~0U, 0);
		fcntl(rep[1], F_SETFL, O_NONBLOCK);
		flood_child(port, n, mode, ctl[0], rep[1]);
	}
	close(ctl[0]);
	close(rep[1]);
	f->ctl = ctl[1];
	f->report = rep[0];
	fcntl(f->report, F_SETFL, O_NONBLOCK);
}

/* Reads the child's reports; the last one counts. */
static void flood_update(struct flood *f)
{
	struct flood_seen s;

	while (read(f->report, &s, sizeof(s)) == (ssize_t)sizeof(s))
		f->seen = s;
}

/* Waits (up to ms, a "never happened" bound) until pred holds of what the child saw. */
static bool flood_until(struct flood *f, bool (*pred)(const struct flood_seen *s, int n), int n,
                        int ms)
{
	long long end = kit_now_ms() + ms;

	for (;;) {
		flood_update(f);
		if (pred(&f->seen, n))
			return true;
		if (kit_now_ms() > end)
			return false;
		kit_sleep_ms(FLOOD_TICK_MS);
	}
}

static bool all_open(const struct flood_seen *s, int n)
{
	return s->open >= n;
}

static bool all_dropped(const struct flood_seen *s, int n)
{
	return s->dropped >= n;
}

/* Stops the child, which closes its connections (with resets), and takes its last report. */
static void flood_stop(struct flood *f)
{
	struct flood_seen s;
	int st = -1;

	close(f->ctl);
	fcntl(f->report, F_SETFL, 0);
	while (read(f->report, &s, sizeof(s)) == (ssize_t)sizeof(s)) {
		f->seen = s;
		if (s.final)
			break;
	}
	close(f->report);
	ck_assert_int_eq(kit_wait(f->pid, KIT_WAIT_MS, &st), 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the flood child ended with %d", st);
	ck_assert_msg(f->seen.final, "no last report from the flood child");
}

/* Waits until the broker holds at most most descriptors (it let the connections go). */
static int broker_fds_down_to(pid_t pid, int most)
{
	long long end = kit_now_ms() + KIT_WAIT_MS;
	int n;

	while ((n = fd_count(pid)) > most && kit_now_ms() < end)
		kit_sleep_ms(100);
	return n;
}

/* NCUT streamed clients vanish mid-stream while NRUN others run and NNEW arrive: each cut
 * one's row ends 'cancelled' (the broker's outcome for a client gone) with no exit code, its
 * command and the command's child are killed, and nobody else notices. */
START_TEST(disconnect_mid_stream_while_others_run)
{
	struct kit_broker b = {0};
	struct running g;
	struct kit_conn cut[NCUT];
	char *pidf[NCUT], *body[NCUT], rid[NCUT][80], name[64], *v;
	pid_t pids[NCUT][2];

	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fc-cut", NULL), 0);
	running_start(&g, b.port, "cut");
	for (int i = 0; i < NCUT; i++) {
		const char *argv[] = {"sh", "-c", SV_SLEEPER, NULL, NULL};
		struct kit_req q = {.ws = NEW_WS(i), .token = TOK(NEW_WS(i))};

		snprintf(name, sizeof(name), "fc-cut-sleeper%d", i);
		pidf[i] = kit_tmp_path(name);
		argv[3] = pidf[i];
		body[i] = sv_body(argv, json_pack("{s:i}", "timeout_s", 100));
		q.body = body[i];
		ck_assert_int_eq(kit_stream_open(&cut[i], b.port, &q), 0);
		snprintf(rid[i], sizeof(rid[i]), "%s", cut[i].r.rid);
	}
	for (int i = 0; i < NCUT; i++)
		sv_wait_sleeper(&cut[i], pidf[i], pids[i]);
	for (int i = 0; i < NCUT; i++)
		kit_stream_abort(&cut[i]); /* the fault */
	burst(b.port, NNEW, 0);
	for (int i = 0; i < NCUT; i++) {
		char *st = sv_row_final(W.db, rid[i]);

		ck_assert_str_eq(st, "cancelled");
		free(st);
		v = sv_row(W.db, rid[i], "coalesce(exit_code::text, 'none')");
		ck_assert_str_eq(v, "none");
		free(v);
		sv_pid_gone(pids[i][0], "the command of a client that went away");
		sv_pid_gone(pids[i][1], "its child");
	}
	running_finish(&g);
	burst(b.port, NNEW, 0);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fc-cut");
	fprintf(stderr,
	        "faults_clients: disconnect: %d cut mid-stream cancelled and killed, %d running "
	        "and %d new execs ran\n",
	        NCUT, NRUN, 2 * NNEW);
	for (int i = 0; i < NCUT; i++) {
		unlink(pidf[i]);
		free(pidf[i]);
		free(body[i]);
	}
}
END_TEST

/* Clients that shut down their sending side once the request is sent (shutdown(SHUT_WR)),
 * at once or once the command runs, streamed (_i 0) or buffered (_i 1): the broker takes the FIN as
 * the client gone, as it must, since a killed client's FIN looks the same. Each such exec is
 * cancelled: its row 'cancelled' with no exit code, its command (if it started at all) killed, no
 * reply but the connection's end; execs running and arriving meanwhile are served. */
START_TEST(half_close_after_the_request_cancels_the_exec)
{
	struct kit_broker b = {0};
	struct running g;
	struct kit_conn hc[NCUT];
	struct kit_resp r;
	char *pidf[NCUT], *body[NCUT], rid[NCUT][80], name[64], inst[32], *v;
	int started = 0, replied = 0;

	snprintf(inst, sizeof(inst), "eb-fc-half%d", _i);
	ck_assert_int_eq(kit_broker_start(&b, W.db, inst, NULL), 0);
	running_start(&g, b.port, _i ? "halfb" : "halfs");
	for (int i = 0; i < NCUT; i++) {
		const char *argv[] = {"sh", "-c", SV_SLEEPER, NULL, NULL};
		struct kit_req q = {.ws = NEW_WS(i),
		                    .token = TOK(NEW_WS(i)),
		                    .accept = _i ? "application/json" : NULL};

		snprintf(name, sizeof(name), "fc-half%d-%d", _i, i);
		pidf[i] = kit_tmp_path(name);
		argv[3] = pidf[i];
		body[i] = sv_body(argv, json_pack("{s:i}", "timeout_s", 20));
		q.body = body[i];
		ck_assert_int_eq(kit_stream_open(&hc[i], b.port, &q), 0);
		snprintf(rid[i], sizeof(rid[i]), "%s", hc[i].r.rid);
		/* the fault: at once for the first (the command is not even started), once
		 * the command runs for the others */
		if (i > 0)
			sv_pid_wait(pidf[i]);
		ck_assert_int_eq(shutdown(hc[i].fd, SHUT_WR), 0);
	}
	burst(b.port, NNEW, 0);
	for (int i = 0; i < NCUT; i++) {
		char *st = sv_row_final(W.db, rid[i]);

		ck_assert_msg(strcmp(st, "cancelled") == 0, "a half-closed exec's row: %s", st);
		free(st);
		v = sv_row(W.db, rid[i], "coalesce(exit_code::text, 'none')");
		ck_assert_str_eq(v, "none");
		free(v);
		kit_stream_finish(&hc[i], &r);
		/* the connection ends without a whole reply (a stream may have begun) */
		ck_assert_msg(!r.complete, "a half-closed client was answered whole: %d %s",
		              r.status, r.body);
		replied += r.status != 0;
		kit_resp_free(&r);
		if (kit_file_exists(pidf[i])) {
			pid_t pids[2];

			started++;
			sv_read_pids(pidf[i], pids);
			sv_pid_gone(pids[0], "the command of a half-closed client");
			sv_pid_gone(pids[1], "its child");
		}
	}
	running_finish(&g);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	/* none started late, after its row was final */
	for (int i = 0; i < NCUT; i++)
		if (kit_file_exists(pidf[i])) {
			pid_t pids[2];

			sv_read_pids(pidf[i], pids);
			ck_assert_msg(!kit_pid_alive(pids[0]),
			              "a half-closed client's command runs");
		}
	sv_none_running(W.db, inst);
	ck_assert_int_ge(started, NCUT - 1);
	fprintf(stderr,
	        "faults_clients: half-close (%s): %d cancelled (%d had started, %d had a status "
	        "line), %d running and %d new execs ran\n",
	        _i ? "buffered" : "streamed", NCUT, started, replied, NRUN, NNEW);
	for (int i = 0; i < NCUT; i++) {
		unlink(pidf[i]);
		free(pidf[i]);
		free(body[i]);
	}
}
END_TEST

#define NNOREAD    16
#define NOREAD_MIB 4

/* 16 clients at once that read nothing while their commands each write 4 MiB: the broker
 * buffers a little of each (their commands pause: the SSH windows close) rather than 64
 * MiB, serves other execs meanwhile, and once the clients read, each gets every byte and
 * its row the real exit code. One such client alone is check_serve_life's
 * slow_client_is_backpressure_not_memory. */
START_TEST(many_clients_that_never_read_while_others_are_served)
{
	enum { MIB = 1024 * 1024, OUT = NOREAD_MIB * MIB };
	static const char *const argv[] = {"sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' y",
	                                   NULL};
	struct kit_broker b = {0};
	struct kit_conn c[NNOREAD];
	struct kit_resp r;
	struct kit_frames f;
	char *body = sv_body(argv, json_pack("{s:i}", "timeout_s", 100)), rid[NNOREAD][80], *v;
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[512];
	long base, peak = 0;
	long long end;
	int ran;

	/* Under ASan, freed buffers wait in its quarantine (256 MiB) and count in the RSS: the
	 * bytes that merely went through would look held. Without one, the RSS is what the
	 * broker holds (no effect on a build without ASan). */
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0", asan ? asan : "",
	         asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fc-noread", "output_cap_bytes = 8388608\n"),
	                 0);
	burst(b.port, NNEW, 0); /* warm: sessions exist, the loop has run execs */
	base = kit_proc_status_kib(b.pid, "VmRSS");
	ck_assert_int_gt(base, 0);
	for (int i = 0; i < NNOREAD; i++) {
		struct kit_req q = {
		    .ws = NEW_WS(i), .token = TOK(NEW_WS(i)), .body = body, .rcvbuf = 4096};

		ck_assert_int_eq(kit_stream_open(&c[i], b.port, &q), 0);
		snprintf(rid[i], sizeof(rid[i]), "%s", c[i].r.rid);
	}
	/* Two seconds of reading nothing, with other execs served meanwhile. */
	end = kit_now_ms() + 2000;
	ran = burst(b.port, NNEW, 0);
	while (kit_now_ms() < end) {
		long kib = kit_proc_status_kib(b.pid, "VmRSS");

		peak = kib > peak ? kib : peak;
		kit_sleep_ms(50);
	}
	for (int i = 0; i < NNOREAD; i++) {
		v = sv_row(W.db, rid[i], "status");
		ck_assert_msg(strcmp(v, "running") == 0,
		              "an exec ended (%s) with its client not reading", v);
		free(v);
	}
	/* Well under what the commands wrote (ASan alone adds some 16 MiB). */
	ck_assert_msg(peak - base < (long)NNOREAD * OUT / 2 / 1024,
	              "the broker grew by %ld KiB for %d clients that read nothing", peak - base,
	              NNOREAD);
	for (int i = 0; i < NNOREAD; i++) {
		kit_stream_finish(&c[i], &r);
		ck_assert_msg(r.complete, "a response stopped after %zu body bytes (status %d)",
		              r.body_len, r.status);
		sv_stream(&r, &f);
		ck_assert_int_eq(f.out_len, OUT);
		ck_assert_int_eq(sv_int(sv_last(&f), "exit_code"), 0);
		v = sv_row(W.db, rid[i], "status || ' ' || stdout_bytes");
		ck_assert_str_eq(v, "exited 4194304");
		free(v);
		kit_frames_free(&f);
		kit_resp_free(&r);
	}
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fc-noread");
	fprintf(stderr,
	        "faults_clients: never read: %d clients not reading %d MiB each, broker RSS +%ld "
	        "KiB; %d execs served meanwhile; then every byte read\n",
	        NNOREAD, NOREAD_MIB, peak - base, ran);
	free(body);
}
END_TEST

#define NSLOW       1000
#define SLOW_IDLE_S 2

/* 1,000 slowloris connections, half of them trickling a head a byte every half second
 * (never silent as long as the idle timeout) and half stalled mid-head: the broker serves
 * the execs running and arriving meanwhile, and drops every one of them, with a 408, by its
 * timeouts: the head must arrive whole within http_idle_timeout_s of its first byte. */
START_TEST(slowloris_connections_are_dropped_while_execs_run)
{
	struct kit_broker b = {0};
	struct running g;
	struct flood trickle, stall;
	char conf[64];
	int ran = 0;

	raise_nofile(4096);
	snprintf(conf, sizeof(conf), "http_idle_timeout_s = %d\n", SLOW_IDLE_S);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fc-slow", conf), 0);
	running_start(&g, b.port, "slow");
	flood_start(&trickle, b.port, NSLOW / 2, FLOOD_TRICKLE);
	flood_start(&stall, b.port, NSLOW / 2, FLOOD_STALL);
	ran += burst(b.port, NNEW, 0);
	/* The bound only says "never": with a 2 s timeout they go in seconds. */
	ck_assert_msg(flood_until(&stall, all_dropped, NSLOW / 2, KIT_WAIT_MS),
	              "stalled heads: %d of %d dropped", stall.seen.dropped, NSLOW / 2);
	ck_assert_msg(flood_until(&trickle, all_dropped, NSLOW / 2, KIT_WAIT_MS),
	              "trickled heads: %d of %d dropped (%d bytes sent)", trickle.seen.dropped,
	              NSLOW / 2, trickle.seen.bytes);
	ran += burst(b.port, NNEW, 0);
	flood_stop(&trickle);
	flood_stop(&stall);
	ck_assert_int_eq(trickle.seen.connected, NSLOW / 2);
	ck_assert_int_eq(stall.seen.connected, NSLOW / 2);
	ck_assert_int_eq(trickle.seen.got_408 + stall.seen.got_408, NSLOW);
	running_finish(&g);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fc-slow");
	fprintf(stderr,
	        "faults_clients: slowloris: %d trickling (%d bytes) and %d stalled dropped, %d "
	        "with 408; %d running and %d new execs ran\n",
	        trickle.seen.dropped, trickle.seen.bytes, stall.seen.dropped,
	        trickle.seen.got_408 + stall.seen.got_408, NRUN, ran);
}
END_TEST

#define NIDLE 10000

/* 10,000 idle connections held open: the broker takes them all and serves the execs
 * running and arriving meanwhile, then lets every descriptor go when they close. */
START_TEST(ten_thousand_idle_connections_while_execs_run)
{
	/* its own limit: the default max_connections (three quarters) must hold them all */
	struct kit_broker b = {.nofile = NIDLE * 3 / 2};
	struct running g;
	struct flood f;
	int base, peak, after, ran = 0;
	char *m;

	raise_nofile(NIDLE * 3 / 2);
	ck_assert_int_eq(kit_broker_start(&b, W.db, "eb-fc-idle", NULL), 0);
	running_start(&g, b.port, "idle");
	base = fd_count(b.pid);
	flood_start(&f, b.port, NIDLE, FLOOD_IDLE);
	ck_assert_msg(flood_until(&f, all_open, NIDLE, 60000), "%d of %d connections open",
	              f.seen.open, NIDLE);
	ran += burst(b.port, NNEW, 0);
	peak = fd_count(b.pid);
	ck_assert_msg(peak >= base + NIDLE, "the broker holds %d descriptors (%d before)", peak,
	              base);
	flood_update(&f);
	ck_assert_msg(f.seen.dropped == 0, "the broker dropped %d idle connections",
	              f.seen.dropped);
	running_finish(&g);
	flood_stop(&f);
	after = broker_fds_down_to(b.pid, base + 16);
	ck_assert_msg(after <= base + 16, "the broker still holds %d descriptors (%d before)",
	              after, base);
	ran += burst(b.port, NNEW, 0);
	m = sv_metrics(b.port);
	free(m);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	sv_none_running(W.db, "eb-fc-idle");
	fprintf(stderr,
	        "faults_clients: idle: %d connections held, broker descriptors %d -> %d -> %d; "
	        "%d running and %d new execs ran\n",
	        f.seen.max_open, base, peak, after, NRUN, ran);
}
END_TEST

#define NCHURN       1500
#define CHURN_IDLE_S 2

/* The broker limited to 1,024 file descriptors (a LimitNOFILE) while 1,500 connections flood
 * it, each made again as soon as the broker drops it at its idle timeout. With the default
 * max_connections (_i 0), every exec it accepts meanwhile runs whole: its SSH sessions and
 * database connections still get descriptors, and it never runs out of them. With
 * max_connections set far above the limit (_i 1), accept() fails with EMFILE: execs may be
 * refused then, but each one's row is final. Either way the broker never crashes nor spins
 * (it burns well under a core), and once the flood goes it serves as before and lets its
 * descriptors go. */
START_TEST(fd_limit_1024_under_an_idle_flood)
{
	struct kit_broker b = {.nofile = NOFILE_BROKER};
	struct running g;
	struct flood f;
	char conf[200], inst[32], *m;
	int base, peak = 0, after, ran = 0, during = 0;
	bool emfile;
	double cpu0, cpu1;
	long long t0, t1;

	raise_nofile(4096);
	/* Every exec needs an SSH session of its own, and idle ones close at once: the
	 * execs sent during the flood open new connections to their hosts. */
	snprintf(conf, sizeof(conf),
	         "http_idle_timeout_s = %d\npool_max_channels_per_session = 1\n"
	         "pool_max_sessions_per_host = 16\npool_idle_ttl_s = 1\n%s",
	         CHURN_IDLE_S, _i ? "max_connections = 100000\n" : "");
	snprintf(inst, sizeof(inst), "eb-fc-nofile%d", _i);
	ck_assert_int_eq(kit_broker_start(&b, W.db, inst, conf), 0);
	running_start(&g, b.port, _i ? "nofile1" : "nofile0");
	base = fd_count(b.pid);
	flood_start(&f, b.port, NCHURN, FLOOD_CHURN);
	/* the flood fills what the broker takes: the rest waits in the listen queue */
	ck_assert_msg(flood_until(&f, all_open, NOFILE_BROKER, 60000),
	              "%d connections of the flood open", f.seen.open);
	t0 = kit_now_ms();
	cpu0 = kit_proc_cpu_s(b.pid);
	for (int i = 0; i < 3; i++) {
		int n = fd_count(b.pid);

		peak = n > peak ? n : peak;
		during += burst_or_refused(b.port, NNEW, 90, _i == 1);
		kit_sleep_ms(1500); /* the sessions close: the next execs need new ones */
	}
	running_finish(&g);
	t1 = kit_now_ms();
	cpu1 = kit_proc_cpu_s(b.pid);
	ck_assert_msg(kit_pid_alive(b.pid), "the broker died under the flood");
	/* A spin on EMFILE is a whole core; serving the flood and the execs is far less. */
	ck_assert_msg(cpu1 - cpu0 < 0.5 * (double)(t1 - t0) / 1000.0,
	              "the broker burnt %.1f s of CPU in %.1f s", cpu1 - cpu0,
	              (double)(t1 - t0) / 1000.0);
	flood_stop(&f);
	after = broker_fds_down_to(b.pid, base + 16);
	ran += burst(b.port, NNEW, 0);
	m = sv_metrics(b.port);
	free(m);
	ck_assert_int_eq(kit_broker_stop(&b), 0);
	emfile = kit_file_contains(b.log, 0, "Too many open files");
	/* with the default cap the broker keeps its reserve: it never ran out */
	ck_assert_msg(_i == 1 || !emfile, "the broker ran out of descriptors (see %s)", b.log);
	sv_none_running(W.db, inst);
	fprintf(stderr,
	        "faults_clients: nofile 1024 (%s): flood of %d made %d connections, %d dropped "
	        "by the broker; broker descriptors %d -> %d -> %d%s; cpu %.1f s in %.1f s; %d "
	        "running ran, %d of %d sent during the flood and %d after\n",
	        _i ? "max_connections 100000" : "default max_connections", NCHURN, f.seen.connected,
	        f.seen.dropped, base, peak, after, emfile ? " (it hit EMFILE)" : "", cpu1 - cpu0,
	        (double)(t1 - t0) / 1000.0, NRUN, during, 3 * NNEW, ran);
}
END_TEST

#define ADD(s, fn) SV_ADD_LOOP(s, fn, 1, 120)

int main(void)
{
	Suite *s = suite_create("faults_clients");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0 || kit_world_setup(&W) != 0) {
		th_teardown();
		return EXIT_FAILURE;
	}
	ADD(s, disconnect_mid_stream_while_others_run);
	SV_ADD_LOOP(s, half_close_after_the_request_cancels_the_exec, 2, 120);
	ADD(s, many_clients_that_never_read_while_others_are_served);
	ADD(s, slowloris_connections_are_dropped_while_execs_run);
	ADD(s, ten_thousand_idle_connections_while_execs_run);
	SV_ADD_LOOP(s, fd_limit_1024_under_an_idle_flood, 2, 120);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
