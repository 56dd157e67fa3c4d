/* audit/review.h: reading the audit log back: a row as the API's JSON item, and the hash
 * chain's canonical content and verification (audit_verify reads through a blocking
 * PGconn; the rest is pure). Filters: audit/filter.h; the SQL: audit/query.h. */
#ifndef EB_AUDIT_REVIEW_H
#define EB_AUDIT_REVIEW_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "audit/filter.h"
#include "audit/query.h"

#define AUDIT_HASH_LEN 32 /* SHA-256 */

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
