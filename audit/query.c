/* audit/query.c: builds the statements of audit/query.h, their conditions and numbered
 * parameters, and reads the positions of their rows back. */
#include "audit/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parameter of µs since the epoch as a timestamptz, exactly: TS_BEFORE $N TS_AFTER. */
#define TS_BEFORE "(to_timestamp(0) + "
#define TS_AFTER  "::bigint * interval '1 microsecond')"

struct qb {
	struct audit_query *q;
	size_t len;
	int nums;
};

static void qb_add(struct qb *b, const char *s)
{
	size_t n = strlen(s);

	if (b->len + n >= sizeof(b->q->sql))
		abort(); /* the statements are bounded by construction */
	memcpy(b->q->sql + b->len, s, n + 1);
	b->len += n;
}

/* Appends " AND <before>$N<after>" with param as the new parameter $N. */
static void qb_cond(struct qb *b, const char *before, const char *after, const char *param)
{
	char n[16];

	b->q->params[b->q->nparams++] = param;
	snprintf(n, sizeof(n), "$%d", b->q->nparams);
	qb_add(b, " AND ");
	qb_add(b, before);
	qb_add(b, n);
	qb_add(b, after);
}

static const char *qb_num(struct qb *b, long long v)
{
	char *p = b->q->nums[b->nums++];

	snprintf(p, sizeof(b->q->nums[0]), "%lld", v);
	return p;
}

static void qb_start(struct qb *b, struct audit_query *q, const struct audit_scope *s)
{
	memset(q, 0, sizeof(*q));
	b->q = q;
	b->len = 0;
	b->nums = 0;
	qb_add(b, "SELECT ");
	qb_add(b, AUDIT_ITEM_COLUMNS);
	qb_add(b, " FROM exec_audit WHERE true");
	if (s->kind != AUDIT_SCOPE_ALL && s->kind != AUDIT_SCOPE_ORG &&
	    s->kind != AUDIT_SCOPE_WORKSPACE)
		abort();
	/* A workspace token's rows are its workspace's within its org: a probe that another
	 * org filed under this workspace's id is that org's row, not this workspace's. */
	if (s->kind == AUDIT_SCOPE_WORKSPACE)
		qb_cond(b, "workspace_id = ", "", s->workspace_id);
	if (s->kind != AUDIT_SCOPE_ALL)
		qb_cond(b, "org_id = ", "", s->org_id);
}

static void qb_filters(struct qb *b, const struct audit_filter *f)
{
	if (f->workspace_id != NULL)
		qb_cond(b, "workspace_id = ", "", f->workspace_id);
	if (f->org_id != NULL)
		qb_cond(b, "org_id = ", "", f->org_id);
	if (f->actor != NULL)
		qb_cond(b, "actor = ", "", f->actor);
	if (f->status != NULL)
		qb_cond(b, "status = ", "", f->status);
	if (f->batch_id != NULL)
		qb_cond(b, "batch_id = ", "::uuid", f->batch_id);
	if (f->break_glass == 1)
		qb_add(b, " AND break_glass_reason IS NOT NULL");
	else if (f->break_glass == 0)
		qb_add(b, " AND break_glass_reason IS NULL");
	if (f->has_since)
		qb_cond(b, "started_at >= " TS_BEFORE, TS_AFTER, qb_num(b, f->since_us));
	if (f->has_until)
		qb_cond(b, "started_at < " TS_BEFORE, TS_AFTER, qb_num(b, f->until_us));
}

void audit_query_list(struct audit_query *q, const struct audit_filter *f,
                      const struct audit_scope *s)
{
	struct qb b;
	char tail[64];

	qb_start(&b, q, s);
	qb_filters(&b, f);
	if (f->has_cursor) {
		char cond[160];

		q->params[q->nparams++] = qb_num(&b, f->cursor_us);
		q->params[q->nparams++] = f->cursor_id;
		snprintf(cond, sizeof(cond),
		         " AND (started_at, exec_id) < (" TS_BEFORE "$%d" TS_AFTER ", $%d::uuid)",
		         q->nparams - 1, q->nparams);
		qb_add(&b, cond);
	}
	q->params[q->nparams++] = qb_num(&b, (long long)f->limit + 1);
	snprintf(tail, sizeof(tail), " ORDER BY started_at DESC, exec_id DESC LIMIT $%d",
	         q->nparams);
	qb_add(&b, tail);
}

void audit_query_one(struct audit_query *q, const char *exec_id, const struct audit_scope *s)
{
	struct qb b;

	qb_start(&b, q, s);
	qb_cond(&b, "exec_id = ", "::uuid", exec_id);
}

void audit_query_links(struct audit_query *q, const struct audit_filter *f, long long after_seq,
                       long long upto_seq, bool last)
{
	static const struct audit_scope all = {AUDIT_SCOPE_ALL, NULL, NULL};
	struct qb b;
	char tail[80];

	qb_start(&b, q, &all);
	qb_filters(&b, f);
	qb_cond(&b, "chain_seq > ", "::bigint", qb_num(&b, after_seq));
	qb_cond(&b, "chain_seq <= ", "::bigint", qb_num(&b, upto_seq));
	q->params[q->nparams++] = qb_num(&b, f->limit);
	snprintf(tail, sizeof(tail), " ORDER BY chain_seq %s LIMIT $%d", last ? "DESC" : "ASC",
	         q->nparams);
	qb_add(&b, tail);
}

const char *audit_row_text(const PGresult *res, int i, enum audit_col c)
{
	return PQgetisnull(res, i, c) ? NULL : PQgetvalue(res, i, c);
}

long long audit_row_started_us(const PGresult *res, int i)
{
	return strtoll(PQgetvalue(res, i, AUDIT_COL_STARTED_US), NULL, 10);
}

long long audit_row_chain_seq(const PGresult *res, int i)
{
	return PQgetisnull(res, i, AUDIT_COL_CHAIN_SEQ)
	           ? 0
	           : strtoll(PQgetvalue(res, i, AUDIT_COL_CHAIN_SEQ), NULL, 10);
}

void audit_filter_after(struct audit_filter *f, const PGresult *res, int i)
{
	f->has_cursor = true;
	f->cursor_us = audit_row_started_us(res, i);
	snprintf(f->cursor_id, sizeof(f->cursor_id), "%s", PQgetvalue(res, i, AUDIT_COL_EXEC_ID));
}
