/* api/exec_job.h: one POST /v1/workspaces/{id}/exec as the two halves of the exec
 * resource share it: api/exec.c drives its life (authorization, the audit row, the lease,
 * the command, the completion) and api/exec_reply.c tells the client (the NDJSON stream,
 * the buffered document, an error).
 *
 *   JOB_AUTHZ      one statement: the token (by hash) and the workspace looked up, and
 *                  the 'running' row inserted when they authorize the exec; meanwhile
 *                  the pool leases a session where this token last ran on this
 *                  workspace (api/leasecache.h), if it did, and opens the exec's channel
 *                  on it (pool_exec_prepare: no exec request before the row commits)
 *   JOB_DENYING    writing the 'denied' row of a refusal (or making the running row
 *                  one), then the refusal
 *   JOB_BEGIN      the row is committed; the lease (of the right session) is awaited:
 *                  the command waits for both (no row, no command)
 *   JOB_STARTING   the exec request is on its way to the host
 *   JOB_RUNNING    the command runs; its output streams to the client (a detached
 *                  exec: the launcher runs; once it says the command started, the reply is
 *                  202 and the job ends, leaving the row running for the host to finish)
 *   JOB_COMPLETING the outcome is known; the row is completed (retried until it lands
 *                  while the database is away), then the last frame or the reply is
 *                  sent, and the row waits for its link in the chain (api/seal.h)
 *   JOB_DONE       replied; reclaimed after the loop turn
 *
 * Ownership: a job is on the API's job list (and holds the broker open) from
 * api_exec_post() until it is reclaimed. While it lives it may hold one pgasync query, one
 * pool acquire or lease, one pool exec, and the HTTP request; each is given back
 * (cancelled, released, replied to) before the job reaches JOB_DONE, except the pool exec,
 * released when the job is reclaimed. */
#ifndef EB_API_EXEC_JOB_H
#define EB_API_EXEC_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "api/api.h"
#include "api/authz.h"
#include "api/exec_request.h"
#include "api/frame.h"
#include "audit/writer.h"
#include "common/token.h"
#include "http/http.h"
#include "pool/detached.h"
#include "pool/pool.h"

enum job_state {
	JOB_AUTHZ,
	JOB_DENYING,
	JOB_BEGIN,
	JOB_STARTING,
	JOB_RUNNING,
	JOB_COMPLETING,
	JOB_DONE,
};

struct denial {
	const char *code;
	char message[200];
};

struct exec_job {
	struct api *api;
	struct exec_job *next; /* the API's list */
	enum job_state state;
	struct http_request *http; /* NULL once the request has been ended */
	char request_id[HTTP_REQUEST_ID_MAX + 1];
	char client[64]; /* the client's address, "" if unknown */
	bool streaming, client_gone, org_counted;

	char ws_id[80];
	char token_hash[TOKEN_HASH_HEX_LEN + 1];
	char actor[AUTHZ_ACTOR_LEN + 1];
	char *reason; /* X-Break-Glass-Reason, or NULL */
	struct exec_request req;
	struct timeval deadline; /* arrival + timeout_s, CLOCK_MONOTONIC */

	/* From the lookup (host to fp: from the lease hint until then, if hinted). */
	char kind[16], org[80], host[256], user[40], fp[64];
	int port;
	bool hinted;

	char exec_id[AUDIT_EXEC_ID_LEN + 1];
	struct pgasync_query *q;
	struct pool_acquire *acq;
	struct pool_lease *lease;
	struct pool_exec *exec;
	bool held; /* exec is prepared (its channel opening while the row is written): no go yet */
	bool audit_done, audit_ok, audit_maybe; /* maybe: the insert's fate is unknown */
	bool lease_done;
	enum pool_fail_reason lease_fail;

	bool started, finished;
	struct pool_outcome outcome;
	const char *fail_code;  /* API code of a failure before the command started */
	const char *error_code; /* the row's error_code */
	struct denial denial;
	long long duration_ms;

	/* Output, indexed by enum pool_stream (1 stdout, 2 stderr). */
	uint64_t sent[3];
	bool truncated[3];
	struct utf8_carry carry[3];
	struct evbuffer *kept[3]; /* buffered mode: the output up to the cap */
	bool paused;
	struct evbuffer *chunk; /* streaming: the next HTTP chunk, reused */

	struct event *retry;
	int end_attempts;
	long end_delay_ms;

	/* A detached exec (req.detach): what starts it is the launcher (pool/detached.h), its
	 * stdin the command's body and then the command's stdin. */
	struct eb_bytes launch_argv[DETACHED_LAUNCH_ARGC];
	char *launch_store;
	char *launch_input;
	size_t launch_input_len;
	char fail_message[300]; /* a start failure's own words, or "" */

	/* A target of a batch (api/batch.c): its reply goes to the batch through batch_ops,
	 * naming itself by batch_index, instead of to an HTTP request (http is NULL
	 * throughout). */
	struct batch *batch;
	const struct exec_batch_ops *batch_ops;
	unsigned batch_index;
	char batch_id[AUDIT_EXEC_ID_LEN + 1];
	struct http_log_fields own_log; /* what a request's log line would say */
	struct timespec t0;             /* when it began, CLOCK_MONOTONIC */
	bool has_row;                   /* its audit row exists (running, final or denied) */
};

/* How a target reaches its batch (api/batch.c fills the table; api/exec_reply.c calls it).
 *   frame     one NDJSON object of the target ending in '\n' (malloc'd, taken over), to
 *             send with the target's workspace_id and exec_id in front of its fields
 *   keep      buffered: of want bytes of output, how many may still be kept (counted)
 *   ended     the target ended: code NULL when the command ran to an exit or a signal
 *             (j->outcome), else the error of one that failed, never ran or was refused
 *   detached  a detached target started; it runs on its host
 * ended or detached comes exactly once per target, and the batch must not touch the job
 * afterwards. */
struct exec_batch_ops {
	void (*frame)(struct batch *b, struct exec_job *j, char *line, size_t len);
	size_t (*keep)(struct batch *b, size_t want);
	void (*ended)(struct batch *b, struct exec_job *j, const char *code, const char *message);
	void (*detached)(struct batch *b, struct exec_job *j);
};

/* What a batch gives each target it starts. The strings are copied. */
struct exec_target {
	struct batch *batch;
	const struct exec_batch_ops *ops;
	unsigned index;
	const char *batch_id, *ws_id, *request_id, *client;
	const char *token_hash, *actor, *reason;
	/* The command, validated (borrowed: the job shares its strings and stdin, so it must
	 * outlive the job) */
	const struct exec_request *req;
	bool streaming; /* false: the output is kept for a buffered reply */
};

/* The limits of an exec request under the settings in force. */
void exec_request_limits(const struct api *a, struct request_limits *lim);

/* Starts an exec for a batch: authorized, audited and run as a single exec is, with the
 * batch scope. Every path ends in one of the batch's calls for its end (struct exec_batch_ops),
 * which may come before this returns; NULL when out of memory (no call comes). */
struct exec_job *exec_job_start_target(struct api *a, const struct exec_target *t);
/* The batch gives up on a target (its client went away): a command under way is killed,
 * one not started never starts. Its end is reported as usual. */
void exec_job_cancel(struct exec_job *j);
/* The batch's client fell behind: the target's output stops being read, until resumed. */
void exec_job_pause(struct exec_job *j, bool pause);

#endif
