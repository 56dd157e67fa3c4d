/* audit/query.h: the SQL that reads the audit log back: a page of rows, one row, the
 * chain's links; the columns each returns (AUDIT_ITEM_COLUMNS, read by position), and the
 * scope that decides which rows exist for a reader. */
#ifndef EB_AUDIT_QUERY_H
#define EB_AUDIT_QUERY_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "audit/filter.h"

/* Who is asking: what part of the log exists for them. Out-of-scope rows are absent from
 * lists and not_found one by one, whatever the filters say. */
enum audit_scope_kind {
	AUDIT_SCOPE_ALL,       /* admin tokens, the CLI */
	AUDIT_SCOPE_ORG,       /* org tokens: rows filed under org_id */
	AUDIT_SCOPE_WORKSPACE, /* workspace tokens: their workspace's rows of their org */
};

struct audit_scope {
	enum audit_scope_kind kind;
	const char *org_id;       /* ORG and WORKSPACE */
	const char *workspace_id; /* WORKSPACE */
};

/* Every column of an item, as text, in the order of enum audit_col; times as whole µs
 * since the epoch. */
#define AUDIT_ITEM_COLUMNS                                                                         \
	"exec_id, chain_seq, encode(chain_hash, 'hex'), workspace_id, org_id, actor, actor_kind, " \
	"break_glass_reason, array_to_json(argv), cwd, array_to_json(env_keys), stdin_bytes, "     \
	"host(client_addr), request_id, timeout_s, status, error_code, exit_code, exit_signal, "   \
	"(extract(epoch FROM started_at) * 1000000)::bigint, "                                     \
	"(extract(epoch FROM finished_at) * 1000000)::bigint, duration_ms, stdout_bytes, "         \
	"stderr_bytes, stdout_truncated, stderr_truncated, broker_instance, client_addr::text, "   \
	"detached, name, batch_id"

/* The positions of AUDIT_ITEM_COLUMNS: audit_item_json and audit_canonical read them by
 * these. */
enum audit_col {
	AUDIT_COL_EXEC_ID,
	AUDIT_COL_CHAIN_SEQ,
	AUDIT_COL_CHAIN_HASH,
	AUDIT_COL_WORKSPACE_ID,
	AUDIT_COL_ORG_ID,
	AUDIT_COL_ACTOR,
	AUDIT_COL_ACTOR_KIND,
	AUDIT_COL_REASON,
	AUDIT_COL_ARGV,
	AUDIT_COL_CWD,
	AUDIT_COL_ENV_KEYS,
	AUDIT_COL_STDIN_BYTES,
	AUDIT_COL_CLIENT_HOST,
	AUDIT_COL_REQUEST_ID,
	AUDIT_COL_TIMEOUT_S,
	AUDIT_COL_STATUS,
	AUDIT_COL_ERROR_CODE,
	AUDIT_COL_EXIT_CODE,
	AUDIT_COL_EXIT_SIGNAL,
	AUDIT_COL_STARTED_US,
	AUDIT_COL_FINISHED_US,
	AUDIT_COL_DURATION_MS,
	AUDIT_COL_STDOUT_BYTES,
	AUDIT_COL_STDERR_BYTES,
	AUDIT_COL_STDOUT_TRUNC,
	AUDIT_COL_STDERR_TRUNC,
	AUDIT_COL_BROKER_INSTANCE,
	AUDIT_COL_CLIENT_INET, /* the canonical form: inet's text, with its mask */
	AUDIT_COL_DETACHED,
	AUDIT_COL_NAME,
	AUDIT_COL_BATCH_ID,
	AUDIT_NCOLS
};

/* A statement and its text parameters. params point into the struct itself or into the
 * filter's and scope's strings, which must outlive it. */
#define AUDIT_QUERY_MAX_PARAMS 16
struct audit_query {
	char sql[3072];
	const char *params[AUDIT_QUERY_MAX_PARAMS];
	int nparams;
	char nums[6][24];
};

/* One page, newest first (started_at DESC, exec_id DESC), with f->limit + 1 rows at most
 * (the extra one only says that a next page exists). Columns: AUDIT_ITEM_COLUMNS. */
void audit_query_list(struct audit_query *q, const struct audit_filter *f,
                      const struct audit_scope *s);
/* The one row exec_id (a valid UUID; see audit_exec_id_valid) in scope, or none. */
void audit_query_one(struct audit_query *q, const char *exec_id, const struct audit_scope *s);
/* Finished rows with after_seq < chain_seq <= upto_seq under f (cursor ignored), at most
 * f->limit of them: the first links after after_seq, or with last set the last ones up to
 * upto_seq (newest link first). What `audit --follow` prints. */
void audit_query_links(struct audit_query *q, const struct audit_filter *f, long long after_seq,
                       long long upto_seq, bool last);

/* Row i's column c of a result of one of the queries above as text, NULL when it is NULL. */
const char *audit_row_text(const PGresult *res, int i, enum audit_col c);
/* Row i's started_at (µs since the epoch) and chain_seq (0 while running). */
long long audit_row_started_us(const PGresult *res, int i);
long long audit_row_chain_seq(const PGresult *res, int i);
/* Moves f's cursor to just after row i of a list result: the next page follows it. */
void audit_filter_after(struct audit_filter *f, const PGresult *res, int i);

#endif
