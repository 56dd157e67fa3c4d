/* audit/writer.h: the statements that write exec_audit rows, and their parameters: what
 * the broker records of an exec. Never output, stdin or env values. */
#ifndef EB_AUDIT_WRITER_H
#define EB_AUDIT_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/bytes.h"

#define AUDIT_EXEC_ID_LEN 36

struct audit_begin {
	char exec_id[AUDIT_EXEC_ID_LEN + 1];
	const char *request_id, *workspace_id, *org_id;
	const char *actor;              /* "token:<prefix>" */
	const char *actor_kind;         /* "workspace", "org", "admin" */
	const char *break_glass_reason; /* NULL unless admin */
	const struct eb_bytes *argv;
	size_t argc;
	const struct eb_bytes *env_names; /* names only: values never reach the audit log */
	size_t nenv;
	const char *cwd; /* NULL if none */
	unsigned long stdin_bytes;
	const char *client_addr; /* NULL if unknown */
	int timeout_s;
	const char *broker_instance; /* which broker wrote the row (instance_name) */
	const char *error_code;      /* audit_denied: why */
	bool detached;               /* "detach": true */
	const char *name;            /* a detached exec's name, or NULL */
	const char *batch_id;        /* the batch of a target (POST /v1/batches), or NULL */
	int max_detached;  /* audit_authz_begin: the workspace's limit of running detached execs */
	int max_org_execs; /* audit_authz_begin: the org's limit of attached execs (0: none) */
	int dead_after_s;  /* audit_authz_begin: a broker silent this long is gone (0: 40) */
};

struct audit_end {
	const char *exec_id;
	const char *status;      /* a final status: "exited", "signaled", ... */
	const char *error_code;  /* NULL, or why (failed_to_start: connect_failed, ...) */
	int exit_code;           /* when status is "exited" */
	const char *exit_signal; /* when "signaled" */
	long long duration_ms;
	unsigned long long stdout_bytes, stderr_bytes;
	bool stdout_truncated, stderr_truncated;
};

/* A row is inserted 'running' (and committed) before the command may start, completed
 * exactly once at the end, or inserted final as 'denied'. A row the broker finishes waits
 * for its link in the hash chain (seal_pending, migrations/0005) until audit_seal_sql. argv and env
 * names travel as JSON and become text[] in SQL, so no array-literal escaping is written by hand.
 */
#define AUDIT_BEGIN_NPARAMS  14 /* audit_begin_sql */
#define AUDIT_DENIED_NPARAMS 18 /* audit_denied_sql: the same and 4 more */
#define AUDIT_END_NPARAMS    10

#define AUDIT_AUTHZ_BEGIN_NPARAMS 22 /* audit_authz_begin_sql */
/* Its columns past the token and the workspace (api/authz.h's AUTHZ_NCOLS) */
#define AUDIT_AUTHZ_COL_HOST     10
#define AUDIT_AUTHZ_COL_PORT     11
#define AUDIT_AUTHZ_COL_USER     12
#define AUDIT_AUTHZ_COL_FP       13
#define AUDIT_AUTHZ_COL_OWN_ORG  14 /* the token's org (a workspace token's: its workspace's) */
#define AUDIT_AUTHZ_COL_INSERTED 15 /* "t" if the running row went in */
#define AUDIT_AUTHZ_COL_QUOTA    16 /* "t": a detached exec over the workspace's limit */
#define AUDIT_AUTHZ_COL_TAKEN    17 /* "t": a detached exec's name is taken */
#define AUDIT_AUTHZ_COL_ORG_FULL 18 /* "t": authorized, but its org has no room */

/* A broker not heard from for this many heartbeats and AUDIT_DEAD_AFTER_EXTRA_S more is
 * gone: the sweeps abandon its rows, and its execs no longer count against their org. */
#define AUDIT_DEAD_AFTER_BEATS   3
#define AUDIT_DEAD_AFTER_EXTRA_S 10
/* That time in seconds, for a fleet whose brokers beat every heartbeat_s. */
static inline int audit_dead_after_s(int heartbeat_s)
{
	return AUDIT_DEAD_AFTER_BEATS * heartbeat_s + AUDIT_DEAD_AFTER_EXTRA_S;
}
#define AUDIT_REFUSE_NPARAMS 2 /* audit_refuse_sql: exec_id, error_code */
#define AUDIT_SEAL_NPARAMS   2 /* audit_seal_sql */

