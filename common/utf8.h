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

/* The longest n <= max such that s[0..n) does not end inside a multibyte sequence of s
 * (len bytes), so that cutting there keeps valid UTF-8 valid. */
size_t utf8_cut(const char *s, size_t len, size_t max);

/* A malloc'd, NUL-terminated copy of s[0..len) that is valid UTF-8: each byte that is not
 * part of a valid sequence (and a NUL) becomes U+FFFD. NULL if out of memory. */
char *utf8_sanitize(const char *s, size_t len);

#endif
