/* client/exec_args.c: exec's command line: its --help, the parsing of its options and of
 * WORKSPACE -- ARGV..., and the request body they make. */
#include "client/exec_args.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/common.h"
#include "client/detached.h"
#include "common/err.h"
#include "common/utf8.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker exec [--url URL] [--token-file FILE] [--timeout S]\n"
	    "                        [--env NAME=VALUE]... [--cwd DIR] [--stdin-file FILE | -i]\n"
	    "                        [--break-glass-reason TEXT] [--json]\n"
	    "                        [--detach [--name NAME]] WORKSPACE -- ARGV...\n"
	    "       exec-broker exec [OPTIONS] (--org ORG (--label KEY=VALUE... | --all)\n"
	    "                        | --workspaces ID,ID...) [--max-concurrency N|N%%]\n"
	    "                        [--max-errors N|N%%] [--yes] -- ARGV...\n"
	    "\n"
	    "Runs ARGV on WORKSPACE through the broker's HTTP API (POST\n"
	    "/v1/workspaces/WORKSPACE/exec), exactly as given: no shell is added. The remote\n"
	    "stdout and stderr are written to this process's stdout and stderr as they\n"
	    "arrive, byte for byte.\n"
	    "  --url URL            the broker (default " CLIENT_DEFAULT_URL "), http:// or\n"
	    "                       https://\n"
	    "  --cacert FILE        https: the CA certificates (PEM) the broker's must chain\n"
	    "                       to (default: the system's)\n"
	    "  --token-file FILE    the API token: the file's first line; otherwise the\n"
	    "                       environment variable " CLIENT_TOKEN_ENV "\n"
	    "  --timeout S          seconds the command may run (default: the broker's)\n"
	    "  --env NAME=VALUE     set an environment variable (repeatable)\n"
	    "  --cwd DIR            absolute directory to run in\n"
	    "  --stdin-file FILE    the command's stdin (default: empty)\n"
	    "  -i, --stdin          read this process's stdin to its end and pass it on\n"
	    "  --break-glass-reason TEXT\n"
	    "                       why an admin token is used (audited; required for one)\n"
	    "  --json               print the NDJSON frames, one per line, instead of\n"
	    "                       decoding them (with --detach: the exec object)\n"
	    "  --detach             start the command and return: print its exec_id on\n"
	    "                       stdout and exit 0 once it runs; see exec-broker ps, logs,\n"
	    "                       kill and wait\n"
	    "  --name NAME          with --detach: a name for it, 1 to 64 of A-Z a-z 0-9 . _ -,\n"
	    "                       unique among the workspace's running execs\n"
	    "\n"
	    "With --org or --workspaces, ARGV runs on many workspaces as one batch (POST\n"
	    "/v1/batches). Each line of their output is written whole, prefixed by its\n"
	    "workspace (\"ws-1: \"), stdout's to stdout and stderr's to stderr; then a table\n"
	    "of the outcomes (WORKSPACE STATUS EXIT DURATION ERROR) and a line with the\n"
	    "counts on stderr.\n"
	    "  --org ORG            the workspaces of org ORG that carry every --label\n"
	    "  --label KEY=VALUE    a label they must carry (repeatable)\n"
	    "  --all                every workspace of ORG; on a terminal, asks first\n"
	    "  --workspaces ID,ID...\n"
	    "                       these workspaces (repeatable)\n"
	    "  --max-concurrency N|N%%\n"
	    "                       how many run at once (default: the broker's)\n"
	    "  --max-errors N|N%%    failures after which no more start (default: the broker's)\n"
	    "  --yes                run on --all without asking\n"
	    "\n"
	    "Exit status (with --detach: 0 once it started, or one of 201-206):\n"
	    "  0-255   the remote command's exit code\n"
	    "  128+N   the remote command was killed by signal N (e.g. 137 for KILL)\n"
	    "  124     the command ran past its timeout (exec_timeout)\n"
	    "  201     the command line is wrong, or a local file cannot be read\n"
	    "  202     the broker cannot be reached (no HTTP response)\n"
	    "  203     the token was refused (401) or may not run this (403)\n"
	    "  204     no such workspace, or not one this token reaches (404)\n"
	    "  205     the workspace host could not be reached or its SSH connection broke\n"
	    "          (502, or transport_error during the run)\n"
	    "  206     any other API error (its code and message are printed)\n"
	    "  207     the stream ended without a last frame (the broker died); the\n"
	    "          command's outcome is unknown\n"
	    "A batch exits 0 when the command exited 0 on every workspace, 1 when not (the\n"
	    "table says where), or with one of 201-207 for the batch as a whole.\n"
	    "API errors are printed as one line on stderr: exec-broker: CODE: MESSAGE.\n");
}

