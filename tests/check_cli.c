/* tests/check_cli.c: the administrative CLI against a real PostgreSQL and a real sshd:
 * workspace and token round trips, workspace labels (set, removed, selected, shown, limited,
 * gone with their workspace), bad input refused with one line and nothing written, no token
 * secret anywhere in the database, `workspace hostkey` equal to ssh-keygen's fingerprint,
 * and configuration errors. */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/token.h"
#include "tests/kit/clock.h"
#include "tests/kit/expect.h"
#include "tests/kit/harness.h"
#include "tests/kit/proc.h"
#include "tests/runner.h"

#define FP "SHA256:uU6b2ex9Ju1gn7CgYWNAt2nCMcjD2hb5Y4tHJd/ZKlE"

static char db[512];

static void fresh_db(void)
{
	tu_migrated_db(db, sizeof(db));
}

/* Runs the broker on the fixture's database and expects exit code want. */
static void run_ok(struct tu_run *r, int want, const char *const args[])
{
	tu_broker(r, db, NULL, args);
	ck_assert_msg(r->exit_code == want, "%s: exit %d, stderr: %s", args[0], r->exit_code,
	              r->err);
}

static void add_ws(const char *id, const char *org)
{
	const char *const args[] = {"workspace", "add",        id,       "--org",  org,
	                            "--host",    "127.0.0.1",  "--user", "ebtest", "--tier",
	                            "3",         "--host-key", FP,       NULL};
	struct tu_run r;

	run_ok(&r, 0, args);
	tu_run_free(&r);
}

/* Adds a workspace with labels ("KEY=VALUE", NULL-terminated). */
static void add_ws_labels(const char *id, const char *org, const char *const labels[])
{
	const char *args[16 + 2 * 70] = {"workspace", "add",        id,       "--org",  org,
	                                 "--host",    "h",          "--user", "ebtest", "--tier",
	                                 "3",         "--host-key", FP};
	size_t n = 13;
	struct tu_run r;

	for (size_t i = 0; labels[i] != NULL; i++) {
		ck_assert_uint_lt(n + 2, sizeof(args) / sizeof(args[0]));
		args[n++] = "--label";
		args[n++] = labels[i];
	}
	run_ok(&r, 0, args);
	tu_run_free(&r);
}

/* A workspace's labels as the database holds them: "k=v,k2=v2" by key, "-" when none. */
static char *labels_of(const char *id)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT coalesce(string_agg(key || '=' || value, ',' ORDER BY key), '-') "
	         "FROM workspace_labels WHERE workspace_id = '%s'",
	         id);
	return tu_query(db, sql);
}

static void expect_labels(const char *id, const char *want)
{
	char *v = labels_of(id);

	ck_assert_msg(strcmp(v, want) == 0, "%s: labels %s, want %s", id, v, want);
	free(v);
}

/* The ids `workspace list ARGS` prints, in order, comma-separated; the table's header is
 * checked and skipped. */
static char *listed(const char *const args[])
{
	struct tu_run r;
	char *ids = calloc(1, 4096), *line, *save = NULL;

	ck_assert_ptr_nonnull(ids);
	run_ok(&r, 0, args);
	line = strtok_r(r.out, "\n", &save);
	ck_assert_msg(line && strncmp(line, "ID ", 3) == 0 && strstr(line, "LABELS"), "%s", r.out);
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		line[strcspn(line, " ")] = '\0';
		strcat(ids, ids[0] ? "," : "");
		strcat(ids, line);
	}
	tu_run_free(&r);
	return ids;
}

