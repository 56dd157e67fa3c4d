/* client/exec_args.h: exec's command line, for one workspace or for a batch (fan-out): its
 * --help text, its parsing into one struct checked as far as the client can check it, and
 * the request body it makes. No I/O but the messages of a wrong command line. */
#ifndef EB_CLIENT_EXEC_ARGS_H
#define EB_CLIENT_EXEC_ARGS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct exec_args {
	const char *url, *cacert, *token_file, *cwd, *stdin_file, *reason;
	const char *ws;   /* the positional WORKSPACE; NULL for a batch */
	const char *name; /* --name, with --detach */
	int timeout_s;    /* --timeout; -1 when not given */
	bool stdin_all, json, detach;
	json_t *env; /* object; owned */
	char **argv; /* the remote argv: points into the command line */
	int argc;
	/* A batch (POST /v1/batches): --org, --label, --all or --workspaces was given. */
	bool batch;
	const char *org;
	bool all, yes;
	json_t *labels;          /* object of --label KEY=VALUE; owned */
	json_t *workspaces;      /* array of --workspaces' ids; owned */
	json_t *max_concurrency; /* integer or "N%"; owned; NULL when not given */
	json_t *max_errors;      /* likewise */
};

/* Parses argv (argv[0] is "exec") into a, which needs no setting beforehand; free it with
 * exec_args_free whatever this returns. 0, CLI_PARSED_HELP after printing the usage on
 * stdout, or CLIENT_EXIT_USAGE after one line (and for an unknown option, the usage) on
 * stderr. */
int exec_args_parse(int argc, char **argv, struct exec_args *a);
void exec_args_free(struct exec_args *a);

/* The request body (JSON text, malloc'd into *body; the caller wipes it, it may hold a
 * secret stdin) of POST /v1/workspaces/{id}/exec or, for a batch, of POST /v1/batches.
 * in[0..inlen) is the command's stdin, NULL when
 * none is passed. 0, or CLIENT_EXIT_USAGE after printing why (an argument that is not UTF-8, out of
 * memory). */
int exec_args_body(const struct exec_args *a, const char *in, size_t inlen, char **body);

#endif
