/* audit/writer.c: the SQL text of the statements that write exec_audit rows (begin, denied,
 * end, abandon), and the text parameters that each one takes. */
#include "audit/writer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "common/err.h"

#define BEGIN_COLUMNS                                                                              \
	"exec_id, request_id, workspace_id, org_id, actor, actor_kind, break_glass_reason, "       \
	"argv, env_keys, cwd, stdin_bytes, client_addr, timeout_s, broker_instance"
#define BEGIN_VALUES                                                                               \
	"$1::uuid, $2, $3, $4, $5, $6, $7, "                                                       \
	"ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), "                                     \
	"ARRAY(SELECT jsonb_array_elements_text($9::jsonb)), $10, $11::bigint, $12::inet, "        \
	"$13::integer, $14"

const char audit_begin_sql[] =
    "INSERT INTO exec_audit (" BEGIN_COLUMNS ", status) VALUES (" BEGIN_VALUES ", 'running')";

const char audit_denied_sql[] =
    "INSERT INTO exec_audit (" BEGIN_COLUMNS
    ", status, error_code, finished_at, duration_ms, seal_pending, detached, name, batch_id)"
    " VALUES (" BEGIN_VALUES ", 'denied', $15, now(), 0, true, $16::boolean, $17, $18::uuid)";

/* The token and the workspace, looked up as authz_row_from_result() reads them (columns 0
 * to 9, then the target and the token's own org: AUDIT_AUTHZ_COL_*), and the running row
 * inserted in the same statement when, and only when, the request is authorized: the
 * predicate is authz_decide()'s AUTHZ_OK, written in SQL (tests/check_authz.c holds the two
 * to the same answers). */
const char audit_authz_begin_sql[] =
    "WITH t AS ("
    " SELECT id, kind, org_id, workspace_id, coalesce(expires_at <= now(), false) AS expired,"
    "  revoked_at IS NOT NULL AS revoked, last_used_at, scopes"
    " FROM api_tokens WHERE secret_sha256 = decode($1, 'hex')), "
    /* Stamped to the minute: a write to the token's row on every exec would make the
     * execs of one token wait for each other's commits on its row lock. */
    "u AS ("
    " UPDATE api_tokens a SET last_used_at = now() FROM t"
    " WHERE a.id = t.id"
    "  AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')"
    " RETURNING 1), "
    "l AS ("
    " SELECT t.kind, t.org_id AS t_org, t.workspace_id AS t_ws, t.expired, t.revoked,"
    "  w.id, w.org_id, w.state, w.tier, t.scopes, w.host, w.port, w.ssh_user,"
    "  w.host_key_sha256,"
    "  coalesce(t.org_id, (SELECT o.org_id FROM workspaces o WHERE o.id = t.workspace_id))"
    "   AS own_org"
    " FROM t LEFT JOIN workspaces w ON w.id = $2), "
    /* A detached exec: the workspace's running ones, and whether the name is taken. */
    "dq AS ("
    " SELECT count(*) AS n, coalesce(bool_or(x.name = $17), false) AS taken FROM exec_audit x"
    " WHERE $16::boolean AND x.workspace_id = $2 AND x.detached AND x.status = 'running'), "
    /* Authorized: authz_decide()'s AUTHZ_OK, in SQL. */
    "ok AS ("
    " SELECT l.* FROM l"
    " WHERE $15::boolean AND NOT l.expired AND NOT l.revoked AND l.id IS NOT NULL"
    "  AND $19::text = ANY (l.scopes)"
    "  AND l.state = 'running'"
    "  AND coalesce(CASE l.kind"
    "   WHEN 'admin' THEN $6::text IS NOT NULL"
    "   WHEN 'org' THEN l.t_org = l.org_id AND l.tier >= $14::integer"
    "   WHEN 'workspace' THEN l.t_ws = l.id AND l.tier >= $14::integer END, false)), "
    /* An attached exec: whether its org has room on every broker (migrations/0011). */
    "oc AS ("
    " SELECT exec_audit_org_room(ok.org_id,"
    "  CASE WHEN $16::boolean THEN NULL ELSE $21::integer END, $22::integer) AS room"
    " FROM ok), "
    "i AS ("
    " INSERT INTO exec_audit (" BEGIN_COLUMNS ", status, detached, name, batch_id)"
    " SELECT $3::uuid, $4, $2, ok.org_id, $5, ok.kind,"
    "  CASE WHEN ok.kind = 'admin' THEN $6 END,"
    "  ARRAY(SELECT jsonb_array_elements_text($7::jsonb)),"
    "  ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), $9, $10::bigint, $11::inet,"
    "  $12::integer, $13, 'running', $16::boolean, $17, $20::uuid"
    " FROM ok, dq, oc"
    " WHERE oc.room"
    "  AND (NOT $16::boolean OR (dq.n < $18::integer AND NOT dq.taken"
    /* the limit, for the trigger that settles concurrent starts (migrations/0007) */
    "   AND set_config('exec_broker.max_detached', $18::integer::text, true) IS NOT NULL))"
    " RETURNING 1) "
    "SELECT l.kind, l.t_org, l.t_ws, l.expired, l.revoked, l.id, l.org_id, l.state, l.tier,"
    " l.scopes, l.host, l.port, l.ssh_user, l.host_key_sha256, l.own_org,"
    " EXISTS (SELECT 1 FROM i),"
    " dq.n >= $18::integer AND $16::boolean, dq.taken,"
    " NOT coalesce((SELECT room FROM oc), true) "
    "FROM l, dq";

