/* broker/frame.h: the NDJSON frames of a streamed exec response, as pure functions. An
 * output chunk becomes {"stream":"stdout","data":"..."} when it is valid UTF-8, else
 * {"stream":...,"data":"<base64>","encoding":"base64"}. A UTF-8 sequence split across two
 * reads is carried over to the next chunk rather than turned into base64. */
#ifndef EB_BROKER_FRAME_H
#define EB_BROKER_FRAME_H

#include <stdbool.h>
#include <stddef.h>

/* The bytes of an incomplete UTF-8 sequence held back from the end of a chunk. */
struct utf8_carry {
	unsigned char buf[4];
	size_t len;
};

/* Length of the longest prefix of s[0..len) that is valid UTF-8 (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF). *incomplete is set when what follows that prefix
 * is the start of a valid sequence cut short by the end of s. */
size_t utf8_valid_prefix(const unsigned char *s, size_t len, bool *incomplete);

/* Encodes one output chunk of stream ("stdout"/"stderr") into *out (malloc'd, ending in
 * '\n'; *out is NULL and 0 returned when everything was carried over). carry is the
 * stream's state; final flushes what it holds (as base64: it cannot be completed). */
int frame_output(const char *stream, struct utf8_carry *carry, const char *data, size_t len,
                 bool final, char **out);

#endif
