/* audit/render.h: a row of the audit log as the API's JSON item, and a page of rows as the
 * API's page with its next cursor. docs/audit.md shows both. */
#ifndef EB_AUDIT_RENDER_H
#define EB_AUDIT_RENDER_H

#include <jansson.h>
#include <libpq-fe.h>

#include "audit/filter.h"

/* The JSON item of row i of a result of one of audit/query.h's queries: every audit column
 * (exec_id, chain_seq, chain_hash, workspace_id, org_id, actor, actor_kind,
 * break_glass_reason, argv, cwd, env_keys, stdin_bytes, client_addr, request_id,
 * timeout_s, status, error_code, exit_code, exit_signal, started_at, finished_at,
 * duration_ms, stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated,
 * broker_instance). NULL if out of memory. */
json_t *audit_item_json(const PGresult *res, int i);
/* The i-th key of an item, in the order audit_item_json() sets them; NULL past the end. */
const char *audit_item_key(unsigned long i);
/* {"items":[...], "next_cursor": "..." | null} of a list result under f. */
json_t *audit_page_json(const PGresult *res, const struct audit_filter *f);

#endif
