/* admin/workspace.c: `exec-broker workspace add|set|list|remove|hostkey`. Every
 * argument is checked before the database is touched; each change, labels included, is one
 * statement. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "common/ids.h"
#include "common/err.h"
#include "common/labels.h"
#include "common/table.h"
#include "db/db.h"
#include "pool/fingerprint.h"
#include "pool/hostkey.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker workspace add ID --org ORG --host HOST [--port 22] --user USER\n"
	    "                                 --tier 1-4 --host-key SHA256:... [--state "
	    "running|stopped]\n"
	    "                                 [--label KEY=VALUE]...\n"
	    "       exec-broker workspace set ID [--state running|stopped] [--tier N] [--host H]\n"
	    "                                 [--port P] [--user U] [--host-key FP]\n"
	    "                                 [--label KEY=VALUE | --label KEY-]...\n"
	    "       exec-broker workspace list [--org ORG] [--label KEY=VALUE]... "
	    "[--format table|json]\n"
	    "       exec-broker workspace remove ID\n"
	    "       exec-broker workspace hostkey HOST [--port 22]\n"
	    "\n"
	    "--label sets a label (repeat it for more); on set, KEY- removes one. A key is 1-63\n"
	    "of a-z 0-9 . _ / -, starting with a letter or digit; a value is 0-63 of A-Z a-z\n"
	    "0-9 . _ -. A workspace has at most 64 labels (the database refuses more). list\n"
	    "--label shows the workspaces that carry every pair given.\n"
	    "hostkey connects to HOST without logging in and prints its host key fingerprint\n"
	    "(as `ssh-keygen -lf` shows it) for --host-key. remove also deletes the\n"
	    "workspace's tokens and labels; its audit rows stay.\n");
}

/* --label arguments one command takes: set may remove every label and set as many anew. */
#define WS_LABEL_ARGS_MAX (2 * LABELS_MAX)

/* Every option any workspace subcommand takes; each subcommand says which it allows. */
struct ws_args {
	const char *id, *org, *host, *user, *host_key, *state, *format;
	int port, tier; /* 0: not given */
	const char *label_args[WS_LABEL_ARGS_MAX];
	struct label_arg labels[WS_LABEL_ARGS_MAX]; /* label_args parsed by check_args */
	size_t nlabels, nremove;                    /* nremove of them are KEY- */
};

enum { O_ORG = 1, O_HOST, O_PORT, O_USER, O_TIER, O_HOST_KEY, O_STATE, O_FORMAT, O_LABEL };

static int parse_int_arg(const char *name, const char *v, int min, int max, int *out)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (v[0] == '\0' || *end != '\0' || n < min || n > max) {
		cli_error("--%s must be a whole number from %d to %d (got \"%s\")", name, min, max,
		          v);
		return CLI_EXIT_USAGE;
	}
	*out = (int)n;
	return 0;
}

/* Parses argv into a; allowed is a string of O_* values the subcommand accepts. */
static int parse_args(struct cli *cli, int argc, char **argv, const char *allowed, int npos,
                      struct ws_args *a)
{
	static const struct option opts[] = {{"org", required_argument, NULL, O_ORG},
	                                     {"host", required_argument, NULL, O_HOST},
	                                     {"port", required_argument, NULL, O_PORT},
	                                     {"user", required_argument, NULL, O_USER},
	                                     {"tier", required_argument, NULL, O_TIER},
	                                     {"host-key", required_argument, NULL, O_HOST_KEY},
	                                     {"state", required_argument, NULL, O_STATE},
	                                     {"format", required_argument, NULL, O_FORMAT},
	                                     {"label", required_argument, NULL, O_LABEL},
	                                     CLI_COMMON_OPTIONS,
	                                     {NULL, 0, NULL, 0}};
	const char *v[O_LABEL + 1];
	struct cli_many labels = {O_LABEL, a->label_args, WS_LABEL_ARGS_MAX, 0};
	int rc;

