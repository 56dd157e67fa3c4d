/* admin/token.c: `exec-broker token create|list|revoke`. A new token is printed once,
 * alone on stdout; the database keeps only its SHA-256 and public prefix. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "common/ids.h"
#include "common/token.h"
#include "common/duration.h"
#include "common/err.h"
#include "common/scopes.h"
#include "common/table.h"
#include "db/db.h"

#define MAX_EXPIRY_S (10LL * 366 * 86400)

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker token create (--workspace ID | --org ORG | --admin)\n"
	    "                                [--scope LIST] [--name TEXT] [--expires-in DURATION]\n"
	    "       exec-broker token list [--format table|json]\n"
	    "       exec-broker token revoke ID-OR-PREFIX\n"
	    "\n"
	    "create prints the new token alone on stdout; it is shown only this once.\n"
	    "DURATION is e.g. 90d, 12h, 1w, 1h30m (at most 10 years); without it the token\n"
	    "does not expire. A workspace token reaches its workspace, an org token every\n"
	    "workspace of its org, an admin token every workspace (break-glass).\n"
	    "LIST is what the token may do, comma-separated: exec (run commands), batch\n"
	    "(fan out to many workspaces; not for workspace tokens), audit:read (read the\n"
	    "audit log). Default: exec,audit:read; for --admin, all three. An admin token\n"
	    "with --scope audit:read is an auditor's: it reads every audit row and runs\n"
	    "nothing.\n");
}

enum { O_WORKSPACE = 1, O_ORG, O_ADMIN, O_NAME, O_EXPIRES, O_SCOPE, O_FORMAT };

struct tok_args {
	const char *workspace, *org, *name, *expires, *scope, *format, *pos;
	int admin;
};

static int parse_args(struct cli *cli, int argc, char **argv, const char *allowed, int npos,
                      struct tok_args *a)
{
	static const struct option opts[] = {{"workspace", required_argument, NULL, O_WORKSPACE},
	                                     {"org", required_argument, NULL, O_ORG},
	                                     {"admin", no_argument, NULL, O_ADMIN},
	                                     {"name", required_argument, NULL, O_NAME},
	                                     {"expires-in", required_argument, NULL, O_EXPIRES},
	                                     {"scope", required_argument, NULL, O_SCOPE},
	                                     {"format", required_argument, NULL, O_FORMAT},
	                                     CLI_COMMON_OPTIONS,
	                                     {NULL, 0, NULL, 0}};
	const char *v[O_FORMAT + 1];
	int rc;

	memset(a, 0, sizeof(*a));
	rc = cli_parse(cli, argc, argv, "token", opts, allowed, v, O_FORMAT + 1, npos,
	               "the token id or prefix", &a->pos, usage);
	if (rc != 0)
		return rc;
	a->workspace = v[O_WORKSPACE];
	a->org = v[O_ORG];
	a->admin = v[O_ADMIN] != NULL;
	a->name = v[O_NAME];
	a->expires = v[O_EXPIRES];
	a->scope = v[O_SCOPE];
	a->format = v[O_FORMAT];
	return 0;
}

static int tok_create(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_WORKSPACE, O_ORG, O_ADMIN, O_NAME, O_EXPIRES, O_SCOPE, 0};
	char token[TOKEN_LEN + 1], hash[TOKEN_HASH_HEX_LEN + 1], prefix[TOKEN_PUBLIC_LEN + 1];
	char secs[32], err[1024], state[6], bad[64], scope_list[64], pg_scopes[72];
	unsigned scope_set = 0;
	long long expires_s = 0;
	struct tok_args a;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	const char *kind;
	int rc, scopes;

	rc = parse_args(cli, argc, argv, allowed, 0, &a);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	scopes = (a.workspace != NULL) + (a.org != NULL) + a.admin;
	if (scopes != 1) {
		cli_error("token create needs exactly one of --workspace ID, --org ORG, --admin%s",
		          scopes ? " (several were given)" : "");
		return CLI_EXIT_USAGE;
	}
	kind = a.workspace ? "workspace" : a.org ? "org" : "admin";
	if ((a.workspace && !ids_valid_name(a.workspace)) || (a.org && !ids_valid_name(a.org))) {
		cli_error("%s id \"%s\" is invalid: use 1-64 letters, digits, '.', '_' or '-', "
		          "starting with a letter or digit",
		          kind, a.workspace ? a.workspace : a.org);
		return CLI_EXIT_USAGE;
	}
	if (a.name && strlen(a.name) > 200) {
		cli_error("--name is longer than 200 characters");
		return CLI_EXIT_USAGE;
	}
	if (a.expires) {
		rc = duration_parse(a.expires, MAX_EXPIRY_S, &expires_s);
		if (rc != 0) {
			cli_error("--expires-in \"%s\" is %s: use e.g. 90d, 12h, 1w or 1h30m, at "
			          "most 10 years",
			          a.expires,
			          rc == EB_ERR_RANGE ? "out of range" : "not a duration");
			return CLI_EXIT_USAGE;
		}
	}
	if (a.scope != NULL) {
		if (scopes_parse_list(a.scope, &scope_set, bad, sizeof(bad)) != 0) {
			cli_error(
			    "--scope \"%s\": \"%s\" is not a scope; use a comma-separated list "
			    "of exec, batch, audit:read",
			    a.scope, bad);
			return CLI_EXIT_USAGE;
		}
		if (strcmp(kind, "workspace") == 0 && (scope_set & SCOPE_BATCH)) {
			cli_error("a workspace token cannot have the batch scope: it reaches one "
			          "workspace; give batch to an org or admin token");
			return CLI_EXIT_USAGE;
		}
		scopes_format(scope_set, scope_list, sizeof(scope_list));
		snprintf(pg_scopes, sizeof(pg_scopes), "{%s}", scope_list);
	}
	snprintf(secs, sizeof(secs), "%lld", expires_s);
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
	/* A clash of the 48-bit public prefix is rare; a fresh token settles it. */
	for (int attempt = 0; attempt < 3; attempt++) {
		if (token_generate(token) != 0) {
			cli_error("cannot read the system's random number generator");
			rc = CLI_EXIT_FAIL;
			goto out;
		}
		token_hash_hex(token, TOKEN_LEN, hash);
		token_public_prefix(token, prefix);
		const char *params[] = {prefix,
		                        hash,
		                        kind,
		                        a.org,
		                        a.workspace,
		                        a.name ? a.name : "",
		                        a.expires ? secs : NULL,
		                        a.scope ? pg_scopes : NULL};
		/* Without --scope the database gives the kind's defaults (migrations/0008). */
		res = db_exec(
		    conn,
		    "INSERT INTO api_tokens (prefix, secret_sha256, kind, org_id, "
		    "workspace_id, name, expires_at, scopes) VALUES ($1, decode($2, 'hex'), "
		    "$3, $4, $5, $6, now() + make_interval(secs => $7::bigint), $8::text[]) "
		    "RETURNING id, to_char(expires_at AT TIME ZONE 'UTC', "
		    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), array_to_string(scopes, ',')",
		    8, params, err, sizeof(err), state);
		if (res != NULL || strcmp(state, "23505") != 0)
			break;
	}
	if (res == NULL) {
		if (strcmp(state, "23503") == 0)
			cli_error("no workspace \"%s\"", a.workspace);
		else
			cli_error("cannot create the token: %s", err);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	printf("%s\n", token);
	fflush(stdout);
	fprintf(stderr,
	        "created %s token %s (%s) for %s, scopes %s%s%s; it is shown only this once\n",
	        kind, PQgetvalue(res, 0, 0), prefix,
	        a.workspace ? a.workspace
	        : a.org     ? a.org
	                    : "every workspace",
	        PQgetvalue(res, 0, 2), a.expires ? ", expires " : ", no expiry",
	        a.expires ? PQgetvalue(res, 0, 1) : "");
out:
	explicit_bzero(token, sizeof(token));
	PQclear(res);
	PQfinish(conn);
	return rc;
}

