/* api/leasecache.h: where a token's last authorized exec on a workspace ran (host, port,
 * user, pinned key), so that the next one can lease its SSH session while the database
 * checks the token, instead of after. Only a hint: the statement that authorizes the exec
 * (audit_authz_begin_sql) gives the truth, and a lease taken for a stale hint is given
 * back. Keyed by the token's hash and the workspace, so an unknown or never-authorized
 * token leases nothing. A fixed table: entries that collide replace each other. */
#ifndef EB_API_LEASECACHE_H
#define EB_API_LEASECACHE_H

#include <stdbool.h>

#include "common/token.h"

#define LEASECACHE_SLOTS 512

struct leasecache_entry {
	char token_hash[TOKEN_HASH_HEX_LEN + 1]; /* "" when empty */
	char ws[80], host[256], user[40], fp[64];
	int port;
};

struct leasecache {
	struct leasecache_entry slot[LEASECACHE_SLOTS];
};

/* The entry of token_hash on ws, or NULL. */
const struct leasecache_entry *leasecache_get(const struct leasecache *c, const char *token_hash,
                                              const char *ws);
/* Remembers that token_hash ran on ws at host:port as user, pinned to fp. */
void leasecache_put(struct leasecache *c, const char *token_hash, const char *ws, const char *host,
                    int port, const char *user, const char *fp);
/* Forgets it (the token was refused there). */
void leasecache_forget(struct leasecache *c, const char *token_hash, const char *ws);

#endif