	memset(a, 0, sizeof(*a));
	rc = cli_parse_many(cli, argc, argv, "workspace", opts, allowed, v, O_LABEL + 1, npos,
	                    strcmp(argv[0], "hostkey") == 0 ? "HOST" : "workspace ID", &a->id,
	                    usage, &labels);
	if (rc != 0)
		return rc;
	a->nlabels = labels.n;
	if (v[O_PORT] != NULL && (rc = parse_int_arg("port", v[O_PORT], 1, 65535, &a->port)) != 0)
		return rc;
	if (v[O_TIER] != NULL && (rc = parse_int_arg("tier", v[O_TIER], 1, 4, &a->tier)) != 0)
		return rc;
	a->org = v[O_ORG];
	a->host = v[O_HOST];
	a->user = v[O_USER];
	a->host_key = v[O_HOST_KEY];
	a->state = v[O_STATE];
	a->format = v[O_FORMAT];
	return 0;
}

/* Parses the --label arguments into a->labels; a key may be named once. */
static int check_labels(struct ws_args *a)
{
	char err[512];

	for (size_t i = 0; i < a->nlabels; i++) {
		if (labels_parse_arg(a->label_args[i], &a->labels[i], err, sizeof(err)) != 0) {
			cli_error("%s", err);
			return CLI_EXIT_USAGE;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(a->labels[k].key, a->labels[i].key) == 0) {
				cli_error("--label: key \"%s\" is given twice (\"%s\", \"%s\")",
				          a->labels[i].key, a->label_args[k], a->label_args[i]);
				return CLI_EXIT_USAGE;
			}
		a->nremove += a->labels[i].remove;
	}
	return 0;
}

/* Checks the values given; required is a string of O_* values that must be present. */
static int check_args(struct ws_args *a, const char *required, int id_is_workspace)
{
	static const char *const names[] = {"",     "org",      "host",  "port",  "user",
	                                    "tier", "host-key", "state", "format"};
	const void *given[] = {
	    NULL,        a->org,   a->host,  a->port ? "" : NULL, a->user, a->tier ? "" : NULL,
	    a->host_key, a->state, a->format};

	for (const char *r = required; *r; r++)
		if (given[(int)*r] == NULL) {
			cli_error("--%s is required", names[(int)*r]);
			return CLI_EXIT_USAGE;
		}
	if (id_is_workspace && a->id && !ids_valid_name(a->id)) {
		cli_error("workspace id \"%s\" is invalid: use 1-64 letters, digits, '.', '_' or "
		          "'-', starting with a letter or digit",
		          a->id);
		return CLI_EXIT_USAGE;
	}
	if (a->org && !ids_valid_name(a->org)) {
		cli_error("org id \"%s\" is invalid: use 1-64 letters, digits, '.', '_' or '-', "
		          "starting with a letter or digit",
		          a->org);
		return CLI_EXIT_USAGE;
	}
	if (a->host && !ids_valid_host(a->host)) {
		cli_error("host \"%s\" is invalid: give a host name or an IP address", a->host);
		return CLI_EXIT_USAGE;
	}
	if (a->user && !ids_valid_ssh_user(a->user)) {
		cli_error("user \"%s\" is invalid: give a login name (letters, digits, '.', '_', "
		          "'-'; not starting with a digit or '-')",
		          a->user);
		return CLI_EXIT_USAGE;
	}
	if (a->host_key && fp_parse(a->host_key, NULL) != 0) {
		cli_error("host key \"%s\" is not a SHA-256 fingerprint such as "
		          "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE (exec-broker "
		          "workspace hostkey HOST prints it)",
		          a->host_key);
		return CLI_EXIT_USAGE;
	}
	if (a->state && strcmp(a->state, "running") != 0 && strcmp(a->state, "stopped") != 0) {
		cli_error("--state must be running or stopped (got \"%s\")", a->state);
		return CLI_EXIT_USAGE;
	}
	if (a->format && strcmp(a->format, "table") != 0 && strcmp(a->format, "json") != 0) {
		cli_error("--format must be table or json (got \"%s\")", a->format);
		return CLI_EXIT_USAGE;
	}
	return check_labels(a);
}

/* The labels to set as a JSON object {"KEY": "VALUE", ...}, or (remove) the keys to remove
 * as a JSON array: the statements read them with jsonb_each_text and
 * jsonb_array_elements_text. malloc'd; NULL if out of memory. */