enum {
	O_URL = 1,
	O_CACERT,
	O_TOKEN_FILE,
	O_TIMEOUT,
	O_ENV,
	O_CWD,
	O_STDIN_FILE,
	O_REASON,
	O_JSON,
	O_DETACH,
	O_NAME,
	O_ORG,
	O_LABEL,
	O_ALL,
	O_WORKSPACES,
	O_MAX_CONCURRENCY,
	O_MAX_ERRORS,
	O_YES,
	O_HELP
};

static const struct option exec_opts[] = {
    {"url", required_argument, NULL, O_URL},
    {"cacert", required_argument, NULL, O_CACERT},
    {"token-file", required_argument, NULL, O_TOKEN_FILE},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"env", required_argument, NULL, O_ENV},
    {"cwd", required_argument, NULL, O_CWD},
    {"stdin-file", required_argument, NULL, O_STDIN_FILE},
    {"stdin", no_argument, NULL, 'i'},
    {"break-glass-reason", required_argument, NULL, O_REASON},
    {"json", no_argument, NULL, O_JSON},
    {"detach", no_argument, NULL, O_DETACH},
    {"name", required_argument, NULL, O_NAME},
    {"org", required_argument, NULL, O_ORG},
    {"label", required_argument, NULL, O_LABEL},
    {"all", no_argument, NULL, O_ALL},
    {"workspaces", required_argument, NULL, O_WORKSPACES},
    {"max-concurrency", required_argument, NULL, O_MAX_CONCURRENCY},
    {"max-errors", required_argument, NULL, O_MAX_ERRORS},
    {"yes", no_argument, NULL, O_YES},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0}};

/* --env NAME=VALUE or --label KEY=VALUE (opt, what) into obj, as UTF-8 strings. A second
 * value for a name replaces the first, unless once. 0 or CLIENT_EXIT_USAGE. */
static int take_pair(const char *opt, const char *what, const char *arg, json_t *obj, bool once)
{
	const char *eq = strchr(arg, '=');
	json_t *v;
	char *name = NULL;
	int rc = CLIENT_EXIT_USAGE;

	if (eq == NULL || eq == arg) {
		cli_error("exec: %s takes %s=VALUE (got \"%s\")", opt, what, arg);
		goto out;
	}
	name = strndup(arg, (size_t)(eq - arg));
	if (name == NULL) {
		cli_error("exec: out of memory");
		goto out;
	}
	if (once && json_object_get(obj, name) != NULL) {
		cli_error("exec: %s %s is given twice", opt, name);
		goto out;
	}
	v = client_utf8_string(eq + 1, strlen(eq + 1));
	/* jansson refuses a name that is not UTF-8, and takes v whatever it returns. */
	if (v == NULL || json_object_set_new(obj, name, v) != 0) {
		cli_error("exec: %s %s: names and values must be UTF-8 text", opt, name);
		goto out;
	}
	rc = 0;
out:
	free(name);
	return rc;
}

/* --workspaces ID,ID...: appended to a->workspaces. 0 or CLIENT_EXIT_USAGE. */
static int take_workspaces(const char *arg, struct exec_args *a)
{
	const char *p = arg;

	for (;;) {
		size_t n = strcspn(p, ",");
		json_t *id = n > 0 ? client_utf8_string(p, n) : NULL;
		if (id == NULL || json_array_append_new(a->workspaces, id) != 0) {
			cli_error("exec: --workspaces takes workspace ids separated by commas, in "
			          "UTF-8 (got \"%s\")",
			          arg);
			return CLIENT_EXIT_USAGE;
		}
		if (p[n] == '\0')
			return 0;
		p += n + 1;
	}
}

