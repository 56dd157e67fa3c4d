/* db/pgasync.c: the asynchronous PostgreSQL pool: connections, the query FIFO and the
 * reporting of outcomes, all on the caller's event_base. libpq rules this file is built
 * around:
 *  - PQconnectPoll may close its socket and open another (next address, SSL refused), maybe
 *    with the same number, so the socket event is re-registered after every step;
 *  - PQconnectPoll ignores connect_timeout: a timer of ours enforces it. It cannot tell
 *    libpq to give up one host and go on to the next, as libpq's own blocking connect does
 *    at connect_timeout, so a conninfo that lists several hosts is tried one host per
 *    attempt, in its order: the next host at once, the backoff only after the last;
 *  - PQgetResult blocks while PQisBusy is true, non-blocking mode or not, so it is only
 *    called when PQisBusy says 0;
 *  - since PostgreSQL 12 a failed write is not reported by PQsendQueryParams or PQflush
 *    but by the next read, so a statement handed to a dead server looks sent; before
 *    sending on an idle connection, whatever the server said meanwhile (its FATAL, its
 *    EOF) is read first, with two PQconsumeInput calls: one reads once and stops, so the
 *    EOF behind a FATAL only shows to the second;
 *  - while PQflush returns 1 the socket is watched for reading as well: the server may be
 *    waiting for us to read before it reads more.
 * Callbacks run only from the report event, after the outcome was queued on p->done, so no
 * connection handler is on the stack when user code runs; a pgasync_free from a callback
 * is finished when that callback returns. */
#include "db/pgasync.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "common/err.h"
#include "common/fsm.h"
#include "db/db.h"

#define BACKOFF_FIRST_MS          100
#define BACKOFF_MAX_MS            5000
#define CONNECT_TIMEOUT_DEFAULT_S 10
#define MAX_PARAMS                65535 /* the protocol's limit */

enum conn_state {
	CONN_DOWN,       /* no PGconn; the timer starts the next attempt */
	CONN_CONNECTING, /* PQconnectPoll steps; the timer is the connect timeout */
	CONN_IDLE,       /* connected, no statement; read only to see the server go away */
	CONN_SENDING,    /* statement handed to libpq, PQflush returned 1; the timer: its answer */
	CONN_READING,    /* statement sent: PQconsumeInput, PQgetResult until NULL; the timer */
};

enum query_state {
	Q_NEW,       /* being built by pgasync_query */
	Q_QUEUED,    /* on p->queue, deadline timer armed */
	Q_RUNNING,   /* on a connection (q->c) */
	Q_DONE,      /* outcome known, on p->done until reported */
	Q_REPORTING, /* its callback runs; freed when it returns */
};

struct conn {
	struct pgasync *p;
	enum conn_state state;
	PGconn *pg;
	struct event *ev; /* PQsocket(pg), re-assigned when the socket or the interest changes */
	evutil_socket_t ev_fd;
	short ev_what; /* 0: not added */
	struct event *timer;
	int backoff_ms;          /* the next wait in CONN_DOWN */
	int host;                /* the next attempt's entry of the host lists */
	struct pgasync_query *q; /* SENDING/READING; NULL once cancelled: the result is dropped */
	PGresult *res;           /* kept so far: the first error, else the last result */
	uint32_t prepared;       /* bit i: p->stmts[i] is prepared on this PGconn */
	int preparing;           /* 1 + the index of the statement whose PQsendPrepare is in
	                          * flight (before q itself), or 0 */
};

TAILQ_HEAD(query_list, pgasync_query);

struct pgasync {
	struct event_base *base;
	char *conninfo;
	int connect_timeout_s; /* 0: none */
	/* A conninfo that lists several hosts: its lists (NULL when it gives none) and how many
	 * hosts; nhosts is 0 when libpq is given the conninfo as it is. */
	char *host_list, *hostaddr_list, *port_list;
	int nhosts;
	/* Several hosts given to libpq in every attempt, as the conninfo says them: a first one
	 * that takes connections and never answers holds the attempt (pgasync_hosts_whole). */
	bool hosts_whole;
	int nconns;
	struct conn *conns;
	struct query_list queue; /* FIFO */
	struct query_list done;  /* outcomes waiting for the report event */
	unsigned nqueued, ndone;
	struct event *report;
	bool dispatching;    /* inside pgasync_dispatch: an inner call leaves it to the loop */
	bool reporting;      /* inside report_cb: pgasync_free is finished there */
	bool free_requested; /* pgasync_free was called from a callback */
	struct pgasync_stats stats;            /* the counters; the gauges are computed on demand */
	const char *stmts[PGASYNC_MAX_STATIC]; /* pgasync_query_static's statements, by address */
	int nstmts;
	char last_error[256]; /* why the last attempt failed or the last connection broke */
};

