/* audit/review.h: the audit log's hash chain: canonical content and verification
 * (audit_verify reads through a blocking PGconn; the rest is pure). Filters:
 * audit/filter.h; the SQL: audit/query.h; the JSON: audit/render.h. */
#ifndef EB_AUDIT_REVIEW_H
#define EB_AUDIT_REVIEW_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "audit/filter.h"
#include "audit/query.h"
#include "audit/render.h"

#define AUDIT_HASH_LEN 32 /* SHA-256 */

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