/* --max-concurrency or --max-errors (opt): N from min, or N% from min% to 100%, as the
 * API takes them: an integer or the string "N%". The broker checks the bounds it has. 0 or
 * CLIENT_EXIT_USAGE. */
static int take_limit(const char *opt, const char *arg, long min, json_t **out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(arg, &end, 10);
	json_decref(*out);
	*out = NULL;
	if (arg[0] >= '0' && arg[0] <= '9' && errno == 0 && n >= min && n <= INT_MAX) {
		if (*end == '\0')
			*out = json_integer(n);
		else if (strcmp(end, "%") == 0 && n <= 100)
			*out = json_string(arg);
	}
	if (*out != NULL)
		return 0;
	cli_error("exec: %s takes a count (%ld or more) or a percentage (%ld%% to 100%%) (got "
	          "\"%s\")",
	          opt, min, min, arg);
	return CLIENT_EXIT_USAGE;
}

/* One option (getopt_long said it is one of exec_opts). 0 or CLIENT_EXIT_USAGE. */
static int take_option(int opt, const char *arg, struct exec_args *a)
{
	switch (opt) {
	case O_URL:
		a->url = arg;
		return 0;
	case O_CACERT:
		a->cacert = arg;
		return 0;
	case O_TOKEN_FILE:
		a->token_file = arg;
		return 0;
	case O_TIMEOUT:
		return client_timeout_parse("exec", arg, &a->timeout_s);
	case O_ENV:
		return take_pair("--env", "NAME", arg, a->env, false);
	case O_CWD:
		a->cwd = arg;
		return 0;
	case O_STDIN_FILE:
		a->stdin_file = arg;
		return 0;
	case 'i':
		a->stdin_all = true;
		return 0;
	case O_REASON:
		a->reason = arg;
		return 0;
	case O_JSON:
		a->json = true;
		return 0;
	case O_DETACH:
		a->detach = true;
		return 0;
	case O_NAME:
		a->name = arg;
		return 0;
	case O_ORG:
		a->org = arg;
		return 0;
	case O_LABEL:
		return take_pair("--label", "KEY", arg, a->labels, true);
	case O_ALL:
		a->all = true;
		return 0;
	case O_WORKSPACES:
		return take_workspaces(arg, a);
	case O_MAX_CONCURRENCY:
		return take_limit("--max-concurrency", arg, 1, &a->max_concurrency);
	case O_MAX_ERRORS:
		return take_limit("--max-errors", arg, 0, &a->max_errors);
	case O_YES:
		a->yes = true;
		return 0;
	default:
		abort(); /* an option of the table that this switch does not know */
	}
}

/* --name: only with --detach, and as the API takes it. 0 or CLIENT_EXIT_USAGE. */
static int check_name(const struct exec_args *a)
{
	if (a->name == NULL)
		return 0;
	if (!a->detach) {
		cli_error("exec: --name names a detached exec: give --detach too");
		return CLIENT_EXIT_USAGE;
	}
	if (!detached_name_valid(a->name)) {
		cli_error("exec: --name takes 1 to 64 of A-Z a-z 0-9 . _ - (got \"%s\")", a->name);
		return CLIENT_EXIT_USAGE;
	}
	return 0;
}

static bool utf8_valid(const char *s)
{
	bool incomplete;

	return utf8_valid_prefix((const unsigned char *)s, strlen(s), &incomplete) == strlen(s);
}

/* Which workspaces a batch runs on: exactly one way of choosing them. 0 or
 * CLIENT_EXIT_USAGE. */
