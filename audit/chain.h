/* audit/chain.h: the arithmetic of the audit log's hash chain: a row's canonical content
 * (version 1), the link hash, hashes as hex, and the anchors a verify run prints. Pure;
 * audit/verify.h walks a chain with it. docs/audit.md describes the same bytes. */
#ifndef EB_AUDIT_CHAIN_H
#define EB_AUDIT_CHAIN_H

#include <libpq-fe.h>
#include <stddef.h>

#define AUDIT_HASH_LEN 32 /* SHA-256 */

/* The canonical content of row i of a result with the columns AUDIT_ITEM_COLUMNS
 * (audit/query.h), exactly as exec_audit_canonical() builds it in migration 0003, appended
 * to *buf (malloc'd, grown). 0 or EB_ERR_NOMEM / EB_ERR_INVAL (a column that cannot be
 * read). */
int audit_canonical(const PGresult *res, int i, char **buf, size_t *len, size_t *cap);
/* SHA-256(prev || canonical). */
void audit_link_hash(const unsigned char prev[AUDIT_HASH_LEN], const char *canon, size_t len,
                     unsigned char out[AUDIT_HASH_LEN]);

/* A hash as 2 * AUDIT_HASH_LEN lower-case hex digits. */
void audit_hash_format(const unsigned char hash[AUDIT_HASH_LEN], char out[2 * AUDIT_HASH_LEN + 1]);
/* 2 * AUDIT_HASH_LEN hex digits (either case) as a hash: 0 or EB_ERR_INVAL. */
int audit_hash_parse(const char *text, unsigned char hash[AUDIT_HASH_LEN]);

/* An anchor "SEQ:HEX" as verify prints its head (SEQ >= 0; 0 is the empty chain, whose
 * hash is 32 zero bytes). 0 or EB_ERR_INVAL. */
int audit_anchor_parse(const char *text, long long *seq, unsigned char hash[AUDIT_HASH_LEN]);

#endif
