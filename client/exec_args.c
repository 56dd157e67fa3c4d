/* client/exec_args.c: exec's command line: its --help, the parsing of its options and of
 * WORKSPACE -- ARGV..., and the request body they make. */
#include "client/exec_args.h"

#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/common.h"
#include "client/detached.h"
#include "common/err.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: exec-broker exec [--url URL] [--token-file FILE] [--timeout S]\n"
	    "                        [--env NAME=VALUE]... [--cwd DIR] [--stdin-file FILE | -i]\n"
	    "                        [--break-glass-reason TEXT] [--json]\n"
	    "                        [--detach [--name NAME]] WORKSPACE -- ARGV...\n"
	    "\n"
	    "Runs ARGV on WORKSPACE through the broker's HTTP API (POST\n"
	    "/v1/workspaces/WORKSPACE/exec), exactly as given: no shell is added. The remote\n"
	    "stdout and stderr are written to this process's stdout and stderr as they\n"
	    "arrive, byte for byte.\n"
	    "  --url URL            the broker (default " CLIENT_DEFAULT_URL "; http only)\n"
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
	    "API errors are printed as one line on stderr: exec-broker: CODE: MESSAGE.\n");
}

enum {
	O_URL = 1,
	O_TOKEN_FILE,
	O_TIMEOUT,
	O_ENV,
	O_CWD,
	O_STDIN_FILE,
	O_REASON,
	O_JSON,
	O_DETACH,
	O_NAME,
	O_HELP
};

static const struct option exec_opts[] = {{"url", required_argument, NULL, O_URL},
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
                                          {"help", no_argument, NULL, O_HELP},
                                          {NULL, 0, NULL, 0}};

/* --env NAME=VALUE. 0 or CLIENT_EXIT_USAGE. */
static int take_env(const char *arg, struct exec_args *a)
{
	const char *eq = strchr(arg, '=');
	json_t *v;
	char *name;

	if (eq == NULL || eq == arg) {
		cli_error("exec: --env takes NAME=VALUE (got \"%s\")", arg);
		return CLIENT_EXIT_USAGE;
	}
	v = client_utf8_string(eq + 1, strlen(eq + 1));
	name = strndup(arg, (size_t)(eq - arg));
	if (v == NULL || name == NULL || json_object_set_new(a->env, name, v) != 0) {
		cli_error("exec: --env %s: names and values must be UTF-8 text",
		          name != NULL ? name : "");
		free(name);
		return CLIENT_EXIT_USAGE;
	}
	free(name);
	return 0;
}

/* One option (getopt_long said it is one of exec_opts). 0 or CLIENT_EXIT_USAGE. */
static int take_option(int opt, const char *arg, struct exec_args *a)
{
	switch (opt) {
	case O_URL:
		a->url = arg;
		return 0;
	case O_TOKEN_FILE:
		a->token_file = arg;
		return 0;
	case O_TIMEOUT:
		return client_timeout_parse("exec", arg, &a->timeout_s);
	case O_ENV:
		return take_env(arg, a);
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

/* WORKSPACE between the options and "--" (at dd), and ARGV after it. 0 or
 * CLIENT_EXIT_USAGE. */
static int take_positionals(int argc, char **argv, int dd, struct exec_args *a)
{
	if (dd - optind != 1) {
		if (dd - optind == 0)
			cli_error("exec: missing the workspace (exec-broker exec WORKSPACE -- "
			          "ARGV...)");
		else
			cli_error("exec: unexpected argument \"%s\" before -- (exec-broker exec "
			          "WORKSPACE -- ARGV...)",
			          argv[optind + 1]);
		return CLIENT_EXIT_USAGE;
	}
	a->ws = argv[optind];
	if (dd >= argc - 1) {
		cli_error("exec: missing the command: exec-broker exec %s -- ARGV...", a->ws);
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
	if (a->env == NULL) {
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
	a->env = NULL;
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
