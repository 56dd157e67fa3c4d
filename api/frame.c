/* api/frame.c: output frames. */
#include "api/frame.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"

/* Appends s[0..n) (valid UTF-8) to out as the inside of a JSON string. jansson's encoder
 * formats each control character with snprintf, which made the broker's framing cost more
 * CPU than SSH itself on output full of NULs (bench_exec); this is one table lookup per
 * byte and memcpy for the runs between escapes. */
static size_t json_escape(char *out, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0, run;

	while (i < n) {
		for (run = i; run < n && s[run] >= 0x20 && s[run] != '"' && s[run] != '\\'; run++)
			;
		memcpy(out + o, s + i, run - i);
		o += run - i;
		if (run == n)
			break;
		unsigned char c = s[run];
		out[o++] = '\\';
		switch (c) {
		case '"':
		case '\\':
			out[o++] = (char)c;
			break;
		case '\n':
			out[o++] = 'n';
			break;
		case '\r':
			out[o++] = 'r';
			break;
		case '\t':
			out[o++] = 't';
			break;
		case '\b':
			out[o++] = 'b';
			break;
		case '\f':
			out[o++] = 'f';
			break;
		default:
			out[o++] = 'u';
			out[o++] = '0';
			out[o++] = '0';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
		i = run + 1;
	}
	return o;
}

/* The length json_escape() gives s[0..n), or a number past limit once it is known to be
 * (output full of control bytes stops being counted early). */
static size_t json_escaped_len(const unsigned char *s, size_t n, size_t limit)
{
	size_t len = n;

	for (size_t i = 0; i < n && len <= limit; i++) {
		unsigned char c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		len += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' ||
		               c == '\f'
		           ? 1
		           : 5;
	}
	return len;
}

/* The bytes the "encoding" member adds to a base64 frame. */
#define BASE64_MEMBER_LEN (sizeof(",\"encoding\":\"base64\"") - 1)

static int emit(const char *stream, const unsigned char *p, size_t n, bool text, char **out)
{
	/* stream is "stdout" or "stderr": nothing in it needs escaping. */
	size_t sl = strlen(stream), cap, o, b64 = 4 * ((n + 2) / 3), esc = 0;
	char *b;

	/* Text goes as text unless its escapes make it longer than base64 (output full of
	 * NULs or other control bytes: \u0000 is 6 bytes on the wire for one). */
	if (text) {
		esc = json_escaped_len(p, n, b64 + BASE64_MEMBER_LEN);
		text = esc <= b64 + BASE64_MEMBER_LEN;
	}
	cap = sl + 64 + (text ? esc : b64);
	b = malloc(cap);
	if (b == NULL)
		return EB_ERR_NOMEM;
	o = (size_t)sprintf(b, "{\"stream\":\"%s\",\"data\":\"", stream);
	if (text) {
		o += json_escape(b + o, p, n);
		static const char tail[] = "\"}\n";
		memcpy(b + o, tail, sizeof(tail));
	} else {
		o += (size_t)EVP_EncodeBlock((unsigned char *)b + o, p, (int)n);
		static const char tail[] = "\",\"encoding\":\"base64\"}\n";
		memcpy(b + o, tail, sizeof(tail));
	}
	*out = b;
	return 0;
}

int frame_output(const char *stream, struct utf8_carry *carry, const char *data, size_t len,
                 bool final, char **out)
{
	const unsigned char *buf = (const unsigned char *)data;
	unsigned char *copy = NULL;
	size_t n = carry->len + len, valid;
	bool incomplete;
	int rc;

	*out = NULL;
	if (n == 0)
		return 0;
	if (carry->len > 0) {
		/* The held-back bytes first (otherwise the chunk is framed as it is, no copy). */
		copy = malloc(n);
		if (copy == NULL)
			return EB_ERR_NOMEM;
		memcpy(copy, carry->buf, carry->len);
		if (len > 0) /* data may be NULL for the final flush */
			memcpy(copy + carry->len, data, len);
		buf = copy;
		carry->len = 0;
	}
	valid = utf8_valid_prefix(buf, n, &incomplete);
	if (incomplete && !final && n - valid < sizeof(carry->buf)) {
		/* Hold back the cut sequence; the rest goes now if there is any. */
		memcpy(carry->buf, buf + valid, n - valid);
		carry->len = n - valid;
		n = valid;
	}
	rc = n == 0 ? 0 : emit(stream, buf, n, valid == n, out);
	free(copy);
	return rc;
}