START_TEST(workspace_round_trip)
{
	static const char *const add[] = {
	    "workspace",  "add",        "ws-1", "--org",   "acme",    "--host",
	    "h1.example", "--port",     "2222", "--user",  "deploy",  "--tier",
	    "3",          "--host-key", FP,     "--state", "stopped", NULL};
	static const char *const set[] = {"workspace", "set", "ws-1",   "--state", "running",
	                                  "--tier",    "4",   "--port", "22",      NULL};
	static const char *const list_json[] = {"workspace", "list", "--format", "json", NULL};
	static const char *const list_org[] = {"workspace", "list", "--org", "other", NULL};
	static const char *const list[] = {"workspace", "list", NULL};
	static const char *const rm[] = {"workspace", "remove", "ws-1", NULL};
	struct tu_run r;

	run_ok(&r, 0, add);
	tu_run_free(&r);
	run_ok(&r, 0, list_json);
	ck_assert_msg(strstr(r.out, "\"id\":\"ws-1\"") && strstr(r.out, "\"org\":\"acme\"") &&
	                  strstr(r.out, "\"port\":2222") && strstr(r.out, "\"tier\":3") &&
	                  strstr(r.out, "\"state\":\"stopped\"") &&
	                  strstr(r.out, "\"user\":\"deploy\"") && strstr(r.out, FP),
	              "%s", r.out);
	ck_assert_int_eq(tu_lines(r.out), 1);
	tu_run_free(&r);

	run_ok(&r, 0, set);
	tu_run_free(&r);
	run_ok(&r, 0, list);
	ck_assert_int_eq(tu_lines(r.out), 2); /* header and one row */
	ck_assert_msg(strstr(r.out, "running") && strstr(r.out, "  4  ") && !strstr(r.out, "2222"),
	              "%s", r.out);
	tu_run_free(&r);
	run_ok(&r, 0, list_org);
	ck_assert_int_eq(tu_lines(r.out), 1); /* header only */
	tu_run_free(&r);

	run_ok(&r, 0, rm);
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspaces"), 0);
}
END_TEST

/* Labels set on add, changed, added to and removed on set, one statement each: the other
 * columns stay as they were, and a label's value may be empty. */
START_TEST(labels_round_trip)
{
	static const char *const add[] = {"env=prod", "team=core", NULL};
	static const char *const set[] = {"workspace",   "set",     "ws-1",      "--label",
	                                  "env=staging", "--label", "zone=eu-1", "--label",
	                                  "empty=",      NULL};
	static const char *const set_tier[] = {"workspace", "set",     "ws-1",  "--tier",
	                                       "4",         "--label", "team-", NULL};
	struct tu_run r;
	char *v;

	add_ws_labels("ws-1", "acme", add);
	expect_labels("ws-1", "env=prod,team=core");
	run_ok(&r, 0, set);
	ck_assert_str_eq(r.out, "updated workspace ws-1\n");
	tu_run_free(&r);
	expect_labels("ws-1", "empty=,env=staging,team=core,zone=eu-1");
	v = tu_query(db, "SELECT host || ' ' || tier || ' ' || state FROM workspaces");
	ck_assert_str_eq(v, "h 3 running");
	free(v);
	run_ok(&r, 0, set_tier);
	tu_run_free(&r);
	expect_labels("ws-1", "empty=,env=staging,zone=eu-1");
	ck_assert_int_eq(tu_query_int(db, "SELECT tier FROM workspaces"), 4);
}
END_TEST

/* KEY- removes that label and no other; removing one the workspace lacks is no error. */
START_TEST(label_removed_with_key_dash)
{
	static const char *const add[] = {"env=prod", "team=core", "a-=x", NULL};
	static const char *const rm[] = {"workspace", "set",     "ws-1",    "--label",
	                                 "env-",      "--label", "nosuch-", NULL};
	static const char *const rm_dash[] = {"workspace", "set", "ws-1", "--label", "a--", NULL};
	struct tu_run r;

	add_ws_labels("ws-1", "acme", add);
	add_ws_labels("ws-2", "acme", add);
	run_ok(&r, 0, rm);
	tu_run_free(&r);
	expect_labels("ws-1", "a-=x,team=core");
	expect_labels("ws-2", "a-=x,env=prod,team=core");
	run_ok(&r, 0, rm_dash); /* the key "a-" */
	tu_run_free(&r);
	expect_labels("ws-1", "team=core");
}
END_TEST

/* list --label: the workspaces that carry every pair given (AND), with --org too. */
START_TEST(list_selects_workspaces_with_every_label)
{
	static const char *const l1[] = {"env=prod", "team=core", NULL};
	static const char *const l2[] = {"env=prod", "team=web", NULL};
	static const char *const l3[] = {"env=dev", "team=core", NULL};
	static const char *const none[] = {NULL};
	static const char *const prod[] = {"workspace", "list", "--label", "env=prod", NULL};
	static const char *const prod_core[] = {"workspace", "list",      "--label", "env=prod",
	                                        "--label",   "team=core", NULL};
	static const char *const core[] = {"workspace", "list", "--label", "team=core", NULL};
	static const char *const core_other[] = {"workspace", "list",  "--label", "team=core",
	                                         "--org",     "other", NULL};
	static const char *const all[] = {"workspace", "list", NULL};
	char *v;

	add_ws_labels("ws-1", "acme", l1);
	add_ws_labels("ws-2", "acme", l2);
	add_ws_labels("ws-3", "other", l3);
	add_ws_labels("ws-4", "acme", none);
	v = listed(prod);
	ck_assert_str_eq(v, "ws-1,ws-2");
	free(v);
	v = listed(prod_core);
	ck_assert_str_eq(v, "ws-1");
	free(v);
	v = listed(core);
	ck_assert_str_eq(v, "ws-1,ws-3");
	free(v);
	v = listed(core_other);
	ck_assert_str_eq(v, "ws-3");
	free(v);
	v = listed(all);
	ck_assert_str_eq(v, "ws-1,ws-2,ws-4,ws-3");
	free(v);
}
END_TEST

