/* tests/kit/frames.c: the NDJSON frame reader and base64 (see frames.h). */
#include "tests/kit/frames.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void kit_frames_init(struct kit_frames *f)
{
	memset(f, 0, sizeof(*f));
	f->all = json_array();
	f->out = calloc(1, 1);
	f->err = calloc(1, 1);
	if (f->all == NULL || f->out == NULL || f->err == NULL)
		abort();
	f->out_cap = f->err_cap = 1;
	f->terminal_at = -1;
}

void kit_frames_init_counting(struct kit_frames *f)
{
	memset(f, 0, sizeof(*f));
	f->counting = true;
	f->all = json_array();
	if (f->all == NULL)
		abort();
	f->terminal_at = -1;
}

static void append(char **p, size_t *len, size_t *cap, const char *add, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 4096;
		char *np;
		while (c < *len + n + 1)
			c *= 2;
		np = realloc(*p, c);
		if (np == NULL)
			abort();
		*p = np;
		*cap = c;
	}
	memcpy(*p + *len, add, n);
	*len += n;
	(*p)[*len] = '\0';
}

static void output_add(struct kit_frames *f, bool is_out, const char *p, size_t n)
{
	if (f->counting)
		*(is_out ? &f->out_len : &f->err_len) += n;
	else if (is_out)
		append(&f->out, &f->out_len, &f->out_cap, p, n);
	else
		append(&f->err, &f->err_len, &f->err_cap, p, n);
}

static void frame_bad(struct kit_frames *f, const char *line, size_t n, const char *why)
{
	size_t tail = n > 80 ? (n - 80 > 80 ? 80 : n - 80) : 0;

	if (f->bad++ == 0)
		snprintf(f->bad_line, sizeof(f->bad_line), "%s (%zu bytes): %.*s ... %.*s", why, n,
		         (int)(n < 80 ? n : 80), line, (int)tail, line + n - tail);
}

static unsigned hex4(const char *p)
{
	char h[5] = {p[0], p[1], p[2], p[3], '\0'};

	return (unsigned)strtoul(h, NULL, 16);
}

/* Bytes the JSON string text at p decodes to (as UTF-8), up to its closing quote, which
 * *end is set to (lim if there is none). The text is as jansson writes it: escapes only
 * for '"', '\\' and control characters. */
static size_t json_text_bytes(const char *p, const char *lim, const char **end)
{
	size_t n = 0;

	while (p < lim && *p != '"') {
		if (*p != '\\') {
			p++;
			n++;
		} else if (p + 1 < lim && p[1] == 'u' && p + 6 <= lim) {
			unsigned cp = hex4(p + 2);
			p += 6;
			if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair: one 4-byte char */
				p += 6;
				n += 4;
			} else {
				n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
			}
		} else {
			p += 2;
			n++;
		}
	}
	*end = p < lim ? p : lim;
	return n;
}

static size_t b64_len(const char *p, size_t n)
{
	size_t k = n / 4 * 3;

	if (n >= 1 && p[n - 1] == '=')
		k--;
	if (n >= 2 && p[n - 2] == '=')
		k--;
	return k;
}

/* Counting: an output frame of the shape the broker writes, measured in place. Whether
 * line was one. */
static bool output_measure(struct kit_frames *f, const char *line, size_t n)
{
	static const char out_pre[] = "{\"stream\":\"stdout\",\"data\":\"";
	static const char err_pre[] = "{\"stream\":\"stderr\",\"data\":\"";
	static const size_t pre = sizeof(out_pre) - 1;
	const char *q, *lim = line + n;
	bool is_out;
	size_t k;

	if (n <= pre || (memcmp(line, out_pre, pre) != 0 && memcmp(line, err_pre, pre) != 0))
		return false;
	is_out = memcmp(line, out_pre, pre) == 0;
	k = json_text_bytes(line + pre, lim, &q);
	if (q == lim)
		return false; /* no end to the data: parsed, to say what is wrong */
	if (memmem(q, (size_t)(lim - q), "\"encoding\":\"base64\"", 19) != NULL) {
		k = b64_len(line + pre, (size_t)(q - (line + pre)));
		f->b64++;
	}
	*(is_out ? &f->out_len : &f->err_len) += k;
	return true;
}

