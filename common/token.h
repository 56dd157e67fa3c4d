/* common/token.h: API tokens. A token is "ebk_" followed by 43 base64url characters (32
 * bytes from the OS CSPRNG). The database keeps only its SHA-256 and its public prefix (the
 * first 12 characters), which lists and audit rows show. */
#ifndef EB_COMMON_TOKEN_H
#define EB_COMMON_TOKEN_H

#include <stddef.h>

#define TOKEN_PREFIX       "ebk_"
#define TOKEN_SECRET_BYTES 32
#define TOKEN_LEN          (sizeof(TOKEN_PREFIX) - 1 + 43)
#define TOKEN_PUBLIC_LEN   12
#define TOKEN_HASH_HEX_LEN 64

/* Writes a new NUL-terminated token into out. 0, or EB_ERR_IO if the CSPRNG failed. */
int token_generate(char out[TOKEN_LEN + 1]);

/* 0 if s[0..len) has the token format, EB_ERR_INVAL otherwise. */
int token_check_format(const char *s, size_t len);

/* Lower-case hex SHA-256 of the token, NUL-terminated. */
void token_hash_hex(const char *token, size_t len, char out[TOKEN_HASH_HEX_LEN + 1]);

/* The public prefix of a well-formed token, NUL-terminated. */
void token_public_prefix(const char *token, char out[TOKEN_PUBLIC_LEN + 1]);

#endif