static char *labels_json(const struct ws_args *a, bool remove)
{
	json_t *j = remove ? json_array() : json_object();
	char *s = NULL;

	if (j == NULL)
		return NULL;
	for (size_t i = 0; i < a->nlabels; i++) {
		const struct label_arg *l = &a->labels[i];
		if (l->remove != remove)
			continue;
		if ((remove ? json_array_append_new(j, json_string(l->key))
		            : json_object_set_new(j, l->key, json_string(l->value))) != 0)
			goto out;
	}
	s = json_dumps(j, JSON_COMPACT);
out:
	json_decref(j);
	return s;
}

static int ws_add(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_ORG,      O_HOST,  O_PORT,  O_USER, O_TIER,
	                               O_HOST_KEY, O_STATE, O_LABEL, 0};
	static const char required[] = {O_ORG, O_HOST, O_USER, O_TIER, O_HOST_KEY, 0};
	struct ws_args a;
	char port[16], tier[16], err[1024], state[6], *labels = NULL;
	PGconn *conn = NULL;
	PGresult *res;
	int rc;

	rc = parse_args(cli, argc, argv, allowed, 1, &a);
	if (rc == 0)
		rc = check_args(&a, required, 1);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if (a.nremove > 0) {
		cli_error("--label: a new workspace has no labels to remove (give KEY=VALUE)");
		return CLI_EXIT_USAGE;
	}
	if (a.nlabels > LABELS_MAX) {
		cli_error("--label: a workspace has at most %d labels (%zu given)", LABELS_MAX,
		          a.nlabels);
		return CLI_EXIT_USAGE;
	}
	snprintf(port, sizeof(port), "%d", a.port ? a.port : 22);
	snprintf(tier, sizeof(tier), "%d", a.tier);
	labels = labels_json(&a, false);
	if (labels == NULL)
		return CLI_EXIT_FAIL;
	const char *params[] = {a.id,   a.org,      a.host, port,
	                        a.user, a.host_key, tier,   a.state ? a.state : "running",
	                        labels};
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		goto out;
	/* The labels' foreign key is checked at the end of the statement, when the workspace
	 * it names is in. */
	res = db_exec(conn,
	              "WITH w AS (INSERT INTO workspaces (id, org_id, host, port, ssh_user, "
	              "host_key_sha256, tier, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
	              "RETURNING id), "
	              "l AS (INSERT INTO workspace_labels (workspace_id, key, value) "
	              "SELECT w.id, j.key, j.value FROM w, jsonb_each_text($9::jsonb) AS j) "
	              "SELECT id FROM w",
	              9, params, err, sizeof(err), state);
	if (res == NULL) {
		if (strcmp(state, "23505") == 0)
			cli_error("workspace \"%s\" already exists (workspace set changes it)",
			          a.id);
		else
			cli_error("cannot add workspace \"%s\": %s", a.id, err);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	PQclear(res);
	printf("added workspace %s (org %s, %s@%s:%s, tier %s, %s)", a.id, a.org, a.user, a.host,
	       port, tier, params[7]);
	if (a.nlabels > 0)
		printf(" with %zu label(s)", a.nlabels);
	putchar('\n');
out:
	free(labels);
	PQfinish(conn);
	return rc;
}