static int check_batch(const struct exec_args *a)
{
	const char *why = NULL;
	size_t nlabels = json_object_size(a->labels);

	if (!a->batch) {
		if (a->max_concurrency != NULL || a->max_errors != NULL || a->yes)
			why =
			    "--max-concurrency, --max-errors and --yes are for a batch: give --org "
			    "or --workspaces";
	} else if (json_array_size(a->workspaces) > 0) {
		if (a->org != NULL || nlabels > 0 || a->all)
			why =
			    "--workspaces names the workspaces itself: not with --org, --label or "
			    "--all";
	} else if (a->org == NULL) {
		why = "--label and --all choose among an org's workspaces: give --org ORG";
	} else if (a->org[0] == '\0' || !utf8_valid(a->org)) {
		why = "--org takes an org id in UTF-8";
	} else if (nlabels == 0 && !a->all) {
		why = "--org takes --label KEY=VALUE (repeatable) or --all (every workspace of "
		      "the org)";
	} else if (nlabels > 0 && a->all) {
		why = "give --label or --all, not both";
	}
	if (why == NULL && a->batch && (a->detach || a->name != NULL))
		why = "--detach and --name are for one workspace, not a batch";
	if (why == NULL)
		return 0;
	cli_error("exec: %s", why);
	return CLIENT_EXIT_USAGE;
}

/* WORKSPACE (none for a batch) between the options and "--" (at dd), and ARGV after it.
 * 0 or CLIENT_EXIT_USAGE. */
static int take_positionals(int argc, char **argv, int dd, struct exec_args *a)
{
	const char *synopsis = a->batch ? "exec-broker exec --org ORG --label KEY=VALUE -- ARGV..."
	                                : "exec-broker exec WORKSPACE -- ARGV...";

	if (dd - optind != (a->batch ? 0 : 1)) {
		if (dd - optind == 0)
			cli_error("exec: missing the workspace (%s)", synopsis);
		else if (a->batch)
			cli_error("exec: unexpected argument \"%s\" before --: a batch takes no "
			          "WORKSPACE (%s)",
			          argv[optind], synopsis);
		else
			cli_error("exec: unexpected argument \"%s\" before -- (%s)",
			          argv[optind + 1], synopsis);
		return CLIENT_EXIT_USAGE;
	}
	a->ws = a->batch ? NULL : argv[optind];
	if (dd >= argc - 1) {
		if (a->batch)
			cli_error("exec: missing the command (%s)", synopsis);
		else
			cli_error("exec: missing the command: exec-broker exec %s -- ARGV...",
			          a->ws);
		return CLIENT_EXIT_USAGE;
	}
	a->argv = argv + dd + 1;
	a->argc = argc - dd - 1;
	return 0;
}

int exec_args_parse(int argc, char **argv, struct exec_args *a)
{
	int dd, opt, rc;

	memset(a, 0, sizeof(*a));
	a->url = CLIENT_DEFAULT_URL;
	a->timeout_s = -1;
	a->env = json_object();
	a->labels = json_object();
	a->workspaces = json_array();
	if (a->env == NULL || a->labels == NULL || a->workspaces == NULL) {
		cli_error("exec: out of memory");
		return CLIENT_EXIT_USAGE;
	}
	/* Options end at "--": what follows is the remote argv, whatever it looks like. */
	for (dd = 1; dd < argc && strcmp(argv[dd], "--") != 0; dd++)
		;
	optind = 0; /* glibc: a full re-initialisation, whoever parsed before */
	while ((opt = getopt_long(dd, argv, "i", exec_opts, NULL)) != -1) {
		if (opt == O_HELP) {
			usage(stdout);
			return CLI_PARSED_HELP;
		}
		if (opt == '?' || opt == ':') {
			usage(stderr); /* getopt_long has said what it did not know */
			return CLIENT_EXIT_USAGE;
		}
		rc = take_option(opt, optarg, a);
		if (rc != 0)
			return rc;
	}
	a->batch = a->org != NULL || json_object_size(a->labels) > 0 || a->all ||
	           json_array_size(a->workspaces) > 0;
	rc = check_batch(a);
	if (rc == 0)
		rc = take_positionals(argc, argv, dd, a);
	if (rc != 0)
		return rc;
	if (a->stdin_file != NULL && a->stdin_all) {
		cli_error("exec: give --stdin-file or -i, not both");
		return CLIENT_EXIT_USAGE;
	}
	return check_name(a);
}

