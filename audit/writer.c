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
    ", status, error_code, finished_at, duration_ms) VALUES (" BEGIN_VALUES
    ", 'denied', $15, now(), 0)";

const char audit_end_sql[] =
    "UPDATE exec_audit SET status = $2, error_code = $3, exit_code = $4::integer, "
    "exit_signal = $5, finished_at = greatest(now(), started_at), "
    "duration_ms = $6::bigint, stdout_bytes = $7::bigint, stderr_bytes = $8::bigint, "
    "stdout_truncated = $9::boolean, stderr_truncated = $10::boolean "
    "WHERE exec_id = $1::uuid AND status = 'running'";

const char audit_abandon_sql[] =
    "UPDATE exec_audit SET status = 'abandoned', finished_at = greatest(now(), started_at), "
    "duration_ms = greatest(0, (extract(epoch FROM now() - started_at) * 1000)::bigint) "
    "WHERE status = 'running' AND broker_instance = $1";

const char audit_sweep_sql[] =
    "UPDATE exec_audit SET status = 'abandoned', finished_at = greatest(now(), started_at), "
    "duration_ms = greatest(0, (extract(epoch FROM now() - started_at) * 1000)::bigint) "
    "WHERE exec_id IN ("
    " SELECT a.exec_id FROM exec_audit a"
    " WHERE a.status = 'running'"
    "  AND a.started_at < now() - make_interval(secs => coalesce(a.timeout_s, 0) + $2::integer)"
    "  AND (SELECT up_since FROM broker_instances WHERE instance = $1)"
    "      < now() - make_interval(secs => $3::integer)"
    "  AND NOT EXISTS (SELECT 1 FROM broker_instances b WHERE b.instance = a.broker_instance"
    "      AND b.heartbeat_at >= now() - make_interval(secs => $3::integer))"
    " ORDER BY a.started_at LIMIT 1000)";

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

int audit_begin_params(const struct audit_begin *b, const char *p[AUDIT_DENIED_NPARAMS],
                       char **store)
{
	char *argv = json_strings(b->argv, b->argc);
	char *env = json_strings(b->env_names, b->nenv);
	char nums[2][32];
	struct store st = {0};
	int rc = EB_ERR_NOMEM;

	*store = NULL;
	if (argv == NULL || env == NULL)
		goto out;
	snprintf(nums[0], sizeof(nums[0]), "%lu", b->stdin_bytes);
	snprintf(nums[1], sizeof(nums[1]), "%d", b->timeout_s);
	st.cap = strlen(argv) + strlen(env) + sizeof(nums) + 2;
	st.buf = malloc(st.cap);
	if (st.buf == NULL)
		goto out;
	p[0] = b->exec_id;
	p[1] = b->request_id;
	p[2] = b->workspace_id;
	p[3] = b->org_id;
	p[4] = b->actor;
	p[5] = b->actor_kind;
	p[6] = b->break_glass_reason;
	p[7] = keep(&st, argv);
	p[8] = keep(&st, env);
	p[9] = b->cwd;
	p[10] = keep(&st, nums[0]);
	p[11] = b->client_addr;
	p[12] = b->timeout_s > 0 ? keep(&st, nums[1]) : NULL;
	p[13] = b->broker_instance;
	p[14] = b->error_code;
	*store = st.buf;
	rc = 0;
out:
	free(argv);
	free(env);
	return rc;
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
