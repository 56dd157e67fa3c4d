/* audit/review.h: reading the audit log back: the SQL of a page, a row as the API's JSON
 * item, and the hash chain's canonical content and verification (audit_verify reads
 * through a blocking PGconn; the rest is pure). Filters: audit/filter.h. */
#ifndef EB_AUDIT_REVIEW_H
#define EB_AUDIT_REVIEW_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "audit/filter.h"

#define AUDIT_HASH_LEN 32 /* SHA-256 */

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

/* The JSON item of row i of a result of one of the queries above: every audit column
 * (exec_id, chain_seq, chain_hash, workspace_id, org_id, actor, actor_kind,
 * break_glass_reason, argv, cwd, env_keys, stdin_bytes, client_addr, request_id,
 * timeout_s, status, error_code, exit_code, exit_signal, started_at, finished_at,
 * duration_ms, stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated,
 * broker_instance). NULL if out of memory. */
json_t *audit_item_json(const PGresult *res, int i);
/* The i-th key of an item, in the order audit_item_json() sets them; NULL past the end. */
const char *audit_item_key(unsigned long i);
/* Row i's started_at (µs since the epoch) and chain_seq (0 while running). */
long long audit_row_started_us(const PGresult *res, int i);
long long audit_row_chain_seq(const PGresult *res, int i);
/* Moves f's cursor to just after row i of a list result: the next page follows it. */
void audit_filter_after(struct audit_filter *f, const PGresult *res, int i);
/* {"items":[...], "next_cursor": "..." | null} of a list result under f. */
json_t *audit_page_json(const PGresult *res, const struct audit_filter *f);

/* The chain. The canonical content of row i of a result of audit_verify_sql, exactly as
 * exec_audit_canonical() builds it in migration 0003, appended to *buf (malloc'd, grown).
 * 0 or EB_ERR_NOMEM / EB_ERR_INVAL (a column that cannot be read). */
int audit_canonical(const PGresult *res, int i, char **buf, size_t *len, size_t *cap);
/* SHA-256(prev || canonical). */
void audit_link_hash(const unsigned char prev[AUDIT_HASH_LEN], const char *canon, size_t len,
                     unsigned char out[AUDIT_HASH_LEN]);

/* An anchor "SEQ:HEX" as verify prints its head (SEQ >= 0; 0 is the empty chain, whose
 * hash is 32 zero bytes). 0 or EB_ERR_INVAL. */
int audit_anchor_parse(const char *text, long long *seq, unsigned char hash[AUDIT_HASH_LEN]);

/* What audit_verify found. */
struct audit_verify_result {
	long long links;    /* rows read in chain order */
	long long head_seq; /* the head as recorded by the database */
	long long problems; /* lines printed about broken links */
	unsigned char head_hash[AUDIT_HASH_LEN];
};

/* Walks the whole chain in order of chain_seq (in batches, so any size of log fits in
 * memory), recomputing each link from the row's columns, and prints one line per problem on
 * out, first problem first: a row altered (its hash does not match its content and the
 * previous link), links removed (a gap, or a head past the last row), rows inserted out of
 * order or outside the chain (a finished row without a link, a link after the head, a
 * running row with one). anchor, if not NULL, is "SEQ:HEX" recorded earlier from a verify
 * run: the link SEQ must still have that hash. 0 when the chain is intact (problems 0),
 * 1 when it is not, or a negative EB_ERR_* with a message in err when the database could
 * not be read. */
int audit_verify(PGconn *c, const char *anchor, FILE *out, struct audit_verify_result *r, char *err,
                 size_t errlen);

#endif
