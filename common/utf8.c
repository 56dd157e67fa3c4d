/* common/utf8.c: UTF-8 validity (RFC 3629). */
#include "common/utf8.h"

size_t utf8_valid_prefix(const unsigned char *s, size_t len, bool *incomplete)
{
	size_t i = 0;

	*incomplete = false;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */

		if (c < 0x80) {
			i++;
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