static int ws_set(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_HOST,     O_PORT,  O_USER,  O_TIER,
	                               O_HOST_KEY, O_STATE, O_LABEL, 0};
	struct ws_args a;
	char port[16], tier[16], err[1024], state[6], *put = NULL, *gone = NULL;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rc;

	rc = parse_args(cli, argc, argv, allowed, 1, &a);
	if (rc == 0)
		rc = check_args(&a, "", 1);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if (!a.host && !a.port && !a.user && !a.tier && !a.host_key && !a.state && !a.nlabels) {
		cli_error("workspace set: nothing to change (give --state, --tier, --host, --port, "
		          "--user, --host-key or --label)");
		return CLI_EXIT_USAGE;
	}
	snprintf(port, sizeof(port), "%d", a.port);
	snprintf(tier, sizeof(tier), "%d", a.tier);
	put = labels_json(&a, false);
	gone = labels_json(&a, true);
	if (put == NULL || gone == NULL) {
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	const char *params[] = {a.id,    a.host,     a.port ? port : NULL,
	                        a.user,  a.host_key, a.tier ? tier : NULL,
	                        a.state, put,        gone};
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		goto out;
	/* The update locks the workspace's row first, so that its labels are counted (0009's
	 * trigger) against no other writer; no key is both removed and set (check_labels). */
	res = db_exec(conn,
	              "WITH w AS (UPDATE workspaces SET host = coalesce($2, host), "
	              "port = coalesce($3::integer, port), ssh_user = coalesce($4, ssh_user), "
	              "host_key_sha256 = coalesce($5, host_key_sha256), "
	              "tier = coalesce($6::smallint, tier), state = coalesce($7, state) "
	              "WHERE id = $1 RETURNING id), "
	              "gone AS (DELETE FROM workspace_labels l USING w WHERE l.workspace_id = w.id "
	              "AND l.key IN (SELECT jsonb_array_elements_text($9::jsonb))), "
	              "put AS (INSERT INTO workspace_labels (workspace_id, key, value) "
	              "SELECT w.id, j.key, j.value FROM w, jsonb_each_text($8::jsonb) AS j "
	              "ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value) "
	              "SELECT id FROM w",
	              9, params, err, sizeof(err), state);
	if (res == NULL) {
		if (strcmp(state, "EBL01") == 0)
			cli_error("cannot change workspace \"%s\": %s (remove some with --label "
			          "KEY-)",
			          a.id, err);
		else
			cli_error("cannot change workspace \"%s\": %s", a.id, err);
		rc = CLI_EXIT_FAIL;
	} else if (PQntuples(res) == 0) {
		cli_error("no workspace \"%s\"", a.id);
		rc = CLI_EXIT_FAIL;
	} else {
		printf("updated workspace %s\n", a.id);
	}
out:
	PQclear(res);
	PQfinish(conn);
	free(put);
	free(gone);
	return rc;
}

