/* http/framing.c: the strict reading of request heads (RFC 9112 where it lets a server
 * refuse, refused). */
#include "http/framing.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(struct framing_error *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct framing_error *e, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int malformed(struct framing_error *e, const char *why)
{
	return fail(e, 400, "malformed_request", "the request is not valid HTTP/1.1: %s", why);
}

void framing_scan_init(struct framing_scan *s)
{
	*s = (struct framing_scan){0};
}

int framing_scan(struct framing_scan *s, const char *d, size_t len, size_t *head_len,
                 struct framing_error *e)
{
	for (; s->pos < len; s->pos++) {
		unsigned char c = (unsigned char)d[s->pos];

		if (s->target_end == 0 && s->pos - s->skip > FRAMING_MAX_TARGET)
			return fail(e, 414, "uri_too_long",
			            "the request line is longer than %d bytes", FRAMING_MAX_TARGET);
		if (s->pos >= FRAMING_MAX_HEAD)
			return fail(e, 431, "headers_too_large",
			            "the request's head (request line and header fields) is longer "
			            "than %d bytes",
			            FRAMING_MAX_HEAD);
		if (c == '\r') {
			if (s->pos + 1 == len)
				return 0; /* its LF is still to come */
			if (d[s->pos + 1] != '\n')
				return malformed(e, "a CR not followed by LF");
			continue;
		}
		if (c == '\n') {
			if (s->pos == 0 || d[s->pos - 1] != '\r')
				return malformed(e, "lines must end with CRLF, not a bare LF");
			if (s->pos - 1 > s->line) {
				if (s->target_end == 0)
					s->target_end = s->pos - 1;
				s->line = s->pos + 1;
				continue;
			}
			if (s->line == s->skip) {
				/* An empty line before the request line: not part of it. */
				s->skip = s->line = s->pos + 1;
				continue;
			}
			*head_len = s->pos + 1 - s->skip;
			return 1;
		}
		if (c < 0x20 && c != '\t')
			return malformed(e, "a control character in the head");
		if (c == 0x7f)
			return malformed(e, "a DEL character in the head");
		if (s->pos == s->line && (c == ' ' || c == '\t'))
			return malformed(
			    e, s->line == s->skip
			           ? "the request line starts with whitespace"
			           : "a header field folded over several lines (obs-fold)");
	}
	return 0;
}

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const struct {
	const char *name;
	enum http_verb verb;
} verbs[] = {
    {"GET", HTTP_VERB_GET},         {"HEAD", HTTP_VERB_HEAD},     {"POST", HTTP_VERB_POST},
    {"PUT", HTTP_VERB_PUT},         {"DELETE", HTTP_VERB_DELETE}, {"PATCH", HTTP_VERB_PATCH},
    {"OPTIONS", HTTP_VERB_OPTIONS}, {"TRACE", HTTP_VERB_TRACE},   {"CONNECT", HTTP_VERB_CONNECT},
};

static int parse_request_line(char *line, struct framing_head *h, struct framing_error *e)
{
	char *sp1, *sp2, *v;
	bool known = false;

	for (sp1 = line; is_tchar((unsigned char)*sp1); sp1++)
		;
	if (sp1 == line || *sp1 != ' ')
		return malformed(e, "the request line is not METHOD SP TARGET SP HTTP-VERSION");
	*sp1 = '\0';
	sp2 = strchr(sp1 + 1, ' ');
	if (sp2 == NULL || sp2 == sp1 + 1)
		return malformed(e, "the request line is not METHOD SP TARGET SP HTTP-VERSION");
	*sp2 = '\0';
	v = sp2 + 1;
	if (strchr(v, ' ') != NULL || strchr(v, '\t') != NULL || strchr(sp1 + 1, '\t') != NULL)
		return malformed(e, "the request line is not METHOD SP TARGET SP HTTP-VERSION");
	if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
	    v[7] > '9' || v[8] != '\0')
		return malformed(e, "the request line does not end with HTTP/1.1");
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return fail(e, 505, "http_version_not_supported",
		            "%s is not supported: send HTTP/1.1 (or HTTP/1.0)", v);
	h->method = line;
	h->target = sp1 + 1;
	h->minor = v[7] - '0';
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]) && !known; i++)
		if (strcmp(line, verbs[i].name) == 0) {
			h->verb = verbs[i].verb;
			known = true;
		}
	if (!known)
		return fail(e, 501, "not_implemented", "the method %.40s is not implemented here",
		            line);
	return 0;
}

static int parse_field(char *line, struct framing_head *h, struct framing_error *e)
{
	struct framing_field *f;
	char *colon, *v, *end;

	for (colon = line; is_tchar((unsigned char)*colon); colon++)
		;
	if (colon == line || *colon != ':')
		return malformed(e, *colon == ' ' || *colon == '\t'
		                        ? "whitespace between a header field's name and its colon"
		                        : "a header field that is not NAME: VALUE");
	if (h->nfields == FRAMING_MAX_FIELDS)
		return fail(e, 431, "headers_too_large", "more than %d header fields",
		            FRAMING_MAX_FIELDS);
	f = &h->fields[h->nfields++];
	*colon = '\0';
	f->name = line;
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	end = v + strlen(v);
	f->trailing_ws = end > v && (end[-1] == ' ' || end[-1] == '\t');
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	f->value = v;
	return 0;
}

