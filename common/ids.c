/* common/ids.c: identifier format checks. */
#include "common/ids.h"

#include <string.h>

static bool is_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool all_of(const char *s, const char *extra)
{
	for (; *s; s++)
		if (!is_alnum(*s) && strchr(extra, *s) == NULL)
			return false;
	return true;
}

bool ids_valid_name(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 64 && is_alnum(s[0]) && all_of(s, "._-");
}

bool ids_valid_host(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 253 && s[0] != '-' && all_of(s, ".:_-");
}

bool ids_valid_ssh_user(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 32 &&
	       (s[0] == '_' || (is_alnum(s[0]) && !(s[0] >= '0' && s[0] <= '9'))) &&
	       all_of(s, "._-");
}
