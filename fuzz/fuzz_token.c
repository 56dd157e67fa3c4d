/* fuzz/fuzz_token.c: the Authorization header and the token in it (api/authz.c,
 * common/token.c), and the X-Break-Glass-Reason header. The bytes are taken three ways:
 * as a token, where exactly the canonical base64url of 32 bytes behind "ebk_" is accepted
 * (decoded and encoded again it is the same text); as a header value, where
 * authz_parse_bearer's token is the whole rest after "Bearer " and its spaces, and
 * authz_bearer hashes and names only a well-formed token (the same hash on every call,
 * SHA-256 of the token) and writes nothing for one it refuses; and as a reason, accepted
 * exactly when it is 1-500 characters of UTF-8 with no control character. The first 32
 * bytes, encoded as token_generate encodes its secret, make a token every check accepts.
 * Input: any bytes. */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/authz.h"
#include "common/err.h"
#include "common/token.h"
#include "fuzz/fuzz.h"

#define B64_CHARS 43

/* The 43 characters of secret's base64url, as token_generate writes them. */
static void encode_secret(const unsigned char secret[TOKEN_SECRET_BYTES], char *out)
{
	unsigned char b64[48];

	EVP_EncodeBlock(b64, secret, TOKEN_SECRET_BYTES);
	for (size_t i = 0; i < B64_CHARS; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
}

static bool is_b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Whether s[0..len) is "ebk_" and the base64url that encoding its own decoding gives. */
static bool canonical_token(const unsigned char *s, size_t len)
{
	unsigned char std[44], secret[33];
	char again[B64_CHARS];

	if (len != TOKEN_LEN || memcmp(s, TOKEN_PREFIX, 4) != 0)
		return false;
	for (size_t i = 0; i < B64_CHARS; i++) {
		unsigned char c = s[4 + i];

		if (!is_b64url(c))
			return false;
		std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	std[B64_CHARS] = '=';
	FUZZ_CHECK(EVP_DecodeBlock(secret, std, sizeof(std)) == 33, "base64 of 43 characters");
	encode_secret(secret, again);
	return memcmp(again, s + 4, B64_CHARS) == 0;
}

static void check_hash(const char *token, size_t len, const char *hash)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char again[TOKEN_HASH_HEX_LEN + 1];
	static const char hex[] = "0123456789abcdef";

	FUZZ_CHECK(strlen(hash) == TOKEN_HASH_HEX_LEN, "a hash of %zu characters", strlen(hash));
	FUZZ_CHECK(EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32,
	           "EVP_Digest");
	for (size_t i = 0; i < 32; i++)
		FUZZ_CHECK(hash[2 * i] == hex[md[i] >> 4] && hash[2 * i + 1] == hex[md[i] & 15],
		           "the hash is not the token's SHA-256 in lower-case hex");
	token_hash_hex(token, len, again);
	FUZZ_CHECK(strcmp(again, hash) == 0, "the token hashes differently on another call");
}

/* authz_bearer on header, against authz_parse_bearer and token_check_format. */
static void check_bearer(const char *header)
{
	char hash[TOKEN_HASH_HEX_LEN + 1], actor[AUTHZ_ACTOR_LEN + 1];
	const char *token = NULL, *why;
	unsigned long len = 0;
	bool parsed = authz_parse_bearer(header, &token, &len) == 0;
	bool wellformed = parsed && token_check_format(token, len) == 0;

	if (parsed) {
		size_t hl = strlen(header);

		FUZZ_CHECK(strncasecmp(header, "Bearer ", 7) == 0, "no Bearer scheme");
		FUZZ_CHECK(token > header + 6 && token + len == header + hl,
		           "the token is not the rest of the header");
		FUZZ_CHECK(len > 0 && strcspn(token, " \t\r\n") == len,
		           "the token is empty or holds a blank");
		for (const char *p = header + 7; p < token; p++)
			FUZZ_CHECK(*p == ' ', "something but spaces before the token");
	}
	memset(hash, 'Z', sizeof(hash));
	memset(actor, 'Z', sizeof(actor));
	why = authz_bearer(header, hash, actor);
	if (!wellformed) {
		FUZZ_CHECK(why != NULL && why[0] != '\0', "a malformed header is accepted");
		for (size_t i = 0; i < sizeof(hash); i++)
			FUZZ_CHECK(hash[i] == 'Z', "a refused header wrote a hash");
		for (size_t i = 0; i < sizeof(actor); i++)
			FUZZ_CHECK(actor[i] == 'Z', "a refused header wrote an actor");
		return;
	}
	FUZZ_CHECK(why == NULL, "a well-formed token is refused: %s", why);
	check_hash(token, len, hash);
	FUZZ_CHECK(strlen(actor) == AUTHZ_ACTOR_LEN && memcmp(actor, "token:", 6) == 0 &&
	               memcmp(actor + 6, token, TOKEN_PUBLIC_LEN) == 0,
	           "actor \"%s\" is not token: and the public prefix", actor);
}

/* Strictly valid UTF-8 (RFC 3629), its characters counted; false if it is not. */
static bool utf8_chars(const unsigned char *s, size_t n, size_t *chars)
{
	*chars = 0;
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], need, min, cp;

		if (c < 0x80) {
			i++;
			(*chars)++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, min = 0x10000, cp = c & 0x07;
		else
			return false;
		if (n - i <= need)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
		(*chars)++;
	}
	return true;
}

static void check_reason(const char *reason)
{
	size_t n = strlen(reason), chars;
	bool want = n > 0 && utf8_chars((const unsigned char *)reason, n, &chars) && chars <= 500;

	for (size_t i = 0; want && i < n; i++)
		want = (unsigned char)reason[i] >= 0x20 && reason[i] != 0x7f;
	FUZZ_CHECK((authz_reason_valid(reason) != 0) == want, "the reason \"%.40s\" is %s", reason,
	           want ? "refused" : "accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), made[TOKEN_LEN + 1], header[7 + TOKEN_LEN + 1];

	FUZZ_CHECK(s != NULL, "out of memory");
	memcpy(s, data, size);
	s[size] = '\0';

	FUZZ_CHECK((token_check_format(s, size) == 0) == canonical_token(data, size),
	           "token_check_format and the canonical form disagree on %zu bytes", size);
	check_bearer(s);
	check_reason(s);
	FUZZ_CHECK(authz_bearer(NULL, made, made) != NULL, "no header is accepted");

	/* The formatter's output is accepted by every check, as a header too. */
	if (size >= TOKEN_SECRET_BYTES) {
		memcpy(made, TOKEN_PREFIX, 4);
		encode_secret(data, made + 4);
		made[TOKEN_LEN] = '\0';
		FUZZ_CHECK(token_check_format(made, TOKEN_LEN) == 0, "a made token is refused");
		FUZZ_CHECK(canonical_token((const unsigned char *)made, TOKEN_LEN),
		           "a made token is not canonical");
		memcpy(header, data[0] & 1 ? "bearer " : "Bearer ", 7);
		memcpy(header + 7, made, TOKEN_LEN + 1);
		check_bearer(header);
	}
	free(s);
	return 0;
}
