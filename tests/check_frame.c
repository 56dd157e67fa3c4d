/* tests/check_frame.c: output frames: text when valid UTF-8 and not longer escaped than
 * base64, base64 otherwise, and UTF-8
 * sequences cut between two reads carried over instead of turned into base64. */
#include <check.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "api/frame.h"
#include "tests/runner.h"

static char *frame(struct utf8_carry *c, const char *data, size_t len, bool final)
{
	char *out = NULL;

	ck_assert_int_eq(frame_output("stdout", c, data, len, final, &out), 0);
	return out;
}

START_TEST(text_chunk_is_a_text_frame)
{
	struct utf8_carry c = {0};
	char *f = frame(&c, "hello\n\"q\"\t\x01", 11, false);

	ck_assert_str_eq(f, "{\"stream\":\"stdout\",\"data\":\"hello\\n\\\"q\\\"\\t\\u0001\"}\n");
	free(f);
}
END_TEST

START_TEST(split_sequence_is_carried_not_base64)
{
	struct utf8_carry c = {0};
	char *f;

	f = frame(&c, "caf\xc3", 4, false);
	ck_assert_str_eq(f, "{\"stream\":\"stdout\",\"data\":\"caf\"}\n");
	ck_assert_uint_eq(c.len, 1);
	free(f);
	f = frame(&c, "\xa9!", 2, false);
	ck_assert_str_eq(f, "{\"stream\":\"stdout\",\"data\":\"\xc3\xa9!\"}\n");
	free(f);
	/* A four-byte character cut after each of its first three bytes. */
	for (size_t cut = 1; cut < 4; cut++) {
		const char *rocket = "\xf0\x9f\x9a\x80";
		struct utf8_carry c2 = {0};
		char *a = frame(&c2, rocket, cut, false);
		ck_assert_ptr_null(a); /* all of it carried */
		char *b = frame(&c2, rocket + cut, 4 - cut, false);
		ck_assert_str_eq(b, "{\"stream\":\"stdout\",\"data\":\"\xf0\x9f\x9a\x80\"}\n");
		free(b);
	}
}
END_TEST

