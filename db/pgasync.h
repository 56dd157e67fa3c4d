/* db/pgasync.h: PostgreSQL for the broker's event loop. A few libpq connections opened and
 * driven without blocking on a libevent event_base, a FIFO of parameterized statements with
 * deadlines, reconnection with backoff, and errors as one line with their SQLSTATE.
 *
 * Ownership: the pool owns its connections and queries. A query handle is the caller's to
 * cancel until its callback has returned; then it is gone. Callbacks run from the loop,
 * never inside a pgasync call, and may call any pgasync function, pgasync_free included.
 *
 * libpq resolves host names inside PQconnectStart, which blocks: give conninfo a Unix
 * socket directory, a numeric host or a hostaddr, or the loop may wait on DNS at each
 * connection attempt. */
#ifndef EB_DB_PGASYNC_H
#define EB_DB_PGASYNC_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct pgasync;
struct pgasync_query;

#define PGASYNC_MAX_CONNS 64

/* Every connection's statement_timeout unless conninfo sets "options" itself: a statement
 * that runs longer fails on the server (SQLSTATE 57014). */
#define PGASYNC_STATEMENT_TIMEOUT "10s"
/* How long after a statement is sent its answer may take before the server is taken for
 * gone silent (a backend stopped, a machine vanished without closing its connections: the
 * kernel may even acknowledge what is sent): the statement_timeout above and 5 s for the way
 * back. The connection is then dropped and the query fails with PGASYNC_SQLSTATE_LOST;
 * whether the statement ran is unknown, as with any lost connection. */
#define PGASYNC_ANSWER_TIMEOUT_MS 15000

/* SQLSTATEs of failures that did not come from a statement (class 08, as JDBC drivers use
 * them). UNAVAILABLE: the statement was never sent, no connection was free before its
 * deadline; the line starts "database unavailable: " and says why. LOST: the connection
 * broke while the statement ran; whether it took effect is unknown. */
#define PGASYNC_SQLSTATE_UNAVAILABLE "08001"
#define PGASYNC_SQLSTATE_LOST        "08006"

/* Exactly once per query not cancelled. On success res is the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK, valid only during the call), error is NULL and sqlstate "". On failure
 * res is NULL, error is one line (no newline) and sqlstate the server's SQLSTATE, one of
 * the PGASYNC_SQLSTATE_* above, or "" (refused by libpq or by pgasync_query itself). */
typedef void (*pgasync_cb)(const PGresult *res, const char *error, const char *sqlstate, void *arg);

/* Makes a pool of nconns (1..PGASYNC_MAX_CONNS) connections to conninfo (a connection
 * string, a URI or a database name); they are opened from the loop, so this never waits on
 * the network. Each broken connection is reopened after a backoff of 100 ms doubling to
 * 5 s. connect_timeout in conninfo (default 10 s) bounds each attempt. 0, or EB_ERR_INVAL
 * (conninfo does not parse), EB_ERR_RANGE or EB_ERR_NOMEM with one line in err. */
int pgasync_new(struct event_base *base, const char *conninfo, int nconns, struct pgasync **out,
                char *err, size_t errlen);

/* Closes every connection. No callback runs after this, not even for queries still queued
 * or running (their statements may still complete on the server). NULL is fine. */
void pgasync_free(struct pgasync *p);

/* Queues sql with nparams text parameters (params[i] may be NULL for SQL NULL; all are
 * copied); results come back as text. Queries run in order of arrival on the first free
 * connection. One that is still queued deadline_ms (> 0) from now fails with
 * PGASYNC_SQLSTATE_UNAVAILABLE. Once sent, a statement runs to completion, until its
 * connection breaks, until the server's statement_timeout (PGASYNC_STATEMENT_TIMEOUT
 * unless conninfo sets options), or until no answer came for PGASYNC_ANSWER_TIMEOUT_MS.
 * Invalid
 * arguments are reported through cb. Returns a handle for pgasync_cancel, or NULL if out
 * of memory, if cb is NULL or if p is being freed. */
struct pgasync_query *pgasync_query(struct pgasync *p, const char *sql, int nparams,
                                    const char *const *params, long deadline_ms, pgasync_cb cb,
                                    void *arg);

/* pgasync_query, for a statement that is one of the program's constants (sql has static
 * storage and never changes): it is prepared once per connection (PQsendPrepare, one more
 * round trip the first time) and then only bound and run, which spares the server parsing
 * and planning it every time. Statements are told apart by sql's address; past
 * PGASYNC_MAX_STATIC different ones, the others run as pgasync_query does. */
#define PGASYNC_MAX_STATIC 32
/* Whether a statement's failure may go away by itself, so that retrying it makes sense: the
 * connection (class 08, pgasync's own "unavailable" and "lost" included), a transaction
 * rolled back for a serialization failure or deadlock (40), resources (53), an operator's
 * intervention or a statement timeout (57), a lock not available (55), a system error (58),
 * and a write refused by a read-only server (25006: a standby reached while the primary is
 * being replaced).
 * Anything else is a refusal by the database that retrying will not change. */
bool pgasync_sqlstate_transient(const char *sqlstate);

/* Whether the conninfo lists several hosts that cannot be tried one per attempt (an empty
 * hostaddr entry, lists of different lengths, an empty host entry with no default), so that
 * libpq gets them all in every attempt and a first host that never answers holds it. */
bool pgasync_hosts_whole(const struct pgasync *p);

struct pgasync_query *pgasync_query_static(struct pgasync *p, const char *sql, int nparams,
                                           const char *const *params, long deadline_ms,
                                           pgasync_cb cb, void *arg);

/* cb will not run. A queued query is dropped; a running one finishes on the server and its
 * result is thrown away. A no-op inside the query's own callback. NULL is fine. */
void pgasync_cancel(struct pgasync_query *q);

struct pgasync_stats {
	unsigned conns_up;         /* connected, idle or busy */
	unsigned conns_busy;       /* a statement in flight */
	unsigned conns_connecting; /* an attempt in progress */
	unsigned conns_down;       /* waiting out the backoff before the next attempt */
	unsigned queries_queued;   /* waiting for a free connection */
	unsigned queries_running;  /* sent, their callback still to come */
	uint64_t queries_ok;       /* callbacks run with a result */
	uint64_t queries_failed;   /* callbacks run with an error, whatever the cause */
	uint64_t queries_cancelled;
	uint64_t connects_failed; /* attempts that did not end connected */
	uint64_t conns_lost;      /* established connections that broke */
};

void pgasync_stats(const struct pgasync *p, struct pgasync_stats *out);

#endif
