/* tests/kit/world.h: what the serve suites run against, made the way an operator makes it,
 * with the CLI: a migrated database, workspaces on the run's sshds, and tokens of every
 * kind; and the pieces (a migrated database, one workspace) benchmarks make theirs of. */
#ifndef EB_TESTS_KIT_WORLD_H
#define EB_TESTS_KIT_WORLD_H

#include <stddef.h>

#include "tests/kit/sshd.h"

/* A fingerprint no sshd of the run has (a well-formed SHA-256 of nothing real). */
#define KIT_WRONG_FP "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE"

/* One migrated database, the workspaces and the tokens. */
struct kit_world {
	char db[512];
	/* Extra sshds: conc[0..2] serve ws-c1..ws-c3 (ws-c0 is on th.sshd), cut serves ws-cut. */
	struct th_sshd conc[3];
	struct th_sshd cut;
	int closed_port; /* a loopback port nothing listens on (ws-closed) */
	/* Tokens as `token create` printed them. */
	char tok_ws[64];      /* workspace token of ws-a1 */
	char tok_org[64];     /* org acme */
	char tok_other[64];   /* org globex */
	char tok_admin[64];   /* admin */
	char tok_expired[64]; /* workspace token of ws-a1, expired */
	char tok_revoked[64]; /* org acme, revoked */
};

/* Workspaces (all on 127.0.0.1 as th.user, pinned to the right key unless said):
 *   ws-a1  acme   tier 3        ws-a2     acme    tier 4     ws-low   acme tier 2
 *   ws-stopped acme tier 3 stopped                           ws-b1    globex tier 3
 *   ws-badkey  acme, pinned to KIT_WRONG_FP   ws-closed acme, a port nothing listens on
 *   ws-badauth acme, user "nobody" (sshd allows only th.user)
 *   ws-c0, ws-c1 acme and ws-c2, ws-c3 globex, each on its own sshd; ws-cut acme on w->cut
 * 0, or -1 with a message on stderr (no Check: main() calls it before the tests). */
int kit_world_setup(struct kit_world *w);

/* A fresh database (th_db_create) migrated by `exec-broker migrate`. */
int kit_db_migrated(char *conninfo, size_t len);

/* One `exec-broker workspace add` on 127.0.0.1. */
struct kit_ws {
	const char *id, *org;
	int port;
	const char *user; /* NULL: th.user */
	const char *tier; /* NULL: "3" */
	const char *host_key_fp;
	const char *state; /* NULL: the CLI's default */
};

int kit_ws_add(const char *db, const struct kit_ws *ws);

#endif
