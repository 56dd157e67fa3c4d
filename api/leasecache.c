/* api/leasecache.c: the table of lease hints (see leasecache.h). */
#include "api/leasecache.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static size_t slot_of(const char *token_hash, const char *ws)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (const char *p = token_hash; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = ws; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (size_t)(h % LEASECACHE_SLOTS);
}

const struct leasecache_entry *leasecache_get(const struct leasecache *c, const char *token_hash,
                                              const char *ws)
{
	const struct leasecache_entry *e = &c->slot[slot_of(token_hash, ws)];

	if (e->token_hash[0] == '\0' || strcmp(e->token_hash, token_hash) != 0 ||
	    strcmp(e->ws, ws) != 0)
		return NULL;
	return e;
}

void leasecache_put(struct leasecache *c, const char *token_hash, const char *ws, const char *host,
                    int port, const char *user, const char *fp)
{
	struct leasecache_entry *e = &c->slot[slot_of(token_hash, ws)];

	if (strlen(ws) >= sizeof(e->ws) || strlen(host) >= sizeof(e->host) ||
	    strlen(user) >= sizeof(e->user) || strlen(fp) >= sizeof(e->fp)) {
		e->token_hash[0] = '\0';
		return;
	}
	snprintf(e->token_hash, sizeof(e->token_hash), "%s", token_hash);
	snprintf(e->ws, sizeof(e->ws), "%s", ws);
	snprintf(e->host, sizeof(e->host), "%s", host);
	snprintf(e->user, sizeof(e->user), "%s", user);
	snprintf(e->fp, sizeof(e->fp), "%s", fp);
	e->port = port;
}

void leasecache_forget(struct leasecache *c, const char *token_hash, const char *ws)
{
	struct leasecache_entry *e = &c->slot[slot_of(token_hash, ws)];

	if (strcmp(e->token_hash, token_hash) == 0 && strcmp(e->ws, ws) == 0)
		e->token_hash[0] = '\0';
}
