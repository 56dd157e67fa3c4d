/* common/scopes.c: scope names, their lists and sets. */
#include "common/scopes.h"

#include <stdio.h>
#include <string.h>

#include "common/err.h"

static const struct {
	unsigned bit;
	const char *name;
} scope_table[] = {
    {SCOPE_EXEC, "exec"},
    {SCOPE_BATCH, "batch"},
    {SCOPE_AUDIT_READ, "audit:read"},
};
#define NSCOPES (sizeof(scope_table) / sizeof(scope_table[0]))

const char *scope_name(unsigned s)
{
	for (size_t i = 0; i < NSCOPES; i++)
		if (scope_table[i].bit == s)
			return scope_table[i].name;
	return NULL;
}

/* The bit of the name p[0..n), or 0. */
static unsigned scope_lookup(const char *p, size_t n)
{
	for (size_t i = 0; i < NSCOPES; i++)
		if (strlen(scope_table[i].name) == n && memcmp(scope_table[i].name, p, n) == 0)
			return scope_table[i].bit;
	return 0;
}

int scopes_parse_list(const char *list, unsigned *out, char *bad, size_t badcap)
{
	unsigned set = 0, bit;
	const char *p = list;

	*out = 0;
	if (badcap > 0)
		bad[0] = '\0';
	for (;;) {
		size_t n = strcspn(p, ",");

		bit = scope_lookup(p, n);
		if (bit == 0) {
			snprintf(bad, badcap, "%.*s", (int)n, p);
			return EB_ERR_INVAL;
		}
		set |= bit;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	*out = set;
	return 0;
}

unsigned scopes_from_pg_array(const char *text)
{
	unsigned set = 0;
	const char *p = text;

	if (p == NULL || *p != '{')
		return 0;
	p++;
	while (*p != '\0' && *p != '}') {
		size_t n = strcspn(p, ",}");

		/* The names need no quoting in an array literal, so a quoted item is none of
		 * them. */
		set |= scope_lookup(p, n);
		p += n;
		if (*p == ',')
			p++;
	}
	return set;
}

void scopes_format(unsigned set, char *buf, size_t cap)
{
	size_t used = 0;

	if (cap == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < NSCOPES; i++) {
		int k;

		if (!(set & scope_table[i].bit))
			continue;
		k = snprintf(buf + used, cap - used, "%s%s", used > 0 ? "," : "",
		             scope_table[i].name);
		if (k < 0 || (size_t)k >= cap - used)
			return;
		used += (size_t)k;
	}
}
