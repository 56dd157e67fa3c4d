/* common/labels.c: the formats of label keys and values, and the --label argument. */
#include "common/labels.h"

#include <stdio.h>
#include <string.h>

#include "common/err.h"

static bool is_lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_or_digit(c) || (c >= 'A' && c <= 'Z');
}

bool labels_key_valid(const char *s, size_t len)
{
	if (len < 1 || len > LABELS_KEY_MAX || !is_lower_or_digit(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_lower_or_digit(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '/' &&
		    s[i] != '-')
			return false;
	return true;
}

bool labels_value_valid(const char *s, size_t len)
{
	if (len > LABELS_VALUE_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

int labels_parse_arg(const char *arg, struct label_arg *out, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	size_t len = strlen(arg), klen;

	memset(out, 0, sizeof(*out));
	/* '=' is in no key, so the first one ends the key; a key may end in '-', so "a--"
	 * removes "a-". */
	if (eq != NULL)
		klen = (size_t)(eq - arg);
	else if (len > 0 && arg[len - 1] == '-')
		klen = len - 1;
	else {
		snprintf(err, errlen,
		         "label \"%s\" is neither KEY=VALUE (to set it) nor KEY- (to remove it)",
		         arg);
		return EB_ERR_INVAL;
	}
	if (!labels_key_valid(arg, klen)) {
		snprintf(err, errlen,
		         "label key \"%.*s\" is invalid: use 1-63 lower-case letters, digits, '.', "
		         "'_', '/' or '-', starting with a lower-case letter or digit",
		         (int)klen, arg);
		return EB_ERR_INVAL;
	}
	if (eq != NULL && !labels_value_valid(eq + 1, strlen(eq + 1))) {
		snprintf(err, errlen,
		         "label value \"%s\" of key \"%.*s\" is invalid: use at most 63 letters, "
		         "digits, '.', '_' or '-'",
		         eq + 1, (int)klen, arg);
		return EB_ERR_INVAL;
	}
	memcpy(out->key, arg, klen);
	if (eq != NULL)
		memcpy(out->value, eq + 1, strlen(eq + 1));
	else
		out->remove = true;
	return 0;
}
