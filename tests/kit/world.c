/* tests/kit/world.c: the serve suites' world and its pieces (see world.h). */
#include "tests/kit/world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kit/cli.h"
#include "tests/kit/clock.h"
#include "tests/kit/harness.h"
#include "tests/kit/net.h"
#include "tests/kit/sql.h"

int kit_db_migrated(char *conninfo, size_t len)
{
	static const char *const migrate[] = {"migrate", NULL};

	if (th_db_create(conninfo, len) != 0)
		return -1;
	return kit_cli(conninfo, migrate, NULL, NULL);
}

int kit_ws_add(const char *db, const struct kit_ws *ws)
{
	char port[16];
	const char *args[] = {"workspace",
	                      "add",
	                      ws->id,
	                      "--org",
	                      ws->org,
	                      "--host",
	                      "127.0.0.1",
	                      "--port",
	                      port,
	                      "--user",
	                      ws->user ? ws->user : th.user,
	                      "--tier",
	                      ws->tier ? ws->tier : "3",
	                      "--host-key",
	                      ws->host_key_fp,
	                      ws->state ? "--state" : NULL,
	                      ws->state,
	                      NULL};

	snprintf(port, sizeof(port), "%d", ws->port);
	return kit_cli(db, args, NULL, NULL);
}

static int add_ws(const struct kit_world *w, const char *id, const char *org, int port,
                  const char *user, const char *tier, const char *fp, const char *state)
{
	const struct kit_ws ws = {id, org, port, user, tier, fp, state};

	return kit_ws_add(w->db, &ws);
}

int kit_world_setup(struct kit_world *w)
{
	static const char *const t_ws[] = {"token", "create", "--workspace", "ws-a1", NULL};
	static const char *const t_org[] = {"token", "create", "--org", "acme", NULL};
	static const char *const t_other[] = {"token", "create", "--org", "globex", NULL};
	static const char *const t_admin[] = {"token",  "create", "--admin",
	                                      "--name", "oncall", NULL};
	static const char *const t_exp[] = {"token",        "create", "--workspace", "ws-a1",
	                                    "--expires-in", "1s",     NULL};
	static const char *const t_rev[] = {"token", "create", "--org", "acme", NULL};
	const char *revoke[] = {"token", "revoke", NULL, NULL};
	const char *fp = th.sshd.host_key_fp, *u = th.user;
	int p = th.sshd.port;
	char prefix[13];
	long long end;
	char *v;

	memset(w, 0, sizeof(*w));
	if (kit_db_migrated(w->db, sizeof(w->db)) != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (th_sshd_start(&w->conc[i], NULL) != 0)
			return -1;
	if (th_sshd_start(&w->cut, NULL) != 0)
		return -1;
	w->closed_port = kit_free_port();
	if (w->closed_port <= 0 || add_ws(w, "ws-a1", "acme", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-a2", "acme", p, u, "4", fp, "running") != 0 ||
	    add_ws(w, "ws-low", "acme", p, u, "2", fp, "running") != 0 ||
	    add_ws(w, "ws-stopped", "acme", p, u, "3", fp, "stopped") != 0 ||
	    add_ws(w, "ws-b1", "globex", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-badkey", "acme", p, u, "3", KIT_WRONG_FP, "running") != 0 ||
	    add_ws(w, "ws-closed", "acme", w->closed_port, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-badauth", "acme", p, "nobody", "3", fp, "running") != 0 ||
	    add_ws(w, "ws-c0", "acme", p, u, "3", fp, "running") != 0 ||
	    add_ws(w, "ws-c1", "acme", w->conc[0].port, u, "3", w->conc[0].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-c2", "globex", w->conc[1].port, u, "3", w->conc[1].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-c3", "globex", w->conc[2].port, u, "3", w->conc[2].host_key_fp,
	           "running") != 0 ||
	    add_ws(w, "ws-cut", "acme", w->cut.port, u, "3", w->cut.host_key_fp, "running") != 0)
		return -1;
	if (kit_cli_token(w->db, t_ws, w->tok_ws, sizeof(w->tok_ws)) != 0 ||
	    kit_cli_token(w->db, t_org, w->tok_org, sizeof(w->tok_org)) != 0 ||
	    kit_cli_token(w->db, t_other, w->tok_other, sizeof(w->tok_other)) != 0 ||
	    kit_cli_token(w->db, t_admin, w->tok_admin, sizeof(w->tok_admin)) != 0 ||
	    kit_cli_token(w->db, t_exp, w->tok_expired, sizeof(w->tok_expired)) != 0 ||
	    kit_cli_token(w->db, t_rev, w->tok_revoked, sizeof(w->tok_revoked)) != 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "%.12s", w->tok_revoked);
	revoke[2] = prefix;
	if (kit_cli(w->db, revoke, NULL, NULL) != 0)
		return -1;
	/* The expired token was made with the shortest life the CLI allows; wait until the
	 * database itself says it is over. */
	end = kit_now_ms() + KIT_WAIT_MS;
	for (;;) {
		v = kit_sql_value(w->db, "SELECT count(*) FROM api_tokens "
		                         "WHERE expires_at IS NOT NULL AND expires_at < now()");
		if (v == NULL)
			return -1;
		if (strcmp(v, "1") == 0)
			break;
		free(v);
		if (kit_now_ms() > end) {
			fprintf(stderr, "kit: the 1s token did not expire\n");
			return -1;
		}
		kit_sleep_ms(100);
	}
	free(v);
	return 0;
}