static int ws_list(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_ORG, O_FORMAT, O_LABEL, 0};
	static const char *const headers[] = {"ID",   "ORG",   "HOST",     "PORT",  "USER",
	                                      "TIER", "STATE", "HOST KEY", "LABELS"};
	struct ws_args a;
	char err[1024], state[6], *want = NULL;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	struct table *t = NULL;
	int rc, json;

	rc = parse_args(cli, argc, argv, allowed, 0, &a);
	if (rc == 0)
		rc = check_args(&a, "", 0);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	for (size_t i = 0; i < a.nlabels; i++)
		if (a.labels[i].remove) {
			cli_error("--label: list selects by KEY=VALUE (\"%s\" removes a label, on "
			          "workspace set)",
			          a.label_args[i]);
			return CLI_EXIT_USAGE;
		}
	json = a.format && strcmp(a.format, "json") == 0;
	want = labels_json(&a, false);
	if (want == NULL)
		return CLI_EXIT_FAIL;
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		goto out;
	const char *params[] = {a.org, want};
	/* A workspace is listed unless a wanted pair is missing from its labels. Keys sort
	 * bytewise, whatever the database's collation. */
	res = db_exec(conn,
	              "SELECT w.id, w.org_id, w.host, w.port, w.ssh_user, w.tier, w.state, "
	              "w.host_key_sha256, "
	              "to_char(w.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	              "to_char(w.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	              "coalesce(l.text, '-'), coalesce(l.json, '{}') "
	              "FROM workspaces w CROSS JOIN LATERAL ("
	              " SELECT string_agg(key || '=' || value, ',' ORDER BY key COLLATE \"C\") "
	              " AS text, json_object_agg(key, value ORDER BY key COLLATE \"C\") AS json"
	              " FROM workspace_labels WHERE workspace_id = w.id) l "
	              "WHERE ($1::text IS NULL OR w.org_id = $1) "
	              "AND NOT EXISTS (SELECT 1 FROM jsonb_each_text($2::jsonb) AS p "
	              " WHERE NOT EXISTS (SELECT 1 FROM workspace_labels h "
	              "  WHERE h.workspace_id = w.id AND h.key = p.key AND h.value = p.value)) "
	              "ORDER BY w.org_id, w.id",
	              2, params, err, sizeof(err), state);
	if (res == NULL) {
		cli_error("cannot list workspaces: %s", err);
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	if (!json && (t = table_new(9, headers)) == NULL) {
		rc = CLI_EXIT_FAIL;
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (json) {
			json_t *o = json_pack(
			    "{s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s, s:s, s:o}", "id",
			    PQgetvalue(res, i, 0), "org", PQgetvalue(res, i, 1), "host",
			    PQgetvalue(res, i, 2), "port", atoi(PQgetvalue(res, i, 3)), "user",
			    PQgetvalue(res, i, 4), "tier", atoi(PQgetvalue(res, i, 5)), "state",
			    PQgetvalue(res, i, 6), "host_key", PQgetvalue(res, i, 7), "created_at",
			    PQgetvalue(res, i, 8), "updated_at", PQgetvalue(res, i, 9), "labels",
			    json_loads(PQgetvalue(res, i, 11), 0, NULL));
			if (o == NULL || json_dumpf(o, stdout, JSON_COMPACT) != 0)
				rc = CLI_EXIT_FAIL;
			putchar('\n');
			json_decref(o);
		} else {
			const char *row[9];
			for (int c = 0; c < 8; c++)
				row[c] = PQgetvalue(res, i, c);
			row[8] = PQgetvalue(res, i, 10);
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
	free(want);
	return rc;
}

static int ws_remove(struct cli *cli, int argc, char **argv)
{
	struct ws_args a;
	char err[1024], state[6];
	PGconn *conn = NULL;
	PGresult *res;
	int rc;

	rc = parse_args(cli, argc, argv, "", 1, &a);
	if (rc == 0)
		rc = check_args(&a, "", 1);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	rc = cli_connect(cli, &conn);
	if (rc != 0)
		return rc;
	const char *params[] = {a.id};
	/* One statement: the token count and the delete see the same snapshot. */
	res = db_exec(conn,
	              "WITH t AS (SELECT count(*) AS n FROM api_tokens WHERE workspace_id = $1), "
	              "w AS (DELETE FROM workspaces WHERE id = $1 RETURNING id) "
	              "SELECT w.id, t.n FROM w, t",
	              1, params, err, sizeof(err), state);
	if (res == NULL) {
		cli_error("cannot remove workspace \"%s\": %s", a.id, err);
		rc = CLI_EXIT_FAIL;
	} else if (PQntuples(res) == 0) {
		cli_error("no workspace \"%s\"", a.id);
		rc = CLI_EXIT_FAIL;
	} else {
		printf("removed workspace %s and its %s token(s); its audit rows are kept\n", a.id,
		       PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	PQfinish(conn);
	return rc;
}

static int ws_hostkey(struct cli *cli, int argc, char **argv)
{
	static const char allowed[] = {O_PORT, 0};
	char fp[FP_TEXT_LEN + 1], type[16], err[512];
	struct ws_args a;
	int rc;

	rc = parse_args(cli, argc, argv, allowed, 1, &a);
	if (rc != 0)
		return rc == CLI_PARSED_HELP ? CLI_EXIT_OK : rc;
	if (!ids_valid_host(a.id)) {
		cli_error("host \"%s\" is invalid: give a host name or an IP address", a.id);
		return CLI_EXIT_USAGE;
	}
	rc = hostkey_probe(a.id, a.port ? a.port : 22, 10000, fp, type, err, sizeof(err));
	if (rc != 0) {
		cli_error("%s", err);
		return CLI_EXIT_FAIL;
	}
	printf("%s\n", fp);
	fprintf(stderr, "%s host key of %s port %d; verify it out of band before pinning it\n",
	        type, a.id, a.port ? a.port : 22);
	return CLI_EXIT_OK;
}

int admin_workspace(struct cli *cli, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct cli *, int, char **);
	} subs[] = {{"add", ws_add},
	            {"set", ws_set},
	            {"list", ws_list},
	            {"remove", ws_remove},
	            {"hostkey", ws_hostkey}};

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			optind = 0;
			return subs[i].fn(cli, argc - 1, argv + 1);
		}
	cli_error("unknown workspace command \"%s\" (add, set, list, remove, hostkey)", argv[1]);
	return CLI_EXIT_USAGE;
}
