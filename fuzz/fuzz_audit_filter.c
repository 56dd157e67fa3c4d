/* fuzz/fuzz_audit_filter.c: the filters of GET /v1/audit and `exec-broker audit`
 * (audit/filter.c) from decoded name/value pairs, the RFC 3339 times they take, and the
 * keyset cursor. An accepted filter keeps every documented range (limit, status, ids, times
 * within 0000..9999), its times format and read back to the same µs, a cursor made for it
 * decodes under it and not under other filters; a refusal names a parameter given.
 * Input: pairs "name=value" separated by '&', not decoded (any bytes; a NUL ends a pair). */
#include <stdlib.h>
#include <string.h>

#include "audit/filter.h"
#include "fuzz/audit_check.h"
#include "fuzz/fuzz.h"

#define MAX_PAIRS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *names[MAX_PAIRS], *values[MAX_PAIRS];
	char *copy = malloc(size + 1), field[64], err[300];
	struct audit_filter f;
	size_t n = 0;
	long long us;

	memcpy(copy, data, size);
	copy[size] = '\0';
	for (char *p = copy; p < copy + size && n < MAX_PAIRS;) {
		size_t len = strcspn(p, "&");
		char *eq;

		p[len] = '\0';
		eq = strchr(p, '=');
		names[n] = p;
		values[n] = "";
		if (eq != NULL) {
			*eq = '\0';
			values[n] = eq + 1;
		}
		n++;
		p += strlen(p) + 1;
	}
	int rc = audit_filter_parse(&f, names, values, n, field, sizeof(field), err, sizeof(err));
	fuzz_check_audit_filter(rc, &f, names, n, field, err);
	/* Every value as a time alone: accepted only within the times a filter may name. */
	for (size_t i = 0; i < n; i++)
		if (audit_time_parse(values[i], &us) == 0)
			FUZZ_CHECK(us >= AUDIT_TIME_MIN_US && us <= AUDIT_TIME_MAX_US,
			           "the time %s is %lld µs, outside 0000..9999", values[i], us);
	free(copy);
	return 0;
}