/* A selection that matches nothing: the header alone, or no line at all in JSON; exit 0. */
START_TEST(list_with_no_match_is_empty)
{
	static const char *const l1[] = {"env=prod", "team=core", NULL};
	static const char *const wrong_value[] = {"workspace", "list", "--label", "env=dev", NULL};
	static const char *const half[] = {"workspace", "list",     "--label", "env=prod",
	                                   "--label",   "team=web", NULL};
	static const char *const json[] = {
	    "workspace", "list", "--label", "env=", "--format", "json", NULL};
	struct tu_run r;
	char *v;

	add_ws_labels("ws-1", "acme", l1);
	v = listed(wrong_value);
	ck_assert_str_eq(v, "");
	free(v);
	v = listed(half);
	ck_assert_str_eq(v, "");
	free(v);
	run_ok(&r, 0, json);
	ck_assert_str_eq(r.out, "");
	tu_run_free(&r);
}
END_TEST

/* The table's LABELS column is k=v,k2=v2 by key (bytewise), "-" without labels; in JSON,
 * "labels" is an object of strings, {} without labels. */
START_TEST(list_shows_labels_in_table_and_json)
{
	static const char *const l1[] = {"zone=eu-1", "env=prod", "a.b/c=", NULL};
	static const char *const none[] = {NULL};
	static const char *const table[] = {"workspace", "list", NULL};
	static const char *const json[] = {"workspace", "list", "--format", "json", NULL};
	struct tu_run r;
	json_t *o, *labels;
	char *line, *save = NULL;

	add_ws_labels("ws-1", "acme", l1);
	add_ws_labels("ws-2", "acme", none);
	run_ok(&r, 0, table);
	ck_assert_int_eq(tu_lines(r.out), 3);
	line = strtok_r(r.out, "\n", &save);
	ck_assert_msg(strstr(line, "HOST KEY ") && strcmp(line + strlen(line) - 8, "  LABELS") == 0,
	              "%s", line);
	line = strtok_r(NULL, "\n", &save);
	ck_assert_msg(strstr(line, FP "  a.b/c=,env=prod,zone=eu-1") != NULL, "%s", line);
	line = strtok_r(NULL, "\n", &save);
	ck_assert_msg(strstr(line, FP "  -") != NULL, "%s", line);
	tu_run_free(&r);

	run_ok(&r, 0, json);
	ck_assert_int_eq(tu_lines(r.out), 2);
	line = strtok_r(r.out, "\n", &save);
	o = json_loads(line, 0, NULL);
	ck_assert_msg(o != NULL, "%s", line);
	ck_assert_str_eq(json_string_value(json_object_get(o, "id")), "ws-1");
	labels = json_object_get(o, "labels");
	ck_assert_msg(json_is_object(labels) && json_object_size(labels) == 3, "%s", line);
	ck_assert_str_eq(json_string_value(json_object_get(labels, "zone")), "eu-1");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "env")), "prod");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "a.b/c")), "");
	ck_assert_msg(strstr(line, "\"labels\":{\"a.b/c\":\"\",\"env\":\"prod\","
	                           "\"zone\":\"eu-1\"}") != NULL,
	              "%s", line);
	json_decref(o);
	line = strtok_r(NULL, "\n", &save);
	o = json_loads(line, 0, NULL);
	ck_assert_msg(o != NULL, "%s", line);
	labels = json_object_get(o, "labels");
	ck_assert_msg(json_is_object(labels) && json_object_size(labels) == 0, "%s", line);
	json_decref(o);
	tu_run_free(&r);
}
END_TEST

/* At most 64 labels: add refuses 65 before the database; set is judged by what it leaves,
 * and refused whole (the tier too); SQL from any other writer is refused as well. One
 * command takes 128 --label at most. */
