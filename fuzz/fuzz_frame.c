/* fuzz/fuzz_frame.c: NDJSON output frames (api/frame.c), a round trip. Bytes cut into chunks
 * as reads would cut them are framed one chunk at a time, then flushed; each frame is one
 * line of one JSON object {"stream","data"[,"encoding":"base64"]}, and the data of the frames,
 * decoded, is the bytes again. A frame is base64 only when its bytes are not UTF-8 or their
 * escapes are longer than base64; bytes that are all UTF-8 are never base64 because a read
 * cut a character in two.
 * Input: a flags byte (1: stderr, 2: the last chunk is final), four chunk sizes, the bytes. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "api/frame.h"
#include "common/utf8.h"
#include "fuzz/fuzz.h"

#define BASE64_MEMBER_LEN (sizeof(",\"encoding\":\"base64\"") - 1)

struct out {
	unsigned char *buf;
	size_t len;
};

static bool all_utf8(const unsigned char *s, size_t n)
{
	bool incomplete;

	return utf8_valid_prefix(s, n, &incomplete) == n;
}

/* Checks one frame and appends its decoded data to o. */
static void take_frame(const char *stream, const char *f, struct out *o)
{
	size_t flen = strlen(f), dlen;
	json_error_t jerr;
	json_t *root, *data, *enc;
	const char *d;

	FUZZ_CHECK(flen > 0 && f[flen - 1] == '\n' && memchr(f, '\n', flen - 1) == NULL,
	           "a frame is not one line");
	root = json_loadb(f, flen - 1, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	FUZZ_CHECK(json_is_object(root), "a frame is not a JSON object: %s", jerr.text);
	data = json_object_get(root, "data");
	enc = json_object_get(root, "encoding");
	FUZZ_CHECK(json_object_size(root) == (enc != NULL ? 3u : 2u), "a frame has other members");
	FUZZ_CHECK(json_is_string(json_object_get(root, "stream")) &&
	               strcmp(json_string_value(json_object_get(root, "stream")), stream) == 0,
	           "stream is not %s", stream);
	FUZZ_CHECK(json_is_string(data), "data is not a string");
	d = json_string_value(data);
	dlen = json_string_length(data);
	o->buf = realloc(o->buf, o->len + dlen + 3);
	FUZZ_CHECK(o->buf != NULL, "out of memory");
	if (enc == NULL) {
		size_t b64 = 4 * ((dlen + 2) / 3);

		/* The text's escapes: the frame without its fixed parts. */
		FUZZ_CHECK(flen - (sizeof("{\"stream\":\"\",\"data\":\"\"}\n") - 1) -
		                   strlen(stream) <=
		               b64 + BASE64_MEMBER_LEN,
		           "a text frame of %zu bytes is longer than base64 (%zu)", dlen, b64);
		memcpy(o->buf + o->len, d, dlen);
		o->len += dlen;
	} else {
		int n;
		size_t pad = 0;

		FUZZ_CHECK(json_is_string(enc) && strcmp(json_string_value(enc), "base64") == 0,
		           "encoding is not base64");
		FUZZ_CHECK(dlen > 0 && dlen % 4 == 0, "base64 of %zu characters", dlen);
		n = EVP_DecodeBlock(o->buf + o->len, (const unsigned char *)d, (int)dlen);
		FUZZ_CHECK(n >= 0, "data is not base64");
		while (pad < 2 && d[dlen - 1 - pad] == '=')
			pad++;
		n -= (int)pad;
		if (all_utf8(o->buf + o->len, (size_t)n)) {
			/* Then only the escapes' length made it base64: JSON-escaped, the text
			 * would be longer than the base64 and its member. */
			json_t *s = json_stringn((const char *)o->buf + o->len, (size_t)n);
			char *esc = json_dumps(s, JSON_ENCODE_ANY);

			FUZZ_CHECK(esc != NULL, "out of memory");
			FUZZ_CHECK(strlen(esc) - 2 > dlen + BASE64_MEMBER_LEN,
			           "UTF-8 of %d bytes sent as base64 though its text is shorter",
			           n);
			free(esc);
			json_decref(s);
		}
		o->len += (size_t)n;
	}
	json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct utf8_carry carry = {.len = 0};
	struct out o = {NULL, 0};
	const char *stream;
	const unsigned char *p;
	size_t sizes[4], n, off = 0, k = 0;
	bool last_final;
	char *f;

	if (size < 5)
		return 0;
	stream = data[0] & 1 ? "stderr" : "stdout";
	last_final = data[0] & 2;
	for (int i = 0; i < 4; i++)
		sizes[i] = data[1 + i];
	p = data + 5;
	n = size - 5;
	if (sizes[0] + sizes[1] + sizes[2] + sizes[3] == 0)
		sizes[0] = n;
	do {
		size_t c = sizes[k++ % 4];

		if (c > n - off)
			c = n - off;
		bool final = last_final && off + c == n;
		FUZZ_CHECK(frame_output(stream, &carry, (const char *)p + off, c, final, &f) == 0,
		           "frame_output failed");
		if (f != NULL)
			take_frame(stream, f, &o);
		free(f);
		off += c;
		FUZZ_CHECK(carry.len < sizeof(carry.buf), "carry of %zu bytes", carry.len);
		if (final)
			FUZZ_CHECK(carry.len == 0, "a final chunk left %zu bytes held", carry.len);
	} while (off < n);
	FUZZ_CHECK(frame_output(stream, &carry, NULL, 0, true, &f) == 0, "the flush failed");
	if (f != NULL) {
		/* Only what could not be completed is left for the flush. */
		FUZZ_CHECK(!all_utf8(p, n), "bytes that are all UTF-8 left a flush");
		take_frame(stream, f, &o);
	}
	free(f);
	FUZZ_CHECK(carry.len == 0, "the flush left bytes held");
	FUZZ_CHECK(o.len == n && (n == 0 || memcmp(o.buf, p, n) == 0),
	           "the frames decode to %zu bytes, not the %zu framed", o.len, n);
	free(o.buf);
	return 0;
}
