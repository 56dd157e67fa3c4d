/* audit/verify.c: walks the hash chain in one read-only snapshot, a batch at a time, and
 * says what is wrong with it: altered, removed or forged links, each on its own line. */
#include "audit/verify.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "audit/chain.h"
#include "audit/query.h"
#include "common/err.h"

#define VERIFY_BATCH       5000
#define VERIFY_MAX_PRINTED 100

struct verify {
	FILE *out;
	struct audit_verify_result *r;
};

static void problem(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct verify *v, const char *fmt, ...)
{
	va_list ap;

	if (v->r->problems++ == VERIFY_MAX_PRINTED) {
		fprintf(v->out, "(more problems not shown)\n");
		return;
	}
	if (v->r->problems > VERIFY_MAX_PRINTED)
		return;
	va_start(ap, fmt);
	vfprintf(v->out, fmt, ap);
	va_end(ap);
	fputc('\n', v->out);
}

static PGresult *verify_exec(PGconn *c, const char *sql, int n, const char *const *params,
                             char *err, size_t errlen)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *m = PQresultErrorMessage(res);

		snprintf(err, errlen, "cannot read the audit log: %.*s", (int)strcspn(m, "\n"), m);
		PQclear(res);
		return NULL;
	}
	return res;
}

int audit_verify(PGconn *c, const char *anchor, FILE *out, struct audit_verify_result *r, char *err,
                 size_t errlen)
{
	static const unsigned char zero[AUDIT_HASH_LEN];
	struct verify v = {out, r};
	unsigned char prev[AUDIT_HASH_LEN], stored[AUDIT_HASH_LEN], computed[AUDIT_HASH_LEN];
	unsigned char anchor_hash[AUDIT_HASH_LEN];
	long long anchor_seq = -1, last = 0;
	bool anchor_seen = false, have_head = false;
	char sql[sizeof(AUDIT_ITEM_COLUMNS) + 256],
	    last_id[37] = "00000000-0000-0000-0000-000000000000";
	char *canon = NULL, num[24], hx[2 * AUDIT_HASH_LEN + 1];
	size_t len, cap = 0;
	PGresult *res = NULL;
	int rc = EB_ERR_DB;

	memset(r, 0, sizeof(*r));
	memcpy(prev, zero, sizeof(prev));
	if (anchor != NULL && audit_anchor_parse(anchor, &anchor_seq, anchor_hash) != 0) {
		snprintf(err, errlen,
		         "an anchor is SEQ:HASH as verify printed it (a number, a "
		         "colon, 64 hex digits)");
		return EB_ERR_INVAL;
	}
	if (anchor_seq == 0 && memcmp(anchor_hash, zero, AUDIT_HASH_LEN) != 0)
		problem(&v, "seq 0: altered: the chain starts from 32 zero bytes, not the anchored "
		            "hash");
	/* One snapshot for the whole walk: brokers may go on writing links meanwhile. */
	res =
	    verify_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err, errlen);
	if (res == NULL)
		goto out;
	PQclear(res);
	res = verify_exec(c, "SELECT seq, encode(hash, 'hex') FROM exec_audit_chain_head", 0, NULL,
	                  err, errlen);
	if (res == NULL)
		goto out;
	if (PQntuples(res) == 1 && audit_hash_parse(PQgetvalue(res, 0, 1), r->head_hash) == 0) {
		r->head_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		have_head = true;
	} else {
		problem(&v, "head: removed: exec_audit_chain_head has %d rows, not one",
		        PQntuples(res));
	}
	PQclear(res);
	snprintf(sql, sizeof(sql),
	         "SELECT %s FROM exec_audit WHERE chain_seq IS NOT NULL AND (chain_seq, exec_id) > "
	         "($1::bigint, $2::uuid) ORDER BY chain_seq, exec_id LIMIT %d",
	         AUDIT_ITEM_COLUMNS, VERIFY_BATCH);
	for (;;) {
		const char *params[2] = {num, last_id};
		int n;

		snprintf(num, sizeof(num), "%lld", last);
		res = verify_exec(c, sql, 2, params, err, errlen);
		if (res == NULL)
			goto out;
		n = PQntuples(res);
		for (int i = 0; i < n; i++) {
			const char *id = PQgetvalue(res, i, AUDIT_COL_EXEC_ID);
			long long seq = strtoll(PQgetvalue(res, i, AUDIT_COL_CHAIN_SEQ), NULL, 10);

			r->links++;
			if (audit_hash_parse(PQgetvalue(res, i, AUDIT_COL_CHAIN_HASH), stored) !=
			    0) {
				problem(&v,
				        "seq %lld (exec_id %s): forged: the link has no valid hash",
				        seq, id);
				continue;
			}
			len = 0;
			if (audit_canonical(res, i, &canon, &len, &cap) != 0) {
				snprintf(err, errlen,
				         "out of memory, or a column that cannot be read");
				rc = EB_ERR_NOMEM;
				goto out;
			}
			if (seq == last) {
				problem(
				    &v,
				    "seq %lld (exec_id %s): forged: a second link with the same "
				    "seq",
				    seq, id);
				continue;
			}
			if (seq > last + 1) {
				if (seq == last + 2)
					problem(&v, "seq %lld: removed: the link is missing",
					        last + 1);
				else
					problem(&v,
					        "seq %lld..%lld: removed: %lld links are missing",
					        last + 1, seq - 1, seq - 1 - last);
			} else {
				audit_link_hash(prev, canon, len, computed);
				if (memcmp(computed, stored, AUDIT_HASH_LEN) != 0)
					problem(
					    &v,
					    "seq %lld (exec_id %s): altered: the row does not "
					    "match its hash (its content, or the link before it, "
					    "changed)",
					    seq, id);
			}
			if (strcmp(PQgetvalue(res, i, AUDIT_COL_STATUS), "running") == 0)
				problem(&v,
				        "seq %lld (exec_id %s): forged: a running row has a link",
				        seq, id);
			if (have_head && seq > r->head_seq)
				problem(&v,
				        "seq %lld (exec_id %s): forged: a link after the head (seq "
				        "%lld)",
				        seq, id, r->head_seq);
			if (seq == anchor_seq) {
				anchor_seen = true;
				if (memcmp(stored, anchor_hash, AUDIT_HASH_LEN) != 0)
					problem(
					    &v,
					    "seq %lld (exec_id %s): altered: the link no longer "
					    "has the anchored hash; the chain was rewritten from "
					    "here or before",
					    seq, id);
			}
			memcpy(prev, stored, AUDIT_HASH_LEN);
			last = seq;
			snprintf(last_id, sizeof(last_id), "%s", id);
		}
		PQclear(res);
		res = NULL;
		if (n < VERIFY_BATCH)
			break;
	}
	if (have_head && r->head_seq > last) {
		if (r->head_seq == last + 1)
			problem(&v, "seq %lld: removed: the head is at %lld, the last link is %lld",
			        r->head_seq, r->head_seq, last);
		else
			problem(&v,
			        "seq %lld..%lld: removed: the head is at %lld, the last link is "
			        "%lld",
			        last + 1, r->head_seq, r->head_seq, last);
	} else if (have_head && r->head_seq == last &&
	           memcmp(r->head_hash, last > 0 ? prev : zero, AUDIT_HASH_LEN) != 0) {
		audit_hash_format(r->head_hash, hx);
		problem(&v, "seq %lld: altered: the head's hash %s is not the last link's", last,
		        hx);
	}
	if (anchor_seq > 0 && !anchor_seen)
		problem(&v, "seq %lld: removed: the anchored link is missing", anchor_seq);
	/* A finished row waits for its link (seal_pending) for moments after its broker
	 * finished it, or SEAL_LATE_S at most when that broker died and another's janitor
	 * links it: one waiting longer is unprotected, and one not waiting has no business
	 * being unlinked. */
	res = verify_exec(c,
	                  "SELECT exec_id, seal_pending, seal_pending AND finished_at < now() - "
	                  "make_interval(secs => " SEAL_LATE_S_TEXT ") FROM exec_audit "
	                  "WHERE status <> 'running' AND chain_seq IS NULL ORDER BY started_at "
	                  "LIMIT 1000",
	                  0, NULL, err, errlen);
	if (res == NULL)
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 1), "t") != 0)
			problem(&v, "exec_id %s: forged: a finished row without a link",
			        PQgetvalue(res, i, 0));
		else if (strcmp(PQgetvalue(res, i, 2), "t") == 0)
			problem(
			    &v,
			    "exec_id %s: unlinked: finished more than %s s ago and still waiting "
			    "for its link (is any broker running?)",
			    PQgetvalue(res, i, 0), SEAL_LATE_S_TEXT);
		else
			r->pending++;
	}
	PQclear(res);
	res = verify_exec(c, "COMMIT", 0, NULL, err, errlen);
	if (res == NULL)
		goto out;
	rc = r->problems == 0 ? 0 : 1;
out:
	PQclear(res);
	free(canon);
	if (rc < 0)
		PQclear(PQexec(c, "ROLLBACK"));
	return rc;
}