/* What completing a row sets, but its end (audit_end_params' $2 to $10). seal_pending: linked
 * into the chain moments later, in a batch (audit_seal_sql). */
#define END_OUTCOME                                                                                \
	"status = $2, error_code = $3, exit_code = $4::integer, exit_signal = $5, "                \
	"duration_ms = $6::bigint, stdout_bytes = $7::bigint, stderr_bytes = $8::bigint, "         \
	"stdout_truncated = $9::boolean, stderr_truncated = $10::boolean, seal_pending = true"

const char audit_end_sql[] =
    "UPDATE exec_audit SET " END_OUTCOME ", finished_at = greatest(now(), started_at) "
    "WHERE exec_id = $1::uuid AND status = 'running'";

/* A detached exec's outcome, as its host recorded it: the duration is the host's own
 * measure, and the end is the start plus it (never past now). */
const char audit_detached_end_sql[] =
    "UPDATE exec_audit SET " END_OUTCOME ", "
    "finished_at = greatest(least(now(), started_at + make_interval(secs => $6::bigint / 1000.0)),"
    " started_at) "
    "WHERE exec_id = $1::uuid AND status = 'running' AND detached";

/* A running row refused after all (its org was at its limit): final as 'denied'. */
const char audit_refuse_sql[] =
    "UPDATE exec_audit SET status = 'denied', error_code = $2, "
    "finished_at = greatest(now(), started_at), duration_ms = 0, seal_pending = true "
    "WHERE exec_id = $1::uuid AND status = 'running'";

const char audit_seal_sql[] =
    "SELECT exec_audit_seal($1::uuid[], make_interval(secs => $2::integer))";

/* A batch (migrations/0010) whose broker died before it had started every target it was to
 * start is over: what its targets did is in their rows. Marked with the broker's execs, in the
 * same statement. */
#define ABANDON_BATCHES(which)                                                                     \
	"WITH b AS (UPDATE batches SET status = 'abandoned', finished_at = now(), launched = true" \
	" WHERE status = 'running' AND NOT launched AND " which " RETURNING 1) "

/* The statements below are SQL text laid out as SQL. */
/* clang-format off */
const char audit_abandon_sql[] = ABANDON_BATCHES("broker_instance = $1")
    "UPDATE exec_audit SET status = 'abandoned', finished_at = greatest(now(), started_at), "
    "duration_ms = greatest(0, (extract(epoch FROM now() - started_at) * 1000)::bigint) "
    "WHERE status = 'running' AND broker_instance = $1 AND NOT detached";

