/* api/api.h: what the handlers share: the running broker's services (the loop, the
 * settings in force, the SSH pool, the database, the counters), the phase of its life as
 * handlers see it, and the work they hold open. The process (server/) fills it and hands
 * it to every handler as the route table's argument; handlers never include the process's
 * headers. */
#ifndef EB_API_API_H
#define EB_API_API_H

#include <stdbool.h>
#include <stddef.h>

#include "api/metrics.h"
#include "api/orgs.h"
#include "api/seal.h"
#include "audit/writer.h"
#include "config/config.h"
#include "http/router.h"
#include "pool/pool.h"

struct event_base;
struct pool;
struct pgasync;
struct exec_job;
struct leasecache;

enum api_phase {
	API_SERVING,  /* new execs are welcome */
	API_DRAINING, /* SIGTERM: no new execs; running ones may finish */
	API_STOPPING, /* the grace is over: the pool kills what runs */
};

struct api {
	struct event_base *base;
	const struct config *cfg; /* in force; a reload replaces it, old ones stay valid */
	const char *instance;     /* this broker's name in audit rows */
	struct pool *pool;
	struct pgasync *db;
	struct metrics metrics;
	struct org_slots orgs;
	enum api_phase phase; /* set by the process */
	/* Set by the process when it is about to stop (shutdown_delay_s): /readyz answers 503
	 * while requests are still served, so that load balancers stop sending first. */
	bool leaving;
	/* Completions of audit rows are retried until they land; once the broker stops, until
	 * this CLOCK_MONOTONIC time in ms (0: no limit). Set by the process. */
	long long completions_until_ms;
	/* Work that must end before the process may exit: exec jobs until reclaimed, other
	 * requests while they wait for the database. on_idle runs when it falls to 0. */
	unsigned busy;
	void (*on_idle)(void *arg);
	void *idle_arg;
	/* Exec jobs not yet reclaimed (api/exec.c's list), and the event that reclaims them
	 * after the loop turn in which they ended (made with the first job). */
	struct exec_job *jobs;
	unsigned njobs;
	struct event *reap;
	/* Rows completed and waiting for their link in the chain (api/seal.c). */
	struct seal_queue seal;
	/* Where tokens last ran on workspaces (api/leasecache.c), made with the first exec. */
	struct leasecache *leases;
	/* The last API_DOUBTS execs refused after their row's insert was sent but its answer
	 * lost: the insert may commit later (api_exec_doubt). A ring, made with the first. */
	char (*doubts)[AUDIT_EXEC_ID_LEN + 1];
	unsigned doubts_next;
};

#define API_DOUBTS 1024

/* The API code of a reason the pool gives for an exec that never started
 * ("ssh_connect_failed", "host_key_mismatch", ...). */
const char *api_fail_code(enum pool_fail_reason r);

/* The route table of the API (api/routes.c). */
extern const struct http_route api_routes[];
extern const size_t api_nroutes;

/* Frees what the handlers left in a (the reap event). */
void api_free(struct api *a);

/* Whether the time the process gave rows' completions after it began to stop
 * (completions_until_ms) is over; false while it serves. */
bool api_completions_given_up(const struct api *a);

/* A handler holds the broker open while it waits; api_release lets go (and runs on_idle
 * at 0). */
void api_hold(struct api *a);
void api_release(struct api *a);

/* Whether this broker has a job for exec_id (an exec or a batch target from its request
 * to its reclaim): its row is accounted for (api/exec.c). */
bool api_exec_known(const struct api *a, const char *exec_id);
/* Remembers exec_id as refused while its row's insert may still commit (the answer was
 * lost), so that such a row is ended if it turns up (server/janitor.c); and whether it is
 * remembered. Out of memory, it is not. */
void api_exec_doubt(struct api *a, const char *exec_id);
bool api_exec_doubtful(const struct api *a, const char *exec_id);

/* Handlers, one per resource (api/<resource>.c). */
void api_exec_post(struct http_request *r, void *arg);
void api_audit_list(struct http_request *r, void *arg);
void api_execs_one(struct http_request *r, void *arg); /* GET and DELETE */
void api_execs_output(struct http_request *r, void *arg);
void api_execs_signal(struct http_request *r, void *arg);
void api_execs_list(struct http_request *r, void *arg);
/* Asks the host of a running detached exec how it is, completing its row if it ended (the
 * janitor's sweep: rows complete even when nobody reads them). */
void api_execs_check(struct api *api, const char *exec_id);
void api_audit_get(struct http_request *r, void *arg);
void api_batch_post(struct http_request *r, void *arg);
void api_batches_root(struct http_request *r, void *arg); /* POST: api_batch_post; GET: the list */
void api_batches_one(struct http_request *r, void *arg);
void api_openapi_get(struct http_request *r, void *arg);
void api_health_get(struct http_request *r, void *arg);
void api_ready_get(struct http_request *r, void *arg);
void api_metrics_get(struct http_request *r, void *arg);

#endif
