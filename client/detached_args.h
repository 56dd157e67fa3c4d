/* client/detached_args.h: the command lines of ps, logs, kill and wait: their --help texts
 * and their parsing into one struct, checked as far as the client can check it. */
#ifndef EB_CLIENT_DETACHED_ARGS_H
#define EB_CLIENT_DETACHED_ARGS_H

#include <stdbool.h>

enum detached_cmd { DETACHED_PS, DETACHED_LOGS, DETACHED_KILL, DETACHED_WAIT };

struct detached_args {
	const char *url, *cacert, *token_file, *reason; /* cacert, reason: NULL when not given */
	const char *ws;                                 /* ps */
	const char *exec_id;                            /* logs, kill, wait */
	const char *status, *name; /* ps --status, --name: NULL when not given */
	const char *signal;        /* kill -s, as the API names it; NULL: cancel */
	int timeout_s;             /* wait --timeout; -1 when not given */
	bool json, follow;
};

/* Parses argv (argv[0] is the subcommand) into a, which needs no setting beforehand. 0,
 * CLI_PARSED_HELP after printing the usage on stdout, or CLIENT_EXIT_USAGE after one
 * line (and for an unknown option, the usage) on stderr. */
int detached_args_parse(enum detached_cmd cmd, int argc, char **argv, struct detached_args *a);

#endif
