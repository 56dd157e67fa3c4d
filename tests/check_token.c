/* tests/check_token.c: pure functions of tokens, fingerprints, identifiers and durations. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/ids.h"
#include "common/token.h"
#include "common/duration.h"
#include "common/err.h"
#include "pool/fingerprint.h"
#include "tests/runner.h"

START_TEST(generated_tokens_have_the_format_and_differ)
{
	char a[TOKEN_LEN + 1], b[TOKEN_LEN + 1];

	ck_assert_int_eq(token_generate(a), 0);
	ck_assert_int_eq(token_generate(b), 0);
	ck_assert_uint_eq(strlen(a), 47);
	ck_assert_int_eq(strncmp(a, "ebk_", 4), 0);
	ck_assert_int_eq(token_check_format(a, strlen(a)), 0);
	ck_assert_int_eq(token_check_format(b, strlen(b)), 0);
	ck_assert_str_ne(a, b);
}
END_TEST

/* Over many tokens every base64url character appears and no two share a public prefix:
 * the secret really is random and really uses the whole alphabet. */
START_TEST(generated_tokens_use_the_whole_alphabet)
{
	char seen[256] = {0};
	char t[TOKEN_LEN + 1];
	int distinct = 0;

	for (int i = 0; i < 2000; i++) {
		ck_assert_int_eq(token_generate(t), 0);
		for (size_t k = 4; k < TOKEN_LEN - 1; k++)
			seen[(unsigned char)t[k]] = 1;
	}
	for (int c = 0; c < 256; c++)
		distinct += seen[c];
	ck_assert_int_eq(distinct, 64);
}
END_TEST

static const char *const bad_tokens[] = {
    "",
    "ebk_",
    "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 42 characters */
    "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 44 characters */
    "ebx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "EBK_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+A", /* not base64url */
    "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA A",
    "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", /* padding bits set */
};

START_TEST(malformed_tokens_are_refused)
{
	const char *t = bad_tokens[_i];

	ck_assert_msg(token_check_format(t, strlen(t)) == EB_ERR_INVAL, "accepted \"%s\"", t);
}
END_TEST

START_TEST(token_hash_is_sha256_hex)
{
	char hex[TOKEN_HASH_HEX_LEN + 1];
	char prefix[TOKEN_PUBLIC_LEN + 1];
	const char *t = "ebk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

	/* sha256("abc"), the FIPS 180-2 test vector */
	token_hash_hex("abc", 3, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	token_public_prefix(t, prefix);
	ck_assert_str_eq(prefix, "ebk_AAAAAAAA");
}
END_TEST

START_TEST(fingerprint_round_trip)
{
	/* ssh-keygen -lf of an ed25519 key printed this one. */
	const char *fp = "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE";
	unsigned char raw[FP_SHA256_LEN];
	char again[FP_TEXT_LEN + 1];

	ck_assert_int_eq(fp_parse(fp, raw), 0);
	fp_format(raw, again);
	ck_assert_str_eq(again, fp);
	ck_assert_uint_eq(raw[0], 0xb9); /* 'u' 'U' -> 101110 010100 */
}
END_TEST

static const char *const bad_fps[] = {
    "",
    "SHA256:",
    "uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE",
    "sha256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE",
    "MD5:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE",
    "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKl",
    "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE=",
    "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd_ZKlE",
    "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlF",
    "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE ",
};

START_TEST(malformed_fingerprints_are_refused)
{
	ck_assert_msg(fp_parse(bad_fps[_i], NULL) == EB_ERR_INVAL, "accepted \"%s\"", bad_fps[_i]);
}
END_TEST

static const struct {
	const char *s;
	bool name, host, user;
} ids[] = {
    {"ws-1", true, true, true},
    {"acme.corp_2", true, true, true},
    {"A", true, true, true},
    {"9lives", true, true, false},
    {"_svc", false, true, true},
    {"-rf", false, false, false},
    {"", false, false, false},
    {"a/b", false, false, false},
    {"a b", false, false, false},
    {"x;id", false, false, false},
    {"::1", false, true, false},
    {"ws\xc3\xa9", false, false, false},
    {"0123456789012345678901234567890123456789012345678901234567890123", true, true, false},
    {"01234567890123456789012345678901234567890123456789012345678901234", false, true, false},
    {"abcdefghijabcdefghijabcdefghijab", true, true, true},
    {"abcdefghijabcdefghijabcdefghijabc", true, true, false},
};

START_TEST(identifier_formats)
{
	ck_assert_msg(ids_valid_name(ids[_i].s) == ids[_i].name, "name \"%s\"", ids[_i].s);
	ck_assert_msg(ids_valid_host(ids[_i].s) == ids[_i].host, "host \"%s\"", ids[_i].s);
	ck_assert_msg(ids_valid_ssh_user(ids[_i].s) == ids[_i].user, "user \"%s\"", ids[_i].s);
}
END_TEST

static const struct {
	const char *s;
	int rc;
	long long secs;
} durations[] = {
    {"45s", 0, 45},
    {"30m", 0, 1800},
    {"12h", 0, 43200},
    {"90d", 0, 7776000},
    {"2w", 0, 1209600},
    {"1h30m", 0, 5400},
    {"1d12h", 0, 129600},
    {"", EB_ERR_INVAL, 0},
    {"10", EB_ERR_INVAL, 0},
    {"h", EB_ERR_INVAL, 0},
    {"1y", EB_ERR_INVAL, 0},
    {"30m1h", EB_ERR_INVAL, 0},
    {"1h1h", EB_ERR_INVAL, 0},
    {"-1h", EB_ERR_INVAL, 0},
    {"0s", EB_ERR_RANGE, 0},
    {"11000d", EB_ERR_RANGE, 0},
    {"99999999999999999999s", EB_ERR_RANGE, 0},
    {"1 h", EB_ERR_INVAL, 0},
};

START_TEST(duration_parsing)
{
	long long secs = -1;
	int rc = duration_parse(durations[_i].s, 10LL * 366 * 86400, &secs);

	ck_assert_msg(rc == durations[_i].rc, "\"%s\": rc %d", durations[_i].s, rc);
	if (rc == 0)
		ck_assert_int_eq(secs, durations[_i].secs);
}
END_TEST

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

int main(void)
{
	Suite *s = suite_create("token");
	TCase *tc = tcase_create("token");

	tcase_add_test(tc, generated_tokens_have_the_format_and_differ);
	tcase_add_test(tc, generated_tokens_use_the_whole_alphabet);
	tcase_add_loop_test(tc, malformed_tokens_are_refused, 0, N(bad_tokens));
	tcase_add_test(tc, token_hash_is_sha256_hex);
	tcase_add_test(tc, fingerprint_round_trip);
	tcase_add_loop_test(tc, malformed_fingerprints_are_refused, 0, N(bad_fps));
	tcase_add_loop_test(tc, identifier_formats, 0, N(ids));
	tcase_add_loop_test(tc, duration_parsing, 0, N(durations));
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
