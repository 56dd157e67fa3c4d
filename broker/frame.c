/* broker/frame.c: output frames and UTF-8 checking. */
#include "broker/frame.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

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

static int emit(const char *stream, const unsigned char *p, size_t n, bool text, char **out)
{
	json_t *o = NULL;
	char *b64 = NULL;
	int rc = EB_ERR_NOMEM;

	if (text) {
		o = json_pack("{s:s, s:s%}", "stream", stream, "data", (const char *)p, n);
	} else {
		b64 = malloc(4 * ((n + 2) / 3) + 1);
		if (b64 == NULL)
			goto out;
		EVP_EncodeBlock((unsigned char *)b64, p, (int)n);
		o = json_pack("{s:s, s:s, s:s}", "stream", stream, "data", b64, "encoding",
		              "base64");
	}
	if (o == NULL)
		goto out;
	char *s = json_dumps(o, JSON_COMPACT);
	if (s == NULL)
		goto out;
	size_t sl = strlen(s);
	*out = realloc(s, sl + 2);
	if (*out == NULL) {
		free(s);
		goto out;
	}
	(*out)[sl] = '\n';
	(*out)[sl + 1] = '\0';
	rc = 0;
out:
	json_decref(o);
	free(b64);
	return rc;
}

int frame_output(const char *stream, struct utf8_carry *carry, const char *data, size_t len,
                 bool final, char **out)
{
	unsigned char *buf;
	size_t n = carry->len + len, valid;
	bool incomplete;
	int rc;

	*out = NULL;
	if (n == 0)
		return 0;
	buf = malloc(n);
	if (buf == NULL)
		return EB_ERR_NOMEM;
	memcpy(buf, carry->buf, carry->len);
	if (len > 0) /* data may be NULL for the final flush */
		memcpy(buf + carry->len, data, len);
	carry->len = 0;
	valid = utf8_valid_prefix(buf, n, &incomplete);
	if (incomplete && !final && n - valid < sizeof(carry->buf)) {
		/* Hold back the cut sequence; the rest goes now if there is any. */
		memcpy(carry->buf, buf + valid, n - valid);
		carry->len = n - valid;
		n = valid;
	}
	rc = n == 0 ? 0 : emit(stream, buf, n, utf8_valid_prefix(buf, n, &incomplete) == n, out);
	free(buf);
	return rc;
}
