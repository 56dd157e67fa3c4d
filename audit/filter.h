/* audit/filter.h: what a reader of the audit log asks for: the filters of GET /v1/audit and
 * of `exec-broker audit` (parsed and checked here, pure), with the statuses, RFC 3339 times,
 * exec ids and opaque keyset cursor they take. docs/audit.md is the user's side of it. */
#ifndef EB_AUDIT_FILTER_H
#define EB_AUDIT_FILTER_H

#include <stdbool.h>
#include <stddef.h>

/* The times a filter or a cursor may name: 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z,
 * in µs since the epoch. */
#define AUDIT_TIME_MIN_US (-62167219200000000LL)
#define AUDIT_TIME_MAX_US 253402300799999999LL

#define AUDIT_LIMIT_DEFAULT 100
#define AUDIT_LIMIT_MAX     1000
#define AUDIT_CURSOR_MAX    96 /* longest cursor text, NUL included */

struct audit_filter {
	const char *workspace_id, *org_id, *actor, *status; /* NULL: any */
	const char *batch_id;                               /* a batch's targets; NULL: any */
	int break_glass;                                    /* -1 any, 0 without a reason, 1 with */
	bool has_since, has_until;
	long long since_us, until_us; /* started_at >= since, < until (µs since the epoch) */
	int limit;                    /* rows per page, 1..AUDIT_LIMIT_MAX */
	bool has_cursor;              /* the page starts after (cursor_us, cursor_id) */
	long long cursor_us;
	char cursor_id[37];
};

/* No filters, AUDIT_LIMIT_DEFAULT, no cursor. */
void audit_filter_init(struct audit_filter *f);

/* The filter of a query string, given as n decoded name/value pairs (names: workspace_id,
 * org_id, actor, status, batch_id, break_glass, since, until, limit, cursor). 0, or EB_ERR_INVAL
 * with the parameter's name in field and a message a person can act on in err: unknown or repeated
 * parameter, malformed time, limit not in 1..1000, unknown status, a cursor that does not decode or
 * was not issued for these same filters. f's strings point into values. */
int audit_filter_parse(struct audit_filter *f, const char *const *names, const char *const *values,
                       size_t n, char *field, size_t fieldlen, char *err, size_t errlen);

/* 1 if s is a status an audit row can have ("running", "exited", ...). */
int audit_status_valid(const char *s);
/* The i-th status, NULL past the end (for help texts and docs). */
const char *audit_status_name(unsigned long i);

/* RFC 3339 date-time ("2026-11-23T10:00:00Z", "...T10:00:00.25+01:00"; 'T'/'Z' in either
 * case; at most 9 fraction digits, kept to the microsecond) to µs since the epoch. A space
 * in place of the offset's '+' is read as '+': form decoding turns a '+' that a person
 * typed into a query string unencoded into a space. 0 or EB_ERR_INVAL, also for a time
 * outside AUDIT_TIME_MIN_US..AUDIT_TIME_MAX_US. */
int audit_time_parse(const char *s, long long *us);
/* µs since the epoch as RFC 3339 UTC with microseconds ("2026-11-23T10:00:00.000000Z"). */
void audit_time_format(long long us, char out[32]);

/* The cursor for the page after the row (us, exec_id) under the filters f (without f's
 * own cursor or limit: the page size may change from page to page): base64url text of the
 * position and a digest of the filters. */
void audit_cursor_encode(const struct audit_filter *f, long long us, const char *exec_id,
                         char out[AUDIT_CURSOR_MAX]);
/* Sets f's cursor from text made by audit_cursor_encode with the same filters: 0, or
 * EB_ERR_INVAL (malformed, altered, or made for other filters). */
int audit_cursor_decode(struct audit_filter *f, const char *text);

/* 1 if s is a UUID in its canonical text form (any case). */
int audit_exec_id_valid(const char *s);

#endif