struct pgasync_query {
	struct pgasync *p;
	enum query_state state;
	struct conn *c; /* Q_RUNNING */
	const char *sql;
	int nparams;
	int stmt;              /* index in p->stmts (prepared per connection), or -1 */
	long long deadline_ms; /* CLOCK_MONOTONIC */
	struct event *timer;
	pgasync_cb cb;
	void *arg;
	PGresult *res; /* Q_DONE on success */
	char err[512]; /* Q_DONE on failure */
	char sqlstate[6];
	TAILQ_ENTRY(pgasync_query) link; /* p->queue or p->done */
	const char *params[];            /* then sql and the parameters' text, same allocation */
};

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_read(struct conn *c);
static void pgasync_dispatch(struct pgasync *p);

static const char *const conn_state_names[] = {"down", "connecting", "idle", "sending", "reading"};
static const unsigned conn_legal[] = {
    [CONN_DOWN] = FSM_BIT(CONN_CONNECTING),
    [CONN_CONNECTING] = FSM_BIT(CONN_IDLE) | FSM_BIT(CONN_DOWN),
    [CONN_IDLE] = FSM_BIT(CONN_SENDING) | FSM_BIT(CONN_DOWN),
    [CONN_SENDING] = FSM_BIT(CONN_READING) | FSM_BIT(CONN_DOWN),
    [CONN_READING] = FSM_BIT(CONN_IDLE) | FSM_BIT(CONN_DOWN),
};
static const struct fsm conn_fsm = {"pgasync connection", conn_state_names, conn_legal, 5};

static const char *const query_state_names[] = {"new", "queued", "running", "done", "reporting"};
static const unsigned query_legal[] = {
    [Q_NEW] = FSM_BIT(Q_QUEUED) | FSM_BIT(Q_DONE),
    [Q_QUEUED] = FSM_BIT(Q_RUNNING) | FSM_BIT(Q_DONE),
    [Q_RUNNING] = FSM_BIT(Q_QUEUED) | FSM_BIT(Q_DONE),
    [Q_DONE] = FSM_BIT(Q_REPORTING),
    [Q_REPORTING] = 0,
};
static const struct fsm query_fsm = {"pgasync query", query_state_names, query_legal, 5};

static void conn_set_state(struct conn *c, enum conn_state st)
{
	FSM_SET(&conn_fsm, c->state, st, NULL);
}

