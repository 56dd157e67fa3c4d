/* tests/kit/frames.h: the NDJSON frames of an exec's response, from a body, a line or bytes as
 * they arrive: the frames, stdout and stderr decoded (base64 too), truncation, the last frame;
 * or, counting, the same figures without keeping the output. */
#ifndef EB_TESTS_KIT_FRAMES_H
#define EB_TESTS_KIT_FRAMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct kit_frames {
	/* Output frames counted, not kept: out and err stay NULL, all holds the other frames
	 * only, and output frames of the usual shape are measured without building JSON. */
	bool counting;
	json_t *all;              /* array of every frame (objects) kept, in order */
	char *out, *err;          /* the decoded stdout and stderr bytes, NUL-terminated */
	size_t out_len, err_len;  /* their lengths (also when counting) */
	size_t out_cap, err_cap;  /* their allocations */
	int out_trunc, err_trunc; /* "truncated" frames per stream */
	int b64;                  /* output frames with "encoding":"base64" */
	int terminal;             /* frames with "exit_code" or "error" */
	int terminal_at;          /* index (among all frames read) of the last such, -1 if none */
	json_t *last_terminal;    /* that frame (borrowed from all), NULL if none */
	int bad;                  /* lines that are not JSON objects, or bad base64 */
	char bad_line[300];       /* the first of them, and why */
	size_t n;                 /* frames read, kept or not */
	char *part;               /* kit_frames_feed(): a line not ended yet */
	size_t part_len, part_cap;
};

void kit_frames_init(struct kit_frames *f);
void kit_frames_init_counting(struct kit_frames *f);
/* Adds one line (without '\n'). */
void kit_frames_add(struct kit_frames *f, const char *line);
/* Every line of body, the last one also without a '\n'. */
void kit_frames_parse(struct kit_frames *f, const char *body, size_t len);
/* Body bytes as they arrive: complete lines are added, the rest waits in part. */
void kit_frames_feed(struct kit_frames *f, const char *p, size_t len);
void kit_frames_free(struct kit_frames *f);
json_t *kit_frame(const struct kit_frames *f, size_t i); /* borrowed; NULL past the end */
size_t kit_nframes(const struct kit_frames *f);          /* frames kept */

/* Base64 (standard alphabet, padded): malloc'd, NUL-terminated; decode returns NULL on
 * malformed input. */
char *kit_b64_encode(const void *p, size_t n);
char *kit_b64_decode(const char *s, size_t *n);

#endif
