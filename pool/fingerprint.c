/* pool/fingerprint.c: parsing and formatting of SHA-256 host-key fingerprints. */
#include "pool/fingerprint.h"

#include <openssl/evp.h>
#include <string.h>

#include "common/err.h"

static const char tag[] = "SHA256:";

int fp_parse(const char *s, unsigned char out[FP_SHA256_LEN])
{
	unsigned char padded[45], raw[33];
	const char *b64 = s + strlen(tag);

	if (strncmp(s, tag, strlen(tag)) != 0 || strlen(b64) != 43)
		return EB_ERR_INVAL;
	for (size_t i = 0; i < 43; i++) {
		char c = b64[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return EB_ERR_INVAL;
	}
	/* 43 characters carry 258 bits for 256: the last character's 2 low bits are zero. */
	if (strchr("AEIMQUYcgkosw048", b64[42]) == NULL)
		return EB_ERR_INVAL;
	memcpy(padded, b64, 43);
	padded[43] = '=';
	padded[44] = '\0';
	if (EVP_DecodeBlock(raw, padded, 44) != 33) /* counts the padding as a zero byte */
		return EB_ERR_INVAL;
	if (out != NULL)
		memcpy(out, raw, FP_SHA256_LEN);
	return 0;
}

void fp_format(const unsigned char hash[FP_SHA256_LEN], char out[FP_TEXT_LEN + 1])
{
	unsigned char b64[48];

	EVP_EncodeBlock(b64, hash, FP_SHA256_LEN);
	memcpy(out, tag, strlen(tag));
	memcpy(out + strlen(tag), b64, 43);
	out[FP_TEXT_LEN] = '\0';
}