static const struct {
	const char *bytes;
	size_t len;
} invalid[] = {
    {"\xff", 1},
    {"a\x80z", 3},
    {"\xc0\x80", 2}, /* overlong NUL */
    {"\xe0\x80\x80", 3},
    {"\xed\xa0\x80", 3},     /* a surrogate */
    {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
    {"\xc3z", 2},
};

START_TEST(invalid_utf8_is_base64)
{
	struct utf8_carry c = {0};
	char *f = frame(&c, invalid[_i].bytes, invalid[_i].len, false);
	unsigned char want[16];
	char expect[128];

	EVP_EncodeBlock(want, (const unsigned char *)invalid[_i].bytes, (int)invalid[_i].len);
	snprintf(expect, sizeof(expect),
	         "{\"stream\":\"stdout\",\"data\":\"%s\",\"encoding\":\"base64\"}\n", want);
	ck_assert_str_eq(f, expect);
	ck_assert_uint_eq(c.len, 0);
	free(f);
}
END_TEST

START_TEST(final_flushes_an_unfinished_sequence_as_base64)
{
	struct utf8_carry c = {0};
	char *f = frame(&c, "x\xe2\x82", 3, false);

	ck_assert_str_eq(f, "{\"stream\":\"stdout\",\"data\":\"x\"}\n");
	free(f);
	f = frame(&c, NULL, 0, true);
	ck_assert_str_eq(f, "{\"stream\":\"stdout\",\"data\":\"4oI=\",\"encoding\":\"base64\"}\n");
	ck_assert_uint_eq(c.len, 0);
	free(f);
	ck_assert_ptr_null(frame(&c, NULL, 0, true));
}
END_TEST

/* Whatever the bytes and however they are cut, decoding the frames gives them back. */
START_TEST(frames_round_trip_any_bytes_any_cuts)
{
	static const char *const alphabet[] = {
	    "a",    "\n",   "\xc3\xa9",    "\xe2\x82\xac", "\xf0\x9f\x9a\x80",
	    "\xff", "\x00", "\xed\xa0\x80"};
	unsigned char src[4096], got[8192];
	size_t n = 0, m = 0, off = 0;
	struct utf8_carry c = {0};

	srand(42 + (unsigned)_i);
	while (n < sizeof(src) - 8) {
		const char *a = alphabet[rand() % 8];
		size_t l = a[0] == '\0' ? 1 : strlen(a);
		memcpy(src + n, a, l);
		n += l;
	}
	while (off <= n) {
		size_t cut = off == n ? 0 : (size_t)(rand() % 7) + 1;
		if (off + cut > n)
			cut = n - off;
		char *f = frame(&c, (const char *)src + off, cut, off + cut == n);
		off += cut;
		if (f != NULL) {
			json_error_t je;
			json_t *o = json_loads(f, JSON_ALLOW_NUL, &je);
			ck_assert_ptr_nonnull(o);
			json_t *data = json_object_get(o, "data");
			if (json_object_get(o, "encoding") != NULL) {
				m += (size_t)EVP_DecodeBlock(
				    got + m, (const unsigned char *)json_string_value(data),
				    (int)json_string_length(data));
				/* EVP_DecodeBlock counts padding as zero bytes */
				const char *d = json_string_value(data);
				size_t dl = json_string_length(data);
				m -= (dl > 0 && d[dl - 1] == '=') + (dl > 1 && d[dl - 2] == '=');
			} else {
				memcpy(got + m, json_string_value(data), json_string_length(data));
				m += json_string_length(data);
			}
			json_decref(o);
			free(f);
		}
		if (cut == 0)
			break;
	}
	ck_assert_uint_eq(m, n);
	ck_assert_int_eq(memcmp(got, src, n), 0);
}
END_TEST

/* Every ASCII byte, controls and quotes included, comes back exactly from a text frame
 * (each among enough plain text that text is the shorter encoding). */
START_TEST(text_frames_escape_every_ascii_byte)
{
	char src[64], *f;
	size_t n = 0;
	struct utf8_carry c = {0};
	json_error_t je;
	json_t *o;

	memset(src, 'a', 40);
	src[20] = (char)_i;
	n = 40;
	f = frame(&c, src, n, true);
	ck_assert_ptr_nonnull(f);
	ck_assert_msg(strstr(f, "encoding") == NULL, "byte %d: %s", _i, f);
	ck_assert_int_eq(f[strlen(f) - 1], '\n');
	ck_assert_ptr_null(memchr(f, '\n', strlen(f) - 1)); /* one line */
	o = json_loads(f, JSON_ALLOW_NUL, &je);
	ck_assert_msg(o != NULL, "%s: %s", je.text, f);
	ck_assert_str_eq(json_string_value(json_object_get(o, "stream")), "stdout");
	ck_assert_uint_eq(json_string_length(json_object_get(o, "data")), n);
	ck_assert_int_eq(memcmp(json_string_value(json_object_get(o, "data")), src, n), 0);
	json_decref(o);
	free(f);
}
END_TEST

/* The length on the wire of the data member of frame f, and whether it is base64. */
static size_t data_len(const char *f, bool *b64)
{
	json_error_t je;
	json_t *o = json_loads(f, JSON_ALLOW_NUL, &je);
	size_t n;

	ck_assert_msg(o != NULL, "%s: %s", je.text, f);
	*b64 = json_object_get(o, "encoding") != NULL;
	json_decref(o);
	n = strlen(f);
	return n;
}

/* Valid UTF-8 whose escapes would make it longer than base64 goes as base64 (NULs: 6 bytes
 * each as text, 4/3 as base64); the frame is never longer than the shorter encoding, and
 * it decodes to the same bytes. */
START_TEST(control_heavy_text_goes_as_base64)
{
	static const struct {
		size_t nul_every; /* 1: all NULs; 0: none */
		bool b64;
	} cases[] = {{1, true}, {2, true}, {4, true}, {8, true}, {16, false}, {0, false}};
	unsigned char src[3000], got[3100];
	struct utf8_carry c = {0};
	bool b64;
	size_t n = sizeof(src), wire, m;
	char *f;

	for (size_t i = 0; i < n; i++)
		src[i] = cases[_i].nul_every != 0 && i % cases[_i].nul_every == 0 ? 0 : 'x';
	f = frame(&c, (const char *)src, n, true);
	wire = data_len(f, &b64);
	ck_assert_msg(b64 == cases[_i].b64, "a NUL every %zu bytes: %s", cases[_i].nul_every,
	              b64 ? "base64" : "text");
	/* never longer than base64 with its member, whatever was chosen */
	ck_assert_uint_le(wire, sizeof("{\"stream\":\"stdout\",\"data\":\"\",\"encoding\":"
	                               "\"base64\"}\n") -
	                            1 + 4 * ((n + 2) / 3));
	if (b64) {
		json_t *o = json_loads(f, 0, NULL);
		const char *d = json_string_value(json_object_get(o, "data"));
		size_t dl = strlen(d);
		m = (size_t)EVP_DecodeBlock(got, (const unsigned char *)d, (int)dl);
		m -= (dl > 0 && d[dl - 1] == '=') + (dl > 1 && d[dl - 2] == '=');
		ck_assert_uint_eq(m, n);
		ck_assert_int_eq(memcmp(got, src, n), 0);
		json_decref(o);
	}
	free(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("frame");

	tcase_add_test(tc, text_chunk_is_a_text_frame);
	tcase_add_loop_test(tc, text_frames_escape_every_ascii_byte, 0, 128);
	tcase_add_loop_test(tc, control_heavy_text_goes_as_base64, 0, 6);
	tcase_add_test(tc, split_sequence_is_carried_not_base64);
	tcase_add_loop_test(tc, invalid_utf8_is_base64, 0, sizeof(invalid) / sizeof(invalid[0]));
	tcase_add_test(tc, final_flushes_an_unfinished_sequence_as_base64);
	tcase_add_loop_test(tc, frames_round_trip_any_bytes_any_cuts, 0, 20);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