START_TEST(labels_are_at_most_64)
{
	char kv[66][16];
	const char *labels[67];
	const char *set_over[] = {"workspace", "set",     "ws-1",    "--tier",
	                          "2",         "--label", "extra=1", NULL};
	const char *set_swap[] = {"workspace", "set",     "ws-1",    "--label",
	                          "k00-",      "--label", "extra=1", NULL};
	const char *add_over[16 + 2 * 66] = {"workspace", "add",        "ws-2",   "--org", "acme",
	                                     "--host",    "h",          "--user", "u",     "--tier",
	                                     "3",         "--host-key", FP};
	struct tu_run r;

	for (int i = 0; i < 66; i++) {
		snprintf(kv[i], sizeof(kv[i]), "k%02d=v", i);
		labels[i] = kv[i];
	}
	labels[64] = NULL;
	add_ws_labels("ws-1", "acme", labels);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspace_labels"), 64);

	tu_broker(&r, db, NULL, set_over);
	ck_assert_msg(r.exit_code == 1 && tu_lines(r.err) == 1, "exit %d: %s", r.exit_code, r.err);
	ck_assert_msg(strstr(r.err, "would have 65 labels") && strstr(r.err, "--label KEY-"), "%s",
	              r.err);
	ck_assert_str_eq(r.out, "");
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspace_labels"), 64);
	ck_assert_int_eq(tu_query_int(db, "SELECT tier FROM workspaces"), 3);

	run_ok(&r, 0, set_swap);
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspace_labels WHERE key IN "
	                                  "('k00', 'extra')"),
	                 1);
	ck_assert_str_eq(tu_query_fails(db, "INSERT INTO workspace_labels VALUES ('ws-1', 'more', "
	                                    "'x')"),
	                 "EBL01");

	for (size_t i = 0, n = 13; i < 65; i++) {
		add_over[n++] = "--label";
		add_over[n++] = kv[i];
	}
	tu_broker(&r, db, NULL, add_over);
	ck_assert_msg(r.exit_code == 2 && tu_lines(r.err) == 1, "exit %d: %s", r.exit_code, r.err);
	ck_assert_msg(strstr(r.err, "at most 64 labels (65 given)"), "%s", r.err);
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspaces"), 1);

	/* set takes 128 --label at most: every label removed and as many set anew */
	char rm[129][16];
	const char *set_many[3 + 2 * 129 + 1] = {"workspace", "set", "ws-1"};
	for (size_t i = 0, n = 3; i < 129; i++) {
		snprintf(rm[i], sizeof(rm[i]), "r%03zu-", i);
		set_many[n++] = "--label";
		set_many[n++] = rm[i];
	}
	tu_broker(&r, db, NULL, set_many);
	ck_assert_msg(r.exit_code == 2 && tu_lines(r.err) == 1, "exit %d: %s", r.exit_code, r.err);
	ck_assert_msg(strstr(r.err, "--label given more than 128 times"), "%s", r.err);
	tu_run_free(&r);
	set_many[3 + 2 * 128] = NULL;
	run_ok(&r, 0, set_many);
	tu_run_free(&r);
}
END_TEST

static PGresult *exec_on(PGconn *c, const char *sql, ExecStatusType want)
{
	PGresult *res = PQexec(c, sql);

	ck_assert_msg(PQresultStatus(res) == want, "%s: %s", sql, PQresultErrorMessage(res));
	return res;
}

/* Two transactions adding the 64th label of one workspace at once: the second waits for the
 * first's commit, then counts its label too, and is refused. */
START_TEST(labels_limit_holds_when_writers_race)
{
	PGconn *c1 = PQconnectdb(db), *c2 = PQconnectdb(db);
	PGresult *res;
	char sql[256];
	long long deadline = kit_now_ms() + KIT_WAIT_MS;

	ck_assert(PQstatus(c1) == CONNECTION_OK && PQstatus(c2) == CONNECTION_OK);
	add_ws("ws-1", "acme");
	free(tu_query(db, "INSERT INTO workspace_labels SELECT 'ws-1', 'k' || i, 'v' "
	                  "FROM generate_series(1, 63) AS i"));
	PQclear(exec_on(c1, "BEGIN", PGRES_COMMAND_OK));
	PQclear(exec_on(c1, "INSERT INTO workspace_labels VALUES ('ws-1', 'one', 'x')",
	                PGRES_COMMAND_OK));
	PQclear(exec_on(c2, "BEGIN", PGRES_COMMAND_OK));
	ck_assert_int_eq(
	    PQsendQuery(c2, "INSERT INTO workspace_labels VALUES ('ws-1', 'two', 'x')"), 1);
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = "
	         "'Lock'",
	         PQbackendPID(c2));
	while (tu_query_int(db, sql) == 0) {
		ck_assert_msg(kit_now_ms() < deadline, "the second writer never waited");
		kit_sleep_ms(20);
	}
	PQclear(exec_on(c1, "COMMIT", PGRES_COMMAND_OK));
	res = PQgetResult(c2);
	ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "the second writer's insert: %s",
	              PQresStatus(PQresultStatus(res)));
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "EBL01");
	PQclear(res);
	while ((res = PQgetResult(c2)) != NULL)
		PQclear(res);
	PQfinish(c2);
	PQfinish(c1);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspace_labels"), 64);
}
END_TEST