extern const char audit_begin_sql[]; /* INSERT ... 'running' */
/* The one statement before a command runs: the token and the workspace are looked up (the
 * result reads as authz_row_from_result() expects, then the AUDIT_AUTHZ_COL_* columns:
 * whether the row went in, for a detached exec whether the workspace has max_detached
 * running already or the name is in use, for an attached one whether its org had no room
 * on its brokers) and, when the request is authorized, the 'running' row is inserted, all
 * in one round trip. See audit_authz_begin_params. */
extern const char audit_authz_begin_sql[];
/* A running row turned away after its insert (the org's limit): final as 'denied'. */
extern const char audit_refuse_sql[];
/* Links into the chain the rows whose ids are in $1 (a uuid[] literal), and every row
 * still pending $2 seconds after it finished (its broker is gone). Returns how many. */
extern const char audit_seal_sql[];
extern const char audit_denied_sql[]; /* INSERT ... 'denied', final at once */
/* Completes a running row; 0 rows when it was already completed, so a retry after a lost
 * reply is harmless. */
extern const char audit_end_sql[];
/* audit_end_sql for a detached exec (parameters of audit_end_params): completed by
 * whichever broker learns the outcome from the host first; 0 rows for the others. */
extern const char audit_detached_end_sql[];
/* At startup: the rows this broker left running in an earlier life (same instance name,
 * $1) become 'abandoned', whatever their age. Detached rows are not the broker's: they
 * live on their hosts. */
extern const char audit_abandon_sql[];
/* Any broker, from time to time: rows left running by a broker that is gone become
 * 'abandoned' once past their deadline. $1: this broker's instance; $2: seconds past a
 * row's timeout (the kill grace: its command has ended on the host by then); $3: seconds
 * without a heartbeat after which a broker is gone. Rows of a broker heard from within $3
 * are left alone, and so is everything while this broker itself has not been heard from
 * continuously for $3 (after an outage every live broker gets the time to speak first).
 * At most 1000 rows a time. */
extern const char audit_sweep_sql[];
/* This broker's own running rows ($1: instance) started over AUDIT_STRAY_AGE_S ago, not
 * detached: exec_id, at most 1000. A row among them that the broker refused after its
 * insert was sent but the answer lost (a server gone silent, a connection lost after the
 * statement was sent), and has no job for now, is a stray: the insert ran after all. */
extern const char audit_strays_sql[];
#define AUDIT_STRAY_AGE_S 10
/* The strays ($1: a uuid[] literal; $2: this broker's instance) made final as what the
 * client was told: failed_to_start, audit_unavailable, nothing run. */
extern const char audit_stray_end_sql[];
/* This broker is alive ($1: instance). $2: seconds of silence after which its continuous
 * presence (up_since) starts again. */
extern const char audit_heartbeat_sql[];

/* The SQLSTATE of a detached start refused by the trigger of migrations/0007: the
 * workspace's running detached execs reached the limit while this start was in flight. */
#define AUDIT_SQLSTATE_DETACHED_QUOTA "EBQ01"

/* A new random (v4) exec id, lower-case. */
void audit_new_exec_id(char out[AUDIT_EXEC_ID_LEN + 1]);

/* Text parameters for audit_begin_sql (the first AUDIT_BEGIN_NPARAMS) or audit_denied_sql
 * (all of them). Strings the params point to are
 * kept in *store (malloc'd; free it after the query). 0 or EB_ERR_NOMEM. */
int audit_begin_params(const struct audit_begin *b, const char *params[AUDIT_DENIED_NPARAMS],
                       char **store);
/* Text parameters for audit_authz_begin_sql: b (its org and kind are ignored: the lookup
 * gives them), the token's hash, the lowest tier a non-admin token may run on, and whether
 * the broker takes new execs at all. Kept in *store likewise. */
int audit_authz_begin_params(const struct audit_begin *b, const char *token_hash, int min_tier,
                             bool accepting, const char *scope,
                             const char *params[AUDIT_AUTHZ_BEGIN_NPARAMS], char **store);
/* Text parameters for audit_end_sql, likewise. */
int audit_end_params(const struct audit_end *e, const char *params[AUDIT_END_NPARAMS],
                     char **store);

#endif