void exec_args_free(struct exec_args *a)
{
	json_decref(a->env);
	json_decref(a->labels);
	json_decref(a->workspaces);
	json_decref(a->max_concurrency);
	json_decref(a->max_errors);
	a->env = a->labels = a->workspaces = a->max_concurrency = a->max_errors = NULL;
}

/* The command's stdin into o: as text when it is UTF-8 without NULs, else as base64.
 * 0 or EB_ERR_NOMEM. */
static int body_stdin(json_t *o, const char *in, size_t inlen)
{
	json_t *s = memchr(in, '\0', inlen) == NULL ? client_utf8_string(in, inlen) : NULL;
	char *b64;

	if (s != NULL)
		return json_object_set_new(o, "stdin", s) == 0 ? 0 : EB_ERR_NOMEM;
	b64 = malloc(4 * ((inlen + 2) / 3) + 1);
	if (b64 == NULL)
		return EB_ERR_NOMEM;
	EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)in, (int)inlen);
	json_object_set_new(o, "stdin_base64", json_string(b64));
	explicit_bzero(b64, strlen(b64));
	free(b64);
	return 0;
}

/* A batch's target and limits into o. 0 or EB_ERR_NOMEM. */
static int body_batch(json_t *o, const struct exec_args *a)
{
	json_t *target = json_object();
	int rc = 0;

	if (target == NULL)
		return EB_ERR_NOMEM;
	if (json_array_size(a->workspaces) > 0) {
		rc |= json_object_set(target, "workspaces", a->workspaces);
	} else {
		rc |= json_object_set_new(target, "org", json_string(a->org));
		if (a->all)
			rc |= json_object_set_new(target, "all", json_true());
		else
			rc |= json_object_set(target, "labels", a->labels);
	}
	rc |= json_object_set_new(o, "target", target);
	if (a->max_concurrency != NULL)
		rc |= json_object_set(o, "max_concurrency", a->max_concurrency);
	if (a->max_errors != NULL)
		rc |= json_object_set(o, "max_errors", a->max_errors);
	return rc == 0 ? 0 : EB_ERR_NOMEM;
}

int exec_args_body(const struct exec_args *a, const char *in, size_t inlen, char **body)
{
	json_t *o = json_object(), *av = json_array();
	int rc = CLIENT_EXIT_USAGE;

	*body = NULL;
	if (o == NULL || av == NULL)
		goto nomem;
	for (int i = 0; i < a->argc; i++) {
		json_t *s = client_utf8_string(a->argv[i], strlen(a->argv[i]));
		if (s == NULL) {
			cli_error("exec: argument %d of the command is not UTF-8 (the API carries "
			          "argv as text; pass bytes through stdin)",
			          i + 1);
			goto out;
		}
		json_array_append_new(av, s);
	}
	json_object_set(o, "argv", av);
	if (a->detach)
		json_object_set_new(o, "detach", json_true());
	if (a->name != NULL)
		json_object_set_new(o, "name", json_string(a->name));
	if (a->timeout_s >= 0)
		json_object_set_new(o, "timeout_s", json_integer(a->timeout_s));
	if (json_object_size(a->env) > 0)
		json_object_set(o, "env", a->env);
	if (a->cwd != NULL) {
		json_t *s = client_utf8_string(a->cwd, strlen(a->cwd));
		if (s == NULL) {
			cli_error("exec: --cwd is not UTF-8");
			goto out;
		}
		json_object_set_new(o, "cwd", s);
	}
	if (in != NULL && body_stdin(o, in, inlen) != 0)
		goto nomem;
	if (a->batch && body_batch(o, a) != 0)
		goto nomem;
	*body = json_dumps(o, JSON_COMPACT);
	if (*body == NULL)
		goto nomem;
	rc = 0;
	goto out;
nomem:
	cli_error("exec: out of memory");
out:
	json_decref(av);
	json_decref(o);
	return rc;
}
