/* audit/verify.h: `exec-broker audit verify`'s walk of the audit log's hash chain through a
 * blocking PGconn: every link recomputed, every problem printed. */
#ifndef EB_AUDIT_VERIFY_H
#define EB_AUDIT_VERIFY_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>

#include "audit/chain.h"

/* A finished row waits this long for its link at most: its broker links it within moments,
 * another broker's janitor within api/seal.h's SEAL_STALE_S and a heartbeat. */
#define SEAL_LATE_S_TEXT "300"

/* What audit_verify found. */
struct audit_verify_result {
	long long links;    /* rows read in chain order */
	long long head_seq; /* the head as recorded by the database */
	long long problems; /* lines printed about broken links */
	long long pending;  /* finished rows waiting for their link (not yet late) */
	unsigned char head_hash[AUDIT_HASH_LEN];
};

/* Walks the whole chain in order of chain_seq (in batches, so any size of log fits in
 * memory), recomputing each link from the row's columns, and prints one line per problem on
 * out, first problem first: a row altered (its hash does not match its content and the
 * previous link), links removed (a gap, or a head past the last row), rows inserted out of
 * order or outside the chain (a finished row without a link that is not waiting for one,
 * or waiting for longer than SEAL_LATE_S_TEXT seconds; a link after the head, a running row
 * with one). Rows waiting for their link are counted in pending. anchor, if not NULL, is "SEQ:HEX"
 * recorded earlier from a verify run: the link SEQ must still have that hash. 0 when the chain is
 * intact (problems 0), 1 when it is not, or a negative EB_ERR_* with a message in err when the
 * database could not be read. */
int audit_verify(PGconn *c, const char *anchor, FILE *out, struct audit_verify_result *r, char *err,
                 size_t errlen);

#endif