static int tok_list(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_FORMAT, 0};
	static const char *const headers[] = {"ID",    "PREFIX", "KIND",    "REACH",   "SCOPES",
	                                      "STATE", "NAME",   "CREATED", "EXPIRES", "LAST USED"};
	char err[1024], state[6];
	struct tok_args a;
	struct table *t = NULL;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rc, json;

	rc = parse_args(cli, argc, argv, allowed, 0, &a);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if (a.format && strcmp(a.format, "table") != 0 && strcmp(a.format, "json") != 0) {
		cli_error("--format must be table or json (got \"%s\")", a.format);
		return CLI_EXIT_USAGE;
	}
	json = a.format && strcmp(a.format, "json") == 0;
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
#define TS(col)                                                                                    \
	"coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"
	static const char list_sql[] =
	    "SELECT id, prefix, kind, coalesce(workspace_id, org_id, "
	    "'*'),"
	    " array_to_string(scopes, ','),"
	    " CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
	    "  WHEN expires_at <= now() THEN 'expired' ELSE 'active' "
	    "END, name, " TS("created_at") ", " TS("expires_at") ", " TS("last_used_at") ", " TS(
	        "revoked_at") ", array_to_json(scopes) FROM api_tokens "
	                      "ORDER BY id";
#undef TS
	res = db_exec(conn, list_sql, 0, NULL, err, sizeof(err), state);
	if (res == NULL) {
		cli_error("cannot list tokens: %s", err);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	if (!json && (t = table_new(10, headers)) == NULL) {
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (json) {
			json_t *scopes = json_loads(PQgetvalue(res, i, 11), 0, NULL);
			json_t *o = json_pack(
			    "{s:I, s:s, s:s, s:s, s:o*, s:s, s:s, s:s, s:s?, s:s?, s:s?}", "id",
			    (json_int_t)atoll(PQgetvalue(res, i, 0)), "prefix",
			    PQgetvalue(res, i, 1), "kind", PQgetvalue(res, i, 2), "scope",
			    PQgetvalue(res, i, 3), "scopes", scopes, "state", PQgetvalue(res, i, 5),
			    "name", PQgetvalue(res, i, 6), "created_at", PQgetvalue(res, i, 7),
			    "expires_at", !*PQgetvalue(res, i, 8) ? NULL : PQgetvalue(res, i, 8),
			    "last_used_at", !*PQgetvalue(res, i, 9) ? NULL : PQgetvalue(res, i, 9),
			    "revoked_at", !*PQgetvalue(res, i, 10) ? NULL : PQgetvalue(res, i, 10));
			if (o == NULL || json_dumpf(o, stdout, JSON_COMPACT) != 0)
				rc = CLI_EXIT_FAIL;
			putchar('\n');
			json_decref(o);
		} else {
			const char *row[10];
			for (int c = 0; c < 10; c++)
				row[c] = PQgetvalue(res, i, c);
			if (!*row[8])
				row[8] = "never";
			if (!*row[9])
				row[9] = "never";
			if (table_add_row(t, row) != 0)
				rc = CLI_EXIT_FAIL;
		}
	}
	if (t != NULL)
		table_print(t, stdout);
out:
	table_free(t);
	PQclear(res);
	PQfinish(conn);
	return rc;
}

