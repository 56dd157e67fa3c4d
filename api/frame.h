/* api/frame.h: the NDJSON frames of a streamed exec response, as pure functions. An
 * output chunk becomes {"stream":"stdout","data":"..."} when it is valid UTF-8 and its
 * JSON escapes do not make it longer than base64, else
 * {"stream":...,"data":"<base64>","encoding":"base64"}: decided per chunk, so output full
 * of NULs or other control bytes costs 4/3 of its size on the wire, not 6 times. A UTF-8
 * sequence split across two reads is carried over to the next chunk rather than turned
 * into base64. */
#ifndef EB_API_FRAME_H
#define EB_API_FRAME_H

#include <stdbool.h>
#include <stddef.h>

/* The bytes of an incomplete UTF-8 sequence held back from the end of a chunk. */
struct utf8_carry {
	unsigned char buf[4];
	size_t len;
};

/* Encodes one output chunk of stream ("stdout"/"stderr") into *out (malloc'd, ending in
 * '\n'; *out is NULL and 0 returned when everything was carried over). carry is the
 * stream's state; final flushes what it holds (as base64: it cannot be completed). */
int frame_output(const char *stream, struct utf8_carry *carry, const char *data, size_t len,
                 bool final, char **out);

#endif