static void query_set_state(struct pgasync_query *q, enum query_state st)
{
	FSM_SET(&query_fsm, q->state, st, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void timer_in_ms(struct event *ev, long long ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

static bool result_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* The primary message alone: DETAIL may quote row values, which do not belong in logs.
 * query_fail folds it into one line. */
static void result_error(const PGresult *res, char *err, size_t errlen, char sqlstate[6])
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	snprintf(sqlstate, 6, "%s", state != NULL ? state : "");
	snprintf(err, errlen, "%s", primary != NULL ? primary : PQresultErrorMessage(res));
	if (err[0] == '\0')
		snprintf(err, errlen, "%s", PQresStatus(PQresultStatus(res)));
}

/* ------------------------------------------------------------------ queries */

static void query_free(struct pgasync_query *q)
{
	PQclear(q->res);
	event_free(q->timer);
	free(q);
}

/* Takes q off the queue or its connection and queues its outcome for the report event. */
static void query_done(struct pgasync_query *q)
{
	struct pgasync *p = q->p;

	if (q->state == Q_QUEUED) {
		TAILQ_REMOVE(&p->queue, q, link);
		p->nqueued--;
	}
	if (q->c != NULL) {
		q->c->q = NULL;
		q->c = NULL;
	}
	evtimer_del(q->timer);
	query_set_state(q, Q_DONE);
	TAILQ_INSERT_TAIL(&p->done, q, link);
	p->ndone++;
	event_active(p->report, EV_TIMEOUT, 0);
}

static void query_succeed(struct pgasync_query *q, PGresult *res /* transferred */)
{
	q->res = res;
	query_done(q);
}

static void query_fail(struct pgasync_query *q, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void query_fail(struct pgasync_query *q, const char *sqlstate, const char *fmt, ...)
{
	char line[sizeof(q->err)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	db_error_line(line, q->err, sizeof(q->err));
	snprintf(q->sqlstate, sizeof(q->sqlstate), "%s", sqlstate);
	query_done(q);
}

/* Back at the head of the queue: nothing of it reached the server. */
static void query_requeue(struct pgasync_query *q)
{
	struct pgasync *p = q->p;

	if (q->c != NULL) {
		q->c->q = NULL;
		q->c = NULL;
	}
	query_set_state(q, Q_QUEUED);
	TAILQ_INSERT_HEAD(&p->queue, q, link);
	p->nqueued++;
	timer_in_ms(q->timer, q->deadline_ms - now_ms());
}

static void query_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync_query *q = arg;
	struct pgasync *p = q->p;
	int up = 0;

	(void)fd;
	(void)what;
	if (q->state != Q_QUEUED)
		abort(); /* the timer is deleted when the query leaves the queue */
	for (int i = 0; i < p->nconns; i++)
		up += p->conns[i].state >= CONN_IDLE;
	if (up > 0)
		query_fail(q, PGASYNC_SQLSTATE_UNAVAILABLE,
		           "database unavailable: all %d connections busy until the deadline", up);
	else if (p->last_error[0] != '\0')
		query_fail(q, PGASYNC_SQLSTATE_UNAVAILABLE, "database unavailable: %s",
		           p->last_error);
	else
		query_fail(q, PGASYNC_SQLSTATE_UNAVAILABLE,
		           "database unavailable: still connecting at the deadline");
}

/* ------------------------------------------------------------------ connections */

static void notice_ignore(void *arg, const PGresult *res)
{
	/* libpq would print notices on stderr; the broker has no database log to put them in
	 * yet, and a NOTICE never changes a statement's outcome. */
	(void)arg;
	(void)res;
}

/* Watches the connection's socket for what; re-registers it when asked (force) since
 * libpq may have replaced the socket under the same number. */
static int conn_watch(struct conn *c, short what, bool force)
{
	evutil_socket_t fd = PQsocket(c->pg);

	if (fd < 0)
		return EB_ERR_DB;
	if (!force && c->ev_what == what && c->ev_fd == fd)
		return 0;
	event_del(c->ev);
	c->ev_what = 0;
	if (event_assign(c->ev, c->p->base, fd, what | EV_PERSIST, conn_io_cb, c) != 0 ||
	    event_add(c->ev, NULL) != 0)
		return EB_ERR_IO;
	c->ev_fd = fd;
	c->ev_what = what;
	return 0;
}

/* Lets go of the PGconn. Its socket event goes first: the number may be reused at once. */
static void conn_drop(struct conn *c)
{
	event_del(c->ev);
	c->ev_what = 0;
	c->ev_fd = -1;
	evtimer_del(c->timer);
	PQclear(c->res);
	c->res = NULL;
	PQfinish(c->pg);
	c->pg = NULL;
}

/* Why the connection broke: the server's own last word when it sent one. */
static void conn_lost_reason(const struct conn *c, char *why, size_t len)
{
	const char *primary = NULL;

	if (c->res != NULL && PQresultStatus(c->res) == PGRES_FATAL_ERROR)
		primary = PQresultErrorField(c->res, PG_DIAG_MESSAGE_PRIMARY);
	db_error_line(primary != NULL ? primary : PQerrorMessage(c->pg), why, len);
	if (why[0] == '\0')
		snprintf(why, len, "the server closed the connection");
}

static void conn_down(struct conn *c, const char *why)
{
	snprintf(c->p->last_error, sizeof(c->p->last_error), "%s", why);
	conn_drop(c);
	conn_set_state(c, CONN_DOWN);
	timer_in_ms(c->timer, c->backoff_ms);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void conn_connect_fail(struct conn *c, const char *why)
{
	struct pgasync *p = c->p;

	p->stats.connects_failed++;
	if (c->host + 1 < p->nhosts) {
		/* The next host at once, as libpq goes through its list. */
		c->host++;
		snprintf(p->last_error, sizeof(p->last_error), "%s", why);
		conn_drop(c);
		conn_set_state(c, CONN_DOWN);
		timer_in_ms(c->timer, 0);
		return;
	}
	c->host = 0;
	conn_down(c, why);
}

/* An established connection broke; the statement on it, if any, failed with it. */
static void conn_lose(struct conn *c, const char *why)
{
	c->p->stats.conns_lost++;
	if (c->q != NULL)
		query_fail(c->q, PGASYNC_SQLSTATE_LOST, "connection to the database lost: %s", why);
	conn_down(c, why);
}

static void conn_lose_pg(struct conn *c)
{
	char why[256];

	conn_lost_reason(c, why, sizeof(why));
	conn_lose(c, why);
}

/* Entry i of a comma-separated list, in buf when the list has several; a list of one entry
 * is that entry for every i (one port for every host). NULL for no list. */
static const char *list_entry(const char *list, int i, char *buf, size_t len)
{
	if (list == NULL || strchr(list, ',') == NULL)
		return list;
	for (; i > 0; i--)
		list = strchr(list, ',') + 1;
	snprintf(buf, len, "%.*s", (int)strcspn(list, ","), list);
	return buf;
}

static void conn_connect_start(struct conn *c)
{
	/* Earlier keywords are defaults; the expanded conninfo after them overrides them, and
	 * the keywords after it override it: one host of its list. A sent statement cannot be
	 * cancelled without blocking (libpq 15), so the server bounds it. */
	const char *keys[] = {
	    "fallback_application_name", "options", "dbname", "host", "hostaddr", "port", NULL};
	const char *vals[] = {"exec-broker",
	                      "-c statement_timeout=" PGASYNC_STATEMENT_TIMEOUT,
	                      c->p->conninfo,
	                      NULL,
	                      NULL,
	                      NULL,
	                      NULL};
	char why[256], host[1024], hostaddr[64], port[32];

	if (c->p->nhosts > 0) {
		/* NULL values are skipped: the conninfo's own stays. */
		vals[3] = list_entry(c->p->host_list, c->host, host, sizeof(host));
		vals[4] = list_entry(c->p->hostaddr_list, c->host, hostaddr, sizeof(hostaddr));
		vals[5] = list_entry(c->p->port_list, c->host, port, sizeof(port));
	}
	c->pg = PQconnectStartParams(keys, vals, 1);
	c->prepared = 0; /* a new server session knows none */
	c->preparing = 0;
	conn_set_state(c, CONN_CONNECTING);
	if (c->pg == NULL) {
		conn_connect_fail(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		db_error_line(PQerrorMessage(c->pg), why, sizeof(why));
		conn_connect_fail(c, why);
		return;
	}
	PQsetNoticeReceiver(c->pg, notice_ignore, NULL);
	if (c->p->connect_timeout_s > 0)
		timer_in_ms(c->timer, c->p->connect_timeout_s * 1000LL);
	/* Before the first PQconnectPoll, libpq says to wait as if it had asked for writing. */
	if (conn_watch(c, EV_WRITE, true) != 0)
		conn_connect_fail(c, "cannot watch the connection's socket");
}

static void conn_ready(struct conn *c)
{
	evtimer_del(c->timer);
	if (PQsetnonblocking(c->pg, 1) != 0) {
		char why[256];
		db_error_line(PQerrorMessage(c->pg), why, sizeof(why));
		conn_connect_fail(c, why);
		return;
	}
	c->backoff_ms = BACKOFF_FIRST_MS;
	c->host = 0; /* the next connection starts again from the first host */
	conn_set_state(c, CONN_IDLE);
	if (conn_watch(c, EV_READ, true) != 0) {
		conn_lose(c, "cannot watch the connection's socket");
		return;
	}
	pgasync_dispatch(c->p);
}

static void conn_connect_step(struct conn *c)
{
	char why[256];
	short what;

	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		what = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		what = EV_WRITE;
		break;
	case PGRES_POLLING_OK:
		conn_ready(c);
		return;
	case PGRES_POLLING_FAILED:
		db_error_line(PQerrorMessage(c->pg), why, sizeof(why));
		conn_connect_fail(c, why[0] ? why : "connection failed");
		return;
	default:
		abort(); /* PGRES_POLLING_ACTIVE is never returned */
	}
	if (conn_watch(c, what, true) != 0)
		conn_connect_fail(c, "cannot watch the connection's socket");
}

/* Reads what an idle connection received. False if that showed it broken (it is then
 * down). */
static bool conn_idle_check(struct conn *c)
{
	PGnotify *n;

	/* Twice: see the top of the file. */
	if (PQconsumeInput(c->pg) == 0 || PQconsumeInput(c->pg) == 0)
		goto lost;
	(void)PQisBusy(c->pg); /* parses it: notices, or the server's FATAL before it goes */
	while ((n = PQnotifies(c->pg)) != NULL)
		PQfreemem(n);
	if (PQstatus(c->pg) != CONNECTION_BAD)
		return true;
lost:
	conn_lose_pg(c);
	return false;
}

static void conn_flush(struct conn *c, bool readable)
{
	if (readable && PQconsumeInput(c->pg) == 0) {
		conn_lose_pg(c);
		return;
	}
	switch (PQflush(c->pg)) {
	case 0:
		conn_set_state(c, CONN_READING);
		if (conn_watch(c, EV_READ, false) != 0) {
			conn_lose(c, "cannot watch the connection's socket");
			return;
		}
		/* The answer may be in libpq's buffer already, with nothing left on the socket
		 * to wake us. */
		conn_read(c);
		return;
	case 1:
		if (conn_watch(c, EV_READ | EV_WRITE, false) != 0)
			conn_lose(c, "cannot watch the connection's socket");
		return;
	case -1:
		conn_lose_pg(c);
		return;
	default:
		abort(); /* PQflush returns 0, 1 or -1 */
	}
}

static void conn_send(struct conn *c, struct pgasync_query *q)
{
	char why[256];

	char name[16];
	int sent;

	c->q = q;
	q->c = c;
	if (q->stmt >= 0) {
		/* Parsed and planned once per connection, then only bound and run. */
		snprintf(name, sizeof(name), "eb_%d", q->stmt);
		c->preparing = c->prepared & (UINT32_C(1) << q->stmt) ? 0 : q->stmt + 1;
		sent = c->preparing
		           ? PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL)
		           : PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0);
	} else {
		sent = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
	}
	if (!sent) {
		c->preparing = 0;
		db_error_line(PQerrorMessage(c->pg), why, sizeof(why));
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			/* Nothing was sent: the query waits for another connection. */
			query_requeue(q);
			conn_lose(c, why);
			return;
		}
		query_fail(q, "", "%s", why[0] ? why : "libpq refused the statement");
		return;
	}
	conn_set_state(c, CONN_SENDING);
	timer_in_ms(c->timer, PGASYNC_ANSWER_TIMEOUT_MS);
	conn_flush(c, false);
}

/* The statement's last result came: report it and take the next one. */
static void conn_finish(struct conn *c)
{
	PGresult *res = c->res;
	struct pgasync_query *q = c->q;

	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lose_pg(c);
		return;
	}
	c->res = NULL;
	if (c->preparing) {
		/* The statement is prepared now (whether or not q still wants it): run q. */
		if (res != NULL && result_ok(res))
			c->prepared |= UINT32_C(1) << (c->preparing - 1);
		c->preparing = 0;
		if (res != NULL && result_ok(res) && q != NULL) {
			PQclear(res);
			evtimer_del(c->timer);
			conn_set_state(c, CONN_IDLE);
			conn_send(c, q);
			return;
		}
	}
	if (q == NULL) {
		PQclear(res); /* cancelled while it ran */
	} else if (res != NULL && result_ok(res)) {
		query_succeed(q, res);
	} else if (res != NULL) {
		char line[sizeof(q->err)], state[6];
		result_error(res, line, sizeof(line), state);
		PQclear(res);
		query_fail(q, state, "%s", line);
		if (strcmp(state, "25006") == 0) {
			/* The server refuses writes (a standby, a primary fenced while another is
			 * promoted): a new connection goes through the host list again, where
			 * target_session_attrs=read-write finds the writable one. */
			conn_lose(c, "the server is read-only");
			pgasync_dispatch(c->p);
			return;
		}
	} else {
		query_fail(q, "", "the server sent no result");
	}
	evtimer_del(c->timer);
	conn_set_state(c, CONN_IDLE);
	if (conn_watch(c, EV_READ, false) != 0) {
		conn_lose(c, "cannot watch the connection's socket");
		return;
	}
	pgasync_dispatch(c->p);
}

