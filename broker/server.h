/* broker/server.h: `exec-broker serve`. One libevent loop carries the HTTP API (evhttp),
 * the asynchronous PostgreSQL pool and the SSH pool; nothing blocks it once it runs.
 * server.c owns the listener, routing, limits, the small endpoints (/healthz, /readyz,
 * /metrics), replies, request logs, per-org admission and shutdown; exec.c owns the life of
 * one exec request, auditapi.c the audit reads; both use what this header declares. */
#ifndef EB_BROKER_SERVER_H
#define EB_BROKER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "broker/config.h"
#include "broker/metrics.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct pool;
struct pgasync;
struct exec_job;

#define SERVER_REQUEST_ID_MAX 128

enum server_state {
	SERVER_SERVING,  /* accepting requests */
	SERVER_DRAINING, /* SIGTERM: no new requests, running execs may finish (grace) */
	SERVER_STOPPING, /* grace over: the pool kills what runs; waiting for the last rows */
};

/* What one request's reply and log line need. Owned by whoever handles the request (on
 * the stack for the small endpoints, inside the exec job for execs). */
struct http_ctx {
	struct evhttp_request *req; /* NULL once a reply has been sent */
	char request_id[SERVER_REQUEST_ID_MAX + 1];
	char client[64];    /* peer address, "" if unknown */
	const char *method; /* static string */
	char path[160];     /* for the log, cut */
	struct timespec t0; /* arrival, CLOCK_MONOTONIC */
	int status;         /* sent status, 0 until then */
	bool close;         /* ask the client to close the connection */
	/* Extra log fields, NULL when not applicable; static strings or owned by the handler. */
	const char *exec_id, *workspace_id, *outcome, *error, *actor;
};

struct server {
	struct event_base *base;
	const struct config *cfg;             /* in force; replaced by a reload (SIGHUP) */
	const struct config_flags *cfg_flags; /* what a reload loads the settings from */
	char *const *envp;
	struct config **old_cfgs; /* replaced settings, kept to the end: requests hold pointers */
	size_t nold_cfgs;
	char instance[256]; /* instance_name, or host:listen */
	struct evhttp *http;
	struct evhttp_bound_socket *listener;
	struct pool *pool;
	struct pgasync *db;
	struct metrics metrics;
	enum server_state state;
	struct exec_job *jobs; /* every exec request not yet reclaimed (exec.c's list) */
	unsigned njobs;
	struct org_slots *orgs;
	struct event *ev_term, *ev_int, *ev_grace, *ev_reap, *ev_flush;
	struct event *ev_hup;      /* SIGHUP: reload the settings */
	struct event *ev_status;   /* STATUS= for systemd, every SERVER_STATUS_S */
	struct event *ev_watchdog; /* WATCHDOG=1 at half of WATCHDOG_USEC, when systemd asks */
	unsigned flushing;         /* replies handed to evhttp and not yet written out */
	unsigned pending; /* other requests waiting for the database (readyz, audit reads) */
	bool pool_down;
	int exit_code;
};

/* Runs the server until SIGTERM/SIGINT and a clean shutdown: 0, or a negative EB_ERR_*
 * with one line in err if it could not start (schema not current, listen failed, ...).
 * cfg was loaded from flags and envp, which SIGHUP loads again; cfg stays the caller's.
 * Under systemd (NOTIFY_SOCKET) it reports READY=1 once listening with a current schema,
 * STATUS= lines, WATCHDOG=1 when WatchdogSec= is set, RELOADING=1 around a reload and
 * STOPPING=1; without systemd those are no-ops. */
int server_run(const struct config *cfg, const struct config_flags *flags, char *const envp[],
               char *err, size_t errlen);

/* Milliseconds since h->t0. */
long long server_elapsed_ms(const struct http_ctx *h);

/* Sends a complete reply (status, body of content_type) and logs the request; h->req is
 * NULL afterwards. */
void server_reply(struct server *s, struct http_ctx *h, int status, const char *content_type,
                  const char *body, size_t len);
/* An error reply: the code's status and {"error":{"code","message"[,"field"]}}. Adds
 * WWW-Authenticate to 401s. */
void server_reply_error(struct server *s, struct http_ctx *h, const char *code, const char *message,
                        const char *field);
/* Starts a chunked 200 reply (headers only); the caller sends chunks and ends it. */
void server_reply_start(struct server *s, struct http_ctx *h, const char *content_type);
/* Ends a reply begun with server_reply_start and logs the request. */
void server_reply_end(struct server *s, struct http_ctx *h);
/* Logs the request (server_reply and server_reply_end do it themselves). */
void server_log_request(struct server *s, struct http_ctx *h);

/* Per-org admission: true and one more running exec counted for org, or false when org
 * already has org_max_concurrent_execs. */
bool server_org_enter(struct server *s, const char *org);
void server_org_leave(struct server *s, const char *org);

/* A request other than an exec is waiting for the database; shutdown waits for it until
 * server_pending_done(). */
void server_pending_add(struct server *s);
void server_pending_done(struct server *s);

/* GET /v1/audit (exec_id NULL) and GET /v1/audit/{exec_id} (auditapi.c). */
void auditapi_handle(struct server *s, struct http_ctx *h, const char *exec_id);

/* exec.c tells the server a job became reclaimable (after the current loop turn). */
void server_schedule_reap(struct server *s);
/* exec.c's part of reaping and shutdown (defined in exec.c). */
void exec_reap(struct server *s);
void exec_handle(struct server *s, struct http_ctx *h, const char *workspace_id);

#endif
