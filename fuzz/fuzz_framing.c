/* fuzz/fuzz_framing.c: the strict reading of request heads (http/framing.c) that the broker
 * adds on top of http-parser. Any bytes: scanning them in pieces finds the same head as
 * scanning them at once; a head found holds no bare CR or LF and no control byte and stays
 * within its limits; a parsed head's fields are tokens with trimmed values; an accepted
 * framing is Content-Length or chunked, never both, within max_body; and http-parser, reading
 * the same accepted head as http/conn.c makes it, frames the body the same way (a length it
 * reads otherwise would let a proxy and the broker disagree). Every refusal has its status,
 * code and message.
 * Input: a step (the size of the pieces), a max_body selector, then the bytes. */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz/fuzz.h"
#include "http/framing.h"

static void check_error(const struct framing_error *e)
{
	static const int statuses[] = {400, 413, 414, 417, 431, 501, 505};
	bool known = false;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		known |= e->status == statuses[i];
	FUZZ_CHECK(known, "refused with status %d", e->status);
	FUZZ_CHECK(e->code != NULL && e->code[0] != '\0', "refused without a code");
	FUZZ_CHECK(e->message[0] != '\0', "refused without a message");
}

static int on_complete(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_bodies[] = {0, 1, 1048576, UINT64_MAX};
	struct framing_scan all, part;
	struct framing_error e = {0}, pe = {0};
	struct framing_head *h;
	size_t step, len, head_len = 0, part_len = 0;
	const char *d;
	uint64_t max_body;
	int rc, prc = 0;

	if (size < 2)
		return 0;
	step = data[0] == 0 ? 1 : data[0];
	max_body = max_bodies[data[1] % 4];
	d = (const char *)data + 2;
	len = size - 2;
	framing_scan_init(&all);
	rc = framing_scan(&all, d, len, &head_len, &e);
	framing_scan_init(&part);
	for (size_t n = step < len ? step : len;; n = n + step < len ? n + step : len) {
		prc = framing_scan(&part, d, n, &part_len, &pe);
		if (prc != 0 || n == len)
			break;
	}
	FUZZ_CHECK(prc == rc, "in pieces of %zu the scan says %d, at once %d", step, prc, rc);
	if (rc < 0) {
		check_error(&e);
		FUZZ_CHECK(pe.status == e.status, "in pieces %d, at once %d", pe.status, e.status);
		return 0;
	}
	if (rc == 0)
		return 0;
	FUZZ_CHECK(part_len == head_len && part.skip == all.skip, "in pieces another head");
	FUZZ_CHECK(all.skip + head_len <= len && head_len <= FRAMING_MAX_HEAD,
	           "a head of %zu bytes", head_len);

	const char *hd = d + all.skip;
	FUZZ_CHECK(head_len >= 4 && memcmp(hd + head_len - 4, "\r\n\r\n", 4) == 0,
	           "the head does not end with an empty line");
	for (size_t i = 0; i < head_len; i++) {
		unsigned char c = (unsigned char)hd[i];

		FUZZ_CHECK(c != 0x7f && (c >= 0x20 || c == '\t' || c == '\r' || c == '\n'),
		           "byte 0x%02x in the head", c);
		FUZZ_CHECK(c != '\r' || hd[i + 1] == '\n', "a bare CR in the head");
		FUZZ_CHECK(c != '\n' || (i > 0 && hd[i - 1] == '\r'), "a bare LF in the head");
	}

	/* As http/conn.c: a NUL-terminated copy parsed in place, another for http-parser. */
	char *head = malloc(head_len + 1), *copy = malloc(head_len);
	h = calloc(1, sizeof(*h));
	FUZZ_CHECK(head != NULL && copy != NULL && h != NULL, "out of memory");
	memcpy(head, hd, head_len);
	head[head_len] = '\0';
	memcpy(copy, hd, head_len);
	rc = framing_parse_head(head, head_len, h, &e);
	if (rc == 0)
		rc = framing_check(h, max_body, &e);
	if (rc != 0) {
		check_error(&e);
		goto out;
	}
	FUZZ_CHECK((unsigned)h->verb < HTTP_NVERBS &&
	               strcmp(h->method, http_verb_name(h->verb)) == 0,
	           "method %s", h->method);
	FUZZ_CHECK(h->target[0] != '\0' && strlen(h->target) <= FRAMING_MAX_TARGET &&
	               strchr(h->target, ' ') == NULL,
	           "target of %zu bytes", strlen(h->target));
	FUZZ_CHECK(h->minor == 0 || h->minor == 1, "HTTP/1.%d", h->minor);
	FUZZ_CHECK(h->nfields <= FRAMING_MAX_FIELDS, "%zu fields", h->nfields);
	for (size_t i = 0; i < h->nfields; i++) {
		const char *n = h->fields[i].name, *v = h->fields[i].value;
		size_t vl = strlen(v);

		FUZZ_CHECK(n[0] != '\0', "field %zu has no name", i);
		for (const char *p = n; *p; p++)
			FUZZ_CHECK(is_tchar((unsigned char)*p), "field name %s", n);
		FUZZ_CHECK(vl == 0 || (v[0] != ' ' && v[0] != '\t' && v[vl - 1] != ' ' &&
		                       v[vl - 1] != '\t'),
		           "field %s: value not trimmed", n);
		FUZZ_CHECK(strpbrk(v, "\r\n") == NULL, "field %s: a line break in its value", n);
		FUZZ_CHECK(framing_field(h, n) != NULL && strcasecmp(n, h->fields[i].name) == 0,
		           "framing_field misses %s", n);
	}
	if (h->minor == 1)
		FUZZ_CHECK(framing_field(h, "host") != NULL, "HTTP/1.1 without Host");
	switch (h->body) {
	case FRAMING_BODY_NONE:
		break;
	case FRAMING_BODY_LENGTH:
		FUZZ_CHECK(h->length > 0 && h->length <= max_body,
		           "a body of %llu bytes (max %llu)", (unsigned long long)h->length,
		           (unsigned long long)max_body);
		FUZZ_CHECK(framing_field(h, "transfer-encoding") == NULL, "a length and chunked");
		break;
	case FRAMING_BODY_CHUNKED:
		FUZZ_CHECK(framing_field(h, "content-length") == NULL, "chunked and a length");
		FUZZ_CHECK(h->minor == 1, "chunked in HTTP/1.0");
		break;
	default:
		fuzz_fail("body framing %d", (int)h->body);
	}
	FUZZ_CHECK(!h->expect_continue || h->body != FRAMING_BODY_NONE, "100-continue for no body");

	/* http-parser, fed the same head: what conn.c does not refuse must agree. */
	http_parser p;
	http_parser_settings st = {.on_message_complete = on_complete};
	http_parser_init(&p, HTTP_REQUEST);
	size_t used = http_parser_execute(&p, &st, copy, head_len);
	enum http_errno err = HTTP_PARSER_ERRNO(&p);
	if ((err == HPE_OK || err == HPE_PAUSED) && used == head_len &&
	    ((p.flags & F_CHUNKED) != 0) == (h->body == FRAMING_BODY_CHUNKED)) {
		if (h->body == FRAMING_BODY_LENGTH)
			FUZZ_CHECK(p.content_length == h->length && err == HPE_OK,
			           "http-parser reads a body of %llu bytes, the broker %llu",
			           (unsigned long long)p.content_length,
			           (unsigned long long)h->length);
		if (h->body == FRAMING_BODY_NONE)
			FUZZ_CHECK(err == HPE_PAUSED,
			           "http-parser waits for a body the broker does not read (%llu)",
			           (unsigned long long)p.content_length);
		if (h->body == FRAMING_BODY_CHUNKED)
			FUZZ_CHECK(err == HPE_OK, "http-parser ends a chunked request at its head");
	}
out:
	free(h);
	free(head);
	free(copy);
	return 0;
}