static void conn_keep_result(struct conn *c, PGresult *r)
{
	if (c->res != NULL && !result_ok(c->res)) {
		PQclear(r);
		return;
	}
	PQclear(c->res);
	c->res = r;
}

static void conn_read(struct conn *c)
{
	ExecStatusType st;
	PGresult *r;

	if (PQconsumeInput(c->pg) == 0) {
		conn_lose_pg(c);
		return;
	}
	while (!PQisBusy(c->pg)) {
		r = PQgetResult(c->pg);
		if (r == NULL) {
			conn_finish(c);
			return;
		}
		st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			/* Leaving COPY takes a conversation this pool does not have; starting
			 * afresh is simpler, and no caller has a reason to send COPY. */
			PQclear(r);
			if (c->q != NULL)
				query_fail(c->q, "", "COPY is not supported by pgasync");
			conn_down(c, "a COPY statement reset the connection");
			return;
		}
		conn_keep_result(c, r);
	}
	if (PQstatus(c->pg) == CONNECTION_BAD)
		conn_lose_pg(c);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	switch (c->state) {
	case CONN_CONNECTING:
		conn_connect_step(c);
		break;
	case CONN_IDLE:
		conn_idle_check(c);
		break;
	case CONN_SENDING:
		conn_flush(c, (what & EV_READ) != 0);
		break;
	case CONN_READING:
		conn_read(c);
		break;
	default:
		abort(); /* a connection that is down has no socket event */
	}
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char why[64];

	(void)fd;
	(void)what;
	switch (c->state) {
	case CONN_DOWN:
		conn_connect_start(c);
		break;
	case CONN_CONNECTING:
		snprintf(why, sizeof(why), "no connection within %d s", c->p->connect_timeout_s);
		conn_connect_fail(c, why);
		break;
	case CONN_SENDING:
	case CONN_READING:
		/* Not even the server's statement_timeout came back: nobody answers there. */
		snprintf(why, sizeof(why), "no answer within %d s of a statement",
		         PGASYNC_ANSWER_TIMEOUT_MS / 1000);
		conn_lose(c, why);
		pgasync_dispatch(c->p);
		break;
	default:
		abort(); /* the timer does not run while idle */
	}
}

