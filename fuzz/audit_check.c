/* fuzz/audit_check.c: see fuzz/audit_check.h. */
#include "fuzz/audit_check.h"

#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "fuzz/fuzz.h"

static void check_time(const char *what, long long us)
{
	char text[32];
	long long back;

	FUZZ_CHECK(us >= AUDIT_TIME_MIN_US && us <= AUDIT_TIME_MAX_US,
	           "%s is %lld µs, outside the times a filter may name", what, us);
	audit_time_format(us, text);
	FUZZ_CHECK(audit_time_parse(text, &back) == 0 && back == us,
	           "%s: %lld formats as %s, which reads back as %lld", what, us, text, back);
}

void fuzz_check_audit_filter(int rc, const struct audit_filter *f, const char *const *names,
                             size_t n, const char *field, const char *err)
{
	struct audit_filter g;
	char cursor[AUDIT_CURSOR_MAX];
	static const char id[] = "0123abcd-4567-89ef-ABCD-0123456789ab";

	if (rc != 0) {
		bool named = strcmp(field, "cursor") == 0;

		FUZZ_CHECK(rc == EB_ERR_INVAL, "refused with %d", rc);
		/* The name as given, or cut to the field's buffer (63 bytes, fuzz_query's too). */
		for (size_t i = 0; i < n && !named; i++)
			named = strcmp(field, names[i]) == 0 ||
			        (strlen(field) == 63 && strncmp(field, names[i], 63) == 0);
		FUZZ_CHECK(named, "the refusal names \"%s\", no parameter given", field);
		FUZZ_CHECK(err[0] != '\0', "a refusal without a message");
		return;
	}
	FUZZ_CHECK(f->limit >= 1 && f->limit <= AUDIT_LIMIT_MAX, "limit %d", f->limit);
	FUZZ_CHECK(f->break_glass >= -1 && f->break_glass <= 1, "break_glass %d", f->break_glass);
	FUZZ_CHECK(f->status == NULL || audit_status_valid(f->status), "status");
	FUZZ_CHECK(f->batch_id == NULL || audit_exec_id_valid(f->batch_id), "batch_id");
	const char *texts[] = {f->workspace_id, f->org_id, f->actor};
	for (size_t i = 0; i < 3; i++)
		FUZZ_CHECK(texts[i] == NULL || (strlen(texts[i]) >= 1 && strlen(texts[i]) <= 200),
		           "a text filter of %zu bytes", strlen(texts[i]));
	if (f->has_since)
		check_time("since", f->since_us);
	if (f->has_until)
		check_time("until", f->until_us);
	if (f->has_cursor) {
		check_time("the cursor's time", f->cursor_us);
		FUZZ_CHECK(audit_exec_id_valid(f->cursor_id), "the cursor's id %s", f->cursor_id);
	}
	/* A cursor made for these filters is theirs: it decodes to its position under them,
	 * and not under others. */
	long long us = f->has_since ? f->since_us : f->has_cursor ? f->cursor_us : 0;
	audit_cursor_encode(f, us, id, cursor);
	FUZZ_CHECK(strlen(cursor) == 44, "a cursor of %zu characters", strlen(cursor));
	g = *f;
	FUZZ_CHECK(audit_cursor_decode(&g, cursor) == 0, "our own cursor %s is refused", cursor);
	FUZZ_CHECK(g.cursor_us == us && strcasecmp(g.cursor_id, id) == 0,
	           "the cursor decodes to %lld %s", g.cursor_us, g.cursor_id);
	g = *f;
	g.break_glass = f->break_glass == 1 ? 0 : 1;
	FUZZ_CHECK(audit_cursor_decode(&g, cursor) != 0, "a cursor taken under other filters");
}
