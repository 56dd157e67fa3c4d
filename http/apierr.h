/* http/apierr.h: the API's stable error codes, each with its HTTP status, and the one
 * body shape every non-2xx response has: {"error":{"code","message"[,"field"]}}. */
#ifndef EB_HTTP_APIERR_H
#define EB_HTTP_APIERR_H

/* HTTP status of a code; 500 for a code not in the table (a bug). */
int apierr_status(const char *code);
/* 1 if code is one of the API's codes. */
int apierr_known(const char *code);
/* The i-th code of the table, NULL past its end: for docs and tests. */
const char *apierr_code(unsigned long i);

/* The error body, malloc'd, NUL-terminated, no trailing newline; NULL only when out of
 * memory. field may be NULL. Bytes of message or field that are not UTF-8 become U+FFFD,
 * so that any input (a client's field name cut anywhere) gives JSON. */
char *apierr_body(const char *code, const char *message, const char *field);

#endif
