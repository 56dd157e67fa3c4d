/* common/token.c: API token generation, format check and hashing. */
#include "common/token.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

#include "common/err.h"

_Static_assert(TOKEN_LEN == 47, "token layout changed");

static int fill_random(unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return EB_ERR_IO;
		}
		got += (size_t)n;
	}
	return 0;
}

int token_generate(char out[TOKEN_LEN + 1])
{
	unsigned char secret[TOKEN_SECRET_BYTES];
	unsigned char b64[48];
	size_t plen = strlen(TOKEN_PREFIX);
	int rc;

	rc = fill_random(secret, sizeof(secret));
	if (rc != 0)
		return rc;
	EVP_EncodeBlock(b64, secret, sizeof(secret)); /* 44 characters, the last '=' */
	memcpy(out, TOKEN_PREFIX, plen);
	for (size_t i = 0; i < 43; i++) {
		char c = (char)b64[i];
		out[plen + i] = c == '+' ? '-' : c == '/' ? '_' : c;
	}
	out[TOKEN_LEN] = '\0';
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(b64, sizeof(b64));
	return 0;
}

static int is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int token_check_format(const char *s, size_t len)
{
	size_t plen = strlen(TOKEN_PREFIX);

	if (len != TOKEN_LEN || memcmp(s, TOKEN_PREFIX, plen) != 0)
		return EB_ERR_INVAL;
	for (size_t i = plen; i < len; i++)
		if (!is_b64url(s[i]))
			return EB_ERR_INVAL;
	/* 43 characters carry 258 bits for 256: the last character's 2 low bits are zero. */
	if (strchr("AEIMQUYcgkosw048", s[len - 1]) == NULL)
		return EB_ERR_INVAL;
	return 0;
}

void token_hash_hex(const char *token, size_t len, char out[TOKEN_HASH_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)token, len, md);
	for (size_t i = 0; i < sizeof(md); i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[TOKEN_HASH_HEX_LEN] = '\0';
}

void token_public_prefix(const char *token, char out[TOKEN_PUBLIC_LEN + 1])
{
	memcpy(out, token, TOKEN_PUBLIC_LEN);
	out[TOKEN_PUBLIC_LEN] = '\0';
}