/* Removing a workspace removes its labels, and only its. */
START_TEST(labels_go_with_their_workspace)
{
	static const char *const l[] = {"env=prod", "team=core", NULL};
	static const char *const rm[] = {"workspace", "remove", "ws-1", NULL};
	struct tu_run r;

	add_ws_labels("ws-1", "acme", l);
	add_ws_labels("ws-2", "acme", l);
	run_ok(&r, 0, rm);
	tu_run_free(&r);
	expect_labels("ws-1", "-");
	expect_labels("ws-2", "env=prod,team=core");
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspace_labels"), 2);
}
END_TEST

/* Each bad command line: a non-zero exit, exactly one line on stderr naming the problem,
 * nothing on stdout, and no change in the database. */
static const struct {
	const char *args[20];
	int exit_code;
	const char *says;
} bad_cli[] = {
    {{"workspace", "add", "ws-1", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP},
     1,
     "already exists"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "7",
      "--host-key", FP},
     2,
     "--tier"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", "SHA256:abc"},
     2,
     "SHA256:abc"},
    {{"workspace", "add", "ws/2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP},
     2,
     "ws/2"},
    {{"workspace", "add", "ws-2", "--host", "h", "--user", "u", "--tier", "3", "--host-key", FP},
     2,
     "--org is required"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "-oProxyCommand=x", "--user", "u",
      "--tier", "3", "--host-key", FP},
     2,
     "host"},
    {{"workspace", "set", "nope", "--tier", "2"}, 1, "no workspace \"nope\""},
    {{"workspace", "set", "ws-1"}, 2, "nothing to change"},
    {{"workspace", "set", "ws-1", "--org", "other"}, 2, "does not take --org"},
    {{"workspace", "remove", "nope"}, 1, "no workspace \"nope\""},
    {{"workspace", "list", "--format", "xml"}, 2, "--format"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP, "--label", "env=prod", "--label", "Env=x"},
     2,
     "label key \"Env\" is invalid"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP, "--label", "env=a/b"},
     2,
     "label value \"a/b\" of key \"env\" is invalid"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP, "--label", "env-"},
     2,
     "no labels to remove"},
    {{"workspace", "add", "ws-2", "--org", "acme", "--host", "h", "--user", "u", "--tier", "3",
      "--host-key", FP, "--label", "env=a", "--label", "env=b"},
     2,
     "key \"env\" is given twice"},
    {{"workspace", "set", "ws-1", "--tier", "2", "--label", "team=web", "--label", "env"},
     2,
     "neither KEY=VALUE"},
    {{"workspace", "set", "ws-1", "--tier", "2", "--label", "env=dev", "--label", "env-"},
     2,
     "key \"env\" is given twice"},
    {{"workspace", "set", "nope", "--label", "env=dev"}, 1, "no workspace \"nope\""},
    {{"workspace", "list", "--label", "env-"}, 2, "list selects by KEY=VALUE"},
    {{"workspace", "list", "--label", "env"}, 2, "neither KEY=VALUE"},
    {{"workspace", "remove", "ws-1", "--label", "env=prod"}, 2, "does not take --label"},
    {{"workspace", "frobnicate"}, 2, "unknown workspace command"},
    {{"token", "create", "--org", "acme", "--admin"}, 2, "exactly one of"},
    {{"token", "create"}, 2, "exactly one of"},
    {{"token", "create", "--workspace", "nope"}, 1, "no workspace \"nope\""},
    {{"token", "create", "--admin", "--expires-in", "1y"}, 2, "--expires-in"},
    {{"token", "create", "--admin", "--expires-in", "20000d"}, 2, "out of range"},
    {{"token", "revoke", "ebk_zzzzzzzz"}, 1, "no token"},
    {{"token", "revoke", "12abc"}, 2, "neither a token id nor a token prefix"},
    {{"migrate", "extra"}, 2, "no arguments"},
    {{"launch"}, 2, "unknown command"},
};

