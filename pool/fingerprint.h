/* pool/fingerprint.h: OpenSSH SHA-256 host-key fingerprints ("SHA256:" and 43 base64
 * characters, no padding), as `ssh-keygen -lf` prints them and workspaces pin them. */
#ifndef EB_POOL_FINGERPRINT_H
#define EB_POOL_FINGERPRINT_H

#include <stddef.h>

#define FP_SHA256_LEN 32
#define FP_TEXT_LEN   (7 + 43)

/* 0 and the 32 hash bytes in out (may be NULL) if s is a well-formed fingerprint,
 * EB_ERR_INVAL otherwise. */
int fp_parse(const char *s, unsigned char out[FP_SHA256_LEN]);

/* Formats a SHA-256 hash as "SHA256:...", NUL-terminated. */
void fp_format(const unsigned char hash[FP_SHA256_LEN], char out[FP_TEXT_LEN + 1]);

#endif
