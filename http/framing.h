/* http/framing.h: the strict reading of a request's head that the broker adds on top of
 * the HTTP parser: where the head ends, whether its request line and fields are well
 * formed, and what frames the body: Content-Length or chunked, never both, never
 * ambiguous, so that no proxy in front of the broker can read a request differently than
 * the broker does (request smuggling). Each refusal has a status, an API code and a
 * message. Pure. */
#ifndef EB_HTTP_FRAMING_H
#define EB_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define FRAMING_MAX_HEAD   (16 * 1024) /* request line and fields, CRLFs included */
#define FRAMING_MAX_TARGET (8 * 1024)
#define FRAMING_MAX_FIELDS 100

struct framing_error {
	int status;       /* 400, 413, 414, 417, 431, 501, 505 */
	const char *code; /* the API's code of that status (http/apierr.h) */
	char message[200];
};

/* Where a head ends, found across reads: framing_scan_init, then framing_scan with all the
 * bytes received so far (the same start each time, more of them). */
struct framing_scan {
	size_t pos;        /* bytes examined */
	size_t skip;       /* empty lines before the request line (RFC 9112 2.2 lets a client send
	                    * them after a body), not part of the head */
	size_t line;       /* where the current line starts */
	size_t target_end; /* end of the request line, once seen */
};

void framing_scan_init(struct framing_scan *s);
/* 1 when data[s->skip .. s->skip + *head_len) is a whole head (through its empty line),
 * 0 while more is needed, -1 with e set when what came cannot start a valid head: too long
 * (414 for the request line, 431 for the head), a CR not followed by LF, an LF not after a
 * CR, a NUL or another control byte. */
int framing_scan(struct framing_scan *s, const char *data, size_t len, size_t *head_len,
                 struct framing_error *e);

struct framing_field {
	const char *name, *value; /* NUL-terminated, value without surrounding whitespace */
	bool trailing_ws;         /* the value was followed by whitespace */
};

enum framing_body {
	FRAMING_BODY_NONE,
	FRAMING_BODY_LENGTH,  /* length bytes */
	FRAMING_BODY_CHUNKED, /* Transfer-Encoding: chunked */
};

struct framing_head {
	enum http_verb verb;
	const char *method; /* as sent */
	const char *target; /* as sent: origin-form, absolute-form or "*" */
	int minor;          /* HTTP/1.minor: 0 or 1 */
	struct framing_field fields[FRAMING_MAX_FIELDS];
	size_t nfields;
	/* What framing_check decides. */
	enum framing_body body;
	uint64_t length;
	bool expect_continue; /* send 100 Continue before reading the body */
	bool keep_alive;      /* the client asks to keep the connection */
};

/* Parses a whole head (len bytes from framing_scan, CRLFs included) in place: the strings
 * of h point into head. 0, or -1 with e (400, 501 for a method the broker does not know,
 * 505 for a version other than HTTP/1.0 and 1.1). */
int framing_parse_head(char *head, size_t len, struct framing_head *h, struct framing_error *e);

/* The framing of a parsed head, checked: Host, Content-Length, Transfer-Encoding, Expect,
 * Connection, and the body against max_body bytes. 0, or -1 with e. */
int framing_check(struct framing_head *h, uint64_t max_body, struct framing_error *e);

/* The value of field name (case-insensitive) in h, or NULL; the first if repeated. */
const char *framing_field(const struct framing_head *h, const char *name);

#endif