START_TEST(bad_input_is_one_line_and_writes_nothing)
{
	struct tu_run r;
	long long before, after;
	const char *sum = "SELECT (SELECT count(*) FROM workspaces) * 1000 + "
	                  "(SELECT count(*) FROM api_tokens) + "
	                  "(SELECT coalesce(sum(tier), 0) * 100 FROM workspaces) + "
	                  "(SELECT coalesce(sum(length(key || value) + 1), 0) * 10000 "
	                  "FROM workspace_labels)";
	static const char *const labels[] = {"env=prod", NULL};

	add_ws_labels("ws-1", "acme", labels);
	before = tu_query_int(db, sum);
	tu_broker(&r, db, NULL, bad_cli[_i].args);
	ck_assert_msg(r.exit_code == bad_cli[_i].exit_code, "case %d: exit %d: %s", _i, r.exit_code,
	              r.err);
	ck_assert_msg(tu_lines(r.err) == 1, "case %d: stderr not one line: %s", _i, r.err);
	ck_assert_msg(strncmp(r.err, "exec-broker: ", 13) == 0, "case %d: %s", _i, r.err);
	ck_assert_msg(strstr(r.err, bad_cli[_i].says) != NULL, "case %d: \"%s\" lacks \"%s\"", _i,
	              r.err, bad_cli[_i].says);
	ck_assert_msg(r.out[0] == '\0', "case %d: stdout: %s", _i, r.out);
	tu_run_free(&r);
	after = tu_query_int(db, sum);
	ck_assert_int_eq(before, after);
}
END_TEST

static char *create_token(const char *const args[])
{
	struct tu_run r;
	char *t;

	run_ok(&r, 0, args);
	ck_assert_int_eq(tu_lines(r.out), 1);
	r.out[strcspn(r.out, "\n")] = '\0';
	ck_assert_msg(token_check_format(r.out, strlen(r.out)) == 0, "token \"%s\"", r.out);
	ck_assert_ptr_null(strstr(r.err, r.out)); /* printed once: not again on stderr */
	t = strdup(r.out);
	tu_run_free(&r);
	return t;
}

/* The secret is printed once and stored only as its SHA-256: neither the token nor its
 * secret part appears anywhere in a full dump of the database. */