int framing_parse_head(char *head, size_t len, struct framing_head *h, struct framing_error *e)
{
	char *line = head, *crlf;

	memset(h, 0, sizeof(*h));
	if (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)
		return malformed(e, "the head does not end with an empty line");
	head[len - 2] = '\0'; /* the final empty line */
	for (bool first = true; (crlf = strstr(line, "\r\n")) != NULL; first = false) {
		*crlf = '\0';
		if ((first ? parse_request_line(line, h, e) : parse_field(line, h, e)) != 0)
			return -1;
		line = crlf + 2;
	}
	return 0;
}

const char *framing_field(const struct framing_head *h, const char *name)
{
	for (size_t i = 0; i < h->nfields; i++)
		if (strcasecmp(h->fields[i].name, name) == 0)
			return h->fields[i].value;
	return NULL;
}

/* The fields named name: how many, and the first. */
static size_t fields_named(const struct framing_head *h, const char *name,
                           const struct framing_field **first)
{
	size_t n = 0;

	*first = NULL;
	for (size_t i = 0; i < h->nfields; i++)
		if (strcasecmp(h->fields[i].name, name) == 0) {
			if (n++ == 0)
				*first = &h->fields[i];
		}
	return n;
}

/* Whether the comma-separated list value holds token (case-insensitive). */
static bool list_has(const char *value, const char *token)
{
	size_t n = strlen(token);

	for (const char *p = value; p != NULL; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, token, n) == 0 &&
		    (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
			return true;
	}
	return false;
}

static int check_length(const struct framing_field *cl, struct framing_head *h,
                        struct framing_error *e)
{
	uint64_t n = 0;
	const char *p = cl->value;

	if (*p == '\0' || cl->trailing_ws || strspn(p, "0123456789") != strlen(p))
		return malformed(e, "Content-Length must be decimal digits and nothing else");
	for (; *p != '\0'; p++) {
		if (n > (UINT64_MAX - 9) / 10)
			return fail(e, 413, "payload_too_large", "the Content-Length is too large");
		n = n * 10 + (uint64_t)(*p - '0');
	}
	h->body = FRAMING_BODY_LENGTH;
	h->length = n;
	return 0;
}

int framing_check(struct framing_head *h, uint64_t max_body, struct framing_error *e)
{
	const struct framing_field *cl, *te, *host, *expect, *conn;
	size_t ncl = fields_named(h, "Content-Length", &cl);
	size_t nte = fields_named(h, "Transfer-Encoding", &te);
	size_t nhost = fields_named(h, "Host", &host);
	size_t nexpect = fields_named(h, "Expect", &expect);

	if (h->minor == 1 && nhost != 1)
		return malformed(e, nhost == 0 ? "an HTTP/1.1 request needs a Host header"
		                               : "more than one Host header");
	if (ncl > 1)
		return malformed(e, "more than one Content-Length header");
	if (nte > 0) {
		if (ncl > 0)
			return malformed(e, "both Content-Length and Transfer-Encoding");
		if (h->minor == 0)
			return malformed(e, "Transfer-Encoding in an HTTP/1.0 request");
		if (nte > 1 || te->trailing_ws || strcasecmp(te->value, "chunked") != 0)
			return fail(e, 501, "not_implemented",
			            "the only Transfer-Encoding accepted is \"chunked\" alone");
		h->body = FRAMING_BODY_CHUNKED;
	} else if (ncl == 1 && check_length(cl, h, e) != 0) {
		return -1;
	}
	if (h->body == FRAMING_BODY_LENGTH && h->length == 0)
		h->body = FRAMING_BODY_NONE;
	/* http-parser reads no body after a CONNECT's head (what follows is the tunnel's): a
	 * body would be read by the broker as the next request, by a proxy as this one's. */
	if (h->verb == HTTP_VERB_CONNECT && h->body != FRAMING_BODY_NONE)
		return malformed(e, "a CONNECT request with a body");
	if (h->body == FRAMING_BODY_LENGTH && h->length > max_body)
		return fail(e, 413, "payload_too_large",
		            "the body is %llu bytes; this broker takes at most %llu",
		            (unsigned long long)h->length, (unsigned long long)max_body);
	if (nexpect > 1 || (nexpect == 1 && strcasecmp(expect->value, "100-continue") != 0))
		return fail(e, 417, "expectation_failed",
		            "the only Expect accepted is \"100-continue\"");
	h->expect_continue = nexpect == 1 && h->minor == 1 && h->body != FRAMING_BODY_NONE;
	conn = NULL;
	for (size_t i = 0; i < h->nfields; i++)
		if (strcasecmp(h->fields[i].name, "Connection") == 0 &&
		    list_has(h->fields[i].value, "close"))
			conn = &h->fields[i];
	if (conn != NULL)
		h->keep_alive = false;
	else if (h->minor == 1)
		h->keep_alive = true;
	else
		h->keep_alive = framing_field(h, "Connection") != NULL &&
		                list_has(framing_field(h, "Connection"), "keep-alive");
	return 0;
}