/* ------------------------------------------------------------------ pool */

/* Hands queued queries, oldest first, to idle connections. */
static void pgasync_dispatch(struct pgasync *p)
{
	struct pgasync_query *q;
	struct conn *c;

	/* A connection freed by a nested call is found by the loop below on its next turn. */
	if (p->dispatching)
		return;
	p->dispatching = true;
	while ((q = TAILQ_FIRST(&p->queue)) != NULL) {
		c = NULL;
		for (int i = 0; i < p->nconns && c == NULL; i++)
			if (p->conns[i].state == CONN_IDLE)
				c = &p->conns[i];
		if (c == NULL)
			break;
		if (!conn_idle_check(c))
			continue; /* it is down now: try another */
		TAILQ_REMOVE(&p->queue, q, link);
		p->nqueued--;
		evtimer_del(q->timer);
		query_set_state(q, Q_RUNNING);
		conn_send(c, q);
	}
	p->dispatching = false;
}

static void pgasync_destroy(struct pgasync *p)
{
	struct pgasync_query *q;

	for (int i = 0; i < p->nconns; i++) {
		struct conn *c = &p->conns[i];
		if (c->q != NULL)
			query_free(c->q);
		if (c->ev != NULL)
			event_free(c->ev); /* before PQfinish closes the socket it watches */
		if (c->timer != NULL)
			event_free(c->timer);
		PQclear(c->res);
		PQfinish(c->pg);
	}
	while ((q = TAILQ_FIRST(&p->queue)) != NULL) {
		TAILQ_REMOVE(&p->queue, q, link);
		query_free(q);
	}
	while ((q = TAILQ_FIRST(&p->done)) != NULL) {
		TAILQ_REMOVE(&p->done, q, link);
		query_free(q);
	}
	if (p->report != NULL)
		event_free(p->report);
	free(p->conns);
	free(p->conninfo);
	free(p->host_list);
	free(p->hostaddr_list);
	free(p->port_list);
	free(p);
}