/* A broker is dead when it has not written its heartbeat for $3 seconds; this broker must
 * have been up that long itself before it judges. */
#define DEAD_BROKER(instance)                                                                      \
	"(SELECT up_since FROM broker_instances WHERE instance = $1)"                              \
	" < now() - make_interval(secs => $3::integer)"                                            \
	" AND NOT EXISTS (SELECT 1 FROM broker_instances i WHERE i.instance = " instance           \
	"  AND i.heartbeat_at >= now() - make_interval(secs => $3::integer))"

const char audit_sweep_sql[] = ABANDON_BATCHES(DEAD_BROKER("batches.broker_instance"))
    "UPDATE exec_audit SET status = 'abandoned', finished_at = greatest(now(), started_at), "
    "duration_ms = greatest(0, (extract(epoch FROM now() - started_at) * 1000)::bigint) "
    "WHERE exec_id IN ("
    " SELECT a.exec_id FROM exec_audit a"
    " WHERE a.status = 'running' AND NOT a.detached"
    "  AND a.started_at < now() - make_interval(secs => coalesce(a.timeout_s, 0) + $2::integer)"
    "  AND " DEAD_BROKER("a.broker_instance") " ORDER BY a.started_at LIMIT 1000)";
/* clang-format on */

#define STR_(x) #x
#define STR(x)  STR_(x)
const char audit_strays_sql[] =
    "SELECT exec_id FROM exec_audit WHERE status = 'running' AND broker_instance = $1"
    " AND NOT detached AND started_at < now() - interval '" STR(
        AUDIT_STRAY_AGE_S) " seconds'"
                           " ORDER BY started_at LIMIT 1000";

const char audit_stray_end_sql[] =
    "UPDATE exec_audit SET status = 'failed_to_start', error_code = 'audit_unavailable', "
    "finished_at = greatest(now(), started_at), duration_ms = 0, seal_pending = true "
    "WHERE exec_id = ANY($1::uuid[]) AND status = 'running' AND broker_instance = $2 "
    "AND NOT detached";

const char audit_heartbeat_sql[] =
    "INSERT INTO broker_instances AS b (instance) VALUES ($1) "
    "ON CONFLICT (instance) DO UPDATE SET "
    " up_since = CASE WHEN b.heartbeat_at < now() - make_interval(secs => $2::integer)"
    "  THEN now() ELSE b.up_since END,"
    " heartbeat_at = now()";

void audit_new_exec_id(char out[AUDIT_EXEC_ID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

static char *json_strings(const struct eb_bytes *v, size_t n)
{
	json_t *a = json_array();
	char *s = NULL;

	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, json_stringn(v[i].p, v[i].len)) != 0)
			goto out;
	s = json_dumps(a, JSON_COMPACT);
out:
	json_decref(a);
	return s;
}

/* The store: one allocation holding every string a parameter list points to. */
struct store {
	char *buf;
	size_t len, cap;
};

static const char *keep(struct store *st, const char *s)
{
	size_t n = strlen(s) + 1;

	if (st->len + n > st->cap)
		return NULL; /* sized up front: cannot happen */
	memcpy(st->buf + st->len, s, n);
	st->len += n;
	return st->buf + st->len - n;
}

/* audit_begin_params, with extra bytes of room left in the store for the caller. */
static int begin_params(const struct audit_begin *b, const char *p[AUDIT_DENIED_NPARAMS],
                        struct store *st, size_t extra)
{
	char *argv = json_strings(b->argv, b->argc);
	char *env = json_strings(b->env_names, b->nenv);
	char nums[2][32];
	int rc = EB_ERR_NOMEM;

