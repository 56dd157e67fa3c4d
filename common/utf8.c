/* common/utf8.c: UTF-8 validity (RFC 3629). */
#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t utf8_valid_prefix(const unsigned char *s, size_t len, bool *incomplete)
{
	size_t i = 0;

	*incomplete = false;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */

		if (c < 0x80) {
			/* ASCII runs, a word at a time: most output is ASCII. */
			i++;
			while (i + sizeof(uint64_t) <= len) {
				uint64_t w;
				memcpy(&w, s + i, sizeof(w));
				if (w & UINT64_C(0x8080808080808080))
					break;
				i += sizeof(w);
			}
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2;
		else if (c >= 0xE0 && c <= 0xEF) {
			n = 3;
			if (c == 0xE0)
				lo = 0xA0; /* no overlongs */
			else if (c == 0xED)
				hi = 0x9F; /* no surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 4;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F; /* nothing above U+10FFFF */
		} else {
			return i;
		}
		for (size_t k = 1; k < n; k++) {
			if (i + k == len) {
				*incomplete = true; /* valid so far, cut by the end */
				return i;
			}
			unsigned char b = s[i + k];
			if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
				return i;
		}
		i += n;
	}
	return i;
}

size_t utf8_cut(const char *s, size_t len, size_t max)
{
	size_t n = max < len ? max : len;

	if (n == len)
		return n;
	/* Back off continuation bytes: s[n] must start a character. */
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

char *utf8_sanitize(const char *s, size_t len)
{
	static const char replacement[] = "\xef\xbf\xbd";
	char *out = malloc(len * 3 + 1), *o = out;
	size_t i = 0;

	if (out == NULL)
		return NULL;
	while (i < len) {
		bool incomplete;
		size_t ok = utf8_valid_prefix((const unsigned char *)s + i, len - i, &incomplete);
		const char *nul = memchr(s + i, '\0', ok);

		if (nul != NULL)
			ok = (size_t)(nul - (s + i));
		memcpy(o, s + i, ok);
		o += ok;
		i += ok;
		if (i < len) {
			memcpy(o, replacement, 3);
			o += 3;
			i++;
		}
	}
	*o = '\0';
	return out;
}