/* Runs the callbacks of the outcomes that were waiting when it started; those that arrive
 * meanwhile wait for the next turn, so callbacks that queue work cannot starve the loop. */
static void report_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgasync *p = arg;
	struct pgasync_query *q;
	unsigned n = p->ndone;

	(void)fd;
	(void)what;
	p->reporting = true;
	while (n-- > 0 && !p->free_requested && (q = TAILQ_FIRST(&p->done)) != NULL) {
		TAILQ_REMOVE(&p->done, q, link);
		p->ndone--;
		query_set_state(q, Q_REPORTING);
		if (q->res != NULL)
			p->stats.queries_ok++;
		else
			p->stats.queries_failed++;
		q->cb(q->res, q->res != NULL ? NULL : q->err, q->res != NULL ? "" : q->sqlstate,
		      q->arg);
		query_free(q);
	}
	p->reporting = false;
	if (p->free_requested)
		pgasync_destroy(p);
	else if (p->ndone > 0)
		event_active(p->report, EV_TIMEOUT, 0);
}

/* Entries of a comma-separated list, empty ones included (0 for none). */
static int list_len(const char *v)
{
	int n = 1;

	if (v == NULL)
		return 0;
	for (; *v; v++)
		n += *v == ',';
	return n;
}

static bool list_has_empty(const char *v)
{
	return v != NULL &&
	       (*v == '\0' || *v == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,") != NULL);
}

/* A copy of list (malloc'd) with every empty entry replaced by dflt: what libpq makes of an
 * empty entry (postgresql://h1,h2:5433/db has the ports ",5433"), said by a keyword after the
 * conninfo, where an empty value would be ignored. NULL if out of memory. */
static char *list_fill(const char *list, const char *dflt)
{
	size_t n = (size_t)list_len(list), len = strlen(list) + n * strlen(dflt) + 1, off = 0;
	char *out = malloc(len);

	if (out == NULL)
		return NULL;
	for (const char *e = list;; e += strcspn(e, ",") + 1) {
		size_t el = strcspn(e, ",");

		off += (size_t)snprintf(out + off, len - off, "%s%.*s", off > 0 ? "," : "",
		                        (int)(el > 0 ? el : strlen(dflt)), el > 0 ? e : dflt);
		if (e[el] == '\0')
			break;
	}
	return out;
}

/* libpq's default for keyword (the environment's, else its own), or NULL if it has none. */
static char *conn_default(const char *keyword)
{
	PQconninfoOption *d = PQconndefaults();
	char *v = NULL;

	for (PQconninfoOption *o = d; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, keyword) == 0 && o->val != NULL && o->val[0] != '\0')
			v = strdup(o->val);
	PQconninfoFree(d);
	return v;
}

/* Keeps the lists of a conninfo that names several hosts, to try one per attempt; an empty
 * host or port entry is libpq's default for it. Lists libpq would refuse (lengths that
 * differ), an empty hostaddr entry, or an empty host entry with no default host but the
 * socket directory libpq knows alone, leave the conninfo to libpq as it is (every host in one
 * attempt; *whole says so, for a warning). */