START_TEST(token_secret_never_reaches_the_database)
{
	static const char *const create[] = {"token",        "create", "--workspace",
	                                     "ws-1",         "--name", "ci job",
	                                     "--expires-in", "30d",    NULL};
	const char *pg_dump_argv[] = {"pg_dump", "--data-only", "--inserts", db, NULL};
	char pg_dump[256], sql[512], hash[TOKEN_HASH_HEX_LEN + 1], *dump, *dump_err, *v;
	const char *bindir = th_pg_bindir();
	int status;
	char *tok;

	add_ws("ws-1", "acme");
	tok = create_token(create);
	token_hash_hex(tok, strlen(tok), hash);
	snprintf(sql, sizeof(sql),
	         "SELECT kind || ' ' || workspace_id || ' ' || name || ' ' || prefix || ' ' || "
	         "(expires_at > now() + interval '29 days') FROM api_tokens "
	         "WHERE secret_sha256 = decode('%s', 'hex')",
	         hash);
	v = tu_query(db, sql);
	char want[128];
	snprintf(want, sizeof(want), "workspace ws-1 ci job %.12s true", tok);
	ck_assert_str_eq(v, want);
	free(v);

	ck_assert_ptr_nonnull(bindir);
	snprintf(pg_dump, sizeof(pg_dump), "%s/pg_dump", bindir);
	pg_dump_argv[0] = pg_dump;
	ck_assert_int_eq(kit_run(pg_dump_argv, NULL, NULL, &dump, &dump_err, &status), 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pg_dump: %s", dump_err);
	ck_assert_ptr_nonnull(strstr(dump, "INSERT INTO public.api_tokens")); /* it dumped rows */
	ck_assert_ptr_nonnull(strstr(dump, "ci job"));
	ck_assert_ptr_null(strstr(dump, tok));
	ck_assert_ptr_null(strstr(dump, tok + TOKEN_PUBLIC_LEN)); /* the secret part alone */
	free(dump);
	free(dump_err);
	free(tok);
}
END_TEST

START_TEST(token_list_and_revoke)
{
	static const char *const create_org[] = {"token", "create", "--org", "acme", NULL};
	static const char *const create_admin[] = {"token",  "create", "--admin",
	                                           "--name", "oncall", NULL};
	static const char *const list[] = {"token", "list", NULL};
	static const char *const list_json[] = {"token", "list", "--format", "json", NULL};
	const char *revoke_prefix[] = {"token", "revoke", NULL, NULL};
	static const char *const revoke_id[] = {"token", "revoke", "1", NULL};
	char prefix[TOKEN_PUBLIC_LEN + 1];
	struct tu_run r;
	char *t1, *t2, *v;

	t1 = create_token(create_org);
	t2 = create_token(create_admin);
	run_ok(&r, 0, list);
	ck_assert_int_eq(tu_lines(r.out), 3);
	ck_assert_ptr_null(strstr(r.out, t1 + 4));
	ck_assert_ptr_null(strstr(r.out, t2 + 4));
	token_public_prefix(t2, prefix);
	ck_assert_ptr_nonnull(strstr(r.out, prefix));
	ck_assert_ptr_nonnull(strstr(r.out, "oncall"));
	tu_run_free(&r);

	run_ok(&r, 0, list_json);
	ck_assert_int_eq(tu_lines(r.out), 2);
	ck_assert_ptr_nonnull(strstr(r.out, "\"kind\":\"admin\""));
	ck_assert_ptr_nonnull(strstr(r.out, "\"scope\":\"acme\""));
	ck_assert_ptr_null(strstr(r.out, t1 + 4));
	tu_run_free(&r);

	run_ok(&r, 0, revoke_id);
	ck_assert_ptr_nonnull(strstr(r.out, "revoked token 1"));
	tu_run_free(&r);
	run_ok(&r, 0, revoke_id); /* again: says so, still succeeds */
	ck_assert_ptr_nonnull(strstr(r.out, "already revoked"));
	tu_run_free(&r);
	revoke_prefix[2] = prefix;
	run_ok(&r, 0, revoke_prefix);
	tu_run_free(&r);
	v = tu_query(db, "SELECT string_agg(kind || ':' || (revoked_at IS NOT NULL), ',' "
	                 "ORDER BY id) FROM api_tokens");
	ck_assert_str_eq(v, "org:true,admin:true");
	free(v);
	run_ok(&r, 0, list);
	ck_assert_int_eq(tu_lines(r.out), 3);
	ck_assert_ptr_nonnull(strstr(r.out, "revoked"));
	ck_assert_ptr_null(strstr(r.out, "active"));
	tu_run_free(&r);
	free(t1);
	free(t2);
}
END_TEST

START_TEST(removing_a_workspace_removes_its_tokens)
{
	static const char *const create[] = {"token", "create", "--workspace", "ws-1", NULL};
	static const char *const rm[] = {"workspace", "remove", "ws-1", NULL};
	struct tu_run r;

	add_ws("ws-1", "acme");
	add_ws("ws-2", "acme");
	free(create_token(create));
	free(create_token(create));
	run_ok(&r, 0, rm);
	ck_assert_ptr_nonnull(strstr(r.out, "its 2 token(s)"));
	tu_run_free(&r);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM api_tokens"), 0);
	ck_assert_int_eq(tu_query_int(db, "SELECT count(*) FROM workspaces"), 1);
}
END_TEST

START_TEST(hostkey_matches_ssh_keygen)
{
	char port[16];
	const char *const args[] = {"workspace", "hostkey", "127.0.0.1", "--port", port, NULL};
	char want[128];
	struct tu_run r;

	snprintf(port, sizeof(port), "%d", th.sshd.port);
	snprintf(want, sizeof(want), "%s\n", th.sshd.host_key_fp);
	tu_broker(&r, NULL, NULL, args);
	ck_assert_msg(r.exit_code == 0, "%s", r.err);
	ck_assert_str_eq(r.out, want);
	ck_assert_ptr_nonnull(strstr(r.err, "ED25519"));
	tu_run_free(&r);
}
END_TEST

START_TEST(hostkey_of_a_closed_port_fails_clearly)
{
	char port[16];
	const char *const args[] = {"workspace", "hostkey", "127.0.0.1", "--port", port, NULL};
	struct tu_run r;

	th_sshd_stop(&th.sshd);
	snprintf(port, sizeof(port), "%d", th.sshd.port);
	tu_broker(&r, NULL, NULL, args);
	ck_assert_int_eq(th_sshd_restart(&th.sshd), 0);
	ck_assert_int_eq(r.exit_code, 1);
	ck_assert_int_eq(tu_lines(r.err), 1);
	ck_assert_msg(strstr(r.err, "cannot connect to 127.0.0.1 port") && strstr(r.err, "refused"),
	              "%s", r.err);
	ck_assert_str_eq(r.out, "");
	tu_run_free(&r);
}
END_TEST

START_TEST(config_command_redacts_and_reports_sources)
{
	static const char *const args[] = {"config", NULL};
	static const char *const env[] = {"EXEC_BROKER_LISTEN=127.0.0.1:9999", NULL};
	struct tu_run r;

	tu_broker(&r, "host=/tmp port=1 user=eb password=topsecret-123 dbname=eb", env, args);
	ck_assert_int_eq(r.exit_code, 0);
	ck_assert_ptr_null(strstr(r.out, "topsecret-123"));
	ck_assert_ptr_nonnull(strstr(r.out, "password='********'"));
	ck_assert_ptr_nonnull(
	    strstr(r.out, "listen = 127.0.0.1:9999  # environment EXEC_BROKER_LISTEN"));
	tu_run_free(&r);
}
END_TEST

START_TEST(bad_config_stops_before_doing_anything)
{
	static const char *const args[] = {"workspace", "list", NULL};
	char path[] = "/tmp/eb-cli-conf-XXXXXX", var[64];
	const char *env[] = {var, NULL};
	struct tu_run r;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs("log_level = info\npool_size = 3\n", f);
	fclose(f);
	snprintf(var, sizeof(var), "EXEC_BROKER_CONFIG=%s", path);
	/* EXEC_BROKER_CONFIG from env[] overrides the /dev/null tu_broker sets. */
	tu_broker(&r, db, env, args);
	unlink(path);
	ck_assert_int_eq(r.exit_code, 2);
	ck_assert_int_eq(tu_lines(r.err), 1);
	ck_assert_msg(strstr(r.err, path) && strstr(r.err, ":2: unknown setting \"pool_size\""),
	              "%s", r.err);
	ck_assert_str_eq(r.out, "");
	tu_run_free(&r);
}
END_TEST

START_TEST(every_command_has_help)
{
	static const char *const cmds[][3] = {{"--help"},
	                                      {"migrate", "--help"},
	                                      {"workspace", "--help"},
	                                      {"workspace", "add", "--help"},
	                                      {"token", "--help"},
	                                      {"token", "create", "--help"},
	                                      {"config", "--help"},
	                                      {"version"}};
	struct tu_run r;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		tu_broker(&r, NULL, NULL, cmds[i]);
		ck_assert_msg(r.exit_code == 0, "%s %s: %d", cmds[i][0], cmds[i][1], r.exit_code);
		ck_assert_msg(strlen(r.out) > 10, "%s: no output", cmds[i][0]);
		tu_run_free(&r);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("cli");
	int failed;

	if (th_setup(TH_PG | TH_SSHD) != 0)
		return EXIT_FAILURE;
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, fresh_db, NULL);
	tcase_add_test(tc, workspace_round_trip);
	tcase_add_test(tc, labels_round_trip);
	tcase_add_test(tc, label_removed_with_key_dash);
	tcase_add_test(tc, list_selects_workspaces_with_every_label);
	tcase_add_test(tc, list_with_no_match_is_empty);
	tcase_add_test(tc, list_shows_labels_in_table_and_json);
	tcase_add_test(tc, labels_are_at_most_64);
	tcase_add_test(tc, labels_limit_holds_when_writers_race);
	tcase_add_test(tc, labels_go_with_their_workspace);
	tcase_add_loop_test(tc, bad_input_is_one_line_and_writes_nothing, 0,
	                    sizeof(bad_cli) / sizeof(bad_cli[0]));
	tcase_add_test(tc, token_secret_never_reaches_the_database);
	tcase_add_test(tc, token_list_and_revoke);
	tcase_add_test(tc, removing_a_workspace_removes_its_tokens);
	tcase_add_test(tc, hostkey_matches_ssh_keygen);
	tcase_add_test(tc, hostkey_of_a_closed_port_fails_clearly);
	tcase_add_test(tc, config_command_redacts_and_reports_sources);
	tcase_add_test(tc, bad_config_stops_before_doing_anything);
	tcase_add_test(tc, every_command_has_help);
	suite_add_tcase(s, tc);
	failed = tu_run_suite(s);
	th_teardown();
	return failed;
}
