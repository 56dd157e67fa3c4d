/* common/utf8.h: checking that bytes are UTF-8, as JSON text and the audit log's columns
 * need them to be. */
#ifndef EB_COMMON_UTF8_H
#define EB_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the longest prefix of s[0..len) that is valid UTF-8 (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF). *incomplete is set when what follows that prefix
 * is the start of a valid sequence cut short by the end of s. */
size_t utf8_valid_prefix(const unsigned char *s, size_t len, bool *incomplete);

#endif