static int conninfo_hosts(struct pgasync *p, const char *host, const char *hostaddr,
                          const char *port, bool *whole)
{
	int nh = list_len(host), na = list_len(hostaddr), np = list_len(port);
	int n = nh > na ? nh : na;
	char *dhost = NULL, *dport = NULL;
	int rc = EB_ERR_NOMEM;

	*whole = false;
	if (n <= 1)
		return 0;
	if ((nh > 0 && nh != n) || (na > 0 && na != n) || (np > 1 && np != n) ||
	    list_has_empty(hostaddr)) {
		*whole = true;
		return 0;
	}
	if (list_has_empty(host) && (dhost = conn_default("host")) == NULL) {
		*whole = true;
		return 0;
	}
	if (list_has_empty(port) && (dport = conn_default("port")) == NULL) {
		free(dhost);
		*whole = true;
		return 0;
	}
	p->host_list = host == NULL ? NULL : dhost != NULL ? list_fill(host, dhost) : strdup(host);
	p->hostaddr_list = hostaddr != NULL ? strdup(hostaddr) : NULL;
	p->port_list = port == NULL ? NULL : dport != NULL ? list_fill(port, dport) : strdup(port);
	if ((host == NULL || p->host_list != NULL) &&
	    (hostaddr == NULL || p->hostaddr_list != NULL) &&
	    (port == NULL || p->port_list != NULL)) {
		p->nhosts = n;
		rc = 0;
	}
	free(dhost);
	free(dport);
	return rc;
}

/* The connect timeout (libpq's connect_timeout, which PQconnectPoll leaves to us) and the
 * host lists. */
static int conninfo_check(struct pgasync *p, const char *conninfo, char *err, size_t errlen)
{
	const char *host = NULL, *hostaddr = NULL, *port = NULL;
	PQconninfoOption *opts;
	char *msg = NULL;
	char line[256];
	int rc;

	p->connect_timeout_s = CONNECT_TIMEOUT_DEFAULT_S;
	/* libpq takes anything else as a database name. */
	if (strchr(conninfo, '=') == NULL && strncmp(conninfo, "postgresql://", 13) != 0 &&
	    strncmp(conninfo, "postgres://", 11) != 0)
		return 0;
	opts = PQconninfoParse(conninfo, &msg);
	if (opts == NULL) {
		if (msg == NULL) {
			snprintf(err, errlen, "out of memory");
			return EB_ERR_NOMEM;
		}
		db_error_line(msg, line, sizeof(line));
		PQfreemem(msg);
		snprintf(err, errlen, "invalid connection string: %s", line);
		return EB_ERR_INVAL;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL && o->val[0])
			p->connect_timeout_s = atoi(o->val) > 0 ? atoi(o->val) : 0;
		else if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	rc = conninfo_hosts(p, host, hostaddr, port, &p->hosts_whole);
	if (rc != 0)
		snprintf(err, errlen, "out of memory");
	PQconninfoFree(opts);
	return rc;
}

int pgasync_new(struct event_base *base, const char *conninfo, int nconns, struct pgasync **out,
                char *err, size_t errlen)
{
	struct pgasync *p = NULL;
	int rc;

	*out = NULL;
	if (base == NULL || conninfo == NULL) {
		snprintf(err, errlen, "no event base or connection string");
		rc = EB_ERR_INVAL;
		goto out;
	}
	if (nconns < 1 || nconns > PGASYNC_MAX_CONNS) {
		snprintf(err, errlen, "connections must be between 1 and %d, not %d",
		         PGASYNC_MAX_CONNS, nconns);
		rc = EB_ERR_RANGE;
		goto out;
	}
	rc = EB_ERR_NOMEM;
	snprintf(err, errlen, "out of memory");
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		goto out;
	p->base = base;
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->done);
	p->conns = calloc((size_t)nconns, sizeof(*p->conns));
	p->conninfo = strdup(conninfo);
	p->report = event_new(base, -1, 0, report_cb, p);
	if (p->conns == NULL || p->conninfo == NULL || p->report == NULL)
		goto out;
	rc = conninfo_check(p, conninfo, err, errlen);
	if (rc != 0)
		goto out;
	rc = EB_ERR_NOMEM;
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &p->conns[i];
		c->p = p;
		c->state = CONN_DOWN;
		c->ev_fd = -1;
		c->backoff_ms = BACKOFF_FIRST_MS;
		c->ev = event_new(base, -1, 0, conn_io_cb, c);
		c->timer = evtimer_new(base, conn_timer_cb, c);
		p->nconns++;
		if (c->ev == NULL || c->timer == NULL)
			goto out;
	}
	/* The first attempts start from the loop, like every later one. */
	for (int i = 0; i < nconns; i++)
		timer_in_ms(p->conns[i].timer, 0);
	*out = p;
	p = NULL;
	rc = 0;
out:
	if (p != NULL)
		pgasync_destroy(p);
	return rc;
}

void pgasync_free(struct pgasync *p)
{
	if (p == NULL)
		return;
	if (p->reporting) {
		p->free_requested = true; /* report_cb finishes it when the callback returns */
		return;
	}
	pgasync_destroy(p);
}