/* One line (n bytes at line, not necessarily NUL-terminated). */
static void frame_line(struct kit_frames *f, const char *line, size_t n)
{
	json_error_t je;
	json_t *o, *stream, *data, *enc, *tr;
	bool is_out, terminal;

	if (f->counting && f->n > 0 && output_measure(f, line, n)) {
		f->n++;
		return;
	}
	o = json_loadb(line, n, JSON_ALLOW_NUL, &je);
	if (o == NULL || !json_is_object(o)) {
		frame_bad(f, line, n, o == NULL ? je.text : "not an object");
		json_decref(o);
		return;
	}
	f->n++;
	stream = json_object_get(o, "stream");
	terminal = json_object_get(o, "exit_code") != NULL || json_object_get(o, "error") != NULL;
	if (!f->counting || stream == NULL || terminal)
		json_array_append(f->all, o);
	if (terminal) {
		f->terminal++;
		f->terminal_at = (int)f->n - 1;
		f->last_terminal = o;
	}
	if (stream == NULL)
		goto out;
	if (!json_is_string(stream) || (strcmp(json_string_value(stream), "stdout") != 0 &&
	                                strcmp(json_string_value(stream), "stderr") != 0)) {
		frame_bad(f, line, n, "bad stream");
		goto out;
	}
	is_out = strcmp(json_string_value(stream), "stdout") == 0;
	tr = json_object_get(o, "truncated");
	if (tr != NULL) {
		if (json_is_true(tr))
			*(is_out ? &f->out_trunc : &f->err_trunc) += 1;
		else
			frame_bad(f, line, n, "truncated is not true");
	}
	data = json_object_get(o, "data");
	enc = json_object_get(o, "encoding");
	if (data == NULL)
		goto out;
	if (!json_is_string(data)) {
		frame_bad(f, line, n, "data is not a string");
		goto out;
	}
	if (enc != NULL) {
		size_t k = 0;
		char *raw;
		if (!json_is_string(enc) || strcmp(json_string_value(enc), "base64") != 0 ||
		    (raw = kit_b64_decode(json_string_value(data), &k)) == NULL) {
			frame_bad(f, line, n, "bad base64");
			goto out;
		}
		f->b64++;
		output_add(f, is_out, raw, k);
		free(raw);
	} else {
		output_add(f, is_out, json_string_value(data), json_string_length(data));
	}
out:
	json_decref(o); /* all holds the frames it keeps */
}

void kit_frames_add(struct kit_frames *f, const char *line)
{
	frame_line(f, line, strlen(line));
}

void kit_frames_parse(struct kit_frames *f, const char *body, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len || body[i] == '\n') {
			if (i > start)
				frame_line(f, body + start, i - start);
			start = i + 1;
		}
	}
}

void kit_frames_feed(struct kit_frames *f, const char *p, size_t len)
{
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t k;

		if (nl == NULL) {
			append(&f->part, &f->part_len, &f->part_cap, p, len);
			return;
		}
		k = (size_t)(nl - p);
		if (f->part_len == 0) {
			if (k > 0)
				frame_line(f, p, k);
		} else {
			append(&f->part, &f->part_len, &f->part_cap, p, k);
			frame_line(f, f->part, f->part_len);
			f->part_len = 0;
		}
		p += k + 1;
		len -= k + 1;
	}
}

void kit_frames_free(struct kit_frames *f)
{
	json_decref(f->all);
	free(f->out);
	free(f->err);
	free(f->part);
	memset(f, 0, sizeof(*f));
}

json_t *kit_frame(const struct kit_frames *f, size_t i)
{
	return json_array_get(f->all, i);
}

size_t kit_nframes(const struct kit_frames *f)
{
	return json_array_size(f->all);
}

char *kit_b64_encode(const void *p, size_t n)
{
	const unsigned char *in = p;
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
		             (i + 2 < n ? in[i + 2] : 0);
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

char *kit_b64_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), o = 0;
	unsigned char *out;

	if (len % 4 != 0)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		abort();
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			const char *c = s[i + k] ? strchr(b64, s[i + k]) : NULL;
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (c == NULL || pad > 0) {
				free(out);
				return NULL;
			} else {
				v[k] = (int)(c - b64);
			}
		}
		unsigned w = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
		out[o++] = (unsigned char)(w >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(w >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)w;
	}
	out[o] = '\0';
	*n = o;
	return (char *)out;
}