static int tok_revoke(struct cli *cli, int argc, char **argv)
{
	char err[1024], state[6];
	struct tok_args a;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	const char *by_id = NULL, *by_prefix = NULL;
	int rc;

	rc = parse_args(cli, argc, argv, "", 1, &a);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if (a.pos[0] != '\0' && strspn(a.pos, "0123456789") == strlen(a.pos) && strlen(a.pos) < 19)
		by_id = a.pos;
	else if (strncmp(a.pos, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) == 0 &&
	         strlen(a.pos) >= TOKEN_PUBLIC_LEN)
		by_prefix = a.pos; /* a whole token works too: its first 12 characters */
	else {
		cli_error("\"%s\" is neither a token id nor a token prefix (%sXXXXXXXX)", a.pos,
		          TOKEN_PREFIX);
		return CLI_EXIT_USAGE;
	}
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
	const char *params[] = {by_id, by_prefix};
	res = db_exec(conn,
	              "WITH target AS (SELECT id, prefix, revoked_at FROM api_tokens "
	              " WHERE id = $1::bigint OR prefix = left($2, 12)), "
	              "done AS (UPDATE api_tokens SET revoked_at = now() WHERE id IN "
	              " (SELECT id FROM target WHERE revoked_at IS NULL) RETURNING id) "
	              "SELECT t.id, t.prefix, t.revoked_at IS NOT NULL, "
	              "to_char(t.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
	              "FROM target t",
	              2, params, err, sizeof(err), state);
	if (res == NULL) {
		cli_error("cannot revoke the token: %s", err);
		rc = CLI_EXIT_FAIL;
	} else if (PQntuples(res) == 0) {
		cli_error("no token \"%s\"", a.pos);
		rc = CLI_EXIT_FAIL;
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		printf("token %s (%s) was already revoked at %s\n", PQgetvalue(res, 0, 0),
		       PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 3));
	} else {
		printf("revoked token %s (%s)\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	PQfinish(conn);
	return rc;
}

int admin_token(struct cli *cli, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} subs[] = {{"create", tok_create}, {"list", tok_list}, {"revoke", tok_revoke}};

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			optind = 0;
			return subs[i].fn(cli, argc - 1, argv + 1);
		}
	cli_error("unknown token command \"%s\" (create, list, revoke)", argv[1]);
	return CLI_EXIT_USAGE;
}