/* pgasync_query, and pgasync_query_static with stmt >= 0. */
static struct pgasync_query *query_new(struct pgasync *p, const char *sql, int nparams,
                                       const char *const *params, long deadline_ms, pgasync_cb cb,
                                       void *arg, int stmt)
{
	const char *bad = NULL;
	struct pgasync_query *q;
	size_t size, len;
	char *text;
	int n;

	if (p == NULL || cb == NULL || p->free_requested)
		return NULL;
	if (sql == NULL)
		bad = "no statement";
	else if (nparams < 0 || nparams > MAX_PARAMS)
		bad = "parameter count out of range";
	else if (nparams > 0 && params == NULL)
		bad = "parameters missing";
	else if (deadline_ms <= 0)
		bad = "the deadline must be positive";
	n = bad == NULL ? nparams : 0;
	size = sizeof(*q) + (size_t)n * sizeof(q->params[0]) + (bad == NULL ? strlen(sql) + 1 : 1);
	for (int i = 0; i < n; i++)
		size += params[i] != NULL ? strlen(params[i]) + 1 : 0;
	q = calloc(1, size);
	if (q == NULL)
		return NULL;
	q->timer = evtimer_new(p->base, query_deadline_cb, q);
	if (q->timer == NULL) {
		free(q);
		return NULL;
	}
	q->p = p;
	q->state = Q_NEW;
	q->stmt = stmt;
	q->cb = cb;
	q->arg = arg;
	q->nparams = n;
	text = (char *)&q->params[n];
	for (int i = 0; i < n; i++) {
		if (params[i] == NULL)
			continue;
		len = strlen(params[i]) + 1;
		memcpy(text, params[i], len);
		q->params[i] = text;
		text += len;
	}
	if (bad == NULL)
		memcpy(text, sql, strlen(sql) + 1);
	q->sql = text;
	if (bad != NULL) {
		query_fail(q, "", "invalid query: %s", bad);
		return q;
	}
	q->deadline_ms = now_ms() + deadline_ms;
	query_set_state(q, Q_QUEUED);
	TAILQ_INSERT_TAIL(&p->queue, q, link);
	p->nqueued++;
	timer_in_ms(q->timer, deadline_ms);
	pgasync_dispatch(p);
	return q;
}

struct pgasync_query *pgasync_query(struct pgasync *p, const char *sql, int nparams,
                                    const char *const *params, long deadline_ms, pgasync_cb cb,
                                    void *arg)
{
	return query_new(p, sql, nparams, params, deadline_ms, cb, arg, -1);
}

bool pgasync_hosts_whole(const struct pgasync *p)
{
	return p != NULL && p->hosts_whole;
}

bool pgasync_sqlstate_transient(const char *sqlstate)
{
	static const char *const classes[] = {"08", "40", "53", "55", "57", "58"};

	if (strcmp(sqlstate, "25006") == 0)
		return true; /* read_only_sql_transaction: a standby, until one is promoted */
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
		if (strncmp(sqlstate, classes[i], 2) == 0)
			return true;
	return false;
}

struct pgasync_query *pgasync_query_static(struct pgasync *p, const char *sql, int nparams,
                                           const char *const *params, long deadline_ms,
                                           pgasync_cb cb, void *arg)
{
	int i;

	if (p == NULL || cb == NULL || p->free_requested)
		return NULL;
	for (i = 0; i < p->nstmts && p->stmts[i] != sql; i++)
		;
	if (i == p->nstmts && p->nstmts < PGASYNC_MAX_STATIC && sql != NULL)
		p->stmts[p->nstmts++] = sql;
	if (i == p->nstmts) /* the table is full: parsed each time */
		i = -1;
	return query_new(p, sql, nparams, params, deadline_ms, cb, arg, i);
}

void pgasync_cancel(struct pgasync_query *q)
{
	struct pgasync *p;

	if (q == NULL)
		return;
	p = q->p;
	switch (q->state) {
	case Q_QUEUED:
		TAILQ_REMOVE(&p->queue, q, link);
		p->nqueued--;
		break;
	case Q_RUNNING:
		q->c->q = NULL; /* the connection reads the result to its end and drops it */
		break;
	case Q_DONE:
		TAILQ_REMOVE(&p->done, q, link);
		p->ndone--;
		break;
	case Q_REPORTING:
		return; /* freed when its callback returns */
	default:
		abort(); /* Q_NEW never leaves pgasync_query */
	}
	p->stats.queries_cancelled++;
	query_free(q);
}

void pgasync_stats(const struct pgasync *p, struct pgasync_stats *out)
{
	*out = p->stats;
	out->queries_queued = p->nqueued;
	for (int i = 0; i < p->nconns; i++) {
		const struct conn *c = &p->conns[i];
		switch (c->state) {
		case CONN_DOWN:
			out->conns_down++;
			break;
		case CONN_CONNECTING:
			out->conns_connecting++;
			break;
		case CONN_IDLE:
			out->conns_up++;
			break;
		case CONN_SENDING:
		case CONN_READING:
			out->conns_up++;
			out->conns_busy++;
			out->queries_running += c->q != NULL;
			break;
		default:
			abort();
		}
	}
}