	*st = (struct store){0};
	if (argv == NULL || env == NULL)
		goto out;
	snprintf(nums[0], sizeof(nums[0]), "%lu", b->stdin_bytes);
	snprintf(nums[1], sizeof(nums[1]), "%d", b->timeout_s);
	st->cap = strlen(argv) + strlen(env) + sizeof(nums) + 2 + extra;
	st->buf = malloc(st->cap);
	if (st->buf == NULL)
		goto out;
	p[0] = b->exec_id;
	p[1] = b->request_id;
	p[2] = b->workspace_id;
	p[3] = b->org_id;
	p[4] = b->actor;
	p[5] = b->actor_kind;
	p[6] = b->break_glass_reason;
	p[7] = keep(st, argv);
	p[8] = keep(st, env);
	p[9] = b->cwd;
	p[10] = keep(st, nums[0]);
	p[11] = b->client_addr;
	p[12] = b->timeout_s > 0 ? keep(st, nums[1]) : NULL;
	p[13] = b->broker_instance;
	p[14] = b->error_code;
	p[15] = b->detached ? "true" : "false";
	p[16] = b->name;
	p[17] = b->batch_id;
	rc = 0;
out:
	free(argv);
	free(env);
	return rc;
}

int audit_begin_params(const struct audit_begin *b, const char *p[AUDIT_DENIED_NPARAMS],
                       char **store)
{
	struct store st;
	int rc = begin_params(b, p, &st, 0);

	*store = st.buf;
	return rc;
}

int audit_authz_begin_params(const struct audit_begin *b, const char *token_hash, int min_tier,
                             bool accepting, const char *scope,
                             const char *p[AUDIT_AUTHZ_BEGIN_NPARAMS], char **store)
{
	const char *q[AUDIT_DENIED_NPARAMS];
	struct store st;
	char tier[16], maxd[16], maxo[16], dead[16];
	int rc = begin_params(b, q, &st, sizeof(tier) + sizeof(maxd) + sizeof(maxo) + sizeof(dead));

	*store = st.buf;
	if (rc != 0)
		return rc;
	snprintf(tier, sizeof(tier), "%d", min_tier);
	p[0] = token_hash;
	p[1] = b->workspace_id;
	p[2] = b->exec_id;
	p[3] = b->request_id;
	p[4] = b->actor;
	p[5] = b->break_glass_reason;
	for (int i = 6; i <= 12; i++)
		p[i] = q[i + 1]; /* argv, env, cwd, stdin_bytes, client, timeout, instance */
	p[13] = keep(&st, tier);
	p[14] = accepting ? "true" : "false";
	p[15] = q[15];
	p[16] = q[16];
	snprintf(maxd, sizeof(maxd), "%d", b->max_detached);
	p[17] = keep(&st, maxd);
	p[18] = scope;
	p[19] = q[17];
	if (b->max_org_execs > 0) {
		snprintf(maxo, sizeof(maxo), "%d", b->max_org_execs);
		p[20] = keep(&st, maxo);
	} else {
		p[20] = NULL; /* no limit */
	}
	snprintf(dead, sizeof(dead), "%d", b->dead_after_s > 0 ? b->dead_after_s : 40);
	p[21] = keep(&st, dead);
	return 0;
}

int audit_end_params(const struct audit_end *e, const char *p[AUDIT_END_NPARAMS], char **store)
{
	struct store st = {.cap = 4 * 32};
	char num[32];

	st.buf = malloc(st.cap);
	*store = st.buf;
	if (st.buf == NULL)
		return EB_ERR_NOMEM;
	p[0] = e->exec_id;
	p[1] = e->status;
	p[2] = e->error_code;
	snprintf(num, sizeof(num), "%d", e->exit_code);
	p[3] = strcmp(e->status, "exited") == 0 ? keep(&st, num) : NULL;
	p[4] = strcmp(e->status, "signaled") == 0 ? e->exit_signal : NULL;
	snprintf(num, sizeof(num), "%lld", e->duration_ms < 0 ? 0 : e->duration_ms);
	p[5] = keep(&st, num);
	snprintf(num, sizeof(num), "%llu", e->stdout_bytes);
	p[6] = keep(&st, num);
	snprintf(num, sizeof(num), "%llu", e->stderr_bytes);
	p[7] = keep(&st, num);
	p[8] = e->stdout_truncated ? "true" : "false";
	p[9] = e->stderr_truncated ? "true" : "false";
	return 0;
}
